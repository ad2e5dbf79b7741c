/* text.c — the number grammar and the checked file reader every text reader uses. See
 * internal/text.h. */
#include "internal/text.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int ieq(const char *s, size_t n, const char *lit) {
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return 0;
    }
    return 1;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

int em_number_parse(const char *s, size_t n, int allow_nonfinite, double *out, const char **why) {
    while (n > 0 && is_blank(*s)) s++, n--;
    while (n > 0 && is_blank(s[n - 1])) n--;
    if (n == 0 || (n == 2 && memcmp(s, "NA", 2) == 0)) return EM_NUMBER_MISSING;
    if (n == 3 && memcmp(s, "NaN", 3) == 0 && !allow_nonfinite) return EM_NUMBER_MISSING;
    size_t i = 0;
    int neg = 0;
    if (s[i] == '+' || s[i] == '-') neg = s[i++] == '-';
    if (allow_nonfinite) {
        if (ieq(s + i, n - i, "nan")) {
            *out = neg ? -NAN : NAN;
            return EM_NUMBER_OK;
        }
        if (ieq(s + i, n - i, "inf") || ieq(s + i, n - i, "infinity")) {
            *out = neg ? -INFINITY : INFINITY;
            return EM_NUMBER_OK;
        }
    }
    size_t d1 = 0, d2 = 0, d3 = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, d1++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, d2++;
    }
    if (d1 + d2 == 0) {
        *why = "is not a number";
        return EM_NUMBER_BAD;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, d3++;
        if (d3 == 0) {
            *why = "is not a number (exponent without digits)";
            return EM_NUMBER_BAD;
        }
    }
    if (i != n) {
        *why = "is not a number";
        return EM_NUMBER_BAD;
    }
    pthread_once(&c_locale_once, make_c_locale);
    if (c_locale == (locale_t)0) {
        *why = "cannot be converted (no \"C\" locale could be created)";
        return EM_NUMBER_BAD;
    }
    /* The grammar matched exactly s[0..n); strtod in the C locale consumes the same text (the
     * trailing blanks, or whatever ends the token at s[n], stop it). */
    locale_t old = uselocale(c_locale);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    int range = errno == ERANGE;
    uselocale(old);
    if (end != s + n) {
        *why = "is not a number";
        return EM_NUMBER_BAD;
    }
    if (range && isinf(v)) {
        *why = "is out of range for a double";
        return EM_NUMBER_BAD;
    }
    *out = v;
    return EM_NUMBER_OK;
}

void em_text_position(const char *buf, size_t off, size_t *line, size_t *col) {
    size_t ln = 1, start = 0, i = 0;
    if (off >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) i = start = 3;
    for (; i < off; i++) {
        if (buf[i] == '\n' || (buf[i] == '\r' && !(i + 1 < off && buf[i + 1] == '\n'))) {
            ln++;
            start = i + 1;
        }
    }
    *line = ln;
    *col = off - start + 1;
}

int em_text_nonfinite(char *dst, size_t cap, double v) {
    if (isnan(v)) snprintf(dst, cap, "NA");
    else if (isinf(v)) snprintf(dst, cap, v > 0 ? "Inf" : "-Inf");
    else return 0;
    return 1;
}

em_status em_text_write_in_dir(const char *dir, const char *name, const char *ext, const em_buf *b, const char *who,
                               em_error *err) {
    if (b->failed) return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", who);
    em_buf path = {0};
    em_buf_printf(&path, "%s/%s%s", dir, name, ext);
    em_status s = path.failed ? em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", who)
                              : em_write_file_atomic(path.data, b->data ? b->data : "", b->len, err);
    em_buf_free(&path);
    return s;
}

em_status em_text_check_binary(const char *name, const char *buf, size_t len, em_error *err) {
    const char *z = len ? memchr(buf, '\0', len) : NULL;
    if (!z) return EM_OK;
    size_t line, col;
    em_text_position(buf, (size_t)(z - buf), &line, &col);
    return em_error_set(err, EM_ERR_PARSE, "%s:%zu:%zu: binary data (a NUL byte) at line %zu, column %zu: not a text file",
                        name, line, col, line, col);
}

em_status em_text_read_file(const char *path, size_t stream_cap, em_buf *out, em_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return em_error_set(err, EM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return em_error_set(err, EM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    size_t cap = S_ISREG(sb.st_mode) ? SIZE_MAX : stream_cap ? stream_cap : EM_TEXT_STREAM_CAP;
    em_status st = EM_OK;
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            st = em_error_set(err, EM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        const char *z = memchr(chunk, '\0', (size_t)n);
        size_t keep = z ? (size_t)(z - chunk) + 1 : (size_t)n;
        if (keep > cap - out->len) {
            st = em_error_set(err, EM_ERR_IO,
                              "%s: more than %zu bytes from a pipe or device (not a regular file); "
                              "save it to a file first",
                              path, cap);
            break;
        }
        em_buf_append(out, chunk, keep);
        if (out->failed) {
            st = em_error_set(err, EM_ERR_NOMEM, "%s: out of memory after %zu bytes", path, out->len);
            break;
        }
        if (z) {
            st = em_text_check_binary(path, out->data, out->len, err);
            break;
        }
    }
    close(fd);
    if (st != EM_OK) em_buf_free(out);
    return st;
}
