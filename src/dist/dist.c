/* dist.c — the family-independent part of the dist module: dispatch, supports and their
 * default transforms, parameter checking and messages, the backward passes shared by the
 * elementwise families, and KL divergences. See dist.h; families live in dist_*.c. */
#include "internal/dist_impl.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- supports ---------------------------------------------------------------------------- */

em_transform em_support_transform(em_support s) {
    em_transform tr = {EM_TRANSFORM_IDENTITY, 0.0, 0.0};
    switch (s.kind) {
    case EM_SUPPORT_POSITIVE: tr.kind = EM_TRANSFORM_POSITIVE; break;
    case EM_SUPPORT_LOWER:
        tr.kind = EM_TRANSFORM_LOWER;
        tr.lo = s.lo;
        break;
    case EM_SUPPORT_UPPER:
        tr.kind = EM_TRANSFORM_UPPER;
        tr.hi = s.hi;
        break;
    case EM_SUPPORT_INTERVAL:
        tr.kind = EM_TRANSFORM_INTERVAL;
        tr.lo = s.lo;
        tr.hi = s.hi;
        break;
    case EM_SUPPORT_UNIT: tr.kind = EM_TRANSFORM_UNIT; break;
    case EM_SUPPORT_SIMPLEX: tr.kind = EM_TRANSFORM_SIMPLEX; break;
    case EM_SUPPORT_CORR_CHOLESKY: tr.kind = EM_TRANSFORM_CORR_CHOLESKY; break;
    default: break; /* real line, and discrete supports (never transformed) */
    }
    return tr;
}

int em_support_is_discrete(em_support s) {
    return s.kind == EM_SUPPORT_BOOLEAN || s.kind == EM_SUPPORT_COUNT_N ||
           s.kind == EM_SUPPORT_NONNEG_INT || s.kind == EM_SUPPORT_CATEGORY;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static em_status no_ops(const em_dist *d, em_error *err, const char *what) {
    if (!d) return em_error_set(err, EM_ERR_ARG, "%s: NULL distribution", what);
    if (d->tape && em_tape_status(d->tape) != EM_OK)
        return em_error_set(err, em_tape_status(d->tape), "%s: invalid distribution (%s)", what,
                            em_tape_error(d->tape)->msg);
    return em_error_set(err, EM_ERR_ARG, "%s: invalid distribution (its constructor failed)", what);
}

em_var em_dist_log_prob(const em_dist *d, em_var value) {
    if (!d || !d->ops || !d->tape || !em_var_ok(value)) return EM_VAR_INVALID;
    return d->ops->log_prob(d, value);
}

em_status em_dist_log_prob_pointwise(const em_dist *d, const double *value, size_t n, double *out, em_error *err) {
    if (!d || !d->ops || !d->tape) return no_ops(d, err, "log_prob_pointwise");
    if (!value || !out) return em_error_set(err, EM_ERR_ARG, "%s log_prob_pointwise: NULL value or output", d->ops->name);
    size_t ev = em_dist_event_len(d);
    if (n == 0 || n % ev)
        return em_error_set(err, EM_ERR_SHAPE,
                            "%s log_prob_pointwise: n = %zu is not a positive multiple of the event length %zu",
                            d->ops->name, n, ev);
    if (em_dist_is_glm(d))
        return em_glm_log_prob_pointwise(d, value, n, out, err);
    /* The family's pointwise node (em_dist_pointwise) on the values, read and dropped again by
     * rewinding the tape to where it was; a family without one can still score one event. */
    em_tape *t = d->tape;
    if (em_tape_status(t) != EM_OK)
        return em_error_set(err, em_tape_status(t), "%s log_prob_pointwise: %s", d->ops->name, em_tape_error(t)->msg);
    if (!d->ops->pointwise && n != ev)
        return em_error_set(err, EM_ERR_ARG, "%s: the log density cannot be split into pointwise terms", d->ops->name);
    size_t mark = em_tape_size(t);
    em_arena_mark am = em_arena_mark_get(em_tape_arena(t));
    em_var v = em_const(t, value, n);
    em_var lp = d->ops->pointwise ? em_dist_pointwise(d, EM_TERM_LOG_PROB, v) : em_dist_log_prob(d, v);
    em_status st = EM_OK;
    if (em_tape_status(t) != EM_OK || !em_var_ok(lp))
        st = em_error_set(err, em_tape_status(t) ? em_tape_status(t) : EM_ERR_DOMAIN, "%s", em_tape_error(t)->msg);
    else
        memcpy(out, em_val_(t, lp), (n / ev) * sizeof *out);
    t->count = mark;
    em_arena_rewind(em_tape_arena(t), am);
    return st;
}

em_var em_dist_log_prob_at(const em_dist *d, em_var value, const size_t *idx, size_t k) {
    if (!d || !d->ops || !d->tape || !em_var_ok(value)) return EM_VAR_INVALID;
    em_tape *t = d->tape;
    if (!idx || k == 0) return em_scalar(t, 0.0);
    size_t n = em_len(t, value);
    for (size_t j = 0; j < k; j++)
        if (idx[j] >= n)
            return em_tape_fail(t, EM_ERR_INDEX, "%s log_prob_at: index %zu is out of range (%zu values)", d->ops->name,
                                idx[j], n);
    if (em_dist_event_len(d) != 1)
        return em_tape_fail(t, EM_ERR_ARG, "%s: leaving single observations out needs a univariate family", d->ops->name);
    if (d->impl && d->ops->pointwise) /* a wrapper (censored, truncated, mixture): its terms, selected */
        return em_op_sum(t, em_op_gather(t, em_dist_pointwise(d, EM_TERM_LOG_PROB, value), idx, k));
    em_dist sub = *d;
    sub.batch_len = k;
    int glm = em_dist_is_glm(d);
    for (int q = 0; q < 4 && em_var_ok(d->p[q]); q++) {
        size_t len = em_len(t, d->p[q]);
        if (glm && q == 0) { /* the rows of X */
            size_t cols = em_cols(t, d->p[0]);
            double *rows = em_arena_alloc(em_tape_arena(t), k * cols * sizeof *rows);
            if (!rows) return em_tape_fail(t, EM_ERR_NOMEM, "%s log_prob_at: out of memory", d->ops->name);
            const double *X = em_val_(t, d->p[0]);
            for (size_t j = 0; j < k; j++) memcpy(rows + j * cols, X + idx[j] * cols, cols * sizeof *rows);
            sub.p[0] = em_const_matrix(t, rows, k, cols);
        } else if (glm && (q == 2 || (q == 3 && d->ops == &em_ops_ordered_logistic_glm))) {
            continue; /* beta: one per column, not per row; the cutpoints: shared by every row */
        } else if (len == n && n > 1) {
            sub.p[q] = em_gather(t, d->p[q], idx, k);
        }
    }
    if (d->data && d->data_len > 1) { /* per-observation constants (binomial totals) */
        double *dd = em_arena_alloc(em_tape_arena(t), k * sizeof *dd);
        if (!dd) return em_tape_fail(t, EM_ERR_NOMEM, "%s log_prob_at: out of memory", d->ops->name);
        for (size_t j = 0; j < k; j++) dd[j] = d->data[idx[j]];
        sub.data = dd;
        sub.data_len = k;
    }
    return d->ops->log_prob(&sub, em_gather(t, value, idx, k));
}

/* What a value must be for a support, as far as it does not depend on parameter values: 0
 * when fine, else the text of the failure. */
static const char *support_violation(em_support s, double x, double total) {
    if (!(fabs(x) < INFINITY)) return "is not a finite number";
    switch (s.kind) {
    case EM_SUPPORT_POSITIVE: return x > 0 ? NULL : "is not positive";
    case EM_SUPPORT_UNIT: return x > 0 && x < 1 ? NULL : "is not in (0, 1)";
    case EM_SUPPORT_BOOLEAN: return x == 0 || x == 1 ? NULL : "is not 0 or 1";
    case EM_SUPPORT_NONNEG_INT: return x >= 0 && x == floor(x) ? NULL : "is not a non-negative integer";
    case EM_SUPPORT_CATEGORY:
        if (!(x >= 0 && x == floor(x))) return "is not a category index (0, 1, ...)";
        return isfinite(s.hi) && x > s.hi ? "is above the last category" : NULL;
    case EM_SUPPORT_COUNT_N:
        if (!(x >= 0 && x == floor(x))) return "is not a non-negative integer";
        return x <= total ? NULL : "is more than the number of trials";
    default: return NULL; /* real line; intervals, simplexes and factors depend on parameters */
    }
}

/* The shortest decimal that reads back as x (1.000000001, not 1.0000000010000001). */
static void shortest(char *buf, size_t cap, double x) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) return;
    }
}

em_status em_dist_check_data(const em_dist *d, const double *value, size_t n, em_error *err) {
    if (!d || !d->ops) return no_ops(d, err, "check_data");
    if (!value && n) return em_error_set(err, EM_ERR_ARG, "%s check_data: NULL value", d->ops->name);
    em_support sup = em_dist_support(d);
    int per_total = sup.kind == EM_SUPPORT_COUNT_N && d->data && d->data_len > 1;
    for (size_t i = 0; i < n; i++) {
        double total = sup.kind != EM_SUPPORT_COUNT_N ? 0.0 : per_total ? d->data[i % d->data_len] : sup.hi;
        const char *why = support_violation(sup, value[i], total);
        if (!why) continue;
        char num[32];
        shortest(num, sizeof num, value[i]);
        if (sup.kind == EM_SUPPORT_COUNT_N && value[i] > total && value[i] == floor(value[i]))
            return em_error_set(err, EM_ERR_DOMAIN, "value[%zu] = %s %s (%g) of the %s", i, num, why, total,
                                d->ops->name);
        return em_error_set(err, EM_ERR_DOMAIN, "value[%zu] = %s %s (%s)", i, num, why, d->ops->name);
    }
    return EM_OK;
}

/* The log CDF (upper = 0) or CCDF (upper = 1) through the family's table. */
static em_var cdf_dispatch(const em_dist *d, em_var x, int upper) {
    if (!d || !d->ops || !d->tape || !em_var_ok(x)) return EM_VAR_INVALID;
    em_var (*f)(const em_dist *, em_var) = upper ? d->ops->log_ccdf : d->ops->log_cdf;
    if (!f)
        return em_tape_fail(d->tape, EM_ERR_ARG, "%s: %s is not available", d->ops->name,
                            upper ? "log_ccdf" : "log_cdf");
    return f(d, x);
}

em_var em_dist_log_cdf(const em_dist *d, em_var x) { return cdf_dispatch(d, x, 0); }
em_var em_dist_log_ccdf(const em_dist *d, em_var x) { return cdf_dispatch(d, x, 1); }

static const char *term_name(em_dist_term which) {
    return which == EM_TERM_LOG_CDF ? "log_cdf" : which == EM_TERM_LOG_CCDF ? "log_ccdf" : "log_prob";
}

em_var em_dist_pointwise(const em_dist *d, em_dist_term which, em_var x) {
    if (!d || !d->ops || !d->tape || !em_var_ok(x)) return EM_VAR_INVALID;
    if (!d->ops->pointwise)
        return em_tape_fail(d->tape, EM_ERR_ARG, "%s: pointwise %s is not available", d->ops->name, term_name(which));
    return d->ops->pointwise(d, which, x);
}

em_var em_dist_pointwise_dispatch(const em_dist *d, em_dist_term which, em_var x, em_var (*lp)(const em_dist *, em_var),
                                  em_var (*lcdf)(const em_dist *, em_var), em_var (*lccdf)(const em_dist *, em_var)) {
    em_var (*f)(const em_dist *, em_var) = which == EM_TERM_LOG_CDF ? lcdf : which == EM_TERM_LOG_CCDF ? lccdf : lp;
    if (!f)
        return em_tape_fail(d->tape, EM_ERR_ARG, "%s: pointwise %s is not available", d->ops->name, term_name(which));
    return f(d, x);
}

em_status em_dist_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    if (!d || !d->ops) return no_ops(d, err, "sample");
    if (!r || !out) return em_error_set(err, EM_ERR_ARG, "%s sample: NULL rng or output", d->ops->name);
    size_t ev = em_dist_event_len(d);
    if (n == 0 || n % ev)
        return em_error_set(err, EM_ERR_SHAPE, "%s sample: n = %zu is not a positive multiple of the event length %zu",
                            d->ops->name, n, ev);
    return d->ops->sample(d, r, out, n, err);
}

em_var em_dist_rsample(const em_dist *d, em_rng *r, size_t n) {
    if (!d || !d->ops || !d->tape) return EM_VAR_INVALID;
    if (!d->ops->reparameterized || !d->ops->rsample)
        return em_tape_fail(d->tape, EM_ERR_ARG, "%s: rsample is not available (not reparameterisable)",
                            d->ops->name);
    size_t ev = em_dist_event_len(d);
    if (!r || n == 0 || n % ev)
        return em_tape_fail(d->tape, EM_ERR_SHAPE, "%s rsample: n = %zu is not a positive multiple of the event length %zu",
                            d->ops->name, n, ev);
    return d->ops->rsample(d, r, n);
}

em_support em_dist_support(const em_dist *d) {
    em_support s = {EM_SUPPORT_REAL, -INFINITY, INFINITY};
    if (!d || !d->ops) return s;
    return d->ops->support(d);
}

size_t em_dist_event_len(const em_dist *d) {
    if (!d || !d->ops) return 0;
    return d->ops->event_len ? d->ops->event_len(d) : 1;
}

static em_status moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    const char *what = var ? "variance" : "mean";
    if (!d || !d->ops) return no_ops(d, err, what);
    if (!out) return em_error_set(err, EM_ERR_ARG, "%s %s: NULL output", d->ops->name, what);
    size_t ev = em_dist_event_len(d);
    if (n == 0 || n % ev)
        return em_error_set(err, EM_ERR_SHAPE, "%s %s: n = %zu is not a positive multiple of the event length %zu",
                            d->ops->name, what, n, ev);
    em_status (*f)(const em_dist *, double *, size_t, em_error *) = var ? d->ops->variance : d->ops->mean;
    if (!f) return em_error_set(err, EM_ERR_ARG, "%s: %s is not available", d->ops->name, what);
    return f(d, out, n, err);
}

em_status em_dist_mean(const em_dist *d, double *out, size_t n, em_error *err) { return moment(d, out, n, err, 0); }
em_status em_dist_variance(const em_dist *d, double *out, size_t n, em_error *err) {
    return moment(d, out, n, err, 1);
}

/* ---- construction and shapes ---------------------------------------------------------- */

size_t em_dist_common_len(em_tape *t, const char *name, const em_var *v, int k) {
    size_t n = 1;
    for (int i = 0; i < k; i++) {
        size_t m = em_len(t, v[i]);
        if (m == 1 || m == n) continue;
        if (n == 1) {
            n = m;
            continue;
        }
        em_tape_fail(t, EM_ERR_SHAPE, "%s: lengths %zu and %zu do not broadcast", name, n, m);
        return 0;
    }
    return n;
}

em_dist em_dist_make(em_tape *t, const em_dist_ops *ops, const em_var *p, int np) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.tape = t;
    for (int k = 0; k < 4; k++) d.p[k] = EM_VAR_INVALID;
    if (!t) return d;
    if (!em_inputs_ok(p, np)) return d; /* an upstream op failed: the tape holds why */
    for (int k = 0; k < np; k++) d.p[k] = p[k];
    size_t n = em_dist_common_len(t, ops->name, p, np);
    if (!n) return d;
    d.batch_len = n;
    d.ops = ops;
    return d;
}

em_var em_dist_domain_fail(em_tape *t, const em_error *err) {
    em_tape_fail(t, err->status ? err->status : EM_ERR_DOMAIN, "%s", err->msg);
    return em_scalar(t, -INFINITY);
}

em_var em_dist_node_finish(em_tape *t, em_node *o, em_var out, em_forward_fn forward, em_lp_compute_fn compute) {
    o->forward = forward;
    em_error e;
    em_error_clear(&e);
    if (compute(t, o, &e)) return out;
    o->backward = NULL;
    return em_dist_domain_fail(t, &e);
}

/* ---- checks and messages ------------------------------------------------------------------ */

const char *em_pk_text(int k) {
    switch (k) {
    case EM_PK_REAL: return "must be finite";
    case EM_PK_POS: return "must be positive";
    case EM_PK_NONNEG: return "must be non-negative";
    case EM_PK_PROB: return "must be in [0, 1]";
    case EM_PK_UNIT_OPEN: return "must be in (0, 1)";
    case EM_PK_GT_P0: return "must be greater than the lower bound";
    default: return "is invalid";
    }
}

em_status uv_check_params(const uv_desc *desc, const em_dist *d, em_error *err) {
    const em_tape *t = d->tape;
    for (int k = 0; k < desc->np; k++) {
        const em_node *nk = em_node_get(t, d->p[k]);
        for (size_t i = 0; i < nk->n; i++) {
            double x = nk->val[i];
            double p0 = em_pv(t, d->p[0], i);
            if (!em_pk_ok(desc->pkind[k], x, p0, 0, 0)) {
                if (desc->pkind[k] == EM_PK_GT_P0)
                    return em_error_set(err, EM_ERR_DOMAIN, "%s: %s[%zu] = %g must be greater than %s[%zu] = %g",
                                        desc->name, desc->pname[k], i, x, desc->pname[0],
                                        em_node_get(t, d->p[0])->n == 1 ? (size_t)0 : i, p0);
                return em_error_set(err, EM_ERR_DOMAIN, "%s: %s[%zu] = %g %s", desc->name, desc->pname[k], i, x,
                                    em_pk_text(desc->pkind[k]));
            }
        }
    }
    return EM_OK;
}

em_status uv_diagnose(const uv_desc *desc, const em_dist *d, const double *x, size_t nx, em_error *err) {
    em_status st = uv_check_params(desc, d, err);
    if (st != EM_OK) return st;
    const em_tape *t = d->tape;
    size_t n = nx;
    for (int k = 0; k < desc->np; k++) {
        size_t m = em_len(t, d->p[k]);
        if (m > n) n = m;
    }
    for (size_t i = 0; i < n; i++) {
        double xi = x[nx == 1 ? 0 : i];
        double p0 = desc->np > 0 ? em_pv(t, d->p[0], i) : 0.0;
        double p1 = desc->np > 1 ? em_pv(t, d->p[1], i) : 0.0;
        double N = d->data ? d->data[d->data_len == 1 ? 0 : i] : 0.0;
        if (em_pk_ok(desc->vkind, xi, p0, p1, N)) continue;
        size_t at = nx == 1 ? 0 : i;
        if (desc->vkind == EM_PK_INTERVAL)
            return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support [%g, %g]", desc->name,
                                at, xi, p0, p1);
        if (desc->vkind == EM_PK_COUNT_N)
            return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support {0, ..., %g}",
                                desc->name, at, xi, N);
        return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support %s", desc->name, at, xi,
                            desc->support_text);
    }
    return EM_OK;
}

/* ---- shared backward passes ---------------------------------------------------------------- */

void uv_explain(const uv_desc *desc, em_tape *t, const em_node *o, em_error *e) {
    const uv_aux *aux = o->aux;
    const em_node *x = em_node_get(t, (em_var){o->in[0]});
    if (uv_diagnose(desc, &aux->dist, x->val, x->n, e) == EM_OK)
        em_error_set(e, EM_ERR_DOMAIN, "%s: parameters or value outside the domain", desc->name);
}

em_var uv_node(const uv_desc *desc, const em_dist *d, em_var value, em_forward_fn forward, int pointwise) {
    em_tape *t = d->tape;
    const int np = desc->np;
    em_var in[5];
    in[0] = value;
    for (int k = 0; k < np; k++) in[k + 1] = d->p[k];
    if (!em_inputs_ok(in, np + 1)) return EM_VAR_INVALID;
    size_t n = em_dist_common_len(t, desc->name, in, np + 1);
    if (!n) return EM_VAR_INVALID;
    if (desc->vkind == EM_PK_COUNT_N && !(d->data_len == 1 || d->data_len == n))
        return em_tape_fail(t, EM_ERR_SHAPE, "%s: total_count has length %zu, value has %zu", desc->name,
                            d->data_len, n);
    em_var out;
    em_node *o = em_node_new(t, pointwise ? n : 1, 1, in, np + 1, pointwise ? uv_pw_backward : uv_backward, &out);
    if (!o) return EM_VAR_INVALID;
    uv_aux *aux = em_arena_calloc(em_tape_arena(t), sizeof *aux);
    if (!aux) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", desc->name);
    aux->nin = np + 1;
    aux->dist = *d;
    if (pointwise) aux->pw = o->val;
    /* per-element partials for the vector inputs that need a gradient (for every such input
     * in a pointwise node); scalar ones are summed */
    for (int k = 0; k <= np && o->adj; k++) {
        const em_node *nk = em_node_get(t, in[k]);
        if (!nk->adj || (nk->n == 1 && !pointwise) || (k == 0 && !desc->grad_value)) continue;
        aux->part[k] = em_arena_alloc(em_tape_arena(t), n * sizeof(double));
        if (!aux->part[k]) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", desc->name);
    }
    o->aux = aux;
    o->forward = forward;
    forward(t, o);
    if (!aux->failed) return out;
    /* the error is on the tape; the result is constant -inf, with nothing to differentiate */
    o->backward = NULL;
    if (!pointwise) return em_scalar(t, -INFINITY);
    double *inf = em_arena_alloc(em_tape_arena(t), n * sizeof(double));
    if (!inf) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", desc->name);
    for (size_t i = 0; i < n; i++) inf[i] = -INFINITY;
    return em_const(t, inf, n);
}

/* A pointwise node: input k's adjoint gets g_i·part_k[i] per element, or their sum for a
 * scalar input. */
void uv_pw_backward(em_tape *t, em_node *self) {
    const uv_aux *a = self->aux;
    const double *restrict g = self->adj;
    size_t n = self->n;
    for (int k = 0; k < a->nin; k++) {
        em_node *in = em_node_get(t, (em_var){self->in[k]});
        if (!in->adj || !a->part[k]) continue;
        const double *restrict pk = a->part[k];
        if (in->n == 1) {
            double s = 0.0;
            for (size_t i = 0; i < n; i++) s += g[i] * pk[i];
            in->adj[0] = em_adj_first(in) ? s : in->adj[0] + s;
        } else {
            double *restrict ga = in->adj;
            if (em_adj_first(in))
                for (size_t i = 0; i < n; i++) ga[i] = g[i] * pk[i];
            else
                for (size_t i = 0; i < n; i++) ga[i] += g[i] * pk[i];
        }
    }
}

void uv_backward(em_tape *t, em_node *self) {
    const uv_aux *a = self->aux;
    double g = self->adj[0];
    for (int k = 0; k < a->nin; k++) {
        em_node *in = em_node_get(t, (em_var){self->in[k]});
        if (!in->adj) continue;
        /* the adjoint contract (internal/tape.h): an input met for the first time is written */
        if (a->part[k]) {
            em_adj_axpy(in, g, a->part[k]);
        } else if (in->n == 1) {
            in->adj[0] = em_adj_first(in) ? g * a->sum[k] : in->adj[0] + g * a->sum[k];
        }
    }
}

void rs_backward(em_tape *t, em_node *self) {
    const rs_aux *a = self->aux;
    const double *g = self->adj;
    for (int k = 0; k < a->np; k++) {
        if (!a->part[k]) continue;
        em_node *in = em_node_get(t, (em_var){self->in[k]});
        const double *pk = a->part[k];
        if (in->n == 1) {
            double s = 0.0;
            for (size_t i = 0; i < self->n; i++) s += g[i] * pk[i];
            in->adj[0] = em_adj_first(in) ? s : in->adj[0] + s;
        } else {
            em_adj_target(in); /* a batched parameter adds over the batch (i % n) */
            for (size_t i = 0; i < self->n; i++) in->adj[i % in->n] += g[i] * pk[i];
        }
    }
}

em_node *rs_node(em_tape *t, const em_dist *d, size_t n, em_var *out, rs_aux **auxp) {
    int np = d->ops->nparams;
    size_t b = d->batch_len ? d->batch_len : 1;
    if (n % b)
        return em_tape_fail(t, EM_ERR_SHAPE, "%s rsample: n = %zu is not a multiple of the batch length %zu",
                            d->ops->name, n, b), NULL;
    em_node *o = em_node_new(t, n, 1, d->p, np, rs_backward, out);
    if (!o) return NULL;
    rs_aux *a = em_arena_calloc(em_tape_arena(t), sizeof *a);
    if (!a) return em_tape_fail(t, EM_ERR_NOMEM, "%s rsample: out of memory", d->ops->name), NULL;
    a->np = np;
    if (o->adj)
        for (int k = 0; k < np; k++)
            if (em_needs_grad(t, d->p[k])) {
                a->part[k] = em_arena_alloc(em_tape_arena(t), n * sizeof(double));
                if (!a->part[k]) return em_tape_fail(t, EM_ERR_NOMEM, "%s rsample: out of memory", d->ops->name), NULL;
            }
    o->aux = a;
    *auxp = a;
    return o;
}

/* ---- KL divergence ----------------------------------------------------------------------- */

int em_dist_has_kl(const em_dist *p, const em_dist *q) {
    if (!p || !q || !p->ops || !q->ops) return 0;
    if (p->ops == &em_ops_normal && q->ops == &em_ops_normal) return 1;
    if (p->ops == &em_ops_mvnormal && q->ops == &em_ops_mvnormal) return 1;
    return 0;
}

/* KL(N(m1, s1) || N(m2, s2)) summed over the broadcast batch:
 *   log(s2/s1) + (s1² + (m1-m2)²) / (2 s2²) - 1/2,
 * one node with its partials (the parameters are usually small, so they are recomputed). */
static void kl_normal_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *m1 = em_node_get(t, (em_var){self->in[0]}), *s1 = em_node_get(t, (em_var){self->in[1]});
    em_node *m2 = em_node_get(t, (em_var){self->in[2]}), *s2 = em_node_get(t, (em_var){self->in[3]});
    size_t n = (size_t)self->c;
    double g = self->adj[0];
    for (size_t i = 0; i < n; i++) {
        double a = m1->val[m1->n == 1 ? 0 : i], sa = s1->val[s1->n == 1 ? 0 : i];
        double b = m2->val[m2->n == 1 ? 0 : i], sb = s2->val[s2->n == 1 ? 0 : i];
        double iv = 1.0 / (sb * sb), dm = a - b;
        if (m1->adj) m1->adj[m1->n == 1 ? 0 : i] += g * dm * iv;
        if (m2->adj) m2->adj[m2->n == 1 ? 0 : i] -= g * dm * iv;
        if (s1->adj) s1->adj[s1->n == 1 ? 0 : i] += g * (-1.0 / sa + sa * iv);
        if (s2->adj) s2->adj[s2->n == 1 ? 0 : i] += g * (1.0 / sb - (sa * sa + dm * dm) * iv / sb);
    }
}

static em_var kl_normal(const em_dist *p, const em_dist *q) {
    em_tape *t = p->tape;
    em_var in[4] = {p->p[0], p->p[1], q->p[0], q->p[1]};
    size_t n = em_dist_common_len(t, "KL(Normal || Normal)", in, 4);
    if (!n) return EM_VAR_INVALID;
    for (int k = 1; k < 4; k += 2) {
        const em_node *s = em_node_get(t, in[k]);
        for (size_t i = 0; i < s->n; i++)
            if (!(isfinite(s->val[i]) && s->val[i] > 0))
                return em_tape_fail(t, EM_ERR_DOMAIN, "KL(Normal || Normal): %s scale[%zu] = %g must be positive",
                                    k == 1 ? "p" : "q", i, s->val[i]);
    }
    em_var out;
    em_node *o = em_node_new(t, 1, 1, in, 4, kl_normal_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->c = (double)n;
    const em_node *m1 = em_node_get(t, in[0]), *s1 = em_node_get(t, in[1]);
    const em_node *m2 = em_node_get(t, in[2]), *s2 = em_node_get(t, in[3]);
    double kl = 0.0;
    for (size_t i = 0; i < n; i++) {
        double a = m1->val[m1->n == 1 ? 0 : i], sa = s1->val[s1->n == 1 ? 0 : i];
        double b = m2->val[m2->n == 1 ? 0 : i], sb = s2->val[s2->n == 1 ? 0 : i];
        double r = sa / sb, dm = (a - b) / sb;
        kl += -log(r) + 0.5 * (r * r + dm * dm) - 0.5;
    }
    o->val[0] = kl;
    return out;
}

em_var em_dist_kl(const em_dist *p, const em_dist *q) {
    if (!p || !q || !p->ops || !q->ops) return EM_VAR_INVALID;
    if (p->tape != q->tape) return em_tape_fail(p->tape, EM_ERR_ARG, "KL: the distributions are on different tapes");
    if (p->ops == &em_ops_normal && q->ops == &em_ops_normal) return kl_normal(p, q);
    if (p->ops == &em_ops_mvnormal && q->ops == &em_ops_mvnormal) return em_kl_mvn(p, q);
    return em_tape_fail(p->tape, EM_ERR_ARG, "KL(%s || %s) has no closed form in Ember", p->ops->name, q->ops->name);
}
