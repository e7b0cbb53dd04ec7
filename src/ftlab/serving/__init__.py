"""Serving a fine-tuned model over HTTP: ``python -m ftlab.serve <job dir> [--onnx | --onnx-int8] --port 8000``.

LitServe runs it (``server.py``): the HTTP process checks each request (``limits.py``, ``gate.py``) and counts it for
Prometheus (``metrics.py``); an inference process loads the model once and answers batches of requests merged while
they wait (``api.py``, ``loop.py``).
"""
