"""Issue #13 item 6: async flag reads. A local answer is given on the event loop (no
worker thread); a remote one runs on a worker thread and the loop keeps running."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from posthog_otel import FlagEvaluations, context
from posthog_otel.testing import FakePostHog

from .test_flags_contracts import CHECKOUT, DEFINITIONS, SECRET, flag_requests, remote


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the work handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def run(coroutine_function):
    """Run ``coroutine_function(executor)`` on a new loop with a counting executor."""

    async def main():
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        return await coroutine_function(executor)

    return asyncio.run(main())


def test_a_slow_remote_read_does_not_block_the_loop(server, make_client):
    server.set_flags({"flags": {"a": remote("a")}})
    client = make_client()
    server.delay_next(0.6, path="/flags")

    async def scenario(executor):
        ticks = 0
        done = asyncio.Event()

        async def heartbeat():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        value = await client.aget_feature_flag("a", "u1")
        done.set()
        await beat
        return value, ticks, executor.submitted

    value, ticks, hops = run(scenario)
    assert value is True and hops == 1
    assert ticks >= 10, ticks  # the loop ran all along (blocked for the whole call before)


def test_local_answers_take_no_thread_hop(make_client):
    with FakePostHog(
        flag_definitions=DEFINITIONS, flags={"flags": {"remote-only": remote("remote-only")}}
    ) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        client.reload_feature_flags()
        pro = {"plan": "pro"}

        async def scenario(executor):
            answers = [
                await client.aget_feature_flag("checkout", "u1", person_properties=pro),
                await client.ais_feature_enabled("checkout", "u1", person_properties={"plan": 0}),
                (await client.aget_feature_flag_result("checkout", "u1", person_properties=pro)),
                await client.aget_feature_flag_payload("checkout", "u1", match_value="blue"),
                await client.aget_all_flags("u1", person_properties=pro),
                await client.aevaluate_flags("u1", person_properties=pro),
                await client.aget_feature_flag("checkout", "u1", only_evaluate_locally=True),
                await client.aget_feature_flag(
                    "checkout", "u1", person_properties=pro, only_evaluate_locally=False
                ),
            ]
            local_hops = executor.submitted
            remote_answers = [
                await client.aget_feature_flag("remote-only", "u1"),  # not in the definitions
                await client.aevaluate_flags(
                    "u1", flag_keys=["checkout", "remote-only"], person_properties=pro
                ),
            ]
            return answers, local_hops, remote_answers, executor.submitted

        answers, local_hops, remote_answers, hops = run(scenario)
        variant, enabled, result, payload, everything, snapshot, unknown, again = answers
        assert again == variant
        assert variant in ("blue", "red") and enabled is False
        assert result.locally_evaluated and result.get_value() == variant
        assert payload == {"cta": "Try now"}
        assert everything == {"checkout": variant}
        assert isinstance(snapshot, FlagEvaluations) and snapshot.get_flag("checkout") == variant
        assert unknown is None  # plan unknown, and only local evaluation asked for
        assert local_hops == 0
        assert remote_answers[0] is True
        assert sorted(remote_answers[1].results) == ["checkout", "remote-only"]
        assert hops == 2
        assert len(flag_requests(server)) == 2
    assert CHECKOUT["key"] == "checkout"


def test_the_worker_thread_sees_the_identity_context_and_its_overrides(server, make_client):
    server.set_flags({"flags": {"a": remote("a")}})
    client = make_client()

    async def scenario(executor):
        with context(distinct_id="ctx-user"):
            client.set_person_properties_for_flags({"plan": "pro"})
            return await client.aget_feature_flag("a")

    assert run(scenario) is True
    (request,) = flag_requests(server)
    assert request.json["distinct_id"] == "ctx-user"
    assert request.json["person_properties"] == {"plan": "pro"}


def test_a_disabled_client_answers_async_reads_at_once(make_client):
    client = make_client(disabled=True)

    async def scenario(executor):
        return (
            await client.aget_feature_flag("a", "u1"),
            await client.ais_feature_enabled("a", "u1", default_value=True),
            await client.aget_all_flags("u1"),
            (await client.aevaluate_flags("u1")).results,
            executor.submitted,
        )

    assert run(scenario) == (None, True, {}, {}, 0)


def test_the_first_reads_wait_for_definitions_is_off_the_loop(make_client):
    with FakePostHog(
        flag_definitions=DEFINITIONS, flags={"flags": {"checkout": remote("checkout", "red")}}
    ) as server:
        release = server.hold_next(path="/flags/definitions")
        client = make_client(
            host=server.url, secret_key=SECRET, feature_flags_initial_load_timeout=0.3
        )

        async def scenario(executor):
            try:
                return await client.aget_feature_flag("checkout", "u1"), executor.submitted
            finally:
                release.set()

        assert run(scenario) == ("red", 1)  # waited (bounded) on a worker, then asked
