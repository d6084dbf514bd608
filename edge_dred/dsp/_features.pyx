# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Thin binding of the compiled feature analysis (``src/feature_analysis.c``).

:class:`Analyzer` owns one stream's state and FFT plan; each call analyses
whole 10 ms frames in one C call.  Tables and thresholds are given once, at
construction, by :mod:`edge_dred.dsp.features` (their single definition).
Sizes are checked here: the C code indexes raw memory.
"""
from libc.stdint cimport int16_t
from libc.math cimport isfinite, fabs

cdef extern from "feature_analysis.h":
    enum:
        EDF_FRAME
        EDF_WIN
        EDF_BINS
        EDF_BANDS
        EDF_NFEAT
        EDF_LP_TAPS
        EDF_BUF16
        EDF_SEG8
        EDF_LAG8_MIN
        EDF_LAG8_MAX
        EDF_FINE_HALF
        EDF_PITCH_MIN
        EDF_PITCH_MAX

    ctypedef struct edf_params:
        double preemphasis
        double win_power
        double energy_floor
        double max_range
        double follow_decay
        double c0_offset
        double reg
        double double_margin
        double octave_ratio
        double cont_window
        double cont_margin
        double jump_min
        double onset_min
        double voiced_threshold
        double default_period
        int octave_kmax
        int cont_max_gap
        double window[EDF_WIN]
        double band_w[EDF_BANDS][EDF_BINS]
        double dct[EDF_BANDS][EDF_BANDS]
        double lowpass[EDF_LP_TAPS]

    ctypedef struct edf_state:
        pass

    edf_state *edf_new(const edf_params *p) nogil
    void edf_free(edf_state *st) nogil
    void edf_reset(edf_state *st) nogil
    void edf_process_i16(edf_state *st, const int16_t *x, long n_frames, float *out) nogil
    void edf_process_f64(edf_state *st, const double *x, long n_frames, float *out) nogil
    long edf_state_bytes(const edf_state *st) nogil

FRAME = EDF_FRAME
NB_FEATURES = EDF_NFEAT
LP_TAPS = EDF_LP_TAPS
BUF16 = EDF_BUF16
SEG8 = EDF_SEG8
LAG8_MIN = EDF_LAG8_MIN
LAG8_MAX = EDF_LAG8_MAX
FINE_HALF = EDF_FINE_HALF
PITCH_MIN = EDF_PITCH_MIN
PITCH_MAX = EDF_PITCH_MAX
_SCALARS = ("preemphasis", "win_power", "energy_floor", "max_range", "follow_decay", "c0_offset", "reg",
            "double_margin", "octave_ratio", "cont_window", "cont_margin", "jump_min", "onset_min",
            "voiced_threshold", "default_period", "octave_kmax", "cont_max_gap")


def bad_sample(const double[::1] x, double limit):
    """Index of the first non-finite sample or one with ``|x| > limit``; -1 if none."""
    cdef Py_ssize_t i, bad = -1
    with nogil:
        for i in range(x.shape[0]):
            if not isfinite(x[i]) or fabs(x[i]) > limit:
                bad = i
                break
    return bad


cdef class Analyzer:
    """One stream of feature analysis.

    Parameters
    ----------
    window : float64 (320,)
    band_w : float64 (18, 161), per-band normalised weights
    dct : float64 (18, 18), row = cepstral coefficient
    lowpass : float64 (31,)
    scalars : dict
        Every name in ``_SCALARS``.
    """

    cdef edf_state *st

    def __cinit__(self, const double[::1] window, const double[:, ::1] band_w, const double[:, ::1] dct,
                  const double[::1] lowpass, dict scalars):
        cdef edf_params p
        cdef Py_ssize_t i, j
        if window.shape[0] != EDF_WIN or band_w.shape[0] != EDF_BANDS or band_w.shape[1] != EDF_BINS \
                or dct.shape[0] != EDF_BANDS or dct.shape[1] != EDF_BANDS or lowpass.shape[0] != EDF_LP_TAPS:
            raise ValueError("Analyzer: table sizes do not match feature_analysis.h")
        missing = [k for k in _SCALARS if k not in scalars]
        if missing:
            raise ValueError(f"Analyzer: missing parameters {missing}")
        p.preemphasis = scalars["preemphasis"]
        p.win_power = scalars["win_power"]
        p.energy_floor = scalars["energy_floor"]
        p.max_range = scalars["max_range"]
        p.follow_decay = scalars["follow_decay"]
        p.c0_offset = scalars["c0_offset"]
        p.reg = scalars["reg"]
        p.double_margin = scalars["double_margin"]
        p.octave_ratio = scalars["octave_ratio"]
        p.cont_window = scalars["cont_window"]
        p.cont_margin = scalars["cont_margin"]
        p.jump_min = scalars["jump_min"]
        p.onset_min = scalars["onset_min"]
        p.voiced_threshold = scalars["voiced_threshold"]
        p.default_period = scalars["default_period"]
        p.octave_kmax = scalars["octave_kmax"]
        p.cont_max_gap = scalars["cont_max_gap"]
        for i in range(EDF_WIN):
            p.window[i] = window[i]
        for i in range(EDF_BANDS):
            for j in range(EDF_BINS):
                p.band_w[i][j] = band_w[i, j]
            for j in range(EDF_BANDS):
                p.dct[i][j] = dct[i, j]
        for i in range(EDF_LP_TAPS):
            p.lowpass[i] = lowpass[i]
        self.st = edf_new(&p)
        if self.st == NULL:
            raise MemoryError("Analyzer: out of memory")

    def __dealloc__(self):
        edf_free(self.st)

    def reset(self):
        """Forget all history (as if the stream restarted after zeros)."""
        edf_reset(self.st)

    def process_i16(self, const int16_t[::1] x, float[:, ::1] out):
        """Analyse ``len(x) // 160`` frames of int16 samples into ``out`` (n, 20)."""
        cdef long n = x.shape[0] // EDF_FRAME
        if x.shape[0] % EDF_FRAME or out.shape[0] != n or out.shape[1] != EDF_NFEAT:
            raise ValueError("process_i16: shape mismatch")
        if n:
            with nogil:
                edf_process_i16(self.st, &x[0], n, &out[0, 0])

    def process_f64(self, const double[::1] x, float[:, ::1] out):
        """As :meth:`process_i16` for int16-scale float64 samples (validated by the caller)."""
        cdef long n = x.shape[0] // EDF_FRAME
        if x.shape[0] % EDF_FRAME or out.shape[0] != n or out.shape[1] != EDF_NFEAT:
            raise ValueError("process_f64: shape mismatch")
        if n:
            with nogil:
                edf_process_f64(self.st, &x[0], n, &out[0, 0])

    @property
    def state_bytes(self) -> int:
        """Bytes held by this stream (state, scratch and FFT plan)."""
        return edf_state_bytes(self.st)
