/* internal/posterior_impl.h — the em_posterior's layout, shared by src/analysis/posterior.c
 * (construction, summaries, prediction) and src/io/posterior_csv.c (CmdStan files). */
#ifndef EMBER_INTERNAL_POSTERIOR_IMPL_H
#define EMBER_INTERNAL_POSTERIOR_IMPL_H

#include "ember/posterior.h"

/* One chain: rows of ncols values, nwarmup warmup rows first, then ndraws sampling rows. */
typedef struct em_posterior_chain {
    size_t id;            /* 1-based chain number of the run (CmdStan's id) */
    size_t nwarmup, ndraws;
    double *rows;
    double *theta;        /* unconstrained draws (rows of dim), or NULL */
    double stepsize;      /* MCMC: the adapted step size */
    double *inv_metric;   /* MCMC: metric_dim (or metric_dim²) values, or NULL */
    double warmup_seconds, sampling_seconds;
    size_t warmup_done;   /* warmup iterations run (for an interrupted chain) */
} em_posterior_chain;

struct em_posterior {
    em_posterior_method method;
    size_t nchains, ncols, nmethod_cols, dim;
    char **names;
    em_posterior_chain *chains;
    size_t ndraws;           /* sampling draws per chain used everywhere (the fewest any kept) */
    em_mcmc_result *mcmc;    /* owned; the chains' blocks point into it */
    em_mcmc_config cfg;      /* MCMC configuration (has_cfg) */
    int has_cfg;
    size_t metric_dim;
    int dense_metric;
    int interrupted;
    uint64_t seed;
    double wall_seconds;
    /* variational and Laplace draws */
    em_autoguide_kind guide_kind;
    double *mean_row;        /* the guide's mean, constrained (CmdStan's first variational row) */
    size_t svi_steps;
    int svi_converged;
    double learning_rate;
    int has_svi_info;        /* made by em_fit_svi */
    em_svi_fit_info svi_info;
    double psis_k;           /* k̂ of log_p__ - log_g__ (NaN: none) */
    int resampled;           /* draws resampled by their importance weights */
    /* the model, when attached: each latent value's column */
    em_model_fn model;
    const void *data;
    em_logdensity *layout;
    size_t nlatent, nlatent_vals;
    const char **latent_names;
    size_t *latent_lens;
    size_t *latent_cols;
    /* labels for files */
    char *model_name, *data_file;
};

/* Draws in chains from a sampler (with its columns), as opposed to independent draws. */
static inline int has_chains(const em_posterior *p) {
    return p->method == EM_POSTERIOR_NUTS || p->method == EM_POSTERIOR_HMC;
}

/* A posterior of nchains empty chains over the given columns (names copied); NULL when out of
 * memory (err says so). */
em_posterior *em_posterior_alloc(size_t nchains, size_t ncols, size_t nmethod_cols, const char *const *names,
                                 em_error *err);
/* Set ndraws from the chains' blocks. */
void em_posterior_finish(em_posterior *p);
/* Up to three of names nearest to name, quoted and comma-separated, appended to out. */
em_status em_posterior_nearest_names(const char *const *names, size_t n, const char *name, em_buf *out);

/* em_posterior_from_guide with log_p__ (and so the PSIS k̂) from the density ld rather than
 * the guide's own: the MPI layer's sharded density, whose evaluations are collective. */
em_status em_posterior_from_guide_density(em_autoguide *g, const em_param_store *params, size_t ndraws,
                                          uint64_t seed, em_logdensity *ld, em_model_fn model, const void *data,
                                          em_posterior **out, em_error *err);

#endif
