"""Shared entry point of the fuzz harnesses (atheris, libFuzzer underneath).

Each ``fuzz_<parser>.py`` defines ``test_one_input(data: bytes)``: it feeds the
bytes to one parser of untrusted input, lets the parser's documented error
type pass, and checks the invariants of what is accepted.  Anything else --
another exception type, a failed invariant, a crash or a sanitizer report in
a C extension -- is a finding.

Run one (arguments go to libFuzzer; the first corpus directory receives new
inputs, so give a scratch one before the checked-in seeds)::

    .venv/bin/python tests/fuzz/fuzz_rtp.py -max_total_time=60 /tmp/rtp tests/fuzz/corpus/rtp

``tests/fuzz/run_all.sh`` runs them all (long runs, sanitizer builds);
``tests/test_fuzz_smoke.py`` runs each for a few seconds in CI.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# EDGE_DRED_FUZZ_TREE: the copy that tests/fuzz/build_native.sh built with clang (libFuzzer coverage,
# ASan, UBSan) is imported instead of this checkout; its runtime must be preloaded (run_all.sh native).
TREE = os.path.abspath(os.environ["EDGE_DRED_FUZZ_TREE"]) if os.environ.get("EDGE_DRED_FUZZ_TREE") else ROOT
if TREE not in sys.path:
    sys.path.insert(0, TREE)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Imports inside it get atheris's Python coverage (none without atheris) and come from `TREE`."""
    try:
        import atheris
    except ImportError:
        ctx = contextlib.nullcontext()
    else:
        ctx = atheris.instrument_imports(include=["edge_dred"])
    with ctx:
        yield
    if TREE != ROOT:  # an editable install must not slip the uninstrumented extensions in
        stray = [m.__file__ for name, m in list(sys.modules.items()) if name.startswith("edge_dred")
                 and getattr(m, "__file__", None) and not os.path.abspath(m.__file__).startswith(TREE + os.sep)]
        if stray:
            raise SystemExit(f"EDGE_DRED_FUZZ_TREE={TREE}, but imported from elsewhere: {stray[:3]}")


def seeds(name: str) -> list[bytes]:
    """The checked-in seed corpus of one harness."""
    d = os.path.join(CORPUS, name)
    out = []
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, f), "rb") as fh:
            out.append(fh.read())
    return out


def main(test_one_input: Callable[[bytes], None]) -> None:
    """libFuzzer's command line (``-runs=N``, ``-max_total_time=S``, corpus dirs), or ``--replay NAME``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--replay":  # no atheris needed: run the seeds once
        for data in seeds(sys.argv[2]):
            test_one_input(data)
        print(f"replayed {len(seeds(sys.argv[2]))} seeds")
        return
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


class Scratch:
    """A file on tmpfs (when there is one) for parsers that read paths."""

    def __init__(self, suffix: str) -> None:
        import tempfile

        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        fd, self.path = tempfile.mkstemp(suffix=suffix, dir=base)
        os.close(fd)

    def write(self, data: bytes) -> str:
        with open(self.path, "wb") as f:
            f.write(data)
        return self.path
