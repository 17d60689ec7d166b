"""decode -> translate -> assemble -> store: the one path shared by the in-process exporter and the receiver."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from galtea_otel.assemble.assembler import Assembly, assemble, to_detail
from galtea_otel.assemble.keys import Key, fully_keyed, resolve_trace
from galtea_otel.evaluate.storage import enqueue_ended, record_span_evaluations, with_evaluations
from galtea_otel.pricing import preload as preload_prices
from galtea_otel.records import SessionDetail
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import SpanData
from galtea_otel.store.base import AnyKey, Store, StoreTx, full_key
from galtea_otel.translate.row import DEFAULT_PROJECT, EVENT_IDLE, KIND_LLM, KIND_MARKER, SpanRow
from galtea_otel.translate.translator import InvalidSpan, Redactor, translate

log = logging.getLogger("galtea_otel")


@dataclass
class IngestResult:
    """What one ``Pipeline.ingest`` call did. ``rejected`` spans were invalid (bad ids...); ``errors`` says why."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    sessions: int = 0  # sessions reassembled


class Pipeline:
    """Turns spans into records in a store. Thread-safe; every call is one store transaction.

    ``ingest`` returns only after the records are committed, so a caller may acknowledge then.
    """

    def __init__(
        self, store: Store, settings: PipelineSettings | None = None, *, redact: Redactor | None = None,
        sync: bool = False, evaluate: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings or PipelineSettings()
        self.redact = redact
        # With ``sync``, every session written is also enqueued in the store's Galtea outbox, in the same
        # transaction (galtea_otel.sync sends it from there).
        self.sync = sync
        # With ``evaluate``, every session that ends is queued for its evaluators in the same transaction
        # (galtea_otel.evaluate: the runner takes it from there).
        self.evaluate = evaluate
        preload_prices()  # issue 11: genai-prices' table, loaded once before the first batch rather than inside it
        # Stored with each session, so that readers assemble it the way the writer did.
        self._assembly_settings = json.dumps(
            {"turns": self.settings.turns, "late_spans": self.settings.late_spans, "strict": self.settings.strict},
            sort_keys=True)

    # --- writing -------------------------------------------------------------------------------------------------

    def ingest(self, spans: Sequence[SpanData], project: str = DEFAULT_PROJECT) -> IngestResult:
        """Store these spans as ``project``'s (issue 12: the receiver's token decides it, never the spans)."""
        result = IngestResult()
        received = time.time_ns()
        rows: list[SpanRow] = []
        for span in spans:
            try:
                row = translate(span, redact=self.redact, received_ns=received)
            except InvalidSpan as exc:
                result.rejected += 1
                if len(result.errors) < 10:
                    result.errors.append(str(exc))
                continue
            row.project = project
            rows.append(row)
        return self.ingest_rows(rows, result)

    def ingest_rows(self, translated: Sequence[SpanRow], result: IngestResult | None = None) -> IngestResult:
        """Store spans already translated (``translate``) and update the records they touch."""
        result = result if result is not None else IngestResult()
        rows: dict[tuple[str, str], SpanRow] = {}
        for row in translated:
            if (row.trace_id, row.span_id) in rows:
                result.duplicates += 1
                continue
            if fully_keyed(row):
                row.custom_id, row.version = row.own_custom_id, row.own_version
            rows[(row.trace_id, row.span_id)] = row
        if not rows:
            return result
        batch = list(rows.values())
        with self.store.transaction() as tx:
            tx.lock_traces(sorted({r.trace_id for r in batch}))
            inserted = tx.insert_spans(batch)
            result.accepted = inserted
            result.duplicates += len(batch) - inserted
            if inserted:
                # Resolving and reassembling from the whole batch (replayed rows included) gives the same
                # records as from the new rows alone, and spares the store telling which rows were new.
                affected = self._resolve(tx, batch)
                result.sessions = self._reassemble(tx, affected)
        return result

    def _resolve(self, tx: StoreTx, new: Sequence[SpanRow]) -> set[Key]:
        """Resolve session keys in the traces these rows touch; return the session keys whose rows changed."""
        affected: set[Key] = {
            (r.custom_id, r.version, r.project) for r in new if r.custom_id is not None and r.version is not None}
        by_trace: dict[str, list[SpanRow]] = {}
        # Issue 12: a trace is resolved within each project's rows of it, so a span another project sends with
        # the same trace id cannot lend (or take) a key.
        for project in sorted({r.project for r in new}):
            mine = [r for r in new if r.project == project]
            traces = {r.trace_id for r in mine if not fully_keyed(r)}
            traces |= tx.traces_needing_resolution(sorted({r.trace_id for r in mine} - traces), project)
            for row in tx.trace_rows(sorted(traces), project):
                by_trace.setdefault(f"{project}\0{row.trace_id}", []).append(row)
        if not by_trace:
            return affected
        updates = []
        for trace_rows in by_trace.values():
            resolved = resolve_trace(trace_rows, self.settings.default_version)
            for row in trace_rows:
                key = resolved[row.span_id]
                if key is None or key == (row.custom_id, row.version, row.project):
                    continue
                if row.custom_id is not None and row.version is not None:
                    affected.add((row.custom_id, row.version, row.project))
                affected.add(key)
                updates.append((row.trace_id, row.span_id, key[0], key[1]))
        tx.set_keys(updates)
        return affected

    def _reassemble(self, tx: StoreTx, keys: set[Key]) -> int:
        ordered = sorted(keys)
        tx.lock_sessions(ordered)
        summaries = []
        rejected = 0
        rows_by_key = tx.session_rows(ordered, content=False)
        record_span_evaluations(tx, rows_by_key)  # issue 11: gen_ai.evaluation.result events of these spans
        for key, rows in rows_by_key.items():
            assembly = self._assemble(rows, key, tx.test_case_context)
            if assembly is None:
                tx.delete_session(key)
                continue
            summary = assembly.summary()
            summary["project"] = key[2]
            summary["assembly"] = self._assembly_settings
            summaries.append(summary)
            rejected += assembly.late_ignored
        tx.upsert_sessions(summaries)
        if self.evaluate:  # issue 11
            enqueue_ended(tx, summaries)
        if rejected and self.settings.late_spans == "reject":
            tx.add_counter("late_spans_rejected", rejected)
        if self.sync and ordered:
            tx.enqueue_sync(ordered, time.time_ns())
        return len(ordered)

    def _assemble(
        self, rows: Sequence[SpanRow], key: Key, test_case_context: Callable[[str], str | None]
    ) -> Assembly | None:
        case = next((r.test_case_id for r in rows if r.test_case_id), None)
        context = test_case_context(case) if case else None
        return assemble(rows, key[0], key[1], self.settings, context)

    def reassemble(self, keys: Sequence[AnyKey]) -> int:
        """Rebuild these sessions' records from their stored rows (``galtea-otel reprice``: new prices)."""
        with self.store.transaction() as tx:
            return self._reassemble(tx, {full_key(k) for k in keys})

    # --- housekeeping ---------------------------------------------------------------------------------------------

    def sweep(self, now_ns: int | None = None) -> dict[str, int]:
        """Close idle sessions and settle held spans whose key never came. Returns counts."""
        now = now_ns if now_ns is not None else time.time_ns()
        counts = {"idle_closed": 0, "orphan_sessions": 0, "orphans_dropped": 0}
        idle_before = now - int(self.settings.idle_close_minutes * 60e9)
        hold_before = now - int(self.settings.hold_seconds * 1e9)
        with self.store.transaction() as tx:
            affected: set[Key] = set()
            for project, trace_id in tx.held_traces(hold_before):
                tx.lock_traces([trace_id])
                held = tx.unkeyed_rows(trace_id, project)
                if self.settings.orphans == "session" and any(r.kind == KIND_LLM for r in held):
                    version = next((r.resource_version for r in held if r.resource_version),
                                   self.settings.default_version)
                    tx.set_keys([(r.trace_id, r.span_id, trace_id, version) for r in held])
                    affected.add((trace_id, version, project))
                    counts["orphan_sessions"] += 1
                else:
                    counts["orphans_dropped"] += tx.delete_unkeyed(trace_id, project)
            if affected:  # orphan sessions first, so that the idle rule below sees them too
                self._reassemble(tx, affected)
            idle = tx.idle_sessions(idle_before)
            if idle:
                tx.insert_spans([_idle_marker(key, now) for key in idle])
                self._reassemble(tx, set(idle))
                counts["idle_closed"] = len(idle)
            for name, value in counts.items():
                if value:
                    tx.add_counter(name, value)
        return counts

    # --- reading --------------------------------------------------------------------------------------------------

    def session(self, custom_id: str, version: str | None = None, project: str | None = None
                ) -> SessionDetail | None:
        """The full record of one session (the newest with this custom id when version is None; of any project
        when project is None)."""
        key = self.store.find_session_key(custom_id, version, project)
        if key is None:
            return None
        return read_session(self.store, key, self.settings)


def read_session(store: Store, key: AnyKey, settings: PipelineSettings | None = None) -> SessionDetail | None:
    """Assemble one session's full record from its stored rows, with the settings it was written with. ``key``:
    (custom_id, version, project), or (custom_id, version) for the default project's."""
    key = full_key(key)
    rows = store.read_session_rows(key)
    if settings is None:
        settings = PipelineSettings(**store.session_assembly(key))
    case = next((r.test_case_id for r in rows if r.test_case_id), None)
    context = None
    if case:
        test_case = store.get_test_case(case)
        context = test_case.context if test_case else None
    assembly = assemble(rows, key[0], key[1], settings, context)
    if assembly is None:
        return None
    return with_evaluations(store, key, to_detail(assembly).model_copy(update={"project": key[2]}))


def _idle_marker(key: Key, now_ns: int) -> SpanRow:
    """A synthetic end marker recording that the idle sweep closed this session at ``now_ns``."""
    # The default project's marker ids are those of schema v6 and earlier.
    scope = "" if key[2] == DEFAULT_PROJECT else f"{key[2]}\0"
    digest = hashlib.sha256(f"{scope}{key[0]}\0{key[1]}\0{now_ns}".encode()).hexdigest()
    return SpanRow(
        trace_id=digest[:32], span_id=digest[32:48], parent_span_id=None, name="galtea.session.idle_close",
        kind=KIND_MARKER, start_ns=now_ns, end_ns=now_ns, status=0, session_event=EVENT_IDLE,
        own_custom_id=key[0], own_version=key[1], custom_id=key[0], version=key[1], received_ns=now_ns,
        project=key[2],
    )
