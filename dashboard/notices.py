"""What a page says about its artifacts: missing, unusable content, or a synthetic build."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.base.schema import SYNTHETIC_SOURCE
from core.store import artifacts as A
from dashboard.cache import artifacts


def missing(what: str, name: str) -> None:
    """Say that an artifact is not available, why, and how to get it."""
    arts = artifacts()
    status = arts.unreadable.get(name) or arts.status.get(name, "not built yet")  # malformed, refused, missing
    st.info(f"**{what}** is not available (`{name}`: {status}). {A.REBUILD_HINT}", icon=":material/info:")


def _is_number(value: Any) -> bool:
    """True for an int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bad_content(
    name: str,
    data: dict[str, Any] | pd.DataFrame,
    numbers: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    mappings: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
    columns: tuple[str, ...] = (),
) -> str | None:
    """Why a verified artifact's content cannot be shown, naming the file and the field; None when
    it can. JSON: ``numbers`` are numbers or absent, ``required`` present numbers, ``mappings``
    objects of numbers. Tables: ``numbers``/``required`` and ``dates`` are columns of numbers and of
    dates, ``columns`` columns that must exist."""
    if isinstance(data, dict):
        for key in (*numbers, *required):
            value = data.get(key)
            if not (_is_number(value) or (value is None and key not in required)):
                return f"`{name}`: {key!r} is not a number"
        for key in mappings:
            value = data.get(key)
            if value is not None and not (isinstance(value, dict) and all(map(_is_number, value.values()))):
                return f"`{name}`: {key!r} is not an object of numbers"
        return None
    absent = [c for c in (*numbers, *required, *dates, *columns) if c not in data.columns]
    if absent:
        return f"`{name}` lacks the column(s) {', '.join(map(repr, absent))}"
    for col in (*numbers, *required):
        if pd.to_numeric(data[col], errors="coerce").isna().any():
            return f"`{name}`: column {col!r} holds values that are not numbers"
    for col in dates:
        if pd.to_datetime(data[col], errors="coerce", format="ISO8601").isna().any():
            return f"`{name}`: column {col!r} holds values that are not dates"
    return None


def unusable(what: str, why: str) -> None:
    """Say that an artifact's content cannot be shown, why, and how to get a good one."""
    st.warning(f"**{what}** cannot be shown: {why}. {A.REBUILD_HINT}", icon=":material/warning:")


def synthetic_banner(arts: A.Artifacts) -> None:
    """A banner on every page when the loaded build comes from the demo generator, not real shoppers."""
    source = str(((arts.manifest or {}).get("data") or {}).get("source", ""))
    if not source.startswith(SYNTHETIC_SOURCE):
        return
    st.warning(
        f"**Synthetic data.** This build comes from the project's {SYNTHETIC_SOURCE} "
        f"({source.removeprefix(SYNTHETIC_SOURCE).strip(' ()')}), not from real shoppers: its "
        "figures are calibrated to published RetailRocket figures, but no real visitor is in it. "
        "For real results, download the RetailRocket e-commerce dataset (events.csv, "
        "item_properties_part1.csv, item_properties_part2.csv, category_tree.csv) into one folder "
        "and run `python -m core build --raw-dir FOLDER`.",
        icon=":material/science:",
    )
