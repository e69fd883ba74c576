"""Per-visitor stages (user features, ranking candidates) on one of two engines.

``pandas`` runs the core functions on the whole table in this process; ``dask`` shuffles the
events by visitor so every partition holds whole visitors and runs the SAME core functions on
each partition (core.engine.dask_engine), on a local or remote Dask cluster. Both engines give
identical tables: same rows, same order, same case ids.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.anomaly.features import user_features
from core.base.errors import DataError
from core.base.schema import MIN_LABEL_COUNT
from core.ranking.candidates import build_candidates
from core.ranking.split import drop_rare_labels
from core.reading import data

ENGINES: tuple[str, ...] = ("pandas", "dask")
STAGES: tuple[str, ...] = ("features", "candidates")
DEFAULT_MEMORY_LIMIT = "4GB"  # per worker of a LocalCluster (the dask engine without a scheduler)


def parquet_files(path: str | Path) -> list[Path]:
    """The parquet file itself, or a folder's parquet files in name order (the row order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".parq", ".pq"))
        if not files:
            raise DataError(f"{path}: no parquet files in this folder")
        return files
    if not path.is_file():
        raise DataError(f"{path}: no such events file or folder")
    return [path]


def read_event_parquets(path: str | Path) -> pd.DataFrame:
    """Prepared events from a parquet file or folder (files in name order), validated."""
    files = parquet_files(path)
    if len(files) == 1:
        return data.read_events(files[0])
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: unreadable parquet folder ({exc})") from exc
    return data.validate_events(table.to_pandas(), str(path))


def stage_function(stage: str):
    """The one core function of a per-visitor stage (events -> table)."""
    if stage == "features":
        return user_features
    if stage == "candidates":
        return build_candidates
    raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")


def renumber_cases(case_id: np.ndarray) -> np.ndarray:
    """Case ids 0..n-1 in order of appearance for a table whose case ids are non-decreasing."""
    if len(case_id) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(case_id), dtype=bool)
    new[0] = True
    np.not_equal(case_id[1:], case_id[:-1], out=new[1:])
    return np.cumsum(new, dtype=np.int64) - 1


def without_visitors(cands: pd.DataFrame, visitors: np.ndarray) -> pd.DataFrame:
    """Candidates of the other visitors, case ids renumbered: what build_candidates gives on the
    events without those visitors (a visitor's cases depend only on that visitor's own views)."""
    keep = ~np.isin(cands["visitorid"].to_numpy(), visitors)
    out = cands.loc[keep].reset_index(drop=True)
    out["case_id"] = renumber_cases(out["case_id"].to_numpy())
    return out


def write_table(table: pd.DataFrame, out: str | Path) -> None:
    """Write a result table as parquet (zstd), or as CSV when the name ends in .csv."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        table.to_csv(out, index=False)
    else:
        table.to_parquet(out, index=False, compression="zstd")


def run_file(
    stage: str,
    events_path: str | Path,
    out: str | Path,
    engine: str = "pandas",
    scheduler: str | None = None,
    n_workers: int = 2,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> dict:
    """``python -m core features|candidates``: events parquet (file or folder) in, table out."""
    if engine == "pandas":
        table = stage_function(stage)(read_event_parquets(events_path))
        write_table(table, out)
        return {"engine": engine, "rows": int(len(table)), "out": str(out)}
    if engine != "dask":
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    from core.engine import dask_engine

    with dask_engine.cluster(scheduler, n_workers, memory_limit):
        rows = dask_engine.run_files(stage, parquet_files(events_path), out)
    return {"engine": engine, "rows": rows, "out": str(out)}


def per_visitor_stages(
    events: pd.DataFrame,
    engine: str = "pandas",
    scheduler: str | None = None,
    n_workers: int = 2,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User features and history candidates of in-memory events, each computed once on ``engine``."""
    if engine == "pandas":
        # Two independent stages on two threads (numpy and pandas release the GIL in their sorts
        # and group sums): the same tables, in less time on two cores.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="per-visitor") as pool:
            features = pool.submit(user_features, events)
            cands = pool.submit(build_candidates, events)
            return features.result(), cands.result()
    if engine != "dask":
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    from core.engine import dask_engine

    with dask_engine.cluster(scheduler, n_workers, memory_limit):  # one cluster for both stages
        return dask_engine.run_frame("features", events), dask_engine.run_frame("candidates", events)


def cases_from_candidates(cands: pd.DataFrame, min_count: int = MIN_LABEL_COUNT) -> tuple[pd.DataFrame, int, int]:
    """ranking.prepare_cases from built candidates: (cands without rare labels, cases, cases dropped)."""
    n_all = int(cands["case_id"].iloc[-1]) + 1 if len(cands) else 0  # case ids are 0..n-1 in order
    kept, n_dropped = drop_rare_labels(cands, min_count)
    return kept, n_all, n_dropped
