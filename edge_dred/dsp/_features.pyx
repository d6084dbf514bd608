# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Compiled hot loops for :mod:`edge_dred.dsp.features`.

Each function mirrors a numpy fallback in ``features.py``; the numpy and the
compiled results agree to rounding (not bit for bit), while batch and
streaming runs of the *same* implementation agree exactly because every
output depends only on its own frame's buffer, summed in a fixed order.
Sizes are checked here too: these functions index raw memory.
"""
from libc.math cimport rint, sqrt


def lowpass(const double[::1] x, const double[::1] h, double[::1] out):
    """``out[n] = sum_k h[k] * x[n + T - 1 - k]`` with ``T = len(h)``."""
    cdef Py_ssize_t taps = h.shape[0]
    cdef Py_ssize_t n_out = out.shape[0]
    cdef Py_ssize_t n, k
    cdef double acc
    if taps < 1 or x.shape[0] != n_out + taps - 1:
        raise ValueError("lowpass: len(x) must equal len(out) + len(h) - 1")
    with nogil:
        for n in range(n_out):
            acc = 0.0
            for k in range(taps):
                acc = acc + h[k] * x[n + taps - 1 - k]
            out[n] = acc


def ncc_fine(const double[::1] u, const Py_ssize_t[::1] starts,
             const Py_ssize_t[:, ::1] lags, Py_ssize_t buflen, Py_ssize_t seg,
             double reg, double[:, ::1] out):
    """Normalised cross-correlation at integer lags.

    Row ``r`` uses the buffer ``u[starts[r] : starts[r] + buflen]``; its last
    ``seg`` samples are compared with the ``seg`` samples ``lag`` earlier.
    """
    cdef Py_ssize_t n_rows = starts.shape[0]
    cdef Py_ssize_t n_lags = lags.shape[1]
    cdef Py_ssize_t r, j, i, lag, b0, s0, p0
    cdef double es, xc, ep, sv, pv
    if lags.shape[0] != n_rows or out.shape[0] != n_rows or out.shape[1] != n_lags:
        raise ValueError("ncc_fine: shape mismatch")
    if seg < 1 or buflen < seg:
        raise ValueError("ncc_fine: bad segment length")
    for r in range(n_rows):
        if starts[r] < 0 or starts[r] + buflen > u.shape[0]:
            raise ValueError("ncc_fine: buffer out of range")
        for j in range(n_lags):
            if lags[r, j] < 0 or lags[r, j] > buflen - seg:
                raise ValueError("ncc_fine: lag out of range")
    with nogil:
        for r in range(n_rows):
            b0 = starts[r]
            s0 = b0 + buflen - seg
            es = 0.0
            for i in range(seg):
                sv = u[s0 + i]
                es = es + sv * sv
            for j in range(n_lags):
                lag = lags[r, j]
                p0 = s0 - lag
                xc = 0.0
                ep = 0.0
                for i in range(seg):
                    pv = u[p0 + i]
                    xc = xc + u[s0 + i] * pv
                    ep = ep + pv * pv
                out[r, j] = xc / sqrt((es + reg) * (ep + reg))


def coarse_peaks(const double[::1] u, const Py_ssize_t[::1] starts, Py_ssize_t buflen,
                 Py_ssize_t seg, Py_ssize_t lag_min, Py_ssize_t lag_max, double reg,
                 double margin, double[:, ::1] ncc, double[:, ::1] cp):
    """Coarse 8 kHz pitch search: ncc per lag, then peak heights capped by the double lag.

    Row ``r`` uses ``d = u[starts[r] : starts[r] + buflen][1::2]``; the last
    ``seg`` samples of ``d`` are compared with the ``seg`` samples ``L``
    earlier for ``L = lag_min .. lag_max`` (column ``L - lag_min`` of
    ``ncc``).  ``cp`` gets what ``_double_check(_peaks_only(ncc), ncc)``
    computes in numpy.  Direct sums instead of the numpy version's FFT: for
    one or two frames per call the FFT set-up costs more than it saves.
    """
    cdef Py_ssize_t n_rows = starts.shape[0]
    cdef Py_ssize_t n_lag = lag_max - lag_min + 1
    cdef Py_ssize_t nd = buflen // 2
    cdef Py_ssize_t r, j, i, L, s0, p0, half, j2
    cdef double es, xc, ep, sv, pv, a, b, c, den, h, c2
    if n_lag < 3 or lag_min < 1 or nd < seg + lag_max or seg < 1:
        raise ValueError("coarse_peaks: bad sizes")
    if ncc.shape[0] != n_rows or cp.shape[0] != n_rows or ncc.shape[1] != n_lag or cp.shape[1] != n_lag:
        raise ValueError("coarse_peaks: shape mismatch")
    for r in range(n_rows):
        if starts[r] < 0 or starts[r] + buflen > u.shape[0]:
            raise ValueError("coarse_peaks: buffer out of range")
    half = (lag_max - 1) // 2
    with nogil:
        for r in range(n_rows):
            # d[k] = u[starts[r] + 1 + 2 k]
            s0 = starts[r] + 1 + 2 * (nd - seg)
            es = 0.0
            for i in range(seg):
                sv = u[s0 + 2 * i]
                es = es + sv * sv
            for j in range(n_lag):
                L = lag_min + j
                p0 = s0 - 2 * L
                xc = 0.0
                ep = 0.0
                for i in range(seg):
                    pv = u[p0 + 2 * i]
                    xc = xc + u[s0 + 2 * i] * pv
                    ep = ep + pv * pv
                ncc[r, j] = xc / sqrt((es + reg) * (ep + reg))
            cp[r, 0] = -1.0
            cp[r, n_lag - 1] = -1.0
            for j in range(1, n_lag - 1):
                a = ncc[r, j - 1]
                b = ncc[r, j]
                c = ncc[r, j + 1]
                if b >= a and b >= c:
                    den = a - 2.0 * b + c
                    h = b
                    if den < 0:
                        h = b - (a - c) * (a - c) / (8.0 * den)
                    cp[r, j] = h if h < 1.0 else 1.0
                else:
                    cp[r, j] = -1.0
            for L in range(lag_min, half + 1):
                j = L - lag_min
                if cp[r, j] > -1.0:
                    j2 = 2 * L - lag_min
                    c2 = ncc[r, j2 - 1]
                    if ncc[r, j2] > c2:
                        c2 = ncc[r, j2]
                    if ncc[r, j2 + 1] > c2:
                        c2 = ncc[r, j2 + 1]
                    if c2 + margin < cp[r, j]:
                        cp[r, j] = c2 + margin


def track(const double[:, ::1] cp, const Py_ssize_t[::1] indep,
          Py_ssize_t prev, Py_ssize_t gap, Py_ssize_t lag_min,
          double window, double margin, Py_ssize_t max_gap,
          double jump_min, double onset_min, double voiced_threshold,
          Py_ssize_t[::1] lag_out, unsigned char[::1] voiced_out):
    """Causal pitch continuity tracking (see ``FeatureExtractor._track``).

    Returns the updated ``(prev, gap)`` state.
    """
    cdef Py_ssize_t n = cp.shape[0]
    cdef Py_ssize_t n_lag = cp.shape[1]
    cdef Py_ssize_t i, j, li, lo, hi, p, best_j
    cdef double ci, cn
    cdef bint ok
    if indep.shape[0] != n or lag_out.shape[0] != n or voiced_out.shape[0] != n:
        raise ValueError("track: shape mismatch")
    if prev >= n_lag:
        raise ValueError("track: previous lag out of range")
    for i in range(n):
        if indep[i] < 0 or indep[i] >= n_lag:
            raise ValueError("track: candidate out of range")
    with nogil:
        for i in range(n):
            li = indep[i]
            ci = cp[i, li]
            ok = True
            if prev >= 0 and gap <= max_gap:
                p = prev + lag_min
                # Truncation toward zero, as int() in the Python version.
                lo = <Py_ssize_t>(p * (1.0 - window)) - lag_min
                if lo < 0:
                    lo = 0
                hi = <Py_ssize_t>(p * (1.0 + window)) - lag_min + 1
                if hi > n_lag:
                    hi = n_lag
                if not (lo <= li and li < hi):
                    best_j = lo
                    cn = cp[i, lo]
                    for j in range(lo + 1, hi):
                        if cp[i, j] > cn:
                            cn = cp[i, j]
                            best_j = j
                    if cn >= ci - margin:
                        li = best_j
                        ci = cn
                    elif ci < jump_min:
                        ok = False
            elif ci < onset_min:
                ok = False
            lag_out[i] = li
            if ok and ci >= voiced_threshold:
                voiced_out[i] = 1
                prev = li
                gap = 0
            else:
                voiced_out[i] = 0
                gap = gap + 1
                if gap > 1073741824:
                    gap = 1073741824
    return prev, gap


def octave_guard(const double[:, ::1] cp, Py_ssize_t lag_min, double ratio,
                 Py_ssize_t kmax, Py_ssize_t[::1] out):
    """Per-frame best peak, replaced by its smallest qualifying sub-multiple."""
    cdef Py_ssize_t n = cp.shape[0]
    cdef Py_ssize_t n_lag = cp.shape[1]
    cdef Py_ssize_t i, j, k, best, choice, centre, c, jj
    cdef double cbest, val
    if out.shape[0] != n or n_lag < 3:
        raise ValueError("octave_guard: shape mismatch")
    with nogil:
        for i in range(n):
            best = 0
            cbest = cp[i, 0]
            for j in range(1, n_lag):
                if cp[i, j] > cbest:
                    cbest = cp[i, j]
                    best = j
            choice = best
            for k in range(2, kmax + 1):
                centre = <Py_ssize_t>rint(<double>(best + lag_min) / k) - lag_min
                if centre < 1:
                    continue
                c = centre if centre <= n_lag - 2 else n_lag - 2
                jj = c - 1
                val = cp[i, c - 1]
                if cp[i, c] > val:
                    val = cp[i, c]
                    jj = c
                if cp[i, c + 1] > val:
                    val = cp[i, c + 1]
                    jj = c + 1
                if cbest > 0 and val >= ratio * cbest:
                    choice = jj
            out[i] = choice


def floor_logs(double[:, ::1] logs, double max_range, double decay):
    """In place: no band below max - max_range, valleys fall <= decay per band."""
    cdef Py_ssize_t n = logs.shape[0]
    cdef Py_ssize_t nb = logs.shape[1]
    cdef Py_ssize_t i, b
    cdef double lo, prev, v
    if nb < 1:
        raise ValueError("floor_logs: no bands")
    with nogil:
        for i in range(n):
            lo = logs[i, 0]
            for b in range(1, nb):
                if logs[i, b] > lo:
                    lo = logs[i, b]
            lo = lo - max_range
            prev = lo
            for b in range(nb):
                # v_b = max(L_b, max - range, v_{b-1} - decay)
                v = logs[i, b]
                if v < lo:
                    v = lo
                if b > 0 and v < prev - decay:
                    v = prev - decay
                logs[i, b] = v
                prev = v
