"""The producers' runtimes, built by the tests and cached outside the repository.

Each Python producer whose dependencies could clash with the project's (OpenTelemetry pins,
``opentelemetry-util-genai``) runs from a virtual environment of its own, built from
``producers/<name>.txt`` into ``~/.cache/galtea-otel/venvs/<name>-<hash of that file>`` (``GALTEA_OTEL_CACHE``
moves the root). The Node producers' packages are installed from ``node/package.json`` (exact pins) into
``~/.cache/galtea-otel/node/<hash>``. A build happens once per content hash, under a file lock so parallel runs
do not collide, and is marked complete only when it finished, so an interrupted build is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "producers"
NODE_PACKAGE = HERE / "node" / "package.json"
DONE = ".galtea-otel-complete"
BUILD_TIMEOUT_S = 900


def cache_root() -> Path:
    return Path(os.environ.get("GALTEA_OTEL_CACHE") or Path.home() / ".cache" / "galtea-otel")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}\n{tail}")


def _timed(target: Path, build: object) -> Path:
    """Build ``target`` once (``build(target)``), recording how long it took in ``DONE``."""
    if (target / DONE).exists():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if (target / DONE).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        started = time.monotonic()
        build(target)  # type: ignore[operator]
        (target / DONE).write_text(f"built in {time.monotonic() - started:.0f} s\n")
    return target


def python_for(producer: str) -> Path:
    """The interpreter of ``producer``'s virtual environment (built on first use)."""
    requirements = REQUIREMENTS / f"{producer}.txt"
    version = f"{sys.version_info.major}.{sys.version_info.minor}".encode()
    target = cache_root() / "venvs" / f"{producer}-{_digest(requirements.read_bytes(), version)}"

    def build(path: Path) -> None:
        _run([sys.executable, "-m", "venv", str(path)])
        _run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "-r", str(requirements)])

    return _timed(target, build) / "bin" / "python"


def node_modules() -> Path:
    """A folder with ``node_modules`` installed from the pinned package.json (installed on first use)."""
    data = NODE_PACKAGE.read_bytes()
    target = cache_root() / "node" / _digest(data)

    def build(path: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not on PATH: the Node producers need Node.js 20+ and npm")
        path.mkdir(parents=True)
        (path / "package.json").write_bytes(data)
        _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=path)

    return _timed(target, build)
