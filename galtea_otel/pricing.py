"""What a turn cost, when the span did not say: a price file, else the price table of ``genai-prices``.

One pure entry point, :func:`price_turn` (and :func:`decide_cost`, which keeps a reported cost), called where a
turn's cost is decided (the assembler). Nothing here is imported by the instrumentation: the assembler imports
this module, which imports ``genai-prices`` (``pip install 'galtea-otel[prices]'``, Python 3.11+) only on the
first turn it has to price.

- **Reported** (``cost_source="reported"``): a cost on the spans always wins.
- **Override** (``"override"``): the JSON file named by ``$GALTEA_OTEL_PRICES``. An object of model pattern ->
  prices in USD per million tokens, one entry or a list of dated entries::

      {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6},
       "acme-*": [{"input": 1, "output": 2, "start": "2025-01-01"},
                  {"input": 0.5, "output": 1, "start": "2026-06-01T00:00:00Z"}]}

  A pattern is a case-insensitive glob (``*``, ``?``); an exact name beats a glob, then the longest glob. Of the
  entries of a pattern, the one with the newest ``start`` at or before the turn's start time applies (no
  ``start``: always). ``cached_input`` defaults to ``input``. The file is re-read when it changes; a file that
  cannot be read or is invalid is logged once per change and counted (``prices_file_invalid``), and ignored.
- **Table** (``"table"``): the price table bundled in the ``genai-prices`` wheel, as of the turn's start time.
  Never the network: its auto-update is not used (the bundled snapshot is read directly).

``input_tokens`` includes the cached input tokens (as OpenTelemetry GenAI and OpenAI count them): the cached
part is priced at the cached rate, the rest at the input rate. An unknown model gives None: never a guess.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

CostSource = Literal["reported", "table", "override"]
log = logging.getLogger("galtea_otel")

ENV_PRICES = "GALTEA_OTEL_PRICES"
SOURCE_REPORTED: CostSource = "reported"
SOURCE_TABLE: CostSource = "table"
SOURCE_OVERRIDE: CostSource = "override"
_DAY_NS = 86_400 * 10**9


class PriceFileError(ValueError):
    """The price file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Priced:
    """The cost of one turn, where it came from, and which price list gave it."""

    cost: float
    source: CostSource  # SOURCE_TABLE or SOURCE_OVERRIDE
    version: str  # "genai-prices 0.2.3", or "file <name> <digest>"


@dataclass(frozen=True)
class _Entry:
    start_ns: int  # 0: no start date
    input: float
    cached_input: float
    output: float


@dataclass(frozen=True)
class PriceFile:
    """A parsed price file: pattern -> dated entries (oldest first)."""

    version: str
    exact: dict[str, tuple[_Entry, ...]]
    globs: tuple[tuple[str, tuple[_Entry, ...]], ...]  # longest pattern first

    def lookup(self, model: str, at_ns: int) -> _Entry | None:
        name = model.lower()
        entries = self.exact.get(name)
        if entries is None:
            entries = next((e for pattern, e in self.globs if fnmatch.fnmatchcase(name, pattern)), None)
        if entries is None:
            return None
        due = [e for e in entries if e.start_ns <= at_ns]
        return due[-1] if due else None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise PriceFileError(f"{where}: a price must be a non-negative number (USD per million tokens), not {value!r}")
    return float(value)


def _start_ns(value: Any, where: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        raise PriceFileError(f"{where}: start must be an ISO date or date-time text, not {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PriceFileError(f"{where}: start {value!r} is not an ISO date (YYYY-MM-DD) or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**9


_ENTRY_KEYS = {"input", "cached_input", "output", "start"}


def parse_price_file(text: str, name: str = "prices") -> PriceFile:
    """Parse the JSON of a price file; raises PriceFileError with a clear message."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PriceFileError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise PriceFileError(f"{name}: expected a JSON object of model pattern -> prices")
    exact: dict[str, tuple[_Entry, ...]] = {}
    globs: list[tuple[str, tuple[_Entry, ...]]] = []
    for pattern, raw in data.items():
        if not pattern.strip():
            raise PriceFileError(f"{name}: an empty model pattern")
        items = raw if isinstance(raw, list) else [raw]
        entries = []
        for i, item in enumerate(items):
            where = f"{name}: {pattern!r}" + (f" entry {i}" if isinstance(raw, list) else "")
            if not isinstance(item, dict):
                raise PriceFileError(f"{where}: expected an object with input, output (and cached_input, start)")
            unknown = set(item) - _ENTRY_KEYS
            if unknown:
                raise PriceFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}"
                                     f" (known: {', '.join(sorted(_ENTRY_KEYS))})")
            if "input" not in item or "output" not in item:
                raise PriceFileError(f"{where}: input and output prices are required")
            price_in = _number(item["input"], where)
            entries.append(_Entry(
                start_ns=_start_ns(item.get("start"), where),
                input=price_in,
                cached_input=_number(item["cached_input"], where) if "cached_input" in item else price_in,
                output=_number(item["output"], where),
            ))
        entries.sort(key=lambda e: e.start_ns)
        key = pattern.strip().lower()
        if any(c in key for c in "*?["):
            globs.append((key, tuple(entries)))
        else:
            exact[key] = tuple(entries)
    globs.sort(key=lambda g: -len(g[0]))
    digest = _digest(text)
    return PriceFile(version=f"file {name} {digest}", exact=exact, globs=tuple(globs))


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_price_file(path: str | os.PathLike[str]) -> PriceFile:
    """Read and parse a price file (raises PriceFileError)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"cannot read the price file {file}: {exc.strerror or exc}") from None
    return parse_price_file(text, file.name)


_file_lock = threading.Lock()
_file_cache: tuple[tuple[str, int, int], PriceFile | None] | None = None


def current_price_file() -> PriceFile | None:
    """The file named by ``$GALTEA_OTEL_PRICES``, parsed (cached until it changes); None when unset or unusable."""
    global _file_cache
    path = os.environ.get(ENV_PRICES, "").strip()
    if not path:
        return None
    try:
        stat = os.stat(path)
        signature = (path, stat.st_mtime_ns, stat.st_size)
    except OSError:
        signature = (path, -1, -1)
    with _file_lock:
        if _file_cache is not None and _file_cache[0] == signature:
            return _file_cache[1]
        parsed: PriceFile | None
        try:
            parsed = load_price_file(path)
        except PriceFileError as exc:
            from galtea_otel.stats import incr

            incr("prices_file_invalid")
            log.error("galtea-otel: ignoring the price file ($%s): %s", ENV_PRICES, exc)
            parsed = None
        _file_cache = (signature, parsed)
        return parsed


# --- the bundled table ---------------------------------------------------------------------------------------------

_table_lock = threading.Lock()
_table_value: list[tuple[Any, str] | None] = []  # filled once
_preloading = False


def _table() -> tuple[Any, str] | None:
    """(genai-prices' bundled snapshot, its version), or None when genai-prices is not installed."""
    if _table_value:
        return _table_value[0]
    with _table_lock:
        if not _table_value:
            _table_value.append(_load_table())
        return _table_value[0]


def _load_table() -> tuple[Any, str] | None:
    try:
        import genai_prices
        from genai_prices.data import providers
        from genai_prices.data_snapshot import DataSnapshot
    except ImportError:
        log.info("galtea-otel: genai-prices is not installed (pip install 'galtea-otel[prices]'): only reported"
                 " costs and the price file are used")
        return None
    # The bundled data only: a snapshot of our own, so an auto-update the application may have started elsewhere
    # (genai_prices.UpdatePrices) never changes what galtea-otel records, and nothing is fetched.
    return DataSnapshot(providers=providers, from_auto_update=False), f"genai-prices {genai_prices.__version__}"


def preload() -> None:
    """Start loading the price table (about a second, once per process) on a background thread, so that it is
    usually ready before the first turn to price; the pipeline calls it when it is made."""
    global _preloading
    with _table_lock:
        if _preloading or _table_value:
            return
        _preloading = True
    with contextlib.suppress(RuntimeError):  # no new threads at interpreter shutdown: loaded on first use instead
        threading.Thread(target=_table, name="galtea-otel-prices", daemon=True).start()


def table_version() -> str | None:
    table = _table()
    return table[1] if table is not None else None


def _table_price(model: str, input_tokens: int, output_tokens: int, cached: int, day: int) -> Priced | None:
    """The table's price of this usage: from the model's flat rates when it has them (``_flat_rates``), else
    genai-prices' own calculation."""
    table = _table()
    rates = _flat_rates(model, day) if table is not None else None
    if table is None or rates is None:
        return _table_calc(model, input_tokens, output_tokens, cached, day)
    return Priced(cost=round(float(_flat(rates, input_tokens, output_tokens, cached)), 10), source=SOURCE_TABLE,
                  version=table[1])


_MILLION = 10**6
_PER_REQUEST = "requests_kusd"  # a price charged once a request, whatever the tokens
# (input, output, cached) usages off the three rates' own, where the rates must give genai-prices' price exactly
_PROBES = ((123_457, 45_679, 7_891), (3, 2, 1), (1_000, 10, 0))


def _flat(rates: tuple[Any, Any, Any], input_tokens: int, output_tokens: int, cached: int) -> Any:
    uncached_rate, cached_rate, output_rate = rates
    return (uncached_rate * (input_tokens - cached) + cached_rate * cached + output_rate * output_tokens) / _MILLION


@functools.lru_cache(maxsize=1024)
def _flat_rates(model: str, day: int) -> tuple[Any, Any, Any] | None:
    """The table's price of a million uncached input, cached input and output tokens of this model on this day
    (Decimals, from genai-prices' own calculation), when a turn's price is flat in them: every price of the model
    a plain number (no tiers) and none charged per request (prices of other units, web searches or audio, are
    never charged for a turn's tokens). None otherwise, and whenever the three rates do not give genai-prices'
    own price of the probe usages exactly: its calculation then prices every turn. genai-prices 0.2's
    calculation takes 0.1-0.3 ms (a turn's token counts differ from turn to turn, so a cache of its results
    rarely hits); the rates, once a day per model, make it a few multiplications."""
    table = _table()
    if table is None:
        return None
    snapshot = table[0]
    from decimal import Decimal

    from genai_prices import Usage

    when = datetime.fromtimestamp(day * 86_400, tz=UTC)

    def total(input_tokens: int, output_tokens: int, cached: int) -> Any:
        usage = Usage(input_tokens=input_tokens, cache_read_tokens=cached or None, output_tokens=output_tokens)
        return snapshot.calc(usage, model, None, None, when, None).total_price

    try:
        _, info = snapshot.find_provider_model(model, None, None, None)
        fields = {key: value for key, value in vars(info.get_prices(when)).items()
                  if value is not None and not key.startswith("_")}
        if not fields or _PER_REQUEST in fields or not all(isinstance(v, Decimal) for v in fields.values()):
            return None
        rates = (total(_MILLION, 0, 0), total(_MILLION, 0, _MILLION), total(0, _MILLION, 0))
        if any(_flat(rates, *probe) != total(*probe) for probe in _PROBES):
            return None
    except Exception:  # an unknown model, or a table that cannot price it: the full calculation says which
        return None
    return rates


@functools.lru_cache(maxsize=8192)
def _table_calc(model: str, input_tokens: int, output_tokens: int, cached: int, day: int) -> Priced | None:
    table = _table()
    if table is None:
        return None
    snapshot, version = table
    from genai_prices import Usage

    try:
        result = snapshot.calc(
            Usage(input_tokens=input_tokens, cache_read_tokens=cached or None, output_tokens=output_tokens),
            model, None, None, datetime.fromtimestamp(day * 86_400, tz=UTC), None)
    except LookupError:
        return None  # unknown model
    except Exception as exc:  # a table that cannot price this usage: unpriced, never a guess
        log.debug("galtea-otel: genai-prices cannot price %r: %s", model, exc)
        return None
    return Priced(cost=round(float(result.total_price), 10), source=SOURCE_TABLE, version=version)


def price_turn(
    model: str | None, input_tokens: int | None, output_tokens: int | None, cache_read_tokens: int | None,
    at_ns: int,
) -> Priced | None:
    """The cost of a turn with this model and these token counts at time ``at_ns``; None when unknown.

    The price file wins over the table. No model, or no token counts at all, gives None.
    """
    if not model or (input_tokens is None and output_tokens is None):
        return None
    inp = max(input_tokens or 0, 0)
    out = max(output_tokens or 0, 0)
    cached = min(max(cache_read_tokens or 0, 0), inp)
    prices = current_price_file()
    if prices is not None:
        entry = prices.lookup(model, at_ns)
        if entry is not None:
            cost = ((inp - cached) * entry.input + cached * entry.cached_input + out * entry.output) / 1e6
            return Priced(cost=round(cost, 10), source=SOURCE_OVERRIDE, version=prices.version)
    return _table_price(model, inp, out, cached, at_ns // _DAY_NS)


def decide_cost(
    reported: float | None, model: str | None, input_tokens: int | None, output_tokens: int | None,
    cache_read_tokens: int | None, at_ns: int,
) -> tuple[float | None, CostSource | None, str | None]:
    """(cost, cost_source, price_version) of a turn: the reported cost when there is one, else a price."""
    if reported is not None:
        return reported, SOURCE_REPORTED, None
    priced = price_turn(model, input_tokens, output_tokens, cache_read_tokens, at_ns)
    if priced is None:
        return None, None, None
    return priced.cost, priced.source, priced.version


def is_unpriced(cost: float | None, model: str | None, input_tokens: int | None, output_tokens: int | None) -> bool:
    """A turn that used a model (with tokens) but has no cost: listed as unpriced."""
    return cost is None and bool(model) and (input_tokens is not None or output_tokens is not None)
