"""Core package: data, demo generator, ranking, anomaly detection and the build pipeline.

UI-free: nothing here imports Streamlit or FastAPI.
"""

__version__ = "1.0.0"
