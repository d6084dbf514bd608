"""Build recipe for the kernel extension (loaded by the top-level setup.py).

The variant sources compiled depend on the *target* machine, not the build
host, so cross builds (CC=aarch64-linux-gnu-gcc, or _PYTHON_HOST_PLATFORM as
set by crossenv/cibuildwheel) get the right set:

* x86 (x86_64, i686): scalar + sse41 + avx2 + avx2_vnni (AVX-VNNI; left out
  with -DCK_NO_AVXVNNI in EDGE_DRED_CFLAGS for compilers older than GCC 11)
* aarch64: scalar + neon + neon_dotprod
* armv7 (armv7l, armv6l, arm): scalar + armv7_neon (picked at run time only
  when HWCAP_NEON is present, so an armv6 Pi Zero still runs scalar)

ISA-specific code is enabled per file with ``#pragma GCC target`` so the
extension as a whole stays portable: default flags are -O3 without
-march=native. Extra flags (e.g. -mcpu= for a build on the board itself)
come from the environment variable ``EDGE_DRED_CFLAGS`` (shell-quoted list).
The variants and their families come from ``src/variants.h``.
``EDGE_DRED_TARGET_ARCH`` forces the target family (x86|aarch64|armv7).
"""
from __future__ import annotations

import importlib.util
import os
import platform
import shlex
from pathlib import Path


def _load_variants():
    """``variants.py`` beside this file, loaded by path: setup.py runs before the package is importable."""
    spec = importlib.util.spec_from_file_location("_ck_variants", Path(__file__).resolve().parent / "variants.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


_VARIANTS = _load_variants().VARIANTS
COMMON_SOURCES = ["src/dispatch.c", "src/nnet_check.c"] + [v.source for v in _VARIANTS if v.family == "any"]
#: One source per variant of src/variants.h, by the family it is compiled for.
ISA_SOURCES = {fam: [v.source for v in _VARIANTS if v.family == fam] for fam in ("x86", "aarch64", "armv7")}
ISA_SOURCES["other"] = []
# -ffp-contract=off: the scalar reference must round exactly as written (no
# silent FMA contraction), so SIMD variants can be compared against it.
DEFAULT_CFLAGS = ["-O3", "-ffp-contract=off", "-fno-strict-aliasing"]


def normalize_arch(name: str) -> str:
    """Map a machine / platform / compiler-prefix string to x86, aarch64, armv7 or other."""
    n = name.lower()
    if any(k in n for k in ("aarch64", "arm64", "armv8")):
        return "aarch64"
    if any(k in n for k in ("armv7", "armv6", "armhf", "arm-linux", "armel")) or n in ("arm", "armv7l", "armv6l"):
        return "armv7"
    if any(k in n for k in ("x86_64", "amd64", "i386", "i686", "x86")):
        return "x86"
    return "other"


def target_arch() -> str:
    """Target family: EDGE_DRED_TARGET_ARCH, else the CC prefix, else
    _PYTHON_HOST_PLATFORM, else platform.machine()."""
    forced = os.environ.get("EDGE_DRED_TARGET_ARCH")
    if forced:
        arch = normalize_arch(forced)
        if arch == "other" and forced not in ("other",):
            raise ValueError(f"EDGE_DRED_TARGET_ARCH={forced!r}: expected x86, aarch64 or armv7")
        return arch
    cc = os.environ.get("CC", "")
    if cc:
        arch = normalize_arch(os.path.basename(cc.split()[0]))
        if arch != "other" and "-" in os.path.basename(cc.split()[0]):
            return arch
    host = os.environ.get("_PYTHON_HOST_PLATFORM")
    if host:
        return normalize_arch(host)
    return normalize_arch(platform.machine())


def c_sources(arch: str | None = None) -> list[str]:
    """Kernel C sources (relative to edge_dred/kernels/) for a target family."""
    arch = arch or target_arch()
    return COMMON_SOURCES + ISA_SOURCES[arch]


def cflags() -> list[str]:
    """Default flags plus EDGE_DRED_CFLAGS."""
    return DEFAULT_CFLAGS + shlex.split(os.environ.get("EDGE_DRED_CFLAGS", ""))


def extensions(root_dir: str) -> list:
    """setuptools Extensions for the kernels (paths relative to root_dir)."""
    from setuptools import Extension

    del root_dir  # setup.py runs from the repository root; paths stay relative
    pkg = "edge_dred/kernels"
    return [
        Extension(
            "edge_dred.kernels._kernels",
            [f"{pkg}/_kernels.pyx"] + [f"{pkg}/{s}" for s in c_sources()],
            include_dirs=[f"{pkg}/src"],
            # the SIMD code lives in headers: editing one must rebuild the extension
            depends=[f"{pkg}/src/{h}" for h in sorted(os.listdir(os.path.join(os.path.dirname(__file__), "src")))
                     if h.endswith(".h")],
            extra_compile_args=cflags(),
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
    ]
