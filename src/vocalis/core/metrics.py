"""The one registry of Prometheus metrics (prefix `vocalis_`).

Every metric the system exports is declared here, with its help text and labels; the
documentation's metrics table is generated from `REGISTRY`.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- HTTP ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "vocalis_http_requests_total",
    "HTTP requests handled, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "vocalis_http_request_duration_seconds",
    "HTTP request latency in seconds, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
# Gauges say how `vocalis serve --workers N` combines them across its processes
# (`multiprocess_mode`; ignored with one process): see `exposition` below.
HTTP_IN_FLIGHT = Gauge(
    "vocalis_http_requests_in_flight",
    "HTTP requests currently being handled.",
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "vocalis_rate_limited_total", "Requests refused with 429 by the per-key rate limiter."
)
AUTH_FAILURES = Counter(
    "vocalis_auth_failures_total",
    "Requests refused for missing or invalid credentials.",
    ["reason"],
)
AUTH_THROTTLED = Counter(
    "vocalis_auth_throttled_total",
    "Requests refused with 429 because their client address failed authentication too often.",
)
REALTIME_SESSIONS_REFUSED = Counter(
    "vocalis_realtime_sessions_refused_total",
    "Realtime WebSocket handshakes refused by a limit, by reason (`key_limit`, `org_limit`, "
    "`rate_limited`).",
    ["reason"],
)

# --- backends --------------------------------------------------------------------------
BACKEND_UP = Gauge(
    "vocalis_backend_up",
    "1 when the last readiness check of a backend passed, else 0.",
    ["backend"],
    multiprocess_mode="livemostrecent",
)

# --- workers and webhooks ----------------------------------------------------------------
TASK_TOTAL = Counter(
    "vocalis_task_total",
    "Celery tasks finished, by task name and outcome "
    "(success, retry, failure, dead_letter, skipped).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "vocalis_task_duration_seconds",
    "Celery task run time in seconds, by task name.",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
TASK_RETRIES = Counter(
    "vocalis_task_retries_total",
    "Task retries scheduled after a transient failure, by task name.",
    ["task"],
)
QUEUE_DEPTH = Gauge(
    "vocalis_queue_depth",
    "Messages waiting in a Celery queue on the broker (read at scrape).",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
DEAD_LETTERS = Counter(
    "vocalis_dead_letters",
    "Tasks moved to the dead-letter store after exhausting retries or failing "
    "permanently, by task name.",
    ["task"],
)
WEBHOOK_ATTEMPTS = Counter(
    "vocalis_webhook_delivery_attempts_total",
    "Webhook delivery attempts, by outcome (success, http_error, network_error, "
    "timeout, forbidden).",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "vocalis_webhook_delivery_duration_seconds",
    "Time from sending a webhook to reading the receiver's answer, in seconds.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "vocalis_webhook_endpoints_disabled_total",
    "Webhook endpoints disabled automatically after a run of failures.",
)
OUTBOX_EVENTS = Counter(
    "vocalis_outbox_events_total",
    "Events written to the transactional outbox, by event type.",
    ["type"],
)

__all__ = [
    "AUTH_FAILURES",
    "AUTH_THROTTLED",
    "BACKEND_UP",
    "DEAD_LETTERS",
    "HTTP_IN_FLIGHT",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "LATENCY_BUCKETS",
    "OUTBOX_EVENTS",
    "QUEUE_DEPTH",
    "RATE_LIMITED",
    "REALTIME_SESSIONS_REFUSED",
    "REGISTRY",
    "TASK_DURATION",
    "TASK_RETRIES",
    "TASK_TOTAL",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_ENDPOINTS_DISABLED",
    "WEBHOOK_LATENCY",
]

# --- LLM ----------------------------------------------------------------------------------
LLM_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

LLM_REQUESTS = Counter(
    "vocalis_llm_requests_total",
    "Chat-model calls, by provider, model and outcome "
    "(ok, timeout, unavailable, bad_request, circuit_open).",
    ["provider", "model", "outcome"],
)
LLM_LATENCY = Histogram(
    "vocalis_llm_latency_seconds",
    "Duration of a chat-model call until its last token, by provider and model.",
    ["provider", "model"],
    buckets=LLM_LATENCY_BUCKETS,
)
LLM_TIME_TO_FIRST_TOKEN = Histogram(
    "vocalis_llm_time_to_first_token_seconds",
    "Time from a streamed chat-model call to its first text or tool-call delta.",
    ["provider", "model"],
    buckets=LLM_LATENCY_BUCKETS,
)
LLM_TOKENS = Counter(
    "vocalis_llm_tokens_total",
    "Tokens used, by provider, model and kind (prompt, completion).",
    ["provider", "model", "kind"],
)
LLM_COST = Counter(
    "vocalis_llm_cost_usd_total",
    "Estimated spend in US dollars from the configured per-model prices.",
    ["provider", "model"],
)

# --- agents -------------------------------------------------------------------------------
AGENT_CITATIONS = Counter(
    "vocalis_agent_citations_total",
    "Citations of knowledge passages in final replies, by kind (`cited`: the model wrote "
    "`[n]`; `attributed`: the output guard found the passages an unmarked reply draws on).",
    ["kind"],
)

# --- MCP tools ----------------------------------------------------------------------------
MCP_REQUESTS = Counter(
    "vocalis_mcp_requests_total",
    "MCP server operations (list_tools, call_tool) by outcome "
    "(ok, tool_error, timeout, unavailable, forbidden).",
    ["operation", "outcome"],
)
MCP_LATENCY = Histogram(
    "vocalis_mcp_latency_seconds",
    "Duration of an MCP server operation, session set-up included.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)

# --- voice --------------------------------------------------------------------------------
VOICE_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

STT_LATENCY = Histogram(
    "vocalis_stt_latency_seconds",
    "Time to transcribe one utterance, by engine.",
    ["engine"],
    buckets=VOICE_LATENCY_BUCKETS,
)
STT_REAL_TIME_FACTOR = Histogram(
    "vocalis_stt_real_time_factor",
    "Transcription time divided by audio duration (below 1 is faster than real time), by engine.",
    ["engine"],
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
)
TTS_TIME_TO_FIRST_BYTE = Histogram(
    "vocalis_tts_time_to_first_byte_seconds",
    "Time from a synthesis request to its first audio, by engine.",
    ["engine"],
    buckets=VOICE_LATENCY_BUCKETS,
)
VOICE_TURN_LATENCY = Histogram(
    "vocalis_voice_turn_latency_seconds",
    "End of the user's speech to the first byte of the agent's spoken answer "
    "(end-of-turn silence, transcription, agent, synthesis).",
    buckets=VOICE_LATENCY_BUCKETS,
)
VOICE_BARGE_INS = Counter(
    "vocalis_voice_barge_ins_total",
    "Agent replies cut short because the user started speaking.",
)
VOICE_TURN_DECISION = Histogram(
    "vocalis_voice_turn_decision_seconds",
    "Time the end-of-turn model takes to decide at a pause (features and inference), by detector.",
    ["detector"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
)
VOICE_TURN_DECISIONS = Counter(
    "vocalis_voice_turn_decisions_total",
    "End-of-turn model decisions at pauses, by detector and outcome: `end` (the probability "
    "reached the threshold), `wait` (the turn was given longer), `failed` (the model raised; "
    "plain silence decided).",
    ["detector", "outcome"],
)
VOICE_TURN_TEXT = Counter(
    "vocalis_voice_turn_text_verdicts_total",
    "What the words at a pause said about the turn (its speculative transcript, read by "
    "`voice.completeness`): `complete` (a finished question), `incomplete` (they cannot end "
    "a turn: the turn waits longer), `open` (a verb still waiting for its object: the turn "
    "waits a little longer), `none` (no opinion: the end-of-turn model decides).",
    ["verdict"],
)

# --- telephony ----------------------------------------------------------------------------
TELEPHONY_CALLS = Counter(
    "vocalis_telephony_calls_total",
    "Phone calls that ended, by provider, direction (inbound, outbound) and outcome "
    "(the conversation's end reason: caller_hung_up, agent_ended, transferred, max_duration…).",
    ["provider", "direction", "outcome"],
)
TELEPHONY_ACTIVE_CALLS = Gauge(
    "vocalis_telephony_active_calls", "Phone calls in progress, by provider.", ["provider"]
)
TELEPHONY_WEBHOOKS = Counter(
    "vocalis_telephony_webhooks_total",
    "Carrier voice webhooks, by provider and outcome (answered, bad_signature, unknown_number, "
    "busy, ignored).",
    ["provider", "outcome"],
)
TELEPHONY_PROVIDER_REQUESTS = Counter(
    "vocalis_telephony_provider_requests_total",
    "Call-control requests to a carrier's REST API, by provider, operation (answer, dial, "
    "transfer, hang_up) and outcome (ok, an HTTP status, error).",
    ["provider", "operation", "outcome"],
)
TELEPHONY_MEDIA_JITTER = Histogram(
    "vocalis_telephony_media_jitter_seconds",
    "How far the arrival of caller media frames strays from their timestamps, by provider.",
    ["provider"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64),
)
TELEPHONY_PLAYOUT_UNDERRUNS = Counter(
    "vocalis_telephony_playout_underruns_total",
    "Times the carrier's buffer of agent audio ran dry in the middle of a reply, by provider.",
    ["provider"],
)
TELEPHONY_TIME_TO_FIRST_AUDIO = Histogram(
    "vocalis_telephony_time_to_first_audio_seconds",
    "From the media stream's `start` to the first agent audio sent to the caller, by provider.",
    ["provider"],
    buckets=VOICE_LATENCY_BUCKETS,
)
VOICE_SPECULATIONS = Counter(
    "vocalis_voice_speculations_total",
    "Replies prepared speculatively at a pause in the user's speech, by outcome: `hit` (the "
    "turn ended there and the reply was sent) or `dropped` (the user went on speaking).",
    ["outcome"],
)
VOICE_INTERRUPTIONS = Counter(
    "vocalis_voice_interruptions_total",
    "User speech over the agent's answer, by outcome: `interruption` (the answer stopped), "
    "`backchannel` or `false` (a cough, noise: the answer resumed).",
    ["outcome"],
)

# --- knowledge ----------------------------------------------------------------------------
INGEST_STAGE_DURATION = Histogram(
    "vocalis_ingest_stage_duration_seconds",
    "Time one document spends in an ingestion stage (download, sniff, extract, normalise, "
    "chunk, embed, index, cleanup) and in total.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
INGEST_CHUNKS = Counter(
    "vocalis_ingest_chunks_total",
    "Chunks embedded and indexed (its rate is ingestion throughput in chunks per second).",
)
INGEST_CHUNKS_PER_SECOND = Histogram(
    "vocalis_ingest_chunks_per_second",
    "Ingestion throughput of one document: its chunks divided by its embed + index time.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
VECTOR_INDEX_SYNC = Histogram(
    "vocalis_vector_index_sync_seconds",
    "Time the embedded store's HNSW graph of one knowledge base took to catch up with the "
    "LanceDB table, by kind (`build`: the first build in a process; `catch_up`: after writes, or after "
    "loading a saved graph).",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
DOCUMENTS = Counter(
    "vocalis_documents_total",
    "Documents entering each ingestion status (queued, processing, ready, failed).",
    ["status"],
)
RETRIEVAL_LATENCY = Histogram(
    "vocalis_retrieval_duration_seconds",
    "Knowledge retrieval latency (query embedding, hybrid search, re-ranking), by caller "
    "(`query` endpoint or `agent`).",
    ["caller"],
    buckets=LATENCY_BUCKETS,
)
EMBEDDING_BATCH_DURATION = Histogram(
    "vocalis_embedding_batch_duration_seconds",
    "Time to embed one batch of texts (cache lookups included), by model.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
EMBEDDING_TEXTS = Counter(
    "vocalis_embedding_texts_total",
    "Texts embedded, by model and purpose (ingest, query, api).",
    ["model", "purpose"],
)


# --- several server processes --------------------------------------------------------------
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """What `/metrics` serves: this process's registry, or — under `vocalis serve
    --workers N`, where `PROMETHEUS_MULTIPROC_DIR` is set — every worker's metrics merged
    (counters and histograms summed, gauges by their `multiprocess_mode`)."""
    import os

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if not os.environ.get(MULTIPROC_ENV):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """Drop a finished worker's live gauges (no-op with one process)."""
    import os

    from prometheus_client import multiprocess

    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
