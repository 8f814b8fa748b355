"""Issue #15: posthog-otel's v1 and AI requests against posthog 7.91.1's, field by field,
recorded at the client's side (posthog's ``requests`` session, our httpx transport) by
``tests.wire_harness``; only ``PostHog-Sdk-Info``, the ``$lib`` fields, posthog's
environment properties and per-request values (ids, clocks, sizes) may differ."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from posthog_otel import Client, __version__

from .conftest import API_KEY
from .test_capture_v1 import _calls, _Ours, _Theirs
from .wire_harness import HOST, Sent, our_transport, posthog_requests

_ENVIRONMENT = {"$python_runtime", "$python_version", "$os", "$os_version", "$os_distro"}
_NOT_COMPARED_PROPERTIES = _ENVIRONMENT | {"$is_server", "$lib", "$lib_version"}
_PER_REQUEST_HEADERS = {"posthog-request-id", "posthog-request-timestamp", "content-length"}
_TRANSPORT_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent"}


def _theirs(mode: str, calls: Any) -> list[Sent]:
    from posthog import Posthog

    with posthog_requests() as sent:
        client = Posthog(API_KEY, host=HOST, sync_mode=True, capture_mode=mode, gzip=True)
        calls(client)
        client.shutdown()
    return sent


def _ours(mode: str, calls: Any) -> list[Sent]:
    http, sent = our_transport()
    client = Client(API_KEY, host=HOST, sync_mode=True, capture_mode=mode, http_client=http)
    calls(client)
    client.close(5)
    return sent


def _compare(mine: Sent, their: Sent) -> None:
    assert (mine.method, mine.path) == (their.method, their.path)
    skip = _PER_REQUEST_HEADERS | _TRANSPORT_HEADERS | {"posthog-sdk-info"}
    assert {k: v for k, v in mine.headers.items() if k not in skip} == {
        k: v for k, v in their.headers.items() if k not in skip
    }
    if "posthog-sdk-info" in their.headers:
        assert their.headers["posthog-sdk-info"].startswith("posthog-python/")
        assert mine.headers["posthog-sdk-info"] == f"posthog-otel/{__version__}"
    assert sorted(mine.body) == sorted(their.body)
    for key in mine.body:
        if key not in ("batch", "sent_at", "created_at"):
            assert mine.body[key] == their.body[key], key
    for stamp in ("sent_at", "created_at"):
        if stamp in their.body:
            assert datetime.fromisoformat(mine.body[stamp].replace("Z", "+00:00")).tzinfo
    for my_event, their_event in zip(mine.body["batch"], their.body["batch"], strict=True):
        if "$lib" in their_event["properties"]:  # v0 bodies; v1's comes from the header
            assert my_event["properties"]["$lib"] == "posthog-otel"
        for event in (my_event, their_event):
            for name in _NOT_COMPARED_PROPERTIES:
                event["properties"].pop(name, None)
            if event["event"].startswith("$set"):  # uuid and time of the moment
                uuid.UUID(event.pop("uuid"))
                assert datetime.fromisoformat(event.pop("timestamp")).utcoffset() is not None
        assert my_event == their_event  # JSON objects: key order carries no meaning


def test_v1_capture_matches_posthog_7_91_1_at_the_clients_side():
    theirs = _theirs("v1", lambda client: _calls(_Theirs(client)))
    mine = _ours("v1", lambda client: _calls(_Ours(client)))
    assert len(mine) == len(theirs) == 4
    for my_request, their_request in zip(mine, theirs, strict=True):
        _compare(my_request, their_request)


@pytest.mark.parametrize("mode", ["v0", "v1"])
def test_capture_ai_matches_posthog_7_91_1_at_the_clients_side(mode):
    def calls(client: Any) -> None:
        client.capture_ai(
            "$ai_generation",
            distinct_id="u1",
            properties={
                "$ai_model": "gpt-4o",
                "$ai_input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "$ai_output_choices": [{"role": "assistant", "content": "hello"}],
                "$ai_latency": 0.25,
            },
            groups={"company": "acme"},
            timestamp="2026-01-02T03:04:05.123456+00:00",
            uuid="0190a0a0-0000-7000-8000-0000000000a1",
        )

    (their_request,) = _theirs(mode, calls)
    (my_request,) = _ours(mode, calls)
    assert my_request.path == "/i/v0/ai/batch/" or my_request.path == their_request.path
    _compare(my_request, their_request)
