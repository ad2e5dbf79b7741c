/* test_core.c — status messages, the arena, RNG streams, atomic file writes and em_buf. */
#include "util/testutil.h"
#include "internal/sort.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------------------------ */

static void test_error_first_wins(void **state) {
    (void)state;
    em_error e = {0};
    assert_int_equal(em_error_set(&e, EM_ERR_SHAPE, "add: lengths %d and %d", 3, 4), EM_ERR_SHAPE);
    assert_int_equal(e.status, EM_ERR_SHAPE);
    assert_string_equal(e.msg, "add: lengths 3 and 4");
    /* a later error returns its own status but leaves the root cause in place */
    assert_int_equal(em_error_set(&e, EM_ERR_IO, "later %s", "failure"), EM_ERR_IO);
    assert_int_equal(e.status, EM_ERR_SHAPE);
    assert_string_equal(e.msg, "add: lengths 3 and 4");
    em_error_clear(&e);
    assert_int_equal(e.status, EM_OK);
    assert_string_equal(e.msg, "");
    assert_int_equal(em_error_set(&e, EM_ERR_IO, "second"), EM_ERR_IO);
    assert_string_equal(e.msg, "second");
    /* a NULL error only returns the status */
    assert_int_equal(em_error_set(NULL, EM_ERR_ARG, "ignored %d", 1), EM_ERR_ARG);
    em_error_clear(NULL);
}

static void test_error_long_message_truncated(void **state) {
    (void)state;
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    em_error e = {0};
    em_error_set(&e, EM_ERR_PARSE, "%s", big);
    assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
}

static void test_status_names(void **state) {
    (void)state;
    for (int s = 0; s < EM_STATUS_COUNT; s++) {
        const char *name = em_status_str((em_status)s);
        assert_non_null(name);
        assert_true(strlen(name) > 0);
        assert_string_not_equal(name, "unknown status");
        for (int r = 0; r < s; r++) assert_string_not_equal(name, em_status_str((em_status)r));
    }
    assert_string_equal(em_status_str(EM_ERR_NUMERIC), "numerical failure");
    assert_string_equal(em_status_str(EM_STATUS_COUNT), "unknown status");
    assert_string_equal(em_status_str((em_status)-1), "unknown status");
}

/* ---- arena -------------------------------------------------------------------------------- */

static void test_arena_alignment(void **state) {
    (void)state;
    em_arena *a = em_arena_create(100); /* rounded up to a minimum block */
    assert_non_null(a);
    size_t sizes[] = {1, 3, 8, 31, 32, 33, 100, 0, 7, 4096, 5, 70000};
    unsigned char *prev = NULL;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = em_arena_alloc(a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 32, 0);
        assert_true(p != prev); /* even a 0-byte request gets its own address */
        memset(p, 0xAB, sizes[i]);
        prev = p;
    }
    em_arena_destroy(a);
}

static void test_arena_growth_and_reset_merge(void **state) {
    (void)state;
    em_arena *a = em_arena_create(4096);
    size_t cap0 = em_arena_capacity(a);
    assert_int_equal(cap0, 4096);
    assert_int_equal(em_arena_malloc_count(a), 1);
    assert_int_equal(em_arena_used(a), 0);
    /* 10 x 1000 bytes spill over several blocks */
    double *first = em_arena_alloc(a, 1000);
    for (int i = 1; i < 10; i++) assert_non_null(em_arena_alloc(a, 1000));
    size_t cap1 = em_arena_capacity(a), m1 = em_arena_malloc_count(a);
    assert_true(cap1 > cap0);
    assert_true(m1 > 1);
    assert_true(em_arena_used(a) >= 10000);
    /* reset merges the blocks into one that holds the whole workload */
    em_arena_reset(a);
    assert_int_equal(em_arena_used(a), 0);
    assert_int_equal(em_arena_capacity(a), cap1);
    assert_int_equal(em_arena_malloc_count(a), m1 + 1);
    /* the same workload again, and again: no more mallocs, the same capacity */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 10; i++) assert_non_null(em_arena_alloc(a, 1000));
        em_arena_reset(a);
        assert_int_equal(em_arena_capacity(a), cap1);
        assert_int_equal(em_arena_malloc_count(a), m1 + 1);
    }
    (void)first;
    /* a huge request fails cleanly instead of wrapping around */
    assert_null(em_arena_alloc(a, SIZE_MAX));
    assert_null(em_arena_alloc(a, SIZE_MAX - 8));
    assert_non_null(em_arena_alloc(a, 16));
    em_arena_destroy(a);
}

static void test_arena_calloc_after_reuse(void **state) {
    (void)state;
    em_arena *a = em_arena_create(4096);
    unsigned char *p = em_arena_alloc(a, 512);
    memset(p, 0xFF, 512);
    em_arena_reset(a);
    unsigned char *q = em_arena_calloc(a, 512);
    assert_ptr_equal(p, q); /* the same memory, reused */
    for (int i = 0; i < 512; i++) assert_int_equal(q[i], 0);
    em_arena_destroy(a);
}

static void test_arena_mark_rewind(void **state) {
    (void)state;
    em_arena *a = em_arena_create(4096);
    assert_non_null(em_arena_alloc(a, 100));
    em_arena_mark m = em_arena_mark_get(a);
    size_t used = em_arena_used(a);
    void *p1 = em_arena_alloc(a, 200);
    assert_non_null(em_arena_alloc(a, 300));
    em_arena_rewind(a, m);
    assert_int_equal(em_arena_used(a), used);
    assert_ptr_equal(em_arena_alloc(a, 200), p1);
    /* a rewind across a block boundary: the scope spilled into new blocks */
    em_arena_rewind(a, m);
    for (int i = 0; i < 20; i++) assert_non_null(em_arena_alloc(a, 1000));
    assert_true(em_arena_capacity(a) > 4096);
    em_arena_rewind(a, m);
    assert_int_equal(em_arena_used(a), used);
    assert_ptr_equal(em_arena_alloc(a, 200), p1);
    /* nested marks */
    em_arena_mark m2 = em_arena_mark_get(a);
    void *p2 = em_arena_alloc(a, 64);
    em_arena_alloc(a, 64);
    em_arena_rewind(a, m2);
    assert_ptr_equal(em_arena_alloc(a, 64), p2);
    em_arena_destroy(a);
    em_arena_destroy(NULL);
}

/* ---- RNG streams ------------------------------------------------------------------------- */

static void draw(uint64_t seed, uint64_t stream, double *out, size_t n) {
    em_rng *r = em_rng_create(seed, stream);
    assert_non_null(r);
    for (size_t i = 0; i < n; i++) out[i] = em_rng_uniform(r);
    em_rng_destroy(r);
}

static void test_rng_streams(void **state) {
    (void)state;
    enum { N = 64 };
    double a[N], b[N], c[N], d[N];
    draw(42, 0, a, N);
    draw(42, 0, b, N);
    assert_memory_equal(a, b, sizeof a); /* reproducible */
    draw(42, 1, c, N);
    draw(43, 0, d, N);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < N; i++) {
        assert_true(a[i] > 0.0 && a[i] < 1.0);
        same_c += a[i] == c[i];
        same_d += a[i] == d[i];
    }
    assert_int_equal(same_c, 0); /* distinct per stream */
    assert_int_equal(same_d, 0); /* distinct per seed */
    /* the mix is a function of both arguments, and not symmetric in them */
    assert_true(em_seed_mix(1, 2) == em_seed_mix(1, 2));
    assert_true(em_seed_mix(1, 2) != em_seed_mix(2, 1));
    assert_true(em_seed_mix(0, 0) != em_seed_mix(0, 1));
    /* 1000 streams of one seed: all first draws distinct */
    double first[1000];
    for (int s = 0; s < 1000; s++) draw(7, (uint64_t)s, &first[s], 1);
    for (int s = 0; s < 1000; s++)
        for (int r = 0; r < s; r++) assert_true(first[s] != first[r]);
    em_rng_destroy(NULL);
}

static void test_rng_normal_moments(void **state) {
    (void)state;
    em_rng *r = em_rng_create(2024, 3);
    enum { N = 200000 };
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        double z = em_rng_normal(r);
        s += z;
        s2 += z * z;
    }
    em_rng_destroy(r);
    double mean = s / N, var = s2 / N - mean * mean;
    /* 5 standard errors: sd(mean) = 1/sqrt(N), sd(var) ≈ sqrt(2/N) */
    assert_true(fabs(mean) < 5.0 / sqrt(N));
    assert_true(fabs(var - 1.0) < 5.0 * sqrt(2.0 / N));
}

/* ---- atomic file write --------------------------------------------------------------------- */

static char tmpdir[256];

static int setup_dir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ember_test_core_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Count directory entries whose name contains ".tmp." (left-over temporaries). */
static int count_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* A process killed while it writes a big file (SIGKILL here: as final as a SIGTERM without a
 * handler) leaves neither the file nor a temporary behind. */
static void test_write_atomic_killed_midway(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/big.csv", tmpdir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        size_t len = (size_t)256 << 20;
        char *data = malloc(len);
        if (!data) _exit(2);
        memset(data, '7', len);
        kill(getpid(), SIGSTOP); /* the parent resumes us, then kills us while we write */
        em_write_file_atomic(path, data, len, NULL);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
    assert_true(WIFSTOPPED(st));
    /* resume, and kill once the child has the file open for writing: an fd of its that points
     * into tmpdir (named or not) */
    kill(pid, SIGCONT);
    char fddir[64];
    snprintf(fddir, sizeof fddir, "/proc/%ld/fd", (long)pid);
    int writing = 0;
    for (int spin = 0; spin < 2000000 && !writing; spin++) {
        DIR *d = opendir(fddir);
        if (!d) break;
        struct dirent *de;
        while (!writing && (de = readdir(d))) {
            char link[640], target[640];
            snprintf(link, sizeof link, "%s/%s", fddir, de->d_name);
            ssize_t k = readlink(link, target, sizeof target - 1);
            if (k > 0) target[k] = '\0';
            writing = k > 0 && strncmp(target, tmpdir, strlen(tmpdir)) == 0;
        }
        closedir(d);
    }
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!writing) skip(); /* the write finished before we saw it: nothing to check */
    assert_true(WIFSIGNALED(st));
    assert_int_equal(count_temporaries(tmpdir), 0);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_write_atomic(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/out.csv", tmpdir);
    em_error e = {0};
    const char *text = "a,b\n1,2\n";
    assert_int_equal(em_write_file_atomic(path, text, strlen(text), &e), EM_OK);
    size_t len;
    char *got = slurp(path, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(got, text, len);
    free(got);
    /* overwrite with different, shorter content */
    assert_int_equal(em_write_file_atomic(path, "x\n", 2, &e), EM_OK);
    got = slurp(path, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(got, "x\n", 2);
    free(got);
    /* empty content */
    assert_int_equal(em_write_file_atomic(path, "", 0, &e), EM_OK);
    got = slurp(path, &len);
    assert_int_equal(len, 0);
    free(got);
    assert_int_equal(count_temporaries(tmpdir), 0);
}

/* Written in pieces: the old content stays in place until the commit; an abort keeps it; a
 * commit that cannot rename leaves no temporary. */
static void test_atomic_pieces(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/pieces.csv", tmpdir);
    em_error e = {0};
    assert_int_equal(em_write_file_atomic(path, "old\n", 4, &e), EM_OK);
    em_atomic_file *f = em_atomic_open(path, &e);
    assert_non_null(f);
    for (int k = 0; k < 1000; k++) {
        char line[32];
        int n = snprintf(line, sizeof line, "%d,%d\n", k, k * k);
        assert_int_equal(em_atomic_write(f, line, (size_t)n, &e), EM_OK);
    }
    size_t len = 0;
    char *got = slurp(path, &len);
    assert_non_null(got);
    assert_int_equal(len, 4); /* not yet replaced */
    free(got);
    assert_int_equal(em_atomic_commit(f, &e), EM_OK);
    got = slurp(path, &len);
    assert_true(len > 4000);
    assert_memory_equal(got, "0,0\n1,1\n2,4\n", 12);
    assert_memory_equal(got + len - 11, "999,998001\n", 11);
    free(got);
    f = em_atomic_open(path, &e);
    assert_non_null(f);
    assert_int_equal(em_atomic_write(f, "partial", 7, &e), EM_OK);
    em_atomic_abort(f);
    got = slurp(path, &len);
    assert_true(len > 4000); /* the committed file, untouched */
    free(got);
    assert_int_equal(count_temporaries(tmpdir), 0);
    /* the target is a directory: the commit fails naming the rename, nothing is left */
    char target[512];
    snprintf(target, sizeof target, "%s/pieces_dir", tmpdir);
    assert_int_equal(mkdir(target, 0755), 0);
    f = em_atomic_open(target, &e);
    assert_non_null(f);
    assert_int_equal(em_atomic_write(f, "x", 1, &e), EM_OK);
    assert_int_equal(em_atomic_commit(f, &e), EM_ERR_IO);
    assert_non_null(strstr(e.msg, "rename"));
    assert_int_equal(count_temporaries(tmpdir), 0);
    assert_int_equal(rmdir(target), 0);
    assert_int_equal(unlink(path), 0);
    em_error e2 = {0};
    snprintf(path, sizeof path, "%s/no_such_dir/x.csv", tmpdir);
    assert_null(em_atomic_open(path, &e2));
    assert_int_equal(e2.status, EM_ERR_IO);
    assert_non_null(strstr(e2.msg, "no_such_dir"));
}

static void test_write_atomic_failures(void **state) {
    (void)state;
    char path[512];
    em_error e = {0};
    /* a directory that does not exist: the temporary cannot be created */
    snprintf(path, sizeof path, "%s/no_such_dir/out.csv", tmpdir);
    assert_int_equal(em_write_file_atomic(path, "x", 1, &e), EM_ERR_IO);
    assert_non_null(strstr(e.msg, "no_such_dir"));
    assert_non_null(strstr(e.msg, "cannot create"));

    /* the target is a directory: the rename fails, the temporary must be removed, the
     * directory left as it was */
    char target[512];
    snprintf(target, sizeof target, "%s/a_directory", tmpdir);
    assert_int_equal(mkdir(target, 0755), 0);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/keep", target);
    FILE *f = fopen(inner, "w");
    assert_non_null(f);
    fclose(f);
    em_error_clear(&e);
    assert_int_equal(em_write_file_atomic(target, "data", 4, &e), EM_ERR_IO);
    assert_non_null(strstr(e.msg, "rename"));
    assert_int_equal(count_temporaries(tmpdir), 0);
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(stat(inner, &st), 0);

    /* a directory without write permission (root ignores permissions: checked only as a user) */
    if (geteuid() != 0) {
        char ro[512], ro_path[600];
        snprintf(ro, sizeof ro, "%s/read_only", tmpdir);
        assert_int_equal(mkdir(ro, 0555), 0);
        snprintf(ro_path, sizeof ro_path, "%s/out.csv", ro);
        em_error_clear(&e);
        assert_int_equal(em_write_file_atomic(ro_path, "x", 1, &e), EM_ERR_IO);
        assert_non_null(strstr(e.msg, "read_only"));
        assert_int_equal(count_temporaries(ro), 0);
        assert_int_not_equal(access(ro_path, F_OK), 0);
        rmdir(ro);
    }

    /* a path too long for the temporary name */
    char *longpath = malloc(5000);
    memset(longpath, 'a', 4999);
    longpath[4999] = '\0';
    em_error_clear(&e);
    assert_int_equal(em_write_file_atomic(longpath, "x", 1, &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "too long"));
    free(longpath);

    /* err may be NULL */
    snprintf(path, sizeof path, "%s/no_such_dir/out.csv", tmpdir);
    assert_int_equal(em_write_file_atomic(path, "x", 1, NULL), EM_ERR_IO);
    assert_int_equal(count_temporaries(tmpdir), 0);
    rmdir(target); /* fails (not empty) — cleanup below */
    unlink(inner);
    rmdir(target);
}

static int teardown_dir(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/out.csv", tmpdir);
    unlink(path);
    return rmdir(tmpdir);
}

/* ---- em_buf ------------------------------------------------------------------------------ */

/* em_sort_doubles and em_sort_order against qsort: sizes either side of the insertion cutoff,
 * ties, signed zeros, infinities, values that share their high bytes (one byte pass skipped) and
 * values spread over every exponent. */
static void test_sort(void **state) {
    (void)state;
    enum { N = 3000 };
    static double x[N], y[N], z[N];
    static size_t ord[N];
    static const size_t ns[] = {0, 1, 2, 5, 31, 32, 33, 100, 1000, N};
    for (int kind = 0; kind < 3; kind++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            size_t n = ns[a];
            tu_fill_uniform(x, n, kind == 1 ? 1.0 : -3.0, kind == 1 ? 1.001 : 3.0, 40 + (uint64_t)a);
            for (size_t i = 0; kind == 2 && i < n; i++) x[i] = ldexp(x[i], (int)(i % 2000) - 1000);
            for (size_t i = 0; i + 3 < n; i += 11) x[i] = x[i + 3]; /* ties */
            if (n > 8 && kind == 0) {
                x[1] = 0.0;
                x[2] = -0.0;
                x[3] = INFINITY;
                x[4] = -INFINITY;
                x[5] = 0.0;
            }
            memcpy(y, x, n * sizeof *x);
            memcpy(z, x, n * sizeof *x);
            qsort(y, n, sizeof *y, tu_cmp_double);
            em_sort_doubles(z, n);
            for (size_t i = 0; i < n; i++) assert_true(z[i] == y[i]);
            assert_int_equal(em_sort_order(x, n, ord), 0);
            for (size_t i = 0; i < n; i++) {
                assert_true(x[ord[i]] == y[i]);
                /* stable: equal values (the same bits: -0 sorts before +0) keep their order */
                if (i && memcmp(&x[ord[i]], &x[ord[i - 1]], sizeof *x) == 0) assert_true(ord[i] > ord[i - 1]);
            }
        }
}

static void test_buf(void **state) {
    (void)state;
    em_buf b = {0};
    em_buf_append(&b, "abc", 3);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    em_buf_printf(&b, ",%d,%.3f", 42, 1.5);
    assert_string_equal(b.data, "abc,42,1.500");
    assert_int_equal(b.len, strlen(b.data));
    /* a formatted piece longer than the printf's stack buffer */
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    em_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, 12 + 2 + 2999);
    assert_int_equal(b.data[12], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.cap > b.len);
    assert_false(b.failed);
    /* many small appends */
    for (int i = 0; i < 10000; i++) em_buf_append(&b, "0123456789", 10);
    assert_int_equal(b.len, 12 + 2 + 2999 + 100000);
    assert_int_equal(b.data[b.len - 1], '9');
    em_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* usable again after free */
    em_buf_printf(&b, "%s", "again");
    assert_string_equal(b.data, "again");
    em_buf_free(&b);
}

int main(void) {
    em_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_first_wins),
        cmocka_unit_test(test_error_long_message_truncated),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_growth_and_reset_merge),
        cmocka_unit_test(test_arena_calloc_after_reuse),
        cmocka_unit_test(test_arena_mark_rewind),
        cmocka_unit_test(test_rng_streams),
        cmocka_unit_test(test_rng_normal_moments),
        cmocka_unit_test(test_write_atomic),
        cmocka_unit_test(test_write_atomic_killed_midway),
        cmocka_unit_test(test_write_atomic_failures),
        cmocka_unit_test(test_atomic_pieces),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_sort),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
