"""The ``eval`` subcommand: ``edge-dred eval --speech DIR --traces DIR -o DIR``.

:func:`register` adds it to the main ``edge-dred`` parser; ``python -m
edge_dred.evaluate`` runs it on its own.  Errors are raised as ``ValueError``
subclasses (printed without a traceback by the caller).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli.args import add_recovery_ms, add_retired_jitter_ms

__all__ = ["register", "cmd_eval", "main"]


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _csv_list(s: str) -> list[str]:
    items = [x.strip() for x in s.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speech", required=True, metavar="DIR", help="speech files (.wav/.flac), searched recursively")
    p.add_argument("--traces", required=True, metavar="DIR", help="loss traces (*.txt, one 0/1 per 20 ms packet)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory for CSV, Markdown and PNGs")
    p.add_argument("--conditions", type=_csv_list, metavar="A,B,...",
                   help="conditions to run (default: all; see edge_dred.simulate.CONDITIONS)")
    p.add_argument("--max-files", type=_positive_int, metavar="N",
                   help="at most N files, spread evenly over speakers")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="worker processes (default 1)")
    p.add_argument("--metrics", type=_csv_list, default=None, metavar="A,B,...",
                   help="subset of pesq,stoi,plcmos,dnsmos,artifacts (default: all)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_recovery_ms(p, help="receiver look-ahead of the dred and red conditions: how long a slot waits for later "
                            "packets' DRED or RED copies (default 60; 1040 = libopus's assumption that the first packet after a burst "
                            "always arrives in time)")
    add_retired_jitter_ms(p)
    p.add_argument("--max-delay-ms", type=_positive_int, default=None, metavar="MS",
                   help="delay budget of the *_adaptive conditions (default 200)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation described by parsed ``eval`` arguments; print where results went."""
    from .metrics import MissingEvalExtraError
    from .runner import DEFAULT_METRICS, EvalConfigError, run_eval

    for what, d in (("speech", args.speech), ("traces", args.traces)):
        if not Path(d).is_dir():
            raise EvalConfigError(f"--{what} directory not found: {d}")
    try:
        rep = run_eval(
            args.speech, args.traces, args.out, conditions=args.conditions, max_files=args.max_files,
            jobs=args.jobs, progress=not args.quiet, metrics=args.metrics or DEFAULT_METRICS,
            plots=not args.no_plots, recovery_ms=args.recovery_ms, max_delay_ms=args.max_delay_ms,
        )
    except MissingEvalExtraError as e:
        # Surface as a ValueError so the main CLI prints it without a traceback.
        raise EvalConfigError(str(e)) from e
    print(f"{rep.n_items} simulations in {rep.wall_s:.1f} s; wrote {len(rep.outputs)} files to {args.out}")
    summary = Path(args.out) / "summary.md"
    if summary.exists():
        print(f"summary: {summary}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``argparse`` subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The ``eval`` parser (its handler is ``args.func``).
    """
    p = subparsers.add_parser("eval", help="score conditions over speech files x loss traces",
                              description="Simulate every speech file under every loss trace and condition, "
                                          "score with PESQ-WB, STOI, PLCMOS and DNSMOS, write CSV/Markdown/PNGs.")
    _add_arguments(p)
    p.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m edge_dred.evaluate``)."""
    p = argparse.ArgumentParser(prog="python -m edge_dred.evaluate", description="edge-dred evaluation harness")
    _add_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_eval(args)
    except (ValueError, OSError) as e:
        print(f"eval: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eval: interrupted (nothing half-written)", file=sys.stderr)
        return 130
