/* posterior_csv.c — a posterior's draws as CmdStan CSV files, and back. See io.h.
 *
 * The configuration lines are CmdStan's argument tree, indented as CmdStan indents it, because
 * readers parse them: rstan::read_stan_csv needs num_samples, num_warmup, save_warmup and thin
 * (it rejects a file without them), reads the sampler from algorithm / engine / metric, and
 * treats a file with output_samples as variational output (dropping its first row, the
 * approximation's mean); posterior, cmdstanr and ArviZ read the same keys. Values are the ones
 * the run used, so the file says how it was made.
 */
#include "internal/posterior_impl.h"
#include "ember/io.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ------------------------------------------------------------------------------------ */

static void sample_comments(const em_posterior *p, int with_warmup, em_buf *b) {
    const em_mcmc_config *c = &p->cfg;
    const char *metric = c->metric == EM_METRIC_DENSE ? "dense_e" : c->metric == EM_METRIC_UNIT ? "unit_e" : "diag_e";
    em_buf_printf(b, "method = sample\n");
    em_buf_printf(b, "  sample\n");
    em_buf_printf(b, "    num_samples = %d\n", c->num_samples);
    em_buf_printf(b, "    num_warmup = %d\n", c->num_warmup);
    em_buf_printf(b, "    save_warmup = %d\n", with_warmup);
    em_buf_printf(b, "    thin = %d\n", c->thin);
    em_buf_printf(b, "    adapt\n");
    em_buf_printf(b, "      engaged = %d\n", c->adapt ? 1 : 0);
    em_buf_printf(b, "      gamma = %.17g\n", c->gamma);
    em_buf_printf(b, "      delta = %.17g\n", c->target_accept);
    em_buf_printf(b, "      kappa = %.17g\n", c->kappa);
    em_buf_printf(b, "      t0 = %.17g\n", c->t0);
    em_buf_printf(b, "      init_buffer = %d\n", c->init_buffer);
    em_buf_printf(b, "      term_buffer = %d\n", c->term_buffer);
    em_buf_printf(b, "      window = %d\n", c->base_window);
    em_buf_printf(b, "    algorithm = hmc\n");
    em_buf_printf(b, "      hmc\n");
    if (p->method == EM_POSTERIOR_HMC) {
        em_buf_printf(b, "        engine = static\n");
        em_buf_printf(b, "          static\n");
        em_buf_printf(b, "            int_time = %.17g\n", c->hmc_int_time);
    } else {
        em_buf_printf(b, "        engine = nuts\n");
        em_buf_printf(b, "          nuts\n");
        em_buf_printf(b, "            max_depth = %d\n", c->max_treedepth);
    }
    em_buf_printf(b, "        metric = %s\n", metric);
    em_buf_printf(b, "        metric_file = \n");
    em_buf_printf(b, "        stepsize = %.17g\n", c->stepsize);
    em_buf_printf(b, "        stepsize_jitter = 0\n");
    em_buf_printf(b, "    num_chains = %zu\n", p->nchains);
}

static void variational_comments(const em_posterior *p, em_buf *b) {
    int pathfinder = p->method == EM_POSTERIOR_PATHFINDER; /* full-rank Gaussians, no guide */
    int fullrank = pathfinder || p->guide_kind == EM_AUTO_MULTIVARIATE_NORMAL ||
                   p->guide_kind == EM_AUTO_LOWRANK_MULTIVARIATE_NORMAL || p->guide_kind == EM_AUTO_LAPLACE;
    em_buf_printf(b, "method = variational\n");
    em_buf_printf(b, "  variational\n");
    em_buf_printf(b, "    algorithm = %s\n", fullrank ? "fullrank" : "meanfield");
    em_buf_printf(b, "      %s\n", fullrank ? "fullrank" : "meanfield");
    em_buf_printf(b, "    iter = %zu\n", p->svi_steps);
    em_buf_printf(b, "    grad_samples = 1\n");
    em_buf_printf(b, "    eta = %.17g\n", p->learning_rate);
    em_buf_printf(b, "    output_samples = %zu\n", p->ndraws);
    /* what Ember actually ran, since CmdStan's tree has no word for it */
    em_buf_printf(b, "    ember_method = %s\n", em_posterior_method_name(p->method));
    if (!pathfinder) em_buf_printf(b, "    ember_guide = %s\n", em_autoguide_name(p->guide_kind));
    em_buf_printf(b, "    ember_converged = %d\n", p->svi_converged);
}

/* The comment block of chain c, one line per entry of the returned buffer (NUL-separated). */
static size_t chain_comments(const em_posterior *p, size_t c, const char *file, int with_warmup, em_buf *b) {
    em_buf_printf(b, "model = %s\n", p->model_name ? p->model_name : "model");
    if (has_chains(p)) sample_comments(p, with_warmup, b);
    else variational_comments(p, b);
    em_buf_printf(b, "id = %zu\n", p->chains[c].id);
    em_buf_printf(b, "data\n");
    em_buf_printf(b, "  file = %s\n", p->data_file ? p->data_file : "");
    if (p->has_cfg) em_buf_printf(b, "init = %.17g\n", p->cfg.init_radius);
    em_buf_printf(b, "random\n");
    em_buf_printf(b, "  seed = %llu\n", (unsigned long long)p->seed);
    em_buf_printf(b, "output\n");
    em_buf_printf(b, "  file = %s\n", file);
    em_buf_printf(b, "  diagnostic_file = \n");
    em_buf_printf(b, "  sig_figs = 17\n");
    const em_posterior_chain *pc = &p->chains[c];
    if (has_chains(p) && p->has_cfg && pc->ndraws < (size_t)p->cfg.num_samples / (size_t)(p->cfg.thin > 0 ? p->cfg.thin : 1))
        em_buf_printf(b, "interrupted = 1 (%zu of %d draws)\n", pc->ndraws, p->cfg.num_samples);
    em_buf_printf(b, "ember_version = %s\n", EMBER_VERSION);
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] == '\n') {
            b->data[i] = '\0';
            n++;
        }
    return n;
}

/* CmdStan's names: output_1.csv, output_2.csv, ... for chains; output.csv for the one set of
 * independent draws (a variational run). */
static char *chain_path(const char *dir, const char *prefix, const em_posterior *p, size_t c, char *file, size_t cap) {
    if (!has_chains(p)) snprintf(file, cap, "%s.csv", prefix);
    else snprintf(file, cap, "%s_%zu.csv", prefix, p->chains[c].id);
    size_t n = strlen(dir) + strlen(file) + 2;
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/%s", dir, file);
    return path;
}

em_status em_posterior_write_cmdstan(const em_posterior *p, const char *dir, const char *prefix,
                                     const em_cmdstan_write_options *opt, size_t *nwritten, em_error *err) {
    if (nwritten) *nwritten = 0;
    if (!p || !dir || !prefix || !*prefix)
        return em_error_set(err, EM_ERR_ARG, "em_posterior_write_cmdstan: no posterior, directory or file prefix");
    if (strchr(prefix, '/') || strpbrk(prefix, "\r\n"))
        return em_error_set(err, EM_ERR_ARG, "em_posterior_write_cmdstan: prefix '%s' holds a '/' or a line break",
                            prefix);
    em_cmdstan_write_options o = {0, 0};
    if (opt) o = *opt;
    em_predictive *ll = NULL;
    const em_pred_site *lls = NULL;
    size_t nll = 0;
    if (o.log_lik) {
        em_status s = em_posterior_log_lik(p, NULL, &ll, err);
        if (s != EM_OK) return s;
        for (size_t k = 0; k < ll->nsites; k++) nll += ll->sites[k].len;
        if (ll->nsites != 1 && nll) {
            em_predictive_free(ll);
            return em_error_set(err, EM_ERR_ARG, "em_posterior_write_cmdstan: log_lik columns need a model with one "
                                                 "observed site (this one has %zu)", ll ? ll->nsites : 0);
        }
        lls = ll->nsites ? &ll->sites[0] : NULL;
    }
    size_t ncols = p->ncols + nll;
    const char **names = malloc(ncols * sizeof *names);
    em_buf namebuf = {0};
    em_status s = names ? EM_OK : em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
    for (size_t j = 0; j < p->ncols && s == EM_OK; j++) names[j] = p->names[j];
    for (size_t i = 0; i < nll; i++) em_buf_printf(&namebuf, "log_lik.%zu%c", i + 1, '\0');
    if (namebuf.failed) s = em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory");
    for (size_t i = 0, off = 0; i < nll && s == EM_OK; i++) {
        names[p->ncols + i] = namebuf.data + off;
        off += strlen(namebuf.data + off) + 1;
    }
    int independent = !has_chains(p);
    for (size_t c = 0; c < p->nchains && s == EM_OK; c++) {
        const em_posterior_chain *pc = &p->chains[c];
        size_t nd = o.log_lik ? p->ndraws : pc->ndraws;
        if (nd == 0) continue; /* interrupted during warmup: nothing to write */
        char file[256];
        char *path = chain_path(dir, prefix, p, c, file, sizeof file);
        em_buf cb = {0};
        int with_warmup = !independent && !nll && p->cfg.save_warmup;
        size_t ncom = path ? chain_comments(p, c, file, with_warmup, &cb) : 0;
        const char **com = malloc((ncom ? ncom : 1) * sizeof *com);
        /* the draws, with the mean row first for variational files and log_lik appended */
        size_t rows = nd + (independent ? 1 : 0);
        double *block = NULL;
        if (independent || nll) block = malloc(rows * ncols * sizeof *block);
        if (!path || cb.failed || !com || ((independent || nll) && !block)) {
            s = em_error_set(err, EM_ERR_NOMEM, "posterior: out of memory writing chain %zu", c + 1);
        } else {
            for (size_t i = 0, off = 0; i < ncom; i++) {
                com[i] = cb.data + off;
                off += strlen(cb.data + off) + 1;
            }
            const double *draws = pc->rows + pc->nwarmup * p->ncols;
            if (block) {
                size_t r = 0;
                if (independent) {
                    memcpy(block, p->mean_row, p->ncols * sizeof *block);
                    for (size_t i = 0; i < nll; i++) block[p->ncols + i] = 0.0;
                    r = 1;
                }
                for (size_t i = 0; i < nd; i++, r++) {
                    memcpy(block + r * ncols, draws + i * p->ncols, p->ncols * sizeof *block);
                    for (size_t k = 0; k < nll; k++) block[r * ncols + p->ncols + k] = lls->draws[(c * p->ndraws + i) * nll + k];
                }
                draws = block;
            }
            em_cmdstan_file f;
            memset(&f, 0, sizeof f);
            f.comments = com;
            f.ncomments = ncom;
            f.names = names;
            f.ncols = ncols;
            f.draws = draws;
            f.ndraws = rows;
            if (with_warmup) {
                f.warmup_draws = pc->rows;
                f.nwarmup = pc->nwarmup;
            }
            f.has_timing = 1;
            f.sampling_seconds = independent ? p->wall_seconds : pc->sampling_seconds;
            if (!independent) {
                f.has_adaptation = pc->inv_metric != NULL && pc->stepsize > 0;
                f.step_size = pc->stepsize;
                f.inv_metric = pc->inv_metric;
                f.metric_dim = p->metric_dim;
                f.dense_metric = p->dense_metric;
                f.warmup_seconds = pc->warmup_seconds;
            }
            s = em_cmdstan_write(path, &f, o.sig_digits, err);
            if (s == EM_OK && nwritten) (*nwritten)++;
        }
        free(block);
        free(com);
        em_buf_free(&cb);
        free(path);
    }
    em_buf_free(&namebuf);
    free(names);
    em_predictive_free(ll);
    return s;
}

/* ---- reading --------------------------------------------------------------------------------------- */

/* What a file's comment lines say (the keys readers use). */
typedef struct file_header {
    char method[32], engine[32], algorithm[32], ember_method[32], ember_guide[48], model[256];
    long num_samples, num_warmup, save_warmup, thin, output_samples, max_depth, id;
    unsigned long long seed;
    double delta, stepsize, warmup_s, sampling_s;
    int has_time, has_step;
    double *metric;
    size_t metric_len;
    int dense;
} file_header;

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}

static void copy_field(char *dst, size_t cap, const char *v) { snprintf(dst, cap, "%s", v); }

/* Parse the metric line "# 0.51, 0.3, ..." (appending to h->metric). */
static int parse_metric_line(file_header *h, const char *s) {
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s) break;
        double *m = realloc(h->metric, (h->metric_len + 1) * sizeof *m);
        if (!m) return 0;
        h->metric = m;
        h->metric[h->metric_len++] = v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    return 1;
}

static em_status read_header(const char *path, file_header *h, em_error *err) {
    memset(h, 0, sizeof *h);
    h->num_samples = h->num_warmup = h->thin = h->output_samples = h->id = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return em_error_set(err, EM_ERR_IO, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int in_adapt = 0, metric_rows = 0;
    long lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len != strlen(line)) {
            free(line);
            fclose(f);
            return em_error_set(err, EM_ERR_PARSE, "%s:%ld: binary data (a NUL byte)", path, lineno);
        }
        if (line[0] != '#') continue;
        char *s = trim(line + 1);
        if (strstr(s, "Adaptation terminated")) {
            in_adapt = 1;
            continue;
        }
        if (in_adapt) {
            if (strncmp(s, "Step size = ", 12) == 0) {
                h->stepsize = strtod(s + 12, NULL);
                h->has_step = 1;
            } else if (strstr(s, "Diagonal elements of inverse mass matrix")) {
                metric_rows = 1;
            } else if (strstr(s, "Elements of inverse mass matrix")) {
                metric_rows = -1; /* dense: rows until the next blank or key line */
                h->dense = 1;
            } else if (metric_rows != 0 && *s && (isdigit((unsigned char)*s) || *s == '-' || *s == '.')) {
                if (!parse_metric_line(h, s)) {
                    free(line);
                    fclose(f);
                    return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", path);
                }
                if (metric_rows > 0) metric_rows = 0;
            } else {
                in_adapt = metric_rows = 0;
            }
            if (in_adapt) continue;
        }
        char *el = strstr(s, "Elapsed Time:");
        if (el) {
            h->warmup_s = strtod(el + 13, NULL);
            h->has_time = 1;
            continue;
        }
        if (h->has_time && strstr(s, "seconds (Sampling)")) {
            h->sampling_s = strtod(s, NULL);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        char *dflt = strstr(val, "(Default)");
        if (dflt) {
            *dflt = '\0';
            val = trim(val);
        }
        if (!strcmp(key, "method")) copy_field(h->method, sizeof h->method, val);
        else if (!strcmp(key, "engine")) copy_field(h->engine, sizeof h->engine, val);
        else if (!strcmp(key, "algorithm") && !h->algorithm[0]) copy_field(h->algorithm, sizeof h->algorithm, val);
        else if (!strcmp(key, "ember_method")) copy_field(h->ember_method, sizeof h->ember_method, val);
        else if (!strcmp(key, "ember_guide")) copy_field(h->ember_guide, sizeof h->ember_guide, val);
        else if (!strcmp(key, "model")) copy_field(h->model, sizeof h->model, val);
        else if (!strcmp(key, "num_samples")) h->num_samples = strtol(val, NULL, 10);
        else if (!strcmp(key, "num_warmup")) h->num_warmup = strtol(val, NULL, 10);
        else if (!strcmp(key, "save_warmup")) h->save_warmup = strtol(val, NULL, 10);
        else if (!strcmp(key, "thin")) h->thin = strtol(val, NULL, 10);
        else if (!strcmp(key, "output_samples")) h->output_samples = strtol(val, NULL, 10);
        else if (!strcmp(key, "max_depth")) h->max_depth = strtol(val, NULL, 10);
        else if (!strcmp(key, "delta")) h->delta = strtod(val, NULL);
        else if (!strcmp(key, "id")) h->id = strtol(val, NULL, 10);
        else if (!strcmp(key, "seed")) h->seed = strtoull(val, NULL, 10);
    }
    free(line);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) return em_error_set(err, EM_ERR_IO, "%s: read error", path);
    return EM_OK;
}

static const char *const sampler_cols[EM_MCMC_NUM_SAMPLER_COLS] = {
    "lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__"};

em_status em_posterior_read_cmdstan(const char *const *paths, size_t npaths, em_posterior **out, em_error *err) {
    if (!out) return em_error_set(err, EM_ERR_ARG, "em_posterior_read_cmdstan: out is NULL");
    *out = NULL;
    if (!paths || npaths == 0) return em_error_set(err, EM_ERR_ARG, "em_posterior_read_cmdstan: no files");
    em_posterior *p = NULL;
    em_status s = EM_OK;
    for (size_t c = 0; c < npaths && s == EM_OK; c++) {
        if (!paths[c]) {
            s = em_error_set(err, EM_ERR_ARG, "em_posterior_read_cmdstan: paths[%zu] is NULL", c);
            break;
        }
        file_header h;
        s = read_header(paths[c], &h, err);
        em_cmdstan_draws *d = NULL;
        if (s == EM_OK) s = em_cmdstan_read(paths[c], &d, err);
        if (s == EM_OK && d->ncols == 0) s = em_error_set(err, EM_ERR_PARSE, "%s: no columns", paths[c]);
        int variational = s == EM_OK && (!strcmp(h.method, "variational") || h.output_samples >= 0);
        if (s == EM_OK && c == 0) {
            size_t nmeth = 0;
            while (nmeth < d->ncols && strlen(d->names[nmeth]) > 2 &&
                   !strcmp(d->names[nmeth] + strlen(d->names[nmeth]) - 2, "__"))
                nmeth++;
            int standard = nmeth == EM_MCMC_NUM_SAMPLER_COLS;
            for (size_t j = 0; standard && j < nmeth; j++) standard = !strcmp(d->names[j], sampler_cols[j]);
            if (!variational && strcmp(h.method, "sample") != 0 && h.method[0])
                s = em_error_set(err, EM_ERR_PARSE, "%s: method = %s; only sample and variational output can be read",
                                 paths[c], h.method);
            else if (!variational && !standard)
                s = em_error_set(err, EM_ERR_PARSE,
                                 "%s: the sampler columns are not lp__, accept_stat__, stepsize__, treedepth__, "
                                 "n_leapfrog__, divergent__, energy__ (static HMC output of Stan is not supported)",
                                 paths[c]);
            else if ((p = em_posterior_alloc(npaths, d->ncols, nmeth, (const char *const *)d->names, err)) == NULL)
                s = EM_ERR_NOMEM;
            if (s == EM_OK) {
                p->method = variational ? (!strcmp(h.ember_method, "laplace")      ? EM_POSTERIOR_LAPLACE
                                           : !strcmp(h.ember_method, "pathfinder") ? EM_POSTERIOR_PATHFINDER
                                                                                   : EM_POSTERIOR_VARIATIONAL)
                                        : (!strcmp(h.engine, "static") ? EM_POSTERIOR_HMC : EM_POSTERIOR_NUTS);
                p->seed = h.seed;
                p->guide_kind = EM_AUTO_DIAGONAL_NORMAL;
                for (int k = 0; k < EM_AUTO_KIND_COUNT; k++)
                    if (!strcmp(h.ember_guide, em_autoguide_name((em_autoguide_kind)k))) p->guide_kind = (em_autoguide_kind)k;
                if (!variational) {
                    p->cfg = em_mcmc_config_default();
                    p->has_cfg = 1;
                    if (h.num_samples >= 0) p->cfg.num_samples = (int)h.num_samples;
                    if (h.num_warmup >= 0) p->cfg.num_warmup = (int)h.num_warmup;
                    if (h.thin > 0) p->cfg.thin = (int)h.thin;
                    p->cfg.save_warmup = h.save_warmup != 0;
                    if (h.max_depth > 0) p->cfg.max_treedepth = (int)h.max_depth;
                    if (h.delta > 0) p->cfg.target_accept = h.delta;
                    p->cfg.seed = h.seed;
                    p->cfg.num_chains = (int)npaths;
                }
                if (h.model[0]) s = em_posterior_set_labels(p, h.model, NULL, err);
            }
        }
        if (s == EM_OK) {
            /* every file must have the first one's columns */
            int same = d->ncols == p->ncols;
            for (size_t j = 0; same && j < d->ncols; j++) same = !strcmp(d->names[j], p->names[j]);
            if (!same) s = em_error_set(err, EM_ERR_PARSE, "%s: its columns differ from those of %s", paths[c], paths[0]);
        }
        if (s == EM_OK) {
            em_posterior_chain *pc = &p->chains[c];
            pc->id = h.id > 0 ? (size_t)h.id : c + 1;
            size_t skip = 0, nw = 0;
            if (variational) {
                if (d->ndraws < 1) s = em_error_set(err, EM_ERR_PARSE, "%s: no mean row", paths[c]);
                skip = 1;
                if (s == EM_OK && c == 0 && (p->mean_row = malloc(p->ncols * sizeof(double))))
                    memcpy(p->mean_row, d->draws, p->ncols * sizeof(double));
            } else if (h.save_warmup && h.num_warmup > 0) {
                long thin = h.thin > 0 ? h.thin : 1;
                nw = (size_t)(1 + (h.num_warmup - 1) / thin);
                if (nw > d->ndraws) nw = d->ndraws;
            }
            if (s == EM_OK) {
                pc->nwarmup = nw;
                pc->ndraws = d->ndraws - skip - nw;
                pc->rows = d->draws + skip * p->ncols; /* moved below so it can be freed */
                size_t cells = (d->ndraws - skip) * p->ncols;
                double *rows = malloc((cells ? cells : 1) * sizeof *rows);
                if (!rows) s = em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", paths[c]);
                else memcpy(rows, pc->rows, cells * sizeof *rows);
                pc->rows = rows;
                pc->stepsize = h.has_step ? h.stepsize : 0.0;
                if (h.metric_len) {
                    pc->inv_metric = h.metric;
                    h.metric = NULL;
                    p->metric_dim = h.dense ? (size_t)(sqrt((double)h.metric_len) + 0.5) : h.metric_len;
                    p->dense_metric = h.dense;
                }
                pc->warmup_seconds = h.warmup_s;
                pc->sampling_seconds = h.sampling_s;
            }
        }
        free(h.metric);
        em_cmdstan_draws_free(d);
    }
    if (s != EM_OK) {
        em_posterior_free(p);
        return s;
    }
    em_posterior_finish(p);
    *out = p;
    return EM_OK;
}
