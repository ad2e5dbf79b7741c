/* design.c — a formula against a data frame: variables, terms, design matrices, groups.
 *
 * The terms are expanded as R does (Chambers & Hastie 1992, ch. 2; R's terms.formula): `a*b`
 * is a + b + a:b, `a/b` is a + a:b, `(a+b)^2` every product of up to two terms, `-` removes,
 * `0` / `-1` drop the intercept; terms are ordered by degree, then by first appearance.
 * Columns are coded as model.matrix codes them: a factor F in term T gets treatment contrasts
 * (its first level dropped) when T without F is a term of the formula (the empty term being
 * the intercept), and one indicator column per level otherwise; in an interaction the first
 * variable varies fastest. Names are model.matrix's ("TrtB", "x:TrtB"), which brms then
 * renames (em_brms_rename).
 */
#include "internal/formula_impl.h"
#include "internal/frame_impl.h"
#include "internal/posterior_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARS 64
typedef uint64_t termset;

/* A variable: one expression of the formula evaluated on every row of the frame. */
typedef struct fvar {
    char *label;
    int col;
    int is_factor;
    double *values;  /* numeric: [nrows], NaN where missing */
    size_t *codes;   /* factor: [nrows], SIZE_MAX where missing */
    size_t nlevels;
    char **levels;
} fvar;

typedef struct ctx {
    const em_formula *f;
    const em_frame *fr;
    em_error *err;
    fvar vars[MAX_VARS];
    int nvars;
    double *offset;      /* [nrows] or NULL */
    unsigned char *bad;  /* [nrows]: a used value is missing */
    size_t bad_first_row, bad_first_col_var;
    const char *bad_what;
    const em_design *ref;  /* new data: the training design whose coding is reused, else NULL */
    em_coded_var scaled[MAX_VARS]; /* training data: each scale()'s mean and sd */
    int nscaled;
} ctx;

typedef struct termlist {
    termset t[128];
    int n;
    int intercept; /* 1 unless removed */
} termlist;

static void var_free(fvar *v) {
    free(v->label);
    free(v->values);
    free(v->codes);
    for (size_t k = 0; k < v->nlevels; k++) free(v->levels[k]);
    free(v->levels);
}

void em_brms_rename(const char *name, em_buf *out) {
    for (const char *c = name; *c; c++) {
        switch (*c) {
        case ' ':
        case '(':
        case ')':
        case '[':
        case ']':
        case ',':
        case '"':
        case '\'':
        case '?': break;
        case '+': em_buf_append(out, "P", 1); break;
        case '-': em_buf_append(out, "M", 1); break;
        case '*': em_buf_append(out, "MU", 2); break;
        case '/': em_buf_append(out, "D", 1); break;
        case '^': em_buf_append(out, "E", 1); break;
        case '=': em_buf_append(out, "EQ", 2); break;
        default: em_buf_append(out, c, 1);
        }
    }
    em_buf_append(out, "", 1); /* NUL kept inside */
    out->len--;
}

/* ---- evaluating expressions on rows ---------------------------------------------------------- */

/* The training coding of the variable labelled label (a factor, or a scale() when !factor). */
static const em_coded_var *coded_find(const ctx *c, const char *label, int factor) {
    for (size_t k = 0; c->ref && label && k < c->ref->ncoded; k++)
        if (c->ref->coded[k].is_factor == factor && !strcmp(c->ref->coded[k].label, label)) return &c->ref->coded[k];
    return NULL;
}

static em_status unknown_column(ctx *c, const fnode *n) {
    em_buf b = {0};
    const char **names = malloc((c->fr->ncols ? c->fr->ncols : 1) * sizeof *names);
    for (size_t j = 0; names && j < c->fr->ncols; j++) names[j] = em_frame_col_name(c->fr, j);
    if (names) em_posterior_nearest_names(names, c->fr->ncols, n->name, &b);
    free(names);
    em_status s = em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col, "no column '%s' in %s (did you mean %s?)",
                                      n->name, c->fr->name, b.data && !b.failed ? b.data : "(no columns)");
    em_buf_free(&b);
    return s;
}

/* Evaluate an arithmetic expression on every row into out[nrows] (NaN where missing). */
static em_status eval_num(ctx *c, const fnode *n, double *out) {
    size_t N = c->fr->nrows;
    switch (n->kind) {
    case FN_NUM:
        for (size_t i = 0; i < N; i++) out[i] = n->num;
        return EM_OK;
    case FN_VAR: {
        long j = em_frame_find(c->fr, n->name);
        if (j < 0) return unknown_column(c, n);
        if (!c->fr->num[j] && c->ref && c->fr->missing[j] == N) { /* new data: a number column left empty */
            for (size_t i = 0; i < N; i++) out[i] = NAN;
            return EM_OK;
        }
        if (!c->fr->num[j])
            return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col,
                                       "column '%s' holds text (a factor); it cannot be used in arithmetic", n->name);
        memcpy(out, c->fr->num[j], N * sizeof *out);
        return EM_OK;
    }
    case FN_NEG: {
        em_status s = eval_num(c, n->a, out);
        for (size_t i = 0; s == EM_OK && i < N; i++) out[i] = -out[i];
        return s;
    }
    case FN_BIN: {
        double *r = malloc((N ? N : 1) * sizeof *r);
        if (!r) return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
        em_status s = eval_num(c, n->a, out);
        if (s == EM_OK) s = eval_num(c, n->b, r);
        for (size_t i = 0; s == EM_OK && i < N; i++) {
            double a = out[i], b = r[i];
            switch (n->op) {
            case '+': out[i] = a + b; break;
            case '-': out[i] = a - b; break;
            case '*': out[i] = a * b; break;
            case '/': out[i] = a / b; break;
            case '^': out[i] = pow(a, b); break;
            default:
                s = em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col,
                                        "'%c' is not arithmetic (inside a function, use + - * / ^)", n->op);
            }
        }
        free(r);
        return s;
    }
    case FN_CALL: {
        const char *fn = n->name;
        if (n->nargs != 1)
            return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col, "%s() takes one argument, not %d", fn,
                                       n->nargs);
        em_status s = eval_num(c, n->args[0], out);
        if (s != EM_OK) return s;
        if (!strcmp(fn, "I") || !strcmp(fn, "offset")) return EM_OK;
        if (!strcmp(fn, "log") || !strcmp(fn, "exp") || !strcmp(fn, "sqrt") || !strcmp(fn, "abs") || !strcmp(fn, "round")) {
            for (size_t i = 0; i < N; i++) {
                double x = out[i];
                if (isnan(x)) continue;
                /* round: R's round(x), to even at a tie (IEC 60559, the default rounding mode) */
                double v = !strcmp(fn, "log")    ? log(x)
                           : !strcmp(fn, "exp")  ? exp(x)
                           : !strcmp(fn, "sqrt") ? sqrt(x)
                           : !strcmp(fn, "abs")  ? fabs(x)
                                                 : nearbyint(x);
                if (!isfinite(v))
                    return em_formula_error_at(c->err, EM_ERR_DOMAIN, c->f->text, n->col,
                                               "%s() of %g (row at line %zu of %s) is not finite", fn, x,
                                               em_frame_line(c->fr, i), c->fr->name);
                out[i] = v;
            }
            return EM_OK;
        }
        if (!strcmp(fn, "scale")) {
            em_buf lb = {0};
            em_fnode_deparse(n, &lb);
            em_buf_append(&lb, "", 1);
            if (lb.failed) return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
            if (c->ref) { /* new data: the training data's mean and sd, as predict() with brms */
                const em_coded_var *cv = coded_find(c, lb.data, 0);
                em_buf_free(&lb);
                if (!cv)
                    return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col,
                                               "scale(): the training data's mean and sd are not known");
                for (size_t i = 0; i < N; i++) out[i] = (out[i] - cv->mean) / cv->sd;
                return EM_OK;
            }
            /* R's scale(): centre at the mean and divide by the sd (n - 1), over the values present */
            double m = 0, ss = 0;
            size_t k = 0;
            for (size_t i = 0; i < N; i++)
                if (!isnan(out[i])) m += out[i], k++;
            m /= (double)(k ? k : 1);
            for (size_t i = 0; i < N; i++)
                if (!isnan(out[i])) ss += (out[i] - m) * (out[i] - m);
            double sd = k > 1 ? sqrt(ss / (double)(k - 1)) : 0.0;
            if (!(sd > 0)) {
                em_buf_free(&lb);
                return em_formula_error_at(c->err, EM_ERR_DOMAIN, c->f->text, n->col, "scale() of a constant");
            }
            for (size_t i = 0; i < N; i++) out[i] = (out[i] - m) / sd;
            if (c->nscaled < MAX_VARS) c->scaled[c->nscaled++] = (em_coded_var){.label = lb.data, .mean = m, .sd = sd};
            else em_buf_free(&lb);
            return EM_OK;
        }
        return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col,
                                   "unknown function '%s' (known: log, exp, sqrt, abs, round, scale, I, factor, offset)", fn);
    }
    case FN_GROUP:
        return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col, "a group-level term inside an expression");
    }
    return EM_ERR_ARG;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* New data's factor: the training levels in their order, each row's code among them (a value
 * the training data did not have is an error naming the place). Text from text[i] (NULL: the
 * numbers, spelled as the training levels were). */
static em_status factor_from_training(ctx *c, fvar *v, const em_coded_var *cv, const char *const *text,
                                      const double *num) {
    size_t N = c->fr->nrows;
    v->codes = malloc((N ? N : 1) * sizeof *v->codes);
    v->levels = calloc(cv->nlevels, sizeof *v->levels);
    if (!v->codes || !v->levels) return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
    v->nlevels = cv->nlevels;
    v->is_factor = 1;
    for (size_t k = 0; k < cv->nlevels; k++)
        if (!(v->levels[k] = strdup(cv->levels[k]))) return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
    for (size_t i = 0; i < N; i++) {
        char buf[40];
        const char *s = buf;
        v->codes[i] = SIZE_MAX;
        if (text) {
            const char *t = s = text[i];
            while (*t == ' ') t++;
            if (!*t || !strcmp(t, "NA")) continue;
        } else {
            if (isnan(num[i])) continue;
            snprintf(buf, sizeof buf, "%.15g", num[i] + 0.0); /* the training levels' spelling */
        }
        for (size_t k = 0; k < cv->nlevels && v->codes[i] == SIZE_MAX; k++)
            if (!strcmp(cv->levels[k], s)) v->codes[i] = k;
        if (v->codes[i] == SIZE_MAX) {
            em_buf lv = {0};
            for (size_t k = 0; k < cv->nlevels && k < 12; k++) em_buf_printf(&lv, "%s'%s'", k ? ", " : "", cv->levels[k]);
            if (cv->nlevels > 12) em_buf_printf(&lv, ", ...");
            em_status st = em_error_set(c->err, EM_ERR_ARG,
                                        "%s:%zu: '%s' = '%s' is not a level of the factor in the training data "
                                        "(levels: %s)", c->fr->name, em_frame_line(c->fr, i), v->label, s,
                                        lv.data && !lv.failed ? lv.data : "?");
            em_buf_free(&lv);
            return st;
        }
    }
    return EM_OK;
}

/* A factor's levels in R's order (sorted: numbers numerically, text by bytes as in the C
 * locale) and each row's code. Text from text[i] (NULL: use the numbers). For new data, a
 * variable that was a factor in training takes the training coding instead. */
static em_status make_factor(ctx *c, fvar *v, const char *const *text, const double *num) {
    const em_coded_var *cv = coded_find(c, v->label, 1);
    if (cv) return factor_from_training(c, v, cv, text, num);
    size_t N = c->fr->nrows, nl = 0;
    char **lv = malloc((N ? N : 1) * sizeof *lv);
    v->codes = malloc((N ? N : 1) * sizeof *v->codes);
    if (!lv || !v->codes) {
        free(lv);
        return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
    }
    if (text) {
        for (size_t i = 0; i < N; i++) lv[nl++] = (char *)text[i];
        qsort(lv, nl, sizeof *lv, cmp_str);
    } else {
        double *u = malloc((N ? N : 1) * sizeof *u);
        if (!u) {
            free(lv);
            return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
        }
        size_t k = 0;
        for (size_t i = 0; i < N; i++)
            if (!isnan(num[i])) u[k++] = num[i];
        qsort(u, k, sizeof *u, cmp_dbl);
        size_t m = 0;
        for (size_t i = 0; i < k; i++)
            if (i == 0 || u[i] != u[i - 1]) u[m++] = u[i];
        v->levels = malloc((m ? m : 1) * sizeof *v->levels);
        for (size_t i = 0; v->levels && i < m; i++) {
            char s[40];
            snprintf(s, sizeof s, "%.15g", u[i] + 0.0); /* -0 reads "0", as R's as.character */
            v->levels[i] = strdup(s);
        }
        v->nlevels = v->levels ? m : 0;
        for (size_t i = 0; i < N; i++) {
            v->codes[i] = SIZE_MAX;
            if (isnan(num[i])) continue;
            double *hit = bsearch(&num[i], u, m, sizeof *u, cmp_dbl);
            v->codes[i] = (size_t)(hit - u);
        }
        free(u);
        free(lv);
        v->is_factor = 1;
        return EM_OK;
    }
    /* distinct text levels, missing ones left out */
    size_t m = 0;
    for (size_t i = 0; i < nl; i++) {
        const char *s = lv[i];
        const char *t = s;
        while (*t == ' ') t++;
        if (!*t || !strcmp(t, "NA")) continue;
        if (m == 0 || strcmp(lv[m - 1], s) != 0) lv[m++] = lv[i];
    }
    v->levels = malloc((m ? m : 1) * sizeof *v->levels);
    for (size_t i = 0; v->levels && i < m; i++) v->levels[i] = strdup(lv[i]);
    v->nlevels = v->levels ? m : 0;
    for (size_t i = 0; i < N; i++) {
        const char *s = text[i], *t = s;
        while (*t == ' ') t++;
        if (!*t || !strcmp(t, "NA")) {
            v->codes[i] = SIZE_MAX;
            continue;
        }
        char **hit = bsearch(&s, v->levels, v->nlevels, sizeof *v->levels, cmp_str);
        v->codes[i] = hit ? (size_t)(hit - v->levels) : SIZE_MAX;
    }
    free(lv);
    v->is_factor = 1;
    return EM_OK;
}

/* The variable of expression n (registered once per label); its index, or -1 on error. */
static int add_var(ctx *c, const fnode *n) {
    em_buf lb = {0};
    em_fnode_deparse(n, &lb);
    em_buf_append(&lb, "", 1);
    if (lb.failed) {
        em_buf_free(&lb);
        em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
        return -1;
    }
    for (int k = 0; k < c->nvars; k++)
        if (!strcmp(c->vars[k].label, lb.data)) {
            em_buf_free(&lb);
            return k;
        }
    if (c->nvars == MAX_VARS) {
        em_buf_free(&lb);
        em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col, "more than %d variables", MAX_VARS);
        return -1;
    }
    fvar *v = &c->vars[c->nvars];
    memset(v, 0, sizeof *v);
    v->label = lb.data;
    v->col = n->col;
    size_t N = c->fr->nrows;
    em_status s = EM_OK;
    if (n->kind == FN_VAR) {
        long j = em_frame_find(c->fr, n->name);
        if (j < 0) s = unknown_column(c, n);
        else if (coded_find(c, v->label, 1) || (!c->fr->num[j] && !(c->ref && c->fr->missing[j] == N)))
            /* a factor in training stays one; an empty column of new data is a number column */
            s = make_factor(c, v, (const char *const *)c->fr->table->text[j], NULL);
    } else if (n->kind == FN_CALL && !strcmp(n->name, "factor")) {
        if (n->nargs != 1) {
            s = em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col, "factor() takes one argument");
        } else if (n->args[0]->kind == FN_VAR && em_frame_find(c->fr, n->args[0]->name) >= 0 &&
                   !c->fr->num[em_frame_find(c->fr, n->args[0]->name)]) {
            long j = em_frame_find(c->fr, n->args[0]->name);
            s = make_factor(c, v, (const char *const *)c->fr->table->text[j], NULL);
        } else {
            double *x = malloc((N ? N : 1) * sizeof *x);
            s = x ? eval_num(c, n->args[0], x) : em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
            if (s == EM_OK) s = make_factor(c, v, NULL, x);
            free(x);
        }
    }
    if (s == EM_OK && !v->is_factor) {
        v->values = malloc((N ? N : 1) * sizeof *v->values);
        s = v->values ? eval_num(c, n, v->values) : em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
    }
    if (s == EM_OK && v->is_factor && v->nlevels == 0)
        s = em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col, "factor '%s' has no levels (every value missing)",
                                v->label);
    if (s != EM_OK) {
        var_free(v);
        return -1;
    }
    return c->nvars++;
}

/* ---- term expansion ------------------------------------------------------------------------------ */

static int popcount(termset t) { return __builtin_popcountll(t); }

static void tl_add(termlist *l, termset t) {
    if (!t) return;
    for (int i = 0; i < l->n; i++)
        if (l->t[i] == t) return;
    if (l->n < 128) l->t[l->n++] = t;
}

static void tl_remove(termlist *l, termset t) {
    for (int i = 0; i < l->n; i++)
        if (l->t[i] == t) {
            memmove(l->t + i, l->t + i + 1, (size_t)(l->n - i - 1) * sizeof *l->t);
            l->n--;
            return;
        }
}

static em_status expand(ctx *c, const fnode *n, termlist *out, fnode **groups, int *ngroups, fnode **offsets,
                        int *noffsets);

static em_status expand_bin(ctx *c, const fnode *n, termlist *out, fnode **groups, int *ngroups, fnode **offsets,
                            int *noffsets) {
    termlist a = {.intercept = 1}, b = {.intercept = 1};
    em_status s = expand(c, n->a, &a, groups, ngroups, offsets, noffsets);
    if (s != EM_OK) return s;
    if (n->op == '-') {
        /* x - 1, x - 0: the intercept; x - z: the terms of z */
        if (n->b->kind == FN_NUM) {
            *out = a;
            if (n->b->num == 1) out->intercept = 0;
            else if (n->b->num == 0) out->intercept = 1;
            else return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->b->col, "only 0 or 1 can be removed");
            return EM_OK;
        }
        s = expand(c, n->b, &b, groups, ngroups, offsets, noffsets);
        if (s != EM_OK) return s;
        *out = a;
        for (int i = 0; i < b.n; i++) tl_remove(out, b.t[i]);
        return EM_OK;
    }
    if (n->op == '^') {
        if (n->b->kind != FN_NUM || n->b->num < 1 || n->b->num != floor(n->b->num))
            return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->b->col,
                                       "the power of terms must be a positive whole number (use I(x^2) for a square)");
        *out = a;
        termlist cur = a;
        /* After a.n - 1 products every union of a's terms is there, so a larger power (R takes
         * any) adds nothing: capping the count at a.n is exact, and keeps a power such as 1e300
         * from overflowing the int (the formula fuzzer's second find) or looping for ever. */
        int steps = n->b->num < (double)a.n ? (int)n->b->num : a.n;
        for (int k = 1; k < steps; k++) {
            termlist nx = cur;
            for (int i = 0; i < cur.n; i++)
                for (int j = 0; j < a.n; j++) tl_add(&nx, cur.t[i] | a.t[j]);
            cur = nx;
        }
        out->n = 0;
        for (int i = 0; i < cur.n; i++) tl_add(out, cur.t[i]);
        return EM_OK;
    }
    s = expand(c, n->b, &b, groups, ngroups, offsets, noffsets);
    if (s != EM_OK) return s;
    *out = (termlist){.intercept = a.intercept && b.intercept};
    switch (n->op) {
    case '+':
        for (int i = 0; i < a.n; i++) tl_add(out, a.t[i]);
        for (int i = 0; i < b.n; i++) tl_add(out, b.t[i]);
        return EM_OK;
    case ':':
        out->intercept = 1;
        for (int i = 0; i < a.n; i++)
            for (int j = 0; j < b.n; j++) tl_add(out, a.t[i] | b.t[j]);
        return EM_OK;
    case '*':
        for (int i = 0; i < a.n; i++) tl_add(out, a.t[i]);
        for (int i = 0; i < b.n; i++) tl_add(out, b.t[i]);
        for (int i = 0; i < a.n; i++)
            for (int j = 0; j < b.n; j++) tl_add(out, a.t[i] | b.t[j]);
        return EM_OK;
    case '/': {
        termset all = 0;
        for (int i = 0; i < a.n; i++) all |= a.t[i];
        for (int i = 0; i < a.n; i++) tl_add(out, a.t[i]);
        for (int j = 0; j < b.n; j++) tl_add(out, all | b.t[j]);
        return EM_OK;
    }
    default: return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col, "unknown operator '%c'", n->op);
    }
}

static em_status expand_var(ctx *c, const fnode *n, termlist *out) {
    int k = add_var(c, n);
    if (k < 0) return c->err && c->err->status ? c->err->status : EM_ERR_ARG;
    tl_add(out, (termset)1 << k);
    return EM_OK;
}

static em_status expand(ctx *c, const fnode *n, termlist *out, fnode **groups, int *ngroups, fnode **offsets,
                        int *noffsets) {
    *out = (termlist){.intercept = 1};
    switch (n->kind) {
    case FN_NUM:
        if (n->num == 1) return EM_OK;
        if (n->num == 0) {
            out->intercept = 0;
            return EM_OK;
        }
        return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col,
                                   "a number as a term (only 1 or 0; use I(%g) for a constant)", n->num);
    case FN_NEG:
        if (n->a->kind == FN_NUM && n->a->num == 1) {
            out->intercept = 0;
            return EM_OK;
        }
        return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col, "only -1 can stand alone with a minus");
    case FN_GROUP:
        if (!groups) return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col, "a group-level term inside a group-level term");
        if (*ngroups < 32) groups[(*ngroups)++] = (fnode *)n;
        return EM_OK;
    case FN_CALL:
        if (!strcmp(n->name, "offset")) {
            if (!offsets) return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, n->col, "offset() in a group-level term");
            if (n->nargs != 1) return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, n->col, "offset() takes one argument");
            if (*noffsets < 16) offsets[(*noffsets)++] = (fnode *)n;
            return EM_OK;
        }
        return expand_var(c, n, out);
    case FN_VAR: return expand_var(c, n, out);
    case FN_BIN: return expand_bin(c, n, out, groups, ngroups, offsets, noffsets);
    }
    return EM_ERR_ARG;
}

/* R's order: by degree, stable within a degree (appearance). */
static void order_terms(termlist *l) {
    for (int i = 1; i < l->n; i++)
        for (int j = i; j > 0 && popcount(l->t[j]) < popcount(l->t[j - 1]); j--) {
            termset t = l->t[j];
            l->t[j] = l->t[j - 1];
            l->t[j - 1] = t;
        }
}

/* ---- columns ------------------------------------------------------------------------------------- */

typedef struct colset {
    size_t n;        /* columns */
    char **names;
    double **v;      /* [n][nrows of the frame] */
} colset;

static void colset_free(colset *cs) {
    for (size_t j = 0; j < cs->n; j++) {
        free(cs->names[j]);
        free(cs->v[j]);
    }
    free(cs->names);
    free(cs->v);
    memset(cs, 0, sizeof *cs);
}

static int term_in(const termlist *l, termset t) {
    if (!t) return l->intercept;
    for (int i = 0; i < l->n; i++)
        if (l->t[i] == t) return 1;
    return 0;
}

/* The model matrix columns of the terms in l (without the intercept column). */
static em_status build_columns(ctx *c, const termlist *l, colset *cs) {
    size_t N = c->fr->nrows;
    memset(cs, 0, sizeof *cs);
    for (int ti = 0; ti < l->n; ti++) {
        termset t = l->t[ti];
        /* per variable of the term: its columns (1 for a number, levels or levels - 1 for a factor) */
        int vs[MAX_VARS], nv = 0;
        size_t ncol[MAX_VARS], first[MAX_VARS], total = 1;
        for (int k = 0; k < c->nvars; k++)
            if (t >> k & 1) {
                vs[nv] = k;
                const fvar *v = &c->vars[k];
                if (v->is_factor) {
                    int contrasts = term_in(l, t & ~((termset)1 << k));
                    if (contrasts && v->nlevels < 2)
                        return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, v->col,
                                                   "factor '%s' has one level ('%s'): there is nothing to contrast it with",
                                                   v->label, v->levels[0]);
                    first[nv] = contrasts ? 1 : 0;
                    ncol[nv] = v->nlevels - first[nv];
                } else {
                    first[nv] = 0;
                    ncol[nv] = 1;
                }
                total *= ncol[nv];
                nv++;
            }
        char **nn = realloc(cs->names, (cs->n + total) * sizeof *nn);
        if (nn) cs->names = nn;
        double **nvv = nn ? realloc(cs->v, (cs->n + total) * sizeof *nvv) : NULL;
        if (!nn || !nvv) return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
        cs->v = nvv;
        for (size_t q = 0; q < total; q++) {
            /* column q: the first variable varies fastest */
            size_t rem = q, lev[MAX_VARS];
            for (int a = 0; a < nv; a++) {
                lev[a] = rem % ncol[a] + first[a];
                rem /= ncol[a];
            }
            em_buf name = {0};
            double *col = malloc((N ? N : 1) * sizeof *col);
            for (int a = 0; a < nv; a++) {
                const fvar *v = &c->vars[vs[a]];
                if (a) em_buf_append(&name, ":", 1);
                em_buf_append(&name, v->label, strlen(v->label));
                if (v->is_factor) em_buf_append(&name, v->levels[lev[a]], strlen(v->levels[lev[a]]));
            }
            em_buf_append(&name, "", 1);
            if (!col || name.failed) {
                free(col);
                em_buf_free(&name);
                return em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
            }
            for (size_t i = 0; i < N; i++) {
                double x = 1.0;
                for (int a = 0; a < nv; a++) {
                    const fvar *v = &c->vars[vs[a]];
                    if (v->is_factor) x *= v->codes[i] == SIZE_MAX ? NAN : (double)(v->codes[i] == lev[a]);
                    else x *= v->values[i];
                }
                col[i] = x;
            }
            cs->names[cs->n] = name.data;
            cs->v[cs->n] = col;
            cs->n++;
        }
    }
    return EM_OK;
}

/* ---- the design -------------------------------------------------------------------------------- */

void em_design_free(em_design *d) {
    if (!d) return;
    free(d->rows);
    free(d->y);
    free(d->trials);
    free(d->weights);
    free(d->offset);
    free(d->cens);
    free(d->cens_upper);
    free(d->lb);
    free(d->ub);
    for (size_t j = 0; j < d->P; j++) free(d->names ? d->names[j] : NULL);
    free(d->names);
    free(d->X);
    free(d->Xc);
    free(d->means);
    for (size_t g = 0; g < d->ngroups; g++) {
        em_group_term *gt = &d->groups[g];
        free(gt->group);
        for (size_t j = 0; j < gt->J; j++) free(gt->levels[j]);
        free(gt->levels);
        free(gt->index);
        for (size_t k = 0; gt->names && k < gt->K; k++) free(gt->names[k]); /* NULL when an error came first */
        free(gt->names);
        free(gt->Z);
    }
    free(d->groups);
    free(d->response_name);
    for (size_t k = 0; k < d->ncoded; k++) {
        free(d->coded[k].label);
        for (size_t j = 0; j < d->coded[k].nlevels; j++) free(d->coded[k].levels[j]);
        free(d->coded[k].levels);
    }
    free(d->coded);
    memset(d, 0, sizeof *d);
}

/* Mark rows where v is missing; remember the first for the message. */
static void mark_missing(ctx *c, const double *v, const char *what) {
    for (size_t i = 0; i < c->fr->nrows; i++)
        if (isnan(v[i]) && !c->bad[i]) {
            c->bad[i] = 1;
            if (!c->bad_what) {
                c->bad_what = what;
                c->bad_first_row = i;
            }
        }
}

/* The grouping factor of a group term: a variable, a:b (levels joined by '_', as brms does). */
static em_status group_factor(ctx *c, const fnode *g, em_group_term *gt, size_t **codes) {
    size_t N = c->fr->nrows;
    const fnode *parts[8];
    int np = 0;
    const fnode *stack[8];
    int ns = 0;
    stack[ns++] = g;
    while (ns) {
        const fnode *x = stack[--ns];
        if (x->kind == FN_BIN && x->op == ':' && ns < 7) {
            stack[ns++] = x->b;
            stack[ns++] = x->a;
        } else if (x->kind == FN_VAR && np < 8) {
            parts[np++] = x;
        } else {
            return em_formula_error_at(c->err, EM_ERR_PARSE, c->f->text, x->col,
                                       "a grouping factor is a column or columns joined by ':' (or a/b for nesting)");
        }
    }
    fvar tmp[8];
    memset(tmp, 0, sizeof tmp);
    em_status s = EM_OK;
    for (int p = 0; p < np && s == EM_OK; p++) {
        long j = em_frame_find(c->fr, parts[p]->name);
        if (j < 0) s = unknown_column(c, parts[p]);
        else if (c->fr->num[j]) s = make_factor(c, &tmp[p], NULL, c->fr->num[j]);
        else s = make_factor(c, &tmp[p], (const char *const *)c->fr->table->text[j], NULL);
    }
    /* combined labels per row, then a factor of those */
    char **lab = s == EM_OK ? calloc(N ? N : 1, sizeof *lab) : NULL;
    if (s == EM_OK && !lab) s = em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
    em_buf gname = {0};
    for (int p = 0; p < np; p++) {
        if (p) em_buf_append(&gname, ":", 1);
        em_buf_append(&gname, parts[p]->name, strlen(parts[p]->name));
    }
    em_buf_append(&gname, "", 1);
    for (size_t i = 0; s == EM_OK && i < N; i++) {
        em_buf b = {0};
        int miss = 0;
        for (int p = 0; p < np; p++) {
            if (tmp[p].codes[i] == SIZE_MAX) miss = 1;
            else {
                if (p) em_buf_append(&b, "_", 1);
                const char *l = tmp[p].levels[tmp[p].codes[i]];
                em_buf_append(&b, l, strlen(l));
            }
        }
        em_buf_append(&b, "", 1);
        if (miss) {
            em_buf_free(&b);
            lab[i] = strdup("NA");
        } else lab[i] = b.data;
        if (!lab[i]) s = em_error_set(c->err, EM_ERR_NOMEM, "formula: out of memory");
    }
    fvar comb;
    memset(&comb, 0, sizeof comb);
    if (s == EM_OK) s = make_factor(c, &comb, (const char *const *)lab, NULL);
    if (s == EM_OK) {
        gt->group = gname.data;
        gname.data = NULL;
        gt->J = comb.nlevels;
        gt->levels = comb.levels;
        comb.levels = NULL;
        comb.nlevels = 0;
        *codes = comb.codes;
        comb.codes = NULL;
    }
    em_buf_free(&gname);
    var_free(&comb);
    for (int p = 0; p < np; p++) var_free(&tmp[p]);
    for (size_t i = 0; lab && i < N; i++) free(lab[i]);
    free(lab);
    return s;
}

static int support_ok(em_family fam, double y, double trials, const char **why) {
    switch (fam) {
    case EM_FAMILY_BERNOULLI:
        *why = "a bernoulli response is 0 or 1";
        return y == 0 || y == 1;
    case EM_FAMILY_BINOMIAL:
        *why = "a binomial response is a whole number from 0 to its trials";
        return y >= 0 && y == floor(y) && y <= trials;
    case EM_FAMILY_POISSON:
    case EM_FAMILY_NEGBINOMIAL:
    case EM_FAMILY_ZERO_INFLATED_POISSON:
    case EM_FAMILY_ZERO_INFLATED_NEGBINOMIAL:
    case EM_FAMILY_HURDLE_POISSON:
    case EM_FAMILY_HURDLE_NEGBINOMIAL:
        *why = "a count is a non-negative whole number";
        return y >= 0 && y == floor(y) && y < 9.007199254740992e15;
    case EM_FAMILY_GAMMA:
    case EM_FAMILY_LOGNORMAL:
    case EM_FAMILY_WEIBULL:
        *why = "the response must be positive";
        return y > 0 && isfinite(y);
    case EM_FAMILY_BETA:
        *why = "a beta response lies strictly between 0 and 1";
        return y > 0 && y < 1;
    case EM_FAMILY_CUMULATIVE:
        *why = "an ordinal response is a category 1, 2, ..., K";
        return y >= 1 && y == floor(y) && y <= 1e6;
    default: *why = "the response must be finite"; return isfinite(y);
    }
}

/* cens(c): a column of "left" / "none" / "right" / "interval" (or TRUE / FALSE, TRUE meaning
 * right, as brms reads a logical), or numbers -1 / 0 / 1 / 2, into out[nrows] (NaN where missing). */
static em_status eval_cens(ctx *c, const fnode *n, double *out) {
    size_t N = c->fr->nrows;
    long j = n->kind == FN_VAR ? em_frame_find(c->fr, n->name) : -1;
    if (j >= 0 && !c->fr->num[j]) {
        static const char *const words[] = {"left", "none", "right", "interval", "FALSE", "TRUE"};
        static const double codes[] = {-1, 0, 1, 2, 0, 1};
        for (size_t i = 0; i < N; i++) {
            if (em_frame_text_missing(c->fr, (size_t)j, i)) {
                out[i] = NAN;
                continue;
            }
            const char *v = em_frame_text(c->fr, (size_t)j, i);
            int k = 0;
            while (k < 6 && strcmp(v, words[k])) k++;
            if (k == 6)
                return em_error_set(c->err, EM_ERR_DOMAIN, "%s:%zu: cens(%s) = '%s' is not left, none, right or interval",
                                    c->fr->name, em_frame_line(c->fr, i), n->name, v);
            out[i] = codes[k];
        }
        return EM_OK;
    }
    em_status s = eval_num(c, n, out);
    for (size_t i = 0; s == EM_OK && i < N; i++)
        if (!isnan(out[i]) && out[i] != -1 && out[i] != 0 && out[i] != 1 && out[i] != 2)
            s = em_error_set(c->err, EM_ERR_DOMAIN, "%s:%zu: cens() = %g is not -1 (left), 0 (none), 1 (right) or 2 (interval)",
                             c->fr->name, em_frame_line(c->fr, i), out[i]);
    return s;
}

/* trunc(lb = , ub = ) or trunc(lb, ub): each bound a constant or an expression of columns. */
static em_status eval_trunc(ctx *c, const fnode *ad, double *lb, double *ub) {
    size_t N = c->fr->nrows;
    for (size_t i = 0; i < N; i++) lb[i] = -INFINITY, ub[i] = INFINITY;
    int have[2] = {0, 0};
    for (int k = 0; k < ad->nargs; k++) {
        const fnode *a = ad->args[k];
        int which = k;
        if (a->kind == FN_BIN && a->op == '=') {
            if (!strcmp(a->a->name, "lb")) which = 0;
            else if (!strcmp(a->a->name, "ub")) which = 1;
            else return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, a->a->col, "trunc() takes lb and ub, not '%s'",
                                            a->a->name);
            a = a->b;
        }
        if (which > 1 || have[which])
            return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, a->col, "trunc() takes one lb and one ub");
        have[which] = 1;
        em_status s = eval_num(c, a, which ? ub : lb);
        if (s != EM_OK) return s;
        mark_missing(c, which ? ub : lb, which ? "trunc(ub)" : "trunc(lb)");
    }
    if (!have[0] && !have[1])
        return em_formula_error_at(c->err, EM_ERR_ARG, c->f->text, ad->col, "trunc() needs lb, ub or both");
    return EM_OK;
}

/* The design of f on fr; ref is NULL for training data, else the training design (new data). */
static em_status build(const em_formula *f, const em_frame *fr, em_family fam, int drop_missing, const em_design *ref,
                       em_design *out, em_error *err) {
    memset(out, 0, sizeof *out);
    size_t N = fr->nrows;
    if (N == 0) return em_error_set(err, EM_ERR_ARG, "%s: no data rows", fr->name);
    ctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    c.fr = fr;
    c.err = err;
    c.ref = ref;
    c.bad = calloc(N, 1);
    double *y = malloc(N * sizeof *y), *trials = NULL, *weights = NULL;
    em_status s = c.bad && y ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    termlist terms = {.intercept = 1};
    fnode *groups[32], *offsets[16];
    int ngroups = 0, noffsets = 0;
    colset pop = {0};
    colset *gcols = NULL;
    termlist *gterms = NULL;
    size_t **gcodes = NULL;
    /* the response and its addition terms */
    if (s == EM_OK) {
        em_buf rn = {0};
        em_fnode_deparse(f->response, &rn);
        em_buf_append(&rn, "", 1);
        out->response_name = rn.data;
        if (ref) {
            /* new data: the response is predicted, not read */
        } else if (f->response->kind == FN_VAR && em_frame_find(fr, f->response->name) >= 0 &&
            !fr->num[em_frame_find(fr, f->response->name)])
            s = em_formula_error_at(err, EM_ERR_ARG, f->text, f->response->col,
                                    "the response '%s' holds text, not numbers", f->response->name);
        else s = eval_num(&c, f->response, y);
        if (s == EM_OK && !ref) mark_missing(&c, y, "the response");
    }
    double *cens = NULL, *cens_up = NULL, *lb = NULL, *ub = NULL;
    for (int a = 0; s == EM_OK && a < f->naddition; a++) {
        const fnode *ad = f->addition[a];
        if (ad->kind != FN_CALL) {
            s = em_formula_error_at(err, EM_ERR_PARSE, f->text, ad->col,
                                    "after '|' on the response: trials(n), weights(w), cens(c), cens(c, y2) or "
                                    "trunc(lb = , ub = )");
        } else if ((!strcmp(ad->name, "cens") || !strcmp(ad->name, "trunc")) && !em_family_info_of(fam)->continuous) {
            s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col,
                                    "%s() needs a continuous family (gaussian, student, lognormal, gamma, weibull, beta), "
                                    "not %s", ad->name, em_family_name(fam));
        } else if (!strcmp(ad->name, "trials")) {
            if (ad->nargs != 1)
                s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col, "trials() takes one argument");
            else if (fam != EM_FAMILY_BINOMIAL)
                s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col, "trials() is for the binomial family, not %s",
                                        em_family_name(fam));
            else if (!(trials = malloc(N * sizeof *trials))) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            else if ((s = eval_num(&c, ad->args[0], trials)) == EM_OK) mark_missing(&c, trials, "trials()");
        } else if (ref && (!strcmp(ad->name, "cens") || !strcmp(ad->name, "weights") || !strcmp(ad->name, "trunc"))) {
            continue; /* new data: censoring, weights and truncation bounds do not change a prediction */
        } else if (!strcmp(ad->name, "cens")) {
            if (ad->nargs < 1 || ad->nargs > 2 || cens)
                s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col, "cens() takes the censoring column and, for "
                                                                          "interval censoring, the upper ends: cens(c, y2)");
            else if (!(cens = malloc(N * sizeof *cens)) || (ad->nargs == 2 && !(cens_up = malloc(N * sizeof *cens_up))))
                s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            else if ((s = eval_cens(&c, ad->args[0], cens)) == EM_OK) {
                mark_missing(&c, cens, "cens()");
                if (cens_up && (s = eval_num(&c, ad->args[1], cens_up)) == EM_OK) {
                    /* y2 matters on the interval-censored rows only (brms reads no other) */
                    for (size_t i = 0; i < N; i++)
                        if (cens[i] != 2) cens_up[i] = 0;
                    mark_missing(&c, cens_up, "cens(, y2)");
                }
            }
        } else if (!strcmp(ad->name, "weights")) {
            if (ad->nargs != 1 || weights)
                s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col, "weights() takes one column, once");
            else if (!(weights = malloc(N * sizeof *weights))) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            else if ((s = eval_num(&c, ad->args[0], weights)) == EM_OK) mark_missing(&c, weights, "weights()");
        } else if (!strcmp(ad->name, "trunc")) {
            if (lb) s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col, "trunc() twice");
            else if (!(lb = malloc(N * sizeof *lb)) || !(ub = malloc(N * sizeof *ub)))
                s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            else s = eval_trunc(&c, ad, lb, ub);
        } else {
            s = em_formula_error_at(err, EM_ERR_ARG, f->text, ad->col,
                                    "'%s()' on the response is not supported (trials(), weights(), cens() and trunc() "
                                    "are)", ad->name);
        }
    }
    if (s == EM_OK && cens && lb)
        s = em_formula_error_at(err, EM_ERR_ARG, f->text, f->response->col,
                                "cens() and trunc() together are not supported yet: use one of them");
    if (s == EM_OK && fam == EM_FAMILY_BINOMIAL && !trials)
        s = em_formula_error_at(err, EM_ERR_ARG, f->text, f->response->col,
                                "the binomial family needs the trials: write '%s | trials(n) ~ ...'", out->response_name);
    /* population-level terms, group-level terms and offsets */
    if (s == EM_OK) s = expand(&c, f->rhs, &terms, groups, &ngroups, offsets, &noffsets);
    if (s == EM_OK) {
        order_terms(&terms);
        s = build_columns(&c, &terms, &pop);
    }
    for (size_t j = 0; s == EM_OK && j < pop.n; j++) mark_missing(&c, pop.v[j], pop.names[j]);
    if (s == EM_OK && noffsets) {
        c.offset = calloc(N, sizeof *c.offset);
        double *tmp = malloc(N * sizeof *tmp);
        if (!c.offset || !tmp) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
        for (int k = 0; s == EM_OK && k < noffsets; k++) {
            s = eval_num(&c, offsets[k]->args[0], tmp);
            for (size_t i = 0; s == EM_OK && i < N; i++) c.offset[i] += tmp[i];
        }
        free(tmp);
        if (s == EM_OK) mark_missing(&c, c.offset, "offset()");
    }
    /* expand (lhs | a/b) into (lhs | a) + (lhs | a:b) */
    const fnode *gl[64], *gg[64];
    int guncor[64], ng = 0;
    fnode *made[32];
    int nmade = 0;
    for (int g = 0; s == EM_OK && g < ngroups; g++) {
        const fnode *G = groups[g];
        if (G->b->kind == FN_BIN && G->b->op == '/' && ng < 62 && nmade < 31) {
            fnode *ab = calloc(1, sizeof *ab);
            if (!ab) {
                s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
                break;
            }
            ab->kind = FN_BIN;
            ab->op = ':';
            ab->col = G->b->col;
            ab->a = G->b->a;
            ab->b = G->b->b;
            made[nmade++] = ab;
            gl[ng] = G->a, gg[ng] = G->b->a, guncor[ng++] = G->uncorrelated;
            gl[ng] = G->a, gg[ng] = ab, guncor[ng++] = G->uncorrelated;
        } else if (ng < 64) {
            gl[ng] = G->a, gg[ng] = G->b, guncor[ng++] = G->uncorrelated;
        }
    }
    if (s == EM_OK && ng) {
        gcols = calloc((size_t)ng, sizeof *gcols);
        gterms = calloc((size_t)ng, sizeof *gterms);
        gcodes = calloc((size_t)ng, sizeof *gcodes);
        out->groups = calloc((size_t)ng, sizeof *out->groups);
        if (!gcols || !gterms || !gcodes || !out->groups) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
        else out->ngroups = (size_t)ng;
    }
    for (int g = 0; s == EM_OK && g < ng; g++) {
        em_group_term *gt = &out->groups[g];
        gterms[g] = (termlist){.intercept = 1};
        s = expand(&c, gl[g], &gterms[g], NULL, NULL, NULL, NULL);
        if (s == EM_OK) {
            order_terms(&gterms[g]);
            s = build_columns(&c, &gterms[g], &gcols[g]);
        }
        if (s == EM_OK) s = group_factor(&c, gg[g], gt, &gcodes[g]);
        for (size_t j = 0; s == EM_OK && j < gcols[g].n; j++) mark_missing(&c, gcols[g].v[j], gcols[g].names[j]);
        for (size_t i = 0; s == EM_OK && i < N; i++)
            if (gcodes[g][i] == SIZE_MAX && !c.bad[i]) {
                c.bad[i] = 1;
                if (!c.bad_what) c.bad_what = "a grouping factor", c.bad_first_row = i;
            }
        gt->K = gcols[g].n + (size_t)gterms[g].intercept;
        gt->correlated = !guncor[g] && gt->K >= 2;
        if (s == EM_OK && gt->K == 0)
            s = em_formula_error_at(err, EM_ERR_ARG, f->text, gl[g]->col, "a group-level term with no terms");
    }
    for (int k = 0; k < nmade; k++) free(made[k]); /* children belong to the tree */
    /* rows: drop or refuse the ones with a missing value */
    size_t kept = 0;
    for (size_t i = 0; s == EM_OK && i < N; i++) kept += !c.bad[i];
    if (s == EM_OK && kept < N && !drop_missing) {
        s = em_error_set(err, EM_ERR_ARG,
                         "%s:%zu: a missing value in %s (%zu row%s with missing values; drop them with --drop-missing)",
                         fr->name, em_frame_line(fr, c.bad_first_row), c.bad_what, N - kept, N - kept == 1 ? "" : "s");
    }
    if (s == EM_OK && kept == 0) s = em_error_set(err, EM_ERR_ARG, "%s: every row has a missing value", fr->name);
    if (s == EM_OK) {
        out->n = kept;
        out->dropped = N - kept;
        out->rows = malloc(kept * sizeof *out->rows);
        if (!ref) out->y = malloc(kept * sizeof *out->y);
        if (trials) out->trials = malloc(kept * sizeof *out->trials);
        if (weights) out->weights = malloc(kept * sizeof *out->weights);
        if (c.offset) out->offset = malloc(kept * sizeof *out->offset);
        if (cens) out->cens = malloc(kept * sizeof *out->cens);
        if (cens) out->cens_upper = calloc(kept, sizeof *out->cens_upper);
        if (lb) out->lb = malloc(kept * sizeof *out->lb);
        if (lb) out->ub = malloc(kept * sizeof *out->ub);
        out->P = pop.n;
        out->names = calloc(pop.n ? pop.n : 1, sizeof *out->names);
        size_t cells = kept * pop.n > 0 ? kept * pop.n : 1;
        out->X = malloc(cells * sizeof *out->X);
        out->Xc = malloc(cells * sizeof *out->Xc);
        out->means = calloc(pop.n ? pop.n : 1, sizeof *out->means);
        out->intercept = terms.intercept;
        if (!out->rows || (!ref && !out->y) || (trials && !out->trials) || (weights && !out->weights) ||
            (c.offset && !out->offset) || !out->names || !out->X || !out->Xc || !out->means ||
            (cens && (!out->cens || !out->cens_upper)) || (lb && (!out->lb || !out->ub)))
            s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    }
    for (size_t i = 0, k = 0; s == EM_OK && i < N; i++) {
        if (c.bad[i]) continue;
        const char *why;
        double tr = trials ? trials[i] : 0;
        if (trials && !(tr >= 0 && tr == floor(tr)))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: trials = %g is not a non-negative whole number", fr->name,
                             em_frame_line(fr, i), tr);
        else if (weights && !(weights[i] >= 0 && isfinite(weights[i])))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: weights() = %g is not a finite non-negative number",
                             fr->name, em_frame_line(fr, i), weights[i]);
        else if (!ref && !support_ok(fam, y[i], tr, &why))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: response %s = %.17g is outside the %s family's support: %s",
                             fr->name, em_frame_line(fr, i), out->response_name, y[i], em_family_name(fam), why);
        else if (cens && cens[i] == 2 && !cens_up)
            s = em_error_set(err, EM_ERR_ARG, "%s:%zu: the row is interval-censored: give the upper ends as cens(c, y2)",
                             fr->name, em_frame_line(fr, i));
        else if (cens && cens[i] == 2 && !(cens_up[i] > y[i]))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: an interval-censored row needs y2 > y (y = %.17g, y2 = %.17g)",
                             fr->name, em_frame_line(fr, i), y[i], cens_up[i]);
        else if (cens && cens[i] == 2 && !support_ok(fam, cens_up[i], tr, &why))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: the interval's upper end y2 = %.17g is outside the %s family's "
                             "support: %s", fr->name, em_frame_line(fr, i), cens_up[i], em_family_name(fam), why);
        else if (lb && !(lb[i] < ub[i]))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: trunc() needs lb < ub (lb = %g, ub = %g)", fr->name,
                             em_frame_line(fr, i), lb[i], ub[i]);
        else if (lb && !(y[i] >= lb[i] && y[i] <= ub[i]))
            s = em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: response %s = %.17g is outside its truncation bounds [%g, %g]",
                             fr->name, em_frame_line(fr, i), out->response_name, y[i], lb[i], ub[i]);
        if (s != EM_OK) break;
        if (cens) out->cens[k] = cens[i];
        if (cens_up) out->cens_upper[k] = cens_up[i];
        if (lb) out->lb[k] = lb[i], out->ub[k] = ub[i];
        if (!ref && fam == EM_FAMILY_CUMULATIVE && (size_t)y[i] > out->ncat) out->ncat = (size_t)y[i];
        out->rows[k] = i;
        if (!ref) out->y[k] = y[i];
        if (trials) out->trials[k] = tr;
        if (weights) out->weights[k] = weights[i];
        if (c.offset) out->offset[k] = c.offset[i];
        for (size_t j = 0; j < pop.n; j++) out->X[k * pop.n + j] = pop.v[j][i];
        k++;
    }
    for (size_t j = 0; s == EM_OK && j < pop.n; j++) {
        out->names[j] = pop.names[j];
        pop.names[j] = NULL;
    }
    /* centring (brms centres the population-level columns when there is an intercept) and the
     * checks: a constant column, a column that is a combination of others */
    if (s == EM_OK && ref) {
        /* new data: centred at the training means; the checks of estimability were the fit's */
        if (out->P != ref->P || out->intercept != ref->intercept || out->ngroups != ref->ngroups)
            s = em_error_set(err, EM_ERR_ARG, "%s: the formula's columns differ from the training data's", fr->name);
        for (size_t j = 0; s == EM_OK && j < out->P; j++) {
            if (strcmp(out->names[j], ref->names[j]))
                s = em_error_set(err, EM_ERR_ARG, "%s: column %zu is '%s' here, '%s' in the training data", fr->name,
                                 j + 1, out->names[j], ref->names[j]);
            out->means[j] = ref->means[j];
            for (size_t i = 0; i < out->n; i++) out->Xc[i * out->P + j] = out->X[i * out->P + j] - ref->means[j];
        }
    } else if (s == EM_OK) {
        size_t n = out->n, P = out->P;
        for (size_t j = 0; j < P; j++) {
            double m = 0;
            for (size_t i = 0; i < n; i++) m += out->X[i * P + j];
            m /= (double)n;
            out->means[j] = out->intercept ? m : 0.0;
            double ss = 0;
            for (size_t i = 0; i < n; i++) {
                double v = out->X[i * P + j] - out->means[j];
                out->Xc[i * P + j] = v;
                ss += (out->X[i * P + j] - m) * (out->X[i * P + j] - m);
            }
            if (out->intercept && !(ss > 1e-12 * (double)n * (1 + m * m))) {
                s = em_error_set(err, EM_ERR_ARG, "formula: column '%s' is constant in the %zu rows used; it cannot be "
                                                  "estimated beside the intercept", out->names[j], n);
                break;
            }
        }
        /* Gram–Schmidt on the centred columns (and the intercept): a column whose remainder
         * vanishes is a linear combination of the ones before it */
        size_t qcells = n * (P + 1);
        double *q = s == EM_OK ? malloc(qcells * sizeof *q) : NULL;
        if (s == EM_OK && !q) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
        size_t nq = 0;
        for (size_t j = 0; s == EM_OK && j < P; j++) {
            double *v = q + nq * n, norm0 = 0, norm = 0;
            for (size_t i = 0; i < n; i++) v[i] = out->Xc[i * P + j], norm0 += v[i] * v[i];
            for (size_t k = 0; k < nq; k++) {
                double dot = 0;
                const double *u = q + k * n;
                for (size_t i = 0; i < n; i++) dot += u[i] * v[i];
                for (size_t i = 0; i < n; i++) v[i] -= dot * u[i];
            }
            for (size_t i = 0; i < n; i++) norm += v[i] * v[i];
            if (!(norm > 1e-10 * norm0) || norm0 == 0) {
                s = em_error_set(err, EM_ERR_ARG,
                                 "formula: column '%s' is %s of the columns before it; it cannot be estimated (drop it "
                                 "or a term it repeats)",
                                 out->names[j], norm0 == 0 ? "all zeros, a combination" : "a linear combination");
                break;
            }
            norm = sqrt(norm);
            for (size_t i = 0; i < n; i++) v[i] /= norm;
            nq++;
        }
        free(q);
    }
    /* group-level design: Z columns (intercept first) and level index of the used rows */
    for (size_t g = 0; s == EM_OK && g < out->ngroups; g++) {
        em_group_term *gt = &out->groups[g];
        size_t n = out->n;
        gt->index = malloc(n * sizeof *gt->index);
        gt->Z = malloc(gt->K * n * sizeof *gt->Z);
        gt->names = calloc(gt->K, sizeof *gt->names);
        if (!gt->index || !gt->Z || !gt->names) {
            s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
            break;
        }
        size_t k0 = 0;
        if (gterms[g].intercept) {
            gt->names[0] = strdup("Intercept");
            for (size_t i = 0; i < n; i++) gt->Z[i] = 1.0;
            k0 = 1;
        }
        for (size_t j = 0; j < gcols[g].n; j++) {
            em_buf b = {0};
            em_brms_rename(gcols[g].names[j], &b);
            gt->names[k0 + j] = b.data;
            for (size_t i = 0; i < n; i++) gt->Z[(k0 + j) * n + i] = gcols[g].v[j][out->rows[i]];
        }
        for (size_t i = 0; i < n; i++) gt->index[i] = gcodes[g][out->rows[i]];
        /* levels that no used row has (dropped rows) stay: brms keeps them too */
    }
    /* the training coding, for new data later: the factors' levels and scale()'s statistics */
    if (s == EM_OK && !ref) {
        size_t nf = 0;
        for (int k = 0; k < c.nvars; k++) nf += (size_t)c.vars[k].is_factor;
        out->coded = calloc(nf + (size_t)c.nscaled + 1, sizeof *out->coded);
        if (!out->coded) s = em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
        for (int k = 0; s == EM_OK && k < c.nvars; k++) {
            fvar *v = &c.vars[k];
            if (!v->is_factor) continue;
            out->coded[out->ncoded++] = (em_coded_var){.label = v->label, .is_factor = 1, .nlevels = v->nlevels,
                                                       .levels = v->levels};
            v->label = NULL, v->levels = NULL, v->nlevels = 0;
        }
        for (int k = 0; s == EM_OK && k < c.nscaled; k++) {
            out->coded[out->ncoded++] = c.scaled[k];
            c.scaled[k].label = NULL;
        }
    }
    for (int k = 0; k < c.nscaled; k++) free(c.scaled[k].label);
    for (int g = 0; gcols && g < ng; g++) {
        colset_free(&gcols[g]);
        free(gcodes[g]);
    }
    free(gcols);
    free(gterms);
    free(gcodes);
    colset_free(&pop);
    for (int k = 0; k < c.nvars; k++) var_free(&c.vars[k]);
    free(c.bad);
    free(c.offset);
    free(y);
    free(trials);
    free(weights);
    free(cens);
    free(cens_up);
    free(lb);
    free(ub);
    if (s == EM_OK && !ref && fam == EM_FAMILY_CUMULATIVE && out->ncat < 2)
        s = em_error_set(err, EM_ERR_ARG, "%s: a cumulative model needs at least two categories (the largest response "
                                          "is %zu)", fr->name, out->ncat);
    if (s != EM_OK) em_design_free(out);
    return s;
}

em_status em_design_build(const em_formula *f, const em_frame *fr, em_family fam, int drop_missing, em_design *out,
                          em_error *err) {
    return build(f, fr, fam, drop_missing, NULL, out, err);
}

em_status em_design_build_new(const em_formula *f, const em_frame *fr, em_family fam, const em_design *train,
                              int drop_missing, em_design *out, em_error *err) {
    if (!train) return em_error_set(err, EM_ERR_ARG, "em_design_build_new: no training design");
    return build(f, fr, fam, drop_missing, train, out, err);
}
