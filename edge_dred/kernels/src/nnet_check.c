/* Validation of layer and network descriptions. Weight files are untrusted
 * input, so every length and index is checked once here, before any kernel
 * runs; the kernels themselves then do no bounds checks. */
#include <math.h>

#include "nnet.h"

#define CK_MAX_DIM (1 << 20)

int ck_linear_check(const ck_linear *l, long fw_len, long qw_len, long idx_len, long scale_len,
                    long bias_len, long diag_len)
{
    if (!l) return CK_ERR_SHAPE;
    if (l->rows < 1 || l->cols < 1 || l->rows > CK_MAX_DIM || l->cols > CK_MAX_DIM) return CK_ERR_SHAPE;
    if (l->rows_pad != ((l->rows + 7) & ~7)) return CK_ERR_SHAPE;
    if (l->bias ? bias_len != l->rows : bias_len != 0) return CK_ERR_SHAPE;
    if (l->diag) {
        if (diag_len != l->rows || l->rows % l->cols != 0) return CK_ERR_SHAPE;
    } else if (diag_len != 0) {
        return CK_ERR_SHAPE;
    }
    switch (l->kind) {
    case CK_W_FLOAT:
        if (l->cols_pad != l->cols || !l->fw) return CK_ERR_SHAPE;
        if (fw_len != (long)l->rows_pad * l->cols) return CK_ERR_SHAPE;
        return CK_OK;
    case CK_W_INT8:
    case CK_W_SPARSE:
        if (l->cols_pad != ((l->cols + 3) & ~3) || !l->qw || !l->scale) return CK_ERR_SHAPE;
        if (scale_len != l->rows_pad) return CK_ERR_SHAPE;
        if (!(l->input_scale >= 0.0f) || isinf(l->input_scale)) return CK_ERR_SHAPE;
        if (l->kind == CK_W_INT8) {
            if (qw_len != (long)l->rows_pad * l->cols_pad) return CK_ERR_SHAPE;
            return CK_OK;
        } else {
            long p = 0, blocks = 0;
            int groups = l->rows_pad / 8, max_blocks = l->cols_pad / 4;
            if (!l->idx) return CK_ERR_INDEX;
            for (int g = 0; g < groups; g++) {
                int nb;
                if (p >= idx_len) return CK_ERR_INDEX;
                nb = l->idx[p++];
                if (nb < 0 || nb > max_blocks || (long)nb > idx_len - p) return CK_ERR_INDEX;
                for (int b = 0; b < nb; b++) {
                    int c = l->idx[p++];
                    if (c < 0 || (c & 3) || c > l->cols_pad - 4) return CK_ERR_INDEX;
                }
                blocks += nb;
            }
            if (p != idx_len || qw_len != blocks * 32) return CK_ERR_INDEX;
            return CK_OK;
        }
    default:
        return CK_ERR_SHAPE;
    }
}

static int ck_slice_ok(const ck_net *net, const ck_slice *s)
{
    if (s->buf < 0 || s->buf >= net->n_bufs || !net->bufs[s->buf]) return 0;
    if (s->offset < 0 || s->len < 1) return 0;
    return (long)s->offset + s->len <= net->buf_len[s->buf];
}

static long ck_op_in_len(const ck_op *op)
{
    long n = 0;
    for (int i = 0; i < op->n_in; i++) n += op->in[i].len;
    return n;
}

static long ck_op_scratch(const ck_op *op)
{
    long n = ck_op_in_len(op);
    switch (op->type) {
    case CK_OP_GLU: return 2 * n;
    case CK_OP_GRU: return n + 6L * op->gru.rec.cols;
    case CK_OP_CONV1D: return (long)op->kernel_size * n;
    case CK_OP_LAG: return op->out.len > n ? op->out.len : n;
    default: return n;
    }
}

static long ck_op_qscratch(const ck_op *op)
{
    switch (op->type) {
    case CK_OP_DENSE:
    case CK_OP_GLU:
    case CK_OP_CONV1D: return op->lin.cols_pad;
    case CK_OP_GRU: return op->gru.in.cols_pad > op->gru.rec.cols_pad ? op->gru.in.cols_pad : op->gru.rec.cols_pad;
    default: return 0;
    }
}

long ck_net_scratch_floats(const ck_op *ops, int n_ops)
{
    long m = 1;
    for (int i = 0; i < n_ops; i++) {
        long s = ck_op_scratch(&ops[i]);
        if (s > m) m = s;
    }
    return m;
}

long ck_net_qscratch_bytes(const ck_op *ops, int n_ops)
{
    long m = 4;
    for (int i = 0; i < n_ops; i++) {
        long s = ck_op_qscratch(&ops[i]);
        if (s > m) m = s;
    }
    return m;
}

/* Checks slices and shapes; the ck_linear members must already have passed
 * ck_linear_check (done where the weight arrays' lengths are known). */
int ck_net_check(const ck_net *net)
{
    if (!net || net->n_ops < 0 || net->n_bufs < 0 || (net->n_ops > 0 && !net->ops)) return CK_ERR_OP;
    for (int b = 0; b < net->n_bufs; b++)
        if (net->buf_len[b] < 0 || (net->buf_len[b] > 0 && !net->bufs[b])) return CK_ERR_SLICE;
    for (int i = 0; i < net->n_ops; i++) {
        const ck_op *op = &net->ops[i];
        long in_len;
        if (op->n_in < 1 || op->n_in > CK_MAX_INPUTS) return CK_ERR_OP;
        for (int k = 0; k < op->n_in; k++)
            if (!ck_slice_ok(net, &op->in[k])) return CK_ERR_SLICE;
        if (!ck_slice_ok(net, &op->out)) return CK_ERR_SLICE;
        if (op->activation < CK_ACT_NONE || op->activation > CK_ACT_EXP) return CK_ERR_OP;
        in_len = ck_op_in_len(op);
        switch (op->type) {
        case CK_OP_DENSE:
            if (op->lin.cols != in_len || op->lin.rows != op->out.len) return CK_ERR_SHAPE;
            break;
        case CK_OP_GLU:
            if (op->lin.cols != in_len || op->lin.rows != in_len || op->out.len != in_len) return CK_ERR_SHAPE;
            break;
        case CK_OP_ACT:
            if (op->out.len != in_len) return CK_ERR_SHAPE;
            break;
        case CK_OP_MUL:
            if (op->n_in != 2 || (op->in[1].len != op->in[0].len && op->in[1].len != 1) ||
                op->out.len != op->in[0].len)
                return CK_ERR_SHAPE;
            break;
        case CK_OP_ADD:
            if (op->n_in != 2 || op->in[0].len != op->in[1].len || op->out.len != op->in[0].len)
                return CK_ERR_SHAPE;
            break;
        case CK_OP_LAG:
            /* Every tap must land inside the history: the oldest at
             * H - lag_max - lag_pre >= 0; newer ones wrap below H. */
            if ((op->n_in != 2 && op->n_in != 3) || op->in[1].len != 1 || (op->n_in == 3 && op->in[2].len != 1))
                return CK_ERR_SHAPE;
            if (op->lag_pre < 0 || op->lag_min < 1 || op->lag_max < op->lag_min ||
                (long)op->lag_max + op->lag_pre > op->in[0].len || op->out.len > CK_MAX_DIM)
                return CK_ERR_SHAPE;
            break;
        case CK_OP_SHIFT:
            if (in_len > op->out.len) return CK_ERR_SHAPE;
            break;
        case CK_OP_GRU: {
            int H = op->gru.rec.cols;
            if (op->gru.rec.rows != 3 * H || op->gru.in.rows != 3 * H || op->gru.in.cols != in_len ||
                op->out.len != H)
                return CK_ERR_SHAPE;
            break;
        }
        case CK_OP_CONV1D:
            if (op->kernel_size < 1 || op->dilation < 1 || op->kernel_size > 4096 || op->dilation > 4096)
                return CK_ERR_SHAPE;
            if (op->lin.cols != (long)op->kernel_size * in_len || op->lin.rows != op->out.len) return CK_ERR_SHAPE;
            if (op->kernel_size > 1) {
                if (!ck_slice_ok(net, &op->hist)) return CK_ERR_SLICE;
                if (op->hist.len != (long)(op->kernel_size - 1) * op->dilation * in_len) return CK_ERR_SHAPE;
            }
            break;
        default:
            return CK_ERR_OP;
        }
    }
    if (!net->scratch || !net->qscratch) return CK_ERR_SCRATCH;
    if (net->scratch_len < ck_net_scratch_floats(net->ops, net->n_ops)) return CK_ERR_SCRATCH;
    if (net->qscratch_len < ck_net_qscratch_bytes(net->ops, net->n_ops)) return CK_ERR_SCRATCH;
    return CK_OK;
}
