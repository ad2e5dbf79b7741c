/* autoguide.c — guides built from a model's latent structure. See svi.h.
 *
 * Every autoguide works on the unconstrained vector u of the model's log density
 * (em_logdensity_from_model fixes its layout: names, offsets, transforms). The guide draws u
 * (or reads it, for AutoDelta), then gives each model latent site a point mass at its
 * constrained value x = T(u_site) whose log density is −log|det J_T(u_site)|, so the guide's
 * density of x is the density of u carried through the transform — Pyro's AutoContinuous
 * (Kucukelbir et al. 2017, ADVI). The point mass is a private distribution (delta_ops below);
 * the joint Gaussian draws reuse the dist module's Normal and MVNormal, whose rsample and
 * log density carry gradients to loc and to the scale factor.
 */
#include "ember/svi.h"
#include "ember/handlers.h"
#include "ember/diagnostics.h"
#include "ember/linalg.h"
#include "internal/model_impl.h"
#include "internal/tape.h"
#include "internal/sort.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_multimin.h>
#include <lapacke.h>

#define NAME_MAX_LEN 160

struct em_autoguide {
    em_autoguide_kind kind;
    em_logdensity *ld;
    size_t dim, nout, nlat, rank;
    double init_scale;
    double *init_u;        /* dim: initial unconstrained location */
    double *init_scale_v;  /* dim: init_scale everywhere (per-site slices for AutoNormal) */
    double *init_lvec;     /* MVN: zeros, dim(dim-1)/2; low rank: dim·rank */
    double *lap_loc, *lap_L; /* Laplace: mode and Cholesky factor of the covariance */
    char pname[4][NAME_MAX_LEN];
    char aux_name[NAME_MAX_LEN];
    char (*site_loc)[NAME_MAX_LEN]; /* AutoNormal: per-site parameter and auxiliary names */
    char (*site_scale)[NAME_MAX_LEN];
    char (*site_aux)[NAME_MAX_LEN];
};

const char *em_autoguide_name(em_autoguide_kind k) {
    switch (k) {
    case EM_AUTO_DELTA: return "AutoDelta";
    case EM_AUTO_NORMAL: return "AutoNormal";
    case EM_AUTO_DIAGONAL_NORMAL: return "AutoDiagonalNormal";
    case EM_AUTO_MULTIVARIATE_NORMAL: return "AutoMultivariateNormal";
    case EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL: return "AutoLowRankMultivariateNormal";
    case EM_AUTO_LAPLACE: return "AutoLaplaceApproximation";
    case EM_AUTO_KIND_COUNT: break;
    }
    return "unknown";
}

/* ---- the point mass ---------------------------------------------------------------------------
 * p[0] is the value (its length is the batch length), p[1] a scalar log density that does not
 * depend on the value passed in: the guide only ever scores the value it drew itself. */

static size_t delta_event_len(const em_dist *d) { (void)d; return 1; }
static em_support delta_support(const em_dist *d) {
    (void)d;
    return (em_support){EM_SUPPORT_REAL, -INFINITY, INFINITY};
}
static em_var delta_log_prob(const em_dist *d, em_var value) {
    if (em_len(d->tape, value) != em_len(d->tape, d->p[0]))
        return em_tape_fail(d->tape, EM_ERR_SHAPE, "AutoGuide point mass: value of length %zu, the mass has %zu",
                            em_len(d->tape, value), em_len(d->tape, d->p[0]));
    return d->p[1];
}
static em_status delta_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    (void)r;
    size_t len = em_len(d->tape, d->p[0]);
    if (n % len) return em_error_set(err, EM_ERR_SHAPE, "AutoGuide point mass: %zu values from a mass of %zu", n, len);
    const double *v = em_val_(d->tape, d->p[0]);
    for (size_t i = 0; i < n; i++) out[i] = v[i % len];
    return EM_OK;
}
static em_var delta_rsample(const em_dist *d, em_rng *r, size_t n) {
    (void)r;
    if (n != em_len(d->tape, d->p[0]))
        return em_tape_fail(d->tape, EM_ERR_SHAPE, "AutoGuide point mass: a draw of %zu values from a mass of %zu", n,
                            em_len(d->tape, d->p[0]));
    return d->p[0];
}
static em_status delta_mean(const em_dist *d, double *out, size_t n, em_error *err) {
    return delta_sample(d, NULL, out, n, err);
}
static em_status delta_variance(const em_dist *d, double *out, size_t n, em_error *err) {
    (void)d;
    (void)err;
    memset(out, 0, n * sizeof *out);
    return EM_OK;
}
static const em_dist_ops delta_ops = {"AutoGuidePointMass", 2, {"value", "log_density"}, 0, 1,
                                      delta_event_len, delta_support, delta_log_prob, delta_sample,
                                      delta_rsample, delta_mean, delta_variance, NULL, NULL, NULL};

static em_dist delta_dist(em_tape *t, em_var value, em_var log_density) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.ops = &delta_ops;
    d.tape = t;
    d.p[0] = value;
    d.p[1] = log_density;
    d.p[2] = d.p[3] = EM_VAR_INVALID;
    d.batch_len = em_len(t, value);
    return d;
}

/* ---- two small ops that build the guide's scale factor ----------------------------------------- */

static size_t tri_idx(size_t i, size_t j) { return i * (i - 1) / 2 + j; } /* strict lower, row-major */

/* M = diag(s)·(I + strict_lower(l)): the factor of Pyro's AutoMultivariateNormal. */
static void tril_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *s = em_node_get(t, (em_var){self->in[0]});
    em_node *l = self->nin > 1 ? em_node_get(t, (em_var){self->in[1]}) : NULL;
    size_t K = self->rows;
    const double *G = self->adj;
    for (size_t i = 0; i < K; i++) {
        double gs = G[i * K + i];
        for (size_t j = 0; j < i; j++) {
            size_t q = tri_idx(i, j);
            gs += G[i * K + j] * l->val[q];
            if (l->adj) l->adj[q] += G[i * K + j] * s->val[i];
        }
        if (s->adj) s->adj[i] += gs;
    }
}

static em_var tril_factor(em_tape *t, em_var s, em_var l, size_t K) {
    em_var in[2] = {s, l}, out;
    int nin = K > 1 ? 2 : 1;
    if (!em_inputs_ok(in, nin)) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, K, K, in, nin, tril_backward, &out);
    if (!o) return EM_VAR_INVALID;
    const double *sv = em_val_(t, s), *lv = K > 1 ? em_val_(t, l) : NULL;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++)
            o->val[i * K + j] = j == i ? sv[i] : j < i ? sv[i] * lv[tri_idx(i, j)] : 0.0;
    return out;
}

/* Σ = diag(s)·(W·Wᵀ + I)·diag(s), W of K×r: Pyro's low-rank covariance (cov_factor scaled by
 * scale, cov_diag = scale²). Backward: dΣ = G gives ds_i = Σ_j (G_ij + G_ji) s_j M_ij and
 * dW_ik = s_i Σ_b (G_ib + G_bi) s_b W_bk. */
static void lowrank_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *s = em_node_get(t, (em_var){self->in[0]}), *W = em_node_get(t, (em_var){self->in[1]});
    size_t K = self->rows, r = W->n / K;
    const double *G = self->adj;
    for (size_t i = 0; i < K; i++) {
        double gs = 0.0;
        for (size_t j = 0; j < K; j++) {
            double m = i == j ? 1.0 : 0.0;
            for (size_t k = 0; k < r; k++) m += W->val[i * r + k] * W->val[j * r + k];
            double gsym = G[i * K + j] + G[j * K + i];
            gs += gsym * s->val[j] * m;
            if (W->adj)
                for (size_t k = 0; k < r; k++) W->adj[i * r + k] += s->val[i] * gsym * s->val[j] * W->val[j * r + k];
        }
        if (s->adj) s->adj[i] += gs;
    }
}

static em_var lowrank_cov(em_tape *t, em_var s, em_var W, size_t K) {
    em_var in[2] = {s, W}, out;
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, K, K, in, 2, lowrank_backward, &out);
    if (!o) return EM_VAR_INVALID;
    const double *sv = em_val_(t, s), *Wv = em_val_(t, W);
    size_t r = em_len(t, W) / K;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) {
            double m = i == j ? 1.0 : 0.0;
            for (size_t k = 0; k < r; k++) m += Wv[i * r + k] * Wv[j * r + k];
            o->val[i * K + j] = sv[i] * sv[j] * m;
        }
    return out;
}

/* ---- the guide -------------------------------------------------------------------------------- */

void em_autoguide_fn(em_model *m, const void *arg) {
    const em_autoguide *g = arg;
    em_tape *t = em_model_tape(m);
    size_t K = g->dim;
    em_var u = EM_VAR_INVALID;
    switch (g->kind) {
    case EM_AUTO_DELTA: u = em_param(m, g->pname[0], g->init_u, K, EM_CONSTRAINT_REAL); break;
    case EM_AUTO_DIAGONAL_NORMAL: {
        em_var loc = em_param(m, g->pname[0], g->init_u, K, EM_CONSTRAINT_REAL);
        em_var sc = em_param(m, g->pname[1], g->init_scale_v, K, EM_CONSTRAINT_POSITIVE);
        u = em_sample(m, g->aux_name, em_expand(em_dist_normal(t, loc, sc), K));
        break;
    }
    case EM_AUTO_MULTIVARIATE_NORMAL: {
        em_var loc = em_param(m, g->pname[0], g->init_u, K, EM_CONSTRAINT_REAL);
        em_var sc = em_param(m, g->pname[1], g->init_scale_v, K, EM_CONSTRAINT_POSITIVE);
        em_var l = K > 1 ? em_param(m, g->pname[2], g->init_lvec, K * (K - 1) / 2, EM_CONSTRAINT_REAL)
                         : EM_VAR_INVALID;
        u = em_sample(m, g->aux_name, em_dist_mvnormal(t, loc, tril_factor(t, sc, l, K)));
        break;
    }
    case EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL: {
        em_var loc = em_param(m, g->pname[0], g->init_u, K, EM_CONSTRAINT_REAL);
        em_var sc = em_param(m, g->pname[1], g->init_scale_v, K, EM_CONSTRAINT_POSITIVE);
        em_var W = em_param(m, g->pname[2], g->init_lvec, K * g->rank, EM_CONSTRAINT_REAL);
        /* The dense K×K covariance and its Cholesky factor: O(K³) per step, fine for the
         * regression-sized latent vectors this library targets. */
        em_var L = em_op_cholesky(t, lowrank_cov(t, sc, W, K));
        u = em_sample(m, g->aux_name, em_dist_mvnormal(t, loc, L));
        break;
    }
    case EM_AUTO_LAPLACE:
        u = em_sample(m, g->aux_name,
                      em_dist_mvnormal(t, em_const(t, g->lap_loc, K), em_const_matrix(t, g->lap_L, K, K)));
        break;
    case EM_AUTO_NORMAL:
    case EM_AUTO_KIND_COUNT: break;
    }
    if (g->kind != EM_AUTO_NORMAL && !em_var_ok(u)) return; /* the error is on the tape */
    for (size_t k = 0; k < g->nlat; k++) {
        const em_latent_info *li = em_logdensity_latent(g->ld, k);
        em_var uk;
        if (g->kind == EM_AUTO_NORMAL) {
            em_var loc = em_param(m, g->site_loc[k], g->init_u + li->offset, li->free_len, EM_CONSTRAINT_REAL);
            em_var sc = em_param(m, g->site_scale[k], g->init_scale_v + li->offset, li->free_len,
                                 EM_CONSTRAINT_POSITIVE);
            uk = em_sample(m, g->site_aux[k], em_expand(em_dist_normal(t, loc, sc), li->free_len));
        } else {
            uk = (li->offset == 0 && li->free_len == K) ? u : em_op_slice(t, u, li->offset, li->free_len);
        }
        if (!em_var_ok(uk)) return;
        em_var x, logq;
        if (li->transform.kind == EM_TRANSFORM_IDENTITY) {
            x = uk;
            logq = em_scalar(t, 0.0);
        } else if (g->kind == EM_AUTO_DELTA) {
            /* AutoDelta is a point mass in the constrained space: no Jacobian, so SVI finds the
             * mode of the constrained density (MAP), as Pyro's AutoDelta. */
            x = em_transform_forward(t, &li->transform, uk, NULL);
            logq = em_scalar(t, 0.0);
        } else {
            em_var ldj = em_scalar(t, 0.0);
            x = em_transform_forward(t, &li->transform, uk, &ldj);
            logq = em_op_neg(t, ldj);
        }
        if (!em_var_ok(x)) return;
        em_sample(m, li->name, delta_dist(t, x, logq));
    }
}

/* ---- initialisation ------------------------------------------------------------------------------ */

typedef struct init_handler {
    em_handler base;
    em_autoguide *g;
    em_init_kind kind;
    const double *values;
    em_rng *rng;
    size_t next, out_off;
    double *buf, *draws;
    em_error *err;
} init_handler;

/* Each latent site takes its initial constrained value (so that later sites' priors see it, as
 * Pyro's init strategies do), and its unconstrained image is stored in init_u. */
static void init_process(em_handler *h, em_msg *msg) {
    init_handler *ih = (init_handler *)h;
    if (msg->kind != EM_SITE_SAMPLE || msg->is_observed) return;
    em_autoguide *g = ih->g;
    size_t k = ih->next++;
    const em_latent_info *li = em_logdensity_latent(g->ld, k);
    if (!li || strcmp(li->name, msg->name) != 0) {
        em_model_fail(msg->model, EM_ERR_MODEL, "autoguide init: latent site '%s' was not found at position %zu when "
                                                "the guide was built", msg->name, k + 1);
        return;
    }
    size_t n = li->len;
    double *x = ih->buf;
    em_error e = {0};
    em_init_kind kind = ih->kind;
    int done = 0;
    if (kind == EM_INIT_VALUES) {
        memcpy(x, ih->values + ih->out_off, n * sizeof *x);
        done = 1;
    }
    if (!done && kind == EM_INIT_MEAN) {
        done = em_dist_mean(&msg->dist, x, n, &e) == EM_OK;
        for (size_t i = 0; done && i < n; i++) done = isfinite(x[i]);
        em_error_clear(&e);
        /* no finite mean (Cauchy, improper): fall back to the median, as Pyro's init_to_mean */
    }
    if (!done && kind != EM_INIT_UNIFORM) {
        /* median of 15 prior draws per element (Pyro's init_to_median) */
        enum { ND = 15 };
        int ok = 1;
        for (int d = 0; d < ND && ok; d++) ok = em_dist_sample(&msg->dist, ih->rng, ih->draws + (size_t)d * n, n, &e) == EM_OK;
        em_error_clear(&e);
        if (ok) {
            double col[ND];
            for (size_t i = 0; i < n; i++) {
                for (int d = 0; d < ND; d++) col[d] = ih->draws[(size_t)d * n + i];
                em_sort_doubles(col, ND);
                x[i] = col[ND / 2];
            }
            /* the elementwise median of simplex-valued or matrix-valued draws is not in the
             * support: use one draw itself there */
            if (li->transform.kind == EM_TRANSFORM_SIMPLEX || li->transform.kind == EM_TRANSFORM_CORR_CHOLESKY)
                memcpy(x, ih->draws, n * sizeof *x);
            done = 1;
        }
    }
    double *u = g->init_u + li->offset;
    if (done) {
        if (em_transform_inverse_d(&li->transform, x, n, u, &e) != EM_OK) {
            if (kind == EM_INIT_VALUES) {
                em_model_fail(msg->model, EM_ERR_DOMAIN, "autoguide init: site '%s': %s", msg->name, e.msg);
                return;
            }
            done = 0; /* a draw on the boundary: fall back to uniform */
        }
    }
    if (!done) {
        for (size_t i = 0; i < li->free_len; i++) u[i] = -2.0 + 4.0 * em_rng_uniform(ih->rng);
        if (em_transform_forward_d(&li->transform, u, li->free_len, x, NULL, &e) != EM_OK) {
            em_model_fail(msg->model, e.status, "autoguide init: site '%s': %s", msg->name, e.msg);
            return;
        }
    }
    for (size_t i = 0; i < li->free_len; i++)
        if (!isfinite(u[i])) {
            em_model_fail(msg->model, EM_ERR_NONFINITE, "autoguide init: site '%s': unconstrained value[%zu] = %g",
                          msg->name, i, u[i]);
            return;
        }
    ih->out_off += n;
    msg->value = em_const_copy(em_model_tape(msg->model), x, n);
    msg->done = 1;
}

static em_status init_loc(em_autoguide *g, em_model_fn model, const void *data, const em_autoguide_options *o,
                          em_error *err) {
    size_t maxlen = 1;
    for (size_t k = 0; k < g->nlat; k++) {
        const em_latent_info *li = em_logdensity_latent(g->ld, k);
        if (li->len > maxlen) maxlen = li->len;
    }
    em_model *m = em_model_create(o->seed, err);
    em_rng *rng = em_rng_create(o->seed, 0x1417);
    double *buf = malloc(maxlen * sizeof *buf), *draws = malloc(15 * maxlen * sizeof *draws);
    em_status s = EM_OK;
    if (!m || !rng || !buf || !draws) {
        s = em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
    } else {
        m->evaluate_only = 1;
        em_model_set_params(m, o->model_params);
        init_handler ih;
        memset(&ih, 0, sizeof ih);
        ih.base.process = init_process;
        ih.base.kind = "init";
        ih.g = g;
        ih.kind = o->init;
        ih.values = o->init_values;
        ih.rng = rng;
        ih.buf = buf;
        ih.draws = draws;
        em_push(m, &ih.base);
        s = em_model_run(m, model, data, err);
        em_pop(m, &ih.base);
        if (s == EM_OK && ih.next != g->nlat)
            s = em_error_set(err, EM_ERR_MODEL, "autoguide init: the model ran %zu latent sites, %zu when the guide was "
                                                "built", ih.next, g->nlat);
    }
    free(buf);
    free(draws);
    em_rng_destroy(rng);
    em_model_destroy(m);
    return s;
}

/* ---- Laplace approximation ------------------------------------------------------------------------ */

typedef struct lap_ctx {
    em_logdensity *ld;
    double *grad;
    size_t dim;
    em_status last;
} lap_ctx;

static double lap_f(const gsl_vector *x, void *p) {
    lap_ctx *c = p;
    double lp;
    em_error e = {0};
    if (em_logdensity_eval(c->ld, x->data, &lp, NULL, &e) != EM_OK || !isfinite(lp)) return GSL_POSINF;
    return -lp;
}
static void lap_fdf(const gsl_vector *x, void *p, double *f, gsl_vector *df) {
    lap_ctx *c = p;
    double lp;
    em_error e = {0};
    if (em_logdensity_eval(c->ld, x->data, &lp, c->grad, &e) != EM_OK || !isfinite(lp)) {
        *f = GSL_POSINF;
        gsl_vector_set_zero(df);
        return;
    }
    *f = -lp;
    for (size_t i = 0; i < c->dim; i++) gsl_vector_set(df, i, -c->grad[i]);
}
static void lap_df(const gsl_vector *x, void *p, gsl_vector *df) {
    double f;
    lap_fdf(x, p, &f, df);
}

/* H = −∇² log p by central differences of the gradient, symmetrised. */
static em_status lap_hessian(em_logdensity *ld, const double *u, size_t K, double *H, em_error *err) {
    double *x = malloc(K * sizeof *x), *gp = malloc(K * sizeof *gp), *gm = malloc(K * sizeof *gm);
    em_status s = (x && gp && gm) ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "AutoLaplace: out of memory");
    double lp;
    for (size_t i = 0; i < K && s == EM_OK; i++) {
        memcpy(x, u, K * sizeof *x);
        double h = 1e-5 * fmax(1.0, fabs(u[i]));
        x[i] = u[i] + h;
        s = em_logdensity_eval(ld, x, &lp, gp, err);
        x[i] = u[i] - h;
        if (s == EM_OK) s = em_logdensity_eval(ld, x, &lp, gm, err);
        for (size_t j = 0; j < K && s == EM_OK; j++) H[i * K + j] = -(gp[j] - gm[j]) / (2.0 * h);
    }
    for (size_t i = 0; i < K && s == EM_OK; i++)
        for (size_t j = 0; j < i; j++) H[i * K + j] = H[j * K + i] = 0.5 * (H[i * K + j] + H[j * K + i]);
    free(x);
    free(gp);
    free(gm);
    return s;
}

static em_status lap_fit(em_autoguide *g, size_t max_iter, em_error *err) {
    size_t K = g->dim;
    lap_ctx c = {g->ld, malloc(K * sizeof(double)), K, EM_OK};
    double *H = malloc(K * K * sizeof *H), *step = malloc(K * sizeof *step), *grad = malloc(K * sizeof *grad);
    gsl_vector *x = gsl_vector_alloc(K);
    gsl_multimin_fdfminimizer *mn = gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, K);
    em_status s = EM_OK;
    if (!c.grad || !H || !step || !grad || !x || !mn) {
        s = em_error_set(err, EM_ERR_NOMEM, "AutoLaplace: out of memory");
        goto done;
    }
    memcpy(x->data, g->init_u, K * sizeof(double));
    gsl_multimin_function_fdf fn = {lap_f, lap_df, lap_fdf, K, &c};
    if (!isfinite(lap_f(x, &c))) {
        s = em_error_set(err, EM_ERR_DOMAIN, "AutoLaplace: the log density is not finite at the initial point");
        goto done;
    }
    gsl_multimin_fdfminimizer_set(mn, &fn, x, 0.01, 0.1);
    for (size_t it = 0; it < max_iter; it++) {
        int st = gsl_multimin_fdfminimizer_iterate(mn);
        if (st) break; /* no progress possible: the Newton polish below finishes the job */
        if (gsl_multimin_test_gradient(mn->gradient, 1e-9) == GSL_SUCCESS) break;
    }
    memcpy(g->lap_loc, mn->x->data, K * sizeof(double));
    /* Newton polish with the finite-difference Hessian: exact in one step for a Gaussian, and
     * it removes BFGS's loose end elsewhere. */
    for (int it = 0; it < 5 && s == EM_OK; it++) {
        double lp;
        s = em_logdensity_eval(g->ld, g->lap_loc, &lp, grad, err);
        if (s == EM_OK) s = lap_hessian(g->ld, g->lap_loc, K, H, err);
        if (s != EM_OK) break;
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, H, (lapack_int)K) != 0) {
            s = em_error_set(err, EM_ERR_NUMERIC, "AutoLaplace: the negative Hessian of the log density at the mode "
                                                  "is not positive definite (no proper Gaussian approximation)");
            break;
        }
        memcpy(step, grad, K * sizeof *step);
        LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, 1, H, (lapack_int)K, step, 1);
        double mx = 0.0;
        for (size_t i = 0; i < K; i++) {
            g->lap_loc[i] += step[i];
            mx = fmax(mx, fabs(step[i]) / fmax(1.0, fabs(g->lap_loc[i])));
        }
        if (mx < 1e-12) break;
    }
    if (s != EM_OK) goto done;
    s = lap_hessian(g->ld, g->lap_loc, K, H, err);
    if (s != EM_OK) goto done;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, H, (lapack_int)K) != 0 ||
        LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, H, (lapack_int)K) != 0) {
        s = em_error_set(err, EM_ERR_NUMERIC, "AutoLaplace: the negative Hessian at the mode is not positive definite");
        goto done;
    }
    for (size_t i = 0; i < K; i++)
        for (size_t j = i + 1; j < K; j++) H[i * K + j] = H[j * K + i];
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, H, (lapack_int)K) != 0) {
        s = em_error_set(err, EM_ERR_NUMERIC, "AutoLaplace: the covariance is not positive definite");
        goto done;
    }
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) g->lap_L[i * K + j] = j <= i ? H[i * K + j] : 0.0;
done:
    if (mn) gsl_multimin_fdfminimizer_free(mn);
    if (x) gsl_vector_free(x);
    free(c.grad);
    free(H);
    free(step);
    free(grad);
    return s;
}

/* ---- create / destroy -------------------------------------------------------------------------- */

void em_autoguide_destroy(em_autoguide *g) {
    if (!g) return;
    em_logdensity_destroy(g->ld);
    free(g->init_u);
    free(g->init_scale_v);
    free(g->init_lvec);
    free(g->lap_loc);
    free(g->lap_L);
    free(g->site_loc);
    free(g->site_scale);
    free(g->site_aux);
    free(g);
}

em_autoguide *em_autoguide_create(em_autoguide_kind kind, em_model_fn model, const void *model_data,
                                  const em_autoguide_options *opt, em_error *err) {
    em_autoguide_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    if ((unsigned)kind >= EM_AUTO_KIND_COUNT) {
        em_error_set(err, EM_ERR_ARG, "autoguide: unknown kind %d", (int)kind);
        return NULL;
    }
    if (!model) {
        em_error_set(err, EM_ERR_ARG, "%s: no model function", em_autoguide_name(kind));
        return NULL;
    }
    if (o.init == EM_INIT_VALUES && !o.init_values) {
        em_error_set(err, EM_ERR_ARG, "%s: init EM_INIT_VALUES without init_values", em_autoguide_name(kind));
        return NULL;
    }
    if (o.init_scale < 0 || !isfinite(o.init_scale)) {
        em_error_set(err, EM_ERR_ARG, "%s: init_scale = %g must be positive", em_autoguide_name(kind), o.init_scale);
        return NULL;
    }
    const char *prefix = o.prefix ? o.prefix : "auto";
    if (strlen(prefix) > 64) {
        em_error_set(err, EM_ERR_ARG, "%s: prefix longer than 64 characters", em_autoguide_name(kind));
        return NULL;
    }
    em_autoguide *g = calloc(1, sizeof *g);
    if (!g) {
        em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
        return NULL;
    }
    g->kind = kind;
    em_logdensity_options lo = {.seed = o.seed, .params = o.model_params};
    g->ld = em_logdensity_from_model(model, model_data, &lo, err);
    if (!g->ld) goto fail;
    g->dim = em_logdensity_dim(g->ld);
    g->nlat = em_logdensity_num_latents(g->ld);
    g->nout = em_logdensity_num_outputs(g->ld);
    g->init_scale = o.init_scale > 0 ? o.init_scale : 0.1;
    size_t K = g->dim;
    g->rank = o.rank ? o.rank : (size_t)ceil(sqrt((double)K));
    if (g->rank > K) g->rank = K;
    g->init_u = calloc(K, sizeof(double));
    g->init_scale_v = malloc(K * sizeof(double));
    size_t nl = kind == EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL ? K * g->rank : K * (K - 1) / 2 + 1;
    g->init_lvec = calloc(nl, sizeof(double));
    g->lap_loc = calloc(K, sizeof(double));
    g->lap_L = calloc(K * K, sizeof(double));
    if (!g->init_u || !g->init_scale_v || !g->init_lvec || !g->lap_loc || !g->lap_L) {
        em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < K; i++) {
        g->init_scale_v[i] = o.init_scales ? o.init_scales[i] : g->init_scale;
        if (!(g->init_scale_v[i] > 0) || !isfinite(g->init_scale_v[i])) {
            em_error_set(err, EM_ERR_ARG, "%s: init_scales[%zu] = %g must be finite and positive", em_autoguide_name(kind),
                         i, g->init_scale_v[i]);
            goto fail;
        }
    }
    if (kind == EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL) {
        /* Pyro: scale = sqrt(1/2)·init_scale, cov_factor ~ Normal(0, 1/sqrt(rank)), so the
         * initial variance is about init_scale² per coordinate. */
        em_rng *r = em_rng_create(o.seed, 0x10a7);
        if (!r) {
            em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
            goto fail;
        }
        for (size_t i = 0; i < K; i++) g->init_scale_v[i] *= sqrt(0.5);
        for (size_t i = 0; i < nl; i++) g->init_lvec[i] = em_rng_normal(r) / sqrt((double)g->rank);
        em_rng_destroy(r);
    }
    static const char *suffix[4] = {"loc", "scale", "scale_tril", "cov_factor"};
    for (int i = 0; i < 4; i++) snprintf(g->pname[i], NAME_MAX_LEN, "%s_%s", prefix, suffix[i]);
    if (kind == EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL) snprintf(g->pname[2], NAME_MAX_LEN, "%s_cov_factor", prefix);
    snprintf(g->aux_name, NAME_MAX_LEN, "_%s_latent", prefix);
    if (kind == EM_AUTO_NORMAL) {
        g->site_loc = calloc(g->nlat, NAME_MAX_LEN);
        g->site_scale = calloc(g->nlat, NAME_MAX_LEN);
        g->site_aux = calloc(g->nlat, NAME_MAX_LEN);
        if (!g->site_loc || !g->site_scale || !g->site_aux) {
            em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
            goto fail;
        }
        for (size_t k = 0; k < g->nlat; k++) {
            const char *nm = em_logdensity_latent(g->ld, k)->name;
            if (strlen(nm) > NAME_MAX_LEN - 80) {
                em_error_set(err, EM_ERR_ARG, "AutoNormal: site name '%.40s...' is too long", nm);
                goto fail;
            }
            snprintf(g->site_loc[k], NAME_MAX_LEN, "%s_%s_loc", prefix, nm);
            snprintf(g->site_scale[k], NAME_MAX_LEN, "%s_%s_scale", prefix, nm);
            snprintf(g->site_aux[k], NAME_MAX_LEN, "_%s_%s_latent", prefix, nm);
        }
    }
    if (init_loc(g, model, model_data, &o, err) != EM_OK) goto fail;
    if (kind == EM_AUTO_LAPLACE && lap_fit(g, o.laplace_max_iter ? o.laplace_max_iter : 1000, err) != EM_OK) goto fail;
    return g;
fail:
    em_autoguide_destroy(g);
    return NULL;
}

em_autoguide_kind em_autoguide_kind_of(const em_autoguide *g) { return g->kind; }
size_t em_autoguide_dim(const em_autoguide *g) { return g->dim; }
em_logdensity *em_autoguide_logdensity(em_autoguide *g) { return g->ld; }
size_t em_autoguide_num_outputs(const em_autoguide *g) { return g->nout; }
const char *em_autoguide_output_name(const em_autoguide *g, size_t i) {
    return em_logdensity_output_name(g->ld, i);
}
const double *em_autoguide_init_loc(const em_autoguide *g) { return g->init_u; }

/* ---- reading the fitted guide ------------------------------------------------------------------ */

static em_status get_param(const em_autoguide *g, const em_param_store *ps, const char *name, double *out, size_t n,
                           em_error *err) {
    if (!ps) return em_error_set(err, EM_ERR_ARG, "%s: no parameter store given", em_autoguide_name(g->kind));
    if (em_param_store_find(ps, name) < 0)
        return em_error_set(err, EM_ERR_MODEL, "%s: the parameter store has no '%s' (has the guide been run?)",
                            em_autoguide_name(g->kind), name);
    return em_param_store_get(ps, name, out, n, err);
}

em_status em_autoguide_gaussian(const em_autoguide *g, const em_param_store *ps, double *loc_out, double *L_out,
                                em_error *err) {
    size_t K = g->dim;
    double *loc = malloc(K * sizeof *loc), *L = calloc(K * K, sizeof *L), *sc = malloc(K * sizeof *sc);
    double *lv = malloc((K * (K > 1 ? K - 1 : 1) / 2 + K * g->rank + 1) * sizeof *lv);
    em_status s = (loc && L && sc && lv) ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
    if (s != EM_OK) goto done;
    switch (g->kind) {
    case EM_AUTO_DELTA: s = get_param(g, ps, g->pname[0], loc, K, err); break;
    case EM_AUTO_NORMAL:
        for (size_t k = 0; k < g->nlat && s == EM_OK; k++) {
            const em_latent_info *li = em_logdensity_latent(g->ld, k);
            s = get_param(g, ps, g->site_loc[k], loc + li->offset, li->free_len, err);
            if (s == EM_OK) s = get_param(g, ps, g->site_scale[k], sc + li->offset, li->free_len, err);
        }
        for (size_t i = 0; i < K && s == EM_OK; i++) L[i * K + i] = sc[i];
        break;
    case EM_AUTO_DIAGONAL_NORMAL:
        s = get_param(g, ps, g->pname[0], loc, K, err);
        if (s == EM_OK) s = get_param(g, ps, g->pname[1], sc, K, err);
        for (size_t i = 0; i < K && s == EM_OK; i++) L[i * K + i] = sc[i];
        break;
    case EM_AUTO_MULTIVARIATE_NORMAL:
        s = get_param(g, ps, g->pname[0], loc, K, err);
        if (s == EM_OK) s = get_param(g, ps, g->pname[1], sc, K, err);
        if (s == EM_OK && K > 1) s = get_param(g, ps, g->pname[2], lv, K * (K - 1) / 2, err);
        for (size_t i = 0; i < K && s == EM_OK; i++) {
            L[i * K + i] = sc[i];
            for (size_t j = 0; j < i; j++) L[i * K + j] = sc[i] * lv[tri_idx(i, j)];
        }
        break;
    case EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL: {
        size_t r = g->rank;
        s = get_param(g, ps, g->pname[0], loc, K, err);
        if (s == EM_OK) s = get_param(g, ps, g->pname[1], sc, K, err);
        if (s == EM_OK) s = get_param(g, ps, g->pname[2], lv, K * r, err);
        for (size_t i = 0; i < K && s == EM_OK; i++)
            for (size_t j = 0; j <= i; j++) {
                double m = i == j ? 1.0 : 0.0;
                for (size_t k = 0; k < r; k++) m += lv[i * r + k] * lv[j * r + k];
                L[i * K + j] = sc[i] * sc[j] * m;
            }
        if (s == EM_OK && LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, L, (lapack_int)K) != 0)
            s = em_error_set(err, EM_ERR_NUMERIC, "AutoLowRankMultivariateNormal: covariance not positive definite");
        for (size_t i = 0; i < K && s == EM_OK; i++)
            for (size_t j = i + 1; j < K; j++) L[i * K + j] = 0.0;
        break;
    }
    case EM_AUTO_LAPLACE:
        memcpy(loc, g->lap_loc, K * sizeof *loc);
        memcpy(L, g->lap_L, K * K * sizeof *L);
        break;
    case EM_AUTO_KIND_COUNT: break;
    }
    if (s == EM_OK) {
        if (loc_out) memcpy(loc_out, loc, K * sizeof *loc);
        if (L_out) memcpy(L_out, L, K * K * sizeof *L);
    }
done:
    free(loc);
    free(L);
    free(sc);
    free(lv);
    return s;
}

em_status em_autoguide_median(em_autoguide *g, const em_param_store *ps, double *out, em_error *err) {
    double *loc = malloc(g->dim * sizeof *loc);
    if (!loc) return em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
    em_status s = em_autoguide_gaussian(g, ps, loc, NULL, err);
    if (s == EM_OK) s = em_logdensity_constrain(g->ld, loc, out, err);
    free(loc);
    return s;
}

em_status em_autoguide_quantiles(em_autoguide *g, const em_param_store *ps, const double *probs, size_t nq,
                                 double *out, em_error *err) {
    size_t K = g->dim;
    for (size_t q = 0; q < nq; q++)
        if (!(probs[q] > 0.0 && probs[q] < 1.0))
            return em_error_set(err, EM_ERR_ARG, "autoguide quantiles: probs[%zu] = %g is not in (0, 1)", q, probs[q]);
    double *loc = malloc(K * sizeof *loc), *L = malloc(K * K * sizeof *L), *u = malloc(K * sizeof *u);
    em_status s = (loc && L && u) ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
    if (s == EM_OK) s = em_autoguide_gaussian(g, ps, loc, L, err);
    for (size_t q = 0; q < nq && s == EM_OK; q++) {
        double z = gsl_cdf_ugaussian_Pinv(probs[q]);
        for (size_t i = 0; i < K; i++) {
            double v = 0.0;
            for (size_t j = 0; j <= i; j++) v += L[i * K + j] * L[i * K + j];
            u[i] = loc[i] + z * sqrt(v);
        }
        s = em_logdensity_constrain(g->ld, u, out + q * g->nout, err);
    }
    free(loc);
    free(L);
    free(u);
    return s;
}

em_status em_autoguide_sample(em_autoguide *g, const em_param_store *ps, em_rng *rng, size_t ndraws, double *theta,
                              double *out, em_error *err) {
    size_t K = g->dim;
    double *loc = malloc(K * sizeof *loc), *L = malloc(K * K * sizeof *L), *e = malloc(K * sizeof *e),
           *u = malloc(K * sizeof *u);
    em_status s = (loc && L && e && u) ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "autoguide: out of memory");
    if (s == EM_OK) s = em_autoguide_gaussian(g, ps, loc, L, err);
    for (size_t d = 0; d < ndraws && s == EM_OK; d++) {
        for (size_t i = 0; i < K; i++) e[i] = em_rng_normal(rng);
        for (size_t i = 0; i < K; i++) {
            double v = loc[i];
            for (size_t j = 0; j <= i; j++) v += L[i * K + j] * e[j];
            u[i] = v;
        }
        if (theta) memcpy(theta + d * K, u, K * sizeof *u);
        if (out) s = em_logdensity_constrain(g->ld, u, out + d * g->nout, err);
    }
    free(loc);
    free(L);
    free(e);
    free(u);
    return s;
}
