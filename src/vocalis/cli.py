"""The `vocalis` command line: serve, worker, beat, run, migrate, doctor, docs, orgs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from vocalis.settings import Settings, get_settings

app = typer.Typer(help="Vocalis: self-hosted voice and chat AI agents.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")


def _migrate(settings: Settings) -> None:
    from vocalis.core.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if settings.object_store_url.startswith("s3://"):
        asyncio.run(_ensure_bucket(settings))


async def _ensure_bucket(settings: Settings) -> None:
    """Create the S3 bucket on first deploy (migrate is the one-off setup step)."""
    from vocalis.adapters.s3_object_store import S3ObjectStore
    from vocalis.core.backends import build_object_store, build_secrets

    store = await build_object_store(settings, build_secrets(settings))
    try:
        if isinstance(store, S3ObjectStore) and await store.ensure_bucket():
            typer.echo(f"created bucket for {settings.object_store_url}")
    finally:
        await store.close()


def _ensure_redis_env(settings: Settings) -> Settings:
    """Start the embedded Redis when no URL is set and export its URL to child processes."""
    if settings.redis_url:
        return settings
    from vocalis.adapters import embedded_redis

    url = embedded_redis.ensure_running(settings.data_dir)
    os.environ["VOCALIS_REDIS_URL"] = url
    get_settings.cache_clear()
    return get_settings()


def _first_run_key(settings: Settings) -> None:
    from vocalis.core.db import Database
    from vocalis.orgs.bootstrap import ensure_first_run_key, key_file

    async def go() -> tuple[str, bool]:
        database = Database(settings.resolved_database_url)
        try:
            return await ensure_first_run_key(settings, database)
        finally:
            await database.dispose()

    key, created = asyncio.run(go())
    state = "created" if created else "reused"
    typer.echo(f"# first-run owner key ({state}); also in {key_file(settings)}", err=True)
    typer.echo(f"VOCALIS_API_KEY={key}")


@app.command()
def migrate(
    downgrade: Annotated[
        str | None, typer.Option(help="Downgrade to this revision instead.")
    ] = None,
) -> None:
    """Upgrade the relational database to the latest schema (or downgrade)."""
    settings = get_settings()
    if downgrade:
        from vocalis.core.migrate import downgrade as do_downgrade

        do_downgrade(settings.resolved_database_url, downgrade)
    else:
        _migrate(settings)
    typer.echo("migrations: done")


@app.command()
def serve(
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the API server (REST, SSE, WebSocket, console, /metrics)."""
    import uvicorn

    settings = _ensure_redis_env(get_settings())
    uvicorn.run(
        "vocalis.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        reload=reload,
        workers=workers,
        log_config=None,
        proxy_headers=True,
        access_log=False,
        ws_max_size=4 * 1024 * 1024,
    )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume.")
    ] = "ingest,analysis,webhooks,maintenance,default",
    concurrency: Annotated[int, typer.Option(help="Worker processes/threads.")] = 2,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads, solo.")] = "threads",
) -> None:
    """Run a Celery worker on the given queues."""
    settings = _ensure_redis_env(get_settings())
    from vocalis.workers.app import celery_app

    celery_app.worker_main(
        [
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def beat() -> None:
    """Run the periodic-job scheduler."""
    settings = _ensure_redis_env(get_settings())
    from vocalis.workers.app import celery_app

    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(["beat", "--loglevel", settings.log_level, "--schedule", str(schedule)])


@app.command()
def run() -> None:
    """Embedded mode: migrate, print the first-run key, start a worker, beat and the API."""
    from vocalis.adapters import embedded_redis

    base = get_settings()
    owns_redis = not base.redis_url and not embedded_redis.is_running(base.data_dir)
    settings = _ensure_redis_env(base)
    _migrate(settings)
    _first_run_key(settings)
    children = [
        subprocess.Popen([sys.executable, "-m", "vocalis", "worker"]),
        subprocess.Popen([sys.executable, "-m", "vocalis", "beat"]),
    ]

    def stop_children(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

    try:
        typer.echo(f"Vocalis on http://{settings.host}:{settings.port}", err=True)
        serve(reload=False, workers=1)
    finally:
        stop_children()
        if owns_redis:
            embedded_redis.stop(settings.data_dir)


@app.command()
def doctor() -> None:
    """Check every configured backend and say, in plain words, what is wrong."""
    settings = get_settings()
    from vocalis.core.doctor import diagnose

    problems = asyncio.run(diagnose(settings, echo=typer.echo))
    raise typer.Exit(code=1 if problems else 0)


@app.command()
def docs(
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the generated docs drifted.")
    ] = False,
    root: Annotated[Path, typer.Option(help="Documentation directory.")] = Path("docs"),
) -> None:
    """Regenerate the reference parts of the documentation from the code."""
    from vocalis.docs_gen import generate

    drifted = generate(root, check=check)
    if check and drifted:
        typer.echo("generated docs are out of date; run `vocalis docs`:", err=True)
        for path in drifted:
            typer.echo(f"  {path}", err=True)
        raise typer.Exit(code=1)
    typer.echo("docs: up to date" if check else f"docs: wrote {len(drifted)} file(s)")


@orgs_app.command("create")
def orgs_create(
    name: Annotated[str, typer.Argument(help="Organisation name.")],
    owner_email: Annotated[str, typer.Option(help="Owner's email.")],
) -> None:
    """Create an organisation with an owner and print its first owner key."""
    from vocalis.core.db import Database
    from vocalis.core.scopes import Role
    from vocalis.orgs import service

    settings = get_settings()

    async def go() -> tuple[str, str]:
        database = Database(settings.resolved_database_url)
        try:
            async with database.session() as session:
                org, _ = await service.create_org(
                    session=session, name=name, owner_email=owner_email
                )
                issued = await service.create_api_key(
                    session=session, org_id=org.id, name="owner key", role=Role.OWNER
                )
                return org.id, issued.plaintext
        finally:
            await database.dispose()

    org_id, key = asyncio.run(go())
    typer.echo(f"org_id={org_id}")
    typer.echo(f"VOCALIS_API_KEY={key}")


def main() -> None:
    """Entry point of the `vocalis` script."""
    app()
