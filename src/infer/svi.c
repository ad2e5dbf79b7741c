/* svi.c — ELBO estimators and the SVI loop. See svi.h.
 *
 * One particle (Pyro's Trace_ELBO, Ranganath et al. 2014; reparameterised as in Kingma &
 * Welling 2014): trace the guide under a seed handler, trace the model under replay of the
 * guide's trace, and form Σ log p − Σ log q on the model's tape. Each particle has the tape to
 * itself (it is reset between particles): a backward pass of its −ELBO / num_particles gives its
 * share of the gradient of every parameter the runs read from the store, and the shares are
 * added. Memory is then one particle's whatever the number of particles — on 10^6 rows a tape
 * holding every particle of a 2000-particle ELBO estimate would need tens of GB.
 */
#include "ember/svi.h"
#include "ember/handlers.h"
#include "internal/model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KIND_BIT(k) (1u << (k))

/* ---- one particle ----------------------------------------------------------------------------- */

typedef struct elbo_ctx {
    em_model *m;
    em_elbo_kind kind;
    em_model_fn model, guide;
    const void *mdata, *gdata;
    em_rng *rng;
    em_trace *gtr, *mtr;
} elbo_ctx;

/* Multiply a closed-form KL, computed over the distributions' own batch, up to the site's
 * length when the batch was broadcast (scalar parameters over a plate). */
static size_t kl_batch_len(em_tape *t, const em_dist *q, const em_dist *p) {
    size_t n = 1;
    for (int k = 0; k < 2; k++) {
        const em_dist *d = k ? p : q;
        if (d->ops->event_len && d->ops->event_len(d) > 1) return d->ops->event_len(d);
        for (int j = 0; j < d->ops->nparams; j++)
            if (em_var_ok(d->p[j]) && em_len(t, d->p[j]) > n) n = em_len(t, d->p[j]);
    }
    return n;
}

static em_status elbo_particle(elbo_ctx *c, em_var *out, em_error *err) {
    em_model *m = c->m;
    em_tape *t = em_model_tape(m);
    em_trace_clear(c->gtr);
    em_trace_clear(c->mtr);

    em_trace_handler th;
    em_seed_handler sh;
    em_trace_handler_init(&th, c->gtr);
    em_seed_handler_init(&sh, c->rng);
    em_push(m, &th.base);
    em_push(m, &sh.base);
    em_status s = em_model_run(m, c->guide, c->gdata, err);
    em_pop(m, &sh.base);
    em_pop(m, &th.base);
    if (s != EM_OK) return s;

    size_t ng = em_trace_count(c->gtr);
    for (size_t i = 0; i < ng; i++) {
        em_site *g = em_trace_site(c->gtr, i);
        if (g->kind != EM_SITE_SAMPLE || g->is_observed) continue;
        if (!g->dist.ops->reparameterized)
            return em_error_set(err, EM_ERR_MODEL,
                                "guide site '%s': the %s distribution is not reparameterised, so the ELBO's pathwise "
                                "gradient would be biased; use a reparameterisable family (Normal, LogNormal, MVNormal, "
                                "...) or an autoguide",
                                g->name, g->dist.ops->name);
    }

    em_trace_handler mth;
    em_replay_handler rh;
    em_trace_handler_init(&mth, c->mtr);
    em_replay_handler_init(&rh, c->gtr);
    em_push(m, &mth.base);
    em_push(m, &rh.base);
    em_push(m, &sh.base);
    s = em_model_run(m, c->model, c->mdata, err);
    em_pop(m, &sh.base);
    em_pop(m, &rh.base);
    em_pop(m, &mth.base);
    if (s != EM_OK) return s;

    em_var elbo = em_scalar(t, 0.0);
    size_t nm = em_trace_count(c->mtr);
    for (size_t i = 0; i < nm; i++) {
        em_site *ms = em_trace_site(c->mtr, i);
        if (ms->kind != EM_SITE_SAMPLE && ms->kind != EM_SITE_OBSERVE && ms->kind != EM_SITE_FACTOR) continue;
        if (ms->kind == EM_SITE_SAMPLE && !ms->is_observed) {
            em_site *gs = em_trace_find(c->gtr, ms->name);
            if (!gs || gs->kind != EM_SITE_SAMPLE || gs->is_observed)
                return em_error_set(err, EM_ERR_MODEL,
                                    "model latent site '%s' is not sampled by the guide (every latent site of the model "
                                    "needs a sample site of the same name in the guide)",
                                    ms->name);
            if (c->kind == EM_ELBO_TRACE_MEANFIELD && em_dist_has_kl(&gs->dist, &ms->dist)) {
                /* −KL(q ‖ p) in place of log p(z) − log q(z) (Pyro's TraceMeanField_ELBO), with the
                 * guide site's scale and the model site's mask. */
                em_var kl = em_dist_kl(&gs->dist, &ms->dist);
                size_t nb = kl_batch_len(t, &gs->dist, &ms->dist);
                double mult = gs->scale;
                if (nb && ms->len > nb && ms->len % nb == 0) mult *= (double)(ms->len / nb);
                if (ms->masked) mult = 0.0;
                if (mult != 1.0) kl = em_op_mul(t, kl, em_scalar(t, mult));
                elbo = em_op_sub(t, elbo, kl);
                gs->has_log_prob = 1; /* consumed: not in the sampled guide term below */
                gs->log_prob = em_scalar(t, 0.0);
                continue;
            }
        }
        elbo = em_op_add(t, elbo, em_site_log_prob(t, ms));
    }
    for (size_t i = 0; i < ng; i++) {
        em_site *gs = em_trace_site(c->gtr, i);
        if (gs->kind != EM_SITE_SAMPLE || gs->is_observed) continue;
        elbo = em_op_sub(t, elbo, em_site_log_prob(t, gs));
    }
    s = em_tape_status(t);
    if (s != EM_OK) return em_error_set(err, s, "%s", em_tape_error(t)->msg);
    *out = elbo;
    return EM_OK;
}

/* The mean ELBO over num_particles particles, each on the model's tape reset before it. The
 * values are added in particle order, as a sum on one tape would add them. */
em_status em_elbo_estimate(em_elbo_kind kind, em_model_fn model, const void *model_data, em_model_fn guide,
                           const void *guide_data, em_param_store *params, int num_particles, em_rng *rng,
                           double *elbo, em_error *err) {
    if (!model || !guide || !rng || !elbo) return em_error_set(err, EM_ERR_ARG, "elbo: model, guide, rng and elbo are required");
    if (num_particles < 1) num_particles = 1;
    em_model *m = em_model_create(0, err);
    elbo_ctx c = {m, kind, model, guide, model_data, guide_data, rng, em_trace_create(), em_trace_create()};
    em_status s = (m && c.gtr && c.mtr) ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "elbo: out of memory");
    if (s == EM_OK) {
        em_model_set_params(m, params);
        em_tape *t = em_model_tape(m);
        double sum = 0.0;
        for (int k = 0; k < num_particles && s == EM_OK; k++) {
            em_tape_reset(t);
            em_var e;
            s = elbo_particle(&c, &e, err);
            if (s == EM_OK) sum += em_val_scalar_(t, e);
        }
        if (s == EM_OK) *elbo = sum / num_particles;
    }
    em_trace_destroy(c.gtr);
    em_trace_destroy(c.mtr);
    em_model_destroy(m);
    return s;
}

/* ---- the SVI object ----------------------------------------------------------------------------- */

/* A parameter optimised in units (em_svi_set_units). */
typedef struct svi_units {
    char *name;
    double *u;
    size_t n;
} svi_units;

struct em_svi {
    elbo_ctx c;
    em_svi_options o;
    em_optim_config ocfg;
    em_optim *opt;
    em_param_store *ps;
    double *grad;
    double *pgrad; /* one particle's gradient, added into grad (num_particles > 1) */
    size_t dim;
    double *hist;
    size_t nhist, caphist;
    size_t skipped, consecutive;
    int converged;
    /* units: the optimiser works on delta, the store holds x0 + unit ⊙ delta (NULL: directly) */
    svi_units *units;
    size_t nunits;
    double *unit, *x0, *delta;
    /* iterate averaging: sums over the previous complete block of `window` steps and the
     * current one */
    double *avg_prev, *avg_cur;
    size_t navg_prev, navg_cur;
    /* the last window comparison and how many in a row passed */
    double win_dec, win_se, win_rel;
    size_t passes;
};

em_status em_svi_options_validate(const em_svi_options *o, em_error *err) {
    if (!o) return em_error_set(err, EM_ERR_ARG, "em_svi_options: options are NULL");
    if (o->elbo != EM_ELBO_TRACE && o->elbo != EM_ELBO_TRACE_MEANFIELD)
        return em_error_set(err, EM_ERR_ARG, "em_svi_options: elbo = %d is not EM_ELBO_TRACE or EM_ELBO_TRACE_MEANFIELD",
                            (int)o->elbo);
    if (o->num_particles < 0 || o->num_particles > EM_SVI_MAX_PARTICLES)
        return em_error_set(err, EM_ERR_ARG, "em_svi_options: num_particles = %d, must be in 0..%d (0: one)",
                            o->num_particles, EM_SVI_MAX_PARTICLES);
    if (!(o->rel_tol >= 0) || !isfinite(o->rel_tol))
        return em_error_set(err, EM_ERR_ARG, "em_svi_options: rel_tol = %g, must be finite and >= 0 (0: off)",
                            o->rel_tol);
    if ((unsigned)o->stop >= EM_SVI_STOP_RULE_COUNT)
        return em_error_set(err, EM_ERR_ARG,
                            "em_svi_options: stop = %d is not EM_SVI_STOP_REL_MEAN or EM_SVI_STOP_TREND", (int)o->stop);
    if (o->window > EM_SVI_MAX_WINDOW)
        return em_error_set(err, EM_ERR_ARG, "em_svi_options: window = %zu, must be in 0..%zu (0: 100)", o->window,
                            EM_SVI_MAX_WINDOW);
    return EM_OK;
}

em_svi *em_svi_create(em_model_fn model, const void *model_data, em_model_fn guide, const void *guide_data,
                      const em_optim_config *optim, const em_svi_options *opt, em_error *err) {
    if (opt && em_svi_options_validate(opt, err) != EM_OK) return NULL;
    if (!model || !guide) {
        em_error_set(err, EM_ERR_ARG, "svi: a model and a guide function are required");
        return NULL;
    }
    if (!optim) {
        em_error_set(err, EM_ERR_ARG, "svi: an optimiser configuration is required (em_optim_defaults)");
        return NULL;
    }
    if (em_optim_config_check(optim, err) != EM_OK) return NULL;
    /* a bad observation caught here, named, rather than as a run of non-finite losses */
    if (em_model_check_data(model, model_data, NULL, err) != EM_OK) return NULL;
    em_svi *s = calloc(1, sizeof *s);
    if (!s) {
        em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
        return NULL;
    }
    if (opt) s->o = *opt;
    if (s->o.num_particles < 1) s->o.num_particles = 1;
    if (s->o.window == 0) s->o.window = 100;
    if (s->o.max_consecutive_skips == 0) s->o.max_consecutive_skips = 100;
    if (s->o.patience == 0) s->o.patience = 3;
    s->win_dec = s->win_se = s->win_rel = NAN;
    s->ocfg = *optim;
    s->c.m = em_model_create(s->o.seed, err);
    s->c.kind = s->o.elbo;
    s->c.model = model;
    s->c.guide = guide;
    s->c.mdata = model_data;
    s->c.gdata = guide_data;
    s->c.rng = em_rng_create(s->o.seed, 0x5f1);
    s->c.gtr = em_trace_create();
    s->c.mtr = em_trace_create();
    s->ps = em_param_store_create();
    if (!s->c.m || !s->c.rng || !s->c.gtr || !s->c.mtr || !s->ps) {
        em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
        em_svi_destroy(s);
        return NULL;
    }
    em_model_set_params(s->c.m, s->ps);
    return s;
}

void em_svi_destroy(em_svi *s) {
    if (!s) return;
    em_model_destroy(s->c.m);
    em_rng_destroy(s->c.rng);
    em_trace_destroy(s->c.gtr);
    em_trace_destroy(s->c.mtr);
    em_param_store_destroy(s->ps);
    em_optim_destroy(s->opt);
    free(s->grad);
    free(s->pgrad);
    free(s->hist);
    for (size_t k = 0; k < s->nunits; k++) {
        free(s->units[k].name);
        free(s->units[k].u);
    }
    free(s->units);
    free(s->unit);
    free(s->x0);
    free(s->delta);
    free(s->avg_prev);
    free(s->avg_cur);
    free(s);
}

em_status em_svi_set_units(em_svi *s, const char *param, const double *units, size_t n, em_error *err) {
    if (!s || !param || !units || n == 0)
        return em_error_set(err, EM_ERR_ARG, "em_svi_set_units: an SVI, a parameter name and n > 0 units are required");
    if (s->opt)
        return em_error_set(err, EM_ERR_ARG, "em_svi_set_units: '%s': the optimiser has started (call before the first step)",
                            param);
    for (size_t i = 0; i < n; i++)
        if (!(units[i] > 0) || !isfinite(units[i]))
            return em_error_set(err, EM_ERR_ARG, "em_svi_set_units: '%s': units[%zu] = %g must be finite and positive",
                                param, i, units[i]);
    svi_units *nu = realloc(s->units, (s->nunits + 1) * sizeof *nu);
    if (!nu) return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
    s->units = nu;
    svi_units *e = &nu[s->nunits];
    e->name = strdup(param);
    e->u = malloc(n * sizeof *e->u);
    e->n = n;
    if (!e->name || !e->u) {
        free(e->name);
        free(e->u);
        return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
    }
    memcpy(e->u, units, n * sizeof *units);
    s->nunits++;
    return EM_OK;
}

/* At the first step, when the store holds the guide's parameters: the units of every value
 * (1 where none were set) and the origin x0. */
static em_status setup_units(em_svi *s, em_error *err) {
    size_t dim = s->dim;
    s->unit = malloc(dim * sizeof *s->unit);
    s->x0 = malloc(dim * sizeof *s->x0);
    s->delta = calloc(dim, sizeof *s->delta);
    if (!s->unit || !s->x0 || !s->delta) return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
    for (size_t i = 0; i < dim; i++) s->unit[i] = 1.0;
    memcpy(s->x0, em_param_store_values(s->ps), dim * sizeof *s->x0);
    for (size_t k = 0; k < s->nunits; k++) {
        long j = em_param_store_find(s->ps, s->units[k].name);
        if (j < 0)
            return em_error_set(err, EM_ERR_ARG, "svi: units were set for '%s', which the guide does not declare",
                                s->units[k].name);
        if (em_param_store_len(s->ps, (size_t)j) != s->units[k].n)
            return em_error_set(err, EM_ERR_ARG, "svi: '%s' has %zu values, %zu units were set", s->units[k].name,
                                em_param_store_len(s->ps, (size_t)j), s->units[k].n);
        memcpy(s->unit + em_param_store_offset(s->ps, (size_t)j), s->units[k].u, s->units[k].n * sizeof(double));
    }
    return EM_OK;
}

/* The optimiser's update, directly on the store or in units. */
static em_status optim_update(em_svi *s, em_error *err) {
    double *x = em_param_store_values(s->ps);
    if (!s->unit) return em_optim_step(s->opt, x, s->grad, err);
    for (size_t i = 0; i < s->dim; i++) s->grad[i] *= s->unit[i]; /* dL/dδ = unit ⊙ dL/dx */
    em_status st = em_optim_step(s->opt, s->delta, s->grad, err);
    if (st == EM_OK)
        for (size_t i = 0; i < s->dim; i++) x[i] = s->x0[i] + s->unit[i] * s->delta[i];
    return st;
}

static em_status push_loss(em_svi *s, double loss, em_error *err) {
    if (s->nhist == s->caphist) {
        size_t nc = s->caphist ? 2 * s->caphist : 1024;
        double *nh = realloc(s->hist, nc * sizeof *nh);
        if (!nh) return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
        s->hist = nh;
        s->caphist = nc;
    }
    s->hist[s->nhist++] = loss;
    return EM_OK;
}

/* A step that produced no usable gradient: keep the parameters, count it. */
static em_status skip_step(em_svi *s, double loss, double *loss_out, em_error *err) {
    s->skipped++;
    s->consecutive++;
    if (loss_out) *loss_out = loss;
    return push_loss(s, loss, err);
}

/* The step's loss −(Σ_k ELBO_k) / K into *lv and, while it is finite, its gradient into s->grad:
 * particle by particle, each on the tape reset before it and differentiated before the next
 * one replaces it, so the tape holds one particle whatever K. The values add up in particle
 * order, as on one tape; for K > 1 the gradient's shares are added per particle, which
 * rounds differently from one backward pass over all of them. Every particle is drawn even
 * after a non-finite one (the RNG advances as it always has). EM_ERR_DOMAIN: a particle failed
 * its model or guide (skip the step); other errors are set in err. */
static em_status particles_loss_grad(em_svi *s, double *lv, em_error *err) {
    em_tape *t = em_model_tape(s->c.m);
    int np = s->o.num_particles;
    double sum = 0.0;
    for (int k = 0; k < np; k++) {
        em_tape_reset(t);
        em_error e = {0};
        em_var elbo;
        em_status st = elbo_particle(&s->c, &elbo, &e);
        if (st == EM_ERR_DOMAIN || st == EM_ERR_NONFINITE) return EM_ERR_DOMAIN;
        if (st != EM_OK) return em_error_set(err, st, "svi step %zu: %s", s->nhist + 1, e.msg);
        sum += em_val_scalar_(t, elbo);
        size_t dim = em_param_store_dim(s->ps);
        if (s->grad && dim != s->dim)
            return em_error_set(err, EM_ERR_MODEL,
                                "svi step %zu: the parameter store has %zu values, %zu at the first step (a guide must "
                                "declare the same parameters at every step)",
                                s->nhist + 1, dim, s->dim);
        if (!s->grad && dim > 0) {
            s->grad = malloc(dim * sizeof *s->grad);
            s->pgrad = np > 1 ? malloc(dim * sizeof *s->pgrad) : NULL;
            if (!s->grad || (np > 1 && !s->pgrad)) {
                free(s->grad);
                free(s->pgrad);
                s->grad = s->pgrad = NULL;
                return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
            }
            s->dim = dim;
        }
        if (!s->grad || !isfinite(sum)) continue; /* nothing to differentiate, or a step to skip */
        em_var loss = em_op_mul(t, elbo, em_scalar(t, -1.0 / np));
        st = em_backward(t, loss);
        if (st != EM_OK) return em_error_set(err, st, "svi step %zu: %s", s->nhist + 1, em_tape_error(t)->msg);
        if (k == 0) {
            em_param_store_collect_grad(s->ps, t, s->grad);
        } else {
            em_param_store_collect_grad(s->ps, t, s->pgrad);
            for (size_t i = 0; i < s->dim; i++) s->grad[i] += s->pgrad[i];
        }
    }
    *lv = sum * (-1.0 / np);
    return EM_OK;
}

/* The optimiser and the units, made at the first step with a finite loss (when the store holds
 * every parameter of the guide). */
static em_status start_optimiser(em_svi *s, em_error *err) {
    s->opt = em_optim_create(&s->ocfg, s->dim, err);
    if (!s->opt) return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
    em_status st = s->nunits ? setup_units(s, err) : EM_OK;
    if (st != EM_OK) { /* the next step tries again and reports the same error */
        em_optim_destroy(s->opt);
        s->opt = NULL;
        free(s->unit);
        free(s->x0);
        free(s->delta);
        s->unit = s->x0 = s->delta = NULL;
    }
    return st;
}

em_status em_svi_step(em_svi *s, double *loss_out, em_error *err) {
    double lv = NAN;
    em_error e = {0};
    /* this process's loss and gradient: EM_OK with both finite, EM_ERR_DOMAIN or
     * EM_ERR_NONFINITE for a step to skip, another status (message in e) for an error */
    em_status st = particles_loss_grad(s, &lv, &e);
    if (st == EM_ERR_DOMAIN) lv = NAN;
    else if (st == EM_OK && !isfinite(lv)) st = EM_ERR_NONFINITE;
    if (st == EM_OK && s->grad && !s->opt) st = start_optimiser(s, &e);
    for (size_t i = 0; st == EM_OK && s->grad && i < s->dim; i++)
        if (!isfinite(s->grad[i])) {
            st = EM_ERR_NONFINITE;
            lv = NAN; /* recorded as a skipped step without a loss */
        }
    if (s->o.combine) {
        /* every process comes here, whatever happened to it, so that none waits for another */
        em_status cs = s->o.combine(s->o.combine_ctx, st, &lv, s->grad, s->dim, &e);
        if (cs != EM_OK) return em_error_set(err, cs, "%s", e.msg);
        st = isfinite(lv) ? EM_OK : EM_ERR_NONFINITE;
        for (size_t i = 0; st == EM_OK && s->grad && i < s->dim; i++)
            if (!isfinite(s->grad[i])) st = EM_ERR_NONFINITE;
    }
    if (st == EM_ERR_DOMAIN || st == EM_ERR_NONFINITE) return skip_step(s, lv, loss_out, err);
    if (st != EM_OK) return em_error_set(err, st, "%s", e.msg);
    if (s->grad) {
        st = optim_update(s, &e);
        if (st == EM_ERR_NONFINITE) return skip_step(s, NAN, loss_out, err);
        if (st != EM_OK) return em_error_set(err, st, "svi step %zu: %s", s->nhist + 1, e.msg);
    }
    s->consecutive = 0;
    if (loss_out) *loss_out = lv;
    return push_loss(s, lv, err);
}

/* Mean and sample variance of the finite values among x[0..n). */
static double window_mean_var(const double *x, size_t n, double *var) {
    double sum = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            sum += x[i];
            k++;
        }
    double m = k ? sum / (double)k : NAN, ss = 0.0;
    for (size_t i = 0; i < n && var; i++)
        if (isfinite(x[i])) ss += (x[i] - m) * (x[i] - m);
    if (var) *var = k > 1 ? ss / (double)(k - 1) : NAN;
    return m;
}

/* Compare the last two windows; 1 when the rule fires. */
static int stop_check(em_svi *s) {
    size_t w = s->o.window;
    if (s->nhist < 2 * w) return 0;
    int trend = s->o.stop == EM_SVI_STOP_TREND;
    if (trend && s->nhist % w != 0) return 0; /* disjoint windows: each comparison is new evidence */
    if (!trend && s->o.rel_tol <= 0) return 0;
    double v1, v2;
    double m1 = window_mean_var(s->hist + s->nhist - 2 * w, w, &v1), m2 = window_mean_var(s->hist + s->nhist - w, w, &v2);
    if (!isfinite(m1) || !isfinite(m2)) return 0;
    s->win_dec = m1 - m2;
    s->win_se = sqrt((v1 + v2) / (double)w);
    s->win_rel = fabs(m2 - m1) / fmax(fabs(m1), 1.0);
    if (!trend) return s->win_rel < s->o.rel_tol;
    int pass = s->win_dec < fmax(2.0 * s->win_se, s->o.rel_tol * fmax(fabs(m1), 1.0));
    s->passes = pass ? s->passes + 1 : 0;
    return s->passes >= s->o.patience;
}

/* Iterate averaging: add the current iterate; at each window boundary the current block
 * becomes the previous one. */
static em_status average_push(em_svi *s, em_error *err) {
    if (!s->avg_cur) {
        s->avg_prev = calloc(s->dim, sizeof *s->avg_prev);
        s->avg_cur = calloc(s->dim, sizeof *s->avg_cur);
        if (!s->avg_prev || !s->avg_cur) return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
    }
    const double *x = em_param_store_values(s->ps);
    for (size_t i = 0; i < s->dim; i++) s->avg_cur[i] += x[i];
    if (++s->navg_cur == s->o.window) {
        double *t = s->avg_prev;
        s->avg_prev = s->avg_cur;
        s->avg_cur = t;
        memset(s->avg_cur, 0, s->dim * sizeof *s->avg_cur);
        s->navg_prev = s->navg_cur;
        s->navg_cur = 0;
    }
    return EM_OK;
}

/* The store's values become the average over the last window to two windows of steps. */
static void average_apply(em_svi *s) {
    size_t n = s->navg_prev + s->navg_cur;
    if (!n || !s->avg_cur) return;
    double *x = em_param_store_values(s->ps);
    for (size_t i = 0; i < s->dim; i++) {
        x[i] = (s->avg_prev[i] + s->avg_cur[i]) / (double)n;
        if (s->unit) s->delta[i] = (x[i] - s->x0[i]) / s->unit[i]; /* a further run goes on from here */
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

em_status em_svi_run(em_svi *s, size_t max_steps, size_t *steps_done, em_error *err) {
    size_t done = 0;
    em_status st = EM_OK;
    double tlast = now_s();
    size_t last = 0;
    s->converged = 0;
    while (done < max_steps) {
        double loss;
        st = em_svi_step(s, &loss, err);
        if (st != EM_OK) break;
        done++;
        if (s->consecutive >= s->o.max_consecutive_skips) {
            st = em_error_set(err, EM_ERR_NONFINITE,
                              "svi: %zu consecutive steps had a non-finite loss or gradient (last at step %zu); "
                              "lower the learning rate or check the model",
                              s->consecutive, s->nhist);
            break;
        }
        if (s->o.progress_every && (s->nhist % s->o.progress_every == 0 || done == max_steps)) {
            double tn = now_s();
            double rate = tn > tlast ? (double)(done - last) / (tn - tlast) : 0.0;
            fprintf(stderr, "svi step %zu  loss %.6g  %.0f steps/s\n", s->nhist, loss, rate);
            tlast = tn;
            last = done;
        }
        if (s->o.average && s->dim && (st = average_push(s, err)) != EM_OK) break;
        if (stop_check(s)) {
            s->converged = 1;
            break;
        }
    }
    if (st == EM_OK && s->o.average) average_apply(s);
    if (steps_done) *steps_done = done;
    return st;
}

em_status em_svi_result_get(em_svi *s, size_t num_particles, em_svi_result *r, em_error *err) {
    if (!s || !r) return em_error_set(err, EM_ERR_ARG, "em_svi_result_get: no SVI or no result");
    if (num_particles == 0) num_particles = 1000;
    memset(r, 0, sizeof *r);
    r->converged = s->converged;
    r->steps = s->nhist;
    r->skipped = s->skipped;
    r->window_decrease = s->win_dec;
    r->window_decrease_se = s->win_se;
    r->rel_change = s->win_rel;
    r->elbo_particles = num_particles;
    elbo_ctx c = s->c;
    c.rng = em_rng_create(s->o.seed, 0x5f2);
    if (!c.rng) return em_error_set(err, EM_ERR_NOMEM, "svi: out of memory");
    em_tape *t = em_model_tape(c.m);
    double sum = 0.0, ss = 0.0;
    int finite = 1;
    em_status st = EM_OK;
    for (size_t k = 0; k < num_particles; k++) {
        em_tape_reset(t);
        em_error e = {0};
        em_var v;
        st = elbo_particle(&c, &v, &e);
        double x = st == EM_OK ? em_val_scalar_(t, v) : -INFINITY;
        if (st == EM_ERR_DOMAIN || st == EM_ERR_NONFINITE) st = EM_OK;
        if (st != EM_OK) {
            st = em_error_set(err, st, "em_svi_result_get: %s", e.msg);
            break;
        }
        if (!isfinite(x)) {
            finite = 0;
            continue;
        }
        /* Welford: the ELBO of a regression is large, its spread small */
        double d = x - sum;
        sum += d / (double)(k + 1);
        ss += d * (x - sum);
    }
    em_tape_reset(t);
    em_rng_destroy(c.rng);
    if (st != EM_OK) return st;
    r->elbo = finite ? sum : -INFINITY;
    r->elbo_se = finite ? sqrt(ss / (double)(num_particles > 1 ? num_particles - 1 : 1) / (double)num_particles) : NAN;
    return EM_OK;
}

const double *em_svi_loss_history(const em_svi *s, size_t *n) {
    if (n) *n = s->nhist;
    return s->hist;
}
size_t em_svi_num_steps(const em_svi *s) { return s->nhist; }
size_t em_svi_num_skipped(const em_svi *s) { return s->skipped; }
int em_svi_converged(const em_svi *s) { return s->converged; }
em_param_store *em_svi_params(em_svi *s) { return s->ps; }
em_model *em_svi_model(em_svi *s) { return s->c.m; }
em_rng *em_svi_rng(em_svi *s) { return s->c.rng; }
