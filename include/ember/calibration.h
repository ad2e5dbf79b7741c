/* calibration.h — simulation-based calibration (SBC): does an inference engine give honest
 * uncertainty for this model?
 *
 * SBC (Talts, Betancourt, Simpson, Vehtari & Gelman 2018, "Validating Bayesian inference
 * algorithms with simulation-based calibration", arXiv:1804.06788) rests on one identity: if
 * θ̃ ~ p(θ), ỹ ~ p(y | θ̃) and θ_1..θ_L ~ p(θ | ỹ), then the rank of θ̃ among the θ_l is uniform
 * on {0, ..., L}. Any engine that does not sample the posterior (a biased sampler, an
 * over-confident variational fit) bends the rank distribution. em_sbc_run repeats, for R
 * replications and any Ember model:
 *   1. draw the latents and the observations from the prior predictive (the model run with
 *      its observe sites sampled: em_predictive_prior);
 *   2. fit the model conditioned on those simulated observations — every observe site takes
 *      its simulated values — with NUTS, an SVI autoguide, or a user-supplied engine;
 *   3. keep L roughly independent posterior draws (NUTS: thinned by ceil(n / ESS), the ESS
 *      being the smallest bulk or tail ESS over the parameters, Talts et al. §5.1) and record,
 *      per scalar latent element on the constrained scale, the rank of the true value, and
 *      whether the central 50/80/90/95% posterior intervals hold it.
 * Replications run on threads; replication i draws everything from streams derived from
 * (seed, i) with em_seed_mix, so the result is the same whatever the number of threads.
 *
 * The report per parameter: the rank histogram with a Pearson chi-square test of uniformity
 * (p-value from gsl_cdf_chisq_Q), the ECDF of the normalised ranks against its simultaneous
 * confidence band (Säilynoja, Bürkner & Vehtari 2022, "Graphical test for discrete
 * uniformity and its applications in goodness-of-fit evaluation and multiple sample
 * comparison", Statistics and Computing 32:32; the band is calibrated by simulation), and
 * the empirical coverage of the central intervals with binomial standard errors. em_sbc_write
 * puts it in CSV files and gnuplot scripts; em_sbc_plot draws them.
 */
#ifndef EMBER_CALIBRATION_H
#define EMBER_CALIBRATION_H

#include <stdio.h>

#include "ember/mcmc.h"
#include "ember/model.h"
#include "ember/svi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The nominal levels of the central intervals whose coverage is reported: 0.5, 0.8, 0.9, 0.95. */
#define EM_SBC_NUM_LEVELS 4
double em_sbc_level(size_t k);

typedef enum em_sbc_engine {
    EM_SBC_ENGINE_NUTS = 0, /* em_mcmc_run on the conditioned model (cfg.mcmc) */
    EM_SBC_ENGINE_SVI,      /* an autoguide fitted by SVI (cfg.svi); EM_AUTO_LAPLACE skips SVI */
    EM_SBC_ENGINE_CUSTOM,   /* cfg.custom: any sampler the user writes */
    EM_SBC_ENGINE_COUNT
} em_sbc_engine;

const char *em_sbc_engine_name(em_sbc_engine e); /* "nuts", "svi", "custom" */

/* One simulated data set, as a custom engine sees it. */
typedef struct em_sbc_dataset {
    size_t replication;          /* 0-based */
    uint64_t seed;               /* a seed for the fit of this replication */
    /* The user's model with every observe site's data replaced by the simulated values: pass
     * it to em_logdensity_from_model, em_svi_create, ... (valid during the call only). */
    em_model_fn model;
    const void *model_data;
    /* The latent layout of the model (names, lengths, transforms: em_logdensity_latent) and
     * the constrained outputs; read it, do not evaluate it (clone it for that). */
    const em_logdensity *layout;
    size_t num_params;           /* scalar constrained latents: the length of one draw */
    /* The simulated observations, one entry per observe site of the model. */
    size_t nobs;
    const char *const *obs_names;
    const double *const *obs_values;
    const size_t *obs_lens;
} em_sbc_dataset;

/* A custom engine: write ndraws draws from the posterior of ds into draws (row-major,
 * ndraws × ds->num_params, constrained values in the layout's output order). The draws are
 * taken as independent: thin an autocorrelated sampler before returning. rng is this
 * replication's own stream. Called from several threads at once (with different ds and rng):
 * ctx must allow that. Return EM_OK, or an error status with err filled. */
typedef em_status (*em_sbc_engine_fn)(void *ctx, const em_sbc_dataset *ds, em_rng *rng, size_t ndraws,
                                      double *draws, em_error *err);

typedef struct em_sbc_svi_config {
    em_autoguide_kind guide; /* EM_AUTO_MULTIVARIATE_NORMAL (full rank); DIAGONAL_NORMAL is mean-field */
    size_t steps;            /* 3000 */
    /* Adam with the learning rate decaying exponentially from lr to lr_end over the steps
     * (Robbins–Monro: the last iterates settle instead of scattering at a constant rate). */
    double lr, lr_end;       /* 0.02, 0.0005 */
    int num_particles;       /* 2 */
    em_elbo_kind elbo;       /* EM_ELBO_TRACE */
    /* 1: start the guide at the mode of the posterior (found by em_autoguide_create with
     * EM_AUTO_LAPLACE; the autoguide's own initialisation if that fails): prior draws can put
     * the posterior far from where a default initialisation starts. */
    int init_at_mode;        /* 1 */
    double init_scale;       /* 0: the autoguide's default (0.1) */
    size_t rank;             /* EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL; 0: the autoguide's default */
} em_sbc_svi_config;

typedef struct em_sbc_config {
    size_t num_replications; /* R: 100 */
    /* L posterior draws per replication: the rank of the truth is in 0..L. 99 by default, so
     * that the 100 possible ranks fall evenly into 20 (or 10, 25, 50) bins. */
    size_t num_draws;
    size_t bins;             /* 20: rank histogram bins, 2 ≤ bins ≤ L + 1 */
    uint64_t seed;           /* 20260101 */
    int num_threads;         /* 0: the online CPUs (replications run in parallel) */
    em_sbc_engine engine;    /* EM_SBC_ENGINE_NUTS */
    /* NUTS settings per replication (1 chain, 500 warmup, 500 draws by default). seed,
     * num_threads, progress, handle_sigint and cancel are set by em_sbc_run. */
    em_mcmc_config mcmc;
    em_sbc_svi_config svi;
    em_sbc_engine_fn custom; /* EM_SBC_ENGINE_CUSTOM */
    void *custom_ctx;
    /* A parameter is flagged when its chi-square p-value is below alpha or its ECDF leaves the
     * simultaneous 1 − alpha band. 0.001 by default: with several parameters and repeated
     * checks, a 5% test would flag a good engine too often. */
    double alpha;
    /* 0: a replication whose fit fails stops the run with its error. 1: it is counted
     * (em_sbc_num_failed) and left out of the statistics. */
    int skip_failed;
    int progress;            /* 1: a line on stderr at every 10% of the replications */
} em_sbc_config;

/* The defaults above. */
em_sbc_config em_sbc_config_default(void);
/* EM_ERR_ARG naming the field and its value when cfg is unusable. */
em_status em_sbc_config_validate(const em_sbc_config *cfg, em_error *err);

typedef struct em_sbc_result em_sbc_result;

/* Run SBC for model(m, data). data must stay valid during the call; the model needs at least
 * one continuous latent site. The predictors in data are kept; only the observe sites' data are
 * replaced by simulated values of the same length (data sets never subsample: a plate with
 * subsampling that wraps an observe site makes an SVI fit fail with a shape error). On EM_OK *out is a new result (em_sbc_free). Errors: EM_ERR_ARG
 * (configuration), EM_ERR_MODEL (no latent site, a structure that changes between data sets),
 * or the first failing replication's error, its number and seed in the message. */
em_status em_sbc_run(em_model_fn model, const void *data, const em_sbc_config *cfg, em_sbc_result **out,
                     em_error *err);
void em_sbc_free(em_sbc_result *r);

/* ---- reading a result ---------------------------------------------------------------------- */

const em_sbc_config *em_sbc_config_of(const em_sbc_result *r);
size_t em_sbc_num_params(const em_sbc_result *r);
/* CmdStan-style names ("a", "beta.1", ...), NULL out of range. */
const char *em_sbc_param_name(const em_sbc_result *r, size_t j);
size_t em_sbc_num_replications(const em_sbc_result *r); /* R */
size_t em_sbc_num_used(const em_sbc_result *r);         /* R minus the failed ones */
size_t em_sbc_num_failed(const em_sbc_result *r);
/* The message of the first (lowest-numbered) failed replication, or NULL. */
const char *em_sbc_first_failure(const em_sbc_result *r);
/* NUTS: divergent transitions over all replications, and replications with any. */
size_t em_sbc_num_divergent(const em_sbc_result *r);
size_t em_sbc_num_divergent_replications(const em_sbc_result *r);
double em_sbc_seconds(const em_sbc_result *r); /* wall time of em_sbc_run */

/* Rank of parameter j's true value in replication rep (0-based), with *L (may be NULL) the
 * number of draws it was ranked among; -1 for a failed replication or out of range. L is
 * num_draws unless a NUTS fit had too few effective draws even after one longer rerun. */
long em_sbc_rank(const em_sbc_result *r, size_t rep, size_t j, size_t *L);
/* The true (prior-drawn) value of parameter j in replication rep; NaN when not available. */
double em_sbc_truth(const em_sbc_result *r, size_t rep, size_t j);

typedef struct em_sbc_param_stats {
    const char *name;
    size_t n;                 /* replications used */
    double chi2;              /* Pearson's statistic of the rank histogram */
    size_t chi2_df;           /* bins with a positive expected count, minus 1 */
    double chi2_p;            /* gsl_cdf_chisq_Q(chi2, chi2_df) */
    double ecdf_max_dev;      /* max over the grid of |ECDF(z) − z| */
    int ecdf_outside;         /* the ECDF leaves the simultaneous 1 − alpha band */
    int flagged;              /* chi2_p < alpha or ecdf_outside */
    double coverage[EM_SBC_NUM_LEVELS];    /* share of replications whose interval held the truth */
    double coverage_se[EM_SBC_NUM_LEVELS]; /* sqrt(p(1 − p) / n) at the nominal p: the binomial error */
    double mean_z;            /* mean over replications of (posterior mean − truth) / posterior sd */
    double mean_contraction;  /* mean of 1 − posterior var / prior var (prior var over the truths) */
} em_sbc_param_stats;

em_status em_sbc_param(const em_sbc_result *r, size_t j, em_sbc_param_stats *out, em_error *err);
/* Counts per rank bin of parameter j (*nbins of them), and the expected count per bin under
 * uniform ranks (the same for every parameter). NULL out of range. A rank r of L draws falls
 * in bin floor(r · bins / (L + 1)). */
const size_t *em_sbc_histogram(const em_sbc_result *r, size_t j, size_t *nbins);
const double *em_sbc_expected(const em_sbc_result *r, size_t *nbins);
/* Parameters flagged (see em_sbc_param_stats.flagged). */
size_t em_sbc_num_flagged(const em_sbc_result *r);

/* ---- output ---------------------------------------------------------------------------------- */

/* An aligned table: param, chi2, df, p, ECDF, the four coverages ± their errors. */
em_status em_sbc_print(FILE *f, const em_sbc_result *r, em_error *err);

/* Write into dir (created if missing; its parent must exist), each file atomically:
 *   sbc_summary.csv   param,chi2_p,cov50,cov80,cov90,cov95
 *   sbc_ranks.csv     replication,param,rank,L (replications numbered from 1; failed ones left out)
 *   sbc_details.csv   param,n,chi2,df,chi2_p,ecdf_max_dev,ecdf_outside,flagged,cov50,se50,...,
 *                     mean_z,mean_contraction
 *   sbc_hist.dat, sbc_ecdf.dat, sbc.gp   the figures' data and gnuplot script (sbc_hist.png: rank
 *                     histograms with the expected count and its pointwise 99% band; sbc_ecdf.png:
 *                     ECDF(z) − z with the simultaneous 95% band). */
em_status em_sbc_write(const em_sbc_result *r, const char *dir, em_error *err);

/* Run gnuplot on dir/sbc.gp (working directory dir, messages to dir/gnuplot.log). When gnuplot
 * is not on PATH, *drawn (may be NULL) is 0 and the status EM_OK; a gnuplot failure is EM_ERR_IO. */
em_status em_sbc_plot(const char *dir, int *drawn, em_error *err);

#ifdef __cplusplus
}
#endif
#endif
