"""Copy synthesis: the fp vocoder's compiled int8 runtime against its float64 numpy reference, paired.

Both run the same pipeline on the same noise: features of the whole file
(``compute_features``), the stream free from the file's start (silence before it, phase 0),
the noise sequence of the compiled stream's seed (``fp_runtime.noise_sequence``, fed to the
reference), optionally the runtime postfilter at ``fp_runtime.POSTFILTER``, de-emphasis to
int16, the 5 ms look-ahead compensated.  The compiled runtime quantizes the checkpoint with
``training/export_fp_vocoder.py``; the reference (``FPVocoderStream``) runs the checkpoint's
float weights.  Scores STOI and PESQ-WB (``eval_copy_synthesis.score``), prints means and the
paired difference (int8 − float) with its standard error.

Choose nothing on dev: this compares two implementations of one model on training speech::

    .venv/bin/python training/eval_fp_runtime.py --speech ../shared/data/speech/train/vcc2016 --n-files 8
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from eval_copy_synthesis import pick_files, score  # noqa: E402
from export_fp_vocoder import DEFAULT_CKPT, export_checkpoint  # noqa: E402

from edge_dred.constants import FRAME_SIZE  # noqa: E402
from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.dsp.postfilter import VocoderPostfilter, deemphasis_int16  # noqa: E402
from edge_dred.neural import fp_runtime as rt  # noqa: E402
from edge_dred.neural.fp_vocoder import FPVocoderStream  # noqa: E402


def reference_copy_synthesis(params: dict, pcm: np.ndarray, seed: int, postfilter: bool) -> np.ndarray:
    """:func:`fp_runtime.fp_copy_synthesis` with the float64 reference in place of the compiled stream."""
    n = -(-pcm.shape[0] // FRAME_SIZE) + 1
    f = compute_features(np.concatenate([pcm, np.zeros(n * FRAME_SIZE - pcm.shape[0], np.int16)]))
    e = FPVocoderStream(params).synthesize_pe(f, noise=rt.noise_sequence(seed, n * FRAME_SIZE + 400))
    e = e.reshape(n, FRAME_SIZE)
    if postfilter:
        e = VocoderPostfilter(*rt.POSTFILTER).process(e, rt.postfilter_features(None, f))
    y, _ = deemphasis_int16(e, 0.0)
    return y[rt.DELAY:rt.DELAY + pcm.shape[0]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--speech", type=Path, nargs="+", required=True)
    ap.add_argument("--n-files", type=int, default=8, help="per folder, spread evenly over its sorted files")
    ap.add_argument("--shipped", action="store_true",
                    help="also score the shipped vocoder (vocoder.copy_synthesis: int8 + its postfilter)")
    a = ap.parse_args(argv)
    import soundfile as sf

    out = Path(tempfile.mkdtemp()) / "fp_vocoder.bin"
    torch_model, info = export_checkpoint(a.ckpt, out)
    params = {k: v.detach().double().numpy() for k, v in torch_model.state_dict().items()}
    model = rt.FPVocoderModel.load(path=out)
    print(f"exported {a.ckpt} (step {model.meta.get('checkpoint_step')}): {info['bytes']} bytes, "
          f"int8 rel. error {max(info['rel_err'].values()):.4f}")
    rows: dict[str, list[dict[str, float]]] = {}
    t = {"int8": 0.0, "float": 0.0}
    audio = 0.0
    for folder in a.speech:
        for i, p in enumerate(pick_files(folder, a.n_files)):
            x, fs = sf.read(str(p), dtype="int16", always_2d=True)
            if fs != 16000:
                raise SystemExit(f"{p}: {fs} Hz, expected 16000")
            x = x[:, 0]
            audio += len(x) / 16000
            for pf in (True, False):
                tag = "postfilter" if pf else "no postfilter"
                t0 = time.process_time()
                y8 = rt.fp_copy_synthesis(x, rt.FPVocoder(model, seed=i, postfilter=pf))
                t["int8"] += time.process_time() - t0
                t0 = time.process_time()
                yf = reference_copy_synthesis(params, x, i, pf)
                t["float"] += time.process_time() - t0
                rows.setdefault(f"int8, {tag}", []).append(score(x, y8, ("stoi", "pesq")))
                rows.setdefault(f"float, {tag}", []).append(score(x, yf, ("stoi", "pesq")))
            if a.shipped:
                from edge_dred.neural.vocoder import copy_synthesis

                rows.setdefault("shipped", []).append(score(x, copy_synthesis(x), ("stoi", "pesq")))
            print(f"  {p.name}: " + "  ".join(f"{k} PESQ {v[-1]['pesq']:.3f}" for k, v in rows.items()), flush=True)
    n = len(rows["int8, postfilter"])
    print(f"\n{n} files, {audio:.0f} s of audio")
    print("| | STOI | PESQ-WB |")
    print("|---|---|---|")
    for tag in ("postfilter", "no postfilter"):
        for k in ("int8", "float"):
            r = rows[f"{k}, {tag}"]
            print(f"| {k}, {tag} | {np.mean([v['stoi'] for v in r]):.3f} | {np.mean([v['pesq'] for v in r]):.3f} |")
        d = {m: np.array([v[m] for v in rows[f"int8, {tag}"]]) - np.array([v[m] for v in rows[f"float, {tag}"]])
             for m in ("stoi", "pesq")}
        se = {m: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for m, v in d.items()}
        print(f"| int8 − float, {tag} | {d['stoi'].mean():+.4f} ± {se['stoi']:.4f} | "
              f"{d['pesq'].mean():+.3f} ± {se['pesq']:.3f} |")
    if a.shipped:
        r = rows["shipped"]
        print(f"| shipped vocoder | {np.mean([v['stoi'] for v in r]):.3f} | {np.mean([v['pesq'] for v in r]):.3f} |")
        d = {m: np.array([v[m] for v in rows["int8, postfilter"]]) - np.array([v[m] for v in r]) for m in ("stoi", "pesq")}
        se = {m: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for m, v in d.items()}
        print(f"| int8 fp, postfilter − shipped | {d['stoi'].mean():+.4f} ± {se['stoi']:.4f} | "
              f"{d['pesq'].mean():+.3f} ± {se['pesq']:.3f} |")
    print(f"\nCPU s per audio s (both postfilter settings): int8 runtime {t['int8'] / (2 * audio):.4f}, "
          f"float64 numpy reference {t['float'] / (2 * audio):.4f}")


if __name__ == "__main__":
    main()
