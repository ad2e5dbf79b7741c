/* internal/text.h — reading text input: one number grammar and one careful file reader for
 * every reader of the library (data CSV, CmdStan CSV, parameter-store files).
 *
 * The number grammar is the one io.h documents for data CSV files, so a value that one reader
 * accepts every reader accepts, and "0x10", "1e", "inf" are errors everywhere rather than
 * whatever strtod happens to take. Conversion runs under a "C" locale whatever the process's
 * LC_NUMERIC, so a decimal comma can neither break nor silently change a parse.
 *
 * The file reader checks the bytes as they arrive: a NUL byte (a binary file, /dev/zero) stops
 * it at once, and a pipe or device is read only up to a cap, so no input is slurped unbounded
 * before anything looks at it.
 */
#ifndef EMBER_INTERNAL_TEXT_H
#define EMBER_INTERNAL_TEXT_H

#include <stddef.h>

#include "ember/core.h"

/* What is read from a file that is not a regular file (a pipe, a device) when the caller
 * gives no cap of its own: 1 GiB. */
#define EM_TEXT_STREAM_CAP ((size_t)1 << 30)

enum { EM_NUMBER_OK, EM_NUMBER_MISSING, EM_NUMBER_BAD };

/* Parse s[0..n) against the grammar
 *   [blanks] [+|-] digits [. [digits]] | . digits   [(e|E) [+|-] digits] [blanks]
 * (blanks: space, tab). Empty (after trimming), "NA" and "NaN" are EM_NUMBER_MISSING, except
 * that with allow_nonfinite "nan", "inf", "infinity" (any case, optional sign) are numbers.
 * A value too large for a double is EM_NUMBER_BAD; one too small becomes the nearest double.
 * On EM_NUMBER_BAD, *why says why ("is not a number", ...), ready to follow the quoted text.
 * s[n] must be a byte that cannot continue a number (NUL, a blank, a line end, a delimiter). */
int em_number_parse(const char *s, size_t n, int allow_nonfinite, double *out, const char **why);

/* Line and column (1-based) of byte off in buf, counting LF, CRLF and a lone CR as one line
 * end each, and columns on line 1 after a UTF-8 byte-order mark — as the readers count. */
void em_text_position(const char *buf, size_t off, size_t *line, size_t *col);

/* NaN as "NA" and ±inf as "Inf" / "-Inf" (R's spelling, as the summaries print them) into
 * dst; 1 when v was one of those, 0 (dst untouched) for a finite v. */
int em_text_nonfinite(char *dst, size_t cap, double v);

/* Write b atomically to dir/<name><ext> (a figure's .dat and .gp beside each other); a failed
 * buffer or path is EM_ERR_NOMEM naming who. */
em_status em_text_write_in_dir(const char *dir, const char *name, const char *ext, const em_buf *b, const char *who,
                               em_error *err);

/* If buf[0..len) holds a NUL byte, record "<name>:<line>:<col>: binary data ..." in err and
 * return EM_ERR_PARSE; otherwise EM_OK. */
em_status em_text_check_binary(const char *name, const char *buf, size_t len, em_error *err);

/* Read the file at path into out (appended, NUL-terminated), checking each chunk for NUL
 * bytes as it arrives. A regular file is read whole; anything else stops with EM_ERR_IO past
 * stream_cap bytes (0: EM_TEXT_STREAM_CAP). Errors: EM_ERR_IO (open, read, cap), EM_ERR_PARSE
 * (binary data), EM_ERR_NOMEM. On error out is freed. */
em_status em_text_read_file(const char *path, size_t stream_cap, em_buf *out, em_error *err);

#endif
