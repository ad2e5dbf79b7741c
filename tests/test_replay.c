/* test_replay.c — replaying a recorded tape (internal/tape.h) and a model density's replay
 * (model_logdensity.c): the same numbers, bit for bit, as building the tape or running the
 * model again; errors named during a replay as during a run; and no replay when a run could
 * have depended on θ in a way the tape does not show. */
#include "util/posteriordb_models.h"
#include "util/testutil.h"

#include "internal/tape.h"
#include "rugged_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- every replayable op: replay at x2 of a tape built at x1 == a tape built at x2 ----------- */

enum {
    OP_UNARY_FIRST,
    OP_UNARY_LAST = OP_UNARY_FIRST + 13,
    OP_BINARY_FIRST,
    OP_BINARY_LAST = OP_BINARY_FIRST + 11, /* 4 ops × 3 broadcast layouts */
    OP_POW, OP_SUM, OP_DOT, OP_GATHER, OP_SLICE, OP_CONCAT, OP_CONCAT_WIDE, OP_RESHAPE, OP_ADD_MANY,
    OP_MATVEC, OP_MATVEC_ADD, OP_MATMUL, OP_CHOLESKY, OP_TRISOLVE, OP_LOGDET,
    OP_LOG_SUM_EXP, OP_LOG_SUM_EXP2, OP_LOG_DIFF_EXP, OP_PHI, OP_LOG_PHI, OP_LOG1M_EXP, OP_LOG1M_INV_LOGIT,
    OP_TR_FIRST,
    OP_TR_LAST = OP_TR_FIRST + 7, /* positive .. ordered */
    OP_DIST_FIRST,
    OP_DIST_LAST = OP_DIST_FIRST + 37,
    OP_COUNT
};

#define N 7 /* vector length of the test inputs */

static const double DATA[N] = {0.3, -1.2, 2.5, 0.0, 1.1, -0.4, 0.8};
static const double BOOLS[N] = {1, 0, 1, 1, 0, 0, 1};
static const double COUNTS[N] = {0, 3, 1, 7, 2, 0, 4};
static const size_t IDX[5] = {6, 0, 3, 3, 1};
static const double TOTALS[N] = {3, 5, 1, 9, 4, 2, 6}; /* >= COUNTS */
static const double CATS[N] = {0, 3, 6, 2, 2, 1, 5};
static const double CATS_B[2] = {2, 0};
static const double CATS_ORD[N] = {0, 3, 1, 2, 2, 0, 3};
static const double CATS_ORD3[N] = {0, 2, 1, 2, 2, 0, 1};
static const double XMAT[N * 3] = {1, 0.5, -1, 0, 1.5, 2, -0.3, 0.2, 1, 2, -1, 0.5, 0.1, 0.1, 0.1, -2, 1, 0, 0.7, -0.7, 0.3};

static em_var unary(em_tape *t, int k, em_var a) {
    switch (k) {
    case 0: return em_op_neg(t, a);
    case 1: return em_op_exp(t, a);
    case 2: return em_op_log(t, a);
    case 3: return em_op_log1p(t, a);
    case 4: return em_op_expm1(t, a);
    case 5: return em_op_sqrt(t, a);
    case 6: return em_op_square(t, a);
    case 7: return em_op_tanh(t, a);
    case 8: return em_op_sigmoid(t, a);
    case 9: return em_op_softplus(t, a);
    case 10: return em_op_log_sigmoid(t, a);
    case 11: return em_op_lgamma(t, a);
    case 12: return em_op_digamma(t, a);
    default: return em_op_pow(t, a, 2.5);
    }
}

static em_var binary(em_tape *t, int k, em_var a, em_var b) {
    switch (k) {
    case 0: return em_op_add(t, a, b);
    case 1: return em_op_sub(t, a, b);
    case 2: return em_op_mul(t, a, b);
    default: return em_op_div(t, a, b);
    }
}

/* A 3×3 lower-triangular matrix with a positive diagonal, built by ops: from_v = 1: diagonal
 * exp(v[0..2]), below it v[3..5]; from_v = 0: diagonal 0.5 + exp(v[4]), 1, exp(v[6]), below it
 * v[1], v[2], v[3]. */
static em_var tril3(em_tape *t, em_var v, int from_v) {
    em_var z = em_scalar(t, 0.0), e[9];
    if (from_v) {
        em_var dg = em_op_exp(t, em_op_slice(t, v, 0, 3));
        for (size_t i = 0; i < 3; i++) e[4 * i] = em_op_slice(t, dg, i, 1);
        e[3] = em_op_slice(t, v, 3, 1);
        e[6] = em_op_slice(t, v, 4, 1);
        e[7] = em_op_slice(t, v, 5, 1);
    } else {
        e[0] = em_op_add(t, em_scalar(t, 0.5), em_op_exp(t, em_op_slice(t, v, 4, 1)));
        e[4] = em_scalar(t, 1.0);
        e[8] = em_op_exp(t, em_op_slice(t, v, 6, 1));
        e[3] = em_op_slice(t, v, 1, 1);
        e[6] = em_op_slice(t, v, 2, 1);
        e[7] = em_op_slice(t, v, 3, 1);
    }
    e[1] = e[2] = e[5] = z;
    return em_op_reshape(t, em_op_concat(t, e, 9), 3, 3);
}

static em_var dist_lp(em_tape *t, int k, em_var v, em_var s, em_var p) {
    em_var c = em_const(t, DATA, N);
    em_dist d;
    switch (k) {
    case 0: d = em_dist_normal(t, v, p); return em_dist_log_prob(&d, c);             /* fast, vector loc */
    case 1: d = em_dist_normal(t, s, p); return em_dist_log_prob(&d, v);             /* fast, vector value */
    case 2: d = em_dist_normal(t, s, em_op_exp(t, v)); return em_dist_log_prob(&d, c); /* general: vector scale */
    case 3: d = em_dist_half_normal(t, p); return em_dist_log_prob(&d, em_op_exp(t, v));
    case 4: d = em_dist_lognormal(t, s, p); return em_dist_log_prob(&d, em_op_exp(t, v));
    case 5: d = em_dist_gamma(t, p, em_op_exp(t, s)); return em_dist_log_prob(&d, em_op_exp(t, v));
    case 6: d = em_dist_student_t(t, em_op_add(t, p, em_scalar(t, 2.0)), v, p); return em_dist_log_prob(&d, c);
    case 7: d = em_dist_uniform(t, em_scalar(t, -10.0), em_op_add(t, p, em_scalar(t, 10.0))); return em_dist_log_prob(&d, v);
    case 8: d = em_dist_bernoulli_logit(t, v); return em_dist_log_prob(&d, em_const(t, BOOLS, N));
    case 9: d = em_dist_poisson_log(t, v); return em_dist_log_prob(&d, em_const(t, COUNTS, N));
    case 10: d = em_dist_neg_binomial2(t, em_op_exp(t, v), p); return em_dist_log_prob(&d, em_const(t, COUNTS, N));
    case 11:
    case 12:
    case 13: {
        /* the GLMs: beta = the first three of v, alpha = s, sigma = p */
        em_var X = em_const_matrix(t, XMAT, N, 3), beta = em_op_slice(t, v, 0, 3);
        if (k == 11) d = em_dist_normal_id_glm(t, X, s, beta, p);                       /* one pass */
        else if (k == 12) d = em_dist_normal_id_glm(t, X, em_op_add(t, v, s), beta, p); /* vector alpha */
        else d = em_dist_bernoulli_logit_glm(t, X, s, beta);
        return em_dist_log_prob(&d, em_const(t, k == 13 ? BOOLS : DATA, N));
    }
    case 14: /* MVNormal: loc and L from v, two constant events */
        d = em_dist_mvnormal(t, em_op_slice(t, v, 0, 3), tril3(t, v, 1));
        return em_dist_log_prob(&d, em_const(t, DATA, 6));
    case 15: /* MVNormal: the value from v, one loc per event, L from s and p */
        d = em_dist_mvnormal(t, em_const(t, DATA + 1, 6), tril3(t, v, 0));
        return em_dist_log_prob(&d, em_op_slice(t, v, 1, 6));
    case 16: { /* LKJCholesky on a correlation Cholesky factor made from v, eta = p */
        static const em_transform cc = {EM_TRANSFORM_CORR_CHOLESKY, 0, 0};
        d = em_dist_lkj_cholesky(t, 4, p);
        return em_dist_log_prob(&d, em_transform_forward(t, &cc, em_op_slice(t, v, 0, 6), NULL));
    }
    case 17: { /* Dirichlet on a simplex made from v (K = 8), concentration from v and s */
        static const em_transform sx = {EM_TRANSFORM_SIMPLEX, 0, 0};
        em_var parts[2] = {s, v};
        d = em_dist_dirichlet(t, em_op_exp(t, em_op_concat(t, parts, 2)));
        return em_dist_log_prob(&d, em_transform_forward(t, &sx, v, NULL));
    }
    case 18: /* BinomialLogit: vector logits, one count per element */
        d = em_dist_binomial_logit(t, TOTALS, N, v);
        return em_dist_log_prob(&d, em_const(t, COUNTS, N));
    case 19: { /* BinomialLogit: a scalar logit (its partial summed), one total count */
        static const double ten = 10.0;
        d = em_dist_binomial_logit(t, &ten, 1, s);
        return em_dist_log_prob(&d, em_const(t, COUNTS, N));
    }
    case 20: /* CategoricalLogit: one K = 7 vector of logits for every value */
        d = em_dist_categorical_logit(t, v);
        return em_dist_log_prob(&d, em_const(t, CATS, N));
    case 21: /* CategoricalLogit: a 2×3 matrix of logits, one row per value */
        d = em_dist_categorical_logit(t, em_op_reshape(t, em_op_slice(t, v, 0, 6), 2, 3));
        return em_dist_log_prob(&d, em_const(t, CATS_B, 2));
    case 22: { /* MVNormal with its value and its parameters all from the leaves */
        em_var parts[2] = {s, em_op_slice(t, v, 4, 2)};
        d = em_dist_mvnormal(t, em_op_concat(t, parts, 2), tril3(t, v, 1));
        return em_dist_log_prob(&d, em_op_slice(t, v, 0, 3));
    }
    case 24: d = em_dist_normal(t, v, p); return em_dist_log_cdf(&d, c);              /* log CDF, vector loc */
    case 25: d = em_dist_gamma(t, p, em_op_exp(t, s)); return em_dist_log_ccdf(&d, em_op_exp(t, v)); /* shape diff */
    case 26: d = em_dist_student_t(t, em_op_add(t, p, em_scalar(t, 1.0)), s, p); return em_dist_log_cdf(&d, v);
    case 27: d = em_dist_weibull(t, p, em_op_exp(t, s)); return em_dist_log_prob(&d, em_op_exp(t, v));
    case 28: /* a zero-inflated count: a log_sum_exp at the zeros */
        d = em_dist_zero_inflated_neg_binomial2(t, em_op_exp(t, v), p, em_op_sigmoid(t, s));
        return em_dist_log_prob(&d, em_const(t, COUNTS, N));
    case 29: { /* pointwise terms, each weighted by itself */
        d = em_dist_skew_normal(t, v, p, s);
        em_var pw = em_dist_pointwise(&d, EM_TERM_LOG_PROB, c);
        return em_op_dot(t, pw, pw);
    }
    case 30:
    case 31: { /* ordered logistic / probit: eta from v, cutpoints by the ordered transform of s, p */
        static const em_transform ord = {EM_TRANSFORM_ORDERED, 0, 0};
        em_var parts[3] = {s, p, s};
        em_var cuts = em_transform_forward(t, &ord, em_op_concat(t, parts, 3), NULL);
        d = k == 30 ? em_dist_ordered_logistic(t, v, cuts) : em_dist_ordered_probit(t, v, cuts);
        return em_dist_log_prob(&d, em_const(t, CATS_ORD, N));
    }
    case 32: { /* a mixture: weights from the simplex transform of (s, p), components from v and p */
        static const em_transform sx = {EM_TRANSFORM_SIMPLEX, 0, 0};
        em_var parts[2] = {s, p};
        em_var w = em_transform_forward(t, &sx, em_op_concat(t, parts, 2), NULL);
        em_dist comp[3] = {em_dist_normal(t, v, p), em_dist_logistic(t, s, em_op_exp(t, s)),
                           em_dist_student_t(t, em_scalar(t, 3.0), p, em_scalar(t, 2.0))};
        d = em_dist_mixture(t, w, comp, 3);
        return em_dist_log_prob(&d, c);
    }
    case 33: { /* censored: every kind of element */
        static const double cens[N] = {0, -1, 1, 2, 0, 2, 1}, upper[N] = {0, 0, 0, 3.0, 0, 1.0, 0};
        em_dist base = em_dist_normal(t, v, p);
        d = em_dist_censored(&base, cens, upper, N);
        return em_dist_log_prob(&d, c);
    }
    case 34: { /* truncated to [-3, 4] with parameters from the leaves */
        em_dist base = em_dist_student_t(t, em_scalar(t, 4.0), s, p);
        d = em_dist_truncated(&base, em_scalar(t, -3.0), em_scalar(t, 4.0));
        return em_dist_log_prob(&d, c);
    }
    case 35:
    case 36:
    case 37: { /* the one-pass GLMs, with an offset: beta from v, alpha s, phi / shape p */
        em_var X = em_const_matrix(t, XMAT, N, 3), beta = em_op_slice(t, v, 0, 3);
        static const double cuts_free[2] = {-0.5, 0.2};
        if (k == 35) d = em_dist_neg_binomial2_log_glm(t, X, s, beta, p, DATA);
        else if (k == 36) d = em_dist_gamma_log_glm(t, X, s, beta, p, DATA);
        else {
            static const em_transform ord = {EM_TRANSFORM_ORDERED, 0, 0};
            em_var parts[2] = {s, em_const(t, cuts_free, 2)};
            d = em_dist_ordered_logistic_glm(t, X, beta, em_transform_forward(t, &ord, em_op_concat(t, parts, 2), NULL),
                                             DATA);
        }
        return em_dist_log_prob(&d, em_const(t, k == 36 ? TOTALS : k == 35 ? COUNTS : CATS_ORD3, N));
    }
    default: { /* KL(MVNormal || MVNormal), both sides from the leaves */
        em_dist q = em_dist_mvnormal(t, em_const(t, DATA, 3), tril3(t, v, 0));
        d = em_dist_mvnormal(t, em_op_slice(t, v, 2, 3), tril3(t, v, 1));
        return em_dist_kl(&d, &q);
    }
    }
}

/* x = [v (N), s, p]: a vector leaf, a real scalar and a positive scalar. The output is a scalar. */
static em_var build(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    (void)n;
    int op = *(const int *)ctx;
    em_var v = em_leaf(t, x, N), s = em_leaf(t, x + N, 1), p = em_leaf(t, x + N + 1, 1);
    lv[0] = v;
    lv[1] = s;
    lv[2] = p;
    *nl = 3;
    em_var y;
    if (op <= OP_UNARY_LAST) {
        int k = op - OP_UNARY_FIRST;
        /* inputs in every op's domain: positive for log/sqrt/lgamma/digamma/pow */
        em_var in = (k == 2 || k == 5 || k >= 11) ? em_op_exp(t, v) : k == 3 ? em_op_sigmoid(t, v) : v;
        y = unary(t, k, in);
    } else if (op <= OP_BINARY_LAST) {
        int k = (op - OP_BINARY_FIRST) / 3, lay = (op - OP_BINARY_FIRST) % 3;
        em_var pos = em_op_exp(t, v);
        y = lay == 0 ? binary(t, k, v, pos) : lay == 1 ? binary(t, k, v, p) : binary(t, k, s, pos);
    } else if (op >= OP_TR_FIRST && op <= OP_TR_LAST) {
        static const em_transform tr[8] = {
            {EM_TRANSFORM_POSITIVE, 0, 0}, {EM_TRANSFORM_LOWER, -1, 0}, {EM_TRANSFORM_UPPER, 0, 3},
            {EM_TRANSFORM_INTERVAL, -2, 5}, {EM_TRANSFORM_UNIT, 0, 0},   {EM_TRANSFORM_SIMPLEX, 0, 0},
            {EM_TRANSFORM_CORR_CHOLESKY, 0, 0}, {EM_TRANSFORM_ORDERED, 0, 0}};
        const em_transform *tk = &tr[op - OP_TR_FIRST];
        /* corr_cholesky needs K(K-1)/2 free values: 6 of the 7 (K = 4) */
        em_var in = tk->kind == EM_TRANSFORM_CORR_CHOLESKY ? em_op_slice(t, v, 0, 6) : v;
        em_var ld = s;
        em_var yv = em_transform_forward(t, tk, in, &ld);
        y = em_op_add(t, em_op_sum(t, em_op_mul(t, yv, em_op_exp(t, em_op_slice(t, yv, 0, 1)))), ld);
        return y;
    } else if (op >= OP_DIST_FIRST) {
        return dist_lp(t, op - OP_DIST_FIRST, v, s, p);
    } else {
        switch (op) {
        case OP_POW: y = em_op_pow(t, em_op_exp(t, v), -1.5); break;
        case OP_SUM: y = em_op_mul(t, em_op_sum(t, v), v); break;
        case OP_DOT: y = em_op_dot(t, v, em_op_exp(t, v)); break;
        case OP_GATHER: y = em_op_gather(t, v, IDX, 5); break;
        case OP_SLICE: y = em_op_slice(t, v, 2, 4); break;
        case OP_CONCAT: {
            em_var parts[3] = {s, v, p};
            y = em_op_concat(t, parts, 3);
            break;
        }
        case OP_CONCAT_WIDE: {
            em_var parts[9] = {s, v, p, s, em_op_exp(t, p), v, s, p, p};
            y = em_op_concat(t, parts, 9);
            break;
        }
        case OP_RESHAPE: y = em_op_reshape(t, em_op_slice(t, v, 0, 6), 2, 3); break;
        case OP_LOG_SUM_EXP: y = em_op_mul(t, em_op_log_sum_exp(t, v), v); break;
        case OP_LOG_SUM_EXP2: y = em_op_log_sum_exp2(t, v, s); break;
        case OP_LOG_DIFF_EXP: y = em_op_log_diff_exp(t, em_op_add(t, em_op_exp(t, v), p), v); break; /* e^v + p > v */
        case OP_PHI: y = em_op_Phi(t, v); break;
        case OP_LOG_PHI: y = em_op_log_Phi(t, em_op_mul(t, v, em_scalar(t, 20.0))); break; /* both tails */
        case OP_LOG1M_EXP: y = em_op_log1m_exp(t, em_op_neg(t, em_op_exp(t, v))); break;
        case OP_LOG1M_INV_LOGIT: y = em_op_log1m_inv_logit(t, v); break;
        case OP_ADD_MANY: {
            em_var parts[8] = {s, v, p, em_op_exp(t, v), s, p, v, s};
            y = em_op_add_many(t, parts, 8);
            break;
        }
        case OP_MATVEC: y = em_op_matvec(t, em_const_matrix(t, XMAT, N, 3), em_op_slice(t, v, 1, 3)); break;
        case OP_MATVEC_ADD: y = em_op_matvec_add(t, em_const_matrix(t, XMAT, N, 3), em_op_slice(t, v, 1, 3), s); break;
        case OP_CHOLESKY:
        case OP_TRISOLVE:
        case OP_LOGDET: {
            /* A = B Bᵀ + 2I with B 2×3 from v: symmetric positive definite */
            em_var B = em_op_reshape(t, em_op_slice(t, v, 0, 6), 2, 3);
            static const double two_i[4] = {2, 0, 0, 2};
            em_var Bt = em_op_reshape(t, em_op_concat(t, (em_var[]){em_op_slice(t, v, 0, 1), em_op_slice(t, v, 3, 1),
                                                                  em_op_slice(t, v, 1, 1), em_op_slice(t, v, 4, 1),
                                                                  em_op_slice(t, v, 2, 1), em_op_slice(t, v, 5, 1)},
                                                      6),
                                      3, 2);
            em_var L = em_op_cholesky(t, em_op_add(t, em_op_matmul(t, B, Bt), em_const_matrix(t, two_i, 2, 2)));
            if (op == OP_CHOLESKY) y = L;
            else if (op == OP_TRISOLVE) y = em_op_trisolve_lower(t, L, em_op_slice(t, v, 5, 2));
            else y = em_op_logdet_cholesky(t, L);
            break;
        }
        default: /* OP_MATMUL: (2×3)(3×2) of parts of v */
            y = em_op_matmul(t, em_op_reshape(t, em_op_slice(t, v, 0, 6), 2, 3),
                             em_op_reshape(t, em_op_slice(t, v, 1, 6), 3, 2));
            break;
        }
    }
    /* a scalar that depends on every element of y nonlinearly */
    return em_op_dot(t, y, em_op_tanh(t, y));
}

/* The tape built at x1 (and differentiated there), then replayed at x2, x1, x2 — the last two
 * the way a model density replays (pruned to the output, adjoints marked empty by the replay,
 * not zeroed) — must give at each point the value and gradient of a tape built there. */
static void check_replay_op(int op) {
    double xs[2][N + 2];
    tu_fill_uniform(xs[0], N + 2, -1.0, 1.0, 100 + (uint64_t)op);
    tu_fill_uniform(xs[1], N + 2, -1.0, 1.0, 200 + (uint64_t)op);
    xs[0][N + 1] = 0.5 + fabs(xs[0][N + 1]);
    xs[1][N + 1] = 0.5 + fabs(xs[1][N + 1]);
    em_var lv[3], lv2[3];
    size_t nl;
    em_tape *t = em_tape_create(), *t2 = em_tape_create();
    em_var out = build(t, xs[0], N + 2, lv, &nl, &op);
    if (em_tape_status(t) != EM_OK) fail_msg("op %d: %s", op, em_tape_error(t)->msg);
    if (!em_tape_replayable(t)) fail_msg("op %d: the tape cannot be replayed", op);
    assert_int_equal(em_backward(t, out), EM_OK);
    static const int order[3] = {1, 0, 1};
    for (int r = 0; r < 3; r++) {
        const double *x = xs[order[r]];
        assert_int_equal(em_leaf_assign(t, lv[0], x, N), EM_OK);
        assert_int_equal(em_leaf_assign(t, lv[1], x + N, 1), EM_OK);
        assert_int_equal(em_leaf_assign(t, lv[2], x + N + 1, 1), EM_OK);
        if (r == 1) em_tape_prune(t, &out, 1);
        if (em_tape_forward(t, r == 0) != EM_OK) fail_msg("op %d: replay failed: %s", op, em_tape_error(t)->msg);
        if (r == 0) em_zero_adjoints(t);
        assert_int_equal(em_backward(t, out), EM_OK);

        em_tape_reset(t2);
        em_var out2 = build(t2, x, N + 2, lv2, &nl, &op);
        assert_int_equal(em_backward(t2, out2), EM_OK);
        double a = em_value_scalar(t, out), b = em_value_scalar(t2, out2);
        if (memcmp(&a, &b, sizeof a) != 0) fail_msg("op %d, replay %d: value %.17g, built %.17g", op, r, a, b);
        size_t len[3] = {N, 1, 1};
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < len[k]; i++) {
                double ga = em_adjoint(t, lv[k])[i], gb = em_adjoint(t2, lv2[k])[i];
                if (memcmp(&ga, &gb, sizeof ga) != 0)
                    fail_msg("op %d, replay %d: leaf %d[%zu]: gradient %.17g, built %.17g", op, r, k, i, ga, gb);
            }
    }
    em_tape_destroy(t);
    em_tape_destroy(t2);
}

static void test_every_op_replays_exactly(void **state) {
    (void)state;
    for (int op = 0; op < OP_COUNT; op++) check_replay_op(op);
}

static void test_tape_replay_rules(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[3] = {0.5, -1.0, 2.0};
    em_var v = em_leaf(t, x, 3);
    em_var y = em_op_sum(t, em_op_exp(t, v));
    assert_true(em_tape_replayable(t));
    /* reading a value that depends on a leaf: code may have branched on it */
    (void)em_value(t, y);
    assert_false(em_tape_replayable(t));
    em_tape_reset(t);
    v = em_leaf(t, x, 3);
    (void)em_value(t, em_const(t, x, 3)); /* constants may be read freely */
    y = em_op_sum(t, em_op_square(t, v));
    assert_true(em_tape_replayable(t));
    /* a NaN leaf and a non-leaf are refused */
    double bad[3] = {1.0, NAN, 0.0}, x2_for_ref[3] = {9.0, 9.0, 9.0};
    assert_int_equal(em_leaf_assign(t, v, bad, 3), EM_ERR_NONFINITE);
    assert_non_null(strstr(em_tape_error(t)->msg, "element 1 is NaN"));
    assert_int_equal(em_leaf_assign(t, y, x, 1), EM_ERR_ARG);
    em_var ref = em_leaf_ref(t, x, 3); /* the caller's array: never written */
    assert_int_equal(em_leaf_assign(t, ref, x2_for_ref, 3), EM_ERR_ARG);
    assert_true(x[0] == 0.5);
    assert_int_equal(em_leaf_assign(t, v, x, 2), EM_ERR_ARG);
    /* a replay clears the error and recomputes */
    double x2[3] = {1.0, 2.0, 3.0};
    assert_int_equal(em_leaf_assign(t, v, x2, 3), EM_OK);
    assert_int_equal(em_tape_forward(t, 1), EM_OK);
    assert_true(em_value_scalar(t, y) == 14.0);

    /* pruning: a node the root does not need is skipped by replay and backward */
    em_tape_reset(t);
    v = em_leaf(t, x, 3);
    em_var dead = em_op_exp(t, v), root = em_op_sum(t, em_op_square(t, v));
    em_tape_prune(t, &root, 1);
    assert_int_equal(em_leaf_assign(t, v, x2, 3), EM_OK);
    assert_int_equal(em_tape_forward(t, 0), EM_OK);
    assert_true(em_value_scalar(t, root) == 14.0);
    assert_true(em_value(t, dead)[0] == exp(0.5)); /* not recomputed */
    assert_int_equal(em_backward(t, root), EM_OK);
    for (int i = 0; i < 3; i++) assert_true(em_adjoint(t, v)[i] == 2.0 * x2[i]);
    assert_int_equal(em_tape_forward(t, 1), EM_OK); /* all: the dead node too */
    assert_true(em_value(t, dead)[0] == exp(1.0));
    em_tape_destroy(t);
}

static void test_replay_domain_error_mid_tape(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[2] = {0.2, 1.5};
    em_var v = em_leaf(t, x, 2);
    em_var mu = em_op_slice(t, v, 0, 1), sd = em_op_slice(t, v, 1, 1);
    em_dist d = em_dist_normal(t, mu, sd);
    em_var lp = em_dist_log_prob(&d, em_const(t, DATA, N));
    assert_true(em_tape_replayable(t));
    double bad[2] = {0.2, -3.0};
    assert_int_equal(em_leaf_assign(t, v, bad, 2), EM_OK);
    assert_int_equal(em_tape_forward(t, 1), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "Normal: scale[0] = -3"));
    assert_true(isinf(em_value_scalar(t, lp)) && em_value_scalar(t, lp) < 0);
    assert_int_equal(em_leaf_assign(t, v, x, 2), EM_OK);
    assert_int_equal(em_tape_forward(t, 1), EM_OK);
    assert_true(isfinite(em_value_scalar(t, lp)));
    em_tape_destroy(t);
}

/* Replays of the multivariate and discrete families at a point outside their domain: the
 * status and message a tape built there gives, -inf (NaN for a KL, which is not a log
 * density), and then a replay at the first point gives its value and gradient bit for bit. */
typedef em_var (*err_case_fn)(em_tape *t, em_var v);

static em_var mvn_case(em_tape *t, em_var v) {
    /* L = [[v0, 0], [v1, v2]]: v0 <= 0 is outside the domain */
    em_var z = em_scalar(t, 0.0);
    em_var e[4] = {em_op_slice(t, v, 0, 1), z, em_op_slice(t, v, 1, 1), em_op_slice(t, v, 2, 1)};
    em_dist d = em_dist_mvnormal(t, em_const(t, DATA, 2), em_op_reshape(t, em_op_concat(t, e, 4), 2, 2));
    return em_dist_log_prob(&d, em_const(t, DATA + 2, 4));
}
static em_var mvn_value_case(em_tape *t, em_var v) {
    /* the value is v itself; an infinite element is outside the support */
    static const double L[4] = {1.0, 0.0, 0.5, 2.0};
    em_dist d = em_dist_mvnormal(t, em_const(t, DATA, 2), em_const_matrix(t, L, 2, 2));
    return em_dist_log_prob(&d, v);
}
static em_var lkj_case(em_tape *t, em_var v) {
    static const double I3[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    em_dist d = em_dist_lkj_cholesky(t, 3, v);
    return em_dist_log_prob(&d, em_const(t, I3, 9));
}
static em_var lkj_value_case(em_tape *t, em_var v) {
    /* L = [[1, 0], [v0, v1]]: a row of norm != 1 is outside the support */
    em_var e[4] = {em_scalar(t, 1.0), em_scalar(t, 0.0), em_op_slice(t, v, 0, 1), em_op_slice(t, v, 1, 1)};
    em_dist d = em_dist_lkj_cholesky(t, 2, em_scalar(t, 1.5));
    return em_dist_log_prob(&d, em_op_concat(t, e, 4));
}
static em_var dir_case(em_tape *t, em_var v) {
    static const double x[3] = {0.2, 0.3, 0.5};
    em_dist d = em_dist_dirichlet(t, v);
    return em_dist_log_prob(&d, em_const(t, x, 3));
}
static em_var dir_value_case(em_tape *t, em_var v) {
    static const double a[3] = {1.5, 2.0, 0.7};
    em_dist d = em_dist_dirichlet(t, em_const(t, a, 3));
    return em_dist_log_prob(&d, v);
}
static em_var binomial_case(em_tape *t, em_var v) {
    /* the counts are v (a value may depend on the leaves): above total_count is outside */
    em_dist d = em_dist_binomial_logit(t, TOTALS, 3, em_const(t, DATA, 3));
    return em_dist_log_prob(&d, v);
}
static em_var binomial_logit_case(em_tape *t, em_var v) {
    em_dist d = em_dist_binomial_logit(t, TOTALS, 3, v);
    return em_dist_log_prob(&d, em_const(t, COUNTS, 3));
}
static em_var cat_case(em_tape *t, em_var v) {
    em_dist d = em_dist_categorical_logit(t, v);
    return em_dist_log_prob(&d, em_const(t, CATS_B, 2));
}
static em_var cat_value_case(em_tape *t, em_var v) {
    em_dist d = em_dist_categorical_logit(t, em_const(t, DATA, 4));
    return em_dist_log_prob(&d, v);
}
static em_var kl_case(em_tape *t, em_var v) {
    static const double L[4] = {1.0, 0.0, 0.5, 2.0};
    em_var z = em_scalar(t, 0.0);
    em_var e[4] = {em_op_slice(t, v, 0, 1), z, em_op_slice(t, v, 1, 1), em_op_slice(t, v, 2, 1)};
    em_dist p = em_dist_mvnormal(t, em_const(t, DATA, 2), em_op_reshape(t, em_op_concat(t, e, 4), 2, 2));
    em_dist q = em_dist_mvnormal(t, em_const(t, DATA + 2, 2), em_const_matrix(t, L, 2, 2));
    return em_dist_kl(&p, &q);
}

static void check_replay_error(const char *name, err_case_fn mk, const double *good, const double *bad, size_t n,
                               const char *want, int is_lp) {
    em_tape *t = em_tape_create(), *t2 = em_tape_create();
    em_var v = em_leaf(t, good, n), out = mk(t, v);
    if (em_tape_status(t) != EM_OK) fail_msg("%s: %s", name, em_tape_error(t)->msg);
    if (!em_tape_replayable(t)) fail_msg("%s: the tape cannot be replayed", name);
    assert_int_equal(em_backward(t, out), EM_OK);
    double lp0 = em_value_scalar(t, out), g0[8];
    memcpy(g0, em_adjoint(t, v), n * sizeof *g0);

    /* building at the bad point: the reference status and message */
    (void)mk(t2, em_leaf(t2, bad, n));
    em_status want_st = em_tape_status(t2);
    if (want_st == EM_OK) fail_msg("%s: building at the bad point did not fail", name);
    if (!strstr(em_tape_error(t2)->msg, want)) fail_msg("%s: built: %s (want %s)", name, em_tape_error(t2)->msg, want);

    assert_int_equal(em_leaf_assign(t, v, bad, n), EM_OK);
    assert_int_equal(em_tape_forward(t, 1), want_st);
    if (strcmp(em_tape_error(t)->msg, em_tape_error(t2)->msg) != 0)
        fail_msg("%s: replay says \"%s\", building says \"%s\"", name, em_tape_error(t)->msg, em_tape_error(t2)->msg);
    double lp = em_value_scalar(t, out);
    if (is_lp ? !(isinf(lp) && lp < 0) : !isnan(lp)) fail_msg("%s: value %g at the bad point", name, lp);

    assert_int_equal(em_leaf_assign(t, v, good, n), EM_OK);
    assert_int_equal(em_tape_forward(t, 1), EM_OK);
    em_zero_adjoints(t);
    assert_int_equal(em_backward(t, out), EM_OK);
    lp = em_value_scalar(t, out);
    if (memcmp(&lp, &lp0, sizeof lp) != 0) fail_msg("%s: recovered %.17g, first %.17g", name, lp, lp0);
    if (memcmp(em_adjoint(t, v), g0, n * sizeof *g0) != 0) fail_msg("%s: recovered gradient differs", name);
    em_tape_destroy(t);
    em_tape_destroy(t2);
}

static void test_replay_multivariate_and_discrete_errors(void **state) {
    (void)state;
    const double inf = INFINITY;
    check_replay_error("MVNormal scale", mvn_case, (double[]){1.5, 0.3, 0.8}, (double[]){-2.0, 0.3, 0.8}, 3,
                       "MVNormal: scale_tril[0,0] = -2 must be positive", 1);
    check_replay_error("MVNormal value", mvn_value_case, (double[]){0.1, 0.2, -0.3, 0.4},
                       (double[]){0.1, 0.2, inf, 0.4}, 4, "MVNormal: value[2] = inf is outside the support", 1);
    check_replay_error("LKJ eta", lkj_case, (double[]){2.0}, (double[]){-1.0}, 1,
                       "LKJCholesky: eta[0] = -1 must be positive", 1);
    check_replay_error("LKJ value", lkj_value_case, (double[]){0.6, 0.8}, (double[]){0.6, 0.7}, 2,
                       "LKJCholesky: value row 1 of event 0 has squared norm 0.85", 1);
    check_replay_error("Dirichlet concentration", dir_case, (double[]){1.5, 2.0, 0.7}, (double[]){1.5, -0.5, 0.7}, 3,
                       "Dirichlet: concentration[1] = -0.5 must be positive", 1);
    check_replay_error("Dirichlet value", dir_value_case, (double[]){0.2, 0.3, 0.5}, (double[]){0.2, 0.3, 0.4}, 3,
                       "Dirichlet: event 0 sums to 0.9", 1);
    check_replay_error("BinomialLogit value", binomial_case, (double[]){0, 3, 1}, (double[]){0, 3, 2}, 3,
                       "BinomialLogit: value[2] = 2 is outside the support {0, ..., 1}", 1);
    check_replay_error("BinomialLogit logits", binomial_logit_case, (double[]){0.5, -1, 2}, (double[]){0.5, -inf, 2},
                       3, "BinomialLogit: logits[1] = -inf must be finite", 1);
    check_replay_error("CategoricalLogit logits", cat_case, (double[]){0.5, -1, 2}, (double[]){0.5, inf, 2}, 3,
                       "CategoricalLogit: logits[1] = inf must be finite", 1);
    check_replay_error("CategoricalLogit value", cat_value_case, (double[]){3, 0}, (double[]){3, 1.5}, 2,
                       "CategoricalLogit: value[1] = 1.5 is outside the support {0, ..., 3}", 1);
    check_replay_error("KL", kl_case, (double[]){1.5, 0.3, 0.8}, (double[]){1.5, 0.3, 0.0}, 3,
                       "KL: MVNormal: scale_tril[1,1] = 0 must be positive", 0);
}

/* ---- model densities ---------------------------------------------------------------------- */

/* ld replays; fresh runs the model each time; both agree bit for bit at many points. */
static void check_model_replay(em_model_fn fn, const void *data, int expect_replay, const char *name) {
    em_error err = {0};
    em_logdensity_options ro = {.seed = 5}, fo = {.seed = 5, .no_replay = 1};
    em_logdensity *ld = em_logdensity_from_model(fn, data, &ro, &err);
    em_logdensity *fresh = em_logdensity_from_model(fn, data, &fo, &err);
    if (!ld || !fresh) fail_msg("%s: %s", name, err.msg);
    size_t dim = em_logdensity_dim(ld);
    double *th = malloc(3 * dim * sizeof *th), *g1 = th + dim, *g2 = th + 2 * dim;
    assert_non_null(th);
    assert_false(em_logdensity_replays(ld));
    for (int rep = 0; rep < 12; rep++) {
        tu_fill_uniform(th, dim, -1.5, 1.5, 300 + (uint64_t)rep);
        double lp1, lp2;
        em_status s1 = em_logdensity_eval(ld, th, &lp1, g1, &err);
        em_status s2 = em_logdensity_eval(fresh, th, &lp2, g2, &err);
        assert_int_equal(s1, s2);
        if (s1 != EM_OK) continue;
        if (memcmp(&lp1, &lp2, sizeof lp1) != 0) fail_msg("%s: replay %.17g, model run %.17g", name, lp1, lp2);
        if (memcmp(g1, g2, dim * sizeof *g1) != 0) fail_msg("%s: gradients differ", name);
        assert_int_equal(em_logdensity_replays(ld), expect_replay);
        assert_false(em_logdensity_replays(fresh));
    }
    free(th);
    em_logdensity_destroy(ld);
    em_logdensity_destroy(fresh);
}

static void test_models_replay_exactly(void **state) {
    (void)state;
    rugged_data d;
    em_error err = {0};
    if (rugged_data_load("examples/bayesian_regression/data/rugged_data.csv", &d, &err) != EM_OK)
        fail_msg("%s", err.msg);
    check_model_replay(rugged_model, &d, 1, "rugged");
    rugged_data_free(&d);

    char msg[256];
    tu_pdb_eight_schools es;
    tu_pdb_kidiq kid;
    tu_pdb_dogs dogs;
    tu_pdb_gp gp;
    if (tu_pdb_eight_schools_load(&es, msg, sizeof msg) || tu_pdb_kidiq_load(&kid, msg, sizeof msg) ||
        tu_pdb_dogs_load(&dogs, msg, sizeof msg) || tu_pdb_gp_load(&gp, msg, sizeof msg))
        fail_msg("%s", msg);
    check_model_replay(tu_pdb_eight_schools_model, &es, 1, "eight_schools");
    check_model_replay(tu_pdb_kidiq_model, &kid, 1, "kidiq");
    check_model_replay(tu_pdb_dogs_model, &dogs, 1, "dogs");
    check_model_replay(tu_pdb_gp_model, &gp, 1, "gp_pois_regr");
    tu_pdb_eight_schools_free(&es);
    tu_pdb_kidiq_free(&kid);
    tu_pdb_dogs_free(&dogs);
    tu_pdb_gp_free(&gp);
}

/* y ~ Normal(0, s) with s an unconstrained real: s <= 0 is outside the domain. */
static void scale_model(em_model *m, const void *data) {
    em_var s = em_sample(m, "s", em_normal(m, 0.0, 1.0));
    em_observe(m, "y", em_normal(m, 0.0, s), data, N);
}

static void test_model_replay_errors(void **state) {
    (void)state;
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(scale_model, DATA, NULL, &err);
    assert_non_null(ld);
    double th = 1.3, g, lp, lp0, g0;
    assert_int_equal(em_logdensity_eval(ld, &th, &lp0, &g0, &err), EM_OK);
    assert_true(em_logdensity_replays(ld));
    th = -0.5;
    assert_int_equal(em_logdensity_eval(ld, &th, &lp, &g, &err), EM_ERR_DOMAIN);
    assert_true(isinf(lp) && lp < 0);
    assert_non_null(strstr(err.msg, "Normal: scale[0] = -0.5 must be positive"));
    th = NAN;
    err = (em_error){0}; /* the first error wins: clear it to see the next */
    assert_int_equal(em_logdensity_eval(ld, &th, &lp, &g, &err), EM_ERR_NONFINITE);
    if (!strstr(err.msg, "NaN")) fail_msg("message: %s", err.msg);
    th = 1.3;
    assert_int_equal(em_logdensity_eval(ld, &th, &lp, &g, &err), EM_OK);
    assert_true(lp == lp0 && g == g0);
    em_logdensity_destroy(ld);
}

/* log p(x) = Normal(x | 0, 1) + (x > 0 ? 2x : -x): the model branches on θ's value. */
static void branching_model(em_model *m, const void *data) {
    (void)data;
    em_var x = em_sample(m, "x", em_normal(m, 0.0, 1.0));
    if (em_value_scalar(em_model_tape(m), x) > 0)
        em_factor(m, "f", em_mul(m, x, 2.0));
    else
        em_factor(m, "f", em_neg(m, x));
}

static void rng_model(em_model *m, const void *data) {
    (void)data;
    em_var x = em_sample(m, "x", em_normal(m, 0.0, 1.0));
    double u = em_rng_uniform(em_model_rng(m));
    em_factor(m, "f", em_mul(m, x, u));
}

static void test_no_replay_when_the_run_depends_on_theta(void **state) {
    (void)state;
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(branching_model, NULL, NULL, &err);
    assert_non_null(ld);
    const double xs[4] = {1.0, -1.0, 0.5, -2.0};
    for (int k = 0; k < 4; k++) {
        double x = xs[k], lp, g;
        assert_int_equal(em_logdensity_eval(ld, &x, &lp, &g, &err), EM_OK);
        double want = -0.5 * x * x - 0.91893853320467274178 + (x > 0 ? 2.0 * x : -x);
        tu_assert_close(lp, want, 1e-14, 1e-14);
        tu_assert_close(g, -x + (x > 0 ? 2.0 : -1.0), 1e-14, 1e-14);
        assert_false(em_logdensity_replays(ld));
    }
    em_logdensity_destroy(ld);

    ld = em_logdensity_from_model(rng_model, NULL, NULL, &err);
    assert_non_null(ld);
    double x = 0.7, lp, g;
    assert_int_equal(em_logdensity_eval(ld, &x, &lp, &g, &err), EM_OK);
    assert_false(em_logdensity_replays(ld));
    em_logdensity_destroy(ld);
}

static void test_replay_deterministic_outputs_and_memory(void **state) {
    (void)state;
    rugged_data d;
    em_error err = {0};
    if (rugged_data_load("examples/bayesian_regression/data/rugged_data.csv", &d, &err) != EM_OK)
        fail_msg("%s", err.msg);
    em_logdensity_options ro = {.include_deterministic = 1}, fo = {.include_deterministic = 1, .no_replay = 1};
    em_logdensity *ld = em_logdensity_from_model(rugged_model, &d, &ro, &err);
    em_logdensity *fresh = em_logdensity_from_model(rugged_model, &d, &fo, &err);
    assert_non_null(ld);
    assert_non_null(fresh);
    size_t nout = em_logdensity_num_outputs(ld);
    assert_int_equal(nout, 5 + d.n);
    double *o1 = malloc(2 * nout * sizeof *o1), *o2 = o1 + nout;
    assert_non_null(o1);
    double th[5], g[5], lp;
    for (int rep = 0; rep < 5; rep++) {
        tu_fill_uniform(th, 5, -1.0, 1.0, 40 + (uint64_t)rep);
        /* interleave evaluations (which skip the mean) and constrain calls (which need it) */
        assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
        assert_int_equal(em_logdensity_constrain(ld, th, o1, &err), EM_OK);
        assert_int_equal(em_logdensity_constrain(fresh, th, o2, &err), EM_OK);
        assert_memory_equal(o1, o2, nout * sizeof *o1);
    }
    assert_true(em_logdensity_replays(ld));
    /* replaying allocates nothing */
    size_t bytes0, mallocs0, bytes1, mallocs1;
    assert_true(em_logdensity_memory(ld, &bytes0, &mallocs0));
    for (int rep = 0; rep < 100; rep++) assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
    assert_true(em_logdensity_memory(ld, &bytes1, &mallocs1));
    assert_int_equal(bytes0, bytes1);
    assert_int_equal(mallocs0, mallocs1);
    free(o1);
    em_logdensity_destroy(ld);
    em_logdensity_destroy(fresh);
    rugged_data_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_replays_exactly),
        cmocka_unit_test(test_tape_replay_rules),
        cmocka_unit_test(test_replay_domain_error_mid_tape),
        cmocka_unit_test(test_replay_multivariate_and_discrete_errors),
        cmocka_unit_test(test_models_replay_exactly),
        cmocka_unit_test(test_model_replay_errors),
        cmocka_unit_test(test_no_replay_when_the_run_depends_on_theta),
        cmocka_unit_test(test_replay_deterministic_outputs_and_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
