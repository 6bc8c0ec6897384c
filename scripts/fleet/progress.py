"""How a command waits for AWS and tells the operator what happens."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Progress:
    """Polling pace and output of a long command; tests pass a ``sleep`` that returns at once."""

    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 15
    say: Callable[[str], None] = print

    def wait(self) -> None:
        """Let one polling interval pass."""
        self.sleep(self.poll_seconds)
