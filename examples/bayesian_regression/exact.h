/* exact.h — the rugged model's exact posterior, as a check on SVI and NUTS.
 *
 * Given sigma, the coefficients (a, bA, bR, bAR) have Normal priors and a Normal likelihood, so
 * their conditional posterior is Normal in closed form (Bayesian linear regression, e.g.
 * Bishop 2006, "Pattern Recognition and Machine Learning", §3.3). Integrating sigma out on a
 * fine grid (trapezoidal rule over [0.45, 1.8], where all its mass lies; prior density 1/10)
 * gives the posterior moments and the log evidence log p(y) to many digits, with no sampling. */
#ifndef RUGGED_EXACT_H
#define RUGGED_EXACT_H

#include "posterior.h"
#include "rugged_model.h"

typedef struct exact_posterior {
    double mean[NPAR], sd[NPAR];          /* a, bA, bR, bAR, sigma */
    double slope_in_mean, slope_in_sd;    /* bR + bAR */
    double slope_out_mean, slope_out_sd;  /* bR */
    double log_evidence;                  /* log p(y) */
} exact_posterior;

/* EM_ERR_NUMERIC if the data leave too little mass inside the sigma grid (another data set). */
em_status exact_compute(const rugged_data *d, exact_posterior *ex, em_error *err);

#endif
