"""Export the fp vocoder checkpoint to the project's int8 weight-file format (not shipped).

Reads the trainer's checkpoint (``training/checkpoints/fp_vocoder/latest.pt`` by default),
quantizes it with :func:`edge_dred.neural.fp_runtime.export_fp_vocoder` (int8 per row, the
layer layout of :mod:`edge_dred.neural.layers`) and writes ``build/fp_vocoder.bin``
(git-ignored).  The manifest and the shipped vocoder are left alone: whether the fp
vocoder ships is decided on quality (docs/vocoder.md); load the file with
``FPVocoderModel.load(path=...)``.

Usage::

    .venv/bin/python training/export_fp_vocoder.py [--ckpt CKPT] [--out build/fp_vocoder.bin]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

DEFAULT_CKPT = HERE / "checkpoints" / "fp_vocoder" / "latest.pt"
DEFAULT_OUT = REPO / "build" / "fp_vocoder.bin"


def export_checkpoint(ckpt: Path, out: Path) -> tuple[object, dict]:
    """Checkpoint -> weight file; returns the torch model (eval mode) and the export info."""
    import torch
    from fp_vocoder_model import FPVocoder, FPVocoderConfig

    from edge_dred.neural.fp_runtime import export_fp_vocoder

    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    cfg = FPVocoderConfig.from_dict(ck["config"]["model"])
    model = FPVocoder(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    params = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    info = export_fp_vocoder(params, cfg.to_dict(), out,
                             extra_meta={"checkpoint_step": int(ck.get("step", -1)), "checkpoint": ckpt.name})
    return model, info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    _, info = export_checkpoint(a.ckpt, a.out)
    print(json.dumps({"out": str(a.out), **info}, indent=1))


if __name__ == "__main__":
    main()
