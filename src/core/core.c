/* core.c — status messages, the arena, RNG streams, atomic file writes. See core.h. */
#define _GNU_SOURCE /* O_TMPFILE, for atomic writes that leave nothing behind when killed */
#include "ember/core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>

static const char *const status_names[EM_STATUS_COUNT] = {
    [EM_OK] = "ok",
    [EM_ERR_NOMEM] = "out of memory",
    [EM_ERR_ARG] = "invalid argument",
    [EM_ERR_SHAPE] = "shape mismatch",
    [EM_ERR_INDEX] = "index out of range",
    [EM_ERR_DOMAIN] = "domain error",
    [EM_ERR_NONFINITE] = "non-finite value",
    [EM_ERR_NUMERIC] = "numerical failure",
    [EM_ERR_MODEL] = "model error",
    [EM_ERR_IO] = "i/o error",
    [EM_ERR_PARSE] = "parse error",
    [EM_ERR_INTERRUPTED] = "interrupted",
};

const char *em_status_str(em_status s) {
    if ((int)s < 0 || s >= EM_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

em_status em_error_vset(em_error *err, em_status s, const char *fmt, va_list ap) {
    if (!err || err->status != EM_OK) return s;
    err->status = s;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return s;
}

em_status em_error_set(em_error *err, em_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    em_error_vset(err, s, fmt, ap);
    va_end(ap);
    return s;
}

void em_error_clear(em_error *err) {
    if (!err) return;
    err->status = EM_OK;
    err->msg[0] = '\0';
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_process(void) { gsl_set_error_handler_off(); }
void em_init(void) { pthread_once(&init_once, init_process); }

/* ---- arena ---------------------------------------------------------------------------- */

#define ARENA_ALIGN 32u

typedef struct arena_block {
    unsigned char *mem;
    size_t size;
} arena_block;

struct em_arena {
    arena_block *blocks;
    size_t nblocks, cap_blocks;
    size_t cur;        /* block being filled */
    size_t used;       /* bytes used in blocks[cur] */
    size_t peak_total; /* bytes used across blocks since the last reset */
    size_t high_water; /* the largest peak_total since creation */
    size_t mallocs;
};

static int arena_add_block(em_arena *a, size_t size) {
    if (a->nblocks == a->cap_blocks) {
        size_t nc = a->cap_blocks ? 2 * a->cap_blocks : 4;
        arena_block *nb = realloc(a->blocks, nc * sizeof *nb);
        if (!nb) return -1;
        a->blocks = nb;
        a->cap_blocks = nc;
    }
    unsigned char *mem = aligned_alloc(ARENA_ALIGN, (size + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!mem) return -1;
    a->mallocs++;
    a->blocks[a->nblocks].mem = mem;
    a->blocks[a->nblocks].size = size;
    a->nblocks++;
    return 0;
}

em_arena *em_arena_create(size_t initial_bytes) {
    em_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    if (initial_bytes < 4096) initial_bytes = 4096;
    if (arena_add_block(a, initial_bytes) != 0) {
        free(a->blocks);
        free(a);
        return NULL;
    }
    return a;
}

void em_arena_destroy(em_arena *a) {
    if (!a) return;
    for (size_t i = 0; i < a->nblocks; i++) free(a->blocks[i].mem);
    free(a->blocks);
    free(a);
}

void *em_arena_alloc(em_arena *a, size_t bytes) {
    /* a size near SIZE_MAX would wrap to a small rounded size and hand out a tiny block */
    if (bytes > SIZE_MAX / 2) return NULL;
    size_t need = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (need == 0) need = ARENA_ALIGN;
    while (a->used + need > a->blocks[a->cur].size) {
        /* move to the next block that fits, or add one twice as big as the last */
        if (a->cur + 1 < a->nblocks) {
            a->cur++;
            a->used = 0;
            continue;
        }
        size_t size = 2 * a->blocks[a->nblocks - 1].size;
        if (size < need) size = need;
        if (arena_add_block(a, size) != 0) return NULL;
        a->cur = a->nblocks - 1;
        a->used = 0;
    }
    void *p = a->blocks[a->cur].mem + a->used;
    a->used += need;
    a->peak_total += need;
    if (a->peak_total > a->high_water) a->high_water = a->peak_total;
    return p;
}

void *em_arena_calloc(em_arena *a, size_t bytes) {
    void *p = em_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void em_arena_reset(em_arena *a) {
    if (a->nblocks > 1 && a->cur > 0) {
        /* The last use spilled over: replace all blocks with one that holds everything. */
        size_t total = 0;
        for (size_t i = 0; i < a->nblocks; i++) total += a->blocks[i].size;
        unsigned char *mem = aligned_alloc(ARENA_ALIGN, (total + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
        if (mem) {
            a->mallocs++;
            for (size_t i = 0; i < a->nblocks; i++) free(a->blocks[i].mem);
            a->blocks[0].mem = mem;
            a->blocks[0].size = total;
            a->nblocks = 1;
        }
    }
    a->cur = 0;
    a->used = 0;
    a->peak_total = 0;
}

em_arena_mark em_arena_mark_get(const em_arena *a) {
    em_arena_mark m = {a->cur, a->used};
    return m;
}

void em_arena_rewind(em_arena *a, em_arena_mark m) {
    a->cur = m.block;
    a->used = m.used;
}

size_t em_arena_capacity(const em_arena *a) {
    size_t total = 0;
    for (size_t i = 0; i < a->nblocks; i++) total += a->blocks[i].size;
    return total;
}

size_t em_arena_used(const em_arena *a) {
    size_t total = a->used;
    for (size_t i = 0; i < a->cur; i++) total += a->blocks[i].size;
    return total;
}

size_t em_arena_malloc_count(const em_arena *a) { return a->mallocs; }
size_t em_arena_high_water(const em_arena *a) { return a->high_water; }

/* ---- random numbers -------------------------------------------------------------------- */

/* SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix with good avalanche,
 * so nearby (seed, stream) pairs give unrelated generator seeds. */
static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t em_seed_mix(uint64_t seed, uint64_t stream) {
    return splitmix64(splitmix64(seed) ^ splitmix64(stream + 0x632be59bd9b4e019ULL));
}

em_rng *em_rng_create(uint64_t seed, uint64_t stream) {
    em_init();
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) return NULL;
    uint64_t s = em_seed_mix(seed, stream);
    /* MT19937 takes 32 bits of seed; fold the high half in rather than dropping it. */
    unsigned long s32 = (unsigned long)((s ^ (s >> 32)) & 0xffffffffUL);
    gsl_rng_set(r, s32 ? s32 : 4357UL);
    return r;
}

void em_rng_destroy(em_rng *r) {
    if (r) gsl_rng_free(r);
}

double em_rng_uniform(em_rng *r) { return gsl_rng_uniform_pos(r); }
double em_rng_normal(em_rng *r) { return gsl_ran_gaussian_ziggurat(r, 1.0); }

/* ---- atomic files and buffers --------------------------------------------------------- */

/* Write data to fd. NULL, or "write" with errno set. */
static const char *write_all(int fd, const char *data, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return "write";
        }
        off += (size_t)w;
    }
    return NULL;
}

/* Write data to fd and flush it to disk. NULL, or what failed ("write", "flush") with errno set. */
static const char *write_fsync(int fd, const char *data, size_t len) {
    const char *what = write_all(fd, data, len);
    if (what) return what;
    return fsync(fd) != 0 ? "flush" : NULL;
}

/* Write data to a new file, flushed and closed, that is in place under the name tmp. Where
 * the system allows (O_TMPFILE) the file has no name while it is written and is linked as tmp
 * at the end, so a process killed meanwhile (SIGTERM from a job scheduler, a second Ctrl-C)
 * leaves nothing behind; otherwise it is written under tmp. On failure nothing is left. */
static em_status write_temporary(const char *path, const char *tmp, const char *data, size_t len, em_error *err) {
#ifdef O_TMPFILE
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t dl = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, slash ? path : ".", dl);
    dir[dl] = '\0';
    int fd = open(dir, O_WRONLY | O_TMPFILE, 0644);
    if (fd >= 0) {
        const char *what = write_fsync(fd, data, len);
        int e = errno;
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        int linked = !what && linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0;
        if (!what && close(fd) != 0) what = "flush", e = errno;
        else if (what) close(fd);
        if (what) {
            if (linked) unlink(tmp);
            return em_error_set(err, EM_ERR_IO, "%s: %s failed: %s", tmp, what, strerror(e));
        }
        if (linked) return EM_OK;
        /* no /proc to link through (or tmp exists): write it again under the name */
    }
#endif
    int fd2 = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd2 < 0) return em_error_set(err, EM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *what = write_fsync(fd2, data, len);
    int e = errno;
    if (close(fd2) != 0 && !what) what = "flush", e = errno;
    if (what) {
        unlink(tmp);
        return em_error_set(err, EM_ERR_IO, "%s: %s failed: %s", tmp, what, strerror(e));
    }
    return EM_OK;
}

em_status em_write_file_atomic(const char *path, const char *data, size_t len, em_error *err) {
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        /* the reason first: a path this long would push it past the end of the message */
        return em_error_set(err, EM_ERR_ARG, "write_file_atomic: path too long (%zu bytes): %s", strlen(path), path);
    em_status s = write_temporary(path, tmp, data, len, err);
    if (s != EM_OK) return s;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return em_error_set(err, EM_ERR_IO, "%s: rename to %s failed: %s", tmp, path, strerror(e));
    }
    return EM_OK;
}

/* ---- a file written atomically in pieces -------------------------------------------------- */

struct em_atomic_file {
    int fd;
    int unnamed; /* O_TMPFILE: linked under tmp at the commit */
    char path[4096], tmp[4096];
};

em_atomic_file *em_atomic_open(const char *path, em_error *err) {
    em_atomic_file *f = calloc(1, sizeof *f);
    if (!f) {
        em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    int n = snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof f->tmp) {
        em_error_set(err, EM_ERR_ARG, "atomic file: path too long (%zu bytes): %s", strlen(path), path);
        free(f);
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fd = -1;
#ifdef O_TMPFILE
    /* unnamed while written, as em_write_file_atomic's, when /proc can link it at the end */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t dl = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, slash ? path : ".", dl);
    dir[dl] = '\0';
    f->fd = open(dir, O_WRONLY | O_TMPFILE, 0644);
    if (f->fd >= 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
        if (access(proc, F_OK) == 0) {
            f->unnamed = 1;
            return f;
        }
        close(f->fd);
    }
#endif
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0) {
        em_error_set(err, EM_ERR_IO, "%s: cannot create: %s", f->tmp, strerror(errno));
        free(f);
        return NULL;
    }
    return f;
}

em_status em_atomic_write(em_atomic_file *f, const char *data, size_t len, em_error *err) {
    if (!f) return em_error_set(err, EM_ERR_ARG, "atomic file: not open");
    if (write_all(f->fd, data, len))
        return em_error_set(err, EM_ERR_IO, "%s: write failed: %s", f->unnamed ? f->path : f->tmp, strerror(errno));
    return EM_OK;
}

void em_atomic_abort(em_atomic_file *f) {
    if (!f) return;
    close(f->fd);
    if (!f->unnamed) unlink(f->tmp);
    free(f);
}

em_status em_atomic_commit(em_atomic_file *f, em_error *err) {
    if (!f) return em_error_set(err, EM_ERR_ARG, "atomic file: not open");
    const char *what = fsync(f->fd) != 0 ? "flush" : NULL;
    int e = errno;
    if (!what && f->unnamed) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp, AT_SYMLINK_FOLLOW) != 0) what = "link", e = errno;
        else f->unnamed = 0; /* named now: an abort removes it */
    }
    if (!what) {
        int c = close(f->fd);
        f->fd = -1;
        if (c != 0) what = "flush", e = errno;
    }
    if (!what && rename(f->tmp, f->path) != 0) what = "rename", e = errno;
    if (what) {
        em_status s = em_error_set(err, EM_ERR_IO, "%s: %s failed: %s", f->tmp, what, strerror(e));
        if (f->fd >= 0) close(f->fd);
        if (!f->unnamed) unlink(f->tmp);
        free(f);
        return s;
    }
    free(f);
    return EM_OK;
}

void em_buf_append(em_buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *nd = realloc(b->data, nc);
        if (!nd) {
            b->failed = 1;
            return;
        }
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void em_buf_printf(em_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        em_buf_append(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    em_buf_append(b, big, (size_t)n);
    free(big);
}

void em_buf_free(em_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}
