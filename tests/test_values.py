"""Generated property values never raise and never break a batch."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_otel import Client
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY, fresh

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=20),
    st.decimals(allow_nan=True),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
    st.dates(),
    st.uuids(),
    st.complex_numbers(),
    st.builds(object),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=3),
        st.dictionaries(st.one_of(st.text(), st.integers(), st.booleans()), children, max_size=4),
    ),
    max_leaves=12,
)
properties = st.dictionaries(st.text(min_size=1), values, max_size=5)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(properties, min_size=1, max_size=5))
def test_generated_properties_never_raise_or_poison_a_batch(module_server, batch):
    server = fresh(module_server)
    client = Client(API_KEY, host=server.url, flush_interval=60.0)
    try:
        uuids = [client.capture("generated", "u", props) for props in batch]
        assert all(uuids)
        assert client.flush(10)
        assert [e["uuid"] for e in server.events] == uuids
        assert client.stats.dropped["serialization"] == 0
    finally:
        client.close()


def test_known_awkward_values_round_trip():
    with FakePostHog() as server:
        client = Client(API_KEY, host=server.url)
        client.capture(
            "awkward",
            "u",
            {
                "naive": dt.datetime(2026, 1, 1, 1, 2, 3),
                "nan_decimal": decimal.Decimal("NaN"),
                "uuid_key": {uuid.UUID(int=5): 1},
                "nested": {"a": [{"b": {1, 2}}]},
            },
        )
        assert client.flush(5)
        props = server.events[0]["properties"]
        assert props["naive"] == "2026-01-01T01:02:03"
        assert props["nan_decimal"] is None
        assert props["uuid_key"] == {str(uuid.UUID(int=5)): 1}
        assert props["nested"] == {"a": [{"b": [1, 2]}]}
        client.close()
