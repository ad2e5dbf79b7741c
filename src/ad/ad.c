/* ad.c — the reverse-mode tape and its elementwise, reduction and indexing ops. See ad.h.
 *
 * Each op has a forward function that creates one node for the whole vector and a backward
 * function that adds the node's adjoint times the local partial into its inputs' adjoints.
 * Broadcasting is done with a stride of 0 for a scalar operand, so one loop serves
 * vector∘vector, vector∘scalar and scalar∘vector.
 */
#include "internal/mathx.h"
#include "internal/tape.h"
#include "internal/vecsum.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_sf_psi.h>

/* Generations are unique across all tapes of the process, not just per tape: a cache keyed on
 * (tape pointer, generation), like the parameter store's leaves, must not mistake a new tape
 * that malloc placed at a freed tape's address for the old one. */
static uint64_t next_generation = 1;
static uint64_t new_generation(void) { return __atomic_fetch_add(&next_generation, 1, __ATOMIC_RELAXED); }

em_tape *em_tape_create(void) {
    em_init();
    em_tape *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->generation = new_generation();
    t->arena = em_arena_create(1 << 16);
    t->cap = 64;
    t->nodes = malloc(t->cap * sizeof *t->nodes);
    if (!t->arena || !t->nodes) {
        em_tape_destroy(t);
        return NULL;
    }
    return t;
}

void em_tape_destroy(em_tape *t) {
    if (!t) return;
    em_arena_destroy(t->arena);
    free(t->nodes);
    free(t);
}

void em_tape_reset(em_tape *t) {
    t->count = 0;
    t->generation = new_generation();
    em_arena_reset(t->arena);
    em_error_clear(&t->err);
    t->value_read = 0;
    t->hidden_inputs = 0;
    t->active = NULL;
    t->nactive = 0;
}

size_t em_tape_size(const em_tape *t) { return t->count; }
uint64_t em_tape_generation(const em_tape *t) { return t->generation; }
em_arena *em_tape_arena(em_tape *t) { return t->arena; }
em_status em_tape_status(const em_tape *t) { return t->err.status; }
const em_error *em_tape_error(const em_tape *t) { return &t->err; }

em_var em_tape_fail(em_tape *t, em_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    em_error_vset(&t->err, s, fmt, ap);
    va_end(ap);
    return EM_VAR_INVALID;
}

int em_inputs_ok(const em_var *in, int nin) {
    for (int i = 0; i < nin; i++)
        if (in[i].id < 0) return 0;
    return 1;
}

static em_node *push_node(em_tape *t, em_var *out) {
    if (t->count == t->cap) {
        size_t nc = 2 * t->cap;
        em_node *nn = realloc(t->nodes, nc * sizeof *nn);
        if (!nn) {
            em_tape_fail(t, EM_ERR_NOMEM, "tape: out of memory growing to %zu nodes", nc);
            return NULL;
        }
        t->nodes = nn;
        t->cap = nc;
    }
    out->id = (int32_t)t->count;
    em_node *n = &t->nodes[t->count++];
    /* field by field, not memset: GCC turns a memset (or a {0} assignment) of this size into
     * rep stos, whose start-up cost made this the most expensive line of a small model */
    n->val = n->adj = NULL;
    n->n = n->rows = n->cols = 0;
    n->backward = NULL;
    n->forward = NULL;
    n->aux = NULL;
    n->c = 0.0;
    for (int i = 0; i < EM_NODE_MAX_INPUTS; i++) n->in[i] = -1;
    n->nin = 0;
    n->adj_set = EM_ADJ_EMPTY;
    n->live = 1;
    n->takes_view = 0;
    n->adj_view = NULL;
    n->adj_scale = 0.0;
    return n;
}

/* A fresh adjoint, uninitialised (see the adjoint contract in internal/tape.h). Sanitizer
 * builds fill it with NaN: a backward function that adds into an adjoint it has not claimed
 * then yields NaN gradients, which the tests catch, instead of passing by luck on zeroed pages. */
#if defined(__SANITIZE_ADDRESS__)
#define EM_POISON_ADJOINTS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EM_POISON_ADJOINTS 1
#endif
#endif
static double *new_adjoint(em_tape *t, size_t n) {
    double *adj = em_arena_alloc(t->arena, n * sizeof(double));
#ifdef EM_POISON_ADJOINTS
    if (adj)
        for (size_t i = 0; i < n; i++) adj[i] = NAN;
#endif
    return adj;
}

em_node *em_node_new(em_tape *t, size_t rows, size_t cols, const em_var *in, int nin,
                     em_backward_fn backward, em_var *out) {
    *out = EM_VAR_INVALID;
    if (!em_inputs_ok(in, nin)) return NULL;
    int grad = 0;
    for (int i = 0; i < nin; i++)
        if (t->nodes[in[i].id].adj) grad = 1;
    size_t n = rows * cols;
    double *val = em_arena_alloc(t->arena, n * sizeof(double));
    double *adj = grad ? new_adjoint(t, n) : NULL;
    if (!val || (grad && !adj)) {
        em_tape_fail(t, EM_ERR_NOMEM, "tape: out of memory for a node of %zu values", n);
        return NULL;
    }
    em_node *node = push_node(t, out);
    if (!node) return NULL;
    node->val = val;
    node->adj = adj;
    node->n = n;
    node->rows = rows;
    node->cols = cols;
    node->nin = nin;
    for (int i = 0; i < nin; i++) node->in[i] = in[i].id;
    node->backward = grad ? backward : NULL;
    return node;
}

size_t em_broadcast_len(em_tape *t, const char *op, size_t na, size_t nb) {
    if (na == nb || nb == 1) return na;
    if (na == 1) return nb;
    em_tape_fail(t, EM_ERR_SHAPE, "%s: lengths %zu and %zu do not broadcast", op, na, nb);
    return 0;
}


/* The adjoint loops below name their arrays through restrict-qualified parameters or locals:
 * an input's adjoint never overlaps the values or the output adjoint it is computed from, and
 * saying so spares the compiler a run-time overlap check when it vectorises (clang at -O2; GCC
 * at -O2 only for restrict parameters and loops blocked by EM_VEC_FOR, see internal/tape.h). */
static void axpy_kernel(double *restrict out, double c, const double *restrict x, size_t n, int first) {
    if (first)
        EM_VEC_FOR(i, n, out[i] = c * x[i];);
    else
        EM_VEC_FOR(i, n, out[i] += c * x[i];);
}

void em_adj_axpy(em_node *in, double c, const double *x) {
    if (in->adj) axpy_kernel(in->adj, c, x, in->n, em_adj_first(in));
}

void em_adj_materialize(em_node *n) {
    if (n->adj_set != EM_ADJ_VIEW) return;
    axpy_kernel(n->adj, n->adj_scale, n->adj_view, n->n, 1);
    n->adj_set = EM_ADJ_HELD;
}

/* Below this length a view saves too little to be worth the extra state. */
enum { ADJ_VIEW_MIN = 16 };

void em_adj_pass_view(em_node *in, double c, const double *x) {
    if (!in->adj) return;
    if (in->adj_set == EM_ADJ_EMPTY && in->n >= ADJ_VIEW_MIN) {
        in->adj_set = EM_ADJ_VIEW;
        in->adj_scale = c;
        in->adj_view = x;
        return;
    }
    axpy_kernel(in->adj, c, x, in->n, em_adj_first(in));
}

void em_adj_accumulate_scaled(em_node *a, double c, const double *g, size_t n) {
    if (!a->adj) return;
    int first = em_adj_first(a);
    if (a->n == n) {
        if (first && c == 1.0)
            memcpy(a->adj, g, n * sizeof(double));
        else
            axpy_kernel(a->adj, c, g, n, first);
    } else {
        double s = c * em_sum_vec(g, n);
        a->adj[0] = first ? s : a->adj[0] + s;
    }
}

void em_adj_accumulate(em_node *a, const double *g, size_t n) { em_adj_accumulate_scaled(a, 1.0, g, n); }

/* ---- leaves --------------------------------------------------------------------------- */

em_var em_leaf(em_tape *t, const double *x, size_t n) {
    if (n == 0) return em_tape_fail(t, EM_ERR_SHAPE, "leaf: empty vector");
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i])) return em_tape_fail(t, EM_ERR_NONFINITE, "leaf: element %zu is NaN", i);
    em_var v;
    em_node *node = push_node(t, &v);
    if (!node) return v;
    node->val = em_arena_alloc(t->arena, n * sizeof(double));
    node->adj = new_adjoint(t, n);
    if (!node->val || !node->adj) {
        t->count--;
        return em_tape_fail(t, EM_ERR_NOMEM, "leaf: out of memory for %zu values", n);
    }
    memcpy(node->val, x, n * sizeof(double));
    node->n = node->rows = n;
    node->cols = 1;
    return v;
}

em_var em_leaf_scalar(em_tape *t, double x) { return em_leaf(t, &x, 1); }

/* No copy and no scan: on a large vector those two passes cost as much as the density that
 * uses it. See ad.h for why skipping the NaN check cannot give a silent wrong answer. */
em_var em_leaf_ref(em_tape *t, const double *x, size_t n) {
    if (n == 0) return em_tape_fail(t, EM_ERR_SHAPE, "leaf_ref: empty vector");
    if (!x) return em_tape_fail(t, EM_ERR_ARG, "leaf_ref: NULL data pointer");
    if (n > SIZE_MAX / sizeof(double)) return em_tape_fail(t, EM_ERR_SHAPE, "leaf_ref: %zu values is too large", n);
    double *adj = new_adjoint(t, n);
    if (!adj) return em_tape_fail(t, EM_ERR_NOMEM, "leaf_ref: out of memory for %zu adjoints", n);
    em_var v;
    em_node *node = push_node(t, &v);
    if (!node) return v;
    node->val = (double *)x; /* referenced, never written: leaves have no backward */
    node->adj = adj;
    node->c = 1.0; /* marks a referenced leaf: em_leaf_assign must not write the caller's array */
    node->n = node->rows = n;
    node->cols = 1;
    return v;
}

em_var em_const_matrix(em_tape *t, const double *x, size_t rows, size_t cols) {
    if (rows * cols == 0)
        return em_tape_fail(t, EM_ERR_SHAPE, "const: empty %zux%zu data (a data set with no rows?)", rows, cols);
    if (rows > SIZE_MAX / sizeof(double) / cols)
        return em_tape_fail(t, EM_ERR_SHAPE, "const: %zux%zu data is too large", rows, cols);
    if (!x) return em_tape_fail(t, EM_ERR_ARG, "const: NULL data pointer");
    em_var v;
    em_node *node = push_node(t, &v);
    if (!node) return v;
    node->val = (double *)x; /* referenced, never written: constants have no backward */
    node->n = rows * cols;
    node->rows = rows;
    node->cols = cols;
    return v;
}

em_var em_const(em_tape *t, const double *x, size_t n) { return em_const_matrix(t, x, n, 1); }

em_var em_const_copy(em_tape *t, const double *x, size_t n) {
    if (n == 0) return em_tape_fail(t, EM_ERR_SHAPE, "const: empty vector");
    double *copy = em_arena_alloc(t->arena, n * sizeof(double));
    if (!copy) return em_tape_fail(t, EM_ERR_NOMEM, "const: out of memory for %zu values", n);
    memcpy(copy, x, n * sizeof(double));
    return em_const_matrix(t, copy, n, 1);
}

em_var em_scalar(em_tape *t, double x) { return em_const_copy(t, &x, 1); }

/* ---- access ---------------------------------------------------------------------------- */

size_t em_len(const em_tape *t, em_var v) { return v.id < 0 ? 0 : t->nodes[v.id].n; }
size_t em_rows(const em_tape *t, em_var v) { return v.id < 0 ? 0 : t->nodes[v.id].rows; }
size_t em_cols(const em_tape *t, em_var v) { return v.id < 0 ? 0 : t->nodes[v.id].cols; }

/* A value that depends on a leaf, read by code that may branch on it: the tape can no longer
 * stand in for that code (em_tape_replayable). The tape is the caller's, so the flag is the
 * only thing written through the const pointer. */
static void note_read(const em_tape *t, em_var v) {
    if (t->nodes[v.id].adj) ((em_tape *)t)->value_read = 1;
}
const double *em_value(const em_tape *t, em_var v) {
    if (v.id < 0) return NULL;
    note_read(t, v);
    return t->nodes[v.id].val;
}
double em_value_scalar(const em_tape *t, em_var v) {
    if (v.id < 0) return NAN;
    note_read(t, v);
    return t->nodes[v.id].val[0];
}
const double *em_adjoint(const em_tape *t, em_var v) {
    if (v.id < 0) return NULL;
    /* a view is written out on first reading, an empty adjoint (em_zero_adjoints) as zeros:
     * the same adjoint, as an array (the tape is const to the caller, but what the node
     * holds does not change) */
    em_node *n = &t->nodes[v.id];
    return em_adj_target(n);
}
int em_needs_grad(const em_tape *t, em_var v) { return v.id >= 0 && t->nodes[v.id].adj != NULL; }

/* ---- replay ------------------------------------------------------------------------------ */


int em_tape_replayable(const em_tape *t) {
    if (t->value_read || t->err.status != EM_OK) return 0;
    for (size_t i = 0; i < t->count; i++) {
        const em_node *n = &t->nodes[i];
        if (n->adj && n->nin > 0 && !n->forward) return 0;
    }
    return 1;
}

em_status em_tape_forward(em_tape *t, int all) {
    em_error_clear(&t->err);
    t->err_node = -1;
    if (t->active && !all) {
        /* the adjoints are marked empty on the way (the adjoint contract: the first
         * contribution writes), so the next backward needs no zeroing pass */
        for (size_t k = 0; k < t->nactive; k++) {
            em_node *n = &t->nodes[t->active[k]];
            if (n->forward) n->forward(t, n);
            n->adj_set = 0;
            if (t->err.status != EM_OK && t->err_node < 0) t->err_node = t->active[k];
        }
        return t->err.status;
    }
    /* a node without an adjoint depends on constants only: its value cannot have changed */
    for (size_t i = 0; i < t->count; i++) {
        em_node *n = &t->nodes[i];
        if (!n->adj || !(n->live || all)) continue;
        if (n->forward) n->forward(t, n);
        if (!all) n->adj_set = 0;
        if (t->err.status != EM_OK && t->err_node < 0) t->err_node = (int32_t)i;
    }
    return t->err.status;
}

void em_tape_prune(em_tape *t, const em_var *roots, size_t k) {
    if (t->hidden_inputs) return;
    for (size_t i = 0; i < t->count; i++) t->nodes[i].live = 0;
    for (size_t j = 0; j < k; j++)
        if (roots[j].id >= 0 && (size_t)roots[j].id < t->count) t->nodes[roots[j].id].live = 1;
    size_t nactive = 0;
    for (size_t i = t->count; i-- > 0;) {
        const em_node *n = &t->nodes[i];
        if (!n->live) continue;
        for (int j = 0; j < n->nin; j++) t->nodes[n->in[j]].live = 1;
        nactive += n->adj != NULL;
    }
    /* without memory for the list, everything still works by scanning every node */
    int32_t *active = em_arena_alloc(t->arena, (nactive ? nactive : 1) * sizeof *active);
    if (!active) return;
    size_t m = 0;
    for (size_t i = 0; i < t->count; i++)
        if (t->nodes[i].live && t->nodes[i].adj) active[m++] = (int32_t)i;
    t->active = active;
    t->nactive = m;
}

em_status em_leaf_assign(em_tape *t, em_var v, const double *x, size_t n) {
    if (v.id < 0 || (size_t)v.id >= t->count || t->nodes[v.id].nin != 0 || !t->nodes[v.id].adj ||
        t->nodes[v.id].n != n || t->nodes[v.id].c != 0.0)
        return em_error_set(&t->err, EM_ERR_ARG,
                            "leaf assign: variable %d is not a leaf of length %zu with values of its own (em_leaf)",
                            (int)v.id, n);
    double *restrict val = t->nodes[v.id].val;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) return em_error_set(&t->err, EM_ERR_NONFINITE, "leaf: element %zu is NaN", i);
        val[i] = x[i];
    }
    return EM_OK;
}

/* Zero every adjoint that holds no value, so that em_adjoint() reads zeros for whatever the
 * output does not depend on (and on every return path of em_backward, failed ones included). */
static void zero_unset_adjoints(em_tape *t) {
    if (t->active) { /* pruned: only the live nodes' adjoints are ever read */
        for (size_t k = 0; k < t->nactive; k++) {
            em_node *n = &t->nodes[t->active[k]];
            if (!n->adj_set) em_adj_target(n);
        }
        return;
    }
    for (size_t i = 0; i < t->count; i++) {
        em_node *n = &t->nodes[i];
        if (n->adj && !n->adj_set) em_adj_target(n);
    }
}

em_status em_backward(em_tape *t, em_var out) {
    if (t->err.status != EM_OK) {
        zero_unset_adjoints(t);
        return t->err.status;
    }
    if (out.id < 0 || (size_t)out.id >= t->count) {
        zero_unset_adjoints(t);
        return em_error_set(&t->err, EM_ERR_ARG, "backward: invalid output variable");
    }
    em_node *o = &t->nodes[out.id];
    if (o->n != 1) {
        zero_unset_adjoints(t);
        return em_error_set(&t->err, EM_ERR_SHAPE, "backward: output has length %zu, need a scalar", o->n);
    }
    if (o->adj) { /* a constant output has no adjoint: every gradient is zero */
        o->adj[0] = em_adj_first(o) ? 1.0 : o->adj[0] + 1.0;
        if (t->active && o->live) {
            /* pruned: visit only the live nodes with adjoints. When the sweep reaches a node,
             * every node after it has passed on its contribution, so one that received none
             * can be zeroed right there instead of in a pass of its own. */
            for (size_t k = t->nactive; k-- > 0;) {
                em_node *n = &t->nodes[t->active[k]];
                if (!n->adj_set) {
                    em_adj_target(n);
                } else if (t->active[k] <= out.id && n->backward) {
                    if (n->adj_set == EM_ADJ_VIEW && !n->takes_view) em_adj_materialize(n);
                    n->backward(t, n);
                }
            }
            return EM_OK;
        } else {
            for (int32_t i = out.id; i >= 0; i--) {
                em_node *n = &t->nodes[i];
                /* a node nothing reached has a zero adjoint and nothing to pass on */
                if (n->backward && n->adj_set && n->live) {
                    if (n->adj_set == EM_ADJ_VIEW && !n->takes_view) em_adj_materialize(n);
                    n->backward(t, n);
                }
            }
        }
    }
    zero_unset_adjoints(t);
    return EM_OK;
}

/* Marks every adjoint empty (the adjoint contract): the next sweep writes each one it reaches,
 * zeroes the others, and so takes exactly the steps of the first sweep; em_adjoint() reads an
 * empty adjoint as zeros. */
void em_zero_adjoints(em_tape *t) {
    if (t->active) {
        for (size_t k = 0; k < t->nactive; k++) t->nodes[t->active[k]].adj_set = EM_ADJ_EMPTY;
        return;
    }
    for (size_t i = 0; i < t->count; i++) t->nodes[i].adj_set = EM_ADJ_EMPTY;
}

/* ---- elementwise binary ops ------------------------------------------------------------ */

typedef struct {
    const double *a, *b;
    double *ga, *gb; /* input adjoints (may be NULL) */
    size_t sa, sb;   /* strides: 1 for a vector, 0 for a broadcast scalar */
    em_node *na, *nb;
} binary_view;

static binary_view binary_inputs(em_tape *t, em_node *self) {
    em_node *na = &t->nodes[self->in[0]], *nb = &t->nodes[self->in[1]];
    binary_view v = {na->val, nb->val, na->adj, nb->adj, na->n == 1 ? 0 : 1, nb->n == 1 ? 0 : 1, na, nb};
    if (self->n == 1) v.sa = v.sb = 0;
    return v;
}

/* Adjoint of a broadcast scalar input: sum over the output; of a vector: elementwise. The
 * other operand is read at stride 1 or 0 through separate loops (not i*stride), which leaves
 * each loop a plain unit-stride loop the compiler can vectorise, and the scalar sums run on four
 * accumulators (see em_sum_vec). A_AT(i) and B_AT(i) are the operands at element i. `first` says
 * whether the input's adjoint holds no value yet (the adjoint contract, internal/tape.h): the
 * loop then writes instead of adding.
 *
 * The elementwise case is a function of its own (BINARY_KERNEL), its arrays restrict-qualified
 * parameters, so that GCC at -O2 vectorises its loops (see EM_VEC_FOR in internal/tape.h). An
 * input's adjoint never overlaps the values or the output adjoint it is computed from; the two
 * operand arrays may be one (x∘x), which restrict allows since neither is written. */
#define BINARY_VEC_LOOP(ASSIGN, A_AT, B_AT, d_expr)                                       \
    EM_VEC_FOR(i, n, {                                                                     \
        double a = A_AT(i), b = B_AT(i);                                                   \
        (void)a; (void)b;                                                                  \
        out_[i] ASSIGN g[i] * (d_expr);                                                    \
    })
#define KAT_VEC_A(i) av[i]
#define KAT_VEC_B(i) bv[i]
#define KAT_ONE_A(i) a0
#define KAT_ONE_B(i) b0
#define BINARY_KERNEL(kname, d_expr)                                                      \
    static void kname(double *restrict out_, const double *restrict g, const double *restrict av, \
                      const double *restrict bv, const double *restrict y, size_t sa, size_t sb, \
                      size_t n, int first) {                                               \
        double a0 = av[0], b0 = bv[0];                                                     \
        (void)y; (void)a0; (void)b0;                                                       \
        if (sa && sb) {                                                                    \
            if (first) BINARY_VEC_LOOP(=, KAT_VEC_A, KAT_VEC_B, d_expr);                    \
            else BINARY_VEC_LOOP(+=, KAT_VEC_A, KAT_VEC_B, d_expr);                         \
        } else if (sa) {                                                                   \
            if (first) BINARY_VEC_LOOP(=, KAT_VEC_A, KAT_ONE_B, d_expr);                    \
            else BINARY_VEC_LOOP(+=, KAT_VEC_A, KAT_ONE_B, d_expr);                         \
        } else {                                                                           \
            if (first) BINARY_VEC_LOOP(=, KAT_ONE_A, KAT_VEC_B, d_expr);                    \
            else BINARY_VEC_LOOP(+=, KAT_ONE_A, KAT_VEC_B, d_expr);                         \
        }                                                                                  \
    }
#define BINARY_ADJ_SCALAR(ga, first, A_AT, B_AT, d_expr)                                  \
    do {                                                                                   \
        /* four named accumulators, unrolled by hand: an array indexed in an inner loop    \
         * stays in memory at -O2 and chains every add through a store */                  \
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                     \
        size_t i0 = 0;                                                                     \
        for (; i0 + 4 <= n; i0 += 4) {                                                     \
            BINARY_TERM(s0, i0, A_AT, B_AT, d_expr);                                       \
            BINARY_TERM(s1, i0 + 1, A_AT, B_AT, d_expr);                                   \
            BINARY_TERM(s2, i0 + 2, A_AT, B_AT, d_expr);                                   \
            BINARY_TERM(s3, i0 + 3, A_AT, B_AT, d_expr);                                   \
        }                                                                                  \
        for (; i0 < n; i0++) BINARY_TERM(s0, i0, A_AT, B_AT, d_expr);                      \
        double s_ = (s0 + s1) + (s2 + s3);                                                 \
        ga[0] = (first) ? s_ : ga[0] + s_;                                                 \
    } while (0)
/* acc += g[i]·d_expr at element i */
#define BINARY_TERM(acc, idx, A_AT, B_AT, d_expr)                                         \
    do {                                                                                   \
        size_t i = (idx);                                                                  \
        double a = A_AT(i), b = B_AT(i);                                                   \
        (void)a; (void)b;                                                                  \
        acc += g[i] * (d_expr);                                                            \
    } while (0)
#define AT_VEC_A(i) v.a[i]
#define AT_VEC_B(i) v.b[i]
#define AT_ONE_A(i) v.a[0]
#define AT_ONE_B(i) v.b[0]

/* vector a, broadcast scalar b, both needing a gradient (x + α, the intercept of a linear
 * predictor): one pass over the output adjoint serves both instead of two. */
#define BINARY_ADJ_FUSED(da_expr, db_expr)                                                \
    {                                                                                      \
        double *restrict out_ = v.ga;                                                      \
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                     \
        if (em_adj_first(v.na))                                                            \
            BINARY_FUSED_LOOP(=, da_expr, db_expr)                                         \
        else                                                                               \
            BINARY_FUSED_LOOP(+=, da_expr, db_expr)                                        \
        double s_ = (s0 + s1) + (s2 + s3);                                                 \
        v.gb[0] = em_adj_first(v.nb) ? s_ : v.gb[0] + s_;                                  \
        return;                                                                            \
    }
#define BINARY_FUSED_LOOP(ASSIGN, da_expr, db_expr)                                       \
    {                                                                                      \
        size_t i0 = 0;                                                                     \
        for (; i0 + 4 <= n; i0 += 4) {                                                     \
            FUSED_TERM(ASSIGN, s0, i0, da_expr, db_expr);                                  \
            FUSED_TERM(ASSIGN, s1, i0 + 1, da_expr, db_expr);                              \
            FUSED_TERM(ASSIGN, s2, i0 + 2, da_expr, db_expr);                              \
            FUSED_TERM(ASSIGN, s3, i0 + 3, da_expr, db_expr);                              \
        }                                                                                  \
        for (; i0 < n; i0++) FUSED_TERM(ASSIGN, s0, i0, da_expr, db_expr);                 \
    }
#define FUSED_TERM(ASSIGN, acc, idx, da_expr, db_expr)                                    \
    do {                                                                                   \
        size_t i = (idx);                                                                  \
        double a = v.a[i], b = v.b[0];                                                     \
        (void)a; (void)b;                                                                  \
        out_[i] ASSIGN g[i] * (da_expr);                                                   \
        acc += g[i] * (db_expr);                                                           \
    } while (0)

#define BINARY_BACKWARD(name, da_expr, db_expr)                                           \
    BINARY_KERNEL(name##_ka, da_expr)                                                      \
    BINARY_KERNEL(name##_kb, db_expr)                                                      \
    static void name(em_tape *t, em_node *self) {                                          \
        binary_view v = binary_inputs(t, self);                                            \
        const double *g = self->adj, *y = self->val;                                       \
        (void)y;                                                                           \
        size_t n = self->n;                                                                \
        if (v.ga && v.gb && v.ga != v.gb && v.sa && !v.sb) BINARY_ADJ_FUSED(da_expr, db_expr) \
        /* a is claimed before b is: for x∘x the second contribution adds to the first */   \
        if (v.ga) {                                                                        \
            int first = em_adj_first(v.na);                                                \
            if (v.sa)                                                                      \
                name##_ka(v.ga, g, v.a, v.b, y, v.sa, v.sb, n, first);                     \
            else if (v.sb)                                                                 \
                BINARY_ADJ_SCALAR(v.ga, first, AT_ONE_A, AT_VEC_B, da_expr);               \
            else                                                                           \
                BINARY_ADJ_SCALAR(v.ga, first, AT_ONE_A, AT_ONE_B, da_expr);               \
        }                                                                                  \
        if (v.gb) {                                                                        \
            int first = em_adj_first(v.nb);                                                \
            if (v.sb)                                                                      \
                name##_kb(v.gb, g, v.a, v.b, y, v.sa, v.sb, n, first);                     \
            else if (v.sa)                                                                 \
                BINARY_ADJ_SCALAR(v.gb, first, AT_VEC_A, AT_ONE_B, db_expr);               \
            else                                                                           \
                BINARY_ADJ_SCALAR(v.gb, first, AT_ONE_A, AT_ONE_B, db_expr);               \
        }                                                                                  \
    }

BINARY_BACKWARD(add_backward_held, 1.0, 1.0)
BINARY_BACKWARD(sub_backward_held, 1.0, -1.0)

/* add and sub are linear: when their own adjoint is a view c·x and both operands are vectors
 * of its length, each operand's contribution is ±c·x, passed on as a view (no pass). */
static int pass_linear_view(em_tape *t, em_node *self, double sign_b) {
    em_node *na = &t->nodes[self->in[0]], *nb = &t->nodes[self->in[1]];
    if (self->adj_set != EM_ADJ_VIEW || na->n != self->n || nb->n != self->n || na == nb) return 0;
    em_adj_pass_view(na, self->adj_scale, self->adj_view);
    em_adj_pass_view(nb, sign_b * self->adj_scale, self->adj_view);
    return 1;
}
static void add_backward(em_tape *t, em_node *self) {
    if (pass_linear_view(t, self, 1.0)) return;
    em_adj_materialize(self);
    add_backward_held(t, self);
}
static void sub_backward(em_tape *t, em_node *self) {
    if (pass_linear_view(t, self, -1.0)) return;
    em_adj_materialize(self);
    sub_backward_held(t, self);
}
BINARY_BACKWARD(mul_backward, b, a)
BINARY_BACKWARD(div_backward, 1.0 / b, -y[i] / b)

#define BINARY_OP(fname, opname, backward, expr)                                          \
    static void fname##_forward(em_tape *t, em_node *o);                                   \
    em_var fname(em_tape *t, em_var a, em_var b) {                                         \
        em_var in[2] = {a, b}, out;                                                        \
        if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;                                   \
        em_node *na = &t->nodes[a.id], *nb = &t->nodes[b.id];                              \
        size_t n = em_broadcast_len(t, opname, na->n, nb->n);                              \
        if (!n) return EM_VAR_INVALID;                                                     \
        size_t rows = na->n == n ? na->rows : nb->rows, cols = n / rows;                   \
        em_node *o = em_node_new(t, rows, cols, in, 2, backward, &out);                    \
        if (!o) return EM_VAR_INVALID;                                                     \
        o->forward = fname##_forward;                                                      \
        o->takes_view = (backward == add_backward || backward == sub_backward);            \
        fname##_forward(t, o);                                                             \
        return out;                                                                        \
    }                                                                                      \
    /* the loops in a function of their own with restrict parameters: GCC vectorises them at \
     * -O2 only so (see EM_VEC_FOR); one unit-stride loop per broadcast pattern */          \
    static void fname##_kernel(double *restrict y, const double *restrict x,                \
                               const double *restrict z, size_t n, int sa, int sb) {       \
        if (sa && sb) {                                                                    \
            EM_VEC_FOR(i, n, { double u = x[i], w = z[i]; y[i] = (expr); });               \
        } else if (sa) {                                                                   \
            double w = z[0];                                                               \
            EM_VEC_FOR(i, n, { double u = x[i]; y[i] = (expr); });                         \
        } else if (sb) {                                                                   \
            double u = x[0];                                                               \
            EM_VEC_FOR(i, n, { double w = z[i]; y[i] = (expr); });                         \
        } else {                                                                           \
            double u = x[0], w = z[0];                                                     \
            y[0] = (expr);                                                                 \
        }                                                                                  \
    }                                                                                      \
    static void fname##_forward(em_tape *t, em_node *o) {                                  \
        const em_node *na = &t->nodes[o->in[0]], *nb = &t->nodes[o->in[1]];                \
        /* o->val is the node's own memory: it overlaps no input */                        \
        fname##_kernel(o->val, na->val, nb->val, o->n, na->n != 1, nb->n != 1);            \
    }

BINARY_OP(em_op_add, "add", add_backward, u + w)
BINARY_OP(em_op_sub, "sub", sub_backward, u - w)
BINARY_OP(em_op_mul, "mul", mul_backward, u * w)
BINARY_OP(em_op_div, "div", div_backward, u / w)

/* ---- sum of many ------------------------------------------------------------------------ */

static void add_many_forward(em_tape *t, em_node *o) {
    double *restrict y = o->val;
    size_t n = o->n;
    if (n == 1) { /* the common case: a sum of log-density terms */
        double acc = 0.0;
        for (int j = 0; j < o->nin; j++) acc += t->nodes[o->in[j]].val[0];
        y[0] = acc;
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = 0.0;
    for (int j = 0; j < o->nin; j++) {
        const em_node *in = &t->nodes[o->in[j]];
        if (in->n == 1)
            for (size_t i = 0; i < n; i++) y[i] += in->val[0];
        else
            for (size_t i = 0; i < n; i++) y[i] += in->val[i];
    }
}

static void add_many_backward(em_tape *t, em_node *self) {
    if (self->n == 1) {
        double g = self->adj[0];
        for (int j = 0; j < self->nin; j++) {
            em_node *in = &t->nodes[self->in[j]];
            if (in->adj) in->adj[0] = em_adj_first(in) ? g : in->adj[0] + g;
        }
        return;
    }
    for (int j = 0; j < self->nin; j++) em_adj_accumulate(&t->nodes[self->in[j]], self->adj, self->n);
}

em_var em_op_add_many(em_tape *t, const em_var *parts, size_t k) {
    if (k == 0) return em_tape_fail(t, EM_ERR_SHAPE, "add_many: no terms");
    size_t n = 1, rows = 1;
    for (size_t j = 0; j < k; j++) {
        if (parts[j].id < 0) return EM_VAR_INVALID;
        const em_node *p = &t->nodes[parts[j].id];
        if (p->n == 1) continue;
        if (n != 1 && p->n != n)
            return em_tape_fail(t, EM_ERR_SHAPE, "add_many: term %zu has length %zu, an earlier one %zu", j, p->n, n);
        n = p->n;
        rows = p->rows;
    }
    /* one node per EM_NODE_MAX_INPUTS terms, each after the first taking the previous sum as
     * its first input, so that every input stays visible in in[] */
    em_var acc = EM_VAR_INVALID;
    size_t j = 0;
    while (j < k) {
        em_var in[EM_NODE_MAX_INPUTS];
        int m = 0;
        if (em_var_ok(acc)) in[m++] = acc;
        while (m < EM_NODE_MAX_INPUTS && j < k) in[m++] = parts[j++];
        em_node *o = em_node_new(t, rows, n / rows, in, m, add_many_backward, &acc);
        if (!o) return EM_VAR_INVALID;
        o->forward = add_many_forward;
        add_many_forward(t, o);
    }
    return acc;
}

/* ---- elementwise unary ops -------------------------------------------------------------- */

/* A node of a's shape computed by forward (which reads the constant c from the node). */
static em_var unary_node(em_tape *t, em_var a, em_backward_fn backward, em_forward_fn forward, double c) {
    em_var out;
    if (a.id < 0) return EM_VAR_INVALID;
    em_node *na = &t->nodes[a.id];
    em_node *o = em_node_new(t, na->rows, na->cols, &a, 1, backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->c = c;
    o->forward = forward;
    forward(t, o);
    return out;
}

/* dy/dx written in terms of x (the input) and y (the output); the input's adjoint is written
 * or added to as the adjoint contract says (internal/tape.h) */
#define UNARY_ADJ_LOOP(ASSIGN, deriv_expr)                                                \
    EM_VEC_FOR(i, n, {                                                                     \
        double x = xs[i], y = ys[i];                                                       \
        (void)x; (void)y;                                                                  \
        ga[i] ASSIGN g[i] * (deriv_expr);                                                  \
    })
/* the loop in a function of its own with restrict parameters, as for the binary ops */
#define UNARY_OP(fname, backward, val_expr, deriv_expr)                                   \
    static void backward##_k(double *restrict ga, const double *restrict xs, const double *restrict ys, \
                             const double *restrict g, size_t n, int first) {              \
        if (first)                                                                         \
            UNARY_ADJ_LOOP(=, deriv_expr);                                                 \
        else                                                                               \
            UNARY_ADJ_LOOP(+=, deriv_expr);                                                \
    }                                                                                      \
    static void backward(em_tape *t, em_node *self) {                                      \
        em_node *in = &t->nodes[self->in[0]];                                              \
        if (!in->adj) return;                                                              \
        backward##_k(in->adj, in->val, self->val, self->adj, self->n, em_adj_first(in));   \
    }                                                                                      \
    static void fname##_fkernel(double *restrict ys, const double *restrict xs, size_t n) { \
        EM_VEC_FOR(i, n, { double x = xs[i]; ys[i] = (val_expr); });                       \
    }                                                                                      \
    static void fname##_forward(em_tape *t, em_node *o) {                                  \
        fname##_fkernel(o->val, t->nodes[o->in[0]].val, o->n);                             \
    }                                                                                      \
    em_var fname(em_tape *t, em_var a) {                                                   \
        return unary_node(t, a, backward, fname##_forward, 0.0);                           \
    }

UNARY_OP(em_op_neg, neg_backward, -x, -1.0)
UNARY_OP(em_op_exp, exp_backward, exp(x), y)
UNARY_OP(em_op_log, log_backward, log(x), 1.0 / x)
UNARY_OP(em_op_log1p, log1p_backward, log1p(x), 1.0 / (1.0 + x))
/* d expm1 = exp(x), not y + 1: for x below about -37, y + 1 rounds to 0 (y = -1 + tiny). */
UNARY_OP(em_op_expm1, expm1_backward, expm1(x), exp(x))
UNARY_OP(em_op_sqrt, sqrt_backward, sqrt(x), 0.5 / y)
UNARY_OP(em_op_square, square_backward, x * x, 2.0 * x)
UNARY_OP(em_op_tanh, tanh_backward, tanh(x), 1.0 - y * y)
/* σ'(x) = σ(x)·σ(-x): 1 - y loses every digit once y rounds towards 1 (x ≳ 20). */
UNARY_OP(em_op_sigmoid, sigmoid_backward, em_math_sigmoid(x), y * em_math_sigmoid(-x))
UNARY_OP(em_op_softplus, softplus_backward, em_math_softplus(x), em_math_sigmoid(x))
UNARY_OP(em_op_log_sigmoid, log_sigmoid_backward, -em_math_softplus(-x), em_math_sigmoid(-x))
UNARY_OP(em_op_lgamma, lgamma_backward, em_math_lgamma(x), gsl_sf_psi(x))
UNARY_OP(em_op_digamma, digamma_backward, gsl_sf_psi(x), gsl_sf_psi_1(x))

/* ---- log-scale arithmetic and the normal CDF (Stan's functions reference, "Composed
 *      functions"; the scalar formulas in internal/mathx.h) ---------------------------------- */

/* log(1 - σ(x)) = -softplus(x); its derivative -σ(x) */
UNARY_OP(em_op_log1m_inv_logit, log1m_inv_logit_backward, -em_math_softplus(x), -em_math_sigmoid(x))
UNARY_OP(em_op_log1m_exp, log1m_exp_backward, em_math_log1m_exp(x), em_math_dlog1m_exp(x))
/* Φ'(x) = φ(x), which underflows only where Φ does */
UNARY_OP(em_op_Phi, Phi_backward, em_math_Phi(x), exp(-0.5 * x * x) * 0.39894228040143267794)
UNARY_OP(em_op_log_Phi, log_Phi_backward, em_math_log_Phi(x), em_math_dlog_Phi(x))

/* log(e^a + e^b), elementwise: ∂/∂a = σ(a - b), ∂/∂b = σ(b - a). */
BINARY_BACKWARD(log_sum_exp2_backward, em_math_dlog_sum_exp2(a, b), em_math_dlog_sum_exp2(b, a))
BINARY_OP(em_op_log_sum_exp2, "log_sum_exp2", log_sum_exp2_backward, em_math_log_sum_exp2(u, w))

/* log(e^a - e^b) = a + log1m_exp(b - a) for a >= b (NaN for a < b, -inf at a = b):
 * ∂/∂a = -1/expm1(b - a), ∂/∂b = -1/expm1(a - b) (0 when b = -inf). */
BINARY_BACKWARD(log_diff_exp_backward, -1.0 / expm1(b - a), -1.0 / expm1(a - b))
BINARY_OP(em_op_log_diff_exp, "log_diff_exp", log_diff_exp_backward, u + em_math_log1m_exp(w - u))

/* pow with a constant exponent: the exponent lives in node->c, so it is set after creation. */
static void pow_backward(em_tape *t, em_node *self) {
    em_node *in = &t->nodes[self->in[0]];
    if (!em_adj_target(in)) return;
    double p = self->c;
    for (size_t i = 0; i < self->n; i++) {
        double x = in->val[i];
        /* p * x^(p-1), written without dividing by x so that x = 0 is exact */
        in->adj[i] += self->adj[i] * (p == 0.0 ? 0.0 : p * pow(x, p - 1.0));
    }
}

static void pow_forward(em_tape *t, em_node *o) {
    const double *x = t->nodes[o->in[0]].val;
    for (size_t i = 0; i < o->n; i++) o->val[i] = pow(x[i], o->c);
}

em_var em_op_pow(em_tape *t, em_var a, double p) { return unary_node(t, a, pow_backward, pow_forward, p); }

/* ---- reductions ------------------------------------------------------------------------ */

static void fill_kernel(double *restrict out, double g, size_t n, int first) {
    if (first)
        EM_VEC_FOR(i, n, out[i] = g;);
    else
        EM_VEC_FOR(i, n, out[i] += g;);
}

static void sum_backward(em_tape *t, em_node *self) {
    em_node *in = &t->nodes[self->in[0]];
    if (!in->adj) return;
    fill_kernel(in->adj, self->adj[0], in->n, em_adj_first(in));
}

static void sum_forward(em_tape *t, em_node *o) {
    const em_node *na = &t->nodes[o->in[0]];
    o->val[0] = em_sum_vec(na->val, na->n);
}

/* A scalar node computed from a by forward (a reduction). */
static em_var reduction_node(em_tape *t, em_var a, em_backward_fn backward, em_forward_fn forward) {
    em_var out;
    em_node *o = em_node_new(t, 1, 1, &a, 1, backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->forward = forward;
    forward(t, o);
    return out;
}

em_var em_op_sum(em_tape *t, em_var a) { return reduction_node(t, a, sum_backward, sum_forward); }

/* log Σ e^{x_i} = m + log Σ e^{x_i - m} with m the largest element, so no term overflows and
 * the largest contributes exactly 1; -inf when every element is -inf, +inf when one is. The
 * gradient is the softmax e^{x_i - y}, recomputed in the backward pass from x and y (one exp
 * per element, instead of a stored array and its pass). */
static void log_sum_exp_backward(em_tape *t, em_node *self) {
    em_node *in = &t->nodes[self->in[0]];
    if (!in->adj) return;
    double g = self->adj[0], y = self->val[0];
    const double *restrict x = in->val;
    double *restrict ga = in->adj;
    int first = em_adj_first(in);
    for (size_t i = 0; i < in->n; i++) {
        double d = fabs(y) < INFINITY ? g * exp(x[i] - y) : 0.0;
        ga[i] = first ? d : ga[i] + d;
    }
}

static void log_sum_exp_forward(em_tape *t, em_node *o) {
    const em_node *na = &t->nodes[o->in[0]];
    const double *x = na->val;
    double m = -INFINITY;
    for (size_t i = 0; i < na->n; i++)
        if (x[i] > m || isnan(x[i])) m = x[i];
    if (!(fabs(m) < INFINITY)) {
        o->val[0] = m;
        return;
    }
    double s = 0.0;
    for (size_t i = 0; i < na->n; i++) s += exp(x[i] - m);
    o->val[0] = m + log(s);
}

em_var em_op_log_sum_exp(em_tape *t, em_var a) { return reduction_node(t, a, log_sum_exp_backward, log_sum_exp_forward); }

/* c·src's value on to in's adjoint: as a view when src is an op (its value is tape memory; a
 * leaf's or a constant's may be the caller's) */
static void pass_scaled_value(em_node *in, double c, const em_node *src) {
    if (src->nin > 0)
        em_adj_pass_view(in, c, src->val);
    else
        em_adj_axpy(in, c, src->val);
}

static void dot_backward(em_tape *t, em_node *self) {
    em_node *a = &t->nodes[self->in[0]], *b = &t->nodes[self->in[1]];
    double g = self->adj[0];
    if (a == b) { /* dot(r, r): d/dr = 2g·r, a view of r when r is an op's value */
        pass_scaled_value(a, 2.0 * g, a);
        return;
    }
    pass_scaled_value(a, g, b);
    pass_scaled_value(b, g, a);
}

static void dot_forward(em_tape *t, em_node *o) {
    const em_node *a = &t->nodes[o->in[0]], *b = &t->nodes[o->in[1]];
    o->val[0] = em_dot_vec(a->val, b->val, a->n);
}

em_var em_op_dot(em_tape *t, em_var a, em_var b) {
    em_var in[2] = {a, b}, out;
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    size_t na = t->nodes[a.id].n, nb = t->nodes[b.id].n;
    if (na != nb) return em_tape_fail(t, EM_ERR_SHAPE, "dot: lengths %zu and %zu differ", na, nb);
    em_node *o = em_node_new(t, 1, 1, in, 2, dot_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->forward = dot_forward;
    dot_forward(t, o);
    return out;
}

/* ---- indexing ---------------------------------------------------------------------------- */

static void gather_backward(em_tape *t, em_node *self) {
    em_node *in = &t->nodes[self->in[0]];
    if (!em_adj_target(in)) return; /* a scatter: adds, so zero a fresh adjoint first */
    const size_t *idx = self->aux;
    for (size_t i = 0; i < self->n; i++) in->adj[idx[i]] += self->adj[i];
}

static void gather_forward(em_tape *t, em_node *o) {
    const double *x = t->nodes[o->in[0]].val;
    const size_t *idx = o->aux;
    for (size_t i = 0; i < o->n; i++) o->val[i] = x[idx[i]];
}

em_var em_op_gather(em_tape *t, em_var a, const size_t *idx, size_t n) {
    em_var out;
    if (a.id < 0) return EM_VAR_INVALID;
    if (n == 0) return em_tape_fail(t, EM_ERR_SHAPE, "gather: empty index array");
    size_t na = t->nodes[a.id].n;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= na)
            return em_tape_fail(t, EM_ERR_INDEX, "gather: index[%zu] = %zu is out of range for length %zu",
                                i, idx[i], na);
    em_node *o = em_node_new(t, n, 1, &a, 1, gather_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->aux = (void *)idx;
    o->forward = gather_forward;
    gather_forward(t, o);
    return out;
}

static void slice_backward(em_tape *t, em_node *self) {
    em_node *in = &t->nodes[self->in[0]];
    if (!em_adj_target(in)) return; /* writes part of the input's adjoint */
    size_t start = (size_t)self->c;
    for (size_t i = 0; i < self->n; i++) in->adj[start + i] += self->adj[i];
}

static void slice_forward(em_tape *t, em_node *o) {
    memcpy(o->val, t->nodes[o->in[0]].val + (size_t)o->c, o->n * sizeof(double));
}

em_var em_op_slice(em_tape *t, em_var a, size_t start, size_t len) {
    em_var out;
    if (a.id < 0) return EM_VAR_INVALID;
    size_t na = t->nodes[a.id].n;
    if (len == 0 || start > na || len > na - start)
        return em_tape_fail(t, EM_ERR_INDEX, "slice: [%zu, %zu) is out of range for length %zu", start,
                            start + len, na);
    em_node *o = em_node_new(t, len, 1, &a, 1, slice_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->c = (double)start;
    o->forward = slice_forward;
    slice_forward(t, o);
    return out;
}

typedef struct {
    size_t k;
    int32_t *ids;
} concat_aux;

static void concat_backward(em_tape *t, em_node *self) {
    const concat_aux *ca = self->aux;
    size_t off = 0;
    for (size_t j = 0; j < ca->k; j++) {
        em_node *in = &t->nodes[ca->ids[j]];
        if (in->adj) { /* a part may appear twice: claim it at each write */
            if (em_adj_first(in))
                memcpy(in->adj, self->adj + off, in->n * sizeof(double));
            else
                for (size_t i = 0; i < in->n; i++) in->adj[i] += self->adj[off + i];
        }
        off += in->n;
    }
}

static void concat_forward(em_tape *t, em_node *o) {
    const concat_aux *ca = o->aux;
    size_t off = 0;
    for (size_t j = 0; j < ca->k; j++) {
        const em_node *in = &t->nodes[ca->ids[j]];
        memcpy(o->val + off, in->val, in->n * sizeof(double));
        off += in->n;
    }
}

em_var em_op_concat(em_tape *t, const em_var *parts, size_t k) {
    if (k == 0) return em_tape_fail(t, EM_ERR_SHAPE, "concat: no parts");
    if (!em_inputs_ok(parts, (int)k)) return EM_VAR_INVALID;
    concat_aux *ca = em_arena_alloc(t->arena, sizeof *ca);
    int32_t *ids = em_arena_alloc(t->arena, k * sizeof *ids);
    if (!ca || !ids) return em_tape_fail(t, EM_ERR_NOMEM, "concat: out of memory");
    size_t n = 0;
    int grad = 0;
    for (size_t j = 0; j < k; j++) {
        ids[j] = parts[j].id;
        n += t->nodes[parts[j].id].n;
        if (t->nodes[parts[j].id].adj) grad = 1;
    }
    ca->k = k;
    ca->ids = ids;
    /* The node records at most EM_NODE_MAX_INPUTS inputs and the full list lives in aux. With
     * more parts, in[] holds one that needs a gradient (em_node_new decides by in[]) and the
     * tape is told its graph is incomplete. */
    em_var marker = parts[0];
    for (size_t j = 0; j < k && grad; j++)
        if (t->nodes[parts[j].id].adj) {
            marker = parts[j];
            break;
        }
    int all_in = k <= EM_NODE_MAX_INPUTS;
    if (!all_in) t->hidden_inputs = 1;
    em_var out;
    em_node *o = em_node_new(t, n, 1, all_in ? parts : &marker, all_in ? (int)k : 1, concat_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->aux = ca;
    o->forward = concat_forward;
    concat_forward(t, o);
    return out;
}

static void reshape_backward(em_tape *t, em_node *self) {
    em_adj_accumulate(&t->nodes[self->in[0]], self->adj, self->n);
}

static void reshape_forward(em_tape *t, em_node *o) {
    memcpy(o->val, t->nodes[o->in[0]].val, o->n * sizeof(double));
}

em_var em_op_reshape(em_tape *t, em_var a, size_t rows, size_t cols) {
    em_var out;
    if (a.id < 0) return EM_VAR_INVALID;
    size_t na = t->nodes[a.id].n;
    /* rows*cols must not wrap around to na: the shape would then claim far more values */
    if (cols == 0 || rows > SIZE_MAX / cols || rows * cols != na)
        return em_tape_fail(t, EM_ERR_SHAPE, "reshape: %zu values cannot be viewed as %zux%zu", na, rows, cols);
    em_node *o = em_node_new(t, rows, cols, &a, 1, reshape_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->forward = reshape_forward;
    reshape_forward(t, o);
    return out;
}
