"""``client.capture_ai``: LLM analytics events on their own route (CAI-01…06, 09).

Admission is ``capture``'s (CAI-02): the same assembly (identity context, ``$lib``,
timestamp, uuid), ``before_send`` and ``send_feature_flags``, through a ``Pipeline`` of
its own whose queue is a second ``BatchExporter`` on ``AiLane`` (``/i/v0/ai/batch/``).
Only the route differs: AI events never share a request with analytics events, have
their own caps (8 MiB per event, about 5 MiB per request) and their own counters
(``client.stats.ai``); the flush thread (``posthog_otel-ai``) starts on the first AI
event, so a client that never calls ``capture_ai`` pays only for these objects (CAI-04).
``capture("$ai_generation")`` is not rerouted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._assembly import EventAssembler
from ._before_send import BeforeSendChain
from ._flag_reads import FlagReads
from ._stats import StatsRecorder
from .export import AI_MAX_BATCH_BYTES, AiLane, BatchExporter, Clock, HttpTransport
from .messages import Capture
from .pipeline import Pipeline

if TYPE_CHECKING:
    from ._options import ClientConfig

__all__ = ["AiCapture"]


class AiCapture:
    """The AI lane of a client: its counters, exporter and intake."""

    def __init__(
        self,
        config: ClientConfig,
        flag_reads: FlagReads,
        main: Pipeline,
        *,
        user_agent: str,
        clock: Clock | None,
        on_thread_start: Callable[[], None] | None,
    ) -> None:
        stats = self.stats = StatsRecorder()
        lane = AiLane(
            config.api_key,
            gzip=config.gzip,
            historical_migration=config.historical_migration,
            stats=stats,
        )
        transport = HttpTransport(  # its own connections: a slow AI route delays nothing else
            config.transport_host, user_agent=user_agent, http_client=config.http_client
        )
        settings = dataclasses.replace(
            config.delivery,
            max_batch_bytes=min(config.delivery.max_batch_bytes, AI_MAX_BATCH_BYTES),
        )
        self.exporter = BatchExporter(
            lane,
            transport,
            settings,
            stats=stats,
            clock=clock,
            on_error=config.on_error,
            thread_name="posthog_otel-ai",
            on_thread_start=on_thread_start,
        )
        self.pipeline = Pipeline(
            EventAssembler(config, stats, flag_reads.for_event),
            BeforeSendChain(config.before_send, stats),
            self.exporter,
            flag_reads,
            stats,
            disabled=config.disabled,
        )
        self._main = main

    def capture(self, message: Capture) -> str | None:
        """Queue ``message`` on the AI route; its uuid, or ``None`` if it was dropped
        (counted in ``client.stats.ai``). Never raises, never blocks."""
        pipeline = self.pipeline
        if pipeline.opted_out is not self._main.opted_out:  # opt_out() is the client's
            pipeline.set_state(opted_out=self._main.opted_out)
        return pipeline.enqueue(message)
