"""Token usage and model, from ``record_usage()`` or sniffed from an LLM client's response object.

Sniffing is duck-typed (no client library imported): a response or stream chunk with ``model`` and ``usage``
(OpenAI: ``prompt_tokens`` / ``completion_tokens`` / ``prompt_tokens_details.cached_tokens``; Anthropic:
``input_tokens`` / ``output_tokens`` / ``cache_read_input_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from galtea_otel.attributes import (
    GEN_AI_CACHE_READ_TOKENS,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_RESPONSE_MODEL,
)

__all__ = ["usage_attributes"]

_SKIP = (str, bytes, int, float, bool, list, tuple, dict, set, frozenset, type(None), Mapping)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_attributes(response: Any) -> dict[str, Any]:
    """The ``gen_ai.*`` usage attributes a response object carries (empty when it carries none)."""
    if isinstance(response, _SKIP):
        return {}
    found: dict[str, Any] = {}
    model = getattr(response, "model", None)
    if isinstance(model, str) and model:
        found[GEN_AI_RESPONSE_MODEL] = model
    usage = getattr(response, "usage", None)
    if usage is None or isinstance(usage, _SKIP):
        return found
    for key, names in (
        (GEN_AI_INPUT_TOKENS, ("prompt_tokens", "input_tokens")),
        (GEN_AI_OUTPUT_TOKENS, ("completion_tokens", "output_tokens")),
        (GEN_AI_CACHE_READ_TOKENS, ("cache_read_input_tokens",)),
    ):
        for name in names:
            value = _count(getattr(usage, name, None))
            if value is not None:
                found[key] = value
                break
    if GEN_AI_CACHE_READ_TOKENS not in found:
        cached = _count(getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None))
        if cached is not None:
            found[GEN_AI_CACHE_READ_TOKENS] = cached
    return found
