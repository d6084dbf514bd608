/* x86 SSE4.1 variant. Enabled per file so the rest of the extension keeps
 * the baseline ISA; dispatch.c only calls it when the CPU reports SSE4.1. */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("sse4.1"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("sse4.1")
#endif
#define CK_SUFFIX sse41
#include "simd_sse41.h"
#include "nnet_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int ck_sse41_unused; /* not an x86 target: empty translation unit */
#endif
