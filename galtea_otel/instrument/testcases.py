"""The registry of evaluation test cases that non-production sessions link to.

A non-production session (``session(..., test_case_id=...)``) must name a registered test case; it takes its
``context`` from it. Register them from a JSON file (a list of objects, or ``{"test_cases": [...]}``), a JSONL
file (one object a line) or any iterable of mappings with the fields of ``galtea_otel.records.TestCase``
(``id`` required; ``input``, ``expected_output``, ``context``, ``metadata`` optional). Registering an id again
replaces it. The registry lives in the process.

Test cases loaded into the store (``galtea-otel test-cases load FILE``) are found too: a lookup that misses the
registry reads the store the exporter writes to (``configure(store=...)``, else ``$GALTEA_OTEL_STORE``, else
``./galtea_sessions.db`` when that file exists), once per id, and keeps what it found in the registry.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galtea_otel.records import TestCase

__all__ = ["get_test_case", "register_test_cases", "registered_test_cases", "registry_generation"]

_lock = threading.Lock()
_registry: dict[str, TestCase] = {}
_generation = 0  # bumped on every registration, so the exporter knows when to copy the registry to the store


def register_test_cases(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any] | TestCase],
) -> list[TestCase]:
    """Register test cases; returns them. Raises ``ValueError`` (naming the line or item) on an invalid one,
    registering none of them, and ``OSError`` when the file cannot be read."""
    from pydantic import ValidationError

    from galtea_otel.records import TestCase

    if isinstance(source, (str, os.PathLike)):
        items, where = _read_file(Path(source))
    elif isinstance(source, Mapping):
        raise TypeError("register_test_cases() takes a path or an iterable of test cases, not one mapping")
    else:
        items = list(source)
        where = [f"item {i}" for i in range(len(items))]
    parsed: list[TestCase] = []
    for item, place in zip(items, where, strict=True):
        if isinstance(item, TestCase):
            parsed.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ValueError(f"test case at {place}: expected an object, got {type(item).__name__}")
        try:
            case = TestCase.model_validate(dict(item))
        except ValidationError as exc:
            raise ValueError(f"invalid test case at {place}: {exc}") from None
        if not case.id.strip():
            raise ValueError(f"invalid test case at {place}: 'id' must be a non-empty string")
        parsed.append(case)
    global _generation
    with _lock:
        for case in parsed:
            _registry[case.id] = case
        _generation += 1
    return parsed


def _read_file(path: Path) -> tuple[list[Any], list[str]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        items, where = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc})") from None
                where.append(f"{path}:{number}")
        return items, where
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, Mapping) and isinstance(data.get("test_cases"), list):
        data = data["test_cases"]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of test cases")
    return data, [f"{path} item {i}" for i in range(len(data))]


def get_test_case(test_case_id: str) -> TestCase | None:
    """The registered test case with this id, else the one loaded into the store, or None."""
    with _lock:
        case = _registry.get(test_case_id)
    if case is not None:
        return case
    case = _from_store(test_case_id)
    if case is not None:
        with _lock:  # kept without bumping the generation: the store has it already
            _registry.setdefault(case.id, case)
    return case


def _from_store(test_case_id: str) -> TestCase | None:
    """The test case as the configured store holds it; None when there is no store or it cannot be read."""
    from galtea_otel.stats import internal_error

    try:
        store_arg = _configured_store()
        if store_arg is not None and not isinstance(store_arg, str):
            found: TestCase | None = store_arg.get_test_case(test_case_id)
            return found
        from galtea_otel.store import default_store_url, open_store

        url = store_arg or default_store_url()
        scheme, sep, _ = url.partition("://")
        if not sep or scheme == "sqlite":
            from galtea_otel.store.sqlite import path_from_url

            if not path_from_url(url.partition("?")[0]).exists():
                return None  # never create a store to look something up
        store = open_store(url)
        try:
            return store.get_test_case(test_case_id)
        finally:
            store.close()
    except Exception as exc:
        internal_error("test_cases.from_store", exc)
        return None


def _configured_store() -> Any:
    """What ``configure(store=...)`` gave the default exporter (a URL, a Store, or None for the default)."""
    from galtea_otel import config

    provider = config.current().provider
    processor = config._processors.get(provider) if provider is not None else None
    return getattr(getattr(processor, "exporter", None), "_store_arg", None)


def registry_generation() -> int:
    """A number that changes whenever test cases are registered."""
    return _generation


def registered_test_cases() -> list[TestCase]:
    """Every registered test case, in registration order."""
    with _lock:
        return list(_registry.values())
