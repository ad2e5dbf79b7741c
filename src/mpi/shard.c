/* shard.c — a model's log density with its rows spread over MPI ranks, summed in a fixed tree.
 *
 * The rows are cut into blocks of block_rows; block b is one leaf: the model run over that
 * block's rows (a view the caller's function fills) under a handler that masks every site
 * outside the data plate, except in block 0, which also carries the priors and the Jacobian.
 * The leaves' values (log density and gradient, d + 1 doubles) are added in one binary tree
 * over the block indices, split at the midpoint: S(lo, hi) = S(lo, mid) + S(mid, hi). The tree
 * does not depend on the ranks, only the place where each node is computed does: a rank adds
 * up every node whose blocks all lie in its rows and whose parent's do not, and sends those
 * nodes (at most about 2 log2(blocks) of them) to every rank (one MPI_Allgatherv per
 * evaluation); every rank then evaluates the top of the tree with the nodes it received. Every
 * addition is the same pair of doubles whatever the ranks, so the result is identical, bit for
 * bit, for any number of ranks — which is what lets NUTS give the same draws on 1 or 8 ranks.
 * MPI_Allreduce cannot promise that: its order of summation is the implementation's.
 *
 * Each rank's contribution starts with a small header: its status (the first failing block's,
 * or OK) and whether it has been asked to stop (a signal). A failure anywhere becomes the same
 * failure everywhere: the first failing rank broadcasts its message.
 */
#include "internal/mpi_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 2 /* status, stop request */

void em_mpi_partition(size_t total_rows, size_t block_rows, int size, int rank, size_t *first_row,
                      size_t *num_rows) {
    if (block_rows == 0) block_rows = EM_MPI_DEFAULT_BLOCK_ROWS;
    size_t nb = total_rows / block_rows + (total_rows % block_rows != 0);
    size_t R = size > 0 ? (size_t)size : 1, r = rank >= 0 ? (size_t)rank : 0;
    /* r * nb / R without overflow for any realistic row count: nb < 2^40, R < 2^24 */
    size_t b0 = r * nb / R, b1 = (r + 1) * nb / R;
    size_t lo = b0 * block_rows, hi = b1 * block_rows;
    if (lo > total_rows) lo = total_rows;
    if (hi > total_rows) hi = total_rows;
    if (first_row) *first_row = lo;
    if (num_rows) *num_rows = hi - lo;
}

em_status em_mpi_agree(MPI_Comm comm, em_status st, em_error *err) {
    int size, rank;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    int mine = (int)st, *all = malloc((size_t)size * sizeof *all);
    int failed = -1, code = EM_OK;
    if (!all) {
        /* cannot learn the others' status: still take part in a collective of fixed size */
        int worst = mine == EM_OK ? EM_ERR_NOMEM : mine;
        MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, comm);
        return em_error_set(err, (em_status)worst, "mpi: out of memory agreeing on a status");
    }
    MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, comm);
    for (int r = 0; r < size && failed < 0; r++)
        if (all[r] != EM_OK) failed = r, code = all[r];
    free(all);
    if (failed < 0) return EM_OK;
    em_error e = {0};
    if (rank == failed) {
        if (err) e = *err;
        e.status = (em_status)code;
    }
    MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, failed, comm);
    if (err) *err = e;
    return (em_status)code;
}

/* ---- the handler that makes a block ------------------------------------------------------------ */

typedef struct shard_handler {
    em_handler base;
    const em_block_arg *arg;
} shard_handler;

static int in_plate(const em_msg *msg, const char *plate) {
    for (int i = 0; i < msg->nplates; i++)
        if (strcmp(msg->plates[i], plate) == 0) return 1;
    return 0;
}

static void shard_process(em_handler *h, em_msg *msg) {
    const em_block_arg *a = ((shard_handler *)h)->arg;
    if (msg->kind != EM_SITE_SAMPLE && msg->kind != EM_SITE_OBSERVE && msg->kind != EM_SITE_FACTOR) return;
    if (in_plate(msg, a->plate)) {
        if (msg->kind == EM_SITE_SAMPLE && !msg->is_observed)
            em_model_fail(msg->model, EM_ERR_MODEL,
                          "site '%s': a latent site inside the data plate '%s' (one value per row) cannot be "
                          "sharded over ranks; only observed sites and factors may be per row",
                          msg->name, a->plate);
        msg->scale *= a->data_scale;
        return;
    }
    if (!a->count_once) msg->masked = 1;
}

void em_mpi_block_model(em_model *m, const void *arg) {
    const em_block_arg *a = arg;
    shard_handler h;
    memset(&h, 0, sizeof h);
    h.base.process = shard_process;
    h.base.kind = "shard";
    h.arg = a;
    if (em_push(m, &h.base) != EM_OK) {
        em_model_fail(m, EM_ERR_MODEL, "mpi: the handler stack is full");
        return;
    }
    a->fn(m, a->view);
    em_pop(m, &h.base);
}

/* ---- the fixed tree ------------------------------------------------------------------------------ */

static size_t tree_mid(size_t lo, size_t hi) { return lo + (hi - lo) / 2; }

static void vec_add(double *out, const double *x, size_t w) {
    for (size_t i = 0; i < w; i++) out[i] += x[i];
}

/* S(lo, hi) of the leaves leaf[(b - base) * w ...] into out; scratch holds w per level below. */
static void tree_local(const double *leaf, size_t base, size_t lo, size_t hi, size_t w, double *out,
                       double *scratch) {
    if (hi - lo == 1) {
        memcpy(out, leaf + (lo - base) * w, w * sizeof *out);
        return;
    }
    size_t mid = tree_mid(lo, hi);
    tree_local(leaf, base, lo, mid, w, out, scratch + w);
    tree_local(leaf, base, mid, hi, w, scratch, scratch + w);
    vec_add(out, scratch, w);
}

/* The rank whose blocks contain [lo, hi) whole, or -1. first[0..size] are the ranks' first
 * blocks (increasing: every rank has at least one). */
static int owner_of(const size_t *first, int size, size_t lo, size_t hi) {
    int a = 0, b = size - 1;
    while (a < b) { /* the last rank with first[r] <= lo */
        int m = (a + b + 1) / 2;
        if (first[m] <= lo) a = m;
        else b = m - 1;
    }
    return hi <= first[a + 1] ? a : -1;
}

/* The nodes rank r computes, in the order the top of the tree reads them: call emit on each. */
typedef struct emit_ctx {
    const size_t *first;
    int size, r;
    size_t count;        /* nodes so far */
    const double *leaf;  /* NULL: only count */
    double *out;         /* next node's place */
    size_t w;
    double *scratch;
} emit_ctx;

static void emit_nodes(emit_ctx *c, size_t lo, size_t hi) {
    size_t a = c->first[c->r], b = c->first[c->r + 1];
    if (hi <= a || lo >= b) return;
    if (owner_of(c->first, c->size, lo, hi) == c->r) {
        if (c->leaf) {
            tree_local(c->leaf, a, lo, hi, c->w, c->out, c->scratch);
            c->out += c->w;
        }
        c->count++;
        return;
    }
    size_t mid = tree_mid(lo, hi);
    emit_nodes(c, lo, mid);
    emit_nodes(c, mid, hi);
}

/* The top of the tree from the gathered nodes: cursor[r] walks rank r's nodes. */
static void tree_global(const size_t *first, int size, const double *recv, const int *displs, size_t *cursor,
                        size_t lo, size_t hi, size_t w, double *out, double *scratch) {
    int r = owner_of(first, size, lo, hi);
    if (r >= 0) {
        memcpy(out, recv + displs[r] + HEADER + cursor[r] * w, w * sizeof *out);
        cursor[r]++;
        return;
    }
    size_t mid = tree_mid(lo, hi);
    tree_global(first, size, recv, displs, cursor, lo, mid, w, out, scratch + w);
    tree_global(first, size, recv, displs, cursor, mid, hi, w, scratch, scratch + w);
    vec_add(out, scratch, w);
}

static size_t tree_depth(size_t nb) {
    size_t d = 1;
    while (((size_t)1 << (d - 1)) < nb) d++;
    return d + 1;
}

/* ---- the density ----------------------------------------------------------------------------------- */

typedef struct shard_layout {
    MPI_Comm comm;
    int rank, size;
    size_t nblocks, block_rows, total_rows, dim;
    size_t *first;          /* [size + 1] first block of each rank */
    int *counts, *displs;   /* doubles each rank sends, and where they land */
    size_t recv_total;
    em_block_arg *args;     /* [local blocks] */
    unsigned char *views;
    size_t nlocal;
    volatile sig_atomic_t *stop_in; /* this rank asked to stop (a signal), or NULL */
    volatile int *cancel_out;       /* set when any rank asked */
    int refs;
} shard_layout;

typedef struct shard_state {
    shard_layout *L;
    em_logdensity **blocks;
    double *leaf, *send, *recv, *scratch, *top;
    size_t *cursor;
} shard_state;

static void layout_release(shard_layout *L) {
    if (!L || --L->refs > 0) return;
    free(L->first);
    free(L->counts);
    free(L->displs);
    free(L->args);
    free(L->views);
    free(L);
}

static void state_free(shard_state *s) {
    if (!s) return;
    if (s->blocks)
        for (size_t i = 0; i < s->L->nlocal; i++) em_logdensity_destroy(s->blocks[i]);
    free(s->blocks);
    free(s->leaf);
    free(s->send);
    free(s->recv);
    free(s->scratch);
    free(s->top);
    free(s->cursor);
    layout_release(s->L);
    free(s);
}

static shard_state *state_alloc(shard_layout *L) {
    shard_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->L = L;
    L->refs++;
    size_t w = L->dim + 1, depth = tree_depth(L->nblocks);
    s->blocks = calloc(L->nlocal, sizeof *s->blocks);
    s->leaf = malloc(L->nlocal * w * sizeof *s->leaf);
    s->send = malloc((size_t)L->counts[L->rank] * sizeof *s->send);
    s->recv = malloc(L->recv_total * sizeof *s->recv);
    s->scratch = malloc(depth * w * sizeof *s->scratch);
    s->top = malloc(w * sizeof *s->top);
    s->cursor = malloc((size_t)L->size * sizeof *s->cursor);
    if (!s->blocks || !s->leaf || !s->send || !s->recv || !s->scratch || !s->top || !s->cursor) {
        state_free(s);
        return NULL;
    }
    return s;
}

static em_status shard_eval(void *state, const double *theta, double *lp, double *grad, em_error *err) {
    shard_state *s = state;
    shard_layout *L = s->L;
    size_t w = L->dim + 1;
    em_status local = EM_OK;
    em_error e = {0};
    for (size_t i = 0; i < L->nlocal && local == EM_OK; i++) {
        double *v = s->leaf + i * w;
        local = em_logdensity_eval(s->blocks[i], theta, v, v + 1, &e);
    }
    s->send[0] = (double)local;
    s->send[1] = L->stop_in && *L->stop_in ? 1.0 : 0.0;
    if (local == EM_OK) {
        emit_ctx c = {L->first, L->size, L->rank, 0, s->leaf, s->send + HEADER, w, s->scratch};
        emit_nodes(&c, 0, L->nblocks);
    } else {
        /* the nodes are not read when a rank failed, but the message has its fixed size */
        for (int k = HEADER; k < L->counts[L->rank]; k++) s->send[k] = 0.0;
    }
    MPI_Allgatherv(s->send, L->counts[L->rank], MPI_DOUBLE, s->recv, L->counts, L->displs, MPI_DOUBLE, L->comm);
    int failed = -1, stop = 0;
    for (int r = 0; r < L->size; r++) {
        const double *h = s->recv + L->displs[r];
        if (failed < 0 && h[0] != (double)EM_OK) failed = r;
        stop |= h[1] != 0.0;
    }
    if (stop && L->cancel_out) *L->cancel_out = 1;
    if (failed >= 0) {
        em_status st = (em_status)(int)s->recv[L->displs[failed]];
        e.status = st;
        MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, failed, L->comm);
        *lp = -INFINITY;
        return em_error_set(err, st, "%s", e.msg);
    }
    for (int r = 0; r < L->size; r++) s->cursor[r] = 0;
    tree_global(L->first, L->size, s->recv, L->displs, s->cursor, 0, L->nblocks, w, s->top, s->scratch);
    *lp = s->top[0];
    if (grad) memcpy(grad, s->top + 1, L->dim * sizeof *grad);
    if (!isfinite(*lp)) return em_error_set(err, EM_ERR_NONFINITE, "mpi: the log density is %g", *lp);
    return EM_OK;
}

static em_status shard_constrain(void *state, const double *theta, double *out, em_error *err) {
    shard_state *s = state;
    return em_logdensity_constrain(s->blocks[0], theta, out, err);
}

static void *shard_clone(const void *state) {
    const shard_state *s = state;
    shard_state *c = state_alloc(s->L);
    if (!c) return NULL;
    for (size_t i = 0; i < s->L->nlocal; i++)
        if (!(c->blocks[i] = em_logdensity_clone(s->blocks[i]))) {
            state_free(c);
            return NULL;
        }
    return c;
}

static void shard_destroy(void *state) { state_free(state); }

static const em_logdensity_impl shard_impl = {shard_eval, shard_constrain, shard_clone, shard_destroy};

/* A 64-bit FNV-1a hash of the output names: the ranks' models must agree on them. */
static uint64_t names_hash(const em_logdensity *ld) {
    uint64_t h = 1469598103934665603ull;
    for (size_t j = 0; j < em_logdensity_num_outputs(ld); j++) {
        for (const char *p = em_logdensity_output_name(ld, j); *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    return h;
}

/* Check spec and the ranks' rows; fill the layout's partition. Local checks only. */
static em_status check_spec(const em_mpi_model *spec, em_error *err) {
    if (!spec) return em_error_set(err, EM_ERR_ARG, "mpi: no model spec");
    if (!spec->fn || !spec->view || !spec->data_plate || spec->view_size == 0)
        return em_error_set(err, EM_ERR_ARG, "mpi: the model spec needs fn, view, view_size and data_plate");
    if (spec->num_rows == 0)
        return em_error_set(err, EM_ERR_ARG, "mpi: this rank holds no rows (give every rank some rows, or use fewer ranks)");
    return EM_OK;
}

em_status em_mpi_layout_rows(MPI_Comm comm, const em_mpi_model *spec, size_t *first_row, size_t *total_rows,
                             size_t *block_rows, em_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    em_status st = check_spec(spec, err);
    unsigned long long n = st == EM_OK ? (unsigned long long)spec->num_rows : 0, before = 0, total = 0;
    unsigned long long B = st == EM_OK && spec->block_rows ? spec->block_rows : EM_MPI_DEFAULT_BLOCK_ROWS, Bmin = B, Bmax = B;
    MPI_Exscan(&n, &before, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
    if (rank == 0) before = 0; /* MPI_Exscan leaves rank 0's result undefined */
    MPI_Allreduce(&n, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, &Bmin, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm);
    MPI_Allreduce(MPI_IN_PLACE, &Bmax, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm);
    if (st == EM_OK && Bmin != Bmax)
        st = em_error_set(err, EM_ERR_ARG, "mpi: block_rows differs between ranks (%llu and %llu); it must be the same",
                          Bmin, Bmax);
    if (st == EM_OK && before % B != 0)
        st = em_error_set(err, EM_ERR_ARG,
                          "mpi: rank %d's rows start at row %llu, not at a multiple of block_rows = %llu "
                          "(em_mpi_partition gives a valid split)", rank, before + 1, B);
    if (st == EM_OK && rank < size - 1 && n % B != 0)
        st = em_error_set(err, EM_ERR_ARG,
                          "mpi: rank %d holds %llu rows, not a multiple of block_rows = %llu (only the last rank may "
                          "end with a partial block; em_mpi_partition gives a valid split)", rank, n, B);
    st = em_mpi_agree(comm, st, err);
    if (st != EM_OK) return st;
    *first_row = (size_t)before;
    *total_rows = (size_t)total;
    *block_rows = (size_t)B;
    return EM_OK;
}

em_logdensity *em_mpi_logdensity(MPI_Comm comm, const em_mpi_model *spec, const em_logdensity_options *opt,
                                 em_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    em_error e = {0};
    size_t first_row = 0, total = 0, B = 0;
    if (em_mpi_layout_rows(comm, spec, &first_row, &total, &B, &e) != EM_OK) {
        em_error_set(err, e.status, "%s", e.msg);
        return NULL;
    }
    em_logdensity_options o = {0};
    if (opt) o = *opt;
    em_status st = o.include_deterministic
                       ? em_error_set(&e, EM_ERR_ARG, "mpi: deterministic sites are not supported by the sharded density")
                       : EM_OK;
    shard_layout *L = calloc(1, sizeof *L);
    shard_state *s = NULL;
    size_t b0 = first_row / B, nloc = spec->num_rows / B + (spec->num_rows % B != 0);
    if (st == EM_OK && !L) st = em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory");
    if (L) {
        L->comm = comm;
        L->rank = rank;
        L->size = size;
        L->block_rows = B;
        L->total_rows = total;
        L->nblocks = total / B + (total % B != 0);
        L->nlocal = nloc;
        L->refs = 1;
        L->first = calloc((size_t)size + 1, sizeof *L->first);
        L->counts = calloc((size_t)size, sizeof *L->counts);
        L->displs = calloc((size_t)size, sizeof *L->displs);
        L->args = calloc(nloc, sizeof *L->args);
        L->views = calloc(nloc, spec->view_size);
        if (st == EM_OK && (!L->first || !L->counts || !L->displs || !L->args || !L->views))
            st = em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory for %zu blocks", nloc);
    }
    /* every rank's first block, so that each can walk the whole tree */
    unsigned long long mine = b0, *all = L && L->first ? calloc((size_t)size, sizeof *all) : NULL;
    if (st == EM_OK && !all) st = em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory");
    st = em_mpi_agree(comm, st, &e);
    if (st == EM_OK) {
        MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, comm);
        for (int r = 0; r < size; r++) L->first[r] = (size_t)all[r];
        L->first[size] = L->nblocks;
    }
    free(all);
    /* the local blocks */
    for (size_t i = 0; st == EM_OK && i < nloc; i++) {
        size_t lo = i * B, n = spec->num_rows - lo < B ? spec->num_rows - lo : B;
        void *view = L->views + i * spec->view_size;
        spec->view(spec->shard, lo, n, view);
        L->args[i] = (em_block_arg){spec->fn, view, spec->data_plate, b0 + i == 0, 1.0};
    }
    em_logdensity *first_block = NULL;
    if (st == EM_OK) {
        em_logdensity_options bo = o;
        bo.no_jacobian = b0 != 0;
        first_block = em_logdensity_from_model(em_mpi_block_model, &L->args[0], &bo, &e);
        if (!first_block) st = e.status ? e.status : EM_ERR_MODEL;
    }
    /* the ranks' models must have the same parameters */
    unsigned long long sig[2] = {0, 0}, lo_sig[2], hi_sig[2];
    if (st == EM_OK) {
        sig[0] = em_logdensity_dim(first_block);
        sig[1] = names_hash(first_block);
    }
    st = em_mpi_agree(comm, st, &e);
    if (st == EM_OK) {
        MPI_Allreduce(sig, lo_sig, 2, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm);
        MPI_Allreduce(sig, hi_sig, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm);
        if (lo_sig[0] != hi_sig[0] || lo_sig[1] != hi_sig[1])
            st = em_error_set(&e, EM_ERR_MODEL, "mpi: the ranks' models have different parameters (%llu and %llu "
                                                "unconstrained values, or other names): the model must not depend on "
                                                "which rows it sees", lo_sig[0], hi_sig[0]);
    }
    if (st == EM_OK) {
        L->dim = em_logdensity_dim(first_block);
        size_t off = 0;
        for (int r = 0; r < size; r++) {
            emit_ctx c = {L->first, size, r, 0, NULL, NULL, L->dim + 1, NULL};
            emit_nodes(&c, 0, L->nblocks);
            size_t cnt = HEADER + c.count * (L->dim + 1);
            if (cnt > (size_t)INT32_MAX || off > (size_t)INT32_MAX) {
                st = em_error_set(&e, EM_ERR_ARG, "mpi: too many blocks for one message (use larger blocks)");
                break;
            }
            L->counts[r] = (int)cnt;
            L->displs[r] = (int)off;
            off += cnt;
        }
        L->recv_total = off;
        if (st == EM_OK && !(s = state_alloc(L))) st = em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory");
    }
    if (s) {
        s->blocks[0] = first_block;
        first_block = NULL;
        for (size_t i = 1; st == EM_OK && i < nloc; i++) {
            em_logdensity_options bo = o;
            bo.no_jacobian = 1;
            s->blocks[i] = em_logdensity_from_model(em_mpi_block_model, &L->args[i], &bo, &e);
            if (!s->blocks[i]) st = e.status ? e.status : EM_ERR_MODEL;
            else if (em_logdensity_dim(s->blocks[i]) != L->dim)
                st = em_error_set(&e, EM_ERR_MODEL, "mpi: block %zu's model has %zu parameters, block %zu's %zu",
                                  b0 + i + 1, em_logdensity_dim(s->blocks[i]), b0 + 1, L->dim);
        }
    }
    em_logdensity_destroy(first_block);
    em_logdensity *ld = NULL;
    if (st == EM_OK) {
        size_t nout = em_logdensity_num_outputs(s->blocks[0]);
        const char **names = malloc((nout ? nout : 1) * sizeof *names);
        if (!names) st = em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory");
        for (size_t j = 0; names && j < nout; j++) names[j] = em_logdensity_output_name(s->blocks[0], j);
        if (names) ld = em_logdensity_create(&shard_impl, s, L->dim, nout, names);
        free(names);
        if (names && !ld) st = em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory");
        if (ld) s = NULL; /* owned by ld now */
    }
    st = em_mpi_agree(comm, st, &e);
    state_free(s);
    layout_release(L);
    if (st != EM_OK) {
        em_logdensity_destroy(ld);
        em_error_set(err, st, "%s", e.msg);
        return NULL;
    }
    return ld;
}

static shard_layout *layout_of(const em_logdensity *ld) {
    if (!ld || em_logdensity_impl_of(ld) != &shard_impl) return NULL;
    return ((shard_state *)em_logdensity_state(ld))->L;
}

size_t em_mpi_logdensity_blocks(const em_logdensity *ld, size_t *local_blocks) {
    shard_layout *L = layout_of(ld);
    if (local_blocks) *local_blocks = L ? L->nlocal : 0;
    return L ? L->nblocks : 0;
}

void em_mpi_logdensity_stop_flags(em_logdensity *ld, volatile sig_atomic_t *stop_in, volatile int *cancel_out) {
    shard_layout *L = layout_of(ld);
    if (!L) return;
    L->stop_in = stop_in;
    L->cancel_out = cancel_out;
}
