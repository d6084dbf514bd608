/* x86-64 AVX2 + FMA variant. Enabled per file so the rest of the extension
 * keeps the baseline ISA; dispatch.c only calls it when the CPU has AVX2+FMA. */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif
#define CK_SUFFIX avx2
#include "simd_avx2.h"
#include "nnet_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int ck_avx2_unused; /* not an x86 target: empty translation unit */
#endif
