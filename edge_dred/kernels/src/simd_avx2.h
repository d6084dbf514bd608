/* AVX2 primitives shared by nnet_avx2.c and nnet_avx2_vnni.c; included after
 * the per-file target pragma and before nnet_impl.h.
 *
 * int8 products use the sign trick: maddubs/dpbusd need one unsigned operand,
 * so x's sign is moved onto w (sign_epi8) and |x| is the unsigned side; with
 * |x|, |w| <= 127 a 16-bit pair sum stays <= 32258 (no saturation). With
 * CK_AVX_VNNI, vpdpbusd does multiply + pair sums + accumulate in one
 * instruction (exact, int32). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "nnet.h"

#define CK_HAVE_SGEMV
#define CK_HAVE_I8GEMV
#define CK_HAVE_I8SPMV
#define CK_HAVE_QUANT

/* The vector API of simd_vec.h (exp, activations, max |x|). */
typedef __m256 ck_vf;
#define CK_VW 8
#define ck_vld(p) _mm256_loadu_ps(p)
#define ck_vst(p, v) _mm256_storeu_ps(p, v)
#define ck_vdup(f) _mm256_set1_ps(f)
#define ck_vadd(a, b) _mm256_add_ps(a, b)
#define ck_vsub(a, b) _mm256_sub_ps(a, b)
#define ck_vmul(a, b) _mm256_mul_ps(a, b)
#define ck_vdiv(a, b) _mm256_div_ps(a, b)
#define ck_vneg(a) _mm256_sub_ps(_mm256_setzero_ps(), a)
#define ck_vmin_hi(x, c) _mm256_min_ps(x, c) /* minps / maxps return the 2nd operand for NaN */
#define ck_vmax_lo(x, c) _mm256_max_ps(x, c)
#define ck_vround(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ck_vexp2i(n) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define ck_vabsmax(m, x) _mm256_max_ps(_mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))), m)
#include "simd_vec.h"

static inline void ck_store8(float *y, __m256 v, int g, int rows)
{
    if (8 * g + 8 <= rows) {
        _mm256_storeu_ps(y + 8 * g, v);
    } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, v);
        for (int r = 0; r < rows - 8 * g; r++) y[8 * g + r] = tmp[r];
    }
}

static void ck_sgemv(float *y, const float *w, int rows, int cols, const float *x)
{
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        const float *wg = w + (size_t)g * 8 * cols;
        /* Four accumulators hide the FMA latency. */
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
               a3 = _mm256_setzero_ps();
        int c = 0;
        for (; c + 4 <= cols; c += 4) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wg + 8 * c), _mm256_set1_ps(x[c]), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wg + 8 * c + 8), _mm256_set1_ps(x[c + 1]), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(wg + 8 * c + 16), _mm256_set1_ps(x[c + 2]), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(wg + 8 * c + 24), _mm256_set1_ps(x[c + 3]), a3);
        }
        for (; c < cols; c++) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wg + 8 * c), _mm256_set1_ps(x[c]), a0);
        ck_store8(y, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), g, rows);
    }
}

static inline __m256i ck_q8(const float *x, __m256 inv)
{
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), inv);
    v = _mm256_max_ps(v, _mm256_set1_ps(-127.0f)); /* NaN -> -127 like the scalar code */
    v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));
    return _mm256_cvtps_epi32(v); /* nearest-even, as the scalar magic-number rounding */
}

static void ck_quant_loop(int8_t *q, const float *x, int n, float inv)
{
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i ab = _mm256_packs_epi32(ck_q8(x + i, vinv), ck_q8(x + i + 8, vinv));
        __m256i cd = _mm256_packs_epi32(ck_q8(x + i + 16, vinv), ck_q8(x + i + 24, vinv));
        /* packs work per 128-bit lane; the permute restores element order */
        __m256i abcd = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), perm);
        _mm256_storeu_si256((__m256i *)(q + i), abcd);
    }
    ck_quant_tail(q, x, i, n, inv);
}

/* 32 int8 MACs of one 8x4 block: the sign trick moves x's sign onto w so
 * maddubs can take |x| as its unsigned operand; |x|,|w| <= 127 keeps each
 * 16-bit pair sum <= 32258 (no saturation). Lane r of the result = row r. */
static inline __m256i ck_mac8x4(__m256i acc, const int8_t *w, __m256i xb, __m256i xa, __m256i ones)
{
    __m256i wv = _mm256_loadu_si256((const __m256i *)w);
#if defined(CK_AVX_VNNI)
    (void)ones;
    return _mm256_dpbusd_avx_epi32(acc, xa, _mm256_sign_epi8(wv, xb));
#else
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(wv, xb)), ones), acc);
#endif
}

static inline __m256i ck_bcast4(const int8_t *x4)
{
    int32_t v;
    memcpy(&v, x4, 4);
    return _mm256_set1_epi32(v);
}

static inline __m256 ck_dequant8(__m256i acc, const float *scale, float xs)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_loadu_ps(scale), _mm256_set1_ps(xs)));
}

static void ck_i8gemv(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                      const int8_t *xq, float xs)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t gstride = (size_t)8 * cols_pad;
    int groups = (rows + 7) >> 3, g = 0;
    /* Four row groups per pass share each broadcast and |x|. */
    for (; g + 4 <= groups; g += 4) {
        const int8_t *wp = w + g * gstride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        /* pointers walk; the four groups are constant strides apart */
        for (const int8_t *xp = xq, *const xend = xq + cols_pad; xp < xend; xp += 4, wp += 32) {
            const __m256i xb = ck_bcast4(xp), xa = _mm256_abs_epi8(xb);
            /* The empty asm after each sum keeps GCC (12) from computing it into a temporary
             * and copying it back every iteration: 27 instructions per iteration instead of 29. */
            a0 = ck_mac8x4(a0, wp, xb, xa, ones);
            __asm__("" : "+x"(a0));
            a1 = ck_mac8x4(a1, wp + gstride, xb, xa, ones);
            __asm__("" : "+x"(a1));
            a2 = ck_mac8x4(a2, wp + 2 * gstride, xb, xa, ones);
            __asm__("" : "+x"(a2));
            a3 = ck_mac8x4(a3, wp + 3 * gstride, xb, xa, ones);
            __asm__("" : "+x"(a3));
        }
        ck_store8(y, ck_dequant8(a0, scale + 8 * g, xs), g, rows);
        ck_store8(y, ck_dequant8(a1, scale + 8 * (g + 1), xs), g + 1, rows);
        ck_store8(y, ck_dequant8(a2, scale + 8 * (g + 2), xs), g + 2, rows);
        ck_store8(y, ck_dequant8(a3, scale + 8 * (g + 3), xs), g + 3, rows);
    }
    for (; g < groups; g++) {
        const int8_t *wg = w + g * gstride;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        int j = 0;
        for (; j + 8 <= cols_pad; j += 8, wg += 64) {
            __m256i x0 = ck_bcast4(xq + j), x1 = ck_bcast4(xq + j + 4);
            a0 = ck_mac8x4(a0, wg, x0, _mm256_abs_epi8(x0), ones);
            a1 = ck_mac8x4(a1, wg + 32, x1, _mm256_abs_epi8(x1), ones);
        }
        if (j < cols_pad) {
            __m256i x0 = ck_bcast4(xq + j);
            a0 = ck_mac8x4(a0, wg, x0, _mm256_abs_epi8(x0), ones);
        }
        ck_store8(y, ck_dequant8(_mm256_add_epi32(a0, a1), scale + 8 * g, xs), g, rows);
    }
}

static void ck_i8spmv(float *y, const int8_t *w, const int32_t *idx, const float *scale, int rows,
                      const int8_t *xq, float xs)
{
    const __m256i ones = _mm256_set1_epi16(1);
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        int nb = *idx++, b = 0;
        for (; b + 2 <= nb; b += 2, w += 64, idx += 2) {
            __m256i x0 = ck_bcast4(xq + idx[0]), x1 = ck_bcast4(xq + idx[1]);
            a0 = ck_mac8x4(a0, w, x0, _mm256_abs_epi8(x0), ones);
            a1 = ck_mac8x4(a1, w + 32, x1, _mm256_abs_epi8(x1), ones);
        }
        if (b < nb) {
            __m256i x0 = ck_bcast4(xq + idx[0]);
            a0 = ck_mac8x4(a0, w, x0, _mm256_abs_epi8(x0), ones);
            w += 32;
            idx++;
        }
        ck_store8(y, ck_dequant8(_mm256_add_epi32(a0, a1), scale + 8 * g, xs), g, rows);
    }
}

