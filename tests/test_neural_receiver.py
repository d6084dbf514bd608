"""Neural PLC inside the receiver: conditions, CLI, edges, long bursts (shipped models)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import voiced
from edge_dred import plc as plc_mod
from edge_dred.audio.wavio import load_audio, write_wav
from edge_dred.cli.main import main
from edge_dred.receiver import Receiver, ReceiverConfig
from edge_dred.sender import Sender
from edge_dred.simulate import CONDITIONS, run_condition, simulate

SLOT = 320


@pytest.fixture(scope="module")
def speech():
    return voiced(3.0, f0=125.0, seed=4)


def _edges(lost: np.ndarray, lookahead: int) -> list[int]:
    """Output sample indices where a loss starts or ends."""
    d = np.diff(np.concatenate([[0], lost.astype(int), [0]]))
    return [int(i) * SLOT - lookahead for i in np.nonzero(d)[0]]


def test_conditions_registered():
    assert CONDITIONS["neural_plc"].neural_plc and not CONDITIONS["neural_plc"].lbrr
    c = CONDITIONS["lbrr+neural_plc"]
    assert c.neural_plc and c.lbrr and c.bitrate == 40000
    assert not CONDITIONS["opus_plc"].neural_plc


def test_vocoder_condition_is_copy_synthesis(speech):
    from edge_dred.neural.vocoder import copy_synthesis

    c = CONDITIONS["vocoder"]
    assert c.lossless and c.copy_synthesis
    lost = np.ones(10, bool)   # ignored: no packets
    res = run_condition(speech, lost, "vocoder")
    assert np.array_equal(res.audio, copy_synthesis(speech))
    assert not res.lost.any() and set(res.decisions) == {"vocoder"} and res.total_bitrate_bps == 0.0
    # the resynthesis follows the input (same loudness, correlated envelope), it is not silence
    a, b = speech.astype(np.float64), res.audio.astype(np.float64)
    assert 0.5 < np.std(b) / np.std(a) < 2.0
    env = lambda z: np.sqrt(np.mean(z[: len(z) // 320 * 320].reshape(-1, 320) ** 2, axis=1))  # noqa: E731
    assert np.corrcoef(env(a), env(b))[0, 1] > 0.8


def test_neural_plc_condition_conceals_smoothly(speech):
    lost = np.zeros(160, bool)
    lost[[20, 45, 46, 47, 90, 91]] = True
    res = run_condition(speech, lost, "neural_plc")
    clean = run_condition(speech, None, "clean")
    assert len(res.audio) == len(speech)
    dec = np.array(res.decisions)
    assert np.all(dec[res.lost] == "neural_plc") and np.all(dec[~res.lost] == "regular")
    own = np.abs(np.diff(clean.audio.astype(np.float64)))
    y = res.audio.astype(np.float64)
    la = Sender().lookahead
    for e in _edges(res.lost, la):
        if 0 < e < len(y):
            local = own[max(0, e - 3200):e + 3200]
            assert abs(y[e] - y[e - 1]) <= np.percentile(local, 99.5), e
    # the concealed slots carry signal (not silence) and stay at the signal's level
    for s in (20, 45, 90):
        seg = y[s * SLOT - la:(s + 1) * SLOT - la]
        ref = clean.audio[s * SLOT - la:(s + 1) * SLOT - la].astype(np.float64)
        assert 0.05 < np.sqrt(np.mean(seg ** 2)) / np.sqrt(np.mean(ref ** 2)) < 3.0


def test_lbrr_plus_neural_plc(speech):
    lost = np.zeros(160, bool)
    lost[[30, 60, 61, 62, 63]] = True
    res = run_condition(speech, lost, "lbrr+neural_plc")
    dec = np.array(res.decisions)
    assert dec[30] == "lbrr" and dec[63] == "lbrr"  # the next packet carries the frame
    assert set(dec[60:63]) == {"neural_plc"}


def test_long_burst_fades_into_libopus_concealment(speech):
    """Default: libopus leads 20 ms, the vocoder fills 20..80 ms, then libopus's concealment again,
    shaped towards the predicted features (``shape_tail``) until the hand-back frame."""
    lost = np.zeros(160, bool)
    lost[40:60] = True  # 400 ms
    sender = Sender()
    res = simulate(speech, lost, sender, Receiver(ReceiverConfig(), concealer=plc_mod.NeuralPLC()))
    raw = simulate(speech, lost, Sender(), Receiver(ReceiverConfig(), concealer=plc_mod.NeuralPLC(_policy=replace(plc_mod.POLICY, shape_tail=False))))
    opus = simulate(speech, lost, Sender(), Receiver(ReceiverConfig()))
    y, r, o = (x.audio.astype(np.float64) for x in (res, raw, opus))
    a, b = 40 * SLOT - sender.lookahead, 60 * SLOT - sender.lookahead
    assert np.array_equal(y[:a + 320], o[:a + 320])          # the lead is libopus's own concealment
    assert not np.array_equal(y[a + 320:a + 1280], o[a + 320:a + 1280])
    assert np.array_equal(r[a + 1280:], o[a + 1280:])        # faded out: libopus's, and its hand-back
    assert not np.array_equal(y[a + 1280:b], o[a + 1280:b])  # ... shaped by default
    assert np.array_equal(y[b + 160:], o[b + 160:])          # after the hand-back frame: the same decode


def test_cli_simulate_neural_plc(tmp_path, speech, capsys):
    wav, out, rep, tr = tmp_path / "in.wav", tmp_path / "o.wav", tmp_path / "r.json", tmp_path / "t.txt"
    write_wav(wav, speech[:32000])
    tr.write_text("0\n0\n0\n0\n1\n1\n0\n0\n0\n1\n" * 12)
    assert main(["simulate", str(wav), "--trace", str(tr), "--neural-plc", "-o", str(out),
                 "--report", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["concealment"] == "neural_plc"
    assert r["decision_counts"]["neural_plc"] == sum(p["lost"] for p in r["packets"]) > 0
    assert len(load_audio(out).pcm) == 32000
    assert "neural_plc" in capsys.readouterr().out


def test_cli_reports_broken_model_cleanly(tmp_path, speech, truncated_plc_models, capsys):
    wav = tmp_path / "in.wav"
    write_wav(wav, speech[:8000])
    rc = main(["simulate", str(wav), "--loss", "10", "--neural-plc", "-o", str(tmp_path / "o.wav")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "plc.bin is truncated" in err
    assert not (tmp_path / "o.wav").exists()


def test_loss_start_work_is_prepared_in_the_slot_before(speech, monkeypatch):
    """With a look-ahead, the receiver hands the neural PLC its loss-start work one slot early: the
    catch-up analysis while the last real slot is decided, the vocoder's priming while libopus's
    lead is. The audio is the same as doing both in the slot that needs them."""
    packets = Sender(24000).encode_stream(speech)
    lost = np.zeros(len(packets), bool)
    lost[[30, 31, 32, 70, 100, 101]] = True

    def go(prepare: bool):
        conc = plc_mod.NeuralPLC()
        rx = Receiver(ReceiverConfig(lookahead=2), concealer=conc)
        if not prepare:
            monkeypatch.setattr(rx, "_prepare_next", lambda: None)
        runs = {"catch_up": [], "start": []}
        for name in runs:
            orig = getattr(conc, "_" + name)
            monkeypatch.setattr(conc, "_" + name, lambda *a, o=orig, k=name: runs[k].append(rx._loss_run) or o(*a))
        out = [o for p, gone in zip(packets, lost) for o in rx.push(None if gone else p)] + rx.flush()
        return np.concatenate(out), [d.value for d in rx.decisions], runs

    out_a, dec_a, runs_a = go(True)
    out_b, dec_b, runs_b = go(False)
    assert dec_a == dec_b and dec_a.count("neural_plc") == int(lost.sum())
    assert np.array_equal(out_a, out_b)
    # per loss: the catch-up at its start; for the two longer than libopus's lead, the vocoder's
    # start (with the catch-up of the lead), in the lead's slot (loss run 1) instead of the next
    assert runs_b == {"catch_up": [1, 2, 1, 1, 2], "start": [2, 2]}
    assert runs_a == {"catch_up": [0, 1, 0, 0, 1], "start": [1, 1]}
