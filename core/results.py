"""The README's results tables, written as Markdown from a build's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import artifacts, schema


def _cell(value: Any) -> str:
    """One Markdown table cell: floats to 3 decimals, ints with thousands separators."""
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{value:.3f}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return str(value)


def markdown_table(frame: pd.DataFrame, columns: dict[str, str]) -> list[str]:
    """Lines of a Markdown table of ``frame``'s columns (keys) under the given headers (values)."""
    cells = frame[list(columns)].astype(object).map(_cell)
    header = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "---|" * len(columns)
    return [header, rule, *("| " + cells.agg(" | ".join, axis=1) + " |")]


METRIC_COLUMNS = {
    "coverage": "coverage",
    "top1": "top1",
    "top3": "top3",
    "top1_all": "top1_all",
    "top3_all": "top3_all",
    "n_cases": "test cases",
}


def results_markdown(out: Path) -> str:
    """The README's results tables, written from the artifacts of this build."""
    summary = json.loads((out / artifacts.DATASET_SUMMARY).read_text())
    metrics = pd.read_csv(out / artifacts.RANKING_METRICS_CSV)
    before_after = json.loads((out / artifacts.BEFORE_AFTER_JSON).read_text())
    op = json.loads((out / artifacts.OPERATING_POINT).read_text())
    cleaning = before_after["cleaning"]
    lines = [
        f"Data: {summary['source']}: {summary['events']:,} events, {summary['visitors']:,} visitors, "
        f"{summary['items']:,} items, {summary['categories']:,} categories.",
        "",
        "**Task 1, every ranker on the test cases** (test visitors = 20% of the visitors of the raw "
        "events, split by visitor; the served model was chosen on a validation split of train):",
        "",
        *markdown_table(
            metrics[metrics["split"] == "test"], {"candidate_set": "candidates", "ranker": "ranker", **METRIC_COLUMNS}
        ),
        "",
        f"**Task 2, operating point**: detector `{op.get('detector')}`, flag the top {op['share']:.0%} "
        f"of users by anomaly score (threshold {op['threshold']:.4f} on {op['n_users']:,} users), "
        f"policy: {op.get('policy')}. Cleaning removed "
        f"{cleaning['users_removed']:,} users ({cleaning['users_removed_share']:.1%}) and "
        f"{cleaning['events_removed']:,} events ({cleaning['events_removed_share']:.1%}).",
        "",
        "**Raw vs cleaned runs** (each run splits its own events: two different test populations, "
        "so the difference is not a gain):",
        "",
        *markdown_table(
            pd.DataFrame(before_after["runs"]),
            {"run": "run", "population": "population", "ranker": "ranker", **METRIC_COLUMNS},
        ),
    ]
    honest = out / schema.EVALUATION_CSV
    if honest.exists():
        table = pd.read_csv(honest)
        table = table[(table["metric"] == "top1_all") & (table["average"] == "per case")].copy()
        table["ci"] = "[" + table["ci_low"].map(_cell) + ", " + table["ci_high"].map(_cell) + "]"
        lines += [
            "",
            "**Same population** (one fixed test set; detector fitted on training visitors "
            "only; top1_all per case with a visitor-bootstrap 95% CI):",
            "",
            *markdown_table(
                table,
                {
                    "split": "split",
                    "ranker": "ranker",
                    "population": "population",
                    "value": "top1_all",
                    "ci": "95% CI",
                    "n_cases": "cases",
                    "n_visitors": "visitors",
                },
            ),
        ]
    markov = out / schema.MARKOV_CANDIDATES_CSV
    if markov.exists():
        lines += [
            "",
            "**Candidate sets on the same test cases**:",
            "",
            *markdown_table(
                pd.read_csv(markov),
                {
                    "split": "split",
                    "candidate_set": "candidates",
                    "coverage": "coverage",
                    "top1_all": "top1_all",
                    "top3_all": "top3_all",
                    "n_cases": "cases",
                },
            ),
        ]
    cost = out / schema.CLEANING_COST_CSV
    if cost.exists():
        table = pd.read_csv(cost)
        table = table[
            (table["detector"] == op.get("detector")) & (table["protect_buyers"] == bool(op.get("protect_buyers")))
        ]
        table = table[table["point"].isin(["1%", "2%", "4%", "5%", "10%", "15%", "20%", "frozen"])].copy()
        table["txn_warning"] = np.where(table["txn_warning"].astype(bool), "yes", "no")
        lines += [
            "",
            f"**What cleaning removes** (every visitor of the events, detector `{op.get('detector')}`, "
            f'policy: {op.get("policy")}; "frozen" = the operating point\'s threshold):',
            "",
            *markdown_table(
                table,
                {
                    "point": "share",
                    "users_removed_share": "users",
                    "events_removed_share": "events",
                    "view_removed_share": "views",
                    "addtocart_removed_share": "add-to-carts",
                    "transaction_removed_share": "transactions",
                    "buyers_removed_share": "buyers",
                    "txn_warning": "> 5% of transactions",
                },
            ),
        ]
    quality = out / schema.DETECTOR_QUALITY_CSV
    if quality.exists():
        table = pd.read_csv(quality)
        columns = {
            "method": "method",
            "pr_auc": "PR-AUC",
            "precision": "precision",
            "recall": "recall",
            **{c: c.replace("recall_", "recall ") for c in table.columns if c.startswith("recall_")},
            "normal_buyers_flagged": "normal buyers flagged",
            "txn_held_by_flagged": "transactions held by flagged",
            "jaccard_with_volume_rule": "Jaccard with volume rule",
        }
        lines += [
            "",
            f"**Detector quality** ({table['population'].iloc[0]}):",
            "",
            *markdown_table(table, {k: v for k, v in columns.items() if k in table.columns}),
        ]
    return "\n".join(lines) + "\n"
