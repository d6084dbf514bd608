"""Opus codec access and packet framing.

``framing`` (pure Python: RFC 6716 packets, padding extensions, DRED carriage)
is imported eagerly; the libopus-backed names of ``opus`` load on first use so
that packet handling works even where the extension has not been built.
"""
from __future__ import annotations

from typing import Any

from .framing import (
    DRED_EXT_ID,
    DRED_HEADER,
    DRED_MAGIC,
    DRED_VERSION,
    MAX_EXTENSIONS,
    MAX_PACKET_BYTES,
    MAX_PADDING_BYTES,
    Extension,
    FramingError,
    MalformedPacketError,
    OpusPacket,
    attach_dred,
    build_extensions,
    build_packet,
    extract_dred,
    packet_extensions,
    parse_extensions,
    parse_packet,
    strip_padding,
    with_padding,
)

_OPUS_NAMES = {
    "OpusEncoder",
    "OpusDecoder",
    "OpusError",
    "opus_version",
    "packet_get_nb_samples",
    "packet_has_lbrr",
}


def __getattr__(name: str) -> Any:
    if name in _OPUS_NAMES:
        from . import opus

        return getattr(opus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(
    [
        "DRED_EXT_ID", "DRED_HEADER", "DRED_MAGIC", "DRED_VERSION", "MAX_EXTENSIONS",
        "MAX_PACKET_BYTES", "MAX_PADDING_BYTES", "Extension", "FramingError",
        "MalformedPacketError", "OpusPacket", "attach_dred", "build_extensions",
        "build_packet", "extract_dred", "packet_extensions", "parse_extensions",
        "parse_packet", "strip_padding", "with_padding",
    ]
    + list(_OPUS_NAMES)
)
