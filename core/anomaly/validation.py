"""Which rows of a user-feature table can be scored, and plain messages about the rest."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError
from core.schema import COUNT_FEATURES, USER_FEATURES

# The detailed row_problems table is capped; counts in the messages stay exact.
MAX_PROBLEM_ROWS = 100_000


def check_share(share: Any) -> float:
    """share as a float strictly between 0 and 1, else DataError."""
    ok = isinstance(share, (int, float, np.integer, np.floating)) and not isinstance(share, bool)
    if not ok or not math.isfinite(float(share)) or not 0.0 < float(share) < 1.0:
        raise DataError(f"share must be a number strictly between 0 and 1, got {share!r}.")
    return float(share)


def numeric(s: pd.Series) -> np.ndarray:
    """A column as float64, non-numbers as NaN."""
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(np.float64)
    elif not pd.api.types.is_numeric_dtype(s):
        s = pd.to_numeric(s, errors="coerce")
    return s.to_numpy(np.float64, na_value=np.nan)


def _as_text(values: np.ndarray) -> np.ndarray:
    """Numbers as display strings: integral values without '.0' (visitor ids, counts)."""
    arr = np.asarray(values, np.float64)
    integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**53)
    as_int = np.where(integral, arr, 0).astype(np.int64).astype(str).astype(object)
    return np.where(integral, as_int, arr.astype(str).astype(object))


@dataclass
class FeatureValidation:
    """What is wrong with a feature table, per column and per row, and which rows can be scored."""

    n_rows: int
    missing_columns: list[str]
    extra_columns: list[str]
    row_problems: pd.DataFrame
    scorable: np.ndarray
    problem_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    first_examples: dict[tuple[str, str], str] = field(default_factory=dict)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when all required columns exist and no row has a problem."""
        return not self.missing_columns and not self.problem_counts

    @property
    def n_scorable(self) -> int:
        """Number of rows that can be scored."""
        return int(self.scorable.sum())

    def messages(self) -> list[str]:
        """Plain sentences: what is wrong, where, and how to fix it."""
        msgs: list[str] = []
        if self.missing_columns:
            msgs.append(
                f"Missing required column(s): {', '.join(self.missing_columns)}. Nothing can be "
                f"scored: the table needs visitorid and all 16 features "
                f"({', '.join(USER_FEATURES)}), e.g. as written by core.anomaly.user_features."
            )
        if self.extra_columns:
            msgs.append(
                f"Extra column(s) kept but not used for scoring: {', '.join(self.extra_columns)}."
            )
        for (col, kind), count in self.problem_counts.items():
            ex = self.first_examples.get((col, kind), "")
            ex = f" (first: {ex})" if ex else ""
            what, fix = _PROBLEM_TEXT[kind]
            msgs.append(f"Column '{col}': {count} row(s) {what}{ex}. {fix}")
        if self.truncated:
            msgs.append(
                f"Only the first {MAX_PROBLEM_ROWS} row problems are listed in detail; "
                "the counts above are complete."
            )
        if self.n_rows and not self.missing_columns:
            n_bad = self.n_rows - self.n_scorable
            if n_bad:
                msgs.append(
                    f"{n_bad} of {self.n_rows} row(s) cannot be scored: they get no anomaly score "
                    "and are never flagged."
                )
        return msgs


_PROBLEM_TEXT: dict[str, tuple[str, str]] = {
    "non_numeric": (
        "are not numbers",
        "Replace them with numeric values; these rows are not scored.",
    ),
    "nan": ("are empty (NaN)", "Fill them in; these rows are not scored."),
    "inf": ("are infinite", "Replace them with finite values; these rows are not scored."),
    "negative": (
        "are negative",
        "Every feature is non-negative by definition; fix the values; these rows are not scored.",
    ),
    "duplicate": (
        "repeat a visitorid seen in an earlier row",
        "Keep one row per visitor; duplicates are still scored, each on its own.",
    ),
    "bad_id": (
        "have no usable visitorid",
        "Give every row a numeric visitorid; the features are still scored.",
    ),
}


def validate_features(df: pd.DataFrame) -> FeatureValidation:
    """Check a feature table (visitorid + 16 features) and mark the rows that can be scored."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of user features, got {type(df).__name__}.")
    n = len(df)
    required = ("visitorid",) + tuple(USER_FEATURES)
    cols = [str(c) for c in df.columns]
    missing = [c for c in required if c not in cols]
    extra = [c for c in cols if c not in required]
    scorable = np.zeros(n, bool) if missing else np.ones(n, bool)
    counts: dict[tuple[str, str], int] = {}
    examples: dict[tuple[str, str], str] = {}
    parts: list[pd.DataFrame] = []
    has_vis = "visitorid" in df.columns
    vis_raw = df["visitorid"] if has_vis else None
    if has_vis and isinstance(vis_raw, pd.DataFrame):  # duplicated column names
        vis_raw = vis_raw.iloc[:, 0]

    def add(col: str, kind: str, pos: np.ndarray, describe: Any) -> None:
        """Count the problem rows; describe (a string, or a function of the kept positions)
        is only evaluated on the first MAX_PROBLEM_ROWS of them."""
        if pos.size == 0:
            return
        counts[(col, kind)] = counts.get((col, kind), 0) + int(pos.size)
        keep = pos[:MAX_PROBLEM_ROWS]
        if isinstance(describe, str):
            text = np.full(keep.size, describe, dtype=object)
        else:
            text = np.asarray(describe(keep), dtype=object)
        examples.setdefault((col, kind), f"row {int(keep[0])}, {text[0]}")
        parts.append(
            pd.DataFrame(
                {
                    "row": keep.astype(np.int64),
                    "visitorid": (
                        vis_raw.iloc[keep].to_numpy(object) if vis_raw is not None else None
                    ),
                    "column": col,
                    "problem": text,
                }
            )
        )

    for col in USER_FEATURES:
        if col not in df.columns:
            continue
        raw = df[col]
        if isinstance(raw, pd.DataFrame):
            raw = raw.iloc[:, 0]
        vals = numeric(raw)
        finite = np.isfinite(vals)
        nan = np.isnan(vals)
        if nan.any():
            # NaN after coercion: either really missing, or text that is not a number.
            isna = raw.isna().to_numpy()
            add(
                col,
                "non_numeric",
                np.flatnonzero(nan & ~isna),
                lambda k, raw=raw: "not a number: '" + raw.iloc[k].astype(str) + "'",
            )
            add(col, "nan", np.flatnonzero(nan & isna), "NaN")
        add(
            col,
            "inf",
            np.flatnonzero(np.isinf(vals)),
            lambda k, vals=vals: np.where(vals[k] > 0, "inf", "-inf"),
        )
        label = "negative count " if col in COUNT_FEATURES else "negative value "
        add(
            col,
            "negative",
            np.flatnonzero(finite & (vals < 0)),
            lambda k, vals=vals, label=label: label + _as_text(vals[k]),
        )
        scorable &= finite & (vals >= 0)
    if vis_raw is not None and n:
        vnum = pd.to_numeric(vis_raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        def bad_id_text(k: np.ndarray) -> np.ndarray:
            bad_raw = vis_raw.iloc[k]
            return np.where(bad_raw.isna(), "NaN", "not a number: '" + bad_raw.astype(str) + "'")

        add("visitorid", "bad_id", np.flatnonzero(~np.isfinite(vnum)), bad_id_text)
        codes, _ = pd.factorize(vis_raw, use_na_sentinel=True)
        valid = codes >= 0
        dup = pd.Series(codes).duplicated(keep="first").to_numpy() & valid
        if dup.any():
            firsts = np.flatnonzero(valid & ~dup)  # factorize numbers codes by first appearance

            def dup_text(k: np.ndarray) -> np.ndarray:
                shown = (
                    _as_text(vnum[k])
                    if pd.api.types.is_numeric_dtype(vis_raw)
                    else vis_raw.iloc[k].astype(str).to_numpy(object)
                )
                also = " (also row " + firsts[codes[k]].astype(str).astype(object) + ")"
                return "duplicate visitorid " + shown + also

            add("visitorid", "duplicate", np.flatnonzero(dup), dup_text)
    if parts:
        problems = pd.concat(parts, ignore_index=True)
        problems = problems.sort_values("row", kind="stable", ignore_index=True)
    else:
        problems = pd.DataFrame(
            {
                "row": np.empty(0, np.int64),
                "visitorid": np.empty(0, object),
                "column": np.empty(0, object),
                "problem": np.empty(0, object),
            }
        )
    truncated = len(problems) > MAX_PROBLEM_ROWS
    if truncated:
        problems = problems.iloc[:MAX_PROBLEM_ROWS].reset_index(drop=True)
    return FeatureValidation(
        n_rows=n,
        missing_columns=missing,
        extra_columns=extra,
        row_problems=problems,
        scorable=scorable,
        problem_counts=counts,
        first_examples=examples,
        truncated=truncated or sum(counts.values()) > MAX_PROBLEM_ROWS,
    )
