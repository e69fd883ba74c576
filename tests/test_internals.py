"""dashboard.internals: every Streamlit internal the dashboard uses is still there, with the
parameters it is called with; a Streamlit upgrade that changes one fails here, naming it."""

from __future__ import annotations

import pytest

from core.base import memory
from dashboard import internals


def test_every_streamlit_internal_is_present_with_its_signature():
    broken = internals.broken_internals()
    assert not broken, "Streamlit internals changed:\n" + "\n".join(broken)


def test_the_check_names_an_internal_that_changed(monkeypatch):
    from streamlit.runtime import Runtime

    def clear_user_info_for_session(self, session, force):  # a changed signature
        return None

    monkeypatch.setattr(Runtime, "clear_user_info_for_session", clear_user_info_for_session)
    monkeypatch.delattr(Runtime, "is_active_session")
    broken = internals.broken_internals()
    assert any("Runtime.clear_user_info_for_session takes ('session', 'force')" in b for b in broken), broken
    assert any("Runtime.is_active_session is gone" in b for b in broken), broken


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("1", True), ("0", False), (" 0 ", False)])
def test_one_switch_turns_the_workarounds_off(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv(memory.WORKAROUNDS_ENV, raising=False)
    else:
        monkeypatch.setenv(memory.WORKAROUNDS_ENV, value)
    assert memory.workarounds_enabled() is enabled


def test_with_the_switch_off_no_internal_is_touched(monkeypatch):
    """Off, the workarounds return before any Streamlit internal (or the server) is looked up."""
    monkeypatch.setenv(memory.WORKAROUNDS_ENV, "0")

    def fail(*args, **kwargs):
        raise AssertionError("a Streamlit internal was used with the workarounds off")

    monkeypatch.setattr(internals, "_server", fail)
    monkeypatch.setattr(internals, "_context", fail)
    internals.drop_upload_bytes(object(), "key")
    internals.drop_served_downloads()
    internals.close_session_when_tab_closes()
