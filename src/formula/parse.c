/* parse.c — formula text to syntax tree. See formula.h and internal/formula_impl.h.
 *
 * A hand-written precedence-climbing parser over R's operator precedences for formulas
 * (lowest first): `~`; `|` (inside parentheses: a group-level term); `+` `-`; `*` `/`; `:`;
 * unary `-`; `^`. Every node keeps the column it starts at, so that every later error (here
 * or when the formula meets the data) can point at the place with a caret.
 */
#include "internal/formula_impl.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

em_status em_formula_error_at(em_error *err, em_status s, const char *text, int col, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int len = (int)strlen(text);
    if (col < 1) col = 1;
    if (col > len + 1) col = len + 1;
    /* the caret line: spaces up to the column (a long formula is shown from 60 columns before) */
    int from = col > 70 ? col - 60 : 1;
    char caret[96];
    int k = 0;
    for (int i = from; i < col && k < 90; i++) caret[k++] = ' ';
    caret[k++] = '^';
    caret[k] = '\0';
    return em_error_set(err, s, "formula: %s at column %d\n  %s%.*s\n  %s%s", what, col, from > 1 ? "..." : "", 200,
                        text + from - 1, from > 1 ? "   " : "", caret);
}

/* ---- lexer ------------------------------------------------------------------------------------- */

typedef enum { T_END, T_NAME, T_NUM, T_OP } tok_kind;

typedef struct lexer {
    const char *text;
    size_t pos;
    tok_kind kind;
    int col;       /* 1-based start of the current token */
    char op[3];    /* T_OP: "~", "+", "||", ... */
    char name[256];
    double num;
    em_error *err;
    int failed;
} lexer;

static void next(lexer *lx) {
    const char *s = lx->text;
    while (s[lx->pos] == ' ' || s[lx->pos] == '\t' || s[lx->pos] == '\n' || s[lx->pos] == '\r') lx->pos++;
    lx->col = (int)lx->pos + 1;
    char c = s[lx->pos];
    if (!c) {
        lx->kind = T_END;
        return;
    }
    if (isalpha((unsigned char)c) || c == '.' || c == '_' || c == '`') {
        /* a name: letters, digits, '.' and '_' (R's syntactic names), or `anything` */
        size_t n = 0;
        if (c == '`') {
            size_t start = ++lx->pos;
            while (s[lx->pos] && s[lx->pos] != '`') lx->pos++;
            if (!s[lx->pos]) {
                em_formula_error_at(lx->err, EM_ERR_PARSE, s, lx->col, "unterminated `name`");
                lx->failed = 1;
                lx->kind = T_END;
                return;
            }
            n = lx->pos - start;
            if (n >= sizeof lx->name) n = sizeof lx->name - 1;
            memcpy(lx->name, s + start, n);
            lx->pos++;
        } else if (c == '.' && isdigit((unsigned char)s[lx->pos + 1])) {
            goto number;
        } else {
            while (isalnum((unsigned char)s[lx->pos]) || s[lx->pos] == '.' || s[lx->pos] == '_') {
                if (n < sizeof lx->name - 1) lx->name[n++] = s[lx->pos];
                lx->pos++;
            }
        }
        lx->name[n] = '\0';
        lx->kind = T_NAME;
        return;
    }
    if (isdigit((unsigned char)c)) {
    number:;
        char *end;
        lx->num = strtod(s + lx->pos, &end);
        lx->pos = (size_t)(end - s);
        lx->kind = T_NUM;
        return;
    }
    if (c == '|' && s[lx->pos + 1] == '|') {
        strcpy(lx->op, "||");
        lx->pos += 2;
        lx->kind = T_OP;
        return;
    }
    if (strchr("~+-*/:^()|,=", c)) {
        lx->op[0] = c;
        lx->op[1] = '\0';
        lx->pos++;
        lx->kind = T_OP;
        return;
    }
    em_formula_error_at(lx->err, EM_ERR_PARSE, s, lx->col, "unexpected character '%c'", c);
    lx->failed = 1;
    lx->kind = T_END;
}

static int is_op(const lexer *lx, const char *op) { return lx->kind == T_OP && strcmp(lx->op, op) == 0; }

/* ---- tree -------------------------------------------------------------------------------------- */

void em_fnode_free(fnode *n) {
    if (!n) return;
    em_fnode_free(n->a);
    em_fnode_free(n->b);
    for (int i = 0; i < n->nargs; i++) em_fnode_free(n->args[i]);
    free(n->args);
    free(n->name);
    free(n);
}

static fnode *node(lexer *lx, fnode_kind k, int col) {
    fnode *n = calloc(1, sizeof *n);
    if (!n) {
        em_error_set(lx->err, EM_ERR_NOMEM, "formula: out of memory");
        lx->failed = 1;
        return NULL;
    }
    n->kind = k;
    n->col = col;
    return n;
}

static fnode *fail(lexer *lx, const char *fmt, const char *tok) {
    if (!lx->failed) em_formula_error_at(lx->err, EM_ERR_PARSE, lx->text, lx->col, fmt, tok);
    lx->failed = 1;
    return NULL;
}

static const char *tok_text(const lexer *lx) {
    return lx->kind == T_END ? "the end" : lx->kind == T_OP ? lx->op : lx->kind == T_NAME ? lx->name : "a number";
}

static fnode *parse_expr(lexer *lx, int min_prec, int in_group);

static fnode *parse_primary(lexer *lx, int in_group) {
    int col = lx->col;
    if (lx->kind == T_NUM) {
        fnode *n = node(lx, FN_NUM, col);
        if (n) n->num = lx->num;
        next(lx);
        return n;
    }
    if (lx->kind == T_NAME) {
        char name[256];
        snprintf(name, sizeof name, "%s", lx->name);
        next(lx);
        if (!is_op(lx, "(")) {
            fnode *n = node(lx, FN_VAR, col);
            if (n && !(n->name = strdup(name))) lx->failed = 1;
            return n;
        }
        next(lx);
        fnode *n = node(lx, FN_CALL, col);
        if (!n || !(n->name = strdup(name))) {
            em_fnode_free(n);
            return NULL;
        }
        if (!is_op(lx, ")"))
            for (;;) {
                fnode *arg = parse_expr(lx, 0, 0);
                if (!arg) {
                    em_fnode_free(n);
                    return NULL;
                }
                if (is_op(lx, "=")) {
                    /* a named argument, trunc(lb = 0): a '=' node, the name on its left */
                    int ecol = lx->col;
                    if (arg->kind != FN_VAR) {
                        em_fnode_free(arg);
                        em_fnode_free(n);
                        return fail(lx, "'=' names an argument: the name must be on its left%s", "");
                    }
                    next(lx);
                    fnode *val = parse_expr(lx, 0, 0);
                    fnode *named = val ? node(lx, FN_BIN, ecol) : NULL;
                    if (!named) {
                        em_fnode_free(val);
                        em_fnode_free(arg);
                        em_fnode_free(n);
                        return NULL;
                    }
                    named->op = '=';
                    named->a = arg;
                    named->b = val;
                    arg = named;
                }
                fnode **na = realloc(n->args, (size_t)(n->nargs + 1) * sizeof *na);
                if (!na) {
                    em_fnode_free(arg);
                    em_fnode_free(n);
                    return fail(lx, "out of memory%s", "");
                }
                n->args = na;
                n->args[n->nargs++] = arg;
                if (is_op(lx, ",")) {
                    next(lx);
                    continue;
                }
                break;
            }
        if (!is_op(lx, ")")) {
            em_fnode_free(n);
            return fail(lx, "expected ',' or ')' in the call, found %s", tok_text(lx));
        }
        next(lx);
        return n;
    }
    if (is_op(lx, "(")) {
        next(lx);
        fnode *inner = parse_expr(lx, 0, 1);
        if (!inner) return NULL;
        if (is_op(lx, "|") || is_op(lx, "||")) {
            /* a group-level term: (terms | factor) */
            int unc = is_op(lx, "||");
            next(lx);
            fnode *g = parse_expr(lx, 0, 1);
            if (!g) {
                em_fnode_free(inner);
                return NULL;
            }
            if (!is_op(lx, ")")) {
                em_fnode_free(inner);
                em_fnode_free(g);
                return fail(lx, "expected ')' to close the group-level term, found %s", tok_text(lx));
            }
            next(lx);
            fnode *n = node(lx, FN_GROUP, col);
            if (!n) {
                em_fnode_free(inner);
                em_fnode_free(g);
                return NULL;
            }
            n->a = inner;
            n->b = g;
            n->uncorrelated = unc;
            return n;
        }
        if (!is_op(lx, ")")) {
            em_fnode_free(inner);
            return fail(lx, "expected ')', found %s", tok_text(lx));
        }
        next(lx);
        return inner;
    }
    if (is_op(lx, "-")) {
        next(lx);
        fnode *a = parse_expr(lx, 4, in_group); /* binds tighter than + - * / : but not ^ */
        if (!a) return NULL;
        fnode *n = node(lx, FN_NEG, col);
        if (!n) {
            em_fnode_free(a);
            return NULL;
        }
        n->a = a;
        return n;
    }
    if (lx->kind == T_END && !lx->failed) return fail(lx, "a term is missing (found %s)", tok_text(lx));
    return fail(lx, "unexpected '%s'", tok_text(lx));
}

static int prec(const lexer *lx) {
    if (lx->kind != T_OP) return -1;
    switch (lx->op[0]) {
    case '+':
    case '-': return 1;
    case '*':
    case '/': return 2;
    case ':': return 3;
    case '^': return 5;
    default: return -1;
    }
}

static fnode *parse_expr(lexer *lx, int min_prec, int in_group) {
    fnode *lhs = parse_primary(lx, in_group);
    while (lhs) {
        int p = prec(lx);
        if (p < 0 || p < min_prec) break;
        char op = lx->op[0];
        int col = lx->col;
        next(lx);
        /* ^ is right-associative, the others left */
        fnode *rhs = parse_expr(lx, op == '^' ? p : p + 1, in_group);
        if (!rhs) {
            em_fnode_free(lhs);
            return NULL;
        }
        fnode *n = node(lx, FN_BIN, col);
        if (!n) {
            em_fnode_free(lhs);
            em_fnode_free(rhs);
            return NULL;
        }
        n->op = op;
        n->a = lhs;
        n->b = rhs;
        lhs = n;
    }
    return lhs;
}

em_status em_formula_parse(const char *text, em_formula **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_formula_parse: out is NULL");
    *out = NULL;
    if (!text) return em_error_set(err, EM_ERR_ARG, "em_formula_parse: no formula");
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\n' && *c != '\r')
            return em_formula_error_at(err, EM_ERR_PARSE, text, (int)(c - text) + 1, "a control character");
    em_formula *f = calloc(1, sizeof *f);
    if (!f || !(f->text = strdup(text))) {
        free(f);
        return em_error_set(err, EM_ERR_NOMEM, "formula: out of memory");
    }
    lexer lx = {0};
    lx.text = f->text;
    lx.err = err;
    next(&lx);
    if (lx.kind == T_END && !lx.failed) {
        em_formula_error_at(err, EM_ERR_PARSE, text, 1, "the formula is empty (write it as 'y ~ x')");
        lx.failed = 1;
    }
    if (!lx.failed) f->response = parse_expr(&lx, 1, 0);
    if (!lx.failed && is_op(&lx, "|")) {
        /* addition terms: y | trials(n) + weights(w) */
        next(&lx);
        fnode *add = parse_expr(&lx, 1, 0);
        /* flatten the '+' chain */
        fnode *stack[16];
        int ns = 0;
        while (add && ns < 16) {
            if (add->kind == FN_BIN && add->op == '+') {
                stack[ns++] = add->b;
                fnode *l = add->a;
                add->a = add->b = NULL;
                em_fnode_free(add);
                add = l;
            } else {
                stack[ns++] = add;
                add = NULL;
            }
        }
        em_fnode_free(add);
        f->addition = calloc((size_t)(ns ? ns : 1), sizeof *f->addition);
        for (int i = 0; f->addition && i < ns; i++) f->addition[f->naddition++] = stack[ns - 1 - i];
    }
    if (!lx.failed && !is_op(&lx, "~")) {
        if (lx.kind == T_END) fail(&lx, "no '~': write the formula as 'response ~ terms'%s", "");
        else fail(&lx, "expected '~' after the response, found '%s'", tok_text(&lx));
    }
    if (!lx.failed) {
        next(&lx);
        if (lx.kind == T_END) fail(&lx, "nothing after '~' (write 'y ~ 1' for an intercept only)%s", "");
    }
    if (!lx.failed) f->rhs = parse_expr(&lx, 1, 0);
    if (!lx.failed && lx.kind != T_END) fail(&lx, "unexpected '%s' (an operator such as '+' is missing?)", tok_text(&lx));
    if (lx.failed) {
        em_formula_free(f);
        return err && err->status ? err->status : EM_ERR_PARSE;
    }
    *out = f;
    return EM_OK;
}

void em_formula_free(em_formula *f) {
    if (!f) return;
    em_fnode_free(f->response);
    for (int i = 0; i < f->naddition; i++) em_fnode_free(f->addition[i]);
    free(f->addition);
    em_fnode_free(f->rhs);
    free(f->text);
    free(f);
}

/* R's deparse: spaces around + - * / and ~, none around ^ and :. */
static void deparse_num(double v, em_buf *b) {
    char s[32];
    snprintf(s, sizeof s, "%.15g", v);
    em_buf_append(b, s, strlen(s));
}

void em_fnode_deparse(const fnode *n, em_buf *b) {
    if (!n) return;
    switch (n->kind) {
    case FN_NUM: deparse_num(n->num, b); break;
    case FN_VAR: em_buf_append(b, n->name, strlen(n->name)); break;
    case FN_CALL:
        em_buf_printf(b, "%s(", n->name);
        for (int i = 0; i < n->nargs; i++) {
            if (i) em_buf_append(b, ", ", 2);
            em_fnode_deparse(n->args[i], b);
        }
        em_buf_append(b, ")", 1);
        break;
    case FN_NEG:
        em_buf_append(b, "-", 1);
        em_fnode_deparse(n->a, b);
        break;
    case FN_BIN: {
        int paren_l = n->a->kind == FN_BIN && (n->op == '^' || ((n->op == '*' || n->op == '/') && (n->a->op == '+' || n->a->op == '-')));
        int paren_r = n->b->kind == FN_BIN && (n->op == '^' || n->op == '-' || n->op == '/' ||
                                               ((n->op == '*') && (n->b->op == '+' || n->b->op == '-')));
        if (paren_l) em_buf_append(b, "(", 1);
        em_fnode_deparse(n->a, b);
        if (paren_l) em_buf_append(b, ")", 1);
        if (n->op == '^' || n->op == ':') em_buf_append(b, &n->op, 1);
        else em_buf_printf(b, " %c ", n->op);
        if (paren_r) em_buf_append(b, "(", 1);
        em_fnode_deparse(n->b, b);
        if (paren_r) em_buf_append(b, ")", 1);
        break;
    }
    case FN_GROUP:
        em_buf_append(b, "(", 1);
        em_fnode_deparse(n->a, b);
        em_buf_append(b, n->uncorrelated ? " || " : " | ", n->uncorrelated ? 4 : 3);
        em_fnode_deparse(n->b, b);
        em_buf_append(b, ")", 1);
        break;
    }
}
