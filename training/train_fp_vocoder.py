"""Train the frame-parallel source-filter vocoder (``fp_vocoder_model.FPVocoder``).

Every step synthesises whole sequences in parallel over time (frame-rate
network, cumulative-phase pulse train, FFT filtering): there is no feedback
loop, so the cost per audio second is a few batched FFTs and the network runs
as well on a GPU at large batch as on one CPU thread.

Sequences come from ``training/data/vocoder_{k}.npz`` (``prepare_data.py``:
the clean training speech and augmented copies, features from
``edge_dred.dsp.features.compute_features`` of exactly that signal, so they match
the runtime).  Each sequence is ``--warmup-frames`` frames that fill the
network's and the filters' history, then ``--seq-frames`` frames the losses
see.  The pulse phase at the first sample is drawn at random (at run time it is
taken from the real signal).  Loss: multi-resolution STFT (spectral
convergence + log magnitude, FFT 256..2048) on the pre-emphasised signal, plus
``--env-weight`` times the L1 distance of the output's log10 band energies
from the target's, measured exactly as the features are (sine window of 320,
frames aligned with the features').

Logs (stdout and ``<run-dir>/log.txt``) give the losses, the learning rate and
the throughput in audio seconds per CPU second of this process (and per wall
second).  Resumable (``--resume``): full state in ``<run-dir>/latest_full.pt``,
weights-only ``<ckpt-dir>/latest.pt``; SIGTERM saves and exits.

Usage::

    setsid nohup nice -n 10 .venv/bin/python training/train_fp_vocoder.py --resume \
        > training/runs/fp_vocoder/stdout.txt 2>&1 < /dev/null &
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
sys.path.insert(0, str(HERE.parent))
from common import load_resume, open_log, restore_full_state, rng_state, save_checkpoint, StepControl  # noqa: E402
from fp_vocoder_model import FRAME, FS, NOISE_AHEAD, PREEMPH, FPVocoder, FPVocoderConfig, TorchEnvelopePostfilter  # noqa: E402
from train_vocoder import mr_stft_loss  # noqa: E402  (one multi-resolution STFT loss for both vocoders)

from edge_dred.dsp.features import band_energies_from_cepstrum, band_weights  # noqa: E402

DATA = HERE / "data"
CKPT_DIR = HERE / "checkpoints" / "fp_vocoder"
RUN_DIR = HERE / "runs" / "fp_vocoder"


class Sampler:
    """Random (features, pre-emphasised signal) sequences from the ``vocoder_{k}.npz`` copies."""

    def __init__(self, data_dir: Path, n_frames: int, rng: np.random.Generator) -> None:
        self.data_dir, self.n, self.rng = data_dir, n_frames, rng
        self.names: list[str] = []
        self.copies: list[tuple[np.ndarray, np.ndarray]] = []
        self.refresh()
        if not self.copies:
            raise SystemExit(f"no vocoder_*.npz in {data_dir}; run training/prepare_data.py first")

    def refresh(self) -> list[str]:
        """Load copies that appeared since the last call (data preparation may still run)."""
        new = []
        for p in sorted(self.data_dir.glob("vocoder_*.npz")):
            if ".tmp" in p.name or p.name in self.names:
                continue
            d = np.load(p)
            self.copies.append((d["pcm"], d["feats"]))
            offs = d["offsets"]
            self.names.append(p.name)
            new.append(p.name)
            c = len(self.copies) - 1
            rows = [(c, int(a) + 1, int(b - a) - self.n - 1) for a, b in zip(offs[:-1], offs[1:]) if b - a > self.n + 1]
            self.starts = np.concatenate([getattr(self, "starts", np.zeros((0, 3), np.int64)), np.array(rows, np.int64)])
        if new:
            w = self.starts[:, 2].astype(np.float64)
            self.p = w / w.sum()
        return new

    @property
    def clean_frames(self) -> int:
        return int(len(self.copies[0][1]))

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        f = np.concatenate([c[1] for c in self.copies])
        return f.mean(0).astype(np.float32), (f.std(0) + 1e-3).astype(np.float32)

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(len(self.starts), size=b, p=self.p)
        feats = np.empty((b, self.n, 20), np.float32)
        sig = np.empty((b, self.n * FRAME), np.float32)
        for j, i in enumerate(idx):
            c, first, n = self.starts[i]
            s = first + int(self.rng.integers(0, n))
            pcm, f = self.copies[c]
            feats[j] = f[s : s + self.n]
            x = pcm[s * FRAME - 1 : (s + self.n) * FRAME].astype(np.float32) / 32768.0
            sig[j] = x[1:] - PREEMPH * x[:-1]
        return torch.from_numpy(feats), torch.from_numpy(sig)


class BandAnalysis(torch.nn.Module):
    """log10 band energies of a pre-emphasised float signal, as ``edge_dred.dsp.features`` measures them."""

    def __init__(self) -> None:
        super().__init__()
        w = band_weights()
        self.register_buffer("wn", torch.from_numpy((w / w.sum(1, keepdims=True)).T).float())  # (161, 18)
        self.register_buffer("win", torch.sin(torch.pi * (torch.arange(2 * FRAME) + 0.5) / (2 * FRAME)))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, n) -> (B, n/160 - 1, 18): frame k's window is ``e[160 k : 160 k + 320]``."""
        seg = e.unfold(1, 2 * FRAME, FRAME) * 32768.0
        spec = torch.fft.rfft(seg * self.win)
        p = (spec.real**2 + spec.imag**2) / float((self.win**2).sum())
        return torch.log10(p @ self.wn + 1.0)


class LoudnessDisturbance(torch.nn.Module):
    """A PESQ-like disturbance between output and target (both pre-emphasised, same length).

    32 ms Hann frames (hop 16 ms) of the de-emphasised power spectrum, averaged over half-Bark
    groups of bins, normalised by the target's mean band power over the sequence, compressed
    to loudness ``P ** 0.23``; per band the difference beyond a masking allowance of a quarter
    of the smaller loudness, counted ``1 + asym`` times where the output is louder (PESQ
    weighs added energy more than missing energy); L2 over bands, mean over frames.
    """

    def __init__(self, asym: float = 1.0) -> None:
        super().__init__()
        nfft = 512
        f = np.arange(nfft // 2 + 1) * FS / nfft
        z = 13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)
        g = np.floor(2.0 * z).astype(int)
        groups = np.zeros((nfft // 2 + 1, g.max() + 1), np.float32)
        groups[np.arange(len(g)), g] = 1.0
        groups = groups[:, groups.sum(0) > 0]
        w = 2 * np.pi * f / FS
        deemph = 1.0 / np.abs(1.0 - PREEMPH * np.exp(-1j * w)) ** 2
        self.register_buffer("groups", torch.from_numpy(groups * deemph[:, None] / groups.sum(0)).float())
        self.register_buffer("win", torch.hann_window(nfft))
        self.nfft, self.asym = nfft, asym

    def bands(self, e: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(e.unfold(1, self.nfft, self.nfft // 2) * self.win)
        return (spec.real**2 + spec.imag**2) @ self.groups

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        py, px = self.bands(y), self.bands(x)
        ref = px.mean((1, 2), keepdim=True) + 1e-9
        ly, lx = (py / ref + 1e-4) ** 0.23, (px / ref + 1e-4) ** 0.23
        d = torch.relu((ly - lx).abs() - 0.25 * torch.minimum(ly, lx))
        d = d * (1.0 + self.asym * (ly > lx).float())
        return torch.sqrt((d * d).mean(-1) + 1e-8).mean()


def periodicity(e: torch.Tensor, period: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised correlation of each 20 ms window with itself one pitch period earlier.

    ``e`` (B, n) signal whose first 3 frames are history; ``period`` (B, K) the features' periods
    of the K = n/160 - 3 frames after them.  Frame k's window is the features' analysis window
    ``e[160 (k + 2) : 160 (k + 4)]`` (ending where the frame ends), its delayed copy reaches back
    up to 267 samples more.  Returns (correlation (B, K), window energy (B, K)).
    """
    b, n = e.shape
    k = n // FRAME - 3
    lag = period.round().long().clamp(32, 267)[:, :k]  # (B, K)
    end = (torch.arange(k, device=e.device) + 4) * FRAME
    pos = end[None, :, None] - 2 * FRAME + torch.arange(2 * FRAME, device=e.device)[None, None, :]  # (1, K, 320)
    pos = pos.expand(b, k, 2 * FRAME)
    cur = torch.gather(e, 1, pos.reshape(b, -1)).reshape(b, k, 2 * FRAME)
    old = torch.gather(e, 1, (pos - lag[:, :, None]).reshape(b, -1)).reshape(b, k, 2 * FRAME)
    ec, eo = (cur * cur).sum(-1), (old * old).sum(-1)
    floor = 2 * FRAME * 1e-8  # about one int16 LSB^2 per sample
    return (cur * old).sum(-1) / torch.sqrt((ec + floor) * (eo + floor)), ec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the frame-parallel source-filter vocoder")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--seq-frames", type=int, default=80, help="frames the losses see per sequence")
    ap.add_argument("--warmup-frames", type=int, default=6, help="frames before them (network and filter history)")
    ap.add_argument("--lr", type=float, default=4e-4, help="2e-3 moved the log-magnitude corrections by several dB a step and the output collapsed to noise")
    ap.add_argument("--lr-decay", type=float, default=1e-4, help="lr = lr0 / (1 + decay * step)")
    ap.add_argument("--warmup-steps", type=int, default=0,
                    help="linear lr ramp over this many steps of this run (fresh Adam moments take full-size steps)")
    ap.add_argument("--env-weight", type=float, default=1.0)
    ap.add_argument("--period-weight", type=float, default=2.0,
                    help="L1 between output and target correlation at the features' pitch lag, per 20 ms window "
                         "(energy-weighted): magnitude losses alone let voiced frames drift towards noise")
    ap.add_argument("--stft-sizes", default="256,512,1024,2048",
                    help="MR-STFT FFT sizes; windows shorter than two pitch periods penalise periodic output "
                         "whose pulses do not fall where the target's do (the phase is free), so they are left out")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1_000_000, help="stop at this global step")
    ap.add_argument("--init", type=Path, default=None, help="start from these weights (fresh optimizer, step 0)")
    ap.add_argument("--noise-norm", action="store_true",
                    help="with --init: turn the noise normalisation on for a model trained without it")
    ap.add_argument("--pf-envelope", type=float, default=0.0,
                    help="compute the losses through the runtime's envelope postfilter at this strength "
                         "(0: on the raw output), so the model learns with the correction it will get")
    ap.add_argument("--loud-weight", type=float, default=0.0,
                    help="weight of a PESQ-like loudness disturbance (LoudnessDisturbance) added to the loss")
    StepControl.add_arguments(ap, seed=1, snapshot_every=500, data=DATA, ckpt_dir=CKPT_DIR, run_dir=RUN_DIR)
    a = ap.parse_args(argv)

    t_start = time.time()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    log = open_log(a.run_dir)
    ck, ck_path = load_resume(a.ckpt_dir, a.run_dir) if a.resume else (None, None)
    if ck is None and a.init is not None:
        ck, ck_path = torch.load(a.init, map_location="cpu", weights_only=False), a.init
        ck = {"model": ck["model"], "config": ck["config"], "step": 0, "epoch": 0}
        if a.noise_norm:  # the option adds no weights: an older model starts with it on
            ck["config"] = {"model": {**FPVocoderConfig.from_dict(ck["config"]["model"]).to_dict(), "noise_norm": True}}
    cfg = FPVocoderConfig.from_dict(ck["config"]["model"]) if ck else FPVocoderConfig()
    model = FPVocoder(cfg).to(dev)
    bands = BandAnalysis().to(dev)
    loud = LoudnessDisturbance().to(dev) if a.loud_weight > 0 else None
    pf = TorchEnvelopePostfilter(a.pf_envelope).to(dev) if a.pf_envelope > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.8, 0.99), weight_decay=0.0)
    step0 = int(ck["step"]) if ck and "optimizer" not in ck else 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(a.warmup_steps, 1)) / (1.0 + a.lr_decay * (s + step0)))
    rng = np.random.default_rng(a.seed)
    n_frames = a.warmup_frames + a.seq_frames
    sizes = tuple(int(v) for v in a.stft_sizes.split(","))
    sampler = Sampler(a.data, n_frames, rng)
    step, epoch = 0, 0
    if ck:
        model.load_state_dict(ck["model"])
        step, epoch = int(ck["step"]), int(ck.get("epoch", 0))
        full = restore_full_state(ck, rng, {"optimizer": opt, "scheduler": sched})
        log(f"resumed from {ck_path} at step {step}{'' if full else ' (weights only: fresh optimizer)'}")
    else:
        torch.manual_seed(a.seed)
        random.seed(a.seed)
        mean, std = sampler.feature_stats()
        model.feat_mean.copy_(torch.from_numpy(mean))
        model.feat_std.copy_(torch.from_numpy(std))
    steps_per_epoch = max(1, sampler.clean_frames // (a.batch * a.seq_frames))
    log(f"params {model.param_count()} GFLOPS {model.flops_per_second() / 1e9:.4f} steps/epoch {steps_per_epoch} "
        f"data {sampler.names} args {json.dumps({k: str(v) for k, v in vars(a).items()})}")

    def save() -> None:
        obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "step": step, "epoch": epoch, "rng": rng_state(rng),
               "config": {"model": cfg.to_dict(), "train": {k: str(v) for k, v in vars(a).items()}}}
        save_checkpoint(obj, a.ckpt_dir, a.run_dir, ("model", "step", "epoch", "config"))

    ctl = StepControl(a, t_start, save, log)
    acc: dict[str, float] = {}
    nacc = 0
    t_wall, t_cpu = time.time(), time.process_time()
    a0 = a.warmup_frames * FRAME
    model.train()
    while step < a.steps:
        feats, sig = (x.to(dev) for x in sampler.batch(a.batch))
        c0 = torch.rand(a.batch, device=dev)
        noise = torch.randn(sig.shape[0], sig.shape[1] + NOISE_AHEAD, device=dev)  # the last knot reads ahead
        y = model.synthesize(feats, c0, noise)
        if pf is not None:
            tgt = torch.from_numpy(band_energies_from_cepstrum(feats.cpu().numpy()) + 1.0).float().to(dev)
            y = pf(y, tgt)
        loss, parts = mr_stft_loss(y[:, a0:], sig[:, a0:], sizes)
        if a.env_weight > 0:
            k0 = a.warmup_frames  # window k spans [160 k, 160 k + 320): frames from the warm-up's end
            env = (bands(y[:, k0 * FRAME - FRAME:]) - bands(sig[:, k0 * FRAME - FRAME:])).abs().mean()
            loss = loss + a.env_weight * env
            parts["env_db"] = 10.0 * float(env.detach())
        if loud is not None:
            ld = loud(y[:, a0:], sig[:, a0:])
            loss = loss + a.loud_weight * ld
            parts["loud"] = float(ld.detach())
        if a.period_weight > 0:
            # windows of the frames after the warm-up; their lag reaches back into it
            py, _ = periodicity(y[:, a0 - 3 * FRAME:], feats[:, a.warmup_frames:, 18])
            pt, et = periodicity(sig[:, a0 - 3 * FRAME:], feats[:, a.warmup_frames:, 18])
            w = et / (et.sum(1, keepdim=True) + 1e-9)
            per = ((py - pt).abs() * w).sum(1).mean()
            loss = loss + a.period_weight * per
            parts["period"] = float(per.detach())
            parts["p_out"] = float((py.detach() * w).sum(1).mean())
            parts["p_tgt"] = float((pt * w).sum(1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        if torch.isfinite(gn):
            opt.step()
        else:
            log(f"non-finite gradient at step {step}; update skipped")
        sched.step()
        step += 1
        parts["loss"] = float(loss.detach())
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        nacc += 1
        if step % a.log_every == 0:
            wall, cpu = time.time() - t_wall, time.process_time() - t_cpu
            audio_s = nacc * a.batch * n_frames * FRAME / FS
            msg = " ".join(f"{k} {v / nacc:.4f}" for k, v in acc.items())
            log(f"step {step} epoch {epoch} {msg} lr {sched.get_last_lr()[0]:.2e} {wall / nacc:.2f} s/step "
                f"{audio_s / max(cpu, 1e-9):.1f} audio-s/CPU-s {audio_s / wall:.1f} audio-s/s")
            acc, nacc, t_wall, t_cpu = {}, 0, time.time(), time.process_time()
        if step % steps_per_epoch == 0:
            epoch += 1
        if ctl.after_step(step, lambda: {"model": model.state_dict(), "config": {"model": cfg.to_dict()},
                                         "step": step}, sampler.refresh):
            break
    save()
    log(f"finished at step {step} epoch {epoch}")


if __name__ == "__main__":
    main()
