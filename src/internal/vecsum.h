/* internal/vecsum.h — sums and dot products with four accumulators, shared by the tape and loo.
 *
 * ad.c sums a node's values and adjoints with them; loo.c its weights over thousands of draws
 * per observation. */
#ifndef EMBER_INTERNAL_VECSUM_H
#define EMBER_INTERNAL_VECSUM_H

#include <stddef.h>
#include <string.h>

/* Sums over a vector with four independent accumulators: a single running sum is bound by the
 * latency of one floating-point add per element (about 4 cycles); four chains let the adds
 * overlap. The result is as accurate as the plain loop, or slightly more. The four chains are
 * two pairs of lanes (GCC/clang vector types, SSE2 on any x86-64): the same additions in the
 * same order as four scalars, so the same result, in half the instructions. */
#if defined(__GNUC__)
typedef double em_v2d __attribute__((vector_size(16)));
static inline em_v2d em_load2(const double *p) {
    em_v2d v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}
static inline double em_sum_vec(const double *x, size_t n) {
    em_v2d a = {0.0, 0.0}, b = {0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += em_load2(x + i);
        b += em_load2(x + i + 2);
    }
    double s0 = a[0];
    for (; i < n; i++) s0 += x[i];
    return (s0 + a[1]) + (b[0] + b[1]);
}

static inline double em_dot_vec(const double *x, const double *y, size_t n) {
    em_v2d a = {0.0, 0.0}, b = {0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += em_load2(x + i) * em_load2(y + i);
        b += em_load2(x + i + 2) * em_load2(y + i + 2);
    }
    double s0 = a[0];
    for (; i < n; i++) s0 += x[i] * y[i];
    return (s0 + a[1]) + (b[0] + b[1]);
}
#else
static inline double em_sum_vec(const double *x, size_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

static inline double em_dot_vec(const double *x, const double *y, size_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++) s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}
#endif

#endif
