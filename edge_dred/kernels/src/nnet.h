/* edge-dred neural-network kernels: public C interface.
 *
 * One kernel source (nnet_impl.h) is compiled once per variant listed in
 * variants.h (nnet_<name>.c: the template over its ISA's simd_*.h); each
 * compilation exports a ck_kernels function table ck_kernels_<name>.
 * dispatch.c picks a table at run time from the CPU features.
 *
 * Weight layouts (rows padded to a multiple of 8 with zeros):
 *   float  : for each group of 8 rows, for each column c, the 8 weights
 *            W[8g+0..7][c]  (so a vector load covers 8 outputs).
 *   int8   : cols padded to a multiple of 4; for each group of 8 rows, for
 *            each block of 4 columns, 32 bytes: row 8g+0 cols 4j..4j+3, then
 *            row 8g+1, ... row 8g+7 ("8x4 blocks").
 *   sparse : the same 8x4 blocks, only the non-zero ones, in order; idx holds
 *            for each row group: count, then count column offsets (4j).
 * int8 products: y[r] = scale[r] * xs * sum_c q[r][c] * xq[c] where xq is the
 * input quantized to [-127, 127] with step xs. Weights must lie in [-127, 127]
 * (the x86 sign trick cannot negate -128) and adjacent column pairs (2m, 2m+1)
 * must satisfy (|q_a|+|q_b|)*127 <= 32767 (the NEON path sums such pairs in
 * 16-bit lanes); the Python layer checks both.
 */
#ifndef CK_NNET_H
#define CK_NNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Activations. */
enum { CK_ACT_NONE = 0, CK_ACT_TANH = 1, CK_ACT_SIGMOID = 2, CK_ACT_RELU = 3, CK_ACT_EXP = 4 };

/* Weight storage kinds of a ck_linear. */
enum { CK_W_FLOAT = 1, CK_W_INT8 = 2, CK_W_SPARSE = 3 };

/* Network op types. */
enum {
    CK_OP_DENSE = 1,  /* out = act(W x + b) */
    CK_OP_GRU = 2,    /* state h (the out slice) updated in place, torch reset-after GRU */
    CK_OP_CONV1D = 3, /* causal conv over time through a history buffer */
    CK_OP_GLU = 4,    /* out = x * sigmoid(W x + b) */
    CK_OP_ACT = 5,    /* out = act(x) */
    CK_OP_MUL = 6,    /* out = in0 * in1 (elementwise, equal lengths; or in1 of length 1: scalar) */
    CK_OP_ADD = 7,    /* out = in0 + in1 */
    CK_OP_LAG = 8,    /* out[j] = s * h[H - L + j - lag_pre] from a history h (pitch-lag gather):
                       * inputs h (length H), L (length 1, rounded, clamped to [lag_min, lag_max])
                       * and optionally s (length 1, else 1); taps at or past H wrap back by L */
    CK_OP_SHIFT = 9   /* history push: out <- [out[n:], x], x = concat(inputs) of length n <= len(out) */
};

/* Error codes returned by validation / run functions. */
enum {
    CK_OK = 0,
    CK_ERR_SHAPE = -1,
    CK_ERR_INDEX = -2,
    CK_ERR_SCRATCH = -3,
    CK_ERR_SLICE = -4,
    CK_ERR_OP = -5,
    CK_ERR_UNKNOWN_VARIANT = -10,
    CK_ERR_NOT_COMPILED = -11,
    CK_ERR_UNSUPPORTED_CPU = -12
};

#define CK_MAX_INPUTS 8

/* A matrix-vector product y = W x (+ bias) (+ diag[r] * x[r % cols]). */
typedef struct ck_linear {
    int kind;            /* CK_W_* */
    int rows, cols;      /* logical output / input sizes (>= 1) */
    int rows_pad;        /* rows rounded up to a multiple of 8 */
    int cols_pad;        /* int8: cols rounded up to a multiple of 4; float: cols */
    const float *fw;     /* CK_W_FLOAT packed weights */
    const int8_t *qw;    /* CK_W_INT8 / CK_W_SPARSE packed weights */
    const int32_t *idx;  /* CK_W_SPARSE index */
    const float *scale;  /* int8 kinds: rows_pad per-row scales */
    const float *bias;   /* rows, or NULL */
    const float *diag;   /* rows, or NULL; requires rows % cols == 0 */
    float input_scale;   /* int8 kinds: > 0 fixed step, 0 = dynamic max|x|/127 */
} ck_linear;

/* GRU cell, gates stacked [r, z, n] as torch.nn.GRU. */
typedef struct ck_gru {
    ck_linear in;   /* 3H x I, bias = b_ih */
    ck_linear rec;  /* 3H x H, bias = b_hh, optional diag */
} ck_gru;

typedef struct ck_slice {
    int buf, offset, len;
} ck_slice;

typedef struct ck_op {
    int type;                    /* CK_OP_* */
    int activation;              /* CK_ACT_* (dense, conv1d, act) */
    int n_in;
    ck_slice in[CK_MAX_INPUTS];  /* concatenated into the op's input vector */
    ck_slice out;
    ck_linear lin;               /* dense, conv1d, glu */
    ck_gru gru;                  /* gru */
    int kernel_size, dilation;   /* conv1d */
    ck_slice hist;               /* conv1d: (kernel_size-1)*dilation frames of input */
    int lag_pre, lag_min, lag_max;  /* lag */
} ck_op;

typedef struct ck_net {
    int n_ops;
    const ck_op *ops;
    int n_bufs;
    float *const *bufs;
    const int *buf_len;
    float *scratch;       /* ck_net_scratch_floats() floats */
    int8_t *qscratch;     /* ck_net_qscratch_bytes() bytes */
    long scratch_len, qscratch_len;
} ck_net;

/* One feed (copied into a buffer before each step) or fetch (copied out after). */
typedef struct ck_io {
    int buf;
    const float *src;  /* feeds: steps x buf_len */
    float *dst;        /* fetches: steps x buf_len */
} ck_io;

typedef struct ck_kernels {
    const char *name;
    /* y[0:rows] = W x, float packed weights. */
    void (*sgemv)(float *y, const float *w, int rows, int cols, const float *x);
    /* y[0:rows] = scale[r] * xs * (Wq xq), dense int8 packed, xq has cols_pad entries. */
    void (*i8gemv)(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                   const int8_t *xq, float xs);
    /* Same for block-sparse weights. */
    void (*i8spmv)(float *y, const int8_t *w, const int32_t *idx, const float *scale, int rows,
                   const int8_t *xq, float xs);
    void (*vec_tanh)(float *y, const float *x, int n);
    void (*vec_sigmoid)(float *y, const float *x, int n);
    void (*vec_exp)(float *y, const float *x, int n);
    /* Quantize x[0:n] to q[0:npad] (zero padded); returns the step xs (see ck_linear.input_scale). */
    float (*quantize)(int8_t *q, const float *x, int n, int npad, float input_scale);
    /* Full linear layer; q needs cols_pad bytes. */
    void (*linear)(const ck_linear *l, float *y, const float *x, int8_t *q);
    /* One GRU step, h updated in place; scratch needs 6*H floats, q max cols_pad bytes. */
    void (*gru_step)(const ck_gru *g, float *h, const float *x, float *scratch, int8_t *q);
    /* Run a validated network for `steps` steps (no FTZ handling: see ck_net_run). */
    void (*run)(const ck_net *net, int steps, const ck_io *feeds, int n_feeds,
                const ck_io *fetches, int n_fetches);
} ck_kernels;

/* ---- dispatch.c ---- */
int ck_variant_count(void);                      /* compiled-in variants */
const ck_kernels *ck_variant_at(int i);
int ck_known_variant_count(void);                /* every variant of variants.h, any build */
const char *ck_known_variant_name(int i);
int ck_variant_supported(const ck_kernels *k);   /* 1 if this CPU can run it */
const ck_kernels *ck_best_variant(void);
const ck_kernels *ck_active(void);
int ck_set_variant(const char *name);            /* CK_OK or CK_ERR_* */
const char *ck_isa_name(void);                   /* "x86_64", "aarch64", "armv7", "other" */

/* Flush-to-zero / denormals-are-zero on the calling thread. */
unsigned long ck_ftz_enter(void);
void ck_ftz_exit(unsigned long saved);
int ck_ftz_probe(void);  /* 1 if a denormal product is flushed right now */

/* Validation of untrusted descriptions. Lengths are element counts. */
int ck_linear_check(const ck_linear *l, long fw_len, long qw_len, long idx_len, long scale_len,
                    long bias_len, long diag_len);
int ck_net_check(const ck_net *net);
long ck_net_scratch_floats(const ck_op *ops, int n_ops);
long ck_net_qscratch_bytes(const ck_op *ops, int n_ops);

/* Runs net->ops with FTZ/DAZ set, on the active variant. */
int ck_net_run(const ck_net *net, int steps, const ck_io *feeds, int n_feeds,
               const ck_io *fetches, int n_fetches);

#ifdef __cplusplus
}
#endif
#endif
