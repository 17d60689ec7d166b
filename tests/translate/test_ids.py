"""A span's ids are checked before anything else is made of it (``translator.check_ids``): lower-case hex of
the right length, not all zero; anything else is an ``InvalidSpan`` that names the id."""

from __future__ import annotations

import pytest

from galtea_otel.spandata import SpanData
from galtea_otel.translate.translator import InvalidSpan, check_ids

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def span(trace_id: str = TRACE, span_id: str = SPAN, parent: str | None = "53995c3f42cd8ad8") -> SpanData:
    return SpanData(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="s", start_ns=1, end_ns=2)


def test_valid_ids_pass() -> None:
    check_ids(span())
    check_ids(span(parent=None))
    check_ids(span(parent="0" * 16))  # only the trace and span ids must not be all zero


@pytest.mark.parametrize(("field", "value"), [
    ("trace_id", TRACE.upper()),  # upper case
    ("trace_id", TRACE[:-1]),  # too short
    ("trace_id", TRACE + "0"),  # too long
    ("trace_id", TRACE[:-1] + "g"),  # not hex
    ("trace_id", TRACE[:-1] + "\u0660"),  # a digit, but not an ASCII one
    ("trace_id", " " + TRACE[1:]),
    ("trace_id", "0" * 32),  # all zero
    ("span_id", SPAN[:-1] + "\n"),
    ("span_id", "0" * 16),
    ("span_id", ""),
    ("parent", "53995C3F42CD8AD8"),
    ("parent", "53995c3f42cd8ad"),
])
def test_bad_ids_are_refused_by_name(field: str, value: str) -> None:
    bad = span(**{field: value})
    with pytest.raises(InvalidSpan, match=("parent_span_id" if field == "parent" else field)):
        check_ids(bad)
