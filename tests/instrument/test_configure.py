"""configure(): attach to the application's provider, never replace it, safe twice; flush, shutdown, exit;
the import footprint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel import attributes as A
from galtea_otel.instrument.processor import GalteaSpanProcessor
from tests.instrument.conftest import Otel, attr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": ROOT, **env}, cwd=ROOT,
    )


def galtea_processors(provider: TracerProvider) -> list[SpanProcessor]:
    registered = provider._active_span_processor._span_processors  # the SDK's list of added processors
    return [p for p in registered if isinstance(p, GalteaSpanProcessor)]


def names(spans: Any) -> list[str]:
    return [s.name for s in spans]


def test_spans_are_exported_through_the_batch_processor_on_flush(otel: Otel) -> None:
    with galtea_otel.session(custom_id="c", version="1"):
        galtea_otel.inference(name="llm")(lambda: "x")()
    assert galtea_otel.flush(timeout_s=5)
    exported = otel.exported.get_finished_spans()
    assert sorted(names(exported)) == ["galtea.session", "galtea.session.start", "llm"]
    assert all(attr(s, A.SESSION_CUSTOM_ID) == "c" for s in exported)


def test_configure_twice_registers_one_processor_and_swaps_the_exporter(otel: Otel) -> None:
    first = otel.exported
    galtea_otel.inference(name="before")(lambda: 1)()
    second = InMemorySpanExporter()
    assert galtea_otel.configure(tracer_provider=otel.provider, exporter=second) is otel.provider
    assert len(galtea_processors(otel.provider)) == 1
    assert names(first.get_finished_spans()) == ["before"]  # flushed when it was swapped out
    galtea_otel.inference(name="after")(lambda: 1)()
    galtea_otel.flush()
    assert names(second.get_finished_spans()) == ["after"]
    assert names(first.get_finished_spans()) == ["before"]  # the old exporter is shut down


def test_configure_on_another_provider_detaches_the_previous_one(otel: Otel) -> None:
    other = TracerProvider(shutdown_on_exit=False)
    other_exported = InMemorySpanExporter()
    galtea_otel.configure(tracer_provider=other, exporter=other_exported)
    galtea_otel.inference(name="on-other")(lambda: 1)()
    otel.tracer.start_span("on-first").end()
    galtea_otel.flush()
    assert names(other_exported.get_finished_spans()) == ["on-other"]
    assert otel.exported.get_finished_spans() == ()
    with pytest.raises(TypeError):
        galtea_otel.configure(tracer_provider=object(), exporter=InMemorySpanExporter())  # type: ignore[arg-type]


def test_shutdown_stops_export_and_configure_resumes(otel: Otel) -> None:
    galtea_otel.inference(name="one")(lambda: 1)()
    assert galtea_otel.shutdown(timeout_s=5)
    assert names(otel.exported.get_finished_spans()) == ["one"]
    with galtea_otel.session(custom_id="still-stamped", version="1"):
        otel.tracer.start_span("two").end()
    assert attr(otel.one("two"), A.SESSION_CUSTOM_ID) == "still-stamped"  # stamping continues
    assert names(otel.exported.get_finished_spans()) == ["one"]
    resumed = InMemorySpanExporter()
    galtea_otel.configure(tracer_provider=otel.provider, exporter=resumed)
    galtea_otel.inference(name="three")(lambda: 1)()
    galtea_otel.flush()
    assert names(resumed.get_finished_spans()) == ["three"]


def test_failures_of_the_inner_processor_are_counted_not_raised() -> None:
    class Broken(SpanProcessor):
        def on_start(self, span: Span, parent_context: Any = None) -> None:
            raise RuntimeError("on_start bug")

        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("on_end bug")

    galtea_otel.stats.reset()
    provider = TracerProvider(shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(GalteaSpanProcessor(Broken()))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("fine").end()
    assert names(memory.get_finished_spans()) == ["fine"]
    counters = galtea_otel.stats()
    assert counters["internal_errors.processor.export_on_start"] == 1
    assert counters["internal_errors.processor.export_on_end"] == 1


def test_default_exporter_is_the_session_exporter(otel: Otel, tmp_path: Any) -> None:
    from galtea_otel.export import exporter as exporter_module
    from galtea_otel.instrument.processor import BatchExport

    galtea_otel.configure(f"sqlite:///{tmp_path}/s.db", tracer_provider=otel.provider)
    (processor,) = galtea_processors(otel.provider)
    assert isinstance(processor.export, BatchExport)
    assert isinstance(processor.exporter, exporter_module.SessionExporter)
    assert processor.export.exporter is processor.exporter
    assert not (tmp_path / "s.db").exists()  # the store is opened lazily, in the export thread


def test_stats_is_callable_and_carries_the_counter_functions() -> None:
    import galtea_otel.stats as via_import_as
    from galtea_otel import stats as via_from
    from galtea_otel.stats import incr, snapshot

    galtea_otel.stats.reset()
    incr("a")
    via_from.incr("a", 2)
    via_import_as.incr("b")
    assert galtea_otel.stats() == snapshot() == {"a": 3, "b": 1}


# -- fresh processes: the global provider can be set only once per process -----------------------------------

def test_attaches_to_the_applications_global_provider_without_replacing_it() -> None:
    out = run_python("""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import galtea_otel

        app_provider, app_spans, ours = TracerProvider(), InMemorySpanExporter(), InMemorySpanExporter()
        app_provider.add_span_processor(SimpleSpanProcessor(app_spans))
        trace.set_tracer_provider(app_provider)
        returned = galtea_otel.configure(exporter=ours)
        galtea_otel.configure(exporter=ours)
        with galtea_otel.session(custom_id="c", version="1"):
            trace.get_tracer("app").start_span("app-span").end()
        galtea_otel.flush()
        print(json.dumps({
            "same": returned is app_provider and trace.get_tracer_provider() is app_provider,
            "app_sees": sorted(s.name for s in app_spans.get_finished_spans()),
            "we_export": sorted(s.name for s in ours.get_finished_spans()),
            "stamped": app_spans.get_finished_spans()[0].attributes.get("galtea.session.custom_id"),
        }))
    """)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["same"] is True
    assert result["app_sees"] == result["we_export"] == ["app-span", "galtea.session", "galtea.session.start"]
    assert result["stamped"] == "c"
    assert "Overriding of current TracerProvider" not in out.stderr


def test_creates_and_sets_a_provider_only_when_none_is_set() -> None:
    out = run_python("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import galtea_otel

        created = galtea_otel.configure(exporter=InMemorySpanExporter())
        assert isinstance(created, TracerProvider)
        assert trace.get_tracer_provider() is created
        assert galtea_otel.configure(exporter=InMemorySpanExporter()) is created
        print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_pending_spans_are_flushed_at_exit() -> None:
    out = run_python("""
        import sys
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
        import galtea_otel

        class Printing(SpanExporter):
            def export(self, spans):
                for span in spans:
                    sys.stdout.write("exported " + span.name + "\\n")
                sys.stdout.flush()
                return SpanExportResult.SUCCESS

        galtea_otel.configure(exporter=Printing(), schedule_delay_millis=60_000)
        with galtea_otel.session(custom_id="c", version="1"):
            galtea_otel.inference(name="last-words")(lambda: "bye")()
        sys.stdout.write("exiting\\n")
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "exiting"
    assert sorted(lines[1:]) == [
        "exported galtea.session", "exported galtea.session.start", "exported last-words"]


def test_import_footprint() -> None:
    out = run_python("""
        import json, sys
        import galtea_otel
        print(json.dumps(sorted(sys.modules)))
    """)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    heavy_roots = {"sqlite3", "_sqlite3", "pydantic", "pydantic_core", "click", "uvicorn", "grpc", "psycopg",
                   "google"}
    assert sorted(m for m in loaded if m.split(".")[0] in heavy_roots) == []
    assert [m for m in loaded if m.startswith("opentelemetry.exporter")] == []
    # The conventions table is plain data (the stamping processor protects its span-kind keys); nothing else of
    # the translate stage is loaded.
    ours = {m for m in loaded if m.startswith("galtea_otel.")} - {"galtea_otel.translate",
                                                                  "galtea_otel.translate.conventions"}
    assert not {m for m in ours if m.split(".")[1] in {"store", "export", "records", "pipeline", "translate",
                                                      "assemble", "decode", "serve", "cli"}}, ours
    # lazily available
    out = run_python("import galtea_otel, sys; galtea_otel.SessionDetail; galtea_otel.PipelineSettings; "
                     "print('pydantic' in sys.modules)")
    assert out.stdout.strip() == "True"
