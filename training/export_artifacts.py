"""Export the artifact detector: int8 TFLite (litert-torch + ai-edge-quantizer) + manifest entry.

Recipe ``dynamic_wi8_afp32`` (int8 weights, int8 matmuls on dynamically
quantised activations), as for the DRED encoder; ``--recipe static_wi8_ai8``
(calibrated on generated examples over training speech) is the fully static
alternative.  The float model and the int8 one are compared on another
generated set (agreement of the 5-class decision, largest score difference).

Usage::

    .venv/bin/python training/export_artifacts.py                 # best.pt -> edge_dred/models/
    .venv/bin/python training/export_artifacts.py --ckpt X.pt --out /tmp/a.tflite --no-manifest
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from artifact_data import (calibrate_thresholds, clean_set, file_activity, load_speech, make_example,  # noqa: E402
                           random_crop, speaker_split)
from artifact_model import ArtifactExport, ArtifactNet, n_weights  # noqa: E402
from train_artifacts import predict_class  # noqa: E402

from edge_dred.artifacts.detector import MODEL_KEY, MODEL_VERSION, THRESHOLD, ArtifactDetector  # noqa: E402
from edge_dred.artifacts.frontend import GLOBAL_DIM, SEQ_CHANNELS, SEQ_FRAMES, features  # noqa: E402
from edge_dred.artifacts.generator import DEFECTS  # noqa: E402
from edge_dred.models.loader import MODELS_DIR, update_manifest  # noqa: E402

TRAIN_DIR = REPO.parent / "shared" / "data" / "speech" / "train"
CALIB_SEED = 7_100_000
CHECK_SEED = 7_200_000
CLEAN_SEED = 7_300_000
CALIB_BITRATES = (16000, 24000, 32000, 48000, 64000)  # the Opus range for the false-alarm bar


def generated(n: int, seed: int, max_files: int | None):
    """Generated examples over the held-out training files."""
    speech = load_speech(speaker_split(TRAIN_DIR)[1], max_files)
    act = [file_activity(x) for x in speech]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, y, c, _ = make_example(random_crop(speech, act, rng), rng, cls=i % 6)
        out.append((a, *features(a), y, c))
    return out


def choose_thresholds(det: ArtifactDetector, max_files: int | None, clean_fa: float, n_clean: int,
                      lossy: str | None = None, shares: tuple[float, float] | None = None) -> dict[str, float]:
    """Per-defect thresholds on the held-out training files (``artifact_data.speaker_split``).

    Clean audio there: every 1 s segment of their files (pauses included), the
    same segments through this project's Opus at 16-64 kb/s, the same
    segments made ordinary recordings, and ``n_clean`` clean examples as the
    trainer draws them (Opus, Opus with concealment, room floors).  With
    ``lossy`` (ffmpeg's path) a fifth pool: the same segments through lossy
    chains (``lossy_coding``, one per 16 segments), and the drawn examples
    follow the lossy recipe.  Every defect gets the same false-alarm share,
    the largest that keeps the union within ``clean_fa`` in each pool
    (thresholds at least 0.5).
    """
    from edge_dred.artifacts.detector import segments
    from edge_dred.artifacts.generator import opus_roundtrip, ordinary_recording

    _, val_files = speaker_split(TRAIN_DIR)
    files = load_speech(val_files, max_files)
    segs = [s for x in files for _, s in segments(x)]
    rng = np.random.default_rng(CLEAN_SEED)
    coded = [opus_roundtrip(s, int(rng.choice(CALIB_BITRATES))) for s in segs]
    recorded = [ordinary_recording(s, rng) for s in segs]
    pools = {"segments": segs, "opus": coded, "recorded": recorded}
    if lossy:
        from lossy_coding import code_batch, draw_chain

        lrng = np.random.default_rng(CLEAN_SEED + 2)
        pools["lossy"] = [y for i in range(0, len(segs), 16)
                          for y in code_batch([s.astype(np.float32) / 32768.0 if s.dtype == np.int16 else s
                                               for s in segs[i:i + 16]], draw_chain(lrng), lossy)]
    pools["drawn"] = clean_set(files, [file_activity(x) for x in files], CLEAN_SEED + 1, n_clean, lossy, shares)
    sc = np.stack([det.defect_scores(s) for p in pools.values() for s in p])
    groups = np.repeat(np.arange(len(pools)), [len(p) for p in pools.values()])  # the bound holds in each
    thr = calibrate_thresholds(sc, clean_fa, THRESHOLD, groups)
    parts = {k: sc[groups == i] for i, k in enumerate(pools)}
    print(f"clean held-out audio: {len(segs)} segments, as many through Opus"
          + (", through lossy chains" if lossy else "") + f" and made ordinary recordings, {len(pools['drawn'])} "
          "drawn clean examples; flagged at 0.5 / at the thresholds: "
          + ", ".join(f"{k} {np.mean(v.max(1) >= 0.5):.4f} / {np.mean((v >= thr).any(1)):.4f}"
                      for k, v in parts.items())
          + "; thresholds " + " ".join(f"{k} {v:.3f}" for k, v in zip(DEFECTS[1:], thr)))
    return {k: float(v) for k, v in zip(DEFECTS[1:], thr)}


def convert(net: ArtifactNet, calib, recipe_name: str) -> tuple[bytes, bytes]:
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    model = ArtifactExport(net).eval()
    args = (torch.zeros(1, SEQ_FRAMES, SEQ_CHANNELS), torch.zeros(1, GLOBAL_DIM))
    edge = litert_torch.convert(model, args)
    tmp = Path("/tmp") / f"artifact_f32_{id(net)}.tflite"
    edge.export(str(tmp))
    fbytes = tmp.read_bytes()
    qz = quantizer.Quantizer(fbytes)
    qz.load_quantization_recipe(getattr(recipe, recipe_name)())
    if recipe_name.startswith("static"):
        sig = Interpreter(model_content=fbytes).get_signature_list()["serving_default"]["inputs"]
        names = sorted(sig)
        data = [{names[0]: c[1][None], names[1]: c[2][None]} for c in calib]
        res = qz.quantize(qz.calibrate({"serving_default": data}, num_threads=1), enable_progress_report=False)
    else:
        res = qz.quantize(enable_progress_report=False)
    return bytes(res.quantized_model), fbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=HERE / "checkpoints" / "artifacts" / "best.pt")
    ap.add_argument("--out", type=Path, default=MODELS_DIR / "artifact_detector.tflite")
    ap.add_argument("--no-manifest", action="store_true")
    ap.add_argument("--float-out", type=Path, default=REPO / "tests" / "data" / "artifact_detector_f32.tflite",
                    help="also write the float32 TFLite model here (the int8-vs-float test's reference)")
    ap.add_argument("--calib", type=int, default=600)
    ap.add_argument("--recipe", default="dynamic_wi8_afp32", choices=("dynamic_wi8_afp32", "static_wi8_ai8"),
                    help="int8 weights with dynamically quantised activations (default), or fully static int8 "
                         "(0.95 decision agreement with float on generated examples: the front end's mixed "
                         "scales do not fit one int8 scale per tensor)")
    ap.add_argument("--check", type=int, default=600)
    ap.add_argument("--clean-fa", type=float, default=0.01,
                    help="share of the held-out training speakers' clean audio the thresholds may flag (default 0.01)")
    ap.add_argument("--clean", type=int, default=1200, help="drawn clean examples for the thresholds")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--lossy", action="store_true",
                    help="thresholds also hold on held-out audio through lossy chains (MP3/Vorbis/AAC, needs ffmpeg), "
                         "and the drawn clean examples follow the lossy recipe")
    ap.add_argument("--lossy-shares", type=lambda s: tuple(float(v) for v in s.split(",")), default=None,
                    metavar="CLEAN,DEFECT", help="as train_artifacts.py --lossy-shares (the drawn clean pool)")
    args = ap.parse_args()
    from lossy_coding import coder_or_exit

    lossy = coder_or_exit(args.lossy, "export_artifacts.py")
    torch.set_num_threads(1)
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    net = ArtifactNet()
    net.load_state_dict(ck["model"])
    net.eval()
    print(f"checkpoint {args.ckpt} step {ck.get('step')} weights {n_weights(net)}", flush=True)
    calib = generated(args.calib, CALIB_SEED, args.max_files)
    qbytes, fbytes = convert(net, calib, args.recipe)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(qbytes)
    print(f"wrote {args.out} ({len(qbytes)} bytes)")
    if args.float_out:
        # The float graph the int8 model was quantised from: the tests compare the two without torch.
        args.float_out.parent.mkdir(parents=True, exist_ok=True)
        args.float_out.write_bytes(fbytes)
        print(f"wrote {args.float_out} ({len(fbytes)} bytes)")
    # float vs int8 on other generated examples
    det = ArtifactDetector(args.out)
    check = generated(args.check, CHECK_SEED, args.max_files)
    with torch.no_grad():
        fs = torch.sigmoid(net(torch.from_numpy(np.stack([c[1] for c in check])),
                               torch.from_numpy(np.stack([c[2] for c in check])))).numpy()
    qs = np.stack([det.defect_scores(c[0]) for c in check])
    dec = lambda s: np.where(s.max(1) >= THRESHOLD, s.argmax(1) + 1, 0)  # noqa: E731
    agree = float(np.mean(dec(fs) == dec(qs)))
    print(f"int8 vs float on {len(check)} generated examples: decision agreement {agree:.4f}, "
          f"max |score diff| {np.abs(fs - qs).max():.3f}, mean {np.abs(fs - qs).mean():.4f}")
    thresholds = choose_thresholds(det, args.max_files, args.clean_fa, args.clean, lossy, args.lossy_shares)
    y = np.stack([c[3] for c in check])
    cls = np.array([c[4] for c in check])
    for name, thr in (("0.5", np.full(4, THRESHOLD)), ("chosen", np.array([thresholds[k] for k in DEFECTS[1:]]))):
        pred = predict_class(qs, thr)
        single = cls < 5
        rec = [np.mean(pred[single][cls[single] == c] == c) for c in range(5)]
        print(f"thresholds {name}: generated check set balanced accuracy {np.mean(rec):.4f} "
              f"(recall {' '.join(f'{r:.3f}' for r in rec)})")
    if not args.no_manifest:
        e = update_manifest(MODEL_KEY, args.out, MODEL_VERSION,
                            {"format": f"tflite int8 ({args.recipe})", "labels": list(DEFECTS),
                             "thresholds": thresholds, "weights": n_weights(net), "int8_float_agreement": agree})
        print(f"manifest: {MODEL_KEY} {e['version']} sha256 {e['sha256'][:16]}...")


if __name__ == "__main__":
    main()
