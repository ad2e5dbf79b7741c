/* test_ad.c — the reverse-mode tape: every op's gradient against central finite differences at
 * sizes 1, 7 and 1000 and in every broadcast form, numerically hard inputs, invalid inputs and
 * sticky errors, the _Generic front end, and the no-allocation-after-warm-up promise. */
#include "util/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>

static const size_t SIZES[] = {1, 7, 1000};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

/* FD settings for every smooth op: with h = 1e-5 the central difference's truncation error
 * (h²/6·f''') and rounding error (ε|f|/h) both stay well under 1e-8 on the domains below. */
#define FD_H 1e-5
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8

static double *rnd(size_t n, double lo, double hi, uint64_t seed) {
    double *x = malloc(n * sizeof *x);
    assert_non_null(x);
    tu_fill_uniform(x, n, lo, hi, seed);
    return x;
}

static void assert_msg_has(const em_tape *t, const char *needle) {
    const char *msg = em_tape_error(t)->msg;
    if (!strstr(msg, needle)) fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
}

/* ---- unary ops ------------------------------------------------------------------------------ */

typedef em_var (*unop)(em_tape *, em_var);
typedef em_var (*binop)(em_tape *, em_var, em_var);

static em_var pow_2_5(em_tape *t, em_var a) { return em_op_pow(t, a, 2.5); }
static em_var pow_m1_5(em_tape *t, em_var a) { return em_op_pow(t, a, -1.5); }
static em_var pow_3(em_tape *t, em_var a) { return em_op_pow(t, a, 3.0); }
static em_var pow_0(em_tape *t, em_var a) { return em_op_pow(t, a, 0.0); }

typedef struct {
    const char *name;
    unop f;
    double lo, hi; /* a domain where the op is smooth */
} unary_case;

static const unary_case UNARY[] = {
    {"neg", em_op_neg, -3, 3},
    {"exp", em_op_exp, -3, 3},
    {"log", em_op_log, 0.2, 4},
    {"log1p", em_op_log1p, -0.7, 4},
    {"expm1", em_op_expm1, -3, 3},
    {"sqrt", em_op_sqrt, 0.2, 4},
    {"square", em_op_square, -3, 3},
    {"pow 2.5", pow_2_5, 0.2, 3},
    {"pow -1.5", pow_m1_5, 0.3, 3},
    {"pow 3 (negative base)", pow_3, -2, 2},
    {"pow 0", pow_0, -2, 2},
    {"tanh", em_op_tanh, -3, 3},
    {"sigmoid", em_op_sigmoid, -6, 6},
    {"softplus", em_op_softplus, -6, 6},
    {"log_sigmoid", em_op_log_sigmoid, -6, 6},
    {"lgamma", em_op_lgamma, 0.5, 6},
    {"digamma", em_op_digamma, 0.5, 6},
    {"inv_logit", em_op_inv_logit, -6, 6},
    {"log_inv_logit", em_op_log_inv_logit, -6, 6},
    {"log1m_inv_logit", em_op_log1m_inv_logit, -6, 6},
    {"log1m_exp", em_op_log1m_exp, -4, -0.1},
    {"Phi", em_op_Phi, -4, 4},
    {"log_Phi", em_op_log_Phi, -12, 6},
};

typedef struct {
    unop f;
    binop g;
    int form; /* binary: 0 vector∘vector, 1 vector∘scalar, 2 scalar∘vector */
    size_t n; /* output length */
    const double *w;
} op_ctx;

static em_var weigh(em_tape *t, em_var y, const op_ctx *c) {
    return em_op_dot(t, em_const(t, c->w, c->n), y);
}

static em_var f_unary(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const op_ctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return weigh(t, c->f(t, lv[0]), c);
}

static void test_unary_gradients(void **state) {
    (void)state;
    char label[128];
    for (size_t k = 0; k < sizeof UNARY / sizeof UNARY[0]; k++)
        for (size_t s = 0; s < NSIZES; s++) {
            size_t n = SIZES[s];
            double *x = rnd(n, UNARY[k].lo, UNARY[k].hi, 100 + k * 10 + s);
            double *w = rnd(n, -1, 1, 500 + k * 10 + s);
            op_ctx c = {UNARY[k].f, NULL, 0, n, w};
            snprintf(label, sizeof label, "%s n=%zu", UNARY[k].name, n);
            tu_check_gradient(f_unary, x, n, &c, FD_H, FD_RTOL, FD_ATOL, label);
            free(x);
            free(w);
        }
}

/* Values against libm / closed forms at a few points, so a wrong forward pass with a matching
 * wrong derivative cannot pass. */
static void test_unary_values(void **state) {
    (void)state;
    double x[5] = {0.3, 1.0, 2.5, 4.0, 0.7};
    em_tape *t = em_tape_create();
    em_var v = em_const(t, x, 5);
    const double *sp = em_value(t, em_op_softplus(t, v)), *ls = em_value(t, em_op_log_sigmoid(t, v));
    const double *sg = em_value(t, em_op_sigmoid(t, v)), *lg = em_value(t, em_op_lgamma(t, v));
    const double *dg = em_value(t, em_op_digamma(t, v)), *pw = em_value(t, em_op_pow(t, v, 2.5));
    for (int i = 0; i < 5; i++) {
        tu_assert_close(sp[i], log(1 + exp(x[i])), 1e-14, 0);
        tu_assert_close(ls[i], -log(1 + exp(-x[i])), 1e-14, 0);
        tu_assert_close(sg[i], 1 / (1 + exp(-x[i])), 1e-15, 0);
        tu_assert_close(lg[i], lgamma(x[i]), 1e-15, 0);
        tu_assert_close(pw[i], pow(x[i], 2.5), 1e-15, 0);
    }
    /* ψ(1) = -γ, ψ(4) = 1 + 1/2 + 1/3 - γ */
    const double gamma_e = 0.57721566490153286061;
    tu_assert_close(dg[1], -gamma_e, 1e-14, 0);
    tu_assert_close(dg[3], 1.0 + 0.5 + 1.0 / 3.0 - gamma_e, 1e-14, 0);
    assert_false(em_needs_grad(t, v));
    em_tape_destroy(t);
}

/* ---- binary ops, in the three broadcast forms ---------------------------------------------- */

static em_var f_binary(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const op_ctx *c = ctx;
    size_t na = c->form == 2 ? 1 : c->n, nb = c->form == 1 ? 1 : c->n;
    lv[0] = em_leaf(t, x, na);
    lv[1] = em_leaf(t, x + na, nb);
    *nl = 2;
    em_var y = c->g(t, lv[0], lv[1]);
    assert_int_equal(em_len(t, y), c->n);
    return weigh(t, y, c);
}

/* The same op with the other operand a constant: each input's adjoint branch alone. */
static em_var f_binary_const_b(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const op_ctx *c = ctx;
    size_t nb = c->form == 1 ? 1 : c->n;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return weigh(t, c->g(t, lv[0], em_const_copy(t, c->w, nb)), c); /* w doubles as data */
}

static em_var f_binary_const_a(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const op_ctx *c = ctx;
    size_t na = c->form == 2 ? 1 : c->n;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return weigh(t, c->g(t, em_const_copy(t, c->w, na), lv[0]), c);
}

static void test_binary_gradients(void **state) {
    (void)state;
    struct {
        const char *name;
        binop g;
    } ops[] = {{"add", em_op_add}, {"sub", em_op_sub}, {"mul", em_op_mul}, {"div", em_op_div}};
    const char *forms[] = {"vector-vector", "vector-scalar", "scalar-vector"};
    char label[128];
    for (size_t k = 0; k < 4; k++)
        for (int form = 0; form < 3; form++)
            for (size_t s = 0; s < NSIZES; s++) {
                size_t n = SIZES[s];
                size_t na = form == 2 ? 1 : n, nb = form == 1 ? 1 : n;
                /* operands in [0.5, 2] keep div's denominator away from 0 */
                double *x = rnd(na + nb, 0.5, 2, 1000 + k * 100 + form * 10 + s);
                for (size_t i = 0; i < na; i += 2) x[i] = -x[i]; /* and mixed signs in a */
                double *w = rnd(n, 0.5, 2, 2000 + k * 100 + form * 10 + s);
                op_ctx c = {NULL, ops[k].g, form, n, w};
                snprintf(label, sizeof label, "%s %s n=%zu", ops[k].name, forms[form], n);
                tu_check_gradient(f_binary, x, na + nb, &c, FD_H, FD_RTOL, FD_ATOL, label);
                snprintf(label, sizeof label, "%s %s n=%zu, b constant", ops[k].name, forms[form], n);
                tu_check_gradient(f_binary_const_b, x, na, &c, FD_H, FD_RTOL, FD_ATOL, label);
                snprintf(label, sizeof label, "%s %s n=%zu, a constant", ops[k].name, forms[form], n);
                tu_check_gradient(f_binary_const_a, x + na, nb, &c, FD_H, FD_RTOL, FD_ATOL, label);
                free(x);
                free(w);
            }
}

/* log_sum_exp2 on operands of both signs and log_diff_exp with a > b, in the three broadcast
 * forms: b's values are a's minus a positive gap (vector-scalar and scalar-vector take a's
 * largest or smallest element so that a > b holds everywhere). */
static void test_log_scale_binary_gradients(void **state) {
    (void)state;
    struct {
        const char *name;
        binop g;
    } ops[] = {{"log_sum_exp2", em_op_log_sum_exp2}, {"log_diff_exp", em_op_log_diff_exp}};
    char label[128];
    for (size_t k = 0; k < 2; k++)
        for (int form = 0; form < 3; form++)
            for (size_t s = 0; s < NSIZES; s++) {
                size_t n = SIZES[s];
                size_t na = form == 2 ? 1 : n, nb = form == 1 ? 1 : n;
                double *x = rnd(na + nb, -3, 3, 6000 + k * 100 + form * 10 + s);
                double *w = rnd(n, -1, 1, 6100 + k * 100 + form * 10 + s);
                double amin = x[0];
                for (size_t i = 1; i < na; i++) amin = fmin(amin, x[i]);
                if (k == 1)
                    for (size_t i = 0; i < nb; i++)
                        x[na + i] = (nb == 1 ? amin : x[na == 1 ? 0 : i]) - 0.2 - fabs(x[na + i]);
                op_ctx c = {NULL, ops[k].g, form, n, w};
                snprintf(label, sizeof label, "%s form %d n=%zu", ops[k].name, form, n);
                tu_check_gradient(f_binary, x, na + nb, &c, FD_H, FD_RTOL, FD_ATOL, label);
                free(x);
                free(w);
            }
}

/* x∘x with the same node on both sides: both adjoint contributions land in one array. */
static em_var f_self_ops(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const op_ctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    em_var a = lv[0];
    em_var y = em_op_add(t, em_op_mul(t, a, a), em_op_div(t, a, em_op_add(t, a, a)));
    y = em_op_sub(t, y, em_op_sub(t, a, a));
    return em_op_add(t, weigh(t, y, c), em_op_dot(t, a, a));
}

static void test_same_node_operands(void **state) {
    (void)state;
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        double *x = rnd(n, 0.5, 2, 3000 + s), *w = rnd(n, -1, 1, 3100 + s);
        op_ctx c = {NULL, NULL, 0, n, w};
        tu_check_gradient(f_self_ops, x, n, &c, FD_H, FD_RTOL, FD_ATOL, "same node on both sides");
        free(x);
        free(w);
    }
}

/* ---- reductions and indexing --------------------------------------------------------------- */

static em_var f_sum(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return em_op_sum(t, em_op_mul(t, lv[0], lv[0]));
}

static em_var f_dot(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    lv[0] = em_leaf(t, x, n / 2);
    lv[1] = em_leaf(t, x + n / 2, n / 2);
    *nl = 2;
    return em_op_dot(t, lv[0], lv[1]);
}

typedef struct {
    size_t n;
    const double *w;
    const size_t *idx;
    size_t m;
} idx_ctx;

static em_var f_gather(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const idx_ctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    em_var g = em_op_gather(t, em_op_exp(t, lv[0]), c->idx, c->m);
    return em_op_dot(t, em_const(t, c->w, c->m), g);
}

static em_var f_slice(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const idx_ctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    em_var s = em_op_slice(t, em_op_square(t, lv[0]), 1, c->m); /* first and last are dropped */
    return em_op_dot(t, em_const(t, c->w, c->m), s);
}

static em_var f_concat(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const idx_ctx *c = ctx;
    static const double data[2] = {0.25, -4.0};
    /* leaves split as [n1, n - n1]; a constant part in the middle */
    size_t n1 = n == 1 ? 1 : n / 3;
    lv[0] = em_leaf(t, x, n1);
    *nl = 1;
    em_var parts[3];
    size_t k = 0;
    parts[k++] = em_op_exp(t, lv[0]);
    parts[k++] = em_const(t, data, 2);
    if (n > n1) {
        lv[1] = em_leaf(t, x + n1, n - n1);
        *nl = 2;
        parts[k++] = lv[1];
    }
    em_var y = em_op_concat(t, parts, k);
    assert_int_equal(em_len(t, y), n + 2);
    return em_op_dot(t, em_const(t, c->w, n + 2), y);
}

static em_var f_reshape(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const idx_ctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    size_t rows = n == 1000 ? 40 : 1, cols = n / rows;
    em_var r = em_op_reshape(t, em_op_tanh(t, lv[0]), rows, cols);
    assert_int_equal(em_rows(t, r), rows);
    assert_int_equal(em_cols(t, r), cols);
    /* elementwise ops keep the matrix shape */
    em_var r2 = em_op_mul(t, r, em_scalar(t, 3.0));
    assert_int_equal(em_rows(t, r2), rows);
    assert_int_equal(em_cols(t, r2), cols);
    return em_op_dot(t, em_const(t, c->w, n), r2);
}

static em_var f_log_sum_exp(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    /* scaled so that the terms span e^-60 .. e^60: the shift by the largest must work */
    return em_op_log_sum_exp(t, em_op_mul(t, lv[0], em_scalar(t, 30.0)));
}

static void test_reduction_and_index_gradients(void **state) {
    (void)state;
    char label[128];
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        double *x = rnd(2 * n + 2, -2, 2, 4000 + s), *w = rnd(2 * n + 2, -1, 1, 4100 + s);
        snprintf(label, sizeof label, "sum n=%zu", n);
        tu_check_gradient(f_sum, x, n, NULL, FD_H, FD_RTOL, FD_ATOL, label);
        snprintf(label, sizeof label, "dot n=%zu", n);
        tu_check_gradient(f_dot, x, 2 * n, NULL, FD_H, FD_RTOL, FD_ATOL, label);
        snprintf(label, sizeof label, "log_sum_exp n=%zu", n);
        tu_check_gradient(f_log_sum_exp, x, n, NULL, FD_H, FD_RTOL, FD_ATOL, label);

        /* gather with repeated indices: adjoints must add up */
        size_t m = 2 * n + 1;
        size_t *idx = malloc(m * sizeof *idx);
        em_rng *r = em_rng_create(4200 + s, 0);
        for (size_t i = 0; i < m; i++) idx[i] = (size_t)gsl_rng_uniform_int(r, n);
        em_rng_destroy(r);
        idx_ctx c = {n, w, idx, m};
        snprintf(label, sizeof label, "gather n=%zu", n);
        tu_check_gradient(f_gather, x, n, &c, FD_H, FD_RTOL, FD_ATOL, label);
        free(idx);

        idx_ctx cs = {n + 2, w, NULL, n};
        snprintf(label, sizeof label, "slice n=%zu", n);
        tu_check_gradient(f_slice, x, n + 2, &cs, FD_H, FD_RTOL, FD_ATOL, label);
        snprintf(label, sizeof label, "concat n=%zu", n);
        tu_check_gradient(f_concat, x, n, &cs, FD_H, FD_RTOL, FD_ATOL, label);
        snprintf(label, sizeof label, "reshape n=%zu", n);
        tu_check_gradient(f_reshape, x, n, &cs, FD_H, FD_RTOL, FD_ATOL, label);
        free(x);
        free(w);
    }
}

static void test_reduction_values(void **state) {
    (void)state;
    double a[5] = {1, 2, 3, 4, 5}, b[5] = {-1, 0.5, 2, 0, 1};
    size_t idx[4] = {4, 0, 0, 2};
    em_tape *t = em_tape_create();
    em_var va = em_const(t, a, 5), vb = em_const(t, b, 5);
    tu_assert_close(em_value_scalar(t, em_op_sum(t, va)), 15.0, 0, 0);
    tu_assert_close(em_value_scalar(t, em_op_dot(t, va, vb)), -1 + 1 + 6 + 0 + 5, 0, 0);
    const double *g = em_value(t, em_op_gather(t, va, idx, 4));
    assert_true(g[0] == 5 && g[1] == 1 && g[2] == 1 && g[3] == 3);
    const double *sl = em_value(t, em_op_slice(t, va, 3, 2));
    assert_true(sl[0] == 4 && sl[1] == 5);
    em_var parts[2] = {vb, va};
    const double *cc = em_value(t, em_op_concat(t, parts, 2));
    for (int i = 0; i < 5; i++) assert_true(cc[i] == b[i] && cc[5 + i] == a[i]);
    /* a long sum stays accurate: 1e6 copies of 0.1 */
    double *big = malloc(1000000 * sizeof *big);
    for (int i = 0; i < 1000000; i++) big[i] = 0.1;
    tu_assert_close(em_value_scalar(t, em_op_sum(t, em_const(t, big, 1000000))), 1e5, 1e-11, 0);
    free(big);
    assert_int_equal(em_tape_status(t), EM_OK);
    em_tape_destroy(t);
}

/* ---- numerically hard inputs --------------------------------------------------------------- */

/* value and derivative of op at a single point x */
static void value_grad(unop f, double x, double *val, double *grad) {
    em_tape *t = em_tape_create();
    em_var a = em_leaf_scalar(t, x);
    em_var y = f(t, a);
    assert_int_equal(em_backward(t, y), EM_OK);
    *val = em_value_scalar(t, y);
    *grad = em_adjoint(t, a)[0];
    em_tape_destroy(t);
}

static void test_hard_inputs(void **state) {
    (void)state;
    double v, g;
    value_grad(em_op_log1p, 1e-12, &v, &g);
    tu_assert_close(v, 1e-12 - 0.5e-24, 1e-15, 0);
    tu_assert_close(g, 1.0 / (1.0 + 1e-12), 1e-15, 0);
    value_grad(em_op_log1p, -1e-12, &v, &g);
    tu_assert_close(v, -1e-12 - 0.5e-24, 1e-15, 0);
    value_grad(em_op_expm1, 1e-12, &v, &g);
    tu_assert_close(v, 1e-12 + 0.5e-24, 1e-15, 0);
    /* expm1 far left: the derivative e^x is tiny but must not round to 0 */
    value_grad(em_op_expm1, -40, &v, &g);
    tu_assert_close(v, -1.0, 1e-15, 0);
    tu_assert_close(g, exp(-40.0), 1e-14, 0);

    /* softplus(±700): e^700 overflows nothing, softplus(-700) = e^-700 in full precision */
    value_grad(em_op_softplus, 700, &v, &g);
    tu_assert_close(v, 700.0, 1e-15, 0);
    tu_assert_close(g, 1.0, 1e-15, 0);
    value_grad(em_op_softplus, -700, &v, &g);
    assert_true(v > 0);
    tu_assert_close(v, exp(-700.0), 1e-13, 0);
    tu_assert_close(g, exp(-700.0), 1e-13, 0);

    /* sigmoid and log_sigmoid saturating at ±800: finite, correctly rounded values, and
     * gradients equal to e^-800 rounded (0) or 1 */
    value_grad(em_op_sigmoid, 800, &v, &g);
    assert_true(v == 1.0 && g == 0.0);
    value_grad(em_op_sigmoid, -800, &v, &g);
    assert_true(v == 0.0 && g == 0.0);
    value_grad(em_op_log_sigmoid, 800, &v, &g);
    assert_true(v == 0.0 && g == 0.0);
    value_grad(em_op_log_sigmoid, -800, &v, &g);
    assert_true(v == -800.0 && g == 1.0);
    value_grad(em_op_softplus, 800, &v, &g);
    assert_true(v == 800.0 && g == 1.0);
    value_grad(em_op_softplus, -800, &v, &g);
    assert_true(v == 0.0 && g == 0.0);

    /* part-way into saturation the gradient keeps its relative accuracy: σ'(30) = e^-30/(1+e^-30)² */
    double e30 = exp(-30.0);
    value_grad(em_op_sigmoid, 30, &v, &g);
    tu_assert_close(g, e30 / ((1 + e30) * (1 + e30)), 1e-13, 0);
    value_grad(em_op_sigmoid, -30, &v, &g);
    tu_assert_close(v, e30 / (1 + e30), 1e-14, 0);
    tu_assert_close(g, e30 / ((1 + e30) * (1 + e30)), 1e-13, 0);
    value_grad(em_op_log_sigmoid, 30, &v, &g);
    tu_assert_close(v, -log1p(e30), 1e-14, 0);
    tu_assert_close(g, e30 / (1 + e30), 1e-14, 0);
    value_grad(em_op_softplus, -30, &v, &g);
    tu_assert_close(v, log1p(e30), 1e-14, 0);
    tu_assert_close(g, e30 / (1 + e30), 1e-14, 0);

    /* pow at 0 with p > 1: derivative exactly 0, no NaN from 0·inf */
    em_var (*p2)(em_tape *, em_var) = pow_2_5;
    value_grad(p2, 0.0, &v, &g);
    assert_true(v == 0.0 && g == 0.0);
}

/* The log-scale ops and Φ against GSL and closed forms on a grid that reaches the tails, and
 * at points where the naive formula fails (references for log Φ from mpmath at 40 digits). */
static void test_log_scale_values(void **state) {
    (void)state;
    double v, g;
    for (double x = -37.0; x <= 8.0; x += 0.25) {
        value_grad(em_op_Phi, x, &v, &g);
        tu_assert_close(v, gsl_cdf_ugaussian_P(x), 1e-13, 0);
        tu_assert_close(g, gsl_ran_ugaussian_pdf(x), 1e-13, 0);
        value_grad(em_op_log_Phi, x, &v, &g);
        /* the right tail's reference through Q: log(P) near 1 has only absolute accuracy */
        tu_assert_close(v, x < 0 ? log(gsl_cdf_ugaussian_P(x)) : log1p(-gsl_cdf_ugaussian_Q(x)), 1e-13, 0);
        tu_assert_close(g, gsl_ran_ugaussian_pdf(x) / gsl_cdf_ugaussian_P(x), 1e-12, 0);
    }
    value_grad(em_op_log_Phi, -40.0, &v, &g);
    tu_assert_close(v, -804.60844201375378817, 1e-14, 0);
    tu_assert_close(g, 40.024968847207263723, 1e-13, 0);
    value_grad(em_op_log_Phi, -20.0, &v, &g);
    tu_assert_close(v, -203.91715537109726394, 1e-14, 0);
    tu_assert_close(g, 20.049753068527850542, 1e-13, 0);
    value_grad(em_op_log_Phi, 10.0, &v, &g); /* log(1 - 7.6e-24): not rounded to 0 */
    tu_assert_close(v, -7.6198530241605260704e-24, 1e-12, 0);
    tu_assert_close(g, 7.6945986267064193463e-23, 1e-12, 0);
    value_grad(em_op_log_Phi, -1e5, &v, &g);
    assert_true(isfinite(v) && v < -4.9e9);
    tu_assert_close(g, 1e5, 1e-9, 0);

    for (double x = -30.0; x < 0.0; x += 0.37) {
        value_grad(em_op_log1m_exp, x, &v, &g);
        tu_assert_close(v, log1p(-exp(x)), 1e-14, 1e-300);
        tu_assert_close(g, -exp(x) / (1.0 - exp(x)), 1e-13, 1e-300);
    }
    value_grad(em_op_log1m_exp, -1e-20, &v, &g); /* log(1 - e^-1e-20) = log(1e-20) */
    tu_assert_close(v, log(1e-20), 1e-15, 0);
    tu_assert_close(g, -1e20, 1e-12, 0);
    value_grad(em_op_log1m_exp, -50.0, &v, &g);
    tu_assert_close(v, -exp(-50.0), 1e-14, 0);
    value_grad(em_op_log1m_exp, 0.0, &v, &g);
    assert_true(v == -INFINITY);

    for (double x = -40.0; x <= 40.0; x += 0.5) {
        value_grad(em_op_log1m_inv_logit, x, &v, &g);
        tu_assert_close(v, -log1p(exp(x)), 1e-14, 0);
        tu_assert_close(g, -1.0 / (1.0 + exp(-x)), 1e-14, 0);
        value_grad(em_op_inv_logit, x, &v, &g);
        tu_assert_close(v, 1.0 / (1.0 + exp(-x)), 1e-14, 0);
        value_grad(em_op_log_inv_logit, x, &v, &g);
        tu_assert_close(v, -log1p(exp(-x)), 1e-14, 0);
    }
    value_grad(em_op_log1m_inv_logit, 800.0, &v, &g);
    assert_true(v == -800.0 && g == -1.0);

    /* pairwise and vector log_sum_exp, log_diff_exp: far apart, equal, and -inf operands */
    em_tape *t = em_tape_create();
    double a[6] = {1000.0, -1000.0, 3.0, -INFINITY, 0.5, -INFINITY};
    double b[6] = {999.0, -1001.0, 3.0, 2.0, -INFINITY, -INFINITY};
    em_var va = em_leaf(t, a, 6), vb = em_leaf(t, b, 6);
    const double *ls = em_value(t, em_op_log_sum_exp2(t, va, vb));
    tu_assert_close(ls[0], 1000.0 + log1p(exp(-1.0)), 1e-15, 0);
    tu_assert_close(ls[1], -1000.0 + log1p(exp(-1.0)), 1e-15, 0);
    tu_assert_close(ls[2], 3.0 + log(2.0), 1e-15, 0);
    assert_true(ls[3] == 2.0 && ls[4] == 0.5 && ls[5] == -INFINITY);
    double c[3] = {1000.0, 999.0, -INFINITY};
    em_var vc = em_leaf(t, c, 3);
    em_var lse = em_op_log_sum_exp(t, vc);
    tu_assert_close(em_value_scalar(t, lse), 1000.0 + log1p(exp(-1.0)), 1e-15, 0);
    double d1[3] = {1000.0, 5.0, 0.0}, d2[3] = {999.0, -INFINITY, -1e-10};
    em_var ld = em_op_log_diff_exp(t, em_leaf(t, d1, 3), em_leaf(t, d2, 3));
    const double *ldv = em_value(t, ld);
    tu_assert_close(ldv[0], 1000.0 + log(-expm1(-1.0)), 1e-15, 0);
    assert_true(ldv[1] == 5.0);
    tu_assert_close(ldv[2], log(-expm1(-1e-10)), 1e-14, 0);
    assert_int_equal(em_backward(t, lse), EM_OK);
    const double *gc = em_adjoint(t, vc);
    /* e^{x - y}: x - y carries the rounding of y = 1000.31... (1e-13 absolute) */
    tu_assert_close(gc[0], 1.0 / (1.0 + exp(-1.0)), 1e-12, 0);
    tu_assert_close(gc[1], exp(-1.0) / (1.0 + exp(-1.0)), 1e-12, 0);
    assert_true(gc[2] == 0.0);
    double allinf[2] = {-INFINITY, -INFINITY};
    em_var vi = em_leaf(t, allinf, 2);
    em_var lsi = em_op_log_sum_exp(t, vi);
    assert_true(em_value_scalar(t, lsi) == -INFINITY);
    em_zero_adjoints(t);
    assert_int_equal(em_backward(t, lsi), EM_OK);
    assert_true(em_adjoint(t, vi)[0] == 0.0 && em_adjoint(t, vi)[1] == 0.0);
    em_tape_destroy(t);
}

/* ---- invalid inputs and sticky errors -------------------------------------------------------- */

static void test_nan_leaf(void **state) {
    (void)state;
    double x[4] = {1, 2, NAN, 4};
    em_tape *t = em_tape_create();
    em_var a = em_leaf(t, x, 4);
    assert_false(em_var_ok(a));
    assert_int_equal(em_tape_status(t), EM_ERR_NONFINITE);
    assert_msg_has(t, "leaf");
    assert_msg_has(t, "element 2");
    assert_null(em_value(t, a));
    assert_int_equal(em_len(t, a), 0);
    assert_true(isnan(em_value_scalar(t, a)));
    assert_null(em_adjoint(t, a));
    assert_false(em_needs_grad(t, a));
    /* every later op returns an invalid var and the first error stays */
    em_var y = em_op_exp(t, a);
    assert_false(em_var_ok(y));
    y = em_op_add(t, y, em_scalar(t, 1.0));
    assert_false(em_var_ok(y));
    assert_int_equal(em_backward(t, y), EM_ERR_NONFINITE);
    assert_msg_has(t, "leaf: element 2 is NaN");
    em_tape_reset(t);
    assert_int_equal(em_tape_status(t), EM_OK);
    assert_int_equal(em_tape_size(t), 0);
    em_tape_destroy(t);
}

static void test_length_mismatch(void **state) {
    (void)state;
    double x[7] = {1, 2, 3, 4, 5, 6, 7};
    struct {
        const char *name;
        binop g;
    } ops[] = {{"add", em_op_add}, {"sub", em_op_sub}, {"mul", em_op_mul}, {"div", em_op_div}, {"dot", em_op_dot}};
    char want[64];
    em_tape *t = em_tape_create();
    for (int k = 0; k < 5; k++) {
        em_tape_reset(t);
        em_var y = ops[k].g(t, em_leaf(t, x, 3), em_leaf(t, x, 4));
        assert_false(em_var_ok(y));
        assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
        snprintf(want, sizeof want, "%s: lengths 3 and 4", ops[k].name);
        assert_msg_has(t, want);
    }
    em_tape_destroy(t);
}

static void test_index_errors(void **state) {
    (void)state;
    double x[3] = {1, 2, 3};
    size_t idx[3] = {0, 5, 1};
    em_tape *t = em_tape_create();
    em_var a = em_leaf(t, x, 3);
    assert_false(em_var_ok(em_op_gather(t, a, idx, 3)));
    assert_int_equal(em_tape_status(t), EM_ERR_INDEX);
    assert_msg_has(t, "gather: index[1] = 5 is out of range for length 3");
    /* the first error wins: a slice error afterwards does not replace it */
    assert_false(em_var_ok(em_op_slice(t, a, 2, 2)));
    assert_msg_has(t, "gather");

    em_tape_reset(t);
    a = em_leaf(t, x, 3);
    assert_false(em_var_ok(em_op_slice(t, a, 2, 2)));
    assert_int_equal(em_tape_status(t), EM_ERR_INDEX);
    assert_msg_has(t, "slice: [2, 4) is out of range for length 3");
    size_t cases[][2] = {{3, 1}, {0, 4}, {0, 0}, {1, SIZE_MAX}, {SIZE_MAX, 2}};
    for (int k = 0; k < 5; k++) {
        em_tape_reset(t);
        a = em_leaf(t, x, 3);
        assert_false(em_var_ok(em_op_slice(t, a, cases[k][0], cases[k][1])));
        assert_int_equal(em_tape_status(t), EM_ERR_INDEX);
        assert_msg_has(t, "slice");
    }
    em_tape_reset(t);
    a = em_leaf(t, x, 3);
    assert_false(em_var_ok(em_op_gather(t, a, idx, 0)));
    assert_msg_has(t, "gather");

    /* reshape to a shape of another size, including one whose rows*cols wraps around to 3 */
    em_tape_reset(t);
    a = em_leaf(t, x, 3);
    assert_false(em_var_ok(em_op_reshape(t, a, 2, 2)));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "reshape: 3 values cannot be viewed as 2x2");
    em_tape_reset(t);
    size_t inv3 = (size_t)0xAAAAAAAAAAAAAAABULL; /* 3 * inv3 == 1 (mod 2^64) */
    assert_true(3 * inv3 == 1);
    assert_false(em_var_ok(em_op_reshape(t, em_leaf(t, x, 1), 3, inv3)));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    em_tape_reset(t);
    assert_false(em_var_ok(em_const_matrix(t, x, 3, inv3)));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    em_tape_destroy(t);
}

static void test_invalid_inputs_everywhere(void **state) {
    (void)state;
    double x[3] = {1, 2, 3};
    size_t idx[1] = {0};
    em_tape *t = em_tape_create();
    em_var good = em_leaf(t, x, 3);
    assert_false(em_var_ok(em_op_add(t, good, em_leaf(t, x, 2)))); /* root cause */
    em_var bad = EM_VAR_INVALID;
    for (size_t k = 0; k < sizeof UNARY / sizeof UNARY[0]; k++) assert_false(em_var_ok(UNARY[k].f(t, bad)));
    assert_false(em_var_ok(em_op_add(t, bad, good)));
    assert_false(em_var_ok(em_op_mul(t, good, bad)));
    assert_false(em_var_ok(em_op_sum(t, bad)));
    assert_false(em_var_ok(em_op_dot(t, good, bad)));
    assert_false(em_var_ok(em_op_gather(t, bad, idx, 1)));
    assert_false(em_var_ok(em_op_slice(t, bad, 0, 1)));
    assert_false(em_var_ok(em_op_reshape(t, bad, 1, 1)));
    em_var parts[2] = {good, bad};
    assert_false(em_var_ok(em_op_concat(t, parts, 2)));
    assert_false(em_var_ok(em_op_concat(t, parts, 0)));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "add: lengths 3 and 2");
    /* backward: invalid or non-scalar outputs */
    assert_int_equal(em_backward(t, bad), EM_ERR_SHAPE);
    em_tape_reset(t);
    good = em_leaf(t, x, 3);
    assert_int_equal(em_backward(t, bad), EM_ERR_ARG);
    assert_msg_has(t, "backward");
    em_tape_reset(t);
    good = em_leaf(t, x, 3);
    assert_int_equal(em_backward(t, good), EM_ERR_SHAPE);
    assert_msg_has(t, "backward: output has length 3");
    em_tape_destroy(t);
}

/* ---- backward semantics -------------------------------------------------------------------- */

static void test_backward_accumulates(void **state) {
    (void)state;
    double x[2] = {1.5, -2.0};
    em_tape *t = em_tape_create();
    em_var a = em_leaf(t, x, 2);
    em_var y = em_op_sum(t, em_op_square(t, a));
    assert_int_equal(em_backward(t, y), EM_OK);
    assert_true(em_adjoint(t, a)[0] == 3.0 && em_adjoint(t, a)[1] == -4.0);
    /* a second gradient of the same tape, after zeroing every adjoint, is the same */
    em_zero_adjoints(t);
    assert_true(em_adjoint(t, a)[0] == 0.0 && em_adjoint(t, a)[1] == 0.0);
    assert_int_equal(em_backward(t, y), EM_OK);
    assert_true(em_adjoint(t, a)[0] == 3.0 && em_adjoint(t, a)[1] == -4.0);
    /* a constant output: nothing to propagate, no error */
    em_var c = em_op_sum(t, em_const(t, x, 2));
    assert_false(em_needs_grad(t, c));
    assert_int_equal(em_backward(t, c), EM_OK);
    assert_null(em_adjoint(t, c));
    em_tape_destroy(t);
}

/* ---- leaves referenced in place (em_leaf_ref) ------------------------------------------------ */

/* x = [loc (n), value (n), log scale (1)], loc and value by reference. The cases put the
 * Normal node's contribution to loc first, after another op's, scaled (g != 1), loc and value
 * one node, and a scalar loc: every branch of the Normal fast path's backward. */
typedef struct {
    int variant;
    const double *w;
} ref_ctx;

static em_var f_ref_normal(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const ref_ctx *c = ctx;
    size_t m = (n - 1) / 2;
    lv[0] = em_leaf_ref(t, x, m);
    lv[1] = em_leaf_ref(t, x + m, m);
    lv[2] = em_leaf(t, x + 2 * m, 1);
    *nl = 3;
    em_var w = em_const(t, c->w, m), scale = em_op_exp(t, lv[2]);
    em_var loc = lv[0], value = lv[1], other = EM_VAR_INVALID;
    if (c->variant == 2) other = em_op_dot(t, lv[0], w); /* made before: reached after */
    if (c->variant == 3) value = lv[0];
    if (c->variant == 4) loc = em_op_sum(t, em_op_mul(t, lv[0], w));
    em_dist d = em_dist_normal(t, loc, scale);
    em_var lp = em_dist_log_prob(&d, value);
    switch (c->variant) {
    /* g = 3/m, not 3: the finite differences' rounding error grows with |lp| ~ m */
    case 1: return em_op_add(t, em_op_mul(t, lp, em_scalar(t, 3.0 / (double)m)), em_op_dot(t, lv[0], w));
    case 2: return em_op_add(t, em_op_mul(t, lp, em_scalar(t, 0.5)), other);
    case 3: return em_op_add(t, lp, em_op_dot(t, lv[1], w));
    default: return lp;
    }
}

static void test_leaf_ref_gradients(void **state) {
    (void)state;
    char label[128];
    size_t sizes[] = {7, 1000};
    for (size_t s = 0; s < 2; s++) {
        size_t m = sizes[s], n = 2 * m + 1;
        double *x = rnd(n, -2, 2, 7000 + s), *w = rnd(m, -1, 1, 7100 + s);
        x[n - 1] = 0.3;
        for (int v = 0; v < 5; v++) {
            ref_ctx c = {v, w};
            snprintf(label, sizeof label, "leaf_ref Normal variant %d n=%zu", v, m);
            tu_check_gradient(f_ref_normal, x, n, &c, FD_H, FD_RTOL, FD_ATOL, label);
        }
        free(x);
        free(w);
    }
}

static void test_leaf_ref_basics(void **state) {
    (void)state;
    double x[3] = {1.0, -2.0, 0.5};
    em_tape *t = em_tape_create();
    em_var a = em_leaf_ref(t, x, 3);
    assert_true(em_var_ok(a));
    assert_ptr_equal(em_value(t, a), x); /* referenced, not copied */
    assert_int_equal(em_len(t, a), 3);
    assert_true(em_needs_grad(t, a));
    em_var y = em_op_sum(t, em_op_mul(t, a, a));
    assert_int_equal(em_backward(t, y), EM_OK);
    for (int i = 0; i < 3; i++) assert_true(em_adjoint(t, a)[i] == 2.0 * x[i]);
    assert_true(x[0] == 1.0 && x[1] == -2.0 && x[2] == 0.5); /* never written */

    em_tape_reset(t);
    a = em_leaf_ref(t, x, 0);
    assert_false(em_var_ok(a));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "leaf_ref: empty vector");
    assert_false(em_var_ok(em_op_exp(t, a))); /* sticky */
    em_tape_reset(t);
    a = em_leaf_ref(t, NULL, 3);
    assert_false(em_var_ok(a));
    assert_int_equal(em_tape_status(t), EM_ERR_ARG);
    assert_msg_has(t, "leaf_ref: NULL data pointer");
    em_tape_destroy(t);
}

/* A NaN in a referenced leaf is not rejected up front (see ad.h) but never gives a silent wrong
 * answer: it reaches the output as NaN, or a density rejects it naming the element. */
static void test_leaf_ref_nan(void **state) {
    (void)state;
    double x[5] = {0.1, 0.2, NAN, 0.4, 0.5}, y[5] = {1, 2, 3, 4, 5};
    em_tape *t = em_tape_create();
    em_var a = em_leaf_ref(t, x, 5);
    assert_true(em_var_ok(a));
    em_var s = em_op_sum(t, em_op_exp(t, a));
    assert_true(isnan(em_value_scalar(t, s)));
    assert_int_equal(em_backward(t, s), EM_OK);
    assert_true(isnan(em_adjoint(t, a)[2]));
    tu_assert_close(em_adjoint(t, a)[0], exp(0.1), 1e-15, 0);

    /* as a Normal loc: -inf and a domain error naming loc[2] */
    em_tape_reset(t);
    a = em_leaf_ref(t, x, 5);
    em_dist d = em_dist_normal(t, a, em_leaf_scalar(t, 1.3));
    em_var lp = em_dist_log_prob(&d, em_const(t, y, 5));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_msg_has(t, "loc[2]");
    /* the backward of a failed tape reports the error and leaves zero adjoints, not garbage */
    assert_int_equal(em_backward(t, lp), EM_ERR_DOMAIN);
    for (int i = 0; i < 5; i++) assert_true(em_adjoint(t, a)[i] == 0.0);

    /* as the value */
    em_tape_reset(t);
    a = em_leaf_ref(t, x, 5);
    d = em_dist_normal(t, em_leaf_ref(t, y, 5), em_leaf_scalar(t, 1.3));
    lp = em_dist_log_prob(&d, a);
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_msg_has(t, "value[2]");
    em_tape_destroy(t);
}

/* ---- the adjoint contract (internal/tape.h) -------------------------------------------------- */

/* One input feeding ops that write its adjoint (exp, dot, sum, reshape, Normal) and ops that add
 * into it (gather, slice, pow, matvec), in both orders, and one intermediate used twice. */
typedef struct {
    const double *w;
    const size_t *idx;
    size_t m;
} multi_ctx;

static em_var f_multi_use(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const multi_ctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    em_var a = lv[0], w = em_const(t, c->w, n);
    em_var e = em_op_exp(t, em_op_mul(t, a, em_scalar(t, 0.3)));
    em_var parts[8];
    parts[0] = em_op_sum(t, em_op_gather(t, a, c->idx, c->m));
    parts[1] = em_op_sum(t, e);
    parts[2] = em_op_dot(t, e, w); /* e used twice */
    parts[3] = em_op_sum(t, em_op_pow(t, em_op_add(t, a, em_scalar(t, 3.0)), 1.5));
    parts[4] = em_op_dot(t, a, a);
    parts[5] = n > 2 ? em_op_sum(t, em_op_slice(t, a, 1, n - 2)) : em_op_sum(t, a);
    parts[6] = em_op_sum(t, em_op_matvec(t, em_const_matrix(t, c->w, 1, n), em_op_reshape(t, a, n, 1)));
    em_var out = em_op_concat(t, parts, 7);
    if (n >= 2) {
        em_dist d = em_dist_normal(t, a, em_scalar(t, 1.7));
        out = em_op_add(t, em_op_sum(t, out), em_dist_log_prob(&d, w));
    } else {
        out = em_op_sum(t, out);
    }
    return out;
}

static void test_adjoint_contract_multi_use(void **state) {
    (void)state;
    char label[128];
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s], m = 2 * n + 1;
        double *x = rnd(n, -2, 2, 7200 + s), *w = rnd(n, -1, 1, 7300 + s);
        size_t *idx = malloc(m * sizeof *idx);
        for (size_t i = 0; i < m; i++) idx[i] = (i * 7) % n;
        multi_ctx c = {w, idx, m};
        snprintf(label, sizeof label, "one input, many ops n=%zu", n);
        tu_check_gradient(f_multi_use, x, n, &c, FD_H, FD_RTOL, FD_ATOL, label);
        free(x);
        free(w);
        free(idx);
    }
}

static void test_adjoint_contract_unreached(void **state) {
    (void)state;
    double x[4] = {0.5, -1.0, 2.0, 0.25}, c[4] = {1.0, 2.0, 3.0, 4.0};
    em_tape *t = em_tape_create();
    em_var a = em_leaf(t, x, 4);
    em_var unused = em_leaf(t, x, 4);       /* no op uses it */
    em_var b = em_leaf_ref(t, x, 4);        /* used, but not by the output */
    em_var side = em_op_exp(t, b);          /* an intermediate the output does not reach */
    em_var k = em_op_exp(t, em_const(t, c, 4)); /* constant-only inputs: no adjoint, no backward */
    assert_false(em_needs_grad(t, k));
    em_var y = em_op_sum(t, em_op_mul(t, a, k));
    em_var after = em_op_square(t, a); /* made after the output */
    assert_int_equal(em_backward(t, y), EM_OK);
    for (int i = 0; i < 4; i++) {
        tu_assert_close(em_adjoint(t, a)[i], exp(c[i]), 1e-15, 0);
        assert_true(em_adjoint(t, unused)[i] == 0.0);
        assert_true(em_adjoint(t, b)[i] == 0.0);
        assert_true(em_adjoint(t, side)[i] == 0.0);
        assert_true(em_adjoint(t, after)[i] == 0.0);
    }
    assert_null(em_adjoint(t, k));

    /* a constant output: every leaf's adjoint reads zero */
    em_tape_reset(t);
    a = em_leaf(t, x, 4);
    em_var cs = em_op_sum(t, em_const(t, c, 4));
    assert_int_equal(em_backward(t, cs), EM_OK);
    for (int i = 0; i < 4; i++) assert_true(em_adjoint(t, a)[i] == 0.0);

    /* an invalid output: an error, and zero adjoints */
    em_tape_reset(t);
    a = em_leaf(t, x, 4);
    assert_int_equal(em_backward(t, a), EM_ERR_SHAPE);
    for (int i = 0; i < 4; i++) assert_true(em_adjoint(t, a)[i] == 0.0);
    em_tape_destroy(t);
}

/* A second sweep after em_zero_adjoints gives the same gradient bit for bit, including through
 * the Normal fast path, whose first sweep hands its partials over as loc's adjoint. */
static void test_adjoint_contract_second_backward(void **state) {
    (void)state;
    size_t n = 1000, d = 3;
    double *mu = rnd(n, -1, 1, 7400), *y = rnd(n, -2, 2, 7401), *X = rnd(n * d, -1, 1, 7402);
    double beta[3] = {0.5, -0.25, 1.0}, ls = 0.2;
    em_tape *t = em_tape_create();
    em_var m = em_leaf_ref(t, mu, n), b = em_leaf(t, beta, d), l = em_leaf_scalar(t, ls);
    em_var eta = em_op_matvec_add(t, em_const_matrix(t, X, n, d), b, m);
    em_dist nd = em_dist_normal(t, m, em_op_exp(t, l));
    em_dist yd = em_dist_normal(t, eta, em_op_exp(t, l));
    em_var lp = em_op_add(t, em_dist_log_prob(&nd, em_const(t, y, n)), em_dist_log_prob(&yd, em_const(t, y, n)));
    lp = em_op_mul(t, lp, em_scalar(t, 0.75));
    assert_int_equal(em_backward(t, lp), EM_OK);
    double *g1 = malloc((n + d + 1) * sizeof *g1);
    memcpy(g1, em_adjoint(t, m), n * sizeof(double));
    memcpy(g1 + n, em_adjoint(t, b), d * sizeof(double));
    g1[n + d] = em_adjoint(t, l)[0];
    em_zero_adjoints(t);
    for (size_t i = 0; i < n; i++) assert_true(em_adjoint(t, m)[i] == 0.0);
    assert_int_equal(em_backward(t, lp), EM_OK);
    for (size_t i = 0; i < n; i++) assert_true(em_adjoint(t, m)[i] == g1[i]);
    for (size_t j = 0; j < d; j++) assert_true(em_adjoint(t, b)[j] == g1[n + j]);
    assert_true(em_adjoint(t, l)[0] == g1[n + d]);
    free(g1);
    free(mu);
    free(y);
    free(X);
    em_tape_destroy(t);
}

/* ---- scaled adjoint views (internal/tape.h) -------------------------------------------------- */

/* x = [v (n), beta (3), alpha (1)]. Every way a view is made, passed on, read and written out:
 * dot(r, r) and dot(a, b) make views; add and sub pass them on (and fall back when an operand is
 * broadcast or both are one node); matvec_add reads one as BLAS's alpha and sums it for a
 * scalar intercept or passes it on to a vector one; exp gets one written out before its backward;
 * a node holding a view gets a second contribution (written out, then added), before and after;
 * a leaf receives a view. */
typedef struct {
    const double *X, *y;
} view_ctx;

static em_var f_views(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const view_ctx *c = ctx;
    size_t m = n - 4;
    em_var v = lv[0] = em_leaf(t, x, m), beta = lv[1] = em_leaf(t, x + m, 3), alpha = lv[2] = em_leaf(t, x + m + 3, 1);
    *nl = 3;
    em_var X = em_const_matrix(t, c->X, m, 3), y = em_const(t, c->y, m);
    em_var parts[8];
    /* the regression's sum of squares: a view of r, through sub, into matvec_add (scalar α) */
    em_var r = em_op_sub(t, y, em_op_matvec_add(t, X, beta, alpha));
    parts[0] = em_op_dot(t, r, r);
    /* u gets an ordinary contribution (sum, made first, reached last) and views */
    em_var u = em_op_exp(t, em_op_mul(t, v, em_scalar(t, 0.3)));
    parts[1] = em_op_sum(t, u);
    em_var w = em_op_add(t, u, em_op_sub(t, v, y)); /* add and sub pass views on to u and v */
    parts[2] = em_op_dot(t, w, w);
    parts[3] = em_op_dot(t, v, u); /* a leaf's view of u; u's view of the leaf v is not taken */
    em_var e = em_op_exp(t, em_op_mul(t, v, em_scalar(t, -0.2)));
    parts[4] = em_op_dot(t, e, e); /* exp's own adjoint is a view: written out for its backward */
    em_var b = em_op_add(t, e, em_scalar(t, 0.5)); /* broadcast: no view passed on */
    em_var z = em_op_sub(t, b, b);                  /* one node twice: no view passed on */
    parts[5] = em_op_dot(t, em_op_add(t, b, z), b);
    /* matvec_add with a vector intercept: the view goes on to it */
    em_var q = em_op_matvec_add(t, X, beta, u);
    parts[6] = em_op_dot(t, q, q);
    parts[7] = em_op_sum(t, u); /* made last, reached first: u holds a view when dot adds to it */
    return em_op_mul(t, em_op_sum(t, em_op_concat(t, parts, 8)), em_scalar(t, 0.01));
}

static void test_adjoint_views(void **state) {
    (void)state;
    static const size_t ms[] = {1, 15, 16, 17, 300};
    char label[64];
    for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
        size_t m = ms[k];
        double *X = rnd(3 * m, -1, 1, 7500 + k), *y = rnd(m, -1, 1, 7600 + k), *x = rnd(m + 4, -1, 1, 7700 + k);
        view_ctx c = {X, y};
        snprintf(label, sizeof label, "adjoint views m=%zu", m);
        tu_check_gradient(f_views, x, m + 4, &c, FD_H, FD_RTOL, FD_ATOL, label);

        /* the views read back through em_adjoint, and a second sweep after zeroing gives the
         * same bits */
        em_tape *t = em_tape_create();
        em_var lv[3];
        size_t nl;
        em_var out = f_views(t, x, m + 4, lv, &nl, &c);
        assert_int_equal(em_backward(t, out), EM_OK);
        double *g1 = malloc((m + 4) * sizeof *g1);
        memcpy(g1, em_adjoint(t, lv[0]), m * sizeof(double));
        memcpy(g1 + m, em_adjoint(t, lv[1]), 3 * sizeof(double));
        g1[m + 3] = em_adjoint(t, lv[2])[0];
        em_zero_adjoints(t);
        assert_int_equal(em_backward(t, out), EM_OK);
        for (size_t i = 0; i < m; i++) assert_true(em_adjoint(t, lv[0])[i] == g1[i]);
        for (size_t j = 0; j < 3; j++) assert_true(em_adjoint(t, lv[1])[j] == g1[m + j]);
        assert_true(em_adjoint(t, lv[2])[0] == g1[m + 3]);
        em_tape_destroy(t);

        /* an intermediate holding a view reads as its adjoint: d(0.5·r·r)/dr = r */
        t = em_tape_create();
        em_var a = em_leaf(t, x, m);
        em_var r = em_op_sub(t, em_op_exp(t, a), em_const(t, y, m));
        em_var half = em_op_mul(t, em_op_dot(t, r, r), em_scalar(t, 0.5));
        assert_int_equal(em_backward(t, half), EM_OK);
        for (size_t i = 0; i < m; i++) assert_true(em_adjoint(t, r)[i] == em_value(t, r)[i]);
        for (size_t i = 0; i < m; i++) tu_assert_close(em_adjoint(t, a)[i], em_value(t, r)[i] * exp(x[i]), 1e-15, 0);
        em_tape_destroy(t);
        free(g1);
        free(X);
        free(y);
        free(x);
    }
}

/* ---- the _Generic front end ------------------------------------------------------------------ */

static void test_generic_front_end(void **state) {
    (void)state;
    double xv[3] = {1.0, 2.0, 4.0};
    em_tape *t = em_tape_create();
    em_var x = em_leaf(t, xv, 3);
    em_var a = em_add(t, x, 1.0);  /* var + double */
    em_var b = em_mul(t, 2, x);    /* int * var */
    em_var c = em_sub(t, 1.5f, x); /* float - var */
    em_var d = em_div(t, x, 4L);   /* var / long */
    em_var e = em_mul(t, a, b);    /* var * var */
    em_var f = em_div(t, 3u, x);   /* unsigned / var */
    assert_int_equal(em_tape_status(t), EM_OK);
    for (int i = 0; i < 3; i++) {
        tu_assert_close(em_value(t, a)[i], xv[i] + 1.0, 0, 0);
        tu_assert_close(em_value(t, b)[i], 2.0 * xv[i], 0, 0);
        tu_assert_close(em_value(t, c)[i], 1.5 - xv[i], 0, 0);
        tu_assert_close(em_value(t, d)[i], xv[i] / 4.0, 0, 0);
        tu_assert_close(em_value(t, e)[i], (xv[i] + 1.0) * 2.0 * xv[i], 0, 0);
        tu_assert_close(em_value(t, f)[i], 3.0 / xv[i], 1e-16, 0);
    }
    /* d/dx Σ (b + c + d + e + f) = 2 - 1 + 1/4 + (4x + 2) - 3/x² */
    em_var s = em_sum(t, em_add(t, em_add(t, em_add(t, b, c), em_add(t, d, e)), f));
    assert_int_equal(em_backward(t, s), EM_OK);
    for (int i = 0; i < 3; i++)
        tu_assert_close(em_adjoint(t, x)[i], 2.0 - 1.0 + 0.25 + 4.0 * xv[i] + 2.0 - 3.0 / (xv[i] * xv[i]), 1e-15, 1e-15);
    /* the unary macros and em_data */
    em_var g = em_exp(t, em_neg(t, em_log(t, em_data(t, xv, 3))));
    for (int i = 0; i < 3; i++) tu_assert_close(em_value(t, g)[i], 1.0 / xv[i], 1e-15, 0);
    em_tape_destroy(t);
}

/* ---- arena: no allocation after warm-up ------------------------------------------------------ */

typedef struct {
    size_t n, d;
    double *X, *y;
} linreg;

/* Gaussian linear regression: -n log σ - ½ Σ ((y - α - Xβ)/σ)², through the ordinary ops. */
static double linreg_eval(em_tape *t, const linreg *L, const double *theta, double *grad) {
    em_tape_reset(t);
    em_var alpha = em_leaf(t, theta, 1), beta = em_leaf(t, theta + 1, L->d), ls = em_leaf(t, theta + 1 + L->d, 1);
    em_var mu = em_add(t, em_op_matvec(t, em_const_matrix(t, L->X, L->n, L->d), beta), alpha);
    em_var z = em_div(t, em_sub(t, em_data(t, L->y, L->n), mu), em_exp(t, ls));
    em_var lp = em_sub(t, em_mul(t, -0.5, em_sum(t, em_square(t, z))), em_mul(t, (double)L->n, ls));
    assert_int_equal(em_backward(t, lp), EM_OK);
    grad[0] = em_adjoint(t, alpha)[0];
    memcpy(grad + 1, em_adjoint(t, beta), L->d * sizeof(double));
    grad[1 + L->d] = em_adjoint(t, ls)[0];
    return em_value_scalar(t, lp);
}

static void arena_steady(size_t n, int evals_before_steady) {
    linreg L = {n, 4, rnd(n * 4, -1, 1, 7000 + n), rnd(n, -2, 2, 7100 + n)};
    double theta[6] = {0.3, -0.2, 0.5, 1.0, -1.5, 0.1}, g0[6], g[6];
    em_tape *t = em_tape_create();
    double lp0 = linreg_eval(t, &L, theta, g0);
    for (int k = 1; k < evals_before_steady; k++) linreg_eval(t, &L, theta, g);
    em_tape_reset(t);
    size_t cap = em_arena_capacity(em_tape_arena(t)), mallocs = em_arena_malloc_count(em_tape_arena(t));
    for (int k = 0; k < 100; k++) {
        double lp = linreg_eval(t, &L, theta, g);
        assert_true(lp == lp0);
        assert_memory_equal(g, g0, sizeof g);
    }
    em_tape_reset(t);
    assert_int_equal(em_arena_capacity(em_tape_arena(t)), cap);
    assert_int_equal(em_arena_malloc_count(em_tape_arena(t)), mallocs);
    em_tape_destroy(t);
    free(L.X);
    free(L.y);
}

static void test_arena_no_growth(void **state) {
    (void)state;
    /* 170 rows fit in the first block: nothing is allocated after the first evaluation */
    arena_steady(170, 1);
    /* 20000 rows spill over several blocks on the first evaluation; the reset after it merges
     * them into one, and from the second evaluation on nothing more is allocated */
    arena_steady(20000, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_gradients),
        cmocka_unit_test(test_unary_values),
        cmocka_unit_test(test_binary_gradients),
        cmocka_unit_test(test_same_node_operands),
        cmocka_unit_test(test_reduction_and_index_gradients),
        cmocka_unit_test(test_reduction_values),
        cmocka_unit_test(test_hard_inputs),
        cmocka_unit_test(test_log_scale_binary_gradients),
        cmocka_unit_test(test_log_scale_values),
        cmocka_unit_test(test_nan_leaf),
        cmocka_unit_test(test_length_mismatch),
        cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_invalid_inputs_everywhere),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_leaf_ref_gradients),
        cmocka_unit_test(test_leaf_ref_basics),
        cmocka_unit_test(test_leaf_ref_nan),
        cmocka_unit_test(test_adjoint_contract_multi_use),
        cmocka_unit_test(test_adjoint_contract_unreached),
        cmocka_unit_test(test_adjoint_contract_second_backward),
        cmocka_unit_test(test_adjoint_views),
        cmocka_unit_test(test_generic_front_end),
        cmocka_unit_test(test_arena_no_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
