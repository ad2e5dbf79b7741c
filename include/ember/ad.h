/* ad.h — reverse-mode automatic differentiation on a tape.
 *
 * A tape is a list of nodes in creation order. Each node holds a dense array of doubles (length
 * 1 is a scalar; a scalar broadcasts against a vector of any length), its adjoint when it needs
 * one, and the ids of its inputs. Constants and user data are referenced, not copied, and have
 * no adjoint. em_backward() seeds the adjoint of a scalar output with 1 and sweeps the tape once
 * in reverse, each node passing its contribution on to its inputs' adjoints. Adjoints are not
 * zeroed when nodes are made (on large vectors that would cost as much as the ops): the first
 * contribution to an adjoint writes it, later ones add, and em_backward() zeroes at the end
 * whatever it did not reach. Large parameter vectors can be referenced in place (em_leaf_ref).
 *
 * All memory comes from an arena that em_tape_reset() rewinds, so a model evaluated again and
 * again settles into a fixed footprint and stops allocating (Stan Math's arena design).
 *
 * Errors are sticky, like a stream's error flag: an op given bad input (length mismatch, index
 * out of range, NaN leaf) records the first error on the tape and returns an invalid em_var;
 * every later op given an invalid input returns an invalid em_var too. Check em_tape_status()
 * once at the end instead of after every op.
 *
 * Every op is available two ways: a function on the tape (em_op_add(t, a, b)) and a macro that
 * accepts either an em_tape* or an em_model* as its context and either em_var or a number as
 * operands (em_add(m, a, 1.0)), through C11 _Generic.
 */
#ifndef EMBER_AD_H
#define EMBER_AD_H

#include "ember/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_tape em_tape;
typedef struct em_model em_model; /* the model context (model.h); it owns a tape */

/* A handle to a tape node. id < 0 means "invalid": the tape recorded an error. */
typedef struct em_var {
    int32_t id;
} em_var;

#define EM_VAR_INVALID ((em_var){-1})
static inline int em_var_ok(em_var v) { return v.id >= 0; }

em_tape *em_tape_create(void);
void em_tape_destroy(em_tape *t);
/* Forget every node, rewind the arena, clear the error. Memory is kept for the next use. */
void em_tape_reset(em_tape *t);
size_t em_tape_size(const em_tape *t); /* number of nodes */
/* Changed by every em_tape_reset (to a value unique in the process, so no two tapes ever share
 * one): a var is only meaningful in the generation that made it. */
uint64_t em_tape_generation(const em_tape *t);
em_arena *em_tape_arena(em_tape *t);

em_status em_tape_status(const em_tape *t);
const em_error *em_tape_error(const em_tape *t);
/* Record an error on the tape (the first one wins) and return an invalid var. For ops and
 * distributions defined outside this module. */
em_var em_tape_fail(em_tape *t, em_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- leaves --------------------------------------------------------------------------- */

/* An independent variable: x is copied into the tape, and it gets an adjoint. A NaN in x is an
 * error (EM_ERR_NONFINITE). */
em_var em_leaf(em_tape *t, const double *x, size_t n);
em_var em_leaf_scalar(em_tape *t, double x);
/* An independent variable referenced in place, for large vectors (a parameter of 10^6 values
 * fed to a density): the tape neither copies x nor scans it, it only allocates the adjoint.
 * x must stay allocated and unchanged for as long as the tape's values or adjoints are used
 * (until em_tape_reset or em_tape_destroy). Errors: n == 0 (EM_ERR_SHAPE), x NULL (EM_ERR_ARG).
 *
 * Unlike em_leaf, a NaN in x is not an error here: finding it would take the very pass over
 * x that this leaf exists to avoid. It cannot give a silent wrong answer: IEEE arithmetic
 * carries a NaN into every value computed from it, so the output that depends on it is NaN
 * (and its gradient too), and the distributions reject a NaN parameter or value with an error
 * naming the element (for a log density, -inf and an EM_ERR_DOMAIN message). Elements the output
 * does not depend on (not gathered, not sliced) do not matter, as for any input. */
em_var em_leaf_ref(em_tape *t, const double *x, size_t n);
/* A constant vector referenced in place (user data): x must outlive the tape's use. */
em_var em_const(em_tape *t, const double *x, size_t n);
/* A constant row-major rows×cols matrix referenced in place. */
em_var em_const_matrix(em_tape *t, const double *x, size_t rows, size_t cols);
/* A constant scalar, stored in the tape. */
em_var em_scalar(em_tape *t, double x);
/* A constant vector copied into the tape. */
em_var em_const_copy(em_tape *t, const double *x, size_t n);

/* ---- reading values and adjoints -------------------------------------------------------- */

size_t em_len(const em_tape *t, em_var v);   /* 0 for an invalid var */
size_t em_rows(const em_tape *t, em_var v);  /* a vector of length n is n×1 */
size_t em_cols(const em_tape *t, em_var v);
/* Reading a value that depends on a leaf marks the tape: the caller may branch on it, so a
 * model density built on this tape runs the model again at every evaluation instead of
 * replaying the tape (see em_logdensity_from_model in model.h). */
const double *em_value(const em_tape *t, em_var v);
double em_value_scalar(const em_tape *t, em_var v); /* element 0; NaN for an invalid var */
/* The adjoint after em_backward (zeros for what the output does not depend on, and before a
 * first em_backward or after em_zero_adjoints); NULL for a constant or a node that needs none.
 * em_backward may replace the array: read it through this call each time. */
const double *em_adjoint(const em_tape *t, em_var v);
int em_needs_grad(const em_tape *t, em_var v);

/* Seed out (which must be a scalar) with adjoint 1 and propagate to every node. Adjoints
 * accumulate: call em_zero_adjoints first to take a second gradient of the same tape. */
em_status em_backward(em_tape *t, em_var out);
void em_zero_adjoints(em_tape *t);

/* ---- elementwise ops (a scalar operand broadcasts) ------------------------------------ */

em_var em_op_add(em_tape *t, em_var a, em_var b);
em_var em_op_sub(em_tape *t, em_var a, em_var b);
em_var em_op_mul(em_tape *t, em_var a, em_var b);
em_var em_op_div(em_tape *t, em_var a, em_var b);
/* parts[0] + ... + parts[k-1] in one node per six terms (a density's sum of site terms):
 * each a scalar or a vector of one common length. */
em_var em_op_add_many(em_tape *t, const em_var *parts, size_t k);
em_var em_op_neg(em_tape *t, em_var a);
em_var em_op_exp(em_tape *t, em_var a);
em_var em_op_log(em_tape *t, em_var a);
em_var em_op_log1p(em_tape *t, em_var a);
em_var em_op_expm1(em_tape *t, em_var a);
em_var em_op_sqrt(em_tape *t, em_var a);
em_var em_op_square(em_tape *t, em_var a);
em_var em_op_pow(em_tape *t, em_var a, double p); /* a^p, p a constant */
em_var em_op_tanh(em_tape *t, em_var a);
em_var em_op_sigmoid(em_tape *t, em_var a);     /* 1/(1+exp(-a)) */
em_var em_op_softplus(em_tape *t, em_var a);    /* log(1+exp(a)), stable for |a| large */
em_var em_op_log_sigmoid(em_tape *t, em_var a); /* -softplus(-a) */
em_var em_op_lgamma(em_tape *t, em_var a);
em_var em_op_digamma(em_tape *t, em_var a);

/* Log-scale arithmetic and the standard normal CDF, each stable in its tails (the formulas of
 * Stan's functions reference; see internal/mathx.h). Stan's names: inv_logit is sigmoid,
 * log_inv_logit is log_sigmoid. */
static inline em_var em_op_inv_logit(em_tape *t, em_var a) { return em_op_sigmoid(t, a); }
static inline em_var em_op_log_inv_logit(em_tape *t, em_var a) { return em_op_log_sigmoid(t, a); }
em_var em_op_log1m_inv_logit(em_tape *t, em_var a); /* log(1 - σ(a)) = -softplus(a) */
em_var em_op_log1m_exp(em_tape *t, em_var a);       /* log(1 - e^a), a <= 0 (NaN above) */
em_var em_op_Phi(em_tape *t, em_var a);             /* standard normal CDF */
em_var em_op_log_Phi(em_tape *t, em_var a);         /* log Φ(a), finite down to a ≈ -1e154 */
/* log(e^a + e^b) elementwise (a, b broadcast); -inf where both are -inf */
em_var em_op_log_sum_exp2(em_tape *t, em_var a, em_var b);
/* log(e^a - e^b) elementwise, a >= b (NaN below, -inf at a = b) */
em_var em_op_log_diff_exp(em_tape *t, em_var a, em_var b);

/* ---- reductions and indexing ----------------------------------------------------------- */

em_var em_op_sum(em_tape *t, em_var a);           /* scalar */
em_var em_op_dot(em_tape *t, em_var a, em_var b); /* scalar; equal lengths */
em_var em_op_log_sum_exp(em_tape *t, em_var a);   /* scalar log Σ e^{a_i}, stable */
/* out[i] = a[idx[i]] for i < n; idx is referenced (user data). An index ≥ len(a) is an error. */
em_var em_op_gather(em_tape *t, em_var a, const size_t *idx, size_t n);
em_var em_op_slice(em_tape *t, em_var a, size_t start, size_t len);
/* Concatenate k vars end to end. */
em_var em_op_concat(em_tape *t, const em_var *parts, size_t k);
/* Same values viewed as rows×cols (rows*cols must equal the length). */
em_var em_op_reshape(em_tape *t, em_var a, size_t rows, size_t cols);

/* ---- mixing numbers and vars: the _Generic front end ----------------------------------- */

em_tape *em_model_tape(em_model *m); /* defined by the model module */
static inline em_tape *em_tape_self_(em_tape *t) { return t; }
static inline em_var em_var_self_(em_tape *t, em_var v) { (void)t; return v; }
static inline em_var em_scalar_i_(em_tape *t, long x) { return em_scalar(t, (double)x); }

/* EM_T(ctx): the tape of an em_tape* or em_model*. EM_V(ctx, x): x as an em_var. */
#define EM_T(ctx) _Generic((ctx), em_model *: em_model_tape, em_tape *: em_tape_self_)(ctx)
#define EM_V(ctx, x)                                                                    \
    _Generic((x), em_var: em_var_self_, double: em_scalar, float: em_scalar,            \
             int: em_scalar_i_, long: em_scalar_i_, unsigned: em_scalar_i_)(EM_T(ctx), x)

#define em_add(c, a, b) em_op_add(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_sub(c, a, b) em_op_sub(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_mul(c, a, b) em_op_mul(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_div(c, a, b) em_op_div(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_neg(c, a) em_op_neg(EM_T(c), (a))
#define em_exp(c, a) em_op_exp(EM_T(c), (a))
#define em_log(c, a) em_op_log(EM_T(c), (a))
#define em_log1p(c, a) em_op_log1p(EM_T(c), (a))
#define em_expm1(c, a) em_op_expm1(EM_T(c), (a))
#define em_sqrt(c, a) em_op_sqrt(EM_T(c), (a))
#define em_square(c, a) em_op_square(EM_T(c), (a))
#define em_pow(c, a, p) em_op_pow(EM_T(c), (a), (p))
#define em_tanh(c, a) em_op_tanh(EM_T(c), (a))
#define em_sigmoid(c, a) em_op_sigmoid(EM_T(c), (a))
#define em_softplus(c, a) em_op_softplus(EM_T(c), (a))
#define em_log_sigmoid(c, a) em_op_log_sigmoid(EM_T(c), (a))
#define em_lgamma(c, a) em_op_lgamma(EM_T(c), (a))
#define em_digamma(c, a) em_op_digamma(EM_T(c), (a))
#define em_inv_logit(c, a) em_op_inv_logit(EM_T(c), (a))
#define em_log_inv_logit(c, a) em_op_log_inv_logit(EM_T(c), (a))
#define em_log1m_inv_logit(c, a) em_op_log1m_inv_logit(EM_T(c), (a))
#define em_log1m_exp(c, a) em_op_log1m_exp(EM_T(c), (a))
#define em_Phi(c, a) em_op_Phi(EM_T(c), (a))
#define em_log_Phi(c, a) em_op_log_Phi(EM_T(c), (a))
#define em_log_sum_exp2(c, a, b) em_op_log_sum_exp2(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_log_diff_exp(c, a, b) em_op_log_diff_exp(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_log_sum_exp(c, a) em_op_log_sum_exp(EM_T(c), (a))
#define em_sum(c, a) em_op_sum(EM_T(c), (a))
#define em_dot(c, a, b) em_op_dot(EM_T(c), (a), (b))
#define em_gather(c, a, idx, n) em_op_gather(EM_T(c), (a), (idx), (n))
#define em_slice(c, a, s, n) em_op_slice(EM_T(c), (a), (s), (n))
#define em_data(c, x, n) em_const(EM_T(c), (x), (n))
/* A row-major rows×cols data matrix (a design matrix for the GLMs), referenced, not copied. */
#define em_data_matrix(c, X, rows, cols) em_const_matrix(EM_T(c), (X), (rows), (cols))

#ifdef __cplusplus
}
#endif
#endif
