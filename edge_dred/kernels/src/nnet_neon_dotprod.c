/* aarch64 NEON + SDOT variant (ARMv8.2-A dotprod: Cortex-A55/A76, Pi 5).
 * Enabled per file; dispatch.c only calls it when HWCAP_ASIMDDP is set, so
 * the same binary runs (without SIGILL) on ARMv8.0 cores. */
#if defined(__aarch64__) && !defined(CK_NO_DOTPROD)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#define CK_SUFFIX neon_dotprod
#define CK_NEON_DOTPROD 1
#include "simd_neon.h"
#include "nnet_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int ck_neon_dotprod_unused; /* not an aarch64 target: empty translation unit */
#endif
