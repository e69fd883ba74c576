"""HTTP API over the core: next-category ranking and user anomaly scores.

``python -m api`` serves it (``api.server.run``); ``api.main.create_app`` builds the app, and
``app.py`` at the repository root is the ``app:app`` it serves.
"""
