#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/swiglu.h"

void swiglu_avx2(float *gate, const float *up, uint64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    swiglu_ref(gate + i, up + i, n - i);
}
