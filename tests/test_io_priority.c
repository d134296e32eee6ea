/* The store's I/O queue serves demand reads before speculative ones
 * (prefetches), and a promoted prefetch goes ahead of the others. One
 * I/O thread and a delay injected into every read make the order visible:
 * what is still pending on one ticket when another completes. And decode
 * steps read the first expert layer ahead too (predicted from the
 * embedding), not only the layers after it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/synth/synth.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "store/io.h"
#include "test.h"

#define BLOCK 4096
#define N_SPEC 8

static int slow_read(void *ctx, uint32_t split, uint64_t offset, uint64_t length)
{
    (void)ctx, (void)split, (void)offset, (void)length;
    usleep(10000);
    return 0;
}

typedef struct io_setup {
    gguf_file *f;
    io_engine *io;
    uint8_t *buf; /* [2 * N_SPEC + 1][BLOCK], aligned for O_DIRECT */
} io_setup;

static bool open_io(io_setup *s)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/io-priority.gguf", test_tmpdir());
    synth_options o = {.shape = {64, 128, 2, 4, 2, 320, 64}, .type = GGML_TYPE_F32, .seed = 2, .threads = 1,
                       .output = path};
    strata_error e;
    memset(s, 0, sizeof *s);
    s->buf = aligned_alloc(BLOCK, (2 * N_SPEC + 1) * BLOCK);
    if (s->buf && !synth_write(&o, &e) && !gguf_open(path, &s->f, &e) && !io_open(s->f, 1, slow_read, NULL, &s->io, &e))
        return true;
    test_fail(__FILE__, __LINE__, "open", " %s", s->buf ? e.message : "out of memory");
    gguf_close(s->f);
    free(s->buf);
    return false;
}

static void close_io(io_setup *s)
{
    io_close(s->io);
    gguf_close(s->f);
    free(s->buf);
}

/* n reads of consecutive blocks from block `first` on ticket t. */
static void submit(io_setup *s, io_ticket *t, uint32_t first, uint32_t n, bool speculative)
{
    atomic_store(&t->pending, (int)n);
    for (uint32_t i = 0; i < n; i++) {
        io_request rq = {s->buf + (uint64_t)(first + i) * BLOCK, 0, (uint64_t)(first + i) * BLOCK, BLOCK, t, false,
                         speculative, NULL};
        io_submit(s->io, &rq, 1);
    }
}

/* A demand read queued behind N_SPEC prefetches completes while nearly all
 * of them still wait (one may be in service already); FIFO order would
 * leave none. */
TEST(test_io_demand_read_before_prefetches)
{
    io_setup s;
    if (!open_io(&s)) return;
    io_ticket spec = {0}, demand = {0};
    submit(&s, &spec, 0, N_SPEC, true);
    submit(&s, &demand, N_SPEC, 1, false);
    io_wait(s.io, &demand);
    int left = atomic_load(&spec.pending);
    CHECK(left >= N_SPEC - 2, " %d of %d prefetches still pending when the demand read completed", left, N_SPEC);
    io_wait(s.io, &spec);
    CHECK(atomic_load(&spec.error) == 0 && atomic_load(&demand.error) == 0);
    close_io(&s);
}

/* Promoting a ticket moves its queued prefetches ahead of the prefetches
 * queued before them. */
TEST(test_io_promoted_prefetch_goes_first)
{
    io_setup s;
    if (!open_io(&s)) return;
    io_ticket first = {0}, later = {0};
    submit(&s, &first, 0, N_SPEC, true);
    submit(&s, &later, N_SPEC, N_SPEC, true);
    io_promote(s.io, &later);
    io_wait(s.io, &later);
    int left = atomic_load(&first.pending);
    CHECK(left >= N_SPEC - 2, " %d of %d earlier prefetches still pending when the promoted ones completed", left,
          N_SPEC);
    io_wait(s.io, &first);
    close_io(&s);
}

/* With the router predictor and a cache of half the experts, decoding one
 * token at a time prefetches layer 0's experts as well, and uses them. */
TEST(test_io_first_expert_layer_is_prefetched)
{
    const char *p = test_fixture("arch/qwen3moe-q4_k_m.gguf");
    if (!p) return;
    gguf_file *f = NULL;
    model_spec *s = NULL;
    engine *eng = NULL;
    strata_error e;
    REQUIRE(gguf_open(p, &f, &e) == STRATA_OK && model_spec_from_gguf(f, p, &s, &e) == STRATA_OK, " %s", e.message);
    uint32_t units = (uint32_t)(s->hp.n_layers * s->hp.n_expert);
    engine_params ep = {.n_ctx = 64, .n_threads = 1, .n_batch = 1, .moe_prefetch = ENGINE_MOE_PREFETCH_ROUTER,
                        .store = {.expert_slots = units / 2}};
    REQUIRE(engine_open(f, s, &ep, &eng, &e) == STRATA_OK, " %s", e.message);
    static const int32_t toks[6] = {1, 403, 407, 261, 378, 383};
    for (int i = 0; i < 6; i++) CHECK(engine_eval(eng, &toks[i], 1, NULL, false, &e) == STRATA_OK, " %s", e.message);
    store_expert_stats l0 = engine_expert_stats(eng, 0);
    CHECK(l0.prefetch_issued > 0 && l0.prefetch_used > 0, " layer 0: %llu prefetched, %llu used",
          (unsigned long long)l0.prefetch_issued, (unsigned long long)l0.prefetch_used);
    engine_free(eng);
    model_spec_free(s);
    gguf_close(f);
}
