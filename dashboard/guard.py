"""The entry-point guard: the first statement of every page, so a page always runs inside
streamlit_app.py (its navigation, sidebar and banner).

Why it exists: with a ``pages/`` folder next to the entry script, Streamlit starts in its legacy
multipage mode (``PagesManager.uses_pages_directory``, which only a call to ``st.navigation``
clears, for the whole server). In that mode a deep link such as ``/anomaly`` on a freshly
started server runs ``pages/anomaly.py`` as a bare script (``_mpa_v1`` in Streamlit's script
runner), without streamlit_app.py. The guard notices the missing marker and runs
streamlit_app.py in place, which calls st.navigation (ending legacy mode), draws the sidebar and
runs the requested page. tests/test_browser.py opens such a deep link first on a fresh server;
without the ``exec`` below that test fails (the page runs bare: no sidebar, no navigation), so it
also tells when a Streamlit release makes the guard unnecessary.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.internals import main_script_path

ENTRY_POINT = Path(__file__).resolve().parent.parent / "streamlit_app.py"
# Set by streamlit_app.py on every run, just before it runs the page; each page's guard takes it.
ENTRY_MARKER = "_ran_streamlit_app"


def entry_point_guard(page_file: str) -> None:
    """First line of every page: make sure the page runs inside streamlit_app.py.

    A run without the marker runs streamlit_app.py in place (which runs the requested page) and
    stops. No rerun, so the widget events of this run are kept. A page started on its own
    (``streamlit run pages/x.py``, AppTest of a page) says how to start the dashboard instead.
    """
    if st.session_state.pop(ENTRY_MARKER, False):
        return
    main = main_script_path()
    if main is None or Path(main).resolve() != ENTRY_POINT:  # e.g. `streamlit run pages/x.py`
        st.error("Start the dashboard with `streamlit run streamlit_app.py`.", icon=":material/block:")
        st.stop()
    code = compile(ENTRY_POINT.read_text(encoding="utf-8"), str(ENTRY_POINT), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(ENTRY_POINT)})
    st.stop()
