"""Every fuzz harness (tests/fuzz/) runs a few seconds in CI from its checked-in seeds.

A finding makes libFuzzer exit non-zero with the crashing input saved in the
scratch directory; reproduce it with ``python tests/fuzz/fuzz_<name>.py <file>``.
Long runs and the sanitizer pass: ``tests/fuzz/run_all.sh`` (docs/security.md).
"""
from __future__ import annotations

import os
import platform
import shutil
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


def _inited_cov(stderr: str) -> int:
    line = next((ln for ln in stderr.splitlines() if "INITED cov:" in ln), None)
    assert line is not None, stderr[-3000:]
    return int(line.split("cov:")[1].split()[0])


@pytest.mark.slow
def test_native_build_gives_coverage_inside_the_compiled_parsers(tmp_path):
    # tests/fuzz/build_native.sh: clang + libFuzzer coverage + ASan/UBSan in a copy of the tree. The
    # same seeds must light up more edges with it than with the plain build (Python coverage only).
    pytest.importorskip("atheris", reason="atheris not installed (pip install '.[test]')")
    clang = shutil.which("clang")
    if clang is None or not os.path.exists(subprocess.run(
            [clang, f"-print-file-name=libclang_rt.fuzzer_no_main-{platform.machine()}.a"], capture_output=True,
            text=True).stdout.strip()):
        pytest.skip("clang with its libFuzzer/ASan runtime not installed (Debian: clang libclang-rt-14-dev)")
    out = tmp_path / "native"
    b = subprocess.run([os.path.join(FUZZ, "build_native.sh"), str(out)], capture_output=True, text=True,
                       timeout=900, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable})
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-2000:]
    assert "coverage + ASan/UBSan: edge_dred/dred/_entropy" in b.stdout
    native_env = {**os.environ, "EDGE_DRED_FUZZ_TREE": str(out / "tree"),
                  "LD_PRELOAD": str(out / "asan_with_fuzzer.so"),
                  "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1:detect_odr_violation=0"}
    for name in ("dred", "opusdec"):
        cov = {}
        for kind, env in (("plain", dict(os.environ)), ("native", native_env)):
            scratch = tmp_path / f"{kind}-{name}"  # new inputs land here, not in the checked-in seeds
            scratch.mkdir()
            p = subprocess.run([sys.executable, os.path.join(FUZZ, f"fuzz_{name}.py"), "-runs=300",
                                f"-artifact_prefix={tmp_path}/", str(scratch), os.path.join(FUZZ, "corpus", name)],
                               capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
            assert p.returncode == 0, p.stderr[-3000:]
            cov[kind] = _inited_cov(p.stderr)
        assert "Using preloaded libfuzzer" in p.stderr, p.stderr[-3000:]
        assert cov["native"] > cov["plain"], (name, cov)
