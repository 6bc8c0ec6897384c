#!/usr/bin/env python3
"""Create, list and revoke Keras Fleet API keys in an API_KEYS_FILE.

    python scripts/api_keys.py create --file /etc/keras-fleet/api-keys --label "mobile app"
    python scripts/api_keys.py list   --file /etc/keras-fleet/api-keys
    python scripts/api_keys.py revoke --file /etc/keras-fleet/api-keys 1a2b3c4d

`create` prints the new key once; only its SHA-256 is written. Running servers
notice the change within a second.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from api.auth import key_digest, read_keys_file


def create(path: Path, label: str) -> str:
    """Append a new key to the file and return it (the only time it is seen)."""
    existing = read_keys_file(path) if path.exists() else {}
    key_id = secrets.token_hex(4)
    while key_id in existing:
        key_id = secrets.token_hex(4)
    key = f"kf_{key_id}_{secrets.token_urlsafe(32)}"
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = path.read_text().splitlines() if path.exists() else ["# Keras Fleet API keys: id sha256 created label"]
    lines.append(f"{key_id} {key_digest(key)} {created} {' '.join(label.split())}".rstrip())
    _write(path, lines)
    return key


def revoke(path: Path, key_id: str) -> bool:
    """Remove a key by id; False if there was no such key."""
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.split()[:1] != [key_id]]
    if len(kept) == len(lines):
        return False
    _write(path, kept)
    return True


def _write(path: Path, lines: list[str]) -> None:
    # Write a new file and rename it over the old one: a server reading it never sees half.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".api-keys-")
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o640)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("create", "list", "revoke"))
    parser.add_argument("key_id", nargs="?", help="the id to revoke")
    parser.add_argument("--file", type=Path, default=Path(os.environ.get("API_KEYS_FILE") or "api-keys"))
    parser.add_argument("--label", default="", help="what the key is for (create)")
    # Intermixed: `revoke --file F ID` as well as `revoke ID --file F`.
    args = parser.parse_intermixed_args(argv)
    if args.command == "create":
        print(create(args.file, args.label))
        print(f"(stored hashed in {args.file}; this is the only time the key is shown)", file=sys.stderr)
        return 0
    if args.command == "list":
        for line in args.file.read_text().splitlines():
            fields = line.split(maxsplit=3)
            if fields and not fields[0].startswith("#"):
                print("  ".join([fields[0], *(fields[2:] or [])]))
        return 0
    if not args.key_id:
        parser.error("revoke needs the key id")
    if not revoke(args.file, args.key_id):
        print(f"no key with id {args.key_id} in {args.file}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
