/* chains.c — see chains.h. */
#include "chains.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

em_status write_nuts_chains(const char *dir, em_posterior *p, const char *data_path, size_t *written,
                            size_t *complete, em_error *err) {
    const em_mcmc_result *r = em_posterior_mcmc(p);
    *complete = 0;
    for (size_t c = 0; c < r->num_chains; c++) {
        const em_mcmc_chain *ch = &r->chains[c];
        size_t n = ch->num_draws - ch->num_warmup_draws;
        if (n == 0) fprintf(stderr, "rugged: chain %zu was interrupted during warmup; nuts_chain_%zu.csv not written\n", c + 1, c + 1);
        else if (n < (size_t)r->config.num_samples)
            fprintf(stderr, "rugged: chain %zu was interrupted: nuts_chain_%zu.csv holds its %zu of %d draws\n", c + 1,
                    c + 1, n, r->config.num_samples);
        else (*complete)++;
    }
    em_status s = em_posterior_set_labels(p, "rugged_model (Ember, examples/bayesian_regression)", data_path, err);
    if (s == EM_OK) s = em_posterior_write_cmdstan(p, dir, "nuts_chain", NULL, written, err);
    return s;
}

void print_nuts_diagnostics(FILE *f, const em_mcmc_result *r) {
    static const char *const head[] = {"chain", "step size", "mean accept_stat__", "divergent", "max treedepth hits",
                                       "E-BFMI"};
    table t;
    table_init(&t, 6, head);
    size_t total_div = 0, total_tree = 0;
    int low_bfmi = 0;
    for (size_t c = 0; c < r->num_chains; c++) {
        const em_mcmc_chain *ch = &r->chains[c];
        size_t n = ch->num_draws - ch->num_warmup_draws;
        if (n == 0) continue; /* stopped during warmup */
        double *e = malloc((n ? n : 1) * sizeof(double));
        double bfmi = NAN;
        if (e) {
            for (size_t i = 0; i < n; i++)
                e[i] = ch->draws[(ch->num_warmup_draws + i) * r->num_columns + EM_MCMC_COL_ENERGY];
            bfmi = em_ebfmi(e, n);
            free(e);
        }
        low_bfmi |= bfmi < 0.3;
        int row = table_row(&t);
        table_set(&t, row, 0, "%zu", c + 1);
        table_set(&t, row, 1, "%.4f", ch->stepsize);
        table_set(&t, row, 2, "%.3f", ch->mean_accept_stat);
        table_set(&t, row, 3, "%zu", ch->num_divergent);
        table_set(&t, row, 4, "%zu", ch->num_max_treedepth);
        table_num(&t, row, 5, bfmi, 3);
        total_div += ch->num_divergent;
        total_tree += ch->num_max_treedepth;
    }
    table_print(f, &t, "");
    fprintf(f, "%s", total_div ? "" : "No divergent transitions. ");
    if (total_div)
        fprintf(f, "WARNING: %zu divergent transitions after warmup: the draws may be biased. ", total_div);
    if (total_tree) fprintf(f, "%zu transitions hit the maximum tree depth. ", total_tree);
    fprintf(f, "%s\n", low_bfmi ? "E-BFMI below 0.3 in some chain: the energy is poorly explored."
                                 : "E-BFMI above 0.3 in every chain.");
}
