/* crossval.c — see crossval.h. */
#include "crossval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fits.h"
#include "predict.h"
#include "table.h"
#include "util.h"

/* The rows of d whose fold is (or is not) k, as a new data set with its own arrays. */
typedef struct subset {
    double *africa, *rugged;
    rugged_data x;
} subset;

static em_status subset_make(const rugged_data *d, const int *fold, int k, int keep_fold, subset *s,
                             em_error *err) {
    memset(s, 0, sizeof *s);
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) n += (fold[i] == k) == keep_fold;
    s->africa = malloc(n * sizeof(double));
    s->rugged = malloc(n * sizeof(double));
    double *y = malloc(n * sizeof(double));
    if (!s->africa || !s->rugged || !y) {
        free(y);
        free(s->africa);
        free(s->rugged);
        memset(s, 0, sizeof *s);
        return em_error_set(err, EM_ERR_NOMEM, "calibration: out of memory");
    }
    size_t j = 0;
    for (size_t i = 0; i < d->n; i++) {
        if ((fold[i] == k) != keep_fold) continue;
        s->africa[j] = d->africa[i];
        s->rugged[j] = d->rugged[i];
        y[j] = d->log_gdp[i];
        j++;
    }
    em_status st = rugged_data_predictors(&s->x, s->africa, s->rugged, n, err);
    if (st != EM_OK) {
        free(y);
        free(s->africa);
        free(s->rugged);
        memset(s, 0, sizeof *s);
        return st;
    }
    s->x.log_gdp = y; /* freed by rugged_data_free */
    return EM_OK;
}

static void subset_free(subset *s) {
    rugged_data_free(&s->x);
    free(s->africa);
    free(s->rugged);
}

/* Add the held-out rows' coverage of three intervals to rows[0..2]. */
static void count(const bands *b, const rugged_data *held, coverage_row *rows) {
    for (size_t i = 0; i < held->n; i++) {
        double y = held->log_gdp[i];
        const band *p = &b->y[i], *m = &b->mu[i];
        rows[0].covered += p->q25 <= y && y <= p->q75;
        rows[0].mean_width += p->q75 - p->q25;
        rows[1].covered += p->q5 <= y && y <= p->q95;
        rows[1].mean_width += p->q95 - p->q5;
        rows[2].covered += m->q5 <= y && y <= m->q95;
        rows[2].mean_width += m->q95 - m->q5;
        for (int k = 0; k < 3; k++) rows[k].n++;
    }
}

em_status calibrate(const rugged_data *d, int folds, int use_nuts, int use_svi, int svi_steps, uint64_t seed,
                    coverage *out, em_error *err) {
    memset(out, 0, sizeof *out);
    out->folds = folds;
    /* fewer draws than the main fit keep the K refits fast; 1000 draws place the 5% and 95%
     * quantiles well enough for counting, where the binomial noise of the 170 rows dominates */
    out->nuts_chains = 2;
    out->nuts_samples = 500;
    out->nuts_warmup = 500;
    out->svi_steps = svi_steps;
    out->svi_draws = 1000;
    const char *methods[2] = {"nuts", "svi"};
    const char *intervals[3] = {"predictive_50", "predictive_90", "mean_line_90"};
    const double nominal[3] = {0.5, 0.9, 0.9};
    coverage_row *by_method[2] = {NULL, NULL};
    for (int m = 0; m < 2; m++) {
        if (!(m == 0 ? use_nuts : use_svi)) continue;
        by_method[m] = &out->rows[out->nrows];
        for (int k = 0; k < 3; k++)
            out->rows[out->nrows++] = (coverage_row){.method = methods[m], .interval = intervals[k],
                                                     .nominal = nominal[k]};
    }

    /* fold of each row: a seeded shuffle dealt round-robin, so folds differ in size by <= 1 */
    int *fold = malloc(d->n * sizeof(int));
    size_t *perm = malloc(d->n * sizeof(size_t));
    em_rng *rng = em_rng_create(seed, 3);
    em_status s = EM_OK;
    if (!fold || !perm || !rng) {
        s = em_error_set(err, EM_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    for (size_t i = 0; i < d->n; i++) perm[i] = i;
    for (size_t i = d->n - 1; i > 0; i--) {
        size_t j = (size_t)gsl_rng_uniform_int(rng, i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < d->n; i++) fold[perm[i]] = (int)(i % (size_t)folds);

    for (int k = 0; k < folds && s == EM_OK; k++) {
        progress("[calibration] fold %d/%d: fitting on %zu rows", k + 1, folds,
                 d->n - (d->n / folds + ((size_t)k < d->n % (size_t)folds)));
        subset train, held;
        if ((s = subset_make(d, fold, k, 0, &train, err)) != EM_OK) break;
        if ((s = subset_make(d, fold, k, 1, &held, err)) != EM_OK) {
            subset_free(&train);
            break;
        }
        uint64_t fold_seed = em_seed_mix(seed, 100 + (uint64_t)k);
        if (by_method[0]) {
            nuts_spec ns = {.chains = out->nuts_chains, .samples = out->nuts_samples, .warmup = out->nuts_warmup,
                            .seed = fold_seed, .progress = 0, .handle_sigint = 1};
            em_posterior *fit = NULL;
            post p = {0};
            bands b = {0};
            s = nuts_run(&train.x, &ns, &fit, err);
            if (s == EM_OK) s = post_from_posterior(fit, "NUTS", &p, err);
            if (s == EM_OK) s = predict_bands(&p, &held.x, em_seed_mix(fold_seed, 1), 0, &b, err);
            if (s == EM_OK) count(&b, &held.x, by_method[0]);
            bands_free(&b);
            post_free(&p);
            em_posterior_free(fit);
        }
        if (s == EM_OK && by_method[1]) {
            svi_spec spec = {.name = "AutoDiagonalNormal", .kind = EM_AUTO_DIAGONAL_NORMAL, .init = EM_INIT_MEDIAN,
                             .lr = 0.03, .steps = svi_steps, .ndraws = out->svi_draws,
                             .draws_only = 1};
            svi_fit f;
            bands b = {0};
            s = svi_fit_run(&spec, &train.x, fold_seed, NULL, &f, err);
            if (s == EM_OK) {
                s = predict_bands(&f.draws, &held.x, em_seed_mix(fold_seed, 2), 0, &b, err);
                if (s == EM_OK) count(&b, &held.x, by_method[1]);
                svi_fit_free(&f);
            }
            bands_free(&b);
        }
        subset_free(&train);
        subset_free(&held);
    }
    for (size_t r = 0; r < out->nrows; r++)
        if (out->rows[r].n) out->rows[r].mean_width /= (double)out->rows[r].n;

done:
    free(fold);
    free(perm);
    em_rng_destroy(rng);
    return s;
}

void print_coverage(FILE *f, const coverage *c) {
    static const char *const head[] = {"method", "interval", "nominal", "coverage", "held-out rows inside",
                                       "mean width"};
    table t;
    table_init(&t, 6, head);
    for (size_t i = 0; i < c->nrows; i++) {
        const coverage_row *r = &c->rows[i];
        int row = table_row(&t);
        table_set(&t, row, 0, "%s", !strcmp(r->method, "nuts") ? "NUTS" : "SVI (diag)");
        table_set(&t, row, 1, "%s",
                  !strcmp(r->interval, "predictive_50")   ? "new observation, central 50%"
                  : !strcmp(r->interval, "predictive_90") ? "new observation, central 90%"
                                                          : "regression line, 90% band");
        table_set(&t, row, 2, "%.2f", r->nominal);
        table_set(&t, row, 3, "%.3f", r->n ? (double)r->covered / (double)r->n : 0.0);
        table_set(&t, row, 4, "%zu / %zu", r->covered, r->n);
        table_set(&t, row, 5, "%.3f", r->mean_width);
    }
    table_print(f, &t, "");
}

void print_coverage_warnings(FILE *f, const coverage *c) {
    for (size_t i = 0; i < c->nrows; i++) {
        const coverage_row *r = &c->rows[i];
        if (strncmp(r->interval, "predictive", 10) != 0 || r->n == 0) continue;
        double cov = (double)r->covered / (double)r->n, se = sqrt(r->nominal * (1.0 - r->nominal) / (double)r->n);
        double z = (cov - r->nominal) / se;
        if (fabs(z) > 2.0)
            fprintf(f, "Note: %s %s coverage %.3f is %.1f standard errors %s its nominal %.2f.\n",
                    !strcmp(r->method, "nuts") ? "NUTS" : "SVI (diag)", !strcmp(r->interval, "predictive_50") ? "50%" : "90%",
                    cov, fabs(z), z < 0 ? "below" : "above", r->nominal);
    }
}

em_status write_coverage_csv(const char *dir, const coverage *c, em_error *err) {
    em_buf b = {0};
    em_buf_printf(&b, "method,interval,nominal,covered,n,coverage,mean_width,folds\n");
    for (size_t i = 0; i < c->nrows; i++) {
        const coverage_row *r = &c->rows[i];
        em_buf_printf(&b, "%s,%s,%.2f,%zu,%zu,%.10g,%.10g,%d\n", r->method, r->interval, r->nominal, r->covered, r->n,
                      r->n ? (double)r->covered / (double)r->n : 0.0, r->mean_width, c->folds);
    }
    em_status s = write_buf(dir, "coverage.csv", &b, err);
    em_buf_free(&b);
    return s;
}
