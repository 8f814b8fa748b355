"""PostHog feature flags through OpenFeature.

    python examples/openfeature_app.py

Without POSTHOG_API_KEY a fake PostHog serves the flag definitions; with it (and
POSTHOG_SECRET_KEY for local evaluation) your own project answers.
"""

from __future__ import annotations

import json
import os

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.track import TrackingEventDetails

from posthog_otel import Client
from posthog_otel.openfeature import PostHogProvider
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


def use_openfeature(client: Client) -> None:
    # Polled definitions that change arrive as CONFIGURATION_CHANGED with the flag keys.
    api.add_handler(
        ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
        lambda details: print("flags changed:", details.flags_changed),
    )
    api.set_provider_and_wait(PostHogProvider(client))  # waits (bounded) for definitions
    flags = api.get_client()
    pro_user = EvaluationContext(targeting_key="user-1", attributes={"plan": "pro"})

    details = flags.get_boolean_details("new-checkout", False, pro_user)
    print("new-checkout:", details.value, details.reason, dict(details.flag_metadata))
    print("its payload:", flags.get_object_value("new-checkout", {}, pro_user))
    print("pricing-test:", flags.get_string_value("pricing-test", "control", pro_user))
    mismatch = flags.get_boolean_details("pricing-test", False, pro_user)
    print("a multivariate flag read as boolean:", mismatch.error_code)
    flags.track("checkout_completed", pro_user, TrackingEventDetails(value=49.0))
    api.shutdown()


def main() -> None:
    if os.environ.get("POSTHOG_API_KEY"):
        with Client() as client:
            use_openfeature(client)
        return
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        client = Client("phc_example", host=server.url, secret_key="phs_example")
        use_openfeature(client)
        client.close(timeout=10)
        print("events sent:", [e["event"] for e in server.events])


if __name__ == "__main__":
    main()
