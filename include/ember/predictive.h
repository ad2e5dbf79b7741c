/* predictive.h — prior and posterior predictive draws, with per-element summaries.
 *
 * Given draws of a model's latent sites — from a guide (SVI), from NUTS's unconstrained θ draws
 * mapped through the model's latent layout, or given directly per site — the model is run once
 * per draw under substitute (the latents take the draw's values) + seed + trace, with every
 * observe site turned into a draw from its likelihood (Pyro's Predictive). The result holds the
 * draws of the requested sites: latent, observed (posterior predictive y) or deterministic (a
 * regression line). The model may be given new data, e.g. a grid of predictor values: the
 * latent sites keep their names and lengths while observations take the new shape.
 *
 * Observe sites are drawn by a small handler that clears is_observed; their data only fix the
 * length (and are never read or modified), so a model may pass y == NULL to em_observe for the
 * sites it only predicts (new data need no dummy response). Plates do not subsample in
 * predictive runs.
 */
#ifndef EMBER_PREDICTIVE_H
#define EMBER_PREDICTIVE_H

#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_pred_site em_pred_site;

/* A consumer of streamed draws (em_predictive_options.on_draw): values are the len values of
 * site in draw d (0-based, in draw order), valid only during the call. A status other than
 * EM_OK stops the run and is returned (with err, which the callback may set). */
typedef em_status (*em_pred_draw_fn)(void *arg, size_t d, const em_pred_site *site, const double *values,
                                     em_error *err);

typedef struct em_predictive_options {
    uint64_t seed;
    /* Sites to return; NULL with nreturn 0 returns every sample, observe and deterministic site.
     * A name that no site of the model has is an error naming it. */
    const char *const *return_sites;
    size_t nreturn;
    em_param_store *params; /* model (and guide) parameters; NULL: their initial values */
    int keep_observed;      /* 1: observe sites keep their data instead of being drawn */
    /* Streaming: each draw's values of every returned site go to on_draw(on_draw_arg, ...) as
     * they are made and are not kept, so memory is one draw's rather than ndraws × len (a
     * predictive or log-likelihood over 10^7 rows, reduced as it comes: running means,
     * log-sum-exps, a file). The result then lists the sites with draws NULL. The values
     * and their order are those a stored run would hold. */
    em_pred_draw_fn on_draw;
    void *on_draw_arg;
    /* 0 uses every draw; k makes k of them, as brms's ndraws does for a figure or a quick look:
     * from given draws (em_predictive_posterior, _theta, _log_lik, em_posterior_predict) spread
     * evenly over them, draw j of the result from draw floor(j·S/k) of the S given; the prior
     * and the guide simply run k times. k ≥ S uses every draw. */
    size_t ndraws;
} em_predictive_options;

/* The draws of one site: draws[d * len + i] is element i of draw d (NULL when streamed). */
struct em_pred_site {
    char *name;
    em_site_kind kind;
    size_t len;
    double *draws;
};

typedef struct em_predictive {
    size_t ndraws;
    size_t nsites;
    em_pred_site *sites;
} em_predictive;

void em_predictive_free(em_predictive *p);
/* The site called name, or NULL. */
const em_pred_site *em_predictive_site(const em_predictive *p, const char *name);

/* Prior predictive: ndraws runs of the model with every latent drawn from its prior. */
em_status em_predictive_prior(em_model_fn model, const void *data, size_t ndraws, const em_predictive_options *opt,
                              em_predictive **out, em_error *err);

/* From a guide: each draw runs the guide (under trace and seed), then the model with the
 * guide's latent values replayed. */
em_status em_predictive_guide(em_model_fn model, const void *data, em_model_fn guide, const void *guide_data,
                              size_t ndraws, const em_predictive_options *opt, em_predictive **out, em_error *err);

/* From constrained draws per site: nsites names with lengths lens; draws is ndraws rows of
 * Σ lens values (the sites end to end, in the given order). */
em_status em_predictive_posterior(em_model_fn model, const void *data, const char *const *names, const size_t *lens,
                                  size_t nsites, const double *draws, size_t ndraws,
                                  const em_predictive_options *opt, em_predictive **out, em_error *err);

/* From unconstrained draws θ (ndraws rows of em_logdensity_dim(layout) values, e.g. NUTS's)
 * of a density made by em_logdensity_from_model: each site's slice goes through its transform. */
em_status em_predictive_theta(em_model_fn model, const void *data, const em_logdensity *layout,
                              const double *theta, size_t ndraws, const em_predictive_options *opt,
                              em_predictive **out, em_error *err);

/* Pointwise log-likelihood (Stan's log_lik): the same runs with every observe site kept at its
 * data, returning for each observed site (return_sites selects some) the terms
 * log p(y_i | draw d) of its density in draws[d * len + i] — one per observation (per event
 * of a multivariate site), unscaled and unmasked. The data are checked against their
 * distributions' supports first. */
em_status em_predictive_log_lik(em_model_fn model, const void *data, const char *const *names, const size_t *lens,
                                size_t nsites, const double *draws, size_t ndraws, const em_predictive_options *opt,
                                em_predictive **out, em_error *err);
em_status em_predictive_log_lik_theta(em_model_fn model, const void *data, const em_logdensity *layout,
                                      const double *theta, size_t ndraws, const em_predictive_options *opt,
                                      em_predictive **out, em_error *err);

/* Per-element summary over the draws: mean, sd (n−1), the 5/50/95% quantiles (type 7) and the
 * 90% highest posterior density interval. */
typedef struct em_pred_summary {
    double mean, sd, q5, q50, q95, hpdi_lo, hpdi_hi;
} em_pred_summary;

/* out has site->len entries. Non-finite draws are EM_ERR_NONFINITE naming the element. */
em_status em_pred_site_summary(const em_pred_site *site, size_t ndraws, em_pred_summary *out, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
