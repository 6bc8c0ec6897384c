"""The entry point gunicorn's workers import (api/wsgi.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.stack import DIGITS, REPO


def test_the_worker_freezes_what_loading_left_so_collections_skip_it(tmp_path):
    # In a process of its own, as a gunicorn worker imports it: the model loaded, the
    # app built, then everything alive frozen out of the collector's reach.
    probe = (
        "import gc, json, api.wsgi\n"
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'walked': len(gc.get_objects()),"
        " 'ready': api.wsgi.app.test_client().get('/healthz/ready').status_code}))\n"
    )
    env = dict(os.environ, MODEL_PATH=str(DIGITS), TF_CPP_MIN_LOG_LEVEL="3", LOG_LEVEL="warning",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["ready"] == 200
    # TensorFlow and Keras alone are well over 100,000 objects; a collection now walks
    # only what was made after the freeze.
    assert found["frozen"] > 100_000
    assert found["walked"] < found["frozen"] / 10
