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

# Widget state survives page changes: Streamlit drops the state of widgets a run did not draw, unless it is
# written back (docs: "preserve widget state across pages"). Buttons, downloads, uploads and grid editors
# refuse a written value: their keys carry one of the markers below.
_PAGES = ("ex_", "cmp_", "lab_", "runs_")
_NOT_SETTABLE = (
    "_run",
    "_rerun",
    "_example",
    "_cancel",
    "_preset_",
    "_editor_",
    "_dl_",
    "_upload",
    "_btn",
)
for _k in list(st.session_state):
    if isinstance(_k, str) and _k.startswith(_PAGES) and not any(m in _k for m in _NOT_SETTABLE):
        st.session_state[_k] = st.session_state[_k]

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

st.navigation(PAGES).run()
