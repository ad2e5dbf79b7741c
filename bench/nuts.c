/* nuts.c — NUTS efficiency: the minimum over parameters of the bulk effective sample size per
 * second of one chain (warmup included), Ember against Stan (Debian's r-cran-rstan) in the
 * same run.
 *
 * Models: the rugged regression (170 rows, 5 parameters) and a linear regression with
 * n = 100000, d = 20 through the fused normal_id_glm likelihood (bench/linreg_model.h). Stan
 * runs each model written its fastest way (bench/stan/MODEL.stan, normal_id_glm for both),
 * compiled once and cached in build/stan by scripts/bench-stan.sh; the compile time is
 * reported on its own and never counted in Stan's figures.
 *
 * Fairness: both sides sample the same data (this program writes the exact doubles it samples
 * to a file Stan reads), one chain at a time on one thread (OpenBLAS limited to one thread
 * here; a Stan chain is single-threaded), Stan's defaults on both sides (1000 warmup + 1000
 * sampling iterations, diagonal metric, target acceptance 0.8, max tree depth 10, inits
 * uniform(-2, 2) on the unconstrained space), and the same ESS estimator (posterior::ess_bulk,
 * which em_ess_bulk reproduces). Time is CPU time on both sides, because that is what Stan
 * 2.21's get_elapsed_time reports (clock() differences, process CPU time of a single-threaded R
 * process); for Ember the CPU time of the thread running the chain, from the call of
 * em_mcmc_run to its return (so cloning and initialisation count against Ember). CPU time
 * keeps other jobs on the machine out of the figures; Ember's wall time is printed too.
 *
 * To show where Ember's time goes, the rugged rounds also run the same density written by hand
 * in C ("ember_hand_*": the sampler's own cost plus the bare arithmetic), checked to agree with
 * the model's density and gradient first. (The example's rugged model already uses
 * normal_id_glm, as Stan's side does.)
 *
 * Rounds alternate an Ember chain and a Stan chain (seed 1000 + round), so a change of machine
 * load hits both alike; reported are the medians over rounds and the median of the per-round
 * ratios Ember/Stan (targets: >= 3 on rugged, >= 1.5 on the large regression). Nothing here
 * asserts a time. Without rstan, Stan's fields are null and stderr says how to install it.
 *
 * Both sides run on one CPU: the program pins itself to the CPU it starts on, and Stan's R
 * process, its child, inherits that. On a shared virtual machine the cores need not be equally
 * fast (measured here: the rugged density took 0.58 µs per evaluation on one core and 0.35 µs
 * on the other), and without the pin a round's ratio depended on where each side landed.
 *
 * Environment: EMBER_NUTS_ROUNDS (rounds per model; default 7 for rugged, 3 for the large
 * regression), EMBER_NUTS_STAN=0 (skip Stan), EMBER_NUTS_MODELS (comma list: rugged,linreg_glm).
 */
#define _GNU_SOURCE /* sched_getcpu, sched_setaffinity */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "bench.h"
#include "ember.h"
#include "linreg_model.h"
#include "rugged_model.h"

enum { MAX_ROUNDS = 64, NUM_WARMUP = 1000, NUM_SAMPLES = 1000 };

/* One chain's figures. */
typedef struct chain_figures {
    double min_ess;     /* min over parameters of the bulk ESS */
    double seconds;     /* CPU seconds of warmup + sampling */
    double wall;        /* wall seconds of warmup + sampling (Ember only) */
    double grad_evals;  /* leapfrog steps over warmup and sampling */
    double divergent;   /* divergent sampling iterations */
    double stepsize;    /* adapted step size */
} chain_figures;

/* CPU time of the calling thread, which runs the whole chain when num_threads is 1. Not the
 * process's: OpenBLAS's idle worker threads (started before we could limit them) would count. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median(double *x, size_t n) {
    qsort(x, n, sizeof x[0], bench_cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* ---- Ember ---------------------------------------------------------------------------------- */

static int ember_chain(const em_logdensity *ld, uint64_t seed, chain_figures *f) {
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_chains = 1;
    cfg.num_threads = 1;
    cfg.num_warmup = NUM_WARMUP;
    cfg.num_samples = NUM_SAMPLES;
    cfg.save_warmup = 1; /* to count the warmup's gradient evaluations */
    cfg.seed = seed;
    em_mcmc_result *r = NULL;
    em_error err = {0};
    double c0 = cpu_now();
    em_status st = em_mcmc_run(ld, &cfg, &r, &err);
    double c1 = cpu_now();
    if (st != EM_OK) {
        fprintf(stderr, "nuts bench: Ember chain (seed %llu): %s\n", (unsigned long long)seed, err.msg);
        em_mcmc_result_free(r);
        return -1;
    }
    const em_mcmc_chain *ch = &r->chains[0];
    size_t n = em_mcmc_extract(r, 0, NULL);
    double *buf = malloc(n * sizeof *buf);
    if (!buf) {
        em_mcmc_result_free(r);
        return -1;
    }
    f->min_ess = INFINITY;
    for (size_t j = EM_MCMC_NUM_SAMPLER_COLS; j < r->num_columns; j++) {
        em_mcmc_extract(r, j, buf);
        double e = em_ess_bulk(buf, 1, n, NULL);
        if (!(e >= f->min_ess)) f->min_ess = e; /* a NaN ESS (constant draws) wins: it shows */
    }
    free(buf);
    f->grad_evals = 0;
    for (size_t i = 0; i < ch->num_draws; i++) f->grad_evals += em_mcmc_draw(r, 0, i)[EM_MCMC_COL_N_LEAPFROG];
    f->seconds = c1 - c0; /* includes cloning and finding the initial point: against Ember */
    f->wall = ch->warmup_seconds + ch->sampling_seconds;
    f->divergent = (double)ch->num_divergent;
    f->stepsize = ch->stepsize;
    em_mcmc_result_free(r);
    return 0;
}

/* ---- Stan, through scripts/bench-stan.sh ----------------------------------------------------- */

/* The number after "key": in a JSON line, NaN when absent or null. */
static double json_number(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NAN;
    p += strlen(pat);
    char *end;
    double v = strtod(p, &end);
    return end == p ? NAN : v;
}

/* Run a bench-stan.sh command; its last stdout line goes to line. 0 on success. */
static int run_stan_script(const char *args, char *line, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash scripts/bench-stan.sh %s", args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char buf[1024];
    line[0] = '\0';
    while (fgets(buf, sizeof buf, p))
        if (buf[0] == '{') snprintf(line, cap, "%s", buf);
    int rc = pclose(p);
    return rc == 0 && line[0] == '{' ? 0 : -1;
}

static int stan_available(void) {
    const char *e = getenv("EMBER_NUTS_STAN");
    if (e && strcmp(e, "0") == 0) return 0;
    if (system("bash scripts/bench-stan.sh check >/dev/null 2>&1") == 0) return 1;
    fprintf(stderr, "nuts bench: rstan is not installed, Stan's fields are null. To compare with Stan, "
                    "install it (as root: bash scripts/install-deps.sh --with-stan, or "
                    "bash scripts/bench-stan.sh --install) and rerun.\n");
    return 0;
}

static int stan_chain(const char *model, const char *datafile, uint64_t seed, chain_figures *f) {
    char args[512], line[1024];
    snprintf(args, sizeof args, "sample %s %s %llu %d %d", model, datafile, (unsigned long long)seed, NUM_WARMUP,
             NUM_SAMPLES);
    if (run_stan_script(args, line, sizeof line) != 0) {
        fprintf(stderr, "nuts bench: the Stan chain for %s (seed %llu) failed\n", model, (unsigned long long)seed);
        return -1;
    }
    f->min_ess = json_number(line, "min_ess_bulk");
    f->seconds = json_number(line, "warmup_s") + json_number(line, "sampling_s");
    f->wall = NAN;
    f->grad_evals = json_number(line, "grad_evals");
    f->divergent = json_number(line, "divergent");
    f->stepsize = json_number(line, "stepsize");
    return isfinite(f->min_ess) && f->seconds > 0 ? 0 : -1;
}

/* ---- one model ------------------------------------------------------------------------------ */

typedef struct model_case {
    const char *name;        /* as in bench/stan/<name>.stan */
    const em_logdensity *ld; /* Ember's density */
    /* Other Ember versions of the same density, run in the same rounds to show where time goes:
     * the model written another way, or by hand in C. */
    int nvar;
    const char *var_label[2];
    const em_logdensity *var_ld[2];
    const char *datafile;    /* the data for Stan, NULL without Stan */
    int rounds;
    double target;           /* the ratio the issue asks for */
    const char *extra_json;  /* model description fields */
} model_case;

static void json_num(const char *key, double v) {
    if (isfinite(v))
        printf(",\"%s\":%.6g", key, v);
    else
        printf(",\"%s\":null", key);
}

static void bench_model(const model_case *mc) {
    chain_figures ef[MAX_ROUNDS], sf[MAX_ROUNDS], hf[2][MAX_ROUNDS];
    double compile_s = NAN;
    int cached = 0, use_stan = mc->datafile != NULL;
    if (use_stan) {
        char args[256], line[1024];
        snprintf(args, sizeof args, "compile %s", mc->name);
        if (run_stan_script(args, line, sizeof line) != 0) {
            fprintf(stderr, "nuts bench: compiling bench/stan/%s.stan failed (see build/stan/%s.log); "
                            "Stan's fields are null\n", mc->name, mc->name);
            use_stan = 0;
        } else {
            compile_s = json_number(line, "compile_s");
            cached = strstr(line, "\"cached\":true") != NULL;
        }
    }
    int ne = 0, ns = 0, nh[2] = {0, 0};
    double ratios[MAX_ROUNDS];
    int nr = 0;
    for (int k = 0; k < mc->rounds; k++) {
        uint64_t seed = 1000 + (uint64_t)k;
        int ok_e = ember_chain(mc->ld, seed, &ef[ne]) == 0;
        int ok_s = use_stan && stan_chain(mc->name, mc->datafile, seed, &sf[ns]) == 0;
        fprintf(stderr, "nuts bench: %s round %d/%d:", mc->name, k + 1, mc->rounds);
        if (ok_e)
            fprintf(stderr, " Ember %.1f ESS/s (%.0f ESS, %.3f s, %.0f grads)", ef[ne].min_ess / ef[ne].seconds,
                    ef[ne].min_ess, ef[ne].seconds, ef[ne].grad_evals);
        if (ok_s)
            fprintf(stderr, "; Stan %.1f ESS/s (%.0f ESS, %.3f s, %.0f grads)", sf[ns].min_ess / sf[ns].seconds,
                    sf[ns].min_ess, sf[ns].seconds, sf[ns].grad_evals);
        for (int v = 0; v < mc->nvar; v++) {
            chain_figures *h = &hf[v][nh[v]];
            if (ember_chain(mc->var_ld[v], seed, h) != 0) continue;
            fprintf(stderr, "; Ember %s %.1f ESS/s (%.0f ESS, %.3f s)", mc->var_label[v], h->min_ess / h->seconds,
                    h->min_ess, h->seconds);
            nh[v]++;
        }
        fputc('\n', stderr);
        if (ok_e && ok_s)
            ratios[nr++] = (ef[ne].min_ess / ef[ne].seconds) / (sf[ns].min_ess / sf[ns].seconds);
        ne += ok_e;
        ns += ok_s;
    }

    /* medians of each figure over the rounds */
    double e_rate[MAX_ROUNDS], e_wrate[MAX_ROUNDS], e_ess[MAX_ROUNDS], e_sec[MAX_ROUNDS], e_grad[MAX_ROUNDS],
        e_us[MAX_ROUNDS], e_div[MAX_ROUNDS], e_step[MAX_ROUNDS];
    for (int i = 0; i < ne; i++) {
        e_step[i] = ef[i].stepsize;
        e_rate[i] = ef[i].min_ess / ef[i].seconds;
        e_wrate[i] = ef[i].min_ess / ef[i].wall;
        e_ess[i] = ef[i].min_ess;
        e_sec[i] = ef[i].seconds;
        e_grad[i] = ef[i].grad_evals;
        e_us[i] = 1e6 * ef[i].seconds / ef[i].grad_evals;
        e_div[i] = ef[i].divergent;
    }
    double s_rate[MAX_ROUNDS], s_ess[MAX_ROUNDS], s_sec[MAX_ROUNDS], s_grad[MAX_ROUNDS], s_us[MAX_ROUNDS],
        s_div[MAX_ROUNDS], s_step[MAX_ROUNDS];
    for (int i = 0; i < ns; i++) {
        s_step[i] = sf[i].stepsize;
        s_rate[i] = sf[i].min_ess / sf[i].seconds;
        s_ess[i] = sf[i].min_ess;
        s_sec[i] = sf[i].seconds;
        s_grad[i] = sf[i].grad_evals;
        s_us[i] = 1e6 * sf[i].seconds / sf[i].grad_evals;
        s_div[i] = sf[i].divergent;
    }
    double h_rate[2][MAX_ROUNDS], h_us[2][MAX_ROUNDS];
    for (int v = 0; v < mc->nvar; v++)
        for (int i = 0; i < nh[v]; i++) {
            h_rate[v][i] = hf[v][i].min_ess / hf[v][i].seconds;
            h_us[v][i] = 1e6 * hf[v][i].seconds / hf[v][i].grad_evals;
        }
#define MEDIAN_OR_NAN(a, n) ((n) > 0 ? median((a), (size_t)(n)) : NAN)
    printf("{\"bench\":\"nuts\",\"model\":\"%s\"%s,\"warmup\":%d,\"samples\":%d,\"time\":\"cpu\"", mc->name,
           mc->extra_json, NUM_WARMUP, NUM_SAMPLES);
    printf(",\"rounds\":%d", mc->rounds);
    json_num("ember_ess_per_s", MEDIAN_OR_NAN(e_rate, ne));
    json_num("ember_ess_per_wall_s", MEDIAN_OR_NAN(e_wrate, ne));
    json_num("ember_min_ess", MEDIAN_OR_NAN(e_ess, ne));
    json_num("ember_seconds", MEDIAN_OR_NAN(e_sec, ne));
    json_num("ember_grad_evals", MEDIAN_OR_NAN(e_grad, ne));
    json_num("ember_us_per_grad", MEDIAN_OR_NAN(e_us, ne));
    json_num("ember_divergent", MEDIAN_OR_NAN(e_div, ne));
    json_num("ember_stepsize", MEDIAN_OR_NAN(e_step, ne));
    for (int v = 0; v < mc->nvar; v++) {
        char key[64];
        snprintf(key, sizeof key, "ember_%s_ess_per_s", mc->var_label[v]);
        json_num(key, MEDIAN_OR_NAN(h_rate[v], nh[v]));
        snprintf(key, sizeof key, "ember_%s_us_per_grad", mc->var_label[v]);
        json_num(key, MEDIAN_OR_NAN(h_us[v], nh[v]));
    }
    json_num("stan_ess_per_s", MEDIAN_OR_NAN(s_rate, ns));
    json_num("stan_min_ess", MEDIAN_OR_NAN(s_ess, ns));
    json_num("stan_seconds", MEDIAN_OR_NAN(s_sec, ns));
    json_num("stan_grad_evals", MEDIAN_OR_NAN(s_grad, ns));
    json_num("stan_us_per_grad", MEDIAN_OR_NAN(s_us, ns));
    json_num("stan_divergent", MEDIAN_OR_NAN(s_div, ns));
    json_num("stan_stepsize", MEDIAN_OR_NAN(s_step, ns));
    json_num("ratio", MEDIAN_OR_NAN(ratios, nr));
    json_num("target", mc->target);
    json_num("stan_compile_s", compile_s);
    if (isfinite(compile_s)) printf(",\"stan_compile_cached\":%s", cached ? "true" : "false");
    printf("}\n");
#undef MEDIAN_OR_NAN
    fflush(stdout);
}

/* ---- data files for Stan -------------------------------------------------------------------- */

/* A temporary file holding count doubles from each of the blocks, native byte order. */
static char *write_doubles(const double *const *blocks, const size_t *counts, size_t nblocks) {
    char *path = strdup("/tmp/ember-nuts-XXXXXX");
    if (!path) return NULL;
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    int ok = f != NULL;
    for (size_t b = 0; ok && b < nblocks; b++) ok = fwrite(blocks[b], sizeof(double), counts[b], f) == counts[b];
    if (f && fclose(f) != 0) ok = 0;
    if (!f) close(fd);
    if (!ok) {
        unlink(path);
        free(path);
        return NULL;
    }
    return path;
}

/* The rugged density by hand, to split Ember's per-gradient cost between the sampler and the
 * model language. Its outputs are the unconstrained θ; bulk ESS is rank-based, so the logit of
 * sigma has the same ESS as sigma. */
static em_status rugged_by_hand(void *ctx, const double *theta, double *lp, double *grad, em_error *err) {
    (void)err;
    *lp = rugged_logdensity_by_hand(ctx, theta, grad);
    return EM_OK;
}

/* A second version of a density must be the model's, value and gradient, or its figures mean the model's, value and gradient, or its figures mean
 * nothing: compare them at a point away from the mode. */
static int same_density(em_logdensity *model, em_logdensity *hand, const char *name) {
    size_t dim = em_logdensity_dim(model);
    double *th = malloc(3 * dim * sizeof *th), lp1, lp2, worst = INFINITY;
    em_error err = {0};
    if (th) {
        for (size_t k = 0; k < dim; k++) th[k] = 0.3 - 0.05 * (double)k;
        double *g1 = th + dim, *g2 = th + 2 * dim;
        if (em_logdensity_eval(model, th, &lp1, g1, &err) == EM_OK &&
            em_logdensity_eval(hand, th, &lp2, g2, &err) == EM_OK) {
            worst = fabs(lp1 - lp2) / fmax(1.0, fabs(lp1));
            for (size_t k = 0; k < dim; k++) worst = fmax(worst, fabs(g1[k] - g2[k]) / fmax(1.0, fabs(g1[k])));
        }
    }
    free(th);
    if (worst < 1e-9) return 1;
    fprintf(stderr, "nuts bench: %s: this version of the density disagrees with the model (relative %g), "
                    "left out\n", name, worst);
    return 0;
}

static int wanted(const char *model) {
    const char *e = getenv("EMBER_NUTS_MODELS");
    if (!e || !*e) return 1;
    size_t len = strlen(model);
    for (const char *p = e; (p = strstr(p, model)) != NULL; p += len)
        if ((p == e || p[-1] == ',') && (p[len] == '\0' || p[len] == ',')) return 1;
    return 0;
}

static int rounds_for(int dflt) {
    const char *e = getenv("EMBER_NUTS_ROUNDS");
    int r = e ? atoi(e) : dflt;
    return r < 1 ? 1 : r > MAX_ROUNDS ? MAX_ROUNDS : r;
}

/* Pin the process (and so its later threads and children) to the CPU it runs on now. */
static void pin_to_current_cpu(void) {
    int cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0) CPU_SET(cpu, &set);
    if (cpu < 0 || sched_setaffinity(0, sizeof set, &set) != 0) {
        fprintf(stderr, "nuts bench: could not pin to one CPU; Ember and Stan may run on different cores\n");
        return;
    }
    fprintf(stderr, "nuts bench: Ember and Stan both run on CPU %d\n", cpu);
}

int main(void) {
    pin_to_current_cpu();
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    setenv("OPENBLAS_NUM_THREADS", "1", 0); /* for the R side too */
    int stan = stan_available();
    em_error err = {0};

    if (wanted("rugged")) {
        rugged_data d;
        if (rugged_data_load("examples/bayesian_regression/data/rugged_data.csv", &d, &err) != EM_OK) {
            fprintf(stderr, "nuts bench: %s\n", err.msg);
            return 1;
        }
        em_logdensity *ld = em_logdensity_from_model(rugged_model, &d, NULL, &err);
        if (!ld) {
            fprintf(stderr, "nuts bench: %s\n", err.msg);
            return 1;
        }
        double nd = (double)d.n;
        const double *blocks[] = {&nd, d.africa, d.rugged, d.log_gdp};
        size_t counts[] = {1, d.n, d.n, d.n};
        char *file = stan ? write_doubles(blocks, counts, 4) : NULL;
        if (stan && !file) fprintf(stderr, "nuts bench: cannot write the rugged data for Stan\n");
        char extra[64];
        snprintf(extra, sizeof extra, ",\"n\":%zu,\"dim\":5", d.n);
        em_logdensity *hand = em_logdensity_from_fn(5, rugged_by_hand, &d, NULL);
        if (hand && !same_density(ld, hand, "rugged (by hand)")) {
            em_logdensity_destroy(hand);
            hand = NULL;
        }
        model_case mc = {"rugged", ld, 0, {NULL, NULL}, {NULL, NULL}, file, rounds_for(7), 3.0, extra};
        if (hand) {
            mc.var_label[mc.nvar] = "hand";
            mc.var_ld[mc.nvar++] = hand;
        }
        bench_model(&mc);
        if (file) unlink(file);
        free(file);
        em_logdensity_destroy(ld);
        em_logdensity_destroy(hand);
        rugged_data_free(&d);
    }

    if (wanted("linreg_glm")) {
        linreg_data D;
        if (linreg_data_make(&D, 100000, 20, 3) != 0) {
            fprintf(stderr, "nuts bench: out of memory\n");
            return 1;
        }
        em_logdensity *ld = em_logdensity_from_model(linreg_model, &D, NULL, &err);
        if (!ld) {
            fprintf(stderr, "nuts bench: %s\n", err.msg);
            return 1;
        }
        double hdr[2] = {(double)D.n, (double)D.d};
        const double *blocks[] = {hdr, D.X, D.y};
        size_t counts[] = {2, D.n * D.d, D.n};
        char *file = stan ? write_doubles(blocks, counts, 3) : NULL;
        if (stan && !file) fprintf(stderr, "nuts bench: cannot write the regression data for Stan\n");
        char extra[64];
        snprintf(extra, sizeof extra, ",\"n\":%zu,\"d\":%zu,\"dim\":%zu", D.n, D.d, D.d + 2);
        model_case mc = {"linreg_glm", ld, 0, {NULL, NULL}, {NULL, NULL}, file, rounds_for(3), 1.5, extra};
        bench_model(&mc);
        if (file) unlink(file);
        free(file);
        em_logdensity_destroy(ld);
        linreg_data_free(&D);
    }
    return 0;
}
