/* model.h — the model language: sites, plates, the effect-handler stack, the parameter store.
 *
 * A model is a plain C function, void fn(em_model *m, const void *data). Inside it:
 *
 *     em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));          latent site
 *     em_observe(m, "obs", em_normal(m, mu, sigma), y, n);            observed site
 *     em_var w = em_param(m, "w_loc", init, 3, EM_CONSTRAINT_REAL);    learnable parameter
 *     em_deterministic(m, "mu", mu);                                   recorded quantity
 *     em_factor(m, "penalty", lp);                                     extra log-density term
 *     EM_PLATE(m, p, "data", n, 0) { ... }                             independent dimension
 *
 * What a site does is decided by the effect handlers on the em_model's stack, as in Pyro's
 * poutine: every site becomes an em_msg that passes through the handlers (innermost first),
 * then default processing (draw a value if none was given), then the handlers' postprocess
 * (outermost first). The same model function therefore serves prior sampling, conditioning,
 * SVI, NUTS and predictive checks; the engines only change the handlers. handlers.h has the
 * standard handlers; a new one is a struct that embeds em_handler and fills two callbacks.
 *
 * There is no global state: an em_model owns its tape, its handler stack and its default RNG,
 * so each thread (chain) uses its own em_model. Errors (a repeated site name, an observation of
 * the wrong length, an invalid distribution) are recorded on the tape with the site's name and
 * stop nothing mid-function: em_model_run returns the first one when the model returns.
 */
#ifndef EMBER_MODEL_H
#define EMBER_MODEL_H

#include "ember/ad.h"
#include "ember/dist.h"
#include "ember/logdensity.h"
#include "ember/transform.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*em_model_fn)(em_model *m, const void *data);

typedef enum em_site_kind {
    EM_SITE_SAMPLE = 0,   /* latent (or observed when conditioned) random variable */
    EM_SITE_OBSERVE,      /* random variable observed at data */
    EM_SITE_PARAM,        /* learnable parameter */
    EM_SITE_DETERMINISTIC,/* a computed quantity, recorded */
    EM_SITE_FACTOR,       /* an arbitrary log-density term */
} em_site_kind;

const char *em_site_kind_name(em_site_kind k);

/* Constraints of param sites are transforms from the real line. */
typedef em_transform em_constraint;
#define EM_CONSTRAINT_REAL ((em_constraint){EM_TRANSFORM_IDENTITY, 0.0, 0.0})
#define EM_CONSTRAINT_POSITIVE ((em_constraint){EM_TRANSFORM_POSITIVE, 0.0, 0.0})
#define EM_CONSTRAINT_INTERVAL(lo, hi) ((em_constraint){EM_TRANSFORM_INTERVAL, (lo), (hi)})
#define EM_CONSTRAINT_UNIT ((em_constraint){EM_TRANSFORM_UNIT, 0.0, 0.0})

#define EM_MAX_PLATES 8

/* A site on its way through the handler stack (Pyro's Message). */
typedef struct em_msg {
    em_model *model;
    em_site_kind kind;
    const char *name;
    em_dist dist;             /* SAMPLE and OBSERVE */
    em_var value;             /* set by a handler or by default processing */
    size_t len;               /* length of the value */
    const double *obs;        /* observed data (OBSERVE, or a conditioned SAMPLE) */
    int is_observed;
    int done;                 /* a handler supplied the value; skip default processing */
    int stop;                 /* hide the site from handlers further out */
    double scale;             /* multiplies the log density (plates' subsampling, scale) */
    int masked;               /* the log density counts as 0 */
    size_t plate_len;         /* product of the enclosing plates' (subsample) sizes */
    const char *plates[EM_MAX_PLATES];
    int nplates;
    em_constraint constraint; /* PARAM */
    const double *init;       /* PARAM: initial constrained value */
    em_rng *rng;              /* set by a seed handler; else the model's own */
    em_var log_prob;          /* scaled log density, computed on demand (em_msg_log_prob) */
    int has_log_prob;
    const size_t *leave_out;  /* observed elements whose log density is left out (refits) */
    size_t nleave_out;
} em_msg;

/* A handler: embed it as the first member of your own struct. process runs before default
 * processing, innermost handler first; postprocess after it, outermost visited handler first.
 * Either may be NULL. */
typedef struct em_handler em_handler;
struct em_handler {
    void (*process)(em_handler *h, em_msg *msg);
    void (*postprocess)(em_handler *h, em_msg *msg);
    const char *kind; /* for messages: "trace", "replay", ... */
};

/* ---- the context -------------------------------------------------------------------------- */

typedef struct em_param_store em_param_store;

/* A fresh context with its own tape and a default RNG stream from seed. */
em_model *em_model_create(uint64_t seed, em_error *err);
void em_model_destroy(em_model *m);
em_tape *em_model_tape(em_model *m);
em_rng *em_model_rng(em_model *m);
/* The parameter store that param sites read and fill (not owned; NULL: params are constants
 * at their initial values). */
void em_model_set_params(em_model *m, em_param_store *ps);
em_param_store *em_model_params(em_model *m);

/* Push and pop handlers (LIFO; popping out of order is an error). At most 32 deep. */
em_status em_push(em_model *m, em_handler *h);
em_status em_pop(em_model *m, em_handler *h);

/* Run fn(m, data) under the current handlers. The tape is NOT reset (several runs, e.g. guide
 * then model, can share one tape); call em_tape_reset(em_model_tape(m)) between independent
 * runs. Returns the first error recorded during the run, with the site named. */
em_status em_model_run(em_model *m, em_model_fn fn, const void *data, em_error *err);
/* Record an error attributed to the model (returns an invalid var). */
em_var em_model_fail(em_model *m, em_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- sites -------------------------------------------------------------------------------- */

em_var em_sample(em_model *m, const char *name, em_dist d);
/* y has n values (referenced for the duration of the run). n = 0 (or y NULL) is an error,
 * EM_ERR_ARG naming the site, not an empty likelihood: a model bound to a data set with no
 * rows is almost always a data-loading mistake (every row dropped, a header-only file), and
 * for a prior-only run leave the observe site out (or sample from the prior predictive). The
 * same holds for em_data of 0 values and a plate of size 0. */
em_var em_observe(em_model *m, const char *name, em_dist d, const double *y, size_t n);
/* init: n constrained initial values (used when the store has no such parameter). */
em_var em_param(em_model *m, const char *name, const double *init, size_t n, em_constraint c);
em_var em_deterministic(em_model *m, const char *name, em_var value);
void em_factor(em_model *m, const char *name, em_var log_density);

/* Run fn once with prior draws and check every observed value against its distribution's
 * support (em_dist_check_data): a bad one is EM_ERR_DOMAIN naming the site, the index and the
 * value. Making a log density or an SVI does this already; call it to check data early. */
em_status em_model_check_data(em_model_fn fn, const void *data, em_param_store *params, em_error *err);

/* A distribution with its batch expanded to n iid copies (parameters must broadcast to n). */
static inline em_dist em_expand(em_dist d, size_t n) {
    d.batch_len = n;
    return d;
}

/* The scaled log density of a site's message (cached in the message). */
em_var em_msg_log_prob(em_msg *msg);

/* ---- plates -------------------------------------------------------------------------------- */

typedef struct em_plate em_plate;
/* Enter a plate of size n; with 0 < subsample < n, a random subset of that many indices is
 * drawn (from the innermost seed handler's RNG, else the model's) and log densities inside are
 * scaled by n/subsample. Returns NULL on error (recorded on the tape). */
em_plate *em_plate_begin(em_model *m, const char *name, size_t n, size_t subsample);
/* Leave it (always returns NULL, for the loop form below). */
em_plate *em_plate_end(em_model *m, em_plate *p);
/* The indices inside the plate (0..n-1, or the subsample), and how many. NULL only when out
 * of memory. */
const size_t *em_plate_indices(const em_plate *p);
size_t em_plate_size(const em_plate *p);
/* data[indices[i]] for each index, in tape memory (for observations under subsampling). */
const double *em_plate_select(em_model *m, const em_plate *p, const double *data);
/* Rows indices[i] of a row-major n×cols matrix, in tape memory. */
const double *em_plate_select_rows(em_model *m, const em_plate *p, const double *X, size_t cols);

/* The block form: EM_PLATE(m, p, "data", n, 0) { ... p is the em_plate* ... } */
#define EM_PLATE(m, p, name, n, subsample)                                              \
    for (em_plate *p = em_plate_begin((m), (name), (n), (subsample)); p; p = em_plate_end((m), p))

/* ---- the parameter store -------------------------------------------------------------------- */

/* Named parameters, each stored unconstrained in one contiguous vector so optimizers can
 * update them all at once. */
em_param_store *em_param_store_create(void);
void em_param_store_destroy(em_param_store *ps);
void em_param_store_clear(em_param_store *ps);
size_t em_param_store_count(const em_param_store *ps);
/* Total length of the unconstrained vector, the vector itself, and the gradient buffer that
 * em_param_store_collect_grad fills. */
size_t em_param_store_dim(const em_param_store *ps);
double *em_param_store_values(em_param_store *ps);
/* The unconstrained values of parameter name on the tape (one leaf per parameter and tape
 * generation, shared by every param site of that name in the run) and their constrained
 * transform; used by em_param. */
em_var em_param_store_leaf(em_param_store *ps, em_tape *t, size_t i);
/* Look up a parameter: its index, or -1. */
long em_param_store_find(const em_param_store *ps, const char *name);
const char *em_param_store_name(const em_param_store *ps, size_t i);
size_t em_param_store_len(const em_param_store *ps, size_t i);
size_t em_param_store_offset(const em_param_store *ps, size_t i);
em_constraint em_param_store_constraint(const em_param_store *ps, size_t i);
/* Add a parameter from constrained initial values (error if the name exists). */
em_status em_param_store_add(em_param_store *ps, const char *name, const double *init, size_t n,
                             em_constraint c, em_error *err);
/* Constrained value of parameter i into out (em_param_store_len values). */
em_status em_param_store_get(const em_param_store *ps, const char *name, double *out, size_t n,
                             em_error *err);
/* After em_backward on a tape where param sites were read: write the gradient of the output
 * w.r.t. the unconstrained vector into grad (dim values; parameters not read in the tape's
 * current generation get 0). */
void em_param_store_collect_grad(const em_param_store *ps, const em_tape *t, double *grad);
/* Save to / load from a text file (atomic write). Loading into a store that already has
 * parameters requires exactly the same names and lengths: a missing or extra name is an error
 * naming it. Loading into an empty store creates them. The file is one line per parameter,
 * "<name> <transform> <lo> <hi> <len> <v1> ... <vlen>", after the line
 * "# ember parameter store v1"; numbers follow the data CSV grammar (io.h), and every error
 * (EM_ERR_PARSE) names file:line:column. */
em_status em_param_store_save(const em_param_store *ps, const char *path, em_error *err);
em_status em_param_store_load(em_param_store *ps, const char *path, em_error *err);
/* The same from memory: buf[0..len) need not be NUL-terminated; name is used in messages. */
em_status em_param_store_load_buffer(em_param_store *ps, const char *name, const char *buf, size_t len,
                                     em_error *err);

/* ---- the bridge to inference ----------------------------------------------------------------- */

typedef struct em_logdensity_options {
    uint64_t seed;               /* for the discovery run (prior draws of the latents) */
    int include_deterministic;   /* add deterministic sites to the constrained outputs */
    em_param_store *params;      /* values of param sites (NULL: their initial values) */
    int no_replay;               /* 1: run the model at every evaluation (see below) */
    /* 1: leave the transforms' log|det J| out (BridgeStan's jacobian = false): the density of
     * one part of a sum over rows, where the Jacobian is counted by another part (mpi.h). */
    int no_jacobian;
} em_logdensity_options;

/* One traced run of the model discovers its latent sites (names, lengths, supports, in order);
 * the result maps θ (the concatenated unconstrained latents) to log p(θ, data) + log|det J|.
 * data must outlive the density, and must not change while it is used (make a new density
 * for new data). Outputs are the constrained latents named CmdStan-style ("a", "beta.1",
 * "beta.2", ...).
 *
 * Replay: after an evaluation that ran the model, later evaluations recompute the tape that
 * run recorded, at the new θ, without running the model function again — the same numbers,
 * bit for bit, at a fraction of the cost for a small model. Ember replays only when it can
 * tell the run did not depend on θ except through the tape: the model read no value that
 * depends on θ (em_value and friends mark the tape), drew nothing from em_model_rng, read no
 * param site, and used only ops that can recompute themselves. What Ember cannot see is the
 * model reading state outside its data and θ (a global variable, a clock): set no_replay
 * for such a model. */
em_logdensity *em_logdensity_from_model(em_model_fn fn, const void *data,
                                        const em_logdensity_options *opt, em_error *err);

/* A description of one latent site of a model's density, for engines and guides. */
typedef struct em_latent_info {
    const char *name;
    size_t offset;      /* into θ */
    size_t free_len;    /* unconstrained length */
    size_t len;         /* constrained length */
    em_transform transform;
} em_latent_info;

/* The latent sites behind a density made by em_logdensity_from_model (NULL otherwise). */
size_t em_logdensity_num_latents(const em_logdensity *ld);
const em_latent_info *em_logdensity_latent(const em_logdensity *ld, size_t i);

/* Working memory of a model density: bytes held by its tape's arena and how many times that
 * arena has called malloc (steady after the first evaluation). Returns 0 for other densities. */
int em_logdensity_memory(const em_logdensity *ld, size_t *bytes, size_t *mallocs);
/* 1 when the next evaluation of this density (a model density made by
 * em_logdensity_from_model) will replay a recorded tape rather than run the model; 0 before
 * the first evaluation, for a model that cannot be replayed, and for other densities. */
int em_logdensity_replays(const em_logdensity *ld);

#ifdef __cplusplus
}
#endif
#endif
