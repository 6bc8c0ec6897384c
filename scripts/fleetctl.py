#!/usr/bin/env python3
"""The AWS fleet's commands (`make stack`, `make roll`, `make status`, `make rollback`, `make teardown`).

    python scripts/fleetctl.py --region us-east-1 stack --vpc-id vpc-... --subnets subnet-a,subnet-b
    python scripts/fleetctl.py --region us-east-1 roll [--ami ami-...]
    python scripts/fleetctl.py --region us-east-1 status
    python scripts/fleetctl.py --region us-east-1 rollback
    python scripts/fleetctl.py --region us-east-1 teardown --confirm keras-fleet

The logic lives in the `fleet` package beside this file; `--help` on each command lists its options.
"""

import sys

from fleet.cli import main

if __name__ == "__main__":
    sys.exit(main())
