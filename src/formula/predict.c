/* predict.c — a fitted regression's predictions at new data: brms's posterior_linpred,
 * posterior_epred and posterior_predict. See formula.h.
 *
 * The new rows are coded with the training coding (em_design_build_new), so a draw's linear
 * predictor is brms's own, mu = Intercept + Xc·b + Σ_g Z_g r_g[level] + offset, with Xc the
 * new columns centred at the training means and Intercept = b_Intercept + means·b (brms's
 * temporary Intercept, which b_Intercept is reported from). The draws are read by their brms
 * names, so a posterior read back from CmdStan files serves as well as a fresh fit.
 *
 * A grouping level that training did not see gets, in each draw, either the effects of an
 * existing level chosen at random (brms's sample_new_levels = "uncertainty", its default) or
 * a draw from the population, r ~ MVN(0, diag(sd) Ω diag(sd)) with that draw's sd and Ω
 * ("gaussian"); a new level shared by several rows has the same effects in all of them.
 *
 * The family is one switch (family_dist): it turns a draw's linear predictor and family
 * parameters into the em_dist the model observes, whose mean is the expected value and whose
 * sampler draws the response, so a new family is one case there and one in family_params.
 */
#include "internal/formula_impl.h"
#include "internal/frame_impl.h"
#include "internal/mathx.h"

#include "ember/diagnostics.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct em_prediction {
    size_t S, n, nnew;
    size_t *rows;                          /* [n] frame rows */
    double *x[EM_PREDICT_KIND_COUNT];      /* [S][n] each */
    size_t K;                              /* cumulative: the categories, else 0 */
    double *probs;                         /* cumulative: [S][n][K] P(y = k) */
};

void em_prediction_free(em_prediction *p) {
    if (!p) return;
    free(p->probs);
    for (int k = 0; k < EM_PREDICT_KIND_COUNT; k++) free(p->x[k]);
    free(p->rows);
    free(p);
}

size_t em_prediction_num_draws(const em_prediction *p) { return p ? p->S : 0; }
size_t em_prediction_num_rows(const em_prediction *p) { return p ? p->n : 0; }
size_t em_prediction_frame_row(const em_prediction *p, size_t i) { return p && i < p->n ? p->rows[i] : 0; }
size_t em_prediction_num_new_levels(const em_prediction *p) { return p ? p->nnew : 0; }
const double *em_prediction_draws(const em_prediction *p, em_predict_kind k) {
    return p && (unsigned)k < EM_PREDICT_KIND_COUNT ? p->x[k] : NULL;
}
const double *em_prediction_probs(const em_prediction *p, size_t *K) {
    if (K) *K = p && p->probs ? p->K : 0;
    return p ? p->probs : NULL;
}

/* A cumulative model's row at one draw: P(y = k) = F(τ_k - η) - F(τ_{k-1} - η) with τ_0 = -∞
 * and τ_K = +∞, F the logistic or the normal CDF (Bürkner & Vuorre 2019's cumulative model);
 * then a category drawn from them (u uniform) and their mean category. Where both values are
 * above ½ the difference is taken of the upper tails, 1 - F(x) = F(-x), so it does not cancel. */
static double cdf_of(int probit, double x) { return probit ? em_math_Phi(x) : em_math_sigmoid(x); }

static void cumulative_row(double eta, const double *tau, size_t K, int probit, double u, double *prob,
                           double *ydraw, double *mean) {
    double m = 0.0, acc = 0.0;
    /* F(τ_{k-1} - η) and, once it is above ½, its upper tail F(η - τ_{k-1}), carried from the
     * category below: each CDF is evaluated once */
    double lo = 0.0, lo_tail = 1.0;
    size_t pick = K - 1;
    for (size_t k = 0; k < K; k++) {
        double hi = k + 1 < K ? cdf_of(probit, tau[k] - eta) : 1.0;
        double hi_tail = hi > 0.5 && k + 1 < K ? cdf_of(probit, eta - tau[k]) : 0.0; /* used above ½ only */
        double pk = lo > 0.5 ? lo_tail - hi_tail : hi - lo;
        prob[k] = pk > 0.0 ? pk : 0.0;
        m += (double)(k + 1) * prob[k];
        acc += prob[k];
        if (pick == K - 1 && k + 1 < K && u < acc) pick = k;
        lo = hi;
        lo_tail = hi_tail;
    }
    *ydraw = (double)(pick + 1);
    *mean = m;
}

/* ---- the family: a draw's linear predictor as the distribution of the response --------------- */

enum { FP_SIGMA, FP_NU, FP_SHAPE, FP_PHI, FP_ZI, FP_HU, FP_COUNT };

/* The family's parameters beyond the linear predictor, by their brms names (NULL: unused). */
static const char *family_param(em_family f, int k) {
    switch (k) {
    case FP_SIGMA:
        return f == EM_FAMILY_GAUSSIAN || f == EM_FAMILY_STUDENT || f == EM_FAMILY_LOGNORMAL ? "sigma" : NULL;
    case FP_NU: return f == EM_FAMILY_STUDENT ? "nu" : NULL;
    case FP_SHAPE:
        return f == EM_FAMILY_NEGBINOMIAL || f == EM_FAMILY_GAMMA || f == EM_FAMILY_WEIBULL ||
                       f == EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL || f == EM_FAMILY_HURDLE_NEGBINOMIAL
                   ? "shape"
                   : NULL;
    case FP_PHI: return f == EM_FAMILY_BETA ? "phi" : NULL;
    case FP_ZI:
        return f == EM_FAMILY_ZERO_INFLATED_POISSON || f == EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL ? "zi" : NULL;
    case FP_HU: return f == EM_FAMILY_HURDLE_POISSON || f == EM_FAMILY_HURDLE_NEGBINOMIAL ? "hu" : NULL;
    default: return NULL;
    }
}

/* As the model's likelihood (regression.c) writes each family, at one draw's parameters. */
static em_dist family_dist(em_tape *t, em_family f, em_var eta, const double *trials, size_t n, const double *fp) {
    em_var shape = em_scalar(t, fp[FP_SHAPE]);
    switch (f) {
    case EM_FAMILY_GAUSSIAN: return em_dist_normal(t, eta, em_scalar(t, fp[FP_SIGMA]));
    case EM_FAMILY_STUDENT: return em_dist_student_t(t, em_scalar(t, fp[FP_NU]), eta, em_scalar(t, fp[FP_SIGMA]));
    case EM_FAMILY_BERNOULLI: return em_dist_bernoulli_logit(t, eta);
    case EM_FAMILY_BINOMIAL: return em_dist_binomial_logit(t, trials, n, eta);
    case EM_FAMILY_POISSON: return em_dist_poisson_log(t, eta);
    case EM_FAMILY_NEGBINOMIAL: return em_dist_neg_binomial2(t, em_op_exp(t, eta), shape);
    case EM_FAMILY_GAMMA: /* mean e^eta: rate = shape e^-eta */
        return em_dist_gamma(t, shape, em_op_mul(t, shape, em_op_exp(t, em_op_mul(t, eta, em_scalar(t, -1.0)))));
    case EM_FAMILY_LOGNORMAL: return em_dist_lognormal(t, eta, em_scalar(t, fp[FP_SIGMA]));
    case EM_FAMILY_BETA: { /* brms's mean and precision: Beta(mu phi, (1 - mu) phi) */
        em_var mu = em_op_sigmoid(t, eta), phi = em_scalar(t, fp[FP_PHI]);
        return em_dist_beta(t, em_op_mul(t, mu, phi), em_op_mul(t, em_op_sub(t, em_scalar(t, 1.0), mu), phi));
    }
    case EM_FAMILY_WEIBULL: /* brms: mean e^eta, scale e^eta / Γ(1 + 1/shape) */
        return em_dist_weibull(t, shape, em_op_exp(t, em_op_sub(t, eta, em_scalar(t, lgamma(1.0 + 1.0 / fp[FP_SHAPE])))));
    case EM_FAMILY_ZERO_INFLATED_POISSON: return em_dist_zero_inflated_poisson(t, em_op_exp(t, eta), em_scalar(t, fp[FP_ZI]));
    case EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL:
        return em_dist_zero_inflated_neg_binomial2(t, em_op_exp(t, eta), shape, em_scalar(t, fp[FP_ZI]));
    case EM_FAMILY_HURDLE_POISSON: return em_dist_hurdle_poisson(t, em_op_exp(t, eta), em_scalar(t, fp[FP_HU]));
    case EM_FAMILY_HURDLE_NEGBINOMIAL:
        return em_dist_hurdle_neg_binomial2(t, em_op_exp(t, eta), shape, em_scalar(t, fp[FP_HU]));
    default: {
        /* cumulative: a prediction is a distribution over K categories per row, not one value */
        em_dist d;
        memset(&d, 0, sizeof d);
        em_tape_fail(t, EM_ERR_ARG, "predict: the %s family is not supported by predict yet (its prediction is a "
                                    "probability per category)", em_family_name(f));
        return d;
    }
    }
}

/* ---- reading the draws by brms's names --------------------------------------------------------- */

/* All S draws of the column called name into a new array, or NULL with err naming it. */
static double *column(const em_posterior *fit, const char *name, size_t S, em_error *err) {
    em_error e = {0};
    long j = em_posterior_find(fit, name, &e);
    if (j < 0) {
        em_error_set(err, EM_ERR_ARG, "predict: the fit has no draws of '%s', which this formula needs (%s); was it "
                                      "fitted with this formula and family?", name, e.msg);
        return NULL;
    }
    double *x = malloc((S ? S : 1) * sizeof *x);
    if (!x) {
        em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
        return NULL;
    }
    em_posterior_column(fit, (size_t)j, x, NULL);
    return x;
}

typedef struct level_ix {
    const char *label;
    size_t j;
} level_ix;

static int cmp_level(const void *a, const void *b) {
    return strcmp(((const level_ix *)a)->label, ((const level_ix *)b)->label);
}

/* One grouping term's draws and the new rows' levels. */
typedef struct group_pred {
    size_t K, J, nnew;
    double **sd;      /* [K][S] */
    double **cor;     /* [K*K][S] for a < c at a*K + c, or NULL (uncorrelated) */
    double **r;       /* [J*K][S]: r_g[level j, term k] at j*K + k */
    size_t *level;    /* [n] the row's training level, or J + its new level's index */
    double *neweff;   /* [nnew*K]: the new levels' effects in the current draw */
} group_pred;

static void group_free(group_pred *g) {
    for (size_t k = 0; g->sd && k < g->K; k++) free(g->sd[k]);
    for (size_t k = 0; g->cor && k < g->K * g->K; k++) free(g->cor[k]);
    for (size_t k = 0; g->r && k < g->J * g->K; k++) free(g->r[k]);
    free(g->sd);
    free(g->cor);
    free(g->r);
    free(g->level);
    free(g->neweff);
}

/* Match the new rows' levels of term g to the training levels and read the term's draws. */
static em_status group_prepare(const em_group_term *tr, const em_group_term *nw, size_t n, const em_frame *fr,
                               const em_design *nd, const em_posterior *fit, size_t S, const em_predict_options *o,
                               group_pred *g, em_error *err) {
    size_t K = tr->K, J = tr->J;
    g->K = K, g->J = J;
    g->sd = calloc(K, sizeof *g->sd);
    g->r = calloc(J * K, sizeof *g->r);
    g->level = malloc((n ? n : 1) * sizeof *g->level);
    level_ix *ix = malloc((J ? J : 1) * sizeof *ix);
    size_t *newof = malloc((nw->J ? nw->J : 1) * sizeof *newof); /* new data level -> level code */
    em_status s = g->sd && g->r && g->level && ix && newof ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    for (size_t j = 0; s == EM_OK && j < J; j++) ix[j] = (level_ix){tr->levels[j], j};
    if (s == EM_OK) qsort(ix, J, sizeof *ix, cmp_level);
    for (size_t j = 0; s == EM_OK && j < nw->J; j++) {
        level_ix key = {nw->levels[j], 0};
        level_ix *hit = bsearch(&key, ix, J, sizeof *ix, cmp_level);
        newof[j] = hit ? hit->j : J + g->nnew++;
    }
    for (size_t i = 0; s == EM_OK && i < n; i++) {
        g->level[i] = newof[nw->index[i]];
        if (g->level[i] >= J && o->new_levels == EM_NEW_LEVELS_ERROR) /* only new data has new levels */
            s = em_error_set(err, EM_ERR_ARG, "%s:%zu: level '%s' of the grouping factor '%s' is not in the training "
                                              "data (new levels are refused; allow them to draw its effects from the "
                                              "population)", fr->name, em_frame_line(fr, nd->rows[i]),
                             nw->levels[nw->index[i]], tr->group);
    }
    free(ix);
    free(newof);
    char name[1024];
    for (size_t k = 0; s == EM_OK && k < K; k++) {
        snprintf(name, sizeof name, "sd_%s__%s", tr->group, tr->names[k]);
        if (!(g->sd[k] = column(fit, name, S, err))) s = err->status;
    }
    if (s == EM_OK && tr->correlated && g->nnew && o->new_levels == EM_NEW_LEVELS_GAUSSIAN) {
        if (!(g->cor = calloc(K * K, sizeof *g->cor))) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
        for (size_t a = 0; s == EM_OK && a < K; a++)
            for (size_t c = a + 1; s == EM_OK && c < K; c++) {
                snprintf(name, sizeof name, "cor_%s__%s__%s", tr->group, tr->names[a], tr->names[c]);
                if (!(g->cor[a * K + c] = column(fit, name, S, err))) s = err->status;
            }
    }
    /* the seen levels' draws (all of them for "uncertainty", which picks among every level) */
    int need_all = g->nnew && o->new_levels == EM_NEW_LEVELS_UNCERTAINTY;
    unsigned char *used = calloc(J ? J : 1, 1);
    if (s == EM_OK && !used) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    for (size_t i = 0; s == EM_OK && i < n; i++)
        if (g->level[i] < J) used[g->level[i]] = 1;
    for (size_t j = 0; s == EM_OK && j < J; j++) {
        if (!used[j] && !need_all) continue;
        for (size_t k = 0; s == EM_OK && k < K; k++) {
            /* brms's r_g[level,term]; a CSV header holds it as r_g[level.term] */
            snprintf(name, sizeof name, "r_%s[%s.%s]", tr->group, tr->levels[j], tr->names[k]);
            if (!(g->r[j * K + k] = column(fit, name, S, err))) s = err->status;
        }
    }
    free(used);
    if (s == EM_OK && g->nnew && !(g->neweff = malloc(g->nnew * K * sizeof *g->neweff)))
        s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    return s;
}

/* The new levels' effects in draw s. */
static em_status group_new_effects(group_pred *g, size_t s, const em_predict_options *o, em_rng *rng, double *Lw,
                                   const char *group, em_error *err) {
    size_t K = g->K;
    for (size_t q = 0; q < g->nnew; q++) {
        double *e = g->neweff + q * K;
        if (o->new_levels == EM_NEW_LEVELS_UNCERTAINTY) {
            size_t j = (size_t)gsl_rng_uniform_int(rng, g->J);
            for (size_t k = 0; k < K; k++) e[k] = g->r[j * K + k][s];
            continue;
        }
        /* gaussian: L = chol(Ω) of this draw (the identity when uncorrelated), e = diag(sd) L z */
        for (size_t a = 0; a < K; a++)
            for (size_t c = 0; c < K; c++) Lw[a * K + c] = a == c ? 1.0 : g->cor ? g->cor[a < c ? a * K + c : c * K + a][s] : 0.0;
        for (size_t c = 0; g->cor && c < K; c++) {
            double d = Lw[c * K + c];
            for (size_t k = 0; k < c; k++) d -= Lw[c * K + k] * Lw[c * K + k];
            if (!(d > 0))
                return em_error_set(err, EM_ERR_DOMAIN, "predict: the correlations of '%s' in draw %zu are not positive "
                                                        "definite", group, s + 1);
            Lw[c * K + c] = sqrt(d);
            for (size_t a = c + 1; a < K; a++) {
                double v = Lw[a * K + c];
                for (size_t k = 0; k < c; k++) v -= Lw[a * K + k] * Lw[c * K + k];
                Lw[a * K + c] = v / Lw[c * K + c];
            }
        }
        double z[64];
        for (size_t k = 0; k < K; k++) z[k] = em_rng_normal(rng);
        for (size_t a = 0; a < K; a++) {
            double v = 0;
            for (size_t k = 0; k <= a; k++) v += Lw[a * K + k] * z[k];
            e[a] = g->sd[a][s] * v;
        }
    }
    return EM_OK;
}

em_status em_regression_predict(const em_regression *r, const em_posterior *fit, const em_frame *newdata,
                                const em_predict_options *opt, em_prediction **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_regression_predict: out is NULL");
    *out = NULL;
    if (!r || !fit) return em_error_set(err, EM_ERR_ARG, "em_regression_predict: no regression or no fit");
    em_predict_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    if (!o.kinds) o.kinds = (1u << EM_PREDICT_KIND_COUNT) - 1;
    if ((unsigned)o.new_levels > EM_NEW_LEVELS_ERROR)
        return em_error_set(err, EM_ERR_ARG, "em_regression_predict: new_levels %d is out of range", (int)o.new_levels);
    const em_design *tr = em_regression_design_of(r);
    em_family fam = em_regression_family(r);
    em_design nd;
    memset(&nd, 0, sizeof nd);
    const em_design *d = tr;
    em_status s = EM_OK;
    if (newdata) {
        s = em_design_build_new(em_regression_formula_of(r), newdata, fam, tr, o.drop_missing, &nd, err);
        if (s != EM_OK) return s;
        d = &nd;
    }
    size_t S = em_posterior_num_chains(fit) * em_posterior_num_draws(fit), n = d->n, P = d->P;
    size_t ng = o.population_only ? 0 : d->ngroups;
    em_prediction *p = calloc(1, sizeof *p);
    double *alpha = NULL, **b = calloc(P ? P : 1, sizeof *b), *fpar[FP_COUNT] = {0};
    group_pred *gp = calloc(ng ? ng : 1, sizeof *gp);
    double *eta = malloc((n ? n : 1) * sizeof *eta), *Lw = NULL;
    em_tape *t = em_tape_create();
    /* two streams, so the new levels' effects do not depend on which kinds are asked for */
    em_rng *rng = em_rng_create(o.seed, 0), *yrng = em_rng_create(o.seed, 1);
    if (!p || !b || !gp || !eta || !t || !rng || !yrng) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    if (s == EM_OK && S == 0) s = em_error_set(err, EM_ERR_ARG, "em_regression_predict: the fit has no draws");
    if (s == EM_OK) {
        p->S = S, p->n = n;
        p->rows = malloc(n * sizeof *p->rows);
        int short_of = !p->rows;
        for (int k = 0; k < EM_PREDICT_KIND_COUNT; k++)
            if (o.kinds >> k & 1) short_of |= !(p->x[k] = malloc(S * n * sizeof(double)));
        if (short_of) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory (%zu draws x %zu rows)", S, n);
        else memcpy(p->rows, d->rows, n * sizeof *p->rows);
    }
    int cumulative = fam == EM_FAMILY_CUMULATIVE, probit = em_regression_link(r) == EM_LINK_PROBIT;
    size_t K = cumulative ? tr->ncat : 0;
    double **tau = cumulative ? calloc(K, sizeof *tau) : NULL, *taud = cumulative ? malloc(2 * K * sizeof *taud) : NULL;
    if (s == EM_OK && cumulative && (!tau || !taud)) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    for (size_t k = 0; s == EM_OK && k + 1 < K; k++) { /* brms's thresholds, b_Intercept[k] */
        char nm[64];
        snprintf(nm, sizeof nm, "b_Intercept[%zu]", k + 1);
        if (!(tau[k] = column(fit, nm, S, err))) s = err->status;
    }
    if (s == EM_OK) p->K = K;
    if (s == EM_OK && cumulative && p->x[EM_PREDICT_EPRED]) {
        if (!(p->probs = malloc(S * n * K * sizeof *p->probs)))
            s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory (%zu draws x %zu rows x %zu categories)", S, n, K);
    }
    if (s == EM_OK && d->intercept && !cumulative && !(alpha = column(fit, "b_Intercept", S, err))) s = err->status;
    for (size_t j = 0; s == EM_OK && j < P; j++) {
        em_buf nm = {0};
        em_buf_printf(&nm, "b_");
        em_brms_rename(d->names[j], &nm);
        if (nm.failed) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
        else if (!(b[j] = column(fit, nm.data, S, err))) s = err->status;
        em_buf_free(&nm);
    }
    for (int k = 0; s == EM_OK && k < FP_COUNT; k++)
        if (family_param(fam, k) && !(fpar[k] = column(fit, family_param(fam, k), S, err))) s = err->status;
    size_t Kmax = 1;
    for (size_t g = 0; s == EM_OK && g < ng; g++) {
        s = group_prepare(&tr->groups[g], &d->groups[g], n, newdata, d, fit, S, &o, &gp[g], err);
        p->nnew += gp[g].nnew;
        if (tr->groups[g].K > Kmax) Kmax = tr->groups[g].K;
        if (s == EM_OK && tr->groups[g].K > 64)
            s = em_error_set(err, EM_ERR_ARG, "predict: '%s' has %zu terms (at most 64)", tr->groups[g].group, tr->groups[g].K);
    }
    if (s == EM_OK && !(Lw = malloc(Kmax * Kmax * sizeof *Lw))) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    for (size_t it = 0; s == EM_OK && it < S; it++) {
        /* brms's centred form: Intercept = b_Intercept + means·b, then the centred columns */
        double a = alpha ? alpha[it] : 0.0;
        for (size_t j = 0; d->intercept && j < P; j++) a += d->means[j] * b[j][it];
        for (size_t i = 0; i < n; i++) {
            double v = a;
            const double *x = d->Xc + i * P;
            for (size_t j = 0; j < P; j++) v += x[j] * b[j][it];
            eta[i] = v + (d->offset ? d->offset[i] : 0.0);
        }
        for (size_t g = 0; s == EM_OK && g < ng; g++) {
            group_pred *G = &gp[g];
            const em_group_term *gt = &d->groups[g];
            s = group_new_effects(G, it, &o, rng, Lw, tr->groups[g].group, err);
            for (size_t i = 0; s == EM_OK && i < n; i++) {
                size_t j = G->level[i];
                for (size_t k = 0; k < G->K; k++) {
                    double e = j < G->J ? G->r[j * G->K + k][it] : G->neweff[(j - G->J) * G->K + k];
                    eta[i] += gt->Z[k * n + i] * e;
                }
            }
        }
        if (s != EM_OK) break;
        double fp[FP_COUNT];
        for (int k = 0; k < FP_COUNT; k++) fp[k] = fpar[k] ? fpar[k][it] : NAN;
        if (p->x[EM_PREDICT_LINPRED]) memcpy(p->x[EM_PREDICT_LINPRED] + it * n, eta, n * sizeof *eta);
        if (!p->x[EM_PREDICT_EPRED] && !p->x[EM_PREDICT_RESPONSE]) continue;
        if (cumulative) { /* the thresholds are on the uncentred scale, as η now is */
            double yd, mean, *ep = p->x[EM_PREDICT_EPRED], *yr = p->x[EM_PREDICT_RESPONSE], *scratch = taud + K;
            for (size_t k = 0; k + 1 < K; k++) taud[k] = tau[k][it];
            for (size_t i = 0; i < n; i++) {
                double *prob = p->probs ? p->probs + (it * n + i) * K : scratch;
                cumulative_row(eta[i], taud, K, probit, em_rng_uniform(yrng), prob, &yd, &mean);
                if (yr) yr[it * n + i] = yd;
                if (ep) ep[it * n + i] = mean;
            }
            continue;
        }
        em_tape_reset(t);
        em_dist dist = family_dist(t, fam, em_const(t, eta, n), d->trials, n, fp);
        if (em_tape_status(t) != EM_OK) {
            s = em_error_set(err, em_tape_status(t), "predict: draw %zu: %s", it + 1, em_tape_error(t)->msg);
            break;
        }
        dist = em_expand(dist, n);
        if (p->x[EM_PREDICT_EPRED]) s = em_dist_mean(&dist, p->x[EM_PREDICT_EPRED] + it * n, n, err);
        if (s == EM_OK && p->x[EM_PREDICT_RESPONSE])
            s = em_dist_sample(&dist, yrng, p->x[EM_PREDICT_RESPONSE] + it * n, n, err);
    }
    em_tape_destroy(t);
    em_rng_destroy(rng);
    em_rng_destroy(yrng);
    free(Lw);
    free(eta);
    for (size_t g = 0; gp && g < ng; g++) group_free(&gp[g]);
    free(gp);
    for (size_t j = 0; b && j < P; j++) free(b[j]);
    free(b);
    free(alpha);
    for (size_t k = 0; tau && k < K; k++) free(tau[k]);
    free(tau);
    free(taud);
    for (int k = 0; k < FP_COUNT; k++) free(fpar[k]);
    em_design_free(&nd);
    if (s != EM_OK) {
        em_prediction_free(p);
        return s;
    }
    *out = p;
    return EM_OK;
}

/* ---- summaries and files ------------------------------------------------------------------------ */

em_status em_prediction_summary(const em_prediction *p, em_predict_kind k, double lo, double hi, double *out,
                                em_error *err) {
    if (!p || !out || (unsigned)k >= EM_PREDICT_KIND_COUNT || !p->x[k])
        return em_error_set(err, EM_ERR_ARG, "em_prediction_summary: NULL argument, or a kind not predicted");
    if (!(lo >= 0 && lo <= hi && hi <= 1))
        return em_error_set(err, EM_ERR_ARG, "em_prediction_summary: quantiles %g and %g are not 0 <= lo <= hi <= 1", lo, hi);
    double *col = malloc(p->S * sizeof *col);
    if (!col) return em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    for (size_t i = 0; i < p->n; i++) {
        for (size_t s = 0; s < p->S; s++) col[s] = p->x[k][s * p->n + i];
        out[4 * i] = em_mean(col, p->S);
        out[4 * i + 1] = em_sd(col, p->S);
        out[4 * i + 2] = em_quantile(col, p->S, lo);
        out[4 * i + 3] = em_quantile(col, p->S, hi);
    }
    free(col);
    return EM_OK;
}

em_status em_prediction_write_csv(const em_prediction *p, em_predict_kind k, int draws, const char *path, em_error *err) {
    if (!p || (unsigned)k >= EM_PREDICT_KIND_COUNT || !p->x[k])
        return em_error_set(err, EM_ERR_ARG, "em_prediction_write_csv: NULL prediction, or a kind not predicted");
    static const char *const prefix[EM_PREDICT_KIND_COUNT] = {"yrep", "epred", "linpred"};
    em_buf b = {0};
    em_status s = EM_OK;
    if (draws) {
        for (size_t i = 0; i < p->n; i++) em_buf_printf(&b, "%s%s.%zu", i ? "," : "", prefix[k], p->rows[i] + 1);
        em_buf_printf(&b, "\n");
        for (size_t d = 0; d < p->S && !b.failed; d++)
            for (size_t i = 0; i < p->n; i++) em_buf_printf(&b, "%.17g%s", p->x[k][d * p->n + i], i + 1 < p->n ? "," : "\n");
    } else if (p->K && k == EM_PREDICT_RESPONSE) { /* brms's predict(): each category's share of the draws */
        em_buf_printf(&b, "row");
        for (size_t c = 1; c <= p->K; c++) em_buf_printf(&b, ",P(Y = %zu)", c);
        em_buf_printf(&b, "\n");
        for (size_t i = 0; i < p->n; i++) {
            em_buf_printf(&b, "%zu", p->rows[i] + 1);
            for (size_t c = 1; c <= p->K; c++) {
                size_t hits = 0;
                for (size_t d = 0; d < p->S; d++) hits += p->x[k][d * p->n + i] == (double)c;
                em_buf_printf(&b, ",%.9g", (double)hits / (double)p->S);
            }
            em_buf_printf(&b, "\n");
        }
    } else if (p->K && k == EM_PREDICT_EPRED && p->probs) { /* brms's fitted(): each category's probability */
        double *col = malloc(p->S * sizeof *col);
        if (!col) return em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
        em_buf_printf(&b, "row,category,Estimate,Est.Error,Q2.5,Q97.5\n");
        for (size_t i = 0; i < p->n; i++)
            for (size_t c = 0; c < p->K; c++) {
                for (size_t d = 0; d < p->S; d++) col[d] = p->probs[(d * p->n + i) * p->K + c];
                em_buf_printf(&b, "%zu,%zu,%.9g,%.9g,%.9g,%.9g\n", p->rows[i] + 1, c + 1, em_mean(col, p->S),
                              em_sd(col, p->S), em_quantile(col, p->S, 0.025), em_quantile(col, p->S, 0.975));
            }
        free(col);
    } else {
        double *sm = malloc(4 * p->n * sizeof *sm);
        if (!sm) return em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
        s = em_prediction_summary(p, k, 0.025, 0.975, sm, err);
        em_buf_printf(&b, "row,Estimate,Est.Error,Q2.5,Q97.5\n");
        for (size_t i = 0; s == EM_OK && i < p->n; i++)
            em_buf_printf(&b, "%zu,%.9g,%.9g,%.9g,%.9g\n", p->rows[i] + 1, sm[4 * i], sm[4 * i + 1], sm[4 * i + 2],
                          sm[4 * i + 3]);
        free(sm);
    }
    if (s == EM_OK && b.failed) s = em_error_set(err, EM_ERR_NOMEM, "predict: out of memory");
    if (s == EM_OK) {
        if (path) s = em_write_file_atomic(path, b.data, b.len, err);
        else if (fwrite(b.data, 1, b.len, stdout) != b.len || fflush(stdout) != 0)
            s = em_error_set(err, EM_ERR_IO, "predict: writing to stdout failed");
    }
    em_buf_free(&b);
    return s;
}
