"""Versioned weight files: named arrays, 64-byte aligned data, sha256.

Layout (little-endian)::

    0   magic        8 bytes  b"EDREDWTS"
    8   format       u32      FORMAT_VERSION
    12  flags        u32      0
    16  meta_len     u32      bytes of UTF-8 JSON metadata (must hold "model", "version")
    20  n_arrays     u32
    24  table_len    u32      bytes of the array table
    28  reserved     u32      0
    32  data_offset  u64      start of array data, multiple of 64
    40  file_len     u64      total file size
    48  sha256       32 bytes of everything after the 80-byte header
    80  metadata JSON, then the table, zero padding to data_offset, then data.

Table entry: u16 name_len, name (UTF-8), u8 dtype code, u8 ndim, ndim x u64
dims, u64 offset (from data_offset, multiple of 64), u64 nbytes.

Files are untrusted: every length is bounded and checked against the file
size before use, and the checksum is verified before the table is parsed.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Mapping

import numpy as np

MAGIC = b"EDREDWTS"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIIIIIQQ32s")
ALIGN = 64
MAX_FILE_BYTES = 1 << 30
MAX_META_BYTES = 1 << 20
MAX_ARRAYS = 4096
MAX_NAME_BYTES = 255
MAX_NDIM = 8

_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.int32, 5: np.int64,
           6: np.float16, 7: np.float32, 8: np.float64}
_CODES = {np.dtype(v).str: k for k, v in _DTYPES.items()}


class WeightFileError(ValueError):
    """A weight file that is malformed, corrupted or not the one expected."""


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_weights(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    """Write named arrays and metadata to ``path``.

    Parameters
    ----------
    path : str or PathLike
        Destination; written to a temporary file then renamed (atomic).
    arrays : mapping of str to np.ndarray
        Arrays of dtype int8/uint8/int16/int32/int64/float16/float32/float64.
    meta : mapping
        JSON-serialisable; must contain string entries "model" and "version".

    Returns
    -------
    str
        Hex sha256 recorded in the header.
    """
    meta = dict(meta)
    for key in ("model", "version"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise WeightFileError(f"meta must contain a non-empty string {key!r}")
    try:
        meta_b = json.dumps(meta, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise WeightFileError(f"meta is not JSON-serialisable: {e}") from None
    if len(meta_b) > MAX_META_BYTES:
        raise WeightFileError(f"meta is {len(meta_b)} bytes (max {MAX_META_BYTES})")
    if len(arrays) > MAX_ARRAYS:
        raise WeightFileError(f"{len(arrays)} arrays (max {MAX_ARRAYS})")
    table = bytearray()
    blobs: list[tuple[int, bytes]] = []
    off = 0
    for name, arr in arrays.items():
        nb = name.encode("utf-8") if isinstance(name, str) else b""
        if not nb or len(nb) > MAX_NAME_BYTES:
            raise WeightFileError(f"array name {name!r} must be a 1..{MAX_NAME_BYTES}-byte string")
        a = np.asarray(arr, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        code = _CODES.get(a.dtype.newbyteorder("<").str if a.dtype.byteorder == ">" else a.dtype.str)
        if code is None:
            raise WeightFileError(f"array {name!r}: unsupported dtype {a.dtype}")
        a = a.astype(np.dtype(_DTYPES[code]).newbyteorder("<"), copy=False)
        if a.ndim > MAX_NDIM:
            raise WeightFileError(f"array {name!r}: {a.ndim} dimensions (max {MAX_NDIM})")
        data = a.tobytes()
        table += struct.pack("<H", len(nb)) + nb + struct.pack("<BB", code, a.ndim)
        table += struct.pack(f"<{a.ndim}Q", *a.shape) + struct.pack("<QQ", off, len(data))
        blobs.append((off, data))
        off = _align(off + len(data))
    data_offset = _align(HEADER.size + len(meta_b) + len(table))
    body = bytearray(data_offset - HEADER.size + off)
    body[0:len(meta_b)] = meta_b
    body[len(meta_b):len(meta_b) + len(table)] = table
    base = data_offset - HEADER.size
    for o, data in blobs:
        body[base + o: base + o + len(data)] = data
    file_len = HEADER.size + len(body)
    if file_len > MAX_FILE_BYTES:
        raise WeightFileError(f"weight file would be {file_len} bytes (max {MAX_FILE_BYTES})")
    digest = hashlib.sha256(body).digest()
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(meta_b), len(arrays), len(table), 0,
                         data_offset, file_len, digest)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(body)
    os.replace(tmp, path)
    return digest.hex()


def _parse_table(table: bytes, n_arrays: int, data_len: int) -> list[tuple[str, np.dtype, tuple, int, int]]:
    entries = []
    p = 0
    seen = set()

    def take(n: int, what: str) -> bytes:
        nonlocal p
        if p + n > len(table):
            raise WeightFileError(f"array table truncated while reading {what}")
        b = table[p:p + n]
        p += n
        return b

    for i in range(n_arrays):
        (nlen,) = struct.unpack("<H", take(2, f"entry {i} name length"))
        if not 1 <= nlen <= MAX_NAME_BYTES:
            raise WeightFileError(f"array entry {i}: name length {nlen} out of range")
        try:
            name = take(nlen, f"entry {i} name").decode("utf-8")
        except UnicodeDecodeError:
            raise WeightFileError(f"array entry {i}: name is not UTF-8") from None
        code, ndim = struct.unpack("<BB", take(2, f"array {name!r} dtype"))
        if code not in _DTYPES:
            raise WeightFileError(f"array {name!r}: unknown dtype code {code}")
        if ndim > MAX_NDIM:
            raise WeightFileError(f"array {name!r}: {ndim} dimensions (max {MAX_NDIM})")
        dims = struct.unpack(f"<{ndim}Q", take(8 * ndim, f"array {name!r} shape"))
        off, nbytes = struct.unpack("<QQ", take(16, f"array {name!r} extent"))
        dt = np.dtype(_DTYPES[code]).newbyteorder("<")
        count = 1
        for d in dims:
            if d > MAX_FILE_BYTES:
                raise WeightFileError(f"array {name!r}: dimension {d} out of range")
            count *= int(d)
        if count * dt.itemsize != nbytes:
            raise WeightFileError(f"array {name!r}: {nbytes} bytes do not match shape {dims} of {dt}")
        if off % ALIGN or off > data_len or nbytes > data_len - off:
            raise WeightFileError(f"array {name!r}: extent [{off}, {off + nbytes}) outside the data section "
                                  f"({data_len} bytes) or misaligned")
        if name in seen:
            raise WeightFileError(f"array {name!r} appears twice")
        seen.add(name)
        entries.append((name, dt, tuple(int(d) for d in dims), int(off), int(nbytes)))
    if p != len(table):
        raise WeightFileError(f"array table has {len(table) - p} trailing bytes")
    return entries


def read_weights(path: str | os.PathLike, expect_model: str | None = None, expect_version: str | None = None,
                 expect_arrays: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a weight file.

    Parameters
    ----------
    path : str or PathLike
    expect_model, expect_version : str, optional
        Required values of meta["model"] / meta["version"].
    expect_arrays : mapping, optional
        name -> shape tuple, or name -> (shape, dtype); each must be present
        with exactly that shape (and dtype).

    Returns
    -------
    arrays : dict of str to np.ndarray
        Read-only arrays, 64-byte aligned in memory.
    meta : dict

    Raises
    ------
    WeightFileError
        Truncated, corrupted (sha256 mismatch), wrong magic/format, unexpected
        model/version, or a missing/mis-shaped expected array (named).
    """
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise WeightFileError(f"cannot open weight file {os.fspath(path)!r}: {e}") from None
    if size < HEADER.size:
        raise WeightFileError(f"weight file truncated: {size} bytes, header needs {HEADER.size}")
    if size > MAX_FILE_BYTES:
        raise WeightFileError(f"weight file is {size} bytes (max {MAX_FILE_BYTES})")
    # One 64-byte aligned buffer so the arrays come out aligned.
    raw = np.empty(size + ALIGN, dtype=np.uint8)
    shift = (-raw.ctypes.data) % ALIGN
    buf = raw[shift:shift + size]
    try:
        with open(path, "rb") as f:
            got = f.readinto(memoryview(buf))
    except OSError as e:
        raise WeightFileError(f"cannot read weight file {os.fspath(path)!r}: {e}") from None
    if got != size:
        raise WeightFileError(f"weight file truncated while reading ({got} of {size} bytes)")
    mv = memoryview(buf)
    magic, fmt, flags, meta_len, n_arrays, table_len, _res, data_offset, file_len, digest = \
        HEADER.unpack(bytes(mv[:HEADER.size]))
    if magic != MAGIC:
        raise WeightFileError(f"not an edge-dred weight file (magic {magic!r})")
    if fmt != FORMAT_VERSION:
        raise WeightFileError(f"unsupported weight file format {fmt} (this reader handles {FORMAT_VERSION})")
    if file_len != size:
        raise WeightFileError(f"weight file truncated or padded: header says {file_len} bytes, file has {size}")
    if meta_len > MAX_META_BYTES or n_arrays > MAX_ARRAYS:
        raise WeightFileError(f"header out of range: meta {meta_len} bytes, {n_arrays} arrays")
    if data_offset % ALIGN or data_offset < HEADER.size + meta_len + table_len or data_offset > size:
        raise WeightFileError(f"header out of range: data offset {data_offset}")
    if hashlib.sha256(mv[HEADER.size:]).digest() != digest:
        raise WeightFileError("weight file corrupted: sha256 mismatch")
    try:
        meta = json.loads(bytes(mv[HEADER.size:HEADER.size + meta_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deeply nested JSON: RecursionError
        raise WeightFileError("weight file metadata is not valid UTF-8 JSON") from None
    if not isinstance(meta, dict):
        raise WeightFileError("weight file metadata is not a JSON object")
    for key, want in (("model", expect_model), ("version", expect_version)):
        if want is not None and meta.get(key) != want:
            raise WeightFileError(f"weight file {key} is {meta.get(key)!r}, expected {want!r}")
    t0 = HEADER.size + meta_len
    entries = _parse_table(bytes(mv[t0:t0 + table_len]), n_arrays, size - data_offset)
    arrays: dict[str, np.ndarray] = {}
    for name, dt, dims, off, nbytes in entries:
        a = buf[data_offset + off: data_offset + off + nbytes].view(dt).reshape(dims)
        a.flags.writeable = False
        arrays[name] = a
    if expect_arrays:
        for name, spec in expect_arrays.items():
            if name not in arrays:
                raise WeightFileError(f"weight file lacks array {name!r}")
            if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], tuple):
                shape, dtype = spec
            else:
                shape, dtype = spec, None
            if arrays[name].shape != tuple(shape):
                raise WeightFileError(f"array {name!r} has shape {arrays[name].shape}, expected {tuple(shape)}")
            if dtype is not None and arrays[name].dtype != np.dtype(dtype):
                raise WeightFileError(f"array {name!r} has dtype {arrays[name].dtype}, expected {np.dtype(dtype)}")
    return arrays, meta
