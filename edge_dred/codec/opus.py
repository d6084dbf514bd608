"""Opus encoder/decoder on the system libopus (public API).

The compiled binding ``edge_dred.codec._opus`` is private; this module checks
arguments, picks speech-friendly defaults for a 16 kHz voice stream and adds
``packet_has_lbrr`` (libopus 1.3.1 has no ``opus_packet_has_lbrr``; we read
the SILK header flags with a small RFC 6716 range decoder instead).

libopus calls run without the GIL.  ``encode`` allocates only its returned
``bytes`` and ``decode`` only its returned array.  Because the GIL is
released, one encoder/decoder instance must not be used from two threads at
once (separate instances are independent).
"""
from __future__ import annotations

import numpy as np

from . import _opus
from ._opus import OpusError
from .framing import MAX_PACKET_BYTES, parse_packet

__all__ = [
    "OpusError",
    "OpusEncoder",
    "OpusDecoder",
    "SAMPLE_RATES",
    "opus_version",
    "packet_get_nb_samples",
    "packet_get_nb_frames",
    "packet_get_bandwidth",
    "packet_get_nb_channels",
    "packet_get_samples_per_frame",
    "libopus_packet_parse",
    "packet_has_lbrr",
    "silk_header_flags",
]

#: Sample rates libopus accepts.
SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
# Frame durations in units of 0.5 ms (2.5, 5, 10, 20, 40, 60 ms).
_FRAME_HALF_MS = (5, 10, 20, 40, 80, 120)
_MAX_DATA_BYTES = 1275


def _check_rate_channels(sample_rate: int, channels: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate!r}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels!r}")


def _valid_frame_sizes(sample_rate: int) -> tuple[int, ...]:
    return tuple(sample_rate * h // 2000 for h in _FRAME_HALF_MS)


def _as_packet(packet: object) -> bytes | bytearray | memoryview:
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        raise ValueError(f"packet must be bytes-like or None, got {type(packet).__name__}")
    n = len(packet)
    if n == 0:
        raise ValueError("empty packet; pass None for a lost packet")
    if n > MAX_PACKET_BYTES:
        raise ValueError(f"packet of {n} bytes exceeds MAX_PACKET_BYTES={MAX_PACKET_BYTES}")
    if isinstance(packet, memoryview) and not packet.c_contiguous:
        return packet.tobytes()
    return packet


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return int(value)


def opus_version() -> str:
    """libopus version string, e.g. ``"libopus 1.3.1"``."""
    return _opus.version_string()


class OpusEncoder:
    """One-frame-at-a-time Opus encoder.

    Parameters
    ----------
    sample_rate : int
        8000, 12000, 16000, 24000 or 48000.
    channels : int
        1 or 2.
    bitrate : int
        Target bits per second (500..512000).
    complexity : int
        0..10.
    vbr : bool
        Variable bitrate (unconstrained VBR is libopus's default).
    dtx : bool
        Discontinuous transmission: in silence the encoder emits 1-2 byte
        packets (a 1-byte TOC-only packet means "nothing new, run PLC/CNG").
    fec : bool
        In-band FEC (SILK LBRR): each packet may carry a low-rate copy of the
        previous frame.  libopus only spends bits on it when
        ``packet_loss_perc > 0`` and the bitrate is high enough.
    packet_loss_perc : int
        Expected loss 0..100; tunes FEC and the encoder's loss robustness.
    application : str
        "voip" (default), "audio" or "restricted_lowdelay".
    signal : str
        "voice" (default, biases mode decisions towards SILK), "music", "auto".
    bandwidth : str
        "wideband" (default at 16 kHz: never drop to narrowband at low
        rates), "auto", "narrowband", "mediumband", "superwideband",
        "fullband".  At sample rates below 16 kHz the default is "auto".
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        channels: int = 1,
        bitrate: int = 24000,
        complexity: int = 9,
        vbr: bool = True,
        dtx: bool = False,
        fec: bool = False,
        packet_loss_perc: int = 0,
        application: str = "voip",
        signal: str = "voice",
        bandwidth: str | None = None,
    ) -> None:
        _check_rate_channels(sample_rate, channels)
        if application not in _opus.APPLICATIONS:
            raise ValueError(f"application must be one of {sorted(_opus.APPLICATIONS)}, got {application!r}")
        if signal not in _opus.SIGNALS:
            raise ValueError(f"signal must be one of {sorted(_opus.SIGNALS)}, got {signal!r}")
        if bandwidth is None:
            bandwidth = "wideband" if sample_rate >= 16000 else "auto"
        if bandwidth not in _opus.BANDWIDTHS:
            raise ValueError(f"bandwidth must be one of {sorted(_opus.BANDWIDTHS)}, got {bandwidth!r}")
        self._enc = _opus.Encoder(sample_rate, channels, _opus.APPLICATIONS[application])
        self.sample_rate = sample_rate
        self.channels = channels
        self.application = application
        self._frame_sizes = _valid_frame_sizes(sample_rate)
        self._enc.set_ctl(_opus.SET_SIGNAL, _opus.SIGNALS[signal])
        self._enc.set_ctl(_opus.SET_BANDWIDTH, _opus.BANDWIDTHS[bandwidth])
        self.bitrate = bitrate
        self.complexity = complexity
        self.vbr = vbr
        self.dtx = dtx
        self.fec = fec
        self.packet_loss_perc = packet_loss_perc

    # -- settings ----------------------------------------------------------
    @property
    def bitrate(self) -> int:
        """Target bitrate in bits per second."""
        return self._enc.get_ctl(_opus.GET_BITRATE)

    @bitrate.setter
    def bitrate(self, value: int) -> None:
        self._enc.set_ctl(_opus.SET_BITRATE, _check_int("bitrate", value, 500, 512000))

    @property
    def complexity(self) -> int:
        return self._enc.get_ctl(_opus.GET_COMPLEXITY)

    @complexity.setter
    def complexity(self, value: int) -> None:
        self._enc.set_ctl(_opus.SET_COMPLEXITY, _check_int("complexity", value, 0, 10))

    @property
    def vbr(self) -> bool:
        return bool(self._enc.get_ctl(_opus.GET_VBR))

    @vbr.setter
    def vbr(self, value: bool) -> None:
        self._enc.set_ctl(_opus.SET_VBR, 1 if value else 0)

    @property
    def dtx(self) -> bool:
        return bool(self._enc.get_ctl(_opus.GET_DTX))

    @dtx.setter
    def dtx(self, value: bool) -> None:
        self._enc.set_ctl(_opus.SET_DTX, 1 if value else 0)

    @property
    def fec(self) -> bool:
        """In-band FEC (LBRR) enabled."""
        return bool(self._enc.get_ctl(_opus.GET_INBAND_FEC))

    @fec.setter
    def fec(self, value: bool) -> None:
        self._enc.set_ctl(_opus.SET_INBAND_FEC, 1 if value else 0)

    @property
    def packet_loss_perc(self) -> int:
        return self._enc.get_ctl(_opus.GET_PACKET_LOSS_PERC)

    @packet_loss_perc.setter
    def packet_loss_perc(self, value: int) -> None:
        self._enc.set_ctl(_opus.SET_PACKET_LOSS_PERC, _check_int("packet_loss_perc", value, 0, 100))

    @property
    def lookahead(self) -> int:
        """Encoder lookahead in samples: the codec's algorithmic delay."""
        return self._enc.get_ctl(_opus.GET_LOOKAHEAD)

    @property
    def in_dtx(self) -> bool:
        """True when the last encoded frame was a DTX frame."""
        return bool(self._enc.get_ctl(_opus.GET_IN_DTX))

    @property
    def final_range(self) -> int:
        """Range coder state after the last encode (for bit-exactness checks)."""
        return self._enc.get_final_range()

    @property
    def valid_frame_sizes(self) -> tuple[int, ...]:
        """Samples per channel accepted by :meth:`encode` (2.5..60 ms)."""
        return self._frame_sizes

    # -- coding ------------------------------------------------------------
    def encode(self, pcm: np.ndarray, max_bytes: int = _MAX_DATA_BYTES) -> bytes:
        """Encode exactly one frame.

        Parameters
        ----------
        pcm : np.ndarray of int16
            Shape (frame_size,) for mono or (frame_size, channels)
            interleaved; frame_size is 2.5/5/10/20/40/60 ms (320 samples =
            20 ms at 16 kHz).
        max_bytes : int
            Upper bound on the packet size (1..1275).

        Returns
        -------
        bytes
            One Opus packet.
        """
        if not isinstance(pcm, np.ndarray):
            raise ValueError(f"pcm must be a numpy int16 array, got {type(pcm).__name__}")
        if pcm.dtype != np.int16:
            raise ValueError(f"pcm must have dtype int16, got {pcm.dtype}")
        if self.channels == 1:
            if pcm.ndim == 2 and pcm.shape[1] == 1:
                pcm = pcm[:, 0]
            if pcm.ndim != 1:
                raise ValueError(f"mono pcm must have shape (frame_size,), got {pcm.shape}")
        elif pcm.ndim != 2 or pcm.shape[1] != self.channels:
            raise ValueError(f"stereo pcm must have shape (frame_size, {self.channels}), got {pcm.shape}")
        frame_size = pcm.shape[0]
        if frame_size not in self._frame_sizes:
            raise ValueError(
                f"frame of {frame_size} samples is not 2.5/5/10/20/40/60 ms at {self.sample_rate} Hz "
                f"(valid: {self._frame_sizes})"
            )
        max_bytes = _check_int("max_bytes", max_bytes, 1, _MAX_DATA_BYTES)
        flat = np.ascontiguousarray(pcm).reshape(-1)
        return self._enc.encode(flat, frame_size, max_bytes)

    def reset(self) -> None:
        """Reset the coding state (settings are kept)."""
        self._enc.reset()


class OpusDecoder:
    """Opus decoder with PLC and in-band FEC.

    Parameters
    ----------
    sample_rate : int
        Output rate: 8000, 12000, 16000, 24000 or 48000.
    channels : int
        1 or 2.
    """

    def __init__(self, sample_rate: int = 16000, channels: int = 1) -> None:
        _check_rate_channels(sample_rate, channels)
        self._dec = _opus.Decoder(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self._frame_sizes = _valid_frame_sizes(sample_rate)
        self._max_samples = sample_rate * 120 // 1000

    def decode(self, packet: bytes | None, frame_size: int = 320, fec: bool = False) -> np.ndarray:
        """Decode one packet, conceal a lost one, or recover it from FEC.

        Parameters
        ----------
        packet : bytes or None
            The packet.  None means "lost": libopus PLC synthesises
            ``frame_size`` samples.
        frame_size : int
            Samples per channel to produce for PLC and FEC (a multiple of
            2.5 ms, at most 120 ms).  For a normal decode the packet's own
            duration is decoded and ``frame_size`` is ignored.
        fec : bool
            With the packet *after* a lost one: decode the LBRR copy of the
            lost frame that it carries (``frame_size`` samples).  When that
            packet has no LBRR libopus falls back to PLC, exactly as
            ``decode(None, frame_size)`` would.  Afterwards decode the same
            packet again normally.

        Returns
        -------
        np.ndarray of int16
            Shape (n,) for mono, (n, channels) for stereo.
        """
        if packet is None or fec:
            frame_size = _check_int("frame_size", frame_size, 1, self._max_samples)
            if (frame_size * 400) % self.sample_rate:
                raise ValueError(f"frame_size {frame_size} is not a multiple of 2.5 ms at {self.sample_rate} Hz")
        if packet is None:
            out = self._dec.decode(None, frame_size, False)
        else:
            data = _as_packet(packet)
            if not fec:
                # Decode exactly the packet's duration; an invalid packet
                # raises OpusError(OPUS_INVALID_PACKET) here.
                frame_size = self._dec.nb_samples(data)
                if not 0 < frame_size <= self._max_samples:
                    raise OpusError(-4, "opus_decoder_get_nb_samples")
            out = self._dec.decode(data, frame_size, bool(fec))
        if self.channels > 1:
            out = out.reshape(-1, self.channels)
        return out

    def packet_has_lbrr(self, packet: bytes) -> bool:
        """True when ``packet``'s first frame carries SILK LBRR (in-band FEC)."""
        return packet_has_lbrr(packet)

    def get_nb_samples(self, packet: bytes) -> int:
        """Samples per channel ``packet`` decodes to at this decoder's rate."""
        return self._dec.nb_samples(_as_packet(packet))

    def get_last_packet_duration(self) -> int:
        """Samples per channel of the last decoded packet (or PLC/FEC output)."""
        return self._dec.get_ctl(_opus.GET_LAST_PACKET_DURATION)

    @property
    def last_packet_duration(self) -> int:
        return self.get_last_packet_duration()

    @property
    def final_range(self) -> int:
        """Range coder state after the last decode; equals the encoder's for
        the same packet when decoding is bit exact."""
        return self._dec.get_final_range()

    @property
    def bandwidth(self) -> int:
        """libopus OPUS_BANDWIDTH_* value of the last decoded packet."""
        return self._dec.get_ctl(_opus.GET_BANDWIDTH)

    def reset(self) -> None:
        """Reset the decoder state."""
        self._dec.reset()


# ----------------------------------------------------------------------------
# Packet helpers
# ----------------------------------------------------------------------------


def packet_get_nb_samples(packet: bytes, sample_rate: int = 16000) -> int:
    """Samples per channel in ``packet`` at ``sample_rate`` (libopus)."""
    _check_rate_channels(sample_rate, 1)
    return _opus.packet_get_nb_samples(_as_packet(packet), sample_rate)


def packet_get_nb_frames(packet: bytes) -> int:
    """Number of Opus frames in ``packet`` (libopus; reads the TOC/count only)."""
    return _opus.packet_get_nb_frames(_as_packet(packet))


def packet_get_bandwidth(packet: bytes) -> str:
    """Bandwidth name from the TOC ("narrowband" .. "fullband")."""
    return _opus.BANDWIDTH_NAMES[_opus.packet_get_bandwidth(_as_packet(packet))]


def packet_get_nb_channels(packet: bytes) -> int:
    """1 or 2, from the TOC stereo flag."""
    return _opus.packet_get_nb_channels(_as_packet(packet))


def packet_get_samples_per_frame(packet: bytes, sample_rate: int = 16000) -> int:
    """Samples per channel in one frame of ``packet`` at ``sample_rate``."""
    _check_rate_channels(sample_rate, 1)
    return _opus.packet_get_samples_per_frame(_as_packet(packet), sample_rate)


def libopus_packet_parse(packet: bytes) -> tuple[int, list[int], list[int], int]:
    """libopus's ``opus_packet_parse``: (toc, frame sizes, frame offsets, payload offset).

    Exposed to cross-check :func:`edge_dred.codec.framing.parse_packet`.
    Raises OpusError for an invalid packet.
    """
    return _opus.packet_parse(_as_packet(packet))


class _RangeBits:
    """Just enough of the RFC 6716 section 4.1 range decoder to read the
    equiprobable SILK header flags (ec_dec_bit_logp with logp=1)."""

    __slots__ = ("buf", "pos", "rng", "val", "rem")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        b0 = buf[0] if buf else 0
        self.pos = 1
        self.rng = 128
        self.val = 127 - (b0 >> 1)
        self.rem = b0
        self._normalize()

    def _normalize(self) -> None:
        while self.rng <= 1 << 23:
            self.rng <<= 8
            # Past the end the decoder reads zero bytes (RFC 6716 4.1.2.1).
            b = self.buf[self.pos] if self.pos < len(self.buf) else 0
            self.pos += 1
            sym = ((self.rem << 8) | b) >> 1 & 0xFF
            self.rem = b
            self.val = ((self.val << 8) + (255 - sym)) & 0x7FFFFFFF

    def bit(self) -> int:
        s = self.rng >> 1
        if self.val < s:
            self.rng = s
            bit = 1
        else:
            self.val -= s
            self.rng -= s
            bit = 0
        self._normalize()
        return bit


def silk_header_flags(frame: bytes, silk_frames: int, channels: int) -> list[tuple[list[int], int]]:
    """Read the SILK header bits of one Opus frame (RFC 6716 section 4.2.3).

    Parameters
    ----------
    frame : bytes
        One compressed Opus frame of a SILK-only or Hybrid packet.
    silk_frames : int
        20 ms SILK frames in it: 1 for 10/20 ms, 2 for 40 ms, 3 for 60 ms.
    channels : int
        1 or 2 (the TOC stereo flag; stereo has mid then side flags).

    Returns
    -------
    list of (vad_flags, lbrr_flag), one per coded channel.
    """
    if silk_frames not in (1, 2, 3) or channels not in (1, 2):
        raise ValueError("silk_frames must be 1..3 and channels 1..2")
    rd = _RangeBits(bytes(frame))
    out = []
    for _ in range(channels):
        vad = [rd.bit() for _ in range(silk_frames)]
        out.append((vad, rd.bit()))
    return out


def packet_has_lbrr(packet: bytes) -> bool:
    """True when the packet's first frame carries SILK LBRR data (in-band FEC).

    libopus 1.3.1 lacks ``opus_packet_has_lbrr``; this reads the LBRR flag(s)
    from the range-coded SILK header of the first frame, which is where
    ``decode(packet, fec=True)`` takes its redundancy from.  CELT-only packets
    and empty (DTX) frames have none.  A malformed packet raises
    :class:`~edge_dred.codec.framing.MalformedPacketError`.
    """
    p = parse_packet(_as_packet(packet))
    if p.mode == "celt" or p.frame_sizes[0] == 0:
        return False
    silk_frames = max(1, p.frame_samples_48k // 960)
    flags = silk_header_flags(p.frames[0], silk_frames, 2 if p.stereo else 1)
    return any(lbrr for _, lbrr in flags)
