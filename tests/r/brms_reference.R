# brms_reference.R OUTDIR [MODEL,...] — the reference posteriors of the formula front end's tests.
#
# Simulates the data of each model (fixed seeds, so the data are the same on every machine),
# fits it with brms (Debian's r-cran-brms; scripts/install-deps.sh --with-brms) with long chains,
# and writes into OUTDIR, per model: <name>.csv (the data), <name>.spec (formula, family, prior
# lines, one "key: value" per line) and <name>_brms.csv (variable, mean, sd, mcse_mean of every
# brms parameter that Ember reports). Also model_matrix.csv: R's model.matrix column names and
# values for a set of formulas on one data set, for the coding test.
#
# With a comma-separated list of model names, only those models are fitted (every data set is
# still simulated in the same order, so the data and the stored references of the others do not
# change).
#
# The stored outputs in tests/data/brms/ were made by this script; tests/data/brms/README.md
# says when and with which versions. The suite compares against them and needs no R.
suppressPackageStartupMessages({ library(brms); library(posterior) })
args <- commandArgs(TRUE)
out <- if (length(args)) args[1] else "tests/data/brms"
only <- if (length(args) > 1) strsplit(args[2], ",")[[1]] else NULL
dir.create(out, showWarnings = FALSE, recursive = TRUE)
iter_warmup <- 1000; iter_sampling <- 10000; chains <- 4

write_data <- function(name, d) write.csv(d, file.path(out, paste0(name, ".csv")), row.names = FALSE, quote = TRUE)

fit_one <- function(name, d, formula, family, priors = character(0)) {
  force(d) # its random numbers are drawn whether or not the model is fitted: later data stay put
  if (!is.null(only) && !(name %in% only)) return(invisible(NULL))
  write_data(name, d)
  spec <- c(paste0("formula: ", formula), paste0("family: ", family$family), paste0("prior: ", priors))
  writeLines(spec, file.path(out, paste0(name, ".spec")))
  pr <- if (length(priors)) do.call(c, lapply(priors, function(p) {
    lhs <- trimws(sub("~.*", "", p)); rhs <- trimws(sub(".*~", "", p))
    cls <- sub("_.*", "", lhs); coef <- if (grepl("_", lhs)) sub("^[^_]*_", "", lhs) else ""
    if (cls == "b" && nzchar(coef)) set_prior(rhs, class = "b", coef = coef)
    else if (cls %in% c("sd", "cor") && nzchar(coef)) set_prior(rhs, class = cls, group = coef)
    else set_prior(rhs, class = cls)
  })) else NULL
  t0 <- Sys.time()
  # Debian's r-cran-bh is an empty shell over libboost-dev: point rstan at the system headers
  boost <- if (nzchar(system.file("include", package = "BH"))) NULL else "/usr/include"
  fit <- brm(as.formula(formula), data = d, family = family, prior = pr, chains = chains, cores = 1,
             warmup = iter_warmup, iter = iter_warmup + iter_sampling, seed = 1234, refresh = 0,
             control = list(adapt_delta = 0.95), stan_model_args = list(boost_lib = boost))
  dr <- as_draws_df(fit)
  keep <- grep("^(b_|sd_|cor_|sigma$|nu$|shape$|phi$|zi$|hu$)", variables(dr), value = TRUE)
  s <- summarise_draws(subset_draws(dr, variable = keep), mean, sd, mcse_mean)
  s <- data.frame(variable = s$variable, mean = sprintf("%.10g", unclass(s$mean)), sd = sprintf("%.10g", unclass(s$sd)),
                  mcse_mean = sprintf("%.10g", unclass(s$mcse_mean)))
  write.csv(s, file.path(out, paste0(name, "_brms.csv")), row.names = FALSE, quote = FALSE)
  cat(sprintf("%s: %d parameters, %.0f s\n", name, nrow(s), as.numeric(Sys.time() - t0, units = "secs")))
}

set.seed(20261203)
J <- 15; n <- 240
g <- sample(sprintf("g%02d", 1:J), n, TRUE)
h <- sample(c("h1", "h2", "h3"), n, TRUE)
x <- round(rnorm(n), 4); z <- round(runif(n, -1, 1), 4)
trt <- sample(c("ctl", "drugA", "drugB"), n, TRUE)
ag <- rnorm(J, 0, 0.7); bg <- rnorm(J, 0, 0.4); names(ag) <- names(bg) <- sprintf("g%02d", 1:J)
ah <- rnorm(J * 3, 0, 0.3); names(ah) <- paste(rep(names(ag), each = 3), c("h1", "h2", "h3"), sep = "_")

# 1. gaussian, a factor and varying intercepts
y1 <- 1 + 0.5 * x + 0.8 * (trt == "drugA") - 0.4 * (trt == "drugB") + ag[g] + rnorm(n, 0, 0.7)
fit_one("gauss_vint", data.frame(y = round(y1, 4), x, trt, g), "y ~ x + trt + (1 | g)", gaussian())
# 2. gaussian, an interaction and correlated varying slopes
y2 <- 2 + (0.6 + bg[g]) * x - 0.5 * z + 0.3 * x * z + ag[g] + rnorm(n, 0, 0.5)
fit_one("gauss_vslope", data.frame(y = round(y2, 4), x, z, g), "y ~ x * z + (1 + x | g)", gaussian())
# 3. bernoulli (logit), with a prior on b
eta3 <- -0.3 + 1.2 * x - 0.8 * (trt == "drugB")
fit_one("bern", data.frame(b = rbinom(n, 1, plogis(eta3)), x, trt), "b ~ x + trt", bernoulli(),
        "b ~ normal(0, 2.5)")
# 4. binomial with trials and varying intercepts
nt <- sample(5:20, n, TRUE)
fit_one("binom_vint", data.frame(s = rbinom(n, nt, plogis(-0.5 + 0.7 * x + ag[g])), nt, x, g),
        "s | trials(nt) ~ x + (1 | g)", binomial())
# 5. poisson with an offset and uncorrelated varying slopes
expo <- round(runif(n, 0.5, 3), 3)
fit_one("pois_unc", data.frame(k = rpois(n, expo * exp(0.2 + 0.5 * x + ag[g] + bg[g] * x)), x, expo, g),
        "k ~ x + offset(log(expo)) + (1 + x || g)", poisson())
# 6. negative binomial
fit_one("negbin", data.frame(k = rnbinom(n, size = 3, mu = exp(1 + 0.4 * x - 0.6 * z)), x, z),
        "k ~ x + z", negbinomial())
# 7. student-t errors with outliers, and a prior on sigma
y7 <- 0.5 + 1.5 * x + rt(n, 3) * 0.6
fit_one("student", data.frame(y = round(y7, 4), x), "y ~ x", student(), "sigma ~ exponential(1)")
# 8. nested groups, scale() and a transformed predictor
y8 <- 1 + 0.4 * scale(z)[, 1] + 0.3 * exp(x / 2) + ag[g] + ah[paste(g, h, sep = "_")] + rnorm(n, 0, 0.5)
fit_one("nested", data.frame(y = round(y8, 4), x, z, g, h), "y ~ scale(z) + I(exp(x/2)) + (1 | g/h)", gaussian())

# The families of issue 16, each on its own seed (the data above do not move when one is added).
set.seed(20261216)
n2 <- 200
x2 <- round(rnorm(n2), 4); z2 <- round(runif(n2, -1, 1), 4)
arm <- sample(c("control", "treated"), n2, TRUE)
# 9. a censored survival regression: Weibull times with brms's mean parameterisation (mu =
# exp(eta), scale = mu / gamma(1 + 1/shape)), right-censored by a uniform follow-up time
shape9 <- 1.6; mu9 <- exp(1.2 + 0.5 * x2 - 0.6 * (arm == "treated"))
t9 <- rweibull(n2, shape9, mu9 / gamma(1 + 1 / shape9)); follow <- runif(n2, 1, 8)
fit_one("weibull_cens", data.frame(time = round(pmin(t9, follow), 4), status = ifelse(t9 > follow, "right", "none"),
                                   x = x2, arm), "time | cens(status) ~ x + arm", weibull())
# 10. an ordinal (cumulative logit) regression: five Likert categories from a logistic latent
lat <- 0.9 * x2 - 0.7 * z2 + rlogis(n2)
fit_one("cumul", data.frame(rating = 1 + findInterval(lat, c(-1.6, -0.5, 0.5, 1.7)), x = x2, z = z2),
        "rating ~ x + z", cumulative("logit"))
# 11. Gamma with a log link (shape 4)
fit_one("gamma", data.frame(y = round(rgamma(n2, shape = 4, rate = 4 / exp(0.5 + 0.3 * x2 - 0.4 * z2)), 5), x = x2, z = z2),
        "y ~ x + z", Gamma(link = "log"))
# 12. zero-inflated Poisson (30% extra zeros)
k12 <- ifelse(runif(n2) < 0.3, 0, rpois(n2, exp(0.8 + 0.4 * x2)))
fit_one("zip", data.frame(k = k12, x = x2), "k ~ x", zero_inflated_poisson())
# 13. Beta with a logit link (phi 8)
mu13 <- plogis(-0.3 + 0.6 * x2 + 0.4 * (arm == "treated"))
fit_one("beta", data.frame(y = round(pmin(pmax(rbeta(n2, mu13 * 8, (1 - mu13) * 8), 1e-4), 1 - 1e-4), 5), x = x2, arm),
        "y ~ x + arm", Beta())
# 14. the survival data of 9 with frequency weights (brms's weights(): each row's log-likelihood
# times its weight) beside the censoring
fit_one("weibull_wcens", data.frame(time = round(pmin(t9, follow), 4), status = ifelse(t9 > follow, "right", "none"),
                                    x = x2, arm, w = sample(c(0.5, 1, 2), n2, TRUE)),
        "time | cens(status) + weights(w) ~ x + arm", weibull())
# 15. a Normal response truncated at 0 (drawn by rejection), and 16. a lognormal one
mu15 <- 0.4 + 0.8 * x2; y15 <- rnorm(n2, mu15, 1)
while (any(y15 <= 0)) y15[y15 <= 0] <- rnorm(sum(y15 <= 0), mu15[y15 <= 0], 1)
fit_one("gauss_trunc", data.frame(y = round(y15, 5), x = x2), "y | trunc(lb = 0) ~ x", gaussian())
fit_one("lognormal", data.frame(y = round(rlnorm(n2, 0.3 + 0.5 * x2, 0.6), 5), x = x2, arm), "y ~ x + arm", lognormal())

# R's model.matrix on one data set, for the coding test
d <- data.frame(x, z, trt, h, stringsAsFactors = TRUE)[1:40, ]
write_data("mm_data", d)
forms <- c("~ x * trt", "~ trt:x", "~ 0 + trt", "~ trt * h", "~ trt:h", "~ I(x^2) + log(z + 2)",
           "~ (x + trt + z)^2", "~ x + trt - 1", "~ trt + trt:x", "~ factor(round(z))")
rows <- list()
for (f in forms) {
  mm <- model.matrix(as.formula(f), d)
  cols <- colnames(mm)[colnames(mm) != "(Intercept)"]
  for (cn in cols) rows[[length(rows) + 1]] <- data.frame(formula = f, column = cn,
                                                          values = paste(sprintf("%.10g", mm[, cn]), collapse = " "))
}
write.csv(do.call(rbind, rows), file.path(out, "model_matrix.csv"), row.names = FALSE)
versions <- file.path(out, "VERSIONS")
if (!is.null(only) && file.exists(versions)) {
  # a partial run: the earlier lines stay, a line says what was refitted, when and with what
  cat(sprintf("date %s: fitted %s alone (R %s, brms %s, rstan %s, posterior %s; same sampler settings)\n",
              format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), paste(only, collapse = ", "),
              getRversion(), packageVersion("brms"), packageVersion("rstan"), packageVersion("posterior")),
      file = versions, append = TRUE)
} else writeLines(c(paste("R", R.version.string), paste("brms", packageVersion("brms")),
             paste("rstan", packageVersion("rstan")), paste("posterior", packageVersion("posterior")),
             paste("date", format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC")),
             sprintf("chains %d, warmup %d, draws %d per chain, adapt_delta 0.95, seed 1234", chains, iter_warmup, iter_sampling)),
           versions)
