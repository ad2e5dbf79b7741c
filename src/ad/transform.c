/* transform.c — bijections from unconstrained reals to each support, with log|det J|.
 * See transform.h.
 *
 * One numerical core per transform computes y, log|det J| and, when asked, the partials the
 * tape needs (per-element data for the vector-Jacobian product in `aux`, and d log|det J|/dx in
 * `dld`). The double API and the tape both call it, so a value on the tape is bit-for-bit the
 * value of em_transform_forward_d. On the tape a transform is one node for y and, when a
 * log-det accumulator is given, one node for accumulator + log|det J|; both backward passes are
 * analytic and cost O(length).
 *
 * References: Stan Reference Manual, "Constraint transforms" (lower/upper/interval bounds,
 * ordered vectors, unit simplex by stick-breaking, Cholesky factors of correlation matrices);
 * Lewandowski, Kurowicka & Joe (2009), "Generating random correlation matrices based on vines
 * and extended onion method", J. Multivariate Analysis 100, for the canonical partial
 * correlations behind the correlation-Cholesky transform.
 */
#include "internal/tape.h"
#include "ember/transform.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const double LN2 = 0.693147180559945309417232121458176568;

/* Tolerances for the inverse transforms' support checks, as Stan's CONSTRAINT_TOLERANCE: a
 * simplex must sum to 1 and each correlation-Cholesky row must have unit norm to within it. */
#define SUM_TOL 1e-8

/* ---- names, sizes, validation --------------------------------------------------------------- */

static const char *const kind_names[EM_TRANSFORM_COUNT] = {
    [EM_TRANSFORM_IDENTITY] = "identity",   [EM_TRANSFORM_POSITIVE] = "positive",
    [EM_TRANSFORM_LOWER] = "lower",         [EM_TRANSFORM_UPPER] = "upper",
    [EM_TRANSFORM_INTERVAL] = "interval",   [EM_TRANSFORM_UNIT] = "unit",
    [EM_TRANSFORM_SIMPLEX] = "simplex",     [EM_TRANSFORM_CORR_CHOLESKY] = "corr_cholesky",
    [EM_TRANSFORM_ORDERED] = "ordered",
};

const char *em_transform_name(em_transform_kind k) {
    if ((int)k < 0 || k >= EM_TRANSFORM_COUNT) return "unknown";
    return kind_names[k];
}

static int kind_ok(const em_transform *tr) {
    return tr && (int)tr->kind >= 0 && tr->kind < EM_TRANSFORM_COUNT;
}

/* K with K(K-1)/2 == m, or 0 when m is not a triangular number (K >= 2). */
static size_t corr_k_from_free(size_t m) {
    if (m == 0) return 0;
    size_t k = (size_t)((1.0 + sqrt(1.0 + 8.0 * (double)m)) / 2.0);
    for (size_t c = k > 1 ? k - 1 : 1; c <= k + 1; c++)
        if (c >= 2 && c * (c - 1) / 2 == m) return c;
    return 0;
}

/* K with K*K == n, or 0 (K >= 2). */
static size_t corr_k_from_len(size_t n) {
    size_t k = (size_t)sqrt((double)n);
    for (size_t c = k > 1 ? k - 1 : 1; c <= k + 1; c++)
        if (c >= 2 && c * c == n) return c;
    return 0;
}

size_t em_transform_free_len(const em_transform *tr, size_t n) {
    if (!kind_ok(tr) || n == 0) return 0;
    switch (tr->kind) {
    case EM_TRANSFORM_SIMPLEX: return n >= 2 ? n - 1 : 0;
    case EM_TRANSFORM_CORR_CHOLESKY: {
        size_t k = corr_k_from_len(n);
        return k ? k * (k - 1) / 2 : 0;
    }
    default: return n;
    }
}

size_t em_transform_constrained_len(const em_transform *tr, size_t m) {
    if (!kind_ok(tr) || m == 0) return 0;
    switch (tr->kind) {
    case EM_TRANSFORM_SIMPLEX: return m + 1;
    case EM_TRANSFORM_CORR_CHOLESKY: {
        size_t k = corr_k_from_free(m);
        return k * k;
    }
    default: return m;
    }
}

/* A short description naming the transform and its bounds, for messages: "interval(0, 10)". */
static void describe(const em_transform *tr, size_t n, char *buf, size_t size) {
    switch (tr->kind) {
    case EM_TRANSFORM_LOWER: snprintf(buf, size, "lower(%g)", tr->lo); break;
    case EM_TRANSFORM_UPPER: snprintf(buf, size, "upper(%g)", tr->hi); break;
    case EM_TRANSFORM_INTERVAL: snprintf(buf, size, "interval(%g, %g)", tr->lo, tr->hi); break;
    case EM_TRANSFORM_SIMPLEX: snprintf(buf, size, "simplex(%zu)", n); break;
    case EM_TRANSFORM_CORR_CHOLESKY: snprintf(buf, size, "corr_cholesky(%zu)", corr_k_from_len(n)); break;
    default: snprintf(buf, size, "%s", em_transform_name(tr->kind)); break;
    }
}

em_status em_transform_validate(const em_transform *tr, em_error *err) {
    if (!tr) return em_error_set(err, EM_ERR_ARG, "transform: NULL transform");
    if (!kind_ok(tr)) return em_error_set(err, EM_ERR_ARG, "transform: unknown kind %d", (int)tr->kind);
    switch (tr->kind) {
    case EM_TRANSFORM_LOWER:
        if (!isfinite(tr->lo))
            return em_error_set(err, EM_ERR_ARG, "lower transform: bound lo = %g must be finite", tr->lo);
        break;
    case EM_TRANSFORM_UPPER:
        if (!isfinite(tr->hi))
            return em_error_set(err, EM_ERR_ARG, "upper transform: bound hi = %g must be finite", tr->hi);
        break;
    case EM_TRANSFORM_INTERVAL:
        if (!isfinite(tr->lo) || !isfinite(tr->hi) || !(tr->lo < tr->hi) || !isfinite(tr->hi - tr->lo))
            return em_error_set(err, EM_ERR_ARG,
                                "interval transform: bounds (%g, %g) must be finite with lo < hi and a finite width",
                                tr->lo, tr->hi);
        break;
    default: break;
    }
    return EM_OK;
}

/* ---- scalar helpers --------------------------------------------------------------------------- */

/* sigma(u) and sigma(-u) = 1 - sigma(u), each without cancellation or overflow. */
static void sigmoid_pair(double u, double *s, double *sm) {
    if (u >= 0) {
        double e = exp(-u);
        *s = 1.0 / (1.0 + e);
        *sm = e / (1.0 + e);
    } else {
        double e = exp(u);
        *s = e / (1.0 + e);
        *sm = 1.0 / (1.0 + e);
    }
}

/* log sigma(u) + log sigma(-u) = -softplus(u) - softplus(-u) = -|u| - 2 log1p(exp(-|u|)):
 * one exp, finite for every finite u. */
static double log_sigmoid_both(double u) {
    double a = fabs(u);
    return -a - 2.0 * log1p(exp(-a));
}

/* log sigma(-u) = -softplus(u) */
static double log_sigmoid_neg(double u) { return u > 0 ? -u - log1p(exp(-u)) : -log1p(exp(u)); }

/* log sech(x) = log 2 - |x| - log1p(exp(-2|x|)), accurate where 1 - tanh(x)^2 rounds to 0. */
static double log_sech(double x) {
    double a = fabs(x);
    return LN2 - a - log1p(exp(-2.0 * a));
}

static double sech(double x) {
    double e = exp(-fabs(x));
    return 2.0 * e / (1.0 + e * e);
}

/* ---- forward cores ----------------------------------------------------------------------------- */

/* Length of the per-element data a tape node keeps for its backward pass. */
static size_t aux_len(em_transform_kind k, size_t m) {
    switch (k) {
    case EM_TRANSFORM_IDENTITY: return 0;
    case EM_TRANSFORM_SIMPLEX:
    case EM_TRANSFORM_CORR_CHOLESKY: return 3 * m;
    default: return m;
    }
}

/* Interval map on (lo, hi) for one element. For x > 0 it is written from the upper bound so
 * that the distance to hi, (hi-lo)·sigma(-x), keeps its relative precision; a value that still
 * rounds onto a bound is moved one ulp inside, so the result is always strictly in (lo, hi). */
static double interval_value(double lo, double hi, double x, double *dydx) {
    double s, sm, w = hi - lo, y;
    sigmoid_pair(x, &s, &sm);
    y = x > 0 ? hi - w * sm : lo + w * s;
    if (y >= hi) y = nextafter(hi, lo);
    if (y <= lo) y = nextafter(lo, hi);
    if (dydx) *dydx = w * s * sm;
    return y;
}

/* y = f(x) for a transform already validated, with x of free length m and y of constrained
 * length n. Writes log|det J| to *ld, and, when non-NULL, aux (aux_len values) and dld (m
 * values, d log|det J| / dx). */
/* Re-issue an error from forward_core with the transform described in front ("interval(0, 10):
 * x[0] = nan is not finite"); the description is only formatted when something went wrong,
 * which keeps snprintf off the log-density hot path. */
static em_status described_error(const em_transform *tr, size_t n, const em_error *inner, em_error *err) {
    char what[96];
    describe(tr, n, what, sizeof what);
    return em_error_set(err, inner->status, "%s: %s", what, inner->msg);
}

static em_status forward_core(const em_transform *tr, const double *x, size_t m, size_t n,
                              double *y, double *ld_out, double *aux, double *dld, em_error *err) {
    for (size_t i = 0; i < m; i++)
        if (!isfinite(x[i]))
            return em_error_set(err, EM_ERR_NONFINITE, "x[%zu] = %g is not finite", i, x[i]);
    double ld = 0.0;
    switch (tr->kind) {
    case EM_TRANSFORM_IDENTITY:
        if (y != x) memcpy(y, x, m * sizeof *y);
        if (dld) memset(dld, 0, m * sizeof *dld);
        break;
    case EM_TRANSFORM_POSITIVE:
    case EM_TRANSFORM_LOWER:
    case EM_TRANSFORM_UPPER:
        for (size_t i = 0; i < m; i++) {
            double e = exp(x[i]);
            if (!isfinite(e))
                return em_error_set(err, EM_ERR_NONFINITE, "exp(x[%zu] = %g) overflows", i, x[i]);
            double v = tr->kind == EM_TRANSFORM_POSITIVE ? e : tr->kind == EM_TRANSFORM_LOWER ? tr->lo + e : tr->hi - e;
            if (!isfinite(v))
                return em_error_set(err, EM_ERR_NONFINITE, "x[%zu] = %g gives a non-finite value", i, x[i]);
            ld += x[i];
            if (aux) aux[i] = tr->kind == EM_TRANSFORM_UPPER ? -e : e;
            if (dld) dld[i] = 1.0;
            y[i] = v;
        }
        break;
    case EM_TRANSFORM_INTERVAL:
    case EM_TRANSFORM_UNIT: {
        double lo = tr->kind == EM_TRANSFORM_UNIT ? 0.0 : tr->lo, hi = tr->kind == EM_TRANSFORM_UNIT ? 1.0 : tr->hi;
        double lw = log(hi - lo);
        for (size_t i = 0; i < m; i++) {
            y[i] = interval_value(lo, hi, x[i], aux ? &aux[i] : NULL);
            ld += lw + log_sigmoid_both(x[i]);
            /* d/dx [log sigma(x) + log sigma(-x)] = sigma(-x) - sigma(x) = -tanh(x/2) */
            if (dld) dld[i] = -tanh(0.5 * x[i]);
        }
        break;
    }
    case EM_TRANSFORM_SIMPLEX: {
        /* Stick-breaking: z_k = sigma(x_k - log(K-1-k)) takes a fraction of the stick r_k left
         * over (r_0 = 1); the offset makes x = 0 the uniform simplex. The stick is carried as a
         * product r_{k+1} = r_k (1 - z_k), never as 1 - (sum so far), so no cancellation. */
        size_t K = n;
        double r = 1.0, logr = 0.0;
        for (size_t k = 0; k + 1 < K; k++) {
            double u = x[k] - log((double)(K - 1 - k)), z, omz;
            sigmoid_pair(u, &z, &omz);
            y[k] = r * z;
            ld += log_sigmoid_both(u) + logr;
            if (aux) {
                aux[k] = z;
                aux[m + k] = omz;
                aux[2 * m + k] = r;
            }
            /* log r_j for j > k contains log(1 - z_k), whose derivative in x_k is -z_k */
            if (dld) dld[k] = omz - z - (double)(K - 2 - k) * z;
            logr += log_sigmoid_neg(u);
            r *= omz;
        }
        y[K - 1] = r;
        break;
    }
    case EM_TRANSFORM_CORR_CHOLESKY: {
        /* Row i of L: canonical partial correlations z_ij = tanh(x_ij) (row-major strictly lower
         * order), L_ij = z_ij q_ij with q_i0 = 1 and q_i,j+1 = q_ij sech(x_ij), L_ii = q_ii. Then
         * q_ij^2 = 1 - sum_{j'<j} L_ij'^2 exactly, and each row has unit norm. log|det J| of
         * x -> strictly-lower L is sum log(1 - z^2) + sum_{j} log q_ij (Stan's 0.5 log1m(sum_sqs)),
         * all from log sech(x), so it stays finite however large |x| is. */
        size_t K = corr_k_from_len(n), k = 0;
        memset(y, 0, n * sizeof *y);
        y[0] = 1.0;
        for (size_t i = 1; i < K; i++) {
            double q = 1.0, logq = 0.0;
            for (size_t j = 0; j < i; j++, k++) {
                double z = tanh(x[k]), c = sech(x[k]), lc = log_sech(x[k]);
                y[i * K + j] = z * q;
                ld += 2.0 * lc + logq;
                if (aux) {
                    aux[k] = z;
                    aux[m + k] = c;
                    aux[2 * m + k] = q;
                }
                /* log(1 - z^2) = 2 log sech has derivative -2z; it also enters log q of the
                 * i-1-j later entries of the row */
                if (dld) dld[k] = -2.0 * z * (1.0 + 0.5 * (double)(i - 1 - j));
                logq += lc;
                q *= c;
            }
            y[i * K + i] = q;
        }
        break;
    }
    case EM_TRANSFORM_ORDERED:
        y[0] = x[0];
        if (dld) dld[0] = 0.0;
        if (aux) aux[0] = 1.0;
        for (size_t i = 1; i < m; i++) {
            double e = exp(x[i]);
            y[i] = y[i - 1] + e;
            if (!isfinite(y[i]))
                return em_error_set(err, EM_ERR_NONFINITE, "x[%zu] = %g gives a non-finite value", i, x[i]);
            ld += x[i];
            if (aux) aux[i] = e;
            if (dld) dld[i] = 1.0;
        }
        break;
    default: return em_error_set(err, EM_ERR_ARG, "unknown transform kind");
    }
    if (ld_out) *ld_out = ld;
    return EM_OK;
}

/* ---- double API ----------------------------------------------------------------------------------- */

em_status em_transform_forward_d(const em_transform *tr, const double *x, size_t m, double *y, double *logdet,
                                 em_error *err) {
    em_status s = em_transform_validate(tr, err);
    if (s != EM_OK) return s;
    size_t n = em_transform_constrained_len(tr, m);
    if (n == 0)
        return em_error_set(err, EM_ERR_SHAPE, "%s transform: no constrained value has %zu free values",
                            em_transform_name(tr->kind), m);
    if (!x || !y) return em_error_set(err, EM_ERR_ARG, "%s transform: NULL array", em_transform_name(tr->kind));
    em_error e = {0};
    if (forward_core(tr, x, m, n, y, logdet, NULL, NULL, &e) != EM_OK) return described_error(tr, n, &e, err);
    return EM_OK;
}

em_status em_transform_inverse_d(const em_transform *tr, const double *y, size_t n, double *x, em_error *err) {
    em_status s = em_transform_validate(tr, err);
    if (s != EM_OK) return s;
    size_t m = em_transform_free_len(tr, n);
    if (m == 0)
        return em_error_set(err, EM_ERR_SHAPE, "%s transform: a constrained value cannot have %zu elements",
                            em_transform_name(tr->kind), n);
    if (!x || !y) return em_error_set(err, EM_ERR_ARG, "%s transform: NULL array", em_transform_name(tr->kind));
    char what[96];
    describe(tr, n, what, sizeof what);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(y[i]))
            return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is not finite", what, i, y[i]);
    switch (tr->kind) {
    case EM_TRANSFORM_IDENTITY: memmove(x, y, n * sizeof *x); break;
    case EM_TRANSFORM_POSITIVE:
        for (size_t i = 0; i < n; i++)
            if (!(y[i] > 0.0)) return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is not > 0", what, i, y[i]);
        for (size_t i = 0; i < n; i++) x[i] = log(y[i]);
        break;
    case EM_TRANSFORM_LOWER:
        for (size_t i = 0; i < n; i++)
            if (!(y[i] > tr->lo))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is not > %g", what, i, y[i], tr->lo);
        for (size_t i = 0; i < n; i++) x[i] = log(y[i] - tr->lo);
        break;
    case EM_TRANSFORM_UPPER:
        for (size_t i = 0; i < n; i++)
            if (!(y[i] < tr->hi))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is not < %g", what, i, y[i], tr->hi);
        for (size_t i = 0; i < n; i++) x[i] = log(tr->hi - y[i]);
        break;
    case EM_TRANSFORM_INTERVAL:
    case EM_TRANSFORM_UNIT: {
        double lo = tr->kind == EM_TRANSFORM_UNIT ? 0.0 : tr->lo, hi = tr->kind == EM_TRANSFORM_UNIT ? 1.0 : tr->hi;
        for (size_t i = 0; i < n; i++)
            if (!(y[i] > lo && y[i] < hi))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is outside (%g, %g)", what, i, y[i], lo,
                                    hi);
        /* logit((y-lo)/(hi-lo)) as a difference of logs of the two distances, each exact */
        for (size_t i = 0; i < n; i++) x[i] = log(y[i] - lo) - log(hi - y[i]);
        break;
    }
    case EM_TRANSFORM_SIMPLEX: {
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (!(y[i] > 0.0 && y[i] <= 1.0))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is not in (0, 1]", what, i, y[i]);
            sum += y[i];
        }
        if (!(fabs(sum - 1.0) <= SUM_TOL))
            return em_error_set(err, EM_ERR_DOMAIN, "%s: values sum to %.12g, not 1 (tolerance %g)", what, sum,
                                SUM_TOL);
        /* z_k = y_k / r_k and 1 - z_k = r_{k+1} / r_k, with the stick r_{k+1} summed from the
         * tail: logit(z_k) = log y_k - log r_{k+1}, accurate even for tiny elements. */
        double tail = y[n - 1];
        for (size_t k = n - 1; k-- > 0;) {
            x[k] = log(y[k]) - log(tail) + log((double)(n - 1 - k));
            tail += y[k];
        }
        break;
    }
    case EM_TRANSFORM_CORR_CHOLESKY: {
        size_t K = corr_k_from_len(n), k = 0;
        for (size_t i = 0; i < K; i++) {
            for (size_t j = i + 1; j < K; j++)
                if (y[i * K + j] != 0.0)
                    return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu,%zu] = %g is above the diagonal (must be 0)",
                                        what, i, j, y[i * K + j]);
            if (!(y[i * K + i] > 0.0))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: diagonal value[%zu,%zu] = %g is not > 0", what, i, i,
                                    y[i * K + i]);
            double ss = 0.0;
            for (size_t j = 0; j <= i; j++) ss += y[i * K + j] * y[i * K + j];
            if (!(fabs(ss - 1.0) <= SUM_TOL))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: row %zu has squared norm %.12g, not 1 (tolerance %g)",
                                    what, i, ss, SUM_TOL);
        }
        /* tanh(x) = L_ij / sqrt(sum_{j'>=j} L_ij'^2) is the same as sinh(x) = L_ij / b with
         * b^2 = sum_{j'>j} L_ij'^2, so x = asinh(L_ij / b): no 1 - z cancellation near |z| = 1. */
        for (size_t i = 1; i < K; i++) {
            double b2 = y[i * K + i] * y[i * K + i];
            for (size_t j = i; j-- > 0;) {
                x[k + j] = asinh(y[i * K + j] / sqrt(b2));
                b2 += y[i * K + j] * y[i * K + j];
            }
            k += i;
        }
        break;
    }
    case EM_TRANSFORM_ORDERED:
        for (size_t i = 1; i < n; i++)
            if (!(y[i] > y[i - 1]))
                return em_error_set(err, EM_ERR_DOMAIN, "%s: value[%zu] = %g is not greater than value[%zu] = %g", what,
                                    i, y[i], i - 1, y[i - 1]);
        x[0] = y[0];
        for (size_t i = 1; i < n; i++) x[i] = log(y[i] - y[i - 1]);
        break;
    default: return em_error_set(err, EM_ERR_ARG, "%s: unknown transform kind", what);
    }
    for (size_t i = 0; i < m; i++)
        if (!isfinite(x[i]))
            return em_error_set(err, EM_ERR_DOMAIN, "%s: the unconstrained x[%zu] = %g is not finite", what, i, x[i]);
    return EM_OK;
}

/* ---- tape ------------------------------------------------------------------------------------------------ */

/* What the two nodes of a transform share (their aux): the transform and sizes, for a replay;
 * the core's per-element data (part: read by y's backward) and d ld/dx (dld: read by the
 * log-det node's backward); ld, which y's forward leaves for the log-det node's forward. */
typedef struct {
    em_transform tr;
    size_t m, n;
    double *part, *dld;
    double ld;
} tr_aux;

/* The node for y: in[0] = x. Each backward adds ȳ·∂y/∂x. */
static void elementwise_backward(em_tape *t, em_node *self) {
    em_node *x = em_node_get(t, (em_var){self->in[0]});
    if (!x->adj) return;
    const double *d = ((const tr_aux *)self->aux)->part;
    if (em_adj_first(x)) /* the adjoint contract, internal/tape.h */
        for (size_t i = 0; i < self->n; i++) x->adj[i] = self->adj[i] * d[i];
    else
        for (size_t i = 0; i < self->n; i++) x->adj[i] += self->adj[i] * d[i];
}

static void simplex_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *x = em_node_get(t, (em_var){self->in[0]});
    if (!x->adj) return;
    size_t m = x->n;
    const double *z = ((const tr_aux *)self->aux)->part, *omz = z + m, *r = z + 2 * m, *g = self->adj;
    /* reverse of y_k = r_k z_k, r_{k+1} = r_k (1 - z_k), y_{K-1} = r_{K-1} */
    double rbar = g[m];
    for (size_t k = m; k-- > 0;) {
        double zbar = (g[k] - rbar) * r[k];
        x->adj[k] += zbar * z[k] * omz[k];
        rbar = g[k] * z[k] + rbar * omz[k];
    }
}

static void corr_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *x = em_node_get(t, (em_var){self->in[0]});
    if (!x->adj) return;
    size_t m = x->n, K = self->rows;
    const double *z = ((const tr_aux *)self->aux)->part, *c = z + m, *q = z + 2 * m, *g = self->adj;
    /* reverse of L_ij = z_j q_j, q_{j+1} = q_j c_j, L_ii = q_i, with dz/dx = c^2 and
     * dc/dx = -c z: no division, so it stays finite when c underflows */
    for (size_t i = 1; i < K; i++) {
        size_t k0 = i * (i - 1) / 2;
        double qbar = g[i * K + i];
        for (size_t j = i; j-- > 0;) {
            size_t k = k0 + j;
            double gl = g[i * K + j];
            x->adj[k] += gl * q[k] * c[k] * c[k] - qbar * q[k] * c[k] * z[k];
            qbar = gl * z[k] + qbar * c[k];
        }
    }
}

static void ordered_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *x = em_node_get(t, (em_var){self->in[0]});
    if (!x->adj) return;
    const double *e = ((const tr_aux *)self->aux)->part;
    double acc = 0.0;
    for (size_t i = self->n; i-- > 0;) {
        acc += self->adj[i];
        x->adj[i] += acc * e[i];
    }
}

/* The node for old + log|det J(x)|: in[0] = old accumulator, in[1] = x, in[2] = y (only so
 * that a replay recomputes y, and with it ld, first). */
static void logdet_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *old = em_node_get(t, (em_var){self->in[0]}), *x = em_node_get(t, (em_var){self->in[1]});
    double g = self->adj[0];
    if (old->adj) old->adj[0] += g;
    if (x->adj) {
        const double *d = ((const tr_aux *)self->aux)->dld;
        for (size_t i = 0; i < x->n; i++) x->adj[i] += g * d[i];
    }
}

/* y and ld from x; on failure (a non-finite x, ...) the values are NaN, the error is on the
 * tape and the result is 0. */
static int transform_compute(em_tape *t, em_node *o) {
    tr_aux *a = o->aux;
    em_error e = {0};
    if (forward_core(&a->tr, em_node_get(t, (em_var){o->in[0]})->val, a->m, a->n, o->val, &a->ld, a->part, a->dld,
                     &e) == EM_OK)
        return 1;
    em_error full = {0};
    described_error(&a->tr, a->n, &e, &full);
    for (size_t i = 0; i < o->n; i++) o->val[i] = NAN;
    a->ld = NAN;
    em_tape_fail(t, full.status, "%s", full.msg);
    return 0;
}

static void transform_node_forward(em_tape *t, em_node *o) { transform_compute(t, o); }

static void logdet_forward(em_tape *t, em_node *o) {
    o->val[0] = em_node_get(t, (em_var){o->in[0]})->val[0] + ((const tr_aux *)o->aux)->ld;
}

em_var em_transform_forward(em_tape *t, const em_transform *tr, em_var x, em_var *logdet) {
    if (!t) return EM_VAR_INVALID;
    if (!em_var_ok(x)) return EM_VAR_INVALID;
    em_error e = {0};
    if (em_transform_validate(tr, &e) != EM_OK) return em_tape_fail(t, e.status, "%s", e.msg);
    int want_ld = logdet && em_var_ok(*logdet);
    if (want_ld && em_len(t, *logdet) != 1)
        return em_tape_fail(t, EM_ERR_SHAPE, "%s transform: the log-det accumulator has length %zu, need a scalar",
                            em_transform_name(tr->kind), em_len(t, *logdet));
    size_t m = em_len(t, x), n = em_transform_constrained_len(tr, m);
    if (n == 0)
        return em_tape_fail(t, EM_ERR_SHAPE, "%s transform: no constrained value has %zu free values",
                            em_transform_name(tr->kind), m);
    /* the identity needs no node and adds 0 to the log-det */
    if (tr->kind == EM_TRANSFORM_IDENTITY) {
        const double *xv = em_val_(t, x);
        for (size_t i = 0; i < m; i++)
            if (!isfinite(xv[i]))
                return em_tape_fail(t, EM_ERR_NONFINITE, "identity: x[%zu] = %g is not finite", i, xv[i]);
        return x;
    }

    int grad = em_needs_grad(t, x);
    em_backward_fn bw;
    size_t rows = m, cols = 1;
    switch (tr->kind) {
    case EM_TRANSFORM_SIMPLEX: bw = simplex_backward; rows = n; break;
    case EM_TRANSFORM_CORR_CHOLESKY: bw = corr_backward; rows = cols = corr_k_from_len(n); break;
    case EM_TRANSFORM_ORDERED: bw = ordered_backward; break;
    default: /* elementwise: keep x's shape */
        bw = elementwise_backward;
        rows = em_rows(t, x);
        cols = em_cols(t, x);
        break;
    }
    em_arena *a = em_tape_arena(t);
    tr_aux *ta = em_arena_calloc(a, sizeof *ta);
    if (!ta) return em_tape_fail(t, EM_ERR_NOMEM, "%s transform: out of memory", em_transform_name(tr->kind));
    ta->tr = *tr;
    ta->m = m;
    ta->n = n;
    ta->part = grad ? em_arena_alloc(a, aux_len(tr->kind, m) * sizeof(double)) : NULL;
    ta->dld = grad && want_ld ? em_arena_alloc(a, m * sizeof(double)) : NULL;
    if (grad && (!ta->part || (want_ld && !ta->dld)))
        return em_tape_fail(t, EM_ERR_NOMEM, "%s transform: out of memory for its partials", em_transform_name(tr->kind));

    em_var y;
    em_node *ny = em_node_new(t, rows, cols, &x, 1, bw, &y);
    if (!ny) return EM_VAR_INVALID;
    ny->aux = ta;
    ny->forward = transform_node_forward;
    if (!transform_compute(t, ny)) return EM_VAR_INVALID;
    if (!want_ld) return y;

    em_var in[3] = {*logdet, x, y}, out;
    em_node *nl = em_node_new(t, 1, 1, in, 3, logdet_backward, &out);
    if (!nl) return EM_VAR_INVALID;
    nl->aux = ta;
    nl->forward = logdet_forward;
    logdet_forward(t, nl);
    *logdet = out;
    return y;
}
