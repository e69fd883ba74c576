"""Entry point of the HTTP API: ``uvicorn app:app``. The code lives in the ``api`` package."""

from api.main import create_app

app = create_app()
