"""LitServe's batched loop, waiting for the first request instead of polling.

LitServe 0.2.19's ``BatchedLoop`` collects a batch by polling its request queue every millisecond (``batch_timeout`` >
0) or in a tight ``get_nowait`` loop (``batch_timeout`` = 0), also while no request comes: measured idle here, the
inference process and LitServe's queue manager each took about 13% of a core with ``batch_timeout=0.01``. This loop
(LitServe's documented extension point: ``LitAPI(loop=...)``) blocks until a request arrives, then takes more for up
to ``batch_timeout`` seconds or until ``max_batch_size``: a lone request waits at most ``batch_timeout``, an idle
server uses no CPU. With ``max_batch_size=1`` it is a plain one-request loop, so ``predict`` always gets a list.

Each request is checked (``decode_request``) as it is taken, and a refused one is answered alone with its 4xx: LitServe
decodes a batch's requests together, so one bad request raising there would fail every request batched with it.
"""

from __future__ import annotations

import time
from queue import Empty

from fastapi import HTTPException
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.utils import LitAPIStatus, LoopResponseType, PickleableHTTPException


class WaitingBatchedLoop(BatchedLoop):
    """``BatchedLoop`` whose batch starts when its first request arrives (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self._stopping = False

    def get_batch_requests(self, lit_api, request_queue, transport):
        if self._stopping:
            raise _StopLoopError()
        try:
            items = [request_queue.get(timeout=1.0)]  # the queue's server waits; nothing spins here
        except Empty:
            return [], []
        deadline = time.monotonic() + lit_api.batch_timeout
        while items[-1] != _SENTINEL_VALUE and len(items) < lit_api.max_batch_size:
            remaining = deadline - time.monotonic()
            try:  # past the deadline, still take what is already queued
                items.append(request_queue.get(timeout=remaining) if remaining > 0 else request_queue.get_nowait())
            except Empty:
                break
        if items[-1] == _SENTINEL_VALUE:  # stop after answering the requests taken before it
            items.pop()
            self._stopping = True
            if not items:
                raise _StopLoopError()
        payloads, timed_out = [], []
        for response_queue_id, uid, timestamp, payload in items:
            self.put_response(transport, response_queue_id, uid, (), LitAPIStatus.START, LoopResponseType.REGULAR)
            limit = lit_api.request_timeout
            if limit not in (None, -1, False) and time.monotonic() - timestamp > limit:
                timed_out.append((response_queue_id, uid))  # answered 504 by the loop
            elif (refusal := _refusal(lit_api, payload)) is not None:
                self.put_response(transport, response_queue_id, uid, refusal, LitAPIStatus.ERROR,
                                  LoopResponseType.REGULAR)
            else:
                payloads.append((response_queue_id, uid, payload))
        return payloads, timed_out


def _refusal(lit_api, payload) -> PickleableHTTPException | None:
    """The HTTP error ``decode_request`` refuses ``payload`` with, or None when it is a good request."""
    try:
        lit_api.decode_request(payload)
    except HTTPException as err:
        return PickleableHTTPException.from_exception(err)
    return None
