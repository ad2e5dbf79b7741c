/* csv_shard.c — each rank reads its own part of a data CSV, then the ranks even out the rows.
 *
 * The body of the file (after the header row) is cut into as many byte ranges as there are
 * ranks; each range starts after the first line end at or past its nominal start, so every
 * line belongs to exactly one rank. A rank reads the header and its range only (pread), counts
 * its lines so that the ranks can number them globally (one MPI_Exscan), and parses header +
 * range with the data CSV reader (io.h), told where its body starts so that its messages carry
 * the file's own line numbers. The rows then move between ranks (one MPI_Alltoallv per column)
 * so that rank r holds the standard partition's rows (em_mpi_partition): whole blocks, as the
 * sharded density wants. A rank holds at most its range plus a block's worth of rows in
 * transit; none ever holds the file.
 */
#include "internal/mpi_impl.h"
#include "internal/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* pread until n bytes or the end; -1 on error */
static long long read_at(int fd, char *buf, size_t n, off_t at) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, at + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (long long)got;
}

/* The header: the first line that is not blank (after an optional byte-order mark). Sets
 * *body (offset of the line after it), *hdr (a copy of the bytes [0, body)) and *lines (line
 * ends in [0, body)). */
static em_status read_header(int fd, const char *path, size_t fsize, char **hdr, size_t *body, size_t *lines,
                             em_error *err) {
    size_t cap = 1 << 16, len = 0;
    char *b = NULL;
    for (;;) {
        char *nb = realloc(b, cap);
        if (!nb) {
            free(b);
            return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory reading the header", path);
        }
        b = nb;
        size_t want = cap - len < fsize - len ? cap - len : fsize - len;
        long long k = read_at(fd, b + len, want, (off_t)len);
        if (k < 0) {
            free(b);
            return em_error_set(err, EM_ERR_IO, "%s: %s", path, strerror(errno));
        }
        len += (size_t)k;
        size_t p = len >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, nl = 0;
        while (p < len) {
            char *e = memchr(b + p, '\n', len - p);
            if (!e) break;
            size_t end = (size_t)(e - b) + 1;
            nl++;
            int blank = 1;
            for (size_t i = p; i < end; i++) blank &= b[i] == '\n' || b[i] == '\r' || b[i] == ' ' || b[i] == '\t';
            if (!blank) {
                *hdr = b;
                *body = end;
                *lines = nl;
                return EM_OK;
            }
            p = end;
        }
        if (len == fsize) { /* a header without a line end: no rows */
            *hdr = b;
            *body = len;
            *lines = 0;
            return EM_OK;
        }
        if (cap > ((size_t)1 << 26)) {
            free(b);
            return em_error_set(err, EM_ERR_PARSE, "%s:1: no line end in the first 64 MiB: not a data CSV", path);
        }
        cap *= 2;
    }
}

/* Where this rank's range starts: after the first '\n' at or past the nominal start - 1. */
static em_status range_start(int fd, const char *path, size_t body, size_t fsize, int rank, int size, size_t *start,
                             em_error *err) {
    if (rank == 0) {
        *start = body;
        return EM_OK;
    }
    size_t span = fsize - body;
    size_t at = body + (size_t)((unsigned long long)span * (unsigned long long)rank / (unsigned long long)size);
    if (at <= body) {
        *start = body;
        return EM_OK;
    }
    char buf[4096];
    size_t pos = at - 1; /* the byte before: a line end there makes `at` a line start */
    while (pos < fsize) {
        long long k = read_at(fd, buf, sizeof buf, (off_t)pos);
        if (k < 0) return em_error_set(err, EM_ERR_IO, "%s: %s", path, strerror(errno));
        if (k == 0) break;
        char *e = memchr(buf, '\n', (size_t)k);
        if (e) {
            *start = pos + (size_t)(e - buf) + 1;
            return EM_OK;
        }
        pos += (size_t)k;
    }
    *start = fsize;
    return EM_OK;
}

static size_t count_lines(const char *b, size_t n) {
    size_t c = 0;
    for (const char *p = b, *e = b + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) c++;
    return c;
}

void em_mpi_table_free(em_mpi_table *t) {
    if (!t) return;
    for (size_t j = 0; j < t->ncols; j++) {
        if (t->names) free(t->names[j]);
        if (t->cols) free(t->cols[j]);
    }
    free(t->names);
    free(t->cols);
    free(t->line);
    free(t);
}

const double *em_mpi_table_column(const em_mpi_table *t, const char *name) {
    if (!t || !name) return NULL;
    for (size_t j = 0; j < t->ncols; j++)
        if (strcmp(t->names[j], name) == 0) return t->cols[j];
    return NULL;
}

/* This rank's part: parse header + range. */
static em_status read_part(const char *path, const char *const *columns, size_t ncols, const em_csv_options *opt,
                           MPI_Comm comm, em_csv_table **part, em_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    em_status st = EM_OK;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0) st = em_error_set(err, EM_ERR_IO, "%s: %s", path, strerror(errno));
    else if (fstat(fd, &sb) != 0) st = em_error_set(err, EM_ERR_IO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = em_error_set(err, EM_ERR_IO, "%s: not a regular file (sharded reading cuts the file into byte ranges)", path);
    if (st == EM_OK && opt && opt->ntext_columns)
        st = em_error_set(err, EM_ERR_ARG, "%s: text columns are not supported by the sharded reader", path);
    size_t fsize = st == EM_OK ? (size_t)sb.st_size : 0, body = 0, hlines = 0, start = 0;
    char *hdr = NULL, *buf = NULL;
    if (st == EM_OK && fsize == 0) st = em_error_set(err, EM_ERR_PARSE, "%s:1:1: empty file (no header row)", path);
    if (st == EM_OK) st = read_header(fd, path, fsize, &hdr, &body, &hlines, err);
    if (st == EM_OK) st = range_start(fd, path, body, fsize, rank, size, &start, err);
    st = em_mpi_agree(comm, st, err);
    unsigned long long *starts = malloc((size_t)size * sizeof *starts), mine = start;
    if (st == EM_OK && !starts) st = em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", path);
    st = em_mpi_agree(comm, st, err);
    if (st == EM_OK) MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, starts, 1, MPI_UNSIGNED_LONG_LONG, comm);
    size_t end = st == EM_OK ? (rank + 1 < size ? (size_t)starts[rank + 1] : fsize) : 0;
    free(starts);
    size_t n = end > start ? end - start : 0;
    if (st == EM_OK) {
        buf = malloc(body + n + 1);
        if (!buf) st = em_error_set(err, EM_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    if (st == EM_OK) {
        memcpy(buf, hdr, body);
        long long k = read_at(fd, buf + body, n, (off_t)start);
        if (k < 0 || (size_t)k != n) st = em_error_set(err, EM_ERR_IO, "%s: short read (%s)", path, strerror(errno));
    }
    /* the global line number of this range's first line */
    unsigned long long lines = st == EM_OK ? count_lines(buf + body, n) : 0, before = 0;
    MPI_Exscan(&lines, &before, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
    if (rank == 0) before = 0;
    size_t first_line = hlines + 1 + (size_t)before;
    if (st == EM_OK) {
        const char *z = memchr(buf + body, '\0', n);
        if (z) {
            size_t ln, col;
            em_text_position(buf + body, (size_t)(z - (buf + body)), &ln, &col);
            st = em_error_set(err, EM_ERR_PARSE, "%s:%zu:%zu: binary data (a NUL byte): not a text file", path,
                              first_line + ln - 1, col);
        }
    }
    if (st == EM_OK) {
        em_csv_options o = opt ? *opt : (em_csv_options){0};
        o.body_line = first_line;
        st = em_csv_parse_buffer(path, buf, body + n, columns, ncols, &o, part, err);
    }
    free(buf);
    free(hdr);
    if (fd >= 0) close(fd);
    if ((st = em_mpi_agree(comm, st, err)) != EM_OK) { /* another rank failed: this part is not used */
        em_csv_table_free(*part);
        *part = NULL;
    }
    return st;
}

em_status em_mpi_csv_read(MPI_Comm comm, const char *path, const char *const *columns, size_t ncols,
                          const em_csv_options *opt, size_t block_rows, em_mpi_table **out, em_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    em_error e = {0};
    em_status st = out && path ? EM_OK : em_error_set(&e, EM_ERR_ARG, "em_mpi_csv_read: no path or out is NULL");
    if (out) *out = NULL;
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) return em_error_set(err, st, "%s", e.msg);
    size_t B = block_rows ? block_rows : EM_MPI_DEFAULT_BLOCK_ROWS;
    em_csv_table *part = NULL;
    if ((st = read_part(path, columns, ncols, opt, comm, &part, &e)) != EM_OK) return em_error_set(err, st, "%s", e.msg);

    /* who has which rows now, and who should */
    unsigned long long have[2] = {part->nrows, part->dropped}, *all = malloc((size_t)size * 2 * sizeof *all);
    int *scount = calloc((size_t)size, sizeof *scount), *sdisp = calloc((size_t)size, sizeof *sdisp);
    int *rcount = calloc((size_t)size, sizeof *rcount), *rdisp = calloc((size_t)size, sizeof *rdisp);
    em_mpi_table *t = calloc(1, sizeof *t);
    st = all && scount && sdisp && rcount && rdisp && t ? EM_OK : em_error_set(&e, EM_ERR_NOMEM, "%s: out of memory", path);
    if ((st = em_mpi_agree(comm, st, &e)) == EM_OK) {
        MPI_Allgather(have, 2, MPI_UNSIGNED_LONG_LONG, all, 2, MPI_UNSIGNED_LONG_LONG, comm);
        size_t total = 0, dropped = 0, before = 0;
        for (int r = 0; r < size; r++) {
            if (r < rank) before += (size_t)all[2 * r];
            total += (size_t)all[2 * r];
            dropped += (size_t)all[2 * r + 1];
        }
        size_t nb = total / B + (total % B != 0);
        if (total == 0) st = em_error_set(&e, EM_ERR_PARSE, "%s: no data rows after the header", path);
        else if (nb < (size_t)size)
            st = em_error_set(&e, EM_ERR_ARG, "%s: %zu rows make %zu block%s of %zu rows, fewer than the %d ranks: use "
                                              "fewer ranks or smaller blocks", path, total, nb, nb == 1 ? "" : "s", B, size);
        size_t my_first = 0, my_n = 0;
        em_mpi_partition(total, B, size, rank, &my_first, &my_n);
        /* what I send to r: my rows [before, before + nrows) ∩ r's target rows */
        for (int r = 0; st == EM_OK && r < size; r++) {
            size_t f, c;
            em_mpi_partition(total, B, size, r, &f, &c);
            size_t lo = f > before ? f : before, hi = f + c < before + part->nrows ? f + c : before + part->nrows;
            scount[r] = hi > lo ? (int)(hi - lo) : 0;
            sdisp[r] = hi > lo ? (int)(lo - before) : 0;
        }
        /* what r sends me: r's rows ∩ my target rows */
        size_t rb = 0;
        for (int r = 0; st == EM_OK && r < size; r++) {
            size_t lo = my_first > rb ? my_first : rb, hi = my_first + my_n < rb + (size_t)all[2 * r] ? my_first + my_n : rb + (size_t)all[2 * r];
            rcount[r] = hi > lo ? (int)(hi - lo) : 0;
            rdisp[r] = hi > lo ? (int)(lo - my_first) : 0;
            rb += (size_t)all[2 * r];
        }
        if (st == EM_OK && (my_n > (size_t)INT32_MAX || part->nrows > (size_t)INT32_MAX))
            st = em_error_set(&e, EM_ERR_ARG, "%s: more than 2^31 rows on one rank: use more ranks", path);
        if (st == EM_OK) {
            t->nrows = my_n;
            t->first_row = my_first;
            t->total_rows = total;
            t->dropped = dropped;
            t->block_rows = B;
            t->ncols = part->ncols;
            t->names = calloc(part->ncols ? part->ncols : 1, sizeof *t->names);
            t->cols = calloc(part->ncols ? part->ncols : 1, sizeof *t->cols);
            t->line = malloc((my_n ? my_n : 1) * sizeof *t->line);
            if (!t->names || !t->cols || !t->line) st = em_error_set(&e, EM_ERR_NOMEM, "%s: out of memory", path);
            for (size_t j = 0; st == EM_OK && j < part->ncols; j++) {
                t->names[j] = strdup(part->names[j]);
                t->cols[j] = malloc((my_n ? my_n : 1) * sizeof(double));
                if (!t->names[j] || !t->cols[j])
                    st = em_error_set(&e, EM_ERR_NOMEM, "%s: out of memory for %zu rows", path, my_n);
            }
        }
        if ((st = em_mpi_agree(comm, st, &e)) == EM_OK) {
            for (size_t j = 0; j < part->ncols; j++)
                MPI_Alltoallv(part->cols[j], scount, sdisp, MPI_DOUBLE, t->cols[j], rcount, rdisp, MPI_DOUBLE, comm);
            /* line numbers travel as unsigned long long: size_t has no portable MPI type */
            unsigned long long *ls = malloc((part->nrows ? part->nrows : 1) * sizeof *ls);
            unsigned long long *lr = malloc((my_n ? my_n : 1) * sizeof *lr);
            st = ls && lr ? EM_OK : em_error_set(&e, EM_ERR_NOMEM, "%s: out of memory", path);
            if ((st = em_mpi_agree(comm, st, &e)) == EM_OK) {
                for (size_t i = 0; i < part->nrows; i++) ls[i] = part->line[i];
                MPI_Alltoallv(ls, scount, sdisp, MPI_UNSIGNED_LONG_LONG, lr, rcount, rdisp, MPI_UNSIGNED_LONG_LONG, comm);
                for (size_t i = 0; i < my_n; i++) t->line[i] = (size_t)lr[i];
            }
            free(ls);
            free(lr);
        }
    }
    free(all);
    free(scount);
    free(sdisp);
    free(rcount);
    free(rdisp);
    em_csv_table_free(part);
    if (st != EM_OK) {
        em_mpi_table_free(t);
        return em_error_set(err, st, "%s", e.msg);
    }
    *out = t;
    return EM_OK;
}
