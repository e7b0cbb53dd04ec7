"""The HTTP process's side of ``POST /predict``: refuse a bad request before it reaches the model, count every one.

An ASGI middleware in front of LitServe's route: it reads the body, checks it (``limits.py``) and answers a problem
itself with its status and ``{"detail": "<one-line reason>"}`` (the shape of FastAPI's own errors), so a bad request
never takes a place in a batch and the server keeps serving. A good request goes on to LitServe with its body as
JSON. Each request's outcome and latency are recorded just before its last byte is sent, so a client that has its
answer finds it counted at ``/metrics``.
"""

from __future__ import annotations

import json
import time

from ftlab.serving.limits import BadRequest, Limits, body_too_large, parse_body, request_texts


class PredictGate:
    """ASGI middleware for ``path`` (see the module docstring); other paths pass through untouched."""

    def __init__(self, app, limits: Limits, identity: dict[str, str], path: str = "/predict"):
        self.app, self.limits, self.identity, self.path = app, limits, identity, path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), {}

        async def counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                self._count(status.get("code", 500), start)
            await send(message)

        if scope["method"] != "POST":
            return await self.app(scope, receive, counted)  # LitServe answers 405
        try:
            body = await self._read(receive)
            request_texts(parse_body(body, self.limits), self.limits)
        except BadRequest as err:
            return await _answer(counted, err.status, {"detail": err.reason})
        # LitServe reads forms by Content-Type; the body has been checked as JSON, so it is passed on as JSON.
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
        scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # e.g. http.disconnect
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, counted)
        except Exception:
            if "code" not in status:
                self._count(500, start)
            raise

    async def _read(self, receive) -> bytes:
        """The whole body, refused (413) as soon as it grows past what the limits allow."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise body_too_large(size, self.limits)  # without reading the rest
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _count(self, code: int, start: float) -> None:
        from ftlab.serving import metrics

        outcome = metrics.outcome(code)
        metrics.REQUESTS.labels(**self.identity, outcome=outcome, code=str(code)).inc()
        metrics.LATENCY.labels(**self.identity, outcome=outcome).observe(time.perf_counter() - start)


async def _answer(send, status: int, content: dict) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
