/* libFuzzer target: the JSON strata reads from files a user may edit — a
 * machine profile (`plan --hw`, the saved profile) and a saved plan
 * (`run --plan`) — on arbitrary bytes. A profile that parses must write
 * back and parse again to an equal profile; a plan is read against a small
 * made-up model (three layers and the output group). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "plan/plan.h"
#include "plan/plan_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void profile_round_trip(const char *text)
{
    static hw_profile a, b; /* large: off the stack */
    strata_error err;
    if (hw_profile_from_json(text, "fuzz.json", &a, &err) != STRATA_OK) return;
    char *back = hw_profile_to_json(&a);
    if (!back) abort();
    char why[256];
    if (hw_profile_from_json(back, "fuzz.json", &b, &err) != STRATA_OK || !hw_profile_equal(&a, &b, why, sizeof why))
        abort(); /* what strata writes it must read back the same */
    free(back);
}

static void saved_plan(const char *text, size_t size)
{
    json_t *doc = json_loadb(text, size, 0, NULL);
    if (!doc) return;
    plan_group groups[4] = {{.name = "blk.0", .bytes = 1 << 20, .weight_bytes = 1 << 20, .elems = 1 << 20},
                            {.name = "blk.1", .bytes = 1 << 20, .weight_bytes = 1 << 20, .elems = 1 << 20},
                            {.name = "blk.2", .bytes = 1 << 20, .weight_bytes = 1 << 20, .elems = 1 << 20},
                            {.name = "output", .bytes = 1 << 21, .weight_bytes = 1 << 21, .elems = 1 << 21}};
    plan_model m = {.name = "fuzz", .n_groups = 4, .groups = groups, .context_length = 4096,
                    .kv_bytes_per_token = 4096, .batch = 256};
    plan p;
    memset(&p, 0, sizeof p);
    strata_error err;
    if (plan_from_json(doc, &m, &p, &err) == STRATA_OK) plan_free(&p);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    profile_round_trip(text);
    saved_plan(text, size);
    free(text);
    return 0;
}
