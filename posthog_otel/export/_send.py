"""One batch's request with its retries: send, classify the answer, back off, try again
(up to ``max_retries``), within the exporter's deadline and until it is abandoned."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._log import logger
from .._stats import StatsRecorder
from ._batch import Batch, DeliveryError, ExporterConfig, Lane
from ._retry import Outcome, backoff, classify, parse_retry_after
from ._transport import HttpTransport, TransportError

__all__ = ["send_batch"]


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
) -> tuple[Outcome, int | None, float | None, DeliveryError]:
    """Send ``batch`` with up to ``max_retries`` retries and backoff: the outcome, the
    last status, its ``Retry-After`` and the error to report if it is given up."""
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
                "retrying %d event(s) in %.2f s (retry %d of %d): %s",
                len(batch),
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
            path, body, headers = lane.request(batch.payloads)
            response = transport.request(
                "POST", path, content=body, headers=headers, timeout=timeout
            )
        except TransportError as exc:
            status, retry_after = None, None
            error = DeliveryError(str(exc))
            _log_batch(batch, started, str(exc), len(body))
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
            _log_batch(batch, started, f"HTTP {status}", len(body))
        outcome = classify(status, len(batch))
        if outcome is not Outcome.RETRY:
            return outcome, status, retry_after, error
    return Outcome.RETRY, status, retry_after, error


def _log_batch(batch: Batch, started: float, outcome: str, nbytes: int) -> None:
    """``debug=True``: one line per request, with what it carried and how it went."""
    if logger.isEnabledFor(logging.DEBUG):
        elapsed = (time.monotonic() - started) * 1000
        logger.debug(
            "batch of %d event(s), %d bytes: %s in %.0f ms", len(batch), nbytes, outcome, elapsed
        )
