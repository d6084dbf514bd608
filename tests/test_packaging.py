"""The package's build configuration is warning-free and ships the kernel sources."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_build_configuration_is_quiet_and_ships_the_kernel_sources(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["EDGE_DRED_BUILD_ONLY"] = "none"  # packages and metadata only: no compiler needed
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
                        "build_py", "-d", str(tmp_path / "lib")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    noise = [ln for ln in (r.stdout + r.stderr).splitlines() if "warn" in ln.lower() or "deprecat" in ln.lower()]
    assert noise == []
    # Only edge_dred goes into site-packages: no generic top-level names (quantize, board_configs).
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["edge_dred"]
    shipped = {p.name for p in (tmp_path / "lib" / "edge_dred" / "kernels" / "src").iterdir()}
    assert {"dispatch.c", "nnet.h", "nnet_scalar.c", "variants.h", "simd_vec.h"} <= shipped
    assert (tmp_path / "lib" / "edge_dred" / "board_configs" / "rpi4.toml").is_file()
    dsp_src = {p.name for p in (tmp_path / "lib" / "edge_dred" / "dsp" / "src").iterdir()}
    assert {"feature_analysis.c", "feature_analysis.h", "postfilter.c", "postfilter.h"} <= dsp_src
    assert "License-Expression: BSD-3-Clause" in (tmp_path / "edge_dred.egg-info" / "PKG-INFO").read_text()
