/* bench.h — timing for the benchmarks: a subject against its baseline, in the same run.
 *
 * Each timed repeat lasts at least 0.3 s; the baseline and the subject take turns, so a change
 * in machine load during the run hits both alike. Reported: the median time of each and the
 * median of the per-round ratios, so one disturbed repeat does not move the figures. Nothing
 * here asserts a time.
 */
#ifndef EMBER_BENCH_H
#define EMBER_BENCH_H

#include <stdlib.h>
#include <time.h>

typedef void (*bench_fn)(void *ctx);

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Iterations for one repeat to last at least min_s seconds. */
static inline size_t bench_calibrate(bench_fn fn, void *ctx, double min_s) {
    size_t iters = 1;
    for (;;) {
        double t0 = bench_now();
        for (size_t i = 0; i < iters; i++) fn(ctx);
        if (bench_now() - t0 >= min_s) return iters;
        iters *= 2;
    }
}

static inline double bench_repeat_us(bench_fn fn, void *ctx, size_t iters) {
    double t0 = bench_now();
    for (size_t i = 0; i < iters; i++) fn(ctx);
    return (bench_now() - t0) / (double)iters * 1e6;
}

enum { BENCH_REPEATS = 7 };

/* Median microseconds per call of base and subject, and the median ratio subject/base. */
static inline void bench_pair(bench_fn base, void *bctx, bench_fn subj, void *sctx, double *base_us,
                              double *subj_us, double *ratio) {
    size_t nb = bench_calibrate(base, bctx, 0.3), ns = bench_calibrate(subj, sctx, 0.3);
    double b[BENCH_REPEATS], s[BENCH_REPEATS], r[BENCH_REPEATS];
    for (int k = 0; k < BENCH_REPEATS; k++) {
        b[k] = bench_repeat_us(base, bctx, nb);
        s[k] = bench_repeat_us(subj, sctx, ns);
        r[k] = s[k] / b[k];
    }
    qsort(b, BENCH_REPEATS, sizeof b[0], bench_cmp_double);
    qsort(s, BENCH_REPEATS, sizeof s[0], bench_cmp_double);
    qsort(r, BENCH_REPEATS, sizeof r[0], bench_cmp_double);
    *base_us = b[BENCH_REPEATS / 2];
    *subj_us = s[BENCH_REPEATS / 2];
    *ratio = r[BENCH_REPEATS / 2];
}

#endif
