import struct

import numpy as np
import pytest

from edge_dred.audio.resample import resample, resample_ratio
from edge_dred.audio.wavio import AudioFormatError, load_audio, read_wav, write_wav


def _wav_bytes(samples: np.ndarray, rate: int, fmt: int = 1, bits: int = 16) -> bytes:
    ch = samples.shape[1]
    body = samples.tobytes()
    fmt_chunk = struct.pack("<HHIIHH", fmt, ch, rate, rate * ch * bits // 8, ch * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + 16 + 8 + len(body)) + b"WAVE"
            + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", len(body)) + body)


def test_roundtrip_int16(tmp_path):
    x = (np.sin(np.arange(8000) / 7) * 20000).astype(np.int16)
    write_wav(tmp_path / "a.wav", x)
    a = load_audio(tmp_path / "a.wav")
    assert np.array_equal(a.pcm, x) and a.notes == []


def test_stereo_float_other_rate_is_converted_with_notes(tmp_path):
    t = np.arange(48000) / 48000
    s = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1).astype("<f4") * 0.5
    (tmp_path / "s.wav").write_bytes(_wav_bytes(s, 48000, fmt=3, bits=32))
    a = load_audio(tmp_path / "s.wav")
    assert len(a.pcm) == 16000
    assert any("downmixed" in n for n in a.notes) and any("resampled 48000" in n for n in a.notes)
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) * 0.5 * 32768
    assert np.max(np.abs(a.pcm[200:-200] - ref[200:-200])) < 40


@pytest.mark.parametrize("blob,msg", [
    (b"", "empty"),
    (b"RIFX0000WAVE", "not a RIFF"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "truncated"),
    (b"RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00", "no fmt"),
])
def test_corrupt_wavs_raise_clear_errors(tmp_path, blob, msg):
    p = tmp_path / "bad.wav"
    p.write_bytes(blob)
    with pytest.raises(AudioFormatError, match=msg):
        read_wav(p)


def test_missing_file_and_nan_float(tmp_path):
    with pytest.raises(AudioFormatError, match="cannot read"):
        read_wav(tmp_path / "nope.wav")
    s = np.full((100, 1), np.nan, "<f4")
    (tmp_path / "n.wav").write_bytes(_wav_bytes(s, 16000, fmt=3, bits=32))
    with pytest.raises(AudioFormatError, match="NaN"):
        read_wav(tmp_path / "n.wav")


def test_write_is_atomic_on_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", np.zeros((2, 2), np.int16))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rin,rout", [(44100, 16000), (8000, 16000), (48000, 16000), (22050, 16000)])
def test_resample_tone_accuracy(rin, rout):
    f = 1000.0
    x = np.sin(2 * np.pi * f * np.arange(rin) / rin)
    y = resample(x, rin, rout)
    assert len(y) == rout
    ref = np.sin(2 * np.pi * f * np.arange(len(y)) / rout)
    assert np.max(np.abs(y - ref)[300:-300]) < 1e-3


def test_resample_rejects_aliases_and_bad_rates():
    rin = 44100
    x = np.sin(2 * np.pi * 10000 * np.arange(rin) / rin)  # above the 8 kHz output Nyquist
    assert np.max(np.abs(resample(x, rin, 16000)[300:-300])) < 1e-3
    with pytest.raises(ValueError):
        resample_ratio(0, 16000)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 2)), 8000, 16000)


def test_wav_cut_inside_its_data_is_read_with_a_warning(tmp_path):
    from edge_dred.audio.wavio import TruncatedAudioWarning

    x = np.stack([np.arange(2000, dtype="<i2")] * 2, 1)
    blob = _wav_bytes(x, 16000)
    p = tmp_path / "cut.wav"
    p.write_bytes(blob[:44 + 4 * 1000 + 3])  # 1000 stereo frames and 3 bytes of the next
    with pytest.warns(TruncatedAudioWarning, match=r"cut\.wav: .*truncated.*read 1000 of 2000 samples"):
        a = load_audio(p)
    assert np.array_equal(a.pcm, np.arange(1000, dtype=np.int16))


@pytest.mark.parametrize("length", [0, 0xFFFFFFFF])
def test_streamed_wav_length_placeholders_are_read_without_a_warning(tmp_path, length, recwarn):
    x = np.arange(500, dtype="<i2").reshape(-1, 1)
    blob = bytearray(_wav_bytes(x, 16000))
    blob[40:44] = struct.pack("<I", length)
    (tmp_path / "s.wav").write_bytes(bytes(blob))
    samples, rate = read_wav(tmp_path / "s.wav")
    assert samples.shape == (500, 1) and rate == 16000
    assert not recwarn.list
