"""JSON-ready copies of results: numpy and times as Python, NaN/inf as None (for files and logs)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd


def json_ready(obj: Any, decimals: int | None = None) -> Any:
    """JSON-ready copy: numpy and times as Python, NaN/inf as None, floats rounded when asked."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v, decimals) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v, decimals) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist(), decimals)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if not math.isfinite(value):
            return None
        return value if decimals is None else round(value, decimals)
    if isinstance(obj, (pd.Timestamp, datetime)):
        return obj.isoformat()
    return obj
