/* kde2d.c — see kde2d.h. Scott (1992), "Multivariate Density Estimation", §6.3: bandwidth
 * matrix H = n^(-2/(d+4)) Σ with d = 2. */
#include "kde2d.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

em_status kde2d_write(const char *dir, const char *name, const post *p, int px, int py, double xlo, double xhi,
                      double ylo, double yhi, em_error *err) {
    size_t rows = post_rows(p), step = rows > 2000 ? (rows + 1999) / 2000 : 1, n = 0;
    if (rows < 3) return em_error_set(err, EM_ERR_ARG, "%s: %zu draws are too few for a density", name, rows);
    double *x = malloc(2 * rows * sizeof(double));
    if (!x) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
    double *y = x + rows;
    for (size_t r = 0; r < rows; r += step, n++) {
        x[n] = p->x[r * NPAR + px];
        y[n] = p->x[r * NPAR + py];
    }
    /* sample covariance, then H = f² Σ with f = n^(-1/6) */
    double mx = em_mean(x, n), my = em_mean(y, n), sxx = 0, syy = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    double f2 = pow((double)n, -1.0 / 3.0);
    double hxx = f2 * sxx / (double)(n - 1), hyy = f2 * syy / (double)(n - 1), hxy = f2 * sxy / (double)(n - 1);
    double det = hxx * hyy - hxy * hxy;
    if (!(det > 0.0)) {
        free(x);
        return em_error_set(err, EM_ERR_NUMERIC, "%s: the draws of the two parameters are degenerate", name);
    }
    /* inverse of H, and the normalising constant of one kernel */
    double ixx = hyy / det, iyy = hxx / det, ixy = -hxy / det, norm = 1.0 / (2.0 * 3.14159265358979323846 * sqrt(det));
    em_buf b = {0};
    em_buf_printf(&b, "# %s: kernel density of (%s, %s) on a %dx%d grid: x y density\n", p->label, param_names[px],
                  param_names[py], KDE_GRID, KDE_GRID);
    for (int i = 0; i < KDE_GRID; i++) {
        double gx = xlo + (xhi - xlo) * i / (KDE_GRID - 1);
        for (int j = 0; j < KDE_GRID; j++) {
            double gy = ylo + (yhi - ylo) * j / (KDE_GRID - 1), s = 0.0;
            for (size_t k = 0; k < n; k++) {
                double dx = gx - x[k], dy = gy - y[k];
                s += exp(-0.5 * (ixx * dx * dx + 2.0 * ixy * dx * dy + iyy * dy * dy));
            }
            em_buf_printf(&b, "%.6g %.6g %.6g\n", gx, gy, norm * s / (double)n);
        }
        em_buf_append(&b, "\n", 1);
    }
    free(x);
    em_status s = write_buf(dir, name, &b, err);
    em_buf_free(&b);
    return s;
}
