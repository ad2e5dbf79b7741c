/* cli.h — the rugged example's command-line options. */
#ifndef RUGGED_CLI_H
#define RUGGED_CLI_H

#include <stdint.h>
#include <stdio.h>

typedef enum { METHOD_SVI = 1, METHOD_NUTS = 2, METHOD_BOTH = 3 } fit_method;

typedef struct rugged_options {
    const char *data;      /* --data: the CSV file (data/rugged_data.csv) */
    const char *out;       /* --out: output folder (out) */
    uint64_t seed;         /* --seed (1) */
    int chains;            /* --chains (4) */
    int samples;           /* --samples per chain (1000) */
    int warmup;            /* --warmup per chain (1000) */
    fit_method method;     /* --method svi|nuts|both */
    int svi_steps;         /* --svi-steps: 0 = the tutorials' (1500 Part 1, 5000 Part 2) */
    int folds;             /* --folds for the calibration (10; 0 skips it) */
    int sbc;               /* --sbc R: only simulation-based calibration with R replications (0: off) */
    int figures;           /* 0 with --no-figures */
    int loo;               /* 0 with --no-loo: no PSIS-LOO comparison of the models */
    int timing;            /* 0 with --no-timing (stdout then depends only on the options) */
    int quiet;             /* --quiet: no progress lines on stderr */
} rugged_options;

/* Parse argv. Returns 0 to run, 1 when --help was printed (exit 0), 2 for a usage error
 * (the message is already on err; exit 2). */
int cli_parse(int argc, char **argv, rugged_options *o, FILE *err);
void cli_usage(FILE *f);

#endif
