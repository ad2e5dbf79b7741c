/* posterior.h — one handle for posterior draws, whatever made them.
 *
 * An analysis does the same few things after every fit: print a summary, take the draws of a
 * parameter, save the draws for R or Python, predict, and compute the pointwise
 * log-likelihood for model comparison. An em_posterior holds what those need — the draws per
 * chain (warmup kept apart), the sampler columns, the parameter names in CmdStan's style
 * ("beta.1", "L_Omega.2.1"), the method and its configuration, the timings and, when the draws
 * came from a model, the model and its data — so that each job is one call:
 *
 *     em_posterior *post = NULL;
 *     if (em_fit_nuts(model, &data, NULL, &post, &err) != EM_OK) ...   (4 chains, Stan's defaults)
 *     em_posterior_print(post, stdout, &err);                          summary + sampler checks
 *     em_posterior_write_cmdstan(post, "out", "fit", &err);            out/fit_1.csv ... (io.h)
 *     em_posterior_draws(post, "beta.2", x, &err);                     one parameter's draws
 *     em_posterior_predict(post, NULL, NULL, &pred, &err);             posterior predictive
 *     em_posterior_log_lik(post, NULL, &ll, &err);                     log p(y_i | θ) per draw
 *     em_posterior_free(post);
 *
 * Draws come from NUTS or static HMC (em_fit_nuts, em_posterior_from_mcmc), from a fitted
 * guide or a Laplace approximation (em_fit_svi, em_fit_laplace, em_posterior_from_guide), or
 * from CmdStan CSV files, Stan's own included (em_posterior_read_cmdstan in io.h). Draws that
 * are independent (a guide's) have no chains: their summaries omit R-hat and ESS rather than
 * print them as noise, and their MCSE is sd/√n.
 *
 * Layout of one column's draws, as everywhere in Ember: chain-major, x[c * ndraws + i]. The
 * number of draws per chain is the smallest any chain kept (a run interrupted by a signal cuts
 * the others to match), so R-hat and ESS always see equal chains; a chain stopped before its
 * first sampling draw is left out.
 */
#ifndef EMBER_POSTERIOR_H
#define EMBER_POSTERIOR_H

#include <stdio.h>

#include "ember/diagnostics.h"
#include "ember/loo.h"
#include "ember/mcmc.h"
#include "ember/model.h"
#include "ember/predictive.h"
#include "ember/svi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_posterior_method {
    EM_POSTERIOR_NUTS = 0,    /* NUTS chains (CmdStan: method = sample, engine = nuts) */
    EM_POSTERIOR_HMC,         /* static HMC chains (engine = static) */
    EM_POSTERIOR_VARIATIONAL, /* independent draws of a fitted guide (method = variational) */
    EM_POSTERIOR_LAPLACE,     /* independent draws of a Laplace approximation (method = laplace) */
    EM_POSTERIOR_PATHFINDER,  /* Pathfinder's draws (pathfinder.h; files: method = variational,
                                 ember_method = pathfinder) */
    EM_POSTERIOR_METHOD_COUNT
} em_posterior_method;

/* "nuts", "hmc", "variational", "laplace", "pathfinder". */
const char *em_posterior_method_name(em_posterior_method m);

typedef struct em_posterior em_posterior;

/* ---- one call from a model to a posterior ------------------------------------------------ */

/* NUTS (or HMC, by cfg->algorithm) on the model's unconstrained density; cfg NULL: Stan's
 * defaults (em_mcmc_config_default). The data are checked against their distributions'
 * supports first (a count of -1 is an error naming the site and the index). On EM_OK, and on
 * EM_ERR_INTERRUPTED with every finished draw, *out is a new posterior. */
em_status em_fit_nuts(em_model_fn model, const void *data, const em_mcmc_config *cfg, em_posterior **out,
                      em_error *err);

typedef struct em_svi_fit_config {
    em_autoguide_kind guide; /* EM_AUTO_DIAGONAL_NORMAL */
    em_elbo_kind elbo;       /* EM_ELBO_TRACE */
    size_t num_steps;        /* 10000 at most (the ELBO stopping rule may end it sooner) */
    double learning_rate;    /* 0.01 (Adam; in units of the initial scale when laplace_init) */
    int num_particles;       /* 1 */
    size_t num_draws;        /* 1000 posterior draws from the fitted guide */
    uint64_t seed;           /* 20260101 */
    em_svi_stop_rule stop;   /* EM_SVI_STOP_TREND (svi.h), at rel_tol 1e-4 */
    size_t window;           /* 100 steps per window of the stopping rule and of the averaging */
    int average;             /* 1: the guide is the iterates' average over the last window(s) */
    /* 1: start the guide at the Laplace approximation (its mode and marginal sds) and optimise
     * its location in units of those sds, so that a posterior sd of 1e-3 or 1e4 needs no
     * change of learning rate. When the Laplace fit fails (no mode found, a Hessian that is
     * not positive definite) a one-path Pathfinder (pathfinder.h) gives the start and the
     * units instead, and when that fails too the guide starts at init_to_median with unit
     * steps; the result says which (em_svi_fit_info). */
    int laplace_init;
    size_t elbo_particles;   /* 1000: particles of the final ELBO estimate */
    /* 0: the posterior holds the guide's draws; 1: draws resampled (with replacement) by
     * their PSIS weights p/q (em_posterior_resample), which corrects the guide towards the
     * posterior when k̂ < 0.7 */
    int resample;
} em_svi_fit_config;

/* The defaults above. The pre-verdict behaviour (a REL_MEAN rule, the last iterate, the
 * prior-median start) is stop = EM_SVI_STOP_REL_MEAN, average = 0, laplace_init = 0. */
em_svi_fit_config em_svi_fit_config_default(void);

/* SVI with an autoguide (Adam, cfg's stopping rule, averaging and start), the final ELBO
 * estimated with cfg->elbo_particles particles, then cfg->num_draws draws from the guide with
 * their Pareto k̂ (em_posterior_psis_k). A run that did not converge is not an error: the
 * posterior says so (em_posterior_svi_info, em_posterior_print). cfg NULL: the defaults. */
em_status em_fit_svi(em_model_fn model, const void *data, const em_svi_fit_config *cfg, em_posterior **out,
                     em_error *err);

/* The Laplace approximation at the mode (EM_AUTO_LAPLACE), ndraws independent draws. */
em_status em_fit_laplace(em_model_fn model, const void *data, size_t ndraws, uint64_t seed, em_posterior **out,
                         em_error *err);

/* ---- from results made by the engines directly (the full control) ------------------------ */

/* Takes ownership of res (freed with the posterior, also on failure). model and data are
 * optional (NULL): without them prediction and log-likelihood are errors. */
em_status em_posterior_from_mcmc(em_mcmc_result *res, em_model_fn model, const void *data, em_posterior **out,
                                 em_error *err);

/* ndraws draws of a fitted autoguide (params: the SVI's store; NULL for Laplace). The guide
 * and its model are read now, not kept. Each draw also records log_p__ (the model's log
 * density at the draw, on the unconstrained space with the Jacobian, as CmdStan writes it)
 * and log_g__ (the guide's log density there), the two columns of CmdStan's variational
 * files and the log importance ratios of Yao et al. (2018). */
em_status em_posterior_from_guide(em_autoguide *g, const em_param_store *params, size_t ndraws, uint64_t seed,
                                  em_model_fn model, const void *data, em_posterior **out, em_error *err);

/* Attach a model to a posterior that has none (one read from files): its latent sites must
 * have the posterior's parameter names. Needed for prediction and log-likelihood. */
em_status em_posterior_attach_model(em_posterior *p, em_model_fn model, const void *data, em_error *err);

/* Labels written into CmdStan files' headers ("model = ...", "data file = ..."). */
em_status em_posterior_set_labels(em_posterior *p, const char *model_name, const char *data_file, em_error *err);

/* How a guide's draws were fitted, for the files' headers (em_fit_svi records it itself):
 * the SVI steps run, Adam's learning rate, and whether the ELBO stopping rule fired. */
em_status em_posterior_set_svi_run(em_posterior *p, size_t steps, double learning_rate, int converged, em_error *err);

void em_posterior_free(em_posterior *p);

/* ---- whether variational draws can be trusted ---------------------------------------------- */

/* What em_fit_svi did: the run's verdict (svi.h) and how it started. */
typedef struct em_svi_fit_info {
    em_svi_result run;
    int laplace_init;    /* the guide started at the Laplace approximation, in its units */
    int pathfinder_init; /* or, the Laplace fit having failed, at a one-path Pathfinder's */
} em_svi_fit_info;

/* EM_OK and *info for a posterior made by em_fit_svi; EM_ERR_ARG otherwise. */
em_status em_posterior_svi_info(const em_posterior *p, em_svi_fit_info *info, em_error *err);

/* The Pareto k̂ of the log importance ratios log_p__ − log_g__ of independent draws (a guide's,
 * a Laplace approximation's), by em_psis (loo.h): the diagnostic of Yao, Vehtari, Simpson &
 * Gelman (2018), "Yes, but did it work?: Evaluating variational inference", ICML. k̂ < 0.7:
 * the approximation is close enough for PSIS-corrected expectations (em_posterior_resample);
 * above, its draws are not to be trusted, and its expectations not even after correction. NaN
 * for MCMC draws, for draws without the two columns, and for fewer than 21 draws. */
double em_posterior_psis_k(const em_posterior *p);
/* The verdict em_posterior_print states: k̂ < em_psis_k_threshold(S) (0.7 for S ≥ 2154). */
int em_posterior_psis_ok(const em_posterior *p);

/* A posterior of ndraws draws resampled with replacement from p's independent draws with
 * probabilities their PSIS-smoothed importance weights (sampling importance resampling;
 * Zhang et al. 2022 sec. 2.5 use it for Pathfinder). The draws keep their columns; the
 * result has no log ratios of its own (k̂ is the source's). Errors: MCMC draws, no log ratios,
 * non-finite ones. */
em_status em_posterior_resample(const em_posterior *p, size_t ndraws, uint64_t seed, em_posterior **out,
                                em_error *err);

/* ---- what it holds ---------------------------------------------------------------------- */

em_posterior_method em_posterior_method_of(const em_posterior *p);
/* Chains (1 for independent draws) and draws per chain. */
size_t em_posterior_num_chains(const em_posterior *p);
size_t em_posterior_num_draws(const em_posterior *p);
/* Parameters (constrained outputs, not the sampler columns) and their names. */
size_t em_posterior_num_params(const em_posterior *p);
const char *em_posterior_param_name(const em_posterior *p, size_t i);
const char *const *em_posterior_param_names(const em_posterior *p);
/* Every column: the method's own first (lp__, accept_stat__, ... for MCMC; lp__, log_p__,
 * log_g__ for variational and Laplace draws), then the parameters. */
size_t em_posterior_num_columns(const em_posterior *p);
const char *const *em_posterior_column_names(const em_posterior *p);
/* Wall time of the fit (seconds; 0 when unknown, as for files). */
double em_posterior_wall_seconds(const em_posterior *p);
/* Divergent sampling transitions over all chains (0 for independent draws). */
size_t em_posterior_num_divergent(const em_posterior *p);
/* The MCMC result behind the posterior, or NULL (guide draws, files). */
const em_mcmc_result *em_posterior_mcmc(const em_posterior *p);

/* The column called name: a parameter ("beta.2") or a method column ("lp__", "divergent__").
 * Returns its index in em_posterior_column_names, or -1 with EM_ERR_ARG naming it and the
 * nearest names the posterior has. */
long em_posterior_find(const em_posterior *p, const char *name, em_error *err);

/* Draws of the column called name, chain-major: out[c * ndraws + i], num_chains × num_draws
 * values. */
em_status em_posterior_draws(const em_posterior *p, const char *name, double *out, em_error *err);
/* The same for column j (an index from em_posterior_find); j out of range is EM_ERR_INDEX. */
em_status em_posterior_column(const em_posterior *p, size_t j, double *out, em_error *err);

/* ---- summaries -------------------------------------------------------------------------- */

/* Mean, MCSE, sd, 5/50/95% quantiles and, for chains, bulk and tail ESS and R-hat of every
 * parameter (diagnostics.h). Free with em_summary_free. */
em_status em_posterior_summary(const em_posterior *p, em_summary **out, em_error *err);
/* The summary table, then for chains the sampler's checks as CmdStan's diagnose states them:
 * divergences, tree-depth hits, E-BFMI below 0.3, R-hat above 1.01 and ESS below 100 per
 * chain, each named, or a line saying none was found. */
em_status em_posterior_print(const em_posterior *p, FILE *f, em_error *err);
/* The summary as CSV (em_summary_to_csv), written atomically to path. */
em_status em_posterior_write_summary(const em_posterior *p, const char *path, em_error *err);

/* ---- prediction and log-likelihood ------------------------------------------------------ */

/* Posterior predictive: the model run once per draw (every draw of every chain, chain-major,
 * or opt->ndraws of them spread evenly) on data (NULL: the data it was fitted to), its observe
 * sites drawn from their likelihoods.
 * An observe site given no data (em_observe with y == NULL) is simply predicted, so new data
 * need no dummy response. opt as em_predictive_*; opt->seed 0 uses the posterior's. */
em_status em_posterior_predict(const em_posterior *p, const void *data, const em_predictive_options *opt,
                               em_predictive **out, em_error *err);

/* Prior predictive of the posterior's model (ndraws draws from the priors). */
em_status em_posterior_predict_prior(const em_posterior *p, const void *data, size_t ndraws,
                                     const em_predictive_options *opt, em_predictive **out, em_error *err);

/* Pointwise log-likelihood: for every observed site (or only the site called site), the
 * draws × observations matrix log p(y_i | θ_d) — Stan's log_lik — in out's sites (draws[d *
 * len + i]). Draws are chain-major as in em_posterior_draws; the chain of draw d is
 * d / em_posterior_num_draws. Masked and scaled sites are scored unmasked and unscaled. */
em_status em_posterior_log_lik(const em_posterior *p, const char *site, em_predictive **out, em_error *err);
/* The same streamed: each draw's row log p(y_i | θ_d), i = 1..n, goes to fn as it is made
 * (predictive.h's on_draw) and none is kept, so memory is one draw's whatever the number of
 * draws — for a running reduction (lppd, WAIC's sums) over data too large for draws × n. */
em_status em_posterior_log_lik_each(const em_posterior *p, const char *site, em_pred_draw_fn fn, void *arg,
                                    em_error *err);

/* ---- model comparison (loo.h on the posterior's own log-likelihood) --------------------- */

/* PSIS-LOO of the observed site called site (NULL: the model's only observed site), the
 * chains' relative efficiencies computed (loo(log_lik, r_eff = relative_eff(...)) in R). */
em_status em_posterior_loo(const em_posterior *p, const char *site, em_loo_result **out, em_error *err);

/* Exact refits for the observations PSIS cannot be trusted with: for every observation whose
 * k̂ exceeds k_max (0: 0.7, loo 2.5.1's threshold; -INFINITY: every one), the model is sampled again with that
 * observation left out (em_leave_out_handler), and its elpd_i becomes the exact
 * log mean_s p(y_i | θ_s) over the refit's draws (em_loo_set_exact), as brms's reloo does.
 * cfg NULL: the posterior's own configuration. *nrefits (may be NULL) counts the refits. The
 * posterior must be from NUTS or HMC, with its model attached. */
em_status em_posterior_reloo(const em_posterior *p, const char *site, em_loo_result *loo, double k_max,
                             const em_mcmc_config *cfg, size_t *nrefits, em_error *err);

/* K-fold cross-validation: the model refitted K times, each time with one fold of the
 * observations left out, and elpd_i = log mean_s p(y_i | θ_s) for the held-out ones. folds: N
 * values in 0..K-1, or NULL for a random split into K folds of near-equal size (seeded by
 * cfg->seed). Returned as an em_loo_result whose every value is exact (elpd_loo there is
 * elpd_kfold). */
em_status em_posterior_kfold(const em_posterior *p, const char *site, size_t K, const size_t *folds,
                             const em_mcmc_config *cfg, em_loo_result **out, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
