/* model.c — the em_model context, sites, the handler stack and plates. See model.h.
 *
 * A site call builds an em_msg and runs it through the stack in Pyro's four phases: process
 * (innermost handler first, stopping early if a handler sets msg.stop), resolution of the
 * value's length, default processing (draw, read data, or read a parameter) unless a handler
 * already supplied the value, and postprocess (outermost visited handler first).
 */
#include "internal/model_impl.h"
#include "ember/handlers.h"
#include "internal/tape.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

const char *em_site_kind_name(em_site_kind k) {
    switch (k) {
    case EM_SITE_SAMPLE: return "sample";
    case EM_SITE_OBSERVE: return "observe";
    case EM_SITE_PARAM: return "param";
    case EM_SITE_DETERMINISTIC: return "deterministic";
    case EM_SITE_FACTOR: return "factor";
    }
    return "unknown";
}

em_model *em_model_create(uint64_t seed, em_error *err) {
    em_init();
    em_model *m = calloc(1, sizeof *m);
    if (!m) {
        em_error_set(err, EM_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    m->tape = em_tape_create();
    m->rng = em_rng_create(seed, 0);
    if (!m->tape || !m->rng) {
        em_model_destroy(m);
        em_error_set(err, EM_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    return m;
}

void em_model_destroy(em_model *m) {
    if (!m) return;
    em_tape_destroy(m->tape);
    em_rng_destroy(m->rng);
    free(m);
}

em_tape *em_model_tape(em_model *m) { return m->tape; }
em_rng *em_model_rng(em_model *m) {
    m->replay_blocked = 1; /* the caller may draw: a replayed tape would repeat one draw */
    return m->rng;
}
void em_model_set_params(em_model *m, em_param_store *ps) { m->params = ps; }
em_param_store *em_model_params(em_model *m) { return m->params; }

em_status em_push(em_model *m, em_handler *h) {
    if (m->depth == EM_MAX_HANDLERS) {
        em_model_fail(m, EM_ERR_ARG, "handler stack is full (%d handlers)", EM_MAX_HANDLERS);
        return EM_ERR_ARG;
    }
    for (int i = 0; i < m->depth; i++)
        if (m->stack[i] == h) {
            em_model_fail(m, EM_ERR_ARG, "%s handler is already on the stack", h->kind ? h->kind : "a");
            return EM_ERR_ARG;
        }
    m->stack[m->depth++] = h;
    return EM_OK;
}

em_status em_pop(em_model *m, em_handler *h) {
    if (m->depth == 0 || m->stack[m->depth - 1] != h) {
        em_model_fail(m, EM_ERR_ARG, "pop of %s handler that is not on top of the stack",
                      h && h->kind ? h->kind : "a");
        return EM_ERR_ARG;
    }
    m->depth--;
    return EM_OK;
}

em_var em_model_fail(em_model *m, em_status s, const char *fmt, ...) {
    char msg[sizeof(((em_error *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return em_tape_fail(m->tape, s, "%s", msg);
}

em_status em_model_run(em_model *m, em_model_fn fn, const void *data, em_error *err) {
    if (!fn) return em_error_set(err, EM_ERR_ARG, "model run: no model function");
    int depth = m->depth;
    m->last_site = NULL;
    int clean = em_tape_status(m->tape) == EM_OK; /* an earlier error is not this run's to place */
    fn(m, data);
    if (m->depth != depth) {
        /* a plate left open (a `break` out of EM_PLATE) or an unbalanced push */
        em_model_fail(m, EM_ERR_MODEL, "model left %d handler(s) or plate(s) open", m->depth - depth);
        m->depth = depth;
    }
    em_tape *t = m->tape;
    if (clean && t->err.status != EM_OK && m->err_named_generation != t->generation) {
        /* no site call followed the error (a plate of size 0 skips its body): say where it was */
        m->err_named_generation = t->generation;
        size_t len = strlen(t->err.msg);
        if (m->last_site)
            snprintf(t->err.msg + len, sizeof t->err.msg - len, " (after site '%s')", m->last_site);
        else
            snprintf(t->err.msg + len, sizeof t->err.msg - len, " (before the model's first site)");
    }
    m->last_site = NULL; /* the name may not outlive the run */
    em_status s = em_tape_status(m->tape);
    if (s != EM_OK && err) {
        em_error_set(err, s, "%s", em_tape_error(m->tape)->msg);
    }
    return s;
}

/* ---- message processing ------------------------------------------------------------------ */

static void msg_init(em_msg *msg, em_model *m, em_site_kind kind, const char *name) {
    memset(msg, 0, sizeof *msg);
    msg->model = m;
    msg->kind = kind;
    msg->name = name;
    msg->value = EM_VAR_INVALID;
    msg->scale = 1.0;
    msg->plate_len = 1;
    msg->log_prob = EM_VAR_INVALID;
}

em_var em_site_lp(em_tape *t, em_site_kind kind, int masked, const em_dist *d, em_var value, double scale) {
    em_var lp;
    if (masked || kind == EM_SITE_PARAM || kind == EM_SITE_DETERMINISTIC)
        return em_scalar(t, 0.0);
    lp = kind == EM_SITE_FACTOR ? value : em_dist_log_prob(d, value);
    if (scale != 1.0) lp = em_op_mul(t, lp, em_scalar(t, scale));
    return lp;
}

em_var em_msg_log_prob(em_msg *msg) {
    if (!msg->has_log_prob) {
        em_tape *t = msg->model->tape;
        msg->log_prob = em_site_lp(t, msg->kind, msg->masked, &msg->dist, msg->value, msg->scale);
        if (msg->nleave_out && !msg->masked && msg->is_observed) {
            em_var out = em_dist_log_prob_at(&msg->dist, msg->value, msg->leave_out, msg->nleave_out);
            msg->log_prob = em_op_sub(t, msg->log_prob, msg->scale == 1.0 ? out : em_op_mul(t, out, em_scalar(t, msg->scale)));
        }
        msg->has_log_prob = 1;
    }
    return msg->log_prob;
}

/* The value's length from the distribution, the plates and the data; 0 after an error. */
static size_t resolve_len(em_msg *msg, size_t obs_len) {
    em_model *m = msg->model;
    if (msg->kind != EM_SITE_SAMPLE && msg->kind != EM_SITE_OBSERVE) return msg->len;
    size_t ev = em_dist_event_len(&msg->dist);
    size_t bl = msg->dist.batch_len ? msg->dist.batch_len : 1;
    if (ev == 0) ev = 1;
    if (msg->is_observed) {
        size_t len = obs_len;
        if (len == 0 || len % ev != 0) {
            em_model_fail(m, EM_ERR_SHAPE, "site '%s': %zu observed values for a %s of event length %zu",
                          msg->name, len, msg->dist.ops->name, ev);
            return 0;
        }
        if (msg->plate_len > 1 && len != msg->plate_len * ev) {
            em_model_fail(m, EM_ERR_SHAPE, "site '%s': %zu observed values inside plate '%s' of size %zu",
                          msg->name, len, msg->plates[msg->nplates - 1], msg->plate_len);
            return 0;
        }
        if (ev == 1 && bl > 1 && len != bl) {
            em_model_fail(m, EM_ERR_SHAPE, "site '%s': %zu observed values but the %s has batch length %zu",
                          msg->name, len, msg->dist.ops->name, bl);
            return 0;
        }
        return len;
    }
    /* An observe site that a handler turned into a draw (predictive checks) keeps the length
     * of its data, so a draw replaces the observations one for one. */
    if (msg->kind == EM_SITE_OBSERVE && obs_len) {
        if (obs_len % ev != 0) {
            em_model_fail(m, EM_ERR_SHAPE, "site '%s': %zu values for a %s of event length %zu", msg->name, obs_len,
                          msg->dist.ops->name, ev);
            return 0;
        }
        return obs_len;
    }
    if (ev > 1) return ev * msg->plate_len;
    if (msg->plate_len > 1) {
        if (bl != 1 && bl != msg->plate_len) {
            em_model_fail(m, EM_ERR_SHAPE, "site '%s': the %s has batch length %zu inside plate '%s' of size %zu",
                          msg->name, msg->dist.ops->name, bl, msg->plates[msg->nplates - 1], msg->plate_len);
            return 0;
        }
        return msg->plate_len;
    }
    return bl;
}

static void default_process(em_msg *msg, size_t obs_len) {
    em_model *m = msg->model;
    em_tape *t = m->tape;
    if (msg->done) return;
    switch (msg->kind) {
    case EM_SITE_SAMPLE:
    case EM_SITE_OBSERVE:
        if (msg->is_observed) {
            msg->value = em_const(t, msg->obs, obs_len);
        } else {
            em_rng *rng = msg->rng ? msg->rng : m->rng;
            if (msg->dist.ops->reparameterized) {
                msg->value = em_dist_rsample(&msg->dist, rng, msg->len);
            } else {
                double *buf = em_arena_alloc(em_tape_arena(t), msg->len * sizeof *buf);
                em_error e = {0};
                if (!buf) {
                    em_model_fail(m, EM_ERR_NOMEM, "site '%s': out of memory", msg->name);
                    return;
                }
                if (em_dist_sample(&msg->dist, rng, buf, msg->len, &e) != EM_OK) {
                    em_model_fail(m, e.status, "site '%s': %s", msg->name, e.msg);
                    return;
                }
                msg->value = em_const(t, buf, msg->len);
            }
        }
        break;
    case EM_SITE_PARAM:
        if (m->params) {
            em_error e = {0};
            long i = em_param_store_find(m->params, msg->name);
            if (i < 0) {
                if (em_param_store_add(m->params, msg->name, msg->init, msg->len, msg->constraint, &e) != EM_OK) {
                    em_model_fail(m, e.status, "param '%s': %s", msg->name, e.msg);
                    return;
                }
                i = em_param_store_find(m->params, msg->name);
            } else if (em_param_store_len(m->params, (size_t)i) != msg->len) {
                em_model_fail(m, EM_ERR_SHAPE, "param '%s': length %zu, but the store holds %zu values",
                              msg->name, msg->len, em_param_store_len(m->params, (size_t)i));
                return;
            }
            m->replay_blocked = 1;
            em_var u = m->evaluate_only
                           ? em_const(t, em_param_store_values(m->params) + em_param_store_offset(m->params, (size_t)i),
                                      msg->len)
                           : em_param_store_leaf(m->params, t, (size_t)i);
            em_constraint c = em_param_store_constraint(m->params, (size_t)i);
            msg->value = c.kind == EM_TRANSFORM_IDENTITY ? u : em_transform_forward(t, &c, u, NULL);
        } else {
            msg->value = em_const(t, msg->init, msg->len);
        }
        break;
    case EM_SITE_DETERMINISTIC:
    case EM_SITE_FACTOR:
        break;
    }
}

/* Run msg through the stack. Returns its value (invalid after an error). */
static em_var apply_stack(em_msg *msg, size_t obs_len) {
    em_model *m = msg->model;
    int lowest = m->depth;
    for (int i = m->depth - 1; i >= 0; i--) {
        em_handler *h = m->stack[i];
        if (h->process) h->process(h, msg);
        lowest = i;
        if (msg->stop) break;
    }
    if (em_tape_status(m->tape) != EM_OK) return EM_VAR_INVALID;
    if (msg->is_observed && msg->kind == EM_SITE_SAMPLE && msg->obs) {
        /* a condition handler observed this site: its data decides the length */
        if (!obs_len) obs_len = msg->len;
    }
    size_t len = resolve_len(msg, obs_len);
    if (!len) return EM_VAR_INVALID;
    msg->len = len;
    if (msg->done && em_var_ok(msg->value) && em_len(m->tape, msg->value) != len &&
        msg->kind != EM_SITE_DETERMINISTIC && msg->kind != EM_SITE_FACTOR) {
        return em_model_fail(m, EM_ERR_SHAPE, "site '%s': the value supplied by a handler has length %zu, expected %zu",
                             msg->name, em_len(m->tape, msg->value), len);
    }
    default_process(msg, len);
    if (!em_var_ok(msg->value)) {
        if (em_tape_status(m->tape) == EM_OK)
            em_model_fail(m, EM_ERR_MODEL, "site '%s': no value", msg->name);
        return EM_VAR_INVALID;
    }
    for (int i = lowest; i < m->depth; i++) {
        em_handler *h = m->stack[i];
        if (h->postprocess) h->postprocess(h, msg);
    }
    return msg->value;
}

void em_model_name_error(em_error *e, const char *site) {
    char quoted[160];
    snprintf(quoted, sizeof quoted, "'%s'", site);
    if (e->status == EM_OK || strstr(e->msg, quoted)) return;
    char msg[sizeof e->msg];
    if (snprintf(msg, sizeof msg, "site %s: %s", quoted, e->msg) < 0) return;
    memcpy(e->msg, msg, sizeof msg); /* a message cut at the end still starts with its site */
}

/* A distribution or an op reports what is wrong ("Normal: scale[0] = -1 must be positive")
 * without knowing where it is: the first site call after the error — the one whose arguments
 * were being built, or the one being handled — puts its name on the message, once. */
static void name_site_error(em_model *m, const char *name) {
    em_tape *t = m->tape;
    m->last_site = name;
    if (t->err.status == EM_OK || m->err_named_generation == t->generation) return;
    m->err_named_generation = t->generation;
    em_model_name_error(&t->err, name);
}

static int name_ok(em_model *m, const char *what, const char *name) {
    if (!name || !name[0]) {
        em_model_fail(m, EM_ERR_ARG, "%s: a site needs a non-empty name", what);
        return 0;
    }
    return 1;
}

em_var em_sample(em_model *m, const char *name, em_dist d) {
    if (!name_ok(m, "sample", name)) return EM_VAR_INVALID;
    em_var v = EM_VAR_INVALID;
    if (!d.ops) {
        if (em_tape_status(m->tape) == EM_OK)
            em_model_fail(m, EM_ERR_ARG, "sample '%s': invalid distribution", name);
    } else {
        em_msg msg;
        msg_init(&msg, m, EM_SITE_SAMPLE, name);
        msg.dist = d;
        v = apply_stack(&msg, 0);
    }
    name_site_error(m, name);
    return v;
}

em_var em_observe(em_model *m, const char *name, em_dist d, const double *y, size_t n) {
    if (!name_ok(m, "observe", name)) return EM_VAR_INVALID;
    em_var v = EM_VAR_INVALID;
    if (!d.ops) {
        if (em_tape_status(m->tape) == EM_OK)
            em_model_fail(m, EM_ERR_ARG, "observe '%s': invalid distribution", name);
    } else if (n == 0) {
        em_model_fail(m, EM_ERR_ARG, "observe '%s': no data (0 values): a model needs at least one observation", name);
    } else if (!y && !m->predicting) {
        em_model_fail(m, EM_ERR_ARG,
                      "observe '%s': no data (the data pointer is NULL); a model without its data can only predict "
                      "it (em_posterior_predict, em_predictive_*)",
                      name);
    } else {
        em_msg msg;
        msg_init(&msg, m, EM_SITE_OBSERVE, name);
        msg.dist = d;
        msg.obs = y;
        msg.is_observed = 1;
        v = apply_stack(&msg, n);
    }
    name_site_error(m, name);
    return v;
}

em_var em_param(em_model *m, const char *name, const double *init, size_t n, em_constraint c) {
    if (!name_ok(m, "param", name)) return EM_VAR_INVALID;
    if (!init || n == 0) return em_model_fail(m, EM_ERR_ARG, "param '%s': no initial value", name);
    em_msg msg;
    msg_init(&msg, m, EM_SITE_PARAM, name);
    msg.init = init;
    msg.len = n;
    msg.constraint = c;
    em_var v = apply_stack(&msg, 0);
    name_site_error(m, name);
    return v;
}

em_var em_deterministic(em_model *m, const char *name, em_var value) {
    if (!name_ok(m, "deterministic", name)) return EM_VAR_INVALID;
    em_var v = EM_VAR_INVALID;
    if (em_var_ok(value)) {
        em_msg msg;
        msg_init(&msg, m, EM_SITE_DETERMINISTIC, name);
        msg.value = value;
        msg.len = em_len(m->tape, value);
        msg.done = 1;
        v = apply_stack(&msg, 0);
    }
    name_site_error(m, name);
    return v;
}

void em_factor(em_model *m, const char *name, em_var log_density) {
    if (!name_ok(m, "factor", name)) return;
    if (em_var_ok(log_density)) {
        if (em_len(m->tape, log_density) != 1) log_density = em_op_sum(m->tape, log_density);
        em_msg msg;
        msg_init(&msg, m, EM_SITE_FACTOR, name);
        msg.value = log_density;
        msg.len = 1;
        msg.done = 1;
        apply_stack(&msg, 0);
    }
    name_site_error(m, name);
}

/* ---- plates -------------------------------------------------------------------------------- */

static void plate_process(em_handler *h, em_msg *msg) {
    em_plate *p = (em_plate *)h;
    if (msg->kind != EM_SITE_SAMPLE && msg->kind != EM_SITE_OBSERVE && msg->kind != EM_SITE_FACTOR) return;
    size_t used = p->subsample ? p->subsample : p->size;
    msg->plate_len *= used;
    msg->scale *= p->scale;
    if (msg->nplates < EM_MAX_PLATES) {
        /* outer plates are processed after inner ones: keep the list outermost first */
        memmove(msg->plates + 1, msg->plates, (size_t)msg->nplates * sizeof msg->plates[0]);
        msg->plates[0] = p->name;
        msg->nplates++;
    }
}

/* k distinct indices drawn uniformly from 0..n-1 in O(k) time whatever n is: Floyd's algorithm
 * (Bentley & Floyd 1987, "A sample of brilliance", CACM 30(9)), with an open-addressing hash set
 * for membership. The indices come in no particular order (like Pyro's randperm(n)[:k]).
 * Selection sampling (gsl_ran_choose) costs one RNG draw per element of n, and sorting the k
 * indices cost more than the rest of an SVI step; both dominated steps on large data sets. */
static em_status subsample_indices(em_arena *a, em_rng *rng, size_t n, size_t k, size_t *out) {
    size_t cap = 16;
    while (cap < 2 * k) cap *= 2;
    size_t *set = em_arena_calloc(a, cap * sizeof *set); /* holds index + 1; 0 is empty */
    if (!set) return EM_ERR_NOMEM;
    size_t c = 0;
    for (size_t j = n - k; j < n; j++) {
        size_t t = (size_t)gsl_rng_uniform_int(rng, (unsigned long)j + 1);
        for (int pass = 0; pass < 2; pass++) {
            size_t h = (t * 0x9E3779B97F4A7C15ull) & (cap - 1);
            while (set[h] && set[h] != t + 1) h = (h + 1) & (cap - 1);
            if (!set[h]) {
                set[h] = t + 1;
                out[c++] = t;
                break;
            }
            t = j; /* t already chosen: take j, which cannot be (Floyd) */
        }
    }
    return EM_OK;
}

em_plate *em_plate_begin(em_model *m, const char *name, size_t n, size_t subsample) {
    if (!name_ok(m, "plate", name)) return NULL;
    if (n == 0) {
        em_model_fail(m, EM_ERR_ARG, "plate '%s': size 0", name);
        return NULL;
    }
    if (subsample > n) {
        em_model_fail(m, EM_ERR_ARG, "plate '%s': subsample of %zu from a size of %zu", name, subsample, n);
        return NULL;
    }
    if (subsample == n || m->evaluate_only) subsample = 0;
    em_arena *a = em_tape_arena(m->tape);
    em_plate *p = em_arena_calloc(a, sizeof *p);
    /* The identity index list 0..n-1 is only built if asked for (em_plate_indices): most
     * models never ask, and building it on every evaluation was a visible cost in HMC. */
    size_t *idx = p && subsample ? em_arena_alloc(a, subsample * sizeof *idx) : NULL;
    if (!p || (subsample && !idx)) {
        em_model_fail(m, EM_ERR_NOMEM, "plate '%s': out of memory", name);
        return NULL;
    }
    p->arena = a;
    p->base.process = plate_process;
    p->base.kind = "plate";
    p->name = name;
    p->size = n;
    p->subsample = subsample;
    p->indices = idx;
    p->scale = subsample ? (double)n / (double)subsample : 1.0;
    if (subsample) {
        /* Draw the subset with the innermost seed handler's RNG when there is one, so that
         * seeded runs subsample reproducibly. */
        em_rng *rng = m->rng;
        for (int i = m->depth - 1; i >= 0; i--)
            if (m->stack[i]->kind && strcmp(m->stack[i]->kind, "seed") == 0) {
                rng = ((em_seed_handler *)m->stack[i])->rng;
                break;
            }
        if (subsample_indices(a, rng, n, subsample, idx) != EM_OK) {
            em_model_fail(m, EM_ERR_NOMEM, "plate '%s': out of memory", name);
            return NULL;
        }
    }
    if (em_push(m, &p->base) != EM_OK) return NULL;
    return p;
}

em_plate *em_plate_end(em_model *m, em_plate *p) {
    if (p) em_pop(m, &p->base);
    return NULL;
}

const size_t *em_plate_indices(const em_plate *p) {
    if (!p->indices) {
        em_plate *mp = (em_plate *)p; /* the lazily built list is a cache, not a change */
        mp->indices = em_arena_alloc(p->arena, p->size * sizeof *mp->indices);
        if (mp->indices)
            for (size_t i = 0; i < p->size; i++) mp->indices[i] = i;
    }
    return p->indices;
}
size_t em_plate_size(const em_plate *p) { return p->subsample ? p->subsample : p->size; }

const double *em_plate_select(em_model *m, const em_plate *p, const double *data) {
    if (!p->subsample) return data;
    size_t k = p->subsample;
    double *out = em_arena_alloc(em_tape_arena(m->tape), k * sizeof *out);
    if (!out) {
        em_model_fail(m, EM_ERR_NOMEM, "plate '%s': out of memory", p->name);
        return NULL;
    }
    for (size_t i = 0; i < k; i++) out[i] = data[p->indices[i]];
    return out;
}

const double *em_plate_select_rows(em_model *m, const em_plate *p, const double *X, size_t cols) {
    if (!p->subsample) return X;
    size_t k = p->subsample;
    double *out = em_arena_alloc(em_tape_arena(m->tape), k * cols * sizeof *out);
    if (!out) {
        em_model_fail(m, EM_ERR_NOMEM, "plate '%s': out of memory", p->name);
        return NULL;
    }
    for (size_t i = 0; i < k; i++) memcpy(out + i * cols, X + p->indices[i] * cols, cols * sizeof *out);
    return out;
}
