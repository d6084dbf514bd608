"""Evaluation harness: loss traces x conditions x speech files, scored.

``metrics`` wraps PESQ-WB, STOI, PLCMOS and DNSMOS (the ``eval`` extra);
``runner.run_eval`` runs the grid and writes CSV/Markdown/PNG results;
``cli.register`` adds ``edge-dred eval``.  Nothing here is needed on a board,
so submodules are imported lazily.
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_eval"]


def run_eval(*args: Any, **kwargs: Any) -> Any:
    """Shortcut for :func:`edge_dred.evaluate.runner.run_eval`."""
    from .runner import run_eval as _run_eval

    return _run_eval(*args, **kwargs)
