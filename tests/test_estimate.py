"""edge_dred.tools.estimate and edge_dred.tools.bench: marker-log parsing, stage accounting, the report, the
bench's DRED rows (with and without a TFLite runtime), the choice of qemu and TFLite for the guest,
and the qemu counting plugin itself on a static aarch64 program whose instruction count is known
exactly."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edge_dred.tools import bench
from edge_dred.tools import estimate as est
from edge_dred.boards import load_board

TABLE = """edge-dred bench: aarch64 (unknown cpu), 3 packets of 20 ms, best of 1

| side | stage | min us | median us | max us | RTF (median) |
|---|---|---:|---:|---:|---:|
| sender | opus encode 24 kb/s | 1.0 | 1.0 | 1.0 | 0.0001 |
| receiver | opus decode | 1.0 | 1.0 | 1.0 | 0.0001 |

sender real-time factor: 0.0001 (headroom 1x)"""


def marks(calls: list[list[int]], start: int = 1000, gap: int = 7) -> str:
    """A plugin log: per call, BEGIN/END around each packet cost, then CALL_END."""
    lines, c = [], start
    for call in calls:
        for cost in call:
            lines.append(f"1 {c}")
            c += cost
            lines.append(f"2 {c}")
            c += gap
        lines.append(f"3 {c}")
    lines.append(f"total {c + 5}")
    return "\n".join(lines) + "\n"


def test_parse_marks_pairs_begin_end_per_call():
    calls, total = est.parse_marks(marks([[10, 10], [500, 700, 600]]))
    assert [c.tolist() for c in calls] == [[10, 10], [500, 700, 600]]
    assert total == 1000 + 20 + 1800 + 5 * 7 + 5


@pytest.mark.parametrize("bad,msg", [
    ("1 5\n1 6\n", "BEGIN without END"),
    ("2 5\n", "END without BEGIN"),
    ("1 9\n2 5\n", "END without BEGIN"),
    ("1 5\n3 6\ntotal 9\n", "inside a packet"),
    ("9 5\n", "unknown marker"),
    ("1 5 6\n", "unexpected"),
    ("x 5\n", "unexpected"),
    ("1 5\n2 6\n", "no total"),
    ("1 5\n2 6\ntotal 9\n", "ends inside a call"),
])
def test_parse_marks_rejects_broken_logs(bad, msg):
    with pytest.raises(est.EstimateError, match=msg):
        est.parse_marks(bad)


def test_count_stages_subtracts_marker_overhead_and_names_rows():
    log = marks([[40] * 16, [1040, 1240, 1140], [140, 140, 190]])
    stages, overhead, total = est.count_stages(log, TABLE)
    assert overhead == 40
    assert [(s.side, s.stage) for s in stages] == [("sender", "opus encode 24 kb/s"), ("receiver", "opus decode")]
    assert stages[0].insns.tolist() == [1000, 1200, 1100] and stages[0].median == 1100
    assert stages[1].insns.tolist() == [100, 100, 150]
    assert total > 0


def test_count_stages_rejects_mismatched_rows():
    with pytest.raises(est.EstimateError, match="2 rows but 1 stages"):
        est.count_stages(marks([[5], [100]]), TABLE)


def test_format_estimate_converts_with_board_rate():
    board = load_board("rpi4")  # 2.4e9 instructions per second
    stages = [est.StageCount("receiver", "vocoder", np.array([2.4e6, 4.8e6, 7.2e6]))]
    info = dict(cpu="cortex-a72", variant="neon", numpy="1.24.2", total_insns=3e9, wall_s=10.0)
    text = est.format_estimate(board, stages, info)
    # median 4.8 M instructions / 2.4 G/s = 2 ms = RTF 0.1
    assert "| receiver | vocoder | 2400 / 4800 / 7200 | 2.000 | 0.1000 |" in text
    assert "2.40 G instructions/s" in text and "rpi4.toml" in text
    assert "est. RTF 0.100" in text


TABLE_DRED = TABLE.replace("\n\nsender real-time", """
| dred receiver | parse + decode newest 40 ms | 1.0 | 1.0 | 1.0 | 0.0001 |
| dred sender | TFLite encoder step | not run | - | - | - |

not run: dred sender / TFLite encoder step: no TFLite runtime: neither imports
note: dred receiver: the 3 non-empty payloads of the sender's coding row (median 80 bytes)
sender real-time""")


def test_not_run_rows_are_not_counted_but_reported():
    log = marks([[40] * 16, [1040, 1240, 1140], [140, 140, 190], [540, 640, 590]])
    stages, _, _ = est.count_stages(log, TABLE_DRED)
    assert [s.stage for s in stages] == ["opus encode 24 kb/s", "opus decode", "parse + decode newest 40 ms"]
    assert stages[2].insns.tolist() == [500, 600, 550]
    skipped, notes = est.parse_bench_notes(TABLE_DRED)
    assert skipped == [("dred sender", "TFLite encoder step", "no TFLite runtime: neither imports")]
    assert notes == ["dred receiver: the 3 non-empty payloads of the sender's coding row (median 80 bytes)"]
    with pytest.raises(est.EstimateError, match="SIDE / STAGE"):
        est.parse_bench_notes("not run: no separator here")


def test_format_estimate_lists_stages_not_run_with_the_reason():
    board = load_board("rpi4")
    stages = [est.StageCount("dred sender", "quantize + rate control + range code", np.array([4.8e6] * 3))]
    info = dict(cpu="cortex-a72", variant="neon", numpy="1.24.2", total_insns=3e9, wall_s=10.0, qemu_version="7.2.22",
                not_run=[("dred sender", "TFLite encoder step", "ai_edge_litert-2.3.0 fails (killed by signal 11)")],
                notes=["counted under /usr/bin/qemu-aarch64 (qemu 7.2.22)"])
    text = est.format_estimate(board, stages, info)
    assert ("| dred sender | TFLite encoder step | not run: ai_edge_litert-2.3.0 fails (killed by signal 11) "
            "| - | - |") in text
    assert "- counted under /usr/bin/qemu-aarch64 (qemu 7.2.22)" in text and "qemu 7.2.22 `-cpu cortex-a72`" in text
    # 4.8 M / 2.4 G/s = 2 ms = RTF 0.1, and the sum says what it leaves out
    assert "dred sender: 4.80 M instructions per packet, all stages summed -> est. RTF 0.100 " \
           "(without TFLite encoder step: not run)" in text


# ------------------------------------------------------------------ the bench's DRED rows

def _tflite_importable() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "tflite_runtime"))


def _payload_note(table: str) -> tuple[int, int]:
    m = re.search(r"^note: dred receiver: the (\d+) non-empty payloads .*\(median (\d+) bytes\)$", table, re.M)
    assert m, table
    return int(m.group(1)), int(m.group(2))


def test_bench_table_has_the_dred_stages():
    table = bench.run_bench(seconds=1.0, repeat=1)
    rows = est.parse_bench_rows(table)
    skipped, _ = est.parse_bench_notes(table)
    measured = {}
    for side, stage in rows:   # the median column of each measured row
        m = re.search(rf"^\| {re.escape(side)} \| {re.escape(stage)} \| [\d.]+ \| ([\d.]+) \|", table, re.M)
        measured[(side, stage)] = float(m.group(1))
    for stage in bench.DRED_STAGES:
        assert (stage in rows) != any(s[:2] == stage for s in skipped), stage  # counted or reported, never both
    code, recv = bench.DRED_STAGES[1], bench.DRED_STAGES[2]
    assert code in rows and recv in rows       # neither needs a TFLite runtime
    assert measured[code] > 0 and measured[recv] > 0
    assert (bench.DRED_STAGES[0] in rows) == _tflite_importable()
    n, median_bytes = _payload_note(table)
    assert 25 <= n <= 50 and 10 <= median_bytes <= 80   # 1 s = 50 packets; the 80-byte budget holds
    assert rows.index(recv) > rows.index(code)


def test_bench_says_when_the_tflite_runtime_is_missing(monkeypatch):
    for m in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, m, None)   # import of either runtime now fails
    table = bench.run_bench(seconds=1.0, repeat=1)
    rows = est.parse_bench_rows(table)
    skipped, notes = est.parse_bench_notes(table)
    step, code, recv = bench.DRED_STAGES
    assert step not in rows and code in rows and recv in rows
    assert [s for s in skipped if s[:2] == step][0][2].startswith("no TFLite runtime")
    assert f"| {step[0]} | {step[1]} | {bench.NOT_RUN} | - | - | - |" in table
    assert any("latents sampled from the shipped entropy model" in n for n in notes)
    n, median_bytes = _payload_note(table)
    assert n >= 25 and median_bytes <= 80


def test_sampled_latents_code_into_full_length_payloads():
    from edge_dred.dred.payload import parse_payload
    from edge_dred.dred.ratecontrol import encode_dred

    from edge_dred.dred.tables import shipped_tables

    tables = shipped_tables()
    zs = bench.sampled_latents(tables, 26, seed=3)
    assert len(zs) == 26 and zs[0][0].shape == (tables.latent_dim,) and zs[0][1].shape == (tables.state_dim,)
    again = bench.sampled_latents(tables, 26, seed=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(zs, again))
    z = np.stack([p[0] for p in zs])
    dec = encode_dred(z, zs[0][1], tables, budget_bytes=80)
    assert dec.payload and len(dec.payload) <= 80 and dec.n_chunks == 26   # the model's prior fits 1.04 s
    assert parse_payload(dec.payload, tables).n_chunks == 26
    with pytest.raises(ValueError, match="positive"):
        bench.sampled_latents(tables, 0)


def test_run_bench_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seconds"):
        bench.run_bench(seconds=0)
    with pytest.raises(ValueError, match="repeat"):
        bench.run_bench(seconds=1.0, repeat=0)


# ------------------------------------------------------------------ which qemu counts, TFLite or not

def _fake_qemu(path, version: str, plugins: bool) -> None:
    """A stand-in qemu-user that answers --version and -h like the real one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    help_line = "-plugin   QEMU_PLUGIN   [file=]<file>" if plugins else "-strace   QEMU_STRACE"
    path.write_text(f"#!/bin/sh\ncase \"$1\" in --version) echo '{path.name} version {version} (fake)';; "
                    f"-h) echo 'usage: {path.name} [options] program [arguments...]'; echo '{help_line}';; esac\n")
    path.chmod(0o755)


@pytest.mark.parametrize("bpo_plugins", [False, True])
def test_plan_runtime_prefers_backports_qemu_only_with_plugins(tmp_path, monkeypatch, bpo_plugins):
    _fake_qemu(tmp_path / "bin" / "qemu-aarch64", "7.2.22", plugins=True)
    _fake_qemu(tmp_path / "cache" / "qemu-bpo" / "usr" / "bin" / "qemu-aarch64", "10.0.2", plugins=bpo_plugins)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EDGE_DRED_CACHE", str(tmp_path / "cache"))
    sm = est._smoke()

    def no_wheel(arch, site):
        raise sm.SmokeError("pip install of ['ai-edge-litert'] for aarch64 failed:\nERROR: No matching distribution")

    monkeypatch.setattr(sm, "install_tflite", no_wheel)
    assert est.supports_plugins(tmp_path / "bin" / "qemu-aarch64")
    rt = est.plan_runtime("aarch64", "cortex-a72", tmp_path / "sysroot", tmp_path / "site", tmp_path / "work")
    notes = "\n".join(rt.notes)
    if bpo_plugins:
        assert rt.qemu == tmp_path / "cache" / "qemu-bpo" / "usr" / "bin" / "qemu-aarch64" and rt.version == "10.0.2"
    else:
        assert rt.qemu == tmp_path / "bin" / "qemu-aarch64" and rt.version == "7.2.22"
        assert "qemu-aarch64 10.0.2" in notes and "no TCG plugin support" in notes
    assert rt.tflite_site is None and "could not be installed" in rt.why_no_tflite
    assert "No matching distribution" in notes


def test_execution_log_counting_helpers(tmp_path):
    # The TFLite step counted apart: qemu -dfilter ranges from /proc/self/maps spans, and one
    # executed instruction per Trace line of a one-insn-per-tb log.
    assert est.address_filter(["7fffe068d000-7fffe0ebd000", "10-20"]) == \
        "0x7fffe068d000..0x7fffe0ebd000,0x10..0x20"
    log = tmp_path / "exec.log"
    log.write_bytes(b"Trace 0: 0x1 [00000000/0000007fffe068d000/00000000/00000000]\n"
                    b"IN: something else\nTrace 0: 0x2 [x]\n\nTrace 1: 0x3 [y]\n")
    assert est.count_trace_lines(log) == 3


def test_tflite_step_is_counted_apart_only_with_a_plugin_less_backports_qemu(tmp_path):
    rt = est.GuestRuntime(tmp_path / "qemu", "7.2.22", None, (), "fails")
    assert est._tflite_step_apart(rt, "cortex-a72", tmp_path, tmp_path, tmp_path) == (None, "")


def test_estimate_rejects_boards_it_cannot_emulate():
    with pytest.raises(est.EstimateError, match="x86_64"):
        est.estimate_boards(["x86_64"])
    with pytest.raises(ValueError, match="known boards"):
        est.estimate_boards(["no_such_board"])
    with pytest.raises(est.EstimateError, match="seconds"):
        est.estimate_boards(["rpi4"], seconds=100)


def test_cli_estimate_error_is_clean(capsys):
    from edge_dred.cli.main import main

    assert main(["bench", "--estimate", "x86_64"]) == 2
    err = capsys.readouterr().err
    assert "edge-dred bench: error:" in err and "x86_64" in err and "Traceback" not in err


# ------------------------------------------------------------------ the plugin on real qemu

LOOP_C = textwrap.dedent(r"""
    #include <stdlib.h>
    #include <sys/stat.h>
    /* Markers as the estimate driver emits them, around a loop of exactly 2 instructions per turn. */
    static void mark(unsigned code) { umask(0x4e000000u | (code << 12) | 022); }
    int main(int argc, char **argv) {
        long n = atol(argv[1]);
        mark(1);
        __asm__ volatile("1: subs %0, %0, #1\n\tb.ne 1b" : "+r"(n) :: "cc");
        mark(2);
        mark(3);
        return 0;
    }
""")


@pytest.fixture(scope="module")
def loop_exe(tmp_path_factory):
    missing = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if shutil.which(t) is None]
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        missing.append("cc")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (./quickstart.sh test installs them; "
                    "qemu-aarch64 comes from Debian's qemu-user)")
    d = tmp_path_factory.mktemp("icount")
    src = d / "loop.c"
    src.write_text(LOOP_C)
    exe = d / "loop"
    r = subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-O1", str(src), "-o", str(exe)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode and "cannot find -lc" in r.stderr:
        pytest.skip("aarch64 static libc not installed (libc6-dev-arm64-cross)")
    assert r.returncode == 0, r.stderr
    return d, exe


def test_plugin_counts_guest_instructions_exactly(loop_exe):
    d, exe = loop_exe
    qemu = shutil.which("qemu-aarch64")
    lib = est.build_plugin(qemu, d / "plugin", [str(exe), "1"])
    per_n = {}
    for n in (1000, 5000, 25000):
        out = d / f"marks_{n}.txt"
        r = subprocess.run([qemu, "-cpu", "cortex-a53", "-plugin", f"{lib},out={out}", str(exe), str(n)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        calls, total = est.parse_marks(out.read_text())
        assert len(calls) == 1 and len(calls[0]) == 1
        per_n[n] = int(calls[0][0])
        assert total > per_n[n]
    # 2 instructions per loop turn, plus a fixed marker cost: exact differences
    assert per_n[5000] - per_n[1000] == 2 * 4000
    assert per_n[25000] - per_n[5000] == 2 * 20000
    assert 0 < per_n[1000] - 2000 < 200


def test_estimate_finds_its_checkout_or_says_it_needs_one(tmp_path, monkeypatch):
    repo = est.source_checkout()
    assert all((repo / f).is_file() for f in est.CHECKOUT_FILES)
    # An installed package (no scripts/ above it), run outside a checkout: a clear error, before any work.
    site = tmp_path / "site-packages" / "edge_dred"
    monkeypatch.setattr(est, "__file__", str(site / "tools" / "estimate.py"))
    with pytest.raises(est.EstimateError, match=r"developer tool: it needs an edge-dred source checkout"):
        est.source_checkout(cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(est.EstimateError, match="developer tool"):
        est.estimate_boards(["rpi4"])
    # The same package run from inside a checkout uses that checkout.
    assert est.source_checkout(cwd=repo) == repo


def test_estimate_from_an_installed_copy_fails_cleanly(tmp_path):
    """A copy of the package outside the checkout (as a wheel installs it): an error line, no traceback."""
    import edge_dred

    pkg = os.path.dirname(edge_dred.__file__)
    shutil.copytree(pkg, tmp_path / "site" / "edge_dred", ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    r = subprocess.run([sys.executable, "-m", "edge_dred", "bench", "--estimate", "rpi4"], cwd=run, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "developer tool" in r.stderr and str(tmp_path / "site" / "edge_dred") in r.stderr
