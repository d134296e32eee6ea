/* Loading resident groups (src/store/load.c): every byte as in the file,
 * whether it comes from the page cache or with O_DIRECT, for tensors whose
 * offsets and sizes are not multiples of 4 KiB, groups of several runs cut
 * into many reads, split models; the watchdog's room checks with reads in
 * flight; a read error fails the open with one line naming the file; the
 * claims loaders of other processes leave for memory not faulted yet. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "test.h"

#define N_TENSORS 9
#define N_GROUPS 3
#define KiB 1024ull

/* Tensor i holds n_floats(i) f32 values: odd sizes; the 300001-value ones
 * (1.2 MB) keep the tensors of a group apart (one run each). */
static uint64_t n_floats(int i)
{
    static const uint64_t n[N_TENSORS] = {37, 300001, 1031, 4099, 300001, 17, 65539, 300001, 250001};
    return n[i];
}

/* The bytes of tensor i: a pattern unique to each tensor and position. */
static uint32_t word(int i, uint64_t k) { return (uint32_t)((k + 1) * 0x9e3779b1u ^ (uint64_t)(i + 1) * 0x85ebca6bu); }

static strata_status write_tensors(gguf_writer *w, int part, int parts, strata_error *e)
{
    strata_status st = STRATA_OK;
    for (int i = part; i < N_TENSORS && !st; i += parts)
        for (uint64_t k = 0; k < n_floats(i) && !st; k++) {
            uint32_t v = word(i, k);
            st = gguf_writer_write(w, &v, sizeof v, e);
        }
    return st;
}

/* Part `part` of `parts` (tensors i with i % parts == part); one part: a
 * plain file. Returns the path of the first part in `path`. */
static strata_status write_part(const char *dir, int part, int parts, char *path, size_t len, strata_error *e)
{
    char p[1024];
    if (parts == 1) snprintf(p, sizeof p, "%s/load.gguf", dir);
    else snprintf(p, sizeof p, "%s/load-%05d-of-%05d.gguf", dir, part + 1, parts);
    if (part == 0) snprintf(path, len, "%s", p);
    gguf_writer *w = gguf_writer_new();
    strata_status st = part == 0 ? gguf_writer_set_str(w, "general.architecture", "llama", e) : STRATA_OK;
    if (!st && parts > 1) st = gguf_writer_set_u32(w, "split.no", (uint32_t)part, e);
    if (!st && parts > 1) st = gguf_writer_set_u32(w, "split.count", (uint32_t)parts, e);
    if (!st && parts > 1) st = gguf_writer_set_i32(w, "split.tensors.count", N_TENSORS, e);
    for (int i = part; i < N_TENSORS && !st; i += parts) {
        char name[32];
        snprintf(name, sizeof name, "t%d.weight", i);
        uint64_t ne[1] = {n_floats(i)};
        st = gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 1, ne, e);
    }
    if (!st) st = gguf_writer_open(w, p, e);
    if (!st) st = write_tensors(w, part, parts, e);
    if (!st) st = gguf_writer_close(w, e);
    gguf_writer_free(w);
    return st;
}

static gguf_file *make_model(int parts)
{
    char path[1024];
    strata_error e;
    gguf_file *f = NULL;
    for (int p = 0; p < parts; p++)
        if (write_part(test_tmpdir(), p, parts, path, sizeof path, &e)) {
            test_fail(__FILE__, __LINE__, "write", " %s", e.message);
            return NULL;
        }
    if (gguf_open(path, &f, &e)) test_fail(__FILE__, __LINE__, "open", " %s", e.message);
    return f;
}

/* Group g: tensors g, g + 3, g + 6 (far apart in the file: three runs). */
typedef struct groups {
    const gguf_tensor *t[N_GROUPS][N_TENSORS / N_GROUPS];
    store_group g[N_GROUPS];
} groups;

static void make_groups(const gguf_file *f, groups *out)
{
    for (int i = 0; i < N_TENSORS; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d.weight", i);
        out->t[i % N_GROUPS][i / N_GROUPS] = gguf_find_tensor(f, name);
    }
    for (int g = 0; g < N_GROUPS; g++) out->g[g] = (store_group){N_TENSORS / N_GROUPS, out->t[g]};
}

/* Whether group g's tensors hold their patterns. */
static bool group_matches(const void *const *d, int g)
{
    for (int j = 0; j < N_TENSORS / N_GROUPS; j++) {
        int i = g + N_GROUPS * j;
        const uint8_t *p = d[j];
        for (uint64_t k = 0; k < n_floats(i); k++) {
            uint32_t v;
            memcpy(&v, p + 4 * k, 4);
            if (v != word(i, k)) return false;
        }
    }
    return true;
}

/* Whether every tensor holds its pattern, acquired (resident or streamed). */
static bool bytes_match(store *s)
{
    bool ok = true;
    for (int g = 0; g < N_GROUPS && ok; g++) {
        const void *const *d;
        strata_error e;
        if (store_acquire(s, (uint32_t)g, &d, &e)) return false;
        ok = group_matches(d, g);
        store_release(s, (uint32_t)g);
    }
    return ok;
}

/* Reads every part whole (cached) or drops it from the page cache. */
static void set_cached(const gguf_file *f, bool cached)
{
    static uint8_t buf[64 * KiB];
    for (uint32_t i = 0; i < f->n_splits; i++) {
        int fd = open(f->splits[i].path, O_RDONLY);
        if (fd < 0) continue;
        if (cached) while (read(fd, buf, sizeof buf) > 0) {}
        else if (fsync(fd) == 0) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* dirty pages stay */
        close(fd);
    }
}

/* Opens all resident under cfg and checks the bytes; returns the stats. */
static store_stats load_and_check(const gguf_file *f, const store_config *cfg, const char *what)
{
    groups gr;
    make_groups(f, &gr);
    store *s = NULL;
    strata_error e;
    store_stats st = {0};
    strata_status rc = store_open(f, N_GROUPS, gr.g, cfg, &s, NULL, &e);
    CHECK(rc == STRATA_OK, " %s: %s", what, e.message);
    if (rc) return st;
    st = store_get_stats(s);
    CHECK(st.n_streamed_groups == 0 && st.load_bytes == st.resident_bytes, " %s: %u streamed, %llu of %llu loaded",
          what, st.n_streamed_groups, (unsigned long long)st.load_bytes, (unsigned long long)st.resident_bytes);
    CHECK(bytes_match(s), " %s: resident bytes differ from the file", what);
    store_close(s);
    return st;
}

static void check_loads(int parts)
{
    gguf_file *f = make_model(parts);
    if (!f) return;
    const uint64_t chunks[3] = {0, 4 * KiB, 64 * KiB};
    const int threads[2] = {1, 3};
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < 2; t++)
            for (int cached = 0; cached < 2; cached++)
                for (int views = 0; views < 2; views++) {
                    char what[128];
                    snprintf(what, sizeof what, "%d part(s), chunk %llu, %d threads, %s, %s", parts,
                             (unsigned long long)chunks[c], threads[t], cached ? "cached" : "cache dropped",
                             views ? "views" : "copies");
                    set_cached(f, cached);
                    store_config cfg = {.io_threads = threads[t], .load_chunk = chunks[c], .map_resident = views};
                    store_stats st = load_and_check(f, &cfg, what);
                    CHECK(st.load_views == views, " %s: views %d", what, st.load_views);
                    /* a warm file is copied from the page cache, not read again */
                    if (cached && !views)
                        CHECK(st.load_cached_bytes == st.load_bytes, " %s: %llu of %llu bytes from the cache", what,
                              (unsigned long long)st.load_cached_bytes, (unsigned long long)st.load_bytes);
                }
    gguf_close(f);
}

TEST(test_store_load_bytes_identical_unaligned) { check_loads(1); }

TEST(test_store_load_bytes_identical_split) { check_loads(3); }

/* store_read_tensors (GPU uploads): tensors of no group, read the same way,
 * here all nine of a split model in one call. */
TEST(test_store_load_read_tensors)
{
    gguf_file *f = make_model(3);
    if (!f) return;
    groups gr;
    make_groups(f, &gr);
    const gguf_tensor *all[N_TENSORS];
    for (int i = 0; i < N_TENSORS; i++) all[i] = gr.t[i % N_GROUPS][i / N_GROUPS];
    store_group one = {N_TENSORS, all};
    strata_error e;
    uint64_t bytes = 0;
    store_config cfg = {.io_threads = 2, .load_chunk = 16 * KiB, .stream_all = true};
    store *s = NULL;
    REQUIRE(!store_group_bytes(f, &one, &bytes, &e) && !store_open(f, N_GROUPS, gr.g, &cfg, &s, NULL, &e), " %s",
            e.message);
    void *mem = NULL;
    const void *data[N_TENSORS];
    REQUIRE(posix_memalign(&mem, 4096, bytes + 4096) == 0);
    uint8_t *buf = mem; /* [bytes + 4096]: room for the misaligned try */
    for (int cached = 0; cached < 2; cached++) {
        set_cached(f, cached);
        memset(buf, 0, bytes);
        CHECK(!store_read_tensors(s, &one, buf, bytes, data, &e), " %s", e.message);
        for (int i = 0; i < N_TENSORS; i++)
            for (uint64_t k = 0; k < n_floats(i); k++) {
                uint32_t v;
                memcpy(&v, (const uint8_t *)data[i] + 4 * k, 4);
                if (v != word(i, k)) {
                    CHECK(false, " tensor %d differs at %llu (%s)", i, (unsigned long long)k, cached ? "cached" : "cold");
                    break;
                }
            }
    }
    CHECK(store_read_tensors(s, &one, buf + 512, bytes, data, &e) == STRATA_E_INVALID && strstr(e.message, "aligned"),
          " a misaligned buffer: %s", e.message);
    free(buf);
    store_close(s);
    gguf_close(f);
}

/* ---- the store executes the placement it is given ---- */

/* Opens the store with groups resident as `resident` says (prefetch depth
 * 1, cfg.budget `budget`); *min: the budget it reports it needs. */
static store *open_placed(const gguf_file *f, groups *gr, const bool *resident, uint64_t budget, uint64_t *min,
                          strata_status *rc)
{
    store_config cfg = {.io_threads = 2, .prefetch_depth = 1, .resident = resident, .budget = budget};
    store *s = NULL;
    strata_error e;
    *rc = store_open(f, N_GROUPS, gr->g, &cfg, &s, min, &e);
    return s;
}

/* Group 1 alone resident (no budget: everything would fit), groups 0 and
 * 2 resident under exactly the budget that takes, and group 1 alone again
 * under a budget that holds every group resident but not that placement:
 * the store keeps each given residency, builds a ring of min(depth + 1,
 * streamed) slots of the largest streamed group, and refuses rather than
 * place the weights another way. */
TEST(test_store_executes_the_given_placement)
{
    gguf_file *f = make_model(1);
    if (!f) return;
    groups gr;
    make_groups(f, &gr);
    uint64_t b[N_GROUPS], min = 0;
    strata_error e;
    for (int g = 0; g < N_GROUPS; g++) REQUIRE(!store_group_bytes(f, &gr.g[g], &b[g], &e), " %s", e.message);
    strata_status rc;
    const bool middle[N_GROUPS] = {false, true, false}, ends[N_GROUPS] = {true, false, true};
    store *s = open_placed(f, &gr, middle, 0, &min, &rc);
    REQUIRE(rc == STRATA_OK);
    store_stats st = store_get_stats(s);
    uint64_t largest = b[0] > b[2] ? b[0] : b[2];
    CHECK(st.resident_bytes == b[1] && st.n_streamed_groups == 2 && st.n_slots == 2 && st.slot_bytes == 2 * largest,
          " resident %llu of %llu, %u streamed, %u slots of %llu", (unsigned long long)st.resident_bytes,
          (unsigned long long)b[1], st.n_streamed_groups, st.n_slots, (unsigned long long)st.slot_bytes);
    CHECK(!store_resident_data(s, 0) && store_resident_data(s, 1) && !store_resident_data(s, 2));
    CHECK(bytes_match(s), " the placed groups' bytes differ from the file");
    store_close(s);
    uint64_t row = store_row_buffer_bytes(f), all = row + b[0] + b[1] + b[2]; /* ends: one slot of group 1 */
    s = open_placed(f, &gr, ends, all, &min, &rc);
    REQUIRE(rc == STRATA_OK && min == all, " rc %d, needs %llu of %llu", rc, (unsigned long long)min,
            (unsigned long long)all);
    st = store_get_stats(s);
    CHECK(st.resident_bytes == b[0] + b[2] && st.n_slots == 1 && st.slot_bytes == b[1] && bytes_match(s));
    store_close(s);
    uint64_t need = row + b[1] + 2 * largest;
    REQUIRE(need > all, " the groups' sizes no longer make the middle placement the larger");
    s = open_placed(f, &gr, middle, all, &min, &rc);
    CHECK(rc == STRATA_E_NOMEM && !s && min == need, " rc %d, needs %llu of %llu", rc, (unsigned long long)min,
          (unsigned long long)need);
    store_close(s);
    gguf_close(f);
}

/* ---- the watchdog's room checks while reads are in flight ---- */

/* The third sample (group 2's check) finds no room: loading waits for the
 * reads in flight and leaves the last groups to streaming; every byte is
 * still right, resident or streamed. */
static bool short_at_third(void *ctx, store_pressure *out)
{
    atomic_uint *calls = ctx;
    bool room = atomic_fetch_add(calls, 1) != 2;
    *out = (store_pressure){.headroom = room ? 1ull << 30 : 0, .limit = 1ull << 30};
    return true;
}

TEST(test_store_load_room_runs_out_with_reads_in_flight)
{
    gguf_file *f = make_model(1);
    if (!f) return;
    groups gr;
    make_groups(f, &gr);
    atomic_uint calls = 0;
    store_watchdog_config wc = {.period_ms = 600000, .low_water = 1024 * KiB, .source = short_at_third,
                                .source_ctx = &calls, .quiet = true}; /* the thread never samples */
    store_config cfg = {.io_threads = 3, .load_chunk = 64 * KiB, .watchdog = true, .watchdog_cfg = &wc};
    store *s = NULL;
    strata_error e;
    REQUIRE(!store_open(f, N_GROUPS, gr.g, &cfg, &s, NULL, &e), " %s", e.message);
    store_stats st = store_get_stats(s);
    CHECK(st.n_streamed_groups >= 1 && st.load_bytes >= st.resident_bytes,
          " %u streamed, %llu loaded", st.n_streamed_groups, (unsigned long long)st.load_bytes);
    CHECK(bytes_match(s), " bytes differ from the file");
    store_close(s);
    gguf_close(f);
}

/* ---- a read error ---- */

typedef struct fault_ctx {
    atomic_uint_fast64_t calls;
    uint64_t fail_at;
} fault_ctx;

static int fail_nth(void *ctx, uint32_t split, uint64_t offset, uint64_t length)
{
    fault_ctx *c = ctx;
    uint64_t n = atomic_fetch_add(&c->calls, 1) + 1;
    if (n == c->fail_at) return EIO;
    usleep((useconds_t)((n * 7919 + offset / 4096) % 400)); /* reads finish out of order */
    return 0;
}

/* The Nth read fails: the open fails with one line naming the part and
 * the offset, every read in flight waited for (ASan: nothing lands in
 * freed memory), nothing leaked. */
TEST(test_store_load_read_error_names_the_file)
{
    gguf_file *f = make_model(3);
    if (!f) return;
    groups gr;
    make_groups(f, &gr);
    for (uint64_t n = 1; n <= 25; n += 6) {
        fault_ctx fc = {.fail_at = n};
        store_config cfg = {.io_threads = 3, .load_chunk = 64 * KiB, .fault = fail_nth, .fault_ctx = &fc};
        store *s = NULL;
        strata_error e;
        strata_status rc = store_open(f, N_GROUPS, gr.g, &cfg, &s, NULL, &e);
        CHECK(rc == STRATA_E_IO && !s && strstr(e.message, "-of-00003.gguf: read failed at offset") &&
                  strstr(e.message, "Input/output error") && !strchr(e.message, '\n'),
              " read %llu: rc %d: %s", (unsigned long long)n, rc, rc ? e.message : "no error");
        if (!rc) store_close(s);
    }
    gguf_close(f);
}

/* ---- claims between loaders of different processes (load_claim.c) ---- */

/* A child that claims `bytes` in the file at path and then waits for
 * SIGKILL (stay) or exits. held: the parent's locked descriptor (-1:
 * none), closed in the child, else its copy would keep the lock. */
static pid_t claimant(const char *path, uint64_t bytes, bool stay, int held)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    if (held >= 0) close(held);
    load_claims c;
    load_claims_open(&c, path);
    load_claims_lock(&c);
    load_claims_set(&c, bytes, false);
    load_claims_close(&c);
    if (stay) pause();
    _exit(0);
}

/* What others claimed counts while they live and for the hold; a dead
 * process's and this process's own do not; the lock shuts out the others
 * (a child cannot claim while it is held). */
TEST(test_store_load_claims_of_other_processes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/claims", test_tmpdir());
    unlink(path);
    load_claims c;
    load_claims_open(&c, path);
    load_claims_lock(&c);
    REQUIRE(c.fd >= 0 && c.locked, " cannot lock %s", path);
    CHECK(load_claims_others(&c) == 0, " a new file holds claims");
    load_claims_set(&c, 5 * KiB, true);
    CHECK(load_claims_others(&c) == 0, " this process's own claim counts as another's");
    pid_t live = claimant(path, 7 * KiB, true, c.fd);
    usleep(200 * 1000);
    CHECK(load_claims_others(&c) == 0, " a child claimed while the lock was held");
    load_claims_close(&c);
    pid_t dead = claimant(path, 11 * KiB, false, -1);
    waitpid(dead, NULL, 0);
    uint64_t others = 0;
    for (int i = 0; i < 200 && others != 7 * KiB; i++) { /* the live child claims once it gets the lock */
        usleep(10 * 1000);
        load_claims_open(&c, path);
        others = load_claims_others(&c);
        load_claims_close(&c);
    }
    CHECK(others == 7 * KiB, " others claim %llu bytes, want the live child's 7 KiB only", (unsigned long long)others);
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);
    load_claims_open(&c, path);
    CHECK(load_claims_others(&c) == 0, " a killed process's claim still counts");
    /* a damaged record (the file's layout: int32 pid, 4 bytes, uint64
     * bytes, int64 end in CLOCK_MONOTONIC ns) of a live process, claiming
     * more than any machine has until the far future, counts for nothing */
    struct {
        int32_t pid;
        uint32_t unused;
        uint64_t bytes;
        int64_t until_ns;
    } bad = {(int32_t)getppid(), 0, 1ull << 60, INT64_MAX};
    CHECK(pwrite(c.fd, &bad, sizeof bad, 5 * sizeof bad) == (ssize_t)sizeof bad);
    CHECK(load_claims_others(&c) == 0, " a damaged record counts");
    load_claims_close(&c);
    unlink(path);
}

/* mem_map hands back memory already faulted in (the account and the
 * watchdog count it as taken at once), whether one thread faults it or
 * several share it (64 MiB and more): mincore finds every page resident. */
TEST(test_store_mem_map_faults_in_every_page)
{
    static const uint64_t sizes[] = {4 * KiB, 1024 * KiB, 64 * 1024 * KiB + 4 * KiB, 97 * 1024 * KiB + 12 * KiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t len = mem_len(sizes[i]), pages = len / 4096, missing = 0;
        uint8_t *p = mem_map(sizes[i]);
        REQUIRE(p != NULL, " mem_map(%llu)", (unsigned long long)sizes[i]);
        unsigned char *vec = malloc(pages);
        REQUIRE(vec && mincore(p, len, vec) == 0, " mincore");
        for (uint64_t k = 0; k < pages; k++) missing += !(vec[k] & 1);
        CHECK(missing == 0, " %llu bytes: %llu of %llu pages not faulted in", (unsigned long long)sizes[i],
              (unsigned long long)missing, (unsigned long long)pages);
        free(vec);
        mem_unmap(p, sizes[i]);
    }
}
