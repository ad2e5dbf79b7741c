/* test_io.c — the data CSV reader and the CmdStan-layout writer/reader.
 *
 * Run from the repository root (make check does): the fixtures are read from tests/data/ and
 * examples/bayesian_regression/data/. */
#include "util/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUGGED "examples/bayesian_regression/data/rugged_data.csv"

static em_csv_table *parse_ok(const char *text, const char *const *cols, size_t ncols, const em_csv_options *opt) {
    em_csv_table *t = NULL;
    em_error e = {0};
    em_status st = em_csv_parse_buffer("test.csv", text, strlen(text), cols, ncols, opt, &t, &e);
    if (st != EM_OK) fail_msg("unexpected error: %s", e.msg);
    assert_non_null(t);
    return t;
}

/* Parse text expecting failure with status want and a message containing every fragment. */
static void parse_fails(const char *text, const char *const *cols, size_t ncols, const em_csv_options *opt,
                        em_status want, const char *frag1, const char *frag2) {
    em_csv_table *t = (em_csv_table *)1;
    em_error e = {0};
    em_status st = em_csv_parse_buffer("test.csv", text, strlen(text), cols, ncols, opt, &t, &e);
    if (st != want) fail_msg("status %d (%s), wanted %d; message: %s", st, em_status_str(st), want, e.msg);
    assert_null(t);
    assert_int_equal(e.status, want);
    if (frag1 && !strstr(e.msg, frag1)) fail_msg("message '%s' lacks '%s'", e.msg, frag1);
    if (frag2 && !strstr(e.msg, frag2)) fail_msg("message '%s' lacks '%s'", e.msg, frag2);
}

/* ---- the rugged data ---------------------------------------------------------------------- */

static void test_rugged_drop_rows(void **state) {
    (void)state;
    const char *cols[] = {"cont_africa", "rugged", "rgdppc_2000"};
    const char *text[] = {"isocode", "country"};
    em_csv_options opt = {.missing = EM_CSV_MISSING_DROP_ROW, .text_columns = text, .ntext_columns = 2};
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_read(RUGGED, cols, 3, &opt, &t, &e), EM_OK);
    assert_int_equal(t->nrows, 170);
    assert_int_equal(t->dropped, 64);
    assert_int_equal(t->ncols, 3);
    assert_string_equal(t->names[2], "rgdppc_2000");
    const double *africa = em_csv_column(t, "cont_africa");
    const double *rugged = em_csv_column(t, "rugged");
    const double *gdp = em_csv_column(t, "rgdppc_2000");
    assert_ptr_equal(gdp, t->cols[2]);
    assert_null(em_csv_column(t, "lat"));
    size_t nafrica = 0;
    double sumlog = 0, sumrug = 0;
    for (size_t i = 0; i < t->nrows; i++) {
        assert_true(africa[i] == 0.0 || africa[i] == 1.0);
        nafrica += africa[i] == 1.0;
        sumlog += log(gdp[i]);
        sumrug += rugged[i];
    }
    assert_int_equal(nafrica, 49);
    tu_assert_close(sumlog / 170, 8.517117, 0, 1e-6);
    tu_assert_close(sumrug / 170, 1.333182, 0, 1e-6);

    /* Iran: its name has a comma inside quotes; a naive split would shift every column. The
     * expected values are from the file's line 100:
     * "IRN",364,"Iran, Islamic Republic of",2.445,...,rgdppc_2000 = 5826.672, cont_africa 0 */
    char *const *iso = em_csv_text_column(t, "isocode");
    char *const *country = em_csv_text_column(t, "country");
    assert_non_null(iso);
    size_t irn = (size_t)-1;
    for (size_t i = 0; i < t->nrows; i++)
        if (strcmp(iso[i], "IRN") == 0) irn = i;
    assert_true(irn != (size_t)-1);
    assert_string_equal(country[irn], "Iran, Islamic Republic of");
    assert_true(rugged[irn] == 2.445);
    assert_true(gdp[irn] == 5826.672);
    assert_true(africa[irn] == 0.0);
    assert_int_equal(t->line[irn], 100);
    /* Micronesia (the other quoted comma) has no GDP, so it was dropped */
    for (size_t i = 0; i < t->nrows; i++) assert_string_not_equal(iso[i], "FSM");
    em_csv_table_free(t);
}

static void test_rugged_missing_is_error(void **state) {
    (void)state;
    const char *cols[] = {"cont_africa", "rugged", "rgdppc_2000"};
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_read(RUGGED, cols, 3, NULL, &t, &e), EM_ERR_PARSE);
    assert_null(t);
    /* the first data row (ABW, line 2) has an empty rgdppc_2000: field 18, which starts
     * after the 98 bytes of fields 1-17 and a comma */
    assert_non_null(strstr(e.msg, RUGGED ":2:100: missing value"));
    assert_non_null(strstr(e.msg, "'rgdppc_2000'"));
}

static void test_unknown_column(void **state) {
    (void)state;
    const char *cols[] = {"rugdeg"};
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_read(RUGGED, cols, 1, NULL, &t, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "rugged_data.csv:1: no column 'rugdeg'"));
    assert_non_null(strstr(e.msg, "did you mean 'rugged'?"));
    assert_non_null(strstr(e.msg, "isocode, isonum, country"));
    assert_non_null(strstr(e.msg, "(51 in all)"));
    /* nothing close: no suggestion, still the list */
    parse_fails("alpha,beta\n1,2\n", (const char *[]){"zzzzzzzz"}, 1, NULL, EM_ERR_ARG, "no column 'zzzzzzzz' (columns: alpha, beta)", NULL);
    /* the same column twice */
    parse_fails("a,b\n1,2\n", (const char *[]){"a", "a"}, 2, NULL, EM_ERR_ARG, "'a' selected twice", NULL);
}

static void test_missing_file(void **state) {
    (void)state;
    em_csv_table *t = (em_csv_table *)1;
    em_error e = {0};
    assert_int_equal(em_csv_read("tests/data/no_such_file.csv", NULL, 0, NULL, &t, &e), EM_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(e.msg, "tests/data/no_such_file.csv: cannot open"));
    assert_non_null(strstr(e.msg, strerror(ENOENT)));
    em_error_clear(&e);
    /* a directory opens but cannot be read */
    assert_int_equal(em_csv_read("tests/data", NULL, 0, NULL, &t, &e), EM_ERR_IO);
    assert_non_null(strstr(e.msg, strerror(EISDIR)));
}

/* ---- format details ----------------------------------------------------------------------- */

static void test_bom_crlf_quotes_fixture(void **state) {
    (void)state;
    const char *cols[] = {"x", "y", "id"};
    const char *text[] = {"name"};
    em_csv_options opt = {.text_columns = text, .ntext_columns = 1};
    em_csv_table *t = NULL;
    em_error e = {0};
    em_status st = em_csv_read("tests/data/quoted_crlf_bom.csv", cols, 3, &opt, &t, &e);
    if (st != EM_OK) fail_msg("%s", e.msg);
    assert_int_equal(t->nrows, 4);
    /* the BOM is not part of the first name: "id" was found */
    const double x[] = {1.5, 0.25, 7, -0.5}, y[] = {-2, 3.61e6, 1e-3, 4};
    for (size_t i = 0; i < 4; i++) {
        assert_true(t->cols[0][i] == x[i]);
        assert_true(t->cols[1][i] == y[i]);
        assert_true(t->cols[2][i] == (double)(i + 1));
    }
    assert_string_equal(t->text[0][0], "Smith, John");
    assert_string_equal(t->text[0][1], "say \"hi\"");
    assert_string_equal(t->text[0][2], "two\r\nlines");
    assert_string_equal(t->text[0][3], "plain");
    /* the row after the two-line field starts on line 6 */
    assert_int_equal(t->line[2], 4);
    assert_int_equal(t->line[3], 6);
    em_csv_table_free(t);
}

static void test_line_endings_and_blank_lines(void **state) {
    (void)state;
    const char *cols[] = {"a", "b"};
    const char *variants[] = {
        "a,b\n1,2\n3,4\n",   "a,b\r\n1,2\r\n3,4\r\n", "a,b\r1,2\r3,4\r", "a,b\n1,2\n3,4",
        "\n\na,b\n\n1,2\n\n3,4\n\n", "a , b\n1,2\n3,4\n" /* names are not trimmed: fails below */,
    };
    for (size_t v = 0; v < 5; v++) {
        em_csv_table *t = parse_ok(variants[v], cols, 2, NULL);
        assert_int_equal(t->nrows, 2);
        assert_true(t->cols[0][0] == 1 && t->cols[1][0] == 2 && t->cols[0][1] == 3 && t->cols[1][1] == 4);
        em_csv_table_free(t);
    }
    parse_fails(variants[5], cols, 2, NULL, EM_ERR_ARG, "no column 'a'", "did you mean 'a '?");
    /* a lone CR counts as a line end in messages too */
    parse_fails("a,b\r1,2\r3,x\r", cols, 2, NULL, EM_ERR_PARSE, "test.csv:3:3: column 'b': 'x' is not a number", NULL);
    /* a trailing comma at end of input is one more (empty) field */
    parse_fails("a,b\n1,", cols, 2, NULL, EM_ERR_PARSE, "test.csv:2:3: missing value", NULL);
}

static void test_quoted_fields(void **state) {
    (void)state;
    const char *text[] = {"s"};
    em_csv_options opt = {.text_columns = text, .ntext_columns = 1};
    const char *csv = "v,s\n"
                      "\"1.5\",\"a,b\"\n"
                      "  \"2\"  ,\"multi\nline, with \"\"quotes\"\"\"\n"
                      "3,\"\"\n"
                      "4,x\"y\n";
    em_csv_table *t = parse_ok(csv, (const char *[]){"v"}, 1, &opt);
    assert_int_equal(t->nrows, 4);
    assert_true(t->cols[0][0] == 1.5 && t->cols[0][1] == 2 && t->cols[0][2] == 3 && t->cols[0][3] == 4);
    assert_string_equal(t->text[0][0], "a,b");
    assert_string_equal(t->text[0][1], "multi\nline, with \"quotes\"");
    assert_string_equal(t->text[0][2], "");
    assert_string_equal(t->text[0][3], "x\"y");
    assert_int_equal(t->line[3], 6);
    em_csv_table_free(t);
    /* after a multi-line quoted field the line numbers stay right */
    parse_fails("a,b\n\"x\ny\nz\",1\n2,oops\n", (const char *[]){"b"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:5:3: column 'b': 'oops' is not a number", NULL);
    parse_fails("a,b\n1,\"open\n2,3\n", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:2:3: unterminated quoted field", "'\"open?2,3?'");
    parse_fails("a,b\n1,\"x\"y\n", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:2:6: unexpected text after the closing quote", "'y'");
    em_csv_table *u = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_read("tests/data/unterminated.csv", (const char *[]){"a"}, 1, NULL, &u, &e), EM_ERR_PARSE);
    assert_non_null(strstr(e.msg, "tests/data/unterminated.csv:2:3: unterminated quoted field"));
}

static void test_numbers(void **state) {
    (void)state;
    static const struct {
        const char *s;
        double v;
    } good[] = {
        {"3.61e+06", 3.61e6}, {".686405", 0.686405}, {"-1.5", -1.5}, {"  42  ", 42}, {"\t-0\t", -0.0},
        {"+7", 7},           {"1.", 1},             {"1E3", 1e3},   {"2.5e-3", 2.5e-3}, {"\"12.5\"", 12.5},
        {"0.1", 0.1},        {"1e-320", 1e-320},    {"123456789012345678901234567890", 1.2345678901234568e29},
        {"0.30000000000000004", 0.30000000000000004},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "x\n%s\n", good[i].s);
        em_csv_table *t = parse_ok(buf, (const char *[]){"x"}, 1, NULL);
        if (!(t->cols[0][0] == good[i].v)) fail_msg("'%s' read as %.17g, wanted %.17g", good[i].s, t->cols[0][0], good[i].v);
        if (good[i].v == 0) assert_true(signbit(t->cols[0][0]) == signbit(good[i].v));
        em_csv_table_free(t);
    }
    static const char *bad[] = {"1.2.3", "abc", "1e", "0x10", "inf", "-inf", "nan", "Infinity", "1e+",
                                ".",     "-",   "+",  "1 2",  "1e400", "--1", "1d5", "na", "N A", "1_000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char buf[128], frag[128];
        snprintf(buf, sizeof buf, "x\n%s\n", bad[i]);
        snprintf(frag, sizeof frag, "test.csv:2:1: column 'x': '%s'", bad[i]);
        parse_fails(buf, (const char *[]){"x"}, 1, NULL, EM_ERR_PARSE, frag, strcmp(bad[i], "1e400") ? "not a number" : "out of range");
    }
    /* a NUL byte inside a field is not silently cut off: it is binary data */
    const char nul[] = "x\n1\0002\n";
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_parse_buffer("nul.csv", nul, sizeof nul - 1, (const char *[]){"x"}, 1, NULL, &t, &e), EM_ERR_PARSE);
    assert_non_null(strstr(e.msg, "nul.csv:2:2: binary data"));
    /* long offending text is truncated in the message */
    char longbuf[400];
    memset(longbuf, 'z', sizeof longbuf);
    memcpy(longbuf, "x\n", 2);
    longbuf[sizeof longbuf - 1] = '\0';
    parse_fails(longbuf, (const char *[]){"x"}, 1, NULL, EM_ERR_PARSE, "'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...'", NULL);
}

static void test_nonfinite_option(void **state) {
    (void)state;
    em_csv_options opt = {.allow_nonfinite = 1};
    em_csv_table *t = parse_ok("x\nnan\n-inf\nInf\n+Infinity\nNaN\n-2\n", (const char *[]){"x"}, 1, &opt);
    assert_int_equal(t->nrows, 6);
    assert_true(isnan(t->cols[0][0]));
    assert_true(isinf(t->cols[0][1]) && t->cols[0][1] < 0);
    assert_true(isinf(t->cols[0][2]) && t->cols[0][2] > 0);
    assert_true(isinf(t->cols[0][3]) && t->cols[0][3] > 0);
    assert_true(isnan(t->cols[0][4]));
    assert_true(t->cols[0][5] == -2);
    em_csv_table_free(t);
    /* NA and empty are still missing */
    parse_fails("x\nNA\n", (const char *[]){"x"}, 1, &opt, EM_ERR_PARSE, "missing value ('NA')", NULL);
}

static void test_missing_policy(void **state) {
    (void)state;
    const char *cols[] = {"a", "c"};
    em_csv_table *t = NULL;
    em_error e = {0};
    /* missing.csv: b is empty in row 2 and c is NA in row 3; only selected columns count */
    em_csv_options drop = {.missing = EM_CSV_MISSING_DROP_ROW};
    assert_int_equal(em_csv_read("tests/data/missing.csv", cols, 2, &drop, &t, &e), EM_OK);
    assert_int_equal(t->nrows, 3);
    assert_int_equal(t->dropped, 1);
    assert_true(t->cols[0][0] == 1 && t->cols[0][1] == 4 && t->cols[0][2] == 10);
    assert_true(t->cols[1][0] == 3 && t->cols[1][1] == 6 && t->cols[1][2] == 12);
    em_csv_table_free(t);
    assert_int_equal(em_csv_read("tests/data/missing.csv", (const char *[]){"b"}, 1, &drop, &t, &e), EM_OK);
    assert_int_equal(t->nrows, 3);
    assert_int_equal(t->dropped, 1);
    em_csv_table_free(t);
    assert_int_equal(em_csv_read("tests/data/missing.csv", cols, 2, NULL, &t, &e), EM_ERR_PARSE);
    assert_non_null(strstr(e.msg, "tests/data/missing.csv:4:5: missing value ('NA') in column 'c'"));
    /* every missing spelling, quoted or not, with spaces */
    const char *csv = "x,y\n1,\n2,NA\n3,NaN\n4, NA \n5,\"\"\n6,\"NA\"\n7,8\n";
    t = parse_ok(csv, (const char *[]){"x", "y"}, 2, &drop);
    assert_int_equal(t->nrows, 1);
    assert_int_equal(t->dropped, 6);
    assert_true(t->cols[0][0] == 7 && t->cols[1][0] == 8);
    em_csv_table_free(t);
    /* a bad number is an error even in a row that would be dropped */
    parse_fails("x,y\n,abc\n", (const char *[]){"x", "y"}, 2, &drop, EM_ERR_PARSE, "test.csv:2:2: column 'y': 'abc'", NULL);
    /* an unknown policy value is refused */
    em_csv_options weird = {.missing = (em_csv_missing)7};
    parse_fails("x\n1\n", (const char *[]){"x"}, 1, &weird, EM_ERR_ARG, "missing-value policy", NULL);
}

static void test_ragged_and_header_errors(void **state) {
    (void)state;
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_read("tests/data/ragged.csv", (const char *[]){"a"}, 1, NULL, &t, &e), EM_ERR_PARSE);
    assert_non_null(strstr(e.msg, "tests/data/ragged.csv:3:5: row has 3 fields but the header has 2 (first extra field: '5')"));
    parse_fails("a,b,c\n1,2,3\n4,5\n", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:3:4: row has 2 fields but the header has 3 (no value for column 'c')", NULL);
    parse_fails("a,b,c\n1,2,3\n4,\"x\ny\"\n", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:4:3: row has 2 fields but the header has 3", NULL);
    parse_fails("a,b,a\n1,2,3\n", (const char *[]){"b"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:1:5: duplicate column name 'a' (columns 1 and 3)", NULL);
    parse_fails("", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE, "test.csv:1:1: empty file", NULL);
    parse_fails("\xEF\xBB\xBF", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE, "empty file", NULL);
    parse_fails("\n\r\n\n", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE, "test.csv:4:1: empty file", NULL);
    parse_fails("a\n1\n", NULL, 3, NULL, EM_ERR_ARG, "columns is NULL", NULL);
    parse_fails("a\n1\n", (const char *[]){"a"}, 0, NULL, EM_ERR_ARG, "no columns selected", NULL);
    /* header only: a valid table with no rows */
    em_csv_table *h = parse_ok("a,b\n", (const char *[]){"b"}, 1, NULL);
    assert_int_equal(h->nrows, 0);
    assert_non_null(h->cols[0]);
    em_csv_table_free(h);
}

/* Parse len bytes of text (NULs allowed) expecting EM_ERR_PARSE with frag in the message. */
static void binary_fails(const char *text, size_t len, const char *frag) {
    em_csv_table *t = (em_csv_table *)1;
    em_error e = {0};
    assert_int_equal(em_csv_parse_buffer("bin.csv", text, len, NULL, 0, NULL, &t, &e), EM_ERR_PARSE);
    assert_null(t);
    if (!strstr(e.msg, frag)) fail_msg("message '%s' lacks '%s'", e.msg, frag);
}

/* Writes "1\n" into a pipe until the reader closes it. */
static void *endless_writer(void *arg) {
    int fd = *(int *)arg;
    char chunk[4096];
    for (size_t i = 0; i < sizeof chunk; i += 2) chunk[i] = '1', chunk[i + 1] = '\n';
    while (write(fd, chunk, sizeof chunk) > 0) {
    }
    close(fd);
    return NULL;
}

static void test_binary_input_and_empty_names(void **state) {
    (void)state;
    /* a NUL byte anywhere, header or body, before any other check; its line and column */
    binary_fails("a\0,b\n1,2\n", 10, "bin.csv:1:2: binary data (a NUL byte) at line 1, column 2");
    binary_fails("a,b\r\n1,2\r\n3,\0\n", 14, "bin.csv:3:3: binary data");
    binary_fails("\xEF\xBB\xBF\0", 4, "bin.csv:1:1: binary data");
    binary_fails("a\n\"x\ny\"\n1\0", 12, "bin.csv:4:2: binary data");
    binary_fails("a\nzz,\0", 7, "bin.csv:2:4: binary data"); /* before the ragged row */

    /* reading /dev/zero stops at its first byte instead of reading forever */
    em_csv_table *t = (em_csv_table *)1;
    em_error e = {0};
    assert_int_equal(em_csv_read("/dev/zero", NULL, 0, NULL, &t, &e), EM_ERR_PARSE);
    assert_null(t);
    assert_non_null(strstr(e.msg, "/dev/zero:1:1: binary data"));
    em_cmdstan_draws *d = (em_cmdstan_draws *)1;
    em_error e2 = {0};
    assert_int_equal(em_cmdstan_read("/dev/zero", &d, &e2), EM_ERR_PARSE);
    assert_null(d);
    assert_non_null(strstr(e2.msg, "/dev/zero:1:1: binary data"));

    /* an endless text stream is cut off at the cap with a clear error */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    signal(SIGPIPE, SIG_IGN);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, endless_writer, &fds[1]), 0);
    char path[64];
    snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
    em_csv_options opt = {.max_stream_bytes = 1 << 20};
    em_error e3 = {0};
    t = (em_csv_table *)1;
    assert_int_equal(em_csv_read(path, NULL, 0, &opt, &t, &e3), EM_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(e3.msg, "more than 1048576 bytes from a pipe or device"));
    close(fds[0]);
    pthread_join(th, NULL);
    signal(SIGPIPE, SIG_DFL);

    /* empty header names, with their column */
    parse_fails("a,,b\n1,2,3\n", NULL, 0, NULL, EM_ERR_PARSE,
                "test.csv:1:3: empty column name in the header (column 2 of 3)", NULL);
    parse_fails("a,b,\n1,2,3\n", (const char *[]){"a"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:1:5: empty column name in the header (column 3 of 3)", NULL);
    parse_fails("\n x ,\"\"\n1,2\n", (const char *[]){"x"}, 1, NULL, EM_ERR_PARSE,
                "test.csv:2:5: empty column name in the header (column 2 of 2)", NULL);
}

static void test_all_columns_and_comments(void **state) {
    (void)state;
    em_csv_options opt = {.comment = '#', .allow_nonfinite = 1};
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_read("tests/data/comments.csv", NULL, 0, &opt, &t, &e), EM_OK);
    assert_int_equal(t->ncols, 2);
    assert_string_equal(t->names[0], "lp__");
    assert_string_equal(t->names[1], "theta");
    assert_int_equal(t->nrows, 3);
    assert_true(t->cols[0][2] == -7.3 && t->cols[1][0] == 0.25 && isnan(t->cols[1][1]) && isinf(t->cols[1][2]));
    em_csv_table_free(t);
    /* without the comment option, '#' is data and the header is the comment line */
    assert_int_equal(em_csv_read("tests/data/comments.csv", (const char *[]){"theta"}, 1, NULL, &t, &e), EM_ERR_ARG);
    /* the header's own line is named when it is not line 1 */
    em_csv_options c2 = {.comment = '#'};
    parse_fails("# c\n\nalpha\n1\n", (const char *[]){"alpah"}, 1, &c2, EM_ERR_ARG, "test.csv:3: no column 'alpah'; did you mean 'alpha'?", NULL);
    em_csv_options c3 = {.comment = '"'};
    parse_fails("a\n1\n", (const char *[]){"a"}, 1, &c3, EM_ERR_ARG, "comment character", NULL);
    /* all columns except the text ones */
    const char *text[] = {"name"};
    em_csv_options o2 = {.text_columns = text, .ntext_columns = 1};
    t = parse_ok("name,u,v\nq,1,2\n", NULL, 0, &o2);
    assert_int_equal(t->ncols, 2);
    assert_string_equal(t->names[0], "u");
    assert_string_equal(em_csv_text_column(t, "name")[0], "q");
    em_csv_table_free(t);
}

/* A user locale with a decimal comma must not change what "1.5" means. Builds de_DE.UTF-8
 * with localedef into a temporary LOCPATH when the system has no such locale. */
static void test_locale_independent(void **state) {
    (void)state;
    char dir[] = "/tmp/ember_locale_XXXXXX";
    int made = 0;
    if (!setlocale(LC_NUMERIC, "de_DE.UTF-8")) {
        if (!mkdtemp(dir)) skip();
        char cmd[256];
        snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
        made = 1;
        if (system(cmd) == 0) {
            setenv("LOCPATH", dir, 1);
            setlocale(LC_NUMERIC, "de_DE.UTF-8");
        }
    }
    int have = strcmp(localeconv()->decimal_point, ",") == 0;
    if (have) {
        assert_true(strtod("1.5", NULL) == 1.0); /* the trap we avoid */
        em_csv_table *t = parse_ok("x\n1.5\n-2.25e1\n", (const char *[]){"x"}, 1, NULL);
        assert_true(t->cols[0][0] == 1.5 && t->cols[0][1] == -22.5);
        em_csv_table_free(t);
        parse_fails("x\n1,5\n", (const char *[]){"x"}, 1, NULL, EM_ERR_PARSE, "row has 2 fields", NULL);
        parse_fails("x\n\"1,5\"\n", (const char *[]){"x"}, 1, NULL, EM_ERR_PARSE, "not a number", NULL);
    }
    setlocale(LC_NUMERIC, "C");
    unsetenv("LOCPATH");
    if (made) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    }
    if (!have) {
        print_message("SKIPPED: no decimal-comma locale could be made (localedef failed)\n");
        skip();
    }
}

/* Many rows and one huge field: linear work, right answers (no timing asserted). */
static void test_big_input(void **state) {
    (void)state;
    const size_t n = 200000;
    em_buf b = {0};
    em_buf_printf(&b, "i,name,v\n");
    for (size_t i = 0; i < n; i++) em_buf_printf(&b, "%zu,\"n,%zu\",%zu.5\n", i, i, i % 1000);
    const char *text[] = {"name"};
    em_csv_options opt = {.text_columns = text, .ntext_columns = 1};
    em_csv_table *t = NULL;
    em_error e = {0};
    assert_int_equal(em_csv_parse_buffer("big", b.data, b.len, (const char *[]){"v", "i"}, 2, &opt, &t, &e), EM_OK);
    assert_int_equal(t->nrows, n);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += t->cols[0][i];
    assert_true(s == (double)(n / 1000) * (999.0 * 1000 / 2 + 500));
    assert_true(t->cols[1][n - 1] == (double)(n - 1));
    assert_string_equal(t->text[0][12345], "n,12345");
    assert_int_equal(t->line[n - 1], n + 1);
    em_csv_table_free(t);
    em_buf_free(&b);
    /* one 4 MB quoted field full of doubled quotes and newlines */
    em_buf_printf(&b, "a,b\n1,\"");
    for (size_t i = 0; i < 1000000; i++) em_buf_append(&b, i % 2 ? "\"\"" : "\n", i % 2 ? 2 : 1);
    em_buf_printf(&b, "\"\n");
    const char *tb[] = {"b"};
    em_csv_options o2 = {.text_columns = tb, .ntext_columns = 1};
    assert_int_equal(em_csv_parse_buffer("big2", b.data, b.len, (const char *[]){"a"}, 1, &o2, &t, &e), EM_OK);
    assert_int_equal(strlen(t->text[0][0]), 1000000);
    em_csv_table_free(t);
    em_buf_free(&b);
}

/* ---- CmdStan layout ----------------------------------------------------------------------- */

static char tmpdir[64];

static int setup_tmp(void **state) {
    (void)state;
    strcpy(tmpdir, "/tmp/ember_io_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown_tmp(void **state) {
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *de;
        char p[512];
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tmpdir);
    return 0;
}

static size_t count_entries(const char *dir) {
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    if (!d) return (size_t)-1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static const char *const sampler_names[] = {"lp__", "accept_stat__", "stepsize__", "treedepth__",
                                            "n_leapfrog__", "divergent__", "energy__"};

/* A small fake chain: 7 sampler columns plus beta.1, beta.2, sigma. */
typedef struct chain {
    char names[10][32];
    const char *name_ptr[10];
    double draws[50 * 10];
    double metric[9];
} chain;

static void make_chain(chain *c, size_t ndraws) {
    for (size_t j = 0; j < 7; j++) snprintf(c->names[j], sizeof c->names[j], "%s", sampler_names[j]);
    assert_int_equal(em_cmdstan_name(c->names[7], sizeof c->names[7], "beta", 1, NULL), EM_OK);
    assert_int_equal(em_cmdstan_name(c->names[8], sizeof c->names[8], "beta", 2, NULL), EM_OK);
    snprintf(c->names[9], sizeof c->names[9], "sigma");
    for (size_t j = 0; j < 10; j++) c->name_ptr[j] = c->names[j];
    tu_fill_uniform(c->draws, ndraws * 10, -3, 3, 42);
    for (size_t i = 0; i < ndraws; i++) {
        double *r = c->draws + i * 10;
        r[0] = -10 * fabs(r[0]) / 3.0;           /* lp__ with many digits */
        r[3] = (double)(1 + i % 4);              /* treedepth__ */
        r[4] = (double)((1u << (1 + i % 4)) - 1); /* n_leapfrog__ */
        r[5] = (double)(i % 17 == 0);            /* divergent__ */
        r[9] = exp(r[9]) * 1e-7;                 /* sigma, tiny */
    }
    c->draws[10 * 3 + 8] = 1e300;
    c->draws[10 * 4 + 8] = -0.0;
    c->draws[10 * 5 + 8] = 4.9e-324;
    c->draws[10 * 6 + 8] = 0.1;
    for (size_t k = 0; k < 9; k++) c->metric[k] = 1.0 / (double)(k + 3);
}

static em_cmdstan_file chain_file(chain *c, size_t ndraws) {
    static const char *const comments[] = {"model = rugged_model", "method = sample (Default)", "  sample",
                                           "    num_samples = 50"};
    em_cmdstan_file f = {.comments = comments, .ncomments = 4, .names = c->name_ptr, .ncols = 10,
                         .draws = c->draws, .ndraws = ndraws, .has_adaptation = 1, .step_size = 0.123456789012345,
                         .inv_metric = c->metric, .metric_dim = 3, .has_timing = 1, .warmup_seconds = 0.009,
                         .sampling_seconds = 0.023};
    return f;
}

static void test_cmdstan_layout(void **state) {
    (void)state;
    static const char *const names[] = {"lp__", "theta"};
    const double draws[] = {-7.5, 0.25, -6.875, 0.5};
    const double metric[] = {0.5, 0.125};
    const char *const comments[] = {"model = bernoulli_model", "  num_samples = 2"};
    em_cmdstan_file f = {.comments = comments, .ncomments = 2, .names = names, .ncols = 2, .draws = draws,
                         .ndraws = 2, .has_adaptation = 1, .step_size = 1.25, .inv_metric = metric,
                         .metric_dim = 2, .has_timing = 1, .warmup_seconds = 0.009, .sampling_seconds = 0.023};
    em_buf b = {0};
    assert_int_equal(em_cmdstan_format(&f, 0, &b, NULL), EM_OK);
    const char *want = "# model = bernoulli_model\n"
                       "#   num_samples = 2\n"
                       "lp__,theta\n"
                       "# Adaptation terminated\n"
                       "# Step size = 1.25\n"
                       "# Diagonal elements of inverse mass matrix:\n"
                       "# 0.5, 0.125\n"
                       "-7.5,0.25\n"
                       "-6.875,0.5\n"
                       "# \n"
                       "#  Elapsed Time: 0.009 seconds (Warm-up)\n"
                       "#                0.023 seconds (Sampling)\n"
                       "#                0.032 seconds (Total)\n"
                       "# \n";
    assert_string_equal(b.data, want);
    em_buf_free(&b);
    /* dense metric: one comma-separated row per line; no timing, no adaptation */
    const double dense[] = {1, 0.5, 0.5, 2};
    f.inv_metric = dense;
    f.dense_metric = 1;
    f.has_timing = 0;
    f.ncomments = 0;
    assert_int_equal(em_cmdstan_format(&f, 0, &b, NULL), EM_OK);
    assert_string_equal(b.data, "lp__,theta\n# Adaptation terminated\n# Step size = 1.25\n"
                                "# Elements of inverse mass matrix:\n# 1, 0.5\n# 0.5, 2\n-7.5,0.25\n-6.875,0.5\n");
    em_buf_free(&b);
    f.has_adaptation = 0;
    const double odd[] = {NAN, -INFINITY, INFINITY, 1.0 / 3};
    f.draws = odd;
    assert_int_equal(em_cmdstan_format(&f, 9, &b, NULL), EM_OK);
    assert_string_equal(b.data, "lp__,theta\nnan,-inf\ninf,0.333333333\n");
    em_buf_free(&b);
}

static void test_cmdstan_roundtrip_exact(void **state) {
    (void)state;
    chain c;
    make_chain(&c, 50);
    em_cmdstan_file f = chain_file(&c, 50);
    char path[128];
    snprintf(path, sizeof path, "%s/chain_1.csv", tmpdir);
    em_error e = {0};
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_OK);
    assert_int_equal(count_entries(tmpdir), 1); /* no temporary left behind */
    em_cmdstan_draws *d = NULL;
    if (em_cmdstan_read(path, &d, &e) != EM_OK) fail_msg("%s", e.msg);
    assert_int_equal(d->ncols, 10);
    assert_int_equal(d->ndraws, 50);
    for (size_t j = 0; j < 10; j++) assert_string_equal(d->names[j], c.names[j]);
    assert_int_equal(em_cmdstan_column_index(d, "beta.2"), 8);
    assert_int_equal(em_cmdstan_column_index(d, "beta"), -1);
    for (size_t k = 0; k < 500; k++)
        if (memcmp(&d->draws[k], &c.draws[k], sizeof(double)) != 0)
            fail_msg("draw %zu column %zu: %.17g read back as %.17g", k / 10, k % 10, c.draws[k], d->draws[k]);
    em_cmdstan_draws_free(d);

    /* overwrite an existing file: still one entry, the new content */
    f.ndraws = 3;
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_OK);
    assert_int_equal(count_entries(tmpdir), 1);
    assert_int_equal(em_cmdstan_read(path, &d, &e), EM_OK);
    assert_int_equal(d->ndraws, 3);
    em_cmdstan_draws_free(d);
}

static void test_cmdstan_nine_digits(void **state) {
    (void)state;
    chain c;
    make_chain(&c, 50);
    em_cmdstan_file f = chain_file(&c, 50);
    char path[128];
    snprintf(path, sizeof path, "%s/chain_9.csv", tmpdir);
    em_error e = {0};
    assert_int_equal(em_cmdstan_write(path, &f, 9, &e), EM_OK);
    em_cmdstan_draws *d = NULL;
    assert_int_equal(em_cmdstan_read(path, &d, &e), EM_OK);
    size_t inexact = 0;
    for (size_t k = 0; k < 500; k++) {
        double a = c.draws[k], r = d->draws[k];
        inexact += a != r;
        if (!(fabs(r - a) <= 1e-8 * fabs(a))) fail_msg("cell %zu: %.17g vs %.17g", k, a, r);
    }
    assert_true(inexact > 100); /* 9 digits really were fewer than 17 */
    em_cmdstan_draws_free(d);
    unlink(path);
    /* fewer than 9 digits, or more than 17, is refused rather than silently changed */
    em_error e2 = {0};
    assert_int_equal(em_cmdstan_write(path, &f, 6, &e2), EM_ERR_ARG);
    assert_non_null(strstr(e2.msg, "sig_digits = 6"));
    em_error_clear(&e2);
    assert_int_equal(em_cmdstan_write(path, &f, 18, &e2), EM_ERR_ARG);
    assert_int_equal(count_entries(tmpdir), 0);
}

static void test_cmdstan_errors(void **state) {
    (void)state;
    chain c;
    make_chain(&c, 5);
    em_cmdstan_file f = chain_file(&c, 5);
    em_error e = {0};
    char path[160];
    snprintf(path, sizeof path, "%s/no_such_dir/chain.csv", tmpdir);
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_ERR_IO);
    assert_non_null(strstr(e.msg, "no_such_dir/chain.csv"));
    assert_non_null(strstr(e.msg, strerror(ENOENT)));
    assert_int_equal(count_entries(tmpdir), 0);
    /* a name that would break the header */
    em_error_clear(&e);
    snprintf(c.names[9], sizeof c.names[9], "sig,ma");
    snprintf(path, sizeof path, "%s/chain.csv", tmpdir);
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "names[9] = 'sig,ma'"));
    snprintf(c.names[9], sizeof c.names[9], "sigma");
    em_error_clear(&e);
    const char *const bad_comment[] = {"two\nlines"};
    f.comments = bad_comment;
    f.ncomments = 1;
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "comments[0] contains a line break"));
    assert_int_equal(count_entries(tmpdir), 0);
    f.comments = NULL;
    f.ncomments = 0;
    em_error_clear(&e);
    f.step_size = -1;
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "step_size = -1"));
    f.step_size = 0.5;
    f.sampling_seconds = NAN;
    em_error_clear(&e);
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "sampling_seconds = nan"));
    assert_int_equal(count_entries(tmpdir), 0);
    char small[6];
    em_error_clear(&e);
    assert_int_equal(em_cmdstan_name(small, sizeof small, "beta", 10, &e), EM_ERR_ARG);
    /* reading a file that is not there */
    em_cmdstan_draws *d = (em_cmdstan_draws *)1;
    em_error_clear(&e);
    assert_int_equal(em_cmdstan_read(path, &d, &e), EM_ERR_IO);
    assert_null(d);
}

/* A file in CmdStan's own layout (hand-written, not by our writer) reads back. */
/* The reader from memory: what em_cmdstan_read does with the file, and the same errors. */
static void test_cmdstan_parse_buffer(void **state) {
    (void)state;
    const char text[] = "# model = m\nlp__,theta.1\n# Step size = 0.5\n-1.5,nan\n-2,-inf\n#  Elapsed Time: 0.01";
    em_cmdstan_draws *d = NULL;
    em_error e = {0};
    assert_int_equal(em_cmdstan_parse_buffer("mem.csv", text, sizeof text - 1, &d, &e), EM_OK);
    assert_int_equal(d->ncols, 2);
    assert_int_equal(d->ndraws, 2);
    assert_int_equal(em_cmdstan_column_index(d, "theta.1"), 1);
    assert_true(d->draws[0] == -1.5 && isnan(d->draws[1]) && d->draws[2] == -2 && isinf(d->draws[3]));
    em_cmdstan_draws_free(d);
    d = (em_cmdstan_draws *)1;
    assert_int_equal(em_cmdstan_parse_buffer("mem.csv", "lp__\n0x10\n", 10, &d, &e), EM_ERR_PARSE);
    assert_null(d);
    assert_non_null(strstr(e.msg, "mem.csv:2:1: column 'lp__': '0x10' is not a number"));
}

static void test_cmdstan_read_foreign(void **state) {
    (void)state;
    em_cmdstan_draws *d = NULL;
    em_error e = {0};
    if (em_cmdstan_read("tests/data/cmdstan_like.csv", &d, &e) != EM_OK) fail_msg("%s", e.msg);
    assert_int_equal(d->ncols, 8);
    assert_int_equal(d->ndraws, 3);
    assert_string_equal(d->names[0], "lp__");
    assert_string_equal(d->names[7], "theta");
    assert_int_equal(em_cmdstan_column_index(d, "divergent__"), 5);
    assert_true(d->draws[0] == -6.9 && d->draws[7] == 0.18);
    assert_true(d->draws[1 * 8 + 1] == 0.9125);
    assert_true(d->draws[2 * 8 + 5] == 1 && d->draws[2 * 8 + 7] == 0.0625);
    em_cmdstan_draws_free(d);
}

/* Our file read by R (read.csv with comment.char = "#", summarised with posterior): the means
 * must agree with ours to 1e-9. Skipped, loudly, when R or posterior is missing. */
static void test_cmdstan_read_by_r(void **state) {
    (void)state;
    if (system("command -v Rscript >/dev/null 2>&1 && Rscript -e 'suppressMessages(library(posterior))' "
               ">/dev/null 2>&1") != 0) {
        print_message("SKIPPED: R/posterior not installed (test_cmdstan_read_by_r)\n");
        skip();
    }
    chain c;
    make_chain(&c, 50);
    em_cmdstan_file f = chain_file(&c, 50);
    char path[128], cmd[1024];
    snprintf(path, sizeof path, "%s/chain_r.csv", tmpdir);
    em_error e = {0};
    assert_int_equal(em_cmdstan_write(path, &f, 0, &e), EM_OK);
    snprintf(cmd, sizeof cmd,
             "Rscript -e 'suppressMessages(library(posterior)); d <- read.csv(\"%s\", comment.char = \"#\"); "
             "s <- summarise_draws(as_draws_df(d), mean); "
             "cat(sprintf(\"%%s %%.17g\\n\", s$variable, s$mean), sep = \"\")' 2>&1",
             path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256];
    size_t seen = 0;
    while (fgets(line, sizeof line, p)) {
        char name[64];
        double m;
        if (sscanf(line, "%63s %lf", name, &m) != 2) fail_msg("unexpected R output: %s", line);
        long j = -1;
        for (size_t k = 0; k < 10; k++)
            if (strcmp(c.names[k], name) == 0) j = (long)k;
        if (j < 0) fail_msg("R reports an unknown column '%s'", name);
        double ours = 0;
        for (size_t i = 0; i < 50; i++) ours += c.draws[i * 10 + (size_t)j];
        ours /= 50;
        if (!(fabs(m - ours) <= 1e-9 * fmax(1, fabs(ours)))) fail_msg("%s: R mean %.17g, ours %.17g", name, m, ours);
        seen++;
    }
    int rc = pclose(p);
    assert_int_equal(rc, 0);
    assert_int_equal(seen, 10);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rugged_drop_rows),
        cmocka_unit_test(test_rugged_missing_is_error),
        cmocka_unit_test(test_unknown_column),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_bom_crlf_quotes_fixture),
        cmocka_unit_test(test_line_endings_and_blank_lines),
        cmocka_unit_test(test_quoted_fields),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_nonfinite_option),
        cmocka_unit_test(test_missing_policy),
        cmocka_unit_test(test_ragged_and_header_errors),
        cmocka_unit_test(test_binary_input_and_empty_names),
        cmocka_unit_test(test_all_columns_and_comments),
        cmocka_unit_test(test_locale_independent),
        cmocka_unit_test(test_big_input),
        cmocka_unit_test(test_cmdstan_layout),
        cmocka_unit_test_setup_teardown(test_cmdstan_roundtrip_exact, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_cmdstan_nine_digits, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_cmdstan_errors, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_cmdstan_parse_buffer),
        cmocka_unit_test(test_cmdstan_read_foreign),
        cmocka_unit_test_setup_teardown(test_cmdstan_read_by_r, setup_tmp, teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
