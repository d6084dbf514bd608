"""Total instructions of one command under callgrind (the benchmarks' differential counts).

One BLAS thread (valgrind serialises threads, and a worker thread's spin-wait would add a
run-to-run varying count) and a fixed hash seed, for the same reason.
"""
from __future__ import annotations

import os
import re
import subprocess


def callgrind_total(argv: list[str]) -> int:
    """Instructions (callgrind ``Ir``) of ``argv`` run to the end."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                              "PYTHONHASHSEED": "0"})
    m = re.search(r"Collected : (\d+)", out.stderr)
    if not m:
        raise RuntimeError(f"no callgrind total in:\n{out.stderr[-2000:]}")
    return int(m.group(1))
