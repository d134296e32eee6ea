/* Unit tests of the hardware probe's parsers on strings. */
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"
#include "test.h"

TEST(test_hw_parse_numbers)
{
    uint64_t v = 0;
    CHECK(hw_parse_u64("0", &v) && v == 0);
    CHECK(hw_parse_u64(" 18446744073709551615\n", &v) && v == UINT64_MAX);
    CHECK(!hw_parse_u64("18446744073709551616", &v), "overflow must be rejected");
    CHECK(!hw_parse_u64("-1", &v));
    CHECK(!hw_parse_u64("12abc", &v));
    CHECK(!hw_parse_u64("", &v));
    uint32_t h = 0;
    CHECK(hw_parse_hex32("0x1002", &h) && h == 0x1002);
    CHECK(hw_parse_hex32("73BF\n", &h) && h == 0x73bf);
    CHECK(!hw_parse_hex32("0x123456789", &h), "more than 32 bits");
    CHECK(!hw_parse_hex32("0xZZ", &h));
    CHECK(hw_parse_size_suffix("32K", &v) && v == 32768);
    CHECK(hw_parse_size_suffix("512 KB", &v) && v == 512 * 1024);
    CHECK(hw_parse_size_suffix("32768K\n", &v) && v == 32u << 20);
    CHECK(hw_parse_size_suffix("2MiB", &v) && v == 2u << 20);
    CHECK(!hw_parse_size_suffix("512Q", &v));
    CHECK(!hw_parse_size_suffix("99999999999999999999K", &v));
    CHECK(!hw_mul_u64(1ull << 40, 1ull << 40, &v));
    char buf[8];
    hw_copy_clean(buf, sizeof buf, "  a\x1b[b\x7f long text");
    CHECK(!strcmp(buf, "a?[b? l"), "got '%s'", buf);
}

TEST(test_hw_parse_meminfo)
{
    hw_memory m;
    hw_profile *p = calloc(1, sizeof *p);
    REQUIRE(p);
    memset(&m, 0, sizeof m);
    CHECK(hw_meminfo_parse("MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    600 kB\n"
                           "SwapTotal:  100 kB\nSwapFree:   40 kB\n",
                           &m, p));
    CHECK(m.total == 1024000 && m.available == 614400, "total %llu available %llu",
          (unsigned long long)m.total, (unsigned long long)m.available);
    CHECK(m.swap_total == 102400 && m.swap_free == 40960);
    CHECK(p->n_warnings == 0);

    memset(&m, 0, sizeof m);
    CHECK(hw_meminfo_parse("MemTotal: 100 kB\nMemAvailable: 200 kB\n", &m, p));
    CHECK(m.available == m.total, "available is clamped to total");
    CHECK(p->n_warnings >= 1);

    memset(&m, 0, sizeof m);
    CHECK(!hw_meminfo_parse("MemTotal: lots kB\n", &m, p), "a bad MemTotal is not a memory size");
    CHECK(m.total == 0 && m.available == 0);
    memset(&m, 0, sizeof m);
    CHECK(!hw_meminfo_parse("MemTotal: 99999999999999999999 kB\n", &m, p));
    CHECK(!hw_meminfo_parse("MemTotal: 18014398509481984 kB\n", &m, p), "kB to bytes overflows");
    CHECK(!hw_meminfo_parse("", &m, p));
    free(p);
}

TEST(test_hw_parse_thp)
{
    char mode[16];
    CHECK(hw_thp_parse("always [madvise] never\n", mode, sizeof mode) && !strcmp(mode, "madvise"));
    CHECK(hw_thp_parse("[always] madvise never", mode, sizeof mode) && !strcmp(mode, "always"));
    CHECK(!hw_thp_parse("always madvise never", mode, sizeof mode));
    CHECK(!hw_thp_parse("[] always", mode, sizeof mode));
    CHECK(!hw_thp_parse("[MADVISE!]", mode, sizeof mode));
    CHECK(!hw_thp_parse("[madvise", mode, sizeof mode));
}

static bool count_cb(const hw_mount *m, void *ctx)
{
    (void)m;
    (*(int *)ctx)++;
    return true;
}

TEST(test_hw_parse_mountinfo)
{
    const char *text =
        "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
        "27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
        "45 27 0:40 / /home/u/my\\040models rw shared:40 shared:41 - tmpfs tmpfs rw\n"
        "garbage line\n"
        "46 27 8:1 / /home rw - xfs /dev/sda1 rw\n"
        "47 27 8:2 / /home rw - btrfs /dev/sda2 rw\n";
    int n = 0, bad = 0;
    CHECK(hw_mountinfo_parse(text, count_cb, &n, &bad) == 5 && n == 5 && bad == 1, "n %d bad %d", n, bad);
    hw_mount *m = malloc(sizeof *m);
    REQUIRE(m);
    CHECK(hw_mountinfo_find(text, "/home/u/my models/x.gguf", m));
    CHECK(!strcmp(m->mount_point, "/home/u/my models") && !strcmp(m->fs_type, "tmpfs"), "%s", m->mount_point);
    CHECK(hw_mountinfo_find(text, "/home/u/other", m));
    CHECK(!strcmp(m->fs_type, "btrfs"), "the later mount on /home hides the earlier: %s", m->fs_type);
    CHECK(m->major == 8 && m->minor == 2);
    CHECK(hw_mountinfo_find(text, "/homework", m) && !strcmp(m->mount_point, "/"),
          "/home is not a prefix of /homework");
    CHECK(hw_mountinfo_find(text, "/mnt/parent", m) && !strcmp(m->root, "/mnt1"));
    CHECK(!hw_mountinfo_find("", "/", m));
    free(m);
}

TEST(test_hw_parse_gpu_helpers)
{
    CHECK(hw_pcie_gen_from_speed("2.5 GT/s PCIe") == 1);
    CHECK(hw_pcie_gen_from_speed("8.0 GT/s PCIe") == 3);
    CHECK(hw_pcie_gen_from_speed("16.0 GT/s PCIe") == 4);
    CHECK(hw_pcie_gen_from_speed("32.0 GT/s PCIe") == 5);
    CHECK(hw_pcie_gen_from_speed("Unknown") == 0);
    char addr[16];
    CHECK(hw_pci_normalize("00000000:01:00.0", addr, sizeof addr) && !strcmp(addr, "0000:01:00.0"));
    CHECK(hw_pci_normalize("0000:C1:00.1", addr, sizeof addr) && !strcmp(addr, "0000:c1:00.1"));
    CHECK(!hw_pci_normalize("0000:01:00.0/../x", addr, sizeof addr));
    CHECK(!hw_pci_normalize("0000:01:40.0", addr, sizeof addr), "device above 31");
    CHECK(!strcmp(hw_gpu_type_name(hw_gpu_type_from_name("discrete")), "discrete"));
    CHECK(hw_gpu_type_from_name("bogus") == HW_GPU_UNKNOWN);
}

TEST(test_hw_parse_cpu_flags)
{
    uint32_t f = hw_cpu_features_from_flags("fpu sse4_2 avx avx2 fma f16c avx512f avx512_vnni avx_vnni\n");
    CHECK(f == (HW_CPU_SSE42 | HW_CPU_AVX | HW_CPU_AVX2 | HW_CPU_FMA | HW_CPU_F16C | HW_CPU_AVX512F |
                HW_CPU_AVX512VNNI | HW_CPU_AVXVNNI), "features %#x", f);
    CHECK(hw_cpu_features_from_flags("avx2x avx512") == 0, "whole words only");
    CHECK(hw_cpu_features_from_flags("fp asimd asimddp svei8mm i8mm sve") ==
          (HW_CPU_NEON | HW_CPU_DOTPROD | HW_CPU_I8MM | HW_CPU_SVE));
    for (int i = 0; i < HW_CPU_FEATURE_COUNT; i++) {
        const char *name = hw_cpu_feature_name(1u << i);
        CHECK(name && hw_cpu_feature_from_name(name) == 1u << i, "feature bit %d", i);
    }
    CHECK(hw_cpu_feature_from_name("avx3") == 0);
}

/* Random text from an alphabet rich in the parsers' separators: nothing
 * may crash or read out of bounds (the sanitizers watch), results stay sane. */
static void random_text(char *buf, size_t len, uint64_t *state)
{
    static const char alphabet[] = "0123456789abcdefx:[] \t\n\\/.-,kBK\x01\xff-MemTotal processor flags avx2 ";
    for (size_t i = 0; i + 1 < len; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        buf[i] = alphabet[*state % (sizeof alphabet - 1)];
    }
    buf[len - 1] = '\0';
}

static bool ignore_mount(const hw_mount *m, void *ctx)
{
    (void)ctx;
    return m->mount_point[0] == '/';
}

TEST(test_hw_parse_random_garbage)
{
    uint64_t state = 0x12345678abcdefull;
    hw_profile *p = calloc(1, sizeof *p);
    REQUIRE(p);
    char buf[600], mode[16];
    for (int i = 0; i < 3000; i++) {
        size_t len = 1 + (size_t)(state % sizeof buf);
        random_text(buf, len, &state);
        hw_memory m;
        memset(&m, 0, sizeof m);
        hw_meminfo_parse(buf, &m, p);
        CHECK(m.available <= m.total && m.swap_free <= m.swap_total);
        hw_cpu cpu;
        memset(&cpu, 0, sizeof cpu);
        hw_cpu_parse_cpuinfo(buf, &cpu, p);
        CHECK(cpu.physical_cores <= cpu.logical_cores);
        hw_thp_parse(buf, mode, sizeof mode);
        hw_mountinfo_parse(buf, ignore_mount, NULL, NULL);
        hw_profile_from_json(buf, "garbage", p, NULL);
        p->n_warnings = 0;
    }
    free(p);
}

/* A valid profile with one byte changed, many times: accepted or refused
 * with a message, never a crash, and what is accepted renders again. */
TEST(test_hw_parse_mutated_profiles)
{
    hw_profile *p = calloc(1, sizeof *p), *q = calloc(1, sizeof *q);
    REQUIRE(p && q);
    hw_probe_opts o = {.root = "tests/data/hw/arm64-v2", .path = "/home/user/models"};
    REQUIRE(hw_probe(&o, p, NULL) == STRATA_OK);
    char *text = hw_profile_to_json(p);
    REQUIRE(text);
    size_t len = strlen(text);
    uint64_t state = 42;
    int accepted = 0;
    for (int i = 0; i < 1500; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t at = (size_t)(state % len);
        char saved = text[at];
        text[at] = "0-9\"{}[],:.e+ x"[(state >> 32) % 15];
        strata_error err = {0};
        if (hw_profile_from_json(text, "mutated", q, &err) == STRATA_OK) {
            accepted++;
            char *again = hw_profile_to_json(q);
            CHECK(again != NULL);
            free(again);
            CHECK(q->mem.available <= q->mem.total || !q->mem.total);
        } else {
            CHECK(err.message[0] && !strchr(err.message, '\n'));
        }
        text[at] = saved;
    }
    CHECK(accepted > 0 && accepted < 1500, "accepted %d", accepted);
    free(text);
    free(p);
    free(q);
}
