/* mpi_regression — a linear or logistic regression on a data file too large for one process,
 * fitted over MPI: every rank reads only its rows of the CSV, the log density is sharded over
 * the ranks (mpi.h), and rank 0 prints the summary and writes CmdStan CSVs.
 *
 *   mpi_regression --generate FILE --rows N [--k K] [--logistic] [--seed S]
 *   mpirun -np 4 mpi_regression FILE [--k K] [--logistic] [--method nuts|svi] [--chains C]
 *          [--warmup W] [--samples S] [--seed S] [--block-rows B] [--out DIR]
 *
 * The file has columns x1..xK and y. An error on any rank (a bad row in its part of the file)
 * ends every rank with that message and exit status 1; 2 is a usage error, 130 an interrupted
 * run (its draws are written).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ember.h"
#include "ember/mpi.h"
#include "regression_model.h"

static int rank_, size_;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const em_error *e) {
    fprintf(stderr, "mpi_regression (rank %d of %d): %s\n", rank_, size_, e->msg);
    MPI_Finalize();
    return 1;
}

static int usage(void) {
    if (rank_ == 0)
        fprintf(stderr, "usage: mpi_regression --generate FILE --rows N [--k K] [--logistic] [--seed S]\n"
                        "       mpirun -np R mpi_regression FILE [--k K] [--logistic] [--method nuts|svi] [--chains C]\n"
                        "              [--warmup W] [--samples S] [--seed S] [--block-rows B] [--out DIR]\n");
    MPI_Finalize();
    return 2;
}

/* Rank 0 writes the synthetic rows, streamed (never held), to a temporary file renamed at
 * the end, so that a half-written file is never taken for data. */
static int generate(const char *path, size_t rows, size_t k, int logistic, unsigned long long seed) {
    em_error e = {0};
    em_status st = EM_OK;
    if (rank_ == 0) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) st = em_error_set(&e, EM_ERR_IO, "%s: cannot write", tmp);
        double X[REG_MAX_K * 256], y[256];
        for (size_t j = 0; f && j < k; j++) fprintf(f, "x%zu,", j + 1);
        if (f) fprintf(f, "y\n");
        for (size_t i = 0; f && i < rows; i += 256) {
            size_t n = rows - i < 256 ? rows - i : 256;
            reg_make_rows(i, n, k, logistic, seed, X, y);
            for (size_t r = 0; r < n; r++) {
                for (size_t j = 0; j < k; j++) fprintf(f, "%.6g,", X[r * k + j]);
                fprintf(f, logistic ? "%.0f\n" : "%.6g\n", y[r]);
            }
        }
        if (f && (fflush(f) != 0 || ferror(f))) st = em_error_set(&e, EM_ERR_IO, "%s: write failed", tmp);
        if (f && fclose(f) != 0 && st == EM_OK) st = em_error_set(&e, EM_ERR_IO, "%s: write failed", tmp);
        if (st == EM_OK && rename(tmp, path) != 0) st = em_error_set(&e, EM_ERR_IO, "%s: cannot rename", path);
        if (st == EM_OK) printf("wrote %zu rows of %zu predictors to %s\n", rows, k, path);
    }
    if (em_mpi_agree(MPI_COMM_WORLD, st, &e) != EM_OK) return fail(&e);
    MPI_Finalize();
    return 0;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    const char *data = NULL, *gen = NULL, *method = "nuts", *out = NULL;
    size_t rows = 0, k = 3, block = 0;
    int logistic = 0;
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_warmup = 500;
    cfg.num_samples = 500;
    cfg.handle_sigint = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--logistic")) logistic = 1;
        else if (!strcmp(a, "--generate") && v) gen = v, i++;
        else if (!strcmp(a, "--rows") && v) rows = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--k") && v) k = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--method") && v) method = v, i++;
        else if (!strcmp(a, "--chains") && v) cfg.num_chains = atoi(v), i++;
        else if (!strcmp(a, "--warmup") && v) cfg.num_warmup = atoi(v), i++;
        else if (!strcmp(a, "--samples") && v) cfg.num_samples = atoi(v), i++;
        else if (!strcmp(a, "--seed") && v) cfg.seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--block-rows") && v) block = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--help")) return usage();
        else if (a[0] != '-' && !data) data = a;
        else return usage();
    }
    if (k == 0 || k > REG_MAX_K) {
        if (rank_ == 0) fprintf(stderr, "mpi_regression: --k %zu, must be in 1..%d\n", k, REG_MAX_K);
        MPI_Finalize();
        return 2;
    }
    if (gen) return rows ? generate(gen, rows, k, logistic, cfg.seed) : usage();
    if (!data || (strcmp(method, "nuts") && strcmp(method, "svi"))) return usage();

    em_error e = {0};
    double t0 = now();
    reg_rows shard;
    size_t total = 0;
    if (reg_read_shard(data, k, logistic, block, &shard, &total, &block, &e) != EM_OK) return fail(&e);
    size_t nrows = shard.n;
    double t_read = now() - t0;
    em_mpi_model spec = reg_spec(&shard, block);
    em_posterior *post = NULL;
    em_status st = EM_OK;
    double t1 = now();
    if (!strcmp(method, "nuts")) {
        cfg.progress = rank_ == 0;
        st = em_mpi_fit_nuts(MPI_COMM_WORLD, &spec, &cfg, &post, &e);
        if (st != EM_OK && st != EM_ERR_INTERRUPTED) return fail(&e);
    } else {
        shard.subsample = nrows < 1000 ? 0 : 1000;
        em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, 0.02);
        em_svi_options so;
        memset(&so, 0, sizeof so);
        so.seed = cfg.seed;
        so.stop = EM_SVI_STOP_TREND;
        so.window = 100;
        so.average = 1;
        em_mpi_svi *svi = em_mpi_svi_create(MPI_COMM_WORLD, &spec, EM_AUTO_DIAGONAL_NORMAL, &oc, &so, &e);
        if (!svi) return fail(&e);
        size_t steps = 0;
        if (em_svi_run(em_mpi_svi_handle(svi), 20000, &steps, &e) != EM_OK) return fail(&e);
        shard.subsample = 0;
        if (em_mpi_svi_posterior(svi, &spec, 1000, cfg.seed, &post, &e) != EM_OK) return fail(&e);
        if (rank_ == 0) printf("SVI: %zu steps, %s\n", steps, em_svi_converged(em_mpi_svi_handle(svi)) ? "converged" : "not converged");
        em_mpi_svi_destroy(svi);
    }
    double t_fit = now() - t1;
    if (rank_ == 0) {
        printf("%zu rows over %d rank%s (%zu rows on rank 0); read %.2f s, fit %.2f s\n", total, size_, size_ == 1 ? "" : "s",
               nrows, t_read, t_fit);
        if (em_posterior_print(post, stdout, &e) != EM_OK) fprintf(stderr, "mpi_regression: %s\n", e.msg);
        if (out) {
            size_t nw = 0;
            if (mkdir(out, 0777) != 0 && errno != EEXIST) fprintf(stderr, "mpi_regression: %s: %s\n", out, strerror(errno));
            if (em_posterior_write_cmdstan(post, out, "mpi_regression", NULL, &nw, &e) != EM_OK)
                fprintf(stderr, "mpi_regression: %s\n", e.msg);
            else printf("wrote %zu CmdStan CSV file%s to %s/\n", nw, nw == 1 ? "" : "s", out);
        }
    }
    fflush(stdout);
    /* the other ranks wait for rank 0's files: mpirun ends the job when the first rank exits
     * with a non-zero status (130 after a signal) */
    MPI_Barrier(MPI_COMM_WORLD);
    int interrupted = st == EM_ERR_INTERRUPTED;
    em_posterior_free(post);
    reg_rows_free(&shard);
    MPI_Finalize();
    return interrupted ? 130 : 0;
}
