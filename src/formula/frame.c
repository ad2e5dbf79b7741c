/* frame.c — a data frame for formulas: every column of a CSV file, as numbers or as text.
 * See formula.h.
 *
 * A formula decides per column whether it is a number or a factor, as R's read.csv does: a
 * column whose every present value reads as a number (io.h's strict grammar) is numeric, any
 * other is text, and a text column in a formula is a factor. The file goes through the data
 * CSV reader, so its messages (file:line:column) and its rules (quotes, line ends, binary
 * data) are the same as everywhere else.
 */
#include "internal/frame_impl.h"
#include "internal/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void em_frame_free(em_frame *f) {
    if (!f) return;
    for (size_t j = 0; j < f->ncols; j++) free(f->num[j]);
    free(f->num);
    free(f->missing);
    em_csv_table_free(f->table);
    free(f->name);
    free(f);
}

size_t em_frame_num_rows(const em_frame *f) { return f ? f->nrows : 0; }

static int is_missing_text(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return n == 0 || (n == 2 && !memcmp(s, "NA", 2)) || (n == 3 && !memcmp(s, "NaN", 3));
}

em_status em_frame_parse_csv(const char *name, const char *buf, size_t len, em_frame **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_frame_parse_csv: out is NULL");
    *out = NULL;
    if (!name || (!buf && len)) return em_error_set(err, EM_ERR_ARG, "em_frame_parse_csv: no name or no buffer");
    /* the header first (every column as a number would fail on text), then every column as text */
    size_t hl = 0;
    while (hl < len && buf[hl] != '\n') hl++;
    em_csv_table *head = NULL;
    em_status s = em_csv_parse_buffer(name, buf, hl, NULL, 0, NULL, &head, err);
    if (s != EM_OK) return s;
    em_frame *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        em_csv_table_free(head);
        return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
    }
    em_csv_options o;
    memset(&o, 0, sizeof o);
    o.text_columns = (const char *const *)head->names;
    o.ntext_columns = head->ncols;
    s = em_csv_parse_buffer(name, buf, len, (const char *const *)head->names, 0, &o, &f->table, err);
    em_csv_table_free(head);
    if (s != EM_OK) {
        em_frame_free(f);
        return s;
    }
    em_csv_table *t = f->table;
    f->nrows = t->nrows;
    f->ncols = t->ntext;
    f->num = calloc(f->ncols ? f->ncols : 1, sizeof *f->num);
    f->missing = calloc(f->ncols ? f->ncols : 1, sizeof *f->missing);
    if (!f->num || !f->missing) {
        em_frame_free(f);
        return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
    }
    for (size_t j = 0; j < f->ncols; j++) {
        double *v = malloc((f->nrows ? f->nrows : 1) * sizeof *v);
        if (!v) {
            em_frame_free(f);
            return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", name);
        }
        int numeric = 1;
        size_t nmiss = 0;
        for (size_t i = 0; i < f->nrows && numeric; i++) {
            const char *cell = t->text[j][i];
            const char *why = NULL;
            int k = em_number_parse(cell, strlen(cell), 0, &v[i], &why);
            if (k == EM_NUMBER_MISSING) {
                v[i] = NAN;
                nmiss++;
            } else if (k == EM_NUMBER_BAD) {
                numeric = 0;
            }
        }
        if (numeric && nmiss == f->nrows && f->nrows) numeric = 0; /* all missing: not a number column */
        if (numeric) {
            f->num[j] = v;
        } else {
            free(v);
            nmiss = 0;
            for (size_t i = 0; i < f->nrows; i++) nmiss += (size_t)is_missing_text(t->text[j][i]);
        }
        f->missing[j] = nmiss;
    }
    *out = f;
    return EM_OK;
}

em_status em_frame_read_csv(const char *path, em_frame **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_frame_read_csv: out is NULL");
    *out = NULL;
    if (!path) return em_error_set(err, EM_ERR_ARG, "em_frame_read_csv: path is NULL");
    em_buf b = {0};
    em_status s = em_text_read_file(path, 0, &b, err);
    if (s != EM_OK) return s;
    s = em_frame_parse_csv(path, b.data ? b.data : "", b.len, out, err);
    em_buf_free(&b);
    return s;
}

long em_frame_find(const em_frame *f, const char *name) {
    for (size_t j = 0; j < f->ncols; j++)
        if (strcmp(f->table->text_names[j], name) == 0) return (long)j;
    return -1;
}

const char *em_frame_col_name(const em_frame *f, size_t j) { return f->table->text_names[j]; }

int em_frame_text_missing(const em_frame *f, size_t j, size_t i) { return is_missing_text(f->table->text[j][i]); }

const char *em_frame_text(const em_frame *f, size_t j, size_t i) { return f->table->text[j][i]; }

size_t em_frame_line(const em_frame *f, size_t i) { return f->table->line ? f->table->line[i] : i + 2; }
