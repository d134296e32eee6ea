#include "gpu_helpers.h"

#include "backend/vulkan/vkb.h"
#include "strata.h"
#include "test.h"

bool gpu_test_device(void)
{
    vkb *v = NULL;
    strata_error err = {0};
    if (vkb_open(0, true, &v, &err) != STRATA_OK) {
        test_skip("no Vulkan device (install mesa-vulkan-drivers for lavapipe): %s", err.message);
        return false;
    }
    vkb_close(v);
    return true;
}

strata_model *gpu_test_open(const char *path, uint32_t max_layers, uint64_t gpu_mem, uint32_t stream)
{
    strata_model_params p = strata_model_default_params();
    p.gpu = STRATA_GPU_DEVICE;
    p.gpu_layers_max = max_layers;
    p.gpu_mem = gpu_mem;
    p.gpu_stream = stream;
    p.n_ctx = 64;
    p.n_threads = 2;
    strata_model *m = NULL;
    strata_error err;
    if (strata_model_open(path, &p, &m, &err) != STRATA_OK) {
        CHECK(false, " %s (-ngl %u, --gpu-mem %llu, --gpu-stream %u): %s", path, max_layers,
              (unsigned long long)gpu_mem, stream, err.message);
        return NULL;
    }
    return m;
}
