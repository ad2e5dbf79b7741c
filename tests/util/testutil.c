/* testutil.c — finite-difference gradient checks and comparisons for the tests. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double tu_check_gradient(tu_tape_fn f, const double *x, size_t n, void *ctx, double h, double rtol,
                         double atol, const char *label) {
    em_tape *t = em_tape_create();
    assert_non_null(t);
    em_var leaves[64];
    size_t nleaves = 0;
    em_var out = f(t, x, n, leaves, &nleaves, ctx);
    if (em_tape_status(t) != EM_OK) fail_msg("%s: tape error: %s", label, em_tape_error(t)->msg);
    assert_int_equal(em_backward(t, out), EM_OK);
    double *grad = calloc(n, sizeof *grad);
    size_t off = 0;
    for (size_t k = 0; k < nleaves; k++) {
        size_t len = em_len(t, leaves[k]);
        const double *g = em_adjoint(t, leaves[k]);
        for (size_t i = 0; i < len && off + i < n; i++) grad[off + i] = g ? g[i] : 0.0;
        off += len;
    }
    if (off != n) fail_msg("%s: leaves cover %zu of %zu inputs", label, off, n);
    double *xp = malloc(n * sizeof *xp);
    memcpy(xp, x, n * sizeof *xp);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double step = h * fmax(1.0, fabs(x[i]));
        xp[i] = x[i] + step;
        em_tape_reset(t);
        double fp = em_value_scalar(t, f(t, xp, n, leaves, &nleaves, ctx));
        xp[i] = x[i] - step;
        em_tape_reset(t);
        double fm = em_value_scalar(t, f(t, xp, n, leaves, &nleaves, ctx));
        xp[i] = x[i];
        double fd = (fp - fm) / (2.0 * step);
        double diff = fabs(fd - grad[i]);
        if (diff > worst) worst = diff;
        if (!(diff <= atol + rtol * fabs(fd)))
            fail_msg("%s: d/dx[%zu] tape %.12g vs finite difference %.12g (x=%.6g)", label, i, grad[i], fd, x[i]);
    }
    free(xp);
    free(grad);
    em_tape_destroy(t);
    return worst;
}

int tu_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void tu_fill_uniform(double *x, size_t n, double lo, double hi, uint64_t seed) {
    em_rng *r = em_rng_create(seed, 0);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * em_rng_uniform(r);
    em_rng_destroy(r);
}

void tu_assert_close_(double a, double b, double rtol, double atol, const char *what, const char *file, int line) {
    if (!(fabs(a - b) <= atol + rtol * fabs(b)))
        fail_msg("%s:%d: %s = %.12g, expected %.12g (rtol %g, atol %g)", file, line, what, a, b, rtol, atol);
}

void tu_linreg2_posterior(const double *x, const double *y, size_t n, double prior_prec, double mean[2],
                          double cov[4]) {
    double sx = 0, sxx = 0, sy = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sx += x[i];
        sxx += x[i] * x[i];
        sy += y[i];
        sxy += x[i] * y[i];
    }
    double l00 = (double)n + prior_prec, l01 = sx, l11 = sxx + prior_prec, det = l00 * l11 - l01 * l01;
    cov[0] = l11 / det;
    cov[1] = cov[2] = -l01 / det;
    cov[3] = l00 / det;
    mean[0] = cov[0] * sy + cov[1] * sxy;
    mean[1] = cov[2] * sy + cov[3] * sxy;
}
