/* util.h — small helpers the rugged example shares: output paths, atomic writes, clocks and
 * progress messages. Nothing here is specific to the model. */
#ifndef RUGGED_UTIL_H
#define RUGGED_UTIL_H

#include <stddef.h>

#include "ember.h"

/* Progress lines go to stderr unless quiet (tables go to stdout). */
extern int util_quiet;
void progress(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Seconds on a monotonic clock. */
double now_seconds(void);

/* mkdir -p: create dir and its parents (existing directories are fine). */
em_status make_dirs(const char *dir, em_error *err);

/* dir + "/" + name into a new string (free it). NULL when out of memory. */
char *path_join(const char *dir, const char *name);

/* Write the buffer to dir/name atomically; a buffer whose allocation failed is an error. */
em_status write_buf(const char *dir, const char *name, const em_buf *b, em_error *err);

/* A double as CSV text: %.*g with digits significant digits, "NA" for NaN. */
void csv_num(em_buf *b, double v, int digits);

#endif
