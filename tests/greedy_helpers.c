/* Greedy generation on a context of its own (greedy_helpers.h). */
#include <stdlib.h>
#include <string.h>

#include "greedy_helpers.h"
#include "test.h"

#define TEXT_CAP 4096

static int32_t argmax(const float *logits, uint32_t n)
{
    int32_t best = 0;
    for (uint32_t v = 1; v < n; v++)
        if (logits[v] > logits[best]) best = (int32_t)v;
    return best;
}

static void keep(char *text, size_t *len, const char *t, size_t k)
{
    if (t && *len + k < TEXT_CAP) memcpy(text + *len, t, k), *len += k;
}

char *greedy_text(strata_model *m, const int32_t *prompt, size_t n, uint32_t n_gen)
{
    uint32_t V = strata_model_n_vocab(m);
    float *logits = malloc(V * sizeof(float));     /* [n_vocab] */
    char *text = calloc(1, TEXT_CAP);               /* [TEXT_CAP] NUL-terminated */
    strata_detok *dt = strata_detok_new(m);
    size_t len = 0, k = 0;
    strata_error err = {0};
    strata_context *c = NULL;
    bool ok = logits && text && dt && strata_context_new(m, (uint32_t)(n + n_gen), &c, &err) == STRATA_OK &&
              strata_context_eval(c, prompt, n, logits, false, &err) == STRATA_OK;
    for (size_t i = 0; ok && i < n; i++) strata_detok_push(dt, prompt[i], &k);
    for (uint32_t i = 0; ok && i < n_gen; i++) {
        int32_t best = argmax(logits, V);
        if (strata_token_is_eog(m, best)) break;
        const char *t = strata_detok_push(dt, best, &k);
        keep(text, &len, t, k);
        if (i + 1 < n_gen) ok = strata_context_eval(c, &best, 1, logits, false, &err) == STRATA_OK;
    }
    const char *rest = ok ? strata_detok_finish(dt, &k) : NULL;
    keep(text, &len, rest, k);
    CHECK(ok, " greedy generation: %s", err.message);
    strata_context_free(c);
    strata_detok_free(dt);
    free(logits);
    return text;
}
