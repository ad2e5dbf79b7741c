/* internal/dist_impl.h — helpers shared by the dist_*.c files. Not installed.
 *
 * Most univariate families are "elementwise": log p(x | θ) = Σ_i f(x_i, θ_i), where each
 * parameter is a scalar or a vector of the value's length. They share one driver
 * (uv_log_prob) that makes ONE tape node for the whole vector: a single pass computes the sum,
 * checks the parameters and the support, and writes the partials the backward pass needs
 * (per element for vector inputs, summed for scalar ones). Each family supplies two small
 * inline functions: `norm`, the part of the log density that depends on the parameters only
 * (normalising constants such as -log σ), which is computed once when the parameters it
 * depends on are scalars, and `kern`, the part that depends on the value.
 *
 * The driver is always_inline and receives its kernels as constant function pointers, so the
 * compiler produces one specialised loop per family with the kernels inlined.
 */
#ifndef EMBER_INTERNAL_DIST_IMPL_H
#define EMBER_INTERNAL_DIST_IMPL_H

#include "ember/dist.h"
#include "internal/tape.h"

#include <math.h>
#include <string.h>

#if defined(__GNUC__)
#define EM_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define EM_ALWAYS_INLINE static inline
#endif

#define EM_LOG_SQRT_2PI 0.91893853320467274178032973640562
#define EM_LOG_2 0.69314718055994530941723212145818
#define EM_LOG_PI 1.14472988584940017414342735135306

/* What a parameter (or the value) must satisfy. */
typedef enum {
    EM_PK_REAL = 0, /* finite */
    EM_PK_POS,      /* finite and > 0 */
    EM_PK_NONNEG,   /* finite and >= 0 */
    EM_PK_PROB,     /* in [0, 1] */
    EM_PK_UNIT_OPEN,/* in (0, 1) */
    EM_PK_GT_P0,    /* finite and > parameter 0 (Uniform's hi) */
    EM_PK_INTERVAL, /* value only: p0 <= x <= p1 */
    EM_PK_BOOL,     /* value only: 0 or 1 */
    EM_PK_COUNT,    /* value only: a non-negative integer */
    EM_PK_COUNT_N,  /* value only: an integer in [0, total_count] (d->data) */
    EM_PK_NOT_NAN   /* value only: anything but NaN (a CDF's argument, ±inf included) */
} em_pkind;

/* A family's static description for the shared validation and messages. */
typedef struct uv_desc {
    const char *name;
    int np;
    const char *pname[4];
    unsigned char pkind[4];
    unsigned char vkind;
    const char *support_text; /* for messages: "(0, inf)" */
    unsigned norm_dep;        /* bit k set: norm depends on parameter k */
    int grad_value;           /* continuous: partial w.r.t. the value */
} uv_desc;

/* Is x acceptable for kind k (p0, p1 and N only used by the value kinds that need them)? */
EM_ALWAYS_INLINE int em_pk_ok(int k, double x, double p0, double p1, double N) {
    /* Branch-free (& not &&) so that the checks fuse into the density loop. fabs(x) < inf
     * is isfinite() without a library call and false for NaN. */
    int fin = fabs(x) < INFINITY;
    switch (k) {
    case EM_PK_REAL: return fin;
    case EM_PK_POS: return fin & (x > 0.0);
    case EM_PK_NONNEG: return fin & (x >= 0.0);
    case EM_PK_PROB: return (x >= 0.0) & (x <= 1.0);
    case EM_PK_UNIT_OPEN: return (x > 0.0) & (x < 1.0);
    case EM_PK_GT_P0: return fin & (x > p0);
    case EM_PK_INTERVAL: return (x >= p0) & (x <= p1);
    case EM_PK_BOOL: return (x == 0.0) | (x == 1.0);
    case EM_PK_COUNT: return (x >= 0.0) & (x < 9.007199254740992e15) && x == floor(x);
    case EM_PK_COUNT_N: return (x >= 0.0) & (x <= N) && x == floor(x);
    case EM_PK_NOT_NAN: return x == x;
    default: return 0;
    }
}

const char *em_pk_text(int k); /* "must be positive", ... */

/* Check every parameter of d (each element, by the descriptor); on failure fill err with
 * "Normal: scale[3] = -1 must be positive" and return EM_ERR_DOMAIN. */
em_status uv_check_params(const uv_desc *desc, const em_dist *d, em_error *err);
/* Check params, then each value element against the support; the message names the first
 * failure. Used after the fused loop saw a failure, and by sample/mean paths. */
em_status uv_diagnose(const uv_desc *desc, const em_dist *d, const double *x, size_t nx, em_error *err);

/* A log-density node whose replay (internal/tape.h) found its input out of the domain: the
 * value -inf, as creation gives, and the reason on the tape. */
static inline void em_dist_replay_fail(em_tape *t, em_node *o, const em_error *e) {
    o->val[0] = -INFINITY;
    em_tape_fail(t, e->status, "%s", e->msg);
}

/* Record err on the tape and return a constant scalar node holding -inf. */
em_var em_dist_domain_fail(em_tape *t, const em_error *err);

/* A fused log-density node (one node for the whole density, its partials in aux) computes its
 * value and partials from its inputs' current values with one function, at creation and at
 * every replay: 1 on success, else 0 with the reason in *e (the node is then left unset). */
typedef int (*em_lp_compute_fn)(em_tape *t, em_node *o, em_error *e);

/* The body of such a node's forward function (internal/tape.h): compute, or the value -inf
 * and the reason on the tape. */
static inline void em_dist_node_replay(em_tape *t, em_node *o, em_lp_compute_fn compute) {
    em_error e; /* cleared, not zeroed: 512 bytes of message per replay would be most of a
                 * small node's cost */
    em_error_clear(&e);
    if (!compute(t, o, &e)) em_dist_replay_fail(t, o, &e);
}

/* Finish making such a node (its aux already set): record forward, compute the value now, and
 * return out. Out of the domain, the node is abandoned (nothing to differentiate): the error
 * goes on the tape and the result is a constant -inf. */
em_var em_dist_node_finish(em_tape *t, em_node *o, em_var out, em_forward_fn forward, em_lp_compute_fn compute);

/* Parameter/value lengths: every one 1 or n. Returns n, or 0 with EM_ERR_SHAPE on the tape. */
size_t em_dist_common_len(em_tape *t, const char *name, const em_var *v, int k);

/* Build an em_dist after checking the parameters are valid vars that broadcast. */
em_dist em_dist_make(em_tape *t, const em_dist_ops *ops, const em_var *p, int np);

/* Element i of a parameter of length len, tiled to a batch of n (sample/mean/variance). */
static inline double em_pv(const em_tape *t, em_var v, size_t i) {
    const em_node *nd = em_node_get(t, v);
    return nd->val[nd->n == 1 ? 0 : i % nd->n];
}

/* ---- the elementwise log-density driver ------------------------------------------------- */

typedef double (*uv_norm_fn)(const double *p, unsigned need, double *dp);
typedef double (*uv_kern_fn)(double x, const double *p, unsigned need, double *dx, double *dp);
/* The norm of a family whose log density has no parameter-only part. */
static inline double uv_no_norm(const double *p, unsigned need, double *dp) {
    (void)p; (void)need; (void)dp;
    return 0.0;
}

/* Per-node data for the backward pass: inputs are the value (slot 0) and the parameters
 * (slots 1..np). For a vector input that needs a gradient, part[k] holds dlp_i/dinput_i; for
 * a scalar one, sum[k] holds Σ_i dlp_i/dinput. */
typedef struct uv_aux {
    int nin;
    double *part[5];
    double sum[5];
    em_dist dist; /* what a replay needs to recompute and explain the node */
    int failed;   /* the last compute found a parameter or the value outside its domain */
    /* A pointwise node (em_dist_pointwise): the node's own n values, where each element's
     * term goes instead of into the sum; every input that needs a gradient then has part[]. */
    double *pw;
} uv_aux;

void uv_pw_backward(em_tape *t, em_node *self);

void uv_backward(em_tape *t, em_node *self);

/* The need mask bit for input slot k: bit 0 value, bit k parameter k-1. */
#define UV_NEED(k) (1u << (k))

/* The hot loop, specialised by the compiler for each family (kernels inlined, parameter
 * count and kinds constant) and for norm_once. Parameter reads are unrolled by hand so that
 * nothing in the loop indexes the descriptor with a run-time k (a switch on the kind per
 * element made the first version 3x slower). lay >= 0: the strides are the compile-time bits
 * of lay (bit k: input k is a vector); lay < 0: run-time strides. */
#define UV_ST(k) (lay < 0 ? s[k] : (size_t)((lay >> (k)) & 1))
/* A scalar parameter is read once into a local before the loop: read through the pointer,
 * the compiler could not hoist it (or 1/scale) past the stores to the partial arrays. */
#define UV_LD(k) (np > (k) ? (lay >= 0 && !UV_ST((k) + 1) ? pc[k] : v[(k) + 1][i * UV_ST((k) + 1)]) : 0.0)
#define UV_OK(k) (np > (k) ? em_pk_ok(desc->pkind[k], p[k], p[0], 0, 0) : 1)
#define UV_PART(k)                                                                         \
    if (np > (k) && (need & UV_NEED((k) + 1))) {                                           \
        double gk = dk[k] + dp[k];                                                         \
        if (part##k) part##k[i] = gk;                                                      \
        else s##k += gk;                                                                   \
    }
EM_ALWAYS_INLINE double uv_loop(const uv_desc *desc, size_t n, const double *const *v, const size_t *s,
                                const double *N, size_t nN, unsigned need, uv_aux *aux, double *sum, int *okp,
                                uv_norm_fn norm, uv_kern_fn kern, const int norm_once, const int lay) {
    const int np = desc->np;
    double *partx = aux ? aux->part[0] : NULL, *part0 = aux ? aux->part[1] : NULL;
    double *part1 = aux ? aux->part[2] : NULL, *part2 = aux ? aux->part[3] : NULL;
    double *part3 = aux ? aux->part[4] : NULL;
    double sx = 0.0, s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, lp = 0.0;
    double *pw = aux ? aux->pw : NULL;
    const double *x0 = v[0];
    size_t sv = UV_ST(0), sN = nN == 1 ? 0 : 1;
    int ok = 1;
    double pc[4] = {0, 0, 0, 0};
    for (int k = 0; k < np; k++) pc[k] = v[k + 1][0];
    for (size_t i = 0; i < n; i++) {
        double p[4] = {UV_LD(0), UV_LD(1), UV_LD(2), UV_LD(3)};
        double x = x0[i * sv];
        double dp[4] = {0, 0, 0, 0}, dk[4] = {0, 0, 0, 0}, dx = 0.0, li = 0.0;
        ok &= UV_OK(0) & UV_OK(1) & UV_OK(2) & UV_OK(3);
        ok &= em_pk_ok(desc->vkind, x, p[0], p[1], N ? N[i * sN] : 0.0);
        if (!norm_once) li = norm(p, need >> 1, dp);
        li += kern(x, p, need >> 1, &dx, dk);
        lp += li;
        if (pw) pw[i] = li;
        if (need & 1) {
            if (partx) partx[i] = dx;
            else sx += dx;
        }
        UV_PART(0)
        UV_PART(1)
        UV_PART(2)
        UV_PART(3)
    }
    sum[0] += sx;
    sum[1] += s0;
    sum[2] += s1;
    sum[3] += s2;
    sum[4] += s3;
    *okp &= ok;
    return lp;
}
#undef UV_LD
#undef UV_ST
#undef UV_OK
#undef UV_PART

/* Compute the node's log density (and, when it has an adjoint, the partials) from its inputs'
 * current values: the work of creation and of a replay (internal/tape.h). Returns 0 when a
 * parameter or the value is outside its domain; the value is then not set. */
EM_ALWAYS_INLINE int uv_compute(const uv_desc *desc, em_tape *t, em_node *o, uv_norm_fn norm, uv_kern_fn kern) {
    uv_aux *aux = o->aux;
    const em_dist *d = &aux->dist;
    const int np = desc->np;
    size_t n = 0;
    const double *v[5];
    size_t s[5];
    unsigned need = 0;
    int has_grad = o->adj != NULL;
    for (int k = 0; k <= np; k++) {
        const em_node *nk = em_node_get(t, (em_var){o->in[k]});
        v[k] = nk->val;
        s[k] = nk->n == 1 ? 0 : 1;
        if (nk->n > n) n = nk->n;
        if (has_grad && nk->adj && (k > 0 || desc->grad_value)) need |= UV_NEED(k);
    }
    /* The norm term is computed once when every parameter it depends on is a scalar (and the
     * node sums: a pointwise node needs it in every element's term and partials). */
    int norm_once = !aux->pw;
    for (int k = 0; k < np; k++)
        if ((desc->norm_dep & (1u << k)) && s[k + 1]) norm_once = 0;

    double p[4] = {0, 0, 0, 0}, dn[4] = {0, 0, 0, 0};
    double lp = 0.0, sum[5] = {0, 0, 0, 0, 0};
    int ok = 1;
    int lay = 0;
    for (int k = 0; k <= np; k++) lay |= (int)s[k] << k;
    if (norm_once) {
        for (int k = 0; k < np; k++) p[k] = v[k + 1][0];
        double c = norm(p, need >> 1, dn);
        lp += (double)n * c;
        for (int k = 0; k < np; k++)
            if (need & UV_NEED(k + 1)) sum[k + 1] += (double)n * dn[k];
        /* Every parameter in norm_dep is a scalar here, so its norm partial is summed above;
         * a vector parameter outside norm_dep gets its partial from kern only. The two
         * layouts of a regression get loops with constant strides: a vector value with
         * scalar parameters (a prior on coefficients) and a vector value with a vector first
         * parameter (a likelihood around a linear predictor). */
        if (lay == 1)
            lp += uv_loop(desc, n, v, s, d->data, d->data_len, need, aux, sum, &ok, norm, kern, 1, 1);
        else if (lay == 3)
            lp += uv_loop(desc, n, v, s, d->data, d->data_len, need, aux, sum, &ok, norm, kern, 1, 3);
        else
            lp += uv_loop(desc, n, v, s, d->data, d->data_len, need, aux, sum, &ok, norm, kern, 1, -1);
    } else {
        lp += uv_loop(desc, n, v, s, d->data, d->data_len, need, aux, sum, &ok, norm, kern, 0, -1);
    }
    if (!ok) return 0;
    if (!aux->pw) o->val[0] = lp;
    for (int k = 0; k <= np; k++) aux->sum[k] = sum[k];
    return 1;
}

/* The message for a node whose uv_compute failed. */
void uv_explain(const uv_desc *desc, em_tape *t, const em_node *o, em_error *e);

/* Replay of a node made by uv_log_prob (internal/tape.h): -inf and the reason when out of the
 * domain. */
EM_ALWAYS_INLINE void uv_forward(const uv_desc *desc, em_tape *t, em_node *o, uv_norm_fn norm, uv_kern_fn kern) {
    uv_aux *aux = o->aux;
    aux->failed = !uv_compute(desc, t, o, norm, kern);
    if (!aux->failed) return;
    if (aux->pw)
        for (size_t i = 0; i < o->n; i++) o->val[i] = -INFINITY;
    em_error e = {0};
    uv_explain(desc, t, o, &e);
    em_dist_replay_fail(t, o, &e);
}

/* Make the node (forward: the family's uv_forward wrapper, see LOG_PROB_FN) and compute it:
 * the sum, or with pointwise set the vector of the n terms. */
em_var uv_node(const uv_desc *desc, const em_dist *d, em_var value, em_forward_fn forward, int pointwise);

/* ---- ordered logistic and probit terms (dist_discrete.c, dist_glm.c) --------------------------
 * log F and its derivative for F the logistic CDF (log F = -softplus(-z)) or Φ. */
#include "internal/mathx.h"
static inline double em_ord_logF(double z, int probit) { return probit ? em_math_log_Phi(z) : -em_math_softplus(-z); }
static inline double em_ord_dlogF(double z, int probit) { return probit ? em_math_dlog_Phi(z) : em_math_sigmoid(-z); }

/* log(F(hi) - F(lo)) for hi > lo, and its partials in hi and lo: log F(hi) + log1m_exp(log F(lo)
 * - log F(hi)), on the other tails (F(-lo) - F(-hi)) when both lie above 0, so that it is never
 * a difference of two numbers near 1. */
static inline double em_ord_interval(double hi, double lo, int probit, double *dhi, double *dlo) {
    if (lo > 0.0) {
        double v = em_ord_interval(-lo, -hi, probit, dlo, dhi);
        *dhi = -*dhi;
        *dlo = -*dlo;
        return v;
    }
    double lh = em_ord_logF(hi, probit), ll = em_ord_logF(lo, probit), u = ll - lh, em = expm1(u);
    *dhi = -em_ord_dlogF(hi, probit) / em;
    *dlo = em_ord_dlogF(lo, probit) * exp(u) / em;
    return lh + em_math_log1m_exp(u);
}

/* The logistic link in closed form: with a = c_k - η, b = c_{k-1} - η,
 *   σ(a) - σ(b) = σ(a)·σ(-b)·(1 - e^{b-a}),
 * so log P = -softplus(-a) - softplus(b) + log1m_exp(c_{k-1} - c_k): no difference of
 * probabilities at all, and the last term depends on the cutpoints alone. ∂/∂a = σ(-a) + g_k,
 * ∂/∂b = -σ(b) - g_k with g_k = 1/expm1(c_k - c_{k-1}); the end categories keep only their one
 * softplus. With A = e^{-a} = e^η·e^{-c_k} and B = e^b = e^{c_{k-1}}/e^η, the two softplus terms
 * are one log1p(A + B + AB), and σ(-a) = A/(1 + A), σ(b) = B/(1 + B): one exp and one log1p a
 * row, given the cutpoints' exponentials.
 *
 * gap (4 values per category k, from em_ord_logistic_gaps): log1m_exp(c_{k-1} - c_k), g_k,
 * e^{c_k}, e^{-c_k}. Cutpoints beyond ±300 leave their exponentials at 0, and the rows fall back
 * to the two-softplus form. */
enum { EM_ORD_GAP = 4 };
static inline void em_ord_logistic_gaps(const double *c, size_t K, double *gap) {
    for (size_t k = 0; k + 1 < K; k++) {
        int ok = fabs(c[k]) < 300.0;
        gap[EM_ORD_GAP * k + 2] = ok ? exp(c[k]) : 0.0;
        gap[EM_ORD_GAP * k + 3] = ok ? exp(-c[k]) : 0.0;
        if (k > 0) {
            gap[EM_ORD_GAP * k] = em_math_log1m_exp(c[k - 1] - c[k]);
            gap[EM_ORD_GAP * k + 1] = 1.0 / expm1(c[k] - c[k - 1]);
        }
    }
}

/* One observation y = k in {0, ..., K-1} given η and the K - 1 cutpoints c: its log probability,
 * with dhi the partial in c_k - η (k < K-1) and dlo in c_{k-1} - η (k > 0). gap: the logistic
 * link's cutpoint terms (em_ord_logistic_gaps), or NULL to compute row k's here. */
static inline double em_ord_term(size_t k, double eta, const double *c, size_t K, int probit, const double *gap,
                                 double *dhi, double *dlo) {
    *dhi = *dlo = 0.0;
    if (probit) {
        if (k == 0) {
            *dhi = em_ord_dlogF(c[0] - eta, 1);
            return em_ord_logF(c[0] - eta, 1);
        }
        if (k == K - 1) {
            *dlo = -em_ord_dlogF(eta - c[K - 2], 1);
            return em_ord_logF(eta - c[K - 2], 1);
        }
        return em_ord_interval(c[k] - eta, c[k - 1] - eta, 1, dhi, dlo);
    }
    int mid = k > 0 && k < K - 1;
    double lg = 0.0, ig = 0.0;
    if (mid) {
        lg = gap ? gap[EM_ORD_GAP * k] : em_math_log1m_exp(c[k - 1] - c[k]);
        ig = gap ? gap[EM_ORD_GAP * k + 1] : 1.0 / expm1(c[k] - c[k - 1]);
    }
    if (gap && fabs(eta) < 300.0 && (k == K - 1 || gap[EM_ORD_GAP * k + 3] > 0.0) &&
        (k == 0 || gap[EM_ORD_GAP * (k - 1) + 2] > 0.0)) {
        double E = exp(eta), A = k < K - 1 ? E * gap[EM_ORD_GAP * k + 3] : 0.0;
        double B = k > 0 ? gap[EM_ORD_GAP * (k - 1) + 2] / E : 0.0;
        if (k < K - 1) *dhi = A / (1.0 + A) + ig;
        if (k > 0) *dlo = -B / (1.0 + B) - ig;
        return lg - log1p(A + B + A * B);
    }
    double v = lg;
    if (k < K - 1) { /* -softplus(-a) and σ(-a) from one exp */
        double a = c[k] - eta, ea = exp(-fabs(a));
        v -= (a < 0.0 ? -a : 0.0) + log1p(ea);
        *dhi = (a >= 0.0 ? ea / (1.0 + ea) : 1.0 / (1.0 + ea)) + ig;
    }
    if (k > 0) { /* -softplus(b) and -σ(b) */
        double b = c[k - 1] - eta, eb = exp(-fabs(b));
        v -= (b > 0.0 ? b : 0.0) + log1p(eb);
        *dlo = -(b >= 0.0 ? 1.0 / (1.0 + eb) : eb / (1.0 + eb)) - ig;
    }
    return v;
}

/* ---- reparameterised draws of univariate families ------------------------------------- */

/* A draw node: out_i = f(θ_i, ε_i) with per-element partials dout_i/dθ_k stored for the
 * backward pass (θ_k tiled to n). */
typedef struct rs_aux {
    int np;
    double *part[4];
} rs_aux;
void rs_backward(em_tape *t, em_node *self);
/* Create the node and its partial arrays (only for parameters that need a gradient);
 * returns NULL on failure. part[k] == NULL means "not needed". */
em_node *rs_node(em_tape *t, const em_dist *d, size_t n, em_var *out, rs_aux **aux);

/* ---- pointwise terms of the fused GLMs (em_dist_log_prob_pointwise) -------------------- */
extern const em_dist_ops em_ops_normal_id_glm, em_ops_bernoulli_logit_glm, em_ops_poisson_log_glm,
    em_ops_neg_binomial2_log_glm, em_ops_gamma_log_glm, em_ops_ordered_logistic_glm;
/* Is d one of the fused GLMs (parameter 0 the design matrix, 2 the coefficients)? */
int em_dist_is_glm(const em_dist *d);
em_status em_glm_log_prob_pointwise(const em_dist *d, const double *y, size_t n, double *out, em_error *err);

/* ---- KL and shared tables ------------------------------------------------------------------ */
extern const em_dist_ops em_ops_normal, em_ops_mvnormal;
em_var em_kl_mvn(const em_dist *p, const em_dist *q);

/* ---- family boilerplate shared by dist_continuous.c and dist_discrete.c ---------------- */

/* Draw loop shared by sample(): checks the parameters, then fills out[i] from element i of the
 * (tiled) parameters. */
#define SAMPLE_FN(fname, desc, expr)                                                       \
    static em_status fname(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) { \
        em_status st = uv_check_params(&desc, d, err);                                     \
        if (st != EM_OK) return st;                                                        \
        for (size_t i = 0; i < n; i++) out[i] = (expr);                                    \
        return EM_OK;                                                                      \
    }

#define MOMENT_FN(fname, desc, expr)                                                       \
    static em_status fname(const em_dist *d, double *out, size_t n, em_error *err) {     \
        em_status st = uv_check_params(&desc, d, err);                                     \
        if (st != EM_OK) return st;                                                        \
        for (size_t i = 0; i < n; i++) out[i] = (expr);                                    \
        return EM_OK;                                                                      \
    }

#define LOG_PROB_FN(fname, desc, norm, kern)                                                  \
    static void fname##_forward(em_tape *t, em_node *o) { uv_forward(&desc, t, o, norm, kern); } \
    static em_var fname(const em_dist *d, em_var value) { return uv_node(&desc, d, value, fname##_forward, 0); }
/* The same and fname##_pw, its pointwise form (one forward function serves both). */
#define LOG_PROB_PW_FN(fname, desc, norm, kern)                                               \
    LOG_PROB_FN(fname, desc, norm, kern)                                                   \
    static em_var fname##_pw(const em_dist *d, em_var value) { return uv_node(&desc, d, value, fname##_forward, 1); }

/* A family's pointwise entry (em_dist_ops.pointwise) from its pointwise log density and log
 * CDFs (NULL: none). */
em_var em_dist_pointwise_dispatch(const em_dist *d, em_dist_term which, em_var x, em_var (*lp)(const em_dist *, em_var),
                                  em_var (*lcdf)(const em_dist *, em_var), em_var (*lccdf)(const em_dist *, em_var));
#define POINTWISE_FN(fname, lp, lcdf, lccdf)                                                  \
    static em_var fname(const em_dist *d, em_dist_term which, em_var x) {                  \
        return em_dist_pointwise_dispatch(d, which, x, lp, lcdf, lccdf);                   \
    }

#endif
