/* grad_linreg.c — the cost of a Gaussian linear-regression log likelihood and its gradient
 * through the tape, against the same gradient written by hand in C with two cblas_dgemv calls.
 *
 *   log p(y | α, β, σ) = -n log σ - ½ Σ (yᵢ - α - xᵢ·β)² / σ² - (n/2) log 2π
 *
 * with the gradient taken w.r.t. (α, β, log σ). Both sides use the same data in the same run;
 * the ratio ember/baseline is the autodiff overhead. One JSON object per case on stdout.
 *
 * Cases: "grad_linreg" builds the likelihood from elementwise ops (residual, sum of squares);
 * "grad_linreg_normal" (the large size only) writes it as a Normal log density around the
 * linear predictor, as a model would (em_dist_normal), whose fused node computes value and
 * partials in one pass and hands the partials over as the predictor's adjoint. Both rewind the
 * tape and build every node on every call; both copy the 22 parameters into leaves (em_leaf: on
 * so few values a by-reference leaf would change nothing).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_2PI 1.8378770664093454836

#include <cblas.h>

#include "bench.h"
#include "ember.h"

typedef struct {
    size_t n, d;
    double *X, *y;
    double *resid; /* baseline scratch, allocated once like a user would */
} data;

/* CPU time of the process, not wall-clock time: on a shared machine the time the process spends
 * descheduled is not its cost and would land on whichever side happened to be running. (With
 * several BLAS threads this is the total work of all threads.) */
/* theta = (alpha, beta[0..d), log_sigma) */
static double baseline(const data *D, const double *theta, double *grad) {
    size_t n = D->n, d = D->d;
    double alpha = theta[0], ls = theta[d + 1], inv_s2 = exp(-2.0 * ls);
    double *r = D->resid;
    /* r = y - α - Xβ */
    for (size_t i = 0; i < n; i++) r[i] = D->y[i] - alpha;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, -1.0, D->X, (int)d, theta + 1, 1, 1.0, r, 1);
    double ss = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        ss += r[i] * r[i];
        sr += r[i];
    }
    /* ∂/∂β = Xᵀ r / σ², ∂/∂α = Σ r / σ², ∂/∂log σ = -n + Σ r² / σ² */
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, inv_s2, D->X, (int)d, r, 1, 0.0, grad + 1, 1);
    grad[0] = sr * inv_s2;
    grad[d + 1] = -(double)n + ss * inv_s2;
    return -(double)n * ls - 0.5 * ss * inv_s2 - 0.5 * (double)n * LOG_2PI;
}

/* Differentiate lp and read the gradient w.r.t. (alpha, beta, log sigma) into grad. */
static void backward_into(em_tape *t, em_var lp, em_var alpha, em_var beta, em_var ls, size_t d, double *grad) {
    if (em_backward(t, lp) != EM_OK) {
        fprintf(stderr, "grad_linreg: %s\n", em_tape_error(t)->msg);
        exit(1);
    }
    grad[0] = em_adjoint(t, alpha)[0];
    memcpy(grad + 1, em_adjoint(t, beta), d * sizeof(double));
    grad[d + 1] = em_adjoint(t, ls)[0];
}

/* The same through the tape, written the fast way: X referenced in place, the linear predictor
 * with its intercept in one matvec_add node, the residual in one vector node, the sum of squares
 * as one dot node (not square + sum); σ enters only through scalar nodes. 2 of the 15 nodes are
 * vectors of length n. Backward, dot(r, r) gives r the adjoint 2g·r as a scaled view of r's
 * value (internal/tape.h), sub passes it on to the predictor, and matvec_add's transposed dgemv
 * reads it in place: no pass over n values of the backward's own. */
static double ember(em_tape *t, const data *D, const double *theta, double *grad) {
    size_t n = D->n, d = D->d;
    em_tape_reset(t);
    em_var alpha = em_leaf(t, theta, 1);
    em_var beta = em_leaf(t, theta + 1, d);
    em_var ls = em_leaf(t, theta + d + 1, 1);
    em_var X = em_const_matrix(t, D->X, n, d);
    em_var y = em_const(t, D->y, n);
    em_var r = em_sub(t, y, em_matvec_add(t, X, beta, alpha));
    em_var ss = em_dot(t, r, r);
    em_var inv_s2 = em_exp(t, em_mul(t, -2.0, ls));
    em_var lp = em_sub(t, em_mul(t, -(double)n, ls), em_mul(t, 0.5, em_mul(t, ss, inv_s2)));
    backward_into(t, lp, alpha, beta, ls, d, grad);
    /* the normalising constant has no gradient: added as a number, not a node */
    return em_value_scalar(t, lp) - 0.5 * (double)n * LOG_2PI;
}

/* The same likelihood as one Normal log density around the linear predictor. */
static double ember_normal(em_tape *t, const data *D, const double *theta, double *grad) {
    size_t n = D->n, d = D->d;
    em_tape_reset(t);
    em_var alpha = em_leaf(t, theta, 1);
    em_var beta = em_leaf(t, theta + 1, d);
    em_var ls = em_leaf(t, theta + d + 1, 1);
    em_var eta = em_matvec_add(t, em_const_matrix(t, D->X, n, d), beta, alpha);
    em_dist lik = em_dist_normal(t, eta, em_exp(t, ls));
    em_var lp = em_dist_log_prob(&lik, em_const(t, D->y, n));
    backward_into(t, lp, alpha, beta, ls, d, grad);
    return em_value_scalar(t, lp);
}

typedef struct {
    const data *D;
    em_tape *t;
    const double *theta;
    double *grad;
    int use_tape; /* 0 baseline, 1 elementwise ops, 2 Normal density */
} job;

static volatile double sink;

static void run_once(void *ctx) {
    const job *j = ctx;
    sink = j->use_tape == 2   ? ember_normal(j->t, j->D, j->theta, j->grad)
           : j->use_tape == 1 ? ember(j->t, j->D, j->theta, j->grad)
                              : baseline(j->D, j->theta, j->grad);
}

static void bench_case(size_t n, size_t d, uint64_t seed) {
    data D = {n, d, malloc(n * d * sizeof(double)), malloc(n * sizeof(double)), malloc(n * sizeof(double))};
    double *theta = malloc((d + 2) * sizeof(double));
    double *g1 = malloc((d + 2) * sizeof(double)), *g2 = malloc((d + 2) * sizeof(double));
    if (!D.X || !D.y || !D.resid || !theta || !g1 || !g2) {
        fprintf(stderr, "grad_linreg: out of memory\n");
        exit(1);
    }
    em_rng *rng = em_rng_create(seed, 0);
    for (size_t j = 0; j < d + 2; j++) theta[j] = 0.5 * em_rng_normal(rng);
    theta[d + 1] = 0.1;
    for (size_t i = 0; i < n; i++) {
        double mu = theta[0];
        for (size_t j = 0; j < d; j++) {
            D.X[i * d + j] = em_rng_normal(rng);
            mu += D.X[i * d + j] * theta[1 + j];
        }
        D.y[i] = mu + exp(theta[d + 1]) * em_rng_normal(rng);
    }
    em_rng_destroy(rng);
    theta[1] += 0.1; /* evaluate away from the data-generating point */

    em_tape *t = em_tape_create();
    /* Both must agree before their times mean anything. */
    double lp1 = baseline(&D, theta, g1), lp2 = ember(t, &D, theta, g2);
    double worst = fabs(lp1 - lp2) / fmax(1.0, fabs(lp1));
    for (size_t j = 0; j < d + 2; j++) worst = fmax(worst, fabs(g1[j] - g2[j]) / fmax(1.0, fabs(g1[j])));
    if (!(worst < 1e-9)) {
        fprintf(stderr, "grad_linreg: tape and baseline disagree (relative %g)\n", worst);
        exit(1);
    }

    job jb = {&D, t, theta, g1, 0}, je = {&D, t, theta, g2, 1};
    run_once(&je); /* warm the arena up */
    double tb, te, ratio;
    bench_pair(run_once, &jb, run_once, &je, &tb, &te, &ratio);
    printf("{\"bench\":\"grad_linreg\",\"n\":%zu,\"d\":%zu,\"ember_us\":%.3f,\"baseline_us\":%.3f,\"ratio\":%.3f,"
           "\"blas_threads\":%d}\n",
           n, d, te, tb, ratio, openblas_get_num_threads());
    fflush(stdout);
    if (n >= 10000) {
        double lp3 = ember_normal(t, &D, theta, g2);
        worst = fabs(lp1 - lp3) / fmax(1.0, fabs(lp1));
        for (size_t j = 0; j < d + 2; j++) worst = fmax(worst, fabs(g1[j] - g2[j]) / fmax(1.0, fabs(g1[j])));
        if (!(worst < 1e-9)) {
            fprintf(stderr, "grad_linreg_normal: tape and baseline disagree (relative %g)\n", worst);
            exit(1);
        }
        job jn = {&D, t, theta, g2, 2};
        run_once(&jn);
        bench_pair(run_once, &jb, run_once, &jn, &tb, &te, &ratio);
        printf("{\"bench\":\"grad_linreg_normal\",\"n\":%zu,\"d\":%zu,\"ember_us\":%.3f,\"baseline_us\":%.3f,"
               "\"ratio\":%.3f,\"blas_threads\":%d}\n",
               n, d, te, tb, ratio, openblas_get_num_threads());
        fflush(stdout);
    }
    em_tape_destroy(t);
    free(D.X);
    free(D.y);
    free(D.resid);
    free(theta);
    free(g1);
    free(g2);
}

int main(int argc, char **argv) {
    /* The tape's elementwise ops run on one thread; so does the baseline, unless the caller
     * sets OPENBLAS_NUM_THREADS, so that the ratio measures autodiff overhead and not how many
     * idle cores a shared machine happens to have. */
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    /* "small" or "large" runs one case (for profiling) */
    const char *only = argc > 1 ? argv[1] : "";
    if (strcmp(only, "large") != 0) bench_case(170, 4, 1);
    if (strcmp(only, "small") != 0) bench_case(100000, 20, 2);
    return 0;
}
