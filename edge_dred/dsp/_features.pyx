# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Thin binding of the compiled feature analysis (``src/feature_analysis.c``).

:class:`Analyzer` owns one stream's state and FFT plan; each call analyses
whole 10 ms frames in one C call.  Tables and thresholds are set once per
process by :mod:`edge_dred.dsp.features` (their single definition) through
:func:`set_params`.  Contiguous int16 arrays take a direct path; anything else
goes to the subclass's ``_checked`` (validation, then :meth:`_run_i16` /
:meth:`_run_f64`).  Sizes are checked here: the C code indexes raw memory.
"""
cimport numpy as cnp
from libc.stdint cimport int16_t
from libc.math cimport isfinite, fabs

cnp.import_array()

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
    void edf_skip_f64(edf_state *st, const double *x, long n_frames) nogil
    long edf_state_bytes(const edf_state *st) nogil
    int edf_wide_vectors(int allow) nogil

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


def _wide_vectors(bint allow):
    """Let the pitch correlations use AVX where the CPU has it (True, the default) or not (tests
    compare both: the results are identical); returns whether AVX is used now."""
    return bool(edf_wide_vectors(allow))


def bad_sample(const double[::1] x, double limit):
    """Index of the first non-finite sample or one with ``|x| > limit``; -1 if none."""
    cdef Py_ssize_t i, bad = -1
    with nogil:
        for i in range(x.shape[0]):
            if not isfinite(x[i]) or fabs(x[i]) > limit:
                bad = i
                break
    return bad


cdef edf_params _params
cdef bint _have_params = False


def set_params(const double[::1] window, const double[:, ::1] band_w, const double[:, ::1] dct,
               const double[::1] lowpass, dict scalars):
    """Set the tables and thresholds every :class:`Analyzer` is created with.

    Parameters
    ----------
    window : float64 (320,)
    band_w : float64 (18, 161), per-band normalised weights
    dct : float64 (18, 18), row = cepstral coefficient
    lowpass : float64 (31,)
    scalars : dict
        Every name in ``_SCALARS``.
    """
    global _have_params
    cdef Py_ssize_t i, j
    if window.shape[0] != EDF_WIN or band_w.shape[0] != EDF_BANDS or band_w.shape[1] != EDF_BINS \
            or dct.shape[0] != EDF_BANDS or dct.shape[1] != EDF_BANDS or lowpass.shape[0] != EDF_LP_TAPS:
        raise ValueError("set_params: table sizes do not match feature_analysis.h")
    missing = [k for k in _SCALARS if k not in scalars]
    if missing:
        raise ValueError(f"set_params: missing parameters {missing}")
    _params.preemphasis = scalars["preemphasis"]
    _params.win_power = scalars["win_power"]
    _params.energy_floor = scalars["energy_floor"]
    _params.max_range = scalars["max_range"]
    _params.follow_decay = scalars["follow_decay"]
    _params.c0_offset = scalars["c0_offset"]
    _params.reg = scalars["reg"]
    _params.double_margin = scalars["double_margin"]
    _params.octave_ratio = scalars["octave_ratio"]
    _params.cont_window = scalars["cont_window"]
    _params.cont_margin = scalars["cont_margin"]
    _params.jump_min = scalars["jump_min"]
    _params.onset_min = scalars["onset_min"]
    _params.voiced_threshold = scalars["voiced_threshold"]
    _params.default_period = scalars["default_period"]
    _params.octave_kmax = scalars["octave_kmax"]
    _params.cont_max_gap = scalars["cont_max_gap"]
    for i in range(EDF_WIN):
        _params.window[i] = window[i]
    for i in range(EDF_BANDS):
        for j in range(EDF_BINS):
            _params.band_w[i][j] = band_w[i, j]
        for j in range(EDF_BANDS):
            _params.dct[i][j] = dct[i, j]
    for i in range(EDF_LP_TAPS):
        _params.lowpass[i] = lowpass[i]
    _have_params = True


cdef class Analyzer:
    """One stream of feature analysis (state and FFT plan allocated here, once)."""

    cdef edf_state *st

    def __cinit__(self, *args, **kwargs):
        if not _have_params:
            raise RuntimeError("edge_dred.dsp._features: set_params() was not called")
        self.st = edf_new(&_params)
        if self.st == NULL:
            raise MemoryError("Analyzer: out of memory")

    def __dealloc__(self):
        edf_free(self.st)

    def reset(self):
        """Forget all history (as if the stream restarted after zeros)."""
        edf_reset(self.st)

    def process(self, frame):
        """Analyse one 160-sample frame.

        Parameters
        ----------
        frame : numpy.ndarray
            1-D, exactly 160 samples on the int16 scale (int16, float32 or float64).

        Returns
        -------
        numpy.ndarray
            float32 array of shape (20,).
        """
        out = self._direct(frame, True)
        if out is None:
            out = self._checked(frame, "frame", True)
        return out[0]

    def process_block(self, pcm):
        """Analyse a block whose length is a multiple of 160 samples (one C call).

        Returns
        -------
        numpy.ndarray
            float32 array of shape (len(pcm) // 160, 20).
        """
        out = self._direct(pcm, False)
        if out is None:
            return self._checked(pcm, "pcm", False)
        return out

    cdef object _direct(self, object pcm, bint one):
        """The analysis of a contiguous 1-D int16 array of whole frames; None for anything else."""
        cdef cnp.ndarray arr, out
        cdef cnp.npy_intp dims[2]
        cdef Py_ssize_t n
        if not cnp.PyArray_Check(pcm):
            return None
        arr = <cnp.ndarray>pcm
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_TYPE(arr) != cnp.NPY_INT16 \
                or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
            return None
        n = cnp.PyArray_DIM(arr, 0)
        if n % EDF_FRAME or (one and n != EDF_FRAME):
            return None
        dims[0] = n // EDF_FRAME
        dims[1] = EDF_NFEAT
        out = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
        if dims[0]:
            with nogil:
                edf_process_i16(self.st, <const int16_t *>cnp.PyArray_DATA(arr), dims[0],
                                <float *>cnp.PyArray_DATA(out))
        return out

    def _run_i16(self, const int16_t[::1] x):
        """Analyse ``len(x) // 160`` whole frames of int16 samples."""
        cdef long n = x.shape[0] // EDF_FRAME
        if x.shape[0] % EDF_FRAME:
            raise ValueError("_run_i16: not whole frames")
        out = cnp.PyArray_ZEROS(2, [n, EDF_NFEAT], cnp.NPY_FLOAT32, 0)
        cdef float[:, ::1] o = out
        if n:
            with nogil:
                edf_process_i16(self.st, &x[0], n, &o[0, 0])
        return out

    def _run_f64(self, const double[::1] x):
        """As :meth:`_run_i16` for int16-scale float64 samples (validated by the caller)."""
        cdef long n = x.shape[0] // EDF_FRAME
        if x.shape[0] % EDF_FRAME:
            raise ValueError("_run_f64: not whole frames")
        out = cnp.PyArray_ZEROS(2, [n, EDF_NFEAT], cnp.NPY_FLOAT32, 0)
        cdef float[:, ::1] o = out
        if n:
            with nogil:
                edf_process_f64(self.st, &x[0], n, &o[0, 0])
        return out

    def _skip_f64(self, const double[::1] x):
        """Keep ``len(x) // 160`` whole frames of int16-scale samples (validated by the caller) as
        history without analysing them."""
        cdef long n = x.shape[0] // EDF_FRAME
        if x.shape[0] % EDF_FRAME:
            raise ValueError("_skip_f64: not whole frames")
        if n:
            with nogil:
                edf_skip_f64(self.st, &x[0], n)

    def _checked(self, pcm, str name, bint one):
        raise NotImplementedError("validation is the subclass's (edge_dred.dsp.features.FeatureExtractor)")

    @property
    def state_bytes(self) -> int:
        """Bytes held by this stream (state, scratch and FFT plan)."""
        return edf_state_bytes(self.st)
