# loo_reference.R — the R oracle for tests/test_loo.c: simulate data and posterior draws for a
# Normal, a Bernoulli and a Poisson regression (set.seed, so every run writes the same numbers),
# run loo 2.5.1 on their pointwise log-likelihood matrices and write the matrices with loo's
# results as JSON, numbers in 17 significant digits.
#
#   Rscript tests/r/loo_reference.R [outdir]     (default: the folder of this script)
#
# The draws are not MCMC output: each chain is a stationary AR(1) walk around the maximum-
# likelihood fit with its normal-approximation covariance, so the chains are autocorrelated
# (r_eff < 1) the way sampler output is, and the whole computation is cheap and exact to repeat.
suppressMessages(library(loo))

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[1] else {
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  dirname(normalizePath(f))
}
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

num <- function(x) ifelse(is.na(x), "null", sprintf("%.17g", x))
vec <- function(x) paste0("[", paste(num(x), collapse = ","), "]")
mat <- function(m) paste0("[\n", paste(apply(m, 1, vec), collapse = ",\n"), "\n]")
str <- function(s) {
  s <- gsub("\\\\", "\\\\\\\\", s)
  s <- gsub("\"", "\\\\\"", s)
  paste0("\"", gsub("\n", "\\\\n", s), "\"")
}
printed <- function(x) paste0(paste(capture.output(print(x)), collapse = "\n"), "\n")

# nchains AR(1) chains of ndraws draws of a d-vector: mean m, covariance V, lag-1 correlation rho
ar_draws <- function(m, V, nchains, ndraws, rho) {
  L <- t(chol(V))
  d <- length(m)
  out <- matrix(0, nchains * ndraws, d)
  for (c in seq_len(nchains)) {
    z <- rnorm(d)
    for (t in seq_len(ndraws)) {
      z <- rho * z + sqrt(1 - rho^2) * rnorm(d)
      out[(c - 1) * ndraws + t, ] <- m + drop(L %*% z)
    }
  }
  out
}

write_case <- function(name, ll, nchains, note) {
  S <- nrow(ll)
  chain_id <- rep(seq_len(nchains), each = S / nchains)
  r_eff <- relative_eff(exp(ll), chain_id = chain_id)
  l <- suppressWarnings(loo(ll, r_eff = r_eff))
  w <- suppressWarnings(waic(ll))
  p1 <- suppressWarnings(psis(-ll[, 1], r_eff = r_eff[1]))
  pw <- l$pointwise
  est <- l$estimates
  west <- w$estimates
  json <- paste0(
    "{\n",
    "\"name\": ", str(name), ",\n",
    "\"note\": ", str(note), ",\n",
    "\"S\": ", S, ", \"N\": ", ncol(ll), ", \"nchains\": ", nchains, ",\n",
    "\"r_eff\": ", vec(r_eff), ",\n",
    "\"elpd_loo\": ", vec(pw[, "elpd_loo"]), ",\n",
    "\"mcse_elpd_loo\": ", vec(pw[, "mcse_elpd_loo"]), ",\n",
    "\"p_loo\": ", vec(pw[, "p_loo"]), ",\n",
    "\"looic\": ", vec(pw[, "looic"]), ",\n",
    "\"pareto_k\": ", vec(l$diagnostics$pareto_k), ",\n",
    "\"n_eff\": ", vec(l$diagnostics$n_eff), ",\n",
    "\"estimates\": ", vec(c(est["elpd_loo", ], est["p_loo", ], est["looic", ])), ",\n",
    "\"mcse_loo\": ", num(mcse_loo(l)), ",\n",
    "\"print_loo\": ", str(printed(l)), ",\n",
    "\"elpd_waic\": ", vec(w$pointwise[, "elpd_waic"]), ",\n",
    "\"p_waic\": ", vec(w$pointwise[, "p_waic"]), ",\n",
    "\"waic\": ", vec(w$pointwise[, "waic"]), ",\n",
    "\"waic_estimates\": ", vec(c(west["elpd_waic", ], west["p_waic", ], west["waic", ])), ",\n",
    "\"print_waic\": ", str(printed(w)), ",\n",
    "\"psis1_log_weights\": ", vec(weights(p1, log = TRUE, normalize = TRUE)), ",\n",
    "\"psis1_pareto_k\": ", num(pareto_k_values(p1)), ",\n",
    "\"log_lik\": ", mat(ll), "\n}\n")
  writeLines(json, file.path(outdir, paste0("loo_", name, ".json")), sep = "")
  invisible(list(loo = l, ll = ll))
}

# ---- Normal regression with one outlier (its k-hat is above 0.7), and an intercept-only rival
set.seed(20240601)
N <- 20
x <- seq(-1, 1, length.out = N)
y <- 1 + 0.8 * x + rnorm(N, 0, 0.4)
y[6] <- y[6] + 3.5
fit <- lm(y ~ x)
sig <- summary(fit)$sigma
m <- c(coef(fit), log(sig))
V <- matrix(0, 3, 3)
V[1:2, 1:2] <- vcov(fit)
V[3, 3] <- 1 / (2 * (N - 2))
th <- ar_draws(m, V, 4, 250, 0.5)
ll_a <- sapply(seq_len(N), function(i) dnorm(y[i], th[, 1] + th[, 2] * x[i], exp(th[, 3]), log = TRUE))
a <- write_case("normal", ll_a, 4, "y ~ Normal(a + b x, sigma), 4 chains x 250, an outlier at observation 6")

fit0 <- lm(y ~ 1)
m0 <- c(coef(fit0), log(summary(fit0)$sigma))
V0 <- diag(c(vcov(fit0)[1, 1], 1 / (2 * (N - 1))))
th0 <- ar_draws(m0, V0, 4, 250, 0.5)
ll_b <- sapply(seq_len(N), function(i) dnorm(y[i], th0[, 1], exp(th0[, 2]), log = TRUE))
b <- write_case("normal_intercept", ll_b, 4, "y ~ Normal(a, sigma) on the same data, 4 chains x 250")

# ---- Bernoulli (logistic) regression
set.seed(20240602)
N <- 20
x <- rnorm(N)
y <- rbinom(N, 1, plogis(-0.3 + 1.2 * x))
fit <- glm(y ~ x, family = binomial())
th <- ar_draws(coef(fit), vcov(fit), 2, 400, 0.3)
ll <- sapply(seq_len(N), function(i) dbinom(y[i], 1, plogis(th[, 1] + th[, 2] * x[i]), log = TRUE))
write_case("bernoulli", ll, 2, "y ~ Bernoulli(logit^-1(a + b x)), 2 chains x 400")

# ---- Poisson log-linear regression; 301 draws per chain is not a product of 2s, 3s and 5s,
# which exercises loo's FFT-padding factor in relative_eff
set.seed(20240603)
N <- 16
x <- rnorm(N)
y <- rpois(N, exp(0.5 + 0.8 * x))
fit <- glm(y ~ x, family = poisson())
th <- ar_draws(coef(fit), vcov(fit), 3, 301, 0.7)
ll <- sapply(seq_len(N), function(i) dpois(y[i], exp(th[, 1] + th[, 2] * x[i]), log = TRUE))
write_case("poisson", ll, 3, "y ~ Poisson(exp(a + b x)), 3 chains x 301")

# ---- comparison: the two Normal models, and the first again with r_eff = 1 (a near tie)
a1 <- suppressWarnings(loo(ll_a, r_eff = rep(1, ncol(ll_a))))
comp <- loo_compare(list(normal = a$loo, normal_intercept = b$loo, normal_reff1 = a1))
# ---- the Kolmogorov-Smirnov test against U(0,1): exact below 100 values, asymptotic above
set.seed(20240604)
u30 <- runif(30)^1.3
u150 <- runif(150)
k30 <- ks.test(u30, "punif")
k150 <- ks.test(u150, "punif")
json <- paste0(
  "{\n",
  "\"models\": [\"normal\", \"normal_intercept\", \"normal_reff1\"],\n",
  "\"order\": ", vec(match(rownames(comp), c("normal", "normal_intercept", "normal_reff1")) - 1), ",\n",
  "\"elpd_diff\": ", vec(comp[, "elpd_diff"]), ",\n",
  "\"se_diff\": ", vec(comp[, "se_diff"]), ",\n",
  "\"normal_reff1_elpd_loo\": ", vec(a1$pointwise[, "elpd_loo"]), ",\n",
  "\"print_compare\": ", str(printed(comp)), ",\n",
  "\"ks30_u\": ", vec(u30), ", \"ks30_D\": ", num(k30$statistic), ", \"ks30_p\": ", num(k30$p.value), ",\n",
  "\"ks150_u\": ", vec(u150), ", \"ks150_D\": ", num(k150$statistic), ", \"ks150_p\": ", num(k150$p.value), "\n",
  "}\n")
writeLines(json, file.path(outdir, "loo_compare.json"), sep = "")
cat(sprintf("wrote loo reference (R %s, loo %s) to %s\n", getRversion(), packageVersion("loo"), outdir))
