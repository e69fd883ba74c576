"""The README's results tables, written as Markdown from a build's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base import schema


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


# Over all cases first (what a visitor experiences); covered-only figures after coverage.
METRIC_COLUMNS = {
    "top1_all": "top1_all (all cases)",
    "top3_all": "top3_all (all cases)",
    "mrr5": "MRR@5 (all cases)",
    "coverage": "coverage",
    "top1": "top1 (covered)",
    "top3": "top3 (covered)",
    "n_cases": "test cases",
}


# Shares in the dashboard's text, tables and charts: percentages with one decimal.
PCT_DIGITS = 1


def pct(x: float | None, digits: int = PCT_DIGITS) -> str:
    """A share as a percentage string ('–' when unknown)."""
    return "–" if x is None or pd.isna(x) else f"{100 * float(x):.{digits}f}%"


def _pp(value: float) -> str:
    """A share as a percentage with one decimal."""
    return f"{100 * value:.1f} %"


def serving_lines(serving: dict[str, Any]) -> list[str]:
    """The serving rule's validation comparison as Markdown lines (ranking_metrics.json serving_rule)."""
    val = pd.DataFrame(
        {"ranker": list(serving["validation_top1_all"]), "top1_all": list(serving["validation_top1_all"].values())}
    ).sort_values(["top1_all", "ranker"], ascending=[False, True])
    return [
        f"**Which ranker is served** (validation split: {serving['n_cases']:,} cases of "
        f"{serving['n_visitors']:,} visitors carved out of train; test is never used). A learned ranker "
        "is served only if it beats the best simple baseline (rule, recency, last category) in top1_all "
        f"with a paired visitor-bootstrap {serving['ci_level']:.0%} interval above zero. {serving['reason']}.",
        "",
        *markdown_table(val, {"ranker": "ranker", "top1_all": "validation top1_all (all cases)"}),
    ]


def ranker_story(metrics: pd.DataFrame, serving: dict[str, Any], served: str, out: Path) -> list[str]:
    """The ranking results in sentences, every figure read from this build's artifacts."""
    test = metrics[(metrics["split"] == "test") & (metrics["candidate_set"] == "history")].set_index("ranker")
    lines = [f"- Served: **{served}**. {serving['reason']}."]
    if {"rule", "recency", "last_category"} <= set(test.index):
        best = test.drop(index=["rule", "recency", "last_category"])["top1_all"]
        lines.append(
            f"- On the {int(test['n_cases'].iloc[0]):,} test cases, top1_all over all cases: the best learned "
            f"ranker {best.idxmax()} {best.max():.3f}, recency {test.at['recency', 'top1_all']:.3f}, the count + "
            f"recency rule {test.at['rule', 'top1_all']:.3f}, last category {test.at['last_category', 'top1_all']:.3f}; "
            f"the history holds the true category in {_pp(test.at['rule', 'coverage'])} of cases (coverage), "
            "so no history ranker can hit more."
        )
    honest = out / schema.EVALUATION_CSV
    if honest.exists():
        t = pd.read_csv(honest)
        t = t[(t["metric"] == "top1_all") & (t["average"] == "per case") & (t["ranker"] == "raw - recency")]
        for row in t[t["population"] == "all test visitors"].itertuples():
            lines.append(
                f"- Same population ({row.split} split, {row.n_cases:,} test cases): the learned ranker minus "
                f"recency in top1_all is {row.value:+.3f} (95% CI {row.ci_low:+.3f} to {row.ci_high:+.3f})."
            )
    return lines


def detector_story(out: Path, op: dict[str, Any], cleaning: dict[str, Any]) -> list[str]:
    """The detector results in sentences, every figure read from this build's artifacts."""
    quality = out / schema.DETECTOR_QUALITY_CSV
    if not quality.exists():
        return []
    q = pd.read_csv(quality).set_index("method")
    det = op.get("detector")
    if det not in q.index or "volume_rule" not in q.index:
        return []
    d, v = q.loc[det], q.loc["volume_rule"]
    detectors = q["pr_auc"].drop(index="volume_rule").dropna()
    if detectors.empty:  # no labelled bot among the users (a small or label-free log): no PR-AUC to compare
        quality_line = (
            f"- Detectors ({q['population'].iloc[0]}): no PR-AUC could be measured (no labelled bot among these "
            f"users); the served `{det}` flags {_pp(d['normal_buyers_flagged'])} of the labelled-normal buyers "
            f"(volume rule {_pp(v['normal_buyers_flagged'])})."
        )
    else:
        best = detectors.idxmax()
        quality_line = (
            f"- Detectors ({q['population'].iloc[0]}): the served `{det}` reaches PR-AUC {d['pr_auc']:.3f} against "
            f"{v['pr_auc']:.3f} for the volume rule; it flags {_pp(d['normal_buyers_flagged'])} of the "
            f"labelled-normal buyers (volume rule {_pp(v['normal_buyers_flagged'])}), and the users it flags hold "
            f"{_pp(d['txn_held_by_flagged'])} of the transactions (volume rule {_pp(v['txn_held_by_flagged'])}). "
            f"The best PR-AUC is `{best}`'s ({q.at[best, 'pr_auc']:.3f}), which flags "
            f"{_pp(q.at[best, 'normal_buyers_flagged'])} of normal buyers."
        )
    return [
        quality_line,
        f'- At the frozen operating point with the policy "{op.get("policy")}", cleaning removes '
        f"{_pp(cleaning['users_removed_share'])} of the users and {_pp(cleaning['events_removed_share'])} of "
        "the events.",
    ]


def results_markdown(out: Path) -> str:
    """The README's results tables, written from the artifacts of this build."""
    summary = json.loads((out / schema.DATASET_SUMMARY).read_text())
    metrics = pd.read_csv(out / schema.RANKING_METRICS_CSV)
    before_after = json.loads((out / schema.BEFORE_AFTER_JSON).read_text())
    op = json.loads((out / schema.OPERATING_POINT).read_text())
    cleaning = before_after["cleaning"]
    ranking_json = json.loads((out / schema.RANKING_METRICS_JSON).read_text())
    serving = ranking_json.get("serving_rule")
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
        *(serving_lines(serving) + [""] if serving else []),
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
    story = (ranker_story(metrics, serving, ranking_json["best"], out) if serving else []) + detector_story(
        out, op, cleaning
    )
    if story:
        lines += ["", "**What the numbers say** (written by the build from the tables above):", "", *story]
    return "\n".join(lines) + "\n"


def quality_meaning(by: pd.DataFrame, served: str) -> str:
    """What the detector comparison (detector quality rows by method) says about the served
    detector, from the numbers of this build.

    The detectors were chosen to spare buyers first (flagged users must not hold the shop's
    sales) and to rank bots well second, so a method with a higher PR-AUC can still lose.
    """
    me = by.loc[served]
    best = by["pr_auc"].idxmax()
    text = (
        f"The served detector, {served}, reaches PR-AUC {pct(me['pr_auc'])}"
        + (f" against {pct(by.loc['volume_rule', 'pr_auc'])} for the volume rule" if "volume_rule" in by.index else "")
        + f"; the users it flags hold {pct(me.get('txn_held_by_flagged'))} of the transactions and include "
        f"{pct(me.get('normal_buyers_flagged'))} of the normal buyers."
    )
    if best != served:
        other = by.loc[best]
        text += (
            f" {best} puts the bots first more often (PR-AUC {pct(other['pr_auc'])}) but its flagged users hold "
            f"{pct(other.get('txn_held_by_flagged'))} of the transactions and {pct(other.get('normal_buyers_flagged'))} "
            "of the normal buyers: the detectors are chosen to spare buyers first and to rank bots second, "
            "so a higher PR-AUC alone does not win."
        )
    return text
