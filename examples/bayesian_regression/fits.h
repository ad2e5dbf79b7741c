/* fits.h — the inference runs of the tutorials: SVI with Part 1's AutoDiagonalNormal and
 * Part 2's hand-written mean-field guide and AutoMultivariateNormal, and NUTS. */
#ifndef RUGGED_FITS_H
#define RUGGED_FITS_H

#include <stdio.h>

#include "posterior.h"
#include "rugged_model.h"

#define GUIDE_HAND (-1) /* svi_spec.kind for Part 2's hand-written guide */

typedef struct svi_spec {
    const char *name;   /* "AutoDiagonalNormal", ... */
    int kind;           /* an em_autoguide_kind, or GUIDE_HAND */
    em_init_kind init;  /* autoguide initialisation */
    double lr;          /* Adam's learning rate */
    int steps;          /* optimisation steps */
    int log_every;      /* print the loss every this many steps (0: never) */
    int per_datum;      /* print the loss divided by the number of rows (Part 1 does) */
    size_t ndraws;      /* posterior draws taken from the fitted guide */
    int draws_only;     /* skip the −ELBO estimate and the guide's quantiles (calibration refits) */
} svi_spec;

typedef struct svi_fit {
    post draws;               /* ndraws draws of the five parameters from the guide */
    double neg_elbo;          /* −ELBO of the fitted guide, averaged over 2000 particles */
    double elbo_se;           /* its Monte Carlo standard error */
    size_t stop_step;         /* the step where the TREND stopping rule first fired (0: never) */
    double khat;              /* Pareto k̂ of the guide's draws (autoguides; NaN otherwise) */
    size_t skipped;           /* steps skipped for a non-finite loss */
    double seconds;
    int has_gaussian;         /* autoguides: their Gaussian on the unconstrained space */
    double loc[NPAR], scale[NPAR];
    double quantiles[3][NPAR]; /* 25%, 50%, 75% of each parameter (the guide's quantiles()) */
    em_posterior *posterior;  /* autoguides: the same draws as the library's posterior */
} svi_fit;

/* Fit spec's guide to d with SVI (Trace ELBO, one particle per step, Adam), printing the loss
 * log on log (may be NULL), then draw spec->ndraws posterior draws from it. */
em_status svi_fit_run(const svi_spec *spec, const rugged_data *d, uint64_t seed, FILE *log, svi_fit *out,
                      em_error *err);
void svi_fit_free(svi_fit *f);

/* Part 2's hand-written guide (its data is a part2_guide_init). */
typedef struct part2_guide_init {
    double weights_loc[3]; /* Pyro draws torch.randn(3) */
} part2_guide_init;
void part2_guide(em_model *m, const void *init);

typedef struct nuts_spec {
    int chains, samples, warmup;
    uint64_t seed;
    int progress;      /* progress lines on stderr */
    int handle_sigint; /* Ctrl-C stops the chains and keeps what they drew */
} nuts_spec;

/* Run NUTS on the rugged model (Stan's defaults otherwise: diagonal metric, target accept 0.8,
 * max tree depth 10). On EM_OK or EM_ERR_INTERRUPTED *out holds the draws. */
em_status nuts_run(const rugged_data *d, const nuts_spec *spec, em_posterior **out, em_error *err);

/* The five parameters of a posterior's draws (its chains cut to equal length after an
 * interruption, so that R-hat and ESS see equal chains). */
em_status post_from_posterior(const em_posterior *src, const char *label, post *p, em_error *err);

#endif
