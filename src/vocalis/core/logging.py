"""Structured logging: one JSON line per event, context-bound ids, PII and secrets redacted.

Both structlog loggers and the standard library's (uvicorn, Celery, SQLAlchemy, warnings)
end in the same `ProcessorFormatter` on one root handler, so every line has the same shape:

    {"timestamp": "…Z", "level": "info", "logger": "vocalis.http", "event": "…",
     "request_id": "…", "trace_id": "…", "span_id": "…", "org_id": "…", …}

Redaction is the last step before rendering, so nothing bound, passed or raised escapes it.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from vocalis.core.redaction import (
    FALLBACK,
    is_secret_key,
    redact,
    redact_value,
    secret_placeholder,
)
from vocalis.settings import Settings

# Fields we generate ourselves; nothing in them can be PII, so redaction skips them.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger", "trace_id", "span_id"})
_FIRST_FIELDS = ("timestamp", "level", "logger", "event")
# Libraries that install their own handlers and stop propagation; we take those lines over.
ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "gunicorn.error",
    "celery",
    "celery.task",
    "celery.worker",
    "celery.app.trace",
)
# Servers' access logs: our own `http_request` line (core/middleware.py) is the access log,
# with the route template, duration, ids and redaction; a second line per request would
# only cost time. With no handler and no propagation, uvicorn does not even format it.
SILENCED_LOGGERS = ("uvicorn.access", "gunicorn.access")
_HANDLER_MARK = "_vocalis_handler"
_MAX_DEPTH = 16


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add the active OpenTelemetry span's `trace_id` and `span_id` (hex) when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        # The live span is the truth; a bound id from an upstream hop may be stale.
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


class OwnText(str):
    """A string our own code generated and nothing of a client's is in (the request id the
    middleware makes up when a request brings none): redaction has nothing to look for in
    it, so it is written as it is. Anything a client sent stays a plain `str`, redacted."""

    __slots__ = ()


# Values written as they are (what `_jsonable` and `redact_value` would return unchanged):
# exactly these types, so that subclasses (an IntEnum, a str subclass) take the full path.
_PLAIN_SCALARS = (int, float, bool, type(None))


def redaction_processor(*, pii: bool) -> Processor:
    """A processor hiding secret-named fields always, and PII in every value when `pii`."""

    def redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if key in _OWN_FIELDS:
                continue
            if is_secret_key(key):
                event_dict[key] = secret_placeholder(value)
                continue
            kind = type(value)
            if kind is str:
                # What `redact_value(_jsonable(value))` does for a string, without the walk.
                event_dict[key] = redact(value, pii=pii)
            elif kind in _PLAIN_SCALARS or kind is OwnText:
                continue  # numbers, flags, None: nothing to redact; OwnText: ours
            else:
                event_dict[key] = redact_value(_jsonable(value, 0), pii=pii)
        return event_dict

    return redact_event


def _jsonable(value: Any, depth: int) -> Any:
    """Plain JSON types, so that redaction sees exactly the text the renderer will write."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return FALLBACK
    if isinstance(value, Mapping):
        return {_key(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item, depth + 1) for item in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, depth + 1)
    try:
        return str(value)
    except Exception:
        return FALLBACK


def _key(key: object) -> str:
    try:
        return key if isinstance(key, str) else str(key)
    except Exception:
        return FALLBACK


def _order_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Timestamp, level, logger and event first: the line reads well in a terminal too."""
    ordered = {key: event_dict.pop(key) for key in _FIRST_FIELDS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _shared_processors() -> list[Processor]:
    """Run for every event, structlog's or the standard library's, at the time it is logged."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become an `exception` string, which the redaction step then scrubs.
        structlog.processors.format_exc_info,
    ]


def _renderer(settings: Settings, stream: TextIO) -> Processor:
    if settings.log_format == "console":
        return structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.processors.JSONRenderer(serializer=_Dumps())


class _Dumps:
    """`json.dumps` for the renderer, keeping one encoder for every line: `json.dumps` given
    a `default` (structlog passes its fallback) builds a new encoder per call. Same
    settings, same text."""

    def __init__(self) -> None:
        self._cached: tuple[Any, json.JSONEncoder] = (None, json.JSONEncoder())

    def __call__(self, obj: Any, *, default: Any = None, **options: Any) -> str:
        if options:
            return json.dumps(obj, default=default, **options)
        cached_default, encoder = self._cached
        if default is not cached_default:
            encoder = json.JSONEncoder(default=default)
            self._cached = (default, encoder)
        return encoder.encode(obj)


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's `ProcessorFormatter`, rendering a structlog line without its detours.

    For a record made by `wrap_for_formatter` (a structlog logger's line), the base class
    copies the whole record (so that other handlers see the original), wraps the event dict
    with two meta fields only to delete them, puts the rendered text in the copy and runs
    `logging.Formatter.format` over it, which with the default `%(message)s` format and no
    exception or stack on the record (structlog has already rendered those into the event)
    returns that text unchanged. Here the event dict is copied, its processors run and
    their text returned: the same line, the record untouched, ~1/5 of a line's CPU less
    (issue 11). Every other record (the standard library's) takes the base class's way."""

    def __init__(self, *, line: list[Processor], foreign_pre_chain: list[Processor]) -> None:
        super().__init__(
            foreign_pre_chain=foreign_pre_chain,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *line],
        )
        self._line = tuple(line)

    def format(self, record: logging.LogRecord) -> str:
        event = record.msg
        name = getattr(record, "_name", None)
        if (
            type(event) is not dict
            or name is None
            or record.exc_info
            or record.stack_info
            or self._fmt != "%(message)s"
        ):
            return super().format(record)
        logger = self.logger if self.logger is not None else getattr(record, "_logger", None)
        return self.render(event.copy(), name, logger)

    def render(self, event: EventDict, method_name: str, logger: Any) -> str:
        """The line of a structlog event (consumed: the processors change it)."""
        rendered: Any = event
        for processor in self._line:
            rendered = processor(logger, method_name, rendered)
        return cast(str, rendered)


def _formatter(settings: Settings, stream: TextIO) -> structlog.stdlib.ProcessorFormatter:
    return _Formatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        line=[
            redaction_processor(pii=settings.redact_pii),
            _order_fields,
            _renderer(settings, stream),
        ],
    )


class _LineHandler(logging.StreamHandler):
    """The root handler `configure_logging` installs: one line per record on its stream
    (standard error by default: whatever `sys.stderr` is when a line is written, not when
    configured — test runners and process managers swap it, and a handler holding the old
    object would write into a closed stream)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._stderr:
            self.stream = sys.stderr  # `handle` holds the handler's lock around `emit`
        super().emit(record)

    def write_event(self, event: EventDict, method_name: str, logger: logging.Logger) -> None:
        """Write a structlog event's line as `emit` would write its record's."""
        formatter = cast(_Formatter, self.formatter)
        try:
            line = formatter.render(event, method_name, logger) + self.terminator
            with self.lock:  # type: ignore[union-attr]
                if self._stderr:
                    self.stream = sys.stderr
                self.stream.write(line)
                self.flush()
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": event, "name": logger.name}))


# structlog's method names and their standard-library levels.
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _sole_handler(logger: logging.Logger, level: int) -> _LineHandler | None:
    """Our root handler when a record of `logger` at `level` would reach it and nothing
    else: no handler on the way up, no filter, propagation all the way, our formatter."""
    if logger.disabled or logger.filters or not logger.isEnabledFor(level):
        return None
    current = logger
    while current.parent is not None:
        if current.handlers or not current.propagate:
            return None
        current = current.parent
    handlers = current.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not _LineHandler
        or handler.filters
        or level < handler.level
        or type(handler.formatter) is not _Formatter
        or handler.formatter._fmt != "%(message)s"
    ):
        return None
    return handler


_PLAIN_LOGGERS: dict[type, bool] = {}


def _plain_logger(kind: type) -> bool:
    """A `logging.Logger` (structlog's subclass included) that hands a record to its
    handlers the standard way."""
    plain = _PLAIN_LOGGERS.get(kind)
    if plain is None:
        plain = _PLAIN_LOGGERS[kind] = issubclass(kind, logging.Logger) and all(
            getattr(kind, name) is getattr(logging.Logger, name)
            for name in ("handle", "callHandlers", "_log", "makeRecord", "filter")
        )
    return plain


class _BoundLogger(structlog.stdlib.BoundLogger):
    """structlog's standard-library bound logger, writing a line straight to our handler
    when it is the only thing the record would reach (the configuration `configure_logging`
    makes): the same line, without building a `LogRecord` and walking the logging
    module's handler chain for it, ~40 % of a line's CPU (issue 11). Any other handler or
    filter on the way (a test's capture, a file handler someone added) gets the record as
    before."""

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
    ) -> Any:
        if event_args:
            event_kw["positional_args"] = event_args
        try:
            args, kw = self._process_event(method_name, event, event_kw)
        except structlog.DropEvent:
            return None
        logger = self._logger
        level = _METHOD_LEVELS.get(method_name)
        if (
            level is not None
            and _plain_logger(type(logger))
            and len(args) == 1
            and type(args[0]) is dict
        ):
            handler = _sole_handler(logger, level)
            if handler is not None:
                handler.write_event(args[0], method_name, logger)
                return None
        return getattr(logger, method_name)(*args, **kw)


def _is_plain_console_handler(handler: logging.Handler) -> bool:
    """A bare stdout/stderr handler (from `basicConfig` and friends) that would print raw text."""
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stdout,
        sys.stderr,
        sys.__stdout__,
        sys.__stderr__,
    )


def _install_root_handler(handler: logging.Handler, level: str) -> None:
    root = logging.getLogger()
    for existing in list(root.handlers):
        # Other handlers (pytest's capture, a file handler someone added) are left alone.
        if getattr(existing, _HANDLER_MARK, False) or _is_plain_console_handler(existing):
            root.removeHandler(existing)
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
        # Servers configured earlier in the process may have raised or disabled these.
        routed.setLevel(logging.NOTSET)
        routed.disabled = False
    for name in SILENCED_LOGGERS:
        silenced = logging.getLogger(name)
        silenced.handlers.clear()
        silenced.propagate = False


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Send structlog and standard-library logging through one redacting renderer.

    Safe to call again: the previous handler is replaced, not stacked. `stream` defaults to
    standard error, keeping standard output free for commands' own output.
    """
    target = stream if stream is not None else sys.stderr
    handler = _LineHandler(stream)
    handler.setFormatter(_formatter(settings, target))
    _install_root_handler(handler, settings.log_level)
    logging.captureWarnings(True)
    # No line of ours shows the standard library's per-record caller frame, thread or
    # process names; the logging HOWTO's "Optimization" switches skip computing them
    # (the caller lookup walks the stack on every record): ~20 % of a line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _STANDARD
    factory = _LoggerFactory()
    chain: list[Processor] = [
        structlog.stdlib.filter_by_level,
        *_shared_processors(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    # What `RequestLog` runs of it for a plain event: the rest checks a field such an event
    # does not have (stack, exception, positional arguments), filters by level (checked
    # first) or hands the event to the standard library (which the direct path skips).
    _STANDARD = (
        list(chain),  # what it holds (capture_logs, for one, swaps the contents in place)
        tuple(
            p
            for p in chain
            if p is not structlog.stdlib.filter_by_level
            and p is not structlog.stdlib.ProcessorFormatter.wrap_for_formatter
            and not isinstance(
                p,
                structlog.processors.StackInfoRenderer
                | structlog.stdlib.PositionalArgumentsFormatter,
            )
            and p is not structlog.processors.format_exc_info
        ),
        factory,
    )
    structlog.configure(
        processors=chain,
        context_class=dict,
        logger_factory=factory,
        wrapper_class=_BoundLogger,
        # Module-level loggers are created before configuration; caching would pin them to
        # whichever configuration they first saw.
        cache_logger_on_first_use=False,
    )


# The processors `configure_logging` installed, and the part of them a plain event needs.
_STANDARD: tuple[list[Processor], tuple[Processor, ...], Any] | None = None
# Fields that need the processors `RequestLog` skips.
_SPECIAL_FIELDS = frozenset({"stack_info", "exc_info", "positional_args"})


def _as_configured(standard: tuple[list[Processor], tuple[Processor, ...], Any]) -> bool:
    """Whether structlog's configuration is still what `configure_logging` made."""
    config = structlog.get_config()
    return bool(
        config["logger_factory"] is standard[2]
        and config["wrapper_class"] is _BoundLogger
        and config["processors"] == standard[0]
    )


class RequestLog:
    """A logger for the line every request writes (`http_request`): `info(event, **fields)`
    writes what `get_logger(name).info(event, **fields)` writes — same text, same
    handlers — and, while logging is as `configure_logging` made it and our handler is the
    only thing the line would reach, does it in one step: no lazily bound logger made (two
    objects per call), no pass over processors that only check for fields this line does
    not have, no `LogRecord` (issue 11: the line was ~1/5 of an authenticated GET's CPU).
    Anything else (another configuration, a test capturing structlog's events, another
    handler on the way, an exception to render) takes the ordinary way."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._log = structlog.get_logger(name)
        self._logger: logging.Logger | None = None

    def info(self, event: str, **fields: Any) -> None:
        """Log `event` with `fields` at info level."""
        standard = _STANDARD
        if standard is not None and _SPECIAL_FIELDS.isdisjoint(fields) and _as_configured(standard):
            logger = self._logger
            if logger is None:
                logger = self._logger = logging.getLogger(self.name)
            handler = _sole_handler(logger, logging.INFO) if _plain_logger(type(logger)) else None
            if handler is not None:
                # What structlog's bound logger and the chain make of the call.
                fields["event"] = event
                for processor in standard[1]:
                    fields = cast(dict[str, Any], processor(logger, "info", fields))
                handler.write_event(fields, "info", logger)
                return
        self._log.info(event, **fields)


class _LoggerFactory(structlog.stdlib.LoggerFactory):
    """structlog's stdlib logger factory, remembering named loggers: without caching (see
    `configure_logging`) every line asks for its logger again, and `logging.getLogger`
    takes the logging module's lock each time. A logger, once made, is never replaced."""

    def __init__(self) -> None:
        super().__init__()
        self._named: dict[str, logging.Logger] = {}

    def __call__(self, *args: Any) -> logging.Logger:
        if args and isinstance(args[0], str):
            logger = self._named.get(args[0])
            if logger is None:
                logger = self._named[args[0]] = logging.getLogger(args[0])
            return logger
        return super().__call__(*args)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a standard-library logger (`vocalis.http`)."""
    return structlog.stdlib.get_logger(name)


def bind_context(**values: Any) -> None:
    """Bind fields (`request_id`, `org_id`, `conversation_id`…) onto every following line."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_context(*keys: str) -> None:
    """Remove previously bound fields."""
    structlog.contextvars.unbind_contextvars(*keys)


def clear_context() -> None:
    """Forget every bound field (start of a request, task or connection)."""
    structlog.contextvars.clear_contextvars()
