#include "gpu_helpers.h"

#include <stdio.h>
#include <stdlib.h>

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

float *gpu_test_eval(strata_model *m, int n_tok, int n_prompt, strata_error *err)
{
    uint32_t nv = strata_model_n_vocab(m);
    int32_t *tok = malloc((size_t)n_tok * sizeof *tok);
    float *out = malloc((size_t)n_tok * nv * sizeof(float));
    for (int i = 0; tok && i < n_tok; i++) tok[i] = (int32_t)((i * 7919u + 13u) % nv);
    bool ok = tok && out && strata_eval(m, tok, n_prompt, out, true, err) == STRATA_OK;
    for (int i = n_prompt; ok && i < n_tok; i++)
        ok = strata_eval(m, tok + i, 1, out + (size_t)i * nv, false, err) == STRATA_OK;
    if (!tok || !out) snprintf(err->message, sizeof err->message, "out of memory");
    free(tok);
    if (!ok) free(out);
    return ok ? out : NULL;
}
