"""DRED in the receiver: coverage, burst recovery vs Opus PLC, hostile payloads.

Synthetic speech-like signals only; the shipped models are used.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from edge_dred.codec.framing import attach_dred, extract_dred
from edge_dred.dred.decoder import DEC_FRAMES
from edge_dred.dred.recovery import DredRecoverer, output_frame_features, payload_frame_span
from edge_dred.dsp.features import compute_features
from edge_dred.receiver import Receiver, ReceiverConfig
from edge_dred.sender import Sender
from edge_dred.simulate import simulate

from test_dred_runtime import speech_like



@pytest.fixture(scope="module")
def models():
    from edge_dred.dred.decoder import DredDecoder
    from edge_dred.dred.encoder import DredEncoder
    from edge_dred.neural.vocoder import VocoderModel

    return DredEncoder(), DredDecoder(), VocoderModel.load()


@pytest.fixture(scope="module")
def stream(models):
    """3 s of speech-like audio encoded once with DRED."""
    enc, dec, _ = models
    pcm = speech_like(3.0, seed=5)
    # 600 ms of redundancy within 200 bytes: enough depth for the 500 ms burst below at fine levels.
    sender = Sender(24000, dred_ms=600, dred_budget=200, dred_encoder=enc, dred_tables=dec.tables)
    return pcm, sender.encode_stream(pcm), sender.lookahead


def run(models, pcm, packets, mask, lookahead, dred=True):
    _, dec, voc = models
    recs = [DredRecoverer(dec, voc)] if dred else []
    rx = Receiver(ReceiverConfig(lookahead=lookahead), recoverers=recs)
    out = []
    for p, lost in zip(packets, mask):
        out.extend(rx.push(None if lost else p))
    out.extend(rx.flush())
    return np.concatenate(out), rx, (recs[0] if recs else None)


def test_frame_span_and_output_interpolation():
    assert payload_frame_span(10, 0, 1) == (18, 21)
    assert payload_frame_span(10, 1, 26) == (20 - 104 + 1, 20)
    f = np.zeros((4, 20), np.float32)
    f[:, 0] = [0.0, 1.0, 2.0, 3.0]
    f[:, 18] = [100.0, 102.0, 200.0, 202.0]
    # Delay 104 samples: output frame m sits 0.65 frames before input frame m.
    out = output_frame_features(f, 10, np.array([11, 12]), 104)
    np.testing.assert_allclose(out[:, 0], [0.35, 1.35], atol=1e-6)
    assert out[0, 18] == pytest.approx(0.65 * 100 + 0.35 * 102)     # periods agree: interpolated
    assert out[1, 18] == pytest.approx(102.0)                        # octave-apart: nearer frame
    # Missing older neighbour: the newer frame stands in.
    out = output_frame_features(f, 10, np.array([10]), 104)
    np.testing.assert_allclose(out[0, 0], 0.0)


def test_packets_carry_dred_and_still_decode(models, stream):
    pcm, packets, _ = stream
    n_with = sum(extract_dred(p) is not None for p in packets)
    assert n_with > 0.9 * len(packets)
    out, rx, _ = run(models, pcm, packets, np.zeros(len(packets), bool), 0, dred=False)
    # DRED rides in padding: libopus decodes the audio as if it were not there.
    plain = Sender(24000).encode_stream(pcm)
    ref, _, _ = run(models, pcm, plain, np.zeros(len(plain), bool), 0, dred=False)
    assert len(out) == len(ref)
    assert all(d.value == "regular" for d in rx.decisions)


def test_500ms_burst_recovered_much_closer_than_opus_plc(models, stream):
    """Features DRED hands the vocoder vs the clean decode, compared with libopus PLC's output."""
    pcm, packets, _ = stream
    _, dec, voc = models
    mask = np.zeros(len(packets), bool)
    first, n = 70, 25                              # 500 ms in the middle of voiced audio
    mask[first:first + n] = True
    rec = DredRecoverer(dec, voc, keep_trace=True)
    rx = Receiver(ReceiverConfig(lookahead=n + 1), recoverers=[rec])
    out_d = np.concatenate([o for p, lost in zip(packets, mask) for o in rx.push(None if lost else p)]
                           + rx.flush())
    out_p, _, _ = run(models, pcm, packets, mask, lookahead=n + 1, dred=False)
    out_c, _, _ = run(models, pcm, packets, np.zeros(len(packets), bool), 0, dred=False)
    dec_names = [d.value for d in rx.decisions]
    assert dec_names[first:first + n] == ["dred"] * n
    assert rec.stats["bursts"] == 1 and rec.stats["slots"] == n
    assert [t[0] for t in rec.trace] == list(range(first, first + n))
    # Output time on both sides: features of the clean decode are the target.
    f_clean = compute_features(out_c)
    f_plc = compute_features(out_p)
    f_dred = np.concatenate([t[1] for t in rec.trace])
    rows = slice(2 * first, 2 * (first + n))
    ref = f_clean[rows]
    d_dred = np.sqrt(np.mean((f_dred[:, :18] - ref[:, :18]) ** 2))
    d_plc = np.sqrt(np.mean((f_plc[rows, :18] - ref[:, :18]) ** 2))
    assert d_dred < 0.6 * d_plc, (d_dred, d_plc)
    voiced = ref[:, 19] > 0.6
    assert voiced.mean() > 0.8
    pitch_err = np.median(np.abs(f_dred[voiced, 18] - ref[voiced, 18]) / ref[voiced, 18])
    assert pitch_err < 0.1, pitch_err
    # Time alignment: the recovered features match the target better than a 20 ms shift of it does.
    shifted = f_clean[2 * first + 2:2 * (first + n) + 2]
    assert d_dred < np.sqrt(np.mean((f_dred[:, :18] - shifted[:, :18]) ** 2))
    # And the audio the vocoder makes of them: closer to the clean decode than libopus PLC's
    # (a milder bar: this also measures the vocoder, trained separately).
    f_out = compute_features(out_d)[rows]
    d_out = np.sqrt(np.mean((f_out[:, :18] - ref[:, :18]) ** 2))
    assert d_out < 0.85 * d_plc, (d_out, d_plc)
    seg = out_d[320 * first:320 * (first + n)].astype(float)
    assert np.abs(seg).mean() > 0.3 * np.abs(out_c[320 * first:320 * (first + n)].astype(float)).mean()


def test_handback_and_start_are_smooth(models, stream):
    """No jump at either edge of a recovered burst beyond the signal's own sample steps."""
    pcm, packets, _ = stream
    mask = np.zeros(len(packets), bool)
    first, n = 40, 5
    mask[first:first + n] = True
    out, rx, rec = run(models, pcm, packets, mask, lookahead=n + 1)
    assert [d.value for d in rx.decisions][first:first + n] == ["dred"] * n
    y = out.astype(float)
    own = np.percentile(np.abs(np.diff(y[: 320 * first])), 99.9)
    for edge in (320 * first, 320 * (first + n)):
        steps = np.abs(np.diff(y[edge - 40:edge + 40]))
        assert steps.max() < 1.5 * own, (edge, steps.max(), own)


def test_jitter_limits_which_slots_dred_can_fill(models, stream):
    pcm, packets, _ = stream
    mask = np.zeros(len(packets), bool)
    mask[60:70] = True                             # 200 ms burst, 60 ms of look-ahead
    _, rx, rec = run(models, pcm, packets, mask, lookahead=3)
    dec = [d.value for d in rx.decisions]
    # Packet 70 is only in view for slots 67..69; earlier slots fall back to libopus PLC.
    assert dec[60:67] == ["opus_plc"] * 7
    assert dec[67:70] == ["dred"] * 3
    assert dec[70] == "regular"


def test_hostile_payloads_do_not_crash_the_receiver(models, stream):
    pcm, packets, _ = stream
    rng = np.random.default_rng(7)
    bad = list(packets)
    for i in range(len(bad)):
        pay = extract_dred(bad[i])
        if pay is None:
            continue
        kind = i % 4
        if kind == 0:
            junk = rng.integers(0, 256, rng.integers(1, 300)).astype(np.uint8).tobytes()
        elif kind == 1:
            junk = pay[: max(1, len(pay) // 2)]                       # truncated
        elif kind == 2:
            b = bytearray(pay)
            b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))   # one flipped bit
            junk = bytes(b)
        else:
            junk = pay + b"\x00\x01"                                  # trailing garbage
        bad[i] = attach_dred(bad[i], junk)
    mask = np.zeros(len(bad), bool)
    for s in range(10, len(bad) - 5, 9):
        mask[s:s + 2] = True
    out, rx, rec = run(models, pcm, bad, mask, lookahead=4)
    assert out.dtype == np.int16 and np.all(np.isfinite(out.astype(float)))
    assert rec.stats["bad_payloads"] > 10
    assert len(rx.decisions) == len(bad)
    # Payloads a flipped bit still lets through decode to bounded, finite audio.
    assert np.abs(out.astype(float)).max() <= 32767


def test_no_dred_in_view_returns_none(models):
    _, dec, voc = models
    rec = DredRecoverer(dec, voc)

    class Ctx:
        slot = 5
        future = [None, None]
        history = np.zeros(4096, np.int16)
        loss_run = 1
        opus_plc = np.zeros(320, np.int16)

    assert rec.recover(Ctx()) is None
    with pytest.raises(ValueError):
        DredRecoverer(dec, voc, codec_delay=-1)


def test_partial_parse_conceals_exactly_as_a_full_parse(models, stream, monkeypatch):
    """The recoverer keeps only the chunks a hole needs: same audio, trace and decisions as keeping all."""
    import edge_dred.dred.recovery as recovery
    from edge_dred.dred.payload import parse_payload

    pcm, packets, la = stream
    _, dec, voc = models
    mask = np.zeros(len(packets), bool)
    mask[[20, 21, 40, 60, 61, 62, 63, 64, 65, 66, 90, 92, 110, 111, 112]] = True

    def go():
        rec = DredRecoverer(dec, voc, keep_trace=True)
        rx = Receiver(ReceiverConfig(lookahead=8), recoverers=[rec])
        out = np.concatenate([o for p, lost in zip(packets, mask) for o in rx.push(None if lost else p)] + rx.flush())
        return out, rec, [d.value for d in rx.decisions]

    kept = []

    def partial(data, tables, max_chunks=26, *, chunks=None):
        p = parse_payload(data, tables, max_chunks, chunks=chunks)
        kept.append((len(p.latents_k), p.n_chunks))
        return p

    monkeypatch.setattr(recovery, "parse_payload", partial)
    out_p, rec_p, dec_p = go()
    monkeypatch.setattr(recovery, "parse_payload", lambda data, tables, max_chunks=26, *, chunks=None:
                        parse_payload(data, tables, max_chunks))
    out_f, rec_f, dec_f = go()
    assert dec_p == dec_f and dec_p.count("dred") >= 10
    assert np.array_equal(out_p, out_f)
    assert [t[0] for t in rec_p.trace] == [t[0] for t in rec_f.trace]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(rec_p.trace, rec_f.trace))
    assert rec_p.stats == rec_f.stats
    assert kept and all(k < n for k, n in kept)        # never all the chunks of these deep payloads


def test_backward_decode_extends_with_older_latents(models, stream):
    from edge_dred.dred.decoder import dequantize_payload
    from edge_dred.dred.payload import parse_payload

    _, packets, _ = stream
    _, dec, _ = models
    data = extract_dred(packets[100])
    full = dec.start_payload(parse_payload(data, dec.tables))
    part = dec.start_payload(parse_payload(data, dec.tables, chunks=2))
    assert part.n_chunks == 2 and full.n_chunks > 2
    a = part.frames(8)
    part.extend(dequantize_payload(parse_payload(data, dec.tables), dec.tables)[1])
    assert np.array_equal(part.frames(full.n_frames_available), full.frames(full.n_frames_available))
    assert np.array_equal(a, full.frames(8))
    with pytest.raises(ValueError):
        part.extend(np.zeros((1, dec.weights.latent_dim), np.float32))


def test_burst_start_is_prepared_in_the_slot_before(models, stream, monkeypatch):
    """After a real slot, a lost slot that DRED covers is primed while the real slot is decided:
    the burst's first slot only synthesises, and the audio, decisions and statistics are those of
    priming in the first lost slot itself (prepare switched off)."""
    pcm, packets, la = stream
    _, dec, voc = models
    mask = np.zeros(len(packets), bool)
    mask[[20, 21, 40, 60, 61, 62, 63, 90, 110, 111]] = True

    def go(prepare: bool):
        rec = DredRecoverer(dec, voc, keep_trace=True)
        rx = Receiver(ReceiverConfig(lookahead=8), recoverers=[rec])
        if not prepare:
            monkeypatch.setattr(rx, "_prepare_next", lambda: None)
        primed_in = []
        orig = rec._prime
        # the receiver's loss run when priming: 0 = while the real slot before the burst is decided
        monkeypatch.setattr(rec, "_prime", lambda h, f: primed_in.append(rx._loss_run) or orig(h, f))
        out = np.concatenate([o for p, lost in zip(packets, mask) for o in rx.push(None if lost else p)] + rx.flush())
        return out, rec, [d.value for d in rx.decisions], primed_in

    out_a, rec_a, dec_a, primed_a = go(True)
    out_b, rec_b, dec_b, primed_b = go(False)
    assert dec_a == dec_b and dec_a.count("dred") == int(mask.sum())
    assert np.array_equal(out_a, out_b)
    assert rec_a.stats == rec_b.stats and rec_a.stats["bursts"] == 5
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(rec_a.trace, rec_b.trace))
    assert primed_a == [0] * 5 and primed_b == [1] * 5



def test_burst_start_primes_on_dred_features_without_analysis(models, stream):
    """A burst start conditions the vocoder on DRED's own features of the frames before the hole:
    no output is analysed.  A cap that lets DRED reach the hole but not the frames before it
    leaves them to the history's analysis."""
    pcm, packets, la = stream
    _, dec, voc = models
    mask = np.zeros(len(packets), bool)
    mask[[40, 60, 61]] = True
    rec = DredRecoverer(dec, voc)
    analysed = []
    orig = rec._fx.process_block
    rec._fx.process_block = lambda x: analysed.append(len(x)) or orig(x)
    rx = Receiver(ReceiverConfig(lookahead=8), recoverers=[rec])
    for p, lost in zip(packets, mask):
        rx.push(None if lost else p)
    rx.flush()
    assert [d.value for d in rx.decisions].count("dred") == 3 and rec.stats["bursts"] == 2
    assert analysed == []

    fresh = DredRecoverer(dec, voc)
    for slot in (40, 41, 42, 43):
        ctx = types.SimpleNamespace(slot=slot, future=packets[slot + 1:slot + 9], history=None, loss_run=1,
                                    opus_plc=None)
        src, _, m = fresh._cover(ctx, None, count=False)
        feats = fresh._frames_before(src, slot, None)
        assert feats.shape == (2, 20) and np.all(np.isfinite(feats))
        chunks = lambda frames: -(-(src.last - fresh._needed_input_frames(frames)[1] + 1) // DEC_FRAMES)  # noqa: E731
        hole, before = chunks(m), chunks(np.arange(2 * slot - 2, 2 * slot))
        got = fresh._frames_before(src, slot, hole * 40)
        assert (got is None) == (before > hole)
        assert fresh._frames_before(src, slot, before * 40) is not None
