/* fuzz_formula.c — libFuzzer target for the formula parser and the design it builds
 * (scripts/fuzz.sh builds and runs it).
 *
 * Every input, cut at its first NUL, goes through em_formula_parse. An error must carry its
 * status and a message. A formula that parses must parse again to the same tree (compared
 * through R's deparse of the response and the right-hand side), and is then bound to a small
 * fixed data frame (numeric, count, binary and text columns, trials and weights) by
 * em_regression_create under the family the input's length picks, whose priors are printed:
 * the design builder (factors, interactions, powers, group terms, offsets) sees whatever the
 * parser accepts. A violation traps, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/formula.h"
#include "internal/formula_impl.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

static const char FRAME[] = "y,k,n,x,z,t,w,g,h,trt\n"
                            "0,1,3,0.5,1.2,1.0,1,a,u,A\n"
                            "1,2,4,-0.3,0.4,2.0,2,a,v,B\n"
                            "1,0,2,1.1,-0.7,1.5,1,b,u,A\n"
                            "0,3,5,0.2,2.2,0.5,1,b,v,B\n"
                            "1,1,1,-1.4,0.9,3.0,3,c,u,C\n"
                            "0,2,2,0.8,-1.1,1.2,1,c,v,A\n"
                            "1,4,6,-0.5,0.3,2.5,2,a,u,B\n"
                            "0,0,3,1.7,-0.2,0.8,1,b,v,C\n";

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

static void deparse(const em_formula *f, em_buf *b) {
    if (f->response) em_fnode_deparse(f->response, b);
    em_buf_printf(b, " | %d ~ ", f->naddition);
    for (int i = 0; i < f->naddition; i++) em_fnode_deparse(f->addition[i], b);
    if (f->rhs) em_fnode_deparse(f->rhs, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    em_formula *f = NULL;
    em_error e = {0};
    em_status st = em_formula_parse(text, &f, &e);
    if (st != EM_OK) {
        CHECK(f == NULL);
        CHECK(e.status == st && e.msg[0] != '\0' && strlen(e.msg) < sizeof e.msg);
        free(text);
        return 0;
    }
    CHECK(f != NULL);
    em_formula *g = NULL;
    CHECK(em_formula_parse(text, &g, &e) == EM_OK);
    em_buf a = {0}, b = {0};
    deparse(f, &a);
    deparse(g, &b);
    CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    em_buf_free(&a);
    em_buf_free(&b);
    em_formula_free(g);
    em_formula_free(f);

    em_regression_options o = {.family = (em_family)(size % EM_FAMILY_COUNT)};
    em_regression *r = NULL;
    em_error re = {0};
    st = em_regression_create(text, frame, &o, &r, &re);
    if (st != EM_OK) {
        CHECK(r == NULL && re.status == st && re.msg[0] != '\0');
    } else {
        CHECK(em_regression_num_rows(r) > 0);
        for (size_t j = 0; j < em_regression_num_coefs(r); j++) CHECK(em_regression_coef_name(r, j) != NULL);
        CHECK(em_regression_print_priors(r, sink, &re) == EM_OK);
        em_regression_free(r);
    }
    free(text);
    return 0;
}
