"""benchmarks/vs_libopus: its arguments, its skip message, the profile reader and the export fix-ups.

The comparison itself (libopus build, callgrind runs) is a benchmark, not a test.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_libopus"


def _load(name: str, file: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / file)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def vs():
    return _load("vs_libopus_main", "__main__.py")


def test_arguments(vs):
    a = vs.parse_args(["--speech", "s.wav", "--trace", "t.txt"])
    assert a.seconds == 20.0 and a.opus_src is None and a.opus_git is None
    a = vs.parse_args(["--speech", "d", "--trace", "t", "--seconds", "5", "--opus-git", "/x"])
    assert a.seconds == 5.0 and a.opus_git == "/x"
    with pytest.raises(SystemExit):
        vs.parse_args(["--speech", "d", "--trace", "t", "--opus-src", "a", "--opus-git", "b"])
    with pytest.raises(SystemExit):
        vs.parse_args(["--speech", "d", "--trace", "t", "--seconds", "0"])


def test_skips_with_a_message_without_libopus_source(vs, tmp_path, capsys):
    rc = vs.main(["--speech", "s.wav", "--trace", "t.txt", "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "vs_libopus: skipped:" in err
    # With valgrind installed the missing source is what it names; without, valgrind.
    assert "--opus-src" in err or "valgrind not found" in err


def test_skips_a_source_that_does_not_exist(vs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vs.shutil, "which", lambda tool: "/usr/bin/" + tool)
    rc = vs.main(["--speech", "s.wav", "--trace", "t.txt", "--work", str(tmp_path / "w"),
                  "--opus-src", str(tmp_path / "nowhere")])
    assert rc == 0
    assert "does not exist" in capsys.readouterr().err


def test_callgrind_reader_sums_call_sites(tmp_path):
    cg = _load("vs_libopus_callgrind", "callgrind.py")
    p = tmp_path / "callgrind.out"
    p.write_text(
        "events: Ir\n"
        "fn=(1) main\n"
        "10 5\n"
        "cfn=(2) stage_a\n"
        "calls=3 20\n"
        "11 300\n"
        "cfn=(3) helper\n"
        "calls=1 30\n"
        "12 40\n"
        "fn=(2)\n"
        "20 100\n"
        "cfn=(3)\n"
        "calls=2 30\n"
        "21 60\n"
    )
    prof = cg.read_inclusive(str(p))
    assert prof["stage_a"] == (300, 3)
    assert prof["helper"] == (100, 3)
    assert "main" not in prof


def test_export_fix_ups(tmp_path):
    w = _load("vs_libopus_weights", "weights.py")
    (tmp_path / "plc_data.h").write_text(
        "struct PLCModel {\n    LinearLayer a;\n};\n\nint init_plcmodel(PLCModel *m);\n")
    (tmp_path / "pitchdnn_data.h").write_text("int init_pitchdnn(PitchDNN *model, const WeightArray *arrays);\n")
    (tmp_path / "pitchdnn_data.c").write_text("int init_pitchdnn(PitchDNN *model, const WeightArray *arrays) {\n}\n")
    empty = "\nstruct Model {\n};\n\nint init_model(Model *model, const WeightArray *arrays);\n"
    (tmp_path / "dred_rdovae_stats_data.h").write_text("extern const int x[4];\n" + empty + "\n#endif\n")
    (tmp_path / "dred_rdovae_constants.h").write_text("#define A 1\n" + empty + "\n#endif\n")
    (tmp_path / "dred_rdovae_stats_data.c").write_text(
        "const int x[4] = {1, 2, 3, 4\n};\n\nconst WeightArray model_arrays[] = {\n    {NULL, 0, 0, NULL}\n};\n"
        "int init_model(Model *model, const WeightArray *arrays) {\n    return 0;\n}\n")
    w._fix_up(str(tmp_path))
    assert "typedef struct {\n    LinearLayer a;\n} PLCModel;" in (tmp_path / "plc_data.h").read_text()
    assert "init_pitchdnn(struct PitchDNN *model" in (tmp_path / "pitchdnn_data.c").read_text()
    for f in ("dred_rdovae_stats_data.h", "dred_rdovae_constants.h", "dred_rdovae_stats_data.c"):
        assert "Model" not in (tmp_path / f).read_text(), f
    assert "const int x[4]" in (tmp_path / "dred_rdovae_stats_data.c").read_text()


def test_aarch64_arguments(vs):
    a = vs.parse_args(["--speech", "d", "--trace", "t", "--arch", "aarch64"])
    assert a.arch == "aarch64" and a.cpu == "cortex-a72" and a.wheel is None
    a = vs.parse_args(["--speech", "d", "--trace", "t", "--arch", "aarch64", "--cpu", "cortex-a53", "--wheel", "w"])
    assert a.cpu == "cortex-a53" and a.wheel == "w"
    assert vs.parse_args(["--speech", "d", "--trace", "t"]).arch == "x86_64"
    for bad in (["--cpu", "cortex-a72"], ["--arch", "aarch64", "--cpu", "cortex-m4"], ["--arch", "riscv64"]):
        with pytest.raises(SystemExit):
            vs.parse_args(["--speech", "d", "--trace", "t", *bad])


@pytest.fixture(scope="module")
def marks():
    return _load("vs_libopus_marks", "marks.py")


def _log(marks, names, events, total=10**6):
    """A plugin log from (stage, 'b'|'e', count) events."""
    out = []
    for stage, kind, count in events:
        out.append(f"{marks.begin_code(names.index(stage)) + (kind == 'e')} {count}")
    return "\n".join(out + [f"total {total}"]) + "\n"


def test_marker_log_inclusive_counts_calls_and_nesting(marks):
    names = ["outer", "inner"]
    log = _log(marks, names, [("outer", "b", 100), ("inner", "b", 110), ("inner", "e", 150), ("inner", "b", 160),
                              ("inner", "e", 170), ("outer", "e", 300), ("inner", "b", 400), ("inner", "e", 405)])
    counts, total = marks.read_marks(log, names)
    assert counts == {"outer": (200, 1, 2), "inner": (55, 3, 0)} and total == 10**6


@pytest.mark.parametrize("log, what", [
    ("16 10\n", "no total"),
    ("17 10\ntotal 20\n", "without its begin"),
    ("16 10\n19 12\ntotal 20\n", "without its begin"),
    ("16 10\ntotal 20\n", "ends inside"),
    ("2 10\ntotal 20\n", "unknown marker code"),
    ("40 10\ntotal 20\n", "unknown marker code"),
    ("16 x\ntotal 20\n", "unexpected"),
])
def test_marker_log_errors(marks, log, what):
    with pytest.raises(marks.MarkError, match=what):
        marks.read_marks(log, ["a", "b"])


def test_marker_calibration_is_subtracted(marks):
    counts = {"null": (300, 10, 0), "cal": (1000, 1, 20), "cal0": (400, 1, 0), "stage": (5000, 2, 3)}
    out, own, nested = marks.corrected(counts)
    assert own == 30 and nested == 30
    assert out == {"stage": (5000 - 2 * 30 - 3 * 30, 2)}
    with pytest.raises(marks.MarkError, match="calibration"):
        marks.corrected({"stage": (1, 1, 0)})


def test_libopus_table_from_a_fake_marker_log(vs, marks):
    names = ["null", "cal", "cal0", "tx_plain", "tx_dred", "rx_plc_good", "rx_plc_lost", "dred_rdovae_encode_dframe",
             "compute_frame_features"]
    ev = [("null", "b", 0), ("null", "e", 10), ("cal", "b", 100), ("null", "b", 110), ("null", "e", 120),
          ("cal", "e", 200), ("cal0", "b", 300), ("cal0", "e", 380)]
    ev += [("tx_plain", "b", 1000), ("tx_plain", "e", 2010), ("tx_dred", "b", 3000),
           ("dred_rdovae_encode_dframe", "b", 3100), ("dred_rdovae_encode_dframe", "e", 3610),
           ("tx_dred", "e", 4620), ("rx_plc_good", "b", 5000), ("rx_plc_good", "e", 5110),
           ("rx_plc_lost", "b", 6000), ("compute_frame_features", "b", 6100), ("compute_frame_features", "e", 6310),
           ("rx_plc_lost", "e", 7030)]
    counts, _ = marks.read_marks(_log(marks, names, ev), names)
    prof, own, nested = marks.corrected(counts)
    assert own == 10 and nested == 20
    rows = vs.libopus_rows({"packets": 2, "lost": 1}, prof)
    # each stage less its own markers (10) and 20 per marker pair nested in it
    assert rows["tx_overhead"] == (1590 - 1000) / 2
    assert rows["tx_nonet"] == (1590 - 1000 - 500) / 2
    assert rows["dred_net"] == 500 and rows["features"] == 200 and rows["lost_plc"] == 1000
    assert rows["rx_avg_plc"] == (100 + 1000) / 2
    text = vs.table({k: v * 1000 for k, v in rows.items() if v is not None}, {"tx_nonet": 90e3})
    assert "| sender DRED overhead per packet | 295 k | n/a | - |" in text
    assert "|   the same without the encoder network | 45 k | 90 k | 2.00x |" in text
    assert "| DRED encoder network per 20 ms | 500 k | n/a | - |" in text


def test_edge_rows_with_a_replayed_encoder_network(vs):
    st = _load("vs_libopus_edge_side", "edge_side.py")
    names = st.stage_names()
    prof = {f"edstage_{n}": (v, c) for n, v, c in [
        ("null", 1000, 10), ("cal", 5000, 1), ("cal0", 1000, 1),
        ("dred_rx_good", 3000, 2), ("dred_rx_lost", 9000, 1), ("dred_tx_dred", 30000, 3),
        ("dred_dred_net", 6000, 3), ("dred_dred_packet", 12000, 3)]}
    assert all(k[len("edstage_"):] in names for k in prof)
    calls = {k[len("edstage_"):]: c for k, (v, c) in prof.items()}
    info = {"calls": calls, "nested": {"dred_tx_dred": 6, "dred_dred_packet": 3}, "cal_n": 200,
            "units": {"dred_dred_packet": 3, "dred_dred_net": 3}, "net_replayed": True}
    rows, cal = vs.edge_rows(info, prof)
    assert cal == {"wrapper_own": 100, "wrapper_nested": 20}
    assert rows["dred_net"] is None and rows["tx_overhead"] is None
    # coding: push_features less the (replayed) network step; sender: all but the network
    assert rows["dred_coding"] == (12000 - 300 - 60) / 3 - (6000 - 300) / 3
    assert rows["tx_nonet"] == ((30000 - 300 - 120) - (6000 - 300)) / 3
    assert rows["rx_avg_dred"] == (3000 - 200 + 9000 - 100) / 3
    info["net_replayed"] = False
    rows, _ = vs.edge_rows(info, prof)
    assert rows["dred_net"] == (6000 - 300) / 3 and rows["tx_overhead"] == (30000 - 300 - 120) / 3


def test_a_holes_start_in_the_received_slot_before_is_priced_with_the_hole(vs):
    st = _load("vs_libopus_edge_side", "edge_side.py")
    prof = {f"edstage_{n}": (v, c) for n, v, c in [
        ("null", 1000, 10), ("cal", 5000, 1), ("cal0", 1000, 1),
        ("dred_rx_good", 8000, 4), ("dred_prepare_good", 3100, 1), ("dred_rx_lost", 6000, 2)]}
    assert all(k[len("edstage_"):] in st.stage_names() for k in prof)
    calls = {k[len("edstage_"):]: c for k, (v, c) in prof.items()}
    info = {"calls": calls, "nested": {"dred_rx_good": 1}, "cal_n": 200, "units": {}}
    rows, _ = vs.edge_rows(info, prof)
    good, prep, lost = 8000 - 400 - 20, 3100 - 100, 6000 - 200
    assert rows["lost_dred"] == (lost + prep) / 2
    assert rows["rx_avg_dred"] == (good + lost) / 6        # the average is what it was


def test_marker_codes_agree_across_the_sides(marks):
    st = _load("vs_libopus_edge_side", "edge_side.py")
    arm = _load("vs_libopus_aarch64", "aarch64.py")
    from edge_dred.tools.estimate import MAGIC

    assert st.MARK_FIRST == marks.FIRST and st.MARK_MAGIC == MAGIC
    assert marks.begin_code(len(st.stage_names())) <= marks.MAX_CODE
    driver = (BENCH / "driver.c").read_text()
    for fn in arm.WRAPPED:   # every wrapped libopus function has its marker wrapper in the driver
        assert f"__wrap_{fn}(" in driver and f"__real_{fn}(" in driver


def test_aarch64_skips_with_a_message_without_the_cross_tools(vs, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import aarch64

    monkeypatch.setattr(aarch64.shutil, "which", lambda tool: None)
    rc = vs.main(["--speech", "s.wav", "--trace", "t.txt", "--work", str(tmp_path / "w"), "--arch", "aarch64"])
    assert rc == 0
    assert "vs_libopus: skipped: aarch64-linux-gnu-gcc not found" in capsys.readouterr().err
