"""Session-key precedence (issue 8 point 4): an application's key on an ancestor beats a library's own
conversation id on a descendant, in any arrival order."""

from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path

from galtea_otel import attributes as A
from galtea_otel.assemble.keys import fully_keyed, resolve_trace
from galtea_otel.pipeline import Pipeline
from galtea_otel.store.sqlite import SQLiteStore
from galtea_otel.translate.row import SpanRow
from galtea_otel.translate.translator import translate

from .spans import collect, sdk_tracer

LIBRARY_ID = "0b7f6c1e-library-random-uuid"


def _library_spans() -> list[SpanRow]:
    """An app's request span carrying its ``session.id``; under it an agent run whose spans carry pydantic-ai's
    own (random) ``gen_ai.conversation.id``, marked weak as the translator marks a library's own id."""
    with sdk_tracer() as (tracer, exporter):
        for turn in range(2):
            with tracer.start_as_current_span("POST /chat", attributes={A.SESSION_ID: "app-conv-7"}), \
                    tracer.start_as_current_span("invoke_agent", attributes={
                        A.GEN_AI_OPERATION_NAME: "invoke_agent", A.GEN_AI_CONVERSATION_ID: LIBRARY_ID,
                        A.SPAN_INPUT: f"question {turn}"}), \
                    tracer.start_as_current_span("chat", attributes={
                        A.GEN_AI_OPERATION_NAME: "chat", A.GEN_AI_CONVERSATION_ID: LIBRARY_ID,
                        A.GEN_AI_INPUT_TOKENS: 5, A.SPAN_OUTPUT: f"answer {turn}"}):
                pass
        spans = collect(exporter)
    rows = [translate(s) for s in spans]
    return [dataclasses.replace(r, key_weak=r.own_custom_id == LIBRARY_ID) for r in rows]


def test_the_apps_key_on_an_ancestor_beats_a_librarys_on_descendants(tmp_path: Path) -> None:
    rows = _library_spans()
    assert {r.own_custom_id for r in rows} == {"app-conv-7", LIBRARY_ID}
    assert not any(fully_keyed(r) for r in rows if r.key_weak)
    rng = random.Random(8)
    for n in range(6):
        order = rng.sample(rows, len(rows))
        pipeline = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / f'{n}.db'}"))
        if n % 2:
            for row in order:  # one span per request: children first, parents last, and every other order
                pipeline.ingest_rows([dataclasses.replace(row)])
        else:
            pipeline.ingest_rows([dataclasses.replace(r) for r in order])
        sessions = pipeline.store.list_sessions()
        assert [(s.custom_id, s.turn_count, s.input_tokens) for s in sessions] == [("app-conv-7", 2, 10)]
        detail = pipeline.session("app-conv-7")
        assert detail is not None
        assert [(t.input, t.output) for t in detail.inference_results] == [
            ("question 0", "answer 0"), ("question 1", "answer 1")]


def _row(span_id: str, parent: str | None, start: int, custom_id: str | None = None, weak: bool = False) -> SpanRow:
    return SpanRow(trace_id="a" * 32, span_id=span_id, parent_span_id=parent, name=span_id, kind="SPAN",
                   start_ns=start, end_ns=start + 1, status=0, own_custom_id=custom_id, key_weak=weak)


def test_precedence_rules() -> None:
    """Nearest strong key on the span or its ancestors; else the nearest weak one; else the trace's earliest
    strong key, else its earliest weak key."""
    rows = [
        _row("root", None, 0),
        _row("app", "root", 1, "app"),
        _row("lib-under-app", "app", 2, "lib-1", weak=True),
        _row("plain-under-lib", "lib-under-app", 3),
        _row("lib-alone", "root", 4, "lib-2", weak=True),
        _row("under-lib-alone", "lib-alone", 5),
        _row("strong-under-lib", "lib-alone", 6, "own"),
    ]
    expected = {"root": "app", "app": "app", "lib-under-app": "app", "plain-under-lib": "app",
                "lib-alone": "lib-2", "under-lib-alone": "lib-2", "strong-under-lib": "own"}
    for order in itertools.islice(itertools.permutations(rows), 0, 5040, 97):
        resolved = resolve_trace(list(order), "v")
        assert {k: v[0] if v else None for k, v in resolved.items()} == expected
    weak_only = [_row("r", None, 0), _row("b", "r", 2, "late", weak=True), _row("a", "r", 1, "early", weak=True)]
    assert {k: v[0] if v else None for k, v in resolve_trace(weak_only, "v").items()} == {
        "r": "early", "a": "early", "b": "late"}
