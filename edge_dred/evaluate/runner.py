"""Evaluation harness: every speech file x loss trace x condition, scored.

For each speech file the trace is replayed from packet 0 (wrapping around when
the file is longer), each condition is simulated with
:func:`edge_dred.simulate.run_condition`, and the output is scored against the
original signal.  The ``clean`` condition ignores the loss mask, so it runs once
per file and its scores are reused for every trace.

Everything lands in ``out_dir`` only at the end and atomically (temporary file
+ rename): an interrupted run leaves the previous results or nothing, never a
half-written file.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..constants import FRAME_SAMPLES, SAMPLE_RATE
from ..loss import TraceLoss, load_trace, loss_stats
from ..outputs import write_atomic
from . import metrics as M

__all__ = [
    "EvalConfigError",
    "EvalReport",
    "run_eval",
    "find_speech_files",
    "find_traces",
    "select_files",
    "DEFAULT_METRICS",
    "SCORE_COLUMNS",
]

AUDIO_SUFFIXES = (".wav", ".flac")
DEFAULT_METRICS: tuple[str, ...] = ("pesq", "stoi", "plcmos", "dnsmos", "artifacts")
SCORE_COLUMNS: tuple[str, ...] = tuple(c for m in DEFAULT_METRICS for c in M.METRIC_NAMES[m])
# Bounds on what a directory walk may hand us (untrusted input).
MAX_FILES = 100_000
MAX_TRACES = 1_000
RESULT_COLUMNS = (
    ("file", "speaker", "trace", "condition", "duration_s", "n_packets", "loss_rate", "mean_burst", "max_burst",
     "bitrate_bps", "decisions") + SCORE_COLUMNS + ("delay_mean_ms", "delay_p95_ms", "in_time", "too_late",
                                                    "concealed", "sim_s", "score_s")
)


class EvalConfigError(ValueError):
    """Bad arguments to the evaluation (missing directory, unknown condition, ...)."""


@dataclass
class EvalReport:
    """What :func:`run_eval` produced.

    Attributes
    ----------
    rows : list of dict
        One per file x trace x condition (columns of ``results.csv``).
    summary : list of dict
        One per trace x condition plus an ``all`` trace block (``summary.csv``).
    outputs : list of Path
        Files written into ``out_dir``.
    wall_s : float
        Total wall-clock time.
    n_items : int
        Simulations run (clean counted once per file).
    pesq_failures : int
        PESQ scores that came back NaN (no utterance found / too short).
    """

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    outputs: list[Path] = field(default_factory=list)
    wall_s: float = 0.0
    n_items: int = 0
    pesq_failures: int = 0


# ------------------------------------------------------------------ discovery


def find_speech_files(speech_dir: str | os.PathLike) -> list[Path]:
    """WAV/FLAC files under ``speech_dir`` (recursive), sorted by relative path."""
    root = Path(speech_dir)
    if not root.is_dir():
        raise EvalConfigError(f"speech directory not found: {root}")
    files: list[Path] = []
    for p in root.rglob("*"):
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
            files.append(p)
            if len(files) > MAX_FILES:
                raise EvalConfigError(f"more than {MAX_FILES} audio files under {root}")
    if not files:
        raise EvalConfigError(f"no .wav or .flac files under {root}")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def find_traces(traces_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every ``*.txt`` trace in ``traces_dir`` (not recursive), by file stem, sorted."""
    root = Path(traces_dir)
    if not root.is_dir():
        raise EvalConfigError(f"traces directory not found: {root}")
    paths = sorted(p for p in root.glob("*.txt") if p.is_file())
    if not paths:
        raise EvalConfigError(f"no *.txt loss traces in {root}")
    if len(paths) > MAX_TRACES:
        raise EvalConfigError(f"more than {MAX_TRACES} traces in {root}")
    return {p.stem: load_trace(p) for p in paths}


def _speaker(path: Path, root: Path) -> str:
    parent = path.relative_to(root).parent.as_posix()
    return parent if parent != "." else ""


def select_files(files: Sequence[Path], root: Path, max_files: int | None) -> list[Path]:
    """Pick up to ``max_files`` files spread evenly over speakers (parent folders).

    Speakers get files round-robin (a speaker with too few gives its share to the
    others); within a speaker the picks are evenly spaced through its sorted
    files.  Deterministic: the same tree gives the same selection.
    """
    if max_files is None or max_files >= len(files):
        return list(files)
    if isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1:
        raise EvalConfigError(f"max_files must be a positive int, got {max_files!r}")
    by_spk: dict[str, list[Path]] = {}
    for f in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        by_spk.setdefault(_speaker(f, root), []).append(f)
    speakers = sorted(by_spk)
    quota = dict.fromkeys(speakers, 0)
    left = max_files
    while left:
        for s in speakers:
            if left and quota[s] < len(by_spk[s]):
                quota[s] += 1
                left -= 1
    picked: list[Path] = []
    for s in speakers:
        n, k = len(by_spk[s]), quota[s]
        picked += [by_spk[s][(2 * i + 1) * n // (2 * k)] for i in range(k)]
    return sorted(picked, key=lambda p: p.relative_to(root).as_posix())


# --------------------------------------------------------------------- worker

_audio_cache: dict[str, np.ndarray] = {}


def _load_pcm(path: str) -> np.ndarray:
    # Items of one file come in a row: keep just the last file per process.
    pcm = _audio_cache.get(path)
    if pcm is None:
        from ..audio.wavio import load_audio

        pcm = load_audio(path).pcm
        _audio_cache.clear()
        _audio_cache[path] = pcm
    return pcm


def score(ref: np.ndarray, deg: np.ndarray, metrics: Iterable[str], heard: np.ndarray | None = None
          ) -> dict[str, float]:
    """Score ``deg`` against ``ref`` with the named metrics (see ``metrics.METRIC_NAMES``).

    ``heard``: what the listener hears when it is not sample-aligned with
    ``ref`` (adaptive playout); the non-intrusive metrics (PLCMOS, DNSMOS)
    score it, the intrusive ones (PESQ, STOI) score the aligned ``deg``.
    """
    out: dict[str, float] = {}
    heard = deg if heard is None else heard
    for m in metrics:
        if m == "pesq":
            out["pesq_wb"] = M.pesq_wb(ref, deg)
        elif m == "stoi":
            out["stoi"] = M.stoi(ref, deg)
        elif m == "plcmos":
            out["plcmos"] = M.plcmos(heard)
        elif m == "dnsmos":
            d = M.dnsmos(heard)
            out.update(dnsmos_ovrl=d["OVRL"], dnsmos_sig=d["SIG"], dnsmos_bak=d["BAK"], dnsmos_p808=d["P808"])
        elif m == "artifacts":
            out["artifact_frac"] = M.artifact_fraction(deg)
        else:
            raise EvalConfigError(f"unknown metric {m!r}; valid: {', '.join(M.METRIC_NAMES)}")
    return out


def _init_worker(onnx_threads: int) -> None:
    M.set_onnx_threads(onnx_threads)


def _run_item(
    path: str, rel: str, speaker: str, trace_name: str | None, trace: np.ndarray | None, condition: str,
    metrics: tuple[str, ...], keep_audio: bool, recovery_ms: int | None = None, max_delay_ms: int | None = None,
) -> dict[str, Any]:
    from ..simulate import run_condition

    pcm = _load_pcm(path)
    n_pk = -(-len(pcm) // FRAME_SAMPLES) + 8  # a few spare: the codec delay adds packets; extra are ignored
    mask = TraceLoss(trace).mask(n_pk) if trace is not None else np.zeros(n_pk, bool)
    t0 = time.perf_counter()
    kw: dict[str, Any] = {} if recovery_ms is None else {"recovery_ms": recovery_ms}
    if max_delay_ms is not None:
        kw["max_delay_ms"] = max_delay_ms
    res = run_condition(pcm, mask, condition, **kw)
    extra = getattr(res, "extra", {})
    t1 = time.perf_counter()
    if res.audio.shape != pcm.shape:
        raise RuntimeError(f"{condition}: output has {res.audio.shape} samples, input {pcm.shape}")
    scores = score(pcm, res.audio, metrics, extra.get("played"))
    t2 = time.perf_counter()
    po = extra.get("playout")
    outcomes = extra.get("loss_outcomes", [])
    st = loss_stats(res.lost)
    counts: dict[str, int] = {}
    for d in res.decisions:
        counts[d] = counts.get(d, 0) + 1
    row: dict[str, Any] = {
        "file": rel, "speaker": speaker, "trace": trace_name or "", "condition": condition,
        "duration_s": len(pcm) / SAMPLE_RATE, "n_packets": int(len(res.lost)),
        "loss_rate": st["loss_rate"], "mean_burst": st["mean_burst"], "max_burst": st["max_burst"],
        "bitrate_bps": float(res.total_bitrate_bps),
        "decisions": ";".join(f"{k}={v}" for k, v in sorted(counts.items())),
        **scores,
        # Delay above the condition's minimum: 0 for fixed playout by definition.
        "delay_mean_ms": po["mean_added_ms"] if po else 0.0,
        "delay_p95_ms": po["p95_delay_ms"] - po["min_ms"] if po else 0.0,
        **{k: sum(1 for o in outcomes if o == k) for k in ("in_time", "too_late", "concealed")},
        "sim_s": t1 - t0, "score_s": t2 - t1,
    }
    out: dict[str, Any] = {"row": row}
    if keep_audio:
        out["audio"] = res.audio
        out["lost"] = np.asarray(res.lost, bool)
        out["ref"] = pcm
    return out


# -------------------------------------------------------------------- output


def _csv_bytes(rows: list[dict[str, Any]], columns: Sequence[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    a = np.asarray(values, float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan"), 0
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size)


def summarise(rows: list[dict[str, Any]], traces: Sequence[str], conditions: Sequence[str],
              score_cols: Sequence[str]) -> list[dict[str, Any]]:
    """Per trace x condition (and ``all`` traces) means/std of scores and bit rate."""
    out = []
    for tr in list(traces) + ["all"]:
        for c in conditions:
            sel = [r for r in rows if r["condition"] == c and (tr == "all" or r["trace"] == tr)]
            if not sel:
                continue
            s: dict[str, Any] = {"trace": tr, "condition": c, "n": len(sel)}
            for col in list(score_cols) + ["bitrate_bps", "loss_rate", "delay_mean_ms", "delay_p95_ms"]:
                mean, std, n = _mean_std([r.get(col, float("nan")) for r in sel])
                s[col] = mean
                s[f"{col}_std"] = std
                if col in score_cols:
                    s[f"{col}_n"] = n
            out.append(s)
    return out


def paired_differences(rows: list[dict[str, Any]], traces: Sequence[str], conditions: Sequence[str],
                       score_cols: Sequence[str]) -> list[dict[str, Any]]:
    """Each condition after the first against the first, paired per file (and trace).

    Conditions run on the same files under the same traces, so the per-file
    difference is far less noisy than the difference of two means.  Per
    trace (and ``all``) x condition: the mean difference of every score, its
    standard error and the number of pairs (files where both scores are
    finite).
    """
    out: list[dict[str, Any]] = []
    if len(conditions) < 2:
        return out
    base = conditions[0]
    by: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["file"], r["trace"]), {})[r["condition"]] = r
    for tr in list(traces) + ["all"]:
        for c in conditions[1:]:
            pairs = [(v[base], v[c]) for (_, t), v in by.items() if (tr == "all" or t == tr) and base in v and c in v]
            if not pairs:
                continue
            d: dict[str, Any] = {"trace": tr, "condition": c, "base": base}
            for col in score_cols:
                diff = np.array([float(b.get(col, np.nan)) - float(a.get(col, np.nan)) for a, b in pairs])
                diff = diff[np.isfinite(diff)]
                d[col] = float(diff.mean()) if diff.size else float("nan")
                d[f"{col}_se"] = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
                d[f"{col}_n"] = int(diff.size)
            out.append(d)
    return out


_LABELS = {"pesq_wb": "PESQ-WB", "stoi": "STOI", "plcmos": "PLCMOS", "dnsmos_ovrl": "DNSMOS OVRL",
           "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK", "dnsmos_p808": "DNSMOS P.808",
           "artifact_frac": "artifacts (flagged s)"}
_MD_COLS = ("pesq_wb", "stoi", "plcmos", "dnsmos_ovrl", "artifact_frac")


def _fmt(v: float, digits: int = 3) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _summary_md(summary: list[dict[str, Any]], traces: dict[str, np.ndarray], conditions: Sequence[str],
                score_cols: Sequence[str], info: dict[str, Any],
                paired: Sequence[dict[str, Any]] = ()) -> str:
    cols = [c for c in _MD_COLS if c in score_cols]
    head = ("| condition | n | " + " | ".join(_LABELS[c] for c in cols)
            + " | loss % | kb/s | added delay mean / p95 ms |")
    sep = "|---|---:|" + "---:|" * len(cols) + "---:|---:|---:|"

    def block(tr: str) -> list[str]:
        lines = [head, sep]
        for s in summary:
            if s["trace"] != tr:
                continue
            vals = " | ".join(_fmt(s[c]) for c in cols)
            lines.append(f"| {s['condition']} | {s['n']} | {vals} | {_fmt(100 * s['loss_rate'], 1)} | "
                         f"{_fmt(s['bitrate_bps'] / 1000, 1)} | {_fmt(s['delay_mean_ms'], 0)} / "
                         f"{_fmt(s['delay_p95_ms'], 0)} |")
        return lines

    md = ["# edge-dred evaluation", ""]
    md.append(f"{info['n_files']} speech files ({info['n_speakers']} speakers, {info['audio_s']:.0f} s), "
              f"{len(traces)} traces, conditions: {', '.join(conditions)}.  Each trace is replayed from "
              "packet 0 and wraps around; `clean` ignores the trace (same scores under every trace).  "
              "Scores are means over files; `–` = not computed.  Adaptive-playout conditions (`*_adaptive`) "
              "play out time-scaled, not sample-aligned with the input: PLCMOS and DNSMOS score what the "
              "listener hears, PESQ and STOI the same audio with the time-scaling undone (the slots as "
              "decided); added delay is above the fixed minimum (mean over the stream, and its 95th "
              "percentile), per file averaged.")
    md += ["", "## All traces", ""] + block("all")
    for name, tr in traces.items():
        st = loss_stats(tr)
        md += ["", f"## Trace `{name}`", "",
               f"{tr.size} packets, {100 * st['loss_rate']:.1f}% lost, mean burst {st['mean_burst']:.1f}, "
               f"longest {st['max_burst']} (the loss % column is over the packets actually sent).", ""]
        md += block(name)
    if paired:
        md += ["", f"## Paired differences against `{conditions[0]}`", "",
               "Per file (same file, same trace), mean ± standard error (`paired.csv`).", "",
               "| trace | condition | n | " + " | ".join(_LABELS[c] for c in cols) + " |",
               "|---|---|---:|" + "---:|" * len(cols)]
        for d in paired:
            n = max((d.get(f"{c}_n", 0) for c in cols), default=0)
            cells = " | ".join("–" if not math.isfinite(d[c]) else
                               f"{d[c]:+.3f} ± {_fmt(d[f'{c}_se'])}" for c in cols)
            md.append(f"| {d['trace']} | {d['condition']} | {n} | {cells} |")
    md += ["", "## Bit rates", "", "| condition | mean total kb/s | std |", "|---|---:|---:|"]
    for s in summary:
        if s["trace"] == "all":
            md.append(f"| {s['condition']} | {_fmt(s['bitrate_bps'] / 1000, 2)} | "
                      f"{_fmt(s['bitrate_bps_std'] / 1000, 2)} |")
    md += ["", "## Run", "",
           f"- simulations: {info['n_items']} in {info['wall_s']:.1f} s wall ({info['jobs']} job(s))",
           f"- mean per simulation: {info['sim_s']:.2f} s simulate, {info['score_s']:.2f} s scoring "
           f"({', '.join(info['metrics'])})",
           f"- PESQ failures (no utterance / too short, scored NaN): {info['pesq_failures']}", ""]
    return "\n".join(md)


# ------------------------------------------------------------------------ run


def _is_lossless(conditions: Any, name: str) -> bool:
    # A condition that ignores the loss mask needs one run per file, not per trace.
    if isinstance(conditions, dict):
        return bool(getattr(conditions[name], "lossless", name == "clean"))
    return name == "clean"


def _fmt_eta(s: float) -> str:
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def run_eval(
    speech_dir: str | os.PathLike,
    traces_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    conditions: Sequence[str] | None = None,
    max_files: int | None = None,
    jobs: int = 1,
    progress: bool = True,
    metrics: Sequence[str] = DEFAULT_METRICS,
    plots: bool = True,
    recovery_ms: int | None = None,
    max_delay_ms: int | None = None,
) -> EvalReport:
    """Run every speech file x trace x condition and write results, summary and plots.

    Parameters
    ----------
    speech_dir : path
        Searched recursively for ``.wav``/``.flac``; the parent folder of a file is
        its speaker.
    traces_dir : path
        ``*.txt`` loss traces (one 0/1 per 20 ms packet).
    out_dir : path
        Receives ``results.csv``, ``summary.csv``, ``summary.md``,
        ``paired.csv`` (with two or more conditions: each against the first,
        paired per file), ``scores_<metric>.png`` and ``spectrogram_<trace>.png``.
    conditions : sequence of str, optional
        Names from ``edge_dred.simulate.CONDITIONS`` (default: all of them).
    max_files : int, optional
        Evaluate at most this many files, spread evenly over speakers.
    jobs : int
        Worker processes (1 = run in this process).
    progress : bool
        Print progress and an ETA on stderr.
    metrics : sequence of str
        Subset of ``("pesq", "stoi", "plcmos", "dnsmos")``.
    plots : bool
        Write the PNG plots (needs matplotlib).
    recovery_ms : int, optional
        Recovery window (receiver look-ahead) of the DRED and RED conditions (default
        ``edge_dred.receiver.DEFAULT_RECOVERY_MS``); the minimum delay of the
        adaptive-playout conditions.
    max_delay_ms : int, optional
        Delay budget of the adaptive-playout conditions (default
        ``edge_dred.playout.DEFAULT_MAX_DELAY_MS``).

    Returns
    -------
    EvalReport
    """
    from ..simulate import CONDITIONS

    valid = list(CONDITIONS)
    conds = list(valid if conditions is None else conditions)
    if not conds:
        raise EvalConfigError("no conditions given")
    bad = [c for c in conds if c not in CONDITIONS]
    if bad:
        raise EvalConfigError(f"unknown condition(s) {', '.join(bad)}; valid: {', '.join(valid)}")
    conds = list(dict.fromkeys(conds))
    mets = tuple(dict.fromkeys(metrics))
    bad = [m for m in mets if m not in M.METRIC_NAMES]
    if bad:
        raise EvalConfigError(f"unknown metric(s) {', '.join(bad)}; valid: {', '.join(M.METRIC_NAMES)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise EvalConfigError(f"jobs must be a positive int, got {jobs!r}")
    # Fail now, not after an hour of simulation, when a scorer is missing.
    have = M.available_metrics()
    missing = [m for m in mets if not have[m]]
    if missing:
        raise M.MissingEvalExtraError(f"metric(s) {', '.join(missing)} not installed: {M.INSTALL_HINT}")
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise M.MissingEvalExtraError(f"plots need matplotlib: {M.INSTALL_HINT}") from None

    root = Path(speech_dir)
    files = select_files(find_speech_files(root), root, max_files)
    traces = find_traces(traces_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EvalConfigError(f"output path exists and is not a directory: {out}")
    score_cols = [c for m in mets for c in M.METRIC_NAMES[m]]

    # Work list: clean once per file, every other condition per trace.
    items: list[tuple[Any, ...]] = []
    for fi, f in enumerate(files):
        rel, spk = f.relative_to(root).as_posix(), _speaker(f, root)
        for c in conds:
            if _is_lossless(CONDITIONS, c):
                items.append((str(f), rel, spk, None, None, c, mets, fi == 0, recovery_ms, max_delay_ms))
            else:
                for tn, tr in traces.items():
                    items.append((str(f), rel, spk, tn, tr, c, mets, fi == 0, recovery_ms, max_delay_ms))

    t_start = time.perf_counter()
    results: list[dict[str, Any] | None] = [None] * len(items)
    pesq_before = sum(M.pesq_error_counts().values())

    def report(done: int, it: tuple[Any, ...]) -> None:
        if not progress:
            return
        el = time.perf_counter() - t_start
        eta = el / done * (len(items) - done)
        w = len(str(len(items)))
        print(f"[{done:{w}d}/{len(items)}] {it[1]} {it[3] or '-'} {it[5]}  eta {_fmt_eta(eta)}",
              file=sys.stderr, flush=True)

    if jobs == 1:
        for i, it in enumerate(items):
            results[i] = _run_item(*it)
            report(i + 1, it)
        pesq_fail = sum(M.pesq_error_counts().values()) - pesq_before
    else:
        pesq_fail = 0
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(1,)) as ex:
            pending: dict[Future, int] = {}
            try:
                for i, it in enumerate(items):
                    pending[ex.submit(_run_item, *it)] = i
                done_n = 0
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        i = pending.pop(fut)
                        results[i] = fut.result()
                        done_n += 1
                        report(done_n, items[i])
            except BaseException:
                ex.shutdown(wait=False, cancel_futures=True)
                raise
        # Failures happened in the workers; count them from the rows instead.
        pesq_fail = sum(1 for r in results if r is not None and "pesq_wb" in r["row"]
                        and not math.isfinite(r["row"]["pesq_wb"]))

    # Expand: the clean row stands for every trace.
    rows: list[dict[str, Any]] = []
    example: dict[str, Any] = {"conditions": {}, "traces": {}}
    for it, res in zip(items, results):
        assert res is not None
        if it[3] is None:
            rows += [{**res["row"], "trace": tn} for tn in traces]
        else:
            rows.append(res["row"])
        if "audio" in res:
            example["ref"] = res["ref"]
            example["file"] = it[1]
            example["conditions"][(it[3], it[5])] = (res["audio"], res["lost"])
    order = {c: i for i, c in enumerate(conds)}
    tidx = {t: i for i, t in enumerate(traces)}
    rows.sort(key=lambda r: (r["file"], tidx[r["trace"]], order[r["condition"]]))
    summary = summarise(rows, list(traces), conds, score_cols)
    paired = paired_differences(rows, list(traces), conds, score_cols)
    wall = time.perf_counter() - t_start

    speakers = {r["speaker"] for r in rows}
    info = {
        "n_files": len(files), "n_speakers": len(speakers),
        "audio_s": sum(r["duration_s"] for r in rows if r["condition"] == conds[0] and r["trace"] == next(iter(traces))),
        "n_items": len(items), "wall_s": wall, "jobs": jobs, "metrics": list(mets),
        "sim_s": float(np.mean([r["row"]["sim_s"] for r in results if r])),
        "score_s": float(np.mean([r["row"]["score_s"] for r in results if r])),
        "pesq_failures": pesq_fail,
    }
    sum_cols = ["trace", "condition", "n"]
    for c in list(score_cols) + ["bitrate_bps", "loss_rate", "delay_mean_ms", "delay_p95_ms"]:
        sum_cols += [c, f"{c}_std"] + ([f"{c}_n"] if c in score_cols else [])
    written: list[Path] = []

    def put(name: str, data: bytes) -> None:
        write_atomic(out / name, data)
        written.append(out / name)

    outputs: dict[str, bytes] = {
        "results.csv": _csv_bytes(rows, [c for c in RESULT_COLUMNS if c not in SCORE_COLUMNS or c in score_cols]),
        "summary.csv": _csv_bytes(summary, sum_cols),
        "summary.md": _summary_md(summary, traces, conds, score_cols, info, paired).encode(),
    }
    if paired:
        pair_cols = ["trace", "condition", "base"]
        for c in score_cols:
            pair_cols += [c, f"{c}_se", f"{c}_n"]
        outputs["paired.csv"] = _csv_bytes(paired, pair_cols)
    if plots:
        from . import plots as P

        for col in score_cols:
            if col in _MD_COLS:
                outputs[f"scores_{col}.png"] = P.scores_png(summary, col, _LABELS[col], list(traces), conds)
        for tn in traces:
            outputs[f"spectrogram_{tn}.png"] = P.spectrogram_png(example, tn, conds)
    # Render everything first, then write: a failure while plotting leaves no partial set.
    for name, data in outputs.items():
        put(name, data)
    return EvalReport(rows=rows, summary=summary, outputs=written, wall_s=wall, n_items=len(items),
                      pesq_failures=pesq_fail)

