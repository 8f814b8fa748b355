"""HTTP for the exporter (and later the flag calls): httpx, imported lazily.

``import posthog_otel`` must stay cheap, so httpx is imported the first time a request
is made, on the flush thread. A user-supplied ``httpx.Client`` is used as it is and
never closed by us; our own client is rebuilt in a forked child (its pool belongs to
the parent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class TransportError(Exception):
    """No HTTP answer arrived (connection refused or reset, timeout, TLS, ...)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    content: bytes


class HttpTransport:
    """POST/GET against one host with a per-request timeout."""

    def __init__(
        self,
        host: str,
        *,
        user_agent: str,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._host = host.rstrip("/")
        self._user_agent = user_agent
        self._user_client = http_client
        self._own_client: httpx.Client | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request; raise ``TransportError`` when no answer arrived."""
        import httpx

        client = self._client()
        all_headers = {"User-Agent": self._user_agent}
        if headers:
            all_headers.update(headers)
        try:
            response = client.request(
                method,
                self._host + path,
                content=content,
                headers=all_headers,
                params=params,
                timeout=timeout,
            )
        except httpx.ConnectError as exc:
            raise TransportError(_describe(exc), refused=_is_refused(exc)) from None
        except httpx.TransportError as exc:
            raise TransportError(_describe(exc)) from None
        return Response(response.status_code, response.headers, response.content)

    def _client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        client = self._own_client
        if client is None:
            import httpx

            client = self._own_client = httpx.Client(
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            )
        return client

    def reset_after_fork(self) -> None:
        """Forget our own pool in a forked child: its sockets belong to the parent."""
        self._own_client = None

    def close(self) -> None:
        """Close the client we created (never a user's)."""
        client, self._own_client = self._own_client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def _describe(exc: Exception) -> str:
    # httpx messages carry no credentials (keys travel in bodies or headers, not URLs).
    return f"{type(exc).__name__}: {exc}"


def _is_refused(exc: Any) -> bool:
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "refused" in str(exc).lower()
