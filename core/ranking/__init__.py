"""Task 1: next-category ranking. The public names of the package's modules, in one place.

cases: the case/history rule; candidates: the 7 contract features; markov: the transition
extension; models: rankers; metrics: outcomes and metrics; split: rare labels and the visitor
split; train: train_and_evaluate; serve: validate_views and rank.
"""

from core.ranking.candidates import CANDIDATE_COLUMNS, build_candidates, candidate_arrays, prepare_cases
from core.ranking.cases import (
    cap_by_case,
    case_codes,
    case_table,
    case_times,
    final_histories,
    has_history,
    history_before,
    history_lengths,
    pick_visitor,
    sorted_views,
    tail_streaks,
    view_order,
    view_sequences,
)
from core.ranking.markov import (
    MARKOV_FOLDS,
    MarkovModel,
    add_markov,
    cross_fit_markov,
    fit_markov,
    markov_arrays,
    transition_pairs,
)
from core.ranking.metrics import (
    case_outcomes,
    case_ranks_by_score,
    markov_only_outcomes,
    order_within_cases,
    ranking_metrics,
    rates,
)
from core.ranking.models import (
    LEARNED_RANKERS,
    PARALLEL_MIN_ROWS,
    TRAIN_ROW_CAPS,
    RankingModel,
    fit_ranker,
    make_estimator,
    rule_scores,
    with_n_jobs,
)
from core.ranking.serve import MAX_VIEWS, VIEW_COLUMNS, CheckedViews, RankResult, rank, validate_views
from core.ranking.split import drop_rare_labels, split_by_visitor, visitor_split
from core.ranking.train import DATASET_SAMPLE_ROWS, RANKERS, Task1Result, train_and_evaluate
from core.schema import LOOKBACK, WINDOW_MS

__all__ = [
    "CANDIDATE_COLUMNS",
    "DATASET_SAMPLE_ROWS",
    "LEARNED_RANKERS",
    "LOOKBACK",
    "MARKOV_FOLDS",
    "MAX_VIEWS",
    "PARALLEL_MIN_ROWS",
    "RANKERS",
    "TRAIN_ROW_CAPS",
    "VIEW_COLUMNS",
    "WINDOW_MS",
    "CheckedViews",
    "MarkovModel",
    "RankResult",
    "RankingModel",
    "Task1Result",
    "add_markov",
    "build_candidates",
    "candidate_arrays",
    "cap_by_case",
    "case_codes",
    "case_outcomes",
    "case_ranks_by_score",
    "case_table",
    "case_times",
    "cross_fit_markov",
    "drop_rare_labels",
    "final_histories",
    "fit_markov",
    "fit_ranker",
    "has_history",
    "history_before",
    "history_lengths",
    "make_estimator",
    "markov_arrays",
    "markov_only_outcomes",
    "order_within_cases",
    "pick_visitor",
    "prepare_cases",
    "rank",
    "ranking_metrics",
    "rates",
    "rule_scores",
    "sorted_views",
    "split_by_visitor",
    "tail_streaks",
    "train_and_evaluate",
    "transition_pairs",
    "validate_views",
    "view_order",
    "view_sequences",
    "visitor_split",
    "with_n_jobs",
]
