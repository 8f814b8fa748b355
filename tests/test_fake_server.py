"""FakePostHog answers like PostHog's capture service (posthog-server.md §6.1)."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

TOKEN = "phc_valid"
EVENT = {"event": "e", "distinct_id": "u", "properties": {}}


def post(server, path, body, *, headers=None, raw=False):
    content = body if raw else json.dumps(body).encode()
    return httpx.post(server.url + path, content=content, headers=headers or {}).status_code


@pytest.mark.parametrize("path", ["/batch/", "/i/v0/e/", "/e/", "/capture/"])
def test_accepts_each_capture_path(server, path):
    body = (
        {"api_key": TOKEN, "batch": [EVENT]} if path == "/batch/" else {**EVENT, "api_key": TOKEN}
    )
    assert post(server, path, body) == 200
    assert server.events[0]["event"] == "e"


def test_accepts_gzip_with_header_or_magic_bytes(server):
    data = gzip.compress(json.dumps({"api_key": TOKEN, "batch": [EVENT]}).encode())
    assert post(server, "/batch/", data, raw=True, headers={"Content-Encoding": "gzip"}) == 200
    assert post(server, "/batch/", data, raw=True) == 200
    assert len(server.events) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"batch": [EVENT]}, 401),  # no token anywhere
        ({"api_key": "", "batch": [EVENT]}, 401),
        ({"api_key": "phx_personal", "batch": [EVENT]}, 401),
        ({"api_key": "x" * 65, "batch": [EVENT]}, 401),
        ([{**EVENT, "token": "phc_a"}, {**EVENT, "token": "phc_b"}], 401),
        ({"api_key": TOKEN, "batch": []}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "event": ""}]}, 400),
        ({"api_key": TOKEN, "batch": [{"distinct_id": "u"}]}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "distinct_id": None}]}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "distinct_id": ""}]}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "uuid": "nope"}]}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "properties": {"$cookieless_mode": "yes"}}]}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "properties": {"$cookieless_mode": None}}]}, 400),
        ({"api_key": TOKEN, "batch": [EVENT, {**EVENT, "event": ""}]}, 400),
        ({"api_key": TOKEN, "batch": [{**EVENT, "distinct_id": 42}]}, 200),
        ({"api_key": TOKEN, "batch": [{**EVENT, "uuid": ""}]}, 200),
        ({"api_key": TOKEN, "batch": [{**EVENT, "timestamp": "garbage"}]}, 200),
    ],
)
def test_validation_status_codes(server, body, status):
    assert post(server, "/batch/", body) == status
    if status != 200:
        assert server.events == []  # all or nothing


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b"", {}),
        (b"not json", {}),
        (b"\x1f\x8b\x08garbage", {}),
        (b'{"api_key": "phc_valid", "batch": [\xff]}', {}),
    ],
)
def test_bad_bodies_are_400(server, raw, headers):
    assert post(server, "/batch/", raw, raw=True, headers=headers) == 400


def test_size_limits_are_413(server):
    server.max_body_bytes = 1000
    assert post(server, "/batch/", {"api_key": TOKEN, "batch": [EVENT] * 100}) == 413
    server.max_body_bytes = 20 * 1024 * 1024
    big = {**EVENT, "properties": {"x": "y" * 1_000_001}}
    assert post(server, "/batch/", {"api_key": TOKEN, "batch": [big]}) == 413


def test_faults(server):
    server.fail_next(1, 429, retry_after=3)
    response = httpx.post(server.url + "/batch/", json={"api_key": TOKEN, "batch": [EVENT]})
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    server.drop_next(1)
    with pytest.raises(httpx.TransportError):
        httpx.post(server.url + "/batch/", json={"api_key": TOKEN, "batch": [EVENT]})
    assert post(server, "/batch/", {"api_key": TOKEN, "batch": [EVENT]}) == 200


def test_flags_and_definitions(server):
    server.set_flags({"flags": {"beta": {"key": "beta", "enabled": True}}})
    response = httpx.post(server.url + "/flags/?v=2", json={"api_key": TOKEN, "distinct_id": "u"})
    assert response.status_code == 200
    assert response.json()["flags"]["beta"]["enabled"] is True
    assert httpx.post(server.url + "/flags/?v=2", json={"api_key": TOKEN}).status_code == 400
    assert httpx.post(server.url + "/flags/?v=2", json={"distinct_id": "u"}).status_code == 401
    url = server.url + "/flags/definitions?token=" + TOKEN + "&send_cohorts"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer phc_x"}).status_code == 401
    first = httpx.get(url, headers={"Authorization": "Bearer phs_secret"})
    assert first.status_code == 200 and first.json()["flags"] == []
    etag = first.headers["etag"]
    again = httpx.get(url, headers={"Authorization": "Bearer phs_secret", "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    server.set_flag_definitions({"flags": [{"key": "x"}], "group_type_mapping": {}, "cohorts": {}})
    changed = httpx.get(url, headers={"Authorization": "Bearer phs_secret", "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
