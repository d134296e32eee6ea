/* Tensor roles from GGUF tensor names ("blk.N.attn_q.weight", ...), the
 * naming every architecture in llama.cpp's GGUF convention shares. */
#include <stdlib.h>
#include <string.h>

#include "model/model_spec.h"

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static tensor_group block_group(const char *suffix)
{
    if (strstr(suffix, "norm")) return GROUP_NORM;
    if (strstr(suffix, "_exps")) return GROUP_FFN_EXPERTS;
    if (starts_with(suffix, "ffn_")) return GROUP_FFN;
    if (starts_with(suffix, "attn_")) return GROUP_ATTN;
    return GROUP_OTHER;
}

tensor_class model_classify_tensor(const char *name)
{
    tensor_class tc = {-1, GROUP_OTHER};
    if (starts_with(name, "blk.")) {
        char *end;
        long layer = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.' && layer >= 0 && layer < MODEL_MAX_LAYERS * 16) {
            tc.layer = (int)layer;
            tc.group = block_group(end + 1);
            return tc;
        }
    }
    if (starts_with(name, "token_embd.")) tc.group = GROUP_EMBD;
    else if (starts_with(name, "output_norm.")) tc.group = GROUP_NORM;
    else if (starts_with(name, "output.")) tc.group = GROUP_OUTPUT;
    return tc;
}

const char *tensor_group_name(tensor_group g)
{
    static const char *const names[GROUP_COUNT] = {
        [GROUP_ATTN] = "attention", [GROUP_FFN] = "ffn", [GROUP_FFN_EXPERTS] = "ffn_experts",
        [GROUP_NORM] = "norm", [GROUP_EMBD] = "embedding", [GROUP_OUTPUT] = "output", [GROUP_OTHER] = "other",
    };
    return g < GROUP_COUNT ? names[g] : "?";
}
