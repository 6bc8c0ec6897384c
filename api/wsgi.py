"""The WSGI entry point gunicorn imports, in each worker, after fork."""

import gc

from api.app import create_app

app = create_app()

# What is loaded now (TensorFlow, Keras, the model, the app: about 340,000 objects for
# the demo model) lives as long as the worker. A full collection walks all of it while
# holding the GIL: 175 ms on this machine, a stall for every request in the worker.
# Frozen, collections only walk what requests leave behind. Collected first: what the
# load left unreachable in cycles (the Keras model, TensorFlow's traced graph once
# LiteRT serves) would otherwise be frozen with the rest and never freed.
gc.collect()
gc.freeze()
