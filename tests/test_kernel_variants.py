"""One list of kernel variants (src/variants.h): the C dispatch, the Python package,
the build recipe, the board configs and the ARM smoke test all agree with it."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

import edge_dred.kernels as ck
from edge_dred.boards import _ARCH_FAMILY, list_boards
from edge_dred.kernels import variants

ROOT = Path(__file__).resolve().parents[1]
KDIR = ROOT / "edge_dred" / "kernels"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_header_lists_every_variant_once_in_preference_order():
    assert variants.NAMES == ("scalar", "sse41", "avx2", "avx2_vnni", "neon", "neon_dotprod", "armv7_neon")
    assert variants.family_variants("aarch64") == ("scalar", "neon", "neon_dotprod")
    assert variants.family_variants("other") == ("scalar",)
    with pytest.raises(ValueError, match="unknown family"):
        variants.parse_variants("    X(sve, riscv, ALWAYS) \\\n")
    with pytest.raises(ValueError, match="repeated"):
        variants.parse_variants("X(a, any, ALWAYS)\nX(a, x86, ALWAYS)\n")


def test_c_dispatch_reads_the_same_list():
    # The compiled extension's own table (built from variants.h by dispatch.c's X-macros).
    assert tuple(ck._kernels.known_variants()) == variants.NAMES
    assert ck.KNOWN_VARIANTS == variants.NAMES
    fam = {"x86_64": "x86", "aarch64": "aarch64", "armv7": "armv7"}.get(ck.isa(), "other")
    assert tuple(ck.compiled_variants()) == variants.family_variants(fam)
    with pytest.raises(ValueError, match="unknown kernel variant 'sve'; known: scalar, sse41"):
        ck.set_variant("sve")


def test_each_variant_has_its_source_and_the_build_compiles_them():
    bc = _load(KDIR / "build_config.py", "_bc_variants")
    for v in variants.VARIANTS:
        src = (KDIR / v.source).read_text()
        assert re.search(rf"^#define CK_SUFFIX {v.name}$", src, re.M), v.source
        if v.guard != "ALWAYS":
            assert f"CK_NO_{v.guard}" in src, v.source
    for fam in ("x86", "aarch64", "armv7", "other"):
        compiled = [s for s in bc.c_sources(fam) if Path(s).name.startswith("nnet_") and s != "src/nnet_check.c"]
        assert compiled == [f"src/nnet_{n}.c" for n in variants.family_variants(fam)]


def test_no_second_list_of_names():
    """Consumers read the list; none spells the names out again."""
    # (CPU feature names such as __builtin_cpu_supports("avx2") are not variant names.)
    quoted = re.compile(r"""(?<!supports\()["'](%s)["']""" % "|".join(variants.NAMES[1:]))
    for rel in ("edge_dred/kernels/src/dispatch.c", "edge_dred/kernels/__init__.py", "edge_dred/kernels/build_config.py",
                "edge_dred/boards.py", "benchmarks/qemu_icount.py"):
        assert not quoted.search((ROOT / rel).read_text()), rel


def test_board_configs_name_variants_of_their_architecture():
    boards = list_boards()
    assert {b.arch for b in boards} == set(_ARCH_FAMILY)
    for b in boards:
        runs = variants.family_variants(_ARCH_FAMILY[b.arch])
        assert b.kernel_variants[0] == "scalar" and set(b.kernel_variants) <= set(runs), b.name
    x86 = [b for b in boards if b.arch == "x86_64"]
    assert all(b.kernel_variants == variants.family_variants("x86") for b in x86)


def test_arm_smoke_expectations_match_the_boards():
    """The variant the qemu smoke test expects per CPU model is the best one its board lists."""
    smoke = _load(ROOT / "scripts" / "arm_smoke.py", "_arm_smoke_variants")
    checked = 0
    for b in list_boards():
        facts = smoke.ARCHES.get(b.arch)
        if facts and b.cpu == b.qemu_cpu and b.qemu_cpu in facts["cpus"]:  # a board of one CPU model
            assert facts["cpus"][b.qemu_cpu] == b.kernel_variants[-1], (b.name, b.qemu_cpu)
            checked += 1
    assert checked >= 4
    for facts in smoke.ARCHES.values():
        assert set(facts["cpus"].values()) <= set(variants.NAMES)
