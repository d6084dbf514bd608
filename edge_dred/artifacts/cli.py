"""``edge-dred inspect FILE...``: per-second artifact labels and scores of audio files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import SAMPLE_RATE
from .generator import DEFECTS

__all__ = ["register", "cmd_inspect", "inspect_file", "file_summary", "monitor_summary"]


def inspect_file(path: str, detector) -> dict:
    """Load ``path`` (any format the CLI reads) and run the detector on every second.

    Raises
    ------
    ValueError
        Unreadable or unsupported file, or shorter than 1 s (message names the file).
    """
    from ..audio.wavio import load_audio

    loaded = load_audio(path)
    try:
        verdicts = detector.analyze(loaded.pcm)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return {"file": str(path), "duration_s": round(loaded.duration_s, 3), "notes": loaded.notes,
            "segments": [v.as_dict() for v in verdicts], "summary": file_summary(verdicts)}


def file_summary(verdicts) -> dict:
    """Flagged seconds per defect and the most confident flagged second."""
    counts: dict[str, int] = {}
    worst = None
    for v in verdicts:
        if v.label != "none":
            counts[v.label] = counts.get(v.label, 0) + 1
            if worst is None or v.scores[v.label] > worst.scores[worst.label]:
                worst = v
    return {"segments": len(verdicts), "flagged": sum(counts.values()), "counts": counts,
            "worst": worst.as_dict() if worst is not None else None}


def _summary_line(r: dict) -> str:
    s = r["summary"]
    if not s["flagged"]:
        return f"{r['file']}: clean ({s['segments']} s checked)"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items(), key=lambda kv: -kv[1]))
    w = s["worst"]
    return (f"{r['file']}: {s['flagged']} of {s['segments']} s flagged ({counts}); strongest: "
            f"{w['label']} {w['detail']} at {w['start_s']:.1f} s")


def _table(r: dict) -> str:
    lines = [f"{r['file']} ({r['duration_s']:.1f} s" + ("; " + "; ".join(r["notes"]) if r["notes"] else "") + ")",
             "  t (s)  label        " + "  ".join(f"{k[:6]:>6}" for k in DEFECTS) + "  detail"]
    for seg in r["segments"]:
        sc = "  ".join(f"{seg['scores'][k]:6.2f}" for k in DEFECTS)
        lines.append(f"  {seg['start_s']:5.1f}  {seg['label']:<11}  {sc}  {seg['detail']}")
    return "\n".join(lines)


def _plot(results: list[dict], pcms: list[np.ndarray], out: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib (pip install 'edge-dred[eval]')") from None
    fig, axes = plt.subplots(2 * len(results), 1, figsize=(11, 3.2 * len(results)), squeeze=False)
    colours = {"hum": "tab:orange", "hiss": "tab:blue", "distortion": "tab:red", "clicks": "tab:purple"}
    for i, (r, pcm) in enumerate(zip(results, pcms)):
        wav, spec = axes[2 * i, 0], axes[2 * i + 1, 0]
        t = np.arange(len(pcm)) / SAMPLE_RATE
        wav.plot(t, pcm / 32768.0, lw=0.3, color="k")
        wav.set_xlim(0, t[-1] if len(t) else 1)
        wav.set_ylim(-1, 1)
        wav.set_title(_summary_line(r), fontsize=8)
        spec.specgram(pcm / 32768.0, NFFT=512, Fs=SAMPLE_RATE, noverlap=352, cmap="magma")
        spec.set_ylabel("Hz")
        for seg in r["segments"]:
            if seg["label"] != "none":
                for ax in (wav, spec):
                    ax.axvspan(seg["start_s"], seg["start_s"] + 1.0, color=colours[seg["label"]], alpha=0.25)
                wav.text(seg["start_s"] + 0.02, 0.85, seg["label"], fontsize=7)
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..audio.wavio import load_audio
    from .detector import ArtifactDetector

    if args.plot and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot writes a PNG file, got {args.plot!r}")
    det = ArtifactDetector()
    results, pcms, failed = [], [], 0
    for path in args.files:
        try:
            r = inspect_file(path, det)
        except (ValueError, OSError) as e:
            print(f"edge-dred inspect: error: {e}", file=sys.stderr)
            failed += 1
            continue
        results.append(r)
        if args.plot:
            pcms.append(load_audio(path).pcm)
        if not args.json:
            print(_table(r))
            print(_summary_line(r), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    if args.plot and results:
        _plot(results, pcms, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 2 if failed else 0


def monitor_summary(report: dict[str, Any]) -> str:
    """One line on what the live monitor flagged, e.g. ``artifacts mic: 3 of 10 s flagged (hum 3) | ...``."""
    parts = []
    for name, r in report.items():
        if r.get("error"):
            parts.append(f"{name}: off ({r['error']})")
            continue
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["flagged_counts"].items()))
        part = f"{name}: {sum(r['flagged_counts'].values())} of {r['analysed_s']} s flagged"
        part += f" ({counts})" if counts else ""
        if r["dropped_s"] or r["skipped_by_governor_s"]:
            part += f", {r['dropped_s']} s dropped (busy), {r['skipped_by_governor_s']} s skipped (load)"
        parts.append(part)
    return "artifacts " + " | ".join(parts)


def register(sub: Any) -> None:
    """Add ``inspect`` to the ``edge-dred`` subparsers."""
    p = sub.add_parser("inspect", help="label every second of audio files: none, hum, hiss, distortion, clicks")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV; FLAC with soundfile)")
    p.add_argument("--json", action="store_true", help="print the per-second results as JSON instead of tables")
    p.add_argument("--plot", metavar="OUT.png", help="waveform and spectrogram with the flagged seconds marked")
    p.set_defaults(func=cmd_inspect)
