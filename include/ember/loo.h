/* loo.h — Pareto smoothed importance sampling, PSIS-LOO, WAIC, model comparison and LOO-PIT.
 *
 * After a fit, these functions estimate how well a model predicts data it has not seen, from
 * the pointwise log-likelihood of the posterior draws alone: the expected log pointwise
 * predictive density of leave-one-out cross-validation (elpd_loo) by Pareto smoothed importance
 * sampling (Vehtari, Gelman & Gabry 2017, "Practical Bayesian model evaluation using
 * leave-one-out cross-validation and WAIC", Stat. Comput. 27; Vehtari, Simpson, Gelman, Yao &
 * Gabry 2024, "Pareto smoothed importance sampling", JMLR 25), WAIC (Watanabe 2010), the paired
 * comparison of models, and the LOO probability integral transform as a calibration check.
 * The definitions and every convention (tail length, the generalized Pareto fit, the MCSE, the
 * SEs, the printed tables) are those of the R package loo 2.5.1, which the tests reproduce to
 * 1e-8 relative (tests/r/ holds the reference and its provenance).
 *
 * em_psis is the generic building block on one vector of log importance ratios; the
 * variational diagnostics of Yao, Vehtari, Simpson & Gelman (2018) use it on log p - log q.
 *
 * Layout of a log-likelihood matrix: S draws by N observations, a row per draw, so
 * log_lik[s * N + i] is observation i under draw s (the row layout of a CmdStan CSV file).
 * Draws are chain-major: the S / nchains draws of chain 1, then chain 2, ...; or, when the
 * caller gives chain ids, chain_id[s] in 1..C names the chain of draw s (loo's chain_id).
 *
 * Pareto k̂ thresholds. loo 2.5.1 classifies k̂ as good (<= 0.5), ok (<= 0.7), bad (<= 1) and
 * very bad (> 1), and that is the table printed here. The 2024 JMLR paper replaces the fixed
 * 0.7 with the sample-size-dependent min(1 - 1 / log10(S), 0.7) (above it the PSIS estimate's
 * error falls too slowly with S to trust; loo adopted it in 2.7.0) and
 * drops the 0.5 "ok" line; em_loo reports that threshold and the count above it next to the
 * 2.5.1 table, and the MCSE of elpd_loo is NaN when any k̂ > 0.7, as in loo 2.5.1.
 *
 * The MCSE of elpd_loo is loo 2.5.1's mcse_elpd, which is deterministic despite its look of a
 * simulation: the PSIS estimate of each p(y_i | y_-i) is approximated by a normal whose variance
 * is the weighted squared deviations of the likelihoods, and the sd of the log of its 1000
 * quantiles at (r - 3/8) / (1000 + 1/4), divided by sqrt(r_eff), is the MCSE.
 *
 * Deviations from loo 2.5.1 (deliberate, documented where they arise): too few draws for a
 * tail of 5 (S <= 20) is an error here, where loo warns and returns k̂ = Inf unsmoothed; an
 * observation whose likelihoods span more than e^700 over the draws keeps a finite MCSE here
 * (computed on the scale of exp(elpd_i)) where loo's exp(log_lik) underflows to an NA; warnings
 * are flags and counts in the results, never printed.
 */
#ifndef EMBER_LOO_H
#define EMBER_LOO_H

#include <stdio.h>

#include "ember/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- PSIS on one vector ------------------------------------------------------------------ */

typedef struct em_psis_diag {
    double pareto_k; /* k̂ of the fitted tail; Inf when the tail is constant (as loo) */
    size_t tail_len; /* M = ceil(min(0.2 S, 3 sqrt(S / r_eff))) */
    double n_eff;    /* r_eff / sum of the squared normalised weights (loo's psis_n_eff) */
} em_psis_diag;

/* Pareto smoothed importance sampling of S log ratios (loo's psis on a vector): the largest M
 * ratios are replaced by the expected order statistics of a generalized Pareto distribution
 * fitted to them, the weights are truncated at the largest raw weight, and log_weights (S,
 * caller's buffer; may equal log_ratios) receives the normalised log weights (their exp sums
 * to 1). r_eff > 0 is the relative MCMC efficiency of the ratios (1 for independent draws).
 * Errors: NULL pointers, S <= 20 or r_eff not positive (EM_ERR_ARG), a NaN or infinite ratio
 * (EM_ERR_NONFINITE, naming its index). diag may be NULL. */
em_status em_psis(const double *log_ratios, size_t S, double r_eff, double *log_weights,
                  em_psis_diag *diag, em_error *err);

/* The generalized Pareto fit of Zhang & Stephens (2009), "A new and efficient estimation method
 * for the generalized Pareto distribution", Technometrics 51, as loo's gpdfit: the posterior mean
 * of θ = -k / σ over 30 + floor(sqrt(n)) grid points, and with wip the weakly informative prior
 * that shrinks k toward 0.5 as if 10 more observations had k = 0.5 (Vehtari et al. 2024, app. C).
 * x: n >= 1 exceedances >= 0 (any order; not modified). k is Inf when the fit is undefined. */
em_status em_gpdfit(const double *x, size_t n, int wip, double *k, double *sigma, em_error *err);

/* The k̂ above which PSIS with S draws is unreliable (Vehtari et al. 2024): min(1 - 1/log10 S, 0.7). */
double em_psis_k_threshold(size_t S);

/* ---- relative efficiency ----------------------------------------------------------------- */

/* loo's relative_eff on exp(log_lik) for each of the N observations: the ESS of the
 * likelihood values over whole (unsplit) chains, by loo 2.5.1's ess_rfun, divided by S. This is
 * not posterior's ess_basic: ess_rfun does not split chains, and its autocovariance keeps the
 * factor M / N of its FFT padding (internal/ess.h), which changes the result when there are
 * several chains whose length N is not a product of 2s, 3s and 5s. The likelihood is scaled by
 * exp(-max log_lik) first (the ESS does not change), so large log-likelihoods do not overflow.
 * chain_id (S values in 1..C, each chain equally long, every id present) or, when NULL, nchains
 * equal chain-major blocks (0 means 1). r_eff: N values (caller's buffer). */
em_status em_relative_eff(const double *log_lik, size_t S, size_t N, const int *chain_id,
                          size_t nchains, double *r_eff, em_error *err);

/* ---- PSIS-LOO ------------------------------------------------------------------------------ */

typedef struct em_loo_options {
    size_t nchains;        /* chain-major chains of equal length (0 means 1) */
    const int *chain_id;   /* or the chain (1..C) of each draw; overrides nchains */
    const double *r_eff;   /* N relative efficiencies; NULL computes them (em_relative_eff).
                            * loo(x) without r_eff uses 1: pass N ones for that. */
    int save_log_weights;  /* nonzero: keep the S x N normalised log weights (for LOO-PIT) */
} em_loo_options;

enum { EM_K_GOOD = 0, EM_K_OK, EM_K_BAD, EM_K_VERY_BAD, EM_K_CLASSES };

typedef struct em_loo_result {
    size_t S, N;
    /* pointwise, N each: loo's columns elpd_loo, mcse_elpd_loo, p_loo, looic and
     * influence_pareto_k (= pareto_k), with the diagnostics n_eff and r_eff, the log pointwise
     * predictive density lpd (for p_loo after a refit) and whether the value is exact */
    double *elpd_i, *mcse_elpd_i, *p_i, *looic_i, *pareto_k, *n_eff, *r_eff, *lpd_i;
    unsigned char *exact;
    double *log_weights; /* S x N (layout of log_lik) when save_log_weights, else NULL */
    /* totals: sum over observations; SE = sqrt(N) * sd of the pointwise values (loo) */
    double elpd_loo, se_elpd_loo, p_loo, se_p_loo, looic, se_looic;
    double mcse_elpd_loo; /* sqrt(sum mcse_elpd_i^2); NaN when any k̂ > 0.7 (loo 2.5.1) */
    /* loo 2.5.1's table: k̂ in (-Inf, 0.5], (0.5, 0.7], (0.7, 1], (1, Inf) */
    size_t k_count[EM_K_CLASSES];
    double k_min_n_eff[EM_K_CLASSES]; /* NaN for an empty class */
    /* the 2024 paper's threshold min(1 - 1/log10 S, 0.7) and how many k̂ exceed it */
    double k_threshold;
    size_t k_above_threshold;
} em_loo_result;

/* PSIS-LOO of an S x N log-likelihood matrix (layout above). opts may be NULL (one chain, r_eff
 * computed, no weights kept). *out is freed with em_loo_free. Errors name the place: a NaN or
 * infinite entry (draw, observation, value), S <= 20, chains that do not divide the draws,
 * r_eff not positive. */
em_status em_loo(const double *log_lik, size_t S, size_t N, const em_loo_options *opts,
                 em_loo_result **out, em_error *err);
void em_loo_free(em_loo_result *l);

/* Replace observation i's PSIS estimate by an exact one (for example from refitting the model
 * without it): elpd_i = elpd_exact, p_i = lpd_i - elpd_exact, looic_i = -2 elpd_exact, MCSE 0,
 * k̂ 0, exact[i] = 1, and recompute the totals, SEs, MCSE and k̂ tables (brms's reloo does the
 * same to loo's object). */
em_status em_loo_set_exact(em_loo_result *l, size_t i, double elpd_exact, em_error *err);

/* Print like loo 2.5.1's print.psis_loo, character for character: the dimensions, the
 * Estimate / SE table, the MCSE line and the Pareto k table with its closing remarks; digits as
 * loo's (0 means 1). The 2024 threshold is not part of loo 2.5.1's print: read k_threshold and
 * k_above_threshold. */
em_status em_loo_print(FILE *f, const em_loo_result *l, int digits, em_error *err);

/* The pointwise values as CSV, written atomically: a header
 * `obs,elpd_loo,mcse_elpd_loo,p_loo,looic,influence_pareto_k,n_eff,r_eff,exact`, obs from 1,
 * numbers in %.17g (NaN as NaN, infinities as Inf and -Inf). */
em_status em_loo_write_csv(const em_loo_result *l, const char *path, em_error *err);

/* ---- WAIC -------------------------------------------------------------------------------- */

typedef struct em_waic_result {
    size_t S, N;
    double *elpd_i, *p_i, *waic_i; /* N each: lpd_i - p_i, the draws' variance of log_lik, -2 elpd_i */
    double elpd_waic, se_elpd_waic, p_waic, se_p_waic, waic, se_waic;
    size_t p_waic_high; /* observations with p_waic_i > 0.4, where loo warns to use loo instead */
} em_waic_result;

/* WAIC of an S x N log-likelihood matrix (Vehtari, Gelman & Gabry 2017, eq. 11-13, as loo's
 * waic). S >= 2. */
em_status em_waic(const double *log_lik, size_t S, size_t N, em_waic_result **out, em_error *err);
void em_waic_free(em_waic_result *w);
/* Print like loo's print.waic, including its p_waic remark when p_waic_high > 0. */
em_status em_waic_print(FILE *f, const em_waic_result *w, int digits, em_error *err);

/* ---- model comparison -------------------------------------------------------------------- */

typedef struct em_loo_comparison {
    size_t K, N;
    /* K rows, best model first (highest elpd; ties keep the input order) */
    size_t *order;       /* the input index of each row */
    char **names;        /* its name */
    double *elpd_diff;   /* sum_i (elpd_row,i - elpd_best,i): 0 for the first row */
    double *se_diff;     /* sqrt(N) * sd of those pointwise differences */
    double *elpd, *se_elpd; /* the row's own total and SE */
} em_loo_comparison;

/* loo's loo_compare on K >= 2 pointwise elpd vectors over the same N observations (from LOO,
 * WAIC, K-fold, ...). names may be NULL ("model1", "model2", ... as loo). */
em_status em_elpd_compare(const double *const *elpd_i, size_t K, size_t N, const char *const *names,
                          em_loo_comparison **out, em_error *err);
/* The same on em_loo results. */
em_status em_loo_compare(const em_loo_result *const *fits, size_t K, const char *const *names,
                         em_loo_comparison **out, em_error *err);
void em_loo_comparison_free(em_loo_comparison *c);
/* Print like loo's print.compare.loo: elpd_diff and se_diff, digits as loo's (0 means 1). */
em_status em_loo_comparison_print(FILE *f, const em_loo_comparison *c, int digits, em_error *err);

/* ---- LOO-PIT ----------------------------------------------------------------------------- */

typedef enum em_pit_ties {
    /* P(yrep < y) + U P(yrep = y) with U ~ U(0,1) from rng: uniform for discrete data when the
     * model is calibrated (Czado, Gneiting & Held 2009, Biometrics 65). loo 2.5.1 has no
     * loo_pit; the R ecosystem's is rstantools' loo_pit.default, which randomises this way since
     * rstantools 2.5.0 (2024) and before that returned P(yrep <= y), not uniform for discrete y */
    EM_PIT_RANDOMIZED = 0,
    /* P(yrep < y) + P(yrep = y) / 2, the mid-PIT: deterministic, not uniform for discrete data */
    EM_PIT_MID
} em_pit_ties;

/* LOO-PIT of each observation: the PSIS-weighted predictive CDF at y_i,
 * sum_s w_si [yrep_si < y_i] (+ the ties term), capped at 1. yrep and log_weights are S x N in
 * the layout of log_lik (log_weights normalised, as em_loo's saved log_weights); for continuous
 * data ties have probability 0 and both rules give the same value. rng is needed only for
 * EM_PIT_RANDOMIZED when a tie occurs. pit: N values (caller's buffer). */
em_status em_loo_pit(const double *yrep, const double *y, const double *log_weights, size_t S,
                     size_t N, em_pit_ties ties, em_rng *rng, double *pit, em_error *err);

/* Kolmogorov–Smirnov test of n values against U(0,1): D = sup |F_n(u) - u| and its p-value,
 * exact by Marsaglia, Tsang & Wang (2003), "Evaluating Kolmogorov's distribution", J. Stat.
 * Softw. 8(18) (R's ks.test with exact = TRUE). LOO-PIT values are not independent (each
 * observation is in the other N - 1 fits), so the p-value is a screening figure rather than a
 * calibrated test; Säilynoja, Bürkner & Vehtari (2022, Stat. Comput. 32) give simultaneous
 * ECDF bands instead, and the figure below draws the ECDF to read it that way. */
em_status em_ks_uniform(const double *u, size_t n, double *D, double *p_value, em_error *err);

/* Write dir/<name>.dat (the sorted PIT values with their ECDF) and dir/<name>.gp, a gnuplot
 * script that draws the ECDF against the uniform's diagonal with the 95% KS band into
 * <name>.png (`gnuplot <name>.gp` in dir; `outfile` may be set with -e). Both atomically. */
em_status em_loo_pit_figure(const char *dir, const char *name, const double *pit, size_t n,
                            em_error *err);

/* ---- posterior predictive checks and the Pareto k plot (gnuplot, as the LOO-PIT figure) ---- */

/* Density overlay (bayesplot's ppc_dens_overlay): Gaussian kernel densities (R's bw.nrd0) of y
 * (n values) and of nshow of the S replicated data sets yrep (S x n, row per draw; nshow 0:
 * min(S, 100), spread evenly over the draws), as dir/<name>.dat and dir/<name>.gp. */
em_status em_ppc_density_figure(const char *dir, const char *name, const double *y, size_t n, const double *yrep,
                                size_t S, size_t nshow, em_error *err);
/* Bars with intervals for counts or binary data (ppc_bars): how many observations take each
 * value 0..max(y) (at most 60 bars, the last gathering larger ones), against the median and the
 * 90% interval of the same frequencies over the replicated data sets. y must be counts. */
em_status em_ppc_bars_figure(const char *dir, const char *name, const double *y, size_t n, const double *yrep,
                             size_t S, em_error *err);
/* Pareto k of each observation (loo's plot of the diagnostic), with the 0.5, 0.7 and 1 lines and
 * the 2024 threshold; refitted observations marked. */
em_status em_pareto_k_figure(const char *dir, const char *name, const em_loo_result *l, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
