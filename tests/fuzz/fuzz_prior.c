/* fuzz_prior.c — libFuzzer target for the prior syntax ("b ~ normal(0, 2.5)", the lines
 * em_regression_options.priors and the CLI's --prior take; scripts/fuzz.sh builds and runs it).
 *
 * The input, cut at its first NUL, is split at newlines into at most 8 prior lines, which
 * em_regression_create applies in order to one fixed formula with every class of prior
 * (population-level b, the Intercept, a correlated and an uncorrelated group term for sd and
 * cor) under the gaussian, student and negbinomial families (sigma, nu, shape). An error must
 * carry its status and a message; a regression that builds must print its priors. A violation
 * traps, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/formula.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

enum { MAX_LINES = 8 };

static const char FRAME[] = "y,x,z,g,h\n"
                            "1,0.5,1.2,a,u\n"
                            "2,-0.3,0.4,a,v\n"
                            "0,1.1,-0.7,b,u\n"
                            "3,0.2,2.2,b,v\n"
                            "1,-1.4,0.9,c,u\n"
                            "4,0.8,-1.1,c,v\n"
                            "2,-0.5,0.3,a,u\n"
                            "0,1.7,-0.2,b,v\n";
static const char FORMULA[] = "y ~ x + z + (1 + x | g) + (1 + z || h)";
static const em_family FAMILIES[] = {EM_FAMILY_GAUSSIAN, EM_FAMILY_STUDENT, EM_FAMILY_NEGBINOMIAL};

static em_frame *frame;
static FILE *sink;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    em_error e = {0};
    CHECK(em_frame_parse_csv("fuzz.csv", FRAME, sizeof FRAME - 1, &frame, &e) == EM_OK);
    sink = fopen("/dev/null", "w");
    CHECK(sink != NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *lines[MAX_LINES];
    size_t n = 0;
    for (char *p = text; n < MAX_LINES;) {
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    for (size_t k = 0; k < sizeof FAMILIES / sizeof *FAMILIES; k++) {
        em_regression_options o = {.family = FAMILIES[k], .priors = lines, .npriors = n};
        em_regression *r = NULL;
        em_error e = {0};
        em_status st = em_regression_create(FORMULA, frame, &o, &r, &e);
        if (st != EM_OK) {
            CHECK(r == NULL && e.status == st && e.msg[0] != '\0' && strlen(e.msg) < sizeof e.msg);
            continue;
        }
        CHECK(em_regression_print_priors(r, sink, &e) == EM_OK);
        em_regression_free(r);
    }
    free(text);
    return 0;
}
