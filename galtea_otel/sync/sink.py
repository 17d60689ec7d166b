"""Reconcile one session with the Galtea platform: send what it lacks, never anything twice.

:meth:`GalteaSink.sync_session` reads the session's full record from the store and what the platform is known to
hold (``Outbox.state``, :mod:`galtea_otel.sync.outbox`), then:

1. the session: its remembered platform id, else the one found by custom id within its version
   (``GET sessions?customIds[]=..&versionIds[]=..``), else ``POST sessions``; the id is stored at once;
2. its turns, in order: a turn with a remembered id is not created again; before a turn is created, the exact
   body about to be sent is stored (``galtea_sync_intents``, committed before the request). When some turns are
   unknown and the session existed before this pass, the platform's turns of the session are listed and a turn
   already there (a creation whose answer was lost) is adopted instead of created: the one matching the body
   that was *sent* (the intent), not the turn as it is now, which may have changed since (its output grew, its
   tokens arrived); it is then updated to the current fields by step 3. Every id is stored as soon as it is known
   (which ends the intent, in the same transaction);
   a turn the platform holds (or may hold: an intent) whose local turn no longer exists, because reassembly made
   another span its head (a late outer LLM span folded the earlier-sent inner one into it), is deleted there
   (``DELETE inferenceResults/{id}``, the SDK's ``traces.delete``; a 404 counts as done) and forgotten here;
3. the turns that changed since they were sent (a nested LLM span arriving late fills tokens and cost, a streamed
   output grows, a turn becomes FAILED, the session is reassembled): each turn's fields as last sent are
   remembered as a digest (``galtea_sync_turns.fingerprint``); a turn whose digest differs is updated with
   ``PATCH inferenceResults/{id}`` (the SDK's ``TraceUpdate`` with every field the turn has, not a difference:
   sending it twice changes nothing, so a retried or repeated PATCH is safe), and the new digest is stored once
   the platform answered;
4. the spans of each turn not sent yet (also those arriving after the turn was created), by ``traces/batch``
   with their own ids (``trace_<span id>``); for a turn not created in this pass, the spans the platform already
   holds are listed first and skipped;
5. its evaluations (:mod:`galtea_otel.sync.evaluations`): each once, on the session or on its turn, superseded
   ones deleted;
6. the status: COMPLETED / FAILED with ``PATCH sessions/{id}/finish`` (FAILED carries the error), back to PENDING
   (reopened) with ``PATCH sessions/{id}``; changed context or metadata with ``PATCH sessions/{id}``.

Spans outside any turn have no place on the platform (a Galtea span belongs to a turn) and are not sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from galtea_otel.pipeline import read_session
from galtea_otel.records import SessionDetail
from galtea_otel.store.base import Key, Store
from galtea_otel.sync import payloads
from galtea_otel.sync.client import GalteaHttp, Refused
from galtea_otel.sync.config import VERSION_FACT, GalteaSyncConfig
from galtea_otel.sync.evaluations import EvaluationSync, MetricResolver
from galtea_otel.sync.outbox import Outbox, open_outbox
from galtea_otel.sync.schema import SyncState, TurnState

log = logging.getLogger("galtea_otel.sync")
PAGE = 1000


@dataclass
class Outcome:
    """What one pass over a session did. ``already_there``: nothing needed sending."""

    sessions_created: int = 0
    sessions_found: int = 0
    turns_created: int = 0
    turns_found: int = 0
    turns_updated: int = 0
    turns_deleted: int = 0
    spans_created: int = 0
    spans_found: int = 0
    status_updates: int = 0
    evaluations_created: int = 0
    evaluations_found: int = 0
    evaluations_deleted: int = 0
    evaluations_skipped: int = 0
    rejected_spans: list[str] = field(default_factory=list)
    rejected_evaluations: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return (self.sessions_created + self.turns_created + self.turns_updated + self.turns_deleted
                + self.spans_created + self.status_updates + self.evaluations_created + self.evaluations_deleted)

    @property
    def already_there(self) -> bool:
        return self.sent == 0

    def add(self, other: Outcome) -> None:
        for name in ("sessions_created", "sessions_found", "turns_created", "turns_found", "turns_updated",
                     "turns_deleted", "spans_created", "spans_found", "status_updates", "evaluations_created",
                     "evaluations_found", "evaluations_deleted", "evaluations_skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected_spans += other.rejected_spans
        self.rejected_evaluations += other.rejected_evaluations


class VersionResolver:
    """Version string -> platform version id, as configured (:class:`galtea_otel.sync.config.VersionMapping`)."""

    def __init__(self, config: GalteaSyncConfig, http: GalteaHttp) -> None:
        self.mapping = config.versions
        self.http = http
        self._cache: dict[str, str] = {}

    def resolve(self, version: str, project: str = "default") -> str:
        if project != "default":  # issue 12: another project's sessions go to its own product
            return self._resolve_in_project(version, project)
        found = self.mapping.version_ids.get(version) or self._cache.get(version)
        if found:
            return found
        if self.mapping.product_id is None:
            star = self.mapping.version_ids.get("*")
            if star:
                return star
            raise Refused(0, f"version {version!r} has no Galtea version id: add it to the version map "
                             "(GALTEA_VERSION_MAP) or name a product (GALTEA_PRODUCT_ID)")
        found = self._in_product(self.mapping.product_id, version, where="",
                                 star=self.mapping.version_ids.get("*"), mapped=True)
        self._cache[version] = found
        return found

    def _resolve_in_project(self, version: str, project: str) -> str:
        product = self.mapping.project_products.get(project)
        if not product:
            raise Refused(0, f"project {project!r} has no Galtea product: map it in GALTEA_PROJECT_PRODUCTS"
                             f' (e.g. {{"{project}": "<product id>"}})')
        cache_key = f"{product}\0{version}"
        found = self._cache.get(cache_key)
        if found:
            return found
        found = self._in_product(product, version, where=f" (project {project!r})", star=None, mapped=False)
        self._cache[cache_key] = found
        return found

    def _in_product(self, product: str, version: str, *, where: str, star: str | None, mapped: bool) -> str:
        """The id of ``product``'s version named ``version``: found by name, else ``star`` (the version map's
        ``*``), else created when ``GALTEA_CREATE_VERSIONS`` allows. ``where`` names the project in messages;
        ``mapped``: the version map applies (the default project), so the messages point to it."""
        rows = self.http.get("versions", params=[("productIds[]", product), ("names[]", version)])
        matches = [r for r in rows or [] if isinstance(r, dict) and r.get("id")]
        if len(matches) > 1:
            raise Refused(0, f"{len(matches)} versions of product {product}{where} are named {version!r}"
                             + (": map it to one in GALTEA_VERSION_MAP" if mapped else ""))
        if matches:
            return str(matches[0]["id"])
        if star:
            return star
        if self.mapping.create_versions:
            created = self.http.post("versions/get-or-create",
                                     {"productId": product, "facts": {VERSION_FACT: version}, "name": version})
            return str(created["id"])
        raise Refused(0, f"product {product}{where} has no version named {version!r}: create it on the platform, "
                         + ("map it in GALTEA_VERSION_MAP, or set GALTEA_CREATE_VERSIONS=1" if mapped
                            else "or set GALTEA_CREATE_VERSIONS=1"))


class GalteaSink:
    def __init__(self, store: Store, config: GalteaSyncConfig, http: GalteaHttp,
                 outbox: Outbox | None = None) -> None:
        self.store = store
        self.outbox = outbox or open_outbox(store)
        self.config = config
        self.http = http
        self.versions = VersionResolver(config, http)
        self.evaluations = EvaluationSync(store, http, MetricResolver(http))

    def sync_session(self, key: Key) -> tuple[Outcome, int | None]:
        """Send what the platform lacks of this session. Returns what was done and the session's
        ``updated_ns`` as read (None: the session is gone from the store, nothing to do)."""
        outcome = Outcome()
        state = self.outbox.state(key)
        if state is None:
            return outcome, None
        detail = read_session(self.store, key)
        if detail is None:
            return outcome, None
        fresh = self._session(key, detail, state, outcome)
        assert state.platform_id is not None
        fresh_turns = self._turns(key, detail, state, fresh, outcome)
        self._update_turns(key, detail, state, outcome)
        self._spans(key, detail, state, fresh_turns, outcome)
        self._evaluations(key, detail, state, outcome)
        self._status(key, detail, state, outcome)
        return outcome, state.session_updated_ns

    # --- steps ----------------------------------------------------------------------------------------------

    def _save_session(self, key: Key, state: SyncState) -> None:
        self.outbox.save_session(key, state.platform_id, state.version_id, state.status, state.fingerprint)

    def _save_turn(self, key: Key, turn_key: str, turn: TurnState) -> None:
        self.outbox.save_turn(key, turn_key, turn.platform_id, turn.spans_sent, turn.fingerprint)

    def _session(self, key: Key, detail: SessionDetail, state: SyncState, outcome: Outcome) -> bool:
        """Make sure the platform holds the session; True when it was created in this pass."""
        if state.platform_id is not None:
            return False
        version_id = state.version_id or self.versions.resolve(detail.version, key[2])
        state.version_id = version_id
        found = self._find_session(detail.custom_id, version_id)
        if found is not None:
            state.platform_id = str(found["id"])
            state.status = str(found.get("status") or "PENDING").upper()
            state.fingerprint = None  # unknown: sent again (a PATCH) if it differs
            outcome.sessions_found += 1
            self._save_session(key, state)
            return False
        created = self.http.post("sessions", payloads.create_session(detail, version_id))
        state.platform_id = str(created["id"])
        state.status = str(created.get("status") or "PENDING").upper()
        state.fingerprint = payloads.fingerprint(detail)
        outcome.sessions_created += 1
        self._save_session(key, state)
        return True

    def _find_session(self, custom_id: str, version_id: str) -> dict[str, Any] | None:
        rows = self.http.get("sessions", params=[("customIds[]", custom_id), ("versionIds[]", version_id)])
        matches = [r for r in rows or [] if isinstance(r, dict) and r.get("customId") == custom_id and r.get("id")]
        return matches[0] if matches else None

    def _turns(self, key: Key, detail: SessionDetail, state: SyncState, fresh: bool, outcome: Outcome) -> set[str]:
        """Make sure the platform holds every turn of the session and no turn it no longer has; returns the turn
        keys created in this pass.

        A turn is created only after the exact body about to be sent is recorded (``sync_save_intent``,
        committed before the request); the intent ends when the platform id is recorded. A turn still holding an
        intent had its creation's answer lost: the platform turn that matches the *intended* body is adopted (it
        is then updated to the turn's current fields by ``_update_turns``), whatever the turn became since.
        A turn known to the platform (or intended for it) whose local turn no longer exists (reassembly made
        another span its head) is deleted there and forgotten here."""
        assert state.platform_id is not None
        local = {payloads.turn_key(t) for t in detail.inference_results}
        missing = [t for t in detail.inference_results if payloads.turn_key(t) not in state.turns]
        stale_intents = {k: body for k, body in state.intents.items() if k not in local and k not in state.turns}
        remote: list[dict[str, Any]] = []
        if not fresh and (missing or stale_intents):
            known = {t.platform_id for t in state.turns.values()}
            remote = [r for r in self._list("inferenceResults", "sessionIds[]", state.platform_id)
                      if r.get("id") not in known]
        # The platform turns some of ours already are: by intended body, else (a turn with no intent: a store
        # of schema v3 whose creation was lost, or one whose sync state was lost) by its current content.
        adopted: dict[str, dict[str, Any]] = {}
        for turn in missing:
            tkey = payloads.turn_key(turn)
            body = state.intents.get(tkey) or payloads.create_turn(turn, state.platform_id)
            match = next((r for r in remote if payloads.same_turn(r, body)), None)
            if match is not None:
                remote.remove(match)
                adopted[tkey] = match
        self._remove_stale(key, state, local, stale_intents, remote, outcome)
        created: set[str] = set()
        for turn in missing:
            tkey = payloads.turn_key(turn)
            match = adopted.get(tkey)
            if match is not None:
                tstate = TurnState(str(match["id"]))
                if payloads.turn_is_current(match, payloads.update_turn(turn)):
                    tstate.fingerprint = payloads.turn_fingerprint(turn)  # else None: updated by _update_turns
                outcome.turns_found += 1
            else:
                body = payloads.create_turn(turn, state.platform_id)
                self.outbox.save_intent(key, tkey, body)
                state.intents[tkey] = body
                tstate = TurnState(str(self.http.post("inferenceResults", body)["id"]),
                                   fingerprint=payloads.turn_fingerprint(turn))
                created.add(tkey)
                outcome.turns_created += 1
                if state.status in ("COMPLETED", "FAILED"):
                    state.status = "PENDING"  # a turn for a closed session reopens it (the platform's default)
                    self._save_session(key, state)
            state.turns[tkey] = tstate
            self._save_turn(key, tkey, tstate)  # ends the intent in the same transaction
            state.intents.pop(tkey, None)
        return created

    def _remove_stale(self, key: Key, state: SyncState, local: set[str], stale_intents: dict[str, dict[str, Any]],
                      remote: list[dict[str, Any]], outcome: Outcome) -> None:
        """Delete from the platform the turns whose local turn no longer exists, and forget them. A turn whose
        creation's answer was lost is looked up by its intended body among ``remote`` (the platform turns of the
        session no other turn is known or adopted as). A 404 counts as deleted: a DELETE sent again after its
        answer was lost, or a turn deleted on the platform by someone else."""
        for tkey in [k for k in state.turns if k not in local]:
            self._delete_turn(state.turns[tkey].platform_id)
            self.outbox.forget_turn(key, tkey)
            del state.turns[tkey]
            state.intents.pop(tkey, None)
            outcome.turns_deleted += 1
        for tkey, body in stale_intents.items():
            match = next((r for r in remote if payloads.same_turn(r, body)), None)
            if match is not None:
                remote.remove(match)
                self._delete_turn(str(match["id"]))
                outcome.turns_deleted += 1
            self.outbox.forget_turn(key, tkey)
            state.intents.pop(tkey, None)

    def _delete_turn(self, platform_id: str) -> None:
        try:
            self.http.delete(f"inferenceResults/{platform_id}")
        except Refused as exc:
            if exc.status != 404:
                raise

    def _update_turns(self, key: Key, detail: SessionDetail, state: SyncState, outcome: Outcome) -> None:
        """Update on the platform every turn that changed since it was last sent (or whose state is unknown: a
        turn sent by a galtea-otel that kept no digest, a turn adopted that differs from the platform's)."""
        for turn in detail.inference_results:
            tkey = payloads.turn_key(turn)
            tstate = state.turns[tkey]
            fingerprint = payloads.turn_fingerprint(turn)
            if tstate.fingerprint == fingerprint:
                continue
            self.http.patch(f"inferenceResults/{tstate.platform_id}", payloads.update_turn(turn))
            tstate.fingerprint = fingerprint
            outcome.turns_updated += 1
            self._save_turn(key, tkey, tstate)

    def _list(self, path: str, filter_name: str, value: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.http.get(path, params=[(filter_name, value), ("limit", str(PAGE)), ("offset", str(offset))])
            rows = [r for r in page or [] if isinstance(r, dict)]
            found += rows
            if len(rows) < PAGE:
                return found
            offset += PAGE

    def _spans(self, key: Key, detail: SessionDetail, state: SyncState, fresh_turns: set[str],
               outcome: Outcome) -> None:
        for turn in detail.inference_results:
            tkey = payloads.turn_key(turn)
            tstate = state.turns[tkey]
            bodies = [b for b in payloads.turn_spans(turn, tstate.platform_id) if b["id"] not in tstate.spans_sent]
            if not bodies:
                continue
            if tkey not in fresh_turns:  # an earlier pass may have created some whose answer was lost
                there = {str(r.get("id")) for r in self._list("traces", "inferenceResultIds[]", tstate.platform_id)}
                already = [b for b in bodies if b["id"] in there]
                if already:
                    outcome.spans_found += len(already)
                    tstate.spans_sent.update(b["id"] for b in already)
                    self._save_turn(key, tkey, tstate)
                bodies = [b for b in bodies if b["id"] not in there]
            size = self.config.span_batch_size
            for start in range(0, len(bodies), size):
                chunk = bodies[start:start + size]
                reply = self.http.post("traces/batch", {"traces": chunk}, params={"includeRejected": "true"})
                created, rejected = _read_batch(reply, chunk)
                outcome.spans_created += len(created)
                outcome.rejected_spans += rejected
                # A refused span is not sent again by later passes (it would be refused again); it is reported.
                tstate.spans_sent.update(b["id"] for b in chunk)
                self._save_turn(key, tkey, tstate)

    def _evaluations(self, key: Key, detail: SessionDetail, state: SyncState, outcome: Outcome) -> None:
        assert state.platform_id is not None
        turn_ids = {t.id: state.turns[payloads.turn_key(t)].platform_id for t in detail.inference_results}
        done = self.evaluations.run(key, detail, state.platform_id, turn_ids)
        outcome.evaluations_created += done.created
        outcome.evaluations_found += done.found
        outcome.evaluations_deleted += done.deleted
        outcome.evaluations_skipped += done.skipped
        outcome.rejected_evaluations += done.refused

    def _status(self, key: Key, detail: SessionDetail, state: SyncState, outcome: Outcome) -> None:
        sid = state.platform_id
        changed = payloads.fingerprint(detail)
        if state.fingerprint != changed:
            self.http.patch(f"sessions/{sid}", payloads.update_session(detail))
            state.fingerprint = changed
            outcome.status_updates += 1
            self._save_session(key, state)
        if detail.status == state.status:
            return
        if detail.status in ("COMPLETED", "FAILED"):
            self.http.patch(f"sessions/{sid}/finish", payloads.finish_session(detail, self.config.stopping_reason))
        else:
            self.http.patch(f"sessions/{sid}", payloads.update_session(detail, status="PENDING"))
        state.status = detail.status
        outcome.status_updates += 1
        self._save_session(key, state)


def _read_batch(reply: Any, sent: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(created spans, one line per refused span) of a ``traces/batch`` answer, in either of its shapes."""
    if isinstance(reply, list):
        return reply, []
    if not isinstance(reply, dict):
        return [], [f"unreadable traces/batch answer ({type(reply).__name__})"]
    created = [s for s in reply.get("spans") or [] if isinstance(s, dict)]
    partial = reply.get("partialSuccess")
    rejected: list[str] = []
    if isinstance(partial, dict):
        for error in partial.get("errors") or []:
            if isinstance(error, dict):
                index = error.get("index")
                name = sent[index]["id"] if isinstance(index, int) and 0 <= index < len(sent) else error.get("name")
                rejected.append(f"span {name}: {error.get('reason')}")
        count = partial.get("rejectedSpans")
        if isinstance(count, int) and count > len(rejected):
            rejected.append(f"{count - len(rejected)} more spans refused")
    return created, rejected
