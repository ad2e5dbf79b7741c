/* posterior.c — see posterior.h. */
#include "posterior.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"
#include "util.h"

const char *const param_names[NPAR] = {"a", "bA", "bR", "bAR", "sigma"};

em_status post_alloc(post *p, const char *label, size_t nchains, size_t ndraws, em_error *err) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->nchains = nchains;
    p->ndraws = ndraws;
    p->x = calloc(nchains * ndraws * NPAR, sizeof(double));
    if (!p->x) return em_error_set(err, EM_ERR_NOMEM, "%s draws: out of memory", label);
    return EM_OK;
}

void post_free(post *p) {
    free(p->x);
    p->x = NULL;
}

void post_slopes(const post *p, double *outside, double *inside) {
    for (size_t r = 0; r < post_rows(p); r++) {
        const double *row = p->x + r * NPAR;
        outside[r] = row[P_BR];
        inside[r] = row[P_BR] + row[P_BAR];
    }
}

em_status post_summarize(const post *p, em_summary **out, em_error *err) {
    return em_summarize(p->x, p->nchains, p->ndraws, NPAR, param_names, EM_LAYOUT_CHAIN_DRAW_PARAM, out, err);
}

void print_summary(FILE *f, const em_summary *s, int with_diag) {
    if (with_diag) {
        em_summary_print(f, s, 4, NULL);
        return;
    }
    static const char *const head[] = {"name", "mean", "sd", "5%", "50%", "95%"};
    table t;
    table_init(&t, 6, head);
    for (size_t i = 0; i < s->nparams; i++) {
        const em_param_summary *ps = &s->params[i];
        int r = table_row(&t);
        table_set(&t, r, 0, "%s", ps->name);
        double v[5] = {ps->mean, ps->sd, ps->q5, ps->median, ps->q95};
        for (int c = 0; c < 5; c++) table_num(&t, r, c + 1, v[c], 4);
    }
    table_print(f, &t, "");
}

void print_slopes(FILE *f, const post *p) {
    size_t n = post_rows(p);
    double *out = malloc(2 * n * sizeof(double));
    if (!out) return;
    double *in = out + n;
    post_slopes(p, out, in);
    fprintf(f, "Slope of log GDP on ruggedness, posterior mean [90%% interval]:\n");
    fprintf(f, "  inside Africa  (bR + bAR): %7.4f [%7.4f, %7.4f]\n", em_mean(in, n), em_quantile(in, n, 0.05),
            em_quantile(in, n, 0.95));
    fprintf(f, "  outside Africa (bR):       %7.4f [%7.4f, %7.4f]\n", em_mean(out, n), em_quantile(out, n, 0.05),
            em_quantile(out, n, 0.95));
    free(out);
}
