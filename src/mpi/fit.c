/* fit.c — NUTS and data-parallel SVI over the ranks of a communicator.
 *
 * NUTS needs nothing from MPI beyond the sharded density: every rank runs the same chains with
 * the same seed, and since every evaluation returns the same bits on every rank, every rank
 * takes the same decisions. The chains run one after the other (num_threads = 1): each
 * evaluation is a collective call, and collective calls of two chains on two threads would
 * interleave differently on different ranks. A signal is a rank's own event, so it is not
 * acted on where it lands: the density passes the request to every rank with its next
 * evaluation, and all of them stop after the same iteration.
 *
 * SVI is data parallel the other way round: every rank has its own random stream and its own
 * minibatch, and only the loss and the gradient are combined (em_svi_options.combine), as a
 * weighted average in rank order so that every rank computes the same bits and takes the same
 * optimizer step.
 */
#include "internal/mpi_impl.h"
#include "internal/posterior_impl.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ---- NUTS ---------------------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define NSTOP ((int)(sizeof stop_signals / sizeof stop_signals[0]))

/* em_mcmc_run over the sharded density of spec on comm; *res also after an interruption
 * (EM_ERR_INTERRUPTED). The status is the same on every rank of comm. */
static em_status run_nuts(MPI_Comm comm, const em_mpi_model *spec, const em_mcmc_config *cfg, em_mcmc_result **res,
                          em_error *e) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    *res = NULL;
    em_status st = EM_OK;
    if (cfg && cfg->cancel)
        st = em_error_set(e, EM_ERR_ARG, "em_mpi_fit_nuts: cfg->cancel is not supported over MPI (a flag set on one "
                                         "rank would stop that rank alone); use handle_sigint");
    em_mcmc_config c = cfg ? *cfg : em_mcmc_config_default();
    if (st == EM_OK) st = em_mcmc_config_validate(&c, e);
    if ((st = em_mpi_agree(comm, st, e)) != EM_OK) return st;

    em_logdensity *ld = em_mpi_logdensity(comm, spec, NULL, e);
    if (!ld) return e->status;
    int handle = c.handle_sigint;
    volatile int cancel = 0;
    c.num_threads = 1;
    c.handle_sigint = 0;
    c.cancel = &cancel;
    if (rank != 0) c.progress = 0;
    struct sigaction old[NSTOP];
    stop_requested = 0;
    if (handle) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < NSTOP; i++) sigaction(stop_signals[i], &sa, &old[i]);
    }
    em_mpi_logdensity_stop_flags(ld, &stop_requested, &cancel);
    st = em_mcmc_run(ld, &c, res, e);
    if (handle)
        for (int i = 0; i < NSTOP; i++) sigaction(stop_signals[i], &old[i], NULL);
    em_logdensity_destroy(ld);
    int interrupted = st == EM_ERR_INTERRUPTED && *res;
    em_error msg = *e;
    em_status agreed = em_mpi_agree(comm, interrupted ? EM_OK : st, e);
    if (agreed != EM_OK) {
        em_mcmc_result_free(*res);
        *res = NULL;
        return agreed;
    }
    /* an interruption is every rank's (the density passed the request on) */
    if (interrupted) *e = msg;
    return interrupted ? EM_ERR_INTERRUPTED : EM_OK;
}

/* The posterior of res on every rank, and the run's status. */
static em_status to_posterior(MPI_Comm comm, em_status run, em_mcmc_result *res, const em_error *run_err,
                              em_posterior **out, em_error *err) {
    em_error pe = {0};
    em_status ps = em_posterior_from_mcmc(res, NULL, NULL, out, &pe);
    if ((ps = em_mpi_agree(comm, ps, &pe)) != EM_OK) {
        em_posterior_free(*out);
        *out = NULL;
        return em_error_set(err, ps, "%s", pe.msg);
    }
    return run == EM_ERR_INTERRUPTED ? em_error_set(err, run, "%s", run_err->msg) : EM_OK;
}

em_status em_mpi_fit_nuts(MPI_Comm comm, const em_mpi_model *spec, const em_mcmc_config *cfg, em_posterior **out,
                          em_error *err) {
    em_error e = {0};
    em_status st = out ? EM_OK : em_error_set(&e, EM_ERR_ARG, "em_mpi_fit_nuts: out is NULL");
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) return em_error_set(err, st, "%s", e.msg);
    *out = NULL;
    em_mcmc_result *res = NULL;
    st = run_nuts(comm, spec, cfg, &res, &e);
    if (st != EM_OK && st != EM_ERR_INTERRUPTED) return em_error_set(err, st, "%s", e.msg);
    return to_posterior(comm, st, res, &e, out, err);
}

/* ---- chains over groups of ranks ------------------------------------------------------------------- */

em_status em_mpi_group_split(MPI_Comm comm, int groups, MPI_Comm *group, int *group_index, em_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    em_error e = {0};
    em_status st = group ? EM_OK : em_error_set(&e, EM_ERR_ARG, "em_mpi_group_split: group is NULL");
    if (st == EM_OK && (groups < 1 || size % groups != 0))
        st = em_error_set(&e, EM_ERR_ARG, "em_mpi_group_split: %d groups of %d ranks: the ranks must divide into "
                                          "equal groups", groups, size);
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) return em_error_set(err, st, "%s", e.msg);
    int per = size / groups, g = rank / per;
    if (MPI_Comm_split(comm, g, rank, group) != MPI_SUCCESS)
        return em_error_set(err, EM_ERR_IO, "em_mpi_group_split: MPI_Comm_split failed");
    if (group_index) *group_index = g;
    return EM_OK;
}

/* One chain as doubles: the counters and figures, then the draws, θ and the inverse metric. */
enum { CH_NDRAWS, CH_NWARM, CH_WDONE, CH_SDONE, CH_STEP, CH_WSEC, CH_SSEC, CH_DIV, CH_DIVW, CH_TREE, CH_ACC, CH_HEAD };

static size_t chain_doubles(const em_mcmc_result *r, size_t ndraws) {
    size_t mlen = r->dense_metric ? r->metric_dim * r->metric_dim : r->metric_dim;
    return CH_HEAD + ndraws * (r->num_columns + r->dim) + mlen;
}

static void chain_pack(const em_mcmc_result *r, const em_mcmc_chain *c, double *b) {
    size_t mlen = r->dense_metric ? r->metric_dim * r->metric_dim : r->metric_dim;
    b[CH_NDRAWS] = (double)c->num_draws;
    b[CH_NWARM] = (double)c->num_warmup_draws;
    b[CH_WDONE] = (double)c->warmup_done;
    b[CH_SDONE] = (double)c->samples_done;
    b[CH_STEP] = c->stepsize;
    b[CH_WSEC] = c->warmup_seconds;
    b[CH_SSEC] = c->sampling_seconds;
    b[CH_DIV] = (double)c->num_divergent;
    b[CH_DIVW] = (double)c->num_divergent_warmup;
    b[CH_TREE] = (double)c->num_max_treedepth;
    b[CH_ACC] = c->mean_accept_stat;
    double *p = b + CH_HEAD;
    memcpy(p, c->draws, c->num_draws * r->num_columns * sizeof *p);
    p += c->num_draws * r->num_columns;
    memcpy(p, c->unconstrained, c->num_draws * r->dim * sizeof *p);
    p += c->num_draws * r->dim;
    if (c->inv_metric) memcpy(p, c->inv_metric, mlen * sizeof *p);
    else memset(p, 0, mlen * sizeof *p);
}

static em_status chain_unpack(const em_mcmc_result *r, const double *b, em_mcmc_chain *c) {
    size_t mlen = r->dense_metric ? r->metric_dim * r->metric_dim : r->metric_dim;
    memset(c, 0, sizeof *c);
    c->num_draws = (size_t)b[CH_NDRAWS];
    c->num_warmup_draws = (size_t)b[CH_NWARM];
    c->warmup_done = (size_t)b[CH_WDONE];
    c->samples_done = (size_t)b[CH_SDONE];
    c->stepsize = b[CH_STEP];
    c->warmup_seconds = b[CH_WSEC];
    c->sampling_seconds = b[CH_SSEC];
    c->num_divergent = (size_t)b[CH_DIV];
    c->num_divergent_warmup = (size_t)b[CH_DIVW];
    c->num_max_treedepth = (size_t)b[CH_TREE];
    c->mean_accept_stat = b[CH_ACC];
    size_t nd = c->num_draws ? c->num_draws : 1;
    c->draws = malloc(nd * r->num_columns * sizeof *c->draws);
    c->unconstrained = malloc(nd * (r->dim ? r->dim : 1) * sizeof *c->unconstrained);
    c->inv_metric = malloc((mlen ? mlen : 1) * sizeof *c->inv_metric);
    if (!c->draws || !c->unconstrained || !c->inv_metric) return EM_ERR_NOMEM;
    const double *p = b + CH_HEAD;
    memcpy(c->draws, p, c->num_draws * r->num_columns * sizeof *p);
    p += c->num_draws * r->num_columns;
    memcpy(c->unconstrained, p, c->num_draws * r->dim * sizeof *p);
    p += c->num_draws * r->dim;
    memcpy(c->inv_metric, p, mlen * sizeof *p);
    return EM_OK;
}

em_status em_mpi_fit_nuts_groups(MPI_Comm comm, MPI_Comm group, const em_mpi_model *spec, const em_mcmc_config *cfg,
                                 em_posterior **out, em_error *err) {
    int rank, size, grank, gsize;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(group, &grank);
    MPI_Comm_size(group, &gsize);
    em_error e = {0};
    em_mcmc_config c = cfg ? *cfg : em_mcmc_config_default();
    int G = gsize > 0 ? size / gsize : 0, g = gsize > 0 ? rank / gsize : 0;
    em_status st = out ? EM_OK : em_error_set(&e, EM_ERR_ARG, "em_mpi_fit_nuts_groups: out is NULL");
    if (st == EM_OK && (G * gsize != size))
        st = em_error_set(&e, EM_ERR_ARG, "em_mpi_fit_nuts_groups: groups of %d ranks do not divide %d ranks "
                                          "(em_mpi_group_split makes valid groups)", gsize, size);
    if (st == EM_OK && c.num_chains < G)
        st = em_error_set(&e, EM_ERR_ARG, "em_mpi_fit_nuts_groups: %d chains for %d groups: every group needs a chain",
                          c.num_chains, G);
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) return em_error_set(err, st, "%s", e.msg);
    *out = NULL;
    /* group g runs the chains [g·C/G, (g+1)·C/G) of the whole run, with their own streams */
    int C = c.num_chains, lo = (int)((long long)g * C / G), hi = (int)((long long)(g + 1) * C / G);
    em_mcmc_config cg = c;
    cg.num_chains = hi - lo;
    cg.first_chain = c.first_chain + lo;
    em_mcmc_result *mine = NULL;
    em_error run_err = {0};
    em_status run = run_nuts(group, spec, &cg, &mine, &run_err);
    st = run == EM_OK || run == EM_ERR_INTERRUPTED ? EM_OK : em_error_set(&e, run, "%s", run_err.msg);
    int any_interrupted = run == EM_ERR_INTERRUPTED;
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) {
        em_mcmc_result_free(mine);
        return em_error_set(err, st, "%s", e.msg);
    }
    MPI_Allreduce(MPI_IN_PLACE, &any_interrupted, 1, MPI_INT, MPI_MAX, comm);
    /* every chain to every rank: group h's first rank broadcasts its chains */
    em_mcmc_chain *all = calloc((size_t)C, sizeof *all);
    st = all ? EM_OK : em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory");
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) {
        em_mcmc_result_free(mine);
        return em_error_set(err, st, "%s", e.msg);
    }
    for (int h = 0; h < G && st == EM_OK; h++) {
        int hlo = (int)((long long)h * C / G), hhi = (int)((long long)(h + 1) * C / G);
        for (int k = hlo; k < hhi && st == EM_OK; k++) {
            unsigned long long n = 0;
            if (h == g) n = chain_doubles(mine, mine->chains[k - lo].num_draws);
            MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, h * gsize, comm);
            double *b = malloc((size_t)n * sizeof *b);
            em_status bs = b ? EM_OK : em_error_set(&e, EM_ERR_NOMEM, "mpi: out of memory for chain %d", k + 1);
            if ((bs = em_mpi_agree(comm, bs, &e)) != EM_OK) {
                free(b);
                st = bs;
                break;
            }
            if (h == g) chain_pack(mine, &mine->chains[k - lo], b);
            if (n > (unsigned long long)INT32_MAX) {
                /* a chain of more than 16 GiB: send it in pieces */
                for (unsigned long long off = 0; off < n; off += INT32_MAX) {
                    unsigned long long len = n - off < INT32_MAX ? n - off : INT32_MAX;
                    MPI_Bcast(b + off, (int)len, MPI_DOUBLE, h * gsize, comm);
                }
            } else {
                MPI_Bcast(b, (int)n, MPI_DOUBLE, h * gsize, comm);
            }
            bs = chain_unpack(mine, b, &all[k]);
            free(b);
            if (bs != EM_OK) bs = em_error_set(&e, bs, "mpi: out of memory for chain %d", k + 1);
            st = em_mpi_agree(comm, bs, &e);
        }
    }
    if (st != EM_OK) {
        for (int k = 0; k < C; k++) {
            free(all[k].draws);
            free(all[k].unconstrained);
            free(all[k].inv_metric);
        }
        free(all);
        em_mcmc_result_free(mine);
        return em_error_set(err, st, "%s", e.msg);
    }
    /* the whole run: this group's result with every chain in place of its own */
    for (size_t k = 0; k < mine->num_chains; k++) {
        free(mine->chains[k].draws);
        free(mine->chains[k].unconstrained);
        free(mine->chains[k].inv_metric);
    }
    free(mine->chains);
    mine->chains = all;
    mine->num_chains = (size_t)C;
    mine->config.num_chains = C;
    mine->config.first_chain = c.first_chain;
    MPI_Allreduce(MPI_IN_PLACE, &mine->wall_seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (any_interrupted) mine->status = EM_ERR_INTERRUPTED;
    if (any_interrupted && run != EM_ERR_INTERRUPTED)
        em_error_set(&run_err, EM_ERR_INTERRUPTED, "interrupted: another group of ranks was stopped by a signal");
    return to_posterior(comm, any_interrupted ? EM_ERR_INTERRUPTED : EM_OK, mine, &run_err, out, err);
}

/* ---- data-parallel SVI ---------------------------------------------------------------------------- */

struct em_mpi_svi {
    MPI_Comm comm;
    int rank, size;
    em_block_arg arg;
    void *view;
    double weight; /* this rank's rows / all rows */
    double *all;   /* [size * dim] gathered gradients */
    size_t all_dim;
    em_autoguide *guide;
    em_svi *svi;
};

/* Step 1: every rank's status, loss and weight. Step 2, only when all are fine: the gradients.
 * Both are gathered, not reduced, and added in rank order, so every rank has the same bits. */
static em_status combine(void *ctx, em_status local, double *loss, double *grad, size_t dim, em_error *err) {
    em_mpi_svi *s = ctx;
    double head[3] = {(double)local, local == EM_OK ? *loss : 0.0, s->weight};
    double *heads = malloc((size_t)s->size * 3 * sizeof *heads);
    em_status st = heads ? EM_OK : EM_ERR_NOMEM;
    /* an error (not a skipped step) on some rank ends the step on every rank with its message */
    em_status hard = local == EM_OK || local == EM_ERR_DOMAIN || local == EM_ERR_NONFINITE ? EM_OK : local;
    if (st != EM_OK) hard = em_error_set(err, EM_ERR_NOMEM, "mpi svi: out of memory");
    if ((hard = em_mpi_agree(s->comm, hard, err)) != EM_OK) {
        free(heads);
        return hard;
    }
    MPI_Allgather(head, 3, MPI_DOUBLE, heads, 3, MPI_DOUBLE, s->comm);
    int all_ok = 1;
    for (int r = 0; r < s->size; r++) all_ok &= heads[3 * r] == (double)EM_OK;
    if (!all_ok) {
        free(heads);
        *loss = NAN; /* skipped on every rank */
        return EM_OK;
    }
    /* dim is the same everywhere: every rank's guide declared the same parameters */
    if (s->all_dim != dim) {
        free(s->all);
        s->all = malloc((size_t)s->size * (dim ? dim : 1) * sizeof *s->all);
        s->all_dim = s->all ? dim : 0;
    }
    st = s->all ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "mpi svi: out of memory");
    if ((st = em_mpi_agree(s->comm, st, err)) != EM_OK) {
        free(heads);
        return st;
    }
    if (dim) MPI_Allgather(grad, (int)dim, MPI_DOUBLE, s->all, (int)dim, MPI_DOUBLE, s->comm);
    double l = 0.0;
    for (size_t i = 0; i < dim; i++) grad[i] = 0.0;
    for (int r = 0; r < s->size; r++) {
        double w = heads[3 * r + 2];
        l += w * heads[3 * r + 1];
        for (size_t i = 0; i < dim; i++) grad[i] += w * s->all[(size_t)r * dim + i];
    }
    *loss = l;
    free(heads);
    return EM_OK;
}

em_mpi_svi *em_mpi_svi_create(MPI_Comm comm, const em_mpi_model *spec, em_autoguide_kind guide,
                              const em_optim_config *optim, const em_svi_options *opt, em_error *err) {
    em_error e = {0};
    size_t first = 0, total = 0, B = 0;
    if (em_mpi_layout_rows(comm, spec, &first, &total, &B, &e) != EM_OK) {
        em_error_set(err, e.status, "%s", e.msg);
        return NULL;
    }
    em_mpi_svi *s = calloc(1, sizeof *s);
    em_status st = s ? EM_OK : em_error_set(&e, EM_ERR_NOMEM, "mpi svi: out of memory");
    if (st == EM_OK && (guide == EM_AUTO_LAPLACE || (unsigned)guide >= EM_AUTO_KIND_COUNT))
        st = em_error_set(&e, EM_ERR_ARG, "mpi svi: guide %d is not an SVI autoguide", (int)guide);
    if (s) {
        s->comm = comm;
        MPI_Comm_rank(comm, &s->rank);
        MPI_Comm_size(comm, &s->size);
        s->weight = (double)spec->num_rows / (double)total;
        s->view = calloc(1, spec->view_size);
        if (!s->view && st == EM_OK) st = em_error_set(&e, EM_ERR_NOMEM, "mpi svi: out of memory");
    }
    em_svi_options o;
    if (opt) o = *opt;
    else memset(&o, 0, sizeof o);
    if (st == EM_OK) {
        spec->view(spec->shard, 0, spec->num_rows, s->view);
        s->arg = (em_block_arg){spec->fn, s->view, spec->data_plate, 1, (double)total / (double)spec->num_rows};
        /* the guide's initial values come from a discovery run: the same seed on every rank, so
         * that every rank starts from the same parameters */
        em_autoguide_options go;
        memset(&go, 0, sizeof go);
        go.seed = o.seed;
        s->guide = em_autoguide_create(guide, em_mpi_block_model, &s->arg, &go, &e);
        if (!s->guide) st = e.status ? e.status : EM_ERR_MODEL;
    }
    if (st == EM_OK) {
        /* each rank its own guide draws and minibatches: a distinct stream per rank */
        o.seed = em_seed_mix(o.seed, 0x6d70690000ull + (uint64_t)s->rank);
        o.combine = combine;
        o.combine_ctx = s;
        s->svi = em_svi_create(em_mpi_block_model, &s->arg, em_autoguide_fn, s->guide, optim, &o, &e);
        if (!s->svi) st = e.status ? e.status : EM_ERR_MODEL;
    }
    if ((st = em_mpi_agree(comm, st, &e)) != EM_OK) {
        em_mpi_svi_destroy(s);
        em_error_set(err, st, "%s", e.msg);
        return NULL;
    }
    return s;
}

em_svi *em_mpi_svi_handle(em_mpi_svi *s) { return s ? s->svi : NULL; }
em_autoguide *em_mpi_svi_guide(em_mpi_svi *s) { return s ? s->guide : NULL; }

em_status em_mpi_svi_posterior(em_mpi_svi *s, const em_mpi_model *spec, size_t ndraws, uint64_t seed,
                               em_posterior **out, em_error *err) {
    em_error e = {0};
    em_status st = s && out ? EM_OK : em_error_set(&e, EM_ERR_ARG, "em_mpi_svi_posterior: no SVI or out is NULL");
    if ((st = em_mpi_agree(s ? s->comm : MPI_COMM_WORLD, st, &e)) != EM_OK) return em_error_set(err, st, "%s", e.msg);
    /* log_p__ from the whole data (the guide's own density sees one rank's rows, rescaled) */
    em_logdensity *ld = em_mpi_logdensity(s->comm, spec, NULL, &e);
    if (!ld) return em_error_set(err, e.status, "%s", e.msg);
    st = em_posterior_from_guide_density(s->guide, em_svi_params(s->svi), ndraws, seed, ld, NULL, NULL, out, &e);
    em_logdensity_destroy(ld);
    if ((st = em_mpi_agree(s->comm, st, &e)) != EM_OK) {
        em_posterior_free(*out);
        *out = NULL;
        return em_error_set(err, st, "%s", e.msg);
    }
    return EM_OK;
}

void em_mpi_svi_destroy(em_mpi_svi *s) {
    if (!s) return;
    em_svi_destroy(s->svi);
    em_autoguide_destroy(s->guide);
    free(s->view);
    free(s->all);
    free(s);
}
