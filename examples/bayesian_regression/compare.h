/* compare.h — which model predicts new nations best? PSIS-LOO of the rugged regression with the
 * Africa interaction, without it, and with Student-t errors, compared as R's loo_compare does
 * (Vehtari, Gelman & Gabry 2017). */
#ifndef RUGGED_COMPARE_H
#define RUGGED_COMPARE_H

#include <stdio.h>

#include "ember.h"
#include "rugged_model.h"

/* Fit the three models by NUTS (chains x samples after warmup, seeded), print each one's PSIS-LOO
 * and their comparison, and write loo_compare.csv into dir. Observations whose Pareto k̂ is above
 * 0.7 are refitted exactly. */
em_status compare_models(const rugged_data *d, int chains, int samples, int warmup, uint64_t seed, const char *dir,
                         em_error *err);

#endif
