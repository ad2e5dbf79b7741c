/* internal/vmath_lanes.h — the bodies of internal/vmath.h's vector functions, written once for
 * any lane count. Not a header of its own: vmath.h includes it once per width, having defined
 * EM_VD, EM_VU and EM_VI (the double, unsigned and mask vector types), EM_VFN(name) (the
 * function's name at that width) and EM_VSPLAT, EM_VSPLATU (a constant in every lane); it
 * undefines them at its end. The algorithms and their accuracy are described in vmath.h. */

EM_V_INLINE EM_VD EM_VFN(load)(const double *p) {
    EM_VD v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}
EM_V_INLINE void EM_VFN(store)(double *p, EM_VD v) { memcpy(p, &v, sizeof v); }

/* mask ? a : b, lane by lane; mask lanes are all ones or all zeros (a comparison's result) */
EM_V_INLINE EM_VD EM_VFN(select)(EM_VI mask, EM_VD a, EM_VD b) {
    EM_VU m = (EM_VU)mask;
    return (EM_VD)(((EM_VU)a & m) | ((EM_VU)b & ~m));
}

EM_V_INLINE EM_VD EM_VFN(abs)(EM_VD x) { return (EM_VD)((EM_VU)x & EM_VSPLATU(0x7fffffffffffffffu)); }

EM_V_INLINE EM_VD EM_VFN(exp)(EM_VD x) {
    const EM_VD shift = EM_VSPLAT(0x1.8p52); /* adding it rounds to an integer, held in the low bits */
    const EM_VD ln2_hi = EM_VSPLAT(6.93147180369123816490e-01), ln2_lo = EM_VSPLAT(1.90821492927058770002e-10);
    EM_VD t = x * EM_VSPLAT(1.4426950408889634) + shift;
    EM_VD k = t - shift;
    EM_VD r = (x - k * ln2_hi) - k * ln2_lo;
    /* Σ_{j≤13} r^j / j! by Estrin's scheme (pairs, then powers r², r⁴, r⁸): a chain of six
     * operations instead of Horner's twenty-six, so the lanes of successive rows overlap */
    EM_VD r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    EM_VD q1 = EM_VSPLAT(0.5) + r * EM_VSPLAT(1.0 / 6.0);
    EM_VD q2 = EM_VSPLAT(1.0 / 24.0) + r * EM_VSPLAT(1.0 / 120.0), q3 = EM_VSPLAT(1.0 / 720.0) + r * EM_VSPLAT(1.0 / 5040.0);
    EM_VD q4 = EM_VSPLAT(1.0 / 40320.0) + r * EM_VSPLAT(1.0 / 362880.0);
    EM_VD q5 = EM_VSPLAT(1.0 / 3628800.0) + r * EM_VSPLAT(1.0 / 39916800.0);
    EM_VD q6 = EM_VSPLAT(1.0 / 479001600.0) + r * EM_VSPLAT(1.0 / 6227020800.0);
    EM_VD s1 = q2 + q3 * r2, s2 = q4 + q5 * r2;
    /* 1 + r last, so that no rounding of 1 + r loses r's low bits */
    EM_VD p = EM_VSPLAT(1.0) + (r + ((q1 * r2 + s1 * r4) + (s2 + q6 * r4) * r8));
    /* 2^(k-1) from k's bits in t (t's integer view is shift's plus k), then doubled: k = 1024
     * (x just below log DBL_MAX) has no 2^k of its own */
    EM_VU bits = ((EM_VU)t - (EM_VU)shift + EM_VSPLATU(1022u)) << 52;
    EM_VD y = (p * (EM_VD)bits) * EM_VSPLAT(2.0);
    y = EM_VFN(select)(x < EM_VSPLAT(-707.7), EM_VSPLAT(0.0), y);
    return EM_VFN(select)(x > EM_VSPLAT(709.782712893384), EM_VSPLAT(__builtin_inf()), y);
}

EM_V_INLINE EM_VD EM_VFN(log)(EM_VD x) {
    EM_VU u = (EM_VU)x;
    /* the biased exponent as a double: an integer below 2^52 or'ed into 2^52's mantissa */
    EM_VD e = (EM_VD)((u >> 52) | EM_VSPLATU(0x4330000000000000u)) - EM_VSPLAT(0x1p52 + 1023.0);
    EM_VD m = (EM_VD)((u & EM_VSPLATU(0x000fffffffffffffu)) | EM_VSPLATU(0x3ff0000000000000u));
    EM_VI big = m > EM_VSPLAT(1.4142135623730951);
    m = EM_VFN(select)(big, m * EM_VSPLAT(0.5), m);
    e = EM_VFN(select)(big, e + EM_VSPLAT(1.0), e);
    EM_VD f = m - EM_VSPLAT(1.0), s = f / (EM_VSPLAT(2.0) + f), z = s * s;
    /* R = 2 atanh(s)/s - 2 = Σ_{k=1..10} 2 z^k / (2k + 1), by Estrin's scheme as in exp */
    EM_VD z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
    EM_VD c0 = EM_VSPLAT(2.0 / 3.0) + z * EM_VSPLAT(2.0 / 5.0), c1 = EM_VSPLAT(2.0 / 7.0) + z * EM_VSPLAT(2.0 / 9.0);
    EM_VD c2 = EM_VSPLAT(2.0 / 11.0) + z * EM_VSPLAT(2.0 / 13.0), c3 = EM_VSPLAT(2.0 / 15.0) + z * EM_VSPLAT(2.0 / 17.0);
    EM_VD c4 = EM_VSPLAT(2.0 / 19.0) + z * EM_VSPLAT(2.0 / 21.0);
    EM_VD R = z * (((c0 + c1 * z2) + (c2 + c3 * z2) * z4) + c4 * z8);
    const EM_VD ln2_hi = EM_VSPLAT(6.93147180369123816490e-01), ln2_lo = EM_VSPLAT(1.90821492927058770002e-10);
    return e * ln2_hi - ((s * (f - R) - e * ln2_lo) - f);
}


#undef EM_VD
#undef EM_VU
#undef EM_VI
#undef EM_VFN
#undef EM_VSPLAT
#undef EM_VSPLATU
