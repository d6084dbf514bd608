/* Kernel template: included once per instruction set by nnet_<isa>.c.
 *
 * Before including, an ISA file defines CK_SUFFIX (scalar, avx2, ...) and may
 * provide SIMD primitives, announcing each with a CK_HAVE_* macro:
 *   ck_sgemv, ck_i8gemv, ck_i8spmv       (CK_HAVE_SGEMV, CK_HAVE_I8GEMV, CK_HAVE_I8SPMV)
 *   ck_vec_exp, ck_vec_sigmoid, ck_vec_tanh (CK_HAVE_VEC_ACT)
 *   ck_absmax, ck_quant_loop            (CK_HAVE_QUANT)
 * Anything not provided falls back to the portable C below, which is also
 * the reference every SIMD variant is tested against. Layers, the GRU step and
 * the network runner are written once here and compiled per ISA so that the
 * element-wise glue is vectorized for the same target as the kernels.
 *
 * Every file is built with -ffp-contract=off so that the scalar reference and
 * the SIMD tails round the same way (no silent FMA contraction).
 */
#include <math.h>
#include <string.h>

#include "nnet.h"

#define CK_CAT2(a, b) a##b
#define CK_CAT(a, b) CK_CAT2(a, b)
#define CK_FN(name) CK_CAT(CK_CAT(ck_, CK_SUFFIX), CK_CAT(_, name))
#define CK_STR2(a) #a
#define CK_STR(a) CK_STR2(a)

#include "approx.h"

static inline float ck_exp1(float x)
{
    float t, n, f, p, s;
    int32_t e;
    x = x < CK_EXP_HI ? x : CK_EXP_HI;
    x = x > CK_EXP_LO ? x : CK_EXP_LO;
    t = x * CK_LOG2E;
    n = (t + CK_RND_MAGIC) - CK_RND_MAGIC;
    f = x - n * CK_LN2_HI;
    f = f - n * CK_LN2_LO;
    p = CK_P6 * f + CK_P5;
    p = p * f + CK_P4;
    p = p * f + CK_P3;
    p = p * f + CK_P2;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    e = ((int32_t)n + 127) << 23;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

static inline float ck_sigmoid1(float x) { return 1.0f / (1.0f + ck_exp1(-x)); }
static inline float ck_tanh1(float x) { return 2.0f / (1.0f + ck_exp1(-2.0f * x)) - 1.0f; }

#ifndef CK_HAVE_VEC_ACT
static void ck_vec_exp(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = ck_exp1(x[i]);
}
static void ck_vec_sigmoid(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = ck_sigmoid1(x[i]);
}
static void ck_vec_tanh(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = ck_tanh1(x[i]);
}
#endif

/* ---- matrix-vector products ---- */

/* Copy the valid rows of a finished 8-row group. */
static inline void ck_store_group(float *y, const float *acc8, int g, int rows)
{
    int nr = rows - 8 * g;
    if (nr > 8) nr = 8;
    for (int r = 0; r < nr; r++) y[8 * g + r] = acc8[r];
}

#ifndef CK_HAVE_SGEMV
static void ck_sgemv(float *y, const float *w, int rows, int cols, const float *x)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        const float *wg = w + (size_t)g * 8 * cols;
        for (int c = 0; c < cols; c++) {
            float xc = x[c];
            for (int r = 0; r < 8; r++) acc[r] += wg[8 * c + r] * xc;
        }
        ck_store_group(y, acc, g, rows);
    }
}
#endif

/* One 8x4 block: acc[r] += sum_k w[4r+k] * x[k]; x hoisted into registers so
 * plain C compilers keep the 8 accumulators in registers. */
static inline void ck_block_ref(int32_t *acc, const int8_t *w, const int8_t *x)
{
    int32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    for (int r = 0; r < 8; r++) acc[r] += w[4 * r] * x0 + w[4 * r + 1] * x1 + w[4 * r + 2] * x2 + w[4 * r + 3] * x3;
}

#ifndef CK_HAVE_I8GEMV
static void ck_i8gemv(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                      const int8_t *xq, float xs)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        int32_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        float out[8];
        const int8_t *wg = w + (size_t)g * 8 * cols_pad;
        for (int j = 0; j < cols_pad; j += 4, wg += 32) ck_block_ref(acc, wg, xq + j);
        for (int r = 0; r < 8; r++) out[r] = (float)acc[r] * (scale[8 * g + r] * xs);
        ck_store_group(y, out, g, rows);
    }
}
#endif

#ifndef CK_HAVE_I8SPMV
static void ck_i8spmv(float *y, const int8_t *w, const int32_t *idx, const float *scale, int rows,
                      const int8_t *xq, float xs)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        int32_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        float out[8];
        int nb = *idx++;
        for (int b = 0; b < nb; b++, w += 32) ck_block_ref(acc, w, xq + *idx++);
        for (int r = 0; r < 8; r++) out[r] = (float)acc[r] * (scale[8 * g + r] * xs);
        ck_store_group(y, out, g, rows);
    }
}
#endif

/* One element of the input quantization: x * inv rounded to nearest-even and
 * saturated to [-127, 127]. */
static inline int8_t ck_quant1(float x, float inv)
{
    float v = x * inv;
    v = v >= -127.0f ? v : -127.0f; /* NaN -> -127: no undefined float->int cast */
    v = v <= 127.0f ? v : 127.0f;
    v = (v + CK_RND_MAGIC) - CK_RND_MAGIC;
    return (int8_t)(int32_t)v;
}

#ifndef CK_HAVE_QUANT
/* max |x| ignoring NaN (a > m is false for NaN). */
static float ck_absmax(const float *x, int n)
{
    float m = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}

static void ck_quant_loop(int8_t *q, const float *x, int n, float inv)
{
    for (int i = 0; i < n; i++) q[i] = ck_quant1(x[i], inv);
}
#endif

/* Quantize x to int8 in q (zero padded to npad). Returns the step xs so that
 * x ~= xs * q. input_scale > 0 fixes the step (libopus uses 1/127 for inputs
 * known to lie in [-1, 1]); 0 picks max|x|/127 per call. Out-of-range values
 * saturate at +-127, rounding is to nearest-even in every variant (SIMD
 * versions must give identical bytes). */
static float ck_quantize(int8_t *q, const float *x, int n, int npad, float input_scale)
{
    float xs, inv;
    if (input_scale > 0.0f) {
        xs = input_scale;
        inv = 1.0f / input_scale;
    } else {
        float m = ck_absmax(x, n);
        if (m > 0.0f) {
            xs = m * (1.0f / 127.0f);
            inv = 127.0f / m;
        } else {
            xs = 0.0f;
            inv = 0.0f;
        }
    }
    ck_quant_loop(q, x, n, inv);
    for (int i = n; i < npad; i++) q[i] = 0;
    return xs;
}

/* ---- layers ---- */

static void CK_FN(linear)(const ck_linear *l, float *y, const float *x, int8_t *q)
{
    int rows = l->rows;
    if (l->kind == CK_W_FLOAT) {
        ck_sgemv(y, l->fw, rows, l->cols, x);
    } else {
        float xs = ck_quantize(q, x, l->cols, l->cols_pad, l->input_scale);
        if (l->kind == CK_W_INT8)
            ck_i8gemv(y, l->qw, l->scale, rows, l->cols_pad, q, xs);
        else
            ck_i8spmv(y, l->qw, l->idx, l->scale, rows, q, xs);
    }
    if (l->bias) {
        const float *b = l->bias;
        for (int i = 0; i < rows; i++) y[i] += b[i];
    }
    if (l->diag) {
        /* libopus-style dense diagonal of a recurrent matrix kept out of the
         * sparse blocks: row r gets diag[r] * x[r % cols]. */
        const float *d = l->diag;
        int cols = l->cols;
        for (int base = 0; base < rows; base += cols)
            for (int i = 0; i < cols; i++) y[base + i] += d[base + i] * x[i];
    }
}

static void ck_activate(float *y, const float *x, int n, int act)
{
    switch (act) {
    case CK_ACT_TANH: ck_vec_tanh(y, x, n); break;
    case CK_ACT_SIGMOID: ck_vec_sigmoid(y, x, n); break;
    case CK_ACT_RELU:
        for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case CK_ACT_EXP: ck_vec_exp(y, x, n); break;
    default:
        if (y != x) memmove(y, x, (size_t)n * sizeof(float));
        break;
    }
}

/* torch.nn.GRU (reset-after) step:
 *   r = s(Wir x + bir + Whr h + bhr), z = s(Wiz x + biz + Whz h + bhz)
 *   n = tanh(Win x + bin + r * (Whn h + bhn)),  h' = (1-z) n + z h = n + z (h - n)
 * x must not alias h or scratch (6H floats). */
static void CK_FN(gru_step)(const ck_gru *g, float *h, const float *x, float *scratch, int8_t *q)
{
    int H = g->rec.cols;
    float *gi = scratch, *gh = scratch + 3 * H;
    CK_FN(linear)(&g->in, gi, x, q);
    CK_FN(linear)(&g->rec, gh, h, q);
    for (int i = 0; i < 2 * H; i++) gi[i] += gh[i];
    ck_vec_sigmoid(gi, gi, 2 * H);
    for (int i = 0; i < H; i++) gi[2 * H + i] += gi[i] * gh[2 * H + i];
    ck_vec_tanh(gi + 2 * H, gi + 2 * H, H);
    for (int i = 0; i < H; i++) {
        float n = gi[2 * H + i];
        h[i] = n + gi[H + i] * (h[i] - n);
    }
}

/* ---- network runner ---- */

static int ck_gather(const ck_net *net, const ck_op *op, float *dst)
{
    int off = 0;
    for (int i = 0; i < op->n_in; i++) {
        const ck_slice *s = &op->in[i];
        memcpy(dst + off, net->bufs[s->buf] + s->offset, (size_t)s->len * sizeof(float));
        off += s->len;
    }
    return off;
}

static void CK_FN(exec_op)(const ck_net *net, const ck_op *op)
{
    float *xin = net->scratch;
    float *out = net->bufs[op->out.buf] + op->out.offset;
    int8_t *q = net->qscratch;
    int n;
    switch (op->type) {
    case CK_OP_DENSE:
        ck_gather(net, op, xin);
        CK_FN(linear)(&op->lin, out, xin, q);
        ck_activate(out, out, op->lin.rows, op->activation);
        break;
    case CK_OP_GLU: {
        float *gate;
        n = ck_gather(net, op, xin);
        gate = xin + n;
        CK_FN(linear)(&op->lin, gate, xin, q);
        ck_vec_sigmoid(gate, gate, n);
        for (int i = 0; i < n; i++) out[i] = xin[i] * gate[i];
        break;
    }
    case CK_OP_ACT:
        n = ck_gather(net, op, xin);
        ck_activate(out, xin, n, op->activation);
        break;
    case CK_OP_MUL:
    case CK_OP_ADD:
        ck_gather(net, op, xin);
        n = op->in[0].len;
        if (op->type == CK_OP_ADD)
            for (int i = 0; i < n; i++) out[i] = xin[i] + xin[n + i];
        else if (op->in[1].len == 1)
            for (int i = 0; i < n; i++) out[i] = xin[i] * xin[n];
        else
            for (int i = 0; i < n; i++) out[i] = xin[i] * xin[n + i];
        break;
    case CK_OP_LAG: {
        const float *h = net->bufs[op->in[0].buf] + op->in[0].offset;
        float lf = net->bufs[op->in[1].buf][op->in[1].offset];
        float s = op->n_in == 3 ? net->bufs[op->in[2].buf][op->in[2].offset] : 1.0f;
        int H = op->in[0].len, L, p;
        /* round half to even (as numpy.round); NaN -> lag_min; no libm call */
        if (!(lf >= (float)op->lag_min)) {
            L = op->lag_min;
        } else if (lf >= (float)op->lag_max) {
            L = op->lag_max;
        } else {
            float d;
            L = (int)lf;  /* lf >= lag_min >= 1: truncation is floor */
            d = lf - (float)L;
            if (d > 0.5f || (d == 0.5f && (L & 1))) L++;
        }
        /* Results go through scratch: out may overlap the history. */
        for (int j = 0; j < op->out.len; j++) {
            p = H - L + j - op->lag_pre;
            while (p >= H) p -= L;
            xin[j] = s * h[p];
        }
        memcpy(out, xin, (size_t)op->out.len * sizeof(float));
        break;
    }
    case CK_OP_SHIFT: {
        int H = op->out.len;
        n = ck_gather(net, op, xin);
        memmove(out, out + n, (size_t)(H - n) * sizeof(float));
        memcpy(out + H - n, xin, (size_t)n * sizeof(float));
        break;
    }
    case CK_OP_GRU:
        n = ck_gather(net, op, xin);
        CK_FN(gru_step)(&op->gru, out, xin, xin + n, q);
        break;
    case CK_OP_CONV1D: {
        /* Input vector = the kernel_size taps, oldest first: tap k is the frame
         * (K-1-k)*d steps back; history holds the last (K-1)*d frames. */
        int K = op->kernel_size, d = op->dilation, hist_frames = (K - 1) * d;
        float *hist = hist_frames > 0 ? net->bufs[op->hist.buf] + op->hist.offset : NULL;
        float *cur;
        int C = 0;
        for (int i = 0; i < op->n_in; i++) C += op->in[i].len;
        cur = xin + (size_t)(K - 1) * C;
        for (int k = 0; k < K - 1; k++)
            memcpy(xin + (size_t)k * C, hist + (size_t)k * d * C, (size_t)C * sizeof(float));
        ck_gather(net, op, cur);
        CK_FN(linear)(&op->lin, out, xin, q);
        ck_activate(out, out, op->lin.rows, op->activation);
        if (hist_frames > 0) {
            memmove(hist, hist + C, (size_t)(hist_frames - 1) * C * sizeof(float));
            memcpy(hist + (size_t)(hist_frames - 1) * C, cur, (size_t)C * sizeof(float));
        }
        break;
    }
    default:
        break; /* ck_net_check rejects unknown ops */
    }
}

static void CK_FN(run)(const ck_net *net, int steps, const ck_io *feeds, int n_feeds,
                       const ck_io *fetches, int n_fetches)
{
    for (int t = 0; t < steps; t++) {
        for (int f = 0; f < n_feeds; f++) {
            int len = net->buf_len[feeds[f].buf];
            memcpy(net->bufs[feeds[f].buf], feeds[f].src + (size_t)t * len, (size_t)len * sizeof(float));
        }
        for (int i = 0; i < net->n_ops; i++) CK_FN(exec_op)(net, &net->ops[i]);
        for (int f = 0; f < n_fetches; f++) {
            int len = net->buf_len[fetches[f].buf];
            memcpy(fetches[f].dst + (size_t)t * len, net->bufs[fetches[f].buf], (size_t)len * sizeof(float));
        }
    }
}

const ck_kernels CK_CAT(ck_kernels_, CK_SUFFIX) = {
    CK_STR(CK_SUFFIX),
    ck_sgemv,
    ck_i8gemv,
    ck_i8spmv,
    ck_vec_tanh,
    ck_vec_sigmoid,
    ck_vec_exp,
    ck_quantize,
    CK_FN(linear),
    CK_FN(gru_step),
    CK_FN(run),
};
