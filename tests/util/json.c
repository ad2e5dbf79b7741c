/* json.c — a strict recursive-descent JSON reader (RFC 8259) for the tests' data files. */
#include "util/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n, pos;
    char *err;
    size_t errlen;
    int failed;
} parser;

static void perr(parser *p, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    if (!p->err || p->errlen == 0) return;
    /* line and column of the failure, 1-based, for a message a person can act on */
    size_t line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->n; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    int k = snprintf(p->err, p->errlen, "line %zu, column %zu: ", line, col);
    if (k < 0 || (size_t)k >= p->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static tu_json *new_node(parser *p, tu_json_type t) {
    tu_json *j = calloc(1, sizeof *j);
    if (!j) perr(p, "out of memory");
    else j->type = t;
    return j;
}

/* Append to a growing array of pointers (items or keys). */
static int push_ptr(parser *p, void ***arr, size_t *cap, size_t len, void *x) {
    if (len == *cap) {
        size_t nc = *cap ? 2 * *cap : 8;
        void **a = realloc(*arr, nc * sizeof *a);
        if (!a) {
            perr(p, "out of memory");
            return -1;
        }
        *arr = a;
        *cap = nc;
    }
    (*arr)[len] = x;
    return 0;
}

static tu_json *parse_value(parser *p, int depth);

static int hex4(parser *p, unsigned *out) {
    if (p->n - p->pos < 4) {
        perr(p, "truncated \\u escape");
        return -1;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else {
            p->pos--;
            perr(p, "bad hex digit '%c' in \\u escape", c);
            return -1;
        }
    }
    *out = v;
    return 0;
}

/* A string at p->pos (which is at the opening quote); returns a malloc'd UTF-8 copy. No escape
 * grows when decoded (\uXXXX is 6 bytes for at most 3 of UTF-8, a surrogate pair 12 for 4),
 * so the raw length up to the closing quote bounds the output. */
static char *parse_string(parser *p, size_t *outlen) {
    p->pos++; /* the quote */
    size_t start = p->pos, i = p->pos;
    while (i < p->n && p->s[i] != '"') i += p->s[i] == '\\' ? 2 : 1;
    size_t raw = (i < p->n ? i : p->n) - start;
    char *buf = malloc(raw + 1);
    if (!buf) {
        perr(p, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (;;) {
        if (p->pos >= p->n) {
            perr(p, "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            buf[k] = '\0';
            *outlen = k;
            return buf;
        }
        if (c < 0x20) {
            perr(p, "control character 0x%02x in a string", c);
            break;
        }
        if (c != '\\') {
            buf[k++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        if (p->pos >= p->n) {
            perr(p, "unterminated escape");
            break;
        }
        char e = p->s[p->pos++];
        switch (e) {
        case '"': buf[k++] = '"'; break;
        case '\\': buf[k++] = '\\'; break;
        case '/': buf[k++] = '/'; break;
        case 'b': buf[k++] = '\b'; break;
        case 'f': buf[k++] = '\f'; break;
        case 'n': buf[k++] = '\n'; break;
        case 'r': buf[k++] = '\r'; break;
        case 't': buf[k++] = '\t'; break;
        case 'u': {
            unsigned u;
            if (hex4(p, &u)) goto fail;
            uint32_t cp = u;
            if (u >= 0xD800 && u <= 0xDBFF) { /* a surrogate pair */
                unsigned lo;
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    perr(p, "unpaired high surrogate \\u%04x", u);
                    goto fail;
                }
                p->pos += 2;
                if (hex4(p, &lo)) goto fail;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    perr(p, "bad low surrogate \\u%04x", lo);
                    goto fail;
                }
                cp = 0x10000u + ((u - 0xD800u) << 10) + (lo - 0xDC00u);
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                perr(p, "unpaired low surrogate \\u%04x", u);
                goto fail;
            } else if (u == 0) {
                perr(p, "\\u0000 in a string is not supported");
                goto fail;
            }
            if (cp < 0x80) {
                buf[k++] = (char)cp;
            } else if (cp < 0x800) {
                buf[k++] = (char)(0xC0 | (cp >> 6));
                buf[k++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[k++] = (char)(0xE0 | (cp >> 12));
                buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[k++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[k++] = (char)(0xF0 | (cp >> 18));
                buf[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[k++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            p->pos--;
            perr(p, "bad escape '\\%c'", e);
            goto fail;
        }
    }
fail:
    free(buf);
    return NULL;
}

/* RFC 8259's number grammar, checked before strtod converts the span (strtod alone would
 * accept hex, "inf", "nan" and leading '+'). */
static tu_json *parse_number(parser *p) {
    size_t start = p->pos, i = p->pos;
    const char *s = p->s;
    if (i < p->n && s[i] == '-') i++;
    if (i < p->n && s[i] == '0') {
        i++;
    } else if (i < p->n && s[i] >= '1' && s[i] <= '9') {
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        p->pos = i;
        perr(p, "invalid number");
        return NULL;
    }
    if (i < p->n && s[i] == '.') {
        i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            perr(p, "digit expected after '.'");
            return NULL;
        }
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            perr(p, "digit expected in exponent");
            return NULL;
        }
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t len = i - start;
    char small[64];
    char *tmp = len < sizeof small ? small : malloc(len + 1);
    if (!tmp) {
        perr(p, "out of memory");
        return NULL;
    }
    memcpy(tmp, s + start, len);
    tmp[len] = '\0';
    errno = 0;
    double v = strtod(tmp, NULL);
    int overflow = errno == ERANGE && isinf(v);
    if (tmp != small) free(tmp);
    if (overflow) {
        perr(p, "number out of range");
        return NULL;
    }
    tu_json *j = new_node(p, TU_JSON_NUMBER);
    if (!j) return NULL;
    j->number = v;
    p->pos = i;
    return j;
}

static int literal(parser *p, const char *word) {
    size_t L = strlen(word);
    if (p->n - p->pos >= L && memcmp(p->s + p->pos, word, L) == 0) {
        p->pos += L;
        return 1;
    }
    return 0;
}

static tu_json *parse_container(parser *p, int depth, int is_object) {
    tu_json *j = new_node(p, is_object ? TU_JSON_OBJECT : TU_JSON_ARRAY);
    if (!j) return NULL;
    char close = is_object ? '}' : ']';
    size_t cap_items = 0, cap_keys = 0;
    p->pos++; /* the bracket */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        return j;
    }
    for (;;) {
        char *key = NULL;
        if (is_object) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"') {
                perr(p, "object key (a string) expected");
                goto fail;
            }
            size_t klen;
            key = parse_string(p, &klen);
            if (!key) goto fail;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                free(key);
                perr(p, "':' expected after key");
                goto fail;
            }
            p->pos++;
        }
        tu_json *v = parse_value(p, depth + 1);
        if (!v) {
            free(key);
            goto fail;
        }
        if (is_object && push_ptr(p, (void ***)&j->keys, &cap_keys, j->len, key)) {
            free(key);
            tu_json_free(v);
            goto fail;
        }
        if (push_ptr(p, (void ***)&j->items, &cap_items, j->len, v)) {
            /* the key was stored at index len; free it here since len does not count it */
            if (is_object) free(j->keys[j->len]);
            tu_json_free(v);
            goto fail;
        }
        j->len++;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == close) {
            p->pos++;
            return j;
        }
        perr(p, "',' or '%c' expected", close);
        goto fail;
    }
fail:
    tu_json_free(j);
    return NULL;
}

static tu_json *parse_value(parser *p, int depth) {
    if (depth > TU_JSON_MAX_DEPTH) {
        perr(p, "nesting deeper than %d", TU_JSON_MAX_DEPTH);
        return NULL;
    }
    skip_ws(p);
    if (p->pos >= p->n) {
        perr(p, "value expected, found the end of the text");
        return NULL;
    }
    char c = p->s[p->pos];
    if (c == '{') return parse_container(p, depth, 1);
    if (c == '[') return parse_container(p, depth, 0);
    if (c == '"') {
        size_t len;
        char *s = parse_string(p, &len);
        if (!s) return NULL;
        tu_json *j = new_node(p, TU_JSON_STRING);
        if (!j) {
            free(s);
            return NULL;
        }
        j->string = s;
        j->len = len;
        return j;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p);
    int truth = literal(p, "true");
    if (truth || literal(p, "false")) {
        tu_json *j = new_node(p, TU_JSON_BOOL);
        if (j) j->number = truth;
        return j;
    }
    if (literal(p, "null")) return new_node(p, TU_JSON_NULL);
    perr(p, "unexpected character '%c'", c);
    return NULL;
}

tu_json *tu_json_parse(const char *text, size_t n, char *err, size_t errlen) {
    parser p = {text, n, 0, err, errlen, 0};
    if (err && errlen) err[0] = '\0';
    if (!text) {
        perr(&p, "no text");
        return NULL;
    }
    tu_json *j = parse_value(&p, 0);
    if (!j) return NULL;
    skip_ws(&p);
    if (p.pos != p.n) {
        perr(&p, "unexpected text after the value");
        tu_json_free(j);
        return NULL;
    }
    return j;
}

tu_json *tu_json_read_file(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *b = realloc(buf, 2 * cap);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (!buf || rerr) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    char msg[256];
    tu_json *j = tu_json_parse(buf, n, msg, sizeof msg);
    free(buf);
    if (!j && err && errlen) snprintf(err, errlen, "%s: %s", path, msg);
    return j;
}

void tu_json_free(tu_json *j) {
    if (!j) return;
    for (size_t i = 0; i < j->len; i++) {
        if (j->items) tu_json_free(j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->string);
    free(j);
}

const tu_json *tu_json_get(const tu_json *obj, const char *key) {
    if (!obj || obj->type != TU_JSON_OBJECT || !key) return NULL;
    const tu_json *found = NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (strcmp(obj->keys[i], key) == 0) found = obj->items[i];
    return found;
}

const tu_json *tu_json_at(const tu_json *j, size_t i) {
    if (!j || (j->type != TU_JSON_ARRAY && j->type != TU_JSON_OBJECT) || i >= j->len) return NULL;
    return j->items[i];
}

size_t tu_json_len(const tu_json *j) {
    if (!j || (j->type != TU_JSON_ARRAY && j->type != TU_JSON_OBJECT)) return 0;
    return j->len;
}

double tu_json_number(const tu_json *j) {
    return j && j->type == TU_JSON_NUMBER ? j->number : NAN;
}

const tu_json *tu_json_path(const tu_json *j, ...) {
    va_list ap;
    va_start(ap, j);
    const char *key;
    while (j && (key = va_arg(ap, const char *)) != NULL) j = tu_json_get(j, key);
    va_end(ap);
    return j;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int tu_json_numbers(const tu_json *j, double **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    if (!j || j->type != TU_JSON_ARRAY) {
        set_err(err, errlen, "an array of numbers expected");
        return -1;
    }
    double *v = malloc((j->len ? j->len : 1) * sizeof *v);
    if (!v) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < j->len; i++) {
        if (j->items[i]->type != TU_JSON_NUMBER) {
            set_err(err, errlen, "element %zu is not a number", i);
            free(v);
            return -1;
        }
        v[i] = j->items[i]->number;
    }
    *out = v;
    *n = j->len;
    return 0;
}

int tu_json_matrix(const tu_json *j, double **out, size_t *rows, size_t *cols, char *err,
                   size_t errlen) {
    *out = NULL;
    *rows = *cols = 0;
    if (!j || j->type != TU_JSON_ARRAY || j->len == 0 || j->items[0]->type != TU_JSON_ARRAY) {
        set_err(err, errlen, "a non-empty array of arrays expected");
        return -1;
    }
    size_t r = j->len, c = j->items[0]->len;
    if (c == 0 || r > SIZE_MAX / c / sizeof(double)) {
        set_err(err, errlen, "row 0 is empty or the matrix is too large");
        return -1;
    }
    double *v = malloc(r * c * sizeof *v);
    if (!v) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r; i++) {
        const tu_json *row = j->items[i];
        if (row->type != TU_JSON_ARRAY || row->len != c) {
            set_err(err, errlen, "row %zu is not an array of %zu values", i, c);
            free(v);
            return -1;
        }
        for (size_t k = 0; k < c; k++) {
            if (row->items[k]->type != TU_JSON_NUMBER) {
                set_err(err, errlen, "element [%zu][%zu] is not a number", i, k);
                free(v);
                return -1;
            }
            v[i * c + k] = row->items[k]->number;
        }
    }
    *out = v;
    *rows = r;
    *cols = c;
    return 0;
}
