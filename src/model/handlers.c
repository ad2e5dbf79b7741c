/* handlers.c — trace, replay, condition, substitute, block, scale, mask and seed.
 *
 * Each handler is two small callbacks on a struct that embeds em_handler (Pyro's poutine
 * messengers, without a global stack: the stack belongs to the em_model).
 */
#include "ember/handlers.h"
#include "internal/model_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- trace ------------------------------------------------------------------------------- */

struct em_trace {
    em_site *sites;
    size_t n, cap;
};

em_trace *em_trace_create(void) { return calloc(1, sizeof(em_trace)); }

void em_trace_clear(em_trace *tr) {
    for (size_t i = 0; i < tr->n; i++) free((char *)tr->sites[i].name);
    tr->n = 0;
}

void em_trace_destroy(em_trace *tr) {
    if (!tr) return;
    em_trace_clear(tr);
    free(tr->sites);
    free(tr);
}

size_t em_trace_count(const em_trace *tr) { return tr->n; }
em_site *em_trace_site(em_trace *tr, size_t i) { return i < tr->n ? &tr->sites[i] : NULL; }

em_site *em_trace_find(em_trace *tr, const char *name) {
    for (size_t i = 0; i < tr->n; i++)
        if (strcmp(tr->sites[i].name, name) == 0) return &tr->sites[i];
    return NULL;
}

em_var em_site_log_prob(em_tape *t, em_site *s) {
    if (!s->has_log_prob) {
        s->log_prob = em_site_lp(t, s->kind, s->masked, &s->dist, s->value, s->scale);
        s->has_log_prob = 1;
    }
    return s->log_prob;
}

em_var em_trace_log_prob_sum(em_tape *t, em_trace *tr, unsigned kinds) {
    em_var total = em_scalar(t, 0.0);
    for (size_t i = 0; i < tr->n; i++) {
        em_site *s = &tr->sites[i];
        if (!(kinds & (1u << s->kind))) continue;
        total = em_op_add(t, total, em_site_log_prob(t, s));
    }
    return total;
}

static void trace_post(em_handler *h, em_msg *msg) {
    em_trace *tr = ((em_trace_handler *)h)->trace;
    em_model *m = msg->model;
    if (em_trace_find(tr, msg->name)) {
        if (msg->kind == EM_SITE_PARAM) return; /* a parameter may be read more than once */
        em_model_fail(m, EM_ERR_MODEL, "site '%s' appears twice in one run (site names must be unique)", msg->name);
        return;
    }
    if (tr->n == tr->cap) {
        size_t nc = tr->cap ? 2 * tr->cap : 16;
        em_site *ns = realloc(tr->sites, nc * sizeof *ns);
        if (!ns) {
            em_model_fail(m, EM_ERR_NOMEM, "trace: out of memory");
            return;
        }
        tr->sites = ns;
        tr->cap = nc;
    }
    char *name = strdup(msg->name);
    if (!name) {
        em_model_fail(m, EM_ERR_NOMEM, "trace: out of memory");
        return;
    }
    em_site *s = &tr->sites[tr->n++];
    memset(s, 0, sizeof *s);
    s->name = name;
    s->kind = msg->kind;
    s->dist = msg->dist;
    s->value = msg->value;
    s->len = msg->len;
    s->is_observed = msg->is_observed;
    s->scale = msg->scale;
    s->masked = msg->masked;
    s->constraint = msg->constraint;
    s->nplates = msg->nplates;
    memcpy(s->plates, msg->plates, sizeof s->plates);
    s->log_prob = msg->log_prob;
    s->has_log_prob = msg->has_log_prob;
}

void em_trace_handler_init(em_trace_handler *h, em_trace *tr) {
    memset(h, 0, sizeof *h);
    h->base.postprocess = trace_post;
    h->base.kind = "trace";
    h->trace = tr;
}

/* ---- replay ------------------------------------------------------------------------------ */

static void replay_process(em_handler *h, em_msg *msg) {
    if (msg->kind != EM_SITE_SAMPLE || msg->is_observed) return;
    em_site *s = em_trace_find(((em_replay_handler *)h)->trace, msg->name);
    if (!s) return;
    if (s->kind != EM_SITE_SAMPLE || s->is_observed) {
        em_model_fail(msg->model, EM_ERR_MODEL, "replay: site '%s' is a %s%s site in the trace, not a latent sample",
                      msg->name, s->is_observed ? "observed " : "", em_site_kind_name(s->kind));
        return;
    }
    msg->value = s->value;
    msg->done = 1;
}

void em_replay_handler_init(em_replay_handler *h, em_trace *tr) {
    memset(h, 0, sizeof *h);
    h->base.process = replay_process;
    h->base.kind = "replay";
    h->trace = tr;
}

/* ---- condition and substitute --------------------------------------------------------------- */

static long lookup(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return (long)i;
    return -1;
}

/* The index of msg's name in the list (marking it used), or -1. */
static long named_lookup(em_named_values *l, const char *name) {
    long i = lookup(l->names, l->n, name);
    if (i >= 0 && i < 64) l->used[i] = 1;
    return i;
}

static void named_init(em_named_values *l, const char *const *names, const double *const *values,
                       const size_t *lens, size_t n) {
    memset(l, 0, sizeof *l);
    l->names = names;
    l->values = values;
    l->lens = lens;
    l->n = n;
}

static const char *named_unused(const em_named_values *l) {
    for (size_t i = 0; i < l->n && i < 64; i++)
        if (!l->used[i]) return l->names[i];
    return NULL;
}

static void condition_process(em_handler *h, em_msg *msg) {
    em_named_values *l = &((em_condition_handler *)h)->list;
    if (msg->kind != EM_SITE_SAMPLE) return;
    long i = named_lookup(l, msg->name);
    if (i < 0) return;
    msg->obs = l->values[i];
    msg->len = l->lens[i];
    msg->is_observed = 1;
}

void em_condition_handler_init(em_condition_handler *h, const char *const *names, const double *const *values,
                               const size_t *lens, size_t n) {
    memset(h, 0, sizeof *h);
    h->base.process = condition_process;
    h->base.kind = "condition";
    named_init(&h->list, names, values, lens, n);
}

const char *em_condition_unused(const em_condition_handler *h) { return named_unused(&h->list); }

static void substitute_process(em_handler *h, em_msg *msg) {
    em_named_values *l = &((em_substitute_handler *)h)->list;
    if ((msg->kind != EM_SITE_SAMPLE && msg->kind != EM_SITE_PARAM) || msg->is_observed) return;
    long i = named_lookup(l, msg->name);
    if (i < 0) return;
    msg->value = em_const(em_model_tape(msg->model), l->values[i], l->lens[i]);
    msg->done = 1;
}

void em_substitute_handler_init(em_substitute_handler *h, const char *const *names, const double *const *values,
                                const size_t *lens, size_t n) {
    memset(h, 0, sizeof *h);
    h->base.process = substitute_process;
    h->base.kind = "substitute";
    named_init(&h->list, names, values, lens, n);
}

const char *em_substitute_unused(const em_substitute_handler *h) { return named_unused(&h->list); }

/* ---- block ------------------------------------------------------------------------------- */

static void block_process(em_handler *h, em_msg *msg) {
    em_block_handler *b = (em_block_handler *)h;
    int listed = b->names && lookup(b->names, b->n, msg->name) >= 0;
    msg->stop = b->expose ? !listed : (b->names ? listed : 1);
}

void em_block_handler_init(em_block_handler *h, const char *const *names, size_t n, int expose) {
    memset(h, 0, sizeof *h);
    h->base.process = block_process;
    h->base.kind = "block";
    h->names = names;
    h->n = n;
    h->expose = expose;
}

/* ---- scale, mask, seed --------------------------------------------------------------------- */

static void scale_process(em_handler *h, em_msg *msg) { msg->scale *= ((em_scale_handler *)h)->factor; }

void em_scale_handler_init(em_scale_handler *h, double factor) {
    memset(h, 0, sizeof *h);
    h->base.process = scale_process;
    h->base.kind = "scale";
    h->factor = factor;
}

static void mask_process(em_handler *h, em_msg *msg) {
    if (!((em_mask_handler *)h)->keep) msg->masked = 1;
}

void em_mask_handler_init(em_mask_handler *h, int keep) {
    memset(h, 0, sizeof *h);
    h->base.process = mask_process;
    h->base.kind = "mask";
    h->keep = keep;
}

static void seed_process(em_handler *h, em_msg *msg) {
    if (!msg->rng) msg->rng = ((em_seed_handler *)h)->rng;
}

void em_seed_handler_init(em_seed_handler *h, em_rng *rng) {
    memset(h, 0, sizeof *h);
    h->base.process = seed_process;
    h->base.kind = "seed";
    h->rng = rng;
}

/* ---- leave out ------------------------------------------------------------------------------- */

static void leave_out_process(em_handler *h, em_msg *msg) {
    em_leave_out_handler *lh = (em_leave_out_handler *)h;
    if ((msg->kind != EM_SITE_OBSERVE && msg->kind != EM_SITE_SAMPLE) || !msg->is_observed) return;
    if (strcmp(msg->name, lh->site) != 0) return;
    msg->leave_out = lh->idx;
    msg->nleave_out = lh->n;
    lh->found = 1;
}

void em_leave_out_handler_init(em_leave_out_handler *h, const char *site, const size_t *idx, size_t n) {
    memset(h, 0, sizeof *h);
    h->base.process = leave_out_process;
    h->base.kind = "leave_out";
    h->site = site;
    h->idx = idx;
    h->n = n;
}
