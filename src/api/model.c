/* Public API: opening and running a model, tokenizing, detokenizing. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "hw/hw.h"
#include "model/model_spec.h"
#include "strata.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "api/model_internal.h"
#include "util/account.h"


/* Experts: LFU and the router predictor, chosen by `make bench-moe` (both
 * routing modes: LFU kept 24-57 % hits where LRU kept 17-54 %, the router's
 * guesses were 91-95 % right and raised decode by a tenth). */
strata_model_params strata_model_default_params(void)
{
    return (strata_model_params){.moe_cache = STRATA_MOE_LFU, .moe_prefetch = STRATA_MOE_PREFETCH_ROUTER,
                                 .watchdog = true};
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 256 ? (int)n : 1;
}

static strata_status open_parts(strata_model *m, const char *path, const strata_model_params *p, strata_error *err)
{
    strata_status st = gguf_open(path, &m->file, err);
    if (!st) st = model_spec_from_gguf(m->file, path, &m->spec, err);
    if (st) return st;
    if (!gguf_find(m->file, "tokenizer.ggml.model"))
        return err_set(err, STRATA_E_FORMAT, "%s: the model has no tokenizer (tokenizer.ggml.model)", path);
    if ((st = tokenizer_from_gguf(m->file, &m->tok, err))) {
        err_prefix_path(err, path); /* as strata_vocab_open (tokenize) says it */
        return st;
    }
    if (tokenizer_n_vocab(m->tok) != m->spec->hp.vocab_size)
        return err_set(err, STRATA_E_FORMAT, "%s: the tokenizer has %u tokens but the model %llu", path,
                       tokenizer_n_vocab(m->tok), (unsigned long long)m->spec->hp.vocab_size);
    engine_params ep = {.n_ctx = p->n_ctx, .n_seq = p->n_parallel, .n_batch = p->n_batch,
                        .n_threads = p->n_threads > 0 ? p->n_threads : default_threads(),
                        .kv_f32 = p->kv_f32, .kv_type_k = p->kv_type_k, .kv_type_v = p->kv_type_v,
                        .kernels = p->reference_kernels ? KERNEL_REFERENCE : KERNEL_FAST,
                        .mem_budget = p->mem_budget,
                        .store = {.prefetch_depth = p->prefetch_depth, .io_threads = p->io_threads,
                                  .progress = p->progress, .map_resident = p->mmap, .expert_slots = p->moe_cache_experts,
                                  .expert_policy = p->moe_cache == STRATA_MOE_LFU ? STORE_EXPERT_LFU
                                                                                   : STORE_EXPERT_LRU},
                        .moe_prefetch = p->moe_prefetch == STRATA_MOE_PREFETCH_PREV     ? ENGINE_MOE_PREFETCH_PREV
                                        : p->moe_prefetch == STRATA_MOE_PREFETCH_ROUTER ? ENGINE_MOE_PREFETCH_ROUTER
                                                                                        : ENGINE_MOE_PREFETCH_NONE,
                        .gpu = {.mode = p->gpu == STRATA_GPU_AUTO && hw_gpu_device_node_present() ? ENGINE_GPU_AUTO
                                        : p->gpu == STRATA_GPU_DEVICE ? ENGINE_GPU_INDEX
                                                                      : ENGINE_GPU_OFF,
                                .index = p->gpu_index, .mem_cap = p->gpu_mem, .max_layers = p->gpu_layers_max,
                                .stream_depth = p->gpu_stream}};
    if (p->plan || p->plan_file) st = model_plan(m, path, p, ep.n_threads, &ep, err);
    if (st) return st;
    if (!ep.mem_budget) ep.mem_budget = m->planned_budget;
    const char *wd = getenv("STRATA_WATCHDOG"); /* "0": off, for comparisons and debugging */
    ep.store.watchdog = p->watchdog && ep.mem_budget && !(wd && !strcmp(wd, "0"));
    /* one account for the model: the process first, then the engine's KV
     * reserve and buffers, then the weights in what is left */
    if (!(m->acct = acct_new(ep.mem_budget))) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    if ((st = acct_take(m->acct, ACCT_RAM, ACCT_PROCESS, engine_process_reserve(m->file), err))) return st;
    ep.account = m->acct;
    st = engine_open(m->file, m->spec, &ep, &m->eng, err);
    if (st && err && !strstr(err->message, path)) err_prefix_path(err, path);
    return st;
}

strata_status strata_model_open(const char *path, const strata_model_params *params, strata_model **out,
                                strata_error *err)
{
    err_clear(err);
    *out = NULL;
    strata_model_params defaults = strata_model_default_params();
    strata_model *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    strata_status st = open_parts(m, path, params ? params : &defaults, err);
    if (st) {
        strata_model_free(m);
        return st;
    }
    *out = m;
    return STRATA_OK;
}

void strata_model_free(strata_model *m)
{
    if (!m) return;
    engine_free(m->eng);
    acct_free(m->acct);
    free(m->resident);
    free(m->sites);
    tokenizer_free(m->tok);
    model_spec_free(m->spec);
    gguf_close(m->file);
    free(m);
}

uint32_t strata_model_n_vocab(const strata_model *m) { return engine_n_vocab(m->eng); }
uint32_t strata_model_n_ctx(const strata_model *m) { return engine_n_ctx(m->eng); }
uint32_t strata_model_n_past(const strata_model *m) { return engine_n_past(m->eng); }
uint64_t strata_model_memory_bytes(const strata_model *m) { return engine_memory_bytes(m->eng); }
void strata_model_reset(strata_model *m) { engine_reset(m->eng); }

void strata_model_get_stats(const strata_model *m, strata_model_stats *out)
{
    store_stats s = engine_store_stats(m->eng);
    *out = (strata_model_stats){.accounted_bytes = acct_used(m->acct, ACCT_RAM), .resident_bytes = s.resident_bytes,
                                .slot_bytes = s.slot_bytes, .buffer_bytes = engine_buffer_bytes(m->eng),
                                .pass_bytes = s.pass_bytes, .streamed_layers = s.n_streamed_groups,
                                .bytes_read = s.bytes_read, .read_requests = s.read_requests, .io_busy_s = s.io_busy_s,
                                .io_active_s = s.io_active_s, .io_wait_s = s.wait_s,
                                .direct_io = s.direct_io, .predicted_decode_tps = m->predicted_tps,
                                .predicted_disk_bw = m->predicted_disk_bw,
                                .predicted_measured = m->predicted_measured};
    engine_gpu_stats g = engine_get_gpu_stats(m->eng);
    out->gpu_layers = g.layers;
    out->gpu_output = g.output;
    out->gpu_bytes = g.device_bytes;
    out->gpu_peak_bytes = g.device_peak;
    out->gpu_streamed = g.streamed;
    out->gpu_prefill_streamed = g.prefill_streamed;
    out->gpu_stream_copies = g.stream_copies;
    out->gpu_name = g.name;
    out->gpu_note = g.note;
    out->experts = s.expert_units;
    out->expert_slots = s.expert_slots;
    out->expert_cache_bytes = s.expert_cache_bytes;
    out->expert_hits = s.expert_hits;
    out->expert_misses = s.expert_misses;
    out->prefetch_issued = s.prefetch_issued;
    out->prefetch_used = s.prefetch_used;
    out->prefetch_wasted = s.prefetch_wasted;
    pool_stats c = engine_cpu_stats(m->eng, &out->cpu_threads);
    out->cpu_jobs = c.jobs;
    out->cpu_job_s = c.wall_s;
    out->cpu_busy_s = c.busy_s;
    out->watchdog = s.watchdog;
    out->pressure_shrinks = s.shrinks;
    out->pressure_grows = s.grows;
    out->pressure_demoted_bytes = s.bytes_demoted;
    out->pressure_promoted_bytes = s.bytes_promoted;
    out->pressure_freed_bytes = s.bytes_freed;
    out->pressure_streamed_layers = s.demoted_groups;
    out->pressure_reaction_s = s.reaction_max_s;
    out->pressure_psi_trigger = s.psi_trigger;
    out->pressure_psi_wakeups = s.psi_wakeups;
}

bool strata_model_layer_expert_stats(const strata_model *m, uint32_t layer, strata_layer_expert_stats *out)
{
    store_expert_stats s = engine_expert_stats(m->eng, layer);
    *out = (strata_layer_expert_stats){s.hits, s.misses, s.prefetch_issued, s.prefetch_used};
    return layer < engine_n_layers(m->eng);
}

const char *strata_model_plan_summary(const strata_model *m) { return m->summary; }
bool strata_token_is_eog(const strata_model *m, int32_t token) { return tokenizer_is_eog(m->tok, token); }

/* Peak memory of tokenizing `len` bytes of text, an upper bound measured
 * on 8 MiB prompts (pieces, pre-token spans and ids of each byte). */
#define TOKENIZE_BYTES_PER_BYTE 48u
uint64_t model_tokenize_work(size_t len) { return (uint64_t)len * TOKENIZE_BYTES_PER_BYTE; }

strata_status strata_tokenize(const strata_model *m, const char *text, size_t len, bool add_bos, int32_t **tokens,
                              size_t *n, strata_error *err)
{
    return strata_tokenize_ex(m, text, len, add_bos, false, tokens, n, err);
}

size_t strata_max_token_bytes(const strata_model *m)
{
    size_t longest = 0;
    for (uint32_t id = 0; id < tokenizer_n_vocab(m->tok); id++) {
        size_t len = 0;
        tokenizer_token_text(m->tok, (int32_t)id, &len);
        if (len > longest) longest = len;
    }
    return longest;
}

strata_status strata_tokenize_ex(const strata_model *m, const char *text, size_t len, bool add_bos,
                                 bool parse_special, int32_t **tokens, size_t *n, strata_error *err)
{
    tok_encode_opts o = tokenizer_default_opts(m->tok);
    o.add_bos = add_bos && tokenizer_bos(m->tok) != TOK_NONE;
    o.parse_special = parse_special;
    tok_ids ids = {0};
    /* the work of tokenizing, taken before it is done (the returned
     * tokens are the caller's: strata_mem_take counts them) */
    uint64_t work = model_tokenize_work(len);
    strata_status st = acct_take(m->acct, ACCT_RAM, ACCT_PROMPT, work, err);
    if (st) return st;
    st = tokenizer_encode(m->tok, text, len, &o, &ids, err);
    acct_give(m->acct, ACCT_RAM, ACCT_PROMPT, work);
    if (st) {
        tok_ids_free(&ids);
        return st;
    }
    *tokens = ids.ids;
    *n = ids.n;
    return STRATA_OK;
}

strata_status strata_eval(strata_model *m, const int32_t *tokens, size_t n, float *logits, bool all_logits,
                          strata_error *err)
{
    if (n > UINT32_MAX) return err_set(err, STRATA_E_INVALID, "too many tokens");
    return engine_eval(m->eng, tokens, (uint32_t)n, logits, all_logits, err);
}

struct strata_detok {
    tok_stream *s;
};

strata_detok *strata_detok_new(const strata_model *m)
{
    strata_detok *d = calloc(1, sizeof *d);
    if (d && !(d->s = tok_stream_new(m->tok, TOK_DECODE_STRIP_SPACE))) {
        free(d);
        d = NULL;
    }
    return d;
}

const char *strata_detok_push(strata_detok *d, int32_t token, size_t *len) { return tok_stream_push(d->s, token, len); }
const char *strata_detok_finish(strata_detok *d, size_t *len) { return tok_stream_finish(d->s, len); }

void strata_detok_free(strata_detok *d)
{
    if (!d) return;
    tok_stream_free(d->s);
    free(d);
}
