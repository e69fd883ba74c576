"""Model files: skops bytes built only from an explicit list of trusted types, never pickle code."""

from __future__ import annotations

import zipfile
from typing import Any

import skops.io as sio

from core.errors import ArtifactError

# scikit-learn types our models hold that skops does not trust by default; both are plain
# fitted-tree containers rebuilt from arrays, with no callable state.
SKLEARN_TRUSTED: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


def type_name(obj: Any) -> str:
    """The dotted name skops records for a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def trusted_types() -> list[str]:
    """Every type a model file may hold beyond skops' own safe defaults."""
    # Imported here: core.ranking and core.anomaly are heavy and the loader is imported early.
    from core import ranking
    from core.anomaly.detector import DETECTORS

    ours = (ranking.RankingModel, ranking.MarkovModel, *DETECTORS.values())
    return sorted({*SKLEARN_TRUSTED, *(type_name(t) for t in ours)})


def dump_model(obj: Any) -> bytes:
    """A model as skops bytes; ArtifactError if it holds a type the loader would refuse."""
    data = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted_types()))
    if unknown:
        raise ArtifactError(f"{type(obj).__name__} holds types the loader does not trust: {unknown}")
    return data


def load_model(data: bytes, expected: type) -> Any:
    """The object in skops bytes, built only from trusted types and checked to be ``expected``."""
    trusted = trusted_types()
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a zip or schema skops cannot read: refuse, whatever the cause
        raise ArtifactError(f"is not a readable skops model file ({type(exc).__name__})") from exc
    unknown = sorted(set(untrusted) - set(trusted))
    if unknown:
        raise ArtifactError(f"holds types outside the trusted list: {', '.join(unknown)}")
    try:
        obj = sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactError(f"could not be loaded ({type(exc).__name__})") from exc
    if not isinstance(obj, expected):  # every detector is a subclass of the Detector base
        raise ArtifactError(f"holds a {type(obj).__name__}, expected {expected.__name__}")
    return obj
