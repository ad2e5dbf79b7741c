/* cli.c — option parsing for the rugged example: "--name value" or "--name=value", every value
 * checked (a number must be all digits and in range), every mistake named. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cli_usage(FILE *f) {
    fputs("usage: rugged [options]\n"
          "\n"
          "Pyro's Bayesian-regression tutorials (Parts 1 and 2) in C: log GDP per capita against\n"
          "terrain ruggedness, inside and outside Africa, fitted by SVI and by NUTS.\n"
          "\n"
          "options:\n"
          "  --data PATH       data file (default data/rugged_data.csv)\n"
          "  --out DIR         output folder for CSV files and figures (default out)\n"
          "  --seed N          random seed (default 1); the same seed gives the same numbers\n"
          "  --method M        svi, nuts or both (default both)\n"
          "  --chains N        NUTS chains (default 4)\n"
          "  --samples N       NUTS draws kept per chain (default 1000)\n"
          "  --warmup N        NUTS warmup iterations per chain (default 1000)\n"
          "                    (Pyro's Part 2 ran --chains 1 --samples 1000 --warmup 200)\n"
          "  --svi-steps N     optimisation steps of every SVI fit (default: as the tutorials,\n"
          "                    1500 for AutoDiagonalNormal, 5000 for Part 2's guides)\n"
          "  --folds K         folds of the calibration check (default 10; 0 skips it)\n"
          "  --sbc R           instead of the tutorials: simulation-based calibration with R\n"
          "                    replications of --method nuts (default) or svi (the mean-field\n"
          "                    guide); writes sbc_summary.csv and sbc_ranks.csv into --out\n"
          "  --no-figures      do not write or draw the figures\n"
          "  --no-loo          skip the PSIS-LOO comparison of the three models (NUTS runs only)\n"
          "  --no-timing       leave wall-clock times out of the printed report, so that it\n"
          "                    depends only on the options (used by make notebooks)\n"
          "  --quiet           no progress lines on stderr\n"
          "  --help            this text\n"
          "\n"
          "Tables go to stdout, progress to stderr. Ctrl-C during NUTS stops the chains and\n"
          "keeps the files of the chains that completed. Exit status: 0 success, 1 error,\n"
          "2 bad options, 130 interrupted.\n",
          f);
}

/* A whole decimal number in [lo, hi]. */
static int parse_long(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > (unsigned long long)hi || (long long)v < lo) return 0;
    *out = (long long)v;
    return 1;
}

int cli_parse(int argc, char **argv, rugged_options *o, FILE *err) {
    *o = (rugged_options){.data = "data/rugged_data.csv",
                          .out = "out",
                          .seed = 1,
                          .chains = 4,
                          .samples = 1000,
                          .warmup = 1000,
                          .method = METHOD_BOTH,
                          .folds = 10,
                          .figures = 1,
                          .loo = 1,
                          .timing = 1};
    struct {
        const char *name;
        long long lo, hi;
        int *target;
    } ints[] = {
        {"chains", 1, 64, &o->chains},         {"samples", 10, 10000000, &o->samples},
        {"warmup", 0, 10000000, &o->warmup},   {"svi-steps", 1, 100000000, &o->svi_steps},
        {"folds", 0, 0, &o->folds}, /* upper bound: the rows, checked in main */
        {"sbc", 1, 100000, &o->sbc},
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(err, "rugged: unexpected argument '%s' (options start with --; see --help)\n", arg);
            return 2;
        }
        char name[64];
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, arg + 2, len);
        name[len] = '\0';

        /* flags */
        int is_flag = 1;
        if (!strcmp(name, "help")) {
            cli_usage(stdout);
            return 1;
        } else if (!strcmp(name, "quiet")) o->quiet = 1;
        else if (!strcmp(name, "no-figures")) o->figures = 0;
        else if (!strcmp(name, "no-loo")) o->loo = 0;
        else if (!strcmp(name, "no-timing")) o->timing = 0;
        else is_flag = 0;
        if (is_flag) {
            if (eq) {
                fprintf(err, "rugged: option --%s takes no value (got '%s')\n", name, arg);
                return 2;
            }
            continue;
        }

        /* options with a value */
        static const char *const known[] = {"data", "out", "seed", "method", "chains", "samples",
                                            "warmup", "svi-steps", "folds", "sbc"};
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(name, known[k]);
        if (!ok) {
            fprintf(err, "rugged: unknown option '%s' (see --help)\n", arg);
            return 2;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            fprintf(err, "rugged: option --%s needs a value (see --help)\n", name);
            return 2;
        }
        if (!strcmp(name, "data") || !strcmp(name, "out")) {
            if (!*val) {
                fprintf(err, "rugged: option --%s needs a non-empty path\n", name);
                return 2;
            }
            if (!strcmp(name, "data")) o->data = val;
            else o->out = val;
        } else if (!strcmp(name, "method")) {
            if (!strcmp(val, "svi")) o->method = METHOD_SVI;
            else if (!strcmp(val, "nuts")) o->method = METHOD_NUTS;
            else if (!strcmp(val, "both")) o->method = METHOD_BOTH;
            else {
                fprintf(err, "rugged: --method must be svi, nuts or both (got '%s')\n", val);
                return 2;
            }
        } else if (!strcmp(name, "seed")) {
            long long v;
            /* seeds up to 2^63 - 1 keep the parsing simple and are plenty */
            if (!parse_long(val, 0, 9223372036854775807LL, &v)) {
                fprintf(err, "rugged: --seed must be a whole number from 0 to 9223372036854775807 (got '%s')\n", val);
                return 2;
            }
            o->seed = (uint64_t)v;
        } else {
            for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) {
                if (strcmp(name, ints[k].name)) continue;
                long long hi = ints[k].hi ? ints[k].hi : 1000000, v;
                if (!parse_long(val, ints[k].lo, hi, &v)) {
                    fprintf(err, "rugged: --%s must be a whole number from %lld to %lld (got '%s')\n", name,
                            ints[k].lo, hi, val);
                    return 2;
                }
                *ints[k].target = (int)v;
            }
        }
    }
    return 0;
}
