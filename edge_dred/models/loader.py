"""Shipped model files: manifest checks before any weights are used.

``edge_dred/models/manifest.json`` lists every shipped model file::

    {"models": {"vocoder": {"file": "vocoder.bin", "version": "...",
                            "sha256": "<hex of the whole file>", "bytes": N, ...},
                ...}}

Before a model is used, :func:`verify_model_file` checks that the manifest has
an entry for it, that the entry's version is the one the runtime was written
for, that the file exists, has the recorded size (truncation) and the recorded
sha256 (corruption).  :func:`load_weight_file` then reads a
:mod:`edge_dred.quantize.weightfile` file, which checks its own header checksum, model
name and version again.  Every failure raises :class:`ModelFileError` (a
``ValueError``) whose message names the file and what is wrong.

Several exporters write entries into the same manifest (vocoder, neural PLC,
DRED); :func:`update_manifest` merges one entry and keeps the others.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = [
    "MODELS_DIR", "MANIFEST_NAME", "MAX_MANIFEST_BYTES", "ModelFileError", "file_sha256", "load_manifest",
    "manifest_entry", "verify_model_file", "load_weight_file", "update_manifest",
]

MODELS_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few hundred bytes; refuse anything absurd
MAX_MODEL_BYTES = 64 << 20


class ModelFileError(ValueError):
    """A model file or manifest entry that is missing, truncated, corrupted or of the wrong version."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a whole file (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(models_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read ``manifest.json`` of ``models_dir`` (default: the package's models).

    Raises
    ------
    ModelFileError
        Missing, oversized or malformed manifest.
    """
    path = Path(models_dir or MODELS_DIR) / MANIFEST_NAME
    try:
        size = path.stat().st_size
    except OSError:
        raise ModelFileError(f"model manifest {path} is missing (reinstall edge-dred or re-run the export "
                             f"scripts in training/)") from None
    if size > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"model manifest {path} is {size} bytes (max {MAX_MANIFEST_BYTES})")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # deep nesting: RecursionError
        raise ModelFileError(f"model manifest {path} is not valid JSON: {type(e).__name__}") from None
    except OSError as e:
        raise ModelFileError(f"model manifest {path}: cannot read ({e.strerror})") from None
    if not isinstance(man, dict) or not isinstance(man.get("models", {}), dict):
        raise ModelFileError(f"model manifest {path} must be an object with a 'models' object")
    man.setdefault("models", {})
    return man


def manifest_entry(name: str, models_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest entry of model ``name`` (checked for the required keys)."""
    man = load_manifest(models_dir)
    entry = man["models"].get(name)
    if entry is None:
        known = ", ".join(sorted(man["models"])) or "none"
        raise ModelFileError(f"model {name!r} is not in the manifest (known: {known})")
    if not isinstance(entry, dict):
        raise ModelFileError(f"manifest entry of {name!r} is not an object")
    for key, typ in (("file", str), ("version", str), ("sha256", str), ("bytes", int)):
        if not isinstance(entry.get(key), typ):
            raise ModelFileError(f"manifest entry of {name!r} lacks a valid {key!r}")
    if Path(entry["file"]).name != entry["file"] or entry["file"] in ("", ".", ".."):
        # The manifest must not point outside the models directory.
        raise ModelFileError(f"manifest entry of {name!r}: file must be a plain file name, got {entry['file']!r}")
    return entry


def verify_model_file(name: str, expect_version: str | None = None,
                      models_dir: str | os.PathLike | None = None) -> tuple[Path, dict[str, Any]]:
    """Check model ``name`` against its manifest entry.

    Parameters
    ----------
    name : str
        Manifest key, e.g. ``"vocoder"``.
    expect_version : str, optional
        Version the caller's code understands; a different manifest version
        is refused.
    models_dir : path, optional
        Directory holding the manifest and files (default: the package's).

    Returns
    -------
    (path, entry)

    Raises
    ------
    ModelFileError
        Not in the manifest, wrong version, missing file, size mismatch
        (truncated or padded) or sha256 mismatch (corrupted).
    """
    entry = manifest_entry(name, models_dir)
    if expect_version is not None and entry["version"] != expect_version:
        raise ModelFileError(f"model {name!r} has version {entry['version']!r} in the manifest, this edge-dred "
                             f"needs {expect_version!r} (re-export the model or update edge-dred)")
    path = Path(models_dir or MODELS_DIR) / entry["file"]
    try:
        size = path.stat().st_size
    except OSError:
        raise ModelFileError(f"model file {path} for {name!r} is missing") from None
    if size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "larger than recorded"
        raise ModelFileError(f"model file {path} is {what}: {size} bytes, manifest says {entry['bytes']}")
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(f"model file {path} is {size} bytes (max {MAX_MODEL_BYTES})")
    digest = file_sha256(path)
    if digest != entry["sha256"].lower():
        raise ModelFileError(f"model file {path} is corrupted: sha256 {digest[:16]}... does not match the "
                             f"manifest's {entry['sha256'][:16]}...")
    return path, entry


def load_weight_file(name: str, expect_version: str, expect_arrays: Mapping[str, Any] | None = None,
                     models_dir: str | os.PathLike | None = None,
                     path: str | os.PathLike | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Verify and read a :mod:`edge_dred.quantize.weightfile` model.

    Parameters
    ----------
    name, expect_version : str
        Model name (manifest key and the file's ``meta["model"]``) and version.
    expect_arrays : mapping, optional
        Passed to :func:`edge_dred.quantize.read_weights` (name -> shape).
    models_dir : path, optional
        Where manifest and file live (default: the package's models).
    path : path, optional
        Read this file directly instead (no manifest; the file's own header
        checksum, model name and version are still checked).  For freshly
        exported files and tests.

    Returns
    -------
    (arrays, meta)

    Raises
    ------
    ModelFileError
        Any manifest or file problem (see :func:`verify_model_file`).
    """
    from edge_dred.quantize import WeightFileError, read_weights

    if path is None:
        path, _ = verify_model_file(name, expect_version, models_dir)
    elif not os.path.isfile(path):
        raise ModelFileError(f"model file {path} for {name!r} is missing")
    try:
        return read_weights(path, expect_model=name, expect_version=expect_version, expect_arrays=expect_arrays)
    except WeightFileError as e:
        raise ModelFileError(f"model file {path}: {e}") from None


def update_manifest(name: str, path: str | os.PathLike, version: str, extra: Mapping[str, Any] | None = None,
                    models_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Record ``path`` as model ``name`` in the manifest, keeping other entries.

    The file must live in ``models_dir``.  Written atomically (temp file +
    rename) so a concurrent reader never sees half a manifest.
    """
    mdir = Path(models_dir or MODELS_DIR)
    path = Path(path)
    if path.resolve().parent != mdir.resolve():
        raise ModelFileError(f"{path} is not inside the models directory {mdir}")
    mpath = mdir / MANIFEST_NAME
    man = load_manifest(mdir) if mpath.exists() else {"models": {}}
    entry = {"file": path.name, "version": version, "sha256": file_sha256(path), "bytes": path.stat().st_size}
    entry.update(extra or {})
    man["models"][name] = entry
    fd, tmp = tempfile.mkstemp(prefix=".manifest_", dir=str(mdir))
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; the manifest is read by every user of an install
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(man, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, mpath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return entry
