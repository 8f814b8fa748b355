"""Bad servers cannot stop delivery, hang a caller or lose events uncounted (issue #9
items 1, 2, 7, 8): huge ``Retry-After``, trickling answers, mislabelled gzip, malformed
hosts, errors that escape a background thread's loop."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from posthog_otel import Client
from posthog_otel._threads import start_supervised
from posthog_otel.export import SystemClock
from posthog_otel.export._retry import COOLDOWN_MAX, MAX_BACKOFF, backoff, parse_retry_after
from posthog_otel.export._transport import HttpTransport, TransportError
from posthog_otel.logging import PostHogHandler
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY, started_threads
from .hostile_server import HostileServer
from .test_delivery import assert_accounted

HUGE_RETRY_AFTER = ["1e12", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"]


def within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``call`` on a helper thread; fail (instead of hanging) if it takes longer."""
    box: list[Any] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return box[0], time.monotonic() - started


# ---------------------------------------------------------------- item 1: capped waits


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1e12", COOLDOWN_MAX),
        ("inf", COOLDOWN_MAX),
        ("Fri, 31 Dec 9999 23:59:59 GMT", COOLDOWN_MAX),
        ("nan", None),
        ("-5", 0.0),
        ("-inf", 0.0),
        ("7", 7.0),
        ("soon", None),
    ],
)
def test_retry_after_is_finite_and_capped(value, expected):
    assert parse_retry_after({"retry-after": value}) == expected


@pytest.mark.parametrize("retry_after", HUGE_RETRY_AFTER)
def test_huge_retry_after_cools_down_at_most_five_minutes(server, make_client, clock, retry_after):
    client = make_client(_clock=clock, max_retries=1)
    server.fail_next(2, 429, retry_after=retry_after)
    client.capture("evt", "u")
    assert client.flush(5) is False  # retained for a later cycle
    assert clock.sleeps and max(clock.sleeps) <= MAX_BACKOFF * 1.2
    clock.advance(COOLDOWN_MAX + 0.5)  # no explicit flush: only the cool-down ends
    server.wait_for_events(1)
    assert server.event_names() == ["evt"]
    assert client.stats.retained == 0


@pytest.mark.parametrize("retry_after", HUGE_RETRY_AFTER)
def test_huge_retry_after_does_not_kill_the_flush_thread(server, make_client, retry_after):
    before = set(threading.enumerate())
    client = make_client(max_retries=0)
    server.fail_next(1, 429, retry_after=retry_after)
    client.capture("first", "u")
    assert client.flush(5) is False
    client.capture("second", "u")
    assert client.flush(5) is True  # the thread still works: an explicit flush delivers
    assert server.event_names() == ["first", "second"]
    stats = client.stats
    assert stats.thread_restarts == 0 and stats.sent == 2
    [flush_thread] = started_threads(before, "posthog_otel-flush")
    assert flush_thread.is_alive()


def test_backoff_never_overflows_whatever_max_retries_is():
    assert 0 < backoff(5_000, None) <= MAX_BACKOFF * 1.2
    assert backoff(5_000, 10.0) <= MAX_BACKOFF * 1.2


@pytest.mark.parametrize("value", [1e12, float("inf")])
def test_huge_timeouts_are_capped_and_everything_still_works(server, value):
    before = set(threading.enumerate())
    client = Client(
        API_KEY,
        host=server.url,
        timeout=value,
        shutdown_timeout=value,
        feature_flags_request_timeout=value,
        _exit_hook=False,
    )
    server.set_flags({"flags": {"beta": {"key": "beta", "enabled": True}}})
    client.capture("e", "u")
    assert within(20, lambda: client.flush(value))[0] is True
    assert within(20, lambda: client.get_feature_flag("beta", "u"))[0] is True
    [flush_thread] = started_threads(before, "posthog_otel-flush")
    assert within(20, lambda: client.close(value))[0] is True
    assert not flush_thread.is_alive()
    assert server.event_names()[0] == "e"
    assert_accounted(client)


@pytest.mark.parametrize("name", ["timeout", "flush_interval", "shutdown_timeout"])
def test_nan_seconds_are_refused(name):
    with pytest.raises(ValueError, match=name):
        Client(API_KEY, **{name: float("nan")})


def test_flush_and_close_with_nan_timeout_do_not_wait_or_raise(server):
    client = Client(API_KEY, host=server.url, _exit_hook=False)
    assert within(10, lambda: client.flush(float("nan")))[0] in (True, False)
    assert within(10, lambda: client.close(float("nan")))[0] in (True, False)
    assert client.capture("after", "u") is None
    assert_accounted(client)


def test_a_huge_flush_interval_cannot_overflow_a_wait(server, make_client):
    client = make_client(flush_interval=1e12)
    client.capture("a", "u")
    assert client.flush(5) is True
    client.capture("b", "u")
    assert client.flush(5) is True
    assert server.event_names() == ["a", "b"]
    assert client.stats.thread_restarts == 0


def test_a_system_exit_on_the_flush_thread_loses_nothing_and_sending_goes_on(server):
    """A hook that raises SystemExit on the flush thread (a deferred item's before_send)
    ends neither the thread nor delivery: its item is counted, the next capture is sent
    without anyone calling flush()."""

    def hook(event):
        if event["event"] == "exit please":
            raise SystemExit(1)
        return event

    client = Client(API_KEY, host=server.url, flush_at=1, before_send=hook, _exit_hook=False)
    try:
        log = logging.getLogger("tests.hostile.system_exit")
        log.propagate = False
        handler = PostHogHandler(client)
        log.addHandler(handler)
        try:
            log.warning("exit please", extra={"distinct_id": "u"})
            client.capture("after", "u")
            server.wait_for_requests(1)  # sent by the flush thread: flush() not called
            assert server.event_names() == ["after"]
            assert client.flush(5) is True
        finally:
            log.removeHandler(handler)
        stats = client.stats
        assert stats.in_flight == 0 and stats.queued == 0 and stats.dropped["invalid"] == 1
        assert_accounted(client)
    finally:
        client.close(2)


class _FailingClock(SystemClock):
    """Real time, but the first ``failures`` idle waits raise: an error that escapes
    the flush thread's loop (the clock is the exporter's timer seam)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def wait(self, cond: threading.Condition, timeout: float | None, *, idle: bool) -> None:
        if idle and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("boom")
        super().wait(cond, timeout, idle=idle)


def test_flush_thread_restarts_after_an_escaping_error(server, make_client, warnings_log):
    client = make_client(_clock=_FailingClock(failures=2))
    client.capture("a", "u")
    assert within(10, lambda: client.flush(5))[0] is True
    client.capture("b", "u")
    assert within(10, lambda: client.flush(5))[0] is True
    assert server.event_names() == ["a", "b"]
    assert client.stats.thread_restarts == 2
    assert "restarting" in warnings_log.text


def test_flush_and_close_never_wait_on_a_dead_flush_thread(server, make_client):
    before = set(threading.enumerate())
    client = make_client(_clock=_FailingClock(failures=10**9))  # every idle wait fails
    client.capture("a", "u")
    assert within(10, client.flush)[0] is True
    [gave_up] = started_threads(before, "posthog_otel-flush")
    gave_up.join(10)  # the thread ends when it gives up after its bounded restarts
    assert not gave_up.is_alive()
    client.capture("b", "u")
    assert within(10, client.flush)[0] is True  # a fresh thread delivers
    client.capture("c", "u")
    assert within(10, client.close)[0] is True
    assert server.event_names() == ["a", "b", "c"]
    assert client.stats.thread_restarts >= 8


def test_supervisor_restarts_counts_and_gives_up():
    runs: list[int] = []
    restarts: list[int] = []
    gave_up = threading.Event()

    def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ValueError("transient")

    thread = start_supervised("test-ok", loop, on_restart=lambda: restarts.append(1))
    thread.join(10)
    assert not thread.is_alive() and len(runs) == 3 and len(restarts) == 2

    def always() -> None:
        raise ValueError("always")

    thread = start_supervised("test-bad", always, on_give_up=gave_up.set)
    assert gave_up.wait(10)
    thread.join(10)
    assert not thread.is_alive()


def test_flags_poller_restarts_after_an_escaping_error():
    definitions = {"flags": [], "group_type_mapping": {}, "cohorts": {}}
    with FakePostHog(flag_definitions=definitions) as server:
        before = set(threading.enumerate())
        client = Client(
            API_KEY,
            host=server.url,
            secret_key="phs_secret",
            feature_flags_poll_interval=0.05,
            _clock=_FailingClock(failures=2),
        )
        try:
            assert client.get_feature_flag("missing", "u", send_feature_flag_events=False) is None
            server.wait_for_requests(4, path="/flags/definitions")
            [poller] = started_threads(before, "posthog_otel-flags")
            assert poller.is_alive()
            assert client.stats.thread_restarts == 2
        finally:
            client.close(2)


# ---------------------------------------------------------------- item 2: deadlines


@pytest.mark.parametrize("mode", ["trickle_body", "trickle_headers"])
def test_capture_request_has_an_overall_deadline(mode, clock):
    with HostileServer(mode) as hostile:
        client = Client(API_KEY, host=hostile.url, timeout=1, max_retries=1, _clock=clock)
        try:
            client.capture("evt", "u")
            delivered, elapsed = within(20, lambda: client.flush(15))
            assert delivered is False
            assert elapsed < 5  # two attempts of at most ~1 s each (the backoff is fake)
            stats = client.stats
            assert stats.retries == 1 and stats.retained == 1 and stats.in_flight == 0
            assert len(hostile.hits) == 2
        finally:
            within(10, lambda: client.close(1))
        assert_accounted(client)


@pytest.mark.parametrize("mode", ["trickle_body", "trickle_headers", "silent"])
def test_user_http_client_gets_the_overall_deadline_too(mode, clock):
    with HostileServer(mode) as hostile, httpx.Client() as http:
        client = Client(
            API_KEY, host=hostile.url, timeout=1, max_retries=0, http_client=http, _clock=clock
        )
        try:
            client.capture("evt", "u")
            delivered, elapsed = within(20, lambda: client.flush(15))
            assert delivered is False and elapsed < 5
        finally:
            within(10, lambda: client.close(1))


def test_the_deadline_backend_wraps_a_shared_user_client_once(server):
    """Two clients on one ``http_client``: its pool's backend is wrapped once, and the
    user's own requests (no deadline on their thread) pass through unchanged."""
    with httpx.Client() as http:
        first = HttpTransport(server.url, user_agent="t", http_client=http)
        second = HttpTransport(server.url, user_agent="t", http_client=http)
        assert first.request("GET", "/flags/definitions", timeout=5).status
        assert second.request("GET", "/flags/definitions", timeout=5).status
        backend = http._transport._pool._network_backend
        assert type(backend).__name__ == "DeadlineBackend"
        assert type(backend._inner).__name__ != "DeadlineBackend"
        assert http.get(server.url + "/flags/definitions").status_code


def test_a_client_without_the_expected_internals_keeps_working():
    """Should httpx change its internals, requests still go (with the body check only)."""

    class Unusual(httpx.Client):
        """A client whose pool is not where today's httpx keeps it."""

        def __init__(self) -> None:
            super().__init__()
            self._renamed = self.__dict__.pop("_transport")

        def _transport_for_url(self, url: httpx.URL) -> httpx.BaseTransport:
            return self._renamed

    http = Unusual()
    try:
        with HostileServer("ok") as hostile:
            transport = HttpTransport(hostile.url, user_agent="t", http_client=http)
            assert transport.request("GET", "/x", timeout=5).status == 200
    finally:
        http._renamed.close()


@pytest.mark.parametrize("mode", ["trickle_body", "trickle_headers"])
def test_remote_flag_read_has_an_overall_deadline(mode):
    with HostileServer(mode) as hostile:
        client = Client(API_KEY, host=hostile.url, feature_flags_request_timeout=1)
        try:
            value, elapsed = within(20, lambda: client.get_feature_flag("beta", "u1"))
            assert value is None
            # one retry (feature_flags_request_max_retries=1) after 0.3 s
            assert elapsed < 5
            enabled, elapsed = within(
                20, lambda: client.is_feature_enabled("beta", "u2", default_value=True)
            )
            assert enabled is True and elapsed < 5
        finally:
            within(10, lambda: client.close(1))


@pytest.mark.parametrize("mode", ["trickle_body", "trickle_headers", "silent"])
def test_every_transport_request_has_an_overall_deadline(mode):
    """The shared transport (capture, /flags, definitions) ends every request in time."""
    with HostileServer(mode) as hostile:
        transport = HttpTransport(hostile.url, user_agent="t")
        try:
            for method in ("GET", "POST"):
                started = time.monotonic()
                with pytest.raises(TransportError):
                    transport.request(method, "/flags/definitions", content=b"{}", timeout=1)
                assert time.monotonic() - started < 3
        finally:
            transport.close()


def test_a_server_that_does_not_read_cannot_stretch_a_send():
    with HostileServer("no_read") as hostile:
        transport = HttpTransport(hostile.url, user_agent="t")
        body = os.urandom(8 * 1024 * 1024)  # more than the socket buffers hold
        try:
            started = time.monotonic()
            with pytest.raises(TransportError):
                transport.request("POST", "/batch/", content=body, timeout=1)
            assert time.monotonic() - started < 3
        finally:
            transport.close()


def test_response_body_is_read_up_to_a_cap():
    with HostileServer("huge", size=50 * 1024 * 1024) as hostile:
        transport = HttpTransport(hostile.url, user_agent="t", max_response_bytes=100_000)
        try:
            response, _ = within(
                20, lambda: transport.request("GET", "/flags/definitions", timeout=10)
            )
            assert response.status == 200
            assert len(response.content) == 100_000
        finally:
            transport.close()


# ---------------------------------------------------------------- item 7: every outcome


def test_mislabelled_gzip_answer_still_resolves_the_batch(clock):
    with HostileServer("bad_gzip", status=200) as hostile:
        client = Client(API_KEY, host=hostile.url, _clock=clock)
        try:
            for i in range(3):
                client.capture(f"e{i}", "u")
            assert within(20, lambda: client.flush(5))[0] is True  # 200 says delivered
            stats = client.stats
            assert stats.sent == 3 and stats.in_flight == 0 and stats.queued == 0
        finally:
            within(10, lambda: client.close(1))
        assert_accounted(client)


def test_mislabelled_gzip_on_a_503_is_retried(clock):
    with HostileServer("bad_gzip", status=503) as hostile:
        client = Client(API_KEY, host=hostile.url, max_retries=2, _clock=clock)
        try:
            client.capture("e", "u")
            assert within(20, lambda: client.flush(5))[0] is False
            stats = client.stats
            assert stats.retries == 2 and stats.retained == 1 and stats.in_flight == 0
        finally:
            within(10, lambda: client.close(1))
        assert client.stats.dropped["shutdown"] == 1
        assert_accounted(client)


def test_mislabelled_gzip_flags_answer_gives_the_default():
    with HostileServer("bad_gzip") as hostile:
        client = Client(API_KEY, host=hostile.url)
        try:
            enabled, _ = within(10, lambda: client.is_feature_enabled("f", "u", default_value=True))
            assert enabled is True
            assert within(10, lambda: client.get_feature_flag("f", "u"))[0] is None
        finally:
            within(10, lambda: client.close(1))


def test_any_error_from_the_http_client_drops_and_reports_the_batch():
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a transport that fails in an unexpected way")

    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        client = Client(
            API_KEY,
            host="http://127.0.0.1:9",
            http_client=http,
            on_error=lambda exc, events: errors.append((exc, events)),
        )
        try:
            client.capture("a", "u")
            client.capture("b", "u")
            assert within(10, lambda: client.flush(5))[0] is False
            stats = client.stats
            assert stats.in_flight == 0 and stats.queued == 0
            assert stats.dropped["rejected"] == 2
            ((exc, events),) = errors
            assert "RuntimeError" in str(exc)
            assert [e["event"] for e in events] == ["a", "b"]
            client.capture("c", "u")  # the thread is still there for the next ones
            within(10, lambda: client.flush(5))  # (it may have settled "c" already: True)
            assert client.stats.dropped["rejected"] == 3 and len(errors) == 2
        finally:
            client.close(1)
        assert_accounted(client)


@pytest.mark.parametrize(
    "host", ["http://exa mple.com", "http://[::1", "ftp://x", "://", "http://", "http://h:99999"]
)
def test_malformed_host_is_refused_by_the_constructor(host):
    with pytest.raises(ValueError, match="host") as raised:
        Client(API_KEY, host=host)
    assert "https://us.i.posthog.com" in str(raised.value)  # says what to give instead


def test_malformed_host_message_hides_credentials():
    with pytest.raises(ValueError) as raised:
        Client(API_KEY, host="http://user:s3cret@exa mple.com")
    assert "s3cret" not in str(raised.value)


# ---------------------------------------------------------------- item 8: flags events


def _recording_transport(events: list[str], flags: Callable[[], httpx.Response]) -> httpx.Client:
    import gzip
    import json

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/flags"):
            return flags()
        body = request.content
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        events.extend(e["event"] for e in json.loads(body)["batch"])
        return httpx.Response(200, json={"status": 1})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_send_feature_flags_event_is_sent_when_flags_raise_anything():
    def flags() -> httpx.Response:
        raise RuntimeError("not a transport error")

    events: list[str] = []
    with _recording_transport(events, flags) as http:
        client = Client(API_KEY, host="http://127.0.0.1:9", http_client=http)
        try:
            assert client.capture("purchase", "u1", send_feature_flags=True)
            assert within(10, lambda: client.flush(5))[0] is True
            assert events == ["purchase"]
        finally:
            client.close(1)
        assert_accounted(client)


def test_send_feature_flags_event_is_sent_when_flags_answer_is_garbage():
    with HostileServer("ok", paths={"/flags": "bad_gzip"}) as hostile:
        client = Client(API_KEY, host=hostile.url)
        try:
            assert client.capture("purchase", "u1", send_feature_flags=True)
            assert within(10, lambda: client.flush(5))[0] is True
            assert [e["event"] for e in hostile.events] == ["purchase"]
        finally:
            client.close(1)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def test_send_feature_flags_event_is_sent_when_a_group_cannot_be_printed(server, make_client):
    client = make_client()
    assert client.capture(
        "purchase", "u1", send_feature_flags=True, groups={"company": _Unprintable()}
    )
    assert client.flush(5) is True
    (event,) = server.events
    assert event["event"] == "purchase"
    assert "$active_feature_flags" not in event["properties"]
    assert client.stats.corrected["flags_unavailable"] == 1
    assert_accounted(client)


def test_a_resolver_that_never_answers_is_bounded_by_the_deadline(monkeypatch, clock):
    """``getaddrinfo`` takes no timeout: a dead DNS server held a connect outside every
    deadline. The lookup is now waited for at most the time left of the request; the
    batch is retried (counted) and delivered once the name resolves."""
    import socket

    real = socket.getaddrinfo
    resolves = threading.Event()

    def hostile_resolver(host, *args, **kwargs):
        if host == "stuck.posthog.test":
            if not resolves.wait(30):
                raise socket.gaierror("gave up")
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hostile_resolver)
    with FakePostHog() as server:
        port = server.url.rsplit(":", 1)[1]
        client = Client(
            API_KEY,
            host=f"http://stuck.posthog.test:{port}",
            timeout=1,
            max_retries=5,
            _clock=clock,
        )
        try:
            client.capture("evt", "u1")
            flushed, took = within(10, lambda: client.flush(2))
            assert flushed is False and took < 6
            # The request gave up on the lookup and the batch waits for its retry (before
            # the fix, the flush thread sat in getaddrinfo until the resolver answered).
            deadline = time.monotonic() + 5
            while client.stats.retries < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert client.stats.retries >= 1 and server.events == []
            resolves.set()
            assert within(20, lambda: client.flush(15))[0] is True
            # at least once: an attempt that answered after its deadline is sent again
            assert set(server.event_names()) == {"evt"}
            assert client.stats.retries >= 1
        finally:
            resolves.set()
            client.close(2)


def test_a_body_nested_too_deep_to_parse_is_malformed_not_an_internal_error(warnings_log):
    """JSON nested deeper than Python's parser goes raises ``RecursionError``, not
    ``ValueError``: a capture v1 answer like that is a 2xx that delivers (as any body
    that is not the results protocol), and a definitions answer a malformed body; never
    an event counted ``rejected`` nor a background thread restarted."""
    with HostileServer("nested") as server:
        client = Client(
            API_KEY,
            host=server.url,
            capture_mode="v1",
            flush_interval=60,
            secret_key="phs_secret",
            feature_flags_poll_interval=60,
        )
        client.capture("a", "u1")
        assert client.flush(5) is True
        assert client.stats.sent == 1
        client.get_feature_flag("beta", "u1")
        client.close(3)
    stats = client.stats
    assert stats.dropped["rejected"] == 0 and stats.thread_restarts == 0
    assert [r.getMessage() for r in warnings_log.records if r.levelno >= logging.ERROR] == []
    assert "flag definitions: malformed body" in warnings_log.text
    assert_accounted(client)


def test_lookups_stuck_in_the_parent_do_not_count_in_a_forked_child(monkeypatch):
    """A child forked while name lookups hang in the parent has none of their threads:
    it must not inherit their count (at the cap, every lookup of the child failed)."""
    import socket

    from posthog_otel.export._resolve import resolve_within

    real = socket.getaddrinfo
    release = threading.Event()

    def hostile_resolver(host, *args, **kwargs):
        if host == "stuck.posthog.test":
            release.wait(30)
            raise socket.gaierror("gave up")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hostile_resolver)
    try:
        for _ in range(4):
            with pytest.raises(TimeoutError):
                resolve_within("stuck.posthog.test", 80, 0.05)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if resolve_within("localhost", 80, 5) else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
