/* The planner's inputs from the real world: the model as the engine and
 * store describe it, and the machine as src/hw profiles it. */
#ifndef STRATA_PLAN_INPUTS_H
#define STRATA_PLAN_INPUTS_H

#include "gguf/gguf.h"
#include "hw/hw.h"
#include "model/model_spec.h"
#include "plan/plan.h"

/* Asks the engine (at two context lengths, to separate the parts of its
 * buffers that grow with the context) and the store (group read layouts). */
strata_status plan_model_from_engine(const gguf_file *f, const model_spec *spec, int n_threads, plan_model *out,
                                     strata_error *err);
void plan_model_free(plan_model *m);

/* budget 0: hw_default_budget of the profile's usable memory. Bandwidths
 * not measured get conservative guesses and measured = false. */
void plan_machine_from_profile(const hw_profile *p, uint64_t budget, plan_machine *out);

/* Streams the model's groups through the store for `seconds` and returns
 * the bytes/s reached: the disk rate a streaming plan of this file can
 * count on (replaces the profile's raw O_DIRECT figure for it). */
double plan_measure_stream(const gguf_file *f, const model_spec *spec, double seconds, strata_error *err);
bool plan_streams(const plan *p);

/* plan_compute for this machine: when the chosen plan streams, the disk
 * rate is measured on the model through the store (about a second) and
 * the plan made again with it. mach->disk_bw is updated. */
void plan_compute_live(const gguf_file *f, const model_spec *spec, const plan_model *m, plan_machine *mach,
                       const plan_request *req, plan_result *r);

/* Decodes a small synthetic resident model with p's physical cores and
 * stores the rate in p->measured.engine_bw (detect --measure calls it). */
void plan_calibrate_into(hw_profile *p);

/* The machine to plan for: the profile file `hw_file` (a hypothetical
 * machine), or this machine probed live with the saved measurements; when
 * none are saved for it and `measure` is set, measures now (a few seconds)
 * and saves them. `model_path` says where models live. */
strata_status plan_machine_profile(const char *hw_file, const char *model_path, bool probe_gpus, bool measure,
                                   hw_profile *out, strata_error *err);

#endif
