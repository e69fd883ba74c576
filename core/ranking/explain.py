"""Plain-words reasons for a ranking: why each category is where it is, from its own features."""

from __future__ import annotations

import numpy as np
import pandas as pd

ORDINALS = ("first", "second", "third")


def _ago(minutes: pd.Series) -> pd.Series:
    """'just now', '2 min ago', '3 h ago' for minutes before the last view (0 for the last view)."""
    m = minutes.to_numpy(np.float64)
    text = np.where(
        m < 1,
        "at the time of the last view",
        np.where(
            m < 90,
            np.char.add(np.round(m).astype(np.int64).astype(str), " min before the last view"),
            np.char.add(np.round(m / 60, 1).astype(str), " h before the last view"),
        ),
    )
    return pd.Series(text, index=minutes.index)


def why_text(ranking: pd.DataFrame) -> pd.Series:
    """Per ranked row (rank, cnt, n_views, is_last, last_gap_min[, markov_prob]): e.g. 'first:
    viewed last, 3 of the 5 views'; a suggested (not viewed) category says so."""
    rank = ranking["rank"].to_numpy()
    place = pd.Series(
        np.where(rank <= len(ORDINALS), np.array(ORDINALS + ("",))[np.minimum(rank, len(ORDINALS)) - 1], ""),
        index=ranking.index,
    )
    place = place.where(place != "", "#" + ranking["rank"].astype(str))
    cnt = ranking["cnt"].astype(int).astype(str)
    views = cnt + " of the " + ranking["n_views"].astype(int).astype(str) + " views"
    seen = (
        np.where(ranking["is_last"].to_numpy() == 1, "viewed last", "last viewed " + _ago(ranking["last_gap_min"]))
        + ", "
        + views
    )
    text = place + ": " + pd.Series(seen, index=ranking.index)
    if "markov_prob" in ranking:
        follows = (100 * ranking["markov_prob"].astype(float)).round().astype(int).astype(str) + "%"
        suggested = place + ": not viewed; follows the last category in " + follows + " of training transitions"
        text = text.where(ranking["cnt"].to_numpy() > 0, suggested)
    return text
