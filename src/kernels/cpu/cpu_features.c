/* cpuid / xgetbv check for the kernels (see cpu_features.h). */
#include "kernels/cpu/cpu_features.h"

#include <pthread.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0: the register state the OS saves. xgetbv is written as inline asm
 * because the _xgetbv intrinsic needs -mxsave, and this file is compiled
 * for baseline x86-64. */
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

#define XCR0_SSE_AVX 0x06u     /* XMM and YMM state */
#define XCR0_AVX512 0xe0u      /* opmask, ZMM_Hi256, Hi16_ZMM state */

static void detect(kernel_cpu_features *f)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
    if (!osxsave || !avx) return;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & XCR0_SSE_AVX) != XCR0_SSE_AVX) return;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = b >> 5 & 1;
    bool avx512 = (b >> 16 & 1) && (b >> 17 & 1) && (b >> 30 & 1) && (b >> 31 & 1); /* F DQ BW VL */
    f->avx2_fma_f16c = avx2 && fma && f16c;
    f->avx512 = f->avx2_fma_f16c && avx512 && (xcr0 & XCR0_AVX512) == XCR0_AVX512;
    f->avx512_vnni = f->avx512 && (c >> 11 & 1); /* leaf 7 ECX bit 11: AVX512_VNNI */
}
#else
static void detect(kernel_cpu_features *f) { (void)f; }
#endif

static kernel_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect_once(void) { detect(&features); }

const kernel_cpu_features *kernel_cpu_features_get(void)
{
    pthread_once(&features_once, detect_once);
    return &features;
}
