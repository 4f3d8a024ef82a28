"""Serve the web app with its heavy imports (torch, xarray, agents) warmed while the server starts.

``python app/serve.py app/streamlit_app.py [options]`` is ``streamlit run app/streamlit_app.py [options]``
plus a background thread that imports the platform's packages at once, so a first visit does not wait for them
(they are what a cold first page load spends its time on: ``python -X importtime``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from app import warm

    warm.start()  # the pages wait for it (app/warm.py)
    from streamlit.web import cli

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):  # the script is optional: the app's own by default
        args = [str(HERE / "streamlit_app.py"), *args]
    sys.argv = ["streamlit", "run", *args]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
