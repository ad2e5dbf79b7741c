/* coef_figure.c — the coefficient-interval figure of a fitted regression: each population-level
 * coefficient's posterior median with its 50% and 95% central intervals, one line per
 * coefficient, as bayesplot's mcmc_intervals draws brms's mcmc_plot(fit, variable = "^b_",
 * regex = TRUE) (there with a 90% outer interval; 95% here, the interval of brms's summary).
 * See formula.h. */
#include "internal/formula_impl.h"
#include "internal/text.h"

#include "ember/diagnostics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

em_status em_regression_coef_figure(const em_regression *r, const em_posterior *fit, const char *dir, const char *name,
                                    em_error *err) {
    if (!r || !fit || !dir || !name) return em_error_set(err, EM_ERR_ARG, "em_regression_coef_figure: NULL argument");
    const em_design *d = em_regression_design_of(r);
    size_t S = em_posterior_num_chains(fit) * em_posterior_num_draws(fit);
    if (S == 0) return em_error_set(err, EM_ERR_ARG, "em_regression_coef_figure: the fit has no draws");
    /* the intercept is b_Intercept, or an ordinal model's thresholds b_Intercept[1], [2], ... */
    size_t nthr = 0;
    if (d->intercept && em_posterior_find(fit, "b_Intercept", NULL) < 0) {
        char t[48];
        for (;;) {
            snprintf(t, sizeof t, "b_Intercept[%zu]", nthr + 1);
            if (em_posterior_find(fit, t, NULL) < 0) break;
            nthr++;
        }
    }
    size_t nint = d->intercept ? (nthr ? nthr : 1) : 0, K = d->P + nint;
    if (K == 0) return em_error_set(err, EM_ERR_ARG, "em_regression_coef_figure: the model has no population-level effects");
    double *x = malloc(S * sizeof *x);
    if (!x) return em_error_set(err, EM_ERR_NOMEM, "em_regression_coef_figure: out of memory");
    em_buf dat = {0}, gp = {0}, nm = {0};
    em_status s = EM_OK;
    em_buf_printf(&dat, "# line coefficient median q2.5 q25 q75 q97.5 (the first coefficient on the top line)\n");
    for (size_t k = 0; s == EM_OK && k < K; k++) {
        nm.len = 0;
        em_buf_printf(&nm, "b_");
        if (k < nint && nthr) em_buf_printf(&nm, "Intercept[%zu]", k + 1);
        else if (k < nint) em_buf_printf(&nm, "Intercept");
        else em_brms_rename(d->names[k - nint], &nm);
        em_buf_append(&nm, "", 1);
        if (nm.failed) s = em_error_set(err, EM_ERR_NOMEM, "em_regression_coef_figure: out of memory");
        else s = em_posterior_draws(fit, nm.data, x, err);
        if (s == EM_OK)
            em_buf_printf(&dat, "%zu %s %.10g %.10g %.10g %.10g %.10g\n", K - k, nm.data, em_quantile(x, S, 0.5),
                          em_quantile(x, S, 0.025), em_quantile(x, S, 0.25), em_quantile(x, S, 0.75),
                          em_quantile(x, S, 0.975));
    }
    free(x);
    em_buf_free(&nm);
    em_buf_printf(&gp,
                  "# %s.gp: the population-level coefficients' posterior medians with 50%% (thick) and 95%% (thin)\n"
                  "# central intervals (bayesplot's mcmc_intervals); draw with `gnuplot %s.gp` in this folder.\n"
                  "if (!exists(\"outfile\")) outfile = \"%s.png\"\n"
                  "set terminal pngcairo noenhanced size 720,%zu\nset output outfile\n"
                  "set title \"Population-level effects: medians, 50%% and 95%% intervals\"\n"
                  "set xlabel \"value\"\nset yrange [0.5:%zu.5]\nset grid xtics\nunset key\n"
                  "set arrow from first 0, graph 0 to first 0, graph 1 nohead dt 2 lc rgb \"#999999\"\n"
                  "plot \"%s.dat\" u 4:1:($7-$4):(0):ytic(2) w vectors nohead lw 1.5 lc rgb \"#6baed6\", \\\n"
                  "     \"%s.dat\" u 5:1:($6-$5):(0) w vectors nohead lw 6 lc rgb \"#2171b5\", \\\n"
                  "     \"%s.dat\" u 3:1 w points pt 7 ps 1.4 lc rgb \"#08306b\"\n",
                  name, name, name, 160 + 40 * K, K, name, name, name);
    if (s == EM_OK) s = em_text_write_in_dir(dir, name, ".dat", &dat, "em_regression_coef_figure", err);
    if (s == EM_OK) s = em_text_write_in_dir(dir, name, ".gp", &gp, "em_regression_coef_figure", err);
    em_buf_free(&dat);
    em_buf_free(&gp);
    return s;
}
