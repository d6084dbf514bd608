"""Argument types and helpers shared by every command (no command lives here)."""
from __future__ import annotations

import argparse
import os

from ..outputs import write_atomic

__all__ = ["CLIError", "number_arg", "add_recovery_ms", "add_retired_jitter_ms"]


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, text.encode())


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
_red_distance = number_arg(int, "an integer", lambda v: 0 <= v <= 3, "expected 0..3 earlier frames")


_recovery_ms = number_arg(int, "milliseconds", lambda v: 0 <= v <= 1040, "recovery look-ahead must be 0..1040 ms")


class _Renamed(argparse.Action):
    """A retired option: parsing it stops with a hint to its replacement."""

    def __init__(self, option_strings, dest, hint: str = "", **kw) -> None:
        self.hint = hint
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} {self.hint}")


#: ``--recovery-ms`` help, shared by every command that has it.
RECOVERY_MS_HELP = ("receiver look-ahead: how long a slot waits for later packets' LBRR/RED/DRED, so DRED fills bursts "
                    "up to this length and the end of longer ones; adds to the latency (default 60 with DRED, else "
                    "20 with LBRR; 1040 = libopus's assumption that the first packet after a burst arrives in time)")


def add_recovery_ms(p: argparse.ArgumentParser, help: str = RECOVERY_MS_HELP) -> None:
    """Add ``--recovery-ms`` (the receiver's look-ahead for LBRR/DRED)."""
    p.add_argument("--recovery-ms", type=_recovery_ms, metavar="MS", help=help)


def add_retired_jitter_ms(p: argparse.ArgumentParser) -> None:
    """Offline commands: ``--jitter-ms`` (the live jitter-buffer delay) stops with a hint to ``--recovery-ms``."""
    p.add_argument("--jitter-ms", action=_Renamed, metavar="MS",
                   hint="is the jitter-buffer target delay of send/recv/live; offline runs have no jitter buffer. "
                        "For the DRED look-ahead use --recovery-ms MS")


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
