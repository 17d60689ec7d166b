"""Projects (issue 12): which project each bearer token writes, for ``galtea-otel serve --tokens FILE``.

The tokens file is JSON, ``{"project": ["token", ...], ...}``: each token belongs to exactly one project, and a
session is identified by (project, custom id, version), so a token writes only its own project's sessions. The
project is decided here, by the token that authenticated the request, never by anything a client sends.
``--token-file``'s single token is the default project's (:data:`DEFAULT_PROJECT`); without any token every
request is the default project's, as before.

The file is re-read on SIGHUP (:meth:`Tokens.reload`): a file that cannot be read or is not valid keeps the
mapping in force and logs why. Tokens are compared in constant time, against every known token whichever one
matches, so neither a token nor which project holds it leaks through timing.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from galtea_otel.serve.options import ConfigError
from galtea_otel.translate.row import DEFAULT_PROJECT

log = logging.getLogger("galtea_otel.serve")

# A project name: what the CLI's --project and the UI's ?project= take, and a Galtea product mapping's key.
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def load_tokens(path: str | Path) -> dict[str, str]:
    """token -> project from a tokens file; ``ConfigError`` (never naming a token) when it is not valid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the tokens file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f'the tokens file {path} must be a JSON object {{"project": ["token", ...]}}, '
                          "with at least one project")
    mapping: dict[str, str] = {}
    for project, tokens in data.items():
        if not PROJECT_NAME.match(project):
            raise ConfigError(f"the tokens file {path}: {project[:100]!r} is not a project name (letters, digits,"
                              " '.', '_', '-'; 1-100 characters, starting with a letter or digit)")
        if not isinstance(tokens, list) or not tokens:
            raise ConfigError(f"the tokens file {path}: project {project!r} needs a non-empty list of tokens")
        for n, token in enumerate(tokens):
            if not isinstance(token, str) or not token.strip() or token != token.strip():
                raise ConfigError(f"the tokens file {path}: token {n + 1} of project {project!r} is not a"
                                  " non-empty string without surrounding spaces")
            if token in mapping and mapping[token] != project:
                raise ConfigError(f"the tokens file {path}: token {n + 1} of project {project!r} is also a token"
                                  f" of project {mapping[token]!r} (a token belongs to one project)")
            mapping[token] = project
    return mapping


class _Table:
    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.entries = tuple((token.encode(), project) for token, project in mapping.items())
        self.projects = tuple(sorted(set(mapping.values())))


class Tokens:
    """The token -> project table of one receiver, shared by OTLP/HTTP and OTLP/gRPC. Thread-safe."""

    def __init__(self, token: str | None = None, tokens_file: str | None = None) -> None:
        self.token = token
        self.tokens_file = tokens_file
        self._lock = threading.Lock()
        self._table = _Table(self._load())

    @property
    def required(self) -> bool:
        """Whether requests must present a token (else every request is the default project's)."""
        return bool(self._table.entries)

    @property
    def projects(self) -> tuple[str, ...]:
        return self._table.projects

    def _load(self) -> dict[str, str]:
        mapping = load_tokens(self.tokens_file) if self.tokens_file else {}
        if self.token:
            if mapping.get(self.token, DEFAULT_PROJECT) != DEFAULT_PROJECT:
                raise ConfigError(f"the --token-file token is also a token of project {mapping[self.token]!r}"
                                  f" in {self.tokens_file}")
            mapping[self.token] = DEFAULT_PROJECT
        return mapping

    def reload(self) -> bool:
        """Re-read the tokens file (SIGHUP). On any error keep the current table, log why, return False."""
        if not self.tokens_file:
            return True
        with self._lock:
            try:
                table = _Table(self._load())
            except ConfigError as exc:
                log.error("SIGHUP: %s; keeping the %d token(s) in force", exc, len(self._table.entries))
                return False
            self._table = table
        log.info("SIGHUP: re-read %s: %d token(s), projects %s", self.tokens_file, len(table.entries),
                 ", ".join(table.projects))
        return True

    def project_of(self, token: bytes) -> str | None:
        """The project of this token, or None when it is none of ours. Constant time: every known token is
        compared, whichever matches."""
        table = self._table
        if not table.entries:
            return DEFAULT_PROJECT
        found: str | None = None
        for expected, project in table.entries:
            if hmac.compare_digest(token, expected) and found is None:
                found = project
        return found

    def project_of_header(self, header: bytes | None) -> str | None:
        """The project of an ``Authorization: Bearer <token>`` header's token (None: refuse with 401)."""
        scheme, _, token = (header or b"").strip().partition(b" ")
        # The comparison always runs, so a wrong scheme costs the same time as a wrong token.
        project = self.project_of(token.strip() if self.required else b"")
        return project if scheme.lower() == b"bearer" or not self.required else None
