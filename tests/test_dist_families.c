/* test_dist_families.c — the regression families added for brms-style models: HalfStudentT,
 * SkewNormal, BetaProportion, GammaMean, NegBinomial2Log, the zero-inflated and hurdle counts and
 * BetaBinomial. Log densities against references written from GSL's pdfs, every gradient
 * against finite differences (scalar and vector layouts, summed and pointwise), the pointwise
 * terms against the sum, draws against the pmf (chi-square) or the reported moments, and the
 * moments against sums over the pmf. Seeded, critical values at alpha = 1e-4 per test. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>

typedef em_dist (*mk_fn)(em_tape *t, const em_var *p);

static const double NTOT[6] = {10, 3, 7, 20, 1, 5};

static em_dist mk_half_t(em_tape *t, const em_var *p) { return em_dist_half_student_t(t, p[0], p[1]); }
static em_dist mk_skew(em_tape *t, const em_var *p) { return em_dist_skew_normal(t, p[0], p[1], p[2]); }
static em_dist mk_beta_prop(em_tape *t, const em_var *p) { return em_dist_beta_proportion(t, p[0], p[1]); }
static em_dist mk_gamma_mean(em_tape *t, const em_var *p) { return em_dist_gamma_mean(t, p[0], p[1]); }
static em_dist mk_nb2_log(em_tape *t, const em_var *p) { return em_dist_neg_binomial2_log(t, p[0], p[1]); }
static em_dist mk_zip(em_tape *t, const em_var *p) { return em_dist_zero_inflated_poisson(t, p[0], p[1]); }
static em_dist mk_zinb(em_tape *t, const em_var *p) { return em_dist_zero_inflated_neg_binomial2(t, p[0], p[1], p[2]); }
static em_dist mk_hp(em_tape *t, const em_var *p) { return em_dist_hurdle_poisson(t, p[0], p[1]); }
static em_dist mk_hnb(em_tape *t, const em_var *p) { return em_dist_hurdle_neg_binomial2(t, p[0], p[1], p[2]); }
static em_dist mk_bb(em_tape *t, const em_var *p) {
    size_t n = em_len(t, p[0]) > 1 ? em_len(t, p[0]) : em_len(t, p[1]);
    return em_dist_beta_binomial(t, NTOT, n == 6 ? 6 : 1, p[0], p[1]);
}

/* references: log of the density or pmf, from GSL's functions */
static double ref_half_t(double x, const double *p) { return log(2.0 * gsl_ran_tdist_pdf(x / p[1], p[0]) / p[1]); }
static double ref_skew(double x, const double *p) {
    double z = (x - p[0]) / p[1];
    return log(2.0 / p[1] * gsl_ran_ugaussian_pdf(z) * gsl_cdf_ugaussian_P(p[2] * z));
}
static double ref_beta_prop(double x, const double *p) {
    return log(gsl_ran_beta_pdf(x, p[0] * p[1], (1.0 - p[0]) * p[1]));
}
static double ref_gamma_mean(double x, const double *p) { return log(gsl_ran_gamma_pdf(x, p[1], p[0] / p[1])); }
static double nb_pmf(unsigned y, double mu, double phi) { return gsl_ran_negative_binomial_pdf(y, phi / (mu + phi), phi); }
static double ref_nb2_log(double x, const double *p) { return log(nb_pmf((unsigned)x, exp(p[0]), p[1])); }
static double ref_zip(double x, const double *p) {
    double b = gsl_ran_poisson_pdf((unsigned)x, p[0]);
    return log(x == 0 ? p[1] + (1 - p[1]) * b : (1 - p[1]) * b);
}
static double ref_zinb(double x, const double *p) {
    double b = nb_pmf((unsigned)x, p[0], p[1]);
    return log(x == 0 ? p[2] + (1 - p[2]) * b : (1 - p[2]) * b);
}
static double ref_hp(double x, const double *p) {
    return log(x == 0 ? p[1] : (1 - p[1]) * gsl_ran_poisson_pdf((unsigned)x, p[0]) / (1 - exp(-p[0])));
}
static double ref_hnb(double x, const double *p) {
    return log(x == 0 ? p[2] : (1 - p[2]) * nb_pmf((unsigned)x, p[0], p[1]) / (1 - nb_pmf(0, p[0], p[1])));
}
static double ref_bb(double x, const double *p) {
    double N = NTOT[0];
    return gsl_sf_lnchoose((unsigned)N, (unsigned)x) + gsl_sf_lnbeta(x + p[0], N - x + p[1]) - gsl_sf_lnbeta(p[0], p[1]);
}

typedef struct {
    const char *name;
    mk_fn mk;
    double (*ref)(double x, const double *p);
    int np, discrete;
    double plo[3], phi[3];
    double xlo, xhi; /* values (continuous) or the largest count (discrete: xhi) */
    double ps[3];    /* parameters for the sampling test */
} family;

static const family families[] = {
    {"HalfStudentT", mk_half_t, ref_half_t, 2, 0, {0.7, 0.5}, {30, 3}, 0.0, 15, {8.0, 2.0}},
    {"SkewNormal", mk_skew, ref_skew, 3, 0, {-2, 0.5, -4}, {2, 3, 4}, -8, 8, {1.0, 2.0, 3.0}},
    {"BetaProportion", mk_beta_prop, ref_beta_prop, 2, 0, {0.1, 1.0}, {0.9, 20}, 0.02, 0.98, {0.3, 8.0}},
    {"GammaMean", mk_gamma_mean, ref_gamma_mean, 2, 0, {0.5, 0.5}, {5, 5}, 0.05, 12, {2.0, 3.0}},
    {"NegBinomial2Log", mk_nb2_log, ref_nb2_log, 2, 1, {-1, 0.5}, {2.5, 10}, 0, 20, {1.2, 2.0}},
    {"ZeroInflatedPoisson", mk_zip, ref_zip, 2, 1, {0.3, 0.05}, {8, 0.9}, 0, 15, {3.5, 0.3}},
    {"ZeroInflatedNegBinomial2", mk_zinb, ref_zinb, 3, 1, {0.5, 0.5, 0.05}, {8, 10, 0.9}, 0, 20, {3.0, 2.0, 0.25}},
    {"HurdlePoisson", mk_hp, ref_hp, 2, 1, {0.3, 0.05}, {8, 0.9}, 0, 15, {2.5, 0.4}},
    {"HurdleNegBinomial2", mk_hnb, ref_hnb, 3, 1, {0.5, 0.5, 0.05}, {8, 10, 0.9}, 0, 20, {3.0, 2.0, 0.35}},
    {"BetaBinomial", mk_bb, ref_bb, 2, 1, {0.4, 0.4}, {5, 5}, 0, 10, {2.0, 3.0}},
};
#define NFAM (sizeof families / sizeof families[0])

static double draw_value(const family *f, size_t i, em_rng *r) {
    if (!f->discrete) return f->xlo + (f->xhi - f->xlo) * em_rng_uniform(r);
    double cap = f->mk == mk_bb ? NTOT[i % 6] : f->xhi;
    double y = floor((cap + 1) * em_rng_uniform(r));
    return y > cap ? cap : y;
}

static void test_log_prob_vs_reference(void **state) {
    (void)state;
    em_rng *r = em_rng_create(31, 0);
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        for (int rep = 0; rep < 200; rep++) {
            double p[3];
            for (int k = 0; k < f->np; k++) p[k] = f->plo[k] + (f->phi[k] - f->plo[k]) * em_rng_uniform(r);
            double x = draw_value(f, 0, r);
            em_tape *t = em_tape_create();
            em_var pv[3];
            for (int k = 0; k < f->np; k++) pv[k] = em_scalar(t, p[k]);
            em_dist d = f->mk(t, pv);
            double lp = em_value_scalar(t, em_dist_log_prob(&d, em_scalar(t, x)));
            assert_int_equal(em_tape_status(t), EM_OK);
            double want = f->ref(x, p);
            if (fabs(lp - want) > 1e-10 * fabs(want) + 1e-12)
                fail_msg("%s at x = %g: %.17g, reference %.17g", f->name, x, lp, want);
            em_tape_destroy(t);
        }
    }
    em_rng_destroy(r);
}

typedef struct {
    const family *f;
    size_t n;
    int vec[3];
    int pointwise;
    const double *y; /* discrete values */
} grad_ctx;

static const double W[6] = {0.3, -1.2, 0.7, 2.0, -0.4, 1.1};

static em_var grad_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves, void *vctx) {
    grad_ctx *c = vctx;
    size_t off = 0, k = 0;
    em_var value, p[3];
    if (c->f->discrete) {
        value = em_const_copy(t, c->y, c->n);
    } else {
        value = leaves[k++] = em_leaf(t, x, c->n);
        off = c->n;
    }
    for (int j = 0; j < c->f->np; j++) {
        size_t len = c->vec[j] ? c->n : 1;
        p[j] = leaves[k++] = em_leaf(t, x + off, len);
        off += len;
    }
    *nleaves = k;
    (void)n;
    em_dist d = c->f->mk(t, p);
    if (c->pointwise) /* weighted, so that each element's partials are checked on their own */
        return em_op_dot(t, em_dist_pointwise(&d, EM_TERM_LOG_PROB, value), em_const(t, W, c->n));
    return em_op_mul(t, em_dist_log_prob(&d, value), em_scalar(t, 1.7));
}

static void test_gradients(void **state) {
    (void)state;
    em_rng *r = em_rng_create(32, 0);
    const int layouts[4][3] = {{0, 0, 0}, {1, 1, 1}, {1, 0, 0}, {0, 1, 1}};
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        for (int li = 0; li < 4; li++)
            for (int pw = 0; pw < 2; pw++) {
                grad_ctx c = {f, 6, {layouts[li][0], layouts[li][1], layouts[li][2]}, pw, NULL};
                double x[32], y[6];
                size_t off = f->discrete ? 0 : c.n;
                for (size_t i = 0; i < c.n; i++) {
                    double v = draw_value(f, i, r);
                    if (f->discrete) y[i] = f->mk == mk_bb && !c.vec[0] && !c.vec[1] ? floor(v * NTOT[0] / NTOT[i]) : v;
                    else x[i] = v;
                }
                for (int j = 0; j < f->np; j++) {
                    size_t len = c.vec[j] ? c.n : 1;
                    for (size_t i = 0; i < len; i++)
                        x[off + i] = f->plo[j] + (f->phi[j] - f->plo[j]) * em_rng_uniform(r);
                    off += len;
                }
                c.y = y;
                char label[96];
                snprintf(label, sizeof label, "%s layout %d%s", f->name, li, pw ? " pointwise" : "");
                tu_check_gradient(grad_fn, x, off, &c, 1e-6, 1e-6, 1e-7, label);
            }
    }
    em_rng_destroy(r);
}

/* The pointwise terms add up to the summed log density, for these families and the CDFs of
 * an older one. */
static void test_pointwise_sums(void **state) {
    (void)state;
    em_rng *r = em_rng_create(33, 0);
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        em_tape *t = em_tape_create();
        double x[6], p[3];
        for (size_t i = 0; i < 6; i++) x[i] = draw_value(f, f->mk == mk_bb ? 0 : i, r);
        for (int k = 0; k < f->np; k++) p[k] = f->plo[k] + (f->phi[k] - f->plo[k]) * em_rng_uniform(r);
        em_var pv[3];
        for (int k = 0; k < f->np; k++) pv[k] = em_scalar(t, p[k]);
        em_dist d = f->mk(t, pv);
        em_var xv = em_const(t, x, 6);
        em_var pw = em_dist_pointwise(&d, EM_TERM_LOG_PROB, xv);
        assert_int_equal(em_len(t, pw), 6);
        const double *v = em_value(t, pw);
        double s = 0.0;
        for (size_t i = 0; i < 6; i++) {
            tu_assert_close(v[i], f->ref(x[i], p), 1e-10, 1e-12);
            s += v[i];
        }
        tu_assert_close(s, em_value_scalar(t, em_dist_log_prob(&d, xv)), 1e-12, 1e-12);
        assert_int_equal(em_tape_status(t), EM_OK);
        em_tape_destroy(t);
    }
    em_tape *t = em_tape_create();
    double xs[3] = {-1.0, 0.5, 3.0};
    em_dist n = em_dist_normal(t, em_scalar(t, 0.5), em_scalar(t, 2.0));
    em_var xv = em_const(t, xs, 3);
    for (int which = EM_TERM_LOG_CDF; which <= EM_TERM_LOG_CCDF; which++) {
        const double *v = em_value(t, em_dist_pointwise(&n, (em_dist_term)which, xv));
        for (size_t i = 0; i < 3; i++) {
            double P = which == EM_TERM_LOG_CDF ? gsl_cdf_gaussian_P(xs[i] - 0.5, 2.0) : gsl_cdf_gaussian_Q(xs[i] - 0.5, 2.0);
            tu_assert_close(v[i], log(P), 1e-13, 0);
        }
    }
    /* a family without pointwise terms says so */
    em_dist c = em_dist_categorical_logit(t, xv);
    assert_false(em_var_ok(em_dist_pointwise(&c, EM_TERM_LOG_PROB, em_scalar(t, 1.0))));
    assert_int_equal(em_tape_status(t), EM_ERR_ARG);
    assert_non_null(strstr(em_tape_error(t)->msg, "CategoricalLogit: pointwise log_prob is not available"));
    em_tape_destroy(t);
    em_rng_destroy(r);
}

/* Draws: chi-square against the pmf for counts (cells below 5 expected pooled into a tail
 * cell), mean and variance within 5 standard errors of the reported moments otherwise; the
 * reported moments of a count against sums over its pmf. */
#define NS 40000
static void test_sampling_and_moments(void **state) {
    (void)state;
    double *x = malloc(NS * sizeof *x);
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        em_tape *t = em_tape_create();
        em_var pv[3];
        for (int k = 0; k < f->np; k++) pv[k] = em_scalar(t, f->ps[k]);
        em_dist d = f->mk(t, pv);
        em_rng *r = em_rng_create(300 + fi, 0);
        em_error e = {0};
        assert_int_equal(em_dist_sample(&d, r, x, NS, &e), EM_OK);
        double mv[2];
        assert_int_equal(em_dist_mean(&d, mv, 1, &e), EM_OK);
        assert_int_equal(em_dist_variance(&d, mv + 1, 1, &e), EM_OK);
        double m = 0.0, v = 0.0;
        for (size_t i = 0; i < NS; i++) m += x[i];
        m /= NS;
        for (size_t i = 0; i < NS; i++) v += (x[i] - m) * (x[i] - m);
        v /= NS - 1;
        if (fabs(m - mv[0]) > 5.0 * sqrt(mv[1] / NS))
            fail_msg("%s: sample mean %g, reported %g", f->name, m, mv[0]);
        if (fabs(v - mv[1]) > 0.05 * mv[1]) fail_msg("%s: sample variance %g, reported %g", f->name, v, mv[1]);
        if (f->discrete) {
            double pm = 0.0, p2 = 0.0, obs[200] = {0}, ex[200] = {0};
            size_t K = 0;
            for (unsigned k = 0; k < 2000; k++) {
                double pk = exp(f->ref((double)k, f->ps));
                if (f->mk == mk_bb && k > NTOT[0]) pk = 0.0;
                pm += k * pk;
                p2 += (double)k * k * pk;
                if (K < 199 && (NS * pk >= 5.0 || k == 0) && k == K) ex[K++] = NS * pk;
            }
            tu_assert_close(mv[0], pm, 1e-9, 0);
            tu_assert_close(mv[1], p2 - pm * pm, 1e-9, 0);
            double cum = 0.0;
            for (size_t k = 0; k < K; k++) cum += ex[k];
            ex[K] = NS - cum;
            for (size_t i = 0; i < NS; i++) obs[(size_t)x[i] < K ? (size_t)x[i] : K] += 1.0;
            double chi = 0.0;
            size_t cells = K + (ex[K] > 1e-9);
            for (size_t k = 0; k < cells; k++) chi += (obs[k] - ex[k]) * (obs[k] - ex[k]) / ex[k];
            double crit = gsl_cdf_chisq_Qinv(1e-4, (double)(cells - 1));
            if (!(chi < crit)) fail_msg("%s: chi-square %g >= critical %g", f->name, chi, crit);
        }
        em_rng_destroy(r);
        em_tape_destroy(t);
    }
    free(x);
}

/* invalid parameters and values are named */
static void test_errors(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist d = em_dist_zero_inflated_poisson(t, em_scalar(t, 2.0), em_scalar(t, 1.5));
    em_var lp = em_dist_log_prob(&d, em_scalar(t, 0.0));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "ZeroInflatedPoisson: zi[0] = 1.5 must be in (0, 1)"));
    em_tape_reset(t);
    static const double N[1] = {4};
    d = em_dist_beta_binomial(t, N, 1, em_scalar(t, 1.0), em_scalar(t, 2.0));
    lp = em_dist_log_prob(&d, em_scalar(t, 5.0));
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "BetaBinomial: value[0] = 5 is outside the support {0, ..., 4}"));
    em_tape_reset(t);
    static const double badN[1] = {2.5};
    d = em_dist_beta_binomial(t, badN, 1, em_scalar(t, 1.0), em_scalar(t, 2.0));
    assert_null(d.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "BetaBinomial: total_count[0] = 2.5 must be a non-negative integer"));
    em_tape_reset(t);
    d = em_dist_skew_normal(t, em_scalar(t, 0.0), em_scalar(t, 0.0), em_scalar(t, 1.0));
    lp = em_dist_log_prob(&d, em_scalar(t, 0.0));
    assert_non_null(strstr(em_tape_error(t)->msg, "SkewNormal: omega[0] = 0 must be positive"));
    em_tape_destroy(t);
}

/* A large precision a + b: the density must tend to the binomial's and keep its gradient. As
 * differences of lgamma it lost every digit (at a + b = 1e28 it came out near +4e14, a spurious
 * mode a NUTS chain ran to in bench/sbc_families.c). The references are the rising factorials
 * written out, log C(N, y) + Σ_{j<y} log(a + j) + Σ_{j<N-y} log(b + j) - Σ_{j<N} log(a + b + j),
 * and their derivatives Σ 1/(a + j) - Σ 1/(a + b + j); 2e4 is just past the switch to
 * Stirling's series, 500 just before it. */
static void test_beta_binomial_large_precision(void **state) {
    (void)state;
    static const double NT[1] = {10}, ys[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    static const double phis[] = {500, 2e4, 1e8, 1e16, 1e28};
    const double mu = 0.3, N = 10;
    for (size_t k = 0; k < sizeof phis / sizeof *phis; k++) {
        double a = mu * phis[k], b = (1 - mu) * phis[k];
        for (size_t yi = 0; yi < 11; yi++) {
            double y = ys[yi], ref = lgamma(N + 1) - lgamma(y + 1) - lgamma(N - y + 1), da = 0, db = 0;
            for (int j = 0; j < (int)y; j++) ref += log(a + j), da += 1 / (a + j);
            for (int j = 0; j < (int)(N - y); j++) ref += log(b + j), db += 1 / (b + j);
            for (int j = 0; j < (int)N; j++) ref -= log(a + b + j), da -= 1 / (a + b + j), db -= 1 / (a + b + j);
            em_tape *t = em_tape_create();
            em_var va = em_leaf_scalar(t, a), vb = em_leaf_scalar(t, b);
            em_dist d = em_dist_beta_binomial(t, NT, 1, va, vb);
            em_var lp = em_dist_log_prob(&d, em_scalar(t, y));
            assert_int_equal(em_backward(t, lp), EM_OK);
            double v = em_value_scalar(t, lp), ga = em_adjoint(t, va)[0], gb = em_adjoint(t, vb)[0];
            /* the derivatives' terms are ~N / phi and cancel to far less: their error is judged
             * against that scale (what a chain on log phi sees, times phi) */
            double gtol = 1e-12 * N / phis[k];
            if (fabs(v - ref) > 1e-9 * (1 + fabs(ref)) || fabs(ga - da) > 1e-7 * fabs(da) + gtol ||
                fabs(gb - db) > 1e-7 * fabs(db) + gtol)
                fail_msg("BetaBinomial(10, %g, %g) at y = %g: lp %.15g (ref %.15g), d/da %.10g (ref %.10g), d/db %.10g "
                         "(ref %.10g)", a, b, y, v, ref, ga, da, gb, db);
            if (phis[k] == 1e28) /* the binomial limit */
                assert_true(fabs(v - log(gsl_ran_binomial_pdf((unsigned)y, mu, 10))) < 1e-9);
            em_tape_destroy(t);
        }
    }
}

/* The negative binomial with a large φ tends to the Poisson: log p = Poisson(y | μ) +
 * ((y - μ)² - y)/(2φ) + O(φ⁻²), so ∂/∂φ = -((y - μ)² - y)/(2φ²) + O(φ⁻³). As lgamma differences
 * (φ log φ - lgamma(φ) + lgamma(y + φ) - ...) it was off by 4e-3 at φ = 1e12 and came out 0 from
 * 1e16 on; the elementwise forms and the fused GLM (one pass, its lgamma terms pooled by count
 * value) are checked alike. */
static void test_neg_binomial_large_phi(void **state) {
    (void)state;
    static const double phis[] = {1e8, 1e12, 1e16, 1e28}, X1[11] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    static const double ys[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12};
    const double mu = 3.0;
    for (size_t k = 0; k < sizeof phis / sizeof *phis; k++) {
        double phi = phis[k], sum_ref = 0.0;
        for (int form = 0; form < 2; form++)
            for (size_t i = 0; i < 11; i++) {
                double y = ys[i], ref = log(gsl_ran_poisson_pdf((unsigned)y, mu)) + ((y - mu) * (y - mu) - y) / (2 * phi);
                double dref = -((y - mu) * (y - mu) - y) / (2 * phi * phi);
                if (form == 0) sum_ref += ref;
                em_tape *t = em_tape_create();
                em_var vphi = em_leaf_scalar(t, phi);
                em_dist d = form ? em_dist_neg_binomial2_log(t, em_scalar(t, log(mu)), vphi)
                                 : em_dist_neg_binomial2(t, em_scalar(t, mu), vphi);
                em_var lp = em_dist_log_prob(&d, em_scalar(t, y));
                assert_int_equal(em_backward(t, lp), EM_OK);
                double v = em_value_scalar(t, lp), g = em_adjoint(t, vphi)[0];
                if (fabs(v - ref) > 1e-12 * (1 + fabs(ref)) || fabs(g - dref) > 1e-6 * fabs(dref) + 1e-12 * (y + mu) / phi)
                    fail_msg("NegBinomial2%s(mu 3, phi %g) at y = %g: lp %.15g (ref %.15g), d/dphi %.6g (ref %.6g)",
                             form ? "Log" : "", phi, y, v, ref, g, dref);
                em_tape_destroy(t);
            }
        em_tape *t = em_tape_create();
        em_var vphi = em_leaf_scalar(t, phi);
        em_dist d = em_dist_neg_binomial2_log_glm(t, em_const_matrix(t, X1, 11, 1), em_scalar(t, log(mu)),
                                                  em_leaf_scalar(t, 0.0), vphi, NULL);
        em_var lp = em_dist_log_prob(&d, em_const(t, ys, 11));
        assert_int_equal(em_backward(t, lp), EM_OK);
        if (fabs(em_value_scalar(t, lp) - sum_ref) > 1e-11 * fabs(sum_ref))
            fail_msg("NegBinomial2LogGLM at phi %g: lp %.15g (ref %.15g)", phi, em_value_scalar(t, lp), sum_ref);
        em_tape_destroy(t);
    }
}

/* ---- ordered logistic and probit ------------------------------------------------------------ */

static const double CUTS[3] = {-1.0, 0.3, 2.0};
static double ord_F(double z, int probit) { return probit ? gsl_cdf_ugaussian_P(z) : 1.0 / (1.0 + exp(-z)); }
/* F(hi) - F(lo), on the upper tails when both lie above 0 (F(-lo) - F(-hi): no cancellation) */
static double ord_ref(double y, double eta, const double *c, size_t K, int probit) {
    size_t k = (size_t)y;
    double hi = k == K - 1 ? INFINITY : c[k] - eta, lo = k == 0 ? -INFINITY : c[k - 1] - eta;
    if (lo > 0) return log(ord_F(-lo, probit) - (hi == INFINITY ? 0.0 : ord_F(-hi, probit)));
    return log((hi == INFINITY ? 1.0 : ord_F(hi, probit)) - (lo == -INFINITY ? 0.0 : ord_F(lo, probit)));
}
static em_dist mk_ordered(em_tape *t, em_var eta, em_var c, int probit) {
    return probit ? em_dist_ordered_probit(t, eta, c) : em_dist_ordered_logistic(t, eta, c);
}

/* values, including far tails where F(hi) - F(lo) is a difference of numbers near 1 */
static void test_ordered_values(void **state) {
    (void)state;
    double ys[4] = {0, 1, 2, 3}, etas[5] = {-3.0, 0.0, 0.7, 4.0, -0.2};
    for (int probit = 0; probit < 2; probit++)
        for (size_t j = 0; j < 5; j++) {
            em_tape *t = em_tape_create();
            em_dist d = mk_ordered(t, em_scalar(t, etas[j]), em_const(t, CUTS, 3), probit);
            double total = 0.0;
            for (size_t k = 0; k < 4; k++) {
                double lp = em_value_scalar(t, em_dist_log_prob(&d, em_scalar(t, ys[k])));
                tu_assert_close(lp, ord_ref(ys[k], etas[j], CUTS, 4, probit), 1e-12, 0);
                total += exp(lp);
            }
            tu_assert_close(total, 1.0, 1e-14, 0);
            assert_int_equal(em_tape_status(t), EM_OK);
            em_tape_destroy(t);
        }
    /* the pointwise terms are the summed density's, element by element */
    for (int probit = 0; probit < 2; probit++) {
        em_tape *t = em_tape_create();
        static const double yv[5] = {0, 3, 1, 2, 1}, ev[5] = {0.3, -1.2, 2.5, 0.0, -0.4};
        em_dist d = mk_ordered(t, em_const(t, ev, 5), em_const(t, CUTS, 3), probit);
        double pw[5];
        em_error e = {0};
        assert_int_equal(em_dist_log_prob_pointwise(&d, yv, 5, pw, &e), EM_OK);
        for (int i = 0; i < 5; i++) tu_assert_close(pw[i], ord_ref(yv[i], ev[i], CUTS, 4, probit), 1e-12, 0);
        em_tape_destroy(t);
    }
    /* η = 30: category 1 has probability F(-29.7) - F(-31), both tiny (computed on the lower
     * tails, not as a difference of two numbers near 1) */
    em_tape *t = em_tape_create();
    em_dist d = em_dist_ordered_logistic(t, em_scalar(t, 30.0), em_const(t, CUTS, 3));
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_scalar(t, 1.0)));
    tu_assert_close(lp, log(exp(-29.7) / (1 + exp(-29.7)) - exp(-31.0) / (1 + exp(-31.0))), 1e-12, 0);
    d = em_dist_ordered_probit(t, em_scalar(t, 30.0), em_const(t, CUTS, 3));
    lp = em_value_scalar(t, em_dist_log_prob(&d, em_scalar(t, 1.0)));
    assert_true(isfinite(lp) && lp < -400.0);
    tu_assert_close(lp, log(gsl_cdf_ugaussian_P(-29.7) - gsl_cdf_ugaussian_P(-31.0)), 1e-10, 0);
    em_tape_destroy(t);
}

typedef struct {
    int probit, vec_eta, via_transform, pointwise;
    const double *y;
} ord_ctx;

static em_var ord_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves, void *vctx) {
    const ord_ctx *c = vctx;
    size_t ne = c->vec_eta ? 6 : 1;
    em_var eta = leaves[0] = em_leaf(t, x, ne), cut = leaves[1] = em_leaf(t, x + ne, 3);
    *nleaves = 2;
    (void)n;
    if (c->via_transform) {
        static const em_transform ord = {EM_TRANSFORM_ORDERED, 0, 0};
        cut = em_transform_forward(t, &ord, cut, NULL);
    }
    em_dist d = mk_ordered(t, eta, cut, c->probit);
    if (c->pointwise) { /* the terms one per element, each weighted: every element's partials */
        static const double w[6] = {1.3, -0.7, 2.1, 0.4, -1.6, 0.9};
        return em_op_dot(t, em_dist_pointwise(&d, EM_TERM_LOG_PROB, em_const(t, c->y, 6)), em_const(t, w, 6));
    }
    return em_op_mul(t, em_dist_log_prob(&d, em_const(t, c->y, 6)), em_scalar(t, 1.3));
}

static void test_ordered_gradients(void **state) {
    (void)state;
    static const double y[6] = {0, 3, 1, 2, 2, 0};
    for (int probit = 0; probit < 2; probit++)
        for (int vec = 0; vec < 2; vec++)
            for (int tr = 0; tr < 2; tr++) {
                double x[9] = {0.4, -2.5, 1.0, 3.5, 0.2, -0.6, 0, 0, 0};
                size_t ne = vec ? 6 : 1;
                if (tr) { /* the ordered transform's free values: c0, log gaps */
                    x[ne] = -1.0;
                    x[ne + 1] = log(1.3);
                    x[ne + 2] = log(1.7);
                } else {
                    memcpy(x + ne, CUTS, sizeof CUTS);
                }
                for (int pw = 0; pw < 2; pw++) {
                    ord_ctx c = {probit, vec, tr, pw, y};
                    char label[80];
                    snprintf(label, sizeof label, "Ordered%s eta%s%s%s", probit ? "Probit" : "Logistic",
                             vec ? " vector" : "", tr ? " via transform" : "", pw ? " pointwise" : "");
                    tu_check_gradient(ord_fn, x, ne + 3, &c, 1e-6, 1e-6, 1e-8, label);
                }
            }
}

static void test_ordered_sampling_and_errors(void **state) {
    (void)state;
    double *x = malloc(NS * sizeof *x);
    for (int probit = 0; probit < 2; probit++) {
        em_tape *t = em_tape_create();
        em_dist d = mk_ordered(t, em_scalar(t, 0.4), em_const(t, CUTS, 3), probit);
        em_rng *r = em_rng_create(400 + (uint64_t)probit, 0);
        em_error e = {0};
        assert_int_equal(em_dist_sample(&d, r, x, NS, &e), EM_OK);
        double obs[4] = {0}, chi = 0.0, m = 0.0, s2 = 0.0;
        for (size_t i = 0; i < NS; i++) obs[(size_t)x[i]] += 1.0;
        for (size_t k = 0; k < 4; k++) {
            double pk = exp(ord_ref((double)k, 0.4, CUTS, 4, probit)), ek = NS * pk;
            chi += (obs[k] - ek) * (obs[k] - ek) / ek;
            m += k * pk;
            s2 += (double)(k * k) * pk;
        }
        assert_true(chi < gsl_cdf_chisq_Qinv(1e-4, 3.0));
        double mv[2];
        assert_int_equal(em_dist_mean(&d, mv, 1, &e), EM_OK);
        assert_int_equal(em_dist_variance(&d, mv + 1, 1, &e), EM_OK);
        tu_assert_close(mv[0], m, 1e-12, 0);
        tu_assert_close(mv[1], s2 - m * m, 1e-12, 0);
        em_support sp = em_dist_support(&d);
        assert_true(sp.kind == EM_SUPPORT_CATEGORY && sp.hi == 3.0);
        em_rng_destroy(r);
        em_tape_destroy(t);
    }
    free(x);
    em_tape *t = em_tape_create();
    static const double bad[3] = {-1.0, 0.5, 0.5};
    em_dist d = em_dist_ordered_logistic(t, em_scalar(t, 0.0), em_const(t, bad, 3));
    em_var lp = em_dist_log_prob(&d, em_scalar(t, 1.0));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_non_null(strstr(em_tape_error(t)->msg, "OrderedLogistic: cutpoints[2] = 0.5 must be greater than cutpoints[1] = 0.5"));
    em_tape_reset(t);
    d = em_dist_ordered_probit(t, em_scalar(t, 0.0), em_const(t, CUTS, 3));
    lp = em_dist_log_prob(&d, em_scalar(t, 4.0));
    assert_non_null(strstr(em_tape_error(t)->msg, "OrderedProbit: value[0] = 4 is outside the support {0, ..., 3}"));
    em_tape_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_prob_vs_reference),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_pointwise_sums),
        cmocka_unit_test(test_sampling_and_moments),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_beta_binomial_large_precision),
        cmocka_unit_test(test_neg_binomial_large_phi),
        cmocka_unit_test(test_ordered_values),
        cmocka_unit_test(test_ordered_gradients),
        cmocka_unit_test(test_ordered_sampling_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
