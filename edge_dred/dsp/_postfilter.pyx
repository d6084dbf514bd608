# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Thin binding of ``src/postfilter.c``: one call into C per packet.

Shapes are checked here (the C code indexes raw memory); values are checked in C,
which leaves the state untouched and returns an error code when any is not finite.
The callers (:mod:`edge_dred.dsp.postfilter`, :mod:`edge_dred.neural.vocoder`)
turn error codes into their own exceptions.
"""
from libc.stdint cimport int16_t
from libc.string cimport memcpy

import numpy as np


cdef extern from "postfilter.h" nogil:
    int PF_FRAME, PF_NFFT, PF_BINS, PF_BANDS, PF_MAX_TAPS
    ctypedef struct pf_tables:
        pass
    ctypedef struct pf_envelope:
        pass
    ctypedef struct pf_pitch:
        pass
    int pf_tables_set(pf_tables *t, const double *win, const double *ramp,
                      const double *ceps, const double *wpow, const double *dct, double c0_offset, double pitch_min,
                      double pitch_max, double preemph)
    pf_envelope *pf_envelope_new(const pf_tables *t, int taps, float strength, float max_boost_db, float max_cut_db)
    void pf_envelope_free(pf_envelope *st)
    size_t pf_envelope_bytes(const pf_envelope *st)
    void pf_envelope_reset(pf_envelope *st)
    int pf_envelope_prime(pf_envelope *st, const float *hist, int n)
    int pf_envelope_prime_pcm(pf_envelope *st, const float *pcm, int n)
    int pf_envelope_process(pf_envelope *st, const float *x, const float *feat, int feat_stride,
                            int n_frames, float *out)
    int pf_envelope_process_pcm(pf_envelope *st, const float *pcm, const float *feat, int feat_stride,
                                int n_frames, int16_t *out)
    int pf_envelope_history(const pf_envelope *st, float *out, int n)
    int pf_envelope_history_len(const pf_envelope *st)
    pf_pitch *pf_pitch_new(const pf_tables *t, float strength)
    void pf_pitch_free(pf_pitch *st)
    size_t pf_pitch_bytes(const pf_pitch *st)
    void pf_pitch_reset(pf_pitch *st)
    int pf_pitch_prime(pf_pitch *st, const float *hist, int n)
    int pf_pitch_process(pf_pitch *st, const float *x, const float *feat, int feat_stride, int n_frames,
                         float *out)
    int pf_pitch_history(const pf_pitch *st, float *out, int n)
    int pf_pitch_history_len(const pf_pitch *st)
    void pf_pitch_gains(const pf_pitch *st, float *g, float *scale)
    int pf_deemphasis_int16(const float *e, int n_frames, float preemph, float *mem, float lo, float hi,
                            int16_t *out)

FRAME = PF_FRAME
NFFT = PF_NFFT
BINS = PF_BINS
BANDS = PF_BANDS
MAX_TAPS = PF_MAX_TAPS

cdef pf_tables _tables
cdef bint _tables_ready = False
cdef float _preemph = 0.0


def set_tables(const double[:, ::1] windows, const double[::1] ramp,
               const double[:, ::1] ceps, const double[:, ::1] wpow, const double[:, ::1] dct, double c0_offset, double pitch_min,
               double pitch_max, double preemph) -> None:
    """Fill the tables shared by every stream (once, before any stream exists)."""
    global _tables_ready, _preemph
    if _tables_ready:
        return
    if (windows.shape[0] != 2 or windows.shape[1] != PF_NFFT or ramp.shape[0] != PF_FRAME
            or ceps.shape[0] != PF_BANDS or ceps.shape[1] != PF_MAX_TAPS
            or wpow.shape[0] != PF_BANDS or wpow.shape[1] != PF_BINS
            or dct.shape[0] != PF_BANDS or dct.shape[1] != PF_BANDS):
        raise ValueError("postfilter tables have the wrong shapes")
    if pf_tables_set(&_tables, &windows[0, 0], &ramp[0], &ceps[0, 0], &wpow[0, 0], &dct[0, 0],
                     c0_offset, pitch_min, pitch_max, preemph) != 0:
        raise ValueError("postfilter tables: bad pitch range")
    _preemph = <float>preemph
    _tables_ready = True


cdef inline void _check_frames(const float[:, ::1] x, const float[:, ::1] f, Py_ssize_t width,
                               float[:, ::1] out) except *:
    if x.shape[1] != PF_FRAME or f.shape[0] != x.shape[0] or f.shape[1] < width:
        raise ValueError("frames/features shape")
    if out.shape[0] != x.shape[0] or out.shape[1] != PF_FRAME:
        raise ValueError("out shape")


cdef class Envelope:
    """One stream's envelope postfilter state (see ``pf_envelope`` in postfilter.h)."""
    cdef pf_envelope *st

    def __cinit__(self, int taps, double strength, double max_boost_db, double max_cut_db):
        if not _tables_ready:
            raise RuntimeError("postfilter tables are not set")
        self.st = pf_envelope_new(&_tables, taps, <float>strength, <float>max_boost_db, <float>max_cut_db)
        if self.st == NULL:
            raise MemoryError("pf_envelope_new failed")

    def __dealloc__(self):
        if self.st != NULL:
            pf_envelope_free(self.st)

    @property
    def nbytes(self) -> int:
        return pf_envelope_bytes(self.st)

    def reset(self) -> None:
        pf_envelope_reset(self.st)

    def prime(self, const float[::1] hist) -> int:
        return pf_envelope_prime(self.st, &hist[0] if hist.shape[0] else NULL, <int>hist.shape[0])

    def prime_pcm(self, const float[::1] pcm) -> int:
        return pf_envelope_prime_pcm(self.st, &pcm[0] if pcm.shape[0] else NULL, <int>pcm.shape[0])

    def process(self, const float[:, ::1] x, const float[:, ::1] f, float[:, ::1] out) -> int:
        _check_frames(x, f, PF_BANDS, out)
        if x.shape[0] == 0:
            return 0
        cdef int rc
        with nogil:
            rc = pf_envelope_process(self.st, &x[0, 0], &f[0, 0], <int>f.shape[1], <int>x.shape[0], &out[0, 0])
        return rc

    def process_pcm(self, const float[::1] pcm, const float[:, ::1] f, int16_t[::1] out) -> int:
        cdef Py_ssize_t n = pcm.shape[0] // PF_FRAME
        if pcm.shape[0] != n * PF_FRAME or f.shape[0] != n or f.shape[1] < PF_BANDS or out.shape[0] != pcm.shape[0]:
            raise ValueError("pcm/features shape")
        if n == 0:
            return 0
        cdef int rc
        with nogil:
            rc = pf_envelope_process_pcm(self.st, &pcm[0], &f[0, 0], <int>f.shape[1], <int>n, &out[0])
        return rc

    def history(self) -> np.ndarray:
        out = np.zeros(pf_envelope_history_len(self.st), np.float32)
        cdef float[::1] o = out
        pf_envelope_history(self.st, &o[0], <int>o.shape[0])
        return out


cdef class Pitch:
    """One stream's pitch postfilter state (see ``pf_pitch`` in postfilter.h)."""
    cdef pf_pitch *st

    def __cinit__(self, double strength):
        if not _tables_ready:
            raise RuntimeError("postfilter tables are not set")
        self.st = pf_pitch_new(&_tables, <float>strength)
        if self.st == NULL:
            raise MemoryError("pf_pitch_new failed")

    def __dealloc__(self):
        if self.st != NULL:
            pf_pitch_free(self.st)

    @property
    def nbytes(self) -> int:
        return pf_pitch_bytes(self.st)

    @property
    def gains(self) -> tuple[float, float]:
        cdef float g, s
        pf_pitch_gains(self.st, &g, &s)
        return float(g), float(s)

    def reset(self) -> None:
        pf_pitch_reset(self.st)

    def prime(self, const float[::1] hist) -> int:
        return pf_pitch_prime(self.st, &hist[0] if hist.shape[0] else NULL, <int>hist.shape[0])

    def process(self, const float[:, ::1] x, const float[:, ::1] f, float[:, ::1] out) -> int:
        _check_frames(x, f, 20, out)
        if x.shape[0] == 0:
            return 0
        cdef int rc
        with nogil:
            rc = pf_pitch_process(self.st, &x[0, 0], &f[0, 0], <int>f.shape[1], <int>x.shape[0], &out[0, 0])
        return rc

    def history(self) -> np.ndarray:
        out = np.zeros(pf_pitch_history_len(self.st), np.float32)
        cdef float[::1] o = out
        pf_pitch_history(self.st, &o[0], <int>o.shape[0])
        return out


def chain(Envelope env, Pitch pitch, const float[:, ::1] x, const float[:, ::1] f, float[:, ::1] out) -> int:
    """Envelope then pitch (either may be None) over the same frames, into ``out``."""
    cdef int rc = 0
    cdef pf_envelope *e = env.st if env is not None else NULL
    cdef pf_pitch *p = pitch.st if pitch is not None else NULL
    _check_frames(x, f, 20, out)
    if x.shape[0] == 0:
        return 0
    cdef const float *src = &x[0, 0]
    cdef int n = <int>x.shape[0], stride = <int>f.shape[1]
    with nogil:
        if e != NULL:
            rc = pf_envelope_process(e, src, &f[0, 0], stride, n, &out[0, 0])
            src = &out[0, 0]
        if rc == 0 and p != NULL:
            rc = pf_pitch_process(p, src, &f[0, 0], stride, n, &out[0, 0])
        elif rc == 0 and e == NULL:
            memcpy(&out[0, 0], src, <size_t>n * PF_FRAME * sizeof(float))
    return rc


def deemphasis_int16(const float[:, ::1] e, double mem, double lo, double hi, int16_t[::1] out):
    """De-emphasis of whole frames into int16 (x 32768), the carried memory clamped to [lo, hi].

    Returns ``(rc, mem)``: rc 0, or negative when ``e`` or ``mem`` is not finite.
    """
    cdef float m = <float>mem
    cdef int rc
    if e.shape[1] != PF_FRAME or out.shape[0] != e.shape[0] * PF_FRAME:
        raise ValueError("deemphasis: shapes")
    if e.shape[0] == 0:
        return 0, mem
    with nogil:
        rc = pf_deemphasis_int16(&e[0, 0], <int>e.shape[0], _preemph, &m, <float>lo, <float>hi, &out[0])
    return rc, float(m)
