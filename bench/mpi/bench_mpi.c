/* bench_mpi — the MPI layer's throughput and memory per rank (run by bench/mpi/run.sh).
 *
 *   mpirun -np R bench_mpi FILE.csv [--k K] [--warmup W] [--samples S] [--grads G]
 *
 * Reads the CSV sharded (every rank its rows only), then measures on the sharded density of the
 * linear regression: gradient evaluations per second (and rows per second: the whole data's
 * rows per gradient), one NUTS chain's bulk ESS per second (the minimum over parameters), and
 * every rank's peak resident memory, before and after reading (ru_maxrss). Rank 0 prints one
 * JSON line; the ratios against one rank are computed by run.sh from those lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ember.h"
#include "ember/mpi.h"
#include "regression_model.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

int main(int argc, char **argv) {
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *path = NULL;
    size_t k = 3;
    int warmup = 200, samples = 200, grads = 30;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--k") && i + 1 < argc) k = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc) samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--grads") && i + 1 < argc) grads = atoi(argv[++i]);
        else path = argv[i];
    }
    if (!path || k == 0 || k > REG_MAX_K) {
        if (rank == 0) fprintf(stderr, "usage: bench_mpi FILE.csv [--k K] [--warmup W] [--samples S] [--grads G]\n");
        MPI_Finalize();
        return 2;
    }
    double rss0 = peak_mib();
    em_error e = {0};
    double t0 = now();
    reg_rows shard;
    size_t total = 0;
    if (reg_read_shard(path, k, 0, 0, &shard, &total, NULL, &e) != EM_OK) {
        fprintf(stderr, "bench_mpi (rank %d): %s\n", rank, e.msg);
        MPI_Finalize();
        return 1;
    }
    double t_read = now() - t0;
    double rss_data = peak_mib();
    em_mpi_model spec = reg_spec(&shard, 0);
    em_logdensity *ld = em_mpi_logdensity(MPI_COMM_WORLD, &spec, NULL, &e);
    if (!ld) {
        fprintf(stderr, "bench_mpi (rank %d): %s\n", rank, e.msg);
        MPI_Finalize();
        return 1;
    }
    size_t dim = em_logdensity_dim(ld);
    double theta[REG_MAX_K + 2] = {0}, g[REG_MAX_K + 2], lp;
    em_logdensity_eval(ld, theta, &lp, g, &e); /* the first evaluation records the tapes */
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = now();
    for (int i = 0; i < grads; i++) {
        theta[0] = 1e-3 * i;
        em_logdensity_eval(ld, theta, &lp, g, &e);
    }
    double t_grad = (now() - t0) / grads;
    em_logdensity_destroy(ld);
    (void)dim;

    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_chains = 1;
    cfg.num_warmup = warmup;
    cfg.num_samples = samples;
    em_posterior *post = NULL;
    t0 = now();
    em_status st = em_mpi_fit_nuts(MPI_COMM_WORLD, &spec, &cfg, &post, &e);
    double t_nuts = now() - t0;
    double min_ess = -1;
    if (st == EM_OK) {
        em_summary *s = NULL;
        if (em_posterior_summary(post, &s, &e) == EM_OK) {
            min_ess = 1e300;
            for (size_t j = 0; j < s->nparams; j++) {
                double v = s->params[j].ess_bulk;
                if (strcmp(s->params[j].name, "lp__") && v == v && v < min_ess) min_ess = v;
            }
            em_summary_free(s);
        }
    } else if (rank == 0) fprintf(stderr, "bench_mpi: %s\n", e.msg);
    em_posterior_free(post);
    reg_rows_free(&shard);
    double rss1 = peak_mib(), mine[3] = {rss0, rss_data, rss1}, mx[3];
    MPI_Reduce(mine, mx, 3, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double data_mib = (double)total * (double)(k + 1) * 8.0 / 1048576.0;
        printf("{\"bench\":\"mpi\",\"ranks\":%d,\"rows\":%zu,\"k\":%zu,\"read_s\":%.3f,\"grad_s\":%.6f,"
               "\"rows_per_s\":%.4g,\"nuts_s\":%.2f,\"min_ess_bulk\":%.0f,\"ess_per_s\":%.2f,"
               "\"data_mib_total\":%.1f,\"rss_start_mib\":%.1f,\"rss_after_read_mib\":%.1f,\"rss_peak_mib\":%.1f}\n",
               size, total, k, t_read, t_grad, (double)total / t_grad, t_nuts, min_ess, min_ess / t_nuts, data_mib,
               mx[0], mx[1], mx[2]);
    }
    MPI_Finalize();
    return st == EM_OK ? 0 : 1;
}
