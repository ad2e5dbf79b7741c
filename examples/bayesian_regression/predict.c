/* predict.c — see predict.h. */
#include "predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Quantiles of element i of a site over its draws (type 7, as posterior's quantile2). */
static void band_of(const em_pred_site *site, size_t ndraws, size_t i, double *work, band *b) {
    for (size_t k = 0; k < ndraws; k++) work[k] = site->draws[k * site->len + i];
    b->mean = em_mean(work, ndraws);
    b->q5 = em_quantile(work, ndraws, 0.05);
    b->q25 = em_quantile(work, ndraws, 0.25);
    b->q50 = em_quantile(work, ndraws, 0.50);
    b->q75 = em_quantile(work, ndraws, 0.75);
    b->q95 = em_quantile(work, ndraws, 0.95);
}

em_status predict_bands(const post *p, const rugged_data *x, uint64_t seed, int common_noise, bands *out,
                        em_error *err) {
    memset(out, 0, sizeof *out);
    const size_t lens[NPAR] = {1, 1, 1, 1, 1};
    const char *const sites[2] = {"mean", "obs"};
    em_predictive_options opt = {.seed = seed, .return_sites = sites, .nreturn = 2};
    em_predictive *pred = NULL;
    size_t nd = post_rows(p);
    em_status s = em_predictive_posterior(rugged_model, x, param_names, lens, NPAR, p->x, nd, &opt, &pred, err);
    if (s != EM_OK) return s;
    const em_pred_site *mu = em_predictive_site(pred, "mean"), *y = em_predictive_site(pred, "obs");
    out->n = x->n;
    out->mu = malloc(x->n * sizeof(band));
    out->y = malloc(x->n * sizeof(band));
    double *work = malloc(nd * sizeof(double));
    if (!out->mu || !out->y || !work) {
        s = em_error_set(err, EM_ERR_NOMEM, "predictive bands: out of memory");
    } else if (!mu || !y || mu->len != x->n || y->len != x->n) {
        s = em_error_set(err, EM_ERR_MODEL, "predictive bands: sites mean and obs should have %zu values", x->n);
    } else if (!common_noise) {
        for (size_t i = 0; i < x->n; i++) {
            band_of(mu, nd, i, work, &out->mu[i]);
            band_of(y, nd, i, work, &out->y[i]);
        }
    } else {
        em_rng *rng = em_rng_create(seed, 7);
        double *e = malloc(nd * sizeof(double));
        em_pred_site ynew = {.name = "obs", .kind = EM_SITE_OBSERVE, .len = x->n, .draws = NULL};
        ynew.draws = malloc(nd * x->n * sizeof(double));
        if (!rng || !e || !ynew.draws) {
            s = em_error_set(err, EM_ERR_NOMEM, "predictive bands: out of memory");
        } else {
            for (size_t k = 0; k < nd; k++) e[k] = em_rng_normal(rng);
            for (size_t k = 0; k < nd; k++)
                for (size_t i = 0; i < x->n; i++)
                    ynew.draws[k * x->n + i] = mu->draws[k * x->n + i] + p->x[k * NPAR + P_SIGMA] * e[k];
            for (size_t i = 0; i < x->n; i++) {
                band_of(mu, nd, i, work, &out->mu[i]);
                band_of(&ynew, nd, i, work, &out->y[i]);
            }
        }
        free(ynew.draws);
        free(e);
        em_rng_destroy(rng);
    }
    free(work);
    em_predictive_free(pred);
    if (s != EM_OK) bands_free(out);
    return s;
}

void bands_free(bands *b) {
    free(b->mu);
    free(b->y);
    memset(b, 0, sizeof *b);
}

em_status grid_make(const rugged_data *d, rugged_grid *g, em_error *err) {
    double hi[2] = {0.0, 0.0};
    for (size_t i = 0; i < d->n; i++) {
        int k = d->africa[i] != 0.0;
        if (d->rugged[i] > hi[k]) hi[k] = d->rugged[i];
    }
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < GRID_N; j++) {
            g->africa[k * GRID_N + j] = k;
            g->rugged[k * GRID_N + j] = hi[k] * j / (GRID_N - 1);
        }
    return rugged_data_predictors(&g->x, g->africa, g->rugged, 2 * GRID_N, err);
}

void grid_free(rugged_grid *g) { rugged_data_free(&g->x); }

em_csv_table *read_isocodes(const char *path, const rugged_data *d) {
    const char *cols[] = {"cont_africa", "rugged", "rgdppc_2000"};
    const char *text[] = {"isocode"};
    em_csv_options opt = {.missing = EM_CSV_MISSING_DROP_ROW, .text_columns = text, .ntext_columns = 1};
    em_csv_table *t = NULL;
    if (em_csv_read(path, cols, 3, &opt, &t, NULL) != EM_OK) return NULL;
    if (t->nrows != d->n) { /* cannot happen with the same file and policy; be safe */
        em_csv_table_free(t);
        return NULL;
    }
    return t;
}

static void put_row(em_buf *b, const char *method, const char *where, size_t row, const char *iso, double africa,
                    double rugged, double log_gdp, const band *mu, const band *y) {
    em_buf_printf(b, "%s,%s,%zu,", method, where, row);
    /* an isocode is three capital letters; anything else would need quoting, so is left out */
    if (iso && strlen(iso) <= 8 && !strpbrk(iso, ",\"\r\n")) em_buf_printf(b, "%s", iso);
    em_buf_printf(b, ",%s,%.10g,", africa != 0.0 ? "1" : "0", rugged);
    csv_num(b, log_gdp, 10);
    const double v[8] = {mu->mean, mu->q5, mu->q50, mu->q95, y->mean, y->q5, y->q50, y->q95};
    for (int k = 0; k < 8; k++) {
        em_buf_append(b, ",", 1);
        csv_num(b, v[k], 10);
    }
    em_buf_append(b, "\n", 1);
}

em_status write_predictive_csv(const char *dir, const rugged_data *d, const em_csv_table *iso, const rugged_grid *g,
                               const method_bands *m, size_t nm, em_error *err) {
    em_buf b = {0};
    char *const *codes = iso ? em_csv_text_column(iso, "isocode") : NULL;
    em_buf_printf(&b, "method,where,row,isocode,cont_africa,rugged,log_gdp,mu_mean,mu_q5,mu_q50,mu_q95,"
                      "y_mean,y_q5,y_q50,y_q95\n");
    for (size_t k = 0; k < nm; k++) {
        for (size_t i = 0; i < d->n; i++)
            put_row(&b, m[k].method, "data", i + 1, codes ? codes[i] : NULL, d->africa[i], d->rugged[i], d->log_gdp[i],
                    &m[k].rows.mu[i], &m[k].rows.y[i]);
        for (size_t i = 0; i < g->x.n; i++)
            put_row(&b, m[k].method, "grid", i + 1, NULL, g->africa[i], g->rugged[i], NAN, &m[k].grid.mu[i],
                    &m[k].grid.y[i]);
    }
    em_status s = write_buf(dir, "predictive.csv", &b, err);
    em_buf_free(&b);
    return s;
}
