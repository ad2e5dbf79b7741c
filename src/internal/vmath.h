/* internal/vmath.h — e^x and log x on four doubles at once, for the fused GLM kernels.
 *
 * A logistic regression's gradient is one exp and one log per row; glibc's are scalar calls, and
 * on a few thousand rows they, not the pass over X, are most of the gradient's time. These are
 * branch-free (GCC vector extensions: on an AVX2 clone of a kernel each is a few dozen
 * instructions for four lanes, on the portable build two SSE2 halves), use no fused
 * multiply-add (so both builds give the same bits), and are accurate to a couple of ulp:
 *
 *   em_v4_exp: e^x = 2^k e^r, k = round(x / log 2), r = x - k log 2 in two parts (Cody & Waite
 *     1980), e^r by its Taylor series to r^13 (|r| ≤ log 2 / 2: truncation below 5e-18
 *     relative) evaluated by Estrin's scheme, 2^k built in the exponent bits. Results below
 *     2^-1021 (x < -707.7) are 0, above DBL_MAX +inf; NaN stays NaN.
 *   em_v4_log: x = 2^e m with m in [√½, √2), f = m - 1, s = f / (2 + f), and
 *     log m = f - s (f - R(s²)), R the series of 2 atanh(s) / s - 2 to s^20 (|s| ≤ 0.172:
 *     truncation below 1e-18; fdlibm's e_log.c scheme), again by Estrin's scheme. For positive,
 *     normal, finite x only (what the kernels pass: 1 + e^-|η|); other x give unspecified values.
 *
 * The integer views of a lane are unsigned, so no lane operation can overflow a signed type.
 */
#ifndef EMBER_INTERNAL_VMATH_H
#define EMBER_INTERNAL_VMATH_H

#include <stdint.h>
#include <string.h>

typedef double em_v4d __attribute__((vector_size(32)));
typedef uint64_t em_v4u __attribute__((vector_size(32)));
typedef int64_t em_v4i __attribute__((vector_size(32))); /* what a comparison of em_v4d yields */

/* Every function here is always inlined: no call passes or returns a vector, so GCC's note on the
 * ABI of 32-byte vector arguments (-Wpsabi, which its diagnostic pragma cannot silence) is off in
 * the Makefile's warnings. */
#define EM_V4_INLINE static inline __attribute__((always_inline))

#define EM_V4(c) ((em_v4d){(c), (c), (c), (c)})
#define EM_V4U(c) ((em_v4u){(c), (c), (c), (c)})
/* the four lanes' sum, in a fixed order (a macro, for the same ABI reason) */
#define EM_V4_HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))

EM_V4_INLINE em_v4d em_v4_load(const double *p) {
    em_v4d v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}
EM_V4_INLINE void em_v4_store(double *p, em_v4d v) { memcpy(p, &v, sizeof v); }

/* mask ? a : b, lane by lane; mask lanes are all ones or all zeros (a comparison's result) */
EM_V4_INLINE em_v4d em_v4_select(em_v4i mask, em_v4d a, em_v4d b) {
    em_v4u m = (em_v4u)mask;
    return (em_v4d)(((em_v4u)a & m) | ((em_v4u)b & ~m));
}

EM_V4_INLINE em_v4d em_v4_abs(em_v4d x) { return (em_v4d)((em_v4u)x & EM_V4U(0x7fffffffffffffffu)); }

EM_V4_INLINE em_v4d em_v4_exp(em_v4d x) {
    const em_v4d shift = EM_V4(0x1.8p52); /* adding it rounds to an integer, held in the low bits */
    const em_v4d ln2_hi = EM_V4(6.93147180369123816490e-01), ln2_lo = EM_V4(1.90821492927058770002e-10);
    em_v4d t = x * EM_V4(1.4426950408889634) + shift;
    em_v4d k = t - shift;
    em_v4d r = (x - k * ln2_hi) - k * ln2_lo;
    /* Σ_{j≤13} r^j / j! by Estrin's scheme (pairs, then powers r², r⁴, r⁸): a chain of six
     * operations instead of Horner's twenty-six, so the lanes of successive rows overlap */
    em_v4d r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    em_v4d q1 = EM_V4(0.5) + r * EM_V4(1.0 / 6.0);
    em_v4d q2 = EM_V4(1.0 / 24.0) + r * EM_V4(1.0 / 120.0), q3 = EM_V4(1.0 / 720.0) + r * EM_V4(1.0 / 5040.0);
    em_v4d q4 = EM_V4(1.0 / 40320.0) + r * EM_V4(1.0 / 362880.0);
    em_v4d q5 = EM_V4(1.0 / 3628800.0) + r * EM_V4(1.0 / 39916800.0);
    em_v4d q6 = EM_V4(1.0 / 479001600.0) + r * EM_V4(1.0 / 6227020800.0);
    em_v4d s1 = q2 + q3 * r2, s2 = q4 + q5 * r2;
    /* 1 + r last, so that no rounding of 1 + r loses r's low bits */
    em_v4d p = EM_V4(1.0) + (r + ((q1 * r2 + s1 * r4) + (s2 + q6 * r4) * r8));
    /* 2^(k-1) from k's bits in t (t's integer view is shift's plus k), then doubled: k = 1024
     * (x just below log DBL_MAX) has no 2^k of its own */
    em_v4u bits = ((em_v4u)t - (em_v4u)shift + EM_V4U(1022u)) << 52;
    em_v4d y = (p * (em_v4d)bits) * EM_V4(2.0);
    y = em_v4_select(x < EM_V4(-707.7), EM_V4(0.0), y);
    return em_v4_select(x > EM_V4(709.782712893384), EM_V4(__builtin_inf()), y);
}

EM_V4_INLINE em_v4d em_v4_log(em_v4d x) {
    em_v4u u = (em_v4u)x;
    /* the biased exponent as a double: an integer below 2^52 or'ed into 2^52's mantissa */
    em_v4d e = (em_v4d)((u >> 52) | EM_V4U(0x4330000000000000u)) - EM_V4(0x1p52 + 1023.0);
    em_v4d m = (em_v4d)((u & EM_V4U(0x000fffffffffffffu)) | EM_V4U(0x3ff0000000000000u));
    em_v4i big = m > EM_V4(1.4142135623730951);
    m = em_v4_select(big, m * EM_V4(0.5), m);
    e = em_v4_select(big, e + EM_V4(1.0), e);
    em_v4d f = m - EM_V4(1.0), s = f / (EM_V4(2.0) + f), z = s * s;
    /* R = 2 atanh(s)/s - 2 = Σ_{k=1..10} 2 z^k / (2k + 1), by Estrin's scheme as in em_v4_exp */
    em_v4d z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
    em_v4d c0 = EM_V4(2.0 / 3.0) + z * EM_V4(2.0 / 5.0), c1 = EM_V4(2.0 / 7.0) + z * EM_V4(2.0 / 9.0);
    em_v4d c2 = EM_V4(2.0 / 11.0) + z * EM_V4(2.0 / 13.0), c3 = EM_V4(2.0 / 15.0) + z * EM_V4(2.0 / 17.0);
    em_v4d c4 = EM_V4(2.0 / 19.0) + z * EM_V4(2.0 / 21.0);
    em_v4d R = z * (((c0 + c1 * z2) + (c2 + c3 * z2) * z4) + c4 * z8);
    const em_v4d ln2_hi = EM_V4(6.93147180369123816490e-01), ln2_lo = EM_V4(1.90821492927058770002e-10);
    return e * ln2_hi - ((s * (f - R) - e * ln2_lo) - f);
}

#endif
