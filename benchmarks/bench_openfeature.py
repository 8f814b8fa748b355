"""``get_boolean_value`` through OpenFeature, side by side in one run:

- OpenFeature's own ``InMemoryProvider`` (the baseline; target: at most 1.5x it),
- ``PostHogProvider`` with local evaluation and exposure events on,
- the official ``openfeature-provider-posthog`` on the same flag (posthog 7.91.1 with the
  same definitions assigned locally).

    python benchmarks/bench_openfeature.py [--quick]

Each provider is bound to its own domain; their rounds alternate (A B C, C B A, ...).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import alternated_us

from posthog_otel import Client, PostHogProvider
from posthog_otel.testing import FakePostHog

FLAG = {
    "id": 1,
    "key": "new-checkout",
    "active": True,
    "filters": {"groups": [{"properties": [], "rollout_percentage": 45}]},
}
DEFINITIONS = {"flags": [FLAG], "group_type_mapping": {}, "cohorts": {}}


def measure(
    providers: dict[str, object], contexts: list[EvaluationContext], n: int, rounds: int
) -> dict[str, float]:
    """Best mean µs per call of each provider, each bound to its own domain, the rounds
    interleaved and their order alternated between rounds."""
    fns = {}
    for name, provider in providers.items():
        api.set_provider_and_wait(provider, domain=name)  # type: ignore[arg-type]

        getter = api.get_client(name).get_boolean_value

        def run(count: int, get: Any = getter) -> None:
            for i in range(count):
                get("new-checkout", False, contexts[i % 1000])

        fns[name] = run
    try:
        return {name: min(values) for name, values in alternated_us(fns, n, rounds).items()}
    finally:
        api.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (20_000, 5)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)
    contexts = [EvaluationContext(f"user-{i}", {"plan": "pro"}) for i in range(1000)]
    providers: dict[str, object] = {
        "OpenFeature InMemoryProvider": InMemoryProvider(
            {"new-checkout": InMemoryFlag("on", {"on": True, "off": False})}
        )
    }
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        client = Client("phc_bench", host=server.url, secret_key="phs_bench")
        client.reload_feature_flags()
        providers["posthog_otel PostHogProvider"] = PostHogProvider(client)
        try:
            from openfeature.contrib.provider.posthog import PostHogProvider as Official
            from posthog import Posthog
        except ImportError:
            print("  (openfeature-provider-posthog is not installed: skipped)")
        else:
            official = Posthog("phc_bench", host="http://127.0.0.1:9", sync_mode=True, send=False)
            official.feature_flags = DEFINITIONS["flags"]
            official.group_type_mapping = {}
            official.cohorts = {}
            providers["official openfeature-provider-posthog"] = Official(official)
        results = measure(providers, contexts, n, rounds)
        client.close(10)
    base = results["OpenFeature InMemoryProvider"]
    print("## get_boolean_value, local evaluation (µs per call, 1000 rotating targeting keys)")
    for name, value in results.items():
        print(f"  {name:40s} {value:6.2f} µs  {value / base:4.2f}x the in-memory provider")


if __name__ == "__main__":
    main()
