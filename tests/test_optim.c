/* test_optim.c — optimizers against hand-written first updates, convergence on a convex
 * quadratic and on Rosenbrock, learning-rate schedules against their closed forms, refused
 * non-finite gradients, and rejected configurations. */
#include "util/testutil.h"

#include <math.h>
#include <string.h>

/* The test loss: f(p) = 0.5·(A0·p0² + A1·p1²), gradient (A0·p0, A1·p1), from P0. */
static const double A[2] = {1.0, 4.0};
static const double P0[2] = {1.0, -2.0};

/* Run three steps of cfg on the quadratic and compare each iterate with expect[step][coord]. */
static void check_three_steps(const em_optim_config *cfg, const double expect[3][2], const char *label) {
    em_error e = {0};
    em_optim *o = em_optim_create(cfg, 2, &e);
    if (!o) fail_msg("%s: %s", label, e.msg);
    double p[2] = {P0[0], P0[1]};
    for (int s = 0; s < 3; s++) {
        double g[2] = {A[0] * p[0], A[1] * p[1]};
        assert_int_equal(em_optim_step(o, p, g, &e), EM_OK);
        for (int i = 0; i < 2; i++)
            if (!(fabs(p[i] - expect[s][i]) <= 1e-14 * fmax(1.0, fabs(expect[s][i]))))
                fail_msg("%s: step %d, p[%d] = %.17g, expected %.17g", label, s + 1, i, p[i], expect[s][i]);
    }
    assert_int_equal(em_optim_steps(o), 3);
    em_optim_destroy(o);
}

/* ---- first three updates, written out from each algorithm's definition ---------------------- */

static void test_sgd_three_steps(void **state) {
    (void)state;
    /* plain: p ← p - lr·a·p = p·(1 - lr·a) */
    em_optim_config c = em_optim_defaults(EM_OPTIM_SGD, 0.1);
    const double plain[3][2] = {{1 * 0.9, -2 * 0.6}, {1 * 0.9 * 0.9, -2 * 0.6 * 0.6}, {0.729, -0.432}};
    check_three_steps(&c, plain, "sgd");

    /* momentum 0.5: buf ← 0.5·buf + g; p ← p - lr·buf */
    c.momentum = 0.5;
    double e[3][2];
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        double g1 = a * p, b1 = g1;
        double p1 = p - 0.1 * b1;
        double g2 = a * p1, b2 = 0.5 * b1 + g2;
        double p2 = p1 - 0.1 * b2;
        double g3 = a * p2, b3 = 0.5 * b2 + g3;
        double p3 = p2 - 0.1 * b3;
        e[0][i] = p1, e[1][i] = p2, e[2][i] = p3;
    }
    /* coordinate 0 by hand: 0.9; g2 = 0.9, buf 1.4, p 0.76; g3 = 0.76, buf 1.46, p 0.614 */
    tu_assert_close(e[2][0], 0.614, 1e-14, 0);
    check_three_steps(&c, (const double(*)[2])e, "sgd momentum");

    /* Nesterov with weight decay 0.1: g ← a·p + 0.1·p; buf ← 0.5·buf + g; p ← p - lr·(g + 0.5·buf) */
    c.nesterov = 1;
    c.weight_decay = 0.1;
    for (int i = 0; i < 2; i++) {
        double p = P0[i], k = A[i] + 0.1;
        double g1 = k * p, b1 = g1;
        double p1 = p - 0.1 * (g1 + 0.5 * b1);
        double g2 = k * p1, b2 = 0.5 * b1 + g2;
        double p2 = p1 - 0.1 * (g2 + 0.5 * b2);
        double g3 = k * p2, b3 = 0.5 * b2 + g3;
        double p3 = p2 - 0.1 * (g3 + 0.5 * b3);
        e[0][i] = p1, e[1][i] = p2, e[2][i] = p3;
    }
    check_three_steps(&c, (const double(*)[2])e, "sgd nesterov + weight decay");
}

static void test_adam_three_steps(void **state) {
    (void)state;
    const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    em_optim_config c = em_optim_defaults(EM_OPTIM_ADAM, lr);
    double e[3][2];
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        /* t = 1 */
        double g = a * p, m = (1 - b1) * g, v = (1 - b2) * g * g;
        p -= lr / (1 - b1) * m / (sqrt(v) / sqrt(1 - b2) + eps);
        e[0][i] = p;
        /* t = 2 */
        g = a * p, m = b1 * m + (1 - b1) * g, v = b2 * v + (1 - b2) * g * g;
        p -= lr / (1 - b1 * b1) * m / (sqrt(v) / sqrt(1 - b2 * b2) + eps);
        e[1][i] = p;
        /* t = 3 */
        g = a * p, m = b1 * m + (1 - b1) * g, v = b2 * v + (1 - b2) * g * g;
        p -= lr / (1 - b1 * b1 * b1) * m / (sqrt(v) / sqrt(1 - b2 * b2 * b2) + eps);
        e[2][i] = p;
    }
    /* Adam's first step moves each coordinate by lr·g/(|g| + eps): 0.1 towards 0 */
    tu_assert_close(e[0][0], 1 - 0.1 / (1 + 1e-8), 1e-15, 0);
    tu_assert_close(e[0][1], -2 + 0.1 * 8 / (8 + 1e-8), 1e-15, 0);
    check_three_steps(&c, (const double(*)[2])e, "adam");
}

static void test_clipped_adam_three_steps(void **state) {
    (void)state;
    /* Pyro's ClippedAdam: lr ← lr·lrd at the start of each step; g clamped to ±clip; eps added to
     * the uncorrected sqrt(v); step size lr·sqrt(1-b2^t)/(1-b1^t). With clip 3, coordinate 1's
     * first gradient -8 is clamped to -3. */
    const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, lrd = 0.5, clip = 3.0;
    em_optim_config c = em_optim_defaults(EM_OPTIM_CLIPPED_ADAM, lr);
    c.lrd = lrd;
    c.clip_norm = clip;
    double e[3][2];
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        double g = fmin(fmax(a * p, -clip), clip), m = (1 - b1) * g, v = (1 - b2) * g * g;
        p -= lr * lrd * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps);
        e[0][i] = p;
        g = fmin(fmax(a * p, -clip), clip), m = b1 * m + (1 - b1) * g, v = b2 * v + (1 - b2) * g * g;
        p -= lr * lrd * lrd * sqrt(1 - b2 * b2) / (1 - b1 * b1) * m / (sqrt(v) + eps);
        e[1][i] = p;
        g = fmin(fmax(a * p, -clip), clip), m = b1 * m + (1 - b1) * g, v = b2 * v + (1 - b2) * g * g;
        p -= lr * lrd * lrd * lrd * sqrt(1 - b2 * b2 * b2) / (1 - b1 * b1 * b1) * m / (sqrt(v) + eps);
        e[2][i] = p;
    }
    /* first step: 0.05·sqrt(0.001)/0.1 · 0.1·g / (sqrt(0.001)·|g| + 1e-8) ≈ 0.05 towards 0 */
    tu_assert_close(e[0][1], -2 + 0.05, 1e-6, 0);
    check_three_steps(&c, (const double(*)[2])e, "clipped adam");

    /* weight decay is added after the clamp (Pyro's order): with wd = 1 coordinate 1's first
     * gradient is clamp(-8) + 1·(-2) = -5, not clamp(-8 - 2) = -3 */
    c.weight_decay = 1.0;
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        double g = fmin(fmax(a * p, -clip), clip) + p, m = (1 - b1) * g, v = (1 - b2) * g * g;
        p -= lr * lrd * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps);
        e[0][i] = p;
        g = fmin(fmax(a * p, -clip), clip) + p, m = b1 * m + (1 - b1) * g, v = b2 * v + (1 - b2) * g * g;
        p -= lr * lrd * lrd * sqrt(1 - b2 * b2) / (1 - b1 * b1) * m / (sqrt(v) + eps);
        e[1][i] = p;
        g = fmin(fmax(a * p, -clip), clip) + p, m = b1 * m + (1 - b1) * g, v = b2 * v + (1 - b2) * g * g;
        p -= lr * lrd * lrd * lrd * sqrt(1 - b2 * b2 * b2) / (1 - b1 * b1 * b1) * m / (sqrt(v) + eps);
        e[2][i] = p;
    }
    check_three_steps(&c, (const double(*)[2])e, "clipped adam + weight decay");
    c.weight_decay = 0.0;

    /* the same run unclipped differs: clipping is really applied */
    c.clip_norm = 100;
    em_optim *o = em_optim_create(&c, 2, NULL);
    double p[2] = {P0[0], P0[1]};
    for (int s = 0; s < 2; s++) {
        double g[2] = {A[0] * p[0], A[1] * p[1]};
        em_optim_step(o, p, g, NULL);
    }
    assert_true(fabs(p[1] - e[1][1]) > 1e-6);
    em_optim_destroy(o);
}

static void test_adagrad_three_steps(void **state) {
    (void)state;
    const double lr = 0.5, eps = 1e-10, lrd = 0.1;
    em_optim_config c = em_optim_defaults(EM_OPTIM_ADAGRAD, lr);
    c.lr_decay = lrd;
    double e[3][2];
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        double g = a * p, s = g * g;
        p -= lr / (1 + 0 * lrd) * g / (sqrt(s) + eps);
        e[0][i] = p;
        g = a * p, s += g * g;
        p -= lr / (1 + 1 * lrd) * g / (sqrt(s) + eps);
        e[1][i] = p;
        g = a * p, s += g * g;
        p -= lr / (1 + 2 * lrd) * g / (sqrt(s) + eps);
        e[2][i] = p;
    }
    /* coordinate 0 by hand: p1 = 1 - 0.5/(1 + eps); then g = p1, s = 1 + p1², and
     * p2 = p1 - (0.5/1.1)·p1/(sqrt(s) + eps) */
    const double p1 = 1 - 0.5 / (1 + 1e-10);
    tu_assert_close(e[0][0], p1, 1e-15, 0);
    tu_assert_close(e[1][0], p1 - 0.5 / 1.1 * p1 / (sqrt(1 + p1 * p1) + 1e-10), 1e-14, 0);
    check_three_steps(&c, (const double(*)[2])e, "adagrad");
}

static void test_rmsprop_three_steps(void **state) {
    (void)state;
    const double lr = 0.01, al = 0.99, eps = 1e-8;
    em_optim_config c = em_optim_defaults(EM_OPTIM_RMSPROP, lr);
    double e[3][2];
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        double g = a * p, v = (1 - al) * g * g;
        p -= lr * g / (sqrt(v) + eps);
        e[0][i] = p;
        g = a * p, v = al * v + (1 - al) * g * g;
        p -= lr * g / (sqrt(v) + eps);
        e[1][i] = p;
        g = a * p, v = al * v + (1 - al) * g * g;
        p -= lr * g / (sqrt(v) + eps);
        e[2][i] = p;
    }
    /* the first step is lr·g/(sqrt(0.01)·|g| + eps): 0.01/(0.1 + 1e-8) towards 0 for g = 1 */
    tu_assert_close(e[0][0], 1 - 0.01 / (0.1 + 1e-8), 1e-15, 0);
    check_three_steps(&c, (const double(*)[2])e, "rmsprop");

    /* with momentum 0.9: buf ← 0.9·buf + g/(sqrt(v)+eps); p ← p - lr·buf */
    c.momentum = 0.9;
    for (int i = 0; i < 2; i++) {
        double p = P0[i], a = A[i];
        double g = a * p, v = (1 - al) * g * g, b = g / (sqrt(v) + eps);
        p -= lr * b;
        e[0][i] = p;
        g = a * p, v = al * v + (1 - al) * g * g, b = 0.9 * b + g / (sqrt(v) + eps);
        p -= lr * b;
        e[1][i] = p;
        g = a * p, v = al * v + (1 - al) * g * g, b = 0.9 * b + g / (sqrt(v) + eps);
        p -= lr * b;
        e[2][i] = p;
    }
    check_three_steps(&c, (const double(*)[2])e, "rmsprop momentum");
}

/* ---- convergence ---------------------------------------------------------------------------------- */

/* f(p) = 0.5·sum a_i (p_i - c_i)² with condition number 100 */
static double run_quadratic(const em_optim_config *cfg, size_t steps, double *worst) {
    const double a[3] = {1.0, 10.0, 100.0}, c[3] = {1.0, -2.0, 0.5};
    double p[3] = {-3.0, 3.0, 2.0};
    em_error e = {0};
    em_optim *o = em_optim_create(cfg, 3, &e);
    if (!o) fail_msg("%s", e.msg);
    for (size_t s = 0; s < steps; s++) {
        double g[3];
        for (int i = 0; i < 3; i++) g[i] = a[i] * (p[i] - c[i]);
        assert_int_equal(em_optim_step(o, p, g, &e), EM_OK);
    }
    em_optim_destroy(o);
    *worst = 0;
    for (int i = 0; i < 3; i++) *worst = fmax(*worst, fabs(p[i] - c[i]));
    return *worst;
}

static void test_converges_on_quadratic(void **state) {
    (void)state;
    struct {
        em_optim_config cfg;
        size_t steps;
        const char *label;
    } runs[8];
    int k = 0;
    runs[k].cfg = em_optim_defaults(EM_OPTIM_SGD, 0.015), runs[k].steps = 2000, runs[k++].label = "sgd";
    runs[k].cfg = em_optim_defaults(EM_OPTIM_SGD, 0.01), runs[k].cfg.momentum = 0.9, runs[k].steps = 2000,
    runs[k++].label = "sgd momentum";
    runs[k].cfg = em_optim_defaults(EM_OPTIM_SGD, 0.01), runs[k].cfg.momentum = 0.9, runs[k].cfg.nesterov = 1,
    runs[k].steps = 2000, runs[k++].label = "sgd nesterov";
    /* the adaptive methods take steps of about lr near the optimum, so they are annealed */
    runs[k].cfg = em_optim_defaults(EM_OPTIM_ADAM, 0.1), runs[k].cfg.schedule.kind = EM_LR_EXPONENTIAL,
    runs[k].cfg.schedule.gamma = 0.995, runs[k].steps = 4000, runs[k++].label = "adam";
    runs[k].cfg = em_optim_defaults(EM_OPTIM_CLIPPED_ADAM, 0.1), runs[k].cfg.lrd = 0.995, runs[k].steps = 4000,
    runs[k++].label = "clipped adam";
    runs[k].cfg = em_optim_defaults(EM_OPTIM_ADAGRAD, 0.5), runs[k].steps = 4000, runs[k++].label = "adagrad";
    runs[k].cfg = em_optim_defaults(EM_OPTIM_RMSPROP, 0.01), runs[k].cfg.schedule.kind = EM_LR_COSINE,
    runs[k].cfg.schedule.t_max = 4000, runs[k].steps = 4000, runs[k++].label = "rmsprop cosine";
    for (int r = 0; r < k; r++) {
        double worst;
        run_quadratic(&runs[r].cfg, runs[r].steps, &worst);
        if (!(worst < 1e-6)) fail_msg("%s: max |p - c| = %g after %zu steps", runs[r].label, worst, runs[r].steps);
    }
}

static void test_adam_rosenbrock(void **state) {
    (void)state;
    /* f(x, y) = (1 - x)² + 100 (y - x²)², minimum at (1, 1), from the classic start (-1.5, 2) */
    em_optim_config c = em_optim_defaults(EM_OPTIM_ADAM, 0.02);
    c.schedule.kind = EM_LR_STEP;
    c.schedule.step_size = 5000;
    c.schedule.gamma = 0.1;
    em_optim *o = em_optim_create(&c, 2, NULL);
    assert_non_null(o);
    double p[2] = {-1.5, 2.0};
    for (int s = 0; s < 20000; s++) {
        double x = p[0], y = p[1];
        double g[2] = {-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)};
        assert_int_equal(em_optim_step(o, p, g, NULL), EM_OK);
    }
    em_optim_destroy(o);
    if (!(fabs(p[0] - 1) < 1e-8 && fabs(p[1] - 1) < 1e-8)) fail_msg("adam on Rosenbrock ended at (%.10g, %.10g)", p[0], p[1]);
}

/* ---- schedules --------------------------------------------------------------------------------------- */

/* Run SGD with gradient 1 for each step: every step moves p by exactly -lr_t, and em_optim_lr
 * before the step must say lr_t. */
static void check_schedule(const em_optim_config *cfg, const double *expect, size_t n, const char *label) {
    em_optim *o = em_optim_create(cfg, 1, NULL);
    assert_non_null(o);
    double p = 0.0, one = 1.0;
    for (size_t t = 0; t < n; t++) {
        double lr = em_optim_lr(o), before = p;
        if (!(fabs(lr - expect[t]) <= 1e-15 * expect[t] + 1e-300))
            fail_msg("%s: lr at step %zu = %.17g, expected %.17g", label, t, lr, expect[t]);
        if (cfg->kind == EM_OPTIM_SGD) tu_assert_close(em_lr_schedule_at(&cfg->schedule, cfg->lr, t), expect[t], 1e-15, 0);
        assert_int_equal(em_optim_step(o, &p, &one, NULL), EM_OK);
        if (cfg->kind == EM_OPTIM_SGD) tu_assert_close(before - p, expect[t], 1e-12, 0);
    }
    em_optim_destroy(o);
}

static void test_schedules(void **state) {
    (void)state;
    em_optim_config c = em_optim_defaults(EM_OPTIM_SGD, 1.0);
    const double constant[] = {1, 1, 1, 1};
    check_schedule(&c, constant, 4, "constant");

    c.schedule.kind = EM_LR_EXPONENTIAL;
    c.schedule.gamma = 0.5;
    const double expo[] = {1, 0.5, 0.25, 0.125, 0.0625};
    check_schedule(&c, expo, 5, "exponential");

    c.schedule.kind = EM_LR_STEP;
    c.schedule.step_size = 3;
    c.schedule.gamma = 0.1;
    const double step[] = {1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01};
    check_schedule(&c, step, 8, "step");

    /* cosine over t_max = 4 from 1 to 0.2: 0.2 + 0.8·(1 + cos(pi t/4))/2 */
    c.lr = 1.0;
    c.schedule.kind = EM_LR_COSINE;
    c.schedule.t_max = 4;
    c.schedule.eta_min = 0.2;
    const double r2 = sqrt(0.5);
    const double cosine[] = {1.0, 0.2 + 0.4 * (1 + r2), 0.6, 0.2 + 0.4 * (1 - r2), 0.2, 0.2 + 0.4 * (1 - r2), 0.6};
    check_schedule(&c, cosine, 7, "cosine");

    /* ClippedAdam: the schedule times lrd^(t+1); Adagrad: over 1 + t·lr_decay */
    em_optim_config ca = em_optim_defaults(EM_OPTIM_CLIPPED_ADAM, 0.1);
    ca.lrd = 0.5;
    ca.schedule.kind = EM_LR_EXPONENTIAL;
    ca.schedule.gamma = 0.1;
    const double cexp[] = {0.1 * 0.5, 0.1 * 0.1 * 0.25, 0.1 * 0.01 * 0.125};
    check_schedule(&ca, cexp, 3, "clipped adam lrd");
    em_optim_config ag = em_optim_defaults(EM_OPTIM_ADAGRAD, 1.0);
    ag.lr_decay = 0.5;
    const double aexp[] = {1.0, 1.0 / 1.5, 0.5, 0.4};
    check_schedule(&ag, aexp, 4, "adagrad lr_decay");
}

/* ---- non-finite gradients ---------------------------------------------------------------------------- */

static void test_nonfinite_gradient_skipped(void **state) {
    (void)state;
    for (int kind = 0; kind < EM_OPTIM_KIND_COUNT; kind++) {
        em_optim_config c = em_optim_defaults((em_optim_kind)kind, 0.1);
        c.momentum = kind == EM_OPTIM_SGD || kind == EM_OPTIM_RMSPROP ? 0.5 : 0.0;
        em_optim *o = em_optim_create(&c, 3, NULL), *ref = em_optim_create(&c, 3, NULL);
        double p[3] = {1, 2, 3}, q[3] = {1, 2, 3};
        double g1[3] = {0.5, -1, 2}, g2[3] = {0.1, 0.2, -0.3}, bad[3] = {0.1, NAN, 0.2}, inf[3] = {INFINITY, 0, 0};
        assert_int_equal(em_optim_step(o, p, g1, NULL), EM_OK);
        assert_int_equal(em_optim_step(ref, q, g1, NULL), EM_OK);
        double saved[3];
        memcpy(saved, p, sizeof p);
        double lr_before = em_optim_lr(o);
        em_error e = {0};
        assert_int_equal(em_optim_step(o, p, bad, &e), EM_ERR_NONFINITE);
        assert_non_null(strstr(e.msg, "gradient[1] = nan"));
        assert_non_null(strstr(e.msg, em_optim_name((em_optim_kind)kind)));
        assert_int_equal(em_optim_step(o, p, inf, NULL), EM_ERR_NONFINITE);
        assert_memory_equal(p, saved, sizeof p);
        assert_int_equal(em_optim_steps(o), 1);
        assert_int_equal(em_optim_skipped(o), 2);
        assert_true(em_optim_lr(o) == lr_before);
        /* the state is untouched too: the next good step matches a run that never saw the NaN */
        assert_int_equal(em_optim_step(o, p, g2, NULL), EM_OK);
        assert_int_equal(em_optim_step(ref, q, g2, NULL), EM_OK);
        assert_memory_equal(p, q, sizeof p);
        em_optim_destroy(o);
        em_optim_destroy(ref);
    }
}

static void test_reset(void **state) {
    (void)state;
    em_optim_config c = em_optim_defaults(EM_OPTIM_ADAM, 0.1);
    c.schedule.kind = EM_LR_EXPONENTIAL;
    c.schedule.gamma = 0.9;
    em_optim *o = em_optim_create(&c, 2, NULL);
    double p[2] = {1, 2}, first[2];
    double g[2] = {0.3, -0.7};
    for (int run = 0; run < 2; run++) {
        p[0] = 1, p[1] = 2;
        for (int s = 0; s < 5; s++) em_optim_step(o, p, g, NULL);
        if (run == 0) {
            memcpy(first, p, sizeof p);
            em_optim_reset(o);
            assert_int_equal(em_optim_steps(o), 0);
            tu_assert_close(em_optim_lr(o), 0.1, 0, 0);
        }
    }
    assert_memory_equal(p, first, sizeof p);
    assert_int_equal(em_optim_len(o), 2);
    assert_int_equal(em_optim_config_of(o)->kind, EM_OPTIM_ADAM);
    em_optim_destroy(o);
    em_optim_destroy(NULL);
}

/* ---- configurations ------------------------------------------------------------------------------------ */

static void expect_rejected(const em_optim_config *c, size_t n, const char *needle) {
    em_error e = {0};
    em_optim *o = em_optim_create(c, n, &e);
    if (o) {
        em_optim_destroy(o);
        fail_msg("configuration accepted; expected an error mentioning '%s'", needle);
    }
    assert_int_equal(e.status, EM_ERR_ARG);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_bad_configs(void **state) {
    (void)state;
    em_optim_config c;
#define REJECT(kind, field_assign, n, needle)    \
    do {                                         \
        c = em_optim_defaults(kind, 0.1);        \
        field_assign;                            \
        expect_rejected(&c, n, needle);          \
    } while (0)
    REJECT(EM_OPTIM_ADAM, c.lr = 0, 2, "lr = 0");
    REJECT(EM_OPTIM_SGD, c.lr = -1, 2, "lr = -1");
    REJECT(EM_OPTIM_SGD, c.lr = NAN, 2, "lr = nan");
    REJECT(EM_OPTIM_ADAM, (void)0, 0, "n = 0");
    REJECT(EM_OPTIM_ADAM, c.beta1 = 1.0, 2, "beta1 = 1 is outside [0, 1)");
    REJECT(EM_OPTIM_CLIPPED_ADAM, c.beta2 = -0.1, 2, "beta2 = -0.1");
    REJECT(EM_OPTIM_ADAM, c.eps = 0, 2, "eps = 0");
    REJECT(EM_OPTIM_RMSPROP, c.eps = -1e-8, 2, "eps = -1e-08");
    REJECT(EM_OPTIM_ADAGRAD, c.eps = 0, 2, "eps = 0");
    REJECT(EM_OPTIM_SGD, c.momentum = 1.0, 2, "momentum = 1");
    REJECT(EM_OPTIM_SGD, c.nesterov = 1, 2, "nesterov needs momentum");
    REJECT(EM_OPTIM_SGD, c.weight_decay = -0.1, 2, "weight_decay");
    REJECT(EM_OPTIM_CLIPPED_ADAM, c.clip_norm = 0, 2, "clip_norm = 0");
    REJECT(EM_OPTIM_CLIPPED_ADAM, c.lrd = 0, 2, "lrd = 0");
    REJECT(EM_OPTIM_CLIPPED_ADAM, c.lrd = 1.5, 2, "lrd = 1.5");
    REJECT(EM_OPTIM_ADAGRAD, c.lr_decay = -1, 2, "lr_decay");
    REJECT(EM_OPTIM_RMSPROP, c.alpha = 1, 2, "alpha = 1");
    REJECT(EM_OPTIM_ADAM, (c.schedule.kind = EM_LR_STEP, c.schedule.step_size = 0), 2, "step_size");
    REJECT(EM_OPTIM_ADAM, (c.schedule.kind = EM_LR_EXPONENTIAL, c.schedule.gamma = 0), 2, "gamma = 0");
    REJECT(EM_OPTIM_ADAM, (c.schedule.kind = EM_LR_COSINE, c.schedule.t_max = 0), 2, "t_max");
    REJECT(EM_OPTIM_ADAM, (c.schedule.kind = EM_LR_COSINE, c.schedule.eta_min = 1), 2, "eta_min = 1");
    REJECT(EM_OPTIM_ADAM, c.schedule.kind = (em_lr_schedule_kind)9, 2, "unknown schedule");
    REJECT(EM_OPTIM_ADAM, c.kind = (em_optim_kind)9, 2, "unknown optimizer kind 9");
#undef REJECT
    /* a zeroed configuration is not silently accepted */
    memset(&c, 0, sizeof c);
    c.kind = EM_OPTIM_ADAM;
    expect_rejected(&c, 2, "lr = 0");
    c.lr = 0.1;
    expect_rejected(&c, 2, "eps = 0");
    expect_rejected(NULL, 2, "NULL configuration");
    /* NULL arguments to step */
    em_optim *o = em_optim_create(&(em_optim_config){.kind = EM_OPTIM_SGD, .lr = 0.1}, 1, NULL);
    assert_non_null(o);
    double p = 0;
    assert_int_equal(em_optim_step(o, &p, NULL, NULL), EM_ERR_ARG);
    em_optim_destroy(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_three_steps),
        cmocka_unit_test(test_adam_three_steps),
        cmocka_unit_test(test_clipped_adam_three_steps),
        cmocka_unit_test(test_adagrad_three_steps),
        cmocka_unit_test(test_rmsprop_three_steps),
        cmocka_unit_test(test_converges_on_quadratic),
        cmocka_unit_test(test_adam_rosenbrock),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_nonfinite_gradient_skipped),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
