"""agents.experiments — orchestration: configs, the grid and its fusion plan, backends (local, Ray, actors),
the runner, NetCDF results, budgets, background jobs, the comparison protocol and the CLI.

The only part of ``agents`` that imports Ray, xarray, typer, rich or plotting libraries; the game side
(``agents`` proper) never imports it (an import-linter contract, docs/architecture.md).
"""

from .background import Job, get_job, list_jobs, submit_job
from .config import Experiment, load_experiment
from .fusion import play_fused, play_many
from .results import open_results, write_results
from .runner import RunHandle, run_experiment, submit_experiment

__all__ = [
    "Experiment",
    "Job",
    "RunHandle",
    "get_job",
    "list_jobs",
    "load_experiment",
    "open_results",
    "play_fused",
    "play_many",
    "run_experiment",
    "submit_experiment",
    "submit_job",
    "write_results",
]
