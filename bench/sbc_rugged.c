/* sbc_rugged.c — simulation-based calibration of the rugged regression (em_sbc_run).
 *
 *   sbc_rugged [--sbc R] [--method nuts|svi|laplace] [--guide meanfield|fullrank|lowrank]
 *              [--out DIR] [--threads N] [--seed S] [--warmup N] [--samples N]
 *              [--svi-steps N] [--draws L] [--bins B] [--no-plot]
 *
 * Each replication draws (a, bA, bR, bAR, sigma) from the prior, simulates log GDP for the 170
 * countries' real predictors, fits it, and ranks the truth among L = 99 posterior draws. With
 * --out, sbc_summary.csv, sbc_ranks.csv, sbc_details.csv and the figures go to DIR. The table
 * goes to stderr; stdout gets one JSON line: the SBC wall time against a baseline measured in
 * the same run, R single fits of the real data set one after the other on one thread (ratio < 1
 * means the replications' threads paid off). Without --sbc a small run (R = 40, NUTS) serves
 * as the benchmark of `make bench`; `make sbc` runs R = 500 with NUTS. Nothing is asserted.
 */
#include "ember.h"
#include "rugged_model.h"

#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *CSV = "examples/bayesian_regression/data/rugged_data.csv";

static int mkdir_p(const char *path) {
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: sbc_rugged [--sbc R] [--method nuts|svi|laplace] [--guide meanfield|fullrank|lowrank]\n"
                    "                  [--out DIR] [--threads N] [--seed S] [--warmup N] [--samples N]\n"
                    "                  [--svi-steps N] [--draws L] [--bins B] [--no-plot]\n");
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-') return -1;
    *out = (size_t)v;
    return 0;
}

/* One fit of the real data with the same engine settings: the per-replication baseline. */
static double time_one_fit(const rugged_data *d, const em_sbc_config *c, em_error *err) {
    double t0 = bench_now();
    if (c->engine == EM_SBC_ENGINE_NUTS) {
        em_logdensity *ld = em_logdensity_from_model(rugged_model, d, &(em_logdensity_options){.seed = 1}, err);
        if (!ld) return NAN;
        em_mcmc_config mc = c->mcmc;
        mc.num_threads = 1;
        em_mcmc_result *r = NULL;
        em_status s = em_mcmc_run(ld, &mc, &r, err);
        em_mcmc_result_free(r);
        em_logdensity_destroy(ld);
        if (s != EM_OK) return NAN;
    } else {
        em_autoguide *g = em_autoguide_create(c->svi.guide, rugged_model, d, &(em_autoguide_options){.seed = 1}, err);
        if (!g) return NAN;
        em_status s = EM_OK;
        if (c->svi.guide != EM_AUTO_LAPLACE) {
            em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, c->svi.lr);
            oc.schedule.kind = EM_LR_EXPONENTIAL;
            oc.schedule.gamma = pow(c->svi.lr_end / c->svi.lr, 1.0 / (double)c->svi.steps);
            em_svi *svi = em_svi_create(rugged_model, d, em_autoguide_fn, g, &oc,
                                        &(em_svi_options){.num_particles = c->svi.num_particles, .seed = 1}, err);
            s = svi ? em_svi_run(svi, c->svi.steps, NULL, err) : EM_ERR_ARG;
            em_svi_destroy(svi);
        }
        em_autoguide_destroy(g);
        if (s != EM_OK) return NAN;
    }
    return bench_now() - t0;
}

int main(int argc, char **argv) {
    em_sbc_config c = em_sbc_config_default();
    c.num_replications = 40;
    c.seed = 2026;
    const char *out = NULL, *method = "nuts", *guide = "meanfield";
    int plot = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t x = 0;
        int bad = 0;
        if (strcmp(a, "--no-plot") == 0) {
            plot = 0;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--sbc") == 0) bad = parse_size(v, &c.num_replications);
        else if (strcmp(a, "--method") == 0) method = v;
        else if (strcmp(a, "--guide") == 0) guide = v;
        else if (strcmp(a, "--out") == 0) out = v;
        else if (strcmp(a, "--threads") == 0) bad = parse_size(v, &x) || (c.num_threads = (int)x) < 0;
        else if (strcmp(a, "--seed") == 0) bad = parse_size(v, &x) || ((c.seed = x), 0);
        else if (strcmp(a, "--warmup") == 0) bad = parse_size(v, &x) || ((c.mcmc.num_warmup = (int)x), 0);
        else if (strcmp(a, "--samples") == 0) bad = parse_size(v, &x) || ((c.mcmc.num_samples = (int)x), 0);
        else if (strcmp(a, "--svi-steps") == 0) bad = parse_size(v, &c.svi.steps);
        else if (strcmp(a, "--draws") == 0) bad = parse_size(v, &c.num_draws);
        else if (strcmp(a, "--bins") == 0) bad = parse_size(v, &c.bins);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "sbc_rugged: bad option %s %s\n", a, v);
            usage();
            return 2;
        }
    }
    if (strcmp(method, "nuts") == 0) {
        c.engine = EM_SBC_ENGINE_NUTS;
    } else if (strcmp(method, "svi") == 0 || strcmp(method, "laplace") == 0) {
        c.engine = EM_SBC_ENGINE_SVI;
        if (strcmp(method, "laplace") == 0) c.svi.guide = EM_AUTO_LAPLACE, guide = "laplace";
        else if (strcmp(guide, "meanfield") == 0) c.svi.guide = EM_AUTO_DIAGONAL_NORMAL;
        else if (strcmp(guide, "fullrank") == 0) c.svi.guide = EM_AUTO_MULTIVARIATE_NORMAL;
        else if (strcmp(guide, "lowrank") == 0) c.svi.guide = EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL;
        else {
            fprintf(stderr, "sbc_rugged: --guide must be meanfield, fullrank or lowrank, not '%s'\n", guide);
            return 2;
        }
    } else {
        fprintf(stderr, "sbc_rugged: --method must be nuts, svi or laplace, not '%s'\n", method);
        return 2;
    }
    c.progress = 1;

    rugged_data d;
    em_error err = {0};
    if (rugged_data_load(CSV, &d, &err) != EM_OK) {
        fprintf(stderr, "sbc_rugged: %s (run from the repository root)\n", err.msg);
        return 1;
    }
    double base = time_one_fit(&d, &c, &err);
    if (!isfinite(base)) {
        fprintf(stderr, "sbc_rugged: baseline fit: %s\n", err.msg);
        rugged_data_free(&d);
        return 1;
    }
    em_sbc_result *r = NULL;
    if (em_sbc_run(rugged_model, &d, &c, &r, &err) != EM_OK) {
        fprintf(stderr, "sbc_rugged: %s\n", err.msg);
        rugged_data_free(&d);
        return 1;
    }
    em_sbc_print(stderr, r, NULL);
    size_t ndiv = em_sbc_num_divergent(r);
    if (c.engine == EM_SBC_ENGINE_NUTS)
        fprintf(stderr, "divergent transitions: %zu in %zu of %zu replications\n", ndiv,
                em_sbc_num_divergent_replications(r), c.num_replications);
    int rc = 0;
    if (out) {
        if (mkdir_p(out) != 0) {
            fprintf(stderr, "sbc_rugged: cannot create %s: %s\n", out, strerror(errno));
            rc = 1;
        } else if (em_sbc_write(r, out, &err) != EM_OK) {
            fprintf(stderr, "sbc_rugged: %s\n", err.msg);
            rc = 1;
        } else {
            int drawn = 0;
            if (plot && em_sbc_plot(out, &drawn, &err) != EM_OK) fprintf(stderr, "sbc_rugged: %s\n", err.msg);
            fprintf(stderr, "wrote %s/sbc_summary.csv, sbc_ranks.csv, sbc_details.csv%s\n", out,
                    drawn ? ", sbc_hist.png, sbc_ecdf.png" : " and sbc.gp");
        }
    }
    double min_p = 1.0, min_cov90 = 1.0, max_cov90 = 0.0;
    for (size_t j = 0; j < em_sbc_num_params(r); j++) {
        em_sbc_param_stats st;
        em_sbc_param(r, j, &st, NULL);
        if (st.chi2_p < min_p) min_p = st.chi2_p;
        if (st.coverage[2] < min_cov90) min_cov90 = st.coverage[2];
        if (st.coverage[2] > max_cov90) max_cov90 = st.coverage[2];
    }
    double secs = em_sbc_seconds(r);
    printf("{\"bench\":\"sbc_rugged\",\"method\":\"%s\",\"guide\":\"%s\",\"R\":%zu,\"L\":%zu,\"threads\":%d,"
           "\"sbc_s\":%.3f,\"baseline_s\":%.3f,\"ratio\":%.3f,\"flagged\":%zu,\"min_chi2_p\":%.4g,"
           "\"cov90_min\":%.3f,\"cov90_max\":%.3f,\"divergent\":%zu,\"failed\":%zu}\n",
           method, c.engine == EM_SBC_ENGINE_NUTS ? "-" : guide, c.num_replications, c.num_draws, c.num_threads, secs,
           base * (double)c.num_replications, secs / (base * (double)c.num_replications), em_sbc_num_flagged(r), min_p,
           min_cov90, max_cov90, ndiv, em_sbc_num_failed(r));
    em_sbc_free(r);
    rugged_data_free(&d);
    return rc;
}
