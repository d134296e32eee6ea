/* Many sequences over one model: contexts share the weights, a batch of
 * several sequences equals running each alone, and the continuous-batching
 * scheduler's greedy answers equal single-sequence generation while
 * requests join and leave mid-step. The truth is the single-sequence path
 * (strata_eval), itself checked against llama.cpp's golden logits by the
 * conformance tests. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "greedy_helpers.h"
#include "sched/sched.h"
#include "strata.h"
#include "test.h"

static strata_model *open_model(const char *name, uint32_t n_ctx, uint32_t n_parallel)
{
    const char *path = test_fixture(name);
    if (!path) return NULL;
    strata_model_params p = strata_model_default_params();
    p.n_ctx = n_ctx;
    p.n_parallel = n_parallel;
    p.kv_f32 = true;
    p.n_threads = 2;
    strata_model *m = NULL;
    strata_error err = {0};
    CHECK(strata_model_open(path, &p, &m, &err) == STRATA_OK, " %s", err.message);
    return m;
}

static int32_t *tokens_of(strata_model *m, const char *text, size_t *n)
{
    int32_t *t = NULL;
    strata_error err = {0};
    CHECK(strata_tokenize(m, text, strlen(text), true, &t, n, &err) == STRATA_OK, " %s", err.message);
    return t;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

/* A second context costs its KV cache: the weights are not copied (RSS
 * grows by far less than the model's resident weights). */
TEST(test_sched_context_shares_weights)
{
    strata_model *m = open_model("synth-f16.gguf", 64, 2);
    if (!m) return;
    strata_model_stats st;
    strata_model_get_stats(m, &st);
    uint64_t accounted = st.accounted_bytes, kv = strata_context_bytes(m, 64);
    int32_t tok[4] = {1, 5, 9, 13};
    strata_error err = {0};
    strata_context *a = NULL, *b = NULL;
    REQUIRE(strata_context_new(m, 0, &a, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(a, tok, 4, NULL, false, &err) == STRATA_OK, " %s", err.message);
    long before = rss_kib();
    REQUIRE(strata_context_new(m, 0, &b, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(b, tok, 4, NULL, false, &err) == STRATA_OK, " %s", err.message);
    long grew = rss_kib() - before;
    CHECK(st.resident_bytes > 4 * 1024 * 1024, " the test needs resident weights (%llu)",
          (unsigned long long)st.resident_bytes);
    CHECK(grew * 1024 < (long)(kv + (1u << 20)) && grew * 1024 < (long)st.resident_bytes / 4,
          " RSS grew %ld KiB for a context of %llu bytes of KV", grew, (unsigned long long)kv);
    strata_model_get_stats(m, &st);
    CHECK(st.accounted_bytes == accounted, " contexts come from the reserve accounted at open");
    strata_context_free(a);
    strata_context_free(b);
    strata_model_free(m);
}

/* The reserve holds n_parallel contexts of n_ctx; a context takes only what
 * its length needs. */
TEST(test_sched_context_reserve)
{
    strata_model *m = open_model("stories260K.gguf", 128, 2);
    if (!m) return;
    strata_error err = {0};
    strata_context *c[4] = {0};
    CHECK(strata_context_new(m, 0, &c[0], &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_new(m, 64, &c[1], &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_new(m, 64, &c[2], &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_new(m, 64, &c[3], &err) == STRATA_E_NOMEM && !c[3] && strstr(err.message, "reserve"),
          " %s", err.message);
    CHECK(strata_model_kv_free(m) == 0, " %llu left", (unsigned long long)strata_model_kv_free(m));
    strata_context_free(c[1]);
    c[1] = NULL;
    CHECK(strata_context_new(m, 64, &c[3], &err) == STRATA_OK, " %s", err.message);
    strata_context *big = NULL;
    CHECK(strata_context_new(m, 129, &big, &err) == STRATA_E_INVALID && !big && strstr(err.message, "exceeds"),
          " %s", err.message);
    for (int i = 0; i < 4; i++) strata_context_free(c[i]);
    strata_model_free(m);
}

/* One batch holding a prompt chunk of one sequence and single tokens of two
 * others gives each the logits it gets alone (F32 KV: within 1e-5). */
TEST(test_sched_decode_matches_alone)
{
    strata_model *m = open_model("stories260K.gguf", 64, 3);
    if (!m) return;
    uint32_t V = strata_model_n_vocab(m);
    size_t na, nb;
    int32_t *ta = tokens_of(m, "Once upon a time there was a", &na);
    int32_t *tb = tokens_of(m, "Lily had a red ball", &nb);
    REQUIRE(ta && tb && na > 3 && nb > 3);
    float *alone = malloc(2 * (size_t)V * sizeof(float)), *got = malloc(3 * (size_t)V * sizeof(float));
    strata_error err = {0};
    strata_context *x = NULL, *y = NULL, *z = NULL;
    REQUIRE(strata_context_new(m, 0, &x, &err) == STRATA_OK && strata_context_new(m, 0, &y, &err) == STRATA_OK &&
            strata_context_new(m, 0, &z, &err) == STRATA_OK, " %s", err.message);
    /* alone: a's whole prompt; b's prompt, then b's first 3 tokens again as a continuation */
    CHECK(strata_context_eval(x, ta, na, alone, false, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(y, tb, nb, NULL, false, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(y, tb, 1, alone + V, false, &err) == STRATA_OK, " %s", err.message);
    /* together: z gets b's prompt first; then one batch of a's prompt (in x, reset) and z's next token */
    strata_context_reset(x);
    CHECK(strata_context_eval(z, tb, nb, NULL, false, &err) == STRATA_OK, " %s", err.message);
    strata_batch_entry b[64];
    size_t n = 0;
    b[n++] = (strata_batch_entry){z, tb[0], (uint32_t)nb, true};
    for (size_t i = 0; i < na; i++) b[n++] = (strata_batch_entry){x, ta[i], (uint32_t)i, i + 1 == na};
    CHECK(strata_decode(m, b, n, got, &err) == STRATA_OK, " %s", err.message);
    CHECK(max_diff(got, alone + V, V) <= 1e-5f, " b's token: %g", max_diff(got, alone + V, V));
    CHECK(max_diff(got + V, alone, V) <= 1e-5f, " a's prompt: %g", max_diff(got + V, alone, V));
    CHECK(strata_context_n_past(x) == na && strata_context_n_past(z) == nb + 1);
    /* a wrong position is refused and nothing advances */
    strata_batch_entry bad[2] = {{x, 1, (uint32_t)na, false}, {z, 1, 0, true}};
    CHECK(strata_decode(m, bad, 2, got, &err) == STRATA_E_INVALID && strstr(err.message, "position 0"), " %s",
          err.message);
    CHECK(strata_context_n_past(x) == na && strata_context_n_past(z) == nb + 1);
    strata_context_free(x);
    strata_context_free(y);
    strata_context_free(z);
    free(alone);
    free(got);
    free(ta);
    free(tb);
    strata_model_free(m);
}

static sched_request_params greedy(const int32_t *prompt, size_t n, uint32_t max_tokens)
{
    strata_sampler_params sp = strata_sampler_default_params();
    sp.temp = 0;
    return (sched_request_params){.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .sampling = sp};
}

static char *result_text(sched_req *r, sched_finish *f)
{
    sched_progress p;
    sched_req_wait(r, 0, 0, &p);
    *f = p.finish;
    char *text = p.text ? strdup(p.text) : NULL;
    sched_progress_free(&p); /* gives its bytes back to the model's account */
    return text;
}

/* Five requests of different lengths through three slots: they join and
 * leave mid-step; each answer equals its greedy answer alone. */
TEST(test_sched_greedy_matches_alone)
{
    strata_model *m = open_model("stories260K.gguf", 96, 3);
    if (!m) return;
    static const char *prompts[5] = {"Once upon a time", "The cat sat on the", "Lily and Ben went to the park",
                                     "One day, a little bird", "Tom"};
    static const uint32_t max_tokens[5] = {24, 9, 30, 3, 17};
    int32_t *tok[5];
    size_t n[5];
    char *alone[5];
    for (int i = 0; i < 5; i++) {
        tok[i] = tokens_of(m, prompts[i], &n[i]);
        alone[i] = greedy_text(m, tok[i], n[i], max_tokens[i]);
    }
    sched *s = NULL;
    strata_error err = {0};
    sched_params sp = {.n_slots = 3, .max_queue = 5};
    REQUIRE(sched_new(m, &sp, &s, &err) == STRATA_OK, " %s", err.message);
    sched_req *r[5];
    for (int i = 0; i < 5; i++) {
        sched_request_params rp = greedy(tok[i], n[i], max_tokens[i]);
        CHECK(sched_submit(s, &rp, &r[i], NULL, 0) == SCHED_OK);
    }
    int steps = 0;
    while (sched_step(s)) steps++;
    CHECK(steps >= 30 && steps < 60, " %d steps (the longest answer takes 30)", steps);
    for (int i = 0; i < 5; i++) {
        sched_finish f;
        char *text = result_text(r[i], &f);
        CHECK(f == SCHED_LENGTH || f == SCHED_STOP, " request %d ended %d", i, (int)f);
        CHECK(text && !strcmp(text, alone[i]), " request %d: '%s' alone: '%s'", i, text, alone[i]);
        free(text);
        sched_req_release(r[i]);
        free(alone[i]);
        free(tok[i]);
    }
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.requests_done == 5 && st.running == 0 && st.queued == 0 && st.kv_used == 0);
    sched_free(s);
    strata_model_free(m);
}

/* Stop strings cut the text before them; max_tokens ends with "length". */
TEST(test_sched_stop_strings)
{
    strata_model *m = open_model("stories260K.gguf", 96, 1);
    if (!m) return;
    size_t n;
    int32_t *tok = tokens_of(m, "Once upon a time", &n);
    char *alone = greedy_text(m, tok, n, 40);
    REQUIRE(strlen(alone) > 20, " '%s'", alone);
    char stop[8] = {0};
    memcpy(stop, alone + 12, 5); /* five bytes from the middle of the answer */
    const char *stops[2] = {"no such text ~~~", stop};
    sched *s = NULL;
    strata_error err = {0};
    sched_params sp = {.n_slots = 1};
    REQUIRE(sched_new(m, &sp, &s, &err) == STRATA_OK, " %s", err.message);
    sched_request_params rp = greedy(tok, n, 40);
    rp.stop = stops;
    rp.n_stop = 2;
    sched_req *r = NULL;
    REQUIRE(sched_submit(s, &rp, &r, NULL, 0) == SCHED_OK);
    while (sched_step(s)) {
    }
    sched_finish f;
    char *text = result_text(r, &f);
    const char *first = strstr(alone, stop);
    CHECK(f == SCHED_STOP && text && strlen(text) == (size_t)(first - alone) && !strncmp(text, alone, strlen(text)),
          " '%s' (stop '%s' in '%s')", text, stop, alone);
    CHECK(!strcmp(sched_finish_reason(f), "stop"));
    free(text);
    sched_req_release(r);
    rp = greedy(tok, n, 5);
    REQUIRE(sched_submit(s, &rp, &r, NULL, 0) == SCHED_OK);
    while (sched_step(s)) {
    }
    sched_progress p;
    sched_req_wait(r, 0, 0, &p);
    CHECK(p.finish == SCHED_LENGTH && p.n_gen == 5 && !strcmp(sched_finish_reason(p.finish), "length"));
    sched_progress_free(&p);
    sched_req_release(r);
    sched_free(s);
    free(alone);
    free(tok);
    strata_model_free(m);
}

/* Refusals: empty or too long prompts, tokens outside the vocabulary, a
 * full queue, a closed scheduler; a cancelled request frees its slot. */
TEST(test_sched_refusals_and_cancel)
{
    strata_model *m = open_model("stories260K.gguf", 32, 1);
    if (!m) return;
    sched *s = NULL;
    strata_error err = {0};
    sched_params sp = {.n_slots = 1, .max_queue = 2};
    REQUIRE(sched_new(m, &sp, &s, &err) == STRATA_OK, " %s", err.message);
    int32_t tok[40] = {1, 2, 3};
    char msg[256];
    sched_req *r = NULL, *q[3] = {0};
    sched_request_params rp = greedy(tok, 0, 4);
    CHECK(sched_submit(s, &rp, &r, msg, sizeof msg) == SCHED_INVALID && !r && strstr(msg, "empty"), " %s", msg);
    rp = greedy(tok, 32, 4);
    CHECK(sched_submit(s, &rp, &r, msg, sizeof msg) == SCHED_TOO_LONG && strstr(msg, "32 tokens"), " %s", msg);
    tok[1] = 100000;
    rp = greedy(tok, 3, 4);
    CHECK(sched_submit(s, &rp, &r, msg, sizeof msg) == SCHED_INVALID && strstr(msg, "vocabulary"), " %s", msg);
    tok[1] = 2;
    rp = greedy(tok, 3, 0);
    CHECK(sched_submit(s, &rp, &q[0], msg, sizeof msg) == SCHED_OK);
    CHECK(sched_submit(s, &rp, &q[1], msg, sizeof msg) == SCHED_OK);
    CHECK(sched_submit(s, &rp, &q[2], msg, sizeof msg) == SCHED_FULL && strstr(msg, "waiting"), " %s", msg);
    CHECK(sched_step(s)); /* q[0] runs, q[1] waits */
    sched_cancel(q[0]);
    sched_cancel(q[1]);
    CHECK(!sched_step(s), " both cancelled: nothing to do");
    sched_progress p;
    sched_req_wait(q[0], 0, 0, &p);
    CHECK(p.finish == SCHED_CANCELLED);
    sched_progress_free(&p);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.running == 0 && st.queued == 0 && st.kv_used == 0 && st.requests_done == 2);
    sched_shutdown(s);
    CHECK(!sched_wait_work(s));
    CHECK(sched_submit(s, &rp, &r, msg, sizeof msg) == SCHED_CLOSED);
    sched_req_release(q[0]);
    sched_req_release(q[1]);
    sched_free(s);
    strata_model_free(m);
}

/* Sliding-window layers (gemma3, window 4) with a small batch, so each
 * context's window cache slides many times: two contexts fed in shared
 * batches of 4 tokens each, one 6 tokens ahead of the other, end with the
 * logits each gets alone. */
TEST(test_sched_decode_sliding_windows)
{
    const char *path = test_fixture("arch/gemma3-q4_k_m.gguf");
    if (!path) return;
    strata_model_params p = strata_model_default_params();
    p.n_ctx = 64;
    p.n_batch = 8;
    p.n_parallel = 3;
    p.kv_f32 = true;
    p.n_threads = 2;
    strata_model *m = NULL;
    strata_error err = {0};
    REQUIRE(strata_model_open(path, &p, &m, &err) == STRATA_OK, " %s", err.message);
    uint32_t V = strata_model_n_vocab(m);
    int32_t tok[46];
    for (int i = 0; i < 46; i++) tok[i] = 1 + (i * 37) % 200;
    float *alone = malloc(2 * (size_t)V * sizeof(float)), *got = malloc(2 * (size_t)V * sizeof(float));
    strata_context *a = NULL, *x = NULL, *y = NULL;
    REQUIRE(strata_context_new(m, 0, &a, &err) == STRATA_OK && strata_context_new(m, 0, &x, &err) == STRATA_OK &&
            strata_context_new(m, 0, &y, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(a, tok, 46, alone, false, &err) == STRATA_OK, " %s", err.message);
    strata_context_reset(a);
    CHECK(strata_context_eval(a, tok, 40, alone + V, false, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(x, tok, 6, NULL, false, &err) == STRATA_OK, " %s", err.message);
    for (uint32_t step = 0; step < 10; step++) { /* x: 6..46, y: 0..40, 4 each per batch */
        strata_batch_entry b[8];
        for (uint32_t i = 0; i < 4; i++) {
            uint32_t px = 6 + step * 4 + i, py = step * 4 + i;
            b[i] = (strata_batch_entry){x, tok[px], px, step == 9 && i == 3};
            b[4 + i] = (strata_batch_entry){y, tok[py], py, step == 9 && i == 3};
        }
        CHECK(strata_decode(m, b, 8, got, &err) == STRATA_OK, " step %u: %s", step, err.message);
    }
    float dx = 0, dy = 0;
    for (uint32_t v = 0; v < V; v++) {
        dx = fmaxf(dx, fabsf(got[v] - alone[v]));
        dy = fmaxf(dy, fabsf(got[V + v] - alone[V + v]));
    }
    CHECK(dx <= 1e-5f && dy <= 1e-5f, " %g %g", dx, dy);
    strata_context_free(a);
    strata_context_free(x);
    strata_context_free(y);
    free(alone);
    free(got);
    strata_model_free(m);
}

/* The scheduler's buffers are in the model's memory account while they
 * exist and leave it when freed (a server runs for weeks: a count that
 * leaks would end in refusing everything): its logits rows (slots x
 * vocabulary floats), a queued request's prompt copy, a running one's
 * sampler (12 bytes per token) and its text; after the requests are
 * released and the scheduler freed, the account is back where it was. A
 * request whose prompt copy the budget cannot hold is refused with
 * SCHED_NO_MEMORY and the account's message. */
TEST(test_sched_buffers_in_the_account)
{
    const char *path = test_fixture("stories260K.gguf");
    if (!path) return;
    strata_model_params mp = strata_model_default_params();
    mp.n_ctx = 64;
    mp.n_parallel = 2;
    mp.n_threads = 2;
    mp.mem_budget = 256u << 20;
    strata_model *m = NULL;
    strata_error oe = {0};
    REQUIRE(strata_model_open(path, &mp, &m, &oe) == STRATA_OK, " %s", oe.message);
    const uint64_t V = strata_model_n_vocab(m);
    strata_mem_account a0, a;
    strata_model_mem_account(m, STRATA_MEM_RAM, &a0);
    sched *s = NULL;
    strata_error err = {0};
    sched_params sp = {.n_slots = 2};
    REQUIRE(sched_new(m, &sp, &s, &err) == STRATA_OK, " %s", err.message);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(a.used[STRATA_MEM_LOGITS] - a0.used[STRATA_MEM_LOGITS] == 2 * V * sizeof(float),
          " logits rows %llu", (unsigned long long)a.used[STRATA_MEM_LOGITS]);
    uint64_t eog = a.used[STRATA_MEM_SAMPLER] - a0.used[STRATA_MEM_SAMPLER];
    CHECK(eog >= sizeof(int32_t) && eog < 64, " end-of-generation list %llu bytes", (unsigned long long)eog);
    size_t n = 0;
    int32_t *tok = tokens_of(m, "Once upon a time", &n);
    REQUIRE(tok);
    sched_request_params rp = greedy(tok, n, 6);
    sched_req *r = NULL;
    REQUIRE(sched_submit(s, &rp, &r, NULL, 0) == SCHED_OK);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(a.used[STRATA_MEM_SAMPLER] - a0.used[STRATA_MEM_SAMPLER] == eog + n * sizeof(int32_t),
          " queued: the prompt's copy alone");
    CHECK(sched_step(s));
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(a.used[STRATA_MEM_SAMPLER] - a0.used[STRATA_MEM_SAMPLER] >= eog + V * 12 + (n + 6 + 1) * sizeof(int32_t),
          " running: sampler and history %llu", (unsigned long long)a.used[STRATA_MEM_SAMPLER]);
    while (sched_step(s)) {
    }
    sched_progress p;
    sched_req_wait(r, 0, 0, &p);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(p.text && p.len > 0 && a.used[STRATA_MEM_TEXT] >= 2 * (p.len + 1),
          " the request's text and its copy: %llu bytes for %zu", (unsigned long long)a.used[STRATA_MEM_TEXT], p.len);
    sched_progress_free(&p);
    sched_req_release(r);
    /* the budget full: a byte more than the room makes the account's
     * reclaimer move resident layers to streaming, until it has nothing
     * left to move; then the room left is taken, and the next request's
     * prompt copy is refused */
    uint64_t held = 0;
    for (int k = 0; k < 64; k++) {
        strata_model_mem_account(m, STRATA_MEM_RAM, &a);
        uint64_t want = a.budget - a.total + 1;
        if (strata_mem_take(m, STRATA_MEM_OTHER, want, &err)) break;
        held += want;
    }
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    uint64_t room = a.budget - a.total;
    REQUIRE(strata_mem_take(m, STRATA_MEM_OTHER, room, &err) == STRATA_OK, " %s", err.message);
    held += room;
    char msg[STRATA_ERROR_MAX] = "";
    CHECK(sched_submit(s, &rp, &r, msg, sizeof msg) == SCHED_NO_MEMORY && !r && strstr(msg, "memory budget") &&
              strstr(msg, "sampler"),
          " %s", msg);
    strata_mem_give(m, STRATA_MEM_OTHER, held);
    sched_free(s);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    for (int c = STRATA_MEM_LOGITS; c <= STRATA_MEM_TEXT; c++)
        CHECK(a.used[c] == a0.used[c], " %s: %llu after, %llu before", strata_mem_category_name((strata_mem_category)c),
              (unsigned long long)a.used[c], (unsigned long long)a0.used[c]);
    free(tok);
    strata_model_free(m);
}
