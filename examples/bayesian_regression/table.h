/* table.h — aligned text tables for the printed report: fill cells, then print with each column
 * right-aligned to its widest cell (the first column left-aligned). */
#ifndef RUGGED_TABLE_H
#define RUGGED_TABLE_H

#include <stdio.h>

#define TABLE_MAX_ROWS 64
#define TABLE_MAX_COLS 12
#define TABLE_CELL 40

typedef struct table {
    int nrows, ncols; /* row 0 is the header */
    char cell[TABLE_MAX_ROWS][TABLE_MAX_COLS][TABLE_CELL];
} table;

void table_init(table *t, int ncols, const char *const *header);
/* Start a new row; returns its index (rows beyond the capacity are dropped). */
int table_row(table *t);
void table_set(table *t, int row, int col, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* v with `digits` significant digits in fixed notation (as em_summary_print does), NA for NaN. */
void table_num(table *t, int row, int col, double v, int digits);
void table_print(FILE *f, const table *t, const char *indent);

#endif
