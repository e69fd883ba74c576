"""Honest evaluation: same-population and temporal splits, switch-only cases, Markov candidates
and detector quality, each figure captioned with its population (docs/EVALUATION.md).

Every comparison is made on one fixed set of test cases (same case ids), and figures carry
visitor-level bootstrap confidence intervals (core.base.stats). splits: the group and temporal
splits; rankers: the compared learner and Markov candidates; tables: metric rows; detectors:
Task 2 detector quality; run: honest_evaluation, write_all and write_reports.
"""
