"""Adaptive playout measurements: a long Gilbert-Elliott run, and what time-scaling alone costs.

Usage::

    python benchmarks/playout_bench.py ge  --speech DIR [--files 12] [--seeds 1,2]
    python benchmarks/playout_bench.py tsm --speech DIR [--files 24] [--trace FILE]

``ge``: the first ``--files`` files (sorted, spread over speakers) concatenated
into one long stream, lost by a Gilbert-Elliott model (10 % loss, mean burst
8 packets, bursts clipped at 40 packets = 800 ms), through ``lbrr+dred``
(fixed 60 ms), ``lbrr+dred_adaptive`` and ``lbrr+dred`` with a 1040 ms window
(the ideal).  PLCMOS is the mean over 10 s segments of what is heard; the
table gives the share of the fixed->ideal gap the adaptive playout closes and
its added delay.

``tsm``: every file without loss through ``lbrr+dred``, then played out with
the adaptive playout's time-scaling driven by a scripted target: the target
trajectory the controller produced for that file on ``--trace``
(``replayed``), and a 60 <-> 200 ms square wave every 4 s (``square``).
PESQ-WB of what is heard against the input warped by the same cuts
(:func:`edge_dred.playout.warp_like`: PESQ cannot follow a drifting delay),
beside the unscaled decode against the input; PLCMOS of both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge_dred.constants import FRAME_MS, SAMPLE_RATE
from edge_dred.evaluate import metrics as M
from edge_dred.evaluate.runner import find_speech_files, select_files
from edge_dred.loss import GilbertElliott, TraceLoss, load_trace, loss_stats
from edge_dred.playout import Playout, warp_like
from edge_dred.receiver import build_receiver
from edge_dred.sender import Sender
from edge_dred.simulate import run_condition

SEG = 10 * SAMPLE_RATE
MAX_BURST = 40


def _files(speech: str, n: int) -> list[Path]:
    root = Path(speech)
    return select_files(find_speech_files(root), root, n)


def _load(p: Path) -> np.ndarray:
    from edge_dred.audio.wavio import load_audio

    return load_audio(str(p)).pcm


def _plcmos_segments(x: np.ndarray, n: int | None = None) -> float:
    """Mean PLCMOS over 10 s segments; ``n``: the input's length, which sets the segment grid.

    Time-scaled output is a little longer than its input: on the input's grid
    it gets the same segments (a short last one would score differently).
    """
    n = len(x) if n is None else n
    segs = [x[i:i + SEG] for i in range(0, n - SEG // 2, SEG)]
    return float(np.mean([M.plcmos(s) for s in segs]))


def clip_bursts(mask: np.ndarray, longest: int) -> np.ndarray:
    """Bursts longer than ``longest`` packets cut to ``longest`` (the rest arrives)."""
    out = mask.copy()
    run = 0
    for i, lost in enumerate(mask):
        run = run + 1 if lost else 0
        if run > longest:
            out[i] = False
    return out


def cmd_ge(args: argparse.Namespace) -> None:
    pcm = np.concatenate([_load(p) for p in _files(args.speech, args.files)])
    n_pk = len(pcm) // 320 + 8
    print(f"{len(pcm) / SAMPLE_RATE:.0f} s of speech ({args.files} files)\n")
    print("| seed | loss % | mean / longest burst | PLCMOS fixed 60 | adaptive | ideal 1040 | gap closed | "
          "added delay mean / p95 ms | lost packets in time / too late / concealed (adaptive) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for seed in args.seeds:
        mask = clip_bursts(GilbertElliott(10, 8, seed=seed).mask(n_pk), MAX_BURST)
        st = loss_stats(mask)
        fixed = run_condition(pcm, mask, "lbrr+dred")
        adapt = run_condition(pcm, mask, "lbrr+dred_adaptive")
        ideal = run_condition(pcm, mask, "lbrr+dred", recovery_ms=1040)
        pf, pa, pi = (_plcmos_segments(fixed.audio), _plcmos_segments(adapt.extra["played"], len(fixed.audio)),
                      _plcmos_segments(ideal.audio))
        po = adapt.extra["playout"]
        oc = adapt.extra["loss_outcomes"]
        closed = (pa - pf) / (pi - pf) if pi != pf else float("nan")
        print(f"| {seed} | {100 * st['loss_rate']:.1f} | {st['mean_burst']:.1f} / {st['max_burst']} | {pf:.3f} | "
              f"{pa:.3f} | {pi:.3f} | {100 * closed:.0f} % | {po['mean_added_ms']:.0f} / "
              f"{po['p95_delay_ms'] - po['min_ms']:.0f} | {oc.count('in_time')} / {oc.count('too_late')} / "
              f"{oc.count('concealed')} |")
        sys.stdout.flush()


class _Scripted:
    """A stand-in controller that follows a given target trajectory (one value per period)."""

    def __init__(self, targets: list[int], min_ms: int, max_ms: int) -> None:
        self.targets, self.min_ms, self.max_ms = targets, min_ms, max_ms
        self.target_ms, self.reason, self._i = targets[0], "scripted", 0

    def observe(self, lost: bool) -> None:
        self.target_ms = self.targets[min(self._i, len(self.targets) - 1)]
        self._i += 1

    def set_redundancy_ms(self, ms: int) -> None:
        pass


def _play_clean(pcm: np.ndarray, targets: list[int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """What is heard, and the input warped the same way (``warp_like``), cut to one length."""
    sender = Sender(40000, lbrr=True, dred_ms=1040)
    packets = sender.encode_stream(pcm)
    rx = build_receiver(lbrr=True, dred=True)
    player = Playout(rx, _Scripted(targets, 60, 200))
    out = [player.tick(p) for p in packets]
    out = [o for o in out if o is not None] + player.drain()
    la = sender.lookahead
    heard = np.concatenate(out)[la:]
    ref_media = np.zeros(len(packets) * 320, np.int16)
    ref_media[la:la + len(pcm)] = pcm
    ref = warp_like(ref_media, player.events)[la:]
    n = min(len(ref), len(heard))
    return heard[:n], ref[:n], player.report(trace=False)


def _pesq_unaligned(ref: np.ndarray, heard: np.ndarray) -> float:
    # PESQ aligns time itself (per utterance); only the lengths must agree: pad the shorter with silence.
    n = max(len(ref), len(heard))
    return M.pesq_wb(np.pad(ref, (0, n - len(ref))), np.pad(heard, (0, n - len(heard))))


def cmd_tsm(args: argparse.Namespace) -> None:
    trace = load_trace(args.trace) if args.trace else None
    rows = {"none": [], "replayed": [], "square": []}
    mos = {"none": [], "replayed": [], "square": []}
    stats = {"replayed": [], "square": []}
    for p in _files(args.speech, args.files):
        pcm = _load(p)
        n_pk = len(pcm) // 320 + 8
        base = run_condition(pcm, None, "lbrr+dred")
        rows["none"].append(M.pesq_wb(pcm, base.audio))
        mos["none"].append(M.plcmos(base.audio))
        if trace is not None:
            a = run_condition(pcm, TraceLoss(trace).mask(n_pk), "lbrr+dred_adaptive")
            targets = [t["target_ms"] for t in a.extra["playout"]["trace"]]
            heard, ref, rep = _play_clean(pcm, [60] * 3 + targets)
            rows["replayed"].append(M.pesq_wb(ref, heard))
            mos["replayed"].append(M.plcmos(heard))
            stats["replayed"].append(rep)
        square = [60 if (i * FRAME_MS // 4000) % 2 == 0 else 200 for i in range(n_pk)]
        heard, ref, rep = _play_clean(pcm, square)
        rows["square"].append(M.pesq_wb(ref, heard))
        mos["square"].append(M.plcmos(heard))
        stats["square"].append(rep)
    none = np.asarray(rows["none"])
    print(f"{len(none)} files, no loss, lbrr+dred decode; PESQ-WB of what is heard against the input warped "
          "by the same cuts\n")
    print("| time-scaling | PESQ-WB | paired difference ± s.e. | PLCMOS | paired difference ± s.e. | "
          "stretched / compressed s | mean delay ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| none | {none.mean():.3f} | – | {np.mean(mos['none']):.3f} | – | – | 60 |")
    for k in ("replayed", "square"):
        if not rows[k]:
            continue
        v = np.asarray(rows[k])
        d = v - none
        st = stats[k]
        dl = np.mean([s["mean_delay_ms"] for s in st])
        m = np.asarray(mos[k]) - np.asarray(mos["none"])
        print(f"| {k} | {v.mean():.3f} | {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(d.size):.3f} | "
              f"{np.mean(mos[k]):.3f} | {m.mean():+.3f} ± {m.std(ddof=1) / np.sqrt(m.size):.3f} | "
              f"{sum(s['stretched_ms'] for s in st) / 1000:.1f} / {sum(s['compressed_ms'] for s in st) / 1000:.1f} | "
              f"{dl:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("ge")
    g.add_argument("--speech", required=True)
    g.add_argument("--files", type=int, default=12)
    g.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    g.set_defaults(func=cmd_ge)
    t = sub.add_parser("tsm")
    t.add_argument("--speech", required=True)
    t.add_argument("--files", type=int, default=24)
    t.add_argument("--trace", help="loss trace whose controller targets are replayed on the clean stream")
    t.set_defaults(func=cmd_tsm)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
