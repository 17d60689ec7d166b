"""Evaluations to the Galtea platform, with their session, each exactly once (issue 11).

How our records map to the platform's (``../shared/docs/GALTEA_PLATFORM.md``; the SDK's ``evaluations.create``):

- An evaluation's ``name`` is a platform *metric*: looked up by name (``GET metrics?names[]=``), else created as a
  self-hosted one (``POST metrics``, source ``SELF_HOSTED``: a metric whose scores are computed outside the
  platform), once per name and process.
- A session-level evaluation is ``POST evaluations/fromSession {sessionId, metrics: [{id, score}]}``; a turn-level
  one ``POST evaluations/fromInferenceResult {inferenceResultId, metrics: [{id, score}]}`` with the turn's platform
  id. One evaluation per request, so that each reply's id is that evaluation's.
- Whatever its source (``app``, ``evaluator``, ``human``, ``ingested``): a human annotation is sent like the others.
- The platform holds a score from 0 to 1 and nothing else: an evaluation with only a label, a score outside 0..1,
  or an error (the evaluator failed) is not sent (state ``skipped``, with the reason).
- A superseded evaluation (its evaluator ran again after the session was reopened and ended again) no longer
  describes the session: not sent if it was not yet; deleted from the platform (``DELETE evaluations/{id}``, a 404
  counts as done) if it was, so the platform holds the current scores only (the store keeps the history).

Exactly once, as turns are (``galtea_otel.sync.sink``): the body of a creation is committed (state ``intent``)
before the request, the platform id once the answer is in (state ``sent``). An intent left by a lost answer is
resolved on the next pass by listing the session's evaluations on the platform (``GET evaluations?sessionIds[]=``)
and adopting one with the same metric, target and score that no other local evaluation is known as, before
anything is created again. An evaluation the platform refuses (4xx) is recorded ``refused`` and reported (its
session is parked with the reason), never sent again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from galtea_otel.evaluate.storage import _Db
from galtea_otel.records import Evaluation, InferenceResult, SessionDetail
from galtea_otel.store.base import Key
from galtea_otel.sync.client import GalteaHttp, Refused

PAGE = 1000
METRIC_DESCRIPTION = "Scores recorded with galtea-otel (evaluators, the app, people, other producers)."

_LOAD = ("SELECT evaluation_id, state, platform_id, body, error FROM galtea_sync_evaluations"
         " WHERE custom_id = ? AND version = ?")
_SAVE = (
    "INSERT INTO galtea_sync_evaluations (evaluation_id, custom_id, version, state, platform_id, body, error)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (evaluation_id) DO UPDATE SET custom_id = excluded.custom_id,"
    " version = excluded.version, state = excluded.state, platform_id = excluded.platform_id,"
    " body = excluded.body, error = excluded.error"
)
# Sessions the platform holds that have an evaluation not settled there yet (never looked at, an intent, or
# superseded after it was sent): enqueued by the backfill (evaluations recorded while no sync was running, or
# by a galtea-otel that did not sync evaluations).
_BACKFILL = (
    "INSERT INTO galtea_outbox (custom_id, version, seq, state, attempts, next_attempt_ns, enqueued_ns, last_error)"
    " SELECT DISTINCT e.custom_id, e.version, 1, 'pending', 0, ?, ?, NULL FROM evaluations e"
    " JOIN galtea_sync_sessions g ON g.custom_id = e.custom_id AND g.version = e.version"
    " AND g.platform_id IS NOT NULL"
    " LEFT JOIN galtea_sync_evaluations x ON x.evaluation_id = e.id"
    " WHERE x.evaluation_id IS NULL OR x.state = 'intent' OR (e.superseded = 1 AND x.state = 'sent')"
    " ON CONFLICT (custom_id, version) DO NOTHING"
)


@dataclass
class EvaluationState:
    """What the platform holds of one evaluation."""

    state: str  # intent, sent, deleted, skipped, refused
    platform_id: str | None = None
    body: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class EvaluationOutcome:
    created: int = 0
    found: int = 0
    deleted: int = 0
    skipped: int = 0
    refused: list[str] = field(default_factory=list)


def load(store: Any, key: Key) -> dict[str, EvaluationState]:
    rows = _Db(store).read(_LOAD, key)
    return {r[0]: EvaluationState(r[1], r[2], json.loads(r[3]) if r[3] else None, r[4]) for r in rows}


def save(store: Any, key: Key, evaluation_id: str, state: EvaluationState) -> None:
    db = _Db(store)
    with db.write() as cur:
        cur.execute(_SAVE, (evaluation_id, *key, state.state, state.platform_id,
                            json.dumps(state.body, sort_keys=True) if state.body is not None else None,
                            state.error))


def backfill(store: Any, now_ns: int) -> int:
    """Enqueue the synced sessions whose evaluations are not all settled on the platform; how many."""
    db = _Db(store)
    with db.write() as cur:
        return max(int(cur.execute(_BACKFILL, (now_ns, now_ns))), 0)


def unsendable(evaluation: Evaluation) -> str | None:
    """Why the platform cannot hold this evaluation (None: it can)."""
    if evaluation.error is not None:
        return f"the evaluation failed ({evaluation.error[:200]}): the platform holds scores only"
    if evaluation.score is None:
        return "a label without a score: the platform holds scores from 0 to 1 only"
    if not math.isfinite(evaluation.score) or not 0.0 <= evaluation.score <= 1.0:
        return f"score {evaluation.score:g} is outside 0..1, the platform's range"
    return None


def all_evaluations(detail: SessionDetail) -> Iterable[tuple[Evaluation, InferenceResult | None]]:
    """Every evaluation of the session, with the turn it scores (None: the session)."""
    for evaluation in detail.evaluations:
        yield evaluation, None
    for turn in detail.inference_results:
        for evaluation in turn.evaluations:
            yield evaluation, turn


def creation(session_id: str, turn_id: str | None, metric_id: str, score: float) -> tuple[str, dict[str, Any]]:
    """(path, body) of the ``POST`` that creates one evaluation with a pre-computed score (as the SDK's
    ``evaluations.create(session_id=... | trace_id=..., metrics=[{"id": ..., "score": ...}])`` sends it)."""
    metrics = [{"id": metric_id, "score": score}]
    if turn_id is None:
        return "evaluations/fromSession", {"sessionId": session_id, "metrics": metrics}
    return "evaluations/fromInferenceResult", {"inferenceResultId": turn_id, "metrics": metrics}


def same_evaluation(remote: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether an evaluation the platform holds is the one this creation body made."""
    [metric] = body["metrics"]
    if remote.get("metricId") != metric["id"]:
        return False
    if (remote.get("inferenceResultId") or None) != body.get("inferenceResultId"):
        return False
    score = remote.get("score")
    return isinstance(score, (int, float)) and math.isclose(float(score), float(metric["score"]), abs_tol=1e-9)


class MetricResolver:
    """Evaluation name -> platform metric id: found by name, else created as a self-hosted metric."""

    def __init__(self, http: GalteaHttp) -> None:
        self.http = http
        self._cache: dict[str, str] = {}

    def _find(self, name: str) -> str | None:
        rows = self.http.get("metrics", params=[("names[]", name)])
        found = [r for r in rows or [] if isinstance(r, dict) and r.get("name") == name and r.get("id")]
        return str(found[0]["id"]) if found else None

    def resolve(self, name: str) -> str:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        found = self._find(name)
        if found is None:
            from galtea.domain.models.metric import MetricBase, MetricSource

            body = MetricBase(name=name, source=MetricSource.SELF_HOSTED, description=METRIC_DESCRIPTION)
            try:
                created = self.http.post("metrics", body.model_dump(by_alias=True, mode="json", exclude_none=True))
                found = str(created["id"])
            except Refused:
                found = self._find(name)  # created meanwhile by another sender (or a lost answer's retry)
                if found is None:
                    raise
        self._cache[name] = found
        return found


class EvaluationSync:
    """One pass over a session's evaluations (called by ``GalteaSink.sync_session`` once its turns are there)."""

    def __init__(self, store: Any, http: GalteaHttp, metrics: MetricResolver) -> None:
        self.store = store
        self.http = http
        self.metrics = metrics

    def run(self, key: Key, detail: SessionDetail, session_id: str, turn_ids: dict[str, str]) -> EvaluationOutcome:
        """``turn_ids``: a turn's local id -> its platform id."""
        outcome = EvaluationOutcome()
        states = load(self.store, key)
        remote: list[dict[str, Any]] | None = None  # the platform's evaluations of the session, listed when needed

        def unclaimed() -> list[dict[str, Any]]:
            nonlocal remote
            if remote is None:
                known = {s.platform_id for s in states.values() if s.platform_id}
                remote = [r for r in self._list(session_id) if r.get("id") not in known]
            return remote

        def adopt(body: dict[str, Any]) -> dict[str, Any] | None:
            match = next((r for r in unclaimed() if same_evaluation(r, body)), None)
            if match is not None:
                unclaimed().remove(match)
            return match

        for evaluation, turn in all_evaluations(detail):
            state = states.get(evaluation.id)
            if evaluation.superseded:
                self._superseded(key, evaluation, state, adopt, outcome)
                continue
            if state is not None and state.state != "intent":
                continue  # sent, skipped or refused: settled
            reason = unsendable(evaluation)
            turn_id = turn_ids.get(turn.id) if turn is not None else None
            if reason is None and turn is not None and turn_id is None:
                reason = "its turn is not on the platform"
            if reason is not None:
                save(self.store, key, evaluation.id, EvaluationState("skipped", error=reason))
                outcome.skipped += 1
                continue
            assert evaluation.score is not None
            if state is not None and state.body is not None:  # an earlier creation whose answer was lost
                match = adopt(state.body)
                if match is not None:
                    save(self.store, key, evaluation.id, EvaluationState("sent", str(match["id"]), state.body))
                    outcome.found += 1
                    continue
            path, body = creation(session_id, turn_id, self.metrics.resolve(evaluation.name), evaluation.score)
            save(self.store, key, evaluation.id, EvaluationState("intent", body=body))
            try:
                reply = self.http.post(path, body)
            except Refused as exc:
                save(self.store, key, evaluation.id, EvaluationState("refused", body=body, error=str(exc)[:1000]))
                outcome.refused.append(f"evaluation {evaluation.name!r} ({evaluation.id}): {exc}")
                continue
            created = reply[0] if isinstance(reply, list) and reply else reply
            if not isinstance(created, dict) or not created.get("id"):
                raise Refused(0, f"unreadable answer to POST {path}: {str(reply)[:200]}")
            save(self.store, key, evaluation.id, EvaluationState("sent", str(created["id"]), body))
            outcome.created += 1
        return outcome

    def _superseded(self, key: Key, evaluation: Evaluation, state: EvaluationState | None, adopt: Any,
                    outcome: EvaluationOutcome) -> None:
        if state is None:
            save(self.store, key, evaluation.id, EvaluationState("skipped", error="superseded before it was sent"))
            return
        platform_id = state.platform_id if state.state == "sent" else None
        if state.state == "intent" and state.body is not None:
            match = adopt(state.body)
            platform_id = str(match["id"]) if match is not None else None
            if platform_id is None:
                save(self.store, key, evaluation.id, EvaluationState("skipped", body=state.body,
                                                                     error="superseded before it was sent"))
                return
        if platform_id is None:
            return  # deleted, skipped or refused: settled
        try:
            self.http.delete(f"evaluations/{platform_id}")
        except Refused as exc:
            if exc.status != 404:
                raise
        save(self.store, key, evaluation.id, EvaluationState("deleted", platform_id, state.body,
                                                             "superseded: deleted from the platform"))
        outcome.deleted += 1

    def _list(self, session_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.http.get("evaluations", params=[("sessionIds[]", session_id), ("limit", str(PAGE)),
                                                        ("offset", str(offset))])
            rows = [r for r in page or [] if isinstance(r, dict)]
            found += rows
            if len(rows) < PAGE:
                return found
            offset += PAGE
