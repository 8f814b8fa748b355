"""The documentation stays true (issue #10, item 7): the README's snippets run as
written against the fake server, and every option and environment variable is in the
configuration reference."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import pytest

import posthog_otel
from posthog_otel import Client
from posthog_otel.middleware import PostHogASGIMiddleware, PostHogWSGIMiddleware
from posthog_otel.openfeature import PostHogProvider
from posthog_otel.otel import PostHogSpanExporter, instrument
from posthog_otel.otel_logs import PostHogLogExporter, instrument_logs
from posthog_otel.otel_traces import PostHogTraceExporter, instrument_traces
from posthog_otel.testing import FakePostHog

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _first_python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None
    return match.group(1)


def _names(obj: object) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(obj).parameters.items()  # type: ignore[arg-type]
        if not name.startswith("_") and parameter.kind is not parameter.VAR_KEYWORD
    ]


def test_every_client_argument_is_in_the_configuration_table():
    table = _section(CONFIGURATION, "## `Client(")
    missing = [name for name in _names(Client) if f"| `{name}` |" not in table]
    assert missing == []


@pytest.mark.parametrize(
    "integration",
    [
        posthog_otel.PostHogHandler,
        posthog_otel.PostHogProcessor,
        PostHogSpanExporter,
        PostHogLogExporter,
        instrument_logs,
        PostHogTraceExporter,
        instrument_traces,
        instrument,
        PostHogASGIMiddleware,
        PostHogWSGIMiddleware,
        PostHogProvider,
    ],
)
def test_every_integration_option_is_documented(integration):
    section = _section(CONFIGURATION, "## Integrations")
    rows = "\n".join(
        line
        for line in section.splitlines()
        if line.startswith("| `") and integration.__name__ in line.split("|")[1]
    )
    assert rows, integration.__name__
    missing = [name for name in _names(integration) if name not in rows]
    assert missing == []


def test_every_environment_variable_in_the_code_is_documented():
    package = ROOT / "posthog_otel"
    found = set()
    for path in package.rglob("*.py"):
        found.update(re.findall(r"(?<![A-Za-z0-9_])POSTHOG_[A-Z0-9_]+", path.read_text()))
    assert found >= {"POSTHOG_API_KEY", "POSTHOG_HOST", "POSTHOG_SECRET_KEY"}
    table = _section(CONFIGURATION, "## Environment variables")
    assert sorted(name for name in found if f"| `{name}` |" not in table) == []


def test_every_fake_server_method_is_documented():
    section = _section(README, "## Testing your code")
    public = [name for name in vars(FakePostHog) if not name.startswith("_")]
    public += ["events", "requests"]
    missing = [name for name in public if f"`{name}" not in section]
    assert sorted(set(missing) - {"start", "stop", "url"}) == []
    for name in ("start()", "stop()", "`url`"):
        assert name in section


def test_readme_logging_snippet_sends_as_written(server):
    snippet = _first_python_block(_section(README, "## Logging"))
    client = Client("phc_test_key_0123456789", host=server.url, flush_interval=60)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        exec(snippet, {"client": client})
        assert client.flush()
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        client.close(timeout=2)
    (event,) = server.events
    assert event["event"] == "user_signed_up"
    assert event["distinct_id"] == "u1"
    assert event["properties"]["login_type"] == "email"


def test_readme_alias_comment_matches_the_wire(server):
    line = next(line for line in README.splitlines() if line.startswith("client.alias("))
    assert "u1 becomes another id of the person known as anon-42" in line
    client = Client("phc_test_key_0123456789", host=server.url, flush_interval=60)
    try:
        client.alias("anon-42", "u1")
        assert client.flush()
    finally:
        client.close(timeout=2)
    (event,) = server.events
    # PostHog's $create_alias: distinct_id is the existing person, alias the new id.
    assert (event["distinct_id"], event["properties"]["alias"]) == ("anon-42", "u1")


def test_readme_names_only_attributes_that_exist():
    assert "FlagResult: value" not in README
    from posthog_otel import FlagResult

    assert not hasattr(FlagResult, "value") and hasattr(FlagResult, "get_value")


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_readme_middleware_snippet_keeps_the_routes(server):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    snippet = _first_python_block(_section(README, "## Request identity middleware"))
    namespace: dict[str, object] = {}
    exec(snippet, namespace)
    app = namespace["app"]
    assert isinstance(app, PostHogASGIMiddleware)
    with TestClient(app) as http:
        assert http.get("/", headers={"X-POSTHOG-DISTINCT-ID": "u1"}).status_code == 200


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_fastapi_instrumented_then_wrapped_sends_the_request_span(server):
    """README, App servers: the middleware outside FastAPIInstrumentor's."""
    pytest.importorskip("fastapi")
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.testclient import TestClient

    client = Client("phc_test_key_0123456789", host=server.url, flush_interval=60)
    provider = TracerProvider()
    try:
        instrument(provider, client)
        app = FastAPI()

        @app.get("/hello")
        def hello() -> dict[str, bool]:
            client.capture("said_hello")
            return {"ok": True}

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
        wrapped = PostHogASGIMiddleware(app)
        with TestClient(wrapped) as http:
            http.get("/hello", headers={"X-POSTHOG-DISTINCT-ID": "u1"})
        provider.force_flush()
        assert client.flush()
    finally:
        provider.shutdown()
        client.close(timeout=2)
    assert sorted((e["event"], e["distinct_id"]) for e in server.events) == [
        ("GET /hello", "u1"),
        ("said_hello", "u1"),
    ]


def test_flask_wrapped_as_in_the_readme(server):
    """README, App servers: ``app.wsgi_app = PostHogWSGIMiddleware(app.wsgi_app)``."""
    flask = pytest.importorskip("flask")
    client = Client("phc_test_key_0123456789", host=server.url, flush_interval=60)
    try:
        app = flask.Flask(__name__)
        app.wsgi_app = PostHogWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]

        @app.get("/")
        def index() -> str:
            client.capture("flask_hit")
            return "ok"

        response = app.test_client().get("/", headers={"X-POSTHOG-DISTINCT-ID": "u2"})
        assert response.status_code == 200
        assert client.flush()
    finally:
        client.close(timeout=2)
    assert [(e["event"], e["distinct_id"]) for e in server.events] == [("flask_hit", "u2")]


DJANGO_APP = """
import logging
import django
from django.conf import settings

settings.configure(
    ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="x",
    LOGGING=LOGGING,
)
django.setup()

from django.http import HttpResponse
from django.urls import path


def view(request):
    logging.getLogger("shop").info("viewed")
    return HttpResponse("ok")


urlpatterns = [path("", view)]

from django.core.wsgi import get_wsgi_application
from posthog_otel.middleware import PostHogWSGIMiddleware

application = PostHogWSGIMiddleware(get_wsgi_application())

from wsgiref.util import setup_testing_defaults

environ = {"HTTP_X_POSTHOG_DISTINCT_ID": "u1", "PATH_INFO": "/"}
setup_testing_defaults(environ)
assert b"".join(application(environ, lambda *args: None)) == b"ok"
"""


def test_django_logging_and_wsgi_as_in_the_readme(server, tmp_path):
    """README, App servers: ``LOGGING`` by class path (default client from the
    environment) and ``wsgi.py`` wrapped; run in its own process (Django's settings
    are process-wide)."""
    pytest.importorskip("django")
    import os
    import subprocess
    import sys

    section = _section(README, "## App servers")
    django_part = section[section.index("**Django**") :]
    settings = _first_python_block(django_part).split("# wsgi.py")[0]
    assert "LOGGING = {" in settings
    script = tmp_path / "django_app.py"
    script.write_text(settings + DJANGO_APP)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POSTHOG_API_KEY": "phc_test_key_0123456789",
        "POSTHOG_HOST": server.url,
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    events = server.wait_for_events(1)  # delivered at exit by the default client
    assert [(e["event"], e["distinct_id"]) for e in events] == [("viewed", "u1")]


def test_readme_testing_snippet_passes_as_a_users_tests(pytester):
    snippet = _first_python_block(_section(README, "## Testing your code"))
    pytester.makepyfile(test_readme_snippet=snippet)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_readme_integration_snippet_runs_as_written():
    snippet = _first_python_block(_section(README, "## Writing an integration"))
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})


def test_readme_error_tracking_snippet_runs_as_written():
    snippet = _first_python_block(_section(README, "## Error tracking"))
    logger = logging.getLogger("shop")
    handlers, propagate = list(logger.handlers), logger.propagate
    try:
        exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})
    finally:
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_readme_logs_snippet_sends_as_written(server):
    snippet = _first_python_block(_section(README, "## Logs\n"))
    client = Client("phc_test_key_0123456789", host=server.url, flush_interval=60)
    try:
        exec(snippet, {"client": client})
        assert client.flush()
    finally:
        client.close(timeout=2)
    failed, warmed = server.log_records()
    assert failed["severityText"] == "ERROR"
    assert failed["body"] == {"stringValue": "checkout failed"}
    attributes = {kv["key"]: kv["value"] for kv in failed["attributes"]}
    assert attributes == {
        "posthogDistinctId": {"stringValue": "u1"},
        "sessionId": {"stringValue": "s1"},
        "order": {"intValue": "4999"},
    }
    assert warmed["severityNumber"] == 9


def test_readme_llm_analytics_snippet_sends_as_written(server):
    """CAI-01/04: the README's example sends one ``$ai_generation`` on the AI route."""
    snippet = _first_python_block(_section(README, "## LLM analytics\n"))
    client = Client("phc_test_key_0123456789", host=server.url, flush_interval=60)
    try:
        exec(snippet, {"client": client})
        assert client.flush()
    finally:
        client.close(timeout=2)
    (event,) = server.ai_events(1)
    assert event["event"] == "$ai_generation" and event["distinct_id"] == "user-123"
    assert event["properties"]["$ai_output_choices"][0]["content"] == "Hello!"
    assert event["properties"]["$ai_input_tokens"] == 12
    assert server.events == []


def test_readme_capture_v1_snippet_sends_as_written(server):
    """README, Capture v1: the snippet, pointed at the fake server, sends v1."""
    snippet = _first_python_block(_section(README, "### Capture v1"))
    snippet = snippet.replace('"phc_..."', '"phc_test_key_0123456789"')
    snippet = snippet.replace('"https://us.i.posthog.com"', repr(server.url))
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})
    (request,) = server.capture_requests()
    assert request.path == "/i/v1/analytics/events"
    assert server.event_names() == ["order_placed"]


def test_readme_durable_delivery_snippet_runs_as_written(server, tmp_path, monkeypatch):
    """Issue #16: the spool example sends its event and leaves nothing spooled."""
    snippet = _first_python_block(_section(README, "## Durable delivery"))
    path = tmp_path / "posthog-spool.db"
    snippet = snippet.replace("/var/lib/myapp/posthog-spool.db", str(path))
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    namespace: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    client = namespace["client"]
    assert isinstance(client, Client)
    assert client.stats.spooled == 0 and path.exists()
    (event,) = server.events
    assert event["event"] == "order_paid" and event["properties"]["amount"] == 42


def test_readme_native_span_snippet_sends_as_written(server):
    """README, Traces → Without OpenTelemetry: the snippet, pointed at the fake server."""
    snippet = _first_python_block(_section(README, "### Without OpenTelemetry"))
    snippet = snippet.replace('"phc_..."', f'"phc_test_key_0123456789", host={server.url!r}')
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})
    spans = {span["name"]: span for span in server.spans()}
    assert sorted(spans) == [
        "GET /users/:id",
        "db.query",
        "handle message",
        "refresh-prices",
        "sum",
    ]
    assert spans["db.query"]["parentSpanId"] == spans["GET /users/:id"]["spanId"]
    assert spans["handle message"]["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    (record,) = server.log_records()
    assert record["spanId"] == spans["handle message"]["spanId"]


@pytest.mark.parametrize(
    ("config", "heading"),
    [
        (posthog_otel.TracesConfig, "### `TracesConfig(...)`"),
        (posthog_otel.LogsConfig, "### `LogsConfig(...)`"),
    ],
)
def test_every_lane_option_and_its_default_is_documented(config, heading):
    """sdk-contracts §2.2 [S]: a new SDK documents its flush interval, queue size and
    export batch size (and every other option of the lane, with its default)."""
    import dataclasses

    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n#", 1)]
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE)
    }
    fields = {field.name: field for field in dataclasses.fields(config)}
    assert set(fields) <= set(rows), set(fields) - set(rows)
    for name in ("flush_interval", "max_queue_size", "max_batch_size"):
        default = fields[name].default
        if isinstance(default, int):
            assert f"{default:_}" in rows[name] or str(default) in rows[name], (name, rows[name])
