/* The planner's inputs from the real world: the model as the engine and
 * store describe it, and the machine as src/hw profiles it. */
#ifndef STRATA_PLAN_INPUTS_H
#define STRATA_PLAN_INPUTS_H

#include "gguf/gguf.h"
#include "hw/hw.h"
#include "model/model_spec.h"
#include "plan/plan.h"

/* The engine's memory model (engine_describe) at the context and batch the
 * plan is asked for (0: the model's context, the engine's default batch;
 * the batch is capped by that context, as the engine caps -b by -c), and
 * the store's group read layouts. */
strata_status plan_model_from_engine(const gguf_file *f, const model_spec *spec, int n_threads, uint32_t n_ctx,
                                     uint32_t n_batch, plan_model *out, strata_error *err);
void plan_model_free(plan_model *m);

/* budget 0: hw_default_budget of the profile's usable memory. Bandwidths
 * not measured get conservative guesses and measured = false. threads: the
 * engine's thread count (0: hw_default_threads); the CPU rates are the
 * profile's calibration at that count, else the nearest one scaled by the
 * cores each count uses (threads_scaled). */
void plan_machine_from_profile(const hw_profile *p, uint64_t budget, int threads, plan_machine *out);
/* GPU g as the planner sees it (its VRAM: the budget, else free, else
 * total memory; its measured rates, else estimates); false for a software
 * device (lavapipe: a CPU is no GPU to plan for) unless
 * plan_software_gpus(), or for a GPU without memory. */
bool plan_gpu_from_hw(const hw_gpu *g, plan_gpu *o);
/* STRATA_PLAN_SOFTWARE_GPU=1 in the environment, for tests only: the
 * planner takes software devices for GPUs, so that CI (lavapipe, no GPU)
 * can check that `run` executes the GPU plans it makes. */
bool plan_software_gpus(void);

/* Where the machine's figures came from, for the plan's text. */
typedef struct plan_machine_notes {
    hw_cache_state cache;      /* the saved profile's state (FRESH for a --hw file) */
    bool measured_now;         /* measured during this command (and saved) */
    bool calibrated_now;       /* the engine calibrated at the requested thread count now (and saved) */
    char profile[480];         /* "" when the saved measurements were used as they are; else what
                                  happened: "the saved profile is from another machine (CPU differs:
                                  ...): measured now and saved" */
    char disk[160];            /* where the disk figure comes from: "measured by 3 runs on vda",
                                  "detect --measure on vda", "guess: run `strata detect --measure`" */
} plan_machine_notes;

/* Calibrates the engine at `threads` (0: p's physical cores) into
 * p->measured.engine (detect --measure calls it); false (and a warning in
 * p) when it failed. */
bool plan_calibrate_into(hw_profile *p, int threads);

/* The machine to plan for: the profile file `hw_file` (a hypothetical
 * machine), or this machine probed live with the saved measurements; when
 * none are saved for it (or they are stale) and `measure` is set, measures
 * now (a few seconds; the disk with a temporary file next to the model,
 * never the model itself) and saves them, unless mem_cap (the run's
 * budget; 0: none) or the usable memory is below what measuring takes
 * (then estimates, and the note says why). `model_path` says where models
 * live. threads (0: the default): when the saved profile has no engine
 * calibration at that count and `measure` is set, calibrates there now (a
 * few seconds) and saves it. The disk figure: the rate runs reached streaming from the model's
 * storage device on this machine (stream-rates.json), else the saved
 * O_DIRECT measurement, else a guess; notes (may be NULL) says which, and
 * what happened to the saved profile. Reads no tensor data. */
strata_status plan_machine_profile(const char *hw_file, const char *model_path, bool probe_gpus, bool measure,
                                   uint64_t mem_cap, int threads, hw_profile *out, plan_machine_notes *notes,
                                   strata_error *err);

#endif
