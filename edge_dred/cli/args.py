"""Argument types and helpers shared by every command (no command lives here)."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = ["CLIError", "number_arg"]


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def number_arg(cast: type, what: str, ok, rule: str):
    """An argparse ``type=`` that parses with ``cast`` and checks ``ok(value)``.

    Errors read ``expected <what>, got '<text>'`` or ``<rule>, got <value>``.
    """

    def parse(s: str):
        try:
            v = cast(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{rule}, got {v}")
        return v

    parse.__name__ = what
    return parse


_positive_int = number_arg(int, "an integer", lambda v: v > 0, "expected a positive integer")
_percent = number_arg(float, "a percentage", lambda v: 0.0 <= v < 100.0, "loss percentage must be in [0, 100)")
_dred_ms = number_arg(int, "milliseconds", lambda v: v == 0 or 40 <= v <= 1040, "DRED depth must be 0 or 40..1040 ms")


def _jitter_ms(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {s!r}") from None
    if not 0 <= v <= 10_000:
        raise argparse.ArgumentTypeError(f"jitter-buffer depth must be 0..10000 ms, got {v}")
    return v


def _build_loss(args: argparse.Namespace):
    from ..loss import GilbertElliott, NoLoss, TraceLoss, UniformLoss, load_trace

    if args.trace is not None:
        return TraceLoss(load_trace(args.trace))
    if args.loss is None:
        if args.burst is not None:
            raise CLIError("--burst needs --loss PCT")
        return NoLoss()
    if args.burst is not None and args.burst > 1:
        return GilbertElliott(args.loss, args.burst, seed=args.seed)
    return UniformLoss(args.loss, seed=args.seed)
