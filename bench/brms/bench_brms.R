# bench_brms.R — the brms side of scripts/bench-brms.sh.
#
#   Rscript bench_brms.R data OUTDIR          write the two benchmark data sets (fixed seeds)
#   Rscript bench_brms.R fit DATA FORMULA FAMILY
#
# fit: brms with Stan's defaults (4 chains, 1000 warmup + 1000 draws, one core), and prints one
# JSON line: the wall time of the compile and of the sampling (as a user waits for them), Stan's
# own sampling seconds summed over the chains, and the smallest bulk ESS over the population-
# level, group-level sd and family parameters (posterior::ess_bulk, what Ember's summary gives).
suppressPackageStartupMessages({ library(brms); library(posterior) })
a <- commandArgs(TRUE)
if (a[1] == "data") {
  set.seed(42)
  n <- 3000
  x1 <- rnorm(n); x2 <- rnorm(n); x3 <- rnorm(n); f <- sample(c("a", "b", "c", "d"), n, TRUE)
  eta <- -0.4 + 0.8 * x1 - 0.5 * x2 + 0.3 * x3 + c(a = 0, b = 0.4, c = -0.3, d = 0.6)[f]
  write.csv(data.frame(y = rbinom(n, 1, plogis(eta)), x1 = round(x1, 5), x2 = round(x2, 5), x3 = round(x3, 5), f),
            file.path(a[2], "logistic3000.csv"), row.names = FALSE)
  J <- 85; g <- sprintf("c%02d", sample(1:J, 900, TRUE)); u <- rnorm(J, 0, 0.5); names(u) <- sprintf("c%02d", 1:J)
  x <- rnorm(900)
  write.csv(data.frame(y = round(1.2 + 0.6 * x + u[g] + rnorm(900, 0, 0.8), 5), x = round(x, 5), g),
            file.path(a[2], "vint900.csv"), row.names = FALSE)
  quit(status = 0)
}
d <- read.csv(a[2]); formula <- as.formula(a[3]); family <- get(a[4])()
boost <- if (nzchar(system.file("include", package = "BH"))) NULL else "/usr/include"
t0 <- Sys.time()
m <- brm(formula, data = d, family = family, chains = 0, stan_model_args = list(boost_lib = boost))
t1 <- Sys.time()
fit <- update(m, chains = 4, cores = 1, seed = 1, refresh = 0, recompile = FALSE)
t2 <- Sys.time()
dr <- as_draws_df(fit)
keep <- grep("^(b_|sd_|sigma$|nu$|shape$)", variables(dr), value = TRUE)
ess <- min(sapply(keep, function(v) ess_bulk(extract_variable_matrix(dr, v))))
st <- sum(rstan::get_elapsed_time(fit$fit)[, "sample"])
cat(sprintf("{\"compile_s\":%.3f,\"sample_wall_s\":%.3f,\"stan_sampling_s\":%.3f,\"min_ess_bulk\":%.1f}\n",
            as.numeric(t1 - t0, units = "secs"), as.numeric(t2 - t1, units = "secs"), st, ess))
