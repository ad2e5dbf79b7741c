/* dist_wrap.c — families made of other families: a finite mixture of univariate components
 * (log Σ_k w_k p_k(x), as log_sum_exp over the components' pointwise terms), weighted
 * observations (brms's weights(): Σ_i w_i log p(x_i)), censored
 * observations (brms's cens(): each element scored by its density, log CDF, log CCDF or the log
 * probability of an interval) and truncation to [lb, ub] (brms's trunc(): the density over the
 * mass inside). Their log densities are graphs of ordinary tape nodes — gathers, pointwise terms,
 * log CDFs, log_sum_exp — so they differentiate and replay like any model code; the wrappers add
 * no node type of their own. Their state lives in the tape's arena (em_dist.impl). */
#include "internal/dist_impl.h"

#include <stdlib.h>

#include <gsl/gsl_rng.h>

#include "internal/mathx.h"

static size_t ev_one(const em_dist *d) { (void)d; return 1; }

static em_dist invalid_dist(em_tape *t) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.tape = t;
    for (int k = 0; k < 4; k++) d.p[k] = EM_VAR_INVALID;
    return d;
}

/* A wrapper's base must be a continuous univariate family with log CDFs on the same tape. */
static int check_cdf_base(const em_dist *d, const char *what) {
    if (!d || !d->tape) return 0;
    if (!d->ops) return 0; /* the base's constructor failed: the tape says why */
    if (d->ops->discrete || !d->ops->log_cdf || !d->ops->log_ccdf || !d->ops->pointwise || em_dist_event_len(d) != 1) {
        em_tape_fail(d->tape, EM_ERR_ARG, "%s: %s has no log CDF (a continuous univariate family is needed)", what,
                     d->ops->name);
        return 0;
    }
    return 1;
}

/* The base family restricted to the elements idx[0..m) of a batch of n: each vector parameter
 * (of length n) gathered, each scalar kept. */
static em_dist restrict_dist(const em_dist *d, size_t n, const size_t *idx, size_t m, const char *what) {
    em_tape *t = d->tape;
    em_var p[4];
    int np = d->ops->nparams;
    for (int k = 0; k < np; k++) {
        size_t len = em_len(t, d->p[k]);
        if (len != 1 && len != n) {
            em_tape_fail(t, EM_ERR_SHAPE, "%s: %s parameter %s has length %zu, the value %zu", what, d->ops->name,
                         d->ops->param_names[k], len, n);
            return invalid_dist(t);
        }
        p[k] = len == 1 || m == n ? d->p[k] : em_op_gather(t, d->p[k], idx, m);
    }
    return em_dist_make(t, d->ops, p, np);
}

/* ---- finite mixtures ------------------------------------------------------------------------- */

typedef struct {
    size_t K;
    em_dist *comp;
} mix_impl;

/* log Σ_k w_k p_k(x_i) for each element: log_sum_exp, pairwise, of log p_k(x_i) + log w_k */
static em_var mixture_terms(const em_dist *d, em_var x) {
    em_tape *t = d->tape;
    const mix_impl *m = d->impl;
    const em_node *w = em_node_get(t, d->p[0]);
    double s = 0.0;
    for (size_t k = 0; k < m->K; k++) {
        if (!(w->val[k] >= 0.0)) return em_tape_fail(t, EM_ERR_DOMAIN, "Mixture: weights[%zu] = %g must be non-negative", k, w->val[k]);
        s += w->val[k];
    }
    if (!(fabs(s - 1.0) <= 1e-8 * (double)m->K))
        return em_tape_fail(t, EM_ERR_DOMAIN, "Mixture: the weights sum to %.17g, not 1", s);
    em_var lw = em_op_log(t, d->p[0]), acc = EM_VAR_INVALID;
    for (size_t k = 0; k < m->K; k++) {
        em_var term = em_op_add(t, em_dist_pointwise(&m->comp[k], EM_TERM_LOG_PROB, x), em_op_slice(t, lw, k, 1));
        acc = k == 0 ? term : em_op_log_sum_exp2(t, acc, term);
    }
    return acc;
}

static em_var mixture_lp(const em_dist *d, em_var x) { return em_op_sum(d->tape, mixture_terms(d, x)); }

static em_var mixture_pointwise(const em_dist *d, em_dist_term which, em_var x) {
    if (which != EM_TERM_LOG_PROB)
        return em_tape_fail(d->tape, EM_ERR_ARG, "Mixture: pointwise log CDFs are not available");
    return mixture_terms(d, x);
}

/* Each element from component k with probability w_k: a draw of all n from every component,
 * then one pick per element (the components draw their batches as a whole). */
static em_status mixture_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    const mix_impl *m = d->impl;
    double *buf = malloc(m->K * n * sizeof *buf);
    if (!buf) return em_error_set(err, EM_ERR_NOMEM, "Mixture sample: out of memory");
    em_status st = EM_OK;
    for (size_t k = 0; k < m->K && st == EM_OK; k++) st = em_dist_sample(&m->comp[k], r, buf + k * n, n, err);
    if (st == EM_OK)
        for (size_t i = 0; i < n; i++) {
            double u = gsl_rng_uniform(r), c = 0.0;
            size_t k = 0;
            for (; k + 1 < m->K; k++) {
                c += em_pv(d->tape, d->p[0], k);
                if (u < c) break;
            }
            out[i] = buf[k * n + i];
        }
    free(buf);
    return st;
}

/* mean Σ w_k m_k; variance Σ w_k (v_k + m_k²) - mean² */
static em_status mixture_moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    const mix_impl *m = d->impl;
    double *buf = malloc(2 * n * sizeof *buf);
    if (!buf) return em_error_set(err, EM_ERR_NOMEM, "Mixture: out of memory");
    double *mk = buf, *vk = buf + n;
    for (size_t i = 0; i < n; i++) out[i] = 0.0;
    em_status st = EM_OK;
    for (size_t k = 0; k < m->K && st == EM_OK; k++) {
        double w = em_pv(d->tape, d->p[0], k);
        st = em_dist_mean(&m->comp[k], mk, n, err);
        if (st == EM_OK && var) st = em_dist_variance(&m->comp[k], vk, n, err);
        if (st == EM_OK)
            for (size_t i = 0; i < n; i++) out[i] += w * (var ? vk[i] + mk[i] * mk[i] : mk[i]);
    }
    if (st == EM_OK && var) {
        double *mean = malloc(n * sizeof *mean);
        if (!mean) st = em_error_set(err, EM_ERR_NOMEM, "Mixture: out of memory");
        else if ((st = mixture_moment(d, mean, n, err, 0)) == EM_OK)
            for (size_t i = 0; i < n; i++) out[i] -= mean[i] * mean[i];
        free(mean);
    }
    free(buf);
    return st;
}
static em_status mixture_mean(const em_dist *d, double *out, size_t n, em_error *err) {
    return mixture_moment(d, out, n, err, 0);
}
static em_status mixture_var(const em_dist *d, double *out, size_t n, em_error *err) {
    return mixture_moment(d, out, n, err, 1);
}
static em_support mixture_support(const em_dist *d) {
    const mix_impl *m = d->impl;
    return em_dist_support(&m->comp[0]);
}

static const em_dist_ops mixture_ops = {.name = "Mixture", .nparams = 1, .param_names = {"weights"},
                                        .discrete = 0, .event_len = ev_one, .support = mixture_support,
                                        .log_prob = mixture_lp, .sample = mixture_sample, .mean = mixture_mean,
                                        .variance = mixture_var, .pointwise = mixture_pointwise};
static const em_dist_ops mixture_discrete_ops = {
    .name = "Mixture", .nparams = 1, .param_names = {"weights"}, .discrete = 1, .event_len = ev_one,
    .support = mixture_support, .log_prob = mixture_lp, .sample = mixture_sample, .mean = mixture_mean,
    .variance = mixture_var, .pointwise = mixture_pointwise};

em_dist em_dist_mixture(em_tape *t, em_var weights, const em_dist *components, size_t K) {
    em_dist d = invalid_dist(t);
    if (!t || !em_var_ok(weights)) return d;
    if (!components || K == 0) {
        em_tape_fail(t, EM_ERR_ARG, "Mixture: no components");
        return d;
    }
    if (em_len(t, weights) != K) {
        em_tape_fail(t, EM_ERR_SHAPE, "Mixture: %zu weights for %zu components", em_len(t, weights), K);
        return d;
    }
    size_t batch = 1;
    for (size_t k = 0; k < K; k++) {
        const em_dist *c = &components[k];
        if (!c->ops) {
            em_tape_fail(t, EM_ERR_ARG, "Mixture: component %zu is invalid (its constructor failed)", k);
            return d;
        }
        if (c->tape != t || !c->ops->pointwise || em_dist_event_len(c) != 1 ||
            c->ops->discrete != components[0].ops->discrete ||
            em_dist_support(c).kind != em_dist_support(&components[0]).kind) {
            em_tape_fail(t, EM_ERR_ARG,
                         "Mixture: component %zu (%s) must be a univariate family on the same tape and support as "
                         "component 0 (%s)",
                         k, c->ops->name, components[0].ops->name);
            return d;
        }
        if (c->batch_len > batch) batch = c->batch_len;
    }
    mix_impl *m = em_arena_alloc(em_tape_arena(t), sizeof *m);
    em_dist *comp = em_arena_alloc(em_tape_arena(t), K * sizeof *comp);
    if (!m || !comp) {
        em_tape_fail(t, EM_ERR_NOMEM, "Mixture: out of memory");
        return d;
    }
    memcpy(comp, components, K * sizeof *comp);
    m->K = K;
    m->comp = comp;
    d.ops = components[0].ops->discrete ? &mixture_discrete_ops : &mixture_ops;
    d.p[0] = weights;
    d.batch_len = batch;
    d.impl = m;
    return d;
}

/* ---- censoring ------------------------------------------------------------------------------ */

enum { CENS_NONE, CENS_LEFT, CENS_RIGHT, CENS_INTERVAL, CENS_KINDS };

typedef struct {
    em_dist base;
    size_t n;
    size_t *idx[CENS_KINDS], m[CENS_KINDS]; /* the elements of each kind */
    const double *upper;
} cens_impl;

static em_var censored_lp(const em_dist *d, em_var x) {
    em_tape *t = d->tape;
    const cens_impl *c = d->impl;
    if (em_len(t, x) != c->n)
        return em_tape_fail(t, EM_ERR_SHAPE, "Censored %s: the value has length %zu, the censoring %zu",
                            c->base.ops->name, em_len(t, x), c->n);
    const em_node *xn = em_node_get(t, x);
    if (!xn->adj) /* data: an interval must lie above its value */
        for (size_t j = 0; j < c->m[CENS_INTERVAL]; j++) {
            size_t i = c->idx[CENS_INTERVAL][j];
            if (!(c->upper[i] > xn->val[i])) {
                em_error e;
                em_error_clear(&e);
                em_error_set(&e, EM_ERR_DOMAIN, "Censored %s: upper[%zu] = %g must be above value[%zu] = %g",
                             c->base.ops->name, i, c->upper[i], i, xn->val[i]);
                return em_dist_domain_fail(t, &e);
            }
        }
    em_var terms[CENS_KINDS];
    size_t k = 0;
    for (int kind = 0; kind < CENS_KINDS; kind++) {
        size_t m = c->m[kind];
        if (!m) continue;
        const size_t *idx = c->idx[kind];
        em_dist b = restrict_dist(&c->base, c->n, idx, m, "Censored");
        em_var xg = m == c->n ? x : em_op_gather(t, x, idx, m);
        switch (kind) {
        case CENS_NONE: terms[k++] = em_dist_log_prob(&b, xg); break;
        case CENS_LEFT: terms[k++] = em_dist_log_cdf(&b, xg); break;
        case CENS_RIGHT: terms[k++] = em_dist_log_ccdf(&b, xg); break;
        default: { /* log(F(upper) - F(x)), the lower CDFs accurate near 1 as well (log1p of the tail) */
            em_var u = em_op_gather(t, em_const(t, c->upper, c->n), idx, m);
            terms[k++] = em_op_sum(t, em_op_log_diff_exp(t, em_dist_pointwise(&b, EM_TERM_LOG_CDF, u),
                                                         em_dist_pointwise(&b, EM_TERM_LOG_CDF, xg)));
        }
        }
    }
    return em_op_add_many(t, terms, k);
}

static em_status censored_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    const cens_impl *c = d->impl;
    return em_dist_sample(&c->base, r, out, n, err);
}
static em_status censored_mean(const em_dist *d, double *out, size_t n, em_error *err) {
    const cens_impl *c = d->impl;
    return em_dist_mean(&c->base, out, n, err);
}
static em_status censored_var(const em_dist *d, double *out, size_t n, em_error *err) {
    const cens_impl *c = d->impl;
    return em_dist_variance(&c->base, out, n, err);
}
static em_support censored_support(const em_dist *d) {
    const cens_impl *c = d->impl;
    return em_dist_support(&c->base);
}
static const em_dist_ops censored_ops = {.name = "Censored", .nparams = 0, .event_len = ev_one,
                                         .support = censored_support, .log_prob = censored_lp,
                                         .sample = censored_sample, .mean = censored_mean,
                                         .variance = censored_var};

em_dist em_dist_censored(const em_dist *base, const double *cens, const double *upper, size_t n) {
    em_tape *t = base ? base->tape : NULL;
    em_dist d = invalid_dist(t);
    if (!check_cdf_base(base, "Censored")) return d;
    if (!cens || n == 0) {
        em_tape_fail(t, EM_ERR_ARG, "Censored %s: no censoring indicators", base->ops->name);
        return d;
    }
    if (base->batch_len != 1 && base->batch_len != n) {
        em_tape_fail(t, EM_ERR_SHAPE, "Censored %s: %zu censoring indicators for a batch of %zu", base->ops->name, n,
                     base->batch_len);
        return d;
    }
    cens_impl *c = em_arena_calloc(em_tape_arena(t), sizeof *c);
    if (!c) {
        em_tape_fail(t, EM_ERR_NOMEM, "Censored: out of memory");
        return d;
    }
    for (size_t i = 0; i < n; i++) {
        double v = cens[i];
        if (!(v == -1.0 || v == 0.0 || v == 1.0 || v == 2.0)) {
            em_tape_fail(t, EM_ERR_DOMAIN, "Censored %s: cens[%zu] = %g must be -1 (left), 0, 1 (right) or 2 (interval)",
                         base->ops->name, i, v);
            return d;
        }
        if (v == 2.0 && !upper) {
            em_tape_fail(t, EM_ERR_ARG, "Censored %s: cens[%zu] = 2 (interval) needs upper bounds", base->ops->name, i);
            return d;
        }
        c->m[v == 0.0 ? CENS_NONE : v < 0.0 ? CENS_LEFT : v == 1.0 ? CENS_RIGHT : CENS_INTERVAL]++;
    }
    for (int kind = 0; kind < CENS_KINDS; kind++) {
        c->idx[kind] = c->m[kind] ? em_arena_alloc(em_tape_arena(t), c->m[kind] * sizeof(size_t)) : NULL;
        if (c->m[kind] && !c->idx[kind]) {
            em_tape_fail(t, EM_ERR_NOMEM, "Censored: out of memory");
            return d;
        }
        c->m[kind] = 0; /* refilled below, as a fill count */
    }
    for (size_t i = 0; i < n; i++) {
        double v = cens[i];
        int kind = v == 0.0 ? CENS_NONE : v < 0.0 ? CENS_LEFT : v == 1.0 ? CENS_RIGHT : CENS_INTERVAL;
        c->idx[kind][c->m[kind]++] = i;
    }
    c->base = *base;
    c->n = n;
    c->upper = upper;
    d.ops = &censored_ops;
    d.batch_len = n;
    d.impl = c;
    return d;
}

/* ---- weights ---------------------------------------------------------------------------------- */

typedef struct {
    em_dist base;
    size_t n;
    const double *w;
} weighted_impl;

/* w_i log p(x_i), the terms brms's weights() put in the target and in log_lik */
static em_var weighted_terms(const em_dist *d, em_var x) {
    em_tape *t = d->tape;
    const weighted_impl *w = d->impl;
    if (em_len(t, x) != w->n) /* em_dist_log_prob_at hands over a subset: the weights do not follow it */
        return em_tape_fail(t, EM_ERR_SHAPE, "Weighted %s: the value has length %zu, the weights %zu (leaving "
                                             "observations out of a weighted likelihood is not supported)",
                            w->base.ops->name, em_len(t, x), w->n);
    return em_op_mul(t, em_const(t, w->w, w->n), em_dist_pointwise(&w->base, EM_TERM_LOG_PROB, x));
}
static em_var weighted_lp(const em_dist *d, em_var x) { return em_op_sum(d->tape, weighted_terms(d, x)); }
static em_var weighted_pw(const em_dist *d, em_dist_term which, em_var x) {
    if (which != EM_TERM_LOG_PROB) return em_tape_fail(d->tape, EM_ERR_ARG, "Weighted: log CDFs are not available");
    return weighted_terms(d, x);
}
static em_status weighted_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return em_dist_sample(&((const weighted_impl *)d->impl)->base, r, out, n, err);
}
static em_status weighted_mean(const em_dist *d, double *out, size_t n, em_error *err) {
    return em_dist_mean(&((const weighted_impl *)d->impl)->base, out, n, err);
}
static em_status weighted_var(const em_dist *d, double *out, size_t n, em_error *err) {
    return em_dist_variance(&((const weighted_impl *)d->impl)->base, out, n, err);
}
static em_support weighted_support(const em_dist *d) { return em_dist_support(&((const weighted_impl *)d->impl)->base); }
static const em_dist_ops weighted_ops = {.name = "Weighted", .nparams = 0, .event_len = ev_one,
                                         .support = weighted_support, .log_prob = weighted_lp,
                                         .sample = weighted_sample, .mean = weighted_mean, .variance = weighted_var,
                                         .pointwise = weighted_pw};
static const em_dist_ops weighted_discrete_ops = {.name = "Weighted", .nparams = 0, .discrete = 1, .event_len = ev_one,
                                                  .support = weighted_support, .log_prob = weighted_lp,
                                                  .sample = weighted_sample, .mean = weighted_mean,
                                                  .variance = weighted_var, .pointwise = weighted_pw};

em_dist em_dist_weighted(const em_dist *base, const double *w, size_t n) {
    em_tape *t = base ? base->tape : NULL;
    em_dist d = invalid_dist(t);
    if (!t || !base->ops) return d; /* the base's constructor failed: the tape says why */
    if (!base->ops->pointwise || em_dist_event_len(base) != 1) {
        em_tape_fail(t, EM_ERR_ARG, "Weighted: %s has no pointwise log density (a univariate family is needed)",
                     base->ops->name);
        return d;
    }
    if (!w || n == 0 || (base->batch_len != 1 && base->batch_len != n)) {
        em_tape_fail(t, EM_ERR_SHAPE, "Weighted %s: %zu weights for a batch of %zu", base->ops->name, n, base->batch_len);
        return d;
    }
    for (size_t i = 0; i < n; i++)
        if (!(w[i] >= 0 && w[i] < INFINITY)) {
            em_tape_fail(t, EM_ERR_DOMAIN, "Weighted %s: weight[%zu] = %g must be finite and non-negative",
                         base->ops->name, i, w[i]);
            return d;
        }
    weighted_impl *wi = em_arena_alloc(em_tape_arena(t), sizeof *wi);
    if (!wi) {
        em_tape_fail(t, EM_ERR_NOMEM, "Weighted: out of memory");
        return d;
    }
    wi->base = *base;
    wi->n = n;
    wi->w = w;
    d.ops = base->ops->discrete ? &weighted_discrete_ops : &weighted_ops;
    d.batch_len = n;
    d.data = base->data; /* the binomial totals, for the data's support check */
    d.data_len = base->data_len;
    d.impl = wi;
    return d;
}

/* ---- truncation ----------------------------------------------------------------------------- */

typedef struct {
    em_dist base;
    em_var lb, ub;
    int has_lb, has_ub;
} trunc_impl;

/* a bound that is the constant scalar ∓inf means no bound on that side */
static int is_bound(const em_tape *t, em_var b, double none) {
    const em_node *nb = em_node_get(t, b);
    return nb->adj || nb->n != 1 || nb->val[0] != none;
}

static em_var truncated_lp(const em_dist *d, em_var x) {
    em_tape *t = d->tape;
    const trunc_impl *tr = d->impl;
    const em_dist *b = &tr->base;
    size_t n = em_len(t, x);
    em_var bounds[2] = {tr->lb, tr->ub};
    size_t m = em_dist_common_len(t, "Truncated", bounds, 2);
    if (!m) return EM_VAR_INVALID;
    if (b->batch_len > m) m = b->batch_len;
    if (m != 1 && m != n)
        return em_tape_fail(t, EM_ERR_SHAPE, "Truncated %s: bounds and parameters of length %zu, the value %zu",
                            b->ops->name, m, n);
    /* A value outside [lb, ub] has density 0 (the base's own support is its log_prob's affair).
     * Bounds that are parameters are read with em_value, which marks the tape: the model then
     * runs again at every evaluation instead of replaying a check made at other bounds. */
    const em_node *xn = em_node_get(t, x), *lb = em_node_get(t, tr->lb), *ub = em_node_get(t, tr->ub);
    const double *lo_v = em_value(t, tr->lb), *hi_v = em_value(t, tr->ub);
    for (size_t i = 0; i < n; i++) {
        double xi = xn->val[i], lo = lo_v[lb->n == 1 ? 0 : i], hi = hi_v[ub->n == 1 ? 0 : i];
        if (!(xi >= lo && xi <= hi)) {
            em_error e;
            em_error_clear(&e);
            em_error_set(&e, EM_ERR_DOMAIN, "Truncated %s: value[%zu] = %g is outside the truncation [%g, %g]",
                         b->ops->name, i, xi, lo, hi);
            return em_dist_domain_fail(t, &e);
        }
    }
    /* log of the mass inside: log(F(ub) - F(lb)), log(1 - F(lb)) or log F(ub) */
    em_var z;
    if (tr->has_lb && tr->has_ub)
        z = em_op_sum(t, em_op_log_diff_exp(t, em_dist_pointwise(b, EM_TERM_LOG_CDF, tr->ub),
                                            em_dist_pointwise(b, EM_TERM_LOG_CDF, tr->lb)));
    else if (tr->has_lb)
        z = em_dist_log_ccdf(b, tr->lb);
    else
        z = em_dist_log_cdf(b, tr->ub);
    if (m == 1 && n > 1) z = em_op_mul(t, z, em_scalar(t, (double)n));
    return em_op_sub(t, em_dist_log_prob(b, x), z);
}

/* One draw of element i by inverting the base's CDF inside [lo, hi], for a truncation that keeps
 * too little of the base's mass for redrawing: with u uniform, the point where the tail
 * T = F (or 1 - F, whichever side the interval lies on: no tail near 1 is ever inverted) takes
 * (1 - u)·T(lo) + u·T(hi), found in logs by bisection (an infinite end is bracketed by doubling
 * steps). The log CDFs are evaluated on a scratch tape, with element i's parameters. */
static em_status truncated_invert(const em_dist *base, size_t i, double lo, double hi, em_rng *r, double *out,
                                  em_error *err) {
    em_tape *t2 = em_tape_create();
    if (!t2) return em_error_set(err, EM_ERR_NOMEM, "Truncated sample: out of memory");
    em_var p[4];
    for (int k = 0; k < base->ops->nparams; k++) p[k] = em_scalar(t2, em_pv(base->tape, base->p[k], i));
    em_dist b = em_dist_make(t2, base->ops, p, base->ops->nparams);
    double mid = lo > -INFINITY && hi < INFINITY ? 0.5 * (lo + hi) : lo > -INFINITY ? lo : hi;
    int upper = em_value_scalar(t2, em_dist_log_cdf(&b, em_scalar(t2, mid))) > -0.69314718055994531;
#define TAIL(x) em_value_scalar(t2, upper ? em_dist_log_ccdf(&b, em_scalar(t2, (x))) : em_dist_log_cdf(&b, em_scalar(t2, (x))))
    double u = gsl_rng_uniform_pos(r), tlo = TAIL(lo), thi = TAIL(hi);
    double target = em_math_log_sum_exp2(tlo + log1p(-u), thi + log(u));
    /* the tail decreases in x when upper, increases otherwise: "past" means beyond the target */
    double a = lo, z = hi, w = 1.0;
    if (a == -INFINITY)
        for (a = z - w; upper ? TAIL(a) < target : TAIL(a) > target; w *= 2.0) a = z - 2.0 * w;
    if (z == INFINITY)
        for (z = a + w; upper ? TAIL(z) > target : TAIL(z) < target; w *= 2.0) z = a + 2.0 * w;
    for (int it = 0; it < 200 && z - a > 4e-16 * fmax(fabs(a), fabs(z)); it++) {
        double m = 0.5 * (a + z), v = TAIL(m);
        if (upper ? v > target : v < target) a = m;
        else z = m;
    }
#undef TAIL
    em_status st = em_tape_status(t2);
    if (st != EM_OK) em_error_set(err, st, "Truncated sample: %s", em_tape_error(t2)->msg);
    *out = fmin(fmax(0.5 * (a + z), lo), hi);
    em_tape_destroy(t2);
    return st;
}

/* Draws of the base kept when inside [lb, ub], redrawn otherwise: exact and fast while the
 * truncation keeps much of the base's mass; an element still outside after a few rounds is drawn
 * by inverting the CDF (truncated_invert). */
#define EM_TRUNC_ROUNDS 32
static em_status truncated_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    const trunc_impl *tr = d->impl;
    const em_node *lb = em_node_get(d->tape, tr->lb), *ub = em_node_get(d->tape, tr->ub);
    double *buf = malloc(n * sizeof *buf);
    unsigned char *done = calloc(n, 1);
    em_status st = EM_OK;
    if (!buf || !done) st = em_error_set(err, EM_ERR_NOMEM, "Truncated sample: out of memory");
    size_t left = n;
    for (int round = 0; st == EM_OK && left && round < EM_TRUNC_ROUNDS; round++) {
        st = em_dist_sample(&tr->base, r, buf, n, err);
        for (size_t i = 0; st == EM_OK && i < n; i++) {
            double lo = lb->val[lb->n == 1 ? 0 : i % lb->n], hi = ub->val[ub->n == 1 ? 0 : i % ub->n];
            if (!done[i] && buf[i] >= lo && buf[i] <= hi) {
                out[i] = buf[i];
                done[i] = 1;
                left--;
            }
        }
    }
    for (size_t i = 0; st == EM_OK && left && i < n; i++)
        if (!done[i])
            st = truncated_invert(&tr->base, i, lb->val[lb->n == 1 ? 0 : i % lb->n], ub->val[ub->n == 1 ? 0 : i % ub->n],
                                  r, out + i, err);
    free(buf);
    free(done);
    return st;
}

/* The base's support cut to [lb, ub] when the bounds are constant scalars; NaN bounds (no
 * single support, as for a batch of Uniforms with different intervals) otherwise. */
static em_support truncated_support(const em_dist *d) {
    const trunc_impl *tr = d->impl;
    em_support s = em_dist_support(&tr->base);
    const em_node *lb = em_node_get(d->tape, tr->lb), *ub = em_node_get(d->tape, tr->ub);
    if (lb->adj || ub->adj || lb->n != 1 || ub->n != 1) return (em_support){EM_SUPPORT_INTERVAL, NAN, NAN};
    double lo = fmax(s.lo, lb->val[0]), hi = fmin(s.hi, ub->val[0]);
    if (lo > -INFINITY && hi < INFINITY) return (em_support){EM_SUPPORT_INTERVAL, lo, hi};
    if (lo > -INFINITY) return (em_support){lo == 0.0 ? EM_SUPPORT_POSITIVE : EM_SUPPORT_LOWER, lo, INFINITY};
    if (hi < INFINITY) return (em_support){EM_SUPPORT_UPPER, -INFINITY, hi};
    return s;
}
static const em_dist_ops truncated_ops = {.name = "Truncated", .nparams = 0, .event_len = ev_one,
                                          .support = truncated_support, .log_prob = truncated_lp,
                                          .sample = truncated_sample};

em_dist em_dist_truncated(const em_dist *base, em_var lb, em_var ub) {
    em_tape *t = base ? base->tape : NULL;
    em_dist d = invalid_dist(t);
    if (!check_cdf_base(base, "Truncated") || !em_var_ok(lb) || !em_var_ok(ub)) return d;
    trunc_impl *tr = em_arena_alloc(em_tape_arena(t), sizeof *tr);
    if (!tr) {
        em_tape_fail(t, EM_ERR_NOMEM, "Truncated: out of memory");
        return d;
    }
    tr->base = *base;
    tr->lb = lb;
    tr->ub = ub;
    tr->has_lb = is_bound(t, lb, -INFINITY);
    tr->has_ub = is_bound(t, ub, INFINITY);
    if (!tr->has_lb && !tr->has_ub) return *base; /* nothing to truncate */
    em_var bounds[2] = {lb, ub};
    size_t nb = em_dist_common_len(t, "Truncated", bounds, 2);
    if (!nb) return d;
    const em_node *l = em_node_get(t, lb), *u = em_node_get(t, ub);
    for (size_t i = 0; i < nb; i++) {
        double lo = l->val[l->n == 1 ? 0 : i], hi = u->val[u->n == 1 ? 0 : i];
        if (!(lo < hi)) {
            em_tape_fail(t, EM_ERR_DOMAIN, "Truncated %s: lb[%zu] = %g must be below ub[%zu] = %g", base->ops->name, i,
                         lo, i, hi);
            return d;
        }
    }
    d.ops = &truncated_ops;
    d.batch_len = base->batch_len;
    d.impl = tr;
    return d;
}
