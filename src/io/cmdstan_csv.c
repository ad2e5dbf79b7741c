/* cmdstan_csv.c — posterior draws in CmdStan's CSV layout, written and read back. See io.h.
 *
 * The layout follows what CmdStan itself writes (stan-dev/stan src/stan/services/util/
 * mcmc_writer.hpp; the CmdStan guide's "Stan CSV File Format" appendix): configuration comment
 * lines, the header row, the "# Adaptation terminated" block, the draws, and the elapsed-time
 * footer. The whole file is built in memory and written with em_write_file_atomic, so a reader
 * never sees half a file. Reading goes through the data CSV reader with '#' comments and
 * non-finite values allowed, so it inherits its file:line:column messages.
 */
#include "ember/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* %.*g with n significant digits, but CmdStan's spelling of non-finite values. */
static void put_num(em_buf *b, double v, int digits) {
    if (isnan(v)) em_buf_append(b, "nan", 3);
    else if (isinf(v)) em_buf_printf(b, "%sinf", v < 0 ? "-" : "");
    else em_buf_printf(b, "%.*g", digits, v);
}

static void put_rows(em_buf *b, const double *rows, size_t n, size_t ncols, int digits) {
    for (size_t i = 0; i < n; i++) {
        const double *row = rows + i * ncols;
        for (size_t j = 0; j < ncols; j++) {
            if (j) em_buf_append(b, ",", 1);
            put_num(b, row[j], digits);
        }
        em_buf_append(b, "\n", 1);
    }
}

static int bad_text(const char *s, const char *forbidden) {
    for (; *s; s++)
        if (strchr(forbidden, *s)) return 1;
    return 0;
}

em_status em_cmdstan_format(const em_cmdstan_file *f, int sig_digits, em_buf *out, em_error *err) {
    if (!f || !out) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: file or out is NULL");
    if (sig_digits != 0 && (sig_digits < 9 || sig_digits > 17))
        return em_error_set(err, EM_ERR_ARG,
                            "em_cmdstan_format: sig_digits = %d; use 0 (round-trip, 17 digits) or 9..17", sig_digits);
    int digits = sig_digits ? sig_digits : 17;
    if (f->ncols == 0 || !f->names)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: no columns (ncols = %zu)", f->ncols);
    if (f->ndraws && !f->draws)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: draws is NULL with ndraws = %zu", f->ndraws);
    if (f->nwarmup && !f->warmup_draws)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: warmup_draws is NULL with nwarmup = %zu", f->nwarmup);
    if (f->ncomments && !f->comments)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: comments is NULL with ncomments = %zu", f->ncomments);
    for (size_t i = 0; i < f->ncomments; i++) {
        if (!f->comments[i]) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: comments[%zu] is NULL", i);
        if (bad_text(f->comments[i], "\r\n"))
            return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: comments[%zu] contains a line break", i);
    }
    for (size_t j = 0; j < f->ncols; j++) {
        const char *n = f->names[j];
        if (!n || !*n) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: names[%zu] is NULL or empty", j);
        /* CmdStan never quotes its header, so a name with these would break every reader */
        if (bad_text(n, ",\"\r\n") || n[0] == '#')
            return em_error_set(err, EM_ERR_ARG,
                                "em_cmdstan_format: names[%zu] = '%.60s' contains ',', '\"', a line break or starts "
                                "with '#'",
                                j, n);
    }
    if (f->has_adaptation && f->metric_dim && !f->inv_metric)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: inv_metric is NULL with metric_dim = %zu",
                            f->metric_dim);
    if (f->has_adaptation && f->dense_metric && f->metric_dim > ((size_t)-1) / f->metric_dim)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: metric_dim = %zu is too large", f->metric_dim);

    if (f->has_adaptation && !(isfinite(f->step_size) && f->step_size > 0))
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_format: step_size = %g; it must be positive and finite",
                            f->step_size);
    if (f->has_timing && !(isfinite(f->warmup_seconds) && f->warmup_seconds >= 0 && isfinite(f->sampling_seconds) &&
                           f->sampling_seconds >= 0))
        return em_error_set(err, EM_ERR_ARG,
                            "em_cmdstan_format: warmup_seconds = %g, sampling_seconds = %g; times must be finite "
                            "and non-negative",
                            f->warmup_seconds, f->sampling_seconds);

    for (size_t i = 0; i < f->ncomments; i++) em_buf_printf(out, "# %s\n", f->comments[i]);
    for (size_t j = 0; j < f->ncols; j++) em_buf_printf(out, "%s%s", j ? "," : "", f->names[j]);
    em_buf_append(out, "\n", 1);
    put_rows(out, f->warmup_draws, f->nwarmup, f->ncols, digits);
    if (f->has_adaptation) {
        em_buf_printf(out, "# Adaptation terminated\n# Step size = ");
        put_num(out, f->step_size, digits);
        em_buf_append(out, "\n", 1);
        size_t d = f->metric_dim;
        if (f->dense_metric) {
            em_buf_printf(out, "# Elements of inverse mass matrix:\n");
            for (size_t r = 0; r < d; r++) {
                em_buf_append(out, "# ", 2);
                for (size_t c = 0; c < d; c++) {
                    if (c) em_buf_append(out, ", ", 2);
                    put_num(out, f->inv_metric[r * d + c], digits);
                }
                em_buf_append(out, "\n", 1);
            }
        } else {
            em_buf_printf(out, "# Diagonal elements of inverse mass matrix:\n# ");
            for (size_t c = 0; c < d; c++) {
                if (c) em_buf_append(out, ", ", 2);
                put_num(out, f->inv_metric[c], digits);
            }
            em_buf_append(out, "\n", 1);
        }
    }
    put_rows(out, f->draws, f->ndraws, f->ncols, digits);
    if (f->has_timing) {
        /* mcmc_writer.hpp: a blank comment, the three times aligned under " Elapsed Time: " and
         * another blank comment; times in the stream's default format (6 significant digits) */
        double w = f->warmup_seconds, s = f->sampling_seconds;
        em_buf_printf(out,
                      "# \n"
                      "#  Elapsed Time: %g seconds (Warm-up)\n"
                      "#                %g seconds (Sampling)\n"
                      "#                %g seconds (Total)\n"
                      "# \n",
                      w, s, w + s);
    }
    if (out->failed) return em_error_set(err, EM_ERR_NOMEM, "em_cmdstan_format: out of memory");
    return EM_OK;
}

em_status em_cmdstan_write(const char *path, const em_cmdstan_file *f, int sig_digits, em_error *err) {
    if (!path) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_write: path is NULL");
    em_buf b = {0};
    em_status st = em_cmdstan_format(f, sig_digits, &b, err);
    if (st == EM_OK) st = em_write_file_atomic(path, b.data ? b.data : "", b.len, err);
    em_buf_free(&b);
    return st;
}

em_status em_cmdstan_name(char *out, size_t cap, const char *base, size_t i, em_error *err) {
    if (!out || !base || cap == 0) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_name: NULL argument or cap 0");
    int n = snprintf(out, cap, "%s.%zu", base, i);
    if (n < 0 || (size_t)n >= cap)
        return em_error_set(err, EM_ERR_ARG, "em_cmdstan_name: '%.60s.%zu' does not fit in %zu bytes", base, i, cap);
    return EM_OK;
}

/* The draws of a table read with the CmdStan options; the table is consumed. */
static em_status draws_of_table(const char *name, em_csv_table *t, em_cmdstan_draws **out, em_error *err) {
    em_cmdstan_draws *d = calloc(1, sizeof *d);
    if (!d) {
        em_csv_table_free(t);
        return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
    }
    d->ncols = t->ncols;
    d->ndraws = t->nrows;
    size_t cells = t->ncols * t->nrows; /* both already held in memory: no overflow */
    d->draws = malloc((cells ? cells : 1) * sizeof *d->draws);
    if (!d->draws) {
        free(d);
        em_csv_table_free(t);
        return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
    }
    for (size_t i = 0; i < t->nrows; i++)
        for (size_t j = 0; j < t->ncols; j++) d->draws[i * t->ncols + j] = t->cols[j][i];
    /* take the names from the table rather than copying them */
    d->names = t->names;
    t->names = NULL;
    size_t nc = t->ncols;
    for (size_t j = 0; j < nc; j++) {
        free(t->cols[j]);
        t->cols[j] = NULL;
    }
    em_csv_table_free(t);
    *out = d;
    return EM_OK;
}

static const em_csv_options cmdstan_options = {.comment = '#', .allow_nonfinite = 1};

em_status em_cmdstan_read(const char *path, em_cmdstan_draws **out, em_error *err) {
    if (out) *out = NULL;
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_read: out is NULL");
    em_csv_table *t = NULL;
    em_status st = em_csv_read(path, NULL, 0, &cmdstan_options, &t, err);
    return st != EM_OK ? st : draws_of_table(path, t, out, err);
}

em_status em_cmdstan_parse_buffer(const char *name, const char *buf, size_t len, em_cmdstan_draws **out,
                                  em_error *err) {
    if (out) *out = NULL;
    if (!name) name = "<buffer>";
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_cmdstan_parse_buffer(%s): out is NULL", name);
    em_csv_table *t = NULL;
    em_status st = em_csv_parse_buffer(name, buf, len, NULL, 0, &cmdstan_options, &t, err);
    return st != EM_OK ? st : draws_of_table(name, t, out, err);
}

long em_cmdstan_column_index(const em_cmdstan_draws *d, const char *name) {
    if (!d || !name) return -1;
    for (size_t j = 0; j < d->ncols; j++)
        if (strcmp(d->names[j], name) == 0) return (long)j;
    return -1;
}

void em_cmdstan_draws_free(em_cmdstan_draws *d) {
    if (!d) return;
    for (size_t j = 0; j < d->ncols; j++) free(d->names[j]);
    free(d->names);
    free(d->draws);
    free(d);
}
