"""What ``galtea-otel serve`` is told: addresses, limits, auth, and the pipeline settings it passes on."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from galtea_otel.settings import PipelineSettings

DEFAULT_HTTP = "127.0.0.1:4318"
DEFAULT_GRPC = "127.0.0.1:4317"
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_GROUP_SPANS = 20_000
DEFAULT_GROUP_BYTES = 64 * 1024 * 1024
# Deferred assembly: the most spans the assembler stores in one transaction. Its memory grows with it (measured
# with 1 KB inputs and outputs: about 95 MB resident at 4,000, 160 MB at 16,000) and its cost per span falls
# (about 0.8x a single 1,200-span request's at 4,800, 0.65x at 12,000).
DEFAULT_ASSEMBLE_SPANS = 8_000
# Deferred assembly: past this many spans waiting in the inbox, requests are refused with 503 (about 1 GB of
# inbox for 1 KB inputs and outputs, a few minutes of assembly).
DEFAULT_INBOX_SPANS = 1_000_000
DEFAULT_ASSEMBLER_IDLE_EXIT = 60.0  # seconds


class ConfigError(ValueError):
    """Asked for something it refuses to do: a public bind without a token, a bad address..."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name other than localhost: assume it may be public


def parse_address(text: str) -> Address | None:
    """``HOST:PORT`` (``[::1]:4318`` for IPv6) -> :class:`Address`; ``off`` -> None (not started)."""
    if text.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"not HOST:PORT: {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return Address(host, int(port_text))


def load_token(path: str | Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace removed). The token itself is never logged."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"the token file {path} is empty")
    return token


def redact_url(url: str) -> str:
    """A store URL fit for a log line: any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[2]}"))


@dataclass(frozen=True)
class ServeOptions:
    """Everything the receiver needs. ``http`` / ``grpc`` None disables that server; port 0 picks a free one.

    - ``max_body_bytes``: the largest request body, measured after decompression (413 / RESOURCE_EXHAUSTED).
    - ``max_inflight``: requests decoded and ingested at once, per protocol; up to ``max_queued`` more wait
      at most ``queue_timeout`` seconds, then get 503 + ``Retry-After`` (gRPC UNAVAILABLE). Memory is bounded
      however slow the store: on OTLP/HTTP the body bytes held at once are at most ``max_buffered_bytes``
      (below), plus for each of ``max_inflight`` requests its inflated body (up to ``max_body_bytes``) and its
      decoded spans. On OTLP/gRPC at most ``2 x max_inflight + 4`` messages are read at once; a waiting RPC, and
      one refused (UNAVAILABLE, or RESOURCE_EXHAUSTED past the worker pool), holds at most its HTTP/2 stream
      window, 64 KiB (``galtea_otel.serve.grpc_service``).
    - Slow and idle clients (OTLP/HTTP, ``galtea_otel.serve.http``): request headers must be complete within
      ``header_timeout`` s; an idle kept-alive connection is closed after ``keepalive_timeout`` s; a body must
      bring ``body_min_rate`` bytes/s over each ``body_timeout`` window (408 otherwise); at most
      ``max_connections`` connections, ``max_connections_per_client`` per client address (the oldest idle or
      header-incomplete one is closed to make room). Body bytes held at once are at most
      ``max_buffered_bytes`` (default ``max_inflight x max_body_bytes``), and an ingest slot is taken only
      once a body is fully read, so a slow sender holds neither a slot nor more memory than it sent.
      On OTLP/gRPC the connection limits are grpcio's (``galtea_otel.serve.grpc_service``) and a call's
      message must arrive within ``body_timeout`` s.
    - ``token``: when set, every request needs ``Authorization: Bearer <token>``.
    - ``group_max_spans`` / ``group_max_bytes``: requests waiting for the store at the same moment are stored in
      one transaction (``galtea_otel.serve.writer``), up to this many spans and bytes of row text in it.
    - ``assemble``: ``inline`` answers a request once its records are assembled in the store;
      ``deferred`` answers once its rows are committed to the store's inbox, and a second process assembles them,
      ``assemble_batch_spans`` at a time (``galtea_otel.serve.inbox``; SQLite stores only); past
      ``inbox_max_spans`` spans waiting, requests get 503. ``auto`` (default): deferred when the receiver is
      its own process (``galtea-otel serve``) on a SQLite store file, inline otherwise (a PostgreSQL store, a
      receiver embedded in another program's thread, which would not own a second process).
    - ``redact_secrets``: mask common secrets (:func:`galtea_otel.redact.secrets`) in what is stored, for
      telemetry that arrives unmasked (applied when the receiver builds its own pipeline).
    """

    store_url: str | None = None  # None: galtea_otel.store.default_store_url()
    http: Address | None = field(default_factory=lambda: parse_address(DEFAULT_HTTP))
    grpc: Address | None = field(default_factory=lambda: parse_address(DEFAULT_GRPC))
    token: str | None = field(default=None, repr=False)
    # Issue 12: ``serve --tokens FILE`` (galtea_otel.serve.projects): each token writes one project's sessions.
    tokens_file: str | None = None
    allow_insecure_public: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflight: int = 4
    max_queued: int = 64
    queue_timeout: float = 2.0
    retry_after_seconds: int = 1
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    body_timeout: float = 10.0
    body_min_rate: int = 1024
    max_connections: int = 2048
    max_connections_per_client: int = 256
    max_buffered_bytes: int | None = None
    # Group commit (galtea_otel.serve.writer): the most spans, and bytes of their rows' texts, stored in one
    # transaction for the requests waiting together.
    group_max_spans: int = DEFAULT_GROUP_SPANS
    group_max_bytes: int = DEFAULT_GROUP_BYTES
    sweep_interval: float = 30.0
    # ``inline``: a request is answered once assembled into the store; ``deferred``: once committed to the
    # inbox, assembled by a second process (galtea_otel.serve.inbox); ``assemble_batch_spans`` per transaction.
    # ``auto``: deferred for ``galtea-otel serve`` on a SQLite file, else inline (``Receiver._deferred``).
    assemble: str = "auto"
    assemble_batch_spans: int = DEFAULT_ASSEMBLE_SPANS
    inbox_max_spans: int = DEFAULT_INBOX_SPANS
    # Deferred: the assembler process exits once it has had nothing to assemble for this long and no sweep is
    # due within that long again; the next request starts it again, or the receiver when the next sweep is due
    # (a session's idle close, a held trace's hold); 0: it never does.
    assembler_idle_exit: float = DEFAULT_ASSEMBLER_IDLE_EXIT
    shutdown_grace: float = 30.0
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    redact_secrets: bool = False

    @property
    def buffered_bytes_limit(self) -> int:
        """Body bytes held at once on OTLP/HTTP (at least one full body)."""
        if self.max_buffered_bytes is not None:
            return max(self.max_buffered_bytes, self.max_body_bytes)
        return self.max_inflight * self.max_body_bytes

    def check(self) -> list[str]:
        """Refuse what is unsafe or impossible; return warnings to log loudly."""
        if self.http is None and self.grpc is None:
            raise ConfigError("both --http and --grpc are off: nothing to serve")
        if self.max_body_bytes <= 0 or self.max_inflight <= 0 or self.max_queued < 0:
            raise ConfigError("--max-body-bytes and the concurrency limits must be positive")
        if min(self.header_timeout, self.keepalive_timeout, self.body_timeout) <= 0 or self.body_min_rate < 0:
            raise ConfigError("the header, keep-alive and body timeouts must be positive")
        if self.assemble not in ("auto", "inline", "deferred"):
            raise ConfigError(f"--assemble must be auto, inline or deferred, not {self.assemble!r}")
        if self.assemble == "deferred" and (self.store_url or "").startswith(("postgresql:", "postgres:")):
            raise ConfigError("--assemble deferred needs a SQLite store (its inbox is a file beside it); a "
                              "PostgreSQL deployment scales by running more receivers")
        if self.assemble_batch_spans <= 0 or self.inbox_max_spans <= 0:
            raise ConfigError("the assembler's batch size and the inbox's limit must be positive")
        if self.group_max_spans <= 0 or self.group_max_bytes <= 0:
            raise ConfigError("the group commit limits must be positive")
        if self.max_connections <= 0 or self.max_connections_per_client <= 0:
            raise ConfigError("--max-connections and --max-connections-per-client must be positive")
        warnings = []
        for name, address in (("HTTP", self.http), ("gRPC", self.grpc)):
            if address is None or address.is_loopback or self.token or self.tokens_file:
                continue
            if not self.allow_insecure_public:
                raise ConfigError(
                    f"refusing to serve {name} on the non-loopback address {address} without a token: "
                    "pass --token-file or --tokens (or --allow-insecure-public if you really mean it)"
                )
            warnings.append(
                f"INSECURE: {name} listens on {address} WITHOUT AUTHENTICATION; anyone who can reach it can "
                "write sessions into the store"
            )
        return warnings
