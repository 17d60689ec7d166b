"""The HTTP layer of the sync: one ``httpx.Client`` per worker, with timeouts, retries and error classes.

Why not the official SDK's client (``galtea.infrastructure.clients.http_client.Client``): its timeouts and retry
counts are module globals read once from the environment at import, it retries only connection errors, never
429 or 5xx and never honours ``Retry-After``, and it prints every HTTP error in red on stdout. The sync needs
per-request control, and it runs on its own thread anyway. The SDK's pydantic models are used for every
request body (:mod:`galtea_otel.sync.payloads`).

Retries here are safe by construction: an idempotent request (GET, PATCH, DELETE) is retried on any transient failure;
a POST only when it cannot have reached the server (a refused connection, a connect timeout) or was refused
with 429. Any other failure of a POST (a read timeout, a dropped connection, a 5xx) raises :class:`Retryable`,
and the next attempt at that session looks up what the POST may have created before creating anything.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from galtea_otel.sync.config import GalteaSyncConfig
from galtea_otel.version import VERSION

log = logging.getLogger("galtea_otel.sync")
IN_REQUEST_RETRY_AFTER_MAX_S = 2.0  # a longer Retry-After defers the session in the outbox instead


class SyncError(Exception):
    """A request to the platform failed."""


class Retryable(SyncError):
    """A transient failure (connection, timeout, 429, 5xx): try again later, after ``retry_after`` if given."""

    def __init__(self, message: str, retry_after: float | None = None, *, final: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.final = final  # not to be retried within the request (a POST that may have reached the server)


class Refused(SyncError):
    """The platform refused the request (4xx other than 401, 403, 408 and 429): the record is parked."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status  # 0: refused by the sync itself (a version it cannot map)


class AuthFailed(SyncError):
    """401 / 403: the API key is missing, wrong or lacks rights. Nothing can be sent until it is fixed."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(response: httpx.Response) -> str:
    """The platform's own words for an error: ``message`` (or ``error``) of its JSON body, else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for name in ("message", "error", "detail"):
            value = body.get(name)
            if isinstance(value, str) and value:
                return value[:1000]
            if isinstance(value, list) and value:
                return "; ".join(str(v) for v in value)[:1000]
    text = response.text.strip()
    return text[:1000] if text else response.reason_phrase or "no reason given"


class GalteaHttp:
    """A small JSON client for the Galtea REST API. ``stop`` (an Event) interrupts backoff sleeps."""

    def __init__(self, config: GalteaSyncConfig, stop: threading.Event | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self._client = httpx.Client(
            base_url=config.base_url + "/",
            timeout=httpx.Timeout(config.timeout_s),
            headers={"Authorization": f"Bearer {config.api_key}", "User-Agent": f"galtea-otel/{VERSION}",
                     "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )
        self.requests = 0

    def close(self) -> None:
        self._client.close()

    def get(self, path: str, params: Mapping[str, Any] | list[tuple[str, str]] | None = None) -> Any:
        return self.request("GET", path, params=params, idempotent=True)

    def post(self, path: str, body: Any, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("POST", path, json_body=body, params=params, idempotent=False)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json_body=body, idempotent=True)

    def delete(self, path: str) -> Any:
        """A DELETE is idempotent: retried like a PATCH (a 404 on a retry means the first one did it)."""
        return self.request("DELETE", path, idempotent=True)

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Mapping[str, Any] | list[tuple[str, str]] | None = None, idempotent: bool) -> Any:
        attempts = self.config.request_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, path, json_body, params, idempotent)
            except Retryable as exc:
                last = attempt == attempts
                delay = exc.retry_after
                if last or exc.final or (delay is not None and delay > IN_REQUEST_RETRY_AFTER_MAX_S):
                    raise
                if delay is None:
                    delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0 ** (attempt - 1))
                    delay *= random.uniform(0.5, 1.0)
                log.debug("galtea sync: %s %s failed (%s); retrying in %.2f s", method, path, exc, delay)
                if self.stop.wait(delay):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, method: str, path: str, json_body: Any, params: Any, idempotent: bool) -> Any:
        self.requests += 1
        where = f"{method} {path}"
        try:
            response = self._client.request(method, path, json=json_body, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Retryable(f"{where}: cannot connect to {self.config.base_url} ({type(exc).__name__})") from None
        except httpx.TimeoutException as exc:
            raise Retryable(f"{where}: no answer within {self.config.timeout_s:g} s ({type(exc).__name__})",
                            final=not idempotent) from None
        except httpx.TransportError as exc:  # the connection dropped mid-request
            raise Retryable(f"{where}: connection lost ({type(exc).__name__})", final=not idempotent) from None
        status = response.status_code
        if status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise Retryable(f"{where}: the answer is not JSON (HTTP {status})") from None
        message = error_message(response)
        if status == 429:
            raise Retryable(f"{where}: HTTP 429 (rate limited): {message}",
                            retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 500 or status == 408:
            raise Retryable(f"{where}: HTTP {status}: {message}",
                            retry_after_seconds(response.headers.get("Retry-After")), final=not idempotent)
        if status in (401, 403):
            raise AuthFailed(f"{where}: HTTP {status}: the platform refused the API key ({message})")
        raise Refused(status, f"{where}: {message}")
