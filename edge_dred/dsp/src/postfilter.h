/* The vocoder's postfilters (envelope, pitch comb) and de-emphasis, one call per packet.
 *
 * Float signal path, KISS FFT (float) for the 320-point real analysis transforms.  Every
 * stream owns one block (struct + FFT plans + history) allocated at creation;
 * processing allocates nothing.  The tables shared by all streams (windows, band
 * weights, DCT) come from Python once, so their definitions stay in one place
 * (edge_dred/dsp/features.py, edge_dred/dsp/postfilter.py).
 *
 * Signals are pre-emphasised and on the float scale (int16 / 32768), as in
 * postfilter.py.  Functions that take signal or features check them first and
 * return PF_ERR_NONFINITE without touching the state when any value is not finite.
 */
#ifndef EDGE_DRED_POSTFILTER_H
#define EDGE_DRED_POSTFILTER_H

#include <stddef.h>
#include <stdint.h>

#define PF_FRAME 160               /* one 10 ms feature frame */
#define PF_NFFT (2 * PF_FRAME)     /* the features' analysis window */
#define PF_BINS (PF_NFFT / 2 + 1)
#define PF_BANDS 18
#define PF_MAX_TAPS PF_FRAME

#define PF_OK 0
#define PF_ERR_NONFINITE (-1)
#define PF_ERR_ARG (-2)

/* Read-only after pf_tables_set; shared by every stream. */
typedef struct {
    float win[2][PF_NFFT];            /* analysis windows: the features' sine, the frame alone */
    float ramp[PF_FRAME];             /* (n + 0.5) / FRAME: cross-fades across a frame */
    float ceps[PF_BANDS][PF_MAX_TAPS];   /* band log-gain -> folded real cepstrum, first taps quefrencies */
    float inv_n[PF_MAX_TAPS];         /* 1 / n (0 at n = 0) */
    float wpow[PF_BANDS][PF_BINS];    /* bin power (float scale) -> band power (int16 scale) */
    int band_lo[PF_BANDS], band_hi[PF_BANDS];   /* non-zero bins of band b: [lo, hi) */
    float dct[PF_BANDS][PF_BANDS];    /* cepstrum -> log10 band energies: logs = c @ dct */
    float c0_offset;
    float pitch_min, pitch_max;
    float preemph;
} pf_tables;

/* Fill the tables (arrays row-major float64, the shapes above).  Returns PF_OK or PF_ERR_ARG. */
int pf_tables_set(pf_tables *t, const double *win, const double *ramp,
                  const double *ceps, const double *wpow, const double *dct, double c0_offset, double pitch_min,
                  double pitch_max, double preemph);

typedef struct pf_envelope pf_envelope;
typedef struct pf_pitch pf_pitch;

/* strength in [0, 1]; taps in [16, PF_MAX_TAPS]; the bounds in dB.  NULL on bad arguments or no memory. */
pf_envelope *pf_envelope_new(const pf_tables *t, int taps, float strength, float max_boost_db, float max_cut_db);
void pf_envelope_free(pf_envelope *st);
size_t pf_envelope_bytes(const pf_envelope *st);
void pf_envelope_reset(pf_envelope *st);
/* History from real signal (pre-emphasised, float scale), newest last. */
int pf_envelope_prime(pf_envelope *st, const float *hist, int n);
/* History from real PCM (int16 scale), newest last, for pf_envelope_process_pcm. */
int pf_envelope_prime_pcm(pf_envelope *st, const float *pcm, int n);
/* n_frames frames of x (PF_FRAME each) towards their features (first 18 values of each
 * row, rows feat_stride apart).  out may be x. */
int pf_envelope_process(pf_envelope *st, const float *x, const float *feat, int feat_stride,
                        int n_frames, float *out);
/* The same on plain PCM (int16 scale): pre-emphasis, filter, de-emphasis, round to int16. */
int pf_envelope_process_pcm(pf_envelope *st, const float *pcm, const float *feat, int feat_stride,
                            int n_frames, int16_t *out);
int pf_envelope_history(const pf_envelope *st, float *out, int n);   /* copies min(n, history) samples */
int pf_envelope_history_len(const pf_envelope *st);

/* strength in [0, 1].  NULL on bad arguments or no memory. */
pf_pitch *pf_pitch_new(const pf_tables *t, float strength);
void pf_pitch_free(pf_pitch *st);
size_t pf_pitch_bytes(const pf_pitch *st);
void pf_pitch_reset(pf_pitch *st);
int pf_pitch_prime(pf_pitch *st, const float *hist, int n);
/* feat rows hold the pitch period at [18] and the pitch correlation at [19].  out may be x. */
int pf_pitch_process(pf_pitch *st, const float *x, const float *feat, int feat_stride, int n_frames,
                     float *out);
int pf_pitch_history(const pf_pitch *st, float *out, int n);
int pf_pitch_history_len(const pf_pitch *st);
void pf_pitch_gains(const pf_pitch *st, float *g, float *scale);

/* De-emphasis of n_frames frames (float scale) continuing from *mem, rounded and saturated to
 * int16 (x 32768).  The memory carried from one frame to the next is clamped to [lo, hi]. */
int pf_deemphasis_int16(const float *e, int n_frames, float preemph, float *mem, float lo, float hi,
                        int16_t *out);

#endif
