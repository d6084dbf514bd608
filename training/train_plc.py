"""Train the neural PLC feature predictor (``plc_model.PLCPredictor``).

Training data: the ``feats`` of ``training/data/vocoder_*.npz`` (from
``prepare_data.py``).  Each sequence gets a random packet-loss mask from a
Gilbert-Elliott chain at 20 ms packet granularity (loss rate 0..50 %, mean
burst 1..8 packets, every lost packet = 2 feature frames, the first 200 ms
always received); lost frames' inputs are replaced by the model's own
predictions plus a lost flag, with gradients through the feedback.  Loss: L1
``--loss l1`` (the first model): L1 in normalised feature space, per-dimension
weights favouring the cepstrum (c0 x2) and the pitch period (x2, scaled by the
true voicing).  ``--loss band`` (the default): the cepstral error
is taken back to the 18 log10 band energies (the orthonormal DCT's inverse)
and scored there with L1 plus an extra penalty on *over*-estimated bands
(a concealed frame that is louder than the truth is heard as a burst, one that
is a little quieter is not); a small normalised-cepstrum L1 keeps the
high quefrencies in check; the pitch period is scored with a clamped L1 that
saturates at 50 samples (an octave error costs no more than a slightly larger
one, so the model commits to one pitch instead of averaging two) plus a
sharper term below 15 samples, both scaled by the true voicing; the pitch
correlation with L1 plus a penalty on under-estimating it.  Frames are
weighted 1.0 when lost and 0.3 when received.

Inputs: ``--inputs clean`` feeds the received frames' clean features (the
first models); ``--inputs decoded`` feeds the features of the same speech
after Opus (``prepare_plc_inputs.py``, random bit rate per file), which is
what the receiver observes at run time.  Targets are the clean features.

Adversarial fine-tune (``--adv-weight``, the shipped predictor since session
7): any regression loss pulls an uncertain prediction towards the mean of its
candidates, a blurred spectral envelope that a listener hears as muffled.  A
small critic (:class:`FeatureCritic`, dilated 1-D convolutions, spectral norm)
sees whole feature sequences with the lost mask and learns to tell real lost
frames from the predictor's; the predictor adds a least-squares adversarial
term on the frames the receiver's vocoder plays (burst positions 2..7 by
default: 20-80 ms into a loss) to the band loss.  The critic trains alone for
``--adv-warmup`` steps first.  It raises the band L1 (a committed guess that is
wrong costs more than the mean) and raises PLCMOS; see training/README.md.

Validation: dev-speaker features (evaluation only) with fixed seeded masks,
received frames observed after Opus at 24 kb/s (and, logged, clean); reports
the loss on lost frames and the same for a "repeat the last received frame"
baseline.

Usage::

    nohup .venv/bin/python training/train_plc.py --loss l1 --epochs 200 --resume \
        > training/runs/plc/stdout.txt 2>&1 &          # the first (L1) model
    # the shipped predictor: adversarial fine-tune of plc_dec on decoded inputs
    .venv/bin/python training/train_plc.py --init training/checkpoints/plc_dec/latest.pt --inputs decoded \
        --lr 3e-4 --adv-weight 0.1 --epochs 60 --ckpt-dir training/checkpoints/plc_adv --run-dir training/runs/plc_adv
    # start from another checkpoint's weights (fresh optimizer), e.g. to change the loss:
    .venv/bin/python training/train_plc.py --init training/checkpoints/plc_adv/latest.pt --ckpt-dir DIR --run-dir DIR
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import atomic_save, open_log, restore_rng, rng_state  # noqa: E402
from plc_model import NB_FEATURES, PLCConfig, PLCPredictor  # noqa: E402

DATA = HERE / "data"
CKPT_DIR = HERE / "runs" / "plc" / "ck"
RUN_DIR = HERE / "runs" / "plc"
DEV = REPO.parent / "shared" / "data" / "speech" / "dev"
WARM_PACKETS = 10


def loss_weights() -> torch.Tensor:
    w = torch.ones(NB_FEATURES)
    w[0] = 2.0
    w[18] = 2.0
    return w


def ge_masks(b: int, n_packets: int, rng: np.random.Generator) -> np.ndarray:
    """(b, 2*n_packets) bool frame masks from per-sequence Gilbert-Elliott chains."""
    rate = rng.uniform(0.0, 0.5, b)
    burst = rng.uniform(1.0, 8.0, b)
    p_bg = 1.0 / burst  # bad -> good
    p_gb = np.minimum(rate / np.maximum(1.0 - rate, 1e-3) * p_bg, 1.0)
    lost = np.zeros((b, n_packets), bool)
    state = np.zeros(b, bool)
    u = rng.random((b, n_packets))
    for k in range(WARM_PACKETS, n_packets):
        state = np.where(state, u[:, k] >= p_bg, u[:, k] < p_gb)
        lost[:, k] = state
    return np.repeat(lost, 2, axis=1)


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, lost: torch.Tensor, voicing: torch.Tensor,
                received_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (training loss over all frames, mean loss over lost frames)."""
    w = loss_weights()
    err = (pred - target).abs() * w
    err = torch.cat([err[..., :18], err[..., 18:19] * voicing.unsqueeze(-1), err[..., 19:]], -1).sum(-1) / w.sum()
    err = err[:, 1:]
    lf = lost[:, 1:].float()
    fw = lf + received_weight * (1.0 - lf)
    train = (err * fw).sum() / fw.sum()
    lost_only = (err * lf).sum() / lf.sum().clamp_min(1.0)
    return train, lost_only


def _band_matrix() -> torch.Tensor:
    """(18, 18) map of a cepstral difference to log10 band-energy differences (rows: coefficients)."""
    sys.path.insert(0, str(REPO))
    from edge_dred.dsp.features import band_energies_from_cepstrum

    base = band_energies_from_cepstrum(np.zeros((1, 18)), log10=True)
    return torch.from_numpy((band_energies_from_cepstrum(np.eye(18), log10=True) - base).astype(np.float32))


class BandLoss:
    """Per-frame loss in band-energy / pitch units (see the module docstring)."""

    def __init__(self, feat_std: torch.Tensor, over_weight: float = 1.0) -> None:
        self.m = _band_matrix()
        self.std = feat_std.clone()
        self.over = over_weight

    def frame_terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs are normalised (B, T, 20); returns (B, T) terms."""
        e = (pred - target) * self.std  # raw units: log10 cepstrum, samples, correlation
        eb = e[..., :18] @ self.m
        return {
            "band": eb.abs().mean(-1),
            "over": torch.relu(eb).mean(-1),
            "cep": (pred[..., :18] - target[..., :18]).abs().mean(-1),
            "pitch": (e[..., 18].abs() / 50.0).clamp(max=1.0) + 2.0 * (e[..., 18].abs() / 50.0).clamp(max=0.3),
            "corr": e[..., 19].abs() + 0.5 * torch.relu(-e[..., 19]),
        }

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        t = self.frame_terms(pred, target)
        return t["band"] + self.over * t["over"] + 0.25 * t["cep"] + voicing * t["pitch"] + t["corr"]


def burst_position(lost: torch.Tensor) -> torch.Tensor:
    """(B, T) index of each lost frame within its burst (0 = first lost frame); 0 where received."""
    pos = torch.zeros(lost.shape, dtype=torch.int64)
    run = torch.zeros(lost.shape[0], dtype=torch.int64)
    for t in range(lost.shape[1]):
        run = torch.where(lost[:, t], run + 1, torch.zeros_like(run))
        pos[:, t] = (run - 1).clamp(min=0)
    return pos


def masked_mean(err: torch.Tensor, lost: torch.Tensor, received_weight: float, early_frames: int = 0,
                late_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) per-frame errors -> (training loss, mean over lost frames); frame 0 is skipped.

    With ``early_frames`` > 0, lost frames at burst position >= early_frames
    weigh ``late_weight`` in the training loss (the receiver fades the vocoder
    out after ~120 ms, so later predictions are barely heard).
    """
    lf = lost.float()
    if early_frames > 0:
        lw = torch.where(burst_position(lost) < early_frames, lf, late_weight * lf)
    else:
        lw = lf
    err, lf, lw = err[:, 1:], lf[:, 1:], lw[:, 1:]
    fw = lw + received_weight * (1.0 - lf)
    return (err * fw).sum() / fw.sum(), (err * lf).sum() / lf.sum().clamp_min(1.0)


class FeatureCritic(torch.nn.Module):
    """Per-frame critic of feature sequences for ``--adv-weight``: is a lost frame's content real?

    Input: normalised features (B, T, 20) and the lost mask; dilated 1-D
    convolutions see +-300 ms around each frame, so the critic judges a
    concealed frame in the context of the real ones around it.  Used in
    training only (the receiver never runs it).
    """

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        layers, cin = [], NB_FEATURES + 1
        for d in (1, 2, 4, 8):
            layers += [torch.nn.utils.parametrizations.spectral_norm(
                torch.nn.Conv1d(cin, ch, 5, padding=2 * d, dilation=d)), torch.nn.LeakyReLU(0.2)]
            cin = ch
        layers.append(torch.nn.Conv1d(ch, 1, 1))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, lost.float().unsqueeze(-1)], -1).transpose(1, 2)
        return self.net(x).squeeze(1)


def played(pred: torch.Tensor, z: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
    """The feature sequence a listener gets: real frames where received, predictions where lost."""
    lf = lost.float().unsqueeze(-1)
    return lf * pred + (1.0 - lf) * z


def adv_frames(lost: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """(B, T) float weights of the lost frames at burst positions [first, last): those the vocoder plays."""
    pos = burst_position(lost)
    return (lost & (pos >= first) & (pos < last)).float()


def repeat_baseline(z: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
    """Prediction of a frame = the last received frame before it (normalised)."""
    out = torch.zeros_like(z)
    last = z[:, 0]
    for i in range(1, z.shape[1]):
        out[:, i] = last
        keep = lost[:, i : i + 1]
        last = torch.where(keep, last, z[:, i])
    return out


class FeatureSampler:
    """Random even-aligned sequences of the clean features and, with ``inputs="decoded"``,
    the aligned features of the same speech after Opus (``prepare_plc_inputs.py``)."""

    def __init__(self, data_dir: Path, seq: int, rng: np.random.Generator, inputs: str = "clean") -> None:
        self.feats, self.inputs, starts = [], [], []
        for p in sorted(data_dir.glob("vocoder_*.npz")):
            if ".tmp" in p.name:
                continue
            d = np.load(p)
            c = len(self.feats)
            self.feats.append(d["feats"])
            if inputs == "decoded":
                q = data_dir / p.name.replace("vocoder_", "plc_inputs_")
                if not q.exists():
                    raise SystemExit(f"{q} is missing: run training/prepare_plc_inputs.py")
                dec = np.load(q)["feats"]
                if dec.shape != d["feats"].shape:
                    raise SystemExit(f"{q.name}: shape {dec.shape} does not match {p.name} {d['feats'].shape}")
                self.inputs.append(dec)
            offs = d["offsets"]
            for a, b in zip(offs[:-1], offs[1:]):
                n = (int(b - a) - seq) // 2  # even starts keep packets aligned
                if n > 0:
                    starts.append((c, int(a), n))
        if not self.feats:
            raise SystemExit(f"no vocoder_*.npz in {data_dir}")
        self.starts = np.array(starts, np.int64)
        self.p = self.starts[:, 2] / self.starts[:, 2].sum()
        self.seq, self.rng = seq, rng
        self.clean_frames = len(self.feats[0])

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, inputs), each (b, seq, 20); the inputs are the targets unless decoded inputs are loaded."""
        idx = self.rng.choice(len(self.starts), size=b, p=self.p)
        out = np.empty((b, self.seq, NB_FEATURES), np.float32)
        inp = np.empty_like(out) if self.inputs else out
        for j, i in enumerate(idx):
            c, a, n = self.starts[i]
            s = a + 2 * int(self.rng.integers(0, n))
            out[j] = self.feats[c][s : s + self.seq]
            if self.inputs:
                inp[j] = self.inputs[c][s : s + self.seq]
        return torch.from_numpy(out), torch.from_numpy(inp)


def dev_set(seq: int, n_files: int, cache: Path, bitrate: int = 0) -> np.ndarray:
    """(N, seq, 20) dev feature sequences, cached in training/data (never trained on).

    ``bitrate`` > 0: features of the same speech after Opus at that rate
    (the same sequences, frame-aligned with ``bitrate=0``).
    """
    if cache.exists():
        return np.load(cache)
    sys.path.insert(0, str(REPO))
    import soundfile as sf

    from edge_dred.dsp.features import compute_features
    from prepare_plc_inputs import decoded_features

    files = sorted(DEV.rglob("*.flac"))
    idx = np.linspace(0, len(files) - 1, min(n_files, len(files))).round().astype(int)
    seqs = []
    for i in idx:
        x, _ = sf.read(str(files[i]), dtype="int16")
        x = x[: len(x) // 160 * 160]
        f = decoded_features(x, bitrate, 9) if bitrate else compute_features(x)
        for s in range(0, len(f) - seq + 1, seq):
            seqs.append(f[s : s + seq])
    arr = np.stack(seqs).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, arr)
    return arr


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the neural PLC feature predictor")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=150, help="frames per sequence (even)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-decay", type=float, default=1e-4)
    ap.add_argument("--received-weight", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--dev-files", type=int, default=40)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights and config")
    ap.add_argument("--loss", choices=["band", "l1"], default="band")
    ap.add_argument("--inputs", choices=["clean", "decoded"], default="clean",
                    help="received frames' inputs: clean features, or those of Opus-decoded speech "
                         "(prepare_plc_inputs.py), as at run time; the targets are always clean")
    ap.add_argument("--over-weight", type=float, default=1.0, help="band loss: extra weight on over-estimation")
    ap.add_argument("--early-frames", type=int, default=0,
                    help="band loss: lost frames past this burst position weigh --late-weight (0: all equal)")
    ap.add_argument("--late-weight", type=float, default=0.25)
    ap.add_argument("--dense-in", type=int, default=0, help="layer sizes of a new model (0: PLCConfig default)")
    ap.add_argument("--gru1", type=int, default=0)
    ap.add_argument("--gru2", type=int, default=0)
    ap.add_argument("--adv-weight", type=float, default=0.0,
                    help="weight of a least-squares adversarial loss from a feature-sequence critic on the "
                         "lost frames the receiver's vocoder plays (0: off)")
    ap.add_argument("--adv-positions", type=str, default="2:8",
                    help="burst positions (frames, first:last) the critic judges; default: 20-80 ms of a loss")
    ap.add_argument("--adv-warmup", type=int, default=200, help="critic-only steps before the predictor sees it")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--ckpt-dir", type=Path, default=CKPT_DIR)
    ap.add_argument("--run-dir", type=Path, default=RUN_DIR)
    a = ap.parse_args(argv)
    if a.seq % 2 or a.seq < 2 * WARM_PACKETS + 4:
        raise SystemExit("--seq must be even and > 2*WARM_PACKETS")
    torch.set_num_threads(a.threads)
    log = open_log(a.run_dir)

    latest = a.ckpt_dir / "latest.pt"
    ck = torch.load(latest, weights_only=False) if a.resume and latest.exists() else None
    init = torch.load(a.init, weights_only=False) if a.init is not None and ck is None else None
    if ck or init:
        cfg = PLCConfig.from_dict((ck or init)["config"]["model"])
    else:
        d = PLCConfig()
        cfg = PLCConfig(dense_in=a.dense_in or d.dense_in, gru1=a.gru1 or d.gru1, gru2=a.gru2 or d.gru2)
    model = PLCPredictor(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + a.lr_decay * s))
    rng = np.random.default_rng(a.seed)
    sampler = FeatureSampler(a.data, a.seq, rng, a.inputs)
    steps_per_epoch = max(1, sampler.clean_frames // (a.batch * a.seq))
    step, epoch = 0, 0
    if ck:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, epoch = ck["step"], ck["epoch"]
        restore_rng(ck["rng"], rng)
        log(f"resumed from {latest} at step {step} epoch {epoch}")
    else:
        torch.manual_seed(a.seed)
        random.seed(a.seed)
        if init:
            model.load_state_dict(init["model"])
            log(f"initialised from {a.init} (step {init.get('step')})")
        else:
            f = sampler.feats[0]
            model.feat_mean.copy_(torch.from_numpy(f.mean(0)))
            model.feat_std.copy_(torch.from_numpy(f.std(0) + 1e-3))
    band = BandLoss(model.feat_std.detach(), a.over_weight)
    critic = opt_c = None
    if a.adv_weight > 0:
        critic = FeatureCritic()
        opt_c = torch.optim.AdamW(critic.parameters(), lr=2e-4, betas=(0.5, 0.9), weight_decay=0.0)
        try:
            adv_lo, adv_hi = (int(x) for x in a.adv_positions.split(":"))
        except ValueError:
            raise SystemExit(f"--adv-positions wants FIRST:LAST frames, got {a.adv_positions!r}") from None
    adv_step0 = step   # the predictor sees the critic from adv_step0 + adv_warmup on
    if critic is not None and ck and "critic" in ck:
        critic.load_state_dict(ck["critic"])
        opt_c.load_state_dict(ck["critic_optimizer"])
        adv_step0 -= a.adv_warmup   # a resumed critic is warm already

    def loss_fn(pred: torch.Tensor, feats: torch.Tensor, lost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = model.normalize(feats)
        v = feats[..., 19].clamp(0.2, 1.0)
        if a.loss == "l1":
            return weighted_l1(pred, z, lost, v, a.received_weight)
        return masked_mean(band(pred, z, v), lost, a.received_weight, a.early_frames, a.late_weight)

    dev = torch.from_numpy(dev_set(a.seq, a.dev_files, a.data / "plc_dev.npy"))
    # What the receiver observes: the same dev speech after Opus at 24 kb/s.
    dev_dec = torch.from_numpy(dev_set(a.seq, a.dev_files, a.data / "plc_dev_dec24.npy", bitrate=24000))
    dev_lost = torch.from_numpy(ge_masks(len(dev), a.seq // 2, np.random.default_rng(1234)))
    dev_played = adv_frames(dev_lost, 2, 8)
    log(f"params {model.param_count()} MFLOPS {model.flops_per_second() / 1e6:.2f} steps/epoch {steps_per_epoch} "
        f"dev seqs {len(dev)} args {json.dumps({k: str(v) for k, v in vars(a).items()})}")

    @torch.no_grad()
    def validate() -> tuple[float, float]:
        """Old weighted-L1 metric (comparable across losses) on lost frames, the received frames
        observed after Opus (as at run time); logs band-domain terms for clean and decoded inputs."""
        model.eval()
        z = model.normalize(dev)
        v = dev[..., 19].clamp(0.2, 1.0)
        res = {}
        for src, obs in (("clean", dev), ("opus24", dev_dec)):
            pred, rep = model.run(dev, dev_lost, obs), repeat_baseline(model.normalize(obs), dev_lost)
            res[src] = (weighted_l1(pred, z, dev_lost, v, a.received_weight)[1],
                        weighted_l1(rep, z, dev_lost, v, a.received_weight)[1])
            for name, p in (("model", pred), ("repeat", rep)):
                t = band.frame_terms(p, z)
                parts = {k: float(masked_mean(t[k], dev_lost, 0.0)[1]) for k in ("band", "over", "pitch", "corr")}
                # The frames the receiver's vocoder plays (20-80 ms into a loss).
                played_band = float((t["band"] * dev_played).sum() / dev_played.sum().clamp_min(1.0))
                log(f"  {name} on lost frames, {src} inputs: band L1 {10 * parts['band']:.2f} dB, over-estimate "
                    f"{10 * parts['over']:.2f} dB, pitch {parts['pitch']:.3f}, corr {parts['corr']:.3f}; "
                    f"band L1 at 20-80 ms {10 * played_band:.2f} dB")
        model.train()
        return float(res["opus24"][0]), float(res["opus24"][1])

    def save() -> None:
        atomic_save({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "step": step, "epoch": epoch,
            "rng": rng_state(rng),
            **({"critic": critic.state_dict(), "critic_optimizer": opt_c.state_dict()} if critic is not None else {}),
            "config": {"model": cfg.to_dict(), "train": {k: str(v) for k, v in vars(a).items()}},
        }, latest)

    lo, base = validate()
    log(f"validation at step {step}: lost-frame loss, opus24 inputs, {lo:.4f} (repeat-last baseline {base:.4f})")
    last_ckpt, t_log = time.time(), time.time()
    acc_t, acc_l, nacc = 0.0, 0.0, 0
    acc_c = acc_g = 0.0
    while epoch < a.epochs:
        feats, obs = sampler.batch(a.batch)
        lost = torch.from_numpy(ge_masks(a.batch, a.seq // 2, rng))
        pred = model.run(feats, lost, obs)
        tr, lo = loss_fn(pred, feats, lost)
        if critic is not None:
            z = model.normalize(feats)
            wf = adv_frames(lost, adv_lo, adv_hi)
            nf = wf.sum().clamp_min(1.0)
            # Critic: real sequences -> 1, played sequences -> 0, scored on the judged frames only.
            d_real = critic(z, lost)
            d_fake = critic(played(pred.detach(), z, lost), lost)
            lc = (((d_real - 1.0) ** 2 + d_fake ** 2) * wf).sum() / nf
            opt_c.zero_grad(set_to_none=True)
            lc.backward()
            opt_c.step()
            acc_c += float(lc.detach())
            if step - adv_step0 >= a.adv_warmup:
                lg = (((critic(played(pred, z, lost), lost) - 1.0) ** 2) * wf).sum() / nf
                tr = tr + a.adv_weight * lg
                acc_g += float(lg.detach())
        opt.zero_grad(set_to_none=True)
        tr.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        acc_t += float(tr.detach())
        acc_l += float(lo.detach())
        nacc += 1
        if step % 50 == 0:
            el = time.time() - t_log
            adv = f" critic {acc_c / nacc:.4f} adv {acc_g / nacc:.4f}" if critic is not None else ""
            log(f"step {step} epoch {epoch} loss {acc_t / nacc:.4f} lost {acc_l / nacc:.4f}{adv} "
                f"lr {sched.get_last_lr()[0]:.2e} {el / nacc:.2f} s/step")
            acc_t, acc_l, nacc, t_log = 0.0, 0.0, 0, time.time()
            acc_c = acc_g = 0.0
        if step % steps_per_epoch == 0:
            epoch += 1
            lo, base = validate()
            log(f"epoch {epoch} validation: lost-frame loss, opus24 inputs, {lo:.4f} (repeat-last baseline {base:.4f})")
        if time.time() - last_ckpt > a.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
        if a.max_steps and step >= a.max_steps:
            break
    save()
    lo, base = validate()
    log(f"finished at step {step}: lost-frame loss, opus24 inputs, {lo:.4f} (repeat-last baseline {base:.4f})")


if __name__ == "__main__":
    main()
