/* sort.c — sorting doubles by their order-preserving bits. See internal/sort.h.
 *
 * Few values go by insertion, many by an LSD radix sort over the keys' bytes; both are stable
 * and order by the same keys. em_sort_doubles, when it cannot have the keys' memory, sorts the
 * doubles in place by heapsort (by the same keys, so the result is the same). */
#include "internal/sort.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIGN_BIT 0x8000000000000000u
enum { INSERTION_MAX = 32 };

static uint64_t key_of(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return (u & SIGN_BIT) ? ~u : u | SIGN_BIT;
}

static double double_of(uint64_t k) {
    uint64_t u = (k & SIGN_BIT) ? k ^ SIGN_BIT : ~k;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Sorts key[0..n) (and ix alongside when not NULL) with the scratch key2 / ix2 of n each; the
 * result is left in key / ix. Stable, so equal keys keep their order. */
static void radix(uint64_t *key, size_t *ix, size_t n, uint64_t *key2, size_t *ix2) {
    size_t count[8][256];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) count[b][(key[i] >> (8 * b)) & 0xff]++;
    uint64_t *src = key, *dst = key2;
    size_t *isrc = ix, *idst = ix2;
    for (int b = 0; b < 8; b++) {
        size_t *c = count[b], pos = 0;
        if (c[(src[0] >> (8 * b)) & 0xff] == n) continue; /* every key has this byte: nothing moves */
        for (int v = 0; v < 256; v++) {
            size_t m = c[v];
            c[v] = pos;
            pos += m;
        }
        for (size_t i = 0; i < n; i++) {
            size_t to = c[(src[i] >> (8 * b)) & 0xff]++;
            dst[to] = src[i];
            if (ix) idst[to] = isrc[i];
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
        size_t *it = isrc;
        isrc = idst;
        idst = it;
    }
    if (src != key) {
        memcpy(key, src, n * sizeof *key);
        if (ix) memcpy(ix, isrc, n * sizeof *ix);
    }
}

/* Few keys: insertion, stable (ix NULL: keys alone). */
static void insertion(uint64_t *key, size_t *ix, size_t n) {
    for (size_t i = 1; i < n; i++) {
        uint64_t k = key[i];
        size_t v = ix ? ix[i] : 0, j = i;
        for (; j > 0 && key[j - 1] > k; j--) {
            key[j] = key[j - 1];
            if (ix) ix[j] = ix[j - 1];
        }
        key[j] = k;
        if (ix) ix[j] = v;
    }
}

static void sort_keys(uint64_t *key, size_t *ix, size_t n, uint64_t *key2, size_t *ix2) {
    if (n <= INSERTION_MAX) insertion(key, ix, n);
    else radix(key, ix, n, key2, ix2);
}

/* The fallback without memory: heapsort of the doubles in place, by their keys. */
static void sift_down(double *x, size_t root, size_t n) {
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && key_of(x[child]) < key_of(x[child + 1])) child++;
        if (key_of(x[root]) >= key_of(x[child])) return;
        double t = x[root];
        x[root] = x[child];
        x[child] = t;
    }
}

static void heapsort_doubles(double *x, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift_down(x, i, n);
    for (size_t end = n; end-- > 1;) {
        double t = x[0];
        x[0] = x[end];
        x[end] = t;
        sift_down(x, 0, end);
    }
}

void em_sort_doubles(double *x, size_t n) {
    if (n < 2) return;
    uint64_t *key = malloc(2 * n * sizeof *key);
    if (!key) {
        heapsort_doubles(x, n);
        return;
    }
    for (size_t i = 0; i < n; i++) key[i] = key_of(x[i]);
    sort_keys(key, NULL, n, key + n, NULL);
    for (size_t i = 0; i < n; i++) x[i] = double_of(key[i]);
    free(key);
}

int em_sort_order(const double *x, size_t n, size_t *order) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (n < 2) return 0;
    uint64_t *key = malloc(2 * n * sizeof *key);
    size_t *ix2 = malloc(n * sizeof *ix2);
    if (!key || !ix2) {
        free(key);
        free(ix2);
        return -1;
    }
    for (size_t i = 0; i < n; i++) key[i] = key_of(x[i]);
    sort_keys(key, order, n, key + n, ix2);
    free(key);
    free(ix2);
    return 0;
}
