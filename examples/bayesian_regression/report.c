/* report.c — see report.h. */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

void section(const char *title) { printf("\n=== %s ===\n", title); }

void print_data_summary(const rugged_options *o, const rugged_data *d) {
    size_t africa = 0;
    for (size_t i = 0; i < d->n; i++) africa += d->africa[i] != 0.0;
    double lo = d->log_gdp[0], hi = d->log_gdp[0];
    for (size_t i = 0; i < d->n; i++) {
        if (d->log_gdp[i] < lo) lo = d->log_gdp[i];
        if (d->log_gdp[i] > hi) hi = d->log_gdp[i];
    }
    section("Data");
    printf("%s: %zu nations with GDP data (%zu rows without rgdppc_2000 dropped)\n", o->data, d->n,
           d->table ? d->table->dropped : 0);
    printf("  %zu African, %zu other nations\n", africa, d->n - africa);
    printf("  log GDP per capita (2000): mean %.4f, sd %.4f, range %.3f to %.3f\n", em_mean(d->log_gdp, d->n),
           em_sd(d->log_gdp, d->n), lo, hi);
    section("Model");
    printf("log_gdp[i] ~ Normal(a + bA*africa[i] + bR*rugged[i] + bAR*africa[i]*rugged[i], sigma)\n");
    printf("a ~ Normal(0, 10);  bA, bR, bAR ~ Normal(0, 1);  sigma ~ Uniform(0, 10)\n");
    printf("Slope of log GDP on ruggedness: bR outside Africa, bR + bAR inside.\n");
}

/* Part 1's tables: the guide's parameters and quantiles, the posterior summary and slopes. */
void print_svi_fit(const svi_spec *spec, const svi_fit *f, const em_summary *s, const exact_posterior *ex) {
    if (f->has_gaussian && spec->kind == EM_AUTO_DIAGONAL_NORMAL) {
        printf("\nThe guide on the unconstrained space (sigma is stored as u = logit(sigma / 10)):\n");
        static const char *const head[] = {"", "a", "bA", "bR", "bAR", "u(sigma)"};
        table t;
        table_init(&t, 6, head);
        int r1 = table_row(&t), r2 = table_row(&t);
        table_set(&t, r1, 0, "loc");
        table_set(&t, r2, 0, "scale");
        for (int p = 0; p < NPAR; p++) {
            table_set(&t, r1, p + 1, "%.4f", f->loc[p]);
            table_set(&t, r2, p + 1, "%.4f", f->scale[p]);
        }
        table_print(stdout, &t, "");
        printf("\nQuantiles of the guide (25%%, 50%%, 75%%), in the parameters' own units:\n");
        static const char *const qh[] = {"name", "25%", "50%", "75%"};
        table_init(&t, 4, qh);
        for (int p = 0; p < NPAR; p++) {
            int r = table_row(&t);
            table_set(&t, r, 0, "%s", param_names[p]);
            for (int q = 0; q < 3; q++) table_set(&t, r, q + 1, "%.4f", f->quantiles[q][p]);
        }
        table_print(stdout, &t, "");
    }
    printf("\nPosterior from %zu draws of the guide:\n", post_rows(&f->draws));
    print_summary(stdout, s, 0);
    printf("\n-ELBO of the fitted guide (2000-particle estimate): %.2f (MCSE %.3f)\n", f->neg_elbo, f->elbo_se);
    if (f->stop_step)
        printf("Converged: the ELBO stopping rule (no fall beyond its noise over 3 windows of 100 steps) fired at step "
               "%zu of %d.\n", f->stop_step, spec->steps);
    else
        printf("Not converged: the ELBO stopping rule did not fire in %d steps.\n", spec->steps);
    if (!isnan(f->khat)) {
        double thr = em_psis_k_threshold(post_rows(&f->draws)); /* 0.7, or less for fewer than 2154 draws */
        printf("Pareto k-hat of the guide's draws: %.2f, %s %.2f: %s (Yao et al. 2018).\n", f->khat,
               f->khat < thr ? "below" : "above", thr,
               f->khat < thr ? "usable, best with importance-corrected expectations"
                             : "the guide is far from the posterior, its draws not to be trusted");
    }
    if (ex)
        printf("exact -log p(y): %.2f, so KL(guide || posterior) is about %.2f\n", -ex->log_evidence,
               f->neg_elbo + ex->log_evidence);
    if (f->skipped) printf("%zu steps were skipped for a non-finite loss.\n", f->skipped);
}

/* The comparison: mean and sd of each parameter and slope under every method, as two tables. */
void print_comparison(const post *const *p, const em_summary *const *s, size_t n, const exact_posterior *ex) {
    const char *head[8] = {"param"};
    int nc = 1;
    for (size_t m = 0; m < n; m++)
        head[nc++] = strstr(p[m]->label, "DiagonalNormal") ? "SVI diag"
                     : strstr(p[m]->label, "hand")         ? "SVI hand"
                     : strstr(p[m]->label, "Multivariate") ? "SVI MVN"
                                                           : "NUTS";
    if (ex) head[nc++] = "exact";
    for (int what = 0; what < 2; what++) {
        table t;
        table_init(&t, nc, head);
        for (int q = 0; q < NPAR + 2; q++) {
            int r = table_row(&t);
            table_set(&t, r, 0, "%s", q < NPAR ? param_names[q] : q == NPAR ? "slope in Africa" : "slope elsewhere");
            int c = 1;
            for (size_t m = 0; m < n; m++) {
                double v;
                if (q < NPAR) {
                    v = what == 0 ? s[m]->params[q].mean : s[m]->params[q].sd;
                } else {
                    size_t nd = post_rows(p[m]);
                    double *w = malloc(2 * nd * sizeof(double));
                    if (!w) return;
                    post_slopes(p[m], w, w + nd);
                    double *x = q == NPAR ? w + nd : w;
                    v = what == 0 ? em_mean(x, nd) : em_sd(x, nd);
                    free(w);
                }
                table_set(&t, r, c++, "%.4f", v);
            }
            if (ex) {
                double mean = q < NPAR ? ex->mean[q] : q == NPAR ? ex->slope_in_mean : ex->slope_out_mean;
                double sd = q < NPAR ? ex->sd[q] : q == NPAR ? ex->slope_in_sd : ex->slope_out_sd;
                table_set(&t, r, c++, "%.4f", what == 0 ? mean : sd);
            }
        }
        printf("%sPosterior %s:\n", what ? "\n" : "", what == 0 ? "mean" : "standard deviation");
        table_print(stdout, &t, "");
    }
}

/* The tutorial's question answered in words, from the best posterior at hand (NUTS if it ran). */
void print_answer(const post *best, const post *mean_field) {
    size_t n = post_rows(best);
    double *w = malloc(2 * n * sizeof(double));
    if (!w) return;
    post_slopes(best, w, w + n);
    section("Answer");
    const char *where[2] = {"Outside Africa", "Inside Africa"};
    for (int g = 0; g < 2; g++) {
        const double *x = g ? w + n : w;
        double m = em_mean(x, n), lo = em_quantile(x, n, 0.05), hi = em_quantile(x, n, 0.95);
        size_t pos = 0;
        for (size_t i = 0; i < n; i++) pos += x[i] > 0.0;
        const char *verb = hi < 0.0 ? "falls" : lo > 0.0 ? "rises" : m < 0.0 ? "probably falls" : "probably rises";
        printf("%s, log GDP %s with ruggedness:\n"
               "  slope %.3f per unit of the index, 90%% interval [%.3f, %.3f], P(slope > 0) = %.3f\n",
               where[g], verb, m, lo, hi, (double)pos / (double)n);
    }
    if (mean_field && mean_field != best) {
        size_t k = post_rows(mean_field);
        double *v = malloc(2 * k * sizeof(double));
        if (v) {
            post_slopes(mean_field, v, v + k);
            printf("(from %s, %zu draws). The mean-field %s is overconfident:\n"
                   "its standard deviations of the slopes are %.0f%% (outside) and %.0f%% (inside Africa) of these.\n",
                   best->label, n, mean_field->label, 100.0 * em_sd(v, k) / em_sd(w, n),
                   100.0 * em_sd(v + k, k) / em_sd(w + n, n));
            free(v);
        }
    } else if (mean_field) {
        printf("(from %s, %zu draws; a mean-field guide's intervals are too narrow: see --method nuts)\n",
               best->label, n);
    } else {
        printf("(from %s, %zu draws)\n", best->label, n);
    }
    free(w);
}

