"""Session-key resolution: which session each span of a trace belongs to (SESSION_MODEL section 2).

A span's custom id is the nearest *strong* key on itself or its ancestors in the trace; else the nearest *weak*
key on itself or its ancestors (a weak key is only a library's own conversation id, such as pydantic-ai's random
``gen_ai.conversation.id``: ``SpanRow.key_weak``); else the trace's: the strong key of the keyed span that
started first, else the weak key of the one that started first. So an application's key on an ancestor beats a
library's on a descendant. The version is resolved the same way over span-level version keys (all strong), then
falls back to the resource version, then the configured default. The result depends only on the set of spans,
never on the order they arrived in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from galtea_otel.translate.row import SpanRow

# (custom_id, version, project): the project last, so that ``key[0]`` / ``key[1]`` keep their meaning.
Key = tuple[str, str, str]


def _strong_id(row: SpanRow) -> str | None:
    return row.own_custom_id if row.own_custom_id and not row.key_weak else None


def _weak_id(row: SpanRow) -> str | None:
    return row.own_custom_id if row.own_custom_id and row.key_weak else None


def _resolver(rows: Sequence[SpanRow], attr: Callable[[SpanRow], str | None],
              use_trace: bool = True) -> Callable[[SpanRow], str | None]:
    """The nearest value of ``attr`` on a span or its ancestors, else (``use_trace``) the trace's."""
    by_id = {row.span_id: row for row in rows}
    keyed = [row for row in rows if attr(row)]
    trace_value = attr(min(keyed, key=lambda r: (r.start_ns, r.span_id))) if keyed and use_trace else None
    cache: dict[str, str | None] = {}

    def resolve(row: SpanRow) -> str | None:
        chain: list[str] = []
        current: SpanRow | None = row
        found: str | None = None
        while current is not None:
            if current.span_id in cache:
                found = cache[current.span_id]
                break
            value = attr(current)
            if value:
                found = value
                cache[current.span_id] = value
                break
            chain.append(current.span_id)
            parent = current.parent_span_id
            current = by_id.get(parent) if parent and parent not in chain else None
        if found is None:
            found = trace_value
        for span_id in chain:
            cache[span_id] = found
        return found

    return resolve


def resolve_trace(rows: Sequence[SpanRow], default_version: str) -> dict[str, Key | None]:
    """Map span id -> resolved (custom_id, version, project) for all rows of ONE trace of one project; None where
    no key is known."""
    strong_line = _resolver(rows, _strong_id, use_trace=False)
    weak_line = _resolver(rows, _weak_id, use_trace=False)
    keyed = [r for r in rows if _strong_id(r)] or [r for r in rows if _weak_id(r)]
    trace_value = min(keyed, key=lambda r: (r.start_ns, r.span_id)).own_custom_id if keyed else None
    version = _resolver(rows, lambda r: r.own_version)
    result: dict[str, Key | None] = {}
    for row in rows:
        custom_id = strong_line(row) or weak_line(row) or trace_value
        if custom_id is None:
            result[row.span_id] = None
            continue
        result[row.span_id] = (custom_id, version(row) or row.resource_version or default_version, row.project)
    return result


def fully_keyed(row: SpanRow) -> bool:
    """A span that states its own strong custom id and its version needs nothing from its trace."""
    return bool(row.own_custom_id) and bool(row.own_version) and not row.key_weak
