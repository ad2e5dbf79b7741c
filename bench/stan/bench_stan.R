# bench_stan.R — the Stan side of bench/nuts.c, through Debian's r-cran-rstan.
#
#   Rscript bench_stan.R compile MODEL STANFILE CACHEDIR
#   Rscript bench_stan.R sample  MODEL STANFILE CACHEDIR DATAFILE SEED WARMUP SAMPLES
#
# compile: builds the model once and caches it as CACHEDIR/MODEL.rds (with its compile time in
# CACHEDIR/MODEL.compile_s); a cache newer than STANFILE is reused, so reruns skip the C++ build.
# sample: one chain with Stan's defaults (diag_e metric, adapt_delta 0.8, max_treedepth 10),
# on the data bench/nuts.c wrote to DATAFILE (native doubles, so both sides see identical
# values). Prints one JSON line: the minimum over parameters of posterior::ess_bulk (the
# estimator Ember's em_ess_bulk reproduces), Stan's own warmup and sampling seconds
# (get_elapsed_time: in Stan 2.21 these are clock() differences, i.e. process CPU time), and
# the gradient evaluations (sum of n_leapfrog__ over warmup and sampling).
suppressPackageStartupMessages({
  library(rstan)
  library(posterior)
})

args <- commandArgs(trailingOnly = TRUE)
fail <- function(...) {
  cat("bench_stan.R:", ..., "\n", file = stderr())
  quit(status = 1)
}
if (length(args) < 4) fail("usage: compile|sample MODEL STANFILE CACHEDIR [DATAFILE SEED WARMUP SAMPLES]")
mode <- args[1]; model <- args[2]; stanfile <- args[3]; cachedir <- args[4]
rds <- file.path(cachedir, paste0(model, ".rds"))
tfile <- file.path(cachedir, paste0(model, ".compile_s"))

if (mode == "compile") {
  cached <- file.exists(rds) && file.exists(tfile) && file.mtime(rds) >= file.mtime(stanfile)
  if (!cached) {
    dir.create(cachedir, showWarnings = FALSE, recursive = TRUE)
    t0 <- proc.time()[["elapsed"]]
    # Debian's r-cran-bh is an empty shell that depends on libboost-dev: point rstan at the
    # system headers when the BH package has none.
    boost <- if (nzchar(system.file("include", package = "BH"))) NULL else "/usr/include"
    sm <- stan_model(file = stanfile, model_name = model, boost_lib = boost)
    secs <- proc.time()[["elapsed"]] - t0 # wall: the work is in the g++ child process
    saveRDS(sm, rds)
    writeLines(format(secs, digits = 6), tfile)
  }
  secs <- as.numeric(readLines(tfile, n = 1))
  cat(sprintf('{"model":"%s","compile_s":%.3f,"cached":%s,"stan_version":"%s"}\n', model, secs,
              if (cached) "true" else "false", stan_version()))
  quit(status = 0)
}

if (mode != "sample" || length(args) < 8) fail("bad arguments:", args)
datafile <- args[5]
seed <- as.integer(args[6]); warmup <- as.integer(args[7]); samples <- as.integer(args[8])
if (!file.exists(rds)) fail("no compiled model", rds, "(run the compile step first)")
sm <- readRDS(rds)

con <- file(datafile, "rb")
rd <- function(n) {
  x <- readBin(con, "double", n = n, size = 8, endian = .Platform$endian)
  if (length(x) != n) fail("short data file", datafile)
  x
}
if (model == "rugged") {
  n <- as.integer(rd(1))
  data <- list(N = n, africa = rd(n), rugged = rd(n), log_gdp = rd(n))
  pars <- c("a", "b", "sigma")
} else if (model == "linreg_glm") {
  n <- as.integer(rd(1)); d <- as.integer(rd(1))
  X <- matrix(rd(n * d), nrow = n, ncol = d, byrow = TRUE) # written row-major
  data <- list(N = n, D = d, X = X, y = rd(n))
  pars <- c("alpha", "beta", "sigma")
} else {
  fail("unknown model", model)
}
close(con)

fit <- sampling(sm, data = data, chains = 1, cores = 1, iter = warmup + samples, warmup = warmup,
                seed = seed, refresh = 0, show_messages = FALSE,
                control = list(adapt_delta = 0.8, metric = "diag_e", max_treedepth = 10))
el <- get_elapsed_time(fit)
sp <- get_sampler_params(fit, inc_warmup = TRUE)[[1]]
draws <- as.array(fit, pars = pars) # iterations x chains x parameters
ess <- apply(draws, 3, function(x) ess_bulk(x))
cat(sprintf(paste0('{"min_ess_bulk":%.4f,"warmup_s":%.6f,"sampling_s":%.6f,"grad_evals":%d,',
                   '"divergent":%d,"stepsize":%.6g,"nparams":%d}\n'),
            min(ess), el[1, "warmup"], el[1, "sample"], as.integer(sum(sp[, "n_leapfrog__"])),
            as.integer(sum(sp[(warmup + 1):(warmup + samples), "divergent__"])),
            sp[warmup + 1, "stepsize__"], length(ess)))
