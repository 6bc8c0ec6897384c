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


def test_the_worker_frees_what_loading_left_unreachable_before_freezing(tmp_path):
    # Loading leaves garbage in reference cycles (under LiteRT, TensorFlow's traced graph
    # of the model among it): frozen with the rest, it would never be freed (a MobileNetV2
    # worker held 210 MB more; the demo model's load leaves about 2,800 such objects).
    # Unfrozen again, a collection finds none.
    probe = "import gc, api.wsgi\ngc.unfreeze()\nprint(gc.collect())\n"
    env = dict(os.environ, MODEL_PATH=str(DIGITS), TF_CPP_MIN_LOG_LEVEL="3", LOG_LEVEL="warning",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == 0
