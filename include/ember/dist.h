/* dist.h — probability distributions over whole vectors.
 *
 * A distribution is a small value (em_dist) that names its family and holds its parameters as
 * tape variables; constants and em_var mix freely in the constructors (em_normal(m, 0.0, sd)).
 * Parameters may be scalars or vectors; they broadcast against each other and against the
 * value. em_dist_log_prob scores a whole vector in one tape node with hand-written partials
 * with respect to every parameter that needs a gradient and to the value (continuous families).
 *
 * Invalid parameters (a scale <= 0, a probability outside [0,1], a non-finite value) make the
 * log density -inf and record EM_ERR_DOMAIN on the tape with a message naming the
 * distribution, the parameter, the element and the value; a value outside the support scores
 * -inf the same way. An MCMC step treats that as a rejection; a user reads why.
 *
 * Densities carry every normalising constant (as Stan's *_lpdf with constants, matching GSL's
 * pdfs): Uniform(lo, hi) is -log(hi - lo) on [lo, hi]; HalfNormal and HalfCauchy are twice the
 * full density on [0, inf). Broadcasting in log_prob: the value and each parameter have length
 * 1 or n. In sample/rsample/mean/variance, n values are drawn and a parameter of length m
 * (n a multiple of m) is tiled. A moment that does not exist (Cauchy's mean, StudentT's variance
 * for df <= 2) is reported as NaN (undefined) or inf (infinite).
 *
 * Beyond the density: log CDFs and CCDFs with gradients (em_dist_log_cdf / em_dist_log_ccdf),
 * the per-element terms of either (em_dist_pointwise), and families built from others on them:
 * finite mixtures, censored sites (brms's cens()) and truncated ones (brms's trunc()), in
 * dist_wrap.c.
 *
 * Multivariate layouts: an MVNormal value is one or more K-vectors end to end (loc of length K,
 * or one loc per event); an LKJCholesky value is one or more row-major K×K factors (K is kept
 * in em_dist.data_len); a Dirichlet value is one or more K-simplexes. The gradient with respect
 * to a constrained value is the plain partial derivative of the formula; the transform module
 * supplies the chain rule through the constraint.
 */
#ifndef EMBER_DIST_H
#define EMBER_DIST_H

#include "ember/ad.h"
#include "ember/transform.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_support_kind {
    EM_SUPPORT_REAL = 0,
    EM_SUPPORT_POSITIVE,     /* (0, inf) */
    EM_SUPPORT_INTERVAL,     /* (lo, hi) */
    EM_SUPPORT_UNIT,         /* (0, 1) */
    EM_SUPPORT_SIMPLEX,      /* nonnegative, sums to 1 */
    EM_SUPPORT_CORR_CHOLESKY,/* lower Cholesky factor of a correlation matrix */
    EM_SUPPORT_BOOLEAN,      /* {0, 1} */
    EM_SUPPORT_COUNT_N,      /* {0, ..., n} (binomial) */
    EM_SUPPORT_NONNEG_INT,   /* {0, 1, 2, ...} */
    EM_SUPPORT_CATEGORY,     /* {0, ..., K-1} */
    EM_SUPPORT_LOWER,        /* (lo, inf) (a lower-truncated family) */
    EM_SUPPORT_UPPER,        /* (-inf, hi) */
    EM_SUPPORT_KIND_COUNT
} em_support_kind;

typedef struct em_support {
    em_support_kind kind;
    double lo, hi;
} em_support;

/* The default bijection from the real line onto a (continuous) support: REAL -> identity,
 * POSITIVE -> positive, LOWER -> lower(lo), UPPER -> upper(hi), INTERVAL -> interval(lo, hi), UNIT -> unit, SIMPLEX -> simplex,
 * CORR_CHOLESKY -> corr_cholesky; discrete supports get the identity (never transformed). */
em_transform em_support_transform(em_support s);
int em_support_is_discrete(em_support s);

typedef struct em_dist em_dist;

/* Which per-element term em_dist_pointwise computes. */
typedef enum em_dist_term { EM_TERM_LOG_PROB = 0, EM_TERM_LOG_CDF, EM_TERM_LOG_CCDF } em_dist_term;

/* The family's behaviour; one static table per family. */
typedef struct em_dist_ops {
    const char *name;          /* "Normal", "Bernoulli", ... */
    int nparams;
    const char *param_names[4];
    int discrete;
    int reparameterized;       /* rsample available */
    /* length of one draw of the event (1 for univariate families, K for MVN/Dirichlet,
     * K*K for LKJ Cholesky) */
    size_t (*event_len)(const em_dist *d);
    em_support (*support)(const em_dist *d);
    /* Sum over the vector of log densities, one node. value's length is a multiple of the
     * event length; parameters broadcast. */
    em_var (*log_prob)(const em_dist *d, em_var value);
    /* n values (n a multiple of the event length) into out, from parameter values. */
    em_status (*sample)(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err);
    /* A reparameterised draw of n values on the tape (gradients flow to the parameters). */
    em_var (*rsample)(const em_dist *d, em_rng *r, size_t n);
    /* mean and variance per element (n values; n as for sample). */
    em_status (*mean)(const em_dist *d, double *out, size_t n, em_error *err);
    em_status (*variance)(const em_dist *d, double *out, size_t n, em_error *err);
    /* Σ_i log F(x_i) and Σ_i log(1 - F(x_i)) as one node, with partials in x and in every
     * parameter (NULL: the family has none; discrete families have none yet). */
    em_var (*log_cdf)(const em_dist *d, em_var x);
    em_var (*log_ccdf)(const em_dist *d, em_var x);
    /* The n per-element terms of log_prob, log_cdf or log_ccdf as a vector (NULL: none). */
    em_var (*pointwise)(const em_dist *d, em_dist_term which, em_var x);
} em_dist_ops;

struct em_dist {
    const em_dist_ops *ops;
    em_tape *tape;
    em_var p[4];          /* parameters in the family's order; EM_VAR_INVALID when unused */
    const double *data;   /* family-specific constant data (binomial totals), referenced */
    size_t data_len;
    size_t batch_len;     /* natural length of one draw of the batch (broadcast of the params) */
    const void *impl;     /* a wrapper's state in the tape's arena (mixture components, the base
                           * of a censored or truncated family); NULL for the plain families */
};

/* Dispatch helpers: NULL ops (a failed constructor) give an invalid var / an error status. */
em_var em_dist_log_prob(const em_dist *d, em_var value);
/* The terms of that sum: out[j] = log p of event j of value (n values, n / event length
 * terms) — Stan's log_lik. Computed on the values alone (no gradient, no node left behind).
 * A family that cannot split its density is EM_ERR_ARG naming it, unless value is one event. */
em_status em_dist_log_prob_pointwise(const em_dist *d, const double *value, size_t n, double *out, em_error *err);
/* The log density of the selected elements value[idx[0..k)] alone, as a var with gradients
 * (their term of em_dist_log_prob): what leaving those observations out of a fit subtracts.
 * Univariate families and the fused GLMs; a multivariate family is EM_ERR_ARG on the tape. */
em_var em_dist_log_prob_at(const em_dist *d, em_var value, const size_t *idx, size_t k);
/* Is every value inside the family's support? Checks what does not depend on the parameters'
 * current values — finite, positive, in (0, 1), 0/1, a non-negative integer, at most the
 * binomial total — and names the first bad value: "value[3] = -1 is not a non-negative
 * integer (Poisson)". Data are checked with it once, when a model is bound to them. */
em_status em_dist_check_data(const em_dist *d, const double *value, size_t n, em_error *err);
em_status em_dist_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err);
em_var em_dist_rsample(const em_dist *d, em_rng *r, size_t n);
em_support em_dist_support(const em_dist *d);
size_t em_dist_event_len(const em_dist *d);
em_status em_dist_mean(const em_dist *d, double *out, size_t n, em_error *err);
em_status em_dist_variance(const em_dist *d, double *out, size_t n, em_error *err);
/* Σ_i log P(X_i <= x_i) and Σ_i log P(X_i > x_i) over the broadcast of x and the parameters, a
 * scalar var with gradients in x and in every parameter (the building blocks of censored and
 * truncated sites, and of Stan's *_lcdf / *_lccdf). x may lie outside the support and may be
 * ±inf (log CDF -inf below the support, 0 above; the CCDF the other way round); a NaN x or an
 * invalid parameter records EM_ERR_DOMAIN as for log_prob. Both tails are computed without
 * forming 1 - F (Normal: log Φ(-40) = -804.6, not -inf). A family without CDFs records
 * EM_ERR_ARG. Available for the continuous univariate families (not SkewNormal, BetaProportion,
 * GammaMean yet) and not for discrete ones; gradients in a shape parameter
 * of Gamma, Beta and StudentT come from differences of GSL's incomplete gamma / beta functions
 * with one Richardson step (relative accuracy about 1e-9; see dist_continuous.c). */
em_var em_dist_log_cdf(const em_dist *d, em_var x);
em_var em_dist_log_ccdf(const em_dist *d, em_var x);
/* The terms of log_prob, log_cdf or log_ccdf one per element, as a vector of the broadcast
 * length n (not summed): for mixtures, censoring and pointwise log-likelihoods. One node, with
 * the same partials as the summed form. Available for the univariate families (the summed
 * forms are faster where a sum is all that is needed); others record EM_ERR_ARG. */
em_var em_dist_pointwise(const em_dist *d, em_dist_term which, em_var x);
/* KL(p || q) as a scalar var where closed form exists (Normal–Normal, MVN–MVN); otherwise an
 * invalid var and EM_ERR_ARG on the tape. em_dist_has_kl says which without failing. */
int em_dist_has_kl(const em_dist *p, const em_dist *q);
em_var em_dist_kl(const em_dist *p, const em_dist *q);

/* ---- continuous families (functions on the tape; the em_<name> macros take any context
 *      and numbers or vars) ---------------------------------------------------------- */
em_dist em_dist_normal(em_tape *t, em_var loc, em_var scale);
em_dist em_dist_half_normal(em_tape *t, em_var scale);
em_dist em_dist_lognormal(em_tape *t, em_var loc, em_var scale);
em_dist em_dist_uniform(em_tape *t, em_var lo, em_var hi);
em_dist em_dist_exponential(em_tape *t, em_var rate);
em_dist em_dist_gamma(em_tape *t, em_var shape, em_var rate);
em_dist em_dist_inv_gamma(em_tape *t, em_var shape, em_var scale);
em_dist em_dist_beta(em_tape *t, em_var a, em_var b);
em_dist em_dist_cauchy(em_tape *t, em_var loc, em_var scale);
em_dist em_dist_half_cauchy(em_tape *t, em_var scale);
em_dist em_dist_student_t(em_tape *t, em_var df, em_var loc, em_var scale);
em_dist em_dist_laplace(em_tape *t, em_var loc, em_var scale);
em_dist em_dist_logistic(em_tape *t, em_var loc, em_var scale);
/* Stan's weibull(alpha, sigma): shape alpha, scale sigma, on (0, inf) */
em_dist em_dist_weibull(em_tape *t, em_var shape, em_var scale);
/* twice the StudentT(df, 0, scale) density on [0, inf) (Stan's student_t with a lower bound 0) */
em_dist em_dist_half_student_t(em_tape *t, em_var df, em_var scale);
/* Stan's skew_normal(xi, omega, alpha): 2/ω·φ(z)·Φ(αz), z = (x - ξ)/ω */
em_dist em_dist_skew_normal(em_tape *t, em_var xi, em_var omega, em_var alpha);
/* Stan's beta_proportion(mu, kappa) = Beta(mu·kappa, (1 - mu)·kappa), mu in (0, 1) */
em_dist em_dist_beta_proportion(em_tape *t, em_var mu, em_var kappa);
/* brms's gamma family: Gamma(shape, rate = shape/mean), mean mean, variance mean²/shape */
em_dist em_dist_gamma_mean(em_tape *t, em_var mean, em_var shape);
/* loc: K vector (or one K vector per event); scale_tril: K×K lower-triangular (row-major) with
 * positive diagonal; a nonzero upper entry is a domain error, not silently ignored */
em_dist em_dist_mvnormal(em_tape *t, em_var loc, em_var scale_tril);
/* LKJ(eta) on K×K correlation Cholesky factors (K >= 2, eta a scalar): the density of the
 * strictly-lower elements, log p(L) = Σ_{i>=2} (K - i + 2·eta - 2)·log L_ii + log c_K(eta)
 * (Lewandowski, Kurowicka & Joe 2009; Stan's lkj_corr_cholesky). Sampled by the onion method. */
em_dist em_dist_lkj_cholesky(em_tape *t, size_t K, em_var eta);
em_dist em_dist_dirichlet(em_tape *t, em_var concentration);

/* ---- discrete ---------------------------------------------------------------------------- */
em_dist em_dist_bernoulli(em_tape *t, em_var probs);
em_dist em_dist_bernoulli_logit(em_tape *t, em_var logits);
/* total_count referenced (length 1 or batch) */
em_dist em_dist_binomial_logit(em_tape *t, const double *total_count, size_t n, em_var logits);
em_dist em_dist_poisson(em_tape *t, em_var rate);
em_dist em_dist_poisson_log(em_tape *t, em_var log_rate);
/* Stan's neg_binomial_2: mean mu, dispersion phi (var = mu + mu^2/phi) */
em_dist em_dist_neg_binomial2(em_tape *t, em_var mu, em_var phi);
/* Stan's neg_binomial_2_log: log mean eta, dispersion phi (var = mu + mu²/phi, mu = e^eta) */
em_dist em_dist_neg_binomial2_log(em_tape *t, em_var eta, em_var phi);
/* brms's zero-inflated and hurdle counts: zi (hu) in (0, 1) is the probability of the extra
 * zero (of a zero); a hurdle's positive part is the base count conditioned on y > 0 */
em_dist em_dist_zero_inflated_poisson(em_tape *t, em_var rate, em_var zi);
em_dist em_dist_zero_inflated_neg_binomial2(em_tape *t, em_var mu, em_var phi, em_var zi);
em_dist em_dist_hurdle_poisson(em_tape *t, em_var rate, em_var hu);
em_dist em_dist_hurdle_neg_binomial2(em_tape *t, em_var mu, em_var phi, em_var hu);
/* Stan's beta_binomial(N, a, b); total_count referenced (length 1 or batch) */
em_dist em_dist_beta_binomial(em_tape *t, const double *total_count, size_t n, em_var a, em_var b);
/* Stan's ordered_logistic and ordered_probit with the value a category 0..K-1 (as for
 * CategoricalLogit, not Stan's 1..K): P(y <= k) = F(cutpoints[k] - eta), F the logistic CDF or Φ.
 * eta: a scalar or one per value; cutpoints: K - 1 increasing values shared by every element
 * (em_transform EM_TRANSFORM_ORDERED maps a free vector onto them). */
em_dist em_dist_ordered_logistic(em_tape *t, em_var eta, em_var cutpoints);
em_dist em_dist_ordered_probit(em_tape *t, em_var eta, em_var cutpoints);
/* logits: K values (every value drawn from one categorical), or a B×K matrix (row b scores
 * value b). A value is a category index 0..K-1 stored as a double. */
em_dist em_dist_categorical_logit(em_tape *t, em_var logits);

/* ---- families made of other families (dist_wrap.c) ---------------------------------------- */
/* A finite mixture: log p(x_i) = log Σ_k w_k p_k(x_i), with the weights a K-simplex (checked
 * when the density is built; the simplex transform keeps a parameter on it) and K univariate
 * components of one support on the same tape (copied: the array need not outlive the call).
 * Sampled by picking a component per element; mean and variance from the components'. */
em_dist em_dist_mixture(em_tape *t, em_var weights, const em_dist *components, size_t K);
/* Censored observations, as brms's cens(): cens[i] = 0 scores element i by the base density, -1
 * (left) by log F(x_i), 1 (right) by log(1 - F(x_i)), 2 (interval) by log(F(upper[i]) - F(x_i))
 * (upper may be NULL when no element is interval-censored). cens and upper are referenced and
 * the value must have their length n. The base is a continuous univariate family with CDFs whose
 * parameters have length 1 or n. Draws, mean and variance are the base's (the uncensored
 * latent values, as brms's posterior_predict gives). */
em_dist em_dist_censored(const em_dist *base, const double *cens, const double *upper, size_t n);
/* Weighted observations, as brms's weights(): log p(x) = Σ_i w_i log p_base(x_i), and the
 * pointwise terms (log_lik) w_i log p_base(x_i). w (n finite non-negative weights) is
 * referenced; the base is a univariate family with pointwise terms (not a fused GLM) whose
 * batch is 1 or n. Draws, mean and variance are the base's. */
em_dist em_dist_weighted(const em_dist *base, const double *w, size_t n);
/* The base truncated to [lb, ub] (brms's trunc()): log p(x) - log(F(ub) - F(lb)), -inf outside.
 * lb = -inf (a constant scalar) or ub = +inf means no bound on that side: em_truncated(m, d,
 * 0.0, INFINITY) is a generic lower-truncated prior. Bounds are scalars or one per element and
 * may be parameters (a model with such bounds is run at every evaluation, not replayed). The
 * support is the base's cut to constant scalar bounds (LOWER, UPPER or INTERVAL), so a latent
 * site gets the matching transform. Draws are the base's, redrawn until inside, or where the
 * bounds keep little of its mass by inverting its CDF; mean and variance are not available. */
em_dist em_dist_truncated(const em_dist *base, em_var lb, em_var ub);
#define em_mixture(c, w, comps, K) em_dist_mixture(EM_T(c), (w), (comps), (K))
#define em_censored(d, cens, upper, n) em_dist_censored((d), (cens), (upper), (n))
#define em_truncated(c, d, lb, ub) em_dist_truncated((d), EM_V(c, lb), EM_V(c, ub))

/* ---- improper priors ------------------------------------------------------------------------ */
/* The improper flat density (log density 0) on a continuous support: Stan's default for a
 * parameter with no sampling statement. It cannot be sampled; a draw (needed only to discover
 * the model's structure and to initialise) is uniform(-2, 2) on the unconstrained scale. n is
 * the batch length. */
em_dist em_dist_improper_uniform(em_tape *t, em_support support, size_t n);
#define em_flat(c, n) em_dist_improper_uniform(EM_T(c), (em_support){EM_SUPPORT_REAL, 0.0, 0.0}, (n))
#define em_flat_positive(c, n) em_dist_improper_uniform(EM_T(c), (em_support){EM_SUPPORT_POSITIVE, 0.0, 0.0}, (n))

/* ---- fused GLM likelihoods: linear predictor alpha + X·beta, log density and partials in
 *      one node, two passes over X (X is a constant rows×cols matrix var) -----------------
 * alpha: scalar or one per row; beta: cols values; sigma (normal): scalar or one per row. The
 * value y has one element per row of X. Gradients go to alpha, beta, sigma, to y (normal,
 * when y is a leaf) and to X if X is not constant (r·betaᵀ). */
em_dist em_dist_normal_id_glm(em_tape *t, em_var X, em_var alpha, em_var beta, em_var sigma);
em_dist em_dist_bernoulli_logit_glm(em_tape *t, em_var X, em_var alpha, em_var beta);
em_dist em_dist_poisson_log_glm(em_tape *t, em_var X, em_var alpha, em_var beta);
/* The same with an offset added to the linear predictor (constant data, one per row of X,
 * referenced; NULL for none), as brms's offset(). */
em_dist em_dist_normal_id_glm_offset(em_tape *t, em_var X, em_var alpha, em_var beta, em_var sigma, const double *offset);
em_dist em_dist_bernoulli_logit_glm_offset(em_tape *t, em_var X, em_var alpha, em_var beta, const double *offset);
em_dist em_dist_poisson_log_glm_offset(em_tape *t, em_var X, em_var alpha, em_var beta, const double *offset);
/* One pass over X (the gradient in β accumulated row by row in the forward pass, so the
 * backward reads no X), η = alpha + offset + X·beta, the value y data:
 *   NegBinomial2Log: y ~ neg_binomial_2_log(η, phi) (Stan's neg_binomial_2_log_glm);
 *   GammaLog: y ~ Gamma(shape, rate = shape·e^{-η}), mean e^η (brms's Gamma(link = "log"));
 *   OrderedLogistic: y in {0..K-1} ~ ordered_logistic(X·beta + offset, cutpoints) (Stan's
 *   ordered_logistic_glm; no alpha: the cutpoints hold the intercept).
 * phi and shape: scalar or one per row; offset: NULL or one per row. */
em_dist em_dist_neg_binomial2_log_glm(em_tape *t, em_var X, em_var alpha, em_var beta, em_var phi, const double *offset);
em_dist em_dist_gamma_log_glm(em_tape *t, em_var X, em_var alpha, em_var beta, em_var shape, const double *offset);
em_dist em_dist_ordered_logistic_glm(em_tape *t, em_var X, em_var beta, em_var cutpoints, const double *offset);

#define em_normal(c, loc, scale) em_dist_normal(EM_T(c), EM_V(c, loc), EM_V(c, scale))
#define em_half_normal(c, scale) em_dist_half_normal(EM_T(c), EM_V(c, scale))
#define em_lognormal(c, loc, scale) em_dist_lognormal(EM_T(c), EM_V(c, loc), EM_V(c, scale))
#define em_uniform(c, lo, hi) em_dist_uniform(EM_T(c), EM_V(c, lo), EM_V(c, hi))
#define em_exponential(c, rate) em_dist_exponential(EM_T(c), EM_V(c, rate))
#define em_gamma(c, shape, rate) em_dist_gamma(EM_T(c), EM_V(c, shape), EM_V(c, rate))
#define em_inv_gamma(c, shape, scale) em_dist_inv_gamma(EM_T(c), EM_V(c, shape), EM_V(c, scale))
#define em_beta(c, a, b) em_dist_beta(EM_T(c), EM_V(c, a), EM_V(c, b))
#define em_cauchy(c, loc, scale) em_dist_cauchy(EM_T(c), EM_V(c, loc), EM_V(c, scale))
#define em_half_cauchy(c, scale) em_dist_half_cauchy(EM_T(c), EM_V(c, scale))
#define em_student_t(c, df, loc, scale) em_dist_student_t(EM_T(c), EM_V(c, df), EM_V(c, loc), EM_V(c, scale))
#define em_laplace(c, loc, scale) em_dist_laplace(EM_T(c), EM_V(c, loc), EM_V(c, scale))
#define em_logistic(c, loc, scale) em_dist_logistic(EM_T(c), EM_V(c, loc), EM_V(c, scale))
#define em_weibull(c, shape, scale) em_dist_weibull(EM_T(c), EM_V(c, shape), EM_V(c, scale))
#define em_half_student_t(c, df, scale) em_dist_half_student_t(EM_T(c), EM_V(c, df), EM_V(c, scale))
#define em_skew_normal(c, xi, om, al) em_dist_skew_normal(EM_T(c), EM_V(c, xi), EM_V(c, om), EM_V(c, al))
#define em_beta_proportion(c, mu, kappa) em_dist_beta_proportion(EM_T(c), EM_V(c, mu), EM_V(c, kappa))
#define em_gamma_mean(c, mean, shape) em_dist_gamma_mean(EM_T(c), EM_V(c, mean), EM_V(c, shape))
#define em_mvnormal(c, loc, L) em_dist_mvnormal(EM_T(c), (loc), (L))
#define em_lkj_cholesky(c, K, eta) em_dist_lkj_cholesky(EM_T(c), (K), EM_V(c, eta))
#define em_dirichlet(c, conc) em_dist_dirichlet(EM_T(c), (conc))
#define em_bernoulli(c, p) em_dist_bernoulli(EM_T(c), EM_V(c, p))
#define em_bernoulli_logit(c, l) em_dist_bernoulli_logit(EM_T(c), EM_V(c, l))
#define em_binomial_logit(c, N, n, l) em_dist_binomial_logit(EM_T(c), (N), (n), EM_V(c, l))
#define em_poisson(c, rate) em_dist_poisson(EM_T(c), EM_V(c, rate))
#define em_poisson_log(c, lr) em_dist_poisson_log(EM_T(c), EM_V(c, lr))
#define em_neg_binomial2(c, mu, phi) em_dist_neg_binomial2(EM_T(c), EM_V(c, mu), EM_V(c, phi))
#define em_neg_binomial2_log(c, eta, phi) em_dist_neg_binomial2_log(EM_T(c), EM_V(c, eta), EM_V(c, phi))
#define em_zero_inflated_poisson(c, rate, zi) em_dist_zero_inflated_poisson(EM_T(c), EM_V(c, rate), EM_V(c, zi))
#define em_zero_inflated_neg_binomial2(c, mu, phi, zi) \
    em_dist_zero_inflated_neg_binomial2(EM_T(c), EM_V(c, mu), EM_V(c, phi), EM_V(c, zi))
#define em_hurdle_poisson(c, rate, hu) em_dist_hurdle_poisson(EM_T(c), EM_V(c, rate), EM_V(c, hu))
#define em_hurdle_neg_binomial2(c, mu, phi, hu) \
    em_dist_hurdle_neg_binomial2(EM_T(c), EM_V(c, mu), EM_V(c, phi), EM_V(c, hu))
#define em_beta_binomial(c, N, n, a, b) em_dist_beta_binomial(EM_T(c), (N), (n), EM_V(c, a), EM_V(c, b))
#define em_ordered_logistic(c, eta, cuts) em_dist_ordered_logistic(EM_T(c), EM_V(c, eta), (cuts))
#define em_ordered_probit(c, eta, cuts) em_dist_ordered_probit(EM_T(c), EM_V(c, eta), (cuts))
#define em_categorical_logit(c, l) em_dist_categorical_logit(EM_T(c), (l))
#define em_normal_id_glm(c, X, a, b, s) em_dist_normal_id_glm(EM_T(c), (X), EM_V(c, a), (b), EM_V(c, s))
#define em_bernoulli_logit_glm(c, X, a, b) em_dist_bernoulli_logit_glm(EM_T(c), (X), EM_V(c, a), (b))
#define em_poisson_log_glm(c, X, a, b) em_dist_poisson_log_glm(EM_T(c), (X), EM_V(c, a), (b))
#define em_normal_id_glm_offset(c, X, a, b, s, off) \
    em_dist_normal_id_glm_offset(EM_T(c), (X), EM_V(c, a), (b), EM_V(c, s), (off))
#define em_bernoulli_logit_glm_offset(c, X, a, b, off) em_dist_bernoulli_logit_glm_offset(EM_T(c), (X), EM_V(c, a), (b), (off))
#define em_poisson_log_glm_offset(c, X, a, b, off) em_dist_poisson_log_glm_offset(EM_T(c), (X), EM_V(c, a), (b), (off))
#define em_neg_binomial2_log_glm(c, X, a, b, phi, off) \
    em_dist_neg_binomial2_log_glm(EM_T(c), (X), EM_V(c, a), (b), EM_V(c, phi), (off))
#define em_gamma_log_glm(c, X, a, b, shape, off) \
    em_dist_gamma_log_glm(EM_T(c), (X), EM_V(c, a), (b), EM_V(c, shape), (off))
#define em_ordered_logistic_glm(c, X, b, cuts, off) em_dist_ordered_logistic_glm(EM_T(c), (X), (b), (cuts), (off))

#ifdef __cplusplus
}
#endif
#endif
