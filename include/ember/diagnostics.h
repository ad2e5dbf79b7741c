/* diagnostics.h — convergence diagnostics and posterior summaries for MCMC draws.
 *
 * After a run, these functions say whether the chains agree (R-hat), how much independent
 * information the draws hold (effective sample size, ESS), how precise the posterior mean is
 * (Monte Carlo standard error), and summarise each parameter (mean, sd, quantiles, HPDI) in a
 * table or CSV. R-hat and ESS follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
 * "Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
 * of MCMC", Bayesian Analysis 16(2), with the exact conventions of the R package `posterior`
 * (1.4), against which the tests cross-check to 1e-6 relative. E-BFMI follows Betancourt (2016),
 * "Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte Carlo".
 *
 * Layout of one parameter's draws: chain-major, draws[c * ndraws + i] is draw i of chain c.
 *
 * Missing values. Where `posterior` returns NA the functions here return NaN: constant draws
 * (R-hat and ESS are undefined), too few draws (ESS needs at least 3 draws per split chain, i.e.
 * ndraws >= 6; R-hat needs ndraws >= 4), or an NaN/infinite draw. A constant input is not an
 * error (err is left untouched); invalid arguments (nchains or ndraws 0, NULL pointers), a
 * non-finite draw and running out of memory also set err (which may be NULL) with a message
 * naming the function and the offending index. Two details follow posterior on purpose:
 * "constant" means max - min < DBL_EPSILON in absolute terms (so draws spread over less than
 * 2.2e-16 count as constant whatever their magnitude), and the autocorrelation sum quirk of
 * posterior's .ess for a loop that never runs is kept. One differs: posterior still ranks
 * infinite draws in ess_bulk and rhat; here any infinite draw gives NaN and EM_ERR_NONFINITE.
 *
 * Divergences and max-treedepth hits are plain column counts: em_count_nonzero() on the
 * divergent__ column, em_count_ge() on treedepth__ with the sampler's maximum depth.
 */
#ifndef EMBER_DIAGNOSTICS_H
#define EMBER_DIAGNOSTICS_H

#include <stdio.h>

#include "ember/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- one parameter, chain-major draws[c * ndraws + i] ---------------------------------- */

/* posterior::rhat — max of the bulk R-hat (rank-normalised split chains) and the tail R-hat
 * (rank-normalised split chains of |x - median(x)|). NaN if either is undefined. */
double em_rhat(const double *draws, size_t nchains, size_t ndraws, em_error *err);
/* posterior::rhat_basic — the classic split R-hat of the raw values. */
double em_rhat_basic(const double *draws, size_t nchains, size_t ndraws, em_error *err);
/* posterior::ess_bulk — ESS of the rank-normalised split chains. */
double em_ess_bulk(const double *draws, size_t nchains, size_t ndraws, em_error *err);
/* posterior::ess_tail — min of the ESS of I(x <= q05) and I(x <= q95) over split chains. */
double em_ess_tail(const double *draws, size_t nchains, size_t ndraws, em_error *err);
/* posterior::ess_basic (= ess_mean) — ESS of the raw split chains. */
double em_ess_basic(const double *draws, size_t nchains, size_t ndraws, em_error *err);
/* posterior::ess_quantile — ESS of I(x <= quantile(x, prob)) over split chains. */
double em_ess_quantile(const double *draws, size_t nchains, size_t ndraws, double prob,
                       em_error *err);
/* posterior::mcse_mean — sd(x) / sqrt(ess_basic(x)), sd over all draws pooled. */
double em_mcse_mean(const double *draws, size_t nchains, size_t ndraws, em_error *err);

/* ---- plain samples ---------------------------------------------------------------------- */

/* Sample quantile with R's default type-7 interpolation (what posterior::quantile2 uses):
 * h = (n-1)p, result (1-g) x(floor h) + g x(floor h + 1) of the sorted sample. NaN when n is 0,
 * p is outside [0,1] or any x is NaN (x is not modified). */
double em_quantile(const double *x, size_t n, double p);
/* The k quantiles probs[j] of one sample with one sort: out[j] is em_quantile(x, n, probs[j]),
 * bit for bit (per-row bands over 10^7 rows sort each row once, not once per quantile). A NaN
 * in x or a probability outside [0, 1] is an error naming it. */
em_status em_quantiles(const double *x, size_t n, const double *probs, size_t k, double *out, em_error *err);
/* Mean and sample standard deviation (n-1 denominator; NaN for n < 2). */
double em_mean(const double *x, size_t n);
double em_sd(const double *x, size_t n);

/* Highest posterior density interval estimated from draws: the narrowest interval
 * [x(i), x(i+k-1)] of the sorted draws that holds k = ceil(prob * n) of them (the lowest such
 * interval on a tie). prob in (0, 1]; the draws must be finite. */
em_status em_hpdi(const double *x, size_t n, double prob, double *lo, double *hi, em_error *err);

/* E-BFMI of one chain from its energy__ values (Betancourt 2016):
 * sum_i (E_i - E_{i-1})^2 / sum_i (E_i - mean E)^2. Values below 0.3 suggest the momentum
 * resampling explores the energy distribution poorly. NaN for n < 2, constant or non-finite
 * energies. */
double em_ebfmi(const double *energy, size_t n);

/* Number of nonzero entries (divergent__), and of entries >= threshold (treedepth__ hits). */
size_t em_count_nonzero(const double *x, size_t n);
size_t em_count_ge(const double *x, size_t n, double threshold);

/* ---- the summary table ------------------------------------------------------------------ */

typedef enum em_draws_layout {
    /* draws[(c * ndraws + i) * nparams + p]: a row per draw, as in a CmdStan CSV file */
    EM_LAYOUT_CHAIN_DRAW_PARAM = 0,
    /* draws[(p * nchains + c) * ndraws + i]: each parameter's block is chain-major */
    EM_LAYOUT_PARAM_CHAIN_DRAW = 1
} em_draws_layout;

typedef struct em_param_summary {
    char *name;
    double mean, sd, median, q5, q95;
    double ess_bulk, ess_tail, rhat, mcse_mean;
} em_param_summary;

typedef struct em_summary {
    size_t nparams, nchains, ndraws;
    em_param_summary *params;
    int independent; /* independent draws (em_summarize_independent): no R-hat or ESS */
} em_summary;

/* Summarise nparams parameters. names may be NULL (then "p[1]", "p[2]", ...). *out is set
 * whenever memory allows, even when the status is not EM_OK, so the caller can print what was
 * computed; free it with em_summary_free. A parameter with a NaN or infinite draw gets NaN in
 * every column and the status EM_ERR_NONFINITE naming it (the first one); ndraws < 4 gives NaN
 * diagnostics and EM_ERR_ARG naming the first parameter; nchains == 0 or ndraws == 0 give
 * EM_ERR_ARG and no summary. Constant parameters get NaN R-hat and ESS with status EM_OK. */
em_status em_summarize(const double *draws, size_t nchains, size_t ndraws, size_t nparams,
                       const char *const *names, em_draws_layout layout, em_summary **out,
                       em_error *err);
/* The same for ndraws independent draws (a guide's, a Laplace approximation's): mean, sd,
 * quantiles and MCSE = sd / sqrt(ndraws); R-hat and ESS are NaN and the table omits them.
 * layout EM_LAYOUT_CHAIN_DRAW_PARAM: a row per draw; EM_LAYOUT_PARAM_CHAIN_DRAW: a block per
 * parameter. */
em_status em_summarize_independent(const double *draws, size_t ndraws, size_t nparams, const char *const *names,
                                   em_draws_layout layout, em_summary **out, em_error *err);
void em_summary_free(em_summary *s);

/* An aligned table: name, mean, mcse, sd, 5%, 50%, 95%, ess_bulk, ess_tail, r_hat (the last
 * three only for chains: not for a summary of independent draws). Location and
 * scale columns get `digits` significant digits (0 means 3), ESS is rounded to an integer,
 * R-hat has 3 decimals (so 1.004 and 1.012 stay distinguishable); undefined values print NA. */
em_status em_summary_print(FILE *f, const em_summary *s, int digits, em_error *err);
/* CSV with header `param,mean,sd,q5,q50,q95,ess_bulk,ess_tail,r_hat,mcse_mean` (without
 * ess_bulk, ess_tail and r_hat for independent draws), numbers with `digits`
 * significant digits (0 means 17, which round-trips), NaN written as NaN, names quoted when
 * they hold a comma, quote or newline. Appends to out. */
em_status em_summary_to_csv(const em_summary *s, em_buf *out, int digits, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
