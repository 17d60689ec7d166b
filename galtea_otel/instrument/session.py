"""``session()``: one conversation, a ``galtea.session`` span whose attributes every span inside inherits.

Opening a session (one implementation for ``with`` and ``async with``):

1. validates its arguments, raising ``ValueError`` / ``TypeError`` before any span starts;
2. puts the session's stamp in the Context (the stamping processor copies it onto every span started inside);
3. starts the ``galtea.session`` span (``galtea.span.type=SESSION``, ``galtea.test_case.id``,
   ``galtea.session.context``, ``galtea.session.metadata`` and the stamped keys) and makes it current;
4. emits the start marker: a child span ``galtea.session.start`` with the same attributes and
   ``galtea.session.event="start"``, ended at once, so that exporters see the session (PENDING) while it runs.

When the block raises, the session span gets status ERROR (``"ExcType: message"``), an ``exception`` event and
``galtea.span.error``; the exception propagates unchanged. ``end_session()`` closes a session that has no
session span (one request per message) with a ``galtea.session.end`` marker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from galtea_otel.attributes import (
    EVENT_END,
    EVENT_START,
    SESSION_CONTEXT,
    SESSION_EVENT,
    SESSION_METADATA,
    SESSION_USER_ID,
    SPAN_TYPE,
    TEST_CASE_ID,
    TYPE_SESSION,
    USER_ID,
)
from galtea_otel.config import current
from galtea_otel.instrument.capture import encode_json_text, redact_text
from galtea_otel.instrument.context import SESSION_KEY, make_stamp
from galtea_otel.instrument.errors import mark_error, record_exception
from galtea_otel.instrument.testcases import get_test_case
from galtea_otel.stats import internal_error

__all__ = ["ActiveSession", "SessionScope", "continue_session", "end_session", "session"]

SESSION_SPAN_NAME = "galtea.session"
START_SPAN_NAME = "galtea.session.start"
END_SPAN_NAME = "galtea.session.end"

logger = logging.getLogger("galtea_otel")
_warned_unconfigured = False


def _required_str(name: str, value: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is required (a non-empty string)")
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a str, not {type(value).__name__} ({value!r:.40}): e.g. {name}=\"{value!s:.40}\"")
    return value


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"session metadata must be JSON-serializable: {exc}") from None


class ActiveSession:
    """The running session, as yielded by ``with galtea_otel.session(...) as s``."""

    def __init__(self, custom_id: str, version: str, test_case_id: str | None, context: str | None,
                 metadata: dict[str, Any], span: Span) -> None:
        self.custom_id = custom_id
        self.version = version
        self.test_case_id = test_case_id
        self.context = context
        self.metadata = metadata
        self.span = span

    @property
    def is_production(self) -> bool:
        return self.test_case_id is None

    @property
    def trace_id(self) -> str:
        """The session span's trace id, 32 lower-case hex characters."""
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self.span.get_span_context().span_id, "016x")

    def set_metadata(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Merge keys into the session's metadata (``TypeError`` / ``ValueError`` if not JSON-ready)."""
        merged = {**self.metadata, **(values or {}), **more}
        text = _metadata_json(merged)
        self.metadata = merged
        self.span.set_attribute(SESSION_METADATA, encode_json_text(text, current()))

    def set_error(self, message: str) -> None:
        """Mark the session as failed with ``message``, without raising anything."""
        mark_error(self.span, str(message))

    def __repr__(self) -> str:
        return f"ActiveSession({self.custom_id!r}, {self.version!r}, trace_id={self.trace_id})"


class SessionScope:
    """The context manager returned by :func:`session`, usable with ``with`` and ``async with`` (once)."""

    def __init__(self, custom_id: str, version: str, test_case_id: str | None, context: str | None,
                 metadata: dict[str, Any], metadata_json: str | None, *, own_span: bool = True,
                 user_id: str | None = None) -> None:
        self._own_span = own_span
        self._user_id = user_id
        self._custom_id = custom_id
        self._version = version
        self._test_case_id = test_case_id
        self._context = context
        self._metadata = metadata
        self._metadata_json = metadata_json
        self._active: ActiveSession | None = None
        self._token: object | None = None
        self._used = False

    def _open(self) -> ActiveSession:
        if self._used:
            raise RuntimeError("a galtea_otel.session(...) can be entered only once; call session() again")
        self._used = True
        config = current()
        _warn_if_unconfigured(config.configured)
        stamp = make_stamp(self._custom_id, self._version)
        attributes: dict[str, Any] = {**stamp, SPAN_TYPE: TYPE_SESSION}
        if self._test_case_id is not None:
            attributes[TEST_CASE_ID] = self._test_case_id
        if self._context is not None:
            attributes[SESSION_CONTEXT] = redact_text(self._context, config)
        if self._metadata_json is not None:
            attributes[SESSION_METADATA] = encode_json_text(self._metadata_json, config)
        if self._user_id is not None:
            user = redact_text(self._user_id, config)
            attributes[USER_ID] = user
            attributes[SESSION_USER_ID] = user
        parent = otel_context.set_value(SESSION_KEY, stamp)
        if self._own_span:
            span = config.tracer.start_span(SESSION_SPAN_NAME, context=parent, attributes=attributes)
            inside = trace.set_span_in_context(span, parent)
        else:  # continue_session(): no session span; the request's own span stays current
            span = trace.get_current_span(parent)
            inside = parent
        self._token = otel_context.attach(inside)
        try:
            now = time.time_ns()
            marker = config.tracer.start_span(
                START_SPAN_NAME, context=inside, attributes={**attributes, SESSION_EVENT: EVENT_START},
                start_time=now,
            )
            marker.end(end_time=now)
        except Exception as exc:
            internal_error("session.start_marker", exc)
        self._active = ActiveSession(self._custom_id, self._version, self._test_case_id, self._context,
                                     dict(self._metadata), span)
        return self._active

    def _close(self, exc: BaseException | None) -> None:
        active, token = self._active, self._token
        self._active = self._token = None
        if active is None:
            return
        try:
            if self._own_span:
                if exc is not None and not isinstance(exc, GeneratorExit):
                    record_exception(active.span, exc)
                active.span.end()
        except Exception as inner:
            internal_error("session.end", inner)
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def __enter__(self) -> ActiveSession:
        return self._open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close(exc)

    async def __aenter__(self) -> ActiveSession:
        return self._open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._close(exc)


def session(
    custom_id: str,
    version: str,
    test_case_id: str | None = None,
    is_production: bool | None = None,
    context: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    user_id: str | None = None,
) -> SessionScope:
    """A conversation, identified by (``custom_id``, ``version``). Use as ``with`` or ``async with``::

        with galtea_otel.session(custom_id="conv-42", version="1.4.0", metadata={"user": "u-7"}) as s:
            answer = chat("hello")

    - ``is_production`` is derived (``test_case_id is None``); when given it must agree: ``True`` with a test
      case, or ``False`` without one, raises ``ValueError``.
    - ``test_case_id`` must name a test case registered with ``register_test_cases()``; the session's
      ``context`` is the test case's. Passing ``context=`` too raises ``ValueError`` (one source of truth).
    - ``metadata``: a JSON-serializable mapping (else ``TypeError`` / ``ValueError``).
    - ``user_id``: the end user (``user.id`` and ``galtea.session.user_id`` on the session span and its start
      marker): the session's ``user_id``, filterable with ``sessions list --user``.
    - ``test_case_id`` may also name a test case loaded into the store with ``galtea-otel test-cases load``.

    All these checks run before any span starts, so a refused session records nothing.
    """
    return _scope(custom_id, version, test_case_id, is_production, context, metadata, own_span=True,
                  user_id=user_id)


def continue_session(
    custom_id: str,
    version: str,
    test_case_id: str | None = None,
    is_production: bool | None = None,
    context: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    user_id: str | None = None,
) -> SessionScope:
    """Record this block's spans in a session that outlives it: for apps that serve each user message in its
    own request (its own trace). Use as ``with`` or ``async with``::

        @app.post("/chat/{conversation_id}")
        def chat_endpoint(conversation_id: str, message: str) -> str:
            with galtea_otel.continue_session(custom_id=conversation_id, version="1.4.0"):
                return chat(message)

    Unlike ``session()`` it opens no session span, so leaving the block does not end the session: it stays
    PENDING until ``end_session()`` or until it has been idle for the configured time (30 minutes by default),
    then COMPLETED. An exception leaving the block fails the turn it came from, not the session. It takes the
    same arguments, checked the same way, and announces the session with a start marker.
    """
    return _scope(custom_id, version, test_case_id, is_production, context, metadata, own_span=False,
                  user_id=user_id)


def _scope(
    custom_id: str,
    version: str,
    test_case_id: str | None,
    is_production: bool | None,
    context: str | None,
    metadata: Mapping[str, Any] | None,
    *,
    own_span: bool,
    user_id: str | None = None,
) -> SessionScope:
    """Validate the arguments (before any span starts) and make the scope."""
    custom_id = _required_str("custom_id", custom_id)
    version = _required_str("version", version)
    if test_case_id is not None:
        test_case_id = _required_str("test_case_id", test_case_id)
    if is_production is True and test_case_id is not None:
        raise ValueError("a production session (is_production=True) cannot have a test_case_id")
    if is_production is False and test_case_id is None:
        raise ValueError("a non-production session (is_production=False) requires a test_case_id")
    if user_id is not None:
        user_id = _required_str("user_id", user_id)
    if context is not None and not isinstance(context, str):
        raise TypeError(f"context must be a str, not {type(context).__name__}")
    if test_case_id is not None:
        case = get_test_case(test_case_id)
        if case is None:
            raise ValueError(
                f"unknown test case {test_case_id!r}: register it with galtea_otel.register_test_cases() or load "
                "it into the store with `galtea-otel test-cases load FILE`"
            )
        if context is not None:
            raise ValueError("a non-production session takes its context from its test case: drop context=")
        context = case.context
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, not {type(metadata).__name__}")
    metadata_json = _metadata_json(metadata) if metadata else None
    return SessionScope(custom_id, version, test_case_id, context, dict(metadata), metadata_json, own_span=own_span,
                        user_id=user_id)


def end_session(custom_id: str, version: str, error: str | None = None) -> None:
    """Announce that a session is over: emits a zero-length ``galtea.session.end`` span.

    For sessions without a session span (a web app serving each message in its own request); works inside or
    outside any ``session()`` block. ``error`` marks the session FAILED with that text. Example::

        galtea_otel.end_session("conv-42", "1.4.0")
    """
    custom_id = _required_str("custom_id", custom_id)
    version = _required_str("version", version)
    try:
        stamp = make_stamp(custom_id, version)
        parent = otel_context.set_value(SESSION_KEY, stamp)
        now = time.time_ns()
        marker = current().tracer.start_span(
            END_SPAN_NAME, context=parent, attributes={**stamp, SESSION_EVENT: EVENT_END}, start_time=now
        )
        if error is not None:
            mark_error(marker, str(error))
        marker.end(end_time=now)
    except Exception as exc:
        internal_error("end_session", exc)


def _warn_if_unconfigured(configured: bool) -> None:
    global _warned_unconfigured
    if not configured and not _warned_unconfigured:
        _warned_unconfigured = True
        logger.warning(
            "galtea-otel: session() used before galtea_otel.configure(); spans go to the global tracer "
            "provider without session stamping or export"
        )
