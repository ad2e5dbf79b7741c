/* logdensity.h — the bridge between a model and the inference engines.
 *
 * An em_logdensity maps a flat unconstrained vector θ (length em_logdensity_dim) to the log
 * joint density of the model plus the log|det J| of the transforms that carry each latent site
 * to the real line, and to its gradient. That is all HMC, NUTS, Laplace and optimisation need
 * (the shape of BridgeStan's C API). It also maps θ to the constrained values users want to
 * see, named in CmdStan's style ("beta.1", "beta.2", "sigma").
 *
 * An em_logdensity is not thread safe: it owns a tape. Give each thread its own with
 * em_logdensity_clone(), which shares the model and data but not the working memory.
 *
 * Two ways to make one: from an Ember model (em_logdensity_from_model in model.h), or from a
 * plain C function that computes the log density and its gradient (em_logdensity_from_fn).
 */
#ifndef EMBER_LOGDENSITY_H
#define EMBER_LOGDENSITY_H

#include "ember/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_logdensity em_logdensity;

/* A hand-written density: set *lp, and grad[0..dim) unless grad is NULL. Return EM_OK, or an
 * error status (with err filled) when θ is outside the domain: the engine then treats the
 * point as having log density -inf. fn must be safe to call from several threads at once if
 * clones are used on threads (it gets the same ctx). */
typedef em_status (*em_logdensity_fn)(void *ctx, const double *theta, double *lp, double *grad,
                                      em_error *err);

/* names: dim parameter names (copied), or NULL for "theta.1", "theta.2", ... */
em_logdensity *em_logdensity_from_fn(size_t dim, em_logdensity_fn fn, void *ctx,
                                     const char *const *names);

/* The implementation behind an em_logdensity (for modules that make them, like the model). */
typedef struct em_logdensity_impl {
    em_status (*eval)(void *state, const double *theta, double *lp, double *grad, em_error *err);
    /* write em_logdensity_num_outputs values for θ */
    em_status (*constrain)(void *state, const double *theta, double *out, em_error *err);
    void *(*clone)(const void *state);   /* new working state sharing what is immutable */
    void (*destroy)(void *state);
} em_logdensity_impl;

/* Take ownership of state; names (num_outputs of them) are copied. */
em_logdensity *em_logdensity_create(const em_logdensity_impl *impl, void *state, size_t dim,
                                    size_t num_outputs, const char *const *output_names);

/* The implementation and state behind ld (for the module that made it). */
const em_logdensity_impl *em_logdensity_impl_of(const em_logdensity *ld);
void *em_logdensity_state(const em_logdensity *ld);

/* Destroy every clone before the original (clones share its names). */
em_logdensity *em_logdensity_clone(const em_logdensity *ld);
void em_logdensity_destroy(em_logdensity *ld);

size_t em_logdensity_dim(const em_logdensity *ld);
/* Log density at θ, and its gradient unless grad is NULL. A point outside the domain or a
 * non-finite result gives a non-OK status, *lp = -inf, and the reason in err. */
em_status em_logdensity_eval(em_logdensity *ld, const double *theta, double *lp, double *grad,
                             em_error *err);

/* Constrained outputs (the values a user reads: sigma rather than log sigma; deterministic
 * sites too, when the model records them). */
size_t em_logdensity_num_outputs(const em_logdensity *ld);
const char *em_logdensity_output_name(const em_logdensity *ld, size_t i);
em_status em_logdensity_constrain(em_logdensity *ld, const double *theta, double *out, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
