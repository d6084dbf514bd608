"""Measure the shipped artifact detector against the bars of its issue; prints every table.

1. Held-out generated set: dev speakers (``../shared/data/speech/dev``) with
   generator seeds from a stream training never draws from
   (``artifact_data.EVAL_STREAM``): confusion matrix, per-class recall,
   balanced accuracy (bar >= 0.986), recall per variant, and the mixed
   (two-defect) multi-label check.
2. False alarms, any defect flagged, on every 1 s segment: clean dev speech
   (bar <= 1 %), after this project's Opus at 16-64 kb/s and after
   ``lbrr+dred`` recovery on the four real traces (bar <= 2 %).
3. ``zeros`` condition (holes filled with silence): share of the seconds that
   contain a hole flagged as clicks (bar >= 90 %), and as anything.
4. Speed: front end + int8 network per 1 s segment on one core (bar <= 5 ms).

Usage::

    .venv/bin/python training/eval_artifacts.py                  # everything (about 15 min here)
    .venv/bin/python training/eval_artifacts.py --n-generated 500 --max-files-dred 12   # quicker
    .venv/bin/python training/eval_artifacts.py --heldout   # the same tables on the held-out *training*
                                                            # files (model selection, thresholds), not dev
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from artifact_data import (EVAL_STREAM, file_activity, load_speech, make_example, random_crop,  # noqa: E402
                           speaker_split)

from edge_dred.constants import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402
from edge_dred.artifacts.detector import ArtifactDetector, segments  # noqa: E402
from edge_dred.artifacts.frontend import SEGMENT, features  # noqa: E402
from edge_dred.artifacts.generator import DEFECTS  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def _md(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def generated_table(det: ArtifactDetector, speech, n: int, source: str = "dev speech") -> str:
    act = [file_activity(x) for x in speech]
    cm = np.zeros((5, 5), int)
    per_variant: dict[str, list[int]] = {}
    mixed_both, mixed_exact, n_mixed = 0, 0, 0
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence((EVAL_STREAM, i)))
        cls = i % 6
        a, y, c, params = make_example(random_crop(speech, act, rng), rng, cls=cls)
        v = det.classify(a)
        if cls == 5:
            n_mixed += 1
            on = np.array([v.scores[k] >= 0.5 for k in DEFECTS[1:]])
            mixed_both += int(np.all(on[y > 0]))
            mixed_exact += int(np.array_equal(on, y > 0))
            continue
        p = DEFECTS.index(v.label)
        cm[c, p] += 1
        key = f"{DEFECTS[c]}/{params['variant']}"
        if DEFECTS[c] == "hum":  # one variant: break it down by level instead (5 dB bands)
            lo = int(np.floor(params["level_db"] / 5) * 5)
            key = f"hum/{lo} to {lo + 5} dB"
        per_variant.setdefault(key, []).append(int(p == c))
    rec = np.diag(cm) / np.maximum(cm.sum(1), 1)
    bacc = float(rec.mean())
    lines = [f"## 1. Held-out generated set: {source}, unseen generator seeds ({cm.sum()} single-defect "
             f"examples, {n_mixed} mixed)", "",
             _md(["true \\ predicted", *DEFECTS, "recall"],
                 [[DEFECTS[i], *cm[i].tolist(), f"{rec[i]:.4f}"] for i in range(5)]), "",
             f"**balanced accuracy {bacc:.4f}** (bar >= 0.986)", "",
             _md(["class/variant", "n", "recall"],
                 [[k, len(v), f"{np.mean(v):.3f}"] for k, v in sorted(per_variant.items())]), ""]
    if n_mixed:
        lines += [f"mixed (two defects): both detected in {mixed_both / n_mixed:.3f}, exact label set in "
                  f"{mixed_exact / n_mixed:.3f} of {n_mixed}", ""]
    return "\n".join(lines)


def _flag_rows(name: str, verdicts: list) -> list:
    n = len(verdicts)
    labs = [v.label for v in verdicts if v.label != "none"]
    by = ", ".join(f"{k} {labs.count(k)}" for k in DEFECTS[1:] if labs.count(k)) or "-"
    return [name, n, len(labs), f"{100 * len(labs) / max(n, 1):.2f} %", by]


def _floor_snr(pcm: np.ndarray) -> float:
    from edge_dred.artifacts.generator import active_level

    x = pcm.astype(np.float64) / 32768.0
    p, _ = active_level(x)
    n = len(x) // FRAME_SAMPLES
    fp = np.mean(x[:n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES) ** 2, axis=1)
    return float(10 * np.log10(p / max(np.percentile(fp, 5), 1e-12)))


def false_alarm_table(det, files, traces, bitrates, dred_files) -> tuple[str, str]:
    from edge_dred.audio.wavio import load_audio
    from edge_dred.codec.opus import OpusEncoder
    from edge_dred.loss import TraceLoss
    from edge_dred.simulate import run_condition

    la = int(OpusEncoder().lookahead)
    rows = []
    clean = []
    coded = {b: [] for b in bitrates}
    pcms = [load_audio(f).pcm for f in files]
    t0 = time.time()
    for pcm in pcms:
        clean += det.analyze(pcm)
        for b in bitrates:
            coded[b] += det.analyze(run_condition(pcm, None, "clean", bitrate=b).audio)
    rows.append(_flag_rows(f"clean speech ({len(files)} files)", clean))
    # What the clean seconds flagged look like: the recording's own noise floor and mains lines.
    floor_rows = []
    per_file = [det.analyze(p) for p in pcms]
    for f, pcm, vs in zip(files, pcms, per_file):
        snr = _floor_snr(pcm)
        flagged = [v for v in vs if v.label != "none"]
        floor_rows.append((snr, len(flagged), len(vs), Path(f).name,
                           "; ".join(sorted({v.text() for v in flagged})[:3])))
    floor_rows.sort()
    buckets = [(-99, 30), (30, 35), (35, 40), (40, 99)]
    extra = ["", "clean seconds flagged, by the file's own noise floor (active speech level over the "
             "5th-percentile 20 ms frame, dB):", "",
             _md(["floor SNR", "files", "seconds", "flagged", "rate"],
                 [[f"{lo}..{hi}", sum(1 for r in floor_rows if lo <= r[0] < hi),
                   sum(r[2] for r in floor_rows if lo <= r[0] < hi), sum(r[1] for r in floor_rows if lo <= r[0] < hi),
                   f"{100 * sum(r[1] for r in floor_rows if lo <= r[0] < hi) / max(1, sum(r[2] for r in floor_rows if lo <= r[0] < hi)):.1f} %"]
                  for lo, hi in buckets]), "",
             "most flagged files: " + " | ".join(f"{r[3]} (floor {r[0]:.0f} dB) {r[1]}/{r[2]}: {r[4]}"
                                                 for r in sorted(floor_rows, key=lambda r: -r[1])[:5])]
    for b in bitrates:
        rows.append(_flag_rows(f"Opus {b // 1000} kb/s (no loss)", coded[b]))
    print(f"[clean + Opus: {time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    dred_all: list = []
    hole_rows = []
    hole_click, hole_any, hole_n, nohole_any, nohole_n = 0, 0, 0, 0, 0
    for tname, tr in traces.items():
        dred_v = []
        h_click = h_any = h_n = 0
        t0 = time.time()
        for pcm in pcms[:dred_files]:
            n_pk = -(-len(pcm) // FRAME_SAMPLES) + 8
            mask = TraceLoss(tr).mask(n_pk)
            dred_v += det.analyze(run_condition(pcm, mask, "lbrr+dred").audio)
            res = run_condition(pcm, mask, "zeros")
            lost = np.flatnonzero(np.asarray(res.lost, bool))
            for v, (start, _) in zip(det.analyze(res.audio), segments(res.audio)):
                s0 = int(round(start * SAMPLE_RATE))
                # packet i's audio covers input samples [i*320 - la, (i+1)*320 - la)
                hole = np.any((lost * FRAME_SAMPLES - la < s0 + SEGMENT) & ((lost + 1) * FRAME_SAMPLES - la > s0))
                if hole:
                    h_n += 1
                    h_click += int("clicks" in v.flagged)
                    h_any += int(v.label != "none")
                else:
                    nohole_n += 1
                    nohole_any += int(v.label != "none")
        rows.append(_flag_rows(f"lbrr+dred, trace {tname} ({min(dred_files, len(pcms))} files)", dred_v))
        dred_all += dred_v
        hole_rows.append([tname, h_n, f"{100 * h_click / max(h_n, 1):.1f} %", f"{100 * h_any / max(h_n, 1):.1f} %"])
        hole_click += h_click
        hole_any += h_any
        hole_n += h_n
        print(f"[trace {tname}: {time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    rows.append(_flag_rows("lbrr+dred, all four traces", dred_all))
    hole_rows.append(["all", hole_n, f"{100 * hole_click / max(hole_n, 1):.1f} %",
                      f"{100 * hole_any / max(hole_n, 1):.1f} %"])
    fa = "\n".join(["## 2. False alarms (1 s segments flagged as any defect)", "",
                    _md(["audio", "segments", "flagged", "rate", "as"], rows), "",
                    "bars: clean <= 1 %; Opus 16-64 kb/s and lbrr+dred <= 2 %", *extra, ""])
    zs = "\n".join(["## 3. `zeros` condition: seconds containing a hole (holes filled with silence)", "",
                    _md(["trace", "seconds with a hole", "flagged clicks", "flagged any"], hole_rows), "",
                    f"seconds without a hole flagged as anything: {nohole_any} of {nohole_n}; bar: clicks >= 90 %",
                    ""])
    return fa, zs


def speed_table(det: ArtifactDetector, n: int = 200) -> str:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SEGMENT) * 0.05).astype(np.float32)
    det.classify(x)
    tf, tn = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        s, g = features(x)
        t1 = time.perf_counter()
        det.network_scores(s, g)
        t2 = time.perf_counter()
        tf.append(t1 - t0)
        tn.append(t2 - t1)
    tot = np.array(tf) + np.array(tn)
    return "\n".join(["## 4. Speed per 1 s segment (one thread; median / 90th percentile of "
                      f"{n})", "",
                      _md(["part", "median ms", "p90 ms"],
                          [["front end (numpy)", f"{np.median(tf) * 1e3:.2f}", f"{np.percentile(tf, 90) * 1e3:.2f}"],
                           ["int8 network (TFLite)", f"{np.median(tn) * 1e3:.2f}", f"{np.percentile(tn, 90) * 1e3:.2f}"],
                           ["total", f"{np.median(tot) * 1e3:.2f}", f"{np.percentile(tot, 90) * 1e3:.2f}"]]),
                      "", "bar: <= 5 ms", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", type=Path, default=DATA / "speech" / "dev")
    ap.add_argument("--traces", type=Path, default=DATA / "traces")
    ap.add_argument("--model", type=Path, help="a .tflite to evaluate instead of the shipped one")
    ap.add_argument("--n-generated", type=int, default=2400)
    ap.add_argument("--bitrates", default="16000,24000,32000,48000,64000")
    ap.add_argument("--max-files-dred", type=int, default=48, help="dev files per trace for lbrr+dred and zeros")
    ap.add_argument("--max-files", type=int, default=None, help="dev files for the clean and Opus rows (default all)")
    ap.add_argument("--only", default="generated,false_alarms,speed")
    ap.add_argument("--heldout", action="store_true",
                    help="evaluate on the held-out training files (artifact_data.speaker_split) instead of --dev")
    ap.add_argument("--threshold", help="one threshold for every defect, or four (hum,hiss,distortion,clicks), "
                                        "instead of the manifest's (a --model gets 0.5 otherwise)")
    args = ap.parse_args()
    det = ArtifactDetector(args.model)
    if args.threshold is not None:
        det.thresholds[:] = [float(t) for t in args.threshold.split(",")]
    only = set(args.only.split(","))
    print(f"# Artifact detector evaluation ({det.path.name}; thresholds "
          + ", ".join(f"{k} {t:.3f}" for k, t in zip(DEFECTS[1:], det.thresholds)) + ")\n")
    if "speed" in only:
        print(speed_table(det), flush=True)
    from edge_dred.evaluate.runner import find_speech_files, find_traces, select_files

    if args.heldout:  # the training files held out of training (model selection), never the dev speakers
        root = DATA / "speech" / "train"
        files = speaker_split(root)[1]
        print(f"held-out training files ({len(files)}) instead of dev speech: every table below is on them\n")
    else:
        root = args.dev
        files = sorted(find_speech_files(args.dev))
    speech = load_speech(files)
    if "generated" in only:
        print(generated_table(det, speech, args.n_generated,
                              "held-out training speech" if args.heldout else "dev speech"), flush=True)
    if "false_alarms" in only:
        pick = select_files(files, root, args.max_files_dred)
        rest = pick + [f for f in files if f not in pick]  # the dred/zeros subset first, spread over speakers
        rest = rest[:args.max_files] if args.max_files else rest
        fa, zs = false_alarm_table(det, rest, find_traces(args.traces),
                                   [int(b) for b in args.bitrates.split(",")], args.max_files_dred)
        print(fa)
        print(zs, flush=True)


if __name__ == "__main__":
    main()
