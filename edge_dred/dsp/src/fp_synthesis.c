/* Signal stage of the frame-parallel vocoder (see fp_synthesis.h and edge_dred/neural/fp_vocoder.py). */
#include "fp_synthesis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiss_fftr.h"

#define FPS_ALIGN 16
#define ALIGN_UP(n) (((n) + (FPS_ALIGN - 1)) & ~(size_t)(FPS_ALIGN - 1))
#define NQ (FPS_FRAME + FPS_NOISE_AHEAD)        /* noise over [160 i - 80, 160 i + 240) */
#define NB_SCAL 11
static const double PI = 3.14159265358979323846;
_Static_assert(FPS_FRAME == 2 * FPS_HOP, "two knots per frame");
_Static_assert(NQ == 2 * FPS_FRAME, "the noise queue holds two frames");

typedef struct {
    float h[FPS_IR_LEN];                        /* harmonic filter: tapered minimum-phase impulse response */
    float n[FPS_IR_LEN];                        /* noise filter */
    double f0;                                  /* cycles per sample */
} knot;

struct fps_stream {
    const fps_tables *t;
    uint64_t seed, rng;
    int has_spare, has_knot;
    float spare;
    double cycles;                              /* pulse phase (cycles) at the next frame's first sample */
    size_t bytes;
    kiss_fftr_cfg fwd, inv;
    knot last;                                  /* the previous frame's second knot */
    float pulse_tail[FPS_PULSE_TAPS];
    float exc_h[FPS_EXC_HIST], exc_n[FPS_EXC_HIST];
    float nq[NQ];                               /* noise from the next output sample on; the first 160 drawn */
};

/* One frame's scratch, on the stack (about 21 KB). */
typedef struct {
    float env_re[FPS_BINS], env_im[FPS_BINS];   /* the envelope's part of the minimum-phase log spectrum */
    float re[FPS_BINS], im[FPS_BINS];           /* one filter's log spectrum: ln-magnitude, phase */
    float tmp[FPS_NFFT];
    float seg[2][FPS_EXC_HIST + FPS_FRAME];     /* harmonic / noise excitation: 432 history + the frame */
    kiss_fft_cpx a[FPS_BINS], b[FPS_BINS];
    knot k[2];
} frame_scratch;

/* ------------------------------------------------------------------ helpers */

typedef float v4f __attribute__((vector_size(16)));   /* SSE / NEON through the compiler */

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof(v)); }

static inline v4f splat4(float x) { return (v4f){x, x, x, x}; }

#define ROW_BLOCK 16
_Static_assert((FPS_BINS - 1) % ROW_BLOCK == 0, "257 bins: whole blocks and one more");

/* acc[q] += sum_b g[b] rows[b][q] over all bins (b ascending for every q), blocks of 16 bins in registers. */
static void add_rows(const float (*rows)[FPS_BINS], const float *g, int n, float *acc) {
    for (int q0 = 0; q0 + ROW_BLOCK <= FPS_BINS; q0 += ROW_BLOCK) {
        v4f a0 = load4(acc + q0), a1 = load4(acc + q0 + 4), a2 = load4(acc + q0 + 8), a3 = load4(acc + q0 + 12);
        for (int b = 0; b < n; b++) {
            const float *r = rows[b] + q0;
            const v4f c = splat4(g[b]);
            a0 += c * load4(r);
            a1 += c * load4(r + 4);
            a2 += c * load4(r + 8);
            a3 += c * load4(r + 12);
        }
        store4(acc + q0, a0), store4(acc + q0 + 4, a1), store4(acc + q0 + 8, a2), store4(acc + q0 + 12, a3);
    }
    for (int b = 0; b < n; b++) acc[FPS_BINS - 1] += g[b] * rows[b][FPS_BINS - 1];
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

static int band_range(const double *w, int *lo, int *hi) {
    int l = FPS_BINS, h = 0;
    for (int k = 0; k < FPS_BINS; k++)
        if (w[k] != 0.0) {
            if (k < l) l = k;
            h = k + 1;
        }
    *lo = l < h ? l : 0;
    *hi = h;
    return h > 0;
}

int fps_tables_set(fps_tables *t, const double *env, const double *env_im, const double *corr, const double *corr_im,
                   const double *dct, const double *taper, const double *tri, const double *noise_win,
                   const double *scal, int n_scal) {
    if (n_scal != NB_SCAL) return FPS_ERR_ARG;
    for (int b = 0; b < FPS_NB_BANDS; b++) {
        for (int k = 0; k < FPS_BINS; k++) {
            t->env[b][k] = (float)env[b * FPS_BINS + k];
            t->env_im[b][k] = (float)env_im[b * FPS_BINS + k];
        }
        band_range(env + b * FPS_BINS, &t->env_lo[b], &t->env_hi[b]);
        for (int i = 0; i < FPS_NB_BANDS; i++) t->dct[b][i] = (float)dct[b * FPS_NB_BANDS + i];
    }
    for (int b = 0; b < FPS_NB_CORR; b++) {
        const double *w = corr + b * FPS_BINS;
        double s = 0.0;
        for (int k = 0; k < FPS_BINS; k++) s += w[k];
        if (!(s > 0.0) || !band_range(w, &t->corr_lo[b], &t->corr_hi[b])) return FPS_ERR_ARG;
        for (int k = 0; k < FPS_BINS; k++) {
            t->corr[b][k] = (float)w[k];
            t->corr_im[b][k] = (float)corr_im[b * FPS_BINS + k];
            t->corr_avg[b][k] = (float)(w[k] / s);
        }
    }
    for (int i = 0; i < FPS_IR_LEN; i++) t->taper[i] = (float)taper[i];
    for (int i = 0; i < FPS_SEG_OUT; i++) t->tri[i] = (float)tri[i];
    double p = 0.0;
    for (int i = 0; i < FPS_NOISE_WIN; i++) {
        t->noise_win[i] = (float)noise_win[i];
        p += noise_win[i] * noise_win[i];
    }
    t->noise_win_power = (float)p;
    t->c0_offset = scal[0];
    t->ln_scale = scal[1];
    t->pitch_min = scal[2];
    t->pitch_max = scal[3];
    t->voicing_floor = scal[4];
    t->corr_max = scal[5];
    t->dlogt_max = scal[6];
    t->noise_floor = scal[7];
    t->env_log10_max = scal[8];
    t->pulse_fc = scal[9];
    t->pulse_beta = scal[10];
    if (!(t->pitch_min >= 2.0 && t->pitch_max >= t->pitch_min && t->voicing_floor > 0.0 && t->voicing_floor < 0.5
          && t->noise_floor > 0.0 && t->pulse_fc > 0.0 && t->pulse_fc < 0.5 && t->pulse_beta > 0.0
          && t->dlogt_max >= 0.0 && t->dlogt_max < 1.0 && t->corr_max > 0.0))
        return FPS_ERR_ARG;
    /* I0 by its power series (converges fast for the small betas a Kaiser window uses) */
    double x = 0.25 * t->pulse_beta * t->pulse_beta, term = 1.0, sum = 1.0;
    for (int k = 1; k < 60; k++) {
        term *= x / ((double)k * k);
        sum += term;
    }
    t->pulse_i0_beta = sum;
    return FPS_OK;
}

static double bessel_i0(double v) {
    double x = 0.25 * v * v, term = 1.0, sum = 1.0;
    for (int k = 1; k < 60 && term > 1e-17 * sum; k++) {
        term *= x / ((double)k * k);
        sum += term;
    }
    return sum;
}

/* ------------------------------------------------------------------ noise */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Standard normal, Box-Muller in pairs (the second value is kept for the next draw). */
static float gauss(uint64_t *s, int *has_spare, float *spare) {
    if (*has_spare) {
        *has_spare = 0;
        return *spare;
    }
    uint64_t r = splitmix64(s);
    const float u1 = (float)((r >> 40) + 1) * (1.0f / 16777216.0f);      /* (0, 1] */
    const float u2 = (float)((r >> 16) & 0xFFFFFF) * (1.0f / 16777216.0f);
    const float m = sqrtf(-2.0f * logf(u1));
    const float a = 6.283185307179586f * u2;
    *spare = m * sinf(a);
    *has_spare = 1;
    return m * cosf(a);
}

static void draw(fps_stream *st, float *out, int n) {
    for (int i = 0; i < n; i++) out[i] = gauss(&st->rng, &st->has_spare, &st->spare);
}

void fps_noise_sequence(uint64_t seed, float *out, int n) {
    uint64_t s = seed;
    int has = 0;
    float sp = 0.0f;
    for (int i = 0; i < n; i++) out[i] = gauss(&s, &has, &sp);
}

/* ------------------------------------------------------------------ stream */

fps_stream *fps_new(const fps_tables *t, uint64_t seed) {
    if (!t) return NULL;
    size_t n_fwd = 0, n_inv = 0;
    kiss_fftr_alloc(FPS_NFFT, 0, NULL, &n_fwd);
    kiss_fftr_alloc(FPS_NFFT, 1, NULL, &n_inv);
    size_t head = ALIGN_UP(sizeof(fps_stream));
    size_t total = head + ALIGN_UP(n_fwd) + ALIGN_UP(n_inv);
    char *mem = (char *)calloc(1, total);
    if (!mem) return NULL;
    fps_stream *st = (fps_stream *)mem;
    st->t = t;
    st->seed = seed;
    st->bytes = total;
    st->fwd = kiss_fftr_alloc(FPS_NFFT, 0, mem + head, &n_fwd);
    st->inv = kiss_fftr_alloc(FPS_NFFT, 1, mem + head + ALIGN_UP(n_fwd), &n_inv);
    if (!st->fwd || !st->inv) {
        free(mem);
        return NULL;
    }
    fps_reset(st);
    return st;
}

void fps_free(fps_stream *st) { free(st); }

size_t fps_bytes(const fps_stream *st) { return st->bytes; }

void fps_reset(fps_stream *st) {
    st->rng = st->seed;
    st->has_spare = 0;
    st->spare = 0.0f;
    st->has_knot = 0;
    st->cycles = 0.0;
    memset(&st->last, 0, sizeof(st->last));
    memset(st->pulse_tail, 0, sizeof(st->pulse_tail));
    memset(st->exc_h, 0, sizeof(st->exc_h));
    memset(st->exc_n, 0, sizeof(st->exc_n));
    /* the 80 samples before the stream are silent; the next 80 are the first drawn */
    memset(st->nq, 0, sizeof(st->nq));
    draw(st, st->nq + FPS_HOP, FPS_HOP);
}

/* ------------------------------------------------------------------ filters */

/* Log spectrum (re = ln|H|, im = its minimum phase) -> the impulse response tapered to FPS_IR_LEN taps. */
static void min_phase(const fps_stream *st, frame_scratch *w, const float *re, const float *im, float *ir) {
    const fps_tables *t = st->t;
    kiss_fft_cpx *s = w->a;
    float *c = w->tmp;
    const float one = 1.0f / FPS_NFFT;
    for (int k = 0; k < FPS_BINS; k++) {
        const float m = expf(re[k]) * one;
        s[k].r = m * cosf(im[k]);
        s[k].i = m * sinf(im[k]);
    }
    kiss_fftri(st->inv, s, c);
    for (int i = 0; i < FPS_IR_LEN; i++) ir[i] = c[i] * t->taper[i];
}

/* Band gains (ln-magnitude per correction triangle, added to g) dividing out the realised band
 * powers of the noise seg (FPS_NOISE_WIN). */
static void noise_normalisation(const fps_stream *st, frame_scratch *w, const float *seg, float *g) {
    const fps_tables *t = st->t;
    float *x = w->tmp;
    kiss_fft_cpx *s = w->b;
    for (int i = 0; i < FPS_NOISE_WIN; i++) x[i] = seg[i] * t->noise_win[i];
    memset(x + FPS_NOISE_WIN, 0, (FPS_NFFT - FPS_NOISE_WIN) * sizeof(float));
    kiss_fftr(st->fwd, x, s);
    float p[FPS_BINS];
    for (int k = 0; k < FPS_BINS; k++) p[k] = s[k].r * s[k].r + s[k].i * s[k].i;
    const float fl = (float)t->noise_floor, inv = 1.0f / t->noise_win_power;
    for (int b = 0; b < FPS_NB_CORR; b++) {
        float r = 0.0f;
        for (int k = t->corr_lo[b]; k < t->corr_hi[b]; k++) r += p[k] * t->corr_avg[b][k];
        r *= inv;
        g[b] += -0.5f * logf(r > fl ? r : fl);
    }
}

/* Half the log envelope the cepstrum of feat describes, per bin, and its minimum phase. */
static void envelope(const fps_tables *t, const float *feat, float *re, float *im) {
    float g[FPS_NB_BANDS];
    const float ln10 = 2.302585092994046f, sc = (float)t->ln_scale;
    for (int b = 0; b < FPS_NB_BANDS; b++) {
        double a = t->c0_offset * t->dct[0][b];
        for (int i = 0; i < FPS_NB_BANDS; i++) a += (double)feat[i] * t->dct[i][b];
        const float l = (float)(a < t->env_log10_max ? a : t->env_log10_max);
        g[b] = 0.5f * (l * ln10 - sc);
    }
    memset(re, 0, FPS_BINS * sizeof(float));
    memset(im, 0, FPS_BINS * sizeof(float));
    for (int b = 0; b < FPS_NB_BANDS; b++)
        for (int k = t->env_lo[b]; k < t->env_hi[b]; k++) re[k] += g[b] * t->env[b][k];
    add_rows(t->env_im, g, FPS_NB_BANDS, im);
}

/* The two knots of a frame from its features and network outputs.  seg0/seg1 (FPS_NOISE_WIN each,
 * NULL: no normalisation) are the noise around each knot; j0 = 1: the second knot only;
 * harmonic_only: leave the noise filters alone.  The log spectra are linear in the band gains:
 * the real part spreads them with the (sparse) triangles, the minimum phase with the triangles'
 * tabled phase responses, so each filter costs two FFTs. */
static void make_knots(const fps_stream *st, frame_scratch *w, const float *feat, const float *raw,
                       const float *seg0, const float *seg1, int j0, int harmonic_only, knot *k) {
    const fps_tables *t = st->t;
    envelope(t, feat, w->env_re, w->env_im);
    const double v = clampd((double)feat[19], t->voicing_floor, 1.0 - t->voicing_floor);
    const float bh = (float)(0.5 * log(v)), bn = (float)(0.5 * log(1.0 - v));
    const double period = clampd((double)feat[18], t->pitch_min, t->pitch_max);
    const float cm = (float)t->corr_max, icm = (float)(1.0 / t->corr_max);
    for (int j = j0; j < 2; j++) {
        const float *r = raw + j * (2 * FPS_NB_CORR + 1);
        for (int f = 0; f < 2; f++) {
            if (f == 1 && harmonic_only) break;
            const float base = f ? bn : bh;
            float g[FPS_NB_CORR];
            for (int b = 0; b < FPS_NB_CORR; b++) g[b] = cm * tanhf(r[f * FPS_NB_CORR + b] * icm);
            const float *seg = j ? seg1 : seg0;
            if (f == 1 && seg) noise_normalisation(st, w, seg, g);
            float *re = w->re, *im = w->im;
            for (int q = 0; q < FPS_BINS; q++) {
                re[q] = w->env_re[q] + base;
                im[q] = w->env_im[q];
            }
            for (int b = 0; b < FPS_NB_CORR; b++) {
                const float gb = g[b];
                for (int q = t->corr_lo[b]; q < t->corr_hi[b]; q++) re[q] += gb * t->corr[b][q];
            }
            add_rows(t->corr_im, g, FPS_NB_CORR, im);
            min_phase(st, w, re, im, f ? k[j].n : k[j].h);
        }
        k[j].f0 = 1.0 / (period * exp(t->dlogt_max * tanh((double)r[2 * FPS_NB_CORR])));
    }
}

/* ------------------------------------------------------------------ excitation */

/* Pulse taps for a crossing at n - 1 + frac, tap d landing on sample n + d, times amp. */
static void pulse(const fps_tables *t, double frac, double amp, float *dst) {
    const double half = FPS_PULSE_TAPS / 2, fc2 = 2.0 * t->pulse_fc;
    const double norm = fc2 * amp / t->pulse_i0_beta;
    for (int d = 0; d < FPS_PULSE_TAPS; d++) {
        const double s = d + 1.0 - frac - half;
        double r = s / half;
        r = r < -1.0 ? -1.0 : (r > 1.0 ? 1.0 : r);
        const double x = fc2 * s;
        const double sinc = x == 0.0 ? 1.0 : sin(PI * x) / (PI * x);
        double q = 1.0 - r * r;
        q = q > 1e-6 ? q : 1e-6;
        dst[d] += (float)(norm * sinc * bessel_i0(t->pulse_beta * sqrt(q)));
    }
}

/* Pulse train over one frame for knot f0s at offsets 0, 80, 160; samples before start stay silent
 * and do not advance the phase.  buf (FPS_FRAME + FPS_PULSE_TAPS) starts with the previous tail. */
static double excitation(const fps_tables *t, const double f0k[3], double cyc, int start, float *buf) {
    memset(buf + FPS_PULSE_TAPS, 0, FPS_FRAME * sizeof(float));
    for (int n = start; n < FPS_FRAME; n++) {
        const int j = n / FPS_HOP;
        const double a = (double)(n % FPS_HOP) / FPS_HOP;
        const double f0 = f0k[j] * (1.0 - a) + f0k[j + 1] * a;
        const double prev = cyc;
        cyc += f0;
        if (floor(cyc) > floor(prev)) {
            const double tau = (floor(cyc) - prev) / (cyc - prev);
            pulse(t, tau, sqrt(1.0 / f0), buf + n);
        }
    }
    return cyc;
}

#define CONV_BLOCK 16
_Static_assert(FPS_HOP % CONV_BLOCK == 0, "whole blocks of outputs");

/* a[j] += sum_d ia[d] x[j - d], b[j] += sum_d ib[d] x[j - d] for j < FPS_HOP (x[1 - FPS_IR_LEN] must
 * exist): blocks of 16 outputs of both filters in 8 vector accumulators, one pass over the taps. */
static void convolve2(const float *ia, const float *ib, const float *x, float *a, float *b) {
    for (int j0 = 0; j0 < FPS_HOP; j0 += CONV_BLOCK) {
        v4f a0 = load4(a + j0), a1 = load4(a + j0 + 4), a2 = load4(a + j0 + 8), a3 = load4(a + j0 + 12);
        v4f b0 = load4(b + j0), b1 = load4(b + j0 + 4), b2 = load4(b + j0 + 8), b3 = load4(b + j0 + 12);
        for (int d = 0; d < FPS_IR_LEN; d++) {
            const float *xs = x + j0 - d;
            const v4f x0 = load4(xs), x1 = load4(xs + 4), x2 = load4(xs + 8), x3 = load4(xs + 12);
            const v4f ca = splat4(ia[d]), cb = splat4(ib[d]);
            a0 += ca * x0;
            a1 += ca * x1;
            a2 += ca * x2;
            a3 += ca * x3;
            b0 += cb * x0;
            b1 += cb * x1;
            b2 += cb * x2;
            b3 += cb * x3;
        }
        store4(a + j0, a0), store4(a + j0 + 4, a1), store4(a + j0 + 8, a2), store4(a + j0 + 12, a3);
        store4(b + j0, b0), store4(b + j0 + 4, b1), store4(b + j0 + 8, b2), store4(b + j0 + 12, b3);
    }
}

/* One frame of output from excitation eh / en (FPS_EXC_HIST history + FPS_FRAME samples; en NULL:
 * harmonic only) and the three knot filters: each output sample is the cross-fade of the
 * excitation filtered by the knots on either side.  The reference does this by overlap-save
 * (FFT 512, a segment per knot); here the 80 samples of each half-frame are direct convolutions
 * with the tapered impulse responses, which need no future excitation and no FFTs. */
static void filter_frame(const fps_stream *st, const float *eh, const float *en, const knot *k0, const knot *k1,
                         const knot *k2, float *out) {
    const float *tri = st->t->tri;
    const knot *ks[3] = {k0, k1, k2};
    for (int half = 0; half < 2; half++) {
        const int p = FPS_EXC_HIST + half * FPS_HOP;
        float a[FPS_HOP] = {0}, b[FPS_HOP] = {0};   /* the knot before / after these samples */
        convolve2(ks[half]->h, ks[half + 1]->h, eh + p, a, b);
        if (en) convolve2(ks[half]->n, ks[half + 1]->n, en + p, a, b);
        for (int j = 0; j < FPS_HOP; j++) out[half * FPS_HOP + j] = a[j] * tri[FPS_HOP + j] + b[j] * tri[j];
    }
}

static void frame(fps_stream *st, frame_scratch *w, const float *feat, const float *raw, float *out) {
    /* noise over [160 i - 80, 160 i + 240): the queue's first 160 are drawn, draw the next 160 */
    draw(st, st->nq + FPS_FRAME, FPS_FRAME);
    float span[FPS_HOP + NQ];                   /* from 160 i - 160 */
    memcpy(span, st->exc_n + FPS_EXC_HIST - FPS_HOP, FPS_HOP * sizeof(float));
    memcpy(span + FPS_HOP, st->nq, NQ * sizeof(float));
    make_knots(st, w, feat, raw, span, span + FPS_HOP, 0, 0, w->k);
    const int first = !st->has_knot;
    const knot *k0 = first ? &w->k[0] : &st->last;
    const double f0k[3] = {k0->f0, w->k[0].f0, w->k[1].f0};

    float *eh = w->seg[0], *en = w->seg[1];
    float buf[FPS_FRAME + FPS_PULSE_TAPS];      /* the previous tail, then this frame's pulses */
    memcpy(buf, st->pulse_tail, sizeof(st->pulse_tail));
    st->cycles = excitation(st->t, f0k, st->cycles, first ? FPS_HOP : 0, buf);
    memcpy(eh, st->exc_h, FPS_EXC_HIST * sizeof(float));
    memcpy(eh + FPS_EXC_HIST, buf, FPS_FRAME * sizeof(float));
    memcpy(st->pulse_tail, buf + FPS_FRAME, sizeof(st->pulse_tail));
    memcpy(en, st->exc_n, FPS_EXC_HIST * sizeof(float));
    memcpy(en + FPS_EXC_HIST, st->nq, FPS_FRAME * sizeof(float));

    filter_frame(st, eh, en, k0, &w->k[0], &w->k[1], out);

    memcpy(st->exc_h, eh + FPS_FRAME, FPS_EXC_HIST * sizeof(float));
    memcpy(st->exc_n, en + FPS_FRAME, FPS_EXC_HIST * sizeof(float));
    memmove(st->nq, st->nq + FPS_FRAME, FPS_FRAME * sizeof(float));
    st->last = w->k[1];
    st->has_knot = 1;
}

int fps_process(fps_stream *st, const float *feat, int feat_stride, const float *raw, int n, float *out) {
    if (n < 0 || feat_stride < FPS_NB_FEATURES) return FPS_ERR_ARG;
    for (int i = 0; i < n; i++)
        if (!all_finite(feat + (size_t)i * feat_stride, FPS_NB_FEATURES)) return FPS_ERR_NONFINITE;
    if (!all_finite(raw, (size_t)n * FPS_RAW)) return FPS_ERR_NONFINITE;
    frame_scratch w;
    for (int i = 0; i < n; i++)
        frame(st, &w, feat + (size_t)i * feat_stride, raw + (size_t)i * FPS_RAW, out + (size_t)i * FPS_FRAME);
    return FPS_OK;
}

/* ------------------------------------------------------------------ continuation */

/* Harmonic re-synthesis of the priming frames from phase c; returns the correlation of the last
 * two frames with target (2 * FPS_FRAME) and leaves the end phase, pulse tail and excitation history. */
static double try_phase(const fps_stream *st, frame_scratch *w, const knot *kn, double c, const float *target,
                        double *cyc_out, float *tail, float *hist) {
    const fps_tables *t = st->t;
    float *eh = w->seg[0];
    float buf[FPS_FRAME + FPS_PULSE_TAPS];
    float y[2 * FPS_FRAME];
    double cyc = c;
    memset(tail, 0, FPS_PULSE_TAPS * sizeof(float));
    memset(hist, 0, FPS_EXC_HIST * sizeof(float));
    for (int m = 0; m < FPS_PRIME_FRAMES; m++) {
        const knot *k0 = &kn[2 * m], *k1 = &kn[2 * m + 1], *k2 = &kn[2 * m + 2];
        const double f0k[3] = {k0->f0, k1->f0, k2->f0};
        memcpy(buf, tail, FPS_PULSE_TAPS * sizeof(float));
        cyc = excitation(t, f0k, cyc, 0, buf);
        memcpy(tail, buf + FPS_FRAME, FPS_PULSE_TAPS * sizeof(float));
        memcpy(eh, hist, FPS_EXC_HIST * sizeof(float));
        memcpy(eh + FPS_EXC_HIST, buf, FPS_FRAME * sizeof(float));
            if (m >= FPS_PRIME_FRAMES - 2)        /* only the last two frames are scored */
            filter_frame(st, eh, NULL, k0, k1, k2, y + (m - FPS_PRIME_FRAMES + 2) * FPS_FRAME);
        memcpy(hist, eh + FPS_FRAME, FPS_EXC_HIST * sizeof(float));
    }
    double yt = 0.0, yy = 0.0, tt = 0.0;
    for (int i = 0; i < 2 * FPS_FRAME; i++) {
        yt += (double)y[i] * target[i];
        yy += (double)y[i] * y[i];
        tt += (double)target[i] * target[i];
    }
    *cyc_out = cyc;
    return yt / (sqrt(yy) * sqrt(tt) + 1e-12);
}

int fps_prime(fps_stream *st, const float *pcm_pe, int n_pcm, const float *feat, int feat_stride,
              const float *raw, int n_frames, float *score) {
    if (n_frames < FPS_PRIME_FRAMES || n_pcm < FPS_PRIME_FRAMES * FPS_FRAME || feat_stride < FPS_NB_FEATURES)
        return FPS_ERR_ARG;
    for (int i = 0; i < n_frames; i++)
        if (!all_finite(feat + (size_t)i * feat_stride, FPS_NB_FEATURES)) return FPS_ERR_NONFINITE;
    if (!all_finite(raw, (size_t)n_frames * FPS_RAW) || !all_finite(pcm_pe, (size_t)n_pcm)) return FPS_ERR_NONFINITE;
    frame_scratch w;
    knot kn[2 * FPS_PRIME_FRAMES + 1];        /* the knot before the priming frames, then theirs (about 25 KB) */
    const int p0 = n_frames - FPS_PRIME_FRAMES;
    for (int m = 0; m < FPS_PRIME_FRAMES; m++) {
        const int i = p0 + m;
        make_knots(st, &w, feat + (size_t)i * feat_stride, raw + (size_t)i * FPS_RAW, NULL, NULL, 0, 1, w.k);
        kn[2 * m + 1] = w.k[0];
        kn[2 * m + 2] = w.k[1];
    }
    if (p0 > 0) {                               /* older frames only set the knot before */
        make_knots(st, &w, feat + (size_t)(p0 - 1) * feat_stride, raw + (size_t)(p0 - 1) * FPS_RAW, NULL, NULL, 1, 1,
                   w.k);
        kn[0] = w.k[1];
    } else {
        kn[0] = st->has_knot ? st->last : kn[1];
    }
    const float *target = pcm_pe + n_pcm - 2 * FPS_FRAME - FPS_HOP;
    double scores[FPS_PHASE_CANDIDATES], cyc;
    float tail[FPS_PULSE_TAPS], hist[FPS_EXC_HIST];
    int b = 0;
    for (int c = 0; c < FPS_PHASE_CANDIDATES; c++) {
        scores[c] = try_phase(st, &w, kn, (double)c / FPS_PHASE_CANDIDATES, target, &cyc, tail, hist);
        if (scores[c] > scores[b]) b = c;
    }
    const double lo = scores[(b + FPS_PHASE_CANDIDATES - 1) % FPS_PHASE_CANDIDATES];
    const double hi = scores[(b + 1) % FPS_PHASE_CANDIDATES];
    const double den = lo - 2.0 * scores[b] + hi;
    double best_c = (double)b / FPS_PHASE_CANDIDATES, best = scores[b];
    if (den < 0.0) {                            /* parabola through the neighbours: sub-candidate phase */
        const double fine_c = (b + 0.5 * (lo - hi) / den) / FPS_PHASE_CANDIDATES;
        const double fine = try_phase(st, &w, kn, fine_c, target, &cyc, tail, hist);
        if (fine > best) {
            best = fine;
            best_c = fine_c;
        }
    }
    try_phase(st, &w, kn, best_c, target, &cyc, tail, hist);
    st->cycles = cyc;
    memcpy(st->pulse_tail, tail, sizeof(tail));
    memcpy(st->exc_h, hist, sizeof(hist));
    draw(st, st->exc_n, FPS_EXC_HIST);
    draw(st, st->nq, FPS_FRAME);
    /* the last knot filters new noise: normalise it for that noise (both knots see the same window) */
    float span[FPS_NOISE_WIN];
    memcpy(span, st->exc_n + FPS_EXC_HIST - FPS_FRAME, FPS_FRAME * sizeof(float));
    memcpy(span + FPS_FRAME, st->nq, FPS_FRAME * sizeof(float));
    const int last = n_frames - 1;
    make_knots(st, &w, feat + (size_t)last * feat_stride, raw + (size_t)last * FPS_RAW, span, span, 1, 0, w.k);
    st->last = w.k[1];
    st->has_knot = 1;
    if (score) *score = (float)best;
    return FPS_OK;
}
