"""Settings of the translate -> assemble -> store path, shared by the in-process exporter and the receiver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TurnMode = Literal["user", "llm-call", "trace"]
LatePolicy = Literal["reopen", "ignore", "reject"]
OrphanPolicy = Literal["session", "drop"]


@dataclass(frozen=True)
class PipelineSettings:
    """How spans become records.

    - ``turns``: ``user`` (default) makes one turn per user message and its reply: the outermost agent, chain or
      LLM span, with the LLM and tool calls inside it folded in (README, "How turns are made"); ``llm-call`` one
      turn per outermost LLM span; ``trace`` one turn per trace id within a session key, the way the Galtea
      platform groups foreign telemetry.
    - ``default_version``: the version of a session whose spans name none.
    - ``late_spans``: what a span that *started* after its session ended does: ``reopen`` the session (back to
      PENDING, as the platform does), ``ignore`` it, or ``reject`` it (counted).
    - ``strict``: a failed turn fails the whole session.
    - ``orphans`` / ``hold_seconds``: a span whose session key is still unknown is held this long for its trace's
      key to arrive; then a trace holding an LLM span becomes a session of its own keyed by its trace id
      (``session``) or is dropped (``drop``); either is counted.
    - ``idle_close_minutes``: a PENDING session with no activity for this long is closed as COMPLETED.
    """

    turns: TurnMode = "user"
    default_version: str = "unknown"
    late_spans: LatePolicy = "reopen"
    strict: bool = False
    orphans: OrphanPolicy = "session"
    hold_seconds: float = 300.0
    idle_close_minutes: float = 30.0
