# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Range coder and DRED latent symbol coder (compiled).

A 32-bit carry-propagating range coder in the style of RFC 6716 section 4.1
(decoder) and 5.1 (encoder): 8-bit output symbols, the encoder's pending byte
plus a run count of 0xFF bytes to resolve carries, and a decoder that reads
zeros past the end of its buffer.  Two deliberate differences from Opus:

* "raw bits" are coded inside the range-coded stream as equiprobable symbols
  rather than packed backwards from the buffer end, so a payload is a single
  stream whose exact length the decoder can predict;
* the encoder always flushes one bit more than the minimum RFC 6716 needs.
  That makes the output length a pure function of the coder state that both
  sides share (bit count and range), so the decoder can verify the length
  exactly (`RangeDecoder.ends_exactly`) and reject truncated or padded input
  at a cost of at most one bit per stream.

On top sits the DRED symbol coder of the project contract: one integer k under
a (p0, decay) Laplace model is a 15-bit "is zero" event, a sign bit, a
truncated geometric over |k|-1 in 0..14 plus an escape, and an Elias-gamma
style tail for |k| >= 16, with |k| <= MAX_ABS_K.

Entry points: `RangeEncoder` / `RangeDecoder` (primitives), `encode_vector` /
`decode_vector` (one latent vector per call), `encode_chunks` /
`decode_chunks` (all chunks of a payload in one call, same bits),
`symbol_cost_table` / `vector_costs` (exact model bits for rate control) and
`quantize_levels` (dead-zone quantizer at every level in one pass).

Every inner loop is bounded by construction (normalisation needs a non-zero
range, which the argument checks guarantee; symbol searches cover at most 16
entries; the escape tail at most 10 unary bits), so hostile input cannot hang
the decoder.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int16_t, int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.math cimport ceil, floor, log2

import numpy as np

cdef extern from *:
    """
    #define EDR_CODE_TOP 0x80000000u
    #define EDR_CODE_BOT 0x00800000u
    #define EDR_CODE_SHIFT 23
    #define EDR_CODE_EXTRA 7
    #define EDR_PROB_BITS 15
    #define EDR_PROB_ONE 32768u
    static inline int edr_ilog(uint32_t x) { return x ? 32 - __builtin_clz(x) : 0; }
    """
    int edr_ilog(uint32_t x) nogil
    uint32_t CODE_TOP "EDR_CODE_TOP"      # 2^31: the top bit of val is the carry
    uint32_t CODE_BOT "EDR_CODE_BOT"      # renormalise once the range is <= 2^23
    int CODE_SHIFT "EDR_CODE_SHIFT"       # shift that exposes the next output byte (+ carry)
    int CODE_EXTRA "EDR_CODE_EXTRA"       # bits of the first byte the decoder loads at start
    int PROB_BITS "EDR_PROB_BITS"
    uint32_t PROB_ONE "EDR_PROB_ONE"

MAX_ABS_K = 1023
PROB_MIN_Q15 = 1
PROB_MAX_Q15 = 32767
N_GEOM = 15          # |k|-1 in 0..14 coded directly, index 15 is the escape
MAX_FT = 65536       # largest frequency total of encode()/decode()
MAX_DECODER_BYTES = 1 << 24

cdef int _MAX_ABS_K = 1023
cdef int _MAX_GAMMA_N = 9   # 2^10 > MAX_ABS_K - 15 + 1: more unary ones is malformed


class EntropyError(ValueError):
    """Invalid use of the range coder (bad arguments, encoder overflow)."""


class EntropyDecodeError(EntropyError):
    """The coded stream is malformed (a value outside the coder's bounds)."""


# ---------------------------------------------------------------- shared helpers

cdef inline int _ilog(uint32_t x) noexcept nogil:
    """Number of significant bits of x (0 for 0)."""
    return edr_ilog(x)


cdef inline uint32_t _clamp_prob(uint32_t p) noexcept nogil:
    # Any uint16 is accepted: clamping keeps every symbol's frequency > 0.
    if p < 1:
        return 1
    if p > 32767:
        return 32767
    return p


cdef inline uint32_t _geom_freq(uint32_t rem, uint32_t decay, int i) noexcept nogil:
    """Frequency of geometric symbol i < 15 given the mass `rem` left for i..15.

    f = rem * (1 - decay), kept >= 1 and small enough that the 15 - i symbols
    after it (the escape included) still get at least 1 each.
    """
    cdef uint32_t f = (rem * (PROB_ONE - decay)) >> PROB_BITS
    cdef uint32_t fmax = rem - <uint32_t>(15 - i)
    if f < 1:
        f = 1
    if f > fmax:
        f = fmax
    return f


cdef inline void _geom_interval(uint32_t decay, int m, uint32_t* fl, uint32_t* fh) noexcept nogil:
    """Cumulative interval [fl, fh) of symbol m in 0..15 out of PROB_ONE."""
    cdef uint32_t rem = PROB_ONE
    cdef uint32_t lo = 0
    cdef uint32_t f
    cdef int i
    for i in range(m):
        f = _geom_freq(rem, decay, i)
        lo += f
        rem -= f
    fl[0] = lo
    fh[0] = lo + (rem if m == 15 else _geom_freq(rem, decay, m))


cdef inline int _geom_search(uint32_t decay, uint32_t x, uint32_t* fl, uint32_t* fh) noexcept nogil:
    """Symbol whose interval holds x (x < PROB_ONE); at most 16 steps."""
    cdef uint32_t rem = PROB_ONE
    cdef uint32_t lo = 0
    cdef uint32_t f
    cdef int i
    for i in range(15):
        f = _geom_freq(rem, decay, i)
        if x < lo + f:
            fl[0] = lo
            fh[0] = lo + f
            return i
        lo += f
        rem -= f
    fl[0] = lo
    fh[0] = PROB_ONE
    return 15


# ---------------------------------------------------------------- encoder core

cdef struct enc_state:
    uint8_t* buf
    uint32_t cap
    uint32_t offs
    uint32_t rng
    uint32_t val      # low end of the interval; bit 31 is a pending carry
    int rem           # byte waiting for a possible carry, -1 before the first
    uint32_t ext      # run of 0xFF bytes behind rem that a carry would flip
    int64_t nbits     # bits consumed so far (ec_tell base)
    int err


cdef inline void _enc_put(enc_state* s, uint32_t b) noexcept nogil:
    if s.offs < s.cap:
        s.buf[s.offs] = <uint8_t>(b & 0xFF)
        s.offs += 1
    else:
        s.err = 1


cdef inline void _enc_carry(enc_state* s, uint32_t c) noexcept nogil:
    # c holds the next output byte in its low 8 bits and a carry in bit 8.
    cdef uint32_t carry
    if c == 0xFF:
        # A later carry could still turn this 0xFF into 0x00: hold it back.
        s.ext += 1
        if s.ext > s.cap:
            s.err = 1
        return
    carry = c >> 8
    if s.rem >= 0:
        _enc_put(s, <uint32_t>s.rem + carry)
    while s.ext > 0:
        _enc_put(s, 0xFF + carry)
        s.ext -= 1
    s.rem = <int>(c & 0xFF)


cdef inline void _enc_norm(enc_state* s) noexcept nogil:
    while s.rng <= CODE_BOT:
        _enc_carry(s, s.val >> CODE_SHIFT)
        s.val = (s.val << 8) & (CODE_TOP - 1)
        s.rng <<= 8
        s.nbits += 8


cdef inline void _enc_encode(enc_state* s, uint32_t fl, uint32_t fh, uint32_t ft) noexcept nogil:
    # Requires 0 <= fl < fh <= ft <= 2^16 so the new range is >= 2^7 (non-zero).
    cdef uint32_t r = s.rng / ft
    if fl > 0:
        s.val += s.rng - r * (ft - fl)
        s.rng = r * (fh - fl)
    else:
        # The first symbol absorbs the division remainder.
        s.rng -= r * (ft - fh)
    _enc_norm(s)


cdef inline void _enc_bin(enc_state* s, uint32_t fl, uint32_t fh, int bits) noexcept nogil:
    cdef uint32_t r = s.rng >> bits
    cdef uint32_t ft = (<uint32_t>1) << bits
    if fl > 0:
        s.val += s.rng - r * (ft - fl)
        s.rng = r * (fh - fl)
    else:
        s.rng -= r * (ft - fh)
    _enc_norm(s)


cdef inline void _enc_bit_logp(enc_state* s, int bit, int logp) noexcept nogil:
    # A 1 takes the top 2^-logp of the range.
    cdef uint32_t r = s.rng >> logp
    if bit:
        s.val += s.rng - r
        s.rng = r
    else:
        s.rng -= r
    _enc_norm(s)


cdef inline void _enc_bits(enc_state* s, uint32_t v, int nbits) noexcept nogil:
    # Equiprobable bits, at most 16 per range-coder step.
    cdef int n
    while nbits > 0:
        n = nbits if nbits < 16 else 16
        nbits -= n
        _enc_bin(s, (v >> nbits) & ((1u << n) - 1), ((v >> nbits) & ((1u << n) - 1)) + 1, n)


cdef inline void _enc_done(enc_state* s) noexcept nogil:
    # Flush 33 - ilog(rng) bits (one more than the RFC 6716 minimum): any
    # continuation of these bits stays inside the final interval, and the
    # decoder can recompute this exact count from state it also has.
    cdef int l = 33 - _ilog(s.rng)
    cdef uint32_t msk = (CODE_TOP - 1) >> l
    cdef uint32_t end = (s.val + msk) & ~msk
    while l > 0:
        _enc_carry(s, end >> CODE_SHIFT)
        end = (end << 8) & (CODE_TOP - 1)
        l -= 8
    if s.rem >= 0 or s.ext > 0:
        _enc_carry(s, 0)
    s.rem = -1


cdef inline void _enc_symbol(enc_state* s, int32_t k, uint32_t p0, uint32_t decay) noexcept nogil:
    cdef uint32_t fl, fh, v
    cdef int a, m, n, _
    p0 = _clamp_prob(p0)
    decay = _clamp_prob(decay)
    if k == 0:
        _enc_bin(s, 0, p0, PROB_BITS)
        return
    _enc_bin(s, p0, PROB_ONE, PROB_BITS)
    a = -k if k < 0 else k
    if a > _MAX_ABS_K:
        a = _MAX_ABS_K   # contract: the encoder clamps
    _enc_bit_logp(s, 1 if k < 0 else 0, 1)
    m = a - 1
    if m < 15:
        _geom_interval(decay, m, &fl, &fh)
        _enc_bin(s, fl, fh, PROB_BITS)
        return
    _geom_interval(decay, 15, &fl, &fh)
    _enc_bin(s, fl, fh, PROB_BITS)
    # Tail v = m - 14 >= 1: n unary ones, a zero, then the n bits below v's top bit.
    v = <uint32_t>(m - 14)
    n = _ilog(v) - 1
    for _ in range(n):
        _enc_bit_logp(s, 1, 1)
    _enc_bit_logp(s, 0, 1)
    _enc_bits(s, v - (1u << n), n)


# ---------------------------------------------------------------- decoder core

cdef struct dec_state:
    const uint8_t* buf
    uint32_t storage
    uint32_t offs
    uint32_t rng
    uint32_t val      # distance from the top of the interval to the code point, minus one
    uint32_t ext      # range / ft of the pending decode() for update()
    int rem           # last byte read (its low bit belongs to the next window)
    int64_t nbits


cdef inline int _dec_byte(dec_state* s) noexcept nogil:
    # Past the end the stream continues with zeros, as the encoder assumed.
    if s.offs < s.storage:
        s.offs += 1
        return s.buf[s.offs - 1]
    return 0


cdef inline void _dec_norm(dec_state* s) noexcept nogil:
    cdef int sym
    while s.rng <= CODE_BOT:
        s.nbits += 8
        s.rng <<= 8
        sym = s.rem
        s.rem = _dec_byte(s)
        sym = ((sym << 8) | s.rem) >> (8 - CODE_EXTRA)
        s.val = ((s.val << 8) + (0xFF & ~(<uint32_t>sym))) & (CODE_TOP - 1)


cdef inline void _dec_init(dec_state* s) noexcept nogil:
    s.offs = 0
    s.ext = 1
    s.rng = (<uint32_t>1) << CODE_EXTRA
    s.rem = _dec_byte(s)
    s.val = s.rng - 1 - (<uint32_t>s.rem >> (8 - CODE_EXTRA))
    s.nbits = 9   # becomes 33 after the three initial renormalisations, as in the encoder
    _dec_norm(s)


cdef inline uint32_t _dec_decode(dec_state* s, uint32_t ft) noexcept nogil:
    cdef uint32_t x
    s.ext = s.rng / ft
    x = s.val / s.ext + 1
    if x > ft:
        x = ft
    return ft - x


cdef inline uint32_t _dec_decode_bin(dec_state* s, int bits) noexcept nogil:
    cdef uint32_t ft = (<uint32_t>1) << bits
    cdef uint32_t x
    s.ext = s.rng >> bits
    x = s.val / s.ext + 1
    if x > ft:
        x = ft
    return ft - x


cdef inline void _dec_update(dec_state* s, uint32_t fl, uint32_t fh, uint32_t ft) noexcept nogil:
    # Requires the pending decode() result x to satisfy fl <= x < fh; then
    # val stays below rng whatever the input bytes were.
    cdef uint32_t t = s.ext * (ft - fh)
    s.val -= t
    if fl > 0:
        s.rng = s.ext * (fh - fl)
    else:
        s.rng -= t
    _dec_norm(s)


cdef inline int _dec_bit_logp(dec_state* s, int logp) noexcept nogil:
    cdef uint32_t r = s.rng >> logp
    cdef int bit = s.val < r
    if bit:
        s.rng = r
    else:
        s.val -= r
        s.rng -= r
    _dec_norm(s)
    return bit


cdef inline uint32_t _dec_bits(dec_state* s, int nbits) noexcept nogil:
    cdef uint32_t v = 0
    cdef uint32_t x
    cdef int n
    while nbits > 0:
        n = nbits if nbits < 16 else 16
        nbits -= n
        x = _dec_decode_bin(s, n)
        _dec_update(s, x, x + 1, (<uint32_t>1) << n)
        v = (v << n) | x
    return v


cdef inline int _dec_symbol(dec_state* s, uint32_t p0, uint32_t decay, int32_t* out) noexcept nogil:
    """Decode one integer; returns 0, or -1 for a malformed escape tail."""
    cdef uint32_t x, fl, fh, v
    cdef int neg, m, n, a
    p0 = _clamp_prob(p0)
    decay = _clamp_prob(decay)
    x = _dec_decode_bin(s, PROB_BITS)
    if x < p0:
        _dec_update(s, 0, p0, PROB_ONE)
        out[0] = 0
        return 0
    _dec_update(s, p0, PROB_ONE, PROB_ONE)
    neg = _dec_bit_logp(s, 1)
    x = _dec_decode_bin(s, PROB_BITS)
    m = _geom_search(decay, x, &fl, &fh)
    _dec_update(s, fl, fh, PROB_ONE)
    if m < 15:
        a = m + 1
    else:
        n = 0
        while _dec_bit_logp(s, 1):
            n += 1
            if n > _MAX_GAMMA_N:
                out[0] = 0
                return -1
        v = ((<uint32_t>1) << n) + _dec_bits(s, n)
        a = 15 + <int>v
        if a > _MAX_ABS_K:
            out[0] = 0
            return -1
    out[0] = -a if neg else a
    return 0


cdef inline int64_t _dec_tell(dec_state* s) noexcept nogil:
    return s.nbits - _ilog(s.rng)


cdef inline int64_t _dec_expected_len(dec_state* s) noexcept nogil:
    # Bytes the encoder would have written had it stopped here (see _enc_done).
    return (s.nbits - 33) // 8 + (33 - _ilog(s.rng) + 7) // 8


# ---------------------------------------------------------------- Python classes

cdef uint32_t _uarg(object x, uint32_t lo, uint32_t hi, str what) except? 0xFFFFFFFF:
    """Validate an integer argument of the Python-level API."""
    try:
        v = int(x)
    except (TypeError, ValueError):
        raise EntropyError(f"{what} must be an integer, got {x!r}") from None
    if not (lo <= v <= hi):
        raise EntropyError(f"{what} must be in [{lo}, {hi}], got {v}")
    return <uint32_t>v


cdef class RangeEncoder:
    """Range encoder writing into a bounded buffer.

    Parameters
    ----------
    capacity : int
        Maximum number of output bytes (2 .. 2**20).  Exceeding it sets an
        error that `finish` reports; nothing is written out of bounds.
    """
    cdef enc_state s
    cdef bint finished

    def __cinit__(self, capacity=4096):
        cdef uint32_t cap = _uarg(capacity, 2, 1 << 20, "capacity")
        self.s.buf = <uint8_t*>malloc(cap)
        if self.s.buf == NULL:
            raise MemoryError()
        self.s.cap = cap
        self.s.offs = 0
        self.s.rng = CODE_TOP
        self.s.val = 0
        self.s.rem = -1
        self.s.ext = 0
        self.s.nbits = 33
        self.s.err = 0
        self.finished = False

    def __dealloc__(self):
        free(self.s.buf)

    cdef int _live(self) except -1:
        if self.finished:
            raise EntropyError("encoder already finished")
        return 0

    def encode(self, fl, fh, ft) -> None:
        """Code the interval [fl, fh) out of ft (2 <= ft <= 65536)."""
        self._live()
        cdef uint32_t t = _uarg(ft, 2, MAX_FT, "ft")
        cdef uint32_t h = _uarg(fh, 1, t, "fh")
        cdef uint32_t l = _uarg(fl, 0, h - 1, "fl")
        _enc_encode(&self.s, l, h, t)

    def encode_bin(self, fl, fh, bits) -> None:
        """Code [fl, fh) out of 2**bits (1 <= bits <= 16)."""
        self._live()
        cdef int b = _uarg(bits, 1, 16, "bits")
        cdef uint32_t h = _uarg(fh, 1, 1 << b, "fh")
        cdef uint32_t l = _uarg(fl, 0, h - 1, "fl")
        _enc_bin(&self.s, l, h, b)

    def encode_bit_logp(self, bit, logp) -> None:
        """Binary event whose 1 has probability 2**-logp (1 <= logp <= 15)."""
        self._live()
        cdef int b = _uarg(bit, 0, 1, "bit")
        cdef int lp = _uarg(logp, 1, 15, "logp")
        _enc_bit_logp(&self.s, b, lp)

    def encode_bit_q15(self, bit, p1_q15) -> None:
        """Binary event with P(bit = 1) = p1_q15 / 32768 (p1_q15 in 1..32767)."""
        self._live()
        cdef int b = _uarg(bit, 0, 1, "bit")
        cdef uint32_t p = _uarg(p1_q15, 1, 32767, "p1_q15")
        # A 1 takes the top of the range, as in encode_bit_logp.
        if b:
            _enc_bin(&self.s, PROB_ONE - p, PROB_ONE, PROB_BITS)
        else:
            _enc_bin(&self.s, 0, PROB_ONE - p, PROB_BITS)

    def encode_bits(self, value, nbits) -> None:
        """Code value as nbits (0..31) equiprobable bits."""
        self._live()
        cdef int n = _uarg(nbits, 0, 31, "nbits")
        cdef uint32_t v = _uarg(value, 0, (1u << n) - 1, "value")
        _enc_bits(&self.s, v, n)

    def encode_uint(self, value, ft) -> None:
        """Code value uniformly in [0, ft) (2 <= ft <= 65536)."""
        self._live()
        cdef uint32_t t = _uarg(ft, 2, MAX_FT, "ft")
        cdef uint32_t v = _uarg(value, 0, t - 1, "value")
        _enc_encode(&self.s, v, v + 1, t)

    def encode_symbol(self, k, p0_q15, decay_q15) -> None:
        """Code one integer under the (p0, decay) model; |k| is clamped to 1023."""
        self._live()
        cdef uint32_t p = _uarg(p0_q15, 0, 65535, "p0_q15")
        cdef uint32_t d = _uarg(decay_q15, 0, 65535, "decay_q15")
        try:
            kk = int(k)
        except (TypeError, ValueError):
            raise EntropyError(f"k must be an integer, got {k!r}") from None
        _enc_symbol(&self.s, <int32_t>max(-MAX_ABS_K, min(MAX_ABS_K, kk)), p, d)

    def tell(self) -> int:
        """Bits used so far, rounded up (RFC 6716 ec_tell)."""
        return self.s.nbits - _ilog(self.s.rng)

    @property
    def error(self) -> bool:
        """True once the output buffer overflowed."""
        return bool(self.s.err)

    def finish(self) -> bytes:
        """Flush and return the coded bytes; the encoder cannot be used after."""
        self._live()
        self.finished = True
        _enc_done(&self.s)
        if self.s.err:
            raise EntropyError(f"range coder output exceeds capacity of {self.s.cap} bytes")
        return (<char*>self.s.buf)[:self.s.offs]


cdef class RangeDecoder:
    """Range decoder over an immutable copy of `data`.

    Reading past the end yields zeros (as the encoder assumed); `overrun`
    says whether decoding needed more bits than the buffer holds and
    `ends_exactly` whether the buffer length is exactly what the encoder
    would have produced for the symbols decoded so far.
    """
    cdef dec_state s
    cdef bytes _data
    cdef uint32_t pending_ft     # > 0 while a decode() awaits its update()
    cdef uint32_t pending_x

    def __cinit__(self, data):
        if isinstance(data, (int, str)):
            raise EntropyError(f"expected a bytes-like object, got {type(data).__name__}")
        try:
            b = bytes(memoryview(data))
        except TypeError:
            raise EntropyError(f"expected a bytes-like object, got {type(data).__name__}") from None
        if len(b) > MAX_DECODER_BYTES:
            raise EntropyError(f"input of {len(b)} bytes exceeds {MAX_DECODER_BYTES}")
        self._data = b
        self.s.buf = <const uint8_t*><const char*>self._data
        self.s.storage = <uint32_t>len(b)
        self.pending_ft = 0
        _dec_init(&self.s)

    cdef int _no_pending(self) except -1:
        if self.pending_ft:
            raise EntropyError("decode() must be followed by update() first")
        return 0

    def decode(self, ft) -> int:
        """Return the frequency value x in [0, ft); call update() next."""
        self._no_pending()
        cdef uint32_t t = _uarg(ft, 2, MAX_FT, "ft")
        self.pending_x = _dec_decode(&self.s, t)
        self.pending_ft = t
        return self.pending_x

    def decode_bin(self, bits) -> int:
        """Return x in [0, 2**bits); call update(fl, fh, 2**bits) next."""
        self._no_pending()
        cdef int b = _uarg(bits, 1, 16, "bits")
        self.pending_x = _dec_decode_bin(&self.s, b)
        self.pending_ft = 1u << b
        return self.pending_x

    def update(self, fl, fh, ft) -> None:
        """Consume the symbol [fl, fh) that holds the value decode() returned."""
        if self.pending_ft == 0:
            raise EntropyError("update() without a preceding decode()")
        cdef uint32_t t = _uarg(ft, self.pending_ft, self.pending_ft, "ft")
        cdef uint32_t h = _uarg(fh, self.pending_x + 1, t, "fh")
        cdef uint32_t l = _uarg(fl, 0, self.pending_x, "fl")
        self.pending_ft = 0
        _dec_update(&self.s, l, h, t)

    def decode_bit_logp(self, logp) -> int:
        self._no_pending()
        cdef int lp = _uarg(logp, 1, 15, "logp")
        return _dec_bit_logp(&self.s, lp)

    def decode_bit_q15(self, p1_q15) -> int:
        """Inverse of RangeEncoder.encode_bit_q15."""
        self._no_pending()
        cdef uint32_t p = _uarg(p1_q15, 1, 32767, "p1_q15")
        cdef uint32_t x = _dec_decode_bin(&self.s, PROB_BITS)
        if x >= PROB_ONE - p:
            _dec_update(&self.s, PROB_ONE - p, PROB_ONE, PROB_ONE)
            return 1
        _dec_update(&self.s, 0, PROB_ONE - p, PROB_ONE)
        return 0

    def decode_bits(self, nbits) -> int:
        self._no_pending()
        cdef int n = _uarg(nbits, 0, 31, "nbits")
        return _dec_bits(&self.s, n)

    def decode_uint(self, ft) -> int:
        self._no_pending()
        cdef uint32_t t = _uarg(ft, 2, MAX_FT, "ft")
        cdef uint32_t x = _dec_decode(&self.s, t)
        _dec_update(&self.s, x, x + 1, t)
        return x

    def decode_symbol(self, p0_q15, decay_q15) -> int:
        """Decode one integer; raises EntropyDecodeError on a malformed tail."""
        self._no_pending()
        cdef uint32_t p = _uarg(p0_q15, 0, 65535, "p0_q15")
        cdef uint32_t d = _uarg(decay_q15, 0, 65535, "decay_q15")
        cdef int32_t k
        if _dec_symbol(&self.s, p, d, &k) < 0:
            raise EntropyDecodeError("malformed escape code (|k| > 1023)")
        return k

    def tell(self) -> int:
        """Bits used so far, rounded up; equals the encoder's tell() in sync."""
        return _dec_tell(&self.s)

    @property
    def storage(self) -> int:
        return self.s.storage

    @property
    def overrun(self) -> bool:
        """True if the symbols decoded so far need more bits than the buffer has."""
        return _dec_tell(&self.s) > 8 * <int64_t>self.s.storage

    def expected_length(self) -> int:
        """Length the encoder would have produced had it finished here."""
        return _dec_expected_len(&self.s)

    def ends_exactly(self) -> bool:
        """True if the buffer is exactly as long as the encoder's output."""
        return _dec_expected_len(&self.s) == self.s.storage


# ---------------------------------------------------------------- vector entry points

def encode_vector(RangeEncoder enc, const int32_t[:] k, const uint16_t[:] p0_q15,
                  const uint16_t[:] decay_q15) -> None:
    """Code one latent vector, dimension by dimension.

    Parameters
    ----------
    enc : RangeEncoder
    k : int32 array (D,)
        Quantized values; |k| > 1023 is clamped.
    p0_q15, decay_q15 : uint16 arrays (D,)
        Per-dimension model (clamped to 1..32767).
    """
    cdef Py_ssize_t n = k.shape[0]
    cdef Py_ssize_t i
    enc._live()
    if p0_q15.shape[0] != n or decay_q15.shape[0] != n:
        raise EntropyError(f"length mismatch: k {n}, p0 {p0_q15.shape[0]}, decay {decay_q15.shape[0]}")
    with nogil:
        for i in range(n):
            _enc_symbol(&enc.s, k[i], p0_q15[i], decay_q15[i])


def decode_vector(RangeDecoder dec, const uint16_t[:] p0_q15, const uint16_t[:] decay_q15,
                  out=None):
    """Decode one latent vector; inverse of `encode_vector`.

    Parameters
    ----------
    dec : RangeDecoder
    p0_q15, decay_q15 : uint16 arrays (D,)
    out : int32 array (D,), optional
        Destination; a new array is returned when omitted.

    Returns
    -------
    numpy.ndarray
        int32 (D,), every |k| <= 1023.

    Raises
    ------
    EntropyDecodeError
        If the stream holds a malformed escape code.
    """
    cdef Py_ssize_t n = p0_q15.shape[0]
    cdef Py_ssize_t i
    cdef int bad = 0
    cdef int32_t[:] o
    dec._no_pending()
    if decay_q15.shape[0] != n:
        raise EntropyError(f"length mismatch: p0 {n}, decay {decay_q15.shape[0]}")
    if out is None:
        out = np.empty(n, dtype=np.int32)
    o = out
    if o.shape[0] != n:
        raise EntropyError(f"out has length {o.shape[0]}, expected {n}")
    with nogil:
        for i in range(n):
            if _dec_symbol(&dec.s, p0_q15[i], decay_q15[i], &o[i]) < 0:
                bad = 1
                break
    if bad:
        raise EntropyDecodeError("malformed escape code (|k| > 1023)")
    return out


def geometric_freqs(unsigned int decay_q15) -> np.ndarray:
    """Exact frequencies (out of 32768) of |k|-1 = 0..14 and the escape.

    Parameters
    ----------
    decay_q15 : int
        Ratio in q15 (clamped to 1..32767).

    Returns
    -------
    numpy.ndarray
        uint32 (16,), summing to 32768, every entry >= 1.
    """
    cdef uint32_t d = _clamp_prob(decay_q15 if decay_q15 < 65536 else 65535)
    cdef uint32_t fl, fh
    res = np.empty(16, dtype=np.uint32)
    cdef uint32_t[:] r = res
    cdef int m
    for m in range(16):
        _geom_interval(d, m, &fl, &fh)
        r[m] = fh - fl
    return res


def symbol_cost_table(const uint16_t[:] p0_q15, const uint16_t[:] decay_q15) -> np.ndarray:
    """Exact model cost in bits of |k| = 0..15 and of the escape prefix.

    Column a (0 <= a <= 15) is the cost of a value with |k| = a (sign
    included for a > 0); column 16 is the cost of |k| >= 16 before its
    Elias-gamma tail, which adds 2 * floor(log2(|k| - 15)) + 1 bits.

    Parameters
    ----------
    p0_q15, decay_q15 : uint16 arrays (N,)

    Returns
    -------
    numpy.ndarray
        float64 (N, 17).
    """
    cdef Py_ssize_t n = p0_q15.shape[0]
    cdef Py_ssize_t i
    cdef int m
    cdef uint32_t p, d, fl, fh
    cdef double nz
    if decay_q15.shape[0] != n:
        raise EntropyError("p0_q15 and decay_q15 differ in length")
    res = np.empty((n, 17), dtype=np.float64)
    cdef double[:, :] r = res
    with nogil:
        for i in range(n):
            p = _clamp_prob(p0_q15[i])
            d = _clamp_prob(decay_q15[i])
            r[i, 0] = PROB_BITS - log2(<double>p)
            nz = PROB_BITS - log2(<double>(PROB_ONE - p)) + 1.0
            for m in range(16):
                _geom_interval(d, m, &fl, &fh)
                r[i, m + 1] = nz + PROB_BITS - log2(<double>(fh - fl))
    return res


def vector_costs(const int32_t[:, :, :] k, const double[:, :, :] lut) -> np.ndarray:
    """Model bits of vectors k[l, j, :] under the cost table lut[l] (see `symbol_cost_table`).

    Parameters
    ----------
    k : int32 array (L, N, D)
        Values (|k| is clamped to 1023, as the encoder does).
    lut : float64 array (L, D, 17)
        Per-level, per-dimension code lengths from `symbol_cost_table`.

    Returns
    -------
    numpy.ndarray
        float64 (L, N): exact model bits (escape tails included) per vector.
    """
    cdef Py_ssize_t L = k.shape[0], N = k.shape[1], D = k.shape[2]
    cdef Py_ssize_t l, j, i
    cdef int a
    cdef double acc
    if lut.shape[0] != L or lut.shape[1] != D or lut.shape[2] != 17:
        raise EntropyError(f"lut must be ({L}, {D}, 17), got {tuple(lut.shape)[:3]}")
    res = np.empty((L, N), dtype=np.float64)
    cdef double[:, :] r = res
    with nogil:
        for l in range(L):
            for j in range(N):
                acc = 0.0
                for i in range(D):
                    a = k[l, j, i]
                    if a < 0:
                        a = -a
                    if a > _MAX_ABS_K:
                        a = _MAX_ABS_K
                    if a < 16:
                        acc += lut[l, i, a]
                    else:
                        # Escape prefix + Elias-gamma tail of v = a - 15.
                        acc += lut[l, i, 16] + 2.0 * (_ilog(<uint32_t>(a - 15)) - 1) + 1.0
                r[l, j] = acc
    return res


def encode_chunks(RangeEncoder enc, const int32_t[:, :] k, const uint16_t[:, :] p0_q15,
                  const uint16_t[:, :] decay_q15, const int64_t[:] levels) -> None:
    """Code several latent vectors in one call: row j under table row levels[j].

    Same bits as calling `encode_vector` per row; saves the per-call overhead.

    Parameters
    ----------
    enc : RangeEncoder
    k : int32 array (N, D)
    p0_q15, decay_q15 : uint16 arrays (L, D)
    levels : int64 array (N,), each in [0, L)
    """
    cdef Py_ssize_t n = k.shape[0], d = k.shape[1], nl = p0_q15.shape[0]
    cdef Py_ssize_t j, i, q
    enc._live()
    if p0_q15.shape[1] != d or decay_q15.shape[0] != nl or decay_q15.shape[1] != d or levels.shape[0] != n:
        raise EntropyError("shape mismatch between k, tables and levels")
    for j in range(n):
        if not 0 <= levels[j] < nl:
            raise EntropyError(f"level {levels[j]} out of range [0, {nl})")
    with nogil:
        for j in range(n):
            q = levels[j]
            for i in range(d):
                _enc_symbol(&enc.s, k[j, i], p0_q15[q, i], decay_q15[q, i])


def decode_chunks(RangeDecoder dec, const uint16_t[:, :] p0_q15, const uint16_t[:, :] decay_q15,
                  const int64_t[:] levels):
    """Decode several latent vectors; inverse of `encode_chunks`.

    Decoding stops early once the decoder has overrun its buffer (a hostile
    short input cannot cost a full decode); the caller must check
    ``dec.overrun``.  Rows not decoded are zero.

    Returns
    -------
    numpy.ndarray
        int32 (N, D), every |k| <= 1023.

    Raises
    ------
    EntropyDecodeError
        On a malformed escape code.
    """
    cdef Py_ssize_t n = levels.shape[0], d = p0_q15.shape[1], nl = p0_q15.shape[0]
    cdef Py_ssize_t j, i, q
    cdef int bad = 0
    cdef int64_t limit = 8 * <int64_t>dec.s.storage
    dec._no_pending()
    if decay_q15.shape[0] != nl or decay_q15.shape[1] != d:
        raise EntropyError("p0_q15 and decay_q15 differ in shape")
    for j in range(n):
        if not 0 <= levels[j] < nl:
            raise EntropyError(f"level {levels[j]} out of range [0, {nl})")
    out = np.zeros((n, d), dtype=np.int32)
    cdef int32_t[:, :] o = out
    with nogil:
        for j in range(n):
            if _dec_tell(&dec.s) > limit:
                break
            q = levels[j]
            for i in range(d):
                if _dec_symbol(&dec.s, p0_q15[q, i], decay_q15[q, i], &o[j, i]) < 0:
                    bad = 1
                    break
            if bad:
                break
    if bad:
        raise EntropyDecodeError("malformed escape code (|k| > 1023)")
    return out


def quantize_levels(const double[:, :] z, const float[:, :] scale, const float[:, :] dead_zone) -> np.ndarray:
    """Dead-zone quantize every vector at every level in one pass.

    Computes, in double precision exactly like `quantizer.quantize`,
    ``k[l, j, i] = clamp(sign(x) * floor(max(|x| - dz[l, i], 0) + 0.5), +-1023)``
    with ``x = z[j, i] * scale[l, i]``.  Inputs must be finite (the caller checks).

    Parameters
    ----------
    z : float64 array (N, D)
    scale, dead_zone : float32 arrays (L, D)

    Returns
    -------
    numpy.ndarray
        int32 (L, N, D).
    """
    cdef Py_ssize_t n = z.shape[0], d = z.shape[1], nl = scale.shape[0]
    cdef Py_ssize_t l, j, i
    cdef double x, a
    if scale.shape[1] != d or dead_zone.shape[0] != nl or dead_zone.shape[1] != d:
        raise EntropyError("shape mismatch between z, scale and dead_zone")
    out = np.empty((nl, n, d), dtype=np.int32)
    cdef int32_t[:, :, :] o = out
    with nogil:
        for l in range(nl):
            for j in range(n):
                for i in range(d):
                    x = z[j, i] * <double>scale[l, i]
                    a = (x if x >= 0 else -x) - <double>dead_zone[l, i]
                    a = floor((a if a > 0 else 0.0) + 0.5)
                    if a > _MAX_ABS_K:
                        a = _MAX_ABS_K
                    o[l, j, i] = <int32_t>(-a if x < 0 else a)
    return out


cdef inline int64_t _sched_level(int64_t q0, int64_t dq, int64_t j, int64_t qmax) noexcept nogil:
    """Quantizer level of chunk j (the contract's chunk_levels)."""
    cdef int64_t lev = q0 + (dq * j + 4) // 8
    return qmax if lev > qmax else lev


def rank_schedules(const double[:, :] chunk_bits, double fixed_bits, int qmax, const int64_t[:] dq_grid,
                   int64_t budget_bytes, int q0cap=-1):
    """Rate control's search: every (q0, dq) schedule against a byte budget, in one pass.

    Candidate ``c = q0 * len(dq_grid) + g`` codes chunk ``j`` at level
    ``min(qmax, q0 + (dq * j + 4) // 8)``; its size for a prefix of ``m``
    chunks is ``ceil((fixed_bits + sum_{j<m} chunk_bits[level, j] + 1) / 8)``
    bytes (the range coder's final length, see ``ratecontrol``), summed in the
    same order as a numpy ``cumsum`` so the two agree exactly.  Code lengths
    are non-negative, so a candidate that fits ``m`` chunks fits every shorter
    prefix: the longest carried prefix is the largest ``m`` any candidate fits.

    Parameters
    ----------
    chunk_bits : float64 array (L, n)
        Model bits of chunk ``j`` at level ``l``.
    fixed_bits : float
        Header and state bits.
    qmax : int
        Coarsest level, 0..L-1.
    dq_grid : int64 array
        dQ values searched.
    budget_bytes : int
        Largest payload.
    q0cap : int
        Only schedules with ``q0 <= q0cap`` (negative: all).

    Returns
    -------
    (int, numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``m`` (0: nothing fits) and, for the candidates that fit ``m`` chunks,
        their index ``c``, level sum over the ``m`` chunks and estimated bytes.
    """
    cdef Py_ssize_t nl = chunk_bits.shape[0], n = chunk_bits.shape[1], ng = dq_grid.shape[0]
    cdef Py_ssize_t nc = nl * ng, c, j, q0, best_m = 0, cnt = 0
    cdef int64_t lev, dq, sumlev
    cdef double acc
    if qmax < 0 or qmax >= nl:
        raise EntropyError("qmax out of range")
    if 0 <= q0cap < nl - 1:
        nc = (q0cap + 1) * ng
    for j in range(ng):
        if dq_grid[j] < 0 or dq_grid[j] > 64:
            raise EntropyError("dq out of range")
    fits = np.zeros(nc, dtype=np.int64)
    cdef int64_t[:] fm = fits
    with nogil:
        for c in range(nc):
            q0 = c // ng
            dq = dq_grid[c % ng]
            acc = 0.0
            for j in range(n):
                lev = _sched_level(q0, dq, j, qmax)
                acc = acc + chunk_bits[lev, j]
                if <int64_t>ceil((fixed_bits + acc + 1.0) / 8.0) > budget_bytes:
                    break
                fm[c] = j + 1
            if fm[c] > best_m:
                best_m = fm[c]
        for c in range(nc):
            if best_m > 0 and fm[c] >= best_m:
                cnt += 1
    idx = np.empty(cnt, dtype=np.int64)
    lsum = np.empty(cnt, dtype=np.int64)
    est = np.empty(cnt, dtype=np.int64)
    cdef int64_t[:] oi = idx, ol = lsum, oe = est
    cdef Py_ssize_t k = 0
    with nogil:
        for c in range(nc):
            if best_m == 0 or fm[c] < best_m:
                continue
            q0 = c // ng
            dq = dq_grid[c % ng]
            acc = 0.0
            sumlev = 0
            for j in range(best_m):
                lev = _sched_level(q0, dq, j, qmax)
                acc = acc + chunk_bits[lev, j]
                sumlev += lev
            oi[k] = c
            ol[k] = sumlev
            oe[k] = <int64_t>ceil((fixed_bits + acc + 1.0) / 8.0)
            k += 1
    return int(best_m), idx, lsum, est


# ---------------------------------------------------------------- whole-payload coder and parser
#
# One call per packet each way: the sender's `PacketCoder.push` quantizes the new latent at every
# level, runs rate control and range-codes the payload; `parse_payload_into` decodes (and
# validates) a whole payload, keeping only the newest chunks asked for.  Both use per-symbol
# models with the geometric intervals precomputed (the same integers `_geom_interval` yields), so
# their bits are those of the vector entry points above.

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
cdef extern from "numpy/arrayobject.h":
    pass
cnp.import_array()

DEF N_SYM_LEVELS = 16
DEF MAX_PAYLOAD_CHUNKS = 26
DEF MAX_VERIFY_ENCODES = 8
DEF MAX_CODED_BYTES = 1000
DEF CODER_CAPACITY = 8192
DEF FIX_ONE = 1048576.0      # fixed-point bits: 2^20 per bit
DEF FIX_MARGIN = 4096.0      # >> the rounding of 26 chunks (0.5 each) and any float summation error


cdef struct sym_model:
    uint32_t p0           # clamped P(k = 0) in q15
    uint32_t nz           # PROB_ONE - p0: where the zero interval starts in the decoder's terms
    uint32_t cum[17]      # cumulative frequencies of |k|-1 = 0..14 and the escape; cum[16] = 32768


cdef void _fill_models(sym_model* out, const uint16_t[:] p0, const uint16_t[:] decay) noexcept nogil:
    cdef Py_ssize_t i
    cdef int m
    cdef uint32_t d, fl, fh
    for i in range(p0.shape[0]):
        out[i].p0 = _clamp_prob(p0[i])
        out[i].nz = PROB_ONE - out[i].p0
        d = _clamp_prob(decay[i])
        for m in range(16):
            _geom_interval(d, m, &fl, &fh)
            out[i].cum[m] = fl
        out[i].cum[16] = PROB_ONE


cdef inline void _enc_sym(enc_state* s, int32_t k, const sym_model* md) noexcept nogil:
    """`_enc_symbol` with the intervals looked up."""
    cdef uint32_t v
    cdef int a, m, n, _
    if k == 0:
        _enc_bin(s, 0, md.p0, PROB_BITS)
        return
    _enc_bin(s, md.p0, PROB_ONE, PROB_BITS)
    a = -k if k < 0 else k
    if a > _MAX_ABS_K:
        a = _MAX_ABS_K
    _enc_bit_logp(s, 1 if k < 0 else 0, 1)
    m = a - 1
    if m < 15:
        _enc_bin(s, md.cum[m], md.cum[m + 1], PROB_BITS)
        return
    _enc_bin(s, md.cum[15], PROB_ONE, PROB_BITS)
    v = <uint32_t>(m - 14)
    n = _ilog(v) - 1
    for _ in range(n):
        _enc_bit_logp(s, 1, 1)
    _enc_bit_logp(s, 0, 1)
    _enc_bits(s, v - (1u << n), n)


cdef inline void _enc_sym_run(enc_state* s, const int16_t* k, const sym_model* md, int n) noexcept nogil:
    """`_enc_sym` for n symbols in a row, zeros (the common case) with the range in a local."""
    cdef uint32_t rng = s.rng
    cdef int i
    for i in range(n):
        if k[i] == 0:
            # _enc_bin(s, 0, p0, PROB_BITS)
            rng -= (rng >> PROB_BITS) * md[i].nz
            if rng <= CODE_BOT:
                s.rng = rng
                _enc_norm(s)
                rng = s.rng
        else:
            s.rng = rng
            _enc_sym(s, k[i], &md[i])
            rng = s.rng
    s.rng = rng


cdef inline int _dec_sym(dec_state* s, const sym_model* md, int32_t* out) noexcept nogil:
    """`_dec_symbol` with the intervals looked up; 0, or -1 for a malformed escape tail."""
    cdef uint32_t x = _dec_decode_bin(s, PROB_BITS)
    if x < md.p0:
        _dec_update(s, 0, md.p0, PROB_ONE)
        out[0] = 0
        return 0
    return _dec_sym_nz(s, md, out)


cdef inline int _dec_sym_run(dec_state* s, const sym_model* md, int n, int32_t* out) noexcept nogil:
    """`_dec_sym` for n symbols in a row into zeroed ``out``, zeros (the common case) with the
    coder state in locals."""
    cdef uint32_t rng = s.rng, val = s.val, ext, t
    cdef int i
    for i in range(n):
        ext = rng >> PROB_BITS
        # `_dec_decode_bin` gives PROB_ONE - min(val / ext + 1, PROB_ONE), below p0 exactly when
        # val / ext >= PROB_ONE - p0.
        if val / ext >= md[i].nz:
            # _dec_update(s, 0, p0, PROB_ONE)
            t = ext * md[i].nz
            val -= t
            rng -= t
            if rng <= CODE_BOT:
                s.rng, s.val = rng, val
                _dec_norm(s)
                rng, val = s.rng, s.val
            continue
        s.rng, s.val, s.ext = rng, val, ext
        if _dec_sym_nz(s, &md[i], &out[i]) < 0:
            return -1
        rng, val = s.rng, s.val
    s.rng, s.val = rng, val
    return 0


cdef inline int _dec_sym_nz(dec_state* s, const sym_model* md, int32_t* out) noexcept nogil:
    """The rest of `_dec_sym` once the pending 15-bit decode fell outside the zero interval."""
    cdef uint32_t x, v
    cdef int neg, m, n, a
    _dec_update(s, md.p0, PROB_ONE, PROB_ONE)
    neg = _dec_bit_logp(s, 1)
    x = _dec_decode_bin(s, PROB_BITS)
    m = 0
    while m < 15 and x >= md.cum[m + 1]:
        m += 1
    _dec_update(s, md.cum[m], md.cum[m + 1], PROB_ONE)
    if m < 15:
        a = m + 1
    else:
        n = 0
        while _dec_bit_logp(s, 1):
            n += 1
            if n > _MAX_GAMMA_N:
                out[0] = 0
                return -1
        v = ((<uint32_t>1) << n) + _dec_bits(s, n)
        a = 15 + <int>v
        if a > _MAX_ABS_K:
            out[0] = 0
            return -1
    out[0] = -a if neg else a
    return 0


cdef inline int _chunk_level(int q0, int dq, int j, int qmax) noexcept nogil:
    cdef int lev = q0 + (dq * j + 4) // 8
    return qmax if lev > qmax else lev


cdef inline int32_t _deadzone_q(double x, double dz) noexcept nogil:
    """`quantize_levels` for one value: clamp(sign(x) * floor(max(|x| - dz, 0) + 0.5), +-1023)."""
    cdef double a = (x if x >= 0 else -x) - dz
    a = (a if a > 0 else 0.0) + 0.5
    # a >= 0.5 is finite: truncation is floor, and floor(a) > 1023 exactly when a >= 1024.
    cdef int32_t k = _MAX_ABS_K if a >= 1024.0 else <int32_t>a
    return -k if x < 0 else k


cdef inline double _sym_cost(const double* lut, int32_t k) noexcept nogil:
    """Model bits of k under one cost-table row (see `vector_costs`)."""
    cdef int a = -k if k < 0 else k
    if a > _MAX_ABS_K:
        a = _MAX_ABS_K
    if a < 16:
        return lut[a]
    return lut[16] + 2.0 * (_ilog(<uint32_t>(a - 15)) - 1) + 1.0


# Parser status codes (mapped to messages by `edge_dred.dred.payload`).
PARSE_OK = 0
PARSE_VERSION = 1
PARSE_TOO_MANY_CHUNKS = 2
PARSE_MALFORMED = 3
PARSE_TRUNCATED = 4
PARSE_LENGTH = 5


cdef class ParseTables:
    """The parser's per-symbol models of one `EntropyTables` (build once, reuse per payload)."""
    cdef sym_model* lat
    cdef sym_model* st
    cdef readonly int latent_dim, state_dim, n_levels

    def __cinit__(self, const uint16_t[:, :] p0_q15, const uint16_t[:, :] decay_q15,
                  const uint16_t[:] state_p0_q15, const uint16_t[:] state_decay_q15):
        if (p0_q15.shape[0] != N_SYM_LEVELS or decay_q15.shape[0] != p0_q15.shape[0]
                or decay_q15.shape[1] != p0_q15.shape[1]
                or state_decay_q15.shape[0] != state_p0_q15.shape[0]
                or not 1 <= p0_q15.shape[1] <= 32 or not 1 <= state_p0_q15.shape[0] <= 64):
            raise EntropyError("entropy tables must be (16, D <= 32) and (S <= 64,)")
        self.n_levels, self.latent_dim, self.state_dim = N_SYM_LEVELS, p0_q15.shape[1], state_p0_q15.shape[0]
        self.lat = <sym_model*>malloc(N_SYM_LEVELS * self.latent_dim * sizeof(sym_model))
        self.st = <sym_model*>malloc(self.state_dim * sizeof(sym_model))
        if self.lat == NULL or self.st == NULL:
            raise MemoryError()
        cdef int l
        for l in range(N_SYM_LEVELS):
            _fill_models(self.lat + l * self.latent_dim, p0_q15[l], decay_q15[l])
        _fill_models(self.st, state_p0_q15, state_decay_q15)

    def __dealloc__(self):
        free(self.lat)
        free(self.st)


cdef int _parse_core(dec_state* s0, ParseTables t, int max_chunks, int want, int32_t* hdr,
                     int32_t* state_out, int32_t* lat_out) noexcept nogil:
    """Decode and validate a whole payload; keep chunks 0..want-1.

    hdr receives version, q0, dq, qmax, offset, n_chunks and the expected length.
    The checks and their order are those of the step-by-step parser.
    """
    # A private copy of the coder state: no output store can alias it, so it stays in registers.
    cdef dec_state st = s0[0]
    cdef dec_state* s = &st
    cdef int32_t scratch[32]
    cdef int D = t.latent_dim
    cdef int i, j, lev, q0, dq, qmax, n
    cdef int32_t* dst
    cdef const sym_model* md
    cdef int64_t limit = 8 * <int64_t>s.storage
    cdef uint32_t x
    hdr[0] = _dec_bits(s, 4)
    if hdr[0] != 1:
        return 1
    q0 = hdr[1] = _dec_bits(s, 4)
    dq = hdr[2] = _dec_bits(s, 3)
    qmax = hdr[3] = _dec_bits(s, 4)
    hdr[4] = _dec_bits(s, 2)
    x = _dec_decode(s, MAX_PAYLOAD_CHUNKS)
    _dec_update(s, x, x + 1, MAX_PAYLOAD_CHUNKS)
    n = hdr[5] = <int>x + 1
    if n > max_chunks:
        return 2
    if _dec_sym_run(s, t.st, t.state_dim, state_out) < 0:
        return 3
    for j in range(n):
        # Stop on overrun: a hostile short payload cannot cost a full decode.
        if _dec_tell(s) > limit:
            break
        lev = _chunk_level(q0, dq, j, qmax)
        md = t.lat + lev * D
        dst = lat_out + j * D if j < want else scratch
        if _dec_sym_run(s, md, D, dst) < 0:
            return 3
    hdr[6] = <int32_t>_dec_expected_len(s)
    if _dec_tell(s) > limit:
        return 4
    if hdr[6] != <int64_t>s.storage:
        return 5
    return 0


def parse_payload_into(bytes data, ParseTables t, int max_chunks, int want):
    """Parse one DRED payload in one call (the caller checks the length and arguments).

    Parameters
    ----------
    data : bytes
        The payload (1..1000 bytes).
    t : ParseTables
    max_chunks : int
        Reject payloads announcing more chunks (1..26).
    want : int
        Keep the newest ``want`` chunks (1..26); the rest are decoded and checked, not kept.

    Returns
    -------
    (int, tuple, numpy.ndarray, numpy.ndarray)
        Status (``PARSE_*``), the header ``(version, q0, dq, qmax, offset,
        n_chunks, expected_length)`` as far as decoded, the int32 (S,) state
        and the int32 (min(want, n_chunks), D) newest chunks.
    """
    cdef dec_state s
    cdef int32_t hdr[7]
    cdef cnp.npy_intp dims[2]
    cdef int status, keep
    cdef int i
    for i in range(7):
        hdr[i] = 0
    s.buf = <const uint8_t*>PyBytes_AS_STRING(data)
    s.storage = <uint32_t>PyBytes_GET_SIZE(data)
    _dec_init(&s)
    dims[0] = t.state_dim
    state = cnp.PyArray_ZEROS(1, dims, cnp.NPY_INT32, 0)
    dims[0] = want
    dims[1] = t.latent_dim
    lat = cnp.PyArray_ZEROS(2, dims, cnp.NPY_INT32, 0)
    with nogil:
        status = _parse_core(&s, t, max_chunks, want, hdr,
                             <int32_t*>cnp.PyArray_DATA(<cnp.ndarray>state), <int32_t*>cnp.PyArray_DATA(<cnp.ndarray>lat))
    keep = hdr[5] if hdr[5] < want else want
    return status, (hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6]), state, lat[:keep] if keep < want else lat


cdef struct cand_t:
    int c          # q0 * len(grid) + g
    int q0
    int dq
    int64_t lsum
    int64_t est


cdef inline bint _cand_before(const cand_t* a, const cand_t* b, bint by_mean) noexcept nogil:
    """Rate control's order: (q0, level sum, dq) or (level sum, q0, dq), then the index."""
    if by_mean:
        if a.lsum != b.lsum:
            return a.lsum < b.lsum
        if a.q0 != b.q0:
            return a.q0 < b.q0
    else:
        if a.q0 != b.q0:
            return a.q0 < b.q0
        if a.lsum != b.lsum:
            return a.lsum < b.lsum
    if a.dq != b.dq:
        return a.dq < b.dq
    return a.c < b.c


# Rate-control outcomes (reasons of `ratecontrol.RateDecision`).
cdef enum:
    C_OK = 0
    C_SHORTENED = 1
    C_SILENT = 2
    C_BUDGET = 3
CODED_OK, CODED_SHORTENED, CODED_SILENT, CODED_BUDGET = C_OK, C_SHORTENED, C_SILENT, C_BUDGET


cdef class PacketCoder:
    """A stream's DRED coding state: quantized latent history and one-call payload coding.

    Holds the last ``ring`` latents, each quantized at every level (with its model bits) when
    it is pushed; `push` then picks ``z_t, z_{t-2}, ...``, trims silence at the old end, runs
    the schedule search of `ratecontrol.encode_dred` and range-codes the chosen schedule, all
    without Python objects per latent.  Payloads, schedules and every rate-control decision
    are bit-identical to `ratecontrol.encode_dred` on the same inputs.

    Parameters
    ----------
    p0_q15, decay_q15 : uint16 (16, D); state_p0_q15, state_decay_q15 : uint16 (S,)
    quant_scale, dead_zone : float32 (16, D); state_quant_scale, state_dead_zone : float32 (S,)
    lat_lut : float64 (16, D, 17); state_lut : float64 (S, 17)
        Cost tables (`symbol_cost_table`).
    header_bits : float
        Model bits of the header.
    ring : int
        Latents kept (2 * 26 - 1 for every other one).
    """
    cdef ParseTables models
    cdef int D, S, R, nl
    cdef double* qs
    cdef double* dz
    cdef double* sqs
    cdef double* sdz
    cdef double* lut
    cdef double* slut
    cdef float* ring_z
    cdef int16_t* ring_k
    cdef double* ring_bits
    cdef int64_t* ring_ib       # ring_bits in fixed point (FIX_ONE per bit), for the schedule pre-screen
    cdef uint8_t* ring_act
    cdef uint8_t* buf
    cdef int32_t state_k[64]
    cdef double header_bits
    cdef int run_end[8][25]     # run_end[dq][k]: first chunk j with (dq * j + 4) // 8 >= k
    cdef int run_idx[8][25]     # (k - 1) * 27 + run_end[dq][k]: where level step k sits in Q (from q0's row)
    cdef int run_cnt[8][27]     # run_cnt[dq][m]: level steps (k >= 1) within the first m chunks
    # Stream settings (`configure`).
    cdef int dur_chunks, budget, qmax, offset, ng, q0cap, dq_top
    cdef int grid[8]
    cdef bint by_mean
    cdef readonly int64_t n_steps

    def __cinit__(self, const uint16_t[:, :] p0_q15, const uint16_t[:, :] decay_q15,
                  const uint16_t[:] state_p0_q15, const uint16_t[:] state_decay_q15,
                  const float[:, :] quant_scale, const float[:, :] dead_zone,
                  const float[:] state_quant_scale, const float[:] state_dead_zone,
                  const double[:, :, :] lat_lut, const double[:, :] state_lut, double header_bits, int ring):
        self.models = ParseTables(p0_q15, decay_q15, state_p0_q15, state_decay_q15)
        cdef int D = self.models.latent_dim, S = self.models.state_dim, nl = N_SYM_LEVELS
        if (quant_scale.shape[0] != nl or quant_scale.shape[1] != D or dead_zone.shape[0] != nl
                or dead_zone.shape[1] != D or state_quant_scale.shape[0] != S or state_dead_zone.shape[0] != S
                or lat_lut.shape[0] != nl or lat_lut.shape[1] != D or lat_lut.shape[2] != 17
                or state_lut.shape[0] != S or state_lut.shape[1] != 17 or not 1 <= ring <= 4096):
            raise EntropyError("PacketCoder: table shapes do not agree")
        self.D, self.S, self.R, self.nl = D, S, ring, nl
        self.header_bits = header_bits
        self.qs = <double*>malloc(nl * D * sizeof(double))
        self.dz = <double*>malloc(nl * D * sizeof(double))
        self.lut = <double*>malloc(nl * D * 17 * sizeof(double))
        self.sqs = <double*>malloc(S * sizeof(double))
        self.sdz = <double*>malloc(S * sizeof(double))
        self.slut = <double*>malloc(S * 17 * sizeof(double))
        self.ring_z = <float*>malloc(ring * D * sizeof(float))
        self.ring_k = <int16_t*>malloc(ring * nl * D * sizeof(int16_t))
        self.ring_bits = <double*>malloc(ring * nl * sizeof(double))
        self.ring_ib = <int64_t*>malloc(ring * nl * sizeof(int64_t))
        self.ring_act = <uint8_t*>malloc(ring)
        self.buf = <uint8_t*>malloc(CODER_CAPACITY)
        if (self.qs == NULL or self.dz == NULL or self.lut == NULL or self.sqs == NULL or self.sdz == NULL
                or self.slut == NULL or self.ring_z == NULL or self.ring_k == NULL or self.ring_bits == NULL
                or self.ring_ib == NULL
                or self.ring_act == NULL or self.buf == NULL):
            raise MemoryError()
        cdef int l, i, a
        for l in range(nl):
            for i in range(D):
                self.qs[l * D + i] = quant_scale[l, i]
                self.dz[l * D + i] = dead_zone[l, i]
                for a in range(17):
                    self.lut[(l * D + i) * 17 + a] = lat_lut[l, i, a]
        for i in range(S):
            self.sqs[i] = state_quant_scale[i]
            self.sdz[i] = state_dead_zone[i]
            for a in range(17):
                self.slut[i * 17 + a] = state_lut[i, a]
        cdef int dq, j, k
        for dq in range(8):
            for k in range(25):
                self.run_end[dq][k] = MAX_PAYLOAD_CHUNKS + 1
            for j in range(MAX_PAYLOAD_CHUNKS - 1, -1, -1):
                self.run_end[dq][(dq * j + 4) // 8] = j
            for k in range(23, -1, -1):     # k never reached exactly (dq = 0): no end before it either
                if self.run_end[dq][k] > self.run_end[dq][k + 1]:
                    self.run_end[dq][k] = self.run_end[dq][k + 1]
            for k in range(1, 25):
                self.run_idx[dq][k] = (k - 1) * 27 + self.run_end[dq][k]
            for j in range(MAX_PAYLOAD_CHUNKS + 1):
                self.run_cnt[dq][j] = 0
                for k in range(1, 25):
                    if self.run_end[dq][k] < j:
                        self.run_cnt[dq][j] += 1
        self.n_steps = 0
        self.configure(MAX_PAYLOAD_CHUNKS, MAX_CODED_BYTES, N_SYM_LEVELS - 1, 0, np.arange(8), False)

    def configure(self, int dur_chunks, int budget, int qmax, int offset, dq_grid, bint by_mean,
                  int q0cap=N_SYM_LEVELS - 1) -> None:
        """Stream settings: requested chunks (1..26), byte budget (1..1000), qmax, offset, dQ grid, order,
        and the coarsest newest-chunk level tried before any other (``q0cap``)."""
        grid = [int(g) for g in dq_grid]
        if (not 1 <= dur_chunks <= MAX_PAYLOAD_CHUNKS or not 1 <= budget <= MAX_CODED_BYTES
                or not 0 <= qmax < N_SYM_LEVELS or not 0 <= offset <= 3 or not 1 <= len(grid) <= 8
                or not all(0 <= g <= 7 for g in grid) or not 0 <= q0cap < N_SYM_LEVELS):
            raise EntropyError("PacketCoder.configure: setting out of range")
        self.dur_chunks, self.budget, self.qmax, self.offset, self.by_mean = dur_chunks, budget, qmax, offset, by_mean
        self.q0cap = q0cap
        self.ng = len(grid)
        for j in range(self.ng):
            self.grid[j] = grid[j]
        self.dq_top = max(grid)

    def __dealloc__(self):
        free(self.qs); free(self.dz); free(self.lut); free(self.sqs); free(self.sdz); free(self.slut)
        free(self.ring_z); free(self.ring_k); free(self.ring_bits); free(self.ring_ib); free(self.ring_act)
        free(self.buf)

    def reset(self) -> None:
        """Forget the latent history."""
        self.n_steps = 0

    def history(self):
        """Latents ``z_t, z_{t-2}, ...`` (float32 (N, D), newest first) and their activity flags."""
        cdef int n = (min(self.n_steps, self.R) + 1) // 2
        z = np.empty((n, self.D), np.float32)
        act = np.empty(n, bool)
        cdef int j, r
        for j in range(n):
            r = <int>((self.n_steps - 1 - 2 * j) % self.R)
            z[j] = np.asarray(<float[:self.D]>(self.ring_z + r * self.D))
            act[j] = self.ring_act[r] != 0
        return z, act

    cdef void _add_latent(self, const double* z, bint active) noexcept nogil:
        cdef int r = <int>(self.n_steps % self.R)
        cdef int D = self.D, l, i, a
        cdef int16_t* k = self.ring_k + r * self.nl * D
        cdef const double* qs = self.qs
        cdef const double* dz = self.dz
        cdef const double* lut = self.lut
        cdef double x, v, acc
        for i in range(D):
            self.ring_z[r * D + i] = <float>z[i]
        self.ring_act[r] = active
        for l in range(self.nl):
            acc = 0.0
            for i in range(D):
                # _deadzone_q and _sym_cost, written out so the loop stays branch-light.
                x = z[i] * qs[i]
                v = (x if x >= 0 else -x) - dz[i]
                v = (v if v > 0 else 0.0) + 0.5
                a = _MAX_ABS_K if v >= 1024.0 else <int>v
                k[i] = <int16_t>(-a if x < 0 else a)
                if a < 16:
                    acc += lut[a]
                else:
                    acc += lut[16] + 2.0 * (_ilog(<uint32_t>(a - 15)) - 1) + 1.0
                lut += 17
            qs += D
            dz += D
            k += D
            self.ring_bits[r * self.nl + l] = acc
            self.ring_ib[r * self.nl + l] = <int64_t>(acc * FIX_ONE + 0.5)
        self.n_steps += 1

    cdef int _fit(self, const double** rows, int q0, int dq, int qmax, int limit, double fixed,
                  double lim) noexcept nogil:
        """Chunks of the prefix that schedule (q0, dq) fits: `rank_schedules`' test, summed in its order."""
        cdef double acc = 0.0
        cdef int j
        for j in range(limit):
            acc = acc + rows[j][_chunk_level(q0, dq, j, qmax)]
            # ceil((fixed + acc + 1) / 8) > budget  <=>  fixed + acc + 1 > 8 * budget (exact).
            if fixed + acc + 1.0 > lim:
                return j
        return limit

    cdef int64_t _approx(self, const int64_t* P, const int64_t* Q, int q0, int dq, int m) noexcept nogil:
        """Fixed-point bits of chunks 0..m-1 under (q0, dq).

        With prefix sums P[l * 27 + j] per level and Q = P[l] - P[l + 1], a schedule that steps
        from level q0 + k - 1 to q0 + k at chunk e_k costs P[last level][m] + sum_k Q[q0 + k - 1][e_k].
        """
        if q0 >= self.qmax:
            return P[self.qmax * 27 + m]
        cdef int K = self.run_cnt[dq][m], k
        if K > self.qmax - q0:
            K = self.qmax - q0
        cdef const int* idx = self.run_idx[dq]
        cdef const int64_t* base = Q + q0 * 27
        cdef int64_t s = P[(q0 + K) * 27 + m]
        for k in range(1, K + 1):
            s += base[idx[k]]
        return s

    cdef int64_t _level_sum(self, int q0, int dq, int m) noexcept nogil:
        """Sum of the levels of chunks 0..m-1 (each level step adds one to every later chunk)."""
        if q0 >= self.qmax:
            return <int64_t>self.qmax * m
        cdef int K = self.run_cnt[dq][m], k
        if K > self.qmax - q0:
            K = self.qmax - q0
        cdef int64_t ls = <int64_t>q0 * m
        for k in range(1, K + 1):
            ls += m - self.run_end[dq][k]
        return ls

    cdef int _fits(self, const int64_t* P, const int64_t* Q, const double** rows, int q0, int dq, int m,
                   double fixed) noexcept nogil:
        """Whether (q0, dq) fits m chunks: `_fit`'s exact answer, settled by the fixed-point sum
        unless that lies within FIX_MARGIN of the budget (rounding of at most 0.5 per chunk)."""
        cdef double lim = 8.0 * self.budget
        cdef double s = <double>self._approx(P, Q, q0, dq, m)
        cdef double t = (lim - 1.0 - fixed) * FIX_ONE
        if s < t - FIX_MARGIN:
            return 1
        if s > t + FIX_MARGIN:
            return 0
        return self._fit(rows, q0, dq, self.qmax, m, fixed, lim) >= m

    cdef int _encode(self, const int16_t** krows, int q0, int dq, int qmax, int offset, int m) noexcept nogil:
        """Range-code one schedule into buf; its length, or -1 past the 1000-byte format limit."""
        cdef enc_state e
        cdef int j, i, lev
        cdef int D = self.D
        cdef const sym_model* md
        cdef const int16_t* k
        e.buf = self.buf
        e.cap = CODER_CAPACITY
        e.offs = 0
        e.rng = CODE_TOP
        e.val = 0
        e.rem = -1
        e.ext = 0
        e.nbits = 33
        e.err = 0
        _enc_bits(&e, 1, 4)
        _enc_bits(&e, q0, 4)
        _enc_bits(&e, dq, 3)
        _enc_bits(&e, qmax, 4)
        _enc_bits(&e, offset, 2)
        _enc_encode(&e, m - 1, m, MAX_PAYLOAD_CHUNKS)
        for i in range(self.S):
            _enc_sym(&e, self.state_k[i], &self.models.st[i])
        for j in range(m):
            lev = _chunk_level(q0, dq, j, qmax)
            md = self.models.lat + lev * D
            _enc_sym_run(&e, krows[j] + lev * D, md, D)
        _enc_done(&e)
        if e.err or e.offs > MAX_CODED_BYTES:
            return -1
        return <int>e.offs

    cdef int _code(self, const double* s, int64_t* out) noexcept nogil:
        """Rate control and coding of the current history; out: q0, dq, m, requested, est, encodes, length.

        The decisions of `ratecontrol.encode_dred` (via `rank_schedules`): the longest prefix any
        schedule fits, then the schedules fitting it in order, up to MAX_VERIFY_ENCODES really
        coded, else one chunk fewer.  Whether a schedule fits is decided on fixed-point sums
        (one lookup per run of equal levels) and, only near the budget, by `_fit`'s exact sum.
        """
        cdef const double* rows[MAX_PAYLOAD_CHUNKS]
        cdef const int16_t* krows[MAX_PAYLOAD_CHUNKS]
        cdef int64_t P[N_SYM_LEVELS * 27]
        cdef int64_t Q[N_SYM_LEVELS * 27]
        cdef cand_t cands[N_SYM_LEVELS * 8]
        cdef cand_t tmp
        cdef const int64_t* ib
        cdef int N = (<int>(self.n_steps if self.n_steps < self.R else self.R) + 1) // 2
        cdef int nl = self.nl, ng = self.ng, qmax = self.qmax
        cdef int requested, n, j, r, i, l, limit, best, c, g, q0, dq, cnt, m, length, cap, encodes = 0
        cdef int64_t lsum
        cdef double fixed, acc, lim = 8.0 * self.budget
        requested = self.dur_chunks if self.dur_chunks < N else N
        out[3] = requested
        n = 0
        for j in range(requested):
            r = <int>((self.n_steps - 1 - 2 * j) % self.R)
            rows[j] = self.ring_bits + r * nl
            krows[j] = self.ring_k + r * nl * self.D
            if self.ring_act[r]:
                n = j + 1
        if n == 0:
            return C_SILENT
        for l in range(nl):
            P[l * 27] = 0
        for j in range(n):
            ib = self.ring_ib + (rows[j] - self.ring_bits)
            for l in range(nl):
                P[l * 27 + j + 1] = P[l * 27 + j] + ib[l]
        for l in range(nl - 1):
            for j in range(n + 1):
                Q[l * 27 + j] = P[l * 27 + j] - P[(l + 1) * 27 + j]
        acc = 0.0
        for i in range(self.S):
            self.state_k[i] = _deadzone_q(s[i] * self.sqs[i], self.sdz[i])
            acc += _sym_cost(self.slut + i * 17, self.state_k[i])
        fixed = self.header_bits + acc
        # Schedules whose newest chunk is at most q0cap first; all of them if none of those fits.
        cap = self.q0cap if self.q0cap < nl - 1 else nl - 1
        limit = n
        while limit > 0:
            # The longest prefix any schedule fits: settled at once when the coarsest fits it all,
            # else by a scan that computes a schedule's exact length only if it could beat the best.
            best = limit
            # (Under a cap the coarsest schedule left is q0 = cap with the steepest dQ.)
            if not (self._fits(P, Q, rows, nl - 1, self.grid[0], limit, fixed) if cap == nl - 1
                    else self._fits(P, Q, rows, cap, self.dq_top, limit, fixed)):
                best = 0
                for c in range((cap + 1) * ng):
                    if best == limit:
                        break
                    q0, dq = c // ng, self.grid[c % ng]
                    if self._fits(P, Q, rows, q0, dq, best + 1, fixed):
                        m = self._fit(rows, q0, dq, qmax, limit, fixed, lim)
                        if m > best:
                            best = m
                if best == 0:
                    if cap < nl - 1:
                        cap, limit = nl - 1, n
                        continue
                    break
            # The schedules fitting `best` chunks, in rate control's order (finest newest: whole
            # q0 groups until MAX_VERIFY_ENCODES are found; lowest mean: all of them).
            cnt = 0
            for q0 in range(cap + 1):
                if not self.by_mean and cnt >= MAX_VERIFY_ENCODES:
                    break
                for g in range(ng):
                    dq = self.grid[g]
                    if not self._fits(P, Q, rows, q0, dq, best, fixed):
                        continue
                    lsum = self._level_sum(q0, dq, best)
                    cands[cnt].c, cands[cnt].q0, cands[cnt].dq, cands[cnt].lsum = q0 * ng + g, q0, dq, lsum
                    i = cnt                       # insertion sort (at most 128 entries)
                    while i > 0 and _cand_before(&cands[i], &cands[i - 1], self.by_mean):
                        tmp = cands[i]
                        cands[i] = cands[i - 1]
                        cands[i - 1] = tmp
                        i -= 1
                    cnt += 1
            for i in range(cnt if cnt < MAX_VERIFY_ENCODES else MAX_VERIFY_ENCODES):
                encodes += 1
                length = self._encode(krows, cands[i].q0, cands[i].dq, qmax, self.offset, best)
                if length < 0:
                    continue
                if length <= self.budget:
                    acc = 0.0
                    for j in range(best):
                        acc = acc + rows[j][_chunk_level(cands[i].q0, cands[i].dq, j, qmax)]
                    out[0], out[1], out[2] = cands[i].q0, cands[i].dq, best
                    out[4], out[5], out[6] = <int64_t>ceil((fixed + acc + 1.0) / 8.0), encodes, length
                    return C_OK if best == n else C_SHORTENED
            limit = best - 1
            if limit == 0 and cap < nl - 1:
                cap, limit = nl - 1, n
        out[5] = encodes
        return C_BUDGET

    def push(self, z, s, bint active):
        """Add latent ``z`` (D,) and code a payload for initial state ``s`` (S,) under the `configure` settings.

        Both are quantized in float64 from their own values; ``z`` is kept as
        float32 (`history`).

        Returns
        -------
        (int, bytes, int, int, int, int, int, int) or None
            Outcome (``CODED_*``), payload (``b""`` unless OK/SHORTENED), q0, dq,
            chunks, requested chunks, estimated bytes, encodes; ``None`` when
            ``z`` or ``s`` is not finite (nothing is stored then).
        """
        cdef double zb[32]
        cdef double sb[64]
        cdef int64_t out[7]
        cdef int res, i
        _as_doubles(z, zb, self.D, "latent")
        _as_doubles(s, sb, self.S, "state")
        for i in range(7):
            out[i] = 0
        with nogil:
            res = 0
            for i in range(self.D):
                if not (zb[i] - zb[i] == 0):      # NaN or infinite
                    res = -1
            for i in range(self.S):
                if not (sb[i] - sb[i] == 0):
                    res = -1
            if res == 0:
                self._add_latent(zb, active)
                res = self._code(sb, out)
        if res < 0:
            return None
        data = (<char*>self.buf)[:out[6]] if res <= C_SHORTENED else b""
        return res, data, out[0], out[1], out[2], out[3], out[4], out[5]


cdef int _as_doubles(object x, double* dst, int n, str what) except -1:
    """Copy a float32/float64 array of n values (any other input through numpy) into dst."""
    cdef cnp.ndarray a
    cdef int i
    cdef const float* f
    cdef const double* d
    if not (cnp.PyArray_Check(x) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)
            and cnp.PyArray_TYPE(<cnp.ndarray>x) in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)):
        x = np.ascontiguousarray(x, np.float64)
    a = <cnp.ndarray>x
    if cnp.PyArray_SIZE(a) != n:
        raise EntropyError(f"{what} must have {n} values, got {cnp.PyArray_SIZE(a)}")
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
        f = <const float*>cnp.PyArray_DATA(a)
        for i in range(n):
            dst[i] = f[i]
    else:
        d = <const double*>cnp.PyArray_DATA(a)
        for i in range(n):
            dst[i] = d[i]
    return 0
