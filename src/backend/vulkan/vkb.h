/* A Vulkan compute device for the forward pass (the GPU back end's device
 * layer). libvulkan.so.1 is loaded at run time, so a machine without a
 * Vulkan loader or device runs on the CPU; the real Vulkan headers are used
 * (VK_NO_PROTOTYPES). Shaders are GLSL compiled to SPIR-V at build time by
 * glslc and embedded in the binary.
 *
 * Environment, read at vkb_open (for measurements and tests):
 *   STRATA_VK_SUBGROUP=0      shared-memory reductions instead of subgroup ones
 *   STRATA_VK_MV_ROWS, _WG, _UNROLL   the one-token product's shape
 *   STRATA_VK_TILED=0         no tiled path for batches
 *   STRATA_VK_PROFILE=1       device time per shader on stderr at vkb_close
 *   STRATA_VK_FAIL_ABOVE=N    device allocations fail above N bytes (vkb_fail_above)
 *
 * Buffers are addressed by their device address (buffer device address):
 * every op takes 64-bit addresses (vkb_addr(buf) + byte offset) and sizes
 * in push constants, so there are no descriptor sets to manage.
 *
 * Ops are recorded into one command buffer between vkb_begin and vkb_run;
 * vkb_barrier orders an op after the ones recorded before it (ops between
 * two barriers may run concurrently, so they must not touch the same
 * memory). All activations are f32; the KV cache is f16.
 *
 * Ops return nothing: one called with arguments its shader cannot take
 * (listed with each op), or outside vkb_begin .. vkb_run, records nothing
 * and the next vkb_run fails with that one-line message, submitting nothing.
 * Addresses of f32 data must be 4-byte aligned, of f16 / weight data
 * 2-byte aligned; each array an op indexes holds fewer than 2^32 elements.
 * A vkb is used by one thread at a time. */
#ifndef STRATA_BACKEND_VULKAN_VKB_H
#define STRATA_BACKEND_VULKAN_VKB_H

#include <stdbool.h>
#include <stdint.h>

#include "strata.h"

typedef struct vkb vkb;
typedef struct vkb_buf vkb_buf;

typedef struct vkb_info {
    char name[256];
    uint32_t vendor_id, device_id;
    bool is_cpu;              /* a software device (lavapipe) */
    bool subgroup_arith;      /* the shaders' subgroup-arithmetic variants are used
                                 (device support, unless STRATA_VK_SUBGROUP=0);
                                 else shared-memory reductions */
    uint64_t heap_bytes;      /* the device-local heap */
    uint64_t budget_bytes;    /* VK_EXT_memory_budget's heapBudget at open, else the
                                 heap minus max(10 %, 256 MiB), at most half */
} vkb_info;

/* What the vkb has done since it was opened: the counts a decoded token
 * costs are differences of two of these. */
typedef struct vkb_stats {
    uint64_t dispatches;   /* compute dispatches recorded */
    uint64_t barriers;     /* pipeline barriers recorded (vkb_barrier and the layer's own) */
    uint64_t push_consts;  /* push-constant updates (one per dispatch) */
    uint64_t staged;       /* copies recorded by vkb_stage_upload / vkb_stage_download / vkb_copy */
    uint64_t submits;      /* queue submissions: vkb_run, vkb_run_async and each vkb_upload / vkb_download chunk */
    uint64_t waits;        /* host waits on a fence */
    uint64_t runs;         /* vkb_run / vkb_run_async calls that submitted */
} vkb_stats;

/* Opens device `index` of the loader's list, or with index < 0 the first
 * discrete, then integrated (then virtual, other) GPU; a software device
 * (lavapipe) only when allow_cpu, also when asked for by index. Fails with
 * STRATA_E_UNSUPPORTED and a one-line reason (no loader, no device, no
 * device `index`, Vulkan < 1.2, no storageBuffer16BitAccess or
 * bufferDeviceAddress). The loader and one VkInstance are made on the first
 * call and kept for the life of the process (drivers keep process-wide
 * state; Mesa's leaks when unloaded). */
strata_status vkb_open(int index, bool allow_cpu, vkb **out, strata_error *err);
/* What vkb_open(index, allow_cpu) would open, without opening it: the
 * device's info (name, type, heap, budget) and its index in the loader's
 * list (*phys_index); the same errors. The loader and instance are kept
 * for the vkb_open that follows. */
strata_status vkb_peek(int index, bool allow_cpu, vkb_info *out, int *phys_index, strata_error *err);
void vkb_close(vkb *v); /* also frees the buffers still allocated; NULL is a no-op */
const vkb_info *vkb_get_info(const vkb *v);

/* ---- memory ---- */

/* Device-local (host_visible false) or host-visible coherent memory, one
 * VkDeviceMemory each (allocate few large buffers: drivers cap the count,
 * 4096 on NVIDIA). A device-local buffer that would take vkb_device_bytes
 * over budget_bytes fails with STRATA_E_NOMEM before asking the driver; any
 * failure is an error naming the size, not a crash. 0 bytes is invalid. */
strata_status vkb_alloc(vkb *v, uint64_t bytes, bool host_visible, vkb_buf **out, strata_error *err);
void vkb_free(vkb *v, vkb_buf *b);
uint64_t vkb_addr(const vkb_buf *b);
uint64_t vkb_size(const vkb_buf *b);
void *vkb_map(vkb_buf *b);            /* host-visible buffers only, else NULL */
/* Device-local bytes of the caller's buffers now (the layer's own 128 KiB
 * GELU table and 16 MiB host-visible staging, vkb_own_host_bytes, are not
 * counted). */
uint64_t vkb_device_bytes(const vkb *v);
/* Host-visible bytes the layer holds for itself (its copy staging): RAM
 * the caller's memory account should count. */
uint64_t vkb_own_host_bytes(const vkb *v);
/* The most vkb_device_bytes has been since vkb_open. */
uint64_t vkb_device_peak(const vkb *v);
/* Device-local allocations (vkb_alloc) fail with STRATA_E_NOMEM, before
 * asking the driver, once they would take vkb_device_bytes over `bytes`
 * when that is below budget_bytes (--gpu-mem; 0: no cap). */
void vkb_set_cap(vkb *v, uint64_t bytes);
/* Tests: device-local allocations of the caller (vkb_alloc) fail as the
 * driver's out-of-memory would once they would take vkb_device_bytes over
 * `bytes` (UINT64_MAX: never, the default). STRATA_VK_FAIL_ABOVE=BYTES in
 * the environment at vkb_open sets the same. */
void vkb_fail_above(vkb *v, uint64_t bytes);
void vkb_get_stats(const vkb *v, vkb_stats *out);

/* Host <-> device copies through an internal staging buffer (two 8 MiB
 * halves: large copies go in chunks, the host filling or draining one half
 * while the device copies the other); they block, are ordered after the
 * last vkb_run's ops, and must not be called between vkb_begin and vkb_run.
 * A range outside the buffer is STRATA_E_INVALID. */
strata_status vkb_upload(vkb *v, vkb_buf *dst, uint64_t off, const void *src, uint64_t n, strata_error *err);
strata_status vkb_download(vkb *v, const vkb_buf *src, uint64_t off, void *dst, uint64_t n, strata_error *err);

/* ---- recording ---- */

/* Starts recording (discarding anything recorded and not run). */
void vkb_begin(vkb *v);
void vkb_barrier(vkb *v);
/* Submits what was recorded and waits; device loss or a timeout (120 s) is
 * an error, after which the vkb can only be closed. Host-visible buffers
 * written by the ops can be read through vkb_map when it returns, and the
 * staged downloads are in their destinations.
 *
 * With STRATA_VK_PROFILE=1 in the environment at vkb_open, a timestamp is
 * written after every dispatch and vkb_close prints the device time per
 * shader to stderr (this serializes the dispatches: a diagnosis, not a
 * speed). */
strata_status vkb_run(vkb *v, strata_error *err);
/* Submits what was recorded without waiting: *ticket names the submission
 * (the queue finishes submissions in order). The next vkb_begin records
 * into another command buffer (up to 8 submissions in flight; it waits
 * for the oldest beyond that). Staged uploads of a recording in flight
 * stay valid; staged downloads land once every submission has finished
 * (vkb_run, or vkb_wait of the last ticket). With STRATA_VK_PROFILE=1 it
 * waits (timestamps are per recording). vkb_wait: the host waits until
 * submission `ticket` (and those before it) finished; same errors as
 * vkb_run. */
strata_status vkb_run_async(vkb *v, uint64_t *ticket, strata_error *err);
strata_status vkb_wait(vkb *v, uint64_t ticket, strata_error *err);

/* A device-side copy of n bytes from src + src_off to dst + dst_off (a
 * host-visible staging buffer into device memory, say: the host writes the
 * staging before the submission), ordered after the ops recorded before
 * it. The ops recorded after it do not wait for it until vkb_copy_barrier,
 * so a copy overlaps the dispatches between the two (the next layer's
 * weights arriving while this layer computes). */
void vkb_copy(vkb *v, const vkb_buf *src, uint64_t src_off, vkb_buf *dst, uint64_t dst_off, uint64_t n);
void vkb_copy_barrier(vkb *v);

/* Copies recorded in the command buffer, so a token's input and output need
 * no submission of their own: vkb_stage_upload copies n bytes of src now
 * into host-visible staging, and the device copies them into dst + off when
 * the recording runs, ordered with the ops before and after it;
 * vkb_stage_download copies src + off to host memory dst when the recording
 * runs (dst is written by vkb_run). False, recording nothing, when not
 * recording or the staging (8 MiB each way per recording) is full: then
 * use vkb_upload / vkb_download around vkb_run. */
bool vkb_stage_upload(vkb *v, vkb_buf *dst, uint64_t off, const void *src, uint64_t n);
bool vkb_stage_download(vkb *v, const vkb_buf *src, uint64_t off, void *dst, uint64_t n);

/* ---- ops (addresses are device addresses; f32 unless stated) ---- */

/* True when vkb_matmul has a shader for weights of this ggml type. */
bool vkb_matmul_supported(uint32_t ggml_type);
/* The same for rows of n_in elements (a whole number of the shader's blocks). */
bool vkb_matmul_supported_rows(uint32_t ggml_type, uint32_t n_in);
/* y[t][r] = sum_i W[r][i] * x[t][i] for r < n_out, t < n_tok: W is n_out
 * rows of n_in elements of `type` packed as in GGUF (row r at w + r *
 * row_bytes); x is [n_tok][n_in], y [n_tok][n_out]. Types: F32, F16, BF16,
 * Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, dot products in f32 over
 * the CPU's dequantized values (dequant_row); Q4_K and Q6_K for one token
 * factor the block scales out of the sums (sc * sum(q x) - m * sum(x)), as
 * GPU kernels do, which rounds differently in the last bits. n_in must be
 * a multiple of the block (32, 256; 8 for the float types). */
void vkb_matmul(vkb *v, uint32_t type, uint64_t w, uint64_t x, uint64_t y, uint32_t n_in, uint32_t n_out,
                uint32_t n_tok);

/* The matrix-vector product of one token with the neighbouring ops fused
 * in, one dispatch (decode):
 *   input   x, or with norm_w its RMS norm x * (1/sqrt(mean(x^2) + eps)) *
 *           norm_w (the norm's scale applied to the sums); with xn also
 *           written to xn (n_in floats);
 *   rows    y[r] = W[r] . in; with acc y[r] += W[r] . in (the residual
 *           add), and aux[r] = W[r] . in when aux;
 *   glu     with up (rows of the same type and shape): y[r] =
 *           act(W[r] . in) * (Up[r] . in), aux[r] = Up[r] . in when aux;
 *           act SiLU, or with gelu vkb_glu's GELU.
 * y, aux and xn must not overlap x or each other. Types as vkb_matmul. */
typedef struct vkb_mv {
    uint32_t type;
    uint64_t w, up, x, y, aux, norm_w, xn; /* up, aux, norm_w, xn: 0 when unused */
    uint32_t n_in, n_out;
    float eps;
    bool acc, gelu;
} vkb_mv;
void vkb_matvec(vkb *v, const vkb_mv *m);
/* True when vkb_matvec runs this type fused in one dispatch. */
bool vkb_matvec_supported(uint32_t ggml_type, uint32_t n_in);
/* Builds now the pipelines the ops would build on first use: those of
 * every op and, for each of the n weight types, of every matmul path (a
 * GPU driver compiles for tens of milliseconds each; done at load, the
 * first tokens do not wait for it). Not between vkb_begin and vkb_run. */
strata_status vkb_prepare(vkb *v, const uint32_t *types, int n, strata_error *err);

/* y[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w for n_rows rows of n
 * (y may be x). */
void vkb_rmsnorm(vkb *v, uint64_t x, uint64_t w, uint64_t y, uint32_t n, uint32_t n_rows, float eps);
/* The same, then acc[r] += y[r] (Gemma's post-norms before the residual
 * add; acc must not overlap x or y). */
void vkb_rmsnorm_add(vkb *v, uint64_t x, uint64_t w, uint64_t y, uint64_t acc, uint32_t n, uint32_t n_rows,
                     float eps);
/* y += x over n floats. */
void vkb_add(vkb *v, uint64_t y, uint64_t x, uint32_t n);
/* y[r] += b for n_rows rows of n. */
void vkb_add_rows(vkb *v, uint64_t y, uint64_t b, uint32_t n, uint32_t n_rows);
/* x *= s over n floats. */
void vkb_scale(vkb *v, uint64_t x, float s, uint32_t n);
/* Rotates n_heads heads of each of n_tok rows in place: head h of token t
 * starts at x + (t * row_stride + h * head_dim) floats; cs is [n_tok][rope_dim]
 * (cos, sin) per pair; pairs (2i, 2i+1), or (i, i + rope_dim/2) with neox;
 * dims from rope_dim on are untouched. a' = a*c - b*s, b' = a*s + b*c,
 * unfused: the CPU's op_rope bit for bit. rope_dim even, <= head_dim. */
void vkb_rope(vkb *v, uint64_t x, uint64_t cs, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim,
              uint32_t rope_dim, uint32_t row_stride, bool neox);
/* gate[i] = act(gate[i]) * up[i]: SiLU (x / (1 + exp(-x))), or with gelu
 * the tanh GELU of the input rounded to f16, result rounded to f16: bit for
 * bit the CPU's geglu_f16 (a table of all 65536 f16 inputs, built on the
 * host by the CPU's gelu_tanh, is looked up on the device). */
void vkb_glu(vkb *v, uint64_t gate, uint64_t up, uint32_t n, bool gelu);
/* Stores K or V rows of n_tok tokens into an f16 cache laid out
 * [n_kv_heads][kv_len][head_dim]: token t's head g (src + t * n_kv_heads *
 * head_dim + g * head_dim floats) goes to slot (slot0 + t) mod kv_len (a
 * ring: a window layer's cache holds its last kv_len positions), rounded
 * to nearest even in integer arithmetic: the CPU's f32_to_fp16. n_tok <=
 * kv_len. */
void vkb_kv_store(vkb *v, uint64_t src, uint64_t cache, uint32_t n_tok, uint32_t n_kv_heads, uint32_t head_dim,
                  uint32_t kv_len, uint32_t slot0);
/* vkb_rope of q (n_heads heads, rows of q_stride floats) and k (n_kv_heads,
 * rows of kv_stride = n_kv_heads * head_dim floats) in place, then
 * vkb_kv_store of k and v (rows of kv_stride) into k_cache and v_cache:
 * the same values, one dispatch. */
typedef struct vkb_rope_kv {
    uint64_t q, k, v, cs, k_cache, v_cache;
    uint32_t n_tok, n_heads, n_kv_heads, head_dim, rope_dim, q_stride, kv_len, slot0;
    bool neox;
} vkb_rope_kv;
void vkb_rope_kv_store(vkb *v, const vkb_rope_kv *r);
/* Causal grouped-query attention of n_tok tokens at positions pos0 + t:
 * q [n_tok][n_heads * head_dim], caches as in vkb_kv_store (f16), out like q.
 * Query head h reads KV head h / (n_heads / n_kv_heads). Token t sees
 * positions first..pos with pos = pos0 + t and first = 0, or with a window
 * (n_swa > 0) max(0, pos + 1 - n_swa); position p is at slot
 * (p - slot_base) mod kv_len (so first >= slot_base, and the positions the
 * batch sees, token 0's first to pos0 + n_tok - 1, are at most kv_len).
 * Scores are scaled by `scale`, softmax in f32 (streaming: one workgroup
 * per token and query head, no scratch memory). head_dim <= 512; n_heads a
 * multiple of n_kv_heads. */
typedef struct vkb_attn {
    uint64_t q, k_cache, v_cache, out;
    uint32_t n_tok, n_heads, n_kv_heads, head_dim, kv_len;
    uint32_t pos0, n_swa, slot_base;
    float scale;
} vkb_attn;
void vkb_attention(vkb *v, const vkb_attn *a);

/* Mixture of experts: the rows routed to the experts gathered in expert
 * order, dst[p] = src[rows[p]] for n_rows rows of n floats (rows: uint32
 * row indices of src). */
void vkb_moe_gather(vkb *v, uint64_t dst, uint64_t src, uint64_t rows, uint32_t n, uint32_t n_rows);
/* Each token's weighted sum of its experts' outputs, then its shared
 * expert's output (scaled by sigmoid(gate[t]) when gate):
 *   out[t][i] = sum_j wt[t k + j] * y[pos[t k + j]][i] (+ s_t shared[t][i])
 * summed in the order of the token's k entries; rows of n floats; pos
 * uint32; shared, gate 0 when absent; out must not overlap y or shared. */
typedef struct vkb_moe_sum {
    uint64_t out, y, pos, wt, shared, gate;
    uint32_t n, k, n_tok;
} vkb_moe_sum;
void vkb_moe_combine(vkb *v, const vkb_moe_sum *m);

/* ---- measuring ---- */

/* Opens device `index` (software devices too) and times the one-token
 * product over `bytes` of weights (capped at a quarter of the budget, at
 * 16 MiB on a software device):
 * *read_bw the F16 weight bytes read per second (the device memory's read
 * bandwidth as shaders see it), *q4_k_bw the same for Q4_K weights;
 * *mm_flops the FLOP/s of vkb_matmul over Q4_K weights (8192 rows of 4096,
 * 64 on a software device) for a prompt batch of 512 tokens;
 * *round_trip_s the median seconds of reading 512 bytes back (submit,
 * copy, wait: what a MoE layer's routing costs the GPU beyond its ops). */
strata_status vkb_measure_reads(int index, uint64_t bytes, double *read_bw, double *q4_k_bw, double *mm_flops,
                                double *round_trip_s, strata_error *err);

#endif
