/* regression.c — a formula bound to data as an Ember model: priors, the model function, the fit
 * and brms's names and summary. See formula.h.
 *
 * The model is brms's (its generated Stan code for these families, read as a specification):
 * population-level columns centred, a flat prior on their coefficients b, the centred
 * Intercept with a Student-t prior, and each group-level term non-centred,
 *     r_g = diag(sd_g) · L_g · z_g,   z_g ~ Normal(0, 1),   L_g ~ LKJCholesky(eta),
 * added to the linear predictor by gathering each row's level (no dense design matrix for the
 * groups). The likelihood uses Ember's fused GLMs where one exists (gaussian, bernoulli,
 * poisson), so a gradient costs one pass over the population-level design matrix.
 * Positive parameters (sigma, sd, shape, nu - 1) are flat on the positive line with their
 * prior added as a factor: a Student-t prior on sigma is then the half-Student-t brms uses.
 */
#include "internal/formula_impl.h"
#include "internal/frame_impl.h"
#include "internal/posterior_impl.h"
#include "internal/sort.h"
#include "ember/linalg.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the families: one row each (brms 2.18's names, links and distributional parameters) -------- */

static const em_family_info families[EM_FAMILY_COUNT] = {
    [EM_FAMILY_GAUSSIAN] = {"gaussian", NULL, EM_LINK_IDENTITY, EM_DP_SIGMA, EM_PRIOR_FROM_Y, 1},
    [EM_FAMILY_STUDENT] = {"student", NULL, EM_LINK_IDENTITY, EM_DP_SIGMA | EM_DP_NU, EM_PRIOR_FROM_Y, 1},
    [EM_FAMILY_BERNOULLI] = {"bernoulli", NULL, EM_LINK_LOGIT, 0, EM_PRIOR_FIXED, 0},
    [EM_FAMILY_BINOMIAL] = {"binomial", NULL, EM_LINK_LOGIT, 0, EM_PRIOR_FIXED, 0},
    [EM_FAMILY_POISSON] = {"poisson", NULL, EM_LINK_LOG, 0, EM_PRIOR_FROM_LOG_Y, 0},
    [EM_FAMILY_NEGBINOMIAL] = {"negbinomial", NULL, EM_LINK_LOG, EM_DP_SHAPE, EM_PRIOR_FROM_LOG_Y, 0},
    [EM_FAMILY_GAMMA] = {"gamma", "Gamma", EM_LINK_LOG, EM_DP_SHAPE, EM_PRIOR_FROM_LOG_Y, 1},
    /* brms's has_logscale: the defaults come from log(y) although the link is the identity */
    [EM_FAMILY_LOGNORMAL] = {"lognormal", NULL, EM_LINK_IDENTITY, EM_DP_SIGMA, EM_PRIOR_FROM_LOG_Y, 1},
    [EM_FAMILY_BETA] = {"beta", "Beta", EM_LINK_LOGIT, EM_DP_PHI, EM_PRIOR_FIXED, 1},
    [EM_FAMILY_CUMULATIVE] = {"cumulative", NULL, EM_LINK_LOGIT, 0, EM_PRIOR_FIXED, 0},
    [EM_FAMILY_ZERO_INFLATED_POISSON] = {"zero_inflated_poisson", NULL, EM_LINK_LOG, EM_DP_ZI, EM_PRIOR_FROM_LOG_Y, 0},
    [EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL] = {"zero_inflated_negbinomial", NULL, EM_LINK_LOG, EM_DP_SHAPE | EM_DP_ZI,
                                             EM_PRIOR_FROM_LOG_Y, 0},
    [EM_FAMILY_HURDLE_POISSON] = {"hurdle_poisson", NULL, EM_LINK_LOG, EM_DP_HU, EM_PRIOR_FROM_LOG_Y, 0},
    [EM_FAMILY_HURDLE_NEGBINOMIAL] = {"hurdle_negbinomial", NULL, EM_LINK_LOG, EM_DP_SHAPE | EM_DP_HU,
                                      EM_PRIOR_FROM_LOG_Y, 0},
    [EM_FAMILY_WEIBULL] = {"weibull", NULL, EM_LINK_LOG, EM_DP_SHAPE, EM_PRIOR_FROM_LOG_Y, 1},
};

/* The distributional parameters in the order brms's summary lists them, with their names. */
static const struct {
    unsigned bit;
    const char *name;
} dpar_names[] = {{EM_DP_SIGMA, "sigma"}, {EM_DP_NU, "nu"}, {EM_DP_SHAPE, "shape"},
                  {EM_DP_PHI, "phi"},     {EM_DP_ZI, "zi"}, {EM_DP_HU, "hu"}};
#define NDPARS (sizeof dpar_names / sizeof *dpar_names)

const em_family_info *em_family_info_of(em_family f) {
    return (unsigned)f < EM_FAMILY_COUNT ? &families[f] : &families[EM_FAMILY_GAUSSIAN];
}

const char *em_family_name(em_family f) { return (unsigned)f < EM_FAMILY_COUNT ? families[f].name : "unknown"; }

static const char *const link_names[EM_LINK_COUNT] = {"default", "identity", "log", "logit", "probit"};

const char *em_link_name(em_link l) { return (unsigned)l < EM_LINK_COUNT ? link_names[l] : "unknown"; }

em_status em_link_from_name(const char *name, em_link *out, em_error *err) {
    for (int k = 1; name && k < EM_LINK_COUNT; k++)
        if (!strcmp(name, link_names[k])) {
            *out = (em_link)k;
            return EM_OK;
        }
    return em_error_set(err, EM_ERR_ARG, "unknown link '%s' (known: identity, log, logit, probit)", name ? name : "(null)");
}

em_status em_family_from_name(const char *name, em_family *out, em_error *err) {
    for (int k = 0; name && k < EM_FAMILY_COUNT; k++)
        if (!strcmp(name, families[k].name) || (families[k].alias && !strcmp(name, families[k].alias))) {
            *out = (em_family)k;
            return EM_OK;
        }
    em_buf b = {0};
    for (int k = 0; k < EM_FAMILY_COUNT; k++) em_buf_printf(&b, "%s%s", k ? ", " : "", families[k].name);
    em_status s = em_error_set(err, EM_ERR_ARG, "unknown family '%s' (known: %s)", name ? name : "(null)",
                               b.data && !b.failed ? b.data : "");
    em_buf_free(&b);
    return s;
}

/* The links a family takes: its default, and probit beside logit for cumulative (brms has more;
 * Ember's ordinal densities are these two). */
static int link_allowed(em_family f, em_link l) {
    return l == EM_LINK_DEFAULT || l == families[f].link || (f == EM_FAMILY_CUMULATIVE && l == EM_LINK_PROBIT);
}

static em_link link_of(em_family f, em_link l) { return l == EM_LINK_DEFAULT ? families[f].link : l; }

static em_status link_error(em_error *err, em_family f, em_link l) {
    return em_error_set(err, EM_ERR_ARG, "family %s takes the %s link%s, not %s", families[f].name,
                        link_names[families[f].link], f == EM_FAMILY_CUMULATIVE ? " or probit" : "", em_link_name(l));
}

em_status em_family_parse(const char *spec, em_family *family, em_link *link, em_error *err) {
    if (!spec || !family || !link) return em_error_set(err, EM_ERR_ARG, "em_family_parse: NULL argument");
    /* name, then optionally ( [link =] "l" | 'l' | l ) */
    const char *p = spec;
    while (isspace((unsigned char)*p)) p++;
    const char *n0 = p;
    while (isalnum((unsigned char)*p) || *p == '_') p++;
    char name[64], lname[32] = "";
    snprintf(name, sizeof name, "%.*s", (int)(p - n0), n0);
    while (isspace((unsigned char)*p)) p++;
    if (*p == '(') {
        p++;
        while (isspace((unsigned char)*p)) p++;
        if (!strncmp(p, "link", 4) && !isalnum((unsigned char)p[4])) {
            const char *q = p + 4;
            while (isspace((unsigned char)*q)) q++;
            if (*q == '=') {
                p = q + 1;
                while (isspace((unsigned char)*p)) p++;
            }
        }
        char quote = (*p == '"' || *p == '\'') ? *p++ : 0;
        const char *l0 = p;
        while (isalnum((unsigned char)*p) || *p == '_') p++;
        snprintf(lname, sizeof lname, "%.*s", (int)(p - l0), l0);
        if (quote && *p == quote) p++;
        else if (quote) p = "?";
        while (isspace((unsigned char)*p)) p++;
        if (*p == ')') p++;
        else p = "?";
        while (isspace((unsigned char)*p)) p++;
    }
    if (*p)
        return em_error_set(err, EM_ERR_ARG, "family '%s': expected a name and optionally its link, e.g. "
                                             "cumulative(\"probit\")", spec);
    em_family f;
    em_status s = em_family_from_name(name, &f, err);
    if (s != EM_OK) return s;
    em_link l = EM_LINK_DEFAULT;
    if (lname[0] && (s = em_link_from_name(lname, &l, err)) != EM_OK) return s;
    if (!link_allowed(f, l)) return link_error(err, f, l);
    *family = f;
    *link = l;
    return EM_OK;
}

/* ---- priors ------------------------------------------------------------------------------------ */

typedef enum {
    PR_FLAT, PR_NORMAL, PR_STUDENT_T, PR_CAUCHY, PR_EXPONENTIAL, PR_GAMMA, PR_LOGNORMAL, PR_BETA, PR_LKJ, PR_COUNT
} prior_kind;
static const char *const prior_names[PR_COUNT] = {"flat", "normal", "student_t", "cauchy", "exponential", "gamma",
                                                  "lognormal", "beta", "lkj"};
static const int prior_nargs[PR_COUNT] = {0, 2, 3, 2, 1, 2, 2, 2, 1};

typedef struct prior {
    prior_kind kind;
    double a[3];
} prior;

typedef struct prior_rule { /* one user line: class, optional group and coefficient */
    char cls[16], group[128], coef[128];
    prior p;
} prior_rule;

static void prior_text(const prior *p, em_buf *b) {
    if (p->kind == PR_FLAT) {
        em_buf_printf(b, "(flat)");
        return;
    }
    em_buf_printf(b, "%s(", prior_names[p->kind]);
    for (int k = 0; k < prior_nargs[p->kind]; k++) em_buf_printf(b, "%s%g", k ? ", " : "", p->a[k]);
    em_buf_printf(b, ")");
}

/* log density of a prior at v (a var of any length), one scalar var */
static em_var prior_lp(em_model *m, const prior *p, em_var v) {
    em_dist d;
    switch (p->kind) {
    case PR_NORMAL: d = em_normal(m, p->a[0], p->a[1]); break;
    case PR_STUDENT_T: d = em_student_t(m, p->a[0], p->a[1], p->a[2]); break;
    case PR_CAUCHY: d = em_cauchy(m, p->a[0], p->a[1]); break;
    case PR_EXPONENTIAL: d = em_exponential(m, p->a[0]); break;
    case PR_GAMMA: d = em_gamma(m, p->a[0], p->a[1]); break;
    case PR_LOGNORMAL: d = em_lognormal(m, p->a[0], p->a[1]); break;
    case PR_BETA: d = em_beta(m, p->a[0], p->a[1]); break;
    default: return em_scalar(em_model_tape(m), 0.0);
    }
    return em_dist_log_prob(&d, v);
}

static em_status prior_error(em_error *err, const char *line, size_t at, const char *what) {
    char caret[160];
    size_t k = 0;
    for (; k < at && k < 150; k++) caret[k] = ' ';
    caret[k++] = '^';
    caret[k] = '\0';
    return em_error_set(err, EM_ERR_PARSE, "prior: %s at column %zu\n  %s\n  %s", what, at + 1, line, caret);
}

/* "class[_group[__coef]] ~ dist(args)" or "b_coef ~ ..." */
static em_status parse_prior(const char *line, prior_rule *r, em_error *err) {
    memset(r, 0, sizeof *r);
    const char *tilde = strchr(line, '~');
    if (!tilde) return prior_error(err, line, strlen(line), "no '~' (write it as 'b ~ normal(0, 1)')");
    char target[256];
    size_t tl = 0;
    for (const char *c = line; c < tilde && tl < sizeof target - 1; c++)
        if (!isspace((unsigned char)*c)) target[tl++] = *c;
    target[tl] = '\0';
    if (!tl) return prior_error(err, line, 0, "no parameter class before '~'");
    static const char *const classes[] = {"Intercept", "b", "sigma", "sd", "cor", "nu", "shape", "phi", "zi", "hu"};
    int found = 0;
    for (size_t k = 0; k < sizeof classes / sizeof *classes && !found; k++) {
        size_t cl = strlen(classes[k]);
        if (!strncmp(target, classes[k], cl) && (target[cl] == '\0' || target[cl] == '_')) {
            snprintf(r->cls, sizeof r->cls, "%s", classes[k]);
            const char *rest = target[cl] ? target + cl + 1 : "";
            if (!strcmp(classes[k], "b")) snprintf(r->coef, sizeof r->coef, "%s", rest);
            else if (!strcmp(classes[k], "sd") || !strcmp(classes[k], "cor")) {
                const char *dd = strstr(rest, "__");
                if (dd) {
                    snprintf(r->group, sizeof r->group, "%.*s", (int)(dd - rest), rest);
                    snprintf(r->coef, sizeof r->coef, "%s", dd + 2);
                } else snprintf(r->group, sizeof r->group, "%s", rest);
            } else if (*rest) return prior_error(err, line, 0, "this class takes no coefficient");
            found = 1;
        }
    }
    if (!found)
        return prior_error(err, line, 0, "unknown class (known: b, b_<coef>, Intercept, sigma, sd, sd_<group>, "
                                         "sd_<group>__<coef>, cor, cor_<group>, nu, shape, phi, zi, hu)");
    const char *p = tilde + 1;
    while (isspace((unsigned char)*p)) p++;
    size_t at = (size_t)(p - line);
    char dname[32];
    size_t dl = 0;
    while ((isalnum((unsigned char)*p) || *p == '_') && dl < sizeof dname - 1) dname[dl++] = *p++;
    dname[dl] = '\0';
    int kind = -1;
    for (int k = 0; k < PR_COUNT; k++)
        if (!strcmp(dname, prior_names[k])) kind = k;
    if (kind < 0)
        return prior_error(err, line, at, "unknown distribution (known: flat, normal, student_t, cauchy, exponential, "
                                          "gamma, lognormal, beta, lkj)");
    r->p.kind = (prior_kind)kind;
    while (isspace((unsigned char)*p)) p++;
    int na = 0;
    if (*p == '(') {
        p++;
        while (1) {
            while (isspace((unsigned char)*p)) p++;
            if (*p == ')') break;
            char *end;
            double v = strtod(p, &end);
            if (end == p || na >= 3) return prior_error(err, line, (size_t)(p - line), "expected a number");
            r->p.a[na++] = v;
            p = end;
            while (isspace((unsigned char)*p)) p++;
            if (*p == ',') p++;
            else if (*p != ')') return prior_error(err, line, (size_t)(p - line), "expected ',' or ')'");
        }
        p++;
    }
    while (isspace((unsigned char)*p)) p++;
    if (*p) return prior_error(err, line, (size_t)(p - line), "unexpected text after the distribution");
    if (na != prior_nargs[kind])
        return prior_error(err, line, at, kind == PR_FLAT ? "flat takes no arguments" : "wrong number of arguments");
    const double *a = r->p.a;
    int ok = 1;
    switch (kind) {
    case PR_NORMAL:
    case PR_CAUCHY:
    case PR_LOGNORMAL: ok = isfinite(a[0]) && a[1] > 0 && isfinite(a[1]); break;
    case PR_STUDENT_T: ok = a[0] > 0 && isfinite(a[1]) && a[2] > 0 && isfinite(a[2]); break;
    case PR_EXPONENTIAL: ok = a[0] > 0 && isfinite(a[0]); break;
    case PR_GAMMA:
    case PR_BETA: ok = a[0] > 0 && a[1] > 0 && isfinite(a[0]) && isfinite(a[1]); break;
    case PR_LKJ: ok = a[0] > 0 && isfinite(a[0]); break;
    default: break;
    }
    if (!ok) return prior_error(err, line, at, "invalid arguments (a scale, rate, shape or df must be positive)");
    int is_cor = !strcmp(r->cls, "cor");
    if (is_cor != (kind == PR_LKJ))
        return prior_error(err, line, at, is_cor ? "cor takes lkj(eta)" : "lkj is for cor only");
    return EM_OK;
}

/* ---- the regression ------------------------------------------------------------------------------- */

struct em_regression {
    em_formula *formula;
    em_family family;
    em_link link;        /* resolved: never EM_LINK_DEFAULT */
    em_design d;
    double *ycat;        /* cumulative: the response as Ember's categories 0..K-1 */
    char *data_name;
    prior *b_prior;      /* [P] */
    prior intercept_prior;
    prior dpar_prior[NDPARS]; /* sigma, nu, shape, phi, zi, hu (dpar_names' order) */
    prior **sd_prior;    /* [ngroups][K] */
    prior *cor_prior;    /* [ngroups] */
    em_posterior *internal; /* the last fit, in the model's own names */
};

em_family em_regression_family(const em_regression *r) { return r->family; }
em_link em_regression_link(const em_regression *r) { return r->link; }
size_t em_regression_num_rows(const em_regression *r) { return r->d.n; }
size_t em_regression_num_dropped(const em_regression *r) { return r->d.dropped; }
size_t em_regression_num_coefs(const em_regression *r) { return r->d.P; }
const char *em_regression_coef_name(const em_regression *r, size_t j) { return j < r->d.P ? r->d.names[j] : NULL; }
const double *em_regression_design(const em_regression *r) { return r->d.X; }
int em_regression_has_intercept(const em_regression *r) { return r->d.intercept; }

void em_regression_free(em_regression *r) {
    if (!r) return;
    for (size_t g = 0; g < r->d.ngroups && r->sd_prior; g++) free(r->sd_prior[g]);
    free(r->sd_prior);
    free(r->cor_prior);
    free(r->b_prior);
    free(r->ycat);
    em_design_free(&r->d);
    em_formula_free(r->formula);
    em_posterior_free(r->internal);
    free(r->data_name);
    free(r);
}

static double median_of(double *x, size_t n) {
    em_sort_doubles(x, n);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* R's round(x, 1) (to even at a tie, as IEC 60559 and R do for representable ties) */
static double round1(double x) { return nearbyint(x * 10.0) / 10.0; }

/* brms 2.18's default Student-t location and scale from the response on the link scale */
static void default_scale(const em_regression *r, double *loc, double *scale) {
    *loc = 0.0;
    *scale = 2.5;
    em_prior_source src = families[r->family].prior;
    if (src == EM_PRIOR_FIXED) return;
    size_t n = r->d.n;
    double *y = malloc(n * sizeof *y), *dev = malloc(n * sizeof *dev);
    if (!y || !dev) {
        free(y);
        free(dev);
        return;
    }
    int logl = src == EM_PRIOR_FROM_LOG_Y;
    for (size_t i = 0; i < n; i++) y[i] = logl ? log(r->d.y[i] == 0 ? 0.1 : r->d.y[i]) : r->d.y[i];
    double med = median_of(y, n);
    for (size_t i = 0; i < n; i++) dev[i] = fabs(y[i] - med);
    double mad = 1.4826 * median_of(dev, n);
    double s = round1(mad);
    if (isfinite(s) && s > *scale) *scale = s;
    *loc = round1(med);
    free(y);
    free(dev);
}

/* The index of a distributional parameter's class in dpar_names, or -1. */
static int dpar_index(const char *cls) {
    for (size_t k = 0; k < NDPARS; k++)
        if (!strcmp(cls, dpar_names[k].name)) return (int)k;
    return -1;
}

static int rule_matches_group(const prior_rule *pr, const em_group_term *gt) {
    return !pr->group[0] || !strcmp(pr->group, gt->group);
}

em_status em_regression_create(const char *formula, const em_frame *data, const em_regression_options *opt,
                               em_regression **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_regression_create: out is NULL");
    *out = NULL;
    if (!data) return em_error_set(err, EM_ERR_ARG, "em_regression_create: no data");
    em_regression_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    if ((unsigned)o.family >= EM_FAMILY_COUNT)
        return em_error_set(err, EM_ERR_ARG, "em_regression_create: family %d is out of range", (int)o.family);
    em_regression *r = calloc(1, sizeof *r);
    if (!r) return em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    r->family = o.family;
    em_status s = EM_OK;
    if ((unsigned)o.link >= EM_LINK_COUNT || !link_allowed(o.family, o.link)) s = link_error(err, o.family, o.link);
    r->link = link_of(o.family, o.link);
    if (s == EM_OK) s = em_formula_parse(formula, &r->formula, err);
    if (s == EM_OK) s = em_design_build(r->formula, data, o.family, o.drop_missing, &r->d, err);
    if (s == EM_OK && o.family == EM_FAMILY_CUMULATIVE && !r->d.intercept)
        s = em_error_set(err, EM_ERR_ARG, "formula: a cumulative model's thresholds take the place of the intercept; "
                                          "write it without '0 +' or '- 1'");
    if (s == EM_OK && o.family == EM_FAMILY_CUMULATIVE) {
        /* Ember's ordinal densities take the categories 0..K-1 */
        if (!(r->ycat = malloc(r->d.n * sizeof *r->ycat))) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
        for (size_t i = 0; s == EM_OK && i < r->d.n; i++) r->ycat[i] = r->d.y[i] - 1.0;
    }
    if (s == EM_OK && !(r->data_name = strdup(data->name))) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    if (s == EM_OK && !r->d.intercept && r->d.P == 0 && r->d.ngroups == 0)
        s = em_error_set(err, EM_ERR_ARG, "formula: no terms to estimate ('%s' has no intercept and no predictors)",
                         formula);
    /* the defaults */
    double loc, scale;
    if (s == EM_OK) {
        default_scale(r, &loc, &scale);
        r->intercept_prior = (prior){PR_STUDENT_T, {3, loc, scale}};
        /* brms 2.18: sigma student_t(3, 0, scale), nu gamma(2, 0.1), shape and phi gamma(0.01,
         * 0.01), zi and hu beta(1, 1) */
        static const prior fixed[NDPARS] = {{PR_STUDENT_T, {3, 0, 0}}, {PR_GAMMA, {2, 0.1, 0}},
                                            {PR_GAMMA, {0.01, 0.01, 0}}, {PR_GAMMA, {0.01, 0.01, 0}},
                                            {PR_BETA, {1, 1, 0}},        {PR_BETA, {1, 1, 0}}};
        memcpy(r->dpar_prior, fixed, sizeof fixed);
        r->dpar_prior[0].a[2] = scale;
        r->b_prior = calloc(r->d.P ? r->d.P : 1, sizeof *r->b_prior); /* flat */
        r->sd_prior = calloc(r->d.ngroups ? r->d.ngroups : 1, sizeof *r->sd_prior);
        r->cor_prior = calloc(r->d.ngroups ? r->d.ngroups : 1, sizeof *r->cor_prior);
        if (!r->b_prior || !r->sd_prior || !r->cor_prior) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
        for (size_t g = 0; s == EM_OK && g < r->d.ngroups; g++) {
            r->sd_prior[g] = malloc(r->d.groups[g].K * sizeof **r->sd_prior);
            if (!r->sd_prior[g]) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            for (size_t k = 0; s == EM_OK && k < r->d.groups[g].K; k++) r->sd_prior[g][k] = (prior){PR_STUDENT_T, {3, 0, scale}};
            r->cor_prior[g] = (prior){PR_LKJ, {1, 0, 0}};
        }
    }
    /* the user's, in order */
    for (size_t q = 0; s == EM_OK && q < o.npriors; q++) {
        prior_rule pr;
        if (!o.priors[q]) {
            s = em_error_set(err, EM_ERR_ARG, "prior %zu is NULL", q + 1);
            break;
        }
        if ((s = parse_prior(o.priors[q], &pr, err)) != EM_OK) break;
        int used = 0;
        if (!strcmp(pr.cls, "b")) {
            for (size_t j = 0; j < r->d.P; j++) {
                em_buf nm = {0};
                em_brms_rename(r->d.names[j], &nm);
                if (!pr.coef[0] || (nm.data && !strcmp(nm.data, pr.coef))) r->b_prior[j] = pr.p, used = 1;
                em_buf_free(&nm);
            }
        } else if (!strcmp(pr.cls, "Intercept")) {
            r->intercept_prior = pr.p, used = r->d.intercept;
        } else if (dpar_index(pr.cls) >= 0) {
            int k = dpar_index(pr.cls);
            r->dpar_prior[k] = pr.p, used = (families[r->family].dpars & dpar_names[k].bit) != 0;
        } else {
            for (size_t g = 0; g < r->d.ngroups; g++) {
                const em_group_term *gt = &r->d.groups[g];
                if (!rule_matches_group(&pr, gt)) continue;
                if (!strcmp(pr.cls, "cor")) {
                    if (gt->correlated) r->cor_prior[g] = pr.p, used = 1;
                    continue;
                }
                for (size_t k = 0; k < gt->K; k++)
                    if (!pr.coef[0] || !strcmp(pr.coef, gt->names[k])) r->sd_prior[g][k] = pr.p, used = 1;
            }
        }
        if (!used)
            s = em_error_set(err, EM_ERR_ARG, "prior '%s' matches no parameter of this model (see the priors with "
                                              "--print-priors)", o.priors[q]);
        if (s == EM_OK && pr.p.kind == PR_FLAT && strcmp(pr.cls, "b") && strcmp(pr.cls, "Intercept"))
            s = em_error_set(err, EM_ERR_ARG, "prior '%s': a flat prior on a scale is improper", o.priors[q]);
    }
    if (s != EM_OK) {
        em_regression_free(r);
        return s;
    }
    *out = r;
    return EM_OK;
}

em_status em_regression_print_priors(const em_regression *r, FILE *f, em_error *err) {
    if (!r || !f) return em_error_set(err, EM_ERR_ARG, "em_regression_print_priors: NULL argument");
    em_buf b = {0};
    em_buf_printf(&b, "%-28s %-10s %-20s %s\n", "prior", "class", "coef", "group");
    em_buf pt = {0};
#define ROW(P, CLS, COEF, GRP)                                                                \
    do {                                                                                      \
        pt.len = 0;                                                                           \
        prior_text(P, &pt);                                                                   \
        em_buf_append(&pt, "", 1);                                                            \
        em_buf_printf(&b, "%-28s %-10s %-20s %s\n", pt.data ? pt.data : "", CLS, COEF, GRP);  \
    } while (0)
    for (size_t j = 0; j < r->d.P; j++) {
        em_buf nm = {0};
        em_brms_rename(r->d.names[j], &nm);
        ROW(&r->b_prior[j], "b", nm.data ? nm.data : "", "");
        em_buf_free(&nm);
    }
    if (r->d.intercept) ROW(&r->intercept_prior, "Intercept", "", "");
    for (size_t g = 0; g < r->d.ngroups; g++) {
        const em_group_term *gt = &r->d.groups[g];
        if (gt->correlated) ROW(&r->cor_prior[g], "L", "", gt->group);
        for (size_t k = 0; k < gt->K; k++) ROW(&r->sd_prior[g][k], "sd", gt->names[k], gt->group);
    }
    for (size_t k = 0; k < NDPARS; k++)
        if (families[r->family].dpars & dpar_names[k].bit) ROW(&r->dpar_prior[k], dpar_names[k].name, "", "");
#undef ROW
    em_buf_free(&pt);
    int ok = !b.failed && fwrite(b.data, 1, b.len, f) == b.len;
    em_buf_free(&b);
    return ok ? EM_OK : em_error_set(err, EM_ERR_IO, "em_regression_print_priors: write failed");
}

/* ---- the model ---------------------------------------------------------------------------------- */

/* Σ of the prior terms of v's elements (those with a proper prior) */
static em_var elementwise_priors(em_model *m, const prior *p, size_t n, em_var v, em_var acc) {
    int same = 1;
    for (size_t j = 1; j < n; j++) same &= p[j].kind == p[0].kind && !memcmp(p[j].a, p[0].a, sizeof p[0].a);
    if (same) return p[0].kind == PR_FLAT ? acc : em_add(m, acc, prior_lp(m, &p[0], v));
    for (size_t j = 0; j < n; j++)
        if (p[j].kind != PR_FLAT) acc = em_add(m, acc, prior_lp(m, &p[j], em_slice(m, v, j, 1)));
    return acc;
}

/* What the likelihood is made of: the centred design X (invalid without columns), b, the
 * intercept plus the group-level terms and offsets a (scalar or one per row), the thresholds
 * (cumulative) and the distributional parameters in dpar_names' order. */
typedef struct lik_parts {
    em_var X, b, a, cuts;
    const em_var *dp;
} lik_parts;

enum { DPI_SIGMA, DPI_NU, DPI_SHAPE, DPI_PHI, DPI_ZI, DPI_HU }; /* indices into dpar_names */

/* A trunc() bound as a var: one scalar when every row has the same (the usual constant). */
static em_var bound_var(em_model *m, const double *v, size_t n) {
    size_t i = 1;
    while (i < n && v[i] == v[0]) i++;
    return i == n ? em_scalar(em_model_tape(m), v[0]) : em_data(m, v, n);
}

/* The response's distribution, one case per family. A fused GLM (one node, one pass over X)
 * wherever Ember has one and no censoring or truncation needs the family's CDFs. */
static em_dist likelihood(em_model *m, const em_regression *r, const lik_parts *p) {
    const em_design *d = &r->d;
    size_t n = d->n;
    int fused = !d->cens && !d->lb && !d->weights && d->P; /* the fused kernels take no weights */
    switch (r->family) { /* the families with a fused GLM */
    case EM_FAMILY_GAUSSIAN:
    case EM_FAMILY_BERNOULLI:
    case EM_FAMILY_POISSON:
    case EM_FAMILY_NEGBINOMIAL:
    case EM_FAMILY_GAMMA: break;
    case EM_FAMILY_CUMULATIVE: fused = fused && r->link == EM_LINK_LOGIT && !d->ngroups; break;
    default: fused = 0;
    }
    const em_var *dp = p->dp;
    em_var X = p->X, b = p->b, a = p->a;
    em_var eta = fused ? EM_VAR_INVALID : d->P ? em_matvec_add(m, X, b, a) : a;
    em_dist base;
    switch (r->family) {
    case EM_FAMILY_GAUSSIAN:
        base = fused ? em_normal_id_glm(m, X, a, b, dp[DPI_SIGMA]) : em_normal(m, eta, dp[DPI_SIGMA]);
        break;
    case EM_FAMILY_STUDENT: base = em_student_t(m, dp[DPI_NU], eta, dp[DPI_SIGMA]); break;
    case EM_FAMILY_BERNOULLI: base = fused ? em_bernoulli_logit_glm(m, X, a, b) : em_bernoulli_logit(m, eta); break;
    case EM_FAMILY_BINOMIAL: base = em_binomial_logit(m, d->trials, n, eta); break;
    case EM_FAMILY_POISSON: base = fused ? em_poisson_log_glm(m, X, a, b) : em_poisson_log(m, eta); break;
    case EM_FAMILY_NEGBINOMIAL:
        base = fused ? em_neg_binomial2_log_glm(m, X, a, b, dp[DPI_SHAPE], NULL)
                     : em_neg_binomial2_log(m, eta, dp[DPI_SHAPE]);
        break;
    case EM_FAMILY_GAMMA: /* mean e^eta: rate = shape e^-eta (the plain Gamma has the CDFs censoring needs) */
        base = fused ? em_gamma_log_glm(m, X, a, b, dp[DPI_SHAPE], NULL)
                     : em_gamma(m, dp[DPI_SHAPE], em_mul(m, dp[DPI_SHAPE], em_exp(m, em_neg(m, eta))));
        break;
    case EM_FAMILY_LOGNORMAL: base = em_lognormal(m, eta, dp[DPI_SIGMA]); break;
    case EM_FAMILY_BETA: { /* brms's mean / precision: Beta(mu phi, (1 - mu) phi) */
        em_var mu = em_sigmoid(m, eta);
        base = em_beta(m, em_mul(m, mu, dp[DPI_PHI]), em_mul(m, em_sub(m, 1.0, mu), dp[DPI_PHI]));
        break;
    }
    case EM_FAMILY_CUMULATIVE:
        if (fused) /* the offset is the GLM's own argument; a holds nothing else */
            base = em_ordered_logistic_glm(m, X, b, p->cuts, d->offset);
        else if (r->link == EM_LINK_PROBIT) base = em_ordered_probit(m, eta, p->cuts);
        else base = em_ordered_logistic(m, eta, p->cuts);
        break;
    case EM_FAMILY_ZERO_INFLATED_POISSON: base = em_zero_inflated_poisson(m, em_exp(m, eta), dp[DPI_ZI]); break;
    case EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL:
        base = em_zero_inflated_neg_binomial2(m, em_exp(m, eta), dp[DPI_SHAPE], dp[DPI_ZI]);
        break;
    case EM_FAMILY_HURDLE_POISSON: base = em_hurdle_poisson(m, em_exp(m, eta), dp[DPI_HU]); break;
    case EM_FAMILY_HURDLE_NEGBINOMIAL: base = em_hurdle_neg_binomial2(m, em_exp(m, eta), dp[DPI_SHAPE], dp[DPI_HU]); break;
    case EM_FAMILY_WEIBULL: { /* brms: mean mu = e^eta, scale mu / Γ(1 + 1/shape) */
        em_var shape = dp[DPI_SHAPE];
        em_var lg = em_lgamma(m, em_add(m, em_div(m, 1.0, shape), 1.0));
        base = em_weibull(m, shape, em_exp(m, em_sub(m, eta, lg)));
        break;
    }
    default: base = em_normal(m, eta, 1.0); break; /* unreachable: the family was checked */
    }
    if (em_dist_event_len(&base) == 1 && base.batch_len == 1 && n > 1) base = em_expand(base, n);
    if (d->cens) base = em_censored(&base, d->cens, d->cens_upper, n);
    else if (d->lb) base = em_truncated(m, &base, bound_var(m, d->lb, n), bound_var(m, d->ub, n));
    return d->weights ? em_weighted(&base, d->weights, n) : base;
}

void em_regression_model(em_model *m, const void *arg) {
    const em_regression *r = arg;
    const em_design *d = &r->d;
    em_tape *t = em_model_tape(m);
    size_t n = d->n;
    em_var lp_priors = em_scalar(t, 0.0);
    em_var b = EM_VAR_INVALID, alpha = EM_VAR_INVALID, extra = EM_VAR_INVALID;
    if (d->P) {
        b = em_sample(m, "b", em_flat(m, d->P));
        lp_priors = elementwise_priors(m, r->b_prior, d->P, b, lp_priors);
    }
    if (d->intercept && r->family == EM_FAMILY_CUMULATIVE) {
        /* brms's ordered thresholds: a free vector through the ordered transform, its
         * Jacobian in the factor (the thresholds are flat up to their prior, as in Stan) */
        static const em_transform ord = {EM_TRANSFORM_ORDERED, 0, 0};
        em_var raw = em_sample(m, "Intercept_raw", em_flat(m, d->ncat - 1));
        em_var logdet = em_scalar(t, 0.0);
        alpha = em_transform_forward(t, &ord, raw, &logdet);
        lp_priors = em_add(m, lp_priors, logdet);
        if (r->intercept_prior.kind != PR_FLAT) lp_priors = em_add(m, lp_priors, prior_lp(m, &r->intercept_prior, alpha));
    } else if (d->intercept) {
        const prior *ip = &r->intercept_prior;
        alpha = em_sample(m, "Intercept", em_flat(m, 1)); /* its prior as a factor, like the others */
        if (ip->kind != PR_FLAT) lp_priors = em_add(m, lp_priors, prior_lp(m, ip, alpha));
    }
    /* the distributional parameters, each flat on its support with its prior as a factor */
    em_var dp[NDPARS];
    for (size_t k = 0; k < NDPARS; k++) {
        dp[k] = EM_VAR_INVALID;
        unsigned bit = dpar_names[k].bit;
        if (!(families[r->family].dpars & bit)) continue;
        if (bit == EM_DP_NU) /* brms's nu > 1: a positive nu - 1 (the shift has a unit Jacobian) */
            dp[k] = em_add(m, em_sample(m, "nu_minus_1", em_flat_positive(m, 1)), 1.0);
        else if (bit == EM_DP_ZI || bit == EM_DP_HU)
            dp[k] = em_sample(m, dpar_names[k].name, em_dist_improper_uniform(t, (em_support){EM_SUPPORT_UNIT, 0, 1}, 1));
        else
            dp[k] = em_sample(m, dpar_names[k].name, em_flat_positive(m, 1));
        lp_priors = em_add(m, lp_priors, prior_lp(m, &r->dpar_prior[k], dp[k]));
    }
    /* group-level terms: r = diag(sd) L z, gathered per row */
    for (size_t g = 0; g < d->ngroups; g++) {
        const em_group_term *gt = &d->groups[g];
        char nm[32];
        size_t K = gt->K, J = gt->J;
        snprintf(nm, sizeof nm, "sd_%zu", g + 1);
        em_var sd = em_sample(m, nm, em_flat_positive(m, K));
        lp_priors = elementwise_priors(m, r->sd_prior[g], K, sd, lp_priors);
        snprintf(nm, sizeof nm, "z_%zu", g + 1);
        em_var z = em_sample(m, nm, em_expand(em_normal(m, 0.0, 1.0), K * J));
        em_var L = EM_VAR_INVALID;
        if (gt->correlated) {
            snprintf(nm, sizeof nm, "L_%zu", g + 1);
            L = em_sample(m, nm, em_lkj_cholesky(m, K, r->cor_prior[g].a[0]));
        }
        for (size_t k = 0; k < K; k++) {
            em_var row = em_slice(m, z, k * J, J); /* (L z)_k = Σ_{j<=k} L_kj z_j */
            if (gt->correlated) {
                row = em_mul(m, em_slice(m, L, k * K, 1), em_slice(m, z, 0, J));
                for (size_t j = 1; j <= k; j++)
                    row = em_add(m, row, em_mul(m, em_slice(m, L, k * K + j, 1), em_slice(m, z, j * J, J)));
            }
            em_var rk = em_mul(m, em_slice(m, sd, k, 1), row);
            em_var term = em_gather(m, rk, gt->index, n);
            int ones = 1;
            for (size_t i = 0; i < n && ones; i++) ones = gt->Z[k * n + i] == 1.0;
            if (!ones) term = em_mul(m, term, em_data(m, gt->Z + k * n, n));
            extra = em_var_ok(extra) ? em_add(m, extra, term) : term;
        }
    }
    if (d->offset) {
        em_var off = em_data(m, d->offset, n);
        extra = em_var_ok(extra) ? em_add(m, extra, off) : off;
    }
    em_factor(m, "priors", lp_priors);
    lik_parts lp = {.X = d->P ? em_data_matrix(m, d->Xc, n, d->P) : EM_VAR_INVALID, .b = b, .dp = dp};
    if (r->family == EM_FAMILY_CUMULATIVE) {
        /* the thresholds hold the intercept; the linear predictor is everything else */
        lp.cuts = alpha;
        lp.a = em_var_ok(extra) ? extra : em_scalar(t, 0.0);
    } else {
        lp.a = em_var_ok(alpha) ? (em_var_ok(extra) ? em_add(m, alpha, extra) : alpha)
                                : (em_var_ok(extra) ? extra : em_scalar(t, 0.0));
    }
    em_dist lik = likelihood(m, r, &lp);
    em_observe(m, "y", lik, r->ycat ? r->ycat : d->y, n);
}

/* ---- brms's names for the draws ------------------------------------------------------------------ */

static long col_of(const em_posterior *p, const char *site, size_t len, size_t i) {
    char nm[64];
    if (len == 1) snprintf(nm, sizeof nm, "%s", site);
    else snprintf(nm, sizeof nm, "%s.%zu", site, i + 1);
    for (size_t j = 0; j < p->ncols; j++)
        if (!strcmp(p->names[j], nm)) return (long)j;
    return -1;
}

static long col_of_L(const em_posterior *p, size_t g, size_t r, size_t c) {
    char nm[64];
    snprintf(nm, sizeof nm, "L_%zu.%zu.%zu", g + 1, r + 1, c + 1);
    for (size_t j = 0; j < p->ncols; j++)
        if (!strcmp(p->names[j], nm)) return (long)j;
    return -1;
}

/* brms_row reads the model's columns by name, in an order that the design alone fixes: its first
 * call records the columns it looks up, and the later calls (one per draw) replay them, so the
 * draws cost no name lookups. */
typedef struct {
    const em_posterior *p;
    long *cols;
    size_t n, cap, at;
    int recording, failed; /* failed: 1 out of memory, 2 a column the model lacks */
} col_plan;

static long plan_take(col_plan *cp, long j) {
    if (j < 0) cp->failed = 2;
    if (cp->n == cp->cap) {
        size_t cap = cp->cap ? 2 * cp->cap : 64;
        long *c = realloc(cp->cols, cap * sizeof *c);
        if (!c) {
            cp->failed = 1;
            return 0;
        }
        cp->cols = c;
        cp->cap = cap;
    }
    cp->cols[cp->n++] = j;
    return j < 0 ? 0 : j;
}

static long plan_col(col_plan *cp, const char *site, size_t len, size_t i) {
    return cp->recording ? plan_take(cp, col_of(cp->p, site, len, i)) : cp->cols[cp->at++];
}

static long plan_col_L(col_plan *cp, size_t g, size_t r, size_t c) {
    return cp->recording ? plan_take(cp, col_of_L(cp->p, g, r, c)) : cp->cols[cp->at++];
}

static em_status brms_names(const em_regression *r, em_buf *names, size_t *count) {
    const em_design *d = &r->d;
    size_t n = 0;
#define NAME(...)                                \
    do {                                         \
        em_buf_printf(names, __VA_ARGS__);       \
        em_buf_append(names, "", 1);             \
        n++;                                     \
    } while (0)
    if (d->intercept && r->family == EM_FAMILY_CUMULATIVE)
        for (size_t k = 0; k + 1 < d->ncat; k++) NAME("b_Intercept[%zu]", k + 1);
    else if (d->intercept) NAME("b_Intercept");
    for (size_t j = 0; j < d->P; j++) {
        em_buf nm = {0};
        em_brms_rename(d->names[j], &nm);
        NAME("b_%s", nm.data ? nm.data : "");
        em_buf_free(&nm);
    }
    for (size_t g = 0; g < d->ngroups; g++)
        for (size_t k = 0; k < d->groups[g].K; k++) NAME("sd_%s__%s", d->groups[g].group, d->groups[g].names[k]);
    for (size_t g = 0; g < d->ngroups; g++)
        if (d->groups[g].correlated)
            for (size_t a = 0; a < d->groups[g].K; a++)
                for (size_t c = a + 1; c < d->groups[g].K; c++)
                    NAME("cor_%s__%s__%s", d->groups[g].group, d->groups[g].names[a], d->groups[g].names[c]);
    for (size_t k = 0; k < NDPARS; k++)
        if (families[r->family].dpars & dpar_names[k].bit) NAME("%s", dpar_names[k].name);
    /* r_g[level,term] in brms; a CSV header cannot hold the comma, so it is a '.' here */
    for (size_t g = 0; g < d->ngroups; g++)
        for (size_t k = 0; k < d->groups[g].K; k++)
            for (size_t j = 0; j < d->groups[g].J; j++)
                NAME("r_%s[%s.%s]", d->groups[g].group, d->groups[g].levels[j], d->groups[g].names[k]);
#undef NAME
    *count = n;
    return names->failed ? EM_ERR_NOMEM : EM_OK;
}

/* One draw's brms quantities from the model's own columns (row of the internal posterior). */
static void brms_row(const em_regression *r, col_plan *cp, const double *row, double *out) {
    const em_design *d = &r->d;
    size_t o = 0;
    cp->at = 0;
    double shift = 0; /* Σ mean_j b_j: the centred intercept's distance from the uncentred one */
    for (size_t j = 0; j < d->P; j++) shift += d->means[j] * row[plan_col(cp, "b", d->P, j)];
    if (d->intercept && r->family == EM_FAMILY_CUMULATIVE) {
        /* thresholds from the ordered transform's free values; P(y <= k) = F(τ_k - Xc b), so the
         * uncentred thresholds are τ_k + Σ mean_j b_j (brms's b_Intercept) */
        size_t K1 = d->ncat - 1;
        double tau = 0;
        for (size_t k = 0; k < K1; k++) {
            double x = row[plan_col(cp, "Intercept_raw", K1, k)];
            tau = k ? tau + exp(x) : x;
            out[o++] = tau + shift;
        }
    } else if (d->intercept) {
        out[o++] = row[plan_col(cp, "Intercept", 1, 0)] - shift;
    }
    for (size_t j = 0; j < d->P; j++) out[o++] = row[plan_col(cp, "b", d->P, j)];
    char nm[32];
    for (size_t g = 0; g < d->ngroups; g++) {
        snprintf(nm, sizeof nm, "sd_%zu", g + 1);
        for (size_t k = 0; k < d->groups[g].K; k++) out[o++] = row[plan_col(cp, nm, d->groups[g].K, k)];
    }
    for (size_t g = 0; g < d->ngroups; g++) {
        size_t K = d->groups[g].K;
        if (!d->groups[g].correlated) continue;
        for (size_t a = 0; a < K; a++)
            for (size_t c = a + 1; c < K; c++) {
                double s = 0; /* Ω_ac = Σ_k L_ak L_ck */
                for (size_t k = 0; k <= a; k++) s += row[plan_col_L(cp, g, a, k)] * row[plan_col_L(cp, g, c, k)];
                out[o++] = s;
            }
    }
    for (size_t k = 0; k < NDPARS; k++)
        if (families[r->family].dpars & dpar_names[k].bit)
            out[o++] = dpar_names[k].bit == EM_DP_NU ? row[plan_col(cp, "nu_minus_1", 1, 0)] + 1.0
                                                     : row[plan_col(cp, dpar_names[k].name, 1, 0)];
    for (size_t g = 0; g < d->ngroups; g++) {
        const em_group_term *gt = &d->groups[g];
        size_t K = gt->K, J = gt->J;
        char sn[32], zn[32];
        snprintf(sn, sizeof sn, "sd_%zu", g + 1);
        snprintf(zn, sizeof zn, "z_%zu", g + 1);
        for (size_t k = 0; k < K; k++) {
            double sd = row[plan_col(cp, sn, K, k)];
            for (size_t j = 0; j < J; j++) {
                double v = 0;
                if (gt->correlated)
                    for (size_t q = 0; q <= k; q++) v += row[plan_col_L(cp, g, k, q)] * row[plan_col(cp, zn, K * J, q * J + j)];
                else v = row[plan_col(cp, zn, K * J, k * J + j)];
                out[o++] = sd * v;
            }
        }
    }
}

/* brms_row through the plan, recorded at the first call; 0 when the plan could not be made */
static int brms_row_planned(const em_regression *r, col_plan *cp, const double *row, double *out) {
    brms_row(r, cp, row, out);
    cp->recording = 0;
    return !cp->failed;
}

static em_status plan_error(const col_plan *cp, em_error *err) {
    return cp->failed == 1 ? em_error_set(err, EM_ERR_NOMEM, "formula: out of memory naming the draws in brms's terms")
                           : em_error_set(err, EM_ERR_MODEL, "formula: the model lacks a column brms's terms need");
}

static em_status brms_posterior(const em_regression *r, const em_posterior *in, em_posterior **out, em_error *err) {
    em_buf nb = {0};
    size_t nb_count = 0;
    if (brms_names(r, &nb, &nb_count) != EM_OK) {
        em_buf_free(&nb);
        return em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    }
    size_t ncols = in->nmethod_cols + nb_count;
    const char **names = malloc(ncols * sizeof *names);
    if (!names) {
        em_buf_free(&nb);
        return em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    }
    for (size_t j = 0; j < in->nmethod_cols; j++) names[j] = in->names[j];
    for (size_t j = 0, off = 0; j < nb_count; j++) {
        names[in->nmethod_cols + j] = nb.data + off;
        off += strlen(nb.data + off) + 1;
    }
    em_posterior *p = em_posterior_alloc(in->nchains, ncols, in->nmethod_cols, names, err);
    free(names);
    em_buf_free(&nb);
    if (!p) return EM_ERR_NOMEM;
    p->method = in->method;
    p->cfg = in->cfg;
    p->has_cfg = in->has_cfg;
    p->seed = in->seed;
    p->wall_seconds = in->wall_seconds;
    p->interrupted = in->interrupted;
    p->metric_dim = in->metric_dim;
    p->dense_metric = in->dense_metric;
    p->cfg.save_warmup = 0; /* the derived draws are the sampling draws */
    /* a variational fit's record and verdict, and its guide's mean in brms's names */
    p->guide_kind = in->guide_kind;
    p->svi_steps = in->svi_steps;
    p->svi_converged = in->svi_converged;
    p->learning_rate = in->learning_rate;
    p->has_svi_info = in->has_svi_info;
    p->svi_info = in->svi_info;
    p->psis_k = in->psis_k;
    p->resampled = in->resampled;
    em_status s = EM_OK;
    col_plan cp = {.p = in, .recording = 1};
    if (in->mean_row && (p->mean_row = malloc(ncols * sizeof(double)))) {
        memcpy(p->mean_row, in->mean_row, in->nmethod_cols * sizeof(double));
        if (!brms_row_planned(r, &cp, in->mean_row, p->mean_row + in->nmethod_cols)) s = plan_error(&cp, err);
    } else if (in->mean_row)
        s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    for (size_t c = 0; c < in->nchains && s == EM_OK; c++) {
        const em_posterior_chain *ic = &in->chains[c];
        em_posterior_chain *pc = &p->chains[c];
        pc->id = ic->id;
        pc->ndraws = ic->ndraws;
        pc->stepsize = ic->stepsize;
        pc->warmup_seconds = ic->warmup_seconds;
        pc->sampling_seconds = ic->sampling_seconds;
        pc->rows = malloc((ic->ndraws ? ic->ndraws : 1) * ncols * sizeof(double));
        size_t md = in->dense_metric ? in->metric_dim * in->metric_dim : in->metric_dim;
        if (ic->inv_metric && (pc->inv_metric = malloc((md ? md : 1) * sizeof(double))))
            memcpy(pc->inv_metric, ic->inv_metric, md * sizeof(double));
        if (!pc->rows || (ic->inv_metric && !pc->inv_metric)) {
            s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            break;
        }
        for (size_t i = 0; i < ic->ndraws; i++) {
            const double *row = ic->rows + (ic->nwarmup + i) * in->ncols;
            double *dst = pc->rows + i * ncols;
            memcpy(dst, row, in->nmethod_cols * sizeof(double));
            if (!brms_row_planned(r, &cp, row, dst + in->nmethod_cols)) {
                s = plan_error(&cp, err);
                break;
            }
        }
    }
    free(cp.cols);
    em_posterior_finish(p);
    if (s == EM_OK) {
        char label[600];
        snprintf(label, sizeof label, "%s (Ember formula)", r->formula->text);
        for (char *q = label; *q; q++)
            if (*q == '\n' || *q == '\r') *q = ' ';
        s = em_posterior_set_labels(p, label, r->data_name, err);
    }
    if (s != EM_OK) {
        em_posterior_free(p);
        return s;
    }
    *out = p;
    return EM_OK;
}

em_status em_regression_fit(em_regression *r, const em_mcmc_config *cfg, em_posterior **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_regression_fit: out is NULL");
    *out = NULL;
    if (!r) return em_error_set(err, EM_ERR_ARG, "em_regression_fit: no regression");
    em_posterior_free(r->internal);
    r->internal = NULL;
    em_status s = em_fit_nuts(em_regression_model, r, cfg, &r->internal, err);
    if (s != EM_OK && s != EM_ERR_INTERRUPTED) return s;
    em_error e2 = {0};
    em_status s2 = brms_posterior(r, r->internal, out, &e2);
    if (s2 != EM_OK) return em_error_set(err, s2, "%s", e2.msg);
    return s;
}

em_status em_regression_fit_svi(em_regression *r, const em_svi_fit_config *cfg, em_posterior **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_regression_fit_svi: out is NULL");
    *out = NULL;
    if (!r) return em_error_set(err, EM_ERR_ARG, "em_regression_fit_svi: no regression");
    em_posterior_free(r->internal);
    r->internal = NULL;
    em_status s = em_fit_svi(em_regression_model, r, cfg, &r->internal, err);
    if (s != EM_OK) return s;
    return brms_posterior(r, r->internal, out, err);
}

/* ---- brms's summary -------------------------------------------------------------------------------- */

typedef struct row_stats {
    double est, err, lo, hi, rhat, bulk, tail;
} row_stats;

static int stats_of(const em_posterior *p, const char *name, row_stats *st) {
    long j = em_posterior_find(p, name, NULL);
    if (j < 0) return 0;
    size_t S = p->nchains * p->ndraws;
    double *x = malloc((S ? S : 1) * sizeof *x);
    if (!x) return 0;
    em_posterior_column(p, (size_t)j, x, NULL);
    st->est = em_mean(x, S);
    st->err = em_sd(x, S);
    st->lo = em_quantile(x, S, 0.025);
    st->hi = em_quantile(x, S, 0.975);
    st->rhat = em_rhat(x, p->nchains, p->ndraws, NULL);
    st->bulk = em_ess_bulk(x, p->nchains, p->ndraws, NULL);
    st->tail = em_ess_tail(x, p->nchains, p->ndraws, NULL);
    free(x);
    return 1;
}

typedef struct brms_table {
    char (*label)[96];
    row_stats *st;
    int n, cap;
} brms_table;

static void table_add(brms_table *t, const em_posterior *p, const char *col, const char *label) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char(*nl)[96] = realloc(t->label, (size_t)cap * sizeof *nl);
        if (nl) t->label = nl;
        row_stats *ns = nl ? realloc(t->st, (size_t)cap * sizeof *ns) : NULL;
        if (!ns) return; /* out of memory: the row is left out of the printed table */
        t->st = ns;
        t->cap = cap;
    }
    if (stats_of(p, col, &t->st[t->n])) snprintf(t->label[t->n++], sizeof t->label[0], "%s", label);
}

static void table_reset(brms_table *t) { t->n = 0; }
static void table_free(brms_table *t) {
    free(t->label);
    free(t->st);
}

static void fmt2(char *dst, size_t cap, double v) {
    if (isnan(v)) snprintf(dst, cap, "NA");
    else snprintf(dst, cap, "%.2f", v);
}

static void table_print(FILE *f, const brms_table *t, double *worst_rhat) {
    static const char *const head[7] = {"Estimate", "Est.Error", "l-95% CI", "u-95% CI", "Rhat", "Bulk_ESS", "Tail_ESS"};
    int lw = 0;
    for (int i = 0; i < t->n; i++)
        if ((int)strlen(t->label[i]) > lw) lw = (int)strlen(t->label[i]);
    fprintf(f, "%*s", lw, "");
    for (int c = 0; c < 7; c++) fprintf(f, " %s", head[c]);
    fprintf(f, "\n");
    for (int i = 0; i < t->n; i++) {
        const row_stats *s = &t->st[i];
        char v[7][32];
        fmt2(v[0], 32, s->est);
        fmt2(v[1], 32, s->err);
        fmt2(v[2], 32, s->lo);
        fmt2(v[3], 32, s->hi);
        fmt2(v[4], 32, s->rhat);
        if (isnan(s->bulk)) snprintf(v[5], 32, "NA");
        else snprintf(v[5], 32, "%.0f", s->bulk);
        if (isnan(s->tail)) snprintf(v[6], 32, "NA");
        else snprintf(v[6], 32, "%.0f", s->tail);
        fprintf(f, "%-*s", lw, t->label[i]);
        for (int c = 0; c < 7; c++) fprintf(f, " %*s", (int)strlen(head[c]), v[c]);
        fprintf(f, "\n");
        if (s->rhat > *worst_rhat) *worst_rhat = s->rhat;
    }
}

em_status em_regression_print_summary(const em_regression *r, const em_posterior *p, FILE *f, em_error *err) {
    if (!r || !p || !f) return em_error_set(err, EM_ERR_ARG, "em_regression_print_summary: NULL argument");
    if (p->ndraws == 0) return em_error_set(err, EM_ERR_ARG, "em_regression_print_summary: no draws");
    const em_design *d = &r->d;
    /* "mu = log; shape = identity": the mean's link, then every distributional parameter's
     * (brms 2.18 models them on the identity when they are not predicted; cumulative's disc) */
    fprintf(f, " Family: %s \n  Links: mu = %s", em_family_name(r->family), link_names[r->link]);
    for (size_t k = 0; k < NDPARS; k++)
        if (families[r->family].dpars & dpar_names[k].bit) fprintf(f, "; %s = identity", dpar_names[k].name);
    if (r->family == EM_FAMILY_CUMULATIVE) fprintf(f, "; disc = identity");
    fprintf(f, " \nFormula: %s \n", r->formula->text);
    fprintf(f, "   Data: %s (Number of observations: %zu) \n", r->data_name, d->n);
    if (d->dropped) fprintf(f, "         (%zu rows with missing values dropped)\n", d->dropped);
    int thin = p->has_cfg ? p->cfg.thin : 1;
    fprintf(f, "  Draws: %zu chains, each with iter = %d; warmup = %d; thin = %d;\n         total post-warmup draws = %zu\n\n",
            p->nchains, p->has_cfg ? p->cfg.num_warmup + p->cfg.num_samples : (int)p->ndraws,
            p->has_cfg ? p->cfg.num_warmup : 0, thin, p->nchains * p->ndraws);
    double worst = 0;
    char col[256], lab[160];
    if (d->ngroups) fprintf(f, "Group-Level Effects: \n");
    for (size_t g = 0; g < d->ngroups; g++) {
        const em_group_term *gt = &d->groups[g];
        brms_table t = {0};
        for (size_t k = 0; k < gt->K; k++) {
            snprintf(col, sizeof col, "sd_%s__%s", gt->group, gt->names[k]);
            snprintf(lab, sizeof lab, "sd(%s)", gt->names[k]);
            table_add(&t, p, col, lab);
        }
        if (gt->correlated)
            for (size_t a = 0; a < gt->K; a++)
                for (size_t c = a + 1; c < gt->K; c++) {
                    snprintf(col, sizeof col, "cor_%s__%s__%s", gt->group, gt->names[a], gt->names[c]);
                    snprintf(lab, sizeof lab, "cor(%s,%s)", gt->names[a], gt->names[c]);
                    table_add(&t, p, col, lab);
                }
        fprintf(f, "~%s (Number of levels: %zu) \n", gt->group, gt->J);
        table_print(f, &t, &worst);
        table_free(&t);
        fprintf(f, "\n");
    }
    brms_table t = {0};
    if (d->intercept && r->family == EM_FAMILY_CUMULATIVE)
        for (size_t k = 0; k + 1 < d->ncat; k++) {
            snprintf(col, sizeof col, "b_Intercept[%zu]", k + 1);
            snprintf(lab, sizeof lab, "Intercept[%zu]", k + 1);
            table_add(&t, p, col, lab);
        }
    else if (d->intercept) table_add(&t, p, "b_Intercept", "Intercept");
    for (size_t j = 0; j < d->P; j++) {
        em_buf nm = {0};
        em_brms_rename(d->names[j], &nm);
        snprintf(col, sizeof col, "b_%s", nm.data ? nm.data : "");
        table_add(&t, p, col, nm.data ? nm.data : "");
        em_buf_free(&nm);
    }
    if (t.n) {
        fprintf(f, "Population-Level Effects: \n");
        table_print(f, &t, &worst);
        fprintf(f, "\n");
    }
    table_reset(&t);
    for (size_t k = 0; k < NDPARS; k++)
        if (families[r->family].dpars & dpar_names[k].bit) table_add(&t, p, dpar_names[k].name, dpar_names[k].name);
    if (t.n) {
        fprintf(f, "Family Specific Parameters: \n");
        table_print(f, &t, &worst);
        fprintf(f, "\n");
    }
    table_free(&t);
    if (p->method == EM_POSTERIOR_VARIATIONAL) {
        double k = em_posterior_psis_k(p), thr = em_psis_k_threshold(p->ndraws);
        fprintf(f, "Draws are independent draws of a variational approximation (SVI, %s guide; Ember %s, %.3g s),\n"
                   "not of the posterior itself; Rhat and ESS describe the draws only.\n",
                em_autoguide_name(p->guide_kind), EMBER_VERSION, p->wall_seconds);
        if (p->has_svi_info && !p->svi_info.run.converged)
            fprintf(f, "Warning: SVI did not converge in %zu steps.\n", p->svi_info.run.steps);
        if (!isnan(k) && k < thr)
            fprintf(f, "Pareto k-hat %.2f is below %.2f: the approximation is usable (Yao et al. 2018).\n", k, thr);
        else if (!isnan(k))
            fprintf(f, "Warning: Pareto k-hat %.2f is above %.2f: the approximation is far from the posterior and its\n"
                       "draws are not to be trusted (Yao et al. 2018); fit with NUTS.\n", k, thr);
    } else
        fprintf(f, "Draws were sampled using NUTS (Ember %s, %.3g s). For each parameter, Bulk_ESS\n"
                   "and Tail_ESS are effective sample size measures, and Rhat is the potential\n"
                   "scale reduction factor on split chains (at convergence, Rhat = 1).\n",
                EMBER_VERSION, p->wall_seconds);
    size_t div = em_posterior_num_divergent(p), S = p->nchains * p->ndraws;
    if (div)
        fprintf(f, "Warning: There were %zu divergent transitions after warmup. Increasing adapt_delta above %g may "
                   "help.\n", div, p->has_cfg ? p->cfg.target_accept : 0.8);
    if (worst > 1.05)
        fprintf(f, "Warning: The largest R-hat is %.2f, indicating chains have not mixed. Running the chains for more "
                   "iterations may help.\n", worst);
    (void)S;
    return EM_OK;
}

em_status em_regression_loo(const em_regression *r, em_loo_result **out, size_t *nrefits, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_regression_loo: out is NULL");
    *out = NULL;
    if (!r || !r->internal) return em_error_set(err, EM_ERR_ARG, "em_regression_loo: no fit yet (em_regression_fit)");
    em_status s = em_posterior_loo(r->internal, "y", out, err);
    if (nrefits) *nrefits = 0;
    /* the exact refits are NUTS fits: a variational fit's LOO stays PSIS's, its k̂ reported */
    if (s == EM_OK && em_posterior_method_of(r->internal) == EM_POSTERIOR_NUTS)
        s = em_posterior_reloo(r->internal, "y", *out, 0.7, NULL, nrefits, err);
    if (s != EM_OK) {
        em_loo_free(*out);
        *out = NULL;
    }
    return s;
}

/* The response's draws × rows of the last fit: the log-likelihood, or the posterior predictive
 * from every draw (max_draws 0) or max_draws of them spread evenly. */
static em_status response_draws(const em_regression *r, int loglik, size_t max_draws, double **out, size_t *ndraws,
                                em_error *err) {
    if (!out || !ndraws) return em_error_set(err, EM_ERR_ARG, "em_regression_%s: NULL output", loglik ? "log_lik" : "yrep");
    *out = NULL;
    *ndraws = 0;
    if (!r || !r->internal) return em_error_set(err, EM_ERR_ARG, "em_regression_%s: no fit yet", loglik ? "log_lik" : "yrep");
    em_predictive *pr = NULL;
    em_status s;
    if (loglik) s = em_posterior_log_lik(r->internal, "y", &pr, err);
    else {
        em_predictive_options o;
        memset(&o, 0, sizeof o);
        const char *site = "y";
        o.return_sites = &site;
        o.nreturn = 1;
        o.ndraws = max_draws;
        s = em_posterior_predict(r->internal, NULL, &o, &pr, err);
    }
    if (s != EM_OK) return s;
    const em_pred_site *y = em_predictive_site(pr, "y");
    size_t cells = pr->ndraws * r->d.n;
    if (!y || y->len != r->d.n) s = em_error_set(err, EM_ERR_ARG, "em_regression: the response site is missing");
    else if (!(*out = malloc((cells ? cells : 1) * sizeof **out))) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    if (s == EM_OK) {
        memcpy(*out, y->draws, cells * sizeof **out);
        if (!loglik && r->ycat) /* Ember's categories 0..K-1 back to the response's 1..K */
            for (size_t i = 0; i < cells; i++) (*out)[i] += 1.0;
        *ndraws = pr->ndraws;
    }
    em_predictive_free(pr);
    return s;
}

const em_formula *em_regression_formula_of(const em_regression *r) { return r->formula; }
const em_design *em_regression_design_of(const em_regression *r) { return &r->d; }
const em_posterior *em_regression_internal_fit(const em_regression *r) { return r->internal; }

em_status em_regression_log_lik(const em_regression *r, double **out, size_t *ndraws, em_error *err) {
    return response_draws(r, 1, 0, out, ndraws, err);
}

em_status em_regression_yrep(const em_regression *r, double **out, size_t *ndraws, em_error *err) {
    return response_draws(r, 0, 0, out, ndraws, err);
}

/* The figure's replicated data sets: the density overlay shows 100 of them and the bars' 90%
 * intervals need a few hundred, not all of a long run's draws (predicting 4000 × n values
 * would cost more than the fit); and never more than PPC_MAX_VALUES values in all. */
enum { PPC_DENSITY_DRAWS = 100, PPC_BARS_DRAWS = 500, PPC_MAX_VALUES = 10000000 };

em_status em_regression_ppc_figure(const em_regression *r, const char *dir, const char *name, em_error *err) {
    if (!r || !r->internal) return em_error_set(err, EM_ERR_ARG, "em_regression_ppc_figure: no fit yet");
    double *yrep = NULL;
    size_t S = 0, want = families[r->family].continuous ? PPC_DENSITY_DRAWS : PPC_BARS_DRAWS;
    size_t cap = r->d.n ? PPC_MAX_VALUES / r->d.n : want;
    em_status s = response_draws(r, 0, want < cap ? want : cap ? cap : 1, &yrep, &S, err);
    if (s != EM_OK) return s;
    if (families[r->family].continuous) s = em_ppc_density_figure(dir, name, r->d.y, r->d.n, yrep, S, 100, err);
    else s = em_ppc_bars_figure(dir, name, r->d.y, r->d.n, yrep, S, err);
    free(yrep);
    return s;
}
