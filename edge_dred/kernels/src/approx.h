/* Constants of the elementwise approximations, shared by the scalar twins
 * (nnet_impl.h) and the vector code (simd_vec.h).
 *
 * exp: x clamped to [-87, 88] (keeps 2^n normal), n = round(x/ln2), Cody-Waite
 * reduction f = x - n ln2 (|f| <= 0.347), degree-6 Taylor polynomial, scaled by
 * 2^n through the exponent bits. Relative error < 4e-7 on [-87, 88].
 * sigmoid(x) = 1/(1+exp(-x)), tanh(x) = 2/(1+exp(-2x)) - 1: absolute errors
 * < 2e-7 and < 4e-7 (tests measure them against float64). NaN maps to a
 * finite value (exp clamps it to 88) rather than invoking undefined casts. */
#ifndef CK_APPROX_H
#define CK_APPROX_H

#define CK_EXP_HI 88.0f
#define CK_EXP_LO -87.0f
#define CK_LOG2E 1.44269504088896341f
#define CK_LN2_HI 0.693145751953125f
#define CK_LN2_LO 1.42860682030941723e-6f
#define CK_RND_MAGIC 12582912.0f /* 1.5 * 2^23: x + M - M rounds to nearest-even */
#define CK_P6 (1.0f / 720.0f)
#define CK_P5 (1.0f / 120.0f)
#define CK_P4 (1.0f / 24.0f)
#define CK_P3 (1.0f / 6.0f)
#define CK_P2 0.5f

#endif
