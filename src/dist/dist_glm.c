/* dist_glm.c — fused GLM likelihoods (as Stan's normal_id_glm, bernoulli_logit_glm and
 * poisson_log_glm): the linear predictor η = α + X·β, the log density of y and the partials
 * in one node. The forward pass is one cblas_dgemv over X plus a pass over the rows that also
 * stores r_i = ∂lp/∂η_i; the backward pass is one more dgemv, ∂lp/∂β = Xᵀ·r. So a gradient
 * costs two passes over X however many coefficients there are.
 *
 * Parameters: p[0] = X (a rows×cols matrix, usually constant data), p[1] = α (scalar or one
 * per row), p[2] = β (cols), p[3] = σ (normal), φ (negative binomial), the shape (Gamma):
 * scalar or one per row, or the K - 1 cutpoints (ordered logistic, whose α is a constant 0).
 * An offset (constant data, one per row) rides in em_dist.data and is added to η.
 *
 * The negative-binomial, Gamma and ordered-logistic kernels make ONE pass over X (glm1_*): each
 * row's η, its term and ∂lp/∂η_i = r_i are computed and Σ r_i·x_i accumulated while the row is
 * in L1, so the backward pass reads no X at all; so do the normal and Bernoulli-logit GLMs in
 * their common layout (constant X and y, α one value or one per row, the normal's σ a scalar:
 * glm_one_pass_layout). The rows' exp and log go through internal/vmath.h, four at a time
 * (normal, Bernoulli) or eight (glm1_*, in tiles of 64 rows). */
#include "internal/mathx.h"
#include "internal/vmath.h"
#include "internal/dist_impl.h"

#include <stdlib.h>

/* gsl_randist.h pulls in GSL's copy of the CBLAS declarations, which clash with OpenBLAS's
 * cblas.h; the prototypes are the same, and the symbols resolve to OpenBLAS at link time
 * (-lopenblas, not -lgslcblas). */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_cblas.h>
#include <gsl/gsl_sf_psi.h>

typedef enum { GLM_NORMAL, GLM_BERNOULLI, GLM_POISSON, GLM_NB2, GLM_GAMMA, GLM_ORDERED } glm_kind;

static const char *glm_name(glm_kind k) {
    static const char *names[] = {"NormalIdGLM",        "BernoulliLogitGLM", "PoissonLogGLM",
                                  "NegBinomial2LogGLM", "GammaLogGLM",       "OrderedLogisticGLM"};
    return names[k];
}

typedef struct {
    double *r;      /* ∂lp/∂η per row (needed for β, α and X); NULL after a one-pass forward */
    double *gbeta;  /* one-pass forward: Σ_i res_i·x_i, to be scaled by 1/σ² */
    double *Xt;     /* one-pass forward with few coefficients: X transposed (X is constant) */
    double sum_res; /* one-pass forward: Σ_i res_i */
    double inv_s2;  /* one-pass forward: 1/σ² */
    double *dsigma; /* ∂lp/∂σ per row when σ is a vector, else NULL */
    double dsig_sum;
    double *dy;     /* ∂lp/∂y per row when y needs a gradient (normal only) */
    double *eta;    /* scratch of n rows for the general forward (r when not one-pass) */
    double *ym;     /* the normal one-pass kernel with an offset: y - offset (both data) */
    double *dcuts;  /* ordered: ∂lp/∂cutpoints */
    double *gap;    /* ordered: the cutpoints' own terms (em_ord_logistic_gaps), EM_ORD_GAP·K values */
    double ysum;    /* negative binomial: Σ log y_i! (y is data) */
    double ylog;    /* Gamma: Σ log y_i */
    double *hist;   /* negative binomial: (count, rows with it) pairs over the distinct counts */
    size_t nhist;
    int y_inside;   /* NB2, Gamma, ordered: every y inside the family's support (y is data) */
    em_dist dist;   /* what a replay needs (internal/tape.h) */
    glm_kind kind;
} glm_aux;

static void glm_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    const glm_aux *a = self->aux;
    em_node *y = em_node_get(t, (em_var){self->in[0]}), *X = em_node_get(t, (em_var){self->in[1]});
    em_node *al = em_node_get(t, (em_var){self->in[2]}), *be = em_node_get(t, (em_var){self->in[3]});
    size_t n = X->rows, p = X->cols;
    double g = self->adj[0];
    if (a->gbeta) { /* the forward pass already accumulated Xᵀ·res */
        double c = g * a->inv_s2;
        for (size_t j = 0; j < p; j++) be->adj[j] += c * a->gbeta[j];
        if (al->adj && al->n == 1) al->adj[0] += c * a->sum_res;
        else if (al->adj) /* one α per row: the residuals the pass kept */
            for (size_t i = 0; i < n; i++) al->adj[i] += c * a->r[i];
        if (self->nin > 4) {
            em_node *sg = em_node_get(t, (em_var){self->in[4]});
            if (sg->adj) sg->adj[0] += g * a->dsig_sum;
        }
        return;
    }
    if (be->adj)
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)p, g, X->val, (int)p, a->r, 1, 1.0, be->adj, 1);
    if (X->adj) /* ∂lp/∂X = r·βᵀ */
        cblas_dger(CblasRowMajor, (int)n, (int)p, g, a->r, 1, be->val, 1, X->adj, (int)p);
    if (al->adj) {
        if (al->n == 1) {
            double s = 0.0;
            for (size_t i = 0; i < n; i++) s += a->r[i];
            al->adj[0] += g * s;
        } else {
            for (size_t i = 0; i < n; i++) al->adj[i] += g * a->r[i];
        }
    }
    if (y->adj && a->dy) {
        if (y->n == 1) {
            double s = 0.0;
            for (size_t i = 0; i < n; i++) s += a->dy[i];
            y->adj[0] += g * s;
        } else {
            for (size_t i = 0; i < n; i++) y->adj[i] += g * a->dy[i];
        }
    }
    if (self->nin > 4) {
        em_node *sg = em_node_get(t, (em_var){self->in[4]});
        if (sg->adj) {
            if (a->dsigma)
                for (size_t i = 0; i < n; i++) sg->adj[i] += g * a->dsigma[i];
            else
                sg->adj[0] += g * a->dsig_sum;
        }
    }
}

/* The parameters' domains. finite_coefs: also that every α and β is finite. The density's own
 * pass leaves that check out (a varying intercept's α is a vector scanned on every gradient):
 * a non-finite α or β makes some η non-finite, which every kernel turns into a rejected log
 * density, and glm_explain then runs the whole check to name it. */
static em_status glm_check(const em_dist *d, glm_kind kind, int finite_coefs, em_error *err) {
    const em_tape *t = d->tape;
    const char *nm = glm_name(kind);
    const em_node *al = em_node_get(t, d->p[1]), *be = em_node_get(t, d->p[2]);
    for (size_t i = 0; finite_coefs && i < al->n; i++)
        if (!isfinite(al->val[i])) return em_error_set(err, EM_ERR_DOMAIN, "%s: alpha[%zu] = %g must be finite", nm, i, al->val[i]);
    for (size_t i = 0; finite_coefs && i < be->n; i++)
        if (!isfinite(be->val[i])) return em_error_set(err, EM_ERR_DOMAIN, "%s: beta[%zu] = %g must be finite", nm, i, be->val[i]);
    if (kind == GLM_NORMAL || kind == GLM_NB2 || kind == GLM_GAMMA) {
        const char *pn = kind == GLM_NORMAL ? "sigma" : kind == GLM_NB2 ? "phi" : "shape";
        const em_node *sg = em_node_get(t, d->p[3]);
        for (size_t i = 0; i < sg->n; i++)
            if (!(isfinite(sg->val[i]) && sg->val[i] > 0))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: %s[%zu] = %g must be positive", nm, pn, i, sg->val[i]);
    }
    if (kind == GLM_ORDERED) {
        const em_node *c = em_node_get(t, d->p[3]);
        for (size_t k = 0; k < c->n; k++)
            if (!isfinite(c->val[k]) || (k > 0 && !(c->val[k] > c->val[k - 1])))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: cutpoints[%zu] = %g must be finite and above the one before",
                                    nm, k, c->val[k]);
    }
    return EM_OK;
}

/* η = α + X·β into eta (n rows) */
static void glm_eta(const em_tape *t, const em_dist *d, double *eta) {
    const em_node *X = em_node_get(t, d->p[0]), *al = em_node_get(t, d->p[1]), *be = em_node_get(t, d->p[2]);
    size_t n = X->rows, p = X->cols;
    if (al->n == 1)
        for (size_t i = 0; i < n; i++) eta[i] = al->val[0];
    else
        memcpy(eta, al->val, n * sizeof(double));
    if (d->data)
        for (size_t i = 0; i < n; i++) eta[i] += d->data[i];
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)p, 1.0, X->val, (int)p, be->val, 1, 1.0, eta, 1);
}

/* The normal GLM's common case in ONE pass over X: for each row, η_i = α + x_i·β, the residual
 * res_i = y_i − η_i, and the β-gradient Σ res_i·x_i accumulated while the row is still in L1.
 * A dgemv forward and a transposed dgemv backward read X twice; for a large design matrix the
 * gradient is bound by that memory traffic, so one pass is nearly twice as fast. Returns Σ res²,
 * and Σ res in *sum_res; a residual that is not finite makes either sum not finite, which the
 * caller tests once (no per-row test).
 *
 * Two kernels, both on GCC/clang vector types (the same additions in the same order whatever
 * instructions the CPU offers, so every machine computes the same bits):
 *   - few coefficients (p ≤ GLM_COLS_MAX, the common small regression): X is kept transposed
 *     (one column after another) and four rows go through each vector operation, with β and the
 *     gradient in registers. Row by row, a small regression spends its time on the loop's
 *     instruction count and on the latency of the running sums; four lanes cut both fourfold.
 *   - many coefficients: rows in blocks of four; each row's x_i·β on vectors along the row,
 *     and the gradient updated once per block, Σ_j over four rows at a time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
/* The build is portable (-O2, no -march); these kernels alone are cloned for AVX-512 (x86-64-v4:
 * twice the vector registers, so the exp and log polynomials do not spill) and AVX2, chosen at
 * load time by the CPU it runs on. No fused multiply-add in any clone (fp-contract=off: x86-64-v4
 * has FMA, and contracting would change the bits), so every machine draws the same numbers.
 * Not under ThreadSanitizer (make check-tsan): the clones' ifunc resolvers run during
 * relocation, before the TSan runtime is up, and their instrumented entry crashes the program
 * at load. */
#define GLM_KERNEL __attribute__((optimize("O3", "fp-contract=off"), target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define GLM_KERNEL
#endif

enum { GLM_COLS_MAX = 8 };

/* Few coefficients: Xt is X transposed (P columns of n). P is a compile-time constant, so the
 * loops over coefficients unroll into straight-line code. */
static inline __attribute__((always_inline)) double glm_cols(const double *restrict Xt, size_t n, const size_t P,
                                                             const double *restrict y, size_t sy,
                                                             const double *restrict alpha, size_t sa,
                                                             const double *restrict beta, double *restrict gb,
                                                             double *restrict res_out, double *sum_res) {
    em_v4d ss = {0, 0, 0, 0}, sr = {0, 0, 0, 0}, g[GLM_COLS_MAX], b[GLM_COLS_MAX];
    em_v4d av = EM_V4(alpha[0]), yv = {y[0], y[0], y[0], y[0]};
    for (size_t j = 0; j < P; j++) {
        b[j] = (em_v4d){beta[j], beta[j], beta[j], beta[j]};
        g[j] = (em_v4d){0, 0, 0, 0};
    }
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        em_v4d eta = sa ? em_v4_load(alpha + i) : av;
        for (size_t j = 0; j < P; j++) eta += em_v4_load(Xt + j * n + i) * b[j];
        em_v4d res = (sy ? em_v4_load(y + i) : yv) - eta;
        if (res_out) em_v4_store(res_out + i, res);
        ss += res * res;
        sr += res;
        for (size_t j = 0; j < P; j++) g[j] += res * em_v4_load(Xt + j * n + i);
    }
    double ss1 = EM_V4_HSUM(ss), sr1 = EM_V4_HSUM(sr);
    for (size_t j = 0; j < P; j++) gb[j] += EM_V4_HSUM(g[j]);
    for (; i < n; i++) { /* the last n mod 4 rows */
        double eta = alpha[i * sa];
        for (size_t j = 0; j < P; j++) eta += Xt[j * n + i] * beta[j];
        double res = y[i * sy] - eta;
        if (res_out) res_out[i] = res;
        ss1 += res * res;
        sr1 += res;
        for (size_t j = 0; j < P; j++) gb[j] += res * Xt[j * n + i];
    }
    *sum_res = sr1;
    return ss1;
}

/* x·β along a row of p: four lanes, then the last p mod 4 */
static inline __attribute__((always_inline)) double glm_row_dot(const double *restrict x, const double *restrict beta,
                                                                size_t p) {
    em_v4d acc = {0, 0, 0, 0};
    size_t j = 0;
    for (; j + 4 <= p; j += 4) acc += em_v4_load(x + j) * em_v4_load(beta + j);
    double s = EM_V4_HSUM(acc);
    for (; j < p; j++) s += x[j] * beta[j];
    return s;
}

/* x_l·β for the four rows at x (row-major, p apart), lane l for row l: the four rows' vector
 * sums run side by side (independent chains) and are reduced together by a transpose, each
 * exactly as glm_row_dot reduces one row, so both give the same bits. */
static inline __attribute__((always_inline)) em_v4d glm_row_dot4(const double *restrict x, const double *restrict beta,
                                                                 size_t p) {
    em_v4d a0 = EM_V4(0.0), a1 = a0, a2 = a0, a3 = a0;
    size_t j = 0;
    for (; j + 4 <= p; j += 4) {
        em_v4d b = em_v4_load(beta + j);
        a0 += em_v4_load(x + j) * b;
        a1 += em_v4_load(x + p + j) * b;
        a2 += em_v4_load(x + 2 * p + j) * b;
        a3 += em_v4_load(x + 3 * p + j) * b;
    }
    /* (v0 + v1, w0 + w1, v2 + v3, w2 + w3), then the halves: ((v0 + v1) + (v2 + v3)) per row
     * (__builtin_shufflevector: GCC 12 and clang alike) */
    em_v4d t0 = __builtin_shufflevector(a0, a1, 0, 4, 2, 6) + __builtin_shufflevector(a0, a1, 1, 5, 3, 7);
    em_v4d t1 = __builtin_shufflevector(a2, a3, 0, 4, 2, 6) + __builtin_shufflevector(a2, a3, 1, 5, 3, 7);
    em_v4d sum = __builtin_shufflevector(t0, t1, 0, 1, 4, 5) + __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
    for (; j < p; j++) sum += (em_v4d){x[j], x[p + j], x[2 * p + j], x[3 * p + j]} * EM_V4(beta[j]);
    return sum;
}

/* Many coefficients: X row-major, rows in blocks of four. */
static inline __attribute__((always_inline)) double glm_rows(const double *restrict X, size_t n, size_t p,
                                                             const double *restrict y, size_t sy,
                                                             const double *restrict alpha, size_t sa,
                                                             const double *restrict beta, double *restrict gb,
                                                             double *restrict res_out, double *sum_res) {
    double ss = 0.0, sr = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const double *restrict x0 = X + i * p, *restrict x1 = x0 + p, *restrict x2 = x1 + p, *restrict x3 = x2 + p;
        double r0 = y[i * sy] - (alpha[i * sa] + glm_row_dot(x0, beta, p));
        double r1 = y[(i + 1) * sy] - (alpha[(i + 1) * sa] + glm_row_dot(x1, beta, p));
        double r2 = y[(i + 2) * sy] - (alpha[(i + 2) * sa] + glm_row_dot(x2, beta, p));
        double r3 = y[(i + 3) * sy] - (alpha[(i + 3) * sa] + glm_row_dot(x3, beta, p));
        if (res_out) {
            res_out[i] = r0;
            res_out[i + 1] = r1;
            res_out[i + 2] = r2;
            res_out[i + 3] = r3;
        }
        ss += (r0 * r0 + r1 * r1) + (r2 * r2 + r3 * r3);
        sr += (r0 + r1) + (r2 + r3);
        for (size_t j = 0; j < p; j++) gb[j] += (r0 * x0[j] + r1 * x1[j]) + (r2 * x2[j] + r3 * x3[j]);
    }
    for (; i < n; i++) {
        const double *restrict x = X + i * p;
        double res = y[i * sy] - (alpha[i * sa] + glm_row_dot(x, beta, p));
        if (res_out) res_out[i] = res;
        ss += res * res;
        sr += res;
        for (size_t j = 0; j < p; j++) gb[j] += res * x[j];
    }
    *sum_res = sr;
    return ss;
}

/* Xt: X transposed when p ≤ GLM_COLS_MAX (glm_lp made it), else NULL and X is read by rows.
 * alpha: one value (sa = 0) or one per row (sa = 1: a varying intercept's gathered effects);
 * res_out, when not NULL, receives each row's residual (α's gradient, row by row). */
GLM_KERNEL
static double normal_glm_one_pass(const double *restrict X, const double *restrict Xt, size_t n, size_t p,
                                  const double *restrict y, size_t sy, const double *restrict alpha, size_t sa,
                                  const double *restrict beta, double *restrict gb, double *restrict res_out,
                                  double *sum_res) {
    if (Xt) switch (p) {
        case 1: return glm_cols(Xt, n, 1, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 2: return glm_cols(Xt, n, 2, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 3: return glm_cols(Xt, n, 3, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 4: return glm_cols(Xt, n, 4, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 5: return glm_cols(Xt, n, 5, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 6: return glm_cols(Xt, n, 6, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 7: return glm_cols(Xt, n, 7, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        case 8: return glm_cols(Xt, n, 8, y, sy, alpha, sa, beta, gb, res_out, sum_res);
        default: break;
        }
    return glm_rows(X, n, p, y, sy, alpha, sa, beta, gb, res_out, sum_res);
}

/* Is the one-pass kernel usable? The common regression: normal or Bernoulli-logit, constant X, a
 * gradient wanted for β, a scalar σ, a constant y, and α one value or one per row (a varying
 * intercept's gathered effects). */
static int glm_one_pass_layout(const em_tape *t, const em_node *o, glm_kind kind) {
    if ((kind != GLM_NORMAL && kind != GLM_BERNOULLI) || !o->adj) return 0;
    const em_node *y = em_node_get(t, (em_var){o->in[0]}), *X = em_node_get(t, (em_var){o->in[1]});
    const em_node *al = em_node_get(t, (em_var){o->in[2]}), *be = em_node_get(t, (em_var){o->in[3]});
    if (kind == GLM_NORMAL && em_node_get(t, (em_var){o->in[4]})->n != 1) return 0;
    return be->adj && !X->adj && (al->n == 1 || al->n == X->rows) && !y->adj;
}

static void glm_explain(em_tape *t, const em_node *o, em_error *e);

/* ---- one pass over X: negative binomial (log link), Gamma (log link), ordered logistic ---------- */

/* The terms of the dispersion parameter v alone, hoisted out of the row loop when v is a
 * scalar: log v, and for Gamma c0 = v·log v - lgamma(v) and its derivative c1 = log v + 1 - ψ(v)
 * (its α^α/Γ(α); NB2's φ^φ/Γ(φ) is folded into the rising factorial of its rows instead). */
typedef struct {
    double v, iv, lv, c0, c1;
} glm1_par;

static inline glm1_par glm1_par_of(double v, int need) {
    glm1_par q;
    q.v = v;
    q.iv = 1.0 / v;
    q.lv = log(v);
    q.c0 = v * q.lv - em_math_lgamma(v);
    q.c1 = need ? q.lv + 1.0 - gsl_sf_psi(v) : 0.0;
    return q;
}

/* Row i's log density given η, less the terms the pass adds up once (see glm1_pass), with
 * r = ∂/∂η and dpar = ∂/∂v:
 *   NB2 (mean μ = e^η, Stan's neg_binomial_2_log): log (φ)_y + y·(η - log(μ + φ)) - φ·log1p(μ/φ),
 *     r = y - (y + φ)·μ/(μ + φ); with one exp and one log per row (a softplus beyond e^700);
 *   Gamma (mean e^η, shape α, rate α e^{-η}): c0 - αη + (α - 1) log y - α y e^{-η};
 *   ordered logistic: em_ord_term (the logistic closed form, its cutpoint terms in gap), with the
 *     cutpoints' partials added into dcuts.
 * `pooled`: the terms of y and the dispersion alone (NB2's log (φ)_y and its partial, Gamma's
 * c0 + (α-1)·log y and its partial) are summed by the caller, not per row. */
EM_ALWAYS_INLINE double glm1_row(glm_kind kind, double eta, double y, const glm1_par *q, int need_par, int pooled,
                                 const double *cuts, const double *gap, size_t K, double *dcuts, double *r,
                                 double *dpar, int *ok) {
    if (kind == GLM_NB2) {
        /* sp = log(μ + φ) - log φ = softplus(η - log φ) and w = μ/(μ + φ), so 1/(μ + φ) = (1 - w)/φ;
         * the row is y·(η - log(μ + φ)) - φ·sp, its φ terms kept apart from log (φ)_y as in
         * NegBinomial2Log (dist_discrete.c): summed whole they cancel for a large φ */
        double sp, w;
        if (eta < 700.0) {
            double mu = exp(eta);
            sp = log1p(mu / q->v);
            w = mu / (mu + q->v);
        } else {
            sp = em_math_softplus(eta - q->lv);
            w = em_math_sigmoid(eta - q->lv);
        }
        *ok &= em_pk_ok(EM_PK_COUNT, y, 0, 0, 0) & (fabs(eta) < INFINITY);
        *r = y - (y + q->v) * w;
        double v = y * (eta - q->lv - sp) - q->v * sp;
        if (need_par) *dpar = w - sp - y * (1.0 - w) / q->v;
        if (!pooled) {
            v += em_math_lpoch(q->v, y);
            if (need_par) *dpar += em_math_dlpoch(q->v, y);
        }
        return v;
    }
    if (kind == GLM_GAMMA) {
        double ye = y * exp(-eta);
        *ok &= (y > 0.0) & (y < INFINITY) & (fabs(eta) < INFINITY);
        *r = q->v * (ye - 1.0);
        double v = -q->v * (eta + ye);
        if (need_par) *dpar = -eta - ye;
        if (!pooled) {
            double ly = log(y);
            v += q->c0 + (q->v - 1.0) * ly;
            if (need_par) *dpar += q->c1 + ly;
        }
        return v;
    }
    int in = (y >= 0.0) & (y <= (double)(K - 1)) & (y == floor(y)) & (fabs(eta) < INFINITY);
    *ok &= in;
    *r = 0.0;
    if (!in) return 0.0;
    size_t k = (size_t)y;
    double dhi, dlo, v = em_ord_term(k, eta, cuts, K, 0, gap, &dhi, &dlo);
    *r = -(dhi + dlo);
    if (dcuts) {
        if (k < K - 1) dcuts[k] += dhi;
        if (k > 0) dcuts[k - 1] += dlo;
    }
    return v;
}

/* Ordinal responses with up to this many categories take the eight-lane rows (glm1_ord_first8,
 * glm1_ord_second8), which pick each row's cutpoint terms by comparing y with every category;
 * more go row by row. */
enum { GLM_ORD_VEC_MAX = 16 };

/* |η| < bound on every lane, compared as the magnitudes' bits (ordered like the magnitudes; a NaN's
 * lie above infinity's): integer lanes, which every clone compares as vectors */
EM_ALWAYS_INLINE int glm_eta_below(em_v8d e, double bound) {
    uint64_t b;
    memcpy(&b, &bound, sizeof b);
    em_v8i in = (em_v8u)em_v8_abs(e) < EM_V8U(b);
    return ((in[0] & in[1]) & (in[2] & in[3]) & (in[4] & in[5]) & (in[6] & in[7])) != 0;
}

/* A row's term on eight lanes is a long chain of dependent operations (an exp, divisions, a log),
 * and the CPU keeps only so many of them in flight: the pass runs each chain in two halves, the
 * first half over every group of eight rows of a tile, then the second, each half a loop of
 * short independent chains. glm1_mid holds a group's values between the halves. */
typedef struct {
    em_v8d u[6];
} glm1_mid;

/* The first half for eight rows of the pass's common case, NB2 or Gamma with a scalar
 * dispersion whose terms are pooled and every y inside the support (checked once per tape):
 * glm1_row's formulas with em_v8_exp (NB2's log1p(μ/φ) as em_math_log1p_via_log takes it, with
 * 1/(1 + μ/φ) = φ/(μ + φ) from the division that gives w). Returns 0 when a row needs glm1_row's
 * care (NB2 beyond |η| = 700, where e^η overflows or flushes; a non-finite η). */
EM_ALWAYS_INLINE int glm1_first8(glm_kind kind, em_v8d e, em_v8d yv, const glm1_par *q, glm1_mid *m) {
    if (kind == GLM_NB2) {
        if (!glm_eta_below(e, 700.0)) return 0;
        em_v8d mu = em_v8_exp(e), t = mu * EM_V8(q->iv), qd = EM_V8(1.0) / (mu + EM_V8(q->v));
        m->u[0] = t;
        m->u[1] = EM_V8(1.0) + t; /* W */
        m->u[2] = qd;
        m->u[3] = mu * qd; /* w = μ/(μ + φ) */
        return 1;
    }
    if (!glm_eta_below(e, __builtin_inf())) return 0;
    m->u[0] = yv * em_v8_exp(-e); /* y e^-η */
    return 1;
}

/* The second half: the rows' terms added lane by lane to acc[0..2] (log density, ∂/∂η, ∂/∂v),
 * ∂/∂η_i left in rb. Only the lanes in `live` are rows (the others hold a harmless η = 0, y = 1
 * and add zeros). */
EM_ALWAYS_INLINE void glm1_second8(glm_kind kind, em_v8d e, em_v8d yv, em_v8i live, const glm1_par *q,
                                   const glm1_mid *m, em_v8d *acc, double *rb) {
    em_v8d v, r, dp;
    if (kind == GLM_NB2) {
        em_v8d phi = EM_V8(q->v), t = m->u[0], W = m->u[1], qd = m->u[2], w = m->u[3];
        em_v8d sp = em_v8_log(W) + (t - (W - EM_V8(1.0))) * (phi * qd);
        r = yv - (yv + phi) * w;
        v = yv * (e - EM_V8(q->lv) - sp) - phi * sp;
        dp = w - sp - yv * (EM_V8(1.0) - w) * EM_V8(q->iv);
    } else {
        em_v8d al = EM_V8(q->v), ye = m->u[0];
        r = al * (ye - EM_V8(1.0));
        v = -al * (e + ye);
        dp = -e - ye;
    }
    const em_v8d zero = EM_V8(0.0);
    r = em_v8_select(live, r, zero);
    acc[0] += em_v8_select(live, v, zero);
    acc[1] += r;
    acc[2] += em_v8_select(live, dp, zero);
    em_v8_store(rb, r);
}

/* The ordered-logistic cutpoints' terms by category, made once per evaluation from the gaps
 * (em_ord_logistic_gaps): for category k, lg = log1m_exp(c_{k-1} - c_k) and ig = g_k (0 at
 * the end categories), ga = e^{-c_k} (0 for the last) and gb = e^{c_{k-1}} (0 for the first).
 * ok: every ga and gb a category uses is positive (no cutpoint beyond ±300), so that every row
 * takes the closed form of the eight-lane rows. */
typedef struct {
    double lg[GLM_ORD_VEC_MAX], ig[GLM_ORD_VEC_MAX], ga[GLM_ORD_VEC_MAX], gb[GLM_ORD_VEC_MAX];
    int ok;
} glm_ord_tab;

static void glm_ord_tab_make(const double *gap, size_t K, glm_ord_tab *tb) {
    tb->ok = 1;
    for (size_t k = 0; k < K; k++) {
        int mid = k > 0 && k < K - 1;
        tb->lg[k] = mid ? gap[EM_ORD_GAP * k] : 0.0;
        tb->ig[k] = mid ? gap[EM_ORD_GAP * k + 1] : 0.0;
        tb->ga[k] = k < K - 1 ? gap[EM_ORD_GAP * k + 3] : 0.0;
        tb->gb[k] = k > 0 ? gap[EM_ORD_GAP * (k - 1) + 2] : 0.0;
        tb->ok &= (k == K - 1 || tb->ga[k] > 0.0) && (k == 0 || tb->gb[k] > 0.0);
    }
}

/* The ordered-logistic rows in two halves as glm1_first8 and glm1_second8 (K ≤ GLM_ORD_VEC_MAX
 * categories, every one taking the closed form, every y a category: checked once per tape):
 * em_ord_term's logistic branch, log P = lg - log1p(A + B + AB) with A = e^η·ga, B = gb/e^η,
 * by em_v8_exp and em_v8_log. Each row's category terms are picked by comparing its category
 * with every k, so there is no gather. The first half returns 0 when a row needs em_ord_term
 * itself (|η| ≥ 300). */
EM_ALWAYS_INLINE em_v8i glm_ord_category(em_v8d yv) {
    /* y + 2^52 holds the category in its low bits (0 ≤ y < 2^52, whole) */
    const em_v8d two52 = EM_V8(0x1p52);
    return (em_v8i)(yv + two52) - (em_v8i)two52;
}

EM_ALWAYS_INLINE int glm1_ord_first8(em_v8d eta, em_v8d yv, const glm_ord_tab *tb, size_t K, glm1_mid *m) {
    if (!glm_eta_below(eta, 300.0)) return 0;
    em_v8i cat = glm_ord_category(yv);
    em_v8d lgv = EM_V8(tb->lg[0]), igv = EM_V8(tb->ig[0]), gav = EM_V8(tb->ga[0]), gbv = EM_V8(tb->gb[0]);
    for (size_t k = 1; k < K; k++) {
        em_v8i is = cat == (int64_t)k;
        lgv = em_v8_select(is, EM_V8(tb->lg[k]), lgv);
        igv = em_v8_select(is, EM_V8(tb->ig[k]), igv);
        gav = em_v8_select(is, EM_V8(tb->ga[k]), gav);
        gbv = em_v8_select(is, EM_V8(tb->gb[k]), gbv);
    }
    em_v8d E = em_v8_exp(eta), A = E * gav, B = gbv / E;
    m->u[0] = A;
    m->u[1] = B;
    m->u[2] = A + B + A * B; /* x */
    m->u[3] = lgv;
    m->u[4] = igv;
    return 1;
}

/* The second half: the terms added lane by lane to acc[0..1] (log density, ∂/∂η), ∂/∂η_i left
 * in rb, and the cutpoints' partials summed lane by lane in dacc (dacc[k] for c_k: the dhi of
 * rows in category k and the dlo of rows in k + 1), not scattered one row at a time, whose
 * store-to-load chains would serialise the rows. */
EM_ALWAYS_INLINE void glm1_ord_second8(em_v8d yv, em_v8i live, size_t K, const glm1_mid *m, em_v8d *acc,
                                       em_v8d *dacc, double *rb) {
    const em_v8d one = EM_V8(1.0), zero = EM_V8(0.0);
    em_v8d A = m->u[0], B = m->u[1], x = m->u[2], igv = m->u[4];
    /* W = 1 + A + B + AB = (1 + A)(1 + B), so one division gives 1/W, 1/(1 + A) and 1/(1 + B) */
    em_v8d W = one + x, iW = one / W;
    em_v8d v = m->u[3] - (em_v8_log(W) + (x - (W - one)) * iW);
    em_v8d dhi = A * (one + B) * iW + igv, dlo = -(B * (one + A) * iW) - igv; /* 0 at the end categories */
    dhi = em_v8_select(live, dhi, zero);
    dlo = em_v8_select(live, dlo, zero);
    em_v8d r = -(dhi + dlo);
    acc[0] += em_v8_select(live, v, zero);
    acc[1] += r;
    em_v8_store(rb, r);
    em_v8i cat = glm_ord_category(yv), below = cat == 0;
    for (size_t k = 0; k + 1 < K; k++) {
        em_v8i above = cat == (int64_t)(k + 1);
        dacc[k] += em_v8_select(below, dhi, zero) + em_v8_select(above, dlo, zero);
        below = above;
    }
}

/* Rows per tile of the pass: its η, its terms, then Σ r_i·x_i, the tile's x_i (GLM1_TILE·p
 * doubles) still in L1 for the third step. Each step is a loop of independent iterations, so the
 * rows' exp and log overlap one another instead of waiting behind the dot products. */
enum { GLM1_TILE = 64 };

/* Part k of `parts` of the bytes at p, a cache line at a time, asked into cache */
EM_ALWAYS_INLINE void glm_prefetch_part(const char *p, size_t bytes, size_t k, size_t parts) {
    size_t lines = (bytes + 63) / 64, from = lines * k / parts, to = lines * (k + 1) / parts;
    for (size_t l = from; l < to; l++) __builtin_prefetch(p + 64 * l);
}

/* gb += Σ_i r_i·x_i over a tile of m rows of X (row-major, p columns), four rows at a time as
 * (r0 x0 + r1 x1) + (r2 x2 + r3 x3), then the last m mod 4 one by one. Eight (then four) columns
 * of gb stay in a register across the whole tile (columns outside, rows inside): each column gets
 * the same sums in the same order as row by row, with no store and reload of gb between blocks.
 * One loop, written once for eight, four and one column at a time. */
#define GLM1_GRADIENT_COLUMNS(V, LOAD, STORE, SPLAT, W)                                                   \
    for (; j + (W) <= p; j += (W)) {                                                                  \
        V acc = LOAD(gb + j);                                                                         \
        size_t g = 0;                                                                                 \
        for (; g < m4; g += 4) {                                                                      \
            const double *restrict x0 = X + g * p + j;                                                \
            acc += (SPLAT(r[g]) * LOAD(x0) + SPLAT(r[g + 1]) * LOAD(x0 + p)) +                        \
                   (SPLAT(r[g + 2]) * LOAD(x0 + 2 * p) + SPLAT(r[g + 3]) * LOAD(x0 + 3 * p));         \
        }                                                                                             \
        for (; g < m; g++) acc += SPLAT(r[g]) * LOAD(X + g * p + j);                                  \
        STORE(gb + j, acc);                                                                           \
    }
#define GLM_LOAD1(p) (*(p))
#define GLM_STORE1(p, v) (*(p) = (v))
#define GLM_SPLAT1(c) (c)
EM_ALWAYS_INLINE void glm1_gradient(const double *restrict X, size_t m, size_t p, const double *restrict r,
                                    double *restrict gb) {
    size_t m4 = m & ~(size_t)3, j = 0;
    GLM1_GRADIENT_COLUMNS(em_v8d, em_v8_load, em_v8_store, EM_V8, 8)
    GLM1_GRADIENT_COLUMNS(em_v4d, em_v4_load, em_v4_store, EM_V4, 4)
    GLM1_GRADIENT_COLUMNS(double, GLM_LOAD1, GLM_STORE1, GLM_SPLAT1, 1)
}
#undef GLM_LOAD1
#undef GLM_STORE1
#undef GLM_SPLAT1
#undef GLM1_GRADIENT_COLUMNS

/* The pass, a tile of GLM1_TILE rows at a time: η_i = α_i + offset_i + x_i·β for the tile, the
 * rows' terms (eight lanes at a time in two halves where glm1_first8 / glm1_ord_first8 take them,
 * else glm1_row), then, when β needs its gradient, Σ r_i·x_i over the tile while its rows are in
 * L1. While the terms are computed the next tile's X is fetched, so only the first tile's η waits
 * on memory. r is kept
 * per row only when α is a vector or X needs a gradient. With a scalar dispersion the terms of y
 * and the dispersion alone are pooled: Gamma's from Σ log y (made once per tape, y being data),
 * NB2's from the counts' histogram (a->hist: Σ_v n_v·lgamma(v + φ) over the distinct counts v
 * instead of one lgamma and one ψ per row). The eight-lane rows sum their terms lane by lane, and
 * the lanes are added once at the end: the order is fixed by n alone, so every machine and clone
 * gets the same bits. */
EM_ALWAYS_INLINE int glm1_pass(glm_kind kind, em_tape *t, em_node *o, glm_aux *a) {
    const em_dist *d = &a->dist;
    const em_node *yn = em_node_get(t, (em_var){o->in[0]}), *Xn = em_node_get(t, d->p[0]);
    const em_node *al = em_node_get(t, d->p[1]), *be = em_node_get(t, d->p[2]), *pn = em_node_get(t, d->p[3]);
    size_t n = Xn->rows, p = Xn->cols, sy = yn->n == 1 ? 0 : 1, sa = al->n == 1 ? 0 : 1;
    size_t sp = kind != GLM_ORDERED && pn->n > 1, K = pn->n + 1;
    int need_par = o->adj && pn->adj && kind != GLM_ORDERED;
    int pooled = !sp && kind != GLM_ORDERED && (kind == GLM_GAMMA || a->hist);
    const double *restrict X = Xn->val, *restrict beta = be->val, *restrict off = d->data, *restrict y = yn->val;
    const double *restrict av = al->val;
    double *restrict gb = a->gbeta, *restrict r = a->r, *restrict dpv = a->dsigma;
    if (gb) memset(gb, 0, p * sizeof(double));
    if (a->dcuts) memset(a->dcuts, 0, (K - 1) * sizeof(double));
    if (kind == GLM_ORDERED) em_ord_logistic_gaps(pn->val, K, a->gap); /* once, not per row */
    glm1_par q = glm1_par_of(pn->val[0], need_par);
    double lp = 0.0, sr = 0.0, sdp = 0.0;
    int ok = 1;
    /* one row's term from its η (G: its place in the tile) */
#define GLM1_ROW(I, G)                                                                        \
    do {                                                                                      \
        double dpi_ = 0.0;                                                                    \
        if (sp) q = glm1_par_of(pn->val[I], need_par);                                        \
        lp += glm1_row(kind, etab[G], y[(I) * sy], &q, need_par, pooled, pn->val, a->gap, K, a->dcuts, &rt[G], &dpi_, &ok); \
        sr += rt[G];                                                                          \
        if (need_par) {                                                                       \
            if (dpv) dpv[I] = dpi_;                                                           \
            else sdp += dpi_;                                                                 \
        }                                                                                     \
    } while (0)
    /* the eight-lane rows: NB2 and Gamma with a scalar, pooled dispersion; ordinal responses with
     * few categories whose cutpoints all take the closed form */
    glm_ord_tab tb;
    em_v8d dacc[GLM_ORD_VEC_MAX];
    int ord8 = kind == GLM_ORDERED && K <= GLM_ORD_VEC_MAX;
    if (ord8) {
        glm_ord_tab_make(a->gap, K, &tb);
        ord8 = tb.ok;
        for (size_t k = 0; k < K; k++) dacc[k] = EM_V8(0.0);
    }
    int eight = a->y_inside && (((kind == GLM_NB2 || kind == GLM_GAMMA) && !sp && pooled) || ord8);
    em_v8d acc[3] = {EM_V8(0.0), EM_V8(0.0), EM_V8(0.0)}; /* the eight-lane rows' sums, lane by lane */
    double etab[GLM1_TILE], rt[GLM1_TILE], ytile[GLM1_TILE];
    glm1_mid mid[GLM1_TILE / 8];
    int whole[GLM1_TILE / 8];
    const em_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (size_t i0 = 0; i0 < n; i0 += GLM1_TILE) {
        size_t m = n - i0 < GLM1_TILE ? n - i0 : GLM1_TILE, m4 = m & ~(size_t)3, g;
        const double *restrict Xi = X + i0 * p;
        /* the next tile's rows of X, fetched into cache while this tile's terms are computed
         * (the η loop alone waits on memory; the terms' loops read none) */
        const char *next = (const char *)(Xi + m * p);
        size_t next_bytes = i0 + m < n ? (n - i0 - m < GLM1_TILE ? n - i0 - m : GLM1_TILE) * p * sizeof(double) : 0;
        /* η = (α_i + offset_i) + x_i·β */
        for (g = 0; g < m4; g += 4) {
            em_v4d e = (sa ? em_v4_load(av + i0 + g) : EM_V4(av[0])) + (off ? em_v4_load(off + i0 + g) : EM_V4(0.0));
            em_v4_store(etab + g, e + glm_row_dot4(Xi + g * p, beta, p));
        }
        for (; g < m; g++) etab[g] = av[(i0 + g) * sa] + (off ? off[i0 + g] : 0.0) + glm_row_dot(Xi + g * p, beta, p);
        /* the rows' terms: eight lanes at a time, in two halves over the tile (the tile's last rows
         * padded: η = 0, y = 1, inside every family's support), or row by row */
        if (eight) {
            size_t ng = (m + 7) / 8;
            const double *yt = y + i0;
            if (!sy || m < GLM1_TILE) {
                for (g = 0; g < 8 * ng; g++) ytile[g] = g < m ? y[(i0 + g) * sy] : 1.0;
                for (g = m; g < 8 * ng; g++) etab[g] = 0.0;
                yt = ytile;
            }
            for (size_t h = 0; h < ng; h++) {
                glm_prefetch_part(next, next_bytes, h, 2 * ng);
                em_v8d eb = em_v8_load(etab + 8 * h), yb = em_v8_load(yt + 8 * h);
                whole[h] = kind == GLM_ORDERED ? glm1_ord_first8(eb, yb, &tb, K, mid + h)
                                               : glm1_first8(kind, eb, yb, &q, mid + h);
            }
            for (size_t h = 0; h < ng; h++) {
                glm_prefetch_part(next, next_bytes, ng + h, 2 * ng);
                size_t live = m - 8 * h < 8 ? m - 8 * h : 8;
                em_v8d eb = em_v8_load(etab + 8 * h), yb = em_v8_load(yt + 8 * h);
                em_v8i lv = lane < (int64_t)live;
                if (!whole[h])
                    for (size_t l = 0; l < live; l++) GLM1_ROW(i0 + 8 * h + l, 8 * h + l);
                else if (kind == GLM_ORDERED)
                    glm1_ord_second8(yb, lv, K, mid + h, acc, dacc, rt + 8 * h);
                else
                    glm1_second8(kind, eb, yb, lv, &q, mid + h, acc, rt + 8 * h);
            }
        }
        for (g = 0; !eight && g < m; g++) GLM1_ROW(i0 + g, g);
        if (r) memcpy(r + i0, rt, m * sizeof(double));
        if (gb) glm1_gradient(Xi, m, p, rt, gb);
    }
#undef GLM1_ROW
    lp += EM_V8_HSUM(acc[0]);
    sr += EM_V8_HSUM(acc[1]);
    if (need_par) sdp += EM_V8_HSUM(acc[2]);
    if (ord8 && a->dcuts)
        for (size_t k = 0; k + 1 < K; k++) a->dcuts[k] += EM_V8_HSUM(dacc[k]);
    if (pooled && kind == GLM_GAMMA) { /* n·c0 + (α - 1)·Σ log y, and its partial */
        lp += (double)n * q.c0 + (q.v - 1.0) * a->ylog;
        sdp += (double)n * q.c1 + a->ylog;
    } else if (pooled) { /* NB2: Σ_v n_v·log (φ)_v, and Σ_v n_v·(ψ(v + φ) - ψ(φ)) */
        for (size_t k = 0; k < a->nhist; k++) {
            double v = a->hist[2 * k], c = a->hist[2 * k + 1];
            lp += c * em_math_lpoch(q.v, v);
            if (need_par) sdp += c * em_math_dlpoch(q.v, v);
        }
    }
    if (kind == GLM_NB2) lp -= a->ysum; /* - Σ log y_i! */
    if (!ok || !isfinite(lp)) return 0;
    o->val[0] = lp;
    a->sum_res = sr;
    a->dsig_sum = sdp;
    return 1;
}

GLM_KERNEL static int glm1_pass_nb2(em_tape *t, em_node *o, glm_aux *a) { return glm1_pass(GLM_NB2, t, o, a); }
GLM_KERNEL static int glm1_pass_gamma(em_tape *t, em_node *o, glm_aux *a) { return glm1_pass(GLM_GAMMA, t, o, a); }
GLM_KERNEL static int glm1_pass_ordered(em_tape *t, em_node *o, glm_aux *a) { return glm1_pass(GLM_ORDERED, t, o, a); }

static void glm1_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    const glm_aux *a = self->aux;
    em_node *X = em_node_get(t, (em_var){self->in[1]}), *al = em_node_get(t, (em_var){self->in[2]});
    em_node *be = em_node_get(t, (em_var){self->in[3]}), *pn = em_node_get(t, (em_var){self->in[4]});
    size_t n = X->rows, p = X->cols;
    double g = self->adj[0];
    if (be->adj)
        for (size_t j = 0; j < p; j++) be->adj[j] += g * a->gbeta[j];
    if (al->adj) {
        if (al->n == 1) al->adj[0] += g * a->sum_res;
        else
            for (size_t i = 0; i < n; i++) al->adj[i] += g * a->r[i];
    }
    if (X->adj) /* ∂lp/∂X = r·βᵀ */
        cblas_dger(CblasRowMajor, (int)n, (int)p, g, a->r, 1, be->val, 1, X->adj, (int)p);
    if (pn->adj) {
        if (a->dcuts)
            for (size_t k = 0; k < pn->n; k++) pn->adj[k] += g * a->dcuts[k];
        else if (a->dsigma)
            for (size_t i = 0; i < n; i++) pn->adj[i] += g * a->dsigma[i];
        else
            pn->adj[0] += g * a->dsig_sum;
    }
}

/* ---- the Bernoulli-logit rows, four lanes at a time --------------------------------------- */

/* Four rows: log p(y | η) = y·η - max(η, 0) - log(1 + e^-|η|) (the linear parts first: exact for
 * y = 1), and ∂/∂η = y - σ(η) from the same e^-|η| and 1/(1 + e^-|η|). log(1 + x) is taken as
 * em_math_log1p_via_log does it, through log of the rounded 1 + x. The mask is all ones where y
 * is 0 or 1 (a non-finite η makes the sum non-finite on its own). */
EM_V4_INLINE em_v4i bern_logit_4(em_v4d yv, em_v4d eta, em_v4d *lp, em_v4d *r) {
    em_v4d ex = em_v4_exp(-em_v4_abs(eta)), w = EM_V4(1.0) + ex, inv = EM_V4(1.0) / w;
    em_v4i pos = eta >= EM_V4(0.0);
    em_v4d lin = yv * eta - em_v4_select(pos, eta, EM_V4(0.0)), tail = ex * inv; /* σ(-|η|) */
    *lp = lin - (em_v4_log(w) + (ex - (w - EM_V4(1.0))) * inv);
    /* y - σ(η), with σ(η) = 1 - σ(-|η|) for η ≥ 0: then y - 1 is exact and 1 - σ never rounds */
    *r = em_v4_select(pos, (yv - EM_V4(1.0)) + tail, yv - tail);
    return (yv == EM_V4(0.0)) | (yv == EM_V4(1.0));
}

/* A block of m ≤ 4 rows, their y and η in yb and eb (the lanes past m padded with 0), through
 * bern_logit_4: the terms in lb and ∂/∂η in rb, zero in the padding's lanes. The last block of
 * every Bernoulli kernel goes through here, so a row's terms do not depend on where it falls. */
EM_ALWAYS_INLINE em_v4i bern_logit_block(const double *yb, const double *eb, size_t m, double *lb, double *rb) {
    em_v4d lp, rv;
    em_v4i good = bern_logit_4(em_v4_load(yb), em_v4_load(eb), &lp, &rv);
    em_v4_store(lb, lp);
    em_v4_store(rb, rv);
    for (size_t k = m; k < 4; k++) lb[k] = rb[k] = 0.0;
    return good;
}

/* r holds η on entry and ∂lp/∂η on exit; returns Σ_i log p(y_i | η_i), *ok cleared when a y is
 * not 0 or 1. The last n mod 4 rows go through bern_logit_block. */
GLM_KERNEL static double bern_logit_rows(const double *restrict y, size_t sy, double *restrict r, size_t n, int *ok) {
    em_v4d acc = EM_V4(0.0), lp, rv;
    em_v4i good = {-1, -1, -1, -1};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        good &= bern_logit_4(sy ? em_v4_load(y + i) : EM_V4(y[0]), em_v4_load(r + i), &lp, &rv);
        acc += lp;
        em_v4_store(r + i, rv);
    }
    double sum = EM_V4_HSUM(acc);
    if (i < n) {
        double yb[4] = {0, 0, 0, 0}, eb[4] = {0, 0, 0, 0}, lb[4], rb[4];
        for (size_t k = 0; i + k < n; k++) {
            yb[k] = y[(i + k) * sy];
            eb[k] = r[i + k];
        }
        good &= bern_logit_block(yb, eb, n - i, lb, rb);
        for (size_t k = 0; i + k < n; k++) {
            sum += lb[k];
            r[i + k] = rb[k];
        }
    }
    *ok &= (good[0] & good[1] & good[2] & good[3]) != 0;
    return sum;
}

/* The one-pass Bernoulli-logit GLM (as normal_glm_one_pass): η for four rows at a time from X
 * (transposed, few coefficients: bern_cols; by rows otherwise: bern_rows), their terms and
 * ∂/∂η by bern_logit_4, and Σ r_i·x_i and Σ r_i accumulated while the rows are in registers.
 * off is the offset or NULL; α is one value (sa = 0) or one per row (sa = 1), and res_out, when
 * not NULL, keeps each row's ∂/∂η for α's gradient. The last block goes through bern_logit_block. */
EM_ALWAYS_INLINE double bern_cols(const double *restrict Xt, size_t n, const size_t P, const double *restrict y,
                                  size_t sy, const double *restrict alpha, size_t sa, const double *restrict off,
                                  const double *restrict beta, double *restrict gb, double *restrict res_out,
                                  double *sum_r, int *ok) {
    em_v4d acc = EM_V4(0.0), sr = EM_V4(0.0), g[GLM_COLS_MAX], b[GLM_COLS_MAX], lp, rv;
    em_v4i good = {-1, -1, -1, -1};
    for (size_t j = 0; j < P; j++) {
        b[j] = EM_V4(beta[j]);
        g[j] = EM_V4(0.0);
    }
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        em_v4d eta = sa ? em_v4_load(alpha + i) : EM_V4(alpha[0]);
        if (off) eta += em_v4_load(off + i);
        for (size_t j = 0; j < P; j++) eta += em_v4_load(Xt + j * n + i) * b[j];
        good &= bern_logit_4(sy ? em_v4_load(y + i) : EM_V4(y[0]), eta, &lp, &rv);
        if (res_out) em_v4_store(res_out + i, rv);
        acc += lp;
        sr += rv;
        for (size_t j = 0; j < P; j++) g[j] += rv * em_v4_load(Xt + j * n + i);
    }
    double sum = EM_V4_HSUM(acc), sum_res = EM_V4_HSUM(sr);
    for (size_t j = 0; j < P; j++) gb[j] += EM_V4_HSUM(g[j]);
    if (i < n) {
        double yb[4] = {0, 0, 0, 0}, eb[4] = {0, 0, 0, 0}, lb[4], rb[4];
        for (size_t k = 0; i + k < n; k++) {
            double eta = alpha[(i + k) * sa] + (off ? off[i + k] : 0.0);
            for (size_t j = 0; j < P; j++) eta += Xt[j * n + i + k] * beta[j];
            yb[k] = y[(i + k) * sy];
            eb[k] = eta;
        }
        good &= bern_logit_block(yb, eb, n - i, lb, rb);
        for (size_t k = 0; i + k < n; k++) {
            if (res_out) res_out[i + k] = rb[k];
            sum += lb[k];
            sum_res += rb[k];
            for (size_t j = 0; j < P; j++) gb[j] += rb[k] * Xt[j * n + i + k];
        }
    }
    *ok &= (good[0] & good[1] & good[2] & good[3]) != 0;
    *sum_r = sum_res;
    return sum;
}

EM_ALWAYS_INLINE double bern_rows(const double *restrict X, size_t n, size_t p, const double *restrict y, size_t sy,
                                  const double *restrict alpha, size_t sa, const double *restrict off,
                                  const double *restrict beta, double *restrict gb, double *restrict res_out,
                                  double *sum_r, int *ok) {
    em_v4d acc = EM_V4(0.0), sr = EM_V4(0.0);
    em_v4i good = {-1, -1, -1, -1};
    for (size_t i = 0; i < n; i += 4) {
        size_t m = n - i < 4 ? n - i : 4; /* rows in this block: the last may be padded */
        double yb[4] = {0, 0, 0, 0}, eb[4] = {0, 0, 0, 0}, lb[4], rb[4];
        const double *restrict x0 = X + i * p;
        for (size_t k = 0; k < m; k++) {
            yb[k] = y[(i + k) * sy];
            eb[k] = alpha[(i + k) * sa] + (off ? off[i + k] : 0.0) + glm_row_dot(x0 + k * p, beta, p);
        }
        good &= bern_logit_block(yb, eb, m, lb, rb);
        if (res_out) memcpy(res_out + i, rb, m * sizeof(double));
        acc += em_v4_load(lb);
        sr += em_v4_load(rb);
        if (m == 4) {
            const double *restrict x1 = x0 + p, *restrict x2 = x1 + p, *restrict x3 = x2 + p;
            for (size_t j = 0; j < p; j++) gb[j] += (rb[0] * x0[j] + rb[1] * x1[j]) + (rb[2] * x2[j] + rb[3] * x3[j]);
        } else {
            for (size_t k = 0; k < m; k++)
                for (size_t j = 0; j < p; j++) gb[j] += rb[k] * x0[k * p + j];
        }
    }
    *ok &= (good[0] & good[1] & good[2] & good[3]) != 0;
    *sum_r = EM_V4_HSUM(sr);
    return EM_V4_HSUM(acc);
}

GLM_KERNEL
static double bern_glm_one_pass(const double *restrict X, const double *restrict Xt, size_t n, size_t p,
                                const double *restrict y, size_t sy, const double *restrict alpha, size_t sa,
                                const double *restrict off, const double *restrict beta, double *restrict gb,
                                double *restrict res_out, double *sum_r, int *ok) {
    if (Xt) switch (p) {
        case 1: return bern_cols(Xt, n, 1, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 2: return bern_cols(Xt, n, 2, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 3: return bern_cols(Xt, n, 3, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 4: return bern_cols(Xt, n, 4, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 5: return bern_cols(Xt, n, 5, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 6: return bern_cols(Xt, n, 6, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 7: return bern_cols(Xt, n, 7, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        case 8: return bern_cols(Xt, n, 8, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
        default: break;
        }
    return bern_rows(X, n, p, y, sy, alpha, sa, off, beta, gb, res_out, sum_r, ok);
}

/* The log density and partials from the inputs' current values (em_lp_compute_fn): a
 * parameter, the value or the log density out of its domain is explained by glm_explain. */
static int glm_compute(em_tape *t, em_node *o, em_error *e) {
    glm_aux *a = o->aux;
    const em_dist *d = &a->dist;
    glm_kind kind = a->kind;
    if (glm_check(d, kind, em_node_get(t, d->p[0])->rows == 0, e) != EM_OK) return 0;
    if (kind >= GLM_NB2) {
        int ok = kind == GLM_NB2 ? glm1_pass_nb2(t, o, a) : kind == GLM_GAMMA ? glm1_pass_gamma(t, o, a)
                                                                             : glm1_pass_ordered(t, o, a);
        if (!ok) glm_explain(t, o, e);
        return ok;
    }
    const em_node *yn = em_node_get(t, (em_var){o->in[0]}), *Xn = em_node_get(t, d->p[0]);
    const double *y = yn->val;
    size_t n = Xn->rows, sy = yn->n == 1 ? 0 : 1;
    double lp = 0.0;
    int ok = 1;
    if (a->gbeta && kind == GLM_BERNOULLI) {
        memset(a->gbeta, 0, Xn->cols * sizeof(double));
        const em_node *al = em_node_get(t, d->p[1]);
        lp = bern_glm_one_pass(Xn->val, a->Xt, n, Xn->cols, y, sy, al->val, al->n == 1 ? 0 : 1, d->data,
                               em_node_get(t, d->p[2])->val, a->gbeta, al->n == 1 ? NULL : a->r, &a->sum_res, &ok);
        a->inv_s2 = 1.0; /* glm_backward scales the accumulated gradient by it */
    } else if (a->gbeta) {
        size_t p = Xn->cols;
        double s = em_node_get(t, d->p[3])->val[0], is = 1.0 / s;
        memset(a->gbeta, 0, p * sizeof(double));
        if (a->ym) { /* (y - offset) - (α + x·β): the offset folded into the data once */
            y = a->ym;
            sy = 1;
        }
        const em_node *al = em_node_get(t, d->p[1]);
        double ss = normal_glm_one_pass(Xn->val, a->Xt, n, p, y, sy, al->val, al->n == 1 ? 0 : 1,
                                        em_node_get(t, d->p[2])->val, a->gbeta, al->n == 1 ? NULL : a->r,
                                        &a->sum_res);
        ok = isfinite(ss) && isfinite(a->sum_res);
        a->inv_s2 = is * is;
        a->dsig_sum = ss * a->inv_s2 * is - (double)n * is;
        lp = -0.5 * ss * a->inv_s2 - (double)n * (log(s) + EM_LOG_SQRT_2PI);
    } else {
        /* eta doubles as r: each element is read once, then overwritten with ∂lp/∂η */
        double *r = a->r;
        glm_eta(t, d, r);
        if (kind == GLM_NORMAL) {
            const em_node *sg = em_node_get(t, d->p[3]);
            if (sg->n == 1) {
                double s = sg->val[0], is = 1.0 / s, is2 = is * is, ss = 0.0;
                for (size_t i = 0; i < n; i++) {
                    double res = y[i * sy] - r[i];
                    ok &= isfinite(res);
                    ss += res * res;
                    r[i] = res * is2;
                }
                lp = -0.5 * ss * is2 - (double)n * (log(s) + EM_LOG_SQRT_2PI);
                a->dsig_sum = ss * is2 * is - (double)n * is;
            } else {
                for (size_t i = 0; i < n; i++) {
                    double s = sg->val[i], is = 1.0 / s, res = y[i * sy] - r[i], z = res * is;
                    ok &= isfinite(res);
                    lp += -0.5 * z * z - log(s) - EM_LOG_SQRT_2PI;
                    r[i] = z * is;
                    if (a->dsigma) a->dsigma[i] = (z * z - 1.0) * is;
                }
            }
            if (a->dy)
                for (size_t i = 0; i < n; i++) a->dy[i] = -r[i];
        } else if (kind == GLM_BERNOULLI) {
            lp = bern_logit_rows(y, sy, r, n, &ok);
        } else {
            for (size_t i = 0; i < n; i++) {
                double yi = y[i * sy], l = r[i], el = exp(l);
                ok &= em_pk_ok(EM_PK_COUNT, yi, 0, 0, 0) & isfinite(l);
                lp += yi * l - el - em_math_lgamma(yi + 1.0);
                r[i] = yi - el;
            }
        }
    }
    if (!ok || !isfinite(lp)) {
        glm_explain(t, o, e);
        return 0;
    }
    o->val[0] = lp;
    return 1;
}

/* Why glm_compute failed: a bad parameter, a bad y, or a non-finite linear predictor (X or β
 * overflowing), naming the row. */
static void glm_explain(em_tape *t, const em_node *o, em_error *e) {
    const glm_aux *a = o->aux;
    const em_dist *d = &a->dist;
    glm_kind kind = a->kind;
    const char *nm = glm_name(kind);
    if (glm_check(d, kind, 1, e) != EM_OK) return;
    const em_node *yn = em_node_get(t, (em_var){o->in[0]});
    size_t n = em_node_get(t, d->p[0])->rows, sy = yn->n == 1 ? 0 : 1;
    double *r = a->eta;
    glm_eta(t, d, r);
    for (size_t i = 0; i < n; i++) {
        double yi = yn->val[i * sy];
        double K1 = kind == GLM_ORDERED ? (double)em_node_get(t, d->p[3])->n : 0.0;
        int yok = kind == GLM_NORMAL      ? isfinite(yi)
                  : kind == GLM_BERNOULLI ? (yi == 0.0 || yi == 1.0)
                  : kind == GLM_GAMMA     ? (yi > 0.0 && yi < INFINITY)
                  : kind == GLM_ORDERED   ? (yi >= 0.0 && yi <= K1 && yi == floor(yi))
                                          : em_pk_ok(EM_PK_COUNT, yi, 0, 0, 0);
        if (!yok) {
            if (kind == GLM_ORDERED)
                em_error_set(e, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support {0, ..., %g}", nm, i, yi, K1);
            else
                em_error_set(e, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support %s", nm, i, yi,
                             kind == GLM_NORMAL      ? "(-inf, inf)"
                             : kind == GLM_BERNOULLI ? "{0, 1}"
                             : kind == GLM_GAMMA     ? "(0, inf)"
                                                     : "{0, 1, 2, ...}");
            return;
        }
        if (!isfinite(r[i]) || (kind == GLM_POISSON && !isfinite(exp(r[i])))) {
            em_error_set(e, EM_ERR_DOMAIN, "%s: linear predictor[%zu] = %g is not finite (check row %zu of X and beta)",
                         nm, i, r[i], i);
            return;
        }
    }
    em_error_set(e, EM_ERR_DOMAIN, "%s: log density is not finite", nm);
}

static void glm_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, glm_compute); }

/* The negative binomial's terms of y alone, made once per tape (y is data): Σ log y_i!, and,
 * when the counts are small integers (at most GLM_HIST_MAX, the usual case), the histogram of
 * their distinct values, which lets glm1_pass sum lgamma(y + φ) and ψ(y + φ) once per value.
 * Values that are not counts are left to the pass, which rejects them. */
enum { GLM_HIST_MAX = 4096 };
static em_status glm_count_histogram(glm_aux *a, const em_node *y, size_t n, em_arena *ar) {
    size_t ymax = 0;
    int small = 1;
    for (size_t i = 0; i < n; i++) {
        double v = y->val[y->n == 1 ? 0 : i];
        if (!(v >= 0.0 && v <= GLM_HIST_MAX && v == floor(v))) {
            small = 0;
            break;
        }
        if ((size_t)v > ymax) ymax = (size_t)v;
    }
    if (!small) {
        for (size_t i = 0; i < n; i++) a->ysum += em_math_lgamma(y->val[y->n == 1 ? 0 : i] + 1.0);
        return EM_OK;
    }
    size_t *cnt = calloc(ymax + 1, sizeof *cnt);
    if (!cnt) return EM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) cnt[(size_t)y->val[y->n == 1 ? 0 : i]]++;
    size_t m = 0;
    for (size_t v = 0; v <= ymax; v++) m += cnt[v] > 0;
    a->hist = em_arena_alloc(ar, 2 * m * sizeof(double));
    if (!a->hist) {
        free(cnt);
        return EM_ERR_NOMEM;
    }
    for (size_t v = 0; v <= ymax; v++)
        if (cnt[v]) {
            a->hist[2 * a->nhist] = (double)v;
            a->hist[2 * a->nhist + 1] = (double)cnt[v];
            a->nhist++;
            a->ysum += (double)cnt[v] * em_math_lgamma((double)v + 1.0);
        }
    free(cnt);
    return EM_OK;
}

static em_var glm_lp(const em_dist *d, em_var value, glm_kind kind) {
    em_tape *t = d->tape;
    const char *nm = glm_name(kind);
    size_t n = em_rows(t, d->p[0]), ny = em_len_(t, value);
    if (!(ny == n || ny == 1))
        return em_tape_fail(t, EM_ERR_SHAPE, "%s: value has length %zu, X has %zu rows", nm, ny, n);
    em_var in[5] = {value, d->p[0], d->p[1], d->p[2], d->p[3]}, out;
    int nin = kind == GLM_BERNOULLI || kind == GLM_POISSON ? 4 : 5;
    if (kind >= GLM_NB2 && em_node_get(t, value)->adj)
        return em_tape_fail(t, EM_ERR_ARG, "%s: the value must be data (it has no gradient)", nm);
    em_node *o = em_node_new(t, 1, 1, in, nin, kind >= GLM_NB2 ? glm1_backward : glm_backward, &out);
    if (!o) return EM_VAR_INVALID;
    em_arena *ar = em_tape_arena(t);
    glm_aux *a = em_arena_calloc(ar, sizeof *a);
    double *eta = em_arena_alloc(ar, n * sizeof(double));
    if (!a || !eta) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
    a->dist = *d;
    a->kind = kind;
    a->eta = eta;
    if (kind >= GLM_NB2) {
        const em_node *X = em_node_get(t, d->p[0]), *al = em_node_get(t, d->p[1]), *pn = em_node_get(t, d->p[3]);
        const em_node *y = em_node_get(t, value);
        int grad = o->adj != NULL;
        if (grad && em_node_get(t, d->p[2])->adj && !(a->gbeta = em_arena_alloc(ar, X->cols * sizeof(double))))
            return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        if (grad && ((al->adj && al->n > 1) || X->adj)) a->r = eta;
        if (grad && pn->adj && kind == GLM_ORDERED && !(a->dcuts = em_arena_alloc(ar, pn->n * sizeof(double))))
            return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        if (kind == GLM_ORDERED && !(a->gap = em_arena_alloc(ar, EM_ORD_GAP * (pn->n + 1) * sizeof(double))))
            return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        if (grad && pn->adj && kind != GLM_ORDERED && pn->n > 1 && !(a->dsigma = em_arena_alloc(ar, n * sizeof(double))))
            return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        if (kind == GLM_NB2 && glm_count_histogram(a, y, n, ar) != EM_OK)
            return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        if (kind == GLM_GAMMA)
            for (size_t i = 0; i < n; i++) a->ylog += log(y->val[y->n == 1 ? 0 : i]);
        a->y_inside = 1;
        for (size_t i = 0; i < n; i++) {
            double v = y->val[y->n == 1 ? 0 : i];
            a->y_inside &= kind == GLM_NB2     ? em_pk_ok(EM_PK_COUNT, v, 0, 0, 0)
                           : kind == GLM_GAMMA ? v > 0.0 && v < INFINITY
                                               : v >= 0.0 && v <= (double)pn->n && v == floor(v);
        }
    } else if (glm_one_pass_layout(t, o, kind)) {
        const em_node *X = em_node_get(t, d->p[0]);
        size_t p = X->cols;
        a->gbeta = em_arena_alloc(ar, p * sizeof(double));
        if (!a->gbeta) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        if (em_node_get(t, d->p[1])->n > 1) a->r = eta; /* one α per row: its residuals */
        if (d->data && kind == GLM_NORMAL) { /* y is constant here, as the offset is */
            const em_node *y = em_node_get(t, value);
            if (!(a->ym = em_arena_alloc(ar, n * sizeof(double))))
                return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
            for (size_t i = 0; i < n; i++) a->ym[i] = y->val[y->n == 1 ? 0 : i] - d->data[i];
        }
        if (p <= GLM_COLS_MAX) { /* X has no adjoint: it is data, fixed for the tape's life */
            if (!(a->Xt = em_arena_alloc(ar, n * p * sizeof(double))))
                return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < p; j++) a->Xt[j * n + i] = X->val[i * p + j];
        }
    } else {
        a->r = eta;
        if (kind == GLM_NORMAL && o->adj) {
            const em_node *sg = em_node_get(t, d->p[3]);
            if (sg->adj && sg->n > 1 && !(a->dsigma = em_arena_alloc(ar, n * sizeof(double))))
                return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
            if (em_node_get(t, value)->adj && !(a->dy = em_arena_alloc(ar, n * sizeof(double))))
                return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", nm);
        }
    }
    o->aux = a;
    return em_dist_node_finish(t, o, out, glm_forward, glm_compute);
}

static em_var normal_glm_lp(const em_dist *d, em_var v) { return glm_lp(d, v, GLM_NORMAL); }
static em_var bern_glm_lp(const em_dist *d, em_var v) { return glm_lp(d, v, GLM_BERNOULLI); }
static em_var pois_glm_lp(const em_dist *d, em_var v) { return glm_lp(d, v, GLM_POISSON); }
static em_var nb2_glm_lp(const em_dist *d, em_var v) { return glm_lp(d, v, GLM_NB2); }
static em_var gamma_glm_lp(const em_dist *d, em_var v) { return glm_lp(d, v, GLM_GAMMA); }
static em_var ordered_glm_lp(const em_dist *d, em_var v) { return glm_lp(d, v, GLM_ORDERED); }

static glm_kind kind_of(const em_dist *d);

/* sample / mean / variance: compute η on doubles, then per row */
static em_status glm_eval(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err, int what) {
    glm_kind kind = kind_of(d);
    em_status st = glm_check(d, kind, 1, err);
    if (st != EM_OK) return st;
    size_t rows = em_rows(d->tape, d->p[0]);
    if (n % rows) return em_error_set(err, EM_ERR_SHAPE, "%s: n = %zu is not a multiple of the %zu rows of X", glm_name(kind), n, rows);
    double *eta = malloc(rows * sizeof *eta);
    if (!eta) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", glm_name(kind));
    glm_eta(d->tape, d, eta);
    for (size_t i = 0; i < n; i++) {
        double l = eta[i % rows], v;
        if (kind == GLM_NORMAL) {
            double s = em_pv(d->tape, d->p[3], i % rows);
            v = what == 0 ? l + gsl_ran_gaussian_ziggurat(r, s) : what == 1 ? l : s * s;
        } else if (kind == GLM_BERNOULLI) {
            double p = l >= 0 ? 1.0 / (1.0 + exp(-l)) : exp(l) / (1.0 + exp(l));
            v = what == 0 ? (double)(gsl_rng_uniform(r) < p) : what == 1 ? p : p * (1.0 - p);
        } else if (kind == GLM_NB2 || kind == GLM_GAMMA) {
            double m = exp(l), v2 = em_pv(d->tape, d->p[3], i % rows);
            if (what == 0 && kind == GLM_NB2 && !(m <= 1e9)) {
                free(eta);
                return em_error_set(err, EM_ERR_DOMAIN, "%s sample: mean %g (row %zu) is too large to sample",
                                    glm_name(kind), m, i % rows);
            }
            if (kind == GLM_NB2)
                v = what == 0 ? (double)gsl_ran_negative_binomial(r, v2 / (m + v2), v2) : what == 1 ? m : m + m * m / v2;
            else
                v = what == 0 ? gsl_ran_gamma(r, v2, m / v2) : what == 1 ? m : m * m / v2;
        } else if (kind == GLM_ORDERED) {
            /* draw: the latent l + logistic noise, counted against the cutpoints; moments from
             * P(y > k) = σ(l - c_k): E y = Σ_k P(y > k), E y² = Σ_k (2k + 1)·P(y > k) */
            const em_node *c = em_node_get(d->tape, d->p[3]);
            if (what == 0) {
                double z = l + gsl_ran_logistic(r, 1.0);
                size_t k = 0;
                while (k < c->n && c->val[k] < z) k++;
                v = (double)k;
            } else {
                double m = 0.0, s2 = 0.0;
                for (size_t k = 0; k < c->n; k++) {
                    double q = em_math_sigmoid(l - c->val[k]);
                    m += q;
                    s2 += (2.0 * (double)k + 1.0) * q;
                }
                v = what == 1 ? m : s2 - m * m;
            }
        } else {
            double m = exp(l);
            if (what == 0 && !(m <= 1e9)) { /* GSL's sampler would overflow an unsigned int */
                free(eta);
                return em_error_set(err, EM_ERR_DOMAIN, "PoissonLogGLM sample: mean %g (row %zu) is too large to sample",
                                    m, i % rows);
            }
            v = what == 0 ? (double)gsl_ran_poisson(r, m) : m;
        }
        out[i] = v;
    }
    free(eta);
    return EM_OK;
}
static em_status glm_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) { return glm_eval(d, r, out, n, err, 0); }
static em_status glm_mean(const em_dist *d, double *out, size_t n, em_error *err) { return glm_eval(d, NULL, out, n, err, 1); }
static em_status glm_var(const em_dist *d, double *out, size_t n, em_error *err) { return glm_eval(d, NULL, out, n, err, 2); }
/* log p(y_i | η_i) of each row: Stan's log_lik of a GLM, with the constants the fused node
 * carries (-log σ - log √(2π) for the normal, -log y! for the Poisson). */
em_status em_glm_log_prob_pointwise(const em_dist *d, const double *y, size_t n, double *out, em_error *err) {
    glm_kind kind = kind_of(d);
    em_status st = glm_check(d, kind, 1, err);
    if (st != EM_OK) return st;
    size_t rows = em_rows(d->tape, d->p[0]);
    if (n != rows)
        return em_error_set(err, EM_ERR_SHAPE, "%s: %zu values for the %zu rows of X", glm_name(kind), n, rows);
    if (kind >= GLM_NB2) {
        /* the unfused family on η: the same density, element by element, from the one place
         * that defines it (its pointwise node, made and dropped again by the call) */
        double *eta = malloc(n * sizeof *eta);
        if (!eta) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", glm_name(kind));
        glm_eta(d->tape, d, eta);
        em_tape *t = d->tape;
        size_t mark = em_tape_size(t);
        em_arena_mark am = em_arena_mark_get(em_tape_arena(t));
        em_var e = em_const(t, eta, n), q = d->p[3];
        em_dist u = kind == GLM_NB2     ? em_dist_neg_binomial2_log(t, e, q)
                    : kind == GLM_GAMMA ? em_dist_gamma(t, q, em_op_mul(t, q, em_op_exp(t, em_op_neg(t, e))))
                                        : em_dist_ordered_logistic(t, e, q);
        st = em_dist_log_prob_pointwise(&u, y, n, out, err);
        t->count = mark;
        em_arena_rewind(em_tape_arena(t), am);
        free(eta);
        return st;
    }
    glm_eta(d->tape, d, out);
    /* a scalar sigma (the usual case): its log once, not per row */
    int sigma_vec = kind == GLM_NORMAL && em_len(d->tape, d->p[3]) > 1;
    double s0 = kind == GLM_NORMAL ? em_pv(d->tape, d->p[3], 0) : 1.0, is0 = 1.0 / s0;
    double c0 = -log(s0) - 0.91893853320467274178;
    for (size_t i = 0; i < n; i++) {
        double l = out[i], v;
        if (kind == GLM_NORMAL && !sigma_vec) {
            double z = (y[i] - l) * is0;
            v = -0.5 * z * z + c0;
        } else if (kind == GLM_NORMAL) {
            double s = em_pv(d->tape, d->p[3], i), z = (y[i] - l) / s;
            v = -0.5 * z * z - log(s) - 0.91893853320467274178;
        } else if (kind == GLM_BERNOULLI) {
            /* log σ(η) or log(1 - σ(η)) without overflow: -log1p(exp(-|η|)) - max(∓η, 0) */
            double a = y[i] != 0.0 ? l : -l;
            v = -log1p(exp(-fabs(a))) - (a < 0 ? -a : 0.0);
        } else {
            v = y[i] * l - exp(l) - lgamma(y[i] + 1.0);
        }
        if (!(fabs(v) < INFINITY) && !(v == -INFINITY))
            return em_error_set(err, EM_ERR_NONFINITE, "%s: log density of row %zu is %g", glm_name(kind), i, v);
        out[i] = v;
    }
    return EM_OK;
}
static size_t ev_one(const em_dist *d) { (void)d; return 1; }
static em_support sup_real(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_REAL, -INFINITY, INFINITY}; }
static em_support sup_bool(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_BOOLEAN, 0.0, 1.0}; }
static em_support sup_count(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_NONNEG_INT, 0.0, INFINITY}; }

const em_dist_ops em_ops_normal_id_glm = {"NormalIdGLM", 4, {"X", "alpha", "beta", "sigma"}, 0, 0, ev_one, sup_real,
                                          normal_glm_lp, glm_sample, NULL, glm_mean, glm_var, NULL, NULL, NULL};
const em_dist_ops em_ops_bernoulli_logit_glm = {"BernoulliLogitGLM", 3, {"X", "alpha", "beta"}, 1, 0, ev_one, sup_bool,
                                                bern_glm_lp, glm_sample, NULL, glm_mean, glm_var, NULL, NULL, NULL};
const em_dist_ops em_ops_poisson_log_glm = {"PoissonLogGLM", 3, {"X", "alpha", "beta"}, 1, 0, ev_one, sup_count,
                                            pois_glm_lp, glm_sample, NULL, glm_mean, glm_var, NULL, NULL, NULL};

static em_support ordered_glm_support(const em_dist *d) {
    return (em_support){EM_SUPPORT_CATEGORY, 0.0, (double)em_len(d->tape, d->p[3])};
}
const em_dist_ops em_ops_neg_binomial2_log_glm = {"NegBinomial2LogGLM", 4, {"X", "alpha", "beta", "phi"}, 1, 0, ev_one,
                                                  sup_count, nb2_glm_lp, glm_sample, NULL, glm_mean, glm_var,
                                                  NULL, NULL, NULL};
static em_support sup_pos(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_POSITIVE, 0.0, INFINITY}; }
const em_dist_ops em_ops_gamma_log_glm = {"GammaLogGLM", 4, {"X", "alpha", "beta", "shape"}, 0, 0, ev_one, sup_pos,
                                          gamma_glm_lp, glm_sample, NULL, glm_mean, glm_var, NULL, NULL, NULL};
const em_dist_ops em_ops_ordered_logistic_glm = {"OrderedLogisticGLM", 4, {"X", "alpha", "beta", "cutpoints"}, 1, 0,
                                                 ev_one, ordered_glm_support, ordered_glm_lp, glm_sample, NULL,
                                                 glm_mean, glm_var, NULL, NULL, NULL};

int em_dist_is_glm(const em_dist *d) {
    const em_dist_ops *o = d->ops;
    return o == &em_ops_normal_id_glm || o == &em_ops_bernoulli_logit_glm || o == &em_ops_poisson_log_glm ||
           o == &em_ops_neg_binomial2_log_glm || o == &em_ops_gamma_log_glm || o == &em_ops_ordered_logistic_glm;
}

static glm_kind kind_of(const em_dist *d) {
    const em_dist_ops *ops[] = {&em_ops_normal_id_glm, &em_ops_bernoulli_logit_glm, &em_ops_poisson_log_glm,
                                &em_ops_neg_binomial2_log_glm, &em_ops_gamma_log_glm, &em_ops_ordered_logistic_glm};
    glm_kind k = GLM_NORMAL;
    while (ops[k] != d->ops) k++;
    return k;
}

static em_dist glm_make(em_tape *t, const em_dist_ops *ops, em_var X, em_var alpha, em_var beta, em_var sigma,
                        const double *offset) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.tape = t;
    for (int k = 0; k < 4; k++) d.p[k] = EM_VAR_INVALID;
    em_var p[4] = {X, alpha, beta, sigma};
    int np = ops == &em_ops_bernoulli_logit_glm || ops == &em_ops_poisson_log_glm ? 3 : 4;
    int cuts = ops == &em_ops_ordered_logistic_glm;
    if (!t || !em_inputs_ok(p, np)) return d;
    size_t n = em_rows(t, X), c = em_cols(t, X);
    const char *nm = ops->name;
    if (em_len(t, beta) != c) {
        em_tape_fail(t, EM_ERR_SHAPE, "%s: beta has length %zu, X has %zu columns", nm, em_len(t, beta), c);
        return d;
    }
    if (!(em_len(t, alpha) == 1 || em_len(t, alpha) == n)) {
        em_tape_fail(t, EM_ERR_SHAPE, "%s: alpha has length %zu, need 1 or %zu (rows of X)", nm, em_len(t, alpha), n);
        return d;
    }
    if (np == 4 && !cuts && !(em_len(t, sigma) == 1 || em_len(t, sigma) == n)) {
        em_tape_fail(t, EM_ERR_SHAPE, "%s: %s has length %zu, need 1 or %zu (rows of X)", nm, ops->param_names[3],
                     em_len(t, sigma), n);
        return d;
    }
    if (n > 2147483647u || c > 2147483647u) {
        em_tape_fail(t, EM_ERR_SHAPE, "%s: X is too large for BLAS (%zux%zu)", nm, n, c);
        return d;
    }
    for (int k = 0; k < np; k++) d.p[k] = p[k];
    d.ops = ops;
    d.batch_len = n;
    d.data = offset;
    d.data_len = offset ? n : 0;
    return d;
}

em_dist em_dist_normal_id_glm(em_tape *t, em_var X, em_var alpha, em_var beta, em_var sigma) {
    return glm_make(t, &em_ops_normal_id_glm, X, alpha, beta, sigma, NULL);
}
em_dist em_dist_bernoulli_logit_glm(em_tape *t, em_var X, em_var alpha, em_var beta) {
    return glm_make(t, &em_ops_bernoulli_logit_glm, X, alpha, beta, alpha, NULL);
}
em_dist em_dist_poisson_log_glm(em_tape *t, em_var X, em_var alpha, em_var beta) {
    return glm_make(t, &em_ops_poisson_log_glm, X, alpha, beta, alpha, NULL);
}
em_dist em_dist_normal_id_glm_offset(em_tape *t, em_var X, em_var alpha, em_var beta, em_var sigma, const double *offset) {
    return glm_make(t, &em_ops_normal_id_glm, X, alpha, beta, sigma, offset);
}
em_dist em_dist_bernoulli_logit_glm_offset(em_tape *t, em_var X, em_var alpha, em_var beta, const double *offset) {
    return glm_make(t, &em_ops_bernoulli_logit_glm, X, alpha, beta, alpha, offset);
}
em_dist em_dist_poisson_log_glm_offset(em_tape *t, em_var X, em_var alpha, em_var beta, const double *offset) {
    return glm_make(t, &em_ops_poisson_log_glm, X, alpha, beta, alpha, offset);
}
em_dist em_dist_neg_binomial2_log_glm(em_tape *t, em_var X, em_var alpha, em_var beta, em_var phi, const double *offset) {
    return glm_make(t, &em_ops_neg_binomial2_log_glm, X, alpha, beta, phi, offset);
}
em_dist em_dist_gamma_log_glm(em_tape *t, em_var X, em_var alpha, em_var beta, em_var shape, const double *offset) {
    return glm_make(t, &em_ops_gamma_log_glm, X, alpha, beta, shape, offset);
}
/* the cutpoints absorb the intercept: α is a constant 0 */
em_dist em_dist_ordered_logistic_glm(em_tape *t, em_var X, em_var beta, em_var cutpoints, const double *offset) {
    return glm_make(t, &em_ops_ordered_logistic_glm, X, t ? em_scalar(t, 0.0) : EM_VAR_INVALID, beta, cutpoints, offset);
}
