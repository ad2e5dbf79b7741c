/* predict.h — posterior predictive bands of the rugged model: for each row of a data set, the
 * regression line mu (the model's "mean" site) and a new observation y ("obs"), summarised by
 * mean and quantiles over the posterior draws (Pyro's Predictive). */
#ifndef RUGGED_PREDICT_H
#define RUGGED_PREDICT_H

#include "posterior.h"
#include "rugged_model.h"

typedef struct band {
    double mean, q5, q25, q50, q75, q95;
} band;

typedef struct bands {
    size_t n;
    band *mu; /* [n] regression line */
    band *y;  /* [n] new observation */
} bands;

/* Run the model on the predictors x once per draw of p (em_predictive_posterior): the line from
 * the site "mean", a new observation from the site "obs", independently for every row. Memory
 * and work stay bounded on large data: the rows are predicted a chunk at a time (about 4·10^6
 * draws × rows held at once), and a data set of n rows uses at most max(100, 10^8 / n) evenly
 * spaced draws; up to 10^5 rows at 1000 draws this is every draw in one chunk. With
 * common_noise, a new observation is instead mean + sigma·e with one standard-normal e per draw
 * shared by all rows (common random numbers): each row's distribution is the same, but the
 * Monte Carlo error no longer varies from row to row, so bands over a grid are smooth curves. */
em_status predict_bands(const post *p, const rugged_data *x, uint64_t seed, int common_noise, bands *out,
                        em_error *err);
void bands_free(bands *b);

/* A regular grid of ruggedness from 0 to the largest observed value, for each group:
 * rows 0..GRID_N-1 outside Africa, GRID_N..2*GRID_N-1 inside. */
#define GRID_N 61
typedef struct rugged_grid {
    double africa[2 * GRID_N], rugged[2 * GRID_N];
    rugged_data x;
} rugged_grid;
em_status grid_make(const rugged_data *d, rugged_grid *g, em_error *err);
void grid_free(rugged_grid *g);

/* One method's predictions, for predictive.csv. */
typedef struct method_bands {
    const char *method; /* "nuts", "svi" */
    bands rows;         /* per data row */
    bands grid;         /* on the grid */
} method_bands;

/* The isocode of each row of d, read again from the data file with the same rows dropped; NULL
 * when the file has no such column (then predictive.csv leaves it empty). Free with
 * em_csv_table_free. */
em_csv_table *read_isocodes(const char *path, const rugged_data *d);

/* predictive.csv: one line per (method, data row) and per (method, grid point); columns in the
 * example's README. iso may be NULL. */
em_status write_predictive_csv(const char *dir, const rugged_data *d, const em_csv_table *iso, const rugged_grid *g,
                               const method_bands *m, size_t nm, em_error *err);

#endif
