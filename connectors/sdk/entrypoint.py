"""``python -m connectors ROLE TYPE spec|check|state|run``: one main() that maps every failure to a
message, an ``error`` event and the protocol's exit code."""

from __future__ import annotations

import gc
import io
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from connectors import secrets
from connectors.registry import ConnectorInfo, get_connector
from connectors.sdk.context import RunContext
from connectors.sdk.errors import ConfigError, ConnectorError
from connectors.sdk.protocol import RunFile, read_run_file

log = logging.getLogger("connectors")

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
USAGE = "usage: python -m connectors ROLE TYPE spec|check|discover|state|run|cleanup"
# A sync allocates millions of short-lived row lists and tuples, and no reference cycles:
# at Python's default (a young-generation collection every 700 allocations) the collector
# took a fifth of an extractor's time. Every 50,000 keeps it for what it is for.
GC_YOUNG_THRESHOLD = 50_000


def with_defaults(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The config with the spec's top-level defaults filled in, so connectors can index it."""
    filled = dict(config)
    for name, prop in spec.get("properties", {}).items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled


def validate_config(info: ConnectorInfo, config: dict[str, Any]) -> dict[str, Any]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(info.spec)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(part) for part in first.absolute_path) or "config"
        # The message quotes the offending value: never echo a secret field's value.
        secret = set(info.spec.get("properties", {})) & {str(p) for p in first.absolute_path}
        message = "invalid value" if secret else first.message
        raise ConfigError(f"invalid config for {info.role} {info.type!r}: {where}: {message}")
    return with_defaults(info.spec, config)


class _RedactingStream(io.TextIOBase):
    """stdout/stderr with every secret of the run replaced by ***: log lines, tracebacks and
    a library's error text alike (a message can quote a URL or a password)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(_redacted(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()


_hidden: set[str] = set()  # shared by the redacting streams and the error events


def _hide(info: ConnectorInfo, run: RunFile) -> None:
    """From now on, the run's secrets never leave this process in clear."""
    _hidden.update(secrets.secret_values(run.config, info.spec))
    if run.broker is not None:
        _hidden.update(secrets.secret_values({"url": run.broker.url}, None))


def _redacted(text: str) -> str:
    # Known values only: `spec` prints URL examples (user:password@) that must stay as they are.
    return secrets.redact(text, _hidden, urls=False)


def _make_connector(info: ConnectorInfo, run: RunFile) -> Any:
    config = validate_config(info, run.config)
    return info.load()(config, RunContext.from_run_file(run))


# --- commands ----------------------------------------------------------------------------
def command_spec(info: ConnectorInfo) -> int:
    print(json.dumps(info.spec, indent=2))
    return EXIT_OK


def command_check(info: ConnectorInfo) -> int:
    try:
        run = read_run_file()
        _hide(info, run)
        connector = _make_connector(info, run)
        try:
            connector.check()
        finally:
            connector.close() if info.role == "extractor" else connector.close(failed=False)
    except ConnectorError as exc:
        print(json.dumps({"status": "failed", "message": _redacted(exc.message)}))
        return EXIT_FAILED
    except Exception as exc:  # check reports, it does not crash
        message = _redacted(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"status": "failed", "message": message}))
        return EXIT_FAILED
    print(json.dumps({"status": "ok"}))
    return EXIT_OK


def command_cleanup(info: ConnectorInfo) -> int:
    """What a killed run left in the target (a staging table, a temporary file): removed,
    and listed as ``{"status": "ok", "removed": [...]}`` on stdout."""
    try:
        run = read_run_file()
        _hide(info, run)
        connector = _make_connector(info, run)
        removed = connector.remove_leftovers() if hasattr(connector, "remove_leftovers") else []
    except ConnectorError as exc:
        print(json.dumps({"status": "failed", "message": _redacted(exc.message)}))
        return EXIT_FAILED
    except Exception as exc:  # reports, it does not crash
        message = _redacted(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"status": "failed", "message": message}))
        return EXIT_FAILED
    print(json.dumps({"status": "ok", "removed": removed}))
    return EXIT_OK


def command_discover(info: ConnectorInfo) -> int:
    """Print the streams the source offers: ``{"streams": [StreamInfo...]}``."""
    if info.role != "extractor":
        print(f"discover: a {info.role} offers no streams", file=sys.stderr)
        return EXIT_INVALID
    try:
        run = read_run_file()
        _hide(info, run)
        connector = _make_connector(info, run)
        try:
            streams = connector.streams()
        finally:
            connector.close()
    except ConfigError as exc:
        print(_redacted(exc.message), file=sys.stderr)
        return EXIT_INVALID
    except ConnectorError as exc:
        print(_redacted(exc.message), file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps({"streams": [stream.to_json() for stream in streams]}))
    return EXIT_OK


def command_state(info: ConnectorInfo) -> int:
    """A loader prints the state its target committed for the run file's connection id:
    ``{"status": "ok", "streams": {stream: {"state": ..., "run_id": ...}}}``, or
    ``{"status": "unsupported"}`` for a loader that does not keep it."""
    try:
        run = read_run_file()
        _hide(info, run)
        loader = _make_connector(info, run)
        if info.role != "loader":
            raise ConnectorError("only loaders keep a committed state")
        try:
            committed = loader.committed_state()
        finally:
            loader.close(failed=False)
    except NotImplementedError:
        print(json.dumps({"status": "unsupported"}))
        return EXIT_OK
    except ConnectorError as exc:
        print(json.dumps({"status": "failed", "message": _redacted(exc.message)}))
        return EXIT_FAILED
    except Exception as exc:  # reports, does not crash
        message = _redacted(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"status": "failed", "message": message}))
        return EXIT_FAILED
    print(json.dumps({"status": "ok", "streams": committed.streams}))
    return EXIT_OK


class _QueuePublisher:
    """Numbers data messages (header ``seq``) and sends them on the session."""

    def __init__(self, session: Any, data_queue: str) -> None:
        self.session = session
        self.data_queue = data_queue
        self.seq = 0

    def publish_message(self, message_type: str, body: bytes) -> None:
        self.seq += 1
        self.session.publish_data(self.data_queue, message_type, self.seq, body)

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None:
        self.session.publish_event(event_type, essential, **fields)


class _QueueDeliveries:
    def __init__(self, session: Any, data_queue: str, idle_seconds: float) -> None:
        self.session = session
        self.data_queue = data_queue
        self.idle_seconds = idle_seconds

    def deliveries(self, prefetch: int) -> Iterator[Any]:
        return self.session.consume(self.data_queue, prefetch, self.idle_seconds)

    def ack(self, tag: int) -> None:
        self.session.ack(tag, multiple=True)


def _run_extractor(extractor: Any, run: RunFile, session: Any) -> None:
    from connectors.sdk.extractor import extract

    assert run.broker is not None
    publisher = _QueuePublisher(session, run.broker.data_queue)
    started = time.monotonic()
    try:
        out = extract(extractor, publisher)
    except ConnectorError as exc:
        if exc.position is None:
            exc.position = extractor.position()
        raise
    except Exception as exc:
        raise ConnectorError(f"{type(exc).__name__}: {exc}", extractor.position()) from exc
    finally:
        extractor.close()
    # Where the time went: reading and encoding, or waiting for the broker to take batches
    # (a full data queue: the loader is the slower side).
    elapsed = time.monotonic() - started
    waited = min(session.waited_seconds, elapsed)
    publisher.publish_event(
        "done",
        records=out.records_sent,
        bytes=out.bytes_sent,
        skipped=out.rejected,
        busy_seconds=round(elapsed - waited, 3),
        wait_seconds=round(waited, 3),
        queue_full=session.nacks,
    )
    session.flush()  # exit 0 only once the broker confirmed END and done
    log.info(
        "published %d records (%d bytes, %d rejected)",
        out.records_sent,
        out.bytes_sent,
        out.rejected,
    )
    if session.nacks:
        log.info("the data queue was full %d times (backpressure)", session.nacks)


def _run_loader(loader: Any, run: RunFile, session: Any) -> None:
    from connectors.sdk.loader import IDLE_SECONDS, LoadEngine

    assert run.broker is not None
    engine = LoadEngine(
        loader,
        loader.context,
        _QueueDeliveries(session, run.broker.data_queue, IDLE_SECONDS),
        session,
    )
    failed = True
    try:
        engine.run()
        failed = False
    finally:
        loader.close(failed=failed)
    log.info(
        "loaded %d records (%d bytes received, %d rejected)",
        engine.received - engine.skipped,
        engine.bytes,
        engine.skipped,
    )


def command_run(info: ConnectorInfo) -> int:
    try:
        run = read_run_file()
        _hide(info, run)
        if run.broker is None:
            raise ConfigError("run file: a sync needs the broker section")
    except ConfigError as exc:
        log.error("%s", exc.message)
        return EXIT_INVALID
    from connectors.sdk.amqp import BrokerSession, PublisherThread

    session: Any = None
    try:
        # Extractors publish from a thread of their own (confirms overlap with reading);
        # loaders consume and commit in one thread.
        session_type = PublisherThread if info.role == "extractor" else BrokerSession
        session = session_type(run.broker.url, run.run_id, info.role, run.broker.events_queue)
        connector = _make_connector(info, run)
        # Run logs are kept by etlctl: say what this run is (never the config: it holds secrets).
        log.info(
            "%s: run %s of %s, mode %s%s",
            info.role,
            run.run_id,
            run.connection or "-",
            run.sync.mode,
            f", from state {run.state}" if info.role == "extractor" and run.state else "",
        )
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        started, started_cpu = time.monotonic(), time.process_time()
        if info.role == "extractor":
            _run_extractor(connector, run, session)
        else:
            _run_loader(connector, run, session)
        log.info(
            "finished in %.1f s (%.1f s of CPU)",
            time.monotonic() - started,
            time.process_time() - started_cpu,
        )
        return EXIT_OK
    except ConnectorError as exc:
        return _report_failure(session, exc.message, exc.position, exc.exit_code)
    except Exception as exc:  # one place maps every failure to an exit code
        traceback.print_exc(file=sys.stderr)
        return _report_failure(session, f"{type(exc).__name__}: {exc}", None, EXIT_FAILED)
    finally:
        if session is not None:
            session.close()


def _report_failure(session: Any, message: str, position: Any, code: int) -> int:
    message = _redacted(message)
    log.error("%s%s", message, f" at {position}" if position else "")
    if session is not None:
        try:
            fields: dict[str, Any] = {"message": message}
            if position:
                fields["position"] = position
            session.publish_event("error", **fields)
            if hasattr(session, "flush"):
                session.flush()
        except Exception:  # the broker may be what failed
            log.warning("could not publish the error event")
    return code


COMMANDS = {
    "spec": command_spec,
    "check": command_check,
    "discover": command_discover,
    "state": command_state,
    "run": command_run,
    "cleanup": command_cleanup,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not isinstance(sys.stderr, _RedactingStream):
        sys.stdout, sys.stderr = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.WARNING)  # its INFO lines are connection chatter
    if len(args) != 3 or args[2] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return EXIT_INVALID
    role, connector_type, command = args
    try:
        info = get_connector(role, connector_type)
    except KeyError:
        print(f"unknown connector: {role} {connector_type}", file=sys.stderr)
        return EXIT_INVALID
    return COMMANDS[command](info)
