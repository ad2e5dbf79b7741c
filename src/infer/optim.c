/* optim.c — SGD, Adam, ClippedAdam, Adagrad, RMSprop and learning-rate schedules. See optim.h.
 *
 * Each update rule is written from its definition, matched term by term to the reference
 * implementation users compare against:
 *   SGD with momentum (Polyak 1964; Nesterov as in Sutskever et al. 2013) — torch.optim.SGD with
 *     dampening 0: buf ← μ·buf + g (buf starts at 0, which equals torch's buf = g on step 1);
 *     p ← p - lr·(nesterov ? g + μ·buf : buf).
 *   Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1, with
 *     torch's placement of eps): p ← p - (lr / (1-β1^t)) · m / (sqrt(v)/sqrt(1-β2^t) + eps).
 *   ClippedAdam (Pyro): lr ← lr·lrd before the step, g clamped elementwise to ±clip_norm, then
 *     weight decay, then p ← p - lr·sqrt(1-β2^t)/(1-β1^t) · m / (sqrt(v) + eps) — eps is added
 *     to the uncorrected sqrt(v), unlike torch's Adam.
 *   Adagrad (Duchi, Hazan & Singer 2011): s ← s + g², p ← p - lr/(1+(t-1)·lr_decay) · g/(sqrt(s)+eps).
 *   RMSprop (Tieleman & Hinton 2012, lecture 6.5): v ← α·v + (1-α)·g², p ← p - lr·g/(sqrt(v)+eps),
 *     with momentum buf ← μ·buf + g/(sqrt(v)+eps), p ← p - lr·buf.
 * Weight decay is the L2 form g ← g + wd·p everywhere, as torch.
 *
 * The gradient is scanned for NaN/inf before anything is written, so a refused step leaves the
 * parameters and every buffer exactly as they were.
 */
#include "ember/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846264338327950288;

struct em_optim {
    em_optim_config cfg;
    size_t n;
    size_t t;       /* updates applied */
    size_t skipped; /* steps refused */
    double *m;      /* Adam: first moment; SGD/RMSprop: momentum buffer */
    double *v;      /* Adam: second moment; Adagrad: sum of squares; RMSprop: mean square */
};

static const char *const kind_names[EM_OPTIM_KIND_COUNT] = {
    [EM_OPTIM_SGD] = "sgd",         [EM_OPTIM_ADAM] = "adam",       [EM_OPTIM_CLIPPED_ADAM] = "clipped_adam",
    [EM_OPTIM_ADAGRAD] = "adagrad", [EM_OPTIM_RMSPROP] = "rmsprop",
};

const char *em_optim_name(em_optim_kind k) {
    if ((int)k < 0 || k >= EM_OPTIM_KIND_COUNT) return "unknown";
    return kind_names[k];
}

em_optim_config em_optim_defaults(em_optim_kind kind, double lr) {
    em_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = lr;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = kind == EM_OPTIM_ADAGRAD ? 1e-10 : 1e-8;
    c.clip_norm = 10.0;
    c.lrd = 1.0;
    c.alpha = 0.99;
    c.schedule.kind = EM_LR_CONSTANT;
    c.schedule.gamma = 1.0;
    c.schedule.step_size = 1;
    c.schedule.t_max = 1;
    c.schedule.eta_min = 0.0;
    return c;
}

/* value in [lo, hi) (or [lo, hi] when closed_hi), and finite */
static int in_range(double v, double lo, double hi, int closed_hi) {
    return isfinite(v) && v >= lo && (closed_hi ? v <= hi : v < hi);
}

em_status em_optim_config_check(const em_optim_config *c, em_error *err) {
    if (!c) return em_error_set(err, EM_ERR_ARG, "optim: NULL configuration");
    if ((int)c->kind < 0 || c->kind >= EM_OPTIM_KIND_COUNT)
        return em_error_set(err, EM_ERR_ARG, "optim: unknown optimizer kind %d", (int)c->kind);
    const char *name = em_optim_name(c->kind);
    if (!(isfinite(c->lr) && c->lr > 0))
        return em_error_set(err, EM_ERR_ARG, "optim %s: lr = %g must be finite and > 0", name, c->lr);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0))
        return em_error_set(err, EM_ERR_ARG, "optim %s: weight_decay = %g must be finite and >= 0", name,
                            c->weight_decay);
    switch (c->kind) {
    case EM_OPTIM_SGD:
        if (!in_range(c->momentum, 0, 1, 0))
            return em_error_set(err, EM_ERR_ARG, "optim sgd: momentum = %g is outside [0, 1)", c->momentum);
        if (c->nesterov && !(c->momentum > 0))
            return em_error_set(err, EM_ERR_ARG, "optim sgd: nesterov needs momentum > 0 (got %g)", c->momentum);
        break;
    case EM_OPTIM_CLIPPED_ADAM:
    case EM_OPTIM_ADAM:
        if (c->kind == EM_OPTIM_CLIPPED_ADAM && !(isfinite(c->clip_norm) && c->clip_norm > 0))
            return em_error_set(err, EM_ERR_ARG, "optim clipped_adam: clip_norm = %g must be finite and > 0",
                                c->clip_norm);
        if (c->kind == EM_OPTIM_CLIPPED_ADAM && !(isfinite(c->lrd) && c->lrd > 0 && c->lrd <= 1))
            return em_error_set(err, EM_ERR_ARG, "optim clipped_adam: lrd = %g is outside (0, 1]", c->lrd);
        if (!in_range(c->beta1, 0, 1, 0))
            return em_error_set(err, EM_ERR_ARG, "optim %s: beta1 = %g is outside [0, 1)", name, c->beta1);
        if (!in_range(c->beta2, 0, 1, 0))
            return em_error_set(err, EM_ERR_ARG, "optim %s: beta2 = %g is outside [0, 1)", name, c->beta2);
        break;
    case EM_OPTIM_ADAGRAD:
        if (!(isfinite(c->lr_decay) && c->lr_decay >= 0))
            return em_error_set(err, EM_ERR_ARG, "optim adagrad: lr_decay = %g must be finite and >= 0", c->lr_decay);
        break;
    case EM_OPTIM_RMSPROP:
        if (!in_range(c->alpha, 0, 1, 0))
            return em_error_set(err, EM_ERR_ARG, "optim rmsprop: alpha = %g is outside [0, 1)", c->alpha);
        if (!in_range(c->momentum, 0, 1, 0))
            return em_error_set(err, EM_ERR_ARG, "optim rmsprop: momentum = %g is outside [0, 1)", c->momentum);
        break;
    default: break;
    }
    if (c->kind != EM_OPTIM_SGD && !(isfinite(c->eps) && c->eps > 0))
        return em_error_set(err, EM_ERR_ARG, "optim %s: eps = %g must be finite and > 0", name, c->eps);

    const em_lr_schedule *s = &c->schedule;
    switch (s->kind) {
    case EM_LR_CONSTANT: break;
    case EM_LR_STEP:
    case EM_LR_EXPONENTIAL:
        if (s->kind == EM_LR_STEP && s->step_size == 0)
            return em_error_set(err, EM_ERR_ARG, "optim %s: step schedule needs step_size >= 1", name);
        if (!(isfinite(s->gamma) && s->gamma > 0))
            return em_error_set(err, EM_ERR_ARG, "optim %s: schedule gamma = %g must be finite and > 0", name, s->gamma);
        break;
    case EM_LR_COSINE:
        if (s->t_max == 0) return em_error_set(err, EM_ERR_ARG, "optim %s: cosine schedule needs t_max >= 1", name);
        if (!(isfinite(s->eta_min) && s->eta_min >= 0 && s->eta_min <= c->lr))
            return em_error_set(err, EM_ERR_ARG, "optim %s: cosine schedule eta_min = %g is outside [0, lr = %g]", name,
                                s->eta_min, c->lr);
        break;
    default: return em_error_set(err, EM_ERR_ARG, "optim %s: unknown schedule kind %d", name, (int)s->kind);
    }
    return EM_OK;
}

em_optim *em_optim_create(const em_optim_config *cfg, size_t n, em_error *err) {
    if (em_optim_config_check(cfg, err) != EM_OK) return NULL;
    if (n == 0) {
        em_error_set(err, EM_ERR_ARG, "optim %s: no parameters (n = 0)", em_optim_name(cfg->kind));
        return NULL;
    }
    em_optim *o = calloc(1, sizeof *o);
    if (!o) {
        em_error_set(err, EM_ERR_NOMEM, "optim: out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    o->n = n;
    int need_m = cfg->kind == EM_OPTIM_ADAM || cfg->kind == EM_OPTIM_CLIPPED_ADAM ||
                 ((cfg->kind == EM_OPTIM_SGD || cfg->kind == EM_OPTIM_RMSPROP) && cfg->momentum > 0);
    int need_v = cfg->kind != EM_OPTIM_SGD;
    if (n > SIZE_MAX / sizeof(double)) {
        free(o);
        em_error_set(err, EM_ERR_NOMEM, "optim: %zu parameters do not fit in memory", n);
        return NULL;
    }
    if (need_m) o->m = calloc(n, sizeof *o->m);
    if (need_v) o->v = calloc(n, sizeof *o->v);
    if ((need_m && !o->m) || (need_v && !o->v)) {
        em_optim_destroy(o);
        em_error_set(err, EM_ERR_NOMEM, "optim: out of memory for the state of %zu parameters", n);
        return NULL;
    }
    return o;
}

void em_optim_destroy(em_optim *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o);
}

void em_optim_reset(em_optim *o) {
    if (!o) return;
    o->t = 0;
    o->skipped = 0;
    if (o->m) memset(o->m, 0, o->n * sizeof *o->m);
    if (o->v) memset(o->v, 0, o->n * sizeof *o->v);
}

double em_lr_schedule_at(const em_lr_schedule *s, double base, size_t t) {
    if (!s) return base;
    switch (s->kind) {
    case EM_LR_EXPONENTIAL: return base * pow(s->gamma, (double)t);
    case EM_LR_STEP: return s->step_size ? base * pow(s->gamma, (double)(t / s->step_size)) : base;
    case EM_LR_COSINE:
        if (!s->t_max) return base;
        return s->eta_min + (base - s->eta_min) * 0.5 * (1.0 + cos(PI * (double)t / (double)s->t_max));
    default: return base;
    }
}

/* The learning rate of the update numbered t (0-based). */
static double lr_at(const em_optim_config *c, size_t t) {
    double lr = em_lr_schedule_at(&c->schedule, c->lr, t);
    if (c->kind == EM_OPTIM_CLIPPED_ADAM) lr *= pow(c->lrd, (double)(t + 1));
    if (c->kind == EM_OPTIM_ADAGRAD) lr /= 1.0 + (double)t * c->lr_decay;
    return lr;
}

double em_optim_lr(const em_optim *o) { return o ? lr_at(&o->cfg, o->t) : NAN; }
size_t em_optim_steps(const em_optim *o) { return o ? o->t : 0; }
size_t em_optim_skipped(const em_optim *o) { return o ? o->skipped : 0; }
size_t em_optim_len(const em_optim *o) { return o ? o->n : 0; }
const em_optim_config *em_optim_config_of(const em_optim *o) { return o ? &o->cfg : NULL; }

em_status em_optim_step(em_optim *o, double *params, const double *grad, em_error *err) {
    if (!o || !params || !grad) return em_error_set(err, EM_ERR_ARG, "optim step: NULL optimizer, params or grad");
    const em_optim_config *c = &o->cfg;
    size_t n = o->n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(grad[i])) {
            o->skipped++;
            return em_error_set(err, EM_ERR_NONFINITE, "optim %s: gradient[%zu] = %g is not finite; step %zu skipped",
                                em_optim_name(c->kind), i, grad[i], o->t);
        }
    double lr = lr_at(c, o->t), wd = c->weight_decay;
    double *m = o->m, *v = o->v;
    o->t++;
    switch (c->kind) {
    case EM_OPTIM_SGD: {
        double mu = c->momentum;
        for (size_t i = 0; i < n; i++) {
            double g = grad[i] + wd * params[i], d = g;
            if (m) {
                m[i] = mu * m[i] + g;
                d = c->nesterov ? g + mu * m[i] : m[i];
            }
            params[i] -= lr * d;
        }
        break;
    }
    case EM_OPTIM_ADAM: {
        double b1 = c->beta1, b2 = c->beta2, t = (double)o->t;
        double bc1 = 1.0 - pow(b1, t), sbc2 = sqrt(1.0 - pow(b2, t)), step = lr / bc1;
        for (size_t i = 0; i < n; i++) {
            double g = grad[i] + wd * params[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            params[i] -= step * m[i] / (sqrt(v[i]) / sbc2 + c->eps);
        }
        break;
    }
    case EM_OPTIM_CLIPPED_ADAM: {
        double b1 = c->beta1, b2 = c->beta2, t = (double)o->t, clip = c->clip_norm;
        double step = lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t));
        for (size_t i = 0; i < n; i++) {
            double g = fmin(fmax(grad[i], -clip), clip) + wd * params[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            params[i] -= step * m[i] / (sqrt(v[i]) + c->eps);
        }
        break;
    }
    case EM_OPTIM_ADAGRAD:
        for (size_t i = 0; i < n; i++) {
            double g = grad[i] + wd * params[i];
            v[i] += g * g;
            params[i] -= lr * g / (sqrt(v[i]) + c->eps);
        }
        break;
    case EM_OPTIM_RMSPROP: {
        double a = c->alpha, mu = c->momentum;
        for (size_t i = 0; i < n; i++) {
            double g = grad[i] + wd * params[i];
            v[i] = a * v[i] + (1.0 - a) * g * g;
            double d = g / (sqrt(v[i]) + c->eps);
            if (m) {
                m[i] = mu * m[i] + d;
                d = m[i];
            }
            params[i] -= lr * d;
        }
        break;
    }
    default: break; /* unreachable: the configuration was checked at creation */
    }
    return EM_OK;
}
