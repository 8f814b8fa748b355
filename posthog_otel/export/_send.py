"""One batch's request with its retries: send, classify the answer, back off, try again
(up to ``max_retries``), within the exporter's deadline and until it is abandoned."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._log import describe, logger
from .._stats import StatsRecorder
from ._batch import (
    Batch,
    DeliveryError,
    ErrorCallback,
    Event,
    EventResults,
    ExporterConfig,
    Lane,
)
from ._retry import Outcome, backoff, classify, parse_retry_after
from ._transport import HttpTransport, TransportError

__all__ = ["report_error", "send_batch", "warn_retained"]


def send_batch(
    batch: Batch,
    lane: Lane,
    transport: HttpTransport,
    config: ExporterConfig,
    stats: StatsRecorder,
    *,
    deadline: float | None,
    abandoned: Callable[[], bool],
    sleep: Callable[[float], None],
    delivered: Callable[[Batch], object],
    give_up: Callable[[Batch, str, DeliveryError], None],
) -> tuple[Outcome, int | None, float | None, DeliveryError]:
    """Send ``batch`` with up to ``max_retries`` retries and backoff: the outcome, the
    last status, its ``Retry-After`` and the error to report if it is given up.

    A lane that answers per event (``Lane.results``) settles part of the batch on the
    way: ``delivered(part)`` for the events acknowledged, ``give_up(part, "rejected",
    error)`` for those the server dropped; ``batch`` is then narrowed in place to the
    events still to send, and the outcome is about those."""
    retry_after: float | None = None
    status: int | None = None
    error = DeliveryError("not sent")
    for attempt in range(config.max_retries + 1):
        if attempt:
            if abandoned() or (deadline is not None and time.monotonic() >= deadline):
                break
            with stats.lock:
                stats.retries += 1
            delay = backoff(attempt - 1, retry_after)
            if deadline is not None:
                delay = min(delay, deadline - time.monotonic())
            logger.debug(
                "retrying %d %s(s) in %.2f s (retry %d of %d): %s",
                len(batch),
                stats.noun,
                delay,
                attempt,
                config.max_retries,
                error,
            )
            sleep(delay)
            if abandoned():
                break
        timeout = config.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                error = DeliveryError("not sent: out of time")
                break
        started, body = time.monotonic(), b""
        try:
            batch.attempts += 1
            path, body, headers = lane.batch_request(batch)
            response = transport.request(
                "POST", path, content=body, headers=headers, timeout=timeout
            )
        except TransportError as exc:
            status, retry_after = None, None
            error = DeliveryError(str(exc))
            _log_batch(batch, started, str(exc), len(body), stats.noun)
            if exc.permanent:  # e.g. an invalid URL: no retry can succeed
                return Outcome.REJECT, None, None, error
        except Exception as exc:  # every outcome of a send resolves every event in it
            return Outcome.REJECT, None, None, DeliveryError(f"{type(exc).__name__}: {exc}")
        else:
            status = response.status
            retry_after = parse_retry_after(response.headers)
            error = DeliveryError(
                f"HTTP {status}: {response.content[:200].decode('utf-8', 'replace')}",
                status=status,
            )
            _log_batch(batch, started, f"HTTP {status}", len(body), stats.noun)
            if 200 <= status < 300:
                results = lane.results(batch, response.content)
                if results is not None and _settle_results(
                    batch, results, status, delivered, give_up
                ):
                    retry_after = None
                    error = DeliveryError(f"HTTP {status}: {len(batch)} event(s) to retry")
                    continue
        outcome = classify(status, len(batch), split_400=lane.split_400)
        if outcome is not Outcome.RETRY:
            return outcome, status, retry_after, error
    return Outcome.RETRY, status, retry_after, error


def _settle_results(
    batch: Batch,
    results: EventResults,
    status: int,
    delivered: Callable[[Batch], object],
    give_up: Callable[[Batch, str, DeliveryError], None],
) -> bool:
    """Apply per-event results: drop the rejected events (counted ``rejected``, reported
    to ``on_error``) and narrow ``batch``. ``True`` when some are to be sent again (the
    acknowledged ones are settled now); ``False`` when none are (``batch`` keeps only the
    acknowledged events, for the caller to settle as delivered)."""
    logger.debug(
        "per-event results: %d delivered, %d dropped by the server, %d to retry",
        len(batch) - len(results.retry) - len(results.rejected),
        len(results.rejected),
        len(results.retry),
    )
    if results.rejected:
        reasons = "; ".join(f"{batch.events[i].get('uuid')}: {why}" for i, why in results.rejected)
        error = DeliveryError(
            f"HTTP {status}: dropped by the server: {reasons[:300]}", status=status
        )
        give_up(batch.select([i for i, _ in results.rejected]), "rejected", error)
    if not results.retry:
        gone = {i for i, _ in results.rejected}
        batch.keep([i for i in range(len(batch)) if i not in gone])
        return False
    settled = set(results.retry) | {i for i, _ in results.rejected}
    done = [i for i in range(len(batch)) if i not in settled]
    if done:
        delivered(batch.select(done))
    batch.keep(results.retry)
    return True


def _log_batch(batch: Batch, started: float, outcome: str, nbytes: int, noun: str) -> None:
    """``debug=True``: one line per request, with what it carried and how it went."""
    if logger.isEnabledFor(logging.DEBUG):
        elapsed = (time.monotonic() - started) * 1000
        logger.debug(
            "batch of %d %s(s), %d bytes: %s in %.0f ms", len(batch), noun, nbytes, outcome, elapsed
        )


def warn_retained(
    stats: StatsRecorder, count: int, error: DeliveryError, cycle: int, cycles: int
) -> None:
    """The warning for a batch kept for a later delivery cycle, naming what the lane
    carries (``stats.noun``)."""
    logger.warning(
        "delivery of %d %s(s) failed (%s); kept for retry (cycle %d of %d)",
        count,
        stats.noun,
        error,
        cycle,
        cycles,
    )


def report_error(
    on_error: ErrorCallback, error: DeliveryError, events: list[Event], stats: StatsRecorder
) -> None:
    """Hand a given-up batch to the user's ``on_error``. A broken callback fails for every
    batch of an outage: warned once per interval like a drop, the traceback at DEBUG."""
    try:
        on_error(error, events)
    except Exception as exc:
        stats.warner.warn(
            "on_error_raised", "on_error callback raised %s; delivery goes on", describe(exc)
        )
        logger.debug("on_error callback raised", exc_info=True)
