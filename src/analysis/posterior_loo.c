/* posterior_loo.c — PSIS-LOO, exact refits and K-fold cross-validation of a posterior's model.
 * See posterior.h.
 *
 * PSIS-LOO reads the pointwise log-likelihood the posterior computes and hands it to loo.c with
 * the chains' ids. Refits run the same model with the held-out observations left out of its log
 * density by a leave-out handler (so the data need not be rebuilt and the model function need
 * not know), and score each held-out observation by log mean_s p(y_i | θ_s) over the refit's
 * draws (Vehtari, Gelman & Gabry 2017, sec. 2.3 for refits of the problematic observations;
 * sec. 4 for K-fold).
 */
#include "internal/posterior_impl.h"
#include "ember/handlers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The log-likelihood matrix of one observed site (the only one when site is NULL). */
static em_status site_log_lik(const em_posterior *p, const char *site, em_predictive **ll, const em_pred_site **s,
                              em_error *err) {
    em_status st = em_posterior_log_lik(p, site, ll, err);
    if (st != EM_OK) return st;
    if ((*ll)->nsites != 1) {
        st = em_error_set(err, EM_ERR_ARG, "loo: the model has %zu observed sites; name the one to compare",
                          (*ll)->nsites);
        em_predictive_free(*ll);
        *ll = NULL;
        return st;
    }
    *s = &(*ll)->sites[0];
    return EM_OK;
}

em_status em_posterior_loo(const em_posterior *p, const char *site, em_loo_result **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_loo: out is NULL");
    *out = NULL;
    em_predictive *ll = NULL;
    const em_pred_site *s = NULL;
    em_status st = site_log_lik(p, site, &ll, &s, err);
    if (st != EM_OK) return st;
    em_loo_options o;
    memset(&o, 0, sizeof o);
    o.nchains = p->nchains; /* the draws are chain-major, ndraws per chain */
    st = em_loo(s->draws, ll->ndraws, s->len, &o, out, err);
    em_predictive_free(ll);
    return st;
}

/* The model with some observations left out: the user's model run under a leave-out handler. */
typedef struct held_out {
    em_model_fn model;
    const void *data;
    const char *site;
    const size_t *idx;
    size_t n;
} held_out;

static void held_out_model(em_model *m, const void *arg) {
    const held_out *h = arg;
    em_leave_out_handler lh;
    em_leave_out_handler_init(&lh, h->site, h->idx, h->n);
    if (em_push(m, &lh.base) != EM_OK) return;
    h->model(m, h->data);
    em_pop(m, &lh.base);
    if (!lh.found) em_model_fail(m, EM_ERR_MODEL, "leave-out: the model has no observed site '%s'", h->site);
}

/* Refit without the observations idx and write log mean_s p(y_i | θ_s) of each into elpd[j]. */
static em_status refit_elpd(const em_posterior *p, const char *site, const size_t *idx, size_t n,
                            const em_mcmc_config *cfg, double *elpd, em_error *err) {
    held_out h = {p->model, p->data, site, idx, n};
    em_posterior *fit = NULL;
    em_status st = em_fit_nuts(held_out_model, &h, cfg, &fit, err);
    if (st != EM_OK) {
        em_posterior_free(fit);
        return st;
    }
    em_predictive *ll = NULL;
    const em_pred_site *s = NULL;
    st = site_log_lik(fit, site, &ll, &s, err);
    for (size_t j = 0; st == EM_OK && j < n; j++) {
        size_t S = ll->ndraws, i = idx[j];
        double mx = -INFINITY, sum = 0.0;
        for (size_t d = 0; d < S; d++) mx = fmax(mx, s->draws[d * s->len + i]);
        for (size_t d = 0; d < S; d++) sum += exp(s->draws[d * s->len + i] - mx);
        elpd[j] = mx + log(sum / (double)S);
    }
    em_predictive_free(ll);
    em_posterior_free(fit);
    return st;
}

static em_status refit_checks(const em_posterior *p, const char **site, char *name, size_t cap, em_error *err) {
    if (!p || !p->model) return em_error_set(err, EM_ERR_ARG, "refits need a posterior with its model attached");
    if (!has_chains(p)) return em_error_set(err, EM_ERR_ARG, "refits are made with NUTS: the posterior is from %s",
                                            em_posterior_method_name(p->method));
    if (*site) return EM_OK;
    /* the only observed site, by name */
    em_predictive *ll = NULL;
    const em_pred_site *s = NULL;
    em_posterior one = *p;
    one.ndraws = 1;
    one.nchains = 1;
    em_status st = site_log_lik(&one, NULL, &ll, &s, err);
    if (st == EM_OK) {
        snprintf(name, cap, "%s", s->name);
        *site = name;
    }
    em_predictive_free(ll);
    return st;
}

em_status em_posterior_reloo(const em_posterior *p, const char *site, em_loo_result *loo, double k_max,
                             const em_mcmc_config *cfg, size_t *nrefits, em_error *err) {
    if (nrefits) *nrefits = 0;
    if (!loo) return em_error_set(err, EM_ERR_ARG, "em_posterior_reloo: no loo result");
    char name[256];
    em_status st = refit_checks(p, &site, name, sizeof name, err);
    if (st != EM_OK) return st;
    if (k_max == 0) k_max = 0.7; /* -INFINITY refits every observation */
    em_mcmc_config c = cfg ? *cfg : p->cfg;
    c.progress = 0;
    for (size_t i = 0; i < loo->N && st == EM_OK; i++) {
        if (!(loo->pareto_k[i] > k_max) || loo->exact[i]) continue;
        double elpd;
        c.seed = em_seed_mix(p->seed, 0x4e100 + i);
        st = refit_elpd(p, site, &i, 1, &c, &elpd, err);
        if (st == EM_OK) st = em_loo_set_exact(loo, i, elpd, err);
        if (st == EM_OK && nrefits) (*nrefits)++;
    }
    return st;
}

em_status em_posterior_kfold(const em_posterior *p, const char *site, size_t K, const size_t *folds,
                             const em_mcmc_config *cfg, em_loo_result **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_kfold: out is NULL");
    *out = NULL;
    char name[256];
    em_status st = refit_checks(p, &site, name, sizeof name, err);
    if (st != EM_OK) return st;
    em_loo_result *l = NULL;
    st = em_posterior_loo(p, site, &l, err);
    if (st != EM_OK) return st;
    size_t N = l->N;
    if (K < 2 || K > N) {
        em_loo_free(l);
        return em_error_set(err, EM_ERR_ARG, "em_posterior_kfold: K = %zu folds for %zu observations", K, N);
    }
    em_mcmc_config c = cfg ? *cfg : p->cfg;
    c.progress = 0;
    size_t *fold = malloc(N * sizeof *fold), *idx = malloc(N * sizeof *idx);
    double *elpd = malloc(N * sizeof *elpd);
    if (!fold || !idx || !elpd) st = em_error_set(err, EM_ERR_NOMEM, "em_posterior_kfold: out of memory");
    if (st == EM_OK && folds) {
        for (size_t i = 0; i < N && st == EM_OK; i++) {
            if (folds[i] >= K) st = em_error_set(err, EM_ERR_INDEX, "em_posterior_kfold: folds[%zu] = %zu (K = %zu)", i, folds[i], K);
            fold[i] = folds[i];
        }
    } else if (st == EM_OK) {
        /* a seeded shuffle, then folds of near-equal size (loo's kfold_split_random) */
        em_rng *rng = em_rng_create(c.seed, 0xf01d);
        if (!rng) st = em_error_set(err, EM_ERR_NOMEM, "em_posterior_kfold: out of memory");
        for (size_t i = 0; st == EM_OK && i < N; i++) idx[i] = i;
        for (size_t i = N; st == EM_OK && i > 1; i--) {
            size_t j = (size_t)(em_rng_uniform(rng) * (double)i);
            if (j >= i) j = i - 1;
            size_t t = idx[i - 1];
            idx[i - 1] = idx[j];
            idx[j] = t;
        }
        for (size_t r = 0; st == EM_OK && r < N; r++) fold[idx[r]] = r % K;
        em_rng_destroy(rng);
    }
    for (size_t k = 0; k < K && st == EM_OK; k++) {
        size_t n = 0;
        for (size_t i = 0; i < N; i++)
            if (fold[i] == k) idx[n++] = i;
        if (n == 0) continue;
        c.seed = em_seed_mix(p->seed, 0xf0000 + k);
        st = refit_elpd(p, site, idx, n, &c, elpd, err);
        for (size_t j = 0; j < n && st == EM_OK; j++) st = em_loo_set_exact(l, idx[j], elpd[j], err);
    }
    free(fold);
    free(idx);
    free(elpd);
    if (st != EM_OK) {
        em_loo_free(l);
        return st;
    }
    *out = l;
    return EM_OK;
}
