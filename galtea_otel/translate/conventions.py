"""The conventions table: which attribute keys mean what, for every instrumentation we read.

This is data, not code: supporting a new convention is a few lines here. Within each tuple the first key present
wins (SESSION_MODEL section 5, "What the translator reads").
"""

from __future__ import annotations

from galtea_otel import attributes as A

# --- Session membership -------------------------------------------------------------------------------------
SESSION_KEY = (
    A.SESSION_CUSTOM_ID,
    A.GEN_AI_CONVERSATION_ID,
    A.SESSION_ID,
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
    "langsmith.metadata.thread_id",
    "langsmith.metadata.session_id",
    "langsmith.metadata.conversation_id",
    "thread_id",
    "ai.telemetry.metadata.sessionId",
)
# Keys that are a library's own conversation id rather than the application's (pydantic-ai, for one, sets a random
# ``gen_ai.conversation.id`` on every run): a span keyed only by one of them has a *weak* key, which an application
# key on an ancestor beats (README, "Sessions: which key wins"). Every other key is the application's choice.
WEAK_SESSION_KEYS = frozenset({A.GEN_AI_CONVERSATION_ID})
# Span-level version keys; when none is on the span or its ancestors, the resource keys, then the default.
VERSION = (A.SESSION_VERSION, "langfuse.version", "traceloop.entity.version")
RESOURCE_VERSION = ("galtea.version.id", "service.version")
# A test case on the span beats one on the resource.
TEST_CASE = (A.TEST_CASE_ID, "langfuse.experiment.item.id")
RESOURCE_TEST_CASE = (A.TEST_CASE_ID,)
SESSION_CONTEXT = (A.SESSION_CONTEXT,)
SESSION_METADATA = (A.SESSION_METADATA,)
SESSION_EVENT = (A.SESSION_EVENT,)
USER = (A.SESSION_USER_ID, "user.id", "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
        "ai.telemetry.metadata.userId")

# --- What kind of span ----------------------------------------------------------------------------------------
# (key, values that make the span an LLM call; None: the key's presence is enough). First hit wins.
# ``galtea.trace.*``: the older spelling of ``galtea.span.*``, still what the official galtea SDK's ``@traced``
# writes (galtea 5.12) and still read by the Galtea platform.
GALTEA_TRACE_TYPE = "galtea.trace.type"
VERCEL_OPERATION_ID = "ai.operationId"
LLM_MARKERS: tuple[tuple[str, frozenset[str] | None], ...] = (
    (A.SPAN_TYPE, frozenset({"GENERATION"})),
    (GALTEA_TRACE_TYPE, frozenset({"GENERATION"})),
    (A.GEN_AI_OPERATION_NAME, frozenset({"chat", "text_completion", "generate_content"})),
    ("openinference.span.kind", frozenset({"LLM"})),
    ("llm.request.type", None),
    ("langfuse.observation.type", frozenset({"generation"})),
    ("mlflow.spanType", frozenset({"LLM", "CHAT_MODEL"})),
    ("langsmith.span.kind", frozenset({"llm"})),
    # Vercel AI SDK: the provider calls (one per step); their parents are the turn roots (SPAN_TYPE_SOURCES).
    (VERCEL_OPERATION_ID, frozenset({"ai.generateText.doGenerate", "ai.streamText.doStream",
                                     "ai.generateObject.doGenerate", "ai.streamObject.doStream"})),
)
# Span names (suffixes) of spans a marker above makes LLM calls but that call no model, and the kind they are:
# LlamaIndex's OpenInference instrumentation marks every method of an LLM class ``LLM``, so
# ``OpenAI._prepare_chat_with_tools`` (it only builds the request, beside the ``OpenAI.astream_chat`` call) would
# count as a second LLM call per step.
NOT_LLM_CALLS: tuple[tuple[str, str], ...] = (
    ("._prepare_chat_with_tools", "SPAN"),
)
# The type of a non-LLM span: (key, {value: galtea span type}); values are matched case-insensitively.
_COMMON_TYPES = {
    "tool": "TOOL", "retriever": "RETRIEVER", "reranker": "RETRIEVER", "chain": "CHAIN", "agent": "AGENT",
    "embedding": "EMBEDDING", "guardrail": "GUARDRAIL", "evaluator": "EVALUATOR", "event": "EVENT",
    "span": "SPAN", "workflow": "CHAIN", "task": "CHAIN",
}
SPAN_TYPE_SOURCES: tuple[tuple[str, dict[str, str]], ...] = (
    (A.SPAN_TYPE, {t.lower(): t for t in A.SPAN_TYPES}),
    (GALTEA_TRACE_TYPE, {t.lower(): t for t in A.SPAN_TYPES}),
    ("openinference.span.kind", _COMMON_TYPES),
    ("traceloop.span.kind", _COMMON_TYPES),
    ("langfuse.observation.type", _COMMON_TYPES),
    ("mlflow.spanType", _COMMON_TYPES),
    ("langsmith.span.kind", _COMMON_TYPES),
    (A.GEN_AI_OPERATION_NAME, {"embeddings": "EMBEDDING", "execute_tool": "TOOL", "invoke_agent": "AGENT",
                               "create_agent": "AGENT"}),
    (VERCEL_OPERATION_ID, {"ai.generatetext": "AGENT", "ai.streamtext": "AGENT", "ai.generateobject": "AGENT",
                           "ai.streamobject": "AGENT", "ai.toolcall": "TOOL", "ai.embed": "EMBEDDING",
                           "ai.embedmany": "EMBEDDING", "ai.embed.doembed": "EMBEDDING",
                           "ai.embedmany.doembed": "EMBEDDING"}),
)
# Keys whose presence alone makes a span of that type (after the sources above found none).
SPAN_TYPE_PRESENCE: tuple[tuple[str, str], ...] = (
    ("gen_ai.tool.name", "TOOL"),
    ("ai.toolCall.name", "TOOL"),
)
# Span names (prefixes) that make a span of that type when nothing else did: pydantic-ai's agent and tool spans
# (``agent run`` / ``running tool`` before its instrumentation version 3, ``invoke_agent {agent}`` /
# ``execute_tool {tool}`` since), whose attributes carry no span kind.
SPAN_NAME_TYPES: tuple[tuple[str, str], ...] = (
    ("agent run", "AGENT"),
    ("invoke_agent", "AGENT"),
    ("running tool", "TOOL"),
    ("execute_tool", "TOOL"),
)

# --- Content ----------------------------------------------------------------------------------------------------
# Each source is (kind, key), first present wins:
# - "text": the attribute as text, kept as it is (a JSON string becomes its text);
# - "messages": a JSON list of messages (any convention: GenAI parts, OpenAI, Vercel, LangChain...) or a request /
#   response object holding them: normalized (translate/messages.py), the row's text is the user's message (input)
#   or the assistant's reply (output);
# - "indexed": messages flattened into attributes under a prefix (``llm.input_messages.0.message.role``), rebuilt
#   and read the same way;
# - "value": text that may be JSON of a request, response or state (``input.value`` = ``{"model": ..,
#   "messages": [..]}``, LangChain's ``{"messages": [...]}`` graph state): read as "messages" on LLM, AGENT and
#   CHAIN spans when it holds messages, else kept as text;
# - "vercel": the Vercel AI SDK's reply (``ai.response.text`` + ``ai.response.toolCalls``).
# The tool keys rank above the message keys: on a TOOL span they are its arguments and result.
# OpenInference's message lists rank above its ``input.value`` / ``output.value``: on an LLM span those hold the
# raw request and response bodies; on other spans there are no message lists and the values are used.
Source = tuple[str, str]
INPUT: tuple[Source, ...] = (
    ("text", A.SPAN_INPUT),
    ("text", "galtea.trace.input"),
    ("text", "gen_ai.tool.call.arguments"),
    ("text", "ai.toolCall.args"),
    ("text", "ai.toolCall.input"),
    ("text", "tool_arguments"),  # pydantic-ai before instrumentation version 3
    ("messages", "gen_ai.input.messages"),
    ("messages", "ai.prompt.messages"),
    ("indexed", "llm.input_messages."),
    ("messages", "pydantic_ai.all_messages"),  # pydantic-ai's agent span: the whole history
    ("messages", "ai.prompt"),  # the Vercel AI SDK's turn root: {"system", "prompt" | "messages"}
    ("value", "input.value"),
    ("indexed", "gen_ai.prompt."),
    ("value", "gen_ai.prompt"),
    ("value", "traceloop.entity.input"),
    ("value", "langfuse.observation.input"),
    ("value", "mlflow.spanInputs"),
)
OUTPUT: tuple[Source, ...] = (
    ("text", A.SPAN_OUTPUT),
    ("text", "galtea.trace.output"),
    ("text", "gen_ai.tool.call.result"),
    ("text", "ai.toolCall.result"),
    ("text", "ai.toolCall.output"),
    ("text", "tool_response"),  # pydantic-ai before instrumentation version 3
    ("messages", "gen_ai.output.messages"),
    ("vercel", "ai.response.text"),
    ("vercel", "ai.response.toolCalls"),
    ("text", "ai.response.object"),
    ("indexed", "llm.output_messages."),
    ("text", "final_result"),  # pydantic-ai's agent span
    ("value", "output.value"),
    ("indexed", "gen_ai.completion."),
    ("value", "gen_ai.completion"),
    ("value", "traceloop.entity.output"),
    ("value", "langfuse.observation.output"),
    ("value", "mlflow.spanOutputs"),
)
MESSAGE_KINDS = frozenset({"messages", "indexed"})
# "value" sources are read as messages on these kinds of span only (elsewhere a JSON value is the step's own).
VALUE_MESSAGE_KINDS = frozenset({"GENERATION", "AGENT", "CHAIN"})
# "indexed" sources rank where the lists above put them on these kinds of span; on any other span they are read
# only when no other source is present: OpenInference's LangChain instrumentation writes ``llm.input_messages``
# on CHAIN spans too, holding only the graph state's first message (the conversation's first user message),
# where ``input.value`` holds the whole state.
INDEXED_RANKED_KINDS = frozenset({"GENERATION"})
# A "value" on those kinds of span that is a framework's own state or event rather than the conversation: no
# input / output (the turn then takes its LLM calls'), the text kept in metadata as "input.raw" / "output.raw"
# when at most RAW_VALUE_KEEP_CHARS long. LlamaIndex's workflow run (``FunctionAgent.run``): its input is
# ``{"init_state": {...}, "start_event": ...}``, its output the repr of the ``StopEvent``, cut short.
OPAQUE_VALUE_KEYS = frozenset({"init_state"})  # a JSON object with one of these keys
OPAQUE_VALUE_PREFIXES = ("StopEvent(",)  # text starting so
# A TOOL span's value wrapped in a framework's envelope, unwrapped to the call's arguments / result:
# (keys the JSON object must have, keys it may have besides when they are empty (None: any), the field).
# LlamaIndex's ``FunctionTool.acall`` input is ``{"kwargs": {...}}`` (``"args": []`` beside it when positional
# arguments were passed: then it is kept whole); its output a ``ToolOutput`` with the tool's return in
# ``raw_output``. (A LangChain ``ToolMessage`` result becomes its content, and its ``tool_call_id`` the call id.)
TOOL_INPUT_ENVELOPES: tuple[tuple[frozenset[str], frozenset[str] | None, str], ...] = (
    (frozenset({"kwargs"}), frozenset({"args"}), "kwargs"),
)
TOOL_OUTPUT_ENVELOPES: tuple[tuple[frozenset[str], frozenset[str] | None, str], ...] = (
    (frozenset({"tool_name", "raw_output"}), None, "raw_output"),
)
# System instructions given beside the messages: a leading system message.
SYSTEM_INSTRUCTIONS = ("gen_ai.system_instructions",)
VERCEL_TOOL_CALLS = "ai.response.toolCalls"
FINISH_REASON = ("gen_ai.response.finish_reasons", "ai.response.finishReason", "llm.finish_reason")
# A row's raw JSON value kept in metadata (under "input.raw" / "output.raw") when messages were read from it and it
# is at most this long; a longer one lives on only as the normalized messages.
RAW_VALUE_KEEP_CHARS = 1024
# Tools: the tool's name and call id go to the metadata keys "tool.name" / "tool.call_id".
TOOL_NAME = ("gen_ai.tool.name", "ai.toolCall.name", "tool.name")
TOOL_CALL_ID = ("gen_ai.tool.call.id", "ai.toolCall.id", "tool_call.id", "tool.id")

# ``ai.*``: the Vercel AI SDK (``ai.usage.promptTokens`` / ``completionTokens`` up to v4, ``inputTokens`` /
# ``outputTokens`` since v5); ``model_name``: pydantic-ai's agent span.
MODEL = (A.GEN_AI_RESPONSE_MODEL, A.GEN_AI_REQUEST_MODEL, "llm.model_name", "langfuse.observation.model.name",
         "mlflow.llm.model", "ai.response.model", "ai.model.id", "model_name")
# The model that replied, inside a response envelope, for when the model above came from a key that may hold
# the requested one (any but the first): (key, a needle the text must hold, paths into the decoded JSON; the
# first path present wins). OpenInference's ``llm.model_name`` on a streamed LangChain call is the requested
# model; the response's is in its ``output.value`` (the ``LLMResult``).
RESPONSE_MODEL_FIELDS: tuple[tuple[str, str, tuple[tuple[str | int, ...], ...]], ...] = (
    ("output.value", '"model_name"', (
        ("generations", 0, 0, "message", "kwargs", "response_metadata", "model_name"),
        ("generations", 0, 0, "generation_info", "model_name"),
    )),
)
INPUT_TOKENS = (A.GEN_AI_INPUT_TOKENS, "llm.token_count.prompt", "gen_ai.usage.prompt_tokens",
                "ai.usage.inputTokens", "ai.usage.promptTokens")
OUTPUT_TOKENS = (A.GEN_AI_OUTPUT_TOKENS, "llm.token_count.completion", "gen_ai.usage.completion_tokens",
                 "ai.usage.outputTokens", "ai.usage.completionTokens")
TOTAL_TOKENS = ("llm.token_count.total", "gen_ai.usage.total_tokens", "llm.usage.total_tokens", "ai.usage.totalTokens")
CACHE_READ_TOKENS = (A.GEN_AI_CACHE_READ_TOKENS, "llm.token_count.prompt_details.cache_read",
                     "gen_ai.usage.cache_read_input_tokens", "ai.usage.cachedInputTokens")
# Fields of JSON object attributes, used for what the plain keys above did not give:
# (key, {concept: field names, first present wins}, whether the key stays out of metadata).
# - Langfuse puts usage in ``langfuse.observation.usage_details``: its OpenAI integration passes the API's own
#   usage (``prompt_tokens`` / ``completion_tokens`` / ``total_tokens``), its generation API takes ``input`` /
#   ``output`` / ``total`` / ``input_cache_read``.
# - OpenInference gives a failed call no ``llm.model_name`` (there is no response); the requested model is then
#   only in ``llm.invocation_parameters`` (kept in metadata too: it holds the other request parameters).
JSON_FIELDS: tuple[tuple[str, dict[str, tuple[str, ...]], bool], ...] = (
    ("langfuse.observation.usage_details", {
        "input_tokens": ("input", "prompt_tokens", "input_tokens"),
        "output_tokens": ("output", "completion_tokens", "output_tokens"),
        "total_tokens": ("total", "total_tokens"),
        "cache_read_tokens": ("input_cache_read", "cache_read_input_tokens"),
    }, True),
    ("llm.invocation_parameters", {"model": ("model",)}, False),
)
JSON_CONCEPTS = frozenset(concept for _, fields, _ in JSON_FIELDS for concept in fields)
# ("number", key) or ("json-total", key): a JSON object whose "total" (else the sum of its values) is the cost.
COST: tuple[Source, ...] = (
    ("number", A.INFERENCE_COST),
    ("number", "llm.cost.total"),
    ("number", "gen_ai.usage.cost"),
    ("json-total", "langfuse.observation.cost_details"),
)

# --- Errors -------------------------------------------------------------------------------------------------------
ERROR_TEXT = (A.SPAN_ERROR, "galtea.trace.error")
ERROR_TYPE = ("error.type",)
# (key, value): the span is an error even without status ERROR; the message comes from the second tuple.
ERROR_LEVEL = (("langfuse.observation.level", "ERROR"),)
ERROR_LEVEL_MESSAGE = ("langfuse.observation.status_message",)
ABANDONED = (A.SPAN_ABANDONED,)

# --- Metadata -----------------------------------------------------------------------------------------------------
# Keys that are read above (so they do not also go to metadata), plus keys that are noise in records.
_PLAIN_SOURCES = (SESSION_KEY, VERSION, TEST_CASE, SESSION_CONTEXT, SESSION_METADATA, SESSION_EVENT, USER, MODEL,
                  INPUT_TOKENS, OUTPUT_TOKENS, TOTAL_TOKENS, CACHE_READ_TOKENS, ERROR_TEXT, ABANDONED,
                  ERROR_LEVEL_MESSAGE, SYSTEM_INSTRUCTIONS, FINISH_REASON, TOOL_NAME, TOOL_CALL_ID)
CONSUMED_KEYS: frozenset[str] = frozenset(
    [k for group in _PLAIN_SOURCES for k in group]
    + [k for k, _ in LLM_MARKERS]
    + [k for k, _ in SPAN_TYPE_SOURCES]
    + [k for kind, k in INPUT + OUTPUT + COST if kind != "indexed"]
    + [k for k, _ in SPAN_TYPE_PRESENCE]
    + [k for k, _ in ERROR_LEVEL]
    + [k for k, _, consumed in JSON_FIELDS if consumed]
    + list(A.STAMPED_KEYS)
)
CONSUMED_PREFIXES: tuple[str, ...] = tuple(k for kind, k in INPUT + OUTPUT if kind == "indexed")
