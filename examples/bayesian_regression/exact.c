/* exact.c — see exact.h. */
#include "exact.h"

#include <math.h>
#include <string.h>

#define K 4 /* coefficients */
#define GRID 6001
#define SIG_LO 0.45
#define SIG_HI 1.8
#define LOG_2PI 1.83787706640934548356

/* Cholesky factor of a K×K symmetric positive-definite matrix (lower, in place); 0 if not PD. */
static int cholesky(double A[K][K]) {
    for (int j = 0; j < K; j++) {
        double s = A[j][j];
        for (int k = 0; k < j; k++) s -= A[j][k] * A[j][k];
        if (!(s > 0.0)) return 0;
        A[j][j] = sqrt(s);
        for (int i = j + 1; i < K; i++) {
            double t = A[i][j];
            for (int k = 0; k < j; k++) t -= A[i][k] * A[j][k];
            A[i][j] = t / A[j][j];
        }
    }
    return 1;
}

/* x = (L Lᵀ)⁻¹ b */
static void chol_solve(double L[K][K], const double *b, double *x) {
    double y[K];
    for (int i = 0; i < K; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++) s -= L[i][k] * y[k];
        y[i] = s / L[i][i];
    }
    for (int i = K - 1; i >= 0; i--) {
        double s = y[i];
        for (int k = i + 1; k < K; k++) s -= L[k][i] * x[k];
        x[i] = s / L[i][i];
    }
}

em_status exact_compute(const rugged_data *d, exact_posterior *ex, em_error *err) {
    memset(ex, 0, sizeof *ex);
    const double prior_var[K] = {100.0, 1.0, 1.0, 1.0};
    double XtX[K][K] = {{0}}, Xty[K] = {0}, yty = 0.0;
    for (size_t i = 0; i < d->n; i++) {
        double x[K] = {1.0, d->africa[i], d->rugged[i], d->africa_x_rugged[i]};
        for (int r = 0; r < K; r++) {
            for (int c = 0; c < K; c++) XtX[r][c] += x[r] * x[c];
            Xty[r] += x[r] * d->log_gdp[i];
        }
        yty += d->log_gdp[i] * d->log_gdp[i];
    }
    double n = (double)d->n, log_det_prior = log(100.0), h = (SIG_HI - SIG_LO) / (GRID - 1);
    double logp[GRID];
    double max_logp = -INFINITY;
    for (int g = 0; g < GRID; g++) {
        double sigma = SIG_LO + h * g, s2 = sigma * sigma;
        double L[K][K], b[K], m[K];
        for (int r = 0; r < K; r++) {
            for (int c = 0; c < K; c++) L[r][c] = XtX[r][c] / s2 + (r == c ? 1.0 / prior_var[r] : 0.0);
            b[r] = Xty[r] / s2;
        }
        if (!cholesky(L)) return em_error_set(err, EM_ERR_NUMERIC, "exact posterior: precision not positive definite");
        chol_solve(L, b, m);
        double log_det = 0.0, bm = 0.0;
        for (int r = 0; r < K; r++) {
            log_det += 2.0 * log(L[r][r]);
            bm += b[r] * m[r];
        }
        /* log p(y | sigma) = log N(y; 0, sigma² I + X Σ0 Xᵀ), written with the posterior
         * precision L Lᵀ = Σ0⁻¹ + XᵀX / sigma²; plus log p(sigma) = log(1/10) */
        logp[g] = -0.5 * n * (LOG_2PI + log(s2)) - 0.5 * yty / s2 - 0.5 * log_det_prior - 0.5 * log_det + 0.5 * bm -
                  log(10.0);
        if (logp[g] > max_logp) max_logp = logp[g];
    }
    /* weights (trapezoidal rule), then the mixture moments */
    double wsum = 0.0, Eb[K] = {0}, Ebb[K][K] = {{0}}, Es = 0.0, Ess = 0.0;
    for (int g = 0; g < GRID; g++) {
        double w = exp(logp[g] - max_logp) * ((g == 0 || g == GRID - 1) ? 0.5 : 1.0);
        double sigma = SIG_LO + h * g, s2 = sigma * sigma;
        double L[K][K], b[K], m[K];
        for (int r = 0; r < K; r++) {
            for (int c = 0; c < K; c++) L[r][c] = XtX[r][c] / s2 + (r == c ? 1.0 / prior_var[r] : 0.0);
            b[r] = Xty[r] / s2;
        }
        cholesky(L);
        chol_solve(L, b, m);
        for (int c = 0; c < K; c++) {
            double e[K] = {0}, col[K];
            e[c] = 1.0;
            chol_solve(L, e, col); /* column c of the conditional covariance */
            for (int r = 0; r < K; r++) Ebb[r][c] += w * (col[r] + m[r] * m[c]);
        }
        for (int r = 0; r < K; r++) Eb[r] += w * m[r];
        Es += w * sigma;
        Ess += w * s2;
        wsum += w;
    }
    /* the end points must carry no mass, or the grid cut the posterior off */
    if (exp(logp[0] - max_logp) > 1e-15 || exp(logp[GRID - 1] - max_logp) > 1e-15)
        return em_error_set(err, EM_ERR_NUMERIC, "exact posterior: sigma has mass outside [%g, %g]", SIG_LO, SIG_HI);
    for (int r = 0; r < K; r++) {
        ex->mean[r] = Eb[r] / wsum;
        for (int c = 0; c < K; c++) Ebb[r][c] /= wsum;
    }
    double cov[K][K];
    for (int r = 0; r < K; r++)
        for (int c = 0; c < K; c++) cov[r][c] = Ebb[r][c] - ex->mean[r] * ex->mean[c];
    for (int r = 0; r < K; r++) ex->sd[r] = sqrt(cov[r][r]);
    ex->mean[P_SIGMA] = Es / wsum;
    ex->sd[P_SIGMA] = sqrt(Ess / wsum - ex->mean[P_SIGMA] * ex->mean[P_SIGMA]);
    ex->slope_out_mean = ex->mean[P_BR];
    ex->slope_out_sd = ex->sd[P_BR];
    ex->slope_in_mean = ex->mean[P_BR] + ex->mean[P_BAR];
    ex->slope_in_sd = sqrt(cov[P_BR][P_BR] + cov[P_BAR][P_BAR] + 2.0 * cov[P_BR][P_BAR]);
    ex->log_evidence = max_logp + log(wsum * h);
    return EM_OK;
}
