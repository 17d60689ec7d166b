"""Human output of the CLI: aligned plain-text tables and span trees, with status colors on a terminal only.

No dependency beyond click. Long cells are cut with an ellipsis; line breaks inside a value become spaces so
that one record stays on one line. The full values are in ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from galtea_otel.records import Evaluation, InferenceResult, Session, SessionDetail, SpanRecord, TestCase

__all__ = ["Cell", "Renderer", "clip"]

# A cell: plain text, or (text, color) for a status word.
Cell = str | tuple[str, str | None]

STATUS_COLORS: dict[str, str] = {
    "COMPLETED": "green",
    "GENERATED": "green",
    "OK": "green",
    "PENDING": "yellow",
    "FAILED": "red",
    "ERROR": "red",
}
ELLIPSIS = "…"
DASH = "-"
ROLE_WIDTH = 9  # "assistant"
SYSTEM_WIDTH = 100  # the system prompt is shortened to this many characters
TOOL_WIDTH = 120  # tool arguments and results, each


def clip(text: str | None, width: int | None) -> str:
    """``text`` on one line, at most ``width`` characters (cut with an ellipsis)."""
    if text is None:
        return DASH
    flat = " ".join(text.split())
    if width is not None and len(flat) > width:
        return flat[: max(width - 1, 0)] + ELLIPSIS
    return flat


def status_cell(status: str) -> Cell:
    return (status, STATUS_COLORS.get(status))


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return DASH
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def fmt_int(value: int | None) -> str:
    return DASH if value is None else str(value)


def fmt_tokens(inp: int | None, out: int | None, total: int | None) -> str:
    if inp is None and out is None and total is None:
        return DASH
    return f"{fmt_int(inp)}/{fmt_int(out)}/{fmt_int(total)}"


def fmt_cost(cost: float | None) -> str:
    if cost is None:
        return DASH
    return f"{cost:.6f}".rstrip("0").rstrip(".") if cost else "0"


def fmt_time(moment: datetime | None) -> str:
    if moment is None:
        return DASH
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + "Z"


class Renderer:
    """Writes tables and trees to stdout; ``color`` decides whether status words are styled."""

    def __init__(self, color: bool) -> None:
        self.color = color

    # --- primitives -----------------------------------------------------------------------------------------

    def _styled(self, text: str, color: str | None, bold: bool = False) -> str:
        if not self.color or (color is None and not bold):
            return text
        return click.style(text, fg=color, bold=bold or None)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Cell]],
        *,
        max_widths: Sequence[int | None] | None = None,
        indent: str = "",
    ) -> list[str]:
        """Aligned columns, two spaces apart; the last column is not padded."""
        limits = list(max_widths) if max_widths is not None else [None] * len(headers)
        plain: list[list[tuple[str, str | None]]] = []
        for row in rows:
            cells: list[tuple[str, str | None]] = []
            for i, cell in enumerate(row):
                text, color = (cell, None) if isinstance(cell, str) else cell
                cells.append((clip(text, limits[i]), color))
            plain.append(cells)
        widths = [len(h) for h in headers]
        for cells in plain:
            for i, (text, _) in enumerate(cells):
                widths[i] = max(widths[i], len(text))
        last = len(headers) - 1
        titles = [self._styled(h if i == last else h.ljust(widths[i]), None, bold=True)
                  for i, h in enumerate(headers)]
        lines = [(indent + "  ".join(titles)).rstrip()]
        for cells in plain:
            parts = [self._styled(text if i == last else text.ljust(widths[i]), color)
                     for i, (text, color) in enumerate(cells)]
            lines.append((indent + "  ".join(parts)).rstrip())
        return lines

    def fields(
        self, pairs: Sequence[tuple[str, Cell]], *, indent: str = "  ", width: int | None = 100
    ) -> list[str]:
        """``name  value`` lines with the names aligned."""
        pad = max((len(name) for name, _ in pairs), default=0)
        lines = []
        for name, value in pairs:
            text, color = (value, None) if isinstance(value, str) else value
            lines.append(f"{indent}{name.ljust(pad)}  {self._styled(clip(text, width), color)}")
        return lines

    # --- records --------------------------------------------------------------------------------------------

    def sessions_table(self, sessions: Sequence[Session]) -> list[str]:
        headers = ["CUSTOM_ID", "VERSION", "STATUS", "TURNS", "TOKENS in/out/total", "COST", "LATENCY",
                   "STARTED (UTC)", "TEST CASE / ERROR"]
        rows: list[list[Cell]] = []
        for s in sessions:
            note = s.error if s.status == "FAILED" and s.error else (s.test_case_id or "")
            rows.append([
                s.custom_id, s.version, status_cell(s.status), str(s.turn_count),
                fmt_tokens(s.input_tokens, s.output_tokens, s.total_tokens), fmt_cost(s.cost),
                fmt_ms(s.latency_ms), fmt_time(s.started_at), note,
            ])
        return self.table(headers, rows, max_widths=[32, 16, None, None, None, None, None, None, 50])

    def session_detail(self, detail: SessionDetail) -> list[str]:
        """The session's header, then the conversation as a transcript (README, "Reading a session")."""
        title = f"Session {detail.custom_id}  (version {detail.version}" + (
            f", project {detail.project})" if detail.project != "default" else ")")
        lines = [self._styled(title, None, bold=True)]
        pairs: list[tuple[str, Cell]] = [("status", status_cell(detail.status))]
        if detail.error:
            pairs.append(("error", (detail.error, "red")))
        pairs.append(("kind", f"evaluation, test case {detail.test_case_id}" if detail.test_case_id
                      else "production"))
        if detail.user_id:
            pairs.append(("user", detail.user_id))
        if detail.context:
            pairs.append(("context", detail.context))
        pairs += [
            ("started", fmt_time(detail.started_at)),
            ("ended", fmt_time(detail.ended_at)),
            ("elapsed", f"{fmt_ms(detail.duration_ms)} wall clock, {fmt_ms(detail.latency_ms)} in turns"),
            ("turns", str(detail.turn_count)),
            ("tokens", fmt_tokens(detail.input_tokens, detail.output_tokens, detail.total_tokens)
             + "  (in/out/total)"),
            ("cost", fmt_cost(detail.cost)),
        ]
        if detail.unpriced_turns:  # galtea_otel.pricing: a model no price list knows is never guessed
            models = sorted({t.model or "" for t in detail.inference_results if t.index in detail.unpriced_turns})
            pairs.append(("unpriced", (f"turn(s) {', '.join(map(str, detail.unpriced_turns))}: no price for "
                                       f"{', '.join(models)} (add it to $GALTEA_OTEL_PRICES)", "yellow")))
        if detail.metadata:
            pairs.append(("metadata", _compact(detail.metadata)))
        lines += self.fields(pairs)
        if detail.evaluations:  # issue 11
            lines.append("")
            lines.append(self._styled(f"Evaluations of the session ({len(detail.evaluations)})", None, bold=True))
            lines += [self.evaluation_line(e, "  ") for e in detail.evaluations]
        lines.append("")
        count = len(detail.inference_results)
        lines.append(self._styled(f"Conversation ({count} turn{'' if count == 1 else 's'})", None, bold=True))
        if detail.inference_results:
            lines += self._turns(detail.inference_results)
        else:
            lines.append("  (no turns)")
        if detail.spans:
            lines.append("")
            lines.append(self._styled("Spans outside any turn", None, bold=True))
            for span in detail.spans:
                lines += self.span_tree(span, depth=1)
        return lines

    def _says(self, who: str, text: str | None, color: str | None = None) -> list[str]:
        """``who`` and the text, continuation lines indented under the text."""
        pad = " " * 6
        label = self._styled(who.ljust(ROLE_WIDTH), color, bold=True)
        body = (text if text is not None else DASH).strip("\n").splitlines() or [""]
        lines = [f"{pad}{label}  {body[0]}"]
        lines += [f"{pad}{' ' * ROLE_WIDTH}  {line}" for line in body[1:]]
        return lines

    def _turns(self, turns: Sequence[InferenceResult]) -> list[str]:
        lines: list[str] = []
        system_shown: str | None = None
        for turn in turns:
            system = _system_text(turn.messages)
            if system is not None and system != system_shown:
                lines.append("  " + self._styled("system".ljust(ROLE_WIDTH + 4), None, bold=True)
                             + "  " + clip(system, SYSTEM_WIDTH))
                system_shown = system
            lines.append("  " + self._styled(f"[{turn.index}]", None, bold=True))
            lines += self._says("user", turn.input, "cyan")
            for name, arguments, result in _tool_rounds(turn):
                call = f"{name}({clip(arguments, TOOL_WIDTH) if arguments is not None else ''})"
                lines += self._says("tool", f"{call} -> {clip(result, TOOL_WIDTH)}", "magenta")
            lines += self._says("assistant", turn.output, "green")
            status = turn.status + (" (abandoned)" if turn.abandoned else "")
            tokens = fmt_tokens(turn.input_tokens, turn.output_tokens, turn.total_tokens)
            if turn.cache_read_input_tokens:
                tokens += f" (cache read {turn.cache_read_input_tokens})"
            cost = f"cost {fmt_cost(turn.cost)}" + (f" ({turn.cost_source})" if turn.cost_source else "")
            footer = [self._styled(status, STATUS_COLORS.get(turn.status)), f"latency {fmt_ms(turn.latency_ms)}",
                      f"tokens {tokens}", cost, f"model {turn.model or DASH}"]
            if turn.finish_reason:
                footer.append(f"finish {turn.finish_reason}")
            lines.append("      " + self._styled("--", None) + " " + "  ".join(footer))
            if turn.error:
                lines.append("      " + self._styled("error", "red", bold=True) + "  "
                             + self._styled(clip(turn.error, 300), "red"))
            if turn.evaluations:  # issue 11
                lines.append("      evaluations")
                lines += [self.evaluation_line(e, "        ") for e in turn.evaluations]
            others = [span for span in turn.spans if span.type != "TOOL" or span.children]
            if others:
                lines.append("      spans")
                for span in others:
                    lines += self.span_tree(span, depth=4)
        return lines

    def evaluation_line(self, evaluation: Evaluation, pad: str) -> str:
        """``- NAME score 0.8 label pass  (evaluator v1, evaluator)  explanation``; errors in red."""
        parts = [f"{pad}- {evaluation.name}"]
        if evaluation.score is not None:
            parts.append(f"score {evaluation.score:g}")
        if evaluation.label is not None:
            parts.append(f"label {evaluation.label}")
        who: str = evaluation.source
        if evaluation.evaluator is not None:
            who = f"{evaluation.evaluator.name}" + (f" {evaluation.evaluator.version}"
                                                    if evaluation.evaluator.version else "") + f", {who}"
        parts.append(f"({who}{', superseded' if evaluation.superseded else ''})")
        if evaluation.error:
            parts.append(self._styled(f"error {clip(evaluation.error, 200)}", "red"))
        if evaluation.explanation:
            parts.append(clip(evaluation.explanation, 160))
        return "  ".join(parts)

    def span_tree(self, span: SpanRecord, depth: int) -> list[str]:
        """One span and its children, indented two spaces a level."""
        pad = "  " * depth
        parts = [f"{pad}- {span.type} {span.name}", fmt_ms(span.latency_ms)]
        head = "  ".join(parts) + "  " + self._styled(span.status, STATUS_COLORS.get(span.status))
        lines = [head]
        detail = []
        if span.input is not None:
            detail.append(f"input {clip(span.input, 80)}")
        if span.output is not None:
            detail.append(f"output {clip(span.output, 80)}")
        if detail:
            lines.append(f"{pad}    " + "  ".join(detail))
        if span.error:
            lines.append(f"{pad}    error " + self._styled(clip(span.error, 200), "red"))
        for child in span.children:
            lines += self.span_tree(child, depth + 1)
        return lines

    def test_cases_table(self, cases: Sequence[TestCase]) -> list[str]:
        headers = ["ID", "INPUT", "EXPECTED OUTPUT", "CONTEXT"]
        rows: list[list[Cell]] = [
            [c.id, clip(c.input, 40), clip(c.expected_output, 40), clip(c.context, 40)] for c in cases
        ]
        return self.table(headers, rows, max_widths=[32, 40, 40, 40])


def _system_text(messages: Sequence[dict[str, Any]]) -> str | None:
    for message in messages:
        if message.get("role") == "system":
            texts = [str(p["content"]) for p in message.get("parts", ()) if isinstance(p, dict)
                     and p.get("type") == "text" and isinstance(p.get("content"), str)]
            return "\n".join(texts) if texts else None
    return None


def _value_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _compact(value)


def _tool_rounds(turn: InferenceResult) -> list[tuple[str, str | None, str | None]]:
    """The tool calls of a turn as (name, arguments, result): its TOOL spans when it has any, else the tool calls
    and results in its messages after the user's last message."""
    spans = [span for span in _walk(turn.spans) if span.type == "TOOL"]
    if spans:
        return [(str(span.metadata.get("tool.name") or span.name), span.input, span.output) for span in spans]
    start = 0
    for i, message in enumerate(turn.messages):
        if message.get("role") == "user" and any(
                isinstance(p, dict) and p.get("type") == "text" for p in message.get("parts", ())):
            start = i
    calls: dict[Any, list[str | None]] = {}
    order: list[Any] = []
    for message in turn.messages[start:]:
        for part in message.get("parts", ()):
            if not isinstance(part, dict):
                continue
            if part.get("type") == "tool_call":
                key = part.get("id") or len(order)
                calls[key] = [str(part.get("name") or "tool"), _value_text(part.get("arguments")), None]
                order.append(key)
            elif part.get("type") == "tool_call_response" and part.get("id") in calls:
                calls[part["id"]][2] = _value_text(part.get("response"))
    return [(calls[k][0] or "tool", calls[k][1], calls[k][2]) for k in order]


def _walk(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    found: list[SpanRecord] = []
    for span in spans:
        found.append(span)
        found += _walk(span.children)
    return found


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
