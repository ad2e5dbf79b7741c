/* param_store.c — named learnable parameters, stored unconstrained in one vector. See model.h.
 *
 * File format (text, one parameter per line, values unconstrained with 17 significant digits):
 *     # ember parameter store v1
 *     <name> <transform> <lo> <hi> <len> <v1> ... <vlen>
 * The reader is strict: fields are separated by blanks, a parameter's values are all on its
 * line, blank lines are skipped (and counted, so messages name the right line), and every
 * number follows the one grammar of internal/text.h (no hex, no "inf" values; lo and hi may
 * be nan or ±inf, as the writer prints unused bounds).
 */
#include "internal/model_impl.h"
#include "internal/text.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct param_entry {
    char *name;
    size_t off, len;
    em_constraint c;
    em_var leaf;          /* the leaf of the current tape generation */
    const em_tape *tape;
    uint64_t generation;
} param_entry;

struct em_param_store {
    param_entry *e;
    size_t n, cap;
    double *values;
    size_t dim, vcap;
};

em_param_store *em_param_store_create(void) { return calloc(1, sizeof(em_param_store)); }

void em_param_store_clear(em_param_store *ps) {
    for (size_t i = 0; i < ps->n; i++) free(ps->e[i].name);
    ps->n = 0;
    ps->dim = 0;
}

void em_param_store_destroy(em_param_store *ps) {
    if (!ps) return;
    em_param_store_clear(ps);
    free(ps->e);
    free(ps->values);
    free(ps);
}

size_t em_param_store_count(const em_param_store *ps) { return ps->n; }
size_t em_param_store_dim(const em_param_store *ps) { return ps->dim; }
double *em_param_store_values(em_param_store *ps) { return ps->values; }
const char *em_param_store_name(const em_param_store *ps, size_t i) { return i < ps->n ? ps->e[i].name : NULL; }
size_t em_param_store_len(const em_param_store *ps, size_t i) { return i < ps->n ? ps->e[i].len : 0; }
size_t em_param_store_offset(const em_param_store *ps, size_t i) { return i < ps->n ? ps->e[i].off : 0; }
em_constraint em_param_store_constraint(const em_param_store *ps, size_t i) { return ps->e[i].c; }

long em_param_store_find(const em_param_store *ps, const char *name) {
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->e[i].name, name) == 0) return (long)i;
    return -1;
}

/* Append an entry with unconstrained values u. */
static em_status add_free(em_param_store *ps, const char *name, const double *u, size_t n, em_constraint c,
                          em_error *err) {
    if (ps->n == ps->cap) {
        size_t nc = ps->cap ? 2 * ps->cap : 8;
        param_entry *ne = realloc(ps->e, nc * sizeof *ne);
        if (!ne) return em_error_set(err, EM_ERR_NOMEM, "parameter store: out of memory");
        ps->e = ne;
        ps->cap = nc;
    }
    if (ps->dim + n > ps->vcap) {
        size_t nc = ps->vcap ? ps->vcap : 16;
        while (nc < ps->dim + n) nc *= 2;
        double *nv = realloc(ps->values, nc * sizeof *nv);
        if (!nv) return em_error_set(err, EM_ERR_NOMEM, "parameter store: out of memory");
        ps->values = nv;
        ps->vcap = nc;
    }
    char *copy = strdup(name);
    if (!copy) return em_error_set(err, EM_ERR_NOMEM, "parameter store: out of memory");
    param_entry *e = &ps->e[ps->n++];
    memset(e, 0, sizeof *e);
    e->name = copy;
    e->off = ps->dim;
    e->len = n;
    e->c = c;
    e->leaf = EM_VAR_INVALID;
    memcpy(ps->values + ps->dim, u, n * sizeof *u);
    ps->dim += n;
    return EM_OK;
}

em_status em_param_store_add(em_param_store *ps, const char *name, const double *init, size_t n,
                             em_constraint c, em_error *err) {
    if (!name || !name[0]) return em_error_set(err, EM_ERR_ARG, "parameter store: empty name");
    if (em_param_store_find(ps, name) >= 0)
        return em_error_set(err, EM_ERR_MODEL, "parameter '%s' already exists", name);
    if (em_transform_free_len(&c, n) != n)
        return em_error_set(err, EM_ERR_ARG, "parameter '%s': constraint %s changes the length; use it on a latent site",
                            name, em_transform_name(c.kind));
    double *u = malloc(n * sizeof *u);
    if (!u) return em_error_set(err, EM_ERR_NOMEM, "parameter store: out of memory");
    em_error e = {0};
    if (em_transform_inverse_d(&c, init, n, u, &e) != EM_OK) {
        free(u);
        return em_error_set(err, e.status, "parameter '%s': initial value: %s", name, e.msg);
    }
    em_status s = add_free(ps, name, u, n, c, err);
    free(u);
    return s;
}

em_status em_param_store_get(const em_param_store *ps, const char *name, double *out, size_t n, em_error *err) {
    long i = em_param_store_find(ps, name);
    if (i < 0) return em_error_set(err, EM_ERR_MODEL, "parameter store has no parameter '%s'", name);
    const param_entry *e = &ps->e[i];
    if (n != e->len)
        return em_error_set(err, EM_ERR_SHAPE, "parameter '%s' has %zu values, asked for %zu", name, e->len, n);
    return em_transform_forward_d(&e->c, ps->values + e->off, e->len, out, NULL, err);
}

em_var em_param_store_leaf(em_param_store *ps, em_tape *t, size_t i) {
    param_entry *e = &ps->e[i];
    if (e->tape == t && e->generation == em_tape_generation(t) && em_var_ok(e->leaf)) return e->leaf;
    e->leaf = em_leaf(t, ps->values + e->off, e->len);
    e->tape = t;
    e->generation = em_tape_generation(t);
    return e->leaf;
}

void em_param_store_collect_grad(const em_param_store *ps, const em_tape *t, double *grad) {
    memset(grad, 0, ps->dim * sizeof *grad);
    for (size_t i = 0; i < ps->n; i++) {
        const param_entry *e = &ps->e[i];
        if (e->tape != t || e->generation != em_tape_generation(t) || !em_var_ok(e->leaf)) continue;
        const double *g = em_adjoint(t, e->leaf);
        if (g) memcpy(grad + e->off, g, e->len * sizeof *g);
    }
}

em_status em_param_store_save(const em_param_store *ps, const char *path, em_error *err) {
    em_buf b = {0};
    em_buf_printf(&b, "# ember parameter store v1\n");
    for (size_t i = 0; i < ps->n; i++) {
        const param_entry *e = &ps->e[i];
        em_buf_printf(&b, "%s %s %.17g %.17g %zu", e->name, em_transform_name(e->c.kind), e->c.lo, e->c.hi, e->len);
        for (size_t j = 0; j < e->len; j++) em_buf_printf(&b, " %.17g", ps->values[e->off + j]);
        em_buf_printf(&b, "\n");
    }
    em_status s = b.failed ? em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", path)
                           : em_write_file_atomic(path, b.data, b.len, err);
    em_buf_free(&b);
    return s;
}

/* ---- the reader: one line per parameter, every number in the library's strict grammar ---- */

#define MAX_LEN ((size_t)1 << 28)

typedef struct line_reader {
    const char *path;
    size_t line;
    const char *start, *p, *eol; /* the current line and the scan position in it */
} line_reader;

static int is_sep(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* The next blank-separated token of the line (length 0 at its end). */
static size_t next_token(line_reader *lr, const char **tok) {
    while (lr->p < lr->eol && is_sep(*lr->p)) lr->p++;
    *tok = lr->p;
    while (lr->p < lr->eol && !is_sep(*lr->p)) lr->p++;
    return (size_t)(lr->p - *tok);
}

static size_t col_of(const line_reader *lr, const char *q) { return (size_t)(q - lr->start) + 1; }

static em_status bad(const line_reader *lr, const char *at, em_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static em_status bad(const line_reader *lr, const char *at, em_error *err, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return em_error_set(err, EM_ERR_PARSE, "%s:%zu:%zu: %s", lr->path, lr->line, col_of(lr, at), msg);
}

#define SHOWN(n) (int)((n) < 40 ? (n) : 40)

/* em_number_parse on a copy: the token may end the buffer, which need not be NUL-terminated. */
static int parse_token(const char *t, size_t n, int allow_nonfinite, double *out, const char **why) {
    char tmp[128];
    if (n >= sizeof tmp) {
        *why = "is too long for a number (over 127 characters)";
        return EM_NUMBER_BAD;
    }
    memcpy(tmp, t, n);
    tmp[n] = '\0';
    return em_number_parse(tmp, n, allow_nonfinite, out, why);
}

/* A bound (lo, hi): nan and ±inf allowed, as the writer's %.17g prints them. */
static em_status read_bound(line_reader *lr, const char *what, const char *name, double *out, em_error *err) {
    const char *t;
    size_t n = next_token(lr, &t);
    if (n == 0) return bad(lr, t, err, "parameter '%s': the line ends before %s", name, what);
    const char *why = "is not a number";
    if (parse_token(t, n, 1, out, &why) != EM_NUMBER_OK)
        return bad(lr, t, err, "parameter '%s': %s '%.*s' %s", name, what, SHOWN(n), t, why);
    return EM_OK;
}

/* One parameter line into tmp. */
static em_status read_param(line_reader *lr, em_param_store *tmp, em_error *err) {
    const char *t;
    size_t n = next_token(lr, &t);
    char name[256];
    if (n >= sizeof name) return bad(lr, t, err, "parameter name longer than %zu bytes", sizeof name - 1);
    memcpy(name, t, n);
    name[n] = '\0';
    const char *name_at = t;
    n = next_token(lr, &t);
    if (n == 0) return bad(lr, t, err, "parameter '%s': the line ends before its transform", name);
    em_transform_kind k = EM_TRANSFORM_COUNT;
    for (int i = 0; i < EM_TRANSFORM_COUNT; i++) {
        const char *tn = em_transform_name((em_transform_kind)i);
        if (strlen(tn) == n && memcmp(tn, t, n) == 0) k = (em_transform_kind)i;
    }
    if (k == EM_TRANSFORM_COUNT) return bad(lr, t, err, "parameter '%s': unknown transform '%.*s'", name, SHOWN(n), t);
    const char *kind_at = t;
    double lo, hi;
    em_status s = read_bound(lr, "lo", name, &lo, err);
    if (s == EM_OK) s = read_bound(lr, "hi", name, &hi, err);
    if (s != EM_OK) return s;
    n = next_token(lr, &t);
    size_t len = 0, i = 0;
    for (; i < n && t[i] >= '0' && t[i] <= '9' && len <= MAX_LEN; i++) len = 10 * len + (size_t)(t[i] - '0');
    if (n == 0 || i != n || len == 0 || len > MAX_LEN)
        return bad(lr, t, err, "parameter '%s': length '%.*s' is not a whole number in 1..%zu", name, SHOWN(n), t,
                   MAX_LEN);
    /* what em_param_store_add refuses, the file may not bring in either */
    em_constraint c = {k, lo, hi};
    em_error te = {0};
    if (em_transform_validate(&c, &te) != EM_OK) return bad(lr, kind_at, err, "parameter '%s': %s", name, te.msg);
    if (em_transform_free_len(&c, len) != len)
        return bad(lr, kind_at, err, "parameter '%s': the %s transform changes the length of %zu values, which a "
                   "parameter's may not", name, em_transform_name(k), len);
    /* grown as values arrive, not allocated for len up front: a short line claiming 2^28
     * values fails at its end rather than after a 2 GiB allocation */
    double *u = NULL;
    size_t cap = 0;
    for (size_t j = 0; j < len && s == EM_OK; j++) {
        n = next_token(lr, &t);
        if (n == 0) {
            s = bad(lr, t, err, "parameter '%s': the line ends after %zu of its %zu values (a parameter's values are on "
                    "its own line)", name, j, len);
            break;
        }
        if (j == cap) {
            size_t nc = cap ? (2 * cap < len ? 2 * cap : len) : (len < 16 ? len : 16);
            double *nu = realloc(u, nc * sizeof *nu);
            if (!nu) {
                s = em_error_set(err, EM_ERR_NOMEM, "%s:%zu: parameter '%s': out of memory for %zu values", lr->path,
                                 lr->line, name, nc);
                break;
            }
            u = nu;
            cap = nc;
        }
        const char *why = "is not a finite number";
        int r = parse_token(t, n, 0, &u[j], &why);
        if (r != EM_NUMBER_OK)
            s = bad(lr, t, err, "parameter '%s': value %zu '%.*s' %s", name, j + 1, SHOWN(n), t,
                    r == EM_NUMBER_MISSING ? "is missing" : why);
    }
    if (s == EM_OK && (n = next_token(lr, &t)) != 0)
        s = bad(lr, t, err, "parameter '%s': text after its %zu values: '%.*s'", name, len, SHOWN(n), t);
    if (s == EM_OK && em_param_store_find(tmp, name) >= 0)
        s = bad(lr, name_at, err, "parameter '%s' appears twice", name);
    if (s == EM_OK) s = add_free(tmp, name, u, len, c, err);
    free(u);
    return s;
}

static em_status read_store(const char *path, const char *buf, size_t len, em_param_store *tmp, em_error *err) {
    static const char head[] = "# ember parameter store v1";
    const char *p = buf ? buf : "", *end = p + (buf ? len : 0);
    line_reader lr = {.path = path};
    for (size_t line = 1; p; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        lr.line = line;
        lr.start = lr.p = p;
        lr.eol = nl ? nl : end;
        p = nl ? nl + 1 : NULL;
        if (line == 1) {
            size_t hl = sizeof head - 1, n = (size_t)(lr.eol - lr.start);
            int ok = n >= hl && memcmp(lr.start, head, hl) == 0;
            for (size_t i = hl; ok && i < n; i++) ok = is_sep(lr.start[i]);
            if (!ok)
                return em_error_set(err, EM_ERR_PARSE, "%s:1: not an ember parameter store file (the first line must "
                                    "be '%s')", path, head);
            continue;
        }
        const char *t;
        if (next_token(&lr, &t) == 0) continue; /* a blank line */
        lr.p = lr.start;
        em_status s = read_param(&lr, tmp, err);
        if (s != EM_OK) return s;
    }
    return EM_OK;
}

em_status em_param_store_load(em_param_store *ps, const char *path, em_error *err) {
    if (!ps || !path) return em_error_set(err, EM_ERR_ARG, "em_param_store_load: %s is NULL", !ps ? "ps" : "path");
    em_buf b = {0};
    em_status s = em_text_read_file(path, 0, &b, err);
    if (s != EM_OK) return s;
    s = em_param_store_load_buffer(ps, path, b.data, b.len, err);
    em_buf_free(&b);
    return s;
}

em_status em_param_store_load_buffer(em_param_store *ps, const char *name, const char *buf, size_t len, em_error *err) {
    if (!name) name = "<buffer>";
    if (!ps || (!buf && len))
        return em_error_set(err, EM_ERR_ARG, "em_param_store_load_buffer(%s): %s is NULL", name, !ps ? "ps" : "buf");
    em_status s = em_text_check_binary(name, buf, buf ? len : 0, err);
    if (s != EM_OK) return s;
    const char *path = name; /* for the messages below, shared with the file reader */
    em_param_store *tmp = em_param_store_create();
    s = tmp ? read_store(path, buf, len, tmp, err) : em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", path);
    if (s == EM_OK && ps->n > 0) {
        /* Loading into a populated store: exactly the same names and lengths. */
        for (size_t i = 0; i < ps->n && s == EM_OK; i++) {
            long j = em_param_store_find(tmp, ps->e[i].name);
            if (j < 0)
                s = em_error_set(err, EM_ERR_MODEL, "%s: parameter '%s' is missing from the file", path, ps->e[i].name);
            else if (tmp->e[j].len != ps->e[i].len)
                s = em_error_set(err, EM_ERR_SHAPE, "%s: parameter '%s' has %zu values in the file, %zu in the store",
                                 path, ps->e[i].name, tmp->e[j].len, ps->e[i].len);
        }
        for (size_t j = 0; j < tmp->n && s == EM_OK; j++)
            if (em_param_store_find(ps, tmp->e[j].name) < 0)
                s = em_error_set(err, EM_ERR_MODEL, "%s: parameter '%s' in the file is not in the store", path,
                                 tmp->e[j].name);
        for (size_t i = 0; i < ps->n && s == EM_OK; i++) {
            long j = em_param_store_find(tmp, ps->e[i].name);
            memcpy(ps->values + ps->e[i].off, tmp->values + tmp->e[j].off, ps->e[i].len * sizeof(double));
            ps->e[i].c = tmp->e[j].c;
        }
    } else if (s == EM_OK) {
        for (size_t j = 0; j < tmp->n && s == EM_OK; j++)
            s = add_free(ps, tmp->e[j].name, tmp->values + tmp->e[j].off, tmp->e[j].len, tmp->e[j].c, err);
    }
    em_param_store_destroy(tmp);
    return s;
}
