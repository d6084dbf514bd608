"""Tests for the evaluation harness: metrics, runner, CLI (synthetic data only)."""
from __future__ import annotations

import argparse
import csv
import importlib
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edge_dred.evaluate import metrics as M
from edge_dred.evaluate import runner as R

HAVE = M.available_metrics()
need_pesq = pytest.mark.skipif(not HAVE["pesq"], reason="pesq (eval extra) not installed")
need_stoi = pytest.mark.skipif(not HAVE["stoi"], reason="pystoi (eval extra) not installed")
need_mos = pytest.mark.skipif(not HAVE["plcmos"], reason="speechmos/onnxruntime (eval extra) not installed")


def speechlike(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    """Voiced, formant-shaped, syllable-modulated harmonic signal (int16)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 10 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = np.array([500.0, 1500.0, 2500.0]) * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t[:, None] + np.arange(3)))
    x = np.zeros(n)
    for h in range(1, 40):
        fh = h * f0
        amp = np.exp(-0.5 * ((fh[:, None] - formants) / 120.0) ** 2).sum(axis=1) / np.sqrt(h)
        x += amp * np.sin(h * phase) * (fh < 7500)
    env = np.clip(np.sin(2 * np.pi * 2.2 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    x = x * env + 0.002 * rng.standard_normal(n)
    return (0.3 * x / np.max(np.abs(x)) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def sig() -> np.ndarray:
    return speechlike(4.6, 1)  # DNSMOS tiles clips to 9.01 s: 4.6 s -> one window


@pytest.fixture(scope="module")
def noise(sig) -> np.ndarray:
    return (np.random.default_rng(5).standard_normal(sig.size) * 3000).astype(np.int16)


@pytest.fixture(scope="module")
def holes(sig) -> np.ndarray:
    y = sig.copy()
    for i in range(0, y.size, 3200):  # 60 ms zeroed every 200 ms
        y[i:i + 960] = 0
    return y


# ------------------------------------------------------------------ metrics


@need_pesq
def test_pesq_identical_high_noise_low(sig, noise):
    assert M.pesq_wb(sig, sig) > 4.4
    assert M.pesq_wb(sig, noise) < 1.5
    # Float input in [-1, 1] gives the same score as int16.
    assert M.pesq_wb(sig / 32768.0, sig / 32768.0) == pytest.approx(M.pesq_wb(sig, sig))


@need_pesq
def test_pesq_no_utterance_is_nan_and_counted():
    silent = np.zeros(16000 * 2, np.int16)
    before = sum(M.pesq_error_counts().values())
    assert math.isnan(M.pesq_wb(silent, silent))
    assert sum(M.pesq_error_counts().values()) == before + 1


@need_stoi
def test_stoi_identical_high_noise_low(sig, noise, holes):
    assert M.stoi(sig, sig) > 0.99
    assert M.stoi(sig, noise) < 0.5
    assert M.stoi(sig, noise) < M.stoi(sig, holes) < M.stoi(sig, sig)


@pytest.mark.parametrize("bad", [np.zeros(0), np.zeros((2, 10)), np.array([0.0, np.nan]),
                                 np.array([0.0, 1.5]), np.array([1, 2], np.int32)])
def test_metrics_reject_bad_input(bad):
    with pytest.raises(ValueError):
        M._as_float(bad, "x")


def test_metrics_reject_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        M._pair(np.zeros(10), np.zeros(11))


@need_mos
def test_plcmos_reproducible_and_penalises_holes(sig, holes):
    a = M.plcmos(sig)
    assert 1.0 <= a <= 5.0
    assert M.plcmos(sig) == a  # seeded rater embeddings: same input, same score
    assert M.plcmos(holes) < a - 0.3


@need_mos
def test_dnsmos_keys_ranges_and_order(sig, noise):
    d = M.dnsmos(sig)
    assert set(d) == {"OVRL", "SIG", "BAK", "P808"}
    assert all(1.0 <= v <= 5.0 for v in d.values())
    n = M.dnsmos(noise)
    assert n["OVRL"] < d["OVRL"] and n["BAK"] < d["BAK"]


def test_mel_matches_reference_values():
    # Reference: librosa 0.11 melspectrogram(n_fft=321, hop=160, n_mels=120) then
    # power_to_db(ref=max), as DNSMOS's P.808 input uses, on this closed-form signal.
    t = np.arange(8000) / 16000.0
    k = np.arange(28)
    y = (0.05 * np.sin(2 * np.pi * (150.0 * 1.15 ** k[:, None]) * t[None, :] * (1 + 0.2 * t[None, :])
                       + k[:, None]).sum(0)).astype(np.float32)
    s = M._melspectrogram(y, sr=16000, n_fft=321, hop_length=160, n_mels=120)
    assert s.shape == (120, 50)
    db = M._power_to_db(s, ref=np.max)
    ref = np.array([
        [-17.5371, -19.8851, -20.2359, -28.0308],
        [-54.9327, -31.1406, -32.3674, -32.7285],
        [-25.1025, -18.2635, -15.0892, -18.298],
        [-23.8836, -14.3269, -50.1082, -14.3252],
        [-23.8562, -61.7607, -22.5698, -62.2819],
        [-38.5401, -60.966, -18.1235, -61.04],
    ])
    got = db[np.ix_([3, 20, 45, 70, 95, 110], [0, 10, 25, 49])]
    np.testing.assert_allclose(got, ref, atol=2e-3)
    assert db.max() == 0.0 and db.min() >= -80.0


def test_mel_filterbank_area_normalised():
    fb = M._mel_filterbank(16000, 4096, 40)
    df = 16000 / 4096
    # Slaney normalisation: every triangle has unit area in Hz.
    np.testing.assert_allclose(fb.sum(axis=1) * df, 1.0, rtol=0.02)
    assert np.all(np.diff(np.argmax(fb, axis=1)) > 0)  # centres increase


# -------------------------------------------------------------- simulation


def _fake_simulate() -> types.ModuleType:
    """Stand-in pipeline for checkouts without the compiled codec: lost packets -> zeros."""
    mod = types.ModuleType("edge_dred.simulate")

    class C:
        def __init__(self, name: str, lossless: bool = False) -> None:
            self.name, self.lossless = name, lossless

    mod.CONDITIONS = {"clean": C("clean", True), "zeros": C("zeros"), "opus_plc": C("opus_plc")}

    class SimResult:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def run_condition(pcm, lost, condition):
        n = -(-len(pcm) // 320)
        lost = np.zeros(n, bool) if condition == "clean" else np.resize(np.asarray(lost, bool), n)
        out = pcm.copy()
        for i in np.flatnonzero(lost):
            out[i * 320:(i + 1) * 320] = 0 if condition == "zeros" else out[i * 320:(i + 1) * 320] // 4
        dec = ["regular" if not x else condition for x in lost]
        return SimResult(audio=out, lost=lost, decisions=dec, total_bitrate_bps=24000.0 if condition else 0.0,
                         packet_bytes=np.full(n, 60))

    mod.run_condition = run_condition
    return mod


@pytest.fixture
def sim(monkeypatch):
    """The real simulate module when it imports (codec built), else the fake."""
    try:
        mod = importlib.import_module("edge_dred.simulate")
        mod.run_condition  # noqa: B018
    except ImportError:
        mod = _fake_simulate()
        monkeypatch.setitem(sys.modules, "edge_dred.simulate", mod)
    return mod


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    try:
        from edge_dred.audio.wavio import write_wav
    except ImportError:  # pragma: no cover - wavio is part of the package
        pytest.skip("edge_dred.audio.wavio missing")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, pcm)


@pytest.fixture
def tiny_tree(tmp_path):
    speech = tmp_path / "speech"
    _write_wav(speech / "spk_a" / "a1.wav", speechlike(4.6, 11))
    _write_wav(speech / "spk_b" / "b1.wav", speechlike(4.6, 12))
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "t1.txt").write_bytes(b"0\r\n0\r\n1\r\n1\r\n0\r\n0\r\n0\r\n1\r\n0\r\n0\r\n")
    return speech, traces, tmp_path / "out"


def _conds(sim) -> list[str]:
    names = list(sim.CONDITIONS)
    lossy = "opus_plc" if "opus_plc" in names else [c for c in names if c != "clean"][0]
    return ["clean", lossy]


@pytest.mark.slow
def test_run_eval_end_to_end(tiny_tree, sim):
    speech, traces, out = tiny_tree
    mets = [m for m in R.DEFAULT_METRICS if HAVE[m]]
    try:
        import matplotlib  # noqa: F401
        plots = True
    except ImportError:
        plots = False
    conds = _conds(sim)
    rep = R.run_eval(speech, traces, out, conditions=conds, metrics=mets, progress=False, plots=plots)
    assert rep.n_items == 2 * 2  # clean once per file + one lossy condition per trace
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 1 * 2
    assert {r["condition"] for r in rows} == set(conds)
    assert {r["speaker"] for r in rows} == {"spk_a", "spk_b"}
    for r in rows:
        assert float(r["bitrate_bps"]) > 0
        for m in mets:
            for col in M.METRIC_NAMES[m]:
                assert math.isfinite(float(r[col])), (col, r)
        lossy = r["condition"] != "clean"
        # The trace loses 3 packets in 10; clean ignores it.
        assert (float(r["loss_rate"]) > 0.2) == lossy
    if "pesq" in mets:
        by = {(r["file"], r["condition"]): float(r["pesq_wb"]) for r in rows}
        for f in ("spk_a/a1.wav", "spk_b/b1.wav"):
            assert by[(f, "clean")] > by[(f, conds[1])]
    summ = list(csv.DictReader(open(out / "summary.csv")))
    assert {(s["trace"], s["condition"]) for s in summ} == {(t, c) for t in ("t1", "all") for c in conds}
    md = (out / "summary.md").read_text()
    assert "## All traces" in md and "t1" in md and conds[1] in md
    paired = list(csv.DictReader(open(out / "paired.csv")))
    assert {(d["trace"], d["condition"], d["base"]) for d in paired} == {(t, conds[1], conds[0]) for t in ("t1", "all")}
    assert f"## Paired differences against `{conds[0]}`" in md
    if "pesq" in mets:
        want = np.mean([by[(f, conds[1])] - by[(f, conds[0])] for f in ("spk_a/a1.wav", "spk_b/b1.wav")])
        got = [float(d["pesq_wb"]) for d in paired if d["trace"] == "t1"][0]
        assert abs(got - want) < 1e-4 and got < 0
    if plots:
        for name in ["spectrogram_t1.png"] + [f"scores_{c}.png" for c in ("pesq_wb", "stoi", "plcmos", "dnsmos_ovrl")
                                              if any(c in M.METRIC_NAMES[m] for m in mets)]:
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list(out.glob(".tmp_*"))


def test_paired_differences_pair_by_file_and_skip_missing_scores():
    rows = []
    for f, a, b in (("x", 1.0, 1.5), ("y", 2.0, 2.1), ("z", 3.0, float("nan"))):
        for c, v in (("base", a), ("new", b)):
            rows.append({"file": f, "trace": "t", "condition": c, "pesq_wb": v})
    rows.append({"file": "w", "trace": "t", "condition": "base", "pesq_wb": 9.0})   # unpaired: left out
    d = R.paired_differences(rows, ["t"], ["base", "new"], ["pesq_wb"])
    assert [(x["trace"], x["condition"], x["base"]) for x in d] == [("t", "new", "base"), ("all", "new", "base")]
    assert d[0]["pesq_wb_n"] == 2
    assert abs(d[0]["pesq_wb"] - 0.3) < 1e-12
    assert abs(d[0]["pesq_wb_se"] - np.std([0.5, 0.1], ddof=1) / np.sqrt(2)) < 1e-12
    assert R.paired_differences(rows, ["t"], ["base"], ["pesq_wb"]) == []


@pytest.mark.slow
@need_pesq
def test_run_eval_jobs_match_serial(tiny_tree, sim):
    speech, traces, out = tiny_tree
    conds = _conds(sim)
    a = R.run_eval(speech, traces, out / "a", conditions=conds, metrics=["pesq"], progress=False, plots=False)
    b = R.run_eval(speech, traces, out / "b", conditions=conds, metrics=["pesq"], progress=False, plots=False,
                   jobs=2)
    key = lambda r: (r["file"], r["trace"], r["condition"], round(r["pesq_wb"], 6))  # noqa: E731
    assert [key(r) for r in a.rows] == [key(r) for r in b.rows]


def test_run_eval_config_errors(tiny_tree, sim, tmp_path):
    speech, traces, out = tiny_tree
    with pytest.raises(R.EvalConfigError, match="valid: .*clean"):
        R.run_eval(speech, traces, out, conditions=["clean", "warp_drive"], metrics=[], plots=False)
    with pytest.raises(R.EvalConfigError, match="speech directory not found"):
        R.run_eval(tmp_path / "nope", traces, out, metrics=[], plots=False)
    with pytest.raises(R.EvalConfigError, match="no .wav or .flac"):
        R.run_eval(traces, traces, out, metrics=[], plots=False)
    with pytest.raises(R.EvalConfigError, match="no \\*.txt"):
        R.run_eval(speech, speech, out, metrics=[], plots=False)
    with pytest.raises(R.EvalConfigError, match="unknown metric"):
        R.run_eval(speech, traces, out, metrics=["mushra"], plots=False)
    assert not out.exists()


def test_select_files_spread_over_speakers(tmp_path):
    root = tmp_path
    files = [root / "a" / f"{i:02d}.wav" for i in range(10)] + [root / "b" / f"{i:02d}.wav" for i in range(2)]
    files += [root / "c" / f"{i:02d}.wav" for i in range(6)]
    pick = R.select_files(files, root, 7)
    # Round-robin a, b, c, a, b, c, a; evenly spaced within each speaker.
    assert [p.relative_to(root).as_posix() for p in pick] == [
        "a/01.wav", "a/05.wav", "a/08.wav", "b/00.wav", "b/01.wav", "c/01.wav", "c/04.wav"]
    assert R.select_files(list(reversed(files)), root, 7) == pick  # input order does not matter
    assert R.select_files(files, root, None) == files
    with pytest.raises(R.EvalConfigError):
        R.select_files(files, root, 0)


# --------------------------------------------------------------------- CLI


def test_cli_register_and_errors(tiny_tree, sim, capsys):
    from edge_dred.evaluate import cli

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    cli.register(sub)
    speech, traces, out = tiny_tree
    args = p.parse_args(["eval", "--speech", str(speech), "--traces", str(traces), "-o", str(out),
                         "--conditions", "clean,bogus", "--max-files", "1"])
    assert args.func is cli.cmd_eval and args.conditions == ["clean", "bogus"] and args.max_files == 1
    with pytest.raises(ValueError, match="bogus.*valid: "):
        args.func(args)
    args = p.parse_args(["eval", "--speech", str(speech / "missing"), "--traces", str(traces), "-o", str(out)])
    with pytest.raises(ValueError, match="--speech directory not found"):
        args.func(args)
    # Stand-alone entry point: errors print cleanly with exit status 2.
    assert cli.main(["--speech", str(speech), "--traces", str(speech / "x"), "-o", str(out)]) == 2
    assert "--traces directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["eval", "--speech", "a", "--traces", "b", "-o", "c", "--jobs", "0"])


@need_pesq
def test_cli_runs(tiny_tree, sim, capsys):
    from edge_dred.evaluate import cli

    speech, traces, out = tiny_tree
    rc = cli.main(["--speech", str(speech), "--traces", str(traces), "-o", str(out), "--conditions",
                   ",".join(_conds(sim)), "--metrics", "pesq", "--max-files", "1", "--no-plots"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "[1/2]" in err and "eta" in err
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 and all(math.isfinite(float(r["pesq_wb"])) for r in rows)


def test_missing_extra_is_reported_before_any_work(tiny_tree, sim, monkeypatch):
    speech, traces, out = tiny_tree
    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` fail
    with pytest.raises(M.MissingEvalExtraError, match=r"pip install .*edge-dred\[eval\]"):
        R.run_eval(speech, traces, out, conditions=_conds(sim), metrics=["pesq"], plots=False, progress=False)
    with pytest.raises(M.MissingEvalExtraError, match="eval"):
        M.pesq_wb(np.ones(16000), np.ones(16000))
    assert not out.exists()


def test_bad_trace_file_names_file_and_line(tiny_tree, sim):
    from edge_dred.loss import TraceFormatError

    speech, traces, out = tiny_tree
    (traces / "t2.txt").write_text("0\n1\nx\n")
    with pytest.raises(TraceFormatError, match=r"t2.txt:3:"):
        R.run_eval(speech, traces, out, conditions=_conds(sim), metrics=[], plots=False, progress=False)


def test_adaptive_condition_reports_delay_and_scores_what_is_heard(tiny_tree, sim):
    if "lbrr+dred_adaptive" not in sim.CONDITIONS:
        pytest.skip("needs the real pipeline")
    speech, traces, out = tiny_tree
    mets = [m for m in ("pesq", "plcmos") if HAVE[m]]
    R.run_eval(speech, traces, out, conditions=["lbrr+dred", "lbrr+dred_adaptive"], metrics=mets,
               progress=False, plots=False, max_delay_ms=120)
    rows = list(csv.DictReader(open(out / "results.csv")))
    for r in rows:
        assert float(r["delay_mean_ms"]) >= 0 and float(r["delay_p95_ms"]) <= 120 - 60
        assert int(r["in_time"]) + int(r["too_late"]) + int(r["concealed"]) > 0
        if r["condition"] == "lbrr+dred":
            assert float(r["delay_mean_ms"]) == 0
    md = (out / "summary.md").read_text()
    assert "added delay mean / p95" in md and "not sample-aligned" in md
