/* formula.h — regressions written as brms formulas, interpreted: no compile step.
 *
 *     em_frame *data;       em_frame_read_csv("radon.csv", &data, &err);
 *     em_regression *reg;   em_regression_create("log_radon ~ floor + (1 + floor | county)", data, NULL, &reg, &err);
 *     em_posterior *fit;    em_regression_fit(reg, NULL, &fit, &err);
 *     em_regression_print_summary(reg, fit, stdout, &err);       (brms's summary layout)
 *
 * The formula language is a subset of brms's (Bürkner 2017, "brms: An R package for Bayesian
 * multilevel models using Stan", J. Stat. Softw. 80(1)) with the same meaning:
 *   - terms: `1`, `0` / `-1`, numeric columns, text columns as factors (treatment contrasts,
 *     levels in the C locale's order, the first the reference), `factor(x)`, interactions `a:b`
 *     and `a * b`, `(a + b)^2`, `-` to drop a term, `offset(expr)`, and `log`, `exp`, `sqrt`,
 *     `scale`, `I(...)` with + - * / ^ inside;
 *   - on the response: `y | trials(n)` (binomial), `y | weights(w)` (each row's log-likelihood
 *     times w, any family, with the others as in `y | weights(w) + cens(c)`), `y | cens(c)` and `y | cens(c, y2)` (censoring
 *     per row, c "left" / "none" / "right" / "interval" or -1 / 0 / 1 / 2, y2 the upper end of an
 *     interval), `y | trunc(lb = 0, ub = 10)` (bounds constants or columns), for the continuous
 *     families;
 *   - group-level terms `(1 | g)`, `(1 + x | g)` (correlated, LKJ prior on the correlation
 *     Cholesky factor), `(1 + x || g)` (uncorrelated), `(1 | a:b)`, `(1 | a/b)` (= `(1 | a) +
 *     (1 | a:b)`), several of them, non-centred as brms writes them (r = diag(sd) L z).
 * Columns are coded as R's model.matrix codes them (a factor in a term gets contrasts when the
 * term without it is in the formula, else one column per level), and named as brms names
 * them: b_Intercept, b_TrtB, b_x:TrtB, sd_g__Intercept, cor_g__Intercept__x, r_g[A,Intercept].
 *
 * Priors take brms's classes and defaults (brms 2.18): flat on b, student_t(3, location,
 * scale) on the centred Intercept and student_t(3, 0, scale) on sigma and sd (scale and
 * location from the response as brms computes them: from log(y) for the log links and
 * lognormal, none for the logit ones), lkj(1) on cor, gamma(2, 0.1) on nu, gamma(0.01, 0.01) on
 * shape and phi, beta(1, 1) on zi and hu. A user prior is a line such as "b ~ normal(0, 2.5)",
 * "b_x ~ normal(0, 1)", "sd_g ~ exponential(1)", "sigma ~ student_t(3, 0, 5)", "cor ~ lkj(2)".
 * Predictors are centred internally as brms does; b_Intercept is reported on the original scale.
 *
 * Every mistake is an error with its place: the formula's column and a caret, an unknown
 * column with the nearest names, a row and a value outside the family's support, a missing
 * value (or rows dropped, counted, with drop_missing), a constant or collinear column named.
 */
#ifndef EMBER_FORMULA_H
#define EMBER_FORMULA_H

#include <stdio.h>

#include "ember/posterior.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the formula's syntax ------------------------------------------------------------------ */

typedef struct em_formula em_formula;

/* Parse text; a syntax error is EM_ERR_PARSE with the column and a caret under it. */
em_status em_formula_parse(const char *text, em_formula **out, em_error *err);
void em_formula_free(em_formula *f);

/* ---- families -------------------------------------------------------------------------------- */

typedef enum em_family {
    EM_FAMILY_GAUSSIAN = 0, /* identity link; sigma */
    EM_FAMILY_STUDENT,      /* identity link; sigma, nu */
    EM_FAMILY_BERNOULLI,    /* logit link */
    EM_FAMILY_BINOMIAL,     /* logit link; y | trials(n) */
    EM_FAMILY_POISSON,      /* log link */
    EM_FAMILY_NEGBINOMIAL,  /* log link; shape (Stan's neg_binomial_2 phi) */
    EM_FAMILY_GAMMA,        /* log link; shape: y ~ Gamma(shape, shape / mu) */
    EM_FAMILY_LOGNORMAL,    /* identity link on the mean of log(y); sigma */
    EM_FAMILY_BETA,         /* logit link; phi: y ~ Beta(mu phi, (1 - mu) phi) */
    EM_FAMILY_CUMULATIVE,   /* logit or probit; thresholds b_Intercept[1..K-1], y in 1..K */
    EM_FAMILY_ZERO_INFLATED_POISSON,     /* log link; zi */
    EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL, /* log link; shape, zi */
    EM_FAMILY_HURDLE_POISSON,            /* log link; hu */
    EM_FAMILY_HURDLE_NEGBINOMIAL,        /* log link; shape, hu */
    EM_FAMILY_WEIBULL,      /* log link on the mean; shape: scale = mu / Gamma(1 + 1/shape) */
    EM_FAMILY_COUNT
} em_family;

/* The link of the mean; EM_LINK_DEFAULT is the family's (the one above). Only cumulative has a
 * choice (logit or probit). */
typedef enum em_link { EM_LINK_DEFAULT = 0, EM_LINK_IDENTITY, EM_LINK_LOG, EM_LINK_LOGIT, EM_LINK_PROBIT, EM_LINK_COUNT } em_link;

/* brms's family names: "gaussian", "student", "bernoulli", "binomial", "poisson", "negbinomial",
 * "gamma" (or "Gamma"), "lognormal", "beta" (or "Beta"), "cumulative", "zero_inflated_poisson",
 * "zero_inflated_negbinomial", "hurdle_poisson", "hurdle_negbinomial", "weibull". */
em_status em_family_from_name(const char *name, em_family *out, em_error *err);
const char *em_family_name(em_family f);
/* A family as brms writes it, with its link: "poisson", "cumulative(\"probit\")",
 * "cumulative(link = 'probit')", "Gamma(link = \"log\")", "cumulative(probit)"; a link the
 * family does not have is EM_ERR_ARG naming the ones it has. */
em_status em_family_parse(const char *spec, em_family *family, em_link *link, em_error *err);
/* "identity", "log", "logit", "probit" ("default" for EM_LINK_DEFAULT); em_link_from_name reads them. */
const char *em_link_name(em_link l);
em_status em_link_from_name(const char *name, em_link *out, em_error *err);

/* ---- data frames: columns of numbers or of text (factors) ------------------------------------- */

typedef struct em_frame em_frame;

/* Every column of a CSV file (io.h's reader and its rules): a column whose every present value
 * is a number is numeric, any other is text; "", "NA" and "NaN" are missing. */
em_status em_frame_read_csv(const char *path, em_frame **out, em_error *err);
em_status em_frame_parse_csv(const char *name, const char *buf, size_t len, em_frame **out, em_error *err);
void em_frame_free(em_frame *f);
size_t em_frame_num_rows(const em_frame *f);

/* ---- a formula bound to data ------------------------------------------------------------------ */

typedef struct em_regression em_regression;

typedef struct em_regression_options {
    em_family family;          /* EM_FAMILY_GAUSSIAN */
    em_link link;              /* EM_LINK_DEFAULT: the family's */
    const char *const *priors; /* brms-style prior lines, in order (a later one wins) */
    size_t npriors;
    int drop_missing;          /* 0: a missing value is an error; 1: rows with one are dropped */
} em_regression_options;

/* Parse formula, check it against data and the family, build the design matrices and the priors.
 * opt may be NULL (gaussian, default priors, missing values are errors). */
em_status em_regression_create(const char *formula, const em_frame *data, const em_regression_options *opt,
                               em_regression **out, em_error *err);
void em_regression_free(em_regression *r);

/* The model function (its data argument is the regression), for any engine. */
void em_regression_model(em_model *m, const void *regression);

em_family em_regression_family(const em_regression *r);
em_link em_regression_link(const em_regression *r); /* the link in force (never EM_LINK_DEFAULT) */
size_t em_regression_num_rows(const em_regression *r);    /* rows used */
size_t em_regression_num_dropped(const em_regression *r); /* rows dropped for missing values */
/* The population-level design matrix as R's model.matrix builds it, without the intercept
 * column (uncentred, row-major rows × num_coefs), and its column names ("TrtB", "x:TrtB"). */
size_t em_regression_num_coefs(const em_regression *r);
const char *em_regression_coef_name(const em_regression *r, size_t j);
const double *em_regression_design(const em_regression *r);
int em_regression_has_intercept(const em_regression *r);
/* The priors in force, as brms's prior_summary prints them. */
em_status em_regression_print_priors(const em_regression *r, FILE *f, em_error *err);

/* NUTS on the model (cfg NULL: Stan's defaults). The posterior's parameters are brms's
 * (b_Intercept, b_x, sd_g__Intercept, cor_g__..., sigma, r_g[level,term]); the model stays
 * attached to the draws' internal form for prediction and log-likelihood. */
em_status em_regression_fit(em_regression *r, const em_mcmc_config *cfg, em_posterior **out, em_error *err);

/* SVI on the model instead (em_fit_svi: an autoguide started at the Laplace approximation, the
 * ELBO stopping rule, cfg->num_draws independent draws with their Pareto k̂; cfg NULL: the
 * defaults), the draws in the same brms names; the summary states the approximation's verdict. */
em_status em_regression_fit_svi(em_regression *r, const em_svi_fit_config *cfg, em_posterior **out, em_error *err);

/* PSIS-LOO of the last fit (its response's pointwise log-likelihood), with exact refits of the
 * observations whose Pareto k̂ exceeds 0.7 (brms's reloo = TRUE; NUTS fits only, a variational
 * fit keeps PSIS's estimates and their k̂); *nrefits may be NULL. */
em_status em_regression_loo(const em_regression *r, em_loo_result **out, size_t *nrefits, em_error *err);

/* The last fit's pointwise log-likelihood of the response, draws × rows row-major (brms's
 * log_lik(): a censored row scores its CDF term, a truncated one its renormalised density),
 * and posterior predictive draws of the response in the same layout (brms's
 * posterior_predict(): categories 1..K for cumulative, the uncensored latent values for a
 * censored response, draws inside the bounds for a truncated one). *out is malloc'd; draws
 * are chain-major as in em_posterior_draws. */
em_status em_regression_log_lik(const em_regression *r, double **out, size_t *ndraws, em_error *err);
em_status em_regression_yrep(const em_regression *r, double **out, size_t *ndraws, em_error *err);

/* The posterior predictive check of the last fit as a figure: the density of the response
 * over 100 replicated data sets (the continuous families) or bars with 90% intervals over 500
 * (the count, binary and ordinal families), each from draws spread evenly over the chains,
 * dir/<name>.dat and dir/<name>.gp (loo.h's em_ppc_*_figure). */
em_status em_regression_ppc_figure(const em_regression *r, const char *dir, const char *name, em_error *err);

/* The population-level coefficients of fit (b_Intercept, b_x, ...: brms's names, as
 * em_regression_fit returns or CmdStan files hold them) as a figure: medians with 50% and 95%
 * central intervals, one line each (bayesplot's mcmc_intervals), dir/<name>.dat and
 * dir/<name>.gp for gnuplot. */
em_status em_regression_coef_figure(const em_regression *r, const em_posterior *fit, const char *dir, const char *name,
                                    em_error *err);

/* brms's summary: family, links, formula, data, draws, then group-level effects per grouping
 * factor, population-level effects and family-specific parameters, each with Estimate,
 * Est.Error, l-95% CI, u-95% CI, Rhat, Bulk_ESS and Tail_ESS; warnings as Stan gives them. */
em_status em_regression_print_summary(const em_regression *r, const em_posterior *fit, FILE *f, em_error *err);

/* ---- prediction at new data (brms's posterior_predict, posterior_epred, posterior_linpred) -- */

/* How a grouping factor's level that the training data did not have gets its effects. */
typedef enum em_new_levels {
    EM_NEW_LEVELS_UNCERTAINTY = 0, /* brms's sample_new_levels = "uncertainty": in each draw, the
                                    * effects of an existing level chosen at random */
    EM_NEW_LEVELS_GAUSSIAN,        /* "gaussian": in each draw, MVN(0, Σ) with that draw's sds and
                                    * correlations */
    EM_NEW_LEVELS_ERROR            /* brms's allow_new_levels = FALSE: a new level is an error */
} em_new_levels;

typedef struct em_predict_options {
    em_new_levels new_levels;
    int population_only; /* brms's re_formula = NA: the group-level terms left out */
    int drop_missing;    /* 0: a missing value in the new data is an error; 1: the row is skipped */
    uint64_t seed;       /* the predictive draws' and new levels' random numbers */
    unsigned kinds;      /* which draws to keep: a mask of 1u << em_predict_kind (0: all three;
                          * S x rows doubles each, so a large newdata may want one) */
} em_predict_options;

typedef enum em_predict_kind {
    EM_PREDICT_RESPONSE = 0, /* posterior_predict: a draw of the response */
    EM_PREDICT_EPRED,        /* posterior_epred: its expected value (binomial: trials · p) */
    EM_PREDICT_LINPRED,      /* posterior_linpred: the linear predictor, on the link scale */
    EM_PREDICT_KIND_COUNT
} em_predict_kind;

typedef struct em_prediction em_prediction;

/* Predictions of regression r at newdata (NULL: the training rows) from fit, a posterior in
 * brms's names: the one em_regression_fit returns, or CmdStan files of `ember fit --out` read
 * back with em_posterior_read_cmdstan. newdata is coded as the training data were: its factors
 * take the training levels (an unknown level of a population-level factor is an error naming
 * the file, line, column and value), scale() the training mean and sd, the centring the
 * training means; offsets and trials() come from newdata, which needs no response. Group
 * levels seen in training use their r_ draws, others opt->new_levels. opt may be NULL. */
em_status em_regression_predict(const em_regression *r, const em_posterior *fit, const em_frame *newdata,
                                const em_predict_options *opt, em_prediction **out, em_error *err);
void em_prediction_free(em_prediction *p);
size_t em_prediction_num_draws(const em_prediction *p);
size_t em_prediction_num_rows(const em_prediction *p);
/* The 0-based row of newdata (or of the training frame) that prediction row i is. */
size_t em_prediction_frame_row(const em_prediction *p, size_t i);
/* Distinct grouping-factor levels of newdata that the training data did not have. */
size_t em_prediction_num_new_levels(const em_prediction *p);
/* The draws × rows matrix of kind k, row-major: x[d * rows + i], draws chain-major (NULL for a
 * kind that opt->kinds left out). For the cumulative family a response draw is a category
 * 1..K and the expected value is the mean category Σ_k k·P(y = k); the probabilities
 * themselves are em_prediction_probs's. */
const double *em_prediction_draws(const em_prediction *p, em_predict_kind k);
/* Cumulative family, with EM_PREDICT_EPRED kept: P(y = k | draw d) of row i, k = 1..K, at
 * probs[(d * rows + i) * K + k - 1] (brms's posterior_epred for an ordinal model), with K in
 * *K; NULL (and *K = 0) for the other families. */
const double *em_prediction_probs(const em_prediction *p, size_t *K);
/* Per row, as brms's predict() and fitted() summarise: out[4 i ..] = Estimate (mean),
 * Est.Error (sd), and the lo and hi quantiles (R's type 7; brms: 0.025 and 0.975). */
em_status em_prediction_summary(const em_prediction *p, em_predict_kind k, double lo, double hi, double *out,
                                em_error *err);
/* As CSV, written atomically to path (NULL: stdout): the summary (row, Estimate, Est.Error,
 * Q2.5, Q97.5; row counts newdata's data rows from 1), or with draws the matrix itself, one
 * line per draw (columns yrep.<row>, epred.<row> or linpred.<row>). A cumulative model's
 * summaries are brms's: for the response, each category's share of the draws (row,
 * P(Y = 1), ..., P(Y = K)); for the expected value, each category's probability summarised
 * (row, category, Estimate, Est.Error, Q2.5, Q97.5). */
em_status em_prediction_write_csv(const em_prediction *p, em_predict_kind k, int draws, const char *path, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
