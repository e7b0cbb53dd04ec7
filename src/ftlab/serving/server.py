"""Serve a fine-tuned model over HTTP with LitServe: ``python -m ftlab.serve <job dir> [--onnx | --onnx-int8]``.

``POST /predict`` with ``{"text": "..."}`` or ``{"texts": [...]}`` answers with ``ftlab.predict``'s rows; ``GET
/health`` is 200 once the model is loaded; ``GET /metrics`` is Prometheus' text format. Concurrent requests are
batched (``--max-batch-size``, ``--batch-timeout-ms``). Every argument is checked before anything starts (one line
``ftlab.serve: ...``, exit status 1). SIGTERM (or Ctrl-C) stops the server after the requests in flight are answered
(LitServe's own shutdown: uvicorn's graceful stop, then the inference process), exit status 0.

Processes: this one (LitServe's supervisor), one HTTP process per inference process (uvicorn, forked), the inference
process(es) (spawned: each loads the model once) and LitServe's queue manager.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile

from ftlab.core.checks import FtlabError, ToolParser, at_least, tool_name
from ftlab.core.extras import require_extras
from ftlab.serving.limits import Limits

BACKENDS = {"torch": None, "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}  # --onnx, --onnx-int8: onnx/<file>
HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # what LitServer.run accepts


def positive_int(text: str) -> int:
    value = at_least(1, strict=False)(text)
    if value != int(value):
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(value)


def parser(prog: str = "python -m ftlab.serve") -> ToolParser:
    p = ToolParser(prog, __doc__)
    p.add_argument("model", help="a job directory (uses its model/ and onnx/) or an exported model directory")
    backend = p.add_mutually_exclusive_group()
    backend.add_argument("--onnx", dest="backend", action="store_const", const="onnx",
                         help="run onnx/model.onnx with ONNX Runtime (python -m ftlab.onnx_export writes it)")
    backend.add_argument("--onnx-int8", dest="backend", action="store_const", const="onnx-int8",
                         help="run onnx/model.int8.onnx (python -m ftlab.onnx_export --quantize int8)")
    p.set_defaults(backend="torch")
    p.add_argument("--host", default="127.0.0.1", choices=HOSTS, help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on, 1024-65535 (default 8000)")
    p.add_argument("--max-batch-size", type=positive_int, default=8, help="requests merged into one batch (1: none)")
    p.add_argument("--batch-timeout-ms", type=at_least(0, strict=False), default=10.0,
                   help="how long a batch waits for more requests after its first (default 10 ms)")
    p.add_argument("--max-texts", type=positive_int, default=64, help="texts per request (default 64)")
    p.add_argument("--max-chars", type=positive_int, default=20_000, help="characters per text (default 20000)")
    p.add_argument("--max-length", type=positive_int, help="tokens the model reads per text (default: the "
                                                           "max_length the job trained at, as ftlab.predict; else 512, "
                                                           "or the model's limit if lower)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="causal LM: tokens generated (greedy)")
    p.add_argument("--workers", type=positive_int, default=1, help="inference processes, each with the model")
    p.add_argument("--timeout", type=at_least(0, strict=True), default=30.0, help="seconds a request may wait")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    return p


def check(args) -> dict:
    """Everything the server needs, checked: the model directory, the backend's file, the port, the batching."""
    # Local, as the transformers import below: they load torch and transformers, which `--help` must not wait for.
    from ftlab.deploy.predict import DEFAULT_MAX_LENGTH, check_model_dir, model_task
    from ftlab.deploy.trained_length import serving_max_length

    require_extras("serving", "serve", *(("onnx",) if args.backend != "torch" else ()))
    model_dir = check_model_dir(args.model)
    task = model_task(model_dir)
    onnx_file = None
    if BACKENDS[args.backend] is not None:
        if task == "causal_lm":
            raise FtlabError(f"{model_dir}: a causal LM; --{args.backend} serves classifiers and token classifiers "
                             "only (generating through ONNX Runtime needs a decoding loop over the exported past key "
                             "values, which ftlab does not implement); serve it with PyTorch: drop the option")
        onnx_file = model_dir.parent / "onnx" / BACKENDS[args.backend]
        if not onnx_file.is_file():
            quantize = " --quantize int8" if args.backend == "onnx-int8" else ""
            raise FtlabError(f"--{args.backend}: {onnx_file} does not exist; export it first: python -m "
                             f"ftlab.onnx_export {model_dir.parent}{quantize}")
    if not 1024 <= args.port <= 65535:
        raise FtlabError(f"--port {args.port}: valid: 1024-65535")
    if args.batch_timeout_ms / 1000 >= args.timeout:
        raise FtlabError(f"--batch-timeout-ms {args.batch_timeout_ms:g}: must be shorter than --timeout "
                         f"{args.timeout:g} s")
    _check_port(args.host, args.port)
    from transformers import AutoConfig

    from ftlab.model.architecture import max_positions

    # A longer input than the model's position embeddings would fail inside the model (a 500 per request).
    limit = max_positions(AutoConfig.from_pretrained(model_dir, trust_remote_code=False)) or DEFAULT_MAX_LENGTH
    # As the job trained and tested, unless the command line says otherwise (then with a warning); a value above the
    # limit (given, or recorded in an ftlab.json or saved config from elsewhere) is refused, naming where it came from.
    max_length = serving_max_length(model_dir, args.max_length, DEFAULT_MAX_LENGTH, limit)
    config = json.loads((model_dir / "config.json").read_text())
    job = model_dir.parent if model_dir.name == "model" else model_dir
    identity = {"ftlab_job": f"{job.parent.name}/{job.name}", "model": (config.get("architectures") or ["?"])[0],
                "task": task, "backend": args.backend}
    return {"model_dir": model_dir, "onnx_file": onnx_file, "identity": identity,
            "limits": Limits(args.max_texts, args.max_chars), "max_length": max_length}


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise FtlabError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); choose another "
                             "port") from None


def serve(args, plan: dict) -> None:
    """Run the server until SIGTERM / Ctrl-C."""
    metrics_dir = tempfile.mkdtemp(prefix="ftlab-serve-metrics-")
    # Before prometheus_client is first imported, here and (inherited) in every process LitServe starts.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # PyTorch's OpenMP threads spin after each batch by default; next to the HTTP process on 2 shared cores that made
    # one-text requests take 350-680 ms (median) instead of 33-53 ms with passive waiting (MiniLM, measured). ONNX
    # Runtime's spinning is turned off the same way (api.py): 60 -> 33 ms. Set it yourself to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main_pid, stopping = os.getpid(), []

    def stop(signum, frame):
        # LitServer.run shuts down gracefully on KeyboardInterrupt; on SIGTERM it would die and leave its processes
        # running (measured with LitServe 0.2.19). A forked child that inherited this handler just exits; a second
        # SIGTERM must not interrupt the shutdown the first one started.
        if os.getpid() != main_pid:
            raise SystemExit(0)
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    try:
        import litserve as ls
        from fastapi import Response

        # Local: litserve and prometheus_client are the optional serve extra, and the metrics module must be imported
        # after PROMETHEUS_MULTIPROC_DIR is set.
        from ftlab.serving import metrics
        from ftlab.serving.api import PredictAPI
        from ftlab.serving.gate import PredictGate

        api = PredictAPI(plan["model_dir"], plan["onnx_file"], plan["identity"], plan["limits"], plan["max_length"],
                         args.max_new_tokens, args.max_batch_size, args.batch_timeout_ms / 1000)
        server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers, timeout=args.timeout,
                              middlewares=[(PredictGate, {"limits": plan["limits"], "identity": plan["identity"]})],
                              model_metadata=plan["identity"])

        async def metrics_endpoint() -> Response:
            body, content_type = metrics.exposition()
            return Response(content=body, media_type=content_type)

        server.app.add_api_route("/metrics", metrics_endpoint, methods=["GET"])
        signal.signal(signal.SIGTERM, stop)
        where = f"http://{'[::1]' if args.host == '::' else args.host}:{args.port}"
        print(f"[ftlab.serve] {plan['model_dir']} ({plan['identity']['task']}, {args.backend}) on {where}: POST "
              f"/predict, GET /health (200 once loaded), GET /metrics; batches of up to {args.max_batch_size} "
              f"requests, waiting {args.batch_timeout_ms:g} ms", flush=True)
        try:
            server.run(host=args.host, port=args.port, generate_client_file=False, log_level=args.log_level)
        except KeyboardInterrupt:  # stopped while the model loads, before LitServe arms its own shutdown
            _stop_loading(server)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    print("[ftlab.serve] stopped", flush=True)


def _stop_loading(server) -> None:
    """Stop what ``LitServer.run`` started before it serves: the inference processes, then its queue manager."""
    for worker in getattr(server, "inference_workers", []):
        worker.terminate()
        worker.join(timeout=10)
    manager = getattr(server.transport_config, "manager", None)
    if manager is not None:
        manager.shutdown()


def main(argv: list[str] | None = None, prog: str = "python -m ftlab.serve") -> int:
    args = parser(prog).parse_args(argv)
    try:
        plan = check(args)
    except FtlabError as err:
        sys.exit(f"{tool_name(prog)}: {' '.join(str(err).split())}")
    serve(args, plan)
    return 0
