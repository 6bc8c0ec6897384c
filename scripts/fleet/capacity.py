"""The measured capacity of one instance, from `make capacity`'s reports/capacity.json."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.errors import FleetError

KEY = "recommended_alb_request_count_per_target"


def requests_per_instance(path: Path) -> int | None:
    """Return the recommended requests per instance per minute, or None without a report."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())[KEY]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FleetError(f"cannot read {KEY} from {path}: {exc!r}; run `make capacity` again or delete it") from None
    if value == 0 and not isinstance(value, bool):
        # What `make capacity` writes when not one load step met the SLO.
        raise FleetError(
            f"{path} says no load step met the SLO ({KEY} 0): the instance it measured could not serve within it. "
            "Fix that and run `make capacity` again, or set the target yourself "
            "(STACK_PARAMS=TargetRequestsPerInstance=N), or delete the report to keep the stack's current target"
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FleetError(f"{KEY} in {path} must be a positive integer, got {value!r}")
    return value
