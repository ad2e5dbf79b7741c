/* internal/tape.h — the tape's node layout, for modules that define their own ops
 * (linalg, dist, transform). Not installed: users see only ember/ad.h.
 *
 * To add an op: call em_node_new() with the output shape and the inputs; fill node->val; if
 * node->adj is non-NULL (some input needs a gradient) the backward function will be called
 * during em_backward() and must pass node->adj's contribution on to each input's adj (inputs
 * whose adj is NULL are constants: skip them), following the adjoint contract below. Per-op
 * scratch (cached partials, index arrays) goes in node->aux, allocated from the tape's arena.
 *
 * The adjoint contract. Adjoints are not zeroed when a node is made: on a vector of 10^6
 * values the zeroing, and the read half of every `adj[i] += ...` that follows, cost as much as
 * the op itself. Instead each node records in adj_set whether its adjoint holds a value yet.
 * A backward function, for each input it contributes to:
 *   - when it writes every element of the input's adjoint, calls em_adj_first(in) right before
 *     the loop and writes (=) when that returns 1, adds (+=) when it returns 0;
 *   - otherwise (a scatter, a slice, a BLAS call with beta = 1, or simply a cold op) takes the
 *     pointer from em_adj_target(in), which zeroes an adjoint holding no value, and adds;
 *     em_adj_prepare_inputs(t, self) does that for all recorded inputs at once.
 * Call em_adj_first once per write, after any earlier write to the same input: an op whose two
 * inputs are one node (x*x) must add its second contribution to its first. em_backward() skips
 * nodes whose adjoint never received a contribution (nothing reached them) and zeroes, at the
 * end, every adjoint still holding no value, so em_adjoint() reads zeros there. In sanitizer
 * builds fresh adjoints are filled with NaN, so a backward function that adds into an adjoint
 * it did not claim shows up as NaN gradients in the tests.
 *
 * Scaled views. A vector adjoint that is a multiple of some op's value (dot(r, r) gives r the
 * adjoint 2g·r) need not be written out: em_adj_pass_view records it as "c times that array"
 * (adj_set == EM_ADJ_VIEW), which costs nothing when the adjoint was empty. Ops that are linear
 * in an input (add, sub, matvec_add) set takes_view and pass such a view on unchanged in scale,
 * or read it directly (a BLAS call takes the scale as its alpha), so `sum((y - Xβ - α)²)`
 * differentiates with no pass over the residual at all. Every other reader gets a written-out
 * adjoint: em_adj_first and em_adj_target write a view out before adding to it, em_backward
 * writes it out before calling a backward function without takes_view, and em_adjoint() before
 * returning it. A view only ever refers to the value of an op node (tape memory that stays as
 * it is until a replay recomputes it, which marks the adjoints empty), never to a leaf's or a
 * constant's (memory the caller may change).
 *
 * Replay: an op that can recompute its value from its inputs' current values sets
 * node->forward and computes the value by calling it, so creation and replay share one code
 * path. A tape whose every variable node has a forward function can be re-evaluated at new
 * leaf values by em_tape_forward() without running the code that built it (the log density
 * of a model with a fixed structure: see model_logdensity.c). The forward function must
 * recompute everything the backward reads (val and the partials in aux), must not allocate,
 * and on bad input must set the value to what creation would have given (-inf for a log
 * density) and record the error with em_tape_fail.
 */
#ifndef EMBER_INTERNAL_TAPE_H
#define EMBER_INTERNAL_TAPE_H

#include "ember/ad.h"

#include <string.h>

#define EM_NODE_MAX_INPUTS 6

typedef struct em_node em_node;
typedef void (*em_backward_fn)(em_tape *t, em_node *self);
typedef void (*em_forward_fn)(em_tape *t, em_node *self);

struct em_node {
    double *val;          /* n values (row-major when a matrix) */
    double *adj;          /* n adjoints, or NULL when nothing upstream needs a gradient */
    size_t n, rows, cols;
    em_backward_fn backward;
    em_forward_fn forward; /* NULL: the op cannot be replayed (leaves and constants need not) */
    void *aux;            /* op-specific data in the arena */
    double c;             /* op-specific constant (pow's exponent, ...) */
    int32_t in[EM_NODE_MAX_INPUTS];
    int nin;
    int adj_set;          /* EM_ADJ_*: adj holds a value, or is a view (the adjoint contract above) */
    int live; /* 0: em_tape_prune found it does not feed the outputs (replay and backward skip it) */
    int takes_view;       /* backward reads its own adjoint through em_adj_own (a view is welcome) */
    const double *adj_view; /* adj_set == EM_ADJ_VIEW: the adjoint is adj_scale·adj_view[0..n) */
    double adj_scale;
};

/* adj_set: the adjoint holds no value yet, holds one in adj, or is adj_scale·adj_view */
enum { EM_ADJ_EMPTY = 0, EM_ADJ_HELD = 1, EM_ADJ_VIEW = 2 };

struct em_tape {
    em_node *nodes;
    size_t count, cap;
    em_arena *arena;
    em_error err;
    uint64_t generation;
    /* Set when code outside the library read the value or adjoint of a node that depends on
     * a leaf (em_value and friends): that code may branch on it, so a replay of the tape
     * could silently differ from running that code again. */
    int value_read;
    /* An op kept inputs beyond in[] (a concat of many parts): the graph in in[] is incomplete,
     * so em_tape_prune keeps every node. */
    int hidden_inputs;
    /* After em_tape_prune: the ids of the live nodes that have an adjoint, in creation order
     * (the only ones a replay, a backward pass or a zeroing of adjoints has to visit). */
    int32_t *active;
    size_t nactive;
    /* The node whose forward function recorded the error of the last em_tape_forward (-1:
     * none), so that a replayed model density can name the site the node belongs to. */
    int32_t err_node;
};

/* The node behind a valid var (no check). */
static inline em_node *em_node_get(const em_tape *t, em_var v) { return &t->nodes[v.id]; }
/* Its values and length, without marking the tape as read (for library code). */
static inline const double *em_val_(const em_tape *t, em_var v) { return v.id < 0 ? NULL : t->nodes[v.id].val; }
static inline double em_val_scalar_(const em_tape *t, em_var v) { return v.id < 0 ? 0.0 / 0.0 : t->nodes[v.id].val[0]; }
static inline size_t em_len_(const em_tape *t, em_var v) { return v.id < 0 ? 0 : t->nodes[v.id].n; }

/* Check that every input var is valid; if one is not, the tape already holds an error.
 * Returns 1 when all are valid. */
int em_inputs_ok(const em_var *in, int nin);

/* Create a node of n = rows*cols values with the given inputs. Its val is allocated (not
 * initialised); its adj is allocated (not initialised either: see the adjoint contract) when
 * any input needs a gradient, and then backward is recorded. Returns NULL (and records EM_ERR_NOMEM) when out of memory; *out
 * receives the new var. */
em_node *em_node_new(em_tape *t, size_t rows, size_t cols, const em_var *in, int nin,
                     em_backward_fn backward, em_var *out);

/* Can em_tape_forward() replay this tape? Every node that depends on a leaf has a forward
 * function, and no caller read such a node's value while the tape was built. */
int em_tape_replayable(const em_tape *t);
/* Recompute every node that depends on a leaf, in creation order, after new values were
 * written into the leaves (em_leaf_assign). Clears the tape's error first; returns the status
 * the replay ends with (a distribution's domain error, ...). After em_tape_prune only the live
 * nodes are recomputed (all: every node). Unless all is set, the recomputed nodes' adjoints
 * are marked as holding no value (the adjoint contract), ready for the next em_backward();
 * with all set, call em_zero_adjoints() before differentiating. */
em_status em_tape_forward(em_tape *t, int all);
/* Mark the nodes that the roots depend on; the others are skipped by em_tape_forward (unless
 * all is set), em_backward and em_zero_adjoints until the tape is reset. For a replayed
 * density: a deterministic site nobody else reads costs nothing per gradient. */
void em_tape_prune(em_tape *t, const em_var *roots, size_t k);
/* Write n values into leaf v (a NaN is an error, as for em_leaf). */
em_status em_leaf_assign(em_tape *t, em_var v, const double *x, size_t n);

/* The common length of two broadcastable operands (equal, or one of them 1), or 0 with an
 * EM_ERR_SHAPE recorded on the tape naming op. */
size_t em_broadcast_len(em_tape *t, const char *op, size_t na, size_t nb);

/* Pass the adjoint g (length n) on to input in, of length in->n == n or 1 (then summed),
 * following the adjoint contract. Does nothing for a constant (in->adj NULL). */
void em_adj_accumulate(em_node *in, const double *g, size_t n);
/* The same for c·g. */
void em_adj_accumulate_scaled(em_node *in, double c, const double *g, size_t n);

/* Write a view out into the node's own adjoint array (adj_set becomes EM_ADJ_HELD). */
void em_adj_materialize(em_node *n);

/* The adjoint contract (see the top of this file). 1 when in's adjoint holds no value yet, so
 * the caller must write (=) all of it; marks it as holding one (a view is written out first:
 * then 0, add to it). */
static inline int em_adj_first(em_node *in) {
    if (in->adj_set == EM_ADJ_VIEW) {
        em_adj_materialize(in);
        return 0;
    }
    int first = !in->adj_set;
    in->adj_set = EM_ADJ_HELD;
    return first;
}

/* in's adjoint ready to be added into (zeroed if it held no value, written out if a view), or
 * NULL for a constant. */
static inline double *em_adj_target(em_node *in) {
    if (!in->adj) return NULL;
    if (in->adj_set == EM_ADJ_VIEW) em_adj_materialize(in);
    if (!in->adj_set) {
        /* small adjoints (most of a small model's) inline: a memset call costs more */
        if (in->n <= 4)
            for (size_t i = 0; i < in->n; i++) in->adj[i] = 0.0;
        else
            memset(in->adj, 0, in->n * sizeof(double));
        in->adj_set = 1;
    }
    return in->adj;
}

/* Pass c·x on to in's adjoint, where x (length in->n) is an op node's value or the array of
 * a view the caller received (see "Scaled views" above): an empty adjoint becomes a view of x,
 * with no pass; otherwise as em_adj_axpy. */
void em_adj_pass_view(em_node *in, double c, const double *x);

/* The adjoint self passes on, as *scale times the returned array: for a backward function
 * with takes_view set. */
static inline const double *em_adj_own(const em_node *self, double *scale) {
    if (self->adj_set == EM_ADJ_VIEW) {
        *scale = self->adj_scale;
        return self->adj_view;
    }
    *scale = 1.0;
    return self->adj;
}

/* em_adj_target for every recorded input of self: for backward functions that only add. */
static inline void em_adj_prepare_inputs(em_tape *t, em_node *self) {
    for (int k = 0; k < self->nin; k++) em_adj_target(&t->nodes[self->in[k]]);
}

/* Pass c·x (x of length in->n) on to input in's adjoint, following the contract; nothing for a
 * constant. The common form of a backward loop (dot, the densities' cached partials), in a
 * loop the compiler vectorises. */
void em_adj_axpy(em_node *in, double c, const double *x);

/* for (size_t I = 0; I < N; I++) BODY (the macro's last argument, commas allowed), run in
 * blocks of four with a scalar tail. GCC's -O2 vectoriser (cost model "very-cheap") takes no
 * loop that needs a scalar epilogue or a run-time overlap check, so a plain elementwise loop
 * over n values stays scalar; the inner loop of known length 4 is vectorised when every array
 * is a restrict-qualified function parameter (restrict locals are not enough for GCC 12). */
#define EM_VEC_FOR(I, N, ...)                                                               \
    do {                                                                                    \
        size_t em_n_ = (N), em_b_ = 0;                                                      \
        for (; em_b_ + 4 <= em_n_; em_b_ += 4)                                              \
            for (size_t em_k_ = 0; em_k_ < 4; em_k_++) {                                    \
                size_t I = em_b_ + em_k_;                                                   \
                __VA_ARGS__                                                                 \
            }                                                                               \
        for (; em_b_ < em_n_; em_b_++) {                                                    \
            size_t I = em_b_;                                                               \
            __VA_ARGS__                                                                     \
        }                                                                                   \
    } while (0)

#endif
