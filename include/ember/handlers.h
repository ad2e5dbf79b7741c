/* handlers.h — the standard effect handlers (Pyro's poutine, in C).
 *
 * Each handler is a small struct that embeds em_handler first; initialise it with its
 * em_*_handler function, push it on a model with em_push, run, pop it with em_pop. The structs
 * live wherever the caller likes (usually the stack); nothing is allocated except by trace.
 *
 *     em_trace *tr = em_trace_create();
 *     em_trace_handler th;  em_trace_handler_init(&th, tr);
 *     em_seed_handler  sh;  em_seed_handler_init(&sh, rng);
 *     em_push(m, &th.base); em_push(m, &sh.base);
 *     em_model_run(m, model, data, &err);
 *     em_pop(m, &sh.base);  em_pop(m, &th.base);
 *
 * Name lists (condition, substitute, block) are looked up by name; a name in a list that no
 * site of the run used is reported by em_*_unused() so a typo does not pass silently.
 */
#ifndef EMBER_HANDLERS_H
#define EMBER_HANDLERS_H

#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- trace ---------------------------------------------------------------------------------- */

/* A recorded site. The vars refer to the tape of the run that made the trace: read them before
 * that tape is reset. */
typedef struct em_site {
    const char *name;         /* copied */
    em_site_kind kind;
    em_dist dist;
    em_var value;
    size_t len;
    int is_observed;
    double scale;
    int masked;
    em_var log_prob;          /* computed on demand by em_site_log_prob */
    int has_log_prob;
    em_constraint constraint; /* PARAM */
    const char *plates[EM_MAX_PLATES];
    int nplates;
} em_site;

typedef struct em_trace em_trace;
em_trace *em_trace_create(void);
void em_trace_destroy(em_trace *tr);
void em_trace_clear(em_trace *tr);
size_t em_trace_count(const em_trace *tr);
em_site *em_trace_site(em_trace *tr, size_t i);
em_site *em_trace_find(em_trace *tr, const char *name);
/* Scaled log density of a SAMPLE, OBSERVE or FACTOR site (0 for masked sites). */
em_var em_site_log_prob(em_tape *t, em_site *s);
/* Sum of the log densities of the sites of the given kinds (bit mask of 1u << em_site_kind);
 * latent_only skips observed SAMPLE sites. */
em_var em_trace_log_prob_sum(em_tape *t, em_trace *tr, unsigned kinds);

typedef struct em_trace_handler {
    em_handler base;
    em_trace *trace;
} em_trace_handler;
void em_trace_handler_init(em_trace_handler *h, em_trace *tr);

/* ---- replay: latent SAMPLE sites take their values from a trace ----------------------------- */
typedef struct em_replay_handler {
    em_handler base;
    em_trace *trace;
} em_replay_handler;
void em_replay_handler_init(em_replay_handler *h, em_trace *tr);

/* ---- condition and substitute: named sites take given values -------------------------------- */

/* A list of (name, values, length) triples, and which names a run has used. */
typedef struct em_named_values {
    const char *const *names;
    const double *const *values;
    const size_t *lens;
    size_t n;
    unsigned char used[64]; /* tracked for the first 64 names */
} em_named_values;

/* condition: named SAMPLE sites become observed at the given values. */
typedef struct em_condition_handler {
    em_handler base;
    em_named_values list;
} em_condition_handler;
void em_condition_handler_init(em_condition_handler *h, const char *const *names,
                               const double *const *values, const size_t *lens, size_t n);
/* The first name that matched no site, or NULL. */
const char *em_condition_unused(const em_condition_handler *h);

/* substitute: named SAMPLE or PARAM sites take fixed values (not observed). */
typedef struct em_substitute_handler {
    em_handler base;
    em_named_values list;
} em_substitute_handler;
void em_substitute_handler_init(em_substitute_handler *h, const char *const *names,
                                const double *const *values, const size_t *lens, size_t n);
const char *em_substitute_unused(const em_substitute_handler *h);

/* ---- block: hide sites from the handlers further out ---------------------------------------- */
typedef struct em_block_handler {
    em_handler base;
    const char *const *names; /* with expose = 0: hide these; expose = 1: hide all but these */
    size_t n;
    int expose;
} em_block_handler;
/* names == NULL, n == 0, expose == 0 hides everything. */
void em_block_handler_init(em_block_handler *h, const char *const *names, size_t n, int expose);

/* ---- scale and mask ------------------------------------------------------------------------- */
typedef struct em_scale_handler {
    em_handler base;
    double factor;
} em_scale_handler;
void em_scale_handler_init(em_scale_handler *h, double factor);

typedef struct em_mask_handler {
    em_handler base;
    int keep; /* 0: the log densities of the sites inside count as 0 */
} em_mask_handler;
void em_mask_handler_init(em_mask_handler *h, int keep);

/* ---- leave out: single observations of one site left out of the log density --------------- */

/* The observe site called site keeps its data, but the log density of its elements idx[0..n)
 * is left out (em_dist_log_prob_at): the model as if those rows were not there, which is what
 * exact leave-one-out and K-fold refits need without rebuilding the data. Prediction and the
 * pointwise log-likelihood still see every element. */
typedef struct em_leave_out_handler {
    em_handler base;
    const char *site;
    const size_t *idx;
    size_t n;
    int found; /* the site was met */
} em_leave_out_handler;
void em_leave_out_handler_init(em_leave_out_handler *h, const char *site, const size_t *idx, size_t n);

/* ---- seed: an explicit RNG for every draw below it -------------------------------------------- */
typedef struct em_seed_handler {
    em_handler base;
    em_rng *rng;
} em_seed_handler;
void em_seed_handler_init(em_seed_handler *h, em_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
