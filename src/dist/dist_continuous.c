/* dist_continuous.c — univariate continuous families on the shared elementwise driver
 * (internal/dist_impl.h). Each family gives its log density split into a parameter-only
 * normaliser and a value-dependent kernel, with analytic partials; sampling uses GSL's
 * gsl_ran_* generators; the location–scale families also have reparameterised draws
 * x = f(θ, ε) with ε from a fixed base distribution (Kingma & Welling 2014). */
#include "internal/mathx.h"
#include "internal/dist_impl.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>
#include <gsl/gsl_sf_psi.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#ifndef M_SQRT1_2
#define M_SQRT1_2 0.70710678118654752440
#endif
#ifndef M_SQRT2
#define M_SQRT2 1.41421356237309504880
#endif

#define P(d, k, i) em_pv((d)->tape, (d)->p[k], (i))
#define NEED(k) (need & (1u << (k))) /* bit k: parameter k (the value is handled by the driver) */

static size_t ev_one(const em_dist *d) { (void)d; return 1; }

static em_support sup_real(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_REAL, -INFINITY, INFINITY}; }
static em_support sup_pos(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_POSITIVE, 0.0, INFINITY}; }
static em_support sup_unit(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_UNIT, 0.0, 1.0}; }


/* A reparameterised draw: for element i, eps = (eps_expr), out = (val_expr), and the partials
 * (d0_expr), (d1_expr) with respect to parameters 0 and 1 (a, b are their values). */
#define RSAMPLE_FN(fname, desc, eps_expr, val_expr, d0_expr, d1_expr)                     \
    static em_var fname(const em_dist *d, em_rng *r, size_t n) {                           \
        em_tape *t = d->tape;                                                              \
        em_error e; /* cleared, not zeroed: this runs once per draw of every SVI step */    \
        em_error_clear(&e);                                                                \
        if (uv_check_params(&desc, d, &e) != EM_OK) return em_tape_fail(t, e.status, "%s", e.msg); \
        em_var out;                                                                        \
        rs_aux *ra;                                                                        \
        em_node *o = rs_node(t, d, n, &out, &ra);                                          \
        if (!o) return EM_VAR_INVALID;                                                     \
        for (size_t i = 0; i < n; i++) {                                                   \
            double a = P(d, 0, i), b = desc.np > 1 ? P(d, 1, i) : 0.0;                     \
            (void)a; (void)b;                                                              \
            double eps = (eps_expr);                                                       \
            double y = (val_expr);                                                         \
            o->val[i] = y;                                                                 \
            if (ra->part[0]) ra->part[0][i] = (d0_expr);                                   \
            if (desc.np > 1 && ra->part[1]) ra->part[1][i] = (d1_expr);                    \
        }                                                                                  \
        return out;                                                                        \
    }

#define FAMILY_OPS(ops, desc, reparam, support, lp, smp, rs, mean, var, lcdf, lccdf, pw)   \
    const em_dist_ops ops = {desc##_INFO, 0, reparam, ev_one, support, lp, smp, rs, mean, var, lcdf, lccdf, pw};

/* ---- log CDFs and CCDFs ---------------------------------------------------------------------
 * A family gives fam_cdf(x, p, need, dx, dp, upper): log F(x) (upper = 0) or log(1 - F(x))
 * (upper = 1) for x strictly inside its support (lo, hi), with the partials in x and in the
 * parameters, each tail computed directly rather than as 1 minus the other (Stan's *_lcdf and
 * *_lccdf). CDF_FNS makes the two kernels for the elementwise driver (a kernel alone, no norm:
 * every term depends on x) and settles x at or beyond the support's ends, where the result
 * is 0 or -inf and depends on nothing, before the formulas see it. fam_cdf_desc describes the
 * parameters as the family's desc does; its value may be anything but NaN. */
#define CDF_FNS(fam, lo_expr, hi_expr)                                                      \
    static inline double fam##_lcdf_kern(double x, const double *p, unsigned need, double *dx, double *dp) { \
        if (x <= (lo_expr)) return -INFINITY;                                              \
        if (x >= (hi_expr)) return 0.0;                                                    \
        return fam##_cdf(x, p, need, dx, dp, 0);                                           \
    }                                                                                      \
    static inline double fam##_lccdf_kern(double x, const double *p, unsigned need, double *dx, double *dp) { \
        if (x <= (lo_expr)) return 0.0;                                                    \
        if (x >= (hi_expr)) return -INFINITY;                                              \
        return fam##_cdf(x, p, need, dx, dp, 1);                                           \
    }                                                                                      \
    LOG_PROB_PW_FN(fam##_lcdf, fam##_cdf_desc, uv_no_norm, fam##_lcdf_kern)                 \
    LOG_PROB_PW_FN(fam##_lccdf, fam##_cdf_desc, uv_no_norm, fam##_lccdf_kern)

/* log of a tail probability v whose complement is w: log v while v is small, else log1p(-w),
 * which keeps the digits of a v near 1 (GSL gives both tails to full relative accuracy). */
static inline double log_tail(double v, double w) { return v < 0.5 ? log(v) : log1p(-w); }

/* ∂f/∂s at a shape s > 0, for the incomplete gamma and beta functions, whose derivatives in
 * their shape parameters have no closed form (Stan sums their series, grad_reg_inc_gamma and
 * inc_beta_dda). Central differences with one Richardson step: D(h) = (f(s+h) - f(s-h))/2h and
 * (4·D(h/2) - D(h))/3 = f'(s) - h⁴f⁽⁵⁾(s)/480 + ..., with h = s/300 (made exact in binary).
 * For a log CDF that varies on the scale of s the truncation error is about 1e-13 relative and
 * the rounding error of GSL's values (about 1e-15 relative) becomes about 1e-12·|f|/(s|f'|);
 * the tests hold it to 1e-9 against finite differences of the value. */
typedef double (*shape_fn)(double s, const double *c, int upper);
static double dshape(shape_fn f, double s, const double *c, int upper) {
    volatile double sh = s + s / 300.0; /* volatile: the step that was actually taken */
    double h = sh - s;
    double d1 = (f(s + h, c, upper) - f(s - h, c, upper)) / (2.0 * h);
    double d2 = (f(s + 0.5 * h, c, upper) - f(s - 0.5 * h, c, upper)) / h;
    return (4.0 * d2 - d1) / 3.0;
}

/* For the location–scale families: the partials of g(z), z = (x - loc)/scale, from dg/dz. */
static inline void loc_scale_partials(double dz, double z, double is, double *dx, double *dp) {
    *dx = dz * is;
    dp[0] = -dz * is;
    dp[1] = -dz * z * is;
}

/* ---- Normal(loc, scale) --------------------------------------------------------------------- */

static const uv_desc normal_desc = {"Normal", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_REAL,
                                    "(-inf, inf)", 2u, 1};
#define normal_desc_INFO "Normal", 2, {"loc", "scale"}
static inline double normal_norm(const double *p, unsigned need, double *dp) {
    if (NEED(1)) dp[1] = -1.0 / p[1];
    return -log(p[1]) - EM_LOG_SQRT_2PI;
}
static inline double normal_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, zs = z * is;
    *dx = -zs;
    dp[0] = zs;
    dp[1] = z * zs;
    return -0.5 * z * z;
}
/* Normal is the hot path of most regressions (a likelihood around a linear predictor, priors
 * on coefficient vectors), so its common layout — a vector value, loc a scalar or a vector of
 * the same length, scale a scalar — has its own loop: with z_i = (x_i - loc_i)/scale,
 *   lp = -Σ z²/2 - n(log scale + log √2π),  ∂/∂loc_i = z_i/scale = -∂/∂x_i,
 *   ∂/∂scale = (Σ z² - n)/scale,
 * so one pass computes Σz², Σz and (only when a vector gradient is needed) z_i/scale, and the
 * parameter checks reduce to the finiteness of Σz² (a non-finite x or loc makes it NaN or
 * inf; anything else falls back to the general driver, which names the culprit). */
typedef struct {
    double *pz; /* z_i/scale, when a vector input needs its gradient; NULL once handed over */
    double ss, sz, is;
    size_t n;
    em_dist dist;   /* for a replay's error message */
    double log_sc;  /* log(scale) when the scale is a constant (priors): computed once */
    int sc_const;
} normal_aux;

/* The vector adjoints follow the adjoint contract (internal/tape.h). When a vector loc's
 * adjoint holds no value yet, z/scale is already its adjoint up to the factor g (1 whenever lp
 * enters the target through sums): the node hands its pz array over as loc's adjoint instead of
 * copying it, so the gradient costs no pass of its own, as in a hand-written loop. The array is
 * then loc's; should the tape be swept again (em_zero_adjoints), pz is recomputed from x and loc
 * with the forward pass's operations in the same order, so the second gradient equals the first. */
#define NORMAL_PZ(i) (pz ? pz[i] : (xv[i] - mv[(i) * sm]) * a->is * a->is)
static void normal_fast_backward(em_tape *t, em_node *self) {
    normal_aux *a = self->aux;
    em_node *x = em_node_get(t, (em_var){self->in[0]}), *m = em_node_get(t, (em_var){self->in[1]});
    em_node *sc = em_node_get(t, (em_var){self->in[2]});
    double g = self->adj[0];
    if (a->n == 1) { /* a prior on a scalar: the general code below, without its loops */
        double pz = a->sz * a->is; /* z/scale, computed as the forward pass stores it */
        if (x->adj) x->adj[0] = em_adj_first(x) ? -g * pz : x->adj[0] - g * pz;
        if (m->adj) {
            double d = g * a->sz * a->is;
            m->adj[0] = em_adj_first(m) ? d : m->adj[0] + d;
        }
        if (sc->adj) {
            double d = g * (a->ss - 1.0) * a->is;
            sc->adj[0] = em_adj_first(sc) ? d : sc->adj[0] + d;
        }
        return;
    }
    const double *pz = a->pz, *xv = x->val, *mv = m->val;
    size_t sm = m->n == 1 ? 0 : 1;
    if (x->adj) { /* before loc: if x is loc, pz must still be here */
        double *restrict gx = x->adj;
        if (em_adj_first(x))
            for (size_t i = 0; i < a->n; i++) gx[i] = -g * NORMAL_PZ(i);
        else
            for (size_t i = 0; i < a->n; i++) gx[i] -= g * NORMAL_PZ(i);
    }
    if (m->adj) {
        if (m->n == 1) {
            double d = g * a->sz * a->is;
            m->adj[0] = em_adj_first(m) ? d : m->adj[0] + d;
        } else if (em_adj_first(m)) {
            if (a->pz) {
                double *restrict p = a->pz;
                if (g != 1.0)
                    for (size_t i = 0; i < a->n; i++) p[i] *= g;
                m->adj = p;
                a->pz = NULL;
            } else {
                double *restrict gm = m->adj;
                for (size_t i = 0; i < a->n; i++) gm[i] = (xv[i] - mv[i]) * a->is * a->is * g; /* as in the first sweep, bit for bit */
            }
        } else {
            double *restrict gm = m->adj;
            for (size_t i = 0; i < a->n; i++) gm[i] += g * NORMAL_PZ(i);
        }
    }
    if (sc->adj) {
        double d = g * (a->ss - (double)a->n) * a->is;
        sc->adj[0] = em_adj_first(sc) ? d : sc->adj[0] + d;
    }
}
#undef NORMAL_PZ

#define NORMAL_LOOP(SM, STORE)                                                             \
    for (size_t i = 0; i < n; i++) {                                                       \
        double z = (x[i] - mu[i * (SM)]) * is;                                             \
        ss += z * z;                                                                       \
        sz += z;                                                                           \
        if (STORE) pz[i] = z * is;                                                         \
    }

/* The fast node's value and partials; 0 when the scale or a sum is not finite (the node is
 * then left unset). */
static int normal_fast_compute(em_tape *t, em_node *o) {
    normal_aux *a = o->aux;
    const em_node *nx = em_node_get(t, (em_var){o->in[0]}), *nm = em_node_get(t, (em_var){o->in[1]});
    double sc = em_node_get(t, (em_var){o->in[2]})->val[0];
    if (!(sc > 0.0 && sc < INFINITY)) return 0;
    const double *restrict x = nx->val, *restrict mu = nm->val;
    double *restrict pz = a->pz;
    size_t n = a->n;
    double is = 1.0 / sc, ss = 0.0, sz = 0.0;
    if (n == 1) { /* a prior on a scalar: the loop below, unrolled (the same operations) */
        double z = (x[0] - mu[0]) * is;
        ss = z * z;
        sz = z;
        if (pz) pz[0] = z * is;
    } else if (nm->n == 1) {
        if (pz) NORMAL_LOOP(0, 1) else NORMAL_LOOP(0, 0)
    } else {
        if (pz) NORMAL_LOOP(1, 1) else NORMAL_LOOP(1, 0)
    }
    if (!(fabs(ss) < INFINITY) || !(fabs(sz) < INFINITY)) return 0;
    if (!a->sc_const) a->log_sc = log(sc);
    o->val[0] = -0.5 * ss - (double)n * (a->log_sc + EM_LOG_SQRT_2PI);
    a->ss = ss;
    a->sz = sz;
    a->is = is;
    return 1;
}

static void normal_fast_forward(em_tape *t, em_node *o) {
    if (normal_fast_compute(t, o)) return;
    normal_aux *a = o->aux;
    em_error e = {0};
    if (uv_diagnose(&normal_desc, &a->dist, em_node_get(t, (em_var){o->in[0]})->val, a->n, &e) == EM_OK)
        em_error_set(&e, EM_ERR_DOMAIN, "Normal: parameters or value outside the domain");
    em_dist_replay_fail(t, o, &e);
}

LOG_PROB_PW_FN(normal_general_lp, normal_desc, normal_norm, normal_kern)

static em_var normal_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    size_t n = em_len_(t, value), nm = em_len_(t, d->p[0]), ns = em_len_(t, d->p[1]);
    if (!em_var_ok(value) || ns != 1 || !(nm == 1 || nm == n)) return normal_general_lp(d, value);
    em_var in[3] = {value, d->p[0], d->p[1]}, out;
    em_node *o = em_node_new(t, 1, 1, in, 3, normal_fast_backward, &out);
    if (!o) return EM_VAR_INVALID;
    int store = o->adj && (em_node_get(t, value)->adj || (nm == n && em_node_get(t, d->p[0])->adj));
    normal_aux *a = em_arena_calloc(em_tape_arena(t), sizeof *a);
    if (a && store) a->pz = em_arena_alloc(em_tape_arena(t), n * sizeof(double));
    if (!a || (store && !a->pz)) return em_tape_fail(t, EM_ERR_NOMEM, "Normal: out of memory");
    a->n = n;
    a->dist = *d;
    o->aux = a;
    o->forward = normal_fast_forward;
    if (normal_fast_compute(t, o)) {
        a->sc_const = !em_node_get(t, d->p[1])->adj; /* from now on log_sc is reused */
        return out;
    }
    o->backward = NULL; /* abandon this node; the general driver reports or scores it */
    o->forward = NULL;
    return normal_general_lp(d, value);
}
#undef NORMAL_LOOP
SAMPLE_FN(normal_sample, normal_desc, P(d, 0, i) + gsl_ran_gaussian_ziggurat(r, P(d, 1, i)))
MOMENT_FN(normal_mean, normal_desc, P(d, 0, i))
MOMENT_FN(normal_var, normal_desc, P(d, 1, i) * P(d, 1, i))
/* log Φ(z) and log Φ(-z), z = (x - loc)/scale (internal/mathx.h: finite far into both tails) */
static const uv_desc normal_cdf_desc = {"Normal", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_NOT_NAN,
                                        "[-inf, inf]", 0u, 1};
static inline double normal_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, zz = upper ? -z : z;
    double dz = upper ? -em_math_dlog_Phi(zz) : em_math_dlog_Phi(zz);
    loc_scale_partials(dz, z, is, dx, dp);
    return em_math_log_Phi(zz);
}
CDF_FNS(normal, -INFINITY, INFINITY)
RSAMPLE_FN(normal_rs, normal_desc, gsl_ran_gaussian_ziggurat(r, 1.0), a + b * eps, 1.0, eps)
POINTWISE_FN(normal_pw, normal_general_lp_pw, normal_lcdf_pw, normal_lccdf_pw)
FAMILY_OPS(em_ops_normal, normal_desc, 1, sup_real, normal_lp, normal_sample, normal_rs, normal_mean, normal_var,
           normal_lcdf, normal_lccdf, normal_pw)
em_dist em_dist_normal(em_tape *t, em_var loc, em_var scale) {
    em_var p[2] = {loc, scale};
    return em_dist_make(t, &em_ops_normal, p, 2);
}

/* ---- HalfNormal(scale): twice the Normal(0, scale) density on [0, inf) ------------------------ */

static const uv_desc half_normal_desc = {"HalfNormal", 1, {"scale"}, {EM_PK_POS}, EM_PK_NONNEG, "[0, inf)", 1u, 1};
#define half_normal_desc_INFO "HalfNormal", 1, {"scale"}
static inline double half_normal_norm(const double *p, unsigned need, double *dp) {
    if (NEED(0)) dp[0] = -1.0 / p[0];
    return EM_LOG_2 - log(p[0]) - EM_LOG_SQRT_2PI;
}
static inline double half_normal_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double is = 1.0 / p[0], z = x * is;
    *dx = -z * is;
    dp[0] = z * z * is;
    return -0.5 * z * z;
}
LOG_PROB_PW_FN(half_normal_lp, half_normal_desc, half_normal_norm, half_normal_kern)
SAMPLE_FN(half_normal_sample, half_normal_desc, fabs(gsl_ran_gaussian_ziggurat(r, P(d, 0, i))))
MOMENT_FN(half_normal_mean, half_normal_desc, P(d, 0, i) * M_SQRT2 / sqrt(M_PI))
MOMENT_FN(half_normal_var, half_normal_desc, P(d, 0, i) * P(d, 0, i) * (1.0 - 2.0 / M_PI))
RSAMPLE_FN(half_normal_rs, half_normal_desc, fabs(gsl_ran_gaussian_ziggurat(r, 1.0)), a * eps, eps, 0.0)
/* F = erf(z/√2), z = x/scale (accurate near 0, where 2Φ(z) - 1 would cancel), through
 * log1p(-erfc) above z = 1; 1 - F = 2Φ(-z), so the CCDF is log 2 + log Φ(-z). */
static const uv_desc half_normal_cdf_desc = {"HalfNormal", 1, {"scale"}, {EM_PK_POS}, EM_PK_NOT_NAN, "[-inf, inf]",
                                             0u, 1};
static inline double half_normal_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[0], z = x * is, lt, dz;
    if (upper) {
        lt = EM_LOG_2 + em_math_log_Phi(-z);
        dz = -em_math_dlog_Phi(-z);
    } else {
        double u = z * M_SQRT1_2;
        lt = z < 1.0 ? log(erf(u)) : log1p(-erfc(u));
        dz = exp(EM_LOG_2 - 0.5 * z * z - EM_LOG_SQRT_2PI - lt); /* 2φ(z)/F */
    }
    *dx = dz * is;
    dp[0] = -dz * z * is;
    return lt;
}
CDF_FNS(half_normal, 0.0, INFINITY)
POINTWISE_FN(half_normal_pw, half_normal_lp_pw, half_normal_lcdf_pw, half_normal_lccdf_pw)
FAMILY_OPS(em_ops_half_normal, half_normal_desc, 1, sup_pos, half_normal_lp, half_normal_sample, half_normal_rs,
           half_normal_mean, half_normal_var, half_normal_lcdf, half_normal_lccdf, half_normal_pw)
em_dist em_dist_half_normal(em_tape *t, em_var scale) { return em_dist_make(t, &em_ops_half_normal, &scale, 1); }

/* ---- LogNormal(loc, scale) ---------------------------------------------------------------------- */

static const uv_desc lognormal_desc = {"LogNormal", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_POS,
                                       "(0, inf)", 2u, 1};
#define lognormal_desc_INFO "LogNormal", 2, {"loc", "scale"}
static inline double lognormal_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double lx = log(x), is = 1.0 / p[1], z = (lx - p[0]) * is, zs = z * is;
    *dx = (-zs - 1.0) / x;
    dp[0] = zs;
    dp[1] = z * zs;
    return -0.5 * z * z - lx;
}
LOG_PROB_PW_FN(lognormal_lp, lognormal_desc, normal_norm, lognormal_kern)
SAMPLE_FN(lognormal_sample, lognormal_desc, gsl_ran_lognormal(r, P(d, 0, i), P(d, 1, i)))
MOMENT_FN(lognormal_mean, lognormal_desc, exp(P(d, 0, i) + 0.5 * P(d, 1, i) * P(d, 1, i)))
MOMENT_FN(lognormal_var, lognormal_desc,
          expm1(P(d, 1, i) * P(d, 1, i)) * exp(2.0 * P(d, 0, i) + P(d, 1, i) * P(d, 1, i)))
static const uv_desc lognormal_cdf_desc = {"LogNormal", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_NOT_NAN,
                                           "[-inf, inf]", 0u, 1};
static inline double lognormal_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[1], z = (log(x) - p[0]) * is, zz = upper ? -z : z;
    double dz = upper ? -em_math_dlog_Phi(zz) : em_math_dlog_Phi(zz);
    loc_scale_partials(dz, z, is, dx, dp);
    *dx /= x; /* dz/dx = 1/(scale·x) */
    return em_math_log_Phi(zz);
}
CDF_FNS(lognormal, 0.0, INFINITY)
RSAMPLE_FN(lognormal_rs, lognormal_desc, gsl_ran_gaussian_ziggurat(r, 1.0), exp(a + b * eps), y, y * eps)
POINTWISE_FN(lognormal_pw, lognormal_lp_pw, lognormal_lcdf_pw, lognormal_lccdf_pw)
FAMILY_OPS(em_ops_lognormal, lognormal_desc, 1, sup_pos, lognormal_lp, lognormal_sample, lognormal_rs,
           lognormal_mean, lognormal_var, lognormal_lcdf, lognormal_lccdf, lognormal_pw)
em_dist em_dist_lognormal(em_tape *t, em_var loc, em_var scale) {
    em_var p[2] = {loc, scale};
    return em_dist_make(t, &em_ops_lognormal, p, 2);
}

/* ---- Uniform(lo, hi): -log(hi - lo) on [lo, hi] ------------------------------------------------ */

static const uv_desc uniform_desc = {"Uniform", 2, {"lo", "hi"}, {EM_PK_REAL, EM_PK_GT_P0}, EM_PK_INTERVAL,
                                     "[lo, hi]", 3u, 1};
#define uniform_desc_INFO "Uniform", 2, {"lo", "hi"}
static inline double uniform_norm(const double *p, unsigned need, double *dp) {
    double w = p[1] - p[0];
    dp[0] = 1.0 / w;
    dp[1] = -1.0 / w;
    return -log(w);
}
static inline double uniform_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    (void)x; (void)p; (void)dp;
    *dx = 0.0;
    return 0.0;
}
LOG_PROB_PW_FN(uniform_lp, uniform_desc, uniform_norm, uniform_kern)
static em_support uniform_support(const em_dist *d) {
    /* em_support holds one interval. A batch whose elements have different intervals has no
     * single support: its bounds are NaN, so a transform built from it fails loudly instead
     * of mapping every element into the first element's interval. */
    double lo = P(d, 0, 0), hi = P(d, 1, 0);
    size_t n = d->batch_len ? d->batch_len : 1;
    for (size_t i = 1; i < n; i++)
        if (P(d, 0, i) != lo || P(d, 1, i) != hi) return (em_support){EM_SUPPORT_INTERVAL, NAN, NAN};
    return (em_support){EM_SUPPORT_INTERVAL, lo, hi};
}
SAMPLE_FN(uniform_sample, uniform_desc, gsl_ran_flat(r, P(d, 0, i), P(d, 1, i)))
MOMENT_FN(uniform_mean, uniform_desc, 0.5 * (P(d, 0, i) + P(d, 1, i)))
MOMENT_FN(uniform_var, uniform_desc, (P(d, 1, i) - P(d, 0, i)) * (P(d, 1, i) - P(d, 0, i)) / 12.0)
RSAMPLE_FN(uniform_rs, uniform_desc, gsl_rng_uniform(r), a + (b - a) * eps, 1.0 - eps, eps)
/* log((x - lo)/(hi - lo)) and log((hi - x)/(hi - lo)) */
static const uv_desc uniform_cdf_desc = {"Uniform", 2, {"lo", "hi"}, {EM_PK_REAL, EM_PK_GT_P0}, EM_PK_NOT_NAN,
                                         "[-inf, inf]", 0u, 1};
static inline double uniform_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double iw = 1.0 / (p[1] - p[0]);
    if (upper) {
        double ih = 1.0 / (p[1] - x);
        *dx = -ih;
        dp[0] = iw;
        dp[1] = ih - iw;
        return log((p[1] - x) * iw);
    }
    double il = 1.0 / (x - p[0]);
    *dx = il;
    dp[0] = iw - il;
    dp[1] = -iw;
    return log((x - p[0]) * iw);
}
CDF_FNS(uniform, p[0], p[1])
POINTWISE_FN(uniform_pw, uniform_lp_pw, uniform_lcdf_pw, uniform_lccdf_pw)
FAMILY_OPS(em_ops_uniform, uniform_desc, 1, uniform_support, uniform_lp, uniform_sample, uniform_rs, uniform_mean,
           uniform_var, uniform_lcdf, uniform_lccdf, uniform_pw)
em_dist em_dist_uniform(em_tape *t, em_var lo, em_var hi) {
    em_var p[2] = {lo, hi};
    return em_dist_make(t, &em_ops_uniform, p, 2);
}

/* ---- Exponential(rate) ---------------------------------------------------------------------------- */

static const uv_desc exponential_desc = {"Exponential", 1, {"rate"}, {EM_PK_POS}, EM_PK_NONNEG, "[0, inf)", 1u, 1};
#define exponential_desc_INFO "Exponential", 1, {"rate"}
static inline double exponential_norm(const double *p, unsigned need, double *dp) {
    if (NEED(0)) dp[0] = 1.0 / p[0];
    return log(p[0]);
}
static inline double exponential_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    *dx = -p[0];
    dp[0] = -x;
    return -p[0] * x;
}
LOG_PROB_PW_FN(exponential_lp, exponential_desc, exponential_norm, exponential_kern)
SAMPLE_FN(exponential_sample, exponential_desc, gsl_ran_exponential(r, 1.0 / P(d, 0, i)))
MOMENT_FN(exponential_mean, exponential_desc, 1.0 / P(d, 0, i))
MOMENT_FN(exponential_var, exponential_desc, 1.0 / (P(d, 0, i) * P(d, 0, i)))
/* log(1 - e^{-rate·x}) and -rate·x; d/du log(1 - e^{-u}) = 1/expm1(u) */
static const uv_desc exponential_cdf_desc = {"Exponential", 1, {"rate"}, {EM_PK_POS}, EM_PK_NOT_NAN,
                                             "[-inf, inf]", 0u, 1};
static inline double exponential_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double u = p[0] * x;
    if (upper) {
        *dx = -p[0];
        dp[0] = -x;
        return -u;
    }
    double du = 1.0 / expm1(u);
    *dx = p[0] * du;
    dp[0] = x * du;
    return em_math_log1m_exp(-u);
}
CDF_FNS(exponential, 0.0, INFINITY)
RSAMPLE_FN(exponential_rs, exponential_desc, gsl_ran_exponential(r, 1.0), eps / a, -eps / (a * a), 0.0)
POINTWISE_FN(exponential_pw, exponential_lp_pw, exponential_lcdf_pw, exponential_lccdf_pw)
FAMILY_OPS(em_ops_exponential, exponential_desc, 1, sup_pos, exponential_lp, exponential_sample, exponential_rs,
           exponential_mean, exponential_var, exponential_lcdf, exponential_lccdf, exponential_pw)
em_dist em_dist_exponential(em_tape *t, em_var rate) { return em_dist_make(t, &em_ops_exponential, &rate, 1); }

/* ---- Gamma(shape, rate) ------------------------------------------------------------------------------ */

static const uv_desc gamma_desc = {"Gamma", 2, {"shape", "rate"}, {EM_PK_POS, EM_PK_POS}, EM_PK_POS, "(0, inf)", 3u, 1};
#define gamma_desc_INFO "Gamma", 2, {"shape", "rate"}
static inline double gamma_norm(const double *p, unsigned need, double *dp) {
    double lb = log(p[1]);
    if (NEED(0)) dp[0] = lb - gsl_sf_psi(p[0]);
    dp[1] = p[0] / p[1];
    return p[0] * lb - em_math_lgamma(p[0]);
}
static inline double gamma_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double lx = log(x);
    *dx = (p[0] - 1.0) / x - p[1];
    dp[0] = lx;
    dp[1] = -x;
    return (p[0] - 1.0) * lx - p[1] * x;
}
LOG_PROB_PW_FN(gamma_lp, gamma_desc, gamma_norm, gamma_kern)
SAMPLE_FN(gamma_sample, gamma_desc, gsl_ran_gamma(r, P(d, 0, i), 1.0 / P(d, 1, i)))
MOMENT_FN(gamma_mean, gamma_desc, P(d, 0, i) / P(d, 1, i))
MOMENT_FN(gamma_var, gamma_desc, P(d, 0, i) / (P(d, 1, i) * P(d, 1, i)))
/* log P(shape, rate·x) and log Q(shape, rate·x), GSL's regularised incomplete gamma functions;
 * in x and rate the partial is the density over the tail, in shape a difference (dshape). */
static const uv_desc gamma_cdf_desc = {"Gamma", 2, {"shape", "rate"}, {EM_PK_POS, EM_PK_POS}, EM_PK_NOT_NAN,
                                       "[-inf, inf]", 0u, 1};
static double gamma_log_tail(double a, const double *y, int upper) {
    double P = gsl_sf_gamma_inc_P(a, y[0]), Q = gsl_sf_gamma_inc_Q(a, y[0]);
    return upper ? log_tail(Q, P) : log_tail(P, Q);
}
static inline double gamma_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double a = p[0], y = p[1] * x, lt = gamma_log_tail(a, &y, upper);
    /* the standard Gamma(a) density at y over the tail, in logs (both may underflow) */
    double h = exp((a - 1.0) * log(y) - y - em_math_lgamma(a) - lt);
    if (upper) h = -h;
    *dx = p[1] * h;
    dp[1] = x * h;
    if (NEED(0)) dp[0] = dshape(gamma_log_tail, a, &y, upper);
    return lt;
}
CDF_FNS(gamma, 0.0, INFINITY)
POINTWISE_FN(gamma_pw, gamma_lp_pw, gamma_lcdf_pw, gamma_lccdf_pw)
FAMILY_OPS(em_ops_gamma, gamma_desc, 0, sup_pos, gamma_lp, gamma_sample, NULL, gamma_mean, gamma_var, gamma_lcdf,
           gamma_lccdf, gamma_pw)
em_dist em_dist_gamma(em_tape *t, em_var shape, em_var rate) {
    em_var p[2] = {shape, rate};
    return em_dist_make(t, &em_ops_gamma, p, 2);
}

/* ---- InverseGamma(shape, scale) ------------------------------------------------------------------------ */

static const uv_desc inv_gamma_desc = {"InverseGamma", 2, {"shape", "scale"}, {EM_PK_POS, EM_PK_POS}, EM_PK_POS,
                                       "(0, inf)", 3u, 1};
#define inv_gamma_desc_INFO "InverseGamma", 2, {"shape", "scale"}
static inline double inv_gamma_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double lx = log(x), ix = 1.0 / x;
    *dx = (-(p[0] + 1.0) + p[1] * ix) * ix;
    dp[0] = -lx;
    dp[1] = -ix;
    return -(p[0] + 1.0) * lx - p[1] * ix;
}
LOG_PROB_PW_FN(inv_gamma_lp, inv_gamma_desc, gamma_norm, inv_gamma_kern)
SAMPLE_FN(inv_gamma_sample, inv_gamma_desc, 1.0 / gsl_ran_gamma(r, P(d, 0, i), 1.0 / P(d, 1, i)))
MOMENT_FN(inv_gamma_mean, inv_gamma_desc, P(d, 0, i) > 1.0 ? P(d, 1, i) / (P(d, 0, i) - 1.0) : INFINITY)
MOMENT_FN(inv_gamma_var, inv_gamma_desc,
          P(d, 0, i) > 2.0 ? P(d, 1, i) * P(d, 1, i) / ((P(d, 0, i) - 1.0) * (P(d, 0, i) - 1.0) * (P(d, 0, i) - 2.0))
                           : (P(d, 0, i) > 1.0 ? INFINITY : NAN))
/* X = 1/Y with Y ~ Gamma(shape, rate = scale): P(X <= x) = Q(shape, scale/x), so the tails are
 * Gamma's other tails at y = scale/x, with dy/dx = -y/x and dy/dscale = 1/x. */
static const uv_desc inv_gamma_cdf_desc = {"InverseGamma", 2, {"shape", "scale"}, {EM_PK_POS, EM_PK_POS},
                                           EM_PK_NOT_NAN, "[-inf, inf]", 0u, 1};
static inline double inv_gamma_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double y = p[1] / x, q[2] = {p[0], 1.0}, dy = 0.0, dq[2] = {0, 0};
    double lt = gamma_cdf(y, q, need & 1u, &dy, dq, !upper);
    *dx = -dy * y / x;
    dp[0] = dq[0];
    dp[1] = dy / x;
    return lt;
}
CDF_FNS(inv_gamma, 0.0, INFINITY)
POINTWISE_FN(inv_gamma_pw, inv_gamma_lp_pw, inv_gamma_lcdf_pw, inv_gamma_lccdf_pw)
FAMILY_OPS(em_ops_inv_gamma, inv_gamma_desc, 0, sup_pos, inv_gamma_lp, inv_gamma_sample, NULL, inv_gamma_mean,
           inv_gamma_var, inv_gamma_lcdf, inv_gamma_lccdf, inv_gamma_pw)
em_dist em_dist_inv_gamma(em_tape *t, em_var shape, em_var scale) {
    em_var p[2] = {shape, scale};
    return em_dist_make(t, &em_ops_inv_gamma, p, 2);
}

/* ---- Beta(a, b) ------------------------------------------------------------------------------------------ */

static const uv_desc beta_desc = {"Beta", 2, {"a", "b"}, {EM_PK_POS, EM_PK_POS}, EM_PK_UNIT_OPEN, "(0, 1)", 3u, 1};
#define beta_desc_INFO "Beta", 2, {"a", "b"}
static inline double beta_norm(const double *p, unsigned need, double *dp) {
    if (need & 3u) {
        double pab = gsl_sf_psi(p[0] + p[1]);
        if (NEED(0)) dp[0] = pab - gsl_sf_psi(p[0]);
        if (NEED(1)) dp[1] = pab - gsl_sf_psi(p[1]);
    }
    return em_math_lgamma(p[0] + p[1]) - em_math_lgamma(p[0]) - em_math_lgamma(p[1]);
}
static inline double beta_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double lx = log(x), l1x = log1p(-x);
    *dx = (p[0] - 1.0) / x - (p[1] - 1.0) / (1.0 - x);
    dp[0] = lx;
    dp[1] = l1x;
    return (p[0] - 1.0) * lx + (p[1] - 1.0) * l1x;
}
LOG_PROB_PW_FN(beta_lp, beta_desc, beta_norm, beta_kern)
SAMPLE_FN(beta_sample, beta_desc, gsl_ran_beta(r, P(d, 0, i), P(d, 1, i)))
MOMENT_FN(beta_mean, beta_desc, P(d, 0, i) / (P(d, 0, i) + P(d, 1, i)))
MOMENT_FN(beta_var, beta_desc,
          P(d, 0, i) * P(d, 1, i) /
              ((P(d, 0, i) + P(d, 1, i)) * (P(d, 0, i) + P(d, 1, i)) * (P(d, 0, i) + P(d, 1, i) + 1.0)))
/* log I_x(a, b) and log(1 - I_x(a, b)), GSL's regularised incomplete beta function; in x the
 * partial is the density over the tail, in a and b differences (dshape). */
static const uv_desc beta_cdf_desc = {"Beta", 2, {"a", "b"}, {EM_PK_POS, EM_PK_POS}, EM_PK_NOT_NAN, "[-inf, inf]",
                                      0u, 1};
static double beta_log_tail(double a, double b, double x, int upper) {
    double P = gsl_cdf_beta_P(x, a, b), Q = gsl_cdf_beta_Q(x, a, b);
    return upper ? log_tail(Q, P) : log_tail(P, Q);
}
/* the same as a function of one shape, for dshape: c = {x, the other shape} */
static double beta_log_tail_a(double a, const double *c, int upper) { return beta_log_tail(a, c[1], c[0], upper); }
static double beta_log_tail_b(double b, const double *c, int upper) { return beta_log_tail(c[1], b, c[0], upper); }
static inline double beta_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double a = p[0], b = p[1], lt = beta_log_tail(a, b, x, upper);
    double lpdf = (a - 1.0) * log(x) + (b - 1.0) * log1p(-x) - gsl_sf_lnbeta(a, b);
    *dx = upper ? -exp(lpdf - lt) : exp(lpdf - lt);
    if (NEED(0)) dp[0] = dshape(beta_log_tail_a, a, (const double[]){x, b}, upper);
    if (NEED(1)) dp[1] = dshape(beta_log_tail_b, b, (const double[]){x, a}, upper);
    return lt;
}
CDF_FNS(beta, 0.0, 1.0)
POINTWISE_FN(beta_pw, beta_lp_pw, beta_lcdf_pw, beta_lccdf_pw)
FAMILY_OPS(em_ops_beta, beta_desc, 0, sup_unit, beta_lp, beta_sample, NULL, beta_mean, beta_var, beta_lcdf,
           beta_lccdf, beta_pw)
em_dist em_dist_beta(em_tape *t, em_var a, em_var b) {
    em_var p[2] = {a, b};
    return em_dist_make(t, &em_ops_beta, p, 2);
}

/* ---- Cauchy(loc, scale) and HalfCauchy(scale) ------------------------------------------------------------- */

static const uv_desc cauchy_desc = {"Cauchy", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_REAL,
                                    "(-inf, inf)", 2u, 1};
#define cauchy_desc_INFO "Cauchy", 2, {"loc", "scale"}
static inline double cauchy_norm(const double *p, unsigned need, double *dp) {
    if (NEED(1)) dp[1] = -1.0 / p[1];
    return -log(p[1]) - EM_LOG_PI;
}
static inline double cauchy_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, q = 1.0 + z * z, dz = -2.0 * z / q;
    *dx = dz * is;
    dp[0] = -dz * is;
    dp[1] = -dz * z * is;
    return -log1p(z * z);
}
LOG_PROB_PW_FN(cauchy_lp, cauchy_desc, cauchy_norm, cauchy_kern)
SAMPLE_FN(cauchy_sample, cauchy_desc, P(d, 0, i) + gsl_ran_cauchy(r, P(d, 1, i)))
MOMENT_FN(cauchy_mean, cauchy_desc, NAN) /* undefined */
MOMENT_FN(cauchy_var, cauchy_desc, NAN)
/* F(z) = atan2(1, -z)/π, 1 - F(z) = atan2(1, z)/π: each tail without cancellation (for z far
 * below 0, atan2(1, -z) ≈ 1/|z| to full precision, where 1/2 + atan(z)/π loses it all). */
static const uv_desc cauchy_cdf_desc = {"Cauchy", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_NOT_NAN,
                                        "[-inf, inf]", 0u, 1};
static inline double cauchy_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, at = atan2(1.0, upper ? z : -z);
    double dz = 1.0 / ((1.0 + z * z) * at); /* the density over the tail */
    loc_scale_partials(upper ? -dz : dz, z, is, dx, dp);
    return log(at) - EM_LOG_PI;
}
CDF_FNS(cauchy, -INFINITY, INFINITY)
RSAMPLE_FN(cauchy_rs, cauchy_desc, gsl_ran_cauchy(r, 1.0), a + b * eps, 1.0, eps)
POINTWISE_FN(cauchy_pw, cauchy_lp_pw, cauchy_lcdf_pw, cauchy_lccdf_pw)
FAMILY_OPS(em_ops_cauchy, cauchy_desc, 1, sup_real, cauchy_lp, cauchy_sample, cauchy_rs, cauchy_mean, cauchy_var,
           cauchy_lcdf, cauchy_lccdf, cauchy_pw)
em_dist em_dist_cauchy(em_tape *t, em_var loc, em_var scale) {
    em_var p[2] = {loc, scale};
    return em_dist_make(t, &em_ops_cauchy, p, 2);
}

static const uv_desc half_cauchy_desc = {"HalfCauchy", 1, {"scale"}, {EM_PK_POS}, EM_PK_NONNEG, "[0, inf)", 1u, 1};
#define half_cauchy_desc_INFO "HalfCauchy", 1, {"scale"}
static inline double half_cauchy_norm(const double *p, unsigned need, double *dp) {
    if (NEED(0)) dp[0] = -1.0 / p[0];
    return EM_LOG_2 - log(p[0]) - EM_LOG_PI;
}
static inline double half_cauchy_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double is = 1.0 / p[0], z = x * is, q = 1.0 + z * z, dz = -2.0 * z / q;
    *dx = dz * is;
    dp[0] = -dz * z * is;
    return -log1p(z * z);
}
LOG_PROB_PW_FN(half_cauchy_lp, half_cauchy_desc, half_cauchy_norm, half_cauchy_kern)
SAMPLE_FN(half_cauchy_sample, half_cauchy_desc, fabs(gsl_ran_cauchy(r, P(d, 0, i))))
MOMENT_FN(half_cauchy_mean, half_cauchy_desc, INFINITY)
MOMENT_FN(half_cauchy_var, half_cauchy_desc, INFINITY)
RSAMPLE_FN(half_cauchy_rs, half_cauchy_desc, fabs(gsl_ran_cauchy(r, 1.0)), a * eps, eps, 0.0)
/* F = (2/π)·atan(z), 1 - F = (2/π)·atan2(1, z), z = x/scale: each without cancellation */
static const uv_desc half_cauchy_cdf_desc = {"HalfCauchy", 1, {"scale"}, {EM_PK_POS}, EM_PK_NOT_NAN, "[-inf, inf]",
                                             0u, 1};
static inline double half_cauchy_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[0], z = x * is, at = upper ? atan2(1.0, z) : atan(z);
    double dz = (upper ? -1.0 : 1.0) / ((1.0 + z * z) * at);
    *dx = dz * is;
    dp[0] = -dz * z * is;
    return EM_LOG_2 - EM_LOG_PI + log(at);
}
CDF_FNS(half_cauchy, 0.0, INFINITY)
POINTWISE_FN(half_cauchy_pw, half_cauchy_lp_pw, half_cauchy_lcdf_pw, half_cauchy_lccdf_pw)
FAMILY_OPS(em_ops_half_cauchy, half_cauchy_desc, 1, sup_pos, half_cauchy_lp, half_cauchy_sample, half_cauchy_rs,
           half_cauchy_mean, half_cauchy_var, half_cauchy_lcdf, half_cauchy_lccdf, half_cauchy_pw)
em_dist em_dist_half_cauchy(em_tape *t, em_var scale) { return em_dist_make(t, &em_ops_half_cauchy, &scale, 1); }

/* ---- StudentT(df, loc, scale) ---------------------------------------------------------------------------- */

static const uv_desc student_t_desc = {"StudentT", 3, {"df", "loc", "scale"}, {EM_PK_POS, EM_PK_REAL, EM_PK_POS},
                                       EM_PK_REAL, "(-inf, inf)", 5u, 1};
#define student_t_desc_INFO "StudentT", 3, {"df", "loc", "scale"}
static inline double student_t_norm(const double *p, unsigned need, double *dp) {
    double nu = p[0];
    if (NEED(0)) dp[0] = 0.5 * (gsl_sf_psi(0.5 * (nu + 1.0)) - gsl_sf_psi(0.5 * nu)) - 0.5 / nu;
    if (NEED(2)) dp[2] = -1.0 / p[2];
    return em_math_lgamma(0.5 * (nu + 1.0)) - em_math_lgamma(0.5 * nu) - 0.5 * (log(nu) + EM_LOG_PI) - log(p[2]);
}
static inline double student_t_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double nu = p[0], is = 1.0 / p[2], z = (x - p[1]) * is, z2 = z * z;
    double l = log1p(z2 / nu), w = (nu + 1.0) / (nu + z2);
    *dx = -w * z * is;
    dp[0] = -0.5 * l + 0.5 * w * z2 / nu;
    dp[1] = w * z * is;
    dp[2] = w * z2 * is;
    return -0.5 * (nu + 1.0) * l;
}
LOG_PROB_PW_FN(student_t_lp, student_t_desc, student_t_norm, student_t_kern)
SAMPLE_FN(student_t_sample, student_t_desc, P(d, 1, i) + P(d, 2, i) * gsl_ran_tdist(r, P(d, 0, i)))
MOMENT_FN(student_t_mean, student_t_desc, P(d, 0, i) > 1.0 ? P(d, 1, i) : NAN)
MOMENT_FN(student_t_var, student_t_desc,
          P(d, 0, i) > 2.0 ? P(d, 2, i) * P(d, 2, i) * P(d, 0, i) / (P(d, 0, i) - 2.0)
                           : (P(d, 0, i) > 1.0 ? INFINITY : NAN))
/* GSL's t CDF (an incomplete beta function) in z = (x - loc)/scale; in x, loc and scale the
 * partial is the density over the tail, in df a difference (dshape). */
static const uv_desc student_t_cdf_desc = {"StudentT", 3, {"df", "loc", "scale"},
                                           {EM_PK_POS, EM_PK_REAL, EM_PK_POS}, EM_PK_NOT_NAN, "[-inf, inf]", 0u, 1};
static double student_t_log_tail(double nu, const double *z, int upper) {
    double P = gsl_cdf_tdist_P(z[0], nu), Q = gsl_cdf_tdist_Q(z[0], nu);
    return upper ? log_tail(Q, P) : log_tail(P, Q);
}
static inline double student_t_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double nu = p[0], is = 1.0 / p[2], z = (x - p[1]) * is, lt = student_t_log_tail(nu, &z, upper);
    double lpdf = em_math_lgamma(0.5 * (nu + 1.0)) - em_math_lgamma(0.5 * nu) - 0.5 * (log(nu) + EM_LOG_PI) -
                  0.5 * (nu + 1.0) * log1p(z * z / nu);
    double dz = upper ? -exp(lpdf - lt) : exp(lpdf - lt), dls[2];
    loc_scale_partials(dz, z, is, dx, dls);
    dp[1] = dls[0];
    dp[2] = dls[1];
    if (NEED(0)) dp[0] = dshape(student_t_log_tail, nu, &z, upper);
    return lt;
}
CDF_FNS(student_t, -INFINITY, INFINITY)
/* Not reparameterised: a draw's dependence on df has no simple pathwise form. */
POINTWISE_FN(student_t_pw, student_t_lp_pw, student_t_lcdf_pw, student_t_lccdf_pw)
FAMILY_OPS(em_ops_student_t, student_t_desc, 0, sup_real, student_t_lp, student_t_sample, NULL, student_t_mean,
           student_t_var, student_t_lcdf, student_t_lccdf, student_t_pw)
em_dist em_dist_student_t(em_tape *t, em_var df, em_var loc, em_var scale) {
    em_var p[3] = {df, loc, scale};
    return em_dist_make(t, &em_ops_student_t, p, 3);
}

/* ---- Laplace(loc, scale) ----------------------------------------------------------------------------------- */

static const uv_desc laplace_desc = {"Laplace", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_REAL,
                                     "(-inf, inf)", 2u, 1};
#define laplace_desc_INFO "Laplace", 2, {"loc", "scale"}
static inline double laplace_norm(const double *p, unsigned need, double *dp) {
    if (NEED(1)) dp[1] = -1.0 / p[1];
    return -EM_LOG_2 - log(p[1]);
}
static inline double laplace_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double is = 1.0 / p[1], r = x - p[0], a = fabs(r), sg = (r > 0) - (r < 0);
    *dx = -sg * is;
    dp[0] = sg * is;
    dp[1] = a * is * is;
    return -a * is;
}
LOG_PROB_PW_FN(laplace_lp, laplace_desc, laplace_norm, laplace_kern)
SAMPLE_FN(laplace_sample, laplace_desc, P(d, 0, i) + gsl_ran_laplace(r, P(d, 1, i)))
MOMENT_FN(laplace_mean, laplace_desc, P(d, 0, i))
MOMENT_FN(laplace_var, laplace_desc, 2.0 * P(d, 1, i) * P(d, 1, i))
/* F(z) = e^z/2 below 0 and 1 - e^{-z}/2 above, each log taken on its own side:
 * log F = z - log 2 (z < 0) or log1p(-e^{-z}/2), d/dz = 1 or 1/(2e^z - 1); the CCDF mirrored. */
static const uv_desc laplace_cdf_desc = {"Laplace", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_NOT_NAN,
                                         "[-inf, inf]", 0u, 1};
static inline double laplace_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, w = upper ? -z : z, lt, dw;
    if (w < 0.0) {
        lt = w - EM_LOG_2;
        dw = 1.0;
    } else {
        lt = log1p(-0.5 * exp(-w));
        dw = 1.0 / (2.0 * exp(w) - 1.0);
    }
    loc_scale_partials(upper ? -dw : dw, z, is, dx, dp);
    return lt;
}
CDF_FNS(laplace, -INFINITY, INFINITY)
RSAMPLE_FN(laplace_rs, laplace_desc, gsl_ran_laplace(r, 1.0), a + b * eps, 1.0, eps)
POINTWISE_FN(laplace_pw, laplace_lp_pw, laplace_lcdf_pw, laplace_lccdf_pw)
FAMILY_OPS(em_ops_laplace, laplace_desc, 1, sup_real, laplace_lp, laplace_sample, laplace_rs, laplace_mean,
           laplace_var, laplace_lcdf, laplace_lccdf, laplace_pw)
em_dist em_dist_laplace(em_tape *t, em_var loc, em_var scale) {
    em_var p[2] = {loc, scale};
    return em_dist_make(t, &em_ops_laplace, p, 2);
}

/* ---- Logistic(loc, scale) ---------------------------------------------------------------------------------- */

static const uv_desc logistic_desc = {"Logistic", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_REAL,
                                      "(-inf, inf)", 2u, 1};
#define logistic_desc_INFO "Logistic", 2, {"loc", "scale"}
static inline double logistic_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    /* log density in z = (x-loc)/scale: -|z| - 2 log1p(exp(-|z|)) (symmetric, no overflow);
     * its derivative in z is -tanh(z/2). */
    double is = 1.0 / p[1], z = (x - p[0]) * is, az = fabs(z);
    double dz = -tanh(0.5 * z);
    *dx = dz * is;
    dp[0] = -dz * is;
    dp[1] = -dz * z * is;
    return -az - 2.0 * log1p(exp(-az));
}
static inline double logistic_norm(const double *p, unsigned need, double *dp) {
    if (NEED(1)) dp[1] = -1.0 / p[1];
    return -log(p[1]);
}
LOG_PROB_PW_FN(logistic_lp, logistic_desc, logistic_norm, logistic_kern)
SAMPLE_FN(logistic_sample, logistic_desc, P(d, 0, i) + gsl_ran_logistic(r, P(d, 1, i)))
MOMENT_FN(logistic_mean, logistic_desc, P(d, 0, i))
MOMENT_FN(logistic_var, logistic_desc, P(d, 1, i) * P(d, 1, i) * M_PI * M_PI / 3.0)
/* log σ(z) = -softplus(-z) and log σ(-z) = -softplus(z); d/dz = σ(-z) and -σ(z) */
static const uv_desc logistic_cdf_desc = {"Logistic", 2, {"loc", "scale"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_NOT_NAN,
                                          "[-inf, inf]", 0u, 1};
static inline double logistic_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, w = upper ? -z : z;
    double dw = em_math_sigmoid(-w);
    loc_scale_partials(upper ? -dw : dw, z, is, dx, dp);
    return -em_math_softplus(-w);
}
CDF_FNS(logistic, -INFINITY, INFINITY)
RSAMPLE_FN(logistic_rs, logistic_desc, gsl_ran_logistic(r, 1.0), a + b * eps, 1.0, eps)
POINTWISE_FN(logistic_pw, logistic_lp_pw, logistic_lcdf_pw, logistic_lccdf_pw)
FAMILY_OPS(em_ops_logistic, logistic_desc, 1, sup_real, logistic_lp, logistic_sample, logistic_rs, logistic_mean,
           logistic_var, logistic_lcdf, logistic_lccdf, logistic_pw)
em_dist em_dist_logistic(em_tape *t, em_var loc, em_var scale) {
    em_var p[2] = {loc, scale};
    return em_dist_make(t, &em_ops_logistic, p, 2);
}

/* ---- Weibull(shape α, scale σ) (Stan's weibull): log α - α log σ + (α - 1) log x - (x/σ)^α ---------- */

static const uv_desc weibull_desc = {"Weibull", 2, {"shape", "scale"}, {EM_PK_POS, EM_PK_POS}, EM_PK_POS, "(0, inf)",
                                     3u, 1};
#define weibull_desc_INFO "Weibull", 2, {"shape", "scale"}
static inline double weibull_norm(const double *p, unsigned need, double *dp) {
    double ls = log(p[1]);
    if (NEED(0)) dp[0] = 1.0 / p[0] - ls;
    dp[1] = -p[0] / p[1];
    return log(p[0]) - p[0] * ls;
}
static inline double weibull_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double a = p[0], lx = log(x), lr = lx - log(p[1]), u = exp(a * lr); /* u = (x/σ)^α */
    *dx = (a - 1.0 - a * u) / x;
    dp[0] = lx - u * lr;
    dp[1] = a * u / p[1];
    return (a - 1.0) * lx - u;
}
LOG_PROB_PW_FN(weibull_lp, weibull_desc, weibull_norm, weibull_kern)
/* 1 - F = e^{-u}, u = (x/σ)^α: log CCDF = -u, log CDF = log(1 - e^{-u}) with d/du = 1/expm1(u) */
static const uv_desc weibull_cdf_desc = {"Weibull", 2, {"shape", "scale"}, {EM_PK_POS, EM_PK_POS}, EM_PK_NOT_NAN,
                                         "[-inf, inf]", 0u, 1};
static inline double weibull_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double a = p[0], lr = log(x) - log(p[1]), u = exp(a * lr);
    double du = upper ? -1.0 : 1.0 / expm1(u);
    *dx = du * a * u / x;
    dp[0] = du * u * lr;
    dp[1] = -du * a * u / p[1];
    return upper ? -u : em_math_log1m_exp(-u);
}
CDF_FNS(weibull, 0.0, INFINITY)
/* gsl_ran_weibull(r, a, b) draws with scale a and shape b */
SAMPLE_FN(weibull_sample, weibull_desc, gsl_ran_weibull(r, P(d, 1, i), P(d, 0, i)))
MOMENT_FN(weibull_mean, weibull_desc, P(d, 1, i) * exp(em_math_lgamma(1.0 + 1.0 / P(d, 0, i))))
MOMENT_FN(weibull_var, weibull_desc,
          P(d, 1, i) * P(d, 1, i) *
              (exp(em_math_lgamma(1.0 + 2.0 / P(d, 0, i))) - exp(2.0 * em_math_lgamma(1.0 + 1.0 / P(d, 0, i)))))
/* x = σ·E^{1/α} with E ~ Exponential(1): ∂x/∂α = -x·log(E)/α², ∂x/∂σ = x/σ */
RSAMPLE_FN(weibull_rs, weibull_desc, gsl_ran_exponential(r, 1.0), b * pow(eps, 1.0 / a), -y * log(eps) / (a * a),
           y / b)
POINTWISE_FN(weibull_pw, weibull_lp_pw, weibull_lcdf_pw, weibull_lccdf_pw)
FAMILY_OPS(em_ops_weibull, weibull_desc, 1, sup_pos, weibull_lp, weibull_sample, weibull_rs, weibull_mean,
           weibull_var, weibull_lcdf, weibull_lccdf, weibull_pw)
em_dist em_dist_weibull(em_tape *t, em_var shape, em_var scale) {
    em_var p[2] = {shape, scale};
    return em_dist_make(t, &em_ops_weibull, p, 2);
}

/* ---- HalfStudentT(df, scale): twice the StudentT(df, 0, scale) density on [0, inf) -------------- */

static const uv_desc half_student_t_desc = {"HalfStudentT", 2, {"df", "scale"}, {EM_PK_POS, EM_PK_POS}, EM_PK_NONNEG,
                                            "[0, inf)", 3u, 1};
#define half_student_t_desc_INFO "HalfStudentT", 2, {"df", "scale"}
/* the StudentT kernels at loc 0, parameters (df, 0, scale) */
static inline double half_student_t_norm(const double *p, unsigned need, double *dp) {
    double q[3] = {p[0], 0.0, p[1]}, dq[3] = {0, 0, 0};
    double v = student_t_norm(q, (need & 1u) | ((need & 2u) << 1), dq);
    dp[0] = dq[0];
    dp[1] = dq[2];
    return EM_LOG_2 + v;
}
static inline double half_student_t_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double q[3] = {p[0], 0.0, p[1]}, dq[3] = {0, 0, 0};
    double v = student_t_kern(x, q, (need & 1u) | ((need & 2u) << 1), dx, dq);
    dp[0] = dq[0];
    dp[1] = dq[2];
    return v;
}
LOG_PROB_PW_FN(half_student_t_lp, half_student_t_desc, half_student_t_norm, half_student_t_kern)
/* F(x) = 2·F_t(x/scale) - 1 = 1 - 2·Q_t(x/scale): log CCDF = log 2 + log Q_t, log CDF =
 * log1p(-2·Q_t); the partials from StudentT's log CCDF (d/dθ log(1 - 2Q) = -2Q/(1 - 2Q)·d log Q). */
static const uv_desc half_student_t_cdf_desc = {"HalfStudentT", 2, {"df", "scale"}, {EM_PK_POS, EM_PK_POS},
                                                EM_PK_NOT_NAN, "[-inf, inf]", 0u, 1};
static inline double half_student_t_cdf(double x, const double *p, unsigned need, double *dx, double *dp, int upper) {
    double q[3] = {p[0], 0.0, p[1]}, dq[3] = {0, 0, 0};
    double lq = student_t_cdf(x, q, (need & 1u) | ((need & 2u) << 1), dx, dq, 1);
    double c = 1.0;
    if (!upper) {
        double q2 = 2.0 * exp(lq);
        c = -q2 / (1.0 - q2);
        lq = log1p(-q2);
    } else {
        lq += EM_LOG_2;
    }
    *dx *= c;
    dp[0] = c * dq[0];
    dp[1] = c * dq[2];
    return lq;
}
CDF_FNS(half_student_t, 0.0, INFINITY)
SAMPLE_FN(half_student_t_sample, half_student_t_desc, fabs(P(d, 1, i) * gsl_ran_tdist(r, P(d, 0, i))))
/* E|T| = 2·scale·sqrt(ν)·Γ((ν+1)/2) / (sqrt(π)·(ν-1)·Γ(ν/2)) for ν > 1; E T² = scale²·ν/(ν-2) */
static inline double half_student_t_m1(double nu, double sc) {
    if (!(nu > 1.0)) return INFINITY;
    return 2.0 * sc * sqrt(nu / M_PI) / (nu - 1.0) * exp(em_math_lgamma(0.5 * (nu + 1.0)) - em_math_lgamma(0.5 * nu));
}
MOMENT_FN(half_student_t_mean, half_student_t_desc, half_student_t_m1(P(d, 0, i), P(d, 1, i)))
MOMENT_FN(half_student_t_var, half_student_t_desc,
          P(d, 0, i) > 2.0 ? P(d, 1, i) * P(d, 1, i) * P(d, 0, i) / (P(d, 0, i) - 2.0) -
                                 half_student_t_m1(P(d, 0, i), P(d, 1, i)) * half_student_t_m1(P(d, 0, i), P(d, 1, i))
                           : (P(d, 0, i) > 1.0 ? INFINITY : NAN))
POINTWISE_FN(half_student_t_pw, half_student_t_lp_pw, half_student_t_lcdf_pw, half_student_t_lccdf_pw)
FAMILY_OPS(em_ops_half_student_t, half_student_t_desc, 0, sup_pos, half_student_t_lp, half_student_t_sample, NULL,
           half_student_t_mean, half_student_t_var, half_student_t_lcdf, half_student_t_lccdf, half_student_t_pw)
em_dist em_dist_half_student_t(em_tape *t, em_var df, em_var scale) {
    em_var p[2] = {df, scale};
    return em_dist_make(t, &em_ops_half_student_t, p, 2);
}

/* ---- SkewNormal(xi, omega, alpha) (Stan's skew_normal; Azzalini 1985):
 *      log 2 - log ω + log φ(z) + log Φ(αz), z = (x - ξ)/ω ------------------------------------------ */

static const uv_desc skew_normal_desc = {"SkewNormal", 3, {"xi", "omega", "alpha"}, {EM_PK_REAL, EM_PK_POS, EM_PK_REAL},
                                         EM_PK_REAL, "(-inf, inf)", 2u, 1};
#define skew_normal_desc_INFO "SkewNormal", 3, {"xi", "omega", "alpha"}
static inline double skew_normal_norm(const double *p, unsigned need, double *dp) {
    if (NEED(1)) dp[1] = -1.0 / p[1];
    return EM_LOG_2 - log(p[1]) - EM_LOG_SQRT_2PI;
}
static inline double skew_normal_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double is = 1.0 / p[1], z = (x - p[0]) * is, a = p[2], h = em_math_dlog_Phi(a * z);
    double dz = -z + a * h;
    *dx = dz * is;
    dp[0] = -dz * is;
    dp[1] = -dz * z * is;
    dp[2] = z * h;
    return -0.5 * z * z + em_math_log_Phi(a * z);
}
LOG_PROB_PW_FN(skew_normal_lp, skew_normal_desc, skew_normal_norm, skew_normal_kern)
/* Azzalini's construction: with δ = α/sqrt(1+α²) and u0, v standard normal, u1 = δ·u0 +
 * sqrt(1-δ²)·v; then ξ + ω·(u0 >= 0 ? u1 : -u1) is SkewNormal(ξ, ω, α). */
static inline double skew_normal_draw(em_rng *r, double xi, double om, double al) {
    double dl = al / sqrt(1.0 + al * al), u0 = gsl_ran_gaussian_ziggurat(r, 1.0), v = gsl_ran_gaussian_ziggurat(r, 1.0);
    double u1 = dl * u0 + sqrt(1.0 - dl * dl) * v;
    return xi + om * (u0 >= 0.0 ? u1 : -u1);
}
static inline double skew_normal_delta(double al) { return al / sqrt(1.0 + al * al); }
SAMPLE_FN(skew_normal_sample, skew_normal_desc, skew_normal_draw(r, P(d, 0, i), P(d, 1, i), P(d, 2, i)))
MOMENT_FN(skew_normal_mean, skew_normal_desc,
          P(d, 0, i) + P(d, 1, i) * skew_normal_delta(P(d, 2, i)) * M_SQRT2 / sqrt(M_PI))
MOMENT_FN(skew_normal_var, skew_normal_desc,
          P(d, 1, i) * P(d, 1, i) * (1.0 - 2.0 * skew_normal_delta(P(d, 2, i)) * skew_normal_delta(P(d, 2, i)) / M_PI))
POINTWISE_FN(skew_normal_pw, skew_normal_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_skew_normal, skew_normal_desc, 0, sup_real, skew_normal_lp, skew_normal_sample, NULL,
           skew_normal_mean, skew_normal_var, NULL, NULL, skew_normal_pw)
em_dist em_dist_skew_normal(em_tape *t, em_var xi, em_var omega, em_var alpha) {
    em_var p[3] = {xi, omega, alpha};
    return em_dist_make(t, &em_ops_skew_normal, p, 3);
}

/* ---- BetaProportion(mu, kappa) (Stan's beta_proportion): Beta(μκ, (1-μ)κ) ------------------------- */

static const uv_desc beta_proportion_desc = {"BetaProportion", 2, {"mu", "kappa"}, {EM_PK_UNIT_OPEN, EM_PK_POS},
                                             EM_PK_UNIT_OPEN, "(0, 1)", 3u, 1};
#define beta_proportion_desc_INFO "BetaProportion", 2, {"mu", "kappa"}
/* Beta's norm and kernel at a = μκ, b = (1-μ)κ, with the chain rule: ∂/∂μ = κ(∂_a - ∂_b),
 * ∂/∂κ = μ∂_a + (1-μ)∂_b */
static inline void beta_proportion_chain(const double *p, const double *db, double *dp) {
    dp[0] = p[1] * (db[0] - db[1]);
    dp[1] = p[0] * db[0] + (1.0 - p[0]) * db[1];
}
static inline double beta_proportion_norm(const double *p, unsigned need, double *dp) {
    double q[2] = {p[0] * p[1], (1.0 - p[0]) * p[1]}, dq[2] = {0, 0};
    double v = beta_norm(q, need ? 3u : 0u, dq);
    beta_proportion_chain(p, dq, dp);
    return v;
}
static inline double beta_proportion_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double q[2] = {p[0] * p[1], (1.0 - p[0]) * p[1]}, dq[2] = {0, 0};
    double v = beta_kern(x, q, need ? 3u : 0u, dx, dq);
    beta_proportion_chain(p, dq, dp);
    return v;
}
LOG_PROB_PW_FN(beta_proportion_lp, beta_proportion_desc, beta_proportion_norm, beta_proportion_kern)
SAMPLE_FN(beta_proportion_sample, beta_proportion_desc,
          gsl_ran_beta(r, P(d, 0, i) * P(d, 1, i), (1.0 - P(d, 0, i)) * P(d, 1, i)))
MOMENT_FN(beta_proportion_mean, beta_proportion_desc, P(d, 0, i))
MOMENT_FN(beta_proportion_var, beta_proportion_desc, P(d, 0, i) * (1.0 - P(d, 0, i)) / (P(d, 1, i) + 1.0))
POINTWISE_FN(beta_proportion_pw, beta_proportion_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_beta_proportion, beta_proportion_desc, 0, sup_unit, beta_proportion_lp, beta_proportion_sample,
           NULL, beta_proportion_mean, beta_proportion_var, NULL, NULL, beta_proportion_pw)
em_dist em_dist_beta_proportion(em_tape *t, em_var mu, em_var kappa) {
    em_var p[2] = {mu, kappa};
    return em_dist_make(t, &em_ops_beta_proportion, p, 2);
}

/* ---- GammaMean(mean, shape) (brms's gamma family): Gamma(shape, rate = shape/mean) ------------------ */

static const uv_desc gamma_mean_desc = {"GammaMean", 2, {"mean", "shape"}, {EM_PK_POS, EM_PK_POS}, EM_PK_POS,
                                        "(0, inf)", 3u, 1};
#define gamma_mean_desc_INFO "GammaMean", 2, {"mean", "shape"}
/* Gamma's norm and kernel at (α, β = α/μ): ∂/∂μ = -β/μ·∂_β, ∂/∂α = ∂_α + ∂_β/μ */
static inline void gamma_mean_chain(const double *p, const double *dg, double *dp) {
    dp[0] = -p[1] / (p[0] * p[0]) * dg[1];
    dp[1] = dg[0] + dg[1] / p[0];
}
static inline double gamma_mean_norm(const double *p, unsigned need, double *dp) {
    double q[2] = {p[1], p[1] / p[0]}, dq[2] = {0, 0};
    double v = gamma_norm(q, need ? 3u : 0u, dq);
    gamma_mean_chain(p, dq, dp);
    return v;
}
static inline double gamma_mean_kern(double x, const double *p, unsigned need, double *dx, double *dp) {
    double q[2] = {p[1], p[1] / p[0]}, dq[2] = {0, 0};
    double v = gamma_kern(x, q, need ? 3u : 0u, dx, dq);
    gamma_mean_chain(p, dq, dp);
    return v;
}
LOG_PROB_PW_FN(gamma_mean_lp, gamma_mean_desc, gamma_mean_norm, gamma_mean_kern)
SAMPLE_FN(gamma_mean_sample, gamma_mean_desc, gsl_ran_gamma(r, P(d, 1, i), P(d, 0, i) / P(d, 1, i)))
MOMENT_FN(gamma_mean_mean, gamma_mean_desc, P(d, 0, i))
MOMENT_FN(gamma_mean_var, gamma_mean_desc, P(d, 0, i) * P(d, 0, i) / P(d, 1, i))
POINTWISE_FN(gamma_mean_pw, gamma_mean_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_gamma_mean, gamma_mean_desc, 0, sup_pos, gamma_mean_lp, gamma_mean_sample, NULL, gamma_mean_mean,
           gamma_mean_var, NULL, NULL, gamma_mean_pw)
em_dist em_dist_gamma_mean(em_tape *t, em_var mean, em_var shape) {
    em_var p[2] = {mean, shape};
    return em_dist_make(t, &em_ops_gamma_mean, p, 2);
}
