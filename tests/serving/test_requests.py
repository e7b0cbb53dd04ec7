"""A request's texts inside the server, in process: a text that is not valid Unicode is refused with 422 by the HTTP
process (``gate``) and by the inference process (``limits``), and answered alone when it reaches a batch (``loop``):
the other requests batched with it get their predictions."""

from __future__ import annotations

import json
import time

import pytest

from ftlab.serving.limits import BadRequest, Limits, request_texts
from tests.serving.answers import TEXTS, assert_same, expected

IDENTITY = {"ftlab_job": "tiny/job", "model": "BertForSequenceClassification", "task": "text_classification",
            "backend": "torch"}
SURROGATE = "goal \ud800 team"  # what the JSON escape "\ud800" (half a UTF-16 pair) decodes to


def test_a_lone_surrogate_is_refused_with_422_naming_the_text():
    with pytest.raises(BadRequest) as err:
        request_texts({"texts": ["goal team", SURROGATE]}, Limits())
    assert err.value.status == 422
    assert err.value.reason.startswith('"texts"[1] has a lone surrogate (U+D800) at character 5: not valid Unicode')
    assert request_texts({"text": "goal \U0001f600 team"}, Limits()) == (["goal \U0001f600 team"], True)  # a pair


def test_the_http_process_refuses_a_lone_surrogate_before_it_reaches_a_batch():
    import asyncio

    from ftlab.serving.gate import PredictGate

    async def litserve(scope, receive, send):
        raise AssertionError("a text that is not Unicode reached LitServe")

    sent = []

    async def receive():
        return {"type": "http.request", "body": json.dumps({"text": SURROGATE}).encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    gate = PredictGate(litserve, Limits(), IDENTITY)
    asyncio.run(gate({"type": "http", "path": "/predict", "method": "POST", "headers": []}, receive, send))
    assert sent[0]["status"] == 422
    assert json.loads(sent[1]["body"])["detail"].startswith('"text" has a lone surrogate (U+D800)')


def test_a_bad_request_in_a_batch_is_answered_alone_and_the_others_get_their_predictions(tiny_job):
    """A request sent around the HTTP process's check, batched with good ones in the inference process."""
    from queue import Queue

    from litserve.callbacks.base import CallbackRunner
    from litserve.loops.base import _SENTINEL_VALUE
    from litserve.utils import LitAPIStatus

    from ftlab.serving.api import PredictAPI
    from ftlab.serving.loop import WaitingBatchedLoop

    api = PredictAPI(tiny_job / "model", None, IDENTITY, Limits(), max_length=16, max_new_tokens=8, max_batch_size=8,
                     batch_timeout=0.5)
    api.request_timeout = 30
    api.pre_setup()
    api.setup("cpu")
    requests = {"good-1": {"text": TEXTS[0]}, "bad": {"texts": [TEXTS[1], SURROGATE]}, "good-2": {"texts": TEXTS[2:4]}}
    queue = Queue()
    for uid, payload in requests.items():
        queue.put((0, uid, time.monotonic(), payload))
    queue.put(_SENTINEL_VALUE)

    class Transport:
        answers = {}

        def send(self, item, consumer_id):
            uid, (data, status, _, _) = item
            self.answers[uid] = (data, status)

    transport = Transport()
    WaitingBatchedLoop().run_batched_loop(api, queue, transport, CallbackRunner())
    want = expected(tiny_job / "model", TEXTS[:4])
    data, status = transport.answers["bad"]
    assert status == LitAPIStatus.ERROR and data.status_code == 422
    assert data.detail.startswith('"texts"[1] has a lone surrogate (U+D800)')
    assert transport.answers["good-1"][1] == transport.answers["good-2"][1] == LitAPIStatus.OK
    assert_same(transport.answers["good-1"][0], want[0])
    for got, row in zip(transport.answers["good-2"][0]["predictions"], want[2:4], strict=True):
        assert_same(got, row)
