/* Run-time selection of a kernel variant from the CPU features, and the
 * flush-to-zero helpers used around network runs. */
#include <stdint.h>
#include <string.h>

#include "nnet.h"

#include "variants.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CK_ARCH_X86 1
#elif defined(__aarch64__)
#define CK_ARCH_AARCH64 1
#elif defined(__arm__)
#define CK_ARCH_ARMV7 1
#endif

#if defined(__linux__) && (defined(CK_ARCH_AARCH64) || defined(CK_ARCH_ARMV7))
#include <sys/auxv.h>
#endif

/* CK_IF_<family>(x) and CK_IF_<guard>(x) expand to x when a variant of that
 * family / guard (variants.h) belongs in this build, else to nothing. */
#define CK_IF_any(x) x
#define CK_IF_ALWAYS(x) x
#if defined(CK_ARCH_X86)
#define CK_IF_x86(x) x
#else
#define CK_IF_x86(x)
#endif
#if defined(CK_ARCH_AARCH64)
#define CK_IF_aarch64(x) x
#else
#define CK_IF_aarch64(x)
#endif
#if defined(CK_ARCH_ARMV7)
#define CK_IF_armv7(x) x
#else
#define CK_IF_armv7(x)
#endif
#ifdef CK_NO_AVXVNNI
#define CK_IF_AVXVNNI(x)
#else
#define CK_IF_AVXVNNI(x) x
#endif
#ifdef CK_NO_DOTPROD
#define CK_IF_DOTPROD(x)
#else
#define CK_IF_DOTPROD(x) x
#endif
#define CK_COMMA ,

#define CK_DECLARE(name, family, guard) CK_IF_##family(CK_IF_##guard(extern const ck_kernels ck_kernels_##name;))
CK_VARIANTS(CK_DECLARE)

/* The variants compiled into this build, in increasing order of preference:
 * the best supported one wins. */
#define CK_ENTRY(name, family, guard) CK_IF_##family(CK_IF_##guard(&ck_kernels_##name CK_COMMA))
static const ck_kernels *const ck_table[] = {CK_VARIANTS(CK_ENTRY)};

/* Every variant name of any build: an unknown name and one not compiled in are different errors. */
#define CK_NAME(name, family, guard) #name,
static const char *const ck_known_names[] = {CK_VARIANTS(CK_NAME)};

static const ck_kernels *ck_current = NULL;

int ck_variant_count(void) { return (int)(sizeof ck_table / sizeof ck_table[0]); }

int ck_known_variant_count(void) { return (int)(sizeof ck_known_names / sizeof ck_known_names[0]); }

const char *ck_known_variant_name(int i)
{
    if (i < 0 || i >= ck_known_variant_count()) return NULL;
    return ck_known_names[i];
}

const ck_kernels *ck_variant_at(int i)
{
    if (i < 0 || i >= ck_variant_count()) return NULL;
    return ck_table[i];
}

const char *ck_isa_name(void)
{
#if defined(CK_ARCH_X86)
    return "x86_64";
#elif defined(CK_ARCH_AARCH64)
    return "aarch64";
#elif defined(CK_ARCH_ARMV7)
    return "armv7";
#else
    return "other";
#endif
}

int ck_variant_supported(const ck_kernels *k)
{
    if (!k) return 0;
    if (k == &ck_kernels_scalar) return 1;
#if defined(CK_ARCH_X86)
    __builtin_cpu_init();
    if (k == &ck_kernels_sse41) return __builtin_cpu_supports("sse4.1") ? 1 : 0;
    /* libgcc's check includes the OS (XGETBV) saving the AVX state. */
    if (k == &ck_kernels_avx2) return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
#ifndef CK_NO_AVXVNNI
    if (k == &ck_kernels_avx2_vnni)
        return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avxvnni")) ? 1 : 0;
#endif
#elif defined(CK_ARCH_AARCH64)
#if defined(__linux__)
    {
        unsigned long hw = getauxval(AT_HWCAP);
        if (k == &ck_kernels_neon) return (hw & (1UL << 1)) ? 1 : 0; /* HWCAP_ASIMD */
#ifndef CK_NO_DOTPROD
        if (k == &ck_kernels_neon_dotprod) return (hw & (1UL << 1)) && (hw & (1UL << 20)) ? 1 : 0; /* HWCAP_ASIMDDP */
#endif
    }
#else
    if (k == &ck_kernels_neon) return 1; /* Advanced SIMD is mandatory in ARMv8-A */
#endif
#elif defined(CK_ARCH_ARMV7)
#if defined(__linux__)
    if (k == &ck_kernels_armv7_neon) return (getauxval(AT_HWCAP) & (1UL << 12)) ? 1 : 0; /* HWCAP_NEON */
#endif
#endif
    return 0;
}

const ck_kernels *ck_best_variant(void)
{
    for (int i = ck_variant_count() - 1; i > 0; i--)
        if (ck_variant_supported(ck_table[i])) return ck_table[i];
    return &ck_kernels_scalar;
}

const ck_kernels *ck_active(void)
{
    if (!ck_current) ck_current = ck_best_variant();
    return ck_current;
}

int ck_set_variant(const char *name)
{
    int known = 0;
    if (!name) return CK_ERR_UNKNOWN_VARIANT;
    for (int i = 0; i < ck_known_variant_count(); i++)
        if (strcmp(name, ck_known_names[i]) == 0) known = 1;
    if (!known) return CK_ERR_UNKNOWN_VARIANT;
    for (int i = 0; i < ck_variant_count(); i++) {
        if (strcmp(ck_table[i]->name, name) == 0) {
            if (!ck_variant_supported(ck_table[i])) return CK_ERR_UNSUPPORTED_CPU;
            ck_current = ck_table[i];
            return CK_OK;
        }
    }
    return CK_ERR_NOT_COMPILED;
}

/* ---- flush-to-zero ----
 * Denormals make some CPUs (x86 especially) take microcode assists that cost
 * ~100 cycles each; decaying GRU states produce them, so runs flush them. */
unsigned long ck_ftz_enter(void)
{
#if defined(CK_ARCH_X86)
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
#elif defined(CK_ARCH_AARCH64)
    uint64_t old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1ULL << 24))); /* FZ */
    return (unsigned long)old;
#elif defined(CK_ARCH_ARMV7) && defined(__ARM_FP)
    uint32_t old;
    __asm__ __volatile__("vmrs %0, fpscr" : "=r"(old));
    __asm__ __volatile__("vmsr fpscr, %0" : : "r"(old | (1U << 24))); /* FZ */
    return old;
#else
    return 0;
#endif
}

void ck_ftz_exit(unsigned long saved)
{
#if defined(CK_ARCH_X86)
    _mm_setcsr((unsigned int)saved);
#elif defined(CK_ARCH_AARCH64)
    uint64_t v = saved;
    __asm__ __volatile__("msr fpcr, %0" : : "r"(v));
#elif defined(CK_ARCH_ARMV7) && defined(__ARM_FP)
    uint32_t v = (uint32_t)saved;
    __asm__ __volatile__("vmsr fpscr, %0" : : "r"(v));
#else
    (void)saved;
#endif
}

int ck_ftz_probe(void)
{
    /* volatile: keep the compiler from folding the products at build time. */
    volatile float tiny = 1e-38f, small = 1e-3f, denorm = 1e-41f, one = 1.0f;
    volatile float a = tiny * small, b = denorm * one;
    return (a == 0.0f ? 1 : 0) | (b == 0.0f ? 2 : 0);
}

int ck_net_run(const ck_net *net, int steps, const ck_io *feeds, int n_feeds, const ck_io *fetches,
               int n_fetches)
{
    unsigned long saved;
    if (!net || steps < 0 || n_feeds < 0 || n_fetches < 0) return CK_ERR_SHAPE;
    for (int i = 0; i < n_feeds; i++)
        if (feeds[i].buf < 0 || feeds[i].buf >= net->n_bufs || !feeds[i].src) return CK_ERR_SLICE;
    for (int i = 0; i < n_fetches; i++)
        if (fetches[i].buf < 0 || fetches[i].buf >= net->n_bufs || !fetches[i].dst) return CK_ERR_SLICE;
    saved = ck_ftz_enter();
    ck_active()->run(net, steps, feeds, n_feeds, fetches, n_fetches);
    ck_ftz_exit(saved);
    return CK_OK;
}
