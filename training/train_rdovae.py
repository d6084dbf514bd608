"""Train the DRED RDO-VAE on feature files (CPU, one thread).

Data: ``training/data/vocoder_*.npz`` (``feats`` arrays written by
``prepare_data.py``: the clean copy and augmented copies); with ``--features``
any ``.npy`` of shape (n, 20) works instead.

One model serves all 16 quantiser levels: each training sequence draws a level
q, whose rate weight lambda_q is log-uniform between lambda_min (q = 0, best
quality) and lambda_max.  Loss per sequence (as in the RDO-VAE paper):
``sqrt(lambda) * rate + distortion / sqrt(lambda)``, the distortion averaged
over a hard-quantised decode (straight-through) and a noise-quantised decode.

Checkpoints (atomic): ``training/runs/rdovae/latest_full.pt`` (with optimizer,
ignored by git) every ``--ckpt-every`` seconds and
``training/checkpoints/rdovae/latest.pt`` (model only, committed).  A restart
resumes from the full one, else from the model-only one.

Usage::

    nohup .venv/bin/python training/train_rdovae.py --max-minutes 120 \
        > training/runs/rdovae/stdout.txt 2>&1 &
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rdovae_model import (DEC_FRAMES, ENC_FRAMES, MAX_CHUNKS, NB_FEATURES, RDOVAE,  # noqa: E402
                          RDOVAEConfig, chunk_indices, config_from_dict, config_to_dict, count_params,
                          feature_distortion, hard_rate_bits, quantize, soft_rate_bits)

RUN_DIR = HERE / "runs" / "rdovae"
CKPT_DIR = HERE / "checkpoints" / "rdovae"
DATA_DIR = HERE / "data"


def load_features(paths: list[Path]) -> np.ndarray:
    """Concatenate feature arrays (n, 20) float32 from .npz (``feats``) or .npy files."""
    arrs = []
    for p in paths:
        if p.suffix == ".npz":
            with np.load(p) as z:
                a = z["feats"]
        else:
            a = np.load(p)
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != NB_FEATURES:
            raise ValueError(f"{p}: expected (n, {NB_FEATURES}) features, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{p}: non-finite features")
        arrs.append(a)
    if not arrs:
        raise ValueError("no feature files")
    return np.concatenate(arrs)


def compute_train_features(train_dir: Path, out: Path) -> None:
    """Fallback when prepare_data.py output is missing: clean features of every train FLAC."""
    import soundfile as sf
    sys.path.insert(0, str(HERE.parent))
    from edge_dred.dsp.features import compute_features
    files = sorted(train_dir.rglob("*.flac"))
    if not files:
        raise FileNotFoundError(f"no .flac files under {train_dir}")
    feats = []
    t0 = time.time()
    for i, p in enumerate(files):
        x, fs = sf.read(p, dtype="int16", always_2d=True)
        if fs != 16000:
            raise ValueError(f"{p}: sample rate {fs}, expected 16000")
        feats.append(np.asarray(compute_features(x[:, 0].astype(np.float32)), dtype=np.float32))
        if (i + 1) % 500 == 0:
            print(f"features {i + 1}/{len(files)} {time.time() - t0:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npy")
    np.save(tmp, np.concatenate(feats))
    os.replace(tmp, out)


def atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_model(path: Path) -> tuple[RDOVAE, dict]:
    """Load a model from a checkpoint (full or model-only)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = RDOVAE(config_from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    return model, ck


def train_step(model: RDOVAE, feats: torch.Tensor, q: torch.Tensor, lambdas: torch.Tensor,
               chunk_len: int, step: int) -> dict[str, torch.Tensor]:
    """Forward pass and loss for one batch.

    Parameters
    ----------
    feats : torch.Tensor
        (B, 2T, 20) raw features.
    q : torch.Tensor
        (B,) quantiser level of each sequence.
    """
    b, n, _ = feats.shape
    t = n // ENC_FRAMES
    lam = lambdas[q]                                     # (B,)
    sl = lam.sqrt()
    z, s = model.encoder(model.normalize(feats))
    zscale, zdz, zp0, zdec, zr = model.stats.latent(q[:, None])        # (B, 1, D)
    y, k, zh, zn = quantize(z, zscale, zdz)
    sscale, sdz, sp0, sdec, sr = model.stats.state()
    ys, ks, sh, sn = quantize(s, sscale, sdz)

    soft = soft_rate_bits(y, zr).sum(-1)                 # (B, T)
    hard = hard_rate_bits(k, zp0, zdec).sum(-1)
    s_soft = soft_rate_bits(ys, sr).sum(-1)
    s_hard = hard_rate_bits(ks, sp0, sdec).sum(-1)
    # Ramp rate weights up so the autoencoder first learns to reconstruct.
    lat_w = 1.0 - 0.5 / (1.0 + step / 1000.0)
    st_w = 1.0 - 0.9 / (1.0 + step / 6000.0)
    rate_loss = (sl[:, None] * (lat_w * (soft + 0.1 * hard) + 0.04 * st_w * (s_soft + 0.1 * s_hard))).mean()

    zi_np, fi_np = chunk_indices(t, chunk_len)
    zi = torch.from_numpy(zi_np)
    fi = torch.from_numpy(fi_np)
    nrun = zi.shape[0]
    zcat = torch.cat([zh[:, zi], zn[:, zi]], 0).reshape(2 * b * nrun, chunk_len, -1)
    scat = torch.cat([sh[:, zi[:, 0]], sn[:, zi[:, 0]]], 0).reshape(2 * b * nrun, -1)
    out = model.decoder(zcat, scat).reshape(2, b, nrun, chunk_len, DEC_FRAMES, NB_FEATURES)
    out = model.denormalize(out)
    target = feats[:, fi]                                # (B, n, L, 4, 20)
    d = feature_distortion(target.unsqueeze(0), out).mean((2, 3, 4))   # (2, B)
    dist = (d / sl[None]).mean()
    total = rate_loss + 0.5 * dist
    with torch.no_grad():
        ceps = ((out[0, ..., :18] - target[..., :18]) ** 2).mean((1, 2, 3, 4))  # (B,) hard path
    return {"total": total, "rate_loss": rate_loss, "dist_hard": d[0].detach(), "dist_soft": d[1].detach(),
            "hard_bits": hard.detach().mean(1), "state_bits": s_hard.detach().mean(1), "ceps_mse": ceps}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", type=Path, nargs="*", default=None,
                    help="feature files (.npz with 'feats' or .npy); default training/data/vocoder_*.npz")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-steps", type=int, default=104, help="encoder steps (20 ms) per sequence")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-decay", type=float, default=1e-4, help="lr / (1 + decay * step)")
    ap.add_argument("--max-minutes", type=float, default=120.0)
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--ckpt-every", type=float, default=300.0, help="seconds between checkpoints")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compute-features", action="store_true",
                    help="only write training/data/rdovae_features.npy from ../shared/data/speech/train")
    ap.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    ap.add_argument("--run-dir", type=Path, default=RUN_DIR)
    ap.add_argument("--ckpt-dir", type=Path, default=CKPT_DIR)
    a = ap.parse_args(argv)
    if a.seq_steps < 2 * MAX_CHUNKS + 1 or a.batch < 1:
        raise ValueError("--seq-steps must be >= 53 and --batch >= 1")

    if a.compute_features:
        compute_train_features(HERE.parent.parent / "shared" / "data" / "speech" / "train",
                               DATA_DIR / "rdovae_features.npy")
        return
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    paths = a.features if a.features else sorted(DATA_DIR.glob("vocoder_*.npz"))
    if not paths and (DATA_DIR / "rdovae_features.npy").exists():
        paths = [DATA_DIR / "rdovae_features.npy"]
    paths = [p for p in paths if ".tmp" not in p.name]
    feats = load_features(paths)
    nfr = ENC_FRAMES * a.seq_steps
    print(f"data: {len(paths)} files, {feats.shape[0]} frames ({feats.shape[0] / 360000:.2f} h)", flush=True)

    full_path = a.run_dir / "latest_full.pt"
    small_path = a.ckpt_dir / "latest.pt"
    step = 0
    opt_state = None
    if not a.fresh and full_path.exists():
        model, ck = load_model(full_path)
        step, opt_state = ck["step"], ck.get("optimizer")
        rng = np.random.default_rng(a.seed + step)
        print(f"resumed from {full_path} at step {step}", flush=True)
    elif not a.fresh and small_path.exists():
        model, ck = load_model(small_path)
        step = ck["step"]
        rng = np.random.default_rng(a.seed + step)
        print(f"resumed (model only) from {small_path} at step {step}", flush=True)
    else:
        model = RDOVAE(RDOVAEConfig())
        model.set_normalization(feats.mean(0), feats.std(0))
    cfg = model.cfg
    print(f"encoder {count_params(model.encoder)} params, decoder {count_params(model.decoder)}, "
          f"stats {count_params(model.stats)}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.99))
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + a.lr_decay * (s + step)))
    lambdas = cfg.lambdas()

    def save() -> None:
        base = {"config": config_to_dict(cfg), "model": model.state_dict(), "step": step,
                "version": "rdovae-1"}
        atomic_save({**base, "optimizer": opt.state_dict()}, full_path)
        atomic_save(base, small_path)

    a.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(a.run_dir / "log.txt", "a")
    nq = cfg.quant_levels
    acc = {k: np.zeros(nq) for k in ("bits", "ceps", "n")}
    acc_tot = {"total": 0.0, "dist_hard": 0.0, "dist_soft": 0.0, "state_bits": 0.0, "n": 0}
    t0 = time.time()
    t_ck = t0
    t_log = t0
    start_step = step
    stop = []
    # SIGTERM ends the run cleanly with a final checkpoint.
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while step < a.max_steps and time.time() - t0 < 60 * a.max_minutes and not stop:
        starts = rng.integers(0, feats.shape[0] - nfr, a.batch) // 2 * 2
        batch = torch.from_numpy(np.stack([feats[s0:s0 + nfr] for s0 in starts]))
        q = torch.from_numpy(rng.integers(0, nq, a.batch))
        chunk_len = int(rng.integers(2, MAX_CHUNKS + 1))
        out = train_step(model, batch, q, lambdas, chunk_len, step)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        qn = q.numpy()
        np.add.at(acc["bits"], qn, out["hard_bits"].numpy() / cfg.latent_dim)
        np.add.at(acc["ceps"], qn, out["ceps_mse"].numpy())
        np.add.at(acc["n"], qn, 1)
        acc_tot["total"] += float(out["total"].detach())
        acc_tot["dist_hard"] += float(out["dist_hard"].mean())
        acc_tot["dist_soft"] += float(out["dist_soft"].mean())
        acc_tot["state_bits"] += float(out["state_bits"].mean())
        acc_tot["n"] += 1
        if step % a.log_every == 0:
            now = time.time()
            nn_ = max(acc_tot["n"], 1)
            nz = np.maximum(acc["n"], 1)
            bits = acc["bits"] / nz
            ceps = acc["ceps"] / nz
            line = (f"step {step} t {now - t0:.0f}s {(now - t_log) / nn_:.2f}s/step lr {sched.get_last_lr()[0]:.2e} "
                    f"loss {acc_tot['total'] / nn_:.4f} dist_hard {acc_tot['dist_hard'] / nn_:.4f} "
                    f"dist_soft {acc_tot['dist_soft'] / nn_:.4f} state_bits {acc_tot['state_bits'] / nn_:.1f} | "
                    "bits/latent q0..15 " + " ".join(f"{v:.2f}" for v in bits) +
                    " | ceps_mse q0..15 " + " ".join(f"{v:.3f}" for v in ceps))
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
            acc = {k: np.zeros(nq) for k in acc}
            acc_tot = {k: 0.0 for k in acc_tot}
            t_log = now
        if time.time() - t_ck > a.ckpt_every:
            save()
            t_ck = time.time()
    save()
    print(f"done: {step - start_step} steps in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
