/* kde2d.h — a two-dimensional Gaussian kernel density estimate on a regular grid, for the
 * cross-section figures (the tutorial draws them with seaborn's kdeplot, whose kernel is the
 * same: a Gaussian with the sample covariance scaled by Scott's factor n^(-1/6) squared). */
#ifndef RUGGED_KDE2D_H
#define RUGGED_KDE2D_H

#include "posterior.h"

#define KDE_GRID 50

/* The density of parameters (px, py) of p on a KDE_GRID x KDE_GRID grid over [xlo, xhi] x
 * [ylo, yhi], written to dir/name as gnuplot grid data ("x y density" lines, a blank line
 * after each x). At most 2000 draws are used (evenly spaced), which is plenty for contours. */
em_status kde2d_write(const char *dir, const char *name, const post *p, int px, int py, double xlo, double xhi,
                      double ylo, double yhi, em_error *err);

#endif
