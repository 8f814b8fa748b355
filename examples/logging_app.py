"""Log records that carry a distinct id become PostHog events.

python examples/logging_app.py
"""

from __future__ import annotations

import logging

from _common import posthog_client

from posthog_otel import PostHogHandler, context


def main() -> None:
    with posthog_client() as client:
        handler = PostHogHandler(client)  # or PostHogHandler() for the default client
        logging.basicConfig(level=logging.INFO)
        logging.getLogger().addHandler(handler)
        log = logging.getLogger("shop")

        log.info("user_signed_up", extra={"distinct_id": "user-1", "login_type": "email"})
        log.info("payment received: %s EUR", 42, extra={"distinct_id": "user-1"})
        with context(distinct_id="user-2", session_id="session-9"):  # e.g. set by middleware
            log.warning("checkout_failed", extra={"reason": "card_declined"})
        log.info("no distinct id here: not an event")
        logging.getLogger().removeHandler(handler)


if __name__ == "__main__":
    main()
