/* internal/mathx.h — scalar math helpers shared by the modules.
 *
 * em_math_lgamma: log|Γ(x)| without the C library's lgamma, which writes the global `signgam` and so
 * races when chains evaluate densities on several threads. glibc's reentrant lgamma_r is only
 * declared under _DEFAULT_SOURCE, which this build does not enable, so it is declared here.
 *
 * The others are the log-scale helpers of Stan's functions reference ("Composed functions"),
 * written so that neither tail overflows nor loses the small quantity: the ops of ad.c and the
 * CDFs of dist use the same ones, so a density and the op it could be written with agree.
 */
#ifndef EMBER_INTERNAL_MATHX_H
#define EMBER_INTERNAL_MATHX_H

#include <math.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sf_erf.h>
#include <gsl/gsl_sf_psi.h>

double lgamma_r(double x, int *sign);

static inline double em_math_lgamma(double x) {
    int sign;
    return lgamma_r(x, &sign);
}

/* log(1 + x) for x > -1 through log, which glibc computes several times faster than log1p:
 * w = 1 + x rounds, but w - 1 is exact, and log(1 + x) = log(w) + log(1 + (x - (w - 1))/w),
 * whose second term is (x - (w - 1))/w to within its square (below 1e-32). Accurate to a few
 * ulp over the whole range (the rounding-error argument of Goldberg 1991, "What every computer
 * scientist should know about floating-point arithmetic", theorem 4). inv_w, when the caller
 * has 1/(1 + x) already (the sigmoid's denominator), saves the division; pass 0 otherwise. */
static inline double em_math_log1p_via_log(double x, double inv_w) {
    double w = 1.0 + x;
    return log(w) + (x - (w - 1.0)) * (inv_w != 0.0 ? inv_w : 1.0 / w);
}

/* softplus(x) = log(1 + e^x) without overflow for large x or loss of precision for very
 * negative x; sigmoid without overflow on either side. */
static inline double em_math_softplus(double x) {
    return (x > 0 ? x : 0.0) + em_math_log1p_via_log(exp(-fabs(x)), 0.0);
}
static inline double em_math_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* log(1 - e^x) for x <= 0: log(-expm1(x)) near 0, log1p(-e^x) below -log 2 (Mächler 2012,
 * "Accurately computing log(1 - exp(-|a|))"). NaN for x > 0, -inf at 0. */
static inline double em_math_log1m_exp(double x) {
    if (x > 0.0) return NAN;
    return x > -0.693147180559945309 ? log(-expm1(x)) : log1p(-exp(x));
}

/* d/dx log(1 - e^x) = -e^x/(1 - e^x) = -1/expm1(-x) */
static inline double em_math_dlog1m_exp(double x) { return -1.0 / expm1(-x); }

/* log(e^a + e^b): the larger plus log1p of the smaller's share; -inf when both are. */
static inline double em_math_log_sum_exp2(double a, double b) {
    double m = a > b ? a : b;
    if (m == -INFINITY) return -INFINITY;
    return m + log1p(exp(-fabs(a - b)));
}

/* ∂/∂a log(e^a + e^b) = σ(a - b); 0 when a = -inf (its share is none, whatever b is). */
static inline double em_math_dlog_sum_exp2(double a, double b) {
    return a == -INFINITY ? 0.0 : em_math_sigmoid(a - b);
}

/* Φ(x) by GSL's gsl_cdf_ugaussian_P (Cody's rational approximations), which keeps its relative
 * accuracy in the left tail: erfc(-x/√2)/2 loses about x²·ε there, from rounding x/√2. */
static inline double em_math_Phi(double x) { return gsl_cdf_ugaussian_P(x); }

/* log Φ(x): log1p(-Φ(-x)) for x >= 0, which keeps the tiny 1 - Φ(x) of the right tail;
 * log Φ(x) down to x = -37, where Φ still has its relative accuracy; below, where Φ underflows,
 * log(erfc(|x|/√2)/2) by GSL's log_erfc, which follows the asymptotic series (log Φ(-40) =
 * -804.608...; the rounding of x/√2 costs only ε relative on a value of size x²/2). */
static inline double em_math_log_Phi(double x) {
    if (x >= 0.0) return log1p(-gsl_cdf_ugaussian_P(-x));
    if (x >= -37.0) return log(gsl_cdf_ugaussian_P(x));
    return -0.69314718055994530942 + gsl_sf_log_erfc(-x * 0.70710678118654752440);
}

/* d/dx log Φ(x) = φ(x)/Φ(x), the hazard of the standard normal at -x (the inverse Mills ratio,
 * GSL's gsl_sf_hazard, accurate for large arguments where φ and Φ both underflow). */
static inline double em_math_dlog_Phi(double x) { return gsl_sf_hazard(-x); }

/* log of the rising factorial (a)_k = Γ(a + k)/Γ(a), a > 0, k >= 0, and its derivative in a,
 * ψ(a + k) - ψ(a). Written as differences of lgamma (digamma) they lose every digit when a is
 * large: lgamma(1e28) ≈ 6.4e29, so the difference of two of them is off by ~1e14 while the
 * true value is k·log a ≈ 300 (a beta-binomial or a negative binomial with a large precision
 * then has a spurious mode of log density +1e14 that a sampler climbs). From a = 1e4 on, both
 * come from Stirling's series with the large terms cancelled by hand:
 *   lgamma(x) = (x - 1/2) log x - x + log √(2π) + c(x),  c(x) = 1/(12x) - 1/(360x³) + 1/(1260x⁵) - ...
 *   ψ(x) = log x - 1/(2x) - d(x),                       d(x) = 1/(12x²) - 1/(120x⁴) + 1/(252x⁶) - ...
 * so (a)_k = (a - 1/2)·log1p(k/a) + k·log(a + k) - k + c(a + k) - c(a) and ψ(a + k) - ψ(a) =
 * log1p(k/a) + k/(2a(a + k)) - d(a + k) + d(a); the series' next terms are below 1e-31 there.
 * Below 1e4 the lgamma difference loses at most ~1e-11 (lgamma(1e4) ≈ 8e4). */
static inline double em_math_stirling_c_(double x) {
    double r = 1.0 / (x * x);
    return (1.0 / 12.0 - r * (1.0 / 360.0 - r / 1260.0)) / x;
}
static inline double em_math_lpoch(double a, double k) {
    if (k == 0.0) return 0.0;
    if (a < 1e4) return em_math_lgamma(a + k) - em_math_lgamma(a);
    double x = a + k;
    return (a - 0.5) * log1p(k / a) + k * log(x) - k + (em_math_stirling_c_(x) - em_math_stirling_c_(a));
}
static inline double em_math_psi_d_(double x) {
    double r = 1.0 / (x * x);
    return r * (1.0 / 12.0 - r * (1.0 / 120.0 - r / 252.0));
}
static inline double em_math_dlpoch(double a, double k) {
    if (k == 0.0) return 0.0;
    if (a < 1e4) return gsl_sf_psi(a + k) - gsl_sf_psi(a);
    double x = a + k;
    return log1p(k / a) + 0.5 * k / (a * x) - (em_math_psi_d_(x) - em_math_psi_d_(a));
}

#endif
