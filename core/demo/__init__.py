"""Deterministic, vectorised generator of RetailRocket-like data: events, item properties, tree, labels.

The real dataset cannot be downloaded here, so the product is built and demoed on this data. The
generator is one ``np.random.default_rng(seed)`` stream consumed in a fixed order, so the same
arguments always give identical tables and byte-identical CSV files.

Modules, one job each: ``catalogue`` (tree, items, samplers), ``properties`` (weekly snapshots,
other properties, the as-of category join), ``visitors`` (normal visitors), ``bots`` (abnormal
kinds), ``generate`` (assembly), ``raw_files`` (the CSV files), ``realism`` (statistics against
the real data).
"""

from core.demo.bots import ABNORMAL_KINDS
from core.demo.catalogue import DEPTH_COUNTS, ITEMS_PER_EVENT
from core.demo.common import DAY, FIRST_SNAPSHOT, HOUR, T_END, T_START
from core.demo.generate import SCALES, DemoDataset, generate
from core.demo.properties import asof_categories
from core.demo.raw_files import write_raw
from core.demo.realism import candidate_rows_estimate, realism_summary

__all__ = [
    "ABNORMAL_KINDS", "DAY", "DEPTH_COUNTS", "FIRST_SNAPSHOT", "HOUR", "ITEMS_PER_EVENT", "SCALES",
    "T_END", "T_START", "DemoDataset", "asof_categories", "candidate_rows_estimate", "generate",
    "realism_summary", "write_raw",
]
