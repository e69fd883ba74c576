"""The analyst's own labels (``visitorid,is_bot``): read, checked, matched to a batch, and the
detectors measured on them (precision, recall, PR-AUC with visitor-bootstrap 95% intervals)."""

from __future__ import annotations

import io
from pathlib import PurePath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score

from core.base.errors import DataError

LABEL_COLUMNS = ("visitorid", "is_bot")
MAX_LABEL_ROWS = 2_000_000
MAX_SHOWN = 5
BOOTSTRAP_RESAMPLES = 200
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "1.0"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "0.0"})


def _read(name: str, data: bytes) -> pd.DataFrame:
    """The labels file as text cells (CSV) or its own types (parquet)."""
    suffix = PurePath(name or "").suffix.lower()
    if not data:
        raise DataError(f"{name!r} is empty (0 bytes); upload a CSV or parquet with visitorid,is_bot.")
    try:
        if suffix == ".csv":
            return pd.read_csv(io.BytesIO(data), dtype=str, skipinitialspace=True, nrows=MAX_LABEL_ROWS + 1)
        if suffix in (".parquet", ".pq"):
            pf = pq.ParquetFile(pa.BufferReader(data))
            if pf.metadata.num_rows > MAX_LABEL_ROWS:
                raise DataError(f"{name!r} has {pf.metadata.num_rows:,} rows; at most {MAX_LABEL_ROWS:,} labels.")
            return pf.read().to_pandas()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, pa.ArrowException, OSError) as exc:
        raise DataError(f"{name!r} cannot be read as {suffix[1:]} ({exc}). Save it as UTF-8 CSV or parquet.") from exc
    raise DataError(f"{name!r} has the extension {suffix or '(none)'!r}; upload a .csv or .parquet file.")


def _bad(name: str, column: str, what: str, rows: np.ndarray, values: pd.Series) -> DataError:
    """A message naming the column, the first offending lines (header = line 1) and the fix."""
    shown = ", ".join(f"line {r + 2}: {v!r}" for r, v in zip(rows[:MAX_SHOWN], values.iloc[rows[:MAX_SHOWN]]))
    return DataError(f"{column} {what} in {len(rows):,} row(s) ({shown}). Fix those rows and upload the labels again.")


def read_labels(name: str, data: bytes) -> pd.DataFrame:
    """``visitorid`` (int64) and ``is_bot`` (bool) of a labels file; a DataError names what is wrong."""
    raw = _read(name, data)
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in LABEL_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{name!r} has no column {', '.join(missing)}; a labels file has the header visitorid,is_bot.")
    if len(raw) > MAX_LABEL_ROWS:
        raise DataError(f"{name!r} has more than {MAX_LABEL_ROWS:,} labels; split it.")
    vis = pd.to_numeric(raw["visitorid"], errors="coerce")
    with np.errstate(invalid="ignore"):
        bad = (vis.isna() | (vis % 1 != 0) | (vis.abs() > 2**63 - 1)).to_numpy()
    if bad.any():
        raise _bad(name, "visitorid", "is not a whole number", np.flatnonzero(bad), raw["visitorid"])
    words = raw["is_bot"].astype("string").str.strip().str.lower()
    is_true, is_false = words.isin(TRUE_WORDS).to_numpy(), words.isin(FALSE_WORDS).to_numpy()
    bad = ~(is_true | is_false)
    if bad.any():
        raise _bad(name, "is_bot", "is not 0/1 or true/false", np.flatnonzero(bad), raw["is_bot"])
    out = pd.DataFrame({"visitorid": pd.to_numeric(raw["visitorid"]).astype(np.int64), "is_bot": is_true})
    dup = out["visitorid"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise _bad(
            name, "visitorid", "repeats (each visitor may be labelled once)", np.flatnonzero(dup), raw["visitorid"]
        )
    return out


def match_labels(labels: pd.DataFrame, visitorids: np.ndarray) -> tuple[np.ndarray, int]:
    """(label of every batch row: 1, 0 or NaN when unlabelled, number of labels whose visitorid is
    not in the batch)."""
    lab = labels.set_index("visitorid")["is_bot"]
    y = pd.Series(np.asarray(visitorids)).map(lab).to_numpy(np.float64, na_value=np.nan)
    unknown = int((~labels["visitorid"].isin(visitorids)).sum())
    return y, unknown


def _weighted_metrics(y: np.ndarray, flags: np.ndarray, ends: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Precision and recall of the flags and average precision, with row weights w (rows sorted by
    score, highest first; ``ends`` = last row of each run of tied scores, as scikit-learn's thresholds)."""
    tp_all = np.cumsum(w * y)[ends]
    fp_all = np.cumsum(w * (1 - y))[ends]
    pos = tp_all[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp_all / (tp_all + fp_all)
        rec = tp_all / pos
        ap = float(np.sum(np.diff(np.concatenate([[0.0], rec])) * np.nan_to_num(prec)))
        tp = np.sum(w * y * flags)
        precision = tp / np.sum(w * flags)
        recall = tp / pos
    return float(precision), float(recall), ap if pos > 0 else float("nan")


def label_metrics(
    y: np.ndarray,
    scores: np.ndarray,
    flags: np.ndarray,
    n_boot: int = BOOTSTRAP_RESAMPLES,
    seed: int = 42,
) -> dict[str, object]:
    """Precision and recall of the flags and PR-AUC (average precision, as scikit-learn computes it)
    over the scored, labelled rows, each with a 95% interval from resampling visitors (Poisson
    bootstrap weights; the rows are sorted by score once)."""
    ok = np.isfinite(y) & np.isfinite(scores)
    yy, ss, ff = y[ok], scores[ok], np.asarray(flags, bool)[ok].astype(np.float64)
    out: dict[str, object] = {"labelled": int(ok.sum()), "positives": int(yy.sum())}
    if yy.size == 0 or yy.sum() == 0:
        return out | {"precision": None, "recall": None, "pr_auc": None}
    order = np.argsort(-ss, kind="stable")
    ys, fs, s_sorted = yy[order], ff[order], ss[order]
    ends = np.append(np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1)
    precision, recall, _ = _weighted_metrics(ys, fs, ends, np.ones_like(ys))
    out |= {
        "precision": precision if ff.sum() else None,
        "recall": recall,
        "pr_auc": float(average_precision_score(yy, ss)),
    }
    rng = np.random.default_rng(seed)
    boot = np.array([_weighted_metrics(ys, fs, ends, rng.poisson(1.0, ys.size)) for _ in range(n_boot)])
    for j, key in enumerate(("precision", "recall", "pr_auc")):
        vals = boot[:, j][np.isfinite(boot[:, j])]
        out[f"{key}_ci"] = [float(v) for v in np.quantile(vals, [0.025, 0.975])] if vals.size else None
    out["bootstrap_resamples"] = n_boot
    return out


def pr_curve(y: np.ndarray, scores: np.ndarray, points: int = 200) -> pd.DataFrame:
    """At most ``points`` (recall, precision) pairs of the labelled, scored rows, for a chart."""
    from sklearn.metrics import precision_recall_curve

    ok = np.isfinite(y) & np.isfinite(scores)
    if not ok.any() or y[ok].sum() == 0:
        return pd.DataFrame({"recall": [], "precision": []})
    precision, recall, _ = precision_recall_curve(y[ok], scores[ok])
    idx = np.unique(np.linspace(0, precision.size - 1, min(points, precision.size)).astype(int))
    return pd.DataFrame({"recall": recall[idx], "precision": precision[idx]})


def label_cost(
    cost: pd.DataFrame, scores: np.ndarray, y: np.ndarray, features: pd.DataFrame, protect_buyers: bool
) -> pd.DataFrame:
    """The cost table (``cleaning_cost``) with ``known_bots_removed`` and ``labelled_normal_removed``:
    the labelled users each of its thresholds flags, after the policy."""
    from core.anomaly.policy import bought

    lab = np.flatnonzero(np.isfinite(y) & np.isfinite(scores))
    s, yl = scores[lab], y[lab]
    keep = ~bought(features.iloc[lab]) if protect_buyers else np.ones(lab.size, bool)
    thr = cost["threshold"].to_numpy(np.float64)
    flagged = (s[None, :] >= thr[:, None]) & keep[None, :]  # (points x labelled users): ~21 points
    out = cost.copy()
    out["known_bots_removed"] = (flagged & (yl == 1)).sum(axis=1)
    out["labelled_normal_removed"] = (flagged & (yl == 0)).sum(axis=1)
    return out
