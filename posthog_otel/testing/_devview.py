"""The live web view of ``posthog-otel dev-server``: what a ``FakePostHog`` receives,
shown in a browser as it arrives, and its flag definitions editable as JSON.

The fake server stays a test double; the view observes its requests (``_observer``)
and answers a few paths of its own (``_route``): ``/`` the page (``_devview.html``:
inline script and style, no build step, no external asset), ``/_dev/stream`` the
arrivals as server-sent events, ``/_dev/state`` the same as one JSON document, and
``POST /_dev/definitions`` the editor's save (what ``/flags/definitions`` and ``/flags``
then serve).

Memory is bounded: the view keeps the last ``keep`` entries, each serialized once and
cut to about ``MAX_ENTRY_CHARS``. What an app sends is data, never markup: the page
renders it with ``textContent`` only, and its Content-Security-Policy allows no script
or style but its own (by hash). The view answers only a ``Host`` it listens as (a
loopback name; bound to all interfaces, also an address or this machine's name: no
DNS rebinding, which needs a name of the attacker's), and a save must be a
same-origin JSON POST (no CSRF from another site open in the developer's browser).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any

from ._ai import AI_PATH
from ._requests import CAPTURE_PATHS, normalize_path
from ._server import LOGS_PATH, TRACES_PATH, FakePostHog, RecordedRequest
from ._v1 import V1_PATH

__all__ = ["DevView"]

MAX_ENTRY_CHARS = 64 * 1024  # an entry's details beyond this are cut (AI events reach 8 MiB)
MAX_DEFINITIONS_BYTES = 10 * 1024 * 1024
_CLIP = 300  # names and ids in an entry's summary line
_HEARTBEAT = 15.0  # seconds between comments on an idle stream (finds dead connections)
_WAKE = 1.0  # a stream also looks for definitions set through the Python API this often

_LANES: dict[str, str] = {
    **dict.fromkeys(CAPTURE_PATHS, "analytics v0"),
    V1_PATH: "analytics v1",
    AI_PATH: "ai",
    LOGS_PATH: "logs",
    TRACES_PATH: "traces",
    "/flags": "flags",
    "/flags/definitions": "definitions",
    "/api/feature_flag/local_evaluation": "definitions",
}
# Where OpenTelemetry attributes carry identity (what the exporters and the logs lane set).
_ID_KEYS = ("posthogDistinctId", "posthog.distinct_id", "posthog.context_distinct_id")
_SESSION_KEYS = ("sessionId", "session.id", "$session_id", "posthog.context_session_id")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_ANY = {"", "0.0.0.0", "::"}


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _machine_names() -> set[str]:
    """This machine's host name, short and as mDNS announces it (no DNS lookup)."""
    name = socket.gethostname().lower().rstrip(".")
    short = name.partition(".")[0]
    return {name, short, f"{short}.local"}


def _page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (its one script and style, by hash)."""
    html = resources.files(__package__).joinpath("_devview.html").read_text("utf-8")

    def digest(tag: str) -> str:
        match = re.search(f"<{tag}>(.*?)</{tag}>", html, re.S)
        assert match is not None, tag
        value = base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()
        return f"'sha256-{value}'"

    policy = (
        f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
        "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html.encode(), policy


class DevView:
    """Attach a live web view to ``server`` (started or not): its page at ``/``.

    ``keep``: how many recent arrivals the view remembers (older ones drop out).
    ``close()`` ends the open streams and detaches the view."""

    def __init__(self, server: FakePostHog, *, keep: int = 500) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self._server = server
        self._cond = threading.Condition()
        self._entries: deque[tuple[int, str]] = deque(maxlen=keep)
        self._seq = 0
        self._counts: dict[str, int] = {}
        self._closed = False
        self._page, self._policy = _page()
        server._observer = self._observe
        server._route = self._route

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._server._observer == self._observe:
            self._server._observer = None
            self._server._route = None

    # ---------------------------------------------------------------- arrivals

    def _observe(self, request: RecordedRequest) -> None:
        """A request the server answered, as entries of the view (on its thread)."""
        entries = _entries(request)
        lane = _LANES.get(request.path, "other")
        now = int(time.time() * 1000)
        with self._cond:
            self._counts[lane] = self._counts.get(lane, 0) + max(1, len(entries))
            if request.status >= 400:
                self._counts["rejected"] = self._counts.get("rejected", 0) + 1
            for entry in entries:
                self._seq += 1
                entry.update(seq=self._seq, time=now)
                self._entries.append((self._seq, _dump(entry)))
            self._cond.notify_all()

    def _snapshot(self) -> dict[str, Any]:
        with self._cond:
            texts = [text for _, text in self._entries]
            counts = dict(self._counts)
        return {
            "host": self._server.url,
            "keep": self._entries.maxlen,
            "counts": counts,
            "entries": [json.loads(text) for text in texts],
            "definitions": self._definitions_message(),
        }

    def _definitions_message(self) -> dict[str, Any]:
        """The definitions served, and per flag whether a client decides it locally."""
        from ..flags import Definitions, why_not_local

        definitions = self._server._definitions
        flags = []
        try:
            compiled = Definitions(definitions)
            for key, flag in compiled.flags.items():
                why = why_not_local(compiled, flag)
                flags.append({"key": key, "active": flag.active, "local": why is None, "why": why})
        except Exception as exc:  # set through the Python API: shown, never fatal
            flags.append({"key": "?", "active": False, "local": False, "why": str(exc)})
        return {"definitions": definitions, "flags": flags}

    # ---------------------------------------------------------------- HTTP

    def _route(self, handler: BaseHTTPRequestHandler, method: str, raw_path: str) -> bool:
        path = normalize_path(raw_path)
        if path != "/" and path != "/_dev" and not path.startswith("/_dev/"):
            return False
        body = b""
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            if length > MAX_DEFINITIONS_BYTES:
                handler.close_connection = True
                _send(handler, 413, {"error": "too large"})
                return True
            body = handler.rfile.read(length) if length else b""
        if not self._host_allowed(handler.headers.get("Host", "")):
            _send(handler, 403, {"error": "this view answers only its own host name"})
        elif method == "GET" and path in ("/", "/_dev"):
            _send_page(handler, self._page, self._policy)
        elif method == "GET" and path == "/_dev/state":
            _send(handler, 200, self._snapshot())
        elif method == "GET" and path == "/_dev/stream":
            self._stream(handler)
        elif method == "POST" and path == "/_dev/definitions":
            status, answer = self._save(handler, body)
            _send(handler, status, answer)
        else:
            _send(handler, 404, {"error": "not found"})
        return True

    def _host_allowed(self, host: str) -> bool:
        bound = str(self._server._address[0]).lower()
        if host.startswith("["):  # [::1]:8010
            name = host[1:].partition("]")[0]
        else:
            name = host.rpartition(":")[0] if ":" in host else host
        name = name.lower()
        if name in _LOOPBACK or name == bound:
            return True
        # On every interface: this machine's address or name, never another name (a
        # site's own name rebound to this machine's address, DNS rebinding).
        return bound in _ANY and (_is_address(name) or name in _machine_names())

    def _save(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, Any]:
        """The editor's save: same-origin JSON only; what PostHog would serve, checked by
        the library's compiler before the server serves it."""
        from ..flags import Definitions

        kind = handler.headers.get("Content-Type", "").split(";")[0].strip().lower()
        origin = handler.headers.get("Origin")
        if kind != "application/json" or (
            origin is not None and origin != f"http://{handler.headers.get('Host', '')}"
        ):
            return 403, {"error": "a JSON POST from this page only"}
        try:
            data = json.loads(body)
        except ValueError as exc:
            return 400, {"error": f"not JSON: {exc}"}
        if not isinstance(data, dict) or not isinstance(data.get("flags"), list):
            return 400, {"error": 'expected an object with a "flags" list'}
        for index, flag in enumerate(data["flags"]):
            if not isinstance(flag, dict) or not isinstance(flag.get("key"), str):
                return 400, {"error": f'flags[{index}] is not an object with a string "key"'}
        data.setdefault("group_type_mapping", {})
        data.setdefault("cohorts", {})
        try:
            Definitions(data)
        except Exception as exc:
            return 400, {"error": f"the definitions do not compile: {exc}"}
        self._server.set_flag_definitions(data)
        with self._cond:
            self._cond.notify_all()  # the open pages show the new definitions now
        return 200, self._definitions_message()

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        """Server-sent events: a snapshot, then each arrival, the counts and the
        definitions when they change, until the client leaves or the view closes."""
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        with self._cond:
            sent = self._seq
        shown = self._server._definitions
        out = [_event("snapshot", self._snapshot())]
        last_write = 0.0
        while True:
            if out:
                try:
                    handler.wfile.write("".join(out).encode())
                    handler.wfile.flush()
                except OSError:
                    return
                last_write, out = time.monotonic(), []
            with self._cond:
                if not self._closed and self._seq == sent:
                    self._cond.wait(_WAKE)  # woken by an arrival, a save or close()
                if self._closed:
                    return
                new = [text for seq, text in self._entries if seq > sent]
                counts, sent = dict(self._counts), self._seq
            out = [f"event: entry\ndata: {text}\n\n" for text in new]
            if new:
                out.append(_event("counts", counts))
            if self._server._definitions is not shown:
                shown = self._server._definitions
                out.append(_event("definitions", self._definitions_message()))
            if not out and time.monotonic() - last_write > _HEARTBEAT:
                out.append(": ping\n\n")


# -------------------------------------------------------------------- entries


def _entries(request: RecordedRequest) -> list[dict[str, Any]]:
    """What the view shows of one request: an entry per event, log record, span or
    ``/flags`` answer; one for a refused request; none for a served definitions poll."""
    lane = _LANES.get(request.path, "other")
    if request.status >= 400:
        reply = request.reply if isinstance(request.reply, dict) else {}
        what = reply.get("code") or reply.get("error") or reply.get("detail") or "refused"
        return [
            _entry(
                lane,
                "rejected",
                f"{request.method} {request.path}: HTTP {request.status} {what}",
                detail={"answer": request.reply, "request": request.json},
                status=request.status,
            )
        ]
    if lane in ("analytics v0", "analytics v1", "ai"):
        return [_event_entry(lane, event) for event in request.events]
    if lane == "logs":
        return [_log_entry(record) for record in request.log_records]
    if lane == "traces":
        return [_span_entry(span) for span in request.spans]
    if lane == "flags":
        return [_flags_entry(request)]
    if lane == "other":
        name = f"{request.method} {request.path}: HTTP {request.status}"
        return [_entry(lane, "request", name, detail=request.json, status=request.status)]
    return []


def _entry(
    lane: str,
    kind: str,
    name: Any,
    *,
    distinct_id: Any = None,
    session_id: Any = None,
    groups: Any = None,
    detail: Any = None,
    status: int = 200,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "lane": lane,
        "kind": kind,
        "name": _clip(name),
        "distinct_id": None if distinct_id is None else _clip(distinct_id),
        "session_id": None if session_id is None else _clip(session_id),
        "groups": _small(groups or None),
        "status": status,
        "detail": detail,
        **extra,
    }


def _event_entry(lane: str, event: Mapping[str, Any]) -> dict[str, Any]:
    properties = event.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    distinct_id = event.get("distinct_id", event.get("$distinct_id"))
    return _entry(
        lane,
        "event",
        event.get("event"),
        distinct_id=properties.get("distinct_id") if distinct_id is None else distinct_id,
        session_id=event.get("session_id") or properties.get("$session_id"),
        groups=properties.get("$groups"),
        detail={k: v for k, v in event.items() if k != "properties"} | {"properties": properties},
    )


def _log_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    attributes = _attributes(record.get("attributes"))
    body = _otlp_value(record.get("body"))
    return _entry(
        "logs",
        "log",
        f"{record.get('severityText') or 'LOG'} {body if isinstance(body, str) else _dump(body)}",
        distinct_id=_first(attributes, _ID_KEYS),
        session_id=_first(attributes, _SESSION_KEYS),
        detail={k: v for k, v in record.items() if k not in ("attributes", "body")}
        | {"body": body, "attributes": attributes},
    )


def _span_entry(span: Mapping[str, Any]) -> dict[str, Any]:
    attributes = _attributes(span.get("attributes"))
    return _entry(
        "traces",
        "span",
        span.get("name"),
        distinct_id=_first(attributes, _ID_KEYS),
        session_id=_first(attributes, _SESSION_KEYS),
        detail={k: v for k, v in span.items() if k != "attributes"} | {"attributes": attributes},
    )


def _flags_entry(request: RecordedRequest) -> dict[str, Any]:
    """A ``/flags`` request and what was served: each flag's value (variant, else
    enabled)."""
    asked = request.json if isinstance(request.json, dict) else {}
    flags = request.reply.get("flags") if isinstance(request.reply, dict) else None
    served: dict[str, Any] = {}
    for key, flag in (flags or {}).items():
        if isinstance(flag, dict):
            served[str(key)] = flag.get("variant") or bool(flag.get("enabled"))
    return _entry(
        "flags",
        "flags",
        "/flags",
        distinct_id=asked.get("distinct_id"),
        groups=asked.get("groups"),
        detail={"request": asked, "answer": request.reply},
        served=_small(served),
    )


def _otlp_value(value: Any) -> Any:
    """An OTLP/JSON ``AnyValue`` as plain JSON."""
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if isinstance(value.get("arrayValue"), dict):
        return [_otlp_value(item) for item in value["arrayValue"].get("values") or []]
    if isinstance(value.get("kvlistValue"), dict):
        return _attributes(value["kvlistValue"].get("values"))
    return None


def _attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        str(item.get("key")): _otlp_value(item.get("value"))
        for item in items
        if isinstance(item, dict)
    }


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attributes[key] for key in keys if attributes.get(key)), None)


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else _dump(value)
    return text if len(text) <= _CLIP else text[: _CLIP - 1] + "…"


def _small(value: Any) -> Any:
    """``value``, or its clipped text when it is large (a summary line's groups)."""
    return value if value is None or len(_dump(value)) <= _CLIP * 4 else _clip(value)


def _dump(entry: Any) -> str:
    """``entry`` as one line of JSON, its ``detail`` cut to about ``MAX_ENTRY_CHARS``."""
    text = json.dumps(entry, default=str)
    if len(text) > MAX_ENTRY_CHARS and isinstance(entry, dict) and "detail" in entry:
        detail = json.dumps(entry["detail"], default=str)
        cut = {"cut": f"{len(detail)} characters; the first {MAX_ENTRY_CHARS // 2}"}
        entry = entry | {"detail": cut | {"text": detail[: MAX_ENTRY_CHARS // 2]}}
        text = json.dumps(entry, default=str)
    return text


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def _send(handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
    body = json.dumps(data, default=str).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.end_headers()
    handler.wfile.write(body)


def _send_page(handler: BaseHTTPRequestHandler, page: bytes, policy: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(page)))
    handler.send_header("Content-Security-Policy", policy)
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.send_header("Referrer-Policy", "no-referrer")
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(page)
