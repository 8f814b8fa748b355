"""SIGTERM (a container stop) while log records and spans wait in OpenTelemetry's
batch processors or in the OTLP lanes: they are delivered before the process dies of
the signal, both zero-code and through ``instrument_logs``/``instrument_traces``.

Our lanes' flush threads are started by OpenTelemetry's export threads there, never by
the main thread, so the SIGTERM handler must not wait for a flush thread of the main
thread to be installed: attaching to a provider (``pipeline.add_producer``) installs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.test_otel_logs import _entry_point_path as _logs_entry_point
from tests.test_otel_traces import _entry_point_path as _traces_entry_point

ROOT = Path(__file__).resolve().parent.parent
_APP = """
    import logging, threading
    from opentelemetry import trace
    {setup}
    log = logging.getLogger("stopping")
    for i in range(5):
        log.warning("record %d", i)
    tracer = trace.get_tracer("stopping")
    for i in range(5):
        with tracer.start_as_current_span(f"span {{i}}"):
            pass
    print("ready", flush=True)
    threading.Event().wait(60)
"""


def _stop(server, command: list[str], env: dict[str, str]) -> None:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n", (
            proc.stderr.read().decode() if proc.stderr else ""
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    bodies = sorted(r["body"]["stringValue"] for r in server.wait_for_log_records(5, timeout=5))
    assert bodies == [f"record {i}" for i in range(5)]
    names = sorted(span["name"] for span in server.spans())
    assert names == [f"span {i}" for i in range(5)]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_delivers_what_waits_in_otel_batches_zero_code(server, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(_APP.format(setup="")))
    (tmp_path / "logs").mkdir()
    (tmp_path / "traces").mkdir()
    paths = [
        str(ROOT),
        _logs_entry_point(tmp_path / "logs"),
        _traces_entry_point(tmp_path / "traces"),
        os.environ.get("PYTHONPATH", ""),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "OTEL_LOGS_EXPORTER": "posthog",
        "OTEL_TRACES_EXPORTER": "posthog_traces",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_BLRP_SCHEDULE_DELAY": "60000",  # still in OpenTelemetry's batches
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_HOST": server.url,
    }
    instrument_cli = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    _stop(server, [instrument_cli, sys.executable, str(app)], env)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
@pytest.mark.parametrize("delay", [10, 60_000], ids=["in-our-lanes", "in-otel-batches"])
def test_sigterm_delivers_what_instrument_logs_and_traces_hold(server, delay):
    setup = textwrap.dedent(
        f"""
        import time
        from opentelemetry import _logs
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk.trace import TracerProvider
        from posthog_otel import Client
        from posthog_otel.otel_logs import instrument_logs
        from posthog_otel.otel_traces import instrument_traces

        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        log_provider = LoggerProvider()
        instrument_logs(log_provider, client, schedule_delay_millis={delay})
        logging.getLogger().addHandler(LoggingHandler(logger_provider=log_provider))
        provider = TracerProvider()
        instrument_traces(provider, client, schedule_delay_millis={delay})
        trace.set_tracer_provider(provider)
        """
    )
    script = textwrap.dedent(_APP.format(setup="{setup}")).replace("{setup}", setup)
    if delay < 1000:  # let OpenTelemetry's threads hand everything to our lanes first
        script = script.replace(
            'print("ready"',
            "deadline = time.monotonic() + 10\n"
            "while (client.stats.logs.attempted < 5 or client.stats.traces.attempted < 5)"
            " and time.monotonic() < deadline:\n    time.sleep(0.01)\n"
            'print("ready"',
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    _stop(server, [sys.executable, "-c", script], env)
