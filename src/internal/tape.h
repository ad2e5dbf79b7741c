/* internal/tape.h — the tape's node layout, for modules that define their own ops
 * (linalg, dist, transform). Not installed: users see only ember/ad.h.
 *
 * To add an op: call em_node_new() with the output shape and the inputs; fill node->val; if
 * node->adj is non-NULL (some input needs a gradient) the backward function will be called
 * during em_backward() and must add node->adj's contribution into each input's adj (inputs
 * whose adj is NULL are constants: skip them). Per-op scratch (cached partials, index arrays)
 * goes in node->aux, allocated from the tape's arena.
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
};

/* The node behind a valid var (no check). */
em_node *em_node_get(const em_tape *t, em_var v);

/* Check that every input var is valid; if one is not, the tape already holds an error.
 * Returns 1 when all are valid. */
int em_inputs_ok(const em_var *in, int nin);

/* Create a node of n = rows*cols values with the given inputs. Its val is allocated (not
 * initialised); its adj is allocated and zeroed when any input needs a gradient, and then
 * backward is recorded. Returns NULL (and records EM_ERR_NOMEM) when out of memory; *out
 * receives the new var. */
em_node *em_node_new(em_tape *t, size_t rows, size_t cols, const em_var *in, int nin,
                     em_backward_fn backward, em_var *out);

/* The common length of two broadcastable operands (equal, or one of them 1), or 0 with an
 * EM_ERR_SHAPE recorded on the tape naming op. */
size_t em_broadcast_len(em_tape *t, const char *op, size_t na, size_t nb);

/* Add the adjoint g (length n) into input adjoint a of length na (na == n, or na == 1: sum). */
void em_adj_accumulate(double *a, size_t na, const double *g, size_t n);

#endif
