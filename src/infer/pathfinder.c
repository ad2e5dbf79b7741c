/* pathfinder.c — Pathfinder (Zhang et al. 2022): L-BFGS with a Gaussian at every iterate.
 * See pathfinder.h.
 *
 * One path minimises f(θ) = −log p(θ). The inverse-Hessian estimate at an iterate is built
 * densely: start from diag(α), where α follows every accepted pair (s, y) by Gilbert &
 * Lemaréchal's (1989) eq. 4.9, then apply the BFGS update for each of the last `history`
 * pairs, oldest first. That matrix is the L-BFGS one, so it serves twice: its product with
 * the gradient is the search direction, and it is the covariance Σ of the iterate's Gaussian,
 * whose mean is the Newton point μ = θ − Σ∇f (Zhang et al. 2022, alg. 1 and eq. 4). A pair is
 * accepted when its curvature is clearly positive (sᵀy > 1e-12·yᵀy, the paper's check), which
 * keeps Σ positive definite. The line search backtracks from the unit step (scaled on the
 * first iteration to a step of length 1) until the Armijo condition holds.
 */
#include "ember/pathfinder.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_SQRT_2PI 0.91893853320467274178

em_pathfinder_config em_pathfinder_config_default(void) {
    em_pathfinder_config c;
    memset(&c, 0, sizeof c);
    c.num_paths = 4;
    c.num_draws = 1000;
    c.num_elbo_draws = 25;
    c.history = 6;
    c.max_iters = 1000;
    c.tol_rel_obj = 1e-10;
    c.tol_grad = 1e-8;
    c.init_radius = 2.0;
    c.seed = 20260101;
    c.psis_resample = 1;
    return c;
}

static em_status check_config(const em_pathfinder_config *c, em_error *err) {
    if (c->num_paths < 1 || c->num_paths > 1024)
        return em_error_set(err, EM_ERR_ARG, "pathfinder: num_paths = %zu, must be in 1..1024", c->num_paths);
    if (c->num_draws < 2) return em_error_set(err, EM_ERR_ARG, "pathfinder: num_draws = %zu, must be >= 2", c->num_draws);
    if (c->num_elbo_draws < 1)
        return em_error_set(err, EM_ERR_ARG, "pathfinder: num_elbo_draws = %zu, must be >= 1", c->num_elbo_draws);
    if (c->history < 1 || c->history > 100)
        return em_error_set(err, EM_ERR_ARG, "pathfinder: history = %zu, must be in 1..100", c->history);
    if (c->max_iters < 1) return em_error_set(err, EM_ERR_ARG, "pathfinder: max_iters = 0, must be >= 1");
    if (!(c->tol_rel_obj >= 0) || !(c->tol_grad >= 0) || !(c->init_radius >= 0) || !isfinite(c->init_radius))
        return em_error_set(err, EM_ERR_ARG, "pathfinder: tol_rel_obj = %g, tol_grad = %g, init_radius = %g; each must "
                                             "be >= 0", c->tol_rel_obj, c->tol_grad, c->init_radius);
    return EM_OK;
}

/* The work space of one path. */
typedef struct path_ws {
    em_logdensity *ld;
    size_t K, m;
    em_rng *rng;
    double *x, *g, *xn, *gn, *d, *alpha, *S, *Y, *H, *Hy, *C, *mu, *z, *th;
    double *best_mu, *best_C;
    size_t npairs, head; /* ring of the last m pairs: S and Y rows */
    em_pathfinder_path info;
} path_ws;

/* f = −log p and its gradient; a non-OK status is a point outside the domain. */
static int eval_f(path_ws *w, const double *x, double *f, double *g) {
    em_error e = {0};
    double lp;
    em_status s = em_logdensity_eval(w->ld, x, &lp, g, &e);
    w->info.grad_evals++;
    if (s != EM_OK || !isfinite(lp)) return 0;
    *f = -lp;
    for (size_t i = 0; i < w->K; i++) {
        g[i] = -g[i];
        if (!isfinite(g[i])) return 0;
    }
    return 1;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Gilbert & Lemaréchal's diagonal update with the pair (s, y). */
static void update_alpha(double *alpha, const double *s, const double *y, size_t K) {
    double a = 0.0, b = dot(y, s, K), c = 0.0;
    for (size_t i = 0; i < K; i++) {
        a += y[i] * alpha[i] * y[i];
        c += s[i] * s[i] / alpha[i];
    }
    for (size_t i = 0; i < K; i++) {
        double r = s[i] / alpha[i];
        double v = b / (a / alpha[i] + y[i] * y[i] - (a / c) * r * r);
        if (v > 0 && isfinite(v)) alpha[i] = v; /* a coordinate the update would break keeps its value */
    }
}

/* H = diag(α), then BFGS with every stored pair, oldest first:
 * H ← H − ρ(s(Hy)ᵀ + (Hy)sᵀ) + (ρ + ρ²yᵀHy) ssᵀ, ρ = 1 / sᵀy. */
static void build_h(path_ws *w) {
    size_t K = w->K;
    memset(w->H, 0, K * K * sizeof *w->H);
    for (size_t i = 0; i < K; i++) w->H[i * K + i] = w->alpha[i];
    for (size_t q = 0; q < w->npairs; q++) {
        size_t r = (w->head + w->m - w->npairs + q) % w->m;
        const double *s = w->S + r * K, *y = w->Y + r * K;
        double rho = 1.0 / dot(s, y, K);
        for (size_t i = 0; i < K; i++) w->Hy[i] = dot(w->H + i * K, y, K);
        double c = rho + rho * rho * dot(y, w->Hy, K);
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++) w->H[i * K + j] += -rho * (s[i] * w->Hy[j] + w->Hy[i] * s[j]) + c * s[i] * s[j];
    }
}

/* log N(θ | μ, C Cᵀ) of the draw θ = μ + C z. */
static double draw_gaussian(path_ws *w, const double *mu, const double *C, double *th) {
    size_t K = w->K;
    double lq = -LOG_SQRT_2PI * (double)K;
    for (size_t i = 0; i < K; i++) {
        w->z[i] = em_rng_normal(w->rng);
        lq -= 0.5 * w->z[i] * w->z[i] + log(C[i * K + i]);
    }
    for (size_t i = 0; i < K; i++) {
        double v = mu[i];
        for (size_t j = 0; j <= i; j++) v += C[i * K + j] * w->z[j];
        th[i] = v;
    }
    return lq;
}

static double log_p_at(path_ws *w, const double *th) {
    em_error e = {0};
    double lp;
    w->info.lp_evals++;
    return em_logdensity_eval(w->ld, th, &lp, NULL, &e) == EM_OK && isfinite(lp) ? lp : -INFINITY;
}

/* The Gaussian at the current iterate (x, g, H): its ELBO from n draws; keep it if best. */
static void consider_iterate(path_ws *w, size_t iter, size_t n) {
    size_t K = w->K;
    for (size_t i = 0; i < K; i++) w->mu[i] = w->x[i] - dot(w->H + i * K, w->g, K);
    memcpy(w->C, w->H, K * K * sizeof *w->C);
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)K, w->C, (lapack_int)K) != 0) return;
    for (size_t i = 0; i < K; i++)
        for (size_t j = i + 1; j < K; j++) w->C[i * K + j] = 0.0;
    double elbo = 0.0;
    for (size_t k = 0; k < n; k++) {
        double lq = draw_gaussian(w, w->mu, w->C, w->th);
        elbo += (log_p_at(w, w->th) - lq) / (double)n;
    }
    if (isfinite(elbo) && (w->info.best_iter == 0 || elbo > w->info.best_elbo)) {
        w->info.best_iter = iter;
        w->info.best_elbo = elbo;
        memcpy(w->best_mu, w->mu, K * sizeof *w->mu);
        memcpy(w->best_C, w->C, K * K * sizeof *w->C);
    }
}

/* One path: L-BFGS from a random start, the best Gaussian kept. */
static em_status run_path(path_ws *w, const em_pathfinder_config *c, size_t path, em_error *err) {
    size_t K = w->K;
    double f = 0.0;
    int ok = 0;
    for (int tries = 0; tries < 100 && !ok; tries++) {
        for (size_t i = 0; i < K; i++) w->x[i] = c->init_radius * (2.0 * em_rng_uniform(w->rng) - 1.0);
        ok = eval_f(w, w->x, &f, w->g);
    }
    if (!ok)
        return em_error_set(err, EM_ERR_NUMERIC, "pathfinder path %zu: no finite log density and gradient in 100 starts "
                                                 "uniform(-%g, %g)", path + 1, c->init_radius, c->init_radius);
    for (size_t i = 0; i < K; i++) w->alpha[i] = 1.0;
    w->npairs = w->head = 0;
    for (size_t it = 1; it <= c->max_iters; it++) {
        build_h(w);
        for (size_t i = 0; i < K; i++) w->d[i] = -dot(w->H + i * K, w->g, K);
        double slope = dot(w->d, w->g, K);
        if (!(slope < 0)) break; /* no descent direction left: the gradient vanished */
        double t = 1.0;
        if (it == 1) t = fmin(1.0, 1.0 / sqrt(dot(w->d, w->d, K)));
        double fn = 0.0;
        int accepted = 0;
        for (int k = 0; k < 60 && !accepted; k++, t *= 0.5) {
            for (size_t i = 0; i < K; i++) w->xn[i] = w->x[i] + t * w->d[i];
            accepted = eval_f(w, w->xn, &fn, w->gn) && fn <= f + 1e-4 * t * slope;
        }
        w->info.iters = it;
        if (!accepted) break;
        double *s = w->S + w->head * K, *y = w->Y + w->head * K;
        for (size_t i = 0; i < K; i++) {
            s[i] = w->xn[i] - w->x[i];
            y[i] = w->gn[i] - w->g[i];
        }
        double sy = dot(s, y, K), yy = dot(y, y, K);
        if (sy > 1e-12 * yy) {
            update_alpha(w->alpha, s, y, K);
            w->head = (w->head + 1) % w->m;
            if (w->npairs < w->m) w->npairs++;
        }
        double fold = f;
        memcpy(w->x, w->xn, K * sizeof *w->x);
        memcpy(w->g, w->gn, K * sizeof *w->g);
        f = fn;
        if (w->npairs) {
            build_h(w);
            consider_iterate(w, it, c->num_elbo_draws);
        }
        double gmax = 0.0;
        for (size_t i = 0; i < K; i++) gmax = fmax(gmax, fabs(w->g[i]));
        if (fabs(fold - f) <= c->tol_rel_obj * fmax(fmax(fabs(fold), fabs(f)), 1.0) || gmax <= c->tol_grad) {
            w->info.converged = 1;
            break;
        }
    }
    if (!w->info.best_iter)
        return em_error_set(err, EM_ERR_NUMERIC, "pathfinder path %zu: no Gaussian along its %zu iterations had a finite "
                                                 "ELBO", path + 1, w->info.iters);
    return EM_OK;
}

void em_pathfinder_result_free(em_pathfinder_result *r) {
    if (!r) return;
    free(r->theta);
    free(r->log_p);
    free(r->log_q);
    free(r->paths);
    free(r);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

em_status em_pathfinder_run(em_logdensity *ld, const em_pathfinder_config *cfg, em_pathfinder_result **out,
                            em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_pathfinder_run: out is NULL");
    *out = NULL;
    if (!ld) return em_error_set(err, EM_ERR_ARG, "em_pathfinder_run: no log density");
    em_pathfinder_config c = cfg ? *cfg : em_pathfinder_config_default();
    em_status s = check_config(&c, err);
    if (s != EM_OK) return s;
    size_t K = em_logdensity_dim(ld), P = c.num_paths, D = c.num_draws;
    if (K == 0) return em_error_set(err, EM_ERR_ARG, "em_pathfinder_run: the density has no parameters");
    if (D > ((size_t)-1 / sizeof(double)) / (P * (K + 2)))
        return em_error_set(err, EM_ERR_ARG, "em_pathfinder_run: %zu x %zu draws do not fit in memory", P, D);
    double t0 = now_s();
    em_pathfinder_result *r = calloc(1, sizeof *r);
    path_ws w;
    memset(&w, 0, sizeof w);
    w.ld = ld;
    w.K = K;
    w.m = c.history;
    double **bufs[] = {&w.x, &w.g, &w.xn, &w.gn, &w.d, &w.alpha, &w.Hy, &w.mu, &w.z, &w.th, &w.best_mu};
    int nomem = !r;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) nomem |= !(*bufs[i] = malloc(K * sizeof(double)));
    nomem |= !(w.S = malloc(w.m * K * sizeof(double))) || !(w.Y = malloc(w.m * K * sizeof(double)));
    nomem |= !(w.H = malloc(K * K * sizeof(double))) || !(w.C = malloc(K * K * sizeof(double))) ||
             !(w.best_C = malloc(K * K * sizeof(double)));
    if (r) {
        r->dim = K;
        r->num_paths = P;
        r->num_draws = P * D;
        nomem |= !(r->theta = malloc(P * D * K * sizeof(double))) || !(r->log_p = malloc(P * D * sizeof(double))) ||
                 !(r->log_q = malloc(P * D * sizeof(double))) || !(r->paths = calloc(P, sizeof *r->paths));
    }
    if (nomem) s = em_error_set(err, EM_ERR_NOMEM, "pathfinder: out of memory");
    for (size_t p = 0; p < P && s == EM_OK; p++) {
        memset(&w.info, 0, sizeof w.info);
        w.rng = em_rng_create(c.seed, 0x9a7f + p); /* a path's draws do not depend on the number of paths */
        if (!w.rng) s = em_error_set(err, EM_ERR_NOMEM, "pathfinder: out of memory");
        if (s == EM_OK) s = run_path(&w, &c, p, err);
        for (size_t d = 0; d < D && s == EM_OK; d++) {
            size_t k = p * D + d;
            r->log_q[k] = draw_gaussian(&w, w.best_mu, w.best_C, r->theta + k * K);
            r->log_p[k] = log_p_at(&w, r->theta + k * K);
        }
        r->paths[p] = w.info;
        em_rng_destroy(w.rng);
    }
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(*bufs[i]);
    free(w.S);
    free(w.Y);
    free(w.H);
    free(w.C);
    free(w.best_C);
    if (s != EM_OK) {
        em_pathfinder_result_free(r);
        return s;
    }
    r->seconds = now_s() - t0;
    *out = r;
    return EM_OK;
}

em_status em_pathfinder_mcmc_init(const em_pathfinder_result *r, size_t num_chains, double *init, double *inv_metric,
                                  em_error *err) {
    if (!r || !init || !inv_metric || num_chains == 0)
        return em_error_set(err, EM_ERR_ARG, "em_pathfinder_mcmc_init: a result, num_chains > 0 and both outputs are "
                                             "required");
    size_t K = r->dim, S = r->num_draws;
    if (S < 2) return em_error_set(err, EM_ERR_ARG, "em_pathfinder_mcmc_init: %zu draws; need at least 2", S);
    /* draws evenly spaced over the path-major block: one from each path when chains = paths */
    for (size_t ch = 0; ch < num_chains; ch++) {
        size_t d = (ch * S) / num_chains;
        memcpy(init + ch * K, r->theta + d * K, K * sizeof *init);
    }
    for (size_t i = 0; i < K; i++) {
        double m = 0.0, ss = 0.0;
        for (size_t d = 0; d < S; d++) {
            double x = r->theta[d * K + i], dl = x - m;
            m += dl / (double)(d + 1);
            ss += dl * (x - m);
        }
        inv_metric[i] = ss / (double)(S - 1);
        if (!(inv_metric[i] > 0) || !isfinite(inv_metric[i]))
            return em_error_set(err, EM_ERR_NUMERIC, "em_pathfinder_mcmc_init: coordinate %zu has draw variance %g", i,
                                inv_metric[i]);
    }
    return EM_OK;
}
