/* transform.h — bijections from unconstrained reals to each support, with log|det J|.
 *
 * Inference engines work on the real line; a latent site whose distribution lives on (0, inf),
 * an interval, the simplex or the Cholesky factors of correlation matrices is moved there by
 * its support's default transform. Every transform works two ways: on the tape (forward, with
 * the log-Jacobian added to an accumulator, for the log density and its gradient) and on plain
 * doubles (forward and inverse, for initial values, output and guides).
 *
 * Sizes: the unconstrained vector of a simplex of K has K-1 values; of a K×K correlation
 * Cholesky factor, K(K-1)/2 (its free values are the canonical partial correlations' atanh, in
 * row-major order of the strict lower triangle); every other transform keeps the length. A
 * simplex needs K >= 2 and a correlation Cholesky factor K >= 2.
 *
 * Numerics: the interval and unit transforms return values strictly inside their bounds for any
 * finite x (a value that would round onto a bound is moved one ulp inside) with a finite
 * log-Jacobian; positive, lower, upper and ordered report EM_ERR_NONFINITE when exp(x)
 * overflows, and may return a value on the bound when exp(x) underflows (x < about -745).
 */
#ifndef EMBER_TRANSFORM_H
#define EMBER_TRANSFORM_H

#include "ember/ad.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_transform_kind {
    EM_TRANSFORM_IDENTITY = 0, /* real line */
    EM_TRANSFORM_POSITIVE,     /* y = exp(x), (0, inf) */
    EM_TRANSFORM_LOWER,        /* y = lo + exp(x), (lo, inf) */
    EM_TRANSFORM_UPPER,        /* y = hi - exp(x), (-inf, hi) */
    EM_TRANSFORM_INTERVAL,     /* y = lo + (hi-lo)·sigmoid(x), (lo, hi) */
    EM_TRANSFORM_UNIT,         /* y = sigmoid(x), (0, 1) */
    EM_TRANSFORM_SIMPLEX,      /* stick-breaking, K-1 reals -> K-simplex */
    EM_TRANSFORM_CORR_CHOLESKY,/* K(K-1)/2 reals -> lower Cholesky factor of a K×K correlation matrix (row-major K×K) */
    EM_TRANSFORM_ORDERED,      /* y1 = x1, y_k = y_{k-1} + exp(x_k) */
    EM_TRANSFORM_COUNT
} em_transform_kind;

typedef struct em_transform {
    em_transform_kind kind;
    double lo, hi; /* bounds for LOWER, UPPER, INTERVAL */
} em_transform;

/* "identity", "positive", "lower", "upper", "interval", "unit", "simplex", "corr_cholesky",
 * "ordered" (distinct, stable: used in files); "unknown" for anything else. */
const char *em_transform_name(em_transform_kind k);

/* EM_OK, or EM_ERR_ARG naming what is wrong: an unknown kind, a non-finite bound, lo >= hi. */
em_status em_transform_validate(const em_transform *tr, em_error *err);

/* Length of the unconstrained vector for a constrained value of length n (n = K for a simplex,
 * K*K for a correlation Cholesky factor); 0 if n is impossible for the transform. */
size_t em_transform_free_len(const em_transform *tr, size_t n);
/* Length of the constrained value for an unconstrained vector of length m. */
size_t em_transform_constrained_len(const em_transform *tr, size_t m);

/* On the tape: y = f(x); adds log|det J(x)| into *logdet (a scalar var; pass a var holding 0 to
 * start, or EM_VAR_INVALID or a NULL pointer to skip the Jacobian). y is one node with an
 * analytic backward pass (a K×K matrix for a correlation Cholesky factor, x's shape for the
 * elementwise transforms, a vector otherwise); the log-det update is one more node. The identity
 * returns x itself. Errors (bad bounds, wrong length, non-finite x or overflow) go on the tape. */
em_var em_transform_forward(em_tape *t, const em_transform *tr, em_var x, em_var *logdet);

/* On doubles: forward (x of length m -> y, returns log|det J| in *logdet when non-NULL) and
 * inverse (y -> x). The inverse of a value outside the support is EM_ERR_DOMAIN naming it, e.g.
 * "interval(0, 10): value[0] = 12 is outside (0, 10)". A simplex must sum to 1 and each row of
 * a correlation Cholesky factor have unit norm to within 1e-8; its upper triangle must be 0.
 * x and y must not overlap (except for the identity). */
em_status em_transform_forward_d(const em_transform *tr, const double *x, size_t m, double *y,
                                 double *logdet, em_error *err);
em_status em_transform_inverse_d(const em_transform *tr, const double *y, size_t n, double *x,
                                 em_error *err);

#ifdef __cplusplus
}
#endif
#endif
