/* adapt.h — warmup adaptation for HMC and NUTS (private to the mcmc module; tests include it).
 *
 * Three pieces, as in Stan:
 *  - dual averaging of the log step size (Nesterov 2009, "Primal-dual subgradient methods for
 *    convex problems"; Hoffman & Gelman 2014, JMLR 15, §3.2.1, Algorithm 5), pushing the mean
 *    acceptance statistic towards a target delta;
 *  - the windowed schedule (Stan reference manual, "HMC algorithm parameters / automatic
 *    parameter tuning"): a fast initial buffer, slow windows that double in length and end with
 *    a metric update, and a fast terminal buffer;
 *  - Welford estimators of the variance (diagonal metric) or covariance (dense metric) of the
 *    draws inside a slow window, shrunk towards 1e-3·I as Stan does so a short window cannot
 *    produce a degenerate metric.
 */
#ifndef EMBER_INTERNAL_ADAPT_H
#define EMBER_INTERNAL_ADAPT_H

#include <stddef.h>

/* ---- dual averaging ------------------------------------------------------------------- */

typedef struct em_dual_avg {
    double delta, gamma, kappa, t0; /* target acceptance and the algorithm's constants */
    double mu;                      /* shrinkage point of log step size, log(10·eps0) */
    double counter, s_bar, x_bar;   /* iteration count, averaged error, averaged log step */
} em_dual_avg;

void em_dual_avg_init(em_dual_avg *da, double delta, double gamma, double kappa, double t0);
/* Forget the history and shrink towards mu from now on (after each metric update). */
void em_dual_avg_restart(em_dual_avg *da, double mu);
/* One update with the acceptance statistic of the last transition; returns the step size to
 * use next, exp(x_t). */
double em_dual_avg_learn(em_dual_avg *da, double accept_stat);
/* The step size to keep after warmup, exp(x_bar) (1 when nothing was learnt). */
double em_dual_avg_final(const em_dual_avg *da);

/* ---- windowed schedule ---------------------------------------------------------------- */

typedef struct em_adapt_windows {
    size_t num_warmup, init_buffer, term_buffer, base_window;
    size_t counter;     /* warmup iterations seen so far */
    size_t window_size; /* length of the current slow window */
    size_t next_end;    /* iteration (0-based) at which the current slow window ends */
    int enabled;        /* 0 when warmup is too short (< 20) for any metric estimation */
} em_adapt_windows;

/* Set the schedule for num_warmup iterations. When the three stages do not fit, use Stan's
 * fallback split of 15% / 75% / 10% (each truncated towards zero). Returns 1 when the fallback
 * was used. */
int em_adapt_windows_init(em_adapt_windows *w, size_t num_warmup, size_t init_buffer,
                          size_t term_buffer, size_t base_window);
/* Whether the current iteration's draw belongs to a slow window (feeds the estimator). */
int em_adapt_windows_in_slow(const em_adapt_windows *w);
/* Whether the current iteration closes a slow window (then update the metric). */
int em_adapt_windows_at_end(const em_adapt_windows *w);
/* Move to the next iteration, computing the next window when the current one just closed. */
void em_adapt_windows_advance(em_adapt_windows *w);
/* Convenience: the 0-based iterations at which the metric is updated for this schedule,
 * written to ends[0..cap); returns how many there are (may exceed cap). */
size_t em_adapt_window_ends(size_t num_warmup, size_t init_buffer, size_t term_buffer,
                            size_t base_window, size_t *ends, size_t cap);

/* ---- metric estimation ---------------------------------------------------------------- */

typedef struct em_metric_est {
    size_t dim;
    int dense;
    size_t n;
    double *mean; /* dim */
    double *m2;   /* dim (diag) or dim*dim row-major (dense) */
} em_metric_est;

/* Returns 0 on success, -1 when out of memory. */
int em_metric_est_init(em_metric_est *e, size_t dim, int dense);
void em_metric_est_free(em_metric_est *e);
void em_metric_est_restart(em_metric_est *e);
void em_metric_est_add(em_metric_est *e, const double *q);
/* Write the regularised inverse metric (dim or dim*dim values): the sample (co)variance S of
 * the n draws scaled as S·n/(n+5) + 1e-3·5/(n+5)·I. Returns 0, or -1 when n < 2 (then out is
 * left unchanged: there is nothing to estimate from). */
int em_metric_est_finish(const em_metric_est *e, double *out);

#endif
