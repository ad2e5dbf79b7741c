/* internal/frame_impl.h — the em_frame's layout (src/formula/frame.c), read by the design
 * matrix code. Not installed. */
#ifndef EMBER_INTERNAL_FRAME_IMPL_H
#define EMBER_INTERNAL_FRAME_IMPL_H

#include "ember/formula.h"
#include "ember/io.h"

struct em_frame {
    char *name;           /* the file, for messages */
    size_t nrows, ncols;
    em_csv_table *table;  /* every column as text */
    double **num;         /* [ncols]: the values of a numeric column (NaN where missing), or NULL for text */
    size_t *missing;      /* [ncols]: missing values in the column */
};

/* Column index by name, or -1. */
long em_frame_find(const em_frame *f, const char *name);
const char *em_frame_col_name(const em_frame *f, size_t j);
const char *em_frame_text(const em_frame *f, size_t j, size_t i);
int em_frame_text_missing(const em_frame *f, size_t j, size_t i);
/* The file line row i came from (for messages). */
size_t em_frame_line(const em_frame *f, size_t i);

#endif
