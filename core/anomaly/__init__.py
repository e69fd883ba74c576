"""Task 2: per-visitor behaviour features, the bot detectors, validation, scoring and audits.

``features`` computes the 16 user features of docs/DATA_CONTRACT.md; ``validation`` says which
feature rows can be scored; ``behaviour`` derives the one-sided bot-ward columns; ``detector``
holds the scikit-learn-style estimators and their registry; ``scoring`` scores tables with a
detector passed in; ``policy`` is the "keep visitors who bought" rule and the cost of cleaning;
``quality`` judges detectors against labels; ``audit`` holds proxy labels, operating-point audits
and cleaning. Nothing in this package reads or writes files: ``core.store.artifacts`` loads detectors.
"""

from core.anomaly.audit import (
    DEFAULT_AUDIT_SHARES,
    audit_table,
    clean_events,
    cleaning_report,
    proxy_labels,
)
from core.anomaly.behaviour import BEHAVIOUR_COLUMNS, behaviour_matrix
from core.anomaly.detector import (
    DEFAULT_BUYER_MARGIN,
    DEFAULT_DETECTOR,
    DETECTOR_FIT_CAP,
    DETECTORS,
    SCORE_DEFINITION,
    Detector,
    ECODDetector,
    HBOSDetector,
    IsolationForestDetector,
    RobustZDetector,
    detector_file,
    fit_detector,
    fit_sample,
    make_detector,
    why,
)
from core.anomaly.drift import (
    DRIFT_BINS,
    DRIFT_PSI,
    MIN_DRIFT_ROWS,
    MODERATE_PSI,
    PSI_FLOOR,
    DriftReference,
    drift_reference,
    drift_report,
    drift_sentence,
    frozen_share,
)
from core.anomaly.evidence import GAP_LABELS, Evidence, visitor_evidence
from core.anomaly.features import user_features
from core.anomaly.labels import (
    BOOTSTRAP_RESAMPLES,
    label_cost,
    label_metrics,
    match_labels,
    pr_curve,
    read_labels,
)
from core.anomaly.policy import (
    COST_COLUMNS,
    DEFAULT_PROTECT_BUYERS,
    DEFAULT_SHARES,
    POLICY_NAME,
    TXN_WARNING_SHARE,
    apply_policy,
    cleaning_cost,
    cost_sentence,
    policy_label,
)
from core.anomaly.quality import detector_report
from core.anomaly.scoring import (
    SCORE_CHUNK_ROWS,
    explain,
    flag_scores,
    flags_and_threshold,
    provenance,
    score,
    score_rows,
    score_table,
    stamped,
    threshold_for,
)
from core.anomaly.validation import MAX_PROBLEM_ROWS, FeatureValidation, validate_features
from core.base.distinct import distinct_rows
from core.base.schema import COUNT_FEATURES, USER_FEATURES

__all__ = [
    "BEHAVIOUR_COLUMNS",
    "BOOTSTRAP_RESAMPLES",
    "COST_COLUMNS",
    "COUNT_FEATURES",
    "DEFAULT_AUDIT_SHARES",
    "DEFAULT_BUYER_MARGIN",
    "DEFAULT_DETECTOR",
    "DEFAULT_PROTECT_BUYERS",
    "DEFAULT_SHARES",
    "DETECTORS",
    "DETECTOR_FIT_CAP",
    "DRIFT_BINS",
    "DRIFT_PSI",
    "GAP_LABELS",
    "MAX_PROBLEM_ROWS",
    "MIN_DRIFT_ROWS",
    "MODERATE_PSI",
    "POLICY_NAME",
    "PSI_FLOOR",
    "SCORE_CHUNK_ROWS",
    "SCORE_DEFINITION",
    "TXN_WARNING_SHARE",
    "USER_FEATURES",
    "Detector",
    "DriftReference",
    "ECODDetector",
    "Evidence",
    "FeatureValidation",
    "HBOSDetector",
    "IsolationForestDetector",
    "RobustZDetector",
    "apply_policy",
    "audit_table",
    "behaviour_matrix",
    "clean_events",
    "cleaning_cost",
    "cleaning_report",
    "cost_sentence",
    "detector_file",
    "detector_report",
    "distinct_rows",
    "drift_reference",
    "drift_report",
    "drift_sentence",
    "explain",
    "fit_detector",
    "fit_sample",
    "flag_scores",
    "flags_and_threshold",
    "frozen_share",
    "label_cost",
    "label_metrics",
    "make_detector",
    "match_labels",
    "policy_label",
    "pr_curve",
    "provenance",
    "proxy_labels",
    "read_labels",
    "score",
    "score_rows",
    "score_table",
    "stamped",
    "threshold_for",
    "user_features",
    "validate_features",
    "visitor_evidence",
    "why",
]
