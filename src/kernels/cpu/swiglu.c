#include "kernels/cpu/swiglu.h"

#include <math.h>

#include "kernels/cpu/cpu_features.h"

void swiglu_ref(float *gate, const float *up, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

swiglu_fn swiglu_get(bool fast)
{
    return fast && kernel_cpu_features_get()->avx2_fma_f16c ? swiglu_avx2 : swiglu_ref;
}
