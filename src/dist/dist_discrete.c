/* dist_discrete.c — discrete families: Bernoulli (probability and logit), Binomial (logit),
 * Poisson (rate and log rate), Stan's neg_binomial_2 and Categorical (logits). Values are
 * stored as doubles holding integers; log densities have gradients with respect to the
 * parameters only. The logit and log parameterisations are written so that large |logit|
 * neither overflows nor loses the small probability (softplus, Stan's *_logit forms). */
#include "internal/mathx.h"
#include "internal/dist_impl.h"

#include <stdlib.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_psi.h>

#define P(d, k, i) em_pv((d)->tape, (d)->p[k], (i))
#define NEED(k) (need & (1u << (k)))

static size_t ev_one(const em_dist *d) { (void)d; return 1; }
static em_support sup_bool(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_BOOLEAN, 0.0, 1.0}; }
static em_support sup_count(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_NONNEG_INT, 0.0, INFINITY}; }


#define FAMILY_OPS(ops, name, pname, support, lp, smp, mean, var, pw) \
    const em_dist_ops ops = {name, 1, {pname}, 1, 0, ev_one, support, lp, smp, NULL, mean, var, NULL, NULL, pw};

/* ---- Bernoulli(probs) ----------------------------------------------------------------------- */

static const uv_desc bernoulli_desc = {"Bernoulli", 1, {"probs"}, {EM_PK_PROB}, EM_PK_BOOL, "{0, 1}", 0u, 0};
static inline double bernoulli_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    /* y·log p + (1-y)·log(1-p), with 0·log 0 = 0 so that p = 0 or 1 is exact */
    double q = p[0];
    if (y != 0.0) {
        dp[0] = 1.0 / q;
        return log(q);
    }
    dp[0] = -1.0 / (1.0 - q);
    return log1p(-q);
}
LOG_PROB_PW_FN(bernoulli_lp, bernoulli_desc, uv_no_norm, bernoulli_kern)
SAMPLE_FN(bernoulli_sample, bernoulli_desc, (double)gsl_ran_bernoulli(r, P(d, 0, i)))
MOMENT_FN(bernoulli_mean, bernoulli_desc, P(d, 0, i))
MOMENT_FN(bernoulli_var, bernoulli_desc, P(d, 0, i) * (1.0 - P(d, 0, i)))
POINTWISE_FN(bernoulli_pw, bernoulli_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_bernoulli, "Bernoulli", "probs", sup_bool, bernoulli_lp, bernoulli_sample, bernoulli_mean,
           bernoulli_var, bernoulli_pw)
em_dist em_dist_bernoulli(em_tape *t, em_var probs) { return em_dist_make(t, &em_ops_bernoulli, &probs, 1); }

/* ---- BernoulliLogit(logits) ----------------------------------------------------------------- */

static const uv_desc bernoulli_logit_desc = {"BernoulliLogit", 1, {"logits"}, {EM_PK_REAL}, EM_PK_BOOL, "{0, 1}", 0u, 0};
static inline double bernoulli_logit_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    /* log σ(l) = -softplus(-l) for y = 1, log σ(-l) = -softplus(l) for y = 0; the partial is
     * y - σ(l). One exp and one log1p per element. */
    double l = p[0], e = exp(-fabs(l)), lg = log1p(e), s = l >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    dp[0] = y - s;
    /* y·l - softplus(l) with the linear part first: exact cancellation when y = 1, l large */
    return (y * l - (l > 0 ? l : 0.0)) - lg;
}
LOG_PROB_PW_FN(bernoulli_logit_lp, bernoulli_logit_desc, uv_no_norm, bernoulli_logit_kern)
SAMPLE_FN(bernoulli_logit_sample, bernoulli_logit_desc, (double)(gsl_rng_uniform(r) < em_math_sigmoid(P(d, 0, i))))
MOMENT_FN(bernoulli_logit_mean, bernoulli_logit_desc, em_math_sigmoid(P(d, 0, i)))
MOMENT_FN(bernoulli_logit_var, bernoulli_logit_desc, em_math_sigmoid(P(d, 0, i)) * em_math_sigmoid(-P(d, 0, i)))
POINTWISE_FN(bernoulli_logit_pw, bernoulli_logit_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_bernoulli_logit, "BernoulliLogit", "logits", sup_bool, bernoulli_logit_lp,
           bernoulli_logit_sample, bernoulli_logit_mean, bernoulli_logit_var, bernoulli_logit_pw)
em_dist em_dist_bernoulli_logit(em_tape *t, em_var logits) {
    return em_dist_make(t, &em_ops_bernoulli_logit, &logits, 1);
}

/* ---- BinomialLogit(total_count (data), logits) ---------------------------------------------- */

static const uv_desc binomial_logit_desc = {"BinomialLogit", 1, {"logits"}, {EM_PK_REAL}, EM_PK_COUNT_N,
                                            "{0, ..., total_count}", 0u, 0};
/* BinomialLogit has its own loop: the binomial coefficient needs the total count N_i, which
 * the shared driver does not pass to its kernels. */
typedef struct {
    double *part; /* dlp/dlogits: per element for vector logits, summed for scalar ones; NULL when not needed */
    size_t n;     /* broadcast length */
    em_dist dist; /* what a replay needs (total_count, the message) */
} binomial_aux;

static void binomial_backward(em_tape *t, em_node *self) {
    em_node *l = em_node_get(t, (em_var){self->in[1]});
    const binomial_aux *a = self->aux;
    if (!l->adj || !a->part) return;
    const double *part = a->part;
    double g = self->adj[0];
    em_adj_axpy(l, g, part); /* part has l->n elements, 1 for a scalar logit */
}

/* Why a logit or a count is out of its domain: the first bad element, named. */
static void binomial_explain(em_tape *t, const em_node *o, em_error *e) {
    const binomial_aux *a = o->aux;
    const em_node *yv = em_node_get(t, (em_var){o->in[0]});
    if (uv_diagnose(&binomial_logit_desc, &a->dist, yv->val, yv->n, e) == EM_OK)
        em_error_set(e, EM_ERR_DOMAIN, "BinomialLogit: parameters or value outside the domain");
}

/* The log density and its partials from the inputs' current values (em_lp_compute_fn). */
static int binomial_compute(em_tape *t, em_node *o, em_error *e) {
    binomial_aux *a = o->aux;
    const em_dist *d = &a->dist;
    const em_node *yv = em_node_get(t, (em_var){o->in[0]}), *lv = em_node_get(t, (em_var){o->in[1]});
    size_t n = a->n, sy = yv->n == 1 ? 0 : 1, sl = lv->n == 1 ? 0 : 1, sN = d->data_len == 1 ? 0 : 1;
    double *part = a->part;
    if (part) memset(part, 0, (sl ? n : 1) * sizeof(double)); /* accumulated below */
    double lp = 0.0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double y = yv->val[i * sy], l = lv->val[i * sl], N = d->data[i * sN];
        ok &= em_pk_ok(EM_PK_REAL, l, 0, 0, 0) & em_pk_ok(EM_PK_COUNT_N, y, 0, 0, N);
        /* log C(N, y) + y·l - N·softplus(l); d/dl = y - N σ(l) */
        double ex = exp(-fabs(l)), s = l >= 0 ? 1.0 / (1.0 + ex) : ex / (1.0 + ex);
        /* y·l - N·softplus(l), the linear parts combined first (exact for y = N, l large) */
        double lin = y * l - N * (l > 0 ? l : 0.0);
        lp += em_math_lgamma(N + 1.0) - em_math_lgamma(y + 1.0) - em_math_lgamma(N - y + 1.0) + (lin - N * log1p(ex));
        if (part) part[i * sl] += y - N * s;
    }
    if (!ok) {
        binomial_explain(t, o, e);
        return 0;
    }
    o->val[0] = lp;
    return 1;
}

static void binomial_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, binomial_compute); }

static em_var binomial_logit_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    em_var in[2] = {value, d->p[0]};
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    size_t n = em_dist_common_len(t, "BinomialLogit", in, 2);
    if (!n) return EM_VAR_INVALID;
    if (!(d->data_len == 1 || d->data_len == n))
        return em_tape_fail(t, EM_ERR_SHAPE, "BinomialLogit: total_count has length %zu, value has %zu", d->data_len, n);
    em_var out;
    em_node *o = em_node_new(t, 1, 1, in, 2, binomial_backward, &out);
    if (!o) return EM_VAR_INVALID;
    em_arena *ar = em_tape_arena(t);
    binomial_aux *a = em_arena_calloc(ar, sizeof *a);
    if (!a) return em_tape_fail(t, EM_ERR_NOMEM, "BinomialLogit: out of memory");
    a->n = n;
    a->dist = *d;
    if (o->adj && em_node_get(t, d->p[0])->adj) {
        a->part = em_arena_alloc(ar, (em_len_(t, d->p[0]) == 1 ? 1 : n) * sizeof(double));
        if (!a->part) return em_tape_fail(t, EM_ERR_NOMEM, "BinomialLogit: out of memory");
    }
    o->aux = a;
    return em_dist_node_finish(t, o, out, binomial_forward, binomial_compute);
}
static em_support binomial_support(const em_dist *d) {
    double mx = 0;
    for (size_t i = 0; i < d->data_len; i++)
        if (d->data[i] > mx) mx = d->data[i];
    return (em_support){EM_SUPPORT_COUNT_N, 0.0, mx};
}
#define NTOT(d, i) ((d)->data[(d)->data_len == 1 ? 0 : (i) % (d)->data_len])
SAMPLE_FN(binomial_logit_sample, binomial_logit_desc,
          (double)gsl_ran_binomial(r, em_math_sigmoid(P(d, 0, i)), (unsigned)NTOT(d, i)))
MOMENT_FN(binomial_logit_mean, binomial_logit_desc, NTOT(d, i) * em_math_sigmoid(P(d, 0, i)))
MOMENT_FN(binomial_logit_var, binomial_logit_desc, NTOT(d, i) * em_math_sigmoid(P(d, 0, i)) * em_math_sigmoid(-P(d, 0, i)))
FAMILY_OPS(em_ops_binomial_logit, "BinomialLogit", "logits", binomial_support, binomial_logit_lp,
           binomial_logit_sample, binomial_logit_mean, binomial_logit_var, NULL)
em_dist em_dist_binomial_logit(em_tape *t, const double *total_count, size_t n, em_var logits) {
    em_dist d = em_dist_make(t, &em_ops_binomial_logit, &logits, 1);
    if (!d.ops) return d;
    if (!total_count || n == 0) {
        em_tape_fail(t, EM_ERR_ARG, "BinomialLogit: total_count is NULL or empty");
        d.ops = NULL;
        return d;
    }
    for (size_t i = 0; i < n; i++)
        if (!em_pk_ok(EM_PK_COUNT, total_count[i], 0, 0, 0) || total_count[i] > 4294967295.0) {
            em_tape_fail(t, EM_ERR_DOMAIN, "BinomialLogit: total_count[%zu] = %g must be a non-negative integer", i,
                         total_count[i]);
            d.ops = NULL;
            return d;
        }
    size_t nl = em_len(t, logits);
    if (!(n == 1 || nl == 1 || n == nl)) {
        em_tape_fail(t, EM_ERR_SHAPE, "BinomialLogit: total_count has length %zu, logits %zu", n, nl);
        d.ops = NULL;
        return d;
    }
    d.data = total_count;
    d.data_len = n;
    d.batch_len = n > nl ? n : nl;
    return d;
}

/* ---- Poisson(rate) and PoissonLog(log_rate) -------------------------------------------------- */

static const uv_desc poisson_desc = {"Poisson", 1, {"rate"}, {EM_PK_POS}, EM_PK_COUNT, "{0, 1, 2, ...}", 0u, 0};
static inline double poisson_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    double lam = p[0];
    dp[0] = y / lam - 1.0;
    return y * log(lam) - lam - em_math_lgamma(y + 1.0);
}
LOG_PROB_PW_FN(poisson_lp, poisson_desc, uv_no_norm, poisson_kern)
/* GSL's Poisson sampler keeps intermediate counts in an unsigned int: a mean beyond about
 * 4e9 would overflow it, so such draws are refused with an error rather than garbage. */
#define EM_MAX_POISSON_MEAN 1e9
static em_status count_draws(const uv_desc *desc, const em_dist *d, em_rng *r, double *out, size_t n,
                             em_error *err, int kind) {
    em_status st = uv_check_params(desc, d, err);
    if (st != EM_OK) return st;
    for (size_t i = 0; i < n; i++) {
        /* kind: 0 Poisson, 1 PoissonLog, 2 NegBinomial2, 3 NegBinomial2Log */
        double m = kind == 1 || kind == 3 ? exp(P(d, 0, i)) : P(d, 0, i);
        if (!(m <= EM_MAX_POISSON_MEAN))
            return em_error_set(err, EM_ERR_DOMAIN, "%s sample: mean %g (element %zu) is too large to sample (limit %g)",
                                desc->name, m, i % (d->batch_len ? d->batch_len : 1), EM_MAX_POISSON_MEAN);
        if (kind >= 2) {
            double phi = P(d, 1, i);
            out[i] = (double)gsl_ran_negative_binomial(r, phi / (m + phi), phi);
        } else {
            out[i] = (double)gsl_ran_poisson(r, m);
        }
    }
    return EM_OK;
}
static em_status poisson_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return count_draws(&poisson_desc, d, r, out, n, err, 0);
}
MOMENT_FN(poisson_mean, poisson_desc, P(d, 0, i))
MOMENT_FN(poisson_var, poisson_desc, P(d, 0, i))
POINTWISE_FN(poisson_pw, poisson_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_poisson, "Poisson", "rate", sup_count, poisson_lp, poisson_sample, poisson_mean, poisson_var, poisson_pw)
em_dist em_dist_poisson(em_tape *t, em_var rate) { return em_dist_make(t, &em_ops_poisson, &rate, 1); }

static const uv_desc poisson_log_desc = {"PoissonLog", 1, {"log_rate"}, {EM_PK_REAL}, EM_PK_COUNT, "{0, 1, 2, ...}",
                                         0u, 0};
static inline double poisson_log_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    double el = exp(p[0]);
    dp[0] = y - el;
    return y * p[0] - el - em_math_lgamma(y + 1.0);
}
LOG_PROB_PW_FN(poisson_log_lp, poisson_log_desc, uv_no_norm, poisson_log_kern)
static em_status poisson_log_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return count_draws(&poisson_log_desc, d, r, out, n, err, 1);
}
MOMENT_FN(poisson_log_mean, poisson_log_desc, exp(P(d, 0, i)))
MOMENT_FN(poisson_log_var, poisson_log_desc, exp(P(d, 0, i)))
POINTWISE_FN(poisson_log_pw, poisson_log_lp_pw, NULL, NULL)
FAMILY_OPS(em_ops_poisson_log, "PoissonLog", "log_rate", sup_count, poisson_log_lp, poisson_log_sample,
           poisson_log_mean, poisson_log_var, poisson_log_pw)
em_dist em_dist_poisson_log(em_tape *t, em_var log_rate) { return em_dist_make(t, &em_ops_poisson_log, &log_rate, 1); }

/* ---- NegBinomial2(mu, phi): Stan's neg_binomial_2, mean mu, variance mu + mu²/phi -------------
 * log p = log (φ)_y - log y! + y·log(μ/(μ + φ)) - φ·log1p(μ/φ), (φ)_y = Γ(y + φ)/Γ(φ) the
 * rising factorial (em_math_lpoch). Written as lgamma(y + φ) - lgamma(φ) + φ log φ - (y + φ)
 * log(μ + φ), the large terms cancel and the density is wrong from φ ≈ 1e8 on (at φ = 1e16 it
 * came out 0, a plateau above the Poisson limit the density tends to). */

static const uv_desc nb2_desc = {"NegBinomial2", 2, {"mu", "phi"}, {EM_PK_POS, EM_PK_POS}, EM_PK_COUNT,
                                 "{0, 1, 2, ...}", 0u, 0};
static inline double nb2_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    double mu = p[0], phi = p[1], s = mu + phi, ls = log(s);
    dp[0] = y / mu - (y + phi) / s;
    if (NEED(1)) dp[1] = em_math_dlpoch(phi, y) - log1p(mu / phi) + (mu - y) / s;
    return em_math_lpoch(phi, y) - em_math_lgamma(y + 1.0) + y * (log(mu) - ls) - phi * log1p(mu / phi);
}
LOG_PROB_PW_FN(nb2_lp, nb2_desc, uv_no_norm, nb2_kern)
/* GSL's negative binomial counts failures before n successes with success probability p:
 * n = phi, p = phi/(mu+phi) gives mean mu and variance mu + mu²/phi. */
static em_status nb2_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return count_draws(&nb2_desc, d, r, out, n, err, 2);
}
MOMENT_FN(nb2_mean, nb2_desc, P(d, 0, i))
MOMENT_FN(nb2_var, nb2_desc, P(d, 0, i) + P(d, 0, i) * P(d, 0, i) / P(d, 1, i))
POINTWISE_FN(nb2_pw, nb2_lp_pw, NULL, NULL)
const em_dist_ops em_ops_neg_binomial2 = {"NegBinomial2", 2, {"mu", "phi"}, 1, 0, ev_one, sup_count, nb2_lp,
                                          nb2_sample, NULL, nb2_mean, nb2_var, NULL, NULL, nb2_pw};
em_dist em_dist_neg_binomial2(em_tape *t, em_var mu, em_var phi) {
    em_var p[2] = {mu, phi};
    return em_dist_make(t, &em_ops_neg_binomial2, p, 2);
}

/* ---- NegBinomial2Log(eta, phi): Stan's neg_binomial_2_log, mean e^eta ------------------------------ */

/* In η = log μ: log (φ)_y - log y! + y·(η - L) - φ·softplus(η - log φ), L = log(e^η + φ) =
 * log φ + softplus(η - log φ), so that a large |η| neither overflows nor loses μ against φ and a
 * large φ does not cancel (NegBinomial2 above); ∂/∂η = y - (y + φ)·σ(η - log φ). */
static const uv_desc nb2_log_desc = {"NegBinomial2Log", 2, {"eta", "phi"}, {EM_PK_REAL, EM_PK_POS}, EM_PK_COUNT,
                                     "{0, 1, 2, ...}", 0u, 0};
static inline double nb2_log_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    double eta = p[0], phi = p[1], lphi = log(phi), sp = em_math_softplus(eta - lphi), w = em_math_sigmoid(eta - lphi);
    double L = lphi + sp;
    dp[0] = y - (y + phi) * w;
    if (NEED(1)) dp[1] = em_math_dlpoch(phi, y) - y * exp(-L) - sp + w;
    return em_math_lpoch(phi, y) - em_math_lgamma(y + 1.0) + y * (eta - L) - phi * sp;
}
LOG_PROB_PW_FN(nb2_log_lp, nb2_log_desc, uv_no_norm, nb2_log_kern)
static em_status nb2_log_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return count_draws(&nb2_log_desc, d, r, out, n, err, 3);
}
MOMENT_FN(nb2_log_mean, nb2_log_desc, exp(P(d, 0, i)))
MOMENT_FN(nb2_log_var, nb2_log_desc, exp(P(d, 0, i)) + exp(2.0 * P(d, 0, i)) / P(d, 1, i))
POINTWISE_FN(nb2_log_pw, nb2_log_lp_pw, NULL, NULL)
const em_dist_ops em_ops_neg_binomial2_log = {"NegBinomial2Log", 2, {"eta", "phi"}, 1, 0, ev_one, sup_count,
                                              nb2_log_lp, nb2_log_sample, NULL, nb2_log_mean, nb2_log_var, NULL,
                                              NULL, nb2_log_pw};
em_dist em_dist_neg_binomial2_log(em_tape *t, em_var eta, em_var phi) {
    em_var p[2] = {eta, phi};
    return em_dist_make(t, &em_ops_neg_binomial2_log, p, 2);
}

/* ---- zero-inflated and hurdle counts (brms's zero_inflated_* and hurdle_* families) ---------------
 * With θ the zero-inflation (hurdle) probability and b(y) the base count's log pmf:
 *   zero-inflated: log(θ + (1-θ)·e^{b(0)}) at 0 (a log_sum_exp), log(1-θ) + b(y) above;
 *   hurdle:        log θ at 0, log(1-θ) + b(y) - log(1 - e^{b(0)}) above.
 * base() gives b(y) and its partials in the base parameters p[0..nb-1]; θ is parameter nb. */

typedef double (*count_base_fn)(double y, const double *p, unsigned need, double *db);

static inline double pois_base(double y, const double *p, unsigned need, double *db) {
    double lam = p[0];
    db[0] = y / lam - 1.0;
    return y * log(lam) - lam - em_math_lgamma(y + 1.0);
}
static inline double nb2_base(double y, const double *p, unsigned need, double *db) {
    double dx = 0.0;
    db[1] = 0.0;
    return nb2_kern(y, p, need, &dx, db);
}

EM_ALWAYS_INLINE double zero_inflated(double y, const double *p, unsigned need, double *dp, count_base_fn base, int nb) {
    double th = p[nb], db[2] = {0, 0};
    double b = base(y, p, need, db);
    if (y > 0.0) {
        for (int k = 0; k < nb; k++) dp[k] = db[k];
        dp[nb] = -1.0 / (1.0 - th);
        return log1p(-th) + b;
    }
    double A = log(th), B = log1p(-th) + b, L = em_math_log_sum_exp2(A, B);
    double wa = exp(A - L), wb = exp(B - L);
    for (int k = 0; k < nb; k++) dp[k] = wb * db[k];
    dp[nb] = wa / th - wb / (1.0 - th);
    return L;
}

EM_ALWAYS_INLINE double hurdle(double y, const double *p, unsigned need, double *dp, count_base_fn base, int nb) {
    double th = p[nb];
    if (y == 0.0) {
        dp[nb] = 1.0 / th;
        return log(th);
    }
    double db[2] = {0, 0}, d0[2] = {0, 0};
    double b = base(y, p, need, db), b0 = base(0.0, p, need, d0);
    /* d/du -log(1 - e^u) = 1/expm1(-u) */
    double c = 1.0 / expm1(-b0);
    for (int k = 0; k < nb; k++) dp[k] = db[k] + c * d0[k];
    dp[nb] = -1.0 / (1.0 - th);
    return log1p(-th) + b - em_math_log1m_exp(b0);
}

static inline double zip_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    return zero_inflated(y, p, need, dp, pois_base, 1);
}
static inline double zinb_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    return zero_inflated(y, p, need, dp, nb2_base, 2);
}
static inline double hurdle_pois_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    return hurdle(y, p, need, dp, pois_base, 1);
}
static inline double hurdle_nb_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    return hurdle(y, p, need, dp, nb2_base, 2);
}

static const uv_desc zip_desc = {"ZeroInflatedPoisson", 2, {"rate", "zi"}, {EM_PK_POS, EM_PK_UNIT_OPEN},
                                 EM_PK_COUNT, "{0, 1, 2, ...}", 0u, 0};
static const uv_desc zinb_desc = {"ZeroInflatedNegBinomial2", 3, {"mu", "phi", "zi"},
                                  {EM_PK_POS, EM_PK_POS, EM_PK_UNIT_OPEN}, EM_PK_COUNT, "{0, 1, 2, ...}", 0u, 0};
static const uv_desc hurdle_pois_desc = {"HurdlePoisson", 2, {"rate", "hu"}, {EM_PK_POS, EM_PK_UNIT_OPEN},
                                         EM_PK_COUNT, "{0, 1, 2, ...}", 0u, 0};
static const uv_desc hurdle_nb_desc = {"HurdleNegBinomial2", 3, {"mu", "phi", "hu"},
                                       {EM_PK_POS, EM_PK_POS, EM_PK_UNIT_OPEN}, EM_PK_COUNT, "{0, 1, 2, ...}", 0u, 0};
LOG_PROB_PW_FN(zip_lp, zip_desc, uv_no_norm, zip_kern)
LOG_PROB_PW_FN(zinb_lp, zinb_desc, uv_no_norm, zinb_kern)
LOG_PROB_PW_FN(hurdle_pois_lp, hurdle_pois_desc, uv_no_norm, hurdle_pois_kern)
LOG_PROB_PW_FN(hurdle_nb_lp, hurdle_nb_desc, uv_no_norm, hurdle_nb_kern)

/* A draw of the base count, zero with probability θ (zero-inflated), or, for a hurdle, zero
 * with probability θ and otherwise a base draw conditioned on y > 0 (by redrawing zeros; the
 * expected number of tries is 1/(1 - p(0)), so a base that is almost always 0 is refused). */
#define EM_HURDLE_MAX_TRIES 100000
static em_status zi_hurdle_draws(const uv_desc *desc, const em_dist *d, em_rng *r, double *out, size_t n,
                                 em_error *err, int nb, int is_hurdle) {
    em_status st = uv_check_params(desc, d, err);
    if (st != EM_OK) return st;
    for (size_t i = 0; i < n; i++) {
        double m = P(d, 0, i), th = P(d, nb, i);
        if (!(m <= EM_MAX_POISSON_MEAN))
            return em_error_set(err, EM_ERR_DOMAIN, "%s sample: mean %g (element %zu) is too large to sample (limit %g)",
                                desc->name, m, i % (d->batch_len ? d->batch_len : 1), EM_MAX_POISSON_MEAN);
        if (gsl_rng_uniform(r) < th) {
            out[i] = 0.0;
            continue;
        }
        int tries = 0;
        do {
            out[i] = nb == 1 ? (double)gsl_ran_poisson(r, m)
                             : (double)gsl_ran_negative_binomial(r, P(d, 1, i) / (m + P(d, 1, i)), P(d, 1, i));
        } while (is_hurdle && out[i] == 0.0 && ++tries < EM_HURDLE_MAX_TRIES);
        if (is_hurdle && out[i] == 0.0)
            return em_error_set(err, EM_ERR_DOMAIN, "%s sample: element %zu: the count is almost never above 0",
                                desc->name, i % (d->batch_len ? d->batch_len : 1));
    }
    return EM_OK;
}
static em_status zip_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return zi_hurdle_draws(&zip_desc, d, r, out, n, err, 1, 0);
}
static em_status zinb_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return zi_hurdle_draws(&zinb_desc, d, r, out, n, err, 2, 0);
}
static em_status hurdle_pois_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return zi_hurdle_draws(&hurdle_pois_desc, d, r, out, n, err, 1, 1);
}
static em_status hurdle_nb_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    return zi_hurdle_draws(&hurdle_nb_desc, d, r, out, n, err, 2, 1);
}
/* Moments from the base's mean m and second moment s: zero-inflated (1-θ)m, (1-θ)s - mean²;
 * hurdle (1-θ)/(1-p0)·m and (1-θ)/(1-p0)·s - mean², p0 the base's probability of 0. */
static inline double zi_moment(double m, double s, double th, double p0, int is_hurdle, int var) {
    double w = is_hurdle ? (1.0 - th) / (1.0 - p0) : 1.0 - th, mean = w * m;
    return var ? w * s - mean * mean : mean;
}
#define POIS_S(d, i) (P(d, 0, i) + P(d, 0, i) * P(d, 0, i))
#define NB_S(d, i) (P(d, 0, i) + P(d, 0, i) * P(d, 0, i) / P(d, 1, i) + P(d, 0, i) * P(d, 0, i))
#define NB_P0(d, i) exp(P(d, 1, i) * (log(P(d, 1, i)) - log(P(d, 0, i) + P(d, 1, i))))
MOMENT_FN(zip_mean, zip_desc, zi_moment(P(d, 0, i), POIS_S(d, i), P(d, 1, i), 0.0, 0, 0))
MOMENT_FN(zip_var, zip_desc, zi_moment(P(d, 0, i), POIS_S(d, i), P(d, 1, i), 0.0, 0, 1))
MOMENT_FN(zinb_mean, zinb_desc, zi_moment(P(d, 0, i), NB_S(d, i), P(d, 2, i), 0.0, 0, 0))
MOMENT_FN(zinb_var, zinb_desc, zi_moment(P(d, 0, i), NB_S(d, i), P(d, 2, i), 0.0, 0, 1))
MOMENT_FN(hurdle_pois_mean, hurdle_pois_desc, zi_moment(P(d, 0, i), POIS_S(d, i), P(d, 1, i), exp(-P(d, 0, i)), 1, 0))
MOMENT_FN(hurdle_pois_var, hurdle_pois_desc, zi_moment(P(d, 0, i), POIS_S(d, i), P(d, 1, i), exp(-P(d, 0, i)), 1, 1))
MOMENT_FN(hurdle_nb_mean, hurdle_nb_desc, zi_moment(P(d, 0, i), NB_S(d, i), P(d, 2, i), NB_P0(d, i), 1, 0))
MOMENT_FN(hurdle_nb_var, hurdle_nb_desc, zi_moment(P(d, 0, i), NB_S(d, i), P(d, 2, i), NB_P0(d, i), 1, 1))
#undef POIS_S
#undef NB_S
#undef NB_P0
POINTWISE_FN(zip_pw, zip_lp_pw, NULL, NULL)
POINTWISE_FN(zinb_pw, zinb_lp_pw, NULL, NULL)
POINTWISE_FN(hurdle_pois_pw, hurdle_pois_lp_pw, NULL, NULL)
POINTWISE_FN(hurdle_nb_pw, hurdle_nb_lp_pw, NULL, NULL)
const em_dist_ops em_ops_zero_inflated_poisson = {"ZeroInflatedPoisson", 2, {"rate", "zi"}, 1, 0, ev_one, sup_count,
                                                  zip_lp, zip_sample, NULL, zip_mean, zip_var, NULL, NULL, zip_pw};
const em_dist_ops em_ops_zero_inflated_neg_binomial2 = {
    "ZeroInflatedNegBinomial2", 3, {"mu", "phi", "zi"}, 1, 0, ev_one, sup_count, zinb_lp, zinb_sample, NULL,
    zinb_mean, zinb_var, NULL, NULL, zinb_pw};
const em_dist_ops em_ops_hurdle_poisson = {"HurdlePoisson", 2, {"rate", "hu"}, 1, 0, ev_one, sup_count,
                                           hurdle_pois_lp, hurdle_pois_sample, NULL, hurdle_pois_mean,
                                           hurdle_pois_var, NULL, NULL, hurdle_pois_pw};
const em_dist_ops em_ops_hurdle_neg_binomial2 = {"HurdleNegBinomial2", 3, {"mu", "phi", "hu"}, 1, 0, ev_one,
                                                 sup_count, hurdle_nb_lp, hurdle_nb_sample, NULL, hurdle_nb_mean,
                                                 hurdle_nb_var, NULL, NULL, hurdle_nb_pw};
em_dist em_dist_zero_inflated_poisson(em_tape *t, em_var rate, em_var zi) {
    em_var p[2] = {rate, zi};
    return em_dist_make(t, &em_ops_zero_inflated_poisson, p, 2);
}
em_dist em_dist_zero_inflated_neg_binomial2(em_tape *t, em_var mu, em_var phi, em_var zi) {
    em_var p[3] = {mu, phi, zi};
    return em_dist_make(t, &em_ops_zero_inflated_neg_binomial2, p, 3);
}
em_dist em_dist_hurdle_poisson(em_tape *t, em_var rate, em_var hu) {
    em_var p[2] = {rate, hu};
    return em_dist_make(t, &em_ops_hurdle_poisson, p, 2);
}
em_dist em_dist_hurdle_neg_binomial2(em_tape *t, em_var mu, em_var phi, em_var hu) {
    em_var p[3] = {mu, phi, hu};
    return em_dist_make(t, &em_ops_hurdle_neg_binomial2, p, 3);
}

/* ---- BetaBinomial(N, a, b) (Stan's beta_binomial): C(N, y)·B(y + a, N - y + b)/B(a, b) ------------
 * The totals are parameter 0 as a constant (so that the kernel sees them) and the data checked
 * by the value's support {0, ..., N}. The beta functions' ratio is taken as rising factorials,
 * (a)_y (b)_{N-y} / (a + b)_N, each from em_math_lpoch: as lgamma differences the density is
 * garbage for a large precision a + b (at a + b = 1e28 it came out near +4e14, a mode NUTS ran
 * to in the simulation-based calibration of bench/sbc_families.c). */
static const uv_desc beta_binomial_desc = {"BetaBinomial", 3, {"N", "a", "b"}, {EM_PK_NONNEG, EM_PK_POS, EM_PK_POS},
                                           EM_PK_COUNT_N, "{0, ..., N}", 0u, 0};
static inline double beta_binomial_kern(double y, const double *p, unsigned need, double *dx, double *dp) {
    double N = p[0], a = p[1], b = p[2];
    if (need & 6u) {
        double dn = em_math_dlpoch(a + b, N);
        if (NEED(1)) dp[1] = em_math_dlpoch(a, y) - dn;
        if (NEED(2)) dp[2] = em_math_dlpoch(b, N - y) - dn;
    }
    return em_math_lgamma(N + 1.0) - em_math_lgamma(y + 1.0) - em_math_lgamma(N - y + 1.0) + em_math_lpoch(a, y) +
           em_math_lpoch(b, N - y) - em_math_lpoch(a + b, N);
}
LOG_PROB_PW_FN(beta_binomial_lp, beta_binomial_desc, uv_no_norm, beta_binomial_kern)
SAMPLE_FN(beta_binomial_sample, beta_binomial_desc,
          (double)gsl_ran_binomial(r, gsl_ran_beta(r, P(d, 1, i), P(d, 2, i)), (unsigned)P(d, 0, i)))
MOMENT_FN(beta_binomial_mean, beta_binomial_desc, P(d, 0, i) * P(d, 1, i) / (P(d, 1, i) + P(d, 2, i)))
MOMENT_FN(beta_binomial_var, beta_binomial_desc,
          P(d, 0, i) * P(d, 1, i) * P(d, 2, i) * (P(d, 1, i) + P(d, 2, i) + P(d, 0, i)) /
              ((P(d, 1, i) + P(d, 2, i)) * (P(d, 1, i) + P(d, 2, i)) * (P(d, 1, i) + P(d, 2, i) + 1.0)))
POINTWISE_FN(beta_binomial_pw, beta_binomial_lp_pw, NULL, NULL)
const em_dist_ops em_ops_beta_binomial = {"BetaBinomial", 3, {"N", "a", "b"}, 1, 0, ev_one, binomial_support,
                                          beta_binomial_lp, beta_binomial_sample, NULL, beta_binomial_mean,
                                          beta_binomial_var, NULL, NULL, beta_binomial_pw};
em_dist em_dist_beta_binomial(em_tape *t, const double *total_count, size_t n, em_var a, em_var b) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.tape = t;
    if (!total_count || n == 0) {
        em_tape_fail(t, EM_ERR_ARG, "BetaBinomial: total_count is NULL or empty");
        return d;
    }
    for (size_t i = 0; i < n; i++)
        if (!em_pk_ok(EM_PK_COUNT, total_count[i], 0, 0, 0) || total_count[i] > 4294967295.0) {
            em_tape_fail(t, EM_ERR_DOMAIN, "BetaBinomial: total_count[%zu] = %g must be a non-negative integer", i,
                         total_count[i]);
            return d;
        }
    em_var p[3] = {em_const(t, total_count, n), a, b};
    d = em_dist_make(t, &em_ops_beta_binomial, p, 3);
    if (!d.ops) return d;
    d.data = total_count;
    d.data_len = n;
    return d;
}

/* ---- CategoricalLogit(logits): value = category index (0-based, as a double) ------------------ */

/* logits is a K-vector (every value drawn from the same categorical) or a B×K matrix (row b
 * for value b). The log density of y is logits[y] - logsumexp(logits); its gradient with
 * respect to the logits is onehot(y) - softmax(logits). */
static size_t cat_K(const em_dist *d) {
    const em_node *l = em_node_get(d->tape, d->p[0]);
    return l->rows > 1 && l->cols > 1 ? l->cols : l->n;
}
static size_t cat_B(const em_dist *d) {
    const em_node *l = em_node_get(d->tape, d->p[0]);
    return l->rows > 1 && l->cols > 1 ? l->rows : 1;
}

typedef struct {
    double *part; /* B×K partials dlp/dlogits, or NULL when the logits need no gradient */
    double *sm;   /* scratch: one row's softmax */
    em_dist dist; /* what a replay needs (the logits' shape, the message) */
} cat_aux;

static void cat_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *l = em_node_get(t, (em_var){self->in[1]});
    const cat_aux *a = self->aux;
    if (!l->adj || !a->part) return;
    const double *part = a->part;
    double g = self->adj[0];
    for (size_t i = 0; i < l->n; i++) l->adj[i] += g * part[i];
}

static em_status cat_check(const em_dist *d, em_error *err) {
    const em_node *l = em_node_get(d->tape, d->p[0]);
    for (size_t i = 0; i < l->n; i++)
        if (!isfinite(l->val[i]))
            return em_error_set(err, EM_ERR_DOMAIN, "CategoricalLogit: logits[%zu] = %g must be finite", i, l->val[i]);
    return EM_OK;
}

/* softmax of row b into p (length K); returns logsumexp */
static double cat_softmax(const double *l, size_t K, double *p) {
    double mx = l[0];
    for (size_t k = 1; k < K; k++)
        if (l[k] > mx) mx = l[k];
    double s = 0.0;
    for (size_t k = 0; k < K; k++) s += (p[k] = exp(l[k] - mx));
    for (size_t k = 0; k < K; k++) p[k] /= s;
    return mx + log(s);
}

/* Is the value (n categories) outside {0, ..., K-1}? Fills e naming the first bad element. */
static int cat_value_bad(const double *y, size_t n, size_t K, em_error *e) {
    for (size_t i = 0; i < n; i++)
        if (!(y[i] >= 0 && y[i] < (double)K && y[i] == floor(y[i]))) {
            em_error_set(e, EM_ERR_DOMAIN, "CategoricalLogit: value[%zu] = %g is outside the support {0, ..., %zu}",
                         i, y[i], K - 1);
            return 1;
        }
    return 0;
}

/* Check the logits, then the value (the order of the messages at creation); 0 when both are
 * fine. */
static int cat_validate(em_tape *t, const em_node *o, em_error *e) {
    const cat_aux *a = o->aux;
    const em_node *yv = em_node_get(t, (em_var){o->in[0]});
    if (cat_check(&a->dist, e) != EM_OK) return 1;
    return cat_value_bad(yv->val, yv->n, cat_K(&a->dist), e);
}

/* The log density and partials from the inputs' current values (creation and replay); 0 when
 * a logit or a value is out of its domain, with the reason in *e (the node is then left unset). */
static int cat_compute(em_tape *t, em_node *o, em_error *e) {
    cat_aux *a = o->aux;
    const em_dist *d = &a->dist;
    if (cat_validate(t, o, e)) return 0;
    size_t K = cat_K(d), B = cat_B(d);
    const em_node *yv = em_node_get(t, (em_var){o->in[0]});
    const double *y = yv->val, *l = em_node_get(t, (em_var){o->in[1]})->val;
    size_t n = yv->n;
    double *sm = a->sm, *part = a->part, lp = 0.0;
    if (B == 1) {
        double lse = cat_softmax(l, K, sm);
        if (part) memset(part, 0, K * sizeof(double)); /* counts accumulate below */
        for (size_t i = 0; i < n; i++) {
            size_t c = (size_t)y[i];
            lp += l[c] - lse;
            if (part) part[c] += 1.0;
        }
        if (part)
            for (size_t k = 0; k < K; k++) part[k] -= (double)n * sm[k];
    } else {
        for (size_t b = 0; b < B; b++) {
            double lse = cat_softmax(l + b * K, K, sm);
            size_t c = (size_t)y[b];
            lp += l[b * K + c] - lse;
            if (part) {
                for (size_t k = 0; k < K; k++) part[b * K + k] = -sm[k];
                part[b * K + c] += 1.0;
            }
        }
    }
    o->val[0] = lp;
    return 1;
}

static void cat_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, cat_compute); }

static em_var cat_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    em_var in[2] = {value, d->p[0]};
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    size_t K = cat_K(d), B = cat_B(d), n = em_len(t, value);
    if (B > 1 && n != B)
        return em_tape_fail(t, EM_ERR_SHAPE, "CategoricalLogit: %zu values for %zu rows of logits", n, B);
    em_var out;
    em_node *o = em_node_new(t, 1, 1, in, 2, cat_backward, &out);
    if (!o) return EM_VAR_INVALID;
    em_arena *ar = em_tape_arena(t);
    cat_aux *a = em_arena_calloc(ar, sizeof *a);
    if (!a) return em_tape_fail(t, EM_ERR_NOMEM, "CategoricalLogit: out of memory");
    a->dist = *d;
    a->sm = em_arena_alloc(ar, K * sizeof(double));
    if (o->adj && em_node_get(t, d->p[0])->adj) a->part = em_arena_alloc(ar, K * B * sizeof(double));
    if (!a->sm || (o->adj && em_node_get(t, d->p[0])->adj && !a->part))
        return em_tape_fail(t, EM_ERR_NOMEM, "CategoricalLogit: out of memory");
    o->aux = a;
    return em_dist_node_finish(t, o, out, cat_forward, cat_compute);
}

static em_status cat_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    em_status st = cat_check(d, err);
    if (st != EM_OK) return st;
    size_t K = cat_K(d), B = cat_B(d);
    double *sm = malloc(K * sizeof *sm);
    if (!sm) return em_error_set(err, EM_ERR_NOMEM, "CategoricalLogit sample: out of memory");
    const double *l = em_val_(d->tape, d->p[0]);
    if (B == 1) cat_softmax(l, K, sm);
    for (size_t i = 0; i < n; i++) {
        if (B > 1) cat_softmax(l + (i % B) * K, K, sm);
        double u = gsl_rng_uniform(r), c = 0.0;
        size_t k = 0;
        while (k + 1 < K && (c += sm[k]) <= u) k++;
        out[i] = (double)k;
    }
    free(sm);
    return EM_OK;
}

static em_status cat_moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    em_status st = cat_check(d, err);
    if (st != EM_OK) return st;
    size_t K = cat_K(d), B = cat_B(d);
    double *sm = malloc(K * sizeof *sm);
    if (!sm) return em_error_set(err, EM_ERR_NOMEM, "CategoricalLogit: out of memory");
    const double *l = em_val_(d->tape, d->p[0]);
    for (size_t i = 0; i < n; i++) {
        cat_softmax(l + (B > 1 ? (i % B) * K : 0), K, sm);
        double m = 0.0, m2 = 0.0;
        for (size_t k = 0; k < K; k++) {
            m += (double)k * sm[k];
            m2 += (double)k * (double)k * sm[k];
        }
        out[i] = var ? m2 - m * m : m;
    }
    free(sm);
    return EM_OK;
}
static em_status cat_mean(const em_dist *d, double *out, size_t n, em_error *err) { return cat_moment(d, out, n, err, 0); }
static em_status cat_var(const em_dist *d, double *out, size_t n, em_error *err) { return cat_moment(d, out, n, err, 1); }
static em_support cat_support(const em_dist *d) {
    return (em_support){EM_SUPPORT_CATEGORY, 0.0, (double)cat_K(d) - 1.0};
}
const em_dist_ops em_ops_categorical_logit = {"CategoricalLogit", 1, {"logits"}, 1, 0, ev_one, cat_support,
                                              cat_lp, cat_sample, NULL, cat_mean, cat_var, NULL, NULL, NULL};
em_dist em_dist_categorical_logit(em_tape *t, em_var logits) {
    em_dist d = em_dist_make(t, &em_ops_categorical_logit, &logits, 1);
    if (d.ops) d.batch_len = cat_B(&d);
    return d;
}

/* ---- OrderedLogistic and OrderedProbit(eta, cutpoints) (Stan's ordered_logistic, ordered_probit) ---
 * y in {0, ..., K-1} with K - 1 increasing cutpoints c: P(y <= k) = F(c_k - η), so
 *   P(y = 0) = F(c_0 - η), P(y = K-1) = F(η - c_{K-2}) (F symmetric), and between,
 *   P(y = k) = F(c_k - η) - F(c_{k-1} - η), without cancellation (em_ord_term, dist_impl.h).
 * F is the logistic CDF or Φ. One node for the vector, the
 * partials in η per element (summed for a scalar η) and in the cutpoints summed. */

typedef struct {
    size_t n, K;
    double *part_eta; /* len(eta) partials, or NULL */
    double *part_c;   /* K - 1 partials, or NULL */
    em_dist dist;
    int probit;
} ordered_aux;

static const char *ord_name(const ordered_aux *a) { return a->probit ? "OrderedProbit" : "OrderedLogistic"; }

/* the first invalid cutpoint, eta or value, named */
static int ord_check(em_tape *t, const ordered_aux *a, em_error *e) {
    const em_dist *d = &a->dist;
    const em_node *c = em_node_get(t, d->p[1]), *eta = em_node_get(t, d->p[0]);
    for (size_t k = 0; k < c->n; k++) {
        if (!(fabs(c->val[k]) < INFINITY))
            return em_error_set(e, EM_ERR_DOMAIN, "%s: cutpoints[%zu] = %g must be finite", ord_name(a), k, c->val[k]), 0;
        if (k > 0 && !(c->val[k] > c->val[k - 1]))
            return em_error_set(e, EM_ERR_DOMAIN, "%s: cutpoints[%zu] = %g must be greater than cutpoints[%zu] = %g",
                                ord_name(a), k, c->val[k], k - 1, c->val[k - 1]), 0;
    }
    for (size_t i = 0; i < eta->n; i++)
        if (!(fabs(eta->val[i]) < INFINITY))
            return em_error_set(e, EM_ERR_DOMAIN, "%s: eta[%zu] = %g must be finite", ord_name(a), i, eta->val[i]), 0;
    return 1;
}

static int ordered_compute(em_tape *t, em_node *o, em_error *e) {
    ordered_aux *a = o->aux;
    if (!ord_check(t, a, e)) return 0;
    const em_node *yv = em_node_get(t, (em_var){o->in[0]}), *ev = em_node_get(t, (em_var){o->in[1]});
    const double *c = em_node_get(t, (em_var){o->in[2]})->val;
    size_t n = a->n, K = a->K, sy = yv->n == 1 ? 0 : 1, se = ev->n == 1 ? 0 : 1;
    if (a->part_eta) memset(a->part_eta, 0, ev->n * sizeof(double));
    if (a->part_c) memset(a->part_c, 0, (K - 1) * sizeof(double));
    double lp = 0.0;
    for (size_t i = 0; i < n; i++) {
        double y = yv->val[i * sy], eta = ev->val[i * se];
        if (!(y >= 0.0 && y <= (double)(K - 1) && y == floor(y))) {
            em_error_set(e, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support {0, ..., %zu}", ord_name(a),
                         i * sy, y, K - 1);
            return 0;
        }
        size_t k = (size_t)y;
        double dhi, dlo;
        lp += em_ord_term(k, eta, c, K, a->probit, NULL, &dhi, &dlo);
        if (a->part_eta) a->part_eta[i * se] -= dhi + dlo;
        if (a->part_c) {
            if (k < K - 1) a->part_c[k] += dhi;
            if (k > 0) a->part_c[k - 1] += dlo;
        }
    }
    o->val[0] = lp;
    return 1;
}

static void ordered_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, ordered_compute); }

static void ordered_backward(em_tape *t, em_node *self) {
    const ordered_aux *a = self->aux;
    double g = self->adj[0];
    if (a->part_eta) em_adj_axpy(em_node_get(t, (em_var){self->in[1]}), g, a->part_eta);
    if (a->part_c) em_adj_axpy(em_node_get(t, (em_var){self->in[2]}), g, a->part_c);
}

static em_var ordered_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    int probit = d->data_len;
    const char *name = probit ? "OrderedProbit" : "OrderedLogistic";
    em_var in[3] = {value, d->p[0], d->p[1]};
    if (!em_inputs_ok(in, 3)) return EM_VAR_INVALID;
    size_t n = em_dist_common_len(t, name, in, 2);
    if (!n) return EM_VAR_INVALID;
    em_var out;
    em_node *o = em_node_new(t, 1, 1, in, 3, ordered_backward, &out);
    if (!o) return EM_VAR_INVALID;
    em_arena *ar = em_tape_arena(t);
    ordered_aux *a = em_arena_calloc(ar, sizeof *a);
    if (!a) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", name);
    a->n = n;
    a->K = em_len_(t, d->p[1]) + 1;
    a->dist = *d;
    a->probit = probit;
    if (o->adj && em_node_get(t, d->p[0])->adj) a->part_eta = em_arena_alloc(ar, em_len_(t, d->p[0]) * sizeof(double));
    if (o->adj && em_node_get(t, d->p[1])->adj) a->part_c = em_arena_alloc(ar, (a->K - 1) * sizeof(double));
    if ((o->adj && em_node_get(t, d->p[0])->adj && !a->part_eta) || (o->adj && em_node_get(t, d->p[1])->adj && !a->part_c))
        return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", name);
    o->aux = a;
    return em_dist_node_finish(t, o, out, ordered_forward, ordered_compute);
}

/* The terms one per element (log_lik): the same em_ord_term, each element's partials kept for the
 * backward pass (a vector output: element i's adjoint scales its own partials). */
typedef struct {
    ordered_aux a;
    double *dhi, *dlo; /* [n] */
} ordered_pw_aux;

static int ordered_pw_compute(em_tape *t, em_node *o, em_error *e) {
    ordered_pw_aux *p = o->aux;
    const ordered_aux *a = &p->a;
    if (!ord_check(t, a, e)) return 0;
    const em_node *yv = em_node_get(t, (em_var){o->in[0]}), *ev = em_node_get(t, (em_var){o->in[1]});
    const double *c = em_node_get(t, (em_var){o->in[2]})->val;
    size_t K = a->K, sy = yv->n == 1 ? 0 : 1, se = ev->n == 1 ? 0 : 1;
    for (size_t i = 0; i < a->n; i++) {
        double y = yv->val[i * sy];
        if (!(y >= 0.0 && y <= (double)(K - 1) && y == floor(y))) {
            em_error_set(e, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside the support {0, ..., %zu}", ord_name(a), i * sy,
                         y, K - 1);
            return 0;
        }
        o->val[i] = em_ord_term((size_t)y, ev->val[i * se], c, K, a->probit, NULL, &p->dhi[i], &p->dlo[i]);
    }
    return 1;
}

static void ordered_pw_forward(em_tape *t, em_node *o) {
    em_error e;
    em_error_clear(&e);
    if (!ordered_pw_compute(t, o, &e)) {
        for (size_t i = 0; i < o->n; i++) o->val[i] = -INFINITY;
        em_tape_fail(t, e.status, "%s", e.msg);
    }
}

static void ordered_pw_backward(em_tape *t, em_node *self) {
    const ordered_pw_aux *p = self->aux;
    const em_node *yv = em_node_get(t, (em_var){self->in[0]});
    em_node *ev = &t->nodes[self->in[1]], *cv = &t->nodes[self->in[2]];
    size_t K = p->a.K, sy = yv->n == 1 ? 0 : 1, se = ev->n == 1 ? 0 : 1;
    double *ea = em_adj_target(ev), *ca = em_adj_target(cv);
    for (size_t i = 0; i < p->a.n; i++) {
        double g = self->adj[i];
        size_t k = (size_t)yv->val[i * sy];
        if (ea) ea[i * se] -= g * (p->dhi[i] + p->dlo[i]);
        if (ca) {
            if (k < K - 1) ca[k] += g * p->dhi[i];
            if (k > 0) ca[k - 1] += g * p->dlo[i];
        }
    }
}

static em_var ordered_pointwise(const em_dist *d, em_dist_term which, em_var value) {
    em_tape *t = d->tape;
    int probit = (int)d->data_len;
    const char *name = probit ? "OrderedProbit" : "OrderedLogistic";
    if (which != EM_TERM_LOG_PROB) return em_tape_fail(t, EM_ERR_ARG, "%s: no CDF terms (a discrete family)", name);
    em_var in[3] = {value, d->p[0], d->p[1]};
    if (!em_inputs_ok(in, 3)) return EM_VAR_INVALID;
    size_t n = em_dist_common_len(t, name, in, 2);
    if (!n) return EM_VAR_INVALID;
    em_var out;
    em_node *o = em_node_new(t, n, 1, in, 3, ordered_pw_backward, &out);
    if (!o) return EM_VAR_INVALID;
    em_arena *ar = em_tape_arena(t);
    ordered_pw_aux *p = em_arena_calloc(ar, sizeof *p);
    double *buf = p ? em_arena_alloc(ar, 2 * n * sizeof *buf) : NULL;
    if (!buf) return em_tape_fail(t, EM_ERR_NOMEM, "%s: out of memory", name);
    p->a = (ordered_aux){n, em_len_(t, d->p[1]) + 1, NULL, NULL, *d, probit};
    p->dhi = buf;
    p->dlo = buf + n;
    o->aux = p;
    return em_dist_node_finish(t, o, out, ordered_pw_forward, ordered_pw_compute);
}

/* P(y > k) = F(η - c_k) */
static inline double ord_above(double eta, double ck, int probit) { return exp(em_ord_logF(eta - ck, probit)); }

static em_status ordered_params(const em_dist *d, em_error *err) {
    ordered_aux a = {0, 0, NULL, NULL, *d, (int)d->data_len};
    return ord_check(d->tape, &a, err) ? EM_OK : err->status;
}

static em_status ordered_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    em_status st = ordered_params(d, err);
    if (st != EM_OK) return st;
    const em_node *c = em_node_get(d->tape, d->p[1]);
    for (size_t i = 0; i < n; i++) {
        double z = P(d, 0, i) + (d->data_len ? gsl_ran_gaussian_ziggurat(r, 1.0) : gsl_ran_logistic(r, 1.0));
        size_t k = 0;
        while (k < c->n && c->val[k] < z) k++;
        out[i] = (double)k;
    }
    return EM_OK;
}

/* E y = Σ_k P(y > k), E y² = Σ_k (2k + 1)·P(y > k) */
static em_status ordered_moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    em_status st = ordered_params(d, err);
    if (st != EM_OK) return st;
    const em_node *c = em_node_get(d->tape, d->p[1]);
    for (size_t i = 0; i < n; i++) {
        double m = 0.0, s = 0.0;
        for (size_t k = 0; k < c->n; k++) {
            double q = ord_above(P(d, 0, i), c->val[k], (int)d->data_len);
            m += q;
            s += (2.0 * (double)k + 1.0) * q;
        }
        out[i] = var ? s - m * m : m;
    }
    return EM_OK;
}
static em_status ordered_mean(const em_dist *d, double *out, size_t n, em_error *err) {
    return ordered_moment(d, out, n, err, 0);
}
static em_status ordered_var(const em_dist *d, double *out, size_t n, em_error *err) {
    return ordered_moment(d, out, n, err, 1);
}
static em_support ordered_support(const em_dist *d) {
    return (em_support){EM_SUPPORT_CATEGORY, 0.0, (double)em_len(d->tape, d->p[1])};
}
const em_dist_ops em_ops_ordered_logistic = {"OrderedLogistic", 2, {"eta", "cutpoints"}, 1, 0, ev_one,
                                             ordered_support, ordered_lp, ordered_sample, NULL, ordered_mean,
                                             ordered_var, NULL, NULL, ordered_pointwise};
const em_dist_ops em_ops_ordered_probit = {"OrderedProbit", 2, {"eta", "cutpoints"}, 1, 0, ev_one, ordered_support,
                                           ordered_lp, ordered_sample, NULL, ordered_mean, ordered_var, NULL, NULL,
                                           ordered_pointwise};

/* data_len carries the link (0 logistic, 1 probit); the batch is eta's, the cutpoints are one
 * vector for every element */
static em_dist ordered_make(em_tape *t, em_var eta, em_var cutpoints, int probit) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.tape = t;
    for (int k = 0; k < 4; k++) d.p[k] = EM_VAR_INVALID;
    if (!em_var_ok(eta) || !em_var_ok(cutpoints)) return d;
    d.p[0] = eta;
    d.p[1] = cutpoints;
    d.ops = probit ? &em_ops_ordered_probit : &em_ops_ordered_logistic;
    d.data_len = (size_t)probit;
    d.batch_len = em_len(t, eta);
    return d;
}
em_dist em_dist_ordered_logistic(em_tape *t, em_var eta, em_var cutpoints) { return ordered_make(t, eta, cutpoints, 0); }
em_dist em_dist_ordered_probit(em_tape *t, em_var eta, em_var cutpoints) { return ordered_make(t, eta, cutpoints, 1); }
