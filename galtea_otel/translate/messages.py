"""The conversation content model: every producer's messages in one normalized shape (README, "The content model").

The shape is the OpenTelemetry GenAI ``gen_ai.input.messages`` / ``gen_ai.output.messages`` JSON schema: a list of
``{"role": "system" | "user" | "assistant" | "tool", "parts": [...]}`` with parts ``{"type": "text", "content"}``,
``{"type": "tool_call", "id", "name", "arguments"}``, ``{"type": "tool_call_response", "id", "response"}`` (other
part types are kept as they come); an output message may carry ``finish_reason``.

Pure functions over decoded JSON (objects are ``dict``: an ``isinstance(x, dict)`` test costs a fraction of an
ABC ``Mapping`` one, which mattered per span) and attribute mappings, no third-party import. Each reader returns
None when the value is not a form it knows, so the caller keeps the value as it came.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "Message", "assistant_output", "dumps", "finish_reason_of", "from_indexed", "from_request", "from_response",
    "json_encoder",
    "loads", "normalize", "reply_text", "system_message", "tool_arguments", "tool_result", "user_text",
]

Message = dict[str, Any]

_ROLES = {
    "user": "user", "human": "user", "system": "system", "developer": "system", "assistant": "assistant",
    "ai": "assistant", "model": "assistant", "bot": "assistant", "tool": "tool", "function": "tool",
    "chat": "user", "generic": "user",
}
# LangChain serialized message classes (``{"lc": 1, "id": [..., "HumanMessage"], "kwargs": {...}}``).
_LC_CLASSES = {
    "HumanMessage": "user", "HumanMessageChunk": "user", "AIMessage": "assistant", "AIMessageChunk": "assistant",
    "SystemMessage": "system", "SystemMessageChunk": "system", "ToolMessage": "tool", "ToolMessageChunk": "tool",
    "FunctionMessage": "tool", "ChatMessage": "user",
}
_TEXT_TYPES = frozenset({"text", "input_text", "output_text", "message_content_text"})


def loads(text: str | None) -> Any:
    """Decoded JSON when ``text`` looks like a JSON object or array (no parse otherwise), else None."""
    if not text:
        return None
    head = text[:1]
    if head not in "[{":
        stripped = text.lstrip()
        head = stripped[:1]
        if not head or head not in "[{":
            return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def json_encoder(**options: Any) -> Callable[[Any], str]:
    """``json.JSONEncoder(**options).encode`` for dicts and lists, made once: ``encode`` builds its C encoder anew
    on every call (about half of its cost on a small object). The C encoder is made without ``check_circular``:
    nothing decoded from a span can hold itself, and no state is shared between threads; a value that did would
    raise RecursionError instead of ValueError. Where the C encoder is missing or not the one known (another
    Python), the plain ``encode``."""
    encoder = json.JSONEncoder(**options)
    plain = encoder.encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return plain
    try:
        iterencode = make(None, encoder.default, json.encoder.encode_basestring_ascii if encoder.ensure_ascii
                          else json.encoder.encode_basestring, None, encoder.key_separator, encoder.item_separator,
                          encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
        sample = {"b": [1, 2.5, "é\u2028", None, True, {"a": ()}], "a": "x"}
        if "".join(iterencode(sample, 0)) != plain(sample):
            return plain
    except (TypeError, ValueError):
        return plain

    def encode(value: Any) -> str:
        if isinstance(value, (dict, list)):
            return "".join(iterencode(value, 0))
        return plain(value)

    return encode


# Made once: json.dumps with options builds an encoder per call.
_COMPACT = json_encoder(ensure_ascii=False, separators=(",", ":"), default=str)


def dumps(messages: list[Message]) -> str:
    """Compact JSON text of normalized messages."""
    return _COMPACT(messages)


# --- parts ----------------------------------------------------------------------------------------------------------

def _arguments(value: Any) -> Any:
    """Tool-call arguments as an object when they are a JSON object's text (OpenAI sends them as text)."""
    if isinstance(value, str) and value[:1] == "{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _text_of(content: Any) -> str | None:
    """Plain text from a content value: a string, or a list of text parts of any convention."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [t for item in content if (t := _part_text(item)) is not None]
        return "\n".join(texts) if texts else None
    if isinstance(content, dict):
        return _part_text(content)
    return None


def _part_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return None
    inner = item.get("message_content")  # OpenInference: contents.{j}.message_content.{type,text}
    if isinstance(inner, dict):
        item = inner
    kind = item.get("type")
    if kind is None or (isinstance(kind, str) and kind in _TEXT_TYPES):
        for key in ("text", "content"):
            value = item.get(key)
            if isinstance(value, str):
                return value
    return None


def _parts(content: Any) -> list[dict[str, Any]]:
    """Normalized parts from a message's content (a string or a list of parts in any known convention)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return [{"type": "text", "content": json.dumps(content, ensure_ascii=False, default=str)}]
    parts: list[dict[str, Any]] = []
    for item in content:
        part = _part(item)
        if part is not None and not (part.get("type") == "text" and part.get("content") == ""):  # empty text: none
            parts.append(part)
    return parts


def _part(item: Any) -> dict[str, Any] | None:
    if isinstance(item, str):
        return {"type": "text", "content": item}
    if not isinstance(item, dict):
        return None
    inner = item.get("message_content")
    if isinstance(inner, dict):
        item = inner
    kind = item.get("type")
    if not (kind is None or isinstance(kind, str)):  # a list or an object for a type: a part of no known kind
        return dict(item)
    if kind is None or kind in _TEXT_TYPES:
        text = _part_text(item)
        return {"type": "text", "content": text} if text is not None else dict(item)
    if kind == "tool_call":  # GenAI already (pydantic-ai gives the arguments as JSON text)
        part = dict(item)
        if isinstance(part.get("arguments"), str):
            part["arguments"] = _arguments(part["arguments"])
        return part
    if kind == "tool_call_response":
        part = dict(item)
        if "response" not in part and "result" in part:  # pydantic-ai writes "result"
            part["response"] = part.pop("result")
        return part
    if kind in ("tool-call", "tool_use", "function_call"):  # Vercel, Anthropic, OpenAI Responses
        return _tool_call(item.get("toolCallId", item.get("call_id", item.get("id"))),
                          item.get("toolName", item.get("name")),
                          item.get("input", item.get("args", item.get("arguments"))))
    if kind in ("tool-result", "tool_result", "function_call_output"):
        response = item.get("output", item.get("result", item.get("content")))
        if isinstance(response, dict) and "value" in response and response.get("type") in (
                "json", "text", "error-text", "error-json", "content"):  # Vercel v5 tool output
            response = response["value"]
        return {"type": "tool_call_response",
                "id": item.get("toolCallId", item.get("tool_use_id", item.get("call_id", item.get("id")))),
                "response": response}
    return dict(item)


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": _arguments(arguments)}


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls`` ({id, function: {name, arguments}}), OpenInference (``tool_call`` nested), LangChain
    ({id, name, args}), OpenLLMetry flattened ({id, name, arguments}), Vercel ({toolCallId, toolName, args})."""
    if not isinstance(calls, list):
        return []
    parts = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        inner = call.get("tool_call")
        if isinstance(inner, dict):
            call = inner
        function = call.get("function")
        if isinstance(function, dict):
            parts.append(_tool_call(call.get("id"), function.get("name"), function.get("arguments")))
        else:
            parts.append(_tool_call(call.get("id", call.get("toolCallId")), call.get("name", call.get("toolName")),
                                    call.get("arguments", call.get("args", call.get("input")))))
    return parts


# --- messages -------------------------------------------------------------------------------------------------------

def _message(item: Any, given_role: Any = None) -> Message | None:
    """One message of any known convention, normalized; None when ``item`` is not a message. ``given_role``: the
    role an envelope around ``item`` named (it beats ``item``'s own)."""
    if not isinstance(item, dict):
        return None
    if item.get("lc") is not None and isinstance(item.get("kwargs"), dict):  # LangChain serialized
        ident = item.get("id")
        role = _LC_CLASSES.get(ident[-1]) if isinstance(ident, list) and ident else None
        kwargs = item["kwargs"]
        return _message(kwargs, role or kwargs.get("role") or kwargs.get("type"))
    kind = item.get("type")
    if given_role is None:
        data = item.get("data")
        if data is not None and isinstance(data, dict) and "content" not in item and isinstance(kind, str) \
                and kind in _ROLES:
            return _message(data, kind)  # LangChain's messages_to_dict form: {"type": "human", "data": {...}}
        if "role" not in item and kind in ("function_call", "function_call_output"):  # OpenAI Responses items
            part = _part(item)
            return {"role": "assistant" if kind == "function_call" else "tool", "parts": [part] if part else []}
    raw_role = given_role if given_role is not None else item.get("role")
    if raw_role is None and isinstance(kind, str) and kind in _ROLES:  # LangChain message dicts (type: human...)
        raw_role = kind
    if not isinstance(raw_role, str):
        return None
    role = _ROLES.get(raw_role)
    if role is None:
        lowered = raw_role.lower()
        role = _ROLES.get(lowered, lowered)
    if "parts" in item and isinstance(item["parts"], list):  # GenAI
        message: Message = {"role": role, "parts": _parts(item["parts"])}
    else:
        content = item.get("content")
        if content is None and "contents" in item:  # OpenInference multi-part content
            content = item["contents"]
        if role == "tool" and not _has_typed_parts(content):
            call_id = item.get("tool_call_id", item.get("toolCallId", item.get("id")))
            parts = [{"type": "tool_call_response", "id": call_id, "response": content}]
        elif isinstance(content, str):  # the common case, without a call
            parts = [{"type": "text", "content": content}] if content else []
        else:
            parts = _parts(content)
        calls = item.get("tool_calls") or item.get("toolCalls")
        if calls:
            parts += _tool_calls(calls)
        function_call = item.get("function_call")  # OpenAI legacy
        if function_call is not None and isinstance(function_call, dict):
            parts.append(_tool_call(None, function_call.get("name"), function_call.get("arguments")))
        message = {"role": role, "parts": parts}
    first = message["parts"][0] if role == "user" and message["parts"] else None
    if first is not None and first.get("type") == "tool_call_response" and _only_tool_results(message["parts"]):
        message["role"] = "tool"  # tool results sent back in a user message (pydantic-ai, Anthropic): the tool's
    reason = item.get("finish_reason")
    if isinstance(reason, str) and reason:
        message["finish_reason"] = reason
    return message


def _only_tool_results(parts: list[dict[str, Any]]) -> bool:
    return bool(parts) and all(part.get("type") == "tool_call_response" for part in parts)


def _has_typed_parts(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(p, dict) and "type" in p for p in content)


def normalize(items: Any) -> list[Message] | None:
    """A list of messages of any known convention, normalized; None unless every item is a message (a list of
    lists, LangChain's batch form ``[[...]]``, is flattened)."""
    if isinstance(items, list) and items and isinstance(items[0], list) and all(isinstance(i, list) for i in items):
        items = [m for batch in items for m in batch]
    if not isinstance(items, list) or not items:
        return None
    messages = []
    for item in items:
        if type(item) is not dict and isinstance(item, Mapping):  # an in-process caller's own mapping type
            item = dict(item)
        if isinstance(item, dict) and "role" not in item and item.get("type") == "reasoning":
            continue  # OpenAI Responses reasoning items: not a message of the conversation
        message = _message(item)
        if message is None:
            return None
        if message["parts"] or "finish_reason" in message:  # a message with nothing in it (a failed call's
            messages.append(message)                         # empty reply) is left out
    return messages or None


def system_message(instructions: Any) -> Message | None:
    """A leading system message from ``gen_ai.system_instructions`` (parts or text) or a request's ``system``."""
    if instructions is None or instructions == "":
        return None
    if isinstance(instructions, str):
        decoded = loads(instructions)
        if isinstance(decoded, (list, dict)):
            instructions = decoded
    parts = _parts(instructions)
    return {"role": "system", "parts": parts} if parts else None


def with_system(messages: list[Message], instructions: Any) -> list[Message]:
    """``messages`` with the system instructions first (unless a system message already leads)."""
    system = system_message(instructions)
    if system is None or (messages and messages[0].get("role") == "system"):
        return messages
    return [system, *messages]


def from_request(value: Any) -> list[Message] | None:
    """The messages sent, from a list of messages or a request / state object: ``{"messages": [...]}`` (OpenAI,
    Anthropic with ``system``, LangChain state), OpenAI Responses ``{"input": ..., "instructions": ...}``, the
    Vercel AI SDK's ``ai.prompt`` (``{"system", "prompt" | "messages"}``)."""
    if isinstance(value, list):
        return normalize(value)
    if not isinstance(value, dict):
        return None
    system = value.get("system", value.get("instructions"))
    for key in ("messages", "input", "prompt"):
        if key not in value:
            continue
        inner = value[key]
        if isinstance(inner, str):
            messages: list[Message] | None = [{"role": "user", "parts": [{"type": "text", "content": inner}]}]
        else:
            messages = normalize(inner)
            if messages is None and isinstance(inner, dict):  # {"input": {"messages": [...]}}
                messages = from_request(inner)
        if messages is not None:
            return with_system(messages, system)
    if "role" in value:
        single = _message(value)
        return [single] if single is not None else None
    return None


def from_response(value: Any) -> list[Message] | None:
    """The messages received, from a list of messages or a response object: OpenAI ``{"choices": [...]}``,
    Responses ``{"output": [...]}``, Anthropic ``{"role": "assistant", "content": [...], "stop_reason"}``,
    LangChain ``{"generations": [[...]]}`` and state ``{"messages": [...]}``."""
    if isinstance(value, list):
        return normalize(value) or _responses(value)
    if not isinstance(value, dict):
        return None
    choices = value.get("choices")
    if isinstance(choices, list) and choices:
        messages = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            message = _message(choice.get("message") or choice.get("delta") or {"role": "assistant",
                                                                                   "content": choice.get("text")})
            if message is None:
                continue
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                message["finish_reason"] = reason
            messages.append(message)
        return messages or None
    output = value.get("output")
    if isinstance(output, list):
        items = normalize(output)
        if items is not None:
            return _merge_assistant(items, value.get("status") if value.get("status") != "completed" else None)
    if isinstance(output, str) and len(value) <= 3:  # LangChain's AgentExecutor: {"input": .., "output": ..}
        return [{"role": "assistant", "parts": [{"type": "text", "content": output}]}]
    generations = value.get("generations")
    if isinstance(generations, list):
        flat = [g for batch in generations for g in (batch if isinstance(batch, list) else [batch])]
        messages = []
        for generation in flat:
            if not isinstance(generation, dict):
                continue
            message = _message(generation.get("message")) if generation.get("message") else None
            if message is None and isinstance(generation.get("text"), str):
                message = {"role": "assistant", "parts": [{"type": "text", "content": generation["text"]}]}
            info = generation.get("generation_info")
            if message is not None and isinstance(info, dict) and isinstance(info.get("finish_reason"), str):
                message["finish_reason"] = info["finish_reason"]
            if message is not None:
                messages.append(message)
        return messages or None
    if "messages" in value:
        return normalize(value["messages"])
    if "role" in value or isinstance(value.get("content"), list):
        message = _message({"role": "assistant", **value})
        if message is None:
            return None
        reason = value.get("stop_reason")
        if isinstance(reason, str) and reason:
            message["finish_reason"] = reason
        return [message]
    return None


def _responses(items: list[Any]) -> list[Message] | None:
    """The messages of a list of response objects (openai-agents records a streamed generation as ``[Response]``)
    or of LangGraph commands (``[{"update": {"messages": [...]}, "goto": ...}]``, a node's output); None unless
    every item gives some."""
    messages: list[Message] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        update = item.get("update")
        found = from_response(update if isinstance(update, dict) else item)
        if found is None:
            return None
        messages += found
    return messages or None


def _merge_assistant(messages: list[Message], reason: Any) -> list[Message]:
    """Consecutive assistant items (Responses: a message item, then function_call items) as one message."""
    merged: list[Message] = []
    for message in messages:
        if merged and message["role"] == "assistant" and merged[-1]["role"] == "assistant":
            merged[-1]["parts"] = merged[-1]["parts"] + message["parts"]
        else:
            merged.append(message)
    if isinstance(reason, str) and merged:
        merged[-1].setdefault("finish_reason", reason)
    return merged


def assistant_output(text: str | None, tool_calls: Any, finish_reason: str | None) -> list[Message] | None:
    """The reply of a Vercel AI SDK step: ``ai.response.text``, ``ai.response.toolCalls`` (JSON list text)."""
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
    if isinstance(tool_calls, str):
        tool_calls = loads(tool_calls)
    parts += _tool_calls(tool_calls)
    if not parts:
        return None
    message: Message = {"role": "assistant", "parts": parts}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return [message]


# --- flattened attributes -------------------------------------------------------------------------------------------

# Parsed keys of flattened messages, per prefix: key -> (message index, path), or None when it is not one. The
# same keys come back span after span (``llm.input_messages.3.message.content``), so each is parsed once; bounded.
_KEYS: dict[str, dict[str, tuple[int, tuple[str, ...]] | None]] = {}
_KEYS_MAX = 20_000
_MISSING: Any = object()


def _parse_key(key: str, size: int) -> tuple[int, tuple[str, ...]] | None:
    index, _, path = key[size:].partition(".")
    if not index.isdigit() or not path:
        return None
    if path.startswith("message."):
        path = path[8:]
    return int(index), tuple(path.split("."))


def from_indexed(attrs: Mapping[str, Any], prefix: str) -> list[Message] | None:
    """Messages flattened into attributes, ``{prefix}{i}.{path}`` (OpenInference ``llm.input_messages.0.message.
    role``, ``...message.tool_calls.0.tool_call.function.name``; OpenLLMetry ``gen_ai.prompt.0.content``), rebuilt
    as nested objects (numeric path segments become lists) and normalized."""
    cache = _KEYS.get(prefix)
    if cache is None:
        cache = _KEYS[prefix] = {}
    size = len(prefix)
    root: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        parsed = cache.get(key, _MISSING)
        if parsed is _MISSING:
            parsed = _parse_key(key, size)
            if len(cache) < _KEYS_MAX:
                cache[key] = parsed
        if parsed is None:
            continue
        index, path = parsed
        node = root.get(index)
        if node is None:
            node = root[index] = {}
        if isinstance(value, tuple):
            value = list(value)
        if len(path) == 1:
            node[path[0]] = value
        else:
            _put(node, path, value)
    if not root:
        return None
    # A message whose role was lost (the SDK's attribute limit evicts the oldest keys: a long history loses its
    # head first) is left out rather than failing the whole list.
    items = [item for item in (_lists(root[i]) for i in sorted(root)) if "role" in item or "type" in item]
    if not items:
        return None
    for item in items:  # OpenLLMetry: content may be the JSON text of a parts list
        content = item.get("content")
        if isinstance(content, str) and content[:1] == "[":
            decoded = loads(content)
            if isinstance(decoded, list) and all(isinstance(p, dict) and "type" in p for p in decoded):
                item["content"] = decoded
    return normalize(items)


def _put(node: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for step in path[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    node[path[-1]] = value


def _lists(node: dict[str, Any]) -> Any:
    """Dicts whose keys are all digits become lists in index order (values that are not dicts are leaves)."""
    if node and next(iter(node)).isdigit() and all(k.isdigit() for k in node):
        return [_lists(v) if isinstance(v, dict) else v for v in (node[k] for k in sorted(node, key=int))]
    return {k: _lists(v) if isinstance(v, dict) else v for k, v in node.items()}


# --- reading the model ----------------------------------------------------------------------------------------------

def _texts(message: Message) -> str | None:
    texts = [p["content"] for p in message.get("parts", ())
             if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("content"), str)]
    return "\n".join(texts) if texts else None


def user_text(messages: Iterable[Message]) -> str | None:
    """The text of the last user message that has text (tool results sent back as user messages are skipped)."""
    found = None
    for message in messages:
        if message.get("role") == "user":
            text = _texts(message)
            if text is not None:
                found = text
    return found


def reply_text(messages: list[Message]) -> str | None:
    """The text of the last assistant message; None when it holds only tool calls."""
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return _texts(message)
    return None


def finish_reason_of(messages: list[Message]) -> str | None:
    for message in reversed(messages):
        reason = message.get("finish_reason")
        if isinstance(reason, str) and reason:
            return reason
    return None


# (keys the JSON object must have, keys it may have besides when they are empty (None: any keys), the field that
# is the value): the conventions table's TOOL_INPUT_ENVELOPES / TOOL_OUTPUT_ENVELOPES.
Envelope = tuple[frozenset[str], frozenset[str] | None, str]


def _unwrap(text: str, envelopes: tuple[Envelope, ...]) -> tuple[bool, Any]:
    """The field of the first envelope that the JSON object ``text`` is, if any (no parse unless a field's name
    occurs in the text)."""
    if text[:1] != "{":
        return False, None
    for _, _, field in envelopes:
        if '"' + field + '"' in text:
            break
    else:
        return False, None
    decoded = loads(text)
    if not isinstance(decoded, dict):
        return False, None
    keys = decoded.keys()
    for required, others, field in envelopes:
        if required <= keys and (others is None or all(
                key in required or (key in others and not decoded[key]) for key in keys)):
            return True, decoded[field]
    return False, None


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def tool_arguments(text: str, envelopes: tuple[Envelope, ...]) -> str:
    """A tool span's input as the call's arguments: a framework's envelope around them (LlamaIndex's
    ``{"kwargs": {...}}``) is taken off; anything else is kept as it is."""
    found, value = _unwrap(text, envelopes)
    return _json_text(value) if found else text


def tool_result(text: str, envelopes: tuple[Envelope, ...]) -> tuple[str, Any]:
    """A tool span's result as the tool returned it, and the tool call id when the result names it: a LangChain
    ``ToolMessage`` (serialized, as ``messages_to_dict`` writes it, or as a plain dict) becomes its content, a
    framework's envelope (LlamaIndex's ``ToolOutput``) its result field; anything else is kept as it is."""
    if '"tool"' in text or "ToolMessage" in text:
        decoded = loads(text)
        if isinstance(decoded, dict):
            message = _message(decoded)
            if message is not None and message["role"] == "tool":
                inner = decoded.get("kwargs", decoded.get("data", decoded))
                if isinstance(inner, dict) and inner.get("content") is not None:
                    return _json_text_compact(inner["content"]), inner.get("tool_call_id")
    found, value = _unwrap(text, envelopes)
    return (_json_text(value) if found else text), None


def _json_text_compact(value: Any) -> str:
    return value if isinstance(value, str) else _COMPACT(value)
