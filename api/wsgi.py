"""The WSGI entry point gunicorn imports, in each worker, after fork."""

from api.app import create_app

app = create_app()
