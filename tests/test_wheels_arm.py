"""Cross-built aarch64 wheel: `scripts/build_wheels.sh aarch64 --quick` end to end, then the
emulated instruction-count estimate on the wheel it built.

The script debootstraps a bookworm arm64 sysroot (cached under ~/.cache/edge-dred, so only the
first run downloads), cross-compiles the extensions, repairs the wheel with auditwheel (libopus
vendored) and smoke-tests it with the sysroot's python3 under qemu-aarch64-static on the
Cortex-A53, A72 and A76 (Pi 3B+, 4, 5). Minutes, not seconds: marked ``arm_wheels``
(deselect with ``-m "not arm_wheels"``). Skipped, with the reason, only where the tools are
absent (``./quickstart.sh test`` installs them) or EDGE_DRED_SKIP_ARM_WHEELS=1.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_wheels.sh"

pytestmark = [pytest.mark.arm_wheels, pytest.mark.slow]


def _why_not() -> str | None:
    if os.environ.get("EDGE_DRED_SKIP_ARM_WHEELS") == "1":
        return "EDGE_DRED_SKIP_ARM_WHEELS=1"
    missing = [t for t in ("debootstrap", "dpkg-deb", "aarch64-linux-gnu-gcc", "qemu-aarch64-static", "pkg-config")
               if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (./quickstart.sh test installs them)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    if sys.version_info[:2] != (3, 11):
        return "the cross build names the cp311 ABI: needs CPython 3.11 like bookworm's"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    why = _why_not()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("arm_wheels")
    env = {**os.environ, "OUT_DIR": str(out), "PYTHON": sys.executable}
    env.pop("EDGE_DRED_BUILD_ONLY", None)
    r = subprocess.run(["bash", str(SCRIPT), "aarch64", "--quick"], env=env, capture_output=True, text=True,
                       timeout=1800)
    log = r.stdout + r.stderr
    assert r.returncode == 0, f"build_wheels.sh failed:\n{log[-6000:]}"
    return out, log


def test_aarch64_wheel_builds_and_passes_emulated_smoke_test(built):
    out, log = built
    wheels = sorted(out.glob("edge_dred-*-cp311-cp311-manylinux_*_aarch64.whl"))
    assert len(wheels) == 1, log[-3000:]
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
    assert "edge_dred/kernels/_kernels.cpython-311-aarch64-linux-gnu.so" in names
    assert any(n.startswith("edge_dred.libs/libopus") for n in names)  # vendored
    assert "edge_dred/models/manifest.json" in names
    # every board core ran the dispatch check, tests and simulate; A76 picks the dot-product kernels
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| (cortex-a\d+) \|.*$", log, re.M)}
    assert set(rows) == {"cortex-a53", "cortex-a72", "cortex-a76"}, log[-3000:]
    assert "| neon_dotprod |" in rows["cortex-a76"] and "| neon |" in rows["cortex-a53"]
    for cpu, row in rows.items():
        assert "failed" not in row and "FAILED" not in row, row
        assert "regular" in row and "corr" in row, row  # simulate ran and matched the host's decisions
    # the kernel tests ran once per variant (--quick: the A72 shares the A53's NEON code)
    assert re.search(r"\d+ passed", rows["cortex-a53"]) and re.search(r"\d+ passed", rows["cortex-a76"])
    assert "aarch64: smoke test passed on cortex-a53, cortex-a72, cortex-a76" in log


def test_estimate_counts_stages_on_the_built_wheel(built):
    out, _ = built
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 (Debian qemu-user, with TCG plugin support) not installed")
    from edge_dred.tools.estimate import run_guest

    wheel = str(next(out.glob("*_aarch64.whl")))
    stages, info = run_guest("aarch64", "cortex-a53", seconds=1.0, wheel=wheel)
    by_name = {s.stage: s for s in stages}
    assert info["variant"] == "neon"
    assert "opus decode" in by_name and "opus encode 24 kb/s" in by_name
    # decoding a 20 ms packet costs tens of thousands of instructions, encoding far more
    assert 10e3 < by_name["opus decode"].median < 2e6
    assert by_name["opus encode 24 kb/s"].median > 3 * by_name["opus decode"].median
    assert info["total_insns"] > sum(s.insns.sum() for s in stages)
    # DRED: payload coding and the receiver's decode are counted with or without a TFLite runtime in
    # the guest; the encoder step is counted or listed as not run, with the reason
    assert by_name["quantize + rate control + range code"].median > 0
    assert by_name["parse + decode newest 40 ms"].median > 0
    not_run = {st: why for _, st, why in info["not_run"]}
    assert ("TFLite encoder step" in by_name) != ("TFLite encoder step" in not_run)
    assert all(why for why in not_run.values())
    # the rows a board's defaults are priced from are counted and give a recommendation
    from edge_dred.tools.estimate import recommend_runtime

    assert by_name["encode 24 kb/s, complexity 0"].median < by_name["encode 24 kb/s, complexity 10"].median
    assert by_name["decode per further 40 ms chunk"].median > 0
    rec = recommend_runtime(1.26e9, stages)
    assert 0 <= rec.complexity <= 10 and 0 <= rec.dred_ms <= 1040 and rec.dred_ms % 40 == 0 and rec.reason
