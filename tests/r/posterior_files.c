/* posterior_files.c — writes the files tests/test_posterior_r.sh reads with R: a small
 * regression fitted by NUTS (save_warmup on, so the warmup rows are in the files too) and by
 * SVI, each as CmdStan CSV files plus Ember's own summary CSV. Usage: posterior_files DIR */
#include <ember.h>

#include <stdio.h>

static const double X[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const double Y[12] = {0.8, 2.9, 5.1, 7.2, 8.8, 11.1, 13.0, 15.2, 16.8, 19.1, 21.2, 22.7};

static void model(em_model *m, const void *arg) {
    (void)arg;
    em_var a = em_sample(m, "alpha", em_normal(m, 0.0, 10.0));
    em_var b = em_sample(m, "beta", em_normal(m, 0.0, 10.0));
    em_var s = em_sample(m, "sigma", em_half_normal(m, 5.0));
    em_observe(m, "y", em_normal(m, em_add(m, a, em_mul(m, b, em_data(m, X, 12))), s), Y, 12);
}

static int fail(const em_error *e) {
    fprintf(stderr, "posterior_files: %s\n", e->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char path[4096];
    em_error err = {0};
    em_posterior *nuts = NULL, *svi = NULL;
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.seed = 7;
    cfg.num_warmup = 500;
    cfg.save_warmup = 1;
    em_cmdstan_write_options wo = {0, 1}; /* with log_lik columns */
    if (em_fit_nuts(model, NULL, &cfg, &nuts, &err) != EM_OK) return fail(&err);
    if (em_posterior_write_cmdstan(nuts, argv[1], "nuts", &wo, NULL, &err) != EM_OK) return fail(&err);
    /* log_lik files are cut to the common draw count; write the plain ones with warmup too */
    if (em_posterior_write_cmdstan(nuts, argv[1], "nutsw", NULL, NULL, &err) != EM_OK) return fail(&err);
    snprintf(path, sizeof path, "%s/nuts_summary.csv", argv[1]);
    if (em_posterior_write_summary(nuts, path, &err) != EM_OK) return fail(&err);
    em_svi_fit_config sc = em_svi_fit_config_default();
    sc.num_steps = 3000;
    sc.learning_rate = 0.05;
    if (em_fit_svi(model, NULL, &sc, &svi, &err) != EM_OK) return fail(&err);
    if (em_posterior_write_cmdstan(svi, argv[1], "svi", NULL, NULL, &err) != EM_OK) return fail(&err);
    snprintf(path, sizeof path, "%s/svi_summary.csv", argv[1]);
    if (em_posterior_write_summary(svi, path, &err) != EM_OK) return fail(&err);
    em_posterior_free(nuts);
    em_posterior_free(svi);
    return 0;
}
