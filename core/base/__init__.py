"""Base: the data contract's constants and file names, the project's errors, and generic
numeric helpers (id arrays, distinct rows, statistics, fast tree-ensemble scoring, memory).
Nothing here imports another part of core.
"""
