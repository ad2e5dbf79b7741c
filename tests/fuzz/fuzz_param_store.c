/* fuzz_param_store.c — libFuzzer target for the parameter-store reader (scripts/fuzz.sh builds
 * and runs it).
 *
 * Every input goes through em_param_store_load_buffer, the reader behind em_param_store_load,
 * into an empty store. Besides the sanitizers' checks: an error has a status and a message and
 * leaves the store empty; a loaded store has findable names, consistent offsets and finite
 * values, and loading the same text again into it (the populated-store path) succeeds with the
 * same values. A violation traps, which libFuzzer reports as a crash.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/model.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_param_store *ps = em_param_store_create();
    CHECK(ps != NULL);
    em_error e = {0};
    em_status st = em_param_store_load_buffer(ps, "fuzz.txt", (const char *)data, size, &e);
    if (st != EM_OK) {
        CHECK(e.status == st);
        CHECK(e.msg[0] != '\0' && strlen(e.msg) < sizeof e.msg);
        CHECK(em_param_store_count(ps) == 0);
        em_param_store_destroy(ps);
        return 0;
    }
    size_t n = em_param_store_count(ps), dim = em_param_store_dim(ps), off = 0;
    const double *v = em_param_store_values(ps);
    for (size_t i = 0; i < n; i++) {
        const char *name = em_param_store_name(ps, i);
        CHECK(name != NULL && name[0] != '\0');
        CHECK(em_param_store_find(ps, name) == (long)i);
        CHECK(em_param_store_offset(ps, i) == off && em_param_store_len(ps, i) > 0);
        off += em_param_store_len(ps, i);
        double *c = malloc(em_param_store_len(ps, i) * sizeof *c);
        CHECK(c != NULL);
        em_error ge = {0};
        (void)em_param_store_get(ps, name, c, em_param_store_len(ps, i), &ge); /* may refuse odd bounds */
        free(c);
    }
    CHECK(off == dim);
    for (size_t k = 0; k < dim; k++) CHECK(isfinite(v[k]));
    double *before = malloc((dim ? dim : 1) * sizeof *before);
    CHECK(before != NULL);
    if (dim) memcpy(before, v, dim * sizeof *before);
    em_error e2 = {0};
    CHECK(em_param_store_load_buffer(ps, "fuzz.txt", (const char *)data, size, &e2) == EM_OK);
    CHECK(em_param_store_count(ps) == n && em_param_store_dim(ps) == dim);
    CHECK(dim == 0 || memcmp(before, em_param_store_values(ps), dim * sizeof *before) == 0);
    free(before);
    em_param_store_destroy(ps);
    return 0;
}
