# cython: language_level=3
"""Private, thin Cython binding to the system libopus (1.3.x).

Only the mechanics live here: state allocation, CTL calls and the nogil
encode/decode calls.  Argument validation and the public API are in
``edge_dred.codec.opus``; callers should not import this module directly.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int16_t, int32_t, uint32_t

import numpy as np
cimport numpy as cnp

cnp.import_array()


cdef extern from "opus.h" nogil:
    ctypedef struct OpusEncoder:
        pass
    ctypedef struct OpusDecoder:
        pass
    ctypedef int16_t opus_int16
    ctypedef int32_t opus_int32
    ctypedef uint32_t opus_uint32

    enum:
        OPUS_OK
        OPUS_BAD_ARG
        OPUS_BUFFER_TOO_SMALL
        OPUS_INTERNAL_ERROR
        OPUS_INVALID_PACKET
        OPUS_UNIMPLEMENTED
        OPUS_INVALID_STATE
        OPUS_ALLOC_FAIL
        OPUS_APPLICATION_VOIP
        OPUS_APPLICATION_AUDIO
        OPUS_APPLICATION_RESTRICTED_LOWDELAY
        OPUS_AUTO
        OPUS_SIGNAL_VOICE
        OPUS_SIGNAL_MUSIC
        OPUS_BANDWIDTH_NARROWBAND
        OPUS_BANDWIDTH_MEDIUMBAND
        OPUS_BANDWIDTH_WIDEBAND
        OPUS_BANDWIDTH_SUPERWIDEBAND
        OPUS_BANDWIDTH_FULLBAND
        OPUS_SET_BITRATE_REQUEST
        OPUS_GET_BITRATE_REQUEST
        OPUS_SET_VBR_REQUEST
        OPUS_GET_VBR_REQUEST
        OPUS_SET_COMPLEXITY_REQUEST
        OPUS_GET_COMPLEXITY_REQUEST
        OPUS_SET_INBAND_FEC_REQUEST
        OPUS_GET_INBAND_FEC_REQUEST
        OPUS_SET_PACKET_LOSS_PERC_REQUEST
        OPUS_GET_PACKET_LOSS_PERC_REQUEST
        OPUS_SET_DTX_REQUEST
        OPUS_GET_DTX_REQUEST
        OPUS_SET_SIGNAL_REQUEST
        OPUS_GET_SIGNAL_REQUEST
        OPUS_SET_BANDWIDTH_REQUEST
        OPUS_GET_BANDWIDTH_REQUEST
        OPUS_SET_MAX_BANDWIDTH_REQUEST
        OPUS_GET_LOOKAHEAD_REQUEST
        OPUS_GET_FINAL_RANGE_REQUEST
        OPUS_GET_LAST_PACKET_DURATION_REQUEST
        OPUS_GET_IN_DTX_REQUEST
        OPUS_RESET_STATE

    const char *opus_strerror(int error)
    const char *opus_get_version_string()

    OpusEncoder *opus_encoder_create(opus_int32 Fs, int channels, int application, int *error)
    void opus_encoder_destroy(OpusEncoder *st)
    opus_int32 opus_encode(OpusEncoder *st, const opus_int16 *pcm, int frame_size,
                           unsigned char *data, opus_int32 max_data_bytes)
    int opus_encoder_ctl(OpusEncoder *st, int request, ...)

    OpusDecoder *opus_decoder_create(opus_int32 Fs, int channels, int *error)
    void opus_decoder_destroy(OpusDecoder *st)
    int opus_decode(OpusDecoder *st, const unsigned char *data, opus_int32 len,
                    opus_int16 *pcm, int frame_size, int decode_fec)
    int opus_decoder_ctl(OpusDecoder *st, int request, ...)
    int opus_decoder_get_nb_samples(const OpusDecoder *dec, const unsigned char *packet,
                                    opus_int32 len)

    int opus_packet_parse(const unsigned char *data, opus_int32 len, unsigned char *out_toc,
                          const unsigned char **frames, opus_int16 *size, int *payload_offset)
    int opus_packet_get_bandwidth(const unsigned char *data)
    int opus_packet_get_samples_per_frame(const unsigned char *data, opus_int32 Fs)
    int opus_packet_get_nb_channels(const unsigned char *data)
    int opus_packet_get_nb_frames(const unsigned char *packet, opus_int32 len)
    int opus_packet_get_nb_samples(const unsigned char *packet, opus_int32 len, opus_int32 Fs)


# Output buffer for one encode call, allocated once per encoder so encode()
# allocates only its returned bytes.  A 60 ms CELT packet is three repacketised
# 20 ms frames (<= 3*1275 bytes plus a few header bytes), so this is enough for
# every frame size the public wrapper allows.
cdef enum:
    _ENC_BUF_BYTES = 4000

APPLICATIONS = {
    "voip": OPUS_APPLICATION_VOIP,
    "audio": OPUS_APPLICATION_AUDIO,
    "restricted_lowdelay": OPUS_APPLICATION_RESTRICTED_LOWDELAY,
}
SIGNALS = {"auto": OPUS_AUTO, "voice": OPUS_SIGNAL_VOICE, "music": OPUS_SIGNAL_MUSIC}
BANDWIDTHS = {
    "auto": OPUS_AUTO,
    "narrowband": OPUS_BANDWIDTH_NARROWBAND,
    "mediumband": OPUS_BANDWIDTH_MEDIUMBAND,
    "wideband": OPUS_BANDWIDTH_WIDEBAND,
    "superwideband": OPUS_BANDWIDTH_SUPERWIDEBAND,
    "fullband": OPUS_BANDWIDTH_FULLBAND,
}
BANDWIDTH_NAMES = {v: k for k, v in BANDWIDTHS.items()}
ENC_BUF_BYTES = _ENC_BUF_BYTES


class OpusError(ValueError):
    """A libopus call failed; ``code`` is the libopus error code.

    It derives from ValueError because in practice every failure we can
    trigger comes from bad arguments or an invalid (network) packet.
    """

    def __init__(self, code: int, where: str) -> None:
        self.code = int(code)
        msg = opus_strerror(code).decode("ascii", "replace")
        super().__init__(f"{where}: libopus error {code} ({msg})")


cdef inline int _check(int ret, str where) except -1:
    if ret < 0:
        raise OpusError(ret, where)
    return ret


def version_string() -> str:
    return opus_get_version_string().decode("ascii", "replace")


def strerror(int code) -> str:
    return opus_strerror(code).decode("ascii", "replace")


cdef class Encoder:
    """Owns one OpusEncoder state and a reusable output buffer."""
    cdef OpusEncoder *st
    cdef unsigned char *buf
    cdef readonly int sample_rate
    cdef readonly int channels

    def __cinit__(self, int sample_rate, int channels, int application):
        cdef int err = OPUS_OK
        self.st = NULL
        self.buf = NULL
        self.st = opus_encoder_create(sample_rate, channels, application, &err)
        if self.st == NULL or err != OPUS_OK:
            if self.st != NULL:
                opus_encoder_destroy(self.st)
                self.st = NULL
            raise OpusError(err, "opus_encoder_create")
        self.buf = <unsigned char *> malloc(_ENC_BUF_BYTES)
        if self.buf == NULL:
            raise MemoryError()
        self.sample_rate = sample_rate
        self.channels = channels

    def __dealloc__(self):
        if self.st != NULL:
            opus_encoder_destroy(self.st)
            self.st = NULL
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL

    def set_ctl(self, int request, int value) -> None:
        _check(opus_encoder_ctl(self.st, request, value), f"opus_encoder_ctl({request})")

    def get_ctl(self, int request) -> int:
        cdef opus_int32 value = 0
        _check(opus_encoder_ctl(self.st, request, &value), f"opus_encoder_ctl({request})")
        return value

    def get_final_range(self) -> int:
        cdef opus_uint32 value = 0
        _check(opus_encoder_ctl(self.st, OPUS_GET_FINAL_RANGE_REQUEST, &value),
               "OPUS_GET_FINAL_RANGE")
        return value

    def reset(self) -> None:
        _check(opus_encoder_ctl(self.st, OPUS_RESET_STATE), "OPUS_RESET_STATE")

    def encode(self, const opus_int16[::1] pcm, int frame_size, int max_bytes) -> bytes:
        """Encode ``frame_size`` samples per channel from a C-contiguous buffer.

        The caller guarantees ``pcm`` holds frame_size*channels samples and
        1 <= max_bytes <= ENC_BUF_BYTES; both are re-checked because an
        out-of-bounds read in C must stay impossible.
        """
        cdef opus_int32 n
        if pcm.shape[0] != <Py_ssize_t> frame_size * self.channels:
            raise ValueError("pcm length does not match frame_size * channels")
        if max_bytes < 1 or max_bytes > _ENC_BUF_BYTES:
            raise ValueError(f"max_bytes must be in 1..{_ENC_BUF_BYTES}")
        with nogil:
            n = opus_encode(self.st, &pcm[0], frame_size, self.buf, max_bytes)
        _check(n, "opus_encode")
        return self.buf[:n]


cdef class Decoder:
    """Owns one OpusDecoder state."""
    cdef OpusDecoder *st
    cdef readonly int sample_rate
    cdef readonly int channels

    def __cinit__(self, int sample_rate, int channels):
        cdef int err = OPUS_OK
        self.st = NULL
        self.st = opus_decoder_create(sample_rate, channels, &err)
        if self.st == NULL or err != OPUS_OK:
            if self.st != NULL:
                opus_decoder_destroy(self.st)
                self.st = NULL
            raise OpusError(err, "opus_decoder_create")
        self.sample_rate = sample_rate
        self.channels = channels

    def __dealloc__(self):
        if self.st != NULL:
            opus_decoder_destroy(self.st)
            self.st = NULL

    def get_ctl(self, int request) -> int:
        cdef opus_int32 value = 0
        _check(opus_decoder_ctl(self.st, request, &value), f"opus_decoder_ctl({request})")
        return value

    def get_final_range(self) -> int:
        cdef opus_uint32 value = 0
        _check(opus_decoder_ctl(self.st, OPUS_GET_FINAL_RANGE_REQUEST, &value),
               "OPUS_GET_FINAL_RANGE")
        return value

    def reset(self) -> None:
        _check(opus_decoder_ctl(self.st, OPUS_RESET_STATE), "OPUS_RESET_STATE")

    def nb_samples(self, const unsigned char[::1] packet) -> int:
        if packet.shape[0] < 1:
            raise ValueError("empty packet")
        return _check(opus_decoder_get_nb_samples(self.st, &packet[0], packet.shape[0]),
                      "opus_decoder_get_nb_samples")

    def decode(self, const unsigned char[::1] packet, int frame_size, bint fec):
        """Decode into a fresh int16 array of frame_size*channels samples.

        ``packet`` of length 0 means "lost" (PLC).  Returns the array trimmed
        to the number of samples libopus produced.
        """
        cdef cnp.ndarray[cnp.int16_t, ndim=1] out
        cdef opus_int16 *outp
        cdef const unsigned char *data = NULL
        cdef opus_int32 length = 0
        cdef int n
        if frame_size <= 0:
            raise ValueError("frame_size must be positive")
        if packet is not None and packet.shape[0] > 0:
            data = &packet[0]
            length = <opus_int32> packet.shape[0]
        out = np.empty(<Py_ssize_t> frame_size * self.channels, dtype=np.int16)
        outp = <opus_int16 *> out.data
        with nogil:
            n = opus_decode(self.st, data, length, outp, frame_size, 1 if fec else 0)
        _check(n, "opus_decode")
        if n != frame_size:
            return out[: n * self.channels]
        return out


def packet_parse(const unsigned char[::1] packet):
    """Run libopus's own opus_packet_parse: (toc, sizes, offsets, payload_offset)."""
    cdef const unsigned char *frames[48]
    cdef opus_int16 sizes[48]
    cdef unsigned char toc = 0
    cdef int payload_offset = 0
    cdef int n, i
    if packet.shape[0] < 1:
        raise OpusError(OPUS_INVALID_PACKET, "opus_packet_parse")
    if packet.shape[0] > 0x7FFFFFFF:
        raise ValueError("packet too large")
    with nogil:
        n = opus_packet_parse(&packet[0], <opus_int32> packet.shape[0], &toc, frames, sizes,
                              &payload_offset)
    _check(n, "opus_packet_parse")
    offsets = [<Py_ssize_t> (frames[i] - &packet[0]) for i in range(n)]
    return int(toc), [int(sizes[i]) for i in range(n)], offsets, int(payload_offset)


def packet_get_nb_samples(const unsigned char[::1] packet, int sample_rate) -> int:
    if packet.shape[0] < 1:
        raise OpusError(OPUS_INVALID_PACKET, "opus_packet_get_nb_samples")
    return _check(opus_packet_get_nb_samples(&packet[0], <opus_int32> packet.shape[0],
                                             sample_rate), "opus_packet_get_nb_samples")


def packet_get_nb_frames(const unsigned char[::1] packet) -> int:
    if packet.shape[0] < 1:
        raise OpusError(OPUS_INVALID_PACKET, "opus_packet_get_nb_frames")
    return _check(opus_packet_get_nb_frames(&packet[0], <opus_int32> packet.shape[0]),
                  "opus_packet_get_nb_frames")


def packet_get_bandwidth(const unsigned char[::1] packet) -> int:
    if packet.shape[0] < 1:
        raise OpusError(OPUS_INVALID_PACKET, "opus_packet_get_bandwidth")
    return _check(opus_packet_get_bandwidth(&packet[0]), "opus_packet_get_bandwidth")


def packet_get_samples_per_frame(const unsigned char[::1] packet, int sample_rate) -> int:
    if packet.shape[0] < 1:
        raise OpusError(OPUS_INVALID_PACKET, "opus_packet_get_samples_per_frame")
    return opus_packet_get_samples_per_frame(&packet[0], sample_rate)


def packet_get_nb_channels(const unsigned char[::1] packet) -> int:
    if packet.shape[0] < 1:
        raise OpusError(OPUS_INVALID_PACKET, "opus_packet_get_nb_channels")
    return opus_packet_get_nb_channels(&packet[0])


# CTL request numbers re-exported for the Python wrapper.
SET_BITRATE = OPUS_SET_BITRATE_REQUEST
GET_BITRATE = OPUS_GET_BITRATE_REQUEST
SET_VBR = OPUS_SET_VBR_REQUEST
GET_VBR = OPUS_GET_VBR_REQUEST
SET_COMPLEXITY = OPUS_SET_COMPLEXITY_REQUEST
GET_COMPLEXITY = OPUS_GET_COMPLEXITY_REQUEST
SET_INBAND_FEC = OPUS_SET_INBAND_FEC_REQUEST
GET_INBAND_FEC = OPUS_GET_INBAND_FEC_REQUEST
SET_PACKET_LOSS_PERC = OPUS_SET_PACKET_LOSS_PERC_REQUEST
GET_PACKET_LOSS_PERC = OPUS_GET_PACKET_LOSS_PERC_REQUEST
SET_DTX = OPUS_SET_DTX_REQUEST
GET_DTX = OPUS_GET_DTX_REQUEST
SET_SIGNAL = OPUS_SET_SIGNAL_REQUEST
GET_SIGNAL = OPUS_GET_SIGNAL_REQUEST
SET_BANDWIDTH = OPUS_SET_BANDWIDTH_REQUEST
GET_BANDWIDTH = OPUS_GET_BANDWIDTH_REQUEST
SET_MAX_BANDWIDTH = OPUS_SET_MAX_BANDWIDTH_REQUEST
GET_LOOKAHEAD = OPUS_GET_LOOKAHEAD_REQUEST
GET_LAST_PACKET_DURATION = OPUS_GET_LAST_PACKET_DURATION_REQUEST
GET_IN_DTX = OPUS_GET_IN_DTX_REQUEST
AUTO = OPUS_AUTO
