/* memory.c — peak resident memory against the size of the data (issue #17's scale item).
 *
 * For each size n a rugged-like data file (the example's columns isocode, cont_africa, rugged
 * and rgdppc_2000, simulated from the model near the tutorial's posterior) is written into a
 * temporary folder, and every path below runs in a process of its own under an address-space
 * limit (--limit-gb, 8 by default); the parent reads the child's peak resident set from wait4
 * (ru_maxrss). Memory is proportional to the data when the peak grows like n with a small
 * constant: printed per size and path are the peak, the data's own size (n rows × 3 doubles,
 * the columns the model reads) and their ratio, and per path the slope in bytes per row between
 * the smallest and the largest size. One JSON line per case on stdout, the table on stderr;
 * nothing asserts a size.
 *
 * Paths (library):
 *   load      read the file and build the model's data (the baseline: the table, X, log GDP)
 *   nuts      em_fit_nuts, 1 chain, 100 warmup + 100 draws, and the summary
 *   svi       em_fit_svi (AutoDiagonalNormal: Laplace start, 200 steps, a 200-particle final ELBO,
 *             200 draws with their log_p__ for k-hat)
 *   elbo      em_elbo_estimate with 100 particles
 *   svi8      em_svi with 8 particles per step, 5 steps
 *   predict   em_posterior_predict of sites mean and obs over 100 Laplace draws, streamed
 *             (on_draw) into running means per row
 *   log_lik   em_posterior_log_lik_each over the same draws, reduced to the lppd per row
 * and, with --example PATH, the example program itself:
 *   ex-svi    --method svi --svi-steps 200 (the three SVI fits, their 2000-particle -ELBO,
 *             draws and the predictive bands of every row)
 *   ex-nuts   --method nuts --chains 1 --warmup 100 --samples 100 (and the bands)
 * both with --folds 0 --no-loo --no-figures.
 *
 *   memory [--sizes 1e4,1e5] [--paths load,nuts,...] [--limit-gb 8] [--example PATH]
 *   memory --write-csv N PATH        (the generator alone)
 */
#define _DEFAULT_SOURCE /* wait4 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "ember.h"
#include "rugged_model.h"

/* ---- the data ----------------------------------------------------------------------------- */

/* n rows like the rugged data: Africa with probability 0.3, ruggedness exponential (mean 1.2,
 * capped at 8), log GDP from the model at a = 9.22, bA = -1.95, bR = -0.20, bAR = 0.39,
 * sigma = 0.95. Written to a temporary name, then renamed. */
static int write_csv(size_t n, const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "memory: %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    em_rng *rng = em_rng_create(17, 0);
    fprintf(f, "isocode,cont_africa,rugged,rgdppc_2000\n");
    for (size_t i = 0; i < n; i++) {
        int a = em_rng_uniform(rng) < 0.3;
        double r = fmin(-1.2 * log1p(-em_rng_uniform(rng)), 8.0);
        double lg = 9.22 - 1.95 * a - 0.20 * r + 0.39 * a * r + 0.95 * em_rng_normal(rng);
        fprintf(f, "R%zu,%d,%.3f,%.2f\n", i, a, r, exp(lg));
    }
    em_rng_destroy(rng);
    int bad = ferror(f) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        fprintf(stderr, "memory: writing %s failed\n", path);
        remove(tmp);
        return 1;
    }
    return 0;
}

/* ---- the library's paths, each run in a child --------------------------------------------- */

typedef struct row_sums {
    size_t n;
    double *mean_mu, *mean_y; /* running means of sites mean and obs */
    double *mx, *se;          /* log-sum-exp of log_lik: running max and sum of exp(x - max) */
    size_t draws;
} row_sums;

static em_status sum_predict(void *arg, size_t d, const em_pred_site *site, const double *v, em_error *err) {
    row_sums *r = arg;
    double *m = strcmp(site->name, "mean") == 0 ? r->mean_mu : r->mean_y;
    if (site->len != r->n) return em_error_set(err, EM_ERR_MODEL, "site %s has %zu values", site->name, site->len);
    for (size_t i = 0; i < r->n; i++) m[i] += (v[i] - m[i]) / (double)(d + 1);
    r->draws = d + 1;
    return EM_OK;
}

static em_status sum_log_lik(void *arg, size_t d, const em_pred_site *site, const double *v, em_error *err) {
    row_sums *r = arg;
    if (site->len != r->n) return em_error_set(err, EM_ERR_MODEL, "site %s has %zu values", site->name, site->len);
    for (size_t i = 0; i < r->n; i++) {
        if (v[i] > r->mx[i]) {
            r->se[i] = r->se[i] * exp(r->mx[i] - v[i]) + 1.0;
            r->mx[i] = v[i];
        } else {
            r->se[i] += exp(v[i] - r->mx[i]);
        }
    }
    r->draws = d + 1;
    return EM_OK;
}

/* Run one path on the data at csv; prints a one-line note (a figure of the result, so that a
 * path that did no work shows). */
static int run_path(const char *path, const char *csv) {
    rugged_data d;
    em_error e = {0};
    if (rugged_data_load(csv, &d, &e) != EM_OK) {
        printf("error %s\n", e.msg);
        return 1;
    }
    em_status s = EM_OK;
    char note[256] = "";
    em_posterior *post = NULL;
    if (!strcmp(path, "load")) {
        snprintf(note, sizeof note, "rows %zu", d.n);
    } else if (!strcmp(path, "nuts")) {
        em_mcmc_config cfg = em_mcmc_config_default();
        cfg.num_chains = 1;
        cfg.num_warmup = 100;
        cfg.num_samples = 100;
        cfg.seed = 1;
        em_summary *sum = NULL;
        s = em_fit_nuts(rugged_model, &d, &cfg, &post, &e);
        if (s == EM_OK) s = em_posterior_summary(post, &sum, &e);
        double a[100];
        if (s == EM_OK) s = em_posterior_draws(post, "a", a, &e);
        if (s == EM_OK) snprintf(note, sizeof note, "a mean %.4f", em_mean(a, 100));
        em_summary_free(sum);
    } else if (!strcmp(path, "svi")) {
        em_svi_fit_config c = em_svi_fit_config_default();
        c.num_steps = 200;
        c.elbo_particles = 200;
        c.num_draws = 200;
        c.seed = 1;
        s = em_fit_svi(rugged_model, &d, &c, &post, &e);
        em_svi_fit_info info;
        if (s == EM_OK) s = em_posterior_svi_info(post, &info, &e);
        if (s == EM_OK) snprintf(note, sizeof note, "elbo %.6g", info.run.elbo);
    } else if (!strcmp(path, "elbo") || !strcmp(path, "svi8")) {
        em_autoguide *g = em_autoguide_create(EM_AUTO_DIAGONAL_NORMAL, rugged_model, &d,
                                              &(em_autoguide_options){.seed = 1}, &e);
        if (!g) s = e.status;
        if (s == EM_OK && !strcmp(path, "elbo")) {
            em_param_store *ps = em_param_store_create();
            em_rng *rng = em_rng_create(1, 1);
            double elbo = NAN;
            s = em_elbo_estimate(EM_ELBO_TRACE, rugged_model, &d, em_autoguide_fn, g, ps, 100, rng, &elbo, &e);
            if (s == EM_OK) snprintf(note, sizeof note, "elbo %.6g", elbo);
            em_rng_destroy(rng);
            em_param_store_destroy(ps);
        } else if (s == EM_OK) {
            em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, 0.01);
            em_svi *svi = em_svi_create(rugged_model, &d, em_autoguide_fn, g, &oc,
                                        &(em_svi_options){.seed = 1, .num_particles = 8}, &e);
            s = svi ? em_svi_run(svi, 5, NULL, &e) : e.status;
            size_t nh;
            if (s == EM_OK) snprintf(note, sizeof note, "loss %.6g", em_svi_loss_history(svi, &nh)[nh - 1]);
            em_svi_destroy(svi);
        }
        em_autoguide_destroy(g);
    } else if (!strcmp(path, "predict") || !strcmp(path, "log_lik")) {
        row_sums r = {.n = d.n};
        r.mean_mu = calloc(d.n, sizeof(double));
        r.mean_y = calloc(d.n, sizeof(double));
        r.mx = malloc(d.n * sizeof(double));
        r.se = calloc(d.n, sizeof(double));
        if (!r.mean_mu || !r.mean_y || !r.mx || !r.se) s = em_error_set(&e, EM_ERR_NOMEM, "out of memory");
        for (size_t i = 0; s == EM_OK && i < d.n; i++) r.mx[i] = -INFINITY;
        if (s == EM_OK) s = em_fit_laplace(rugged_model, &d, 100, 1, &post, &e);
        if (s == EM_OK && !strcmp(path, "predict")) {
            const char *sites[2] = {"mean", "obs"};
            em_predictive_options po = {.seed = 3, .return_sites = sites, .nreturn = 2, .on_draw = sum_predict,
                                        .on_draw_arg = &r};
            em_predictive *pr = NULL;
            s = em_posterior_predict(post, NULL, &po, &pr, &e);
            em_predictive_free(pr);
            if (s == EM_OK)
                snprintf(note, sizeof note, "%zu draws; row 1: mean %.4f, y %.4f", r.draws, r.mean_mu[0], r.mean_y[0]);
        } else if (s == EM_OK) {
            s = em_posterior_log_lik_each(post, "obs", sum_log_lik, &r, &e);
            double lppd = 0.0;
            for (size_t i = 0; s == EM_OK && i < d.n; i++) lppd += r.mx[i] + log(r.se[i] / (double)r.draws);
            if (s == EM_OK) snprintf(note, sizeof note, "%zu draws; lppd %.6g", r.draws, lppd);
        }
        free(r.mean_mu);
        free(r.mean_y);
        free(r.mx);
        free(r.se);
    } else {
        s = em_error_set(&e, EM_ERR_ARG, "unknown path '%s'", path);
    }
    em_posterior_free(post);
    rugged_data_free(&d);
    if (s != EM_OK) {
        printf("error %s\n", e.msg);
        return 1;
    }
    printf("ok %s\n", note);
    return 0;
}

/* ---- the parent ----------------------------------------------------------------------------- */

typedef struct result {
    char path[16];
    size_t rows;
    long rss_kb;
    double seconds;
    int ok;
} result;

/* Run argv in a child under the limit; its stdout (one line) into note, its stderr into log
 * (NULL: inherited). Returns 0 when it exited with status 0. */
static int run_child(char *const *argv, size_t limit_bytes, const char *log, char *note, size_t nnote, long *rss_kb,
                     double *seconds) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        struct rlimit rl = {limit_bytes, limit_bytes};
        setrlimit(RLIMIT_AS, &rl);
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (log) {
            int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (lf >= 0) dup2(lf, 2);
        }
        execv(argv[0], argv);
        fprintf(stderr, "memory: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0;
    ssize_t k;
    char buf[4096];
    while ((k = read(fd[0], buf, sizeof buf)) > 0) { /* keep the start, drain the rest */
        size_t take = (size_t)k < nnote - 1 - len ? (size_t)k : nnote - 1 - len;
        memcpy(note + len, buf, take);
        len += take;
    }
    note[len] = '\0';
    char *nl = strchr(note, '\n');
    if (nl) *nl = '\0';
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return -1;
    *seconds = bench_now() - t0;
    *rss_kb = ru.ru_maxrss;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* The last line of a file, for a failed example's message. */
static void last_line(const char *path, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (line[0] != '\n') snprintf(out, n, "%.400s", line);
    fclose(f);
    char *nl = strchr(out, '\n');
    if (nl) *nl = '\0';
}

static int has(const char *list, const char *name) {
    size_t k = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += k)
        if ((p == list || p[-1] == ',') && (p[k] == ',' || p[k] == '\0')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--write-csv")) return write_csv(strtoull(argv[2], NULL, 10), argv[3]);
    if (argc == 4 && !strcmp(argv[1], "--child")) return run_path(argv[2], argv[3]);
    const char *sizes = "10000,100000", *paths = "load,nuts,svi,elbo,svi8,predict,log_lik,ex-svi,ex-nuts";
    const char *example = NULL;
    double limit_gb = 8.0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--sizes") && v) sizes = argv[++i];
        else if (!strcmp(argv[i], "--paths") && v) paths = argv[++i];
        else if (!strcmp(argv[i], "--example") && v) example = argv[++i];
        else if (!strcmp(argv[i], "--limit-gb") && v) limit_gb = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: memory [--sizes N,N,...] [--paths p,...] [--limit-gb G] [--example PATH]\n"
                            "       memory --write-csv N PATH\n");
            return 2;
        }
    }
    if (!(limit_gb > 0)) {
        fprintf(stderr, "memory: --limit-gb must be positive\n");
        return 2;
    }
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "memory: cannot find its own executable\n");
        return 1;
    }
    self[sl] = '\0';
    char dir[] = "/tmp/ember-memory-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "memory: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    const char *lib_paths[] = {"load", "nuts", "svi", "elbo", "svi8", "predict", "log_lik"};
    const size_t nlib = sizeof lib_paths / sizeof lib_paths[0];
    result res[256];
    size_t nres = 0;
    size_t limit = (size_t)(limit_gb * 1073741824.0);
    int failed = 0;
    char csv[4200], outdir[4200], log[4200], note[512];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    snprintf(log, sizeof log, "%s/example.log", dir);
    for (const char *p = sizes; *p && nres < 240;) {
        char *end;
        size_t n = (size_t)strtod(p, &end);
        p = *end == ',' ? end + 1 : end;
        if (n == 0) continue;
        snprintf(csv, sizeof csv, "%s/rugged_%zu.csv", dir, n);
        if (write_csv(n, csv) != 0) {
            failed = 1;
            break;
        }
        double data_mb = 24.0 * (double)n / 1048576.0;
        for (size_t k = 0; k < nlib + 2; k++) {
            const char *name = k < nlib ? lib_paths[k] : (k == nlib ? "ex-svi" : "ex-nuts");
            if (!has(paths, name) || (k >= nlib && !example)) continue;
            result *r = &res[nres++];
            snprintf(r->path, sizeof r->path, "%s", name);
            r->rows = n;
            int rc;
            if (k < nlib) {
                char *av[] = {self, "--child", (char *)name, csv, NULL};
                rc = run_child(av, limit, NULL, note, sizeof note, &r->rss_kb, &r->seconds);
            } else {
                char *svi[] = {(char *)example, "--data", csv, "--out", outdir, "--method", "svi", "--svi-steps", "200",
                               "--folds", "0", "--no-loo", "--no-figures", "--quiet", "--no-timing", NULL};
                char *nuts[] = {(char *)example, "--data", csv, "--out", outdir, "--method", "nuts", "--chains", "1",
                                "--warmup", "100", "--samples", "100", "--folds", "0", "--no-loo", "--no-figures",
                                "--quiet", "--no-timing", NULL};
                rc = run_child(k == nlib ? svi : nuts, limit, log, note, sizeof note, &r->rss_kb, &r->seconds);
                if (rc != 0) last_line(log, note, sizeof note);
                else snprintf(note, sizeof note, "ok");
            }
            r->ok = rc == 0 && strncmp(note, "error", 5) != 0;
            failed |= !r->ok;
            double rss_mb = (double)r->rss_kb / 1024.0;
            printf("{\"bench\":\"memory\",\"path\":\"%s\",\"rows\":%zu,\"peak_rss_mb\":%.1f,\"data_mb\":%.1f,"
                   "\"ratio\":%.2f,\"seconds\":%.2f,\"limit_gb\":%g,\"ok\":%s,\"note\":\"",
                   name, n, rss_mb, data_mb, rss_mb / data_mb, r->seconds, limit_gb, r->ok ? "true" : "false");
            for (const char *c = note; *c; c++)
                if (*c != '"' && *c != '\\') putchar(*c);
            printf("\"}\n");
            fflush(stdout);
        }
        remove(csv);
    }
    /* the table, and per path the slope between the smallest and largest size */
    fprintf(stderr, "\n%-8s %10s %12s %10s %8s %8s\n", "path", "rows", "peak RSS MB", "data MB", "ratio", "seconds");
    for (size_t i = 0; i < nres; i++) {
        double rss_mb = (double)res[i].rss_kb / 1024.0, data_mb = 24.0 * (double)res[i].rows / 1048576.0;
        fprintf(stderr, "%-8s %10zu %12.1f %10.1f %8.2f %8.1f%s\n", res[i].path, res[i].rows, rss_mb, data_mb,
                rss_mb / data_mb, res[i].seconds, res[i].ok ? "" : "  FAILED");
    }
    fprintf(stderr, "\nbytes of peak RSS per row, between the smallest and the largest size (the data: 24):\n");
    for (size_t i = 0; i < nres; i++) {
        size_t lo = i, hi = i;
        int first = 1;
        for (size_t j = 0; j < i; j++) first &= strcmp(res[j].path, res[i].path) != 0;
        if (!first) continue;
        for (size_t j = i; j < nres; j++)
            if (!strcmp(res[j].path, res[i].path) && res[j].ok) {
                if (res[j].rows < res[lo].rows || !res[lo].ok) lo = j;
                if (res[j].rows > res[hi].rows || !res[hi].ok) hi = j;
            }
        if (res[hi].rows > res[lo].rows && res[lo].ok && res[hi].ok)
            fprintf(stderr, "  %-8s %8.1f\n", res[i].path,
                    1024.0 * (double)(res[hi].rss_kb - res[lo].rss_kb) / (double)(res[hi].rows - res[lo].rows));
    }
    /* the temporary folder: the data is removed above; the example's outputs here */
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "memory: could not remove %s\n", dir);
    return failed;
}
