/* Fast kernel registry: the best kernel for the running CPU per type.
 *
 * The choice is made once, at the first kernel_fast call (pthread_once, so
 * concurrent first calls are safe): the CPU's features (cpu_features.c)
 * limit the instruction sets, and the environment variable STRATA_KERNELS
 * may narrow them — "scalar" forces the reference kernels, "avx2" caps the
 * choice at AVX2, "avx512" at AVX-512 (the A/B of the two on one machine),
 * "auto" (or unset / empty) takes the best. Any other value,
 * or an instruction set this CPU lacks, prints one warning on stderr and
 * uses the reference kernels: a typo must not silently benchmark the wrong
 * path. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"

/* Internal interface (kernels.c, tests/test_kernels.c). */
typedef enum kernel_isa { KERNEL_ISA_SCALAR = 0, KERNEL_ISA_AVX2 = 1, KERNEL_ISA_AVX512 = 2 } kernel_isa;
const kernel_desc *kernel_fast(uint32_t weight_type);
kernel_isa kernel_fast_isa(const char *env, const kernel_cpu_features *cpu, const char **warning);
const kernel_desc *kernel_fast_lookup(uint32_t weight_type, kernel_isa isa);

static const kernel_desc avx2_kernels[] = {
    {GGML_TYPE_F32, GGML_TYPE_F32, kernel_dot_f32_avx2, NULL, NULL, "avx2"},
    {GGML_TYPE_F16, GGML_TYPE_F32, kernel_dot_f16_avx2, NULL, NULL, "avx2"},
    {GGML_TYPE_BF16, GGML_TYPE_F32, kernel_dot_bf16_avx2, NULL, NULL, "avx2"},
    {GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, kernel_dot_q8_0_avx2, kernel_dot_rows_q8_0_avx2,
     kernel_dot_tile_q8_0_avx2, "avx2"},
    {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, kernel_dot_q4_0_avx2, kernel_dot_rows_q4_0_avx2, NULL, "avx2"},
    {GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, kernel_dot_q4_1_avx2, kernel_dot_rows_q4_1_avx2, NULL, "avx2"},
    {GGML_TYPE_Q5_0, GGML_TYPE_Q8_0, kernel_dot_q5_0_avx2, kernel_dot_rows_q5_0_avx2, NULL, "avx2"},
    {GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, kernel_dot_q5_1_avx2, kernel_dot_rows_q5_1_avx2, NULL, "avx2"},
    {GGML_TYPE_IQ4_NL, GGML_TYPE_Q8_0, kernel_dot_iq4_nl_avx2, kernel_dot_rows_iq4_nl_avx2, NULL, "avx2"},
    {GGML_TYPE_Q2_K, GGML_TYPE_Q8_K, kernel_dot_q2_k_avx2, kernel_dot_rows_q2_k_avx2, NULL, "avx2"},
    {GGML_TYPE_Q3_K, GGML_TYPE_Q8_K, kernel_dot_q3_k_avx2, kernel_dot_rows_q3_k_avx2, NULL, "avx2"},
    {GGML_TYPE_Q4_K, GGML_TYPE_Q8_K, kernel_dot_q4_k_avx2, kernel_dot_rows_q4_k_avx2,
     kernel_dot_tile_q4_k_avx2, "avx2"},
    {GGML_TYPE_Q5_K, GGML_TYPE_Q8_K, kernel_dot_q5_k_avx2, kernel_dot_rows_q5_k_avx2,
     kernel_dot_tile_q5_k_avx2, "avx2"},
    {GGML_TYPE_Q6_K, GGML_TYPE_Q8_K, kernel_dot_q6_k_avx2, kernel_dot_rows_q6_k_avx2,
     kernel_dot_tile_q6_k_avx2, "avx2"},
    {GGML_TYPE_IQ4_XS, GGML_TYPE_Q8_K, kernel_dot_iq4_xs_avx2, NULL, NULL, "avx2"},
};

/* AVX-512 (F/BW/VL/DQ + VNNI): tile kernels for prompt batches, which are
 * compute-bound. The Q8_0, Q4_0 and Q5_K descs keep the AVX2 dot and their
 * tile kernels give the AVX2 dot's results bit for bit (avx512_util.h);
 * Q5_K's decode (dot_rows) runs its tile kernel with one token, AVX2's bits
 * at fewer cycles per byte (dot_rows_avx512.c); Q8_0 and Q4_0 keep AVX2's
 * dot_rows. Q4_K and Q6_K (most of a Q4_K_M model) have tile kernels with
 * weight rows in the vector lanes and a dot in the same order of float
 * sums (lanes_avx512.h), which decode runs row by row. F16, BF16 and IQ4_XS have AVX-512 dot kernels of
 * their own (one row at a time; IQ4_XS's give AVX2's bits, the float
 * types' sum 16 lanes). Q4_1, Q5_0, Q5_1 and IQ4_NL have dot and dot_rows
 * with two blocks per vector, Q2_K and Q3_K with two groups of 32 quants
 * per vector, all with AVX2's bits. Types not listed use their AVX2
 * kernel. */
static const kernel_desc avx512_kernels[] = {
    {GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, kernel_dot_q8_0_avx2, kernel_dot_rows_q8_0_avx2,
     kernel_dot_tile_q8_0_avx512, "avx512"},
    {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, kernel_dot_q4_0_avx2, kernel_dot_rows_q4_0_avx2,
     kernel_dot_tile_q4_0_avx512, "avx512"},
    {GGML_TYPE_Q4_K, GGML_TYPE_Q8_K, kernel_dot_q4_k_avx512, NULL,
     kernel_dot_tile_q4_k_avx512, "avx512"},
    {GGML_TYPE_Q5_K, GGML_TYPE_Q8_K, kernel_dot_q5_k_avx2, kernel_dot_rows_q5_k_avx512,
     kernel_dot_tile_q5_k_avx512, "avx512"},
    {GGML_TYPE_Q6_K, GGML_TYPE_Q8_K, kernel_dot_q6_k_avx512, NULL,
     kernel_dot_tile_q6_k_avx512, "avx512"},
    {GGML_TYPE_F16, GGML_TYPE_F32, kernel_dot_f16_avx512, NULL, NULL, "avx512"},
    {GGML_TYPE_BF16, GGML_TYPE_F32, kernel_dot_bf16_avx512, NULL, NULL, "avx512"},
    {GGML_TYPE_IQ4_XS, GGML_TYPE_Q8_K, kernel_dot_iq4_xs_avx512, NULL, NULL, "avx512"},
    {GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, kernel_dot_q4_1_avx512, kernel_dot_rows_q4_1_avx512, NULL, "avx512"},
    {GGML_TYPE_Q5_0, GGML_TYPE_Q8_0, kernel_dot_q5_0_avx512, kernel_dot_rows_q5_0_avx512, NULL, "avx512"},
    {GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, kernel_dot_q5_1_avx512, kernel_dot_rows_q5_1_avx512, NULL, "avx512"},
    {GGML_TYPE_IQ4_NL, GGML_TYPE_Q8_0, kernel_dot_iq4_nl_avx512, kernel_dot_rows_iq4_nl_avx512, NULL, "avx512"},
    {GGML_TYPE_Q2_K, GGML_TYPE_Q8_K, kernel_dot_q2_k_avx512, kernel_dot_rows_q2_k_avx512, NULL, "avx512"},
    {GGML_TYPE_Q3_K, GGML_TYPE_Q8_K, kernel_dot_q3_k_avx512, kernel_dot_rows_q3_k_avx512, NULL, "avx512"},
};

/* The instruction set to use for an STRATA_KERNELS value on a CPU; sets
 * *warning (else NULL) to a message when the value is not honoured. */
kernel_isa kernel_fast_isa(const char *env, const kernel_cpu_features *cpu, const char **warning)
{
    *warning = NULL;
    kernel_isa best = cpu->avx512_vnni     ? KERNEL_ISA_AVX512
                      : cpu->avx2_fma_f16c ? KERNEL_ISA_AVX2
                                           : KERNEL_ISA_SCALAR;
    if (!env || !*env || !strcmp(env, "auto")) return best;
    if (!strcmp(env, "scalar")) return KERNEL_ISA_SCALAR;
    if (!strcmp(env, "avx2")) {
        if (best >= KERNEL_ISA_AVX2) return KERNEL_ISA_AVX2;
        *warning = "this CPU lacks AVX2/FMA/F16C; using the scalar reference kernels";
        return KERNEL_ISA_SCALAR;
    }
    if (!strcmp(env, "avx512")) {
        if (best >= KERNEL_ISA_AVX512) return KERNEL_ISA_AVX512;
        *warning = "this CPU lacks AVX-512 F/BW/VL/DQ/VNNI; using the scalar reference kernels";
        return KERNEL_ISA_SCALAR;
    }
    *warning = "unknown value (expected auto, scalar, avx2 or avx512); using the scalar reference kernels";
    return KERNEL_ISA_SCALAR;
}

/* The kernel of a type for an instruction set, NULL when there is none
 * faster than the reference. */
const kernel_desc *kernel_fast_lookup(uint32_t weight_type, kernel_isa isa)
{
    if (isa < KERNEL_ISA_AVX2) return NULL;
    if (isa >= KERNEL_ISA_AVX512)
        for (size_t i = 0; i < sizeof avx512_kernels / sizeof avx512_kernels[0]; i++)
            if (avx512_kernels[i].weight_type == weight_type) return &avx512_kernels[i];
    for (size_t i = 0; i < sizeof avx2_kernels / sizeof avx2_kernels[0]; i++)
        if (avx2_kernels[i].weight_type == weight_type) return &avx2_kernels[i];
    return NULL;
}

static kernel_isa chosen_isa;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    const char *env = getenv("STRATA_KERNELS"), *warning;
    chosen_isa = kernel_fast_isa(env, kernel_cpu_features_get(), &warning);
    if (warning) fprintf(stderr, "strata: warning: STRATA_KERNELS=%s: %s\n", env, warning);
}

const kernel_desc *kernel_fast(uint32_t weight_type)
{
    pthread_once(&choose_once, choose);
    return kernel_fast_lookup(weight_type, chosen_isa);
}
