"""Small widgets the pages share: template downloads, deferred download data, and closing the
sidebar on a phone after a page is chosen."""

from __future__ import annotations

import html
from collections.abc import Callable
from functools import partial
from typing import Any

import streamlit as st

from core.base.memory import release_memory
from core.userfiles.templates import TEMPLATES, template_csv

# Runs in the component's iframe, which is served by the app (srcdoc) from the same origin.
_COLLAPSE_ON_PHONE_JS = """<script>
const doc = window.parent.document;
if (window.parent.matchMedia("(max-width: 768px)").matches) {
  const bar = doc.querySelector('[data-testid="stSidebar"]');
  const button = doc.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (bar && button && bar.getAttribute("data-collapsed") === "false") button.click();
}
</script>"""


def collapse_sidebar_on_phone(page_key: str) -> None:
    """Close the sidebar after a page is chosen, on a phone only: there it lists the pages and
    covers 300 of 390 px, and Streamlit leaves it open after the choice. Only on a page change,
    so the sidebar opened to read the build status stays open while the page is used."""
    if st.session_state.get("_shown_page") == page_key:
        return
    st.session_state["_shown_page"] = page_key
    with st.sidebar:  # the page name makes a new document, so the script runs again (a same one is kept)
        st.iframe(f"<!-- {html.escape(page_key)} -->" + _COLLAPSE_ON_PHONE_JS, height=1)


def template_download(kind: str, where: Any = None) -> None:
    """A 'download a template' button for one upload kind (a key of core.userfiles.templates.TEMPLATES):
    a small example file of the expected layout, made by core.userfiles.templates."""
    name, data = template_csv(kind)
    (where or st).download_button(
        f"Template: {kind}",
        data,
        name,
        "text/csv",
        key=f"template_{kind.replace(' ', '_')}",
        on_click="ignore",
        icon=":material/description:",
        help=f"A small example {kind} file in the layout this upload expects ({name}).",
    )


def template_downloads(*kinds: str) -> None:
    """Template buttons for these upload kinds in one row (all kinds when none given)."""
    row = st.container(horizontal=True)
    for kind in kinds or tuple(TEMPLATES):
        template_download(kind, row)


def download_data(build: Callable[..., bytes], *args: Any) -> Callable[[], bytes]:
    """A download button's ``data``: ``build(*args)`` when the button is clicked, after which the
    build's temporaries go back to the OS.

    Made here, not in a page: a function defined in a page script holds every name of that run
    (the uploaded table too) for as long as Streamlit keeps the button's callable.
    """
    return partial(_build_and_release, build, *args)


def _build_and_release(build: Callable[..., bytes], *args: Any) -> bytes:
    """build(*args), then release_memory."""
    data = build(*args)
    release_memory()
    return data
