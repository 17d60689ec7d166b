"""Every attribute key galtea-otel writes on its own spans (SESSION_MODEL section 5).

The keys it *reads* from other conventions live in :mod:`galtea_otel.translate.conventions`.
"""

from __future__ import annotations

# Stamped on every span that starts inside a session.
SESSION_CUSTOM_ID = "galtea.session.custom_id"
SESSION_VERSION = "galtea.session.version"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
SESSION_ID = "session.id"

# The session span (and the start / end marker spans).
SPAN_TYPE = "galtea.span.type"
TEST_CASE_ID = "galtea.test_case.id"
SESSION_CONTEXT = "galtea.session.context"
SESSION_METADATA = "galtea.session.metadata"
# The end user of the conversation (``session(user_id=...)``), written beside the standard ``user.id``.
SESSION_USER_ID = "galtea.session.user_id"
USER_ID = "user.id"
# "start": the zero-length span that announces a running session (so PENDING is visible while it runs);
# "end": the marker that ``end_session()`` emits to close a session that has no session span.
SESSION_EVENT = "galtea.session.event"

# Inference and other spans.
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
SPAN_INPUT = "galtea.span.input"
SPAN_OUTPUT = "galtea.span.output"
SPAN_ERROR = "galtea.span.error"
SPAN_ABANDONED = "galtea.span.abandoned"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
INFERENCE_COST = "galtea.inference.cost"

# Values of galtea.span.type.
TYPE_SESSION = "SESSION"
TYPE_GENERATION = "GENERATION"
SPAN_TYPES = frozenset(
    {"SESSION", "GENERATION", "TOOL", "RETRIEVER", "CHAIN", "AGENT", "EMBEDDING", "GUARDRAIL", "EVALUATOR",
     "EVENT", "SPAN"}
)

# Values of galtea.session.event.
EVENT_START = "start"
EVENT_END = "end"

# The keys stamped on every span inside a session; a span processor writes them at span start.
STAMPED_KEYS = (SESSION_CUSTOM_ID, SESSION_VERSION, GEN_AI_CONVERSATION_ID, SESSION_ID)
