/* internal/mathx.h — scalar math helpers shared by the modules.
 *
 * em_math_lgamma: log|Γ(x)| without the C library's lgamma, which writes the global `signgam` and so
 * races when chains evaluate densities on several threads. glibc's reentrant lgamma_r is only
 * declared under _DEFAULT_SOURCE, which this build does not enable, so it is declared here.
 */
#ifndef EMBER_INTERNAL_MATHX_H
#define EMBER_INTERNAL_MATHX_H

double lgamma_r(double x, int *sign);

static inline double em_math_lgamma(double x) {
    int sign;
    return lgamma_r(x, &sign);
}

#endif
