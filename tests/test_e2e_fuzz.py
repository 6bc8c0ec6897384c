"""schemathesis fuzzes the real stack (nginx + gunicorn) from the API's own OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import start_digits_stack

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.parametrize("seed", [11, 12])
def test_no_server_error_and_every_response_matches_the_document(tmp_path, seed):
    stack = start_digits_stack(tmp_path / "run", workers=2)
    try:
        run = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{stack.url}/openapi.json", "--checks", "all", "--max-examples", "60",
             "--seed", str(seed), "--request-timeout", "30", "--no-color"],
            capture_output=True, text=True, timeout=600,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "passed" in run.stdout
        assert stack.get("/healthz/ready").status_code == 200
    finally:
        stack.stop()
