/* table.c — see table.h. */
#include "table.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

void table_init(table *t, int ncols, const char *const *header) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols > TABLE_MAX_COLS ? TABLE_MAX_COLS : ncols;
    t->nrows = 1;
    for (int c = 0; c < t->ncols; c++) snprintf(t->cell[0][c], TABLE_CELL, "%s", header[c]);
}

int table_row(table *t) {
    if (t->nrows >= TABLE_MAX_ROWS) return TABLE_MAX_ROWS - 1;
    return t->nrows++;
}

void table_set(table *t, int row, int col, const char *fmt, ...) {
    if (row < 0 || row >= TABLE_MAX_ROWS || col < 0 || col >= t->ncols) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->cell[row][col], TABLE_CELL, fmt, ap);
    va_end(ap);
}

void table_num(table *t, int row, int col, double v, int digits) {
    if (isnan(v)) {
        table_set(t, row, col, "NA");
        return;
    }
    if (isinf(v)) {
        table_set(t, row, col, v > 0 ? "Inf" : "-Inf");
        return;
    }
    double a = fabs(v);
    if (a == 0.0) {
        table_set(t, row, col, "0");
        return;
    }
    if (a >= 1e-4 && a < 1e6) {
        int dec = digits - 1 - (int)floor(log10(a));
        table_set(t, row, col, "%.*f", dec < 0 ? 0 : dec, v);
    } else {
        table_set(t, row, col, "%.*e", digits - 1, v);
    }
}

void table_print(FILE *f, const table *t, const char *indent) {
    size_t w[TABLE_MAX_COLS] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++)
            if (strlen(t->cell[r][c]) > w[c]) w[c] = strlen(t->cell[r][c]);
    for (int r = 0; r < t->nrows; r++) {
        fputs(indent ? indent : "", f);
        for (int c = 0; c < t->ncols; c++) {
            if (c == 0) fprintf(f, "%-*s", (int)w[c], t->cell[r][c]);
            else fprintf(f, "  %*s", (int)w[c], t->cell[r][c]);
        }
        fputc('\n', f);
    }
}
