"""libopus binding: encode/decode quality, settings, FEC, DTX, errors, padding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

opus = pytest.importorskip("edge_dred.codec.opus")
from edge_dred.codec import framing as fr  # noqa: E402

SR = 16000
FRAME = 320


def harmonic(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Voiced-speech-like test signal: 11 harmonics, gliding f0, slow AM."""
    t = np.arange(int(SR * seconds)) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t) + 20 * np.sin(2 * np.pi * 2.3 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t + seed)
    return (6000 * env * x / np.max(np.abs(x))).astype(np.int16)


def snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    err = ref - y.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9)))


def encode_all(enc, x: np.ndarray) -> list[bytes]:
    return [enc.encode(x[i : i + FRAME]) for i in range(0, len(x) - FRAME + 1, FRAME)]


def test_version():
    assert opus.opus_version().startswith("libopus 1.")


def test_roundtrip_snr_after_codec_delay():
    x = harmonic()
    # "audio" keeps the waveform (no VoIP high-pass), so plain SNR is meaningful.
    enc = opus.OpusEncoder(bitrate=32000, application="audio")
    dec = opus.OpusDecoder()
    packets = encode_all(enc, x)
    y = np.concatenate([dec.decode(p) for p in packets])
    assert y.dtype == np.int16 and y.shape == (len(x),)
    d = enc.lookahead
    assert d == 104  # 6.5 ms at 16 kHz: 2.5 ms CELT/SILK + 4 ms resampler/delay compensation
    seg = slice(SR // 10, len(x) - 400)
    aligned = snr_db(x[seg], y[seg.start + d : seg.stop + d])
    assert aligned > 15.0
    # The alignment really is the codec delay: one sample off is much worse.
    assert aligned > snr_db(x[seg], y[seg.start + d + 1 : seg.stop + d + 1]) + 3
    assert enc.final_range == dec.final_range


def test_voip_roundtrip_correlation():
    x = harmonic(seed=1)
    enc = opus.OpusEncoder()  # voip, 24 kb/s, voice, wideband
    dec = opus.OpusDecoder()
    packets = encode_all(enc, x)
    assert all(fr.parse_packet(p).bandwidth == "wideband" for p in packets)
    assert all(fr.parse_packet(p).mode == "silk" for p in packets)
    y = np.concatenate([dec.decode(p) for p in packets]).astype(np.float64)
    d = enc.lookahead
    seg = slice(SR // 10, len(x) - 400)
    # VoIP high-passes the input, which shifts the fundamental's phase, so
    # compare by correlation at the best lag within 2 samples of the delay.
    corr = max(np.corrcoef(x[seg], y[seg.start + k : seg.stop + k])[0, 1] for k in range(d - 2, d + 3))
    assert corr > 0.7


def test_bitrate_changes_packet_size():
    x = harmonic(1.0)
    for br in (12000, 24000, 32000):
        enc = opus.OpusEncoder(bitrate=br, vbr=False)
        assert enc.bitrate == br and enc.vbr is False
        # CBR: every 20 ms packet is exactly bitrate * 20 ms.
        assert {len(p) for p in encode_all(enc, x)} == {br // 400}
    means = []
    enc = opus.OpusEncoder()
    for br in (8000, 16000, 40000):
        enc.bitrate = br
        means.append(np.mean([len(p) for p in encode_all(enc, x)]))
    assert means[0] < means[1] < means[2]


def test_setters_roundtrip():
    enc = opus.OpusEncoder()
    enc.complexity = 3
    enc.dtx = True
    enc.fec = True
    enc.packet_loss_perc = 15
    assert (enc.complexity, enc.dtx, enc.fec, enc.packet_loss_perc) == (3, True, True, 15)
    for name, bad in [("bitrate", 100), ("complexity", 11), ("packet_loss_perc", 101), ("bitrate", 2.5)]:
        with pytest.raises(ValueError):
            setattr(enc, name, bad)


def _decoders_at(packets: list[bytes], n: int):
    a, b = opus.OpusDecoder(), opus.OpusDecoder()
    for p in packets[:n]:
        a.decode(p)
        b.decode(p)
    return a, b


def test_fec_beats_plc():
    x = harmonic(3.0, seed=2)
    enc = opus.OpusEncoder(fec=True, packet_loss_perc=20)
    packets = encode_all(enc, x)
    ref_dec = opus.OpusDecoder()
    ref = [ref_dec.decode(p) for p in packets]
    fec_snr, plc_snr = [], []
    for n in range(10, len(packets) - 1, 5):
        if not opus.packet_has_lbrr(packets[n + 1]):
            continue
        a, b = _decoders_at(packets, n)
        y_fec = a.decode(packets[n + 1], frame_size=FRAME, fec=True)
        y_plc = b.decode(None, frame_size=FRAME)
        assert y_fec.shape == y_plc.shape == (FRAME,)
        fec_snr.append(snr_db(ref[n], y_fec))
        plc_snr.append(snr_db(ref[n], y_plc))
        # Continuing with the real packet works after either path.
        assert a.decode(packets[n + 1]).shape == (FRAME,)
    assert len(fec_snr) >= 10
    assert np.mean(fec_snr) > np.mean(plc_snr) + 4.0
    assert np.mean(np.array(fec_snr) > np.array(plc_snr)) > 0.8


def test_lbrr_flag_matches_decoder_behaviour():
    x = harmonic(2.0, seed=3)
    with_fec = encode_all(opus.OpusEncoder(fec=True, packet_loss_perc=20), x)
    without = encode_all(opus.OpusEncoder(fec=False), x)
    assert not any(opus.packet_has_lbrr(p) for p in without)
    flags = [opus.packet_has_lbrr(p) for p in with_fec]
    assert not flags[0] and sum(flags) > len(flags) // 3
    # Without LBRR libopus falls back to PLC, sample for sample; with LBRR not.
    for packets, n in [(without, 20), (with_fec, flags.index(False, 5) - 1), (with_fec, flags.index(True, 5) - 1)]:
        a, b = _decoders_at(packets, n)
        same = np.array_equal(a.decode(packets[n + 1], fec=True), b.decode(None))
        assert same == (not opus.packet_has_lbrr(packets[n + 1]))


def test_silk_header_reader_against_bit_layout():
    # With equiprobable flags the first range-coded bits are the top bits of
    # the first byte (RFC 6716 4.1); check our range decoder agrees.
    rng = np.random.default_rng(5)
    for _ in range(200):
        frame = rng.integers(0, 256, size=int(rng.integers(1, 6)), dtype=np.uint8).tobytes()
        for silk_frames in (1, 2, 3):
            for ch in (1, 2):
                flags = opus.silk_header_flags(frame, silk_frames, ch)
                bits = [b for vad, lbrr in flags for b in (*vad, lbrr)]
                expect = [(frame[0] >> (7 - i)) & 1 for i in range(len(bits))]
                assert bits == expect
    # CELT-only and empty frames never have LBRR.
    assert opus.packet_has_lbrr(bytes([(31 << 3)]) + b"\xff" * 10) is False
    assert opus.packet_has_lbrr(bytes([(9 << 3)])) is False
    assert opus.packet_has_lbrr(bytes([(9 << 3)]) + b"\x40") is True  # VAD=0, LBRR=1
    # Stereo 60 ms: mid VAD x3, mid LBRR, side VAD x3, side LBRR = bit 0.
    assert opus.packet_has_lbrr(bytes([(11 << 3) | 4]) + b"\x01") is True
    assert opus.packet_has_lbrr(bytes([(11 << 3) | 4]) + b"\xee") is False


def test_dtx():
    enc = opus.OpusEncoder(dtx=True)
    dec = opus.OpusDecoder()
    speech = harmonic(0.4)
    silence = np.zeros(SR, dtype=np.int16)
    p_speech = encode_all(enc, speech)
    p_sil = encode_all(enc, silence)
    assert min(len(p) for p in p_speech) > 10
    tail = p_sil[15:]
    # In DTX libopus sends 1-byte (TOC only) packets, with a refresh every 400 ms.
    assert sum(len(p) == 1 for p in tail) >= 0.8 * len(tail)
    assert enc.in_dtx
    for p in p_speech + p_sil:
        y = dec.decode(p)
        assert y.shape == (FRAME,)
    assert np.max(np.abs(y)) < 50  # comfort noise, not speech
    assert dec.get_last_packet_duration() == FRAME


def test_frame_sizes_and_stereo():
    for fs in (40, 80, 160, 320, 640, 960):
        enc, dec = opus.OpusEncoder(), opus.OpusDecoder()
        p = enc.encode(harmonic(0.1)[:fs])
        assert opus.packet_get_nb_samples(p, SR) == fs and dec.get_nb_samples(p) == fs
        assert dec.decode(p).shape == (fs,) and dec.last_packet_duration == fs
    enc, dec = opus.OpusEncoder(channels=2), opus.OpusDecoder(channels=2)
    x = harmonic(0.1)[:FRAME]
    p = enc.encode(np.stack([x, x // 2], axis=1))
    assert opus.packet_get_nb_channels(p) == 2
    assert dec.decode(p).shape == (FRAME, 2) and dec.decode(None).shape == (FRAME, 2)
    assert opus.OpusDecoder(sample_rate=48000).decode(p).shape == (960,)


def test_plc_lengths():
    dec = opus.OpusDecoder()
    dec.decode(opus.OpusEncoder().encode(harmonic(0.1)[:FRAME]))
    assert dec.decode(None).shape == (FRAME,)
    assert dec.decode(None, frame_size=160).shape == (160,)
    assert dec.decode(None, frame_size=1920).shape == (1920,)
    for bad in (0, 100, 1921 + 79, -320):
        with pytest.raises(ValueError):
            dec.decode(None, frame_size=bad)


def test_encoder_errors():
    with pytest.raises(ValueError, match="sample_rate"):
        opus.OpusEncoder(sample_rate=44100)
    with pytest.raises(ValueError, match="channels"):
        opus.OpusEncoder(channels=3)
    with pytest.raises(ValueError, match="application"):
        opus.OpusEncoder(application="game")
    with pytest.raises(ValueError, match="bandwidth"):
        opus.OpusEncoder(bandwidth="ultrawide")
    enc = opus.OpusEncoder()
    with pytest.raises(ValueError, match="int16"):
        enc.encode(np.zeros(FRAME, dtype=np.float32))
    with pytest.raises(ValueError, match="not 2.5/5/10/20/40/60 ms"):
        enc.encode(np.zeros(300, dtype=np.int16))
    with pytest.raises(ValueError, match="shape"):
        enc.encode(np.zeros((FRAME, 2), dtype=np.int16))
    with pytest.raises(ValueError):
        enc.encode([0] * FRAME)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        enc.encode(np.zeros(FRAME, dtype=np.int16), max_bytes=0)
    # A 1-byte budget gives libopus's TOC-only "nothing coded" packet.
    assert len(enc.encode(harmonic(0.1)[:FRAME], max_bytes=1)) == 1
    # Non-contiguous input is accepted (copied), mono (N,1) too.
    stereo = np.zeros((FRAME, 2), dtype=np.int16)
    assert len(enc.encode(stereo[:, 0])) > 0 and len(enc.encode(stereo[:, :1])) > 0


def test_decoder_errors():
    dec = opus.OpusDecoder()
    with pytest.raises(ValueError, match="None for a lost packet"):
        dec.decode(b"")
    with pytest.raises(opus.OpusError, match="corrupted") as info:
        dec.decode(bytes([9 << 3 | 3, 0]))  # code 3 with zero frames
    assert info.value.code == -4 and isinstance(info.value, ValueError)
    with pytest.raises(opus.OpusError):
        dec.decode(bytes([9 << 3 | 1, 1]))  # code 1, even total length
    with pytest.raises(ValueError, match="MAX_PACKET_BYTES"):
        dec.decode(bytes(fr.MAX_PACKET_BYTES + 1))
    with pytest.raises(ValueError):
        dec.decode("abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        opus.OpusDecoder(sample_rate=22050)
    with pytest.raises(fr.MalformedPacketError):
        opus.packet_has_lbrr(bytes([9 << 3 | 1, 1]))
    # Decoder still usable after errors.
    assert dec.decode(None).shape == (FRAME,)


def test_reset_restores_bit_exactness():
    x = harmonic(0.5)
    enc, dec = opus.OpusEncoder(), opus.OpusDecoder()
    first = [dec.decode(p) for p in encode_all(enc, x)]
    enc.reset()
    dec.reset()
    second = [dec.decode(p) for p in encode_all(enc, x)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_padded_packets_decode_identically():
    x = harmonic(1.0, seed=4)
    enc = opus.OpusEncoder(fec=True, packet_loss_perc=10)
    packets = encode_all(enc, x)
    plain, padded = opus.OpusDecoder(), opus.OpusDecoder()
    rng = np.random.default_rng(0)
    for i, p in enumerate(packets):
        payload = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        q = fr.with_padding(p, fr.build_extensions([fr.Extension(5, 0, b"\x01"), fr.Extension(90, 0, b"xyz")], 1))
        q = fr.attach_dred(q, payload)
        assert fr.extract_dred(q) == payload and len(q) > len(p)
        # libopus agrees on the frame layout of the re-framed packet.
        _toc, sizes, _offs, _ = opus.libopus_packet_parse(q)
        assert sizes == [len(p) - 1]
        assert opus.packet_has_lbrr(q) == opus.packet_has_lbrr(p)
        a, b = plain.decode(p), padded.decode(q)
        assert np.array_equal(a, b), f"packet {i} decodes differently once padded"
        assert plain.final_range == padded.final_range
    # FEC from a padded packet equals FEC from the plain one.
    n = next(i for i in range(5, len(packets) - 1) if opus.packet_has_lbrr(packets[i + 1]))
    a, b = _decoders_at(packets, n)
    y1 = a.decode(packets[n + 1], fec=True)
    y2 = b.decode(fr.attach_dred(packets[n + 1], b"dred"), fec=True)
    assert np.array_equal(y1, y2)


def test_multi_frame_packets_reframed():
    # 40 ms and 60 ms packets from libopus, plus 2.5 ms CELT, survive re-framing.
    for fs, app in ((640, "voip"), (960, "voip"), (40, "audio"), (160, "restricted_lowdelay")):
        enc = opus.OpusEncoder(application=app)
        x = harmonic(0.5)
        plain, padded = opus.OpusDecoder(), opus.OpusDecoder()
        for i in range(0, len(x) - fs + 1, fs):
            p = enc.encode(x[i : i + fs])
            q = fr.attach_dred(p, b"\x00\x01\x02")
            assert np.array_equal(plain.decode(p), padded.decode(q))
            assert list(fr.parse_packet(p).frame_sizes) == opus.libopus_packet_parse(p)[1]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.sampled_from([8000, 16000, 48000]), st.booleans())
def test_decoding_arbitrary_bytes_is_safe(data, rate, fec):
    # Untrusted input: libopus either decodes it or we raise OpusError; the
    # LBRR reader either answers or raises MalformedPacketError.
    dec = opus.OpusDecoder(sample_rate=rate)
    try:
        y = dec.decode(data, frame_size=rate // 50, fec=fec)
    except opus.OpusError:
        assert _invalid(data)
    else:
        assert y.dtype == np.int16 and 0 < len(y) <= rate * 120 // 1000
    try:
        opus.packet_has_lbrr(data)
    except fr.MalformedPacketError:
        assert _invalid(data)


def _invalid(data: bytes) -> bool:
    try:
        fr.parse_packet(data)
    except fr.MalformedPacketError:
        return True
    return False
