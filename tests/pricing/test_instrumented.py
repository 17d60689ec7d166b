"""A real OpenAI instrumentation (opentelemetry-instrumentation-openai-v2) -> OTLP -> receiver: its turns are
priced from the bundled table, since the instrumentation reports tokens and model but no cost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from galtea_otel.pipeline import read_session
from galtea_otel.serve.server import Receiver
from galtea_otel.store.base import Store
from tests.conformance.apps import scenario
from tests.conformance.conftest import DEFAULT_VERSION
from tests.conformance.test_conformance import run_app
from tests.fakes.openai_server import FakeOpenAI
from tests.needs import need_module

genai_prices = need_module("genai_prices")
need_module("opentelemetry.instrumentation.openai_v2")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model_suffix="") as server:  # answers as the model asked for: gpt-4o-mini
        yield server


def test_openai_v2_turns_get_table_costs(fake_openai: FakeOpenAI, receiver: Receiver, store: Store) -> None:
    run_app("genai_app.py", fake_openai, receiver, "priced-main", "priced-other")
    detail = read_session(store, ("priced-main", DEFAULT_VERSION))
    assert detail is not None and len(detail.inference_results) == len(scenario.MAIN)
    answered = [t for t in detail.inference_results if t.status == "GENERATED"]
    assert answered and len(answered) < len(detail.inference_results)  # the scenario has one failed call
    for turn in answered:
        assert turn.model == scenario.MODEL == "gpt-4o-mini"
        assert turn.input_tokens and turn.output_tokens
        usage = genai_prices.Usage(input_tokens=turn.input_tokens, output_tokens=turn.output_tokens)
        expected = float(genai_prices.calc_price(usage, "gpt-4o-mini",
                                                 genai_request_timestamp=turn.started_at).total_price)
        assert (turn.cost, turn.cost_source) == (pytest.approx(expected), "table")
    assert detail.cost == pytest.approx(sum(t.cost or 0 for t in detail.inference_results))
    assert detail.unpriced_turns == []  # the failed call has no tokens: nothing to price, not "unpriced"
