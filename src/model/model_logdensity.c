/* model_logdensity.c — a model's log density on the unconstrained space (density mode).
 *
 * Discovery: one traced run with prior draws finds the latent sites in order, with their
 * lengths and supports, and fixes the layout of θ. Evaluation then runs the model under one
 * lean handler that hands out the latent values by position — no trace, no name lookup beyond
 * a cheap check that the k-th latent site still has the k-th name, no allocation after the
 * first evaluation (the tape's arena is rewound) — and sums the sites' log densities with the
 * transforms' log|det J|. This is the hot path of HMC.
 *
 * Replay: when a run succeeds and its tape can be replayed (every op on it can recompute its
 * value, the model read no value that depends on θ — so it cannot have branched on one —,
 * drew nothing from its RNG and read no param site), later evaluations write θ into the
 * leaves and recompute the recorded tape instead of running the model: no handlers, no site
 * messages, no node creation, only the arithmetic. This is how a small model's gradient gets
 * close to hand-written C (the idea of tracing a fixed-structure program once, as JAX's jit
 * does for NumPyro; Ember checks the conditions above instead of assuming them). A model that
 * branches on data only, or on nothing, replays; any θ-dependent value read disables it.
 */
#include "ember/handlers.h"
#include "internal/model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct density_shape {
    em_model_fn fn;
    const void *data;
    size_t nlat;
    em_latent_info *lat;
    size_t dim, nout;
    int include_det;
    size_t ndet;
    char **det_names;
    size_t *det_len;
    em_param_store *params;
    uint64_t seed;
    int no_replay;
    int no_jacobian;
    int refs;
} density_shape;

typedef struct density_state {
    density_shape *shape;
    em_model *m;
    em_var *values;
    em_var *leaves;
    const char **seen; /* the name pointer each latent site passed last time: the fast check */
    em_var *terms;     /* the log-density terms of a run (logjac, then one per site) */
    size_t nterms, cap_terms;
    int replay;        /* the tape holds a replayable recording of the model */
    em_var total;      /* its log density */
    em_var *det_vars;  /* its deterministic sites (shape->ndet of them) */
    /* Every site of the last run, in order: its name and the tape size after it, so that an
     * error in a replay names the site whose nodes failed. The names are copied (site_copy)
     * when the run becomes the recording that is replayed: the model's own may not last. */
    const char **site_name;
    size_t *site_end;
    size_t nsites, cap_sites;
    char **site_copy;
    size_t ncopies;
} density_state;

typedef struct density_handler {
    em_handler base;
    density_state *st;
    size_t next;
    em_var total;
    double *det_out; /* capture deterministic sites here when non-NULL */
    size_t det_next, det_off;
} density_handler;

static void density_process(em_handler *h, em_msg *msg) {
    density_handler *dh = (density_handler *)h;
    if (msg->kind != EM_SITE_SAMPLE || msg->is_observed) return;
    const density_shape *sh = dh->st->shape;
    size_t k = dh->next++;
    if (k >= sh->nlat) {
        em_model_fail(msg->model, EM_ERR_MODEL,
                      "model structure changed: latent site '%s' was not there when the density was built "
                      "(%zu latent sites then)", msg->name, sh->nlat);
        return;
    }
    if (msg->name != dh->st->seen[k] && strcmp(msg->name, sh->lat[k].name) != 0) {
        em_model_fail(msg->model, EM_ERR_MODEL,
                      "model structure changed: latent site %zu is '%s', it was '%s' when the density was built",
                      k + 1, msg->name, sh->lat[k].name);
        return;
    }
    dh->st->seen[k] = msg->name;
    msg->value = dh->st->values[k];
    msg->done = 1;
}

/* Remember where the site's nodes end (no allocation once the arrays have grown to the model). */
static void note_site(density_state *st, em_msg *msg) {
    if (st->nsites == st->cap_sites) {
        size_t cap = st->cap_sites ? 2 * st->cap_sites : 16;
        const char **nn = realloc(st->site_name, cap * sizeof *nn);
        if (nn) st->site_name = nn;
        size_t *ne = nn ? realloc(st->site_end, cap * sizeof *ne) : NULL;
        if (!ne) {
            em_model_fail(msg->model, EM_ERR_NOMEM, "log density: out of memory at site '%s'", msg->name);
            return;
        }
        st->site_end = ne;
        st->cap_sites = cap;
    }
    st->site_name[st->nsites] = msg->name;
    st->site_end[st->nsites++] = em_tape_size(em_model_tape(msg->model));
}

static void drop_site_copies(density_state *st) {
    for (size_t k = 0; k < st->ncopies; k++) free(st->site_copy[k]);
    free(st->site_copy);
    st->site_copy = NULL;
    st->ncopies = 0;
}

/* Copy the site names of the run that will be replayed; without memory, errors go unnamed. */
static void keep_site_names(density_state *st) {
    drop_site_copies(st);
    st->site_copy = calloc(st->nsites ? st->nsites : 1, sizeof *st->site_copy);
    if (!st->site_copy) return;
    for (size_t k = 0; k < st->nsites; k++) st->site_copy[k] = strdup(st->site_name[k]);
    st->ncopies = st->nsites;
}

static void density_post(em_handler *h, em_msg *msg) {
    density_handler *dh = (density_handler *)h;
    switch (msg->kind) {
    case EM_SITE_SAMPLE:
    case EM_SITE_OBSERVE:
    case EM_SITE_FACTOR:
    {
        /* summed at the end in one node per six terms, not one add node per site */
        density_state *st = dh->st;
        if (st->nterms == st->cap_terms) {
            size_t cap = st->cap_terms ? 2 * st->cap_terms : 16;
            em_var *nt = realloc(st->terms, cap * sizeof *nt);
            if (!nt) {
                em_model_fail(msg->model, EM_ERR_NOMEM, "log density: out of memory at site '%s'", msg->name);
                return;
            }
            st->terms = nt;
            st->cap_terms = cap;
        }
        st->terms[st->nterms++] = em_msg_log_prob(msg);
        break;
    }
    case EM_SITE_DETERMINISTIC:
        if (dh->det_next < dh->st->shape->ndet) {
            size_t n = dh->st->shape->det_len[dh->det_next];
            int fits = n == msg->len;
            const double *v = em_val_(em_model_tape(msg->model), msg->value);
            if (dh->det_out && v && fits) memcpy(dh->det_out + dh->det_off, v, n * sizeof *v);
            dh->st->det_vars[dh->det_next] = fits ? msg->value : EM_VAR_INVALID;
            dh->det_off += n;
            dh->det_next++;
        }
        break;
    case EM_SITE_PARAM:
        break;
    }
    note_site(dh->st, msg); /* after the site's log-density node */
}

/* Run the model at θ; on success the handler's total holds the log density. */
static em_status density_run(density_state *st, const double *theta, density_handler *dh, double *det_out,
                             em_error *err) {
    const density_shape *sh = st->shape;
    em_tape *t = em_model_tape(st->m);
    em_tape_reset(t);
    st->replay = 0;
    st->m->replay_blocked = 0;
    em_var logjac = em_scalar(t, 0.0);
    for (size_t k = 0; k < sh->nlat; k++) {
        const em_latent_info *li = &sh->lat[k];
        st->leaves[k] = em_leaf(t, theta + li->offset, li->free_len);
        st->values[k] = li->transform.kind == EM_TRANSFORM_IDENTITY
                            ? st->leaves[k]
                            : em_transform_forward(t, &li->transform, st->leaves[k], &logjac);
    }
    memset(dh, 0, sizeof *dh);
    dh->base.process = density_process;
    dh->base.postprocess = density_post;
    dh->base.kind = "density";
    dh->st = st;
    st->nterms = 0;
    if (!sh->no_jacobian) st->terms[st->nterms++] = logjac;
    st->nsites = 0;
    dh->det_out = det_out;
    em_push(st->m, &dh->base);
    em_status s = em_model_run(st->m, sh->fn, sh->data, err);
    em_pop(st->m, &dh->base);
    if (s == EM_OK) {
        dh->total = st->nterms ? em_op_add_many(t, st->terms, st->nterms) : em_scalar(t, 0.0);
        if (em_tape_status(t) != EM_OK) s = em_error_set(err, em_tape_status(t), "%s", em_tape_error(t)->msg);
    }
    if (s == EM_OK && dh->next != sh->nlat)
        s = em_error_set(err, EM_ERR_MODEL, "model structure changed: %zu latent sites in this run, %zu when the "
                                            "density was built (next expected: '%s')",
                         dh->next, sh->nlat, sh->lat[dh->next < sh->nlat ? dh->next : 0].name);
    int dets_ok = dh->det_next == sh->ndet;
    for (size_t k = 0; k < sh->ndet && dets_ok; k++) dets_ok = em_var_ok(st->det_vars[k]);
    if (s == EM_OK && !sh->no_replay && !st->m->replay_blocked && dets_ok && em_tape_replayable(t) &&
        isfinite(em_val_scalar_(t, dh->total))) {
        st->replay = 1;
        st->total = dh->total;
        em_tape_prune(t, &st->total, 1);
        keep_site_names(st);
    }
    return s;
}

/* Evaluate the recorded tape at θ: what the log density needs, or every node (all). */
static em_status density_replay(density_state *st, const double *theta, int all, em_error *err) {
    const density_shape *sh = st->shape;
    em_tape *t = em_model_tape(st->m);
    em_status s = EM_OK;
    em_error_clear(&t->err); /* the last replay's error, if any, is not this one's */
    for (size_t k = 0; k < sh->nlat && s == EM_OK; k++)
        s = em_leaf_assign(t, st->leaves[k], theta + sh->lat[k].offset, sh->lat[k].free_len);
    if (s == EM_OK) s = em_tape_forward(t, all);
    if (s != EM_OK && t->err_node >= 0)
        for (size_t k = 0; k < st->ncopies; k++)
            if (st->site_end[k] > (size_t)t->err_node) {
                if (st->site_copy[k]) em_model_name_error(&t->err, st->site_copy[k]);
                break;
            }
    if (s != EM_OK) return em_error_set(err, s, "%s", em_tape_error(t)->msg);
    return EM_OK;
}

static em_status density_eval(void *state, const double *theta, double *lp, double *grad, em_error *err) {
    density_state *st = state;
    em_tape *t = em_model_tape(st->m);
    em_var total;
    em_status s;
    if (st->replay) {
        s = density_replay(st, theta, 0, err); /* also readies the adjoints */
        total = st->total;
    } else {
        density_handler dh;
        s = density_run(st, theta, &dh, NULL, err);
        total = dh.total;
    }
    if (s != EM_OK) {
        *lp = -INFINITY;
        return s;
    }
    *lp = em_val_scalar_(t, total);
    if (grad) {
        s = em_backward(t, total);
        if (s != EM_OK) return em_error_set(err, s, "%s", em_tape_error(t)->msg);
        const density_shape *sh = st->shape;
        for (size_t k = 0; k < sh->nlat; k++) {
            const double *g = em_adjoint(t, st->leaves[k]);
            const em_latent_info *li = &sh->lat[k];
            if (g)
                memcpy(grad + li->offset, g, li->free_len * sizeof *g);
            else
                memset(grad + li->offset, 0, li->free_len * sizeof *grad);
        }
    }
    return EM_OK;
}

static em_status density_constrain(void *state, const double *theta, double *out, em_error *err) {
    density_state *st = state;
    const density_shape *sh = st->shape;
    size_t o = 0;
    for (size_t k = 0; k < sh->nlat; k++) {
        const em_latent_info *li = &sh->lat[k];
        em_status s = em_transform_forward_d(&li->transform, theta + li->offset, li->free_len, out + o, NULL, err);
        if (s != EM_OK) return s;
        o += li->len;
    }
    if (sh->include_det && sh->ndet) {
        if (!st->replay) {
            density_handler dh;
            return density_run(st, theta, &dh, out + o, err);
        }
        em_status s = density_replay(st, theta, 1, err);
        if (s != EM_OK) return s;
        const em_tape *t = em_model_tape(st->m);
        for (size_t k = 0; k < sh->ndet; k++) {
            memcpy(out + o, em_val_(t, st->det_vars[k]), sh->det_len[k] * sizeof *out);
            o += sh->det_len[k];
        }
    }
    return EM_OK;
}

static void shape_release(density_shape *sh) {
    if (__atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t k = 0; k < sh->nlat; k++) free((char *)sh->lat[k].name);
    for (size_t k = 0; k < sh->ndet; k++) free(sh->det_names[k]);
    free(sh->lat);
    free(sh->det_names);
    free(sh->det_len);
    free(sh);
}

static void density_destroy(void *state) {
    density_state *st = state;
    if (!st) return;
    em_model_destroy(st->m);
    free(st->values);
    free(st->leaves);
    free(st->seen);
    free(st->det_vars);
    free(st->terms);
    free(st->site_name);
    free(st->site_end);
    drop_site_copies(st);
    if (st->shape) shape_release(st->shape);
    free(st);
}

static density_state *state_new(density_shape *sh) {
    density_state *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->m = em_model_create(sh->seed, NULL);
    st->values = calloc(sh->nlat ? sh->nlat : 1, sizeof *st->values);
    st->leaves = calloc(sh->nlat ? sh->nlat : 1, sizeof *st->leaves);
    st->seen = calloc(sh->nlat ? sh->nlat : 1, sizeof *st->seen);
    st->det_vars = calloc(sh->ndet ? sh->ndet : 1, sizeof *st->det_vars);
    st->cap_terms = sh->nlat + 16;
    st->terms = malloc(st->cap_terms * sizeof *st->terms);
    if (!st->m || !st->values || !st->leaves || !st->seen || !st->det_vars || !st->terms) {
        em_model_destroy(st->m);
        free(st->values);
        free(st->leaves);
        free(st->seen);
        free(st->det_vars);
        free(st->terms);
        free(st);
        return NULL;
    }
    st->m->evaluate_only = 1;
    em_model_set_params(st->m, sh->params);
    __atomic_add_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL);
    st->shape = sh;
    return st;
}

static void *density_clone(const void *state) { return state_new(((const density_state *)state)->shape); }

static const em_logdensity_impl model_impl = {density_eval, density_constrain, density_clone, density_destroy};

em_status em_trace_check_data(em_tape *t, em_trace *tr, em_error *err) {
    for (size_t i = 0; i < em_trace_count(tr); i++) {
        em_site *site = em_trace_site(tr, i);
        if (!site->is_observed || (site->kind != EM_SITE_OBSERVE && site->kind != EM_SITE_SAMPLE)) continue;
        em_error e = {0};
        if (em_dist_check_data(&site->dist, em_val_(t, site->value), site->len, &e) != EM_OK)
            return em_error_set(err, e.status, "site '%s': %s", site->name, e.msg);
    }
    return EM_OK;
}

em_status em_model_check_data(em_model_fn fn, const void *data, em_param_store *params, em_error *err) {
    if (!fn) return em_error_set(err, EM_ERR_ARG, "check_data: no model function");
    em_model *m = em_model_create(0, err);
    em_trace *tr = em_trace_create();
    em_rng *rng = em_rng_create(0, 0x5eed);
    em_status s = m && tr && rng ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "check_data: out of memory");
    if (s == EM_OK) {
        m->evaluate_only = 1;
        em_model_set_params(m, params);
        em_trace_handler th;
        em_seed_handler seedh;
        em_trace_handler_init(&th, tr);
        em_seed_handler_init(&seedh, rng);
        em_push(m, &th.base);
        em_push(m, &seedh.base);
        s = em_model_run(m, fn, data, err);
        em_pop(m, &seedh.base);
        em_pop(m, &th.base);
        if (s == EM_OK) s = em_trace_check_data(em_model_tape(m), tr, err);
    }
    em_rng_destroy(rng);
    em_trace_destroy(tr);
    em_model_destroy(m);
    return s;
}

/* CmdStan-style names of the constrained values of one site. */
static void append_names(em_buf *b, const char *name, size_t len, em_transform_kind kind) {
    if (len == 1) {
        em_buf_append(b, name, strlen(name) + 1);
        return;
    }
    size_t K = (size_t)(sqrt((double)len) + 0.5);
    for (size_t i = 0; i < len; i++) {
        if (kind == EM_TRANSFORM_CORR_CHOLESKY && K * K == len)
            em_buf_printf(b, "%s.%zu.%zu", name, i / K + 1, i % K + 1);
        else
            em_buf_printf(b, "%s.%zu", name, i + 1);
        em_buf_append(b, "", 1); /* keep the terminating NUL inside the buffer */
    }
}

em_logdensity *em_logdensity_from_model(em_model_fn fn, const void *data, const em_logdensity_options *opt,
                                        em_error *err) {
    em_init();
    em_logdensity_options o = {0};
    if (opt) o = *opt;
    if (!fn) {
        em_error_set(err, EM_ERR_ARG, "logdensity: no model function");
        return NULL;
    }
    density_shape *sh = calloc(1, sizeof *sh);
    em_model *m = em_model_create(o.seed, err);
    em_trace *tr = em_trace_create();
    em_rng *rng = em_rng_create(o.seed, 0x5eed);
    em_buf names = {0};
    em_logdensity *ld = NULL;
    density_state *st = NULL;
    if (!sh || !m || !tr || !rng) {
        em_error_set(err, EM_ERR_NOMEM, "logdensity: out of memory");
        goto done;
    }
    sh->fn = fn;
    sh->data = data;
    sh->params = o.params;
    sh->include_det = o.include_deterministic;
    sh->seed = o.seed;
    sh->no_replay = o.no_replay;
    sh->no_jacobian = o.no_jacobian;
    m->evaluate_only = 1;
    em_model_set_params(m, o.params);

    /* Discovery: one run with prior draws under trace. */
    em_trace_handler th;
    em_seed_handler seedh;
    em_trace_handler_init(&th, tr);
    em_seed_handler_init(&seedh, rng);
    em_push(m, &th.base);
    em_push(m, &seedh.base);
    em_status s = em_model_run(m, fn, data, err);
    em_pop(m, &seedh.base);
    em_pop(m, &th.base);
    if (s != EM_OK) goto done;

    if ((s = em_trace_check_data(em_model_tape(m), tr, err)) != EM_OK) goto done;

    size_t n = em_trace_count(tr);
    sh->lat = calloc(n ? n : 1, sizeof *sh->lat);
    sh->det_names = calloc(n ? n : 1, sizeof *sh->det_names);
    sh->det_len = calloc(n ? n : 1, sizeof *sh->det_len);
    if (!sh->lat || !sh->det_names || !sh->det_len) {
        em_error_set(err, EM_ERR_NOMEM, "logdensity: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        em_site *site = em_trace_site(tr, i);
        if (site->kind == EM_SITE_DETERMINISTIC && sh->include_det) {
            sh->det_names[sh->ndet] = strdup(site->name);
            sh->det_len[sh->ndet++] = site->len;
            continue;
        }
        if (site->kind != EM_SITE_SAMPLE || site->is_observed) continue;
        em_support sup = em_dist_support(&site->dist);
        if (em_support_is_discrete(sup)) {
            em_error_set(err, EM_ERR_MODEL,
                         "site '%s': a discrete latent (%s) has no gradient; observe it, or marginalise it out",
                         site->name, site->dist.ops->name);
            goto done;
        }
        em_latent_info *li = &sh->lat[sh->nlat];
        li->name = strdup(site->name);
        li->len = site->len;
        li->transform = em_support_transform(sup);
        li->free_len = em_transform_free_len(&li->transform, site->len);
        li->offset = sh->dim;
        if (!li->name || li->free_len == 0) {
            em_error_set(err, li->name ? EM_ERR_SHAPE : EM_ERR_NOMEM,
                         "site '%s': %zu values do not fit the %s transform", site->name, site->len,
                         em_transform_name(li->transform.kind));
            free((char *)li->name);
            goto done;
        }
        sh->dim += li->free_len;
        sh->nout += li->len;
        sh->nlat++;
        append_names(&names, li->name, li->len, li->transform.kind);
    }
    if (sh->nlat == 0) {
        em_error_set(err, EM_ERR_MODEL, "model has no latent sites: nothing to infer");
        goto done;
    }
    for (size_t k = 0; k < sh->ndet; k++) {
        append_names(&names, sh->det_names[k], sh->det_len[k], EM_TRANSFORM_IDENTITY);
        sh->nout += sh->det_len[k];
    }
    if (names.failed) {
        em_error_set(err, EM_ERR_NOMEM, "logdensity: out of memory");
        goto done;
    }
    {
        const char **out_names = malloc(sh->nout * sizeof *out_names);
        if (!out_names) {
            em_error_set(err, EM_ERR_NOMEM, "logdensity: out of memory");
            goto done;
        }
        const char *p = names.data;
        for (size_t i = 0; i < sh->nout; i++) {
            out_names[i] = p;
            p += strlen(p) + 1;
        }
        st = state_new(sh);
        if (st) ld = em_logdensity_create(&model_impl, st, sh->dim, sh->nout, out_names);
        free(out_names);
        if (!ld) {
            em_error_set(err, EM_ERR_NOMEM, "logdensity: out of memory");
            if (st) sh = NULL; /* the state holds the shape: released by density_destroy */
            density_destroy(st);
            st = NULL;
            goto done;
        }
        sh = NULL; /* owned by the state now */
    }
done:
    if (sh && sh->refs == 0) {
        sh->refs = 1;
        shape_release(sh);
    }
    em_buf_free(&names);
    em_trace_destroy(tr);
    em_rng_destroy(rng);
    em_model_destroy(m);
    return ld;
}

size_t em_logdensity_num_latents(const em_logdensity *ld) {
    if (em_logdensity_impl_of(ld) != &model_impl) return 0;
    return ((density_state *)em_logdensity_state(ld))->shape->nlat;
}

const em_latent_info *em_logdensity_latent(const em_logdensity *ld, size_t i) {
    if (em_logdensity_impl_of(ld) != &model_impl) return NULL;
    const density_shape *sh = ((density_state *)em_logdensity_state(ld))->shape;
    return i < sh->nlat ? &sh->lat[i] : NULL;
}

int em_logdensity_replays(const em_logdensity *ld) {
    if (em_logdensity_impl_of(ld) != &model_impl) return 0;
    return ((density_state *)em_logdensity_state(ld))->replay;
}

int em_logdensity_memory(const em_logdensity *ld, size_t *bytes, size_t *mallocs) {
    if (em_logdensity_impl_of(ld) != &model_impl) return 0;
    em_arena *a = em_tape_arena(em_model_tape(((density_state *)em_logdensity_state(ld))->m));
    *bytes = em_arena_capacity(a);
    *mallocs = em_arena_malloc_count(a);
    return 1;
}
