"""The fake PostHog in its own process, for the app-server tests.

Prints its URL, then answers each ``events`` line on stdin with the events received so
far (one JSON line); stops when stdin closes (so it never outlives the test)."""

from __future__ import annotations

import json
import sys

from posthog_otel.testing import FakePostHog

if __name__ == "__main__":
    with FakePostHog() as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "events":
                print(json.dumps(server.events), flush=True)
