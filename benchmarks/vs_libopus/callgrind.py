"""Inclusive cost and call count of every called function in a callgrind profile."""
from __future__ import annotations

import re

_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def read_inclusive(path: str, event: int = 0) -> dict[str, tuple[int, int]]:
    """``{function: (inclusive cost, calls)}`` summed over every call site.

    The cost of a call (the line after ``calls=``) is everything executed inside
    it, so summing over call sites gives a function's inclusive cost; functions
    entered before instrumentation started (``--instr-atstart=no``) have no call
    sites and are absent.  ``event`` picks the column (0: ``Ir``).
    """
    names: dict[str, str] = {}
    out: dict[str, list[int]] = {}
    target = None
    pending_calls = 0
    with open(path) as f:
        for line in f:
            if pending_calls:
                parts = line.split()
                cost = int(parts[1 + event]) if len(parts) > 1 + event else 0
                acc = out.setdefault(target, [0, 0])
                acc[0] += cost
                acc[1] += pending_calls
                pending_calls = 0
                continue
            if line.startswith("cfn="):
                target = _resolve(line[4:].strip(), names)
            elif line.startswith("fn="):
                _resolve(line[3:].strip(), names)
            elif line.startswith("calls="):
                pending_calls = int(line[6:].split()[0]) or 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def _resolve(spec: str, names: dict[str, str]) -> str:
    m = _NAME.match(spec)
    if not m:
        return spec
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
        return m.group(2)
    return names.get(m.group(1), spec)
