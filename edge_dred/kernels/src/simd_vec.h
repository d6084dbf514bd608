/* Vector code written once for every SIMD header: exp / sigmoid / tanh over
 * arrays, max |x|, the int8 rounding tail and the store of an 8-row group.
 *
 * The including header (simd_sse41.h, simd_avx2.h, simd_neon.h) first
 * defines, for its float vector type ck_vf of CK_VW lanes (4 or 8):
 *   ck_vld(p), ck_vst(p, v), ck_vdup(f)
 *   ck_vadd(a, b), ck_vsub(a, b), ck_vmul(a, b), ck_vdiv(a, b), ck_vneg(a)
 *   ck_vmin_hi(x, c), ck_vmax_lo(x, c): min / max that give c for a NaN x
 *   ck_vround(v): to nearest-even; ck_vexp2i(n): 2^n for an integral n
 *   ck_vabsmax(m, x): lanewise max(m, |x|), a NaN x leaving m
 * and, with 4 lanes, its int32 vector type ck_vi and ck_vitof(v) (to float).
 * Every step follows the scalar twins of nnet_impl.h (ck_exp1, ...) in the
 * same order without FMA, so vector lanes and scalar tails agree bit for bit. */
#ifndef CK_SIMD_VEC_H
#define CK_SIMD_VEC_H

#include <math.h>
#include <stdint.h>

#include "approx.h"

#define CK_HAVE_VEC_ACT

/* Scalar twins, defined in nnet_impl.h. */
static inline float ck_exp1(float x);
static inline float ck_sigmoid1(float x);
static inline float ck_tanh1(float x);
static inline int8_t ck_quant1(float x, float inv);

static inline ck_vf ck_vexp(ck_vf x)
{
    ck_vf t, n, f, p;
    x = ck_vmin_hi(x, ck_vdup(CK_EXP_HI));
    x = ck_vmax_lo(x, ck_vdup(CK_EXP_LO));
    t = ck_vmul(x, ck_vdup(CK_LOG2E));
    n = ck_vround(t);
    f = ck_vsub(x, ck_vmul(n, ck_vdup(CK_LN2_HI)));
    f = ck_vsub(f, ck_vmul(n, ck_vdup(CK_LN2_LO)));
    p = ck_vadd(ck_vmul(ck_vdup(CK_P6), f), ck_vdup(CK_P5));
    p = ck_vadd(ck_vmul(p, f), ck_vdup(CK_P4));
    p = ck_vadd(ck_vmul(p, f), ck_vdup(CK_P3));
    p = ck_vadd(ck_vmul(p, f), ck_vdup(CK_P2));
    p = ck_vadd(ck_vmul(p, f), ck_vdup(1.0f));
    p = ck_vadd(ck_vmul(p, f), ck_vdup(1.0f));
    return ck_vmul(p, ck_vexp2i(n));
}

static void ck_vec_exp(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + CK_VW <= n; i += CK_VW) ck_vst(y + i, ck_vexp(ck_vld(x + i)));
    for (; i < n; i++) y[i] = ck_exp1(x[i]);
}

static void ck_vec_sigmoid(float *y, const float *x, int n)
{
    const ck_vf one = ck_vdup(1.0f);
    int i = 0;
    for (; i + CK_VW <= n; i += CK_VW) ck_vst(y + i, ck_vdiv(one, ck_vadd(one, ck_vexp(ck_vneg(ck_vld(x + i))))));
    for (; i < n; i++) y[i] = ck_sigmoid1(x[i]);
}

static void ck_vec_tanh(float *y, const float *x, int n)
{
    const ck_vf one = ck_vdup(1.0f), two = ck_vdup(2.0f), m2 = ck_vdup(-2.0f);
    int i = 0;
    for (; i + CK_VW <= n; i += CK_VW) {
        ck_vf e = ck_vexp(ck_vmul(m2, ck_vld(x + i)));
        ck_vst(y + i, ck_vsub(ck_vdiv(two, ck_vadd(one, e)), one));
    }
    for (; i < n; i++) y[i] = ck_tanh1(x[i]);
}

/* max |x| ignoring NaN, as the scalar reference. */
static float ck_absmax(const float *x, int n)
{
    ck_vf mv = ck_vdup(0.0f);
    float lanes[CK_VW], m = 0.0f;
    int i = 0;
    for (; i + CK_VW <= n; i += CK_VW) mv = ck_vabsmax(mv, ck_vld(x + i));
    ck_vst(lanes, mv);
    for (int k = 0; k < CK_VW; k++) m = lanes[k] > m ? lanes[k] : m;
    for (; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}

/* The scalar tail of an ISA's ck_quant_loop, from element i on. */
static inline void ck_quant_tail(int8_t *q, const float *x, int i, int n, float inv)
{
    for (; i < n; i++) q[i] = ck_quant1(x[i], inv);
}

#if CK_VW == 4
/* Store the valid rows of a finished 8-row group held in two vectors. */
static inline void ck_store8(float *y, ck_vf lo, ck_vf hi, int g, int rows)
{
    if (8 * g + 8 <= rows) {
        ck_vst(y + 8 * g, lo);
        ck_vst(y + 8 * g + 4, hi);
    } else {
        float tmp[8];
        ck_vst(tmp, lo);
        ck_vst(tmp + 4, hi);
        for (int r = 0; r < rows - 8 * g; r++) y[8 * g + r] = tmp[r];
    }
}

/* Dequantize an 8-row group's int32 sums (rows 0-3 in a0, 4-7 in a1) and store them. */
static inline void ck_finish(float *y, ck_vi a0, ck_vi a1, const float *scale, float xs, int g, int rows)
{
    ck_vf vs = ck_vdup(xs);
    ck_vf lo = ck_vmul(ck_vitof(a0), ck_vmul(ck_vld(scale), vs));
    ck_vf hi = ck_vmul(ck_vitof(a1), ck_vmul(ck_vld(scale + 4), vs));
    ck_store8(y, lo, hi, g, rows);
}
#endif

#endif
