/* The SIMD features the CPU kernels can use, read once from cpuid and the
 * OS-enabled register state (xgetbv): an instruction set counts only when the
 * CPU has it AND the OS saves its registers on context switches. Kept apart
 * from src/hw (which describes the machine for the planner) so the kernels
 * depend on nothing but this check. */
#ifndef STRATA_KERNELS_CPU_CPU_FEATURES_H
#define STRATA_KERNELS_CPU_CPU_FEATURES_H

#include <stdbool.h>

typedef struct kernel_cpu_features {
    bool avx2_fma_f16c; /* AVX2 + FMA + F16C, YMM state enabled: the *_avx2.c files */
    bool avx512;        /* AVX-512 F/BW/VL/DQ, ZMM state enabled */
    bool avx512_vnni;   /* avx512 plus AVX512-VNNI: what the *_avx512.c files need */
} kernel_cpu_features;

/* The features of the running CPU (detected at the first call, cached;
 * thread-safe). */
const kernel_cpu_features *kernel_cpu_features_get(void);

#endif
