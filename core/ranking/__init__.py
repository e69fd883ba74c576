"""Task 1: next-category ranking. Import each name from the module that defines it.

Modules, one job each: ``cases`` (the case/history rule), ``candidates`` (the 7 contract
features), ``markov`` (the transition extension), ``models`` (the rule, the baselines and the
learned rankers), ``metrics`` (per-case outcomes and the contract metrics), ``split`` (rare labels
and the visitor split), ``train`` (``train_and_evaluate``), ``select`` (which ranker is served),
``serve`` (``validate_views`` and ``rank``), ``explain`` (plain-words reasons for a ranking).
"""
