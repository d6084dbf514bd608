"""Model and data loaders raise only their documented error types, naming the file.

Each case below used to escape as another exception type (zlib.error,
NotImplementedError, RuntimeError, RecursionError) or as a bare ValueError
without the file name, and the CLI printed a traceback.
"""
from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from edge_dred.audio.wavio import AudioFormatError, load_audio, write_wav
from edge_dred.dred.decoder import DredModelError, load_decoder_weights
from edge_dred.models.loader import MODELS_DIR
from edge_dred.quantize.weightfile import HEADER, WeightFileError, read_weights, write_weights


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _patch_zip(data: bytes, field_off: int, value: int, width: int = 2) -> bytes:
    """Set a field of every local and central header (offsets from the header signature)."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", field_off), (b"PK\x01\x02", field_off + 2)):
        i = b.find(sig)
        while i >= 0:
            b[i + off:i + off + width] = value.to_bytes(width, "little")
            i = b.find(sig, i + 4)
    return bytes(b)


def _corrupt_deflate(data: bytes) -> bytes:
    b = bytearray(data)
    i = b.find(b"PK\x03\x04")
    nlen, xlen = int.from_bytes(b[i + 26:i + 28], "little"), int.from_bytes(b[i + 28:i + 30], "little")
    start = i + 30 + nlen + xlen
    b[start:start + 8] = b"\xff" * 8  # an invalid deflate block type
    return bytes(b)


ARRS = dict(dims=np.arange(7), x=np.zeros(100))


@pytest.mark.parametrize("name,data", [
    ("bad_deflate.npz", _corrupt_deflate(_npz_bytes(**ARRS))),                # zlib.error
    ("unknown_method.npz", _patch_zip(_npz_bytes(**ARRS), 8, 99)),             # NotImplementedError
    ("encrypted.npz", _patch_zip(_npz_bytes(**ARRS), 6, 1)),                   # RuntimeError
    ("string_dims.npz", _npz_bytes(dims=np.array(["a", "b"]))),               # bare ValueError, no file name
    ("not_a_zip.npz", b"PK\x03\x04" + bytes(40)),
])
def test_decoder_npz_loader_raises_dred_model_error_naming_the_file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(DredModelError, match=name):
        load_decoder_weights(p)


def test_decoder_npz_loader_refuses_a_zip_bomb(tmp_path):
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", bytes(80 << 20))  # 80 MB of zeros, ~80 kB on disk
    with pytest.raises(DredModelError, match="bomb.npz"):
        load_decoder_weights(p)


def test_weight_file_with_deeply_nested_metadata_and_a_valid_checksum(tmp_path):
    p = tmp_path / "deep.bin"
    write_weights(p, {"w": np.zeros(4, np.float32)}, {"model": "m", "version": "1", "pad": "x" * 60000})
    raw = bytearray(p.read_bytes())
    fields = list(HEADER.unpack_from(raw, 0))
    meta_len = fields[3]
    deep = b"[" * (meta_len // 2) + b"]" * (meta_len // 2)
    raw[HEADER.size:HEADER.size + meta_len] = deep.ljust(meta_len, b" ")
    fields[-1] = hashlib.sha256(bytes(raw[HEADER.size:])).digest()
    raw[:HEADER.size] = HEADER.pack(*fields)
    p.write_bytes(bytes(raw))
    with pytest.raises(WeightFileError, match="metadata"):  # used to be RecursionError
        read_weights(p)


def test_wav_at_an_odd_sample_rate_names_the_file(tmp_path):
    p = tmp_path / "odd_rate.wav"
    write_wav(p, (np.sin(np.arange(4408) * 0.1) * 8000).astype(np.int16), sample_rate=44081)
    with pytest.raises(AudioFormatError, match="odd_rate.wav"):
        load_audio(p)


def test_cli_prints_no_traceback_for_a_bad_file(tmp_path, capsys):
    from edge_dred.cli.main import main

    p = tmp_path / "odd.wav"
    write_wav(p, np.zeros(44081, np.int16), sample_rate=44081)
    rc = main(["simulate", str(p), "-o", str(tmp_path / "o.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "odd.wav" in err
