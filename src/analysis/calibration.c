/* calibration.c — simulation-based calibration. See calibration.h.
 *
 * One replication: a prior-predictive draw (em_predictive_prior, which samples the observe
 * sites), the model conditioned on the simulated observations by a small handler that hands
 * each observe site its simulated values, a fit by the chosen engine, then ranks and interval
 * hits. Replications are independent jobs handed to worker threads by an atomic counter; each
 * writes only its own rows of the result, and every random number it uses comes from streams
 * of (seed, replication), so the thread count cannot change the result.
 *
 * The statistics follow Talts et al. (2018): rank histograms and a chi-square test; the ECDF
 * of the normalised ranks with a simultaneous band whose level is adjusted by simulation
 * under uniform ranks, as in Säilynoja, Bürkner & Vehtari (2022, §2): the band is the set of
 * pointwise binomial intervals at a level γ chosen so that a uniform sample stays inside all
 * of them with probability 1 − α.
 */
#include "ember/calibration.h"
#include "ember/diagnostics.h"
#include "ember/handlers.h"
#include "ember/predictive.h"
#include "internal/sort.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_rng.h>

static const double LEVELS[EM_SBC_NUM_LEVELS] = {0.5, 0.8, 0.9, 0.95};

/* Simulations of uniform ranks that calibrate the ECDF band, and its evaluation points. */
enum { ECDF_SIMS = 10000, ECDF_MAX_GRID = 100 };
/* Draws of an SVI guide used for its interval ends and moments. */
enum { SVI_QUANTILE_DRAWS = 4000 };

double em_sbc_level(size_t k) { return k < EM_SBC_NUM_LEVELS ? LEVELS[k] : NAN; }

const char *em_sbc_engine_name(em_sbc_engine e) {
    switch (e) {
    case EM_SBC_ENGINE_NUTS: return "nuts";
    case EM_SBC_ENGINE_SVI: return "svi";
    case EM_SBC_ENGINE_CUSTOM: return "custom";
    default: return "unknown";
    }
}

em_sbc_config em_sbc_config_default(void) {
    em_sbc_config c;
    memset(&c, 0, sizeof c);
    c.num_replications = 100;
    c.num_draws = 99;
    c.bins = 20;
    c.seed = 20260101;
    c.engine = EM_SBC_ENGINE_NUTS;
    c.mcmc = em_mcmc_config_default();
    c.mcmc.num_chains = 1;
    c.mcmc.num_warmup = 500;
    c.mcmc.num_samples = 500;
    c.svi.guide = EM_AUTO_MULTIVARIATE_NORMAL;
    c.svi.steps = 3000;
    c.svi.lr = 0.02;
    c.svi.lr_end = 0.0005;
    c.svi.num_particles = 2;
    c.svi.elbo = EM_ELBO_TRACE;
    c.svi.init_at_mode = 1;
    c.alpha = 0.001;
    return c;
}

em_status em_sbc_config_validate(const em_sbc_config *c, em_error *err) {
    const char *f = "em_sbc_config";
    if (!c) return em_error_set(err, EM_ERR_ARG, "%s: no configuration", f);
    if (c->num_replications == 0)
        return em_error_set(err, EM_ERR_ARG, "%s: num_replications = 0, must be positive", f);
    if (c->num_draws == 0) return em_error_set(err, EM_ERR_ARG, "%s: num_draws = 0, must be positive", f);
    if (c->bins < 2 || c->bins > c->num_draws + 1)
        return em_error_set(err, EM_ERR_ARG, "%s: bins = %zu, must be from 2 to num_draws + 1 = %zu", f, c->bins,
                            c->num_draws + 1);
    if (c->num_threads < 0) return em_error_set(err, EM_ERR_ARG, "%s: num_threads = %d, must be >= 0", f, c->num_threads);
    if (!(c->alpha > 0.0 && c->alpha < 1.0))
        return em_error_set(err, EM_ERR_ARG, "%s: alpha = %g, must be in (0, 1)", f, c->alpha);
    switch (c->engine) {
    case EM_SBC_ENGINE_NUTS: {
        em_mcmc_config m = c->mcmc;
        m.num_threads = 1;
        em_status s = em_mcmc_config_validate(&m, err);
        if (s != EM_OK) return s;
        if (m.num_samples < 1)
            return em_error_set(err, EM_ERR_ARG, "%s: mcmc.num_samples = %d, must be positive", f, m.num_samples);
        break;
    }
    case EM_SBC_ENGINE_SVI:
        if ((int)c->svi.guide < 0 || c->svi.guide >= EM_AUTO_KIND_COUNT)
            return em_error_set(err, EM_ERR_ARG, "%s: svi.guide = %d is not an autoguide kind", f, (int)c->svi.guide);
        if (c->svi.guide != EM_AUTO_LAPLACE) {
            if (c->svi.steps == 0) return em_error_set(err, EM_ERR_ARG, "%s: svi.steps = 0, must be positive", f);
            if (!(c->svi.lr > 0.0) || !(c->svi.lr_end > 0.0) || !isfinite(c->svi.lr) || !isfinite(c->svi.lr_end))
                return em_error_set(err, EM_ERR_ARG, "%s: svi.lr = %g and svi.lr_end = %g must be positive", f,
                                    c->svi.lr, c->svi.lr_end);
            if (c->svi.num_particles < 0)
                return em_error_set(err, EM_ERR_ARG, "%s: svi.num_particles = %d, must be >= 0", f,
                                    c->svi.num_particles);
        }
        break;
    case EM_SBC_ENGINE_CUSTOM:
        if (!c->custom) return em_error_set(err, EM_ERR_ARG, "%s: engine is custom but custom is NULL", f);
        break;
    default:
        return em_error_set(err, EM_ERR_ARG, "%s: engine = %d is not an em_sbc_engine (0 nuts, 1 svi, 2 custom)", f,
                            (int)c->engine);
    }
    return EM_OK;
}

/* ---- the model conditioned on simulated observations ------------------------------------------ */

typedef struct sbc_conditioned {
    em_model_fn fn;
    const void *data;
    size_t nobs;
    const char *const *names;
    const double *const *values;
    const size_t *lens;
} sbc_conditioned;

typedef struct replace_handler {
    em_handler base;
    const sbc_conditioned *c;
} replace_handler;

/* An observe site takes its simulated values. They are handed over as the site's value
 * (done = 1) rather than only as msg->obs: the model then checks their length against the
 * site's own data length instead of reading past the end of a shorter array. */
static void replace_process(em_handler *h, em_msg *msg) {
    if (msg->kind != EM_SITE_OBSERVE) return;
    const sbc_conditioned *c = ((replace_handler *)h)->c;
    for (size_t i = 0; i < c->nobs; i++)
        if (strcmp(c->names[i], msg->name) == 0) {
            msg->obs = c->values[i];
            msg->value = em_const(em_model_tape(msg->model), c->values[i], c->lens[i]);
            msg->done = 1;
            msg->is_observed = 1;
            return;
        }
    em_model_fail(msg->model, EM_ERR_MODEL,
                  "sbc: observe site '%s' was not in the simulated data set (the model's structure changed)",
                  msg->name);
}

static void conditioned_model(em_model *m, const void *arg) {
    const sbc_conditioned *c = arg;
    replace_handler h = {{replace_process, NULL, "sbc_replace_observed"}, c};
    if (em_push(m, &h.base) != EM_OK) return;
    c->fn(m, c->data);
    em_pop(m, &h.base);
}

/* ---- the result ------------------------------------------------------------------------------- */

struct em_sbc_result {
    em_sbc_config cfg;
    size_t R, P, bins;
    char **names;
    long *rank;              /* R × P, -1 for a failed replication */
    size_t *L;               /* R */
    unsigned char *covered;  /* R × P, bit k: the level-k interval held the truth */
    double *truth, *pmean, *psd; /* R × P */
    unsigned char *failed;   /* R */
    size_t *ndiv;            /* R */
    size_t nfailed;
    char *first_failure;
    double seconds;
    /* statistics */
    size_t *hist;            /* P × bins */
    double *expected;        /* bins */
    em_sbc_param_stats *stats;
    size_t K;                /* ECDF grid */
    double *grid;            /* K values z */
    double *ecdf;            /* P × K: ECDF(z) */
    double *band_lo, *band_hi; /* K: the simultaneous 95% band of ECDF(z) */
};

void em_sbc_free(em_sbc_result *r) {
    if (!r) return;
    if (r->names)
        for (size_t j = 0; j < r->P; j++) free(r->names[j]);
    free(r->names);
    free(r->rank);
    free(r->L);
    free(r->covered);
    free(r->truth);
    free(r->pmean);
    free(r->psd);
    free(r->failed);
    free(r->ndiv);
    free(r->first_failure);
    free(r->hist);
    free(r->expected);
    free(r->stats);
    free(r->grid);
    free(r->ecdf);
    free(r->band_lo);
    free(r->band_hi);
    free(r);
}

/* ---- one replication -------------------------------------------------------------------------- */

typedef struct sbc_run {
    const em_sbc_config *cfg;
    em_model_fn model;
    const void *data;
    const em_logdensity *layout;
    em_sbc_result *res;
    size_t next;        /* atomic: the next replication to run */
    int stop;           /* atomic: a replication failed and failures are not skipped */
    pthread_mutex_t lock;
    size_t done;        /* under lock: for progress */
    size_t first_fail;  /* under lock: lowest failed replication */
    em_error fail_err;
    double t0;
} sbc_run;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What an engine hands back: L draws to rank among (L × P, row-major), the ends of the central
 * intervals (lo/hi: P × levels) and the posterior mean and sd of each parameter. */
typedef struct fit_out {
    size_t L;
    double *draws;
    double *lo, *hi;
    double *mean, *sd;
    size_t ndiv;
} fit_out;

/* Interval ends, mean and sd of parameter j from n draws with the given stride. The ends are
 * type-6 quantiles (position (n + 1)p among the sorted draws, Hyndman & Fan 1996): the k-th of
 * n exchangeable draws has E[F(X_(k))] = k / (n + 1), so these ends cover exactly p on average
 * for any n. R's default type 7 would be biased low for few draws — with 99 draws its 90%
 * interval covers 88.2% on average, a bias larger than the binomial error of 500 replications. */
static void summarise_column(const double *x, size_t n, size_t stride, double *tmp, fit_out *fo, size_t j) {
    for (size_t i = 0; i < n; i++) tmp[i] = x[i * stride];
    fo->mean[j] = em_mean(tmp, n);
    fo->sd[j] = n > 1 ? em_sd(tmp, n) : 0.0;
    em_sort_doubles(tmp, n);
    for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++)
        for (int side = 0; side < 2; side++) {
            double p = side ? 0.5 + LEVELS[k] / 2 : 0.5 - LEVELS[k] / 2, h = (double)(n + 1) * p, q;
            if (h <= 1.0) {
                q = tmp[0];
            } else if (h >= (double)n) {
                q = tmp[n - 1];
            } else {
                size_t lo = (size_t)h; /* 1-based order statistic below h */
                q = tmp[lo - 1] + (h - (double)lo) * (tmp[lo] - tmp[lo - 1]);
            }
            (side ? fo->hi : fo->lo)[j * EM_SBC_NUM_LEVELS + k] = q;
        }
}

static em_status check_finite(const double *x, size_t n, size_t P, const em_sbc_result *res, const char *what,
                              em_error *err) {
    for (size_t i = 0; i < n * P; i++)
        if (!isfinite(x[i]))
            return em_error_set(err, EM_ERR_NONFINITE, "%s: draw %zu of '%s' is %g", what, i / P + 1,
                                res->names[i % P], x[i]);
    return EM_OK;
}

static em_status fit_custom(sbc_run *run, const em_sbc_dataset *ds, em_rng *rng, fit_out *fo, em_error *err) {
    const em_sbc_result *res = run->res;
    size_t P = res->P, L = run->cfg->num_draws;
    fo->L = L;
    fo->draws = malloc(L * P * sizeof *fo->draws);
    double *tmp = malloc(L * sizeof *tmp);
    em_status s = fo->draws && tmp ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
    if (s == EM_OK) {
        for (size_t i = 0; i < L * P; i++) fo->draws[i] = NAN; /* an engine that writes nothing is caught */
        s = run->cfg->custom(run->cfg->custom_ctx, ds, rng, L, fo->draws, err);
        if (s == EM_OK) s = check_finite(fo->draws, L, P, res, "sbc custom engine", err);
    }
    for (size_t j = 0; j < P && s == EM_OK; j++) summarise_column(fo->draws + j, L, P, tmp, fo, j);
    free(tmp);
    return s;
}

static em_status fit_nuts(sbc_run *run, const em_sbc_dataset *ds, fit_out *fo, em_error *err) {
    const em_sbc_result *res = run->res;
    size_t P = res->P, Lwant = run->cfg->num_draws;
    em_logdensity *ld = em_logdensity_from_model(ds->model, ds->model_data, &(em_logdensity_options){.seed = ds->seed}, err);
    if (!ld) return err ? err->status : EM_ERR_MODEL;
    em_status s = EM_OK;
    if (em_logdensity_num_outputs(ld) != P)
        s = em_error_set(err, EM_ERR_MODEL, "sbc: the conditioned model has %zu latent values, the model had %zu",
                         em_logdensity_num_outputs(ld), P);
    em_mcmc_config mc = run->cfg->mcmc;
    mc.seed = ds->seed;
    mc.num_threads = 1;
    mc.progress = 0;
    mc.handle_sigint = 0;
    mc.cancel = NULL;
    mc.save_warmup = 0;
    em_mcmc_result *mr = NULL;
    double *all = NULL, *tmp = NULL;
    size_t total = 0, n = 0, thin = 1;
    for (int attempt = 0; attempt < 2 && s == EM_OK; attempt++) {
        em_mcmc_result_free(mr);
        mr = NULL;
        free(all);
        all = NULL;
        s = em_mcmc_run(ld, &mc, &mr, err);
        if (s != EM_OK) break;
        size_t nch = mr->num_chains;
        n = em_mcmc_extract(mr, EM_MCMC_NUM_SAMPLER_COLS, NULL);
        total = nch * n;
        all = malloc((total ? total : 1) * P * sizeof *all);
        if (!all) {
            s = em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
            break;
        }
        if (n == 0) {
            s = em_error_set(err, EM_ERR_ARG, "sbc: the NUTS run kept no draws");
            break;
        }
        for (size_t j = 0; j < P; j++) em_mcmc_extract(mr, EM_MCMC_NUM_SAMPLER_COLS + j, all + j * total);
        /* Thin by the smallest ESS (bulk or tail) over the parameters, so the kept draws are
         * roughly independent (Talts et al. §5.1: autocorrelated draws make ranks look
         * non-uniform although the sampler is right). Undefined ESS (a stuck chain) counts as 1. */
        double ess = INFINITY;
        for (size_t j = 0; j < P; j++) {
            double b = em_ess_bulk(all + j * total, nch, n, NULL), t = em_ess_tail(all + j * total, nch, n, NULL);
            if (!(b >= 1.0)) b = 1.0;
            if (!(t >= 1.0)) t = 1.0;
            if (b < ess) ess = b;
            if (t < ess) ess = t;
        }
        thin = ess >= (double)total ? 1 : (size_t)ceil((double)total / ess);
        size_t avail = nch * ((n + thin - 1) / thin);
        if (avail >= Lwant || attempt == 1) break;
        /* Too few effective draws: one longer run with enough of them (at most 20 times as long). */
        double want = ceil(1.2 * (double)Lwant * (double)thin / (double)nch);
        double cap = 20.0 * (double)run->cfg->mcmc.num_samples;
        mc.num_samples = (int)(want < cap ? want : cap);
        if (mc.num_samples <= (int)n) break;
    }
    if (s == EM_OK) {
        size_t nch = mr->num_chains, per = (n + thin - 1) / thin, avail = nch * per;
        size_t L = avail < Lwant ? avail : Lwant;
        fo->L = L;
        fo->ndiv = em_mcmc_num_divergent(mr);
        fo->draws = malloc(L * P * sizeof *fo->draws);
        tmp = malloc(total * sizeof *tmp);
        if (!fo->draws || !tmp) s = em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
        /* L of the thinned draws, evenly spread over all of them (chain by chain) */
        for (size_t l = 0; l < L && s == EM_OK; l++) {
            size_t q = (size_t)((double)l * (double)avail / (double)L);
            size_t c = q / per, i = (q % per) * thin;
            for (size_t j = 0; j < P; j++) fo->draws[l * P + j] = all[j * total + c * n + i];
        }
        /* the interval ends and moments use every draw */
        for (size_t j = 0; j < P && s == EM_OK; j++) summarise_column(all + j * total, total, 1, tmp, fo, j);
        if (s == EM_OK) s = check_finite(fo->draws, L, P, res, "sbc NUTS", err);
    }
    free(tmp);
    free(all);
    em_mcmc_result_free(mr);
    em_logdensity_destroy(ld);
    return s;
}

static em_status fit_svi(sbc_run *run, const em_sbc_dataset *ds, em_rng *rng, fit_out *fo, em_error *err) {
    const em_sbc_svi_config *sc = &run->cfg->svi;
    const em_sbc_result *res = run->res;
    size_t P = res->P, L = run->cfg->num_draws;
    em_autoguide_options ao = {.seed = ds->seed, .init_scale = sc->init_scale, .rank = sc->rank};
    double *init = NULL, *draws = NULL, *tmp = NULL;
    em_autoguide *g = NULL;
    em_svi *svi = NULL;
    em_param_store *params = NULL;
    em_status s = EM_OK;
    if (sc->guide != EM_AUTO_LAPLACE && sc->init_at_mode) {
        em_error e2 = {0};
        em_autoguide *lg = em_autoguide_create(EM_AUTO_LAPLACE, ds->model, ds->model_data,
                                               &(em_autoguide_options){.seed = ds->seed}, &e2);
        init = malloc(P * sizeof *init);
        if (lg && init && em_autoguide_num_outputs(lg) == P && em_autoguide_median(lg, NULL, init, &e2) == EM_OK) {
            ao.init = EM_INIT_VALUES;
            ao.init_values = init;
        }
        em_autoguide_destroy(lg);
    }
    g = em_autoguide_create(sc->guide, ds->model, ds->model_data, &ao, err);
    if (!g) s = err ? err->status : EM_ERR_MODEL;
    if (s == EM_OK && em_autoguide_num_outputs(g) != P)
        s = em_error_set(err, EM_ERR_MODEL, "sbc: the conditioned model has %zu latent values, the model had %zu",
                         em_autoguide_num_outputs(g), P);
    if (s == EM_OK && sc->guide != EM_AUTO_LAPLACE) {
        em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, sc->lr);
        oc.schedule.kind = EM_LR_EXPONENTIAL;
        oc.schedule.gamma = pow(sc->lr_end / sc->lr, 1.0 / (double)sc->steps);
        em_svi_options so = {.elbo = sc->elbo, .num_particles = sc->num_particles, .seed = ds->seed};
        svi = em_svi_create(ds->model, ds->model_data, em_autoguide_fn, g, &oc, &so, err);
        if (!svi) s = err ? err->status : EM_ERR_ARG;
        if (s == EM_OK) s = em_svi_run(svi, sc->steps, NULL, err);
        if (s == EM_OK) params = em_svi_params(svi);
    }
    /* The guide's draws are independent: L of them are ranked; its interval ends and moments
     * come from many more, so they carry little Monte Carlo error. */
    size_t M = L > SVI_QUANTILE_DRAWS ? L : SVI_QUANTILE_DRAWS;
    if (s == EM_OK) {
        draws = malloc(M * P * sizeof *draws);
        tmp = malloc(M * sizeof *tmp);
        fo->draws = malloc(L * P * sizeof *fo->draws);
        if (!draws || !tmp || !fo->draws) s = em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
    }
    if (s == EM_OK) s = em_autoguide_sample(g, params, rng, M, NULL, draws, err);
    if (s == EM_OK) s = check_finite(draws, M, P, res, "sbc SVI guide", err);
    if (s == EM_OK) {
        fo->L = L;
        memcpy(fo->draws, draws, L * P * sizeof *draws);
        for (size_t j = 0; j < P; j++) summarise_column(draws + j, M, P, tmp, fo, j);
    }
    free(tmp);
    free(draws);
    free(init);
    em_svi_destroy(svi);
    em_autoguide_destroy(g);
    return s;
}

static em_status run_replication(sbc_run *run, size_t rep, em_error *err) {
    const em_sbc_config *cfg = run->cfg;
    em_sbc_result *res = run->res;
    size_t P = res->P;
    uint64_t rseed = em_seed_mix(cfg->seed, rep);
    em_predictive *pred = NULL;
    em_rng *fit_rng = em_rng_create(rseed, 2), *tie_rng = em_rng_create(rseed, 3);
    fit_out fo;
    memset(&fo, 0, sizeof fo);
    fo.lo = malloc(P * EM_SBC_NUM_LEVELS * sizeof(double));
    fo.hi = malloc(P * EM_SBC_NUM_LEVELS * sizeof(double));
    fo.mean = malloc(P * sizeof(double));
    fo.sd = malloc(P * sizeof(double));
    size_t nlat = em_logdensity_num_latents(run->layout);
    const char **onames = NULL;
    const double **ovals = NULL;
    size_t *olens = NULL;
    double *truth = res->truth + rep * P;
    em_status s = fit_rng && tie_rng && fo.lo && fo.hi && fo.mean && fo.sd
                      ? EM_OK
                      : em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");

    /* 1. the truth and a data set from the prior predictive */
    if (s == EM_OK)
        s = em_predictive_prior(run->model, run->data, 1, &(em_predictive_options){.seed = em_seed_mix(rseed, 1)}, &pred,
                                err);
    for (size_t k = 0, o = 0; k < nlat && s == EM_OK; k++) {
        const em_latent_info *li = em_logdensity_latent(run->layout, k);
        const em_pred_site *ps = em_predictive_site(pred, li->name);
        if (!ps || ps->kind != EM_SITE_SAMPLE || ps->len != li->len) {
            s = em_error_set(err, EM_ERR_MODEL, "sbc: latent site '%s' %s in the prior draw", li->name,
                             ps ? "changed length or kind" : "is missing");
            break;
        }
        for (size_t i = 0; i < li->len; i++) {
            truth[o + i] = ps->draws[i];
            if (!isfinite(truth[o + i]))
                s = em_error_set(err, EM_ERR_NONFINITE, "sbc: the prior draw of '%s' is %g", res->names[o + i],
                                 truth[o + i]);
        }
        o += li->len;
    }
    size_t nobs = 0;
    if (s == EM_OK) {
        onames = malloc((pred->nsites + 1) * sizeof *onames);
        ovals = malloc((pred->nsites + 1) * sizeof *ovals);
        olens = malloc((pred->nsites + 1) * sizeof *olens);
        if (!onames || !ovals || !olens) s = em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
        for (size_t i = 0; i < pred->nsites && s == EM_OK; i++) {
            const em_pred_site *ps = &pred->sites[i];
            if (ps->kind != EM_SITE_OBSERVE) continue;
            for (size_t e = 0; e < ps->len; e++)
                if (!isfinite(ps->draws[e])) {
                    s = em_error_set(err, EM_ERR_NONFINITE, "sbc: simulated observation %zu of '%s' is %g", e,
                                     ps->name, ps->draws[e]);
                    break;
                }
            onames[nobs] = ps->name;
            ovals[nobs] = ps->draws;
            olens[nobs++] = ps->len;
        }
    }

    /* 2. the fit */
    sbc_conditioned cond = {run->model, run->data, nobs, onames, ovals, olens};
    em_sbc_dataset ds = {rep, em_seed_mix(rseed, 4), conditioned_model, &cond, run->layout, P, nobs, onames, ovals, olens};
    if (s == EM_OK) {
        switch (cfg->engine) {
        case EM_SBC_ENGINE_NUTS: s = fit_nuts(run, &ds, &fo, err); break;
        case EM_SBC_ENGINE_SVI: s = fit_svi(run, &ds, fit_rng, &fo, err); break;
        case EM_SBC_ENGINE_CUSTOM: s = fit_custom(run, &ds, fit_rng, &fo, err); break;
        default: s = em_error_set(err, EM_ERR_ARG, "sbc: unknown engine %d", (int)cfg->engine); break;
        }
    }

    /* 3. ranks (ties, which a continuous posterior should not have, broken at random as Talts
     * et al. advise) and interval hits */
    if (s == EM_OK) {
        res->L[rep] = fo.L;
        res->ndiv[rep] = fo.ndiv;
        for (size_t j = 0; j < P; j++) {
            size_t less = 0, eq = 0;
            for (size_t l = 0; l < fo.L; l++) {
                double d = fo.draws[l * P + j];
                less += d < truth[j];
                eq += d == truth[j];
            }
            if (eq) less += (size_t)gsl_rng_uniform_int(tie_rng, (unsigned long)eq + 1);
            res->rank[rep * P + j] = (long)less;
            unsigned char bits = 0;
            for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++) {
                double lo = fo.lo[j * EM_SBC_NUM_LEVELS + k], hi = fo.hi[j * EM_SBC_NUM_LEVELS + k];
                if (lo <= truth[j] && truth[j] <= hi) bits |= (unsigned char)(1u << k);
            }
            res->covered[rep * P + j] = bits;
            res->pmean[rep * P + j] = fo.mean[j];
            res->psd[rep * P + j] = fo.sd[j];
        }
    }
    free(fo.draws);
    free(fo.lo);
    free(fo.hi);
    free(fo.mean);
    free(fo.sd);
    free(onames);
    free(ovals);
    free(olens);
    em_predictive_free(pred);
    em_rng_destroy(fit_rng);
    em_rng_destroy(tie_rng);
    return s;
}

static void *worker(void *arg) {
    sbc_run *run = arg;
    const em_sbc_config *cfg = run->cfg;
    size_t R = cfg->num_replications;
    for (;;) {
        if (__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE)) break;
        size_t rep = __atomic_fetch_add(&run->next, 1, __ATOMIC_ACQ_REL);
        if (rep >= R) break;
        em_error e = {0};
        em_status s = run_replication(run, rep, &e);
        pthread_mutex_lock(&run->lock);
        if (s != EM_OK) {
            run->res->failed[rep] = 1;
            for (size_t j = 0; j < run->res->P; j++) run->res->rank[rep * run->res->P + j] = -1;
            if (rep < run->first_fail) {
                run->first_fail = rep;
                memset(&run->fail_err, 0, sizeof run->fail_err);
                em_error_set(&run->fail_err, s, "sbc replication %zu (seed %llu): %s", rep + 1,
                             (unsigned long long)em_seed_mix(cfg->seed, rep), e.msg);
            }
            if (!cfg->skip_failed) __atomic_store_n(&run->stop, 1, __ATOMIC_RELEASE);
        }
        run->done++;
        if (cfg->progress && (run->done * 10 / R != (run->done - 1) * 10 / R || run->done == R))
            fprintf(stderr, "sbc (%s): %zu/%zu replications, %.1f s\n", em_sbc_engine_name(cfg->engine), run->done, R,
                    now_seconds() - run->t0);
        pthread_mutex_unlock(&run->lock);
    }
    return NULL;
}

/* ---- statistics ------------------------------------------------------------------------------- */

/* Number of rank values r in 0..L with floor(r·B/(L+1)) == b. */
static size_t ranks_in_bin(size_t b, size_t L, size_t B) {
    size_t n1 = L + 1;
    size_t lo = (b * n1 + B - 1) / B, hi = ((b + 1) * n1 + B - 1) / B;
    return hi > lo ? hi - lo : 0;
}

/* Binomial(n, z) tails for c = 0..n: pl[c] = P(X ≤ c), pu[c] = P(X ≥ c), summed from the
 * small end of each tail so that tail probabilities keep their relative precision. */
static void binom_tails(size_t n, double z, const double *lchoose, double *pmf, double *pl, double *pu) {
    double lz = log(z), l1z = log1p(-z);
    for (size_t c = 0; c <= n; c++) pmf[c] = exp(lchoose[c] + (double)c * lz + (double)(n - c) * l1z);
    double acc = 0.0;
    for (size_t c = 0; c <= n; c++) {
        acc += pmf[c];
        pl[c] = acc < 1.0 ? acc : 1.0;
    }
    acc = 0.0;
    for (size_t c = n + 1; c-- > 0;) {
        acc += pmf[c];
        pu[c] = acc < 1.0 ? acc : 1.0;
    }
}

/* The ECDF of the normalised ranks u = (r + 1)/(L + 1) on a grid z_k = m_k/(L0 + 1), and the
 * simultaneous bands. Under uniform ranks with L = L0, #{u ≤ z_k} is exactly Binomial(n, z_k);
 * γ is the α-quantile, over simulated uniform samples, of the smallest two-sided pointwise
 * tail probability along the grid (Säilynoja et al. 2022, §2.2). */
static em_status ecdf_stats(em_sbc_result *res, const size_t *used, size_t n, em_error *err) {
    size_t P = res->P, L0 = res->cfg.num_draws;
    size_t K = L0 < ECDF_MAX_GRID ? L0 : ECDF_MAX_GRID;
    if (K == 0) K = 1;
    res->K = K;
    res->grid = malloc(K * sizeof *res->grid);
    res->ecdf = malloc(P * K * sizeof *res->ecdf);
    res->band_lo = malloc(K * sizeof *res->band_lo);
    res->band_hi = malloc(K * sizeof *res->band_hi);
    double *lch = malloc((n + 1) * sizeof *lch), *pmf = malloc((n + 1) * sizeof *pmf);
    double *pl = malloc(K * (n + 1) * sizeof *pl), *pu = malloc(K * (n + 1) * sizeof *pu);
    double *mins = malloc(ECDF_SIMS * sizeof *mins), *u = malloc(n * sizeof *u);
    size_t *cnt = malloc(K * sizeof *cnt);
    em_rng *rng = em_rng_create(res->cfg.seed, 0xecdf);
    em_status s = res->grid && res->ecdf && res->band_lo && res->band_hi && lch && pmf && pl && pu && mins && u && cnt && rng
                      ? EM_OK
                      : em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
    if (s != EM_OK) goto done;
    /* grid: K of the L0 possible steps m = 1..L0, evenly spread */
    for (size_t k = 0; k < K; k++) {
        size_t m = (size_t)llround((double)(k + 1) * (double)L0 / (double)K);
        if (m < 1) m = 1;
        res->grid[k] = (double)m / (double)(L0 + 1);
    }
    for (size_t c = 0; c <= n; c++) lch[c] = lgamma((double)n + 1) - lgamma((double)c + 1) - lgamma((double)(n - c) + 1);
    for (size_t k = 0; k < K; k++) binom_tails(n, res->grid[k], lch, pmf, pl + k * (n + 1), pu + k * (n + 1));

#define ECDF_COUNTS(UFILL)                                                                  \
    do {                                                                                    \
        for (size_t i = 0; i < n; i++) u[i] = (UFILL);                                      \
        em_sort_doubles(u, n);                                                              \
        size_t i = 0;                                                                       \
        for (size_t k = 0; k < K; k++) {                                                    \
            while (i < n && u[i] <= res->grid[k] * (1 + 1e-12)) i++;                        \
            cnt[k] = i;                                                                     \
        }                                                                                   \
    } while (0)

    /* the null: n uniform ranks with the replications' own L */
    for (size_t sim = 0; sim < ECDF_SIMS; sim++) {
        ECDF_COUNTS(((double)gsl_rng_uniform_int(rng, (unsigned long)res->L[used[i]] + 1) + 1.0) /
                    ((double)res->L[used[i]] + 1.0));
        double m = 1.0;
        for (size_t k = 0; k < K; k++) {
            double a = pl[k * (n + 1) + cnt[k]], b = pu[k * (n + 1) + cnt[k]];
            double p = 2.0 * (a < b ? a : b);
            if (p < m) m = p;
        }
        mins[sim] = m;
    }
    em_sort_doubles(mins, ECDF_SIMS);
    double g95 = mins[(size_t)(0.05 * ECDF_SIMS)];
    double ga = mins[(size_t)(res->cfg.alpha * ECDF_SIMS)];
    /* the 95% band for the figure: the counts c whose pointwise p is at least γ */
    for (size_t k = 0; k < K; k++) {
        const double *a = pl + k * (n + 1), *b = pu + k * (n + 1);
        size_t lo = 0, hi = n;
        while (lo < n && 2.0 * (a[lo] < b[lo] ? a[lo] : b[lo]) < g95) lo++;
        while (hi > 0 && 2.0 * (a[hi] < b[hi] ? a[hi] : b[hi]) < g95) hi--;
        res->band_lo[k] = (double)lo / (double)n;
        res->band_hi[k] = (double)hi / (double)n;
    }
    for (size_t j = 0; j < P; j++) {
        ECDF_COUNTS(((double)res->rank[used[i] * P + j] + 1.0) / ((double)res->L[used[i]] + 1.0));
        double dev = 0.0, m = 1.0;
        for (size_t k = 0; k < K; k++) {
            res->ecdf[j * K + k] = (double)cnt[k] / (double)n;
            double d = fabs(res->ecdf[j * K + k] - res->grid[k]);
            if (d > dev) dev = d;
            double a = pl[k * (n + 1) + cnt[k]], b = pu[k * (n + 1) + cnt[k]];
            double p = 2.0 * (a < b ? a : b);
            if (p < m) m = p;
        }
        res->stats[j].ecdf_max_dev = dev;
        res->stats[j].ecdf_outside = m < ga;
    }
#undef ECDF_COUNTS
done:
    free(lch);
    free(pmf);
    free(pl);
    free(pu);
    free(mins);
    free(u);
    free(cnt);
    em_rng_destroy(rng);
    return s;
}

static em_status compute_stats(em_sbc_result *res, em_error *err) {
    size_t R = res->R, P = res->P, B = res->bins;
    size_t *used = malloc(R * sizeof *used), n = 0;
    res->hist = calloc(P * B, sizeof *res->hist);
    res->expected = calloc(B, sizeof *res->expected);
    res->stats = calloc(P, sizeof *res->stats);
    if (!used || !res->hist || !res->expected || !res->stats) {
        free(used);
        return em_error_set(err, EM_ERR_NOMEM, "sbc: out of memory");
    }
    for (size_t i = 0; i < R; i++)
        if (!res->failed[i]) used[n++] = i;
    for (size_t t = 0; t < n; t++) {
        size_t i = used[t], L = res->L[i];
        for (size_t b = 0; b < B; b++) res->expected[b] += (double)ranks_in_bin(b, L, B) / (double)(L + 1);
        for (size_t j = 0; j < P; j++) {
            size_t r = (size_t)res->rank[i * P + j];
            res->hist[j * B + r * B / (L + 1)]++;
        }
    }
    for (size_t j = 0; j < P; j++) {
        em_sbc_param_stats *st = &res->stats[j];
        st->name = res->names[j];
        st->n = n;
        double chi2 = 0.0;
        size_t nb = 0;
        for (size_t b = 0; b < B; b++) {
            double E = res->expected[b];
            if (E <= 0.0) continue;
            double d = (double)res->hist[j * B + b] - E;
            chi2 += d * d / E;
            nb++;
        }
        st->chi2 = chi2;
        st->chi2_df = nb > 1 ? nb - 1 : 0;
        st->chi2_p = st->chi2_df ? gsl_cdf_chisq_Q(chi2, (double)st->chi2_df) : NAN;
        double tm = 0.0, tv = 0.0, zs = 0.0;
        for (size_t t = 0; t < n; t++) tm += res->truth[used[t] * P + j];
        tm /= (double)n;
        for (size_t t = 0; t < n; t++) {
            double d = res->truth[used[t] * P + j] - tm;
            tv += d * d;
        }
        tv = n > 1 ? tv / (double)(n - 1) : NAN;
        double con = 0.0;
        for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++) {
            size_t c = 0;
            for (size_t t = 0; t < n; t++) c += (res->covered[used[t] * P + j] >> k) & 1u;
            st->coverage[k] = (double)c / (double)n;
            st->coverage_se[k] = sqrt(LEVELS[k] * (1.0 - LEVELS[k]) / (double)n);
        }
        for (size_t t = 0; t < n; t++) {
            size_t i = used[t];
            double sd = res->psd[i * P + j];
            zs += sd > 0 ? (res->pmean[i * P + j] - res->truth[i * P + j]) / sd : NAN;
            con += 1.0 - sd * sd / tv;
        }
        st->mean_z = zs / (double)n;
        st->mean_contraction = con / (double)n;
    }
    em_status s = ecdf_stats(res, used, n, err);
    for (size_t j = 0; j < P; j++) {
        em_sbc_param_stats *st = &res->stats[j];
        st->flagged = (st->chi2_p < res->cfg.alpha) || st->ecdf_outside;
    }
    free(used);
    return s;
}

/* ---- the run ---------------------------------------------------------------------------------- */

em_status em_sbc_run(em_model_fn model, const void *data, const em_sbc_config *cfg, em_sbc_result **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_sbc_run: out is NULL");
    *out = NULL;
    if (!model) return em_error_set(err, EM_ERR_ARG, "em_sbc_run: no model function");
    em_status s = em_sbc_config_validate(cfg, err);
    if (s != EM_OK) return s;
    double t0 = now_seconds();
    em_error e = {0};
    em_logdensity *layout = em_logdensity_from_model(model, data, &(em_logdensity_options){.seed = cfg->seed}, &e);
    if (!layout) return em_error_set(err, e.status, "em_sbc_run: %s", e.msg);
    em_sbc_result *res = calloc(1, sizeof *res);
    size_t R = cfg->num_replications, P = em_logdensity_num_outputs(layout);
    if (res) {
        res->cfg = *cfg;
        res->cfg.mcmc.init = NULL;
        res->cfg.mcmc.inv_metric = NULL;
        res->cfg.mcmc.cancel = NULL;
        res->cfg.mcmc.progress_stream = NULL;
        res->R = R;
        res->P = P;
        res->bins = cfg->bins;
        res->names = calloc(P, sizeof *res->names);
        res->rank = malloc(R * P * sizeof *res->rank);
        res->L = calloc(R, sizeof *res->L);
        res->covered = calloc(R * P, 1);
        res->truth = malloc(R * P * sizeof *res->truth);
        res->pmean = malloc(R * P * sizeof *res->pmean);
        res->psd = malloc(R * P * sizeof *res->psd);
        res->failed = calloc(R, 1);
        res->ndiv = calloc(R, sizeof *res->ndiv);
    }
    if (!res || !res->names || !res->rank || !res->L || !res->covered || !res->truth || !res->pmean || !res->psd ||
        !res->failed || !res->ndiv) {
        em_sbc_free(res);
        em_logdensity_destroy(layout);
        return em_error_set(err, EM_ERR_NOMEM, "em_sbc_run: out of memory");
    }
    for (size_t j = 0; j < P; j++)
        if (!(res->names[j] = strdup(em_logdensity_output_name(layout, j)))) {
            em_sbc_free(res);
            em_logdensity_destroy(layout);
            return em_error_set(err, EM_ERR_NOMEM, "em_sbc_run: out of memory");
        }
    for (size_t i = 0; i < R * P; i++) {
        res->rank[i] = -1;
        res->truth[i] = res->pmean[i] = res->psd[i] = NAN;
    }

    sbc_run run;
    memset(&run, 0, sizeof run);
    run.cfg = cfg;
    run.model = model;
    run.data = data;
    run.layout = layout;
    run.res = res;
    run.first_fail = (size_t)-1;
    run.t0 = t0;
    pthread_mutex_init(&run.lock, NULL);
    size_t nthreads = (size_t)cfg->num_threads;
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cpus > 0 ? (size_t)cpus : 1;
    }
    if (nthreads > R) nthreads = R;
    pthread_t *threads = nthreads > 1 ? calloc(nthreads - 1, sizeof *threads) : NULL;
    size_t started = 0;
    if (threads)
        for (; started < nthreads - 1; started++)
            if (pthread_create(&threads[started], NULL, worker, &run) != 0) break;
    worker(&run); /* the calling thread works too */
    for (size_t t = 0; t < started; t++) pthread_join(threads[t], NULL);
    free(threads);
    pthread_mutex_destroy(&run.lock);
    em_logdensity_destroy(layout);

    for (size_t i = 0; i < R; i++) res->nfailed += res->failed[i];
    if (res->nfailed) res->first_failure = strdup(run.fail_err.msg);
    if (res->nfailed && !cfg->skip_failed) {
        s = em_error_set(err, run.fail_err.status, "%s", run.fail_err.msg);
    } else if (res->nfailed == R) {
        s = em_error_set(err, run.fail_err.status, "em_sbc_run: every replication failed; the first: %s",
                         run.fail_err.msg);
    } else {
        s = compute_stats(res, err);
    }
    res->seconds = now_seconds() - t0;
    if (s != EM_OK) {
        em_sbc_free(res);
        return s;
    }
    *out = res;
    return EM_OK;
}

/* ---- accessors -------------------------------------------------------------------------------- */

const em_sbc_config *em_sbc_config_of(const em_sbc_result *r) { return r ? &r->cfg : NULL; }
size_t em_sbc_num_params(const em_sbc_result *r) { return r ? r->P : 0; }
const char *em_sbc_param_name(const em_sbc_result *r, size_t j) { return r && j < r->P ? r->names[j] : NULL; }
size_t em_sbc_num_replications(const em_sbc_result *r) { return r ? r->R : 0; }
size_t em_sbc_num_used(const em_sbc_result *r) { return r ? r->R - r->nfailed : 0; }
size_t em_sbc_num_failed(const em_sbc_result *r) { return r ? r->nfailed : 0; }
const char *em_sbc_first_failure(const em_sbc_result *r) { return r ? r->first_failure : NULL; }
double em_sbc_seconds(const em_sbc_result *r) { return r ? r->seconds : NAN; }

size_t em_sbc_num_divergent(const em_sbc_result *r) {
    size_t n = 0;
    for (size_t i = 0; r && i < r->R; i++) n += r->ndiv[i];
    return n;
}

size_t em_sbc_num_divergent_replications(const em_sbc_result *r) {
    size_t n = 0;
    for (size_t i = 0; r && i < r->R; i++) n += r->ndiv[i] > 0;
    return n;
}

long em_sbc_rank(const em_sbc_result *r, size_t rep, size_t j, size_t *L) {
    if (!r || rep >= r->R || j >= r->P || r->failed[rep]) return -1;
    if (L) *L = r->L[rep];
    return r->rank[rep * r->P + j];
}

double em_sbc_truth(const em_sbc_result *r, size_t rep, size_t j) {
    if (!r || rep >= r->R || j >= r->P) return NAN;
    return r->truth[rep * r->P + j];
}

em_status em_sbc_param(const em_sbc_result *r, size_t j, em_sbc_param_stats *out, em_error *err) {
    if (!r || !out) return em_error_set(err, EM_ERR_ARG, "em_sbc_param: result or out is NULL");
    if (j >= r->P) return em_error_set(err, EM_ERR_INDEX, "em_sbc_param: parameter %zu of %zu", j, r->P);
    *out = r->stats[j];
    return EM_OK;
}

const size_t *em_sbc_histogram(const em_sbc_result *r, size_t j, size_t *nbins) {
    if (!r || j >= r->P) return NULL;
    if (nbins) *nbins = r->bins;
    return r->hist + j * r->bins;
}

const double *em_sbc_expected(const em_sbc_result *r, size_t *nbins) {
    if (!r) return NULL;
    if (nbins) *nbins = r->bins;
    return r->expected;
}

size_t em_sbc_num_flagged(const em_sbc_result *r) {
    size_t n = 0;
    for (size_t j = 0; r && j < r->P; j++) n += r->stats[j].flagged != 0;
    return n;
}

/* ---- output ----------------------------------------------------------------------------------- */

em_status em_sbc_print(FILE *f, const em_sbc_result *r, em_error *err) {
    if (!f || !r) return em_error_set(err, EM_ERR_ARG, "em_sbc_print: file or result is NULL");
    size_t w = 5;
    for (size_t j = 0; j < r->P; j++)
        if (strlen(r->names[j]) > w) w = strlen(r->names[j]);
    fprintf(f, "SBC: engine %s, %zu replications (%zu failed), %zu draws each, %zu bins\n",
            em_sbc_engine_name(r->cfg.engine), r->R, r->nfailed, r->cfg.num_draws, r->bins);
    fprintf(f, "%-*s %8s %3s %9s %6s  %-13s %-13s %-13s %-13s %s\n", (int)w, "param", "chi2", "df", "p", "ecdf",
            "cov50", "cov80", "cov90", "cov95", "flag");
    for (size_t j = 0; j < r->P; j++) {
        const em_sbc_param_stats *st = &r->stats[j];
        fprintf(f, "%-*s %8.2f %3zu %9.3g %6.3f%s", (int)w, st->name, st->chi2, st->chi2_df, st->chi2_p,
                st->ecdf_max_dev, st->ecdf_outside ? "*" : " ");
        for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++) fprintf(f, " %.3f±%.3f  ", st->coverage[k], st->coverage_se[k]);
        fprintf(f, "%s\n", st->flagged ? "FLAGGED" : "ok");
    }
    if (ferror(f)) return em_error_set(err, EM_ERR_IO, "em_sbc_print: write error");
    return EM_OK;
}

static em_status write_one(const char *dir, const char *file, em_buf *b, em_error *err) {
    if (b->failed) return em_error_set(err, EM_ERR_NOMEM, "em_sbc_write: out of memory building %s", file);
    em_buf path = {0};
    em_buf_printf(&path, "%s/%s", dir, file);
    em_status s = path.failed ? em_error_set(err, EM_ERR_NOMEM, "em_sbc_write: out of memory")
                              : em_write_file_atomic(path.data, b->data ? b->data : "", b->len, err);
    em_buf_free(&path);
    return s;
}

/* A name for CSV: quoted when it holds a comma, quote or newline. */
static void csv_name(em_buf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        em_buf_printf(b, "%s", s);
        return;
    }
    em_buf_append(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') em_buf_append(b, "\"", 1);
        em_buf_append(b, p, 1);
    }
    em_buf_append(b, "\"", 1);
}

/* Smallest c with P(X ≤ c) ≥ q for X ~ Binomial(n, p). */
static size_t binom_quantile(double q, double p, size_t n) {
    if (p <= 0.0) return 0;
    if (p >= 1.0) return n;
    for (size_t c = 0; c < n; c++)
        if (gsl_cdf_binomial_P((unsigned int)c, p, (unsigned int)n) >= q) return c;
    return n;
}

static void gp_string(em_buf *b, const char *s) {
    em_buf_append(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '\'') em_buf_append(b, "'", 1); /* '' inside single quotes */
        if (*p == '_') em_buf_append(b, "\\", 1);   /* not a subscript in titles */
        em_buf_append(b, p, 1);
    }
    em_buf_append(b, "'", 1);
}

em_status em_sbc_write(const em_sbc_result *r, const char *dir, em_error *err) {
    if (!r || !dir || !dir[0]) return em_error_set(err, EM_ERR_ARG, "em_sbc_write: result or dir is missing");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return em_error_set(err, EM_ERR_IO, "em_sbc_write: cannot create %s: %s", dir, strerror(errno));
    size_t P = r->P, B = r->bins, n = r->R - r->nfailed;
    em_buf b = {0};
    em_buf_printf(&b, "param,chi2_p,cov50,cov80,cov90,cov95\n");
    for (size_t j = 0; j < P; j++) {
        const em_sbc_param_stats *st = &r->stats[j];
        csv_name(&b, st->name);
        em_buf_printf(&b, ",%.17g", st->chi2_p);
        for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++) em_buf_printf(&b, ",%.17g", st->coverage[k]);
        em_buf_printf(&b, "\n");
    }
    em_status s = write_one(dir, "sbc_summary.csv", &b, err);
    em_buf_free(&b);
    if (s != EM_OK) return s;

    em_buf_printf(&b, "replication,param,rank,L\n");
    for (size_t i = 0; i < r->R; i++) {
        if (r->failed[i]) continue;
        for (size_t j = 0; j < P; j++) {
            em_buf_printf(&b, "%zu,", i + 1);
            csv_name(&b, r->names[j]);
            em_buf_printf(&b, ",%ld,%zu\n", r->rank[i * P + j], r->L[i]);
        }
    }
    s = write_one(dir, "sbc_ranks.csv", &b, err);
    em_buf_free(&b);
    if (s != EM_OK) return s;

    em_buf_printf(&b, "param,n,chi2,df,chi2_p,ecdf_max_dev,ecdf_outside,flagged");
    for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++) {
        int pct = (int)(LEVELS[k] * 100 + 0.5);
        em_buf_printf(&b, ",cov%d,se%d", pct, pct);
    }
    em_buf_printf(&b, ",mean_z,mean_contraction\n");
    for (size_t j = 0; j < P; j++) {
        const em_sbc_param_stats *st = &r->stats[j];
        csv_name(&b, st->name);
        em_buf_printf(&b, ",%zu,%.17g,%zu,%.17g,%.17g,%d,%d", st->n, st->chi2, st->chi2_df, st->chi2_p,
                      st->ecdf_max_dev, st->ecdf_outside, st->flagged);
        for (size_t k = 0; k < EM_SBC_NUM_LEVELS; k++)
            em_buf_printf(&b, ",%.17g,%.17g", st->coverage[k], st->coverage_se[k]);
        em_buf_printf(&b, ",%.17g,%.17g\n", st->mean_z, st->mean_contraction);
    }
    s = write_one(dir, "sbc_details.csv", &b, err);
    em_buf_free(&b);
    if (s != EM_OK) return s;

    /* figure data: one block (gnuplot index) per parameter */
    em_buf_printf(&b, "# rank histograms: bin_lo bin_hi (normalised ranks) count expected lo99 hi99\n");
    for (size_t j = 0; j < P; j++) {
        em_buf_printf(&b, "# %s\n", r->names[j]);
        for (size_t bb = 0; bb < B; bb++) {
            double E = r->expected[bb], p = n ? E / (double)n : 0.0;
            em_buf_printf(&b, "%.6g %.6g %zu %.6g %zu %zu\n", (double)bb / (double)B, (double)(bb + 1) / (double)B,
                          r->hist[j * B + bb], E, binom_quantile(0.005, p, n), binom_quantile(0.995, p, n));
        }
        em_buf_printf(&b, "\n\n");
    }
    s = write_one(dir, "sbc_hist.dat", &b, err);
    em_buf_free(&b);
    if (s != EM_OK) return s;

    em_buf_printf(&b, "# ECDF difference: z ecdf-z band95_lo-z band95_hi-z\n");
    for (size_t j = 0; j < P; j++) {
        em_buf_printf(&b, "# %s\n0 0 0 0\n", r->names[j]);
        for (size_t k = 0; k < r->K; k++) {
            double z = r->grid[k];
            em_buf_printf(&b, "%.6g %.6g %.6g %.6g\n", z, r->ecdf[j * r->K + k] - z, r->band_lo[k] - z,
                          r->band_hi[k] - z);
        }
        em_buf_printf(&b, "1 0 0 0\n\n\n");
    }
    s = write_one(dir, "sbc_ecdf.dat", &b, err);
    em_buf_free(&b);
    if (s != EM_OK) return s;

    /* the script: a panel per parameter (the first 36) */
    size_t np = P < 36 ? P : 36, cols = (size_t)ceil(sqrt((double)np)), rows = (np + cols - 1) / cols;
    em_buf_printf(&b, "# sbc.gp: draw with `gnuplot sbc.gp` in this folder (written by em_sbc_write)\n");
    em_buf_printf(&b, "set terminal pngcairo size %zu,%zu font 'sans,9'\nset key off\n", 320 * cols, 260 * rows + 40);
    for (int fig = 0; fig < 2; fig++) {
        em_buf_printf(&b, "\nset output '%s'\nset multiplot layout %zu,%zu title ", fig ? "sbc_ecdf.png" : "sbc_hist.png",
                      rows, cols);
        em_buf title = {0};
        em_buf_printf(&title, "%s (%s, %zu replications, %zu draws)",
                      fig ? "ECDF(z) - z of the normalised ranks, simultaneous 95% band" : "SBC rank histograms, pointwise 99% band",
                      em_sbc_engine_name(r->cfg.engine), n, r->cfg.num_draws);
        gp_string(&b, title.failed ? "SBC" : title.data);
        em_buf_free(&title);
        em_buf_printf(&b, "\n");
        for (size_t j = 0; j < np; j++) {
            em_buf_printf(&b, "set title ");
            gp_string(&b, r->names[j]);
            if (fig == 0)
                em_buf_printf(&b, "\nset xrange [0:1]\nset yrange [0:*]\nset style fill solid 0.5\n"
                                  "plot 'sbc_hist.dat' index %zu using (($1+$2)/2):5:6 with filledcurves lc rgb '#c8c8c8', "
                                  "'' index %zu using (($1+$2)/2):3:($2-$1) with boxes lc rgb '#4060a0', "
                                  "'' index %zu using (($1+$2)/2):4 with lines lc rgb 'black'\n",
                              j, j, j);
            else
                em_buf_printf(&b, "\nset xrange [0:1]\nset yrange [*:*]\n"
                                  "plot 'sbc_ecdf.dat' index %zu using 1:3:4 with filledcurves lc rgb '#c8c8c8', "
                                  "'' index %zu using 1:2 with steps lw 1.5 lc rgb '#4060a0', 0 with lines lc rgb 'black'\n",
                              j, j);
        }
        em_buf_printf(&b, "unset multiplot\n");
    }
    s = write_one(dir, "sbc.gp", &b, err);
    em_buf_free(&b);
    return s;
}

/* Is prog an executable file in a directory of PATH? */
static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char buf[4096];
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0 && len + strlen(prog) + 2 < sizeof buf) {
            memcpy(buf, path, len);
            buf[len] = '/';
            strcpy(buf + len + 1, prog);
            if (access(buf, X_OK) == 0) return 1;
        }
        path += len;
        if (*path == ':') path++;
    }
    return 0;
}

em_status em_sbc_plot(const char *dir, int *drawn, em_error *err) {
    if (drawn) *drawn = 0;
    if (!dir || !dir[0]) return em_error_set(err, EM_ERR_ARG, "em_sbc_plot: no directory");
    if (!on_path("gnuplot")) return EM_OK;
    pid_t pid = fork();
    if (pid < 0) return em_error_set(err, EM_ERR_IO, "em_sbc_plot: fork failed: %s", strerror(errno));
    if (pid == 0) {
        /* the child only changes directory, redirects and execs */
        if (chdir(dir) != 0) _exit(126);
        int fd = open("gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("gnuplot", "gnuplot", "sbc.gp", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return em_error_set(err, EM_ERR_IO, "em_sbc_plot: waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return em_error_set(err, EM_ERR_IO, "em_sbc_plot: gnuplot failed on %s/sbc.gp (exit %d; see %s/gnuplot.log)",
                            dir, WIFEXITED(st) ? WEXITSTATUS(st) : -1, dir);
    if (drawn) *drawn = 1;
    return EM_OK;
}
