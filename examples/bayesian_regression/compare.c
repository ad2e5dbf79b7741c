/* compare.c — see compare.h. */
#include "compare.h"

#include <stdlib.h>
#include <string.h>

/* The rugged model without the interaction: one slope of ruggedness inside and outside Africa. */
static void additive_model(em_model *m, const void *arg) {
    const rugged_data *d = arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));
    em_var bA = em_sample(m, "bA", em_normal(m, 0.0, 1.0));
    em_var bR = em_sample(m, "bR", em_normal(m, 0.0, 1.0));
    em_var sigma = em_sample(m, "sigma", em_uniform(m, 0.0, 10.0));
    em_var mean = em_add(m, a, em_add(m, em_mul(m, bA, em_data(m, d->africa, d->n)), em_mul(m, bR, em_data(m, d->rugged, d->n))));
    em_observe(m, "obs", em_normal(m, mean, sigma), d->log_gdp, d->n);
}

/* The interaction model with Student-t errors (nu ~ Gamma(2, 0.1), brms's default): are a few
 * nations outliers that a Normal likelihood bends the line for? */
static void student_model(em_model *m, const void *arg) {
    const rugged_data *d = arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));
    em_var bA = em_sample(m, "bA", em_normal(m, 0.0, 1.0));
    em_var bR = em_sample(m, "bR", em_normal(m, 0.0, 1.0));
    em_var bAR = em_sample(m, "bAR", em_normal(m, 0.0, 1.0));
    em_var sigma = em_sample(m, "sigma", em_uniform(m, 0.0, 10.0));
    em_var nu = em_sample(m, "nu", em_gamma(m, 2.0, 0.1));
    const em_var slopes[3] = {bA, bR, bAR};
    em_var beta = em_op_concat(em_model_tape(m), slopes, 3);
    em_var mean = em_matvec_add(m, em_data_matrix(m, d->X, d->n, 3), beta, a);
    em_observe(m, "obs", em_student_t(m, nu, mean, sigma), d->log_gdp, d->n);
}

em_status compare_models(const rugged_data *d, int chains, int samples, int warmup, uint64_t seed, const char *dir,
                         em_error *err) {
    const char *names[3] = {"interaction", "additive", "student_t"};
    em_model_fn models[3] = {rugged_model, additive_model, student_model};
    em_posterior *fit[3] = {NULL, NULL, NULL};
    em_loo_result *loo[3] = {NULL, NULL, NULL};
    em_loo_comparison *cmp = NULL;
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_chains = chains;
    cfg.num_samples = samples;
    cfg.num_warmup = warmup;
    em_status s = EM_OK;
    for (int k = 0; k < 3 && s == EM_OK; k++) {
        cfg.seed = em_seed_mix(seed, 30 + (uint64_t)k);
        size_t refits = 0;
        s = em_fit_nuts(models[k], d, &cfg, &fit[k], err);
        if (s == EM_OK) s = em_posterior_loo(fit[k], "obs", &loo[k], err);
        if (s == EM_OK) s = em_posterior_reloo(fit[k], "obs", loo[k], 0.7, NULL, &refits, err);
        if (s != EM_OK) break;
        printf("\nModel '%s'%s:\n", names[k], refits ? "" : " (every Pareto k below 0.7: no refit needed)");
        if (refits) printf("(%zu observation%s with Pareto k > 0.7 refitted exactly)\n", refits, refits == 1 ? "" : "s");
        s = em_loo_print(stdout, loo[k], 1, err);
    }
    if (s == EM_OK) s = em_loo_compare((const em_loo_result *const *)loo, 3, names, &cmp, err);
    if (s == EM_OK) {
        printf("\nComparison (loo_compare), best first:\n");
        s = em_loo_comparison_print(stdout, cmp, 1, err);
    }
    if (s == EM_OK) {
        /* the table as CSV: model, elpd_diff, se_diff */
        em_buf b = {0};
        char path[4096];
        em_buf_printf(&b, "model,elpd_loo,se_elpd_loo,p_loo,elpd_diff,se_diff\n");
        for (size_t r = 0; r < cmp->K; r++) {
            size_t k = cmp->order[r];
            em_buf_printf(&b, "%s,%.17g,%.17g,%.17g,%.17g,%.17g\n", names[k], loo[k]->elpd_loo, loo[k]->se_elpd_loo,
                          loo[k]->p_loo, cmp->elpd_diff[r], cmp->se_diff[r]);
        }
        snprintf(path, sizeof path, "%s/loo_compare.csv", dir);
        s = b.failed ? em_error_set(err, EM_ERR_NOMEM, "loo_compare.csv: out of memory")
                     : em_write_file_atomic(path, b.data, b.len, err);
        em_buf_free(&b);
    }
    em_loo_comparison_free(cmp);
    for (int k = 0; k < 3; k++) {
        em_loo_free(loo[k]);
        em_posterior_free(fit[k]);
    }
    return s;
}
