/* predict.c — see predict.h. */
#include "predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Mean and quantiles of element i of a site over its draws (type 7, as posterior's quantile2),
 * with one sort. */
static em_status band_of(const em_pred_site *site, size_t ndraws, size_t i, double *work, band *b, em_error *err) {
    static const double probs[5] = {0.05, 0.25, 0.50, 0.75, 0.95};
    double q[5];
    for (size_t k = 0; k < ndraws; k++) work[k] = site->draws[k * site->len + i];
    b->mean = em_mean(work, ndraws);
    em_status s = em_quantiles(work, ndraws, probs, 5, q, err);
    b->q5 = q[0];
    b->q25 = q[1];
    b->q50 = q[2];
    b->q75 = q[3];
    b->q95 = q[4];
    return s;
}

/* The draws of a band are held for a chunk of rows at a time, about this many values per site,
 * so memory stays near 2 × 8 × BAND_VALUES bytes however many rows there are (all draws of all
 * 10^7 rows would be 128 GB). A data set of up to BAND_VALUES / draws rows is one chunk, drawn
 * exactly as it always was; chunk c > 0 draws from its own seed em_seed_mix(seed, c). */
#define BAND_VALUES (1u << 22)

/* Rows [lo, lo + n) of x, as data of their own (pointers into x, nothing copied). */
static rugged_data rows_of(const rugged_data *x, size_t lo, size_t n) {
    rugged_data r = *x;
    r.n = n;
    r.africa = x->africa + lo;
    r.rugged = x->rugged + lo;
    r.africa_x_rugged = x->africa_x_rugged + lo;
    r.X = x->X + 3 * lo;
    r.log_gdp = x->log_gdp ? x->log_gdp + lo : NULL;
    r.table = NULL;
    return r;
}

/* The bands of rows [lo, lo + x->n) of the whole, from one predictive run on those rows. */
static em_status chunk_bands(const post *p, const rugged_data *x, size_t lo, uint64_t seed, const double *e,
                             double *work, bands *out, em_error *err) {
    const size_t lens[NPAR] = {1, 1, 1, 1, 1};
    const char *const sites[2] = {"mean", "obs"};
    em_predictive_options opt = {.seed = seed, .return_sites = sites, .nreturn = 2};
    em_predictive *pred = NULL;
    size_t nd = post_rows(p), n = x->n;
    em_status s = em_predictive_posterior(rugged_model, x, param_names, lens, NPAR, p->x, nd, &opt, &pred, err);
    if (s != EM_OK) return s;
    const em_pred_site *mu = em_predictive_site(pred, "mean"), *y = em_predictive_site(pred, "obs");
    em_pred_site ynew = {.name = "obs", .kind = EM_SITE_OBSERVE, .len = n, .draws = NULL};
    if (!mu || !y || mu->len != n || y->len != n) {
        s = em_error_set(err, EM_ERR_MODEL, "predictive bands: sites mean and obs should have %zu values", n);
    } else if (e) {
        ynew.draws = malloc(nd * n * sizeof(double));
        if (!ynew.draws) s = em_error_set(err, EM_ERR_NOMEM, "predictive bands: out of memory");
        for (size_t k = 0; k < nd && s == EM_OK; k++)
            for (size_t i = 0; i < n; i++)
                ynew.draws[k * n + i] = mu->draws[k * n + i] + p->x[k * NPAR + P_SIGMA] * e[k];
        y = &ynew;
    }
    for (size_t i = 0; i < n && s == EM_OK; i++) {
        s = band_of(mu, nd, i, work, &out->mu[lo + i], err);
        if (s == EM_OK) s = band_of(y, nd, i, work, &out->y[lo + i], err);
    }
    free(ynew.draws);
    em_predictive_free(pred);
    return s;
}

/* Simulating and sorting every draw of every row costs draws × rows: 800 × 10^7 would take
 * hours. So a data set of n rows uses evenly spaced draws, at most BAND_WORK / n of them (but
 * at least BAND_MIN_DRAWS): every draw up to 10^5 rows at 1000 draws, as it always was; 100
 * draws at 10^6 rows and more. */
#define BAND_WORK 100000000u
#define BAND_MIN_DRAWS 100u

em_status predict_bands(const post *p_all, const rugged_data *x, uint64_t seed, int common_noise, bands *out,
                        em_error *err) {
    memset(out, 0, sizeof *out);
    size_t keep = x->n ? BAND_WORK / x->n : 0;
    if (keep < BAND_MIN_DRAWS) keep = BAND_MIN_DRAWS;
    post thin = {.nchains = 1, .ndraws = 0, .x = NULL};
    const post *p = p_all;
    if (post_rows(p_all) > keep) {
        size_t stride = (post_rows(p_all) + keep - 1) / keep;
        if (post_alloc(&thin, p_all->label, 1, (post_rows(p_all) + stride - 1) / stride, err) != EM_OK) return EM_ERR_NOMEM;
        for (size_t k = 0; k < thin.ndraws; k++)
            memcpy(thin.x + k * NPAR, p_all->x + k * stride * NPAR, NPAR * sizeof(double));
        p = &thin;
    }
    size_t nd = post_rows(p);
    size_t chunk = nd < BAND_VALUES ? BAND_VALUES / nd : 1;
    out->n = x->n;
    out->mu = malloc(x->n * sizeof(band));
    out->y = malloc(x->n * sizeof(band));
    double *work = malloc(nd * sizeof(double));
    double *e = common_noise ? malloc(nd * sizeof(double)) : NULL;
    em_rng *rng = common_noise ? em_rng_create(seed, 7) : NULL;
    em_status s = EM_OK;
    if (!out->mu || !out->y || !work || (common_noise && (!e || !rng)))
        s = em_error_set(err, EM_ERR_NOMEM, "predictive bands: out of memory");
    for (size_t k = 0; k < nd && s == EM_OK && e; k++) e[k] = em_rng_normal(rng);
    for (size_t lo = 0, c = 0; lo < x->n && s == EM_OK; lo += chunk, c++) {
        rugged_data part = rows_of(x, lo, x->n - lo < chunk ? x->n - lo : chunk);
        s = chunk_bands(p, &part, lo, c == 0 ? seed : em_seed_mix(seed, c), e, work, out, err);
    }
    em_rng_destroy(rng);
    free(e);
    free(work);
    post_free(&thin);
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

/* Written through an atomic file a megabyte at a time: at 10^7 rows the file is gigabytes,
 * which are not to be held in memory first. */
em_status write_predictive_csv(const char *dir, const rugged_data *d, const em_csv_table *iso, const rugged_grid *g,
                               const method_bands *m, size_t nm, em_error *err) {
    char *path = path_join(dir, "predictive.csv");
    em_atomic_file *f = path ? em_atomic_open(path, err) : NULL;
    free(path);
    if (!f) return err && err->status ? err->status : em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", dir);
    em_buf b = {0};
    em_status s = EM_OK;
    char *const *codes = iso ? em_csv_text_column(iso, "isocode") : NULL;
    em_buf_printf(&b, "method,where,row,isocode,cont_africa,rugged,log_gdp,mu_mean,mu_q5,mu_q50,mu_q95,"
                      "y_mean,y_q5,y_q50,y_q95\n");
    for (size_t k = 0; k < nm && s == EM_OK; k++) {
        for (size_t i = 0; i < d->n + g->x.n && s == EM_OK; i++) {
            if (i < d->n)
                put_row(&b, m[k].method, "data", i + 1, codes ? codes[i] : NULL, d->africa[i], d->rugged[i],
                        d->log_gdp[i], &m[k].rows.mu[i], &m[k].rows.y[i]);
            else
                put_row(&b, m[k].method, "grid", i - d->n + 1, NULL, g->africa[i - d->n], g->rugged[i - d->n], NAN,
                        &m[k].grid.mu[i - d->n], &m[k].grid.y[i - d->n]);
            if (b.len >= (1u << 20) || (k + 1 == nm && i + 1 == d->n + g->x.n)) {
                s = b.failed ? em_error_set(err, EM_ERR_NOMEM, "predictive.csv: out of memory")
                             : em_atomic_write(f, b.data, b.len, err);
                b.len = 0;
            }
        }
    }
    if (s == EM_OK && b.len) s = em_atomic_write(f, b.data, b.len, err); /* the header alone (nm == 0) */
    em_buf_free(&b);
    if (s != EM_OK) {
        em_atomic_abort(f);
        return s;
    }
    return em_atomic_commit(f, err);
}
