/* nuts.c — the Hamiltonian kernels: Euclidean metric, leapfrog, multinomial NUTS, static HMC
 * and the initial step-size heuristic. See internal/nuts.h.
 *
 * The NUTS transition follows Betancourt (2017, arXiv:1701.02434, appendix A.3) as Stan
 * implements it since 2.20: the trajectory doubles in a random direction; within a new subtree
 * a state is chosen with probability proportional to exp(-H) (uniform progressive sampling);
 * between the old trajectory and the new subtree the new subtree's pick is taken with
 * probability min(1, w_new / w_old) (biased progressive sampling, which favours moving far).
 * The generalised no-U-turn criterion is checked on rho, the sum of momenta over a (sub)tree,
 * against p♯ = M^-1 p at both ends; and, because two subtrees can each be fine while their
 * union already turned, also on each subtree extended by the neighbouring state of the other
 * (the extra checks added in Stan 2.20 after Betancourt's 2019 note on the criterion).
 */
#include "internal/nuts.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

struct em_hmc_level {
    em_hmc_point z_propose_final;
    double *p_init_end, *ps_init_end, *rho_init;
    double *p_final_beg, *ps_final_beg, *rho_final;
};

/* ---- small vector helpers --------------------------------------------------------------- */

static void vcopy(double *dst, const double *src, size_t n) { memcpy(dst, src, n * sizeof *dst); }

static void point_copy(em_hmc_point *dst, const em_hmc_point *src, size_t n) {
    vcopy(dst->q, src->q, n);
    vcopy(dst->p, src->p, n);
    vcopy(dst->g, src->g, n);
    dst->lp = src->lp;
}

static double log_sum_exp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

/* ---- metric ------------------------------------------------------------------------------ */

/* out = M^-1 p (the velocity dq/dt, Stan's dtau_dp). */
static void p_sharp(const em_hmc *h, const double *p, double *out) {
    size_t d = h->dim;
    switch (h->metric) {
    case EM_METRIC_UNIT:
        vcopy(out, p, d);
        break;
    case EM_METRIC_DIAG:
        for (size_t i = 0; i < d; i++) out[i] = h->inv_metric[i] * p[i];
        break;
    case EM_METRIC_DENSE:
        /* A plain loop rather than BLAS: d is small in regression models, and a fixed
         * summation order keeps draws identical whatever threading BLAS would choose. */
        for (size_t i = 0; i < d; i++) {
            const double *row = h->inv_metric + i * d;
            double s = 0;
            for (size_t j = 0; j < d; j++) s += row[j] * p[j];
            out[i] = s;
        }
        break;
    }
}

static double kinetic(em_hmc *h, const double *p) {
    p_sharp(h, p, h->tmp);
    double k = 0;
    for (size_t i = 0; i < h->dim; i++) k += p[i] * h->tmp[i];
    return 0.5 * k;
}

static double hamiltonian(em_hmc *h, const em_hmc_point *z) {
    double H = -z->lp + kinetic(h, z->p);
    return isnan(H) ? INFINITY : H;
}

/* p ~ N(0, M). Dense: with M^-1 = L·Lᵀ, p = L^-ᵀ u has covariance (L·Lᵀ)^-1 = M. */
static void draw_momentum(em_hmc *h, double *p) {
    size_t d = h->dim;
    for (size_t i = 0; i < d; i++) p[i] = em_rng_normal(h->rng);
    switch (h->metric) {
    case EM_METRIC_UNIT:
        break;
    case EM_METRIC_DIAG:
        for (size_t i = 0; i < d; i++) p[i] *= h->inv_sqrt[i];
        break;
    case EM_METRIC_DENSE:
        /* back substitution with Lᵀ (upper triangular): Lᵀ[i][j] = L[j][i] */
        for (size_t ii = d; ii-- > 0;) {
            double s = p[ii];
            for (size_t j = ii + 1; j < d; j++) s -= h->chol[j * d + ii] * p[j];
            p[ii] = s / h->chol[ii * d + ii];
        }
        break;
    }
}

em_status em_hmc_set_metric(em_hmc *h, const double *inv_metric, em_error *err) {
    size_t d = h->dim;
    if (h->metric == EM_METRIC_UNIT) return EM_OK;
    if (h->metric == EM_METRIC_DIAG) {
        for (size_t i = 0; i < d; i++)
            if (!(inv_metric[i] > 0) || !isfinite(inv_metric[i]))
                return em_error_set(err, EM_ERR_NUMERIC,
                                    "inverse metric element %zu is %g (must be positive and finite)",
                                    i, inv_metric[i]);
        for (size_t i = 0; i < d; i++) {
            h->inv_metric[i] = inv_metric[i];
            h->inv_sqrt[i] = 1.0 / sqrt(inv_metric[i]);
        }
        return EM_OK;
    }
    for (size_t i = 0; i < d * d; i++)
        if (!isfinite(inv_metric[i]))
            return em_error_set(err, EM_ERR_NUMERIC, "inverse metric element (%zu, %zu) is %g",
                                i / d, i % d, inv_metric[i]);
    /* factor into a scratch copy first so a failure keeps the old metric */
    double *l = h->chol + d * d; /* second half of the chol allocation is scratch */
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++) l[i * d + j] = j <= i ? inv_metric[i * d + j] : 0.0;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)d, l, (lapack_int)d);
    if (info != 0)
        return em_error_set(err, EM_ERR_NUMERIC,
                            "dense inverse metric is not positive definite (Cholesky fails at "
                            "row %d)", (int)info);
    vcopy(h->chol, l, d * d);
    vcopy(h->inv_metric, inv_metric, d * d);
    return EM_OK;
}

/* ---- set-up ------------------------------------------------------------------------------ */

em_status em_hmc_init(em_hmc *h, em_logdensity *ld, em_rng *rng, em_mcmc_metric metric,
                      const double *init_inv_metric, int max_depth, double max_delta_h,
                      em_error *err) {
    memset(h, 0, sizeof *h);
    size_t d = em_logdensity_dim(ld);
    h->ld = ld;
    h->rng = rng;
    h->dim = d;
    h->metric = metric;
    h->eps = 1.0;
    h->max_depth = max_depth;
    h->max_delta_h = max_delta_h;
    size_t nlev = (size_t)max_depth + 1;
    size_t nvec = 1 + 5 * 3 + 8 + 3 + nlev * 9;
    h->block = calloc(nvec * d, sizeof *h->block);
    h->levels = calloc(nlev, sizeof *h->levels);
    size_t msize = metric == EM_METRIC_DENSE ? d * d : d;
    h->inv_metric = calloc(msize, sizeof *h->inv_metric);
    if (metric == EM_METRIC_DENSE) h->chol = calloc(2 * d * d, sizeof *h->chol);
    if (metric == EM_METRIC_DIAG) h->inv_sqrt = calloc(d, sizeof *h->inv_sqrt);
    if (!h->block || !h->levels || !h->inv_metric || (metric == EM_METRIC_DENSE && !h->chol) ||
        (metric == EM_METRIC_DIAG && !h->inv_sqrt)) {
        em_hmc_free(h);
        return em_error_set(err, EM_ERR_NOMEM, "em_mcmc_run: out of memory for a chain's sampler");
    }
    double *v = h->block;
#define TAKE() (v += d, v - d)
    h->tmp = TAKE();
    em_hmc_point *pts[5] = {&h->z_fwd, &h->z_bck, &h->z_sample, &h->z_propose, &h->z_init};
    for (int i = 0; i < 5; i++) {
        pts[i]->q = TAKE();
        pts[i]->p = TAKE();
        pts[i]->g = TAKE();
    }
    h->p_fwd_fwd = TAKE();
    h->ps_fwd_fwd = TAKE();
    h->p_fwd_bck = TAKE();
    h->ps_fwd_bck = TAKE();
    h->p_bck_fwd = TAKE();
    h->ps_bck_fwd = TAKE();
    h->p_bck_bck = TAKE();
    h->ps_bck_bck = TAKE();
    h->rho = TAKE();
    h->rho_fwd = TAKE();
    h->rho_bck = TAKE();
    for (size_t k = 0; k < nlev; k++) {
        em_hmc_level *lv = &h->levels[k];
        lv->z_propose_final.q = TAKE();
        lv->z_propose_final.p = TAKE();
        lv->z_propose_final.g = TAKE();
        lv->p_init_end = TAKE();
        lv->ps_init_end = TAKE();
        lv->rho_init = TAKE();
        lv->p_final_beg = TAKE();
        lv->ps_final_beg = TAKE();
        lv->rho_final = TAKE();
    }
#undef TAKE
    /* identity to start with */
    if (metric == EM_METRIC_DENSE) {
        for (size_t i = 0; i < d; i++) h->inv_metric[i * d + i] = h->chol[i * d + i] = 1.0;
    } else {
        for (size_t i = 0; i < d; i++) h->inv_metric[i] = 1.0;
        if (h->inv_sqrt)
            for (size_t i = 0; i < d; i++) h->inv_sqrt[i] = 1.0;
    }
    if (init_inv_metric && metric != EM_METRIC_UNIT) {
        em_status s = em_hmc_set_metric(h, init_inv_metric, err);
        if (s != EM_OK) {
            em_hmc_free(h);
            return EM_ERR_ARG;
        }
    }
    return EM_OK;
}

void em_hmc_free(em_hmc *h) {
    free(h->block);
    free(h->levels);
    free(h->inv_metric);
    free(h->chol);
    free(h->inv_sqrt);
    h->block = NULL;
    h->levels = NULL;
    h->inv_metric = h->chol = h->inv_sqrt = NULL;
}

/* ---- dynamics ---------------------------------------------------------------------------- */

int em_hmc_eval(em_hmc *h, em_hmc_point *z) {
    em_error_clear(&h->err);
    em_status s = em_logdensity_eval(h->ld, z->q, &z->lp, z->g, &h->err);
    if (s != EM_OK || !isfinite(z->lp)) {
        z->lp = -INFINITY;
        return 0;
    }
    return 1;
}

/* One leapfrog (Störmer–Verlet) step of size eps on H(q,p) = -log π(q) + ½ pᵀM^-1p. Returns 0
 * when the density could not be evaluated at the new position (then z->lp = -inf, H = inf and
 * the caller treats the step as divergent; z->p is only half updated and is not used). */
static int leapfrog(em_hmc *h, em_hmc_point *z, double eps) {
    size_t d = h->dim;
    double half = 0.5 * eps;
    for (size_t i = 0; i < d; i++) z->p[i] += half * z->g[i];
    p_sharp(h, z->p, h->tmp);
    for (size_t i = 0; i < d; i++) z->q[i] += eps * h->tmp[i];
    if (!em_hmc_eval(h, z)) return 0;
    for (size_t i = 0; i < d; i++) z->p[i] += half * z->g[i];
    return 1;
}

/* The no-U-turn condition on a span with summed momentum rho (+ extra, when not NULL) and
 * sharp momenta at its two ends: keep going while both ends still move away from each other,
 * p♯⁻·rho > 0 and p♯⁺·rho > 0 (Betancourt 2017, appendix A.4.2, the generalised criterion). */
static int no_uturn(const double *ps_a, const double *ps_b, const double *rho, const double *extra,
                    size_t d) {
    double da = 0, db = 0;
    for (size_t i = 0; i < d; i++) {
        double r = extra ? rho[i] + extra[i] : rho[i];
        da += ps_a[i] * r;
        db += ps_b[i] * r;
    }
    return da > 0 && db > 0;
}

typedef struct tree_acc {
    double H0;
    double sign_eps;
    int n_leapfrog;
    double sum_metro;
    int divergent;
} tree_acc;

/* Build a subtree of 2^depth leapfrog steps from z (which moves to its far end). Writes the
 * multinomial pick into z_propose, the subtree's summed momentum into rho (added), its end
 * momenta and sharp momenta (beg = first state integrated, end = last), and adds its weights
 * to *lsw. Returns 0 when the subtree diverged or turned back on itself. */
static int build_tree(em_hmc *h, int depth, em_hmc_point *z, em_hmc_point *z_propose,
                      double *ps_beg, double *ps_end, double *rho, double *p_beg, double *p_end,
                      double *lsw, tree_acc *acc) {
    size_t d = h->dim;
    if (depth == 0) {
        int ok = leapfrog(h, z, acc->sign_eps);
        acc->n_leapfrog++;
        double H = INFINITY;
        if (ok) {
            /* p♯ is needed for the criterion anyway: compute it once for the energy too */
            p_sharp(h, z->p, ps_beg);
            double k = 0;
            for (size_t i = 0; i < d; i++) k += z->p[i] * ps_beg[i];
            H = -z->lp + 0.5 * k;
            if (isnan(H)) H = INFINITY;
        }
        if (H - acc->H0 > h->max_delta_h) acc->divergent = 1;
        *lsw = log_sum_exp(*lsw, acc->H0 - H);
        acc->sum_metro += acc->H0 - H > 0 ? 1.0 : exp(acc->H0 - H);
        if (acc->divergent) return 0;
        point_copy(z_propose, z, d);
        vcopy(ps_end, ps_beg, d);
        for (size_t i = 0; i < d; i++) rho[i] += z->p[i];
        vcopy(p_beg, z->p, d);
        vcopy(p_end, z->p, d);
        return 1;
    }
    em_hmc_level *lv = &h->levels[depth];

    double lsw_init = -INFINITY;
    memset(lv->rho_init, 0, d * sizeof(double));
    if (!build_tree(h, depth - 1, z, z_propose, ps_beg, lv->ps_init_end, lv->rho_init, p_beg,
                    lv->p_init_end, &lsw_init, acc))
        return 0;

    double lsw_final = -INFINITY;
    memset(lv->rho_final, 0, d * sizeof(double));
    if (!build_tree(h, depth - 1, z, &lv->z_propose_final, lv->ps_final_beg, ps_end, lv->rho_final,
                    lv->p_final_beg, p_end, &lsw_final, acc))
        return 0;

    /* uniform progressive sampling within the subtree: the second half's pick replaces the
     * first half's with probability w_final / (w_init + w_final) */
    double lsw_sub = log_sum_exp(lsw_init, lsw_final);
    *lsw = log_sum_exp(*lsw, lsw_sub);
    if (lsw_final > lsw_sub) {
        point_copy(z_propose, &lv->z_propose_final, d);
    } else if (em_rng_uniform(h->rng) < exp(lsw_final - lsw_sub)) {
        point_copy(z_propose, &lv->z_propose_final, d);
    }

    for (size_t i = 0; i < d; i++) rho[i] += lv->rho_init[i] + lv->rho_final[i];

    /* across the merged subtree, then each half extended by the neighbouring state */
    int persist = 0;
    {
        double da = 0, db = 0;
        for (size_t i = 0; i < d; i++) {
            double r = lv->rho_init[i] + lv->rho_final[i];
            da += ps_beg[i] * r;
            db += ps_end[i] * r;
        }
        persist = da > 0 && db > 0;
    }
    persist = persist && no_uturn(ps_beg, lv->ps_final_beg, lv->rho_init, lv->p_final_beg, d);
    persist = persist && no_uturn(lv->ps_init_end, ps_end, lv->rho_final, lv->p_init_end, d);
    return persist;
}

void em_nuts_transition(em_hmc *h, em_hmc_point *z, em_hmc_stats *st) {
    size_t d = h->dim;
    draw_momentum(h, z->p);
    tree_acc acc = {0};
    acc.H0 = hamiltonian(h, z);

    point_copy(&h->z_fwd, z, d);
    point_copy(&h->z_bck, z, d);
    point_copy(&h->z_sample, z, d);

    vcopy(h->p_fwd_fwd, z->p, d);
    p_sharp(h, z->p, h->ps_fwd_fwd);
    vcopy(h->p_fwd_bck, z->p, d);
    vcopy(h->ps_fwd_bck, h->ps_fwd_fwd, d);
    vcopy(h->p_bck_fwd, z->p, d);
    vcopy(h->ps_bck_fwd, h->ps_fwd_fwd, d);
    vcopy(h->p_bck_bck, z->p, d);
    vcopy(h->ps_bck_bck, h->ps_fwd_fwd, d);
    vcopy(h->rho, z->p, d);

    double lsw = 0; /* log of the initial state's weight exp(H0 - H0) */
    int depth = 0;
    while (depth < h->max_depth) {
        memset(h->rho_fwd, 0, d * sizeof(double));
        memset(h->rho_bck, 0, d * sizeof(double));
        double lsw_sub = -INFINITY;
        int valid;
        if (em_rng_uniform(h->rng) > 0.5) {
            /* extend forward: the old trajectory becomes the backward subtree */
            vcopy(h->rho_bck, h->rho, d);
            vcopy(h->p_bck_fwd, h->p_fwd_fwd, d);
            vcopy(h->ps_bck_fwd, h->ps_fwd_fwd, d);
            acc.sign_eps = h->eps;
            valid = build_tree(h, depth, &h->z_fwd, &h->z_propose, h->ps_fwd_bck, h->ps_fwd_fwd,
                               h->rho_fwd, h->p_fwd_bck, h->p_fwd_fwd, &lsw_sub, &acc);
        } else {
            vcopy(h->rho_fwd, h->rho, d);
            vcopy(h->p_fwd_bck, h->p_bck_bck, d);
            vcopy(h->ps_fwd_bck, h->ps_bck_bck, d);
            acc.sign_eps = -h->eps;
            valid = build_tree(h, depth, &h->z_bck, &h->z_propose, h->ps_bck_fwd, h->ps_bck_bck,
                               h->rho_bck, h->p_bck_fwd, h->p_bck_bck, &lsw_sub, &acc);
        }
        if (!valid) break;
        depth++;

        /* biased progressive sampling between the old trajectory and the new subtree */
        if (lsw_sub > lsw) {
            point_copy(&h->z_sample, &h->z_propose, d);
        } else if (em_rng_uniform(h->rng) < exp(lsw_sub - lsw)) {
            point_copy(&h->z_sample, &h->z_propose, d);
        }
        lsw = log_sum_exp(lsw, lsw_sub);

        for (size_t i = 0; i < d; i++) h->rho[i] = h->rho_bck[i] + h->rho_fwd[i];
        int persist = no_uturn(h->ps_bck_bck, h->ps_fwd_fwd, h->rho, NULL, d);
        persist = persist && no_uturn(h->ps_bck_bck, h->ps_fwd_bck, h->rho_bck, h->p_fwd_bck, d);
        persist = persist && no_uturn(h->ps_bck_fwd, h->ps_fwd_fwd, h->rho_fwd, h->p_bck_fwd, d);
        if (!persist) break;
    }

    st->stepsize = h->eps;
    st->treedepth = depth;
    st->n_leapfrog = acc.n_leapfrog;
    st->divergent = acc.divergent;
    /* Stan's accept_stat__: the mean Metropolis probability over every state integrated,
     * including those of a rejected final subtree; it is what dual averaging steers. */
    st->accept_stat = acc.n_leapfrog > 0 ? acc.sum_metro / acc.n_leapfrog : 0.0;
    point_copy(z, &h->z_sample, d);
    st->energy = hamiltonian(h, z);
}

void em_static_hmc_transition(em_hmc *h, em_hmc_point *z, int num_steps, em_hmc_stats *st) {
    size_t d = h->dim;
    draw_momentum(h, z->p);
    double H0 = hamiltonian(h, z);
    em_hmc_point *y = &h->z_propose;
    point_copy(y, z, d);
    int steps = 0, ok = 1;
    while (steps < num_steps && ok) {
        ok = leapfrog(h, y, h->eps);
        steps++;
    }
    double H = ok ? hamiltonian(h, y) : INFINITY;
    double a = exp(H0 - H);
    st->divergent = H - H0 > h->max_delta_h;
    st->stepsize = h->eps;
    st->treedepth = 0;
    st->n_leapfrog = steps;
    if (a >= 1 || em_rng_uniform(h->rng) < a) {
        point_copy(z, y, d);
        st->energy = H;
    } else {
        st->energy = H0;
    }
    st->accept_stat = a > 1 ? 1 : a;
}

/* ---- step-size heuristic ----------------------------------------------------------------- */

/* Stan's base_hmc::init_stepsize: one leapfrog step from z with fresh momentum; if the change
 * in H beats log(0.8) keep doubling until it no longer does, otherwise halve until it does.
 * (Hoffman & Gelman 2014, Algorithm 4, with the threshold on ΔH rather than on 0.5.) */
em_status em_hmc_find_stepsize(em_hmc *h, const em_hmc_point *z, em_error *err) {
    size_t d = h->dim;
    if (!(h->eps > 0) || h->eps > 1e7 || !isfinite(h->eps)) return EM_OK;
    em_hmc_point *y = &h->z_init;
    int direction = 0;
    for (int iter = 0;; iter++) {
        point_copy(y, z, d);
        draw_momentum(h, y->p);
        double H0 = hamiltonian(h, y);
        int ok = leapfrog(h, y, h->eps);
        double H = ok ? hamiltonian(h, y) : INFINITY;
        double delta_h = H0 - H;
        if (iter == 0) {
            direction = delta_h > log(0.8) ? 1 : -1;
            continue; /* Stan decides the direction on a first trial, then starts over */
        }
        if (direction == 1 && !(delta_h > log(0.8))) break;
        if (direction == -1 && !(delta_h < log(0.8))) break;
        h->eps = direction == 1 ? 2 * h->eps : 0.5 * h->eps;
        if (h->eps > 1e7)
            return em_error_set(err, EM_ERR_NUMERIC,
                                "step size heuristic: the step size grew past 1e7 (the posterior "
                                "looks improper: is every parameter given a proper prior?)");
        if (h->eps < 1e-300 || iter > 2200)
            return em_error_set(err, EM_ERR_NUMERIC,
                                "step size heuristic: no acceptable step size, even %g fails (is "
                                "the log density continuous and finite around the initial "
                                "point?)", h->eps);
    }
    return EM_OK;
}
