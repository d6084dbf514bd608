/*
 * Guest instruction counter for qemu-user, with in-band markers.
 *
 * Built as a shared object and loaded with
 *     qemu-aarch64 -plugin ./libedinsn.so,out=/path/marks.txt[,magic=0x4e000000] ...
 * (the dynamically linked Debian qemu-user supports TCG plugins; the -static
 * builds cannot dlopen them).  Every translated block adds its instruction
 * count to a 64-bit counter when it executes (an inline add where this qemu
 * has it, a callback otherwise).  The guest marks points of interest with
 * umask(magic | code << 12 | 022): a syscall that never fails and, since the
 * kernel keeps only the low 9 bits, leaves the umask at 022.  At each marker
 * the pair "code count" is appended to the output; "total count" ends it.
 *
 * The plugin API is declared here (types and the calls used), not included
 * from qemu's headers, which Debian does not package.  Plugin API version 1
 * (qemu 5.x..8.x) is the default; qemu 9+ needs -DPLUGIN_API_VERSION=2 or
 * later and has no inline add, which the weak symbol below handles.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PLUGIN_API_VERSION
#define PLUGIN_API_VERSION 1
#endif

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t plugin_id;
struct qemu_info;          /* only passed through */
struct qemu_plugin_tb;     /* opaque */

enum inline_op { INLINE_ADD_U64 = 0 };
enum cb_flags { CB_NO_REGS = 0 };

typedef void (*tb_trans_fn)(plugin_id id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_fn)(unsigned int vcpu, void *udata);
typedef void (*udata_fn)(plugin_id id, void *udata);
typedef void (*syscall_fn)(plugin_id id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                           uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);

extern void qemu_plugin_register_vcpu_tb_trans_cb(plugin_id id, tb_trans_fn cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_fn cb,
                                                 enum cb_flags flags, void *udata);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum inline_op op,
                                                     void *ptr, uint64_t imm) __attribute__((weak));
extern void qemu_plugin_register_vcpu_syscall_cb(plugin_id id, syscall_fn cb);
extern void qemu_plugin_register_atexit_cb(plugin_id id, udata_fn cb, void *udata);

EXPORT int qemu_plugin_version = PLUGIN_API_VERSION;

static uint64_t insns;        /* guest threads share it: exact for single-threaded guests */
static uint64_t magic = 0x4e000000u;
static FILE *out;

static void tb_exec(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    insns += (uint64_t)(uintptr_t)udata;
}

static void tb_trans(plugin_id id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (qemu_plugin_register_vcpu_tb_exec_inline)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, INLINE_ADD_U64, &insns, n);
    else
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, CB_NO_REGS, (void *)(uintptr_t)n);
}

static void on_syscall(plugin_id id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu; (void)num; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    /* 32-bit guests pass 32-bit registers: compare the low 32 bits only. */
    uint32_t v = (uint32_t)a1;
    if ((v & 0xff000000u) == (uint32_t)magic && (v & 0x1ffu) == 0022)
        fprintf(out, "%u %" PRIu64 "\n", (v >> 12) & 0xfffu, insns);
}

static void at_exit(plugin_id id, void *udata)
{
    (void)id; (void)udata;
    fprintf(out, "total %" PRIu64 "\n", insns);
    if (out != stderr)
        fclose(out);
}

EXPORT int qemu_plugin_install(plugin_id id, const struct qemu_info *info, int argc, char **argv)
{
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0)
            path = argv[i] + 4;
        else if (strncmp(argv[i], "magic=", 6) == 0)
            magic = strtoull(argv[i] + 6, NULL, 0) & 0xff000000u;
        else {
            fprintf(stderr, "edinsn plugin: unknown argument '%s' (out=FILE, magic=N)\n", argv[i]);
            return -1;
        }
    }
    out = path ? fopen(path, "w") : stderr;
    if (!out) {
        perror("edinsn plugin: cannot open output");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
