"""The vocoder continuation shared by the neural PLC and DRED (shipped vocoder, synthetic speech)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import voiced
from edge_dred.constants import FRAME_SAMPLES, FRAME_SIZE
from edge_dred.dsp.features import compute_features
from edge_dred.neural.continuation import Continuation, ContinuationError, fade_from, raised_cosine, to_int16
from edge_dred.neural.vocoder import VocoderModel
from edge_dred.receiver import build_receiver
from edge_dred.sender import Sender
from edge_dred.simulate import simulate

START = 100  # frame where the synthesis takes over


@pytest.fixture(scope="module")
def model():
    return VocoderModel.load()


def _started(model, x: np.ndarray, feats: np.ndarray) -> Continuation:
    c = Continuation(model)
    c.start(x[:START * FRAME_SIZE], feats[START - Continuation.history_frames:START])
    return c


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_start_continues_the_phase_and_level(model, f0):
    x = voiced(2.0, f0=f0, seed=3)
    feats = compute_features(x)
    y = _started(model, x, feats).synthesize(feats[START:START + 4])
    true = x[START * FRAME_SIZE:(START + 4) * FRAME_SIZE].astype(np.float64)
    # Phase continuity: the first 10 ms line up with the real continuation at lag 0.
    a, b = y[:FRAME_SIZE], true[:FRAME_SIZE]
    assert np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)) > 0.8
    # No discontinuity above the signal's own sample-to-sample level at the edge.
    own = np.abs(np.diff(x.astype(np.float64)))
    assert abs(y[0] - x[START * FRAME_SIZE - 1]) <= np.percentile(own, 99)
    assert 0.5 < np.sqrt(np.mean(y ** 2) / np.mean(true ** 2)) < 2.0


def test_handback_ends_in_the_real_signal(model):
    x = voiced(2.0, f0=140.0, seed=7)
    feats = compute_features(x)
    c = _started(model, x, feats)
    y = c.synthesize(feats[START:START + 4])
    _check_handback(c, x, feats, y, pct=99)


def _check_handback(c: Continuation, x: np.ndarray, feats: np.ndarray, y: np.ndarray, pct: float) -> None:
    """The hand-back after 4 synthesised frames fades over the whole first real slot, touches
    nothing after it and never clicks."""
    end = (START + 4) * FRAME_SIZE
    faded = Continuation.max_end_xfade
    assert faded == FRAME_SAMPLES
    real = x[end:end + faded + FRAME_SIZE]
    out = c.handback(real, feats[START + 4:START + 6], faded)
    assert np.array_equal(out[faded:], real[faded:])   # only the fade is touched
    # ... all of it: past the first frame too
    assert not np.array_equal(out[FRAME_SIZE:FRAME_SIZE + 80], real[FRAME_SIZE:FRAME_SIZE + 80])
    own = np.abs(np.diff(x.astype(np.float64)))
    assert abs(float(out[0]) - y[-1]) <= np.percentile(own, pct)
    assert np.max(np.abs(np.diff(out.astype(np.float64)))) <= 1.5 * own.max()


def test_gain_mixes_libopus_under_and_skips_the_vocoder_at_zero(model):
    x = voiced(2.0, f0=140.0, seed=2)
    feats = compute_features(x)
    under = x[START * FRAME_SIZE:(START + 2) * FRAME_SIZE]
    a, b = _started(model, x, feats), _started(model, x, feats)
    full = a.synthesize(feats[START:START + 2])
    g = np.linspace(1.0, 0.0, 2 * FRAME_SIZE)
    mixed = b.synthesize(feats[START:START + 2], g, under=under)
    np.testing.assert_allclose(mixed, full * g + (1.0 - g) * under)
    # At gain 0 nothing is synthesised and the state does not advance: the next call matches
    # a continuation that never saw those frames.
    c = _started(model, x, feats)
    silent = c.synthesize(feats[START:START + 2], np.zeros(2 * FRAME_SIZE), under=under)
    assert np.array_equal(silent, under.astype(np.float64))
    np.testing.assert_array_equal(c.synthesize(feats[START:START + 2]), full)


def test_edges_and_errors(model):
    c = Continuation(model)
    with pytest.raises(ContinuationError, match="history"):
        c.start(np.zeros(10, np.int16), np.zeros((Continuation.history_frames, 20), np.float32))
    w = raised_cosine(8)
    assert np.all(np.diff(w) < 0) and np.allclose(w + w[::-1], 1.0)
    y = np.zeros(16)
    fade_from(y, np.full(16, 100.0), 8)
    assert y[0] > 95 and np.all(y[8:] == 0)
    assert to_int16(np.array([40000.0, -40000.0, 1.4])).tolist() == [32767, -32768, 1]


def test_plc_and_dred_both_go_through_the_continuation(monkeypatch):
    """One burst: DRED rebuilds its end (recovery window), the neural PLC conceals its start;
    both synthesise through Continuation."""
    calls: dict[int, int] = {}
    orig = Continuation.synthesize

    def counting(self, *a, **kw):
        calls[id(self)] = calls.get(id(self), 0) + 1
        return orig(self, *a, **kw)

    monkeypatch.setattr(Continuation, "synthesize", counting)
    x = voiced(3.0, f0=130.0, seed=9)
    lost = np.zeros(160, bool)
    lost[60:70] = True   # 200 ms: longer than the 60 ms recovery window
    rx = build_receiver(dred=True, neural_plc=True)
    res = simulate(x, lost, Sender(dred_ms=1040), rx)
    dec = res.decisions[60:70]
    assert "dred" in dec and "neural_plc" in dec
    dred_cont, plc_cont = rx.recoverers[0]._cont, rx.concealer._cont
    assert isinstance(dred_cont, Continuation) and isinstance(plc_cont, Continuation)
    assert calls.get(id(dred_cont), 0) > 0 and calls.get(id(plc_cont), 0) > 0


# ------------------------------------------------ the frame-parallel vocoder behind the same edges
@pytest.fixture(scope="module")
def fp_model(tmp_path_factory):
    from edge_dred.neural import fp_runtime as rt
    from edge_dred.neural import fp_vocoder as ref

    params = ref.random_params(seed=1, out_scale=0.1)
    path = tmp_path_factory.mktemp("fp") / "fp.bin"
    rt.export_fp_vocoder({k: v.astype(np.float32) for k, v in params.items()}, {"conv": 128, "gru": 128}, path)
    return rt.FPVocoderModel.load(path=path)


def test_fp_slots_with_lookahead_equal_one_call(fp_model):
    """Slot by slot, each call given the next frame as look-ahead, the output is the one-call output."""
    x = voiced(2.0, f0=130.0, seed=4)
    feats = compute_features(x)
    one = _started(fp_model, x, feats)
    assert one.wants_ahead
    whole = one.synthesize(feats[START:START + 8], ahead=feats[START + 8:START + 9])
    slots = _started(fp_model, x, feats)
    parts = [slots.synthesize(feats[START + i:START + i + 2], ahead=feats[START + i + 2:START + i + 3])
             for i in range(0, 8, 2)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1.0)
    assert whole.shape == (8 * FRAME_SIZE,)


def test_fp_start_and_handback_are_continuous(fp_model):
    x = voiced(2.0, f0=140.0, seed=7)
    feats = compute_features(x)
    c = _started(fp_model, x, feats)
    y = c.synthesize(feats[START:START + 4], ahead=feats[START + 4:START + 5])
    own = np.abs(np.diff(x.astype(np.float64)))
    # Into the hole: the first synthesised sample follows the last real one.
    assert abs(y[0] - x[START * FRAME_SIZE - 1]) <= np.percentile(own, 99.5)
    # Out of it: the 80 samples already synthesised past the hole, then the synthesis run on.
    _check_handback(c, x, feats, y, pct=99.5)


def test_fp_handback_without_features_fades_over_what_is_synthesised(fp_model):
    x = voiced(2.0, f0=140.0, seed=7)
    feats = compute_features(x)
    c = _started(fp_model, x, feats)
    c.synthesize(feats[START:START + 4], ahead=feats[START + 4:START + 5])
    end = (START + 4) * FRAME_SIZE
    real = x[end:end + FRAME_SAMPLES]
    out = c.handback(real, None, FRAME_SAMPLES)
    assert np.array_equal(out[80:], real[80:])
    assert not np.array_equal(out[:80], real[:80])


def test_fp_gain_zero_skips_the_vocoder_and_leaves_no_fade(fp_model):
    x = voiced(2.0, f0=140.0, seed=2)
    feats = compute_features(x)
    under = x[START * FRAME_SIZE:(START + 2) * FRAME_SIZE]
    c = _started(fp_model, x, feats)
    silent = c.synthesize(feats[START:START + 2], np.zeros(2 * FRAME_SIZE), under=under)
    assert np.array_equal(silent, under.astype(np.float64))
    real = x[:FRAME_SIZE]
    assert np.array_equal(c.handback(real, feats[:1], FRAME_SIZE, np.zeros(FRAME_SIZE)), real)


def test_plc_and_dred_both_run_the_fp_vocoder_through_the_continuation(fp_model):
    from edge_dred.dred.recovery import DredRecoverer
    from edge_dred.plc import NeuralPLC
    from edge_dred.receiver import Receiver, ReceiverConfig, recovery_lookahead

    x = voiced(3.0, f0=130.0, seed=9)
    lost = np.zeros(160, bool)
    lost[60:70] = True
    rx = Receiver(ReceiverConfig(lookahead=recovery_lookahead(60, False)),
                  recoverers=[DredRecoverer(vocoder_model=fp_model)],
                  concealer=NeuralPLC(vocoder_model=fp_model))
    res = simulate(x, lost, Sender(dred_ms=1040), rx)
    dec = res.decisions[60:70]
    assert "dred" in dec and "neural_plc" in dec
    assert rx.recoverers[0]._cont.wants_ahead and rx.concealer._cont.wants_ahead
    a = res.audio.astype(np.float64)
    own = np.abs(np.diff(x.astype(np.float64)))
    # No click at the hole's edges: nothing jumps more than the input ever does.
    assert np.max(np.abs(np.diff(a[55 * 320:75 * 320]))) <= 1.5 * own.max()


@pytest.mark.parametrize("shift", [-60, -7, 0, 33, 80])
def test_fp_start_shift_finds_the_lag_of_the_waveform_it_fades_from(shift):
    from edge_dred.neural.continuation import _best_shift

    y = voiced(0.1, f0=97.0, seed=5).astype(np.float64)[:4 * FRAME_SIZE]
    # y[80 - shift:] is where the hole starts for this shift: give exactly that as the reference.
    ref = y[80 - shift:80 - shift + FRAME_SIZE]
    assert _best_shift(y, ref) == shift
    assert _best_shift(y, None) == 0 and _best_shift(y, ref[:10]) == 0
