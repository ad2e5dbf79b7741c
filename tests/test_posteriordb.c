/* test_posteriordb.c — NUTS against Stan's reference posteriors from posteriordb.
 *
 * Four posteriors (tests/data/posteriordb/, see PROVENANCE.md there): a linear regression with
 * flat priors (kidiq), the non-centred eight schools, a logistic regression (dogs) and a
 * Poisson GP regression with a Cholesky factor on the tape (gp_pois_regr). For each:
 *
 * 1. The Ember model's log density (em_logdensity_from_model) equals a log density written by
 *    hand in plain C, on the unconstrained space with the Jacobian, at random points, to 1e-10
 *    relative (for the GP, plus the rounding error its ill-conditioned kernel matrix allows,
 *    from Higham's backward-error bound for Cholesky: see gp_rounding_allowance); and its
 *    gradient matches central finite differences.
 * 2. NUTS, 4 chains x 1000 draws after 1000 warmup, with Stan's settings for the reference
 *    (adapt_delta, max_treedepth from info.json), reproduces Stan's 10,000 reference draws:
 *    every mean within 4 sqrt(mcse^2 + (sd_ref / sqrt(ess_ref))^2) — our Monte Carlo error and
 *    the reference's — every sd within 10 % of the reference sd, R-hat < 1.01, and no
 *    divergent transition.
 *
 * Under the sanitizer build the sampling part is shortened (see sanitized_run below).
 */
#include "util/testutil.h"
#include "util/json.h"
#include "util/posteriordb_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PDB_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PDB_ASAN 1
#endif

#define PDB_GP_MAX_N 16 /* the GP reference works in fixed arrays */

static const double LOG_SQRT_2PI = 0.91893853320467274178;
static const double LOG_PI = 1.14472988584940017414;
static const double LOG_2 = 0.69314718055994530942;

static int sanitized_run(void) {
#ifdef PDB_ASAN
    return 1;
#else
    const char *b = getenv("EMBER_BUILD");
    return b && strstr(b, "san") != NULL;
#endif
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- hand-written log densities on the unconstrained space -------------------------------- */

static double normal_lpdf(double x, double mu, double s) {
    double z = (x - mu) / s;
    return -0.5 * z * z - log(s) - LOG_SQRT_2PI;
}

/* Cauchy(0, s) restricted to x > 0, normalised: 2 / (pi s (1 + (x/s)^2)) */
static double half_cauchy_lpdf(double x, double s) {
    double z = x / s;
    return LOG_2 - LOG_PI - log(s) - log1p(z * z);
}

/* log(1 + exp(x)) without overflow */
static double log1p_exp(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* θ = (beta1, beta2, log sigma) */
static double kidiq_lp(const void *data, const double *th) {
    const tu_pdb_kidiq *d = data;
    double s = exp(th[2]);
    double lp = half_cauchy_lpdf(s, 2.5) + th[2]; /* flat priors on beta add nothing */
    for (size_t i = 0; i < d->N; i++) lp += normal_lpdf(d->kid_score[i], th[0] + th[1] * d->mom_iq[i], s);
    return lp;
}

/* θ = (theta_trans[J], mu, log tau) */
static double eight_lp(const void *data, const double *th) {
    const tu_pdb_eight_schools *d = data;
    size_t J = d->J;
    double mu = th[J], tau = exp(th[J + 1]);
    double lp = normal_lpdf(mu, 0.0, 5.0) + half_cauchy_lpdf(tau, 5.0) + th[J + 1];
    for (size_t j = 0; j < J; j++) {
        lp += normal_lpdf(th[j], 0.0, 1.0);
        lp += normal_lpdf(d->y[j], mu + tau * th[j], d->sigma[j]);
    }
    return lp;
}

/* θ = beta[3] */
static double dogs_lp(const void *data, const double *th) {
    const tu_pdb_dogs *d = data;
    double lp = 0.0;
    for (int k = 0; k < 3; k++) lp += normal_lpdf(th[k], 0.0, 100.0);
    for (size_t r = 0; r < d->n; r++) {
        double eta = th[0] + th[1] * d->X[2 * r] + th[2] * d->X[2 * r + 1];
        lp += d->y[r] * eta - log1p_exp(eta);
    }
    return lp;
}

/* θ = (log rho, log alpha, f_tilde[N]), in long double so that it is a more accurate reference
 * than any double computation. K is formed from θ unless Kin is given (then K = Kin, used for
 * the sensitivity below). The Cholesky factor comes from the textbook Cholesky–Banachiewicz
 * recursion (Golub & Van Loan, Matrix Computations, alg. 4.2.1); *Lout, when not NULL, gets it. */
static long double gp_lp_ld(const tu_pdb_gp *d, const double *th, const long double *Kin, long double *Kout,
                            long double *Lout) {
    size_t N = d->N;
    long double rho = expl(th[0]), alpha = expl(th[1]);
    const double *ft = th + 2;
    /* rho ~ Gamma(shape 25, rate 4), alpha ~ half-Normal(0, 2), each with its log-Jacobian */
    long double lp = 25.0L * logl(4.0L) - lgammal(25.0L) + 24.0L * logl(rho) - 4.0L * rho + th[0];
    lp += (long double)LOG_2 - 0.5L * (alpha / 2.0L) * (alpha / 2.0L) - logl(2.0L) - (long double)LOG_SQRT_2PI + th[1];
    long double K[PDB_GP_MAX_N * PDB_GP_MAX_N], L[PDB_GP_MAX_N * PDB_GP_MAX_N] = {0};
    assert_true(N <= PDB_GP_MAX_N);
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < N; j++) {
            long double dx = (long double)d->x[i] - d->x[j];
            K[i * N + j] = Kin ? Kin[i * N + j]
                               : alpha * alpha * expl(-dx * dx / (2.0L * rho * rho)) +
                                     (i == j ? (long double)TU_PDB_GP_JITTER : 0.0L);
        }
    if (Kout) memcpy(Kout, K, N * N * sizeof *K);
    for (size_t i = 0; i < N; i++) {
        for (size_t j = 0; j <= i; j++) {
            long double s = K[i * N + j];
            for (size_t k = 0; k < j; k++) s -= L[i * N + k] * L[j * N + k];
            if (i == j) {
                assert_true(s > 0.0L);
                L[i * N + i] = sqrtl(s);
            } else {
                L[i * N + j] = s / L[j * N + j];
            }
        }
    }
    if (Lout) memcpy(Lout, L, N * N * sizeof *L);
    for (size_t i = 0; i < N; i++) {
        lp += -0.5L * (long double)ft[i] * ft[i] - (long double)LOG_SQRT_2PI;
        long double f = 0.0L;
        for (size_t k = 0; k <= i; k++) f += L[i * N + k] * ft[k];
        lp += d->k[i] * f - expl(f) - lgammal(d->k[i] + 1.0L);
    }
    return lp;
}

static long double gp_lp_precise(const void *data, const double *th) { return gp_lp_ld(data, th, NULL, NULL, NULL); }
static double gp_lp(const void *data, const double *th) { return (double)gp_lp_precise(data, th); }

/* How far a correct double-precision evaluation may be from the exact log density because K is
 * ill-conditioned: the SE kernel on these 11 points has condition number 5e8 at rho = 5.7 (the
 * posterior mean) and 7e10 at rho = 7.3, near the 1e-10 jitter's floor. A backward-stable
 * Cholesky (LAPACK's dpotrf) returns the exact factor of K + dK with
 * |dK| <= gamma_{N+1} |L||L^T| elementwise (Higham, Accuracy and Stability of Numerical
 * Algorithms, 2nd ed., Thm 10.3; gamma_n = n u / (1 - n u)), and forming K in double adds a few
 * more ulps of |K| <= |L||L^T|. To first order the log density then moves by at most
 * sum_{i>=j} |lp(K + h_ij e_ij) - lp(K - h_ij e_ij)| / 2 with h_ij = (gamma_{N+1} + 4u)(|L||L^T|)_ij,
 * which the long-double reference computes (h_ij ~ 1e-14 stays far below the smallest
 * eigenvalue, ~1e-9, so first order holds; long double's own error is ~2000 times smaller). */
static double gp_rounding_allowance(const void *data, const double *th) {
    const tu_pdb_gp *d = data;
    size_t N = d->N;
    long double K[PDB_GP_MAX_N * PDB_GP_MAX_N], L[PDB_GP_MAX_N * PDB_GP_MAX_N],
        Kp[PDB_GP_MAX_N * PDB_GP_MAX_N];
    gp_lp_ld(d, th, NULL, K, L);
    double u = 0x1p-53, nu = (double)(N + 1) * u, c = nu / (1.0 - nu) + 4.0 * u;
    long double total = 0.0L;
    for (size_t i = 0; i < N; i++) {
        for (size_t j = 0; j <= i; j++) {
            long double absLLt = 0.0L;
            for (size_t k = 0; k <= j; k++) absLLt += fabsl(L[i * N + k] * L[j * N + k]);
            long double h = c * absLLt;
            memcpy(Kp, K, N * N * sizeof *K);
            Kp[i * N + j] = K[i * N + j] + h;
            long double up = gp_lp_ld(d, th, Kp, NULL, NULL);
            Kp[i * N + j] = K[i * N + j] - h;
            long double dn = gp_lp_ld(d, th, Kp, NULL, NULL);
            total += fabsl(up - dn) / 2.0L;
        }
    }
    return (double)total;
}

/* ---- one posterior under test ----------------------------------------------------------------- */

typedef struct pdb_case {
    const char *posterior;
    em_model_fn model;
    const void *data;
    double (*lp)(const void *data, const double *theta);
    /* an absolute allowance for rounding on top of 1e-10 relative, from the problem's
     * conditioning (NULL: none; only the GP needs one) */
    double (*lp_allowance)(const void *data, const double *theta);
    /* when not NULL, the finite differences are taken of this (more accurate) version of the
     * hand-written density instead of the Ember density itself (see gp_case) */
    long double (*lp_precise)(const void *data, const double *theta);
    size_t dim;
    /* the latent sites expected, in order, with their unconstrained lengths */
    const char *const *latents;
    const size_t *latent_len;
    size_t nlatents;
    /* random test points: centre[i] + halfwidth[i] * u, u uniform in [-1, 1) */
    const double *centre, *halfwidth;
    /* absolute slack allowed in a finite-difference derivative (see check_logdensity) */
    double fd_atol;
} pdb_case;

static em_logdensity *make_density(const pdb_case *c) {
    em_error err = {0};
    em_logdensity_options opt = {.seed = 17, .include_deterministic = 1};
    em_logdensity *ld = em_logdensity_from_model(c->model, c->data, &opt, &err);
    if (!ld) fail_msg("%s: em_logdensity_from_model: %s", c->posterior, err.msg);
    return ld;
}

/* The log density at 5 random points against the hand-written one, and its gradient against
 * central differences of the Ember density itself (of c->lp_precise when set). Step
 * h = 1e-5 max(1, |theta_i|) balances truncation error
 * (h^2 |f'''| / 6) against rounding (eps |f| / h ~ 2e-11 |f|); the slack allowed is 1e-6 of the
 * derivative plus fd_atol, set per model from |f| (kidiq's |f| ~ 2e3 with slopes ~ 1e4). */
static void check_logdensity(const pdb_case *c) {
    em_logdensity *ld = make_density(c);
    assert_int_equal(em_logdensity_dim(ld), c->dim);
    assert_int_equal(em_logdensity_num_latents(ld), c->nlatents);
    size_t off = 0;
    for (size_t i = 0; i < c->nlatents; i++) {
        const em_latent_info *li = em_logdensity_latent(ld, i);
        assert_non_null(li);
        assert_string_equal(li->name, c->latents[i]);
        assert_int_equal(li->offset, off);
        assert_int_equal(li->free_len, c->latent_len[i]);
        off += li->free_len;
    }
    assert_int_equal(off, c->dim);

    size_t n = c->dim;
    double *th = malloc(n * sizeof *th), *u = malloc(n * sizeof *u), *g = malloc(n * sizeof *g);
    double *tp = malloc(n * sizeof *tp);
    assert_true(th && u && g && tp);
    em_error err = {0};
    double worst_rel = 0.0, worst_grad = 0.0, worst_allow = 0.0;
    for (uint64_t point = 0; point < 5; point++) {
        tu_fill_uniform(u, n, -1.0, 1.0, 1000 + point);
        for (size_t i = 0; i < n; i++) th[i] = c->centre[i] + c->halfwidth[i] * u[i];
        double lp;
        em_status s = em_logdensity_eval(ld, th, &lp, g, &err);
        if (s != EM_OK) fail_msg("%s: em_logdensity_eval at point %d: %s", c->posterior, (int)point, err.msg);
        double ref = c->lp(c->data, th);
        double rel = fabs(lp - ref) / fabs(ref);
        double allow = c->lp_allowance ? c->lp_allowance(c->data, th) : 0.0;
        if (rel > worst_rel) worst_rel = rel;
        if (allow > worst_allow) worst_allow = allow;
        if (!(fabs(lp - ref) <= 1e-10 * fabs(ref) + allow))
            fail_msg("%s: point %d: Ember log density %.17g, hand-written %.17g (relative difference %.3g; "
                     "rounding allowance %.3g)",
                     c->posterior, (int)point, lp, ref, rel, allow);
        for (size_t i = 0; i < n; i++) {
            double h = 1e-5 * fmax(1.0, fabs(th[i])), fd;
            memcpy(tp, th, n * sizeof *tp);
            tp[i] = th[i] + h;
            h = tp[i] - th[i]; /* the step actually taken, after rounding */
            if (c->lp_precise) {
                long double up = c->lp_precise(c->data, tp);
                tp[i] = th[i] - h;
                fd = (double)((up - c->lp_precise(c->data, tp)) / (2.0L * h));
            } else {
                double fp, fm;
                assert_int_equal(em_logdensity_eval(ld, tp, &fp, NULL, &err), EM_OK);
                tp[i] = th[i] - h;
                assert_int_equal(em_logdensity_eval(ld, tp, &fm, NULL, &err), EM_OK);
                fd = (fp - fm) / (2.0 * h);
            }
            double diff = fabs(fd - g[i]);
            double slack = 1e-6 * fabs(fd) + c->fd_atol;
            if (diff / slack > worst_grad) worst_grad = diff / slack;
            if (!(diff <= slack))
                fail_msg("%s: point %d: d lp / d theta[%zu] = %.12g, finite difference %.12g", c->posterior,
                         (int)point, i, g[i], fd);
        }
    }
    printf("[ %s ] log density: worst relative difference %.2e (largest rounding allowance %.2e absolute); "
           "worst gradient error %.3g of its slack\n",
           c->posterior, worst_rel, worst_allow, worst_grad);
    free(th);
    free(u);
    free(g);
    free(tp);
    em_logdensity_destroy(ld);
}

/* ---- the reference ---------------------------------------------------------------------- */

#define MAX_REF 16

typedef struct reference {
    size_t n;
    char name[MAX_REF][32];
    double mean[MAX_REF], sd[MAX_REF], ess[MAX_REF];
    double adapt_delta;
    int max_treedepth;
} reference;

static void load_reference(const char *posterior, reference *ref) {
    memset(ref, 0, sizeof *ref);
    char dir[1024], path[1100], err[512];
    if (tu_pdb_dir(posterior, dir, sizeof dir)) fail_msg("%s: tests/data/posteriordb not found", posterior);
    snprintf(path, sizeof path, "%s/reference_summary.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s: cannot open", path);
    char line[512];
    if (!fgets(line, sizeof line, f) || strncmp(line, "param,mean,sd,", 14) != 0) {
        fclose(f);
        fail_msg("%s: unexpected header", path);
    }
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '\n' || line[0] == '\0') continue;
        if (ref->n == MAX_REF) {
            fclose(f);
            fail_msg("%s: more than %d parameters", path, MAX_REF);
        }
        char *comma = strchr(line, ',');
        if (!comma || (size_t)(comma - line) >= sizeof ref->name[0]) {
            fclose(f);
            fail_msg("%s: bad line '%s'", path, line);
        }
        memcpy(ref->name[ref->n], line, (size_t)(comma - line));
        char *end;
        ref->mean[ref->n] = strtod(comma + 1, &end);
        if (*end != ',') {
            fclose(f);
            fail_msg("%s: bad mean in '%s'", path, line);
        }
        ref->sd[ref->n] = strtod(end + 1, &end);
        if (*end != ',' || !(ref->sd[ref->n] > 0)) {
            fclose(f);
            fail_msg("%s: bad sd in '%s'", path, line);
        }
        ref->n++;
    }
    fclose(f);

    snprintf(path, sizeof path, "%s/info.json", dir);
    tu_json *info = tu_json_read_file(path, err, sizeof err);
    if (!info) fail_msg("%s", err);
    const tu_json *control = tu_json_path(info, "reference_inference", "method_arguments", "control", NULL);
    ref->adapt_delta = tu_json_number(tu_json_get(control, "adapt_delta"));
    /* Stan's default when the reference did not set it */
    double mtd = tu_json_number(tu_json_get(control, "max_treedepth"));
    ref->max_treedepth = isnan(mtd) ? 10 : (int)mtd;
    const tu_json *ess = tu_json_get(info, "reference_ess_bulk");
    for (size_t i = 0; i < ref->n; i++) {
        ref->ess[i] = tu_json_number(tu_json_get(ess, ref->name[i]));
        if (!(ref->ess[i] > 0)) {
            tu_json_free(info);
            fail_msg("%s: no reference_ess_bulk for '%s'", path, ref->name[i]);
        }
    }
    tu_json_free(info);
    if (!(ref->adapt_delta > 0 && ref->adapt_delta < 1)) fail_msg("%s: no adapt_delta", path);
}

/* Stan's "beta[1]" is Ember's "beta.1". */
static void ember_name(const char *stan, char *out, size_t outlen) {
    size_t k = 0;
    for (const char *p = stan; *p && k + 1 < outlen; p++) {
        if (*p == '[') out[k++] = '.';
        else if (*p != ']') out[k++] = *p;
    }
    out[k] = '\0';
}

/* ---- sampling -------------------------------------------------------------------------------- */

static void check_sampler(const pdb_case *c, uint64_t seed) {
    reference ref;
    load_reference(c->posterior, &ref);
    int san = sanitized_run();
    em_mcmc_config cfg = em_mcmc_config_default();
    /* Sanitized builds run several times slower: one chain of 300 draws after 300 warmup
     * iterations (room for Stan's adaptation windows, 75 + 25 + 50 + 100 + 50) keeps this file
     * to about 15 s under ASan+UBSan (mostly the GP) while still running the sampler's warmup
     * and sampling paths on every model. */
    cfg.num_chains = san ? 1 : 4;
    cfg.num_warmup = san ? 300 : 1000;
    cfg.num_samples = san ? 300 : 1000;
    cfg.seed = seed;
    cfg.target_accept = ref.adapt_delta;
    cfg.max_treedepth = ref.max_treedepth;

    em_logdensity *ld = make_density(c);
    em_mcmc_result *res = NULL;
    em_error err = {0};
    double t0 = now_seconds();
    em_status s = em_mcmc_run(ld, &cfg, &res, &err);
    double elapsed = now_seconds() - t0;
    if (s != EM_OK) fail_msg("%s: em_mcmc_run: %s", c->posterior, err.msg);
    assert_non_null(res);

    size_t ndiv = em_mcmc_num_divergent(res);
    size_t nchains = res->num_chains;
    size_t treedepth_hits = 0, grads = 0;
    double stepsize = 0.0, accept = 0.0;
    for (size_t k = 0; k < nchains; k++) {
        treedepth_hits += res->chains[k].num_max_treedepth;
        stepsize += res->chains[k].stepsize / (double)nchains;
        accept += res->chains[k].mean_accept_stat / (double)nchains;
    }
    long lcol = em_mcmc_column_index(res, "n_leapfrog__");
    assert_true(lcol >= 0);
    size_t n = em_mcmc_extract(res, (size_t)lcol, NULL);
    assert_int_equal(n, (size_t)cfg.num_samples);
    double *x = malloc(nchains * n * sizeof *x);
    assert_non_null(x);
    em_mcmc_extract(res, (size_t)lcol, x);
    for (size_t i = 0; i < nchains * n; i++) grads += (size_t)x[i];

    printf("[ %s ] %zu chain(s) x %zu draws, adapt_delta %.2f, max_treedepth %d: %.2f s, %zu divergent, "
           "%zu at max treedepth, step size %.3g, accept %.3f, %.1f leapfrog steps per draw\n",
           c->posterior, nchains, n, cfg.target_accept, cfg.max_treedepth, elapsed, ndiv, treedepth_hits,
           stepsize, accept, (double)grads / (double)(nchains * n));
    printf("  %-10s %12s %12s %9s %10s %10s %7s %8s %6s\n", "param", "mean", "ref mean", "z", "sd", "ref sd",
           "sd/ref", "ess_bulk", "rhat");

    int failures = 0;
    char msg[4096] = "";
    size_t mlen = 0;
    for (size_t p = 0; p < ref.n; p++) {
        char name[40];
        ember_name(ref.name[p], name, sizeof name);
        long col = em_mcmc_column_index(res, name);
        if (col < 0) fail_msg("%s: no output column '%s' for reference '%s'", c->posterior, name, ref.name[p]);
        em_mcmc_extract(res, (size_t)col, x);
        double mean = em_mean(x, nchains * n), sd = em_sd(x, nchains * n);
        double mcse = em_mcse_mean(x, nchains, n, &err);
        double rhat = em_rhat(x, nchains, n, &err);
        double ess = em_ess_bulk(x, nchains, n, &err);
        double ref_se = ref.sd[p] / sqrt(ref.ess[p]);
        double se = sqrt(mcse * mcse + ref_se * ref_se);
        double z = (mean - ref.mean[p]) / se;
        printf("  %-10s %12.6g %12.6g %9.2f %10.5g %10.5g %7.3f %8.0f %6.4f\n", ref.name[p], mean, ref.mean[p], z, sd,
               ref.sd[p], sd / ref.sd[p], ess, rhat);
        const char *bad = NULL;
        if (!san) {
            if (!(fabs(z) <= 4.0)) bad = "mean more than 4 standard errors from the reference";
            else if (!(fabs(sd / ref.sd[p] - 1.0) <= 0.10)) bad = "sd more than 10% from the reference";
            else if (!(rhat < 1.01)) bad = "R-hat >= 1.01";
        } else {
            /* One short chain. Its bulk ESS must reach 20 (NUTS gives every parameter here 40
             * or more in 300 draws; a sampler that barely moves gives far less). With ESS >= 20
             * the error of the mean is below sd/sqrt(20) = 0.22 sd, and 4 of those is 0.89 sd:
             * means within 0.9 reference sd. An sd estimated from so few effective draws can be
             * 30% off for the skewed tau and alpha, so a factor of 2 catches only gross errors
             * (a wrong scale, a missing Jacobian term), which is what this run is for. */
            if (!(ess >= 20.0)) bad = "bulk ESS below 20 in the short sanitized run";
            else if (!(fabs(mean - ref.mean[p]) <= 0.9 * ref.sd[p])) bad = "mean more than 0.9 sd from the reference";
            else if (!(sd > 0.5 * ref.sd[p] && sd < 2.0 * ref.sd[p])) bad = "sd not within a factor of 2";
        }
        if (bad) {
            failures++;
            int k = snprintf(msg + mlen, sizeof msg - mlen, "\n  %s: %s (mean %.6g vs %.6g, z %.2f; sd %.5g vs %.5g; rhat %.4f)",
                             ref.name[p], bad, mean, ref.mean[p], z, sd, ref.sd[p], rhat);
            if (k > 0 && (size_t)k < sizeof msg - mlen) mlen += (size_t)k;
        }
    }
    free(x);
    em_mcmc_result_free(res);
    em_logdensity_destroy(ld);
    if (failures) fail_msg("%s: %d check(s) failed:%s", c->posterior, failures, msg);
    if (!san && ndiv != 0)
        fail_msg("%s: %zu divergent transitions with adapt_delta %.2f (the reference had none)", c->posterior, ndiv,
                 cfg.target_accept);
}

/* ---- the four posteriors ------------------------------------------------------------------ */

static void load_or_fail(int rc, const char *err) {
    if (rc) fail_msg("%s", err);
}

static void kidiq_case(pdb_case *c, tu_pdb_kidiq *d) {
    static const char *const latents[] = {"beta", "sigma"};
    static const size_t lens[] = {2, 1};
    /* around the posterior (beta1 ~ 26 +- 6, beta2 ~ 0.61 +- 0.06, sigma ~ 18) and beyond it */
    static const double centre[] = {26.0, 0.6, 2.9}, half[] = {20.0, 0.3, 0.7};
    *c = (pdb_case){"kidiq-kidscore_momiq", tu_pdb_kidiq_model, d, kidiq_lp, NULL, NULL, 3, latents, lens, 2, centre, half,
                    1e-4};
}

static void eight_case(pdb_case *c, tu_pdb_eight_schools *d) {
    static const char *const latents[] = {"theta_trans", "mu", "tau"};
    static const size_t lens[] = {8, 1, 1};
    static const double centre[] = {0, 0, 0, 0, 0, 0, 0, 0, 4.4, 1.0},
                        half[] = {2, 2, 2, 2, 2, 2, 2, 2, 8.0, 2.0};
    *c = (pdb_case){"eight_schools-eight_schools_noncentered", tu_pdb_eight_schools_model, d, eight_lp, NULL, NULL, 10,
                    latents, lens, 3, centre, half, 1e-6};
}

static void dogs_case(pdb_case *c, tu_pdb_dogs *d) {
    static const char *const latents[] = {"beta"};
    static const size_t lens[] = {3};
    static const double centre[] = {1.56, -0.38, -0.16}, half[] = {1.0, 0.2, 0.2};
    *c = (pdb_case){"dogs-dogs", tu_pdb_dogs_model, d, dogs_lp, NULL, NULL, 3, latents, lens, 1, centre, half, 1e-5};
}

static void gp_case(pdb_case *c, tu_pdb_gp *d) {
    static const char *const latents[] = {"rho", "alpha", "f_tilde"};
    static const size_t lens[] = {1, 1, 11};
    /* log rho around log 5.7 (rho from 4.4 to 7.3, the posterior's 1%-99% range), log alpha
     * around log 2.9, f_tilde within +-2 */
    static const double centre[] = {1.74, 1.07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                        half[] = {0.25, 0.35, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    assert_int_equal(d->N, 11);
    /* K's conditioning (up to 7e10 here) makes double-precision finite differences of the
     * density noisy at 1e-5 relative, so the gradient is checked against differences of the
     * long-double reference, and the value gets the rounding allowance derived above */
    *c = (pdb_case){"gp_pois_regr-gp_pois_regr", tu_pdb_gp_model, d, gp_lp, gp_rounding_allowance,
                    gp_lp_precise, 13, latents, lens, 3, centre, half, 1e-5};
}

/* ---- Pathfinder --------------------------------------------------------------------------------- */

/* Multi-path Pathfinder (4 paths, PSIS resampling to 1000 draws) against the reference: each
 * mean within 0.2 reference sds and each sd within 20% — the Monte Carlo error of 1000
 * resampled draws is about 0.05 sd, the rest is the Gaussian approximation's own error
 * (these posteriors are close to Gaussian on the unconstrained space) — and k̂ below 0.7. */
static void check_pathfinder(const pdb_case *c) {
    reference ref;
    load_reference(c->posterior, &ref);
    em_posterior *p = NULL;
    em_error e = {0};
    if (em_fit_pathfinder(c->model, c->data, NULL, &p, &e) != EM_OK) fail_msg("%s: %s", c->posterior, e.msg);
    assert_int_equal(em_posterior_method_of(p), EM_POSTERIOR_PATHFINDER);
    assert_int_equal(em_posterior_num_draws(p), 1000);
    double k = em_posterior_psis_k(p);
    if (!(k < 0.7)) fail_msg("%s: Pathfinder's k-hat %.2f", c->posterior, k);
    double *x = malloc(1000 * sizeof *x);
    for (size_t j = 0; j < ref.n; j++) {
        char nm[40];
        ember_name(ref.name[j], nm, sizeof nm);
        if (em_posterior_draws(p, nm, x, &e) != EM_OK) fail_msg("%s: %s", c->posterior, e.msg);
        double m = em_mean(x, 1000), sd = em_sd(x, 1000);
        if (fabs(m - ref.mean[j]) > 0.2 * ref.sd[j] || fabs(sd / ref.sd[j] - 1) > 0.2)
            fail_msg("%s: %s Pathfinder mean %.5g sd %.4g, reference %.5g sd %.4g", c->posterior, nm, m, sd, ref.mean[j],
                     ref.sd[j]);
    }
    free(x);
    em_posterior_free(p);
}

static void test_kidiq_pathfinder(void **state) {
    (void)state;
    tu_pdb_kidiq d;
    char err[512];
    load_or_fail(tu_pdb_kidiq_load(&d, err, sizeof err), err);
    pdb_case c;
    kidiq_case(&c, &d);
    check_pathfinder(&c);
    tu_pdb_kidiq_free(&d);
}

static void test_dogs_pathfinder(void **state) {
    (void)state;
    tu_pdb_dogs d;
    char err[512];
    load_or_fail(tu_pdb_dogs_load(&d, err, sizeof err), err);
    pdb_case c;
    dogs_case(&c, &d);
    check_pathfinder(&c);
    tu_pdb_dogs_free(&d);
}

static void test_kidiq_logdensity(void **state) {
    (void)state;
    tu_pdb_kidiq d;
    char err[512];
    load_or_fail(tu_pdb_kidiq_load(&d, err, sizeof err), err);
    assert_int_equal(d.N, 434);
    pdb_case c;
    kidiq_case(&c, &d);
    check_logdensity(&c);
    tu_pdb_kidiq_free(&d);
}

static void test_kidiq_nuts(void **state) {
    (void)state;
    tu_pdb_kidiq d;
    char err[512];
    load_or_fail(tu_pdb_kidiq_load(&d, err, sizeof err), err);
    pdb_case c;
    kidiq_case(&c, &d);
    check_sampler(&c, 101);
    tu_pdb_kidiq_free(&d);
}

static void test_eight_schools_logdensity(void **state) {
    (void)state;
    tu_pdb_eight_schools d;
    char err[512];
    load_or_fail(tu_pdb_eight_schools_load(&d, err, sizeof err), err);
    assert_int_equal(d.J, 8);
    pdb_case c;
    eight_case(&c, &d);
    check_logdensity(&c);
    tu_pdb_eight_schools_free(&d);
}

static void test_eight_schools_nuts(void **state) {
    (void)state;
    tu_pdb_eight_schools d;
    char err[512];
    load_or_fail(tu_pdb_eight_schools_load(&d, err, sizeof err), err);
    pdb_case c;
    eight_case(&c, &d);
    check_sampler(&c, 202);
    tu_pdb_eight_schools_free(&d);
}

static void test_dogs_logdensity(void **state) {
    (void)state;
    tu_pdb_dogs d;
    char err[512];
    load_or_fail(tu_pdb_dogs_load(&d, err, sizeof err), err);
    assert_int_equal(d.n, 31 * 25);
    /* the historical data set: the first dog's row is all zeros (README of the shared folder) */
    for (size_t t = 0; t < d.n_trials; t++) assert_true(d.y[t] == 0.0);
    /* spot-check the covariate recursion on dog 2 (y = 1 1 0 1 ...): before trial 4 there
     * were 1 zero and 2 ones */
    assert_true(d.X[2 * (25 + 3)] == 1.0 && d.X[2 * (25 + 3) + 1] == 2.0);
    pdb_case c;
    dogs_case(&c, &d);
    check_logdensity(&c);
    tu_pdb_dogs_free(&d);
}

static void test_dogs_nuts(void **state) {
    (void)state;
    tu_pdb_dogs d;
    char err[512];
    load_or_fail(tu_pdb_dogs_load(&d, err, sizeof err), err);
    pdb_case c;
    dogs_case(&c, &d);
    check_sampler(&c, 303);
    tu_pdb_dogs_free(&d);
}

static void test_gp_logdensity(void **state) {
    (void)state;
    tu_pdb_gp d;
    char err[512];
    load_or_fail(tu_pdb_gp_load(&d, err, sizeof err), err);
    pdb_case c;
    gp_case(&c, &d);
    check_logdensity(&c);
    tu_pdb_gp_free(&d);
}

static void test_gp_nuts(void **state) {
    (void)state;
    tu_pdb_gp d;
    char err[512];
    load_or_fail(tu_pdb_gp_load(&d, err, sizeof err), err);
    pdb_case c;
    gp_case(&c, &d);
    check_sampler(&c, 404);
    tu_pdb_gp_free(&d);
}

/* ---- the JSON reader the data files go through ------------------------------------------------ */

static void test_json_reader(void **state) {
    (void)state;
    char err[256];
    const char *ok = " {\"a\": [1, -2.5e3, 0.125], \"m\": [[1,2],[3,4],[5,6]], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\","
                     " \"t\": true, \"f\": false, \"z\": null, \"o\": {\"k\": {\"v\": 7}}} ";
    tu_json *j = tu_json_parse(ok, strlen(ok), err, sizeof err);
    if (!j) fail_msg("%s", err);
    double *v;
    size_t n, r, cc;
    assert_int_equal(tu_json_numbers(tu_json_get(j, "a"), &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_true(v[0] == 1.0 && v[1] == -2500.0 && v[2] == 0.125);
    free(v);
    assert_int_equal(tu_json_matrix(tu_json_get(j, "m"), &v, &r, &cc, err, sizeof err), 0);
    assert_true(r == 3 && cc == 2 && v[5] == 6.0 && v[2] == 3.0);
    free(v);
    assert_string_equal(tu_json_get(j, "s")->string, "x\xc3\xa9\xf0\x9f\x98\x80\n");
    assert_true(tu_json_get(j, "t")->number == 1.0 && tu_json_get(j, "f")->number == 0.0);
    assert_int_equal(tu_json_get(j, "z")->type, TU_JSON_NULL);
    assert_true(tu_json_number(tu_json_path(j, "o", "k", "v", NULL)) == 7.0);
    assert_null(tu_json_path(j, "o", "nope", "v", NULL));
    assert_true(isnan(tu_json_number(tu_json_get(j, "s"))));
    /* a non-number element is reported by index */
    assert_int_equal(tu_json_numbers(tu_json_get(j, "m"), &v, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "element 0"));
    tu_json_free(j);

    /* malformed text fails with the place named, never a tree */
    static const char *const bad[] = {"", "[1,]", "{\"a\" 1}", "[01]", "[1.]", "[-]", "[1e]", "\"abc",
                                      "[\"\\x\"]", "[\"\\ud800\"]", "nul", "[1] 2", "{\"a\":1,}", "[NaN]",
                                      "[1e999]", "[\"\\u00\"]", "\"a\nb\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_json *b = tu_json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        if (b) fail_msg("accepted malformed JSON '%s'", bad[i]);
        assert_non_null(strstr(err, "line 1"));
    }
    tu_json *b = tu_json_parse("[1,\n  x]", 8, err, sizeof err);
    assert_null(b);
    assert_non_null(strstr(err, "line 2, column 3"));
    /* nesting is bounded */
    char deep[200];
    memset(deep, '[', sizeof deep);
    assert_null(tu_json_parse(deep, sizeof deep, err, sizeof err));
    assert_non_null(strstr(err, "nesting"));
    /* a ragged matrix is refused, naming the row */
    j = tu_json_parse("[[1,2],[3]]", 11, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(tu_json_matrix(j, &v, &r, &cc, err, sizeof err), -1);
    assert_non_null(strstr(err, "row 1"));
    tu_json_free(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_reader),
        cmocka_unit_test(test_kidiq_logdensity),
        cmocka_unit_test(test_eight_schools_logdensity),
        cmocka_unit_test(test_dogs_logdensity),
        cmocka_unit_test(test_gp_logdensity),
        cmocka_unit_test(test_kidiq_nuts),
        cmocka_unit_test(test_kidiq_pathfinder),
        cmocka_unit_test(test_dogs_pathfinder),
        cmocka_unit_test(test_eight_schools_nuts),
        cmocka_unit_test(test_dogs_nuts),
        cmocka_unit_test(test_gp_nuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
