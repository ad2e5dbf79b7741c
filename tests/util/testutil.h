/* testutil.h — helpers shared by the cmocka tests: finite-difference gradient checks and
 * tolerance comparisons. */
#ifndef EMBER_TESTUTIL_H
#define EMBER_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ember.h"

/* A scalar function of a flat vector x built on a fresh tape: it must create the leaves with
 * em_leaf from x (in any layout it likes) and return the scalar output. leaves receives the
 * leaf vars in order so the checker can read their adjoints; their lengths must sum to n. */
typedef em_var (*tu_tape_fn)(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves,
                             void *ctx);

/* Compare the tape gradient of f at x with central finite differences (step h scaled by
 * max(1,|x_i|)); fails the test if any component differs by more than
 * atol + rtol*|fd|. Returns the largest absolute difference. */
double tu_check_gradient(tu_tape_fn f, const double *x, size_t n, void *ctx, double h, double rtol,
                         double atol, const char *label);

/* Fill x with uniform values in [lo, hi) from a fixed-seed generator. */
void tu_fill_uniform(double *x, size_t n, double lo, double hi, uint64_t seed);
/* qsort's comparison of doubles, for reference sorts */
int tu_cmp_double(const void *a, const void *b);

/* Exact posterior of (a, b) for y_i ~ Normal(a + b x_i, 1) with a, b ~ Normal(0, 1/sqrt(prior_prec)):
 * precision Λ = [n, Σx; Σx, Σx²] + prior_prec·I, mean Λ⁻¹ [Σy, Σxy]; cov row-major 2×2. */
void tu_linreg2_posterior(const double *x, const double *y, size_t n, double prior_prec, double mean[2],
                          double cov[4]);

/* assert |a-b| <= atol + rtol*|b|, with a readable failure message */
#define tu_assert_close(a, b, rtol, atol) tu_assert_close_((a), (b), (rtol), (atol), #a, __FILE__, __LINE__)
void tu_assert_close_(double a, double b, double rtol, double atol, const char *what, const char *file, int line);

#endif
