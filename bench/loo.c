/* loo.c — PSIS-LOO on a 4000 × 10,000 log-likelihood matrix, against R's loo on the same matrix.
 *
 * The matrix is a Normal regression's pointwise log-likelihood under 4 chains of 1000 AR(1)
 * draws of (a, b, log σ), with one observation in 500 shifted by eight residual sds (outliers
 * have the longest tails of ratios; with 10,000 observations none reaches k̂ = 0.7). Ember's
 * side is em_loo with r_eff given (computed once with em_relative_eff, timed on its own), median
 * of three runs. R's side, when Rscript and the loo package are installed, reads the same matrix
 * from a temporary binary file, times relative_eff(exp(ll), chain_id) on its own and then
 * loo::loo(ll, r_eff = r_eff, cores = 1), once each. Times are CPU seconds of the process (R:
 * system.time's user + system), so other work on a shared machine does not enter either side.
 * One JSON line: times in seconds and per observation, the ratios R / Ember for loo and for
 * relative_eff, and the relative difference of elpd_loo between the two. No time is asserted.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "ember.h"

enum { C = 4, DRAWS = 1000, S = C * DRAWS, N = 10000 };

static double *make_loglik(void) {
    double *ll = malloc((size_t)S * N * sizeof *ll);
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    if (!ll || !x || !y) return NULL;
    em_rng *r = em_rng_create(2024, 0);
    for (size_t i = 0; i < N; i++) {
        x[i] = 2.0 * em_rng_uniform(r) - 1.0;
        y[i] = 1.0 + 0.5 * x[i] + 0.3 * em_rng_normal(r) + (i % 500 == 0 ? 2.5 : 0.0);
    }
    /* the posterior of (a, b, log σ) is close to normal with sds about 0.3 / sqrt(N) */
    const double rho = 0.5, sd = 0.3 / sqrt((double)N);
    for (size_t c = 0; c < C; c++) {
        double z[3] = {em_rng_normal(r), em_rng_normal(r), em_rng_normal(r)};
        for (size_t t = 0; t < DRAWS; t++) {
            for (int k = 0; k < 3; k++) z[k] = rho * z[k] + sqrt(1.0 - rho * rho) * em_rng_normal(r);
            double a = 1.0 + sd * z[0], b = 0.5 + 1.7 * sd * z[1], ls = log(0.3) + 0.7 / sqrt((double)N) * z[2];
            double sig = exp(ls);
            double *row = ll + (c * DRAWS + t) * (size_t)N;
            for (size_t i = 0; i < N; i++) {
                double e = (y[i] - a - b * x[i]) / sig;
                row[i] = -0.5 * e * e - ls - 0.91893853320467274178;
            }
        }
    }
    em_rng_destroy(r);
    free(x);
    free(y);
    return ll;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int r_available(void) {
    return system("Rscript -e 'quit(status = !requireNamespace(\"loo\", quietly = TRUE))' >/dev/null 2>&1") == 0;
}

static const char *const r_script =
    "suppressMessages(library(loo))\n"
    "a <- commandArgs(TRUE)\n"
    "S <- as.integer(a[2]); N <- as.integer(a[3]); C <- as.integer(a[4])\n"
    "con <- file(a[1], 'rb'); v <- readBin(con, 'double', n = S * N); close(con)\n"
    "ll <- t(matrix(v, nrow = N, ncol = S)); rm(v)\n"
    "cpu <- function(st) st[['user.self']] + st[['sys.self']]\n"
    "rt <- cpu(system.time(r <- relative_eff(exp(ll), chain_id = rep(seq_len(C), each = S / C))))\n"
    "t <- cpu(system.time(l <- suppressWarnings(loo(ll, r_eff = r, cores = 1))))\n"
    "cat(sprintf('%.6f %.17g %.6f\\n', t, l$estimates['elpd_loo', 'Estimate'], rt))\n";

/* R's seconds for loo, its elpd_loo and its seconds for relative_eff; -1 when R fails. */
static double run_r(const double *ll, double *elpd, double *reff_s) {
    char dpath[] = "/tmp/ember_bench_loo_XXXXXX", spath[] = "/tmp/ember_bench_loo_R_XXXXXX";
    int fd = mkstemp(dpath), fs = mkstemp(spath);
    if (fd < 0 || fs < 0) return -1.0;
    FILE *df = fdopen(fd, "wb"), *sf = fdopen(fs, "w");
    double secs = -1.0;
    if (df && sf && fwrite(ll, sizeof *ll, (size_t)S * N, df) == (size_t)S * N) {
        fputs(r_script, sf);
        fclose(sf);
        sf = NULL;
        fclose(df);
        df = NULL;
        char cmd[256];
        snprintf(cmd, sizeof cmd, "Rscript %s %s %d %d %d", spath, dpath, S, N, C);
        FILE *p = popen(cmd, "r");
        if (p) {
            if (fscanf(p, "%lf %lf %lf", &secs, elpd, reff_s) != 3) secs = -1.0;
            if (pclose(p) != 0) secs = -1.0;
        }
    }
    if (df) fclose(df);
    if (sf) fclose(sf);
    unlink(dpath);
    unlink(spath);
    return secs;
}

int main(void) {
    double *ll = make_loglik();
    double *r_eff = malloc(N * sizeof *r_eff);
    if (!ll || !r_eff) {
        fprintf(stderr, "bench/loo: out of memory\n");
        return 1;
    }
    em_error err = {0};
    double t0 = cpu_now();
    if (em_relative_eff(ll, S, N, NULL, C, r_eff, &err) != EM_OK) {
        fprintf(stderr, "bench/loo: %s\n", err.msg);
        return 1;
    }
    double reff_s = cpu_now() - t0;
    em_loo_options o = {.r_eff = r_eff};
    double t[3], elpd = NAN;
    size_t bad = 0;
    for (int k = 0; k < 3; k++) {
        em_loo_result *l = NULL;
        t0 = cpu_now();
        if (em_loo(ll, S, N, &o, &l, &err) != EM_OK) {
            fprintf(stderr, "bench/loo: %s\n", err.msg);
            return 1;
        }
        t[k] = cpu_now() - t0;
        elpd = l->elpd_loo;
        bad = l->k_count[EM_K_BAD] + l->k_count[EM_K_VERY_BAD];
        em_loo_free(l);
    }
    qsort(t, 3, sizeof t[0], bench_cmp_double);
    double ember_s = t[1];
    printf("{\"bench\":\"loo\",\"time\":\"cpu\",\"S\":%d,\"N\":%d,\"chains\":%d,\"k_above_0.7\":%zu,\"ember_s\":%.4f,"
           "\"ember_us_per_obs\":%.2f,\"ember_relative_eff_s\":%.4f",
           S, N, C, bad, ember_s, 1e6 * ember_s / N, reff_s);
    if (r_available()) {
        double r_elpd = NAN, r_reff_s = NAN, r_s = run_r(ll, &r_elpd, &r_reff_s);
        if (r_s > 0.0)
            printf(",\"r_loo_s\":%.3f,\"r_us_per_obs\":%.1f,\"ratio_r_over_ember\":%.1f,\"elpd_rel_diff\":%.2g,"
                   "\"r_relative_eff_s\":%.3f,\"ratio_relative_eff\":%.1f",
                   r_s, 1e6 * r_s / N, r_s / ember_s, fabs(elpd - r_elpd) / fabs(r_elpd), r_reff_s, r_reff_s / reff_s);
        else printf(",\"r_loo_s\":null");
    } else {
        printf(",\"r_loo_s\":null,\"note\":\"R/loo not installed\"");
    }
    printf("}\n");
    free(ll);
    free(r_eff);
    return 0;
}
