"""The Dask engine: events range-shuffled by visitorid, the core per-visitor function per partition.

Every partition holds whole visitors and the partitions are in visitorid order, so the
concatenated outputs are in the pandas engine's order. A global file-order row number travels
with each event: a partition is put back in file order before the core function runs, so ties on
(visitorid, timestamp) break exactly as in one pandas table. Candidate case ids, numbered from 0
inside each partition, get the number of cases of all earlier partitions added.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.engine import renumber_cases, stage_function, write_table
from core.ranking.cases import has_history, sorted_views
from core.reading import data

log = logging.getLogger(__name__)

ROW = "_row"  # global file-order position of an event
VISITOR_INDEX = "_vis"  # shuffle key (a copy of visitorid, so the column itself stays)
# Events per partition after the shuffle: ~1M events is ~150 MB of candidates in a worker.
EVENTS_PER_PARTITION = 1_000_000


@contextmanager
def cluster(scheduler: str | None, n_workers: int = 2, memory_limit: str = "4GB") -> Iterator[Any]:
    """A Client of the scheduler at ``scheduler``, else of a new LocalCluster (one thread per worker)."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # One thread per worker: the core functions are single-threaded numpy, and memory_limit is per
    # worker process; no dashboard, so parallel runs never fight over its port.
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, memory_limit=memory_limit, dashboard_address=None, processes=True
        ) as local,
        Client(local) as client,
    ):
        log.info("dask LocalCluster: %d workers, %s each", n_workers, memory_limit)
        yield client


def n_partitions(n_events: int, n_workers: int = 2) -> int:
    """Partitions after the shuffle: about EVENTS_PER_PARTITION events each, at least 2 per worker."""
    return max(2 * n_workers, math.ceil(n_events / EVENTS_PER_PARTITION))


def _n_workers() -> int:
    """Workers of the current client (2 without one)."""
    try:
        from distributed import get_client

        return max(len(get_client().scheduler_info(n_workers=-1)["workers"]), 1)
    except (ImportError, ValueError):
        return 2


def _read_file(path: str, offset: int) -> pd.DataFrame:
    """One parquet file of events, validated, with its global row numbers."""
    events = data.validate_events(pq.read_table(path).to_pandas(), path)
    events[ROW] = np.arange(offset, offset + len(events), dtype=np.int64)
    return events


def _file_meta() -> pd.DataFrame:
    """An empty validated events table with the row-number column (the Dask meta)."""
    empty = data.validate_events(
        pd.DataFrame(
            {
                "timestamp": [0],
                "visitorid": [0],
                "event": ["view"],
                "itemid": [0],
                "transactionid": [np.nan],
                "categoryid": [0],
            }
        ),
        "meta",
    ).iloc[:0]
    return empty.assign(**{ROW: np.zeros(0, np.int64)})


def events_from_files(files: list[Path]) -> tuple[Any, int]:
    """Lazy events of parquet files (one partition per file) and the total number of events."""
    import dask.dataframe as dd

    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    ddf = dd.from_map(_read_file, [str(f) for f in files], offsets, meta=_file_meta(), enforce_metadata=False)
    return ddf, int(sum(counts))


def events_from_frame(events: pd.DataFrame) -> Any:
    """Lazy events of an in-memory table, with global row numbers."""
    import dask.dataframe as dd

    ev = events.reset_index(drop=True).assign(**{ROW: np.arange(len(events), dtype=np.int64)})
    return dd.from_pandas(ev, npartitions=max(1, math.ceil(len(ev) / EVENTS_PER_PARTITION)), sort=False)


def by_visitor(ddf: Any, n_events: int) -> Any:
    """Range shuffle by visitorid: whole visitors per partition, partitions in visitorid order."""
    keyed = ddf.assign(**{VISITOR_INDEX: ddf["visitorid"]})
    return keyed.set_index(VISITOR_INDEX, npartitions=n_partitions(n_events, _n_workers()))


def _file_order(part: pd.DataFrame) -> pd.DataFrame:
    """A shuffled partition back in file order, as a plain events table."""
    order = np.argsort(part[ROW].to_numpy(), kind="stable")
    return part.iloc[order].reset_index(drop=True).drop(columns=ROW)


def _apply(part: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The core function of ``stage`` on one partition of whole visitors."""
    return stage_function(stage)(_file_order(part))


def _n_cases(part: pd.DataFrame) -> pd.Series:
    """Number of ranking cases in one partition (the views with a non-empty history)."""
    vis, ts, _ = sorted_views(_file_order(part))
    return pd.Series([int(has_history(vis, ts).sum())])


def _candidates_from(part: pd.DataFrame, offsets: list[int], partition_info: dict | None = None) -> pd.DataFrame:
    """Candidates of one partition with global case ids (earlier partitions' cases added)."""
    cands = _apply(part, "candidates")
    cands["case_id"] += offsets[partition_info["number"]] if partition_info else 0
    return cands


def _meta(stage: str, ddf: Any) -> pd.DataFrame:
    """The empty output table of a stage (what the core function gives on no events)."""
    return _apply(ddf._meta.reset_index(drop=True), stage)


def staged(stage: str, shuffled: Any, numbered: bool) -> Any:
    """Lazy output of ``stage`` per partition; candidates with global case ids when ``numbered``."""
    meta = _meta(stage, shuffled)
    if stage != "candidates" or not numbered:
        return shuffled.map_partitions(_apply, stage, meta=meta, align_dataframes=False)
    counts = shuffled.map_partitions(_n_cases, meta=pd.Series(dtype=np.int64)).compute().to_numpy()
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    return shuffled.map_partitions(_candidates_from, offsets, meta=meta, align_dataframes=False)


def run_frame(stage: str, events: pd.DataFrame) -> pd.DataFrame:
    """A stage of in-memory events on the current Dask client, gathered as one pandas table."""
    shuffled = by_visitor(events_from_frame(events), len(events))
    table = staged(stage, shuffled, numbered=False).compute().reset_index(drop=True)
    if stage == "candidates":
        # Local case ids restart at 0 in each partition; a case never spans two visitors.
        case_id = table["case_id"].to_numpy()
        vis = table["visitorid"].to_numpy()
        table["case_id"] = renumber_cases(case_id + np.concatenate([[0], np.cumsum(vis[1:] != vis[:-1])]))
    return table


def run_files(stage: str, files: list[Path], out: str | Path) -> int:
    """A stage of parquet files on the current Dask client; returns the number of output rows.

    A ``.csv`` OUT is gathered on this machine into one file; any other OUT is a folder of
    parquet parts written by the workers (part-00000.parquet, ... in visitorid order).
    """
    from distributed import get_client

    ddf, n_events = events_from_files(files)
    shuffled = get_client().persist(by_visitor(ddf, n_events))  # read and shuffled once, used twice
    table = staged(stage, shuffled, numbered=True)
    out = Path(out)
    if out.suffix.lower() == ".csv":
        frame = table.compute().reset_index(drop=True)
        write_table(frame, out)
        return int(len(frame))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    table = table.reset_index(drop=True)
    table.to_parquet(str(out), write_index=False, compression="zstd", name_function=lambda i: f"part-{i:05d}.parquet")
    return int(sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("part-*.parquet")))
