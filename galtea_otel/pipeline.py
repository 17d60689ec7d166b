"""decode -> translate -> assemble -> store: the one path shared by the in-process exporter and the receiver."""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from galtea_otel.assemble.assembler import (
    KIND_AGENT,
    KIND_CHAIN,
    _ends,
    _json_object,
    assemble,
    component_roots,
    detail_from_records,
    ends_with_tool_result,
    latency_total,
    make_turns,
    order_key,
    round_cost,
    to_detail,
    turn_record,
)
from galtea_otel.assemble.keys import Key, fully_keyed, resolve_trace
from galtea_otel.evaluate.storage import enqueue_ended, record_span_evaluations, with_evaluations
from galtea_otel.pricing import preload as preload_prices
from galtea_otel.records import SessionDetail
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import SpanData
from galtea_otel.store.base import AnyKey, Store, StoreTx, full_key
from galtea_otel.store.rows import row_from_tuple
from galtea_otel.store.turns import CONTRIB_COLUMNS, EXTRA_COLUMNS, FLAG_CONTINUES, turn_values
from galtea_otel.sync.outbox import enqueue as enqueue_sync
from galtea_otel.translate.row import (
    COLUMNS,
    DEFAULT_PROJECT,
    EVENT_IDLE,
    EVENT_START,
    KIND_LLM,
    KIND_MARKER,
    KIND_SESSION,
    SpanRow,
)
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
        # The last ``agg`` written for each of the sessions seen lately: (its text, its value), so that the next
        # batch reading the same text back does not parse it again (``_load_agg``). Bounded (emptied when full);
        # any other text (another writer's, a rolled back batch's) is parsed. Single dict operations only, no lock
        # (atomic under the GIL, and nothing to be held across a fork).
        self._aggs: dict[Key, tuple[str, dict[str, Any]]] = {}
        preload_prices()  # issue 11: genai-prices' table, loaded once before the first batch rather than inside it
        # Stored with each session, so that readers assemble it the way the writer did.
        self._assembly_settings = json.dumps(
            {"turns": self.settings.turns, "late_spans": self.settings.late_spans, "strict": self.settings.strict},
            sort_keys=True)

    # --- writing -------------------------------------------------------------------------------------------------

    def ingest(self, spans: Iterable[SpanData], project: str = DEFAULT_PROJECT) -> IngestResult:
        """Store these spans as ``project``'s (issue 12: the receiver's token decides it, never the spans); they are
        read once, in order (an iterator of them will do)."""
        result = IngestResult()
        return self.ingest_rows(self.translate_spans(spans, project, result), result)

    def translate_spans(self, spans: Iterable[SpanData], project: str = DEFAULT_PROJECT,
                        result: IngestResult | None = None) -> list[SpanRow]:
        """``ingest``'s first half, no store involved: these spans as ``project``'s rows for ``ingest_rows``; the
        invalid ones are counted in ``result`` (``rejected``, ``errors``) and left out. The receiver runs it in
        each request's thread, then commits the rows of several requests at once (galtea_otel.serve.writer)."""
        result = result if result is not None else IngestResult()
        received = time.time_ns()
        rows: list[SpanRow] = []
        broken: Exception | None = None
        for span in spans:
            try:
                row = translate(span, redact=self.redact, received_ns=received)
            except InvalidSpan as exc:
                result.rejected += 1
                if len(result.errors) < 10:
                    result.errors.append(str(exc))
                continue
            except Exception as exc:  # a redactor's (or a translator's) bug: this span is refused, not the batch
                result.rejected += 1
                if len(result.errors) < 10:
                    result.errors.append(f"span {span.span_id!r} could not be translated: {type(exc).__name__}: "
                                         f"{str(exc)[:200]}")
                if broken is None:
                    broken = exc
                continue
            row.project = project
            rows.append(row)
        if broken is not None:  # once a batch: a redactor failing on every span must not flood the log
            log.warning("galtea-otel: spans rejected, their translation raised (the first: %r)", broken)
        return rows

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
        placed = _placed_at_insert(rows)
        with self.store.transaction() as tx:
            tx.lock_traces(sorted({r.trace_id for r in batch}))
            inserted = tx.insert_spans(batch, placed)
            result.accepted = inserted
            result.duplicates += len(batch) - inserted
            if inserted:
                # Resolving and reassembling from the whole batch (replayed rows included) gives the same
                # records as from the new rows alone, and spares the store telling which rows were new.
                fresh = inserted == len(batch)  # no replayed row: the batch's rows are the stored ones
                result.sessions = self._apply(tx, self._resolve(tx, batch, fresh), rows, fresh,
                                              placed if fresh else None)
        return result

    def _resolve(self, tx: StoreTx, new: Sequence[SpanRow], fresh: bool = False) -> Dirty:
        """Resolve session keys in the traces these rows touch; return what changed: per session key, per trace,
        the spans that joined it (None: a row left the session, which is then rebuilt whole). ``fresh``: these
        rows are the stored ones, and get their new keys too."""
        dirty: Dirty = {}
        for r in new:
            key = _row_key(r)
            if key is not None:
                _mark(dirty, key, r.trace_id, r.span_id)
        by_trace: dict[str, list[SpanRow]] = {}
        # Issue 12: a trace is resolved within each project's rows of it, so a span another project sends with
        # the same trace id cannot lend (or take) a key.
        for project in sorted({r.project for r in new}):
            mine = [r for r in new if r.project == project]
            traces = {r.trace_id for r in mine if not fully_keyed(r)}
            traces |= tx.traces_needing_resolution(sorted({r.trace_id for r in mine} - traces), project)
            if not traces:
                continue
            for row in tx.trace_rows(sorted(traces), project):
                by_trace.setdefault(f"{project}\0{row.trace_id}", []).append(row)
        if not by_trace:
            return dirty
        updates = []
        for trace_rows in by_trace.values():
            resolved = resolve_trace(trace_rows, self.settings.default_version)
            for row in trace_rows:
                key = resolved[row.span_id]
                old = _row_key(row)
                if key is None or key == old:
                    continue
                if old is not None:
                    dirty[old] = None
                _mark(dirty, key, row.trace_id, row.span_id)
                updates.append((row.trace_id, row.span_id, key[0], key[1]))
        tx.set_keys(updates)
        if fresh and updates:
            by_id = {(r.trace_id, r.span_id): r for r in new}
            for trace_id, span_id, custom_id, version in updates:
                batch_row = by_id.get((trace_id, span_id))
                if batch_row is not None:
                    batch_row.custom_id, batch_row.version = custom_id, version
        return dirty

    def _reassemble(self, tx: StoreTx, keys: set[Key]) -> int:
        """Rebuild these sessions whole from their rows."""
        return self._apply(tx, dict.fromkeys(keys))

    def _apply(self, tx: StoreTx, dirty: Dirty, batch_ids: dict[tuple[str, str], SpanRow] | None = None,
               fresh: bool = False, placed: dict[tuple[str, str], tuple[str, int]] | None = None) -> int:
        """Incremental assembly. For each (session, trace) a batch touches, only the components of the trace
        that its spans join are recomputed (a component: the session's spans of the trace under one topmost
        span; a late parent merges its children's components into its own), then the session's exact
        aggregates change by the difference, and its status comes from its few start / end events.

        A trace is recomputed whole in ``trace`` turn mode, and while the tool round trip rule may join turns
        of different components (it has an LLM call continuing a turn and had no agent or chain span). A
        session is rebuilt whole when a row left it, when it was written with other settings or by a v5 store
        (no ``agg``), or, for ``late_spans`` ignore / reject, when its end moved (which spans are late changed).
        Every step is a function of the set of rows, so any order, batching or duplication gives the same
        records."""
        ordered = sorted(dirty)
        writes = _Writes(placed=placed or {})
        tx.lock_sessions(ordered)
        states = tx.session_states(ordered)
        events = {k: sorted((row_from_tuple(v) for v in vs), key=order_key)
                  for k, vs in tx.session_events(ordered, COLUMNS).items()}
        aggs: dict[Key, dict[str, Any]] = {}
        for key in ordered:
            ends = _ends([r for r in events[key] if r.kind == KIND_SESSION],
                         [r for r in events[key] if r.kind == KIND_MARKER])
            excl = ends[-1][0] if ends and self.settings.late_spans != "reopen" else None
            state = states.get(key)
            whole = dirty[key] is None or (
                state is not None and (state[0] is None or state[1] != self._assembly_settings))
            agg = _new_agg() if whole or state is None or state[0] is None else self._load_agg(key, state)
            if "f" not in agg:  # written before the turn extremes were kept: looked up once below
                agg.update(f=None, l=None, m=None)
                writes.removed.add(key)
            if agg["excl"] != excl:
                whole, agg = True, _new_agg()
            agg["excl"] = excl
            aggs[key] = agg
            if whole:
                dirty[key] = None
        batch_ids = batch_ids if batch_ids is not None else {}  # the batch's rows by id (ingest_rows' own dict)
        self._prefetch(tx, [(key, trace_id, span_ids) for key in ordered
                            for trace_id, span_ids in sorted((dirty[key] or {}).items())], batch_ids, writes,
                       fresh)
        full = [k for k in ordered if dirty[k] is None]
        rows_full = tx.session_rows(full, content=True) if full else {}
        summaries = []
        seen: dict[Key, list[SpanRow]] = {}
        late = 0
        for key in ordered:
            agg, traces = aggs[key], dirty[key]
            if traces is None:
                rows = rows_full.get(key, [])
                if not rows:
                    tx.replace_turns(key, None, None, [])
                    tx.delete_session(key)
                    continue
                seen[key] = rows
                _observe(agg, rows)
                work = [r for r in rows if r.kind not in _EVENT_KINDS]
                roots = component_roots(work)
                known = writes.placed  # rows of this batch inserted with their roots already
                tx.set_roots([(roots[(r.trace_id, r.span_id)], _flags(r), r.trace_id, r.span_id) for r in work
                              if known.get((r.trace_id, r.span_id)) != (roots[(r.trace_id, r.span_id)], _flags(r))])
                records, n = self._records(work, agg["excl"], roots, batch_ids)
                late += n
                for record in records:
                    _add(agg, _contrib(record), 1)
                agg.update(f=None, l=None, m=None)
                writes.removed.discard(key)
                _extremes(agg, records)
                tx.replace_turns(key, None, None, records)
            else:
                seen[key] = []
                for trace_id, span_ids in sorted(traces.items()):
                    new, n = self._apply_trace(tx, key, trace_id, span_ids, agg, batch_ids, writes)
                    seen[key].extend(new)
                    late += n
        tx.set_roots(writes.roots)
        tx.insert_turns(writes.turns)
        # A session none of whose spans is stored has no record: a batch's span that named it was a duplicate
        # (the ids of a stored span of another session), so nothing joined it.
        phantom = {key for key in ordered if key in seen and aggs[key]["act"] is None}
        for key in ordered:
            if key in seen and key not in phantom:
                summaries.append(self._summary(tx, key, aggs[key], events[key], key in writes.removed))
        record_span_evaluations(tx, seen)  # issue 11: gen_ai.evaluation.result events of these spans
        tx.upsert_sessions(summaries)
        if self.evaluate:  # issue 11
            enqueue_ended(tx, summaries)
        if late and self.settings.late_spans == "reject":
            tx.add_counter("late_spans_rejected", late)
        if self.sync and len(ordered) > len(phantom):
            enqueue_sync(tx.sql, [key for key in ordered if key not in phantom], time.time_ns())
        return len(ordered)

    def _records(self, work: Sequence[SpanRow], excl: int | None, roots: dict[tuple[str, str], str],
                 batch_ids: Container[tuple[str, str]], *, continuations: bool = True
                 ) -> tuple[list[dict[str, Any]], int]:
        """The turn records of these work rows (late ones left out after ``excl``), each with its component's
        root, and how many of the batch's spans were left out as late."""
        late = 0
        if excl is not None:
            late = sum(1 for r in work if r.start_ns > excl and (r.trace_id, r.span_id) in batch_ids)
            work = [r for r in work if r.start_ns <= excl]
        turns, _ = make_turns(work, self.settings, continuations=continuations)
        records = []
        for turn in turns:
            record = turn_record(turn)
            record["root_id"] = roots.get((turn.head.trace_id, turn.head.span_id))
            records.append(record)
        return records, late

    def _prefetch(self, tx: StoreTx, pairs: Sequence[tuple[Key, str, set[str]]],
                  batch: dict[tuple[str, str], SpanRow], writes: _Writes, fresh: bool = False) -> None:
        """What ``_apply_trace`` reads of each (session, trace) pair, for all the batch's pairs at once: the new
        spans, their parents and the children of those that may be in the session's tree (not of a session span:
        its children are every turn of a huge trace), in one look-up when the batch tells the kinds and parents
        (a span that joined by resolution, not in the batch, is looked up first); and whether the session's part
        of the trace has an LLM call continuing a turn. ``fresh``: every row of ``batch`` was just inserted, and
        its keys are the stored ones (``_resolve`` gave them theirs), so the batch's rows are not read back."""
        def in_tree(r: SpanRow, key: Key) -> bool:
            return r.kind not in _EVENT_KINDS and _row_key(r) == key

        unknown = {(key, t): sorted(i for i in ids if (t, i) not in batch) for key, t, ids in pairs}
        asked = [(key, t) for key, t, _ in pairs if unknown[(key, t)]]
        writes.context = {(key, t): {} for key, t, _ in pairs}
        for pair, found in zip(asked, tx.trace_contexts([(t, (), unknown[(key, t)]) for key, t in asked],
                                                        _ROW_COLUMNS), strict=True):
            for values in found:
                row = _parse(values)
                writes.context[pair][row[0].span_id] = row
        requests, asked = [], []
        for key, t, ids in pairs:
            stored = writes.context[(key, t)]
            known = {i: batch[(t, i)] for i in ids if (t, i) in batch}
            candidates = sorted({*(i for i, r in known.items() if r.kind not in _EVENT_KINDS),
                                 *(i for i in unknown[(key, t)] if i in stored and in_tree(stored[i][0], key))})
            parents = {r.parent_span_id for r in known.values()} | {
                stored[i][0].parent_span_id for i in candidates if i in stored}
            others = sorted({*known, *(p for p in parents if p is not None)} - set(candidates) - set(stored))
            if candidates or others:
                requests.append((t, candidates, others))
                asked.append((key, t))
                if fresh:  # the batch's rows are the stored ones (no root, no flags yet): not read back
                    for i in (*candidates, *others):
                        if (t, i) in batch:
                            stored.setdefault(i, (batch[(t, i)], None, None))
        span = _ROW_COLUMNS.index("span_id")
        # With ``fresh``, the batch's rows are not returned (``known``), its children of the candidates included:
        # those of the session's tree are among the pair's own spans (placed above), and the others (another
        # session's, held, events) are never part of its components, so the context has all that it reads.
        for pair, found in zip(asked, tx.trace_contexts(requests, _ROW_COLUMNS, batch if fresh else ()),
                               strict=True):
            context = writes.context[pair]
            for values in found:
                if values[span] not in context:
                    context[values[span]] = _parse(values)
        if self.settings.turns == "user" and pairs:
            writes.continuing = tx.continuing([(key, t) for key, t, _ in pairs])

    def _apply_trace(self, tx: StoreTx, key: Key, trace_id: str, span_ids: set[str], agg: dict[str, Any],
                     batch: dict[tuple[str, str], SpanRow], writes: _Writes) -> tuple[list[SpanRow], int]:
        """Recompute what the spans ``span_ids`` joining the session's part of this trace change; return those
        spans and how many of the batch's were left out as late."""
        def in_tree(r: SpanRow) -> bool:
            return r.kind not in _EVENT_KINDS and _row_key(r) == key

        stored = writes.context[(key, trace_id)]
        new = [stored[i][0] for i in sorted(span_ids) if i in stored and _row_key(stored[i][0]) == key]
        _observe(agg, new)
        work_new = [r for r in new if in_tree(r)]
        if not work_new:
            return new, 0
        mode = self.settings.turns
        whole = mode == "trace"
        if mode == "user" and not whole and (
                any(_flags(r) for r in work_new) or (key, trace_id) in writes.continuing):
            agents = [r.span_id for r in work_new if r.kind in (KIND_AGENT, KIND_CHAIN)]
            whole = not tx.trace_has(key, trace_id, "agents", agents)
        roots: dict[str, str] = {}
        new_ids = {r.span_id for r in work_new}

        if not whole:
            # a stored parent without a root: recompute
            whole = any(_root_of(r, key, stored, new_ids, roots) is None for r in work_new)
        if whole:
            rows = [_parse(v) for v in tx.pair_rows([(key, trace_id)], _ROW_COLUMNS)]
            work = [r for r, _, _ in rows if in_tree(r)]
            all_roots = component_roots(work)
            tx.set_roots([(all_roots[(r.trace_id, r.span_id)], _flags(r), r.trace_id, r.span_id)
                          for r, root, flags in rows if in_tree(r)
                          and (root, flags) != (all_roots[(r.trace_id, r.span_id)], _flags(r))])
            for contrib in tx.turn_contribs(key, trace_id, None):
                _add(agg, contrib, -1)
            records, late = self._records(work, agg["excl"], all_roots, batch)
            tx.replace_turns(key, trace_id, None, records)
            writes.removed.add(key)
        else:
            # Components that join a new span's: its stored children's (a late parent), and its own former one
            # (a span replayed, or re-keyed, after its parent came).
            joins: set[tuple[str, str]] = set()
            for r, root, _ in stored.values():
                if root is None or not in_tree(r):
                    continue
                if r.span_id in new_ids:
                    joins.add((roots[r.span_id], root))
                elif r.parent_span_id in new_ids:
                    joins.add((roots[r.parent_span_id], root))
            merges = sorted((new, old) for new, old in joins if new != old)
            # A root that is itself merged away (its component's top got a new parent in this batch) is followed
            # to where it goes, so the updates below do not depend on their order.
            moved = dict((old, new) for new, old in merges)

            def final(root: str) -> str:
                for _ in range(len(moved) + 1):
                    if root not in moved:
                        break
                    root = moved[root]
                return root

            roots = {span_id: final(root) for span_id, root in roots.items()}
            merges = sorted({(final(new), old) for new, old in merges if final(new) != old})
            placed = [(roots[r.span_id], _flags(r), trace_id, r.span_id) for r in work_new]
            affected = set(roots.values()) | {new_root for new_root, _ in merges}
            gone = affected | {old for _, old in merges}
            fresh = {r.span_id for r in work_new if stored[r.span_id][1] is None}
            if not merges and gone <= fresh:
                # Components made only of spans never placed before: nothing stored has their roots, so there are
                # no turns to take away and the batch holds all their spans. Nothing later in the batch reads
                # these rows' roots or turns before the summaries: written for the whole batch at once.
                work = [r for r in work_new if roots[r.span_id] in gone]
                component_of = {(r.trace_id, r.span_id): roots[r.span_id] for r in work}
                records, late = self._records(work, agg["excl"], component_of, batch, continuations=False)
                # (the spans stored with these roots already, ``_placed_at_insert``, need no update)
                known = writes.placed
                writes.roots.extend(p for p in placed if known.get((trace_id, p[3])) != (p[0], p[1]))
                # Made into the statement's values now: a tuple of strings and numbers, which the collector stops
                # tracking, where the record (a dict with lists) would stay tracked until the batch is written.
                writes.turns.extend(turn_values(key, record) for record in records)
            else:
                tx.set_roots(placed)
                tx.merge_roots(key, trace_id, merges)
                writes.removed.add(key)
                component = [_parse(v) for v in tx.component_rows(key, trace_id, sorted(affected), _ROW_COLUMNS)]
                work = [r for r, _, _ in component if in_tree(r)]
                component_of = {(r.trace_id, r.span_id): root for r, root, _ in component if root is not None}
                for contrib in tx.turn_contribs(key, trace_id, sorted(gone)):
                    _add(agg, contrib, -1)
                # Components of a trace where the tool round trip rule is off (whole traces are recomputed
                # otherwise).
                records, late = self._records(work, agg["excl"], component_of, batch, continuations=False)
                tx.replace_turns(key, trace_id, sorted(gone), records)
        for record in records:
            _add(agg, _contrib(record), 1)
        _extremes(agg, records)
        return new, late

    def _summary(self, tx: StoreTx, key: Key, agg: dict[str, Any], events: Sequence[SpanRow], removed: bool
                 ) -> dict[str, Any]:
        """The sessions row from the aggregates, the session's events and (``removed``: the batch took stored
        turns away, so the kept first / last / model turn may be gone; or strict) index lookups on its stored
        turns (the same values ``Assembly.summary`` gives from all rows)."""
        sessions = [r for r in events if r.kind == KIND_SESSION]
        markers = [r for r in events if r.kind == KIND_MARKER]
        starts = [r for r in markers if r.session_event == EVENT_START]
        ends = _ends(sessions, markers)
        status, error, ended_ns = "PENDING", None, None
        if ends:
            end_ns, failed, message = ends[-1]
            if not (self.settings.late_spans == "reopen" and agg["astart"] is not None and agg["astart"] > end_ns):
                status, ended_ns = ("FAILED" if failed else "COMPLETED"), end_ns
                error = (message or None) if failed else None
        first_failed = self.settings.strict and status == "COMPLETED"
        if removed or first_failed:
            facts = tx.turn_facts(key, first_failed)
            agg["f"] = [_order(facts["first"]), facts["first"]["input"]] if facts["first"] else None
            agg["l"] = [_order(facts["last"]), facts["last"]["output"]] if facts["last"] else None
            agg["m"] = [facts["model_at"], facts["model"]] if facts["model_at"] else None
        else:
            facts = {"first": None, "last": None, "model": agg["m"][1] if agg["m"] else None, "failed": None}
        if facts["failed"] is not None:
            status, error = "FAILED", f"turn {facts['failed'][0]} failed: {facts['failed'][1]}"
        described = [*reversed(sessions), *reversed(starts)]

        def pick(attr: str, name: str) -> Any:
            found = next((getattr(r, attr) for r in described if getattr(r, attr)), None)
            return found or (agg[name][1] if agg[name] else None)

        test_case_id = pick("test_case_id", "tc")
        head = sessions[-1] if sessions else (starts[-1] if starts else None)
        first_input = agg["f"][1] if agg["f"] else None
        last_output = agg["l"][1] if agg["l"] else None
        n = agg["n"]
        exact = _exact(agg["cost"][0])
        cost = agg["cost"] = [str(exact), agg["cost"][1]]
        return {
            "custom_id": key[0], "version": key[1], "project": key[2], "status": status, "error": error,
            "test_case_id": test_case_id,
            "context": pick("context", "ctx") or (tx.test_case_context(test_case_id) if test_case_id else None),
            "metadata": _json_object(head.metadata) if head is not None else {},
            "started_ns": agg["start"], "ended_ns": ended_ns, "last_activity_ns": agg["act"],
            "turn_count": n,
            **{column: agg[name][0] if agg[name][1] else None for column, name in _SUMS},
            "cost": round_cost(float(exact)) if cost[1] else None,
            "latency_ms": latency_total(agg["lat"]) if n else None,
            "user_id": pick("user_id", "user"),
            "first_input": first_input,
            "last_output": last_output,
            "model": facts["model"],
            "assembly": self._assembly_settings,
            "agg": self._dump_agg(key, agg),
        }

    def _dump_agg(self, key: Key, agg: dict[str, Any]) -> str:
        """``agg`` as stored: the first turn's input and the last turn's output (``f``, ``l``) without their texts,
        which the sessions row holds already (``first_input``, ``last_output``; ``_load_agg`` puts them back)."""
        stored = dict(agg)
        for name in ("f", "l"):
            if stored[name] is not None:
                stored[name] = [stored[name][0], None]
        text = _SORTED_JSON.encode(stored)
        if len(self._aggs) >= _AGGS_KEPT:
            self._aggs.clear()
        self._aggs[key] = (text, stored)
        return text

    def _load_agg(self, key: Key, state: tuple[str | None, str, str | None, str | None]) -> dict[str, Any]:
        """A stored ``agg`` (``_dump_agg``; an earlier one kept the texts in it) with its texts from the sessions
        row. The value ``_dump_agg`` kept for the same text is used as it is (a copy of its top level: the
        aggregates only ever replace their nested lists, never change one in place)."""
        kept = self._aggs.get(key)
        agg: dict[str, Any] = dict(kept[1]) if kept is not None and kept[0] == state[0] \
            else json.loads(state[0] or "{}")
        for name, text in (("f", state[2]), ("l", state[3])):
            if agg.get(name) is not None and agg[name][1] is None:
                agg[name] = [agg[name][0], text]
        return agg

    def reassemble(self, keys: Sequence[AnyKey]) -> int:
        """Rebuild these sessions' records from their stored rows (``galtea-otel reprice``: new prices)."""
        with self.store.transaction() as tx:
            return self._reassemble(tx, {full_key(k) for k in keys})

    # --- housekeeping ---------------------------------------------------------------------------------------------

    def sweep(self, now_ns: int | None = None) -> dict[str, int]:
        """Close idle sessions and settle held spans whose key never came. Returns counts."""
        now = now_ns if now_ns is not None else time.time_ns()
        counts = {"idle_closed": 0, "orphan_sessions": 0, "orphans_dropped": 0}
        idle_ns, hold_ns = self._sweep_delays()
        idle_before, hold_before = now - idle_ns, now - hold_ns
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
                markers = [_idle_marker(key, now) for key in idle]
                tx.insert_spans(markers)
                self._apply(tx, {key: {m.trace_id: {m.span_id}} for key, m in zip(idle, markers, strict=True)})
                counts["idle_closed"] = len(idle)
            for name, value in counts.items():
                if value:
                    tx.add_counter(name, value)
        return counts

    def next_sweep_ns(self) -> int | None:
        """The first moment (``time.time_ns()``) at which :meth:`sweep` would have something to do, given what is
        stored now: the longest-quiet PENDING session passing ``idle_close_minutes``, or the oldest held trace
        passing ``hold_seconds``; None when nothing waits for a sweep (only new spans bring work then). A
        deferred receiver's assembler leaves when this is far off, and is started again at it."""
        with self.store.transaction() as tx:
            activity, arrival = tx.sweep_marks()
        idle_ns, hold_ns = self._sweep_delays()
        due = [mark + delay + 1 for mark, delay in ((activity, idle_ns), (arrival, hold_ns)) if mark is not None]
        return min(due, default=None)

    def _sweep_delays(self) -> tuple[int, int]:
        return int(self.settings.idle_close_minutes * 60e9), int(self.settings.hold_seconds * 1e9)

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
    """One session's full record: its stored turns and summary with the span trees of its rows (no
    reassembly); a session not materialized yet (a v5 store's, untouched since) or asked for with other
    settings than it was written with is assembled from its rows, as before. ``key``: (custom_id, version,
    project), or (custom_id, version) for the default project's."""
    key = full_key(key)
    summary = store.read_session_summary(key)
    if summary is None:
        return None
    stored = PipelineSettings(**json.loads(summary["assembly"] or "{}"))
    if summary.get("agg") is not None and (settings is None or _same_assembly(settings, stored)):
        detail = detail_from_records(summary, store.read_turns(key), store.read_session_rows(key),
                                     summary["ended_ns"])
        return with_evaluations(store, key, detail)
    rows = store.read_session_rows(key)
    if settings is None:
        settings = stored
    case = next((r.test_case_id for r in rows if r.test_case_id), None)
    context = None
    if case:
        test_case = store.get_test_case(case)
        context = test_case.context if test_case else None
    assembly = assemble(rows, key[0], key[1], settings, context)
    if assembly is None:
        return None
    return with_evaluations(store, key, to_detail(assembly).model_copy(update={"project": key[2]}))


def _same_assembly(a: PipelineSettings, b: PipelineSettings) -> bool:
    return (a.turns, a.late_spans, a.strict) == (b.turns, b.late_spans, b.strict)


Dirty = dict[Key, "dict[str, set[str]] | None"]
_EVENT_KINDS = (KIND_SESSION, KIND_MARKER)
_ROW_COLUMNS = (*COLUMNS, *EXTRA_COLUMNS)
_WIDTH = len(COLUMNS)


def _parse(values: Sequence[Any]) -> tuple[SpanRow, str | None, int | None]:
    """A stored span row with its store-managed ``root_id`` and ``flags``."""
    return row_from_tuple(values[:_WIDTH]), values[_WIDTH], values[_WIDTH + 1]


def _root_of(row: SpanRow, key: Key, stored: dict[str, tuple[SpanRow, str | None, int | None]], new_ids: set[str],
             roots: dict[str, str]) -> str | None:
    """The root of a new span of the session's part of a trace (``Pipeline._apply_trace``): its own id at the top
    of the tree, its new parent's root, or its stored parent's (None: that parent has none yet). Memoized in
    ``roots``. A loop up the parents, not a recursion: spans whose parents form a cycle (bad input the pipeline
    fuzz target sends) stop after 1,000 steps, where that span counts as the top, and never exhaust the stack."""
    chain: list[str] = []
    current = row
    found: str | None
    while True:
        if current.span_id in roots:
            found = roots[current.span_id]
            break
        parent = stored.get(current.parent_span_id) if current.parent_span_id else None
        if parent is None or parent[0].kind in _EVENT_KINDS or _row_key(parent[0]) != key or len(chain) > 1000:
            found = current.span_id
            break
        if parent[0].span_id not in new_ids:
            found = parent[1]
            break
        chain.append(current.span_id)
        current = parent[0]
    if found is not None:
        roots[current.span_id] = found
        for span_id in chain:
            roots[span_id] = found
    return found


def _placed_at_insert(rows: dict[tuple[str, str], SpanRow]) -> dict[tuple[str, str], tuple[str, int]]:
    """The (root_id, flags) a batch's fully keyed spans are inserted with: what ``Pipeline._apply_trace`` gives
    them when their parents are what the batch tells. The root is the top of the span's chain of parents inside
    the batch (same session, not a session span or marker), or the span itself when its parent is not in the
    batch: a parent ends after its children, so it comes in this batch or a later one, and a span whose parent is
    not stored is the top of its part of the session. So the common batch (new spans of new turns, under a session
    span still open) writes each row once. A guess, never trusted: ``_apply_trace`` writes every root that differs
    from it (``_Writes.placed``), in the same transaction, before any later read of those roots."""
    # The batch's few session keys and (root, flags) pairs, one tuple each however many spans share it: tuples
    # that outlive the batch's statements count towards the collector's next collection, one made per span did.
    shared: dict[Any, Any] = {}
    keys = {ident: shared.setdefault(key, key) for ident, r in rows.items()
            if r.kind not in _EVENT_KINDS and fully_keyed(r) and (key := _row_key(r)) is not None}
    tops: dict[tuple[str, str], str] = {}
    placed: dict[tuple[str, str], tuple[str, int]] = {}
    for ident, key in keys.items():
        top = tops.get(ident)
        if top is None:
            chain = [ident]
            current = rows[ident]
            while True:
                parent_id = current.parent_span_id
                parent = (current.trace_id, parent_id or "")
                if parent_id is None or keys.get(parent) != key or len(chain) > 1000:
                    top = current.span_id
                    break
                top = tops.get(parent)
                if top is not None:
                    break
                chain.append(parent)
                current = rows[parent]
            for link in chain:
                tops[link] = top
        pair = (top, _flags(rows[ident]))
        placed[ident] = shared.setdefault(pair, pair)
    return placed


def _flags(row: SpanRow) -> int:
    return FLAG_CONTINUES if row.kind == KIND_LLM and ends_with_tool_result(row) else 0


def _contrib(record: dict[str, Any]) -> tuple[Any, ...]:
    return _CONTRIB(record)  # type: ignore[no-any-return]


_CONTRIB = operator.itemgetter(*CONTRIB_COLUMNS)  # a tuple: CONTRIB_COLUMNS has several columns
_SUMS = (("input_tokens", "in"), ("output_tokens", "out"), ("total_tokens", "tot"), ("cache_read_tokens", "cache"))


def _row_key(row: SpanRow) -> Key | None:
    """The session key a row is resolved to (None while it is held)."""
    return ((row.custom_id, row.version, row.project)
            if row.custom_id is not None and row.version is not None else None)


def _mark(dirty: Dirty, key: Key, trace_id: str, span_id: str) -> None:
    traces = dirty.setdefault(key, {})
    if traces is not None:
        traces.setdefault(trace_id, set()).add(span_id)


@dataclass
class _Writes:
    """What one batch writes once for all its sessions: span roots and new turns (of components made only of new
    spans), and the sessions whose stored turns it took some away from."""

    roots: list[tuple[str | None, int, str, str]] = field(default_factory=list)
    # (root_id, flags) the batch's spans were inserted with (``_placed_at_insert``; only when all were new)
    placed: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    turns: list[tuple[Any, ...]] = field(default_factory=list)  # turn_values rows
    removed: set[Key] = field(default_factory=set)
    # read for all the batch's (session, trace) pairs before any is applied (``Pipeline._prefetch``)
    context: dict[tuple[Key, str], dict[str, tuple[SpanRow, str | None, int | None]]] = field(default_factory=dict)
    continuing: set[tuple[Key, str]] = field(default_factory=set)


def _order(record: dict[str, Any]) -> list[Any]:
    """A turn's place in its session (the turns table's ``ORDER``)."""
    return [record["start_ns"], record["end_ns"], record["trace_id"], record["span_id"]]


def _extremes(agg: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    """Fold new turns into the session's first turn (its input), last turn (its output) and first turn with a
    model, kept in ``agg`` as [order, value]: while turns are only added, a comparison replaces the look-ups."""
    for record in records:
        order = _order(record)
        if agg["f"] is None or order < agg["f"][0]:
            agg["f"] = [order, record["input"]]
        if agg["l"] is None or order > agg["l"][0]:
            agg["l"] = [order, record["output"]]
        if record["model"] is not None and (agg["m"] is None or order < agg["m"][0]):
            agg["m"] = [order, record["model"]]


def _new_agg() -> dict[str, Any]:
    """A session's exact aggregates: turn count, [sum, how many turns had a value] of each token count, the cost
    as an exact fraction, latency in ns; min start / max end / max activity start over its rows; the earliest
    row's test case, context and user ([order, value]); ``excl``: the end after which spans were left out; ``f``,
    ``l``, ``m``: the first turn's input, the last's output, the first model (``_extremes``)."""
    return {"f": None, "l": None, "m": None,
            "n": 0, "in": [0, 0], "out": [0, 0], "tot": [0, 0], "cache": [0, 0], "cost": ["0", 0], "lat": 0,
            "start": None, "act": None, "astart": None, "tc": None, "ctx": None, "user": None, "excl": None}


def _add(agg: dict[str, Any], contrib: Sequence[Any], sign: int) -> None:
    """Add (sign 1) or take away (-1) one turn's ``CONTRIB_COLUMNS``: exact integer and fraction sums, so the
    result never depends on the order turns came and went in."""
    agg["n"] += sign
    for (_, name), value in zip(_SUMS, contrib[:4], strict=True):
        if value is not None:
            agg[name] = [agg[name][0] + sign * int(value), agg[name][1] + sign]
    if contrib[4] is not None:
        # Kept exact in integers while the batch runs (``_plus``; ``_summary`` writes it back as a string):
        # parsing the sum's string, or a Fraction's gcd, for every turn cost as much as the rest of the aggregates.
        agg["cost"] = [_plus(agg["cost"][0], sign, float(contrib[4])), agg["cost"][1] + sign]
    agg["lat"] += sign * int(contrib[5])


# json.dumps(value, sort_keys=True), without making an encoder per call
_SORTED_JSON = json.JSONEncoder(sort_keys=True)
_AGGS_KEPT = 1024  # sessions whose last written agg a Pipeline keeps (about 3 KB each)


def _plus(total: Any, sign: int, value: float) -> Any:
    """``total + sign * value``, exactly. While a batch runs, a sum is kept as (numerator, denominator) with a power
    of two for denominator (a float is n / 2**k): integer arithmetic, no Fraction (its gcd) per turn; ``_exact``
    gives the Fraction back. Any other total (a string from ``agg``, a Fraction) is converted first."""
    n, d = value.as_integer_ratio()
    if not isinstance(total, tuple):
        if isinstance(total, str) and total.isascii() and total.lstrip("-").replace("/", "", 1).isdigit():  # "n/d", "n"
            numerator, _, denominator = total.partition("/")
            total = (int(numerator), int(denominator or 1))
        else:
            exact = Fraction(total)
            total = (exact.numerator, exact.denominator)
        if total[1] & (total[1] - 1):  # not a power of two (not a sum of floats): plain Fraction arithmetic
            return Fraction(*total) + sign * Fraction(n, d)
    num, den = total
    if d <= den:
        return (num + sign * n * (den // d), den)
    return (num * (d // den) + sign * n, d)


def _exact(total: Any) -> Fraction:
    """The exact value of a cost sum (``_plus``)."""
    return Fraction(*total) if isinstance(total, tuple) else Fraction(total)


def _observe(agg: dict[str, Any], rows: Sequence[SpanRow]) -> None:
    """Fold rows into the order-independent extremes of ``agg`` (a min or a max never depends on order)."""
    if not rows:
        return
    start, act = min(r.start_ns for r in rows), max(r.end_ns for r in rows)
    agg["start"] = start if agg["start"] is None else min(agg["start"], start)
    agg["act"] = act if agg["act"] is None else max(agg["act"], act)
    active = [r.start_ns for r in rows if r.kind not in _EVENT_KINDS or r.session_event == EVENT_START]
    if active:
        astart = max(active)
        agg["astart"] = astart if agg["astart"] is None else max(agg["astart"], astart)
    for r in rows:
        if not (r.test_case_id or r.context or r.user_id):  # most spans: none of the three
            continue
        for name, value in (("tc", r.test_case_id), ("ctx", r.context), ("user", r.user_id)):
            if value:
                order = list(order_key(r))
                if agg[name] is None or order < agg[name][0]:
                    agg[name] = [order, value]


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
