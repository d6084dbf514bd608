"""The kernel variant list, read from ``src/variants.h`` (the C dispatch's own list).

Standard library only: the build recipe (``build_config.py``, loaded by
``setup.py`` before anything is compiled) and the board configs use it too.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

__all__ = ["Variant", "VARIANTS", "NAMES", "FAMILIES", "HEADER", "parse_variants", "family_variants"]

HEADER = Path(__file__).resolve().parent / "src" / "variants.h"
#: Target families a variant can be compiled for ("any" = every build).
FAMILIES = ("any", "x86", "aarch64", "armv7")
_ENTRY = re.compile(r"^\s*X\((\w+),\s*(\w+),\s*(\w+)\)\s*\\?\s*$")


class Variant(NamedTuple):
    """One kernel variant: its name, target family and opt-out guard (``ALWAYS`` or ``CK_NO_<guard>``)."""

    name: str
    family: str
    guard: str

    @property
    def source(self) -> str:
        """Its C source, relative to ``edge_dred/kernels/``."""
        return f"src/nnet_{self.name}.c"


def parse_variants(text: str) -> tuple[Variant, ...]:
    """The ``X(name, family, guard)`` lines of ``variants.h``, in order of preference.

    Raises
    ------
    ValueError
        No entries, an unknown family or a repeated name.
    """
    out = [Variant(*m.groups()) for m in map(_ENTRY.match, text.splitlines()) if m]
    if not out:
        raise ValueError(f"{HEADER}: no X(name, family, guard) entries")
    for v in out:
        if v.family not in FAMILIES:
            raise ValueError(f"{HEADER}: variant {v.name!r} has unknown family {v.family!r}")
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{HEADER}: repeated variant names in {names}")
    return tuple(out)


VARIANTS = parse_variants(HEADER.read_text())
NAMES = tuple(v.name for v in VARIANTS)


def family_variants(family: str) -> tuple[str, ...]:
    """Variants compiled for target ``family`` (x86, aarch64, armv7, other), scalar first."""
    return tuple(v.name for v in VARIANTS if v.family in ("any", family))
