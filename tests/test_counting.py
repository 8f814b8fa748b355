"""Hostile values handed to the client: counted as ``invalid``, warned about at most once
per interval, never raised into the caller."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no string for you")


class _BadBool:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth for you")


class _BadMapping(Mapping[str, Any]):
    """Looks like a non-empty mapping; iterating it raises."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iteration for you")


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    return caplog


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """This thread's records (a background thread left by another test, e.g. a flag
    poller, may log meanwhile)."""
    here = threading.get_ident()
    return [r for r in caplog.records if r.name.startswith("posthog_otel") and r.thread == here]


def test_distinct_id_whose_str_raises_is_counted_not_logged_per_call(make_client, logged):
    client = make_client()
    for _ in range(10_000):
        assert client.capture("e", _BadStr()) is None
    assert client.stats.dropped["invalid"] == 10_000
    records = _records(logged)
    assert 1 <= len(records) <= 3
    assert all(r.levelno <= logging.WARNING for r in records)


@pytest.mark.parametrize("method", ["set", "set_once"])
def test_person_properties_whose_iteration_raises_are_counted(make_client, logged, method):
    client = make_client()
    for _ in range(1_000):
        assert getattr(client, method)("u1", _BadMapping()) is None
    assert client.stats.dropped["invalid"] == 1_000
    assert 1 <= len(_records(logged)) <= 3


@pytest.mark.parametrize("method", ["set", "set_once"])
def test_person_properties_whose_bool_raises_do_not_raise(make_client, logged, method):
    client = make_client()
    for _ in range(100):
        assert getattr(client, method)("u1", _BadBool()) is None
    assert client.stats.dropped["invalid"] == 100
    assert 1 <= len(_records(logged)) <= 3


def test_set_with_a_bad_distinct_id_is_counted(make_client, logged):
    client = make_client()
    assert client.set("u1", {"plan": "pro"})  # the good path still works
    for _ in range(100):
        assert client.set(_BadStr(), {"plan": "pro"}) is None
        assert client.alias(_BadStr(), "u2") is None
    assert client.stats.dropped["invalid"] == 200
    assert 1 <= len(_records(logged)) <= 3


def test_unexpected_errors_in_enqueue_are_rate_limited(make_client, logged):
    client = make_client()
    for _ in range(1_000):  # properties whose iteration raises: caught by enqueue's guard
        assert client.capture("e", "u1", _BadMapping()) is None
        assert client.identify("u1", _BadMapping()) is None
    assert client.stats.dropped["invalid"] == 2_000
    records = _records(logged)
    assert 1 <= len(records) <= 4
    assert all(r.levelno <= logging.WARNING for r in records)
    assert sum(r.exc_info is not None for r in records) <= 1  # one traceback, at DEBUG
