/* test_predictive.c — prior and posterior predictive draws and their summaries.
 *
 * A linear regression with known noise has a Gaussian posterior in closed form, so the
 * predictive distribution of the regression line mu(x) = a + b·x is N(m(x), xᵀΣx) and that of
 * a new observation N(m(x), xᵀΣx + 1): the draws are checked against these within Monte-Carlo
 * tolerance, from three sources of latent draws (a guide, unconstrained θ draws as NUTS gives,
 * and per-site values). Then the rugged regression on a grid of ruggedness values against the
 * exact 90% bands of ../shared/reference/pyro_bayesian_regression.md §5.
 *
 * Run from the repository root (make check does). */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rugged_model.h"

#define RUGGED_CSV "examples/bayesian_regression/data/rugged_data.csv"
static const double Z95 = 1.6448536269514722;

typedef struct reg_data {
    size_t n;
    const double *x, *y; /* y NULL: predictors only */
} reg_data;

#define NT 15
static double XT[NT], YT[NT];
static const double XG[4] = {-1.0, 0.0, 2.0, 5.0}; /* the prediction grid */

static void reg_model(em_model *m, const void *arg) {
    const reg_data *d = arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 10.0));
    em_var mu = em_add(m, a, em_mul(m, b, em_data(m, d->x, d->n)));
    em_deterministic(m, "mu", mu);
    /* without responses the site still exists (observed at placeholders) so it can be drawn */
    EM_PLATE(m, p, "data", d->n, 0) { em_observe(m, "y", em_normal(m, mu, 1.0), d->y ? d->y : d->x, d->n); }
}

static void make_data(void) {
    for (int i = 0; i < NT; i++) {
        XT[i] = 4.0 * i / (NT - 1);
        YT[i] = 0.8 + 1.3 * XT[i] + 0.9 * cos(2.0 * i);
    }
}

static void exact_posterior(double mean[2], double cov[4]) { tu_linreg2_posterior(XT, YT, NT, 0.01, mean, cov); }

/* mu and y at the grid against the closed form, within Monte-Carlo tolerance for nd draws
 * (neff: their effective number, for the tolerances). */
static void check_grid_eff(const em_predictive *p, size_t nd, size_t neff) {
    double mean[2], cov[4];
    exact_posterior(mean, cov);
    const em_pred_site *mu = em_predictive_site(p, "mu"), *y = em_predictive_site(p, "y");
    assert_non_null(mu);
    assert_non_null(y);
    assert_int_equal(mu->len, 4);
    assert_int_equal(y->len, 4);
    assert_int_equal(y->kind, EM_SITE_OBSERVE);
    em_pred_summary smu[4], sy[4];
    em_error e = {0};
    assert_int_equal(em_pred_site_summary(mu, nd, smu, &e), EM_OK);
    assert_int_equal(em_pred_site_summary(y, nd, sy, &e), EM_OK);
    for (int i = 0; i < 4; i++) {
        double x = XG[i], m = mean[0] + mean[1] * x;
        double v = cov[0] + 2 * x * cov[1] + x * x * cov[3];
        double sd_mu = sqrt(v), sd_y = sqrt(v + 1.0);
        double se = 1.0 / sqrt((double)neff);
        tu_assert_close(smu[i].mean, m, 0.0, 4.0 * sd_mu * se);
        tu_assert_close(smu[i].sd, sd_mu, 4.0 * se, 0.0);
        tu_assert_close(sy[i].mean, m, 0.0, 4.0 * sd_y * se);
        tu_assert_close(sy[i].sd, sd_y, 4.0 * se, 0.0);
        /* quantiles and the 90% HPDI of a normal: m ± 1.645 sd (MC error of a 5% quantile is
         * about 2.1 sd/sqrt(n)) */
        tu_assert_close(smu[i].q5, m - Z95 * sd_mu, 0.0, 10.0 * sd_mu * se);
        tu_assert_close(smu[i].q50, m, 0.0, 6.0 * sd_mu * se);
        tu_assert_close(smu[i].q95, m + Z95 * sd_mu, 0.0, 10.0 * sd_mu * se);
        tu_assert_close(sy[i].hpdi_lo, m - Z95 * sd_y, 0.0, 12.0 * sd_y * se);
        tu_assert_close(sy[i].hpdi_hi, m + Z95 * sd_y, 0.0, 12.0 * sd_y * se);
        assert_true(sy[i].hpdi_hi - sy[i].hpdi_lo <= sy[i].q95 - sy[i].q5 + 1e-12);
    }
}

static void check_grid(const em_predictive *p, size_t nd) { check_grid_eff(p, nd, nd); }

/* Draws from the guide: AutoLaplace is the exact posterior here. */
static void test_from_guide_on_new_x(void **state) {
    (void)state;
    reg_data train = {NT, XT, YT}, grid = {4, XG, NULL};
    em_error e = {0};
    em_autoguide *g = em_autoguide_create(EM_AUTO_LAPLACE, reg_model, &train, NULL, &e);
    assert_non_null(g);
    em_predictive *p = NULL;
    enum { ND = 4000 };
    em_predictive_options po = {.seed = 5};
    assert_int_equal(em_predictive_guide(reg_model, &grid, em_autoguide_fn, g, ND, &po, &p, &e), EM_OK);
    assert_int_equal(p->ndraws, ND);
    check_grid(p, ND);
    /* every sample, observe and deterministic site by default; the guide's auxiliary site is
     * not a model site */
    assert_non_null(em_predictive_site(p, "a"));
    assert_non_null(em_predictive_site(p, "b"));
    assert_null(em_predictive_site(p, "_auto_latent"));
    /* mu is a + b·x draw by draw */
    const em_pred_site *a = em_predictive_site(p, "a"), *b = em_predictive_site(p, "b"), *mu = em_predictive_site(p, "mu");
    for (int d = 0; d < 10; d++)
        tu_assert_close(mu->draws[d * 4 + 3], a->draws[d] + 5.0 * b->draws[d], 1e-14, 1e-14);
    em_predictive_free(p);

    /* same seed, same draws; another seed, others */
    em_predictive *p2 = NULL, *p3 = NULL;
    po.return_sites = (const char *[]){"y"};
    po.nreturn = 1;
    assert_int_equal(em_predictive_guide(reg_model, &grid, em_autoguide_fn, g, 50, &po, &p2, &e), EM_OK);
    assert_int_equal(em_predictive_guide(reg_model, &grid, em_autoguide_fn, g, 50, &po, &p3, &e), EM_OK);
    assert_int_equal(p2->nsites, 1);
    assert_memory_equal(p2->sites[0].draws, p3->sites[0].draws, 50 * 4 * sizeof(double));
    em_predictive_free(p3);
    po.seed = 6;
    assert_int_equal(em_predictive_guide(reg_model, &grid, em_autoguide_fn, g, 50, &po, &p3, &e), EM_OK);
    assert_memory_not_equal(p2->sites[0].draws, p3->sites[0].draws, 50 * 4 * sizeof(double));
    em_predictive_free(p2);
    em_predictive_free(p3);
    em_autoguide_destroy(g);
}

/* Draws as NUTS gives them: unconstrained θ, mapped with the density's latent layout. */
static void test_from_theta_draws(void **state) {
    (void)state;
    reg_data train = {NT, XT, YT}, grid = {4, XG, NULL};
    em_error e = {0};
    em_logdensity *ld = em_logdensity_from_model(reg_model, &train, NULL, &e);
    assert_non_null(ld);
    assert_int_equal(em_logdensity_dim(ld), 2);
    double mean[2], cov[4];
    exact_posterior(mean, cov);
    double l00 = sqrt(cov[0]), l10 = cov[1] / l00, l11 = sqrt(cov[3] - l10 * l10);
    enum { ND = 4000 };
    double *theta = malloc(ND * 2 * sizeof *theta);
    em_rng *r = em_rng_create(17, 0);
    for (int d = 0; d < ND; d++) {
        double z0 = em_rng_normal(r), z1 = em_rng_normal(r);
        theta[2 * d] = mean[0] + l00 * z0;
        theta[2 * d + 1] = mean[1] + l10 * z0 + l11 * z1;
    }
    em_predictive *p = NULL;
    em_predictive_options po = {.seed = 8, .return_sites = (const char *[]){"mu", "y"}, .nreturn = 2};
    assert_int_equal(em_predictive_theta(reg_model, &grid, ld, theta, ND, &po, &p, &e), EM_OK);
    assert_int_equal(p->nsites, 2);
    check_grid(p, ND);
    /* the latents are exactly the given draws: mu at x = 0 is a */
    const em_pred_site *mu = em_predictive_site(p, "mu");
    for (int d = 0; d < ND; d++) assert_true(mu->draws[d * 4 + 1] == theta[2 * d]);
    em_predictive_free(p);
    em_rng_destroy(r);
    free(theta);
    em_logdensity_destroy(ld);
}

/* The same from real NUTS draws: the θ rows of every chain go through em_predictive_theta. */
static void test_from_nuts_draws(void **state) {
    (void)state;
    reg_data train = {NT, XT, YT}, grid = {4, XG, NULL};
    em_error e = {0};
    em_logdensity *ld = em_logdensity_from_model(reg_model, &train, NULL, &e);
    assert_non_null(ld);
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_chains = 2;
    cfg.num_threads = 1;
    cfg.num_warmup = 500;
    cfg.num_samples = 1000;
    cfg.seed = 12;
    em_mcmc_result *res = NULL;
    assert_int_equal(em_mcmc_run(ld, &cfg, &res, &e), EM_OK);
    size_t nd = res->chains[0].num_draws + res->chains[1].num_draws - res->chains[0].num_warmup_draws -
                res->chains[1].num_warmup_draws;
    double *theta = malloc(nd * 2 * sizeof *theta);
    size_t k = 0;
    for (size_t c = 0; c < 2; c++) {
        const em_mcmc_chain *ch = &res->chains[c];
        for (size_t d = ch->num_warmup_draws; d < ch->num_draws; d++, k++)
            memcpy(theta + 2 * k, ch->unconstrained + 2 * d, 2 * sizeof(double));
    }
    em_predictive *p = NULL;
    em_predictive_options po = {.seed = 4, .return_sites = (const char *[]){"mu", "y"}, .nreturn = 2};
    assert_int_equal(em_predictive_theta(reg_model, &grid, ld, theta, nd, &po, &p, &e), EM_OK);
    /* NUTS draws are autocorrelated: judge them as half as many independent ones */
    check_grid_eff(p, nd, nd / 2);
    em_predictive_free(p);
    free(theta);
    em_mcmc_result_free(res);
    em_logdensity_destroy(ld);
}

static void test_from_site_values_and_errors(void **state) {
    (void)state;
    reg_data grid = {4, XG, NULL};
    const char *names[2] = {"a", "b"};
    size_t lens[2] = {1, 1};
    double draws[2 * 2] = {1.0, 2.0, -0.5, 0.25};
    em_predictive *p = NULL;
    em_error e = {0};
    assert_int_equal(em_predictive_posterior(reg_model, &grid, names, lens, 2, draws, 2, NULL, &p, &e), EM_OK);
    const em_pred_site *mu = em_predictive_site(p, "mu");
    for (int i = 0; i < 4; i++) {
        assert_true(mu->draws[i] == 1.0 + 2.0 * XG[i]);
        assert_true(mu->draws[4 + i] == -0.5 + 0.25 * XG[i]);
    }
    /* the placeholder data of the unobserved site are drawn over, never read or written */
    const em_pred_site *y = em_predictive_site(p, "y");
    assert_true(y->draws[0] != XG[0] || y->draws[1] != XG[1]);
    assert_true(XG[0] == -1.0 && XG[3] == 5.0);
    em_predictive_free(p);

    /* keep_observed: observe sites return their data */
    reg_data train = {NT, XT, YT};
    em_predictive_options keep = {.keep_observed = 1};
    assert_int_equal(em_predictive_posterior(reg_model, &train, names, lens, 2, draws, 1, &keep, &p, &e), EM_OK);
    assert_memory_equal(em_predictive_site(p, "y")->draws, YT, NT * sizeof(double));
    em_predictive_free(p);

    /* an unknown return site or substituted site is an error naming it */
    em_predictive_options bad = {.return_sites = (const char *[]){"mu", "muu"}, .nreturn = 2};
    assert_int_equal(em_predictive_posterior(reg_model, &grid, names, lens, 2, draws, 2, &bad, &p, &e), EM_ERR_MODEL);
    assert_non_null(strstr(e.msg, "'muu'"));
    assert_null(p);
    em_error_clear(&e);
    const char *bad_names[2] = {"a", "beta"};
    assert_int_equal(em_predictive_posterior(reg_model, &grid, bad_names, lens, 2, draws, 2, NULL, &p, &e),
                     EM_ERR_MODEL);
    assert_non_null(strstr(e.msg, "'beta'"));
    em_error_clear(&e);
    double nan_draws[2] = {NAN, 1.0};
    assert_int_equal(em_predictive_posterior(reg_model, &grid, names, lens, 2, nan_draws, 1, NULL, &p, &e),
                     EM_ERR_NONFINITE);
    em_error_clear(&e);
    assert_int_equal(em_predictive_prior(reg_model, &grid, 0, NULL, &p, &e), EM_ERR_ARG);
}

static void test_prior_predictive(void **state) {
    (void)state;
    reg_data grid = {4, XG, NULL};
    em_predictive *p = NULL;
    em_error e = {0};
    enum { ND = 4000 };
    assert_int_equal(em_predictive_prior(reg_model, &grid, ND, &(em_predictive_options){.seed = 3}, &p, &e), EM_OK);
    em_pred_summary s;
    assert_int_equal(em_pred_site_summary(em_predictive_site(p, "a"), ND, &s, &e), EM_OK);
    tu_assert_close(s.mean, 0.0, 0.0, 4.0 * 10.0 / sqrt(ND));
    tu_assert_close(s.sd, 10.0, 4.0 / sqrt(ND), 0.0);
    /* y at x = 5: a + 5b + noise has sd sqrt(100 + 2500 + 1) */
    em_pred_summary sy[4];
    assert_int_equal(em_pred_site_summary(em_predictive_site(p, "y"), ND, sy, &e), EM_OK);
    tu_assert_close(sy[3].sd, sqrt(2601.0), 4.0 / sqrt(ND), 0.0);
    em_predictive_free(p);
}

/* The rugged regression on a grid of ruggedness values, from AutoLaplace draws, against the
 * exact 90% bands (reference §5). Laplace is a Gaussian approximation on the unconstrained
 * space, very close here (about 0.002 in the coefficients' means), so the tolerances are
 * Monte-Carlo ones plus that. */
static void test_rugged_bands_on_grid(void **state) {
    (void)state;
    rugged_data d, grid;
    em_error e = {0};
    assert_int_equal(rugged_data_load(RUGGED_CSV, &d, &e), EM_OK);
    double africa[4] = {0, 0, 1, 1}, rug[4] = {0, 5, 0, 6};
    /* exact: mu_mean, mu_5%, mu_95%, y_5%, y_95% */
    static const double ex[4][5] = {{9.1803, 8.9510, 9.4087, 7.5965, 10.7632},
                                    {8.2660, 7.7895, 8.7436, 6.6288, 9.9043},
                                    {7.3399, 7.0481, 7.6329, 5.7467, 8.9343},
                                    {8.3176, 7.4312, 9.2022, 6.5170, 10.1163}};
    assert_int_equal(rugged_data_predictors(&grid, africa, rug, 4, &e), EM_OK);
    em_autoguide *g = em_autoguide_create(EM_AUTO_LAPLACE, rugged_model, &d, NULL, &e);
    assert_non_null(g);
    enum { ND = 4000 };
    em_predictive *p = NULL;
    em_predictive_options po = {.seed = 2, .return_sites = (const char *[]){"mean", "obs"}, .nreturn = 2};
    assert_int_equal(em_predictive_guide(rugged_model, &grid, em_autoguide_fn, g, ND, &po, &p, &e), EM_OK);
    em_pred_summary sm[4], so[4];
    assert_int_equal(em_pred_site_summary(em_predictive_site(p, "mean"), ND, sm, &e), EM_OK);
    assert_int_equal(em_pred_site_summary(em_predictive_site(p, "obs"), ND, so, &e), EM_OK);
    for (int i = 0; i < 4; i++) {
        tu_assert_close(sm[i].mean, ex[i][0], 0.0, 0.02);
        tu_assert_close(sm[i].q5, ex[i][1], 0.0, 0.04);
        tu_assert_close(sm[i].q95, ex[i][2], 0.0, 0.04);
        tu_assert_close(so[i].q5, ex[i][3], 0.0, 0.1);
        tu_assert_close(so[i].q95, ex[i][4], 0.0, 0.1);
    }
    em_predictive_free(p);
    em_autoguide_destroy(g);
    rugged_data_free(&grid);
    rugged_data_free(&d);
}

/* options.ndraws = k: k draws, draw j from given draw floor(j·S/k), the same for per-site values,
 * θ and the log-likelihood; the prior simply runs k times; k ≥ S and 0 use every draw. The
 * given draws are labelled (a = the draw's index), so the picks can be read off. */
static void test_ndraws_option(void **state) {
    (void)state;
    reg_data train = {NT, XT, YT};
    enum { S = 10, K = 4 };
    double vals[2 * S], theta[2 * S];
    for (int d = 0; d < S; d++) {
        vals[2 * d] = theta[2 * d] = (double)d; /* a */
        vals[2 * d + 1] = theta[2 * d + 1] = 0.5;
    }
    const char *names[2] = {"a", "b"};
    const size_t lens[2] = {1, 1};
    em_error e = {0};
    em_logdensity *ld = em_logdensity_from_model(reg_model, &train, NULL, &e);
    assert_non_null(ld);
    for (size_t k = 0; k <= S + 2; k += 1) {
        em_predictive_options po = {.seed = 3, .ndraws = k};
        size_t want = k == 0 || k >= S ? S : k;
        em_predictive *pv = NULL, *pt = NULL, *pl = NULL, *pp = NULL;
        assert_int_equal(em_predictive_posterior(reg_model, &train, names, lens, 2, vals, S, &po, &pv, &e), EM_OK);
        assert_int_equal(em_predictive_theta(reg_model, &train, ld, theta, S, &po, &pt, &e), EM_OK);
        assert_int_equal(em_predictive_log_lik(reg_model, &train, names, lens, 2, vals, S, &po, &pl, &e), EM_OK);
        assert_int_equal(em_predictive_prior(reg_model, &train, S, &po, &pp, &e), EM_OK);
        assert_int_equal(pv->ndraws, want);
        assert_int_equal(pt->ndraws, want);
        assert_int_equal(pl->ndraws, want);
        assert_int_equal(pp->ndraws, want);
        const em_pred_site *av = em_predictive_site(pv, "a"), *at = em_predictive_site(pt, "a");
        const em_pred_site *ll = em_predictive_site(pl, "y");
        for (size_t j = 0; j < want; j++) {
            size_t pick = j * S / want;
            assert_true(av->draws[j] == (double)pick);
            assert_true(at->draws[j] == (double)pick);
            /* the log-likelihood at the picked draw: y_i ~ N(a + 0.5 x_i, 1) */
            for (int i = 0; i < NT; i++) {
                double r = YT[i] - ((double)pick + 0.5 * XT[i]);
                tu_assert_close(ll->draws[j * NT + i], -0.5 * r * r - 0.91893853320467274, 1e-12, 1e-12);
            }
        }
        /* the same seed gives the picked draws the predictive values a run of those rows alone gives */
        if (want == K) {
            double sub[2 * K];
            for (size_t j = 0; j < K; j++) memcpy(sub + 2 * j, vals + 2 * (j * S / K), 2 * sizeof(double));
            em_predictive *ps = NULL;
            em_predictive_options p0 = {.seed = 3};
            assert_int_equal(em_predictive_posterior(reg_model, &train, names, lens, 2, sub, K, &p0, &ps, &e), EM_OK);
            assert_memory_equal(em_predictive_site(ps, "y")->draws, em_predictive_site(pv, "y")->draws,
                                K * NT * sizeof(double));
            em_predictive_free(ps);
        }
        em_predictive_free(pv);
        em_predictive_free(pt);
        em_predictive_free(pl);
        em_predictive_free(pp);
    }
    em_logdensity_destroy(ld);
}

int main(void) {
    make_data();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_guide_on_new_x),
        cmocka_unit_test(test_from_theta_draws),
        cmocka_unit_test(test_from_nuts_draws),
        cmocka_unit_test(test_from_site_values_and_errors),
        cmocka_unit_test(test_prior_predictive),
        cmocka_unit_test(test_ndraws_option),
        cmocka_unit_test(test_rugged_bands_on_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
