/* sbc.h — `rugged --sbc R`: simulation-based calibration of the chosen engine on the rugged
 * model, through the library's calibration module. */
#ifndef RUGGED_SBC_H
#define RUGGED_SBC_H

#include "cli.h"
#include "rugged_model.h"

/* Run R replications, print the report, write sbc_summary.csv, sbc_ranks.csv (and the
 * details and figures) into o->out. Returns EM_OK or the error, with err filled. */
em_status run_sbc(const rugged_options *o, const rugged_data *d, em_error *err);

#endif
