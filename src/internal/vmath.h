/* internal/vmath.h — e^x and log x on four or eight doubles at once, for the fused GLM kernels.
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
 * Each function comes in two widths, em_v4_* on em_v4d and em_v8_* on em_v8d, from one body
 * (internal/vmath_lanes.h, included once per width): lane for lane the two give the same bits.
 * Eight lanes are one instruction on an AVX-512 clone and two independent ones on AVX2; a
 * kernel whose rows are a long chain of dependent operations (an exp, then divisions, then a
 * log) keeps twice as many rows in flight with them.
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
typedef double em_v8d __attribute__((vector_size(64)));
typedef uint64_t em_v8u __attribute__((vector_size(64)));
typedef int64_t em_v8i __attribute__((vector_size(64)));

/* Every function here is always inlined: no call passes or returns a vector, so GCC's note on the
 * ABI of 32- and 64-byte vector arguments (-Wpsabi, which its diagnostic pragma cannot silence) is
 * off in the Makefile's warnings. */
#define EM_V_INLINE static inline __attribute__((always_inline))
#define EM_V4_INLINE EM_V_INLINE

#define EM_V4(c) ((em_v4d){(c), (c), (c), (c)})
#define EM_V4U(c) ((em_v4u){(c), (c), (c), (c)})
#define EM_V8(c) ((em_v8d){(c), (c), (c), (c), (c), (c), (c), (c)})
#define EM_V8U(c) ((em_v8u){(c), (c), (c), (c), (c), (c), (c), (c)})
/* the lanes' sum, in a fixed order (a macro, for the same ABI reason) */
#define EM_V4_HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))
#define EM_V8_HSUM(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))

#define EM_VD em_v4d
#define EM_VU em_v4u
#define EM_VI em_v4i
#define EM_VFN(name) em_v4_##name
#define EM_VSPLAT EM_V4
#define EM_VSPLATU EM_V4U
#include "internal/vmath_lanes.h"

#define EM_VD em_v8d
#define EM_VU em_v8u
#define EM_VI em_v8i
#define EM_VFN(name) em_v8_##name
#define EM_VSPLAT EM_V8
#define EM_VSPLATU EM_V8U
#include "internal/vmath_lanes.h"

#endif
