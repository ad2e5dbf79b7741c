/* fits.c — see fits.h. The code here is what the exported notebooks show as "the inference
 * calls", so it is written to be read. */
#include "fits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Part 2's guide, as in the tutorial: independent Normals for a and the three slopes with
 * learnable locations and scales, and a Normal for sigma with a learnable location and a
 * scale fixed at 0.05. */
void part2_guide(em_model *m, const void *arg) {
    const part2_guide_init *init = arg;
    const double zero = 0.0, one = 1.0, ones[3] = {1.0, 1.0, 1.0};
    em_var a_loc = em_param(m, "a_loc", &zero, 1, EM_CONSTRAINT_REAL);
    em_var a_scale = em_param(m, "a_scale", &one, 1, EM_CONSTRAINT_POSITIVE);
    em_var sigma_loc = em_param(m, "sigma_loc", &one, 1, EM_CONSTRAINT_POSITIVE);
    em_var weights_loc = em_param(m, "weights_loc", init->weights_loc, 3, EM_CONSTRAINT_REAL);
    em_var weights_scale = em_param(m, "weights_scale", ones, 3, EM_CONSTRAINT_POSITIVE);
    em_sample(m, "a", em_normal(m, a_loc, a_scale));
    em_sample(m, "bA", em_normal(m, em_slice(m, weights_loc, 0, 1), em_slice(m, weights_scale, 0, 1)));
    em_sample(m, "bR", em_normal(m, em_slice(m, weights_loc, 1, 1), em_slice(m, weights_scale, 1, 1)));
    em_sample(m, "bAR", em_normal(m, em_slice(m, weights_loc, 2, 1), em_slice(m, weights_scale, 2, 1)));
    em_sample(m, "sigma", em_normal(m, sigma_loc, 0.05));
}

em_status svi_fit_run(const svi_spec *spec, const rugged_data *d, uint64_t seed, FILE *log, svi_fit *out,
                      em_error *err) {
    memset(out, 0, sizeof *out);
    out->khat = NAN; /* a hand-written guide's draws have no log_g__ */
    em_autoguide *auto_guide = NULL;
    em_svi *svi = NULL;
    em_predictive *pred = NULL;
    em_rng *rng = NULL;
    em_status s = EM_OK;
    double t0 = now_seconds();

    /* the guide: an autoguide built from the model, or Part 2's hand-written one */
    em_model_fn guide;
    const void *guide_data;
    part2_guide_init init;
    if (spec->kind == GUIDE_HAND) {
        rng = em_rng_create(seed, 1); /* Pyro initialises weights_loc with torch.randn(3) */
        if (!rng) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", spec->name);
        for (int k = 0; k < 3; k++) init.weights_loc[k] = em_rng_normal(rng);
        guide = part2_guide;
        guide_data = &init;
    } else {
        em_autoguide_options gopt = {.init = spec->init, .seed = seed};
        auto_guide = em_autoguide_create((em_autoguide_kind)spec->kind, rugged_model, d, &gopt, err);
        if (!auto_guide) return err && err->status ? err->status : EM_ERR_ARG;
        guide = em_autoguide_fn;
        guide_data = auto_guide;
    }

    /* SVI: Trace ELBO with one particle per step, Adam */
    em_optim_config adam = em_optim_defaults(EM_OPTIM_ADAM, spec->lr);
    /* the TREND stopping rule is watched, not obeyed: the tutorials' step counts are kept, and
     * the step where the rule would have stopped is reported */
    em_svi_options sopt = {.elbo = EM_ELBO_TRACE, .num_particles = 1, .seed = seed, .stop = EM_SVI_STOP_TREND,
                           .window = 100};
    svi = em_svi_create(rugged_model, d, guide, guide_data, &adam, &sopt, err);
    if (!svi) {
        s = err && err->status ? err->status : EM_ERR_ARG;
        goto done;
    }
    for (int j = 0; j < spec->steps; j++) {
        if ((s = em_svi_run(svi, 1, NULL, err)) != EM_OK) goto done;
        if (em_svi_converged(svi) && !out->stop_step) out->stop_step = (size_t)j + 1;
        size_t nh;
        double loss = em_svi_loss_history(svi, &nh)[nh - 1];
        if (log && spec->log_every && j % spec->log_every == 0)
            fprintf(log, "[iteration %04d] loss: %.4f\n", j + 1, spec->per_datum ? loss / (double)d->n : loss);
    }
    out->skipped = em_svi_num_skipped(svi);

    /* the fitted guide: a precise −ELBO, its Gaussian and quantiles, and posterior draws */
    em_svi_result res = {.elbo = NAN, .elbo_se = NAN};
    if (!spec->draws_only && (s = em_svi_result_get(svi, 2000, &res, err)) != EM_OK) goto done;
    out->neg_elbo = -res.elbo;
    out->elbo_se = res.elbo_se;
    if (auto_guide && !spec->draws_only) {
        double L[NPAR * NPAR];
        const double probs[3] = {0.25, 0.5, 0.75};
        if ((s = em_autoguide_gaussian(auto_guide, em_svi_params(svi), out->loc, L, err)) != EM_OK) goto done;
        /* marginal scales: the row norms of the Cholesky factor */
        for (int i = 0; i < NPAR; i++) {
            double v = 0.0;
            for (int k = 0; k <= i; k++) v += L[i * NPAR + k] * L[i * NPAR + k];
            out->scale[i] = sqrt(v);
        }
        s = em_autoguide_quantiles(auto_guide, em_svi_params(svi), probs, 3, &out->quantiles[0][0], err);
        if (s != EM_OK) goto done;
        out->has_gaussian = 1;
    }
    char label[64];
    snprintf(label, sizeof label, "SVI (%s)", spec->name);
    if (auto_guide) {
        /* the guide's draws as a posterior of their own: summaries and CmdStan's variational file */
        s = em_posterior_from_guide(auto_guide, em_svi_params(svi), spec->ndraws, em_seed_mix(seed, 2), rugged_model, d,
                                    &out->posterior, err);
        if (s == EM_OK)
            s = em_posterior_set_svi_run(out->posterior, (size_t)spec->steps, spec->lr, out->stop_step != 0, err);
        out->khat = em_posterior_psis_k(out->posterior);
        if (s == EM_OK) s = post_from_posterior(out->posterior, label, &out->draws, err);
        if (s != EM_OK) goto done;
    } else {
        const char *const sites[NPAR] = {"a", "bA", "bR", "bAR", "sigma"};
        em_predictive_options popt = {.seed = em_seed_mix(seed, 2), .return_sites = sites, .nreturn = NPAR,
                                      .params = em_svi_params(svi)};
        s = em_predictive_guide(rugged_model, d, guide, guide_data, spec->ndraws, &popt, &pred, err);
        if (s != EM_OK) goto done;
        if ((s = post_alloc(&out->draws, label, 1, spec->ndraws, err)) != EM_OK) goto done;
        for (int p = 0; p < NPAR; p++) {
            const em_pred_site *site = em_predictive_site(pred, sites[p]);
            for (size_t i = 0; i < spec->ndraws; i++) out->draws.x[i * NPAR + p] = site->draws[i];
        }
    }
    out->seconds = now_seconds() - t0;

done:
    em_predictive_free(pred);
    em_svi_destroy(svi);
    em_autoguide_destroy(auto_guide);
    em_rng_destroy(rng);
    if (s != EM_OK) svi_fit_free(out);
    return s;
}

void svi_fit_free(svi_fit *f) {
    post_free(&f->draws);
    em_posterior_free(f->posterior);
    f->posterior = NULL;
}

em_status nuts_run(const rugged_data *d, const nuts_spec *spec, em_posterior **out, em_error *err) {
    em_mcmc_config cfg = em_mcmc_config_default(); /* NUTS, diagonal metric, target accept 0.8 */
    cfg.num_chains = spec->chains;
    cfg.num_samples = spec->samples;
    cfg.num_warmup = spec->warmup;
    cfg.seed = spec->seed;
    cfg.progress = spec->progress;
    cfg.handle_sigint = spec->handle_sigint;
    return em_fit_nuts(rugged_model, d, &cfg, out, err);
}

em_status post_from_posterior(const em_posterior *src, const char *label, post *p, em_error *err) {
    size_t nchains = em_posterior_num_chains(src), ndraws = em_posterior_num_draws(src);
    if (nchains == 0 || ndraws == 0) return em_error_set(err, EM_ERR_INTERRUPTED, "%s: no draws (no chain got past its warmup)", label);
    em_status s = post_alloc(p, label, nchains, ndraws, err);
    double *x = s == EM_OK ? malloc(nchains * ndraws * sizeof *x) : NULL;
    if (s == EM_OK && !x) s = em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", label);
    for (int q = 0; q < NPAR && s == EM_OK; q++) {
        if ((s = em_posterior_draws(src, param_names[q], x, err)) != EM_OK) break;
        for (size_t k = 0; k < nchains * ndraws; k++) p->x[k * NPAR + q] = x[k];
    }
    free(x);
    if (s != EM_OK) post_free(p);
    return s;
}
