/* csv.c — the data CSV reader. See io.h for the accepted format and the missing-value policy.
 *
 * One pass over the bytes: each record is split into fields, recording where each started
 * (line and column, for messages); only the fields of selected columns are unescaped, into a
 * scratch buffer reused from row to row, so the cost is linear in the file size whatever the
 * number of rows or columns. Numbers go through the library's one strict grammar
 * (internal/text.h), converted under a "C" locale whatever the user's LC_NUMERIC. A NUL byte
 * anywhere means the input is not text: it is reported before anything else is parsed.
 */
#include "ember/io.h"
#include "internal/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* A short printable rendering of s[0..n) for messages: at most 40 bytes, control characters
 * shown as '?', "..." when cut. */
static const char *excerpt(char out[64], const char *s, size_t n) {
    size_t k = 0, lim = 40;
    for (size_t i = 0; i < n && k < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n > lim) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Edit distance, for "did you mean" suggestions; names longer than 63 bytes are not compared. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return (size_t)-1;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

/* ---- the record scanner ------------------------------------------------------------------- */

typedef struct field {
    const char *raw; /* the field's bytes in the input, quotes included */
    size_t raw_len;
    size_t line, col; /* where it starts, 1-based */
    size_t end_line, end_col; /* where it ends (the delimiter or line end) */
    size_t off, len;  /* unescaped text in scratch (only for wanted fields) */
} field;

typedef struct parser {
    const char *name;
    const char *p, *end;
    size_t line;
    const char *line_start;
    char comment;
    field *f;
    size_t nf, capf;
    em_buf scratch;
    em_error *err;
} parser;

static void consume_newline(parser *ps) {
    if (*ps->p == '\r' && ps->p + 1 < ps->end && ps->p[1] == '\n') ps->p++;
    ps->p++;
    ps->line++;
    ps->line_start = ps->p;
}

static size_t col_of(const parser *ps, const char *q) { return (size_t)(q - ps->line_start) + 1; }

/* Read one record. want(i) says whether field i must be unescaped into scratch (want == NULL:
 * every field). Returns 1 for a record, 0 at end of input, -1 on error (ps->err is set). */
static int read_record(parser *ps, const unsigned char *want, size_t nwant) {
    for (;;) { /* skip blank and comment lines */
        if (ps->p >= ps->end) return 0;
        char c = *ps->p;
        if (c == '\n' || c == '\r') {
            consume_newline(ps);
            continue;
        }
        if (ps->comment && c == ps->comment) {
            while (ps->p < ps->end && *ps->p != '\n' && *ps->p != '\r') ps->p++;
            if (ps->p < ps->end) consume_newline(ps);
            continue;
        }
        break;
    }
    ps->nf = 0;
    ps->scratch.len = 0;
    for (;;) {
        if (ps->nf == ps->capf) {
            size_t nc = ps->capf ? 2 * ps->capf : 64;
            field *nf = realloc(ps->f, nc * sizeof *nf);
            if (!nf) {
                em_error_set(ps->err, EM_ERR_NOMEM, "%s:%zu: out of memory", ps->name, ps->line);
                return -1;
            }
            ps->f = nf;
            ps->capf = nc;
        }
        field *fd = &ps->f[ps->nf];
        int w = want == NULL || (ps->nf < nwant && want[ps->nf]);
        fd->raw = ps->p;
        fd->line = ps->line;
        fd->col = col_of(ps, ps->p);
        fd->off = ps->scratch.len;
        const char *q = ps->p;
        while (q < ps->end && is_blank(*q)) q++;
        if (q < ps->end && *q == '"') {
            size_t open_line = ps->line, open_col = col_of(ps, q);
            q++;
            for (;;) {
                const char *run = q;
                while (q < ps->end && *q != '"' && *q != '\n' && *q != '\r') q++;
                if (w) em_buf_append(&ps->scratch, run, (size_t)(q - run));
                if (q >= ps->end) {
                    char ex[64];
                    em_error_set(ps->err, EM_ERR_PARSE,
                                 "%s:%zu:%zu: unterminated quoted field (the quote opened here is never "
                                 "closed): '%s'",
                                 ps->name, open_line, open_col, excerpt(ex, fd->raw, (size_t)(ps->end - fd->raw)));
                    return -1;
                }
                if (*q == '"') {
                    if (q + 1 < ps->end && q[1] == '"') {
                        if (w) em_buf_append(&ps->scratch, "\"", 1);
                        q += 2;
                        continue;
                    }
                    q++;
                    break;
                }
                /* a newline inside quotes is part of the field */
                if (w) em_buf_append(&ps->scratch, q, 1);
                if (*q == '\n' || !(q + 1 < ps->end && q[1] == '\n')) {
                    ps->line++;
                    ps->line_start = q + 1;
                }
                q++;
            }
            while (q < ps->end && is_blank(*q)) q++;
            if (q < ps->end && *q != ',' && *q != '\n' && *q != '\r') {
                char ex[64];
                const char *e = q;
                while (e < ps->end && *e != ',' && *e != '\n' && *e != '\r') e++;
                em_error_set(ps->err, EM_ERR_PARSE,
                             "%s:%zu:%zu: unexpected text after the closing quote of a quoted field: '%s'",
                             ps->name, ps->line, col_of(ps, q), excerpt(ex, q, (size_t)(e - q)));
                return -1;
            }
        } else {
            q = ps->p;
            while (q < ps->end && *q != ',' && *q != '\n' && *q != '\r') q++;
            if (w) em_buf_append(&ps->scratch, ps->p, (size_t)(q - ps->p));
        }
        fd->raw_len = (size_t)(q - fd->raw);
        fd->end_line = ps->line;
        fd->end_col = col_of(ps, q);
        fd->len = ps->scratch.len - fd->off;
        if (w) em_buf_append(&ps->scratch, "", 1); /* NUL-terminate (em_buf keeps one spare byte) */
        if (ps->scratch.failed) {
            em_error_set(ps->err, EM_ERR_NOMEM, "%s:%zu: out of memory", ps->name, ps->line);
            return -1;
        }
        ps->nf++;
        if (q < ps->end && *q == ',') {
            ps->p = q + 1;
            continue;
        }
        ps->p = q;
        if (q < ps->end) consume_newline(ps);
        return 1;
    }
}

/* ---- the table ---------------------------------------------------------------------------- */

typedef struct table_priv {
    char *pool; /* text column storage */
} table_priv;

void em_csv_table_free(em_csv_table *t) {
    if (!t) return;
    for (size_t j = 0; j < t->ncols; j++) {
        if (t->names) free(t->names[j]);
        if (t->cols) free(t->cols[j]);
    }
    free(t->names);
    free(t->cols);
    for (size_t k = 0; k < t->ntext; k++) {
        if (t->text_names) free(t->text_names[k]);
        if (t->text) free(t->text[k]);
    }
    free(t->text_names);
    free(t->text);
    free(t->line);
    table_priv *p = t->priv_;
    if (p) free(p->pool);
    free(p);
    free(t);
}

const double *em_csv_column(const em_csv_table *t, const char *name) {
    if (!t || !name) return NULL;
    for (size_t j = 0; j < t->ncols; j++)
        if (strcmp(t->names[j], name) == 0) return t->cols[j];
    return NULL;
}

char *const *em_csv_text_column(const em_csv_table *t, const char *name) {
    if (!t || !name) return NULL;
    for (size_t k = 0; k < t->ntext; k++)
        if (strcmp(t->text_names[k], name) == 0) return t->text[k];
    return NULL;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- header handling ---------------------------------------------------------------------- */

typedef struct header {
    size_t line; /* where the header row is */
    size_t n;
    char **names;  /* [n] */
    size_t *order; /* [n] column indices sorted by name */
} header;

typedef struct named {
    const char *name;
    size_t idx;
} named;
static int cmp_named(const void *a, const void *b) {
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

static void header_free(header *h) {
    for (size_t i = 0; h->names && i < h->n; i++) free(h->names[i]);
    free(h->names);
    free(h->order);
}

/* Index of name in the header, or -1 (binary search over the sorted order). */
static long header_find(const header *h, const char *name) {
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->names[h->order[mid]], name);
        if (c == 0) return (long)h->order[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static em_status unknown_column(const parser *ps, const header *h, const char *name) {
    char list[256];
    size_t k = 0;
    list[0] = '\0';
    for (size_t i = 0; i < h->n && i < 8; i++) {
        char ex[64];
        int m = snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                         excerpt(ex, h->names[i], strlen(h->names[i])));
        if (m < 0 || (size_t)m >= sizeof list - k) break;
        k += (size_t)m;
    }
    if (h->n > 8) snprintf(list + k, sizeof list - k, ", ... (%zu in all)", h->n);
    size_t best = (size_t)-1, bi = 0;
    for (size_t i = 0; i < h->n; i++) {
        size_t d = edit_distance(name, h->names[i]);
        if (d < best) best = d, bi = i;
    }
    size_t ln = strlen(name);
    char ex[64], ex2[64];
    if (best != (size_t)-1 && best <= (ln / 3 > 2 ? ln / 3 : 2))
        return em_error_set(ps->err, EM_ERR_ARG, "%s:%zu: no column '%s'; did you mean '%s'? (columns: %s)",
                            ps->name, h->line, excerpt(ex, name, ln), excerpt(ex2, h->names[bi], strlen(h->names[bi])),
                            list);
    return em_error_set(ps->err, EM_ERR_ARG, "%s:%zu: no column '%s' (columns: %s)", ps->name,
                        h->line, excerpt(ex, name, ln), list);
}

/* ---- the parse ---------------------------------------------------------------------------- */

typedef struct build {
    size_t cap;
    size_t *text_off; /* [ntext][cap] offsets into pool, flattened per column */
    em_buf pool;
} build;

static em_status grow(em_csv_table *t, build *b, size_t **text_off_cols) {
    size_t nc = b->cap ? 2 * b->cap : 256;
    for (size_t j = 0; j < t->ncols; j++) {
        double *d = realloc(t->cols[j], nc * sizeof *d);
        if (!d) return EM_ERR_NOMEM;
        t->cols[j] = d;
    }
    for (size_t k = 0; k < t->ntext; k++) {
        size_t *o = realloc(text_off_cols[k], nc * sizeof *o);
        if (!o) return EM_ERR_NOMEM;
        text_off_cols[k] = o;
    }
    size_t *l = realloc(t->line, nc * sizeof *l);
    if (!l) return EM_ERR_NOMEM;
    t->line = l;
    b->cap = nc;
    return EM_OK;
}

static em_status parse(parser *ps, const char *const *columns, size_t ncols, const em_csv_options *opt,
                       em_csv_table **out) {
    em_status st = EM_OK;
    header h = {0};
    em_csv_table *t = NULL;
    size_t *num_of = NULL;  /* per header column: 1 + numeric index, or 0 */
    size_t *text_of = NULL; /* per header column: 1 + text index, or 0 */
    unsigned char *want = NULL;
    size_t **toff = NULL;
    build b = {0};
    const char *const *tcols = opt->text_columns;
    size_t ntext = opt->ntext_columns;

    if (ntext && !tcols) return em_error_set(ps->err, EM_ERR_ARG, "%s: text_columns is NULL", ps->name);
    for (size_t k = 0; k < ntext; k++)
        if (!tcols[k]) return em_error_set(ps->err, EM_ERR_ARG, "%s: text_columns[%zu] is NULL", ps->name, k);
    if (columns) {
        for (size_t j = 0; j < ncols; j++)
            if (!columns[j]) return em_error_set(ps->err, EM_ERR_ARG, "%s: columns[%zu] is NULL", ps->name, j);
        if (ncols == 0 && ntext == 0) return em_error_set(ps->err, EM_ERR_ARG, "%s: no columns selected", ps->name);
    }

    /* UTF-8 byte-order mark */
    if (ps->end - ps->p >= 3 && memcmp(ps->p, "\xEF\xBB\xBF", 3) == 0) ps->p += 3, ps->line_start = ps->p;

    int r = read_record(ps, NULL, 0);
    if (r < 0) return ps->err ? ps->err->status : EM_ERR_PARSE;
    if (r == 0) return em_error_set(ps->err, EM_ERR_PARSE, "%s:%zu:1: empty file (no header row)", ps->name, ps->line);
    h.n = ps->nf;
    h.line = ps->f[0].line;
    if (opt->body_line) ps->line = opt->body_line;
    h.names = calloc(h.n, sizeof *h.names);
    h.order = malloc(h.n * sizeof *h.order);
    if (!h.names || !h.order) {
        st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
        goto done;
    }
    for (size_t i = 0; i < h.n; i++) {
        if (ps->f[i].len == 0) {
            st = em_error_set(ps->err, EM_ERR_PARSE, "%s:%zu:%zu: empty column name in the header (column %zu of %zu)",
                              ps->name, ps->f[i].line, ps->f[i].col, i + 1, h.n);
            goto done;
        }
        h.names[i] = dup_str(ps->scratch.data + ps->f[i].off);
        if (!h.names[i]) {
            st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
            goto done;
        }
        h.order[i] = i;
    }
    {
        named *tmp = malloc(h.n * sizeof *tmp);
        if (!tmp) {
            st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
            goto done;
        }
        for (size_t i = 0; i < h.n; i++) tmp[i].name = h.names[i], tmp[i].idx = i;
        qsort(tmp, h.n, sizeof *tmp, cmp_named);
        for (size_t i = 0; i < h.n; i++) h.order[i] = tmp[i].idx;
        free(tmp);
    }
    {
        /* report the duplicate whose second occurrence comes first in the file */
        size_t dup = (size_t)-1, first = 0;
        for (size_t i = 1; i < h.n; i++) {
            size_t a = h.order[i - 1], c = h.order[i];
            if (strcmp(h.names[a], h.names[c]) == 0 && (dup == (size_t)-1 || c < dup)) dup = c, first = a;
        }
        if (dup != (size_t)-1) {
            char ex[64];
            st = em_error_set(ps->err, EM_ERR_PARSE, "%s:%zu:%zu: duplicate column name '%s' (columns %zu and %zu)",
                              ps->name, ps->f[dup].line, ps->f[dup].col,
                              excerpt(ex, h.names[dup], strlen(h.names[dup])), first + 1, dup + 1);
            goto done;
        }
    }

    num_of = calloc(h.n ? h.n : 1, sizeof *num_of);
    text_of = calloc(h.n ? h.n : 1, sizeof *text_of);
    want = calloc(h.n ? h.n : 1, 1);
    t = calloc(1, sizeof *t);
    if (!num_of || !text_of || !want || !t) {
        st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
        goto done;
    }
    for (size_t k = 0; k < ntext; k++) {
        long i = header_find(&h, tcols[k]);
        if (i < 0) {
            st = unknown_column(ps, &h, tcols[k]);
            goto done;
        }
        if (text_of[i]) {
            st = em_error_set(ps->err, EM_ERR_ARG, "%s: text column '%s' selected twice", ps->name, h.names[i]);
            goto done;
        }
        text_of[i] = k + 1;
        want[i] = 1;
    }
    size_t nnum = columns ? ncols : 0;
    if (!columns)
        for (size_t i = 0; i < h.n; i++) nnum += !text_of[i];
    t->names = calloc(nnum ? nnum : 1, sizeof *t->names);
    t->cols = calloc(nnum ? nnum : 1, sizeof *t->cols);
    t->text_names = calloc(ntext ? ntext : 1, sizeof *t->text_names);
    t->text = calloc(ntext ? ntext : 1, sizeof *t->text);
    toff = calloc(ntext ? ntext : 1, sizeof *toff);
    if (!t->names || !t->cols || !t->text_names || !t->text || !toff) {
        st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
        goto done;
    }
    t->ncols = nnum;
    t->ntext = ntext;
    size_t *colidx = calloc(nnum ? nnum : 1, sizeof *colidx); /* header index of numeric column j */
    if (!colidx) {
        st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
        goto done;
    }
    size_t *tidx = calloc(ntext ? ntext : 1, sizeof *tidx);
    if (!tidx) {
        free(colidx);
        st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
        goto done;
    }
    for (size_t k = 0; k < ntext; k++) tidx[k] = (size_t)header_find(&h, tcols[k]);
    if (columns) {
        for (size_t j = 0; j < ncols; j++) {
            long i = header_find(&h, columns[j]);
            if (i < 0) {
                st = unknown_column(ps, &h, columns[j]);
                break;
            }
            if (num_of[i]) {
                st = em_error_set(ps->err, EM_ERR_ARG, "%s: column '%s' selected twice", ps->name, h.names[i]);
                break;
            }
            num_of[i] = j + 1;
            colidx[j] = (size_t)i;
        }
    } else {
        size_t j = 0;
        for (size_t i = 0; i < h.n; i++)
            if (!text_of[i]) num_of[i] = j + 1, colidx[j++] = i;
    }
    for (size_t j = 0; st == EM_OK && j < nnum; j++) {
        want[colidx[j]] = 1;
        if (!(t->names[j] = dup_str(h.names[colidx[j]]))) st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; st == EM_OK && k < ntext; k++)
        if (!(t->text_names[k] = dup_str(h.names[tidx[k]]))) st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");

    double *row = malloc((nnum ? nnum : 1) * sizeof *row);
    if (!row && st == EM_OK) st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");
    while (st == EM_OK) {
        r = read_record(ps, want, h.n);
        if (r < 0) {
            st = ps->err ? ps->err->status : EM_ERR_PARSE;
            break;
        }
        if (r == 0) break;
        const field *f = ps->f;
        if (ps->nf != h.n) {
            char ex[64];
            if (ps->nf > h.n) {
                const field *x = &f[h.n];
                st = em_error_set(ps->err, EM_ERR_PARSE,
                                  "%s:%zu:%zu: row has %zu fields but the header has %zu (first extra field: '%s')",
                                  ps->name, x->line, x->col, ps->nf, h.n, excerpt(ex, x->raw, x->raw_len));
            } else {
                const field *x = &f[ps->nf - 1];
                st = em_error_set(ps->err, EM_ERR_PARSE,
                                  "%s:%zu:%zu: row has %zu field%s but the header has %zu (no value for column '%s')",
                                  ps->name, x->end_line, x->end_col, ps->nf, ps->nf == 1 ? "" : "s", h.n,
                                  excerpt(ex, h.names[ps->nf], strlen(h.names[ps->nf])));
            }
            break;
        }
        int drop = 0;
        for (size_t j = 0; j < nnum; j++) {
            const field *x = &f[colidx[j]];
            const char *why = "is not a number";
            int k = em_number_parse(ps->scratch.data + x->off, x->len, opt->allow_nonfinite, &row[j], &why);
            char ex[64], ex2[64];
            if (k == EM_NUMBER_BAD) {
                st = em_error_set(ps->err, EM_ERR_PARSE, "%s:%zu:%zu: column '%s': '%s' %s", ps->name, x->line, x->col,
                                  excerpt(ex2, t->names[j], strlen(t->names[j])), excerpt(ex, x->raw, x->raw_len), why);
                break;
            }
            if (k == EM_NUMBER_MISSING) {
                if (opt->missing != EM_CSV_MISSING_DROP_ROW) {
                    st = em_error_set(ps->err, EM_ERR_PARSE,
                                      "%s:%zu:%zu: missing value ('%s') in column '%s' (missing-value policy is "
                                      "EM_CSV_MISSING_ERROR; EM_CSV_MISSING_DROP_ROW drops such rows)",
                                      ps->name, x->line, x->col, excerpt(ex, x->raw, x->raw_len),
                                      excerpt(ex2, t->names[j], strlen(t->names[j])));
                    break;
                }
                drop = 1; /* keep checking the other fields: a bad number is still an error */
            }
        }
        if (st != EM_OK) break;
        if (drop) {
            t->dropped++;
            continue;
        }
        if (t->nrows == b.cap && grow(t, &b, toff) != EM_OK) {
            st = em_error_set(ps->err, EM_ERR_NOMEM, "%s:%zu: out of memory", ps->name, f[0].line);
            break;
        }
        for (size_t j = 0; j < nnum; j++) t->cols[j][t->nrows] = row[j];
        for (size_t k = 0; k < ntext; k++) {
            const field *x = &f[tidx[k]];
            toff[k][t->nrows] = b.pool.len;
            em_buf_append(&b.pool, ps->scratch.data + x->off, x->len + 1);
        }
        if (b.pool.failed) {
            st = em_error_set(ps->err, EM_ERR_NOMEM, "%s: out of memory", ps->name);
            break;
        }
        t->line[t->nrows] = f[0].line;
        t->nrows++;
    }
    free(row);
    free(colidx);

    if (st == EM_OK) {
        table_priv *pv = calloc(1, sizeof *pv);
        if (!pv) st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");
        else {
            pv->pool = b.pool.data;
            b.pool.data = NULL;
            t->priv_ = pv;
        }
        for (size_t k = 0; st == EM_OK && k < ntext; k++) {
            t->text[k] = malloc((t->nrows ? t->nrows : 1) * sizeof *t->text[k]);
            if (!t->text[k]) {
                st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");
                break;
            }
            for (size_t i = 0; i < t->nrows; i++) t->text[k][i] = pv->pool + toff[k][i];
        }
        /* a table with no rows still gets non-NULL column arrays */
        for (size_t j = 0; st == EM_OK && j < nnum; j++)
            if (!t->cols[j] && !(t->cols[j] = malloc(sizeof(double)))) st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");
        if (st == EM_OK && !t->line && !(t->line = malloc(sizeof *t->line)))
            st = em_error_set(ps->err, EM_ERR_NOMEM, "out of memory");
    }
    free(tidx);

done:
    if (toff && t)
        for (size_t k = 0; k < t->ntext; k++) free(toff[k]);
    free(toff);
    em_buf_free(&b.pool);
    free(num_of);
    free(text_of);
    free(want);
    header_free(&h);
    if (st != EM_OK) {
        em_csv_table_free(t);
        return st;
    }
    *out = t;
    return EM_OK;
}

em_status em_csv_parse_buffer(const char *name, const char *buf, size_t len, const char *const *columns,
                              size_t ncols, const em_csv_options *opt, em_csv_table **out, em_error *err) {
    if (out) *out = NULL;
    if (!name) name = "<buffer>";
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_csv_parse_buffer(%s): out is NULL", name);
    if (!buf && len) return em_error_set(err, EM_ERR_ARG, "em_csv_parse_buffer(%s): buf is NULL", name);
    if (!columns && ncols) return em_error_set(err, EM_ERR_ARG, "em_csv_parse_buffer(%s): columns is NULL but ncols = %zu", name, ncols);
    em_csv_options defaults = {0};
    if (!opt) opt = &defaults;
    if (opt->missing != EM_CSV_MISSING_ERROR && opt->missing != EM_CSV_MISSING_DROP_ROW)
        return em_error_set(err, EM_ERR_ARG, "%s: unknown missing-value policy %d", name, (int)opt->missing);
    if (opt->comment == ',' || opt->comment == '"' || opt->comment == '\r' || opt->comment == '\n')
        return em_error_set(err, EM_ERR_ARG, "%s: comment character %d cannot be a delimiter, quote or line end",
                            name, (int)opt->comment);
    if (em_text_check_binary(name, buf, buf ? len : 0, err) != EM_OK) return EM_ERR_PARSE;

    /* A private error so that a caller's earlier error does not hide ours (first error wins). */
    em_error local = {0};
    parser ps = {0};
    ps.name = name;
    ps.p = buf ? buf : "";
    ps.end = ps.p + (buf ? len : 0);
    ps.line = 1;
    ps.line_start = ps.p;
    ps.comment = opt->comment;
    ps.err = &local;
    em_status st = parse(&ps, columns, ncols, opt, out);
    free(ps.f);
    em_buf_free(&ps.scratch);
    if (st != EM_OK) {
        if (local.status == EM_OK) em_error_set(&local, st, "%s: %s", name, em_status_str(st));
        em_error_set(err, local.status, "%s", local.msg);
        return local.status;
    }
    return EM_OK;
}

em_status em_csv_read(const char *path, const char *const *columns, size_t ncols, const em_csv_options *opt,
                      em_csv_table **out, em_error *err) {
    if (out) *out = NULL;
    if (!path) return em_error_set(err, EM_ERR_ARG, "em_csv_read: path is NULL");
    em_buf b = {0};
    em_status rs = em_text_read_file(path, opt ? opt->max_stream_bytes : 0, &b, err);
    if (rs != EM_OK) return rs;
    em_status st = em_csv_parse_buffer(path, b.data, b.len, columns, ncols, opt, out, err);
    em_buf_free(&b);
    return st;
}
