"""HTTP API over the core: next-category ranking and user anomaly scores.

``api.main.create_app`` builds the app; ``app.py`` at the repository root is the
``uvicorn app:app`` entry point.
"""
