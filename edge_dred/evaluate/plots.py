"""PNG plots for the evaluation report (matplotlib, Agg canvas, no pyplot state).

Each function returns the PNG bytes; the runner writes them atomically.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from ..constants import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["scores_png", "spectrogram_png"]


def _figure(w: float, h: float) -> Any:
    # Figure + Agg canvas directly: never touches pyplot's global backend/state,
    # so it is safe in worker processes and headless machines.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def scores_png(summary: list[dict[str, Any]], col: str, label: str, traces: Sequence[str],
               conditions: Sequence[str]) -> bytes:
    """Grouped bars: one group per trace (plus "all"), one bar per condition, ±1 std.

    Parameters
    ----------
    summary : list of dict
        Rows from :func:`edge_dred.evaluate.runner.summarise`.
    col : str
        Score column (e.g. ``"pesq_wb"``).
    label : str
        Axis label.
    traces, conditions : sequence of str
        Group and bar order.
    """
    groups = list(traces) + ["all"]
    lut = {(s["trace"], s["condition"]): s for s in summary}
    fig = _figure(max(7.0, 1.6 * len(groups) + 3), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(conditions))
    x = np.arange(len(groups))
    for k, c in enumerate(conditions):
        vals = [lut.get((g, c), {}).get(col, np.nan) for g in groups]
        errs = [lut.get((g, c), {}).get(f"{col}_std", np.nan) for g in groups]
        ax.bar(x + (k - (len(conditions) - 1) / 2) * width, vals, width, yerr=errs, capsize=2, label=c)
    ax.set_xticks(x)
    ax.set_xticklabels([g.replace("_is_lost", "").replace("plc2022_", "") for g in groups], rotation=15)
    ax.set_ylabel(label)
    ax.set_title(f"{label} per trace and condition (mean; whiskers: ±1 std over files)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _png(fig)


def _spans(lost: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def spectrogram_png(example: dict[str, Any], trace: str, conditions: Sequence[str]) -> bytes:
    """Spectrograms of one file: reference on top, then each condition, lost packets shaded.

    Parameters
    ----------
    example : dict
        ``ref`` (int16 input), ``file`` (name) and ``conditions`` mapping
        ``(trace or None, condition)`` to ``(audio, lost_mask)``; ``None`` is
        the key of conditions that ignore the trace (``clean``).
    trace : str
        Which trace's runs to show.
    conditions : sequence of str
        Row order.
    """
    rows: list[tuple[str, np.ndarray, np.ndarray | None]] = [("original", example["ref"], None)]
    for c in conditions:
        got = example["conditions"].get((trace, c)) or example["conditions"].get((None, c))
        if got is not None:
            audio, lost = got
            rows.append((c, audio, lost if lost.any() else None))
    fig = _figure(12.0, 1.5 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    pk_s = FRAME_SAMPLES / SAMPLE_RATE
    for ax, (name, audio, lost) in zip(axes, rows):
        x = np.asarray(audio, np.float64) / 32768.0
        # Tiny dither keeps log(0) out of digital silence (zero-filled holes).
        x = x + 1e-7 * np.random.default_rng(0).standard_normal(x.size)
        ax.specgram(x, NFFT=512, Fs=SAMPLE_RATE, noverlap=384, cmap="magma", vmin=-130, vmax=-20)
        if lost is not None:
            for a, b in _spans(lost):
                ax.axvspan(a * pk_s, b * pk_s, color="cyan", alpha=0.25, lw=0)
        ax.set_ylabel(f"{name}\nHz", fontsize="small")
        ax.set_ylim(0, SAMPLE_RATE / 2)
    axes[-1].set_xlim(0, len(example["ref"]) / SAMPLE_RATE)
    axes[-1].set_xlabel("time (s); shaded: lost packets")
    fig.suptitle(f"{example.get('file', '')} under trace {trace}", fontsize="medium")
    fig.tight_layout()
    return _png(fig)
