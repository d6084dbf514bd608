"""The DRED contract's quantizer / entropy tables as their own small model file.

Sender and receiver must code payloads with the same tables, so both load
``edge_dred/models/dred_tables.npz`` (written by ``training/export_rdovae.py``,
listed in ``manifest.json`` as ``dred_tables`` with its version and sha256):
the sender never reads the decoder's weights for them.

The file holds ``version`` and the eight float32 tables of
:class:`~edge_dred.dred.quantizer.EntropyTables` (``quant_scale``,
``dead_zone``, ``p0``, ``decay`` of shape (16, D); ``state_quant_scale``,
``state_dead_zone``, ``state_p0``, ``state_decay`` of shape (S,)).
"""
from __future__ import annotations

import functools
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..models.loader import ModelFileError, verify_model_file
from .quantizer import LATENT_TABLE_NAMES, STATE_TABLE_NAMES, EntropyTables, QuantizerError

__all__ = ["DredModelError", "TABLES_VERSION", "TABLES_FILE", "check_manifest_entry", "locate_model_file", "read_npz",
           "load_tables", "shipped_tables", "table_arrays"]

TABLES_VERSION = "rdovae-1"
MANIFEST_KEY = "dred_tables"
TABLES_FILE = "dred_tables.npz"
_MAX_FILE_BYTES = 1 << 20  # 16 x 32 x 4 tables + state tables: ~9 KB
_MAX_NPZ_BYTES = 64 << 20  # an .npz inflating beyond this is not a model file (zip bombs)
_MAX_NPZ_MEMBERS = 256


class DredModelError(ModelFileError):
    """A DRED model file is missing, corrupted, of the wrong version or inconsistent."""


def check_manifest_entry(name: str, version: str, models_dir: Path | None = None) -> tuple[Path, dict]:
    """Verify a shipped model against ``manifest.json`` (version, size, sha256).

    Returns ``(path, entry)``; raises :class:`DredModelError`.
    """
    try:
        return verify_model_file(name, version, models_dir)
    except ModelFileError as e:
        raise DredModelError(str(e)) from None


def locate_model_file(key: str, version: str, path: str | os.PathLike | None, verify: bool | None, what: str,
                      max_bytes: int) -> Path:
    """The DRED model file to read: the shipped one, or ``path``.

    The shipped file is always checked against ``manifest.json`` (version,
    size, sha256); ``path`` only when ``verify`` (against the manifest next
    to it).  Either must exist and be at most ``max_bytes``.

    Raises
    ------
    DredModelError
        Naming the file and the problem (``what`` names the kind of file).
    """
    if path is None:
        p, _ = check_manifest_entry(key, version)
    else:
        p = Path(path)
        if verify:
            vp, _ = check_manifest_entry(key, version, p.parent)
            if vp.name != p.name:
                raise DredModelError(f"the manifest's {key} is {vp.name}, not {p.name}")
    if not p.is_file():
        raise DredModelError(f"DRED {what} file not found: {p} (run training/export_rdovae.py)")
    if p.stat().st_size > max_bytes:
        raise DredModelError(f"{p}: {p.stat().st_size} bytes is not a DRED {what} file")
    return p


def read_npz(p: Path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file (no pickles), sizes bounded before anything is inflated;
    every failure a :class:`DredModelError` naming the file."""
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            size = sum(i.file_size for i in infos)
            if len(infos) > _MAX_NPZ_MEMBERS or size > _MAX_NPZ_BYTES:
                raise DredModelError(f"{p}: {len(infos)} arrays inflating to {size} bytes is not a {what} file")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except DredModelError:
        raise
    # zipfile and numpy raise many types for a damaged archive: zlib.error (bad deflate data),
    # NotImplementedError (unknown compression), RuntimeError (encrypted member), ...
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError, TypeError, OverflowError, MemoryError) as e:
        raise DredModelError(f"{p}: not a readable {what} file ({type(e).__name__}: {e})") from None


def table_arrays(tables: EntropyTables) -> dict[str, np.ndarray]:
    """The arrays of a tables file (what :func:`load_tables` reads back)."""
    out = {"version": np.array(TABLES_VERSION)}
    out.update({n: np.asarray(getattr(tables, n), np.float32) for n in LATENT_TABLE_NAMES + STATE_TABLE_NAMES})
    return out


def load_tables(path: str | os.PathLike | None = None, *, verify: bool | None = None) -> EntropyTables:
    """Load and validate a tables file.

    Parameters
    ----------
    path : path-like, optional
        Defaults to the shipped ``dred_tables.npz`` named in ``manifest.json``.
    verify : bool, optional
        Check sha256/size/version against ``manifest.json`` next to the file;
        default: only for the shipped file.

    Raises
    ------
    DredModelError
        On any problem, with a message naming the file.
    """
    p = locate_model_file(MANIFEST_KEY, TABLES_VERSION, path, verify, "tables", _MAX_FILE_BYTES)
    arrs = read_npz(p, "tables")
    version = str(np.asarray(arrs.get("version", "")))
    if version != TABLES_VERSION:
        raise DredModelError(f"{p}: version {version!r}, this runtime needs {TABLES_VERSION!r}")
    try:
        return EntropyTables.from_mapping(arrs)
    except QuantizerError as e:
        raise DredModelError(f"{p}: {e}") from None


@functools.lru_cache(maxsize=1)
def shipped_tables() -> EntropyTables:
    """The shipped tables, checked and loaded once per process."""
    return load_tables()
