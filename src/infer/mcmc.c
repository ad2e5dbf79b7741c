/* mcmc.c — the sampler driver: configuration, chains on threads, warmup adaptation schedule,
 * progress lines, signals (SIGINT, SIGTERM, SIGHUP) and cancellation, and the result. The kernels are in nuts.c and the
 * adaptation pieces in adapt.c. See ember/mcmc.h. */
#include "ember/mcmc.h"
#include "internal/adapt.h"
#include "internal/nuts.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define INIT_TRIES 100
#define MAX_TREEDEPTH_LIMIT 30

/* ---- configuration ----------------------------------------------------------------------- */

em_mcmc_config em_mcmc_config_default(void) {
    em_mcmc_config c;
    memset(&c, 0, sizeof c);
    c.algorithm = EM_MCMC_NUTS;
    c.num_chains = 4;
    c.num_threads = 0;
    c.num_warmup = 1000;
    c.num_samples = 1000;
    c.thin = 1;
    c.save_warmup = 0;
    c.seed = 20260101u;
    c.adapt = 1;
    c.target_accept = 0.8;
    c.gamma = 0.05;
    c.kappa = 0.75;
    c.t0 = 10;
    c.init_buffer = 75;
    c.term_buffer = 50;
    c.base_window = 25;
    c.stepsize = 1.0;
    c.metric = EM_METRIC_DIAG;
    c.inv_metric = NULL;
    c.max_treedepth = 10;
    c.max_delta_h = 1000;
    c.hmc_num_steps = 0;
    c.hmc_int_time = 2 * 3.14159265358979323846;
    c.init_radius = 2.0;
    c.init = NULL;
    c.init_len = 0;
    c.progress = 0;
    c.progress_stream = NULL;
    c.handle_sigint = 0;
    c.cancel = NULL;
    return c;
}

em_status em_mcmc_config_validate(const em_mcmc_config *c, em_error *err) {
    const char *f = "em_mcmc_config";
    if (!c) return em_error_set(err, EM_ERR_ARG, "%s: configuration is NULL", f);
    if (c->algorithm != EM_MCMC_NUTS && c->algorithm != EM_MCMC_HMC)
        return em_error_set(err, EM_ERR_ARG, "%s: algorithm %d is not EM_MCMC_NUTS or EM_MCMC_HMC",
                            f, (int)c->algorithm);
    if (c->metric != EM_METRIC_DIAG && c->metric != EM_METRIC_DENSE && c->metric != EM_METRIC_UNIT)
        return em_error_set(err, EM_ERR_ARG, "%s: metric %d is not diag, dense or unit", f,
                            (int)c->metric);
    if (c->num_chains < 1 || c->num_chains > EM_MCMC_MAX_CHAINS)
        return em_error_set(err, EM_ERR_ARG, "%s: num_chains = %d, must be in 1..%d", f,
                            c->num_chains, EM_MCMC_MAX_CHAINS);
    if (c->first_chain < 0 || c->first_chain > EM_MCMC_MAX_CHAINS - c->num_chains)
        return em_error_set(err, EM_ERR_ARG, "%s: first_chain = %d, must be in 0..%d with %d chains", f,
                            c->first_chain, EM_MCMC_MAX_CHAINS - c->num_chains, c->num_chains);
    if (c->num_threads < 0 || c->num_threads > EM_MCMC_MAX_CHAINS)
        return em_error_set(err, EM_ERR_ARG, "%s: num_threads = %d, must be in 0..%d (0: automatic)",
                            f, c->num_threads, EM_MCMC_MAX_CHAINS);
    if (c->num_warmup < 0)
        return em_error_set(err, EM_ERR_ARG, "%s: num_warmup = %d, must be >= 0", f, c->num_warmup);
    if (c->num_samples < 0)
        return em_error_set(err, EM_ERR_ARG, "%s: num_samples = %d, must be >= 0", f,
                            c->num_samples);
    if (c->num_warmup == 0 && c->num_samples == 0)
        return em_error_set(err, EM_ERR_ARG,
                            "%s: num_warmup and num_samples are both 0: nothing to do", f);
    if (c->thin < 1)
        return em_error_set(err, EM_ERR_ARG, "%s: thin = %d, must be at least 1", f, c->thin);
    if (!(c->target_accept > 0 && c->target_accept < 1))
        return em_error_set(err, EM_ERR_ARG,
                            "%s: target_accept = %g, must lie strictly between 0 and 1", f,
                            c->target_accept);
    if (!(c->gamma > 0) || !isfinite(c->gamma))
        return em_error_set(err, EM_ERR_ARG, "%s: gamma = %g, must be positive", f, c->gamma);
    if (!(c->kappa > 0) || !isfinite(c->kappa))
        return em_error_set(err, EM_ERR_ARG, "%s: kappa = %g, must be positive", f, c->kappa);
    if (!(c->t0 > 0) || !isfinite(c->t0))
        return em_error_set(err, EM_ERR_ARG, "%s: t0 = %g, must be positive", f, c->t0);
    if (c->init_buffer < 0 || c->term_buffer < 0 || c->base_window < 0)
        return em_error_set(err, EM_ERR_ARG,
                            "%s: init_buffer = %d, term_buffer = %d, base_window = %d: none may "
                            "be negative", f, c->init_buffer, c->term_buffer, c->base_window);
    if (!(c->stepsize > 0) || !isfinite(c->stepsize))
        return em_error_set(err, EM_ERR_ARG, "%s: stepsize = %g, must be positive and finite", f,
                            c->stepsize);
    if (c->algorithm == EM_MCMC_NUTS &&
        (c->max_treedepth < 1 || c->max_treedepth > MAX_TREEDEPTH_LIMIT))
        return em_error_set(err, EM_ERR_ARG, "%s: max_treedepth = %d, must be in 1..%d", f,
                            c->max_treedepth, MAX_TREEDEPTH_LIMIT);
    if (!(c->max_delta_h > 0))
        return em_error_set(err, EM_ERR_ARG, "%s: max_delta_h = %g, must be positive", f,
                            c->max_delta_h);
    if (c->hmc_num_steps < 0 || c->hmc_num_steps > EM_MCMC_HMC_MAX_STEPS)
        return em_error_set(err, EM_ERR_ARG, "%s: hmc_num_steps = %d, must be in 0..%d (0: from hmc_int_time)",
                            f, c->hmc_num_steps, EM_MCMC_HMC_MAX_STEPS);
    if (c->algorithm == EM_MCMC_HMC) {
        if (c->hmc_num_steps == 0 && (!(c->hmc_int_time > 0) || !isfinite(c->hmc_int_time)))
            return em_error_set(err, EM_ERR_ARG,
                                "%s: hmc_int_time = %g, must be positive when hmc_num_steps is 0",
                                f, c->hmc_int_time);
    }
    if (!(c->init_radius >= 0) || !isfinite(c->init_radius))
        return em_error_set(err, EM_ERR_ARG, "%s: init_radius = %g, must be >= 0 and finite", f,
                            c->init_radius);
    if (c->init && c->init_len == 0)
        return em_error_set(err, EM_ERR_ARG, "%s: init is set but init_len is 0", f);
    return EM_OK;
}

/* ---- result ------------------------------------------------------------------------------ */

static const char *const sampler_names[EM_MCMC_NUM_SAMPLER_COLS] = {
    "lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__"};

void em_mcmc_result_free(em_mcmc_result *r) {
    if (!r) return;
    if (r->chains)
        for (size_t k = 0; k < r->num_chains; k++) {
            free(r->chains[k].draws);
            free(r->chains[k].unconstrained);
            free(r->chains[k].inv_metric);
        }
    free(r->chains);
    if (r->column_names)
        for (size_t j = 0; j < r->num_columns; j++) free(r->column_names[j]);
    free(r->column_names);
    free(r);
}

const char *em_mcmc_column_name(const em_mcmc_result *r, size_t j) {
    return r && j < r->num_columns ? r->column_names[j] : NULL;
}

long em_mcmc_column_index(const em_mcmc_result *r, const char *name) {
    if (!r || !name) return -1;
    for (size_t j = 0; j < r->num_columns; j++)
        if (strcmp(r->column_names[j], name) == 0) return (long)j;
    return -1;
}

const double *em_mcmc_draw(const em_mcmc_result *r, size_t chain, size_t draw) {
    if (!r || chain >= r->num_chains || draw >= r->chains[chain].num_draws) return NULL;
    return r->chains[chain].draws + draw * r->num_columns;
}

size_t em_mcmc_extract(const em_mcmc_result *r, size_t column, double *out) {
    if (!r || column >= r->num_columns || r->num_chains == 0) return 0;
    size_t n = SIZE_MAX;
    for (size_t k = 0; k < r->num_chains; k++) {
        size_t nk = r->chains[k].num_draws - r->chains[k].num_warmup_draws;
        if (nk < n) n = nk;
    }
    if (out)
        for (size_t k = 0; k < r->num_chains; k++) {
            const em_mcmc_chain *c = &r->chains[k];
            for (size_t i = 0; i < n; i++)
                out[k * n + i] = c->draws[(c->num_warmup_draws + i) * r->num_columns + column];
        }
    return n;
}

size_t em_mcmc_num_divergent(const em_mcmc_result *r) {
    size_t n = 0;
    if (r)
        for (size_t k = 0; k < r->num_chains; k++) n += r->chains[k].num_divergent;
    return n;
}

/* Saved rows for iters iterations, in size_t: iters + thin - 1 overflows an int near INT_MAX. */
static size_t rows_for(int iters, int thin) {
    if (iters <= 0) return 0;
    size_t n = (size_t)iters, t = (size_t)thin;
    return n / t + (n % t != 0);
}

static size_t rows_per_chain(const em_mcmc_config *cfg) {
    return (cfg->save_warmup ? rows_for(cfg->num_warmup, cfg->thin) : 0) + rows_for(cfg->num_samples, cfg->thin);
}

/* a*b, or SIZE_MAX when it overflows (then every later product and check fails too). */
static size_t mul_sat(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

/* The bytes the result's draws need, refused (with the figures) when they overflow or exceed
 * the machine's physical memory: such a run could only fail later, or thrash, after hours. */
static em_status check_result_size(const em_mcmc_config *cfg, size_t dim, size_t ncol, em_error *err) {
    size_t rows = rows_per_chain(cfg), chains = (size_t)cfg->num_chains;
    size_t per_row = ncol + dim; /* draws and unconstrained values; both are small sums */
    size_t bytes = mul_sat(mul_sat(mul_sat(chains, rows), per_row), sizeof(double));
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t phys = pages > 0 && page > 0 ? mul_sat((size_t)pages, (size_t)page) : SIZE_MAX;
    if (phys > (size_t)PTRDIFF_MAX) phys = (size_t)PTRDIFF_MAX; /* malloc's own limit */
    if (bytes > phys) {
        char what[160];
        snprintf(what, sizeof what, "%zu chains x %zu saved rows (num_warmup %d%s, num_samples %d, thin %d)",
                 chains, rows, cfg->num_warmup, cfg->save_warmup ? " saved" : " not saved", cfg->num_samples,
                 cfg->thin);
        if (bytes == SIZE_MAX)
            return em_error_set(err, EM_ERR_ARG, "em_mcmc_run: %s x (%zu columns + %zu unconstrained) doubles "
                                "overflow size_t", what, ncol, dim);
        return em_error_set(err, EM_ERR_ARG, "em_mcmc_run: %s x (%zu columns + %zu unconstrained) doubles need "
                            "%zu bytes, more than can be allocated (%zu bytes of physical memory)",
                            what, ncol, dim, bytes, phys);
    }
    return EM_OK;
}

static em_mcmc_result *result_new(const em_logdensity *ld, const em_mcmc_config *cfg) {
    em_mcmc_result *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->config = *cfg;
    r->config.inv_metric = NULL;
    r->config.init = NULL;
    r->config.progress_stream = NULL;
    r->config.cancel = NULL;
    r->num_chains = (size_t)cfg->num_chains;
    r->dim = em_logdensity_dim(ld);
    r->num_outputs = em_logdensity_num_outputs(ld);
    r->num_columns = EM_MCMC_NUM_SAMPLER_COLS + r->num_outputs;
    r->metric_dim = r->dim;
    r->dense_metric = cfg->metric == EM_METRIC_DENSE;
    r->column_names = calloc(r->num_columns, sizeof *r->column_names);
    r->chains = calloc(r->num_chains, sizeof *r->chains);
    if (!r->column_names || !r->chains) goto fail;
    for (size_t j = 0; j < r->num_columns; j++) {
        const char *nm = j < EM_MCMC_NUM_SAMPLER_COLS
                             ? sampler_names[j]
                             : em_logdensity_output_name(ld, j - EM_MCMC_NUM_SAMPLER_COLS);
        r->column_names[j] = strdup(nm ? nm : "?");
        if (!r->column_names[j]) goto fail;
    }
    size_t rows = rows_per_chain(cfg);
    size_t msize = r->dense_metric ? r->dim * r->dim : r->dim;
    for (size_t k = 0; k < r->num_chains; k++) {
        em_mcmc_chain *c = &r->chains[k];
        c->draws = malloc((rows ? rows : 1) * r->num_columns * sizeof(double));
        c->unconstrained = malloc((rows ? rows : 1) * r->dim * sizeof(double));
        c->inv_metric = calloc(msize, sizeof(double));
        if (!c->draws || !c->unconstrained || !c->inv_metric) goto fail;
    }
    return r;
fail:
    em_mcmc_result_free(r);
    return NULL;
}

/* ---- interruption ------------------------------------------------------------------------ */

/* The flag the handler sets and every chain thread polls. A lock-free atomic rather than a
 * volatile sig_atomic_t: the handler may run on any thread, and C11 (7.14.1.1) allows
 * lock-free atomics in handlers while sig_atomic_t is only safe within one thread. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the interruption flag needs a lock-free atomic int");
static atomic_int g_sigint_flag;
static pthread_mutex_t g_sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_sig_users;

/* SIGTERM is what Slurm and other schedulers send before killing a job, SIGHUP what a closed
 * terminal or ssh session sends: a run told to stop by either keeps its draws as after Ctrl-C. */
static const int g_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define NSIGNALS (sizeof g_signals / sizeof *g_signals)
static struct sigaction g_sig_old[NSIGNALS];

/* Only sets a flag: everything else a handler could do is unsafe in a signal context. */
static void on_signal(int signo) {
    (void)signo;
    atomic_store_explicit(&g_sigint_flag, 1, memory_order_relaxed);
}

/* Reference-counted so concurrent runs that both ask for the handler install it once and the
 * last one out restores the caller's. */
static void signals_install(void) {
    pthread_mutex_lock(&g_sig_lock);
    if (g_sig_users++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        atomic_store(&g_sigint_flag, 0);
        for (size_t i = 0; i < NSIGNALS; i++) sigaction(g_signals[i], &sa, &g_sig_old[i]);
    }
    pthread_mutex_unlock(&g_sig_lock);
}

static void signals_restore(void) {
    pthread_mutex_lock(&g_sig_lock);
    if (--g_sig_users == 0)
        for (size_t i = 0; i < NSIGNALS; i++) sigaction(g_signals[i], &g_sig_old[i], NULL);
    pthread_mutex_unlock(&g_sig_lock);
}

/* ---- progress ---------------------------------------------------------------------------- */

typedef struct progress {
    pthread_mutex_t lock;
    FILE *f;
    int tty;
    size_t num_chains;
    size_t total; /* iterations per chain */
    double *last; /* per chain: time of its last line */
} progress;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int progress_open(progress *p, const em_mcmc_config *cfg) {
    memset(p, 0, sizeof *p);
    p->f = cfg->progress_stream ? cfg->progress_stream : stderr;
    p->tty = isatty(fileno(p->f));
    p->num_chains = (size_t)cfg->num_chains;
    p->total = (size_t)cfg->num_warmup + (size_t)cfg->num_samples;
    p->last = calloc(p->num_chains, sizeof *p->last);
    if (!p->last) return -1;
    pthread_mutex_init(&p->lock, NULL);
    if (p->tty) {
        /* one line per chain, rewritten in place with cursor movement */
        for (size_t k = 0; k < p->num_chains; k++)
            fprintf(p->f, "chain %zu: waiting\n", k + 1);
        fflush(p->f);
    }
    return 0;
}

static void progress_close(progress *p) {
    if (!p->last) return;
    pthread_mutex_destroy(&p->lock);
    free(p->last);
    p->last = NULL;
}

static void format_seconds(char *buf, size_t cap, double s) {
    if (s < 60)
        snprintf(buf, cap, "%.1f s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void progress_update(progress *p, size_t k, size_t done, int warmup, double eps,
                            double mean_accept, size_t ndiv, double elapsed, int final) {
    double t = now_seconds();
    if (p->tty) {
        if (!final && done != 1 && done != p->total && t - p->last[k] < 0.2) return;
    } else {
        size_t step = (p->total + 9) / 10;
        if (step == 0) step = 1;
        if (!final && done % step != 0 && done != p->total) return;
        if (final && done == p->total) return; /* already printed at the last iteration */
    }
    p->last[k] = t;
    char el[32], rem[32], line[256];
    format_seconds(el, sizeof el, elapsed);
    double remaining = done > 0 ? elapsed / (double)done * (double)(p->total - done) : 0;
    format_seconds(rem, sizeof rem, remaining);
    snprintf(line, sizeof line,
             "chain %zu: iteration %zu/%zu (%3.0f%%) %s | stepsize %.3g | accept %.2f | "
             "divergent %zu | %s elapsed, ~%s left%s",
             k + 1, done, p->total, p->total ? 100.0 * (double)done / (double)p->total : 100.0,
             warmup ? "warmup  " : "sampling", eps, mean_accept, ndiv, el, rem,
             final && done < p->total ? " (stopped)" : "");
    pthread_mutex_lock(&p->lock);
    if (p->tty) {
        size_t up = p->num_chains - k;
        fprintf(p->f, "\033[%zuA\r\033[2K%s\033[%zuB\r", up, line, up);
    } else {
        fprintf(p->f, "%s\n", line);
    }
    fflush(p->f);
    pthread_mutex_unlock(&p->lock);
}

/* ---- one chain --------------------------------------------------------------------------- */

typedef struct run_ctx run_ctx;

typedef struct chain_job {
    run_ctx *run;
    size_t index;
    em_logdensity *ld; /* this chain's clone */
    em_status status;  /* EM_OK, EM_ERR_INTERRUPTED, or the chain's error */
    int aborted;       /* stopped because another chain failed */
    em_error err;
} chain_job;

struct run_ctx {
    const em_mcmc_config *cfg;
    em_mcmc_result *res;
    chain_job *jobs;
    size_t next_job;
    pthread_mutex_t lock;
    atomic_int abort; /* a chain failed: the others stop */
    int use_sigint;
    progress *prog;
};

static int cancel_requested(const run_ctx *run) {
    if (run->use_sigint && atomic_load_explicit(&g_sigint_flag, memory_order_relaxed)) return 1;
    volatile int *c = run->cfg->cancel;
    if (c) {
#if defined(__GNUC__)
        if (__atomic_load_n(c, __ATOMIC_RELAXED)) return 1;
#else
        if (*c) return 1;
#endif
    }
    return 0;
}

static int hmc_steps(const em_mcmc_config *cfg, double eps) {
    if (cfg->hmc_num_steps > 0) return cfg->hmc_num_steps;
    double l = floor(cfg->hmc_int_time / eps);
    if (!(l >= 1)) return 1;
    return l > EM_MCMC_HMC_MAX_STEPS ? EM_MCMC_HMC_MAX_STEPS : (int)l;
}

static em_status chain_fail(chain_job *job, em_status s) {
    job->status = s;
    atomic_store(&job->run->abort, 1);
    return s;
}

static void run_chain(chain_job *job) {
    run_ctx *run = job->run;
    const em_mcmc_config *cfg = run->cfg;
    em_mcmc_result *res = run->res;
    em_mcmc_chain *ch = &res->chains[job->index];
    size_t k = job->index, d = res->dim, ncol = res->num_columns;
    em_error *err = &job->err;
    em_rng *rng = em_rng_create(cfg->seed, (uint64_t)cfg->first_chain + k);
    em_hmc h;
    int have_h = 0;
    em_metric_est est;
    int have_est = 0;
    double *zbuf = calloc(3 * d, sizeof(double));
    double *metric_buf = NULL;
    em_hmc_point z = {0};

    if (!rng || !zbuf) {
        em_error_set(err, EM_ERR_NOMEM, "em_mcmc_run: chain %zu: out of memory", k + 1);
        chain_fail(job, EM_ERR_NOMEM);
        goto done;
    }
    z.q = zbuf;
    z.p = zbuf + d;
    z.g = zbuf + 2 * d;
    {
        em_error e = {0};
        em_status s = em_hmc_init(&h, job->ld, rng, cfg->metric, cfg->inv_metric,
                                  cfg->algorithm == EM_MCMC_NUTS ? cfg->max_treedepth : 1,
                                  cfg->max_delta_h, &e);
        if (s != EM_OK) {
            em_error_set(err, s, "em_mcmc_run: chain %zu: %s%s", k + 1,
                         s == EM_ERR_ARG ? "cfg.inv_metric: " : "", e.msg);
            chain_fail(job, s);
            goto done;
        }
        have_h = 1;
    }
    h.eps = cfg->stepsize;

    /* ---- initial point ---- */
    if (cfg->init) {
        const double *src = cfg->init_len == d ? cfg->init : cfg->init + k * d;
        memcpy(z.q, src, d * sizeof(double));
        if (!em_hmc_eval(&h, &z)) {
            em_error_set(err, EM_ERR_NUMERIC,
                         "em_mcmc_run: chain %zu: the given initial values have no finite log "
                         "density and gradient: %s", k + 1, h.err.msg);
            chain_fail(job, EM_ERR_NUMERIC);
            goto done;
        }
    } else {
        int ok = 0, tries = cfg->init_radius > 0 ? INIT_TRIES : 1;
        for (int t = 0; t < tries && !ok; t++) {
            for (size_t i = 0; i < d; i++)
                z.q[i] = cfg->init_radius * (2.0 * em_rng_uniform(rng) - 1.0);
            ok = em_hmc_eval(&h, &z);
        }
        if (!ok) {
            em_error_set(err, EM_ERR_NUMERIC,
                         "em_mcmc_run: chain %zu: no finite log density and gradient after %d "
                         "initialisation attempt%s (uniform(-%g, %g) on the unconstrained "
                         "space); last error: %s", k + 1, tries, tries == 1 ? "" : "s",
                         cfg->init_radius, cfg->init_radius,
                         h.err.msg[0] ? h.err.msg : "(none given)");
            chain_fail(job, EM_ERR_NUMERIC);
            goto done;
        }
    }

    /* ---- adaptation state ---- */
    size_t nwarm = (size_t)cfg->num_warmup, nsamp = (size_t)cfg->num_samples;
    int adapting = cfg->adapt && nwarm > 0;
    int adapt_metric = adapting && cfg->metric != EM_METRIC_UNIT;
    em_dual_avg da;
    em_adapt_windows win;
    em_dual_avg_init(&da, cfg->target_accept, cfg->gamma, cfg->kappa, cfg->t0);
    em_adapt_windows_init(&win, nwarm, (size_t)cfg->init_buffer, (size_t)cfg->term_buffer,
                          (size_t)cfg->base_window);
    if (adapt_metric && win.enabled) {
        if (em_metric_est_init(&est, d, cfg->metric == EM_METRIC_DENSE) != 0) {
            em_error_set(err, EM_ERR_NOMEM, "em_mcmc_run: chain %zu: out of memory", k + 1);
            chain_fail(job, EM_ERR_NOMEM);
            goto done;
        }
        have_est = 1;
        metric_buf = malloc((cfg->metric == EM_METRIC_DENSE ? d * d : d) * sizeof(double));
        if (!metric_buf) {
            em_error_set(err, EM_ERR_NOMEM, "em_mcmc_run: chain %zu: out of memory", k + 1);
            chain_fail(job, EM_ERR_NOMEM);
            goto done;
        }
    }
    if (adapting) {
        em_error e = {0};
        if (em_hmc_find_stepsize(&h, &z, &e) != EM_OK) {
            em_error_set(err, EM_ERR_NUMERIC, "em_mcmc_run: chain %zu: %s", k + 1, e.msg);
            chain_fail(job, EM_ERR_NUMERIC);
            goto done;
        }
        /* Hoffman & Gelman's mu = log(10·eps0), eps0 from the heuristic. (Stan's services use
         * the user's initial step size here for the first window and the heuristic's after
         * each metric update.) */
        em_dual_avg_restart(&da, log(10 * h.eps));
    }

    /* ---- iterations ---- */
    size_t total = nwarm + nsamp, row = 0;
    double t_start = now_seconds(), t_phase = t_start;
    double sum_accept = 0, sum_accept_samp = 0;
    size_t phase_iters = 0, phase_div = 0;
    em_hmc_stats st;
    for (size_t it = 0; it < total; it++) {
        if (cancel_requested(run)) {
            job->status = EM_ERR_INTERRUPTED;
            break;
        }
        if (atomic_load(&run->abort)) {
            job->aborted = 1;
            break;
        }
        int warm = it < nwarm;
        if (cfg->algorithm == EM_MCMC_NUTS)
            em_nuts_transition(&h, &z, &st);
        else
            em_static_hmc_transition(&h, &z, hmc_steps(cfg, h.eps), &st);

        if (warm && adapting) {
            h.eps = em_dual_avg_learn(&da, st.accept_stat);
            if (have_est) {
                if (em_adapt_windows_in_slow(&win)) em_metric_est_add(&est, z.q);
                if (em_adapt_windows_at_end(&win)) {
                    if (em_metric_est_finish(&est, metric_buf) == 0) {
                        em_error e = {0};
                        /* a window estimate that is not positive definite (only possible
                         * for a dense metric in floating point) keeps the previous metric */
                        (void)em_hmc_set_metric(&h, metric_buf, &e);
                    }
                    em_metric_est_restart(&est);
                    em_error e = {0};
                    if (em_hmc_find_stepsize(&h, &z, &e) != EM_OK) {
                        em_error_set(err, EM_ERR_NUMERIC,
                                     "em_mcmc_run: chain %zu: after the metric update at warmup "
                                     "iteration %zu: %s", k + 1, it + 1, e.msg);
                        chain_fail(job, EM_ERR_NUMERIC);
                        goto done;
                    }
                    em_dual_avg_restart(&da, log(10 * h.eps));
                }
                em_adapt_windows_advance(&win);
            }
            if (it + 1 == nwarm) h.eps = em_dual_avg_final(&da);
        }

        /* bookkeeping */
        if (warm) {
            ch->warmup_done++;
            if (st.divergent) ch->num_divergent_warmup++;
        } else {
            ch->samples_done++;
            sum_accept_samp += st.accept_stat;
            if (st.divergent) ch->num_divergent++;
            if (cfg->algorithm == EM_MCMC_NUTS && st.treedepth >= cfg->max_treedepth)
                ch->num_max_treedepth++;
        }
        sum_accept += st.accept_stat;
        phase_iters++;
        phase_div += (size_t)st.divergent;

        size_t phase_it = warm ? it : it - nwarm;
        int keep = (size_t)phase_it % (size_t)cfg->thin == 0 && (!warm || cfg->save_warmup);
        if (keep) {
            double *r = ch->draws + row * ncol;
            r[EM_MCMC_COL_LP] = z.lp;
            r[EM_MCMC_COL_ACCEPT] = st.accept_stat;
            r[EM_MCMC_COL_STEPSIZE] = st.stepsize;
            r[EM_MCMC_COL_TREEDEPTH] = st.treedepth;
            r[EM_MCMC_COL_N_LEAPFROG] = st.n_leapfrog;
            r[EM_MCMC_COL_DIVERGENT] = st.divergent;
            r[EM_MCMC_COL_ENERGY] = st.energy;
            em_error e = {0};
            if (em_logdensity_constrain(job->ld, z.q, r + EM_MCMC_NUM_SAMPLER_COLS, &e) != EM_OK) {
                em_error_set(err, e.status ? e.status : EM_ERR_NUMERIC,
                             "em_mcmc_run: chain %zu, iteration %zu: constrained outputs "
                             "failed: %s", k + 1, it + 1, e.msg);
                chain_fail(job, e.status ? e.status : EM_ERR_NUMERIC);
                goto done;
            }
            memcpy(ch->unconstrained + row * d, z.q, d * sizeof(double));
            row++;
            ch->num_draws = row;
            if (warm) ch->num_warmup_draws = row;
        }

        double t = now_seconds();
        if (run->prog)
            progress_update(run->prog, k, it + 1, warm, h.eps, sum_accept / (double)phase_iters,
                            phase_div, t - t_start, 0);
        if (it + 1 == nwarm) {
            /* the progress line and the timings restart with the sampling phase */
            ch->warmup_seconds = t - t_phase;
            t_phase = t;
            sum_accept = 0;
            phase_iters = 0;
            phase_div = 0;
        }
    }
    {
        double t = now_seconds();
        if (ch->warmup_done < nwarm)
            ch->warmup_seconds = t - t_phase; /* stopped during warmup */
        else if (ch->samples_done > 0)
            ch->sampling_seconds = t - t_phase;
        ch->mean_accept_stat = ch->samples_done ? sum_accept_samp / (double)ch->samples_done : 0;
        if (run->prog && job->status == EM_ERR_INTERRUPTED)
            progress_update(run->prog, k, ch->warmup_done + ch->samples_done,
                            ch->warmup_done < nwarm, h.eps,
                            phase_iters ? sum_accept / (double)phase_iters : 0, phase_div,
                            t - t_start, 1);
    }
    ch->stepsize = h.eps;
    memcpy(ch->inv_metric, h.inv_metric,
           (cfg->metric == EM_METRIC_DENSE ? d * d : d) * sizeof(double));

done:
    if (have_est) em_metric_est_free(&est);
    if (have_h) em_hmc_free(&h);
    free(metric_buf);
    free(zbuf);
    em_rng_destroy(rng);
}

static void *worker(void *arg) {
    run_ctx *run = arg;
    for (;;) {
        pthread_mutex_lock(&run->lock);
        size_t k = run->next_job++;
        pthread_mutex_unlock(&run->lock);
        if (k >= run->res->num_chains) break;
        run_chain(&run->jobs[k]);
    }
    return NULL;
}

/* ---- the run ----------------------------------------------------------------------------- */

em_status em_mcmc_run(const em_logdensity *ld, const em_mcmc_config *cfg, em_mcmc_result **out,
                      em_error *err) {
    if (out) *out = NULL;
    if (!ld || !out)
        return em_error_set(err, EM_ERR_ARG, "em_mcmc_run: %s is NULL", !ld ? "ld" : "out");
    em_status s = em_mcmc_config_validate(cfg, err);
    if (s != EM_OK) return s;
    size_t d = em_logdensity_dim(ld);
    size_t nch = (size_t)cfg->num_chains;
    if (d == 0) return em_error_set(err, EM_ERR_ARG, "em_mcmc_run: the density has dimension 0");
    s = check_result_size(cfg, d, EM_MCMC_NUM_SAMPLER_COLS + em_logdensity_num_outputs(ld), err);
    if (s != EM_OK) return s;
    if (cfg->init && cfg->init_len != d && cfg->init_len != nch * d)
        return em_error_set(err, EM_ERR_ARG,
                            "em_mcmc_run: init_len = %zu, must be dim = %zu (shared by every "
                            "chain) or num_chains*dim = %zu", cfg->init_len, d, nch * d);
    if (cfg->init)
        for (size_t i = 0; i < cfg->init_len; i++)
            if (!isfinite(cfg->init[i]))
                return em_error_set(err, EM_ERR_ARG, "em_mcmc_run: init[%zu] = %g is not finite",
                                    i, cfg->init[i]);
    em_init();
    double t_wall = now_seconds();

    em_mcmc_result *res = result_new(ld, cfg);
    chain_job *jobs = calloc(nch, sizeof *jobs);
    if (!res || !jobs) {
        em_mcmc_result_free(res);
        free(jobs);
        return em_error_set(err, EM_ERR_NOMEM, "em_mcmc_run: out of memory for the result");
    }
    run_ctx run;
    memset(&run, 0, sizeof run);
    run.cfg = cfg;
    run.res = res;
    run.jobs = jobs;
    atomic_init(&run.abort, 0);
    pthread_mutex_init(&run.lock, NULL);

    /* clones are made here, on one thread: cloning reads the original */
    for (size_t k = 0; k < nch; k++) {
        jobs[k].run = &run;
        jobs[k].index = k;
        jobs[k].ld = em_logdensity_clone(ld);
        if (!jobs[k].ld) {
            for (size_t j = 0; j < k; j++) em_logdensity_destroy(jobs[j].ld);
            free(jobs);
            em_mcmc_result_free(res);
            pthread_mutex_destroy(&run.lock);
            return em_error_set(err, EM_ERR_NOMEM, "em_mcmc_run: cannot clone the density for "
                                                   "chain %zu", k + 1);
        }
    }

    size_t nthreads = (size_t)cfg->num_threads;
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cpus > 0 ? (size_t)cpus : 1;
    }
    if (nthreads > nch) nthreads = nch;

    progress prog;
    if (cfg->progress && progress_open(&prog, cfg) == 0) run.prog = &prog;
    if (cfg->handle_sigint) {
        signals_install();
        run.use_sigint = 1;
    }

    size_t started = 0;
    pthread_t *threads = NULL;
    if (nthreads > 1) {
        threads = calloc(nthreads - 1, sizeof *threads);
        if (threads)
            for (; started < nthreads - 1; started++)
                if (pthread_create(&threads[started], NULL, worker, &run) != 0) break;
    }
    worker(&run); /* the calling thread works too; with one thread it does everything */
    for (size_t t = 0; t < started; t++) pthread_join(threads[t], NULL);
    free(threads);

    if (run.use_sigint) signals_restore();
    if (run.prog) progress_close(&prog);
    for (size_t k = 0; k < nch; k++) em_logdensity_destroy(jobs[k].ld);
    pthread_mutex_destroy(&run.lock);

    /* the first failing chain (by index, so the report does not depend on timing) */
    em_status result = EM_OK;
    for (size_t k = 0; k < nch; k++)
        if (jobs[k].status != EM_OK && jobs[k].status != EM_ERR_INTERRUPTED && !jobs[k].aborted) {
            result = em_error_set(err, jobs[k].status, "%s", jobs[k].err.msg);
            break;
        }
    if (result == EM_OK)
        for (size_t k = 0; k < nch; k++)
            if (jobs[k].status != EM_OK && jobs[k].status != EM_ERR_INTERRUPTED) {
                result = em_error_set(err, jobs[k].status, "%s", jobs[k].err.msg);
                break;
            }
    if (result != EM_OK) {
        free(jobs);
        em_mcmc_result_free(res);
        return result;
    }
    int interrupted = 0;
    for (size_t k = 0; k < nch; k++) interrupted |= jobs[k].status == EM_ERR_INTERRUPTED;
    free(jobs);
    res->wall_seconds = now_seconds() - t_wall;
    *out = res;
    if (interrupted) {
        res->status = EM_ERR_INTERRUPTED;
        size_t mn = SIZE_MAX, mx = 0;
        for (size_t k = 0; k < nch; k++) {
            size_t n = res->chains[k].samples_done;
            if (n < mn) mn = n;
            if (n > mx) mx = n;
        }
        return em_error_set(err, EM_ERR_INTERRUPTED,
                            "em_mcmc_run: interrupted; every completed draw is kept (%zu to %zu "
                            "sampling iterations per chain of %d)", mn, mx, cfg->num_samples);
    }
    return EM_OK;
}
