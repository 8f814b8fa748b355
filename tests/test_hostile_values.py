"""Hostile property values (issue #9, item 12): the event is repaired and kept, never
dropped as ``serialization``, and every repair is counted in ``stats.corrected``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from posthog_otel._serialize import MAX_DEPTH, TOO_DEEP

FFFD = "\ufffd"


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(levels - 1):
        value = {"next": value}
    return value


def _depth(value: Any) -> int:
    levels = 0
    while isinstance(value, dict):
        levels += 1
        value = value.get("next", value.get("leaf"))
    return levels


def _sent_one(server, client) -> dict[str, Any]:
    assert client.flush(5)
    (event,) = server.events
    assert client.stats.dropped["serialization"] == 0
    return event


def test_lone_surrogate_in_a_value_is_replaced(server, make_client):
    client = make_client()
    name = os.fsdecode(b"report\xff.pdf")  # 'report\udcff.pdf'
    assert client.capture("uploaded", "u1", {"file": name, "ok": "fine", "list": [name]})
    event = _sent_one(server, client)
    assert event["properties"]["file"] == f"report{FFFD}.pdf"
    assert event["properties"]["list"] == [f"report{FFFD}.pdf"]
    assert event["properties"]["ok"] == "fine"
    assert client.stats.corrected["invalid_string"] == 2


def test_lone_surrogate_in_a_key_is_replaced(server, make_client):
    client = make_client()
    assert client.capture("uploaded", "u1", {"\udcffname": 1, "nested": {"k\ud800": 2}})
    event = _sent_one(server, client)
    assert event["properties"][f"{FFFD}name"] == 1
    assert event["properties"]["nested"] == {f"k{FFFD}": 2}
    assert client.stats.corrected["invalid_string"] == 2


def test_surrogate_in_event_name_and_distinct_id(server, make_client):
    client = make_client()
    assert client.capture("bad\udcffname", "user\udcff", {"a": 1})
    event = _sent_one(server, client)
    assert event["event"] == f"bad{FFFD}name"
    assert event["distinct_id"] == f"user{FFFD}"


def test_surrogate_pair_is_joined_not_replaced(server, make_client):
    client = make_client()
    assert client.capture("e", "u1", {"emoji": "\ud83d\ude00", "bad": "\udcff"})
    event = _sent_one(server, client)
    assert event["properties"]["emoji"] == "\U0001f600"
    assert event["properties"]["bad"] == FFFD


def test_dict_nested_300_deep_is_truncated(server, make_client):
    client = make_client()
    assert client.capture("deep", "u1", {"tree": _nested(300), "plain": 1})
    event = _sent_one(server, client)
    tree = event["properties"]["tree"]
    assert _depth(tree) == MAX_DEPTH
    node = tree
    for _ in range(MAX_DEPTH - 1):
        node = node["next"]
    assert node["next"] == TOO_DEEP
    assert event["properties"]["plain"] == 1
    assert client.stats.corrected["truncated_depth"] == 1


def test_list_nested_300_deep_is_truncated(server, make_client):
    client = make_client()
    value: Any = ["leaf"]
    for _ in range(299):
        value = [value]
    assert client.capture("deep", "u1", {"tree": value})
    event = _sent_one(server, client)
    node, levels = event["properties"]["tree"], 0
    while isinstance(node, list):
        node, levels = node[0], levels + 1
    assert (levels, node) == (MAX_DEPTH, TOO_DEEP)
    assert client.stats.corrected["truncated_depth"] == 1


def test_nesting_within_the_limit_is_kept_whole(server, make_client):
    client = make_client()
    assert client.capture("deep", "u1", {"tree": _nested(MAX_DEPTH)})
    event = _sent_one(server, client)
    assert event["properties"]["tree"] == _nested(MAX_DEPTH)
    assert client.stats.corrected.get("truncated_depth", 0) == 0


@dataclass
class Node:
    name: str
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)


def test_self_referencing_dataclass_becomes_null_where_it_recurs(server, make_client):
    client = make_client()
    node = Node("root")
    node.parent = node
    child = Node("child", parent=node)
    node.children.append(child)
    assert client.capture("tree", "u1", {"node": node, "after": "kept"})
    event = _sent_one(server, client)
    sent = event["properties"]["node"]
    assert sent["name"] == "root"
    assert sent["parent"] is None
    assert sent["children"] == [{"name": "child", "parent": None, "children": []}]
    assert event["properties"]["after"] == "kept"
    assert client.stats.corrected["circular_reference"] == 2


def test_self_referencing_dict_and_list(server, make_client):
    client = make_client()
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    items: list[Any] = [1]
    items.append(items)
    assert client.capture("loops", "u1", {"loop": loop, "items": items})
    event = _sent_one(server, client)
    assert event["properties"]["loop"] == {"a": 1, "self": None}
    assert event["properties"]["items"] == [1, None]
    assert client.stats.corrected["circular_reference"] == 2


def test_hostile_values_through_before_send_are_repaired_at_encode(server, make_client):
    """A value a before_send hook adds skips the capture-time snapshot: the encoder's
    slow path repairs it (the fast path stays orjson alone)."""
    deep = _nested(300)

    def hook(event: dict[str, Any]) -> dict[str, Any]:
        event["properties"]["file"] = "x\udcff"
        event["properties"]["tree"] = deep
        return event

    client = make_client(before_send=hook)
    assert client.capture("hooked", "u1", {"a": 1})
    event = _sent_one(server, client)
    assert event["properties"]["file"] == f"x{FFFD}"
    assert _depth(event["properties"]["tree"]) == MAX_DEPTH
    assert client.stats.corrected["invalid_string"] == 1
    assert client.stats.corrected["truncated_depth"] == 1


def test_identify_and_group_properties_are_repaired(server, make_client):
    client = make_client()
    assert client.identify("u1", {"file": "a\udcff", "tree": _nested(300)})
    assert client.group_identify("company", "acme", {"name": "b\udcff"})
    assert client.flush(5)
    identify, group = server.events
    assert identify["properties"]["$set"]["file"] == f"a{FFFD}"
    assert group["properties"]["$group_set"]["name"] == f"b{FFFD}"
    assert client.stats.dropped["serialization"] == 0
    assert client.stats.corrected["truncated_depth"] >= 1
