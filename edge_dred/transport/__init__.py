"""Transport: RTP (RFC 3550/7587), RED (RFC 2198), SDP, an adaptive jitter buffer, Ogg Opus
recording (RFC 7845) and netem-like impairment for tests and demos.

Pure Python on top of :mod:`edge_dred.codec.framing`; nothing here needs libopus.
"""
from .impair import Impairment
from .jitter import JitterBuffer, JitterConfig, PutResult, SlotKind
from .ogg import OggError, OggOpusWriter, OggRecorder, OpusHead, read_ogg_opus
from .red import RedBlock, RedEncoder, RedError, RedOpusPacket, RedPayload, build_red, parse_red, unpack_red
from .rtp import (
    DEFAULT_PAYLOAD_TYPE,
    RTP_CLOCK_RATE,
    RtpError,
    RtpPacket,
    RtpPacketizer,
    SequenceUnwrapper,
    build_rtp,
    parse_rtp,
)
from .sdp import SdpError, SdpStream, make_sdp, parse_sdp

__all__ = [
    "Impairment", "JitterBuffer", "JitterConfig", "PutResult", "SlotKind", "OggError", "OggOpusWriter",
    "OggRecorder", "OpusHead", "read_ogg_opus", "DEFAULT_PAYLOAD_TYPE", "RTP_CLOCK_RATE", "RtpError",
    "RtpPacket", "RtpPacketizer", "SequenceUnwrapper", "build_rtp", "parse_rtp", "SdpError", "SdpStream",
    "make_sdp", "parse_sdp", "RedBlock", "RedEncoder", "RedError", "RedOpusPacket", "RedPayload", "build_red",
    "parse_red", "unpack_red",
]
