/* Signal stage of the frame-parallel source-filter vocoder, one call per block of frames.
 *
 * Per 10 ms frame it takes the 20 features and the frame network's 130 outputs (two knots
 * of 32 + 32 log-magnitude corrections and a period correction, see
 * edge_dred/neural/fp_vocoder.py, the float64 reference of these maths) and returns 160
 * pre-emphasised output samples, 80 samples (5 ms) late: the call for frame i returns
 * samples [160 i - 80, 160 i + 80).
 *
 *   - filter design per knot: half the cepstral envelope + the voicing split + the network's
 *     corrections on the mel triangles (+ the noise normalisation for the noise filter),
 *     made minimum phase by the folded real cepstrum, tapered to FPS_IR_LEN taps;
 *   - harmonic excitation: a band-limited pulse train whose phase (cycles, double) sums the
 *     per-sample interpolated f0; noise excitation: the stream's own Gaussian generator,
 *     drawn FPS_NOISE_AHEAD samples ahead of the output;
 *   - each knot's filters applied by direct convolution (the reference's overlap-save, without the
 *     FFTs), cross-faded with a triangle per sample.
 *
 * Float32 signal path (the phase and pulse positions in double); KISS FFT (512 points) for the
 * impulse responses and the noise normalisation.  Every stream owns one
 * block allocated at creation (struct + FFT plans); processing allocates nothing.  The
 * tables shared by all streams come from Python once, so their definitions stay in one
 * place (edge_dred/neural/fp_vocoder.py, edge_dred/dsp/features.py).
 */
#ifndef EDGE_DRED_FP_SYNTHESIS_H
#define EDGE_DRED_FP_SYNTHESIS_H

#include <stddef.h>
#include <stdint.h>

#define FPS_FRAME 160
#define FPS_HOP 80                              /* knots every 5 ms */
#define FPS_NFFT 512
#define FPS_BINS (FPS_NFFT / 2 + 1)
#define FPS_SEG_OUT (2 * FPS_HOP)
#define FPS_IR_LEN (FPS_NFFT - FPS_SEG_OUT)     /* 352 taps */
#define FPS_EXC_HIST (FPS_NFFT - FPS_HOP)       /* 432 excitation samples of history */
#define FPS_PULSE_TAPS 32
#define FPS_NB_CORR 32
#define FPS_NB_BANDS 18
#define FPS_NB_FEATURES 20
#define FPS_NOISE_WIN (4 * FPS_HOP)
#define FPS_NOISE_AHEAD (FPS_NOISE_WIN / 2)
#define FPS_RAW (2 * (2 * FPS_NB_CORR + 1))     /* network outputs per frame */
#define FPS_PRIME_FRAMES 4
#define FPS_PHASE_CANDIDATES 32

#define FPS_OK 0
#define FPS_ERR_NONFINITE (-1)
#define FPS_ERR_ARG (-2)

/* Read-only after fps_tables_set; shared by every stream. */
typedef struct {
    float env[FPS_NB_BANDS][FPS_BINS];          /* log band energy -> log power per bin */
    int env_lo[FPS_NB_BANDS], env_hi[FPS_NB_BANDS];
    float corr[FPS_NB_CORR][FPS_BINS];          /* correction triangles (columns sum to 1) */
    float corr_avg[FPS_NB_CORR][FPS_BINS];      /* the same normalised to average over a band */
    float env_im[FPS_NB_BANDS][FPS_BINS];       /* the minimum phase of each envelope row (imaginary part */
    float corr_im[FPS_NB_CORR][FPS_BINS];       /* of the folded cepstrum's spectrum), and of each triangle */
    int corr_lo[FPS_NB_CORR], corr_hi[FPS_NB_CORR];
    float dct[FPS_NB_BANDS][FPS_NB_BANDS];      /* cepstrum -> log10 band energies: c @ dct */
    float taper[FPS_IR_LEN];                    /* minimum-phase IR taper (zero beyond) */
    float tri[FPS_SEG_OUT];                     /* a knot's cross-fade weight */
    float noise_win[FPS_NOISE_WIN];             /* noise normalisation window */
    float noise_win_power;                      /* sum of its squares */
    double c0_offset, ln_scale;                 /* cepstrum c0 offset; 2 ln 32768 */
    double pitch_min, pitch_max, voicing_floor, corr_max, dlogt_max, noise_floor, env_log10_max;
    double pulse_fc, pulse_beta, pulse_i0_beta; /* cutoff (cycles per sample), Kaiser beta, I0(beta) */
} fps_tables;

/* Fill the tables from float64 row-major arrays of the shapes above (env_im / corr_im: the minimum
 * phase of each env / corr row as a log-magnitude); scal = (c0_offset,
 * ln_scale, pitch_min, pitch_max, voicing_floor, corr_max, dlogt_max, noise_floor,
 * env_log10_max, pulse_fc, pulse_beta).  Returns FPS_OK or FPS_ERR_ARG. */
int fps_tables_set(fps_tables *t, const double *env, const double *env_im, const double *corr, const double *corr_im,
                   const double *dct, const double *taper, const double *tri, const double *noise_win,
                   const double *scal, int n_scal);

typedef struct fps_stream fps_stream;

fps_stream *fps_new(const fps_tables *t, uint64_t seed);   /* NULL on no memory */
void fps_free(fps_stream *st);
size_t fps_bytes(const fps_stream *st);
/* Silence before the stream: zero history, phase 0, the noise generator back at its seed. */
void fps_reset(fps_stream *st);

/* n frames: feat (n x 20, rows feat_stride apart), raw (n x FPS_RAW network outputs) ->
 * out (n x FPS_FRAME), pre-emphasised, float scale.  On non-finite input returns
 * FPS_ERR_NONFINITE without touching the state. */
int fps_process(fps_stream *st, const float *feat, int feat_stride, const float *raw, int n, float *out);

/* Continue from real audio (FPVocoderStream.prime): pcm_pe holds the last n_pcm >= 4 * 160
 * pre-emphasised real samples (newest last, ending with the last frame), feat/raw the last
 * n_frames >= FPS_PRIME_FRAMES frames' features and network outputs (the network having
 * run over them).  Searches the pulse phase whose harmonic re-synthesis of the last
 * FPS_PRIME_FRAMES frames best correlates with pcm_pe and keeps its excitation.  *score
 * gets that correlation. */
int fps_prime(fps_stream *st, const float *pcm_pe, int n_pcm, const float *feat, int feat_stride,
              const float *raw, int n_frames, float *score);

/* The first n values of the stream's noise sequence for a given seed (what a fresh stream
 * draws, in order): lets tests feed the float64 reference the same excitation. */
void fps_noise_sequence(uint64_t seed, float *out, int n);

#endif
