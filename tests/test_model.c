/* test_model.c — the model language: sites, plates, handlers, the parameter store and the
 * log-density bridge. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITE_BIT(k) (1u << (k))
static const double LOG_SQRT_2PI = 0.91893853320467274178;

static double normal_lpdf(double x, double mu, double s) {
    double z = (x - mu) / s;
    return -0.5 * z * z - log(s) - LOG_SQRT_2PI;
}

/* ---- a small regression model used throughout ------------------------------------------ */

typedef struct {
    size_t n;
    const double *x, *y;
} reg_data;

static const double X5[5] = {-1.0, 0.5, 1.5, 2.0, 3.5};
static const double Y5[5] = {-0.7, 1.1, 2.3, 2.9, 4.6};

static void reg_model(em_model *m, const void *arg) {
    const reg_data *d = arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 1.0));
    em_var s = em_sample(m, "sigma", em_uniform(m, 0.0, 10.0));
    em_var mu = em_add(m, a, em_mul(m, b, em_data(m, d->x, d->n)));
    em_deterministic(m, "mu", mu);
    EM_PLATE(m, p, "data", d->n, 0) {
        em_observe(m, "obs", em_normal(m, mu, s), d->y, d->n);
    }
}

/* The same log density written by hand on the unconstrained space: θ = (a, b, logit(s/10)). */
static double reg_logdensity(const reg_data *d, const double *th, double *grad) {
    double a = th[0], b = th[1], u = th[2];
    double sg = 1.0 / (1.0 + exp(-u)), s = 10.0 * sg;
    double lp = normal_lpdf(a, 0, 10) + normal_lpdf(b, 0, 1) - log(10.0);
    lp += log(10.0) + log(sg) + log1p(-sg); /* log|ds/du| */
    double ga = -a / 100.0, gb = -b, gs = 0.0;
    for (size_t i = 0; i < d->n; i++) {
        double r = d->y[i] - a - b * d->x[i];
        lp += normal_lpdf(d->y[i], a + b * d->x[i], s);
        ga += r / (s * s);
        gb += r * d->x[i] / (s * s);
        gs += r * r / (s * s * s) - 1.0 / s;
    }
    if (grad) {
        grad[0] = ga;
        grad[1] = gb;
        grad[2] = gs * 10.0 * sg * (1.0 - sg) + (1.0 - 2.0 * sg);
    }
    return lp;
}

static em_status run_traced(em_model *m, em_trace *tr, em_model_fn fn, const void *data, em_error *err) {
    em_trace_handler th;
    em_trace_handler_init(&th, tr);
    em_push(m, &th.base);
    em_status s = em_model_run(m, fn, data, err);
    em_pop(m, &th.base);
    return s;
}

static void test_trace_records_sites(void **state) {
    (void)state;
    reg_data d = {5, X5, Y5};
    em_error err = {0};
    em_model *m = em_model_create(1, &err);
    em_trace *tr = em_trace_create();
    assert_int_equal(run_traced(m, tr, reg_model, &d, &err), EM_OK);
    assert_int_equal(em_trace_count(tr), 5);
    const char *names[] = {"a", "b", "sigma", "mu", "obs"};
    em_site_kind kinds[] = {EM_SITE_SAMPLE, EM_SITE_SAMPLE, EM_SITE_SAMPLE, EM_SITE_DETERMINISTIC, EM_SITE_OBSERVE};
    for (size_t i = 0; i < 5; i++) {
        em_site *s = em_trace_site(tr, i);
        assert_string_equal(s->name, names[i]);
        assert_int_equal(s->kind, kinds[i]);
    }
    em_site *obs = em_trace_find(tr, "obs");
    assert_int_equal(obs->len, 5);
    assert_true(obs->is_observed);
    assert_int_equal(obs->nplates, 1);
    assert_string_equal(obs->plates[0], "data");
    em_site *sg = em_trace_find(tr, "sigma");
    double s = em_value_scalar(em_model_tape(m), sg->value);
    assert_true(s > 0.0 && s < 10.0);
    /* the trace's log joint equals the hand-computed one at the drawn values */
    em_tape *t = em_model_tape(m);
    double a = em_value_scalar(t, em_trace_find(tr, "a")->value);
    double b = em_value_scalar(t, em_trace_find(tr, "b")->value);
    double expect = normal_lpdf(a, 0, 10) + normal_lpdf(b, 0, 1) - log(10.0);
    for (size_t i = 0; i < 5; i++) expect += normal_lpdf(Y5[i], a + b * X5[i], s);
    em_var lp = em_trace_log_prob_sum(t, tr, SITE_BIT(EM_SITE_SAMPLE) | SITE_BIT(EM_SITE_OBSERVE));
    tu_assert_close(em_value_scalar(t, lp), expect, 1e-12, 1e-12);
    em_trace_destroy(tr);
    em_model_destroy(m);
}

static void dup_model(em_model *m, const void *arg) {
    (void)arg;
    em_sample(m, "z", em_normal(m, 0.0, 1.0));
    em_sample(m, "z", em_normal(m, 0.0, 1.0));
}

static void test_duplicate_site_is_an_error(void **state) {
    (void)state;
    em_error err = {0};
    em_model *m = em_model_create(1, &err);
    em_trace *tr = em_trace_create();
    assert_int_equal(run_traced(m, tr, dup_model, NULL, &err), EM_ERR_MODEL);
    assert_non_null(strstr(err.msg, "'z'"));
    assert_non_null(strstr(err.msg, "twice"));
    em_trace_destroy(tr);
    em_model_destroy(m);
}

static void bad_len_model(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    EM_PLATE(m, p, "rows", 4, 0) {
        em_observe(m, "y", em_normal(m, mu, 1.0), Y5, 5);
    }
}

static void test_observe_wrong_length_names_site(void **state) {
    (void)state;
    em_error err = {0};
    em_model *m = em_model_create(1, &err);
    assert_int_equal(em_model_run(m, bad_len_model, NULL, &err), EM_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "'y'"));
    assert_non_null(strstr(err.msg, "'rows'"));
    em_model_destroy(m);
}

static void bad_param_model(em_model *m, const void *arg) {
    (void)arg;
    em_sample(m, "s", em_normal(m, 0.0, -2.0));
}

static void test_invalid_distribution_reports_value(void **state) {
    (void)state;
    em_error err = {0};
    em_model *m = em_model_create(1, &err);
    em_trace *tr = em_trace_create();
    /* sampling from Normal(0, -2) must fail cleanly, naming the parameter and value */
    em_status s = run_traced(m, tr, bad_param_model, NULL, &err);
    assert_int_not_equal(s, EM_OK);
    assert_non_null(strstr(err.msg, "-2"));
    em_trace_destroy(tr);
    em_model_destroy(m);
}

static void test_condition_substitute_block(void **state) {
    (void)state;
    reg_data d = {5, X5, Y5};
    em_error err = {0};
    em_model *m = em_model_create(7, &err);
    em_trace *tr = em_trace_create();
    em_trace_handler th;
    em_trace_handler_init(&th, tr);

    /* condition: b becomes observed at 0.5; a name no site uses is reported */
    const double half = 0.5;
    const char *cnames[] = {"b", "nosuch"};
    const double *cvals[] = {&half, &half};
    const size_t clens[] = {1, 1};
    em_condition_handler ch;
    em_condition_handler_init(&ch, cnames, cvals, clens, 2);
    em_push(m, &th.base);
    em_push(m, &ch.base);
    assert_int_equal(em_model_run(m, reg_model, &d, &err), EM_OK);
    em_pop(m, &ch.base);
    em_pop(m, &th.base);
    em_site *b = em_trace_find(tr, "b");
    assert_true(b->is_observed);
    assert_true(em_value_scalar(em_model_tape(m), b->value) == 0.5);
    assert_string_equal(em_condition_unused(&ch), "nosuch");

    /* substitute: a fixed, not observed */
    em_trace_clear(tr);
    em_tape_reset(em_model_tape(m));
    const double three = 3.0;
    const char *snames[] = {"a"};
    const double *svals[] = {&three};
    const size_t slens[] = {1};
    em_substitute_handler sh;
    em_substitute_handler_init(&sh, snames, svals, slens, 1);
    em_push(m, &th.base);
    em_push(m, &sh.base);
    assert_int_equal(em_model_run(m, reg_model, &d, &err), EM_OK);
    em_pop(m, &sh.base);
    em_pop(m, &th.base);
    em_site *a = em_trace_find(tr, "a");
    assert_false(a->is_observed);
    assert_true(em_value_scalar(em_model_tape(m), a->value) == 3.0);
    assert_null(em_substitute_unused(&sh));

    /* block: hidden sites do not reach the trace */
    em_trace_clear(tr);
    em_tape_reset(em_model_tape(m));
    const char *hide[] = {"sigma", "obs"};
    em_block_handler bh;
    em_block_handler_init(&bh, hide, 2, 0);
    em_push(m, &th.base);
    em_push(m, &bh.base);
    assert_int_equal(em_model_run(m, reg_model, &d, &err), EM_OK);
    em_pop(m, &bh.base);
    em_pop(m, &th.base);
    assert_int_equal(em_trace_count(tr), 3);
    assert_null(em_trace_find(tr, "sigma"));
    assert_null(em_trace_find(tr, "obs"));
    em_trace_destroy(tr);
    em_model_destroy(m);
}

static void test_replay_scale_mask_seed(void **state) {
    (void)state;
    reg_data d = {5, X5, Y5};
    em_error err = {0};
    em_model *m = em_model_create(3, &err);
    em_tape *t = em_model_tape(m);
    em_trace *t1 = em_trace_create(), *t2 = em_trace_create();
    em_rng *r = em_rng_create(42, 0);
    em_seed_handler sd;
    em_seed_handler_init(&sd, r);
    em_push(m, &sd.base);
    assert_int_equal(run_traced(m, t1, reg_model, &d, &err), EM_OK);
    em_pop(m, &sd.base);

    /* replay: a second run takes every latent value from the first trace */
    em_replay_handler rh;
    em_replay_handler_init(&rh, t1);
    em_trace_handler th;
    em_trace_handler_init(&th, t2);
    em_push(m, &th.base);
    em_push(m, &rh.base);
    assert_int_equal(em_model_run(m, reg_model, &d, &err), EM_OK);
    em_pop(m, &rh.base);
    em_pop(m, &th.base);
    const char *lat[] = {"a", "b", "sigma"};
    for (int i = 0; i < 3; i++)
        assert_true(em_value_scalar(t, em_trace_find(t1, lat[i])->value) ==
                    em_value_scalar(t, em_trace_find(t2, lat[i])->value));

    /* scale multiplies every log density; mask zeroes them */
    em_var lp1 = em_trace_log_prob_sum(t, t1, SITE_BIT(EM_SITE_SAMPLE) | SITE_BIT(EM_SITE_OBSERVE));
    em_trace *t3 = em_trace_create();
    em_scale_handler sc;
    em_scale_handler_init(&sc, 2.5);
    em_trace_handler th3;
    em_trace_handler_init(&th3, t3);
    em_push(m, &th3.base);
    em_push(m, &sc.base);
    em_push(m, &rh.base);
    assert_int_equal(em_model_run(m, reg_model, &d, &err), EM_OK);
    em_pop(m, &rh.base);
    em_pop(m, &sc.base);
    em_pop(m, &th3.base);
    em_var lp3 = em_trace_log_prob_sum(t, t3, SITE_BIT(EM_SITE_SAMPLE) | SITE_BIT(EM_SITE_OBSERVE));
    tu_assert_close(em_value_scalar(t, lp3), 2.5 * em_value_scalar(t, lp1), 1e-12, 0);

    em_trace_clear(t3);
    em_mask_handler mk;
    em_mask_handler_init(&mk, 0);
    em_push(m, &th3.base);
    em_push(m, &mk.base);
    assert_int_equal(em_model_run(m, reg_model, &d, &err), EM_OK);
    em_pop(m, &mk.base);
    em_pop(m, &th3.base);
    lp3 = em_trace_log_prob_sum(t, t3, SITE_BIT(EM_SITE_SAMPLE) | SITE_BIT(EM_SITE_OBSERVE));
    assert_true(em_value_scalar(t, lp3) == 0.0);

    /* seed: the same stream gives the same draws */
    em_rng *r2 = em_rng_create(42, 0);
    em_seed_handler sd2;
    em_seed_handler_init(&sd2, r2);
    em_trace *t4 = em_trace_create();
    em_push(m, &sd2.base);
    assert_int_equal(run_traced(m, t4, reg_model, &d, &err), EM_OK);
    em_pop(m, &sd2.base);
    for (int i = 0; i < 3; i++)
        assert_true(em_value_scalar(t, em_trace_find(t1, lat[i])->value) ==
                    em_value_scalar(t, em_trace_find(t4, lat[i])->value));
    em_rng_destroy(r);
    em_rng_destroy(r2);
    em_trace_destroy(t1);
    em_trace_destroy(t2);
    em_trace_destroy(t3);
    em_trace_destroy(t4);
    em_model_destroy(m);
}

/* ---- plates with subsampling --------------------------------------------------------------- */

static double Y100[100];

static void sub_model(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    EM_PLATE(m, p, "rows", 100, 10) {
        assert_int_equal(em_plate_size(p), 10);
        em_observe(m, "y", em_normal(m, mu, 1.0), em_plate_select(m, p, Y100), em_plate_size(p));
    }
}

static void test_plate_subsample_scales(void **state) {
    (void)state;
    for (int i = 0; i < 100; i++) Y100[i] = 0.01 * i;
    em_error err = {0};
    em_model *m = em_model_create(5, &err);
    em_trace *tr = em_trace_create();
    assert_int_equal(run_traced(m, tr, sub_model, NULL, &err), EM_OK);
    em_site *y = em_trace_find(tr, "y");
    assert_int_equal(y->len, 10);
    tu_assert_close(y->scale, 10.0, 0, 1e-15);
    /* log density = 10 × the subsample's, and the subsample has distinct indices */
    em_tape *t = em_model_tape(m);
    double mu = em_value_scalar(t, em_trace_find(tr, "mu")->value);
    const double *yv = em_value(t, y->value);
    double expect = 0.0;
    for (int i = 0; i < 10; i++) {
        expect += normal_lpdf(yv[i], mu, 1.0);
        for (int j = 0; j < i; j++) assert_true(yv[i] != yv[j]);
    }
    tu_assert_close(em_value_scalar(t, em_site_log_prob(t, y)), 10.0 * expect, 1e-12, 0);
    em_trace_destroy(tr);
    em_model_destroy(m);
}

static double Y12[12];

static void nested_model(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    EM_PLATE(m, outer, "groups", 6, 3) {
        EM_PLATE(m, inner, "members", 4, 0) {
            em_observe(m, "y", em_normal(m, mu, 1.0), Y12, 12);
        }
    }
}

static void leaky_model(em_model *m, const void *arg) {
    (void)arg;
    em_plate_begin(m, "rows", 3, 0);
    em_sample(m, "z", em_normal(m, 0.0, 1.0));
}

static void test_nested_plates(void **state) {
    (void)state;
    for (int i = 0; i < 12; i++) Y12[i] = 0.1 * i;
    em_error err = {0};
    em_model *m = em_model_create(2, &err);
    em_trace *tr = em_trace_create();
    assert_int_equal(run_traced(m, tr, nested_model, NULL, &err), EM_OK);
    em_site *y = em_trace_find(tr, "y");
    assert_int_equal(y->nplates, 2);
    assert_string_equal(y->plates[0], "groups");
    assert_string_equal(y->plates[1], "members");
    tu_assert_close(y->scale, 2.0, 0, 1e-15); /* 6 groups subsampled to 3 */
    em_trace_destroy(tr);
    em_model_destroy(m);

    /* a plate left open (a jump out of its block) is reported, and the stack is restored */
    em_model *m2 = em_model_create(2, &err);
    em_error e2 = {0};
    assert_int_equal(em_model_run(m2, leaky_model, NULL, &e2), EM_ERR_MODEL);
    assert_non_null(strstr(e2.msg, "open"));
    em_model_destroy(m2);
}

/* ---- params and the store ------------------------------------------------------------------- */

static void param_model(em_model *m, const void *arg) {
    (void)arg;
    const double loc0[2] = {0.5, -1.0}, sc0 = 2.0;
    em_var loc = em_param(m, "loc", loc0, 2, EM_CONSTRAINT_REAL);
    em_var sc = em_param(m, "scale", &sc0, 1, EM_CONSTRAINT_POSITIVE);
    em_factor(m, "f", em_sum(m, em_mul(m, loc, sc)));
}

/* Load text into a fresh store expecting EM_ERR_PARSE with frag in the message. */
static void store_fails(const char *text, size_t len, const char *frag) {
    em_param_store *ps = em_param_store_create();
    em_error e = {0};
    em_status st = em_param_store_load_buffer(ps, "p.txt", text, len, &e);
    if (st != EM_ERR_PARSE) fail_msg("status %s for '%s': %s", em_status_str(st), text, e.msg);
    if (!strstr(e.msg, frag)) fail_msg("message '%s' lacks '%s'", e.msg, frag);
    assert_int_equal(em_param_store_count(ps), 0);
    em_param_store_destroy(ps);
}
#define STORE_FAILS(text, frag) store_fails(text, sizeof text - 1, frag)

/* The parameter-store reader: the CSV reader's number grammar, a parameter per line, and the
 * right line after blank lines. */
static void test_param_store_reader_strict(void **state) {
    (void)state;
    /* accepted: blank lines, CRLF, the writer's -inf/inf/nan bounds, exponents */
    const char ok[] = "# ember parameter store v1\r\n\n  \nw identity 0 0 2 1.5 -2e-3\r\n\n"
                      "s upper -inf 3 1 .25\nt identity nan nan 1 7.\n";
    em_param_store *ps = em_param_store_create();
    em_error e = {0};
    if (em_param_store_load_buffer(ps, "p.txt", ok, sizeof ok - 1, &e) != EM_OK) fail_msg("%s", e.msg);
    assert_int_equal(em_param_store_count(ps), 3);
    const double *v = em_param_store_values(ps);
    assert_true(v[0] == 1.5 && v[1] == -2e-3 && v[2] == 0.25 && v[3] == 7.0);
    em_param_store_destroy(ps);

    /* hex was read as 16 */
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 0x10\n",
                "p.txt:2:18: parameter 'w': value 1 '0x10' is not a number");
    STORE_FAILS("# ember parameter store v1\nw identity 0x1 0 1 1\n", "p.txt:2:12: parameter 'w': lo '0x1' is not a number");
    /* a vector split over two lines was read as one */
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 2 1\n2\n",
                "p.txt:2:19: parameter 'w': the line ends after 1 of its 2 values");
    /* the line is counted across blank lines */
    STORE_FAILS("# ember parameter store v1\n\nw identity 0 0 1 1\n\n\nv identity 0 0 1 1e\n",
                "p.txt:6:18: parameter 'v': value 1 '1e' is not a number (exponent without digits)");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 inf\n", "p.txt:2:18: parameter 'w': value 1 'inf' is not");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 NaN\n", "p.txt:2:18: parameter 'w': value 1 'NaN' is missing");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 1e400\n", "value 1 '1e400' is out of range");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 2x 1 2\n",
                "p.txt:2:16: parameter 'w': length '2x' is not a whole number in 1..268435456");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 +1 1\n", "length '+1' is not a whole number");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 99999999999999999999999 1\n", "is not a whole number");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 268435456 1\n",
                "p.txt:2:27: parameter 'w': the line ends after 1 of its 268435456 values");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 1 2\n", "p.txt:2:20: parameter 'w': text after its 1 values: '2'");
    STORE_FAILS("# ember parameter store v1\nw spline 0 0 1 1\n", "p.txt:2:3: parameter 'w': unknown transform 'spline'");
    STORE_FAILS("# ember parameter store v1\nw\n", "p.txt:2:2: parameter 'w': the line ends before its transform");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 1\nw identity 0 0 1 1\n",
                "p.txt:3:1: parameter 'w' appears twice");
    STORE_FAILS("# ember parameter store v1\nw interval 1 0 1 0\n", "p.txt:2:3: parameter 'w': interval transform: bounds (1, 0)");
    STORE_FAILS("# ember parameter store v1\nw simplex 0 0 2 0 0\n",
                "p.txt:2:3: parameter 'w': the simplex transform changes the length of 2 values");
    STORE_FAILS("# ember parameter store v10\n", "p.txt:1: not an ember parameter store file");
    STORE_FAILS("", "p.txt:1: not an ember parameter store file");
    STORE_FAILS("# ember parameter store v1\nw identity 0 0 1 1\0\n", "p.txt:2:19: binary data");
    /* the last token may end an unterminated buffer */
    const char cut[] = "# ember parameter store v1\nw identity 0 0 1 12345";
    ps = em_param_store_create();
    em_error_clear(&e);
    assert_int_equal(em_param_store_load_buffer(ps, "p.txt", cut, sizeof cut - 3, &e), EM_OK);
    assert_true(em_param_store_values(ps)[0] == 123);
    em_param_store_destroy(ps);
    /* and the file reader says the same, with the file's name */
    char path[] = "/tmp/ember_ps_strict_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char bad[] = "# ember parameter store v1\n\n\nw identity 0 0 1 0x10\n";
    assert_int_equal(write(fd, bad, sizeof bad - 1), (ssize_t)(sizeof bad - 1));
    close(fd);
    ps = em_param_store_create();
    em_error_clear(&e);
    assert_int_equal(em_param_store_load(ps, path, &e), EM_ERR_PARSE);
    char want[128];
    snprintf(want, sizeof want, "%s:4:18: parameter 'w': value 1 '0x10' is not a number", path);
    if (!strstr(e.msg, want)) fail_msg("message '%s' lacks '%s'", e.msg, want);
    em_param_store_destroy(ps);
    unlink(path);
}

static void test_param_store_grad_and_file(void **state) {
    (void)state;
    em_error err = {0};
    em_model *m = em_model_create(1, &err);
    em_param_store *ps = em_param_store_create();
    em_model_set_params(m, ps);
    em_trace *tr = em_trace_create();
    assert_int_equal(run_traced(m, tr, param_model, NULL, &err), EM_OK);
    assert_int_equal(em_param_store_count(ps), 2);
    assert_int_equal(em_param_store_dim(ps), 3);
    tu_assert_close(em_param_store_values(ps)[2], log(2.0), 1e-15, 0);
    em_tape *t = em_model_tape(m);
    em_var f = em_trace_log_prob_sum(t, tr, SITE_BIT(EM_SITE_FACTOR));
    tu_assert_close(em_value_scalar(t, f), (0.5 - 1.0) * 2.0, 1e-15, 0);
    assert_int_equal(em_backward(t, f), EM_OK);
    double g[3];
    em_param_store_collect_grad(ps, t, g);
    tu_assert_close(g[0], 2.0, 1e-15, 0);
    tu_assert_close(g[1], 2.0, 1e-15, 0);
    tu_assert_close(g[2], (0.5 - 1.0) * 2.0, 1e-15, 0); /* d/du of sum(loc)·e^u */

    char path[] = "/tmp/ember_ps_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    em_param_store_values(ps)[0] = 1.25;
    assert_int_equal(em_param_store_save(ps, path, &err), EM_OK);
    em_param_store *p2 = em_param_store_create();
    assert_int_equal(em_param_store_load(p2, path, &err), EM_OK);
    assert_int_equal(em_param_store_dim(p2), 3);
    assert_true(em_param_store_values(p2)[0] == 1.25);
    double sc;
    assert_int_equal(em_param_store_get(p2, "scale", &sc, 1, &err), EM_OK);
    tu_assert_close(sc, 2.0, 1e-15, 0);

    /* a store with an extra name refuses the file, naming the missing parameter */
    em_param_store *p3 = em_param_store_create();
    const double one = 1.0;
    assert_int_equal(em_param_store_add(p3, "loc", X5, 2, EM_CONSTRAINT_REAL, &err), EM_OK);
    assert_int_equal(em_param_store_add(p3, "scale", &one, 1, EM_CONSTRAINT_POSITIVE, &err), EM_OK);
    assert_int_equal(em_param_store_add(p3, "extra", &one, 1, EM_CONSTRAINT_REAL, &err), EM_OK);
    em_error e2 = {0};
    assert_int_equal(em_param_store_load(p3, path, &e2), EM_ERR_MODEL);
    assert_non_null(strstr(e2.msg, "'extra'"));
    /* a file with a name the store lacks: also refused */
    em_param_store *p4 = em_param_store_create();
    assert_int_equal(em_param_store_add(p4, "loc", X5, 2, EM_CONSTRAINT_REAL, &err), EM_OK);
    em_error e3 = {0};
    assert_int_equal(em_param_store_load(p4, path, &e3), EM_ERR_MODEL);
    assert_non_null(strstr(e3.msg, "'scale'"));
    /* a bad initial value for a constrained parameter is an error naming it */
    const double neg = -1.0;
    em_error e4 = {0};
    assert_int_not_equal(em_param_store_add(p4, "s2", &neg, 1, EM_CONSTRAINT_POSITIVE, &e4), EM_OK);
    assert_non_null(strstr(e4.msg, "'s2'"));
    unlink(path);
    em_param_store_destroy(p2);
    em_param_store_destroy(p3);
    em_param_store_destroy(p4);
    em_param_store_destroy(ps);
    em_trace_destroy(tr);
    em_model_destroy(m);
}

/* ---- the log-density bridge ---------------------------------------------------------------- */

static void test_logdensity_matches_hand_written(void **state) {
    (void)state;
    reg_data d = {5, X5, Y5};
    em_error err = {0};
    em_logdensity_options opt = {.seed = 11};
    em_logdensity *ld = em_logdensity_from_model(reg_model, &d, &opt, &err);
    assert_non_null(ld);
    assert_int_equal(em_logdensity_dim(ld), 3);
    assert_int_equal(em_logdensity_num_outputs(ld), 3);
    assert_string_equal(em_logdensity_output_name(ld, 2), "sigma");
    double th[3], g[3], gh[3], lp;
    for (int rep = 0; rep < 20; rep++) {
        tu_fill_uniform(th, 3, -2.0, 2.0, 100 + rep);
        assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
        double lph = reg_logdensity(&d, th, gh);
        tu_assert_close(lp, lph, 1e-12, 1e-12);
        for (int i = 0; i < 3; i++) tu_assert_close(g[i], gh[i], 1e-10, 1e-12);
    }
    double out[3];
    assert_int_equal(em_logdensity_constrain(ld, th, out, &err), EM_OK);
    assert_true(out[0] == th[0]);
    tu_assert_close(out[2], 10.0 / (1.0 + exp(-th[2])), 1e-15, 0);

    /* a clone gives bit-identical results */
    em_logdensity *c = em_logdensity_clone(ld);
    double lpc, gc[3];
    assert_int_equal(em_logdensity_eval(c, th, &lpc, gc, &err), EM_OK);
    assert_memory_equal(&lp, &lpc, sizeof lp);
    assert_memory_equal(g, gc, sizeof g);
    em_logdensity_destroy(c);

    em_logdensity_destroy(ld);
}

static void test_logdensity_deterministic_outputs(void **state) {
    (void)state;
    reg_data d = {5, X5, Y5};
    em_error err = {0};
    em_logdensity_options opt = {.seed = 1, .include_deterministic = 1};
    em_logdensity *ld = em_logdensity_from_model(reg_model, &d, &opt, &err);
    assert_non_null(ld);
    assert_int_equal(em_logdensity_num_outputs(ld), 3 + 5);
    assert_string_equal(em_logdensity_output_name(ld, 3), "mu.1");
    assert_string_equal(em_logdensity_output_name(ld, 7), "mu.5");
    double th[3] = {0.3, 1.2, -0.4}, out[8];
    assert_int_equal(em_logdensity_constrain(ld, th, out, &err), EM_OK);
    for (int i = 0; i < 5; i++) tu_assert_close(out[3 + i], 0.3 + 1.2 * X5[i], 1e-15, 1e-15);
    em_logdensity_destroy(ld);
}

static int structure_flag;
static void changing_model(em_model *m, const void *arg) {
    (void)arg;
    em_sample(m, structure_flag ? "w" : "v", em_normal(m, 0.0, 1.0));
}

static void discrete_model(em_model *m, const void *arg) {
    (void)arg;
    em_sample(m, "k", em_poisson(m, 3.0));
}

static void test_logdensity_errors(void **state) {
    (void)state;
    em_error err = {0};
    structure_flag = 0;
    em_logdensity *ld = em_logdensity_from_model(changing_model, NULL, NULL, &err);
    assert_non_null(ld);
    structure_flag = 1;
    double th = 0.1, lp, g;
    assert_int_equal(em_logdensity_eval(ld, &th, &lp, &g, &err), EM_ERR_MODEL);
    assert_non_null(strstr(err.msg, "'w'"));
    assert_non_null(strstr(err.msg, "'v'"));
    assert_true(isinf(lp) && lp < 0);
    em_logdensity_destroy(ld);

    em_error e2 = {0};
    assert_null(em_logdensity_from_model(discrete_model, NULL, NULL, &e2));
    assert_non_null(strstr(e2.msg, "'k'"));
}

/* Invalid distribution arguments inside a model, one case per value. */
static int bad_arg_case;
static void bad_arg_model(em_model *m, const void *arg) {
    (void)arg;
    static const double y[3] = {1, 2, 3};
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    switch (bad_arg_case) {
    case 0: em_observe(m, "obs", em_normal(m, mu, -1.0), y, 3); break;
    case 1: em_observe(m, "obs", em_normal(m, mu, NAN), y, 3); break;
    case 2: em_sample(m, "u", em_uniform(m, 2.0, 1.0)); break;
    case 3: em_observe(m, "obs", em_normal(m, NAN, 1.0), y, 3); break;
    case 4: em_observe(m, "obs", em_normal(m, 0.0, mu), y, 3); break; /* fails only where mu <= 0 */
    }
}

/* Every model error names the site, whether the model runs or its tape is replayed. */
static void test_errors_name_the_site(void **state) {
    (void)state;
    static const struct {
        const char *site, *what;
    } want[] = {{"obs", "Normal: scale[0] = -1 must be positive"},
                {"obs", "Normal: scale[0] = nan must be positive"},
                {"u", "Uniform: hi[0] = 1 must be greater than lo[0] = 2"},
                {"obs", "Normal: loc[0] = nan must be finite"}};
    for (int replay = 0; replay <= 1; replay++)
        for (bad_arg_case = 0; bad_arg_case < 4; bad_arg_case++) {
            char frag[160];
            snprintf(frag, sizeof frag, "site '%s': %s", want[bad_arg_case].site, want[bad_arg_case].what);
            em_error e = {0};
            em_logdensity_options opt = {.seed = 3, .no_replay = !replay};
            em_logdensity *ld = em_logdensity_from_model(bad_arg_model, NULL, &opt, &e);
            if (!ld) { /* the discovery run already failed */
                if (!strstr(e.msg, frag)) fail_msg("case %d: '%s' lacks '%s'", bad_arg_case, e.msg, frag);
                continue;
            }
            double th = 0.25, lp, g;
            assert_int_equal(em_logdensity_eval(ld, &th, &lp, &g, &e), EM_ERR_DOMAIN);
            if (!strstr(e.msg, frag)) fail_msg("case %d, replay %d: '%s' lacks '%s'", bad_arg_case, replay, e.msg, frag);
            em_logdensity_destroy(ld);
        }
    /* a replayed tape: the first evaluation is fine and records it, a later one fails */
    {
        bad_arg_case = 4;
        em_error e = {0};
        em_logdensity *ld = em_logdensity_from_model(bad_arg_model, NULL, NULL, &e);
        assert_non_null(ld);
        double th = 20.0, lp, g;
        if (em_logdensity_eval(ld, &th, &lp, &g, &e) != EM_OK) fail_msg("first evaluation: %s", e.msg);
        assert_true(em_logdensity_replays(ld));
        th = -0.5;
        assert_int_equal(em_logdensity_eval(ld, &th, &lp, &g, &e), EM_ERR_DOMAIN);
        const char *frag = "site 'obs': Normal: scale[0] = -0.5 must be positive";
        if (!strstr(e.msg, frag)) fail_msg("replayed: '%s' lacks '%s'", e.msg, frag);
        em_logdensity_destroy(ld);
    }
}

/* A model bound to no data: observe of 0 values, em_data of 0 values, a plate of size 0. */
static int no_data_case;
static void no_data_model(em_model *m, const void *arg) {
    (void)arg;
    static const double y[1] = {0};
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    if (no_data_case == 0) {
        em_observe(m, "obs", em_normal(m, mu, 1.0), y, 0);
        return;
    }
    em_var x = em_data(m, y, 0);
    EM_PLATE(m, p, "rows", 0, 0) {
        em_observe(m, "obs", em_normal(m, em_mul(m, mu, x), 1.0), y, 0);
    }
}

static void test_model_without_data_is_an_error(void **state) {
    (void)state;
    static const char *const want[] = {"observe 'obs': no data (0 values)",
                                       "const: empty 0x1 data (a data set with no rows?) (after site 'mu')"};
    for (no_data_case = 0; no_data_case < 2; no_data_case++) {
        em_error e = {0};
        assert_null(em_logdensity_from_model(no_data_model, NULL, NULL, &e));
        assert_true(e.status == EM_ERR_ARG || e.status == EM_ERR_SHAPE);
        if (!strstr(e.msg, want[no_data_case])) fail_msg("message '%s' lacks '%s'", e.msg, want[no_data_case]);
    }
}

static void param_latent_model(em_model *m, const void *arg) {
    (void)arg;
    const double s0 = 2.0;
    em_var s = em_param(m, "s", &s0, 1, EM_CONSTRAINT_POSITIVE);
    em_sample(m, "z", em_normal(m, 0.0, s));
}

/* A density reads param sites as constants from the store (shared read-only by clones on
 * threads): no gradient flows to them and the store is not written. */
static void test_logdensity_reads_params_as_constants(void **state) {
    (void)state;
    em_error err = {0};
    em_param_store *ps = em_param_store_create();
    const double s3 = 3.0;
    assert_int_equal(em_param_store_add(ps, "s", &s3, 1, EM_CONSTRAINT_POSITIVE, &err), EM_OK);
    em_logdensity_options opt = {.seed = 1, .params = ps};
    em_logdensity *ld = em_logdensity_from_model(param_latent_model, NULL, &opt, &err);
    assert_non_null(ld);
    assert_int_equal(em_logdensity_dim(ld), 1);
    em_logdensity *c = em_logdensity_clone(ld);
    double z = 0.7, lp, g;
    assert_int_equal(em_logdensity_eval(c, &z, &lp, &g, &err), EM_OK);
    tu_assert_close(lp, normal_lpdf(0.7, 0.0, 3.0), 1e-14, 0);
    tu_assert_close(g, -0.7 / 9.0, 1e-14, 0);
    tu_assert_close(em_param_store_values(ps)[0], log(3.0), 1e-15, 0);
    em_logdensity_destroy(c);
    em_logdensity_destroy(ld);
    em_param_store_destroy(ps);
}

static void test_no_allocation_after_warmup(void **state) {
    (void)state;
    reg_data d = {5, X5, Y5};
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(reg_model, &d, NULL, &err);
    assert_non_null(ld);
    double th[3] = {0.1, 0.2, 0.3}, g[3], lp;
    size_t bytes1, mallocs1, bytes100, mallocs100;
    assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
    assert_true(em_logdensity_memory(ld, &bytes1, &mallocs1));
    for (int i = 0; i < 99; i++) {
        th[0] += 0.01;
        assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
    }
    assert_true(em_logdensity_memory(ld, &bytes100, &mallocs100));
    assert_int_equal(bytes100, bytes1);
    assert_int_equal(mallocs100, mallocs1);
    em_logdensity_destroy(ld);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_records_sites),
        cmocka_unit_test(test_duplicate_site_is_an_error),
        cmocka_unit_test(test_observe_wrong_length_names_site),
        cmocka_unit_test(test_invalid_distribution_reports_value),
        cmocka_unit_test(test_condition_substitute_block),
        cmocka_unit_test(test_replay_scale_mask_seed),
        cmocka_unit_test(test_plate_subsample_scales),
        cmocka_unit_test(test_nested_plates),
        cmocka_unit_test(test_param_store_grad_and_file),
        cmocka_unit_test(test_logdensity_matches_hand_written),
        cmocka_unit_test(test_logdensity_deterministic_outputs),
        cmocka_unit_test(test_logdensity_errors),
        cmocka_unit_test(test_logdensity_reads_params_as_constants),
        cmocka_unit_test(test_no_allocation_after_warmup),
        cmocka_unit_test(test_param_store_reader_strict),
        cmocka_unit_test(test_errors_name_the_site),
        cmocka_unit_test(test_model_without_data_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
