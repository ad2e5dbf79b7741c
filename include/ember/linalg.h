/* linalg.h — BLAS/LAPACK-backed matrix ops on the tape, each with its adjoint.
 *
 * Matrices are row-major tape nodes (em_rows × em_cols); a design matrix from user data is a
 * constant node made with em_const_matrix and is referenced, never copied. Products go through
 * OpenBLAS (cblas_dgemv / cblas_dgemm), factorisations through LAPACKE.
 */
#ifndef EMBER_LINALG_H
#define EMBER_LINALG_H

#include "ember/ad.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = A·x: A rows×cols, x of length cols -> y of length rows. */
em_var em_op_matvec(em_tape *t, em_var A, em_var x);
/* y = A·x + b with b a scalar or a vector of length rows (torch's addmv): the linear predictor
 * of a regression with its intercept in one node, with no separate add node and its extra
 * passes over n values forward and back. */
em_var em_op_matvec_add(em_tape *t, em_var A, em_var x, em_var b);
/* C = A·B: A m×k, B k×n -> C m×n. */
em_var em_op_matmul(em_tape *t, em_var A, em_var B);
/* L with L·Lᵀ = A for a symmetric positive-definite A (lower triangle used). A matrix that is
 * not positive definite records EM_ERR_NUMERIC naming the failing pivot; a NaN or infinity in
 * the lower triangle, EM_ERR_NONFINITE. As only the lower triangle is read, the gradient goes
 * there: A_ij (i > j) receives the sum of the two symmetric partials, the upper triangle 0. */
em_var em_op_cholesky(em_tape *t, em_var A);
/* x with L·x = b (L lower triangular n×n, b of length n or an n×k matrix). Only L's lower
 * triangle is read; a zero or non-finite diagonal element records EM_ERR_NUMERIC. */
em_var em_op_trisolve_lower(em_tape *t, em_var L, em_var b);
/* log det(L·Lᵀ) = 2·Σ log L_ii from a Cholesky factor; a diagonal element that is not positive
 * and finite records EM_ERR_DOMAIN. */
em_var em_op_logdet_cholesky(em_tape *t, em_var L);

#define em_matvec(c, A, x) em_op_matvec(EM_T(c), (A), (x))
#define em_matvec_add(c, A, x, b) em_op_matvec_add(EM_T(c), (A), (x), EM_V(c, b))
#define em_matmul(c, A, B) em_op_matmul(EM_T(c), (A), (B))
#define em_cholesky(c, A) em_op_cholesky(EM_T(c), (A))
#define em_trisolve_lower(c, L, b) em_op_trisolve_lower(EM_T(c), (L), (b))
#define em_logdet_cholesky(c, L) em_op_logdet_cholesky(EM_T(c), (L))

#ifdef __cplusplus
}
#endif
#endif
