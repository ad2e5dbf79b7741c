/* report.h — the printed report's parts that are more than a line or two: the data summary, an
 * SVI fit, the comparison of the methods and the answer to the tutorial's question. Sections
 * start with a "=== title ===" line (scripts/notebooks.py splits the report there). */
#ifndef RUGGED_REPORT_H
#define RUGGED_REPORT_H

#include "cli.h"
#include "exact.h"
#include "fits.h"

/* A blank line, then "=== title ===". */
void section(const char *title);
void print_data_summary(const rugged_options *o, const rugged_data *d);
/* Part 1's tables (the guide's parameters and quantiles for AutoDiagonalNormal), the summary and
 * the −ELBO next to the exact −log p(y) (ex may be NULL). */
void print_svi_fit(const svi_spec *spec, const svi_fit *f, const em_summary *s, const exact_posterior *ex);
/* Mean and sd of each parameter and slope under the n methods, next to the exact values. */
void print_comparison(const post *const *p, const em_summary *const *s, size_t n, const exact_posterior *ex);
/* The slopes in words from the best posterior, and how much narrower the mean-field guide's are
 * (mean_field may be NULL or best itself). */
void print_answer(const post *best, const post *mean_field);

#endif
