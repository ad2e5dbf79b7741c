/* mcmc.h — Hamiltonian Monte Carlo: the No-U-Turn sampler and static HMC, with Stan's warmup
 * adaptation, several chains on POSIX threads.
 *
 * em_mcmc_run samples from any em_logdensity (a model through em_logdensity_from_model, or a
 * hand-written density) on its unconstrained space. The sampler is Stan's: multinomial NUTS
 * with the generalised no-U-turn criterion (Hoffman & Gelman 2014; Betancourt 2017), dual
 * averaging of the step size towards a target acceptance statistic, and a diagonal or dense
 * Euclidean metric estimated in Stan's expanding warmup windows. Each chain has its own clone
 * of the density and its own RNG stream from (seed, chain index), so the draws are the same
 * bit for bit whatever the number of threads.
 *
 * The result keeps, per chain, one row per saved draw in CmdStan's column order — the seven
 * sampler columns lp__, accept_stat__, stepsize__, treedepth__, n_leapfrog__, divergent__,
 * energy__, then the constrained outputs of the density — so a CmdStan CSV writer can dump it
 * as it is; and the unconstrained draws, the adapted step size and inverse metric, and timings.
 *
 * An interrupted run (SIGINT, SIGTERM or SIGHUP when cfg.handle_sigint is set, or *cfg.cancel
 * set by the caller) stops every chain after its current iteration and returns
 * EM_ERR_INTERRUPTED together with a result holding every completed draw.
 */
#ifndef EMBER_MCMC_H
#define EMBER_MCMC_H

#include <stdint.h>
#include <stdio.h>

#include "ember/core.h"
#include "ember/logdensity.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_mcmc_algorithm {
    EM_MCMC_NUTS = 0, /* the No-U-Turn sampler (default) */
    EM_MCMC_HMC       /* static HMC: a fixed number of leapfrog steps, Metropolis correction */
} em_mcmc_algorithm;

typedef enum em_mcmc_metric {
    EM_METRIC_DIAG = 0, /* diagonal inverse metric, adapted to the posterior variances (default) */
    EM_METRIC_DENSE,    /* dense inverse metric, adapted to the posterior covariance */
    EM_METRIC_UNIT      /* identity, never adapted */
} em_mcmc_metric;

/* The sampler columns, first in every draw row. */
enum {
    EM_MCMC_COL_LP = 0,     /* log density (with the Jacobian of the transforms), up to a constant */
    EM_MCMC_COL_ACCEPT,     /* NUTS: mean of min(1, exp(H0 - H)) over the trajectory; HMC: min(1, ratio) */
    EM_MCMC_COL_STEPSIZE,   /* the step size used for this draw */
    EM_MCMC_COL_TREEDEPTH,  /* NUTS tree depth (0 for static HMC) */
    EM_MCMC_COL_N_LEAPFROG, /* leapfrog steps taken (gradient evaluations) */
    EM_MCMC_COL_DIVERGENT,  /* 1 when the trajectory diverged (H - H0 > max_delta_h or no density) */
    EM_MCMC_COL_ENERGY,     /* the Hamiltonian at the draw (for E-BFMI) */
    EM_MCMC_NUM_SAMPLER_COLS
};

/* Every field has a range, given after its default, that em_mcmc_config_validate (and so
 * em_mcmc_run) checks; flags are zero or non-zero. Besides the fields one by one, a run must
 * fit in memory: chains x saved rows x (columns + dim) doubles, counted in size_t with
 * overflow checks, may not exceed the machine's physical memory (EM_ERR_ARG with the figures). */
typedef struct em_mcmc_config {
    em_mcmc_algorithm algorithm; /* EM_MCMC_NUTS; EM_MCMC_NUTS or EM_MCMC_HMC */
    int num_chains;              /* 4; 1..EM_MCMC_MAX_CHAINS */
    int num_threads;             /* 0: min(num_chains, online CPUs); 0..EM_MCMC_MAX_CHAINS */
    int num_warmup;              /* 1000; 0..INT_MAX */
    int num_samples;             /* 1000; 0..INT_MAX, and num_warmup + num_samples >= 1 */
    int thin;                    /* 1; 1..INT_MAX: keep every thin-th iteration (warmup too, when saved) */
    int save_warmup;             /* 0: keep warmup draws in the result too */
    uint64_t seed;               /* chain k uses em_rng_create(seed, first_chain + k); any value */
    /* The run's chains are chains first_chain, first_chain + 1, ... of a larger run split
     * between processes (mpi.h's rank groups): each gets the stream, and so the draws, it has
     * there. 0; 0..EM_MCMC_MAX_CHAINS - num_chains */
    int first_chain;

    /* adaptation (Stan's names and defaults) */
    int adapt;            /* 1: adapt step size and metric during warmup */
    double target_accept; /* 0.8: delta, the target mean accept_stat__; 0 < delta < 1 */
    double gamma;         /* 0.05; finite, > 0 */
    double kappa;         /* 0.75; finite, > 0 */
    double t0;            /* 10; finite, > 0 */
    int init_buffer;      /* 75: fast initial buffer; 0..INT_MAX */
    int term_buffer;      /* 50: fast terminal buffer; 0..INT_MAX */
    int base_window;      /* 25: first slow window, doubling afterwards; 0..INT_MAX */
    double stepsize;      /* 1: initial step size (the step size itself when adapt is 0); finite, > 0 */

    em_mcmc_metric metric; /* EM_METRIC_DIAG; EM_METRIC_DIAG, EM_METRIC_DENSE or EM_METRIC_UNIT */
    /* Optional initial inverse metric (dim values for diag, dim*dim row-major for dense), the
     * one used throughout when adapt is 0 or warmup is too short to estimate one. NULL:
     * identity. */
    const double *inv_metric;

    int max_treedepth;  /* 10; 1..30 (NUTS; not checked for static HMC) */
    double max_delta_h; /* 1000: a transition is divergent when H - H0 exceeds it; > 0 (+inf: never) */

    /* static HMC: hmc_num_steps leapfrog steps when > 0, otherwise
     * max(1, floor(hmc_int_time/stepsize)), recomputed as the step size adapts (Stan's
     * int_time, default 2π). Either way at most EM_MCMC_HMC_MAX_STEPS steps per transition. */
    int hmc_num_steps;   /* 0; 0..EM_MCMC_HMC_MAX_STEPS */
    double hmc_int_time; /* 2π; finite, > 0 (checked when the algorithm is HMC and hmc_num_steps is 0) */

    /* Initial values. init == NULL: each coordinate uniform(-init_radius, init_radius) on the
     * unconstrained space (init_radius 0: all zeros), retried up to 100 times until the log
     * density and its gradient are finite. Otherwise init holds UNCONSTRAINED values, either
     * dim of them (every chain starts there) or num_chains*dim (chain-major); init_len says
     * which (em_mcmc_run checks it against the density; every value must be finite). User
     * values are not retried: a non-finite density there is an error. */
    double init_radius; /* 2; finite, >= 0 */
    const double *init;
    size_t init_len; /* dim or num_chains*dim when init is set; ignored otherwise */

    /* Progress lines on progress_stream (NULL: stderr): per chain, the iteration, phase, step
     * size, mean accept_stat__, divergences, elapsed and estimated remaining time. Rewritten in
     * place when the stream is a terminal, otherwise one line per chain every 10%. */
    int progress; /* 0 */
    FILE *progress_stream;

    /* Interruption. handle_sigint: for the duration of the run, install a handler for SIGINT,
     * SIGTERM (what Slurm and most job schedulers send) and SIGHUP (the terminal or ssh session
     * went away); the previous handlers are restored afterwards, and the handler only sets a
     * flag. (The field keeps its historical name; it covers all three signals.) cancel: when
     * not NULL, the run stops once the caller sets *cancel non-zero (from another thread, write
     * it with an atomic store such as __atomic_store_n; the chains read it atomically). Chains
     * poll both between iterations, so a run stops after the trajectory in progress. Either
     * way every completed draw is kept and em_mcmc_run returns EM_ERR_INTERRUPTED. */
    int handle_sigint; /* 0 */
    volatile int *cancel;
} em_mcmc_config;

/* One chain's output. Rows of draws are saved warmup draws first (when save_warmup), then
 * sampling draws; num_draws rows are filled (fewer than planned after an interruption). */
typedef struct em_mcmc_chain {
    size_t num_draws;         /* rows filled in draws and unconstrained */
    size_t num_warmup_draws;  /* of which the first num_warmup_draws are warmup rows */
    double *draws;            /* [num_draws][num_columns] row-major */
    double *unconstrained;    /* [num_draws][dim] row-major: θ of each saved draw */
    size_t warmup_done;       /* warmup iterations completed */
    size_t samples_done;      /* sampling iterations completed */
    double stepsize;          /* adapted step size (exp(x_bar) after warmup) */
    double *inv_metric;       /* dim (unit, diag) or dim*dim row-major (dense) */
    double warmup_seconds, sampling_seconds;
    size_t num_divergent;        /* divergent sampling iterations (all, not only saved) */
    size_t num_divergent_warmup; /* divergent warmup iterations */
    size_t num_max_treedepth;    /* sampling iterations that hit max_treedepth */
    double mean_accept_stat;     /* over sampling iterations */
} em_mcmc_chain;

typedef struct em_mcmc_result {
    em_status status;      /* EM_OK, or EM_ERR_INTERRUPTED for a partial result */
    em_mcmc_config config; /* the configuration used (pointers cleared) */
    size_t num_chains;
    size_t dim;         /* unconstrained dimension */
    size_t num_outputs; /* constrained outputs per draw */
    size_t num_columns; /* EM_MCMC_NUM_SAMPLER_COLS + num_outputs */
    char **column_names;
    size_t metric_dim;  /* dim; the inverse metric has dim*dim values when dense_metric */
    int dense_metric;
    em_mcmc_chain *chains;
    double wall_seconds; /* the whole run, from the call to its return (chains in parallel) */
} em_mcmc_result;

/* The limits quoted in em_mcmc_config's ranges. */
#define EM_MCMC_MAX_CHAINS 65536
#define EM_MCMC_HMC_MAX_STEPS 1000000

/* Stan's defaults (see the field comments); seed 20260101. */
em_mcmc_config em_mcmc_config_default(void);

/* EM_ERR_ARG with a message naming the field and its value when cfg is outside the ranges
 * documented on em_mcmc_config. (What depends on the density — init_len, the memory the
 * draws need — em_mcmc_run checks.) */
em_status em_mcmc_config_validate(const em_mcmc_config *cfg, em_error *err);

/* Run the sampler. On EM_OK or EM_ERR_INTERRUPTED, *out is a new result (free it with
 * em_mcmc_result_free). On any other error *out is NULL and err says which chain failed and
 * why: EM_ERR_ARG for a bad configuration or initial values, EM_ERR_NUMERIC when a chain
 * finds no finite starting point or step size (naming the chain and the density's last
 * message), EM_ERR_NOMEM. ld itself is only cloned, never evaluated from several threads. */
em_status em_mcmc_run(const em_logdensity *ld, const em_mcmc_config *cfg, em_mcmc_result **out,
                      em_error *err);

void em_mcmc_result_free(em_mcmc_result *r);

/* Column j's name ("lp__", ..., then the density's output names), NULL out of range. */
const char *em_mcmc_column_name(const em_mcmc_result *r, size_t j);
/* Index of the column called name, or -1. */
long em_mcmc_column_index(const em_mcmc_result *r, const char *name);
/* Row `draw` (counting saved warmup rows first) of chain `chain`, or NULL out of range. */
const double *em_mcmc_draw(const em_mcmc_result *r, size_t chain, size_t draw);

/* Copy column `column` of the sampling (not warmup) draws of every chain into
 * out[chain * n + i], i < n, where n — returned — is the smallest number of sampling draws
 * any chain kept (chains cut short by an interruption make the others be truncated to match,
 * so the layout stays rectangular for R-hat and ESS). out needs num_chains * n values; pass
 * out = NULL to learn n first. */
size_t em_mcmc_extract(const em_mcmc_result *r, size_t column, double *out);

/* Total divergent sampling iterations over all chains. */
size_t em_mcmc_num_divergent(const em_mcmc_result *r);

#ifdef __cplusplus
}
#endif
#endif
