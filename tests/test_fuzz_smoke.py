"""Every fuzz harness (tests/fuzz/) runs a few seconds in CI from its checked-in seeds.

A finding makes libFuzzer exit non-zero with the crashing input saved in the
scratch directory; reproduce it with ``python tests/fuzz/fuzz_<name>.py <file>``.
Long runs and the sanitizer pass: ``tests/fuzz/run_all.sh`` (docs/security.md).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "tests", "fuzz")
HARNESSES = sorted(f[5:-3] for f in os.listdir(FUZZ) if f.startswith("fuzz_") and f.endswith(".py"))
SMOKE_SECONDS = 3


def test_every_untrusted_parser_has_a_harness_and_seeds():
    assert set(HARNESSES) >= {"rtp", "srtp", "jitter", "opus", "dred", "ogg", "wav", "sdp", "weights", "npz"}
    for h in HARNESSES:
        assert os.listdir(os.path.join(FUZZ, "corpus", h)), h


@pytest.mark.slow
@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_harness_smoke(tmp_path, name):
    pytest.importorskip("atheris", reason="atheris not installed (pip install '.[test]')")
    if name == "srtp":
        pytest.importorskip("pylibsrtp")
    p = subprocess.run([sys.executable, os.path.join(FUZZ, f"fuzz_{name}.py"), f"-max_total_time={SMOKE_SECONDS}",
                        "-rss_limit_mb=2048", "-timeout=10", f"-artifact_prefix={tmp_path}/", str(tmp_path),
                        os.path.join(FUZZ, "corpus", name)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    tail = p.stderr[-3000:]
    assert p.returncode == 0, tail
    assert "Done " in p.stderr and " runs in " in p.stderr, tail
