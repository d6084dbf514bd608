"""build_config: variant sources follow the *target* architecture; extra flags from the environment."""
from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def bc(monkeypatch):
    for v in ("EDGE_DRED_TARGET_ARCH", "CC", "_PYTHON_HOST_PLATFORM", "EDGE_DRED_CFLAGS"):
        monkeypatch.delenv(v, raising=False)
    spec = importlib.util.spec_from_file_location("_bc_test", os.path.join(ROOT, "edge_dred", "kernels", "build_config.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name,family", [("x86_64", "x86"), ("AMD64", "x86"), ("aarch64", "aarch64"),
                                         ("arm64", "aarch64"), ("armv7l", "armv7"), ("armv6l", "armv7"),
                                         ("arm-linux-gnueabihf-gcc", "armv7"), ("aarch64-linux-gnu-gcc", "aarch64"),
                                         ("linux-aarch64", "aarch64"), ("riscv64", "other")])
def test_normalize_arch(bc, name, family):
    assert bc.normalize_arch(name) == family


def test_sources_per_target(bc, monkeypatch):
    monkeypatch.setenv("CC", "aarch64-linux-gnu-gcc")
    assert bc.target_arch() == "aarch64"
    src = bc.c_sources()
    assert "src/nnet_neon.c" in src and "src/nnet_neon_dotprod.c" in src and "src/nnet_avx2.c" not in src
    monkeypatch.setenv("CC", "gcc")  # no cross prefix: falls through to the host
    monkeypatch.setenv("_PYTHON_HOST_PLATFORM", "linux-armv7l")
    assert bc.c_sources() == bc.COMMON_SOURCES + ["src/nnet_armv7_neon.c"]
    monkeypatch.setenv("EDGE_DRED_TARGET_ARCH", "x86_64")
    assert "src/nnet_avx2_vnni.c" in bc.c_sources()
    monkeypatch.setenv("EDGE_DRED_TARGET_ARCH", "sparc")
    with pytest.raises(ValueError, match="EDGE_DRED_TARGET_ARCH"):
        bc.target_arch()
    for fam, files in bc.ISA_SOURCES.items():
        for f in files:
            assert os.path.exists(os.path.join(ROOT, "edge_dred", "kernels", f)), f


def test_flags(bc, monkeypatch):
    flags = bc.cflags()
    assert "-O3" in flags and "-ffp-contract=off" in flags and not any("native" in f for f in flags)
    monkeypatch.setenv("EDGE_DRED_CFLAGS", "-mcpu=cortex-a72 '-DX=1 2'")
    assert bc.cflags()[-2:] == ["-mcpu=cortex-a72", "-DX=1 2"]
    ext = bc.extensions(ROOT)[0]
    assert ext.name == "edge_dred.kernels._kernels" and ext.extra_compile_args[-1] == "-DX=1 2"
    assert all(os.path.exists(os.path.join(ROOT, s)) for s in ext.sources)
