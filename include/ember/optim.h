/* optim.h — first-order optimizers and learning-rate schedules over one flat parameter vector.
 *
 * SVI minimises a loss (the negative ELBO) by stochastic gradient steps. The parameter store
 * lays every unconstrained parameter end to end in one contiguous array; an em_optim holds the
 * per-element state (moments, accumulators, momentum buffers) for an array of that length and
 * updates it in place from the loss gradient. The update rules follow torch.optim (SGD, Adam,
 * Adagrad, RMSprop) and Pyro's ClippedAdam exactly, so step sizes and results carry over from
 * Pyro examples. A learning-rate schedule (constant, exponential, step, cosine annealing)
 * composes with any optimizer: the step numbered t (from 0) uses base_lr·schedule(t).
 *
 * A step whose gradient holds a NaN or an infinity is refused (EM_ERR_NONFINITE, naming the
 * index) and changes nothing, neither the parameters nor the optimizer's state or step count,
 * so the caller can skip that minibatch and count it.
 */
#ifndef EMBER_OPTIM_H
#define EMBER_OPTIM_H

#include "ember/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_optim_kind {
    EM_OPTIM_SGD = 0,     /* p -= lr·(g + wd·p), with optional (Nesterov) momentum */
    EM_OPTIM_ADAM,        /* Kingma & Ba (2015), with bias correction, as torch.optim.Adam */
    EM_OPTIM_CLIPPED_ADAM,/* Pyro's ClippedAdam: clamp g to ±clip_norm, lr ← lr·lrd each step */
    EM_OPTIM_ADAGRAD,     /* Duchi, Hazan & Singer (2011), as torch.optim.Adagrad */
    EM_OPTIM_RMSPROP,     /* Tieleman & Hinton (2012), as torch.optim.RMSprop (not centered) */
    EM_OPTIM_KIND_COUNT
} em_optim_kind;

typedef enum em_lr_schedule_kind {
    EM_LR_CONSTANT = 0, /* lr_t = lr */
    EM_LR_EXPONENTIAL,  /* lr_t = lr·gamma^t */
    EM_LR_STEP,         /* lr_t = lr·gamma^floor(t / step_size) */
    EM_LR_COSINE,       /* lr_t = eta_min + (lr - eta_min)·(1 + cos(pi·t / t_max))/2, as torch's
                           CosineAnnealingLR closed form (after t_max it rises again, period 2·t_max) */
    EM_LR_SCHEDULE_COUNT
} em_lr_schedule_kind;

typedef struct em_lr_schedule {
    em_lr_schedule_kind kind;
    double gamma;     /* EXPONENTIAL, STEP: factor per decay, > 0 (< 1 decays) */
    size_t step_size; /* STEP: steps between decays, >= 1 */
    size_t t_max;     /* COSINE: half period in steps, >= 1 */
    double eta_min;   /* COSINE: floor, 0 <= eta_min <= lr */
} em_lr_schedule;

typedef struct em_optim_config {
    em_optim_kind kind;
    double lr;           /* base learning rate, > 0 */
    double weight_decay; /* L2 penalty added to the gradient (g += wd·p), >= 0; 0 = none */
    /* SGD, RMSPROP */
    double momentum;     /* in [0, 1); 0 = none */
    int nesterov;        /* SGD: Nesterov momentum (needs momentum > 0) */
    /* ADAM, CLIPPED_ADAM */
    double beta1, beta2; /* each in [0, 1) */
    /* ADAM, CLIPPED_ADAM, ADAGRAD, RMSPROP */
    double eps;          /* > 0 */
    /* CLIPPED_ADAM */
    double clip_norm;    /* > 0: each gradient element is clamped to [-clip_norm, clip_norm] */
    double lrd;          /* in (0, 1]: learning-rate decay factor applied at the start of each step */
    /* ADAGRAD */
    double lr_decay;     /* >= 0: step t uses lr / (1 + t·lr_decay), as torch */
    /* RMSPROP */
    double alpha;        /* smoothing constant in [0, 1) */
    em_lr_schedule schedule;
} em_optim_config;

/* A configuration with the reference defaults for kind and the given base learning rate:
 * beta1 0.9, beta2 0.999, eps 1e-8 (ADAGRAD 1e-10), clip_norm 10, lrd 1, alpha 0.99, no momentum,
 * no weight decay, lr_decay 0, a constant schedule (gamma 1, step_size 1, t_max 1, eta_min 0).
 * Start from this and change fields: a zeroed struct is not a valid configuration. */
em_optim_config em_optim_defaults(em_optim_kind kind, double lr);

/* EM_OK, or EM_ERR_ARG with a message naming the field and its value. n == 0 is checked by
 * em_optim_create. Only fields that kind uses are checked. */
em_status em_optim_config_check(const em_optim_config *cfg, em_error *err);

typedef struct em_optim em_optim;

/* An optimizer for a parameter vector of length n, its state zeroed. NULL on error (err says
 * why: EM_ERR_ARG for a bad configuration or n == 0, EM_ERR_NOMEM). cfg is copied. */
em_optim *em_optim_create(const em_optim_config *cfg, size_t n, em_error *err);
void em_optim_destroy(em_optim *o);

/* One update of params (length n) in place from grad, the gradient of the loss to minimise.
 * A non-finite grad[i] gives EM_ERR_NONFINITE naming i and changes nothing. err may be NULL. */
em_status em_optim_step(em_optim *o, double *params, const double *grad, em_error *err);

/* Back to the state just after em_optim_create: moments, accumulators and step count zeroed. */
void em_optim_reset(em_optim *o);

/* The learning rate the next em_optim_step will apply: base·schedule(t), times lrd^(t+1) for
 * ClippedAdam (Pyro multiplies by lrd before each step), and over (1 + t·lr_decay) for Adagrad. */
double em_optim_lr(const em_optim *o);
/* The learning rate of the schedule alone at step t (0-based), for any t. */
double em_lr_schedule_at(const em_lr_schedule *s, double base_lr, size_t t);

size_t em_optim_steps(const em_optim *o);   /* updates applied since create/reset */
size_t em_optim_skipped(const em_optim *o); /* steps refused for a non-finite gradient */
size_t em_optim_len(const em_optim *o);
const em_optim_config *em_optim_config_of(const em_optim *o);
const char *em_optim_name(em_optim_kind k); /* "sgd", "adam", "clipped_adam", "adagrad", "rmsprop" */

#ifdef __cplusplus
}
#endif
#endif
