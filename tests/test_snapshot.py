"""Values of the moment of capture (issue #9, items 15 and 16).

An event carries what its values were when it was captured, whatever the caller does
to them afterwards, and nothing queued keeps a log record, an ``exc_info``, a traceback
or a frame alive."""

from __future__ import annotations

import gc
import logging
import socket
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog

from posthog_otel import PostHogHandler, PostHogProcessor
from posthog_otel._snapshot import ENTRY_BYTES, EVENT_BYTES, snapshot_value, snapshot_values

# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def app_log() -> logging.Logger:
    """A logger outside the logging manager, with only the handlers a test adds: pytest
    attaches its capture handlers, which keep every record, to every registered logger
    (and would keep alive what these tests check is released)."""
    log = logging.Logger("snapshot_app", logging.DEBUG)
    log.propagate = False
    return log


@pytest.fixture
def slog() -> Iterator[Any]:
    def configure(processor: PostHogProcessor) -> Any:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                processor,
                lambda logger, method, event_dict: "",
            ],
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        return structlog.get_logger("svc")

    yield configure
    structlog.reset_defaults()


def _refusing_url() -> str:
    """A local port where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _cart() -> dict[str, Any]:
    return {"items": [{"sku": "a", "qty": 1}], "meta": {"coupon": None}, "pair": (1, [2])}


def _mutate(cart: dict[str, Any]) -> None:
    cart["items"][0]["qty"] = 99
    cart["items"].append({"sku": "b"})
    cart["meta"]["coupon"] = "FREE"
    cart["pair"][1].append(3)
    cart["new"] = True


SENT_CART = {"items": [{"sku": "a", "qty": 1}], "meta": {"coupon": None}, "pair": [1, [2]]}


# ---------------------------------------------------------------------- the client


def test_capture_sends_the_values_of_the_moment(server, make_client):
    client = make_client()
    cart, tags = _cart(), ["x"]
    properties = {"cart": cart, "tags": tags, "plan": "pro"}
    assert client.capture("checkout", "u1", properties, groups={"company": "acme"})
    _mutate(cart)
    tags.append("y")
    properties["plan"] = "free"
    assert client.flush(5)
    (event,) = server.events
    assert event["properties"]["cart"] == SENT_CART
    assert event["properties"]["tags"] == ["x"]
    assert event["properties"]["plan"] == "pro"


@dataclass
class Plan:
    name: str
    seats: list[int] = field(default_factory=list)


class Model:
    """Looks like a pydantic model: dumped when captured."""

    def __init__(self) -> None:
        self.value = "old"

    def model_dump(self) -> dict[str, Any]:
        return {"value": self.value}


class Opaque:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def test_other_objects_are_converted_when_captured(server, make_client):
    client = make_client()
    plan, seen, model = Plan("pro", [1]), {1}, Model()
    assert client.capture(
        "checkout", "u1", {"plan": plan, "seen": seen, "model": model, "opaque": Opaque()}
    )
    plan.name, model.value = "free", "new"
    plan.seats.append(2)
    seen.add(2)
    assert client.flush(5)
    props = server.events[0]["properties"]
    assert props["plan"] == {"name": "pro", "seats": [1]}
    assert props["seen"] == [1]
    assert props["model"] == {"value": "old"}
    assert props["opaque"] is None  # an unknown object is null, and its __str__ never runs


def test_person_and_group_properties_are_snapshotted(server, make_client):
    client = make_client()
    address, tags, hq = {"city": "Paris"}, ["a"], {"city": "Berlin"}
    assert client.identify("u1", {"address": address}, {"tags": tags})
    assert client.set("u1", {"address": address})
    assert client.group_identify("company", "acme", {"hq": hq})
    address["city"], hq["city"] = "Rome", "Oslo"
    tags.append("b")
    assert client.flush(5)
    identify, person, group = server.events
    assert identify["properties"]["$set"] == {"address": {"city": "Paris"}}
    assert identify["$set"] == {"address": {"city": "Paris"}}
    assert identify["properties"]["$set_once"] == {"tags": ["a"]}
    assert person["properties"]["$set"] == {"address": {"city": "Paris"}}
    assert group["properties"]["$group_set"] == {"hq": {"city": "Berlin"}}


def test_event_waiting_for_flags_keeps_its_values(server, make_client):
    """``send_feature_flags`` without local definitions: the event waits in the flags
    worker for a ``/flags`` answer, still with the values of the moment."""
    server.set_flags({"flags": {}})
    released = server.hold_next(path="/flags")
    client = make_client()
    cart = _cart()
    assert client.capture("checkout", "u1", {"cart": cart}, send_feature_flags=True)
    _mutate(cart)  # the /flags answer, hence the event's completion, comes after this
    released.set()
    assert client.flush(5)
    assert server.events[0]["properties"]["cart"] == SENT_CART


# ---------------------------------------------------------------------- logging


def test_log_extras_are_the_values_of_the_moment(server, make_client, app_log):
    client = make_client()
    app_log.addHandler(PostHogHandler(client))
    cart = _cart()
    app_log.info("checkout", extra={"distinct_id": "u1", "cart": cart, "plan": "pro"})
    _mutate(cart)
    assert client.flush(5)
    (event,) = server.events
    assert event["properties"]["cart"] == SENT_CART
    assert event["properties"]["plan"] == "pro"


class Amount:
    def __init__(self, value: int) -> None:
        self.value = value

    def __str__(self) -> str:
        return f"{self.value} EUR"


def test_message_is_formatted_on_the_callers_thread(server, make_client, app_log):
    client = make_client()
    app_log.addHandler(PostHogHandler(client))
    amount = Amount(10)
    app_log.info("paid %s", amount, extra={"distinct_id": "u1"})
    amount.value = 999999
    assert client.flush(5)
    (event,) = server.events
    assert event["event"] == "paid %s"
    assert event["properties"]["$log_message"] == "paid 10 EUR"


def test_argument_whose_str_raises_is_counted_not_raised(server, make_client, app_log, capsys):
    client = make_client()
    app_log.addHandler(PostHogHandler(client))
    app_log.info("paid %s", Opaque(), extra={"distinct_id": "u1"})  # must not raise
    app_log.info("refund %s %s", 1, extra={"distinct_id": "u1"})  # too few arguments
    assert client.flush(5)
    paid, refund = server.events
    assert (paid["event"], refund["event"]) == ("paid %s", "refund %s %s")
    assert "$log_message" not in paid["properties"]  # kept, with the template only
    assert client.stats.corrected["unformattable_message"] == 2
    assert "Logging error" not in capsys.readouterr().err


def test_queue_holds_no_log_record(server, make_client, app_log):
    """The queue holds a compact tuple (few objects for the GC to walk), not the record."""
    client = make_client()
    handler = PostHogHandler(client)
    records: list[weakref.ref[logging.LogRecord]] = []

    def remember(record: logging.LogRecord) -> bool:
        records.append(weakref.ref(record))
        return True

    handler.addFilter(remember)
    app_log.addHandler(handler)
    for i in range(10):
        app_log.info("tick %d", i, extra={"distinct_id": "u1"})
    gc.collect()
    assert client.stats.queued == 10
    assert [ref() for ref in records] == [None] * 10
    assert client.flush(5)
    assert [e["properties"]["$log_message"] for e in server.events] == [
        f"tick {i}" for i in range(10)
    ]


# ---------------------------------------------------------------------- structlog


def test_structlog_values_of_the_moment(server, make_client, slog):
    client = make_client()
    log = slog(PostHogProcessor(client))
    cart, groups = _cart(), {"company": "acme"}
    log.info("checkout", distinct_id="u1", cart=cart, groups=groups)
    _mutate(cart)
    groups["company"] = "other"
    assert client.flush(5)
    (event,) = server.events
    assert event["properties"]["cart"] == SENT_CART
    assert event["properties"]["$groups"] == {"company": "acme"}


# ---------------------------------------------------------------------- item 15


class Big:
    """A large object that only a frame's locals reference."""

    def __init__(self) -> None:
        self.payload = bytearray(1 << 20)


def _fail(refs: list[weakref.ref[Big]]) -> None:
    big = Big()
    refs.append(weakref.ref(big))
    raise ValueError(f"failed with {len(big.payload)} bytes")


def test_log_exception_pins_no_traceback_while_the_server_is_down(make_client, app_log):
    client = make_client(host=_refusing_url(), flush_at=10_000, max_queue_size=10_000)
    app_log.addHandler(PostHogHandler(client))
    refs: list[weakref.ref[Big]] = []
    for i in range(200):
        try:
            _fail(refs)
        except ValueError:
            app_log.exception("job %d failed", i, extra={"distinct_id": "u1"})
    gc.collect()
    # 200 events and one $exception (the 199 identical ones after it: deduplicated).
    assert client.stats.queued == 201
    assert client.stats.dropped["deduplicated"] == 199
    assert sum(ref() is not None for ref in refs) == 0
    client.close(0.1)  # nothing can be delivered: do not wait for it


def test_structlog_exc_info_pins_no_traceback(make_client, slog):
    client = make_client(host=_refusing_url(), flush_at=10_000, max_queue_size=10_000)
    log = slog(PostHogProcessor(client))
    refs: list[weakref.ref[Big]] = []
    for _ in range(50):
        try:
            _fail(refs)
        except ValueError as exc:
            log.error("job failed", distinct_id="u1", exc_info=exc)
    gc.collect()
    assert client.stats.queued == 51  # 50 events, one $exception (49 deduplicated)
    assert sum(ref() is not None for ref in refs) == 0
    client.close(0.1)


def test_queued_record_keeps_no_argument_nor_private_object(make_client, app_log):
    """The %-arguments are formatted, then dropped; ``_``-prefixed extras that are not
    scalars are never sent, so they are not kept either."""
    client = make_client()
    app_log.addHandler(PostHogHandler(client))
    argument, private = Big(), Big()
    refs = [weakref.ref(argument), weakref.ref(private)]
    app_log.info("got %s", argument, extra={"distinct_id": "u1", "_request": private})
    del argument, private
    gc.collect()
    assert client.stats.queued == 1
    assert [ref() for ref in refs] == [None, None]


def test_log_exception_event_keeps_its_message(server, make_client, app_log):
    client = make_client()
    app_log.addHandler(PostHogHandler(client))
    try:
        _fail([])
    except ValueError:
        app_log.exception("job %s failed", "nightly", extra={"distinct_id": "u1"})
    assert client.flush(5)
    event, exception = server.events
    assert exception["event"] == "$exception"
    assert exception["properties"]["$log_message"] == "job nightly failed"
    assert event["event"] == "job %s failed"
    assert event["properties"]["$log_message"] == "job nightly failed"
    assert not {"exc_info", "exc_text", "stack_info"} & set(event["properties"])


# ---------------------------------------------------------------------- the snapshot


def test_snapshot_of_scalars_copies_nothing_and_estimates_the_size():
    source = {"plan": "pro", "seats": 3, "trial": False, "source": "bench"}
    target = dict(source)
    nbytes = snapshot_values(source, target, None)
    assert target == source
    assert nbytes == 4 * ENTRY_BYTES + len("pro") + len("bench")


def test_snapshot_estimate_follows_big_values():
    big = "x" * 100_000
    value, nbytes = snapshot_value({"text": big, "list": [big]}, None)
    assert value == {"text": big, "list": [big]}
    assert 200_000 <= nbytes < 200_000 + 100
    assert EVENT_BYTES > 0


def test_snapshot_of_a_cycle_and_deep_nesting_is_bounded_and_counted():
    corrections: list[str] = []
    loop: dict[str, Any] = {}
    loop["self"] = loop
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    target = {"loop": loop, "deep": deep}
    snapshot_values(dict(target), target, lambda what, detail: corrections.append(what))
    assert target["loop"] == {"self": None}
    assert sorted(corrections) == ["circular_reference", "truncated_depth"]
