"""Small example files of every layout the dashboard accepts, for its "download a template" buttons.

One hand-written set of raw events (three visitors: a shopper who buys, a browser, a fast
crawler) is the source of all four templates, so they agree with each other: the features are
computed from those events by ``core.anomaly.features.user_features`` (the build's own code, so every
row passes validation), and the labels name the same visitors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from core.anomaly.features import user_features
from core.base.schema import USER_FEATURES

_T0 = 1_433_160_000_000  # 2015-06-01 12:00 UTC, inside the RetailRocket period
_MIN = 60_000


def _events() -> pd.DataFrame:
    """The prepared events behind every template: raw columns plus categoryid."""
    shopper = [  # views two items, adds one to the cart, buys it
        (0, "view", 355908, np.nan, 1051),
        (3, "view", 248676, np.nan, 1051),
        (9, "view", 355908, np.nan, 1051),
        (12, "addtocart", 355908, np.nan, 1051),
        (20, "transaction", 355908, 4000.0, 1051),
    ]
    browser = [(m, "view", 100 + i, np.nan, (959, 342, 959, 1613)[i]) for i, m in enumerate((0, 7, 15, 40))]
    crawler = [(i * 0.02, "view", 500 + i, np.nan, (1051, 959, 342, 1613, 491)[i % 5]) for i in range(12)]
    rows = [(2, *r) for r in shopper] + [(7, *r) for r in browser] + [(13, *r) for r in crawler]
    frame = pd.DataFrame(rows, columns=["visitorid", "minute", "event", "itemid", "transactionid", "categoryid"])
    frame.insert(0, "timestamp", _T0 + (frame.pop("minute") * _MIN).round().astype("int64"))
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def raw_events_template() -> pd.DataFrame:
    """RetailRocket events.csv layout: timestamp (Unix ms, UTC), visitorid, event, itemid, transactionid."""
    return _events().drop(columns="categoryid")


def ranking_events_template() -> pd.DataFrame:
    """The prepared events layout (raw columns plus categoryid), as the ranking evaluation reads it."""
    return _events()


def features_template() -> pd.DataFrame:
    """One row per visitor: visitorid and the 16 behaviour features, computed from the raw template."""
    return user_features(_events())[["visitorid", *USER_FEATURES]]


def labels_template() -> pd.DataFrame:
    """visitorid,is_bot (1 = a known bot, 0 = a known normal visitor) for the template's visitors."""
    return pd.DataFrame({"visitorid": [2, 7, 13], "is_bot": [0, 0, 1]})


TEMPLATES: dict[str, tuple[str, Callable[[], pd.DataFrame]]] = {
    # kind -> (file name, the table)
    "features": ("template_user_features.csv", features_template),
    "raw events": ("template_raw_events.csv", raw_events_template),
    "labels": ("template_labels.csv", labels_template),
    "ranking events": ("template_ranking_events.csv", ranking_events_template),
}


def template_csv(kind: str) -> tuple[str, bytes]:
    """(file name, CSV bytes) of the template of one upload kind (a key of TEMPLATES)."""
    name, make = TEMPLATES[kind]
    return name, make().to_csv(index=False).encode()
