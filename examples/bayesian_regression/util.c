/* util.c — see util.h. */
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int util_quiet = 0;

void progress(const char *fmt, ...) {
    if (util_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

em_status make_dirs(const char *dir, em_error *err) {
    size_t n = strlen(dir);
    if (n == 0) return em_error_set(err, EM_ERR_ARG, "output folder: empty path");
    char *p = malloc(n + 1);
    if (!p) return em_error_set(err, EM_ERR_NOMEM, "output folder %s: out of memory", dir);
    memcpy(p, dir, n + 1);
    /* create each prefix in turn, as mkdir -p does */
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            em_status s = em_error_set(err, EM_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return s;
        }
        p[i] = c;
    }
    struct stat st;
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    if (!ok) return em_error_set(err, EM_ERR_IO, "%s exists and is not a folder", dir);
    return EM_OK;
}

char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

em_status write_buf(const char *dir, const char *name, const em_buf *b, em_error *err) {
    char *path = path_join(dir, name);
    if (!path || b->failed) {
        free(path);
        return em_error_set(err, EM_ERR_NOMEM, "%s/%s: out of memory", dir, name);
    }
    em_status s = em_write_file_atomic(path, b->data ? b->data : "", b->len, err);
    free(path);
    return s;
}

void csv_num(em_buf *b, double v, int digits) {
    if (isnan(v)) em_buf_append(b, "NA", 2);
    else em_buf_printf(b, "%.*g", digits, v);
}
