/* Streaming feature analysis; see feature_analysis.h and edge_dred/dsp/features.py.
 *
 * Bit-exactness of the pitch path: every correlation and energy is a sequential
 * double sum in the reference's order (energies sum precomputed squares, the
 * same products).  The SIMD code below vectorises across
 * lags (or output samples), never within one sum, so each lane performs exactly
 * the scalar sequence of roundings.  Build with -ffp-contract=off so that no
 * multiply-add is fused.
 */
#include "feature_analysis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiss_fftr.h"

#if defined(__GNUC__) || defined(__clang__)
typedef double v2d __attribute__((vector_size(16)));
#define EDF_HAVE_V2D 1
#define EDF_NOINLINE __attribute__((noinline))
#else
#define EDF_NOINLINE
#endif

#define N_DEC (EDF_BUF16 / 2)                  /* 8 kHz samples in the buffer */
#define LAG16_LO (EDF_PITCH_MIN - EDF_FINE_HALF - 1)
#define LAG16_HI (EDF_PITCH_MAX + EDF_FINE_HALF + 1)
#define N_FINE (2 * EDF_FINE_HALF + 3)         /* lags around twice the coarse lag */

struct edf_state {
    const edf_params *p;                          /* shared tables, owned by the caller */
    int band_lo[EDF_BANDS], band_hi[EDF_BANDS];   /* non-zero bins of each band */
    kiss_fftr_cfg fft;
    /* stream state */
    double last_x;
    double y_hist[EDF_FRAME];                     /* first half of the next window */
    double lp_in[EDF_LP_TAPS - 1 + EDF_FRAME];    /* low-pass input: history then frame */
    double u[EDF_BUF16];                          /* low-passed history ending at the frame end */
    int prev_lag8;                                /* lag index of the last voiced frame, -1 if none */
    long gap;                                     /* frames since that voiced frame */
    double last_period;
};

/* Per-frame scratch, on the stack. */
typedef struct {
    kiss_fft_scalar fft_in[EDF_WIN];
    kiss_fft_cpx fft_out[EDF_BINS];
    double u2[EDF_BUF16];                         /* squares of u */
    double d[N_DEC], d2[N_DEC];                   /* u at 8 kHz and its squares */
    double ncc[EDF_NLAG8], cp[EDF_NLAG8];
} scratch;

/* ------------------------------------------------------------------ spectrum */

static void cepstrum(edf_state *st, scratch *w, const double *y, float *out)
{
    const edf_params *p = st->p;
    double power[EDF_BINS], logs[EDF_BANDS];
    int k, b, i;
    for (k = 0; k < EDF_FRAME; k++)
        w->fft_in[k] = (kiss_fft_scalar)(st->y_hist[k] * p->window[k]);
    for (k = 0; k < EDF_FRAME; k++)
        w->fft_in[EDF_FRAME + k] = (kiss_fft_scalar)(y[k] * p->window[EDF_FRAME + k]);
    kiss_fftr(st->fft, w->fft_in, w->fft_out);
    for (k = 0; k < EDF_BINS; k++) {
        double re = w->fft_out[k].r, im = w->fft_out[k].i;
        power[k] = (re * re + im * im) / p->win_power;
    }
    double top = -HUGE_VAL;
    for (b = 0; b < EDF_BANDS; b++) {
        double e = 0.0;
        for (k = st->band_lo[b]; k < st->band_hi[b]; k++)
            e += power[k] * p->band_w[b][k];
        logs[b] = log10(e + p->energy_floor);
        if (logs[b] > top)
            top = logs[b];
    }
    /* L_b = max(L_b, max - range, L_{b-1} - decay) */
    double lo = top - p->max_range, prev = lo;
    for (b = 0; b < EDF_BANDS; b++) {
        double v = logs[b];
        if (v < lo)
            v = lo;
        if (b > 0 && v < prev - p->follow_decay)
            v = prev - p->follow_decay;
        logs[b] = v;
        prev = v;
    }
    for (i = 0; i < EDF_BANDS; i++) {
        double c = 0.0;
        for (b = 0; b < EDF_BANDS; b++)
            c += logs[b] * p->dct[i][b];
        out[i] = (float)(i == 0 ? c - p->c0_offset : c);
    }
}

/* ------------------------------------------------------------------ low-pass */

/* out[n] = sum_k h[k] x[n + T-1 - k], k ascending, for n < EDF_FRAME. */
static void lowpass(const double *x, const double *h, double *out)
{
    int n = 0, k;
#ifdef EDF_HAVE_V2D
    for (; n + 8 <= EDF_FRAME; n += 8) {
        v2d a0 = {0.0, 0.0}, a1 = a0, a2 = a0, a3 = a0;
        for (k = 0; k < EDF_LP_TAPS; k++) {
            const double *q = x + n + EDF_LP_TAPS - 1 - k;
            v2d hk = {h[k], h[k]}, x0, x1, x2, x3;
            memcpy(&x0, q, 16);
            memcpy(&x1, q + 2, 16);
            memcpy(&x2, q + 4, 16);
            memcpy(&x3, q + 6, 16);
            a0 = a0 + hk * x0;
            a1 = a1 + hk * x1;
            a2 = a2 + hk * x2;
            a3 = a3 + hk * x3;
        }
        memcpy(out + n, &a0, 16);
        memcpy(out + n + 2, &a1, 16);
        memcpy(out + n + 4, &a2, 16);
        memcpy(out + n + 6, &a3, 16);
    }
#else
    for (; n < EDF_FRAME; n++) {
        double acc = 0.0;
        for (k = 0; k < EDF_LP_TAPS; k++)
            acc = acc + h[k] * x[n + EDF_LP_TAPS - 1 - k];
        out[n] = acc;
    }
#endif
}

#if defined(EDF_HAVE_V2D) && (defined(__x86_64__) || defined(__i386__))
#define EDF_X86_AVX 1
/* The same sums four lanes wide where the CPU has AVX: every lane adds and multiplies in the
 * same order as the SSE2 code's, and AVX has no fused multiply-add, so the results are
 * identical (tests compare both); about half the instructions. */
typedef double v4d __attribute__((vector_size(32)));
static int have_avx = -1;   /* checked once; a race only repeats the same check */

static int use_avx(void)
{
    if (have_avx < 0)
        have_avx = __builtin_cpu_supports("avx") ? 1 : 0;
    return have_avx;
}

__attribute__((target("avx"))) static void lowpass_avx(const double *x, const double *h, double *out)
{
    for (int n = 0; n < EDF_FRAME; n += 8) {   /* EDF_FRAME is a multiple of 8 */
        v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0;
        for (int k = 0; k < EDF_LP_TAPS; k++) {
            const double *q = x + n + EDF_LP_TAPS - 1 - k;
            v4d hk = {h[k], h[k], h[k], h[k]}, x0, x1;
            memcpy(&x0, q, 32);
            memcpy(&x1, q + 4, 32);
            a0 = a0 + hk * x0;
            a1 = a1 + hk * x1;
        }
        memcpy(out + n, &a0, 32);
        memcpy(out + n + 4, &a1, 32);
    }
}
#endif

static void lowpass_any(const double *x, const double *h, double *out)
{
#ifdef EDF_X86_AVX
    if (use_avx()) {
        lowpass_avx(x, h, out);
        return;
    }
#endif
    lowpass(x, h, out);
}

/* ------------------------------------------------------------- correlations */

/* Sum of precomputed squares, in order. */
static double energy(const double *s2, int n)
{
    double e = 0.0;
    for (int i = 0; i < n; i++)
        e = e + s2[i];
    return e;
}

/* ncc of s = x[s0 .. s0+seg) with x[s0-lag ..) for one lag; x2 holds the squares of x. */
static double ncc_one(const double *x, const double *x2, int s0, int seg, int lag, double es, double reg)
{
    const double *s = x + s0, *q = x + s0 - lag, *q2 = x2 + s0 - lag;
    double xc = 0.0, ep = 0.0;
    for (int i = 0; i < seg; i++) {
        xc = xc + s[i] * q[i];
        ep = ep + q2[i];
    }
    return xc / sqrt((es + reg) * (ep + reg));
}

/* ncc for the consecutive lags lag0 .. lag0+n-1 into out[0 .. n).  Not inlined, and
 * built without predictive commoning: either makes the compiler keep loads across
 * iterations, and the 8 accumulators spill out of the 16 SSE registers. */
static EDF_NOINLINE void ncc_run(const double *x, const double *x2, int s0, int seg, int lag0, int n, double es, double reg,
                    double *out)
{
    int j = 0;
#ifdef EDF_HAVE_V2D
    const double *s = x + s0;
    /* Eight lags at once: lanes of the vector at q+2m are lags lag0+j+7-2m and lag0+j+6-2m. */
    for (; j + 8 <= n; j += 8) {
        const double *q = x + s0 - (lag0 + j + 7), *q2 = x2 + s0 - (lag0 + j + 7);
        v2d z = {0.0, 0.0}, c0 = z, c1 = z, c2 = z, c3 = z, e0 = z, e1 = z, e2 = z, e3 = z;
        for (int i = 0; i < seg; i++) {
            v2d si = {s[i], s[i]}, p0, p1, p2, p3, r0, r1, r2, r3;
            memcpy(&p0, q + i, 16);
            memcpy(&p1, q + i + 2, 16);
            memcpy(&p2, q + i + 4, 16);
            memcpy(&p3, q + i + 6, 16);
            memcpy(&r0, q2 + i, 16);
            memcpy(&r1, q2 + i + 2, 16);
            memcpy(&r2, q2 + i + 4, 16);
            memcpy(&r3, q2 + i + 6, 16);
            c0 = c0 + si * p0;
            c1 = c1 + si * p1;
            c2 = c2 + si * p2;
            c3 = c3 + si * p3;
            e0 = e0 + r0;
            e1 = e1 + r1;
            e2 = e2 + r2;
            e3 = e3 + r3;
        }
        double xc[8], ep[8];
        memcpy(xc, &c0, 16);
        memcpy(xc + 2, &c1, 16);
        memcpy(xc + 4, &c2, 16);
        memcpy(xc + 6, &c3, 16);
        memcpy(ep, &e0, 16);
        memcpy(ep + 2, &e1, 16);
        memcpy(ep + 4, &e2, 16);
        memcpy(ep + 6, &e3, 16);
        for (int m = 0; m < 8; m++)   /* element m is lag lag0+j+7-m */
            out[j + 7 - m] = xc[m] / sqrt((es + reg) * (ep[m] + reg));
    }
#endif
    for (; j < n; j++)
        out[j] = ncc_one(x, x2, s0, seg, lag0 + j, es, reg);
}

#ifdef EDF_X86_AVX
/* ncc_run four lanes wide (see lowpass_avx). */
__attribute__((target("avx"))) static EDF_NOINLINE void ncc_run_avx(const double *x, const double *x2, int s0, int seg,
                                                                    int lag0, int n, double es, double reg, double *out)
{
    int j = 0;
    const double *s = x + s0;
    /* Eight lags at once: lane l of the vector at q+4m is lag lag0+j+7-4m-l. */
    for (; j + 8 <= n; j += 8) {
        const double *q = x + s0 - (lag0 + j + 7), *q2 = x2 + s0 - (lag0 + j + 7);
        v4d z = {0.0, 0.0, 0.0, 0.0}, c0 = z, c1 = z, e0 = z, e1 = z;
        for (int i = 0; i < seg; i++) {
            v4d si = {s[i], s[i], s[i], s[i]}, p0, p1, r0, r1;
            memcpy(&p0, q + i, 32);
            memcpy(&p1, q + i + 4, 32);
            memcpy(&r0, q2 + i, 32);
            memcpy(&r1, q2 + i + 4, 32);
            c0 = c0 + si * p0;
            c1 = c1 + si * p1;
            e0 = e0 + r0;
            e1 = e1 + r1;
        }
        double xc[8], ep[8];
        memcpy(xc, &c0, 32);
        memcpy(xc + 4, &c1, 32);
        memcpy(ep, &e0, 32);
        memcpy(ep + 4, &e1, 32);
        for (int m = 0; m < 8; m++)   /* element m is lag lag0+j+7-m */
            out[j + 7 - m] = xc[m] / sqrt((es + reg) * (ep[m] + reg));
    }
    for (; j < n; j++)
        out[j] = ncc_one(x, x2, s0, seg, lag0 + j, es, reg);
}

#endif

int edf_wide_vectors(int allow)
{
#ifdef EDF_X86_AVX
    have_avx = allow && __builtin_cpu_supports("avx") ? 1 : 0;
    return have_avx;
#else
    (void)allow;
    return 0;
#endif
}

/* ncc_run on the widest vectors this CPU has. */
static void ncc_lags(const double *x, const double *x2, int s0, int seg, int lag0, int n, double es, double reg,
                     double *out)
{
#ifdef EDF_X86_AVX
    if (use_avx()) {
        ncc_run_avx(x, x2, s0, seg, lag0, n, es, reg, out);
        return;
    }
#endif
    ncc_run(x, x2, s0, seg, lag0, n, es, reg, out);
}

/* ------------------------------------------------------------- coarse pitch */

/* ncc at 8 kHz for lags 15..135, then peak heights capped by the double lag (cp). */
static void coarse(edf_state *st, scratch *w)
{
    const edf_params *p = st->p;
    const double reg = p->reg * EDF_SEG8;
    double *ncc = w->ncc, *cp = w->cp;
    int j, L;
    for (j = 0; j < N_DEC; j++) {
        w->d[j] = st->u[1 + 2 * j];
        w->d2[j] = w->u2[1 + 2 * j];
    }
    const int s0 = N_DEC - EDF_SEG8;
    const double es = energy(w->d2 + s0, EDF_SEG8);
    ncc_lags(w->d, w->d2, s0, EDF_SEG8, EDF_LAG8_MIN, EDF_NLAG8, es, reg, ncc);
    /* Interior local maxima with parabola-interpolated heights, -1 elsewhere. */
    cp[0] = -1.0;
    cp[EDF_NLAG8 - 1] = -1.0;
    for (j = 1; j < EDF_NLAG8 - 1; j++) {
        double a = ncc[j - 1], b = ncc[j], c = ncc[j + 1];
        if (b >= a && b >= c) {
            double den = a - 2.0 * b + c, h = b;
            if (den < 0)
                h = b - (a - c) * (a - c) / (8.0 * den);
            cp[j] = h < 1.0 ? h : 1.0;
        } else {
            cp[j] = -1.0;
        }
    }
    /* A periodic signal repeats after two periods; a formant resonance does not. */
    const int half = (EDF_LAG8_MAX - 1) / 2;
    for (L = EDF_LAG8_MIN; L <= half; L++) {
        j = L - EDF_LAG8_MIN;
        if (cp[j] > -1.0) {
            int j2 = 2 * L - EDF_LAG8_MIN;
            double c2 = ncc[j2 - 1];
            if (ncc[j2] > c2)
                c2 = ncc[j2];
            if (ncc[j2 + 1] > c2)
                c2 = ncc[j2 + 1];
            if (c2 + p->double_margin < cp[j])
                cp[j] = c2 + p->double_margin;
        }
    }
}

/* Best peak, replaced by its smallest sub-multiple scoring >= ratio of it. */
static int octave_guard(const edf_params *p, const double *cp)
{
    int best = 0, choice, k, j;
    double cbest = cp[0];
    for (j = 1; j < EDF_NLAG8; j++) {
        if (cp[j] > cbest) {
            cbest = cp[j];
            best = j;
        }
    }
    choice = best;
    for (k = 2; k <= p->octave_kmax; k++) {   /* larger k last: the smallest sub-multiple wins */
        int centre = (int)rint((double)(best + EDF_LAG8_MIN) / k) - EDF_LAG8_MIN;
        if (centre < 1)
            continue;
        int c = centre <= EDF_NLAG8 - 2 ? centre : EDF_NLAG8 - 2;
        int jj = c - 1;
        double val = cp[c - 1];
        if (cp[c] > val) {
            val = cp[c];
            jj = c;
        }
        if (cp[c + 1] > val) {
            val = cp[c + 1];
            jj = c + 1;
        }
        if (cbest > 0 && val >= p->octave_ratio * cbest)
            choice = jj;
    }
    return choice;
}

/* Causal continuity: returns the lag index, *voiced set; updates the tracker state. */
static int track(edf_state *st, const double *cp, int li, int *voiced)
{
    const edf_params *p = st->p;
    double ci = cp[li];
    int ok = 1;
    if (st->prev_lag8 >= 0 && st->gap <= p->cont_max_gap) {
        int lag = st->prev_lag8 + EDF_LAG8_MIN;
        int lo = (int)(lag * (1.0 - p->cont_window)) - EDF_LAG8_MIN;   /* truncation, as int() */
        int hi = (int)(lag * (1.0 + p->cont_window)) - EDF_LAG8_MIN + 1;
        if (lo < 0)
            lo = 0;
        if (hi > EDF_NLAG8)
            hi = EDF_NLAG8;
        if (!(lo <= li && li < hi)) {
            int best = lo;
            double cn = cp[lo];
            for (int j = lo + 1; j < hi; j++) {
                if (cp[j] > cn) {
                    cn = cp[j];
                    best = j;
                }
            }
            if (cn >= ci - p->cont_margin) {
                li = best;
                ci = cn;
            } else if (ci < p->jump_min) {
                ok = 0;   /* a weak far candidate breaks a track only when strong */
            }
        }
    } else if (ci < p->onset_min) {
        ok = 0;
    }
    *voiced = ok && ci >= p->voiced_threshold;
    if (*voiced) {
        st->prev_lag8 = li;
        st->gap = 0;
    } else if (st->gap < (1L << 30)) {
        st->gap++;
    }
    return li;
}

/* --------------------------------------------------------------- one frame */

/* Pre-emphasis of one frame, continuing the stream. */
static void preemphasise(edf_state *st, const double *x, double *y)
{
    y[0] = x[0] - st->p->preemphasis * st->last_x;
    for (int k = 1; k < EDF_FRAME; k++)
        y[k] = x[k] - st->p->preemphasis * x[k - 1];
    st->last_x = x[EDF_FRAME - 1];
}

/* The frame's pre-emphasised samples into the window and pitch histories (the low-pass into
 * the end of the 16 kHz pitch buffer). */
static void push(edf_state *st, const double *y)
{
    memcpy(st->y_hist, y, EDF_FRAME * sizeof(double));
    memcpy(st->lp_in + EDF_LP_TAPS - 1, y, EDF_FRAME * sizeof(double));
    memmove(st->u, st->u + EDF_FRAME, (EDF_BUF16 - EDF_FRAME) * sizeof(double));
    lowpass_any(st->lp_in, st->p->lowpass, st->u + EDF_BUF16 - EDF_FRAME);
    memmove(st->lp_in, st->lp_in + EDF_FRAME, (EDF_LP_TAPS - 1) * sizeof(double));
}

static void frame(edf_state *st, const double *x, float *out)
{
    const edf_params *p = st->p;
    scratch w;
    double y[EDF_FRAME];
    int k;
    preemphasise(st, x, y);
    cepstrum(st, &w, y, out);   /* the window: the previous frame (y_hist), then this one */
    push(st, y);
    for (k = 0; k < EDF_BUF16; k++)
        w.u2[k] = st->u[k] * st->u[k];

    coarse(st, &w);
    int voiced;
    int lag8 = track(st, w.cp, octave_guard(p, w.cp), &voiced);

    /* Fine stage at 16 kHz on the last 320 samples. */
    const int s0 = EDF_BUF16 - EDF_SEG16;
    const double reg = p->reg * EDF_SEG16;
    const double es = energy(w.u2 + s0, EDF_SEG16);
    double period, corr;
    if (voiced) {
        int lags[N_FINE], centre = 2 * (lag8 + EDF_LAG8_MIN);
        double f[N_FINE];
        for (k = 0; k < N_FINE; k++) {
            int l = centre - EDF_FINE_HALF - 1 + k;
            lags[k] = l < LAG16_LO ? LAG16_LO : (l > LAG16_HI ? LAG16_HI : l);
        }
        if (lags[0] + N_FINE - 1 == lags[N_FINE - 1]) {
            ncc_lags(st->u, w.u2, s0, EDF_SEG16, lags[0], N_FINE, es, reg, f);
        } else {   /* clipped at a range end: repeated lags */
            for (k = 0; k < N_FINE; k++)
                f[k] = ncc_one(st->u, w.u2, s0, EDF_SEG16, lags[k], es, reg);
        }
        int j = 1;
        for (k = 2; k < N_FINE - 1; k++)
            if (f[k] > f[j])
                j = k;
        double a = f[j - 1], b = f[j], c = f[j + 1];
        double den = a - 2.0 * b + c, delta = 0.0;
        if (den < 0)
            delta = 0.5 * (a - c) / den;
        delta = delta < -0.5 ? -0.5 : (delta > 0.5 ? 0.5 : delta);
        period = lags[j] + delta;
        period = period < EDF_PITCH_MIN ? EDF_PITCH_MIN : (period > EDF_PITCH_MAX ? EDF_PITCH_MAX : period);
        corr = b - 0.25 * (a - c) * delta;
        st->last_period = period;
    } else {
        /* Unvoiced: hold the last voiced period, report the correlation there. */
        period = st->last_period;
        corr = ncc_one(st->u, w.u2, s0, EDF_SEG16, (int)rint(period), es, reg);
    }
    out[EDF_BANDS] = (float)period;
    out[EDF_BANDS + 1] = (float)(corr < 0.0 ? 0.0 : (corr > 1.0 ? 1.0 : corr));
}

/* ------------------------------------------------------------------ public */

edf_state *edf_new(const edf_params *p)
{
    edf_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->p = p;
    st->fft = kiss_fftr_alloc(EDF_WIN, 0, NULL, NULL);
    if (!st->fft) {
        free(st);
        return NULL;
    }
    for (int b = 0; b < EDF_BANDS; b++) {
        int lo = 0, hi = 0;
        while (lo < EDF_BINS && p->band_w[b][lo] == 0.0)
            lo++;
        for (int k = lo; k < EDF_BINS; k++)
            if (p->band_w[b][k] != 0.0)
                hi = k + 1;
        st->band_lo[b] = lo;
        st->band_hi[b] = hi > lo ? hi : lo;
    }
    edf_reset(st);
    return st;
}

void edf_free(edf_state *st)
{
    if (st) {
        kiss_fftr_free(st->fft);
        free(st);
    }
}

void edf_reset(edf_state *st)
{
    st->last_x = 0.0;
    memset(st->y_hist, 0, sizeof st->y_hist);
    memset(st->lp_in, 0, sizeof st->lp_in);
    memset(st->u, 0, sizeof st->u);
    st->prev_lag8 = -1;
    st->gap = 1L << 30;
    st->last_period = st->p->default_period;
}

void edf_process_f64(edf_state *st, const double *x, long n_frames, float *out)
{
    for (long i = 0; i < n_frames; i++)
        frame(st, x + i * EDF_FRAME, out + i * EDF_NFEAT);
}

void edf_process_i16(edf_state *st, const int16_t *x, long n_frames, float *out)
{
    double buf[EDF_FRAME];
    for (long i = 0; i < n_frames; i++) {
        for (int k = 0; k < EDF_FRAME; k++)
            buf[k] = x[i * EDF_FRAME + k];
        frame(st, buf, out + i * EDF_NFEAT);
    }
}

void edf_skip_f64(edf_state *st, const double *x, long n_frames)
{
    double y[EDF_FRAME];
    for (long i = 0; i < n_frames; i++) {
        preemphasise(st, x + i * EDF_FRAME, y);
        push(st, y);
    }
}

long edf_state_bytes(const edf_state *st)
{
    size_t plan = 0;
    kiss_fftr_alloc(EDF_WIN, 0, NULL, &plan);   /* size query only */
    (void)st;
    return (long)(sizeof(edf_state) + plan);
}
