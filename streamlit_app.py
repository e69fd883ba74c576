"""RecSys analytics dashboard: entry point, navigation and the artifact status sidebar.

Run with ``streamlit run streamlit_app.py``. Artifacts come from ``recsys_artifacts/`` (or
``$RECSYS_ARTIFACT_DIR``), verified against their manifest by ``core.artifacts.load_artifacts``.

The page scripts live in ``app_pages/``, not ``pages/``: with a ``pages/`` folder Streamlit falls
back to its legacy multipage mode until a first session has called ``st.navigation``, so a
first visitor's deep link (``/anomaly``) would run the page without this entry point.
"""

import streamlit as st

from core import __version__
from core.artifacts import REBUILD_HINT
from app_pages._shared import artifacts

st.set_page_config(page_title="RecSys analytics", page_icon=":material/shopping_cart:", layout="wide")

page = st.navigation(
    [
        st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("app_pages/ranking.py", title="Next-category ranking", icon=":material/format_list_numbered:"),
        st.Page("app_pages/anomaly.py", title="Anomalous users", icon=":material/person_alert:"),
        st.Page("app_pages/cleaning_kpis.py", title="Cleaning KPIs", icon=":material/insights:"),
    ]
)

with st.sidebar:
    arts = artifacts()
    info = arts.summary()
    st.subheader("Artifacts")
    if info["manifest_ok"]:
        st.success("Manifest check passed", icon=":material/verified:")
    elif arts.manifest is None:
        st.warning("No build found", icon=":material/warning:")
    else:
        st.error("Manifest check failed", icon=":material/gpp_bad:")
    data = info.get("data") or {}
    events = data.get("events")
    st.markdown(
        f"- **Ranking model:** {info['ranking_model'] or 'none (rule fallback)'}\n"
        f"- **Detector:** {'loaded' if info['detector_loaded'] else 'not loaded'}\n"
        f"- **Built:** {info['built_at'] or '–'}\n"
        f"- **Data:** {data.get('source', '–')}\n"
        + (f"- **Events:** {events:,}" + (f" ({data['scale']} scale)" if data.get("scale") else "") + "\n"
           if isinstance(events, int) else "")
        + f"- **Seed:** {info['seed'] if info['seed'] is not None else '–'}"
    )
    if info["problems"]:
        with st.expander(f"{len(info['problems'])} problem(s)"):
            for problem in info["problems"]:
                st.markdown(f"- {problem}")
    st.caption(f"{REBUILD_HINT} Artifact folder: `{info['artifact_dir']}` · core {__version__}")

page.run()
