"""Run plumbing shared by the trainers: logging, RNG state, checkpoints, SIGTERM.

Checkpoints come in two parts.  The full resumable state (optimizers, RNG,
discriminator...) goes to ``<run-dir>/latest_full.pt``, which is git-ignored;
the committed ``<ckpt-dir>/latest.pt`` keeps only the keys needed to go on
training with fresh optimizers (weights, config, step), so the repository
holds a few MB rather than the Adam moments.  Resuming prefers the full
state and falls back to the slim one.
"""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

FULL_NAME = "latest_full.pt"


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def atomic_save(obj: dict, path: Path) -> None:
    """``torch.save`` through a temporary file, so a kill never leaves half a checkpoint.

    Tensors are saved from the CPU, so a checkpoint written on a GPU loads anywhere.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(to_cpu(obj), tmp)
    os.replace(tmp, path)


def open_log(run_dir: Path) -> Callable[[str], None]:
    """A ``log(msg)`` that prints with a time stamp and appends to ``run_dir/log.txt``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    logf = open(run_dir / "log.txt", "a")

    def log(msg: str) -> None:
        line = time.strftime("%H:%M:%S ") + msg
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    return log


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state, "python": random.getstate()}


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]
    random.setstate(state["python"])


def restore_full_state(ck: dict, rng: np.random.Generator, stateful: dict[str, Any]) -> bool:
    """Load optimizer/scheduler states (``stateful``: checkpoint key -> object) and the RNGs.

    Returns False, touching nothing, for a slim (weights-only) checkpoint.
    """
    if not all(k in ck for k in stateful):
        return False
    for k, obj in stateful.items():
        obj.load_state_dict(ck[k])
    restore_rng(ck["rng"], rng)
    return True


def load_resume(ckpt_dir: Path, run_dir: Path) -> tuple[dict | None, Path | None]:
    """The newest resumable state: the full one in ``run_dir`` if present, else the slim one."""
    for p in (run_dir / FULL_NAME, ckpt_dir / "latest.pt"):
        if p.exists():
            return torch.load(p, map_location="cpu", weights_only=False), p
    return None, None


def save_checkpoint(obj: dict, ckpt_dir: Path, run_dir: Path, slim_keys: Iterable[str]) -> None:
    """Full state to ``run_dir``, the ``slim_keys`` subset to the committed ``ckpt_dir/latest.pt``."""
    atomic_save(obj, run_dir / FULL_NAME)
    atomic_save({k: obj[k] for k in slim_keys if k in obj}, ckpt_dir / "latest.pt")


def stop_on_sigterm() -> dict[str, bool]:
    """A flag set by SIGTERM: the loop finishes its step, saves and exits."""
    stop = {"flag": False}

    def on_term(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    return stop


class StepControl:
    """What the vocoder trainers do after every step: pick up new data copies, write snapshots and
    periodic checkpoints, and say when the run ends (``--max-steps``, ``--max-minutes``, SIGTERM).

    ``a`` holds the run's ``snapshot_every``, ``ckpt_minutes``, ``max_steps``, ``max_minutes`` and
    ``run_dir``; ``t_start`` is when the run began (``--max-minutes`` counts from there).
    """

    def __init__(self, a: Any, t_start: float, save: Callable[[], None], log: Callable[[str], None]) -> None:
        self.a, self.t_start, self.save, self.log = a, t_start, save, log
        self.stop = stop_on_sigterm()
        self.last_ckpt = time.time()

    def after_step(self, step: int, snapshot: Callable[[], dict], refresh: Callable[[], Iterable[str]]) -> bool:
        """Housekeeping after ``step``; True when the loop should end (the caller then saves)."""
        a = self.a
        if step % 100 == 0:
            for name in refresh():
                self.log(f"loaded new data copy {name}")
        if a.snapshot_every and step % a.snapshot_every == 0:
            atomic_save(snapshot(), a.run_dir / f"model_{step:07d}.pt")
        if time.time() - self.last_ckpt > a.ckpt_minutes * 60:
            self.save()
            self.last_ckpt = time.time()
            self.log(f"checkpoint saved at step {step}")
        return bool((a.max_steps and step >= a.max_steps) or self.stop["flag"]
                    or (a.max_minutes and time.time() - self.t_start > a.max_minutes * 60))

    @staticmethod
    def add_arguments(ap: Any, *, seed: int, snapshot_every: int, data: Path, ckpt_dir: Path, run_dir: Path) -> None:
        """The run arguments every vocoder trainer takes (the ones this class and the set-up read)."""
        ap.add_argument("--threads", type=int, default=1,
                        help="1 is far faster than 2 when the cores are shared (OpenMP barriers)")
        ap.add_argument("--seed", type=int, default=seed)
        ap.add_argument("--ckpt-minutes", type=float, default=5.0)
        ap.add_argument("--snapshot-every", type=int, default=snapshot_every,
                        help="keep a model-only copy every N steps in the run dir")
        ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = no limit)")
        ap.add_argument("--max-minutes", type=float, default=0.0,
                        help="stop (and save) after this much wall time in this run")
        ap.add_argument("--device", default="cpu",
                        help="torch device, e.g. cuda (checkpoints are saved from the CPU either way)")
        ap.add_argument("--resume", action="store_true",
                        help="continue from <run-dir>/latest_full.pt, else <ckpt-dir>/latest.pt (weights only)")
        ap.add_argument("--data", type=Path, default=data)
        ap.add_argument("--ckpt-dir", type=Path, default=ckpt_dir)
        ap.add_argument("--run-dir", type=Path, default=run_dir)
