/* internal/sort.h — doubles sorted without a comparison callback.
 *
 * A fit's summary sorts every parameter's draws several times (quantiles, the ranks of R-hat's and
 * ESS's rank normalisation), PSIS and the calibration module sort thousands of values per
 * observation or replication; glibc's qsort calls its comparison through a pointer n log n times,
 * and that call is most of the cost. Here the doubles' bits are mapped to unsigned integers in the
 * same order (the sign bit set for positives, every bit flipped for negatives) and sorted by an
 * LSD radix sort: one histogram pass, then one stable counting pass per byte, skipping the bytes
 * every key shares (the high bytes of draws from one posterior mostly agree).
 *
 * Order: ascending, -0 before +0 (they compare equal, so callers that detect ties still see one),
 * NaNs with a clear sign bit after +inf and with a set sign bit before -inf.
 */
#ifndef EMBER_INTERNAL_SORT_H
#define EMBER_INTERNAL_SORT_H

#include <stddef.h>

/* x[0..n) in ascending order. Never fails: without memory for the radix sort's scratch it
 * sorts in place by heapsort. */
void em_sort_doubles(double *x, size_t n);

/* order[k] = the index of the k-th smallest of x[0..n), ties in index order (a stable sort);
 * x is unchanged. Returns 0, or -1 when out of memory for the n keys. */
int em_sort_order(const double *x, size_t n, size_t *order);

#endif
