"""The `vocalis` command line: serve, worker, beat, run, migrate, doctor, docs, orgs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vocalis.settings import Settings, get_settings

app = typer.Typer(help="Vocalis: self-hosted voice and chat AI agents.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")


# The server settings every `vocalis serve` runs under (bench/api_overhead.py runs its bare
# FastAPI peer under the same): our own `http_request` line replaces uvicorn's access log.
UVICORN_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "proxy_headers": True,
    "access_log": False,
    "ws_max_size": 4 * 1024 * 1024,
}


def _migrate(settings: Settings) -> None:
    from vocalis.core.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if settings.object_store_url.startswith("s3://"):
        asyncio.run(_ensure_bucket(settings))


async def _ensure_bucket(settings: Settings) -> None:
    """Create the S3 bucket on first deploy (migrate is the one-off setup step)."""
    from vocalis.adapters.s3_object_store import S3ObjectStore
    from vocalis.wiring import build_object_store, build_secrets

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


def _refuse_fallbacks(settings: Settings) -> None:
    """Production refuses embedded fallbacks it was not allowed (before any is started)."""
    from vocalis.core.production import refuse_embedded_fallbacks

    try:
        refuse_embedded_fallbacks(settings)
    except (RuntimeError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc


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


def default_workers(settings: Settings, *, per_core: bool) -> int:
    """`VOCALIS_SERVE_WORKERS`, else one process per CPU core (at most 4) when `per_core`
    (`vocalis run`: one box), else 1 (`vocalis serve`: a pod, scaled by replicas)."""
    if settings.serve_workers > 0:
        return settings.serve_workers
    return max(1, min(os.cpu_count() or 1, 4)) if per_core else 1


def _multiprocess_metrics(settings: Settings, workers: int) -> None:
    """Give the worker processes one folder for their metrics (emptied first)."""
    from vocalis.core.metrics import MULTIPROC_ENV

    if workers <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return
    folder = settings.data_dir / "prometheus-multiproc"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder.resolve())


@app.command()
def serve(
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes; default VOCALIS_SERVE_WORKERS, else 1."),
    ] = None,
) -> None:
    """Run the API server (REST, SSE, WebSocket, console, /metrics)."""
    _serve(reload=reload, workers=workers, per_core=False)


def _serve(*, reload: bool, workers: int | None, per_core: bool) -> None:
    import uvicorn

    _refuse_fallbacks(get_settings())
    settings = _ensure_redis_env(get_settings())
    workers = 1 if reload else (workers or default_workers(settings, per_core=per_core))
    _multiprocess_metrics(settings, workers)
    options: dict[str, Any] = {
        **UVICORN_OPTIONS,
        # Requests and WebSockets still open this long after SIGTERM are cancelled.
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_timeout_s)),
    }
    if settings.internal_port and not reload:
        _serve_with_internal_port(settings, workers, options)
        return
    uvicorn.run(
        "vocalis.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        reload=reload,
        workers=workers,
        **options,
    )


def _serve_with_internal_port(settings: Settings, workers: int, options: dict[str, Any]) -> None:
    """`uvicorn.run`, listening on the public and the internal port (the same app: the
    routes that tell them apart look at the connection's server port)."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "vocalis.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        **options,
    )
    public = config.bind_socket()
    internal = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    internal.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    internal.bind((settings.host, settings.internal_port))
    internal.set_inheritable(True)
    if workers > 1:
        Multiprocess(config, sockets=[public, internal]).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=[public, internal])
    if not server.started:
        raise typer.Exit(code=3)


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume.")
    ] = "ingest,analysis,webhooks,maintenance,default",
    concurrency: Annotated[int, typer.Option(help="Worker processes/threads.")] = 2,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads, solo.")] = "threads",
) -> None:
    """Run a Celery worker on the given queues."""
    _refuse_fallbacks(get_settings())
    settings = _ensure_redis_env(get_settings())
    from vocalis.wiring.worker import celery_app

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
    _refuse_fallbacks(get_settings())
    settings = _ensure_redis_env(get_settings())
    from vocalis.wiring.worker import celery_app

    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(["beat", "--loglevel", settings.log_level, "--schedule", str(schedule)])


@app.command()
def run() -> None:
    """Embedded mode: migrate, print the first-run key, start a worker, beat and the API.

    The process supervises what it starts (`vocalis.core.processes.Supervisor`): SIGTERM or
    SIGINT stops the API (draining requests and realtime sessions), then the worker and
    beat (finishing their tasks), then the embedded Redis; every child dies with it.
    """
    from vocalis.adapters import embedded_redis
    from vocalis.core.processes import Supervisor, die_with_parent

    base = get_settings()
    _refuse_fallbacks(base)
    supervisor = Supervisor(stop_timeout_s=base.shutdown_timeout_s + 5.0)
    supervisor.install_signal_handlers()
    if not base.redis_url and not embedded_redis.is_running(base.data_dir):
        # Owned: stopped last, and killed by the kernel if this process dies.
        redis_server = embedded_redis.spawn(base.data_dir, preexec_fn=die_with_parent())
        supervisor.adopt("redis", redis_server)
    settings = _ensure_redis_env(base)
    code = 0
    try:
        if supervisor.stopping is None:
            _migrate(settings)
            _first_run_key(settings)
            workers = default_workers(settings, per_core=True)
            vocalis = [sys.executable, "-m", "vocalis"]
            supervisor.start("api", [*vocalis, "serve", "--workers", str(workers)])
            supervisor.start("worker", [*vocalis, "worker"])
            supervisor.start("beat", [*vocalis, "beat"])
            typer.echo(f"Vocalis on http://{settings.host}:{settings.port}", err=True)
            code = supervisor.wait()
    finally:
        supervisor.stop(order=[["api"], ["worker", "beat"], ["redis"]])
    raise typer.Exit(code=code)


@app.command()
def doctor() -> None:
    """Check every configured backend and say, in plain words, what is wrong."""
    settings = get_settings()
    from vocalis.wiring.doctor import diagnose

    problems = asyncio.run(diagnose(settings, echo=typer.echo))
    raise typer.Exit(code=1 if problems else 0)


@app.command()
def docs(
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the generated docs drifted.")
    ] = False,
    root: Annotated[Path, typer.Option(help="Documentation directory.")] = Path("docs"),
    site: Annotated[
        Path | None,
        typer.Option(help="Build the documentation site (MkDocs, strict) into this folder."),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Build the site and serve it on --port.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of `--serve` (127.0.0.1).")] = 8001,
) -> None:
    """Regenerate the reference parts of the documentation from the code, or build
    (`--site`) and serve (`--serve`) the documentation site."""
    if site is not None or serve:
        _docs_site(site or get_settings().data_dir / "docs-site", serve=serve, port=port)
        return
    from vocalis.docs_gen import generate

    drifted = generate(root, check=check)
    if check and drifted:
        typer.echo("generated docs are out of date; run `vocalis docs`:", err=True)
        for path in drifted:
            typer.echo(f"  {path}", err=True)
        raise typer.Exit(code=1)
    typer.echo("docs: up to date" if check else f"docs: wrote {len(drifted)} file(s)")


def _docs_site(site_dir: Path, *, serve: bool, port: int) -> None:
    from vocalis.docs_gen.site import SiteBuildFailed, build_site, serve_site

    try:
        pages = build_site(site_dir)
    except SiteBuildFailed as exc:
        typer.echo(f"docs site: build failed:\n{exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"docs site: {len(pages)} pages in {site_dir}", err=True)
    if serve:
        typer.echo(f"docs site on http://127.0.0.1:{port}/ (Ctrl-C stops)", err=True)
        serve_site(site_dir, port=port)


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
