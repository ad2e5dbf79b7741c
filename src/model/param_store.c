/* param_store.c — named learnable parameters, stored unconstrained in one vector. See model.h.
 *
 * File format (text, one parameter per line, values unconstrained with 17 significant digits):
 *     # ember parameter store v1
 *     <name> <transform> <lo> <hi> <len> <v1> ... <vlen>
 */
#include "internal/model_impl.h"

#include <errno.h>
#include <math.h>
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

static int transform_kind_from_name(const char *s, em_transform_kind *k) {
    for (int i = 0; i < EM_TRANSFORM_COUNT; i++)
        if (strcmp(em_transform_name((em_transform_kind)i), s) == 0) {
            *k = (em_transform_kind)i;
            return 1;
        }
    return 0;
}

em_status em_param_store_load(em_param_store *ps, const char *path, em_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return em_error_set(err, EM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    em_param_store *tmp = em_param_store_create();
    em_status s = tmp ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "out of memory");
    char name[256], kind[64];
    size_t lineno = 1;
    int c;
    /* header line */
    char head[64];
    if (s == EM_OK && (!fgets(head, sizeof head, f) || strncmp(head, "# ember parameter store v1", 26) != 0))
        s = em_error_set(err, EM_ERR_PARSE, "%s:1: not an ember parameter store file", path);
    while (s == EM_OK) {
        lineno++;
        double lo, hi;
        size_t len;
        int got = fscanf(f, "%255s %63s %lf %lf %zu", name, kind, &lo, &hi, &len);
        if (got == EOF) break;
        em_transform_kind k;
        if (got != 5 || !transform_kind_from_name(kind, &k) || len == 0 || len > (1u << 28)) {
            s = em_error_set(err, EM_ERR_PARSE, "%s:%zu: malformed parameter line", path, lineno);
            break;
        }
        double *u = malloc(len * sizeof *u);
        if (!u) {
            s = em_error_set(err, EM_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t j = 0; j < len; j++)
            if (fscanf(f, "%lf", &u[j]) != 1 || !isfinite(u[j])) {
                s = em_error_set(err, EM_ERR_PARSE, "%s:%zu: parameter '%s': value %zu is missing or not finite",
                                 path, lineno, name, j + 1);
                break;
            }
        if (s == EM_OK && em_param_store_find(tmp, name) >= 0)
            s = em_error_set(err, EM_ERR_PARSE, "%s:%zu: parameter '%s' appears twice", path, lineno, name);
        if (s == EM_OK) s = add_free(tmp, name, u, len, (em_constraint){k, lo, hi}, err);
        free(u);
        while ((c = fgetc(f)) != EOF && c != '\n') {
            if (c != ' ' && c != '\t' && c != '\r' && s == EM_OK)
                s = em_error_set(err, EM_ERR_PARSE, "%s:%zu: trailing text after parameter '%s'", path, lineno, name);
        }
    }
    fclose(f);
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
