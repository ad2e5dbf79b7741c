/* test_predict.c — a regression's predictions at new data (em_regression_predict): the linear
 * predictor computed by hand from the draws for rows of new data coded with the training coding
 * (factor levels in the training order, scale() with the training mean and sd, an offset from
 * the new data, group effects of seen levels), the expected value and the response draws of a
 * binomial with trials, the training rows against the model's own log-likelihood, the same
 * predictions from the fit read back from CmdStan files, new levels drawn from the population
 * (their standardised effects have mean 0 and variance 1 within Monte Carlo error) or taken from
 * an existing level, the errors (an unknown factor level, a missing column, a refused new level)
 * and brms's fitted() and predict() at new data (tests/data/brms/predict_brms.csv, made by
 * tests/r/brms_predict_reference.R), within 4 combined MCSE.
 *
 * Run from the repository root (make check does). */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/formula.h"
#include "internal/formula_impl.h"

#define REF "tests/data/brms/"

static em_frame *parse_frame(const char *name, const char *csv) {
    em_frame *f = NULL;
    em_error err = {0};
    if (em_frame_parse_csv(name, csv, strlen(csv), &f, &err) != EM_OK) fail_msg("%s", err.msg);
    return f;
}

/* 90 rows: y = 1 + 0.5 x + effects of trt, scale(z), a varying intercept and slope, log(expo) */
static char *training_csv(int binomial) {
    em_buf b = {0};
    em_buf_printf(&b, binomial ? "k,n,x,z,trt,g\n" : "y,x,z,expo,trt,g\n");
    em_rng *r = em_rng_create(11, 0);
    static const char *const trt[3] = {"ctl", "drugA", "drugB"};
    for (int i = 0; i < 90; i++) {
        double x = em_rng_normal(r), z = 3 + 2 * em_rng_uniform(r), e = 0.5 + em_rng_uniform(r);
        int t = i % 3, g = i % 6;
        double eta = 0.2 + 0.5 * x + 0.3 * (t == 1) - 0.4 * (t == 2) + 0.2 * (z - 4) + 0.3 * (g - 2.5) / 2.5;
        if (binomial) {
            int n = 5 + i % 7, k = 0;
            for (int j = 0; j < n; j++) k += em_rng_uniform(r) < 1 / (1 + exp(-eta));
            em_buf_printf(&b, "%d,%d,%.4f,%.4f,%s,G%d\n", k, n, x, z, trt[t], g);
        } else {
            em_buf_printf(&b, "%.4f,%.4f,%.4f,%.4f,%s,G%d\n", eta + log(e) + 0.4 * em_rng_normal(r), x, z, e, trt[t], g);
        }
    }
    em_rng_destroy(r);
    return b.data;
}

static em_posterior *fit(em_regression *r, int chains, int draws) {
    em_mcmc_config c = em_mcmc_config_default();
    c.num_chains = chains;
    c.num_samples = draws;
    c.num_warmup = 500;
    c.seed = 5;
    em_posterior *p = NULL;
    em_error err = {0};
    if (em_regression_fit(r, &c, &p, &err) != EM_OK) fail_msg("%s", err.msg);
    return p;
}

static double *draws_of(const em_posterior *p, const char *name) {
    size_t S = em_posterior_num_chains(p) * em_posterior_num_draws(p);
    double *x = malloc(S * sizeof *x);
    em_error err = {0};
    if (em_posterior_draws(p, name, x, &err) != EM_OK) fail_msg("%s", err.msg);
    return x;
}

static const char *GAUSS = "y ~ x + trt + scale(z) + offset(log(expo)) + (1 + x | g)";
/* the new rows: trt's levels in another order (no ctl), z outside the training range, a seen
 * level of g and a new one */
static const char *NEWDATA = "trt,x,z,expo,g\n"
                             "drugB,0.5,3.5,1.0,G2\n"
                             "drugA,-1.0,6.0,2.0,G5\n"
                             "drugB,2.0,4.0,0.7,G0\n"
                             "drugA,0.0,3.0,1.5,Gnew\n";

static void test_linpred_by_hand(void **state) {
    (void)state;
    char *csv = training_csv(0);
    em_frame *d = parse_frame("train.csv", csv), *nd = parse_frame("new.csv", NEWDATA);
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create(GAUSS, d, NULL, &r, &err), EM_OK);
    em_posterior *p = fit(r, 2, 300);
    em_prediction *pr = NULL;
    em_predict_options o = {.new_levels = EM_NEW_LEVELS_GAUSSIAN, .seed = 3};
    if (em_regression_predict(r, p, nd, &o, &pr, &err) != EM_OK) fail_msg("%s", err.msg);
    size_t S = em_prediction_num_draws(pr), n = em_prediction_num_rows(pr);
    assert_int_equal(S, 600);
    assert_int_equal(n, 4);
    assert_int_equal(em_prediction_num_new_levels(pr), 1);
    /* the training mean and sd of z, as R's scale() */
    double m = 0, ss = 0;
    {
        em_csv_table *t = NULL;
        const char *zc[1] = {"z"};
        assert_int_equal(em_csv_parse_buffer("train.csv", csv, strlen(csv), zc, 1, NULL, &t, &err), EM_OK);
        for (size_t i = 0; i < t->nrows; i++) m += t->cols[0][i];
        m /= (double)t->nrows;
        for (size_t i = 0; i < t->nrows; i++) ss += (t->cols[0][i] - m) * (t->cols[0][i] - m);
        ss = sqrt(ss / (double)(t->nrows - 1));
        em_csv_table_free(t);
    }
    double *a = draws_of(p, "b_Intercept"), *bx = draws_of(p, "b_x"), *bA = draws_of(p, "b_trtdrugA"),
           *bB = draws_of(p, "b_trtdrugB"), *bz = draws_of(p, "b_scalez");
    static const char *const lv[3] = {"G2", "G5", "G0"};
    const double X[4] = {0.5, -1.0, 2.0, 0.0}, Z[4] = {3.5, 6.0, 4.0, 3.0}, E[4] = {1.0, 2.0, 0.7, 1.5};
    const int A[4] = {0, 1, 0, 1}, B[4] = {1, 0, 1, 0};
    const double *lin = em_prediction_draws(pr, EM_PREDICT_LINPRED), *ep = em_prediction_draws(pr, EM_PREDICT_EPRED);
    double worst = 0;
    for (size_t i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "r_g[%s.Intercept]", lv[i]);
        double *ri = draws_of(p, nm);
        snprintf(nm, sizeof nm, "r_g[%s.x]", lv[i]);
        double *rx = draws_of(p, nm);
        for (size_t s = 0; s < S; s += 37) {
            double eta = a[s] + bx[s] * X[i] + bA[s] * A[i] + bB[s] * B[i] + bz[s] * (Z[i] - m) / ss + log(E[i]) +
                         ri[s] + rx[s] * X[i];
            double diff = fabs(lin[s * n + i] - eta);
            if (diff > worst) worst = diff;
            tu_assert_close(lin[s * n + i], eta, 1e-12, 1e-12);
            assert_true(ep[s * n + i] == lin[s * n + i]); /* gaussian: the mean is the predictor */
        }
        free(ri);
        free(rx);
    }
    print_message("linear predictor by hand: largest difference %.2g over 3 rows x 17 draws\n", worst);
    /* the new level's row: the population part plus an effect, whose draw is not all zero */
    double dev = 0;
    for (size_t s = 0; s < S; s++) {
        double pop = a[s] + bA[s] + bz[s] * (3.0 - m) / ss + log(1.5);
        dev += fabs(lin[s * n + 3] - pop);
    }
    assert_true(dev / (double)S > 1e-3);
    /* the response: centred on the expected value with sd sigma */
    double *sg = draws_of(p, "sigma");
    const double *yr = em_prediction_draws(pr, EM_PREDICT_RESPONSE);
    double zsum = 0, z2 = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < n; i++) {
            double u = (yr[s * n + i] - ep[s * n + i]) / sg[s];
            zsum += u, z2 += u * u;
        }
    double N = (double)(S * n);
    assert_true(fabs(zsum / N) < 4 / sqrt(N));
    assert_true(fabs(z2 / N - 1) < 4 * sqrt(2 / N));
    /* only the linear predictor asked for: the same numbers, the other kinds not made */
    em_prediction *only = NULL;
    o.kinds = 1u << EM_PREDICT_LINPRED;
    assert_int_equal(em_regression_predict(r, p, nd, &o, &only, &err), EM_OK);
    assert_null(em_prediction_draws(only, EM_PREDICT_EPRED));
    assert_null(em_prediction_draws(only, EM_PREDICT_RESPONSE));
    assert_int_equal(em_prediction_summary(only, EM_PREDICT_EPRED, 0.025, 0.975, (double[16]){0}, &err), EM_ERR_ARG);
    const double *lo = em_prediction_draws(only, EM_PREDICT_LINPRED);
    for (size_t k = 0; k < S * n; k++) assert_true(lo[k] == lin[k]); /* the new level's draws too */
    em_prediction_free(only);
    /* the summary is the draws' mean, sd and quantiles */
    double sm[16];
    assert_int_equal(em_prediction_summary(pr, EM_PREDICT_EPRED, 0.025, 0.975, sm, &err), EM_OK);
    double col[600];
    for (size_t s = 0; s < S; s++) col[s] = ep[s * n + 1];
    tu_assert_close(sm[4], em_mean(col, S), 1e-14, 1e-14);
    tu_assert_close(sm[5], em_sd(col, S), 1e-14, 1e-14);
    tu_assert_close(sm[6], em_quantile(col, S, 0.025), 1e-14, 1e-14);
    assert_true(sm[6] < sm[4] && sm[4] < sm[7]);
    free(sg);
    free(a), free(bx), free(bA), free(bB), free(bz);
    em_prediction_free(pr);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(d);
    em_frame_free(nd);
    free(csv);
}

/* The training rows predicted (no new data) against the model's own log-likelihood, the same
 * rows passed as new data, and the fit read back from its CmdStan files. */
static void test_training_rows_and_files(void **state) {
    (void)state;
    char *csv = training_csv(0);
    em_frame *d = parse_frame("train.csv", csv);
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create(GAUSS, d, NULL, &r, &err), EM_OK);
    em_posterior *p = fit(r, 2, 200);
    em_prediction *in = NULL, *again = NULL, *files = NULL;
    assert_int_equal(em_regression_predict(r, p, NULL, NULL, &in, &err), EM_OK);
    size_t S = em_prediction_num_draws(in), n = em_prediction_num_rows(in);
    assert_int_equal(n, 90);
    /* log N(y | mu, sigma) from the predictions equals the model's log_lik, draw by draw */
    em_predictive *ll = NULL;
    assert_int_equal(em_posterior_log_lik(em_regression_internal_fit(r), "y", &ll, &err), EM_OK);
    const em_pred_site *ls = em_predictive_site(ll, "y");
    assert_non_null(ls);
    double *sg = draws_of(p, "sigma");
    const double *y = em_regression_design_of(r)->y, *mu = em_prediction_draws(in, EM_PREDICT_EPRED);
    double worst = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < n; i++) {
            double e = (y[i] - mu[s * n + i]) / sg[s];
            double mine = -0.9189385332046728 /* log(2π)/2 */ - log(sg[s]) - 0.5 * e * e, model = ls->draws[s * n + i];
            if (fabs(mine - model) > worst) worst = fabs(mine - model);
            tu_assert_close(mine, model, 1e-10, 1e-10);
        }
    print_message("training rows: log N(y | epred, sigma) = the model's log_lik within %.2g\n", worst);
    /* the training frame as new data: coded the same way, so the same linear predictor */
    assert_int_equal(em_regression_predict(r, p, d, NULL, &again, &err), EM_OK);
    const double *l1 = em_prediction_draws(in, EM_PREDICT_LINPRED), *l2 = em_prediction_draws(again, EM_PREDICT_LINPRED);
    for (size_t k = 0; k < S * n; k++) tu_assert_close(l2[k], l1[k], 1e-13, 1e-13);
    /* CmdStan files with brms's names read back predict the same */
    char dir[] = "/tmp/ember_predict_XXXXXX";
    assert_non_null(mkdtemp(dir));
    size_t nw = 0;
    assert_int_equal(em_posterior_write_cmdstan(p, dir, "fit", NULL, &nw, &err), EM_OK);
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "%s/fit_1.csv", dir);
    snprintf(p2, sizeof p2, "%s/fit_2.csv", dir);
    const char *paths[2] = {p1, p2};
    em_posterior *back = NULL;
    assert_int_equal(em_posterior_read_cmdstan(paths, 2, &back, &err), EM_OK);
    assert_int_equal(em_regression_predict(r, back, NULL, NULL, &files, &err), EM_OK);
    const double *l3 = em_prediction_draws(files, EM_PREDICT_LINPRED);
    for (size_t k = 0; k < S * n; k++) tu_assert_close(l3[k], l1[k], 1e-13, 1e-13);
    /* the coefficient figure: each b_'s median and intervals, the first on the top line */
    assert_int_equal(em_regression_coef_figure(r, back, dir, "coef", &err), EM_OK);
    char cp[128], lab[64];
    snprintf(cp, sizeof cp, "%s/coef.dat", dir);
    FILE *cf = fopen(cp, "r");
    assert_non_null(cf);
    char line[512];
    assert_non_null(fgets(line, sizeof line, cf)); /* the comment */
    int lines = 0;
    double *bx = draws_of(p, "b_x");
    while (fgets(line, sizeof line, cf)) {
        double pos, q[5];
        assert_int_equal(sscanf(line, "%lf %63s %lf %lf %lf %lf %lf", &pos, lab, &q[0], &q[1], &q[2], &q[3], &q[4]), 7);
        assert_true(q[1] < q[2] && q[2] < q[0] && q[0] < q[3] && q[3] < q[4]);
        if (lines == 0) assert_string_equal(lab, "b_Intercept"), assert_true(pos == 5);
        if (!strcmp(lab, "b_x")) tu_assert_close(q[0], em_quantile(bx, S, 0.5), 1e-9, 0);
        lines++;
    }
    fclose(cf);
    assert_int_equal(lines, 5); /* Intercept, x, trtdrugA, trtdrugB, scalez */
    free(bx);
    snprintf(cp, sizeof cp, "%s/coef.gp", dir);
    assert_int_equal(access(cp, R_OK), 0);
    unlink(cp);
    snprintf(cp, sizeof cp, "%s/coef.dat", dir);
    unlink(cp);
    /* the summary file */
    char sp[128];
    snprintf(sp, sizeof sp, "%s/pred.csv", dir);
    assert_int_equal(em_prediction_write_csv(files, EM_PREDICT_EPRED, 0, sp, &err), EM_OK);
    const char *cols[4] = {"row", "Estimate", "Est.Error", "Q97.5"};
    em_csv_table *t = NULL;
    assert_int_equal(em_csv_read(sp, cols, 4, NULL, &t, &err), EM_OK);
    assert_int_equal(t->nrows, 90);
    assert_true(t->cols[0][0] == 1 && t->cols[0][89] == 90);
    assert_true(t->cols[3][5] > t->cols[1][5] && t->cols[2][5] > 0);
    em_csv_table_free(t);
    unlink(p1), unlink(p2), unlink(sp), rmdir(dir);
    free(sg);
    em_predictive_free(ll);
    em_prediction_free(in), em_prediction_free(again), em_prediction_free(files);
    em_posterior_free(back);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(d);
    free(csv);
}

static void test_binomial(void **state) {
    (void)state;
    char *csv = training_csv(1);
    em_frame *d = parse_frame("train.csv", csv);
    em_frame *nd = parse_frame("new.csv", "n,x,z,trt,g\n10,0.3,4.0,ctl,G1\n3,-0.5,3.2,drugB,G4\n");
    em_regression_options ro = {.family = EM_FAMILY_BINOMIAL};
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create("k | trials(n) ~ x + trt + (1 | g)", d, &ro, &r, &err), EM_OK);
    em_posterior *p = fit(r, 2, 200);
    em_prediction *pr = NULL;
    assert_int_equal(em_regression_predict(r, p, nd, NULL, &pr, &err), EM_OK);
    size_t S = em_prediction_num_draws(pr);
    const double *lin = em_prediction_draws(pr, EM_PREDICT_LINPRED), *ep = em_prediction_draws(pr, EM_PREDICT_EPRED),
                 *yr = em_prediction_draws(pr, EM_PREDICT_RESPONSE);
    double *a = draws_of(p, "b_Intercept"), *bx = draws_of(p, "b_x"), *r1 = draws_of(p, "r_g[G1.Intercept]");
    const double trials[2] = {10, 3};
    double mean_y[2] = {0, 0}, mean_ep[2] = {0, 0};
    for (size_t s = 0; s < S; s++) {
        tu_assert_close(lin[2 * s], a[s] + 0.3 * bx[s] + r1[s], 1e-12, 1e-12);
        for (int i = 0; i < 2; i++) {
            tu_assert_close(ep[2 * s + i], trials[i] / (1 + exp(-lin[2 * s + i])), 1e-12, 1e-12);
            double v = yr[2 * s + i];
            assert_true(v >= 0 && v <= trials[i] && v == floor(v));
            mean_y[i] += v / (double)S, mean_ep[i] += ep[2 * s + i] / (double)S;
        }
    }
    /* E[y] = E[epred]; the sd of the mean is at most sqrt(n/4 / S) */
    for (int i = 0; i < 2; i++) assert_true(fabs(mean_y[i] - mean_ep[i]) < 4 * sqrt(trials[i] / 4 / (double)S));
    free(a), free(bx), free(r1);
    em_prediction_free(pr);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(d);
    em_frame_free(nd);
    free(csv);
}

static void expect_predict_error(em_regression *r, const em_posterior *p, const char *csv, em_new_levels nl,
                                 const char *const *want) {
    em_frame *nd = parse_frame("new.csv", csv);
    em_prediction *pr = NULL;
    em_error err = {0};
    em_predict_options o = {.new_levels = nl};
    assert_int_equal(em_regression_predict(r, p, nd, &o, &pr, &err), EM_ERR_ARG);
    assert_null(pr);
    for (; *want; want++)
        if (!strstr(err.msg, *want)) fail_msg("message '%s' lacks '%s'", err.msg, *want);
    em_frame_free(nd);
}

static void test_errors(void **state) {
    (void)state;
    char *csv = training_csv(0);
    em_frame *d = parse_frame("train.csv", csv);
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create(GAUSS, d, NULL, &r, &err), EM_OK);
    em_posterior *p = fit(r, 1, 50);
    expect_predict_error(r, p, "trt,x,z,expo,g\nctl,0,4,1,G1\ndrugC,0,4,1,G1\n", EM_NEW_LEVELS_UNCERTAINTY,
                         (const char *const[]){"new.csv:3", "'trt' = 'drugC'", "'ctl', 'drugA', 'drugB'", NULL});
    expect_predict_error(r, p, "trt,xx,z,expo,g\nctl,0,4,1,G1\n", EM_NEW_LEVELS_UNCERTAINTY,
                         (const char *const[]){"no column 'x' in new.csv", "did you mean", "^", NULL});
    expect_predict_error(r, p, "trt,x,z,expo,g\nctl,0,4,1,G1\nctl,0,4,1,G9\n", EM_NEW_LEVELS_ERROR,
                         (const char *const[]){"new.csv:3", "level 'G9'", "grouping factor 'g'", NULL});
    expect_predict_error(r, p, "trt,x,z,expo,g\nctl,,4,1,G1\n", EM_NEW_LEVELS_UNCERTAINTY,
                         (const char *const[]){"new.csv:2", "missing value", NULL});
    /* a fit of another formula lacks the draws this one needs */
    em_regression *r2 = NULL;
    assert_int_equal(em_regression_create("y ~ x", d, NULL, &r2, &err), EM_OK);
    em_prediction *pr = NULL;
    em_posterior *p2 = fit(r2, 1, 20);
    assert_int_equal(em_regression_predict(r, p2, NULL, NULL, &pr, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "b_trtdrugA"));
    em_posterior_free(p2);
    em_regression_free(r2);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(d);
    free(csv);
}

/* New levels: "gaussian" gives effects whose standardised value e / sd(e) over the draws is
 * N(0, 1) (mean within 4/sqrt(S), variance within 4 sqrt(2/S)), two new levels independent and a
 * new level shared by two rows the same; "uncertainty" takes, in each draw, one existing level's
 * effects exactly. */
static void test_new_levels(void **state) {
    (void)state;
    char *csv = training_csv(0);
    em_frame *d = parse_frame("train.csv", csv);
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create(GAUSS, d, NULL, &r, &err), EM_OK);
    em_posterior *p = fit(r, 4, 1000);
    const char *rows = "trt,x,z,expo,g\nctl,0.8,4,1,New1\nctl,0.8,4,1,New2\nctl,0.8,4,1,New1\n";
    em_frame *nd = parse_frame("new.csv", rows);
    em_prediction *gs = NULL, *pop = NULL, *un = NULL;
    em_predict_options o = {.new_levels = EM_NEW_LEVELS_GAUSSIAN, .seed = 8};
    assert_int_equal(em_regression_predict(r, p, nd, &o, &gs, &err), EM_OK);
    assert_int_equal(em_prediction_num_new_levels(gs), 2);
    o.population_only = 1;
    assert_int_equal(em_regression_predict(r, p, nd, &o, &pop, &err), EM_OK);
    o = (em_predict_options){.new_levels = EM_NEW_LEVELS_UNCERTAINTY, .seed = 8};
    assert_int_equal(em_regression_predict(r, p, nd, &o, &un, &err), EM_OK);
    size_t S = em_prediction_num_draws(gs);
    assert_int_equal(S, 4000);
    double *s1 = draws_of(p, "sd_g__Intercept"), *s2 = draws_of(p, "sd_g__x"), *rho = draws_of(p, "cor_g__Intercept__x");
    const double *lg = em_prediction_draws(gs, EM_PREDICT_LINPRED), *lp = em_prediction_draws(pop, EM_PREDICT_LINPRED),
                 *lu = em_prediction_draws(un, EM_PREDICT_LINPRED);
    double m1 = 0, v1 = 0, m2 = 0, v2 = 0, c12 = 0, x = 0.8;
    for (size_t s = 0; s < S; s++) {
        double sdv = sqrt(s1[s] * s1[s] + x * x * s2[s] * s2[s] + 2 * x * rho[s] * s1[s] * s2[s]);
        double u1 = (lg[3 * s] - lp[3 * s]) / sdv, u2 = (lg[3 * s + 1] - lp[3 * s + 1]) / sdv;
        m1 += u1, v1 += u1 * u1, m2 += u2, v2 += u2 * u2, c12 += u1 * u2;
        assert_true(lg[3 * s] == lg[3 * s + 2]); /* the same new level in rows 1 and 3 */
    }
    double n = (double)S;
    m1 /= n, m2 /= n, v1 /= n, v2 /= n, c12 /= n;
    print_message("new levels (gaussian): standardised mean %.3f, %.3f, variance %.3f, %.3f, correlation %.3f "
                  "(tolerances %.3f, %.3f)\n", m1, m2, v1, v2, c12, 4 / sqrt(n), 4 * sqrt(2 / n));
    assert_true(fabs(m1) < 4 / sqrt(n) && fabs(m2) < 4 / sqrt(n));
    assert_true(fabs(v1 - 1) < 4 * sqrt(2 / n) && fabs(v2 - 1) < 4 * sqrt(2 / n));
    assert_true(fabs(c12) < 4 / sqrt(n));
    /* uncertainty: each draw's effect is one of the six levels' r_g draws */
    double *ri[6], *rx[6];
    for (int j = 0; j < 6; j++) {
        char nm[64];
        snprintf(nm, sizeof nm, "r_g[G%d.Intercept]", j);
        ri[j] = draws_of(p, nm);
        snprintf(nm, sizeof nm, "r_g[G%d.x]", j);
        rx[j] = draws_of(p, nm);
    }
    size_t hits[6] = {0};
    for (size_t s = 0; s < S; s++) {
        double e = lu[3 * s] - lp[3 * s];
        int found = -1;
        for (int j = 0; j < 6 && found < 0; j++)
            if (fabs(e - (ri[j][s] + x * rx[j][s])) < 1e-12 * (1 + fabs(e))) found = j;
        if (found < 0) fail_msg("draw %zu: the new level's effect %.17g is no existing level's", s, e);
        hits[found]++;
    }
    for (int j = 0; j < 6; j++) {
        assert_true(fabs((double)hits[j] - n / 6) < 4 * sqrt(n / 6 * 5 / 6)); /* chosen uniformly */
        free(ri[j]), free(rx[j]);
    }
    free(s1), free(s2), free(rho);
    em_prediction_free(gs), em_prediction_free(pop), em_prediction_free(un);
    em_frame_free(nd);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(d);
    free(csv);
}

/* brms's fitted() and predict() at new data, with new levels, within 4 combined MCSE (means) and
 * 10% (sds). */
static void test_brms_predictions(void **state) {
    (void)state;
    em_frame *d = NULL, *nd = NULL;
    em_error err = {0};
    if (em_frame_read_csv(REF "gauss_vslope.csv", &d, &err) != EM_OK || em_frame_read_csv(REF "predict_newdata.csv", &nd, &err) != EM_OK)
        fail_msg("%s (tests/r/brms_predict_reference.R makes it)", err.msg);
    em_regression *r = NULL;
    assert_int_equal(em_regression_create("y ~ x * z + (1 + x | g)", d, NULL, &r, &err), EM_OK);
    em_mcmc_config c = em_mcmc_config_default();
    c.num_samples = 2500;
    c.target_accept = 0.95;
    c.seed = 99;
    em_posterior *p = NULL;
    assert_int_equal(em_regression_fit(r, &c, &p, &err), EM_OK);
    em_csv_options co = {0};
    const char *tc[1] = {"kind"};
    co.text_columns = tc;
    co.ntext_columns = 1;
    const char *cols[4] = {"row", "Estimate", "Est.Error", "mcse"};
    em_csv_table *ref = NULL;
    assert_int_equal(em_csv_read(REF "predict_brms.csv", cols, 4, &co, &ref, &err), EM_OK);
    char *const *kind = em_csv_text_column(ref, "kind");
    static const char *const kinds[4] = {"epred_uncertainty", "epred_gaussian", "predict_gaussian", "epred_population"};
    size_t matched = 0;
    double worst_z = 0, worst_sd = 0;
    for (int k = 0; k < 4; k++) {
        em_predict_options o = {.new_levels = k == 0 ? EM_NEW_LEVELS_UNCERTAINTY : EM_NEW_LEVELS_GAUSSIAN,
                                .population_only = k == 3, .seed = 17};
        em_prediction *pr = NULL;
        assert_int_equal(em_regression_predict(r, p, nd, &o, &pr, &err), EM_OK);
        em_predict_kind pk = k == 2 ? EM_PREDICT_RESPONSE : EM_PREDICT_EPRED;
        size_t S = em_prediction_num_draws(pr), n = em_prediction_num_rows(pr);
        const double *x = em_prediction_draws(pr, pk);
        double *col = malloc(S * sizeof *col);
        for (size_t i = 0; i < ref->nrows; i++) {
            if (strcmp(kind[i], kinds[k])) continue;
            size_t row = (size_t)ref->cols[0][i] - 1;
            assert_true(row < n);
            for (size_t s = 0; s < S; s++) col[s] = x[s * n + row];
            double mean = em_mean(col, S), sd = em_sd(col, S);
            double mc = em_mcse_mean(col, em_posterior_num_chains(p), em_posterior_num_draws(p), NULL);
            double se = sqrt(mc * mc + ref->cols[3][i] * ref->cols[3][i]);
            double z = fabs(mean - ref->cols[1][i]) / se, dsd = fabs(sd - ref->cols[2][i]) / ref->cols[2][i];
            if (z > worst_z) worst_z = z;
            if (dsd > worst_sd) worst_sd = dsd;
            if (!(z <= 4))
                fail_msg("%s row %zu: Estimate %.5g, brms %.5g (%.1f combined MCSE)", kinds[k], row + 1, mean,
                         ref->cols[1][i], z);
            if (!(dsd <= 0.10))
                fail_msg("%s row %zu: Est.Error %.5g, brms %.5g", kinds[k], row + 1, sd, ref->cols[2][i]);
            matched++;
        }
        free(col);
        em_prediction_free(pr);
    }
    print_message("%zu predictions agree with brms's: largest |mean diff| %.2f combined MCSE, largest sd diff %.1f%%\n",
                  matched, worst_z, 100 * worst_sd);
    assert_int_equal(matched, 32);
    em_csv_table_free(ref);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(d);
    em_frame_free(nd);
}

/* The families of issue 16: the expected value of each draw at a training row against the
 * mean written out from the draws' parameters (brms's names), and predictive draws in the
 * support. gamma and weibull: e^eta; Beta: logistic(eta); zero-inflated Poisson (1 - zi) e^eta. */
static void test_new_families(void **state) {
    (void)state;
    static const struct {
        const char *file, *formula, *family, *x;
        int kind; /* 0 exp, 1 logistic, 2 zi·exp */
    } cases[] = {
        {REF "gamma.csv", "y ~ x", "gamma", "x", 0},
        {REF "weibull_cens.csv", "time | cens(status) ~ x", "weibull", "x", 0},
        {REF "beta.csv", "y ~ x", "beta", "x", 1},
        {REF "zip.csv", "k ~ x", "zero_inflated_poisson", "x", 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        em_frame *d = NULL;
        em_error err = {0};
        if (em_frame_read_csv(cases[c].file, &d, &err) != EM_OK) fail_msg("%s", err.msg);
        em_regression_options ro = {0};
        if (em_family_from_name(cases[c].family, &ro.family, &err) != EM_OK) fail_msg("%s", err.msg);
        em_regression *r = NULL;
        if (em_regression_create(cases[c].formula, d, &ro, &r, &err) != EM_OK) fail_msg("%s: %s", cases[c].family, err.msg);
        em_posterior *p = fit(r, 1, 100);
        em_prediction *pr = NULL;
        em_predict_options o = {.seed = 3};
        if (em_regression_predict(r, p, NULL, &o, &pr, &err) != EM_OK) fail_msg("%s: %s", cases[c].family, err.msg);
        size_t S = em_prediction_num_draws(pr), n = em_prediction_num_rows(pr);
        const double *ep = em_prediction_draws(pr, EM_PREDICT_EPRED), *yr = em_prediction_draws(pr, EM_PREDICT_RESPONSE);
        double *a = draws_of(p, "b_Intercept"), *b = draws_of(p, "b_x");
        double *zi = cases[c].kind == 2 ? draws_of(p, "zi") : NULL;
        const em_design *ds = em_regression_design_of(r);
        double worst = 0;
        for (size_t it = 0; it < S; it++) {
            double x0 = ds->X[0], eta = a[it] + b[it] * x0;
            double mean = cases[c].kind == 0 ? exp(eta) : cases[c].kind == 1 ? 1 / (1 + exp(-eta)) : (1 - zi[it]) * exp(eta);
            double rel = fabs(ep[it * n] - mean) / fabs(mean);
            if (rel > worst) worst = rel;
        }
        for (size_t k = 0; k < S * n; k++) {
            int ok = cases[c].kind == 1 ? yr[k] > 0 && yr[k] < 1 : cases[c].kind == 2 ? yr[k] >= 0 && yr[k] == floor(yr[k]) : yr[k] > 0;
            if (!ok) fail_msg("%s: predictive draw %zu = %g outside the support", cases[c].family, k, yr[k]);
        }
        printf("%-22s expected value at row 1 against the written-out mean: largest relative difference %.2g\n",
               cases[c].family, worst);
        assert_true(worst < 1e-12);
        free(a);
        free(b);
        free(zi);
        em_prediction_free(pr);
        em_posterior_free(p);
        em_regression_free(r);
        em_frame_free(d);
    }
}

/* The cumulative family (logit and probit): each draw's category probabilities at every training
 * row against F(τ_k - η) - F(τ_{k-1} - η) written out from the draws (b_Intercept[k], b_x, b_z),
 * the expected value their mean category, response draws categories 1..K whose shares match the
 * mean probabilities within Monte Carlo error, and brms's predict() and fitted() layouts. */
static double logistic(double x) { return 1 / (1 + exp(-x)); }
static double probit_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static void test_cumulative(void **state) {
    (void)state;
    em_frame *d = NULL;
    em_error err = {0};
    if (em_frame_read_csv(REF "cumul.csv", &d, &err) != EM_OK) fail_msg("%s", err.msg);
    for (int probit = 0; probit < 2; probit++) {
        em_regression_options ro = {.family = EM_FAMILY_CUMULATIVE, .link = probit ? EM_LINK_PROBIT : EM_LINK_LOGIT};
        em_regression *r = NULL;
        if (em_regression_create("rating ~ x + z", d, &ro, &r, &err) != EM_OK) fail_msg("%s", err.msg);
        em_posterior *p = fit(r, 1, 200);
        em_prediction *pr = NULL;
        em_predict_options o = {.seed = 9};
        if (em_regression_predict(r, p, NULL, &o, &pr, &err) != EM_OK) fail_msg("%s", err.msg);
        size_t S = em_prediction_num_draws(pr), n = em_prediction_num_rows(pr), K = 0;
        const double *probs = em_prediction_probs(pr, &K), *ep = em_prediction_draws(pr, EM_PREDICT_EPRED);
        const double *yr = em_prediction_draws(pr, EM_PREDICT_RESPONSE);
        const em_design *ds = em_regression_design_of(r);
        assert_non_null(probs);
        assert_int_equal(K, ds->ncat);
        double *tau[8], *bx = draws_of(p, "b_x"), *bz = draws_of(p, "b_z"), worst = 0, worst_share = 0;
        assert_true(K <= 8);
        for (size_t k = 0; k + 1 < K; k++) {
            char nm[48];
            snprintf(nm, sizeof nm, "b_Intercept[%zu]", k + 1);
            tau[k] = draws_of(p, nm);
        }
        double *share = calloc(n * K, sizeof *share), *mean_p = calloc(n * K, sizeof *mean_p);
        for (size_t it = 0; it < S; it++)
            for (size_t i = 0; i < n; i++) {
                double eta = bx[it] * ds->X[i * 2] + bz[it] * ds->X[i * 2 + 1], below = 0, m = 0;
                const double *pi = probs + (it * n + i) * K;
                for (size_t k = 0; k < K; k++) {
                    double upto = k + 1 < K ? (probit ? probit_cdf(tau[k][it] - eta) : logistic(tau[k][it] - eta)) : 1;
                    double diff = fabs(pi[k] - (upto - below));
                    if (diff > worst) worst = diff;
                    m += (double)(k + 1) * pi[k];
                    mean_p[i * K + k] += pi[k] / (double)S;
                    below = upto;
                }
                tu_assert_close(ep[it * n + i], m, 1e-12, 1e-12);
                double y = yr[it * n + i];
                if (!(y >= 1 && y <= (double)K && y == floor(y))) fail_msg("response draw %g is not a category", y);
                share[i * K + (size_t)y - 1] += 1.0 / (double)S;
            }
        for (size_t c = 0; c < n * K; c++) { /* in units of the binomial sd of a share */
            double sd = sqrt(mean_p[c] * (1 - mean_p[c]) / (double)S) + 1e-9, z = fabs(share[c] - mean_p[c]) / sd;
            if (z > worst_share) worst_share = z;
        }
        printf("cumulative (%s): probabilities against the written-out CDFs within %.2g; response shares within %.2f sd\n",
               probit ? "probit" : "logit", worst, worst_share);
        assert_true(worst < 1e-12);
        assert_true(worst_share < 5.0); /* the largest of n·K ≈ 600 roughly normal deviations */
        char path[] = "/tmp/ember_cumul_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        if (em_prediction_write_csv(pr, EM_PREDICT_RESPONSE, 0, path, &err) != EM_OK) fail_msg("%s", err.msg);
        FILE *f = fopen(path, "r");
        char line[256];
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(K, 5);
        assert_string_equal(line, "row,P(Y = 1),P(Y = 2),P(Y = 3),P(Y = 4),P(Y = 5)\n");
        fclose(f);
        if (em_prediction_write_csv(pr, EM_PREDICT_EPRED, 0, path, &err) != EM_OK) fail_msg("%s", err.msg);
        f = fopen(path, "r");
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, "row,category,Estimate,Est.Error,Q2.5,Q97.5\n");
        fclose(f);
        unlink(path);
        for (size_t k = 0; k + 1 < K; k++) free(tau[k]);
        free(bx);
        free(bz);
        free(share);
        free(mean_p);
        em_prediction_free(pr);
        em_posterior_free(p);
        em_regression_free(r);
    }
    em_frame_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linpred_by_hand), cmocka_unit_test(test_training_rows_and_files),
        cmocka_unit_test(test_binomial),        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_new_levels),      cmocka_unit_test(test_brms_predictions),
        cmocka_unit_test(test_new_families),    cmocka_unit_test(test_cumulative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
