"""What a test needs that a newcomer's machine may lack (PostgreSQL, Chromium, an optional package): there the
test is skipped with the reason; under CI (``CI`` set), where everything is installed, the same is a failure."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def unavailable(why: str) -> NoReturn:
    """Skip the test (a module at import too) for ``why``; fail it under CI."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why, allow_module_level=True)


def need_module(name: str) -> ModuleType:
    """The module ``name``, imported; else ``unavailable``."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"{name} is not installed ({exc}): pip install -e '.[test]'")
