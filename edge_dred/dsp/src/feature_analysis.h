/* Streaming LPCNet-style feature analysis (cepstrum + pitch), one call per 10 ms frame.
 *
 * The definitions are those of edge_dred/dsp/features.py (its module docstring);
 * the tables and thresholds come from there too (edf_params), so they are defined
 * once.  The pitch path is computed in double precision with every sum in the
 * order of the reference, so the pitch features equal the reference bit for bit;
 * the spectrum uses KISS FFT in float (cepstrum within a few 1e-6 of the reference).
 *
 * Memory: everything is allocated by edf_new (the state and one FFT plan, about
 * 10 KB per stream); the per-frame calls allocate nothing (their scratch is on
 * the stack, about 14 KB).
 */
#ifndef EDGE_DRED_FEATURE_ANALYSIS_H
#define EDGE_DRED_FEATURE_ANALYSIS_H

#include <stdint.h>

#define EDF_FRAME 160                 /* samples per 10 ms frame */
#define EDF_WIN 320                   /* spectrum window */
#define EDF_BINS (EDF_WIN / 2 + 1)
#define EDF_BANDS 18
#define EDF_NFEAT 20
#define EDF_LP_TAPS 31
#define EDF_BUF16 600                 /* low-passed history each frame sees */
#define EDF_SEG8 160                  /* coarse segment at 8 kHz */
#define EDF_LAG8_MIN 15
#define EDF_LAG8_MAX 135
#define EDF_NLAG8 (EDF_LAG8_MAX - EDF_LAG8_MIN + 1)
#define EDF_SEG16 320                 /* fine segment at 16 kHz */
#define EDF_FINE_HALF 3
#define EDF_PITCH_MIN 32
#define EDF_PITCH_MAX 267

typedef struct {
    double preemphasis;
    double win_power;                 /* sum of the squared window */
    double energy_floor;              /* added before log10 */
    double max_range;                 /* decades below the loudest band */
    double follow_decay;              /* decades per band */
    double c0_offset;
    double reg;                       /* LSB^2 per sample in the ncc energies */
    double double_margin;
    double octave_ratio;
    double cont_window, cont_margin, jump_min, onset_min, voiced_threshold;
    double default_period;
    int octave_kmax;
    int cont_max_gap;
    double window[EDF_WIN];
    double band_w[EDF_BANDS][EDF_BINS];   /* per-band normalised weights */
    double dct[EDF_BANDS][EDF_BANDS];     /* orthonormal DCT-II, row = coefficient */
    double lowpass[EDF_LP_TAPS];
} edf_params;

typedef struct edf_state edf_state;

/* NULL when out of memory.  The state keeps a pointer to p: p must outlive it
 * (the tables are shared by every stream). */
edf_state *edf_new(const edf_params *p);
void edf_free(edf_state *st);
/* Forget all history, as if the stream restarted after zeros. */
void edf_reset(edf_state *st);
/* n_frames frames of int16 or (validated) int16-scale double samples -> out[n_frames][20]. */
void edf_process_i16(edf_state *st, const int16_t *x, long n_frames, float *out);
void edf_process_f64(edf_state *st, const double *x, long n_frames, float *out);
/* Frames whose features are not needed: kept as history (window, pitch buffers) for the frames
 * after them, not analysed; the pitch tracker's state stays where the last analysed frame left it. */
void edf_skip_f64(edf_state *st, const double *x, long n_frames);
/* Bytes held per stream (state and FFT plan). */
long edf_state_bytes(const edf_state *st);

/* The pitch correlations on AVX where the CPU has it (allow = 1, the default) or on the baseline
 * vectors (allow = 0; tests compare the two). Returns whether AVX is used now. */
int edf_wide_vectors(int allow);

#endif
