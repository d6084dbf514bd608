# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Thin binding of ``src/fp_synthesis.c``: one call into C per block of frames.

Shapes are checked here (the C code indexes raw memory); values are checked in C, which
leaves the state untouched and returns an error code when any is not finite.  The caller
(:mod:`edge_dred.neural.fp_runtime`) sets the tables once and turns error codes into its
own exceptions.
"""
from libc.stdint cimport uint64_t

import numpy as np


cdef extern from "fp_synthesis.h" nogil:
    int FPS_FRAME, FPS_NFFT, FPS_BINS, FPS_IR_LEN, FPS_SEG_OUT, FPS_NB_CORR, FPS_NB_BANDS, FPS_NB_FEATURES
    int FPS_NOISE_WIN, FPS_RAW, FPS_PRIME_FRAMES, FPS_HOP, FPS_EXC_HIST, FPS_PULSE_TAPS, FPS_PHASE_CANDIDATES
    ctypedef struct fps_tables:
        pass
    ctypedef struct fps_stream:
        pass
    int fps_tables_set(fps_tables *t, const double *env, const double *env_im, const double *corr,
                       const double *corr_im, const double *dct, const double *taper, const double *tri,
                       const double *noise_win, const double *scal, int n_scal)
    fps_stream *fps_new(const fps_tables *t, uint64_t seed)
    void fps_free(fps_stream *st)
    size_t fps_bytes(const fps_stream *st)
    void fps_reset(fps_stream *st)
    int fps_process(fps_stream *st, const float *feat, int feat_stride, const float *raw, int n, float *out)
    int fps_prime(fps_stream *st, const float *pcm_pe, int n_pcm, const float *feat, int feat_stride,
                  const float *raw, int n_frames, float *score)
    void fps_noise_sequence(uint64_t seed, float *out, int n)

#: The C build's structural constants, checked against the Python definitions when tables are set.
SIZES = {"FRAME": FPS_FRAME, "KNOT_HOP": FPS_HOP, "NFFT": FPS_NFFT, "IR_LEN": FPS_IR_LEN, "NB_CORR": FPS_NB_CORR,
         "NB_BANDS": FPS_NB_BANDS, "NB_FEATURES": FPS_NB_FEATURES, "NOISE_WIN": FPS_NOISE_WIN, "RAW": FPS_RAW,
         "PRIME_FRAMES": FPS_PRIME_FRAMES, "EXC_HIST": FPS_EXC_HIST, "PULSE_TAPS": FPS_PULSE_TAPS,
         "PHASE_CANDIDATES": FPS_PHASE_CANDIDATES}

cdef fps_tables _tables
cdef bint _tables_ready = False


def tables_ready() -> bool:
    return _tables_ready


def set_tables(const double[:, ::1] env, const double[:, ::1] env_im, const double[:, ::1] corr,
               const double[:, ::1] corr_im, const double[:, ::1] dct,
               const double[::1] taper, const double[::1] tri, const double[::1] noise_win,
               const double[::1] scal) -> None:
    """Fill the tables shared by every stream (once, before any stream exists)."""
    global _tables_ready
    if _tables_ready:
        return
    if (env.shape[0] != FPS_NB_BANDS or env.shape[1] != FPS_BINS or corr.shape[0] != FPS_NB_CORR
            or corr.shape[1] != FPS_BINS or env_im.shape[0] != FPS_NB_BANDS or env_im.shape[1] != FPS_BINS
            or corr_im.shape[0] != FPS_NB_CORR or corr_im.shape[1] != FPS_BINS or dct.shape[0] != FPS_NB_BANDS or dct.shape[1] != FPS_NB_BANDS
            or taper.shape[0] < FPS_IR_LEN or tri.shape[0] != FPS_SEG_OUT or noise_win.shape[0] != FPS_NOISE_WIN):
        raise ValueError("fp synthesis tables have the wrong shapes")
    if fps_tables_set(&_tables, &env[0, 0], &env_im[0, 0], &corr[0, 0], &corr_im[0, 0], &dct[0, 0], &taper[0], &tri[0], &noise_win[0],
                      &scal[0], <int>scal.shape[0]) != 0:
        raise ValueError("fp synthesis tables: bad constants")
    _tables_ready = True


def noise_sequence(uint64_t seed, int n) -> np.ndarray:
    """The first ``n`` noise samples a fresh stream with this seed draws (float32)."""
    out = np.zeros(max(n, 0), np.float32)
    cdef float[::1] o = out
    if n > 0:
        fps_noise_sequence(seed, &o[0], n)
    return out


cdef class Synthesis:
    """One stream's signal stage (see ``fps_stream`` in fp_synthesis.h)."""
    cdef fps_stream *st

    def __cinit__(self, uint64_t seed):
        if not _tables_ready:
            raise RuntimeError("fp synthesis tables are not set")
        self.st = fps_new(&_tables, seed)
        if self.st == NULL:
            raise MemoryError("fps_new failed")

    def __dealloc__(self):
        if self.st != NULL:
            fps_free(self.st)

    @property
    def nbytes(self) -> int:
        return fps_bytes(self.st)

    def reset(self) -> None:
        fps_reset(self.st)

    def process(self, const float[:, ::1] feat, const float[:, ::1] raw, float[:, ::1] out) -> int:
        if (feat.shape[1] < FPS_NB_FEATURES or raw.shape[1] != FPS_RAW or raw.shape[0] != feat.shape[0]
                or out.shape[0] != feat.shape[0] or out.shape[1] != FPS_FRAME):
            raise ValueError("features/network outputs/out shape")
        if feat.shape[0] == 0:
            return 0
        cdef int rc
        with nogil:
            rc = fps_process(self.st, &feat[0, 0], <int>feat.shape[1], &raw[0, 0], <int>feat.shape[0], &out[0, 0])
        return rc

    def prime(self, const float[::1] pcm_pe, const float[:, ::1] feat, const float[:, ::1] raw) -> tuple:
        if (feat.shape[1] < FPS_NB_FEATURES or raw.shape[1] != FPS_RAW or raw.shape[0] != feat.shape[0]
                or feat.shape[0] < FPS_PRIME_FRAMES or pcm_pe.shape[0] < FPS_PRIME_FRAMES * FPS_FRAME):
            raise ValueError("pcm/features/network outputs shape")
        cdef int rc
        cdef float score = 0.0
        with nogil:
            rc = fps_prime(self.st, &pcm_pe[0], <int>pcm_pe.shape[0], &feat[0, 0], <int>feat.shape[1], &raw[0, 0],
                           <int>feat.shape[0], &score)
        return rc, float(score)
