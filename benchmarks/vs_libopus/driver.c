/* libopus side of benchmarks/vs_libopus: the same speech and loss trace as edge-dred.
 *
 *   driver PCM TRACE BITRATE DRED_BITRATE DRED_10MS LOSS_PCT
 *
 * PCM: raw 16 kHz mono int16; TRACE: one 0/1 per 20 ms packet (1 = lost), as many
 * as packets to send (PCM is zero-padded to that length).
 *
 * Every unit of work the comparison prices is one call of a named, non-inlined
 * function below, so callgrind's inclusive cost of that function over its call
 * count is the cost per unit:
 *   tx_plain       one packet, Opus alone (BITRATE, no DRED)
 *   tx_dred        one packet with DRED (DRED_BITRATE in all, DRED_10MS deep, LOSS_PCT
 *                  expected loss: libopus sizes DRED from the expected loss)
 *   rx_plc_good    neural-PLC mode (decoder complexity 5 = deep PLC): a received packet
 *   rx_plc_lost    neural-PLC mode: a lost packet (deep PLC)
 *   rx_dred_good   DRED mode: a received packet
 *   rx_dred_burst  DRED mode, when the packet after a burst arrives: its DRED parsed for
 *                  the burst's length and every lost packet of the burst decoded from it
 *                  (deep PLC where it does not reach), as opus_demo does
 *   rx_dred_tail   DRED mode: lost packets at the end with no packet after them (deep PLC)
 * Everything else (libopus's own functions) is priced from the same profile.
 *
 * Built with -DEDGE_MARKS (the aarch64 run under qemu, no callgrind there), every
 * priced function is bracketed by the counting plugin's umask markers instead
 * (marks.py): the driver's own functions above, and libopus's internal ones below
 * through the linker's --wrap (calls between libopus's source files only, which is
 * where they are made); the stage names, by marker index, are printed with the result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "opus.h"

#define FRAME 320          /* 20 ms at 16 kHz */
#define MAX_PACKET 1500

#define NOINLINE __attribute__((noinline))

#ifdef EDGE_MARKS
#include <sys/stat.h>
/* Marker indices: the order of stage_names. */
enum { S_NULL, S_CAL, S_CAL0, S_TX_PLAIN, S_TX_DRED, S_RX_PLC_GOOD, S_RX_PLC_LOST, S_RX_DRED_GOOD,
       S_RX_DRED_BURST, S_RX_DRED_TAIL, S_FEATURES, S_FARGAN, S_DRED_CODE, S_DRED_PARSE, S_DRED_NET, S_COUNT };
static const char *stage_names[S_COUNT] = {
    "null", "cal", "cal0", "tx_plain", "tx_dred", "rx_plc_good", "rx_plc_lost", "rx_dred_good",
    "rx_dred_burst", "rx_dred_tail",
    /* lpcnet_compute_single_frame_features_float: compute_frame_features, called from its own
       file, with the float copy and pre-emphasis of one 10 ms frame around it */
    "compute_frame_features", "fargan_synthesize_int", "dred_encode_silk_frame", "dred_ec_decode",
    "dred_rdovae_encode_dframe"};
#define MARK(i, e) umask((mode_t)(EDGE_MAGIC | ((unsigned)(EDGE_MARK_FIRST + 2 * (i) + (e)) << 12) | 022))
#define BEGIN(i) MARK(i, 0)
#define END(i) MARK(i, 1)

/* libopus's internal functions, each between markers (pointer arguments as void *: same ABI). */
int __real_lpcnet_compute_single_frame_features_float(void *st, const float *pcm, float *features, int arch);
int __wrap_lpcnet_compute_single_frame_features_float(void *st, const float *pcm, float *features, int arch) {
    BEGIN(S_FEATURES);
    int r = __real_lpcnet_compute_single_frame_features_float(st, pcm, features, arch);
    END(S_FEATURES);
    return r;
}
void __real_fargan_synthesize_int(void *st, opus_int16 *pcm, const float *features);
void __wrap_fargan_synthesize_int(void *st, opus_int16 *pcm, const float *features) {
    BEGIN(S_FARGAN);
    __real_fargan_synthesize_int(st, pcm, features);
    END(S_FARGAN);
}
int __real_dred_encode_silk_frame(void *enc, unsigned char *buf, int max_chunks, int max_bytes, int q0, int dQ,
                                  int qmax, unsigned char *activity_mem, int arch);
int __wrap_dred_encode_silk_frame(void *enc, unsigned char *buf, int max_chunks, int max_bytes, int q0, int dQ,
                                  int qmax, unsigned char *activity_mem, int arch) {
    BEGIN(S_DRED_CODE);
    int r = __real_dred_encode_silk_frame(enc, buf, max_chunks, max_bytes, q0, dQ, qmax, activity_mem, arch);
    END(S_DRED_CODE);
    return r;
}
int __real_dred_ec_decode(void *dec, const unsigned char *bytes, int num_bytes, int min_feature_frames,
                          int dred_frame_offset);
int __wrap_dred_ec_decode(void *dec, const unsigned char *bytes, int num_bytes, int min_feature_frames,
                          int dred_frame_offset) {
    BEGIN(S_DRED_PARSE);
    int r = __real_dred_ec_decode(dec, bytes, num_bytes, min_feature_frames, dred_frame_offset);
    END(S_DRED_PARSE);
    return r;
}
void __real_dred_rdovae_encode_dframe(void *enc_state, const void *model, float *latents, float *initial_state,
                                      const float *input, int arch);
void __wrap_dred_rdovae_encode_dframe(void *enc_state, const void *model, float *latents, float *initial_state,
                                      const float *input, int arch) {
    BEGIN(S_DRED_NET);
    __real_dred_rdovae_encode_dframe(enc_state, model, latents, initial_state, input, arch);
    END(S_DRED_NET);
}

/* What one stage's markers and one nested pair cost, measured as the Python side does. */
static void calibrate(void) {
    volatile int sink = 0;
    int i;
    for (i = 0; i < 200; i++) { BEGIN(S_NULL); END(S_NULL); }
    BEGIN(S_CAL);
    for (i = 0; i < 200; i++) { BEGIN(S_NULL); END(S_NULL); sink++; }
    END(S_CAL);
    BEGIN(S_CAL0);
    for (i = 0; i < 200; i++) sink++;
    END(S_CAL0);
}
#else
#define BEGIN(i) ((void)0)
#define END(i) ((void)0)
#endif

NOINLINE int tx_plain(OpusEncoder *enc, const opus_int16 *pcm, unsigned char *out) {
    BEGIN(S_TX_PLAIN);
    int r = opus_encode(enc, pcm, FRAME, out, MAX_PACKET);
    END(S_TX_PLAIN);
    return r;
}

NOINLINE int tx_dred(OpusEncoder *enc, const opus_int16 *pcm, unsigned char *out) {
    BEGIN(S_TX_DRED);
    int r = opus_encode(enc, pcm, FRAME, out, MAX_PACKET);
    END(S_TX_DRED);
    return r;
}

NOINLINE int rx_plc_good(OpusDecoder *dec, const unsigned char *pkt, int len, opus_int16 *out) {
    BEGIN(S_RX_PLC_GOOD);
    int r = opus_decode(dec, pkt, len, out, FRAME, 0);
    END(S_RX_PLC_GOOD);
    return r;
}

NOINLINE int rx_plc_lost(OpusDecoder *dec, opus_int16 *out) {
    BEGIN(S_RX_PLC_LOST);
    int r = opus_decode(dec, NULL, 0, out, FRAME, 0);
    END(S_RX_PLC_LOST);
    return r;
}

NOINLINE int rx_dred_good(OpusDecoder *dec, const unsigned char *pkt, int len, opus_int16 *out) {
    BEGIN(S_RX_DRED_GOOD);
    int r = opus_decode(dec, pkt, len, out, FRAME, 0);
    END(S_RX_DRED_GOOD);
    return r;
}

/* Returns how many of the burst's packets came from DRED. */
NOINLINE int rx_dred_burst(OpusDecoder *dec, OpusDREDDecoder *dd, OpusDRED *dred, const unsigned char *pkt,
                           int len, int lost, opus_int16 *out) {
    int dred_end = 0, from_dred = 0, fr;
    int want = lost * FRAME;
    BEGIN(S_RX_DRED_BURST);
    int avail = opus_dred_parse(dd, dred, pkt, len, want < 16000 ? want : 16000, 16000, &dred_end, 0);
    for (fr = 0; fr < lost; fr++) {
        int offset = (lost - fr) * FRAME;
        if (avail > 0 && offset <= avail) {
            opus_decoder_dred_decode(dec, dred, offset, out, FRAME);
            from_dred++;
        } else {
            opus_decode(dec, NULL, 0, out, FRAME, 0);
        }
    }
    END(S_RX_DRED_BURST);
    return from_dred;
}

NOINLINE int rx_dred_tail(OpusDecoder *dec, opus_int16 *out) {
    BEGIN(S_RX_DRED_TAIL);
    int r = opus_decode(dec, NULL, 0, out, FRAME, 0);
    END(S_RX_DRED_TAIL);
    return r;
}

static OpusEncoder *make_encoder(int bitrate, int dred_10ms, int loss_pct) {
    int err;
    OpusEncoder *enc = opus_encoder_create(16000, 1, OPUS_APPLICATION_VOIP, &err);
    if (err != OPUS_OK) { fprintf(stderr, "opus_encoder_create: %s\n", opus_strerror(err)); exit(1); }
    /* The project's sender: VBR, complexity 9, no LBRR, no DTX. */
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));
    opus_encoder_ctl(enc, OPUS_SET_VBR(1));
    opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(9));
    opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(0));
    opus_encoder_ctl(enc, OPUS_SET_PACKET_LOSS_PERC(loss_pct));
    if (dred_10ms > 0) {
        err = opus_encoder_ctl(enc, OPUS_SET_DRED_DURATION(dred_10ms));
        if (err != OPUS_OK) { fprintf(stderr, "OPUS_SET_DRED_DURATION: %s (built without DRED?)\n", opus_strerror(err)); exit(1); }
    }
    return enc;
}

static OpusDecoder *make_decoder(void) {
    int err;
    OpusDecoder *dec = opus_decoder_create(16000, 1, &err);
    if (err != OPUS_OK) { fprintf(stderr, "opus_decoder_create: %s\n", opus_strerror(err)); exit(1); }
    opus_decoder_ctl(dec, OPUS_SET_COMPLEXITY(5));   /* >= 5: deep PLC */
    return dec;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s PCM TRACE BITRATE DRED_BITRATE DRED_10MS LOSS_PCT\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 1; }
    int cap = 1024, n = 0, v;
    char *lost = malloc(cap);
    while (fscanf(f, "%d", &v) == 1) {
        if (n == cap) lost = realloc(lost, cap *= 2);
        lost[n++] = v != 0;
    }
    fclose(f);
    if (n == 0) { fprintf(stderr, "%s: no packets\n", argv[2]); return 1; }
    opus_int16 *pcm = calloc((size_t)n * FRAME, sizeof(opus_int16));
    f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    size_t got = fread(pcm, sizeof(opus_int16), (size_t)n * FRAME, f);
    fclose(f);

#ifdef EDGE_MARKS
    calibrate();
#endif
    int bitrate = atoi(argv[3]), dred_bitrate = atoi(argv[4]), dred_10ms = atoi(argv[5]), loss_pct = atoi(argv[6]);
    OpusEncoder *enc_plain = make_encoder(bitrate, 0, loss_pct);
    OpusEncoder *enc_dred = make_encoder(dred_bitrate, dred_10ms, loss_pct);
    unsigned char (*plain)[MAX_PACKET] = malloc((size_t)n * MAX_PACKET);
    unsigned char (*withd)[MAX_PACKET] = malloc((size_t)n * MAX_PACKET);
    int *plain_len = malloc(n * sizeof(int)), *dred_len = malloc(n * sizeof(int));
    long bytes_plain = 0, bytes_dred = 0;
    int i;
    for (i = 0; i < n; i++) {
        plain_len[i] = tx_plain(enc_plain, pcm + (size_t)i * FRAME, plain[i]);
        dred_len[i] = tx_dred(enc_dred, pcm + (size_t)i * FRAME, withd[i]);
        if (plain_len[i] < 0 || dred_len[i] < 0) { fprintf(stderr, "encode failed at packet %d\n", i); return 1; }
        bytes_plain += plain_len[i];
        bytes_dred += dred_len[i];
    }

    opus_int16 out[FRAME];
    int n_lost = 0;
    OpusDecoder *dec = make_decoder();
    for (i = 0; i < n; i++) {
        if (lost[i]) { rx_plc_lost(dec, out); n_lost++; }
        else rx_plc_good(dec, plain[i], plain_len[i], out);
    }

    int err, run = 0, bursts = 0, from_dred = 0;
    OpusDecoder *dec2 = make_decoder();
    OpusDREDDecoder *dd = opus_dred_decoder_create(&err);
    OpusDRED *dred = opus_dred_alloc(&err);
    if (!dd || !dred) { fprintf(stderr, "no DRED decoder: %s\n", opus_strerror(err)); return 1; }
    for (i = 0; i < n; i++) {
        if (lost[i]) { run++; continue; }
        if (run) { from_dred += rx_dred_burst(dec2, dd, dred, withd[i], dred_len[i], run, out); bursts++; }
        run = 0;
        rx_dred_good(dec2, withd[i], dred_len[i], out);
    }
    for (; run > 0; run--) rx_dred_tail(dec2, out);

    printf("{\"packets\": %d, \"lost\": %d, \"bursts\": %d, \"dred_recovered\": %d, \"pcm_samples\": %zu, "
           "\"bytes_plain\": %.1f, \"bytes_dred\": %.1f}\n", n, n_lost, bursts, from_dred, got,
           (double)bytes_plain / n, (double)bytes_dred / n);
#ifdef EDGE_MARKS
    printf("{\"stages\": [");
    for (i = 0; i < S_COUNT; i++) printf("%s\"%s\"", i ? ", " : "", stage_names[i]);
    printf("]}\n");
#endif
    opus_encoder_destroy(enc_plain);
    opus_encoder_destroy(enc_dred);
    opus_decoder_destroy(dec);
    opus_decoder_destroy(dec2);
    opus_dred_decoder_destroy(dd);
    opus_dred_free(dred);
    free(lost); free(pcm); free(plain); free(withd); free(plain_len); free(dred_len);
    return 0;
}
