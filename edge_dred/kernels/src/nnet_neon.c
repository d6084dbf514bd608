/* aarch64 Advanced SIMD variant (ARMv8.0-A: Cortex-A53/A72, Pi 3/4). */
#if defined(__aarch64__)
#define CK_SUFFIX neon
#include "simd_neon.h"
#include "nnet_impl.h"
#else
typedef int ck_neon_unused; /* not an aarch64 target: empty translation unit */
#endif
