"""structlog events that carry a distinct id become PostHog events.

python examples/structlog_app.py
"""

from __future__ import annotations

import structlog
from _common import posthog_client

from posthog_otel import PostHogProcessor


def main() -> None:
    with posthog_client() as client:
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                PostHogProcessor(client),  # before the renderer; returns the dict unchanged
                structlog.processors.JSONRenderer(),
            ]
        )
        log = structlog.get_logger()
        log.info("user_signed_up", distinct_id="user-1", plan="pro")
        with structlog.contextvars.bound_contextvars(distinct_id="user-2"):
            log.info("report_exported", rows=1200)
        log.info("background job finished")  # no distinct id: printed, not sent


if __name__ == "__main__":
    main()
