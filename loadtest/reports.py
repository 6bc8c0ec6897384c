"""Write a report file where the options say, creating its directory."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | Path, document: dict) -> Path:
    """Write `document` as indented JSON to `path` (parents created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
