"""CI smoke run of the atheris RED harness (tests/fuzz/fuzz_red.py) for a few seconds."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("atheris", reason="atheris is in the [test] extras; install them")

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "fuzz_red.py")


@pytest.mark.slow
def test_fuzz_red_smoke(tmp_path):
    # Findings make libFuzzer exit non-zero and write crash-* into the working directory.
    r = subprocess.run([sys.executable, HARNESS, "-max_total_time=3", "-seed=1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Done" in r.stderr and not list(tmp_path.glob("crash-*"))
