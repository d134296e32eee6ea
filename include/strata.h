/* strata — public C API.
 *
 * strata runs large language models on machines whose memory is smaller
 * than the model. This header is the library's whole public surface; the
 * `strata` command uses nothing else.
 *
 * Conventions: every fallible call takes a `strata_error *` (may be NULL)
 * and returns a strata_status; on failure the error's message is one line
 * naming the file, flag or tensor and the problem. Sizes are uint64_t bytes.
 */
#ifndef STRATA_H
#define STRATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STRATA_VERSION_MAJOR 0
#define STRATA_VERSION_MINOR 1
#define STRATA_VERSION_PATCH 0
#define STRATA_VERSION_STRING "0.1.0"

typedef enum strata_status {
    STRATA_OK = 0,
    STRATA_E_INVALID = 1,     /* bad argument or flag */
    STRATA_E_IO = 2,          /* open/read/write failed */
    STRATA_E_FORMAT = 3,      /* malformed input file */
    STRATA_E_UNSUPPORTED = 4, /* valid input strata cannot handle */
    STRATA_E_NOMEM = 5,       /* allocation failed or budget exceeded */
} strata_status;

#define STRATA_ERROR_MAX 512

typedef struct strata_error {
    strata_status status;
    char message[STRATA_ERROR_MAX];
} strata_error;

/* Library version string, e.g. "0.1.0". */
const char *strata_version(void);

/* A short name for a status code ("format error", ...). */
const char *strata_status_name(strata_status status);

/* ---- Model inspection (header only: no tensor data is read) ---- */

typedef struct strata_model_info strata_model_info;

/* Opens a GGUF model (or the first file of a split model) and reads its
 * header and tensor table. Memory use is proportional to the header. */
strata_status strata_model_info_open(const char *path, strata_model_info **out,
                                     strata_error *err);
void strata_model_info_free(strata_model_info *info);

/* The inspection report as one JSON document (schema: docs/inspect-json.md).
 * The returned string is owned by the caller (free()). */
char *strata_model_info_json(const strata_model_info *info, bool with_tensors);

/* ---- The machine ---- */

typedef struct strata_machine {
    uint64_t usable_memory;   /* min(MemAvailable, cgroup limit - usage + its page cache) */
    uint64_t default_budget;  /* usable_memory minus a margin: 10 %, at least 256 MiB,
                                 at most a quarter */
    uint64_t cgroup_limit;    /* the memory cgroup limit that binds usable_memory; 0: none binds */
    uint64_t cgroup_held;     /* what the cgroup already holds (usage less its page cache) */
    int physical_cores;       /* usable by this process */
    double disk_bw;           /* measured O_DIRECT read bytes/s of the saved profile; 0: unknown */
    double ram_bw;            /* measured RAM read bytes/s, all threads; 0: unknown */
} strata_machine;

/* Reads this machine's memory, cores, and the measurements of the saved
 * profile (`strata detect --measure`) when it belongs to this machine.
 * `model_path` is a model file or its directory (NULL: current directory). */
strata_status strata_machine_probe(const char *model_path, strata_machine *out, strata_error *err);

/* Records that a run streamed `bytes` of weights from the storage holding
 * model_path in `seconds` of decoding while the disk was its bottleneck:
 * later plans on this machine for models on that device use the rate
 * (bytes per second, averaged over runs) as the disk bandwidth. Kept in
 * stream-rates.json next to the saved profile (docs/profile-json.md). */
strata_status strata_machine_record_stream_rate(const char *model_path, uint64_t bytes, double seconds,
                                                strata_error *err);

/* ---- Machine profiles (`strata detect`, `strata doctor`) ----
 *
 * A profile is what strata knows of a machine: its hardware, probed now
 * (CPU, memory and cgroup, the storage where models live, GPUs), and the
 * bandwidths measured on it (RAM, CPU kernels, the engine per weight type
 * and thread count, disk, GPU), kept in a saved profile that is reused
 * while the machine stays the same. JSON schema: docs/profile-json.md. */

typedef struct strata_profile strata_profile;

typedef struct strata_profile_params {
    const char *path;     /* where models live: a directory or a model file (NULL: .) */
    const char *file;     /* the saved profile to reuse or write (NULL: strata_profile_default_path) */
    const char *root;     /* read /proc and /sys below this directory (a captured tree, for tests):
                             no GPU library is opened and no saved profile is reused; NULL: / */
} strata_profile_params;

/* What happened to the saved profile when a probe looked for it. */
typedef enum strata_profile_saved {
    STRATA_PROFILE_MISSING = 0, /* none saved (or not looked for: root set) */
    STRATA_PROFILE_FRESH,       /* saved for this machine: its measurements are in the profile */
    STRATA_PROFILE_STALE,       /* saved for another machine, or without measurements: ignored */
    STRATA_PROFILE_BAD,         /* unreadable or malformed: ignored (strata_profile_probe's err says why) */
} strata_profile_saved;

/* $XDG_CACHE_HOME/strata/profile.json, else ~/.cache/strata/profile.json. */
strata_status strata_profile_default_path(char *buf, size_t cap, strata_error *err);

/* Probes this machine and takes the saved profile's measurements when it is
 * of this machine. A bad saved profile is not an error: the state says so
 * and err (when given) holds the reason. */
strata_status strata_profile_probe(const strata_profile_params *p, strata_profile **out, strata_error *err);
void strata_profile_free(strata_profile *p);
strata_profile_saved strata_profile_saved_state(const strata_profile *p);

/* Measures the bandwidths now (a few seconds; quick: small buffers and
 * short runs) and saves the profile to its file. progress (may be NULL)
 * is called with each stage's name and the fraction done (1.0: done). */
strata_status strata_profile_measure(strata_profile *p, bool quick,
                                     void (*progress)(const char *stage, double fraction, void *ctx), void *ctx,
                                     strata_error *err);

/* The profile as JSON (docs/profile-json.md), or NULL when out of memory;
 * free() it. */
char *strata_profile_json(const strata_profile *p);
/* The human report of `strata detect`: CPU, memory, storage, GPUs and the
 * measurements, one section a line or two. */
void strata_profile_print(const strata_profile *p, FILE *out);

/* `strata doctor`'s checks of what makes big-model runs fail or crawl. */
typedef enum strata_check_level { STRATA_CHECK_PASS = 0, STRATA_CHECK_WARN, STRATA_CHECK_FAIL } strata_check_level;
typedef struct strata_check {
    strata_check_level level;
    char name[32];     /* "o_direct", "cgroup", ... */
    char message[320];
    char fix[320];     /* one line; "" when nothing is to be done */
} strata_check;
#define STRATA_MAX_CHECKS 32
/* Writes at most max checks to out; returns how many. */
int strata_profile_check(const strata_profile *p, strata_check *out, int max);

/* ---- Running a model ---- */

typedef struct strata_model strata_model;

/* Which GPU runs layers (Vulkan). */
typedef enum strata_gpu_mode {
    STRATA_GPU_OFF = 0, /* CPU only */
    STRATA_GPU_AUTO,    /* the first discrete or integrated GPU, if any; else the CPU (the reason is in the stats) */
    STRATA_GPU_DEVICE,  /* Vulkan device gpu_index (software devices too); an error if it cannot be used */
} strata_gpu_mode;

/* Mixture of experts: which cached expert the cache evicts, and what a
 * decode step reads ahead for the next layer. */
typedef enum strata_moe_cache {
    STRATA_MOE_LRU = 0, /* the expert used least recently */
    STRATA_MOE_LFU,     /* the expert used least often (counts fade with age) */
} strata_moe_cache;

typedef enum strata_moe_prefetch {
    STRATA_MOE_PREFETCH_NONE = 0,
    STRATA_MOE_PREFETCH_PREV,   /* the experts the previous token chose in the next layer */
    STRATA_MOE_PREFETCH_ROUTER, /* the next layer's router applied to the current state */
} strata_moe_prefetch;

/* Element type of the KV cache, for K and V independently (llama.cpp's
 * -ctk / -ctv). q8_0 and q4_0 are ggml's 32-value blocks with an f16 scale
 * (34 and 18 bytes per 32 values, against 64 for f16); they need a head
 * dimension that is a multiple of 32. Layers on a GPU keep an f16 cache. */
typedef enum strata_kv_type {
    STRATA_KV_DEFAULT = 0, /* f16 (f32 with kv_f32) */
    STRATA_KV_F16,
    STRATA_KV_F32,
    STRATA_KV_Q8_0,
    STRATA_KV_Q4_0,
} strata_kv_type;

typedef struct strata_model_params {
    uint32_t n_ctx;          /* context length; 0: the model's */
    uint32_t n_batch;        /* tokens per forward pass; 0: 256 */
    int n_threads;           /* 0: online CPUs (strata run passes physical cores) */
    bool kv_f32;             /* F32 KV cache instead of F16 (where kv_type_k / _v are DEFAULT) */
    strata_kv_type kv_type_k, kv_type_v; /* K and V cache types (DEFAULT: f16, or f32 with kv_f32) */
    bool reference_kernels;  /* scalar reference kernels (the truth; slow) */
    uint64_t mem_budget;     /* bytes for weights + KV cache + buffers; 0: no limit.
                                Weights that do not fit are streamed from disk. */
    int prefetch_depth;      /* streamed layers read ahead (0: 2) */
    int io_threads;          /* streaming reader threads (0: 4) */
    bool progress;           /* progress bar on stderr while loading weights */
    bool mmap;               /* resident weights are the file's pages in the page cache, mapped
                                (no copy: a cached file is resident at once) instead of copies in
                                the process's own memory (read with O_DIRECT); the budget counts
                                them the same (llama.cpp's --mmap / --no-mmap) */
    bool plan;               /* place the weights with the planner (budget and measured
                                bandwidths of this machine) instead of the store's rule */
    const char *plan_file;   /* execute this saved plan (`strata plan --json`) */
    strata_gpu_mode gpu;     /* layers in VRAM: with plan, the plan's, made for this device (none
                                for a CPU plan); else (or with gpu_layers_max or gpu_stream
                                set) from the first on, as many as fit */
    int gpu_index;           /* with STRATA_GPU_DEVICE */
    uint64_t gpu_mem;        /* device bytes at most; 0: the device's budget */
    uint32_t gpu_layers_max; /* layers on the GPU at most (llama.cpp's -ngl); 0: as many as fit */
    uint32_t gpu_stream;     /* layers that do not fit in VRAM are streamed from RAM to the GPU every
                                token through a ring of this many staging buffers (1..8); 0: they
                                run on the CPU */
    strata_moe_cache moe_cache;
    strata_moe_prefetch moe_prefetch;
    uint32_t moe_cache_experts; /* experts (of any layer) the cache holds; 0: what the budget leaves */
    uint32_t n_parallel;     /* sequences whose KV caches the model reserves room for, n_ctx tokens
                                each (llama.cpp's -np); 0: 1. Contexts take what they need from
                                this reserve (strata_context_new). */
    bool watchdog;           /* under a budget, a thread watches memory pressure (cgroup, PSI,
                                MemAvailable) and moves resident layers to streaming when memory
                                runs short, back when it returns (on in strata_model_default_params;
                                the environment variable STRATA_WATCHDOG=0 turns it off) */
} strata_model_params;

strata_model_params strata_model_default_params(void);

/* Opens a llama-architecture GGUF model, its tokenizer and weights. */
strata_status strata_model_open(const char *path, const strata_model_params *params, strata_model **out,
                                strata_error *err);
void strata_model_free(strata_model *m);

uint32_t strata_model_n_vocab(const strata_model *m);
uint32_t strata_model_n_ctx(const strata_model *m);
/* Tokens already in the context. */
uint32_t strata_model_n_past(const strata_model *m);
/* Bytes of weights, KV cache and buffers the model holds. */
uint64_t strata_model_memory_bytes(const strata_model *m);

/* What the weight store holds and has done so far. */
typedef struct strata_model_stats {
    uint64_t accounted_bytes;   /* all memory strata accounts (weights, slots, KV cache, buffers,
                                   and under a budget the reserve for the process itself) */
    uint64_t resident_bytes;    /* weights kept in memory */
    uint64_t slot_bytes;        /* streaming buffers */
    uint64_t buffer_bytes;      /* KV cache and compute buffers */
    uint64_t pass_bytes;        /* weight bytes streamed per forward pass */
    uint32_t streamed_layers;   /* groups of tensors streamed (layers, output) */
    uint64_t bytes_read;        /* streamed from disk so far */
    uint64_t read_requests;     /* the read requests that streamed them (adjacent reads merged count once) */
    double io_busy_s;           /* time reader threads spent reading (summed) */
    double io_active_s;         /* wall time with at least one read in progress (the disk busy) */
    double io_wait_s;           /* time compute waited for reads */
    bool direct_io;             /* reads bypass the page cache (O_DIRECT) */
    double predicted_decode_tps; /* the plan's prediction; 0 without a plan */
    double predicted_disk_bw;    /* the disk bandwidth the plan assumed (bytes/s) */
    bool predicted_measured;     /* the plan used measured bandwidths */
    uint32_t gpu_layers;         /* layers running on the GPU */
    bool gpu_output;             /* the output projection too */
    uint32_t gpu_streamed;       /* of those groups (layers, output), streamed from RAM every token */
    uint32_t gpu_prefill_streamed; /* groups on the CPU when decoding, streamed to the GPU for prompt batches
                                      (steps of 32+ tokens: a plan's prefill sites) */
    uint64_t gpu_stream_copies;  /* groups copied from RAM into the GPU's staging ring so far */
    uint64_t gpu_bytes;          /* device memory held */
    uint64_t gpu_peak_bytes;     /* the most device memory held since the model opened */
    const char *gpu_name;        /* "" without a GPU */
    const char *gpu_note;        /* why the GPU is not used, or not for every layer, and that GPU layers
                                    keep an f16 KV cache when another type was asked for ("" otherwise) */
    /* mixture of experts: the expert cache (zero for dense models); an
     * expert is one layer's expert (its gate, up and down matrices) */
    uint32_t experts;            /* in the model */
    uint32_t expert_slots;       /* the cache holds */
    uint64_t expert_cache_bytes;
    uint64_t expert_hits, expert_misses;           /* uses found in the cache, read */
    uint64_t prefetch_issued, prefetch_used, prefetch_wasted;
    /* the memory-pressure watchdog (strata_model_params.watchdog) */
    bool watchdog;               /* running */
    uint32_t pressure_shrinks;   /* times resident layers were moved to streaming */
    uint32_t pressure_grows;     /* times they were moved back */
    uint64_t pressure_demoted_bytes, pressure_promoted_bytes; /* layer bytes moved, summed */
    uint64_t pressure_freed_bytes;  /* memory given back to the system (net of streaming slots) */
    uint32_t pressure_streamed_layers; /* layers resident at load that are streamed now */
    double pressure_reaction_s;  /* longest time from pressure seen to memory given back */
    bool pressure_psi_trigger;   /* the watchdog is woken by a PSI trigger, not only its samples */
    uint64_t pressure_psi_wakeups; /* PSI events that woke it */
    /* the CPU's thread pool, summed since the model opened: parallel jobs
     * run (each matrix product or attention step of a layer on the CPU is
     * one), the wall time inside them, and the time threads worked in them
     * summed over threads (cpu_threads x cpu_job_s - cpu_busy_s is time
     * they waited inside jobs); time outside jobs runs on one thread */
    uint32_t cpu_threads;
    uint64_t cpu_jobs;
    double cpu_job_s, cpu_busy_s;
} strata_model_stats;

void strata_model_get_stats(const strata_model *m, strata_model_stats *out);

/* ---- the memory account ----
 * Every byte a model allocates is counted in one account, per tier and per
 * category, and checked against the budget before it is touched. */
typedef enum strata_mem_tier { STRATA_MEM_RAM = 0, STRATA_MEM_VRAM, STRATA_MEM_N_TIERS } strata_mem_tier;
typedef enum strata_mem_category {
    STRATA_MEM_PROCESS = 0, /* code, stacks, header, tokenizer (an estimate) */
    STRATA_MEM_WEIGHTS,     /* resident weights */
    STRATA_MEM_SLOTS,       /* streaming slots */
    STRATA_MEM_EXPERTS,     /* the expert cache */
    STRATA_MEM_KV,          /* KV caches of open contexts */
    STRATA_MEM_KV_RESERVE,  /* KV room for contexts not opened yet */
    STRATA_MEM_SCRATCH,     /* activations, per-batch buffers */
    STRATA_MEM_PROMPT,      /* prompt tokens and tokenizing them */
    STRATA_MEM_LOGITS,      /* logits handed to the caller, generation loops' logits rows */
    STRATA_MEM_SAMPLER,     /* samplers' candidates, token histories, end-of-generation lists */
    STRATA_MEM_TEXT,        /* request bodies, chat messages, generated and response text */
    STRATA_MEM_OTHER,
    STRATA_MEM_N_CATEGORIES
} strata_mem_category;
typedef struct strata_mem_account {
    uint64_t used[STRATA_MEM_N_CATEGORIES];
    uint64_t peak_used[STRATA_MEM_N_CATEGORIES]; /* the most each category held at once */
    uint64_t total, budget, peak; /* budget 0: none */
} strata_mem_account;
void strata_model_mem_account(const strata_model *m, strata_mem_tier tier, strata_mem_account *out);
const char *strata_mem_category_name(strata_mem_category c);
/* A zeroed buffer of `bytes` counted in category c (RAM), refused with
 * STRATA_E_NOMEM before anything is allocated when the budget cannot hold
 * it (resident weights are moved to streaming first to make room). */
void *strata_mem_alloc(strata_model *m, strata_mem_category c, size_t bytes, strata_error *err);
void strata_mem_free(strata_model *m, strata_mem_category c, void *p, size_t bytes);
/* Grows (or shrinks) a buffer of this account from old_bytes to bytes
 * (p NULL, old_bytes 0: a new one): the growth is refused with
 * STRATA_E_NOMEM before anything is touched when the budget cannot hold
 * it, and p is then unchanged and still counted. Freed by strata_mem_free. */
void *strata_mem_realloc(strata_model *m, strata_mem_category c, void *p, size_t old_bytes, size_t bytes,
                         strata_error *err);
/* Returns buf (of *cap bytes, counted in category c; NULL and 0 at first),
 * moved if need be, holding at least `need` bytes: its capacity doubles
 * (from 256) through strata_mem_realloc. NULL on a refusal (buf and *cap
 * unchanged, err says why). */
void *strata_mem_grow(strata_model *m, strata_mem_category c, void *buf, size_t *cap, size_t need,
                      strata_error *err);
/* Counts (or stops counting) memory the caller holds elsewhere. */
strata_status strata_mem_take(strata_model *m, strata_mem_category c, size_t bytes, strata_error *err);
void strata_mem_give(strata_model *m, strata_mem_category c, size_t bytes);

/* Expert-cache counts of one layer (zero for dense models); false past the
 * last layer. */
typedef struct strata_layer_expert_stats {
    uint64_t hits, misses, prefetch_issued, prefetch_used;
} strata_layer_expert_stats;
bool strata_model_layer_expert_stats(const strata_model *m, uint32_t layer, strata_layer_expert_stats *out);

/* One line describing the plan the model runs under ("" without a plan). */
const char *strata_model_plan_summary(const strata_model *m);
/* The memory budget of the plan the model runs under, in bytes: the one
 * given (mem_budget), else the saved plan's, else the machine's default;
 * 0 without a plan. */
uint64_t strata_model_budget(const strata_model *m);

/* Tokenizes text[0..len) (BOS prepended when add_bos and the model has
 * one). *tokens is malloc'd (free()), *n its length. */
strata_status strata_tokenize(const strata_model *m, const char *text, size_t len, bool add_bos, int32_t **tokens,
                              size_t *n, strata_error *err);
/* strata_tokenize with a choice: parse_special matches control tokens
 * written literally in the text ("<|im_start|>" becomes that one token);
 * strata_tokenize never does, so user text cannot forge them. */
/* The longest token's text in bytes: a text of len bytes is at least
 * len / this many tokens (checks before tokenizing a huge text). */
size_t strata_max_token_bytes(const strata_model *m);
strata_status strata_tokenize_ex(const strata_model *m, const char *text, size_t len, bool add_bos,
                                 bool parse_special, int32_t **tokens, size_t *n, strata_error *err);
/* True for tokens that end generation: EOS, EOT, and the turn-ending tokens
 * of chat templates (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>) when
 * the vocabulary marks them control or user-defined. */
bool strata_token_is_eog(const strata_model *m, int32_t token);

/* Streaming detokenizer: text of each token as it comes, with incomplete
 * UTF-8 sequences held back until complete. */
typedef struct strata_detok strata_detok;
strata_detok *strata_detok_new(const strata_model *m);
/* Text completed by this token (NUL-terminated, valid until the next call);
 * NULL for an invalid token. */
const char *strata_detok_push(strata_detok *d, int32_t token, size_t *len);
const char *strata_detok_finish(strata_detok *d, size_t *len);
void strata_detok_free(strata_detok *d);

/* Evaluates tokens at the next positions of the context; writes the logits
 * of every position (all_logits: n x n_vocab) or of the last (n_vocab) to
 * `logits` (may be NULL). */
strata_status strata_eval(strata_model *m, const int32_t *tokens, size_t n, float *logits, bool all_logits,
                          strata_error *err);
/* Empties the context. */
void strata_model_reset(strata_model *m);

/* ---- Many sequences ----
 * A model holds what is shared and read-only (weights, store, tokenizer,
 * threads); a context holds one sequence's state (its KV cache and
 * position). Many contexts share one model: a context costs its KV cache
 * only, taken from the model's KV reserve (n_parallel x n_ctx tokens).
 * strata_eval runs the model's own context, created on first use. With
 * layers on a GPU, the device holds n_parallel sets of KV caches for them
 * (each of n_ctx): at most n_parallel contexts are open at once. Calls on
 * one model and its contexts must not run concurrently, except those that
 * read only the vocabulary (tokenizing, detokenizing with a strata_detok
 * of one's own, chat formatting and tokenizing, strata_token_is_eog):
 * they may run while another thread decodes. Free the contexts before the
 * model. */

typedef struct strata_context strata_context;

/* A context of up to n_ctx tokens (0: the model's n_ctx; at most that).
 * STRATA_E_NOMEM when the reserve (or the GPU's sets of caches) has no
 * room for it now (free a context and retry). */
strata_status strata_context_new(strata_model *m, uint32_t n_ctx, strata_context **out, strata_error *err);
void strata_context_free(strata_context *c);
uint32_t strata_context_n_ctx(const strata_context *c);
uint32_t strata_context_n_past(const strata_context *c);
/* Empties the context. */
void strata_context_reset(strata_context *c);
/* Evaluates tokens at the context's next positions, as strata_eval. */
strata_status strata_context_eval(strata_context *c, const int32_t *tokens, size_t n, float *logits,
                                  bool all_logits, strata_error *err);

/* Bytes of KV cache a context of n_ctx tokens takes from the reserve, and
 * what the reserve has left. */
uint64_t strata_context_bytes(const strata_model *m, uint32_t n_ctx);
uint64_t strata_model_kv_free(const strata_model *m);
/* Tokens one forward pass evaluates at most (the model's n_batch). */
uint32_t strata_model_n_batch(const strata_model *m);

/* One token of a batch: the context (sequence) it belongs to, the token,
 * its position (the context's n_past, plus one for each earlier entry of
 * the same context in the batch), and whether its logits are wanted. */
typedef struct strata_batch_entry {
    strata_context *ctx;
    int32_t token;
    uint32_t pos;
    bool logits;
} strata_batch_entry;

/* One forward pass over entries[0..n) (n <= strata_model_n_batch): every
 * weight is read once for all of them (streamed layers included). Entries
 * may mix contexts: the next token of many sequences, prompt chunks of
 * others. Writes the logits of the entries that ask for them, in entry
 * order, to logits ([k][n_vocab]; may be NULL when none asks). Each
 * context advances by its entries. On error no context advances. */
strata_status strata_decode(strata_model *m, const strata_batch_entry *entries, size_t n, float *logits,
                            strata_error *err);

/* ---- Plans (`strata plan`) ----
 *
 * The planner decides where a model's weights and KV cache live (GPU, RAM,
 * or streamed from disk) under a memory budget and predicts prefill and
 * decode speed from the machine's profile (docs/cost-model.md). Planning
 * reads the model's header and tensor table, and its tensor data only for
 * a mixture of experts whose routing was never measured (once per file:
 * moe_uniform_routing). */

typedef struct strata_plan strata_plan;

#define STRATA_PLAN_MAX_PARALLEL 256 /* sequences one forward pass holds */

typedef struct strata_plan_params {
    const char *profile_file; /* plan for this machine profile (`strata detect --json` format, e.g.
                                 a hypothetical machine) instead of this machine: every placement,
                                 GPU tiers included; NULL: this machine, plans the engine runs */
    uint64_t mem_budget;      /* RAM budget in bytes; 0: the machine's default */
    uint32_t n_ctx;           /* context; 0: the model's, reduced to fit */
    uint32_t n_batch;         /* tokens per step of the prefill prediction (0: 256; 32 or more
                                 chooses the placement by prefill speed instead of decode) */
    uint32_t n_parallel;      /* sequences decoding together (0, 1: one; at most STRATA_PLAN_MAX_PARALLEL) */
    bool parallel_auto;       /* instead: the most sequences whose KV caches fit */
    strata_kv_type kv_type;   /* DEFAULT or F16, Q8_0, Q4_0 (F32 is planned as f16) */
    int n_threads;            /* the engine's threads; 0: one per usable physical core. A thread count
                                 this machine's profile has no engine calibration for is calibrated
                                 (a few seconds, then saved) */
    bool moe_hit_rate_set;    /* mixture of experts: moe_hit_rate (0..1) is the expert cache's hit rate */
    double moe_hit_rate;
    bool moe_uniform_routing; /* mixture of experts without a stated hit rate: estimate it for uniform
                                 routing instead of the routing measured on this file (by default
                                 the model's routers run on a 128-token built-in prompt once per
                                 file, a few seconds, under mem_budget or this machine's default
                                 budget, whichever is less; cached beside the profile) */
    bool probe_gpus;          /* this machine: open the GPU libraries to list its GPUs */
} strata_plan_params;

/* Plans; a placement that does not fit is a plan too (verdict 2, with the
 * reason). Errors: an unreadable model or profile. With no saved profile
 * of this machine, measures it first (a few seconds) and saves it. */
strata_status strata_plan_make(const char *model_path, const strata_plan_params *p, strata_plan **out,
                               strata_error *err);
void strata_plan_free(strata_plan *p);

/* 0: runs entirely in memory; 1: runs with weights (or expert misses)
 * streamed from disk; 2: cannot run (strata_plan_reason says why). */
int strata_plan_verdict(const strata_plan *p);
const char *strata_plan_reason(const strata_plan *p);
double strata_plan_decode_tps(const strata_plan *p); /* predicted; 0 when it cannot run */

#define STRATA_PLAN_COMPARE 1u /* print: the alternatives considered and why each lost */
#define STRATA_PLAN_EXPORT 2u  /* print and JSON: the equivalent llama.cpp flags */
/* The human report of `strata plan`: placement, memory per tier, speed and
 * its terms (or the batch of n_parallel sequences), warnings. */
void strata_plan_print(const strata_plan *p, FILE *out, unsigned flags);
/* The llama.cpp flags, two lines (for a plan that can run). */
void strata_plan_print_export(const strata_plan *p, FILE *out);
/* The plan as one JSON object (read by `run --plan`); NULL when out of
 * memory; free() it. */
char *strata_plan_json(const strata_plan *p, unsigned flags);

/* ---- Sampling ---- */

typedef struct strata_sampler_params {
    float temp;            /* <= 0: greedy */
    int32_t top_k;         /* 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* tokens of history penalized; -1: all */
    uint64_t seed;
} strata_sampler_params;

strata_sampler_params strata_sampler_default_params(void);

typedef struct strata_sampler strata_sampler;
/* A sampler for m's vocabulary; its candidate list (a few bytes per token)
 * is counted in m's memory account (STRATA_MEM_SAMPLER), so it must be
 * freed before m. NULL with err set (may be NULL) when the budget cannot
 * hold it or memory runs out. */
strata_sampler *strata_sampler_new(const strata_sampler_params *params, strata_model *m, strata_error *err);
int32_t strata_sample(strata_sampler *s, const float *logits, const int32_t *history, size_t n_history);
void strata_sampler_free(strata_sampler *s);

/* ---- Chat ----
 * Conversations formatted the way chat models were trained, for the common
 * template families. A GGUF file stores its template as Jinja source
 * (tokenizer.chat_template); strata recognizes the family by its distinctive
 * markers and formats with its own code (there is no Jinja engine). */

typedef struct strata_chat_message {
    const char *role;    /* "system" (first message only), "user" or "assistant" */
    const char *content; /* UTF-8 text */
} strata_chat_message;

/* The known template names, NULL-terminated: "chatml", "llama2", "llama3",
 * "mistral-v1", ... */
const char *const *strata_chat_template_names(void);

/* The family of a Jinja chat template, recognized by its markers (e.g.
 * "<|im_start|>": "chatml"); NULL when none is recognized. */
const char *strata_chat_template_detect(const char *jinja);

/* The model's stored template (tokenizer.chat_template), or NULL when it has
 * none. Valid as long as the model. */
const char *strata_model_chat_template(const strata_model *m);

/* The template to use for m: `name` when non-NULL (it must be a known name),
 * else the family detected from the model's stored template. Errors name the
 * known templates. */
strata_status strata_model_chat_template_name(const strata_model *m, const char *name, const char **out,
                                              strata_error *err);

/* Formats messages msgs[0..n) with template `template_name`; with
 * add_generation_prompt, the text that opens the assistant's answer follows.
 * Messages after an optional first system message must alternate user,
 * assistant, ... starting with user. The text leaves out the BOS token the
 * model cards show in front (it is a token, added by tokenizing). *out is
 * malloc'd (free()). */
strata_status strata_chat_format(const char *template_name, const strata_chat_message *msgs, size_t n,
                                 bool add_generation_prompt, char **out, strata_error *err);

/* The tokens of the formatted conversation: special tokens of the template's
 * markup (e.g. <|im_start|>) become their tokens, while message contents are
 * never parsed for special tokens. n_done: the messages msgs[0..n_done) are
 * already in the model's context up to the end of the content of the last of
 * them (an answer just generated); only the tokens after it are returned.
 * n_done 0: the whole conversation, with BOS in front when the model adds
 * one. *tokens is malloc'd (free()). */
strata_status strata_chat_tokenize(const strata_model *m, const char *template_name,
                                   const strata_chat_message *msgs, size_t n, size_t n_done,
                                   bool add_generation_prompt, int32_t **tokens, size_t *n_tokens,
                                   strata_error *err);

/* ---- Vocabulary only ----
 * A model's tokenizer by itself, read from the GGUF metadata alone (no
 * tensor is needed: vocabulary-only files such as llama.cpp's
 * ggml-vocab-*.gguf work). */

typedef struct strata_vocab strata_vocab;

strata_status strata_vocab_open(const char *path, strata_vocab **out, strata_error *err);
void strata_vocab_free(strata_vocab *v);

uint32_t strata_vocab_n_tokens(const strata_vocab *v);

/* Tokenizes text[0..len). add_special: BOS / EOS around the text as the
 * vocabulary's flags say (tokenizer.ggml.add_bos_token / add_eos_token and
 * their defaults; llama.cpp's add_special); parse_special: control tokens
 * written literally in the text ("<|im_start|>") become those tokens.
 * *tokens is malloc'd (free(); NULL when *n is 0). */
strata_status strata_vocab_tokenize(const strata_vocab *v, const char *text, size_t len, bool add_special,
                                    bool parse_special, int32_t **tokens, size_t *n, strata_error *err);

/* The bytes token `id` stands for (control tokens as their text); it may be
 * part of a UTF-8 sequence only. NULL (and *len 0) for an id out of range.
 * Valid as long as v. */
const char *strata_vocab_piece(const strata_vocab *v, int32_t id, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
