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
from urllib.parse import unquote, urlsplit

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
        # Credentials in the host (``https://user:pw@...``) travel as a Basic auth header,
        # never in the URL: httpx logs every request's URL at INFO.
        self._host, self._credentials = split_credentials(host.rstrip("/"))
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
        extra: dict[str, Any] = {}
        if self._credentials is not None:
            extra["auth"] = httpx.BasicAuth(*self._credentials)
        try:
            response = client.request(
                method,
                self._host + path,
                content=content,
                headers=all_headers,
                params=params,
                timeout=timeout,
                **extra,
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


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its userinfo, and the (user, password) it carried, if any."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=hostport).geturl(), (unquote(user), unquote(password))


def mask_credentials(url: str) -> str:
    """``url`` fit for a repr or a log line: a password in it replaced by ``***``."""
    bare, credentials = split_credentials(url)
    if credentials is None:
        return url
    scheme, _, rest = bare.partition("://")
    user = urlsplit(url).netloc.rpartition("@")[0].partition(":")[0]
    return f"{scheme}://{user}:***@{rest}"


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
