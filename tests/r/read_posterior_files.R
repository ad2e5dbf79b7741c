# read_posterior_files.R DIR — the R half of tests/test_posterior_r.sh (see there).
suppressPackageStartupMessages({ library(rstan); library(posterior) })
dir <- commandArgs(TRUE)[1]
fails <- 0
check <- function(ok, what) {
  if (!isTRUE(ok)) { cat("FAIL:", what, "\n"); fails <<- fails + 1 } else cat("ok:", what, "\n")
}
rel <- function(a, b) max(abs(a - b) / pmax(abs(b), 1e-300))
pars <- c("alpha", "beta", "sigma")

# NUTS, with log_lik columns
files <- file.path(dir, sprintf("nuts_%d.csv", 1:4))
fit <- read_stan_csv(files)
check(identical(fit@model_pars, c(pars, "log_lik", "lp__")), "rstan: parameter names of the NUTS files")
arr <- as.array(fit)
check(identical(dim(arr)[1:2], c(1000L, 4L)), "rstan: 1000 draws x 4 chains")
sp <- get_sampler_params(fit, inc_warmup = FALSE)
check(setequal(colnames(sp[[1]]), c("accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__",
                                    "divergent__", "energy__")), "rstan: sampler diagnostics columns")
nd <- sum(sapply(sp, function(x) sum(x[, "divergent__"])))
check(all(sapply(sp, nrow) == 1000), "rstan: sampler diagnostics for every draw")
check(dim(arr)[3] == 3 + 12 + 1, "rstan: 3 parameters, 12 log_lik columns and lp__")
ember <- read.csv(file.path(dir, "nuts_summary.csv"))
d <- as_draws_array(arr[, , pars])
s <- summarise_draws(d, mean, rhat, ess_bulk)
check(rel(s$mean, ember$mean) < 1e-8, sprintf("rstan + posterior: means agree (rel %.2g)", rel(s$mean, ember$mean)))
check(rel(s$rhat, ember$r_hat) < 1e-8, sprintf("rstan + posterior: R-hat agrees (rel %.2g)", rel(s$rhat, ember$r_hat)))
check(rel(s$ess_bulk, ember$ess_bulk) < 1e-8, sprintf("rstan + posterior: bulk ESS agrees (rel %.2g)",
                                                      rel(s$ess_bulk, ember$ess_bulk)))
# the same files with the warmup rows kept (save_warmup = 1)
fitw <- read_stan_csv(file.path(dir, sprintf("nutsw_%d.csv", 1:4)))
check(fitw@sim$warmup2[1] == 500 && fitw@sim$n_save[1] == 1500, "rstan: 500 warmup rows kept apart from 1000 draws")
check(rel(summarise_draws(as_draws_array(as.array(fitw)[, , pars]), mean)$mean, ember$mean) < 1e-8,
      "rstan: the warmup rows are not counted as draws")
# read.csv + posterior, as posterior::read_cmdstan_csv-style code does
ch <- lapply(files, function(f) as.matrix(read.csv(f, comment.char = "#")))
dp <- do.call(bind_draws, c(lapply(ch, function(m) as_draws_array(m[, pars])), along = "chain"))
sp2 <- summarise_draws(dp, mean, rhat, ess_bulk)
check(rel(sp2$ess_bulk, ember$ess_bulk) < 1e-8 && rel(sp2$rhat, ember$r_hat) < 1e-8,
      "read.csv + posterior: R-hat and bulk ESS agree")
check(sum(sapply(ch, function(m) sum(m[, "divergent__"]))) == nd && all(sapply(ch, nrow) == 1000),
      "read.csv: 1000 rows per chain, divergences as rstan counts them")

# SVI: CmdStan's variational layout
svi <- file.path(dir, "svi.csv")
vf <- read_stan_csv(svi)
# rstan reads CmdStan's own ADVI files the same way: log_p__ and log_g__ come out as quantities
check(identical(vf@model_pars, c("log_p__", "log_g__", pars, "lp__")), "rstan: parameter names of the SVI file")
va <- as.array(vf)
check(dim(va)[1] == 1000, "rstan: 1000 SVI draws (the mean row dropped)")
es <- read.csv(file.path(dir, "svi_summary.csv"))
vm <- apply(va[, 1, pars], 2, mean)
check(rel(vm, es$mean) < 1e-8, sprintf("rstan: SVI means agree with Ember's (rel %.2g)", rel(vm, es$mean)))
raw <- read.csv(svi, comment.char = "#")
check(identical(names(raw)[1:3], c("lp__", "log_p__", "log_g__")) && nrow(raw) == 1001,
      "variational file: lp__, log_p__, log_g__ and a mean row")
if (fails) { cat(fails, "check(s) failed\n"); quit(status = 1) }
cat("test_posterior_r.sh: rstan and posterior read Ember's NUTS and SVI files\n")
