/* NEON primitives shared by nnet_neon.c, nnet_neon_dotprod.c (aarch64) and
 * nnet_armv7_neon.c (32-bit). Included after the per-file target pragma and
 * before nnet_impl.h.
 *
 * int8 products, one 8x4 block (32 bytes = rows 0-3 | rows 4-7):
 *   dotprod : vdotq_s32 sums 4 products per int32 lane (exact); lane r = row r.
 *   no dotprod, dense (ck_i8gemv): vmull_s8 of one column block and vmlal_s8 of
 *             the next sum two products of the same row in int16 (each at most
 *             127^2), vpadalq_s16 widens pairs into int32 lanes that hold two
 *             partial sums per row, added pairwise once per row group.
 *   no dotprod, block-sparse (ck_dot16): vmull_s8 / vmull_high_s8, vpaddq_s16
 *             adds the products of columns (2m, 2m+1) in int16, vpadalq_s16
 *             widens; lane r = row r (armv7: vpadd_s16 on 64-bit halves).
 * Every int16 lane holds two products, which is why quantization enforces
 * (|a|+|b|)*127 <= 32767 (weights in [-127, 127] always do). */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "nnet.h"

#define CK_HAVE_SGEMV
#define CK_HAVE_I8GEMV
#define CK_HAVE_I8SPMV
#define CK_HAVE_QUANT

#if defined(__aarch64__)
#define CK_VMLA(acc, a, b) vfmaq_f32(acc, a, b)
static inline float32x4_t ck_round4(float32x4_t v) { return vrndnq_f32(v); }
static inline float32x4_t ck_div4(float32x4_t a, float32x4_t b) { return vdivq_f32(a, b); }
#else
#define CK_VMLA(acc, a, b) vmlaq_f32(acc, a, b)
/* No vrndn on ARMv7 NEON: the 1.5*2^23 trick rounds to nearest-even exactly
 * like the scalar twin. */
static inline float32x4_t ck_round4(float32x4_t v)
{
    const float32x4_t m = vdupq_n_f32(12582912.0f);
    return vsubq_f32(vaddq_f32(v, m), m);
}
/* No vector divide on ARMv7: reciprocal estimate + 2 Newton steps
 * (~1 ulp; the activation error bounds still hold). */
static inline float32x4_t ck_div4(float32x4_t a, float32x4_t b)
{
    float32x4_t r = vrecpeq_f32(b);
    r = vmulq_f32(vrecpsq_f32(b, r), r);
    r = vmulq_f32(vrecpsq_f32(b, r), r);
    return vmulq_f32(a, r);
}
#endif

/* The vector API of simd_vec.h (exp, activations, max |x|, group store).
 * The clamps and the max use compare+select (vmax/vmin propagate NaN), so NaN
 * maps to 88 in exp and is skipped by the max exactly as in the scalar code. */
typedef float32x4_t ck_vf;
#define CK_VW 4
typedef int32x4_t ck_vi;
#define ck_vitof(v) vcvtq_f32_s32(v)
#define ck_vld(p) vld1q_f32(p)
#define ck_vst(p, v) vst1q_f32(p, v)
#define ck_vdup(f) vdupq_n_f32(f)
#define ck_vadd(a, b) vaddq_f32(a, b)
#define ck_vsub(a, b) vsubq_f32(a, b)
#define ck_vmul(a, b) vmulq_f32(a, b)
#define ck_vdiv(a, b) ck_div4(a, b)
#define ck_vneg(a) vnegq_f32(a)
#define ck_vmin_hi(x, c) ck_sel_lt(x, c)
#define ck_vmax_lo(x, c) ck_sel_gt(x, c)
#define ck_vround(v) ck_round4(v)
#define ck_vexp2i(n) vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23))
#define ck_vabsmax(m, x) ck_sel_gt(vabsq_f32(x), m)

static inline float32x4_t ck_sel_lt(float32x4_t a, float32x4_t b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
static inline float32x4_t ck_sel_gt(float32x4_t a, float32x4_t b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
#include "simd_vec.h"

static inline int32x4_t ck_q4(const float *x, float32x4_t inv)
{
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    float32x4_t v = vmulq_f32(vld1q_f32(x), inv);
    v = vbslq_f32(vcgeq_f32(v, lo), v, lo);
    v = vbslq_f32(vcleq_f32(v, hi), v, hi);
#if defined(__aarch64__)
    return vcvtnq_s32_f32(v); /* nearest-even */
#else
    return vcvtq_s32_f32(ck_round4(v)); /* value already integral: truncation is exact */
#endif
}

static void ck_quant_loop(int8_t *q, const float *x, int n, float inv)
{
    const float32x4_t vinv = vdupq_n_f32(inv);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        int16x8_t ab = vcombine_s16(vqmovn_s32(ck_q4(x + i, vinv)), vqmovn_s32(ck_q4(x + i + 4, vinv)));
        int16x8_t cd = vcombine_s16(vqmovn_s32(ck_q4(x + i + 8, vinv)), vqmovn_s32(ck_q4(x + i + 12, vinv)));
        vst1q_s8(q + i, vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd)));
    }
    ck_quant_tail(q, x, i, n, inv);
}

#if defined(__aarch64__)
#define CK_VMLA_LANE(acc, w, xv, l) vfmaq_laneq_f32(acc, w, xv, l)
#else
#define CK_VMLA_LANE(acc, w, xv, l) \
    vmlaq_lane_f32(acc, w, (l) < 2 ? vget_low_f32(xv) : vget_high_f32(xv), (l) & 1)
#endif

static void ck_sgemv(float *y, const float *w, int rows, int cols, const float *x)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        const float *wg = w + (size_t)g * 8 * cols;
        /* One x load feeds four columns through lane-indexed multiply-adds;
         * four accumulator pairs hide the FMA latency. */
        float32x4_t a0 = vdupq_n_f32(0), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int c = 0;
        for (; c + 4 <= cols; c += 4) {
            const float *p = wg + 8 * c;
            float32x4_t xv = vld1q_f32(x + c);
            a0 = CK_VMLA_LANE(a0, vld1q_f32(p), xv, 0);
            a1 = CK_VMLA_LANE(a1, vld1q_f32(p + 4), xv, 0);
            b0 = CK_VMLA_LANE(b0, vld1q_f32(p + 8), xv, 1);
            b1 = CK_VMLA_LANE(b1, vld1q_f32(p + 12), xv, 1);
            c0 = CK_VMLA_LANE(c0, vld1q_f32(p + 16), xv, 2);
            c1 = CK_VMLA_LANE(c1, vld1q_f32(p + 20), xv, 2);
            d0 = CK_VMLA_LANE(d0, vld1q_f32(p + 24), xv, 3);
            d1 = CK_VMLA_LANE(d1, vld1q_f32(p + 28), xv, 3);
        }
        for (; c < cols; c++) {
            float32x4_t x0 = vdupq_n_f32(x[c]);
            a0 = CK_VMLA(a0, vld1q_f32(wg + 8 * c), x0);
            a1 = CK_VMLA(a1, vld1q_f32(wg + 8 * c + 4), x0);
        }
        ck_store8(y, vaddq_f32(vaddq_f32(a0, b0), vaddq_f32(c0, d0)),
                  vaddq_f32(vaddq_f32(a1, b1), vaddq_f32(c1, d1)), g, rows);
    }
}

/* 16 MACs: 4 rows x 4 columns; lane r += sum_k w[4r+k] * x[k]. */
static inline int32x4_t ck_dot16(int32x4_t acc, int8x16_t w, int8x16_t x)
{
#if defined(CK_NEON_DOTPROD)
    return vdotq_s32(acc, w, x);
#elif defined(__aarch64__)
    int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    int16x8_t hi = vmull_high_s8(w, x);
    return vpadalq_s16(acc, vpaddq_s16(lo, hi));
#else
    int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    int16x8_t hi = vmull_s8(vget_high_s8(w), vget_high_s8(x));
    int16x8_t s = vcombine_s16(vpadd_s16(vget_low_s16(lo), vget_high_s16(lo)),
                               vpadd_s16(vget_low_s16(hi), vget_high_s16(hi)));
    return vpadalq_s16(acc, s);
#endif
}

/* x4 is 4-byte aligned: the quantized input starts aligned and blocks are 4 columns wide. */
static inline int8x16_t ck_bcast4(const int8_t *x4)
{
#if defined(__aarch64__)
    return vreinterpretq_s8_s32(vld1q_dup_s32((const int32_t *)(const void *)x4));   /* one ld1r */
#else
    int32_t v;
    memcpy(&v, x4, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
#endif
}

/* A row group's 64 bytes (two 4-column blocks of 8 rows) into four registers: one ld1 where
 * the compiler has the four-register load. */
#if defined(__aarch64__) && !(defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 9)
#define CK_LOAD64(p, w0_, w1_, w2_, w3_)                                                 \
    const int8x16x4_t w0_##x4 = vld1q_s8_x4(p);                                         \
    const int8x16_t w0_ = w0_##x4.val[0], w1_ = w0_##x4.val[1], w2_ = w0_##x4.val[2],  \
                    w3_ = w0_##x4.val[3]
#else
#define CK_LOAD64(p, w0_, w1_, w2_, w3_)                                                 \
    const int8x16_t w0_ = vld1q_s8(p), w1_ = vld1q_s8((p) + 16);                        \
    const int8x16_t w2_ = vld1q_s8((p) + 32), w3_ = vld1q_s8((p) + 48)
#endif

#if !defined(CK_NEON_DOTPROD)
/* Without dot products a 16-bit product must be widened before it is summed; summing the
 * same rows of two column blocks in 16 bits first (|w|, |x| <= 127: at most 2 * 127^2 =
 * 32258 per lane) widens half as often: 8 instructions per 32 MACs instead of 10.  The
 * int32 accumulators hold each row as two partial sums (lanes: row 2i, 2i, 2i+1, 2i+1 for
 * the low half of a 4-row block, row 2i+2, ... for the high half), added pairwise at the
 * end; the sums are the same integers as the dot-product path's. */
static inline int32x4_t ck_mac_lo(int32x4_t acc, int8x16_t wa, int8x16_t xa, int8x16_t wb, int8x16_t xb)
{
    return vpadalq_s16(acc, vmlal_s8(vmull_s8(vget_low_s8(wa), vget_low_s8(xa)), vget_low_s8(wb), vget_low_s8(xb)));
}

static inline int32x4_t ck_mac_hi(int32x4_t acc, int8x16_t wa, int8x16_t xa, int8x16_t wb, int8x16_t xb)
{
#if defined(__aarch64__)
    return vpadalq_s16(acc, vmlal_high_s8(vmull_high_s8(wa, xa), wb, xb));
#else
    return vpadalq_s16(acc, vmlal_s8(vmull_s8(vget_high_s8(wa), vget_high_s8(xa)), vget_high_s8(wb), vget_high_s8(xb)));
#endif
}

/* One column block alone (the last 4 columns when cols_pad is not a multiple of 8). */
static inline int32x4_t ck_mac1_lo(int32x4_t acc, int8x16_t w, int8x16_t x)
{
    return vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(x)));
}

static inline int32x4_t ck_mac1_hi(int32x4_t acc, int8x16_t w, int8x16_t x)
{
#if defined(__aarch64__)
    return vpadalq_s16(acc, vmull_high_s8(w, x));
#else
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(w), vget_high_s8(x)));
#endif
}

/* Rows 0-3 from the (rows 0-1, rows 2-3) partial-sum pairs. */
static inline int32x4_t ck_pairs(int32x4_t r01, int32x4_t r23)
{
#if defined(__aarch64__)
    return vpaddq_s32(r01, r23);
#else
    return vcombine_s32(vpadd_s32(vget_low_s32(r01), vget_high_s32(r01)),
                        vpadd_s32(vget_low_s32(r23), vget_high_s32(r23)));
#endif
}

/* One group of 8 rows over 8 columns: blocks (rows 0-3, 4-7) x (columns j..j+3, j+4..j+7). */
#define CK_GROUP8(p, r01, r23, r45, r67, x0, x1) do {                                   \
        CK_LOAD64(p, w0_, w1_, w2_, w3_);                                               \
        r01 = ck_mac_lo(r01, w0_, x0, w2_, x1);                                         \
        r23 = ck_mac_hi(r23, w0_, x0, w2_, x1);                                         \
        r45 = ck_mac_lo(r45, w1_, x0, w3_, x1);                                         \
        r67 = ck_mac_hi(r67, w1_, x0, w3_, x1);                                         \
    } while (0)

#define CK_TAIL8(p, r01, r23, r45, r67, x0) do {                                        \
        const int8x16_t w0_ = vld1q_s8(p), w1_ = vld1q_s8((p) + 16);                    \
        r01 = ck_mac1_lo(r01, w0_, x0);                                                 \
        r23 = ck_mac1_hi(r23, w0_, x0);                                                 \
        r45 = ck_mac1_lo(r45, w1_, x0);                                                 \
        r67 = ck_mac1_hi(r67, w1_, x0);                                                 \
    } while (0)

static void ck_i8gemv(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                      const int8_t *xq, float xs)
{
    const size_t gstride = (size_t)8 * cols_pad;
    int groups = (rows + 7) >> 3, g = 0;
#if defined(__aarch64__)
    /* Two row groups per pass share each x broadcast (32 registers hold both). */
    for (; g + 2 <= groups; g += 2) {
        const int8_t *w0 = w + g * gstride, *w1 = w0 + gstride;
        int32x4_t a01 = vdupq_n_s32(0), a23 = a01, a45 = a01, a67 = a01;
        int32x4_t b01 = a01, b23 = a01, b45 = a01, b67 = a01;
        const int8_t *xp = xq, *const xend = xq + (cols_pad & ~7);
        for (; xp < xend; xp += 8, w0 += 64, w1 += 64) {
            const int8x16_t x0 = ck_bcast4(xp), x1 = ck_bcast4(xp + 4);
            CK_GROUP8(w0, a01, a23, a45, a67, x0, x1);
            CK_GROUP8(w1, b01, b23, b45, b67, x0, x1);
        }
        if (cols_pad & 4) {
            const int8x16_t x0 = ck_bcast4(xp);
            CK_TAIL8(w0, a01, a23, a45, a67, x0);
            CK_TAIL8(w1, b01, b23, b45, b67, x0);
        }
        ck_finish(y, ck_pairs(a01, a23), ck_pairs(a45, a67), scale + 8 * g, xs, g, rows);
        ck_finish(y, ck_pairs(b01, b23), ck_pairs(b45, b67), scale + 8 * (g + 1), xs, g + 1, rows);
    }
#endif
    for (; g < groups; g++) {
        const int8_t *wg = w + g * gstride;
        int32x4_t a01 = vdupq_n_s32(0), a23 = a01, a45 = a01, a67 = a01;
        int j = 0;
        for (; j + 8 <= cols_pad; j += 8, wg += 64) {
            const int8x16_t x0 = ck_bcast4(xq + j), x1 = ck_bcast4(xq + j + 4);
            CK_GROUP8(wg, a01, a23, a45, a67, x0, x1);
        }
        if (j < cols_pad) {
            const int8x16_t x0 = ck_bcast4(xq + j);
            CK_TAIL8(wg, a01, a23, a45, a67, x0);
        }
        ck_finish(y, ck_pairs(a01, a23), ck_pairs(a45, a67), scale + 8 * g, xs, g, rows);
    }
}
#undef CK_GROUP8
#undef CK_TAIL8

#else  /* CK_NEON_DOTPROD */

static void ck_i8gemv(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                      const int8_t *xq, float xs)
{
    const size_t gstride = (size_t)8 * cols_pad;
    int groups = (rows + 7) >> 3, g = 0;
    /* Two row groups per pass share each x broadcast; two block columns per
     * iteration give 8 independent accumulators (sdot/sadalp latency). */
    for (; g + 2 <= groups; g += 2) {
        const int8_t *w0 = w + g * gstride, *w1 = w0 + gstride;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        const int8_t *xp = xq, *const xend = xq + (cols_pad & ~7);
        for (; xp < xend; xp += 8, w0 += 64, w1 += 64) {
            const int8x16_t x0 = ck_bcast4(xp), x1 = ck_bcast4(xp + 4);
            CK_LOAD64(w0, u0, u1, u2, u3);     /* one ld1 per group */
            CK_LOAD64(w1, v0, v1, v2, v3);
            a0 = ck_dot16(a0, u0, x0);
            a1 = ck_dot16(a1, u1, x0);
            b0 = ck_dot16(b0, v0, x0);
            b1 = ck_dot16(b1, v1, x0);
            c0 = ck_dot16(c0, u2, x1);
            c1 = ck_dot16(c1, u3, x1);
            d0 = ck_dot16(d0, v2, x1);
            d1 = ck_dot16(d1, v3, x1);
        }
        if (cols_pad & 4) {
            const int8x16_t x0 = ck_bcast4(xp);
            a0 = ck_dot16(a0, vld1q_s8(w0), x0);
            a1 = ck_dot16(a1, vld1q_s8(w0 + 16), x0);
            b0 = ck_dot16(b0, vld1q_s8(w1), x0);
            b1 = ck_dot16(b1, vld1q_s8(w1 + 16), x0);
        }
        ck_finish(y, vaddq_s32(a0, c0), vaddq_s32(a1, c1), scale + 8 * g, xs, g, rows);
        ck_finish(y, vaddq_s32(b0, d0), vaddq_s32(b1, d1), scale + 8 * (g + 1), xs, g + 1, rows);
    }
    for (; g < groups; g++) {
        const int8_t *wg = w + g * gstride;
        int32x4_t a0 = vdupq_n_s32(0), a1 = vdupq_n_s32(0), b0 = vdupq_n_s32(0), b1 = vdupq_n_s32(0);
        int j = 0;
        for (; j + 8 <= cols_pad; j += 8, wg += 64) {
            int8x16_t x0 = ck_bcast4(xq + j), x1 = ck_bcast4(xq + j + 4);
            a0 = ck_dot16(a0, vld1q_s8(wg), x0);
            a1 = ck_dot16(a1, vld1q_s8(wg + 16), x0);
            b0 = ck_dot16(b0, vld1q_s8(wg + 32), x1);
            b1 = ck_dot16(b1, vld1q_s8(wg + 48), x1);
        }
        if (j < cols_pad) {
            int8x16_t x0 = ck_bcast4(xq + j);
            a0 = ck_dot16(a0, vld1q_s8(wg), x0);
            a1 = ck_dot16(a1, vld1q_s8(wg + 16), x0);
        }
        ck_finish(y, vaddq_s32(a0, b0), vaddq_s32(a1, b1), scale + 8 * g, xs, g, rows);
    }
}
#endif
#undef CK_LOAD64

static void ck_i8spmv(float *y, const int8_t *w, const int32_t *idx, const float *scale, int rows,
                      const int8_t *xq, float xs)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        int32x4_t a0 = vdupq_n_s32(0), a1 = vdupq_n_s32(0), b0 = vdupq_n_s32(0), b1 = vdupq_n_s32(0);
        int nb = *idx++, b = 0;
        for (; b + 2 <= nb; b += 2, w += 64, idx += 2) {
            int8x16_t x0 = ck_bcast4(xq + idx[0]), x1 = ck_bcast4(xq + idx[1]);
            a0 = ck_dot16(a0, vld1q_s8(w), x0);
            a1 = ck_dot16(a1, vld1q_s8(w + 16), x0);
            b0 = ck_dot16(b0, vld1q_s8(w + 32), x1);
            b1 = ck_dot16(b1, vld1q_s8(w + 48), x1);
        }
        if (b < nb) {
            int8x16_t x0 = ck_bcast4(xq + idx[0]);
            a0 = ck_dot16(a0, vld1q_s8(w), x0);
            a1 = ck_dot16(a1, vld1q_s8(w + 16), x0);
            w += 32;
            idx++;
        }
        ck_finish(y, vaddq_s32(a0, b0), vaddq_s32(a1, b1), scale + 8 * g, xs, g, rows);
    }
}
