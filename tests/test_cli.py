"""The ``posthog-otel`` command (issue #16), run for real as ``python -m posthog_otel``
in a subprocess against the fake PostHog on loopback: ``doctor`` with good keys, a
refused project key, a refused secret key, a host that is down or never answers, and
``flags eval`` on flags the fake defines (decided, inconclusive, unknown)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posthog_otel.flags import Definitions, why_not_local
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "phs_secret_key_9876543210"

DEFINITIONS = {
    "flags": [
        {
            "id": 1,
            "key": "beta",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}
                        ],
                        "rollout_percentage": 100,
                    },
                    {"properties": [], "rollout_percentage": 0},
                ]
            },
        },
        {
            "id": 2,
            "key": "checkout",
            "active": True,
            "filters": {
                "groups": [{"properties": [], "rollout_percentage": 100, "variant": "blue"}],
                "multivariate": {
                    "variants": [
                        {"key": "blue", "rollout_percentage": 50},
                        {"key": "green", "rollout_percentage": 50},
                    ]
                },
                "payloads": {"blue": '{"color": "#00f"}'},
            },
        },
        {"id": 3, "key": "off", "active": False, "filters": {"groups": []}},
        {
            "id": 4,
            "key": "company-flag",
            "active": True,
            "filters": {
                "aggregation_group_type_index": 0,
                "groups": [
                    {
                        "properties": [
                            {"key": "size", "value": 100, "operator": "gt", "type": "group"}
                        ],
                        "rollout_percentage": 100,
                    }
                ],
            },
        },
        {
            "id": 5,
            "key": "by-device",
            "active": True,
            "bucketing_identifier": "device_id",
            "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
        },
        {
            "id": 6,
            "key": "static-cohort",
            "active": True,
            "filters": {
                "groups": [
                    {"properties": [{"key": "id", "value": 7, "type": "cohort"}]},
                ]
            },
        },
        {
            "id": 7,
            "key": "continuity",
            "active": True,
            "ensure_experience_continuity": True,
            "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
        },
        {
            "id": 8,
            "key": "child",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {
                                "key": "static-cohort",
                                "value": True,
                                "operator": "flag_evaluates_to",
                                "type": "flag",
                            }
                        ]
                    }
                ]
            },
        },
        {
            "id": 9,
            "key": "split",
            "active": True,
            "filters": {
                "groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {
                    "variants": [
                        {"key": "left", "rollout_percentage": 50},
                        {"key": "right", "rollout_percentage": 50},
                    ]
                },
            },
        },
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePostHog]:
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        yield server


def _run(*argv: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "posthog_otel", *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _keys(fake: FakePostHog, **overrides: str) -> dict[str, str]:
    return {
        "POSTHOG_HOST": fake.url,
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_SECRET_KEY": SECRET_KEY,
        **overrides,
    }


def _assert_no_key_shown(proc: subprocess.CompletedProcess[str], *keys: str) -> None:
    for key in keys:
        assert key not in proc.stdout + proc.stderr
        assert key[:4] + "…" in proc.stdout  # its prefix is


# ------------------------------------------------------------------ doctor


def test_doctor_with_good_keys_reports_the_flags_and_why_some_are_not_local(fake):
    fake.reset()
    proc = _run("doctor", **_keys(fake))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "the project key is accepted" in out
    assert "loads the flag definitions: 9 flags" in out
    assert "6 of 9 evaluable locally; 3 need the server" in out
    assert "static-cohort: static cohort 7" in out
    assert "continuity: experience continuity" in out
    assert "child: depends on flag 'static-cohort': static cohort 7" in out
    assert "No problems found." in out
    _assert_no_key_shown(proc, API_KEY, SECRET_KEY)
    # The project key was checked through /flags, never by sending an event.
    paths = {r.path.split("?")[0] for r in fake.requests}
    assert paths == {"/flags", "/flags/definitions"}, paths
    assert fake.events == []


def test_doctor_with_a_refused_project_key_fails(fake):
    bad = "phx_personal_key_in_the_wrong_place"  # the fake (as PostHog) answers 401
    proc = _run("doctor", **_keys(fake, POSTHOG_API_KEY=bad))
    assert proc.returncode == 1, proc.stdout
    assert "the project key phx_… is refused (/flags: HTTP 401)" in proc.stdout
    assert "1 problem found." in proc.stdout
    _assert_no_key_shown(proc, bad)


def test_doctor_with_a_refused_secret_key_fails(fake):
    bad = "phc_project_key_given_as_secret"
    proc = _run("doctor", **_keys(fake, POSTHOG_SECRET_KEY=bad))
    assert proc.returncode == 1, proc.stdout
    assert "the project key is accepted" in proc.stdout
    assert "flag definitions cannot be loaded: the secret key phc_… was refused (HTTP 401)" in (
        proc.stdout
    )
    _assert_no_key_shown(proc, bad)


def test_doctor_without_a_secret_key_notes_remote_evaluation(fake):
    proc = _run("doctor", POSTHOG_HOST=fake.url, POSTHOG_PROJECT_API_KEY=API_KEY)
    assert proc.returncode == 0, proc.stdout
    assert "(POSTHOG_PROJECT_API_KEY)" in proc.stdout
    assert "no secret key (POSTHOG_SECRET_KEY or POSTHOG_PERSONAL_API_KEY)" in proc.stdout


def test_doctor_without_a_project_key_fails(fake):
    proc = _run("doctor", POSTHOG_HOST=fake.url)
    assert proc.returncode == 1
    assert "no project key (POSTHOG_API_KEY or POSTHOG_PROJECT_API_KEY)" in proc.stdout


def test_doctor_with_the_host_down_fails():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the test runs: connection refused
    proc = _run("doctor", POSTHOG_HOST=f"http://127.0.0.1:{port}", POSTHOG_API_KEY=API_KEY)
    assert proc.returncode == 1
    assert f"the host is not reachable: http://127.0.0.1:{port}" in proc.stdout
    assert "ConnectError" in proc.stdout


def test_doctor_gives_a_host_that_never_answers_its_deadline():
    with socket.socket() as sock:  # accepts connections (backlog), never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        host = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        proc = _run("doctor", "--timeout", "1", POSTHOG_HOST=host, POSTHOG_API_KEY=API_KEY)
        elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert "the host is not reachable" in proc.stdout
    assert "deadline 1 s per request" in proc.stdout
    assert elapsed < 15  # startup included; without a deadline it would never return


def test_doctor_with_an_invalid_host_setting_fails():
    proc = _run("doctor", POSTHOG_HOST="us.i.posthog.com", POSTHOG_API_KEY=API_KEY)
    assert proc.returncode == 1
    assert "the host setting is invalid: POSTHOG_HOST" in proc.stdout
    assert "must start with http:// or https://" in proc.stdout


# ------------------------------------------------------------------ flags eval


def _eval(fake: FakePostHog, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run("flags", "eval", *argv, **_keys(fake, **env))


def test_flags_eval_prints_value_reason_and_matched_condition(fake):
    proc = _eval(fake, "beta", "--distinct-id", "user-1", "--prop", "plan=pro")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "value      true" in proc.stdout
    assert "Evaluated locally: condition 1 of 2 matched (targeted)" in proc.stdout

    proc = _eval(fake, "beta", "--distinct-id", "user-1", "--prop", "plan=free")
    assert proc.returncode == 0
    assert "value      false" in proc.stdout
    assert "no condition matched" in proc.stdout


def test_flags_eval_of_a_variant_shows_its_payload(fake):
    proc = _eval(fake, "checkout", "--distinct-id", "user-2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'value      "blue"' in proc.stdout
    assert json.loads(proc.stdout.split("payload    ")[1].splitlines()[0]) == {"color": "#00f"}
    assert "condition 1 of 1 matched" in proc.stdout


def test_flags_eval_of_a_disabled_flag(fake):
    proc = _eval(fake, "off", "--distinct-id", "user-3")
    assert proc.returncode == 0
    assert "value      false" in proc.stdout
    assert "the flag is disabled" in proc.stdout


def test_flags_eval_with_groups_and_device_id(fake):
    proc = _eval(
        fake,
        "company-flag",
        "--distinct-id",
        "user-4",
        "--group",
        "company=acme",
        "--group-prop",
        "company.size=500",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "value      true" in proc.stdout
    assert "condition 1 of 1 matched (targeted)" in proc.stdout

    proc = _eval(fake, "by-device", "--distinct-id", "user-4")
    assert proc.returncode == 2
    assert "device_id needed for bucketing" in proc.stdout
    proc = _eval(fake, "by-device", "--distinct-id", "user-4", "--device-id", "dev-1")
    assert proc.returncode == 0
    assert "value      true" in proc.stdout


def test_flags_eval_that_only_the_server_can_decide_exits_2_and_says_why(fake):
    proc = _eval(fake, "static-cohort", "--distinct-id", "user-5")
    assert proc.returncode == 2
    assert "cannot be decided locally: static cohort 7" in proc.stdout

    proc = _eval(fake, "continuity", "--distinct-id", "user-5")
    assert proc.returncode == 2
    assert "cannot be decided locally: experience continuity" in proc.stdout

    proc = _eval(fake, "beta", "--distinct-id", "user-5")  # plan not given
    assert proc.returncode == 2
    assert "missing_context" in proc.stdout
    assert "the flag reads: plan (give them with --prop)" in proc.stdout


def test_flags_eval_with_options_instead_of_the_environment(fake):
    proc = _run(
        "flags",
        "eval",
        "beta",
        "--distinct-id",
        "user-6",
        "--prop",
        "plan=pro",
        "--host",
        fake.url,
        "--secret-key",
        SECRET_KEY,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "value      true" in proc.stdout


def test_flags_eval_of_an_unknown_flag_or_with_a_refused_secret_key_fails(fake):
    proc = _eval(fake, "nope", "--distinct-id", "user-7")
    assert proc.returncode == 1
    assert "flag 'nope' is not in the definitions (9 flags)" in proc.stdout

    proc = _eval(fake, "beta", "--distinct-id", "u", POSTHOG_SECRET_KEY="phc_not_a_secret")
    assert proc.returncode == 1
    assert "the secret key phc_… was refused (HTTP 401)" in proc.stdout
    assert "phc_not_a_secret" not in proc.stdout + proc.stderr


def test_the_console_script_is_declared():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nposthog-otel = "posthog_otel.cli:main"\n' in pyproject
    from posthog_otel.cli import main

    assert callable(main)


def test_flags_eval_agrees_with_a_clients_local_evaluation(fake, make_client):
    client = make_client(host=fake.url, secret_key=SECRET_KEY)
    for distinct_id in ("user-a", "user-b", "user-c"):
        expected = client.get_feature_flag("split", distinct_id, only_evaluate_locally=True)
        assert expected in ("left", "right")
        proc = _eval(fake, "split", "--distinct-id", distinct_id)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"value      {json.dumps(expected)}" in proc.stdout
        assert "condition 1 of 1 matched (split)" in proc.stdout


# ------------------------------------------------------------------ why_not_local


def _why(flag: dict[str, Any], **payload: Any) -> str | None:
    definitions = Definitions({"flags": [flag], **payload})
    return why_not_local(definitions, definitions.flags[flag["key"]])


def _flag(key: str = "f", **filters: Any) -> dict[str, Any]:
    return {"key": key, "active": True, "filters": {"groups": [{"properties": []}], **filters}}


@pytest.mark.parametrize(
    ("flag", "payload", "expected"),
    [
        (_flag(), {}, None),
        (_flag(aggregation_group_type_index=3), {}, "group type index 3 is not in the group"),
        (_flag(super_groups=[{"properties": []}]), {}, "early-access super conditions"),
        (
            _flag(groups=[{"properties": [{"type": "cohort", "value": 2, "operator": "gt"}]}]),
            {"cohorts": {"2": {"type": "AND", "values": []}}},
            "cohort operator 'gt'",
        ),
        (
            _flag(groups=[{"properties": [{"type": "cohort", "value": 2}]}]),
            {
                "cohorts": {
                    "2": {"type": "OR", "values": [{"type": "cohort", "value": 9}]},
                }
            },
            "static cohort 9",
        ),
        (
            _flag(groups=[{"properties": [{"type": "flag", "key": "gone", "value": True}]}]),
            {},
            "depends on flag 'gone', which is not in the definitions",
        ),
        (
            {"key": "f", "active": True, "filters": {"multivariate": {"variants": [{}]}}},
            {},
            "a definition this SDK cannot read",
        ),
        ({"key": "f", "active": False, "ensure_experience_continuity": True}, {}, None),
    ],
)
def test_why_not_local_reads_the_compiled_definition(flag, payload, expected):
    why = _why(flag, **payload)
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected), why


_MALFORMED_FILTERS = [
    "not an object",
    {"groups": "abc"},
    {"groups": ["x", None, 3]},
    {"groups": [{"properties": [], "rollout_percentage": "abc"}]},
    {
        "groups": [
            {
                "properties": [{"key": "p", "type": "person", "operator": "exact", "value": "v"}],
                "rollout_percentage": "abc",
            }
        ]
    },
]


@pytest.mark.parametrize("filters", _MALFORMED_FILTERS, ids=range(len(_MALFORMED_FILTERS)))
def test_flags_eval_of_a_malformed_definition_says_so_instead_of_a_traceback(
    filters, monkeypatch, capsys
):
    """A definition this SDK cannot read (another version's format, a hand edit in the
    dev-server) is a flag only the server can decide: exit 2 with the reason, as a
    client falls back to the server; never a traceback."""
    from posthog_otel.cli import main

    flag = {"id": 1, "key": "k", "active": True, "filters": filters}
    with FakePostHog(flag_definitions={"flags": [flag]}) as server:
        for name, value in _keys(server).items():
            monkeypatch.setenv(name, value)
        code = main(["flags", "eval", "k", "--distinct-id", "u1", "--prop", "p=v"])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "cannot be decided locally" in out
    assert "POST /flags" in out


def test_doctor_warns_of_a_secret_key_sent_over_plain_http_to_another_machine(capsys):
    """The secret key reads every flag definition: over ``http://`` to a host that is
    not this machine it crosses the network in clear text. A problem, said before any
    request (the host here never answers)."""
    from posthog_otel.cli import main

    args = ["--timeout", "0.3", "--api-key", API_KEY, "--secret-key", SECRET_KEY]
    assert main(["doctor", "--host", "http://10.255.255.1", *args]) == 1
    out = capsys.readouterr().out
    assert "secret key" in out and "clear text" in out, out
    assert SECRET_KEY not in out
    assert main(["doctor", "--host", "https://10.255.255.1", *args]) == 1  # unreachable
    assert "clear text" not in capsys.readouterr().out


def test_doctor_on_loopback_over_http_does_not_warn_of_clear_text(fake, capsys):
    from posthog_otel.cli import main

    args = ["--host", fake.url, "--api-key", API_KEY, "--secret-key", SECRET_KEY]
    assert main(["doctor", *args]) == 0
    assert "clear text" not in capsys.readouterr().out


def test_a_key_http_cannot_carry_is_never_quoted_in_full(fake, capsys, warnings_log):
    """A secret key with a character a header cannot hold (a newline inside a pasted
    value): httpx refuses it quoting the header's value; neither the command nor a
    client's warning may show it."""
    from posthog_otel import Client
    from posthog_otel.cli import main

    secret = "phs_SECRET_PART_42\nX-Injected: 1"
    args = ["--host", fake.url, "--api-key", API_KEY, "--secret-key", secret]
    assert main(["doctor", *args]) == 1
    assert main(["flags", "eval", "beta", "--distinct-id", "u1", *args]) == 1
    out = capsys.readouterr()
    assert "cannot be loaded" in out.out
    assert "SECRET_PART" not in out.out + out.err
    client = Client(API_KEY, host=fake.url, secret_key=secret, feature_flags_poll_interval=60)
    try:
        client.get_feature_flag("beta", "u1")
    finally:
        client.close(2)
    assert "flag definitions" in warnings_log.text
    assert "SECRET_PART" not in warnings_log.text


def test_a_definitions_answer_nested_too_deep_is_a_problem_not_a_traceback(capsys):
    from posthog_otel.cli import main

    from .hostile_server import HostileServer

    with HostileServer("nested") as server:
        args = ["--host", server.url, "--api-key", API_KEY, "--secret-key", SECRET_KEY]
        assert main(["doctor", *args]) == 1
        assert main(["flags", "eval", "beta", "--distinct-id", "u1", *args]) == 1
    out = capsys.readouterr().out
    assert out.count("the answer is not JSON") == 2, out
