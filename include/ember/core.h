/* core.h — status codes, error messages, arena allocation and RNG streams.
 *
 * Everything in Ember reports failure the same way: a function returns an em_status and, when
 * the caller passes an em_error, fills it with a message that names the place (file:line:column,
 * site, parameter, value). The library never exits or aborts; GSL's aborting error handler is
 * switched off once, process-wide, by em_init() (called by every constructor that needs it).
 *
 * The arena is a list of blocks that grow and are rewound, never freed per object: the tape
 * allocates every node's values and adjoints from it and rewinds it before each evaluation, so
 * after the first gradient no evaluation allocates (Stan Math's stack_alloc works the same way).
 */
#ifndef EMBER_CORE_H
#define EMBER_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <gsl/gsl_rng.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version (also in the pkg-config file and every CmdStan file Ember writes). */
#define EMBER_VERSION "0.2.0"

typedef enum em_status {
    EM_OK = 0,
    EM_ERR_NOMEM,        /* an allocation failed */
    EM_ERR_ARG,          /* a caller passed an invalid argument or an impossible configuration */
    EM_ERR_SHAPE,        /* lengths or shapes that do not match */
    EM_ERR_INDEX,        /* an index out of range */
    EM_ERR_DOMAIN,       /* a distribution parameter or value outside its domain (log density -inf) */
    EM_ERR_NONFINITE,    /* a NaN or infinite value where a finite one is needed */
    EM_ERR_NUMERIC,      /* a numerical failure: matrix not positive definite, no convergence */
    EM_ERR_MODEL,        /* a model's structure: duplicate or unknown site, changed between runs */
    EM_ERR_IO,           /* a file could not be opened, read, written or renamed */
    EM_ERR_PARSE,        /* malformed input text */
    EM_ERR_INTERRUPTED,  /* the run was interrupted (a signal, a cancel flag); what was produced is kept */
    EM_STATUS_COUNT
} em_status;

/* A status plus a human-readable message. Zero-initialise it (em_error e = {0};). */
typedef struct em_error {
    em_status status;
    char msg[512];
} em_error;

/* The fixed name of a status ("domain error", ...). */
const char *em_status_str(em_status s);

/* Record an error with a printf-style message and return s. err may be NULL (then only s is
 * returned). The first error recorded wins: a later call does not overwrite an earlier one, so
 * the message names the root cause. */
em_status em_error_set(em_error *err, em_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
em_status em_error_vset(em_error *err, em_status s, const char *fmt, va_list ap);
void em_error_clear(em_error *err);

/* Process-wide one-time setup (thread safe, idempotent): switches off GSL's abort handler. */
void em_init(void);

/* ---- arena ---------------------------------------------------------------------------- */

typedef struct em_arena em_arena;

/* A position in an arena, to rewind to later (nested scopes). */
typedef struct em_arena_mark {
    size_t block;
    size_t used;
} em_arena_mark;

em_arena *em_arena_create(size_t initial_bytes);
void em_arena_destroy(em_arena *a);
/* bytes of zeroed-or-not memory, 32-byte aligned; NULL when out of memory. */
void *em_arena_alloc(em_arena *a, size_t bytes);
/* like em_arena_alloc, zero-filled */
void *em_arena_calloc(em_arena *a, size_t bytes);
/* Rewind to empty, keeping the memory. If the last use spilled into several blocks they are
 * merged into one block big enough for all of it, so a steady workload settles into one block. */
void em_arena_reset(em_arena *a);
em_arena_mark em_arena_mark_get(const em_arena *a);
void em_arena_rewind(em_arena *a, em_arena_mark m);
/* Total bytes of blocks held (what the arena has taken from malloc), and bytes in use. */
size_t em_arena_capacity(const em_arena *a);
size_t em_arena_used(const em_arena *a);
/* How many times the arena has called malloc (for the no-allocation-after-warm-up tests). */
size_t em_arena_malloc_count(const em_arena *a);
/* The most bytes handed out between two resets since the arena was made (a rewind does not
 * subtract): for a tape, the footprint of its largest evaluation. Tests use it to check that
 * memory follows one evaluation, not the number of evaluations (particles, draws). */
size_t em_arena_high_water(const em_arena *a);

/* ---- random numbers -------------------------------------------------------------------- */

/* An RNG stream is a GSL generator (gsl_rng, MT19937) seeded from (seed, stream) through a
 * mixing function (SplitMix64), so chain k of seed s always sees the same numbers whatever
 * the thread count. Use it with gsl_ran_* from <gsl/gsl_randist.h>. */
typedef gsl_rng em_rng;
em_rng *em_rng_create(uint64_t seed, uint64_t stream);
void em_rng_destroy(em_rng *r);
/* A 64-bit mix of (seed, stream), used to derive sub-streams. */
uint64_t em_seed_mix(uint64_t seed, uint64_t stream);
/* Uniform double in (0,1), standard normal. */
double em_rng_uniform(em_rng *r);
double em_rng_normal(em_rng *r);

/* ---- small helpers shared by every module ---------------------------------------------- */

/* Write a file atomically: data goes to a temporary file in path's directory, is flushed and
 * fsync'ed, then renamed over path. On any failure the temporary is removed and path is
 * untouched. Where the system allows (Linux's O_TMPFILE) the temporary has no name while it
 * is written, so a process killed meanwhile leaves nothing behind; otherwise, and for the
 * instant before the rename, it is "<path>.tmp.<pid>". */
em_status em_write_file_atomic(const char *path, const char *data, size_t len, em_error *err);

/* The same for a file too large to build in memory first: written piece by piece, then put in
 * place by em_atomic_commit (flushed, fsync'ed, renamed over path) or dropped by
 * em_atomic_abort; path is untouched until the commit succeeds, and no temporary is left
 * after either (a killed process leaves none where O_TMPFILE is available). The handle is
 * freed by the commit or the abort, whatever their outcome. */
typedef struct em_atomic_file em_atomic_file;
em_atomic_file *em_atomic_open(const char *path, em_error *err);
em_status em_atomic_write(em_atomic_file *f, const char *data, size_t len, em_error *err);
em_status em_atomic_commit(em_atomic_file *f, em_error *err);
void em_atomic_abort(em_atomic_file *f);

/* Growable string buffer for building files and messages. */
typedef struct em_buf {
    char *data;
    size_t len, cap;
    int failed; /* set when an allocation failed; later appends are ignored */
} em_buf;
void em_buf_printf(em_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void em_buf_append(em_buf *b, const char *s, size_t n);
void em_buf_free(em_buf *b);

#ifdef __cplusplus
}
#endif
#endif
