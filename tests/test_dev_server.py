"""``posthog-otel dev-server`` (issue #16): the fake PostHog on a local port with a live
web view, run for real as ``python -m posthog_otel dev-server`` and looked at in
headless Chromium (Debian's ``chromium``, driven over the DevTools protocol: tests/
chromium.py). A real ``Client`` sends to it; the page shows the event within a second;
a flag edited in the page is what a client's local evaluation and ``/flags`` then see;
markup in an event is shown as text; SIGTERM and SIGINT end it with exit code 0.

The view's bounds and its guards (host name, same-origin JSON saves) are checked
in-process, without a browser."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posthog_otel import Client
from posthog_otel.testing import DevView, FakePostHog

from .chromium import Chromium, Page, find_chromium
from .conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "posthog_otel" / "testing" / "_devview.html"
SECRET_KEY = "phs_dev_secret_0123456789"
XSS = "<img src=x onerror=document.body.dataset.pwned=1>"


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    """The command in a subprocess, and the host it says to use."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "posthog_otel", "dev-server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    out, deadline = b"", time.monotonic() + 20
    while b"Ctrl-C to stop." not in out:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(left, 0))
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            process.kill()
            pytest.fail(f"dev-server did not start: {out.decode(errors='replace')}")
        out += chunk
    text = out.decode()
    host = next(w for w in text.split() if w.startswith("POSTHOG_HOST="))
    return process, host.partition("=")[2]


def _stop(process: subprocess.Popen[bytes], sig: int) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stdout is not None
    return code, process.stdout.read().decode()


@pytest.fixture(scope="module")
def dev_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    process, url = _start()
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    chromium = Chromium(executable)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def page(dev_server: tuple[subprocess.Popen[bytes], str], browser: Chromium) -> Page:
    page = browser.open(dev_server[1] + "/")
    assert page.wait_for("document.getElementById('live').className === 'on'", 15)
    return page


def _client(url: str, **kwargs: object) -> Client:
    return Client(API_KEY, host=url, flush_interval=60, **kwargs)


def _entry_text(needle: str) -> str:
    """A JS expression: the text of the first arrival whose text holds ``needle``."""
    return (
        "(Array.from(document.querySelectorAll('#entries li'))"
        f".find((li) => li.textContent.includes({json.dumps(needle)})) || {{}}).textContent"
    )


def test_the_page_shows_an_event_with_its_identity_and_lane_within_a_second(
    dev_server: tuple[subprocess.Popen[bytes], str], page: Page
) -> None:
    client = _client(dev_server[1])
    try:
        client.capture(
            "checkout_started",
            "user-7",
            {"$session_id": "sess-42", "plan": "pro-plan-xyz"},
            groups={"company": "acme"},
        )
        assert client.flush()  # answered: the server has recorded the event
        shown = page.wait_for(_entry_text("checkout_started"), 1.0)
    finally:
        client.close(timeout=2)
    assert shown, "the event did not show within a second"
    for part in ("analytics v0", "distinct_id: user-7", "$session_id: sess-42"):
        assert part in shown
    assert "groups: company=acme" in shown
    assert "pro-plan-xyz" in shown  # the properties, in the entry's details


def test_a_flag_edited_in_the_page_is_served_to_local_and_remote_reads(
    dev_server: tuple[subprocess.Popen[bytes], str], page: Page
) -> None:
    url = dev_server[1]
    definitions = {
        "flags": [
            {
                "id": 7,
                "key": "edited-in-page",
                "active": True,
                "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
            }
        ]
    }

    def type_and_save(text: str) -> None:
        page.evaluate(
            "(() => { const area = document.getElementById('definitions');"
            f" area.value = {json.dumps(text)};"
            " area.dispatchEvent(new Event('input'));"
            " document.getElementById('save').click(); return true; })()"
        )

    type_and_save("{ not json")
    status = "document.getElementById('save-status').textContent"
    refused = page.wait_for(f"{status}.startsWith('not saved') && {status}", 5)
    assert "not saved: not JSON" in refused

    type_and_save(json.dumps(definitions))
    rendered = page.wait_for(
        "document.getElementById('save-status').textContent.startsWith('saved') &&"
        " (document.querySelector('#flag-list li[data-key=\"edited-in-page\"]') || {}).textContent",
        5,
    )
    assert rendered and "active" in rendered and "decided locally" in rendered

    local = _client(url, personal_api_key=SECRET_KEY)
    remote = _client(url)
    try:
        assert local.get_feature_flag("edited-in-page", "user-1", only_evaluate_locally=True)
        assert remote.get_feature_flag("edited-in-page", "user-2") is True
    finally:
        local.close(timeout=2)
        remote.close(timeout=2)
    # The /flags answer is in the view too, with what it served.
    served = page.wait_for(_entry_text("served: edited-in-page=true"), 5)
    assert served and "distinct_id: user-2" in served


def test_markup_in_an_event_is_shown_as_text(
    dev_server: tuple[subprocess.Popen[bytes], str], page: Page
) -> None:
    client = _client(dev_server[1])
    try:
        client.capture("<b>bold-name</b>", "<i>who</i>", {"probe": XSS, XSS: "as a key"})
        assert client.flush()
        shown = page.wait_for(_entry_text("<b>bold-name</b>"), 5)
    finally:
        client.close(timeout=2)
    assert shown and "distinct_id: <i>who</i>" in shown
    assert XSS in shown  # the property and the key, as text
    markup = "document.querySelectorAll('#entries img, #entries b, #entries i').length"
    assert page.evaluate(markup) == 0
    assert page.evaluate("document.body.dataset.pwned === undefined")


def test_sigterm_stops_it_with_exit_code_0_while_a_page_is_connected(
    dev_server: tuple[subprocess.Popen[bytes], str],
) -> None:
    # Last of the module's browser tests: it ends the server the page is connected to.
    # A stream is open here even without a browser: the page's own request.
    with httpx.stream("GET", dev_server[1] + "/_dev/stream", timeout=10) as stream:
        assert next(stream.iter_lines()) == "event: snapshot"
        code, out = _stop(dev_server[0], signal.SIGTERM)
    assert code == 0, out
    assert "stopped" in out


def test_sigint_stops_it_with_exit_code_0_and_it_listens_on_loopback() -> None:
    process, url = _start()
    assert url.startswith("http://127.0.0.1:")
    code, out = _stop(process, signal.SIGINT)
    assert code == 0, out
    assert "Traceback" not in out


# ------------------------------------------------------------ in-process, no browser


def test_the_page_never_parses_data_as_markup() -> None:
    script = PAGE.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_the_view_keeps_only_the_last_arrivals_and_the_server_its_recent_history() -> None:
    with FakePostHog(keep=4) as server:
        view = DevView(server, keep=3)
        client = Client(API_KEY, host=server.url, flush_at=1, flush_interval=60, sync_mode=True)
        try:
            for n in range(12):
                client.capture(f"event-{n}", "user-1")
        finally:
            client.close(timeout=2)
            state = httpx.get(server.url + "/_dev/state").json()
            view.close()
        assert [e["name"] for e in state["entries"]] == ["event-9", "event-10", "event-11"]
        assert state["counts"]["analytics v0"] == 12
        assert len(server.requests) <= 8 and len(server.events) <= 8
        assert server.event_names()[-1] == "event-11"


def test_a_large_event_is_cut_in_the_view() -> None:
    with FakePostHog() as server:
        view = DevView(server)
        client = Client(API_KEY, host=server.url, flush_interval=60)
        try:
            client.capture("big", "user-1", {"blob": "x" * 500_000})
            assert client.flush()
            entry = httpx.get(server.url + "/_dev/state").json()["entries"][0]
        finally:
            client.close(timeout=2)
            view.close()
        assert entry["name"] == "big"
        assert len(json.dumps(entry)) < 100_000
        assert entry["detail"]["cut"].startswith("500")


def test_the_view_answers_only_its_own_host_and_same_origin_json_saves() -> None:
    with FakePostHog() as server:
        view = DevView(server)
        try:
            port = server.url.rpartition(":")[2]
            good = json.dumps({"flags": [{"id": 1, "key": "k", "active": True, "filters": {}}]})
            rebound = httpx.get(server.url + "/_dev/state", headers={"Host": "evil.example"})
            assert rebound.status_code == 403
            for headers in (
                {"Content-Type": "text/plain"},  # a form or a simple cross-site POST
                {"Content-Type": "application/json", "Origin": "http://evil.example"},
            ):
                answer = httpx.post(server.url + "/_dev/definitions", content=good, headers=headers)
                assert answer.status_code == 403
            served = httpx.get(
                server.url + "/flags/definitions", headers={"Authorization": f"Bearer {SECRET_KEY}"}
            )
            assert served.json()["flags"] == []
            for bad in ("[]", '{"flags": [1]}', "{"):
                answer = httpx.post(
                    server.url + "/_dev/definitions",
                    content=bad,
                    headers={"Content-Type": "application/json"},
                )
                assert answer.status_code == 400
            answer = httpx.post(
                server.url + "/_dev/definitions",
                content=good,
                headers={"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"},
            )
            assert answer.status_code == 200
            assert answer.json()["flags"] == [
                {"key": "k", "active": True, "local": True, "why": None}
            ]
            served = httpx.get(
                server.url + "/flags/definitions", headers={"Authorization": f"Bearer {SECRET_KEY}"}
            )
            assert [f["key"] for f in served.json()["flags"]] == ["k"]
            # Without the view, the fake answers these paths as PostHog would: not found.
            view.close()
            assert httpx.get(server.url + "/_dev/state").status_code == 404
        finally:
            view.close()


def test_each_lane_shows_with_its_identity() -> None:
    """analytics v0 and v1, AI, logs and traces (OTLP attributes flattened, identity
    read from them), a refused request with PostHog's error code."""
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "GET /checkout",
        "kind": 2,
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [
            {"key": "posthog.distinct_id", "value": {"stringValue": "span-user"}},
            {"key": "http.status_code", "value": {"intValue": "200"}},
        ],
    }
    traces = {"resourceSpans": [{"scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}]}
    with FakePostHog() as server:
        view = DevView(server)
        v0 = Client(API_KEY, host=server.url, flush_interval=60)
        v1 = Client(API_KEY, host=server.url, flush_interval=60, capture_mode="v1")
        try:
            v0.capture("v0-event", "user-0", {"$session_id": "s-0"})
            v0.capture_ai("$ai_generation", "user-ai", {"$ai_model": "m"})
            v0.capture_log("payment declined", "warning", {"posthogDistinctId": "log-user"})
            v1.capture("v1-event", "user-1", {"$session_id": "s-1"}, groups={"org": "o1"})
            assert v0.flush() and v1.flush()
            auth = {"Authorization": f"Bearer {API_KEY}"}
            assert httpx.post(server.url + "/i/v1/traces", json=traces, headers=auth).is_success
            refused = httpx.post(server.url + "/batch", json={"api_key": API_KEY, "batch": [{}]})
            assert refused.status_code == 400
            state = httpx.get(server.url + "/_dev/state").json()
        finally:
            v0.close(timeout=2)
            v1.close(timeout=2)
            view.close()
    shown = {(e["lane"], e["name"]): e for e in state["entries"]}
    assert shown["analytics v0", "v0-event"]["session_id"] == "s-0"
    one = shown["analytics v1", "v1-event"]
    assert (one["distinct_id"], one["session_id"], one["groups"]) == (
        "user-1",
        "s-1",
        {"org": "o1"},
    )
    assert shown["ai", "$ai_generation"]["distinct_id"] == "user-ai"
    log = shown["logs", "WARN payment declined"]
    assert log["distinct_id"] == "log-user"
    assert log["detail"]["attributes"]["posthogDistinctId"] == "log-user"
    trace = shown["traces", "GET /checkout"]
    assert trace["distinct_id"] == "span-user"
    assert trace["detail"]["attributes"]["http.status_code"] == 200
    (rejected,) = [e for e in state["entries"] if e["kind"] == "rejected"]
    assert rejected["lane"] == "analytics v0" and rejected["status"] == 400
    assert "request_hydration_error" in rejected["name"]
    assert state["counts"]["rejected"] == 1


def test_a_port_in_use_is_exit_code_1() -> None:
    with FakePostHog() as server:
        port = server.url.rpartition(":")[2]
        done = subprocess.run(
            [sys.executable, "-m", "posthog_otel", "dev-server", "--port", port],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=30,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stdout.decode()


def test_on_every_interface_the_view_still_refuses_a_rebound_host_name() -> None:
    """``--host 0.0.0.0``: other machines reach the view by this machine's address or
    name, but a page of another site whose name was rebound to this machine (DNS
    rebinding) must not read the events nor save definitions."""
    import socket

    with FakePostHog(host="0.0.0.0") as server:
        view = DevView(server)
        try:
            port = server.url.rpartition(":")[2]
            state = f"http://127.0.0.1:{port}/_dev/state"
            for name in ("evil.example", "evil.example.", "localhost.evil.example"):
                answer = httpx.get(state, headers={"Host": f"{name}:{port}"})
                assert answer.status_code == 403, name
            saved = httpx.post(
                f"http://127.0.0.1:{port}/_dev/definitions",
                content=json.dumps({"flags": []}),
                headers={
                    "Host": f"evil.example:{port}",
                    "Origin": f"http://evil.example:{port}",
                    "Content-Type": "application/json",
                },
            )
            assert saved.status_code == 403
            for name in ("127.0.0.1", "localhost", "192.0.2.7", "[::1]", socket.gethostname()):
                answer = httpx.get(state, headers={"Host": f"{name}:{port}"})
                assert answer.status_code == 200, name
        finally:
            view.close()
