"""Model files: skops bytes built only from an explicit list of trusted types, never pickle code."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import skops.io as sio

from core.base.errors import ArtifactError

# scikit-learn types our models hold that skops does not trust by default; both are plain
# fitted-tree containers rebuilt from arrays, with no callable state.
SKLEARN_TRUSTED: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


# Decompressed bytes a model file may unzip to, per kind (the expected class's name), checked on
# the zip's directory before any member is read (docs/ARCHITECTURE.md, "Artifact limits"). The
# demo build's ranking model unzips to 10 MB and its largest detector to 5 MB.
MAX_UNZIPPED_BYTES: dict[str, int] = {"RankingModel": 512 << 20, "Detector": 256 << 20}
MAX_MEMBERS = 100_000
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def type_name(obj: Any) -> str:
    """The dotted name skops records for a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def trusted_types() -> list[str]:
    """Every type a model file may hold beyond skops' own safe defaults."""
    # Imported here: core.ranking and core.anomaly are heavy and the loader is imported early.
    from core.anomaly.detector import DETECTORS
    from core.ranking.markov import MarkovModel
    from core.ranking.models import RankingModel

    ours = (RankingModel, MarkovModel, *DETECTORS.values())
    return sorted({*SKLEARN_TRUSTED, *(type_name(t) for t in ours)})


def dump_model(obj: Any) -> bytes:
    """A model as skops bytes; ArtifactError if it holds a type the loader would refuse."""
    data = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted_types()))
    if unknown:
        raise ArtifactError(f"{type(obj).__name__} holds types the loader does not trust: {unknown}")
    kind = _model_kind(obj)
    if kind is not None:  # fail the build, not the next load
        try:
            check_unzipped_size(data, kind)
        except ArtifactError as exc:
            raise ArtifactError(f"{type(obj).__name__} {exc}; the loader would refuse it") from exc
    return data


def _model_kind(obj: Any) -> type | None:
    """The kind (RankingModel or Detector) the loader expects ``obj`` as; None for anything else."""
    from core.anomaly.detector import Detector
    from core.ranking.models import RankingModel

    return next((t for t in (RankingModel, Detector) if isinstance(obj, t)), None)


def check_unzipped_size(data: bytes, expected: type) -> None:
    """Refuse a zip whose members would unzip to more than the cap for ``expected``'s kind.

    A member's declared size is what Python's zipfile will ever return for it (it stops there
    and fails on the CRC), so checking the directory is enough: nothing is decompressed here.
    """
    cap = MAX_UNZIPPED_BYTES.get(expected.__name__, min(MAX_UNZIPPED_BYTES.values()))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except Exception as exc:  # not a zip, or a directory zipfile cannot parse: refuse, whatever the cause
        raise ArtifactError(f"is not a readable skops model file ({type(exc).__name__})") from exc
    if len(members) > MAX_MEMBERS:
        raise ArtifactError(f"is a zip of {len(members):,} members; at most {MAX_MEMBERS:,} are accepted")
    odd = sorted({m.compress_type for m in members} - set(ZIP_METHODS))
    if odd:
        raise ArtifactError(f"uses zip compression methods {odd}; skops writes only stored or deflated members")
    total = sum(m.file_size for m in members)
    if total > cap:
        raise ArtifactError(
            f"unzips to {total / 2**20:,.0f} MiB; at most {cap >> 20} MiB for a {expected.__name__} are accepted"
        )


def load_model(data: bytes, expected: type) -> Any:
    """The object in skops bytes, built only from trusted types and checked to be ``expected``.

    The zip's unzipped size is checked first: schema.json and every array are read only then.
    """
    check_unzipped_size(data, expected)
    trusted = trusted_types()
    try:
        # loads audits the file's types against ``trusted`` before it builds anything; a separate
        # get_untrusted_types first would parse the whole file twice on every successful load.
        obj = sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise _refusal(data, trusted, exc) from exc
    if not isinstance(obj, expected):  # every detector is a subclass of the Detector base
        raise ArtifactError(f"holds a {type(obj).__name__}, expected {expected.__name__}")
    return obj


def _refusal(data: bytes, trusted: list[str], exc: Exception) -> ArtifactError:
    """Why skops refused or failed on ``data``: unreadable, types outside ``trusted``, or broken."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as read_exc:  # a zip or schema skops cannot read: refuse, whatever the cause
        return ArtifactError(f"is not a readable skops model file ({type(read_exc).__name__})")
    unknown = sorted(set(untrusted) - set(trusted))
    if unknown:
        return ArtifactError(f"holds types outside the trusted list: {', '.join(unknown)}")
    return ArtifactError(f"could not be loaded ({type(exc).__name__})")
