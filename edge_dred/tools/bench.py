"""Per-stage timing per 20 ms packet and real-time factors (``edge-dred bench``).

A benchmark prints a table; it never asserts on speed (timed tests are flaky
on shared machines).  Each stage is timed over every packet of a synthetic
voiced signal, and min/median/max per packet are reported.  A stage that
cannot run here (a model or runtime missing) gets a ``not run`` row and a
``not run:`` line with the reason under the table; it is never left out
silently.  ``note:`` lines say where a stage's input came from when that is
not obvious (the DRED receiver's payloads).

``run_bench(choices=True)`` (what ``edge-dred bench --estimate`` runs in the
emulated guest) adds the rows a board's default Opus complexity and DRED
depth are priced from (:data:`CHOICE_SIDES`): Opus encode at every
complexity, the DRED receiver's burst start and its decode per further
40 ms chunk.  They are not summed per side.
"""
from __future__ import annotations

import platform
import time
from typing import Callable

import numpy as np

from ..boards import describe_cpu
from ..constants import FRAME_MS, FRAME_SAMPLES, FRAME_SIZE, SAMPLE_RATE

__all__ = ["run_bench", "time_per_packet", "sampled_latents", "NOT_RUN", "DRED_STAGES", "PACKETS_PER_CALL",
           "CHOICE_SIDES", "SENDER_FEATURES", "OPUS_DECODE", "OPUS_PLC", "VOCODER", "POSTFILTER", "BURST_STAGES", "DRED_CHUNK",
           "OPUS_COMPLEXITIES", "opus_complexity_stage"]

#: Cell text of a stage that could not run (``edge_dred.tools.estimate`` parses it).
NOT_RUN = "not run"
#: (side, stage) of the DRED rows, sender first.
DRED_STAGES = (("dred sender", "TFLite encoder step"),
               ("dred sender", "quantize + rate control + range code"),
               ("dred receiver", "parse + decode newest 40 ms"))

#: (side, stage) of rows the board-config recommendation reads (``edge_dred.tools.estimate``).
SENDER_FEATURES = ("sender", "features (2 x 10 ms)")
OPUS_DECODE = ("receiver", "opus decode")
OPUS_PLC = ("receiver", "opus PLC")
VOCODER = ("neural plc", "vocoder (2 x 10 ms)")
POSTFILTER = ("neural plc", "vocoder postfilter (2 x 10 ms)")
#: Sides of the rows that price a board's default complexity and DRED depth (``run_bench(choices=True)``).
CHOICE_SIDES = ("opus complexity", "dred depth")
#: What the DRED recoverer runs when a burst starts: feature analysis of the last output, then vocoder priming.
BURST_STAGES = (("dred depth", "burst start: history analysis"), ("dred depth", "burst start: vocoder priming"))
DRED_CHUNK = ("dred depth", "decode per further 40 ms chunk")
OPUS_COMPLEXITIES = tuple(range(11))

#: Stages timed per call of more than one unit, and how many units one call covers: packets of a
#: 1 s segment, or DRED chunks (the decode of chunks 2..26 of a payload).  Their rows are per unit
#: (the call's cost divided by this), here and in ``edge_dred.tools.estimate``.
_MONITOR = ("artifact front end (1 s segment / 50)", "artifact network (1 s segment / 50)")
PACKETS_PER_CALL = {_MONITOR[0]: 50, _MONITOR[1]: 50, DRED_CHUNK[1]: 25}


def opus_complexity_stage(complexity: int) -> tuple[str, str]:
    """(side, stage) of the Opus encode row at ``complexity`` (0..10) in ``run_bench(choices=True)``."""
    return CHOICE_SIDES[0], f"encode 24 kb/s, complexity {complexity}"

Row = tuple[str, str, np.ndarray]
Skip = tuple[str, str, str]   # side, stage, reason


def time_per_packet(fn: Callable[[int], object], n_packets: int, repeat: int) -> np.ndarray:
    """Call ``fn(i)`` for every packet index, ``repeat`` times; return seconds per call (best run per packet).

    Parameters
    ----------
    fn : callable
        Work of one packet, given its index.
    n_packets : int
        Packets per pass.
    repeat : int
        Passes; the fastest time per packet is kept.

    Returns
    -------
    numpy.ndarray
        (n_packets,) seconds.
    """
    best = np.full(n_packets, np.inf)
    for _ in range(repeat):
        for i in range(n_packets):
            t0 = time.perf_counter()
            fn(i)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _signal(seconds: float) -> np.ndarray:
    from .demo_audio import _synthetic

    x = _synthetic(max(seconds, 1.0))
    rng = np.random.default_rng(0)
    return np.clip(x + rng.normal(0, 30, len(x)), -32768, 32767).astype(np.int16)


def _why(e: BaseException) -> str:
    """One line for a ``not run`` note."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg[:300]}" if msg else type(e).__name__


def _neural_plc_rows(pcm: np.ndarray, n: int, repeat: int) -> tuple[list[Row], list[Skip]]:
    """Neural PLC per 20 ms slot: vocoder (2 frames), postfilter, predictor (2 frames); and the
    feature analysis of what was played (2 frames).

    The first three are a concealed slot (``conceal``).  The analysis runs
    lazily, once per played frame, in a block at the next loss start (or the
    slot before it), and not at all for what was played more than the policy's
    ``history_ms`` before: a receiver row, the most it costs per played packet.
    """
    names = (VOCODER[1], POSTFILTER[1], "PLC predictor (2 frames)", "PLC feature analysis, lazy (2 x 10 ms)")
    try:
        from ..dsp.features import FeatureExtractor, compute_features
        from ..neural.predictor import FeaturePredictor
        from ..plc import default_models
        from ..dsp.postfilter import VocoderPostfilter
        from ..constants import PREEMPHASIS
        from ..neural.vocoder import PRIME_FRAMES, Vocoder, prime_samples

        vm, pm = default_models()
    except (ImportError, ValueError) as e:
        return [], [("receiver" if nm == names[3] else "neural plc", nm, f"models not loadable ({_why(e)})")
                    for nm in names]
    feats = compute_features(pcm)
    # The postfilter gets its own row (the vocoder row is the network alone).
    voc, pred, fx = Vocoder(vm, postfilter=False), FeaturePredictor(pm), FeatureExtractor()
    pf = VocoderPostfilter()
    pe = pcm[: n * FRAME_SAMPLES].astype(np.float64) / 32768.0
    pe = np.concatenate([pe[:1], pe[1:] - PREEMPHASIS * pe[:-1]]).reshape(-1, 160)   # stands in for the network's output
    k = PRIME_FRAMES + 3
    voc.prime(pcm[: k * 160][-prime_samples():], feats[1:k])
    frames = pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)

    # A concealed slot advances the predictor twice on its own predictions (NeuralPLC.conceal);
    # received frames reach it in blocks at a loss start (the lazy analysis row's side).
    pred.update_block(feats[:k])

    def predictor(i: int) -> None:
        pred.lost()
        pred.lost()

    return [
        ("neural plc", names[0], time_per_packet(lambda i: voc.synthesize(feats[2 * i:2 * i + 2]), n, repeat)),
        ("neural plc", names[1], time_per_packet(lambda i: pf.process(pe[2 * i:2 * i + 2], feats[2 * i:2 * i + 2]),
                                                 n, repeat)),
        ("neural plc", names[2], time_per_packet(predictor, n, repeat)),
        ("receiver", names[3], time_per_packet(lambda i: fx.process_block(frames[i]), n, 1)),
    ], []


def sampled_latents(tables, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-packet (latent, state) pairs drawn from the entropy model the decoder file ships.

    Each latent dimension (and each state dimension) is drawn from a Laplace
    whose scale ``b = -1 / (quant_scale * ln(decay))`` is what the tables'
    ``decay`` implies at each quantizer level (median over the 16 levels for
    the latents).  Stands in for the TFLite encoder's output where no TFLite
    runtime is installed, so that payload coding and the receiver's decode
    can still be timed: the symbol statistics are the trained model's prior,
    not those of a particular utterance.

    Parameters
    ----------
    tables : EntropyTables
        The shipped tables (:func:`~edge_dred.dred.tables.shipped_tables`).
    n : int
        Packets, >= 1.
    seed : int
        Random seed (deterministic for a seed).

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        ``n`` pairs of float32 ``z`` (D,) and ``s`` (S,).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    b_lat = np.median(-1.0 / (tables.quant_scale * np.log(tables.decay)), axis=0)
    b_st = -1.0 / (tables.state_quant_scale * np.log(tables.state_decay))
    rng = np.random.default_rng(seed)
    z = rng.laplace(0.0, b_lat, (n, tables.latent_dim)).astype(np.float32)
    s = rng.laplace(0.0, b_st, (n, tables.state_dim)).astype(np.float32)
    return list(zip(z, s))


class _Replay:
    """Stands in for :class:`~edge_dred.dred.encoder.DredEncoder`: returns given (z, s), one per step.

    Lets the sender's quantize/rate-control/range-code work be timed on its
    own, on the latents the TFLite step produced (or sampled ones).
    """

    def __init__(self, zs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.zs = zs
        self.latent_dim, self.state_dim = len(zs[0][0]), len(zs[0][1])
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def step(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z, s = self.zs[self.i % len(self.zs)]
        self.i += 1
        return z, s


def _dred_rows(pcm: np.ndarray, n: int, repeat: int, choices: bool = False) -> tuple[list[Row], list[Skip], list[str]]:
    """DRED per 20 ms packet: the sender's encoder step and payload coding, the receiver's decode.

    Sender (the features have their own row): the int8 TFLite encoder step,
    one pass in stream order (its GRU state carries over); then activity,
    quantisation, rate control and range coding of a 1.04 s / 80-byte
    payload (``DredStreamEncoder.push_features`` minus the step), on the
    latents that step produced, timed on a second pass over them so that
    every timed packet has a full 26-chunk history (steady state, as in a
    call longer than 1 s).  Without a TFLite runtime the step row says
    ``not run`` and the coding runs on :func:`sampled_latents` instead.

    Receiver: parse one of those payloads and run the decoder from its state
    through the newest latent (4 frames), what a single lost packet costs
    before synthesis (the vocoder row gives the synthesis).  With
    ``choices``, also :func:`_depth_rows`, on the same latents coded at full
    depth.
    """
    (ss, step_name), (_, code_name), (rs, recv_name) = DRED_STAGES
    try:
        from ..dred.decoder import DredDecoder
        from ..dred.encoder import DredEncoder, DredStreamEncoder, TFLiteUnavailableError
        from ..dred.payload import MAX_PAYLOAD_BYTES, parse_payload
        from ..dred.ratecontrol import StreamCoder
        from ..dsp.features import FeatureExtractor

        dec = DredDecoder()
    except (ImportError, ValueError) as e:
        why = f"DRED decoder or compiled parts not loadable ({_why(e)})"
        return [], [(side, name, why) for side, name in DRED_STAGES], []
    rows: list[Row] = []
    skips: list[Skip] = []
    notes: list[str] = []
    fx = FeatureExtractor()
    feats = [fx.process_block(f) for f in pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)]
    try:
        enc = DredEncoder()
    except (ImportError, ValueError) as e:
        skips.append((ss, step_name, "no TFLite runtime: neither ai_edge_litert nor tflite_runtime imports "
                      "(pip install ai-edge-litert; tflite-runtime on 32-bit ARM)"
                      if isinstance(e, TFLiteUnavailableError) else f"encoder not loadable ({_why(e)})"))
        zs = sampled_latents(dec.tables, n)
        notes.append(f"{ss} / {code_name}: on latents sampled from the shipped entropy model "
                     "(the TFLite encoder step did not run), not on encoded speech")
    else:
        zs = [None] * n  # type: ignore[list-item]

        def step(i: int) -> None:
            zs[i] = enc.step(feats[i])

        rows.append((ss, step_name, time_per_packet(step, n, 1)))   # stateful: one pass
    se = DredStreamEncoder(1040, 80, encoder=_Replay(zs), tables=dec.tables)
    for f in feats:                                                  # fill the 26-chunk history, untimed
        se.push_features(f)
    sent: list[bytes] = [b""] * n

    def code(i: int) -> None:
        sent[i] = se.push_features(feats[i])

    rows.append((ss, code_name, time_per_packet(code, n, 1)))
    payloads = [p for p in sent if p]
    if not payloads:
        skips.append((rs, recv_name, "the sender made no payload (silent signal)"))
        return rows, skips, notes
    notes.append(f"{rs}: the {len(payloads)} non-empty payloads of the sender's coding row "
                 f"(median {int(np.median([len(p) for p in payloads]))} bytes)")

    def recv(i: int) -> None:
        dec.start_payload(parse_payload(payloads[i], dec.tables)).frames(4)

    rows.append((rs, recv_name, time_per_packet(recv, len(payloads), repeat)))
    if choices:
        # The deepest backward decode needs 1.04 s payloads: the stream's own are shorter under its
        # newest-level cap, so the same latents are coded again with room for every chunk (a chunk's
        # decode does not depend on its level).
        deep = StreamCoder(dec.tables, budget_bytes=MAX_PAYLOAD_BYTES)
        full = [deep.push(z, s, True).payload for z, s in zs + zs][n:]
        r, s = _depth_rows(dec, full, pcm, repeat)
        rows += r
        skips += s
    return rows, skips, notes


def _depth_rows(dec, payloads: list[bytes], pcm: np.ndarray, repeat: int) -> tuple[list[Row], list[Skip]]:
    """What a DRED burst costs the receiver besides each slot's synthesis: its start, and each decoded chunk.

    Burst start (two rows): what ``DredRecoverer`` runs before it rebuilds
    the first slot of a hole (its own code path; ``prepare``, in the slot
    before, when that was real audio): the feature analysis of the last
    output frames (which runs only where DRED does not reach the frames
    before the hole: priced as the worst case), then the vocoder's priming.
    Per chunk: chunks 2..26 of a parsed 1.04 s payload decoded in one call (the
    deepest backward decode there is), per chunk.
    """
    from ..dred.decoder import DEC_FRAMES
    from ..dred.payload import MAX_CHUNKS, parse_payload
    from ..dred.recovery import DredRecoverer
    from ..neural.continuation import Continuation

    rows: list[Row] = []
    skips: list[Skip] = []
    try:
        rec = DredRecoverer(dec)
    except (ImportError, ValueError) as e:
        skips += [(*key, f"vocoder not loadable ({_why(e)})") for key in BURST_STAGES]
    else:
        k = max(Continuation.history_samples, rec._history_frames * FRAME_SIZE)
        hists = [pcm[e - k:e] for e in range(k, len(pcm) + 1, FRAME_SAMPLES)]
        feats = [rec._history_features(h) for h in hists]

        def analyse(i: int) -> None:
            feats[i] = rec._history_features(hists[i])

        rows.append((*BURST_STAGES[0], time_per_packet(analyse, len(hists), repeat)))
        rows.append((*BURST_STAGES[1], time_per_packet(lambda i: rec._prime(hists[i], feats[i]),
                                                       len(hists), repeat)))
    per = PACKETS_PER_CALL[DRED_CHUNK[1]]
    decodes = []
    for data in payloads:
        bd = dec.start_payload(parse_payload(data, dec.tables))
        if bd.n_chunks == per + 1:
            bd.frames(DEC_FRAMES)             # the newest chunk: priced by the parse + decode row
            decodes.append(bd)
    if not decodes:
        skips.append((*DRED_CHUNK, f"no payload of the sender's coding row holds all {MAX_CHUNKS} chunks"))
        return rows, skips

    def more(i: int) -> None:
        decodes[i].frames(decodes[i].n_frames_available)

    rows.append((*DRED_CHUNK, time_per_packet(more, len(decodes), 1) / per))   # stateful: one pass
    return rows, skips


def _monitor_rows(pcm: np.ndarray, repeat: int) -> tuple[list[Row], list[Skip], list[str]]:
    """The artifact monitor per packet (1/50 of a 1 s segment): numpy front end, then the int8 network.

    Two rows, so that the front end is counted where no TFLite runtime loads.
    """
    fe_name, nn_name = _MONITOR
    per = PACKETS_PER_CALL[fe_name]
    from ..artifacts.detector import segments
    from ..artifacts.frontend import features

    segs = [s.astype(np.float32) / 32768.0 for _, s in segments(pcm)]
    feats = [features(s) for s in segs]
    t_fe = time_per_packet(lambda i: features(segs[i]), len(segs), repeat)
    rows: list[Row] = [("monitor", fe_name, t_fe / per)]
    try:
        from ..artifacts.detector import ArtifactDetector

        det = ArtifactDetector()
    except (ImportError, ValueError) as e:
        return rows, [("monitor", nn_name, f"detector not loadable ({_why(e)})")], []

    t_nn = time_per_packet(lambda i: det.network_scores(*feats[i]), len(segs), repeat)
    return rows + [("monitor", nn_name, t_nn / per)], [], [
        f"monitor: {np.median(t_fe + t_nn) * 1e3:.2f} ms per 1 s segment, front end + network "
        f"(median of {len(segs)})"]


def run_bench(seconds: float = 10.0, repeat: int = 3, choices: bool = False) -> str:
    """Time every stage and return a markdown table.

    Parameters
    ----------
    seconds : float
        Audio per measurement (at least 1 s is used), > 0.
    repeat : int
        Passes over stateless stages (the best time per packet is kept), >= 1.
    choices : bool
        Add the rows of :data:`CHOICE_SIDES` (Opus encode at every
        complexity, the DRED burst start and decode per chunk); not summed.

    Returns
    -------
    str
        The table, then ``not run:`` lines for stages that could not run
        here, ``note:`` lines, and one real-time factor per side.
    """
    if not isinstance(seconds, (int, float)) or not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    from ..codec.opus import OpusDecoder, OpusEncoder

    pcm = _signal(seconds)
    n = len(pcm) // FRAME_SAMPLES
    frames = pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    rows: list[Row] = []
    skips: list[Skip] = []
    notes: list[str] = []

    try:
        from ..dsp.features import FeatureExtractor

        fx = FeatureExtractor()
        rows.append((*SENDER_FEATURES, time_per_packet(lambda i: fx.process_block(frames[i]), n, 1)))
    except ImportError as e:
        skips.append((*SENDER_FEATURES, _why(e)))

    enc = OpusEncoder(SAMPLE_RATE, 1, bitrate=24000)
    packets = [enc.encode(f) for f in frames]
    enc2 = OpusEncoder(SAMPLE_RATE, 1, bitrate=24000)
    rows.append(("sender", "opus encode 24 kb/s", time_per_packet(lambda i: enc2.encode(frames[i]), n, repeat)))
    dec = OpusDecoder(SAMPLE_RATE, 1)
    rows.append((*OPUS_DECODE, time_per_packet(lambda i: dec.decode(packets[i], FRAME_SAMPLES), n, repeat)))
    rows.append((*OPUS_PLC, time_per_packet(lambda i: dec.decode(None, FRAME_SAMPLES), n, repeat)))

    r, s = _neural_plc_rows(pcm, n, repeat)
    rows += r
    skips += s
    r, s, nt = _dred_rows(pcm, n, repeat, choices)
    rows += r
    skips += s
    notes += nt
    r, s, nt = _monitor_rows(pcm, repeat)
    rows += r
    skips += s
    notes += nt
    if choices:
        for c in OPUS_COMPLEXITIES:
            e = OpusEncoder(SAMPLE_RATE, 1, bitrate=24000, complexity=c)
            rows.append((*opus_complexity_stage(c), time_per_packet(lambda i: e.encode(frames[i]), n, repeat)))
    return _format(rows, skips, notes, n, repeat)


def _format(rows: list[Row], skips: list[Skip], notes: list[str], n: int, repeat: int) -> str:
    budget = FRAME_MS / 1000.0
    lines = [
        f"edge-dred bench: {platform.machine()} ({describe_cpu()}), "
        f"{n} packets of {FRAME_MS} ms, best of {repeat}",
        "",
        "| side | stage | min us | median us | max us | RTF (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    totals: dict[str, float] = {}
    for side, name, t in rows:
        med = float(np.median(t))
        if side not in CHOICE_SIDES:
            totals[side] = totals.get(side, 0.0) + med
        lines.append(f"| {side} | {name} | {t.min() * 1e6:.1f} | {med * 1e6:.1f} | {t.max() * 1e6:.1f} | {med / budget:.4f} |")
    lines += [f"| {side} | {name} | {NOT_RUN} | - | - | - |" for side, name, _ in skips]
    lines.append("")
    lines += [f"{NOT_RUN}: {side} / {name}: {why}" for side, name, why in skips]
    lines += [f"note: {x}" for x in notes]
    for side, tot in totals.items():
        if side == "receiver":
            # a slot is either decoded or concealed, not both
            tot -= sum(float(np.median(t)) for sd, nm, t in rows if (sd, nm) == OPUS_PLC)
        lines.append(f"{side} real-time factor: {tot / budget:.4f} (headroom {budget / max(tot, 1e-12):.0f}x)")
    return "\n".join(lines)
