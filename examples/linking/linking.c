/* linking.c — a complete analysis program built against an installed Ember: a straight-line
 * regression on eight data points, fitted by NUTS, summarised, and written as CmdStan CSV files
 * that rstan, R's posterior, cmdstanr, cmdstanpy or ArviZ can read.
 *
 *   make install PREFIX=$HOME/.local
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig
 *   cc -std=c11 linking.c $(pkg-config --cflags --libs ember) -o linking
 *   ./linking out        (writes out/line_1.csv ... out/line_4.csv)
 */
#include <ember.h>

#include <stdio.h>

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
    em_observe(m, "y", em_normal(m, mu, sigma), d->y, d->n);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    line_data data = {8, X, Y};
    em_error err = {0};
    em_posterior *post = NULL;

    /* NUTS with Stan's defaults (4 chains, 1000 warmup + 1000 draws each), seed 42 */
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.seed = 42;
    if (em_fit_nuts(line_model, &data, &cfg, &post, &err) == EM_OK &&
        em_posterior_set_labels(post, "line_model (examples/linking)", "", &err) == EM_OK &&
        em_posterior_print(post, stdout, &err) == EM_OK &&
        em_posterior_write_cmdstan(post, dir, "line", NULL, NULL, &err) == EM_OK) {
        printf("divergent transitions: %zu\nwrote %s/line_1.csv ... %s/line_%zu.csv\n",
               em_posterior_num_divergent(post), dir, dir, em_posterior_num_chains(post));
        em_posterior_free(post);
        return 0;
    }
    fprintf(stderr, "linking: %s\n", err.msg);
    em_posterior_free(post);
    return 1;
}
