/* x86-64 AVX2 + FMA variant. Enabled per file so the rest of the extension
 * keeps the baseline ISA; dispatch.c only calls it when the CPU has AVX2+FMA. */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>
#include <string.h>

#include "nnet.h"

#define CK_SUFFIX avx2
#define CK_HAVE_SGEMV
#define CK_HAVE_I8GEMV
#define CK_HAVE_I8SPMV
#define CK_HAVE_VEC_ACT

/* Forward declarations of the scalar twins used for tails (defined in the template). */
static inline float ck_exp1(float x);
static inline float ck_sigmoid1(float x);
static inline float ck_tanh1(float x);

/* Same operation order as ck_exp1 (mul/add, no FMA) so results match the
 * scalar reference bit for bit. */
static inline __m256 ck_exp8(__m256 x)
{
    __m256 t, n, f, p;
    __m256i e;
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f)); /* minps returns the 2nd operand for NaN */
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693145751953125f)));
    f = _mm256_sub_ps(f, _mm256_mul_ps(n, _mm256_set1_ps(1.42860682030941723e-6f)));
    p = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(1.0f / 720.0f), f), _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(0.5f));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void ck_vec_exp(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, ck_exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = ck_exp1(x[i]);
}

static void ck_vec_sigmoid(float *y, const float *x, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = ck_exp8(_mm256_sub_ps(zero, _mm256_loadu_ps(x + i)));
        _mm256_storeu_ps(y + i, _mm256_div_ps(one, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) y[i] = ck_sigmoid1(x[i]);
}

static void ck_vec_tanh(float *y, const float *x, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), m2 = _mm256_set1_ps(-2.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = ck_exp8(_mm256_mul_ps(m2, _mm256_loadu_ps(x + i)));
        _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_div_ps(two, _mm256_add_ps(one, e)), one));
    }
    for (; i < n; i++) y[i] = ck_tanh1(x[i]);
}

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

/* 32 int8 MACs of one 8x4 block: the sign trick moves x's sign onto w so
 * maddubs can take |x| as its unsigned operand; |x|,|w| <= 127 keeps each
 * 16-bit pair sum <= 32258 (no saturation). Lane r of the result = row r. */
static inline __m256i ck_block8x4(__m256i acc, const int8_t *w, const int8_t *x4, __m256i ones)
{
    int32_t xv;
    __m256i xb, wv;
    memcpy(&xv, x4, 4);
    xb = _mm256_set1_epi32(xv);
    wv = _mm256_loadu_si256((const __m256i *)w);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(wv, xb)), ones));
}

static inline __m256 ck_dequant8(__m256i acc, const float *scale, float xs)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_loadu_ps(scale), _mm256_set1_ps(xs)));
}

static void ck_i8gemv(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                      const int8_t *xq, float xs)
{
    const __m256i ones = _mm256_set1_epi16(1);
    int groups = (rows + 7) >> 3;
    for (int g = 0; g < groups; g++) {
        const int8_t *wg = w + (size_t)g * 8 * cols_pad;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        int j = 0;
        for (; j + 8 <= cols_pad; j += 8, wg += 64) {
            a0 = ck_block8x4(a0, wg, xq + j, ones);
            a1 = ck_block8x4(a1, wg + 32, xq + j + 4, ones);
        }
        if (j < cols_pad) a0 = ck_block8x4(a0, wg, xq + j, ones);
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
            a0 = ck_block8x4(a0, w, xq + idx[0], ones);
            a1 = ck_block8x4(a1, w + 32, xq + idx[1], ones);
        }
        if (b < nb) {
            a0 = ck_block8x4(a0, w, xq + idx[0], ones);
            w += 32;
            idx++;
        }
        ck_store8(y, ck_dequant8(_mm256_add_epi32(a0, a1), scale + 8 * g, xs), g, rows);
    }
}

#include "nnet_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int ck_avx2_unused; /* not an x86 target: empty translation unit */
#endif
