"""Stage markers for the counting qemu plugin (``scripts/qemu_insn_plugin.c``): codes and parsing.

A guest brackets one call of stage ``i`` (an index into a list of stage names
both sides agree on) with ``umask(MAGIC | code << 12 | 022)`` markers, code
``FIRST + 2 i`` before and ``FIRST + 2 i + 1`` after; the plugin logs ``code
count`` at each marker and ``total count`` at exit.  Stages nest (libopus's
``compute_frame_features`` inside an encode), so a stage's count is inclusive,
like callgrind's, and the markers of stages nested inside it are counted too:
:func:`read_marks` reports how many, for the caller to subtract their measured
cost.  Codes below ``FIRST`` belong to ``bench --estimate`` and are refused.
"""
from __future__ import annotations

FIRST = 16
MAX_CODE = 0xFFF      # the plugin keeps 12 bits of code
MAX_LINES = 20_000_000


class MarkError(ValueError):
    """The marker log is inconsistent (a crashed guest, a stage left open, an unknown code)."""


def begin_code(index: int) -> int:
    """Marker code before a call of stage ``index``."""
    code = FIRST + 2 * index
    if index < 0 or code + 1 > MAX_CODE:
        raise ValueError(f"stage index {index} out of the marker range")
    return code


def read_marks(text: str, names: list[str]) -> tuple[dict[str, tuple[int, int, int]], int]:
    """Per stage ``(inclusive instructions, calls, nested marker pairs)`` and the run's total.

    Parameters
    ----------
    text : str
        The plugin's log.
    names : list of str
        Stage names by index, as the guest numbered them.

    Returns
    -------
    (dict, int)
        Only stages that were called appear; ``nested`` counts the calls of any
        stage made while this one was open (each adds one marker pair to its count).

    Raises
    ------
    MarkError
        On a malformed line, an unknown code, an end without its begin, a stage
        still open at exit, or no ``total`` line.
    """
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise MarkError(f"marker log too long ({len(lines)} lines)")
    out: dict[str, list[int]] = {}
    stack: list[tuple[int, int]] = []      # (stage index, count at its begin)
    total = -1
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not (parts[0].isdigit() or parts[0] == "total"):
            raise MarkError(f"marker log line {n}: unexpected {line[:60]!r}")
        count = int(parts[1])
        if parts[0] == "total":
            total = count
            continue
        code = int(parts[0])
        index, is_end = divmod(code - FIRST, 2)
        if code < FIRST or index >= len(names):
            raise MarkError(f"marker log line {n}: unknown marker code {code}")
        if not is_end:
            for outer, _ in stack:
                out.setdefault(names[outer], [0, 0, 0])[2] += 1
            stack.append((index, count))
            continue
        if not stack or stack[-1][0] != index or count < stack[-1][1]:
            raise MarkError(f"marker log line {n}: end of {names[index]!r} without its begin")
        _, start = stack.pop()
        acc = out.setdefault(names[index], [0, 0, 0])
        acc[0] += count - start
        acc[1] += 1
    if total < 0:
        raise MarkError("marker log has no total (did the guest crash?)")
    if stack:
        raise MarkError(f"marker log ends inside stage {names[stack[-1][0]]!r}")
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}, total


def corrected(marks: dict[str, tuple[int, int, int]], null: str = "null", cal: str = "cal",
              cal0: str = "cal0") -> tuple[dict[str, tuple[float, int]], float, float]:
    """``{stage: (inclusive, calls)}`` less the markers' own cost, as callgrind would count it.

    ``null`` is an empty stage (its count per call is what a stage's own
    markers add), ``cal`` runs calls of ``null`` inside it and ``cal0`` the same
    loop without them: their difference per nested call is what one nested
    marker pair adds to the stage around it.  Returns the corrected counts,
    then the two overheads.
    """
    for k in (null, cal, cal0):
        if k not in marks:
            raise MarkError(f"no calibration stage {k!r} in the marker log")
    own = marks[null][0] / marks[null][1]
    per_nested = (marks[cal][0] - marks[cal0][0]) / max(1, marks[cal][2])
    out = {k: (inc - own * calls - per_nested * nested, calls)
           for k, (inc, calls, nested) in marks.items() if k not in (null, cal, cal0)}
    return out, own, per_nested
