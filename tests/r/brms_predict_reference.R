# brms_predict_reference.R OUTDIR — brms's predictions at new data, for test_predict.c.
#
# Fits the correlated varying-slopes model of brms_reference.R (y ~ x * z + (1 + x | g) on its
# stored data, OUTDIR/gauss_vslope.csv) with long chains, and writes into OUTDIR:
#   predict_newdata.csv   eight new rows: levels of g seen in training, and two it never saw
#   predict_brms.csv      per kind and row: brms's Estimate, Est.Error, Q2.5, Q97.5 and the
#                         Monte Carlo standard error of the Estimate (posterior::mcse_mean):
#                         epred_uncertainty  fitted(), allow_new_levels, sample_new_levels = "uncertainty"
#                         epred_gaussian     fitted(), sample_new_levels = "gaussian"
#                         predict_gaussian   predict(), sample_new_levels = "gaussian"
#                         epred_population   fitted(re_formula = NA)
# The stored outputs in tests/data/brms/ were made by this script (see tests/data/brms/README.md).
suppressPackageStartupMessages({ library(brms); library(posterior) })
args <- commandArgs(TRUE)
out <- if (length(args)) args[1] else "tests/data/brms"
d <- read.csv(file.path(out, "gauss_vslope.csv"))
new <- data.frame(x = c(-1.2, 0, 0.8, 1.5, -0.4, 0.9, 0.3, -1.0),
                  z = c(0.5, -0.3, 0.1, -0.9, 0.7, 0.2, -0.6, 0.0),
                  g = c("g01", "g07", "g15", "g03", "gNEW1", "gNEW1", "gNEW2", "gNEW2"))
write.csv(new, file.path(out, "predict_newdata.csv"), row.names = FALSE, quote = TRUE)
boost <- if (nzchar(system.file("include", package = "BH"))) NULL else "/usr/include"
fit <- brm(y ~ x * z + (1 + x | g), data = d, family = gaussian(), chains = 4, cores = 1, warmup = 1000,
           iter = 1000 + 10000, seed = 4321, refresh = 0, control = list(adapt_delta = 0.95),
           stan_model_args = list(boost_lib = boost))
one <- function(kind, draws) {
  # draws: S x rows; the chains are the fit's (4 x 10000), so mcse_mean sees them
  data.frame(kind = kind, row = seq_len(ncol(draws)),
             Estimate = sprintf("%.10g", colMeans(draws)), Est.Error = sprintf("%.10g", apply(draws, 2, sd)),
             Q2.5 = sprintf("%.10g", apply(draws, 2, quantile, 0.025)),
             Q97.5 = sprintf("%.10g", apply(draws, 2, quantile, 0.975)),
             mcse = sprintf("%.10g", apply(draws, 2, function(v) mcse_mean(matrix(v, ncol = 4)))))
}
set.seed(99)
res <- rbind(
  one("epred_uncertainty", posterior_epred(fit, newdata = new, allow_new_levels = TRUE, sample_new_levels = "uncertainty")),
  one("epred_gaussian", posterior_epred(fit, newdata = new, allow_new_levels = TRUE, sample_new_levels = "gaussian")),
  one("predict_gaussian", posterior_predict(fit, newdata = new, allow_new_levels = TRUE, sample_new_levels = "gaussian")),
  one("epred_population", posterior_epred(fit, newdata = new, re_formula = NA)))
write.csv(res, file.path(out, "predict_brms.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("predictions of brms %s written to %s\n", packageVersion("brms"), out))
