"""Honest evaluation: same-population and temporal splits, switch-only cases, Markov candidates
and detector quality, each figure captioned with its population (docs/EVALUATION.md).

Every comparison is made on one fixed set of test cases (same case ids), and figures carry
visitor-level bootstrap confidence intervals (core.stats). splits: the group and temporal
splits; rankers: the compared learner and Markov candidates; tables: metric rows; detectors:
Task 2 detector quality; run: honest_evaluation, write_all and write_reports.
"""

from core.evaluation.detectors import (
    DETECTOR_FIT_CAP,
    STABILITY_SEEDS,
    STABILITY_USER_CAP,
    detection_stats,
    detector_quality,
    fit_and_flag,
    quality_table,
    stability,
)
from core.evaluation.rankers import (
    EVAL_THREADS,
    EVAL_TRAIN_ROW_CAP,
    LEARNER,
    MARKOV_TOP10_MAX_EVENTS,
    MARKOV_TOP_NS,
    fit_learned,
    markov_candidates,
    markov_top_ns_for,
    model_scores,
    train_sample,
)
from core.evaluation.run import (
    DEFINITIONS,
    EVAL_RANKERS,
    REPORT_DECIMALS,
    evaluate_split,
    honest_evaluation,
    write_all,
    write_reports,
)
from core.evaluation.splits import (
    MS_PER_DAY,
    TEST_DAYS,
    SplitSpec,
    group_split_spec,
    prepared_cases,
    switch_case_ids,
    switch_only,
    temporal_cutoff,
    temporal_split,
    temporal_split_spec,
)
from core.evaluation.tables import (
    CSV_COLUMNS,
    MARKOV_CSV_COLUMNS,
    METRIC_PARTS,
    METRICS,
    POPULATION_KEYS,
    flat_table,
    headline,
    metric_rows,
    metric_rows_multi,
)
from core.schema import (
    DETECTOR_QUALITY_CSV,
    DETECTOR_QUALITY_JSON,
    EVALUATION_CSV,
    EVALUATION_JSON,
    MARKOV_CANDIDATES_CSV,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFINITIONS",
    "DETECTOR_FIT_CAP",
    "DETECTOR_QUALITY_CSV",
    "DETECTOR_QUALITY_JSON",
    "EVALUATION_CSV",
    "EVALUATION_JSON",
    "EVAL_RANKERS",
    "EVAL_THREADS",
    "EVAL_TRAIN_ROW_CAP",
    "LEARNER",
    "MARKOV_CANDIDATES_CSV",
    "MARKOV_CSV_COLUMNS",
    "MARKOV_TOP10_MAX_EVENTS",
    "MARKOV_TOP_NS",
    "METRICS",
    "METRIC_PARTS",
    "MS_PER_DAY",
    "POPULATION_KEYS",
    "REPORT_DECIMALS",
    "STABILITY_SEEDS",
    "STABILITY_USER_CAP",
    "TEST_DAYS",
    "SplitSpec",
    "detection_stats",
    "detector_quality",
    "evaluate_split",
    "fit_and_flag",
    "fit_learned",
    "flat_table",
    "group_split_spec",
    "headline",
    "honest_evaluation",
    "markov_candidates",
    "markov_top_ns_for",
    "metric_rows",
    "metric_rows_multi",
    "model_scores",
    "prepared_cases",
    "quality_table",
    "stability",
    "switch_case_ids",
    "switch_only",
    "temporal_cutoff",
    "temporal_split",
    "temporal_split_spec",
    "train_sample",
    "write_all",
    "write_reports",
]
