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
