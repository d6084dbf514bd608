"""Board configs: loading, validation and detection of the board we run on.

Detection order: ``--board`` / ``EDGE_DRED_BOARD``; then the device-tree model
string (``/proc/device-tree/model``, e.g. "Raspberry Pi 4 Model B Rev 1.4");
then the ARM CPU part number in ``/proc/cpuinfo``; then the generic config for
this machine's architecture.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edge_dred.board_configs import available, config_path
from edge_dred.kernels.variants import family_variants

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BoardConfig", "load_board", "detect_board", "describe_cpu", "list_boards", "BoardConfigError"]

#: Board ``arch`` (platform.machine() spelling) -> kernel variant family (src/variants.h).
_ARCH_FAMILY = {"x86_64": "x86", "aarch64": "aarch64", "armv7l": "armv7"}


class BoardConfigError(ValueError):
    """A board config file is missing a field or has a wrong value."""


@dataclass(frozen=True)
class BoardConfig:
    name: str
    description: str
    arch: str
    cpu: str
    qemu_cpu: str
    kernel_variants: tuple[str, ...]
    capture_device: str
    playback_device: str
    period_ms: int
    buffer_periods: int
    threads: int
    pin_cores: tuple[int, ...]
    dred_ms: int
    complexity: int
    instructions_per_second: float
    match_models: tuple[str, ...] = field(default=())
    match_cpu_parts: tuple[str, ...] = field(default=())


def _get(d: dict, key: str, typ, where: str):
    if key not in d:
        raise BoardConfigError(f"{where}: missing field '{key}'")
    v = d[key]
    if typ is float and isinstance(v, int):
        v = float(v)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise BoardConfigError(f"{where}: field '{key}' must be {typ.__name__}, got {type(v).__name__}")
    return v


def parse_board(data: dict, where: str) -> BoardConfig:
    """Validate a parsed TOML document and build a :class:`BoardConfig`."""
    a = _get(data, "audio", dict, where)
    r = _get(data, "runtime", dict, where)
    cfg = BoardConfig(
        name=_get(data, "name", str, where),
        description=_get(data, "description", str, where),
        arch=_get(data, "arch", str, where),
        cpu=_get(data, "cpu", str, where),
        qemu_cpu=_get(data, "qemu_cpu", str, where),
        match_models=tuple(_get(data, "match_models", list, where)),
        match_cpu_parts=tuple(p.lower() for p in _get(data, "match_cpu_parts", list, where)),
        kernel_variants=tuple(_get(data, "kernel_variants", list, where)),
        capture_device=_get(a, "capture_device", str, where + " [audio]"),
        playback_device=_get(a, "playback_device", str, where + " [audio]"),
        period_ms=_get(a, "period_ms", int, where + " [audio]"),
        buffer_periods=_get(a, "buffer_periods", int, where + " [audio]"),
        threads=_get(r, "threads", int, where + " [runtime]"),
        pin_cores=tuple(_get(r, "pin_cores", list, where + " [runtime]")),
        dred_ms=_get(r, "dred_ms", int, where + " [runtime]"),
        complexity=_get(r, "complexity", int, where + " [runtime]"),
        instructions_per_second=_get(r, "instructions_per_second", float, where + " [runtime]"),
    )
    if "build" in data:
        raise BoardConfigError(f"{where}: unknown table [build] (kernel_variants is a top-level field)")
    family = _ARCH_FAMILY.get(cfg.arch)
    if family is None:
        raise BoardConfigError(f"{where}: arch must be one of {', '.join(_ARCH_FAMILY)}, got {cfg.arch!r}")
    runs = family_variants(family)
    bad = [v for v in cfg.kernel_variants if v not in runs]
    if bad or not cfg.kernel_variants or cfg.kernel_variants[0] != "scalar":
        raise BoardConfigError(f"{where}: kernel_variants must start with 'scalar' and name only variants an "
                               f"{cfg.arch} CPU can run ({', '.join(runs)}); got {list(cfg.kernel_variants)}")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1024 for c in cfg.pin_cores):
        raise BoardConfigError(f"{where} [runtime]: pin_cores must be core numbers 0..1023, got {list(cfg.pin_cores)}")
    if cfg.period_ms not in (10, 20):
        raise BoardConfigError(f"{where}: period_ms must be 10 or 20")
    if not 0 <= cfg.dred_ms <= 1040 or cfg.dred_ms % 40:
        raise BoardConfigError(f"{where}: dred_ms must be a multiple of 40 in 0..1040")
    if not 0 <= cfg.complexity <= 10:
        raise BoardConfigError(f"{where}: complexity must be 0..10")
    if not 2 <= cfg.buffer_periods <= 16 or cfg.threads < 1:
        raise BoardConfigError(f"{where}: buffer_periods must be 2..16 and threads >= 1")
    return cfg


def load_board(name_or_path: str) -> BoardConfig:
    """Load a shipped board by name, or any TOML file by path."""
    p = Path(name_or_path)
    path = p if p.suffix == ".toml" and p.exists() else config_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise BoardConfigError(f"{path}: invalid TOML ({e})") from None
    return parse_board(data, str(path))


def list_boards() -> list[BoardConfig]:
    return [load_board(n) for n in available()]


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return ""


def detect_board(override: str | None = None, model_path: str = "/proc/device-tree/model",
                 cpuinfo_path: str = "/proc/cpuinfo", machine: str | None = None) -> tuple[BoardConfig, str]:
    """Return (config, how it was chosen)."""
    name = override or os.environ.get("EDGE_DRED_BOARD")
    if name:
        return load_board(name), "override" if override else "EDGE_DRED_BOARD"
    boards = list_boards()
    model = _read(model_path)
    if model:
        for b in boards:
            if any(m in model for m in b.match_models):
                return b, f"device-tree model '{model}'"
    parts = {line.split(":", 1)[1].strip().lower() for line in _read(cpuinfo_path).splitlines()
             if line.lower().startswith("cpu part") and ":" in line}
    for b in boards:
        if parts & set(b.match_cpu_parts):
            return b, f"CPU part {sorted(parts)[0]}"
    machine = machine or platform.machine()
    fallback = {"aarch64": "generic_aarch64", "arm64": "generic_aarch64", "armv7l": "generic_armv7",
                "armv8l": "generic_armv7", "x86_64": "x86_64", "AMD64": "x86_64"}.get(machine, "x86_64")
    return load_board(fallback), f"architecture {machine}"


def describe_cpu(cpuinfo_path: str = "/proc/cpuinfo", model_path: str = "/proc/device-tree/model") -> str:
    """A human-readable name of this machine's processor, e.g. for benchmark tables.

    x86: the ``model name`` of ``/proc/cpuinfo`` and the CPU count.  ARM: the
    board (device-tree model, or the ``Hardware`` line) and its cores, named
    from their ``CPU part`` through the board configs ("4x cortex-a72") or by
    part number.  Falls back to :func:`platform.processor`, then ``unknown CPU``.
    """
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            info = f.read(1 << 20)
    except OSError:
        info = ""
    models: list[str] = []
    parts: list[str] = []
    hardware = ""
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            continue
        if key == "model name":
            models.append(value)
        elif key == "cpu part":
            parts.append(value.lower())
        elif key == "hardware":
            hardware = value
    board = _read(model_path) or hardware
    if parts:
        names = {p: b.cpu for b in list_boards() for p in b.match_cpu_parts if b.cpu != "generic"}
        counts: dict[str, int] = {}
        for p in parts:
            name = names.get(p, f"CPU part {p}")
            counts[name] = counts.get(name, 0) + 1
        cores = " + ".join(f"{n}x {name}" for name, n in counts.items())
        return f"{board}: {cores}" if board else cores
    if models:
        distinct = list(dict.fromkeys(models))
        return f"{' + '.join(distinct)}, {len(models)} CPU{'s' if len(models) > 1 else ''}"
    return board or platform.processor() or "unknown CPU"
