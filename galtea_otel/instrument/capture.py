"""Captured values: serialize -> redact -> truncate, in that order, before anything is set on a span.

Redaction runs on the JSON text (so it sees every secret), truncation last (so the result stays within the limit
and valid JSON). A value much larger than the limit is serialized only up to the limit plus a margin
(:func:`~galtea_otel.instrument.serialize.to_json_bounded`): capturing it costs time in proportion to the limit,
not to the value. The redaction hook then gets that prefix (not valid JSON), and the final cut drops the margin,
so a secret the prefix cuts in two is not kept. Nothing here raises: a failing redaction hook drops the value
(replaced by ``REDACTION_FAILED``) and is counted.

``config.redact`` is the whole redaction in force: ``configure(redact_secrets=True, redact=hook)`` makes it
``chain(secrets(), hook)``. :func:`redact_text` applies it to the plain texts galtea-otel records (error
messages, exception events, the session context).
"""

from __future__ import annotations

from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

from galtea_otel.config import Config
from galtea_otel.instrument.serialize import cut_prefix, to_json_bounded, truncate_json
from galtea_otel.stats import incr, internal_error

__all__ = ["REDACTION_FAILED", "REDACTION_FAILED_TEXT", "dict_usage", "encode", "encode_json_text", "input_messages",
           "output_messages", "redact_text"]

REDACTION_FAILED = '{"galtea.redaction_failed":true}'
REDACTION_FAILED_TEXT = "[REDACTED:redaction_failed]"


def encode(value: Any, config: Config) -> str:
    """The attribute text for a captured value."""
    if type(value) is str and config.redact is None and len(value) * 6 + 2 <= config.max_value_bytes \
            and value.isascii():
        # The common case, what the steps below would give: an ASCII string (no lone surrogate to replace) whose
        # JSON text (at most 6 characters per character: \u00XX) fits the limit, so nothing to redact or cut.
        return encode_basestring(value)
    return _encode(value, config)


def _encode(value: Any, config: Config) -> str:
    """:func:`encode` without its shortcut: serialize (bounded), redact, truncate."""
    text, complete = to_json_bounded(value, config.max_value_bytes)
    if complete:
        return encode_json_text(text, config)
    redact = config.redact
    if redact is not None:
        try:
            redacted = redact(text)
            if not isinstance(redacted, str):
                raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not str")
            text = redacted
        except Exception as exc:
            incr("redaction_failures")
            internal_error("redact", exc)
            return REDACTION_FAILED
    incr("truncations")
    return cut_prefix(text, config.max_value_bytes, len(value) if type(value) is str else None)


def encode_json_text(text: str, config: Config) -> str:
    """Redact and truncate JSON text already serialized."""
    redact = config.redact
    if redact is not None:
        try:
            redacted = redact(text)
            if not isinstance(redacted, str):
                raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not str")
            text = redacted
        except Exception as exc:
            incr("redaction_failures")
            internal_error("redact", exc)
            return REDACTION_FAILED
    text, truncated = truncate_json(text, config.max_value_bytes)
    if truncated:
        incr("truncations")
    return text


def redact_text(text: str, config: Config) -> str:
    """``text`` (plain, not JSON) through the redaction in force; ``REDACTION_FAILED_TEXT`` if the hook fails."""
    redact = config.redact
    if redact is None:
        return text
    try:
        redacted = redact(text)
        if not isinstance(redacted, str):
            raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not str")
        return redacted
    except Exception as exc:
        incr("redaction_failures")
        internal_error("redact", exc)
        return REDACTION_FAILED_TEXT


# --- the content model in process (README, "The content model") -----------------------------------------------------
# Duck-typed: no client library is imported. Each returns None when the value is not a shape it knows, and the
# value is then captured as it is.

Conversation = tuple[str | None, list[dict[str, Any]]]  # the row's text, the normalized messages


# The roles of chat messages in the OpenAI, GenAI, Anthropic, Gemini and LangChain shapes.
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function", "model", "human", "ai"})


def input_messages(value: Any) -> Conversation | None:
    """A messages-list argument: the bound input is a list of ``{"role", ...}`` dicts (a single argument), or an
    object of arguments with a ``messages`` list (OpenAI / GenAI / Anthropic / LangChain dict shapes)."""
    if isinstance(value, dict):
        candidate = value.get("messages")
        system = value.get("system", value.get("instructions"))
    else:
        candidate, system = value, None
    if not isinstance(candidate, list) or not candidate:
        return None
    first = candidate[0]
    if not isinstance(first, Mapping) or not ("role" in first or "type" in first or "lc" in first):
        return None
    if "role" in first and first["role"] not in _CHAT_ROLES:  # a list of records that merely has a "role" field
        return None
    from galtea_otel.translate import messages as M

    normalized = M.normalize(candidate)
    if normalized is None:
        return None
    if isinstance(system, (str, list)):
        normalized = M.with_system(normalized, system)
    return M.user_text(normalized), normalized


def output_messages(result: Any) -> tuple[str | None, list[dict[str, Any]], str | None] | None:
    """A chat-completion-like return value: an OpenAI ``ChatCompletion`` (object or dict with ``choices``), an
    Anthropic-like message (``content`` blocks), or a list of GenAI messages. Returns the reply text, the
    normalized messages and the finish reason."""
    from galtea_otel.translate import messages as M

    if isinstance(result, (dict, list)):
        decoded: Any = result
    else:
        decoded = _response_dict(result)
        if decoded is None:
            return None
    messages = M.from_response(decoded)
    if messages is None or not any(m.get("role") == "assistant" for m in messages):
        return None
    return M.reply_text(messages), messages, M.finish_reason_of(messages)


def _response_dict(result: Any) -> dict[str, Any] | None:
    """The parts of a response object the content model reads, as plain data (attribute access only)."""
    choices = getattr(result, "choices", None)
    if isinstance(choices, list) and choices:
        out = []
        for choice in choices:
            message = getattr(choice, "message", None)
            if message is None:
                return None
            calls = [{"id": getattr(c, "id", None),
                      "function": {"name": getattr(getattr(c, "function", None), "name", None),
                                   "arguments": getattr(getattr(c, "function", None), "arguments", None)}}
                     for c in (getattr(message, "tool_calls", None) or ())]
            out.append({"message": {"role": getattr(message, "role", None) or "assistant",
                                    "content": getattr(message, "content", None), "tool_calls": calls},
                        "finish_reason": getattr(choice, "finish_reason", None)})
        return {"choices": out}
    content = getattr(result, "content", None)
    if isinstance(content, list) and getattr(result, "role", None) == "assistant":
        blocks = []
        for block in content:
            kind = getattr(block, "type", None)
            if kind == "text":
                blocks.append({"type": "text", "text": getattr(block, "text", None)})
            elif kind == "tool_use":
                blocks.append({"type": "tool_use", "id": getattr(block, "id", None),
                               "name": getattr(block, "name", None), "input": getattr(block, "input", None)})
        return {"role": "assistant", "content": blocks, "stop_reason": getattr(result, "stop_reason", None)}
    return None


def dict_usage(result: Mapping[str, Any]) -> dict[str, Any]:
    """Model and token counts from a response given as a dict (``model``, ``usage``), as ``gen_ai.*`` keys."""
    from galtea_otel.attributes import (
        GEN_AI_CACHE_READ_TOKENS,
        GEN_AI_INPUT_TOKENS,
        GEN_AI_OUTPUT_TOKENS,
        GEN_AI_RESPONSE_MODEL,
    )

    found: dict[str, Any] = {}
    model = result.get("model")
    if isinstance(model, str) and model:
        found[GEN_AI_RESPONSE_MODEL] = model
    usage = result.get("usage")
    if isinstance(usage, Mapping):
        for key, names in ((GEN_AI_INPUT_TOKENS, ("prompt_tokens", "input_tokens")),
                           (GEN_AI_OUTPUT_TOKENS, ("completion_tokens", "output_tokens")),
                           (GEN_AI_CACHE_READ_TOKENS, ("cache_read_input_tokens",))):
            for name in names:
                count = usage.get(name)
                if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                    found[key] = count
                    break
        details = usage.get("prompt_tokens_details")
        if GEN_AI_CACHE_READ_TOKENS not in found and isinstance(details, Mapping):
            cached = details.get("cached_tokens")
            if isinstance(cached, int) and not isinstance(cached, bool) and cached >= 0:
                found[GEN_AI_CACHE_READ_TOKENS] = cached
    return found
