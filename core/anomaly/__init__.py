"""Task 2: per-visitor behaviour features, the anomaly detector, validation, scoring and audits.

``features`` computes the 16 user features of docs/DATA_CONTRACT.md; ``validation`` says which
feature rows can be scored; ``detector`` is the scikit-learn-style estimator; ``scoring`` scores
tables with a detector passed in; ``audit`` holds proxy labels, operating-point audits and
cleaning. Nothing in this package reads or writes files: ``core.artifacts`` loads the detector.
"""

from core.anomaly.audit import (
    DEFAULT_AUDIT_SHARES,
    audit_table,
    clean_events,
    cleaning_report,
    proxy_labels,
)
from core.anomaly.detector import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_N_ESTIMATORS,
    LOG_FEATURES,
    SCORE_DEFINITION,
    Detector,
    fit_detector,
    log1p_columns,
    robust_centre_scale,
)
from core.anomaly.features import user_features
from core.anomaly.scoring import (
    SCORE_CHUNK_ROWS,
    distinct_rows,
    explain,
    flag_scores,
    score,
    score_table,
    threshold_for,
)
from core.anomaly.validation import MAX_PROBLEM_ROWS, FeatureValidation, validate_features
from core.schema import COUNT_FEATURES, USER_FEATURES

__all__ = [
    "COUNT_FEATURES",
    "DEFAULT_AUDIT_SHARES",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_N_ESTIMATORS",
    "LOG_FEATURES",
    "MAX_PROBLEM_ROWS",
    "SCORE_CHUNK_ROWS",
    "SCORE_DEFINITION",
    "USER_FEATURES",
    "Detector",
    "FeatureValidation",
    "audit_table",
    "clean_events",
    "cleaning_report",
    "distinct_rows",
    "explain",
    "fit_detector",
    "flag_scores",
    "log1p_columns",
    "proxy_labels",
    "robust_centre_scale",
    "score",
    "score_table",
    "threshold_for",
    "user_features",
    "validate_features",
]
