/* rugged.c — Pyro's Bayesian-regression tutorials (Parts 1 and 2) in C with Ember.
 *
 * Does log GDP per capita fall with terrain ruggedness, and differently inside Africa? The
 * model (rugged_model.c) is a linear regression with an interaction; this program fits it by
 * stochastic variational inference with three guides and by NUTS, prints the posterior
 * summaries, the slopes inside and outside Africa and a comparison of the methods, checks the
 * calibration of the predictive intervals by cross-validation, and writes CmdStan-layout
 * CSV files and gnuplot figures. Run with --help for the options.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crossval.h"
#include "chains.h"
#include "cli.h"
#include "compare.h"
#include "exact.h"
#include "figures.h"
#include "fits.h"
#include "predict.h"
#include "report.h"
#include "rugged_model.h"
#include "sbc.h"
#include "util.h"

/* Everything one run holds, filled phase by phase. */
typedef struct run {
    rugged_options o;
    rugged_data d;
    char *figdir;
    em_error err;
    exact_posterior ex;
    int have_exact;
    svi_fit fits[3]; /* Part 1's AutoDiagonalNormal, Part 2's hand guide and AutoMultivariateNormal */
    em_summary *sums[3];
    int nfits;
    em_posterior *nuts_post;
    post nuts;
    em_summary *nuts_sum;
    size_t chains_written, chains_complete;
    rugged_grid grid;
    method_bands mb[2]; /* predictive bands of each posterior ("svi", "nuts") */
    int nmb;
    coverage cov;
    figure_list figs;
    double t_svi, t_nuts, t_fig, t_cal, t_loo;
} run;

/* The three SVI fits of the tutorials, each followed by its tables; Part 1's draws are written
 * out as "the SVI posterior". */
static em_status run_svi(run *r) {
    const rugged_options *o = &r->o;
    int part1_steps = o->svi_steps ? o->svi_steps : 1500, part2_steps = o->svi_steps ? o->svi_steps : 5000;
    const svi_spec specs[3] = {
        {.name = "AutoDiagonalNormal", .kind = EM_AUTO_DIAGONAL_NORMAL, .init = EM_INIT_MEDIAN, .lr = 0.03,
         .steps = part1_steps, .log_every = 100, .per_datum = 1, .ndraws = 800},
        {.name = "hand-written mean-field guide", .kind = GUIDE_HAND, .lr = 0.05, .steps = part2_steps,
         .log_every = 500, .ndraws = 1000},
        {.name = "AutoMultivariateNormal", .kind = EM_AUTO_MULTIVARIATE_NORMAL, .init = EM_INIT_MEAN, .lr = 0.01,
         .steps = part2_steps, .log_every = 500, .ndraws = 1000},
    };
    const char *titles[3] = {"Part 1: SVI with AutoDiagonalNormal", "Part 2: SVI with a hand-written mean-field guide",
                             "Part 2: SVI with AutoMultivariateNormal"};
    for (int k = 0; k < 3; k++) {
        section(titles[k]);
        printf("Adam (lr %g), Trace ELBO with one particle, %d steps.\nloss = -ELBO%s:\n", specs[k].lr,
               specs[k].steps, specs[k].per_datum ? " / number of rows, as Part 1 prints it" : "");
        progress("[svi] %s: %d steps", specs[k].name, specs[k].steps);
        em_status s = svi_fit_run(&specs[k], &r->d, em_seed_mix(o->seed, 10 + (uint64_t)k), stdout, &r->fits[k],
                                  &r->err);
        if (s != EM_OK) return s;
        r->nfits++;
        if ((s = post_summarize(&r->fits[k].draws, &r->sums[k], &r->err)) != EM_OK) return s;
        print_svi_fit(&specs[k], &r->fits[k], r->sums[k], r->have_exact ? &r->ex : NULL);
        if (k > 0) continue;
        printf("\n");
        print_slopes(stdout, &r->fits[0].draws);
        /* CmdStan's variational layout (lp__, log_p__, log_g__, then the mean row), which
         * rstan::read_stan_csv and posterior read */
        char path[4096];
        em_posterior *sp = r->fits[0].posterior;
        s = em_posterior_set_labels(sp, "rugged_model (Ember, examples/bayesian_regression)", o->data, &r->err);
        if (s == EM_OK) s = em_posterior_write_cmdstan(sp, o->out, "svi_draws", NULL, NULL, &r->err);
        snprintf(path, sizeof path, "%s/summary_svi.csv", o->out);
        if (s == EM_OK) s = em_posterior_write_summary(sp, path, &r->err);
        if (s != EM_OK) return s;
    }
    return EM_OK;
}

/* NUTS, its files, summary and diagnostics. EM_ERR_INTERRUPTED after Ctrl-C, with whatever
 * was drawn written out and summarised. */
static em_status run_nuts(run *r) {
    const rugged_options *o = &r->o;
    section("Part 2: NUTS");
    printf("%d chain%s x %d draws after %d warmup iterations; diagonal metric, target accept_stat__ 0.8,\n"
           "maximum tree depth 10 (Stan's defaults).\n",
           o->chains, o->chains > 1 ? "s" : "", o->samples, o->warmup);
    progress("[nuts] %d chains x (%d warmup + %d draws); Ctrl-C (or SIGTERM, SIGHUP) stops them and keeps the draws made", o->chains,
             o->warmup, o->samples);
    nuts_spec ns = {.chains = o->chains, .samples = o->samples, .warmup = o->warmup,
                    .seed = em_seed_mix(o->seed, 20), .progress = !o->quiet, .handle_sigint = 1};
    em_status s = nuts_run(&r->d, &ns, &r->nuts_post, &r->err);
    if (s != EM_OK && s != EM_ERR_INTERRUPTED) return s;
    if (s == EM_ERR_INTERRUPTED) {
        /* Writing and summarising a long run's draws takes seconds (formatting them, ESS by FFT):
         * say so, rather than look hung, and say how to skip it (the handler is gone now). */
        const em_mcmc_result *res = em_posterior_mcmc(r->nuts_post);
        size_t made = 0;
        for (size_t c = 0; c < res->num_chains; c++) made += res->chains[c].num_draws;
        progress("[nuts] interrupted: writing the %zu draws made to %s/ and summarising them (signal again to quit "
                 "at once)", made, o->out);
    }
    em_status ws = write_nuts_chains(o->out, r->nuts_post, o->data, &r->chains_written, &r->chains_complete, &r->err);
    if (ws != EM_OK) return ws;
    if (s == EM_ERR_INTERRUPTED) {
        fprintf(stderr, "rugged: interrupted during NUTS; %zu chain file%s written to %s/ (%zu complete)\n",
                r->chains_written, r->chains_written == 1 ? "" : "s", o->out, r->chains_complete);
        if (r->chains_written == 0) return s;
    }
    em_status ps = post_from_posterior(r->nuts_post, "NUTS", &r->nuts, &r->err);
    if (ps == EM_OK) ps = em_posterior_summary(r->nuts_post, &r->nuts_sum, &r->err);
    if (ps != EM_OK) return s == EM_OK ? ps : s;
    if (s == EM_ERR_INTERRUPTED)
        printf("Interrupted: summary of the first %zu draws of %zu chain%s.\n", r->nuts.ndraws, r->nuts.nchains,
               r->nuts.nchains == 1 ? "" : "s");
    printf("\n");
    print_summary(stdout, r->nuts_sum, 1);
    printf("\n");
    print_nuts_diagnostics(stdout, em_posterior_mcmc(r->nuts_post));
    printf("\n");
    print_slopes(stdout, &r->nuts);
    char path[4096];
    snprintf(path, sizeof path, "%s/summary_nuts.csv", o->out);
    ps = em_posterior_write_summary(r->nuts_post, path, &r->err);
    return s == EM_OK ? ps : s;
}

/* The methods side by side, next to the exact posterior, and the answer in words. */
static void run_comparison(run *r) {
    if (r->nfits + (r->nuts_sum != NULL) > 1) {
        section("SVI vs NUTS");
        const post *ps[4];
        const em_summary *ss[4];
        size_t n = 0;
        if (r->nuts_sum) {
            ps[n] = &r->nuts;
            ss[n++] = r->nuts_sum;
        }
        for (int k = 0; k < r->nfits; k++) {
            ps[n] = &r->fits[k].draws;
            ss[n++] = r->sums[k];
        }
        if (r->have_exact)
            printf("exact: this model's posterior computed without sampling (Normal given sigma, sigma\n"
                   "integrated out numerically); NUTS and SVI should match it up to Monte Carlo error.\n\n");
        print_comparison(ps, ss, n, r->have_exact ? &r->ex : NULL);
        if (r->nfits == 3)
            printf("\nThe mean-field guides (SVI diag, SVI hand) give standard deviations that are too small:\n"
                   "a product of independent Normals cannot follow the posterior's correlations (a with bR,\n"
                   "bA with bAR). The full-rank guide (SVI MVN) and NUTS match the exact values.\n");
    }
    if (r->nfits || r->nuts_sum)
        print_answer(r->nuts_sum ? &r->nuts : &r->fits[0].draws, r->nfits ? &r->fits[0].draws : NULL);
}

/* Regression line and predictive bands per data row and on a grid, from each posterior. */
static em_status run_predictive(run *r) {
    if (!r->nfits && !r->nuts_sum) return EM_OK;
    em_status s = grid_make(&r->d, &r->grid, &r->err);
    for (int m = 0; m < 2 && s == EM_OK; m++) {
        const post *p = m == 0 ? (r->nfits ? &r->fits[0].draws : NULL) : (r->nuts_sum ? &r->nuts : NULL);
        if (!p) continue;
        method_bands *b = &r->mb[r->nmb++];
        memset(b, 0, sizeof *b);
        b->method = m == 0 ? "svi" : "nuts";
        s = predict_bands(p, &r->d, em_seed_mix(r->o.seed, 30 + (uint64_t)m), 0, &b->rows, &r->err);
        if (s == EM_OK) /* smooth curves for the figures */
            s = predict_bands(p, &r->grid.x, em_seed_mix(r->o.seed, 40 + (uint64_t)m), 1, &b->grid, &r->err);
    }
    if (s == EM_OK) {
        em_csv_table *iso = read_isocodes(r->o.data, &r->d);
        s = write_predictive_csv(r->o.out, &r->d, iso, &r->grid, r->mb, (size_t)r->nmb, &r->err);
        em_csv_table_free(iso);
    }
    return s;
}

static em_status run_figures(run *r) {
    if (!r->o.figures || !r->nmb) return EM_OK;
    progress("[figures] writing gnuplot scripts and drawing them");
    figure_inputs in = {.d = &r->d,
                        .grid = &r->grid,
                        .svi = r->nfits ? &r->fits[0].draws : NULL,
                        .svi_mvn = r->nfits > 2 ? &r->fits[2].draws : NULL,
                        .nuts = r->nuts_sum ? &r->nuts : NULL,
                        .svi_bands = r->nfits ? &r->mb[0] : NULL,
                        .nuts_bands = r->nuts_sum ? &r->mb[r->nmb - 1] : NULL};
    return figures_make(r->figdir, &in, &r->figs, &r->err);
}

static em_status run_calibration(run *r) {
    const rugged_options *o = &r->o;
    if (!o->folds) return EM_OK;
    int use_nuts = (o->method & METHOD_NUTS) != 0, use_svi = (o->method & METHOD_SVI) != 0;
    em_status s = calibrate(&r->d, o->folds, use_nuts, use_svi, o->svi_steps ? o->svi_steps : 1500,
                            em_seed_mix(o->seed, 50), &r->cov, &r->err);
    if (s != EM_OK) return s;
    char title[96];
    snprintf(title, sizeof title, "Calibration: %d-fold cross-validation", o->folds);
    section(title);
    printf("The nations are split at random into %d folds. Each fold is held out in turn, the model\n"
           "is refitted on the others",
           o->folds);
    if (use_nuts)
        printf(" (NUTS: %d chains x %d draws after %d warmup, fewer than above to\n"
               "keep this quick)",
               r->cov.nuts_chains, r->cov.nuts_samples, r->cov.nuts_warmup);
    printf(", and the held-out log GDP is compared with the intervals of the refitted\n"
           "posterior.\n");
    print_coverage(stdout, &r->cov);
    printf("A calibrated interval for a new observation covers about its nominal share of the rows\n"
           "(binomial standard error with %zu rows: %.3f at 50%%, %.3f at 90%%). The 90%% band of the\n"
           "regression line is not such an interval: it leaves out sigma, so it covers far fewer rows.\n",
           r->d.n, sqrt(0.25 / (double)r->d.n), sqrt(0.09 / (double)r->d.n));
    print_coverage_warnings(stdout, &r->cov);
    return write_coverage_csv(o->out, &r->cov, &r->err);
}

static void print_files(const run *r) {
    const figure_list *f = &r->figs;
    section("Files");
    printf("Written to %s/:\n", r->o.out);
    if (r->chains_written)
        printf("  nuts_chain_1.csv .. nuts_chain_%zu.csv  NUTS draws, CmdStan's CSV layout\n", r->chains_written);
    if (r->nuts_sum) printf("  summary_nuts.csv                       NUTS summary (with ESS and R-hat)\n");
    if (r->nfits) {
        printf("  svi_draws.csv                          AutoDiagonalNormal draws, CmdStan's layout\n");
        printf("  summary_svi.csv                        their summary\n");
    }
    if (r->nmb) printf("  predictive.csv                         regression line and predictive bands\n");
    if (r->o.loo && (r->o.method & METHOD_NUTS))
        printf("  loo_compare.csv                        PSIS-LOO of the three models, best first\n");
    if (r->o.folds) printf("  coverage.csv                           the calibration table\n");
    if (f->ndrawn) {
        printf("  figures/*.png                          %zu figures (gnuplot scripts and data beside them):\n",
               f->ndrawn);
        for (size_t i = 0; i < f->n; i++)
            if (f->drawn[i]) printf("    %-30s %s\n", f->name[i], f->title[i]);
    }
    if (f->ndrawn < f->n) {
        printf("  figures/*.gp                           %zu gnuplot script%s not drawn (%s); to draw:\n",
               f->n - f->ndrawn, f->n - f->ndrawn == 1 ? "" : "s", f->gnuplot_error);
        printf("    cd %s && for f in *.gp; do gnuplot \"$f\"; done\n", r->figdir);
    }
}

static void run_free(run *r) {
    for (int m = 0; m < r->nmb; m++) {
        bands_free(&r->mb[m].rows);
        bands_free(&r->mb[m].grid);
    }
    grid_free(&r->grid);
    em_summary_free(r->nuts_sum);
    post_free(&r->nuts);
    em_posterior_free(r->nuts_post);
    for (int k = 0; k < r->nfits; k++) {
        em_summary_free(r->sums[k]);
        svi_fit_free(&r->fits[k]);
    }
    free(r->figdir);
    rugged_data_free(&r->d);
}

int main(int argc, char **argv) {
    /* line-buffered, so that the report and the progress lines interleave in order in a pipe */
    setvbuf(stdout, NULL, _IOLBF, 0);
    static run r; /* zeroed */
    int rc = cli_parse(argc, argv, &r.o, stderr);
    if (rc) return rc == 1 ? 0 : 2;
    const rugged_options *o = &r.o;
    util_quiet = o->quiet;
    double t_start = now_seconds();

    if (rugged_data_load(o->data, &r.d, &r.err) != EM_OK) {
        fprintf(stderr, "rugged: cannot load the data: %s\n", r.err.msg);
        if (r.err.status == EM_ERR_IO && !strcmp(o->data, "data/rugged_data.csv"))
            fprintf(stderr, "rugged: (the default data path is relative: run from examples/bayesian_regression, "
                            "use make run, or pass --data PATH)\n");
        return 1;
    }
    if (o->folds == 1 || (size_t)o->folds > r.d.n) {
        fprintf(stderr, "rugged: --folds must be 0 (no calibration check) or from 2 to %zu, the number of rows "
                        "(got %d)\n", r.d.n, o->folds);
        run_free(&r);
        return 2;
    }
    if (o->sbc) {
        em_status ss = run_sbc(o, &r.d, &r.err);
        if (ss != EM_OK) fprintf(stderr, "rugged: %s\n", r.err.msg[0] ? r.err.msg : em_status_str(ss));
        run_free(&r);
        return ss == EM_OK ? 0 : 1;
    }
    r.figdir = path_join(o->out, "figures");
    if (!r.figdir || make_dirs(o->out, &r.err) != EM_OK || (o->figures && make_dirs(r.figdir, &r.err) != EM_OK)) {
        fprintf(stderr, "rugged: %s\n", r.err.msg[0] ? r.err.msg : "out of memory");
        run_free(&r);
        return 1;
    }
    em_error exact_err = {0}; /* only for the check: a failure leaves the "exact" column out */
    r.have_exact = exact_compute(&r.d, &r.ex, &exact_err) == EM_OK;

    printf("Bayesian regression with Ember: terrain ruggedness and GDP (Pyro's tutorials, Parts 1 and 2)\n"
           "CSV files and figures go to %s/; examples/bayesian_regression/README.md explains every\n"
           "section and file.\n",
           o->out);
    print_data_summary(o, &r.d);
    em_status s = EM_OK;
    double t0 = now_seconds();
    if (o->method & METHOD_SVI) s = run_svi(&r);
    r.t_svi = now_seconds() - t0;
    t0 = now_seconds();
    if (s == EM_OK && (o->method & METHOD_NUTS)) s = run_nuts(&r);
    r.t_nuts = now_seconds() - t0;
    if (s == EM_OK) {
        run_comparison(&r);
        s = run_predictive(&r);
    }
    t0 = now_seconds();
    if (s == EM_OK && o->loo && (o->method & METHOD_NUTS)) {
        section("Model comparison: PSIS-LOO");
        printf("Does the interaction earn its place, and are the errors Normal? The interaction model, the\n"
               "same without bAR, and the interaction with Student-t errors, each fitted by NUTS and scored\n"
               "by PSIS-LOO (the expected log predictive density of a nation left out), as R's loo prints it.\n");
        s = compare_models(&r.d, o->chains, o->samples, o->warmup, o->seed, o->out, &r.err);
    }
    r.t_loo = now_seconds() - t0;
    t0 = now_seconds();
    if (s == EM_OK) s = run_figures(&r);
    r.t_fig = now_seconds() - t0;
    t0 = now_seconds();
    if (s == EM_OK) s = run_calibration(&r);
    r.t_cal = now_seconds() - t0;
    if (s == EM_OK) print_files(&r);
    if (s == EM_OK && o->timing) {
        section("Timing");
        if (o->method & METHOD_SVI) printf("SVI (three guides and their draws): %.2f s\n", r.t_svi);
        if (o->method & METHOD_NUTS) printf("NUTS: %.2f s\n", r.t_nuts);
        if (r.figs.n) printf("figures: %.2f s\n", r.t_fig);
        if (o->loo && (o->method & METHOD_NUTS)) printf("PSIS-LOO comparison (three NUTS fits): %.2f s\n", r.t_loo);
        if (o->folds) printf("calibration (%d folds): %.2f s\n", o->folds, r.t_cal);
        printf("total: %.2f s\n", now_seconds() - t_start);
    }

    int status = 0;
    if (s == EM_ERR_INTERRUPTED) {
        status = 130;
    } else if (s != EM_OK) {
        fprintf(stderr, "rugged: %s\n", r.err.msg[0] ? r.err.msg : em_status_str(s));
        status = 1;
    }
    run_free(&r);
    return status;
}
