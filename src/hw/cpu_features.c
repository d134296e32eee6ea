/* SIMD features: of the running CPU (cpuid + OS state on x86-64, hwcaps on
 * arm64), or from the word list of /proc/cpuinfo. */
#include <string.h>

#include "hw/hw_internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

static const struct {
    uint32_t bit;
    const char *name;      /* JSON / output name */
    const char *cpuinfo;   /* word in cpuinfo flags (x86) or Features (arm64) */
} features[HW_CPU_FEATURE_COUNT] = {
    {HW_CPU_SSE42, "sse4.2", "sse4_2"},
    {HW_CPU_AVX, "avx", "avx"},
    {HW_CPU_AVX2, "avx2", "avx2"},
    {HW_CPU_FMA, "fma", "fma"},
    {HW_CPU_F16C, "f16c", "f16c"},
    {HW_CPU_AVX512F, "avx512f", "avx512f"},
    {HW_CPU_AVX512BW, "avx512bw", "avx512bw"},
    {HW_CPU_AVX512VL, "avx512vl", "avx512vl"},
    {HW_CPU_AVX512VNNI, "avx512vnni", "avx512_vnni"},
    {HW_CPU_AVX512BF16, "avx512bf16", "avx512_bf16"},
    {HW_CPU_AVXVNNI, "avxvnni", "avx_vnni"},
    {HW_CPU_NEON, "neon", "asimd"},
    {HW_CPU_DOTPROD, "dotprod", "asimddp"},
    {HW_CPU_I8MM, "i8mm", "i8mm"},
    {HW_CPU_SVE, "sve", "sve"},
};

const char *hw_cpu_feature_name(uint32_t bit)
{
    for (int i = 0; i < HW_CPU_FEATURE_COUNT; i++)
        if (features[i].bit == bit) return features[i].name;
    return NULL;
}

uint32_t hw_cpu_feature_from_name(const char *name)
{
    for (int i = 0; i < HW_CPU_FEATURE_COUNT; i++)
        if (!strcmp(features[i].name, name)) return features[i].bit;
    return 0;
}

uint32_t hw_cpu_features_from_flags(const char *flags)
{
    uint32_t f = 0;
    const char *s = flags;
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        size_t n = strcspn(s, " \t\n");
        for (int i = 0; i < HW_CPU_FEATURE_COUNT && n; i++)
            if (strlen(features[i].cpuinfo) == n && !strncmp(s, features[i].cpuinfo, n))
                f |= features[i].bit;
        s += n;
        if (*s == '\n') break;
    }
    return f;
}

#if defined(__x86_64__)
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

bool hw_cpu_features_live(uint32_t *out)
{
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    bool osxsave = c & (1u << 27);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool avx_os = (xcr0 & 0x6) == 0x6;          /* SSE and AVX state */
    bool avx512_os = avx_os && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    if (c & (1u << 20)) f |= HW_CPU_SSE42;
    if (avx_os) {
        if (c & (1u << 28)) f |= HW_CPU_AVX;
        if (c & (1u << 12)) f |= HW_CPU_FMA;
        if (c & (1u << 29)) f |= HW_CPU_F16C;
    }
    if (max_leaf >= 7 && avx_os) {
        __cpuid_count(7, 0, a, b, c, d);
        unsigned subleaves = a;
        if (b & (1u << 5)) f |= HW_CPU_AVX2;
        if (avx512_os) {
            if (b & (1u << 16)) f |= HW_CPU_AVX512F;
            if (b & (1u << 30)) f |= HW_CPU_AVX512BW;
            if (b & (1u << 31)) f |= HW_CPU_AVX512VL;
            if (c & (1u << 11)) f |= HW_CPU_AVX512VNNI;
        }
        if (subleaves >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if (a & (1u << 4)) f |= HW_CPU_AVXVNNI;
            if (avx512_os && (a & (1u << 5))) f |= HW_CPU_AVX512BF16;
        }
    }
    *out = f;
    return true;
}
#elif defined(__aarch64__)
bool hw_cpu_features_live(uint32_t *out)
{
    /* Linux arm64 hwcap bits (Documentation/arch/arm64/elf_hwcaps). */
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    uint32_t f = 0;
    if (hw & (1ul << 1)) f |= HW_CPU_NEON;     /* HWCAP_ASIMD */
    if (hw & (1ul << 20)) f |= HW_CPU_DOTPROD; /* HWCAP_ASIMDDP */
    if (hw & (1ul << 22)) f |= HW_CPU_SVE;     /* HWCAP_SVE */
    if (hw2 & (1ul << 13)) f |= HW_CPU_I8MM;   /* HWCAP2_I8MM */
    *out = f;
    return true;
}
#else
bool hw_cpu_features_live(uint32_t *out)
{
    (void)out;
    return false;
}
#endif
