"""Session-key resolution: which session each span of a trace belongs to (SESSION_MODEL section 2).

A span's custom id is its own, else its nearest ancestor's in the trace, else the trace's (the keyed span that
started first). The version is resolved the same way over span-level version keys, then falls back to the
resource version, then the configured default. The result depends only on the set of spans, never on the order
they arrived in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from galtea_otel.translate.row import SpanRow

Key = tuple[str, str]


def _resolver(rows: Sequence[SpanRow], attr: Callable[[SpanRow], str | None]) -> Callable[[SpanRow], str | None]:
    by_id = {row.span_id: row for row in rows}
    keyed = [row for row in rows if attr(row)]
    trace_value = attr(min(keyed, key=lambda r: (r.start_ns, r.span_id))) if keyed else None
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
    """Map span id -> resolved (custom_id, version) for all rows of ONE trace; None where no key is known."""
    custom = _resolver(rows, lambda r: r.own_custom_id)
    version = _resolver(rows, lambda r: r.own_version)
    result: dict[str, Key | None] = {}
    for row in rows:
        custom_id = custom(row)
        if custom_id is None:
            result[row.span_id] = None
            continue
        result[row.span_id] = (custom_id, version(row) or row.resource_version or default_version)
    return result


def fully_keyed(row: SpanRow) -> bool:
    """A span that states its own custom id and version needs nothing from its trace."""
    return bool(row.own_custom_id) and bool(row.own_version)
