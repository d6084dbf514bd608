# Cython declarations of the C kernel interface (src/nnet.h), for modules that
# want to call the kernels without Python overhead:
#     from edge_dred.kernels.nnet cimport ck_active, ck_linear
from libc.stdint cimport int8_t, int32_t

cdef extern from "nnet.h" nogil:
    enum:
        CK_ACT_NONE
        CK_ACT_TANH
        CK_ACT_SIGMOID
        CK_ACT_RELU
        CK_ACT_EXP
        CK_W_FLOAT
        CK_W_INT8
        CK_W_SPARSE
        CK_OP_DENSE
        CK_OP_GRU
        CK_OP_CONV1D
        CK_OP_GLU
        CK_OP_ACT
        CK_OP_MUL
        CK_OP_ADD
        CK_OP_LAG
        CK_OP_SHIFT
        CK_OK
        CK_ERR_SHAPE
        CK_ERR_INDEX
        CK_ERR_SCRATCH
        CK_ERR_SLICE
        CK_ERR_OP
        CK_ERR_UNKNOWN_VARIANT
        CK_ERR_NOT_COMPILED
        CK_ERR_UNSUPPORTED_CPU
        CK_MAX_INPUTS

    ctypedef struct ck_linear:
        int kind
        int rows, cols, rows_pad, cols_pad
        const float *fw
        const int8_t *qw
        const int32_t *idx
        const float *scale
        const float *bias
        const float *diag
        float input_scale

    ctypedef struct ck_gru:
        ck_linear in_ "in"
        ck_linear rec

    ctypedef struct ck_slice:
        int buf, offset, len

    ctypedef struct ck_op:
        int type
        int activation
        int n_in
        ck_slice in_ "in"[8]
        ck_slice out
        ck_linear lin
        ck_gru gru
        int kernel_size, dilation
        ck_slice hist
        int lag_pre, lag_min, lag_max

    ctypedef struct ck_net:
        int n_ops
        const ck_op *ops
        int n_bufs
        float **bufs
        const int *buf_len
        float *scratch
        int8_t *qscratch
        long scratch_len, qscratch_len

    ctypedef struct ck_io:
        int buf
        const float *src
        float *dst

    ctypedef struct ck_kernels:
        const char *name
        void (*sgemv)(float *y, const float *w, int rows, int cols, const float *x) noexcept nogil
        void (*i8gemv)(float *y, const int8_t *w, const float *scale, int rows, int cols_pad,
                       const int8_t *xq, float xs) noexcept nogil
        void (*i8spmv)(float *y, const int8_t *w, const int32_t *idx, const float *scale, int rows,
                       const int8_t *xq, float xs) noexcept nogil
        void (*vec_tanh)(float *y, const float *x, int n) noexcept nogil
        void (*vec_sigmoid)(float *y, const float *x, int n) noexcept nogil
        void (*vec_exp)(float *y, const float *x, int n) noexcept nogil
        float (*quantize)(int8_t *q, const float *x, int n, int npad, float input_scale) noexcept nogil
        void (*linear)(const ck_linear *l, float *y, const float *x, int8_t *q) noexcept nogil
        void (*gru_step)(const ck_gru *g, float *h, const float *x, float *scratch, int8_t *q) noexcept nogil
        void (*run)(const ck_net *net, int steps, const ck_io *feeds, int n_feeds,
                    const ck_io *fetches, int n_fetches) noexcept nogil

    int ck_variant_count()
    const ck_kernels *ck_variant_at(int i)
    int ck_known_variant_count()
    const char *ck_known_variant_name(int i)
    int ck_variant_supported(const ck_kernels *k)
    const ck_kernels *ck_best_variant()
    const ck_kernels *ck_active()
    int ck_set_variant(const char *name)
    const char *ck_isa_name()
    unsigned long ck_ftz_enter()
    void ck_ftz_exit(unsigned long saved)
    int ck_ftz_probe()
    int ck_linear_check(const ck_linear *l, long fw_len, long qw_len, long idx_len, long scale_len,
                        long bias_len, long diag_len)
    int ck_net_check(const ck_net *net)
    long ck_net_scratch_floats(const ck_op *ops, int n_ops)
    long ck_net_qscratch_bytes(const ck_op *ops, int n_ops)
    int ck_net_run(const ck_net *net, int steps, const ck_io *feeds, int n_feeds,
                   const ck_io *fetches, int n_fetches)
