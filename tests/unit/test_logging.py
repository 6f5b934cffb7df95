"""Structured logging: the shape of a line, bound context, redaction, stdlib routing, traces."""

from __future__ import annotations

import datetime as dt
import enum
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from vocalis.core.logging import (
    OwnText,
    _Dumps,
    _jsonable,
    _LoggerFactory,
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    redaction_processor,
    unbind_context,
)
from vocalis.core.redaction import is_secret_key, redact_value, secret_placeholder
from vocalis.settings import Settings

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Configure logging into a fresh buffer; the process's logging is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    uvicorn_access = logging.getLogger("uvicorn.access")
    saved_access = (list(uvicorn_access.handlers), uvicorn_access.propagate)
    clear_context()

    def _configure(**overrides: Any) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(Settings(**overrides), stream=stream)
        return stream

    yield _configure
    clear_context()
    structlog.reset_defaults()
    logging.captureWarnings(False)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    uvicorn_access.handlers[:], uvicorn_access.propagate = saved_access


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, parsed as JSON (fails loudly on a non-JSON line)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def only_line(stream: io.StringIO) -> dict[str, Any]:
    written = lines(stream)
    assert len(written) == 1, written
    return written[0]


# --- shape and context --------------------------------------------------------------------


def test_a_line_is_json_with_timestamp_level_logger_and_event(configure: Configure) -> None:
    stream = configure()
    get_logger("vocalis.test").info("agent created", agent_id="agt_1")
    line = only_line(stream)
    assert line["event"] == "agent created"
    assert line["level"] == "info"
    assert line["logger"] == "vocalis.test"
    assert line["agent_id"] == "agt_1"
    assert dt.datetime.fromisoformat(line["timestamp"]).tzinfo is not None


def test_bound_context_fields_appear_on_the_line(configure: Configure) -> None:
    stream = configure()
    bind_context(
        request_id="req_1",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        org_id="org_1",
        conversation_id="conv_1",
    )
    get_logger("vocalis.test").info("message sent")
    line = only_line(stream)
    assert {
        k: line[k] for k in ("request_id", "trace_id", "span_id", "org_id", "conversation_id")
    } == {
        "request_id": "req_1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "org_id": "org_1",
        "conversation_id": "conv_1",
    }


def test_bound_context_appears_on_every_following_line(configure: Configure) -> None:
    stream = configure()
    bind_context(request_id="req_2")
    log = get_logger("vocalis.test")
    log.info("first")
    log.warning("second")
    assert [line["request_id"] for line in lines(stream)] == ["req_2", "req_2"]


def test_cleared_context_is_gone_from_later_lines(configure: Configure) -> None:
    stream = configure()
    bind_context(request_id="req_3", org_id="org_3")
    clear_context()
    get_logger("vocalis.test").info("after clear")
    line = only_line(stream)
    assert "request_id" not in line
    assert "org_id" not in line


def test_unbound_field_is_gone_and_the_others_stay(configure: Configure) -> None:
    stream = configure()
    bind_context(request_id="req_4", conversation_id="conv_4")
    unbind_context("conversation_id")
    get_logger("vocalis.test").info("after unbind")
    line = only_line(stream)
    assert line["request_id"] == "req_4"
    assert "conversation_id" not in line


def test_lines_below_the_configured_level_are_dropped(configure: Configure) -> None:
    stream = configure(log_level="WARNING")
    log = get_logger("vocalis.test")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


# --- redaction ----------------------------------------------------------------------------


def test_email_in_the_message_is_redacted(configure: Configure) -> None:
    stream = configure(redact_pii=True)
    get_logger("vocalis.test").info("signed in as jane@example.com")
    assert only_line(stream)["event"] == "signed in as [EMAIL]"


def test_email_in_a_field_is_redacted(configure: Configure) -> None:
    stream = configure(redact_pii=True)
    get_logger("vocalis.test").info("caller", email="jane@example.com", to=["+1 415 555 2671"])
    line = only_line(stream)
    assert line["email"] == "[EMAIL]"
    assert line["to"] == ["[PHONE]"]


def test_pii_in_a_bound_context_field_is_redacted(configure: Configure) -> None:
    stream = configure(redact_pii=True)
    bind_context(caller="jane@example.com")
    get_logger("vocalis.test").info("turn")
    assert only_line(stream)["caller"] == "[EMAIL]"


def test_pii_stays_when_redaction_is_off(configure: Configure) -> None:
    stream = configure(redact_pii=False)
    get_logger("vocalis.test").info("signed in as jane@example.com")
    assert only_line(stream)["event"] == "signed in as jane@example.com"


def test_password_field_is_redacted_even_with_redaction_off(configure: Configure) -> None:
    stream = configure(redact_pii=False)
    get_logger("vocalis.test").info("login", password="hunter2", user="bob")
    line = only_line(stream)
    assert line["password"] == "[SECRET]"
    assert line["user"] == "bob"


@pytest.mark.parametrize("key", ["secret", "api_key", "access_token", "authorization", "cookie"])
def test_secret_named_fields_are_always_redacted(configure: Configure, key: str) -> None:
    stream = configure(redact_pii=False)
    get_logger("vocalis.test").info("request", **{key: "opaque-value"})
    assert only_line(stream)[key] == "[SECRET]"


def test_secret_nested_in_a_field_is_redacted_with_redaction_off(configure: Configure) -> None:
    stream = configure(redact_pii=False)
    get_logger("vocalis.test").info(
        "outbound", headers={"Authorization": "Bearer x", "Accept": "*/*"}
    )
    assert only_line(stream)["headers"] == {"Authorization": "[SECRET]", "Accept": "*/*"}


def test_credentials_in_the_message_are_redacted_with_redaction_off(configure: Configure) -> None:
    stream = configure(redact_pii=False)
    get_logger("vocalis.test").info("connecting to postgresql://app:s3cret@db/app")
    assert only_line(stream)["event"] == "connecting to postgresql://app:[SECRET]@db/app"


def test_non_json_values_are_stringified_then_redacted(configure: Configure) -> None:
    class Caller:
        def __str__(self) -> str:
            return "Caller(jane@example.com)"

    stream = configure(redact_pii=True)
    get_logger("vocalis.test").info("turn", caller=Caller(), at=dt.date(2024, 1, 15))
    line = only_line(stream)
    assert line["caller"] == "Caller([EMAIL])"
    assert line["at"] == "2024-01-15"


# --- exceptions ---------------------------------------------------------------------------


def test_exception_is_an_exception_field_with_a_redacted_traceback(configure: Configure) -> None:
    stream = configure(redact_pii=True)
    try:
        raise ValueError("card 4111 1111 1111 1111 declined")
    except ValueError:
        get_logger("vocalis.test").exception("payment failed")
    line = only_line(stream)
    assert line["level"] == "error"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: card [CARD] declined" in line["exception"]
    assert "4111" not in json.dumps(line)


def test_stdlib_exception_is_an_exception_field_too(configure: Configure) -> None:
    stream = configure(redact_pii=True)
    try:
        raise RuntimeError("token=abc123")
    except RuntimeError:
        logging.getLogger("celery.app.trace").exception("task failed")
    line = only_line(stream)
    assert "RuntimeError: token=[TOKEN]" in line["exception"]


# --- the standard library -----------------------------------------------------------------


def test_stdlib_logging_comes_out_as_json_with_context(configure: Configure) -> None:
    stream = configure()
    bind_context(request_id="req_5")
    logging.getLogger("sqlalchemy.pool").warning("pool %s is %d%% full", "main", 90)
    line = only_line(stream)
    assert line["event"] == "pool main is 90% full"
    assert line["logger"] == "sqlalchemy.pool"
    assert line["level"] == "warning"
    assert line["request_id"] == "req_5"
    assert "timestamp" in line


def test_stdlib_message_and_extra_fields_are_redacted(configure: Configure) -> None:
    stream = configure(redact_pii=True)
    logging.getLogger("uvicorn.error").error(
        "rejected %s", "jane@example.com", extra={"password": "hunter2", "peer": "a@b.io"}
    )
    line = only_line(stream)
    assert line["event"] == "rejected [EMAIL]"
    assert line["password"] == "[SECRET]"
    assert line["peer"] == "[EMAIL]"


def test_a_library_logger_with_its_own_handler_is_taken_over(configure: Configure) -> None:
    own = io.StringIO()
    worker = logging.getLogger("celery.worker")
    worker.addHandler(logging.StreamHandler(own))
    worker.propagate = False
    try:
        stream = configure()
        worker.info("%s ready", "celery@host")
        assert only_line(stream)["event"] == "celery@host ready"
        assert own.getvalue() == ""
    finally:
        worker.handlers.clear()
        worker.propagate = True


def test_the_servers_access_log_is_silenced_our_request_line_replaces_it(
    configure: Configure,
) -> None:
    """One log line per request: uvicorn's access line is not written (nor formatted:
    uvicorn checks `hasHandlers()`), the middleware's `http_request` line is the access log."""
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler(io.StringIO()))
    access.propagate = True
    stream = configure()
    assert not access.hasHandlers()
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200)
    assert stream.getvalue() == ""


def test_python_warnings_come_out_as_json(configure: Configure) -> None:
    stream = configure()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)  # catch_warnings restored showwarning on entry
        warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    line = only_line(stream)
    assert line["logger"] == "py.warnings"
    assert "UserWarning: deprecated thing" in line["event"]


# --- OpenTelemetry ------------------------------------------------------------------------


def test_trace_and_span_ids_of_the_active_span_are_on_the_line(configure: Configure) -> None:
    stream = configure()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("agent.run") as span:
        get_logger("vocalis.test").info("inside")
        context = span.get_span_context()
    line = only_line(stream)
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_stdlib_lines_carry_the_active_span_too(configure: Configure) -> None:
    stream = configure()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("webhook.deliver") as span:
        logging.getLogger("httpx").info("HTTP Request: POST https://example.com/hook")
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert only_line(stream)["trace_id"] == trace_id


def test_no_trace_id_outside_a_span(configure: Configure) -> None:
    stream = configure()
    get_logger("vocalis.test").info("outside")
    assert "trace_id" not in only_line(stream)


# --- reconfiguration ----------------------------------------------------------------------


def test_configuring_again_replaces_the_handler_instead_of_stacking(configure: Configure) -> None:
    first = configure()
    second = configure()
    get_logger("vocalis.test").info("once")
    logging.getLogger("other").warning("once too")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once", "once too"]


def test_a_logger_created_before_reconfiguration_follows_the_new_settings(
    configure: Configure,
) -> None:
    log = get_logger("vocalis.test")
    configure(redact_pii=True)
    log.info("warm-up")
    stream = configure(redact_pii=False)
    log.info("jane@example.com")
    assert only_line(stream)["event"] == "jane@example.com"


def test_console_format_writes_human_readable_lines(configure: Configure) -> None:
    stream = configure(log_format="console")
    get_logger("vocalis.test").info("hello jane@example.com", password="x")
    text = stream.getvalue()
    assert "hello [EMAIL]" in text
    assert "password=[SECRET]" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


# --- the cheap paths write what the full ones did ----------------------------------------


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    pass


def test_the_redaction_fast_paths_give_what_the_full_walk_gives() -> None:
    """Strings, numbers, flags and None skip `_jsonable` and `redact_value`'s walk; the
    result is what the walk gives, for them and for their subclasses (which still walk)."""
    values = {
        "status": 200,
        "duration_ms": 1.25,
        "nan": float("nan"),
        "ok": True,
        "none": None,
        "text": "call +1 415 555 2671 or jane@example.com",
        "plain": "GET",
        "level": _Level.HIGH,
        "subclass": _Text("jane@example.com"),
        "nested": {"to": ["+1 415 555 2671"], "n": 3},
        "password": 12345,
        "token": "",
    }
    for pii in (True, False):
        fast = redaction_processor(pii=pii)(None, "info", dict(values))
        full = {
            key: secret_placeholder(value)
            if is_secret_key(key)
            else redact_value(_jsonable(value, 0), pii=pii)
            for key, value in values.items()
        }
        assert json.dumps(fast) == json.dumps(full)
        assert fast["text"] != values["text"] or not pii


def test_own_text_is_written_as_it_is_and_a_clients_string_is_redacted(
    configure: Configure,
) -> None:
    stream = configure(redact_pii=True)
    looks_like_a_phone = "+14155552671"
    bind_context(request_id=OwnText(looks_like_a_phone), client_id=looks_like_a_phone)
    get_logger("vocalis.test").info("request")
    line = only_line(stream)
    assert line["request_id"] == looks_like_a_phone
    assert line["client_id"] == "[PHONE]"


def test_the_json_renderer_writes_what_json_dumps_writes() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd é>"

    dumps = _Dumps()
    event = {"event": "x", "é": "ünïcode", "n": [1, 2.5, None, True], "odd": Odd()}
    for default in (repr, str, repr):
        assert dumps(event, default=default) == json.dumps(event, default=default)
    assert dumps(event, default=repr, sort_keys=True) == json.dumps(
        event, default=repr, sort_keys=True
    )


def test_a_named_logger_is_looked_up_once_and_is_the_stdlib_logger() -> None:
    factory = _LoggerFactory()
    first = factory("vocalis.test.cached")
    assert first is logging.getLogger("vocalis.test.cached")
    assert factory("vocalis.test.cached") is first


# --- the formatter's structlog path -------------------------------------------------------


class _Keep(logging.Handler):
    """A second handler on the root logger: sees each record after ours."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_structlog_line_is_what_structlogs_formatter_writes_and_the_record_stays(
    configure: Configure, log_format: str
) -> None:
    stream = configure(log_format=log_format)
    keep = _Keep()
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        bind_context(request_id=OwnText("r1"), org_id="org_1")
        get_logger("vocalis.test").info(
            "http_request", route="/v1/org", status=200, note="mail ada@example.com"
        )
    finally:
        root.removeHandler(keep)
    (record,) = keep.records
    assert isinstance(record.msg, dict)  # the other handler got the event, not our text
    assert record.msg["event"] == "http_request"
    ours = next(h for h in root.handlers if getattr(h, "_vocalis_handler", False))
    formatter = ours.formatter
    assert formatter is not None
    # structlog's own ProcessorFormatter.format (the base class's way), on the same record:
    base = super(type(formatter), formatter).format(record)  # type: ignore[misc]
    assert stream.getvalue() == base + "\n"
    assert "ada@example.com" not in base
    if log_format == "json":
        line = json.loads(base)
        assert line["request_id"] == "r1" and line["org_id"] == "org_1"
        assert list(line)[:4] == ["timestamp", "level", "logger", "event"]


@pytest.fixture
def only_ours(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> Configure:
    """`configure`, with pytest's own capture handlers set aside: ours is then the only
    handler a line reaches."""

    def _configure(**overrides: Any) -> io.StringIO:
        stream = configure(**overrides)
        root = logging.getLogger()
        monkeypatch.setattr(
            root, "handlers", [h for h in root.handlers if hasattr(h, "_vocalis_handler")]
        )
        return stream

    return _configure


def test_with_only_our_handler_a_line_is_written_without_a_log_record(
    only_ours: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = only_ours()
    made: list[logging.LogRecord] = []
    make = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(self, *args, **kwargs)
        made.append(record)
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    bind_context(request_id=OwnText("r1"))
    log = get_logger("vocalis.direct")
    log.info("direct", note="mail ada@example.com", status=200)
    assert made == []  # straight to our handler
    keep = _Keep()
    logging.getLogger("vocalis").addHandler(keep)  # another handler on the way: a record
    try:
        log.info("direct", note="mail ada@example.com", status=200)
    finally:
        logging.getLogger("vocalis").removeHandler(keep)
    assert len(made) == 1 and len(keep.records) == 1
    log.debug("below the level")  # dropped either way
    fast, slow = lines(stream)
    assert fast.pop("timestamp") and slow.pop("timestamp")
    assert (
        fast
        == slow
        == {
            "level": "info",
            "logger": "vocalis.direct",
            "event": "direct",
            "note": "mail [EMAIL]",
            "status": 200,
            "request_id": "r1",
        }
    )


def test_the_request_line_is_what_the_logger_writes_and_a_capture_still_sees_it(
    only_ours: Configure,
) -> None:
    from structlog.testing import capture_logs

    from vocalis.core.logging import RequestLog

    stream = only_ours()
    bind_context(request_id=OwnText("r1"), org_id="org_1")
    fields = {"method": "GET", "route": "/v1/org", "status": 200, "note": "ada@example.com"}
    RequestLog("vocalis.http").info("http_request", **fields)  # one step
    get_logger("vocalis.http").info("http_request", **fields)  # the ordinary way
    with capture_logs() as captured:  # another configuration: the ordinary way, captured
        RequestLog("vocalis.http").info("http_request", **fields)
    assert [c["event"] for c in captured] == ["http_request"]
    direct, ordinary = lines(stream)
    assert direct.pop("timestamp") and ordinary.pop("timestamp")
    assert direct == ordinary
    assert list(direct)[:3] == ["level", "logger", "event"]
    assert direct["note"] == "[EMAIL]" and direct["org_id"] == "org_1"
