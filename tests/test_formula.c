/* test_formula.c — the formula front end: syntax errors with a caret, the coding of factors and
 * interactions against R's model.matrix, brms's default priors and prior lines, the errors a
 * user makes with data, the families of issue 16 (names, support, default priors, log-likelihood
 * against the density written out, predictive draws in the support), and the posteriors of
 * sixteen models against brms's on the same data and priors (tests/data/brms/, made by tests/r/brms_reference.R: means within 4 combined MCSE, sds
 * within 10%).
 *
 * Run from the repository root (make check does). */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/formula.h"
#include "internal/formula_impl.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_erf.h>
#include <gsl/gsl_sf_gamma.h>

#define REF "tests/data/brms/"

static void expect_parse_error(const char *f, int col, const char *what) {
    em_formula *p = NULL;
    em_error err = {0};
    assert_int_equal(em_formula_parse(f, &p, &err), EM_ERR_PARSE);
    assert_null(p);
    char at[32];
    snprintf(at, sizeof at, "at column %d", col);
    if (!strstr(err.msg, at) || !strstr(err.msg, what) || !strchr(err.msg, '^'))
        fail_msg("'%s': message '%s' lacks '%s', '%s' or a caret", f, err.msg, at, what);
    /* the caret sits under the column */
    const char *caret = strrchr(err.msg, '\n');
    assert_non_null(caret);
    assert_int_equal((int)(strchr(caret, '^') - caret) - 3, col - 1);
}

static void test_syntax_errors(void **state) {
    (void)state;
    expect_parse_error("y ~ x +", 8, "a term is missing");
    expect_parse_error("y x", 3, "expected '~'");
    expect_parse_error("y ~ (1 | g", 11, "expected ')'");
    expect_parse_error("y ~ x $ z", 7, "unexpected character '$'");
    expect_parse_error("y ~ x z", 7, "an operator such as '+' is missing");
    expect_parse_error("", 1, "empty");
    expect_parse_error("y ~", 4, "nothing after '~'");
    expect_parse_error("y ~ log(x", 10, "expected ',' or ')'");
    em_formula *p = NULL;
    em_error err = {0};
    assert_int_equal(em_formula_parse("y | trials(n) ~ x * z + (1 + x || g) + offset(log(t)) - 1", &p, &err), EM_OK);
    em_formula_free(p);
}

/* ---- coding against model.matrix --------------------------------------------------------------- */

static em_frame *frame(const char *path) {
    em_frame *f = NULL;
    em_error err = {0};
    if (em_frame_read_csv(path, &f, &err) != EM_OK) fail_msg("%s", err.msg);
    return f;
}

static void test_model_matrix(void **state) {
    (void)state;
    em_frame *d = frame(REF "mm_data.csv");
    em_csv_options o = {0};
    const char *tc[3] = {"formula", "column", "values"};
    o.text_columns = tc;
    o.ntext_columns = 3;
    em_csv_table *mm = NULL;
    em_error err = {0};
    assert_int_equal(em_csv_read(REF "model_matrix.csv", NULL, 0, &o, &mm, &err), EM_OK);
    char *const *form = em_csv_text_column(mm, "formula"), *const *col = em_csv_text_column(mm, "column"),
               *const *vals = em_csv_text_column(mm, "values");
    size_t checked = 0, formulas = 0;
    for (size_t r = 0; r < mm->nrows;) {
        const char *f = form[r];
        size_t r1 = r;
        while (r1 < mm->nrows && !strcmp(form[r1], f)) r1++;
        char full[256];
        snprintf(full, sizeof full, "x %s", f);
        em_regression *reg = NULL;
        em_error e = {0};
        if (!strcmp(f, "~ trt:h")) {
            /* every trt:h cell beside the intercept: R's model.matrix is rank-deficient here, and
             * Ember refuses it naming the column */
            assert_int_equal(em_regression_create(full, d, NULL, &reg, &e), EM_ERR_ARG);
            assert_non_null(strstr(e.msg, "linear combination"));
            r = r1;
            continue;
        }
        if (em_regression_create(full, d, NULL, &reg, &e) != EM_OK) fail_msg("%s: %s", full, e.msg);
        size_t P = em_regression_num_coefs(reg), n = em_regression_num_rows(reg);
        if (P != r1 - r) fail_msg("%s: %zu columns, R has %zu", f, P, r1 - r);
        for (size_t j = 0; j < P; j++, r++) {
            if (strcmp(em_regression_coef_name(reg, j), col[r]))
                fail_msg("%s: column %zu is '%s', R's is '%s'", f, j, em_regression_coef_name(reg, j), col[r]);
            const char *v = vals[r];
            for (size_t i = 0; i < n; i++) {
                char *end;
                double want = strtod(v, &end);
                v = end;
                tu_assert_close(em_regression_design(reg)[i * P + j], want, 1e-9, 1e-12);
                checked++;
            }
        }
        formulas++;
        em_regression_free(reg);
    }
    assert_true(formulas >= 8 && checked > 300);
    em_csv_table_free(mm);
    em_frame_free(d);
}

/* ---- data errors ----------------------------------------------------------------------------------- */

static void expect_create_error(const char *csv, const char *formula, em_family fam, int drop, const char *what) {
    em_frame *f = NULL;
    em_error err = {0};
    assert_int_equal(em_frame_parse_csv("d.csv", csv, strlen(csv), &f, &err), EM_OK);
    em_regression_options o = {.family = fam, .drop_missing = drop};
    em_regression *r = NULL;
    em_error e = {0};
    assert_int_not_equal(em_regression_create(formula, f, &o, &r, &e), EM_OK);
    assert_null(r);
    if (!strstr(e.msg, what)) fail_msg("'%s': message '%s' lacks '%s'", formula, e.msg, what);
    em_frame_free(f);
}

static void test_data_errors(void **state) {
    (void)state;
    const char *d = "y,x,k,g,one,c\n1.5,0.1,2,a,u,1\n2.5,0.7,0,b,u,1\n0.5,-0.3,3,a,u,1\n1.0,0.2,1,c,u,1\n";
    expect_create_error(d, "y ~ xx", EM_FAMILY_GAUSSIAN, 0, "no column 'xx' in d.csv (did you mean 'x'");
    expect_create_error(d, "y ~ one", EM_FAMILY_GAUSSIAN, 0, "factor 'one' has one level ('u')");
    expect_create_error(d, "y ~ x", EM_FAMILY_POISSON, 0, "d.csv:2: response y = 1.5 is outside the poisson family's support");
    expect_create_error(d, "y ~ x", EM_FAMILY_BERNOULLI, 0, "a bernoulli response is 0 or 1");
    expect_create_error(d, "y ~ x + c", EM_FAMILY_GAUSSIAN, 0, "column 'c' is constant");
    expect_create_error(d, "y ~ x + I(2 * x)", EM_FAMILY_GAUSSIAN, 0, "column 'I(2 * x)' is a linear combination");
    expect_create_error(d, "k ~ x", EM_FAMILY_BINOMIAL, 0, "needs the trials");
    expect_create_error(d, "g ~ x", EM_FAMILY_GAUSSIAN, 0, "the response 'g' holds text");
    expect_create_error(d, "y ~ g * 2", EM_FAMILY_GAUSSIAN, 0, "only 1 or 0");
    expect_create_error(d, "y ~ foo(x)", EM_FAMILY_GAUSSIAN, 0, "unknown function 'foo'");
    expect_create_error(d, "y ~ log(x)", EM_FAMILY_GAUSSIAN, 0, "log() of -0.3");
    /* a group term that fails after its term count is known (an unknown grouping column, a bad
     * term inside it, a response the family refuses): the half-built design is freed (the
     * formula fuzzer's first find: a NULL names array read for K names) */
    expect_create_error(d, "y ~ x + (1 | gg)", EM_FAMILY_GAUSSIAN, 0, "no column 'gg'");
    expect_create_error(d, "y ~ x + (1 | g:zz)", EM_FAMILY_GAUSSIAN, 0, "no column 'zz'");
    expect_create_error(d, "y ~ x + (foo(x) | g)", EM_FAMILY_GAUSSIAN, 0, "unknown function 'foo'");
    expect_create_error(d, "y ~ x + (1 + x | g)", EM_FAMILY_POISSON, 0, "outside the poisson family's support");
    /* a power beyond the number of terms is the full set of interactions, as in R, however large
     * (the fuzzer's second find: (x + k)^1e300 converted 1e300 to an int) */
    for (int p = 0; p < 3; p++) {
        static const char *const pw[3] = {"y ~ (x + k)^2", "y ~ (x + k)^7777777777", "y ~ (x + k)^1e300"};
        em_frame *fr = NULL;
        em_error fe = {0};
        assert_int_equal(em_frame_parse_csv("d.csv", d, strlen(d), &fr, &fe), EM_OK);
        em_regression *r = NULL;
        if (em_regression_create(pw[p], fr, NULL, &r, &fe) != EM_OK) fail_msg("%s: %s", pw[p], fe.msg);
        assert_int_equal(em_regression_num_coefs(r), 3);
        assert_string_equal(em_regression_coef_name(r, 2), "x:k");
        em_regression_free(r);
        em_frame_free(fr);
    }
    const char *miss = "y,x\n1.5,0.1\nNA,0.7\n0.5,\n1.0,0.2\n2.0,0.9\n";
    expect_create_error(miss, "y ~ x", EM_FAMILY_GAUSSIAN, 0, "d.csv:3: a missing value in the response (2 rows");
    /* dropped, and counted */
    em_frame *f = NULL;
    em_error err = {0};
    assert_int_equal(em_frame_parse_csv("d.csv", miss, strlen(miss), &f, &err), EM_OK);
    em_regression_options o = {.drop_missing = 1};
    em_regression *r = NULL;
    assert_int_equal(em_regression_create("y ~ x", f, &o, &r, &err), EM_OK);
    assert_int_equal(em_regression_num_rows(r), 3);
    assert_int_equal(em_regression_num_dropped(r), 2);
    em_regression_free(r);
    em_frame_free(f);
    /* a bad prior line, with its caret; a prior that matches nothing */
    assert_int_equal(em_frame_parse_csv("d.csv", d, strlen(d), &f, &err), EM_OK);
    const char *bad[1] = {"b ~ normal(0, -1)"};
    o = (em_regression_options){.priors = bad, .npriors = 1};
    em_error e = {0};
    assert_int_equal(em_regression_create("y ~ x", f, &o, &r, &e), EM_ERR_PARSE);
    assert_non_null(strstr(e.msg, "must be positive"));
    const char *none[1] = {"sd ~ exponential(1)"};
    o.priors = none;
    em_error e2 = {0};
    assert_int_equal(em_regression_create("y ~ x", f, &o, &r, &e2), EM_ERR_ARG);
    assert_non_null(strstr(e2.msg, "matches no parameter"));
    em_frame_free(f);
}

static void test_default_priors(void **state) {
    (void)state;
    /* brms 2.18's get_prior on these data: student_t(3, 3.3, 2.5) on the Intercept (median
     * 3.26, mad 1.65: the scale stays 2.5), student_t(3, 0, 2.5) on sigma and sd */
    em_frame *f = frame(REF "gauss_vint.csv");
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create("y ~ x + trt + (1 | g)", f, NULL, &r, &err), EM_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_int_equal(em_regression_print_priors(r, m, &err), EM_OK);
    fclose(m);
    assert_non_null(strstr(buf, "(flat)                       b          x"));
    assert_non_null(strstr(buf, "student_t(3, 0, 2.5)         sd         Intercept            g"));
    assert_non_null(strstr(buf, "student_t(3, 0, 2.5)         sigma"));
    assert_non_null(strstr(buf, "student_t(3, "));
    free(buf);
    em_regression_free(r);
    em_frame_free(f);
}

/* ---- the families of issue 16: names, support, priors, log-likelihood, predictive draws ------------ */

static void test_family_names(void **state) {
    (void)state;
    em_error err = {0};
    for (int k = 0; k < EM_FAMILY_COUNT; k++) { /* every name reads back as its family */
        em_family f;
        assert_int_equal(em_family_from_name(em_family_name((em_family)k), &f, &err), EM_OK);
        assert_int_equal(f, k);
    }
    em_family f;
    em_link l;
    assert_int_equal(em_family_parse("Gamma", &f, &l, &err), EM_OK);
    assert_int_equal(f, EM_FAMILY_GAMMA);
    assert_int_equal(l, EM_LINK_DEFAULT);
    assert_int_equal(em_family_parse("Beta", &f, &l, &err), EM_OK);
    assert_int_equal(f, EM_FAMILY_BETA);
    assert_int_equal(em_family_parse("cumulative(\"probit\")", &f, &l, &err), EM_OK);
    assert_int_equal(f, EM_FAMILY_CUMULATIVE);
    assert_int_equal(l, EM_LINK_PROBIT);
    assert_int_equal(em_family_parse(" cumulative( link = 'logit' ) ", &f, &l, &err), EM_OK);
    assert_int_equal(l, EM_LINK_LOGIT);
    assert_int_equal(em_family_parse("Gamma(link = \"log\")", &f, &l, &err), EM_OK);
    assert_int_equal(f, EM_FAMILY_GAMMA);
    em_error e1 = {0}, e2 = {0}, e3 = {0};
    assert_int_equal(em_family_parse("poisson(\"probit\")", &f, &l, &e1), EM_ERR_ARG);
    assert_non_null(strstr(e1.msg, "family poisson takes the log link, not probit"));
    assert_int_equal(em_family_parse("gama", &f, &l, &e2), EM_ERR_ARG);
    assert_non_null(strstr(e2.msg, "unknown family 'gama'"));
    assert_non_null(strstr(e2.msg, "hurdle_negbinomial"));
    assert_int_equal(em_family_parse("cumulative(\"probit\"", &f, &l, &e3), EM_ERR_ARG);
    assert_non_null(strstr(e3.msg, "expected a name and optionally its link"));
}

static void test_family_data_errors(void **state) {
    (void)state;
    const char *d = "y,x,k,u,st,num,lo\n1.5,0.1,2,0.5,none,0,1\n2.5,0.7,0,0.2,right,1,2\n0.5,-0.3,3,0.9,left,-1,0.2\n"
                    "1.0,0.2,1,0.4,interval,2,0.5\n";
    const char *z = "y,x\n0,0.1\n2.5,0.7\n";
    expect_create_error(z, "y ~ x", EM_FAMILY_GAMMA, 0, "d.csv:2: response y = 0 is outside the gamma family's support: "
                                                        "the response must be positive");
    expect_create_error(z, "y ~ x", EM_FAMILY_WEIBULL, 0, "outside the weibull family's support");
    expect_create_error(z, "y ~ x", EM_FAMILY_LOGNORMAL, 0, "outside the lognormal family's support");
    expect_create_error(d, "y ~ x", EM_FAMILY_BETA, 0, "d.csv:2: response y = 1.5 is outside the beta family's support: "
                                                       "a beta response lies strictly between 0 and 1");
    expect_create_error(d, "y ~ x", EM_FAMILY_CUMULATIVE, 0, "d.csv:2: response y = 1.5 is outside the cumulative "
                                                             "family's support: an ordinal response is a category 1, 2");
    expect_create_error(d, "k ~ x", EM_FAMILY_CUMULATIVE, 0, "d.csv:3: response k = 0 is outside the cumulative");
    expect_create_error("y,x\n1,0.1\n1,0.7\n", "y ~ x", EM_FAMILY_CUMULATIVE, 0, "at least two categories");
    expect_create_error(d, "k + 1 ~ 0 + x", EM_FAMILY_CUMULATIVE, 0, "thresholds take the place of the intercept");
    expect_create_error(d, "y ~ x", EM_FAMILY_ZERO_INFLATED_POISSON, 0, "a count is a non-negative whole number");
    expect_create_error(d, "y ~ x", EM_FAMILY_HURDLE_NEGBINOMIAL, 0, "d.csv:2: response y = 1.5 is outside the "
                                                                    "hurdle_negbinomial family's support");
    /* cens() and trunc() */
    expect_create_error(d, "y | cens(x) ~ 1", EM_FAMILY_GAUSSIAN, 0, "d.csv:2: cens() = 0.1 is not -1 (left)");
    expect_create_error("y,s\n1,none\n2,up\n", "y | cens(s) ~ 1", EM_FAMILY_GAUSSIAN, 0,
                        "d.csv:3: cens(s) = 'up' is not left, none, right or interval");
    expect_create_error(d, "y | cens(st) ~ x", EM_FAMILY_GAMMA, 0, "d.csv:5: the row is interval-censored: give the upper "
                                                                   "ends as cens(c, y2)");
    expect_create_error(d, "y | cens(num, lo) ~ x", EM_FAMILY_LOGNORMAL, 0,
                        "d.csv:5: an interval-censored row needs y2 > y (y = 1, y2 = 0.5)");
    expect_create_error(d, "k | cens(st) ~ x", EM_FAMILY_POISSON, 0, "cens() needs a continuous family");
    expect_create_error(d, "y | trunc(lb = 1) ~ x", EM_FAMILY_GAUSSIAN, 0,
                        "d.csv:4: response y = 0.5 is outside its truncation bounds [1, inf]");
    expect_create_error(d, "y | trunc(lb = 3, ub = lo) ~ x", EM_FAMILY_GAUSSIAN, 0, "trunc() needs lb < ub (lb = 3, ub = 1)");
    expect_create_error(d, "y | trunc(low = 0) ~ x", EM_FAMILY_GAUSSIAN, 0, "trunc() takes lb and ub, not 'low'");
    expect_create_error(d, "y | trunc() ~ x", EM_FAMILY_GAUSSIAN, 0, "trunc() needs lb, ub or both");
    expect_create_error(d, "y | cens(st, lo) + trunc(lb = 0) ~ x", EM_FAMILY_GAUSSIAN, 0, "cens() and trunc() together");
    expect_create_error(d, "y | weights(x) ~ x", EM_FAMILY_GAUSSIAN, 0,
                        "d.csv:4: weights() = -0.3 is not a finite non-negative number");
    expect_create_error(d, "y | se(x) ~ x", EM_FAMILY_GAUSSIAN, 0, "'se()' on the response is not supported");
    /* a link the family does not have */
    em_frame *f = NULL;
    em_error err = {0};
    assert_int_equal(em_frame_parse_csv("d.csv", d, strlen(d), &f, &err), EM_OK);
    em_regression_options o = {.family = EM_FAMILY_GAMMA, .link = EM_LINK_PROBIT};
    em_regression *r = NULL;
    em_error e = {0};
    assert_int_equal(em_regression_create("y ~ x", f, &o, &r, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "family gamma takes the log link, not probit"));
    /* a prior on a parameter the family has not */
    const char *pr[1] = {"phi ~ gamma(1, 1)"};
    o = (em_regression_options){.family = EM_FAMILY_GAMMA, .priors = pr, .npriors = 1};
    em_error e2 = {0};
    assert_int_equal(em_regression_create("y ~ x", f, &o, &r, &e2), EM_ERR_ARG);
    assert_non_null(strstr(e2.msg, "matches no parameter"));
    em_frame_free(f);
}

static char *priors_text(const char *csv, const char *formula, em_family fam, const char *prior) {
    em_frame *f = NULL;
    em_error err = {0};
    assert_int_equal(em_frame_parse_csv("d.csv", csv, strlen(csv), &f, &err), EM_OK);
    const char *pr[1] = {prior};
    em_regression_options o = {.family = fam, .priors = pr, .npriors = prior ? 1 : 0};
    em_regression *r = NULL;
    if (em_regression_create(formula, f, &o, &r, &err) != EM_OK) fail_msg("%s", err.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_int_equal(em_regression_print_priors(r, m, &err), EM_OK);
    fclose(m);
    em_regression_free(r);
    em_frame_free(f);
    return buf;
}

static void expect_in(char *text, const char *what) {
    if (!strstr(text, what)) fail_msg("the priors lack '%s':\n%s", what, text);
}

static void test_family_priors(void **state) {
    (void)state;
    /* brms 2.18's get_prior: the Intercept's location and scale from log(y) for the log links
     * and lognormal (median log y = 2.3, mad 1.4826 * 2.303 = 3.4 here), none for logit and
     * cumulative */
    const char *d = "y,x,k\n1,0.1,1\n10,0.7,2\n100,-0.3,3\n0.5,0.2,1\n30,1.1,2\n";
    char *t = priors_text(d, "y ~ x", EM_FAMILY_GAMMA, NULL);
    expect_in(t, "student_t(3, 2.3, 3.4)       Intercept");
    expect_in(t, "gamma(0.01, 0.01)            shape");
    free(t);
    t = priors_text(d, "y ~ x", EM_FAMILY_LOGNORMAL, NULL);
    expect_in(t, "student_t(3, 2.3, 3.4)       Intercept");
    expect_in(t, "student_t(3, 0, 3.4)         sigma");
    free(t);
    t = priors_text(d, "y ~ x", EM_FAMILY_WEIBULL, NULL);
    expect_in(t, "gamma(0.01, 0.01)            shape");
    free(t);
    t = priors_text("y,x\n0.1,0.1\n0.5,0.7\n0.9,-0.3\n", "y ~ x", EM_FAMILY_BETA, NULL);
    expect_in(t, "student_t(3, 0, 2.5)         Intercept");
    expect_in(t, "gamma(0.01, 0.01)            phi");
    free(t);
    t = priors_text(d, "k ~ x", EM_FAMILY_CUMULATIVE, NULL);
    expect_in(t, "student_t(3, 0, 2.5)         Intercept");
    assert_null(strstr(t, "sigma"));
    free(t);
    t = priors_text(d, "k ~ x", EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL, "zi ~ beta(2, 5)");
    expect_in(t, "gamma(0.01, 0.01)            shape");
    expect_in(t, "beta(2, 5)                   zi");
    expect_in(t, "student_t(3, 0.7, 2.5)       Intercept"); /* log of the counts, as brms (get_prior, 2.18) */
    free(t);
    t = priors_text(d, "k ~ x", EM_FAMILY_HURDLE_POISSON, NULL);
    expect_in(t, "beta(1, 1)                   hu");
    free(t);
}

/* One small fit per family: the log-likelihood of every draw and row against the density
 * written out here from brms's parameter names, and the predictive draws inside the support. */
typedef struct family_case {
    em_family fam;
    em_link link;
    const char *formula;
    double y[24];
    const char *cens[24]; /* or NULL */
} family_case;

static double log_phi_ccdf(double z) { return log(gsl_sf_erf_Q(z)); }

static double nb_lpmf(double k, double mu, double phi) {
    return gsl_sf_lngamma(k + phi) - gsl_sf_lngamma(phi) - gsl_sf_lngamma(k + 1) + phi * log(phi / (phi + mu)) +
           k * log(mu / (phi + mu));
}

/* log p(y | draw) written from brms's definitions of each family */
static double direct_lpdf(const family_case *c, double y, const char *cens, double eta, const double *th, double sh,
                          double sigma, double phi, double zi) {
    double mu = exp(eta);
    switch (c->fam) {
    case EM_FAMILY_GAMMA: return log(gsl_ran_gamma_pdf(y, sh, mu / sh));
    case EM_FAMILY_LOGNORMAL: return log(gsl_ran_lognormal_pdf(y, eta, sigma));
    case EM_FAMILY_BETA: {
        double m = 1 / (1 + exp(-eta));
        return log(gsl_ran_beta_pdf(y, m * phi, (1 - m) * phi));
    }
    case EM_FAMILY_WEIBULL: {
        double scale = mu / gsl_sf_gamma(1 + 1 / sh);
        if (cens && !strcmp(cens, "right")) return -pow(y / scale, sh);
        if (cens && !strcmp(cens, "left")) return log1p(-exp(-pow(y / scale, sh)));
        return log(gsl_ran_weibull_pdf(y, scale, sh));
    }
    case EM_FAMILY_GAUSSIAN: /* trunc(lb = 0) */
        return log(gsl_ran_gaussian_pdf(y - eta, sigma)) - log_phi_ccdf(-eta / sigma);
    case EM_FAMILY_CUMULATIVE: {
        int k = (int)y; /* P(y = k) = F(θ_k - η) - F(θ_{k-1} - η) */
        double hi = k <= 3 ? th[k - 1] - eta : INFINITY, lo = k >= 2 ? th[k - 2] - eta : -INFINITY;
        double Fh, Fl;
        if (c->link == EM_LINK_PROBIT) Fh = gsl_cdf_ugaussian_P(hi), Fl = gsl_cdf_ugaussian_P(lo);
        else Fh = 1 / (1 + exp(-hi)), Fl = 1 / (1 + exp(-lo));
        return log(Fh - Fl);
    }
    case EM_FAMILY_ZERO_INFLATED_POISSON:
        return y == 0 ? log(zi + (1 - zi) * exp(-mu)) : log(1 - zi) + log(gsl_ran_poisson_pdf((unsigned)y, mu));
    case EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL:
        return y == 0 ? log(zi + (1 - zi) * exp(nb_lpmf(0, mu, sh))) : log(1 - zi) + nb_lpmf(y, mu, sh);
    case EM_FAMILY_HURDLE_POISSON:
        return y == 0 ? log(zi) : log(1 - zi) + log(gsl_ran_poisson_pdf((unsigned)y, mu)) - log1p(-exp(-mu));
    case EM_FAMILY_HURDLE_NEGBINOMIAL:
        return y == 0 ? log(zi) : log(1 - zi) + nb_lpmf(y, mu, sh) - log1p(-exp(nb_lpmf(0, mu, sh)));
    default: fail_msg("no direct density for %s", em_family_name(c->fam));
    }
    return NAN;
}

static int in_support(em_family fam, double v) {
    switch (fam) {
    case EM_FAMILY_GAMMA:
    case EM_FAMILY_LOGNORMAL:
    case EM_FAMILY_WEIBULL: return v > 0 && isfinite(v);
    case EM_FAMILY_GAUSSIAN: return v >= 0 && isfinite(v); /* truncated at 0 */
    case EM_FAMILY_BETA: return v > 0 && v < 1;
    case EM_FAMILY_CUMULATIVE: return v == 1 || v == 2 || v == 3 || v == 4;
    default: return v >= 0 && v == floor(v);
    }
}

static void run_family_case(const family_case *c) {
    const size_t n = 24;
    char csv[4096];
    size_t at = (size_t)snprintf(csv, sizeof csv, "y,x,st,w\n");
    double x[24], w[24];
    int weighted = strstr(c->formula, "weights(w)") != NULL;
    for (size_t i = 0; i < n; i++) {
        x[i] = round(1e4 * sin(1.0 + 1.7 * (double)i)) / 1e4;
        w[i] = weighted ? 0.5 * (double)(i % 4) : 1.0; /* weight 0 included: the row counts for nothing */
        at += (size_t)snprintf(csv + at, sizeof csv - at, "%.17g,%.4f,%s,%g\n", c->y[i], x[i],
                               c->cens[i] ? c->cens[i] : "none", w[i]);
    }
    em_frame *f = NULL;
    em_error err = {0};
    assert_int_equal(em_frame_parse_csv("fam.csv", csv, at, &f, &err), EM_OK);
    em_regression_options o = {.family = c->fam, .link = c->link};
    em_regression *r = NULL;
    if (em_regression_create(c->formula, f, &o, &r, &err) != EM_OK) fail_msg("%s: %s", c->formula, err.msg);
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_chains = 2;
    cfg.num_warmup = 300;
    cfg.num_samples = 40;
    cfg.seed = 7;
    em_posterior *p = NULL;
    if (em_regression_fit(r, &cfg, &p, &err) != EM_OK) fail_msg("%s %s: %s", em_family_name(c->fam), c->formula, err.msg);
    double *ll = NULL, *yrep = NULL;
    size_t S = 0, S2 = 0;
    if (em_regression_log_lik(r, &ll, &S, &err) != EM_OK) fail_msg("%s: %s", em_family_name(c->fam), err.msg);
    assert_int_equal(em_regression_yrep(r, &yrep, &S2, &err), EM_OK);
    assert_int_equal(S, 80);
    assert_int_equal(S2, 80);
    /* brms's parameters, by their names */
    double b0[80], b1[80], th[3][80], sh[80], sg[80], ph[80], zi[80];
    const char *dpar = NULL;
    int cum = c->fam == EM_FAMILY_CUMULATIVE;
    if (cum)
        for (int k = 0; k < 3; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "b_Intercept[%d]", k + 1);
            if (em_posterior_draws(p, nm, th[k], &err) != EM_OK) fail_msg("%s", err.msg);
        }
    else assert_int_equal(em_posterior_draws(p, "b_Intercept", b0, &err), EM_OK);
    assert_int_equal(em_posterior_draws(p, "b_x", b1, &err), EM_OK);
    switch (c->fam) {
    case EM_FAMILY_GAMMA:
    case EM_FAMILY_WEIBULL: dpar = "shape"; break;
    case EM_FAMILY_LOGNORMAL:
    case EM_FAMILY_GAUSSIAN: dpar = "sigma"; break;
    case EM_FAMILY_BETA: dpar = "phi"; break;
    default: break;
    }
    if (dpar) assert_int_equal(em_posterior_draws(p, dpar, !strcmp(dpar, "sigma") ? sg : !strcmp(dpar, "phi") ? ph : sh, &err), EM_OK);
    if (c->fam == EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL || c->fam == EM_FAMILY_HURDLE_NEGBINOMIAL)
        assert_int_equal(em_posterior_draws(p, "shape", sh, &err), EM_OK);
    if (c->fam == EM_FAMILY_ZERO_INFLATED_POISSON || c->fam == EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL)
        assert_int_equal(em_posterior_draws(p, "zi", zi, &err), EM_OK);
    if (c->fam == EM_FAMILY_HURDLE_POISSON || c->fam == EM_FAMILY_HURDLE_NEGBINOMIAL)
        assert_int_equal(em_posterior_draws(p, "hu", zi, &err), EM_OK);
    double worst = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < n; i++) {
            double t3[3] = {cum ? th[0][s] : 0, cum ? th[1][s] : 0, cum ? th[2][s] : 0};
            double eta = (cum ? 0 : b0[s]) + b1[s] * x[i];
            double want = w[i] * direct_lpdf(c, c->y[i], c->cens[i], eta, t3, sh[s], sg[s], ph[s], zi[s]);
            double got = ll[s * n + i];
            double e = fabs(got - want) / (1 + fabs(want));
            if (e > worst) worst = e;
            if (!(e < 1e-8))
                fail_msg("%s (%s), draw %zu, row %zu: log_lik %.15g, direct %.15g", em_family_name(c->fam), c->formula, s, i,
                         got, want);
            if (!in_support(c->fam, yrep[s * n + i]))
                fail_msg("%s: predictive draw %zu of row %zu is %g, outside the support", em_family_name(c->fam), s, i,
                         yrep[s * n + i]);
        }
    /* loo runs on it (every family has pointwise terms) */
    em_loo_result *loo = NULL;
    if (em_regression_loo(r, &loo, NULL, &err) != EM_OK) fail_msg("%s loo: %s", em_family_name(c->fam), err.msg);
    em_loo_free(loo);
    print_message("%-26s %-28s log_lik of %zu draws x %zu rows within %.1e of the direct density\n",
                  em_family_name(c->fam), c->formula, S, n, worst);
    free(ll);
    free(yrep);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(f);
}

static void test_family_loglik_yrep(void **state) {
    (void)state;
    static const family_case cases[] = {
        {EM_FAMILY_GAMMA, 0, "y ~ x", {1.2, 0.4, 2.2, 3.1, 0.7, 1.9, 0.3, 1.1, 2.8, 0.9, 1.5, 0.6, 4.0, 1.3, 0.8, 2.0, 1.7, 0.5, 2.5, 1.0, 0.2, 3.3, 1.4, 0.9}, {0}},
        {EM_FAMILY_LOGNORMAL, 0, "y ~ x", {1.2, 0.4, 2.2, 3.1, 0.7, 1.9, 0.3, 1.1, 2.8, 0.9, 1.5, 0.6, 4.0, 1.3, 0.8, 2.0, 1.7, 0.5, 2.5, 1.0, 0.2, 3.3, 1.4, 0.9}, {0}},
        {EM_FAMILY_BETA, 0, "y ~ x", {0.2, 0.4, 0.65, 0.8, 0.1, 0.5, 0.33, 0.71, 0.9, 0.45, 0.25, 0.6, 0.15, 0.55, 0.38, 0.82, 0.47, 0.3, 0.68, 0.52, 0.05, 0.77, 0.42, 0.58}, {0}},
        {EM_FAMILY_WEIBULL, 0, "y | cens(st) ~ x", {1.2, 0.4, 2.2, 3.1, 0.7, 1.9, 0.3, 1.1, 2.8, 0.9, 1.5, 0.6, 4.0, 1.3, 0.8, 2.0, 1.7, 0.5, 2.5, 1.0, 0.2, 3.3, 1.4, 0.9},
         {"none", "none", "right", "none", "left", "none", "none", "right", "none", "none", "none", "right", "none", "none", "none", "right", "none", "none", "none", "none", "left", "right", "none", "none"}},
        {EM_FAMILY_GAUSSIAN, 0, "y | trunc(lb = 0) ~ x", {1.2, 0.4, 2.2, 3.1, 0.7, 1.9, 0.3, 1.1, 2.8, 0.9, 1.5, 0.6, 4.0, 1.3, 0.8, 2.0, 1.7, 0.5, 2.5, 1.0, 0.2, 3.3, 1.4, 0.9}, {0}},
        {EM_FAMILY_CUMULATIVE, 0, "y ~ x", {1, 2, 4, 3, 1, 2, 2, 3, 4, 1, 3, 2, 4, 1, 2, 3, 3, 1, 4, 2, 1, 4, 2, 3}, {0}},
        {EM_FAMILY_CUMULATIVE, EM_LINK_PROBIT, "y ~ x", {1, 2, 4, 3, 1, 2, 2, 3, 4, 1, 3, 2, 4, 1, 2, 3, 3, 1, 4, 2, 1, 4, 2, 3}, {0}},
        {EM_FAMILY_ZERO_INFLATED_POISSON, 0, "y ~ x", {0, 2, 0, 3, 1, 0, 4, 0, 2, 5, 0, 1, 0, 3, 2, 0, 6, 0, 1, 2, 0, 0, 3, 1}, {0}},
        {EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL, 0, "y ~ x", {0, 2, 0, 3, 1, 0, 4, 0, 2, 5, 0, 1, 0, 3, 2, 0, 6, 0, 1, 2, 0, 0, 3, 1}, {0}},
        {EM_FAMILY_HURDLE_POISSON, 0, "y ~ x", {0, 2, 0, 3, 1, 0, 4, 0, 2, 5, 0, 1, 0, 3, 2, 0, 6, 0, 1, 2, 0, 0, 3, 1}, {0}},
        {EM_FAMILY_HURDLE_NEGBINOMIAL, 0, "y ~ x", {0, 2, 0, 3, 1, 0, 4, 0, 2, 5, 0, 1, 0, 3, 2, 0, 6, 0, 1, 2, 0, 0, 3, 1}, {0}},
        /* weights(), alone and with cens() */
        {EM_FAMILY_ZERO_INFLATED_POISSON, 0, "y | weights(w) ~ x", {0, 2, 0, 3, 1, 0, 4, 0, 2, 5, 0, 1, 0, 3, 2, 0, 6, 0, 1, 2, 0, 0, 3, 1}, {0}},
        {EM_FAMILY_WEIBULL, 0, "y | weights(w) + cens(st) ~ x", {1.2, 0.4, 2.2, 3.1, 0.7, 1.9, 0.3, 1.1, 2.8, 0.9, 1.5, 0.6, 4.0, 1.3, 0.8, 2.0, 1.7, 0.5, 2.5, 1.0, 0.2, 3.3, 1.4, 0.9},
         {"none", "none", "right", "none", "left", "none", "none", "right", "none", "none", "none", "right", "none", "none", "none", "right", "none", "none", "none", "none", "left", "right", "none", "none"}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) run_family_case(&cases[k]);
}

/* ---- posteriors against brms ----------------------------------------------------------------------- */

static void compare_with_brms(const char *name) {
    char path[256], line[512];
    snprintf(path, sizeof path, REF "%s.spec", name);
    FILE *sf = fopen(path, "r");
    if (!sf) fail_msg("%s is missing (tests/r/brms_reference.R makes it)", path);
    char formula[512] = "", family[512] = "";
    const char *priors[8];
    char pbuf[8][512];
    size_t np = 0;
    while (fgets(line, sizeof line, sf)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "formula: ", 9)) snprintf(formula, sizeof formula, "%s", line + 9);
        else if (!strncmp(line, "family: ", 8)) snprintf(family, sizeof family, "%s", line + 8);
        else if (!strncmp(line, "prior: ", 7) && line[7] && np < 8) { /* "prior: " alone: none */
            snprintf(pbuf[np], sizeof pbuf[np], "%s", line + 7);
            priors[np] = pbuf[np];
            np++;
        }
    }
    fclose(sf);
    snprintf(path, sizeof path, REF "%s.csv", name);
    em_frame *f = frame(path);
    em_regression_options o = {0};
    em_error err = {0};
    assert_int_equal(em_family_from_name(family, &o.family, &err), EM_OK);
    o.priors = priors;
    o.npriors = np;
    em_regression *r = NULL;
    if (em_regression_create(formula, f, &o, &r, &err) != EM_OK) fail_msg("%s: %s", name, err.msg);
    em_mcmc_config c = em_mcmc_config_default();
    c.num_samples = 2500;
    c.target_accept = 0.95;
    c.seed = 99;
    em_posterior *p = NULL;
    if (em_regression_fit(r, &c, &p, &err) != EM_OK) fail_msg("%s: %s", name, err.msg);
    em_summary *s = NULL;
    assert_int_equal(em_posterior_summary(p, &s, &err), EM_OK);
    /* the brms summary: variable, mean, sd, mcse_mean */
    snprintf(path, sizeof path, REF "%s_brms.csv", name);
    em_csv_options co = {0};
    const char *tc[1] = {"variable"};
    co.text_columns = tc;
    co.ntext_columns = 1;
    const char *cols[3] = {"mean", "sd", "mcse_mean"};
    em_csv_table *ref = NULL;
    assert_int_equal(em_csv_read(path, cols, 3, &co, &ref, &err), EM_OK);
    char *const *var = em_csv_text_column(ref, "variable");
    size_t matched = 0;
    double worst_z = 0, worst_sd = 0;
    for (size_t i = 0; i < ref->nrows; i++) {
        const em_param_summary *ps = NULL;
        for (size_t k = 0; k < s->nparams; k++)
            if (!strcmp(s->params[k].name, var[i])) ps = &s->params[k];
        if (!ps) fail_msg("%s: brms has '%s', Ember has no such parameter", name, var[i]);
        double bm = ref->cols[0][i], bsd = ref->cols[1][i], bmc = ref->cols[2][i];
        double tol = 4.0 * sqrt(bmc * bmc + ps->mcse_mean * ps->mcse_mean);
        double z = fabs(ps->mean - bm) / sqrt(bmc * bmc + ps->mcse_mean * ps->mcse_mean);
        double dsd = fabs(ps->sd - bsd) / bsd;
        if (z > worst_z) worst_z = z;
        if (dsd > worst_sd) worst_sd = dsd;
        if (!(fabs(ps->mean - bm) <= tol))
            fail_msg("%s: %s mean %.5g, brms %.5g (tolerance %.3g = 4 combined MCSE)", name, var[i], ps->mean, bm, tol);
        if (!(dsd <= 0.10)) fail_msg("%s: %s sd %.5g, brms %.5g (more than 10%% apart)", name, var[i], ps->sd, bsd);
        matched++;
    }
    print_message("%-13s %2zu parameters agree with brms: largest |mean diff| %.2f combined MCSE, largest sd diff %.1f%%\n",
                  name, matched, worst_z, 100 * worst_sd);
    assert_true(matched >= 2);
    em_csv_table_free(ref);
    em_summary_free(s);
    em_posterior_free(p);
    em_regression_free(r);
    em_frame_free(f);
}

/* ---- weights ------------------------------------------------------------------------------------- */

/* brms's weights(): the log density with a weight of 2 on a row and 0 on another is the log
 * density of the data with the first row twice and the second left out (at the same θ, with
 * its gradient), for a fused-GLM family and a plain one; log_lik is weighted as brms's is; a
 * negative weight is an error naming its line. */
static void test_weights(void **state) {
    (void)state;
    const char *w = "y,k,x,w\n1.2,3,0.5,2\n-0.3,0,-1.1,0\n0.8,2,0.2,1\n2.1,5,1.4,1\n0.1,1,-0.6,1\n1.7,4,0.9,1\n";
    const char *dup = "y,k,x\n1.2,3,0.5\n1.2,3,0.5\n0.8,2,0.2\n2.1,5,1.4\n0.1,1,-0.6\n1.7,4,0.9\n";
    const char *const pri[1] = {"sigma ~ exponential(1)"};
    for (int fam = 0; fam < 2; fam++) {
        em_frame *fw = NULL, *fd = NULL;
        em_error err = {0};
        assert_int_equal(em_frame_parse_csv("w.csv", w, strlen(w), &fw, &err), EM_OK);
        assert_int_equal(em_frame_parse_csv("dup.csv", dup, strlen(dup), &fd, &err), EM_OK);
        em_regression_options o = {.family = fam ? EM_FAMILY_NEGBINOMIAL : EM_FAMILY_GAUSSIAN, .priors = pri,
                                   .npriors = fam ? 0 : 1};
        em_regression *rw = NULL, *rd = NULL;
        const char *fw_text = fam ? "k | weights(w) ~ 0 + x" : "y | weights(w) ~ 0 + x";
        if (em_regression_create(fw_text, fw, &o, &rw, &err) != EM_OK) fail_msg("%s", err.msg);
        assert_int_equal(em_regression_create(fam ? "k ~ 0 + x" : "y ~ 0 + x", fd, &o, &rd, &err), EM_OK);
        em_logdensity *lw = em_logdensity_from_model(em_regression_model, rw, NULL, &err);
        em_logdensity *ldd = em_logdensity_from_model(em_regression_model, rd, NULL, &err);
        assert_non_null(lw);
        assert_non_null(ldd);
        assert_int_equal(em_logdensity_dim(lw), 2);
        const double th[2] = {0.4, -0.2};
        double a, b, ga[2], gb[2];
        assert_int_equal(em_logdensity_eval(lw, th, &a, ga, &err), EM_OK);
        assert_int_equal(em_logdensity_eval(ldd, th, &b, gb, &err), EM_OK);
        tu_assert_close(a, b, 1e-12, 1e-12);
        tu_assert_close(ga[0], gb[0], 1e-12, 1e-12);
        tu_assert_close(ga[1], gb[1], 1e-12, 1e-12);
        em_logdensity_destroy(lw);
        em_logdensity_destroy(ldd);
        /* log_lik: w_i log p(y_i); the weight-0 row scores 0, the weight-2 row twice the first copy */
        em_mcmc_config c = em_mcmc_config_default();
        c.num_chains = 1, c.num_warmup = 100, c.num_samples = 20, c.seed = 4;
        em_posterior *pw = NULL;
        assert_int_equal(em_regression_fit(rw, &c, &pw, &err), EM_OK);
        em_predictive *ll = NULL;
        assert_int_equal(em_posterior_log_lik(em_regression_internal_fit(rw), "y", &ll, &err), EM_OK);
        const em_pred_site *ls = em_predictive_site(ll, "y");
        double bx[20], sg[20];
        assert_int_equal(em_posterior_draws(pw, "b_x", bx, &err), EM_OK);
        if (!fam) assert_int_equal(em_posterior_draws(pw, "sigma", sg, &err), EM_OK);
        for (size_t s = 0; s < 20; s++) {
            assert_true(ls->draws[s * 6 + 1] == 0.0);
            if (fam) continue;
            double e = (1.2 - 0.5 * bx[s]) / sg[s];
            tu_assert_close(ls->draws[s * 6], 2 * (-0.9189385332046728 - log(sg[s]) - 0.5 * e * e), 1e-12, 1e-12);
        }
        em_predictive_free(ll);
        em_posterior_free(pw);
        em_regression_free(rw);
        em_regression_free(rd);
        em_frame_free(fw);
        em_frame_free(fd);
    }
    expect_create_error("y,x,w\n1,2,1\n2,3,-1\n3,1,1\n", "y | weights(w) ~ x", EM_FAMILY_GAUSSIAN, 0,
                        "d.csv:3: weights() = -1");
}

/* SVI on a formula: the same brms names as NUTS, means within 0.2 posterior sd of NUTS's (a
 * near-Gaussian posterior, where a mean-field guide's means are right), and the Pareto k̂ verdict
 * printed in the summary. */
static void test_svi(void **state) {
    (void)state;
    em_frame *f = frame(REF "gauss_vint.csv");
    em_regression *r = NULL;
    em_error err = {0};
    assert_int_equal(em_regression_create("y ~ x + trt", f, NULL, &r, &err), EM_OK);
    em_svi_fit_config sc = em_svi_fit_config_default();
    sc.seed = 3;
    em_posterior *vi = NULL, *nuts = NULL;
    if (em_regression_fit_svi(r, &sc, &vi, &err) != EM_OK) fail_msg("%s", err.msg);
    assert_int_equal(em_posterior_method_of(vi), EM_POSTERIOR_VARIATIONAL);
    double k = em_posterior_psis_k(vi);
    assert_true(k < 0.7);
    em_mcmc_config c = em_mcmc_config_default();
    c.seed = 3;
    assert_int_equal(em_regression_fit(r, &c, &nuts, &err), EM_OK);
    static const char *const names[5] = {"b_Intercept", "b_x", "b_trtdrugA", "b_trtdrugB", "sigma"};
    double x[4000], worst = 0;
    for (int j = 0; j < 5; j++) {
        assert_int_equal(em_posterior_draws(vi, names[j], x, &err), EM_OK);
        double mv = em_mean(x, 1000);
        assert_int_equal(em_posterior_draws(nuts, names[j], x, &err), EM_OK);
        double mn = em_mean(x, 4000), sd = em_sd(x, 4000), z = fabs(mv - mn) / sd;
        if (z > worst) worst = z;
        if (!(z < 0.2)) fail_msg("%s: SVI mean %.4g, NUTS %.4g (sd %.3g)", names[j], mv, mn, sd);
    }
    print_message("SVI: Pareto k-hat %.2f; means within %.3f posterior sd of NUTS's\n", k, worst);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    em_regression_free(r);
    assert_int_equal(em_regression_create("y ~ x + trt", f, NULL, &r, &err), EM_OK);
    em_posterior_free(vi);
    assert_int_equal(em_regression_fit_svi(r, &sc, &vi, &err), EM_OK);
    assert_int_equal(em_regression_print_summary(r, vi, mem, &err), EM_OK);
    fclose(mem);
    if (!strstr(buf, "variational approximation") || !strstr(buf, ": the approximation is usable"))
        fail_msg("the summary of an SVI fit lacks its verdict:\n%s", buf);
    free(buf);
    em_posterior_free(vi);
    em_posterior_free(nuts);
    em_regression_free(r);
    em_frame_free(f);
}

static void test_brms_gauss_vint(void **state) { (void)state; compare_with_brms("gauss_vint"); }
static void test_brms_gauss_vslope(void **state) { (void)state; compare_with_brms("gauss_vslope"); }
static void test_brms_bern(void **state) { (void)state; compare_with_brms("bern"); }
static void test_brms_binom_vint(void **state) { (void)state; compare_with_brms("binom_vint"); }
static void test_brms_pois_unc(void **state) { (void)state; compare_with_brms("pois_unc"); }
static void test_brms_negbin(void **state) { (void)state; compare_with_brms("negbin"); }
static void test_brms_student(void **state) { (void)state; compare_with_brms("student"); }
static void test_brms_nested(void **state) { (void)state; compare_with_brms("nested"); }
static void test_brms_weibull_cens(void **state) { (void)state; compare_with_brms("weibull_cens"); }
static void test_brms_cumul(void **state) { (void)state; compare_with_brms("cumul"); }
static void test_brms_gamma(void **state) { (void)state; compare_with_brms("gamma"); }
static void test_brms_zip(void **state) { (void)state; compare_with_brms("zip"); }
static void test_brms_beta(void **state) { (void)state; compare_with_brms("beta"); }
static void test_brms_weibull_wcens(void **state) { (void)state; compare_with_brms("weibull_wcens"); }
static void test_brms_gauss_trunc(void **state) { (void)state; compare_with_brms("gauss_trunc"); }
static void test_brms_lognormal(void **state) { (void)state; compare_with_brms("lognormal"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_errors),     cmocka_unit_test(test_model_matrix),
        cmocka_unit_test(test_data_errors),       cmocka_unit_test(test_default_priors),
        cmocka_unit_test(test_weights),          cmocka_unit_test(test_svi),
        cmocka_unit_test(test_brms_gauss_vint),   cmocka_unit_test(test_brms_gauss_vslope),
        cmocka_unit_test(test_brms_bern),         cmocka_unit_test(test_brms_binom_vint),
        cmocka_unit_test(test_brms_pois_unc),     cmocka_unit_test(test_brms_negbin),
        cmocka_unit_test(test_brms_student),      cmocka_unit_test(test_brms_nested),
        cmocka_unit_test(test_family_names),      cmocka_unit_test(test_family_data_errors),
        cmocka_unit_test(test_family_priors),     cmocka_unit_test(test_family_loglik_yrep),
        cmocka_unit_test(test_brms_weibull_cens), cmocka_unit_test(test_brms_cumul),
        cmocka_unit_test(test_brms_gamma),        cmocka_unit_test(test_brms_zip),
        cmocka_unit_test(test_brms_beta),         cmocka_unit_test(test_brms_weibull_wcens),
        cmocka_unit_test(test_brms_gauss_trunc),  cmocka_unit_test(test_brms_lognormal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
