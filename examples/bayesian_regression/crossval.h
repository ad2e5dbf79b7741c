/* crossval.h — is the uncertainty honest? K-fold cross-validation of the posterior
 * predictive intervals: fit on K-1 folds, predict the held-out rows, and count how often the
 * central 50% and 90% intervals of a new observation contain the observed log GDP. A
 * calibrated posterior covers about 50% and 90% of held-out rows. */
#ifndef RUGGED_CROSSVAL_H
#define RUGGED_CROSSVAL_H

#include <stdio.h>

#include "rugged_model.h"

typedef struct coverage_row {
    const char *method;   /* "nuts", "svi" */
    const char *interval; /* "predictive_50", "predictive_90", "mean_line_90" */
    double nominal;
    size_t covered, n;
    double mean_width;
} coverage_row;

#define COVERAGE_MAX_ROWS 6

typedef struct coverage {
    int folds;
    int nuts_chains, nuts_samples, nuts_warmup; /* settings per fold */
    int svi_steps;
    size_t svi_draws;
    size_t nrows;
    coverage_row rows[COVERAGE_MAX_ROWS];
} coverage;

/* Run the K-fold check with NUTS (use_nuts) and/or SVI with AutoDiagonalNormal (use_svi).
 * Rows are assigned to folds by a seeded shuffle. EM_ERR_INTERRUPTED when Ctrl-C stopped a
 * NUTS run (nothing is reported then). */
em_status calibrate(const rugged_data *d, int folds, int use_nuts, int use_svi, int svi_steps, uint64_t seed,
                    coverage *out, em_error *err);

void print_coverage(FILE *f, const coverage *c);
/* Name the predictive intervals whose coverage is more than two binomial standard errors from
 * nominal (nothing when none is). */
void print_coverage_warnings(FILE *f, const coverage *c);
em_status write_coverage_csv(const char *dir, const coverage *c, em_error *err);

#endif
