"""HTML of the UI's pages, rendered on the server from the records (``html.escape`` on every value).

No template engine and no inline script or style (the pages are served under a strict Content-Security-Policy):
behaviour is in ``static/app.js``, looks in ``static/app.css``; bar geometry in the timeline is SVG attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from galtea_otel.store.filters import LIFECYCLE_STATUSES, SessionFilter, SessionPage

if TYPE_CHECKING:  # pages render records, but importing this module does not import pydantic
    from galtea_otel.records import InferenceResult, Session, SessionDetail, SpanRecord

_NO_IO = "<p class=\"muted\">no input or output</p>"
_NONE = "<p class=\"muted\">none</p>"
CLIP = 160  # characters of a message shown in the sessions table (the rest in its tooltip)


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def session_href(custom_id: str, version: str, project: str = "default") -> str:
    # Issue 12: a session of another project than the default one is addressed with ?project=.
    scope = "" if project == "default" else f"?project={quote(project, safe='')}"
    return f"/sessions/{quote(custom_id, safe='')}/{quote(version, safe='')}{scope}"


def layout(title: str, body: str, *, live: bool = False, page: str = "page", bare: bool = False) -> str:
    """A whole page. ``bare``: without the stylesheet and script (a page served to a request that may not load
    them, such as one without the token)."""
    live_attr = ' data-live="1"' if live else ""
    assets = ("" if bare else "<link rel=\"stylesheet\" href=\"/static/app.css\">"
              "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">"
              "<script src=\"/static/app.js\" defer></script>")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"color-scheme\" content=\"light dark\">"
        f"<title>{e(title)} · galtea-otel</title>{assets}</head>"
        f"<body data-page=\"{e(page)}\"{live_attr}>"
        "<header class=\"top\"><a class=\"brand\" href=\"/\">galtea-otel</a>"
        "<span class=\"live-dot\" aria-hidden=\"true\"></span>"
        "<span class=\"live-state\" role=\"status\" aria-live=\"polite\"></span>"
        "<span class=\"keys\">keys: <kbd>/</kbd> search · <kbd>j</kbd>/<kbd>k</kbd> move · <kbd>Enter</kbd> open"
        " · <kbd>u</kbd> back · <kbd>c</kbd> copy JSON</span></header>"
        f"{body}</body></html>\n"
    )


# --- formatting ---------------------------------------------------------------------------------------------


def when(moment: datetime | None, *, short: bool = False) -> str:
    if moment is None:
        return "<span class=\"muted\">—</span>"
    utc = moment.astimezone(UTC)
    shown = utc.strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")
    return f"<time datetime=\"{e(utc.isoformat())}\" title=\"{e(utc.isoformat())} UTC\">{e(shown)}</time>"


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def cost(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or value >= 0.01:
        return f"${value:.2f}" if value >= 1 else f"${value:.4f}"
    return f"${value:.6f}" if value >= 0.000001 else f"${value:.1e}"


def clip(text: str | None, size: int = CLIP) -> str:
    if not text:
        return "<span class=\"muted\">—</span>"
    flat = " ".join(text.split())
    shown = flat if len(flat) <= size else flat[: size - 1] + "…"
    return f"<span title=\"{e(flat[:2000])}\">{e(shown)}</span>"


def status_badge(status: str, lifecycle: str | None = None) -> str:
    badge = f"<span class=\"badge s-{e(status.lower())}\">{e(status)}</span>"
    if lifecycle:
        badge += f" <span class=\"badge life\">{e(lifecycle)}</span>"
    return badge


def text_block(text: str | None) -> str:
    """A message body: pretty JSON when the text is JSON, else the text as written."""
    if text is None or text == "":
        return "<span class=\"muted\">(empty)</span>"
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return f"<pre class=\"json\">{e(json.dumps(json.loads(stripped), indent=2, ensure_ascii=False))}</pre>"
        except ValueError:
            pass
    return f"<div class=\"text\">{e(text)}</div>"


def json_block(value: Any) -> str:
    if isinstance(value, str):
        return text_block(value)
    return f"<pre class=\"json\">{e(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"


def kv_table(items: Iterable[tuple[str, Any]], *, raw: bool = False) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{e(k)}</th><td>{v if raw else e(v)}</td></tr>" for k, v in items)
    return f"<table class=\"kv\">{rows}</table>" if rows else "<p class=\"muted\">none</p>"


# --- the sessions page ----------------------------------------------------------------------------------------


def _filter_form(flt: SessionFilter, limit: int) -> str:
    def field_(name: str, label: str, value: Any, *, placeholder: str = "", kind: str = "text",
               size: str = "") -> str:
        return (f"<label class=\"f {size}\"><span>{e(label)}</span><input type=\"{kind}\" name=\"{name}\""
                f" value=\"{e(value if value is not None else '')}\" placeholder=\"{e(placeholder)}\"></label>")

    statuses = ["", "PENDING", "COMPLETED", "FAILED", "idle-closed", "reopened"]
    current = ",".join(s.lower().replace("_", "-") if s in LIFECYCLE_STATUSES else s for s in flt.status)
    options = "".join(f"<option value=\"{e(s)}\"{' selected' if s == current else ''}>{e(s or 'any')}</option>"
                      for s in (statuses if current in statuses else [*statuses, current]))
    tri = [("", "any"), ("true", "yes"), ("false", "no")]

    def select(name: str, label: str, value: bool | None) -> str:
        chosen = "" if value is None else ("true" if value else "false")
        opts = "".join(f"<option value=\"{v}\"{' selected' if v == chosen else ''}>{t}</option>" for v, t in tri)
        return f"<label class=\"f s\"><span>{e(label)}</span><select name=\"{name}\">{opts}</select></label>"

    meta = " ".join(f"{k}={v}" for k, v in flt.metadata)
    return (
        "<form class=\"filters\" method=\"get\" action=\"/\" role=\"search\">"
        + field_("q", "Search inputs and outputs", flt.q, placeholder="text in a message or reply", size="wide")
        + f"<label class=\"f s\"><span>Status</span><select name=\"status\">{options}</select></label>"
        + field_("version", "Version", flt.version)
        + field_("user", "User", flt.user)
        + field_("model", "Model", flt.model)
        + field_("since", "Since", flt.since_text, placeholder="2h, 7d, 2026-12-01")
        + field_("until", "Until", flt.until_text, placeholder="ISO time")
        + field_("meta", "Metadata", meta, placeholder="key=value")
        + select("has_error", "Has error", flt.has_error)
        + select("production", "Production", flt.production)
        + field_("min_cost", "Cost ≥", flt.min_cost, size="n") + field_("max_cost", "Cost ≤", flt.max_cost, size="n")
        + field_("min_turns", "Turns ≥", flt.min_turns, size="n")
        + field_("max_turns", "Turns ≤", flt.max_turns, size="n")
        + (f"<input type=\"hidden\" name=\"limit\" value=\"{limit}\">" if limit != 50 else "")
        + "<div class=\"actions\"><button type=\"submit\">Filter</button> <a href=\"/\">clear</a></div></form>"
    )


def _kind(session: Session) -> str:
    if session.test_case_id is None:
        return "<span class=\"muted\">production</span>"
    return f"<span class=\"badge tc\" title=\"test case\">{e(session.test_case_id)}</span>"


def _session_row(session: Session, lifecycle: str | None) -> str:
    href = session_href(session.custom_id, session.version, session.project)
    project = "" if session.project == "default" else f" <span class=\"muted\">· {e(session.project)}</span>"
    tokens = (f"{number(session.input_tokens)} / {number(session.output_tokens)}"
              f" / {number(session.cache_read_input_tokens)}")
    error = clip(session.error, 80) if session.error else ""
    return (
        f"<tr class=\"row s-{e(session.status.lower())}\" data-href=\"{e(href)}\">"
        f"<td>{status_badge(session.status, lifecycle)}</td>"
        f"<td class=\"id\"><a href=\"{e(href)}\">{e(session.custom_id)}</a></td>"
        f"<td class=\"when\">{when(session.started_at, short=True)}</td>"
        f"<td class=\"ver\">{e(session.version)}{project}</td>"
        f"<td>{e(session.user_id) if session.user_id else '—'}</td>"
        f"<td>{_kind(session)}</td>"
        f"<td class=\"msg\">{clip(session.first_input)}</td><td class=\"msg\">{clip(session.last_output)}</td>"
        f"<td class=\"num\">{session.turn_count}</td><td class=\"num\">{duration(session.duration_ms)}</td>"
        f"<td class=\"num\">{tokens}</td><td class=\"num\">{cost(session.cost)}</td>"
        f"<td class=\"err\">{error}</td></tr>"
    )


def sessions_page(page: SessionPage, flt: SessionFilter, *, after: str | None, limit: int,
                  store_label: str, waiting: int = 0) -> str:
    header = ("<tr><th scope=\"col\">Status</th><th scope=\"col\">Session</th>"
              "<th scope=\"col\" title=\"UTC\">Started</th><th scope=\"col\">Version</th>"
              "<th scope=\"col\">User</th><th scope=\"col\">Kind</th><th scope=\"col\">First message</th>"
              "<th scope=\"col\">Last reply</th><th scope=\"col\">Turns</th><th scope=\"col\">Duration</th>"
              "<th scope=\"col\" title=\"input / output / cached input\">Tokens in/out/cached</th>"
              "<th scope=\"col\">Cost</th><th scope=\"col\">Error</th></tr>")
    rows = "".join(_session_row(s, page.lifecycle.get((s.custom_id, s.version))) for s in page)
    base = flt.query() + ([("limit", str(limit))] if limit != 50 else [])
    nav = []
    if after:
        nav.append(f"<a href=\"/?{e(urlencode(base))}\" rel=\"first\">← newest</a>")
    if page.next is not None:
        label = "older →" if page.searched is None else f"search older → (searched {page.searched:,} sessions)"
        nav.append(f"<a href=\"/?{e(urlencode([*base, ('after', page.next.encode())]))}\" rel=\"next\""
                   f" class=\"next\">{e(label)}</a>")
    if not page:
        if page.next is not None:
            empty = (f"No match among the {page.searched or 0:,} sessions searched on this page;"
                     " search older sessions below.")
        elif flt.is_empty and not after:
            empty = ("No sessions yet. Run an instrumented app, or <code>galtea-otel demo</code>, and they appear"
                     " here as they are recorded.")
        else:
            empty = "No sessions match these filters."
        table = f"<p class=\"empty\">{empty}</p>"
    else:
        table = (f"<div class=\"scroll\"><table class=\"sessions\" aria-label=\"sessions\"><thead>{header}</thead>"
                 f"<tbody>{rows}</tbody></table></div>")
    scanned = ""
    if flt.scans:
        scanned = ("<p class=\"note\">Some of these filters are checked session by session, over at most "
                   "5,000 sessions per page.</p>")
    if waiting:  # serve --assemble deferred: acknowledged, not in these records yet
        scanned += (f"<p class=\"note\" id=\"inbox-note\">{waiting:,} span{'s' if waiting != 1 else ''} received by"
                    f" the receiver (<code>serve --assemble deferred</code>) {'is' if waiting == 1 else 'are'} not"
                    " assembled into sessions yet: the sessions appear here as they are"
                    " (<code>galtea-otel inbox</code>).</p>")
    summary = f"{len(page)} session{'s' if len(page) != 1 else ''}" + (" (filtered)" if not flt.is_empty else "")
    body = (f"<main id=\"main\" data-view=\"sessions\"><h1>Sessions <span class=\"muted small\">{e(summary)} ·"
            f" {e(store_label)}</span></h1>{_filter_form(flt, limit)}<div class=\"table-area\">{scanned}{table}</div>"
            f"<nav class=\"pager\">{' '.join(nav)}</nav></main>")
    return body


# --- the session page ------------------------------------------------------------------------------------------


def _parts(parts: Sequence[Any]) -> str:
    out = []
    for part in parts:
        if not isinstance(part, Mapping):
            out.append(json_block(part))
            continue
        kind = part.get("type")
        if kind == "text":
            out.append(text_block(str(part.get("content", ""))))
        elif kind == "tool_call":
            out.append(f"<div class=\"tool call\"><div class=\"tool-head\">→ tool call <b>{e(part.get('name'))}</b>"
                       f" <span class=\"muted\">{e(part.get('id') or '')}</span></div>"
                       f"{json_block(part.get('arguments'))}</div>")
        elif kind == "tool_call_response":
            out.append(f"<div class=\"tool result\"><div class=\"tool-head\">← tool result"
                       f" <span class=\"muted\">{e(part.get('id') or '')}</span></div>"
                       f"{json_block(part.get('response'))}</div>")
        else:
            out.append(f"<div class=\"part other\"><span class=\"muted\">{e(kind or 'part')}</span>"
                       f"{json_block({k: v for k, v in part.items() if k != 'type'})}</div>")
    return "".join(out)


def _message(message: Mapping[str, Any]) -> str:
    role = str(message.get("role") or "unknown")
    parts = message.get("parts")
    if not isinstance(parts, list):
        parts = [{"type": "text", "content": message.get("content")}] if "content" in message else [message]
    body = _parts(parts)
    if role == "system":
        return (f"<details class=\"msg-block role-system\"><summary>system prompt</summary>{body}</details>")
    label = {"user": "user", "assistant": "assistant", "tool": "tool"}.get(role, role)
    return f"<div class=\"msg-block role-{e(label)}\"><div class=\"role\">{e(label)}</div>{body}</div>"


def _new_messages(turn: InferenceResult, seen: list[Any]) -> Sequence[Mapping[str, Any]]:
    """The messages of a turn that the previous turns did not already show (a turn re-sends its history)."""
    messages = [m for m in turn.messages if isinstance(m, Mapping)]
    start = 0
    while start < len(messages) and start < len(seen) and messages[start] == seen[start]:
        start += 1
    return messages[start:]


def _span_steps(spans: Sequence[SpanRecord]) -> str:
    out = []
    for span in spans:
        failed = span.status == "ERROR"
        head = (f"<span class=\"badge t-{e(span.type.lower())}\">{e(span.type)}</span> <b>{e(span.name)}</b>"
                f" <span class=\"muted\">{duration(span.latency_ms)}</span>"
                + (" <span class=\"badge s-failed\">ERROR</span>" if failed else ""))
        inner = ""
        if span.input is not None:
            inner += f"<div class=\"io\"><div class=\"io-label\">input</div>{text_block(span.input)}</div>"
        if span.output is not None:
            inner += f"<div class=\"io\"><div class=\"io-label\">output</div>{text_block(span.output)}</div>"
        if span.error:
            inner += f"<div class=\"error\">{e(span.error)}</div>"
        if span.children:
            inner += _span_steps(span.children)
        out.append(f"<details class=\"step{' failed' if failed else ''}\"{' open' if failed else ''}>"
                   f"<summary>{head}</summary>{inner or _NO_IO}</details>")
    return "".join(out)


def _evaluations(items: Any) -> str:
    """Evaluations, one line each: the name, the score or label, who made it (source, evaluator), when; then the
    explanation and any error. Superseded ones (a reopened session evaluated again) are struck through."""
    if not items:
        return ""
    rows = []
    for item in items:
        data = item.model_dump(mode="json") if hasattr(item, "model_dump") else item
        if not isinstance(data, Mapping):
            data = {"value": data}
        name = data.get("name") or "evaluation"
        value = " ".join(e(v) for v in (data.get("score"), data.get("label")) if v is not None)
        evaluator = data.get("evaluator") if isinstance(data.get("evaluator"), Mapping) else {}
        by = " ".join(str(v) for v in (evaluator.get("name"), evaluator.get("version")) if v)
        made = " · ".join(x for x in (str(data.get("source") or ""), f"by {by}" if by else "") if x)
        created = data.get("created_at")
        moment = when(datetime.fromisoformat(created.replace("Z", "+00:00"))) if isinstance(created, str) else ""
        explanation = (f"<div class=\"eval-why\">{e(data['explanation'])}</div>"
                       if data.get("explanation") else "")
        error = f"<div class=\"error\">{e(data['error'])}</div>" if data.get("error") else ""
        rows.append(f"<li class=\"eval{' superseded' if data.get('superseded') else ''}\"><b>{e(name)}</b>"
                    f" <span class=\"eval-value\">{value or '—'}</span>"
                    f" <span class=\"muted small\">{e(made)} {moment}</span>{explanation}{error}</li>")
    return f"<div class=\"evals\"><h3>Evaluations</h3><ul>{''.join(rows)}</ul></div>"


def _turn(turn: InferenceResult, seen: list[Any]) -> str:
    failed = turn.status == "FAILED"
    if turn.messages:
        new = _new_messages(turn, seen)
        body = "".join(_message(m) for m in new) or "<p class=\"muted\">(no new messages)</p>"
        seen[:] = [m for m in turn.messages if isinstance(m, Mapping)]
    else:
        body = f"<div class=\"msg-block role-user\"><div class=\"role\">user</div>{text_block(turn.input)}</div>"
        if turn.output is not None or not failed:  # a failed turn with no reply shows its error instead
            body += (f"<div class=\"msg-block role-assistant\"><div class=\"role\">assistant</div>"
                     f"{text_block(turn.output)}</div>")
    steps = f"<div class=\"steps\">{_span_steps(turn.spans)}</div>" if turn.spans else ""
    tokens = (f"{number(turn.input_tokens)} in / {number(turn.output_tokens)} out"
              f" / {number(turn.cache_read_input_tokens)} cached")
    footer = " · ".join(x for x in (
        duration(turn.latency_ms), tokens, cost(turn.cost), e(turn.model or "model —"),
        f"finish: {e(turn.finish_reason)}" if turn.finish_reason else "", status_badge(turn.status),
        "<span class=\"badge life\">abandoned</span>" if turn.abandoned else "") if x)
    error = f"<div class=\"error\" role=\"alert\">{e(turn.error)}</div>" if turn.error else ""
    evals = _evaluations(getattr(turn, "evaluations", None))
    return (f"<section class=\"turn{' failed' if failed else ''}\" id=\"turn-{turn.index}\" tabindex=\"-1\">"
            f"<h3 class=\"turn-title\">Turn {turn.index + 1} <span class=\"muted small\">{when(turn.started_at)}"
            f"</span></h3>{body}{steps}{error}{evals}<footer class=\"turn-foot\">{footer}</footer></section>")


def _flatten(spans: Sequence[SpanRecord], depth: int) -> list[tuple[int, SpanRecord]]:
    out: list[tuple[int, SpanRecord]] = []
    for span in sorted(spans, key=lambda s: s.started_at):
        out.append((depth, span))
        out.extend(_flatten(span.children, depth + 1))
    return out


def _timeline(detail: SessionDetail) -> str:
    items: list[tuple[int, str, str, datetime, datetime, bool, str]] = []
    for turn in detail.inference_results:
        items.append((0, f"turn {turn.index + 1}", "turn", turn.started_at, turn.ended_at,
                      turn.status == "FAILED", f"#turn-{turn.index}"))
        items.extend((d + 1, s.name, s.type.lower(), s.started_at, s.ended_at, s.status == "ERROR", "")
                     for d, s in _flatten(turn.spans, 0))
    items.extend((0, s.name, s.type.lower(), s.started_at, s.ended_at, s.status == "ERROR", "")
                 for _, s in _flatten(detail.spans, 0))
    if not items:
        return "<p class=\"muted\">no spans</p>"
    start = min(i[3] for i in items)
    end = max(i[4] for i in items)
    total = max((end - start).total_seconds(), 1e-6)
    rows = []
    for depth, name, kind, begin, finish, failed, link in items:
        x = (begin - start).total_seconds() / total * 1000
        width = max((finish - begin).total_seconds() / total * 1000, 2)
        ms = (finish - begin).total_seconds() * 1000
        label = f"<a href=\"{link}\">{e(name)}</a>" if link else e(name)
        rows.append(
            f"<div class=\"wf-row d{min(depth, 4)}\"><div class=\"wf-label\" title=\"{e(name)}\">{label}</div>"
            f"<svg class=\"wf-bar\" viewBox=\"0 0 1000 10\" preserveAspectRatio=\"none\" role=\"img\""
            f" aria-label=\"{e(name)}: {e(duration(ms))}\"><rect class=\"k-{e(kind)}{' failed' if failed else ''}\""
            f" x=\"{x:.1f}\" y=\"1\" width=\"{min(width, 1000 - x):.1f}\" height=\"8\" rx=\"1\"></rect></svg>"
            f"<div class=\"wf-ms\">{e(duration(ms))}</div></div>")
    return f"<div class=\"waterfall\">{''.join(rows)}</div>"


def _sync(state: Any) -> str:
    if state is None:
        return "<p class=\"muted\">not synced to the Galtea platform</p>"
    items = [("platform session", state.platform_id or "—"), ("platform version", state.version_id or "—"),
             ("platform status", state.status or "—"), ("turns on the platform", len(state.turns)),
             ("turn creations awaiting confirmation", len(state.intents))]
    return kv_table(items)


def _annotate_form(detail: SessionDetail, csrf: str) -> str:
    """The annotation form (``galtea-otel ui --annotate``): a score or a label, and a note, of the session or of
    one turn; posted to ``.../annotate``, stored as an evaluation with source ``human``."""
    turns = "".join(f"<option value=\"{t.index + 1}\">turn {t.index + 1}</option>" for t in detail.inference_results)
    action = session_href(detail.custom_id, detail.version).rstrip("/") + "/annotate"
    return (
        f"<h3 id=\"annotate\">Annotate</h3><form class=\"annotate\" method=\"post\" action=\"{e(action)}\">"
        f"<input type=\"hidden\" name=\"csrf\" value=\"{e(csrf)}\">"
        f"<input type=\"hidden\" name=\"project\" value=\"{e(detail.project)}\">"
        f"<label class=\"f\"><span>Of</span><select name=\"turn\"><option value=\"\">the session</option>{turns}"
        "</select></label>"
        "<label class=\"f\"><span>Name</span><input type=\"text\" name=\"name\" required maxlength=\"200\""
        " placeholder=\"helpfulness\"></label>"
        "<label class=\"f n\"><span>Score</span><input type=\"text\" inputmode=\"decimal\" name=\"score\""
        " placeholder=\"0.8\"></label>"
        "<label class=\"f\"><span>or label</span><input type=\"text\" name=\"label\" maxlength=\"200\""
        " placeholder=\"pass\"></label>"
        "<label class=\"f wide\"><span>Note</span><textarea name=\"note\" rows=\"2\" maxlength=\"10000\""
        " placeholder=\"why (optional)\"></textarea></label>"
        "<label class=\"f\"><span>By</span><input type=\"text\" name=\"by\" maxlength=\"100\""
        " placeholder=\"your name (optional)\"></label>"
        "<div class=\"actions\"><button type=\"submit\">Save annotation</button></div></form>"
    )


def session_page(detail: SessionDetail, *, lifecycle: str | None, sync_state: Any, test_case: Any,
                 csrf: str | None = None) -> str:
    """The session's page; ``csrf`` (the server's token) adds the annotation form (``ui --annotate``)."""
    s = detail
    tokens = (f"{number(s.input_tokens)} in / {number(s.output_tokens)} out"
              f" / {number(s.cache_read_input_tokens)} cached")
    facts = kv_table([
        ("status", status_badge(s.status, lifecycle)), ("version", e(s.version)), ("project", e(s.project)),
        ("user", e(s.user_id or "—")),
        ("kind", "production" if s.is_production else f"evaluation of test case {e(s.test_case_id)}"),
        ("started", when(s.started_at)), ("ended", when(s.ended_at)), ("duration", duration(s.duration_ms)),
        ("turns", str(s.turn_count)), ("tokens", tokens), ("cost", cost(s.cost)), ("model", e(s.model or "—")),
    ], raw=True)
    error = f"<div class=\"error big\" role=\"alert\"><b>Error</b> {e(s.error)}</div>" if s.error else ""
    seen: list[Any] = []
    turns = "".join(_turn(t, seen) for t in s.inference_results) or "<p class=\"muted\">no turns yet</p>"
    loose = (f"<h3>Spans outside any turn</h3><div class=\"steps\">{_span_steps(s.spans)}</div>" if s.spans else "")
    case = ""
    if test_case is not None:
        case = ("<h3>Test case</h3>" + kv_table([("id", test_case.id), ("input", test_case.input),
                                                  ("expected output", test_case.expected_output),
                                                  ("context", test_case.context)]))
    metadata = kv_table((k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
                        for k, v in s.metadata.items())
    data = json.dumps(detail.model_dump(mode="json"), ensure_ascii=False, indent=2)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    evals = f"<div id=\"evaluations\">{_evaluations(getattr(detail, 'evaluations', None))}</div>"
    if csrf is not None:
        evals += _annotate_form(detail, csrf)
    return (
        f"<main id=\"main\" data-view=\"session\"><nav class=\"crumbs\"><a href=\"/\" data-back>← sessions</a></nav>"
        f"<h1 class=\"sid\">{e(s.custom_id)} {status_badge(s.status, lifecycle)}</h1>{error}"
        f"<div class=\"session-grid\"><div class=\"transcript\"><h2>Conversation</h2>{turns}{loose}</div>"
        f"<aside class=\"side\"><h2>Session</h2>{facts}"
        f"<div class=\"actions\"><button type=\"button\" data-copy=\"session-json\">Copy as JSON</button>"
        f" <span class=\"copied muted\" role=\"status\"></span></div>"
        f"{evals}<h3>Context</h3>{text_block(s.context) if s.context else _NONE}"
        f"<h3>Metadata</h3>{metadata}{case}<h3>Galtea sync</h3>{_sync(sync_state)}</aside></div>"
        f"<h2>Timeline</h2>{_timeline(detail)}"
        f"<script type=\"application/json\" id=\"session-json\">{data}</script></main>"
    )


def error_page(status: int, title: str, message: str) -> str:
    return (f"<main id=\"main\" data-view=\"error\"><h1>{status} · {e(title)}</h1>"
            f"<p class=\"error big\" role=\"alert\">{e(message)}</p><p><a href=\"/\">← all sessions</a></p></main>")
