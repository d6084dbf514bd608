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
