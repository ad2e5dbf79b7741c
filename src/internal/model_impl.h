/* internal/model_impl.h — the em_model context's layout, shared by model.c, handlers.c and
 * model_logdensity.c. */
#ifndef EMBER_INTERNAL_MODEL_IMPL_H
#define EMBER_INTERNAL_MODEL_IMPL_H

#include "ember/handlers.h"
#include "ember/model.h"
#include "internal/tape.h"

#define EM_MAX_HANDLERS 32

struct em_model {
    em_tape *tape;
    em_handler *stack[EM_MAX_HANDLERS];
    int depth;
    em_rng *rng;
    em_param_store *params;
    /* Evaluation only (density mode, predictive draws, initialisation): plates use every index
     * (HMC needs the full data) and param sites read the store as constants — no gradient to
     * the parameters and no write to a store that clones on other threads share. */
    int evaluate_only;
    /* Set by a run that did something a recorded tape cannot repeat: the model drew from its
     * RNG, or read a param site (the store may change or move between evaluations). The
     * density then runs the model every time instead of replaying its tape. */
    int replay_blocked;
    /* A predictive run that draws the observe sites: an observe site may then come without
     * data (em_observe with y == NULL), and is simply predicted. */
    int predicting;
    /* The tape generation whose error has been attributed to a site (see name_site_error),
     * and the last site called in the current run (for an error no site call follows). */
    uint64_t err_named_generation;
    const char *last_site;
};

/* Check every observed site of a traced run against its distribution's support
 * (em_dist_check_data); the message names the site. */
em_status em_trace_check_data(em_tape *t, em_trace *tr, em_error *err);

struct em_plate {
    em_handler base;
    const char *name;
    size_t size, subsample;
    size_t *indices; /* the subsample, or 0..size-1 built on first request */
    em_arena *arena;
    double scale;
};

/* The scaled log density of a site: 0 when masked or for PARAM/DETERMINISTIC sites, the value
 * itself for FACTOR, the distribution's log density otherwise. */
em_var em_site_lp(em_tape *t, em_site_kind kind, int masked, const em_dist *d, em_var value, double scale);

/* Prefix e's message with "site '<site>': " unless it already names that site. */
void em_model_name_error(em_error *e, const char *site);

#endif
