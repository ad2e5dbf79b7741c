/* adapt.c — step-size dual averaging, Stan's windowed warmup schedule and the Welford metric
 * estimators. See internal/adapt.h. */
#include "internal/adapt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- dual averaging ------------------------------------------------------------------- */

void em_dual_avg_init(em_dual_avg *da, double delta, double gamma, double kappa, double t0) {
    memset(da, 0, sizeof *da);
    da->delta = delta;
    da->gamma = gamma;
    da->kappa = kappa;
    da->t0 = t0;
}

void em_dual_avg_restart(em_dual_avg *da, double mu) {
    da->mu = mu;
    da->counter = 0;
    da->s_bar = 0;
    da->x_bar = 0;
}

/* Hoffman & Gelman 2014, eq. (6) with the weights of Algorithm 5:
 *   H_bar_t = (1 - 1/(t+t0)) H_bar_{t-1} + (delta - alpha_t)/(t+t0)
 *   x_t     = mu - sqrt(t)/gamma · H_bar_t
 *   x_bar_t = t^-kappa x_t + (1 - t^-kappa) x_bar_{t-1}
 * The acceptance statistic is capped at 1 (a Metropolis ratio can exceed it). */
double em_dual_avg_learn(em_dual_avg *da, double accept_stat) {
    da->counter += 1;
    double a = accept_stat > 1 ? 1 : accept_stat;
    if (!(a >= 0)) a = 0; /* NaN from a broken transition counts as a rejection */
    double eta = 1.0 / (da->counter + da->t0);
    da->s_bar = (1.0 - eta) * da->s_bar + eta * (da->delta - a);
    double x = da->mu - da->s_bar * sqrt(da->counter) / da->gamma;
    double w = pow(da->counter, -da->kappa);
    da->x_bar = (1.0 - w) * da->x_bar + w * x;
    return exp(x);
}

double em_dual_avg_final(const em_dual_avg *da) { return exp(da->x_bar); }

/* ---- windowed schedule ---------------------------------------------------------------- */

static void windows_restart(em_adapt_windows *w) {
    w->counter = 0;
    w->window_size = w->base_window;
    w->next_end = w->init_buffer + w->window_size - 1;
}

int em_adapt_windows_init(em_adapt_windows *w, size_t num_warmup, size_t init_buffer,
                          size_t term_buffer, size_t base_window) {
    memset(w, 0, sizeof *w);
    w->num_warmup = num_warmup;
    int fallback = 0;
    /* Stan estimates no metric below 20 warmup iterations: too few draws to say anything. */
    if (num_warmup < 20 || base_window == 0) {
        w->enabled = 0;
        return 0;
    }
    if (init_buffer + base_window + term_buffer > num_warmup) {
        /* Stan's windowed_adaptation::set_window_params fallback, truncating like its unsigned
         * casts. Stan returns from this branch without restarting its window counters, which
         * (as we read it) leaves its first window end unset; we restart so the 75% slow window
         * really ends with a metric update, which is what the fallback is meant to do. */
        init_buffer = (size_t)(0.15 * (double)num_warmup);
        term_buffer = (size_t)(0.10 * (double)num_warmup);
        base_window = num_warmup - (init_buffer + term_buffer);
        fallback = 1;
    }
    w->init_buffer = init_buffer;
    w->term_buffer = term_buffer;
    w->base_window = base_window;
    w->enabled = 1;
    windows_restart(w);
    return fallback;
}

int em_adapt_windows_in_slow(const em_adapt_windows *w) {
    return w->enabled && w->counter >= w->init_buffer &&
           w->counter < w->num_warmup - w->term_buffer && w->counter != w->num_warmup;
}

int em_adapt_windows_at_end(const em_adapt_windows *w) {
    return w->enabled && w->counter == w->next_end && w->counter != w->num_warmup;
}

/* After a window closes: the next one is twice as long, and if the one after it would not
 * fit before the terminal buffer, this one is stretched to the terminal buffer instead (so no
 * window is left too short to estimate anything). */
static void windows_next(em_adapt_windows *w) {
    size_t last = w->num_warmup - w->term_buffer - 1;
    if (w->next_end == last) return;
    w->window_size *= 2;
    w->next_end = w->counter + w->window_size;
    if (w->next_end == last) return;
    size_t following = w->next_end + 2 * w->window_size;
    if (following >= w->num_warmup - w->term_buffer) w->next_end = last;
}

void em_adapt_windows_advance(em_adapt_windows *w) {
    if (em_adapt_windows_at_end(w)) windows_next(w);
    w->counter++;
}

size_t em_adapt_window_ends(size_t num_warmup, size_t init_buffer, size_t term_buffer,
                            size_t base_window, size_t *ends, size_t cap) {
    em_adapt_windows w;
    em_adapt_windows_init(&w, num_warmup, init_buffer, term_buffer, base_window);
    size_t n = 0;
    for (size_t i = 0; i < num_warmup; i++) {
        if (em_adapt_windows_at_end(&w)) {
            if (n < cap) ends[n] = i;
            n++;
        }
        em_adapt_windows_advance(&w);
    }
    return n;
}

/* ---- metric estimation ---------------------------------------------------------------- */

int em_metric_est_init(em_metric_est *e, size_t dim, int dense) {
    memset(e, 0, sizeof *e);
    e->dim = dim;
    e->dense = dense;
    e->mean = calloc(dim, sizeof *e->mean);
    e->m2 = calloc(dense ? dim * dim : dim, sizeof *e->m2);
    if (!e->mean || !e->m2) {
        em_metric_est_free(e);
        return -1;
    }
    return 0;
}

void em_metric_est_free(em_metric_est *e) {
    free(e->mean);
    free(e->m2);
    e->mean = e->m2 = NULL;
}

void em_metric_est_restart(em_metric_est *e) {
    e->n = 0;
    memset(e->mean, 0, e->dim * sizeof *e->mean);
    memset(e->m2, 0, (e->dense ? e->dim * e->dim : e->dim) * sizeof *e->m2);
}

/* Welford's one-pass update (Welford 1962; the covariance form as in Stan's
 * welford_covar_estimator): numerically stable for long windows with a large mean. */
void em_metric_est_add(em_metric_est *e, const double *q) {
    size_t d = e->dim;
    e->n++;
    double inv_n = 1.0 / (double)e->n;
    if (!e->dense) {
        for (size_t i = 0; i < d; i++) {
            double delta = q[i] - e->mean[i];
            e->mean[i] += delta * inv_n;
            e->m2[i] += delta * (q[i] - e->mean[i]);
        }
        return;
    }
    /* m2 += (q - mean_old)(q - mean_new)^T; delta_old is kept in a small stack buffer per
     * row pass so no allocation happens here. */
    for (size_t i = 0; i < d; i++) {
        double delta_i = q[i] - e->mean[i]; /* old mean */
        double new_mean_i = e->mean[i] + delta_i * inv_n;
        /* row i uses delta_i (old) times (q[j] - new mean_j); new means of j < i are already
         * updated, so compute theirs from the stored value, and j >= i from the old one. */
        for (size_t j = 0; j < d; j++) {
            double new_mean_j = j < i ? e->mean[j] : e->mean[j] + (q[j] - e->mean[j]) * inv_n;
            e->m2[i * d + j] += delta_i * (q[j] - new_mean_j);
        }
        e->mean[i] = new_mean_i;
    }
}

int em_metric_est_finish(const em_metric_est *e, double *out) {
    if (e->n < 2) return -1;
    size_t d = e->dim;
    double n = (double)e->n;
    double scale = n / (n + 5.0) / (n - 1.0);
    double ridge = 1e-3 * 5.0 / (n + 5.0);
    if (!e->dense) {
        for (size_t i = 0; i < d; i++) out[i] = scale * e->m2[i] + ridge;
        return 0;
    }
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++) {
            /* symmetrise: the Welford update is symmetric in exact arithmetic only */
            double s = 0.5 * (e->m2[i * d + j] + e->m2[j * d + i]);
            out[i * d + j] = scale * s + (i == j ? ridge : 0.0);
        }
    return 0;
}
