"""Feature flags: local evaluation from polled definitions, remote when needed.

    python examples/flags_app.py

Without POSTHOG_API_KEY a fake PostHog serves two flag definitions. With it (and
POSTHOG_SECRET_KEY for local evaluation) it asks your PostHog project; adjust the keys.
"""

from __future__ import annotations

import json
import os

from posthog_otel import Client, context
from posthog_otel.testing import FakePostHog

DEFINITIONS = {
    "flags": [
        {
            "id": 1,
            "key": "new-checkout",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [{"key": "plan", "value": "pro", "type": "person"}],
                        "rollout_percentage": 100,
                    }
                ],
                "payloads": {"true": json.dumps({"button": "green"})},
            },
        },
        {
            "id": 2,
            "key": "pricing-test",
            "active": True,
            "filters": {
                "groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {
                    "variants": [
                        {"key": "control", "rollout_percentage": 50},
                        {"key": "cheaper", "rollout_percentage": 50},
                    ]
                },
            },
        },
    ],
    "group_type_mapping": {},
    "cohorts": {},
}


def use_flags(client: Client) -> None:
    pro = {"plan": "pro"}
    print(
        "new-checkout for a pro user:",
        client.is_feature_enabled("new-checkout", "user-1", person_properties=pro),
    )
    print(
        "its payload:",
        client.get_feature_flag_payload("new-checkout", "user-1", person_properties=pro),
    )
    print("pricing-test variant:", client.get_feature_flag("pricing-test", "user-1"))
    result = client.get_feature_flag_result(
        "new-checkout", "user-2", person_properties={"plan": "free"}
    )
    print("full result for a free user:", result)

    with context(distinct_id="user-3"):  # e.g. set by the request middleware
        flags = client.evaluate_flags(person_properties=pro)  # one snapshot, at most one request
        if flags.is_enabled("new-checkout"):
            client.capture("checkout_started", flags=flags.only_accessed())
    print("all flags for user-4:", client.get_all_flags("user-4", person_properties=pro))


def main() -> None:
    if os.environ.get("POSTHOG_API_KEY"):
        with Client() as client:  # POSTHOG_SECRET_KEY enables local evaluation
            use_flags(client)
        return
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        client = Client("phc_example", host=server.url, secret_key="phs_example")
        use_flags(client)
        client.close(timeout=10)
        names = [e["event"] for e in server.events]
        print(f"events sent: {names}")
        print(f"requests: {[r.path for r in server.requests]}")


if __name__ == "__main__":
    main()
