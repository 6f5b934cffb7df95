"""Fallback chain, circuit breaker, and token/cost accounting."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from vocalis.agents.extractive import MODEL as EXTRACTIVE_MODEL
from vocalis.agents.extractive import ExtractiveResponder
from vocalis.agents.providers import (
    CircuitBreaker,
    CircuitBreakers,
    CircuitState,
    CostLedger,
    FallbackChatModel,
    ModelPrice,
    parse_prices,
)
from vocalis.ports.llm import (
    ChatMessage,
    ChatModel,
    ProviderBadRequest,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
)

from .conftest import ManualClock, ScriptedChatModel, say

QUESTION = [ChatMessage("user", "hello")]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def chain(
    primary: ScriptedChatModel, clock: ManualClock, secondary: ScriptedChatModel | None = None
) -> FallbackChatModel:
    breakers = CircuitBreakers(failure_threshold=2, open_seconds=30, clock=clock)
    providers: list[ChatModel] = [primary, *([secondary] if secondary else [])]
    providers.append(ExtractiveResponder())
    return FallbackChatModel(providers, breakers=breakers, ledger=CostLedger())


def timing_out(name: str = "primary") -> ScriptedChatModel:
    return ScriptedChatModel([ProviderTimeout("slow")], provider=name, model=f"{name}-m")


async def test_primary_timeout_falls_back_to_the_secondary(clock: ManualClock) -> None:
    secondary = ScriptedChatModel([say("from secondary")], provider="secondary", model="sec-m")
    result = await chain(timing_out(), clock, secondary).complete(QUESTION)
    assert (result.content, result.provider) == ("from secondary", "secondary")


async def test_with_every_provider_down_the_extractive_responder_answers(
    clock: ManualClock,
) -> None:
    down = ScriptedChatModel([ProviderUnavailable("503")], provider="secondary", model="s")
    result = await chain(timing_out(), clock, down).complete(QUESTION)
    assert result.model == EXTRACTIVE_MODEL
    assert result.content == "Hello! How can I help you today?"


async def test_a_bad_request_is_not_retried_on_another_provider(clock: ManualClock) -> None:
    rejecting = ScriptedChatModel([ProviderBadRequest("unknown model")], provider="p", model="m")
    secondary = ScriptedChatModel([say("never")], provider="secondary", model="s")
    with pytest.raises(ProviderBadRequest):
        await chain(rejecting, clock, secondary).complete(QUESTION)
    assert secondary.requests == []


async def test_circuit_opens_after_repeated_timeouts_and_skips_the_provider(
    clock: ManualClock,
) -> None:
    primary = timing_out()
    model = chain(primary, clock)
    for _ in range(2):
        await model.complete(QUESTION)
    assert model.breaker_for(primary).state is CircuitState.OPEN
    before = sample(
        "vocalis_llm_requests_total", provider="primary", model="primary-m", outcome="circuit_open"
    )
    result = await model.complete(QUESTION)
    assert len(primary.requests) == 2  # the third call never reached it
    assert result.model == EXTRACTIVE_MODEL
    after = sample(
        "vocalis_llm_requests_total", provider="primary", model="primary-m", outcome="circuit_open"
    )
    assert after == before + 1


async def test_half_open_probe_that_succeeds_closes_the_circuit(clock: ManualClock) -> None:
    primary = ScriptedChatModel(
        [ProviderTimeout("slow"), ProviderTimeout("slow"), say("back again")],
        provider="primary",
        model="primary-m",
    )
    model = chain(primary, clock)
    await model.complete(QUESTION)
    await model.complete(QUESTION)
    clock.advance(31)
    assert model.breaker_for(primary).state is CircuitState.HALF_OPEN
    result = await model.complete(QUESTION)
    assert result.content == "back again"
    assert model.breaker_for(primary).state is CircuitState.CLOSED


async def test_half_open_probe_that_fails_reopens_the_circuit(clock: ManualClock) -> None:
    primary = timing_out()
    model = chain(primary, clock)
    await model.complete(QUESTION)
    await model.complete(QUESTION)
    clock.advance(31)
    await model.complete(QUESTION)  # the probe, which times out again
    assert len(primary.requests) == 3
    assert model.breaker_for(primary).state is CircuitState.OPEN
    await model.complete(QUESTION)
    assert len(primary.requests) == 3


def test_half_open_lets_only_one_probe_through(clock: ManualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=10, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.advance(10)
    assert breaker.allow()
    assert not breaker.allow()


async def test_stream_falls_back_when_the_primary_fails_before_its_first_token(
    clock: ManualClock,
) -> None:
    text = [d.text async for d in chain(timing_out(), clock).stream(QUESTION) if d.text]
    assert "".join(text) == "Hello! How can I help you today?"


async def test_stream_failing_after_its_first_token_is_not_replayed_elsewhere(
    clock: ManualClock,
) -> None:
    primary = ScriptedChatModel([say("partial answer")], provider="primary", model="primary-m")
    primary.fail_after_first_delta = ProviderUnavailable("connection reset")
    seen: list[str] = []
    with pytest.raises(ProviderUnavailable):
        async for delta in chain(primary, clock).stream(QUESTION):
            seen.append(delta.text)
    assert seen == ["partial"]


async def test_tokens_and_cost_are_accounted_per_provider_and_model(clock: ManualClock) -> None:
    primary = ScriptedChatModel([say("hi", usage=Usage(2_000, 1_000))], provider="acct", model="m1")
    ledger = CostLedger({"acct/m1": {"input": 0.5, "output": 1.5}})
    model = FallbackChatModel([primary], ledger=ledger)
    before = sample("vocalis_llm_tokens_total", provider="acct", model="m1", kind="prompt")
    await model.complete(QUESTION)
    await model.complete(QUESTION)
    totals = ledger.totals[("acct", "m1")]
    assert (totals.calls, totals.prompt_tokens, totals.completion_tokens) == (2, 4_000, 2_000)
    assert totals.cost_usd == pytest.approx(2 * (2_000 * 0.5 + 1_000 * 1.5) / 1e6)
    after = sample("vocalis_llm_tokens_total", provider="acct", model="m1", kind="prompt")
    assert after - before == 4_000
    assert sample("vocalis_llm_cost_usd_total", provider="acct", model="m1") == pytest.approx(
        totals.cost_usd
    )


def test_prices_match_provider_and_model_before_model_alone() -> None:
    ledger = CostLedger({"gpt-x": ModelPrice(1, 1), "azure/gpt-x": ModelPrice(3, 3)})
    assert ledger.price_for("azure", "gpt-x").input_per_million == 3
    assert ledger.price_for("openai", "gpt-x").input_per_million == 1
    assert ledger.price_for("openai", "unpriced").cost(Usage(10**6, 10**6)) == 0


def test_prices_parse_from_settings_shape() -> None:
    assert parse_prices({"m": {"input": 0.15, "output": 0.6}}) == {"m": ModelPrice(0.15, 0.6)}


async def test_each_attempt_is_an_llm_chat_span_with_genai_attributes(
    clock: ManualClock, spans: object
) -> None:
    primary = ScriptedChatModel([say("ok", usage=Usage(7, 3))], provider="spanned", model="m2")
    await FallbackChatModel([primary]).complete(QUESTION, temperature=0.2)
    span = next(s for s in spans.get_finished_spans() if s.name == "llm.chat")  # type: ignore[attr-defined]
    attrs = span.attributes
    assert attrs["gen_ai.system"] == "spanned"
    assert attrs["gen_ai.request.model"] == "m2"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.usage.input_tokens"] == 7
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)


async def test_latency_and_time_to_first_token_are_observed(clock: ManualClock) -> None:
    primary = ScriptedChatModel([say("ok")], provider="timed", model="m3")
    await FallbackChatModel([primary]).complete(QUESTION)
    labels = {"provider": "timed", "model": "m3"}
    assert sample("vocalis_llm_latency_seconds_count", **labels) == 1
    assert sample("vocalis_llm_time_to_first_token_seconds_count", **labels) == 1
    assert sample("vocalis_llm_requests_total", outcome="ok", **labels) == 1


async def test_an_abandoned_half_open_probe_frees_the_probe_slot(clock: ManualClock) -> None:
    primary = ScriptedChatModel(
        [ProviderTimeout("slow"), ProviderTimeout("slow"), say("a long answer")],
        provider="primary",
        model="primary-m",
    )
    model = chain(primary, clock)
    await model.complete(QUESTION)
    await model.complete(QUESTION)
    clock.advance(31)
    stream = model.stream(QUESTION)
    await anext(stream)  # the probe starts answering, then the caller goes away
    await stream.aclose()
    assert model.breaker_for(primary).allow()


def test_endpoints_serving_the_same_model_have_separate_circuits() -> None:
    from vocalis.adapters.openai_chat import OpenAIChatConfig, OpenAIChatModel

    one = OpenAIChatModel(OpenAIChatConfig(model="llama3", base_url="http://a:8000/v1"))
    two = OpenAIChatModel(OpenAIChatConfig(model="llama3", base_url="http://b:8000/v1"))
    chain_ = FallbackChatModel([one, two])
    chain_.breaker_for(one).record_failure()
    assert chain_.breaker_for(one).failures == 1
    assert chain_.breaker_for(two).failures == 0
