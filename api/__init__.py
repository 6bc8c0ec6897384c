"""Keras Fleet's serving API.

Kept import-free on purpose: gunicorn's master imports ``api.config`` to read its
settings, and that must not drag TensorFlow into the master before workers fork.
"""
