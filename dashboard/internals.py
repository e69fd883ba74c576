"""Every use of a Streamlit internal (anything outside Streamlit's documented API), in one place.

The dashboard reaches below the public API for two reasons: the entry-point guard needs the
script Streamlit was started with, and a 1 GB host needs a dropped upload's memory back sooner
than Streamlit frees it (an uploader keeps a file's bytes while the file is shown, a served
download's bytes live for two more script runs, and an expired session is never shut down).

``RECSYS_WORKAROUNDS=0`` (core.base.memory.workarounds_enabled) turns every memory workaround off:
Streamlit then frees things when it would anyway, and core.base.memory leaves glibc's allocator alone.
The guard's look-up of the main script stays, as the dashboard cannot route a deep link without it.

Each workaround falls back quietly at run time (the memory is then freed later, by Streamlit).
``broken_internals`` lists what a Streamlit upgrade changed; tests/test_internals.py fails on it,
naming the internal.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import threading
import time
from typing import Any

import streamlit as st
from streamlit.typing import UploadedFile

from core.base.memory import release_memory, workarounds_enabled

log = logging.getLogger(__name__)

# (module, attribute path, the parameters it must take, after self) of every internal used here.
INTERNALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("streamlit.runtime.scriptrunner", "get_script_run_ctx", ("suppress_warning",)),
    ("streamlit.runtime", "Runtime.exists", ()),
    ("streamlit.runtime", "Runtime.instance", ()),
    ("streamlit.runtime", "Runtime.is_active_session", ("session_id",)),
    ("streamlit.runtime", "Runtime.clear_user_info_for_session", ("session_id",)),
    ("streamlit.runtime.media_file_manager", "MediaFileManager.remove_orphaned_files", ()),
    ("streamlit.runtime.memory_uploaded_file_manager", "MemoryUploadedFileManager.add_file", ("session_id", "file")),
    ("streamlit.runtime.uploaded_file_manager", "UploadedFileRec", ("file_id", "name", "type", "data")),
)
# Fields of the ScriptRunContext that get_script_run_ctx returns, and properties of the Runtime.
CONTEXT_FIELDS = ("session_id", "main_script_path", "uploaded_file_mgr")
RUNTIME_PROPERTIES = ("media_file_mgr",)


def _parameters(obj: Any) -> tuple[str, ...]:
    """The parameter names of a callable (NamedTuple: its fields), self and cls left out."""
    if isinstance(obj, type) and hasattr(obj, "_fields"):
        return tuple(obj._fields)
    return tuple(p for p in inspect.signature(obj).parameters if p not in ("self", "cls"))


def broken_internals() -> list[str]:
    """One line per Streamlit internal this module needs that is missing or changed; [] when all fit."""
    problems = []
    for module, path, params in INTERNALS:
        name = f"{module}.{path}"
        try:
            obj: Any = importlib.import_module(module)
            for part in path.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{name} is gone ({exc})")
            continue
        if _parameters(obj) != params:
            problems.append(f"{name} takes {_parameters(obj)}, expected {params}")
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.scriptrunner import ScriptRunContext

        fields = {f.name for f in dataclasses.fields(ScriptRunContext)}
        problems += [f"ScriptRunContext.{f} is gone" for f in CONTEXT_FIELDS if f not in fields]
        problems += [
            f"Runtime.{p} is gone" for p in RUNTIME_PROPERTIES if not isinstance(getattr(Runtime, p, None), property)
        ]
    except (ImportError, TypeError) as exc:
        problems.append(f"streamlit.runtime.scriptrunner.ScriptRunContext is gone or not a dataclass ({exc})")
    return problems


def _context() -> Any:
    """The current script run's context; None outside a script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx()


def main_script_path() -> str | None:
    """The script Streamlit was started with (``streamlit run X``, or AppTest's file); None outside a run."""
    ctx = _context()
    return None if ctx is None else str(ctx.main_script_path)


def _server() -> Any:
    """The Streamlit server's Runtime; None in a bare script or in AppTest (a mock Runtime)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return None
    runtime = Runtime.instance()
    return runtime if type(runtime) is Runtime else None


def _served_session() -> Any:
    """The current run's context when a real server runs it and the workarounds are on, else None."""
    if not workarounds_enabled():
        return None
    ctx = _context()
    return None if ctx is None or _server() is None else ctx


def drop_upload_bytes(uploaded: Any, key: str) -> None:
    """Let Streamlit drop an uploaded file's bytes once the page has read them.

    The uploader keeps every file's bytes for as long as the file is in it, next to the table
    decoded from them. The file's record is replaced by an empty one with the same id, name and
    type, so the widget keeps showing the file and its value keeps its id (the page reads a file
    once per id). The widget's values (``key``'s and the one returned) are closed too: they share
    the bytes, copy-on-write.
    """
    ctx = _served_session()
    if ctx is None:  # AppTest re-reads the files it uploaded: leave them
        return
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    try:
        ctx.uploaded_file_mgr.add_file(  # the memory manager's own method, as the upload route calls it
            ctx.session_id, UploadedFileRec(uploaded.file_id, uploaded.name, uploaded.type, b"")
        )
    except Exception:  # another uploaded-file manager: its bytes stay until the file is removed
        log.debug("uploaded_file_mgr.add_file failed; the upload's bytes stay until it is removed", exc_info=True)
    for value in (uploaded, st.session_state.get(key)):
        if isinstance(value, UploadedFile):
            value.close()


def drop_served_downloads() -> None:
    """Free the bytes of downloads already served, as the end of a script run does.

    Streamlit keeps a clicked download's bytes until two later script runs have ended: the first
    marks them, the second deletes them. The run that drops an upload is often the last one, so
    it does the first pass itself and its own end the second. Every session's served downloads
    are swept alike, as any run's end sweeps them.
    """
    runtime = _server() if workarounds_enabled() else None
    try:
        if runtime is not None:
            runtime.media_file_mgr.remove_orphaned_files()
    except Exception:  # Streamlit changed: the next runs' ends free them
        log.debug("media_file_mgr.remove_orphaned_files failed; later runs free the downloads", exc_info=True)


WATCH_INTERVAL_S = 2.0
# session id -> when it was first seen without its tab (time.monotonic), None while connected
_watched: dict[str, float | None] = {}
# session id -> the session-state entries to empty when it is closed (keep_in_session)
_held: dict[str, list[dict[str, Any]]] = {}
_watch_lock = threading.Lock()
_watcher: list[threading.Thread] = []


def keep_in_session(key: str, entry: dict[str, Any]) -> None:
    """``st.session_state[key] = entry``; the entry is emptied by ``release_from_session`` or
    when the tab's session is closed (``close_session_when_tab_closes``).

    Emptied, not only dropped: after a tab closes, Streamlit's event loop can keep a reference
    to its last session (a loop variable) until another session sends messages.
    """
    st.session_state[key] = entry
    ctx = _served_session()
    if ctx is None:  # a bare script or AppTest: no server to outlive
        return
    with _watch_lock:
        _held[ctx.session_id] = [e for e in _held.get(ctx.session_id, []) if e] + [entry]
    close_session_when_tab_closes()


def release_from_session(key: str) -> None:
    """Drop and empty a ``keep_in_session`` entry, so nothing that still holds it keeps its data."""
    entry = st.session_state.pop(key, None)
    if isinstance(entry, dict):
        entry.clear()


def close_session_when_tab_closes() -> None:
    """Close this session, and free what it holds, once its tab has been gone for
    ``server.disconnectedSessionTTL`` (30 s, .streamlit/config.toml).

    Streamlit keeps a closed tab's session that long so a reconnecting tab can resume it, but
    when the time is up it only stops offering it: it does not shut it down. Its session state
    (a 1.4M-row table) stays in memory until some other session disconnects, and its uploaded
    files stay for good. A watcher thread therefore empties the session's ``keep_in_session``
    entries and closes it just before the TTL runs out, with
    ``Runtime.clear_user_info_for_session`` (safe from any thread: it marks the session as not
    resumable and closes it on the event loop).
    """
    ctx = _served_session()
    if ctx is None:  # a bare script or AppTest: no server to outlive
        return
    with _watch_lock:
        _watched.setdefault(ctx.session_id, None)
        if not _watcher:
            _watcher.append(threading.Thread(target=_watch, name="close-closed-tabs", daemon=True))
            _watcher[0].start()


def _watch() -> None:
    """Every WATCH_INTERVAL_S: close the watched sessions whose tab is gone for the TTL (less
    two intervals, so the session is closed before Streamlit stops offering it), then free."""
    grace = max(0.0, float(st.get_option("server.disconnectedSessionTTL")) - 2 * WATCH_INTERVAL_S)
    to_free = 0  # ticks left that free memory after a close (shutdown runs on the event loop)
    while True:
        time.sleep(WATCH_INTERVAL_S)
        try:
            runtime = _server()
            now = time.monotonic()
            with _watch_lock:
                for session_id, since in list(_watched.items()):
                    if runtime.is_active_session(session_id):
                        _watched[session_id] = None
                    elif since is None:
                        _watched[session_id] = now
                    elif now - since >= grace:
                        del _watched[session_id]
                        for entry in _held.pop(session_id, []):
                            entry.clear()
                        runtime.clear_user_info_for_session(session_id)
                        to_free = 2
            if to_free:
                to_free -= 1
                drop_served_downloads()  # the second pass: the session's shutdown did the first
                release_memory()
        except Exception:  # the server is stopping, or Streamlit changed: try again later
            continue
