"""Costs from prices (issue 11, point 5): app -> real SDK -> exporter -> SQLite, priced by genai-prices' bundled
table or by a price file; an unknown model is left unpriced; ``galtea-otel reprice`` after a price change."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import TracerProvider

import galtea_otel
from galtea_otel import pricing
from galtea_otel.cli.main import main
from galtea_otel.pipeline import read_session
from galtea_otel.records import SessionDetail
from galtea_otel.store import open_store
from tests.needs import need_module

genai_prices = need_module("genai_prices")


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv(pricing.ENV_PRICES, raising=False)
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    galtea_otel.configure(url, tracer_provider=TracerProvider(shutdown_on_exit=False))
    yield url
    galtea_otel.shutdown()


def _table_cost(model: str, inp: int, out: int, cached: int = 0) -> float:
    """What genai-prices itself says, computed apart from galtea-otel."""
    usage = genai_prices.Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached or None)
    return float(genai_prices.calc_price(usage, model, genai_request_timestamp=datetime.now(UTC)).total_price)


def _converse(custom_id: str, model: str, usages: list[dict[str, int]], cost: float | None = None) -> None:
    @galtea_otel.inference(model=model)
    def chat(prompt: str, usage: dict[str, int]) -> str:
        galtea_otel.record_usage(model=model, cost=cost, **usage)
        return "reply to " + prompt

    with galtea_otel.session(custom_id=custom_id, version="1"):
        for i, usage in enumerate(usages):
            chat(f"message {i}", usage)
    assert galtea_otel.flush()


def _detail(url: str, custom_id: str) -> SessionDetail:
    store = open_store(url)
    try:
        detail = read_session(store, (custom_id, "1"))
    finally:
        store.close()
    assert detail is not None
    return detail


def test_a_turn_with_model_and_tokens_but_no_cost_is_priced_from_the_table(store_url: str) -> None:
    _converse("priced", "gpt-4o-mini", [
        {"input_tokens": 1200, "output_tokens": 300},
        {"input_tokens": 2000, "output_tokens": 100, "cache_read_input_tokens": 1500},
    ])
    detail = _detail(store_url, "priced")
    first, second = detail.inference_results
    assert first.cost == pytest.approx(_table_cost("gpt-4o-mini", 1200, 300))
    assert second.cost == pytest.approx(_table_cost("gpt-4o-mini", 2000, 100, cached=1500))
    # Cached input is priced apart (cheaper): the same tokens without the cache read cost more.
    assert second.cost < _table_cost("gpt-4o-mini", 2000, 100)
    assert {(t.cost_source, t.price_version) for t in detail.inference_results} == {
        ("table", f"genai-prices {genai_prices.__version__}")}
    assert detail.unpriced_turns == []
    # The session's cost is the sum of its turns, in the record and in the stored listing.
    assert detail.cost == pytest.approx(first.cost + second.cost)
    store = open_store(store_url)
    [listed] = store.list_sessions()
    store.close()
    assert listed.cost == pytest.approx(detail.cost)


def test_a_reported_cost_is_kept(store_url: str) -> None:
    _converse("reported", "gpt-4o-mini", [{"input_tokens": 10, "output_tokens": 5}], cost=0.25)
    [turn] = _detail(store_url, "reported").inference_results
    assert (turn.cost, turn.cost_source, turn.price_version) == (0.25, "reported", None)


def test_an_unknown_model_is_unpriced_never_guessed(store_url: str) -> None:
    _converse("unknown", "acme-house-model-7", [{"input_tokens": 100, "output_tokens": 50}])
    detail = _detail(store_url, "unknown")
    [turn] = detail.inference_results
    assert (turn.cost, turn.cost_source) == (None, None)
    assert detail.cost is None and detail.unpriced_turns == [0]
    shown = CliRunner().invoke(main, ["--store", store_url, "sessions", "show", "unknown"])
    assert shown.exit_code == 0, shown.output
    assert "unpriced" in shown.output and "acme-house-model-7" in shown.output
    as_json = json.loads(CliRunner().invoke(main, ["--store", store_url, "sessions", "show", "unknown",
                                                   "--json"]).output)
    assert as_json["unpriced_turns"] == [0]
    assert as_json["inference_results"][0]["cost"] is None


def test_a_price_file_overrides_the_table_and_reprice_applies_a_change(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"gpt-4o-mini": {"input": 1.0, "cached_input": 0.5, "output": 4.0},
                                  "acme-*": {"input": 10, "output": 20}}))
    monkeypatch.setenv(pricing.ENV_PRICES, str(prices))
    _converse("override", "gpt-4o-mini", [{"input_tokens": 1000, "output_tokens": 500,
                                           "cache_read_input_tokens": 400}])
    _converse("house", "acme-house-model-7", [{"input_tokens": 100, "output_tokens": 50}])
    [turn] = _detail(store_url, "override").inference_results
    assert turn.cost == pytest.approx((600 * 1.0 + 400 * 0.5 + 500 * 4.0) / 1e6)
    assert turn.cost_source == "override" and turn.price_version is not None
    assert turn.price_version.startswith("file prices.json ")
    [house] = _detail(store_url, "house").inference_results
    assert house.cost == pytest.approx((100 * 10 + 50 * 20) / 1e6)

    # The price changes: stored costs keep the old price until `reprice`.
    prices.write_text(json.dumps({"gpt-4o-mini": {"input": 2.0, "output": 8.0}}))
    store = open_store(store_url)
    assert {s.custom_id: s.cost for s in store.list_sessions()}["override"] == pytest.approx(turn.cost)
    result = CliRunner().invoke(main, ["--store", store_url, "reprice", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["sessions"] == 2 and summary["changed"] == 2
    costs = {s.custom_id: s.cost for s in store.list_sessions()}
    store.close()
    assert costs["override"] == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)  # cached_input defaults to input
    assert costs["house"] is None  # no longer in the file, and the table does not know it


def test_dated_prices_apply_from_their_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prices = tmp_path / "dated.json"
    prices.write_text(json.dumps({"m-*": [{"input": 2, "output": 2, "start": "2026-01-01"},
                                          {"input": 1, "output": 1, "start": "2025-01-01T00:00:00Z"}]}))
    monkeypatch.setenv(pricing.ENV_PRICES, str(prices))
    at = lambda text: int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9  # noqa: E731
    assert pricing.price_turn("m-1", 1_000_000, 0, None, at("2024-06-01")) is None  # before every start
    mid = pricing.price_turn("m-1", 1_000_000, 0, None, at("2025-06-01"))
    late = pricing.price_turn("m-1", 1_000_000, 0, None, at("2026-06-01"))
    assert mid is not None and late is not None
    assert (mid.cost, late.cost) == (1.0, 2.0)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ('{"m": {"input": 1}}', "input and output prices are required"),
    ('{"m": {"input": -1, "output": 1}}', "non-negative number"),
    ('{"m": {"input": 1, "output": 1, "start": "yesterday"}}', "not an ISO date"),
    ('{"m": {"input": 1, "output": 1, "currency": "EUR"}}', "unknown field(s) currency"),
])
def test_a_bad_price_file_is_a_clear_error_and_is_never_half_used(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "bad.json"
    prices.write_text(text)
    with pytest.raises(pricing.PriceFileError, match=r"bad\.json"):
        pricing.load_price_file(prices)
    monkeypatch.setenv(pricing.ENV_PRICES, str(prices))
    before = galtea_otel.stats().get("prices_file_invalid", 0)
    # In the pipeline it is ignored (logged, counted): the table prices the turn instead.
    priced = pricing.price_turn("gpt-4o-mini", 1000, 10, 0, time.time_ns())
    assert priced is not None and priced.source == "table"
    assert galtea_otel.stats().get("prices_file_invalid", 0) == before + 1
    store_url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_store(store_url).close()
    result = CliRunner().invoke(main, ["--store", store_url, "reprice"])
    assert result.exit_code == 1 and message in result.output


def _priceable_models() -> list[str]:
    """Every model id of the bundled table that a turn's model name finds (by itself, no provider given)."""
    snapshot = pricing._table()
    assert snapshot is not None
    found = []
    for provider in snapshot[0].providers:
        for model in provider.models:
            try:
                snapshot[0].find_provider_model(model.id, None, None, None)
            except LookupError:
                continue
            found.append(model.id)
    return found


def test_flat_rates_price_every_turn_as_genai_prices_calculates_it() -> None:
    """The fast path (a model's three per-token rates, worked out once a day) gives, for every model of the table
    it applies to, the price genai-prices' own calculation gives, on usages of every size; the models it does not
    apply to (tiered prices) keep that calculation."""
    import random

    rnd = random.Random(7)
    flat, calculated = 0, 0
    for day in (datetime(2025, 6, 1, tzinfo=UTC), datetime.now(UTC)):
        day_number = int(day.timestamp()) // 86_400
        for model in _priceable_models():
            rates = pricing._flat_rates(model, day_number)
            usages = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1_000, 1_000, 1_000)]
            for _ in range(4):
                inp = rnd.randint(0, 2_000_000)
                usages.append((inp, rnd.randint(0, 200_000), rnd.choice([0, rnd.randint(0, inp)])))
            for inp, out, cached in usages:
                assert pricing._table_price(model, inp, out, cached, day_number) == pricing._table_calc(
                    model, inp, out, cached, day_number), (model, day, inp, out, cached, rates)
            if rates is None:
                calculated += 1
            else:
                flat += 1
    assert flat > 200 and calculated > 10  # both paths ran, on many models
    day_number = int(datetime.now(UTC).timestamp()) // 86_400
    assert pricing._flat_rates("gpt-4o-mini", day_number) is not None  # the common case takes the fast path
