"""Streams returned by an instrumented function: captured as consumed, their span ended exactly once.

A returned generator, async generator, or any object with ``__next__`` / ``__anext__`` (an OpenAI
``Stream``...) is wrapped in a transparent proxy (``wrapt.ObjectProxy``: ``stream.response`` and the like
still work). The span ends once, on whichever comes first: exhaustion, an exception, ``close()`` /
``aclose()``, the end of a ``with`` block on the stream, or garbage collection (a ``for`` loop left by
``break`` drops the stream). When it ends before exhaustion, ``galtea.span.abandoned`` is set; the output is
what was consumed so far.

Rolling context: the span's Context is attached around each step (``next()``, ``send()``...) and detached
before the value is handed back, so spans created in a generator's body are children of its span and no
Context stays attached across a ``yield``.

Output: ``str`` chunks are concatenated; chunks with ``.choices[i].delta.content`` (OpenAI style) give their
concatenated text (and ``model`` / ``usage`` when present); anything else is a JSON list of the chunks. The
kind is decided by the first chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from galtea_otel.attributes import SPAN_ABANDONED, SPAN_OUTPUT
from galtea_otel.config import Config
from galtea_otel.instrument.capture import encode
from galtea_otel.instrument.errors import record_exception
from galtea_otel.instrument.usage import usage_attributes
from galtea_otel.stats import internal_error

__all__ = ["AsyncStream", "StreamState", "SyncStream", "is_async_stream", "is_sync_stream"]

if TYPE_CHECKING:
    _Proxy = wrapt.ObjectProxy[Any]
else:  # wrapt < 2 proxies are not subscriptable at runtime
    _Proxy = wrapt.ObjectProxy

_NOT_STREAMS = (str, bytes, bytearray, memoryview, dict, list, tuple, set, frozenset, Mapping)
_MAX_ITEMS = 10_000


def is_sync_stream(value: Any) -> bool:
    return hasattr(type(value), "__next__") and not isinstance(value, _NOT_STREAMS)


def is_async_stream(value: Any) -> bool:
    return hasattr(type(value), "__anext__") and not isinstance(value, _NOT_STREAMS)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _delta_text(chunk: Any) -> str:
    pieces = []
    for choice in _get(chunk, "choices") or ():
        content = _get(_get(choice, "delta"), "content")
        if isinstance(content, str):
            pieces.append(content)
    return "".join(pieces)


class StreamState:
    """What a stream proxy shares with its finalizer: the span, the output so far, whether it has ended."""

    __slots__ = ("capture", "char_limit", "config", "ctx", "ended", "generation", "items", "mode", "parts",
                 "size", "span")

    def __init__(self, span: Span, ctx: otel_context.Context, config: Config, capture: bool,
                 generation: bool) -> None:
        self.span = span
        self.ctx = ctx
        self.config = config
        self.capture = capture
        self.generation = generation
        self.ended = False
        self.mode: str | None = None  # "text", "openai" or "items", from the first chunk
        self.parts: list[str] = []
        self.items: list[Any] = []
        self.size = 0
        self.char_limit = 4 * config.max_value_bytes  # beyond this, truncation is certain: stop keeping text

    def add(self, chunk: Any) -> None:
        try:
            mode = self.mode
            if mode is None:
                if isinstance(chunk, str):
                    mode = "text"
                elif _get(chunk, "choices") is not None:
                    mode = "openai"
                else:
                    mode = "items"
                self.mode = mode
            if mode != "text" and self.generation:
                found = usage_attributes(chunk)
                if found:
                    self.span.set_attributes(found)
            if not self.capture:
                return
            if mode == "items":
                if len(self.items) < _MAX_ITEMS:
                    self.items.append(chunk)
                return
            if mode == "text":
                piece = chunk if isinstance(chunk, str) else str(chunk)
            else:
                piece = _delta_text(chunk)
            if piece and self.size < self.char_limit:
                self.parts.append(piece)
                self.size += len(piece)
        except Exception as exc:
            internal_error("stream.chunk", exc)

    def finish(self, abandoned: bool, exc: BaseException | None = None) -> None:
        """End the span (once): output so far, the abandoned flag, the error if any."""
        if self.ended:
            return
        self.ended = True
        try:
            span = self.span
            if exc is not None:
                record_exception(span, exc)
            if self.capture:
                output: Any = self.items if self.mode == "items" else "".join(self.parts)
                span.set_attribute(SPAN_OUTPUT, encode(output, self.config))
            if abandoned:
                span.set_attribute(SPAN_ABANDONED, True)
            span.end()
        except Exception as inner:
            internal_error("stream.finish", inner)
        self.parts = []
        self.items = []


class SyncStream(_Proxy):
    """A captured iterator or generator (see the module docstring)."""

    def __init__(self, wrapped: Any, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_state = state

    def _self_step(self, method: str, *args: Any) -> Any:
        state: StreamState = self._self_state
        token = otel_context.attach(state.ctx)
        try:
            item = getattr(self.__wrapped__, method)(*args)
        except StopIteration:
            state.finish(abandoned=False)
            raise
        except BaseException as exc:
            state.finish(abandoned=False, exc=exc)
            raise
        finally:
            otel_context.detach(token)
        state.add(item)
        return item

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        return self._self_step("__next__")

    def send(self, value: Any) -> Any:
        return self._self_step("send", value)

    def throw(self, *args: Any) -> Any:
        return self._self_step("throw", *args)

    def close(self) -> None:
        state: StreamState = self._self_state
        close = getattr(self.__wrapped__, "close", None)
        try:
            if close is not None:
                token = otel_context.attach(state.ctx)
                try:
                    close()
                finally:
                    otel_context.detach(token)
        finally:
            state.finish(abandoned=True)

    def __enter__(self) -> Any:
        enter = getattr(self.__wrapped__, "__enter__", None)
        result = enter() if enter is not None else self
        return self if result is self.__wrapped__ else result

    def __exit__(self, *exc_info: Any) -> Any:
        exit_ = getattr(self.__wrapped__, "__exit__", None)
        try:
            return exit_(*exc_info) if exit_ is not None else None
        finally:
            self._self_state.finish(abandoned=True)

    def __del__(self) -> None:
        with contextlib.suppress(BaseException):  # never raise from a finalizer
            self._self_state.finish(abandoned=True)


class AsyncStream(_Proxy):
    """A captured async iterator or async generator (see the module docstring)."""

    def __init__(self, wrapped: Any, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_state = state

    async def _self_step(self, method: str, *args: Any) -> Any:
        state: StreamState = self._self_state
        token = otel_context.attach(state.ctx)
        try:
            item = await getattr(self.__wrapped__, method)(*args)
        except StopAsyncIteration:
            state.finish(abandoned=False)
            raise
        except BaseException as exc:
            state.finish(abandoned=False, exc=exc)
            raise
        finally:
            otel_context.detach(token)
        state.add(item)
        return item

    def __aiter__(self) -> AsyncStream:
        return self

    def __anext__(self) -> Any:
        return self._self_step("__anext__")

    def asend(self, value: Any) -> Any:
        return self._self_step("asend", value)

    def athrow(self, *args: Any) -> Any:
        return self._self_step("athrow", *args)

    async def aclose(self) -> None:
        state: StreamState = self._self_state
        aclose = getattr(self.__wrapped__, "aclose", None) or getattr(self.__wrapped__, "close", None)
        try:
            if aclose is not None:
                token = otel_context.attach(state.ctx)
                try:
                    result = aclose()
                    if hasattr(result, "__await__"):
                        await result
                finally:
                    otel_context.detach(token)
        finally:
            state.finish(abandoned=True)

    async def __aenter__(self) -> Any:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        result = await enter() if enter is not None else self
        return self if result is self.__wrapped__ else result

    async def __aexit__(self, *exc_info: Any) -> Any:
        exit_ = getattr(self.__wrapped__, "__aexit__", None)
        try:
            return await exit_(*exc_info) if exit_ is not None else None
        finally:
            self._self_state.finish(abandoned=True)

    def __del__(self) -> None:
        with contextlib.suppress(BaseException):  # never raise from a finalizer
            self._self_state.finish(abandoned=True)
