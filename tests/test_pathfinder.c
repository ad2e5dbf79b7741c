/* test_pathfinder.c — Pathfinder's engine: a correlated Gaussian posterior, where the best
 * Gaussian along the path is the posterior itself (L-BFGS's inverse Hessian is exact on a
 * quadratic once it has seen enough of it) and k̂ is small; the path records; the NUTS start
 * made from the draws; the configuration's checks. The posteriordb cases against Stan's
 * reference draws are in test_posteriordb.c. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N2 15
static double X2[N2], Y2[N2];

/* y ~ Normal(a + b x, 1), x uncentred (about 10): a and b correlated near -0.99 */
static void reg2_model(em_model *m, const void *arg) {
    (void)arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 10.0));
    em_observe(m, "y", em_normal(m, em_add(m, a, em_mul(m, b, em_data(m, X2, N2))), 1.0), Y2, N2);
}

static void make_data(void) {
    for (int i = 0; i < N2; i++) {
        X2[i] = 8.0 + 4.0 * i / (N2 - 1);
        Y2[i] = 0.8 + 1.3 * X2[i] + 0.9 * cos(2.0 * i);
    }
}

static void test_gaussian_exact(void **state) {
    (void)state;
    make_data();
    double mean[2], cov[4];
    tu_linreg2_posterior(X2, Y2, N2, 0.01, mean, cov);
    em_posterior *p = NULL;
    em_error e = {0};
    assert_int_equal(em_fit_pathfinder(reg2_model, NULL, NULL, &p, &e), EM_OK);
    assert_true(em_posterior_psis_k(p) < 0.5);
    /* a variational CmdStan file that reads back as Pathfinder's */
    char dir[] = "/tmp/ember_pfXXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(em_posterior_write_cmdstan(p, dir, "pf", NULL, NULL, &e), EM_OK);
    snprintf(path, sizeof path, "%s/pf.csv", dir); /* independent draws: one file, as CmdStan */
    const char *paths[1] = {path};
    em_posterior *back = NULL;
    if (em_posterior_read_cmdstan(paths, 1, &back, &e) != EM_OK) fail_msg("%s", e.msg);
    assert_int_equal(em_posterior_method_of(back), EM_POSTERIOR_PATHFINDER);
    assert_string_equal(em_posterior_method_name(EM_POSTERIOR_PATHFINDER), "pathfinder");
    assert_int_equal(em_posterior_num_draws(back), 1000);
    em_posterior_free(back);
    remove(path);
    rmdir(dir);
    double x[1000], y[1000];
    assert_int_equal(em_posterior_draws(p, "a", x, &e), EM_OK);
    assert_int_equal(em_posterior_draws(p, "b", y, &e), EM_OK);
    /* 1000 resampled draws: Monte Carlo error about 0.05 sd in the means, 5% in the sds */
    tu_assert_close(em_mean(x, 1000), mean[0], 0, 0.15 * sqrt(cov[0]));
    tu_assert_close(em_mean(y, 1000), mean[1], 0, 0.15 * sqrt(cov[3]));
    tu_assert_close(em_sd(x, 1000), sqrt(cov[0]), 0.12, 0);
    tu_assert_close(em_sd(y, 1000), sqrt(cov[3]), 0.12, 0);
    em_posterior_free(p);
}

static void test_paths_and_nuts_start(void **state) {
    (void)state;
    make_data();
    em_error e = {0};
    em_logdensity *ld = em_logdensity_from_model(reg2_model, NULL, NULL, &e);
    assert_non_null(ld);
    em_pathfinder_config c = em_pathfinder_config_default();
    c.num_draws = 200;
    em_pathfinder_result *r = NULL;
    assert_int_equal(em_pathfinder_run(ld, &c, &r, &e), EM_OK);
    assert_int_equal(r->num_draws, 4 * 200);
    for (size_t k = 0; k < 4; k++) {
        const em_pathfinder_path *pa = &r->paths[k];
        assert_true(pa->best_iter >= 1 && pa->best_iter <= pa->iters);
        assert_true(isfinite(pa->best_elbo));
        assert_true(pa->grad_evals > pa->iters);
    }
    for (size_t d = 0; d < r->num_draws; d++) assert_true(isfinite(r->log_p[d]) && isfinite(r->log_q[d]));
    /* the same seed, the same draws; one path of four is the first path of the four */
    em_pathfinder_result *r1 = NULL;
    c.num_paths = 1;
    assert_int_equal(em_pathfinder_run(ld, &c, &r1, &e), EM_OK);
    assert_memory_equal(r1->theta, r->theta, 200 * 2 * sizeof(double));
    double init[8], inv_metric[2];
    assert_int_equal(em_pathfinder_mcmc_init(r, 4, init, inv_metric, &e), EM_OK);
    double mean[2], cov[4];
    tu_linreg2_posterior(X2, Y2, N2, 0.01, mean, cov);
    tu_assert_close(inv_metric[0], cov[0], 0.3, 0);
    tu_assert_close(inv_metric[1], cov[3], 0.3, 0);
    assert_memory_equal(init + 2, r->theta + 200 * 2, 2 * sizeof(double)); /* chain 2 from path 2 */
    /* NUTS from there, with a short warmup */
    em_mcmc_config mc = em_mcmc_config_default();
    mc.num_warmup = 150;
    mc.num_samples = 300;
    mc.init = init;
    mc.init_len = 8;
    mc.inv_metric = inv_metric;
    em_mcmc_result *res = NULL;
    assert_int_equal(em_mcmc_run(ld, &mc, &res, &e), EM_OK);
    em_mcmc_result_free(res);
    assert_int_equal(em_pathfinder_mcmc_init(r, 4, init, NULL, &e), EM_ERR_ARG);
    em_pathfinder_result_free(r1);
    em_pathfinder_result_free(r);
    em_logdensity_destroy(ld);
}

static void test_config_checked(void **state) {
    (void)state;
    em_error e = {0};
    em_logdensity *ld = em_logdensity_from_model(reg2_model, NULL, NULL, &e);
    em_pathfinder_config c = em_pathfinder_config_default();
    c.history = 0;
    em_pathfinder_result *r = NULL;
    assert_int_equal(em_pathfinder_run(ld, &c, &r, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "history"));
    assert_null(r);
    c = em_pathfinder_config_default();
    c.num_draws = 1;
    assert_int_equal(em_pathfinder_run(ld, &c, &r, &e), EM_ERR_ARG);
    assert_int_equal(em_pathfinder_run(NULL, NULL, &r, &e), EM_ERR_ARG);
    em_logdensity_destroy(ld);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaussian_exact),
        cmocka_unit_test(test_paths_and_nuts_start),
        cmocka_unit_test(test_config_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
