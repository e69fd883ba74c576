"""The build (``python -m core build``): events in, every artifact out, with its output folder,
the README's results tables, the overview summaries and the stage timer (``python -m core bench``).
"""
