/* dist_improper.c — the improper flat "distribution" (log density 0 on a support).
 *
 * Stan gives a parameter without a sampling statement a flat prior; models written in Ember
 * say so explicitly with em_flat / em_flat_positive. Its log density is the constant 0 (no
 * tape gradient); a value outside the support scores -inf with EM_ERR_DOMAIN like any family.
 * Drawing from it is impossible; the draw this family returns (used to discover a model's
 * structure and as an initial value) is uniform(-2, 2) on the unconstrained scale, the same
 * convention as the samplers' default initialisation.
 */
#include "internal/tape.h"
#include "ember/dist.h"

#include <math.h>
#include <stdlib.h>

static size_t flat_event_len(const em_dist *d) {
    (void)d;
    return 1;
}

static em_support flat_support(const em_dist *d) {
    em_support s = {(em_support_kind)(int)d->data_len, 0.0, 0.0};
    if (s.kind == EM_SUPPORT_INTERVAL && d->data) {
        s.lo = d->data[0];
        s.hi = d->data[1];
    }
    return s;
}

static em_var flat_log_prob(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    if (!em_var_ok(value)) return EM_VAR_INVALID;
    em_support s = flat_support(d);
    em_transform tr = em_support_transform(s);
    size_t n = em_len(t, value);
    const double *v = em_val_(t, value);
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        int inside = isfinite(x) && (tr.kind == EM_TRANSFORM_IDENTITY || (tr.kind == EM_TRANSFORM_POSITIVE && x > 0) ||
                                     (tr.kind == EM_TRANSFORM_INTERVAL && x > tr.lo && x < tr.hi) ||
                                     (tr.kind == EM_TRANSFORM_UNIT && x > 0 && x < 1));
        if (!inside) {
            em_tape_fail(t, EM_ERR_DOMAIN, "ImproperUniform: value[%zu] = %g is outside the support", i, x);
            return em_scalar(t, -INFINITY);
        }
    }
    return em_scalar(t, 0.0);
}

static em_status flat_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    em_transform tr = em_support_transform(flat_support(d));
    for (size_t i = 0; i < n; i++) {
        double u = -2.0 + 4.0 * em_rng_uniform(r);
        em_status s = em_transform_forward_d(&tr, &u, 1, &out[i], NULL, err);
        if (s != EM_OK) return s;
    }
    return EM_OK;
}

static const em_dist_ops flat_ops = {
    .name = "ImproperUniform",
    .nparams = 0,
    .discrete = 0,
    .reparameterized = 0,
    .event_len = flat_event_len,
    .support = flat_support,
    .log_prob = flat_log_prob,
    .sample = flat_sample,
};

em_dist em_dist_improper_uniform(em_tape *t, em_support support, size_t n) {
    em_dist d = {0};
    d.tape = t;
    for (int i = 0; i < 4; i++) d.p[i] = EM_VAR_INVALID;
    if (em_support_is_discrete(support) || support.kind == EM_SUPPORT_SIMPLEX ||
        support.kind == EM_SUPPORT_CORR_CHOLESKY || n == 0) {
        em_tape_fail(t, EM_ERR_ARG, "ImproperUniform: needs a scalar continuous support and n >= 1");
        return d;
    }
    if (support.kind == EM_SUPPORT_INTERVAL) {
        double *b = em_arena_alloc(em_tape_arena(t), 2 * sizeof *b);
        if (!b) {
            em_tape_fail(t, EM_ERR_NOMEM, "ImproperUniform: out of memory");
            return d;
        }
        b[0] = support.lo;
        b[1] = support.hi;
        d.data = b;
    }
    d.ops = &flat_ops;
    d.data_len = (size_t)support.kind; /* the support kind rides in data_len */
    d.batch_len = n;
    return d;
}
