"""edge-dred against libopus (DRED + deep PLC), instructions per stage; prints a table.

    python benchmarks/vs_libopus --speech FILE|DIR --trace FILE [--seconds 20]
                                 (--opus-src DIR|TARBALL | --opus-git GITDIR) [--work DIR]
                                 [--arch aarch64 [--cpu cortex-a72] [--wheel WHL]]

Builds libopus with DRED and deep PLC (CMake ``OPUS_DRED``/``OPUS_DEEP_PLC``, i.e.
``--enable-dred --enable-deep-plc``) from a source tree or release tarball
(``--opus-src``) or from commit ``PIN`` of a clone of https://github.com/xiph/opus
(``--opus-git``).  Where the tree has no model weights (a git checkout; a release
tarball ships them) random weights of the shipped shapes are written by
upstream's own export scripts (``weights.py``; needs torch).  Then, on the same
speech (a file, or a folder's files in order, cut to ``--seconds``) and the same
loss trace (one 0/1 per 20 ms packet, repeated to the speech's length):

* ``driver.c`` encodes with libopus with and without DRED and decodes in
  neural-PLC mode (deep PLC) and DRED mode (DRED of the packet after each burst,
  deep PLC where it does not reach), under callgrind;
* ``edge_side.py`` runs edge-dred's sender and receiver (neural PLC; DRED with an
  ideal 1040 ms buffer + neural PLC), under callgrind, each stage inside a named
  C function so its inclusive cost is the stage's.

Instruction counts are x86-64 here (callgrind ``Ir``), run-time dispatch as
shipped on both sides (libopus's RTCD, the kernels' variants).  With ``--arch
aarch64`` both sides run under ``qemu-aarch64 -cpu CPU`` instead and count guest
instructions with the project's plugin (``aarch64.py``: libopus cross-built, the
project's aarch64 wheel; the DRED encoder network, TFLite, runs on the host and
its outputs are replayed, so the rows that need it print ``n/a``).  Nothing runs on
the network; the work folder (default ``build/vs_libopus``) keeps the build.
Skips with a message, exit status 0, when valgrind, a C compiler, CMake, torch
(for the weights) or the libopus source is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from callgrind import read_inclusive  # noqa: E402

PIN = "22244de5a79bd1d6d623c32e72bf1954b56235be"   # libopus v1.6.1
PIN_NAME = "v1.6.1"

# The project's settings (edge_dred.simulate conditions neural_plc / dred): 24 kb/s, complexity 9,
# no LBRR.  libopus takes DRED's bits out of its bit rate and sizes DRED from the expected
# loss, so its DRED encoder gets 24 kb/s plus about what edge-dred's payload adds on top.
BITRATE = 24000
DRED_BITRATE = 54000
DRED_10MS = 104
EXPECTED_LOSS_PCT = 20

WEIGHT_FILES = ["dred_rdovae_enc_data.c", "dred_rdovae_dec_data.c", "dred_rdovae_stats_data.c",
                "fargan_data.c", "plc_data.c", "pitchdnn_data.c"]


ARCHES = ("x86_64", "aarch64")
ARM_CPUS = ("cortex-a53", "cortex-a72", "cortex-a76")   # Pi 3B+ / Zero 2 W, Pi 4, Pi 5
DEFAULT_CPU = "cortex-a72"


class Skip(Exception):
    """A prerequisite is missing: say which and stop without failing."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks/vs_libopus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", required=True, help="16 kHz speech: a file, or a folder (its files in order)")
    ap.add_argument("--trace", required=True, help="loss trace: one 0/1 per 20 ms packet (1 = lost)")
    ap.add_argument("--seconds", type=float, default=20.0, help="speech length (default 20)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--opus-src", help="libopus source tree or release tarball (.tar.gz)")
    src.add_argument("--opus-git", help=f"clone of github.com/xiph/opus (bare or not); commit {PIN_NAME} is used")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "vs_libopus"), help="build/work folder")
    ap.add_argument("--json", help="also write every number to this file")
    ap.add_argument("--arch", choices=ARCHES, default="x86_64",
                    help="x86_64: callgrind on this machine (default); aarch64: qemu-aarch64 with the counting plugin")
    ap.add_argument("--cpu", help=f"qemu CPU model for --arch aarch64 (default {DEFAULT_CPU})")
    ap.add_argument("--wheel", help="edge-dred aarch64 wheel (default: the newest in dist/arm, "
                                    "from scripts/build_wheels.sh aarch64 --no-test)")
    a = ap.parse_args(argv)
    if not a.seconds > 0:
        ap.error("--seconds must be positive")
    if a.arch == "x86_64" and (a.cpu or a.wheel):
        ap.error("--cpu and --wheel need --arch aarch64")
    if a.arch == "aarch64":
        a.cpu = a.cpu or DEFAULT_CPU
        if a.cpu not in ARM_CPUS:
            ap.error(f"--cpu must be one of {', '.join(ARM_CPUS)}")
    return a


def _need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise Skip(f"{tool} not found ({why})")
    return path


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        raise SystemExit(f"{what} failed ({' '.join(cmd[:3])} ...):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _extract(t: tarfile.TarFile, dst: str) -> None:
    try:
        t.extractall(dst, filter="data")
    except TypeError:   # Python without extraction filters (< 3.11.4)
        t.extractall(dst)


def prepare_source(a: argparse.Namespace) -> tuple[str, str]:
    """A libopus tree of our own under the work folder; returns (path, what it is)."""
    dst = os.path.join(a.work, "opus-src")
    if a.opus_src:
        src = os.path.abspath(a.opus_src)
        label = f"{src}"
        if not os.path.exists(src):
            raise Skip(f"--opus-src {src} does not exist")
    elif a.opus_git:
        src = os.path.abspath(a.opus_git)
        label = f"{PIN_NAME} ({PIN[:12]}) from {src}"
    else:
        raise Skip("no libopus source: pass --opus-src DIR|TARBALL (libopus >= 1.5) or --opus-git CLONE "
                   f"(a clone of https://github.com/xiph/opus; {PIN_NAME} = {PIN[:12]} is used)")
    stamp = os.path.join(a.work, "opus-src.stamp")
    if os.path.exists(stamp) and open(stamp).read() == label:
        return dst, label
    shutil.rmtree(dst, ignore_errors=True)
    for b in ("opus-build", "opus-build-aarch64"):
        shutil.rmtree(os.path.join(a.work, b), ignore_errors=True)
    os.makedirs(dst)
    if a.opus_git:
        git = _need("git", "to read --opus-git")
        gd = ["--git-dir", src] if not os.path.isdir(os.path.join(src, ".git")) else ["-C", src]
        if subprocess.run([git, *gd, "cat-file", "-e", f"{PIN}^{{commit}}"], capture_output=True).returncode:
            raise Skip(f"{src} has no commit {PIN} ({PIN_NAME}); fetch it or pass --opus-src")
        # Large training files may be absent from a partial clone: leave out what cannot be read.
        tree = _run([git, *gd, "ls-tree", "-r", PIN], "git ls-tree").stdout.splitlines()
        ids = "\n".join(line.split()[2] for line in tree) + "\n"
        check = subprocess.run([git, *gd, "cat-file", "--batch-check"], input=ids, capture_output=True, text=True)
        missing = {w.split()[0] for w in check.stdout.splitlines() if w.endswith(" missing")}
        excl = [f":(exclude){line.split(None, 3)[3]}" for line in tree if line.split()[2] in missing]
        with tempfile.TemporaryFile() as tf:
            subprocess.run([git, *gd, "archive", PIN, "--", ".", *excl], stdout=tf, stderr=subprocess.DEVNULL,
                           check=True)
            tf.seek(0)
            with tarfile.open(fileobj=tf) as t:
                _extract(t, dst)
    elif os.path.isdir(src):
        shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
    else:
        with tarfile.open(src) as t:
            _extract(t, a.work + "/.unpack")
        top = os.listdir(a.work + "/.unpack")
        inner = os.path.join(a.work, ".unpack", top[0]) if len(top) == 1 else a.work + "/.unpack"
        shutil.rmtree(dst)
        shutil.move(inner, dst)
        shutil.rmtree(a.work + "/.unpack", ignore_errors=True)
    if not os.path.exists(os.path.join(dst, "dnn", "dred_encoder.c")):
        raise Skip(f"{label} has no DRED (dnn/dred_encoder.c): libopus >= 1.5 needed")
    open(stamp, "w").write(label)
    return dst, label


def ensure_weights(opus: str) -> str:
    """'shipped' if the tree has weights, else write random ones with upstream's export scripts."""
    dnn = os.path.join(opus, "dnn")
    if all(os.path.exists(os.path.join(dnn, f)) for f in WEIGHT_FILES):
        return "in the source tree" if not os.path.exists(os.path.join(dnn, ".random_weights")) else \
            "random, shipped shapes (upstream export scripts)"
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Skip("torch not installed: it writes libopus's random weights (pip install torch==2.13.0)") from None
    print("writing random weights of the shipped shapes with upstream's export scripts ...", file=sys.stderr)
    _run([sys.executable, os.path.join(HERE, "weights.py"), opus], "weight export")
    open(os.path.join(dnn, ".random_weights"), "w").write("weights.py\n")
    return "random, shipped shapes (upstream export scripts)"


def build_libopus(a: argparse.Namespace, opus: str) -> tuple[str, str]:
    """Static libopus with DRED and deep PLC, and the driver; returns (driver, include dir)."""
    cmake = _need("cmake", "to build libopus")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Skip("no C compiler (cc)")
    bdir = os.path.join(a.work, "opus-build")
    lib = os.path.join(bdir, "libopus.a")
    if not os.path.exists(lib):
        print("building libopus (DRED, deep PLC) ...", file=sys.stderr)
        _run([cmake, "-S", opus, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS_RELEASE=-O2 -g -DNDEBUG",
              "-DOPUS_DRED=ON", "-DOPUS_DEEP_PLC=ON", "-DOPUS_BUILD_SHARED_LIBRARY=OFF", "-DOPUS_BUILD_TESTING=OFF",
              "-DOPUS_BUILD_PROGRAMS=OFF"], "cmake configure")
        _run([cmake, "--build", bdir, "-j", str(os.cpu_count() or 1)], "libopus build")
    driver = os.path.join(a.work, "driver")
    _run([cc, "-O2", "-g", "-I", os.path.join(opus, "include"), os.path.join(HERE, "driver.c"), lib, "-lm",
          "-o", driver], "driver build")
    return driver, cc


def build_stages(a: argparse.Namespace, cc: str) -> tuple[str, bool]:
    """The edstage_* trampolines edge_side.py runs each stage inside."""
    from edge_side import stage_names

    src = os.path.join(a.work, "edstages.c")
    have_cg = os.path.exists("/usr/include/valgrind/callgrind.h")
    lines = ["#include <valgrind/callgrind.h>" if have_cg else
             "#define CALLGRIND_START_INSTRUMENTATION\n#define CALLGRIND_STOP_INSTRUMENTATION",
             "typedef long (*cb_t)(void);",
             "void edstage_start(void) { CALLGRIND_START_INSTRUMENTATION; }",
             "void edstage_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }"]
    for n in stage_names():
        lines.append(f"__attribute__((noinline)) long edstage_{n}(cb_t cb) "
                     "{ long r = cb(); __asm__ volatile(\"\" ::: \"memory\"); return r; }")
    # Called through libffi directly, callgrind does not see the stage functions as called
    # (libffi enters them in a way it does not track): a plain C call from edstage_enter is.
    lines.append("typedef long (*stage_t)(cb_t);")
    lines.append("static const stage_t stages[] = {" + ", ".join(f"edstage_{n}" for n in stage_names()) + "};")
    lines.append("long edstage_enter(int i, cb_t cb) "
                 "{ long r = stages[i](cb); __asm__ volatile(\"\" ::: \"memory\"); return r; }")
    open(src, "w").write("\n".join(lines) + "\n")
    so = os.path.join(a.work, "edstages.so")
    _run([cc, "-shared", "-fPIC", "-O1", src, "-o", so], "stage library build")
    return so, have_cg


def load_inputs(a: argparse.Namespace) -> tuple[str, str, int, str]:
    """Speech (raw int16) and trace files for both sides; returns (pcm, trace, packets, description)."""
    import numpy as np
    from edge_dred.audio.wavio import load_audio
    from edge_dred.constants import FRAME_SAMPLES, SAMPLE_RATE

    want = int(a.seconds * SAMPLE_RATE)
    if os.path.isdir(a.speech):
        files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(a.speech) for f in fs
                       if f.lower().endswith((".wav", ".flac")))
        if not files:
            raise SystemExit(f"--speech {a.speech}: no .wav or .flac files")
    elif os.path.exists(a.speech):
        files = [a.speech]
    else:
        raise SystemExit(f"--speech {a.speech}: no such file or folder")
    parts, n, used = [], 0, 0
    for f in files:
        parts.append(load_audio(f).pcm)
        n += len(parts[-1])
        used += 1
        if n >= want:
            break
    pcm = np.concatenate(parts)[:want].astype("<i2")
    try:
        vals = [int(v) for v in open(a.trace).read().split()]
    except (OSError, ValueError) as e:
        raise SystemExit(f"--trace {a.trace}: {e}") from None
    if not vals or any(v not in (0, 1) for v in vals):
        raise SystemExit(f"--trace {a.trace}: expected one 0 or 1 per line")
    n_packets = len(pcm) // FRAME_SAMPLES + 1
    lost = np.resize(np.array(vals, np.int8), n_packets)
    raw = os.path.join(a.work, "speech.raw")
    pcm.tofile(raw)
    trace = os.path.join(a.work, "trace.txt")
    open(trace, "w").write("\n".join(map(str, lost.tolist())) + "\n")
    desc = (f"{len(pcm) / SAMPLE_RATE:.1f} s of speech ({used} file(s) from {a.speech}); trace "
            f"{os.path.basename(a.trace)} over {n_packets} packets, {100 * lost.mean():.1f} % lost")
    return raw, trace, n_packets, desc


def callgrind(a: argparse.Namespace, name: str, cmd: list[str], extra: list[str] = ()) -> str:
    valgrind = _need("valgrind", "callgrind counts the instructions")
    out = os.path.join(a.work, f"callgrind.{name}.out")
    _run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", *extra, *cmd], f"{name} under callgrind")
    return out


def libopus_side(a, driver: str, raw: str, trace: str) -> tuple[dict, dict]:
    print("libopus under callgrind ...", file=sys.stderr)
    r = _run([driver, raw, trace, str(BITRATE), str(DRED_BITRATE), str(DRED_10MS), str(EXPECTED_LOSS_PCT)],
             "driver (native check)")
    info = json.loads(r.stdout)
    prof = read_inclusive(callgrind(a, "libopus", [driver, raw, trace, str(BITRATE), str(DRED_BITRATE),
                                                   str(DRED_10MS), str(EXPECTED_LOSS_PCT)]))
    return info, prof


def edge_side(a, so: str, have_cg: bool, raw: str, trace: str) -> tuple[dict, dict]:
    print("edge-dred under callgrind (slow: the interpreter runs under valgrind) ...", file=sys.stderr)
    out = os.path.join(a.work, "edge_side.json")
    extra = ["--instr-atstart=no"] if have_cg else []
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    valgrind = _need("valgrind", "callgrind counts the instructions")
    cg = os.path.join(a.work, "callgrind.edge.out")
    _run([valgrind, "--tool=callgrind", f"--callgrind-out-file={cg}", *extra, sys.executable,
          os.path.join(HERE, "edge_side.py"), raw, trace, so, out], "edge-dred under callgrind", env=env)
    return json.load(open(out)), read_inclusive(cg)


def _per(prof: dict, names: list[str], units: float) -> float | None:
    if not units or not any(n in prof for n in names):
        return None
    return sum(prof[n][0] for n in names if n in prof) / units


def libopus_rows(info: dict, prof: dict) -> dict[str, float | None]:
    def incl(n):
        return prof.get(n, (0, 0))[0]

    def calls(n):
        return prof.get(n, (0, 0))[1]

    pk, lost = info["packets"], info["lost"]
    voc_calls = calls("fargan_synthesize_int") + calls("fargan_synthesize")
    return {
        "rx_good_plc": _per(prof, ["rx_plc_good"], calls("rx_plc_good")),
        "rx_avg_plc": _per(prof, ["rx_plc_good", "rx_plc_lost"], pk),
        "rx_avg_dred": _per(prof, ["rx_dred_good", "rx_dred_burst", "rx_dred_tail"], pk),
        "lost_plc": _per(prof, ["rx_plc_lost"], calls("rx_plc_lost")),
        "lost_dred": _per(prof, ["rx_dred_burst", "rx_dred_tail"], lost),
        "rx_avg_dredonly": _per(prof, ["rx_dred_good", "rx_dred_burst", "rx_dred_tail"], pk),
        "lost_dredonly": _per(prof, ["rx_dred_burst", "rx_dred_tail"], lost),
        "features": _per(prof, ["compute_frame_features"], calls("compute_frame_features")),
        "vocoder": _per(prof, ["fargan_synthesize_int", "fargan_synthesize"], voc_calls),
        "postfilter": None,
        "dred_coding": _per(prof, ["dred_encode_silk_frame"], calls("dred_encode_silk_frame")),
        "dred_parse": _per(prof, ["dred_ec_decode"], calls("dred_ec_decode")),
        "dred_net": _per(prof, ["dred_rdovae_encode_dframe"], calls("dred_rdovae_encode_dframe")),
        "tx_overhead": (incl("tx_dred") - incl("tx_plain")) / pk if "tx_dred" in prof else None,
        "tx_nonet": (incl("tx_dred") - incl("tx_plain") - incl("dred_rdovae_encode_dframe")) / pk
        if "tx_dred" in prof and "dred_rdovae_encode_dframe" in prof else None,
    }


def edge_rows(info: dict, prof: dict) -> tuple[dict[str, float | None], dict]:
    calls, nested, units = info["calls"], info["nested"], info["units"]

    def raw(n):
        return prof.get(f"edstage_{n}", (0, 0))[0]

    own = raw("null") / max(1, calls.get("null", 0))
    per_nested = (raw("cal") - raw("cal0")) / info["cal_n"]

    def cost(n):
        """Inclusive cost of a stage less the measuring wrappers' own instructions."""
        if not calls.get(n):
            return None
        return raw(n) - own * calls[n] - per_nested * nested.get(n, 0)

    def per(names, u):
        cs = [cost(n) for n in names]
        if not u or all(c is None for c in cs):
            return None
        return sum(c for c in cs if c is not None) / u

    def both(stage):   # per unit over every mode
        names = [f"{m}_{stage}" for m in ("plc", "dred", "dredonly")]
        return per(names, sum(units.get(n, 0) for n in names))

    slots = {m: calls.get(f"{m}_rx_good", 0) + calls.get(f"{m}_rx_lost", 0)
             for m in ("plc", "dred", "dredonly")}
    dp = per(["dred_dred_packet"], units.get("dred_dred_packet"))
    dn = per(["dred_dred_net"], units.get("dred_dred_net"))
    # A hole's start-up that ran inside the received slot before it (Receiver._prepare_next) is the
    # hole's cost: taken out of the received slots, added to the lost ones (averages unchanged).
    def signed(terms: list[tuple[str, int]], u) -> float | None:
        cs = [(cost(n), sg) for n, sg in terms]
        if not u or all(c is None for c, _ in cs):
            return None
        return sum(sg * c for c, sg in cs if c is not None) / u

    def good(m):
        return signed([(f"{m}_rx_good", 1), (f"{m}_prepare_good", -1)], calls.get(f"{m}_rx_good"))

    def lost(m):
        return signed([(f"{m}_rx_lost", 1), (f"{m}_prepare_good", 1)], calls.get(f"{m}_rx_lost"))

    rows = {
        "rx_good_plc": good("plc"),
        "rx_avg_plc": per(["plc_rx_good", "plc_rx_lost"], slots["plc"]),
        "rx_avg_dred": per(["dred_rx_good", "dred_rx_lost"], slots["dred"]),
        "lost_plc": lost("plc"),
        "lost_dred": lost("dred"),
        "rx_avg_dredonly": per(["dredonly_rx_good", "dredonly_rx_lost"], slots["dredonly"]),
        "lost_dredonly": lost("dredonly"),
        "features": both("features"),
        "vocoder": both("vocoder"),
        "postfilter": both("postfilter"),
        "dred_coding": None if dp is None or dn is None else dp - dn,
        "dred_parse": both("dred_parse"),
        "dred_net": dn,
        "tx_overhead": per(["dred_tx_dred", "dred_tx_attach", "dredonly_tx_dred", "dredonly_tx_attach"],
                           slots["dred"] + slots["dredonly"]),
    }
    net = [c for c in (cost(f"{m}_dred_net") for m in ("dred", "dredonly")) if c is not None]
    rows["tx_nonet"] = None if rows["tx_overhead"] is None or not net else \
        rows["tx_overhead"] - sum(net) / (slots["dred"] + slots["dredonly"])
    if info.get("net_replayed"):
        # the guest replayed the host's encoder outputs: what it counted for the network is the replay
        rows["dred_net"] = rows["tx_overhead"] = None
    return rows, {"wrapper_own": own, "wrapper_nested": per_nested}


ROWS = [
    ("rx_good_plc", "receiver, per received packet, neural-PLC mode"),
    ("rx_avg_plc", "receiver, average per packet, neural PLC"),
    ("rx_avg_dred", "receiver, average per packet, DRED (ideal buffer)"),
    ("lost_plc", "per concealed packet, neural PLC"),
    ("lost_dred", "per lost packet, DRED (ideal buffer; neural PLC where DRED does not reach)"),
    ("rx_avg_dredonly", "receiver, average per packet, DRED; edge-dred without its neural PLC"),
    ("lost_dredonly", "per lost packet, DRED; edge-dred without its neural PLC"),
    ("features", "feature analysis per 10 ms (libopus incl. its pitch DNN)"),
    ("vocoder", "vocoder (+ postfilter) per 10 ms"),
    ("postfilter", "  of which postfilter per 10 ms (libopus has none)"),
    ("dred_coding", "DRED quantize + rate control + range code per packet"),
    ("dred_parse", "DRED payload parse per parsed packet"),
    ("dred_net", "DRED encoder network per 20 ms"),
    ("tx_overhead", "sender DRED overhead per packet"),
    ("tx_nonet", "  the same without the encoder network"),
]


def _cpu() -> str:
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{platform.machine()}, {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return platform.machine()


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1e6:.2f} M" if abs(v) >= 1e6 else f"{v / 1e3:.0f} k"


def table(lib: dict, edge: dict) -> str:
    """The markdown table of both sides' rows (``None``: ``n/a``) and their ratios."""
    out = ["| stage | libopus | edge-dred | ratio |", "|---|--:|--:|--:|"]
    for key, label in ROWS:
        a, b = lib.get(key), edge.get(key)
        ratio = f"{b / a:.2f}x" if a and b is not None and a > 0 else "-"
        out.append(f"| {label} | {fmt(a) if key != 'postfilter' else '-'} | {fmt(b)} | {ratio} |")
    return "\n".join(out)


def main_aarch64(a: argparse.Namespace) -> int:
    """Both sides under qemu-aarch64 with the counting plugin (``aarch64.py``)."""
    import aarch64

    try:
        os.makedirs(a.work, exist_ok=True)
        guest = aarch64.prepare(a, Skip)
        opus, label = prepare_source(a)
        weights = ensure_weights(opus)
        driver = aarch64.build_libopus(a, opus, guest, _run, _need)
    except Skip as e:
        print(f"vs_libopus: skipped: {e}", file=sys.stderr)
        return 0
    raw, trace, _, desc = load_inputs(a)
    args = [str(BITRATE), str(DRED_BITRATE), str(DRED_10MS), str(EXPECTED_LOSS_PCT)]
    linfo, lprof, lcal = aarch64.libopus_side(a, guest, driver, raw, trace, args)
    latents = aarch64.record_latents(a, raw, _run)
    einfo, eprof, _ = aarch64.edge_side(a, guest, raw, trace, latents)
    lib = libopus_rows(linfo, lprof)
    edge, cal = edge_rows(einfo, eprof)
    same, n = einfo["dred_bytes_as_host"]
    print(f"libopus {label}, weights: {weights}; {desc}")
    print(f"guest instructions under qemu {guest.version} -cpu {a.cpu} (aarch64; the project's counting plugin; "
          f"edge-dred kernels {einfo.get('kernels', 'unknown')}, libopus NEON as its CMake builds it for aarch64); "
          f"libopus packets {linfo['bytes_plain']:.1f} B plain / {linfo['bytes_dred']:.1f} B with DRED "
          f"({DRED_BITRATE // 1000} kb/s, {DRED_10MS * 10} ms), {linfo['dred_recovered']}/{linfo['lost']} lost "
          f"packets from DRED; edge-dred DRED payload {einfo['dred_bytes_mean']:.1f} B/packet "
          f"({same}/{n} payload sizes as on the host), decisions {einfo['decisions']}")
    print(table(lib, edge))
    print(f"n/a on edge-dred's side: the DRED encoder network and the sender overhead with it ({aarch64.NET_NOTE}); "
          "the row without the network leaves libopus's dred_rdovae_encode_dframe out too")
    if einfo["missing"]:
        print("edge-dred hooks not found (their rows are n/a): " + "; ".join(einfo["missing"]))
    print(f"(markers: libopus {lcal['marker_own']:.0f} instructions per stage call and {lcal['marker_nested']:.0f} "
          f"per nested call, edge-dred {cal['wrapper_own']:.0f} and {cal['wrapper_nested']:.0f}, subtracted)")
    if a.json:
        json.dump({"arch": "aarch64", "cpu": a.cpu, "qemu": guest.version, "libopus": lib, "edge": edge,
                   "libopus_info": linfo, "edge_info": einfo, "calibration": {**cal, **lcal}, "source": label,
                   "weights": weights, "inputs": desc}, open(a.json, "w"), indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    a.work = os.path.abspath(a.work)
    if a.arch == "aarch64":
        return main_aarch64(a)
    try:
        _need("valgrind", "callgrind counts the instructions")
        os.makedirs(a.work, exist_ok=True)
        opus, label = prepare_source(a)
        weights = ensure_weights(opus)
        driver, cc = build_libopus(a, opus)
        so, have_cg = build_stages(a, cc)
    except Skip as e:
        print(f"vs_libopus: skipped: {e}", file=sys.stderr)
        return 0
    raw, trace, n_packets, desc = load_inputs(a)
    linfo, lprof = libopus_side(a, driver, raw, trace)
    einfo, eprof = edge_side(a, so, have_cg, raw, trace)
    lib = libopus_rows(linfo, lprof)
    edge, cal = edge_rows(einfo, eprof)
    print(f"libopus {label}, weights: {weights}; {desc}")
    print(f"instructions (callgrind Ir) on {_cpu()}; "
          f"libopus packets {linfo['bytes_plain']:.1f} B plain / {linfo['bytes_dred']:.1f} B with DRED "
          f"({DRED_BITRATE // 1000} kb/s, {DRED_10MS * 10} ms), {linfo['dred_recovered']}/{linfo['lost']} lost "
          f"packets from DRED; edge-dred DRED payload {einfo['dred_bytes_mean']:.1f} B/packet, "
          f"decisions {einfo['decisions']}")
    print(table(lib, edge))
    if einfo["missing"]:
        print("edge-dred hooks not found (their rows are n/a): " + "; ".join(einfo["missing"]))
    print(f"(measuring wrappers: {cal['wrapper_own']:.0f} instructions per stage call and "
          f"{cal['wrapper_nested']:.0f} per nested call, subtracted; the start of a hole that edge-dred runs "
          "while deciding the received slot before it is priced with the hole, in both per-packet rows)")
    if a.json:
        json.dump({"libopus": lib, "edge": edge, "libopus_info": linfo, "edge_info": einfo, "calibration": cal,
                   "source": label, "weights": weights, "inputs": desc}, open(a.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
