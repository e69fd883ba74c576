"""RecSys analytics dashboard: entry point, navigation and the artifact status sidebar.

Run with ``streamlit run streamlit_app.py``. Artifacts come from ``recsys_artifacts/`` (or
``$RECSYS_ARTIFACT_DIR``), verified against their manifest by ``core.store.artifacts.load_artifacts``.

The page scripts live in ``pages/``. Until some session has called ``st.navigation``, Streamlit
treats that folder as a legacy multipage app and runs a deep link (``/anomaly``) as the bare
page script; every page's first line, ``entry_point_guard(__file__)``, notices that (no
ENTRY_MARKER from this file) and runs this file in place, which runs the requested page.
"""

from pathlib import Path

import streamlit as st

from core import __version__
from core.store.artifacts import REBUILD_HINT
from dashboard.cache import artifacts
from dashboard.format import built_date
from dashboard.guard import ENTRY_MARKER
from dashboard.notices import synthetic_banner
from dashboard.widgets import collapse_sidebar_on_phone

# The icon is a file of the app: a material icon or an emoji would be fetched from Google's or a
# CDN's servers, and no request may leave the machine.
ICON = Path(__file__).resolve().parent / "assets" / "favicon.png"
st.set_page_config(page_title="RecSys analytics", page_icon=str(ICON), layout="wide", initial_sidebar_state="auto")

page = st.navigation(
    [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("pages/ranking.py", title="Next-category ranking", icon=":material/format_list_numbered:"),
        st.Page("pages/anomaly.py", title="Anomalous users", icon=":material/person_alert:"),
        st.Page("pages/cleaning_kpis.py", title="Cleaning KPIs", icon=":material/insights:"),
    ],
    # In the top bar, not the sidebar: on a phone the sidebar covered the page after every choice.
    position="top",
)

with st.sidebar:
    arts = artifacts()
    info = arts.summary()
    st.subheader("Artifacts")
    if info["manifest_ok"]:
        st.success("Manifest check passed", icon=":material/verified:")
    elif arts.refused:  # a manifest was found but not trusted: say so, and why (as plain text)
        st.error("Build refused: no model is loaded", icon=":material/gpp_bad:")
        st.text(arts.refused)
    elif arts.manifest is None:
        st.warning("No build found", icon=":material/warning:")
    else:
        st.error("Manifest check failed", icon=":material/gpp_bad:")
    data = info.get("data") or {}
    events = data.get("events")
    st.markdown(
        f"- **Ranking model:** {info['ranking_model'] or 'none (rule fallback)'}\n"
        f"- **Detector:** {'loaded' if info['detector_loaded'] else 'not loaded'}\n"
        f"- **Built:** {built_date(info['built_at'])}\n"
        f"- **Data:** {data.get('source', '–')}\n"
        + (
            f"- **Events:** {events:,}" + (f" ({data['scale']} scale)" if data.get("scale") else "") + "\n"
            if isinstance(events, int)
            else ""
        )
        + f"- **Seed:** {info['seed'] if info['seed'] is not None else '–'}"
    )
    if info["problems"]:
        with st.expander(f"{len(info['problems'])} problem(s)"):
            for problem in info["problems"]:
                st.markdown(f"- {problem}")
    st.caption(f"{REBUILD_HINT} Artifact folder: `{info['artifact_dir']}` · core {__version__}")

synthetic_banner(arts)
collapse_sidebar_on_phone(page.url_path)  # url_path: a page's title is unset in bare mode (a spawned worker)
st.session_state[ENTRY_MARKER] = True  # the page's entry_point_guard checks and takes it
page.run()
