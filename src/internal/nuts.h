/* nuts.h — the Hamiltonian kernels behind em_mcmc_run (private to the mcmc module).
 *
 * One em_hmc per chain: the chain's density clone, its RNG, the Euclidean metric (unit,
 * diagonal or dense inverse metric M^-1), the step size, and preallocated workspace so a
 * transition allocates nothing. The kernels are the multinomial NUTS of Betancourt (2017,
 * "A Conceptual Introduction to Hamiltonian Monte Carlo", arXiv:1701.02434, appendix A) as
 * implemented in Stan ≥ 2.20 (base_nuts.hpp), and static HMC with a Metropolis correction
 * (Neal 2011, "MCMC using Hamiltonian dynamics").
 */
#ifndef EMBER_INTERNAL_NUTS_H
#define EMBER_INTERNAL_NUTS_H

#include "ember/mcmc.h"

/* A point in phase space with the gradient of the log density at q cached. */
typedef struct em_hmc_point {
    double *q, *p, *g;
    double lp; /* log density at q; -inf where it could not be evaluated */
} em_hmc_point;

/* Per-transition statistics (the sampler columns). */
typedef struct em_hmc_stats {
    double accept_stat;
    double stepsize;
    int treedepth;
    int n_leapfrog;
    int divergent;
    double energy;
} em_hmc_stats;

typedef struct em_hmc_level em_hmc_level;

typedef struct em_hmc {
    em_logdensity *ld;
    em_rng *rng;
    size_t dim;
    em_mcmc_metric metric;
    double *inv_metric; /* dim (unit, diag) or dim*dim row-major (dense) */
    double *chol;       /* dense: lower Cholesky factor L of inv_metric, L·Lᵀ = M^-1 */
    double *inv_sqrt;   /* diag: 1/sqrt(inv_metric), to draw p ~ N(0, M) */
    double eps;         /* nominal step size */
    double max_delta_h;
    int max_depth;
    em_error err; /* the last density error (scratch for each evaluation) */

    /* workspace */
    double *tmp;
    em_hmc_point z_fwd, z_bck, z_sample, z_propose, z_init;
    double *p_fwd_fwd, *ps_fwd_fwd, *p_fwd_bck, *ps_fwd_bck;
    double *p_bck_fwd, *ps_bck_fwd, *p_bck_bck, *ps_bck_bck;
    double *rho, *rho_fwd, *rho_bck;
    em_hmc_level *levels; /* one per recursion depth */
    double *block;        /* one allocation backing all of the above vectors */
} em_hmc;

/* Allocate the kernel for ld (not owned) and rng (not owned). The metric starts as the
 * identity, or as init_inv_metric when given (dim or dim*dim values). Returns EM_OK,
 * EM_ERR_NOMEM, or EM_ERR_ARG when the given dense metric is not positive definite. */
em_status em_hmc_init(em_hmc *h, em_logdensity *ld, em_rng *rng, em_mcmc_metric metric,
                      const double *init_inv_metric, int max_depth, double max_delta_h,
                      em_error *err);
void em_hmc_free(em_hmc *h);
/* Replace the inverse metric (and refactor it). EM_ERR_NUMERIC when a dense one is not
 * positive definite (then the old metric is kept). */
em_status em_hmc_set_metric(em_hmc *h, const double *inv_metric, em_error *err);

/* Evaluate the log density and gradient at z->q; returns 1 when finite. */
int em_hmc_eval(em_hmc *h, em_hmc_point *z);

/* Stan's initial step-size heuristic (base_hmc::init_stepsize): from h->eps, double or halve
 * until a single leapfrog step's change in H crosses log(0.8). z is the chain's point (q, g,
 * lp valid) and is left unchanged. EM_ERR_NUMERIC when no usable step size exists. */
em_status em_hmc_find_stepsize(em_hmc *h, const em_hmc_point *z, em_error *err);

/* One NUTS transition from z (q, g, lp valid); z becomes the new draw. */
void em_nuts_transition(em_hmc *h, em_hmc_point *z, em_hmc_stats *st);
/* One static HMC transition with num_steps leapfrog steps. */
void em_static_hmc_transition(em_hmc *h, em_hmc_point *z, int num_steps, em_hmc_stats *st);

#endif
