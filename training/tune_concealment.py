"""Compare concealment / recovery settings on *training* speech under synthetic loss.

Receiver-side knobs (cross-fades, hand-over from libopus's concealment, fades)
are chosen here, never on the dev set: every file comes from
``../shared/data/speech/train`` and every loss mask from seeded
Gilbert-Elliott models, so the dev speech and the real traces stay unseen.

Each file is encoded once per sender configuration; every variant is a
different receiver over the same packets and the same mask, so differences
are paired.  Prints a table of PESQ-WB and PLCMOS means (and the paired
difference to the first variant) per loss model.

Usage::

    .venv/bin/python training/tune_concealment.py --files 24 --variants plc
    .venv/bin/python training/tune_concealment.py --files 24 --variants dred
    # candidate predictors (weight files from export_plc.py --out ... --no-manifest):
    .venv/bin/python training/tune_concealment.py --only opus_plc,neural --plc-weights band=/tmp/plc_band.bin
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

# Twin tag -> vocoder weight file (--fp-vocoder, --vocoder-twin; set before the worker pool forks).
VOCODER_FILES: dict[str, str] = {}
TRAIN = REPO.parent / "shared" / "data" / "speech" / "train" / "vcc2016"
# (loss %, mean burst in packets): sparse single losses, moderate bursts, long bursts.
LOSS_MODELS = [(15.0, 1.3), (20.0, 2.5), (12.0, 5.0)]

# name -> (sender kind, receiver spec).  "plc" holds changes to the shipped ConcealmentPolicy
# (edge_dred.plc.POLICY); "dred" holds DredRecoverer's private postfilter ("postfilter").  The
# measurements behind the shipped policy are in docs/measurements.md.
PLC_VARIANTS: dict[str, dict] = {
    "opus_plc": {"kind": "plain"},
    "neural": {"kind": "plain", "plc": {}},   # the shipped policy
    # How long the vocoder plays: libopus's lead, fade start and length.
    "lead0_fo40": {"kind": "plain", "plc": {"opus_lead_ms": 0}},
    "lead40": {"kind": "plain", "plc": {"opus_lead_ms": 40}},
    "fo60": {"kind": "plain", "plc": {"fade_start_ms": 60, "fade_ms": 60}},
    "fo80": {"kind": "plain", "plc": {"fade_start_ms": 80, "fade_ms": 80}},
    "fo40_80": {"kind": "plain", "plc": {"fade_ms": 80}},
    "fo100": {"kind": "plain", "plc": {"fade_start_ms": 100, "fade_ms": 100}},
    # Feature analysis: every slot as it plays (None), or only the last ms of output when a loss starts.
    "eager": {"kind": "plain", "plc": {"history_ms": None}},   # every slot (the shipped policy keeps 1000 ms)
    "lazy250": {"kind": "plain", "plc": {"history_ms": 250}},
    "lazy120": {"kind": "plain", "plc": {"history_ms": 120}},
    "lazy500": {"kind": "plain", "plc": {"history_ms": 500}},
    "lazy1000": {"kind": "plain", "plc": {"history_ms": 1000}},
    # Teacher-forced frames when the vocoder is primed at a loss (the vocoder trains with 3).
    "prime3": {"kind": "plain", "plc": {"prime_frames": 3}},
    "prime2": {"kind": "plain", "plc": {"prime_frames": 2}},
    "prime1": {"kind": "plain", "plc": {"prime_frames": 1}},
    "prime0": {"kind": "plain", "plc": {"prime_frames": 0}},
    # Diagnostics: the vocoder only for losses that start after a frame with
    # feature[i] above (">") or below ("<") a threshold; libopus conceals the others
    # (these conditions replace NeuralPLC's voicing gate).
    "gate_unvoiced": {"kind": "plain", "plc": {}, "gate": [(19, "<", 0.5)]},
    "gate_loud": {"kind": "plain", "plc": {}, "gate": [(0, ">", -1.0)]},
    "gate_quiet": {"kind": "plain", "plc": {}, "gate": [(0, "<", -1.0)]},
    "gate_voiced_loud": {"kind": "plain", "plc": {}, "gate": [(19, ">", 0.5), (0, ">", -1.0)]},
    # The voicing gate: off, or other thresholds.
    "ungated": {"kind": "plain", "plc": {"voiced_gate": None}},
    "vg30": {"kind": "plain", "plc": {"voiced_gate": 0.3}},
    "vg70": {"kind": "plain", "plc": {"voiced_gate": 0.7}},
    # The vocoder postfilter: off, or an (envelope, pitch) pair of strengths (a new
    # VocoderPostfilter per receiver).
    "nopf": {"kind": "plain", "plc": {"postfilter": False}},
    "pf_env50": {"kind": "plain", "plc": {"postfilter": (0.5, 0.0)}},
    "pf_e70p70": {"kind": "plain", "plc": {"postfilter": (0.7, 0.7)}},
    "pf_e70p30": {"kind": "plain", "plc": {"postfilter": (0.7, 0.3)}},
    # libopus's concealment of gated losses (and past the vocoder's fade) pulled towards the
    # predicted features: off, or another strength.
    "noshape": {"kind": "plain", "plc": {"shape_gated": None}},
    "shape25": {"kind": "plain", "plc": {"shape_gated": 0.25}},
    "notail": {"kind": "plain", "plc": {"shape_tail": False}},
    # Diagnostics: the predictor's output replaced by the true features of the lost frames
    # (all 20, or the 18 cepstral ones), same policy as "neural".
    "oracle": {"kind": "plain", "plc": {}, "oracle": list(range(20))},
    # The hand-back's cross-fade: one frame instead of the whole first real slot.
    "hb160": {"kind": "plain", "plc": {"end_xfade": 160}},
    "oracle_cep": {"kind": "plain", "plc": {}, "oracle": list(range(18))},
}
DRED_VARIANTS: dict[str, dict] = {
    "lbrr": {"kind": "lbrr"},
    "lbrr+dred": {"kind": "lbrr+dred", "dred": {}},
    "lbrr+dred+plc": {"kind": "lbrr+dred", "dred": {}, "plc": {}},
    "lbrr+dred_nopf": {"kind": "lbrr+dred", "dred": {"postfilter": False}},
    "lbrr+dred_pf_env50": {"kind": "lbrr+dred", "dred": {"postfilter": (0.5, 0.0)}},
    "lbrr+dred_mean": {"kind": "lbrr+dred:mean", "dred": {}},   # rate control: lowest mean level first
    "dred": {"kind": "dred", "dred": {}},
    "lbrr+dred@200": {"kind": "lbrr+dred@200", "dred": {}},
    "lbrr+dred#2": {"kind": "lbrr+dred#2", "dred": {}},
    "lbrr+dred#3": {"kind": "lbrr+dred#3", "dred": {}},
    "lbrr+dred#4": {"kind": "lbrr+dred#4", "dred": {}},
    "dred#2": {"kind": "dred#2", "dred": {}},
    "dred#4": {"kind": "dred#4", "dred": {}},
    "lbrr+dred@520": {"kind": "lbrr+dred@520", "dred": {}},
    "dred@200": {"kind": "dred@200", "dred": {}},
    "dred@520": {"kind": "dred@520", "dred": {}},
    # The hand-back's cross-fade: one frame instead of the whole first real slot.
    "lbrr+dred_hb160": {"kind": "lbrr+dred", "dred": {"end_xfade": 160}},
    "dred_hb160": {"kind": "dred", "dred": {"end_xfade": 160}},
    # Output frames a fresh extractor analyses at a burst start to prime the vocoder (the last
    # few are used; the rest let its pitch track settle).
    "lbrr+dred_hist12": {"kind": "lbrr+dred", "dred": {"history_frames": 12}},
    "lbrr+dred_hist16": {"kind": "lbrr+dred", "dred": {"history_frames": 16}},
    "lbrr+dred_hist20": {"kind": "lbrr+dred", "dred": {"history_frames": 20}},
    "dred_hist12": {"kind": "dred", "dred": {"history_frames": 12}},
    # Teacher-forced frames when the vocoder is primed at a burst start (the vocoder trains with 3).
    "lbrr+dred_prime3": {"kind": "lbrr+dred", "dred": {"prime_frames": 3}},
    "lbrr+dred_prime2": {"kind": "lbrr+dred", "dred": {"prime_frames": 2}},
    "lbrr+dred_prime1": {"kind": "lbrr+dred", "dred": {"prime_frames": 1}},
    "lbrr+dred_prime0": {"kind": "lbrr+dred", "dred": {"prime_frames": 0}},
    "dred_prime0": {"kind": "dred", "dred": {"prime_frames": 0}},
    "lbrr+dred_p1h10": {"kind": "lbrr+dred", "dred": {"prime_frames": 1, "history_frames": 10}},
    "lbrr+dred_p1h8": {"kind": "lbrr+dred", "dred": {"prime_frames": 1, "history_frames": 8}},
    "dred_hist20": {"kind": "dred", "dred": {"history_frames": 20}},
    "dred_mean": {"kind": "dred:mean", "dred": {}},
}


def _files(n: int, root: Path = TRAIN) -> list[Path]:
    spk = sorted(p for p in root.iterdir() if p.is_dir()) or [root]
    per = [sorted(p.glob("*.flac")) for p in spk]
    per = [lst for lst in per if lst]
    if not per:
        raise SystemExit(f"no .flac files under {root}")
    out, i = [], 0
    while len(out) < n:  # round robin over speakers, spread over each speaker's list
        lst = per[i % len(per)]
        out.append(lst[(37 * (i // len(per)) + 11) % len(lst)])
        i += 1
    return out


def _pcm(path: Path) -> np.ndarray:
    from edge_dred.audio.wavio import load_audio

    return load_audio(str(path)).pcm


class _OracleFeatures:
    """Predictor stand-in: the true features (``dims``) of the frame being concealed."""

    def __init__(self, inner, feats: np.ndarray, dims: list[int]) -> None:
        self.inner, self.feats, self.dims, self.frame = inner, feats, dims, 0

    def _mix(self, p: np.ndarray) -> np.ndarray:
        p = p.copy()
        p[self.dims] = self.feats[min(self.frame, len(self.feats) - 1)][self.dims]
        return p

    def update(self, f: np.ndarray) -> None:
        self.inner.update(f)

    def update_block(self, f: np.ndarray) -> None:
        self.inner.update_block(f)

    def reset(self) -> None:
        self.inner.reset()

    @property
    def state_bytes(self) -> int:
        return self.inner.state_bytes

    def lost(self) -> np.ndarray:
        out = self._mix(self.inner.lost())
        self.frame += 1
        return out

    @property
    def prediction(self) -> np.ndarray:
        return self._mix(self.inner.prediction)


def _oracle_plc(feats: np.ndarray, dims: list[int], **kw):
    from edge_dred.plc import NeuralPLC

    class OraclePLC(NeuralPLC):
        def __init__(self) -> None:
            super().__init__(**kw)
            self._pred = _OracleFeatures(self._pred, feats, dims)

        def conceal(self, ctx):
            if not self._active:
                self._pred.frame = 2 * ctx.slot   # output frame index of the slot's first frame
            return super().conceal(ctx)

    return OraclePLC()


def _gated_plc(gate: list[tuple[int, str, float]], **kw):
    """NeuralPLC whose gate is ``gate`` (all conditions must hold for the vocoder to run)."""
    from edge_dred.plc import NeuralPLC

    class GatedPLC(NeuralPLC):
        def _leave_to_libopus(self, last_frame: np.ndarray) -> bool:
            return not all(last_frame[d] > t if op == ">" else last_frame[d] < t for d, op, t in gate)

    return GatedPLC(**kw)


_PLC_MODELS: dict[str, object] = {}


def _twins(variants: dict[str, dict], tag: str) -> dict[str, dict]:
    """``name_<tag>`` twins of the neural variants: the same receiver with the vocoder of
    ``VOCODER_FILES[tag]`` (``fp``: the frame-parallel one; ``vt``: a weight file of the shipped design)."""
    return {f"{k}_{tag}": dict(v, vocoder=tag) for k, v in variants.items() if "plc" in v or "dred" in v}


def _vocoder(spec: dict):
    """The vocoder model a variant asks for (None: the shipped one), loaded once per worker."""
    tag = spec.get("vocoder")
    if tag is None:
        return None
    if tag not in _PLC_MODELS:
        if tag == "fp":
            from edge_dred.neural.fp_runtime import FPVocoderModel as Model
        else:
            from edge_dred.neural.vocoder import VocoderModel as Model
        _PLC_MODELS[tag] = Model.load(path=VOCODER_FILES[tag])
    return _PLC_MODELS[tag]


def _plc_model(path: str):
    """A predictor weight file, loaded once per worker process (models are shared read-only)."""
    if path not in _PLC_MODELS:
        from edge_dred.neural.predictor import PLCModel

        _PLC_MODELS[path] = PLCModel.load(path=path)
    return _PLC_MODELS[path]


def _postfilter(pf):
    """A new postfilter per receiver where one is given as (envelope, pitch) strengths."""
    from edge_dred.dsp.postfilter import VocoderPostfilter

    return VocoderPostfilter(*pf) if isinstance(pf, tuple) else pf


def _policy(changes: dict):
    """The shipped concealment policy with ``changes`` (the private ``_policy`` of NeuralPLC)."""
    from dataclasses import replace

    from edge_dred.plc import POLICY

    kw = dict(changes)
    if "postfilter" in kw:
        kw["postfilter"] = _postfilter(kw["postfilter"])
    return replace(POLICY, **kw)


def _sender(kind: str):
    """The sender of a variant ``kind``: ``lbrr`` prefix, ``dred`` in it, then optionally ``@MS`` (DRED
    depth), ``#Q`` (the newest chunk at level Q or finer) or ``:mean`` (rate control: lowest mean level
    first).  The runtime fixes the last two, so those variants rebuild the stream encoder's coder."""
    from edge_dred.dred.ratecontrol import NEWEST_LEVEL_CAP, StreamCoder
    from edge_dred.sender import Sender

    lbrr, dred = kind.startswith("lbrr"), "dred" in kind
    depth = int(kind.split("@")[1]) if "@" in kind else 1040
    sender = Sender(40000 if lbrr else 24000, lbrr=lbrr, dred_ms=depth if dred else 0)
    if dred and (kind.endswith(":mean") or "#" in kind):
        se = sender.dred
        se._coder = StreamCoder(se.tables, duration_ms=se.duration_ms, budget_bytes=se.budget_bytes,
                                prefer="mean" if kind.endswith(":mean") else "newest",
                                q0cap=int(kind.split("#")[1]) if "#" in kind else NEWEST_LEVEL_CAP)
    return sender


def _run(args: tuple) -> list[dict]:
    path, variants, recovery_ms, loss_models = args
    from edge_dred.evaluate import metrics as M
    from edge_dred.loss import GilbertElliott
    from edge_dred.plc import NeuralPLC
    from edge_dred.receiver import Receiver, ReceiverConfig
    from edge_dred.receiver import recovery_lookahead
    from edge_dred.simulate import simulate

    M.set_onnx_threads(1)
    pcm = _pcm(path)
    # Three seconds of VCC speech are too short for PLCMOS to settle: play the file twice.
    pcm = np.concatenate([pcm, pcm])
    rows = []
    senders: dict[str, object] = {}
    for li, (pct, burst) in enumerate(loss_models):
        seed = (zlib.crc32(path.name.encode()) & 0xFFFF) * 7 + li
        for name, spec in variants.items():
            kind = spec["kind"]
            lbrr = kind.startswith("lbrr")
            dred = "dred" in kind
            if kind not in senders:
                senders[kind] = _sender(kind)
            sender = senders[kind]
            mask = GilbertElliott(pct, burst, seed=seed).mask(len(pcm) // 320 + 8)
            recs = []
            if "dred" in spec:
                from edge_dred.dred.recovery import DredRecoverer

                recs = [DredRecoverer(vocoder_model=_vocoder(spec),
                                      _postfilter=_postfilter(spec["dred"].get("postfilter", True)))]
                if "history_frames" in spec["dred"]:
                    recs[0]._history_frames = int(spec["dred"]["history_frames"])
                if "prime_frames" in spec["dred"]:
                    recs[0]._prime_frames = int(spec["dred"]["prime_frames"])
                if "end_xfade" in spec["dred"]:
                    recs[0]._end_xfade = int(spec["dred"]["end_xfade"])
            model = _plc_model(spec["plc_weights"]) if "plc_weights" in spec else None
            if "oracle" in spec:
                # Output frame i covers input samples [160 i - lookahead, ...): features of the delayed input.
                from edge_dred.dsp.features import compute_features

                pad = np.zeros(sender.lookahead, np.int16)
                feats = compute_features(np.concatenate([pad, pcm, np.zeros(3200, np.int16)]))
                conc = _oracle_plc(feats, spec["oracle"], vocoder_model=_vocoder(spec), plc_model=model,
                                   _policy=_policy(spec["plc"]))
            elif "gate" in spec:
                conc = _gated_plc(list(spec["gate"]), vocoder_model=_vocoder(spec), plc_model=model,
                                  _policy=_policy(spec["plc"]))
            elif "plc" in spec:
                conc = NeuralPLC(vocoder_model=_vocoder(spec), plc_model=model, _policy=_policy(spec["plc"]))
            else:
                conc = None
            look = recovery_lookahead(recovery_ms, lbrr) if dred else None
            rx = Receiver(ReceiverConfig(lbrr=lbrr, lookahead=look), recoverers=recs, concealer=conc)
            res = simulate(pcm, mask, sender, rx, name)
            rows.append({"file": f"{path.parent.name}/{path.name}", "loss": f"{pct:g}%/{burst:g}", "variant": name,
                         "pesq": M.pesq_wb(pcm, res.audio), "plcmos": M.plcmos(res.audio)})
    return rows


def _loss_models(text: str) -> list[tuple[float, float]]:
    out = []
    for item in text.split(","):
        pct, _, burst = item.partition("/")
        try:
            pct_f, burst_f = float(pct), float(burst)
        except ValueError:
            raise argparse.ArgumentTypeError(f"loss model {item!r} is not PCT/BURST") from None
        if not (0.0 < pct_f < 100.0 and burst_f >= 1.0):
            raise argparse.ArgumentTypeError(f"loss model {item!r}: want 0 < PCT < 100 and BURST >= 1")
        out.append((pct_f, burst_f))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--variants", choices=["plc", "dred"], default="plc")
    ap.add_argument("--only", type=str, default="", help="comma list of variant names (default: all)")
    ap.add_argument("--speech", type=Path, default=TRAIN,
                    help="training speech to draw files from (a folder of speaker folders or of .flac files); "
                         "default train/vcc2016")
    ap.add_argument("--recovery-ms", type=int, default=60, help="DRED recovery window (receiver look-ahead)")
    ap.add_argument("--loss-models", type=_loss_models, default=LOSS_MODELS, metavar="PCT/BURST[,...]",
                    help="Gilbert-Elliott loss models (loss %%, mean burst in packets); default "
                         + ",".join(f"{p:g}/{b:g}" for p, b in LOSS_MODELS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plc-weights", action="append", default=[], metavar="NAME=PATH",
                    help="add a variant 'neural@NAME': NeuralPLC defaults with this predictor weight file")
    ap.add_argument("--weights-for-all", type=Path, default=None, metavar="PATH",
                    help="predictor weight file for every neural variant (e.g. to retune the fades for it)")
    ap.add_argument("--fp-vocoder", type=Path, default=None, metavar="PATH",
                    help="add a 'NAME_fp' twin of every neural variant with the frame-parallel vocoder "
                         "(an exported weight file, training/export_fp_vocoder.py)")
    ap.add_argument("--vocoder-twin", type=Path, default=None, metavar="PATH",
                    help="add a 'NAME_vt' twin of every neural variant with this vocoder weight file "
                         "(training/export_vocoder.py --out PATH --no-manifest)")
    a = ap.parse_args()
    variants = dict(PLC_VARIANTS if a.variants == "plc" else DRED_VARIANTS)
    twins: dict[str, dict] = {}
    for tag, path, flag in (("vt", a.vocoder_twin, "--vocoder-twin"), ("fp", a.fp_vocoder, "--fp-vocoder")):
        if path is not None:
            if not path.is_file():
                raise SystemExit(f"{flag}: no such file {path}")
            VOCODER_FILES[tag] = str(path)
            twins.update(_twins(variants, tag))
    variants.update(twins)
    if a.only:
        variants = {k: variants[k] for k in a.only.split(",")}
    for item in a.plc_weights:
        name, _, path = item.partition("=")
        if not path or not Path(path).is_file():
            raise SystemExit(f"--plc-weights wants NAME=PATH of an existing file, got {item!r}")
        variants[f"neural@{name}"] = {"kind": "plain", "plc": {}, "plc_weights": path}
    if a.weights_for_all is not None:
        if not a.weights_for_all.is_file():
            raise SystemExit(f"--weights-for-all: no such file {a.weights_for_all}")
        variants = {k: (dict(v, plc_weights=str(a.weights_for_all)) if "plc" in v and "plc_weights" not in v else v)
                    for k, v in variants.items()}
    t0 = time.time()
    jobs = [(p, variants, a.recovery_ms, a.loss_models) for p in _files(a.files, a.speech)]
    with Pool(a.jobs) as pool:
        rows = [r for rs in pool.imap_unordered(_run, jobs) for r in rs]
    if a.json:
        a.json.write_text(json.dumps(rows))
    base = next(iter(variants))
    losses = [f"{p:g}%/{b:g}" for p, b in a.loss_models]
    print(f"{len(jobs)} files x {len(losses)} loss models, {time.time() - t0:.0f} s; diff = paired vs {base}")
    print("| variant | " + " | ".join(f"PESQ {l} | PLCMOS {l}" for l in losses) + " | PESQ all | PLCMOS all |")
    print("|---" * (2 * len(losses) + 3) + "|")
    for v in variants:
        cells = []
        for l in losses + [None]:
            sel = [r for r in rows if r["variant"] == v and (l is None or r["loss"] == l)]
            ref = {(r["file"], r["loss"]): r for r in rows if r["variant"] == base and (l is None or r["loss"] == l)}
            for m in ("pesq", "plcmos"):
                mean = np.mean([r[m] for r in sel])
                d = np.mean([r[m] - ref[(r["file"], r["loss"])][m] for r in sel])
                cells.append(f"{mean:.3f} ({d:+.3f})")
        print(f"| {v} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
