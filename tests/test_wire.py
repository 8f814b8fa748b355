"""What goes on the wire for each message type (posthog-wire.md §1.2-1.4)."""

from __future__ import annotations

import gzip
import json
import os
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from posthog_otel import Alias, Capture, Client, GroupIdentify, Groups, Identify, Properties
from posthog_otel import __version__ as version
from posthog_otel.client import USER_AGENT
from posthog_otel.export._gzip import gzip_body

from .conftest import API_KEY


def sent(server, client, count=None):
    assert client.flush(5)
    events = server.events
    if count is not None:
        assert len(events) == count
    return events


@pytest.mark.parametrize("size", [0, 100, 40_000, 3_000_000])
def test_a_gzip_body_is_one_member_the_same_bytes_as_before(size):
    """One zlib call (one GIL release) instead of ``compressobj`` + ``flush``; the bytes
    on the wire stay those of level 1, and any gzip reader reads them."""
    body = os.urandom(size // 2).hex().encode()
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    assert gzip_body(body) == compressor.compress(body) + compressor.flush()
    assert gzip.decompress(gzip_body(body)) == body


def test_batch_envelope_and_headers(server, make_client):
    client = make_client()
    client.capture("evt", "u1")
    sent(server, client, 1)
    (request,) = server.capture_requests()
    assert request.path == "/batch"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["user-agent"].startswith("posthog-python/")
    body = json.loads(gzip.decompress(request.raw_body))
    assert list(body) == ["batch", "historical_migration", "sent_at", "api_key"]
    assert body["api_key"] == API_KEY
    assert body["historical_migration"] is False
    assert datetime.fromisoformat(body["sent_at"]).tzinfo is not None
    assert "authorization" not in request.headers


def test_plain_json_and_historical_migration(server, make_client):
    client = make_client(gzip=False, historical_migration=True)
    client.capture("evt", "u1")
    sent(server, client, 1)
    (request,) = server.capture_requests()
    assert "content-encoding" not in request.headers
    assert json.loads(request.raw_body)["historical_migration"] is True


def test_capture_shape(server, make_client):
    client = make_client()
    ts = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    given = uuid.uuid4()
    returned = client.enqueue(
        Capture(
            "user_signed_up",
            distinct_id=42,
            properties=Properties().set("plan", "pro").set("seats", 3),
            groups=Groups().set("company", "acme"),
            timestamp=ts,
            uuid=given,
        )
    )
    assert returned == str(given)
    (event,) = sent(server, client, 1)
    assert list(event) == ["event", "distinct_id", "properties", "timestamp", "uuid"]
    assert event["event"] == "user_signed_up"
    assert event["distinct_id"] == "42"
    assert event["uuid"] == str(given)
    assert event["timestamp"] == "2026-01-02T01:04:05.678901+00:00"
    assert event["properties"] == {
        "$lib": "posthog-otel",
        "$lib_version": version,
        "$geoip_disable": True,
        "plan": "pro",
        "seats": 3,
        "$groups": {"company": "acme"},
    }


def test_generated_uuid_is_v7_and_timestamp_is_utc_now(server, make_client):
    client = make_client()
    before = datetime.now(timezone.utc)
    returned = client.capture("evt", "u1")
    (event,) = sent(server, client, 1)
    parsed = uuid.UUID(returned)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert event["uuid"] == returned
    ms = int(returned.replace("-", "")[:12], 16)
    assert abs(ms / 1000 - before.timestamp()) < 5
    stamp = datetime.fromisoformat(event["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs((stamp - before).total_seconds()) < 5


def test_uuid7_ids_are_unique():
    client = Client(disabled=True)
    from posthog_otel._ids import uuid7

    ids = {uuid7() for _ in range(50_000)}
    assert len(ids) == 50_000
    client.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-03-01T10:00:00Z", "2026-03-01T10:00:00+00:00"),
        ("2026-03-01T10:00:00.5+02:00", "2026-03-01T08:00:00.500000+00:00"),
        (datetime(2026, 3, 1, 10, 0, 0, 123000), "2026-03-01T10:00:00.123000+00:00"),
    ],
)
def test_timestamp_inputs(server, make_client, given, expected):
    client = make_client()
    client.capture("evt", "u1", timestamp=given)
    (event,) = sent(server, client, 1)
    assert event["timestamp"] == expected


def test_epoch_second_timestamps_are_sent_as_isoformat_writes_them(server, make_client):
    # Epoch seconds (what the client and the log handler record) are encoded as a UTC
    # datetime that orjson writes: it must be exactly datetime.isoformat()'s text, with
    # and without microseconds, before 1970 and at the microsecond rounding edges.
    client = make_client()
    given = [1767225600.0, 1767225600.000001, 1767225600.5, 0.9999995, -86400.25, 1e-7]
    given += [1732700000.0000005, 253402300799.0, -62135596800.0]
    for index, value in enumerate(given):
        client.capture(f"evt{index}", "u1", timestamp=value)
    events = {event["event"]: event for event in sent(server, client, len(given))}
    for index, value in enumerate(given):
        expected = datetime.fromtimestamp(value, timezone.utc).isoformat()
        assert events[f"evt{index}"]["timestamp"] == expected, value
    assert not any(client.stats.corrected.values())


def test_out_of_range_epoch_timestamp_becomes_now_with_warning(server, make_client):
    client = make_client()
    client.capture("evt", "u1", timestamp=1e20)
    (event,) = sent(server, client, 1)
    stamp = datetime.fromisoformat(event["timestamp"])
    assert abs((stamp - datetime.now(timezone.utc)).total_seconds()) < 5
    assert client.stats.corrected["invalid_timestamp"] == 1


def test_unparseable_timestamp_becomes_now_with_warning(server, make_client, warnings_log):
    client = make_client()
    client.capture("evt", "u1", timestamp="yesterday-ish")
    (event,) = sent(server, client, 1)
    stamp = datetime.fromisoformat(event["timestamp"])
    assert abs((stamp - datetime.now(timezone.utc)).total_seconds()) < 5
    assert client.stats.corrected["invalid_timestamp"] == 1
    assert "timestamp" in warnings_log.text


def test_invalid_uuid_is_replaced_and_counted(server, make_client):
    client = make_client()
    returned = client.capture("evt", "u1", uuid="not-a-uuid")
    (event,) = sent(server, client, 1)
    assert returned is not None and returned != "not-a-uuid"
    assert event["uuid"] == returned
    assert uuid.UUID(returned).version == 7
    assert client.stats.corrected["invalid_uuid"] == 1


def test_identify_shape(server, make_client):
    client = make_client()
    client.enqueue(Identify("u1", {"email": "a@b.c"}, set_once={"first": "x"}))
    (event,) = sent(server, client, 1)
    assert event["event"] == "$identify"
    assert event["distinct_id"] == "u1"
    assert event["properties"]["$set"] == {"email": "a@b.c"}
    assert event["properties"]["$set_once"] == {"first": "x"}
    assert event["$set"] == {"email": "a@b.c"}
    assert event["$set_once"] == {"first": "x"}
    assert "$anon_distinct_id" not in event["properties"]
    assert event["properties"]["$lib"] == "posthog-otel"


def test_set_and_set_once(server, make_client):
    client = make_client()
    client.set("u1", {"plan": "pro"})
    client.set_once("u1", {"signup": "2026"})
    assert client.set("u1", {}) is None
    first, second = sent(server, client, 2)
    assert first["event"] == "$set" and first["$set"] == {"plan": "pro"}
    assert first["properties"]["$set"] == {"plan": "pro"}
    assert second["event"] == "$set_once" and second["$set_once"] == {"signup": "2026"}
    assert client.stats.dropped["invalid"] == 1


def test_alias_shape(server, make_client):
    client = make_client()
    client.alias("anon-123", "user-123")
    client.enqueue(Alias(distinct_id="anon-9", alias="user-9"))
    first, second = sent(server, client, 2)
    assert first["event"] == "$create_alias"
    assert first["distinct_id"] == "anon-123"
    assert first["properties"]["distinct_id"] == "anon-123"
    assert first["properties"]["alias"] == "user-123"
    assert second["distinct_id"] == "anon-9" and second["properties"]["alias"] == "user-9"


def test_group_identify_shape(server, make_client):
    client = make_client()
    client.group_identify("company", "company-123", {"plan": "pro"})
    client.enqueue(GroupIdentify("company", "c2", distinct_id="u7"))
    first, second = sent(server, client, 2)
    assert first["event"] == "$groupidentify"
    assert first["distinct_id"] == "$company_company-123"
    assert first["properties"]["$group_type"] == "company"
    assert first["properties"]["$group_key"] == "company-123"
    assert first["properties"]["$group_set"] == {"plan": "pro"}
    assert second["distinct_id"] == "u7"
    assert second["properties"]["$group_set"] == {}


def test_pageview_and_set_in_capture_properties(server, make_client):
    client = make_client()
    client.capture("$pageview", "u1", {"$current_url": "https://x.test/a", "$set": {"plan": "pro"}})
    (event,) = sent(server, client, 1)
    assert event["event"] == "$pageview"
    assert event["properties"]["$current_url"] == "https://x.test/a"
    assert event["properties"]["$set"] == {"plan": "pro"}


def test_geoip_and_super_properties(server, make_client):
    client = make_client(super_properties={"service": "api", "plan": "default"})
    client.capture("a", "u1", {"plan": "explicit"})
    client.capture("b", "u1", disable_geoip=False)
    first, second = sent(server, client, 2)
    assert first["properties"]["service"] == "api"
    assert first["properties"]["plan"] == "explicit"
    assert first["properties"]["$geoip_disable"] is True
    assert "$geoip_disable" not in second["properties"]
    assert second["properties"]["service"] == "api"


def test_caller_may_override_lib(server, make_client):
    client = make_client()
    client.capture("a", "u1", {"$lib": "custom"})
    (event,) = sent(server, client, 1)
    assert event["properties"]["$lib"] == "custom"


class Opaque:
    pass


def test_non_json_values_are_converted(server, make_client):
    from dataclasses import dataclass

    @dataclass
    class Point:
        x: int
        y: int

    client = make_client()
    cyclic: list = []
    cyclic.append(cyclic)
    props = {
        "decimal": Decimal("1.25"),
        "uuid": uuid.UUID(int=1),
        "set": {3},
        "tuple": (1, "a"),
        "bytes": b"caf\xc3\xa9",
        "bad_bytes": b"\xff",
        "nan": float("nan"),
        "inf": float("-inf"),
        "date": datetime(2026, 1, 1).date(),
        "dt": datetime(2026, 1, 1, 12, tzinfo=timezone.utc),
        "point": Point(1, 2),
        "object": Opaque(),
        "complex": 1j,
        "big": 2**80,
        "int_keys": {1: "one"},
        "cyclic": cyclic,
    }
    client.capture("values", "u1", props)
    client.capture("after", "u1")
    first, second = sent(server, client, 2)
    p = first["properties"]
    assert p["decimal"] == 1.25
    assert p["uuid"] == str(uuid.UUID(int=1))
    assert p["set"] == [3]
    assert p["tuple"] == [1, "a"]
    assert p["bytes"] == "café"
    assert p["bad_bytes"] is None
    assert p["nan"] is None and p["inf"] is None
    assert p["date"] == "2026-01-01"
    assert p["dt"] == "2026-01-01T12:00:00+00:00"
    assert p["point"] == {"x": 1, "y": 2}
    assert p["object"] is None
    assert p["complex"] is None
    assert p["big"] == float(2**80)
    assert p["int_keys"] == {"1": "one"}
    assert p["cyclic"] == [None]
    assert second["event"] == "after"
    assert props["set"] == {3}  # the caller's objects are not touched


def test_message_and_properties_are_not_mutated(server, make_client):
    client = make_client(super_properties={"s": 1})
    props = {"a": 1}
    message = Capture("evt", "u1", props)
    client.enqueue(message)
    client.enqueue(message)
    events = sent(server, client, 2)
    assert props == {"a": 1}
    assert events[0]["uuid"] != events[1]["uuid"]


def test_cookieless_mode_is_coerced_before_sending(server, make_client):
    client = make_client()
    client.capture("a", "u1", {"$cookieless_mode": "true"})
    client.capture("b", "u1", {"$cookieless_mode": "maybe"})
    client.capture("c", "u1", {"$cookieless_mode": None})
    first, second, third = sent(server, client, 3)
    assert first["properties"]["$cookieless_mode"] is True
    assert "$cookieless_mode" not in second["properties"]
    assert "$cookieless_mode" not in third["properties"]  # null is refused too
