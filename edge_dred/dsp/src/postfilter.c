/* The vocoder's postfilters and de-emphasis (see postfilter.h and edge_dred/dsp/postfilter.py). */
#include "postfilter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiss_fftr.h"

#define PF_ALIGN 16
#define ALIGN_UP(n) (((n) + (PF_ALIGN - 1)) & ~(size_t)(PF_ALIGN - 1))
#define PF_BUF (PF_FRAME + PF_MAX_TAPS - 1 + PF_FRAME)
_Static_assert(PF_FRAME % 8 == 0, "the filter loop works in blocks of 8 outputs");

static const float LN10 = 2.302585092994046f;

struct pf_envelope {
    const pf_tables *t;
    int taps, n_hist;                 /* n_hist = PF_FRAME + taps - 1 input samples kept */
    float half_strength, lo, hi;      /* natural-log amplitude bounds */
    float x_last, y_last;             /* process_pcm's pre-/de-emphasis memories */
    size_t bytes;
    kiss_fftr_cfg fwd;
    float buf[PF_BUF];                /* history, then the current frame */
};

/* One frame's scratch, on the stack (about 5 KB). */
typedef struct {
    float tmp[PF_NFFT];
    float power[PF_BINS];
    float h[2][PF_MAX_TAPS];
    kiss_fft_cpx spec[PF_BINS];
} env_scratch;

struct pf_pitch {
    const pf_tables *t;
    float strength, g, scale;         /* the previous frame's comb gain and energy scale */
    int n_hist;                       /* PITCH_MAX + 3 */
    size_t bytes;
    float buf[];                      /* n_hist + PF_FRAME: history, then the current frame */
};

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static int rows_finite(const float *f, int stride, int width, int n) {
    for (int t = 0; t < n; t++)
        if (!all_finite(f + (size_t)t * stride, (size_t)width)) return 0;
    return 1;
}

typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof(v)); }

static inline v4f splat4(float x) { return (v4f){x, x, x, x}; }

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static int16_t to_int16(float v) {
    v *= 32768.0f;
    if (v >= 32767.0f) return 32767;
    if (v <= -32768.0f) return -32768;
    return (int16_t)lrintf(v);        /* round half to even, as numpy.round */
}

int pf_tables_set(pf_tables *t, const double *win, const double *ramp,
                  const double *ceps, const double *wpow, const double *dct, double c0_offset, double pitch_min,
                  double pitch_max, double preemph) {
    if (!(pitch_min >= 1.0 && pitch_max >= pitch_min && pitch_max + 3 < PF_NFFT * 4))
        return PF_ERR_ARG;
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < PF_NFFT; i++) t->win[w][i] = (float)win[w * PF_NFFT + i];
    for (int i = 0; i < PF_FRAME; i++) t->ramp[i] = (float)ramp[i];
    for (int b = 0; b < PF_BANDS; b++) {
        int lo = PF_BINS, hi = 0;
        for (int k = 0; k < PF_BINS; k++) {
            t->wpow[b][k] = (float)wpow[b * PF_BINS + k];
            if (wpow[b * PF_BINS + k] != 0.0) {
                if (k < lo) lo = k;
                hi = k + 1;
            }
        }
        for (int n = 0; n < PF_MAX_TAPS; n++) t->ceps[b][n] = (float)ceps[b * PF_MAX_TAPS + n];
        t->band_lo[b] = lo < hi ? lo : 0;
        t->band_hi[b] = hi;
        for (int i = 0; i < PF_BANDS; i++) t->dct[b][i] = (float)dct[b * PF_BANDS + i];
    }
    t->inv_n[0] = 0.0f;
    for (int n = 1; n < PF_MAX_TAPS; n++) t->inv_n[n] = 1.0f / (float)n;
    t->c0_offset = (float)c0_offset;
    t->pitch_min = (float)pitch_min;
    t->pitch_max = (float)pitch_max;
    t->preemph = (float)preemph;
    return PF_OK;
}

/* ------------------------------------------------------------------ envelope */

pf_envelope *pf_envelope_new(const pf_tables *t, int taps, float strength, float max_boost_db, float max_cut_db) {
    if (!t || taps < 16 || taps > PF_MAX_TAPS || !(strength >= 0.0f && strength <= 1.0f))
        return NULL;
    size_t n_fwd = 0;
    kiss_fftr_alloc(PF_NFFT, 0, NULL, &n_fwd);
    size_t head = ALIGN_UP(sizeof(pf_envelope));
    size_t total = head + ALIGN_UP(n_fwd);
    char *mem = (char *)calloc(1, total);
    if (!mem) return NULL;
    pf_envelope *st = (pf_envelope *)mem;
    st->t = t;
    st->taps = taps;
    st->n_hist = PF_FRAME + taps - 1;
    st->half_strength = 0.5f * strength;
    st->hi = max_boost_db * LN10 / 20.0f;
    st->lo = -max_cut_db * LN10 / 20.0f;
    st->bytes = total;
    st->fwd = kiss_fftr_alloc(PF_NFFT, 0, mem + head, &n_fwd);
    if (!st->fwd) {
        free(mem);
        return NULL;
    }
    pf_envelope_reset(st);
    return st;
}

void pf_envelope_free(pf_envelope *st) { free(st); }

size_t pf_envelope_bytes(const pf_envelope *st) { return st->bytes; }

void pf_envelope_reset(pf_envelope *st) {
    memset(st->buf, 0, sizeof(st->buf));
    st->x_last = st->y_last = 0.0f;
}

int pf_envelope_prime(pf_envelope *st, const float *hist, int n) {
    if (n < 0) return PF_ERR_ARG;
    if (!all_finite(hist, (size_t)n)) return PF_ERR_NONFINITE;
    pf_envelope_reset(st);
    int m = n < st->n_hist ? n : st->n_hist;
    memcpy(st->buf + st->n_hist - m, hist + n - m, (size_t)m * sizeof(float));
    return PF_OK;
}

int pf_envelope_prime_pcm(pf_envelope *st, const float *pcm, int n) {
    if (n < 0) return PF_ERR_ARG;
    if (!all_finite(pcm, (size_t)n)) return PF_ERR_NONFINITE;
    pf_envelope_reset(st);
    int m = n < st->n_hist + 1 ? n : st->n_hist + 1;    /* n_hist pre-emphasised samples need one more */
    const float *h = pcm + n - m;
    const float p = st->t->preemph, s = 1.0f / 32768.0f;
    for (int i = 1; i < m; i++)
        st->buf[st->n_hist - m + i] = h[i] * s - p * (h[i - 1] * s);
    if (m) st->x_last = st->y_last = h[m - 1] * s;
    return PF_OK;
}

/* Minimum-phase FIR h for the band log-gains lg.  Its complex cepstrum is the folded real
 * cepstrum of the interpolated log magnitude, linear in lg (one table, 18 x taps); the
 * impulse response follows from it by the recursion h[n] = sum_{k=1..n} (k/n) c[k] h[n-k],
 * h[0] = exp(c[0]): exact for the first taps samples, no transform and no exponentials
 * per bin. */
static void min_phase(const pf_envelope *st, const float *lg, float *h) {
    const pf_tables *t = st->t;
    const int taps = st->taps;
    float kc[PF_MAX_TAPS] = {0};
    /* h reversed (hr[PF_MAX_TAPS - 1 - n] = h[n]), so that each step's sum runs over
     * consecutive memory in both operands: a 4-wide dot product */
    float hr[PF_MAX_TAPS + 3] = {0};
    for (int b = 0; b < PF_BANDS; b++) {
        const float g = lg[b];
        for (int n = 0; n < taps; n++) kc[n] += g * t->ceps[b][n];
    }
    for (int n = 1; n < taps; n++) kc[n] *= (float)n;
    float *top = hr + PF_MAX_TAPS - 1;               /* top[-n] = h[n] */
    top[0] = h[0] = expf(kc[0]);
    for (int n = 1; n < taps; n++) {
        /* sum_{k=1..n} kc[k] h[n-k] = sum_{k=1..n} kc[k] top[k-n] */
        const float *a = kc + 1, *b = top + 1 - n;
        v4f acc = {0};
        int k = 0;
        for (; k + 4 <= n; k += 4) acc += load4(a + k) * load4(b + k);
        float r = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (; k < n; k++) r += a[k] * b[k];
        top[-n] = h[n] = r * t->inv_n[n];
    }
}

static void envelope_frame(pf_envelope *st, const float *x, const float *cep, float *out) {
    const pf_tables *t = st->t;
    float *buf = st->buf;
    const int nh = st->n_hist, taps = st->taps;
    memcpy(buf + nh, x, PF_FRAME * sizeof(float));

    float target[PF_BANDS], lg[PF_BANDS];
    for (int b = 0; b < PF_BANDS; b++) {             /* the features' band energies (int16^2) + 1 */
        double logs = (cep[0] + t->c0_offset) * (double)t->dct[0][b];
        for (int i = 1; i < PF_BANDS; i++) logs += cep[i] * (double)t->dct[i][b];
        double e = exp((logs < 30.0 ? logs : 30.0) * 2.302585092994046) - 1.0;
        target[b] = (float)((e > 0.0 ? e : 0.0) + 1.0);
    }
    env_scratch sc;
    const float *last = buf + nh + PF_FRAME - PF_NFFT;
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < PF_NFFT; i++) sc.tmp[i] = last[i] * t->win[w][i];
        kiss_fftr(st->fwd, sc.tmp, sc.spec);
        for (int k = 0; k < PF_BINS; k++) sc.power[k] = sc.spec[k].r * sc.spec[k].r + sc.spec[k].i * sc.spec[k].i;
        for (int b = 0; b < PF_BANDS; b++) {
            float e = 0.0f;
            for (int k = t->band_lo[b]; k < t->band_hi[b]; k++) e += sc.power[k] * t->wpow[b][k];
            lg[b] = clampf(st->half_strength * logf(target[b] / (e + 1.0f)), st->lo, st->hi);
        }
        min_phase(st, lg, sc.h[w]);
    }
    /* both filters over the frame, then the cross-fade: blocks of 8 outputs, their sums in
     * SIMD registers across the taps (GCC/Clang vector types: SSE, NEON or scalar code) */
    const float *src = buf + PF_FRAME;               /* taps - 1 + PF_FRAME samples */
    for (int n0 = 0; n0 < PF_FRAME; n0 += 8) {
        v4f a0 = {0}, a1 = {0}, c0 = {0}, c1 = {0};
        for (int k = 0; k < taps; k++) {
            const float *s = src + taps - 1 - k + n0;
            const v4f s0 = load4(s), s1 = load4(s + 4);
            const v4f h0 = splat4(sc.h[0][k]), h1 = splat4(sc.h[1][k]);
            a0 += h0 * s0;
            a1 += h0 * s1;
            c0 += h1 * s0;
            c1 += h1 * s1;
        }
        const v4f r0 = load4(t->ramp + n0), r1 = load4(t->ramp + n0 + 4);
        store4(out + n0, a0 + r0 * (c0 - a0));
        store4(out + n0 + 4, a1 + r1 * (c1 - a1));
    }
    memmove(buf, buf + PF_FRAME, (size_t)nh * sizeof(float));
}

int pf_envelope_process(pf_envelope *st, const float *x, const float *feat, int feat_stride,
                        int n_frames, float *out) {
    if (n_frames < 0 || feat_stride < PF_BANDS) return PF_ERR_ARG;
    if (!all_finite(x, (size_t)n_frames * PF_FRAME) || !rows_finite(feat, feat_stride, PF_BANDS, n_frames))
        return PF_ERR_NONFINITE;
    for (int t = 0; t < n_frames; t++)
        envelope_frame(st, x + (size_t)t * PF_FRAME, feat + (size_t)t * feat_stride, out + (size_t)t * PF_FRAME);
    return PF_OK;
}

int pf_envelope_process_pcm(pf_envelope *st, const float *pcm, const float *feat, int feat_stride,
                            int n_frames, int16_t *out) {
    if (n_frames < 0 || feat_stride < PF_BANDS) return PF_ERR_ARG;
    if (!all_finite(pcm, (size_t)n_frames * PF_FRAME) || !rows_finite(feat, feat_stride, PF_BANDS, n_frames))
        return PF_ERR_NONFINITE;
    const float p = st->t->preemph, s = 1.0f / 32768.0f;
    float pe[PF_FRAME], e[PF_FRAME];
    for (int t = 0; t < n_frames; t++) {
        const float *x = pcm + (size_t)t * PF_FRAME;
        float xl = st->x_last;
        for (int n = 0; n < PF_FRAME; n++) {
            float v = x[n] * s;
            pe[n] = v - p * xl;
            xl = v;
        }
        st->x_last = xl;
        envelope_frame(st, pe, feat + (size_t)t * feat_stride, e);
        float y = st->y_last;
        for (int n = 0; n < PF_FRAME; n++) {
            y = e[n] + p * y;
            out[(size_t)t * PF_FRAME + n] = to_int16(y);
        }
        st->y_last = y;
    }
    return PF_OK;
}

int pf_envelope_history_len(const pf_envelope *st) { return st->n_hist; }

int pf_envelope_history(const pf_envelope *st, float *out, int n) {
    int m = n < st->n_hist ? n : st->n_hist;
    memcpy(out, st->buf + st->n_hist - m, (size_t)m * sizeof(float));
    return m;
}

/* --------------------------------------------------------------------- pitch */

pf_pitch *pf_pitch_new(const pf_tables *t, float strength) {
    if (!t || !(strength >= 0.0f && strength <= 1.0f)) return NULL;
    int nh = (int)t->pitch_max + 3;
    size_t total = sizeof(pf_pitch) + (size_t)(nh + PF_FRAME) * sizeof(float);
    pf_pitch *st = (pf_pitch *)calloc(1, total);
    if (!st) return NULL;
    st->t = t;
    st->strength = strength;
    st->n_hist = nh;
    st->bytes = total;
    pf_pitch_reset(st);
    return st;
}

void pf_pitch_free(pf_pitch *st) { free(st); }

size_t pf_pitch_bytes(const pf_pitch *st) { return st->bytes; }

void pf_pitch_reset(pf_pitch *st) {
    memset(st->buf, 0, (size_t)(st->n_hist + PF_FRAME) * sizeof(float));
    st->g = 0.0f;
    st->scale = 1.0f;
}

int pf_pitch_prime(pf_pitch *st, const float *hist, int n) {
    if (n < 0) return PF_ERR_ARG;
    if (!all_finite(hist, (size_t)n)) return PF_ERR_NONFINITE;
    pf_pitch_reset(st);
    int m = n < st->n_hist ? n : st->n_hist;
    memcpy(st->buf + st->n_hist - m, hist + n - m, (size_t)m * sizeof(float));
    return PF_OK;
}

static void pitch_frame(pf_pitch *st, const float *x, const float *f, float *out) {
    const pf_tables *t = st->t;
    float *buf = st->buf, s[PF_FRAME + 2], y[PF_FRAME];
    const int nh = st->n_hist;
    memcpy(buf + nh, x, PF_FRAME * sizeof(float));
    const float *cur = buf + nh;
    const float period = clampf(f[18], t->pitch_min, t->pitch_max);
    const int lag = (int)period;
    const float frac = period - (float)lag;
    /* the input lag + frac samples earlier (linear interpolation) at frame samples -1..160 */
    const float *p = cur - lag - 1;
    for (int j = 0; j < PF_FRAME + 2; j++) s[j] = (1.0f - frac) * p[j] + frac * p[j - 1];
    const float g = st->strength * clampf(f[19], 0.0f, 1.0f), g0 = st->g;
    double ex = 0.0, ey = 0.0;
    for (int n = 0; n < PF_FRAME; n++) {
        float d = 0.25f * s[n] + 0.5f * s[n + 1] + 0.25f * s[n + 2];   /* low-passed comb input */
        float v = cur[n] + (g0 + (g - g0) * t->ramp[n]) * d;
        y[n] = v;
        ex += (double)cur[n] * cur[n];
        ey += (double)v * v;
    }
    const float scale = (float)sqrt((ex + 1e-12) / (ey + 1e-12)), s0 = st->scale;
    for (int n = 0; n < PF_FRAME; n++) out[n] = y[n] * (s0 + (scale - s0) * t->ramp[n]);
    st->g = g;
    st->scale = scale;
    memmove(buf, buf + PF_FRAME, (size_t)nh * sizeof(float));
}

int pf_pitch_process(pf_pitch *st, const float *x, const float *feat, int feat_stride, int n_frames,
                     float *out) {
    if (n_frames < 0 || feat_stride < 20) return PF_ERR_ARG;
    if (!all_finite(x, (size_t)n_frames * PF_FRAME) || !rows_finite(feat, feat_stride, 20, n_frames))
        return PF_ERR_NONFINITE;
    for (int t = 0; t < n_frames; t++)
        pitch_frame(st, x + (size_t)t * PF_FRAME, feat + (size_t)t * feat_stride, out + (size_t)t * PF_FRAME);
    return PF_OK;
}

int pf_pitch_history_len(const pf_pitch *st) { return st->n_hist; }

int pf_pitch_history(const pf_pitch *st, float *out, int n) {
    int m = n < st->n_hist ? n : st->n_hist;
    memcpy(out, st->buf + st->n_hist - m, (size_t)m * sizeof(float));
    return m;
}

void pf_pitch_gains(const pf_pitch *st, float *g, float *scale) {
    *g = st->g;
    *scale = st->scale;
}

/* ---------------------------------------------------------------- de-emphasis */

int pf_deemphasis_int16(const float *e, int n_frames, float preemph, float *mem, float lo, float hi,
                        int16_t *out) {
    if (n_frames < 0) return PF_ERR_ARG;
    if (!all_finite(e, (size_t)n_frames * PF_FRAME) || !isfinite(*mem)) return PF_ERR_NONFINITE;
    float m = *mem;
    for (int t = 0; t < n_frames; t++) {
        for (int n = 0; n < PF_FRAME; n++) {
            m = e[(size_t)t * PF_FRAME + n] + preemph * m;
            out[(size_t)t * PF_FRAME + n] = to_int16(m);
        }
        m = clampf(m, lo, hi);
    }
    *mem = m;
    return PF_OK;
}
