"""JSON logging: one object per line on stdout, for the app and gunicorn alike.

A small formatter on orjson rather than a general-purpose library: it runs once per
request, and at a few thousand requests a second per VM its cost shows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

import orjson

# How long a line below WARNING may wait to be written with others, and how much may wait.
FLUSH_SECONDS = 0.5
BUFFER_BYTES = 64 * 1024

# How native libraries mark their stderr lines' levels: TensorFlow Lite's "INFO: ...",
# absl's "I0000 00:00:... file.cc:1] ..." (TensorFlow's own).
_NATIVE_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
_ABSL_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
_ABSL_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+\] (.*)")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# The last whole second formatted: (second, its text), replaced as one tuple so that
# threads never see one's second with another's text.
_last_second = [(-1, "")]


def iso_time(timestamp: float) -> str:
    """``timestamp`` as ISO 8601 UTC with milliseconds; each second's text is worked out once."""
    # Rounded to the microsecond first, as datetime.fromtimestamp does, then cut to the millisecond.
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second = int(whole)
    cached = _last_second[0]
    if cached[0] != second:
        cached = _last_second[0] = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micros // 1000:03d}+00:00"


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, then the extras."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102 (logging API)
        entry = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def json_formatter() -> logging.Formatter:
    """The formatter every log line goes through (gunicorn's config uses it too)."""
    return JsonLineFormatter()


class StdoutHandler(logging.StreamHandler):
    """Writes the JSON lines to whatever sys.stdout is at the time, a batch at a time.

    Lines below WARNING wait up to :data:`FLUSH_SECONDS` (or until :data:`BUFFER_BYTES`
    gather) and leave in one write: a write per request line, each releasing and
    retaking the GIL among a worker's busy threads, cost a busy worker about 10% of
    its throughput (measured, README "Logs"). WARNING and above leave at once, after
    the lines that waited before them. ``flush()`` (logging's exit hook calls it)
    writes whatever waits.
    """

    def __init__(self):
        super().__init__()
        self._lines: list[str] = []
        self._size = 0
        self._flusher: threading.Thread | None = None
        # Not `_closed`: logging.Handler.close() sets that to True, which left the flusher
        # waiting on a bool (an AttributeError in its thread) and a second close() raising.
        self._stop_flushing = threading.Event()

    @property
    def stream(self):  # noqa: D102
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102 (logging API; called under self.lock)
        try:
            line = self.format(record)
        except Exception:  # logging's contract: a bad record is reported, never raised
            self.handleError(record)
            return
        self._add(line, record.levelno)

    def write_line(self, line: str, level: int) -> None:
        """Write a line already formatted (see :func:`log_fields`), like a record's."""
        with self.lock:
            self._add(line, level)

    def _add(self, line: str, level: int) -> None:
        self._lines.append(line)
        self._size += len(line)
        if level >= logging.WARNING or self._size >= BUFFER_BYTES:
            self._write()
        elif self._flusher is None:
            # Started by the first record, in the process that logs it (a gunicorn
            # worker, after fork: a thread would not survive the fork).
            self._flusher = threading.Thread(target=self._flush_every_interval, name="log-flush", daemon=True)
            self._flusher.start()

    def flush(self) -> None:  # noqa: D102
        with self.lock:
            self._write()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines, self._size = [], 0
        stream = self.stream
        stream.write(text)
        stream.flush()

    def close(self) -> None:  # noqa: D102
        self.flush()
        self._stop_flushing.set()
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._stop_flushing.wait(FLUSH_SECONDS):
            self.flush()


def log_fields(logger: logging.Logger, level: int, message: str, fields: dict) -> None:
    """Log ``message`` with ``fields`` as ``logger.log(level, message, extra=fields)`` would.

    When the line's only way out is the JSON handler :func:`configure_logging` installs
    (the app's case), it is formatted here and handed to it: the same line, without the
    LogRecord, whose making costs more than the line (this runs once per request).
    Anywhere else (a test's capturing handler, say), through logging as usual.
    """
    handler = _sole_json_handler(logger, level)
    if handler is None:
        logger.log(level, message, extra=fields)
        return
    entry = {"time": iso_time(time.time()), "level": logging.getLevelName(level), "logger": logger.name,
             "message": message, **fields}
    handler.write_line(orjson.dumps(entry, default=str).decode(), level)


def _sole_json_handler(logger: logging.Logger, level: int) -> StdoutHandler | None:
    root = logging.getLogger()
    if logger.handlers or logger.filters or not logger.propagate or logger.parent is not root:
        return None
    if len(root.handlers) != 1:
        return None
    handler = root.handlers[0]
    if type(handler) is not StdoutHandler or handler.filters or level < handler.level:
        return None
    return handler if type(handler.formatter) is JsonLineFormatter else None


def configure_logging(level: str) -> None:
    """Send the app's logs as JSON lines to stdout at the given level."""
    # Record fields no line prints, which logging would otherwise work out for every
    # record (one per request): the caller's file and line, found by walking up the
    # stack, and the thread's and process's names (the logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = StdoutHandler()
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for replaced in root.handlers:
        if isinstance(replaced, StdoutHandler):  # an earlier app's, in this process (tests)
            replaced.close()
    root.handlers = [handler]
    root.setLevel(level.upper())


@contextlib.contextmanager
def native_stderr_logged(logger: logging.Logger):
    """Log, as JSON lines of ``logger``, what native code writes to stderr inside the block.

    C++ libraries print to file descriptor 2 past Python's logging (TensorFlow's absl
    lines as it is imported; LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for
    CPU." once per interpreter): the only lines of a worker's output that would not be
    JSON. The block's writes go
    to a file (a pipe could fill and block the writer) and are logged when it ends, at
    the level each line's mark names (:func:`native_line`).
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip():
                    logger.log(*native_line(line))


def native_line(line: str) -> tuple[int, str]:
    """The level and message of one line a native library printed (INFO if unmarked)."""
    if "absl::InitializeLog()" in line:
        # absl's notice that lines before its set-up go to stderr: where they go is
        # exactly what is being handled here, so it warns of nothing.
        return logging.INFO, line.partition(": ")[2] or line
    absl = _ABSL_LINE.match(line)
    if absl:
        return _ABSL_LEVELS[absl[1]], absl[2]
    prefix, _, rest = line.partition(": ")
    if prefix in _NATIVE_LEVELS:
        return _NATIVE_LEVELS[prefix], rest
    return logging.INFO, line
