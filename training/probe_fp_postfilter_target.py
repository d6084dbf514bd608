"""Which features the runtime postfilter gets for the fp vocoder's 5 ms-late output blocks (a probe).

The compiled runtime's frame ``i`` returns samples ``[160 i - 80, 160 i + 80)``; the postfilter
measures a block over the 20 ms ending with it.  Scored on training speech (int8 runtime,
committed checkpoint, STOI / PESQ-WB): no postfilter; the postfilter with feature ``i``,
feature ``i - 1``, or their mean (what ``fp_runtime.postfilter_features`` gives); and, for
reference, the output shifted back by 80 samples first with feature ``i`` per aligned block
(``eval_fp_vocoder.py --postfilter``'s arrangement, 5 ms more delay in a stream)::

    .venv/bin/python training/probe_fp_postfilter_target.py --speech ../shared/data/speech/train/vcc2016 --n-files 8
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from eval_copy_synthesis import pick_files, score  # noqa: E402
from export_fp_vocoder import DEFAULT_CKPT, export_checkpoint  # noqa: E402

from edge_dred.constants import FRAME_SIZE  # noqa: E402
from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.dsp.postfilter import VocoderPostfilter, deemphasis_int16  # noqa: E402
from edge_dred.neural import fp_runtime as rt  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--speech", type=Path, required=True)
    ap.add_argument("--n-files", type=int, default=8)
    a = ap.parse_args(argv)
    import soundfile as sf

    path = Path(tempfile.mkdtemp()) / "fp_vocoder.bin"
    export_checkpoint(a.ckpt, path)
    model = rt.FPVocoderModel.load(path=path)
    res: dict[str, list[dict[str, float]]] = {}
    for i, p in enumerate(pick_files(a.speech, a.n_files)):
        x = sf.read(str(p), dtype="int16")[0]
        n = -(-len(x) // FRAME_SIZE) + 1
        f = compute_features(np.concatenate([x, np.zeros(n * FRAME_SIZE - len(x), np.int16)])).astype(np.float32)
        e = rt.FPVocoder(model, seed=i, postfilter=False).synthesize_pe(f)
        prev = np.vstack([f[:1], f[:-1]])
        for k, fv in {"no postfilter": None, "feature i": f, "feature i - 1": prev,
                      "mean of i - 1 and i (runtime)": rt.postfilter_features(None, f)}.items():
            ee = e if fv is None else VocoderPostfilter(*rt.POSTFILTER).process(e, fv)
            y, _ = deemphasis_int16(ee, 0.0)
            res.setdefault(k, []).append(score(x, y[rt.DELAY:rt.DELAY + len(x)], ("stoi", "pesq")))
        shifted = np.concatenate([e.ravel()[rt.DELAY:], np.zeros(rt.DELAY, np.float32)]).reshape(n, FRAME_SIZE)
        y, _ = deemphasis_int16(VocoderPostfilter(*rt.POSTFILTER).process(shifted, f), 0.0)
        res.setdefault("feature i, output shifted (+5 ms)", []).append(score(x, y[:len(x)], ("stoi", "pesq")))
    print(f"| postfilter target ({len(res['no postfilter'])} files) | STOI | PESQ-WB |")
    print("|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {np.mean([r['stoi'] for r in v]):.3f} | {np.mean([r['pesq'] for r in v]):.3f} |")


if __name__ == "__main__":
    main()
