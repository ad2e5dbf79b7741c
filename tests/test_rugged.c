/* test_rugged.c — the example's rugged model: its data, and its log density and gradient
 * through the model language against the same density written by hand. */
#include "util/testutil.h"
#include "rugged_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUGGED_CSV "examples/bayesian_regression/data/rugged_data.csv"

static void test_data_loads_170_rows(void **state) {
    (void)state;
    rugged_data d;
    em_error err = {0};
    assert_int_equal(rugged_data_load(RUGGED_CSV, &d, &err), EM_OK);
    assert_int_equal(d.n, 170);
    size_t africa = 0;
    double mean = 0.0;
    for (size_t i = 0; i < d.n; i++) {
        africa += d.africa[i] == 1.0;
        mean += d.log_gdp[i];
    }
    assert_int_equal(africa, 49);
    tu_assert_close(mean / 170.0, 8.517117, 0, 5e-7);
    rugged_data_free(&d);
}

static void test_missing_file_is_a_clear_error(void **state) {
    (void)state;
    rugged_data d;
    em_error err = {0};
    assert_int_equal(rugged_data_load("no/such/rugged.csv", &d, &err), EM_ERR_IO);
    assert_non_null(strstr(err.msg, "no/such/rugged.csv"));
}

/* A data file with a header and no rows, or whose every row is dropped: a clear error from the
 * loader, before anything indexes the (empty) columns. */
static void test_no_rows_is_a_clear_error(void **state) {
    (void)state;
    static const char *const texts[] = {
        "cont_africa,rugged,rgdppc_2000\n",
        "cont_africa,rugged,rgdppc_2000\n1,0.5,\n0,NA,1000\n",
    };
    static const char *const want[] = {"no data rows after the header",
                                       "no usable rows: all 2 data rows miss cont_africa, rugged or rgdppc_2000"};
    for (int k = 0; k < 2; k++) {
        char path[] = "/tmp/ember_rugged_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, texts[k], strlen(texts[k])), (ssize_t)strlen(texts[k]));
        close(fd);
        rugged_data d;
        em_error err = {0};
        assert_int_equal(rugged_data_load(path, &d, &err), EM_ERR_PARSE);
        assert_non_null(strstr(err.msg, path));
        if (!strstr(err.msg, want[k])) fail_msg("message '%s' lacks '%s'", err.msg, want[k]);
        assert_null(d.table);
        unlink(path);
    }
}

static void test_logdensity_matches_hand_written(void **state) {
    (void)state;
    rugged_data d;
    em_error err = {0};
    assert_int_equal(rugged_data_load(RUGGED_CSV, &d, &err), EM_OK);
    em_logdensity *ld = em_logdensity_from_model(rugged_model, &d, NULL, &err);
    assert_non_null(ld);
    assert_int_equal(em_logdensity_dim(ld), 5);
    const char *names[] = {"a", "bA", "bR", "bAR", "sigma"};
    for (int i = 0; i < 5; i++) assert_string_equal(em_logdensity_output_name(ld, (size_t)i), names[i]);
    double th[5], g[5], gh[5], lp;
    for (int rep = 0; rep < 50; rep++) {
        tu_fill_uniform(th, 5, -3.0, 3.0, 1000 + rep);
        if (rep % 2) th[0] += 9.0; /* near the posterior too, where the terms cancel less */
        assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
        double lph = rugged_logdensity_by_hand(&d, th, gh);
        tu_assert_close(lp, lph, 1e-10, 0);
        for (int i = 0; i < 5; i++) tu_assert_close(g[i], gh[i], 1e-10, 1e-9);
    }
    em_logdensity_destroy(ld);
    rugged_data_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_loads_170_rows),
        cmocka_unit_test(test_missing_file_is_a_clear_error),
        cmocka_unit_test(test_no_rows_is_a_clear_error),
        cmocka_unit_test(test_logdensity_matches_hand_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
