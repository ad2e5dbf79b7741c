// linreg_glm.stan — the large linear regression of bench/nuts.c (n = 100000, d = 20), the Stan
// baseline. The same model and unconstrained space as bench/linreg_model.h, written the fastest
// way for Stan: the fused normal_id_glm likelihood (one matrix-vector product each way and an
// analytic gradient, no per-row autodiff nodes); sigma's half-normal prior through its bound.
data {
  int<lower=0> N;
  int<lower=0> D;
  matrix[N, D] X;
  vector[N] y;
}
parameters {
  real alpha;
  vector[D] beta;
  real<lower=0> sigma;
}
model {
  alpha ~ normal(0, 10);
  beta ~ std_normal();
  sigma ~ std_normal();
  y ~ normal_id_glm(X, alpha, beta, sigma);
}
