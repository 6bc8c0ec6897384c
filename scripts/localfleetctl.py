#!/usr/bin/env python3
"""A local fleet behind HAProxy, for rehearsing a roll (`make fleet-up`, `fleet-status`,
`roll-local`, `fleet-down`).

    python scripts/localfleetctl.py up -n 3 --port 8000
    python scripts/localfleetctl.py status
    python scripts/localfleetctl.py roll --model-path models/digits.keras --model-version 2
    python scripts/localfleetctl.py down

The logic lives in the `localfleet` package beside this file; `--help` on each command
lists its options.
"""

import sys

from localfleet.cli import main

if __name__ == "__main__":
    sys.exit(main())
