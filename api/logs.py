"""JSON logging: one object per line on stdout, for the app and gunicorn alike.

A small formatter on orjson rather than a general-purpose library: it runs once per
request, and at a few thousand requests a second per VM its cost shows.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, then the extras."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102 (logging API)
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
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
    """A stream handler that writes to whatever sys.stdout is at the time of each record."""

    @property
    def stream(self):  # noqa: D102
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


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
    root.handlers = [handler]
    root.setLevel(level.upper())
