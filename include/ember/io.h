/* io.h — reading analysis data from CSV and writing posterior draws in CmdStan's CSV layout.
 *
 * The CSV reader turns a data file into a column-major table of doubles (one contiguous array
 * per selected column, ready to hand to a model by pointer) plus, on request, text columns.
 * It is strict on purpose: every problem (a ragged row, a non-number, an unknown column, an
 * unterminated quote) is an error naming file:line:column and the offending text, and missing
 * values follow an explicit policy, so a data file never loads silently wrong.
 *
 * The CmdStan writer produces files that Stan's ecosystem (posterior, ArviZ, rstan, cmdstanr)
 * reads as if CmdStan had written them: "# key = value" comment lines, the header row, the
 * adaptation block, the draws and the timing footer (layout: stan-dev/stan mcmc_writer.hpp and
 * the CmdStan guide's "Stan CSV" appendix). Numbers round-trip by default (%.17g).
 */
#ifndef EMBER_IO_H
#define EMBER_IO_H

#include <stddef.h>

#include "ember/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- data CSV ------------------------------------------------------------------------------
 *
 * Format accepted (RFC 4180 plus common practice):
 *  - the first non-blank line is the header; column names must be unique;
 *  - fields are separated by ','; a field that starts with '"' (after optional spaces) is quoted:
 *    it may hold commas, newlines and doubled quotes (""), and only spaces may follow the
 *    closing quote; a quote inside an unquoted field is an ordinary character;
 *  - lines end in LF, CRLF or a lone CR; the final newline may be missing; a UTF-8 byte-order
 *    mark at the start is skipped; completely empty lines are skipped;
 *  - every row must have exactly as many fields as the header, and no header name is empty;
 *  - the input is text: a NUL byte anywhere (header or body) is an error naming its line and
 *    column, found before anything else is parsed, and em_csv_read stops reading at it (so a
 *    binary file or /dev/zero fails at once rather than being read to the end).
 *
 * Numbers (numeric columns) are parsed with C-locale rules whatever the process locale:
 *   [spaces] [+|-] digits [. [digits]] | . digits   [(e|E) [+|-] digits] [spaces]
 * so "3.61e+06", ".686405", "1.", "-1.5", " 7 " are accepted and "1.2.3", "abc", "1e", "0x10",
 * "1,5", "inf", "nan" are errors. A number too large for a double ("1e400") is an error; one
 * too small becomes the nearest double (0 or subnormal).
 *
 * Missing values: a field that is empty, or is exactly "NA" or "NaN" (case-sensitive, after
 * trimming spaces; quoted or not), is missing. It is an error under EM_CSV_MISSING_ERROR; under
 * EM_CSV_MISSING_DROP_ROW the whole row is dropped (counted in em_csv_table.dropped). Only the
 * selected numeric columns are checked; a bad number is an error under either policy.
 * Text columns are returned verbatim (unquoted and unescaped) and are never "missing".
 */

typedef enum em_csv_missing {
    EM_CSV_MISSING_ERROR = 0, /* a missing value in a selected column is an error (default) */
    EM_CSV_MISSING_DROP_ROW   /* drop rows with a missing value in any selected numeric column */
} em_csv_missing;

typedef struct em_csv_options {
    em_csv_missing missing;
    /* Columns to return as text (e.g. country names), in this order in em_csv_table.text. */
    const char *const *text_columns;
    size_t ntext_columns;
    /* When nonzero, lines whose first character is this one are skipped (CmdStan uses '#'). */
    char comment;
    /* When nonzero, "nan", "inf", "infinity" with optional sign (any case) are numbers, and
     * "NaN" is then a NaN value rather than a missing one. Off for data files. */
    int allow_nonfinite;
    /* em_csv_read from a pipe or device (not a regular file): an error past this many bytes,
     * rather than holding an unbounded stream in memory. 0: 1 GiB. */
    size_t max_stream_bytes;
    /* When nonzero, the line number of the first line after the header row, for messages: the
     * buffer holds a file's header followed by a later part of it (mpi.h's sharded reader). */
    size_t body_line;
} em_csv_options;

typedef struct em_csv_table {
    size_t nrows;     /* rows kept */
    size_t dropped;   /* rows dropped under EM_CSV_MISSING_DROP_ROW */
    size_t ncols;     /* numeric columns */
    char **names;     /* [ncols] their names */
    double **cols;    /* [ncols][nrows], column-major: cols[j] is one contiguous array */
    size_t ntext;     /* text columns */
    char **text_names;
    char ***text;     /* [ntext][nrows] NUL-terminated strings */
    size_t *line;     /* [nrows] the file line each kept row started on (for messages) */
    void *priv_;      /* storage owned by the table */
} em_csv_table;

/* Read the numeric columns named in columns[0..ncols) (in that order) from the CSV file at
 * path. columns == NULL with ncols == 0 selects every column of the file as numeric.
 * opt may be NULL (defaults: missing values are errors, no text columns, no comments).
 * On success *out is a new table (free with em_csv_table_free); on failure *out is NULL and
 * err says where and why (EM_ERR_IO for a file that cannot be read or a stream longer than
 * max_stream_bytes, EM_ERR_PARSE for bad content, EM_ERR_ARG for an unknown or repeated column name, EM_ERR_NOMEM). */
em_status em_csv_read(const char *path, const char *const *columns, size_t ncols,
                      const em_csv_options *opt, em_csv_table **out, em_error *err);

/* The same from memory: buf[0..len) need not be NUL-terminated; name is used in messages. */
em_status em_csv_parse_buffer(const char *name, const char *buf, size_t len,
                              const char *const *columns, size_t ncols,
                              const em_csv_options *opt, em_csv_table **out, em_error *err);

/* The numeric column called name, or NULL if the table has none. */
const double *em_csv_column(const em_csv_table *t, const char *name);
/* The text column called name, or NULL. */
char *const *em_csv_text_column(const em_csv_table *t, const char *name);
void em_csv_table_free(em_csv_table *t);
/* The numeric columns named in columns[0..ncols) as one row-major nrows×ncols design matrix
 * (what the GLMs and em_data_matrix take), in *X (free it with free). An unknown name is
 * EM_ERR_ARG naming it and the nearest columns the table has. */
em_status em_csv_design_matrix(const em_csv_table *t, const char *const *columns, size_t ncols, double **X,
                               em_error *err);

/* ---- CmdStan-layout posterior CSV ---------------------------------------------------------- */

/* What one chain's file holds. The writer only reads from it; nothing is copied or freed. */
typedef struct em_cmdstan_file {
    /* Configuration lines, written as "# <line>" at the top, e.g. "model = rugged",
     * "  num_samples = 1000". NULL entries and lines with a newline are rejected. */
    const char *const *comments;
    size_t ncomments;
    /* Column names in order: the sampler columns (lp__, accept_stat__, stepsize__, treedepth__,
     * n_leapfrog__, divergent__, energy__) then the parameters, CmdStan style ("beta.1"). */
    const char *const *names;
    size_t ncols;
    /* ndraws x ncols, row-major: draws[i*ncols + j] is column j of draw i. */
    const double *draws;
    size_t ndraws;
    /* Saved warmup draws (nwarmup rows of ncols), written before the adaptation block as
     * CmdStan does with save_warmup = 1; NULL with nwarmup 0 for none. */
    const double *warmup_draws;
    size_t nwarmup;
    /* Adaptation block, written between the header row and the draws when has_adaptation. */
    int has_adaptation;
    double step_size;
    const double *inv_metric; /* metric_dim values (diagonal) or metric_dim^2 row-major (dense) */
    size_t metric_dim;
    int dense_metric;
    /* Timing footer, written after the draws when has_timing. */
    int has_timing;
    double warmup_seconds, sampling_seconds;
} em_cmdstan_file;

/* Format f into out (appended). sig_digits: 0 = round-trip (%.17g), 9..17 = that many
 * significant digits; anything else is EM_ERR_ARG (fewer than 9 loses too much). */
em_status em_cmdstan_format(const em_cmdstan_file *f, int sig_digits, em_buf *out, em_error *err);

/* Format f and write it to path atomically (em_write_file_atomic): an existing file is
 * replaced only by a complete new one, and no temporary is left behind on failure. */
em_status em_cmdstan_write(const char *path, const em_cmdstan_file *f, int sig_digits, em_error *err);

/* Write "base.i" (i is 1-based, as CmdStan names vector elements) into out[0..cap).
 * Returns EM_ERR_ARG if it does not fit. */
em_status em_cmdstan_name(char *out, size_t cap, const char *base, size_t i, em_error *err);

/* ---- a posterior's files ---------------------------------------------------------------------- */

typedef struct em_posterior em_posterior; /* posterior.h */

typedef struct em_cmdstan_write_options {
    int sig_digits; /* as em_cmdstan_format: 0 round-trips */
    int log_lik;    /* 1: append log_lik.1 ... log_lik.N, the pointwise log-likelihood of each draw
                     * (needs the model; every chain is then cut to the posterior's common draw
                     * count) */
} em_cmdstan_write_options;

/* Write every chain of p as dir/<prefix>_<k>.csv (k = 1, 2, ..., the chain's id), or
 * dir/<prefix>.csv for independent draws (a guide's), as CmdStan names its outputs,
 * each atomically, with the configuration lines CmdStan writes and its readers rely on
 * (method, num_samples, num_warmup, save_warmup, thin, adapt, algorithm and engine, max_depth,
 * metric, stepsize, id, data file, seed, model, Ember's version), the adaptation block and the
 * timing footer. Guide and Laplace draws are written as CmdStan writes `method = variational`
 * output (lp__, log_p__, log_g__ columns, the approximation's mean as the first row), which
 * rstan::read_stan_csv, posterior and ArviZ accept. A chain interrupted before its first
 * sampling draw is not in the posterior and gets no file; *nwritten (may be NULL) counts the
 * files written. opt may be NULL. */
em_status em_posterior_write_cmdstan(const em_posterior *p, const char *dir, const char *prefix,
                                     const em_cmdstan_write_options *opt, size_t *nwritten, em_error *err);

/* Read the posterior in CmdStan CSV files, one chain per file (Stan's own or Ember's): the
 * configuration lines give the method, warmup rows (save_warmup) are kept apart, a
 * variational file's mean row is set aside, and the adaptation block and timings are read. The
 * files must have the same columns. Attach the model (em_posterior_attach_model) to predict. */
em_status em_posterior_read_cmdstan(const char *const *paths, size_t npaths, em_posterior **out, em_error *err);

/* Draws read back from a CmdStan-layout file (any Stan CSV: comment lines are skipped). */
typedef struct em_cmdstan_draws {
    size_t ncols, ndraws;
    char **names;  /* [ncols] */
    double *draws; /* [ndraws*ncols] row-major, as in em_cmdstan_file */
    void *priv_;
} em_cmdstan_draws;

/* Read every column of a Stan CSV file (nan and inf values allowed, empty fields are errors).
 * Free the result with em_cmdstan_draws_free. */
em_status em_cmdstan_read(const char *path, em_cmdstan_draws **out, em_error *err);
/* The same from memory: buf[0..len) need not be NUL-terminated; name is used in messages. */
em_status em_cmdstan_parse_buffer(const char *name, const char *buf, size_t len, em_cmdstan_draws **out,
                                  em_error *err);
/* Index of column name, or -1. */
long em_cmdstan_column_index(const em_cmdstan_draws *d, const char *name);
void em_cmdstan_draws_free(em_cmdstan_draws *d);

#ifdef __cplusplus
}
#endif
#endif
