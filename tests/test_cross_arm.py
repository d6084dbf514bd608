"""Cross-compile the C kernel driver (tests/c/kernel_test.c) for aarch64 and
armv7 and run it under qemu-user on several CPU models.

Checks that every variant a CPU supports matches the scalar reference, that
dispatch picks neon_dotprod only where the CPU has it (Cortex-A76) and never
executes it elsewhere (forcing it on a Cortex-A53 must SIGILL, which proves
qemu enforces the feature), and that a NEON-less ARMv7 core falls back to
scalar. Skipped when the cross compiler, its libc or qemu is missing
(``./quickstart.sh test`` installs them).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "edge_dred", "kernels", "src")
DRIVER = os.path.join(ROOT, "tests", "c", "kernel_test.c")

TARGETS = {
    # family: (compiler, qemu, sysroot, baseline flags: the SIMD variants come from per-file pragmas)
    "aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64-static", "/usr/aarch64-linux-gnu", ["-march=armv8-a"]),
    "armv7": ("arm-linux-gnueabihf-gcc", "qemu-arm-static", "/usr/arm-linux-gnueabihf",
              ["-march=armv7-a", "-mfpu=vfpv3-d16", "-mfloat-abi=hard"]),
}


def _sources(family: str) -> list[str]:
    spec = importlib.util.spec_from_file_location("_ck_bc", os.path.join(ROOT, "edge_dred", "kernels", "build_config.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [os.path.join(ROOT, "edge_dred", "kernels", s) for s in mod.c_sources(family)]


pytestmark = pytest.mark.slow  # cross-compiles and runs under qemu


def _missing(family: str) -> str | None:
    cc, qemu, sysroot, _ = TARGETS[family]
    for tool in (cc, qemu):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not os.path.isdir(os.path.join(sysroot, "lib")):
        return f"{sysroot} (cross libc) not installed"
    return None


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("cross")
    for family, (cc, _, _, flags) in TARGETS.items():
        if _missing(family):
            continue
        exe = str(d / f"kernel_test_{family}")
        cmd = [cc, "-O2", "-ffp-contract=off", "-Wall", "-Werror", *flags, f"-I{SRC}", DRIVER,
               *_sources(family), "-lm", "-o", exe]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"cross compile for {family} failed:\n{r.stderr}"
        out[family] = exe
    return out


def _run(family: str, exe: str, cpu: str, *args: str) -> subprocess.CompletedProcess:
    _, qemu, sysroot, _ = TARGETS[family]
    return subprocess.run([qemu, "-L", sysroot, "-cpu", cpu, exe, *args], capture_output=True, text=True,
                          timeout=60)


def _need(family: str, binaries: dict) -> str:
    why = _missing(family)
    if why:
        pytest.skip(why)
    return binaries[family]


@pytest.mark.parametrize("cpu,best", [("cortex-a53", "neon"), ("cortex-a72", "neon"),
                                      ("cortex-a76", "neon_dotprod")])
def test_aarch64_variants(binaries, cpu, best):
    exe = _need("aarch64", binaries)
    r = _run("aarch64", exe, cpu)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"best={best}\n" in out
    assert "variant neon          PASS" in out
    if best == "neon_dotprod":
        assert "variant neon_dotprod  PASS" in out
    else:
        assert "variant neon_dotprod  SKIP" in out
    assert "ftz outside=0 inside=3 after=0" in out
    assert "RESULT: PASS" in out


def test_aarch64_dotprod_really_traps_without_the_feature(binaries):
    """If the dispatcher ever picked dotprod on an A53 it would crash: show that."""
    exe = _need("aarch64", binaries)
    r = _run("aarch64", exe, "cortex-a53", "--force", "neon_dotprod")
    assert r.returncode in (-4, 132), (r.returncode, r.stdout, r.stderr)  # SIGILL
    assert "variant neon          PASS" in r.stdout


@pytest.mark.parametrize("cpu,best", [("cortex-a7", "armv7_neon"), ("cortex-a15", "armv7_neon"),
                                      ("cortex-r5f", "scalar")])
def test_armv7_variants(binaries, cpu, best):
    exe = _need("armv7", binaries)
    r = _run("armv7", exe, cpu)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"best={best}\n" in r.stdout
    assert ("variant armv7_neon    PASS" if best != "scalar" else "variant armv7_neon    SKIP") in r.stdout
    assert "RESULT: PASS" in r.stdout


def test_native_driver(tmp_path):
    """The same driver natively (x86: sse41 + avx2 against scalar)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no native C compiler")
    import platform
    spec = importlib.util.spec_from_file_location("_ck_bc2", os.path.join(ROOT, "edge_dred", "kernels", "build_config.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    family = mod.normalize_arch(platform.machine())
    exe = str(tmp_path / "kernel_test")
    r = subprocess.run([cc, "-O2", "-ffp-contract=off", "-Wall", "-Werror", f"-I{SRC}", DRIVER, *_sources(family),
                        "-lm", "-o", exe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "RESULT: PASS" in r.stdout, r.stdout
