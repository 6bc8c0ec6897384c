"""JSON logging: one object per line on stdout, for the app and gunicorn alike."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(levelname)s %(name)s %(message)s"
RENAMED = {"levelname": "level", "name": "logger"}


def json_formatter() -> JsonFormatter:
    """The formatter every log line goes through (gunicorn's config uses it too)."""
    # "time" is ISO 8601 in UTC with milliseconds, like nginx's $time_iso8601 plus precision.
    return JsonFormatter(FORMAT, rename_fields=RENAMED, timestamp="time")


def configure_logging(level: str) -> None:
    """Send the app's logs as JSON lines to stdout at the given level."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
