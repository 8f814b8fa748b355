"""Name resolution within a request's deadline.

``socket.getaddrinfo`` takes no timeout: a resolver that never answers (a dead DNS
server, a firewall that drops port 53) held a connect for as long as the system's own
retries last, outside every deadline of ours. So the deadline backend (``_transport``)
resolves a host name here first: on a short-lived daemon thread, waited for at most the
time left of the request. A lookup still running when the request gives up finishes on
its own thread and is discarded; at most ``_MAX_PENDING`` run at once (past that the
connect fails at once, and the request is retried as any network error is).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

from .._fork import fork_safe_lock, reset_in_child

__all__ = ["ResolveError", "ResolveTimeout", "resolve_within"]

_MAX_PENDING = 4


class _Pending:
    """How many lookups run now, in this process: a forked child has none of its
    parent's lookup threads, so it starts from zero."""

    def __init__(self) -> None:
        self.lock = fork_safe_lock()
        self.count = 0
        reset_in_child(self._reset)

    def _reset(self) -> None:
        self.count = 0

    def take(self) -> bool:
        with self.lock:
            if self.count >= _MAX_PENDING:
                return False
            self.count += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.count = max(self.count - 1, 0)


_pending = _Pending()


class ResolveError(OSError):
    """The name could not be resolved (or too many lookups are already pending)."""


class ResolveTimeout(TimeoutError):
    """The lookup did not finish within the time left."""


def resolve_within(host: str, port: int, limit: float | None) -> list[str] | None:
    """The addresses of ``host``, in the resolver's order, found within ``limit`` seconds;
    ``None`` when there is nothing to bound (an IP literal, or no deadline): connect to
    ``host`` as given."""
    if limit is None or _is_ip(host):
        return None
    if not _pending.take():
        raise ResolveError(f"{_MAX_PENDING} lookups of host names are still pending")
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # gaierror, UnicodeError for a bad name, ...
            box["error"] = exc
        finally:
            _pending.give_back()

    thread = threading.Thread(target=lookup, name="posthog_otel-dns", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise ResolveTimeout(f"resolving {host!r} took longer than the request's deadline")
    if "error" in box:
        raise ResolveError(f"resolving {host!r} failed: {box['error']}")
    addresses: list[str] = []
    for _family, _type, _proto, _name, address in box["infos"]:
        if address[0] not in addresses:
            addresses.append(str(address[0]))
    if not addresses:
        raise ResolveError(f"resolving {host!r} gave no address")
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
