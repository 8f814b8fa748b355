"""``FakePostHog``: a real HTTP server on 127.0.0.1 that validates like PostHog.

It accepts the v0 capture endpoints (plain and gzip), capture v1
(``/i/v1/analytics/events`` with per-event results, ``_v1``), LLM analytics
(``/i/v0/ai/batch/``, 8 MiB per event, ``_ai``) and OTLP/JSON logs and traces
(``/i/v1/logs``, ``/i/v1/traces``, checked by ``_otlp_check``; 413 over 2 MB as PostHog
does), answers with the status codes the
real capture service uses (400 for an invalid event, 401 for a bad token, 413 for a
body or event too large), records
every request and every accepted event, injects faults on demand, and serves ``/flags``
and ``/flags/definitions`` from data that tests can replace at run time. Until a test
sets a ``/flags`` answer, ``/flags`` evaluates the server's own flag definitions (with
the library's evaluator), so one ``set_flag_definitions`` serves local and remote reads.
``posthog-otel dev-server`` runs one on a fixed port with a web view (``_devview``
observes the requests and serves its own paths through ``_observer`` and ``_route``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._ai import AI_MAX_EVENT_BYTES, AI_PATH
from ._flags_answer import evaluate_definitions
from ._otlp_check import OtlpInvalid, check_logs_request, check_traces_request
from ._requests import (
    CAPTURE_PATHS,
    MAX_BODY_BYTES,
    Rejected,
    decode_body,
    events_of,
    json_or_none,
    normalize_path,
    token_of,
    valid_token,
    validate_exception,
)
from ._v1 import V1_PATH, ResultFor, handle_v1

LOGS_PATH = "/i/v1/logs"
TRACES_PATH = "/i/v1/traces"
MAX_OTLP_BODY_BYTES = 2_000_000  # PostHog Logs: 413 above 2 MB (sdk-contracts LOG-31)
MAX_EVENT_BYTES = 1_000_000


@dataclass
class RecordedRequest:
    """One request as the server saw it (body already decompressed)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_body: bytes
    body: bytes
    status: int
    json: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)
    log_records: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    reply: Any = None  # the JSON answered (``None`` for 304 and dropped connections)


FlagsAnswer = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]
# Given the handler, method and path, answers a request itself (True) or passes (False).
_Route = Callable[[BaseHTTPRequestHandler, str, str], bool]


@dataclass
class _Fault:
    status: int | None = None  # answer with this status
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer
    hold: threading.Event | None = None  # wait until set before answering
    path: str | None = None  # only for this path (normalized, no trailing slash)


class FakePostHog:
    """A fake PostHog on a random loopback port. Use as a context manager or call
    ``start()``/``stop()``; ``url`` is the host to give the client."""

    def __init__(
        self,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_otlp_body_bytes: int = MAX_OTLP_BODY_BYTES,
        flags: Mapping[str, Any] | None = None,
        flag_definitions: Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        keep: int | None = None,
    ) -> None:
        """``host``/``port``: where to listen (a random loopback port by default);
        ``keep``: remember only about the last ``keep`` requests and items of each kind
        (a server that runs for long), instead of all."""
        self.max_body_bytes = max_body_bytes
        self.max_event_bytes = max_event_bytes
        self.max_otlp_body_bytes = max_otlp_body_bytes
        self._lock = threading.Condition()
        self._faults: deque[_Fault] = deque()
        self.requests: list[RecordedRequest] = []
        self.events: list[dict[str, Any]] = []
        self._ai_events: list[dict[str, Any]] = []
        self._log_records: list[dict[str, Any]] = []
        self._spans: list[dict[str, Any]] = []
        self._flags_response: FlagsAnswer | None = flags
        self._definitions: Mapping[str, Any] = flag_definitions or {
            "flags": [],
            "group_type_mapping": {},
            "cohorts": {},
        }
        self._reject_if: Callable[[dict[str, Any]], bool] | None = None
        self._event_results: ResultFor | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address, self._keep = (host, port), keep
        self._observer: Callable[[RecordedRequest], None] | None = None
        self._route: _Route | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakePostHog:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(self._address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="FakePostHog",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for fault in self._faults:
                if fault.hold is not None:
                    fault.hold.set()
            self._faults.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePostHog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakePostHog is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---------------------------------------------------------------- faults

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (to ``path``, if given) with ``status``."""
        for _ in range(count):
            self._add_fault(
                _Fault(
                    status=status,
                    retry_after=None if retry_after is None else str(retry_after),
                    path=path,
                )
            )

    def delay_next(self, seconds: float, count: int = 1, *, path: str | None = None) -> None:
        """Wait ``seconds`` before handling each of the next ``count`` requests."""
        for _ in range(count):
            self._add_fault(_Fault(delay=seconds, path=path))

    def drop_next(self, count: int = 1, *, path: str | None = None) -> None:
        """Close the connection of the next ``count`` requests without answering."""
        for _ in range(count):
            self._add_fault(_Fault(drop=True, path=path))

    def hold_next(self, *, path: str | None = None) -> threading.Event:
        """Hold the next request until the returned event is set (then handle it)."""
        release = threading.Event()
        self._add_fault(_Fault(hold=release, path=path))
        return release

    def reject_if(self, predicate: Callable[[dict[str, Any]], bool] | None) -> None:
        """Answer 400 to any capture request holding an event for which ``predicate`` is
        true, as the real server does for events it cannot accept (all or nothing)."""
        with self._lock:
            self._reject_if = predicate

    def set_event_results(self, decide: ResultFor | None) -> None:
        """Capture v1: the per-event result for each event of a request to
        ``/i/v1/analytics/events``, ``decide(event)`` → ``"drop"`` (rejected),
        ``"retry"`` (to be sent again), ``"warning"``, or ``None``/``"ok"`` (stored).
        ``reject_if`` answers ``"drop"`` there, for its events only."""
        with self._lock:
            self._event_results = decide

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.path is not None:
            fault.path = normalize_path(fault.path)
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path == path:
                    self._faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- flags

    def set_flags(self, response: FlagsAnswer | None) -> None:
        """What ``/flags`` answers: a fixed body, or a function of the request body;
        ``None`` (the default) evaluates the flag definitions for each request."""
        with self._lock:
            self._flags_response = response

    def set_flag_definitions(self, definitions: Mapping[str, Any]) -> None:
        """What ``/flags/definitions`` (and the legacy local-evaluation path) serve."""
        with self._lock:
            self._definitions = definitions

    # ---------------------------------------------------------------- inspection

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` events were accepted; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.events) >= count, timeout):
                raise TimeoutError(f"expected {count} events, got {len(self.events)}")
            return list(self.events)

    def wait_for_requests(
        self, count: int, timeout: float = 10.0, *, path: str | None = None
    ) -> list[RecordedRequest]:
        """Block until at least ``count`` requests (to ``path``) were answered."""
        wanted = normalize_path(path) if path else None

        def matching() -> list[RecordedRequest]:
            return [r for r in self.requests if wanted is None or r.path == wanted]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, got {len(matching())}")
            return matching()

    def log_records(self) -> list[dict[str, Any]]:
        """Every accepted OTLP log record (``logRecords`` entries as sent), in order."""
        with self._lock:
            return list(self._log_records)

    def wait_for_log_records(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` log records were accepted; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._log_records) >= count, timeout):
                raise TimeoutError(f"expected {count} log records, got {len(self._log_records)}")
            return list(self._log_records)

    def spans(self) -> list[dict[str, Any]]:
        """Every accepted OTLP span (``spans`` entries as sent), in order."""
        with self._lock:
            return list(self._spans)

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` spans were accepted; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._spans) >= count, timeout):
                raise TimeoutError(f"expected {count} spans, got {len(self._spans)}")
            return list(self._spans)

    def ai_events(self, count: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The events accepted on the AI route (``capture_ai``), after waiting until there
        are at least ``count``."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._ai_events) >= count, timeout):
                raise TimeoutError(f"expected {count} AI events, got {len(self._ai_events)}")
            return list(self._ai_events)

    def event_names(self) -> list[str]:
        with self._lock:
            return [e.get("event", "") for e in self.events]

    def capture_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path in CAPTURE_PATHS or r.path == V1_PATH]

    def reset(self) -> None:
        """Forget recorded requests and events (faults and flag data stay)."""
        with self._lock:
            self.requests.clear()
            self.events.clear()
            self._ai_events.clear()
            self._log_records.clear()
            self._spans.clear()

    # ---------------------------------------------------------------- handling

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            (self._ai_events if request.path == AI_PATH else self.events).extend(request.events)
            self._log_records.extend(request.log_records)
            self._spans.extend(request.spans)
            if self._keep is not None:  # trimmed by halves: amortized O(1) per request
                kept: list[Any]
                for kept in (
                    self.requests,
                    self.events,
                    self._ai_events,
                    self._log_records,
                    self._spans,
                ):
                    if len(kept) > 2 * self._keep:
                        del kept[: len(kept) - self._keep]
            self._lock.notify_all()
            observer = self._observer
        if observer is not None:
            observer(request)

    def _handle_capture(
        self, raw: bytes, headers: Mapping[str, str], path: str, max_event: int | None = None
    ) -> tuple[int, bytes, bytes, Any, list[dict[str, Any]]]:
        if len(raw) > self.max_body_bytes:
            raise Rejected(413, "payload_too_large", "request body too large")
        body = decode_body(raw, headers)
        if not body:
            raise Rejected(400, "empty_payload", "empty payload")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, "invalid_utf8", "body is not UTF-8") from None
        try:
            payload = json.loads(text)
        except ValueError:
            raise Rejected(400, "request_parsing_error", "body is not JSON") from None
        events, batch_token = events_of(payload, path)
        token = token_of(events, batch_token)
        if not events:
            raise Rejected(400, "empty_batch", "empty batch")
        for event in events:
            self._validate_event(event, max_event or self.max_event_bytes)
        return 200, body, text.encode(), payload, events if token else []

    def _handle_v1(
        self, raw: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, Any, list[dict[str, Any]], Any]:
        """``POST /i/v1/analytics/events``: validated and answered per event (``_v1``)."""
        decide, reject = self._event_results, self._reject_if

        def result(event: dict[str, Any]) -> str | None:
            if reject is not None and reject(event):
                return "drop"
            return decide(event) if decide is not None else None

        return handle_v1(raw, headers, max_event_bytes=self.max_event_bytes, decide=result)

    def _handle_otlp(
        self, raw: bytes, headers: Mapping[str, str], query: Mapping[str, list[str]], path: str
    ) -> tuple[bytes, Any, list[dict[str, Any]]]:
        """``POST /i/v1/logs`` or ``/i/v1/traces``: token (query or Bearer), 2 MB cap,
        valid OTLP/JSON; the log records or spans."""
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not valid_token((query.get("token") or [""])[0] or bearer):
            raise Rejected(401, "invalid_token", "missing or invalid project token")
        if len(raw) > self.max_otlp_body_bytes:
            raise Rejected(413, "payload_too_large", "request body too large")
        body = decode_body(raw, headers)
        if len(body) > self.max_otlp_body_bytes:
            raise Rejected(413, "payload_too_large", "decompressed body too large")
        try:
            payload = json.loads(body)
            check = check_logs_request if path == LOGS_PATH else check_traces_request
            records = check(payload)
        except (ValueError, OtlpInvalid) as exc:
            raise Rejected(400, "invalid_otlp", str(exc)) from None
        return body, payload, records

    def _validate_event(self, event: Any, max_event_bytes: int) -> None:
        if not isinstance(event, dict):
            raise Rejected(400, "request_parsing_error", "event is not an object")
        if "event" not in event:
            raise Rejected(400, "request_hydration_error", "event without a name")
        if not event["event"]:
            raise Rejected(400, "missing_event_name", "empty event name")
        properties = event.get("properties") or {}
        distinct_id = event.get("distinct_id", event.get("$distinct_id"))
        if distinct_id is None and isinstance(properties, dict):
            distinct_id = properties.get("distinct_id")
        if distinct_id is None or distinct_id == "":
            raise Rejected(400, "missing_distinct_id", "missing distinct_id")
        event_uuid = event.get("uuid")
        if event_uuid not in (None, ""):
            try:
                uuid.UUID(str(event_uuid))
            except ValueError:
                raise Rejected(400, "request_parsing_error", "invalid uuid") from None
        if (
            isinstance(properties, dict)
            and "$cookieless_mode" in properties
            and not isinstance(properties["$cookieless_mode"], bool)
        ):  # null too: present and not a boolean
            raise Rejected(400, "invalid_cookieless_mode", "non-boolean $cookieless_mode")
        if event["event"] == "$exception":
            validate_exception(properties)
        predicate = self._reject_if
        if predicate is not None and predicate(event):
            raise Rejected(400, "invalid_event", "event rejected by reject_if")
        if len(json.dumps(event).encode()) > max_event_bytes:
            raise Rejected(413, "event_too_big", "maximum event size exceeded")

    def _handle_flags(self, body: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(request, dict) or not valid_token(
            request.get("api_key") or request.get("token")
        ):
            return 401, {"error": "invalid token"}
        if not request.get("distinct_id"):
            return 400, {"error": "missing distinct_id"}
        with self._lock:
            response = self._flags_response
            definitions = self._definitions
        if response is None:
            answer: Mapping[str, Any] = evaluate_definitions(definitions, request)
        else:
            answer = response(request) if callable(response) else response
        out = {
            "errorsWhileComputingFlags": False,
            "requestId": str(uuid.uuid4()),
            "evaluatedAt": int(time.time() * 1000),
        }
        out.update(answer)
        return 200, out

    def _handle_definitions(self, headers: Mapping[str, str]) -> tuple[int, Any, str | None]:
        auth = headers.get("authorization", "")
        secret = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not secret or secret.startswith("phc_"):
            return 401, {"detail": "authentication required"}, None
        with self._lock:
            definitions = self._definitions
        body = json.dumps(definitions, sort_keys=True).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if headers.get("if-none-match") == etag:
            return 304, None, etag
        return 200, definitions, etag


def _make_handler(server: FakePostHog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffer the answer so headers and body leave in one segment (no Nagle stall).
        wbufsize = 64 * 1024

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            route = server._route
            if route is not None and route(self, method, parts.path):
                return
            path = normalize_path(parts.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            fault = server._take_fault(path)
            if fault is not None:
                if fault.hold is not None:
                    fault.hold.wait(30)
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault.status is not None:
                    retry = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    answer = {"error": "injected fault"}
                    server._record(
                        RecordedRequest(
                            method, path, query, headers, raw, b"", fault.status, reply=answer
                        )
                    )
                    self._reply(fault.status, answer, retry)
                    return
            status, body, payload = 200, b"", None
            events: list[dict[str, Any]] = []
            log_records: list[dict[str, Any]] = []
            spans: list[dict[str, Any]] = []
            reply: Any = {"status": 1}
            extra: dict[str, str] = {}
            try:
                if path in CAPTURE_PATHS:
                    if method != "POST":
                        reply = {"status": 1}
                    else:
                        status, body, _text, payload, events = server._handle_capture(
                            raw, headers, path
                        )
                elif path == AI_PATH and method == "POST":
                    status, body, _text, payload, events = server._handle_capture(
                        raw, headers, path, AI_MAX_EVENT_BYTES
                    )
                elif path == V1_PATH and method == "POST":
                    body, payload, events, reply = server._handle_v1(raw, headers)
                elif path in (LOGS_PATH, TRACES_PATH) and method == "POST":
                    body, payload, items = server._handle_otlp(raw, headers, query, path)
                    if path == LOGS_PATH:
                        log_records = items
                    else:
                        spans = items
                    reply = {}
                elif path == "/flags":
                    body = decode_body(raw, headers)
                    status, reply = server._handle_flags(body)
                    payload = json_or_none(body)
                elif path in ("/flags/definitions", "/api/feature_flag/local_evaluation"):
                    status, reply, etag = server._handle_definitions(headers)
                    if etag:
                        extra["ETag"] = etag
                else:
                    status, reply = 404, {"error": "not found"}
            except Rejected as rejected:
                status, reply = rejected.status, {"code": rejected.code, "error": str(rejected)}
                events, log_records, spans = [], [], []
            # Recorded before answering, so a client that saw the answer finds the record.
            server._record(
                RecordedRequest(
                    method,
                    path,
                    query,
                    headers,
                    raw,
                    body,
                    status,
                    payload,
                    events,
                    log_records,
                    spans,
                    reply,
                )
            )
            self._reply(status, reply, extra)

        def _reply(self, status: int, reply: Any, extra: Mapping[str, str]) -> None:
            data = b"" if status == 304 or reply is None else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            if data:
                self.wfile.write(data)

    return Handler
