"""The mftt web app: explore scenarios, compare weight laws, the transformer lab and the results browser.

Serve it with ``make app`` (or ``streamlit run app/streamlit_app.py``); pages live in ``app/views/``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).parent
# `streamlit run` puts app/ (not the repo root) on sys.path: put the repo root first so that the app imports
# this checkout's packages even without an install (PyPI also has packages named `control` and `agents`).
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import streamlit as st  # noqa: E402

# a local favicon: a material icon would be fetched from a font host (fails offline, console error)
st.set_page_config(page_title="mftt", page_icon=str(HERE / "static" / "favicon.png"), layout="wide")

from app import warm  # noqa: E402

# Widget state survives page changes: the pages' inputs are created with persist_state="session".

PAGES = [
    st.Page(
        HERE / "views" / "explore.py", title="Explore", icon=":material/explore:", default=True
    ),
    st.Page(
        HERE / "views" / "compare.py", title="Compare weight laws", icon=":material/compare_arrows:"
    ),
    st.Page(HERE / "views" / "lab.py", title="Transformer lab", icon=":material/science:"),
    st.Page(HERE / "views" / "runs.py", title="Runs", icon=":material/folder_open:"),
]

page = st.navigation(PAGES)
# served by app/serve.py, still importing torch & co. in the background: wait for it before a page imports
# them (Explore waits itself, after drawing its title and landing text)
if not warm.ready() and page.title != "Explore":
    with st.spinner("Loading torch and the platform (first visit after the server started)…"):
        warm.wait()
page.run()
