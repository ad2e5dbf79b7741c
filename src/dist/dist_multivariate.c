/* dist_multivariate.c — multivariate families: MVNormal(loc, scale_tril), LKJCholesky(K, eta)
 * and Dirichlet(concentration), plus the closed-form KL between two MVNormals. Values are
 * whole events (K values, or K×K row-major for LKJ) laid end to end; the log density sums over
 * the events. K is small in practice (a few dozen), so triangular solves are plain loops. */
#include "internal/mathx.h"
#include "internal/dist_impl.h"

#include <stdlib.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_psi.h>

/* z = L⁻¹ r and w = L⁻ᵀ z for a row-major lower-triangular K×K L */
static void tri_solve(const double *L, size_t K, const double *r, double *z) {
    for (size_t i = 0; i < K; i++) {
        double s = r[i];
        for (size_t j = 0; j < i; j++) s -= L[i * K + j] * z[j];
        z[i] = s / L[i * K + i];
    }
}
static void tri_solve_t(const double *L, size_t K, const double *z, double *w) {
    for (size_t ii = K; ii-- > 0;) {
        double s = z[ii];
        for (size_t j = ii + 1; j < K; j++) s -= L[j * K + ii] * w[j];
        w[ii] = s / L[ii * K + ii];
    }
}

/* ---- MVNormal(loc, scale_tril) -------------------------------------------------------------- */

static size_t mvn_event_len(const em_dist *d) { return em_rows(d->tape, d->p[1]); }
static em_support sup_real(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_REAL, -INFINITY, INFINITY}; }

static em_status mvn_check(const em_dist *d, em_error *err) {
    const em_tape *t = d->tape;
    size_t K = em_rows(t, d->p[1]);
    const double *L = em_val_(t, d->p[1]), *mu = em_val_(t, d->p[0]);
    size_t nm = em_len(t, d->p[0]);
    for (size_t i = 0; i < nm; i++)
        if (!isfinite(mu[i])) return em_error_set(err, EM_ERR_DOMAIN, "MVNormal: loc[%zu] = %g must be finite", i, mu[i]);
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) {
            double v = L[i * K + j];
            if (j > i && v != 0.0)
                return em_error_set(err, EM_ERR_DOMAIN,
                                    "MVNormal: scale_tril[%zu,%zu] = %g must be zero (lower triangular)", i, j, v);
            if (j == i && !(isfinite(v) && v > 0.0))
                return em_error_set(err, EM_ERR_DOMAIN, "MVNormal: scale_tril[%zu,%zu] = %g must be positive", i, j, v);
            if (j < i && !isfinite(v))
                return em_error_set(err, EM_ERR_DOMAIN, "MVNormal: scale_tril[%zu,%zu] = %g must be finite", i, j, v);
        }
    return EM_OK;
}

typedef struct {
    size_t K, m;  /* event length, number of events */
    double *z;    /* m×K whitened residuals L⁻¹(x - loc) */
    double *r;    /* scratch: one event's residual */
    em_dist dist; /* what a replay needs (internal/tape.h) */
} mvn_aux;

static void mvn_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    const mvn_aux *a = self->aux;
    em_node *x = em_node_get(t, (em_var){self->in[0]}), *mu = em_node_get(t, (em_var){self->in[1]});
    em_node *Ln = em_node_get(t, (em_var){self->in[2]});
    size_t K = a->K;
    double g = self->adj[0];
    double wbuf[64], *w = K <= 64 ? wbuf : malloc(K * sizeof *w);
    if (!w) return;
    for (size_t e = 0; e < a->m; e++) {
        const double *z = a->z + e * K;
        tri_solve_t(Ln->val, K, z, w); /* w = L⁻ᵀ z = Σ⁻¹ (x - loc) */
        if (x->adj)
            for (size_t i = 0; i < K; i++) x->adj[x->n == K * a->m ? e * K + i : i] -= g * w[i];
        if (mu->adj) {
            size_t off = mu->n == K ? 0 : e * K;
            for (size_t i = 0; i < K; i++) mu->adj[off + i] += g * w[i];
        }
        if (Ln->adj)
            for (size_t i = 0; i < K; i++)
                for (size_t j = 0; j <= i; j++) Ln->adj[i * K + j] += g * w[i] * z[j];
    }
    if (Ln->adj)
        for (size_t i = 0; i < K; i++) Ln->adj[i * K + i] -= g * (double)a->m / Ln->val[i * K + i];
    if (w != wbuf) free(w);
}

/* The parameters, then the value (the order of the messages at creation); 0 when all are
 * fine, else 1 with the reason in *e. */
static int mvn_invalid(const em_dist *d, const em_node *xv, em_error *e) {
    if (mvn_check(d, e) != EM_OK) return 1;
    for (size_t i = 0; i < xv->n; i++)
        if (!isfinite(xv->val[i])) {
            em_error_set(e, EM_ERR_DOMAIN, "MVNormal: value[%zu] = %g is outside the support (-inf, inf)", i, xv->val[i]);
            return 1;
        }
    return 0;
}

/* The log density and the whitened residuals from the inputs' current values (creation and
 * replay); 0 when a parameter or the value is out of its domain, with the reason in *e (the
 * node is then left unset). */
static int mvn_compute(em_tape *t, em_node *o, em_error *e) {
    mvn_aux *a = o->aux;
    const em_node *xv = em_node_get(t, (em_var){o->in[0]});
    if (mvn_invalid(&a->dist, xv, e)) return 0;
    const em_node *mn = em_node_get(t, (em_var){o->in[1]});
    const double *x = xv->val, *mu = mn->val, *L = em_node_get(t, (em_var){o->in[2]})->val;
    size_t K = a->K, m = a->m, nm = mn->n;
    double *z = a->z, *r = a->r;
    double logdiag = 0.0;
    for (size_t i = 0; i < K; i++) logdiag += log(L[i * K + i]);
    double lp = -(double)m * ((double)K * EM_LOG_SQRT_2PI + logdiag);
    for (size_t ev = 0; ev < m; ev++) {
        const double *me = mu + (nm == K ? 0 : ev * K);
        for (size_t i = 0; i < K; i++) r[i] = x[ev * K + i] - me[i];
        tri_solve(L, K, r, z + ev * K);
        for (size_t i = 0; i < K; i++) lp -= 0.5 * z[ev * K + i] * z[ev * K + i];
    }
    o->val[0] = lp;
    return 1;
}

static void mvn_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, mvn_compute); }

static em_var mvn_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    size_t K = mvn_event_len(d), nx = em_len(t, value), nm = em_len(t, d->p[0]);
    if (nx % K) return em_tape_fail(t, EM_ERR_SHAPE, "MVNormal: value length %zu is not a multiple of K = %zu", nx, K);
    size_t m = nx / K;
    if (!(nm == K || nm == nx))
        return em_tape_fail(t, EM_ERR_SHAPE, "MVNormal: loc has length %zu, need %zu or %zu", nm, K, nx);
    em_var in[3] = {value, d->p[0], d->p[1]}, out;
    em_node *o = em_node_new(t, 1, 1, in, 3, mvn_backward, &out);
    if (!o) return EM_VAR_INVALID;
    mvn_aux *a = em_arena_calloc(em_tape_arena(t), sizeof *a);
    double *z = em_arena_alloc(em_tape_arena(t), nx * sizeof(double));
    double *r = em_arena_alloc(em_tape_arena(t), K * sizeof(double));
    if (!a || !z || !r) return em_tape_fail(t, EM_ERR_NOMEM, "MVNormal: out of memory");
    a->K = K;
    a->m = m;
    a->z = z;
    a->r = r;
    a->dist = *d;
    o->aux = a;
    return em_dist_node_finish(t, o, out, mvn_forward, mvn_compute);
}

static em_status mvn_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    em_status st = mvn_check(d, err);
    if (st != EM_OK) return st;
    size_t K = mvn_event_len(d), nm = em_len(d->tape, d->p[0]);
    const double *L = em_val_(d->tape, d->p[1]), *mu = em_val_(d->tape, d->p[0]);
    double ebuf[64], *eps = K <= 64 ? ebuf : malloc(K * sizeof *eps);
    if (!eps) return em_error_set(err, EM_ERR_NOMEM, "MVNormal sample: out of memory");
    for (size_t ev = 0; ev < n / K; ev++) {
        const double *me = mu + (nm == K ? 0 : (ev * K) % nm);
        for (size_t i = 0; i < K; i++) eps[i] = gsl_ran_gaussian_ziggurat(r, 1.0);
        for (size_t i = 0; i < K; i++) {
            double s = me[i];
            for (size_t j = 0; j <= i; j++) s += L[i * K + j] * eps[j];
            out[ev * K + i] = s;
        }
    }
    if (eps != ebuf) free(eps);
    return EM_OK;
}

typedef struct {
    size_t K;
    double *eps;
} mvn_rs_aux;

static void mvn_rs_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    const mvn_rs_aux *a = self->aux;
    em_node *mu = em_node_get(t, (em_var){self->in[0]}), *Ln = em_node_get(t, (em_var){self->in[1]});
    size_t K = a->K, m = self->n / K;
    const double *g = self->adj;
    for (size_t ev = 0; ev < m; ev++) {
        const double *ge = g + ev * K, *e = a->eps + ev * K;
        if (mu->adj)
            for (size_t i = 0; i < K; i++) mu->adj[(ev * K + i) % mu->n] += ge[i];
        if (Ln->adj)
            for (size_t i = 0; i < K; i++)
                for (size_t j = 0; j <= i; j++) Ln->adj[i * K + j] += ge[i] * e[j];
    }
}

/* x = loc + L·ε, ε ~ N(0, I): one node over all n/K draws, ε kept for the backward pass. */
static em_var mvn_rsample(const em_dist *d, em_rng *r, size_t n) {
    em_tape *t = d->tape;
    em_error e = {0};
    if (mvn_check(d, &e) != EM_OK) return em_tape_fail(t, e.status, "%s", e.msg);
    size_t K = mvn_event_len(d), nm = em_len(t, d->p[0]);
    if (n % nm) return em_tape_fail(t, EM_ERR_SHAPE, "MVNormal rsample: n = %zu is not a multiple of loc's length %zu", n, nm);
    em_var in[2] = {d->p[0], d->p[1]}, out;
    em_node *o = em_node_new(t, n, 1, in, 2, mvn_rs_backward, &out);
    if (!o) return EM_VAR_INVALID;
    mvn_rs_aux *a = em_arena_alloc(em_tape_arena(t), sizeof *a);
    double *eps = em_arena_alloc(em_tape_arena(t), n * sizeof(double));
    if (!a || !eps) return em_tape_fail(t, EM_ERR_NOMEM, "MVNormal rsample: out of memory");
    a->K = K;
    a->eps = eps;
    o->aux = a;
    const double *L = em_val_(t, d->p[1]), *mu = em_val_(t, d->p[0]);
    for (size_t i = 0; i < n; i++) eps[i] = gsl_ran_gaussian_ziggurat(r, 1.0);
    for (size_t ev = 0; ev < n / K; ev++)
        for (size_t i = 0; i < K; i++) {
            double s = mu[(ev * K + i) % nm];
            for (size_t j = 0; j <= i; j++) s += L[i * K + j] * eps[ev * K + j];
            o->val[ev * K + i] = s;
        }
    return out;
}

static em_status mvn_moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    em_status st = mvn_check(d, err);
    if (st != EM_OK) return st;
    size_t K = mvn_event_len(d), nm = em_len(d->tape, d->p[0]);
    const double *L = em_val_(d->tape, d->p[1]), *mu = em_val_(d->tape, d->p[0]);
    for (size_t i = 0; i < n; i++) {
        if (!var) {
            out[i] = mu[i % nm];
            continue;
        }
        size_t row = i % K;
        double s = 0.0;
        for (size_t j = 0; j <= row; j++) s += L[row * K + j] * L[row * K + j];
        out[i] = s;
    }
    return EM_OK;
}
static em_status mvn_mean(const em_dist *d, double *out, size_t n, em_error *err) { return mvn_moment(d, out, n, err, 0); }
static em_status mvn_var(const em_dist *d, double *out, size_t n, em_error *err) { return mvn_moment(d, out, n, err, 1); }

const em_dist_ops em_ops_mvnormal = {"MVNormal", 2, {"loc", "scale_tril"}, 0, 1, mvn_event_len, sup_real,
                                     mvn_lp, mvn_sample, mvn_rsample, mvn_mean, mvn_var, NULL, NULL, NULL};

em_dist em_dist_mvnormal(em_tape *t, em_var loc, em_var scale_tril) {
    em_dist d;
    memset(&d, 0, sizeof d);
    d.tape = t;
    for (int k = 0; k < 4; k++) d.p[k] = EM_VAR_INVALID;
    em_var p[2] = {loc, scale_tril};
    if (!t || !em_inputs_ok(p, 2)) return d;
    size_t K = em_rows(t, scale_tril), nm = em_len(t, loc);
    if (em_cols(t, scale_tril) != K) {
        em_tape_fail(t, EM_ERR_SHAPE, "MVNormal: scale_tril is %zux%zu, need a square matrix", K, em_cols(t, scale_tril));
        return d;
    }
    if (!(nm == K || (nm > K && nm % K == 0))) {
        em_tape_fail(t, EM_ERR_SHAPE, "MVNormal: loc has length %zu, scale_tril is %zux%zu", nm, K, K);
        return d;
    }
    d.p[0] = loc;
    d.p[1] = scale_tril;
    d.ops = &em_ops_mvnormal;
    d.batch_len = nm;
    return d;
}

/* KL(N(m1, L1L1ᵀ) || N(m2, L2L2ᵀ)) = ½[‖A‖²_F + ‖b‖² - K] + Σ log L2_ii - Σ log L1_ii with
 * A = L2⁻¹L1 and b = L2⁻¹(m1 - m2). Partials: d/dm1 = L2⁻ᵀb, d/dL1 = tril(L2⁻ᵀA) - diag(1/L1),
 * d/dL2 = -tril(L2⁻ᵀ(AAᵀ + bbᵀ)) + diag(1/L2). */
typedef struct {
    size_t K;
    double *A, *b; /* A column-by-column: A[:, j] = L2⁻¹ L1[:, j], stored row-major K×K */
    double *col;   /* scratch: 2K */
    em_dist p, q;  /* what a replay needs (the messages) */
} klmvn_aux;

static void kl_mvn_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    const klmvn_aux *a = self->aux;
    size_t K = a->K;
    em_node *m1 = em_node_get(t, (em_var){self->in[0]}), *L1 = em_node_get(t, (em_var){self->in[1]});
    em_node *m2 = em_node_get(t, (em_var){self->in[2]}), *L2 = em_node_get(t, (em_var){self->in[3]});
    double g = self->adj[0];
    double *w = malloc(K * sizeof *w), *col = malloc(K * sizeof *col), *M = malloc(K * K * sizeof *M);
    if (!w || !col || !M) goto done;
    tri_solve_t(L2->val, K, a->b, w); /* L2⁻ᵀ b */
    for (size_t i = 0; i < K; i++) {
        if (m1->adj) m1->adj[i] += g * w[i];
        if (m2->adj) m2->adj[i] -= g * w[i];
    }
    /* M = L2⁻ᵀ A, column by column */
    for (size_t j = 0; j < K; j++) {
        for (size_t i = 0; i < K; i++) col[i] = a->A[i * K + j];
        tri_solve_t(L2->val, K, col, w);
        for (size_t i = 0; i < K; i++) M[i * K + j] = w[i];
    }
    if (L1->adj)
        for (size_t i = 0; i < K; i++) {
            for (size_t j = 0; j <= i; j++) L1->adj[i * K + j] += g * M[i * K + j];
            L1->adj[i * K + i] -= g / L1->val[i * K + i];
        }
    if (L2->adj) {
        tri_solve_t(L2->val, K, a->b, w);
        for (size_t i = 0; i < K; i++) {
            for (size_t j = 0; j <= i; j++) {
                double s = 0.0; /* (M Aᵀ)_ij + w_i b_j */
                for (size_t k = 0; k < K; k++) s += M[i * K + k] * a->A[j * K + k];
                L2->adj[i * K + j] -= g * (s + w[i] * a->b[j]);
            }
            L2->adj[i * K + i] += g / L2->val[i * K + i];
        }
    }
done:
    free(w);
    free(col);
    free(M);
}

/* The KL and A, b from the inputs' current values (creation and replay); 0 when a parameter
 * of either distribution is out of its domain, with the reason in *e (the node is then left
 * unset). */
static int kl_mvn_compute(em_tape *t, em_node *o, em_error *e) {
    klmvn_aux *a = o->aux;
    if (mvn_check(&a->p, e) != EM_OK || mvn_check(&a->q, e) != EM_OK) return 0;
    size_t K = a->K;
    double *A = a->A, *b = a->b, *col = a->col;
    const double *m1 = em_node_get(t, (em_var){o->in[0]})->val, *L1 = em_node_get(t, (em_var){o->in[1]})->val;
    const double *m2 = em_node_get(t, (em_var){o->in[2]})->val, *L2 = em_node_get(t, (em_var){o->in[3]})->val;
    double kl = -0.5 * (double)K;
    for (size_t j = 0; j < K; j++) {
        for (size_t i = 0; i < K; i++) col[i] = L1[i * K + j];
        tri_solve(L2, K, col, col + K);
        for (size_t i = 0; i < K; i++) {
            A[i * K + j] = col[K + i];
            kl += 0.5 * col[K + i] * col[K + i];
        }
    }
    for (size_t i = 0; i < K; i++) col[i] = m1[i] - m2[i];
    tri_solve(L2, K, col, b);
    for (size_t i = 0; i < K; i++) kl += 0.5 * b[i] * b[i] + log(L2[i * K + i]) - log(L1[i * K + i]);
    o->val[0] = kl;
    return 1;
}

/* Not a log density: a bad parameter during a replay gives NaN (creation gives no node). */
static void kl_mvn_forward(em_tape *t, em_node *o) {
    em_error e = {0};
    if (kl_mvn_compute(t, o, &e)) return;
    o->val[0] = NAN;
    em_tape_fail(t, e.status, "KL: %s", e.msg);
}

em_var em_kl_mvn(const em_dist *p, const em_dist *q) {
    em_tape *t = p->tape;
    size_t K = mvn_event_len(p);
    if (mvn_event_len(q) != K || em_len(t, p->p[0]) != K || em_len(t, q->p[0]) != K)
        return em_tape_fail(t, EM_ERR_SHAPE, "KL(MVNormal || MVNormal): need one K-vector loc each and equal K");
    em_var in[4] = {p->p[0], p->p[1], q->p[0], q->p[1]}, out;
    em_node *o = em_node_new(t, 1, 1, in, 4, kl_mvn_backward, &out);
    if (!o) return EM_VAR_INVALID;
    klmvn_aux *a = em_arena_alloc(em_tape_arena(t), sizeof *a);
    double *A = em_arena_alloc(em_tape_arena(t), K * K * sizeof(double));
    double *b = em_arena_alloc(em_tape_arena(t), K * sizeof(double));
    double *col = em_arena_alloc(em_tape_arena(t), 2 * K * sizeof(double));
    if (!a || !A || !b || !col) return em_tape_fail(t, EM_ERR_NOMEM, "KL(MVNormal || MVNormal): out of memory");
    a->K = K;
    a->A = A;
    a->b = b;
    a->col = col;
    a->p = *p;
    a->q = *q;
    o->aux = a;
    o->forward = kl_mvn_forward;
    em_error e = {0};
    if (kl_mvn_compute(t, o, &e)) return out;
    o->backward = NULL; /* abandoned: the error is on the tape and the result is invalid, as before */
    return em_tape_fail(t, e.status, "KL: %s", e.msg);
}

/* ---- LKJCholesky(K, eta) -------------------------------------------------------------------- */

/* Density on the strictly-lower elements of the Cholesky factor L of a K×K correlation matrix
 * (Lewandowski, Kurowicka & Joe 2009, the onion method): row i (0-based, i >= 1) holds
 * w = L[i, :i] in the unit ball of R^i with |w|² ~ Beta(i/2, β_i), β_i = η + (K-1-i)/2, and a
 * uniform direction. Changing variables from (|w|², direction) to w gives
 *   log p(row i) = 2(β_i - 1)·log L_ii + em_math_lgamma(i/2) - (i/2)·log π - lbeta(i/2, β_i),
 * i.e. Σ_i (K - i' + 2η - 2)·log L_i'i' (1-based i') plus the normaliser, as in Stan's
 * lkj_corr_cholesky. */
static size_t lkj_K(const em_dist *d) { return d->data_len; }
static size_t lkj_event_len(const em_dist *d) { return d->data_len * d->data_len; }
static em_support lkj_support(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_CORR_CHOLESKY, -1.0, 1.0}; }

static double lkj_norm(size_t K, double eta, double *deta) {
    double c = 0.0, dc = 0.0;
    for (size_t i = 1; i < K; i++) {
        double a = 0.5 * (double)i, b = eta + 0.5 * (double)(K - 1 - i);
        c += em_math_lgamma(a) - a * EM_LOG_PI - (em_math_lgamma(a) + em_math_lgamma(b) - em_math_lgamma(a + b));
        if (deta) dc -= gsl_sf_psi(b) - gsl_sf_psi(a + b);
    }
    if (deta) *deta = dc;
    return c;
}

static em_status lkj_check_eta(const em_dist *d, em_error *err) {
    double eta = em_val_scalar_(d->tape, d->p[0]);
    if (!(isfinite(eta) && eta > 0))
        return em_error_set(err, EM_ERR_DOMAIN, "LKJCholesky: eta[0] = %g must be positive", eta);
    return EM_OK;
}

typedef struct {
    double deta;  /* dlp/deta */
    em_dist dist; /* what a replay needs (K, the message) */
} lkj_aux;

static void lkj_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *x = em_node_get(t, (em_var){self->in[0]}), *eta = em_node_get(t, (em_var){self->in[1]});
    const double *deta = &((const lkj_aux *)self->aux)->deta;
    size_t K = (size_t)self->c, m = x->n / (K * K);
    double g = self->adj[0], e = eta->val[0];
    if (eta->adj) eta->adj[0] += g * deta[0];
    if (x->adj)
        for (size_t ev = 0; ev < m; ev++)
            for (size_t i = 1; i < K; i++) {
                size_t at = ev * K * K + i * K + i;
                x->adj[at] += g * ((double)(K - i - 1) + 2.0 * e - 2.0) / x->val[at];
            }
}

/* eta, then the value row by row (the order of the messages at creation); 0 when all are fine,
 * else 1 with the reason in *e. */
static int lkj_invalid(const em_dist *d, const em_node *xv, em_error *e) {
    if (lkj_check_eta(d, e) != EM_OK) return 1;
    size_t K = lkj_K(d), KK = K * K, m = xv->n / KK;
    const double *x = xv->val;
    for (size_t ev = 0; ev < m; ev++)
        for (size_t i = 0; i < K; i++) {
            double ss = 0.0;
            for (size_t j = 0; j < K; j++) {
                double v = x[ev * KK + i * K + j];
                if ((j > i && v != 0.0) || (j == i && !(v > 0.0)) || !isfinite(v)) {
                    em_error_set(e, EM_ERR_DOMAIN,
                                 "LKJCholesky: value[%zu] (row %zu, column %zu) = %g is outside the support "
                                 "(lower triangular, positive diagonal)", ev * KK + i * K + j, i, j, v);
                    return 1;
                }
                ss += v * v;
            }
            if (fabs(ss - 1.0) > 1e-8) {
                em_error_set(e, EM_ERR_DOMAIN,
                             "LKJCholesky: value row %zu of event %zu has squared norm %.12g, not 1 (not a correlation "
                             "Cholesky factor)", i, ev, ss);
                return 1;
            }
        }
    return 0;
}

/* The log density and dlp/deta from the inputs' current values (creation and replay); 0 when
 * eta or the value is out of its domain, with the reason in *e (the node is then left unset). */
static int lkj_compute(em_tape *t, em_node *o, em_error *e) {
    lkj_aux *a = o->aux;
    const em_node *xv = em_node_get(t, (em_var){o->in[0]});
    if (lkj_invalid(&a->dist, xv, e)) return 0;
    size_t K = lkj_K(&a->dist), KK = K * K, m = xv->n / KK;
    const double *x = xv->val;
    double eta = em_node_get(t, (em_var){o->in[1]})->val[0], dn;
    double lp = (double)m * lkj_norm(K, eta, &dn), dsum = (double)m * dn;
    for (size_t ev = 0; ev < m; ev++)
        for (size_t i = 1; i < K; i++) {
            double ld = log(x[ev * KK + i * K + i]);
            lp += ((double)(K - i - 1) + 2.0 * eta - 2.0) * ld;
            dsum += 2.0 * ld;
        }
    a->deta = dsum;
    o->val[0] = lp;
    return 1;
}

static void lkj_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, lkj_compute); }

static em_var lkj_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    size_t K = lkj_K(d), KK = K * K, nx = em_len(t, value);
    if (nx % KK) return em_tape_fail(t, EM_ERR_SHAPE, "LKJCholesky: value length %zu is not a multiple of K*K = %zu", nx, KK);
    em_var in[2] = {value, d->p[0]}, out;
    em_node *o = em_node_new(t, 1, 1, in, 2, lkj_backward, &out);
    if (!o) return EM_VAR_INVALID;
    lkj_aux *a = em_arena_calloc(em_tape_arena(t), sizeof *a);
    if (!a) return em_tape_fail(t, EM_ERR_NOMEM, "LKJCholesky: out of memory");
    a->dist = *d;
    o->aux = a;
    o->c = (double)K;
    return em_dist_node_finish(t, o, out, lkj_forward, lkj_compute);
}

static em_status lkj_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    em_status st = lkj_check_eta(d, err);
    if (st != EM_OK) return st;
    size_t K = lkj_K(d), KK = K * K;
    double eta = em_val_scalar_(d->tape, d->p[0]);
    for (size_t ev = 0; ev < n / KK; ev++) {
        double *L = out + ev * KK;
        memset(L, 0, KK * sizeof *L);
        L[0] = 1.0;
        for (size_t i = 1; i < K; i++) {
            double y = gsl_ran_beta(r, 0.5 * (double)i, eta + 0.5 * (double)(K - 1 - i));
            double nrm = 0.0;
            for (size_t j = 0; j < i; j++) {
                L[i * K + j] = gsl_ran_gaussian_ziggurat(r, 1.0);
                nrm += L[i * K + j] * L[i * K + j];
            }
            double sc = sqrt(y / nrm);
            for (size_t j = 0; j < i; j++) L[i * K + j] *= sc;
            L[i * K + i] = sqrt(1.0 - y);
        }
    }
    return EM_OK;
}

static em_status lkj_moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    em_status st = lkj_check_eta(d, err);
    if (st != EM_OK) return st;
    /* Moments of the Cholesky factor's elements have no simple closed form; report the
     * identity (the mean correlation matrix) for the mean and NaN for the variance. */
    size_t K = lkj_K(d);
    for (size_t i = 0; i < n; i++) {
        size_t a = (i % (K * K)) / K, b = i % K;
        out[i] = var ? NAN : (a == b ? 1.0 : 0.0);
    }
    return EM_OK;
}
static em_status lkj_mean(const em_dist *d, double *out, size_t n, em_error *err) { return lkj_moment(d, out, n, err, 0); }
static em_status lkj_var(const em_dist *d, double *out, size_t n, em_error *err) { return lkj_moment(d, out, n, err, 1); }

const em_dist_ops em_ops_lkj_cholesky = {"LKJCholesky", 1, {"eta"}, 0, 0, lkj_event_len, lkj_support, lkj_lp,
                                         lkj_sample, NULL, lkj_mean, lkj_var, NULL, NULL, NULL};

em_dist em_dist_lkj_cholesky(em_tape *t, size_t K, em_var eta) {
    em_dist d = em_dist_make(t, &em_ops_lkj_cholesky, &eta, 1);
    if (!d.ops) return d;
    if (K < 2 || em_len(t, eta) != 1) {
        em_tape_fail(t, EM_ERR_SHAPE, "LKJCholesky: need K >= 2 (got %zu) and a scalar eta (length %zu)", K,
                     em_len(t, eta));
        d.ops = NULL;
        return d;
    }
    d.data_len = K; /* K lives here: there is no data array */
    d.batch_len = 1;
    return d;
}

/* ---- Dirichlet(concentration) ------------------------------------------------------------------ */

static size_t dir_K(const em_dist *d) { return em_len(d->tape, d->p[0]); }
static em_support dir_support(const em_dist *d) { (void)d; return (em_support){EM_SUPPORT_SIMPLEX, 0.0, 1.0}; }

static em_status dir_check(const em_dist *d, em_error *err) {
    const double *a = em_val_(d->tape, d->p[0]);
    for (size_t k = 0; k < dir_K(d); k++)
        if (!(isfinite(a[k]) && a[k] > 0))
            return em_error_set(err, EM_ERR_DOMAIN, "Dirichlet: concentration[%zu] = %g must be positive", k, a[k]);
    return EM_OK;
}

typedef struct {
    double *dA;   /* dlp/dconcentration (K), or NULL when the concentration needs no gradient */
    em_dist dist; /* what a replay needs (the message) */
} dir_aux;

static void dir_backward(em_tape *t, em_node *self) {
    em_adj_prepare_inputs(t, self); /* adds: zero fresh adjoints (internal/tape.h) */
    em_node *x = em_node_get(t, (em_var){self->in[0]}), *a = em_node_get(t, (em_var){self->in[1]});
    const double *dA = ((const dir_aux *)self->aux)->dA; /* Σ over events of log x_k plus the ψ terms */
    size_t K = a->n, m = x->n / K;
    double g = self->adj[0];
    if (a->adj && dA)
        for (size_t k = 0; k < K; k++) a->adj[k] += g * dA[k];
    if (x->adj)
        for (size_t ev = 0; ev < m; ev++)
            for (size_t k = 0; k < K; k++) x->adj[ev * K + k] += g * (a->val[k] - 1.0) / x->val[ev * K + k];
}

/* The concentration, then the value event by event (the order of the messages at creation);
 * 0 when all are fine, else 1 with the reason in *e. */
static int dir_invalid(const em_dist *d, const em_node *xv, em_error *e) {
    if (dir_check(d, e) != EM_OK) return 1;
    size_t K = dir_K(d), m = xv->n / K;
    const double *x = xv->val;
    for (size_t ev = 0; ev < m; ev++) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++) {
            double v = x[ev * K + k];
            if (!(v > 0.0 && v <= 1.0)) {
                em_error_set(e, EM_ERR_DOMAIN, "Dirichlet: value[%zu] = %g is outside the support (the simplex)",
                             ev * K + k, v);
                return 1;
            }
            s += v;
        }
        if (fabs(s - 1.0) > 1e-8 * (double)K) {
            em_error_set(e, EM_ERR_DOMAIN, "Dirichlet: event %zu sums to %.12g, not 1 (outside the simplex)", ev, s);
            return 1;
        }
    }
    return 0;
}

/* The log density and dlp/dconcentration from the inputs' current values (creation and
 * replay); 0 when the concentration or the value is out of its domain, with the reason in *e
 * (the node is then left unset). */
static int dir_compute(em_tape *t, em_node *o, em_error *e) {
    dir_aux *da = o->aux;
    const em_node *xv = em_node_get(t, (em_var){o->in[0]});
    if (dir_invalid(&da->dist, xv, e)) return 0;
    const double *x = xv->val, *a = em_node_get(t, (em_var){o->in[1]})->val;
    size_t K = dir_K(&da->dist), m = xv->n / K;
    double *dA = da->dA;
    double A = 0.0, c = 0.0;
    for (size_t k = 0; k < K; k++) {
        A += a[k];
        c -= em_math_lgamma(a[k]);
    }
    c += em_math_lgamma(A);
    double lp = (double)m * c;
    double psiA = dA ? gsl_sf_psi(A) : 0.0;
    for (size_t k = 0; k < K; k++) {
        double sl = 0.0;
        for (size_t ev = 0; ev < m; ev++) sl += log(x[ev * K + k]);
        lp += (a[k] - 1.0) * sl;
        if (dA) dA[k] = sl + (double)m * (psiA - gsl_sf_psi(a[k]));
    }
    o->val[0] = lp;
    return 1;
}

static void dir_forward(em_tape *t, em_node *o) { em_dist_node_replay(t, o, dir_compute); }

static em_var dir_lp(const em_dist *d, em_var value) {
    em_tape *t = d->tape;
    size_t K = dir_K(d), nx = em_len(t, value);
    if (nx % K) return em_tape_fail(t, EM_ERR_SHAPE, "Dirichlet: value length %zu is not a multiple of K = %zu", nx, K);
    em_var in[2] = {value, d->p[0]}, out;
    em_node *o = em_node_new(t, 1, 1, in, 2, dir_backward, &out);
    if (!o) return EM_VAR_INVALID;
    dir_aux *a = em_arena_calloc(em_tape_arena(t), sizeof *a);
    if (!a) return em_tape_fail(t, EM_ERR_NOMEM, "Dirichlet: out of memory");
    a->dist = *d;
    /* the ψ terms only when the concentration needs a gradient (which inputs do is fixed for
     * the tape's life, so a replay makes the same choice) */
    if (o->adj && em_node_get(t, d->p[0])->adj && !(a->dA = em_arena_alloc(em_tape_arena(t), K * sizeof(double))))
        return em_tape_fail(t, EM_ERR_NOMEM, "Dirichlet: out of memory");
    o->aux = a;
    return em_dist_node_finish(t, o, out, dir_forward, dir_compute);
}

static em_status dir_sample(const em_dist *d, em_rng *r, double *out, size_t n, em_error *err) {
    em_status st = dir_check(d, err);
    if (st != EM_OK) return st;
    size_t K = dir_K(d);
    const double *a = em_val_(d->tape, d->p[0]);
    for (size_t ev = 0; ev < n / K; ev++) gsl_ran_dirichlet(r, K, a, out + ev * K);
    return EM_OK;
}

static em_status dir_moment(const em_dist *d, double *out, size_t n, em_error *err, int var) {
    em_status st = dir_check(d, err);
    if (st != EM_OK) return st;
    size_t K = dir_K(d);
    const double *a = em_val_(d->tape, d->p[0]);
    double A = 0.0;
    for (size_t k = 0; k < K; k++) A += a[k];
    for (size_t i = 0; i < n; i++) {
        double m = a[i % K] / A;
        out[i] = var ? m * (1.0 - m) / (A + 1.0) : m;
    }
    return EM_OK;
}
static em_status dir_mean(const em_dist *d, double *out, size_t n, em_error *err) { return dir_moment(d, out, n, err, 0); }
static em_status dir_var(const em_dist *d, double *out, size_t n, em_error *err) { return dir_moment(d, out, n, err, 1); }

const em_dist_ops em_ops_dirichlet = {"Dirichlet", 1, {"concentration"}, 0, 0, dir_K, dir_support, dir_lp,
                                      dir_sample, NULL, dir_mean, dir_var, NULL, NULL, NULL};

em_dist em_dist_dirichlet(em_tape *t, em_var concentration) {
    em_dist d = em_dist_make(t, &em_ops_dirichlet, &concentration, 1);
    if (d.ops && em_len(t, concentration) < 2) {
        em_tape_fail(t, EM_ERR_SHAPE, "Dirichlet: concentration needs at least 2 elements, has %zu",
                     em_len(t, concentration));
        d.ops = NULL;
    }
    if (d.ops) d.batch_len = 1;
    return d;
}
