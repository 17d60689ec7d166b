"""session(), end_session(), stamping of every span inside a session."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import StatusCode

import galtea_otel
from galtea_otel import attributes as A
from tests.instrument.conftest import Otel, attr, in_session, loads


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"custom_id": "", "version": "1"}, ValueError),
        ({"custom_id": "   ", "version": "1"}, ValueError),
        ({"custom_id": None, "version": "1"}, ValueError),
        ({"custom_id": "c", "version": ""}, ValueError),
        ({"custom_id": 42, "version": "1"}, TypeError),
        ({"custom_id": "c", "version": "1", "is_production": True, "test_case_id": "tc-1"}, ValueError),
        ({"custom_id": "c", "version": "1", "is_production": False}, ValueError),
        ({"custom_id": "c", "version": "1", "test_case_id": "never-registered"}, ValueError),
        ({"custom_id": "c", "version": "1", "metadata": {"x": object()}}, TypeError),
        ({"custom_id": "c", "version": "1", "metadata": {"x": float("nan")}}, ValueError),
        ({"custom_id": "c", "version": "1", "metadata": ["not", "a", "mapping"]}, TypeError),
        ({"custom_id": "c", "version": "1", "context": 3}, TypeError),
    ],
)
def test_invalid_sessions_raise_before_recording_anything(otel: Otel, kwargs: dict, error: type) -> None:
    galtea_otel.register_test_cases([{"id": "tc-1", "context": "ctx"}])
    with pytest.raises(error), galtea_otel.session(**kwargs):
        pytest.fail("the block must not run")
    assert otel.spans() == []


def test_custom_id_and_version_are_required_arguments() -> None:
    with pytest.raises(TypeError):
        galtea_otel.session(custom_id="c")  # type: ignore[call-arg]


def test_session_span_start_marker_and_attributes(otel: Otel) -> None:
    with galtea_otel.session(custom_id="conv-42", version="1.4.0", context="prod ctx",
                             metadata={"user": "u-7", "n": 1}) as s:
        assert s.custom_id == "conv-42" and s.version == "1.4.0" and s.is_production
        # the start marker is already exported while the session runs (PENDING is visible)
        marker = otel.one("galtea.session.start")
        assert otel.named("galtea.session") == []
    session = otel.one("galtea.session")
    assert s.trace_id == format(session.context.trace_id, "032x")
    assert attr(session, A.SPAN_TYPE) == A.TYPE_SESSION
    assert attr(session, A.SESSION_CONTEXT) == "prod ctx"
    assert attr(session, A.TEST_CASE_ID) is None
    assert loads(session, A.SESSION_METADATA) == {"user": "u-7", "n": 1}
    for key in A.STAMPED_KEYS:
        assert attr(session, key) == ("1.4.0" if key == A.SESSION_VERSION else "conv-42")
        assert attr(marker, key) == attr(session, key)
    assert attr(marker, A.SESSION_EVENT) == A.EVENT_START
    assert marker.parent is not None and marker.parent.span_id == session.context.span_id
    assert marker.end_time is not None and marker.end_time <= session.end_time  # type: ignore[operator]
    assert session.status.status_code is StatusCode.UNSET


def test_non_production_session_takes_context_from_its_test_case(otel: Otel, tmp_path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"id": "tc-9", "input": "hi", "context": "the docs"}) + "\n\n"
                    + json.dumps({"id": "tc-10"}) + "\n")
    assert [c.id for c in galtea_otel.register_test_cases(path)] == ["tc-9", "tc-10"]
    with galtea_otel.session(custom_id="eval-1", version="2", test_case_id="tc-9", is_production=False) as s:
        assert not s.is_production and s.context == "the docs"
    session = otel.one("galtea.session")
    assert attr(session, A.TEST_CASE_ID) == "tc-9"
    assert attr(session, A.SESSION_CONTEXT) == "the docs"
    with pytest.raises(ValueError, match="context"):
        galtea_otel.session(custom_id="eval-2", version="2", test_case_id="tc-9", context="mine")


def test_register_test_cases_json_and_errors(tmp_path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"test_cases": [{"id": "j-1", "expected_output": "x", "metadata": {"k": 1}}]}))
    (case,) = galtea_otel.register_test_cases(path)
    assert galtea_otel.get_test_case("j-1") == case and case.metadata == {"k": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        galtea_otel.register_test_cases(bad)
    with pytest.raises(ValueError, match="item 1"):
        galtea_otel.register_test_cases([{"id": "a"}, {"input": "no id"}])
    assert galtea_otel.get_test_case("a") is None  # nothing registered from a refused batch


def test_exception_fails_the_session_and_propagates_unchanged(otel: Otel) -> None:
    error = RuntimeError("boom")
    with pytest.raises(RuntimeError) as caught, galtea_otel.session(custom_id="c", version="1"):
        raise error
    assert caught.value is error
    assert caught.traceback[-1].name == "test_exception_fails_the_session_and_propagates_unchanged"
    session = otel.one("galtea.session")
    assert session.status.status_code is StatusCode.ERROR
    assert session.status.description == "RuntimeError: boom"
    assert attr(session, A.SPAN_ERROR) == "RuntimeError: boom"
    (event,) = [e for e in session.events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.message"] == "boom"


async def test_async_session_and_helpers(otel: Otel) -> None:
    async with galtea_otel.session(custom_id="a-1", version="1", metadata={"a": 1}) as s:
        s.set_metadata({"b": [1, 2]}, c="x")
        s.set_error("judged wrong")
        with pytest.raises(TypeError):
            s.set_metadata(bad=object())
    session = otel.one("galtea.session")
    assert loads(session, A.SESSION_METADATA) == {"a": 1, "b": [1, 2], "c": "x"}
    assert session.status.status_code is StatusCode.ERROR
    assert session.status.description == "judged wrong"


def test_a_session_object_is_entered_once(otel: Otel) -> None:
    scope = galtea_otel.session(custom_id="c", version="1")
    with scope:
        pass
    with pytest.raises(RuntimeError), scope:
        pass


def test_foreign_spans_inside_a_session_are_stamped(otel: Otel) -> None:
    tracer = otel.tracer
    with tracer.start_as_current_span("outside-before"):
        pass
    with galtea_otel.session(custom_id="conv-7", version="3"):
        with tracer.start_as_current_span("foreign-parent"), tracer.start_as_current_span("foreign-child"):
            pass
        tracer.start_span("foreign-unparented-call").end()
    with tracer.start_as_current_span("outside-after"):
        pass
    for name in ("foreign-parent", "foreign-child", "foreign-unparented-call"):
        span = otel.one(name)
        assert attr(span, A.SESSION_CUSTOM_ID) == "conv-7"
        assert attr(span, A.SESSION_VERSION) == "3"
        assert attr(span, A.GEN_AI_CONVERSATION_ID) == "conv-7"
        assert attr(span, A.SESSION_ID) == "conv-7"
    for name in ("outside-before", "outside-after"):
        assert attr(otel.one(name), A.SESSION_CUSTOM_ID) is None
    assert galtea_otel.stats()["spans_started_in_session"] == 5  # session, start marker, three foreign


def test_nested_sessions_stamp_the_innermost(otel: Otel) -> None:
    with galtea_otel.session(custom_id="outer", version="1"):
        with galtea_otel.session(custom_id="inner", version="1"):
            otel.tracer.start_span("in-inner").end()
        otel.tracer.start_span("in-outer").end()
    assert in_session(otel.one("in-inner"), "inner")
    assert in_session(otel.one("in-outer"), "outer")


def test_stamp_survives_the_attribute_limit(otel: Otel) -> None:
    with galtea_otel.session(custom_id="big", version="1"), otel.tracer.start_as_current_span("many") as live:
        for i in range(300):
            live.set_attribute(f"k{i}", i)
    span = otel.one("many")
    assert len(span.attributes or {}) == 128
    for key in A.STAMPED_KEYS:
        assert key in (span.attributes or {}), key
    assert attr(span, "k299") == 299
    assert galtea_otel.stats().get("stamp_restored") == 1


def test_end_session_outside_any_session(otel: Otel) -> None:
    galtea_otel.end_session("web-1", "2.0")
    galtea_otel.end_session("web-2", "2.0", error="user left angry")
    ok, failed = otel.named("galtea.session.end")
    assert attr(ok, A.SESSION_EVENT) == A.EVENT_END
    assert attr(ok, A.SESSION_CUSTOM_ID) == "web-1" and attr(ok, A.SESSION_ID) == "web-1"
    assert attr(ok, A.SESSION_VERSION) == "2.0"
    assert ok.status.status_code is StatusCode.UNSET
    assert ok.end_time == ok.start_time
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "user left angry" and attr(failed, A.SPAN_ERROR) == "user left angry"
    with pytest.raises(ValueError):
        galtea_otel.end_session("", "1")


def test_end_session_inside_another_session_keeps_its_own_key(otel: Otel) -> None:
    with galtea_otel.session(custom_id="current", version="1"):
        galtea_otel.end_session("other", "9")
    marker = otel.one("galtea.session.end")
    assert attr(marker, A.SESSION_CUSTOM_ID) == "other" and attr(marker, A.SESSION_VERSION) == "9"
