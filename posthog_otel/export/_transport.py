"""HTTP for the exporter and the flag calls: httpx, imported lazily.

``import posthog_otel`` must stay cheap, so httpx is imported when a client is created
(on its thread: never on ours, where a fork could cut the import in half). A
user-supplied ``httpx.Client`` is used as it is and never closed by us; our own client
is rebuilt in a forked child (its pool belongs to the parent). Unless a proxy is set in
the environment, our own client's requests skip ``httpx.Client.send`` and go to its one
transport directly (``_direct_request``): the client's per-request work was about 30 %
of the CPU of a 100-event request (benchmarks/README.md, "Delivery speed").

Every request has an overall deadline of ``timeout`` seconds, not only httpx's
per-phase timeouts (a server that trickles a byte a second would otherwise hold a
request forever). It is enforced twice:

* every socket operation of the request (connect, TLS, each send, each read, headers
  included) is given at most the time left, by a network backend that reads the
  deadline of the request running on its thread. A user's ``http_client`` gets it too
  (its pools' backend is wrapped once; the user's own requests, on threads with no
  deadline of ours, pass through unchanged); a custom transport without an httpcore
  pool, or an httpx whose internals moved, keeps only the next check;
* the response body is streamed and the clock checked between chunks.

A host name is resolved within the deadline too (``_resolve``): ``getaddrinfo`` itself
takes no timeout.

Our own clients share one TLS context per process, made when the first client is
created, on its thread (``prepare``), and never again in a forked child; handshakes run
in ``no_fork_during``. OpenSSL is not fork safe: a child forked while another thread was
inside it (building a context, in a handshake) hangs on its first TLS context.

The body read is capped at ``MAX_RESPONSE_BYTES`` (decoded): a hostile server cannot
make us buffer more. Every failure of the call becomes a ``TransportError``, so that a
caller's handling of "no usable answer" covers all of them.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._config import split_credentials
from .._fork import import_fork_safe, no_fork_during
from .._log import logger, quiet_http_loggers, thread_state
from ._resolve import ResolveError, ResolveTimeout, resolve_within

if TYPE_CHECKING:
    import httpx

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_WRITE_PIECE = 64 * 1024  # bytes written per deadline check


class TransportError(Exception):
    """No usable HTTP answer arrived (connection refused or reset, timeout, TLS, a
    malformed answer, ...). ``permanent`` when trying again cannot help (an invalid URL)."""

    def __init__(self, message: str, *, refused: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
        self.permanent = permanent


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    content: bytes


class _Deadline(threading.local):
    at: float | None = None  # monotonic deadline of the request this thread is making


_deadline = _Deadline()


class HttpTransport:
    """POST/GET against one host, each request within an overall deadline."""

    def __init__(
        self,
        host: str,
        *,
        user_agent: str,
        http_client: httpx.Client | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        # Credentials in the host (``https://user:pw@...``) travel as a Basic auth header,
        # never in the URL: httpx logs every request's URL at INFO.
        self._host, self._credentials = split_credentials(host.rstrip("/"))
        self._user_agent = user_agent
        self._user_client = http_client
        self._user_client_wrapped = False
        self._own_client: httpx.Client | None = None
        # Our own client's transport, when requests may skip the client (no proxy).
        self._direct: httpx.HTTPTransport | None = None
        self._direct_headers: dict[str, str] = {}
        self._direct_urls: dict[str, httpx.URL] = {}
        self._auth_header: str | None = None
        self._closed = False  # after close(): no request builds a new pool
        self._max_response_bytes = max_response_bytes
        self._warned: set[str] = set()
        quiet_http_loggers()  # httpx must not log our uploads into the application's logs

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
        """Send one request and read its answer within ``timeout`` seconds overall;
        raise ``TransportError`` when no usable answer arrived."""
        if self._closed:
            raise TransportError("the client is closed", permanent=True)
        import httpx

        deadline = time.monotonic() + timeout
        outer, _deadline.at = _deadline.at, deadline
        thread_state.requesting = True  # httpx's records of this request are ours
        try:
            client = self._client()
            direct = self._direct
            if direct is not None:
                if client.is_closed:  # as send() would refuse: no new pool after close()
                    raise TransportError("the client is closed", permanent=True)
                request = self._direct_request(method, path, content, headers, timeout, params)
                cookies = client.cookies  # kept as the client keeps them (sticky sessions)
                if cookies:
                    cookies.set_cookie_header(request)
                response = direct.handle_request(request)
                response.request = request
            else:
                all_headers = {"User-Agent": self._user_agent}
                if headers:
                    all_headers.update(headers)
                extra: dict[str, Any] = {}
                if self._credentials is not None:  # else the client's own auth stays in force
                    extra["auth"] = httpx.BasicAuth(*self._credentials)
                request = client.build_request(
                    method,
                    self._host + path,
                    content=content,
                    headers=all_headers,
                    params=params,
                    timeout=timeout,
                )
                response = client.send(request, stream=True, **extra)
            try:
                if direct is not None and "set-cookie" in response.headers:
                    client.cookies.extract_cookies(response)
                body = self._read(response, deadline)
            finally:
                response.close()
        except TransportError:
            raise
        except httpx.ConnectError as exc:
            raise TransportError(_describe(exc), refused=_is_refused(exc)) from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            raise TransportError(_describe(exc), permanent=True) from None
        except httpx.TransportError as exc:
            raise TransportError(_describe(exc)) from None
        except Exception as exc:  # anything else from httpx or a user's client
            raise TransportError(_describe(exc), permanent=True) from None
        finally:
            _deadline.at = outer
            thread_state.requesting = outer is not None
        return Response(response.status_code, response.headers, body)

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        """The decoded body, read until ``deadline`` and up to the size cap.

        A body that cannot be decoded (labelled gzip, but not) is read as empty: the
        status still says what happened to the request."""
        import httpx

        chunks: list[bytes] = []
        size = 0
        limit = self._max_response_bytes
        try:
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise TransportError(_overdue(response))
                size += len(chunk)
                if size > limit:
                    self._warn_once(
                        "response_too_large",
                        "a response from %s was over %d bytes; the rest was not read",
                        response.request.url.host,
                        limit,
                    )
                    chunks.append(chunk[: limit - (size - len(chunk))])
                    break
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            self._warn_once(
                "response_undecodable",
                "a response body could not be decoded (%s); read as empty",
                exc,
            )
            return b""
        return b"".join(chunks)

    def _warn_once(self, what: str, message: str, *args: object) -> None:
        """A hostile server must not flood the logs: the first of a kind at WARNING, the
        rest at DEBUG (no lock: a rare second warning is harmless)."""
        level = logging.DEBUG if what in self._warned else logging.WARNING
        self._warned.add(what)
        logger.log(level, message, *args)

    def prepare(self) -> None:
        """On the thread that creates the client: make what our threads would otherwise
        make at a moment when the parent may fork (the TLS context)."""
        if self._user_client is None:
            _tls_context()

    def _client(self) -> httpx.Client:
        user_client = self._user_client
        if user_client is not None:
            if not self._user_client_wrapped:
                self._user_client_wrapped = True
                _install_deadline_backend(user_client)
            return user_client
        client = self._own_client
        if client is None:
            import httpx

            tls = _tls_context()
            limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
            if _environment_proxies():  # httpx mounts a transport per proxy: use it all
                client = httpx.Client(verify=tls, limits=limits)
                self._direct = None
            else:
                # Every URL goes to this one transport: our requests go to it directly
                # (``_direct_request``). (A client given a transport reads no proxies
                # from the environment: there are none.)
                transport = httpx.HTTPTransport(verify=tls, limits=limits)
                client = httpx.Client(transport=transport)
                self._direct = transport
            _install_deadline_backend(client)
            self._direct_headers = self._base_headers(client)
            self._direct_urls = {}
            self._own_client = client
        return client

    def _base_headers(self, client: httpx.Client) -> dict[str, str]:
        """What ``client.send`` would add to each request of ours, once: the client's
        default headers, our User-Agent and the Basic auth header of the host's
        credentials (it replaces any ``Authorization`` a request gives, as httpx's
        ``auth=`` does). Names in lower case, so that a request's own headers replace
        them whatever their case."""
        import httpx

        headers = {name.lower(): value for name, value in client.headers.items()}
        headers["user-agent"] = self._user_agent
        if self._credentials is not None:
            authed = next(
                httpx.BasicAuth(*self._credentials).sync_auth_flow(
                    httpx.Request("GET", "http://localhost/")
                )
            )
            self._auth_header = authed.headers["authorization"]
        return headers

    def _direct_request(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float,
        params: Mapping[str, str] | None,
    ) -> httpx.Request:
        """The request ``client.build_request`` + ``send`` would make, built for the
        transport: what the client adds per request (URL merging, cookies, auth and
        redirect handling, event hooks) was settled once or does not apply (no base
        URL, no redirects followed, credentials sent as a header), and it cost about
        30 % of the CPU of a 100-event request."""
        import httpx

        all_headers = self._direct_headers.copy()
        if headers:
            for name, value in headers.items():
                all_headers[name.lower()] = value
        if self._auth_header is not None:
            all_headers["authorization"] = self._auth_header
        url = self._direct_urls.get(path)
        if url is None:
            url = self._direct_urls[path] = httpx.URL(self._host + path)
        return httpx.Request(
            method,
            url,
            params=params,
            content=content,
            headers=all_headers,
            extensions={
                "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
            },
        )

    def reset_after_fork(self) -> None:
        """Forget our own pool in a forked child: its sockets belong to the parent."""
        self._own_client = None
        self._direct = None

    def close(self) -> None:
        """Close the client we created (never a user's); later requests fail at once
        (a flag read on a closed client must not open a pool that nobody closes)."""
        self._closed = True
        client, self._own_client = self._own_client, None
        self._direct = None
        if client is not None:
            thread_state.requesting = True  # httpcore logs the connections it closes
            try:
                client.close()
            except Exception:
                pass
            finally:
                thread_state.requesting = False


_tls: list[Any] = []  # the TLS context of our own clients, made once per process


def _tls_context() -> Any:
    """The one TLS context of our own clients (httpx's default one: certifi, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``), made once, never while a fork happens."""
    if not _tls:
        import httpx

        create = getattr(httpx, "create_ssl_context", None)
        with no_fork_during():
            if not _tls:
                _tls.append(create() if create is not None else True)
    return _tls[0]


def _environment_proxies() -> bool:
    """Whether httpx would send some of our client's requests through a proxy taken from
    the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``): the client's
    ``trust_env`` reads the same ``urllib`` mapping (httpx imported ``urllib.request``
    already; this may run on one of our threads)."""
    proxies = import_fork_safe("urllib.request").getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


# ------------------------------------------------------------------ deadline backend


def _install_deadline_backend(client: httpx.Client) -> None:
    """Give every connection pool of ``client`` the deadline-aware backend (once).

    httpx has no public way to pass a network backend; the pools keep it in
    ``_network_backend``. Should that change (or the transport be a custom one), requests
    keep the streaming check only: this never raises."""
    try:
        import httpcore

        backend_class = _deadline_classes()[1]
        transports = (getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values())
        for transport in transports:
            pool = getattr(transport, "_pool", None)
            backend = getattr(pool, "_network_backend", None)
            if isinstance(backend, httpcore.NetworkBackend) and not isinstance(
                backend, backend_class
            ):
                pool._network_backend = backend_class(backend)  # type: ignore[union-attr]
    except Exception:
        logger.debug("the request deadline backend could not be installed", exc_info=True)


def _remaining(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut down to what is left of this thread's request deadline."""
    at = _deadline.at
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the request's overall deadline passed")
    return left if timeout is None else min(timeout, left)


@functools.cache
def _deadline_classes() -> tuple[type[Any], type[Any]]:
    """The stream and backend classes, built on first use: httpcore is imported with
    httpx (when a client is created), never by ``import posthog_otel``."""
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        """A connection whose every operation ends by the request's deadline."""

        def __init__(self, inner: httpcore.NetworkStream) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            # In pieces, so that a server reading slowly cannot stretch one write.
            view = memoryview(buffer)
            for start in range(0, len(view), _WRITE_PIECE):
                piece = bytes(view[start : start + _WRITE_PIECE])
                self._inner.write(piece, _remaining(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(
            self,
            ssl_context: Any,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            with no_fork_during():  # a handshake cut by a fork hangs the child's TLS
                inner = self._inner.start_tls(
                    ssl_context, server_hostname, _remaining(timeout, httpcore.ConnectTimeout)
                )
            return DeadlineStream(inner)

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        """Wraps httpcore's backend: connects, and hands out ``DeadlineStream``s."""

        def __init__(self, inner: httpcore.NetworkBackend) -> None:
            self._inner = inner

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            limit = _remaining(timeout, httpcore.ConnectTimeout)
            try:
                addresses = resolve_within(host, port, limit)
            except ResolveTimeout as exc:
                raise httpcore.ConnectTimeout(str(exc)) from exc
            except ResolveError as exc:
                raise httpcore.ConnectError(str(exc)) from exc
            if addresses is None:
                return DeadlineStream(
                    self._inner.connect_tcp(host, port, limit, local_address, socket_options)
                )
            failure: Exception | None = None
            for address in addresses:  # as socket.create_connection tries them
                try:
                    stream = self._inner.connect_tcp(
                        address,
                        port,
                        _remaining(timeout, httpcore.ConnectTimeout),
                        local_address,
                        socket_options,
                    )
                except httpcore.ConnectError as exc:
                    failure = exc
                    continue
                return DeadlineStream(stream)
            raise failure or httpcore.ConnectError(f"no address of {host!r} answered")

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            limit = _remaining(timeout, httpcore.ConnectTimeout)
            return DeadlineStream(self._inner.connect_unix_socket(path, limit, socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return DeadlineStream, DeadlineBackend


def _overdue(response: httpx.Response) -> str:
    return f"ReadTimeout: no complete answer from {response.request.url.host} in time"


def _describe(exc: Exception) -> str:
    """What a warning says of a failed request. Keys travel in bodies and headers, not
    URLs; a header value httpx refuses (a key with a newline in it) is quoted by its
    message, so quoted bytes are cut out of it."""
    text = f"{type(exc).__name__}: {exc}"
    return _QUOTED_BYTES.sub("b'…'", text) if "b'" in text or 'b"' in text else text


_QUOTED_BYTES = re.compile(r"""\bb(['"]).*?(?<!\\)\1""", re.S)


def _is_refused(exc: Any) -> bool:
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "refused" in str(exc).lower()
