"""How to reach the Galtea platform and how local versions map to platform versions.

Configuration follows the official SDK: the API key from ``GALTEA_API_KEY`` (or a file: ``GALTEA_API_KEY_FILE``
or ``api_key_file=``), the base URL from ``GALTEA_API_URL`` (default ``https://api.galtea.ai``). The key is
kept out of ``repr()``, of every log line and of the store.

A galtea-otel session names its version with a free string (``"1.4.0"``); a platform session needs a version
*id*. :class:`VersionMapping` says how one becomes the other, first match wins:

1. ``version_ids``: a static map ``{"1.4.0": "<platform version id>"}``; the key ``"*"`` maps every other
   version string (``GALTEA_VERSION_MAP``: that map as JSON, or ``@path`` to a JSON file).
2. ``product_id``: the version of that product whose *name* is the version string
   (``GET versions?productIds[]=..&names[]=..``; ``GALTEA_PRODUCT_ID``).
3. ``create_versions=True`` (with ``product_id``): when no version has that name, the platform's
   ``versions/get-or-create`` finds or creates the version whose facts are ``{"galtea_otel.version": <string>}``,
   named after the string (``GALTEA_CREATE_VERSIONS=1``).

A version string none of these resolves makes its sessions *parked* (refused), with a message saying so.

Projects (issue 12, ``serve --tokens``): the default project's sessions go as above. Another project's go to the
Galtea product ``project_products`` maps it to (``GALTEA_PROJECT_PRODUCTS``: ``{"shop": "<product id>"}`` as
JSON, or ``@path``): its versions are that product's version of the same name (created with ``create_versions``);
the static ``version_ids`` are not used for it (a version id belongs to one product). A project with no product
mapped is parked, saying so: it never lands in another project's product.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_API_URL = "https://api.galtea.ai"
ENV_API_KEY = "GALTEA_API_KEY"
ENV_API_KEY_FILE = "GALTEA_API_KEY_FILE"
ENV_API_URL = "GALTEA_API_URL"
ENV_PRODUCT_ID = "GALTEA_PRODUCT_ID"
ENV_VERSION_MAP = "GALTEA_VERSION_MAP"
ENV_CREATE_VERSIONS = "GALTEA_CREATE_VERSIONS"
ENV_PROJECT_PRODUCTS = "GALTEA_PROJECT_PRODUCTS"
VERSION_FACT = "galtea_otel.version"


class SyncConfigError(ValueError):
    """The sync cannot start: no API key, an unreadable key file, a malformed version map..."""


@dataclass(frozen=True)
class VersionMapping:
    version_ids: Mapping[str, str] = field(default_factory=dict)
    product_id: str | None = None
    create_versions: bool = False
    # Issue 12: project -> Galtea product id, for the projects other than the default one.
    project_products: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.create_versions and not self.product_id and not self.project_products:
            raise SyncConfigError("create_versions needs a product_id (the product to create versions in)")
        for name, value in self.version_ids.items():
            if not isinstance(name, str) or not isinstance(value, str) or not value:
                raise SyncConfigError("the version map must map version strings to platform version ids")
        for name, value in self.project_products.items():
            if not isinstance(name, str) or not isinstance(value, str) or not value:
                raise SyncConfigError("the project products map must map project names to Galtea product ids")


@dataclass(frozen=True)
class GalteaSyncConfig:
    """Everything the sync needs. Build it with :meth:`from_env` (what ``configure(galtea=True)`` and
    ``galtea-otel serve --galtea-sync`` do) or directly.

    - ``timeout_s``: per request (connect, read, write); a request that times out is retried, and its
      re-delivery is made idempotent by looking up what it may have created.
    - ``batch_size``: outbox rows (sessions) claimed at once; ``span_batch_size``: spans per ``traces/batch``.
    - ``request_attempts``: tries of one request before its session is deferred in the outbox (with
      exponential backoff from ``backoff_base_s`` up to ``backoff_max_s``; a ``Retry-After`` wins).
    - ``lease_s``: how long a claimed row is reserved for this worker; a worker killed mid-batch has its rows
      taken over by the next run once this ran out.
    - ``poll_interval_s``: how often the continuous worker looks for new outbox rows.
    """

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_API_URL
    versions: VersionMapping = field(default_factory=VersionMapping)
    timeout_s: float = 10.0
    batch_size: int = 20
    span_batch_size: int = 100
    request_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 300.0
    max_retry_after_s: float = 600.0
    lease_s: float = 60.0
    poll_interval_s: float = 1.0
    backfill: bool = True
    stopping_reason: str = "COMPLETED"

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.strip():
            raise SyncConfigError(f"no Galtea API key: set {ENV_API_KEY} (or {ENV_API_KEY_FILE})")
        if any(c in self.api_key for c in "\r\n"):
            raise SyncConfigError("the Galtea API key holds a line break")
        if not self.base_url.startswith(("http://", "https://")):
            raise SyncConfigError(f"the Galtea API URL must start with http:// or https:// (got {self.base_url!r})")
        object.__setattr__(self, "api_key", self.api_key.strip())
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        for name in ("timeout_s", "lease_s", "poll_interval_s", "backoff_base_s", "backoff_max_s"):
            if getattr(self, name) <= 0:
                raise SyncConfigError(f"{name} must be positive")
        if self.batch_size < 1 or self.span_batch_size < 1 or self.request_attempts < 1:
            raise SyncConfigError("batch_size, span_batch_size and request_attempts must be at least 1")

    @classmethod
    def from_env(
        cls,
        *,
        api_key_file: str | os.PathLike[str] | None = None,
        base_url: str | None = None,
        versions: VersionMapping | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> GalteaSyncConfig:
        """The configuration from the environment; an argument given here wins over its variable."""
        env = os.environ if environ is None else environ
        key_file = api_key_file or env.get(ENV_API_KEY_FILE)
        if key_file:
            api_key = read_key_file(key_file)
        else:
            api_key = env.get(ENV_API_KEY, "")
        if versions is None:
            versions = VersionMapping(
                version_ids=parse_version_map(env.get(ENV_VERSION_MAP, "")),
                product_id=env.get(ENV_PRODUCT_ID) or None,
                create_versions=env.get(ENV_CREATE_VERSIONS, "").strip().lower() in ("1", "true", "yes", "on"),
                project_products=parse_version_map(env.get(ENV_PROJECT_PRODUCTS, ""), "the project products map"),
            )
        return cls(api_key=api_key, base_url=base_url or env.get(ENV_API_URL) or DEFAULT_API_URL,
                   versions=versions, **options)


def read_key_file(path: str | os.PathLike[str]) -> str:
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SyncConfigError(f"cannot read the Galtea API key file {path}: {exc.strerror or exc}") from None
    if not key:
        raise SyncConfigError(f"the Galtea API key file {path} is empty")
    return key


def parse_version_map(text: str, what: str = "the version map") -> dict[str, str]:
    """``{"1.4.0": "ver_..."}`` as JSON text, or ``@path`` to a JSON file holding it; empty: no map. (Also the
    project products map, ``{"shop": "<product id>"}``, with ``what`` naming it in errors.)"""
    text = text.strip()
    if not text:
        return {}
    source = what
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise SyncConfigError(f"cannot read the version map {source}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SyncConfigError(f"{source} is not JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SyncConfigError(f"{source} must be a JSON object of strings to platform ids")
    return dict(value)
