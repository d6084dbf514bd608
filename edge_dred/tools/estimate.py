"""Real-time estimates for a board from instruction counts under qemu (``edge-dred bench --estimate``).

No board at hand: run the very stages ``edge-dred bench`` times, but on the
cross-built ARM package (the wheel from ``scripts/build_wheels.sh``, installed
for the Debian bookworm sysroot's python3.11) under ``qemu-<arch>`` with the
board's CPU model, and count the guest instructions each stage executes per
20 ms packet.  An estimated time per packet is then

    instructions per packet / the board's ``instructions_per_second``

and the real-time factor is that over 20 ms.

Counting uses a small TCG plugin (``scripts/qemu_insn_plugin.c``, compiled
here on first use) that adds every executed translation block's instruction
count to a counter, and the guest brackets each packet's work with marker
syscalls (``umask`` with a magic value; see the plugin).  The plugin needs the
dynamically linked qemu-user (Debian package ``qemu-user``): the ``-static``
builds cannot load plugins.  Marker overhead is measured on an empty stage
and subtracted.

DRED's TFLite encoder step needs the target's TFLite runtime in the guest
(``ai-edge-litert`` on aarch64, ``tflite-runtime`` on armv7l; installed with
``scripts/arm_smoke.py``'s helper into the smoke test's cache).  Bookworm's
qemu 7.2 crashes inside ai-edge-litert; bookworm-backports' qemu 10 (what
``scripts/build_wheels.sh --dred`` unpacks) runs it, so counting uses that
qemu when it loads TCG plugins.  Whether the runtime really works under the
counting qemu and core is probed once (cached); when it does not, or when it
cannot be installed, the guest runs without it: the bench then reports the
TFLite step as ``not run`` and codes latents sampled from the shipped
entropy model instead, and every table says why.

The assumption, stated in every table: the board sustains the
``instructions_per_second`` of its TOML (clock × an IPC typical of int8
kernels on that core) on this code.  Cache misses, memory bandwidth, the
branch predictor, the OS and other processes are not modelled, and the
dispatch picks the kernels that the *emulated* CPU model advertises.  It is an
estimate to compare boards and stages, not a measurement.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import FRAME_MS

__all__ = ["EstimateError", "StageCount", "GuestRuntime", "estimate_boards", "format_estimate", "parse_marks",
           "count_stages", "parse_bench_notes", "supports_plugins", "plan_runtime", "source_checkout",
           "count_tflite_step", "count_trace_lines", "address_filter",
           "Recommendation", "recommend_runtime", "SENDER_RTF_BUDGET", "RECEIVER_RTF_BUDGET"]

#: What the estimate needs of a source checkout: the ARM sysroot and wheel come from
#: build_wheels.sh, the guest set-up from arm_smoke.py, the counter from the plugin source.
CHECKOUT_FILES = ("scripts/build_wheels.sh", "scripts/arm_smoke.py", "scripts/qemu_insn_plugin.c")
#: Bench sides whose stages run on the sender; every other side is the receiver's.
SENDER_SIDES = ("sender", "dred sender")
#: Real-time factors a board's defaults must fit (the bars of the speed issue): the sender with
#: DRED at the recommended complexity, and the heaviest receiver slot of a DRED burst.
SENDER_RTF_BUDGET = 0.05
RECEIVER_RTF_BUDGET = 0.10
MAGIC = 0x4E000000
BEGIN, END, CALL_END = 1, 2, 3
_ARCH = {"aarch64": ("arm64", "aarch64-linux-gnu", "qemu-aarch64"),
         "armv7l": ("armhf", "arm-linux-gnueabihf", "qemu-arm")}
_MAX_MARK_LINES = 5_000_000


class EstimateError(ValueError):
    """The estimate cannot run (missing tools, sysroot or wheel) or its output is inconsistent."""


@dataclass(frozen=True)
class StageCount:
    """Instructions per packet for one bench stage."""

    side: str
    stage: str
    insns: np.ndarray  # per packet, marker overhead removed

    @property
    def median(self) -> float:
        return float(np.median(self.insns))


def cache_dir() -> Path:
    """The build cache shared with ``scripts/build_wheels.sh`` (``$EDGE_DRED_CACHE``)."""
    return Path(os.environ.get("EDGE_DRED_CACHE", str(Path.home() / ".cache" / "edge-dred")))


def source_checkout(cwd: str | os.PathLike | None = None) -> Path:
    """The edge-dred source checkout the estimate works from.

    The one this package runs from (an editable install or ``PYTHONPATH``),
    else the current directory (``cwd``) when it is one.

    Raises
    ------
    EstimateError
        Neither is a checkout: an installed package does not carry the
        scripts the estimate runs.
    """
    here = Path(__file__).resolve()
    package = here.parents[__name__.count(".") - 1]  # the edge_dred directory
    for root in [*here.parents[1:], Path(cwd if cwd is not None else os.getcwd()).resolve()]:
        if all((root / f).is_file() for f in CHECKOUT_FILES):
            return root
    raise EstimateError(
        "bench --estimate is a developer tool: it needs an edge-dred source checkout (it cross-builds the ARM "
        f"wheel and counts instructions under qemu with {', '.join(CHECKOUT_FILES)}, which the installed "
        f"package at {package} does not carry). Run it from the checkout's directory, after "
        "'./quickstart.sh test' there: .venv/bin/edge-dred bench --estimate rpi4")


def _smoke():
    """``scripts/arm_smoke.py`` as a module: its TFLite-install and qemu-bpo helpers are shared, not copied."""
    mod = sys.modules.get("edge_dred_arm_smoke")
    if mod is None:
        spec = importlib.util.spec_from_file_location("edge_dred_arm_smoke",
                                                      source_checkout() / "scripts" / "arm_smoke.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod   # dataclasses look their module up while the class is built
        spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- parsing (pure, tested)

def parse_marks(text: str) -> tuple[list[np.ndarray], int]:
    """Per-call arrays of instructions between BEGIN and END markers, and the total count.

    ``text`` is the plugin output: ``code count`` lines, then ``total count``.
    """
    calls: list[np.ndarray] = []
    cur: list[int] = []
    begin: int | None = None
    total = -1
    lines = text.splitlines()
    if len(lines) > _MAX_MARK_LINES:
        raise EstimateError(f"marker log too long ({len(lines)} lines)")
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise EstimateError(f"marker log line {n}: unexpected {line[:60]!r}")
        if parts[0] == "total":
            total = int(parts[1])
            continue
        if not parts[0].isdigit():
            raise EstimateError(f"marker log line {n}: unexpected {line[:60]!r}")
        code, count = int(parts[0]), int(parts[1])
        if code == BEGIN:
            if begin is not None:
                raise EstimateError(f"marker log line {n}: BEGIN without END")
            begin = count
        elif code == END:
            if begin is None or count < begin:
                raise EstimateError(f"marker log line {n}: END without BEGIN")
            cur.append(count - begin)
            begin = None
        elif code == CALL_END:
            if begin is not None:
                raise EstimateError(f"marker log line {n}: call ended inside a packet")
            calls.append(np.array(cur, dtype=np.int64))
            cur = []
        else:
            raise EstimateError(f"marker log line {n}: unknown marker code {code}")
    if total < 0:
        raise EstimateError("marker log has no total (did the guest crash?)")
    if cur or begin is not None:
        raise EstimateError("marker log ends inside a call")
    return calls, total


def parse_bench_rows(table: str) -> list[tuple[str, str]]:
    """(side, stage) of every measured row of ``run_bench``'s markdown table, in order.

    Rows marked ``not run`` were not timed (so not counted either) and are left out; see
    :func:`parse_bench_notes`.
    """
    from .bench import NOT_RUN

    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and line.startswith("|") and cells[0] not in ("side", "") and not cells[0].startswith("-") \
                and cells[2] != NOT_RUN:
            rows.append((cells[0], cells[1]))
    return rows


def parse_bench_notes(table: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The stages ``run_bench`` could not run, as (side, stage, reason), and its ``note:`` lines.

    Raises
    ------
    EstimateError
        On a ``not run:`` line that is not ``not run: SIDE / STAGE: REASON``.
    """
    from .bench import NOT_RUN

    skipped, notes = [], []
    for line in table.splitlines():
        if line.startswith(f"{NOT_RUN}: "):
            m = re.match(rf"{NOT_RUN}: (.+?) / (.+?): (.+)$", line)
            if not m:
                raise EstimateError(f"bench note {line[:80]!r}: expected '{NOT_RUN}: SIDE / STAGE: REASON'")
            skipped.append((m.group(1), m.group(2), m.group(3)))
        elif line.startswith("note: "):
            notes.append(line[len("note: "):])
    return skipped, notes


def count_stages(marks: str, table: str) -> tuple[list[StageCount], float, int]:
    """Combine the plugin's marks and the guest's bench table: stage counts, marker overhead, total.

    Parameters
    ----------
    marks : str
        The plugin's log (:func:`parse_marks`): a calibration call, then one call per measured stage.
    table : str
        ``run_bench``'s output in the guest; its measured rows name the calls in order.

    Returns
    -------
    (list of StageCount, float, int)
        Stages with the marker overhead removed, that overhead (instructions), the run's total.
    """
    calls, total = parse_marks(marks)
    rows = parse_bench_rows(table)
    if not calls:
        raise EstimateError("no calibration call in the marker log")
    cal, calls = calls[0], calls[1:]
    if len(calls) != len(rows):
        raise EstimateError(f"bench table has {len(rows)} rows but {len(calls)} stages were counted")
    overhead = float(np.median(cal)) if len(cal) else 0.0
    from .bench import PACKETS_PER_CALL

    out = []
    for (side, stage), c in zip(rows, calls):
        if not len(c):
            raise EstimateError(f"stage {stage!r}: no packets counted")
        out.append(StageCount(side, stage, np.maximum(c - overhead, 0) / PACKETS_PER_CALL.get(stage, 1)))
    return out, overhead, total


# --------------------------------------------------------------------------- board defaults (pure, tested)

@dataclass(frozen=True)
class Recommendation:
    """A board's default Opus complexity and DRED depth as the counted stages allow.

    ``sender_rtf`` is the sender's at ``complexity``; ``receiver_rtf`` the heaviest
    DRED slot's at ``dred_ms`` (at 40 ms when ``dred_ms`` is 0).  ``reason`` is one line.
    """

    complexity: int
    dred_ms: int
    sender_rtf: float
    receiver_rtf: float
    reason: str


def recommend_runtime(instructions_per_second: float, stages: list[StageCount],
                      window_ms: int | None = None) -> Recommendation:
    """The highest Opus complexity and deepest DRED that fit :data:`SENDER_RTF_BUDGET` / :data:`RECEIVER_RTF_BUDGET`.

    What the two choices cost, per 20 ms packet, from the rows of
    ``run_bench(choices=True)`` (medians, instructions over the board's rate):

    * **complexity** costs the sender its Opus encode: the sender's total at
      complexity ``c`` is the feature analysis + Opus encode at ``c`` + the
      DRED sender stages (TFLite encoder step and payload coding).  The
      highest ``c`` in 0..10 whose total fits is chosen (0 when none does).
      An encoder step that was not counted (``not run``) is left out of the
      total, and the reason says so.
    * **DRED depth** costs the sender nothing that depends on it: the encoder
      step runs every 20 ms whatever the depth, and rate control fits any
      depth into the same byte budget (the coding row, at 1.04 s, bounds every
      shallower depth).  It costs the receiver its backward decode, and only
      at once, in one slot: a hole is rebuilt from the earliest packet after it,
      decoding back from that packet's newest chunk as far as the hole's first
      slot, and the burst's later slots reuse that decode.  The playout delay
      bounds how far behind the newest packet a slot still to be played can be
      (``window_ms``, default ``playout.DEFAULT_MAX_DELAY_MS``; one more chunk
      for the codec delay and chunk alignment), and the load governor caps the
      decode at the board's ``dred_ms`` (and lower when the board falls
      behind).  The burst start (history analysis -- priced though it runs only where DRED does
      not reach the frames before the hole --, vocoder priming, and the
      payload's parse) runs one slot early, in the real slot before the hole
      (``Receiver._prepare_next``).  So the heaviest slot of a DRED burst, for
      depth ``d``, is the larger of that slot (Opus decode + burst start +
      parse, i.e. the parse-and-newest-chunk row less one chunk) and the
      hole's first slot (libopus's concealment + decode of
      ``k = min(d, window + 40 ms) / 40`` chunks + the slot's synthesis:
      vocoder and its postfilter; the hand-back slot after the hole, an Opus
      decode and the same two vocoder frames, is lighter), and the deepest
      ``d`` (a multiple of 40 up to 1040) whose heaviest slot fits is chosen.  Depths beyond the window cost no more; a receiver run with a
      longer ``--max-delay-ms`` decodes up to ``d`` at once.  When even 40 ms
      does not fit, the depth is 0: the board config then says that neural
      recovery is not sustained (the live commands leave DRED and neural PLC
      off unless asked).

    Parameters
    ----------
    instructions_per_second : float
        The board's rate (> 0).
    stages : list of StageCount
        Counted stages of ``run_bench(choices=True)``; those named in
        :mod:`edge_dred.tools.bench` (features, Opus encode per complexity,
        DRED coding, libopus PLC, burst start, newest-chunk and per-chunk
        decode, vocoder, postfilter) are needed; the TFLite step is optional.
    window_ms : int, optional
        Deepest a slot still to be played lies behind the newest packet.

    Returns
    -------
    Recommendation

    Raises
    ------
    EstimateError
        A needed stage was not counted, or a bad rate or window.
    """
    from . import bench
    from ..degrade import DRED_CHUNK_MS
    from ..dred.payload import MAX_CHUNKS

    if window_ms is None:
        from ..playout import DEFAULT_MAX_DELAY_MS as window_ms
    if not instructions_per_second > 0:
        raise EstimateError(f"instructions_per_second must be > 0, got {instructions_per_second!r}")
    if isinstance(window_ms, bool) or not isinstance(window_ms, int) or not 0 <= window_ms <= 10_000:
        raise EstimateError(f"window_ms must be an integer in 0..10000, got {window_ms!r}")
    med = {(s.side, s.stage): s.median for s in stages}

    def need(key: tuple[str, str]) -> float:
        if key not in med:
            raise EstimateError(f"no recommendation: stage '{key[0]} / {key[1]}' was not counted")
        return med[key]

    per_packet = instructions_per_second * FRAME_MS / 1000.0
    step, code, newest = bench.DRED_STAGES
    sender_base = need(bench.SENDER_FEATURES) + need(code) + med.get(step, 0.0)
    sender = {c: (sender_base + need(bench.opus_complexity_stage(c))) / per_packet for c in bench.OPUS_COMPLEXITIES}
    fits = [c for c, r in sender.items() if r <= SENDER_RTF_BUDGET]
    complexity = max(fits) if fits else min(bench.OPUS_COMPLEXITIES)
    no_step = "" if step in med else ", TFLite encoder step not counted"
    why_c = (f"complexity {complexity}: sender {sender[complexity]:.3f} "
             f"{'<=' if fits else '> even at 0:'} {SENDER_RTF_BUDGET}{no_step}")

    burst = sum(need(key) for key in bench.BURST_STAGES)
    chunk = need(bench.DRED_CHUNK)
    start = need(bench.OPUS_DECODE) + burst + max(need(newest) - chunk, 0.0)
    first = need(bench.OPUS_PLC) + need(bench.VOCODER) + need(bench.POSTFILTER)
    at_once = window_ms // DRED_CHUNK_MS + 1

    def slot(d: int) -> float:
        return max(start, first + min(d // DRED_CHUNK_MS, at_once) * chunk) / per_packet

    depths = range(DRED_CHUNK_MS, MAX_CHUNKS * DRED_CHUNK_MS + 1, DRED_CHUNK_MS)
    ok = [d for d in depths if slot(d) <= RECEIVER_RTF_BUDGET]
    dred_ms = max(ok) if ok else 0
    rx = slot(dred_ms or DRED_CHUNK_MS)
    k = min((dred_ms or DRED_CHUNK_MS) // DRED_CHUNK_MS, at_once)
    if ok:
        why_d = (f"dred_ms {dred_ms}: heaviest DRED slot {rx:.3f} <= {RECEIVER_RTF_BUDGET} (burst start "
                 f"{start / per_packet:.3f} in the slot before; first slot {k} chunk{'s' if k > 1 else ''} at "
                 f"once, {window_ms} ms playout window)")
    else:
        why_d = (f"dred_ms 0: heaviest DRED slot {rx:.3f} > {RECEIVER_RTF_BUDGET} even at 40 ms (the slot before "
                 f"the hole, with the burst start, {start / per_packet:.3f}; the hole's first slot "
                 f"{(first + chunk) / per_packet:.3f})")
    return Recommendation(complexity, dred_ms, sender[complexity], rx, f"{why_c}; {why_d}")


# --------------------------------------------------------------------------- guest side

# Runs inside the emulated python3.11: the bench's own stages, with its timer replaced by
# per-packet markers.  Call 0 is an empty stage that measures the markers' own cost.
_GUEST = r'''
import json, os, sys
import numpy as np
import edge_dred.tools.bench as bench

MAGIC = {magic}
def mark(code):
    os.umask(MAGIC | (code << 12) | 0o022)

def counted(fn, n_packets, repeat):
    for i in range(n_packets):
        mark({begin})
        fn(i)
        mark({end})
    mark({call_end})
    return np.full(n_packets, 1e-6)

counted(lambda i: None, 16, 1)
bench.time_per_packet = counted
from edge_dred.kernels import _kernels
table = bench.run_bench(seconds={seconds}, repeat=1, choices=True)
print(json.dumps({{"table": table, "variant": _kernels.best_variant(), "numpy": np.__version__}}))
'''


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise EstimateError(f"{cmd[0]}: not found") from e


def build_plugin(qemu: str, work: Path, probe: list[str]) -> Path:
    """Compile the counting plugin for this host (cached in ``work``) and check that ``qemu`` loads it.

    ``probe`` is a short guest command for the check (qemu arguments after ``-plugin``, e.g.
    ``["-L", sysroot, sysroot + "/bin/true"]``).
    """
    plugin_src = source_checkout() / "scripts" / "qemu_insn_plugin.c"
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        raise EstimateError("no host C compiler (cc/gcc) to build the qemu plugin")
    src_hash = hashlib.sha256(plugin_src.read_bytes()).hexdigest()[:12]
    work.mkdir(parents=True, exist_ok=True)
    errors = []
    # The plugin API version qemu accepts depends on the qemu release: try the known ones.
    for version in (1, 2, 3, 4, 5):
        lib = work / f"libedinsn-{src_hash}-v{version}.so"
        if not lib.exists():
            r = _run([cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-DPLUGIN_API_VERSION={version}",
                      "-o", str(lib), str(plugin_src)])
            if r.returncode:
                raise EstimateError(f"building the qemu plugin failed:\n{r.stderr[-1500:]}")
        out = work / "probe.txt"
        out.unlink(missing_ok=True)
        r = _run([qemu, "-plugin", f"{lib},out={out}", *probe], timeout=60)
        if r.returncode == 0 and out.exists() and re.search(r"^total \d+$", out.read_text(), re.M):
            return lib
        errors.append(r.stderr.strip()[-300:])
    raise EstimateError(f"{qemu} does not load the counting plugin (a qemu-user built with plugin support is "
                        f"needed: Debian's 'qemu-user'):\n" + "\n".join(errors[:1] + errors[-1:]))


def _find_wheel(arch: str, wheel: str | None) -> Path:
    if wheel:
        p = Path(wheel)
        if not p.is_file():
            raise EstimateError(f"wheel {wheel} not found")
        return p
    dist = source_checkout() / "dist" / "arm"
    cands = sorted(dist.glob(f"edge_dred-*manylinux*_{arch}.whl"), key=lambda p: p.stat().st_mtime)
    if not cands:
        raise EstimateError(f"no {arch} wheel in {dist}: run scripts/build_wheels.sh {arch} --no-test "
                            "first (or pass --wheel)")
    return cands[-1]


def prepare_guest(arch: str, wheel: str | None = None) -> tuple[Path, Path, Path]:
    """(sysroot, site, work) for ``arch``: the sysroot from build_wheels.sh, the wheel installed in ``site``.

    ``work/wheel.sha256`` holds the installed wheel's digest.
    """
    if arch not in _ARCH:
        raise EstimateError(f"no emulated estimate for architecture {arch!r} (aarch64 or armv7l only)")
    debarch = _ARCH[arch][0]
    sysroot = cache_dir() / f"sysroot-bookworm-{debarch}"
    if not (sysroot / "usr" / "bin" / "python3.11").exists():
        raise EstimateError(f"no sysroot at {sysroot}: run scripts/build_wheels.sh {arch} --no-test first")
    whl = _find_wheel(arch, wheel)
    work = cache_dir() / f"estimate-{debarch}"
    site = work / "site"
    stamp = work / "wheel.sha256"
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest and site.is_dir()):
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(site, ignore_errors=True)
        plat = re.search(r"-(manylinux_[^-]+)\.whl$", whl.name)
        if not plat:
            raise EstimateError(f"{whl.name}: not a manylinux wheel")
        r = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
                  "--platform", plat.group(1), "--python-version", "3.11", "--implementation", "cp", "--abi",
                  "cp311", "--only-binary=:all:", str(whl)])
        if r.returncode:
            raise EstimateError(f"installing {whl.name} failed:\n{r.stderr[-1500:]}")
        _run([sys.executable, "-m", "compileall", "-q", str(site)])
        stamp.write_text(digest)
    return sysroot, site, work


# --------------------------------------------------------------------------- which qemu, which TFLite

def qemu_version(qemu: str | os.PathLike) -> str:
    """The release a qemu binary reports (``7.2.22``), or ``unknown``."""
    r = _run([str(qemu), "--version"], timeout=30)
    m = re.search(r"version (\S+)", r.stdout)
    return m.group(1) if m else "unknown"


def supports_plugins(qemu: str | os.PathLike) -> bool:
    """Whether a qemu-user binary was built with TCG plugin support (``-plugin`` among its options).

    Debian's static builds (``qemu-user-static``; every ``qemu-user`` from 10.0 on) have none.
    """
    r = _run([str(qemu), "-h"], timeout=30)
    return bool(re.search(r"^-plugin\b", r.stdout, re.M))


@dataclass(frozen=True)
class GuestRuntime:
    """How a guest is run for counting: the qemu binary, its version, the TFLite site (or None) and why.

    ``why_no_tflite`` is a one-line reason when ``tflite_site`` is None, else empty.
    """

    qemu: Path
    version: str
    tflite_site: Path | None
    notes: tuple[str, ...]
    why_no_tflite: str = ""
    #: (bookworm-backports' qemu without plugin support, its version, the installed runtime's site,
    #: a cache key) when the runtime was left out of the counting guest: :func:`count_tflite_step`
    #: can still count the encoder step with them.
    apart: tuple[Path, str, Path, str] | None = None


# One 20 ms encoder step on the shipped model, as the bench runs it: does the runtime work here?
_TFLITE_PROBE = """
import json, numpy as np
from edge_dred.dred.encoder import DredEncoder, interpreter_class
z, s = DredEncoder().step(np.zeros((2, 20), np.float32))
print(json.dumps({"runtime": interpreter_class().__module__.split(".")[0], "finite": bool(np.isfinite(z).all())}))
"""


def _runtime_key(qemu: Path, version: str, cpu: str, runtime: str, work: Path) -> str:
    """Cache key of a result for this qemu binary and version, CPU model, TFLite runtime and wheel."""
    stamp = work / "wheel.sha256"
    return hashlib.sha256(f"{qemu}|{version}|{cpu}|{runtime}|{stamp.read_text() if stamp.exists() else ''}"
                          .encode()).hexdigest()[:16]


def _cached(path: Path, key: str, compute):
    """``compute()`` once per ``key``, kept in the JSON file ``path`` (a failing compute is not kept)."""
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = compute()
        path.write_text(json.dumps(known, indent=1))
    return known[key]


def _probe_tflite(qemu: Path, cpu: str, sysroot: Path, site: Path, tsite: Path, work: Path,
                  key: str) -> tuple[bool, str]:
    """(works, detail) for the TFLite runtime in ``tsite`` under ``qemu -cpu cpu``; cached by ``key``."""
    ok, detail = _cached(work / "tflite-probe.json", key,
                         lambda: _run_tflite_probe(qemu, cpu, sysroot, site, tsite, work))
    return bool(ok), str(detail)


def _run_tflite_probe(qemu: Path, cpu: str, sysroot: Path, site: Path, tsite: Path, work: Path) -> list:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "PYTHONPATH": f"{tsite}:{site}"}
    try:
        r = subprocess.run([str(qemu), "-L", str(sysroot), "-cpu", cpu, str(sysroot / "usr/bin/python3.11"),
                            "-c", _TFLITE_PROBE], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        ok, detail = False, "one encoder step took over 900 s"
    else:
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = None
        if r.returncode == 0 and isinstance(res, dict) and res.get("finite"):
            ok, detail = True, f"{res.get('runtime')} ran an encoder step"
        else:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1][:200]
            how = f"killed by signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
            ok, detail = False, f"{how}: {last}"
    return [ok, detail]


def plan_runtime(arch: str, cpu: str, sysroot: Path, site: Path, work: Path) -> GuestRuntime:
    """Pick the counting qemu and decide whether the guest gets the TFLite runtime.

    bookworm-backports' qemu 10 (cached by ``build_wheels.sh --dred``) runs ai-edge-litert, which
    bookworm's 7.2 crashes in, so it counts when it loads plugins; otherwise the system's
    ``qemu-<arch>`` (Debian ``qemu-user``, dynamic, plugin-capable) does.  The runtime is
    installed with ``arm_smoke.install_tflite`` into the smoke test's cache and probed with one
    encoder step under the counting qemu and ``cpu`` (result cached); it is left out of the
    guest when it cannot be installed or does not run, with the reason in ``notes``.

    Parameters
    ----------
    arch : str
        ``aarch64`` or ``armv7l``.
    cpu : str
        qemu CPU model of the board.
    sysroot, site, work : Path
        From :func:`prepare_guest`.

    Returns
    -------
    GuestRuntime
    """
    sm = _smoke()
    debarch, _, qemu_name = _ARCH[arch]
    notes: list[str] = []
    qemu: Path | None = None
    bpo = sm.bpo_qemu(cache_dir(), arch)
    no_bpo = ""   # why bookworm-backports' qemu does not count, for the not-run reason
    if bpo is None:
        no_bpo = "no bookworm-backports qemu cached"
        notes.append(f"{no_bpo} in {cache_dir() / 'qemu-bpo'} (`scripts/build_wheels.sh {arch} --dred` fetches it)")
    elif supports_plugins(bpo):
        qemu = bpo
    else:
        bpo_version = qemu_version(bpo)
        no_bpo = f"bookworm-backports' qemu {bpo_version} has no plugin support"
        notes.append(f"bookworm-backports' {qemu_name} {bpo_version} ({bpo}) has no TCG plugin support "
                     "(no -plugin option: Debian builds its qemu-user 10 as static binaries only), so it cannot count")
    if qemu is None:
        found = shutil.which(qemu_name)
        if not found:
            raise EstimateError(f"{qemu_name} (Debian package qemu-user, with TCG plugin support) is not installed")
        qemu = Path(found)
    version = qemu_version(qemu)
    notes.append(f"counted under {qemu} (qemu {version})")
    pkgs = " / ".join(sm.TFLITE[arch][0])
    tsite = sm.tflite_site(cache_dir() / f"smoke-{debarch}")
    try:
        got = sm.install_tflite(arch, tsite)
    except sm.SmokeError as e:
        last = [ln for ln in str(e).splitlines() if ln.strip()][-1][:200]
        notes.append(f"TFLite runtime not in the guest: {pkgs} for {arch} could not be installed ({last})")
        return GuestRuntime(qemu, version, None, tuple(notes), f"{pkgs} could not be installed for the guest")
    ok, detail = _probe_tflite(qemu, cpu, sysroot, site, tsite, work, _runtime_key(qemu, version, cpu, got, work))
    runtime = got.split(",")[0]
    if ok:
        notes.append(f"TFLite runtime in the guest: {runtime} ({detail})")
        return GuestRuntime(qemu, version, tsite, tuple(notes))
    notes.append(f"TFLite runtime not in the guest: {runtime} fails under qemu {version} -cpu {cpu} ({detail})")
    why = f"{runtime} fails under the counting qemu {version} ({detail.split(':')[0]})"
    if no_bpo:
        why += f"; {no_bpo}"
    apart = None
    if bpo is not None and bpo != qemu:
        apart = (bpo, bpo_version, tsite, _runtime_key(bpo, bpo_version, cpu, got, work))
    return GuestRuntime(qemu, version, None, tuple(notes), why, apart)


# The encoder step counted apart (the counting plugin's qemu cannot run the TFLite runtime): a
# loop of steps on the same features; the runtime's executable mappings printed at the end.
_STEP_GUEST = """
import sys, numpy as np
from edge_dred.dred.encoder import DredEncoder
from edge_dred.dsp.features import compute_features
from edge_dred.tools.demo_audio import _synthetic
enc = DredEncoder()
f = compute_features(np.clip(_synthetic(2.0), -32768, 32767).astype(np.int16)).astype(np.float32)
for i in range(int(sys.argv[1])):
    j = (2 * i) % (len(f) - 2)
    enc.step(f[j:j + 2])
for line in open('/proc/self/maps'):
    p = line.split()
    if len(p) >= 6 and 'x' in p[1] and p[5].startswith(sys.argv[2]):
        print('MAP', p[0])
"""


def count_trace_lines(log: str | os.PathLike) -> int:
    """Executed instructions in a ``-one-insn-per-tb -d exec,nochain`` log: its ``Trace`` lines."""
    n = 0
    with open(log, "rb") as f:
        for line in f:
            n += line.startswith(b"Trace")
    return n


def address_filter(maps: list[str]) -> str:
    """qemu ``-dfilter`` ranges for ``/proc/self/maps`` spans (``start-end``, hex)."""
    return ",".join(f"0x{m.split('-')[0]}..0x{m.split('-')[1]}" for m in maps)


def count_tflite_step(qemu: Path, cpu: str, sysroot: Path, site: Path, tsite: Path, steps: int = 20) -> float:
    """Guest instructions per DRED encoder step executed inside the TFLite runtime's libraries.

    For a qemu without plugin support (bookworm-backports' qemu 10, which runs ai-edge-litert
    where the plugin-capable 7.2 crashes): with one instruction per translation block every
    executed instruction whose address lies in the runtime package's executable mappings
    (``ai_edge_litert`` or ``tflite_runtime`` under ``tsite``; the other libraries there move from
    run to run) is one ``Trace`` line of the execution log.  Two runs ``steps`` apart cancel
    loading and start-up.  Host address randomisation is off (``setarch -R``) and a probe with
    the same logging options finds the mappings, so the filter holds for the counting runs.
    The Python around ``invoke()`` and libc are not in the count.  Each run logs about 1 GB
    into a temporary folder.

    Raises
    ------
    EstimateError
        ``setarch`` is missing, a guest run fails, or the mappings move between runs.
    """
    if shutil.which("setarch") is None:
        raise EstimateError("setarch (util-linux) is needed to count the TFLite step")
    runtime = [tsite / name for name in ("ai_edge_litert", "tflite_runtime") if (tsite / name).is_dir()]
    if not runtime:
        raise EstimateError(f"TFLite step count: no TFLite runtime package in {tsite}")
    machine = os.uname().machine
    env_base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": f"{tsite}:{site}"}
    with tempfile.TemporaryDirectory() as td:
        script = Path(td) / "step.py"
        script.write_text(_STEP_GUEST)

        def run(n: int, ranges: str) -> tuple[list[str], Path]:
            log = Path(td) / f"exec{n}.log"
            cmd = ["setarch", machine, "-R", str(qemu), "-L", str(sysroot), "-cpu", cpu, "-one-insn-per-tb",
                   "-d", "exec,nochain", "-dfilter", ranges, "-D", str(log),
                   str(sysroot / "usr/bin/python3.11"), str(script), str(n), str(runtime[0]) + "/"]
            try:
                r = subprocess.run(cmd, env=dict(env_base, HOME=td), capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                raise EstimateError("the TFLite step count took longer than 30 min") from None
            if r.returncode:
                raise EstimateError(f"TFLite step count: the guest failed (exit {r.returncode}): {r.stderr[-500:]}")
            return [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("MAP ")], log

        maps, probe = run(1, "0x0..0x1")     # the same options as the counting runs: the same layout
        probe.unlink()
        if not maps:
            raise EstimateError(f"TFLite step count: the guest mapped nothing from {tsite}")
        counts = []
        for n in (2, 2 + steps):
            again, log = run(n, address_filter(maps))
            if again != maps:
                raise EstimateError("TFLite step count: the runtime's libraries moved between runs")
            counts.append(count_trace_lines(log))
            log.unlink()
    return (counts[1] - counts[0]) / steps


def _tflite_step_apart(rt: GuestRuntime, cpu: str, sysroot: Path, site: Path, work: Path) -> tuple[float | None, str]:
    """(instructions per encoder step or None, a note) from :func:`count_tflite_step` with
    ``rt.apart``, cached in ``work``."""
    if rt.apart is None:
        return None, ""
    qemu, version, tsite, key = rt.apart
    try:
        per = _cached(work / "tflite-step.json", key, lambda: count_tflite_step(qemu, cpu, sysroot, site, tsite))
    except EstimateError as e:
        return None, f"TFLite encoder step not counted apart either: {e}"
    return float(per), (f"dred sender / TFLite encoder step: counted apart under bookworm-backports' qemu "
                        f"{version} -cpu {cpu} from its execution log, inside the runtime's libraries "
                        "only (the Python around invoke() and libc are not in it)")


def run_guest(arch: str, cpu: str, seconds: float, wheel: str | None = None,
              timeout: float = 1800.0) -> tuple[list[StageCount], dict]:
    """Count instructions per packet of every bench stage on ``cpu``; return stage counts and run info.

    ``info`` holds the guest's kernel variant and numpy, the counting qemu and its version, the
    marker overhead, the total count, ``not_run`` ((side, stage, reason) of stages the guest
    could not run) and ``notes`` (how the guest was set up, then the bench's own notes).
    """
    sysroot, site, work = prepare_guest(arch, wheel)
    rt = plan_runtime(arch, cpu, sysroot, site, work)
    plugin = build_plugin(str(rt.qemu), work, ["-L", str(sysroot), str(sysroot / "bin" / "true")])
    with tempfile.TemporaryDirectory(dir=work) as td:
        driver = Path(td) / "driver.py"
        driver.write_text(_GUEST.format(magic=MAGIC, begin=BEGIN, end=END, call_end=CALL_END, seconds=float(seconds)))
        marks = Path(td) / "marks.txt"
        path = f"{rt.tflite_site}:{site}" if rt.tflite_site else str(site)
        env = {"PATH": "/usr/bin:/bin", "HOME": td, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONPATH": path, "OPENBLAS_NUM_THREADS": "1"}
        t0 = time.monotonic()
        try:
            r = subprocess.run([str(rt.qemu), "-L", str(sysroot), "-cpu", cpu, "-plugin", f"{plugin},out={marks}",
                                str(sysroot / "usr/bin/python3.11"), str(driver)], cwd=td, env=env,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EstimateError(f"emulated bench on {cpu} took longer than {timeout:.0f} s") from None
        wall = time.monotonic() - t0
        if r.returncode:
            raise EstimateError(f"emulated bench on {cpu} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
        try:
            info = json.loads(r.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise EstimateError(f"emulated bench printed no result:\n{r.stdout[-500:]}\n{r.stderr[-500:]}") from None
        stages, overhead, total = count_stages(marks.read_text(), info["table"])
    skipped, bench_notes = parse_bench_notes(info["table"])
    if rt.why_no_tflite:
        # the guest only saw the runtime missing; say why it was left out
        skipped = [(sd, st, rt.why_no_tflite if why.startswith("no TFLite runtime") else why)
                   for sd, st, why in skipped]
    notes = list(rt.notes) + bench_notes
    from .bench import DRED_STAGES
    step = DRED_STAGES[0]    # the TFLite encoder step
    if any((sd, st) == step for sd, st, _ in skipped):
        per, note = _tflite_step_apart(rt, cpu, sysroot, site, work)
        if per is not None:
            stages.append(StageCount(*step, np.array([per])))
            skipped = [x for x in skipped if (x[0], x[1]) != step]
        if note:
            notes.append(note)
    info.update(wall_s=wall, marker_overhead=overhead, total_insns=total, qemu=str(rt.qemu), qemu_version=rt.version,
                cpu=cpu, not_run=skipped, notes=notes)
    return stages, info


# --------------------------------------------------------------------------- report

def format_estimate(board, stages: list[StageCount], info: dict) -> str:
    """Markdown table for one board.

    Parameters
    ----------
    board : BoardConfig
        Gives ``instructions_per_second``, name and description.
    stages : list of StageCount
        Counted stages (:func:`run_guest`).
    info : dict
        :func:`run_guest`'s run info; ``qemu_version``, ``not_run`` and ``notes`` are optional.

    Returns
    -------
    str
        Heading, assumption, one row per counted stage (the Opus complexity sweep on one line),
        a ``not run`` row with its reason per stage the guest could not run, the notes, the
        per-side sums (without the rows of ``bench.CHOICE_SIDES``) and the recommended
        complexity and DRED depth beside the board config's.
    """
    from .bench import CHOICE_SIDES

    ips = board.instructions_per_second
    budget = FRAME_MS / 1000.0
    not_run = info.get("not_run", [])
    qv = f"qemu {info['qemu_version']} " if info.get("qemu_version") else "qemu "
    lines = [
        f"### {board.name}: {board.description}",
        "",
        f"{qv}`-cpu {info['cpu']}`, kernels `{info['variant']}`, guest numpy {info['numpy']}; "
        f"{info['total_insns'] / 1e9:.2f} G instructions counted in {info['wall_s']:.0f} s of emulation.",
        f"Assumption: {ips / 1e9:.2f} G instructions/s sustained (edge_dred/board_configs/{board.name}.toml "
        "`instructions_per_second`); caches, memory and the OS are not modelled.",
        "",
        "| side | stage | k instr/packet (min / median / max) | est. ms/packet | est. RTF |",
        "|---|---|---:|---:|---:|",
    ]
    totals: dict[str, float] = {}
    sweep = []
    for s in stages:
        med = s.median
        if s.side == CHOICE_SIDES[0]:
            sweep.append(f"{s.stage.rsplit(' ', 1)[-1]}: {med / 1e3:.0f}")
            continue
        if s.side not in CHOICE_SIDES:
            totals[s.side] = totals.get(s.side, 0.0) + med
        lines.append(f"| {s.side} | {s.stage} | {s.insns.min() / 1e3:.0f} / {med / 1e3:.0f} / {s.insns.max() / 1e3:.0f} "
                     f"| {med / ips * 1e3:.3f} | {med / ips / budget:.4f} |")
    lines += [f"| {side} | {stage} | not run: {why} | - | - |" for side, stage, why in not_run]
    lines.append("")
    if sweep:
        lines += [f"Opus encode 24 kb/s by complexity, k instr/packet (median): {', '.join(sweep)}", ""]
    if info.get("notes"):
        lines += [f"- {n}" for n in info["notes"]] + [""]
    for side, tot in totals.items():
        missing = [st for sd, st, _ in not_run if sd == side]
        lines.append(f"{side}: {tot / 1e6:.2f} M instructions per packet, all stages summed -> est. RTF "
                     f"{tot / ips / budget:.3f}" + (f" (without {', '.join(missing)}: not run)" if missing else ""))
    lines.append("")
    try:
        rec = recommend_runtime(ips, stages)
    except EstimateError as e:
        lines.append(f"recommended defaults: none ({e})")
    else:
        lines.append(f"recommended defaults: complexity {rec.complexity}, dred_ms {rec.dred_ms} (config: complexity "
                     f"{board.complexity}, dred_ms {board.dred_ms}); {rec.reason}")
    return "\n".join(lines)


def estimate_boards(names: list[str], seconds: float = 1.0, wheel: str | None = None) -> str:
    """Run the emulated bench once per distinct (arch, CPU model) and format a table per board.

    Parameters
    ----------
    names : list of str
        Board names (``edge_dred/board_configs/*.toml``) with an ARM ``arch``, ``qemu_cpu`` and
        ``instructions_per_second``.
    seconds : float
        Audio per stage in the guest, 0.5..30 s.
    wheel : str, optional
        The cross-built wheel (default: the newest in ``dist/arm`` for the board's arch).

    Returns
    -------
    str
        One table per board, then a summary.
    """
    from ..boards import load_board

    source_checkout()  # before any work: say at once when this is not a checkout
    boards = [load_board(n) for n in names]
    for b in boards:
        if b.instructions_per_second <= 0 or not b.qemu_cpu:
            raise EstimateError(f"board {b.name} has no qemu_cpu/instructions_per_second to estimate with")
        if b.arch not in _ARCH:
            raise EstimateError(f"board {b.name}: architecture {b.arch!r} cannot be emulated here")
    if not 0.5 <= seconds <= 30:
        raise EstimateError(f"--seconds for an estimate must be in [0.5, 30], got {seconds}")
    runs: dict[tuple[str, str], tuple[list[StageCount], dict]] = {}
    out = []
    from .bench import CHOICE_SIDES

    summary = ["| board | core | kernels | G instr/s | receiver RTF (all stages summed) | sender RTF | "
               "heaviest DRED slot RTF | complexity (config -> est.) | dred_ms (config -> est.) | not run |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for b in boards:
        key = (b.arch, b.qemu_cpu)
        if key not in runs:
            print(f"edge-dred bench --estimate: counting on qemu {b.arch} -cpu {b.qemu_cpu} ...", file=sys.stderr, flush=True)
            runs[key] = run_guest(b.arch, b.qemu_cpu, seconds, wheel)
        stages, info = runs[key]
        out.append(format_estimate(b, stages, info))
        per_packet = b.instructions_per_second * (FRAME_MS / 1000)
        send = sum(s.median for s in stages if s.side in SENDER_SIDES) / per_packet
        recv = sum(s.median for s in stages if s.side not in SENDER_SIDES + CHOICE_SIDES) / per_packet
        try:
            rec = recommend_runtime(b.instructions_per_second, stages)
            choice = (f"{rec.receiver_rtf:.3f} | {b.complexity} -> {rec.complexity} | "
                      f"{b.dred_ms} -> {rec.dred_ms}")
        except EstimateError:
            choice = f"- | {b.complexity} -> ? | {b.dred_ms} -> ?"
        skipped = ", ".join(st for _, st, _ in info.get("not_run", [])) or "-"
        summary.append(f"| {b.name} | {b.qemu_cpu} | {info['variant']} | {b.instructions_per_second / 1e9:.2f} | "
                       f"{recv:.3f} | {send:.3f} | {choice} | {skipped} |")
    note = ("Receiver RTF sums every receiver-side stage (decode, concealment, neural PLC, DRED decode): an upper "
            "bound, since a slot is either decoded or concealed. Sender RTF sums features, Opus encode and the "
            "DRED sender stages (at complexity 9). A stage under 'not run' is in neither sum (each board's notes say "
            "why). The heaviest DRED slot (the larger of the real slot before a hole, which runs the burst start, "
            "and the hole's first slot: libopus PLC + the deepest decode at once + synthesis, at the "
            f"recommended depth) and the recommended defaults come from recommend_runtime (budgets: sender "
            f"{SENDER_RTF_BUDGET}, receiver {RECEIVER_RTF_BUDGET}; docs/boards.md).")
    return "\n\n".join(out + ["### Summary (est. real-time factor per 20 ms packet; < 1 keeps up)",
                              "\n".join(summary), note])
