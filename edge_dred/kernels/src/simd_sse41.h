/* SSE4.1 primitives of nnet_sse41.c (SSSE3 maddubs/sign + SSE4.1 round,
 * 4-wide floats, no FMA); included after the per-file target pragma and
 * before nnet_impl.h, like simd_avx2.h and simd_neon.h.
 *
 * int8 products use the same sign trick as simd_avx2.h: x's sign moves onto
 * w (sign_epi8) so maddubs takes |x| as its unsigned operand; with |x|, |w| <=
 * 127 a 16-bit pair sum stays <= 32258 (no saturation). */
#include <math.h>
#include <smmintrin.h>
#include <string.h>

#include "nnet.h"

#define CK_HAVE_SGEMV
#define CK_HAVE_I8GEMV
#define CK_HAVE_I8SPMV
#define CK_HAVE_QUANT

/* The vector API of simd_vec.h (exp, activations, max |x|, group store). */
typedef __m128 ck_vf;
#define CK_VW 4
typedef __m128i ck_vi;
#define ck_vitof(v) _mm_cvtepi32_ps(v)
#define ck_vld(p) _mm_loadu_ps(p)
#define ck_vst(p, v) _mm_storeu_ps(p, v)
#define ck_vdup(f) _mm_set1_ps(f)
#define ck_vadd(a, b) _mm_add_ps(a, b)
#define ck_vsub(a, b) _mm_sub_ps(a, b)
#define ck_vmul(a, b) _mm_mul_ps(a, b)
#define ck_vdiv(a, b) _mm_div_ps(a, b)
#define ck_vneg(a) _mm_sub_ps(_mm_setzero_ps(), a)
#define ck_vmin_hi(x, c) _mm_min_ps(x, c) /* minps / maxps return the 2nd operand for NaN */
#define ck_vmax_lo(x, c) _mm_max_ps(x, c)
#define ck_vround(v) _mm_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ck_vexp2i(n) _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(_mm_cvtps_epi32(n), _mm_set1_epi32(127)), 23))
#define ck_vabsmax(m, x) _mm_max_ps(_mm_and_ps(x, _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff))), m)
#include "simd_vec.h"

static void ck_sgemv(float *y, const float *w, int rows, int cols, const float *x)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        const float *wg = w + (size_t)g * 8 * cols;
        __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps(), b0 = _mm_setzero_ps(), b1 = _mm_setzero_ps();
        int c = 0;
        for (; c + 2 <= cols; c += 2) {
            __m128 x0 = _mm_set1_ps(x[c]), x1 = _mm_set1_ps(x[c + 1]);
            a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(wg + 8 * c), x0));
            a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(wg + 8 * c + 4), x0));
            b0 = _mm_add_ps(b0, _mm_mul_ps(_mm_loadu_ps(wg + 8 * c + 8), x1));
            b1 = _mm_add_ps(b1, _mm_mul_ps(_mm_loadu_ps(wg + 8 * c + 12), x1));
        }
        if (c < cols) {
            __m128 x0 = _mm_set1_ps(x[c]);
            a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(wg + 8 * c), x0));
            a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(wg + 8 * c + 4), x0));
        }
        ck_store8(y, _mm_add_ps(a0, b0), _mm_add_ps(a1, b1), g, rows);
    }
}

static inline __m128i ck_q4(const float *x, __m128 inv)
{
    __m128 v = _mm_mul_ps(_mm_loadu_ps(x), inv);
    v = _mm_max_ps(v, _mm_set1_ps(-127.0f)); /* NaN -> -127 like the scalar code */
    v = _mm_min_ps(v, _mm_set1_ps(127.0f));
    return _mm_cvtps_epi32(v);
}

static void ck_quant_loop(int8_t *q, const float *x, int n, float inv)
{
    const __m128 vinv = _mm_set1_ps(inv);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i ab = _mm_packs_epi32(ck_q4(x + i, vinv), ck_q4(x + i + 4, vinv));
        __m128i cd = _mm_packs_epi32(ck_q4(x + i + 8, vinv), ck_q4(x + i + 12, vinv));
        _mm_storeu_si128((__m128i *)(q + i), _mm_packs_epi16(ab, cd));
    }
    ck_quant_tail(q, x, i, n, inv);
}

static inline __m128i ck_bcast4(const int8_t *x4)
{
    int32_t v;
    memcpy(&v, x4, 4);
    return _mm_set1_epi32(v);
}

/* One 8x4 block as two 4x4 halves; same sign trick as the AVX2 variant. */
static inline void ck_mac8x4(__m128i *a0, __m128i *a1, const int8_t *w, __m128i xb, __m128i xa, __m128i ones)
{
    *a0 = _mm_add_epi32(*a0, _mm_madd_epi16(_mm_maddubs_epi16(xa, _mm_sign_epi8(_mm_loadu_si128((const __m128i *)w), xb)), ones));
    *a1 = _mm_add_epi32(*a1, _mm_madd_epi16(_mm_maddubs_epi16(xa, _mm_sign_epi8(_mm_loadu_si128((const __m128i *)(w + 16)), xb)), ones));
}

static void ck_i8gemv(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                      const int8_t *xq, float xs)
{
    const __m128i ones = _mm_set1_epi16(1);
    const size_t gstride = (size_t)8 * cols_pad;
    int groups = (rows + 7) >> 3, g = 0;
    /* Two row groups per pass share each broadcast and |x|. */
    for (; g + 2 <= groups; g += 2) {
        const int8_t *w0 = w + g * gstride, *w1 = w0 + gstride;
        __m128i a0 = _mm_setzero_si128(), a1 = a0, b0 = a0, b1 = a0;
        for (int j = 0; j < cols_pad; j += 4, w0 += 32, w1 += 32) {
            __m128i xb = ck_bcast4(xq + j), xa = _mm_abs_epi8(xb);
            ck_mac8x4(&a0, &a1, w0, xb, xa, ones);
            ck_mac8x4(&b0, &b1, w1, xb, xa, ones);
        }
        ck_finish(y, a0, a1, scale + 8 * g, xs, g, rows);
        ck_finish(y, b0, b1, scale + 8 * (g + 1), xs, g + 1, rows);
    }
    for (; g < groups; g++) {
        const int8_t *wg = w + g * gstride;
        __m128i a0 = _mm_setzero_si128(), a1 = _mm_setzero_si128();
        for (int j = 0; j < cols_pad; j += 4, wg += 32) {
            __m128i xb = ck_bcast4(xq + j);
            ck_mac8x4(&a0, &a1, wg, xb, _mm_abs_epi8(xb), ones);
        }
        ck_finish(y, a0, a1, scale + 8 * g, xs, g, rows);
    }
}

static void ck_i8spmv(float *y, const int8_t *w, const int32_t *idx, const float *scale, int rows,
                      const int8_t *xq, float xs)
{
    const __m128i ones = _mm_set1_epi16(1);
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        __m128i a0 = _mm_setzero_si128(), a1 = _mm_setzero_si128();
        int nb = *idx++;
        for (int b = 0; b < nb; b++, w += 32) {
            __m128i xb = ck_bcast4(xq + *idx++);
            ck_mac8x4(&a0, &a1, w, xb, _mm_abs_epi8(xb), ones);
        }
        ck_finish(y, a0, a1, scale + 8 * g, xs, g, rows);
    }
}
