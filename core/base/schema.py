"""Constants of the data contract (docs/DATA_CONTRACT.md) and the artifact file names, in one place."""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "addtocart", "transaction")
RAW_EVENT_COLUMNS: tuple[str, ...] = ("timestamp", "visitorid", "event", "itemid", "transactionid")
EVENT_COLUMNS: tuple[str, ...] = RAW_EVENT_COLUMNS + ("categoryid",)
ITEM_PROPERTY_COLUMNS: tuple[str, ...] = ("timestamp", "itemid", "property", "value")
CATEGORY_TREE_COLUMNS: tuple[str, ...] = ("categoryid", "parentid")
ITEM_PROPERTY_FILES: tuple[str, ...] = ("item_properties_part1.csv", "item_properties_part2.csv")

UNKNOWN_CATEGORY = -1
# Bounds of timestamps and ids, one rule for the dashboard's validators and the API's models.
MIN_TIMESTAMP_MS = 0  # 1970-01-01T00:00:00Z
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
# Item and category ids in API bodies are capped at 2**53 - 1: the largest integer float64 and a
# JSON client (and the float-valued OpenAPI maximum) hold exactly.
MAX_ID = 2**53 - 1
# A visitorid is any integer within int64 (the data contract), on the page and in the API alike:
# real logs hash visitors into the whole range, negative values included.
MIN_VISITOR_ID = -(2**63)
MAX_VISITOR_ID = 2**63 - 1
# Time units of the millisecond timestamps, named once.
MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
WINDOW_MS = MS_PER_DAY  # the history window: views of the last 24 h
LOOKBACK = 100
MIN_LABEL_COUNT = 5
TEST_SIZE = 0.2
DEFAULT_SEED = 42
DEFAULT_SHARE = 0.04
# How a build from the generator names its data source; the dashboard reads it to say "synthetic".
SYNTHETIC_SOURCE = "demo generator"
# The detector the build serves unless told otherwise (core.anomaly.detector.DETECTORS names them all).
DEFAULT_DETECTOR = "isolation_forest"
SHORT_GAP_S = 5.0
SESSION_GAP_S = 1800.0
NIGHT_HOURS = (0, 6)

CANDIDATE_FEATURES: tuple[str, ...] = (
    "cnt",
    "share",
    "is_last",
    "last_gap_min",
    "pos_from_end",
    "tail_streak_if_last",
    "n_views",
)
MARKOV_FEATURE = "markov_prob"
# The ranking metrics of every metrics table: coverage, top1/top3 over covered cases, and
# top1_all/top3_all over all cases (docs/DATA_CONTRACT.md).
METRICS: tuple[str, ...] = ("coverage", "top1", "top3", "top1_all", "top3_all")
# The order they are shown in: over all test cases first (what a visitor experiences), then
# coverage and the covered-only figures.
METRIC_ORDER: tuple[str, ...] = ("top1_all", "top3_all", "coverage", "top1", "top3")
# The columns of a history of views, as the ranking page and /rank take them.
VIEW_COLUMNS: tuple[str, ...] = ("timestamp", "categoryid", "itemid")

USER_FEATURES: tuple[str, ...] = (
    "events",
    "view",
    "addtocart",
    "transaction",
    "uniq_items",
    "uniq_cats",
    "cat_entropy",
    "events_per_active_day",
    "add_to_view_rate",
    "txn_to_cart_rate",
    "night_share",
    "p95_gap_s",
    "short_gap_share",
    "n_sessions",
    "sessions_per_day",
    "uniq_item_ratio",
)
# Features that are counts: non-negative and heavy-tailed, so the detector sees log1p of them.
COUNT_FEATURES: tuple[str, ...] = (
    "events",
    "view",
    "addtocart",
    "transaction",
    "uniq_items",
    "uniq_cats",
    "n_sessions",
)
# Every user feature is non-negative by definition; negative values are a data error.
NON_NEGATIVE_FEATURES: tuple[str, ...] = USER_FEATURES


# --------------------------------------------------------------------------- artifact file names
# Every file the build writes into the artifact directory, named once here.
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"  # HMAC-SHA256 of manifest.json, written when a key is set
MODEL_SUFFIX = ".skops"  # models are stored with skops: loading never runs pickle code
RESULTS_MD = "RESULTS.md"
RANKING_MODEL_PREFIX = "task1_ranking_best_"
RANKING_DATASET = "task1_ranking_dataset.parquet"
RANKING_METRICS_JSON = "task1_metrics.json"
RANKING_METRICS_CSV = "task1_metrics.csv"
DETECTOR_PREFIX = "task2_detector_"  # + detector name + MODEL_SUFFIX: the build saves every detector
DETECTOR = f"{DETECTOR_PREFIX}{DEFAULT_DETECTOR}" + MODEL_SUFFIX  # the default detector's file
CLEANING_COST_CSV = "task2_cleaning_cost.csv"
OPERATING_POINT = "task2_operating_point.json"
USER_FEATURES_FILE = "task2_user_features.parquet"
SCORED_USERS = "task2_scored_users.parquet"
AUDIT_CSV = "task2_audit.csv"
DETECTOR_QUALITY_JSON = "task2_detector_quality.json"
CLEAN_EVENTS = "events_clean_q04.parquet"
BEFORE_AFTER_CSV = "task1_before_after_cleaning.csv"
BEFORE_AFTER_JSON = "task1_before_after_cleaning.json"
DATASET_SUMMARY = "dataset_summary.json"
DAILY_ACTIVITY = "daily_activity.csv"
CATEGORY_TREE = "category_tree.csv"  # categoryid,parentid: written when the data has a tree
REALISM_REPORT = "realism_report.json"
EVALUATION_JSON = "task1_honest_evaluation.json"
EVALUATION_CSV = "task1_honest_evaluation.csv"
MARKOV_CANDIDATES_CSV = "task1_markov_candidates.csv"
DETECTOR_QUALITY_CSV = "task2_detector_quality.csv"
# Per-feature bins and training shares for the drift check of a batch (core.anomaly.drift).
DRIFT_REFERENCE = "task2_drift_reference.json"
# --------------------------------------------------------------------------- end of artifact file names
