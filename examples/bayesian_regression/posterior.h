/* posterior.h — posterior draws of the rugged model's five parameters, however they were made
 * (NUTS chains or a guide's draws), with their summaries and the slopes inside and outside
 * Africa, and the CSV files that hold them. */
#ifndef RUGGED_POSTERIOR_H
#define RUGGED_POSTERIOR_H

#include <stdio.h>

#include "ember.h"

#define NPAR 5
/* The model's latent sites, in the model's order (as in the draws files). */
extern const char *const param_names[NPAR];
enum { P_A, P_BA, P_BR, P_BAR, P_SIGMA };

typedef struct post {
    char label[64];        /* "NUTS", "SVI (AutoDiagonalNormal)", ... */
    size_t nchains, ndraws; /* ndraws per chain */
    double *x;             /* x[(c * ndraws + i) * NPAR + p] */
} post;

/* Allocate x for nchains × ndraws rows. */
em_status post_alloc(post *p, const char *label, size_t nchains, size_t ndraws, em_error *err);
void post_free(post *p);
static inline size_t post_rows(const post *p) { return p->nchains * p->ndraws; }

/* The slope of log GDP on ruggedness of every draw: outside Africa bR, inside bR + bAR.
 * out has post_rows(p) values. */
void post_slopes(const post *p, double *outside, double *inside);

/* em_summarize over the five parameters (R-hat and ESS are meaningful only for chains). */
em_status post_summarize(const post *p, em_summary **out, em_error *err);

/* Print a summary: mean, sd, 5%, 50%, 95%, plus ESS and R-hat when with_diag (em_summary_print). */
void print_summary(FILE *f, const em_summary *s, int with_diag);
/* Print the slopes inside and outside Africa with 90% intervals. */
void print_slopes(FILE *f, const post *p);

#endif
