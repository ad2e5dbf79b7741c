/* grad_glm.c — the one-pass GLM kernels (negative binomial log link, Gamma log link, ordered
 * logistic) at n = 10^5 rows and d = 20 coefficients: the gradient of the fused node against
 * the same likelihood written elementwise (matvec_add + the family's log density: two passes over
 * X, one in each direction, plus the nodes between) and against a floor of two passes over X
 * (cblas_dgemv for η = α + Xβ and for Xᵀr, with a trivial r in between: what any gradient of a
 * GLM must at least cost when it reads X twice). Targets: fused at least 2x faster than
 * elementwise, and within 1.3x of the floor (the fused kernel reads X once but pays for each
 * row's transcendental functions, which the floor does not compute). Both Ember sides are model
 * densities (em_logdensity_eval, which replays the recorded tape), the floor plain C. One JSON
 * line per kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "bench.h"
#include "ember.h"

typedef enum { K_NB2, K_GAMMA, K_ORDERED } kernel;
static const char *NAMES[] = {"grad_glm_nb2_log", "grad_glm_gamma_log", "grad_glm_ordered_logistic"};

typedef struct {
    size_t n, d, np; /* np: the family's own parameters (log phi, log shape, or 3 cutpoints) */
    double *X, *y, *eta; /* eta: the floor's scratch */
    kernel k;
} data;

/* theta = (alpha (not ordered), beta[0..d), par[0..np)) */
static size_t ntheta(const data *D) { return (D->k == K_ORDERED ? 0 : 1) + D->d + D->np; }

/* The model: θ one flat (improper) site, split into α, β and the family's parameters; the
 * likelihood fused or elementwise. Its density replays the recorded tape at each θ (model.h),
 * as NUTS uses it, so what is timed is the gradient, not the building of the tape. */
typedef struct {
    const data *D;
    int fused;
} model_arg;

static void glm_model(em_model *m, const void *arg) {
    const model_arg *ma = arg;
    const data *D = ma->D;
    size_t n = D->n, d = D->d, off = D->k == K_ORDERED ? 0 : 1;
    em_var th = em_sample(m, "theta", em_flat(m, ntheta(D)));
    em_var alpha = off ? em_slice(m, th, 0, 1) : em_scalar(em_model_tape(m), 0.0), beta = em_slice(m, th, off, d);
    em_var par = em_slice(m, th, off + d, D->np), X = em_const_matrix(em_model_tape(m), D->X, n, d);
    em_tape *t = em_model_tape(m);
    em_dist lik;
    if (ma->fused) {
        lik = D->k == K_NB2     ? em_dist_neg_binomial2_log_glm(t, X, alpha, beta, em_exp(m, par), NULL)
              : D->k == K_GAMMA ? em_dist_gamma_log_glm(t, X, alpha, beta, em_exp(m, par), NULL)
                                : em_dist_ordered_logistic_glm(t, X, beta, par, NULL);
    } else {
        em_var eta = em_matvec_add(m, X, beta, alpha);
        lik = D->k == K_NB2     ? em_dist_neg_binomial2_log(t, eta, em_exp(m, par))
              : D->k == K_GAMMA ? em_dist_gamma_mean(t, em_exp(m, eta), em_exp(m, par))
                                : em_dist_ordered_logistic(t, eta, par);
    }
    em_observe(m, "y", lik, D->y, n);
}

static double ember(em_logdensity *ld, const double *theta, double *grad) {
    double lp;
    em_error err = {0};
    if (em_logdensity_eval(ld, theta, &lp, grad, &err) != EM_OK) {
        fprintf(stderr, "grad_glm: %s\n", err.msg);
        exit(1);
    }
    return lp;
}

/* two passes over X and a trivial row term between them */
static double floor_two_passes(const data *D, const double *theta, double *grad) {
    size_t n = D->n, d = D->d, off = D->k == K_ORDERED ? 0 : 1;
    double a = off ? theta[0] : 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) D->eta[i] = a;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0, D->X, (int)d, theta + off, 1, 1.0, D->eta, 1);
    for (size_t i = 0; i < n; i++) {
        D->eta[i] = D->y[i] - D->eta[i];
        s += D->eta[i];
    }
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0, D->X, (int)d, D->eta, 1, 0.0, grad + off, 1);
    return s;
}

typedef struct {
    const data *D;
    em_logdensity *ld; /* NULL: the floor */
    const double *theta;
    double *grad;
} job;

static volatile double sink;

static void run_once(void *ctx) {
    const job *j = ctx;
    sink = j->ld ? ember(j->ld, j->theta, j->grad) : floor_two_passes(j->D, j->theta, j->grad);
}

static em_logdensity *density(const model_arg *ma) {
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(glm_model, ma, NULL, &err);
    if (!ld) {
        fprintf(stderr, "grad_glm: %s\n", err.msg);
        exit(1);
    }
    return ld;
}

static void bench_kernel(kernel k, size_t n, size_t d, uint64_t seed) {
    data D = {n, d, k == K_ORDERED ? 3 : 1, malloc(n * d * sizeof(double)), malloc(n * sizeof(double)),
              malloc(n * sizeof(double)), k};
    size_t m = ntheta(&D);
    double *theta = malloc(m * sizeof(double)), *g1 = malloc(m * sizeof(double)), *g2 = malloc(m * sizeof(double));
    if (!D.X || !D.y || !D.eta || !theta || !g1 || !g2) {
        fprintf(stderr, "grad_glm: out of memory\n");
        exit(1);
    }
    em_rng *rng = em_rng_create(seed, 0);
    size_t off = k == K_ORDERED ? 0 : 1;
    if (off) theta[0] = 0.5;
    for (size_t j = 0; j < d; j++) theta[off + j] = 0.1 * em_rng_normal(rng);
    if (k == K_ORDERED) {
        theta[off + d] = -1.0;
        theta[off + d + 1] = 0.0;
        theta[off + d + 2] = 1.0;
    } else {
        theta[off + d] = log(2.0);
    }
    for (size_t i = 0; i < n; i++) {
        double eta = off ? theta[0] : 0.0;
        for (size_t j = 0; j < d; j++) {
            D.X[i * d + j] = em_rng_normal(rng);
            eta += D.X[i * d + j] * theta[off + j];
        }
        double mu = exp(eta), u = em_rng_uniform(rng);
        if (k == K_NB2) D.y[i] = floor(-mu * log(u > 0 ? u : 1e-300)); /* any counts will do */
        else if (k == K_GAMMA) D.y[i] = mu * (0.2 + 1.6 * u);
        else D.y[i] = floor(4.0 * u);
    }
    em_rng_destroy(rng);

    model_arg mf = {&D, 1}, me = {&D, 0};
    em_logdensity *lf = density(&mf), *le = density(&me);
    double lp1 = ember(lf, theta, g1), lp2 = ember(le, theta, g2);
    double worst = fabs(lp1 - lp2) / fmax(1.0, fabs(lp1));
    for (size_t j = 0; j < m; j++) worst = fmax(worst, fabs(g1[j] - g2[j]) / fmax(1.0, fabs(g1[j])));
    if (!(worst < 1e-9)) {
        fprintf(stderr, "%s: fused and elementwise disagree (relative %g)\n", NAMES[k], worst);
        exit(1);
    }
    job jf = {&D, lf, theta, g1}, je = {&D, le, theta, g2}, jb = {&D, NULL, theta, g2};
    double tf, te, tb, tf2, r_elem, r_floor;
    bench_pair(run_once, &je, run_once, &jf, &te, &tf, &r_elem);
    bench_pair(run_once, &jb, run_once, &jf, &tb, &tf2, &r_floor);
    printf("{\"bench\":\"%s\",\"n\":%zu,\"d\":%zu,\"fused_us\":%.3f,\"elementwise_us\":%.3f,\"floor_us\":%.3f,"
           "\"speedup_vs_elementwise\":%.3f,\"ratio_vs_floor\":%.3f,\"blas_threads\":%d}\n",
           NAMES[k], n, d, 0.5 * (tf + tf2), te, tb, 1.0 / r_elem, r_floor, openblas_get_num_threads());
    fflush(stdout);
    em_logdensity_destroy(lf);
    em_logdensity_destroy(le);
    free(D.X);
    free(D.y);
    free(D.eta);
    free(theta);
    free(g1);
    free(g2);
}

int main(int argc, char **argv) {
    /* one thread for BLAS, as the tape's own loops (see grad_linreg.c) */
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    /* "nb2", "gamma" or "ordered" runs one kernel (for profiling) */
    const char *only = argc > 1 ? argv[1] : "";
    if (!*only || !strcmp(only, "nb2")) bench_kernel(K_NB2, 100000, 20, 11);
    if (!*only || !strcmp(only, "gamma")) bench_kernel(K_GAMMA, 100000, 20, 12);
    if (!*only || !strcmp(only, "ordered")) bench_kernel(K_ORDERED, 100000, 20, 13);
    return 0;
}
