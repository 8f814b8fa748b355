"""Issue #13 item 7: no cold-start stall. A client given a secret key in code (or
``preload_feature_flags=True``) loads definitions from the start; one configured from
the environment alone loads on first read; ``reload_feature_flags()`` is the first
load."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from posthog_otel.testing import FakePostHog

from .conftest import started_threads
from .test_flags_loading import DEFS, SECRET

POLLER = "posthog_otel-flags"


@pytest.fixture
def defs_server():
    with FakePostHog(flag_definitions=DEFS) as server:
        yield server


def test_a_secret_key_given_in_code_starts_loading_when_the_client_is_created(
    defs_server, make_client
):
    before = set(threading.enumerate())
    make_client(host=defs_server.url, secret_key=SECRET)
    assert len(started_threads(before, POLLER)) == 1
    defs_server.wait_for_requests(1, path="/flags/definitions")


def test_a_key_from_the_environment_loads_on_first_read(defs_server, make_client, monkeypatch):
    monkeypatch.setenv("POSTHOG_SECRET_KEY", SECRET)
    before = set(threading.enumerate())
    client = make_client(host=defs_server.url)
    assert started_threads(before, POLLER) == []
    assert client.get_feature_flag("beta-ui", "u1") is True  # loaded on first read
    assert len(started_threads(before, POLLER)) == 1


@pytest.mark.parametrize(("from_env", "preload", "polls"), [(True, True, 1), (False, False, 0)])
def test_preload_feature_flags_decides(
    defs_server, make_client, monkeypatch, from_env, preload, polls
):
    if from_env:
        monkeypatch.setenv("POSTHOG_SECRET_KEY", SECRET)
    before = set(threading.enumerate())
    make_client(
        host=defs_server.url,
        secret_key=None if from_env else SECRET,
        preload_feature_flags=preload,
    )
    assert len(started_threads(before, POLLER)) == polls


def test_a_disabled_client_does_not_preload(defs_server, make_client):
    before = set(threading.enumerate())
    make_client(host=defs_server.url, secret_key=SECRET, disabled=True)
    assert started_threads(before, POLLER) == []


def test_the_first_read_after_reload_waits_for_no_other_fetch(defs_server, make_client):
    client = make_client(
        host=defs_server.url,
        secret_key=SECRET,
        preload_feature_flags=False,
        feature_flags_initial_load_timeout=5.0,
    )
    client.reload_feature_flags()
    assert len([r for r in defs_server.requests if r.path == "/flags/definitions"]) == 1
    release = defs_server.hold_next(path="/flags/definitions")  # another fetch would hang
    try:
        started = time.monotonic()
        result = client.get_feature_flag_result("beta-ui", "u1", send_feature_flag_events=False)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert result is not None and result.locally_evaluated
    assert elapsed < 2.5, elapsed  # it waited for the poller's fetch (5 s) before


def test_flag_modules_load_on_the_creating_thread_and_only_when_needed():
    script = (
        "import sys, threading\n"
        "import posthog_otel\n"
        "assert 'posthog_otel.flags._evaluator' not in sys.modules\n"
        "from posthog_otel import Client\n"
        "c = Client('phc_x', host='http://127.0.0.1:9', flush_interval=60)\n"
        "plain = 'posthog_otel.flags._evaluator' in sys.modules\n"
        "c.close(0)\n"
        "c = Client('phc_x', host='http://127.0.0.1:9', secret_key='phs_x',\n"
        "           flush_interval=60, feature_flags_request_max_retries=0)\n"
        "print(plain, 'posthog_otel.flags._evaluator' in sys.modules)\n"
        "c.close(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.split() == [b"False", b"True"]
