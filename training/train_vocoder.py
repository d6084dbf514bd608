"""Train the FARGAN-like vocoder (``vocoder_model.Vocoder``) mostly free-running.

Each training sequence starts after real audio, as a loss does at run time:
320 samples of real (pre-emphasised) signal fill the history, the first
``--n-teacher`` frames are teacher-forced (the real signal is fed back) to
settle the GRU states, and the remaining frames run free: the model's own
output is fed back as the previous subframe and as the pitch-delayed
excitation, with gradients through the loop.  The loss (multi-resolution STFT:
spectral convergence + log magnitude, FFT sizes 64..1024) is computed on the
free-running part only.  The first ``--tf-warmup-steps`` steps are fully
teacher-forced to learn the signal structure quickly.

Resumable: ``--resume`` continues from ``training/runs/vocoder/latest_full.pt``
(model, optimizer, scheduler, step, epoch, RNG states, config), or from the
weights-only ``training/runs/vocoder/ck/latest.pt`` with a fresh
optimizer; both written atomically every ``--ckpt-minutes`` (``common.py``).  Progress goes to stdout and
``training/runs/vocoder/log.txt``.

Usage::

    nohup .venv/bin/python training/train_vocoder.py --epochs 100 --resume \
        > training/runs/vocoder/stdout.txt 2>&1 &
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
sys.path.insert(0, str(HERE))
from common import load_resume, open_log, restore_full_state, rng_state, save_checkpoint, StepControl  # noqa: E402
from vocoder_model import FRAME, HIST, PREEMPHASIS, Vocoder, VocoderConfig  # noqa: E402

DATA = HERE / "data"
CKPT_DIR = HERE / "runs" / "vocoder" / "ck"
RUN_DIR = HERE / "runs" / "vocoder"
FS = 16000


class SequenceSampler:
    """Random training sequences from the ``vocoder_{i}.npz`` copies.

    A sequence is (feats (T+2, 20) starting 2 frames early for the causal
    conv, pre-emphasised float signal (HIST + T*160)) starting at a frame
    ``s`` with ``s >= 3`` inside one file so history never crosses files.
    """

    def __init__(self, data_dir: Path, seq_frames: int, rng: np.random.Generator, dred_p: float = 0.0) -> None:
        self.data_dir = data_dir
        self.t = seq_frames
        self.rng = rng
        # Share of sequences conditioned on DRED-decoded features (``dred_feats_{i}.npz`` of
        # ``prepare_dred_features.py``) where a copy has them; the target stays the real signal.
        self.dred_p = float(dred_p)
        self.names: list[str] = []
        self.copies: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.dred: list[np.ndarray | None] = []
        self.refresh()
        if not self.copies:
            raise SystemExit(f"no vocoder_*.npz in {data_dir}; run training/prepare_data.py first")
        self.clean_frames = int(self.copies[0][2][-1])

    def refresh(self) -> list[str]:
        """Load copies that appeared since the last call (data prep may still run)."""
        new = []
        for p in sorted(self.data_dir.glob("vocoder_*.npz")):
            if ".tmp" in p.name or p.name in self.names:
                continue
            d = np.load(p)
            self.copies.append((d["pcm"], d["feats"], d["offsets"]))
            twin = self.data_dir / p.name.replace("vocoder_", "dred_feats_")
            self.dred.append(np.load(twin)["feats"] if self.dred_p > 0 and twin.exists() else None)
            if self.dred[-1] is not None and self.dred[-1].shape != d["feats"].shape:
                raise SystemExit(f"{twin}: shape {self.dred[-1].shape} does not match {p} {d['feats'].shape}")
            self.names.append(p.name)
            new.append(p.name)
        if new:
            starts = []  # (copy, first valid start frame, number of valid starts) per file
            for c, (_, _, offs) in enumerate(self.copies):
                for a, b in zip(offs[:-1], offs[1:]):
                    n = int(b - a) - self.t - 3
                    if n > 0:
                        starts.append((c, int(a) + 3, n))
            self.starts = np.array(starts, dtype=np.int64)
            w = self.starts[:, 2].astype(np.float64)
            self.p = w / w.sum()
        return new

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        f = np.concatenate([c[1] for c in self.copies])
        return f.mean(0).astype(np.float32), (f.std(0) + 1e-3).astype(np.float32)

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(len(self.starts), size=b, p=self.p)
        feats = np.empty((b, self.t + 2, 20), np.float32)
        sig = np.empty((b, HIST + self.t * FRAME), np.float32)
        for j, i in enumerate(idx):
            c, first, n = self.starts[i]
            s = first + int(self.rng.integers(0, n))
            pcm, f, _ = self.copies[c]
            if self.dred[c] is not None and self.rng.random() < self.dred_p:
                f = self.dred[c]
            feats[j] = f[s - 2 : s + self.t]
            a = s * FRAME - HIST
            x = pcm[a - 1 : s * FRAME + self.t * FRAME].astype(np.float32) / 32768.0
            sig[j] = x[1:] - PREEMPHASIS * x[:-1]
        return torch.from_numpy(feats), torch.from_numpy(sig)


def stft_mag(x: torch.Tensor, n: int) -> torch.Tensor:
    win = torch.hann_window(n, device=x.device)
    spec = torch.stft(x, n, hop_length=n // 4, win_length=n, window=win, center=False, return_complex=True)
    return torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)


def mr_stft_loss(y: torch.Tensor, t: torch.Tensor, sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1."""
    sc_tot, lm_tot = 0.0, 0.0
    for n in sizes:
        ym, tm = stft_mag(y, n), stft_mag(t, n)
        sc = torch.linalg.norm(tm - ym, dim=(1, 2)) / (torch.linalg.norm(tm, dim=(1, 2)) + 1e-5)
        lm = (torch.log(ym.clamp_min(1e-5)) - torch.log(tm.clamp_min(1e-5))).abs().mean()
        sc_tot = sc_tot + sc.mean()
        lm_tot = lm_tot + lm
    k = len(sizes)
    sc_tot, lm_tot = sc_tot / k, lm_tot / k
    loss = sc_tot + lm_tot
    return loss, {"sc": float(sc_tot.detach()), "logmag": float(lm_tot.detach())}


def sync_power(y: torch.Tensor, sub: int = 40, eps: float = 1e-4) -> torch.Tensor:
    """Power of the subframe-synchronous average of ``y`` (B, N), per sequence.

    Every ``sub``-sample block is scaled to unit RMS and the blocks are averaged
    position by position.  Real speech gives nearly nothing here (its waveform is
    not locked to the 2.5 ms subframe grid: ~0.001-0.01), whereas a signal network
    that repeats one fixed 40-sample pattern in quiet passages -- a 400 Hz buzz with
    all its harmonics, which the spectral losses barely see at low level -- gives up
    to 1.  ``N`` must be a multiple of ``sub`` and start on a subframe boundary.
    """
    b = y.reshape(y.shape[0], -1, sub)
    rms = torch.sqrt((b**2).mean(-1, keepdim=True) + eps**2)
    return ((b / rms).mean(1) ** 2).mean(-1)


def free_running_batch(
    model: Vocoder, feats: torch.Tensor, sig: torch.Tensor, n_teacher: int, n_skip: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one batch from ``SequenceSampler.batch`` the way training does.

    The history is filled with the first ``HIST`` real samples, the conv history
    from the 2 leading feature frames, the first ``n_teacher`` frames are
    teacher-forced and the rest run free (gradients flow through the loop).

    Returns
    -------
    (y, target) : synthesised and real pre-emphasised signal (B, N) from frame
        ``n_skip`` on (the part the losses see).
    """
    st = model.init_state(feats.shape[0], feats.device)
    _, st["cond_hist"] = model.cond_frames(feats[:, :2], None)
    st["hist"] = sig[:, :HIST]
    target = sig[:, HIST:]
    y = model.run(feats[:, 2:], st, target, n_teacher=n_teacher)
    a0 = n_skip * FRAME
    return y[:, a0:], target[:, a0:]


def spectral_sync_loss(y: torch.Tensor, t: torch.Tensor, sync_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """MR-STFT loss plus ``sync_weight`` times the excess subframe-buzz power over the target's."""
    loss, parts = mr_stft_loss(y, t)
    if sync_weight > 0:
        sp = torch.relu(sync_power(y) - sync_power(t)).mean()
        loss = loss + sync_weight * sp
        parts["sync"] = float(sp.detach())
    return loss, parts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the FARGAN-like vocoder")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-frames", type=int, default=40, help="frames per sequence incl. teacher-forced ones")
    ap.add_argument("--n-teacher", type=int, default=3)
    ap.add_argument("--tf-warmup-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-decay", type=float, default=2e-4, help="lr = lr0 / (1 + decay * step)")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--sync-weight", type=float, default=5.0,
                    help="weight of the subframe-buzz penalty relu(sync_power(y) - sync_power(target)); 0 = off")
    StepControl.add_arguments(ap, seed=1, snapshot_every=500, data=DATA, ckpt_dir=CKPT_DIR, run_dir=RUN_DIR)
    a = ap.parse_args(argv)

    t_start = time.time()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    log = open_log(a.run_dir)
    ck, ck_path = load_resume(a.ckpt_dir, a.run_dir) if a.resume else (None, None)
    cfg = VocoderConfig.from_dict(ck["config"]["model"]) if ck else VocoderConfig()
    model = Vocoder(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.8, 0.95), weight_decay=0.0)
    # A slim checkpoint has no scheduler state: its step offsets the decay instead.
    step0 = int(ck["step"]) if ck and "optimizer" not in ck else 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + a.lr_decay * (s + step0)))
    rng = np.random.default_rng(a.seed)
    sampler = SequenceSampler(a.data, a.seq_frames, rng)
    steps_per_epoch = max(1, sampler.clean_frames // (a.batch * (a.seq_frames - a.n_teacher)))
    step, epoch = 0, 0
    if ck:
        model.load_state_dict(ck["model"])
        step, epoch = ck["step"], ck["epoch"]
        full = restore_full_state(ck, rng, {"optimizer": opt, "scheduler": sched})
        log(f"resumed from {ck_path} at step {step} epoch {epoch}{'' if full else ' (weights only: fresh optimizer)'}")
    else:
        torch.manual_seed(a.seed)
        random.seed(a.seed)
        mean, std = sampler.feature_stats()
        model.feat_mean.copy_(torch.from_numpy(mean))
        model.feat_std.copy_(torch.from_numpy(std))
    log(f"params {model.param_count()} GFLOPS {model.flops_per_second() / 1e9:.3f} "
        f"steps/epoch {steps_per_epoch} args {json.dumps({k: str(v) for k, v in vars(a).items()})}")

    def save() -> None:
        obj = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "epoch": epoch,
            "rng": rng_state(rng),
            "config": {"model": cfg.to_dict(), "train": {k: str(v) for k, v in vars(a).items()}},
        }
        save_checkpoint(obj, a.ckpt_dir, a.run_dir, ("model", "step", "epoch", "config"))

    ctl = StepControl(a, t_start, save, log)
    acc: dict[str, float] = {}
    nacc = 0
    t_log = time.time()
    model.train()
    while epoch < a.epochs:
        feats, sig = (x.to(dev) for x in sampler.batch(a.batch))
        n_pre = a.n_teacher
        teacher_all = step < a.tf_warmup_steps
        y, target = free_running_batch(model, feats, sig, a.seq_frames if teacher_all else n_pre, n_pre)
        loss, parts = spectral_sync_loss(y, target, a.sync_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        if torch.isfinite(gn):
            opt.step()
        else:  # skip the update rather than poison the weights
            log(f"non-finite gradient at step {step}; update skipped")
        sched.step()
        step += 1
        parts["loss"] = float(loss.detach())
        parts["gnorm"] = float(gn)
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        nacc += 1
        if step % 20 == 0:
            el = time.time() - t_log
            audio_s = nacc * a.batch * a.seq_frames * FRAME / FS
            msg = " ".join(f"{k} {v / nacc:.4f}" for k, v in acc.items())
            log(f"step {step} epoch {epoch} {'TF ' if teacher_all else ''}{msg} lr {sched.get_last_lr()[0]:.2e} "
                f"{el / nacc:.2f} s/step {audio_s / el:.1f} audio-s/s")
            acc, nacc, t_log = {}, 0, time.time()
        if step % steps_per_epoch == 0:
            epoch += 1
            log(f"epoch {epoch} done at step {step}")
        if ctl.after_step(step, lambda: {"model": model.state_dict(), "config": {"model": cfg.to_dict()},
                                         "step": step}, sampler.refresh):
            break
    save()
    log(f"finished at step {step} epoch {epoch}")


if __name__ == "__main__":
    main()
