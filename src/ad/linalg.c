/* linalg.c — matrix ops on the tape through OpenBLAS and LAPACKE. See linalg.h.
 *
 * Every op makes one node for its whole matrix result. Backward passes are written as BLAS
 * calls too, so a product costs the same in reverse as forward (two passes over a design matrix
 * for a matrix-vector product and its adjoint). Scratch memory a backward pass needs is taken
 * from the tape's arena in the forward pass, so a repeated evaluation does not allocate.
 */
#include "internal/tape.h"
#include "ember/linalg.h"

#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

static em_node *node_of(em_tape *t, int32_t id) { return em_node_get(t, (em_var){id}); }

/* BLAS takes int dimensions; refuse what would overflow rather than pass a truncated size. */
static int dims_fit_blas(em_tape *t, const char *op, size_t a, size_t b) {
    if (a > (size_t)INT32_MAX || b > (size_t)INT32_MAX) {
        em_tape_fail(t, EM_ERR_SHAPE, "%s: dimension %zux%zu is too large for BLAS", op, a, b);
        return 0;
    }
    return 1;
}

/* ---- matrix-vector product -------------------------------------------------------------- */

/* y = A x: x̄ += Aᵀ ȳ (one transposed dgemv) and Ā += ȳ xᵀ (one rank-1 update). */
static void matvec_backward(em_tape *t, em_node *self) {
    em_node *A = node_of(t, self->in[0]), *x = node_of(t, self->in[1]);
    int r = (int)A->rows, c = (int)A->cols;
    double s; /* the adjoint is s·g: a view is read in place, s becomes BLAS's alpha */
    const double *g = em_adj_own(self, &s);
    /* BLAS adds here (beta = 1), so a fresh adjoint is zeroed first (the adjoint contract in
     * internal/tape.h): beta = 0 would also do for x̄, but whether BLAS then ignores a NaN left
     * in y has changed between OpenBLAS versions, and x is the short side */
    if (em_adj_target(x))
        cblas_dgemv(CblasRowMajor, CblasTrans, r, c, s, A->val, c, g, 1, 1.0, x->adj, 1);
    if (em_adj_target(A)) cblas_dger(CblasRowMajor, r, c, s, g, 1, x->val, 1, A->adj, c);
}

static void matvec_forward(em_tape *t, em_node *o) {
    const em_node *na = node_of(t, o->in[0]), *nx = node_of(t, o->in[1]);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)na->rows, (int)na->cols, 1.0, na->val, (int)na->cols, nx->val, 1,
                0.0, o->val, 1);
}

em_var em_op_matvec(em_tape *t, em_var A, em_var x) {
    em_var in[2] = {A, x}, out;
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    em_node *na = em_node_get(t, A), *nx = em_node_get(t, x);
    size_t r = na->rows, c = na->cols;
    if (nx->n != c)
        return em_tape_fail(t, EM_ERR_SHAPE, "matvec: A is %zux%zu but x has length %zu (need %zu)", r, c,
                            nx->n, c);
    if (!dims_fit_blas(t, "matvec", r, c)) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, r, 1, in, 2, matvec_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->takes_view = 1;
    o->forward = matvec_forward;
    matvec_forward(t, o);
    return out;
}

/* y = A x + b: the matvec adjoints, and b̄ += ȳ (summed when b is a broadcast scalar). */
static void matvec_add_backward(em_tape *t, em_node *self) {
    matvec_backward(t, self);
    em_node *b = node_of(t, self->in[2]);
    double s;
    const double *g = em_adj_own(self, &s);
    if (self->adj_set == EM_ADJ_VIEW && b->n == self->n)
        em_adj_pass_view(b, s, g);
    else
        em_adj_accumulate_scaled(b, s, g, self->n);
}

/* y[0..n) = v, in blocks of four so that GCC vectorises it at -O2 (see EM_VEC_FOR) */
static void fill(double *restrict y, double v, size_t n) {
    EM_VEC_FOR(i, n, { y[i] = v; });
}

static void matvec_add_forward(em_tape *t, em_node *o) {
    const em_node *na = node_of(t, o->in[0]), *nx = node_of(t, o->in[1]), *nb = node_of(t, o->in[2]);
    size_t r = na->rows, c = na->cols;
    /* start from b and let dgemv add A x onto it (beta = 1): no pass of its own for the sum */
    if (nb->n == r) {
        memcpy(o->val, nb->val, r * sizeof(double));
    } else {
        fill(o->val, nb->val[0], r);
    }
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)r, (int)c, 1.0, na->val, (int)c, nx->val, 1, 1.0, o->val, 1);
}

em_var em_op_matvec_add(em_tape *t, em_var A, em_var x, em_var b) {
    em_var in[3] = {A, x, b}, out;
    if (!em_inputs_ok(in, 3)) return EM_VAR_INVALID;
    em_node *na = em_node_get(t, A), *nx = em_node_get(t, x), *nb = em_node_get(t, b);
    size_t r = na->rows, c = na->cols;
    if (nx->n != c)
        return em_tape_fail(t, EM_ERR_SHAPE, "matvec_add: A is %zux%zu but x has length %zu (need %zu)", r, c,
                            nx->n, c);
    if (nb->n != r && nb->n != 1)
        return em_tape_fail(t, EM_ERR_SHAPE, "matvec_add: A is %zux%zu but b has length %zu (need %zu or 1)", r,
                            c, nb->n, r);
    if (!dims_fit_blas(t, "matvec_add", r, c)) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, r, 1, in, 3, matvec_add_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->takes_view = 1;
    o->forward = matvec_add_forward;
    matvec_add_forward(t, o);
    return out;
}

/* ---- matrix-matrix product ---------------------------------------------------------------- */

/* C = A B: Ā += C̄ Bᵀ and B̄ += Aᵀ C̄. */
static void matmul_backward(em_tape *t, em_node *self) {
    em_node *A = node_of(t, self->in[0]), *B = node_of(t, self->in[1]);
    int m = (int)A->rows, k = (int)A->cols, n = (int)B->cols;
    em_adj_prepare_inputs(t, self); /* BLAS adds (beta = 1) */
    if (A->adj)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0, self->adj, n, B->val, n, 1.0,
                    A->adj, k);
    if (B->adj)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0, A->val, k, self->adj, n, 1.0,
                    B->adj, n);
}

static void matmul_forward(em_tape *t, em_node *o) {
    const em_node *na = node_of(t, o->in[0]), *nb = node_of(t, o->in[1]);
    int m = (int)na->rows, k = (int)na->cols, n = (int)nb->cols;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, na->val, k, nb->val, n, 0.0, o->val, n);
}

em_var em_op_matmul(em_tape *t, em_var A, em_var B) {
    em_var in[2] = {A, B}, out;
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    em_node *na = em_node_get(t, A), *nb = em_node_get(t, B);
    size_t m = na->rows, k = na->cols, n = nb->cols;
    if (nb->rows != k)
        return em_tape_fail(t, EM_ERR_SHAPE, "matmul: A is %zux%zu but B is %zux%zu (inner dimensions differ)", m,
                            k, nb->rows, n);
    if (!dims_fit_blas(t, "matmul", m, k) || !dims_fit_blas(t, "matmul", k, n)) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, m, n, in, 2, matmul_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->forward = matmul_forward;
    matmul_forward(t, o);
    return out;
}

/* ---- Cholesky ------------------------------------------------------------------------------ */

/* Shared check for ops that take a square matrix. */
static int check_square(em_tape *t, const char *op, const char *name, const em_node *a) {
    if (a->rows != a->cols) {
        em_tape_fail(t, EM_ERR_SHAPE, "%s: %s must be square, got %zux%zu", op, name, a->rows, a->cols);
        return 0;
    }
    return dims_fit_blas(t, op, a->rows, a->cols);
}

/* Reverse mode of L = chol(A), in the closed form of Murray (2016), "Differentiation of the
 * Cholesky decomposition", arXiv:1602.07527, eq. (10): with Φ(X) the lower triangle of X with
 * its diagonal halved, the symmetric-perturbation gradient is G = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹, symmetrised.
 * It is computed with level-3 BLAS (one trmm and two trsm), i.e. the blocked form.
 *
 * The forward pass reads only the lower triangle of A, so the function differentiated is
 * A ↦ chol(tril(A) + tril(A,-1)ᵀ): an off-diagonal A_ij (i > j) receives G_ij + G_ji, a diagonal
 * element G_ii, and the upper triangle nothing. That is what finite differences on A see, and
 * the chain rule through a symmetric A built from parameters comes out the same.
 *
 * Only the lower triangle of L̄ counts: L's upper triangle is the constant 0 whatever A is, so an
 * adjoint that later ops put there is dropped. */
static void cholesky_backward(em_tape *t, em_node *self) {
    em_node *A = node_of(t, self->in[0]);
    if (!em_adj_target(A)) return; /* adds into the lower triangle only */
    int n = (int)self->rows;
    const double *L = self->val;
    double *W = self->aux;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) W[i * n + j] = j <= i ? self->adj[i * n + j] : 0.0;
    /* W = Lᵀ L̄ */
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, n, 1.0, L, n, W, n);
    /* W = Φ(W) */
    for (int i = 0; i < n; i++) {
        W[i * n + i] *= 0.5;
        for (int j = i + 1; j < n; j++) W[i * n + j] = 0.0;
    }
    /* W = L⁻ᵀ W L⁻¹ */
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, n, 1.0, L, n, W, n);
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, n, n, 1.0, L, n, W, n);
    /* symmetrise (½(W + Wᵀ)) and fold the upper triangle onto the lower: W_ij + W_ji for i > j */
    for (int i = 0; i < n; i++) {
        A->adj[i * n + i] += W[i * n + i];
        for (int j = 0; j < i; j++) A->adj[i * n + j] += W[i * n + j] + W[j * n + i];
    }
}

/* L = chol(A) from A's current values; 0 (L NaN, the error on the tape) when A has a
 * non-finite element or is not positive definite. */
static int cholesky_compute(em_tape *t, em_node *o) {
    const em_node *na = node_of(t, o->in[0]);
    size_t n = na->rows;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++)
        for (size_t j = 0; j <= i; j++)
            if (!isfinite(na->val[i * n + j])) {
                em_tape_fail(t, EM_ERR_NONFINITE, "cholesky: A[%zu,%zu] = %g is not finite", i, j, na->val[i * n + j]);
                ok = 0;
                break;
            }
    if (ok) {
        /* dpotrf works in place: factor a copy of the lower triangle, the upper one cleared.
         * The row-major lower triangle is, in the same memory, the column-major upper one, so
         * the call is made column-major with 'U' (UᵀU = A, and L = Uᵀ read row-major):
         * LAPACKE's row-major path would malloc a transposed copy on every evaluation. */
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) o->val[i * n + j] = j <= i ? na->val[i * n + j] : 0.0;
        lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)n, o->val, (lapack_int)n);
        if (info > 0)
            em_tape_fail(t, EM_ERR_NUMERIC,
                         "cholesky: %zux%zu matrix is not positive definite: pivot %d (A[%d,%d], 0-based) is "
                         "not positive",
                         n, n, (int)info - 1, (int)info - 1, (int)info - 1);
        else if (info < 0)
            em_tape_fail(t, EM_ERR_ARG, "cholesky: LAPACKE_dpotrf argument %d invalid", (int)-info);
        ok = info == 0;
    }
    if (!ok)
        for (size_t i = 0; i < o->n; i++) o->val[i] = NAN;
    return ok;
}

static void cholesky_forward(em_tape *t, em_node *o) { cholesky_compute(t, o); }

em_var em_op_cholesky(em_tape *t, em_var A) {
    em_var out;
    if (!em_inputs_ok(&A, 1)) return EM_VAR_INVALID;
    em_node *na = em_node_get(t, A);
    if (!check_square(t, "cholesky", "A", na)) return EM_VAR_INVALID;
    size_t n = na->rows;
    em_node *o = em_node_new(t, n, n, &A, 1, cholesky_backward, &out);
    if (!o) return EM_VAR_INVALID;
    if (o->adj) {
        o->aux = em_arena_alloc(em_tape_arena(t), n * n * sizeof(double));
        if (!o->aux) return em_tape_fail(t, EM_ERR_NOMEM, "cholesky: out of memory for %zux%zu scratch", n, n);
    }
    o->forward = cholesky_forward;
    return cholesky_compute(t, o) ? out : EM_VAR_INVALID;
}

/* ---- triangular solve ---------------------------------------------------------------------- */

/* X = L⁻¹ B: B̄ += C with C = L⁻ᵀ X̄, and L̄ -= tril(C Xᵀ) (only L's lower triangle is read). */
static void trisolve_backward(em_tape *t, em_node *self) {
    em_node *L = node_of(t, self->in[0]), *B = node_of(t, self->in[1]);
    int n = (int)L->rows, k = (int)self->cols;
    double *C = self->aux;
    em_adj_prepare_inputs(t, self); /* L̄ gets its lower triangle only; the op is small */
    memcpy(C, self->adj, self->n * sizeof(double));
    if (k == 1)
        cblas_dtrsv(CblasRowMajor, CblasLower, CblasTrans, CblasNonUnit, n, L->val, n, C, 1);
    else
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, k, 1.0, L->val, n, C, k);
    if (B->adj)
        for (size_t i = 0; i < self->n; i++) B->adj[i] += C[i];
    if (L->adj) {
        const double *X = self->val;
        /* row i of L̄, columns 0..i: -= X[0..i, :] · C[i, :] */
        for (int i = 0; i < n; i++)
            cblas_dgemv(CblasRowMajor, CblasNoTrans, i + 1, k, -1.0, X, k, C + (size_t)i * k, 1, 1.0,
                        L->adj + (size_t)i * n, 1);
    }
}

/* X = L⁻¹ B from the current values; 0 (X NaN, the error on the tape) for a singular L. */
static int trisolve_compute(em_tape *t, em_node *o) {
    const em_node *nl = node_of(t, o->in[0]), *nb = node_of(t, o->in[1]);
    size_t n = nl->rows, k = nb->cols;
    /* A zero or non-finite pivot would make the solve divide by zero: a singular system. */
    for (size_t i = 0; i < n; i++) {
        double d = nl->val[i * n + i];
        if (d == 0.0 || !isfinite(d)) {
            em_tape_fail(t, EM_ERR_NUMERIC, "trisolve_lower: L[%zu,%zu] = %g, L is singular", i, i, d);
            for (size_t j = 0; j < o->n; j++) o->val[j] = NAN;
            return 0;
        }
    }
    memcpy(o->val, nb->val, n * k * sizeof(double));
    if (k == 1)
        cblas_dtrsv(CblasRowMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, nl->val, (int)n, o->val, 1);
    else
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, (int)k, 1.0, nl->val,
                    (int)n, o->val, (int)k);
    return 1;
}

static void trisolve_forward(em_tape *t, em_node *o) { trisolve_compute(t, o); }

em_var em_op_trisolve_lower(em_tape *t, em_var L, em_var b) {
    em_var in[2] = {L, b}, out;
    if (!em_inputs_ok(in, 2)) return EM_VAR_INVALID;
    em_node *nl = em_node_get(t, L), *nb = em_node_get(t, b);
    if (!check_square(t, "trisolve_lower", "L", nl)) return EM_VAR_INVALID;
    size_t n = nl->rows, k = nb->cols;
    if (nb->rows != n)
        return em_tape_fail(t, EM_ERR_SHAPE,
                            "trisolve_lower: L is %zux%zu but b is %zux%zu (need %zu rows)", n, n, nb->rows,
                            nb->cols, n);
    if (!dims_fit_blas(t, "trisolve_lower", n, k)) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, n, k, in, 2, trisolve_backward, &out);
    if (!o) return EM_VAR_INVALID;
    if (o->adj) {
        o->aux = em_arena_alloc(em_tape_arena(t), n * k * sizeof(double));
        if (!o->aux) return em_tape_fail(t, EM_ERR_NOMEM, "trisolve_lower: out of memory for scratch");
    }
    o->forward = trisolve_forward;
    return trisolve_compute(t, o) ? out : EM_VAR_INVALID;
}

/* ---- log-determinant from a Cholesky factor ------------------------------------------------ */

static void logdet_backward(em_tape *t, em_node *self) {
    em_node *L = node_of(t, self->in[0]);
    if (!em_adj_target(L)) return; /* the diagonal only */
    size_t n = L->rows;
    double g = self->adj[0];
    for (size_t i = 0; i < n; i++) L->adj[i * n + i] += 2.0 * g / L->val[i * n + i];
}

/* 2 Σ log L_ii from the current values; 0 (NaN, the error on the tape) when a pivot is not
 * positive and finite. */
static int logdet_compute(em_tape *t, em_node *o) {
    const em_node *nl = node_of(t, o->in[0]);
    size_t n = nl->rows;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = nl->val[i * n + i];
        /* a Cholesky factor has a positive diagonal; anything else is not one */
        if (!(d > 0.0) || !isfinite(d)) {
            em_tape_fail(t, EM_ERR_DOMAIN, "logdet_cholesky: L[%zu,%zu] = %g is not a positive finite pivot", i, i, d);
            o->val[0] = NAN;
            return 0;
        }
        s += log(d);
    }
    o->val[0] = 2.0 * s;
    return 1;
}

static void logdet_forward(em_tape *t, em_node *o) { logdet_compute(t, o); }

em_var em_op_logdet_cholesky(em_tape *t, em_var L) {
    em_var out;
    if (!em_inputs_ok(&L, 1)) return EM_VAR_INVALID;
    if (!check_square(t, "logdet_cholesky", "L", em_node_get(t, L))) return EM_VAR_INVALID;
    em_node *o = em_node_new(t, 1, 1, &L, 1, logdet_backward, &out);
    if (!o) return EM_VAR_INVALID;
    o->forward = logdet_forward;
    return logdet_compute(t, o) ? out : EM_VAR_INVALID;
}
