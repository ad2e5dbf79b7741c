/* figures.c — see figures.h. The figures follow the tutorials': Part 1's regression line with
 * its band, the predictive band and the slope densities, Part 2's marginal densities and
 * cross-sections of the posterior. Two-panel figures show the nations outside
 * and inside Africa; colours are Pyro's defaults (blue #1f77b4, orange #ff7f0e). Histograms
 * are normalised to densities; the smooth curves are gnuplot's kernel density estimates with
 * its default (normal-reference) bandwidth. */
#include "figures.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kde2d.h"
#include "util.h"

#define BLUE "#1f77b4"
#define ORANGE "#ff7f0e"
#define GREEN "#2ca02c"

static void add_figure(figure_list *l, const char *name, const char *title) {
    if (l->n >= FIGURES_MAX) return;
    snprintf(l->name[l->n], sizeof l->name[0], "%s", name);
    snprintf(l->title[l->n], sizeof l->title[0], "%s", title);
    l->n++;
}

static em_status put(const char *dir, const char *name, em_buf *b, em_error *err) {
    em_status s = write_buf(dir, name, b, err);
    em_buf_free(b);
    return s;
}

/* Write the gnuplot script b as dir/<name>.gp and list the figure it draws. */
static em_status put_figure(const char *dir, figure_list *list, const char *name, const char *title, em_buf *b,
                            em_error *err) {
    char script[80];
    snprintf(script, sizeof script, "%s.gp", name);
    em_status s = put(dir, script, b, err);
    if (s == EM_OK) add_figure(list, name, title);
    return s;
}

/* ---- data files ---------------------------------------------------------------------------- */

static em_status write_points(const char *dir, const rugged_data *d, em_error *err) {
    for (int k = 0; k < 2; k++) {
        em_buf b = {0};
        em_buf_printf(&b, "# observed nations %s Africa: rugged log_gdp\n", k ? "inside" : "outside");
        for (size_t i = 0; i < d->n; i++)
            if ((d->africa[i] != 0.0) == k) em_buf_printf(&b, "%.6g %.6g\n", d->rugged[i], d->log_gdp[i]);
        em_status s = put(dir, k ? "points_africa.dat" : "points_nonafrica.dat", &b, err);
        if (s != EM_OK) return s;
    }
    return EM_OK;
}

static em_status write_bands(const char *dir, const rugged_grid *g, const method_bands *m, em_error *err) {
    for (int k = 0; k < 2; k++) {
        em_buf b = {0};
        char name[64];
        snprintf(name, sizeof name, "bands_%s_%s.dat", m->method, k ? "africa" : "nonafrica");
        em_buf_printf(&b, "# %s posterior on a grid of ruggedness, nations %s Africa\n"
                          "# rugged mu_mean mu_q5 mu_q95 y_mean y_q5 y_q95\n",
                      m->method, k ? "inside" : "outside");
        for (size_t j = 0; j < GRID_N; j++) {
            size_t i = (size_t)k * GRID_N + j;
            const band *mu = &m->grid.mu[i], *y = &m->grid.y[i];
            em_buf_printf(&b, "%.6g %.6g %.6g %.6g %.6g %.6g %.6g\n", g->rugged[i], mu->mean, mu->q5, mu->q95, y->mean,
                          y->q5, y->q95);
        }
        em_status s = put(dir, name, &b, err);
        if (s != EM_OK) return s;
    }
    return EM_OK;
}

static em_status write_draws(const char *dir, const char *name, const post *p, em_error *err) {
    em_buf b = {0};
    em_buf_printf(&b, "# %s: a bA bR bAR sigma, one draw per line\n", p->label);
    for (size_t r = 0; r < post_rows(p); r++) {
        const double *x = p->x + r * NPAR;
        em_buf_printf(&b, "%.8g %.8g %.8g %.8g %.8g\n", x[0], x[1], x[2], x[3], x[4]);
    }
    return put(dir, name, &b, err);
}

static em_status write_slopes(const char *dir, const char *name, const post *p, em_error *err) {
    em_buf b = {0};
    em_buf_printf(&b, "# %s: slope inside Africa (bR + bAR), outside (bR)\n", p->label);
    for (size_t r = 0; r < post_rows(p); r++) {
        const double *x = p->x + r * NPAR;
        em_buf_printf(&b, "%.8g %.8g\n", x[P_BR] + x[P_BAR], x[P_BR]);
    }
    return put(dir, name, &b, err);
}

static em_status write_traces(const char *dir, const post *p, em_error *err) {
    for (size_t c = 0; c < p->nchains; c++) {
        em_buf b = {0};
        char name[64];
        snprintf(name, sizeof name, "trace_chain_%zu.dat", c + 1);
        em_buf_printf(&b, "# chain %zu: iteration a bA bR bAR sigma\n", c + 1);
        for (size_t i = 0; i < p->ndraws; i++) {
            const double *x = p->x + (c * p->ndraws + i) * NPAR;
            em_buf_printf(&b, "%zu %.8g %.8g %.8g %.8g %.8g\n", i + 1, x[0], x[1], x[2], x[3], x[4]);
        }
        em_status s = put(dir, name, &b, err);
        if (s != EM_OK) return s;
    }
    return EM_OK;
}

/* ---- scripts ------------------------------------------------------------------------------- */

static void header(em_buf *b, const char *name, int w, int h) {
    em_buf_printf(b,
                  "# %s.gp: draw with `gnuplot %s.gp` in this folder (the data files are beside it)\n"
                  "set terminal pngcairo size %d,%d enhanced font \"Sans,11\"\n"
                  "# (the example passes outfile, a temporary name it renames when gnuplot succeeds)\n"
                  "if (!exists(\"outfile\")) outfile = \"%s.png\"\n"
                  "set output outfile\n"
                  "set grid lc rgb \"#dddddd\"\n"
                  "set border lc rgb \"#555555\"\n",
                  name, name, w, h, name);
}

/* F3 (which = 0: 90% band of the regression line) and F4 (which = 1: posterior predictive). */
static void script_bands(em_buf *b, const char *name, const char *method, const char *label, int which,
                         double ylo, double yhi) {
    header(b, name, 1200, 600);
    em_buf_printf(b,
                  "set multiplot layout 1,2 title \"%s (%s)\" font \",15\"\n"
                  "set xlabel \"Terrain Ruggedness Index\"\n"
                  "set ylabel \"log GDP (2000)\"\n"
                  "set yrange [%.2f:%.2f]\n"
                  "set key top right\n"
                  "set style fill transparent solid 0.35 noborder\n",
                  which ? "Posterior predictive distribution with 90% CI" : "Regression line 90% CI", label, ylo, yhi);
    for (int k = 0; k < 2; k++) {
        em_buf_printf(b,
                      "set title \"%s\"\n"
                      "plot \"bands_%s_%s.dat\" u 1:%d:%d w filledcurves lc rgb \"" BLUE "\" title \"%s\", \\\n"
                      "     \"\" u 1:%d w lines lw 2 lc rgb \"" BLUE "\" title \"posterior mean\", \\\n"
                      "     \"points_%s.dat\" u 1:2 w points pt 7 ps 0.8 lc rgb \"" ORANGE "\" title \"observed\"\n",
                      k ? "African Nations" : "Non African Nations", method, k ? "africa" : "nonafrica",
                      which ? 6 : 3, which ? 7 : 4, which ? "90% interval of a new observation" : "90% band of the mean",
                      which ? 5 : 2, k ? "africa" : "nonafrica");
    }
    em_buf_printf(b, "unset multiplot\n");
}

/* range of column col of several draw sets, for a common bin width */
static void range_of(const post *const *p, size_t np, int col, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t k = 0; k < np; k++)
        for (size_t r = 0; r < post_rows(p[k]); r++) {
            double v = p[k]->x[r * NPAR + col];
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
        }
}

/* F5: the slope densities inside and outside Africa. */
static void script_slopes(em_buf *b, const char *name, const char *dat, const post *p) {
    size_t n = post_rows(p);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t r = 0; r < n; r++) {
        const double *x = p->x + r * NPAR;
        double v[2] = {x[P_BR] + x[P_BAR], x[P_BR]};
        for (int k = 0; k < 2; k++) {
            if (v[k] < lo) lo = v[k];
            if (v[k] > hi) hi = v[k];
        }
    }
    header(b, name, 1000, 600);
    em_buf_printf(b,
                  "set title \"Density of Slope : log(GDP) vs. Terrain Ruggedness\\n{/*0.85 %s, %zu draws}\" "
                  "font \",14\"\n"
                  "set xlabel \"Slope of regression line\"\n"
                  "set ylabel \"Density\"\n"
                  "set key top left\n"
                  "N = %zu.0\n"
                  "w = %.6g\n"
                  "bin(x) = w * floor(x / w) + w / 2\n"
                  "set style fill transparent solid 0.3 noborder\n"
                  "set arrow from 0, graph 0 to 0, graph 1 nohead dt 2 lc rgb \"#888888\"\n"
                  "plot \"%s\" u (bin($1)):(1.0 / (N * w)) smooth frequency w boxes lc rgb \"" BLUE "\" notitle, \\\n"
                  "     \"\" u 1:(1.0 / N) smooth kdensity w lines lw 2 lc rgb \"" BLUE "\" title \"African nations\", \\\n"
                  "     \"\" u (bin($2)):(1.0 / (N * w)) smooth frequency w boxes lc rgb \"" ORANGE "\" notitle, \\\n"
                  "     \"\" u 2:(1.0 / N) smooth kdensity w lines lw 2 lc rgb \"" ORANGE "\" title \"Non-African nations\"\n",
                  p->label, n, n, (hi - lo) / 40.0, dat);
}

/* F7 / F9: marginal densities of each parameter, a guide against NUTS. */
static void script_marginals(em_buf *b, const char *name, const char *title, const post *svi, const char *svi_dat,
                             const char *svi_label, const post *nuts) {
    header(b, name, 1200, 800);
    em_buf_printf(b,
                  "set multiplot layout 2,3 title \"%s\" font \",15\"\n"
                  "set style fill transparent solid 0.3 noborder\n"
                  "set ylabel \"density\"\n"
                  "Nn = %zu.0\nNs = %zu.0\n",
                  title, post_rows(nuts), post_rows(svi));
    const post *both[2] = {nuts, svi};
    for (int q = 0; q < NPAR; q++) {
        double lo, hi;
        range_of(both, 2, q, &lo, &hi);
        em_buf_printf(b,
                      "set title \"%s\" font \",13\"\n"
                      "w = %.6g\n"
                      "bin(x) = w * floor(x / w) + w / 2\n"
                      "set key off\n"
                      "plot \"draws_nuts.dat\" u (bin($%d)):(1.0 / (Nn * w)) smooth frequency w boxes lc rgb \"" ORANGE
                      "\" notitle, \\\n"
                      "     \"\" u %d:(1.0 / Nn) smooth kdensity w lines lw 2 lc rgb \"" ORANGE "\" title \"NUTS\", \\\n"
                      "     \"%s\" u (bin($%d)):(1.0 / (Ns * w)) smooth frequency w boxes lc rgb \"" BLUE "\" notitle, \\\n"
                      "     \"\" u %d:(1.0 / Ns) smooth kdensity w lines lw 2 lc rgb \"" BLUE "\" title \"%s\"\n",
                      param_names[q], (hi - lo) / 40.0, q + 1, q + 1,
                      svi_dat, q + 1, q + 1, svi_label);
    }
    /* the sixth panel holds the legend */
    em_buf_printf(b,
                  "unset title\nunset xlabel\nunset ylabel\nunset border\nunset tics\nunset grid\n"
                  "set key center center Left reverse box spacing 1.6 width 1 font \",12\"\n"
                  "set xrange [0:1]\nset yrange [0:1]\n"
                  "# two lines outside the range: only their key entries show\n"
                  "plot 2 w lines lw 2 lc rgb \"" ORANGE "\" title \"NUTS (%zu draws)\", \\\n"
                  "     2 w lines lw 2 lc rgb \"" BLUE "\" title \"%s (%zu draws)\"\n"
                  "unset multiplot\n",
                  post_rows(nuts), svi_label, post_rows(svi));
}

/* The cross-sections' axes, as in the tutorial: (bA, bR) and (bR, bAR). */
static const int cs_px[2] = {P_BA, P_BR}, cs_py[2] = {P_BR, P_BAR};
static const double cs_lim[2][4] = {{-2.5, -1.2, -0.5, 0.1}, {-0.45, 0.05, -0.15, 0.8}};

/* F8, F10, F11: joint densities of two pairs of parameters, one method shaded, the other as
 * contour lines. Grid files are kde_<tag>_<pair>.dat. */
static void script_cross(em_buf *b, const char *name, const char *title, const char *fill_tag, const char *fill_label,
                         const char *line_tag, const char *line_label) {
    header(b, name, 1200, 600);
    em_buf_printf(b,
                  "# contour lines of the line method, computed by gnuplot into temporary tables\n"
                  "set contour base\nunset surface\nset view map\nset cntrparam levels 7\n");
    for (int k = 0; k < 2; k++)
        em_buf_printf(b, "set table $C%d\nsplot \"kde_%s_%d.dat\" u 1:2:3 w lines\nunset table\n", k, line_tag, k + 1);
    em_buf_printf(b,
                  "unset contour\n"
                  "set palette defined (0 \"white\", 1 \"%s\")\n"
                  "unset colorbox\n"
                  "set multiplot layout 1,2 title \"%s\" font \",15\"\n"
                  "set key top right opaque box\n",
                  !strcmp(fill_tag, "nuts") ? ORANGE : GREEN, title);
    for (int k = 0; k < 2; k++) {
        em_buf_printf(b,
                      "set xlabel \"%s\"\nset ylabel \"%s\"\n"
                      "set xrange [%g:%g]\nset yrange [%g:%g]\n"
                      "plot \"kde_%s_%d.dat\" u 1:2:3 w image notitle, \\\n"
                      "     keyentry w boxes fs solid 1.0 fc rgb \"%s\" title \"%s\", \\\n"
                      "     $C%d u 1:2 w lines lw 1.5 lc rgb \"" BLUE "\" title \"%s\"\n",
                      param_names[cs_px[k]], param_names[cs_py[k]], cs_lim[k][0], cs_lim[k][1], cs_lim[k][2],
                      cs_lim[k][3], fill_tag, k + 1, !strcmp(fill_tag, "nuts") ? ORANGE : GREEN, fill_label, k,
                      line_label);
    }
    em_buf_printf(b, "unset multiplot\n");
}

/* A round tick step (1, 2 or 5 times a power of ten) giving about four ticks over range. */
static double tick_step(double range) {
    if (!(range > 0.0)) return 1.0;
    double raw = range / 4.0, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0);
}

/* Trace plots of the NUTS chains, one panel per parameter, iterations labelled on the last. */
static void script_traces(em_buf *b, const post *p) {
    header(b, "trace_nuts", 1000, 800);
    em_buf_printf(b,
                  "set multiplot layout %d,1 title \"NUTS trace plots (draws after warmup, one colour per chain)\" "
                  "font \",15\"\n"
                  "set lmargin 12\nset tmargin 0.5\nset bmargin 1\n"
                  "C = %zu\n",
                  NPAR, p->nchains);
    static const char *const colours[] = {BLUE, ORANGE, GREEN, "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
    em_buf_printf(b, "array colour[8] = [");
    for (int k = 0; k < 8; k++) em_buf_printf(b, "%s\"%s\"", k ? ", " : "", colours[k]);
    em_buf_printf(b, "]\n");
    const post *one[1] = {p};
    for (int q = 0; q < NPAR; q++) {
        double lo, hi;
        range_of(one, 1, q, &lo, &hi);
        if (q == 0) em_buf_printf(b, "set tmargin 2.5\n");
        if (q == 1) em_buf_printf(b, "set tmargin 0.5\n");
        if (q == NPAR - 1) em_buf_printf(b, "set bmargin 3\nset format x \"%%g\"\nset xlabel \"iteration\"\n");
        else em_buf_printf(b, "set format x \"\"\nunset xlabel\n");
        em_buf_printf(b,
                      "set ylabel \"%s\"\n"
                      "set ytics %.6g\n"
                      "set key %s\n"
                      "plot for [k=1:C] sprintf(\"trace_chain_%%d.dat\", k) u 1:%d w lines lw 0.5 "
                      "lc rgb colour[(k - 1) %% 8 + 1] title sprintf(\"chain %%d\", k)\n",
                      param_names[q], tick_step(hi - lo), q == 0 ? "outside top right horizontal" : "off", q + 2);
    }
    em_buf_printf(b, "unset multiplot\n");
}

/* ---- running gnuplot ----------------------------------------------------------------------- */

/* Run gnuplot on dir/<name>.gp with dir as the working directory, drawing into a temporary file
 * that replaces <name>.png only when gnuplot succeeds (so the PNG appears atomically); its
 * messages go to dir/gnuplot.log. Returns 0 on success, 127 when gnuplot cannot be run, else
 * gnuplot's status. */
static int run_gnuplot(const char *dir, const char *name) {
    char script[80], tmp[96], png[80], arg[128];
    snprintf(script, sizeof script, "%s.gp", name);
    snprintf(png, sizeof png, "%s.png", name);
    snprintf(tmp, sizeof tmp, "%s.png.tmp.%ld", name, (long)getpid());
    snprintf(arg, sizeof arg, "outfile = \"%s\"", tmp);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 127;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        int fd = open("gnuplot.log", O_WRONLY | O_CREAT | O_APPEND, 0666);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execlp("gnuplot", "gnuplot", "-e", arg, script, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 127;
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    char *from = path_join(dir, tmp), *to = path_join(dir, png);
    if (from && to) {
        if (rc == 0 && rename(from, to) != 0) rc = 126;
        if (rc != 0) remove(from);
    }
    free(from);
    free(to);
    return rc;
}

em_status figures_make(const char *dir, const figure_inputs *in, figure_list *list, em_error *err) {
    memset(list, 0, sizeof *list);
    em_status s = write_points(dir, in->d, err);
    if (s != EM_OK) return s;

    /* a common y range for every two-panel figure: the data and the widest band */
    double ylo = INFINITY, yhi = -INFINITY;
    for (size_t i = 0; i < in->d->n; i++) {
        ylo = fmin(ylo, in->d->log_gdp[i]);
        yhi = fmax(yhi, in->d->log_gdp[i]);
    }
    const method_bands *mbs[2] = {in->svi_bands, in->nuts_bands};
    for (int m = 0; m < 2; m++)
        if (mbs[m])
            for (size_t i = 0; i < mbs[m]->grid.n; i++) {
                ylo = fmin(ylo, mbs[m]->grid.y[i].q5);
                yhi = fmax(yhi, mbs[m]->grid.y[i].q95);
            }
    ylo = floor(ylo * 2.0 - 0.5) / 2.0;
    yhi = ceil(yhi * 2.0 + 0.5) / 2.0;

    const post *posts[2] = {in->svi, in->nuts};
    const char *labels[2] = {"SVI, AutoDiagonalNormal", "NUTS"};
    for (int m = 0; m < 2 && s == EM_OK; m++) {
        if (!mbs[m] || !posts[m]) continue;
        const char *meth = mbs[m]->method;
        if ((s = write_bands(dir, in->grid, mbs[m], err)) != EM_OK) break;
        char name[48], dat[64], title[96];
        em_buf b = {0};
        snprintf(name, sizeof name, "regression_line_%s", meth);
        script_bands(&b, name, meth, labels[m], 0, ylo, yhi);
        snprintf(title, sizeof title, "Part 1: regression line with its 90%% band (%s)", labels[m]);
        if ((s = put_figure(dir, list, name, title, &b, err)) != EM_OK) break;

        snprintf(name, sizeof name, "predictive_%s", meth);
        script_bands(&b, name, meth, labels[m], 1, ylo, yhi);
        snprintf(title, sizeof title, "Part 1: posterior predictive 90%% interval (%s)", labels[m]);
        if ((s = put_figure(dir, list, name, title, &b, err)) != EM_OK) break;

        snprintf(dat, sizeof dat, "slopes_%s.dat", meth);
        if ((s = write_slopes(dir, dat, posts[m], err)) != EM_OK) break;
        snprintf(name, sizeof name, "slope_density_%s", meth);
        script_slopes(&b, name, dat, posts[m]);
        snprintf(title, sizeof title, "Part 1: slope inside vs outside Africa (%s)", labels[m]);
        if ((s = put_figure(dir, list, name, title, &b, err)) != EM_OK) break;
    }

    if (s == EM_OK && in->nuts) {
        em_buf b = {0};
        s = write_draws(dir, "draws_nuts.dat", in->nuts, err);
        if (s == EM_OK && in->svi && (s = write_draws(dir, "draws_svi_diag.dat", in->svi, err)) == EM_OK) {
            script_marginals(&b, "marginals_diag_vs_nuts",
                             "Marginal posterior densities: SVI (AutoDiagonalNormal) vs NUTS", in->svi,
                             "draws_svi_diag.dat", "SVI (DiagNormal)", in->nuts);
            s = put_figure(dir, list, "marginals_diag_vs_nuts",
                           "Part 2: marginals, SVI (AutoDiagonalNormal) vs NUTS", &b, err);
        }
        if (s == EM_OK && in->svi_mvn && (s = write_draws(dir, "draws_svi_mvn.dat", in->svi_mvn, err)) == EM_OK) {
            script_marginals(&b, "marginals_mvn_vs_nuts",
                             "Marginal posterior densities: SVI (AutoMultivariateNormal) vs NUTS", in->svi_mvn,
                             "draws_svi_mvn.dat", "SVI (Multivariate Normal)", in->nuts);
            s = put_figure(dir, list, "marginals_mvn_vs_nuts",
                           "Part 2: marginals, SVI (AutoMultivariateNormal) vs NUTS", &b, err);
        }
        /* cross-sections: densities on grids, then three figures */
        const post *kp[3] = {in->nuts, in->svi, in->svi_mvn};
        const char *ktag[3] = {"nuts", "diag", "mvn"};
        int kde_ok = 1;
        for (int m = 0; m < 3 && s == EM_OK && kde_ok; m++)
            for (int k = 0; k < 2 && s == EM_OK && kp[m] && kde_ok; k++) {
                char dat[48];
                em_error kerr = {0};
                snprintf(dat, sizeof dat, "kde_%s_%d.dat", ktag[m], k + 1);
                s = kde2d_write(dir, dat, kp[m], cs_px[k], cs_py[k], cs_lim[k][0], cs_lim[k][1], cs_lim[k][2],
                                cs_lim[k][3], &kerr);
                if (s == EM_ERR_NUMERIC) {
                    /* degenerate draws (a stuck chain): the report's diagnostics say so already */
                    fprintf(stderr, "rugged: cross-section figures skipped: %s\n", kerr.msg);
                    s = EM_OK;
                    kde_ok = 0;
                } else if (s != EM_OK) {
                    em_error_set(err, s, "%s", kerr.msg);
                }
            }
        if (s == EM_OK && kde_ok && in->svi) {
            script_cross(&b, "cross_sections_diag_vs_nuts", "Cross-sections of the posterior: NUTS vs SVI (DiagNormal)",
                         "nuts", "NUTS", "diag", "SVI (DiagNormal)");
            s = put_figure(dir, list, "cross_sections_diag_vs_nuts",
                           "Part 2: joint densities, NUTS vs SVI (AutoDiagonalNormal)", &b, err);
        }
        if (s == EM_OK && kde_ok && in->svi && in->svi_mvn) {
            script_cross(&b, "cross_sections_diag_vs_mvn",
                         "Cross-sections of the posterior: SVI (Multivariate Normal) vs SVI (DiagNormal)", "mvn",
                         "SVI (Multivariate Normal)", "diag", "SVI (DiagNormal)");
            s = put_figure(dir, list, "cross_sections_diag_vs_mvn",
                           "Part 2: joint densities, full-rank vs diagonal guide", &b, err);
        }
        if (s == EM_OK && kde_ok && in->svi_mvn) {
            script_cross(&b, "cross_sections_mvn_vs_nuts",
                         "Cross-sections of the posterior: NUTS vs SVI (Multivariate Normal)", "nuts", "NUTS", "mvn",
                         "SVI (Multivariate Normal)");
            s = put_figure(dir, list, "cross_sections_mvn_vs_nuts",
                           "Part 2: joint densities, NUTS vs SVI (AutoMultivariateNormal)", &b, err);
        }
        if (s == EM_OK && (s = write_traces(dir, in->nuts, err)) == EM_OK) {
            script_traces(&b, in->nuts);
            s = put_figure(dir, list, "trace_nuts",
                           "trace plots of the NUTS chains (not in the tutorials)", &b, err);
        }
    }
    if (s != EM_OK) return s;

    /* draw them; the first failure to start gnuplot stops trying */
    char *log = path_join(dir, "gnuplot.log");
    if (log) {
        remove(log);
        free(log);
    }
    for (size_t i = 0; i < list->n; i++) {
        int rc = run_gnuplot(dir, list->name[i]);
        if (rc == 127) {
            snprintf(list->gnuplot_error, sizeof list->gnuplot_error, "gnuplot is not on PATH");
            break;
        }
        if (rc == 0) {
            list->drawn[i] = 1;
            list->ndrawn++;
        } else if (!list->gnuplot_error[0]) {
            snprintf(list->gnuplot_error, sizeof list->gnuplot_error, "gnuplot failed on %s.gp; see %s/gnuplot.log",
                     list->name[i], dir);
        }
    }
    /* keep the log only when gnuplot had something to say */
    if ((log = path_join(dir, "gnuplot.log"))) {
        FILE *f = fopen(log, "rb");
        if (f) {
            int empty = fgetc(f) == EOF;
            fclose(f);
            if (empty) remove(log);
        }
        free(log);
    }
    return EM_OK;
}
