/* ember.h — the one header an Ember user includes.
 *
 * Ember is a probabilistic-programming library for Bayesian regression in C: models are plain
 * C functions that call em_sample, em_observe and em_plate; reverse-mode automatic
 * differentiation gives the gradient of their log density; stochastic variational inference
 * and NUTS fit them. Each module's header documents its part.
 */
#ifndef EMBER_H
#define EMBER_H

#include "ember/core.h"
#include "ember/ad.h"
#include "ember/linalg.h"
#include "ember/transform.h"
#include "ember/dist.h"
#include "ember/logdensity.h"
#include "ember/mcmc.h"
#include "ember/diagnostics.h"
#include "ember/io.h"
#include "ember/model.h"
#include "ember/handlers.h"
#include "ember/optim.h"
#include "ember/svi.h"
#include "ember/pathfinder.h"
#include "ember/predictive.h"
#include "ember/calibration.h"
#include "ember/posterior.h"
#include "ember/loo.h"
#include "ember/formula.h"

#endif
