/* fuzz_csv.c — libFuzzer target for the data CSV reader (scripts/fuzz.sh builds and runs it).
 *
 * Every input is parsed under several column selections and both missing-value policies, with
 * and without the comment and non-finite options. Besides the sanitizers' checks, the result
 * must be consistent: an error has a status and a message; a table has readable columns, text
 * and non-decreasing line numbers. A violation traps, which libFuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ember/io.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

static void run(const uint8_t *data, size_t size, const char *const *cols, size_t ncols, const char *const *text,
                size_t ntext, em_csv_missing missing, char comment, int nonfinite) {
    em_csv_options opt = {.missing = missing, .text_columns = text, .ntext_columns = ntext, .comment = comment,
                          .allow_nonfinite = nonfinite};
    em_csv_table *t = NULL;
    em_error e = {0};
    em_status st = em_csv_parse_buffer("fuzz.csv", (const char *)data, size, cols, ncols, &opt, &t, &e);
    if (st != EM_OK) {
        CHECK(t == NULL);
        CHECK(e.status == st);
        CHECK(e.msg[0] != '\0');
        CHECK(strlen(e.msg) < sizeof e.msg);
        return;
    }
    CHECK(t != NULL);
    CHECK(e.status == EM_OK);
    if (cols) CHECK(t->ncols == ncols);
    CHECK(t->ntext == ntext);
    volatile double sink = 0;
    for (size_t j = 0; j < t->ncols; j++) {
        CHECK(t->cols[j] != NULL && t->names[j] != NULL);
        CHECK(em_csv_column(t, t->names[j]) != NULL);
        for (size_t i = 0; i < t->nrows; i++) {
            double v = t->cols[j][i];
            if (!nonfinite) CHECK(v == v && v - v == 0); /* finite unless asked for */
            sink += v;
        }
    }
    for (size_t k = 0; k < t->ntext; k++)
        for (size_t i = 0; i < t->nrows; i++) sink += (double)strlen(t->text[k][i]);
    for (size_t i = 1; i < t->nrows; i++) CHECK(t->line[i] > t->line[i - 1]);
    if (missing == EM_CSV_MISSING_ERROR) CHECK(t->dropped == 0);
    (void)sink;
    em_csv_table_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const ab[] = {"a", "b"};
    static const char *const rug[] = {"cont_africa", "rugged", "rgdppc_2000"};
    static const char *const lp[] = {"lp__"};
    static const char *const country[] = {"country", "isocode"};
    static const char *const name[] = {"name"};
    static const char *const x[] = {"x"};
    for (int m = 0; m < 2; m++) {
        em_csv_missing pol = m ? EM_CSV_MISSING_DROP_ROW : EM_CSV_MISSING_ERROR;
        run(data, size, ab, 2, NULL, 0, pol, 0, 0);
        run(data, size, rug, 3, country, 2, pol, 0, 0);
        run(data, size, x, 1, name, 1, pol, 0, 0);
        run(data, size, NULL, 0, NULL, 0, pol, 0, 0);
        run(data, size, lp, 1, NULL, 0, pol, '#', 1);
        run(data, size, NULL, 0, name, 1, pol, '#', 1);
    }
    return 0;
}
