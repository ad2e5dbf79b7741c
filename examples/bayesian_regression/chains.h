/* chains.h — NUTS output: one CmdStan-layout CSV file per chain, and the sampler diagnostics
 * (divergences, tree-depth hits, E-BFMI, step sizes) a user should look at before trusting
 * the summary. */
#ifndef RUGGED_CHAINS_H
#define RUGGED_CHAINS_H

#include <stdio.h>

#include "ember.h"

/* Write dir/nuts_chain_<k>.csv (k = 1..chains) for every chain with sampling draws. After an
 * interruption a chain's file holds the draws it made, with a comment saying so; a chain
 * stopped during warmup has none and gets no file (named on stderr). *written counts the
 * files, *complete the chains that finished. data_path goes into the comment header. */
em_status write_nuts_chains(const char *dir, em_posterior *p, const char *data_path, size_t *written,
                            size_t *complete, em_error *err);

/* Per chain: step size, mean accept_stat__, divergences, max-treedepth hits, E-BFMI. */
void print_nuts_diagnostics(FILE *f, const em_mcmc_result *r);

#endif
