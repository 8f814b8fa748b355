"""Django served by gunicorn (tests/test_frameworks.py): the WSGI application wrapped
in ``PostHogWSGIMiddleware``; a view logs through ``LOGGING``'s ``PostHogHandler``.
Under ``opentelemetry-instrument`` Django is instrumented automatically (its span
starts inside our middleware)."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_settings")

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from opentelemetry import trace

from posthog_otel.middleware import PostHogWSGIMiddleware

log = logging.getLogger("shop")


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": "yes"})


def hit(request: HttpRequest) -> JsonResponse:
    if request.GET.get("capture", "1") == "1":
        log.info("django hit", extra={"i": int(request.GET["i"])})
    trace_id = trace.get_current_span().get_span_context().trace_id
    return JsonResponse({"trace_id": f"{trace_id:032x}"})


urlpatterns = [path("health", health), path("hit", hit)]

application = PostHogWSGIMiddleware(get_wsgi_application())
