/* csv_design.c — a data table's columns as a design matrix. See io.h.
 *
 * The CSV reader keeps columns apart (one contiguous array each, what a model takes by
 * pointer), while the fused GLMs read X row by row. This is the one transpose every
 * regression program needs, done once with the names checked.
 */
#include "ember/io.h"
#include "internal/posterior_impl.h"

#include <stdlib.h>
#include <string.h>

em_status em_csv_design_matrix(const em_csv_table *t, const char *const *columns, size_t ncols, double **X,
                               em_error *err) {
    if (X) *X = NULL;
    if (!t || !X || (ncols && !columns))
        return em_error_set(err, EM_ERR_ARG, "em_csv_design_matrix: NULL table, columns or output");
    if (ncols == 0) return em_error_set(err, EM_ERR_ARG, "em_csv_design_matrix: no columns asked for");
    const double **src = malloc(ncols * sizeof *src);
    if (!src) return em_error_set(err, EM_ERR_NOMEM, "em_csv_design_matrix: out of memory");
    for (size_t j = 0; j < ncols; j++) {
        src[j] = columns[j] ? em_csv_column(t, columns[j]) : NULL;
        if (!src[j]) {
            em_buf b = {0};
            em_posterior_nearest_names((const char *const *)t->names, t->ncols, columns[j] ? columns[j] : "", &b);
            em_status s = em_error_set(err, EM_ERR_ARG, "em_csv_design_matrix: no numeric column '%.80s'; the nearest are %s",
                                       columns[j] ? columns[j] : "(null)", b.data && !b.failed ? b.data : "(none)");
            em_buf_free(&b);
            free(src);
            return s;
        }
    }
    size_t n = t->nrows;
    if (n && ncols > ((size_t)-1 / sizeof(double)) / n) {
        free(src);
        return em_error_set(err, EM_ERR_ARG, "em_csv_design_matrix: %zu x %zu values do not fit in memory", n, ncols);
    }
    double *out = malloc((n ? n : 1) * ncols * sizeof *out);
    if (!out) {
        free(src);
        return em_error_set(err, EM_ERR_NOMEM, "em_csv_design_matrix: out of memory for %zu x %zu values", n, ncols);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < ncols; j++) out[i * ncols + j] = src[j][i];
    free(src);
    *X = out;
    return EM_OK;
}
