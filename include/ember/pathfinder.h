/* pathfinder.h — Pathfinder: variational inference along a quasi-Newton optimisation path.
 *
 * Pathfinder (Zhang, Carpenter, Gelman & Vehtari 2022, "Pathfinder: Parallel quasi-Newton
 * variational inference", JMLR 23) runs L-BFGS on the negative log density from a random
 * start and, at every iterate, forms the Gaussian that the quasi-Newton state implies: its
 * covariance is the L-BFGS inverse Hessian (a diagonal initial matrix, updated as Gilbert &
 * Lemaréchal 1989 eq. 4.9 propose, then the BFGS updates of the last `history` steps), its
 * mean the Newton step from the iterate. The ELBO of each Gaussian is estimated with a few
 * draws, and the best one along the path is the approximation: it lies where the path passes
 * through the bulk of the posterior, before the optimiser reaches the mode (for a posterior
 * without a mode worth the name, as for hierarchical models, the bulk is what matters).
 * Multi-path Pathfinder runs several independent paths and resamples their pooled draws by
 * Pareto smoothed importance weights (em_fit_pathfinder does, with em_posterior_resample).
 *
 * The cost is that of an optimisation — tens to hundreds of gradients per path — plus the
 * ELBO draws, usually far below a NUTS warmup; the draws are independent. This
 * implementation forms the inverse Hessian as a dense K×K matrix (O(history·K²) per iterate,
 * a Cholesky O(K³)), which is fine for regressions of up to a few hundred coefficients; the
 * paper's factored form costs O(K·history²) and is the one to write for larger K.
 *
 * The draws also make a NUTS start (em_pathfinder_mcmc_init): one draw per chain as the
 * initial point, and the draws' variances as the initial diagonal inverse metric.
 */
#ifndef EMBER_PATHFINDER_H
#define EMBER_PATHFINDER_H

#include "ember/logdensity.h"
#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Ranges after the defaults; em_pathfinder_run checks them. */
typedef struct em_pathfinder_config {
    size_t num_paths;      /* 4 (Stan's default); 1..1024 */
    size_t num_draws;      /* 1000 draws of each path's approximation (and of the result); >= 2 */
    size_t num_elbo_draws; /* 25 draws per ELBO estimate along a path; >= 1 */
    size_t history;        /* 6 L-BFGS correction pairs; 1..100 */
    size_t max_iters;      /* 1000 L-BFGS iterations per path; >= 1 */
    double tol_rel_obj;    /* 1e-10: a relative change of the objective below this ends a path; >= 0 */
    double tol_grad;       /* 1e-8: a gradient max-norm below this ends a path; >= 0 */
    double init_radius;    /* 2: each path starts uniform(-r, r) on the unconstrained space; >= 0 */
    uint64_t seed;         /* 20260101 */
    /* em_fit_pathfinder only: 1 resamples the pooled draws of the paths by their PSIS weights
     * (multi-path Pathfinder); 0 keeps them all (num_paths × num_draws), with log_p__ and
     * log_g__ for the user's own importance weighting. */
    int psis_resample;     /* 1 */
} em_pathfinder_config;

em_pathfinder_config em_pathfinder_config_default(void);

typedef struct em_pathfinder_path {
    size_t iters;      /* L-BFGS iterations run */
    size_t best_iter;  /* the iterate whose Gaussian had the largest ELBO (1-based) */
    double best_elbo;  /* its ELBO estimate */
    size_t grad_evals; /* log-density evaluations with gradient (optimisation) */
    size_t lp_evals;   /* evaluations without (ELBO draws and the final draws) */
    int converged;     /* the path ended by a tolerance rather than max_iters or a failed search */
} em_pathfinder_path;

typedef struct em_pathfinder_result {
    size_t dim, num_paths, num_draws; /* num_draws = num_paths × cfg.num_draws, path-major */
    double *theta;   /* num_draws × dim unconstrained draws */
    double *log_p;   /* the model's log density at each draw (with the Jacobian) */
    double *log_q;   /* the density of the approximation that drew it */
    em_pathfinder_path *paths;
    double seconds;  /* wall time */
} em_pathfinder_result;

/* Every path of Pathfinder on ld (cfg NULL: the defaults). A path whose every Gaussian had a
 * non-finite ELBO (or that found no finite start in 100 tries) is EM_ERR_NUMERIC naming it. */
em_status em_pathfinder_run(em_logdensity *ld, const em_pathfinder_config *cfg, em_pathfinder_result **out,
                            em_error *err);
void em_pathfinder_result_free(em_pathfinder_result *r);

/* A NUTS start from the draws: init (num_chains × dim, chain-major: draws spread over the
 * result, so over the paths) and inv_metric (dim: the draws' variances). Pass them as
 * em_mcmc_config's init (init_len = num_chains × dim) and inv_metric. */
em_status em_pathfinder_mcmc_init(const em_pathfinder_result *r, size_t num_chains, double *init, double *inv_metric,
                                  em_error *err);

/* The posterior handle's one call (implemented with the posterior, src/analysis/posterior.c):
 * Pathfinder on the model's unconstrained density, then a posterior of its draws
 * (EM_POSTERIOR_PATHFINDER) with log_p__ and log_g__ and their Pareto k̂
 * (em_posterior_psis_k), resampled to cfg->num_draws when psis_resample. */
typedef struct em_posterior em_posterior;
em_status em_fit_pathfinder(em_model_fn model, const void *data, const em_pathfinder_config *cfg, em_posterior **out,
                            em_error *err);

#ifdef __cplusplus
}
#endif
#endif
