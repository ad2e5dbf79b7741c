/* diagnostics.c — R-hat, ESS, MCSE, quantiles, HPDI, E-BFMI and the summary table.
 * See diagnostics.h.
 *
 * The definitions follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021) as implemented
 * in the R package `posterior` 1.4 (R/convergence.R); where the paper leaves a choice open
 * (split-chain boundaries, the ranks' fractional offset, the truncation of the autocorrelation
 * sum, the ESS cap) the choice here is posterior's, so results agree to rounding. The code is
 * our own.
 */
#include "ember/diagnostics.h"
#include "internal/ess.h"

#include <float.h>
#include "internal/text.h"
#include "internal/sort.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_fft_halfcomplex.h>
#include <gsl/gsl_fft_real.h>

/* ---- small numeric helpers ------------------------------------------------------------- */

/* Mean with a long-double sum and one correction pass, as R's mean() does, so the values
 * that feed the variance and the autocovariance agree with posterior's to the last bits. */
static double mean_of(const double *x, size_t n) {
    long double s = 0.0L;
    for (size_t i = 0; i < n; i++) s += x[i];
    s /= (long double)n;
    long double t = 0.0L;
    for (size_t i = 0; i < n; i++) t += x[i] - s;
    s += t / (long double)n;
    return (double)s;
}

/* Sample variance (n - 1), two-pass. */
static double var_of(const double *x, size_t n) {
    if (n < 2) return NAN;
    double m = mean_of(x, n);
    long double s = 0.0L;
    for (size_t i = 0; i < n; i++) {
        long double d = (long double)x[i] - m;
        s += d * d;
    }
    return (double)(s / (long double)(n - 1));
}

static int all_finite(const double *x, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            if (bad) *bad = i;
            return 0;
        }
    return 1;
}

/* posterior's is_constant(): an absolute tolerance of machine epsilon on the range. */
static int is_constant(const double *x, size_t n) {
    double lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    return fabs(hi - lo) < DBL_EPSILON;
}

/* Type-7 quantile of an already sorted finite sample, written the way R's quantile.default
 * does it: interpolate only when the upper neighbour differs, so a quantile that falls on a
 * run of ties is exactly that tied value (the tail-ESS indicator x <= q depends on it). */
static double quantile_sorted(const double *s, size_t n, double p) {
    double index = (double)(n - 1) * p; /* 0-based */
    double lo = floor(index), hi = ceil(index);
    size_t ilo = (size_t)lo, ihi = (size_t)hi;
    if (ihi >= n) ihi = n - 1;
    double q = s[ilo];
    if (index > lo && s[ihi] != q) {
        double h = index - lo;
        q = (1.0 - h) * q + h * s[ihi];
    }
    return q;
}

static double *sorted_copy(const double *x, size_t n) {
    double *s = malloc(n * sizeof *s);
    if (!s) return NULL;
    memcpy(s, x, n * sizeof *s);
    em_sort_doubles(s, n);
    return s;
}

/* ---- the building blocks of posterior's .ess, .rhat, z_scale, .split_chains ----------- */

/* Split each chain in half (posterior's .split_chains): with ndraws odd the middle draw is
 * dropped, so both halves have floor(ndraws / 2) draws. Output is chain-major with 2*nchains
 * chains. */
static double *split_chains(const double *x, size_t nchains, size_t ndraws, size_t *half) {
    size_t h = ndraws / 2;
    double *out = malloc(2 * nchains * h * sizeof *out);
    if (!out) return NULL;
    for (size_t c = 0; c < nchains; c++) {
        const double *src = x + c * ndraws;
        memcpy(out + (2 * c) * h, src, h * sizeof *out);
        memcpy(out + (2 * c + 1) * h, src + (ndraws - h), h * sizeof *out);
    }
    *half = h;
    return out;
}

/* Rank normalisation in place (posterior's z_scale): average ranks over all draws of all
 * chains, then the normal quantile of (r - 3/8) / (S + 1/4) — Blom's offset, which the paper
 * recommends. Returns -1 when out of memory. */
static int z_scale(double *x, size_t S) {
    size_t *ord = malloc((S ? S : 1) * sizeof *ord);
    if (!ord || em_sort_order(x, S, ord) != 0) {
        free(ord);
        return -1;
    }
    const double c = 3.0 / 8.0;
    size_t j = 0;
    while (j < S) { /* a tie group j..k is read whole before any of it is overwritten */
        size_t k = j;
        double v = x[ord[j]];
        while (k + 1 < S && x[ord[k + 1]] == v) k++;
        double rank = 0.5 * ((double)(j + 1) + (double)(k + 1)); /* average over ties */
        double z = gsl_cdf_ugaussian_Pinv((rank - c) / ((double)S - 2.0 * c + 1.0));
        for (size_t m = j; m <= k; m++) x[ord[m]] = z;
        j = k + 1;
    }
    free(ord);
    return 0;
}

/* Autocovariance of one chain for lags 0..n-1 by FFT (Wiener–Khinchin): zero padding to a
 * power of two >= 2n turns the circular correlation into the linear one. Scaled as posterior
 * does, so lag 0 is the biased variance (divisor n). work has room for the padded length. */
static void autocovariance(const double *x, size_t n, double *ac, double *work, size_t m) {
    double varx = var_of(x, n);
    if (varx == 0.0) {
        for (size_t k = 0; k < n; k++) ac[k] = 0.0;
        return;
    }
    double mu = mean_of(x, n);
    for (size_t i = 0; i < n; i++) work[i] = x[i] - mu;
    for (size_t i = n; i < m; i++) work[i] = 0.0;
    gsl_fft_real_radix2_transform(work, 1, m);
    /* halfcomplex layout: work[0] and work[m/2] are real, work[k] / work[m-k] are the real and
     * imaginary parts of frequency k; replace each by its squared modulus */
    work[0] = work[0] * work[0];
    work[m / 2] = work[m / 2] * work[m / 2];
    for (size_t k = 1; k < m / 2; k++) {
        double re = work[k], im = work[m - k];
        work[k] = re * re + im * im;
        work[m - k] = 0.0;
    }
    gsl_fft_halfcomplex_radix2_inverse(work, 1, m);
    double scale = varx * (double)(n - 1) / (double)n / work[0];
    for (size_t k = 0; k < n; k++) ac[k] = work[k] * scale;
}

/* ESS of chain-major draws: Geyer's (1992) initial positive sequence on the combined
 * autocorrelation estimate of Vehtari et al. eq. (10), made monotone, and the ESS capped at
 * S log10(S) so antithetic chains cannot report absurd values. See internal/ess.h. */
double em_ess_geyer(const double *x, size_t nchains, size_t n, double acov_scale, em_error *err,
                    const char *fn) {
    if (n < 3) return NAN;
    size_t m = 1;
    while (m < 2 * n) m <<= 1;
    double *acov = malloc(n * sizeof *acov);
    double *ac = malloc(n * sizeof *ac);
    double *work = malloc(m * sizeof *work);
    double *cmean = malloc(nchains * sizeof *cmean);
    double *rho = calloc(n, sizeof *rho);
    double ess = NAN;
    if (!acov || !ac || !work || !cmean || !rho) {
        em_error_set(err, EM_ERR_NOMEM, "%s: out of memory for %zu chains of %zu draws", fn,
                     nchains, n);
        goto done;
    }
    for (size_t k = 0; k < n; k++) acov[k] = 0.0;
    for (size_t c = 0; c < nchains; c++) {
        autocovariance(x + c * n, n, ac, work, m);
        for (size_t k = 0; k < n; k++) acov[k] += ac[k];
        cmean[c] = mean_of(x + c * n, n);
    }
    for (size_t k = 0; k < n; k++) acov[k] = acov[k] / (double)nchains * acov_scale;

    double dn = (double)n;
    double mean_var = acov[0] * dn / (dn - 1.0);
    double var_plus = mean_var * (dn - 1.0) / dn;
    if (nchains > 1) var_plus += var_of(cmean, nchains);

    /* rho[t] estimates the lag-t autocorrelation; pairs (even, odd) are summed until a pair is
     * negative (Geyer's initial positive sequence). */
    size_t t = 0;
    double rho_even = 1.0;
    double rho_odd = 1.0 - (mean_var - acov[1]) / var_plus;
    rho[0] = rho_even;
    rho[1] = rho_odd;
    while (t + 5 < n && !isnan(rho_even + rho_odd) && rho_even + rho_odd > 0.0) {
        t += 2;
        rho_even = 1.0 - (mean_var - acov[t]) / var_plus;
        rho_odd = 1.0 - (mean_var - acov[t + 1]) / var_plus;
        if (rho_even + rho_odd >= 0.0) {
            rho[t] = rho_even;
            rho[t + 1] = rho_odd;
        }
    }
    size_t max_t = t;
    /* the last even lag still counts when positive, as a half pair */
    if (rho_even > 0.0) rho[max_t] = rho_even;
    /* Geyer's initial monotone sequence: pair sums may not increase */
    t = 0;
    while (t + 4 <= max_t) {
        t += 2;
        if (rho[t] + rho[t + 1] > rho[t - 2] + rho[t - 1]) {
            rho[t] = (rho[t - 2] + rho[t - 1]) / 2.0;
            rho[t + 1] = rho[t];
        }
    }
    double sum = 0.0;
    for (size_t k = 0; k < max_t; k++) sum += rho[k];
    /* posterior sums rho_hat_t[1:max_t] in R, and 1:0 is c(1, 0), so when the loop above never
     * ran (a very antithetic lag 1, or n < 6) that sum is rho[0]; reproduce it. */
    if (max_t == 0) sum = rho[0];
    double tau = -1.0 + 2.0 * sum + rho[max_t];
    double S = (double)nchains * dn;
    double tau_bound = 1.0 / log10(S);
    if (tau < tau_bound) tau = tau_bound;
    ess = S / tau;
done:
    free(acov);
    free(ac);
    free(work);
    free(cmean);
    free(rho);
    return ess;
}

/* posterior's .ess: NaN for fewer than 3 draws per chain and for constant input. */
static double ess_chains(const double *x, size_t nchains, size_t n, em_error *err, const char *fn) {
    if (n < 3) return NAN;
    if (!all_finite(x, nchains * n, NULL) || is_constant(x, nchains * n)) return NAN;
    return em_ess_geyer(x, nchains, n, 1.0, err, fn);
}

/* Split-R-hat of chain-major draws (posterior's .rhat), eq. (3)-(4) of Vehtari et al. */
static double rhat_chains(const double *x, size_t nchains, size_t n, em_error *err, const char *fn) {
    if (n < 2 || nchains < 2) return NAN;
    if (!all_finite(x, nchains * n, NULL) || is_constant(x, nchains * n)) return NAN;
    double *cmean = malloc(nchains * sizeof *cmean);
    if (!cmean) {
        em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
        return NAN;
    }
    double var_within = 0.0;
    for (size_t c = 0; c < nchains; c++) {
        cmean[c] = mean_of(x + c * n, n);
        var_within += var_of(x + c * n, n);
    }
    var_within /= (double)nchains;
    double var_between = (double)n * var_of(cmean, nchains);
    free(cmean);
    double dn = (double)n;
    return sqrt((var_between / var_within + dn - 1.0) / dn);
}

/* ---- argument checking shared by the public functions --------------------------------- */

/* 0 when the draws can be used; otherwise sets err (for bad arguments and non-finite draws)
 * and returns -1. */
static int check_draws(const double *d, size_t nchains, size_t ndraws, const char *fn,
                       em_error *err) {
    em_init(); /* GSL's abort handler off before any FFT */
    if (!d) {
        em_error_set(err, EM_ERR_ARG, "%s: draws is NULL", fn);
        return -1;
    }
    if (nchains == 0 || ndraws == 0) {
        em_error_set(err, EM_ERR_ARG, "%s: need at least one chain and one draw (nchains=%zu, ndraws=%zu)",
                     fn, nchains, ndraws);
        return -1;
    }
    if (nchains > SIZE_MAX / sizeof(double) / ndraws) {
        em_error_set(err, EM_ERR_ARG, "%s: %zu chains x %zu draws is too large", fn, nchains, ndraws);
        return -1;
    }
    size_t bad;
    if (!all_finite(d, nchains * ndraws, &bad)) {
        em_error_set(err, EM_ERR_NONFINITE, "%s: draw %zu of chain %zu is %g", fn, bad % ndraws,
                     bad / ndraws, d[bad]);
        return -1;
    }
    return 0;
}

/* ---- public: one parameter ------------------------------------------------------------- */

/* A statistic of split chains (ess_chains or rhat_chains), optionally after rank normalisation. */
typedef double (*chains_stat)(const double *s, size_t nchains, size_t n, em_error *err, const char *fn);

static double stat_of_split(const double *d, size_t nchains, size_t ndraws, int rank_normalise,
                            chains_stat stat, em_error *err, const char *fn) {
    size_t h;
    double *s = split_chains(d, nchains, ndraws, &h);
    if (!s) {
        em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
        return NAN;
    }
    double r = NAN;
    if (rank_normalise && z_scale(s, 2 * nchains * h) != 0)
        em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
    else
        r = stat(s, 2 * nchains, h, err, fn);
    free(s);
    return r;
}

static double ess_of_split(const double *d, size_t nchains, size_t ndraws, int rank_normalise,
                           em_error *err, const char *fn) {
    return stat_of_split(d, nchains, ndraws, rank_normalise, ess_chains, err, fn);
}

static double rhat_of_split(const double *d, size_t nchains, size_t ndraws, int rank_normalise,
                            em_error *err, const char *fn) {
    return stat_of_split(d, nchains, ndraws, rank_normalise, rhat_chains, err, fn);
}

double em_rhat_basic(const double *draws, size_t nchains, size_t ndraws, em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_rhat_basic", err)) return NAN;
    if (ndraws < 4) return NAN;
    return rhat_of_split(draws, nchains, ndraws, 0, err, "em_rhat_basic");
}

double em_rhat(const double *draws, size_t nchains, size_t ndraws, em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_rhat", err)) return NAN;
    if (ndraws < 4) return NAN;
    double bulk = rhat_of_split(draws, nchains, ndraws, 1, err, "em_rhat");
    if (isnan(bulk)) return NAN;
    /* folded draws |x - median| make R-hat see chains that differ in scale (paper, sec. 4.2) */
    size_t S = nchains * ndraws;
    double *f = sorted_copy(draws, S);
    if (!f) {
        em_error_set(err, EM_ERR_NOMEM, "em_rhat: out of memory");
        return NAN;
    }
    /* R's median: the mean of the two middle values for even S */
    double med = (S % 2) ? f[S / 2] : 0.5 * f[S / 2 - 1] + 0.5 * f[S / 2];
    for (size_t i = 0; i < S; i++) f[i] = fabs(draws[i] - med);
    double tail = rhat_of_split(f, nchains, ndraws, 1, err, "em_rhat");
    free(f);
    if (isnan(tail)) return NAN;
    return bulk > tail ? bulk : tail;
}

double em_ess_bulk(const double *draws, size_t nchains, size_t ndraws, em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_ess_bulk", err)) return NAN;
    return ess_of_split(draws, nchains, ndraws, 1, err, "em_ess_bulk");
}

double em_ess_basic(const double *draws, size_t nchains, size_t ndraws, em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_ess_basic", err)) return NAN;
    return ess_of_split(draws, nchains, ndraws, 0, err, "em_ess_basic");
}

/* ESS of the indicator I(x <= q_prob), with the quantile over all draws pooled. */
static double ess_quantile_checked(const double *draws, const double *sorted, size_t nchains,
                                   size_t ndraws, double prob, em_error *err, const char *fn) {
    size_t S = nchains * ndraws;
    if (is_constant(draws, S)) return NAN;
    /* posterior moves prob = 1 inside the sample so the indicator is not constant by design */
    if (prob == 1.0) prob = ((double)S - 0.5) / (double)S;
    double q = quantile_sorted(sorted, S, prob);
    double *ind = malloc(S * sizeof *ind);
    if (!ind) {
        em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
        return NAN;
    }
    for (size_t i = 0; i < S; i++) ind[i] = draws[i] <= q ? 1.0 : 0.0;
    double r = ess_of_split(ind, nchains, ndraws, 0, err, fn);
    free(ind);
    return r;
}

double em_ess_quantile(const double *draws, size_t nchains, size_t ndraws, double prob,
                       em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_ess_quantile", err)) return NAN;
    if (!(prob >= 0.0 && prob <= 1.0)) {
        em_error_set(err, EM_ERR_ARG, "em_ess_quantile: prob = %g is outside [0, 1]", prob);
        return NAN;
    }
    double *s = sorted_copy(draws, nchains * ndraws);
    if (!s) {
        em_error_set(err, EM_ERR_NOMEM, "em_ess_quantile: out of memory");
        return NAN;
    }
    double r = ess_quantile_checked(draws, s, nchains, ndraws, prob, err, "em_ess_quantile");
    free(s);
    return r;
}

static double ess_tail_sorted(const double *draws, const double *sorted, size_t nchains,
                              size_t ndraws, em_error *err, const char *fn) {
    double lo = ess_quantile_checked(draws, sorted, nchains, ndraws, 0.05, err, fn);
    double hi = ess_quantile_checked(draws, sorted, nchains, ndraws, 0.95, err, fn);
    if (isnan(lo) || isnan(hi)) return NAN;
    return lo < hi ? lo : hi;
}

double em_ess_tail(const double *draws, size_t nchains, size_t ndraws, em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_ess_tail", err)) return NAN;
    double *s = sorted_copy(draws, nchains * ndraws);
    if (!s) {
        em_error_set(err, EM_ERR_NOMEM, "em_ess_tail: out of memory");
        return NAN;
    }
    double r = ess_tail_sorted(draws, s, nchains, ndraws, err, "em_ess_tail");
    free(s);
    return r;
}

double em_mcse_mean(const double *draws, size_t nchains, size_t ndraws, em_error *err) {
    if (check_draws(draws, nchains, ndraws, "em_mcse_mean", err)) return NAN;
    double ess = ess_of_split(draws, nchains, ndraws, 0, err, "em_mcse_mean");
    return sqrt(var_of(draws, nchains * ndraws)) / sqrt(ess);
}

/* ---- public: plain samples ------------------------------------------------------------- */

double em_quantile(const double *x, size_t n, double p) {
    if (!x || n == 0 || !(p >= 0.0 && p <= 1.0)) return NAN;
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i])) return NAN;
    double *s = sorted_copy(x, n);
    if (!s) return NAN;
    double q = quantile_sorted(s, n, p);
    free(s);
    return q;
}

em_status em_quantiles(const double *x, size_t n, const double *probs, size_t k, double *out, em_error *err) {
    if (!x || n == 0 || !probs || !out) return em_error_set(err, EM_ERR_ARG, "em_quantiles: no sample, probabilities or output");
    for (size_t j = 0; j < k; j++)
        if (!(probs[j] >= 0.0 && probs[j] <= 1.0))
            return em_error_set(err, EM_ERR_ARG, "em_quantiles: probs[%zu] = %g is outside [0, 1]", j, probs[j]);
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i])) return em_error_set(err, EM_ERR_NONFINITE, "em_quantiles: x[%zu] is NaN", i);
    double *s = sorted_copy(x, n);
    if (!s) return em_error_set(err, EM_ERR_NOMEM, "em_quantiles: out of memory for %zu values", n);
    for (size_t j = 0; j < k; j++) out[j] = quantile_sorted(s, n, probs[j]);
    free(s);
    return EM_OK;
}

double em_mean(const double *x, size_t n) {
    if (!x || n == 0) return NAN;
    return mean_of(x, n);
}

double em_sd(const double *x, size_t n) {
    if (!x || n < 2) return NAN;
    return sqrt(var_of(x, n));
}

em_status em_hpdi(const double *x, size_t n, double prob, double *lo, double *hi, em_error *err) {
    if (lo) *lo = NAN;
    if (hi) *hi = NAN;
    if (!x || !lo || !hi)
        return em_error_set(err, EM_ERR_ARG, "em_hpdi: x, lo and hi must not be NULL");
    if (n == 0) return em_error_set(err, EM_ERR_ARG, "em_hpdi: no draws (n = 0)");
    if (!(prob > 0.0 && prob <= 1.0))
        return em_error_set(err, EM_ERR_ARG, "em_hpdi: prob = %g is outside (0, 1]", prob);
    size_t bad;
    if (!all_finite(x, n, &bad))
        return em_error_set(err, EM_ERR_NONFINITE, "em_hpdi: draw %zu is %g", bad, x[bad]);
    double *s = sorted_copy(x, n);
    if (!s) return em_error_set(err, EM_ERR_NOMEM, "em_hpdi: out of memory for %zu draws", n);
    /* the small slack keeps prob * n = 90.000000000001 from asking for one draw too many */
    size_t k = (size_t)ceil(prob * (double)n - 1e-9);
    if (k < 1) k = 1;
    if (k > n) k = n;
    size_t best = 0;
    double width = s[k - 1] - s[0];
    for (size_t i = 1; i + k <= n; i++) {
        double w = s[i + k - 1] - s[i];
        if (w < width) {
            width = w;
            best = i;
        }
    }
    *lo = s[best];
    *hi = s[best + k - 1];
    free(s);
    return EM_OK;
}

double em_ebfmi(const double *energy, size_t n) {
    if (!energy || n < 2 || !all_finite(energy, n, NULL)) return NAN;
    double mu = mean_of(energy, n);
    long double num = 0.0L, den = 0.0L;
    for (size_t i = 0; i < n; i++) {
        long double d = (long double)energy[i] - mu;
        den += d * d;
        if (i > 0) {
            long double e = (long double)energy[i] - energy[i - 1];
            num += e * e;
        }
    }
    if (den == 0.0L) return NAN;
    return (double)(num / den);
}

size_t em_count_nonzero(const double *x, size_t n) {
    size_t k = 0;
    if (!x) return 0;
    for (size_t i = 0; i < n; i++) k += x[i] != 0.0;
    return k;
}

size_t em_count_ge(const double *x, size_t n, double threshold) {
    size_t k = 0;
    if (!x) return 0;
    for (size_t i = 0; i < n; i++) k += x[i] >= threshold;
    return k;
}

/* ---- the summary table ----------------------------------------------------------------- */

void em_summary_free(em_summary *s) {
    if (!s) return;
    if (s->params)
        for (size_t p = 0; p < s->nparams; p++) free(s->params[p].name);
    free(s->params);
    free(s);
}

static char *dup_name(const char *const *names, size_t p) {
    char tmp[32];
    const char *src = names && names[p] ? names[p] : NULL;
    if (!src) {
        snprintf(tmp, sizeof tmp, "p[%zu]", p + 1);
        src = tmp;
    }
    size_t len = strlen(src);
    char *d = malloc(len + 1);
    if (d) memcpy(d, src, len + 1);
    return d;
}

static void summary_nan(em_param_summary *ps) {
    ps->mean = ps->sd = ps->median = ps->q5 = ps->q95 = NAN;
    ps->ess_bulk = ps->ess_tail = ps->rhat = ps->mcse_mean = NAN;
}

/* One parameter's columns from its chain-major draws (finite, checked by the caller). */
static void summarize_one(const double *x, size_t nchains, size_t ndraws, int independent, em_param_summary *ps,
                          em_error *err) {
    size_t S = nchains * ndraws;
    double *s = sorted_copy(x, S);
    if (!s) {
        em_error_set(err, EM_ERR_NOMEM, "em_summarize: out of memory for parameter '%s'", ps->name);
        return;
    }
    ps->mean = mean_of(x, S);
    ps->sd = S > 1 ? sqrt(var_of(x, S)) : NAN;
    ps->median = quantile_sorted(s, S, 0.5);
    ps->q5 = quantile_sorted(s, S, 0.05);
    ps->q95 = quantile_sorted(s, S, 0.95);
    if (independent) {
        ps->mcse_mean = ps->sd / sqrt((double)S); /* independent draws: ESS is S */
    } else if (ndraws >= 4) {
        ps->rhat = em_rhat(x, nchains, ndraws, err);
        ps->ess_bulk = ess_of_split(x, nchains, ndraws, 1, err, "em_summarize");
        ps->ess_tail = ess_tail_sorted(x, s, nchains, ndraws, err, "em_summarize");
        double ess_mean = ess_of_split(x, nchains, ndraws, 0, err, "em_summarize");
        ps->mcse_mean = ps->sd / sqrt(ess_mean);
    }
    free(s);
}

static em_status summarize_all(const double *draws, size_t nchains, size_t ndraws, size_t nparams,
                               const char *const *names, em_draws_layout layout, int independent, em_summary **out,
                               em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_summarize: out is NULL");
    *out = NULL;
    if (!draws && nparams > 0) return em_error_set(err, EM_ERR_ARG, "em_summarize: draws is NULL");
    if (nchains == 0 || ndraws == 0)
        return em_error_set(err, EM_ERR_ARG,
                            "em_summarize: need at least one chain and one draw (nchains=%zu, ndraws=%zu)",
                            nchains, ndraws);
    if (layout != EM_LAYOUT_CHAIN_DRAW_PARAM && layout != EM_LAYOUT_PARAM_CHAIN_DRAW)
        return em_error_set(err, EM_ERR_ARG, "em_summarize: unknown layout %d", (int)layout);
    size_t S = nchains * ndraws;
    if (nchains > SIZE_MAX / ndraws || (nparams > 0 && S > SIZE_MAX / sizeof(double) / nparams))
        return em_error_set(err, EM_ERR_ARG, "em_summarize: %zu chains x %zu draws x %zu parameters is too large",
                            nchains, ndraws, nparams);
    em_init(); /* GSL's abort handler off before any FFT */

    em_summary *sum = calloc(1, sizeof *sum);
    double *buf = malloc((S ? S : 1) * sizeof *buf);
    if (!sum || (nparams && !(sum->params = calloc(nparams, sizeof *sum->params))) || !buf) {
        free(buf);
        em_summary_free(sum);
        return em_error_set(err, EM_ERR_NOMEM, "em_summarize: out of memory for %zu parameters", nparams);
    }
    sum->nparams = nparams;
    sum->nchains = nchains;
    sum->ndraws = ndraws;
    sum->independent = independent;
    /* Errors local to one parameter go to perr; the first one is copied to err, and the other
     * parameters are still summarised. */
    em_status status = EM_OK;
    for (size_t p = 0; p < nparams; p++) {
        em_param_summary *ps = &sum->params[p];
        summary_nan(ps);
        ps->name = dup_name(names, p);
        if (!ps->name) {
            status = em_error_set(err, EM_ERR_NOMEM, "em_summarize: out of memory for the name of parameter %zu", p);
            continue;
        }
        if (layout == EM_LAYOUT_CHAIN_DRAW_PARAM) {
            for (size_t k = 0; k < S; k++) buf[k] = draws[k * nparams + p];
        } else {
            memcpy(buf, draws + p * S, S * sizeof *buf);
        }
        size_t bad;
        if (!all_finite(buf, S, &bad)) {
            em_status st = em_error_set(err, EM_ERR_NONFINITE,
                                        "em_summarize: parameter '%s' (index %zu): draw %zu of chain %zu is %g",
                                        ps->name, p, bad % ndraws, bad / ndraws, buf[bad]);
            if (status == EM_OK) status = st;
            continue;
        }
        em_error perr = {0};
        summarize_one(buf, nchains, ndraws, independent, ps, &perr);
        if (perr.status != EM_OK) {
            em_error_set(err, perr.status, "em_summarize: parameter '%s': %s", ps->name, perr.msg);
            if (status == EM_OK) status = perr.status;
        }
        if (!independent && ndraws < 4 && status == EM_OK)
            status = em_error_set(err, EM_ERR_ARG,
                                  "em_summarize: parameter '%s': %zu draws per chain; R-hat and ESS need at least 4",
                                  ps->name, ndraws);
    }
    free(buf);
    *out = sum;
    return status;
}

em_status em_summarize(const double *draws, size_t nchains, size_t ndraws, size_t nparams,
                       const char *const *names, em_draws_layout layout, em_summary **out,
                       em_error *err) {
    return summarize_all(draws, nchains, ndraws, nparams, names, layout, 0, out, err);
}

em_status em_summarize_independent(const double *draws, size_t ndraws, size_t nparams, const char *const *names,
                                   em_draws_layout layout, em_summary **out, em_error *err) {
    return summarize_all(draws, 1, ndraws, nparams, names, layout, 1, out, err);
}

/* A number in `digits` significant digits without switching to exponent notation for the
 * magnitudes a posterior table usually holds (1e-4 to 1e6). */
static void fmt_sig(char *dst, size_t cap, double v, int digits) {
    if (em_text_nonfinite(dst, cap, v)) return;
    double a = fabs(v);
    if (a == 0.0) {
        snprintf(dst, cap, "0");
        return;
    }
    if (a >= 1e-4 && a < 1e6) {
        int e = (int)floor(log10(a));
        int dec = digits - 1 - e;
        if (dec < 0) dec = 0;
        snprintf(dst, cap, "%.*f", dec, v);
        return;
    }
    snprintf(dst, cap, "%.*e", digits - 1, v);
}

#define NCOLS 10
#define CELL 48

em_status em_summary_print(FILE *f, const em_summary *s, int digits, em_error *err) {
    if (!f || !s) return em_error_set(err, EM_ERR_ARG, "em_summary_print: f and s must not be NULL");
    if (digits <= 0) digits = 3;
    if (digits > 17) digits = 17;
    static const char *const head[NCOLS] = {"name", "mean", "mcse", "sd", "5%", "50%", "95%",
                                            "ess_bulk", "ess_tail", "r_hat"};
    /* independent draws (a guide's) have no chains: R-hat and ESS would be noise */
    const int ncols = s->independent ? NCOLS - 3 : NCOLS;
    size_t w[NCOLS];
    for (int c = 0; c < NCOLS; c++) w[c] = strlen(head[c]);
    char(*cells)[NCOLS][CELL] = NULL;
    if (s->nparams) {
        cells = malloc(s->nparams * sizeof *cells);
        if (!cells) return em_error_set(err, EM_ERR_NOMEM, "em_summary_print: out of memory");
    }
    for (size_t p = 0; p < s->nparams; p++) {
        const em_param_summary *ps = &s->params[p];
        double loc[6] = {ps->mean, ps->mcse_mean, ps->sd, ps->q5, ps->median, ps->q95};
        for (int c = 0; c < 6; c++) fmt_sig(cells[p][c + 1], CELL, loc[c], digits);
        double ess[2] = {ps->ess_bulk, ps->ess_tail};
        for (int c = 0; c < 2; c++) {
            if (isfinite(ess[c])) snprintf(cells[p][c + 7], CELL, "%.0f", ess[c]);
            else fmt_sig(cells[p][c + 7], CELL, ess[c], digits);
        }
        if (isfinite(ps->rhat)) snprintf(cells[p][9], CELL, "%.3f", ps->rhat);
        else fmt_sig(cells[p][9], CELL, ps->rhat, digits);
        size_t nl = ps->name ? strlen(ps->name) : 2;
        if (nl > w[0]) w[0] = nl;
        for (int c = 1; c < ncols; c++)
            if (strlen(cells[p][c]) > w[c]) w[c] = strlen(cells[p][c]);
    }
    int ok = fprintf(f, "%-*s", (int)w[0], head[0]) >= 0;
    for (int c = 1; c < ncols; c++) ok = ok && fprintf(f, "  %*s", (int)w[c], head[c]) >= 0;
    ok = ok && fputc('\n', f) != EOF;
    for (size_t p = 0; p < s->nparams && ok; p++) {
        const char *nm = s->params[p].name ? s->params[p].name : "NA";
        ok = fprintf(f, "%-*s", (int)w[0], nm) >= 0;
        for (int c = 1; c < ncols; c++) ok = ok && fprintf(f, "  %*s", (int)w[c], cells[p][c]) >= 0;
        ok = ok && fputc('\n', f) != EOF;
    }
    free(cells);
    if (!ok) return em_error_set(err, EM_ERR_IO, "em_summary_print: write failed");
    return EM_OK;
}

static void csv_num(em_buf *b, double v, int digits) {
    if (isnan(v)) em_buf_printf(b, ",NaN");
    else if (isinf(v)) em_buf_printf(b, v > 0 ? ",Inf" : ",-Inf");
    else em_buf_printf(b, ",%.*g", digits, v);
}

em_status em_summary_to_csv(const em_summary *s, em_buf *out, int digits, em_error *err) {
    if (!s || !out) return em_error_set(err, EM_ERR_ARG, "em_summary_to_csv: s and out must not be NULL");
    if (digits <= 0 || digits > 17) digits = 17;
    /* mcse_mean last, so that readers of the older columns by position keep working */
    em_buf_printf(out, s->independent ? "param,mean,sd,q5,q50,q95,mcse_mean\n"
                                      : "param,mean,sd,q5,q50,q95,ess_bulk,ess_tail,r_hat,mcse_mean\n");
    for (size_t p = 0; p < s->nparams; p++) {
        const em_param_summary *ps = &s->params[p];
        const char *nm = ps->name ? ps->name : "";
        if (strpbrk(nm, ",\"\n\r")) {
            /* RFC 4180: quote the field and double any quote inside it */
            em_buf_append(out, "\"", 1);
            for (const char *c = nm; *c; c++) {
                if (*c == '"') em_buf_append(out, "\"\"", 2);
                else em_buf_append(out, c, 1);
            }
            em_buf_append(out, "\"", 1);
        } else {
            em_buf_append(out, nm, strlen(nm));
        }
        csv_num(out, ps->mean, digits);
        csv_num(out, ps->sd, digits);
        csv_num(out, ps->q5, digits);
        csv_num(out, ps->median, digits);
        csv_num(out, ps->q95, digits);
        if (!s->independent) {
            csv_num(out, ps->ess_bulk, digits);
            csv_num(out, ps->ess_tail, digits);
            csv_num(out, ps->rhat, digits);
        }
        csv_num(out, ps->mcse_mean, digits);
        em_buf_printf(out, "\n");
    }
    if (out->failed) return em_error_set(err, EM_ERR_NOMEM, "em_summary_to_csv: out of memory");
    return EM_OK;
}
