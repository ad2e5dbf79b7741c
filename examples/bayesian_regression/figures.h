/* figures.h — the tutorials' figures, drawn with gnuplot (pngcairo). Each figure is a .gp
 * script plus whitespace-separated data files in the figures folder; gnuplot runs on each
 * script there. Without gnuplot the scripts and data stay, and the report says how to draw
 * them. */
#ifndef RUGGED_FIGURES_H
#define RUGGED_FIGURES_H

#include "posterior.h"
#include "predict.h"

typedef struct figure_inputs {
    const rugged_data *d;
    const rugged_grid *grid;
    const post *svi;              /* Part 1's AutoDiagonalNormal draws, or NULL */
    const post *svi_mvn;          /* AutoMultivariateNormal draws, or NULL */
    const post *nuts;             /* NUTS draws, or NULL */
    const method_bands *svi_bands;  /* or NULL */
    const method_bands *nuts_bands; /* or NULL */
} figure_inputs;

#define FIGURES_MAX 20
typedef struct figure_list {
    size_t n;
    char name[FIGURES_MAX][48];   /* "regression_line_svi" (files name.gp, name.png) */
    char title[FIGURES_MAX][96];
    int drawn[FIGURES_MAX];       /* 1 when gnuplot drew it */
    size_t ndrawn;
    char gnuplot_error[256];      /* why some were not drawn, or "" */
} figure_list;

/* Write every figure's data and script into dir, then run gnuplot on them. A missing gnuplot
 * is not an error (list->drawn is 0 and gnuplot_error says why). */
em_status figures_make(const char *dir, const figure_inputs *in, figure_list *list, em_error *err);

#endif
