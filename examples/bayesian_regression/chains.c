/* chains.c — see chains.h. */
#include "chains.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fits.h"
#include "table.h"
#include "util.h"

/* The configuration comment lines, laid out as CmdStan's argument tree. */
#define NCOMMENTS 40
#define COMMENT_LEN 160

static int config_comments(const em_mcmc_result *r, size_t chain, const char *data_path, const char *file,
                            char lines[NCOMMENTS][COMMENT_LEN]) {
    const em_mcmc_config *c = &r->config;
    const char *metric = c->metric == EM_METRIC_DENSE ? "dense_e" : c->metric == EM_METRIC_UNIT ? "unit_e" : "diag_e";
    int n = 0;
#define L(...) snprintf(lines[n++], COMMENT_LEN, __VA_ARGS__)
    L("model = rugged_model (Ember, examples/bayesian_regression)");
    L("method = sample");
    L("  sample");
    L("    num_samples = %d", c->num_samples);
    L("    num_warmup = %d", c->num_warmup);
    L("    save_warmup = %d", c->save_warmup);
    L("    thin = %d", c->thin);
    L("    adapt");
    L("      engaged = %d", c->adapt);
    L("      gamma = %g", c->gamma);
    L("      delta = %g", c->target_accept);
    L("      kappa = %g", c->kappa);
    L("      t0 = %g", c->t0);
    L("      init_buffer = %d", c->init_buffer);
    L("      term_buffer = %d", c->term_buffer);
    L("      window = %d", c->base_window);
    L("    algorithm = hmc");
    L("      hmc");
    L("        engine = nuts");
    L("          nuts");
    L("            max_depth = %d", c->max_treedepth);
    L("        metric = %s", metric);
    L("        stepsize = %g", c->stepsize);
    L("        stepsize_jitter = 0");
    L("id = %zu", chain + 1);
    L("data");
    L("  file = %.120s", data_path);
    L("init = %g", c->init_radius);
    L("random");
    L("  seed = %llu", (unsigned long long)c->seed);
    L("output");
    L("  file = %.120s", file);
    L("  sig_figs = 17");
#undef L
    return n;
}

em_status write_nuts_chains(const char *dir, const em_mcmc_result *r, const char *data_path, size_t *written,
                            size_t *complete, em_error *err) {
    *written = *complete = 0;
    for (size_t c = 0; c < r->num_chains; c++) {
        const em_mcmc_chain *ch = &r->chains[c];
        char name[64];
        snprintf(name, sizeof name, "nuts_chain_%zu.csv", c + 1);
        size_t ndraws = nuts_chain_draws(r, c);
        if (ndraws == 0) {
            fprintf(stderr, "rugged: chain %zu was interrupted during warmup; %s not written\n", c + 1, name);
            continue;
        }
        char lines[NCOMMENTS][COMMENT_LEN];
        const char *comments[NCOMMENTS];
        int ncomments = config_comments(r, c, data_path, name, lines);
        if (ndraws < (size_t)r->config.num_samples) {
            snprintf(lines[ncomments], COMMENT_LEN, "interrupted = 1 (%zu of %d draws)", ndraws,
                     r->config.num_samples);
            ncomments++;
            fprintf(stderr, "rugged: chain %zu was interrupted: %s holds its %zu of %d draws\n", c + 1, name, ndraws,
                    r->config.num_samples);
        } else {
            (*complete)++;
        }
        for (int i = 0; i < ncomments; i++) comments[i] = lines[i];
        em_cmdstan_file f = {.comments = comments,
                             .ncomments = (size_t)ncomments,
                             .names = (const char *const *)r->column_names,
                             .ncols = r->num_columns,
                             .draws = ch->draws + ch->num_warmup_draws * r->num_columns,
                             .ndraws = ndraws,
                             .has_adaptation = 1,
                             .step_size = ch->stepsize,
                             .inv_metric = ch->inv_metric,
                             .metric_dim = r->metric_dim,
                             .dense_metric = r->dense_metric,
                             .has_timing = 1,
                             .warmup_seconds = ch->warmup_seconds,
                             .sampling_seconds = ch->sampling_seconds};
        char *path = path_join(dir, name);
        if (!path) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
        em_status s = em_cmdstan_write(path, &f, 0, err);
        free(path);
        if (s != EM_OK) return s;
        (*written)++;
    }
    return EM_OK;
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
