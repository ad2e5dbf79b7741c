/* internal/ess.h — the effective-sample-size core shared by diagnostics and loo.
 *
 * posterior's ESS (diagnostics) and loo's relative_eff (loo 2.5.1, ess_rfun) run the same
 * Geyer (1992) initial-monotone-sequence estimator on chain-major draws, but loo feeds it an
 * autocovariance that is not rescaled to the sample variance: loo divides the inverse FFT by
 * 2 N^2 after padding each chain to twice fft_next_good_size(N) = M, which leaves every lag
 * multiplied by M / N, while the between-chain variance is added unscaled. acov_scale carries
 * that factor (1 for posterior, M / N for loo), so both reproduce their package to rounding.
 */
#ifndef EMBER_INTERNAL_ESS_H
#define EMBER_INTERNAL_ESS_H

#include <stddef.h>

#include "ember/core.h"

/* ESS of nchains chains of n draws each (x[c * n + i]); the draws must be finite and n >= 3.
 * (NaN for n < 3.) Constant draws give S / 2 (the autocorrelation is 0/0 and the sum stops at lag 0), as both
 * packages' formulas do; posterior's callers return NaN before getting here. NaN and err set
 * (naming fn) when out of memory. */
double em_ess_geyer(const double *x, size_t nchains, size_t n, double acov_scale, em_error *err,
                    const char *fn);

#endif
