/* test_mpi.c — the MPI layer, run by tests/test_mpi.sh under mpirun -np 1, 2 and 4.
 *
 * Each run checks, on every rank: the sharded log density and gradient against the serial
 * density of the whole data (to rounding: the sum is in another order); NUTS draws identical
 * on every rank; the sharded CSV reader (each rank's rows and their file lines); a bad value in
 * one rank's shard reported on every rank with the file's own line; data-parallel SVI keeping
 * every rank's parameters identical and finding the posterior; the errors for a latent site
 * inside the data plate and for rows not cut at block boundaries. Rank 0 writes digests of the
 * density and the draws to argv[1]; the script compares them across rank counts (they must be
 * identical, bit for bit).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "ember/mpi.h"
#include "regression_model.h"

static int rank_, size_, failures_;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", rank_, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            failures_++;                                                             \
        }                                                                            \
    } while (0)

static uint64_t digest(uint64_t h, const double *x, size_t n) {
    const unsigned char *b = (const unsigned char *)x;
    for (size_t i = 0; i < n * sizeof(double); i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* every rank's h equal */
static int same_everywhere(uint64_t h) {
    unsigned long long lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

#define NROWS 10000
#define K 3
#define BLOCK 512

typedef struct shard {
    reg_rows rows;
    double *X, *y;
} shard;

static void shard_make(shard *s, int logistic) {
    size_t first, n;
    em_mpi_partition(NROWS, BLOCK, size_, rank_, &first, &n);
    s->X = malloc(n * K * sizeof *s->X);
    s->y = malloc(n * sizeof *s->y);
    reg_make_rows(first, n, K, logistic, 42, s->X, s->y);
    s->rows = (reg_rows){s->X, s->y, n, K, logistic, 0};
}

static void shard_free(shard *s) {
    free(s->X);
    free(s->y);
}

/* The sharded density equals the serial one at a few points; its bits go into *h. */
static void test_density(int logistic, uint64_t *h) {
    shard s;
    shard_make(&s, logistic);
    em_mpi_model spec = reg_spec(&s.rows, BLOCK);
    em_error err = {0};
    em_logdensity *ld = em_mpi_logdensity(MPI_COMM_WORLD, &spec, NULL, &err);
    CHECK(ld != NULL, "%s", err.msg);
    double *X = malloc(NROWS * K * sizeof *X), *y = malloc(NROWS * sizeof *y);
    reg_make_rows(0, NROWS, K, logistic, 42, X, y);
    reg_rows all = {X, y, NROWS, K, logistic, 0};
    em_logdensity *serial = em_logdensity_from_model(reg_model, &all, NULL, &err);
    CHECK(serial != NULL, "%s", err.msg);
    if (ld && serial) {
        size_t dim = em_logdensity_dim(ld);
        CHECK(dim == em_logdensity_dim(serial), "dims %zu and %zu", dim, em_logdensity_dim(serial));
        size_t nb, nloc;
        nb = em_mpi_logdensity_blocks(ld, &nloc);
        CHECK(nb == (NROWS + BLOCK - 1) / BLOCK, "%zu blocks", nb);
        double theta[K + 2], g1[K + 2], g2[K + 2], lp1, lp2;
        for (int pt = 0; pt < 4; pt++) {
            for (size_t j = 0; j < dim; j++) theta[j] = 0.3 * sin(1.0 + (double)(pt * 7 + (int)j));
            CHECK(em_logdensity_eval(ld, theta, &lp1, g1, &err) == EM_OK, "%s", err.msg);
            CHECK(em_logdensity_eval(serial, theta, &lp2, g2, &err) == EM_OK, "%s", err.msg);
            CHECK(fabs(lp1 - lp2) <= 1e-11 * fabs(lp2), "lp %.17g vs serial %.17g", lp1, lp2);
            for (size_t j = 0; j < dim; j++)
                CHECK(fabs(g1[j] - g2[j]) <= 1e-9 * (1.0 + fabs(g2[j])), "grad[%zu] %.17g vs serial %.17g", j, g1[j],
                      g2[j]);
            CHECK(same_everywhere(digest(digest(0, &lp1, 1), g1, dim)), "ranks disagree on the density");
            *h = digest(digest(*h, &lp1, 1), g1, dim);
        }
        /* a point outside the domain: every rank gets the same non-OK status */
        for (size_t j = 0; j < dim; j++) theta[j] = 1e300;
        em_status st = em_logdensity_eval(ld, theta, &lp1, g1, &err);
        int bad = st != EM_OK;
        CHECK(bad && isinf(lp1) && lp1 < 0, "status %d lp %g at an overflowing point", (int)st, lp1);
        CHECK(same_everywhere((uint64_t)st), "ranks disagree on the status");
    }
    em_logdensity_destroy(ld);
    em_logdensity_destroy(serial);
    free(X);
    free(y);
    shard_free(&s);
}

/* The digest of a posterior's draws of every parameter and lp__. */
static uint64_t draws_digest(const em_posterior *post) {
    size_t n = em_posterior_num_chains(post) * em_posterior_num_draws(post);
    double *d = malloc(n * sizeof *d);
    uint64_t h = 0;
    em_error err = {0};
    const char *names[] = {"alpha", "beta.1", "beta.2", "beta.3", "lp__"};
    for (size_t j = 0; d && j < 5; j++) {
        CHECK(em_posterior_draws(post, names[j], d, &err) == EM_OK, "%s", err.msg);
        h = digest(h, d, n);
    }
    free(d);
    return h;
}

static em_mcmc_config nuts_config(void) {
    em_mcmc_config cfg = em_mcmc_config_default();
    cfg.num_chains = 2;
    cfg.num_warmup = 150;
    cfg.num_samples = 100;
    cfg.seed = 7;
    return cfg;
}

static void test_nuts(uint64_t *h, uint64_t *draws) {
    shard s;
    shard_make(&s, 1);
    em_mpi_model spec = reg_spec(&s.rows, BLOCK);
    em_mcmc_config cfg = nuts_config();
    em_posterior *post = NULL;
    em_error err = {0};
    em_status st = em_mpi_fit_nuts(MPI_COMM_WORLD, &spec, &cfg, &post, &err);
    CHECK(st == EM_OK, "%s", err.msg);
    if (post) {
        size_t n = em_posterior_num_chains(post) * em_posterior_num_draws(post);
        double *d = malloc(n * sizeof *d);
        uint64_t mine = draws_digest(post);
        CHECK(same_everywhere(mine), "NUTS draws differ between ranks");
        /* the truth is alpha = 0.5, beta = (0.25, -0.33, 0.42) */
        CHECK(em_posterior_draws(post, "alpha", d, &err) == EM_OK, "%s", err.msg);
        double m = 0;
        for (size_t i = 0; i < n; i++) m += d[i] / (double)n;
        CHECK(fabs(m - 0.5) < 0.1, "alpha's posterior mean %g, far from 0.5", m);
        *h = digest(*h, (double *)&mine, 1);
        *draws = mine;
        free(d);
    }
    em_posterior_free(post);
    shard_free(&s);
}

/* Two groups of ranks (when the ranks divide), each with the whole data over its own ranks and
 * one of the two chains: the same draws as test_nuts's run without groups. */
static void test_nuts_groups(uint64_t plain) {
    int groups = size_ % 2 == 0 ? 2 : 1, g = 0, grank, gsize;
    MPI_Comm group;
    em_error err = {0};
    if (em_mpi_group_split(MPI_COMM_WORLD, groups, &group, &g, &err) != EM_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    MPI_Comm_rank(group, &grank);
    MPI_Comm_size(group, &gsize);
    size_t first, n;
    em_mpi_partition(NROWS, BLOCK, gsize, grank, &first, &n);
    double *X = malloc(n * K * sizeof *X), *y = malloc(n * sizeof *y);
    reg_make_rows(first, n, K, 1, 42, X, y);
    reg_rows rows = {X, y, n, K, 1, 0};
    em_mpi_model spec = reg_spec(&rows, BLOCK);
    em_mcmc_config cfg = nuts_config();
    em_posterior *post = NULL;
    CHECK(em_mpi_fit_nuts_groups(MPI_COMM_WORLD, group, &spec, &cfg, &post, &err) == EM_OK, "%s", err.msg);
    if (post) {
        CHECK(em_posterior_num_chains(post) == 2, "%zu chains", em_posterior_num_chains(post));
        CHECK(draws_digest(post) == plain, "%d groups of %d ranks: the draws differ from the run without groups",
              groups, gsize);
    }
    /* more groups than chains */
    cfg.num_chains = 1;
    em_posterior *p2 = NULL;
    memset(&err, 0, sizeof err);
    em_status st = em_mpi_fit_nuts_groups(MPI_COMM_WORLD, group, &spec, &cfg, &p2, &err);
    if (groups > 1) CHECK(st == EM_ERR_ARG && strstr(err.msg, "every group needs a chain"), "%s", err.msg);
    /* groups that do not divide the ranks */
    if (size_ > 1) {
        MPI_Comm bad;
        memset(&err, 0, sizeof err);
        st = em_mpi_group_split(MPI_COMM_WORLD, size_ + 1, &bad, NULL, &err);
        CHECK(st == EM_ERR_ARG && strstr(err.msg, "equal groups"), "%s", err.msg);
    }
    em_posterior_free(p2);
    em_posterior_free(post);
    MPI_Comm_free(&group);
    free(X);
    free(y);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_csv(const char *dir) {
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/data.csv", dir);
    snprintf(bad, sizeof bad, "%s/bad.csv", dir);
    size_t n = 1000;
    if (rank_ == 0) {
        /* a header after a blank line, blank lines inside, a missing value (dropped) */
        size_t cap = 64 * n + 256, len = 0;
        char *t = malloc(cap), *u = malloc(cap);
        len += (size_t)snprintf(t + len, cap - len, "\nid,x,y\n");
        for (size_t i = 0; i < n; i++) {
            if (i == 500) len += (size_t)snprintf(t + len, cap - len, "\n");
            if (i == 700) len += (size_t)snprintf(t + len, cap - len, "700.5,NA,1\n");
            len += (size_t)snprintf(t + len, cap - len, "%zu,%.3f,%zu\n", i, 0.5 * (double)i, i % 3);
        }
        write_file(path, t);
        /* the same with a bad number near the end (in the last rank's range) */
        memcpy(u, t, len + 1);
        char *p = strstr(u, "\n990,");
        if (p) memcpy(p + 1, "99x,", 4);
        write_file(bad, u);
        free(t);
        free(u);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    em_csv_options opt = {.missing = EM_CSV_MISSING_DROP_ROW};
    em_mpi_table *tab = NULL;
    em_error err = {0};
    const char *cols[] = {"id", "x"};
    em_status st = em_mpi_csv_read(MPI_COMM_WORLD, path, cols, 2, &opt, 7, &tab, &err);
    CHECK(st == EM_OK, "%s", err.msg);
    if (tab) {
        CHECK(tab->total_rows == n && tab->dropped == 1, "%zu rows, %zu dropped", tab->total_rows, tab->dropped);
        size_t first, cnt;
        em_mpi_partition(n, 7, size_, rank_, &first, &cnt);
        CHECK(tab->first_row == first && tab->nrows == cnt, "rows [%zu, +%zu), expected [%zu, +%zu)", tab->first_row,
              tab->nrows, first, cnt);
        const double *id = em_mpi_table_column(tab, "id"), *x = em_mpi_table_column(tab, "x");
        for (size_t i = 0; id && x && i < tab->nrows; i++) {
            size_t g = tab->first_row + i;
            /* file lines: 1 blank, 2 header, rows from 3; a blank line before row 500, the
             * dropped row before row 700 */
            size_t line = 3 + g + (g >= 500) + (g >= 700);
            CHECK(id[i] == (double)g && x[i] == 0.5 * (double)g, "row %zu: id %g x %g", g, id[i], x[i]);
            CHECK(tab->line[i] == line, "row %zu: line %zu, expected %zu", g, tab->line[i], line);
        }
    }
    em_mpi_table_free(tab);
    tab = NULL;
    memset(&err, 0, sizeof err);
    st = em_mpi_csv_read(MPI_COMM_WORLD, bad, cols, 2, &opt, 7, &tab, &err);
    /* row 990 is on line 3 + 990 + 2 = 995 of the file */
    CHECK(st == EM_ERR_PARSE && tab == NULL, "status %d", (int)st);
    CHECK(strstr(err.msg, "bad.csv:995:1:") != NULL, "message without the file's line: %s", err.msg);
    /* more ranks than blocks */
    if (size_ > 1) {
        memset(&err, 0, sizeof err);
        st = em_mpi_csv_read(MPI_COMM_WORLD, path, cols, 2, &opt, 100000, &tab, &err);
        CHECK(st == EM_ERR_ARG && strstr(err.msg, "fewer than the") != NULL, "%s", err.msg);
    }
}

static void test_svi(void) {
    shard s;
    shard_make(&s, 0);
    s.rows.subsample = 200;
    em_mpi_model spec = reg_spec(&s.rows, BLOCK);
    em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, 0.02);
    em_svi_options so;
    memset(&so, 0, sizeof so);
    so.seed = 11;
    em_error err = {0};
    em_mpi_svi *svi = em_mpi_svi_create(MPI_COMM_WORLD, &spec, EM_AUTO_DIAGONAL_NORMAL, &oc, &so, &err);
    CHECK(svi != NULL, "%s", err.msg);
    if (!svi) {
        shard_free(&s);
        return;
    }
    size_t done = 0;
    CHECK(em_svi_run(em_mpi_svi_handle(svi), 3000, &done, &err) == EM_OK, "%s", err.msg);
    size_t nh;
    const double *hist = em_svi_loss_history(em_mpi_svi_handle(svi), &nh);
    CHECK(same_everywhere(digest(0, hist, nh)), "the ranks' losses differ");
    em_autoguide *g = em_mpi_svi_guide(svi);
    double med[K + 2];
    CHECK(em_autoguide_median(g, em_svi_params(em_mpi_svi_handle(svi)), med, &err) == EM_OK, "%s", err.msg);
    CHECK(same_everywhere(digest(0, med, K + 2)), "the ranks' parameters differ");
    /* alpha 0.5, beta (0.25, -0.33, 0.42), sigma 0.8; the posterior sd is about 0.01 */
    const double truth[K + 2] = {0.5, 0.25, -1.0 / 3.0, 5.0 / 12.0, 0.8};
    for (size_t j = 0; j < K + 2; j++) CHECK(fabs(med[j] - truth[j]) < 0.06, "output %zu: %g vs %g", j, med[j], truth[j]);
    em_posterior *post = NULL;
    s.rows.subsample = 0;
    spec = reg_spec(&s.rows, BLOCK);
    CHECK(em_mpi_svi_posterior(svi, &spec, 200, 3, &post, &err) == EM_OK, "%s", err.msg);
    if (post) {
        double d[200];
        CHECK(em_posterior_draws(post, "log_p__", d, &err) == EM_OK, "%s", err.msg);
        CHECK(same_everywhere(digest(0, d, 200)), "log_p__ differs between ranks");
        CHECK(isfinite(d[0]), "log_p__ %g", d[0]);
    }
    em_posterior_free(post);
    em_mpi_svi_destroy(svi);
    shard_free(&s);
}

static void latent_in_plate(em_model *m, const void *arg) {
    const reg_rows *d = arg;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    EM_PLATE(m, p, "data", d->n, 0) {
        em_var z = em_sample(m, "z", em_normal(m, mu, 1.0));
        em_observe(m, "y", em_normal(m, z, 1.0), d->y, d->n);
    }
}

static void test_errors(void) {
    shard s;
    shard_make(&s, 0);
    em_mpi_model spec = reg_spec(&s.rows, BLOCK);
    spec.fn = latent_in_plate;
    em_error err = {0};
    em_logdensity *ld = em_mpi_logdensity(MPI_COMM_WORLD, &spec, NULL, &err);
    CHECK(ld == NULL && strstr(err.msg, "site 'z'") && strstr(err.msg, "data plate"), "%s", err.msg);
    em_logdensity_destroy(ld);
    if (size_ > 1) {
        /* rows not cut at block boundaries */
        spec = reg_spec(&s.rows, BLOCK + 1);
        memset(&err, 0, sizeof err);
        ld = em_mpi_logdensity(MPI_COMM_WORLD, &spec, NULL, &err);
        CHECK(ld == NULL && strstr(err.msg, "block_rows"), "%s", err.msg);
        em_logdensity_destroy(ld);
    }
    shard_free(&s);
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    if (argc < 3) {
        if (rank_ == 0) fprintf(stderr, "usage: test_mpi DIGEST_FILE TMPDIR\n");
        MPI_Finalize();
        return 2;
    }
    uint64_t hd = 0, hn = 0, hl = 0;
    test_density(0, &hd);
    test_density(1, &hl);
    uint64_t plain = 0;
    test_nuts(&hn, &plain);
    test_nuts_groups(plain);
    test_csv(argv[2]);
    test_svi();
    test_errors();
    int total = failures_;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank_ == 0) {
        FILE *f = fopen(argv[1], "w");
        if (f) {
            fprintf(f, "density-linear %016llx\ndensity-logistic %016llx\nnuts %016llx\n", (unsigned long long)hd,
                    (unsigned long long)hl, (unsigned long long)hn);
            fclose(f);
        }
        printf("test_mpi: %d ranks, %d failed checks\n", size_, total);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}
