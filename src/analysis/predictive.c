/* predictive.c — prior and posterior predictive draws. See predictive.h.
 *
 * Every source of latent values comes down to one loop: per draw, reset the tape, install the
 * handlers that supply the latents (nothing for the prior, replay of a guide trace, or
 * substitute of given values), a seed handler and the "unobserve" handler, run the model under
 * trace, and copy the requested sites' values out of the trace.
 */
#include "ember/predictive.h"
#include "ember/handlers.h"
#include "ember/diagnostics.h"
#include "internal/model_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void em_predictive_free(em_predictive *p) {
    if (!p) return;
    for (size_t i = 0; i < p->nsites; i++) {
        free(p->sites[i].name);
        free(p->sites[i].draws);
    }
    free(p->sites);
    free(p);
}

const em_pred_site *em_predictive_site(const em_predictive *p, const char *name) {
    for (size_t i = 0; i < p->nsites; i++)
        if (strcmp(p->sites[i].name, name) == 0) return &p->sites[i];
    return NULL;
}

/* Observe sites become draws from their likelihood: default processing samples a site that is
 * not observed, with the data's length (model.c's resolve_len). */
static void unobserve_process(em_handler *h, em_msg *msg) {
    (void)h;
    if (msg->kind == EM_SITE_OBSERVE) msg->is_observed = 0;
}

enum { SRC_PRIOR, SRC_GUIDE, SRC_SUBST };

typedef struct pred_src {
    int kind;
    em_model_fn guide;
    const void *gdata;
    const char *const *names;
    const size_t *lens;
    size_t nsites, row_len;
    const double *draws;
    int log_lik; /* return log p(y_i | draw) of the observed sites instead of values */
} pred_src;

static int wanted(const em_predictive_options *o, const pred_src *src, const em_site *s) {
    if (s->kind != EM_SITE_SAMPLE && s->kind != EM_SITE_OBSERVE && s->kind != EM_SITE_DETERMINISTIC) return 0;
    if (src->log_lik && (s->kind == EM_SITE_DETERMINISTIC || !s->is_observed)) return 0;
    if (!o->return_sites || o->nreturn == 0) return 1;
    for (size_t i = 0; i < o->nreturn; i++)
        if (strcmp(o->return_sites[i], s->name) == 0) return 1;
    return 0;
}

static em_status run_draws(em_model_fn model, const void *data, const pred_src *src, size_t ndraws,
                           const em_predictive_options *opt, em_predictive **out, em_error *err) {
    *out = NULL;
    em_predictive_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    if (!model) return em_error_set(err, EM_ERR_ARG, "predictive: no model function");
    if (ndraws == 0) return em_error_set(err, EM_ERR_ARG, "predictive: ndraws must be positive");
    if (o.nreturn && !o.return_sites) return em_error_set(err, EM_ERR_ARG, "predictive: nreturn without return_sites");
    em_model *m = em_model_create(o.seed, err);
    em_rng *rng = em_rng_create(o.seed, 0x9ed1c7);
    em_trace *gtr = em_trace_create(), *mtr = em_trace_create();
    em_predictive *p = calloc(1, sizeof *p);
    const double **vals = calloc(src->nsites ? src->nsites : 1, sizeof *vals);
    size_t *offs = calloc(src->nsites ? src->nsites : 1, sizeof *offs);
    em_status s = (m && rng && gtr && mtr && p && vals && offs) ? EM_OK
                                                               : em_error_set(err, EM_ERR_NOMEM, "predictive: out of memory");
    if (s != EM_OK) goto done;
    m->evaluate_only = 1;
    m->predicting = !o.keep_observed && !src->log_lik;
    em_model_set_params(m, o.params);
    /* options.ndraws = k < ndraws: k draws, draw d from given row floor(d·ndraws/k) */
    size_t nout = o.ndraws && o.ndraws < ndraws ? o.ndraws : ndraws;
    p->ndraws = nout;
    for (size_t k = 1; k < src->nsites; k++) offs[k] = offs[k - 1] + src->lens[k - 1];
    em_tape *t = em_model_tape(m);
    for (size_t d = 0; d < nout && s == EM_OK; d++) {
        em_tape_reset(t);
        em_trace_clear(mtr);
        em_seed_handler sh;
        em_seed_handler_init(&sh, rng);
        if (src->kind == SRC_GUIDE) {
            em_trace_clear(gtr);
            em_trace_handler gth;
            em_trace_handler_init(&gth, gtr);
            em_push(m, &gth.base);
            em_push(m, &sh.base);
            s = em_model_run(m, src->guide, src->gdata, err);
            em_pop(m, &sh.base);
            em_pop(m, &gth.base);
            if (s != EM_OK) break;
        }
        em_trace_handler th;
        em_replay_handler rh;
        em_substitute_handler subh;
        em_handler unobs = {unobserve_process, NULL, "unobserve"};
        em_trace_handler_init(&th, mtr);
        em_push(m, &th.base);
        if (src->kind == SRC_GUIDE) {
            em_replay_handler_init(&rh, gtr);
            em_push(m, &rh.base);
        } else if (src->kind == SRC_SUBST) {
            size_t in = nout == ndraws ? d : d * ndraws / nout;
            for (size_t k = 0; k < src->nsites; k++) vals[k] = src->draws + in * src->row_len + offs[k];
            em_substitute_handler_init(&subh, src->names, vals, src->lens, src->nsites);
            em_push(m, &subh.base);
        }
        em_push(m, &sh.base);
        int draw_obs = !o.keep_observed && !src->log_lik;
        if (draw_obs) em_push(m, &unobs);
        s = em_model_run(m, model, data, err);
        if (draw_obs) em_pop(m, &unobs);
        em_pop(m, &sh.base);
        if (src->kind == SRC_GUIDE) em_pop(m, &rh.base);
        if (src->kind == SRC_SUBST) em_pop(m, &subh.base);
        em_pop(m, &th.base);
        if (s != EM_OK) break;
        if (src->kind == SRC_SUBST && d == 0) {
            const char *unused = em_substitute_unused(&subh);
            if (unused) {
                s = em_error_set(err, EM_ERR_MODEL, "predictive: the model has no latent site '%s' to substitute", unused);
                break;
            }
        }
        if (d == 0) {
            size_t n = em_trace_count(mtr), k = 0;
            p->sites = calloc(n ? n : 1, sizeof *p->sites);
            if (!p->sites) {
                s = em_error_set(err, EM_ERR_NOMEM, "predictive: out of memory");
                break;
            }
            for (size_t r = 0; r < o.nreturn; r++)
                if (!em_trace_find(mtr, o.return_sites[r])) {
                    s = em_error_set(err, EM_ERR_MODEL, "predictive: the model has no site '%s' to return",
                                     o.return_sites[r]);
                    break;
                }
            for (size_t i = 0; i < n && s == EM_OK; i++) {
                em_site *site = em_trace_site(mtr, i);
                if (!wanted(&o, src, site)) continue;
                em_pred_site *ps = &p->sites[k++];
                p->nsites = k;
                ps->name = strdup(site->name);
                ps->kind = site->kind;
                /* log-likelihood: one term per event (per observation of a univariate site) */
                ps->len = src->log_lik ? site->len / em_dist_event_len(&site->dist) : site->len;
                ps->draws = malloc((o.on_draw ? 1 : nout) * site->len * sizeof(double)); /* streamed: one row */
                if (!ps->name || !ps->draws) s = em_error_set(err, EM_ERR_NOMEM, "predictive: out of memory");
            }
            if (s != EM_OK) break;
        }
        size_t row = o.on_draw ? 0 : d; /* where draw d's values go */
        for (size_t i = 0; i < p->nsites && s == EM_OK; i++) {
            em_pred_site *ps = &p->sites[i];
            em_site *site = em_trace_find(mtr, ps->name);
            size_t vlen = ps->len * (src->log_lik && site ? em_dist_event_len(&site->dist) : 1);
            if (!site || site->len != vlen || em_len(t, site->value) != vlen) {
                s = em_error_set(err, EM_ERR_MODEL, "predictive draw %zu: site '%s' %s", d + 1, ps->name,
                                 site ? "changed length between draws" : "is missing");
                break;
            }
            double *dst = ps->draws + row * ps->len;
            em_error e = {0};
            if (!src->log_lik) {
                memcpy(dst, em_val_(t, site->value), ps->len * sizeof(double));
            } else if (em_dist_log_prob_pointwise(&site->dist, em_val_(t, site->value), vlen, dst, &e) != EM_OK) {
                s = em_error_set(err, e.status, "log-likelihood, draw %zu, site '%s': %s", d + 1, ps->name, e.msg);
                break;
            }
            if (o.on_draw) s = o.on_draw(o.on_draw_arg, d, ps, dst, err);
        }
    }
    for (size_t i = 0; o.on_draw && p && i < p->nsites; i++) { /* streamed: nothing kept */
        free(p->sites[i].draws);
        p->sites[i].draws = NULL;
    }
done:
    if (s == EM_OK) {
        *out = p;
        p = NULL;
    }
    em_predictive_free(p);
    free(vals);
    free(offs);
    em_trace_destroy(gtr);
    em_trace_destroy(mtr);
    em_rng_destroy(rng);
    em_model_destroy(m);
    return s;
}

em_status em_predictive_prior(em_model_fn model, const void *data, size_t ndraws, const em_predictive_options *opt,
                              em_predictive **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "predictive: out is NULL");
    pred_src src = {SRC_PRIOR, NULL, NULL, NULL, NULL, 0, 0, NULL, 0};
    return run_draws(model, data, &src, ndraws, opt, out, err);
}

em_status em_predictive_guide(em_model_fn model, const void *data, em_model_fn guide, const void *guide_data,
                              size_t ndraws, const em_predictive_options *opt, em_predictive **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "predictive: out is NULL");
    if (!guide) return em_error_set(err, EM_ERR_ARG, "predictive: no guide function");
    pred_src src = {SRC_GUIDE, guide, guide_data, NULL, NULL, 0, 0, NULL, 0};
    return run_draws(model, data, &src, ndraws, opt, out, err);
}

static em_status subst_draws(em_model_fn model, const void *data, const char *const *names, const size_t *lens,
                             size_t nsites, const double *draws, size_t ndraws, const em_predictive_options *opt,
                             int log_lik, em_predictive **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "predictive: out is NULL");
    *out = NULL;
    if (nsites && (!names || !lens || !draws))
        return em_error_set(err, EM_ERR_ARG, "predictive: names, lens and draws are required");
    if (nsites > 64) return em_error_set(err, EM_ERR_ARG, "predictive: at most 64 substituted sites (got %zu)", nsites);
    size_t row = 0;
    for (size_t k = 0; k < nsites; k++) {
        if (!names[k] || lens[k] == 0)
            return em_error_set(err, EM_ERR_ARG, "predictive: site %zu has no name or zero length", k);
        row += lens[k];
    }
    for (size_t i = 0; i < row * ndraws; i++)
        if (!isfinite(draws[i]))
            return em_error_set(err, EM_ERR_NONFINITE, "predictive: draw %zu, value %zu is %g", i / row + 1, i % row,
                                draws[i]);
    pred_src src = {SRC_SUBST, NULL, NULL, names, lens, nsites, row, draws, log_lik};
    return run_draws(model, data, &src, ndraws, opt, out, err);
}

em_status em_predictive_posterior(em_model_fn model, const void *data, const char *const *names, const size_t *lens,
                                  size_t nsites, const double *draws, size_t ndraws,
                                  const em_predictive_options *opt, em_predictive **out, em_error *err) {
    return subst_draws(model, data, names, lens, nsites, draws, ndraws, opt, 0, out, err);
}

em_status em_predictive_log_lik(em_model_fn model, const void *data, const char *const *names, const size_t *lens,
                                size_t nsites, const double *draws, size_t ndraws, const em_predictive_options *opt,
                                em_predictive **out, em_error *err) {
    return subst_draws(model, data, names, lens, nsites, draws, ndraws, opt, 1, out, err);
}

static em_status theta_draws(em_model_fn model, const void *data, const em_logdensity *layout, const double *theta,
                             size_t ndraws, const em_predictive_options *opt, int log_lik, em_predictive **out,
                             em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "predictive: out is NULL");
    *out = NULL;
    size_t nl = layout ? em_logdensity_num_latents(layout) : 0;
    if (nl == 0)
        return em_error_set(err, EM_ERR_ARG, "predictive: the layout must be a density made by em_logdensity_from_model");
    if (ndraws && !theta) return em_error_set(err, EM_ERR_ARG, "predictive: theta is NULL");
    size_t dim = em_logdensity_dim(layout), row = 0;
    const char **names = malloc(nl * sizeof *names);
    size_t *lens = malloc(nl * sizeof *lens);
    for (size_t k = 0; names && lens && k < nl; k++) {
        const em_latent_info *li = em_logdensity_latent(layout, k);
        names[k] = li->name;
        lens[k] = li->len;
        row += li->len;
    }
    /* options.ndraws: only the rows run_draws would use are transformed */
    size_t nout = opt && opt->ndraws && opt->ndraws < ndraws ? opt->ndraws : ndraws;
    em_predictive_options all;
    memset(&all, 0, sizeof all);
    if (opt) all = *opt;
    all.ndraws = 0;
    double *draws = names && lens ? malloc((nout ? nout : 1) * row * sizeof *draws) : NULL;
    em_status s = draws ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "predictive: out of memory");
    for (size_t d = 0; d < nout && s == EM_OK; d++) {
        size_t o = 0, in = nout == ndraws ? d : d * ndraws / nout;
        for (size_t k = 0; k < nl && s == EM_OK; k++) {
            const em_latent_info *li = em_logdensity_latent(layout, k);
            em_error e = {0};
            if (em_transform_forward_d(&li->transform, theta + in * dim + li->offset, li->free_len, draws + d * row + o,
                                       NULL, &e) != EM_OK)
                s = em_error_set(err, e.status, "predictive: draw %zu, site '%s': %s", in + 1, li->name, e.msg);
            o += li->len;
        }
    }
    if (s == EM_OK) s = subst_draws(model, data, names, lens, nl, draws, nout, &all, log_lik, out, err);
    free(names);
    free(lens);
    free(draws);
    return s;
}

em_status em_predictive_theta(em_model_fn model, const void *data, const em_logdensity *layout,
                              const double *theta, size_t ndraws, const em_predictive_options *opt,
                              em_predictive **out, em_error *err) {
    return theta_draws(model, data, layout, theta, ndraws, opt, 0, out, err);
}

em_status em_predictive_log_lik_theta(em_model_fn model, const void *data, const em_logdensity *layout,
                                      const double *theta, size_t ndraws, const em_predictive_options *opt,
                                      em_predictive **out, em_error *err) {
    return theta_draws(model, data, layout, theta, ndraws, opt, 1, out, err);
}

em_status em_pred_site_summary(const em_pred_site *site, size_t ndraws, em_pred_summary *out, em_error *err) {
    if (!site || !out || ndraws == 0) return em_error_set(err, EM_ERR_ARG, "predictive summary: no site or no draws");
    double *x = malloc(ndraws * sizeof *x);
    if (!x) return em_error_set(err, EM_ERR_NOMEM, "predictive summary: out of memory");
    em_status s = EM_OK;
    for (size_t i = 0; i < site->len && s == EM_OK; i++) {
        for (size_t d = 0; d < ndraws; d++) {
            x[d] = site->draws[d * site->len + i];
            if (!isfinite(x[d])) {
                s = em_error_set(err, EM_ERR_NONFINITE, "predictive summary: site '%s' element %zu draw %zu is %g",
                                 site->name, i, d + 1, x[d]);
                break;
            }
        }
        if (s != EM_OK) break;
        em_pred_summary *o = &out[i];
        o->mean = em_mean(x, ndraws);
        o->sd = em_sd(x, ndraws);
        o->q5 = em_quantile(x, ndraws, 0.05);
        o->q50 = em_quantile(x, ndraws, 0.5);
        o->q95 = em_quantile(x, ndraws, 0.95);
        s = em_hpdi(x, ndraws, 0.9, &o->hpdi_lo, &o->hpdi_hi, err);
    }
    free(x);
    return s;
}
