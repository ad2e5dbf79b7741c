/* svi.h — stochastic variational inference: ELBO estimators, autoguides and the SVI loop.
 *
 * SVI fits a guide q_φ(z) (a model function whose em_param sites are the variational
 * parameters φ) to the posterior p(z | data) by maximising the evidence lower bound
 *     ELBO(φ) = E_q[ log p(data, z) − log q_φ(z) ]
 * with stochastic gradients (Ranganath, Gerrish & Blei 2014, "Black box variational
 * inference"; Kingma & Welling 2014, "Auto-encoding variational Bayes" for the
 * reparameterised, pathwise gradient used here; Kucukelbir et al. 2017, "Automatic
 * differentiation variational inference" for Gaussian guides on the unconstrained space).
 *
 * Semantics follow Pyro. One particle of the Trace ELBO runs the guide under trace (and a seed
 * handler with the SVI's own RNG), then the model under trace + replay(guide trace); its value
 * is the sum of the model's sample, observe and factor log densities (scaled by plates and
 * scale handlers) minus the sum of the guide's latent sample log densities. Both runs share one
 * tape, so one backward pass gives the gradient with respect to every parameter. The
 * TraceMeanField ELBO replaces log p(z) − log q(z) of a latent site by −KL(q ‖ p) where the
 * pair of distributions has a closed form (em_dist_kl: Normal–Normal, MVN–MVN).
 *
 * Errors rather than silent bias: a guide latent site whose distribution is not
 * reparameterised, and a model latent site that the guide does not sample, are errors naming
 * the site.
 *
 * Autoguides build a guide from the model's latent structure (em_logdensity_from_model): they
 * draw one joint vector u on the unconstrained space, and give each model latent site a point
 * mass at its constrained value whose log density is −log|det J| of the site's transform
 * (Pyro's AutoContinuous). Their variational parameters are named "<prefix>_loc",
 * "<prefix>_scale", ... (prefix "auto" by default). Positive parameters (scales, the low-rank
 * diagonal) use Ember's positive constraint, exp, where Pyro uses softplus: the family of
 * guides is the same, only the optimiser's path differs.
 */
#ifndef EMBER_SVI_H
#define EMBER_SVI_H

#include "ember/model.h"
#include "ember/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ELBO ------------------------------------------------------------------------------------ */

typedef enum em_elbo_kind {
    EM_ELBO_TRACE = 0,       /* Pyro's Trace_ELBO: every term sampled */
    EM_ELBO_TRACE_MEANFIELD, /* Pyro's TraceMeanField_ELBO: analytic KL where available */
} em_elbo_kind;

/* One estimate of the ELBO on the model's tape, without a backward pass (for evaluation):
 * the average over num_particles particles, drawn with rng. model_params is the store the
 * guide's (and the model's) param sites read. */
em_status em_elbo_estimate(em_elbo_kind kind, em_model_fn model, const void *model_data, em_model_fn guide,
                           const void *guide_data, em_param_store *params, int num_particles, em_rng *rng,
                           double *elbo, em_error *err);

/* ---- the SVI loop ------------------------------------------------------------------------------ */

/* The stopping rules of em_svi_run, both over consecutive windows of `window` steps with the
 * loss means m1 (older) and m2 (newer).
 *
 * EM_SVI_STOP_REL_MEAN: stop at the first window boundary where |m2 − m1| / max(|m1|, 1) <
 * rel_tol. With one particle the loss is noisy (an sd of a few nats for a small regression),
 * so a tolerance below the noise of a window mean never fires.
 *
 * EM_SVI_STOP_TREND: the noise is measured instead of ignored. At each window boundary the
 * decrease m1 − m2 is compared with its standard error se = sqrt(v1/w + v2/w) (v: the window's
 * sample variances; a step's loss noise at fixed parameters is independent across steps).
 * A window passes when the decrease is below max(2·se, rel_tol·max(|m1|, 1)): the loss no
 * longer falls by more than its own noise (or than the tolerance). The rule fires after
 * `patience` consecutive passing windows, so a single noisy window does not stop a run that
 * is still descending (this is the spirit of Stan's ADVI rule, which asks the mean or the
 * median of the last relative ELBO changes to be small; Kucukelbir et al. 2017, sec. 3.3).
 * What the rule cannot see is progress slower than the noise; the Pareto k̂ of the fitted
 * guide (posterior.h) is the check of the answer itself. */
typedef enum em_svi_stop_rule {
    EM_SVI_STOP_REL_MEAN = 0,
    EM_SVI_STOP_TREND,
    EM_SVI_STOP_RULE_COUNT
} em_svi_stop_rule;

/* Every field has a range, after its default, that em_svi_options_validate (and so
 * em_svi_create) checks. A zeroed struct is valid (the pre-verdict behaviour: the
 * REL_MEAN rule, switched off, last iterate kept). */
typedef struct em_svi_options {
    em_elbo_kind elbo;     /* EM_ELBO_TRACE; EM_ELBO_TRACE or EM_ELBO_TRACE_MEANFIELD */
    int num_particles;     /* particles per step, averaged; 0 means 1; 0..EM_SVI_MAX_PARTICLES */
    uint64_t seed;         /* the SVI's RNG stream (guide draws, subsampling); any value */
    /* Stopping rule for em_svi_run: stop when the relative change of the loss averaged over
     * two consecutive windows of `window` steps, |m2 − m1| / max(|m1|, 1), is below rel_tol.
     * rel_tol 0 switches it off; window 0 means 100. */
    double rel_tol; /* 0; finite, >= 0 */
    size_t window;  /* 0; 0..EM_SVI_MAX_WINDOW */
    /* Print "step, loss, steps/s" on stderr every progress_every steps (0: never). Any value. */
    size_t progress_every;
    /* em_svi_run gives up with EM_ERR_NONFINITE after this many consecutive skipped steps
     * (0 means 100). Any value. */
    size_t max_consecutive_skips;
    /* Which stopping rule em_svi_run applies (with rel_tol and window above). */
    em_svi_stop_rule stop; /* EM_SVI_STOP_REL_MEAN; one of em_svi_stop_rule */
    /* EM_SVI_STOP_TREND: the number of consecutive window comparisons that must pass (0
     * means 3). Any value. */
    size_t patience;
    /* Polyak–Ruppert iterate averaging (Polyak & Juditsky 1992): nonzero makes em_svi_run end
     * with the store holding the average of the iterates over the last `window` steps rather
     * than the last iterate, whose scatter around the optimum is of the order of the learning
     * rate. Any value. */
    int average;
    /* Data parallelism (mpi.h): when set, every step hands this process's loss and gradient
     * to combine before taking the step. local is EM_OK when both are finite; EM_ERR_DOMAIN or
     * EM_ERR_NONFINITE when this process alone would skip the step (then *loss and grad are
     * not to be read: grad may even be NULL before the first good step); any other status is
     * this process's error, its message in *err. combine leaves in *loss and grad (dim values)
     * what every process steps with, the same everywhere, and returns EM_OK — or an error that
     * every process returns. The step is skipped when what it leaves is not finite. Any value. */
    em_status (*combine)(void *ctx, em_status local, double *loss, double *grad, size_t dim, em_error *err);
    void *combine_ctx;
} em_svi_options;

#define EM_SVI_MAX_PARTICLES 1048576
#define EM_SVI_MAX_WINDOW ((size_t)1 << 30)

/* EM_ERR_ARG naming the field and its value when opt is outside the documented ranges. */
em_status em_svi_options_validate(const em_svi_options *opt, em_error *err);

typedef struct em_svi em_svi;

/* model(m, model_data) and guide(m, guide_data); a hand-written guide usually takes the same
 * data as the model (pass it twice), an autoguide takes itself (em_autoguide_fn and the
 * autoguide). optim configures the optimiser (created at the first step, when the guide's
 * parameters exist). opt may be NULL (Trace ELBO, one particle, seed 0). The data must outlive
 * the em_svi. */
em_svi *em_svi_create(em_model_fn model, const void *model_data, em_model_fn guide, const void *guide_data,
                      const em_optim_config *optim, const em_svi_options *opt, em_error *err);
void em_svi_destroy(em_svi *s);

/* One optimisation step: reset the tape, estimate the ELBO, backward, collect the gradient,
 * one optimiser update. *loss (may be NULL) receives −ELBO (the total, not per datum). A step
 * whose loss or gradient is not finite (or whose model run reports a domain or non-finite
 * error) is skipped — the parameters and optimiser state do not change — counted, and returns
 * EM_OK with *loss NaN or ±inf; structural errors (a missing site, a shape mismatch, a
 * non-reparameterised guide site) are returned. */
em_status em_svi_step(em_svi *s, double *loss, em_error *err);
/* Up to max_steps steps, or until the stopping rule fires. *steps_done may be NULL. */
em_status em_svi_run(em_svi *s, size_t max_steps, size_t *steps_done, em_error *err);

/* The loss (−ELBO) of every step so far, in order (NaN/inf for skipped steps). */
const double *em_svi_loss_history(const em_svi *s, size_t *n);
size_t em_svi_num_steps(const em_svi *s);
size_t em_svi_num_skipped(const em_svi *s);
int em_svi_converged(const em_svi *s);

/* Optimise the parameter called param in units: the optimiser sees δ = (x − x₀) / units
 * (x₀: the value at the first step), so a step of the learning rate moves x by lr·units[i].
 * For Adam this is a per-coordinate learning rate; for a guide's location it makes the step
 * size a fraction of the posterior scale, whatever that scale is. n is the parameter's length
 * (checked at the first step, where a parameter the guide does not declare is an error).
 * Call before the first step; units must be finite and positive (copied). */
em_status em_svi_set_units(em_svi *s, const char *param, const double *units, size_t n, em_error *err);

/* What a run says about itself: whether the stopping rule fired, after how many steps, the
 * last window comparison, and the ELBO at the final parameters with its Monte Carlo error. */
typedef struct em_svi_result {
    int converged;        /* the stopping rule fired in the last em_svi_run */
    size_t steps;         /* steps run in total (em_svi_num_steps) */
    size_t skipped;       /* of which skipped for a non-finite loss or gradient */
    /* the last window comparison (NaN before two windows): the decrease of the window mean
     * loss m1 − m2, its standard error, and |m2 − m1| / max(|m1|, 1) */
    double window_decrease, window_decrease_se, rel_change;
    /* the ELBO at the store's current parameters, averaged over elbo_particles particles
     * drawn independently, and its standard error sd / sqrt(particles) */
    double elbo, elbo_se;
    size_t elbo_particles;
} em_svi_result;

/* Fill r for the SVI's current state, estimating the ELBO with num_particles particles (0
 * means 1000) drawn from their own stream (the SVI's RNG is not advanced). Errors as
 * em_svi_step's structural ones; a particle with a non-finite ELBO gives r->elbo = -inf. */
em_status em_svi_result_get(em_svi *s, size_t num_particles, em_svi_result *r, em_error *err);
/* The parameter store holding the guide's (and the model's) parameters. */
em_param_store *em_svi_params(em_svi *s);
em_model *em_svi_model(em_svi *s);
em_rng *em_svi_rng(em_svi *s);

/* ---- autoguides -------------------------------------------------------------------------------- */

typedef enum em_autoguide_kind {
    EM_AUTO_DELTA = 0,          /* point mass: MAP of the constrained density (Pyro's AutoDelta) */
    EM_AUTO_NORMAL,             /* independent Normal per site, parameters per site (AutoNormal) */
    EM_AUTO_DIAGONAL_NORMAL,    /* Normal(loc, scale) on the joint vector (AutoDiagonalNormal) */
    EM_AUTO_MULTIVARIATE_NORMAL,/* u = loc + (scale ⊙ L)·ε, L unit lower triangular */
    EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL, /* cov = W·Wᵀ + diag(D), W of rank columns */
    EM_AUTO_LAPLACE,            /* MVN at the mode, covariance = inverse Hessian; no parameters */
    EM_AUTO_KIND_COUNT
} em_autoguide_kind;

typedef enum em_init_kind {
    EM_INIT_MEDIAN = 0, /* median of 15 prior draws per site (Pyro's default, init_to_median) */
    EM_INIT_MEAN,       /* the prior mean (init_to_mean) */
    EM_INIT_UNIFORM,    /* uniform(−2, 2) on the unconstrained space (init_to_uniform) */
    EM_INIT_VALUES,     /* given constrained values (init_values) */
} em_init_kind;

typedef struct em_autoguide_options {
    em_init_kind init;
    /* EM_INIT_VALUES: one value per constrained output, in the order of
     * em_autoguide_output_name (the model's latent sites, CmdStan-style names). */
    const double *init_values;
    double init_scale;       /* initial scale of Normal-type guides; 0 means 0.1 */
    /* or one initial scale per unconstrained coordinate (dim values, finite and positive;
     * NULL: init_scale everywhere), e.g. a Laplace approximation's marginal sds */
    const double *init_scales;
    size_t rank;             /* low rank; 0 means ceil(sqrt(dim)) as Pyro */
    uint64_t seed;           /* prior draws for discovery and initialisation */
    em_param_store *model_params; /* values of the model's own param sites (NULL: their inits) */
    const char *prefix;      /* parameter names; NULL means "auto" */
    size_t laplace_max_iter; /* mode search iterations; 0 means 1000 */
} em_autoguide_options;

typedef struct em_autoguide em_autoguide;

/* Discover the model's latents and initialise. For EM_AUTO_LAPLACE this also finds the mode of
 * the unconstrained log density (GSL's BFGS2) and the Hessian there (central differences of the
 * gradient, symmetrised); a Hessian that is not positive definite is EM_ERR_NUMERIC. */
em_autoguide *em_autoguide_create(em_autoguide_kind kind, em_model_fn model, const void *model_data,
                                  const em_autoguide_options *opt, em_error *err);
void em_autoguide_destroy(em_autoguide *g);

/* The guide function; its data argument is the autoguide. */
void em_autoguide_fn(em_model *m, const void *autoguide);
em_autoguide_kind em_autoguide_kind_of(const em_autoguide *g);
const char *em_autoguide_name(em_autoguide_kind k); /* "AutoDelta", "AutoNormal", ... */

/* The unconstrained dimension, the layout (the logdensity of the model), and the constrained
 * outputs ("a", "beta.1", ...). */
size_t em_autoguide_dim(const em_autoguide *g);
em_logdensity *em_autoguide_logdensity(em_autoguide *g);
size_t em_autoguide_num_outputs(const em_autoguide *g);
const char *em_autoguide_output_name(const em_autoguide *g, size_t i);
/* The initial unconstrained location (dim values). */
const double *em_autoguide_init_loc(const em_autoguide *g);

/* The guide's Gaussian on the unconstrained space as read from params (the SVI's store; NULL
 * for Laplace): loc (dim) and a lower-triangular factor L (dim×dim row-major, cov = L·Lᵀ; all
 * zeros for Delta). Either pointer may be NULL. */
em_status em_autoguide_gaussian(const em_autoguide *g, const em_param_store *params, double *loc, double *L,
                                em_error *err);
/* Posterior median in constrained space (num_outputs values): the transform of loc. */
em_status em_autoguide_median(em_autoguide *g, const em_param_store *params, double *out, em_error *err);
/* Quantiles probs[0..nq) per output: out[q * num_outputs + j]. For Gaussian guides these are
 * the marginal Normal quantiles on the unconstrained space pushed through each site's
 * transform (exact for elementwise transforms, as Pyro's quantiles()). */
em_status em_autoguide_quantiles(em_autoguide *g, const em_param_store *params, const double *probs, size_t nq,
                                 double *out, em_error *err);
/* ndraws joint draws: theta (ndraws × dim, unconstrained, may be NULL) and/or constrained
 * outputs (ndraws × num_outputs, may be NULL). */
em_status em_autoguide_sample(em_autoguide *g, const em_param_store *params, em_rng *rng, size_t ndraws,
                              double *theta, double *out, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
