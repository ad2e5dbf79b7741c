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
 */
#ifndef EMBER_INTERNAL_TAPE_H
#define EMBER_INTERNAL_TAPE_H

#include "ember/ad.h"

#define EM_NODE_MAX_INPUTS 6

typedef struct em_node em_node;
typedef void (*em_backward_fn)(em_tape *t, em_node *self);

struct em_node {
    double *val;          /* n values (row-major when a matrix) */
    double *adj;          /* n adjoints, or NULL when nothing upstream needs a gradient */
    size_t n, rows, cols;
    em_backward_fn backward;
    void *aux;            /* op-specific data in the arena */
    double c;             /* op-specific constant (pow's exponent, ...) */
    int32_t in[EM_NODE_MAX_INPUTS];
    int nin;
    int adj_set;          /* adj holds a value (see the adjoint contract above) */
};

/* The node behind a valid var (no check). */
em_node *em_node_get(const em_tape *t, em_var v);

/* Check that every input var is valid; if one is not, the tape already holds an error.
 * Returns 1 when all are valid. */
int em_inputs_ok(const em_var *in, int nin);

/* Create a node of n = rows*cols values with the given inputs. Its val is allocated (not
 * initialised); its adj is allocated (not initialised either: see the adjoint contract) when
 * any input needs a gradient, and then backward is recorded. Returns NULL (and records EM_ERR_NOMEM) when out of memory; *out
 * receives the new var. */
em_node *em_node_new(em_tape *t, size_t rows, size_t cols, const em_var *in, int nin,
                     em_backward_fn backward, em_var *out);

/* The common length of two broadcastable operands (equal, or one of them 1), or 0 with an
 * EM_ERR_SHAPE recorded on the tape naming op. */
size_t em_broadcast_len(em_tape *t, const char *op, size_t na, size_t nb);

/* Pass the adjoint g (length n) on to input in, of length in->n == n or 1 (then summed),
 * following the adjoint contract. Does nothing for a constant (in->adj NULL). */
void em_adj_accumulate(em_node *in, const double *g, size_t n);

/* The adjoint contract (see the top of this file). 1 when in's adjoint holds no value yet, so
 * the caller must write (=) all of it; marks it as holding one. */
static inline int em_adj_first(em_node *in) {
    int first = !in->adj_set;
    in->adj_set = 1;
    return first;
}

/* in's adjoint ready to be added into (zeroed if it held no value), or NULL for a constant. */
double *em_adj_target(em_node *in);

/* em_adj_target for every recorded input of self: for backward functions that only add. */
void em_adj_prepare_inputs(em_tape *t, em_node *self);

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
