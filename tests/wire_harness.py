"""What posthog 7.91.1 and posthog-otel put on the wire for the same calls, recorded
without a server: posthog's requests through its own ``requests`` sessions (a recording
adapter mounted on them), ours through an httpx transport given as ``http_client``.
Each request is kept as method, path, headers (lower-case names) and decoded body."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
from requests.adapters import BaseAdapter

HOST = "https://wire.posthog.test"
# (path, decoded body) -> the JSON the server answers with 200.
Answer = Callable[[str, Any], Any]


@dataclass
class Sent:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _sent(method: str, url: str, headers: Any, raw: bytes | None) -> Sent:
    raw = raw or b""
    names = {str(k).lower(): str(v) for k, v in headers.items()}
    if names.get("content-encoding") == "gzip":
        raw = gzip.decompress(raw)
    return Sent(method, urlsplit(url).path, names, json.loads(raw) if raw else None)


def _answer_ok(path: str, body: Any) -> Any:
    return {"status": 1}


class _RecordingAdapter(BaseAdapter):
    def __init__(self, sent: list[Sent], answer: Answer) -> None:
        super().__init__()
        self._sent, self._answer = sent, answer

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        record = _sent(str(request.method), str(request.url), request.headers, body)
        self._sent.append(record)
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(self._answer(record.path, record.body)).encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass


@contextmanager
def posthog_requests(answer: Answer = _answer_ok) -> Iterator[list[Sent]]:
    """Record what posthog sends (through its module-level sessions) to ``HOST``."""
    import posthog.request as sessions

    sent: list[Sent] = []
    adapter = _RecordingAdapter(sent, answer)
    saved = []
    for session in (sessions._session, sessions._flags_session):
        saved.append((session, dict(session.adapters)))
        session.mount(HOST, adapter)
    try:
        yield sent
    finally:
        for session, adapters in saved:
            session.adapters.clear()
            session.adapters.update(adapters)


def our_transport(answer: Answer = _answer_ok) -> tuple[httpx.Client, list[Sent]]:
    """An ``http_client`` for ``Client(host=HOST, http_client=...)`` that records."""
    sent: list[Sent] = []

    def handle(request: httpx.Request) -> httpx.Response:
        record = _sent(request.method, str(request.url), request.headers, request.read())
        sent.append(record)
        return httpx.Response(200, json=answer(record.path, record.body))

    return httpx.Client(transport=httpx.MockTransport(handle)), sent
