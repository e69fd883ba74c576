"""Task 2: per-visitor behaviour features, the bot detectors, validation, scoring and audits.

Import each name from the module that defines it. Modules, one job each: ``features`` computes the
16 user features of docs/DATA_CONTRACT.md; ``validation`` says which feature rows can be scored;
``behaviour`` derives the one-sided bot-ward columns; ``detector`` holds the scikit-learn-style
estimators and their registry; ``scoring`` scores tables with a detector passed in; ``policy`` is
the "keep visitors who bought" rule and the cost of cleaning; ``quality`` judges detectors against
labels; ``labels`` reads an analyst's own labels and measures detectors on them; ``audit`` holds
proxy labels, operating-point audits and cleaning; ``drift`` compares a batch with the training
users; ``evidence`` is one flagged visitor's events; ``batch`` is one uploaded batch as the
dashboard and ``python -m core score`` score it. Nothing in this package reads or writes files:
``core.store.artifacts`` loads detectors.
"""
