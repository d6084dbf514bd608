"""edge_dred.estimate: marker-log parsing, stage accounting, the report, and the qemu counting
plugin itself on a static aarch64 program whose instruction count is known exactly."""
from __future__ import annotations

import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from edge_dred import estimate as est
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


def test_estimate_rejects_boards_it_cannot_emulate():
    with pytest.raises(est.EstimateError, match="x86_64"):
        est.estimate_boards(["x86_64"])
    with pytest.raises(ValueError, match="known boards"):
        est.estimate_boards(["no_such_board"])
    with pytest.raises(est.EstimateError, match="seconds"):
        est.estimate_boards(["rpi4"], seconds=100)


def test_cli_estimate_error_is_clean(capsys):
    from edge_dred.cli import main

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
