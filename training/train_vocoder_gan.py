"""Short adversarial fine-tune of the spectrally pre-trained vocoder.

After the MR-STFT pre-training (``train_vocoder.py``) the vocoder gets the
envelope right but its voiced excitation is noisy.  Following the FARGAN recipe
(Valin et al., 2024: spectral pre-training, then a short adversarial phase that
keeps the spectral loss as a regulariser) this script fine-tunes it against
small multi-resolution spectrogram discriminators on the free-running part of
the training sequences (same sampler and free-running set-up as
``train_vocoder.py``).

Losses (least-squares GAN)
--------------------------
* discriminator: ``mean_k [(D_k(real) - 1)^2 + D_k(fake)^2] / 2``
* generator: ``spec_w * MR-STFT + sync_w * subframe-buzz excess
  + adv_w * mean_k (D_k(fake) - 1)^2 + fm_w * feature matching``, where the
  feature matching is the L1 distance between the discriminators' hidden
  activations on fake and real relative to the real ones' mean magnitude,
  averaged over discriminators and layers.  Defaults spec 1, sync 5 (the
  pre-training values, so the objective it was trained on stays in), adv 1,
  fm 1.  The discriminator learns 4x faster than the generator (1e-4 vs 4e-4):
  at 1e-4 it barely separated real from fake after 100 steps.

By default the conditioning network and the subframe gain are frozen (as in
FARGAN's adversarial phase): the GAN is meant to change the fine structure of
the excitation, not the envelope and level that the spectral loss already
learnt.  The first ``--d-warmup-steps`` steps train only the discriminator so
the generator is not pushed around by a random one.

Outputs: resumable ``training/runs/vocoder_gan/latest_full.pt`` (model,
discriminator, both optimizers, step, RNG states, config) and the committed
weights-only ``training/checkpoints/vocoder_gan/latest.pt`` every
``--ckpt-minutes`` and on exit (SIGTERM, ``--max-minutes``, ``--max-steps``);
model-only snapshots and ``log.txt`` in ``training/runs/vocoder_gan/``.

Usage::

    setsid nohup .venv/bin/python training/train_vocoder_gan.py --resume \\
        > training/runs/vocoder_gan/stdout.txt 2>&1 < /dev/null &
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
from torch import nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_vocoder import (  # noqa: E402
    DATA,
    FS,
    SequenceSampler,
    free_running_batch,
    spectral_sync_loss,
    stft_mag,
)
from common import atomic_save, load_resume, open_log, restore_full_state, rng_state, save_checkpoint, StepControl  # noqa: E402
from vocoder_model import FRAME, Vocoder, VocoderConfig  # noqa: E402

INIT = HERE / "checkpoints" / "vocoder_gan" / "latest.pt"
CKPT_DIR = HERE / "checkpoints" / "vocoder_gan"
RUN_DIR = HERE / "runs" / "vocoder_gan"


class SpecDisc(nn.Module):
    """Discriminator on the log-magnitude STFT at one resolution.

    2-D convs over (time, frequency); strides go along frequency first so the
    cost stays low on a CPU while the time resolution (what separates a clean
    harmonic from a noisy one frame to frame) is kept until the last layers.
    """

    def __init__(self, n_fft: int, channels: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        self.n_fft = n_fft
        c1, c2, c3 = channels
        self.convs = nn.ModuleList([
            nn.Conv2d(1, c1, (3, 7), stride=(1, 2), padding=(1, 3)),
            nn.Conv2d(c1, c2, (3, 7), stride=(1, 2), padding=(1, 3)),
            nn.Conv2d(c2, c3, (3, 7), stride=(2, 2), padding=(1, 3)),
            nn.Conv2d(c3, c3, (3, 3), padding=(1, 1)),
        ])
        self.out = nn.Conv2d(c3, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # Scaled log magnitude: roughly unit range for speech-level signals.
        h = torch.log(stft_mag(x, self.n_fft).clamp_min(1e-4)) / 4.0
        h = h.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return feats, self.out(h)


class MultiResDisc(nn.Module):
    """One ``SpecDisc`` per FFT size."""

    def __init__(self, sizes: tuple[int, ...] = (128, 256, 512), channels: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        self.channels = tuple(channels)
        self.discs = nn.ModuleList([SpecDisc(n, self.channels) for n in self.sizes])

    def forward(self, x: torch.Tensor) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        return [d(x) for d in self.discs]

    def config(self) -> dict:
        return {"sizes": list(self.sizes), "channels": list(self.channels)}


def disc_loss(real: list, fake: list) -> tuple[torch.Tensor, float, float]:
    """LSGAN discriminator loss; also the mean scores on real and fake (for the log)."""
    loss = sum(((r[1] - 1) ** 2).mean() + (f[1] ** 2).mean() for r, f in zip(real, fake)) / (2 * len(real))
    s_real = float(np.mean([float(r[1].detach().mean()) for r in real]))
    s_fake = float(np.mean([float(f[1].detach().mean()) for f in fake]))
    return loss, s_real, s_fake


def gen_adv_fm(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """LSGAN generator loss and relative feature matching.

    Feature matching per (discriminator, layer) is ``mean|f_fake - f_real| /
    mean|f_real|``, averaged: dividing by the real activations' level keeps the
    term on the scale of the spectral convergence (~0.1-1) whatever size the
    discriminator's activations grow to, so one weight works through training.
    """
    adv = sum(((f[1] - 1) ** 2).mean() for f in fake) / len(fake)
    fm_terms = [(fa - ra.detach()).abs().mean() / (ra.detach().abs().mean() + 1e-5)
                for r, f in zip(real, fake) for ra, fa in zip(r[0], f[0])]
    return adv, sum(fm_terms) / len(fm_terms)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="adversarial fine-tune of the vocoder")
    ap.add_argument("--init", type=Path, default=INIT, help="pre-trained vocoder checkpoint (model + config are used)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-frames", type=int, default=40, help="frames per sequence incl. teacher-forced ones")
    ap.add_argument("--n-teacher", type=int, default=3)
    ap.add_argument("--lr-g", type=float, default=1e-4)
    ap.add_argument("--lr-d", type=float, default=4e-4)
    ap.add_argument("--clip", type=float, default=1.0, help="generator gradient-norm clip")
    ap.add_argument("--spec-weight", type=float, default=1.0)
    ap.add_argument("--sync-weight", type=float, default=5.0)
    ap.add_argument("--adv-weight", type=float, default=1.0)
    ap.add_argument("--fm-weight", type=float, default=1.0)
    ap.add_argument("--disc-sizes", type=str, default="128,256,512", help="FFT sizes of the discriminators")
    ap.add_argument("--disc-channels", type=str, default="16,32,32")
    ap.add_argument("--d-warmup-steps", type=int, default=60, help="train only the discriminator for this many steps")
    ap.add_argument("--train-cond", action="store_true", help="also train the conditioning net and gain (frozen by default)")
    ap.add_argument("--dred-p", type=float, default=0.0,
                    help="share of sequences conditioned on DRED-decoded features (prepare_dred_features.py)")
    StepControl.add_arguments(ap, seed=2, snapshot_every=250, data=DATA, ckpt_dir=CKPT_DIR, run_dir=RUN_DIR)
    a = ap.parse_args(argv)

    t_start = time.time()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    log = open_log(a.run_dir)
    ck, ck_path = load_resume(a.ckpt_dir, a.run_dir) if a.resume else (None, None)
    init = ck if ck else torch.load(a.init, map_location="cpu", weights_only=False)
    cfg = VocoderConfig.from_dict(init["config"]["model"])
    model = Vocoder(cfg)
    model.load_state_dict(init["model"])
    if ck and "disc" in ck:
        dcfg = ck["config"]["disc"]
        disc = MultiResDisc(tuple(dcfg["sizes"]), tuple(dcfg["channels"]))
    else:  # fresh run, or a generator-only checkpoint (e.g. a snapshot from another machine)
        disc = MultiResDisc(tuple(int(s) for s in a.disc_sizes.split(",")),
                            tuple(int(c) for c in a.disc_channels.split(",")))
    model.to(dev)
    disc.to(dev)
    if not a.train_cond:
        for mod in (model.pembed, model.cond_dense1, model.cond_conv, model.cond_dense2, model.gain_dense):
            for p in mod.parameters():
                p.requires_grad_(False)
    g_params = [p for p in model.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(g_params, lr=a.lr_g, betas=(0.8, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=a.lr_d, betas=(0.8, 0.99))
    rng = np.random.default_rng(a.seed)
    sampler = SequenceSampler(a.data, a.seq_frames, rng, a.dred_p)
    step = 0
    d_warm_until = a.d_warmup_steps  # discriminator-only steps end here
    init_info = {"path": str(a.init), "step": int(init.get("step", -1))}
    if ck:
        step = ck["step"]
        if "disc" in ck:
            disc.load_state_dict(ck["disc"])
        else:  # new discriminator: train it alone first, as in a fresh run
            d_warm_until = step + a.d_warmup_steps
            log(f"{ck_path} has no discriminator: a new one is trained alone for {a.d_warmup_steps} steps")
        init_info = ck.get("init", init_info)
        full = restore_full_state(ck, rng, {"opt_g": opt_g, "opt_d": opt_d})
        log(f"resumed from {ck_path} at step {step} (initialised from {init_info})"
            f"{'' if full else ' (weights only: fresh optimizers)'}")
    else:
        torch.manual_seed(a.seed)
        random.seed(a.seed)
        # Keep the exact starting point next to the run (model + config only).
        atomic_save({"model": model.state_dict(), "config": {"model": cfg.to_dict()}, "step": init_info["step"]},
                    a.run_dir / f"init_step{init_info['step']:07d}.pt")
        log(f"initialised from {a.init} (pre-training step {init_info['step']})")
    del init
    log(f"generator params {model.param_count()} trained {sum(p.numel() for p in g_params)}; "
        f"discriminator params {sum(p.numel() for p in disc.parameters())} {disc.config()}; "
        f"args {json.dumps({k: str(v) for k, v in vars(a).items()})}")

    def save() -> None:
        obj = {
            "model": model.state_dict(),
            "disc": disc.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "step": step,
            "init": init_info,
            "rng": rng_state(rng),
            "config": {"model": cfg.to_dict(), "disc": disc.config(),
                       "train": {k: str(v) for k, v in vars(a).items()}},
        }
        save_checkpoint(obj, a.ckpt_dir, a.run_dir, ("model", "disc", "step", "init", "config"))

    ctl = StepControl(a, t_start, save, log)
    acc: dict[str, float] = {}
    nacc = 0
    t_log = time.time()
    model.train()
    disc.train()
    while True:
        warm = step < d_warm_until
        feats, sig = (x.to(dev) for x in sampler.batch(a.batch))
        with torch.set_grad_enabled(not warm):
            y, target = free_running_batch(model, feats, sig, a.n_teacher, a.n_teacher)

        # --- discriminator step (generator output detached) ---
        for p in disc.parameters():
            p.requires_grad_(True)
        d_loss, s_real, s_fake = disc_loss(disc(target), disc(y.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        gn_d = torch.nn.utils.clip_grad_norm_(disc.parameters(), 10.0)
        if torch.isfinite(gn_d):
            opt_d.step()
        parts: dict[str, float] = {"d_loss": float(d_loss.detach()), "d_real": s_real, "d_fake": s_fake}

        # --- generator step ---
        if not warm:
            for p in disc.parameters():  # no discriminator gradients needed here
                p.requires_grad_(False)
            with torch.no_grad():
                real = disc(target)  # features under the updated discriminator
            adv, fm = gen_adv_fm(real, disc(y))
            spec, sp_parts = spectral_sync_loss(y, target, a.sync_weight)
            loss = a.spec_weight * spec + a.adv_weight * adv + a.fm_weight * fm
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(g_params, a.clip)
            if torch.isfinite(gn):
                opt_g.step()
            else:  # skip the update rather than poison the weights
                log(f"non-finite generator gradient at step {step}; update skipped")
            parts.update(sp_parts)
            parts.update({"adv": float(adv.detach()), "fm": float(fm.detach()), "g_loss": float(loss.detach()),
                          "gnorm": float(gn)})
        else:
            _, sp_parts = spectral_sync_loss(y, target, a.sync_weight)
            parts.update(sp_parts)
        step += 1
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        nacc += 1
        if step % 20 == 0:
            el = time.time() - t_log
            audio_s = nacc * a.batch * a.seq_frames * FRAME / FS
            msg = " ".join(f"{k} {v / nacc:.4f}" for k, v in acc.items())
            log(f"step {step} {'DWARM ' if warm else ''}{msg} {el / nacc:.2f} s/step {audio_s / el:.1f} audio-s/s")
            acc, nacc, t_log = {}, 0, time.time()
            if not np.isfinite(parts["d_loss"]):
                log("discriminator loss is not finite; stopping")
                break
        if ctl.after_step(step, lambda: {"model": model.state_dict(), "config": {"model": cfg.to_dict()},
                                         "step": step, "init": init_info}, sampler.refresh):
            break
    save()
    log(f"finished at step {step}")


if __name__ == "__main__":
    main()
