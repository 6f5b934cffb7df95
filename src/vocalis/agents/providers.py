"""Model provider chain: primary → secondary → extractive, with circuit breakers and accounting.

`FallbackChatModel` is itself a `ChatModel`. For each call it tries its providers in order,
skipping any whose circuit is open; a timeout or an unavailable provider moves on to the
next, a bad request does not (another provider would reject it too, or worse, answer a
different question). A stream falls back only before its first delta reached the caller:
once text was shown it cannot be taken back, so a later failure is raised.

Every attempt is one `llm.chat` span (GenAI semantic conventions) and is counted in the
`vocalis_llm_*` metrics; tokens and cost are accounted per provider and model.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from enum import StrEnum
from threading import Lock
from typing import Any

from vocalis.agents import metrics
from vocalis.agents.telemetry import span
from vocalis.ports.llm import (
    ChatDelta,
    ChatMessage,
    ChatModel,
    ChatResult,
    ChatResultBuilder,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResponseFormat,
    ToolChoice,
    ToolSpec,
    Usage,
    close_stream,
)

Clock = Callable[[], float]


# --- circuit breaker ----------------------------------------------------------------------
class CircuitState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `open_seconds` one probe
    call is let through (half-open): success closes the circuit, failure re-opens it."""

    failure_threshold: int = 3
    open_seconds: float = 30.0
    clock: Clock = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def state(self) -> CircuitState:
        """The current state, as of the clock."""
        if self.opened_at is None:
            return CircuitState.CLOSED
        if self.clock() - self.opened_at >= self.open_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        """Whether a call may go through now (claims the probe when half-open)."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        """A call succeeded: close the circuit."""
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self) -> None:
        """A call failed: count it, and open (or re-open) the circuit when due."""
        self.failures += 1
        if self.probing or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()
        self.probing = False

    def release(self) -> None:
        """A call ended without telling anything about health (e.g. a bad request)."""
        self.probing = False


class CircuitBreakers:
    """One breaker per provider key, shared by every agent in the process."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        open_seconds: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._make = lambda: CircuitBreaker(failure_threshold, open_seconds, clock)
        self._breakers: dict[str, CircuitBreaker] = {}

    def for_key(self, key: str) -> CircuitBreaker:
        """The breaker of one provider (created closed)."""
        if key not in self._breakers:
            self._breakers[key] = self._make()
        return self._breakers[key]


# --- tokens and cost ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million prompt and completion tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, usage: Usage) -> float:
        """The price of one call's usage."""
        return (
            usage.prompt_tokens * self.input_per_million
            + usage.completion_tokens * self.output_per_million
        ) / 1_000_000


def parse_prices(raw: Mapping[str, Any]) -> dict[str, ModelPrice]:
    """Prices from settings: `{"<provider>/<model>" or "<model>": {"input": $, "output": $}}`."""
    prices: dict[str, ModelPrice] = {}
    for key, value in raw.items():
        if isinstance(value, ModelPrice):
            prices[key] = value
        else:
            prices[key] = ModelPrice(float(value.get("input", 0)), float(value.get("output", 0)))
    return prices


@dataclass
class UsageTotals:
    """Accumulated usage and cost of one provider/model."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class CostLedger:
    """Token and cost accounting per provider and model (also exported as metrics)."""

    def __init__(
        self, prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None
    ) -> None:
        self.prices = parse_prices(prices or {})
        self.totals: dict[tuple[str, str], UsageTotals] = {}
        self._lock = Lock()

    def price_for(self, provider: str, model: str) -> ModelPrice:
        """The most specific price known: `provider/model`, then `model`, else free."""
        return self.prices.get(f"{provider}/{model}") or self.prices.get(model) or ModelPrice()

    def record(self, provider: str, model: str, usage: Usage) -> float:
        """Account one call; returns its cost in US dollars."""
        cost = self.price_for(provider, model).cost(usage)
        with self._lock:
            totals = self.totals.setdefault((provider, model), UsageTotals())
            totals.calls += 1
            totals.prompt_tokens += usage.prompt_tokens
            totals.completion_tokens += usage.completion_tokens
            totals.cost_usd += cost
        metrics.LLM_TOKENS.labels(provider, model, "prompt").inc(usage.prompt_tokens)
        metrics.LLM_TOKENS.labels(provider, model, "completion").inc(usage.completion_tokens)
        if cost:
            metrics.LLM_COST.labels(provider, model).inc(cost)
        return cost


# --- the chain ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """The generation options of one call, passed to each provider tried."""

    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None

    def extra(self) -> dict[str, Any]:
        """`stop` and `response_format`, only when set (simple providers need not take them)."""
        extra: dict[str, Any] = {}
        if self.stop:
            extra["stop"] = self.stop
        if self.response_format is not None:
            extra["response_format"] = self.response_format
        return extra


@dataclass(frozen=True)
class Attempt:
    """One provider tried during a call, and how it went."""

    provider: str
    model: str
    outcome: str  # ok | timeout | unavailable | bad_request | circuit_open
    seconds: float = 0.0


@dataclass
class CallReport:
    """What one call through the chain did, provider by provider."""

    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    provider: str = ""
    model: str = ""
    time_to_first_token: float | None = None


def _outcome(exc: ProviderError) -> str:
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if isinstance(exc, ProviderBadRequest):
        return "bad_request"
    return "unavailable"


def _request_attributes(
    provider: ChatModel, temperature: float | None, max_tokens: int | None, streaming: bool
) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": provider.provider,
        "gen_ai.provider.name": provider.provider,
        "gen_ai.request.model": provider.model,
        "gen_ai.request.temperature": temperature,
        "gen_ai.request.max_tokens": max_tokens,
        "vocalis.llm.streaming": streaming,
    }


class FallbackChatModel:
    """A `ChatModel` trying several providers in order, each behind a circuit breaker."""

    def __init__(
        self,
        providers: Sequence[ChatModel],
        *,
        breakers: CircuitBreakers | None = None,
        ledger: CostLedger | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers = list(providers)
        self.breakers = breakers or CircuitBreakers()
        self.ledger = ledger or CostLedger()
        self._clock = clock
        self.provider = self.providers[0].provider
        self.model = self.providers[0].model

    def breaker_for(self, provider: ChatModel) -> CircuitBreaker:
        """The circuit breaker guarding one provider."""
        key = getattr(provider, "breaker_key", None) or f"{provider.provider}/{provider.model}"
        return self.breakers.for_key(str(key))

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> ChatResult:
        """The first provider's answer that succeeds."""
        builder = ChatResultBuilder()
        async for delta in self.stream(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            stop=stop,
            response_format=response_format,
        ):
            builder.add(delta)
        return builder.result()

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> AsyncGenerator[ChatDelta, None]:
        """The first provider's stream that starts; falls back only before its first delta."""
        options = Options(temperature, max_tokens, timeout, tuple(stop), response_format)
        report = CallReport()
        last_error: ProviderError | None = None
        for provider in self.providers:
            breaker = self.breaker_for(provider)
            if not breaker.allow():
                report.attempts.append(Attempt(provider.provider, provider.model, "circuit_open"))
                metrics.LLM_REQUESTS.labels(provider.provider, provider.model, "circuit_open").inc()
                continue
            started = False
            attempt = self._attempt(
                provider,
                breaker,
                report,
                messages,
                tools,
                tool_choice,
                options,
            )
            try:
                # aclosing: a caller that stops early closes the attempt (and its span) now.
                async with aclosing(attempt):
                    async for delta in attempt:
                        started = True
                        yield delta
                return
            except ProviderBadRequest:
                raise
            except ProviderError as exc:
                if started:
                    raise
                last_error = exc
        raise last_error or ProviderUnavailable("every provider's circuit is open")

    async def _attempt(
        self,
        provider: ChatModel,
        breaker: CircuitBreaker,
        report: CallReport,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        tool_choice: ToolChoice | None,
        options: Options,
    ) -> AsyncGenerator[ChatDelta, None]:
        """One provider's stream, inside an `llm.chat` span, counted and accounted."""
        labels = (provider.provider, provider.model)
        attributes = _request_attributes(
            provider, options.temperature, options.max_tokens, streaming=True
        )
        if options.stop:
            attributes["gen_ai.request.stop_sequences"] = list(options.stop)
        if options.response_format is not None:
            attributes["vocalis.llm.response_format"] = str(options.response_format.get("type"))
        with span("llm.chat", attributes) as current:
            begin = self._clock()
            builder = ChatResultBuilder(provider=provider.provider, model=provider.model)
            settled = False  # whether the breaker heard how this attempt went
            deltas = provider.stream(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                temperature=options.temperature,
                max_tokens=options.max_tokens,
                timeout=options.timeout,
                **options.extra(),
            )
            try:
                async for delta in deltas:
                    if report.time_to_first_token is None and (delta.text or delta.tool_call):
                        report.time_to_first_token = self._clock() - begin
                        metrics.LLM_TIME_TO_FIRST_TOKEN.labels(*labels).observe(
                            report.time_to_first_token
                        )
                    builder.add(delta)
                    yield delta
            except ProviderError as exc:
                elapsed = self._clock() - begin
                outcome = _outcome(exc)
                if outcome == "bad_request":
                    breaker.release()
                else:
                    breaker.record_failure()
                metrics.LLM_REQUESTS.labels(*labels, outcome).inc()
                report.attempts.append(Attempt(*labels, outcome, elapsed))
                current.set_attribute("error.type", type(exc).__name__)
                current.set_attribute("vocalis.llm.outcome", outcome)
                settled = True
                raise
            finally:
                await close_stream(deltas)
                if not settled:
                    # Abandoned by the caller or failed unexpectedly: says nothing about the
                    # provider's health, but a half-open probe slot must not stay claimed.
                    breaker.release()
            elapsed = self._clock() - begin
            breaker.record_success()
            result = builder.result()
            cost = self.ledger.record(result.provider, result.model, result.usage)
            metrics.LLM_REQUESTS.labels(*labels, "ok").inc()
            metrics.LLM_LATENCY.labels(*labels).observe(elapsed)
            report.attempts.append(Attempt(*labels, "ok", elapsed))
            report.usage, report.cost_usd = result.usage, cost
            report.provider, report.model = result.provider, result.model
            current.set_attributes(
                {
                    "gen_ai.response.model": result.model,
                    "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": result.usage.completion_tokens,
                    "gen_ai.response.finish_reasons": [result.finish_reason],
                    "vocalis.llm.outcome": "ok",
                    "vocalis.llm.cost_usd": cost,
                    "vocalis.llm.usage_estimated": result.usage.estimated,
                }
            )
