/* x86-64 AVX2 + FMA + AVX-VNNI variant (Alder Lake, Sapphire Rapids, Zen 5):
 * vpdpbusd replaces maddubs + madd + add in the int8 kernels. dispatch.c only
 * calls it when the CPU reports avxvnni. Compilers without AVX-VNNI support
 * (GCC < 11, clang < 12) build without it (CK_NO_AVXVNNI). */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(CK_NO_AVXVNNI)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avxvnni"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,avxvnni")
#endif
#define CK_SUFFIX avx2_vnni
#define CK_AVX_VNNI 1
#include "simd_avx2.h"
#include "nnet_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int ck_avx2_vnni_unused; /* not an x86 target: empty translation unit */
#endif
