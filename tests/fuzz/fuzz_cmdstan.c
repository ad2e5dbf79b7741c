/* fuzz_cmdstan.c — libFuzzer target for the CmdStan CSV reader (scripts/fuzz.sh builds and runs it).
 *
 * Every input goes through em_cmdstan_parse_buffer, the reader behind em_cmdstan_read. Besides
 * the sanitizers' checks, the result must be consistent: an error has a status and a message
 * and no draws; draws have named, findable columns and ndraws x ncols readable values. A
 * violation traps, which libFuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ember/io.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_cmdstan_draws *d = NULL;
    em_error e = {0};
    em_status st = em_cmdstan_parse_buffer("fuzz.csv", (const char *)data, size, &d, &e);
    if (st != EM_OK) {
        CHECK(d == NULL);
        CHECK(e.status == st);
        CHECK(e.msg[0] != '\0' && strlen(e.msg) < sizeof e.msg);
        return 0;
    }
    CHECK(d != NULL && e.status == EM_OK);
    CHECK(d->ncols > 0);
    for (size_t j = 0; j < d->ncols; j++) {
        CHECK(d->names[j] != NULL && d->names[j][0] != '\0');
        CHECK(em_cmdstan_column_index(d, d->names[j]) == (long)j); /* names are unique */
    }
    volatile double sink = 0;
    for (size_t i = 0; i < d->ndraws * d->ncols; i++) sink += d->draws[i];
    (void)sink;
    em_cmdstan_draws_free(d);
    return 0;
}
