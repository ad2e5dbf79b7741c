/* linking.c — a complete analysis program built against an installed Ember: a straight-line
 * regression on eight data points, fitted by NUTS, summarised, and written as CmdStan CSV files
 * that R's posterior, cmdstanr, cmdstanpy or ArviZ can read.
 *
 *   make install PREFIX=$HOME/.local
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig
 *   cc -std=c11 linking.c $(pkg-config --cflags --libs ember) -o linking
 *   ./linking out        (writes out/line_chain_1.csv ... out/line_chain_4.csv)
 */
#include <ember.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The data: a handful of (x, y) measurements. */
typedef struct line_data {
    size_t n;
    const double *x, *y;
} line_data;

static const double X[8] = {0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0};
static const double Y[8] = {1.1, 2.9, 5.2, 6.8, 9.1, 10.9, 13.2, 14.8};

/* The model: y_i ~ Normal(alpha + beta * x_i, sigma), with weakly informative priors. */
static void line_model(em_model *m, const void *arg) {
    const line_data *d = arg;
    em_var alpha = em_sample(m, "alpha", em_normal(m, 0.0, 10.0));
    em_var beta = em_sample(m, "beta", em_normal(m, 0.0, 10.0));
    em_var sigma = em_sample(m, "sigma", em_half_normal(m, 5.0));
    em_var mu = em_add(m, alpha, em_mul(m, beta, em_data(m, d->x, d->n)));
    EM_PLATE(m, p, "data", d->n, 0) {
        em_observe(m, "y", em_normal(m, mu, sigma), d->y, d->n);
    }
}

static int fail(const char *what, const em_error *err) {
    fprintf(stderr, "linking: %s: %s\n", what, err->msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    line_data data = {8, X, Y};
    em_error err = {0};

    /* the model's log density on the unconstrained space (sigma through log) */
    em_logdensity *ld = em_logdensity_from_model(line_model, &data, NULL, &err);
    if (!ld) return fail("model", &err);

    /* NUTS with Stan's defaults: 4 chains, 1000 warmup + 1000 draws each */
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.seed = 42;
    em_mcmc_result *res = NULL;
    if (em_mcmc_run(ld, &cfg, &res, &err) != EM_OK) {
        em_logdensity_destroy(ld);
        return fail("NUTS", &err);
    }

    /* summary: mean, sd, quantiles, ESS and R-hat of the three parameters */
    const char *names[3] = {"alpha", "beta", "sigma"};
    size_t n = em_mcmc_extract(res, 0, NULL); /* draws per chain */
    double *draws = malloc(3 * res->num_chains * n * sizeof(double));
    em_summary *sum = NULL;
    int rc = 0;
    if (!draws) {
        fprintf(stderr, "linking: out of memory\n");
        rc = 1;
        goto done;
    }
    for (int p = 0; p < 3; p++)
        em_mcmc_extract(res, (size_t)em_mcmc_column_index(res, names[p]), draws + (size_t)p * res->num_chains * n);
    if (em_summarize(draws, res->num_chains, n, 3, names, EM_LAYOUT_PARAM_CHAIN_DRAW, &sum, &err) != EM_OK) {
        rc = fail("summary", &err);
        goto done;
    }
    em_summary_print(stdout, sum, 4, NULL);
    printf("divergent transitions: %zu\n", em_mcmc_num_divergent(res));

    /* one CmdStan-layout CSV file per chain */
    for (size_t c = 0; c < res->num_chains; c++) {
        const em_mcmc_chain *ch = &res->chains[c];
        char path[4096], id[32];
        snprintf(path, sizeof path, "%s/line_chain_%zu.csv", dir, c + 1);
        snprintf(id, sizeof id, "id = %zu", c + 1);
        const char *comments[] = {"model = line_model (examples/linking)", "method = sample", id};
        em_cmdstan_file f = {.comments = comments,
                             .ncomments = 3,
                             .names = (const char *const *)res->column_names,
                             .ncols = res->num_columns,
                             .draws = ch->draws + ch->num_warmup_draws * res->num_columns,
                             .ndraws = ch->num_draws - ch->num_warmup_draws,
                             .has_adaptation = 1,
                             .step_size = ch->stepsize,
                             .inv_metric = ch->inv_metric,
                             .metric_dim = res->metric_dim,
                             .dense_metric = res->dense_metric,
                             .has_timing = 1,
                             .warmup_seconds = ch->warmup_seconds,
                             .sampling_seconds = ch->sampling_seconds};
        if (em_cmdstan_write(path, &f, 0, &err) != EM_OK) {
            rc = fail("writing the draws", &err);
            goto done;
        }
        printf("wrote %s\n", path);
    }

done:
    em_summary_free(sum);
    free(draws);
    em_mcmc_result_free(res);
    em_logdensity_destroy(ld);
    return rc;
}
