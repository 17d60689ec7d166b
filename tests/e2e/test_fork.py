"""A forked child opens its own store: it never writes through the parent's database connections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from galtea_otel.export.exporter import SessionExporter
from galtea_otel.store import open_store


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reopens_the_store_and_both_records_land(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    exporter = SessionExporter(url)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    key = {"galtea.session.version": "1", "gen_ai.operation.name": "chat"}
    with tracer.start_as_current_span("parent", attributes={**key, "galtea.session.custom_id": "parent"}):
        pass
    parent_pipeline = exporter.pipeline
    pid = os.fork()
    if pid == 0:  # the child: export one span, report whether it used a fresh pipeline, exit at once
        fresh = exporter._pipeline is None
        with tracer.start_as_current_span("child", attributes={**key, "galtea.session.custom_id": "child"}):
            pass
        ok = fresh and exporter.pipeline is not parent_pipeline
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(s.custom_id for s in open_store(url).list_sessions()) == ["child", "parent"]
    provider.shutdown()
