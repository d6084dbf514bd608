/* Instruction-count driver for the compiled feature analysis under qemu-user.
 *
 *     feature_analysis_count PARAMS.bin PCM.raw N_FRAMES
 *
 * PARAMS.bin is an edf_params struct as written by benchmarks/bench_features.py
 * (LP64 layout), PCM.raw int16 samples.  Analyses one warm-up frame, then brackets
 * the streamed analysis of N_FRAMES frames (one call per 20 ms packet, as the
 * receiver calls it) with umask markers 1 and 2 for scripts/qemu_insn_plugin.c.
 * Prints a checksum so that the work cannot be optimised away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "feature_analysis.h"

#define MARK(code) umask(0x4e000000u | ((unsigned)(code) << 12) | 022)

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PARAMS.bin PCM.raw N_FRAMES\n", argv[0]);
        return 2;
    }
    static edf_params p;
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(&p, sizeof p, 1, f) != 1) {
        fprintf(stderr, "cannot read %zu bytes of parameters from %s\n", sizeof p, argv[1]);
        return 1;
    }
    fclose(f);
    long n = atol(argv[3]);
    if (n < 2 || n % 2) {
        fprintf(stderr, "N_FRAMES must be even and >= 2\n");
        return 2;
    }
    int16_t *x = malloc((size_t)(n + 1) * EDF_FRAME * sizeof *x);
    float *out = malloc((size_t)(n + 1) * EDF_NFEAT * sizeof *out);
    f = fopen(argv[2], "rb");
    if (!x || !out || !f || fread(x, sizeof *x, (size_t)(n + 1) * EDF_FRAME, f) != (size_t)(n + 1) * EDF_FRAME) {
        fprintf(stderr, "cannot read %ld frames of int16 from %s\n", n + 1, argv[2]);
        return 1;
    }
    fclose(f);
    edf_state *st = edf_new(&p);
    if (!st)
        return 1;
    edf_process_i16(st, x, 1, out);
    MARK(1);
    for (long i = 0; i < n; i += 2)
        edf_process_i16(st, x + (i + 1) * EDF_FRAME, 2, out + (i + 1) * EDF_NFEAT);
    MARK(2);
    double sum = 0.0;
    for (long i = 0; i < (n + 1) * EDF_NFEAT; i++)
        sum += out[i];
    printf("checksum %.6f\n", sum);
    edf_free(st);
    free(x);
    free(out);
    return 0;
}
