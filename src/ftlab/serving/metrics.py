"""Prometheus metrics of the server, through ``prometheus_client`` in its multiprocess mode.

LitServe answers HTTP in one process and runs the model in another (``server.py``), so every process writes its
samples to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``GET /metrics`` adds them up (``MultiProcessCollector``). The
directory must be set before ``prometheus_client`` is first imported in any of them: ``server.main`` sets it first
thing and the inference process inherits it; import this module only after that.

Every series carries the identity of what is served: ``ftlab_job`` (the job directory; ``job`` is Prometheus' own
target label), ``model`` (the architecture), ``task`` and ``backend`` (torch, onnx, onnx-int8).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

IDENTITY = ("ftlab_job", "model", "task", "backend")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter("ftlab_serve_requests", "POST /predict requests by outcome (ok: 2xx, rejected: 4xx, error: 5xx) "
                   "and HTTP status code", [*IDENTITY, "outcome", "code"])
LATENCY = Histogram("ftlab_serve_request_seconds", "Seconds from a /predict request's arrival to its answer",
                    [*IDENTITY, "outcome"], buckets=LATENCY_BUCKETS)
BATCH_TEXTS = Histogram("ftlab_serve_batch_texts", "Texts per model forward pass (dynamic batching merges requests)",
                        IDENTITY, buckets=SIZE_BUCKETS)
BATCH_REQUESTS = Histogram("ftlab_serve_batch_requests", "Requests answered by one batch", IDENTITY,
                           buckets=SIZE_BUCKETS)
BATCH_SECONDS = Histogram("ftlab_serve_batch_seconds", "Seconds the model took per batch", IDENTITY,
                          buckets=LATENCY_BUCKETS)
MODEL_LOAD = Gauge("ftlab_serve_model_load_seconds", "Seconds the inference process took to load the model",
                   IDENTITY, multiprocess_mode="max")


def outcome(status: int) -> str:
    """ok, rejected or error, from an HTTP status code."""
    return "ok" if status < 400 else "rejected" if status < 500 else "error"


def exposition() -> tuple[bytes, str]:
    """Every process's samples, added up, in Prometheus' text format, and its content type."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
