"""Per-board data files (one TOML per board); :mod:`edge_dred.boards` interprets them."""
from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_DIR", "available", "config_path"]

CONFIG_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped board configs, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def config_path(name: str) -> Path:
    """Path of a shipped board config; ValueError names the valid boards if unknown."""
    if name not in available():
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(available())}")
    return CONFIG_DIR / f"{name}.toml"
