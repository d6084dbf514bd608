"""Small checks of the training-side models (skipped without torch)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import vocoder_model as vm  # noqa: E402
from plc_model import PLCPredictor  # noqa: E402


@pytest.fixture(scope="module")
def voc() -> vm.Vocoder:
    torch.manual_seed(0)
    m = vm.Vocoder()
    m.eval()
    return m


def test_budget(voc: vm.Vocoder) -> None:
    assert 300_000 < voc.param_count() <= 1_000_000
    assert 0.1e9 < voc.flops_per_second() <= 0.7e9


def test_pred_positions_in_past() -> None:
    lags = torch.arange(vm.PITCH_MIN, vm.PITCH_MAX + 1)
    pos = vm.pred_positions(lags)
    assert pos.shape == (len(lags), vm.PRED_SIZE)
    assert int(pos.min()) >= 0 and int(pos.max()) < vm.HIST
    # A long lag reads one contiguous stretch centred on the lag.
    p = vm.pred_positions(torch.tensor([100]))[0]
    assert p.tolist() == list(range(vm.HIST - 102, vm.HIST - 102 + vm.PRED_SIZE))
    # A short lag wraps by exactly one period.
    p = vm.pred_positions(torch.tensor([32]))[0]
    assert int(p[-1]) == vm.HIST - 32 + 41 - 32


def _feats(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, t, 20, generator=g)
    f[..., 18] = 40 + 200 * torch.rand(b, t, generator=g)
    f[..., 19] = torch.rand(b, t, generator=g)
    return f


@torch.no_grad()
def test_chunked_synthesis_equals_one_shot(voc: vm.Vocoder) -> None:
    """The state dict carries everything: frame-by-frame == one call."""
    f = _feats(2, 6)
    st = voc.init_state(2)
    st["hist"] = 0.01 * torch.randn(2, vm.HIST, generator=torch.Generator().manual_seed(1))
    st2 = {k: v.clone() for k, v in st.items()}
    y1 = voc.run(f, st)
    y2 = torch.cat([voc.run(f[:, i : i + 1], st2) for i in range(6)], 1)
    assert y1.shape == (2, 6 * vm.FRAME)
    assert torch.allclose(y1, y2, atol=1e-6)
    assert float(y1.abs().max()) > 0


@torch.no_grad()
def test_teacher_forcing_feeds_real_signal(voc: vm.Vocoder) -> None:
    f = _feats(1, 3)
    target = 0.05 * torch.randn(1, 3 * vm.FRAME, generator=torch.Generator().manual_seed(2))
    st = voc.init_state(1)
    y = voc.run(f, st, target, n_teacher=3)
    assert torch.equal(st["hist"], target[:, -vm.HIST :])
    assert not torch.allclose(y, target)  # an untrained net does not just copy


def test_stft_loss_zero_only_for_identical() -> None:
    from train_vocoder import mr_stft_loss

    x = torch.randn(2, 4000) * 0.1
    l0, _ = mr_stft_loss(x, x)
    l1, _ = mr_stft_loss(0.5 * x, x)
    assert float(l0) < 1e-4
    assert float(l1) > 0.3


def test_noise_vocoder_level() -> None:
    """Band-shaped noise reproduces the level of a noise input within 2 dB."""
    from eval_copy_synthesis import noise_vocoder

    from edge_dred.dsp.features import compute_features

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(16000) * 1000).astype(np.int16)
    y = noise_vocoder(compute_features(x), len(x))
    r_in = np.sqrt(np.mean(x[1600:].astype(float) ** 2))
    r_out = np.sqrt(np.mean(y[1600:].astype(float) ** 2))
    assert abs(20 * np.log10(r_out / r_in)) < 2.0


def _plc_case() -> tuple[PLCPredictor, torch.Tensor, torch.Tensor]:
    """A seeded predictor, 20 frames of features and a loss of frames 8..11."""
    torch.manual_seed(0)
    lost = torch.zeros(1, 20, dtype=torch.bool)
    lost[0, 8:12] = True
    return PLCPredictor(), _feats(1, 20), lost


@torch.no_grad()
def test_plc_causal_and_ignores_lost_inputs() -> None:
    m, f, lost = _plc_case()
    p = m.run(f, lost)
    assert p.shape == (1, 20, 20)
    g = f.clone()
    g[0, 15] += 5.0  # future change: rows <= 15 unchanged
    assert torch.allclose(m.run(g, lost)[:, :16], p[:, :16])
    h = f.clone()
    h[0, 9] += 5.0  # a lost frame's real features are never read
    assert torch.allclose(m.run(h, lost), p)


def test_ge_masks_packet_aligned() -> None:
    from train_plc import WARM_PACKETS, ge_masks

    m = ge_masks(32, 60, np.random.default_rng(0))
    assert m.shape == (32, 120)
    assert not m[:, : 2 * WARM_PACKETS].any()
    assert np.array_equal(m[:, 0::2], m[:, 1::2])
    assert 0.05 < m.mean() < 0.4


def test_plc_band_loss_and_burst_positions():
    import train_plc as tp

    lost = torch.tensor([[False, True, True, True, False, True]])
    assert tp.burst_position(lost).tolist() == [[0, 0, 1, 2, 0, 0]]
    std = torch.ones(20)
    loss = tp.BandLoss(std, over_weight=1.0)
    target = torch.zeros(1, 1, 20)
    up, down = target.clone(), target.clone()
    up[..., 0], down[..., 0] = 1.0, -1.0  # +-1 in c0: every band louder / quieter by the same amount
    v = torch.ones(1, 1)
    assert float(loss(up, target, v)) > float(loss(down, target, v)) > 0.0
    # An octave pitch error costs no more than a large one (the clamped term saturates).
    p1, p2 = target.clone(), target.clone()
    p1[..., 18], p2[..., 18] = 60.0, 120.0
    assert float(loss(p1, target, v)) == pytest.approx(float(loss(p2, target, v)))
    # Lost frames past early_frames weigh less in the training loss, not in the lost-frame mean.
    err = torch.tensor([[0.0, 1.0, 1.0, 5.0, 0.0, 1.0]])
    tr_all, lo_all = tp.masked_mean(err, lost, 0.0)
    tr_early, lo_early = tp.masked_mean(err, lost, 0.0, early_frames=2, late_weight=0.0)
    assert float(lo_all) == float(lo_early) == pytest.approx(2.0)
    assert float(tr_early) == pytest.approx(1.0) and float(tr_all) == pytest.approx(2.0)


def test_plc_critic_judges_played_frames() -> None:
    import train_plc as tp

    lost = torch.tensor([[False, True, True, True, True, False, True, True, True]])
    # Burst positions 2..3 only: the third and fourth lost frames of a burst.
    assert tp.adv_frames(lost, 2, 4).tolist() == [[0, 0, 0, 1, 1, 0, 0, 0, 1]]
    z = torch.zeros(1, 9, 20)
    pred = torch.ones(1, 9, 20)
    seq = tp.played(pred, z, lost)
    assert torch.equal(seq[0, :, 0], lost[0].float())  # predictions exactly where lost
    torch.manual_seed(0)
    critic = tp.FeatureCritic(ch=8)
    out = critic(seq, lost)
    assert out.shape == (1, 9) and torch.isfinite(out).all()
    # The critic sees the lost flag: the same features judged as received score differently.
    assert not torch.allclose(out, critic(seq, torch.zeros_like(lost)))


@torch.no_grad()
def test_plc_observed_inputs_drive_received_frames_only() -> None:
    m, f, lost = _plc_case()
    base = m.run(f, lost)
    assert torch.allclose(m.run(f, lost, f), base)
    obs = f.clone()
    obs[0, 9] += 5.0  # lost frame: its observation is never read
    assert torch.allclose(m.run(f, lost, obs), base)
    obs[0, 5] += 5.0  # received frame: the prediction follows the observation, not the target
    p = m.run(f, lost, obs)
    assert torch.allclose(p[:, :6], base[:, :6])
    assert not torch.allclose(p[:, 6:], base[:, 6:])


def test_plc_sampler_pairs_decoded_inputs_with_targets(tmp_path: Path) -> None:
    import train_plc as tp

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((300, 20)).astype(np.float32)
    np.savez(tmp_path / "vocoder_0.npz", feats=feats, offsets=np.array([0, 140, 300]), pcm=np.zeros(1, np.int16))
    with pytest.raises(SystemExit, match="prepare_plc_inputs"):
        tp.FeatureSampler(tmp_path, 40, np.random.default_rng(1), "decoded")
    np.savez(tmp_path / "plc_inputs_0.npz", feats=feats + 100.0)
    s = tp.FeatureSampler(tmp_path, 40, np.random.default_rng(1), "decoded")
    tgt, inp = s.batch(16)
    assert tgt.shape == inp.shape == (16, 40, 20)
    assert torch.allclose(inp - 100.0, tgt, atol=1e-4)  # the same frames of both
    tgt_c, inp_c = tp.FeatureSampler(tmp_path, 40, np.random.default_rng(1)).batch(4)
    assert torch.equal(tgt_c, inp_c)


def test_vocoder_sampler_draws_dred_twins_in_place(tmp_path: Path) -> None:
    from train_vocoder import HIST, PREEMPHASIS, SequenceSampler

    # Feature 0 and every sample of a frame hold the frame's index, so a batch shows where it came from.
    idx = np.arange(300, dtype=np.float32)
    feats = np.zeros((300, 20), np.float32)
    feats[:, 0] = idx
    pcm = np.repeat(idx, 160).astype(np.int16)
    np.savez(tmp_path / "vocoder_0.npz", feats=feats, offsets=np.array([0, 140, 300]), pcm=pcm)
    np.savez(tmp_path / "dred_feats_0.npz", feats=feats + 1000.0)

    def frame_of_target(sig: torch.Tensor) -> np.ndarray:   # first target sample's frame
        return np.rint(sig[:, HIST + 1].numpy() * 32768 / (1 - PREEMPHASIS)).astype(int)

    f, sig = SequenceSampler(tmp_path, 40, np.random.default_rng(1)).batch(8)
    assert float(f.max()) < 1000                     # no twin without dred_p
    np.testing.assert_array_equal(f[:, 2, 0].numpy().astype(int), frame_of_target(sig))
    f, sig = SequenceSampler(tmp_path, 40, np.random.default_rng(1), dred_p=1.0).batch(8)
    assert float(f.min()) >= 1000                    # every sequence from the twin, at its own frames
    np.testing.assert_array_equal(f[:, 2, 0].numpy().astype(int) - 1000, frame_of_target(sig))
    half, _ = SequenceSampler(tmp_path, 40, np.random.default_rng(2), dred_p=0.5).batch(64)
    assert 16 < int((half[:, 0, 0] >= 1000).sum()) < 48
    np.savez(tmp_path / "dred_feats_0.npz", feats=feats[:10])
    with pytest.raises(SystemExit, match="does not match"):
        SequenceSampler(tmp_path, 40, np.random.default_rng(1), dred_p=0.5)


def test_checkpoint_save_is_cpu_and_detached(tmp_path: Path) -> None:
    import torch
    from common import atomic_save, load_resume

    w = torch.ones(3, requires_grad=True) * 2.0  # non-leaf with grad history
    obj = {"model": {"w": w}, "opt": [(torch.zeros(2), 5)], "step": 7}
    atomic_save(obj, tmp_path / "ck" / "latest.pt")
    ck, path = load_resume(tmp_path / "ck", tmp_path / "run")
    assert path == tmp_path / "ck" / "latest.pt" and ck["step"] == 7
    assert not ck["model"]["w"].requires_grad and ck["model"]["w"].device.type == "cpu"
    assert isinstance(ck["opt"], list) and isinstance(ck["opt"][0], tuple) and ck["opt"][0][1] == 5
    assert torch.equal(ck["model"]["w"], torch.full((3,), 2.0))
