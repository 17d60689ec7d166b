"""``SpanRow``: a span after translation, in the columns every store keeps."""

from __future__ import annotations

from dataclasses import dataclass

# Kinds of span rows. Non-LLM spans keep their galtea span type (TOOL, RETRIEVER, ...).
KIND_SESSION = "SESSION"
KIND_LLM = "GENERATION"
KIND_MARKER = "MARKER"
KIND_SPAN = "SPAN"

# Values of ``session_event`` on MARKER rows; "idle" is written by the idle sweep.
EVENT_START = "start"
EVENT_END = "end"
EVENT_IDLE = "idle"

# Issue 12: the project of a store without ``serve --tokens`` (and of every row written before schema v7).
DEFAULT_PROJECT = "default"


@dataclass(slots=True)
class SpanRow:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: int  # spandata.STATUS_*
    error: str | None = None
    session_event: str | None = None
    # Session key as the span itself states it (span attributes; the resource for the version).
    own_custom_id: str | None = None
    own_version: str | None = None
    resource_version: str | None = None
    # The key after resolution (own -> ancestors -> trace); None while the span is held.
    custom_id: str | None = None
    version: str | None = None
    test_case_id: str | None = None
    context: str | None = None
    input: str | None = None
    output: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    abandoned: bool = False
    metadata: str | None = None  # JSON object text of the attributes no convention consumed
    received_ns: int = 0
    # Schema v5 (issue 8): the end user; whether ``own_custom_id`` is only a library's own conversation id (a
    # "weak" key, beaten by an application's key on an ancestor); the conversation as the model saw it, in the
    # normalized GenAI message shape (JSON list text: ``input_messages`` what was sent, ``output_messages`` what
    # came back); the finish reason of an LLM call.
    user_id: str | None = None
    key_weak: bool = False
    input_messages: str | None = None
    output_messages: str | None = None
    finish_reason: str | None = None
    # Issue 11: the span's ``gen_ai.evaluation.result`` events (galtea_otel.evaluate.events), JSON list text.
    evaluations: str | None = None
    # Schema v7 (issue 12): the project that wrote the span (the receiver's token, ``configure(project=...)``);
    # a session is (custom_id, version, project), and keys resolve within one project's rows of a trace.
    project: str = DEFAULT_PROJECT

    @property
    def is_error(self) -> bool:
        return self.status == 2


# Column order shared by the stores.
COLUMNS: tuple[str, ...] = tuple(SpanRow.__dataclass_fields__)
