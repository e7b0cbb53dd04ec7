"""``python -m ftlab.serve``: the real server (LitServe) on a loopback port, real HTTP requests (one by one,
concurrent, bad), answers checked against ``ftlab.predict``, ``/metrics`` counters checked against the requests sent,
and a SIGTERM that lets the request in flight finish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ftlab.train import train
from tests.helpers import ROOT, compose, make_tiny_classifier, make_tiny_llama, tiny_overrides
from tests.serving.answers import TEXTS, assert_same, expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m ftlab.serve`` in a subprocess (its own session), ready once /health answers 200."""

    def __init__(self, model: Path, *args: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "ftlab.serve", str(model), "--port", str(self.port), *args],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while self.get("/health")[0] != 200:
            assert self.proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read().decode()
        except (urllib.error.URLError, ConnectionError) as err:
            return getattr(err, "code", 0), ""

    def post(self, body: bytes | dict, content_type: str = "application/json") -> tuple[int, dict]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.url + "/predict", data=data, method="POST",
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def metrics(self) -> dict[tuple, float]:
        """Every ftlab_serve sample: (name, sorted labels) -> value."""
        from prometheus_client.parser import text_string_to_metric_families

        status, text = self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
                for s in family.samples if s.name.startswith("ftlab_serve")}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # anything left of the session (nothing, if it worked)
            except ProcessLookupError:
                pass


def metric(samples: dict, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


@pytest.fixture(scope="module")
def job(tiny_model_dir, tiny_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-job")
    train(compose(tiny_overrides(tiny_model_dir, tiny_csv, out, "trainer.max_epochs=4", "lr=3e-3",
                                 "callbacks.early_stopping=null", "export_onnx=true", "onnx.quantize=int8")))
    return out


@pytest.fixture(scope="module")
def server(job, tmp_path_factory):
    srv = Server(job, "--max-batch-size", "8", "--batch-timeout-ms", "150", "--max-texts", "4", "--max-chars", "60",
                 log=tmp_path_factory.mktemp("serve-log") / "torch.log")
    yield srv
    assert srv.stop() == 0, srv.log.read_text()


@pytest.mark.slow
def test_answers_are_ftlab_predict_rows(server, job):
    want = expected(job, TEXTS)
    status, one = server.post({"text": TEXTS[0]})
    assert status == 200
    assert_same(one, want[0])
    status, many = server.post({"texts": TEXTS[:4]})
    assert status == 200 and list(many) == ["predictions"]
    assert [p["text"] for p in many["predictions"]] == TEXTS[:4]  # one answer per text, in order
    for got, row in zip(many["predictions"], want[:4], strict=True):
        assert_same(got, row)
    assert server.get("/health") == (200, "ok")


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, job):
    want = {row["text"]: row for row in expected(job, TEXTS)}
    before = server.metrics()
    results, barrier = [None] * 12, threading.Barrier(12)

    def send(i):
        barrier.wait()
        results[i] = server.post({"text": TEXTS[i % len(TEXTS)]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (status, body) in enumerate(results):
        assert status == 200
        assert_same(body, want[TEXTS[i % len(TEXTS)]])
    after = server.metrics()
    batches = metric(after, "ftlab_serve_batch_requests_count") - metric(before, "ftlab_serve_batch_requests_count")
    requests = metric(after, "ftlab_serve_batch_requests_sum") - metric(before, "ftlab_serve_batch_requests_sum")
    texts = metric(after, "ftlab_serve_batch_texts_sum") - metric(before, "ftlab_serve_batch_texts_sum")
    assert requests == texts == 12
    assert batches < 12  # merged: 12 requests arriving together were answered by fewer model batches


BAD = [  # body, content type, status, fragment of the one-line reason
    (b"goal team", "application/json", 400, "body is not JSON (Expecting value at line 1 column 1)"),
    (b"", "application/json", 400, "empty body"),
    (b'["goal"]', "application/json", 422, "the body is a JSON array, not an object"),
    (b'{"text": 3}', "application/json", 422, '"text" is a JSON number, not a string'),
    (b'{"texts": "goal"}', "application/json", 422, '"texts" is a JSON string, not a list of strings'),
    (b'{"texts": ["goal", null]}', "application/json", 422, '"texts"[1] is a JSON null, not a string'),
    (b'{"text": "  "}', "application/json", 422, '"text" is empty'),
    (b'{"texts": []}', "application/json", 422, '"texts" is an empty list; give 1 to 4 texts'),
    (b'{"text": "goal", "texts": ["goal"]}', "application/json", 422, "the object has keys ['text', 'texts']"),
    (b'{"prompt": "goal"}', "application/x-www-form-urlencoded", 422, "the object has keys ['prompt']"),
    (json.dumps({"texts": ["goal"] * 5}).encode(), "application/json", 413, '"texts" has 5 texts; at most 4'),
    (json.dumps({"text": "goal " * 13}).encode(), "application/json", 413, '"text" has 65 characters; at most 60'),
    (b"x" * 4000, "text/plain", 413, "bytes is over"),
]


@pytest.mark.slow
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_keeps_serving(server, job):
    before = server.metrics()
    for body, content_type, status, fragment in BAD:
        got, answer = server.post(body, content_type)
        assert (got, list(answer)) == (status, ["detail"]), (body, answer)
        assert fragment in answer["detail"] and "\n" not in answer["detail"], (body, answer)
    status, answer = server.post({"text": TEXTS[1]})
    assert status == 200
    assert_same(answer, expected(job, TEXTS[1:2])[0])
    after = server.metrics()
    for code in (400, 413, 422):
        sent = sum(1 for *_, status, _ in BAD if status == code)
        moved = metric(after, "ftlab_serve_requests_total", outcome="rejected", code=str(code)) - \
            metric(before, "ftlab_serve_requests_total", outcome="rejected", code=str(code))
        assert moved == sent
    # Refused in the HTTP process: no bad request reached a model batch.
    assert metric(after, "ftlab_serve_batch_texts_sum") - metric(before, "ftlab_serve_batch_texts_sum") == 1


# -- in process: the max_length texts are read at ----------------------------------------------------------------
def test_the_server_reads_texts_at_the_max_length_the_job_trained_at(tiny_job, caplog):
    import logging

    from ftlab.serving.server import check, parser

    def plan(*extra: str) -> dict:
        return check(parser().parse_args([str(tiny_job), "--port", str(free_port()), *extra]))

    with caplog.at_level(logging.WARNING, logger="ftlab.deploy.trained_length"):
        assert plan()["max_length"] == 16
        assert caplog.records == []
        assert plan("--max-length", "32")["max_length"] == 32
    [line] = [r.getMessage() for r in caplog.records]
    assert "--max-length 32" in line and "max_length=16" in line and "\n" not in line


@pytest.mark.slow
def test_metrics_count_exactly_the_requests_sent_with_the_model_identity(server, job):
    before = server.metrics()
    for text in TEXTS[:3]:
        assert server.post({"text": text})[0] == 200
    assert server.post({"texts": TEXTS[:4]})[0] == 200
    assert server.post(b"{", "application/json")[0] == 400
    assert server.get("/health")[0] == 200  # not a prediction: not counted
    after = server.metrics()

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    identity = {"ftlab_job": f"{job.parent.name}/{job.name}", "model": "BertForSequenceClassification",
                "task": "text_classification", "backend": "torch"}
    assert moved("ftlab_serve_requests_total", outcome="ok", code="200", **identity) == 4
    assert moved("ftlab_serve_requests_total", outcome="rejected", code="400", **identity) == 1
    assert moved("ftlab_serve_requests_total") == 5
    assert moved("ftlab_serve_request_seconds_count", outcome="ok") == 4
    assert moved("ftlab_serve_request_seconds_bucket", outcome="ok", le="+Inf") == 4
    assert moved("ftlab_serve_batch_texts_sum", **identity) == 3 + 4  # texts run through the model
    assert moved("ftlab_serve_batch_requests_sum") == 4
    assert 0 < metric(after, "ftlab_serve_model_load_seconds", **identity) < 60
    assert metric(after, "ftlab_serve_request_seconds_sum", outcome="ok") > 0


@pytest.mark.slow
def test_the_int8_onnx_backend_answers_as_its_model_does_and_sigterm_lets_the_request_in_flight_finish(
        job, tmp_path):
    from ftlab.deploy.runners import OnnxModel
    from ftlab.tasks.registry import get_task

    # A batch waits 1.5 s for company: the request sent first is in flight when SIGTERM arrives.
    srv = Server(job, "--onnx-int8", "--max-batch-size", "4", "--batch-timeout-ms", "1500", log=tmp_path / "int8.log")
    answer = {}
    sender = threading.Thread(target=lambda: answer.update(zip(("status", "body"), srv.post({"texts": TEXTS[:3]}))))
    try:
        sender.start()
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        sender.join(timeout=60)
    finally:
        code = srv.stop()
    assert answer["status"] == 200
    # The same texts through the task's predictor on the same ONNX Runtime session type, in one batch.
    run = get_task("text_classification").predictor(job / "model", max_length=512, max_new_tokens=64,
                                                     forward=OnnxModel(job / "onnx" / "model.int8.onnx"))
    preds, wants = answer["body"]["predictions"], run(TEXTS[:3])
    assert len(preds) == len(wants) == 3
    for text, got, want in zip(TEXTS[:3], preds, wants):
        assert got == {"text": text, **want}
    assert code == 0, srv.log.read_text()
    assert "[ftlab.serve] stopped" in srv.log.read_text()
    assert srv.get("/health")[0] == 0  # nothing listens any more


@pytest.mark.slow
def test_refusals_before_starting(job, tmp_path, capsys):
    from ftlab.serving.server import main

    make_tiny_llama(tmp_path / "lm" / "model")  # a LlamaForCausalLM: what a causal_lm job exports
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = [
        ([str(tmp_path / "lm"), "--onnx"], "a causal LM; --onnx serves classifiers and token classifiers only"),
        ([str(job / "model"), "--onnx", "--port", "80"], "--port 80: valid: 1024-65535"),
        ([str(job), "--batch-timeout-ms", "40000"], "--batch-timeout-ms 40000: must be shorter than --timeout 30 s"),
        ([str(job), "--port", str(busy.getsockname()[1])], f"--port {busy.getsockname()[1]}: cannot listen on"),
        ([str(tmp_path / "nope")], f"{tmp_path / 'nope'}: no such directory"),
        ([str(job), "--max-length", "100"], "--max-length 100: the model reads at most 64 tokens; valid: 1..64"),
    ]
    (tmp_path / "bare" / "model").mkdir(parents=True)
    for name in (job / "model").iterdir():
        (tmp_path / "bare" / "model" / name.name).write_bytes(name.read_bytes())
    cases.append(([str(tmp_path / "bare"), "--onnx-int8"],
                  f"--onnx-int8: {tmp_path / 'bare' / 'onnx' / 'model.int8.onnx'} does not exist; export it first: "
                  f"python -m ftlab.onnx_export {tmp_path / 'bare'} --quantize int8"))
    try:
        for argv, fragment in cases:
            with pytest.raises(SystemExit) as exc:
                main(argv)
            message = str(exc.value.code)
            assert message.startswith("ftlab.serve: ") and "\n" not in message and fragment in message, message
    finally:
        busy.close()


@pytest.mark.slow
def test_the_grafana_dashboard_charts_series_the_server_exports(server):
    import re

    dashboard = json.loads((ROOT / "docs" / "grafana" / "ftlab-serve.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = set(re.findall(r"ftlab_serve_\w+", " ".join(queries)))
    # Batch series appear with the first batch: answer one here, so the test holds whichever tests ran before it.
    assert server.post({"text": TEXTS[0]})[0] == 200
    samples = server.metrics()
    assert len(used) >= 6 and used <= {name for name, _ in samples}
    labels = {key for _, ls in samples for key, _ in ls}
    assert set(re.findall(r"(\w+)=~?\"", " ".join(queries))) <= labels  # every label a query filters on exists
    assert all({"gridPos", "targets", "datasource"} <= set(p) for p in dashboard["panels"])


@pytest.mark.slow
def test_the_serving_benchmark_runs(job):
    """benchmarks/serve.py end to end, small (2 servers, 2 concurrencies, 8 requests each); no timing asserted."""
    root = ROOT
    proc = subprocess.run([sys.executable, "benchmarks/serve.py", str(job), "--backends", "onnx-int8", "--concurrency",
                           "1", "4", "--requests", "8", "--repeats", "1", "--max-length", "16"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| onnx-int8 | o")]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [("on", "1"), ("on", "4"), ("off", "1"), ("off", "4")]
    assert all(float(r[3]) > 0 and float(r[4]) <= float(r[5]) <= float(r[6]) for r in rows)  # req/s, p50<=p95<=p99
    assert "What dynamic batching gains over batch size 1" in proc.stdout


def test_a_trained_max_length_longer_than_the_model_reads_is_refused_at_start_up(tiny_model_dir, tmp_path):
    """The length from an ftlab.json that came with the model gets the check --max-length gets: 100000 against a
    model of 64 positions would fail inside the model on every long text (500 per request)."""
    from ftlab.core.checks import FtlabError
    from ftlab.serving.server import check, parser

    job = tmp_path / "job"
    make_tiny_classifier(tiny_model_dir, job / "model")
    (job / "model" / "ftlab.json").write_text('{"max_length": 100000}\n')
    with pytest.raises(FtlabError) as exc:
        check(parser().parse_args([str(job), "--port", str(free_port())]))
    assert str(exc.value) == (f"{job / 'model' / 'ftlab.json'}: max_length=100000 (the length the model was trained "
                              "at, by this file): the model reads at most 64 tokens; valid: 1..64; correct the file, "
                              "or give --max-length")
    assert check(parser().parse_args([str(job), "--port", str(free_port()), "--max-length", "64"]))["max_length"] \
        == 64
