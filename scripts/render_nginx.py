#!/usr/bin/env python3
"""Fill the @NAME@ placeholders of an nginx template (deploy/nginx/*.conf).

nginx's own `$variables` stay untouched. Used by the local stack and by the image's
provisioning, so both run the same site file.

    python scripts/render_nginx.py deploy/nginx/keras-fleet.conf LISTEN=80 UPSTREAM=unix:/run/kf.sock ...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def render(template: str, values: dict[str, object]) -> str:
    """Replace every @NAME@ with values[NAME]; raise ValueError naming any that is missing."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ValueError(f"no value for placeholder(s): {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def main(argv: list[str]) -> int:
    """CLI: render TEMPLATE with NAME=VALUE pairs to standard output."""
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    values = dict(pair.split("=", 1) for pair in argv[1:])
    try:
        sys.stdout.write(render(Path(argv[0]).read_text(), values))
    except ValueError as exc:
        print(f"render_nginx: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
