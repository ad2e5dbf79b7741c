/* posterior.c — one handle for posterior draws. See posterior.h.
 *
 * A posterior is a set of chains, each a row-major block of draws (warmup rows first) over one
 * list of columns: the method's own columns, then the parameters. Draws from NUTS stay where
 * the sampler put them (the em_mcmc_result is owned, not copied); guide draws and draws read
 * from files are held in blocks of the posterior's own. Everything a user asks for — a
 * column, a summary, predictions, the log-likelihood — is read from those blocks, so it does
 * not matter which engine made them.
 *
 * Prediction and log-likelihood substitute each draw's constrained latent values into the
 * model (predictive.c). The latent sites are matched to columns by name when a model is
 * attached, which is what lets draws read back from CmdStan files be used for prediction too.
 */
#include "internal/posterior_impl.h"
#include "ember/loo.h"
#include "ember/pathfinder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const method_names[EM_POSTERIOR_METHOD_COUNT] = {"nuts", "hmc", "variational", "laplace",
                                                                     "pathfinder"};

const char *em_posterior_method_name(em_posterior_method m) {
    return (unsigned)m < EM_POSTERIOR_METHOD_COUNT ? method_names[m] : "unknown";
}

/* ---- construction ---------------------------------------------------------------------------- */

em_posterior *em_posterior_alloc(size_t nchains, size_t ncols, size_t nmethod_cols, const char *const *names,
                                 em_error *err) {
    em_posterior *p = calloc(1, sizeof *p);
    if (p) {
        p->chains = calloc(nchains ? nchains : 1, sizeof *p->chains);
        p->names = calloc(ncols ? ncols : 1, sizeof *p->names);
    }
    if (!p || !p->chains || !p->names) goto nomem;
    p->nchains = nchains;
    p->ncols = ncols;
    p->nmethod_cols = nmethod_cols;
    p->psis_k = NAN;
    for (size_t j = 0; j < ncols; j++)
        if (!(p->names[j] = strdup(names[j]))) goto nomem;
    return p;
nomem:
    em_posterior_free(p);
    em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
    return NULL;
}

void em_posterior_free(em_posterior *p) {
    if (!p) return;
    if (p->names)
        for (size_t j = 0; j < p->ncols; j++) free(p->names[j]);
    free(p->names);
    if (p->chains && !p->mcmc)
        for (size_t c = 0; c < p->nchains; c++) {
            free(p->chains[c].rows);
            free(p->chains[c].theta);
            free(p->chains[c].inv_metric);
        }
    free(p->chains);
    em_mcmc_result_free(p->mcmc);
    em_logdensity_destroy(p->layout);
    free(p->latent_cols);
    free(p->latent_names);
    free(p->latent_lens);
    free(p->mean_row);
    free(p->model_name);
    free(p->data_file);
    free(p);
}

/* The rectangular draw count: the fewest sampling draws any chain kept. */
void em_posterior_finish(em_posterior *p) {
    size_t n = p->nchains ? (size_t)-1 : 0;
    for (size_t c = 0; c < p->nchains; c++)
        if (p->chains[c].ndraws < n) n = p->chains[c].ndraws;
    p->ndraws = n;
}

em_status em_posterior_from_mcmc(em_mcmc_result *res, em_model_fn model, const void *data, em_posterior **out,
                                 em_error *err) {
    if (!out) {
        em_mcmc_result_free(res);
        return em_error_set(err, EM_ERR_ARG, "em_posterior_from_mcmc: out is NULL");
    }
    *out = NULL;
    if (!res) return em_error_set(err, EM_ERR_ARG, "em_posterior_from_mcmc: no result");
    /* a chain interrupted before its first sampling draw has nothing to contribute */
    size_t kept = 0;
    for (size_t c = 0; c < res->num_chains; c++) kept += res->chains[c].num_draws > res->chains[c].num_warmup_draws;
    em_posterior *p = em_posterior_alloc(kept, res->num_columns, EM_MCMC_NUM_SAMPLER_COLS,
                                         (const char *const *)res->column_names, err);
    if (!p) {
        em_mcmc_result_free(res);
        return EM_ERR_NOMEM;
    }
    p->mcmc = res;
    p->method = res->config.algorithm == EM_MCMC_HMC ? EM_POSTERIOR_HMC : EM_POSTERIOR_NUTS;
    p->cfg = res->config;
    p->has_cfg = 1;
    p->seed = res->config.seed;
    p->dim = res->dim;
    p->metric_dim = res->metric_dim;
    p->dense_metric = res->dense_metric;
    p->wall_seconds = res->wall_seconds;
    p->interrupted = res->status == EM_ERR_INTERRUPTED;
    for (size_t c = 0, k = 0; c < res->num_chains; c++) {
        const em_mcmc_chain *ch = &res->chains[c];
        if (ch->num_draws == ch->num_warmup_draws) continue;
        em_posterior_chain *pc = &p->chains[k++];
        pc->id = (size_t)res->config.first_chain + c + 1;
        pc->nwarmup = ch->num_warmup_draws;
        pc->ndraws = ch->num_draws - ch->num_warmup_draws;
        pc->rows = ch->draws;
        pc->theta = ch->unconstrained;
        pc->stepsize = ch->stepsize;
        pc->inv_metric = ch->inv_metric;
        pc->warmup_seconds = ch->warmup_seconds;
        pc->sampling_seconds = ch->sampling_seconds;
        pc->warmup_done = ch->warmup_done;
    }
    em_posterior_finish(p);
    if (model) {
        em_status s = em_posterior_attach_model(p, model, data, err);
        if (s != EM_OK) {
            em_posterior_free(p);
            return s;
        }
    }
    *out = p;
    return EM_OK;
}

em_status em_posterior_attach_model(em_posterior *p, em_model_fn model, const void *data, em_error *err) {
    if (!p || !model) return em_error_set(err, EM_ERR_ARG, "em_posterior_attach_model: no posterior or no model");
    em_logdensity *ld = em_logdensity_from_model(model, data, NULL, err);
    if (!ld) return err ? err->status : EM_ERR_MODEL;
    size_t nl = em_logdensity_num_latents(ld), nvals = 0;
    for (size_t k = 0; k < nl; k++) nvals += em_logdensity_latent(ld, k)->len;
    size_t *cols = malloc((nvals ? nvals : 1) * sizeof *cols);
    const char **names = malloc((nl ? nl : 1) * sizeof *names);
    size_t *lens = malloc((nl ? nl : 1) * sizeof *lens);
    em_status s = cols && names && lens ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
    /* the first outputs of a model density are its latent sites' values, in site order */
    for (size_t i = 0; i < nvals && s == EM_OK; i++) {
        const char *nm = em_logdensity_output_name(ld, i);
        long j = -1;
        for (size_t c = p->nmethod_cols; c < p->ncols && j < 0; c++)
            if (strcmp(p->names[c], nm) == 0) j = (long)c;
        if (j < 0)
            s = em_error_set(err, EM_ERR_MODEL, "posterior: the model's latent value '%s' is not among its %zu parameters",
                             nm, p->ncols - p->nmethod_cols);
        else cols[i] = (size_t)j;
    }
    for (size_t k = 0; k < nl && s == EM_OK; k++) {
        names[k] = em_logdensity_latent(ld, k)->name; /* owned by ld, which the posterior keeps */
        lens[k] = em_logdensity_latent(ld, k)->len;
    }
    if (s != EM_OK) {
        free(cols);
        free(names);
        free(lens);
        em_logdensity_destroy(ld);
        return s;
    }
    em_logdensity_destroy(p->layout);
    free(p->latent_cols);
    free(p->latent_names);
    free(p->latent_lens);
    p->layout = ld;
    p->latent_cols = cols;
    p->latent_names = names;
    p->latent_lens = lens;
    p->nlatent = nl;
    p->nlatent_vals = nvals;
    p->model = model;
    p->data = data;
    return EM_OK;
}

static em_status replace_str(char **dst, const char *src, em_error *err) {
    char *c = src ? strdup(src) : NULL;
    if (src && !c) return em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
    free(*dst);
    *dst = c;
    return EM_OK;
}

em_status em_posterior_set_labels(em_posterior *p, const char *model_name, const char *data_file, em_error *err) {
    if (!p) return em_error_set(err, EM_ERR_ARG, "em_posterior_set_labels: no posterior");
    for (const char *s = model_name; s && *s; s++)
        if (*s == '\n' || *s == '\r') return em_error_set(err, EM_ERR_ARG, "em_posterior_set_labels: a line break in the model name");
    for (const char *s = data_file; s && *s; s++)
        if (*s == '\n' || *s == '\r') return em_error_set(err, EM_ERR_ARG, "em_posterior_set_labels: a line break in the data file");
    em_status s = replace_str(&p->model_name, model_name, err);
    if (s == EM_OK) s = replace_str(&p->data_file, data_file, err);
    return s;
}

em_status em_posterior_set_svi_run(em_posterior *p, size_t steps, double learning_rate, int converged, em_error *err) {
    if (!p || has_chains(p))
        return em_error_set(err, EM_ERR_ARG, "em_posterior_set_svi_run: not a posterior of a guide's draws");
    if (!(learning_rate >= 0 && isfinite(learning_rate)))
        return em_error_set(err, EM_ERR_ARG, "em_posterior_set_svi_run: learning_rate = %g", learning_rate);
    p->svi_steps = steps;
    p->learning_rate = learning_rate;
    p->svi_converged = converged != 0;
    return EM_OK;
}

/* log of the Gaussian density N(θ | loc, L Lᵀ), L lower triangular (row-major). */
static double gaussian_log_density(const double *theta, const double *loc, const double *L, size_t K, double *z) {
    double lp = -0.91893853320467274178 * (double)K; /* log √(2π) per coordinate */
    for (size_t i = 0; i < K; i++) {
        double r = theta[i] - loc[i];
        for (size_t j = 0; j < i; j++) r -= L[i * K + j] * z[j];
        z[i] = r / L[i * K + i];
        lp -= 0.5 * z[i] * z[i] + log(fabs(L[i * K + i]));
    }
    return lp;
}

/* The log importance ratios log_p__ − log_g__ of independent draws (S values, malloc'd). A
 * draw outside the model's support (log_p__ = −inf) has weight 0: it is given a ratio 800
 * below the smallest finite one, which exp turns into an exact 0 beside it. NULL when a
 * ratio is NaN or none is finite. */
static double *log_ratios(const em_posterior *p, em_error *err) {
    size_t S = p->ndraws;
    double *r = malloc(S * sizeof *r), lo = INFINITY;
    if (!r) {
        em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
        return NULL;
    }
    for (size_t d = 0; d < S; d++) {
        const double *row = p->chains[0].rows + d * p->ncols;
        r[d] = row[1] - row[2];
        if (isnan(r[d]) || r[d] == INFINITY) {
            free(r);
            em_error_set(err, EM_ERR_NONFINITE, "posterior: draw %zu has log_p__ %g and log_g__ %g", d + 1, row[1], row[2]);
            return NULL;
        }
        if (isfinite(r[d]) && r[d] < lo) lo = r[d];
    }
    if (!isfinite(lo)) {
        free(r);
        em_error_set(err, EM_ERR_NONFINITE, "posterior: no draw is inside the model's support");
        return NULL;
    }
    for (size_t d = 0; d < S; d++)
        if (!isfinite(r[d])) r[d] = lo - 800.0;
    return r;
}

/* k̂ of the guide's draws (Yao et al. 2018); NaN when there are too few for PSIS's tail. */
static em_status guide_psis_k(em_posterior *p, em_error *err) {
    if (p->ndraws <= 20) return EM_OK;
    em_error e = {0};
    double *r = log_ratios(p, &e);
    if (!r) {
        if (e.status == EM_ERR_NOMEM) return em_error_set(err, EM_ERR_NOMEM, "%s", e.msg);
        p->psis_k = INFINITY; /* no usable ratio: the guide misses the posterior entirely */
        return EM_OK;
    }
    em_psis_diag dg;
    em_status s = em_psis(r, p->ndraws, 1.0, r, &dg, err);
    if (s == EM_OK) p->psis_k = dg.pareto_k;
    free(r);
    return s;
}

/* A posterior of S independent draws over ld's outputs, with the columns lp__, log_p__ and
 * log_g__ first, its rows, unconstrained draws and mean row allocated (not filled). */
static em_posterior *independent_posterior(em_logdensity *ld, size_t S, em_error *err) {
    size_t K = em_logdensity_dim(ld), nout = em_logdensity_num_outputs(ld), ncols = 3 + nout;
    if (S > ((size_t)-1 / sizeof(double)) / (ncols + K)) {
        em_error_set(err, EM_ERR_ARG, "posterior: %zu draws of %zu values do not fit in memory", S, ncols + K);
        return NULL;
    }
    const char **names = malloc(ncols * sizeof *names);
    if (!names) {
        em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
        return NULL;
    }
    names[0] = "lp__";
    names[1] = "log_p__";
    names[2] = "log_g__";
    for (size_t j = 0; j < nout; j++) names[3 + j] = em_logdensity_output_name(ld, j);
    em_posterior *p = em_posterior_alloc(1, ncols, 3, names, err);
    free(names);
    if (!p) return NULL;
    p->dim = K;
    em_posterior_chain *pc = &p->chains[0];
    pc->id = 1;
    pc->ndraws = S;
    pc->rows = malloc(S * ncols * sizeof(double));
    pc->theta = malloc(S * (K ? K : 1) * sizeof(double));
    p->mean_row = calloc(ncols, sizeof(double));
    if (!pc->rows || !pc->theta || !p->mean_row) {
        em_posterior_free(p);
        em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
        return NULL;
    }
    return p;
}

em_status em_posterior_from_guide(em_autoguide *g, const em_param_store *params, size_t ndraws, uint64_t seed,
                                  em_model_fn model, const void *data, em_posterior **out, em_error *err) {
    if (!g) {
        if (out) *out = NULL;
        return em_error_set(err, EM_ERR_ARG, "em_posterior_from_guide: no guide");
    }
    return em_posterior_from_guide_density(g, params, ndraws, seed, em_autoguide_logdensity(g), model, data, out,
                                           err);
}

em_status em_posterior_from_guide_density(em_autoguide *g, const em_param_store *params, size_t ndraws,
                                          uint64_t seed, em_logdensity *ld, em_model_fn model, const void *data,
                                          em_posterior **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_from_guide: out is NULL");
    *out = NULL;
    if (!g || !ld) return em_error_set(err, EM_ERR_ARG, "em_posterior_from_guide: no guide");
    if (ndraws < 2) return em_error_set(err, EM_ERR_ARG, "em_posterior_from_guide: ndraws = %zu; need at least 2", ndraws);
    size_t K = em_autoguide_dim(g), nout = em_autoguide_num_outputs(g);
    size_t ncols = 3 + nout;
    em_posterior *p = independent_posterior(ld, ndraws, err);
    if (!p) return err ? err->status : EM_ERR_NOMEM;
    em_autoguide_kind kind = em_autoguide_kind_of(g);
    p->method = kind == EM_AUTO_LAPLACE ? EM_POSTERIOR_LAPLACE : EM_POSTERIOR_VARIATIONAL;
    p->guide_kind = kind;
    p->seed = seed;
    em_posterior_chain *pc = &p->chains[0];
    double *outs = malloc(ndraws * (nout ? nout : 1) * sizeof(double));
    double *loc = malloc(K * sizeof *loc), *L = malloc(K * K * sizeof *L), *z = malloc(K * sizeof *z);
    em_rng *rng = em_rng_create(seed, 0x9057);
    em_status s = outs && loc && L && z && rng
                      ? EM_OK
                      : em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
    if (s == EM_OK) s = em_autoguide_sample(g, params, rng, ndraws, pc->theta, outs, err);
    if (s == EM_OK) s = em_autoguide_gaussian(g, params, loc, L, err);
    int gaussian = 1;
    for (size_t i = 0; i < K && s == EM_OK; i++) gaussian &= L[i * K + i] != 0.0;
    if (s == EM_OK) s = em_logdensity_constrain(ld, loc, p->mean_row + 3, err); /* CmdStan's "mean" row */
    for (size_t d = 0; d < ndraws && s == EM_OK; d++) {
        double *row = pc->rows + d * ncols;
        em_error e = {0};
        double lp;
        /* log_p__: the model's log density with the Jacobian, as CmdStan's variational output */
        if (em_logdensity_eval(ld, pc->theta + d * K, &lp, NULL, &e) != EM_OK) lp = -INFINITY;
        row[0] = 0.0;
        row[1] = lp;
        row[2] = gaussian ? gaussian_log_density(pc->theta + d * K, loc, L, K, z) : NAN;
        memcpy(row + 3, outs + d * nout, nout * sizeof(double));
    }
    free(outs);
    free(loc);
    free(L);
    free(z);
    em_rng_destroy(rng);
    em_posterior_finish(p);
    if (s == EM_OK && gaussian) s = guide_psis_k(p, err);
    if (s == EM_OK && model) s = em_posterior_attach_model(p, model, data, err);
    if (s != EM_OK) {
        em_posterior_free(p);
        return s;
    }
    *out = p;
    return EM_OK;
}

/* ---- the one-call fits ---------------------------------------------------------------------- */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

em_status em_fit_nuts(em_model_fn model, const void *data, const em_mcmc_config *cfg, em_posterior **out,
                      em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_fit_nuts: out is NULL");
    *out = NULL;
    em_mcmc_config c = cfg ? *cfg : em_mcmc_config_default();
    em_logdensity *ld = em_logdensity_from_model(model, data, NULL, err);
    if (!ld) return err ? err->status : EM_ERR_MODEL;
    em_mcmc_result *res = NULL;
    em_status s = em_mcmc_run(ld, &c, &res, err);
    em_logdensity_destroy(ld);
    if (s != EM_OK && s != EM_ERR_INTERRUPTED) return s;
    em_error e2 = {0};
    em_status s2 = em_posterior_from_mcmc(res, model, data, out, &e2);
    if (s2 != EM_OK) return em_error_set(err, s2, "%s", e2.msg);
    return s;
}

em_svi_fit_config em_svi_fit_config_default(void) {
    em_svi_fit_config c;
    memset(&c, 0, sizeof c);
    c.guide = EM_AUTO_DIAGONAL_NORMAL;
    c.elbo = EM_ELBO_TRACE;
    c.num_steps = 10000;
    c.learning_rate = 0.01;
    c.num_particles = 1;
    c.num_draws = 1000;
    c.seed = 20260101;
    c.stop = EM_SVI_STOP_TREND;
    c.window = 100;
    c.average = 1;
    c.laplace_init = 1;
    c.elbo_particles = 1000;
    return c;
}

/* The Laplace approximation's start for an SVI guide: the mode's constrained values (for
 * EM_INIT_VALUES) and the marginal sds on the unconstrained space. EM_OK with *ok 0 when
 * the Laplace fit fails, which is a reason to start elsewhere, not to fail. */
static em_status laplace_start(em_model_fn model, const void *data, uint64_t seed, size_t K, size_t nout,
                               double *values, double *sds, int *ok, em_error *err) {
    *ok = 0;
    em_autoguide_options go;
    memset(&go, 0, sizeof go);
    go.seed = seed;
    em_error e = {0};
    em_autoguide *lap = em_autoguide_create(EM_AUTO_LAPLACE, model, data, &go, &e);
    if (!lap) return e.status == EM_ERR_NOMEM ? em_error_set(err, EM_ERR_NOMEM, "%s", e.msg) : EM_OK;
    double *L = malloc(K * K * sizeof *L);
    em_status s = L ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "em_fit_svi: out of memory");
    if (s == EM_OK && em_autoguide_num_outputs(lap) == nout && em_autoguide_median(lap, NULL, values, &e) == EM_OK &&
        em_autoguide_gaussian(lap, NULL, NULL, L, &e) == EM_OK) {
        *ok = 1;
        for (size_t i = 0; i < K; i++) {
            double v = 0.0;
            for (size_t k = 0; k <= i; k++) v += L[i * K + k] * L[i * K + k];
            sds[i] = sqrt(v);
            *ok &= sds[i] > 0 && isfinite(sds[i]);
        }
    }
    free(L);
    em_autoguide_destroy(lap);
    return s;
}

/* The same from a one-path Pathfinder (Zhang et al. 2022), for a posterior whose mode or
 * Hessian the Laplace fit cannot use: the mean and sds of its draws. */
static em_status pathfinder_start(em_model_fn model, const void *data, uint64_t seed, size_t K, double *values,
                                  double *sds, int *ok, em_error *err) {
    *ok = 0;
    em_error e = {0};
    em_logdensity *ld = em_logdensity_from_model(model, data, NULL, &e);
    if (!ld) return e.status == EM_ERR_NOMEM ? em_error_set(err, EM_ERR_NOMEM, "%s", e.msg) : EM_OK;
    em_pathfinder_config pc = em_pathfinder_config_default();
    pc.num_paths = 1;
    pc.num_draws = 200;
    pc.seed = seed;
    em_pathfinder_result *r = NULL;
    double *mean = malloc(K * sizeof *mean);
    em_status s = mean ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "em_fit_svi: out of memory");
    if (s == EM_OK && em_pathfinder_run(ld, &pc, &r, &e) == EM_OK && em_logdensity_dim(ld) == K) {
        for (size_t i = 0; i < K; i++) {
            double m = 0.0;
            for (size_t d = 0; d < r->num_draws; d++) m += r->theta[d * K + i] / (double)r->num_draws;
            mean[i] = m;
        }
        double *first = malloc(K * sizeof *first);
        if (!first) s = em_error_set(err, EM_ERR_NOMEM, "em_fit_svi: out of memory");
        else if (em_pathfinder_mcmc_init(r, 1, first, sds, &e) == EM_OK &&
                 em_logdensity_constrain(ld, mean, values, &e) == EM_OK) {
            *ok = 1;
            for (size_t i = 0; i < K; i++) sds[i] = sqrt(sds[i]);
        }
        free(first);
    }
    free(mean);
    em_pathfinder_result_free(r);
    em_logdensity_destroy(ld);
    return s;
}

/* Optimise each location parameter of the guide in units of sds (the joint "auto_loc", or
 * AutoNormal's per-site "auto_<site>_loc" slices). Scales are exp of their parameter, so a
 * unit step there is already relative. */
static em_status set_loc_units(em_svi *svi, em_autoguide *g, em_autoguide_kind kind, const double *sds, em_error *err) {
    if (kind != EM_AUTO_NORMAL) return em_svi_set_units(svi, "auto_loc", sds, em_autoguide_dim(g), err);
    em_logdensity *ld = em_autoguide_logdensity(g);
    em_status s = EM_OK;
    for (size_t k = 0; k < em_logdensity_num_latents(ld) && s == EM_OK; k++) {
        const em_latent_info *li = em_logdensity_latent(ld, k);
        char name[512];
        snprintf(name, sizeof name, "auto_%s_loc", li->name);
        s = em_svi_set_units(svi, name, sds + li->offset, li->free_len, err);
    }
    return s;
}

em_status em_fit_svi(em_model_fn model, const void *data, const em_svi_fit_config *cfg, em_posterior **out,
                     em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_fit_svi: out is NULL");
    *out = NULL;
    em_svi_fit_config c = cfg ? *cfg : em_svi_fit_config_default();
    if ((unsigned)c.guide >= EM_AUTO_KIND_COUNT || c.guide == EM_AUTO_LAPLACE)
        return em_error_set(err, EM_ERR_ARG, "em_fit_svi: guide %d is not an SVI autoguide (use em_fit_laplace for Laplace)",
                            (int)c.guide);
    if (c.num_steps == 0 || !(c.learning_rate > 0 && isfinite(c.learning_rate)) || c.num_particles < 1)
        return em_error_set(err, EM_ERR_ARG, "em_fit_svi: num_steps = %zu, learning_rate = %g, num_particles = %d; "
                                             "each must be positive", c.num_steps, c.learning_rate, c.num_particles);
    double t0 = wall_now();
    em_autoguide_options go;
    memset(&go, 0, sizeof go);
    go.seed = c.seed;
    /* discovery first: the guide's dimension sizes the Laplace start */
    em_autoguide *g = em_autoguide_create(c.guide, model, data, &go, err);
    if (!g) return err ? err->status : EM_ERR_MODEL;
    size_t K = em_autoguide_dim(g), nout = em_autoguide_num_outputs(g);
    double *values = malloc((nout ? nout : 1) * sizeof *values), *sds = malloc((K ? K : 1) * sizeof *sds);
    em_status s = values && sds ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "em_fit_svi: out of memory");
    int lap_ok = 0, pf_ok = 0;
    if (s == EM_OK && c.laplace_init && K > 0) s = laplace_start(model, data, c.seed, K, nout, values, sds, &lap_ok, err);
    if (s == EM_OK && c.laplace_init && K > 0 && !lap_ok) s = pathfinder_start(model, data, c.seed, K, values, sds, &pf_ok, err);
    if (s == EM_OK && (lap_ok || pf_ok)) {
        em_autoguide_destroy(g);
        go.init = EM_INIT_VALUES;
        go.init_values = values;
        go.init_scales = sds;
        g = em_autoguide_create(c.guide, model, data, &go, err);
        if (!g) s = err ? err->status : EM_ERR_MODEL;
    }
    em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, c.learning_rate);
    em_svi_options so;
    memset(&so, 0, sizeof so);
    so.elbo = c.elbo;
    so.num_particles = c.num_particles;
    so.seed = c.seed;
    so.rel_tol = 1e-4;
    so.window = c.window;
    so.stop = c.stop;
    so.average = c.average;
    em_svi *svi = NULL;
    if (s == EM_OK) {
        svi = em_svi_create(model, data, em_autoguide_fn, g, &oc, &so, err);
        if (!svi) s = err ? err->status : EM_ERR_MODEL;
    }
    if (s == EM_OK && (lap_ok || pf_ok) && c.guide != EM_AUTO_DELTA) s = set_loc_units(svi, g, c.guide, sds, err);
    size_t steps = 0;
    em_svi_fit_info info;
    memset(&info, 0, sizeof info);
    info.laplace_init = lap_ok;
    info.pathfinder_init = pf_ok;
    if (s == EM_OK) s = em_svi_run(svi, c.num_steps, &steps, err);
    if (s == EM_OK) s = em_svi_result_get(svi, c.elbo_particles, &info.run, err);
    if (s == EM_OK) s = em_posterior_from_guide(g, em_svi_params(svi), c.num_draws, c.seed, model, data, out, err);
    if (s == EM_OK) s = em_posterior_set_svi_run(*out, steps, c.learning_rate, em_svi_converged(svi), err);
    if (s == EM_OK) {
        (*out)->has_svi_info = 1;
        (*out)->svi_info = info;
    }
    if (s == EM_OK && c.resample) {
        em_posterior *r = NULL;
        s = em_posterior_resample(*out, c.num_draws, em_seed_mix(c.seed, 3), &r, err);
        em_posterior_free(*out);
        *out = r;
    }
    if (s == EM_OK) (*out)->wall_seconds = wall_now() - t0;
    if (s != EM_OK) {
        em_posterior_free(*out);
        *out = NULL;
    }
    free(values);
    free(sds);
    em_svi_destroy(svi);
    em_autoguide_destroy(g);
    return s;
}

em_status em_fit_laplace(em_model_fn model, const void *data, size_t ndraws, uint64_t seed, em_posterior **out,
                         em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_fit_laplace: out is NULL");
    *out = NULL;
    double t0 = wall_now();
    em_autoguide_options go;
    memset(&go, 0, sizeof go);
    go.seed = seed;
    em_autoguide *g = em_autoguide_create(EM_AUTO_LAPLACE, model, data, &go, err);
    if (!g) return err ? err->status : EM_ERR_MODEL;
    em_status s = em_posterior_from_guide(g, NULL, ndraws, seed, model, data, out, err);
    if (s == EM_OK) (*out)->wall_seconds = wall_now() - t0;
    em_autoguide_destroy(g);
    return s;
}

em_status em_fit_pathfinder(em_model_fn model, const void *data, const em_pathfinder_config *cfg, em_posterior **out,
                            em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_fit_pathfinder: out is NULL");
    *out = NULL;
    em_pathfinder_config c = cfg ? *cfg : em_pathfinder_config_default();
    double t0 = wall_now();
    em_logdensity *ld = em_logdensity_from_model(model, data, NULL, err);
    if (!ld) return err ? err->status : EM_ERR_MODEL;
    em_pathfinder_result *r = NULL;
    em_status s = em_pathfinder_run(ld, &c, &r, err);
    em_posterior *p = s == EM_OK ? independent_posterior(ld, r->num_draws, err) : NULL;
    if (s == EM_OK && !p) s = err ? err->status : EM_ERR_NOMEM;
    size_t K = em_logdensity_dim(ld);
    for (size_t d = 0; s == EM_OK && d < r->num_draws; d++) {
        double *row = p->chains[0].rows + d * p->ncols;
        row[0] = 0.0;
        row[1] = r->log_p[d];
        row[2] = r->log_q[d];
        memcpy(p->chains[0].theta + d * K, r->theta + d * K, K * sizeof(double));
        s = em_logdensity_constrain(ld, r->theta + d * K, row + 3, err);
    }
    if (s == EM_OK) {
        p->method = EM_POSTERIOR_PATHFINDER;
        p->seed = c.seed;
        em_posterior_finish(p);
        s = guide_psis_k(p, err);
    }
    /* CmdStan's mean row of a variational file: here the mean of the draws, constrained */
    for (size_t j = 3; s == EM_OK && j < p->ncols; j++) {
        double m = 0.0;
        for (size_t d = 0; d < p->ndraws; d++) m += (p->chains[0].rows[d * p->ncols + j] - m) / (double)(d + 1);
        p->mean_row[j] = m;
    }
    if (s == EM_OK) s = em_posterior_attach_model(p, model, data, err);
    if (s == EM_OK && c.psis_resample) {
        em_posterior *q = NULL;
        s = em_posterior_resample(p, c.num_draws, em_seed_mix(c.seed, 3), &q, err);
        em_posterior_free(p);
        p = q;
    }
    em_pathfinder_result_free(r);
    em_logdensity_destroy(ld);
    if (s != EM_OK) {
        em_posterior_free(p);
        return s;
    }
    p->wall_seconds = wall_now() - t0;
    *out = p;
    return EM_OK;
}

/* ---- whether variational draws can be trusted ---------------------------------------------------- */

em_status em_posterior_svi_info(const em_posterior *p, em_svi_fit_info *info, em_error *err) {
    if (!p || !info) return em_error_set(err, EM_ERR_ARG, "em_posterior_svi_info: no posterior or no output");
    if (!p->has_svi_info) return em_error_set(err, EM_ERR_ARG, "em_posterior_svi_info: the posterior was not made by em_fit_svi");
    *info = p->svi_info;
    return EM_OK;
}

double em_posterior_psis_k(const em_posterior *p) { return p ? p->psis_k : NAN; }

int em_posterior_psis_ok(const em_posterior *p) {
    return p && p->psis_k < em_psis_k_threshold(p->ndraws);
}

em_status em_posterior_resample(const em_posterior *p, size_t ndraws, uint64_t seed, em_posterior **out,
                                em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_resample: out is NULL");
    *out = NULL;
    if (!p || has_chains(p) || p->nmethod_cols < 3 || p->resampled)
        return em_error_set(err, EM_ERR_ARG, "em_posterior_resample: not a posterior of a guide's independent draws");
    if (ndraws < 2 || p->ndraws <= 20)
        return em_error_set(err, EM_ERR_ARG, "em_posterior_resample: %zu draws from %zu; need at least 2 from more than 20",
                            ndraws, p->ndraws);
    double *w = log_ratios(p, err);
    if (!w) return err ? err->status : EM_ERR_NONFINITE;
    size_t S = p->ndraws, nc = p->ncols, K = p->dim;
    em_status s = em_psis(w, S, 1.0, w, NULL, err);
    em_posterior *q = s == EM_OK ? em_posterior_alloc(1, nc, p->nmethod_cols, (const char *const *)p->names, err) : NULL;
    if (s == EM_OK && !q) s = EM_ERR_NOMEM;
    em_rng *rng = NULL;
    if (s == EM_OK) {
        q->method = p->method;
        q->guide_kind = p->guide_kind;
        q->seed = seed;
        q->dim = K;
        q->svi_steps = p->svi_steps;
        q->svi_converged = p->svi_converged;
        q->learning_rate = p->learning_rate;
        q->has_svi_info = p->has_svi_info;
        q->svi_info = p->svi_info;
        q->psis_k = p->psis_k;
        q->resampled = 1;
        q->wall_seconds = p->wall_seconds;
        q->chains[0].id = 1;
        q->chains[0].ndraws = ndraws;
        q->chains[0].rows = malloc(ndraws * nc * sizeof(double));
        q->chains[0].theta = p->chains[0].theta ? malloc(ndraws * (K ? K : 1) * sizeof(double)) : NULL;
        q->mean_row = p->mean_row ? malloc(nc * sizeof(double)) : NULL;
        rng = em_rng_create(seed, 0x5e5a);
        if (!q->chains[0].rows || (p->chains[0].theta && !q->chains[0].theta) || (p->mean_row && !q->mean_row) || !rng)
            s = em_error_set(err, EM_ERR_NOMEM, "em_posterior_resample: out of memory");
    }
    if (s == EM_OK) {
        if (q->mean_row) memcpy(q->mean_row, p->mean_row, nc * sizeof(double));
        /* cumulative weights in place, then a binary search per draw */
        double acc = 0.0;
        for (size_t d = 0; d < S; d++) w[d] = (acc += exp(w[d]));
        for (size_t i = 0; i < ndraws; i++) {
            double u = em_rng_uniform(rng) * acc;
            size_t lo = 0, hi = S - 1;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (w[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            memcpy(q->chains[0].rows + i * nc, p->chains[0].rows + lo * nc, nc * sizeof(double));
            if (q->chains[0].theta) memcpy(q->chains[0].theta + i * K, p->chains[0].theta + lo * K, K * sizeof(double));
        }
        em_posterior_finish(q);
        if (p->model) s = em_posterior_attach_model(q, p->model, p->data, err);
    }
    em_rng_destroy(rng);
    free(w);
    if (s != EM_OK) {
        em_posterior_free(q);
        return s;
    }
    *out = q;
    return EM_OK;
}

/* ---- what it holds ---------------------------------------------------------------------------- */

em_posterior_method em_posterior_method_of(const em_posterior *p) { return p ? p->method : EM_POSTERIOR_METHOD_COUNT; }
size_t em_posterior_num_chains(const em_posterior *p) { return p ? p->nchains : 0; }
size_t em_posterior_num_draws(const em_posterior *p) { return p ? p->ndraws : 0; }
size_t em_posterior_num_params(const em_posterior *p) { return p ? p->ncols - p->nmethod_cols : 0; }
const char *em_posterior_param_name(const em_posterior *p, size_t i) {
    return p && i < p->ncols - p->nmethod_cols ? p->names[p->nmethod_cols + i] : NULL;
}
const char *const *em_posterior_param_names(const em_posterior *p) {
    return p ? (const char *const *)p->names + p->nmethod_cols : NULL;
}
size_t em_posterior_num_columns(const em_posterior *p) { return p ? p->ncols : 0; }
const char *const *em_posterior_column_names(const em_posterior *p) { return p ? (const char *const *)p->names : NULL; }
double em_posterior_wall_seconds(const em_posterior *p) { return p ? p->wall_seconds : 0.0; }
const em_mcmc_result *em_posterior_mcmc(const em_posterior *p) { return p ? p->mcmc : NULL; }

size_t em_posterior_num_divergent(const em_posterior *p) {
    if (!p || !has_chains(p)) return 0;
    size_t n = 0;
    for (size_t c = 0; c < p->nchains; c++) {
        const em_posterior_chain *pc = &p->chains[c];
        for (size_t i = 0; i < pc->ndraws; i++) n += pc->rows[(pc->nwarmup + i) * p->ncols + EM_MCMC_COL_DIVERGENT] != 0;
    }
    return n;
}

/* Levenshtein distance, for "did you mean" (names are short). */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return la > lb ? la : lb;
    size_t row[256];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            if (up + 1 < best) best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

em_status em_posterior_nearest_names(const char *const *names, size_t n, const char *name, em_buf *out) {
    size_t best[3] = {0, 0, 0}, dist[3] = {(size_t)-1, (size_t)-1, (size_t)-1};
    for (size_t j = 0; j < n; j++) {
        size_t d = edit_distance(name, names[j]);
        for (int k = 0; k < 3; k++)
            if (d < dist[k]) {
                for (int m = 2; m > k; m--) {
                    dist[m] = dist[m - 1];
                    best[m] = best[m - 1];
                }
                dist[k] = d;
                best[k] = j;
                break;
            }
    }
    for (int k = 0; k < 3 && dist[k] != (size_t)-1; k++) em_buf_printf(out, "%s'%s'", k ? ", " : "", names[best[k]]);
    return out->failed ? EM_ERR_NOMEM : EM_OK;
}

long em_posterior_find(const em_posterior *p, const char *name, em_error *err) {
    if (!p || !name) {
        em_error_set(err, EM_ERR_ARG, "em_posterior_find: no posterior or no name");
        return -1;
    }
    for (size_t j = 0; j < p->ncols; j++)
        if (strcmp(p->names[j], name) == 0) return (long)j;
    em_buf b = {0};
    em_posterior_nearest_names((const char *const *)p->names, p->ncols, name, &b);
    em_error_set(err, EM_ERR_ARG, "posterior: no parameter '%.100s'; the nearest are %s", name,
                 b.data && !b.failed ? b.data : "(none)");
    em_buf_free(&b);
    return -1;
}

em_status em_posterior_column(const em_posterior *p, size_t j, double *out, em_error *err) {
    if (!p || !out) return em_error_set(err, EM_ERR_ARG, "em_posterior_column: no posterior or no output");
    if (j >= p->ncols)
        return em_error_set(err, EM_ERR_INDEX, "em_posterior_column: column %zu is out of range (%zu columns)", j,
                            p->ncols);
    for (size_t c = 0; c < p->nchains; c++) {
        const em_posterior_chain *pc = &p->chains[c];
        for (size_t i = 0; i < p->ndraws; i++) out[c * p->ndraws + i] = pc->rows[(pc->nwarmup + i) * p->ncols + j];
    }
    return EM_OK;
}

em_status em_posterior_draws(const em_posterior *p, const char *name, double *out, em_error *err) {
    long j = em_posterior_find(p, name, err);
    if (j < 0) return EM_ERR_ARG;
    return em_posterior_column(p, (size_t)j, out, err);
}

/* ---- summaries ----------------------------------------------------------------------------- */

em_status em_posterior_summary(const em_posterior *p, em_summary **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_summary: out is NULL");
    *out = NULL;
    if (!p) return em_error_set(err, EM_ERR_ARG, "em_posterior_summary: no posterior");
    if (p->ndraws == 0)
        return em_error_set(err, EM_ERR_ARG, "posterior: no draws to summarise (%s)",
                            p->interrupted ? "the run was interrupted before sampling" : "empty");
    size_t np = p->ncols - p->nmethod_cols, S = p->nchains * p->ndraws;
    double *x = malloc((np ? np : 1) * S * sizeof *x);
    if (!x) return em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory for the summary");
    for (size_t k = 0; k < np; k++) em_posterior_column(p, p->nmethod_cols + k, x + k * S, NULL);
    em_status s = has_chains(p)
                      ? em_summarize(x, p->nchains, p->ndraws, np, em_posterior_param_names(p), EM_LAYOUT_PARAM_CHAIN_DRAW,
                                     out, err)
                      : em_summarize_independent(x, S, np, em_posterior_param_names(p), EM_LAYOUT_PARAM_CHAIN_DRAW, out, err);
    free(x);
    return s;
}

/* CmdStan's diagnose, in words: each problem found, or that none was. */
static int print_checks(const em_posterior *p, const em_summary *s, FILE *f) {
    int ok = 1, problems = 0;
    size_t S = p->nchains * p->ndraws;
    if (has_chains(p) && S) {
        size_t div = 0, depth = 0;
        int maxd = p->has_cfg ? p->cfg.max_treedepth : 10;
        double *e = malloc(p->ndraws * sizeof *e);
        for (size_t c = 0; c < p->nchains; c++) {
            const em_posterior_chain *pc = &p->chains[c];
            for (size_t i = 0; i < p->ndraws; i++) {
                const double *row = pc->rows + (pc->nwarmup + i) * p->ncols;
                div += row[EM_MCMC_COL_DIVERGENT] != 0;
                depth += p->method == EM_POSTERIOR_NUTS && row[EM_MCMC_COL_TREEDEPTH] >= maxd;
                if (e) e[i] = row[EM_MCMC_COL_ENERGY];
            }
            double bfmi = e ? em_ebfmi(e, p->ndraws) : NAN;
            if (bfmi < 0.3) {
                ok = ok && fprintf(f, "Warning: chain %zu has E-BFMI %.3f (below 0.3): the posterior may not be fully "
                                      "explored; try reparameterising the model\n", c + 1, bfmi) >= 0;
                problems++;
            }
        }
        free(e);
        if (div) {
            ok = ok && fprintf(f, "Warning: %zu of %zu transitions (%.1f%%) ended with a divergence; raise adapt delta "
                                  "(target_accept) or reparameterise the model\n", div, S, 100.0 * (double)div / (double)S) >= 0;
            problems++;
        }
        if (depth) {
            ok = ok && fprintf(f, "Warning: %zu of %zu transitions hit the maximum tree depth of %d\n", depth, S, maxd) >= 0;
            problems++;
        }
        for (size_t k = 0; k < s->nparams; k++) {
            const em_param_summary *ps = &s->params[k];
            if (ps->rhat > 1.01) {
                ok = ok && fprintf(f, "Warning: %s has R-hat %.3f (above 1.01): the chains have not mixed\n", ps->name,
                                   ps->rhat) >= 0;
                problems++;
            }
            double low = 100.0 * (double)p->nchains;
            if (ps->ess_bulk < low || ps->ess_tail < low) {
                ok = ok && fprintf(f, "Warning: %s has bulk ESS %.0f and tail ESS %.0f (below %.0f, 100 per chain)\n",
                                   ps->name, ps->ess_bulk, ps->ess_tail, low) >= 0;
                problems++;
            }
        }
        if (!problems) ok = ok && fprintf(f, "Checks: no divergences, no tree-depth hits, E-BFMI, R-hat and ESS fine\n") >= 0;
    }
    return ok;
}

/* Whether independent draws can be trusted: the SVI run's own verdict, then k̂. */
static int print_verdict(const em_posterior *p, FILE *f) {
    int ok = 1;
    if (p->has_svi_info) {
        const em_svi_result *r = &p->svi_info.run;
        if (r->converged)
            ok = fprintf(f, "SVI: converged at step %zu (last window: loss fell %.3g, se %.3g)", r->steps,
                         r->window_decrease, r->window_decrease_se) >= 0;
        else
            ok = fprintf(f, "Warning: SVI did not converge in %zu steps (last window: loss fell %.3g, se %.3g, relative "
                            "change %.3g); run longer or raise the learning rate", r->steps, r->window_decrease,
                         r->window_decrease_se, r->rel_change) >= 0;
        ok = ok && fprintf(f, "; ELBO %.6g (MCSE %.2g, %zu particles)%s\n", r->elbo, r->elbo_se, r->elbo_particles,
                           p->svi_info.laplace_init      ? "; started at the Laplace approximation"
                           : p->svi_info.pathfinder_init ? "; started at Pathfinder's approximation"
                                                         : "") >= 0;
    }
    if (isnan(p->psis_k)) return ok;
    double thr = em_psis_k_threshold(p->ndraws);
    if (p->psis_k < thr)
        ok = ok && fprintf(f, "Pareto k-hat %.2f (below %.2f): the approximation is usable, best with PSIS-corrected "
                              "expectations (importance resampling)\n", p->psis_k, thr) >= 0;
    else
        ok = ok && fprintf(f, "Warning: Pareto k-hat %.2f (above %.2f): the approximation is far from the posterior; "
                              "its draws and their summaries are not to be trusted (Yao et al. 2018)\n", p->psis_k,
                           thr) >= 0;
    return ok;
}

em_status em_posterior_print(const em_posterior *p, FILE *f, em_error *err) {
    if (!p || !f) return em_error_set(err, EM_ERR_ARG, "em_posterior_print: no posterior or no stream");
    em_summary *s = NULL;
    em_status st = em_posterior_summary(p, &s, err);
    if (!s) return st;
    int ok;
    if (has_chains(p))
        ok = fprintf(f, "%s: %zu chains x %zu draws%s (%.3g s)\n", p->method == EM_POSTERIOR_NUTS ? "NUTS" : "HMC",
                     p->nchains, p->ndraws, p->interrupted ? ", interrupted" : "", p->wall_seconds) >= 0;
    else if (p->method == EM_POSTERIOR_VARIATIONAL)
        ok = fprintf(f, "SVI (%s): %zu %s of the guide%s (%.3g s)\n", em_autoguide_name(p->guide_kind), p->ndraws,
                     p->resampled ? "importance-resampled draws" : "independent draws",
                     p->svi_steps ? (p->svi_converged ? ", ELBO converged" : ", ELBO not converged") : "",
                     p->wall_seconds) >= 0;
    else if (p->method == EM_POSTERIOR_PATHFINDER)
        ok = fprintf(f, "Pathfinder: %zu %s (%.3g s)\n", p->ndraws,
                     p->resampled ? "draws importance-resampled from its paths" : "draws of its paths", p->wall_seconds) >= 0;
    else
        ok = fprintf(f, "Laplace approximation: %zu %s (%.3g s)\n", p->ndraws,
                     p->resampled ? "importance-resampled draws" : "independent draws", p->wall_seconds) >= 0;
    if (ok && !has_chains(p)) ok = print_verdict(p, f);
    em_status ps = em_summary_print(f, s, 4, err);
    if (ok && ps == EM_OK) ok = print_checks(p, s, f);
    em_summary_free(s);
    if (ps != EM_OK) return ps;
    if (!ok) return em_error_set(err, EM_ERR_IO, "em_posterior_print: write failed");
    return st;
}

em_status em_posterior_write_summary(const em_posterior *p, const char *path, em_error *err) {
    if (!path) return em_error_set(err, EM_ERR_ARG, "em_posterior_write_summary: path is NULL");
    em_summary *s = NULL;
    em_status st = em_posterior_summary(p, &s, err);
    if (st != EM_OK) {
        em_summary_free(s);
        return st;
    }
    em_buf b = {0};
    st = em_summary_to_csv(s, &b, 17, err);
    if (st == EM_OK) st = em_write_file_atomic(path, b.data ? b.data : "", b.len, err);
    em_buf_free(&b);
    em_summary_free(s);
    return st;
}

/* ---- prediction and log-likelihood -------------------------------------------------------------- */

/* Every kept draw's constrained latent values, the latent sites end to end (chain-major). */
static double *latent_rows(const em_posterior *p, em_error *err) {
    size_t S = p->nchains * p->ndraws, w = p->nlatent_vals;
    double *x = malloc((S ? S : 1) * (w ? w : 1) * sizeof *x);
    if (!x) {
        em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory for %zu draws", S);
        return NULL;
    }
    for (size_t c = 0; c < p->nchains; c++) {
        const em_posterior_chain *pc = &p->chains[c];
        for (size_t i = 0; i < p->ndraws; i++) {
            const double *row = pc->rows + (pc->nwarmup + i) * p->ncols;
            double *dst = x + (c * p->ndraws + i) * w;
            for (size_t k = 0; k < w; k++) dst[k] = row[p->latent_cols[k]];
        }
    }
    return x;
}

static em_status need_model(const em_posterior *p, const char *what, em_error *err) {
    if (!p) return em_error_set(err, EM_ERR_ARG, "%s: no posterior", what);
    if (!p->model)
        return em_error_set(err, EM_ERR_ARG, "%s: the posterior has no model (attach one with em_posterior_attach_model)",
                            what);
    if (p->ndraws == 0) return em_error_set(err, EM_ERR_ARG, "%s: the posterior has no draws", what);
    return EM_OK;
}

em_status em_posterior_predict(const em_posterior *p, const void *data, const em_predictive_options *opt,
                               em_predictive **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_predict: out is NULL");
    *out = NULL;
    em_status s = need_model(p, "em_posterior_predict", err);
    if (s != EM_OK) return s;
    em_predictive_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    if (o.seed == 0) o.seed = p->seed;
    double *x = latent_rows(p, err);
    if (!x) return EM_ERR_NOMEM;
    size_t S = p->nchains * p->ndraws;
    s = em_predictive_posterior(p->model, data ? data : p->data, p->latent_names, p->latent_lens, p->nlatent, x, S,
                                &o, out, err);
    free(x);
    return s;
}

em_status em_posterior_predict_prior(const em_posterior *p, const void *data, size_t ndraws,
                                     const em_predictive_options *opt, em_predictive **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_predict_prior: out is NULL");
    *out = NULL;
    if (!p || !p->model)
        return em_error_set(err, EM_ERR_ARG, "em_posterior_predict_prior: the posterior has no model");
    em_predictive_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    if (o.seed == 0) o.seed = p->seed;
    return em_predictive_prior(p->model, data ? data : p->data, ndraws, &o, out, err);
}

static em_status log_lik_run(const em_posterior *p, const char *site, em_pred_draw_fn fn, void *arg,
                             em_predictive **out, const char *what, em_error *err) {
    em_status s = need_model(p, what, err);
    if (s != EM_OK) return s;
    em_predictive_options o;
    memset(&o, 0, sizeof o);
    o.seed = p->seed;
    o.return_sites = site ? &site : NULL;
    o.nreturn = site ? 1 : 0;
    o.on_draw = fn;
    o.on_draw_arg = arg;
    double *x = latent_rows(p, err);
    if (!x) return EM_ERR_NOMEM;
    s = em_predictive_log_lik(p->model, p->data, p->latent_names, p->latent_lens, p->nlatent, x,
                              p->nchains * p->ndraws, &o, out, err);
    free(x);
    return s;
}

em_status em_posterior_log_lik(const em_posterior *p, const char *site, em_predictive **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_log_lik: out is NULL");
    *out = NULL;
    return log_lik_run(p, site, NULL, NULL, out, "em_posterior_log_lik", err);
}

em_status em_posterior_log_lik_each(const em_posterior *p, const char *site, em_pred_draw_fn fn, void *arg,
                                    em_error *err) {
    if (!fn) return em_error_set(err, EM_ERR_ARG, "em_posterior_log_lik_each: no callback");
    em_predictive *out = NULL;
    em_status s = log_lik_run(p, site, fn, arg, &out, "em_posterior_log_lik_each", err);
    em_predictive_free(out);
    return s;
}
