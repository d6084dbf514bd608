"""Paired copy synthesis of two vocoder weight files through the package's int8 runtime.

Each file is resynthesised from its own features by ``edge_dred.neural.vocoder.copy_synthesis``
(free-running from the start, the runtime postfilter on) with weight file A and with B; prints
the means of STOI, PESQ-WB, PLCMOS and DNSMOS OVRL and the paired B - A differences with their
standard errors.  Use training speech to choose; the dev set only for a final check.

Usage::

    .venv/bin/python training/eval_vocoder_pair.py --a edge_dred/models/vocoder.bin --b /tmp/v.bin \\
        --speech ../shared/data/speech/train/vcc2016 --n-files 16 --jobs 2
"""
from __future__ import annotations

import argparse
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

METRICS = ("stoi", "pesq", "plcmos", "ovrl")
_MODELS: dict[str, object] = {}


def _files(speech: list[Path], n: int) -> list[Path]:
    """``n`` files from each folder, chosen as ``edge-dred eval --max-files`` chooses them."""
    from edge_dred.evaluate.runner import EvalConfigError, find_speech_files, select_files

    try:
        return [f for d in speech for f in select_files(find_speech_files(d), d, n)]
    except EvalConfigError as e:
        raise SystemExit(str(e)) from None


def _score(args: tuple[Path, str, str]) -> dict[str, object]:
    from edge_dred.audio.wavio import load_audio
    from edge_dred.evaluate import metrics
    from edge_dred.neural.vocoder import Vocoder, VocoderModel, copy_synthesis

    path, a, b = args
    pcm = load_audio(path).pcm
    row: dict[str, object] = {"file": path.name}
    for tag, wpath in (("a", a), ("b", b)):
        if wpath not in _MODELS:
            _MODELS[wpath] = VocoderModel.load(path=wpath)
        y = copy_synthesis(pcm, Vocoder(_MODELS[wpath]))
        row[f"{tag}_stoi"] = metrics.stoi(pcm, y)
        row[f"{tag}_pesq"] = metrics.pesq_wb(pcm, y)
        row[f"{tag}_plcmos"] = metrics.plcmos(y)
        row[f"{tag}_ovrl"] = metrics.dnsmos(y)["OVRL"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="reference weight file (e.g. the shipped one)")
    ap.add_argument("--b", type=Path, required=True, help="candidate weight file (export_vocoder.py --no-manifest)")
    ap.add_argument("--speech", type=Path, nargs="+", required=True)
    ap.add_argument("--n-files", type=int, default=16, help="files per speech folder")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    for p in (a.a, a.b):
        if not p.is_file():
            raise SystemExit(f"{p}: no such weight file")
    jobs = [(f, str(a.a), str(a.b)) for f in _files(a.speech, a.n_files)]
    with Pool(a.jobs) as pool:
        rows = pool.map(_score, jobs)
    print(f"{len(rows)} files; A = {a.a}, B = {a.b}")
    print("| | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for tag in ("a", "b"):
        print(f"| {tag.upper()} | " + " | ".join(f"{np.mean([r[f'{tag}_{m}'] for r in rows]):.3f}" for m in METRICS) + " |")
    cells = []
    for m in METRICS:
        d = np.array([r[f"b_{m}"] - r[f"a_{m}"] for r in rows], np.float64)
        cells.append(f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0:.3f}")
    print("| B − A | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
