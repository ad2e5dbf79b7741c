// rugged.stan — the terrain-ruggedness regression of Pyro's Bayesian-regression tutorial, the
// Stan baseline of bench/nuts.c. The same model and unconstrained space as
// examples/bayesian_regression/rugged_model.c, written the fastest way for Stan: the design
// matrix is built once in transformed data, the likelihood is the fused normal_id_glm (one
// node on the autodiff stack instead of one per row), and the uniform(0, 10) prior of sigma is
// left to its bounds (inside them it is a constant).
data {
  int<lower=0> N;
  vector[N] africa;
  vector[N] rugged;
  vector[N] log_gdp;
}
transformed data {
  matrix[N, 3] X = append_col(append_col(africa, rugged), africa .* rugged);
}
parameters {
  real a;
  vector[3] b; // bA, bR, bAR
  real<lower=0, upper=10> sigma;
}
model {
  a ~ normal(0, 10);
  b ~ std_normal();
  log_gdp ~ normal_id_glm(X, a, b, sigma);
}
