"""Locust load tests for Keras Fleet: payloads from the served model's signature, answer checks, the SLO gate.

The Locust entry points are ``locustfile.py`` (a fixed load judged against the SLO)
and ``capacity.py`` (a step-load shape that finds the highest rate meeting it).
The other modules are plain Python without Locust, so tests import them directly.
"""
