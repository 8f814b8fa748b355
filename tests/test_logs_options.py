"""PostHog Logs options (issue #14): ``LogsConfig`` (LOG-19), the lane's own fail-open
``before_send`` (LOG-29) and its tumbling-window rate cap (LOG-28), against the fake
server's ``/i/v1/logs``."""

from __future__ import annotations

import logging

import pytest

from posthog_otel import Client, LogsConfig
from posthog_otel._logs import RateCap
from tests.conftest import API_KEY

LOGS = "/i/v1/logs"


def _bodies(records):
    return [r["body"]["stringValue"] for r in records]


def _attributes(kvs):
    return {kv["key"]: kv["value"] for kv in kvs}


# ---------------------------------------------------------------- LogsConfig (LOG-19)


def test_service_and_resource_attributes_reach_the_resource(make_client, server):
    """LOG-19/LOG-15: service name, version, environment and the user's resource
    attributes; a user ``service.name`` loses to the configured one."""
    logs = LogsConfig(
        service_name="checkout",
        service_version="1.2.3",
        environment="prod",
        resource_attributes={"service.name": "evil", "host.name": "web-1", "region": "eu"},
    )
    client = make_client(logs=logs)
    client.capture_log("ready")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    resource = _attributes(request.json["resourceLogs"][0]["resource"]["attributes"])
    assert resource["service.name"] == {"stringValue": "checkout"}
    assert resource["service.version"] == {"stringValue": "1.2.3"}
    assert resource["deployment.environment"] == {"stringValue": "prod"}
    assert resource["host.name"] == {"stringValue": "web-1"}
    assert resource["region"] == {"stringValue": "eu"}
    assert resource["telemetry.sdk.name"] == {"stringValue": "posthog-otel"}


def test_without_logs_config_the_defaults_hold(make_client, server, monkeypatch):
    """LOG-19: the documented defaults (README, "Logs"); ``OTEL_SERVICE_NAME`` names
    the service when ``LogsConfig`` does not."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    client = make_client()
    logs = client.config.logs
    assert (logs.flush_at, logs.max_queue_size, logs.max_batch_size) == (100, 10_000, 500)
    assert (logs.max_logs, logs.rate_window, logs.before_send) == (10_000, 10.0, ())
    client.capture_log("x")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    resource = _attributes(request.json["resourceLogs"][0]["resource"]["attributes"])
    assert resource["service.name"] == {"stringValue": "from-env"}
    assert "service.version" not in resource and "deployment.environment" not in resource


def test_queue_and_batch_knobs_apply_to_the_logs_lane_only(make_client, server):
    """LOG-19/LOG-27: ``max_batch_size`` caps the records per POST, ``flush_at`` starts a
    send, ``max_queue_size`` bounds the queue (the oldest evicted, LOG-22); the
    analytics settings are the client's own."""
    client = make_client(logs=LogsConfig(max_batch_size=2, flush_at=1000, max_queue_size=5))
    for i in range(7):
        client.capture_log(f"r{i}")
    assert client.stats.logs.dropped["evicted"] == 2
    assert client.flush(5)
    requests = server.wait_for_requests(3, path=LOGS)
    assert [len(r.json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) for r in requests] == [
        2,
        2,
        1,
    ]
    assert _bodies(server.log_records()) == [f"r{i}" for i in range(2, 7)]
    assert client.config.delivery.max_queue_size == 10_000


def test_logs_flush_at_starts_a_send_without_a_flush(make_client, server):
    """LOG-25 (threshold) with LOG-19's flush threshold, the interval being an hour."""
    client = make_client(logs=LogsConfig(flush_at=3, flush_interval=3600))
    for i in range(3):
        client.capture_log(f"r{i}")
    assert _bodies(server.wait_for_log_records(3)) == ["r0", "r1", "r2"]


@pytest.mark.parametrize(
    ("logs", "name"),
    [
        ({"max_batch_size": 0}, "logs.max_batch_size"),
        ({"flush_at": "10"}, "logs.flush_at"),
        ({"max_queue_size": True}, "logs.max_queue_size"),
        ({"flush_interval": 0}, "logs.flush_interval"),
        ({"service_name": "  "}, "logs.service_name"),
        ({"environment": 3}, "logs.environment"),
        ({"resource_attributes": [("a", 1)]}, "logs.resource_attributes"),
        ({"max_logs": 1.5}, "logs.max_logs"),
        ({"rate_window": float("nan")}, "logs.rate_window"),
        ({"before_send": [lambda r: r, "nope"]}, "logs.before_send"),
    ],
)
def test_bad_logs_options_raise_naming_the_option(logs, name):
    """LOG-19: validated when the client is built, as every Client argument."""
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        Client(API_KEY, logs=LogsConfig(**logs), _exit_hook=False)


def test_logs_must_be_a_logs_config():
    with pytest.raises(ValueError, match="logs must be a LogsConfig"):
        Client(API_KEY, logs={"max_logs": 5}, _exit_hook=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------- before_send (LOG-29)


def test_before_send_changes_or_drops_records_left_to_right(make_client, server):
    """LOG-29: hooks run in order on the plain record; ``None`` or a blank body drops it
    (``before_send``, not a warning), the analytics ``before_send`` does not run."""
    seen = []

    def tag(record):
        record["attributes"]["tagged"] = True
        return record

    def drop_secrets(record):
        return None if "secret" in record["body"] else record

    def blank_noise(record):
        if record["body"] == "noise":
            record["body"] = "  "
        return record

    client = make_client(
        before_send=lambda event: seen.append(event) or event,
        logs=LogsConfig(before_send=[tag, drop_secrets, blank_noise]),
    )
    assert client.capture_log("kept") is True
    assert client.capture_log("a secret") is False
    assert client.capture_log("noise") is False
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    assert record["body"] == {"stringValue": "kept"}
    assert _attributes(record["attributes"])["tagged"] == {"boolValue": True}
    assert client.stats.logs.dropped["before_send"] == 2
    assert seen == []


def test_a_raising_hook_lets_the_record_through_counted_and_warned(
    make_client, server, warnings_log
):
    """LOG-29 fail-open: a hook that raises (after changing its copy) is skipped, the
    chain going on with the previous value; counted in ``stats.logs.corrected`` and
    warned. Unlike the analytics ``before_send`` (fail-closed)."""

    def broken(record):
        record["body"] = "changed by a broken hook"
        raise RuntimeError("boom")

    def suffix(record):
        record["body"] += "!"
        return record

    client = make_client(logs=LogsConfig(before_send=[broken, lambda r: "not a dict", suffix]))
    assert client.capture_log("through") is True
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    assert record["body"] == {"stringValue": "through!"}
    assert client.stats.logs.corrected["logs_before_send_error"] == 2
    assert client.stats.logs.dropped["before_send_error"] == 0
    assert "fail-open" in warnings_log.text and "RuntimeError: boom" in warnings_log.text


# ---------------------------------------------------------------- rate cap (LOG-28)


def test_the_rate_cap_drops_later_records_counted_with_one_warning(
    make_client, server, warnings_log
):
    """LOG-28: 3 per window: the 4th and 5th are dropped (never buffered), counted as
    ``rate_limited``, one warning for the window; records ``before_send`` drops use no
    budget (the cap runs after it)."""
    logs = LogsConfig(
        max_logs=3,
        rate_window=3600,
        before_send=lambda r: None if r["body"].startswith("skip") else r,
    )
    client = make_client(logs=logs)
    for i in range(4):
        assert client.capture_log(f"skip{i}") is False
    results = [client.capture_log(f"r{i}") for i in range(5)]
    assert results == [True, True, True, False, False]
    assert client.flush(5)
    assert _bodies(server.wait_for_log_records(3)) == ["r0", "r1", "r2"]
    stats = client.stats.logs
    assert stats.dropped["rate_limited"] == 2 and stats.dropped["before_send"] == 4
    assert stats.attempted == 9 and stats.enqueued == 3
    warnings = [r for r in warnings_log.records if "rate_limited" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert client.stats.dropped["rate_limited"] == 0  # analytics untouched


def test_the_window_tumbles_and_a_clock_going_back_starts_a_new_one():
    """LOG-28: the count starts again when the window rolls over or the wall clock
    jumps backwards; the first refusal of a window is the one warned about."""
    now = [1000.0]
    cap = RateCap(2, 10.0, lambda: now[0])
    assert [cap.admit() for _ in range(4)] == [0, 0, 1, 2]
    now[0] = 1009.9
    assert cap.admit() == 3
    now[0] = 1010.0  # the next window
    assert [cap.admit() for _ in range(3)] == [0, 0, 1]
    now[0] = 900.0  # the clock went back
    assert [cap.admit() for _ in range(3)] == [0, 0, 1]


@pytest.mark.parametrize(("max_logs", "window"), [(0, 10.0), (-1, 10.0), (5, 0), (5, -2.0)])
def test_a_cap_or_window_of_zero_or_less_turns_the_cap_off(make_client, max_logs, window):
    """LOG-28: no cap at all."""
    assert RateCap(max_logs, window).enabled is False
    client = make_client(logs=LogsConfig(max_logs=max_logs, rate_window=window))
    assert all(client.capture_log(f"r{i}") for i in range(20))
    assert client.stats.logs.dropped["rate_limited"] == 0


def test_readme_logs_config_snippet_runs_as_written(server):
    """LOG-19 as documented: the README's ``LogsConfig`` example builds a working
    client; its hook drops health checks and scrubs an attribute."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Logs\n", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n")[2].split("```", 1)[0]
    snippet = snippet.replace('"phc_...",', f'"phc_...", host={server.url!r},')
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    client = namespace["client"]
    try:
        assert client.config.logs.service_name == "checkout"
        assert client.capture_log("healthcheck ok") is False
        assert client.capture_log("paid", attributes={"card_number": "4242", "n": 1})
        assert client.flush(5)
    finally:
        client.close(2)
    (record,) = server.wait_for_log_records(1)
    assert _attributes(record["attributes"]) == {"n": {"intValue": "1"}}


# ---------------------------------------------------------------- client.logger (LOG-01…05)


def test_the_logger_facade_is_capture_log_by_level(make_client, server):
    """LOG-01 scenario: ``logger.info("ready", {"region": "us"})`` queues the record a
    ``capture_log`` with level info and those attributes queues; each helper has its
    contract severity (LOG-06)."""
    client = make_client()
    assert client.logger.info("ready", {"region": "us"}) is True
    assert client.capture_log("ready", level="info", attributes={"region": "us"}) is True
    for name in ("trace", "debug", "warn", "warning", "error", "fatal"):
        assert getattr(client.logger, name)(name) is True
    assert client.flush(5)
    records = server.wait_for_log_records(8)
    facade, direct = records[:2]
    for record in (facade, direct):
        record.pop("timeUnixNano"), record.pop("observedTimeUnixNano")
    assert facade == direct
    assert [r["severityNumber"] for r in records[2:]] == [1, 5, 13, 13, 17, 21]


def test_the_logger_facade_shares_the_gates_and_never_raises(make_client, server):
    """LOG-03/04/05: through the one capture path: a disabled or closed client, an
    opted-out one, a blank body, the rate cap and ``before_send`` apply; nothing raises."""
    disabled = make_client(disabled=True)
    assert disabled.logger.error("x") is False
    assert disabled.stats.logs.dropped["disabled"] == 1
    client = make_client(logs=LogsConfig(max_logs=1, rate_window=3600))
    client.opt_out()
    assert client.logger.info("x") is False
    client.opt_in()
    assert client.logger.info("   ") is False
    assert client.logger.info("first", [1, 2]) is False  # type: ignore[arg-type]
    assert client.logger.info("first") is True
    assert client.logger.info("second") is False
    dropped = client.stats.logs.dropped
    assert (dropped["opted_out"], dropped["invalid"], dropped["rate_limited"]) == (1, 2, 1)
    client.close(2)
    assert client.logger.fatal("after close") is False
    assert _bodies(server.log_records()) == ["first"]
