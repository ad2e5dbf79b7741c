/* logdensity.c — the generic em_logdensity object and the hand-written-function flavour.
 * The model flavour lives in model.c; both go through em_logdensity_impl. */
#include "ember/logdensity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct em_logdensity {
    const em_logdensity_impl *impl;
    void *state;
    size_t dim, num_outputs;
    char **names;
    int owns_names; /* clones share the names of the original: destroy them first */
};

static char **copy_names(const char *const *names, size_t n) {
    char **out = calloc(n ? n : 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        char tmp[32];
        const char *src = names ? names[i] : (snprintf(tmp, sizeof tmp, "theta.%zu", i + 1), tmp);
        out[i] = strdup(src);
        if (!out[i]) {
            for (size_t j = 0; j < i; j++) free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

em_logdensity *em_logdensity_create(const em_logdensity_impl *impl, void *state, size_t dim,
                                    size_t num_outputs, const char *const *output_names) {
    em_init();
    em_logdensity *ld = calloc(1, sizeof *ld);
    if (!ld) return NULL;
    ld->impl = impl;
    ld->state = state;
    ld->dim = dim;
    ld->num_outputs = num_outputs;
    ld->names = copy_names(output_names, num_outputs);
    ld->owns_names = 1;
    if (!ld->names) {
        free(ld);
        return NULL;
    }
    return ld;
}

const em_logdensity_impl *em_logdensity_impl_of(const em_logdensity *ld) { return ld->impl; }
void *em_logdensity_state(const em_logdensity *ld) { return ld->state; }

em_logdensity *em_logdensity_clone(const em_logdensity *ld) {
    em_logdensity *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *ld;
    c->owns_names = 0;
    c->state = ld->impl->clone(ld->state);
    if (!c->state) {
        free(c);
        return NULL;
    }
    return c;
}

void em_logdensity_destroy(em_logdensity *ld) {
    if (!ld) return;
    if (ld->impl->destroy) ld->impl->destroy(ld->state);
    if (ld->owns_names) {
        for (size_t i = 0; i < ld->num_outputs; i++) free(ld->names[i]);
        free(ld->names);
    }
    free(ld);
}

size_t em_logdensity_dim(const em_logdensity *ld) { return ld->dim; }
size_t em_logdensity_num_outputs(const em_logdensity *ld) { return ld->num_outputs; }
const char *em_logdensity_output_name(const em_logdensity *ld, size_t i) {
    return i < ld->num_outputs ? ld->names[i] : NULL;
}

em_status em_logdensity_eval(em_logdensity *ld, const double *theta, double *lp, double *grad,
                             em_error *err) {
    em_status s = ld->impl->eval(ld->state, theta, lp, grad, err);
    if (s == EM_OK && !isfinite(*lp)) {
        s = em_error_set(err, EM_ERR_NONFINITE, "log density is %g", *lp);
    }
    if (s == EM_OK && grad) {
        for (size_t i = 0; i < ld->dim; i++)
            if (!isfinite(grad[i])) {
                s = em_error_set(err, EM_ERR_NONFINITE, "gradient of the log density is %g at %s",
                                 grad[i], i < ld->num_outputs ? ld->names[i] : "?");
                break;
            }
    }
    if (s != EM_OK) *lp = -INFINITY;
    return s;
}

em_status em_logdensity_constrain(em_logdensity *ld, const double *theta, double *out, em_error *err) {
    return ld->impl->constrain(ld->state, theta, out, err);
}

/* ---- the hand-written-function flavour ------------------------------------------------- */

typedef struct {
    em_logdensity_fn fn;
    void *ctx;
    size_t dim;
} fn_state;

static em_status fn_eval(void *state, const double *theta, double *lp, double *grad, em_error *err) {
    fn_state *s = state;
    return s->fn(s->ctx, theta, lp, grad, err);
}

static em_status fn_constrain(void *state, const double *theta, double *out, em_error *err) {
    fn_state *s = state;
    memcpy(out, theta, s->dim * sizeof *out);
    return EM_OK;
}

static void *fn_clone(const void *state) {
    fn_state *c = malloc(sizeof *c);
    if (c) *c = *(const fn_state *)state;
    return c;
}

static const em_logdensity_impl fn_impl = {fn_eval, fn_constrain, fn_clone, free};

em_logdensity *em_logdensity_from_fn(size_t dim, em_logdensity_fn fn, void *ctx,
                                     const char *const *names) {
    if (dim == 0 || !fn) return NULL;
    fn_state *s = malloc(sizeof *s);
    if (!s) return NULL;
    s->fn = fn;
    s->ctx = ctx;
    s->dim = dim;
    em_logdensity *ld = em_logdensity_create(&fn_impl, s, dim, dim, names);
    if (!ld) free(s);
    return ld;
}
