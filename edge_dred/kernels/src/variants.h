/* The kernel variants: the one list that the C dispatch (dispatch.c), the
 * Python package (edge_dred/kernels/variants.py parses this file) and the
 * board configs (validated against it) read.
 *
 * One X(name, family, guard) per variant, in increasing order of preference:
 *   name   - the variant's name; its code is nnet_<name>.c, which defines the
 *            function table ck_kernels_<name>.
 *   family - the target family it is compiled for: any, x86, aarch64, armv7.
 *   guard  - ALWAYS, or the suffix of a CK_NO_<guard> macro that leaves it out
 *            of a build (for compilers without that instruction set).
 * Keep one entry per line: the Python side reads these lines. */
#ifndef CK_VARIANTS_H
#define CK_VARIANTS_H

#define CK_VARIANTS(X)                       \
    X(scalar, any, ALWAYS)                   \
    X(sse41, x86, ALWAYS)                    \
    X(avx2, x86, ALWAYS)                     \
    X(avx2_vnni, x86, AVXVNNI)               \
    X(neon, aarch64, ALWAYS)                 \
    X(neon_dotprod, aarch64, DOTPROD)        \
    X(armv7_neon, armv7, ALWAYS)

#endif
