"""Deterministic, vectorised generator of RetailRocket-like data: events, item properties, tree, labels.

The real dataset cannot be downloaded here, so the product is built and demoed on this data. The
generator is one ``np.random.default_rng(seed)`` stream consumed in a fixed order, so the same
arguments (``n_events``, ``seed``, ``bot_mix``) always give identical tables and byte-identical
CSV files.

Modules, one job each: ``catalogue`` (tree, items, samplers), ``properties`` (weekly snapshots,
other properties), ``visitors`` (human visitors: ordinary, buyers and
normal look-alikes), ``bots`` (abnormal kinds and their mixes), ``generate`` (assembly),
``raw_files`` (the CSV files), ``realism`` (figures against the real data).
"""

from core.demo.bots import ABNORMAL_KINDS, BOT_MIXES, BotMix
from core.demo.catalogue import DEPTH_COUNTS, ITEMS_PER_EVENT
from core.demo.common import FIRST_SNAPSHOT, T_END, T_START
from core.demo.generate import SCALES, DemoDataset, generate
from core.demo.raw_files import LABELS_FILE, LOOKALIKES_FILE, write_raw
from core.demo.realism import candidate_rows_estimate, realism_report, realism_summary
from core.demo.visitors import LOOKALIKE_KINDS

__all__ = [
    "ABNORMAL_KINDS",
    "BOT_MIXES",
    "DEPTH_COUNTS",
    "FIRST_SNAPSHOT",
    "ITEMS_PER_EVENT",
    "LABELS_FILE",
    "LOOKALIKES_FILE",
    "LOOKALIKE_KINDS",
    "SCALES",
    "T_END",
    "T_START",
    "BotMix",
    "DemoDataset",
    "candidate_rows_estimate",
    "generate",
    "realism_report",
    "realism_summary",
    "write_raw",
]
