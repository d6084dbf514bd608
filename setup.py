"""Build script: Cython extensions for the Opus binding and the kernels.

The kernels' build recipe lives beside their sources
(``edge_dred/kernels/build_config.py``) so that the per-ISA compilation rules stay
with the code they compile.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _pkg_config(name: str) -> tuple[list[str], list[str], list[str]]:
    """Return (include_dirs, library_dirs, libraries) for a pkg-config module."""
    if shutil.which("pkg-config"):
        try:
            cflags = subprocess.check_output(["pkg-config", "--cflags-only-I", name], text=True).split()
            libs = subprocess.check_output(["pkg-config", "--libs", name], text=True).split()
            inc = [f[2:] for f in cflags if f.startswith("-I")]
            libdirs = [f[2:] for f in libs if f.startswith("-L")]
            libnames = [f[2:] for f in libs if f.startswith("-l")]
            return inc, libdirs, libnames
        except subprocess.CalledProcessError:
            pass
    # Debian layout fallback.
    return ["/usr/include/opus"], [], [name]


def _load_kernel_extensions() -> list[Extension]:
    path = os.path.join(HERE, "edge_dred", "kernels", "build_config.py")
    if not os.path.exists(path):
        return []
    spec = importlib.util.spec_from_file_location("_ck_build_config", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod.extensions(HERE)


opus_inc, opus_libdirs, opus_libs = _pkg_config("opus")
# KISS FFT (float), compiled into each compiled-DSP extension that uses it.
_KISSFFT = ["edge_dred/third_party/kissfft/kiss_fft.c", "edge_dred/third_party/kissfft/kiss_fftr.c"]
# Features, postfilter and fp synthesis share these flags (float results must match the
# numpy references); hidden symbols keep each extension's KISS FFT its own (no cross-module
# interposition of kf_work and friends when a host loads extensions globally).
_DSP_FLAGS = ["-ffp-contract=off", "-fno-predictive-commoning", "-fvisibility=hidden"]

extensions = [
    Extension(
        "edge_dred.codec._opus",
        ["edge_dred/codec/_opus.pyx"],
        include_dirs=opus_inc,
        library_dirs=opus_libdirs,
        libraries=opus_libs or ["opus"],
    ),
    Extension(
        "edge_dred.dsp._features",
        ["edge_dred/dsp/_features.pyx", "edge_dred/dsp/src/feature_analysis.c"] + _KISSFFT,
        include_dirs=["edge_dred/dsp/src", "edge_dred/third_party/kissfft"],
        depends=["edge_dred/dsp/src/feature_analysis.h"],
        extra_compile_args=_DSP_FLAGS,  # see feature_analysis.c
    ),
    Extension(
        "edge_dred.dsp._postfilter",
        ["edge_dred/dsp/_postfilter.pyx", "edge_dred/dsp/src/postfilter.c"] + _KISSFFT,
        include_dirs=["edge_dred/dsp/src", "edge_dred/third_party/kissfft"],
        depends=["edge_dred/dsp/src/postfilter.h"],
        extra_compile_args=_DSP_FLAGS,
    ),
    Extension(
        "edge_dred.dsp._fp_synthesis",
        ["edge_dred/dsp/_fp_synthesis.pyx", "edge_dred/dsp/src/fp_synthesis.c"] + _KISSFFT,
        include_dirs=["edge_dred/dsp/src", "edge_dred/third_party/kissfft"],
        depends=["edge_dred/dsp/src/fp_synthesis.h"],
        extra_compile_args=_DSP_FLAGS,
    ),
    # No fused multiply-adds: the quantizer and rate-control sums must round as numpy does.
    Extension("edge_dred.dred._entropy", ["edge_dred/dred/_entropy.pyx"], extra_compile_args=["-ffp-contract=off"]),
] + _load_kernel_extensions()

extensions = [e for e in extensions if all(os.path.exists(os.path.join(HERE, s)) for s in e.sources)]
# Developer convenience: EDGE_DRED_BUILD_ONLY=name1,name2 builds only those extensions
# (substring match), so one broken work-in-progress module does not block the rest.
_only = [x for x in os.environ.get("EDGE_DRED_BUILD_ONLY", "").split(",") if x]
if _only:
    extensions = [e for e in extensions if any(o in e.name for o in _only)]
for ext in extensions:
    ext.include_dirs = list(ext.include_dirs) + [np.get_include()]

setup(
    # Everything installs under edge_dred/ (no generic top-level names in site-packages).
    packages=find_packages(include=["edge_dred", "edge_dred.*"]) + [
        "edge_dred.kernels.src",  # the C sources, shipped as package data
        "edge_dred.dsp.src",
        "edge_dred.third_party.kissfft",  # vendored sources and their licence, shipped with the binaries
    ],
    package_data={
        "edge_dred.models": ["*.bin", "*.npz", "*.tflite", "*.json"],
        "edge_dred.board_configs": ["*.toml"],
        "edge_dred.kernels": ["*.pxd"],
        "edge_dred.kernels.src": ["*.h", "*.c"],
        "edge_dred.dsp.src": ["*.h", "*.c"],
    },
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        quiet=True,
    ),
    zip_safe=False,
)
