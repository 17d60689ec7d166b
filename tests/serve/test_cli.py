"""`galtea-otel serve` as a real process: bind rules, logs, clean shutdown on SIGTERM; its options."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.serve.cli import serve
from galtea_otel.serve.options import (
    DEFAULT_GRPC,
    DEFAULT_HTTP,
    Address,
    ConfigError,
    ServeOptions,
    parse_address,
    redact_url,
)

from ..decode.samples import llm_spans
from .conftest import span_count

ROOT = Path(__file__).resolve().parents[2]


def test_default_bind_is_loopback() -> None:
    options = ServeOptions()
    assert (
        (str(options.http), str(options.grpc))
        == (DEFAULT_HTTP, DEFAULT_GRPC)
        == ("127.0.0.1:4318", "127.0.0.1:4317")
    )
    assert options.check() == []


def test_parse_address() -> None:
    assert parse_address("0.0.0.0:4318") == Address("0.0.0.0", 4318)
    assert parse_address("[::1]:9") == Address("::1", 9)
    assert parse_address("off") is None
    assert parse_address(":4318") == Address("127.0.0.1", 4318)
    for bad in ("localhost", "host:port", "1.2.3.4:70000"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_public_address_needs_a_token_or_an_explicit_insecure_flag() -> None:
    public = Address("0.0.0.0", 4318)
    with pytest.raises(ConfigError, match="without a token"):
        ServeOptions(http=public).check()
    assert ServeOptions(http=public, token="t").check() == []
    warnings = ServeOptions(http=public, allow_insecure_public=True).check()
    assert len(warnings) == 1 and "WITHOUT AUTHENTICATION" in warnings[0]
    assert ServeOptions(http=Address("::1", 1), grpc=Address("localhost", 2)).check() == []


def test_cli_refuses_a_public_bind_without_token() -> None:
    result = CliRunner().invoke(serve, ["--http", "0.0.0.0:0", "--grpc", "off"])
    assert result.exit_code == 2
    assert "without a token" in result.output


def test_redact_url() -> None:
    assert redact_url("postgresql://app:hunter2@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_process_stores_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'cli.db'}"
    token_file = tmp_path / "token"
    token_file.write_text("proc-token-123\n")
    http_port, grpc_port = _free_port(), _free_port()
    command = [
        sys.executable,
        "-c",
        "from galtea_otel.cli.main import main; main()",
        "serve",
        "--store",
        "sqlite:///" + str(tmp_path / "cli.db"),
        "--http",
        f"127.0.0.1:{http_port}",
        "--grpc",
        f"127.0.0.1:{grpc_port}",
        "--token-file",
        str(token_file),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "receiver ready" in line:
                break
        ready = lines[-1]
        assert f"http://127.0.0.1:{http_port}/v1/traces" in ready and f"127.0.0.1:{grpc_port}" in ready
        assert "cli.db" in ready and "token is required" in ready
        spans = llm_spans(sessions=2, turns=1)
        exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{http_port}/v1/traces",
            headers={"Authorization": "Bearer proc-token-123"},
        )
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()  # type: ignore[no-untyped-call]
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = "".join(lines) + rest
    assert "stopped" in log
    assert "proc-token-123" not in log
    assert span_count(store_url) == len(spans)
