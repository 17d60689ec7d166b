"""``@inference`` and ``span()``: one mechanism for LLM calls and for the other steps of a conversation.

Both return an :class:`Operation`, at once a decorator and a context manager (``with`` / ``async with``).

As a decorator it handles plain functions, ``async def``, generators, async generators, methods, classmethods
and staticmethods (through ``wrapt``). Each call is one span named after ``name`` or the function's qualified
name:

- input (``galtea.span.input``): the bound arguments with defaults applied, ``self`` / ``cls`` dropped; a
  single remaining argument is the input itself, several make a JSON object of name -> value;
- output (``galtea.span.output``): the return value; a returned stream (generator, async generator, OpenAI
  ``Stream``...) is captured as it is consumed (see :mod:`galtea_otel.instrument.streams`);
- an exception sets status ERROR (``"ExcType: message"``), an ``exception`` event and ``galtea.span.error``,
  and propagates unchanged.

As a context manager it yields an :class:`Invocation` on which the code sets input, output and usage itself.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast, overload

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from galtea_otel.attributes import (
    GEN_AI_CACHE_READ_TOKENS,
    GEN_AI_FINISH_REASONS,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    INFERENCE_COST,
    SPAN_INPUT,
    SPAN_OUTPUT,
    SPAN_TYPE,
    SPAN_TYPES,
    TYPE_GENERATION,
    TYPE_SESSION,
)
from galtea_otel.config import Config, current
from galtea_otel.instrument.capture import dict_usage, encode, encode_json_text, input_messages, output_messages
from galtea_otel.instrument.context import INFERENCE_KEY
from galtea_otel.instrument.errors import record_exception
from galtea_otel.instrument.processor import set_text_attribute
from galtea_otel.instrument.streams import (
    AsyncStream,
    StreamState,
    SyncStream,
    is_async_stream,
    is_sync_stream,
)
from galtea_otel.instrument.usage import usage_attributes
from galtea_otel.stats import incr, internal_error

__all__ = ["Invocation", "Operation", "inference", "record_usage", "span"]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("galtea_otel")

# The Context key under which the API keeps the current span, found through the public API (a Context holding
# only a span has that one key): _begin builds the span's Context in one copy.
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))
_PLAIN_RESULTS = (str, int, float, bool, type(None), list, dict, tuple)
_NO_DEFAULT = inspect.Parameter.empty
# The types of the usual first arguments that are not ``self`` / ``cls``: built-in, so no method can be set on them.
_BUILTIN_VALUE_TYPES = frozenset({str, int, float, bool, type(None), bytes, list, dict, tuple})


class _Binder:
    """Maps a call's arguments to the captured input, fast for the common all-positional call."""

    __slots__ = ("defaults", "names", "signature", "simple")

    def __init__(self, fn: Callable[..., Any], drop_first: bool) -> None:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if drop_first and params and params[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            params = params[1:]
        self.signature = signature.replace(parameters=params)
        self.names = tuple(p.name for p in params)
        self.defaults = tuple(p.default for p in params)
        self.simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = self.names
        given = len(args)
        if self.simple and not kwargs and given <= len(names):
            if given == len(names):  # every argument given: no default to look at
                return args[0] if given == 1 else dict(zip(names, args, strict=True))
            missing = self.defaults[given:]
            if not any(default is _NO_DEFAULT for default in missing):
                values = args + missing
                return values[0] if len(names) == 1 else dict(zip(names, values, strict=True))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:  # the call itself will fail the same way; capture what was passed
            return {"args": list(args), "kwargs": kwargs}
        bound.apply_defaults()
        arguments = bound.arguments
        if len(arguments) == 1:
            return next(iter(arguments.values()))
        return dict(arguments)


class _PositionalBinder(_Binder):
    """For callables without a signature."""

    def __init__(self) -> None:
        pass

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) == 1 and not kwargs:
            return args[0]
        return {"args": list(args), "kwargs": kwargs}


_FALLBACK_BINDER = _PositionalBinder()


def _raw_function(fn: Any) -> Any:
    return fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn


class Invocation:
    """One running operation (a span): set its input, output and usage; ended by its ``with`` block."""

    __slots__ = ("_config", "_ended", "_generation", "_token", "span")

    def __init__(self, span: Span, config: Config, token: object, generation: bool = False) -> None:
        self.span = span
        self._config = config
        self._token = token
        self._ended = False
        self._generation = generation

    def set_input(self, value: Any) -> None:
        """Capture ``value`` as the input (unless content capture is off). On an inference, a messages list (or
        an object with ``messages``) records the last user message as the input and the list, normalized, as
        ``gen_ai.input.messages``."""
        if self._config.capture_content:
            capture_input_value(self.span, self._config, value, self._generation)

    def set_output(self, value: Any) -> None:
        """Capture ``value`` as the output (unless content capture is off). On an inference, a chat-completion-
        like value records the reply text as the output, ``gen_ai.output.messages`` and the finish reason."""
        if self._config.capture_content:
            capture_output_value(self.span, self._config, value, self._generation)

    def set_messages(self, input: Any = None, output: Any = None) -> None:
        """Record the conversation as the model saw it: ``input`` the messages sent, ``output`` the messages
        received (a list in any known shape: OpenAI, GenAI parts, Anthropic, LangChain dicts, or a response).
        Sets ``gen_ai.input.messages`` / ``gen_ai.output.messages``, and the input / output text (the last user
        message, the reply) unless ``set_input()`` / ``set_output()`` gave them."""
        if not self._config.capture_content:
            return
        present = getattr(self.span, "attributes", None) or {}
        if input is not None:
            found = input_messages(input if isinstance(input, list) else {"messages": input})
            if found is None:
                found = input_messages(input)
            if found is not None:
                _set_input_messages(self.span, self._config, found, SPAN_INPUT not in present)
        if output is not None:
            reply = output_messages(output)
            if reply is not None:
                _set_output_messages(self.span, self._config, reply, SPAN_OUTPUT not in present)

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)

    def record_usage(self, **usage: Any) -> None:
        """Like :func:`record_usage`, onto this span."""
        _set_usage(self.span, **usage)

    def _end(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                record_exception(self.span, exc)
            self.span.end()
        except Exception as inner:
            internal_error("operation.end", inner)
        otel_context.detach(self._token)  # type: ignore[arg-type]


def capture_input_value(span: Span, config: Config, value: Any, generation: bool) -> None:
    """The input of an operation; on an inference, a messages list gives the user's message and the messages."""
    if generation and type(value) is not str:  # a string is never a messages list
        found = input_messages(value)
        if found is not None:
            _set_input_messages(span, config, found, True)
            return
    set_text_attribute(span, SPAN_INPUT, encode(value, config))


def capture_output_value(span: Span, config: Config, result: Any, generation: bool) -> None:
    """The output of an operation; on an inference, a chat-completion-like value gives the reply text, the
    messages, the finish reason, and model / tokens from a dict's ``usage`` when nothing recorded them."""
    if generation and type(result) is not str:  # nor a chat completion
        if isinstance(result, dict):
            _set_missing(span, dict_usage(result))
        reply = output_messages(result)
        if reply is not None:
            _set_output_messages(span, config, reply, True)
            return
    set_text_attribute(span, SPAN_OUTPUT, encode(result, config))


def _set_missing(span: Span, found: Mapping[str, Any]) -> None:
    if found:
        present = getattr(span, "attributes", None) or {}
        span.set_attributes({k: v for k, v in found.items() if k not in present})


def _set_input_messages(span: Span, config: Config, found: tuple[str | None, list[dict[str, Any]]],
                        with_text: bool) -> None:
    from galtea_otel.translate.messages import dumps

    text, messages = found
    if with_text and text is not None:
        span.set_attribute(SPAN_INPUT, encode(text, config))
    span.set_attribute(GEN_AI_INPUT_MESSAGES, encode_json_text(dumps(messages), config))


def _set_output_messages(span: Span, config: Config,
                         found: tuple[str | None, list[dict[str, Any]], str | None], with_text: bool) -> None:
    from galtea_otel.translate.messages import dumps

    text, messages, finish = found
    if with_text and text is not None:
        span.set_attribute(SPAN_OUTPUT, encode(text, config))
    span.set_attribute(GEN_AI_OUTPUT_MESSAGES, encode_json_text(dumps(messages), config))
    if finish:
        span.set_attribute(GEN_AI_FINISH_REASONS, (finish,))


class Operation:
    """The decorator / context manager returned by :func:`inference` and :func:`span`."""

    def __init__(self, name: str | None, span_type: str, model: str | None, capture_input: bool,
                 capture_output: bool, attributes: Mapping[str, Any] | None) -> None:
        self.name = name
        self.generation = span_type == TYPE_GENERATION
        static: dict[str, Any] = {SPAN_TYPE: span_type}
        if self.generation:
            static[GEN_AI_OPERATION_NAME] = "chat"
        if model is not None:
            static[GEN_AI_REQUEST_MODEL] = model
        if attributes:
            static.update(attributes)
        self.attributes = static
        self.capture_input = capture_input
        self.capture_output = capture_output
        # The open ``with`` blocks per thread / asyncio task: one Operation may be shared by concurrent code.
        self._entered: contextvars.ContextVar[tuple[Invocation, ...]] | None = None

    # -- shared lifecycle ------------------------------------------------------------------------------------

    def _begin(self, name: str, config: Config) -> tuple[Span, otel_context.Context, object]:
        # The current Context read once: the span's parent, and the base of the Context it runs in (one copy
        # holding the span and, on an inference, the INFERENCE_KEY, where set_span_in_context + set_value
        # would make two).
        parent = otel_context.get_current()
        span = config.tracer.start_span(name, context=parent, attributes=self.attributes)
        values = dict(parent)
        values[_SPAN_KEY] = span
        if self.generation:
            values[INFERENCE_KEY] = span
        ctx = otel_context.Context(values)
        return span, ctx, otel_context.attach(ctx)

    def _capture_input(self, span: Span, config: Config, binder: _Binder, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> None:
        try:
            capture_input_value(span, config, binder.bind(args, kwargs), self.generation)
        except Exception as exc:
            internal_error("capture_input", exc)

    def _complete(self, span: Span, ctx: otel_context.Context, config: Config, result: Any) -> Any:
        """End the span with ``result`` as output, or wrap ``result`` when it is a stream (ended later)."""
        try:
            capture = self.capture_output and config.capture_content
            if type(result) not in _PLAIN_RESULTS:
                if inspect.iscoroutine(result):  # a sync callable that returned a coroutine: end when awaited
                    return self._complete_when_awaited(span, ctx, config, result)
                if is_sync_stream(result):
                    return SyncStream(result, StreamState(span, ctx, config, capture, self.generation))
                if is_async_stream(result):
                    return AsyncStream(result, StreamState(span, ctx, config, capture, self.generation))
                if self.generation:
                    found = usage_attributes(result)
                    if found:
                        present = getattr(span, "attributes", None) or {}
                        span.set_attributes({k: v for k, v in found.items() if k not in present})
            if capture:
                capture_output_value(span, config, result, self.generation)
            elif self.generation and isinstance(result, dict):
                _set_missing(span, dict_usage(result))
        except Exception as exc:
            internal_error("capture_output", exc)
        span.end()
        return result

    async def _complete_when_awaited(
        self, span: Span, ctx: otel_context.Context, config: Config, awaitable: Any
    ) -> Any:
        token = otel_context.attach(ctx)
        try:
            result = await awaitable
        except BaseException as exc:
            record_exception(span, exc)
            span.end()
            raise
        finally:
            otel_context.detach(token)
        return self._complete(span, ctx, config, result)

    # -- decorator ------------------------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        raw = _raw_function(fn)
        name = self.name or getattr(raw, "__qualname__", None) or getattr(raw, "__name__", None) or "call"
        binders: dict[bool, _Binder] = {}

        def binder_for(instance: Any) -> _Binder:
            drop_first = instance is not None  # a bound method or classmethod: drop self / cls
            binder = binders.get(drop_first)
            if binder is None:
                try:
                    binder = _Binder(raw, drop_first)
                except (TypeError, ValueError):  # no signature (some builtins): the arguments as given
                    binder = _FALLBACK_BINDER
                binders[drop_first] = binder
            return binder


        def sync_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            config = current()
            span, ctx, token = self._begin(name, config)
            try:
                if self.capture_input and config.capture_content:
                    self._capture_input(span, config, binder_for(instance), args, kwargs)
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                record_exception(span, exc)
                span.end()
                raise
            finally:
                otel_context.detach(token)  # type: ignore[arg-type]
            return self._complete(span, ctx, config, result)

        async def async_wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            config = current()
            span, ctx, token = self._begin(name, config)
            try:
                if self.capture_input and config.capture_content:
                    self._capture_input(span, config, binder_for(instance), args, kwargs)
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                record_exception(span, exc)
                span.end()
                raise
            finally:
                otel_context.detach(token)  # type: ignore[arg-type]
            return self._complete(span, ctx, config, result)

        if inspect.isfunction(fn) and not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
            return cast(F, self._plain_wrapper(fn, name, binder_for))
        wrapper = async_wrapper if inspect.iscoroutinefunction(raw) else sync_wrapper
        return cast(F, wrapt.decorator(wrapper)(fn))

    def _plain_wrapper(self, fn: Callable[..., Any], name: str, binder_for: Callable[[Any], _Binder]) -> Any:
        """A plain function (or ``async def``) around ``fn``: the one Python frame the decorator adds to each call,
        so a recursive decorated function keeps most of its depth (a ``wrapt`` proxy costs two more: its C call
        and the wrapper's own frame). Used for plain functions and methods defined with ``def``; generators,
        classmethod / staticmethod objects and other callables keep the ``wrapt`` proxy. Starting the span is
        the only step outside a guard of its own: when it fails (e.g. a RecursionError at the very bottom of a
        deep recursion), the function runs untraced and the failure is counted."""
        method_name = getattr(fn, "__name__", None)

        def split(args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
            """``(instance, arguments)``: a call through an instance or a class drops ``self`` / ``cls``."""
            if args and method_name is not None:
                first = args[0]
                if type(first) in _BUILTIN_VALUE_TYPES:  # immutable types: none can hold the wrapper
                    return None, args
                for klass in (first if isinstance(first, type) else type(first)).__mro__:
                    found = klass.__dict__.get(method_name)
                    if found is not None:
                        bound = found is wrapper or (isinstance(found, classmethod) and found.__func__ is wrapper)
                        return (first, args[1:]) if bound else (None, args)
            return None, args

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            config = current()
            try:
                span, ctx, token = self._begin(name, config)
            except Exception as exc:
                internal_error("operation.begin", exc)
                return await fn(*args, **kwargs)
            try:
                if self.capture_input and config.capture_content:
                    instance, arguments = split(args)
                    self._capture_input(span, config, binder_for(instance), arguments, kwargs)
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                otel_context.detach(token)  # type: ignore[arg-type]
            return _guarded_complete(self, span, ctx, config, result)

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            config = current()
            try:
                span, ctx, token = self._begin(name, config)
            except Exception as exc:
                internal_error("operation.begin", exc)
                return fn(*args, **kwargs)
            try:
                if self.capture_input and config.capture_content:
                    instance, arguments = split(args)
                    self._capture_input(span, config, binder_for(instance), arguments, kwargs)
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                otel_context.detach(token)  # type: ignore[arg-type]
            return _guarded_complete(self, span, ctx, config, result)

        wrapper: Callable[..., Any] = async_wrapper if inspect.iscoroutinefunction(fn) else sync_wrapper
        return functools.wraps(fn)(wrapper)

    # -- context manager ------------------------------------------------------------------------------------

    def _open(self) -> Invocation:
        config = current()
        name = self.name or ("inference" if self.generation else "span")
        span, _ctx, token = self._begin(name, config)
        invocation = Invocation(span, config, token, self.generation)
        if self._entered is None:
            self._entered = contextvars.ContextVar(f"galtea_otel.operation.{id(self)}")
        self._entered.set((*self._entered.get(()), invocation))
        return invocation

    def _close(self, exc: BaseException | None) -> None:
        entered = self._entered.get(()) if self._entered is not None else ()
        if entered:
            self._entered.set(entered[:-1])  # type: ignore[union-attr]
            entered[-1]._end(exc)

    def __enter__(self) -> Invocation:
        return self._open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close(exc)

    async def __aenter__(self) -> Invocation:
        return self._open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._close(exc)


def _fail(span: Span, exc: BaseException) -> None:
    """Record the application's exception and end the span; nothing raised here replaces ``exc``."""
    try:
        record_exception(span, exc)
        span.end()
    except Exception as inner:  # e.g. a RecursionError at the bottom of a deep recursion
        internal_error("operation.end", inner)


def _guarded_complete(operation: Operation, span: Span, ctx: otel_context.Context, config: Config,
                      result: Any) -> Any:
    try:
        return operation._complete(span, ctx, config, result)
    except Exception as exc:  # the span could not be ended (e.g. no stack left): the result still goes back
        internal_error("operation.end", exc)
        return result


@overload
def inference(fn: F, /) -> F: ...


@overload
def inference(
    fn: None = None, /, *, name: str | None = None, model: str | None = None, capture_input: bool = True,
    capture_output: bool = True, attributes: Mapping[str, Any] | None = None,
) -> Operation: ...


def inference(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, model: str | None = None,
    capture_input: bool = True, capture_output: bool = True, attributes: Mapping[str, Any] | None = None,
) -> Any:
    """An LLM call (a turn of the session): ``galtea.span.type=GENERATION``, ``gen_ai.operation.name=chat``.

    Bare or with arguments, on any kind of callable::

        @galtea_otel.inference
        def chat(prompt: str) -> str: ...

        @galtea_otel.inference(model="gpt-4o-mini")
        async def stream_chat(messages: list[dict]) -> AsyncIterator[str]: ...

    Or as a context manager, setting what it records itself::

        with galtea_otel.inference(name="chat", model="gpt-4o-mini") as inv:
            inv.set_input(prompt)
            inv.set_output(answer := llm(prompt))
            inv.record_usage(input_tokens=12, output_tokens=40)

    ``model`` sets ``gen_ai.request.model``; ``capture_input`` / ``capture_output`` switch capture off for
    this operation (``configure(capture_content=False)`` or ``GALTEA_OTEL_CAPTURE_CONTENT=false`` for all).
    """
    operation = Operation(name, TYPE_GENERATION, model, capture_input, capture_output, attributes)
    return operation if fn is None else operation(fn)


@overload
def span(name: F, /) -> F: ...


@overload
def span(
    name: str | None = None, /, *, type: str = "SPAN", capture_input: bool = True, capture_output: bool =
    True, attributes: Mapping[str, Any] | None = None,
) -> Operation: ...


def span(
    name: str | Callable[..., Any] | None = None, /, *, type: str = "SPAN", capture_input: bool = True,
    capture_output: bool = True, attributes: Mapping[str, Any] | None = None,
) -> Any:
    """A non-LLM step (tool call, retrieval...): a context manager, or a decorator like :func:`inference`::

        with galtea_otel.span("search-docs", type="RETRIEVER") as sp:
            sp.set_output(docs := search(query))

        @galtea_otel.span(type="TOOL")
        def get_weather(city: str) -> dict: ...

    ``type`` is one of TOOL, RETRIEVER, CHAIN, AGENT, EMBEDDING, GUARDRAIL, EVALUATOR, EVENT, SPAN (default);
    GENERATION makes it an inference. An unknown type raises ``ValueError``.
    """
    span_type = type.upper() if isinstance(type, str) else type
    if span_type not in SPAN_TYPES or span_type == TYPE_SESSION:
        allowed = ", ".join(sorted(SPAN_TYPES - {TYPE_SESSION}))
        raise ValueError(f"unknown span type {type!r}: one of {allowed} (use session() for sessions)")
    if callable(name):
        return Operation(None, span_type, None, capture_input, capture_output, attributes)(name)
    return Operation(name, span_type, None, capture_input, capture_output, attributes)


_warned_no_inference = False


def _set_usage(target: Span, *, model: str | None = None, input_tokens: int | None = None,
               output_tokens: int | None = None, cache_read_input_tokens: int | None = None,
               cost: float | None = None) -> bool:
    values: dict[str, Any] = {}
    for key, value in ((GEN_AI_INPUT_TOKENS, input_tokens), (GEN_AI_OUTPUT_TOKENS, output_tokens),
                       (GEN_AI_CACHE_READ_TOKENS, cache_read_input_tokens)):
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            values[key] = value
        else:
            internal_error("record_usage.invalid", message=f"{key}={value!r} is not a non-negative int")
    if cost is not None:
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
            values[INFERENCE_COST] = float(cost)
        else:
            internal_error("record_usage.invalid", message=f"cost={cost!r} is not a non-negative number")
    if model is not None:
        values[GEN_AI_RESPONSE_MODEL] = str(model)
    if values:
        target.set_attributes(values)
    return True


def record_usage(
    *, model: str | None = None, input_tokens: int | None = None, output_tokens: int | None = None,
    cache_read_input_tokens: int | None = None, cost: float | None = None,
) -> bool:
    """Set model, token counts and cost on the current inference span, even from a span nested inside it.

    ``model`` is the model that answered (``gen_ai.response.model``). Returns False (and logs once) when no
    inference is running; invalid values are dropped and counted, never raised.
    """
    global _warned_no_inference
    try:
        target = otel_context.get_value(INFERENCE_KEY)
        if not isinstance(target, Span) or not target.is_recording():
            incr("record_usage.outside_inference")
            if not _warned_no_inference:
                _warned_no_inference = True
                logger.warning("galtea-otel: record_usage() called outside any @inference; ignored")
            return False
        return _set_usage(target, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
                          cache_read_input_tokens=cache_read_input_tokens, cost=cost)
    except Exception as exc:
        internal_error("record_usage", exc)
        return False
