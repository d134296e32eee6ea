/* A stand-in for NVIDIA's libnvidia-ml.so.1, built by test_hw_cli_fake_nvml
 * to exercise strata's NVML probe on machines without NVIDIA hardware: one
 * 24 GiB GPU at 0000:65:00.0 with 3 GiB used, PCIe gen4 x16 (max gen4 x16).
 * Signatures follow the NVML API reference; 0 is NVML_SUCCESS. */
#include <string.h>

typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

static int initialised;
static char dev;

int nvmlInit_v2(void) { initialised = 1; return 0; }
int nvmlShutdown(void) { initialised = 0; return 0; }
int nvmlSystemGetDriverVersion(char *v, unsigned n) { strncpy(v, "550.54.14", n); return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = 1; return initialised ? 0 : 1; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d)
{
    if (i) return 2;
    *d = (nvmlDevice_t)&dev;
    return 0;
}
int nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned n) { (void)d; strncpy(name, "Fake GPU 24GB", n); return 0; }
int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m)
{
    (void)d;
    m->total = 24ull << 30;
    m->used = 3ull << 30;
    m->free = m->total - m->used;
    return 0;
}
int nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p)
{
    (void)d;
    memset(p, 0, sizeof *p);
    strcpy(p->busIdLegacy, "0000:65:00.0");
    strcpy(p->busId, "00000000:65:00.0");
    p->bus = 0x65;
    p->pciDeviceId = 0x268410de;
    return 0;
}
int nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t d, unsigned *v) { (void)d; *v = 4; return 0; }
int nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t d, unsigned *v) { (void)d; *v = 16; return 0; }
int nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t d, unsigned *v) { (void)d; *v = 4; return 0; }
int nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t d, unsigned *v) { (void)d; *v = 16; return 0; }
