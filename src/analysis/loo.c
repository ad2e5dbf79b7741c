/* loo.c — PSIS, PSIS-LOO, WAIC, comparison, LOO-PIT. See loo.h.
 *
 * Every estimate follows the R package loo 2.5.1 (R/psis.R, R/gpdfit.R, R/loo.R,
 * R/effective_sample_sizes.R, R/waic.R, R/loo_compare.R, R/print.R): where the papers leave a
 * choice open (the tail length, the grid of the Zhang–Stephens fit, the prior, the MCSE's
 * normal approximation) the choice is loo's, so results agree to rounding. The code is our own.
 */
#include "ember/loo.h"

#include "internal/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>

#include "ember/diagnostics.h"
#include "internal/ess.h"
#include "internal/tape.h"
#include "internal/vecsum.h"
#include "internal/sort.h"

/* ---- small helpers -------------------------------------------------------------------------- */

/* Smallest and largest of x (n >= 1, no NaN), on four lanes: one running maximum is a chain of
 * dependent instructions, and these passes over the S draws run several times per observation. */
static void range_of(const double *x, size_t n, double *lo, double *hi) {
    double a[4] = {x[0], x[0], x[0], x[0]}, b[4] = {x[0], x[0], x[0], x[0]};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) {
            a[k] = x[i + k] < a[k] ? x[i + k] : a[k];
            b[k] = x[i + k] > b[k] ? x[i + k] : b[k];
        }
    for (; i < n; i++) {
        a[0] = x[i] < a[0] ? x[i] : a[0];
        b[0] = x[i] > b[0] ? x[i] : b[0];
    }
    *lo = fmin(fmin(a[0], a[1]), fmin(a[2], a[3]));
    *hi = fmax(fmax(b[0], b[1]), fmax(b[2], b[3]));
}

static double log_sum_exp(const double *x, size_t n) {
    double lo, m;
    range_of(x, n, &lo, &m);
    if (!isfinite(m)) return m;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += exp(x[i] - m);
    return m + log(s);
}

/* A value with its index, ordered by value and then index: the order of R's stable sort, which
 * decides which of several tied ratios receive which smoothed value. */
typedef struct keyed {
    double v;
    size_t i;
} keyed;

static int keyed_less(const keyed *a, const keyed *b) {
    return a->v < b->v || (a->v == b->v && a->i < b->i);
}

/* The value of rank r (0-based, ascending) of x[0..n), rearranging x (Hoare's selection,
 * expected O(n)): PSIS needs only the top M + 1 ratios in order, and selecting them instead of
 * sorting all S is most of its speed. */
static double select_rank(double *x, size_t n, size_t r) {
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double p = x[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        for (;;) {
            while (x[i] < p) i++;
            while (p < x[j]) j--;
            if (i >= j) break;
            double t = x[i];
            x[i] = x[j];
            x[j] = t;
            i++;
            j--;
        }
        if (r <= j) hi = j;
        else lo = j + 1;
    }
    return x[r];
}

/* The value of rank S - M - 1 (the largest below the M largest) of v, using x (S) as scratch.
 * Every 8th value first gives a threshold a little below it; the values at or above that
 * threshold (typically 1.3 M + 128 of them) then hold the answer at a known rank, so the full
 * selection runs on a tenth of the draws. When the sample misjudges, all S are selected. */
static double top_cutoff(const double *v, size_t S, size_t M, double *x) {
    size_t ns = S / 8, want = (M + 1) + (M + 1) * 3 / 10 + 128; /* values to keep, with a margin */
    if (want / 8 + 1 < ns) {
        for (size_t j = 0; j < ns; j++) x[j] = v[8 * j];
        double t = select_rank(x, ns, ns - (want / 8 + 1));
        size_t c = 0;
        for (size_t s = 0; s < S; s++) { /* branch-free: the test is true for one value in ten */
            x[c] = v[s];
            c += v[s] >= t;
        }
        if (c >= M + 1) return select_rank(x, c, c - M - 1);
    }
    memcpy(x, v, S * sizeof *x);
    return select_rank(x, S, S - M - 1);
}

/* Merge sort of k[0..n) in (value, index) order, tmp holding n more; inline comparisons. */
static void sort_keyed(keyed *k, size_t n, keyed *tmp) {
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) tmp[o++] = keyed_less(&k[j], &k[i]) ? k[j++] : k[i++];
            while (i < mid) tmp[o++] = k[i++];
            while (j < hi) tmp[o++] = k[j++];
        }
        memcpy(k, tmp, n * sizeof *k);
    }
}

/* loo's fft_next_good_size: the least N' >= N whose prime factors are 2, 3 and 5 (2 for N <= 2). */
static size_t fft_next_good_size(size_t n) {
    if (n <= 2) return 2;
    for (;; n++) {
        size_t m = n;
        while (m % 2 == 0) m /= 2;
        while (m % 3 == 0) m /= 3;
        while (m % 5 == 0) m /= 5;
        if (m <= 1) return n;
    }
}

/* Check and count the chains; fills chain_of (S) with 0-based chain indices. */
static em_status chains_of(size_t S, const int *chain_id, size_t nchains, size_t *C, size_t *per,
                           size_t *chain_of, const char *fn, em_error *err) {
    if (!chain_id) {
        if (nchains == 0) nchains = 1;
        if (S % nchains != 0)
            return em_error_set(err, EM_ERR_SHAPE, "%s: %zu draws do not split into %zu equal chains", fn,
                                S, nchains);
        for (size_t s = 0; s < S; s++) chain_of[s] = s / (S / nchains);
        *C = nchains;
        *per = S / nchains;
        return EM_OK;
    }
    int maxid = 0;
    for (size_t s = 0; s < S; s++) {
        if (chain_id[s] < 1 || (size_t)chain_id[s] > S)
            return em_error_set(err, EM_ERR_INDEX, "%s: chain_id[%zu] = %d is not in 1..%zu", fn, s,
                                chain_id[s], S);
        if (chain_id[s] > maxid) maxid = chain_id[s];
    }
    size_t *count = calloc((size_t)maxid, sizeof *count);
    if (!count) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t s = 0; s < S; s++) count[chain_id[s] - 1]++;
    em_status st = EM_OK;
    for (int c = 0; c < maxid && st == EM_OK; c++)
        if (count[c] != count[0])
            st = em_error_set(err, EM_ERR_SHAPE,
                              "%s: chain %d has %zu draws and chain 1 has %zu; chains must be equally long "
                              "and every id in 1..%d used",
                              fn, c + 1, count[c], count[0], maxid);
    free(count);
    if (st != EM_OK) return st;
    for (size_t s = 0; s < S; s++) chain_of[s] = (size_t)(chain_id[s] - 1);
    *C = (size_t)maxid;
    *per = S / (size_t)maxid;
    return EM_OK;
}

static em_status check_matrix(const double *x, size_t S, size_t N, const char *fn, em_error *err) {
    if (!x) return em_error_set(err, EM_ERR_ARG, "%s: log_lik is NULL", fn);
    if (S == 0 || N == 0)
        return em_error_set(err, EM_ERR_ARG, "%s: need at least one draw and one observation (S=%zu, N=%zu)",
                            fn, S, N);
    if (S > SIZE_MAX / sizeof(double) / N)
        return em_error_set(err, EM_ERR_ARG, "%s: %zu x %zu is too large", fn, S, N);
    for (size_t k = 0; k < S * N; k++)
        if (!isfinite(x[k]))
            return em_error_set(err, EM_ERR_NONFINITE, "%s: log_lik of observation %zu under draw %zu is %g", fn,
                                k % N, k / N, x[k]);
    return EM_OK;
}

/* Copy columns i0 .. i0+B of the S x N row-major matrix into B contiguous columns: a row's B
 * neighbours share cache lines, so the matrix is read once in order however large N is. */
enum { BLOCK = 32 };
static void gather(const double *x, size_t S, size_t N, size_t i0, size_t B, double *cols) {
    enum { AHEAD = 16 }; /* rows are a page or more apart: the hardware does not prefetch them */
    for (size_t s = 0; s < S; s++) {
        const double *row = x + s * N + i0;
        if (s + AHEAD < S)
            for (size_t j = 0; j < B; j += 8) __builtin_prefetch(row + AHEAD * N + j);
        for (size_t j = 0; j < B; j++) cols[j * S + s] = row[j];
    }
}

/* ---- the generalized Pareto fit --------------------------------------------------------------- */

/* sum_i log(1 - θ x_i) for x ascending, with one log per 16 factors instead of a log1p per term:
 * the fit's profile likelihood needs this sum at about 45 grid points per observation, and with
 * a log1p each it was most of PSIS's time. Rounding 1 - θ x costs an absolute 1e-16 per term,
 * which is negligible beside the sum unless every θ x is small: then (|θ| x_max < 0.01), or when
 * a product of 16 leaves the range of doubles (tails spanning e^40), the terms go through log1p. */
static double sum_log1m(double th, const double *x, size_t n) {
    double s = 0.0;
    size_t i = 0;
    if (fabs(th) * x[n - 1] >= 0.01) {
        for (; i + 16 <= n; i += 16) {
            double f[16];
            for (int q = 0; q < 16; q++) f[q] = 1.0 - th * x[i + q];
            for (int h = 8; h >= 1; h /= 2) /* a product tree: four levels of independent multiplies */
                for (int q = 0; q < h; q++) f[q] *= f[q + h];
            if (!(f[0] > 1e-300 && f[0] < 1e300)) break;
            s += log(f[0]);
        }
    }
    for (; i < n; i++) s += log1p(-th * x[i]);
    return s;
}

/* loo's gpdfit on sorted x (ascending). -1 when out of memory. */
static int gpdfit_sorted(const double *x, size_t n, int wip, double *k_out, double *sigma_out) {
    const double prior = 3.0;
    size_t M = 30 + (size_t)floor(sqrt((double)n));
    /* x[floor(n/4 + 0.5)] in R's 1-based indexing: the first quartile */
    size_t q = (size_t)floor((double)n / 4.0 + 0.5);
    double xstar = x[q >= 1 ? q - 1 : 0];
    double *th = malloc(2 * M * sizeof *th);
    if (!th) return -1;
    double *lt = th + M;
    double dn = (double)n, lmax = -INFINITY;
    for (size_t j = 0; j < M; j++) {
        th[j] = 1.0 / x[n - 1] + (1.0 - sqrt((double)M / ((double)(j + 1) - 0.5))) / prior / xstar;
        /* profile log-likelihood of θ (Zhang & Stephens eq. 3): k(θ) = mean log(1 - θ x) */
        double kj = sum_log1m(th[j], x, n) / dn;
        lt[j] = dn * (log(-th[j] / kj) - kj - 1.0);
        if (lt[j] > lmax) lmax = lt[j];
    }
    /* the posterior weights of the grid points, normalised as exp(l - logsumexp(l)) */
    double ws = 0.0;
    for (size_t j = 0; j < M; j++) ws += exp(lt[j] - lmax);
    double lse = lmax + log(ws);
    double theta_hat = 0.0;
    for (size_t j = 0; j < M; j++) theta_hat += th[j] * exp(lt[j] - lse);
    free(th);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += log1p(-theta_hat * x[i]);
    double k = s / dn;
    double sigma = -k / theta_hat;
    /* the weakly informative prior: k's estimate as if 10 more draws had k = 0.5 */
    if (wip) k = k * dn / (dn + 10.0) + 10.0 * 0.5 / (dn + 10.0);
    if (isnan(k)) k = INFINITY;
    *k_out = k;
    *sigma_out = sigma;
    return 0;
}

em_status em_gpdfit(const double *x, size_t n, int wip, double *k, double *sigma, em_error *err) {
    if (k) *k = NAN;
    if (sigma) *sigma = NAN;
    if (!x || !k || !sigma) return em_error_set(err, EM_ERR_ARG, "em_gpdfit: x, k and sigma must not be NULL");
    if (n == 0) return em_error_set(err, EM_ERR_ARG, "em_gpdfit: no values (n = 0)");
    for (size_t i = 0; i < n; i++)
        if (!(isfinite(x[i]) && x[i] >= 0.0))
            return em_error_set(err, EM_ERR_DOMAIN, "em_gpdfit: x[%zu] = %g is not a finite exceedance (>= 0)",
                                i, x[i]);
    double *s = malloc(n * sizeof *s);
    if (!s) return em_error_set(err, EM_ERR_NOMEM, "em_gpdfit: out of memory for %zu values", n);
    memcpy(s, x, n * sizeof *s);
    em_sort_doubles(s, n);
    int rc = gpdfit_sorted(s, n, wip, k, sigma);
    free(s);
    if (rc) return em_error_set(err, EM_ERR_NOMEM, "em_gpdfit: out of memory for %zu values", n);
    return EM_OK;
}

double em_psis_k_threshold(size_t S) {
    double t = 1.0 - 1.0 / log10((double)S);
    return t < 0.7 ? t : 0.7;
}

/* ---- PSIS -------------------------------------------------------------------------------------- */

static size_t tail_length(size_t S, double r_eff) {
    double a = 0.2 * (double)S, b = 3.0 * sqrt((double)S / r_eff);
    return (size_t)ceil(a < b ? a : b);
}

/* Elementwise kernels on restrict parameters in blocks of four, which GCC vectorises at -O2
 * (internal/tape.h, EM_VEC_FOR). */
static void divide_kernel(double *restrict x, double c, const double *restrict by, size_t n) {
    EM_VEC_FOR(i, n, x[i] = c / by[i];);
}

static void normalise_kernel(double *restrict lw, double *restrict w, double lse, double inv, size_t n) {
    EM_VEC_FOR(i, n, lw[i] -= lse; w[i] *= inv;);
}

/* PSIS of one column lw (S values whose largest is 0; overwritten by the normalised log weights).
 * keys and x: S scratch values each; on return x holds the normalised weights themselves (exp
 * of lw), so callers need no second pass of exp. When lik is not NULL it holds
 * exp(lik_shift - lw[s]) (em_loo's scaled likelihoods, whose inverses are the raw weights): the
 * weights of the draws outside the tail are then divisions instead of exps. The checks are the
 * caller's; -1 when out of memory. */
static int psis_column(double *lw, size_t S, double r_eff, keyed *keys, double *x, const double *lik,
                       double lik_shift, em_psis_diag *d) {
    size_t M = tail_length(S, r_eff);
    double k = INFINITY;
    /* S > 20 makes M >= 5, loo's minimum tail */
    double cutoff = top_cutoff(lw, S, M, x);
    /* the tail: every ratio above the cutoff, then the ties with it of highest index (those R's
     * stable sort ranks last), in the (value, index) order of that sort */
    size_t nt = 0;
    for (size_t s = 0; s < S; s++) {
        keys[nt] = (keyed){lw[s], s};
        nt += lw[s] > cutoff;
    }
    for (size_t s = S; s-- > 0 && nt < M;)
        if (lw[s] == cutoff) keys[nt++] = (keyed){lw[s], s};
    keyed *tail = keys;
    sort_keyed(tail, M, keys + M);
    /* loo compares the tail's range with machine epsilon / 100 to call it constant */
    if (fabs(tail[M - 1].v - tail[0].v) >= 2.220446049250313e-16 / 100.0) {
        double exp_cutoff = exp(cutoff);
        for (size_t j = 0; j < M; j++) x[j] = exp(tail[j].v) - exp_cutoff;
        double sigma;
        if (gpdfit_sorted(x, M, 1, &k, &sigma)) return -1;
        if (isfinite(k)) {
            /* the tail becomes the GPD's quantiles at (j - 1/2) / M: its expected order
             * statistics, so the tail keeps its shape but loses its noise */
            for (size_t j = 0; j < M; j++) {
                double p = ((double)(j + 1) - 0.5) / (double)M;
                double q = (sigma > 0.0) ? sigma * expm1(-k * log1p(-p)) / k : NAN;
                lw[tail[j].i] = log(q + exp_cutoff);
            }
        }
    }
    /* truncation at the largest raw weight (log ratio 0): only the tail can exceed it, and the
     * draws outside the tail are at most the cutoff */
    double top_lw = cutoff;
    for (size_t j = 0; j < M; j++) {
        double *v = &lw[tail[j].i];
        if (*v > 0.0) *v = 0.0;
        if (*v > top_lw) top_lw = *v;
    }
    if (lik) {
        divide_kernel(x, exp(lik_shift - top_lw), lik, S);
        for (size_t j = 0; j < M; j++) x[tail[j].i] = exp(lw[tail[j].i] - top_lw);
    } else {
        for (size_t s = 0; s < S; s++) x[s] = exp(lw[s] - top_lw);
    }
    double sw = em_sum_vec(x, S);
    normalise_kernel(lw, x, top_lw + log(sw), 1.0 / sw, S);
    d->pareto_k = k;
    d->tail_len = M;
    d->n_eff = r_eff / em_dot_vec(x, x, S);
    return 0;
}

em_status em_psis(const double *log_ratios, size_t S, double r_eff, double *log_weights,
                  em_psis_diag *diag, em_error *err) {
    if (!log_ratios || !log_weights)
        return em_error_set(err, EM_ERR_ARG, "em_psis: log_ratios and log_weights must not be NULL");
    if (S <= 20)
        return em_error_set(err, EM_ERR_ARG,
                            "em_psis: %zu draws are too few: the Pareto tail needs 5 of the largest 20%%, so S > 20",
                            S);
    if (!(r_eff > 0.0 && isfinite(r_eff)))
        return em_error_set(err, EM_ERR_ARG, "em_psis: r_eff = %g is not a positive number", r_eff);
    for (size_t s = 0; s < S; s++)
        if (!isfinite(log_ratios[s]))
            return em_error_set(err, EM_ERR_NONFINITE, "em_psis: log_ratios[%zu] is %g", s, log_ratios[s]);
    keyed *keys = malloc(S * sizeof *keys);
    double *x = malloc(S * sizeof *x);
    if (!keys || !x) {
        free(keys);
        free(x);
        return em_error_set(err, EM_ERR_NOMEM, "em_psis: out of memory for %zu draws", S);
    }
    double lo, hi;
    range_of(log_ratios, S, &lo, &hi);
    for (size_t s = 0; s < S; s++) log_weights[s] = log_ratios[s] - hi;
    em_psis_diag d;
    int rc = psis_column(log_weights, S, r_eff, keys, x, NULL, 0.0, &d);
    free(keys);
    free(x);
    if (rc) return em_error_set(err, EM_ERR_NOMEM, "em_psis: out of memory for a tail of %zu draws",
                                tail_length(S, r_eff));
    if (diag) *diag = d;
    return EM_OK;
}

/* ---- relative efficiency ------------------------------------------------------------------------ */

/* r_eff of one column (S values, contiguous) given the chain map; buf: S scratch. */
static double relative_eff_column(const double *col, size_t S, const size_t *chain_of, size_t C, size_t per,
                                  double *buf, size_t *fill, em_error *err) {
    double mx = -INFINITY;
    for (size_t s = 0; s < S; s++)
        if (col[s] > mx) mx = col[s];
    memset(fill, 0, C * sizeof *fill);
    for (size_t s = 0; s < S; s++) {
        size_t c = chain_of[s];
        buf[c * per + fill[c]++] = exp(col[s] - mx);
    }
    double scale = (double)fft_next_good_size(per) / (double)per;
    return em_ess_geyer(buf, C, per, scale, err, "em_relative_eff") / (double)S;
}

typedef struct chain_map {
    size_t *chain_of, *fill;
    size_t C, per;
    double *buf;
} chain_map;

static void chain_map_free(chain_map *m) {
    free(m->chain_of);
    free(m->fill);
    free(m->buf);
}

static em_status chain_map_make(size_t S, const int *chain_id, size_t nchains, chain_map *m, const char *fn,
                                em_error *err) {
    memset(m, 0, sizeof *m);
    m->chain_of = malloc(S * sizeof *m->chain_of);
    m->buf = malloc(S * sizeof *m->buf);
    if (!m->chain_of || !m->buf) {
        chain_map_free(m);
        return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
    }
    em_status st = chains_of(S, chain_id, nchains, &m->C, &m->per, m->chain_of, fn, err);
    if (st == EM_OK && m->per < 3)
        st = em_error_set(err, EM_ERR_ARG, "%s: %zu draws per chain; the relative efficiency needs at least 3",
                          fn, m->per);
    if (st == EM_OK && !(m->fill = malloc(m->C * sizeof *m->fill)))
        st = em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", fn);
    if (st != EM_OK) chain_map_free(m);
    return st;
}

em_status em_relative_eff(const double *log_lik, size_t S, size_t N, const int *chain_id,
                          size_t nchains, double *r_eff, em_error *err) {
    em_init();
    em_status st = check_matrix(log_lik, S, N, "em_relative_eff", err);
    if (st != EM_OK) return st;
    if (!r_eff) return em_error_set(err, EM_ERR_ARG, "em_relative_eff: r_eff is NULL");
    chain_map m;
    st = chain_map_make(S, chain_id, nchains, &m, "em_relative_eff", err);
    if (st != EM_OK) return st;
    double *cols = malloc(BLOCK * S * sizeof *cols);
    if (!cols) st = em_error_set(err, EM_ERR_NOMEM, "em_relative_eff: out of memory");
    for (size_t i0 = 0; i0 < N && st == EM_OK; i0 += BLOCK) {
        size_t B = N - i0 < BLOCK ? N - i0 : BLOCK;
        gather(log_lik, S, N, i0, B, cols);
        for (size_t j = 0; j < B && st == EM_OK; j++) {
            r_eff[i0 + j] = relative_eff_column(cols + j * S, S, m.chain_of, m.C, m.per, m.buf, m.fill, err);
            if (isnan(r_eff[i0 + j])) st = err ? err->status : EM_ERR_NOMEM;
        }
    }
    free(cols);
    chain_map_free(&m);
    return st;
}

/* ---- PSIS-LOO ---------------------------------------------------------------------------------- */

/* loo 2.5.1's mcse_elpd approximates the Monte Carlo distribution of the PSIS estimate of
 * exp(elpd_i) by a normal (its variance from the weighted squared deviations) and reports the
 * sd of the log of 1000 of its quantiles, deterministic. */
enum { MCSE_NZ = 1000 };

/* lik: the likelihoods scaled by exp(-max log_lik) (the variance of a log does not change with
 * the scale); w: the normalised weights; E: exp(elpd) on the same scale. */
static void weighted_dev_kernel(double *restrict d, const double *restrict w, const double *restrict lik,
                                double E, size_t n) {
    EM_VEC_FOR(i, n, d[i] = w[i] * (lik[i] - E););
}

/* dev: the weighted deviations w_s (lik_s - E) on any common scale of lik and E. */
static double mcse_elpd(const double *dev, size_t S, double E, double r_eff, const double *zn, double *logz) {
    double sd = sqrt(em_dot_vec(dev, dev, S));
    size_t n = 0;
    for (size_t r = 0; r < MCSE_NZ; r++) {
        double z = E + sd * zn[r];
        if (z > 0.0) logz[n++] = log(z);
    }
    if (n < 2) return NAN;
    /* R's var: two passes */
    double m = em_sum_vec(logz, n) / (double)n;
    for (size_t r = 0; r < n; r++) logz[r] -= m;
    return sqrt(em_dot_vec(logz, logz, n) / (double)(n - 1) / r_eff);
}

/* Sum and SE = sqrt(N) * sd (loo's table_of_estimates). */
static void total_se(const double *x, size_t N, double *sum, double *se) {
    long double t = 0.0L;
    for (size_t i = 0; i < N; i++) t += x[i];
    *sum = (double)t;
    *se = N > 1 ? sqrt((double)N) * em_sd(x, N) : NAN;
}

static void loo_totals(em_loo_result *l) {
    size_t N = l->N;
    total_se(l->elpd_i, N, &l->elpd_loo, &l->se_elpd_loo);
    total_se(l->p_i, N, &l->p_loo, &l->se_p_loo);
    total_se(l->looic_i, N, &l->looic, &l->se_looic);
    double mc = 0.0;
    int high = 0;
    for (size_t c = 0; c < EM_K_CLASSES; c++) {
        l->k_count[c] = 0;
        l->k_min_n_eff[c] = NAN;
    }
    l->k_above_threshold = 0;
    for (size_t i = 0; i < N; i++) {
        double k = l->pareto_k[i];
        mc += l->mcse_elpd_i[i] * l->mcse_elpd_i[i];
        if (k > 0.7) high = 1;
        if (k > l->k_threshold) l->k_above_threshold++;
        int c = k <= 0.5 ? EM_K_GOOD : k <= 0.7 ? EM_K_OK : k <= 1.0 ? EM_K_BAD : EM_K_VERY_BAD;
        l->k_count[c]++;
        if (isnan(l->k_min_n_eff[c]) || l->n_eff[i] < l->k_min_n_eff[c]) l->k_min_n_eff[c] = l->n_eff[i];
    }
    l->mcse_elpd_loo = high ? NAN : sqrt(mc);
}

void em_loo_free(em_loo_result *l) {
    if (!l) return;
    free(l->elpd_i);
    free(l->mcse_elpd_i);
    free(l->p_i);
    free(l->looic_i);
    free(l->pareto_k);
    free(l->n_eff);
    free(l->r_eff);
    free(l->lpd_i);
    free(l->exact);
    free(l->log_weights);
    free(l);
}

static em_loo_result *loo_alloc(size_t S, size_t N, int weights) {
    em_loo_result *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->S = S;
    l->N = N;
    double **arr[] = {&l->elpd_i, &l->mcse_elpd_i, &l->p_i, &l->looic_i, &l->pareto_k, &l->n_eff,
                      &l->r_eff, &l->lpd_i};
    int ok = 1;
    for (size_t a = 0; a < sizeof arr / sizeof arr[0]; a++) ok &= (*arr[a] = malloc(N * sizeof(double))) != NULL;
    ok &= (l->exact = calloc(N, 1)) != NULL;
    if (weights) ok &= (l->log_weights = malloc(S * N * sizeof(double))) != NULL;
    if (!ok) {
        em_loo_free(l);
        return NULL;
    }
    return l;
}

em_status em_loo(const double *log_lik, size_t S, size_t N, const em_loo_options *opts,
                 em_loo_result **out, em_error *err) {
    em_init();
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_loo: out is NULL");
    *out = NULL;
    em_status st = check_matrix(log_lik, S, N, "em_loo", err);
    if (st != EM_OK) return st;
    if (S <= 20)
        return em_error_set(err, EM_ERR_ARG,
                            "em_loo: %zu draws are too few: the Pareto tail needs 5 of the largest 20%%, so S > 20", S);
    em_loo_options o = {0};
    if (opts) o = *opts;
    if (o.r_eff)
        for (size_t i = 0; i < N; i++)
            if (!(o.r_eff[i] > 0.0 && isfinite(o.r_eff[i])))
                return em_error_set(err, EM_ERR_ARG, "em_loo: r_eff[%zu] = %g is not a positive number", i,
                                    o.r_eff[i]);
    chain_map m = {0};
    if (!o.r_eff && (st = chain_map_make(S, o.chain_id, o.nchains, &m, "em_loo", err)) != EM_OK) return st;

    em_loo_result *l = loo_alloc(S, N, o.save_log_weights);
    double *cols = malloc((BLOCK + 4) * S * sizeof *cols);
    keyed *keys = malloc(S * sizeof *keys);
    double *zn = malloc(2 * MCSE_NZ * sizeof *zn);
    if (!l || !cols || !keys || !zn) {
        st = em_error_set(err, EM_ERR_NOMEM, "em_loo: out of memory for %zu draws x %zu observations", S, N);
        goto done;
    }
    l->k_threshold = em_psis_k_threshold(S);
    for (size_t r = 0; r < MCSE_NZ; r++)
        zn[r] = gsl_cdf_ugaussian_Pinv(((double)(r + 1) - 3.0 / 8.0) / ((double)MCSE_NZ - 0.75 + 1.0));
    double *lw = cols + BLOCK * S, *w = lw + S, *lik = w + S, *dev = lik + S, *logz = zn + MCSE_NZ;
    double logS = log((double)S);
    for (size_t i0 = 0; i0 < N && st == EM_OK; i0 += BLOCK) {
        size_t B = N - i0 < BLOCK ? N - i0 : BLOCK;
        gather(log_lik, S, N, i0, B, cols);
        for (size_t j = 0; j < B && st == EM_OK; j++) {
            size_t i = i0 + j;
            const double *ll = cols + j * S;
            double r = o.r_eff ? o.r_eff[i] : relative_eff_column(ll, S, m.chain_of, m.C, m.per, m.buf, m.fill, err);
            if (isnan(r)) {
                st = err ? err->status : EM_ERR_NOMEM;
                break;
            }
            /* the leave-one-out ratios are 1 / p(y_i | θ); shifted so that the largest is 0, and
             * the likelihoods scaled by the largest, with one exp per draw */
            double mnl, mxl;
            range_of(ll, S, &mnl, &mxl);
            size_t s;
            for (s = 0; s < S; s++) {
                lw[s] = mnl - ll[s];
                lik[s] = exp(ll[s] - mxl);
            }
            /* a likelihood 700 e-folds below the largest underflows, yet its weight may be large:
             * then the weights and the sum go through the logs */
            int wide = mnl - mxl < -700.0;
            em_psis_diag d;
            if (psis_column(lw, S, r, keys, w, wide ? NULL : lik, mnl - mxl, &d)) {
                st = em_error_set(err, EM_ERR_NOMEM, "em_loo: out of memory for the tail of observation %zu", i);
                break;
            }
            double lpd = mxl + log(em_sum_vec(lik, S)) - logS;
            double elpd = mxl + log(em_dot_vec(w, lik, S));
            double E = exp(elpd - mxl);
            if (wide) {
                double mxa = -INFINITY, sa = 0.0;
                for (s = 0; s < S; s++)
                    if (ll[s] + lw[s] > mxa) mxa = ll[s] + lw[s];
                for (s = 0; s < S; s++) sa += exp(ll[s] + lw[s] - mxa);
                elpd = mxa + log(sa);
                /* the MCSE's deviations on the scale of exp(elpd), where w_s lik_s <= 1: loo's
                 * exp(log_lik) underflows here and its MCSE is NA */
                for (s = 0; s < S; s++) dev[s] = exp(ll[s] + lw[s] - elpd) - w[s];
                E = 1.0;
            } else {
                weighted_dev_kernel(dev, w, lik, E, S);
            }
            l->elpd_i[i] = elpd;
            l->lpd_i[i] = lpd;
            l->p_i[i] = lpd - elpd;
            l->looic_i[i] = -2.0 * elpd;
            l->mcse_elpd_i[i] = mcse_elpd(dev, S, E, r, zn, logz);
            l->pareto_k[i] = d.pareto_k;
            l->n_eff[i] = d.n_eff;
            l->r_eff[i] = r;
            if (l->log_weights)
                for (s = 0; s < S; s++) l->log_weights[s * N + i] = lw[s];
        }
    }
    if (st == EM_OK) loo_totals(l);
done:
    free(cols);
    free(keys);
    free(zn);
    chain_map_free(&m);
    if (st != EM_OK) {
        em_loo_free(l);
        return st;
    }
    *out = l;
    return EM_OK;
}

em_status em_loo_set_exact(em_loo_result *l, size_t i, double elpd_exact, em_error *err) {
    if (!l) return em_error_set(err, EM_ERR_ARG, "em_loo_set_exact: l is NULL");
    if (i >= l->N)
        return em_error_set(err, EM_ERR_INDEX, "em_loo_set_exact: observation %zu is out of range (N = %zu)", i,
                            l->N);
    if (!isfinite(elpd_exact))
        return em_error_set(err, EM_ERR_NONFINITE, "em_loo_set_exact: elpd of observation %zu is %g", i, elpd_exact);
    l->elpd_i[i] = elpd_exact;
    l->p_i[i] = l->lpd_i[i] - elpd_exact;
    l->looic_i[i] = -2.0 * elpd_exact;
    l->mcse_elpd_i[i] = 0.0;
    l->pareto_k[i] = 0.0;
    l->exact[i] = 1;
    loo_totals(l);
    return EM_OK;
}

/* ---- printing as loo's print methods ------------------------------------------------------------ */

/* R's format(round(x, digits), nsmall = digits) of one number: fixed decimals, negative zero
 * as zero, NA for NaN. */
static void fmt_fixed(char *dst, size_t cap, double v, int digits) {
    if (em_text_nonfinite(dst, cap, v)) return;
    snprintf(dst, cap, "%.*f", digits, v);
    /* "-0.0" is a negative number rounded to zero; R prints it as 0.0 */
    int neg_zero = dst[0] == '-';
    for (const char *c = dst + 1; neg_zero && *c; c++)
        if (*c != '0' && *c != '.') neg_zero = 0;
    if (neg_zero) memmove(dst, dst + 1, strlen(dst));
}

/* R's as.character of a whole number: fixed, unless the scientific form with the fewest digits
 * that give the number back is shorter (100000 prints as 1e+05). <NA> for NaN, as print shows
 * a missing string. */
static void fmt_whole(char *dst, size_t cap, double v) {
    if (isnan(v)) {
        snprintf(dst, cap, "<NA>");
        return;
    }
    char fixed[64], sci[64];
    snprintf(fixed, sizeof fixed, "%.0f", v);
    for (int sig = 1; sig <= 15; sig++) {
        snprintf(sci, sizeof sci, "%.*e", sig - 1, v);
        if (strtod(sci, NULL) == v) break;
    }
    snprintf(dst, cap, "%s", strlen(sci) < strlen(fixed) ? sci : fixed);
}

#define CELL 64

/* Print a table of text cells as R prints a character matrix (quote = FALSE: cells and headers
 * left-aligned) or a data frame (right = TRUE: right-aligned); row names left-aligned. */
static void print_cells(FILE *f, size_t nrow, size_t ncol, const char *const *rownames,
                        const char *const *colnames, char (*cells)[CELL], int right) {
    size_t rw = 0, w[8] = {0};
    for (size_t r = 0; r < nrow; r++)
        if (strlen(rownames[r]) > rw) rw = strlen(rownames[r]);
    for (size_t c = 0; c < ncol; c++) {
        w[c] = strlen(colnames[c]);
        for (size_t r = 0; r < nrow; r++)
            if (strlen(cells[r * ncol + c]) > w[c]) w[c] = strlen(cells[r * ncol + c]);
    }
    fprintf(f, "%*s", (int)rw, "");
    for (size_t c = 0; c < ncol; c++) fprintf(f, right ? " %*s" : " %-*s", (int)w[c], colnames[c]);
    fputc('\n', f);
    for (size_t r = 0; r < nrow; r++) {
        fprintf(f, "%-*s", (int)rw, rownames[r]);
        for (size_t c = 0; c < ncol; c++) fprintf(f, right ? " %*s" : " %-*s", (int)w[c], cells[r * ncol + c]);
        fputc('\n', f);
    }
}

/* Right-justify a cell to width w (< CELL). */
static void pad_left(char *cell, size_t w) {
    size_t len = strlen(cell);
    if (len >= w) return;
    memmove(cell + (w - len), cell, len + 1);
    memset(cell, ' ', w - len);
}

/* Right-justify a column of cells to a common width, as R's format() of a vector does. */
static void justify_column(char (*cells)[CELL], size_t nrow, size_t ncol, size_t c) {
    size_t w = 0;
    for (size_t r = 0; r < nrow; r++)
        if (strlen(cells[r * ncol + c]) > w) w = strlen(cells[r * ncol + c]);
    for (size_t r = 0; r < nrow; r++) pad_left(cells[r * ncol + c], w);
}

static void print_estimates(FILE *f, size_t S, size_t N, const char *const names[3], const double est[3][2],
                            int digits) {
    fprintf(f, "\nComputed from %zu by %zu log-likelihood matrix\n\n", S, N);
    char cells[6][CELL];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 2; c++) fmt_fixed(cells[r * 2 + c], CELL, est[r][c], digits);
    justify_column(cells, 3, 2, 0);
    justify_column(cells, 3, 2, 1);
    static const char *const cols[2] = {"Estimate", "SE"};
    print_cells(f, 3, 2, names, cols, cells, 1);
}

static em_status check_print(FILE *f, const void *x, int *digits, const char *fn, em_error *err) {
    if (!f || !x) return em_error_set(err, EM_ERR_ARG, "%s: f and the result must not be NULL", fn);
    if (*digits <= 0) *digits = 1;
    if (*digits > 15) *digits = 15;
    return EM_OK;
}

em_status em_loo_print(FILE *f, const em_loo_result *l, int digits, em_error *err) {
    em_status st = check_print(f, l, &digits, "em_loo_print", err);
    if (st != EM_OK) return st;
    static const char *const names[3] = {"elpd_loo", "p_loo", "looic"};
    const double est[3][2] = {{l->elpd_loo, l->se_elpd_loo}, {l->p_loo, l->se_p_loo}, {l->looic, l->se_looic}};
    print_estimates(f, l->S, l->N, names, est, digits);
    char mc[CELL];
    fmt_fixed(mc, sizeof mc, l->mcse_elpd_loo, digits);
    fprintf(f, "------\nMonte Carlo SE of elpd_loo is %s.\n", mc);
    size_t above_half = l->k_count[EM_K_OK] + l->k_count[EM_K_BAD] + l->k_count[EM_K_VERY_BAD];
    if (above_half == 0) {
        fprintf(f, "\nAll Pareto k estimates are good (k < 0.5).\n");
    } else {
        fprintf(f, "\nPareto k diagnostic values:\n");
        static const char *const rows[4] = {"(-Inf, 0.5]", " (0.5, 0.7]", "   (0.7, 1]", "   (1, Inf)"};
        static const char *const labels[4] = {"(good)", "(ok)", "(bad)", "(very bad)"};
        static const char *const cols[5] = {" ", " ", "Count", "Pct.   ", "Min. n_eff"};
        char cells[20][CELL];
        for (int r = 0; r < 4; r++) {
            snprintf(cells[r * 5], CELL, "%s", "");
            snprintf(cells[r * 5 + 1], CELL, "%s", labels[r]);
            snprintf(cells[r * 5 + 2], CELL, "%zu", l->k_count[r]);
            fmt_fixed(cells[r * 5 + 3], CELL, 100.0 * (double)l->k_count[r] / (double)l->N, digits);
            fmt_whole(cells[r * 5 + 4], CELL, isnan(l->k_min_n_eff[r]) ? NAN : round(l->k_min_n_eff[r]));
        }
        justify_column(cells, 4, 5, 2);
        justify_column(cells, 4, 5, 3);
        for (int r = 0; r < 4; r++) strncat(cells[r * 5 + 3], "%", CELL - strlen(cells[r * 5 + 3]) - 1);
        print_cells(f, 4, 5, rows, cols, cells, 0);
        if (l->k_count[EM_K_BAD] + l->k_count[EM_K_VERY_BAD] == 0)
            fprintf(f, "\nAll Pareto k estimates are ok (k < 0.7).\n");
    }
    fprintf(f, "See help('pareto-k-diagnostic') for details.\n");
    return ferror(f) ? em_error_set(err, EM_ERR_IO, "em_loo_print: write failed") : EM_OK;
}

/* ---- CSV ---------------------------------------------------------------------------------------- */

static void csv_num(em_buf *b, double v) {
    if (isnan(v)) em_buf_printf(b, ",NaN");
    else if (isinf(v)) em_buf_printf(b, v > 0 ? ",Inf" : ",-Inf");
    else em_buf_printf(b, ",%.17g", v);
}

em_status em_loo_write_csv(const em_loo_result *l, const char *path, em_error *err) {
    if (!l || !path) return em_error_set(err, EM_ERR_ARG, "em_loo_write_csv: l and path must not be NULL");
    em_buf b = {0};
    em_buf_printf(&b, "obs,elpd_loo,mcse_elpd_loo,p_loo,looic,influence_pareto_k,n_eff,r_eff,exact\n");
    for (size_t i = 0; i < l->N; i++) {
        em_buf_printf(&b, "%zu", i + 1);
        const double v[] = {l->elpd_i[i], l->mcse_elpd_i[i], l->p_i[i], l->looic_i[i], l->pareto_k[i],
                            l->n_eff[i], l->r_eff[i]};
        for (size_t c = 0; c < sizeof v / sizeof v[0]; c++) csv_num(&b, v[c]);
        em_buf_printf(&b, ",%d\n", l->exact[i] ? 1 : 0);
    }
    em_status st;
    if (b.failed) st = em_error_set(err, EM_ERR_NOMEM, "em_loo_write_csv: out of memory for %s", path);
    else st = em_write_file_atomic(path, b.data, b.len, err);
    em_buf_free(&b);
    return st;
}

/* ---- WAIC --------------------------------------------------------------------------------------- */

void em_waic_free(em_waic_result *w) {
    if (!w) return;
    free(w->elpd_i);
    free(w->p_i);
    free(w->waic_i);
    free(w);
}

em_status em_waic(const double *log_lik, size_t S, size_t N, em_waic_result **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_waic: out is NULL");
    *out = NULL;
    em_status st = check_matrix(log_lik, S, N, "em_waic", err);
    if (st != EM_OK) return st;
    if (S < 2) return em_error_set(err, EM_ERR_ARG, "em_waic: %zu draw; the variance needs at least 2", S);
    em_waic_result *w = calloc(1, sizeof *w);
    double *cols = malloc(BLOCK * S * sizeof *cols);
    if (w) {
        w->elpd_i = malloc(N * sizeof(double));
        w->p_i = malloc(N * sizeof(double));
        w->waic_i = malloc(N * sizeof(double));
    }
    if (!w || !cols || !w->elpd_i || !w->p_i || !w->waic_i) {
        free(cols);
        em_waic_free(w);
        return em_error_set(err, EM_ERR_NOMEM, "em_waic: out of memory for %zu observations", N);
    }
    w->S = S;
    w->N = N;
    double logS = log((double)S);
    for (size_t i0 = 0; i0 < N; i0 += BLOCK) {
        size_t B = N - i0 < BLOCK ? N - i0 : BLOCK;
        gather(log_lik, S, N, i0, B, cols);
        for (size_t j = 0; j < B; j++) {
            size_t i = i0 + j;
            const double *ll = cols + j * S;
            double sd = em_sd(ll, S);
            w->p_i[i] = sd * sd;
            w->elpd_i[i] = log_sum_exp(ll, S) - logS - w->p_i[i];
            w->waic_i[i] = -2.0 * w->elpd_i[i];
            w->p_waic_high += w->p_i[i] > 0.4;
        }
    }
    free(cols);
    total_se(w->elpd_i, N, &w->elpd_waic, &w->se_elpd_waic);
    total_se(w->p_i, N, &w->p_waic, &w->se_p_waic);
    total_se(w->waic_i, N, &w->waic, &w->se_waic);
    *out = w;
    return EM_OK;
}

em_status em_waic_print(FILE *f, const em_waic_result *w, int digits, em_error *err) {
    em_status st = check_print(f, w, &digits, "em_waic_print", err);
    if (st != EM_OK) return st;
    static const char *const names[3] = {"elpd_waic", "p_waic", "waic"};
    const double est[3][2] = {{w->elpd_waic, w->se_elpd_waic}, {w->p_waic, w->se_p_waic}, {w->waic, w->se_waic}};
    print_estimates(f, w->S, w->N, names, est, digits);
    if (w->p_waic_high) {
        char pct[CELL];
        fmt_fixed(pct, sizeof pct, 100.0 * (double)w->p_waic_high / (double)w->N, digits);
        fprintf(f, "\n%zu (%s%%) p_waic estimates greater than 0.4. We recommend trying loo instead. \n",
                w->p_waic_high, pct);
    }
    return ferror(f) ? em_error_set(err, EM_ERR_IO, "em_waic_print: write failed") : EM_OK;
}

/* ---- comparison --------------------------------------------------------------------------------- */

void em_loo_comparison_free(em_loo_comparison *c) {
    if (!c) return;
    if (c->names)
        for (size_t k = 0; k < c->K; k++) free(c->names[k]);
    free(c->names);
    free(c->order);
    free(c->elpd_diff);
    free(c->se_diff);
    free(c->elpd);
    free(c->se_elpd);
    free(c);
}

em_status em_elpd_compare(const double *const *elpd_i, size_t K, size_t N, const char *const *names,
                          em_loo_comparison **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_elpd_compare: out is NULL");
    *out = NULL;
    if (!elpd_i) return em_error_set(err, EM_ERR_ARG, "em_elpd_compare: elpd_i is NULL");
    if (K < 2) return em_error_set(err, EM_ERR_ARG, "em_elpd_compare: comparing needs at least two models (K = %zu)", K);
    if (N < 2) return em_error_set(err, EM_ERR_ARG, "em_elpd_compare: %zu observation; the SE needs at least 2", N);
    for (size_t k = 0; k < K; k++) {
        if (!elpd_i[k]) return em_error_set(err, EM_ERR_ARG, "em_elpd_compare: model %zu's pointwise elpd is NULL", k);
        for (size_t i = 0; i < N; i++)
            if (!isfinite(elpd_i[k][i]))
                return em_error_set(err, EM_ERR_NONFINITE, "em_elpd_compare: elpd of observation %zu in model %zu is %g",
                                    i, k, elpd_i[k][i]);
    }
    em_loo_comparison *c = calloc(1, sizeof *c);
    double *d = malloc(N * sizeof *d);
    int ok = c && d;
    if (ok) {
        c->K = K;
        c->N = N;
        ok = (c->names = calloc(K, sizeof *c->names)) && (c->order = malloc(K * sizeof *c->order)) &&
             (c->elpd_diff = malloc(K * sizeof(double))) && (c->se_diff = malloc(K * sizeof(double))) &&
             (c->elpd = malloc(K * sizeof(double))) && (c->se_elpd = malloc(K * sizeof(double)));
    }
    double *tot = ok ? malloc(K * sizeof *tot) : NULL;
    double *se = ok ? malloc(K * sizeof *se) : NULL;
    ok = ok && tot && se;
    if (ok) {
        for (size_t k = 0; k < K; k++) total_se(elpd_i[k], N, &tot[k], &se[k]);
        /* best first; a stable insertion sort keeps tied models in the input order (R's order) */
        for (size_t k = 0; k < K; k++) {
            size_t j = k;
            while (j > 0 && tot[c->order[j - 1]] < tot[k]) {
                c->order[j] = c->order[j - 1];
                j--;
            }
            c->order[j] = k;
        }
        const double *best = elpd_i[c->order[0]];
        for (size_t r = 0; r < K && ok; r++) {
            size_t k = c->order[r];
            for (size_t i = 0; i < N; i++) d[i] = elpd_i[k][i] - best[i];
            total_se(d, N, &c->elpd_diff[r], &c->se_diff[r]);
            c->elpd[r] = tot[k];
            c->se_elpd[r] = se[k];
            char tmp[32];
            const char *nm = names && names[k] ? names[k] : NULL;
            if (!nm) {
                snprintf(tmp, sizeof tmp, "model%zu", k + 1);
                nm = tmp;
            }
            size_t len = strlen(nm);
            ok = (c->names[r] = malloc(len + 1)) != NULL;
            if (ok) memcpy(c->names[r], nm, len + 1);
        }
    }
    free(tot);
    free(se);
    free(d);
    if (!ok) {
        em_loo_comparison_free(c);
        return em_error_set(err, EM_ERR_NOMEM, "em_elpd_compare: out of memory for %zu models", K);
    }
    *out = c;
    return EM_OK;
}

em_status em_loo_compare(const em_loo_result *const *fits, size_t K, const char *const *names,
                         em_loo_comparison **out, em_error *err) {
    if (out) *out = NULL;
    if (!fits) return em_error_set(err, EM_ERR_ARG, "em_loo_compare: fits is NULL");
    const double *small[16];
    const double **e = K <= 16 ? small : malloc(K * sizeof *e);
    if (!e) return em_error_set(err, EM_ERR_NOMEM, "em_loo_compare: out of memory");
    em_status st = EM_OK;
    for (size_t k = 0; k < K && st == EM_OK; k++) {
        if (!fits[k]) st = em_error_set(err, EM_ERR_ARG, "em_loo_compare: fit %zu is NULL", k);
        else if (fits[k]->N != fits[0]->N)
            st = em_error_set(err, EM_ERR_SHAPE,
                              "em_loo_compare: model %zu has %zu observations and model 0 has %zu; the models "
                              "must be compared on the same data",
                              k, fits[k]->N, fits[0]->N);
        else e[k] = fits[k]->elpd_i;
    }
    if (st == EM_OK) st = em_elpd_compare(e, K, K ? fits[0]->N : 0, names, out, err);
    if (e != small) free(e);
    return st;
}

em_status em_loo_comparison_print(FILE *f, const em_loo_comparison *c, int digits, em_error *err) {
    em_status st = check_print(f, c, &digits, "em_loo_comparison_print", err);
    if (st != EM_OK) return st;
    char(*cells)[CELL] = malloc(2 * c->K * sizeof *cells);
    if (!cells) return em_error_set(err, EM_ERR_NOMEM, "em_loo_comparison_print: out of memory");
    /* format() of the whole matrix: one width for every cell */
    for (size_t r = 0; r < c->K; r++) {
        fmt_fixed(cells[2 * r], CELL, c->elpd_diff[r], digits);
        fmt_fixed(cells[2 * r + 1], CELL, c->se_diff[r], digits);
    }
    size_t w = 0;
    for (size_t k = 0; k < 2 * c->K; k++)
        if (strlen(cells[k]) > w) w = strlen(cells[k]);
    for (size_t k = 0; k < 2 * c->K; k++) pad_left(cells[k], w);
    static const char *const cols[2] = {"elpd_diff", "se_diff"};
    print_cells(f, c->K, 2, (const char *const *)c->names, cols, cells, 0);
    free(cells);
    return ferror(f) ? em_error_set(err, EM_ERR_IO, "em_loo_comparison_print: write failed") : EM_OK;
}

/* ---- LOO-PIT ------------------------------------------------------------------------------------ */

em_status em_loo_pit(const double *yrep, const double *y, const double *log_weights, size_t S,
                     size_t N, em_pit_ties ties, em_rng *rng, double *pit, em_error *err) {
    if (!yrep || !y || !log_weights || !pit)
        return em_error_set(err, EM_ERR_ARG, "em_loo_pit: yrep, y, log_weights and pit must not be NULL");
    if (S == 0 || N == 0) return em_error_set(err, EM_ERR_ARG, "em_loo_pit: S = %zu, N = %zu", S, N);
    if (ties != EM_PIT_RANDOMIZED && ties != EM_PIT_MID)
        return em_error_set(err, EM_ERR_ARG, "em_loo_pit: unknown ties rule %d", (int)ties);
    for (size_t i = 0; i < N; i++)
        if (!isfinite(y[i])) return em_error_set(err, EM_ERR_NONFINITE, "em_loo_pit: y[%zu] is %g", i, y[i]);
    for (size_t k = 0; k < S * N; k++) {
        if (isnan(yrep[k]))
            return em_error_set(err, EM_ERR_NONFINITE, "em_loo_pit: yrep of observation %zu under draw %zu is NaN",
                                k % N, k / N);
        if (!isfinite(log_weights[k]) && !(log_weights[k] < 0))
            return em_error_set(err, EM_ERR_NONFINITE,
                                "em_loo_pit: log weight of observation %zu under draw %zu is %g", k % N, k / N,
                                log_weights[k]);
    }
    for (size_t i = 0; i < N; i++) {
        /* the normalised weights sum to 1, so plain sums of exp are the probabilities */
        double below = 0.0, at = 0.0;
        for (size_t s = 0; s < S; s++) {
            double v = yrep[s * N + i];
            if (v < y[i]) below += exp(log_weights[s * N + i]);
            else if (v == y[i]) at += exp(log_weights[s * N + i]);
        }
        double u = 0.5;
        if (at > 0.0 && ties == EM_PIT_RANDOMIZED) {
            if (!rng)
                return em_error_set(err, EM_ERR_ARG,
                                    "em_loo_pit: observation %zu ties with its replicates and rng is NULL", i);
            u = em_rng_uniform(rng);
        }
        double p = below + u * at;
        pit[i] = p < 1.0 ? p : 1.0;
    }
    return EM_OK;
}

/* ---- Kolmogorov–Smirnov against U(0,1) ---------------------------------------------------------- */

/* Marsaglia, Tsang & Wang (2003): P(D_n < d) as the (k, k) entry of H^n / n! for an m x m
 * matrix H, m = 2k - 1, k = floor(n d) + 1; the powers carry a decimal exponent so n! and H^n
 * never overflow. */
static void mat_mul(const double *A, const double *B, double *C, size_t m) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++) {
            double s = 0.0;
            for (size_t l = 0; l < m; l++) s += A[i * m + l] * B[l * m + j];
            C[i * m + j] = s;
        }
}

static int mat_pow(const double *A, int eA, double *V, int *eV, size_t m, size_t n, double *tmp) {
    if (n == 1) {
        memcpy(V, A, m * m * sizeof *V);
        *eV = eA;
        return 0;
    }
    if (mat_pow(A, eA, V, eV, m, n / 2, tmp)) return -1;
    mat_mul(V, V, tmp, m);
    int e = 2 * *eV;
    if (n % 2 == 1) {
        mat_mul(A, tmp, V, m);
        e += eA;
    } else {
        memcpy(V, tmp, m * m * sizeof *V);
    }
    if (V[(m / 2) * m + m / 2] > 1e140) {
        for (size_t i = 0; i < m * m; i++) V[i] *= 1e-140;
        e += 140;
    }
    *eV = e;
    return 0;
}

static double kolmogorov_exact_cdf(size_t n, double d) {
    size_t k = (size_t)(n * d) + 1, m = 2 * k - 1;
    double h = (double)k - (double)n * d;
    double *H = calloc(3 * m * m, sizeof *H);
    if (!H) return NAN;
    double *Q = H + m * m, *tmp = Q + m * m;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++) H[i * m + j] = (i + 1 >= j) ? 1.0 : 0.0;
    for (size_t i = 0; i < m; i++) {
        H[i * m] -= pow(h, (double)(i + 1));
        H[(m - 1) * m + i] -= pow(h, (double)(m - i));
    }
    H[(m - 1) * m] += (2.0 * h - 1.0 > 0.0) ? pow(2.0 * h - 1.0, (double)m) : 0.0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++)
            if (i + 1 > j)
                for (size_t g = 1; g <= i + 1 - j; g++) H[i * m + j] /= (double)g;
    int eQ = 0;
    mat_pow(H, 0, Q, &eQ, m, n, tmp);
    double s = Q[(k - 1) * m + (k - 1)];
    for (size_t i = 1; i <= n; i++) {
        s = s * (double)i / (double)n;
        if (s < 1e-140) {
            s *= 1e140;
            eQ -= 140;
        }
    }
    free(H);
    return s * pow(10.0, (double)eQ);
}

#define PI 3.14159265358979323846

/* The limiting distribution of sqrt(n) D_n (R's pkstwo): P(K <= x). */
static double kolmogorov_limit_cdf(double x) {
    if (x <= 0.0) return 0.0;
    if (x < 1.0) {
        double z = -(PI * PI / 8.0) / (x * x), w = log(x), s = 0.0;
        for (int i = 1; i < 20; i += 2) s += exp((double)(i * i) * z - w);
        return s * sqrt(2.0 * PI);
    }
    double z = -2.0 * x * x, sign = -1.0, old = 0.0, p = 1.0;
    for (int k = 1; fabs(old - p) > 1e-12 && k < 1000; k++) {
        old = p;
        p += 2.0 * sign * exp(z * (double)k * (double)k);
        sign = -sign;
    }
    return p;
}

em_status em_ks_uniform(const double *u, size_t n, double *D, double *p_value, em_error *err) {
    if (D) *D = NAN;
    if (p_value) *p_value = NAN;
    if (!u || !D || !p_value) return em_error_set(err, EM_ERR_ARG, "em_ks_uniform: u, D and p_value must not be NULL");
    if (n == 0) return em_error_set(err, EM_ERR_ARG, "em_ks_uniform: no values (n = 0)");
    for (size_t i = 0; i < n; i++)
        if (!(u[i] >= 0.0 && u[i] <= 1.0))
            return em_error_set(err, EM_ERR_DOMAIN, "em_ks_uniform: u[%zu] = %g is outside [0, 1]", i, u[i]);
    double *s = malloc(n * sizeof *s);
    if (!s) return em_error_set(err, EM_ERR_NOMEM, "em_ks_uniform: out of memory for %zu values", n);
    memcpy(s, u, n * sizeof *s);
    em_sort_doubles(s, n);
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double lo = s[i] - (double)i / (double)n, hi = (double)(i + 1) / (double)n - s[i];
        if (lo > d) d = lo;
        if (hi > d) d = hi;
    }
    free(s);
    *D = d;
    /* R's ks.test: exact below 100 values, the limiting distribution from 100 on */
    double cdf = n < 100 ? kolmogorov_exact_cdf(n, d) : kolmogorov_limit_cdf(sqrt((double)n) * d);
    if (isnan(cdf)) return em_error_set(err, EM_ERR_NOMEM, "em_ks_uniform: out of memory for the exact p-value");
    double p = 1.0 - cdf;
    *p_value = p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
    return EM_OK;
}

/* ---- the LOO-PIT figure ------------------------------------------------------------------------- */

em_status em_loo_pit_figure(const char *dir, const char *name, const double *pit, size_t n,
                            em_error *err) {
    if (!dir || !name || !pit)
        return em_error_set(err, EM_ERR_ARG, "em_loo_pit_figure: dir, name and pit must not be NULL");
    if (n == 0) return em_error_set(err, EM_ERR_ARG, "em_loo_pit_figure: no PIT values (n = 0)");
    for (size_t i = 0; i < n; i++)
        if (!(pit[i] >= 0.0 && pit[i] <= 1.0))
            return em_error_set(err, EM_ERR_DOMAIN, "em_loo_pit_figure: pit[%zu] = %g is outside [0, 1]", i, pit[i]);
    double *s = malloc(n * sizeof *s);
    if (!s) return em_error_set(err, EM_ERR_NOMEM, "em_loo_pit_figure: out of memory");
    memcpy(s, pit, n * sizeof *s);
    em_sort_doubles(s, n);
    em_buf dat = {0}, gp = {0};
    em_buf_printf(&dat, "# LOO-PIT values, sorted: pit ecdf\n0 0\n");
    for (size_t i = 0; i < n; i++) em_buf_printf(&dat, "%.17g %.17g\n", s[i], (double)(i + 1) / (double)n);
    free(s);
    double D, p;
    em_status st = em_ks_uniform(pit, n, &D, &p, err);
    /* the asymptotic 95% critical value of D_n, 1.358 / sqrt(n) */
    double band = 1.3581 / sqrt((double)n);
    if (st == EM_OK) {
        em_buf_printf(&gp,
                      "# %s.gp: the ECDF of %zu LOO-PIT values against the uniform's diagonal, with the 95%%\n"
                      "# Kolmogorov-Smirnov band; draw with `gnuplot %s.gp` in this folder.\n"
                      "if (!exists(\"outfile\")) outfile = \"%s.png\"\n"
                      "set terminal pngcairo size 640,560\n"
                      "set output outfile\n"
                      "set title \"LOO-PIT ECDF (KS D = %.3f, p = %.3g)\"\n"
                      "set xlabel \"PIT\"\nset ylabel \"ECDF\"\n"
                      "set xrange [0:1]\nset yrange [0:1]\nset key top left\n"
                      "band = %.6g\n"
                      "plot x + band w lines lc rgb \"#aaaaaa\" dt 2 title \"95%% KS band\", \\\n"
                      "     x - band w lines lc rgb \"#aaaaaa\" dt 2 notitle, \\\n"
                      "     x w lines lc rgb \"#ff7f0e\" title \"uniform\", \\\n"
                      "     \"%s.dat\" u 1:2 w steps lw 2 lc rgb \"#1f77b4\" title \"LOO-PIT\"\n",
                      name, n, name, name, D, p, band, name);
        st = em_text_write_in_dir(dir, name, ".dat", &dat, "figure", err);
    }
    if (st == EM_OK) st = em_text_write_in_dir(dir, name, ".gp", &gp, "figure", err);
    em_buf_free(&dat);
    em_buf_free(&gp);
    return st;
}

/* ---- posterior predictive checks and the Pareto k plot ------------------------------------------- */

/* A Gaussian kernel density of x on the grid g (m points, ascending), Silverman's bandwidth
 * 0.9 min(sd, IQR/1.34) n^(-1/5), as R's density(bw = "nrd0") and bayesplot's ppc_dens_overlay.
 * Each grid point sums the points within 10 bandwidths of it, found in the sorted copy by a
 * window that moves along the grid: a point farther away adds less than e^-50 of the nearest
 * one's share, and the figure of 200 points over 100 replicated data sets costs n·m·(window
 * share) exps instead of n·m. */
static void kde(const double *x, size_t n, const double *g, size_t m, double *out, double *scratch) {
    memcpy(scratch, x, n * sizeof *scratch);
    em_sort_doubles(scratch, n);
    double mean = 0, ss = 0;
    for (size_t i = 0; i < n; i++) mean += x[i] / (double)n;
    for (size_t i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    double sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0;
    double iqr = scratch[(size_t)(0.75 * (double)(n - 1))] - scratch[(size_t)(0.25 * (double)(n - 1))];
    double lo = fmin(sd, iqr / 1.34);
    if (!(lo > 0)) lo = sd > 0 ? sd : 1.0;
    double h = 0.9 * lo * pow((double)n, -0.2), reach = 10.0 * h;
    size_t first = 0, last = 0; /* the window: scratch[first..last) within reach of g[j] */
    for (size_t j = 0; j < m; j++) {
        while (first < n && scratch[first] < g[j] - reach) first++;
        if (last < first) last = first;
        while (last < n && scratch[last] <= g[j] + reach) last++;
        double s = 0;
        for (size_t i = first; i < last; i++) {
            double z = (g[j] - scratch[i]) / h;
            s += exp(-0.5 * z * z);
        }
        out[j] = s / ((double)n * h * 2.5066282746310002);
    }
}

static em_status check_y(const char *what, const double *y, size_t n, const double *yrep, size_t S, em_error *err) {
    if (!y || !yrep) return em_error_set(err, EM_ERR_ARG, "%s: y and yrep must not be NULL", what);
    if (n < 2 || S == 0) return em_error_set(err, EM_ERR_ARG, "%s: %zu observations and %zu draws", what, n, S);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(y[i])) return em_error_set(err, EM_ERR_NONFINITE, "%s: y[%zu] = %g", what, i, y[i]);
    for (size_t i = 0; i < n * S; i++)
        if (!isfinite(yrep[i]))
            return em_error_set(err, EM_ERR_NONFINITE, "%s: yrep draw %zu, observation %zu is %g", what, i / n, i % n,
                                yrep[i]);
    return EM_OK;
}

em_status em_ppc_density_figure(const char *dir, const char *name, const double *y, size_t n, const double *yrep,
                                size_t S, size_t nshow, em_error *err) {
    if (!dir || !name) return em_error_set(err, EM_ERR_ARG, "em_ppc_density_figure: dir and name must not be NULL");
    em_status st = check_y("em_ppc_density_figure", y, n, yrep, S, err);
    if (st != EM_OK) return st;
    if (nshow == 0 || nshow > S) nshow = S < 100 ? S : 100;
    enum { M = 200 };
    double lo = y[0], hi = y[0];
    for (size_t i = 0; i < n; i++) lo = fmin(lo, y[i]), hi = fmax(hi, y[i]);
    for (size_t i = 0; i < n * S; i++) lo = fmin(lo, yrep[i]), hi = fmax(hi, yrep[i]);
    double pad = 0.05 * (hi - lo > 0 ? hi - lo : 1.0), g[M], dens[M];
    for (int j = 0; j < M; j++) g[j] = lo - pad + (hi - lo + 2 * pad) * j / (M - 1);
    double *scratch = malloc(n * sizeof *scratch);
    if (!scratch) return em_error_set(err, EM_ERR_NOMEM, "em_ppc_density_figure: out of memory");
    em_buf dat = {0}, gp = {0};
    /* blocks: 0 = y, 1..nshow = draws spread evenly over the S */
    em_buf_printf(&dat, "# x density: block 0 is y, then %zu replicated data sets\n", nshow);
    for (size_t b = 0; b <= nshow; b++) {
        const double *x = b == 0 ? y : yrep + ((b - 1) * S / nshow) * n;
        kde(x, n, g, M, dens, scratch);
        for (int j = 0; j < M; j++) em_buf_printf(&dat, "%.10g %.10g\n", g[j], dens[j]);
        em_buf_printf(&dat, "\n\n");
    }
    free(scratch);
    em_buf_printf(&gp,
                  "# %s.gp: the density of y over %zu replicated data sets (posterior predictive check,\n"
                  "# as bayesplot's ppc_dens_overlay); draw with `gnuplot %s.gp` in this folder.\n"
                  "if (!exists(\"outfile\")) outfile = \"%s.png\"\n"
                  "set terminal pngcairo size 720,480\nset output outfile\n"
                  "set title \"Posterior predictive check\"\nset xlabel \"y\"\nset ylabel \"density\"\nset key top right\n"
                  "plot for [b=1:%zu] \"%s.dat\" index b u 1:2 w lines lc rgb \"#a6c8e8\" notitle, \\\n"
                  "     \"%s.dat\" index 1 u 1:2 w lines lc rgb \"#a6c8e8\" title \"y_{rep}\", \\\n"
                  "     \"%s.dat\" index 0 u 1:2 w lines lw 3 lc rgb \"#08306b\" title \"y\"\n",
                  name, nshow, name, name, nshow, name, name, name);
    st = em_text_write_in_dir(dir, name, ".dat", &dat, "figure", err);
    if (st == EM_OK) st = em_text_write_in_dir(dir, name, ".gp", &gp, "figure", err);
    em_buf_free(&dat);
    em_buf_free(&gp);
    return st;
}

em_status em_ppc_bars_figure(const char *dir, const char *name, const double *y, size_t n, const double *yrep, size_t S,
                             em_error *err) {
    if (!dir || !name) return em_error_set(err, EM_ERR_ARG, "em_ppc_bars_figure: dir and name must not be NULL");
    em_status st = check_y("em_ppc_bars_figure", y, n, yrep, S, err);
    if (st != EM_OK) return st;
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(y[i] >= 0 && y[i] == floor(y[i])))
            return em_error_set(err, EM_ERR_DOMAIN, "em_ppc_bars_figure: y[%zu] = %g is not a count", i, y[i]);
        mx = fmax(mx, y[i]);
    }
    size_t K = (size_t)mx + 1; /* the counts 0..max(y); larger replicated counts share the last bar */
    if (K > 60) K = 60;
    double *freq = calloc(K * (S + 1), sizeof *freq), *col = malloc(S * sizeof *col);
    if (!freq || !col) {
        free(freq);
        free(col);
        return em_error_set(err, EM_ERR_NOMEM, "em_ppc_bars_figure: out of memory");
    }
    for (size_t i = 0; i < n; i++) freq[(size_t)fmin(y[i], (double)(K - 1))] += 1;
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < n; i++) {
            double v = yrep[s * n + i];
            freq[(1 + s) * K + (v < 0 ? 0 : (size_t)fmin(floor(v), (double)(K - 1)))] += 1;
        }
    em_buf dat = {0}, gp = {0};
    em_buf_printf(&dat, "# count observed yrep_median yrep_q5 yrep_q95 (the last count holds every larger one)\n");
    for (size_t k = 0; k < K; k++) {
        for (size_t s = 0; s < S; s++) col[s] = freq[(1 + s) * K + k];
        em_buf_printf(&dat, "%zu %g %g %g %g\n", k, freq[k], em_quantile(col, S, 0.5), em_quantile(col, S, 0.05),
                      em_quantile(col, S, 0.95));
    }
    free(freq);
    free(col);
    em_buf_printf(&gp,
                  "# %s.gp: observed counts (bars) against the replicated data's median and 90%% interval\n"
                  "# (as bayesplot's ppc_bars); draw with `gnuplot %s.gp` in this folder.\n"
                  "if (!exists(\"outfile\")) outfile = \"%s.png\"\n"
                  "set terminal pngcairo size 720,480\nset output outfile\n"
                  "set title \"Posterior predictive check\"\nset xlabel \"y\"\nset ylabel \"count\"\n"
                  "set style fill solid 0.6\nset boxwidth 0.8\nset key top right\n"
                  "plot \"%s.dat\" u 1:2 w boxes lc rgb \"#a6c8e8\" title \"y\", \\\n"
                  "     \"%s.dat\" u 1:3:4:5 w yerrorbars pt 7 lc rgb \"#08306b\" title \"y_{rep} median, 90%%\"\n",
                  name, name, name, name, name);
    st = em_text_write_in_dir(dir, name, ".dat", &dat, "figure", err);
    if (st == EM_OK) st = em_text_write_in_dir(dir, name, ".gp", &gp, "figure", err);
    em_buf_free(&dat);
    em_buf_free(&gp);
    return st;
}

em_status em_pareto_k_figure(const char *dir, const char *name, const em_loo_result *l, em_error *err) {
    if (!dir || !name || !l) return em_error_set(err, EM_ERR_ARG, "em_pareto_k_figure: NULL argument");
    em_buf dat = {0}, gp = {0};
    em_buf_printf(&dat, "# observation pareto_k exact\n");
    for (size_t i = 0; i < l->N; i++)
        em_buf_printf(&dat, "%zu %.10g %d\n", i + 1, isfinite(l->pareto_k[i]) ? l->pareto_k[i] : 2.0, l->exact[i]);
    em_buf_printf(&gp,
                  "# %s.gp: Pareto k of each observation's PSIS-LOO estimate (loo's plot of the k diagnostic),\n"
                  "# with loo 2.5.1's 0.5 / 0.7 / 1 lines and the 2024 threshold %.3f for S = %zu;\n"
                  "# refitted (exact) observations are drawn as rings. Draw with `gnuplot %s.gp`.\n"
                  "if (!exists(\"outfile\")) outfile = \"%s.png\"\n"
                  "set terminal pngcairo size 720,420\nset output outfile\n"
                  "set title \"PSIS diagnostic plot\"\nset xlabel \"observation\"\nset ylabel \"Pareto k\"\n"
                  "set key outside right\n"
                  "plot 0.5 w lines dt 2 lc rgb \"#999999\" title \"0.5\", 0.7 w lines dt 2 lc rgb \"#e6550d\" title \"0.7\", \\\n"
                  "     1 w lines dt 2 lc rgb \"#a50f15\" title \"1\", %.6g w lines lc rgb \"#31a354\" title \"k threshold\", \\\n"
                  "     \"%s.dat\" u 1:($3 == 0 ? $2 : 1/0) w points pt 7 ps 0.6 lc rgb \"#08306b\" title \"PSIS\", \\\n"
                  "     \"%s.dat\" u 1:($3 == 1 ? $2 : 1/0) w points pt 6 lc rgb \"#a50f15\" title \"refitted\"\n",
                  name, l->k_threshold, l->S, name, name, l->k_threshold, name, name);
    em_status st = em_text_write_in_dir(dir, name, ".dat", &dat, "figure", err);
    if (st == EM_OK) st = em_text_write_in_dir(dir, name, ".gp", &gp, "figure", err);
    em_buf_free(&dat);
    em_buf_free(&gp);
    return st;
}
