/* svi_diag.c — variational inference that says whether it worked, on the rugged regression.
 *
 * 1. em_fit_svi with the new defaults (Laplace start in its units, the TREND stopping rule,
 *    iterate averaging) against the old ones (prior-median start, the REL_MEAN rule at 1e-4,
 *    the last iterate), over seeds 1..5: steps run, whether the rule fired, wall time, the
 *    final ELBO and Pareto k̂ (medians over the seeds).
 * 2. Time to a first usable posterior (every parameter with bulk ESS ≥ 400 and R-hat < 1.01,
 *    or k̂ < 0.7 for independent draws): Pathfinder alone; NUTS alone (Stan's 1000 warmup
 *    iterations); NUTS with a 150-iteration warmup from random inits; and NUTS with the same
 *    short warmup started from Pathfinder's draws and its variances as the inverse metric.
 *
 * One JSON object per case on stdout; nothing asserts a time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ember.h"
#include "rugged_model.h"

#define RUGGED_CSV "examples/bayesian_regression/data/rugged_data.csv"
#define NSEEDS 5

static double median(double *x, size_t n) {
    qsort(x, n, sizeof *x, bench_cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int svi_case(const rugged_data *d, int old) {
    double steps[NSEEDS], secs[NSEEDS], elbo[NSEEDS], k[NSEEDS];
    int conv = 0;
    for (int s = 0; s < NSEEDS; s++) {
        em_svi_fit_config c = em_svi_fit_config_default();
        c.seed = (uint64_t)s + 1;
        if (old) {
            c.stop = EM_SVI_STOP_REL_MEAN;
            c.average = 0;
            c.laplace_init = 0;
        }
        em_posterior *p = NULL;
        em_error e = {0};
        double t0 = bench_now();
        if (em_fit_svi(rugged_model, d, &c, &p, &e) != EM_OK) {
            fprintf(stderr, "bench svi_diag: %s\n", e.msg);
            return 1;
        }
        secs[s] = bench_now() - t0;
        em_svi_fit_info info;
        em_posterior_svi_info(p, &info, NULL);
        steps[s] = (double)info.run.steps;
        elbo[s] = info.run.elbo;
        k[s] = em_posterior_psis_k(p);
        conv += info.run.converged;
        em_posterior_free(p);
    }
    printf("{\"bench\":\"svi_diag_rugged\",\"defaults\":\"%s\",\"seeds\":%d,\"median_steps\":%.0f,\"converged\":%d,"
           "\"median_seconds\":%.4f,\"median_elbo\":%.3f,\"median_khat\":%.3f}\n",
           old ? "old" : "new", NSEEDS, median(steps, NSEEDS), conv, median(secs, NSEEDS), median(elbo, NSEEDS),
           median(k, NSEEDS));
    return 0;
}

/* min bulk ESS and max R-hat of a posterior's parameters (meaningful for chains only) */
static void quality(const em_posterior *p, double *ess, double *rhat) {
    em_summary *s = NULL;
    *ess = INFINITY;
    *rhat = 0.0;
    if (em_posterior_summary(p, &s, NULL) != EM_OK) return;
    for (size_t j = 0; j < s->nparams; j++) {
        *ess = fmin(*ess, s->params[j].ess_bulk);
        *rhat = fmax(*rhat, s->params[j].rhat);
    }
    em_summary_free(s);
}

static void report(const char *what, double secs, const em_posterior *p, double extra_secs) {
    double ess, rhat;
    quality(p, &ess, &rhat);
    int indep = em_posterior_mcmc(p) == NULL;
    double k = em_posterior_psis_k(p);
    int usable = indep ? k < 0.7 : (ess >= 400 && rhat < 1.01);
    /* JSON has no NaN: what a kind of draws does not have is null */
    char es[32] = "null", rs[32] = "null", ks[32] = "null";
    if (!indep) {
        snprintf(es, sizeof es, "%.0f", ess);
        snprintf(rs, sizeof rs, "%.4f", rhat);
    } else if (isfinite(k)) snprintf(ks, sizeof ks, "%.3f", k);
    printf("{\"bench\":\"first_usable_rugged\",\"method\":\"%s\",\"seconds\":%.4f,\"pathfinder_seconds\":%.4f,"
           "\"min_ess_bulk\":%s,\"max_rhat\":%s,\"khat\":%s,\"usable\":%d}\n",
           what, secs, extra_secs, es, rs, ks, usable);
}

static int nuts_case(const rugged_data *d, const char *what, int warmup, const em_pathfinder_result *pf, double pf_secs) {
    em_mcmc_config c = em_mcmc_config_default();
    c.num_warmup = warmup;
    double init[4 * 5], inv_metric[5];
    em_error e = {0};
    if (pf) {
        if (em_pathfinder_mcmc_init(pf, (size_t)c.num_chains, init, inv_metric, &e) != EM_OK) goto fail;
        c.init = init;
        c.init_len = (size_t)c.num_chains * pf->dim;
        c.inv_metric = inv_metric;
    }
    em_posterior *p = NULL;
    double t0 = bench_now();
    if (em_fit_nuts(rugged_model, d, &c, &p, &e) != EM_OK) goto fail;
    report(what, bench_now() - t0 + pf_secs, p, pf_secs);
    em_posterior_free(p);
    return 0;
fail:
    fprintf(stderr, "bench svi_diag: %s: %s\n", what, e.msg);
    return 1;
}

int main(void) {
    rugged_data d;
    em_error e = {0};
    if (rugged_data_load(RUGGED_CSV, &d, &e) != EM_OK) {
        fprintf(stderr, "bench svi_diag: %s (run from the repository root)\n", e.msg);
        return 1;
    }
    int bad = svi_case(&d, 1) || svi_case(&d, 0);

    em_posterior *p = NULL;
    double t0 = bench_now();
    if (!bad && em_fit_pathfinder(rugged_model, &d, NULL, &p, &e) != EM_OK) bad = 1;
    if (!bad) report("pathfinder", bench_now() - t0, p, 0.0);
    em_posterior_free(p);
    /* the raw result for the NUTS start (the same run as em_fit_pathfinder makes) */
    em_logdensity *ld = bad ? NULL : em_logdensity_from_model(rugged_model, &d, NULL, &e);
    em_pathfinder_result *pf = NULL;
    t0 = bench_now();
    if (!bad && (!ld || em_pathfinder_run(ld, NULL, &pf, &e) != EM_OK)) bad = 1;
    double pf_secs = bench_now() - t0;
    if (!bad) bad = nuts_case(&d, "nuts_warmup_1000", 1000, NULL, 0.0) || nuts_case(&d, "nuts_warmup_150", 150, NULL, 0.0) ||
                    nuts_case(&d, "pathfinder_then_nuts_warmup_150", 150, pf, pf_secs);
    if (bad && e.status) fprintf(stderr, "bench svi_diag: %s\n", e.msg);
    em_pathfinder_result_free(pf);
    em_logdensity_destroy(ld);
    rugged_data_free(&d);
    return bad;
}
