/* 32-bit ARM NEON variant (Cortex-A7/A15/A53 in AArch32). Enabled per file so
 * the rest of a Raspberry Pi OS armhf build keeps its VFP-only baseline;
 * dispatch.c only calls it when HWCAP_NEON is set. */
#if defined(__arm__) && !defined(__aarch64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("neon"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("arch=armv7-a,fpu=neon")
#endif
#define CK_SUFFIX armv7_neon
#include "simd_neon.h"
#include "nnet_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int ck_armv7_unused; /* not a 32-bit ARM target: empty translation unit */
#endif
