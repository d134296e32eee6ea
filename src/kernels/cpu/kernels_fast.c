/* Fast kernel registry. No SIMD kernels yet: every type uses the reference. */
#include <stddef.h>

#include "kernels/cpu/kernels.h"

const kernel_desc *kernel_fast(uint32_t weight_type);

const kernel_desc *kernel_fast(uint32_t weight_type)
{
    (void)weight_type;
    return NULL;
}
