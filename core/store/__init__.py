"""The artifact folder: its signed manifest, reading files safely, skops model files, and
loading the build's artifacts for the dashboard and the API.
"""
