"""Which rows of a user-feature table can be scored: every rule of the data contract's "Valid
feature rows", checked column-wise, with plain messages naming the column, the lines and the fix.

Row numbers are reported two ways: ``row`` is the 0-based position (for code and the API) and
``line`` the spreadsheet line of the row in a file with a header (header = line 1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import DataError
from core.base.schema import COUNT_FEATURES, USER_FEATURES

# The detailed row_problems table is capped; counts in the messages stay exact.
MAX_PROBLEM_ROWS = 100_000
LINES_NAMED = 5  # lines listed per problem in a message
REL_TOL = 1e-9  # equalities hold within this relative difference; bounds allow this rounding
HEADER_LINES = 1
INT64_LIMIT = 2.0**63
INT64_MAX = 2**63 - 1
# Tables up to this many rows are read into numpy in one step (small_numeric_columns).
SMALL_TABLE_ROWS = 10_000


def check_share(share: Any) -> float:
    """share as a float strictly between 0 and 1, else DataError."""
    ok = isinstance(share, (int, float, np.integer, np.floating)) and not isinstance(share, bool)
    if not ok or not math.isfinite(float(share)) or not 0.0 < float(share) < 1.0:
        raise DataError(f"share must be a number strictly between 0 and 1, got {share!r}.")
    return float(share)


def _column(df: pd.DataFrame, col: str) -> pd.Series:
    """One column, the first one when the name is repeated."""
    raw = df[col]
    return raw.iloc[:, 0] if isinstance(raw, pd.DataFrame) else raw


def _not_a_number_type(s: pd.Series) -> bool:
    """Booleans, dates and durations are not numbers, whatever numpy can cast them to."""
    return (
        pd.api.types.is_bool_dtype(s) or pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s)
    )


def _numpy_number(s: pd.Series) -> str:
    """The numpy kind ("i", "u" or "f") of a plain numpy number column, else "".

    Such a column needs none of pandas' missing-value or type checks (each costs ~50 µs,
    most of a small API request's validation): it holds no NA marks, only NaN in floats.
    """
    kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else ""
    return kind if kind in ("i", "u", "f") else ""


def numeric(s: pd.Series) -> np.ndarray:
    """A column as float64 (a new array); text, booleans, dates and durations as NaN."""
    if _numpy_number(s):
        return np.array(s.to_numpy(), np.float64)
    if _not_a_number_type(s):
        return np.full(len(s), np.nan)
    if not pd.api.types.is_numeric_dtype(s):
        s = pd.to_numeric(s, errors="coerce")
    return s.to_numpy(np.float64, na_value=np.nan)


@dataclass(frozen=True)
class FeatureMatrix:
    """A feature table already in numpy: every row's visitorid and its 16 features as one float64
    matrix (columns in USER_FEATURES order, column-major).

    What a small table is validated and scored as (``small_feature_matrix``), and what the API
    builds from a request directly: each pandas column lookup costs about as much as checking the
    column, so a table of a few rows is read once instead.
    """

    visitorid: np.ndarray  # any numpy integer or float dtype
    values: np.ndarray  # (n, 16) float64

    def __post_init__(self) -> None:
        """Refuse arrays of the wrong shape or type (a wrong matrix would be scored as if right)."""
        shape, n_ids = self.values.shape, len(self.visitorid)
        if self.values.dtype != np.float64 or shape != (n_ids, len(USER_FEATURES)) or self.visitorid.ndim != 1:
            raise DataError(f"A FeatureMatrix needs {n_ids} ids and an ({n_ids}, 16) float64 matrix, got {shape}.")
        if self.visitorid.dtype.kind not in "iuf":
            raise DataError(f"A FeatureMatrix's visitor ids must be numbers, got {self.visitorid.dtype}.")

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.values)

    def __getitem__(self, name: str) -> np.ndarray:
        """One column by name, as numpy."""
        return self.visitorid if name == "visitorid" else self.values[:, _FEATURE_POS[name]]

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame: visitorid and the 16 features."""
        return pd.DataFrame({"visitorid": self.visitorid, **dict(zip(USER_FEATURES, self.values.T))})


_FEATURE_POS = {f: j for j, f in enumerate(USER_FEATURES)}
_REQUIRED = ("visitorid", *USER_FEATURES)
_COUNT_POS = np.array([_FEATURE_POS[c] for c in COUNT_FEATURES], np.int64)


def small_feature_matrix(df: pd.DataFrame) -> FeatureMatrix | None:
    """A small table of plain numpy numbers with every required column as a FeatureMatrix (one
    pandas call instead of one per column); None for any other table."""
    if len(df) > SMALL_TABLE_ROWS or not df.columns.is_unique:
        return None
    pos = df.columns.get_indexer(_REQUIRED)
    if (pos < 0).any() or not all(isinstance(t, np.dtype) and t.kind in "iuf" for t in df.dtypes):
        return None
    values = np.asfortranarray(df.to_numpy(np.float64)[:, pos[1:]])
    return FeatureMatrix(df.iloc[:, pos[0]].to_numpy(), values)


def line_numbers(rows: np.ndarray) -> np.ndarray:
    """Spreadsheet line numbers of 0-based data rows (the header is line 1)."""
    return np.asarray(rows, np.int64) + 1 + HEADER_LINES


def _as_text(values: np.ndarray) -> np.ndarray:
    """Numbers as display strings: integral values without '.0' (visitor ids, counts)."""
    arr = np.asarray(values, np.float64)
    integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**53)
    as_int = np.where(integral, arr, 0).astype(np.int64).astype(str).astype(object)
    return np.where(integral, as_int, arr.astype(str).astype(object))


def _tol(bound: np.ndarray) -> np.ndarray:
    """Rounding allowed at a bound: REL_TOL relative, at least REL_TOL absolute."""
    return REL_TOL * np.maximum(np.abs(bound), 1.0)


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a == b within REL_TOL relative (exact when both are 0)."""
    return np.abs(a - b) <= REL_TOL * np.maximum(np.abs(a), np.abs(b))


# kind -> (what the rows break, how to fix them). Every kind except "duplicate" makes a row unscorable.
_PROBLEM_TEXT: dict[str, tuple[str, str]] = {
    "non_numeric": ("are not numbers", "Replace them with numbers."),
    "nan": ("are empty or a missing-value mark (NA, n/a, null)", "Fill them in."),
    "inf": ("are infinite", "Replace them with finite values."),
    "negative": ("are negative", "Every feature is non-negative by definition; fix the values."),
    "not_integer": ("are not whole numbers", "Counts are integers; recompute them from the events."),
    "bad_id": (
        "are not an integer visitorid within int64",
        "Give every row its integer visitorid (the API accepts the same ids).",
    ),
    "duplicate": (
        "repeat a visitorid seen in an earlier row",
        "Keep one row per visitor; duplicates are still scored, each on its own.",
    ),
    "events_min": ("have events < 1", "A visitor in the table has at least one event."),
    "event_sum": (
        "have view + addtocart + transaction != events",
        "events counts every event of the three types; recompute it.",
    ),
    "uniq_items_range": ("are outside 1 <= uniq_items <= events", "Recompute uniq_items from the events."),
    "uniq_cats_range": ("are outside 0 <= uniq_cats <= events", "Recompute uniq_cats from the events."),
    "n_sessions_range": ("are outside 1 <= n_sessions <= events", "Recompute n_sessions from the gaps."),
    "uniq_item_ratio_eq": ("differ from uniq_items / events", "Set uniq_item_ratio = uniq_items / events."),
    "share_range": ("are outside [0, 1]", "A share lies between 0 and 1; recompute it."),
    "add_rate_eq": ("differ from addtocart / max(view, 1)", "Set add_to_view_rate = addtocart / max(view, 1)."),
    "txn_rate_eq": (
        "differ from transaction / max(addtocart, 1)",
        "Set txn_to_cart_rate = transaction / max(addtocart, 1).",
    ),
    "epad_range": (
        "are outside 1 <= events_per_active_day <= events",
        "events_per_active_day = events / active days; recompute it.",
    ),
    "spd_range": (
        "are outside 0 < sessions_per_day <= n_sessions",
        "sessions_per_day = n_sessions / active days; recompute it.",
    ),
    "entropy_range": (
        "are outside 0 <= cat_entropy <= log2(max(uniq_cats, 1))",
        "Recompute cat_entropy (bits) from the known categories.",
    ),
    "p95_single": ("are not 0 although events < 2", "A visitor with one event has no gap: p95_gap_s is 0."),
}
_SINGULAR = {"are": "is", "have": "has", "differ": "differs"}
UNSCORABLE_KINDS = frozenset(_PROBLEM_TEXT) - {"duplicate"}
# ": has events < 1": a problem's text after the value it names, in the singular.
_BROKEN = {
    kind: ": " + re.sub(r"^(are|have|differ)\b", lambda m: _SINGULAR[m.group(1)], what)
    for kind, (what, _) in _PROBLEM_TEXT.items()
}


@dataclass
class FeatureValidation:
    """What is wrong with a feature table, per column and per row, and which rows can be scored."""

    n_rows: int
    missing_columns: list[str]
    extra_columns: list[str]
    scorable: np.ndarray
    problem_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    first_examples: dict[tuple[str, str], str] = field(default_factory=dict)
    first_lines: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    truncated: bool = False
    problem_parts: list[pd.DataFrame] = field(default_factory=list, repr=False)  # row_problems, unsorted

    @cached_property
    def row_problems(self) -> pd.DataFrame:
        """One row per problem (row, line, visitorid, column, problem) in file order, at most
        MAX_PROBLEM_ROWS; built when first read (a valid API request never reads it)."""
        if not self.problem_parts:
            return _NO_PROBLEMS.copy()
        out = pd.concat(self.problem_parts, ignore_index=True).sort_values("row", kind="stable", ignore_index=True)
        return out.iloc[:MAX_PROBLEM_ROWS].reset_index(drop=True)

    @property
    def ok(self) -> bool:
        """True when all required columns exist and no row has a problem."""
        return not self.missing_columns and not self.problem_counts

    @property
    def n_scorable(self) -> int:
        """Number of rows that can be scored."""
        return int(self.scorable.sum())

    def messages(self) -> list[str]:
        """Plain sentences: what is wrong, where (spreadsheet lines, header = line 1), and the fix."""
        msgs: list[str] = []
        if self.missing_columns:
            msgs.append(
                f"Missing required column(s): {', '.join(self.missing_columns)}. Nothing can be "
                f"scored: the table needs visitorid and all 16 features "
                f"({', '.join(USER_FEATURES)}), e.g. as written by core.anomaly.features.user_features."
            )
        if self.extra_columns:
            msgs.append(f"Extra column(s) kept but not used for scoring: {', '.join(self.extra_columns)}.")
        for (col, kind), n in self.problem_counts.items():
            what, fix = _PROBLEM_TEXT[kind]
            lines = self.first_lines.get((col, kind), [])
            where = ", ".join(map(str, lines)) + (", …" if n > len(lines) else "")
            ex = self.first_examples.get((col, kind), "")
            unscored = "" if kind == "duplicate" else " These rows are not scored."
            msgs.append(
                f"Column '{col}': {n} row(s) {what} (line{'s' if n > 1 else ''} {where}; first: {ex}). {fix}{unscored}"
            )
        if self.truncated:
            msgs.append(f"Only the first {MAX_PROBLEM_ROWS} row problems are listed; the counts above are complete.")
        if self.n_rows and not self.missing_columns:
            n_bad = self.n_rows - self.n_scorable
            if n_bad:
                msgs.append(
                    f"{n_bad} of {self.n_rows} row(s) cannot be scored: they keep their place in the "
                    "downloads with an empty score and an empty flag."
                )
        return msgs


_NO_PROBLEMS = pd.DataFrame(
    {
        "row": np.empty(0, np.int64),
        "line": np.empty(0, np.int64),
        "visitorid": np.empty(0, object),
        "column": np.empty(0, object),
        "problem": np.empty(0, object),
    }
)


class _Collector:
    """Accumulates problem rows per (column, kind), capped in detail, exact in counts."""

    def __init__(self, n: int, ids: pd.Series | np.ndarray | None) -> None:
        """n rows; ids: the visitorid cells shown next to each problem (None without the column)."""
        self.ids = ids
        self.unscorable = np.zeros(n, bool)
        self.counts: dict[tuple[str, str], int] = {}
        self.examples: dict[tuple[str, str], str] = {}
        self.lines: dict[tuple[str, str], list[int]] = {}
        self.parts: list[pd.DataFrame] = []
        self.listed = 0

    def add(self, col: str, kind: str, bad: np.ndarray, describe: Any) -> None:
        """Record the rows where bad is True; describe is a string or a function of row positions."""
        pos = np.flatnonzero(bad)
        if pos.size == 0:
            return
        key = (col, kind)
        if kind in UNSCORABLE_KINDS:
            self.unscorable[pos] = True
        self.counts[key] = self.counts.get(key, 0) + int(pos.size)
        keep = pos[: max(MAX_PROBLEM_ROWS - self.listed, LINES_NAMED)]
        text = np.full(keep.size, describe, object) if isinstance(describe, str) else np.asarray(describe(keep), object)
        self.examples.setdefault(key, f"line {int(line_numbers(keep[:1])[0])}, {text[0]}")
        self.lines.setdefault(key, line_numbers(keep[:LINES_NAMED]).tolist())
        self.listed += keep.size
        self.parts.append(
            pd.DataFrame(
                {
                    "row": keep.astype(np.int64),
                    "line": line_numbers(keep),
                    "visitorid": self._ids_at(keep),
                    "column": col,
                    "problem": text,
                }
            )
        )

    def _ids_at(self, rows: np.ndarray) -> np.ndarray | None:
        """The visitorid cells of some rows, as Python objects."""
        if self.ids is None:
            return None
        if isinstance(self.ids, np.ndarray):
            return self.ids[rows].astype(object)
        return self.ids.iloc[rows].to_numpy(object)


def _basic_checks(raw: pd.Series, col: str, found: _Collector) -> np.ndarray:
    """The column as float64 after reporting non-numbers, empties, infinities, negatives and
    fractional counts; NaN wherever the value is unusable."""
    return _checked_values(numeric(raw), _numpy_number(raw), raw, col, found)


def _checked_values(vals: np.ndarray, kind: str, raw: pd.Series | None, col: str, found: _Collector) -> np.ndarray:
    """_basic_checks of a column already read as float64 (``numeric``); ``kind`` is its
    ``_numpy_number``, and ``raw`` (the column itself) is only needed when that is ""."""
    label = "negative count " if col in COUNT_FEATURES else "negative value "
    if kind in ("i", "u") or (not kind and raw is not None and pd.api.types.is_integer_dtype(raw) and not raw.hasnans):
        # integers without missing values, the usual case: only the sign to check
        neg = vals < 0
        found.add(col, "negative", neg, lambda k: label + _as_text(vals[k]))
        return np.where(neg, np.nan, vals) if neg.any() else vals
    finite = np.isfinite(vals)
    if not finite.all():
        nan = np.isnan(vals)
        # A numpy float column's only missing mark is NaN.
        isna = nan if kind or raw is None else raw.isna().to_numpy()
        if raw is not None:
            found.add(col, "non_numeric", nan & ~isna, lambda k: "not a number: '" + raw.iloc[k].astype(str) + "'")
        found.add(col, "nan", nan & isna, "empty or NA")  # readers take n/a, NA, null... as missing
        found.add(col, "inf", np.isinf(vals), lambda k: np.where(vals[k] > 0, "inf", "-inf"))
    # Comparisons and rounding of NaN and inf raise no floating-point warning: no errstate needed.
    bad = ~finite | (vals < 0)
    found.add(col, "negative", finite & (vals < 0), lambda k: label + _as_text(vals[k]))
    if col in COUNT_FEATURES:
        frac = ~bad & (vals != np.round(vals))
        found.add(col, "not_integer", frac, lambda k: "not a whole number: " + _as_text(vals[k]))
        bad |= frac
    return np.where(bad, np.nan, vals) if bad.any() else vals


# A block of rules between columns: the (column, kind) of each of its rules, and per row and rule
# whether the rule holds (ok) and the value a message shows (NaN where an input is unusable).
_RuleBlock = tuple[tuple[tuple[str, str], ...], np.ndarray, np.ndarray]


def _rule_blocks(v: dict[str, np.ndarray]) -> Iterator[_RuleBlock]:
    """Every rule between columns, in blocks of rules of the same shape (one numpy step checks a
    block), in the order their problems are reported."""
    ev = v["events"]
    yield (("events", "events_min"),), (ev >= 1)[:, None], ev[:, None]
    total = v["view"] + v["addtocart"] + v["transaction"]
    no_total = np.isnan(total)
    yield (("events", "event_sum"),), (no_total | (total == ev))[:, None], np.where(no_total, np.nan, ev)[:, None]
    big = ev >= 1
    evb = np.where(big, ev, np.nan)  # the bounds below need a valid events count
    hi = evb + _tol(evb)
    counts = np.column_stack([v["uniq_items"], v["uniq_cats"], v["n_sessions"]])
    # uniq_cats has no lower bound: -inf holds for every usable value
    ok = (counts >= np.array([1.0, -np.inf, 1.0])) & (counts <= hi[:, None])
    ranges = (("uniq_items", "uniq_items_range"), ("uniq_cats", "uniq_cats_range"), ("n_sessions", "n_sessions_range"))
    yield ranges, ok, np.where(big[:, None], counts, np.nan)
    ratio = v["uniq_items"] / evb
    uir = v["uniq_item_ratio"]
    yield (
        (("uniq_item_ratio", "uniq_item_ratio_eq"),),
        _close(uir, ratio)[:, None],
        np.where(np.isnan(ratio), np.nan, uir)[:, None],
    )
    shares = np.column_stack([v["night_share"], v["short_gap_share"]])
    yield (("night_share", "share_range"), ("short_gap_share", "share_range")), shares <= 1 + REL_TOL, shares
    rates = np.column_stack(
        [v["addtocart"] / np.maximum(v["view"], 1), v["transaction"] / np.maximum(v["addtocart"], 1)]
    )
    given = np.column_stack([v["add_to_view_rate"], v["txn_to_cart_rate"]])
    equalities = (("add_to_view_rate", "add_rate_eq"), ("txn_to_cart_rate", "txn_rate_eq"))
    yield equalities, _close(given, rates), np.where(np.isnan(rates), np.nan, given)
    epad = v["events_per_active_day"]
    ok = (epad >= 1 - REL_TOL) & (epad <= hi)
    yield (("events_per_active_day", "epad_range"),), ok[:, None], np.where(big, epad, np.nan)[:, None]
    ns = np.where(v["n_sessions"] >= 1, v["n_sessions"], np.nan)
    spd = v["sessions_per_day"]
    ok = (spd > 0) & (spd <= ns + _tol(ns))
    yield (("sessions_per_day", "spd_range"),), ok[:, None], np.where(np.isnan(ns), np.nan, spd)[:, None]
    cap = np.log2(np.maximum(v["uniq_cats"], 1))
    ok = v["cat_entropy"] <= cap + _tol(cap)
    yield (("cat_entropy", "entropy_range"),), ok[:, None], np.where(np.isnan(cap), np.nan, v["cat_entropy"])[:, None]
    p95 = v["p95_gap_s"]
    yield (
        (("p95_gap_s", "p95_single"),),
        (~(ev < 2) | (p95 == 0))[:, None],
        np.where(np.isnan(ev), np.nan, p95)[:, None],
    )


def _report_rules(block: _RuleBlock, found: _Collector) -> None:
    """Report the rows whose inputs are all usable (no NaN shown) but break a rule of the block."""
    keys, ok, shown = block
    broken = ~np.isnan(shown) & ~ok
    for j in np.flatnonzero(broken.any(axis=0)).tolist():  # only the rules some row breaks
        col, kind = keys[j]
        values, tail = shown[:, j], _BROKEN[kind]
        found.add(col, kind, broken[:, j], lambda k, c=col, x=values, t=tail: f"{c} = " + _as_text(x[k]) + t)


def _range_rules(v: dict[str, np.ndarray], found: _Collector) -> None:
    """The relations between columns; each is checked only where its inputs are usable."""
    with np.errstate(invalid="ignore", divide="ignore"):
        blocks = _rule_blocks(v)
        if len(v["events"]) > SMALL_TABLE_ROWS:
            for block in blocks:  # one block's arrays at a time
                _report_rules(block, found)
            return
        # A small table (an API request): every rule of every row in one step.
        parts = list(blocks)
        keys = tuple(k for part in parts for k in part[0])
        _report_rules((keys, np.hstack([p[1] for p in parts]), np.hstack([p[2] for p in parts])), found)


def _has_repeats(ids: np.ndarray) -> bool:
    """True when a value of a numpy integer array occurs more than once."""
    srt = np.sort(ids, kind="stable")
    return bool((srt[1:] == srt[:-1]).any())


def _visitor_ids(raw: pd.Series | np.ndarray, found: _Collector) -> None:
    """Report ids that are not integers within int64 (the API's bounds too), and repeated ids."""
    if isinstance(raw, np.ndarray):  # a FeatureMatrix's ids
        if raw.dtype.kind == "i" and not _has_repeats(raw):
            return  # integers up to int64 and no repeats: nothing to report
        raw = pd.Series(raw)
    if _not_a_number_type(raw):
        whole, ok = np.zeros(len(raw), bool), np.zeros(len(raw), bool)
    else:
        num = pd.to_numeric(raw, errors="coerce") if not pd.api.types.is_numeric_dtype(raw) else raw
        if _numpy_number(num) == "i" or (pd.api.types.is_signed_integer_dtype(num) and not num.hasnans):
            whole = ok = np.ones(len(raw), bool)  # int64 or narrower: every value is an id
        elif pd.api.types.is_unsigned_integer_dtype(num) and not num.hasnans:
            whole, ok = np.ones(len(raw), bool), num.to_numpy() <= np.uint64(INT64_MAX)
        else:
            vnum = num.to_numpy(np.float64, na_value=np.nan)
            whole = np.isfinite(vnum) & (vnum == np.round(vnum))
            # float64 cannot tell 2**63 - 1 from 2**63: the limit is the last value it holds below 2**63
            ok = whole & (np.abs(vnum) < INT64_LIMIT)
    if not ok.all():
        found.add(
            "visitorid",
            "bad_id",
            ~ok,
            lambda k: np.where(
                raw.iloc[k].isna(),
                "empty",
                np.where(whole[k], "outside int64: '", "not an id: '") + raw.iloc[k].astype(str) + "'",
            ),
        )
    if _numpy_number(raw) == "i":  # ids as int64 (the API's): numpy finds repeats fastest
        if not _has_repeats(raw.to_numpy()):
            return
    else:
        index = pd.Index(raw)
        if index.is_monotonic_increasing and index.is_unique:  # sorted ids, as the build writes them
            return
    codes, _ = pd.factorize(raw, use_na_sentinel=True)
    dup = pd.Series(codes).duplicated(keep="first").to_numpy() & (codes >= 0) & ok
    if dup.any():
        firsts = np.flatnonzero((codes >= 0) & ~pd.Series(codes).duplicated(keep="first").to_numpy())

        def dup_text(k: np.ndarray) -> np.ndarray:
            """'duplicate visitorid 12 (also line 5)'."""
            return (
                "duplicate visitorid "
                + raw.iloc[k].astype(str).to_numpy(object)
                + " (also line "
                + line_numbers(firsts[codes[k]]).astype(str).astype(object)
                + ")"
            )

        found.add("visitorid", "duplicate", dup, dup_text)


def _checked_matrix(M: np.ndarray, found: _Collector) -> np.ndarray:
    """``_checked_values`` of every column of a FeatureMatrix's values (NaN where unusable).

    One pass over the whole matrix finds the columns with any finding; only those are checked
    one by one (in column order, so the findings come in the order of the column-wise path).
    """
    bad = ~np.isfinite(M) | (M < 0)
    counts = M[:, _COUNT_POS]
    bad[:, _COUNT_POS] |= counts != np.round(counts)  # NaN counts are bad already
    flagged = np.flatnonzero(bad.any(axis=0))
    if not flagged.size:
        return M
    V = M.copy(order="F")
    for j in flagged.tolist():  # only the columns with a finding
        V[:, j] = _checked_values(M[:, j], "f", None, USER_FEATURES[j], found)  # integers checked as floats
    return V


def validate_features(df: pd.DataFrame | FeatureMatrix) -> FeatureValidation:
    """Check a feature table (visitorid + 16 features) against every rule of the data contract.

    A small table of plain numbers is checked as its FeatureMatrix (``small_feature_matrix``):
    the same findings, from numpy in a few steps.
    """
    if isinstance(df, FeatureMatrix):
        return _validate_matrix(df, [])
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of user features, got {type(df).__name__}.")
    n = len(df)
    cols = [str(c) for c in df.columns]
    missing = [c for c in _REQUIRED if c not in cols]
    extra = [c for c in cols if c not in _REQUIRED]
    small = small_feature_matrix(df)
    if small is not None:
        return _validate_matrix(small, extra)
    vis = _column(df, "visitorid") if "visitorid" in df.columns else None
    found = _Collector(n, vis)
    scorable = np.zeros(n, bool) if missing else np.ones(n, bool)
    values: dict[str, np.ndarray] = {}
    for col in USER_FEATURES:
        if col in df.columns:
            values[col] = _basic_checks(_column(df, col), col, found)
            scorable &= ~np.isnan(values[col])
        else:
            values[col] = np.full(n, np.nan)
    return _finish(n, missing, extra, values, vis, scorable, found)


def _validate_matrix(fm: FeatureMatrix, extra: list[str]) -> FeatureValidation:
    """validate_features of a table with every required column, read into a FeatureMatrix."""
    found = _Collector(len(fm), fm.visitorid)
    V = _checked_matrix(fm.values, found)
    values = {col: V[:, j] for j, col in enumerate(USER_FEATURES)}
    return _finish(len(fm), [], extra, values, fm.visitorid, ~np.isnan(V).any(axis=1), found)


def _finish(
    n: int,
    missing: list[str],
    extra: list[str],
    values: dict[str, np.ndarray],
    vis: pd.Series | np.ndarray | None,
    scorable: np.ndarray,
    found: _Collector,
) -> FeatureValidation:
    """The rules between columns and of the ids, after each column's own checks; the result."""
    if n:
        _range_rules(values, found)
        if vis is not None:
            _visitor_ids(vis, found)
    scorable &= ~found.unscorable  # a row breaking any rule is not scored
    return FeatureValidation(
        n_rows=n,
        missing_columns=missing,
        extra_columns=extra,
        scorable=scorable,
        problem_counts=found.counts,
        first_examples=found.examples,
        first_lines=found.lines,
        truncated=sum(found.counts.values()) > MAX_PROBLEM_ROWS,
        problem_parts=found.parts,
    )
