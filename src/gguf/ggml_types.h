/* The ggml tensor-type table: every type id the GGUF format defines, with
 * its name, elements per block and bytes per block. */
#ifndef STRATA_GGUF_GGML_TYPES_H
#define STRATA_GGUF_GGML_TYPES_H

#include <stdbool.h>
#include <stdint.h>

enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    /* 4 (Q4_2) and 5 (Q4_3) were removed from the format */
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    /* 31..33 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) were removed from the format */
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    /* 36..38 (IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8) were removed */
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40,
};

typedef struct ggml_type_info {
    const char *name;      /* "Q4_K"; NULL for ids not defined */
    uint32_t block_elems;  /* elements per block */
    uint32_t block_bytes;  /* bytes per block */
} ggml_type_info;

/* The table entry for a type id, or NULL if the id is not a defined type. */
const ggml_type_info *ggml_type_get(uint32_t type);

/* Name of a type id ("Q4_K"), or "unknown" when not defined. */
const char *ggml_type_name(uint32_t type);

/* Looks up a type by name, case-insensitively ("q4_k" -> GGML_TYPE_Q4_K).
 * Returns false if no type has that name. */
bool ggml_type_from_name(const char *name, uint32_t *type);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block. */
uint64_t ggml_row_bytes(uint32_t type, uint64_t n);

/* Bits per weight of a type (block_bytes * 8 / block_elems). */
double ggml_type_bpw(uint32_t type);

#endif
