/* Memory claims between processes that load at the same time (the one
 * place the loader accounts memory it has not touched yet).
 *
 * Loading checks the headroom before it faults each resident group in, and
 * keeps room for the memory the caller touches after open (later_bytes: KV
 * caches). Two runs started together in one cgroup would each see the
 * other's headroom before either has faulted anything, and both fill it.
 * So a loader claims its later memory in a small shared file as it starts,
 * and takes the file's exclusive lock around each group's check and fault
 * (not its reads: loaders do not wait for each other's disk), subtracting
 * the live claims of others from its headroom. Each check then sees every
 * group faulted before it and every other loader's promised memory. When
 * loading ends the claim stays LOAD_CLAIM_HOLD_S more (by then its owner
 * has faulted the memory in, where it shows in the headroom itself;
 * counting both for a while only leaves more layers streamed, which the
 * watchdog undoes after calm); it lapses at once when its process exits.
 *
 * The file: [LOAD_CLAIM_SLOTS] records; one per process at most. A file
 * that cannot be opened (no /dev/shm or /tmp) means no claims: loading goes
 * on as a single process would. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "store/store_internal.h"

#define LOAD_CLAIM_SLOTS 64
#define LOAD_CLAIM_HOLD_S 5.0     /* after loading */
#define LOAD_CLAIM_LOADING_S 600.0 /* while loading (a stopped loader's claim lapses at last) */
#define LOAD_CLAIM_WAIT_S 120.0

typedef struct claim_record {
    int32_t pid;      /* 0: free */
    uint32_t unused;
    uint64_t bytes;   /* claimed, not faulted yet */
    int64_t until_ns; /* CLOCK_MONOTONIC (one clock for the whole machine) */
} claim_record;

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The default file: per user (another user's file is not ours to lock). */
static void default_path(char *out, size_t n)
{
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(out, n, "%s/strata-load-claims.%u", dir, (unsigned)getuid());
}

void load_claims_open(load_claims *c, const char *path)
{
    char buf[256];
    if (!path) default_path(buf, sizeof buf), path = buf;
    c->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    c->locked = false;
}

void load_claims_lock(load_claims *c)
{
    if (c->fd < 0) return;
    /* Others hold it for one check and fault: wait, but not forever (a
     * stopped process keeps its lock): past LOAD_CLAIM_WAIT_S, go on unlocked. */
    for (int64_t t0 = mono_ns(); flock(c->fd, LOCK_EX | LOCK_NB) != 0;) {
        if ((errno != EWOULDBLOCK && errno != EINTR) || mono_ns() - t0 > (int64_t)(LOAD_CLAIM_WAIT_S * 1e9)) return;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    c->locked = true;
}

void load_claims_unlock(load_claims *c)
{
    if (c->locked) flock(c->fd, LOCK_UN);
    c->locked = false;
}

/* Reads the records; a short or absent file reads as free records. */
static void read_records(const load_claims *c, claim_record *r)
{
    memset(r, 0, LOAD_CLAIM_SLOTS * sizeof *r);
    ssize_t got = pread(c->fd, r, LOAD_CLAIM_SLOTS * sizeof *r, 0);
    size_t n = got > 0 ? (size_t)got / sizeof *r : 0;
    memset(r + n, 0, (LOAD_CLAIM_SLOTS - n) * sizeof *r);
}

/* Whether record r holds a claim of a live process other than self. A
 * record no loader writes (an end past the longest hold, or more bytes
 * than an address space: a damaged file) counts as free. */
static bool live_other(const claim_record *r, int64_t now)
{
    if (r->pid <= 0 || r->pid == (int32_t)getpid() || r->until_ns <= now) return false;
    if (r->until_ns - now > (int64_t)(LOAD_CLAIM_LOADING_S * 1e9) || r->bytes > (1ull << 48)) return false;
    return kill(r->pid, 0) == 0 || errno == EPERM;
}

uint64_t load_claims_others(const load_claims *c)
{
    if (c->fd < 0) return 0;
    claim_record r[LOAD_CLAIM_SLOTS];
    read_records(c, r);
    uint64_t sum = 0;
    int64_t now = mono_ns();
    for (int i = 0; i < LOAD_CLAIM_SLOTS; i++)
        if (live_other(&r[i], now)) sum += r[i].bytes;
    return sum;
}

void load_claims_set(const load_claims *c, uint64_t bytes, bool loading)
{
    if (c->fd < 0) return;
    claim_record r[LOAD_CLAIM_SLOTS];
    read_records(c, r);
    int64_t now = mono_ns();
    int idx = -1;
    for (int i = 0; i < LOAD_CLAIM_SLOTS && idx < 0; i++) /* ours, else one that no longer counts */
        if (r[i].pid == (int32_t)getpid()) idx = i;
    for (int i = 0; i < LOAD_CLAIM_SLOTS && idx < 0; i++)
        if (!live_other(&r[i], now)) idx = i;
    if (idx < 0) return; /* 64 live loaders: this one goes unclaimed */
    r[idx] = (claim_record){.pid = (int32_t)getpid(), .bytes = bytes,
                             .until_ns = now + (int64_t)((loading ? LOAD_CLAIM_LOADING_S : LOAD_CLAIM_HOLD_S) * 1e9)};
    if (pwrite(c->fd, &r[idx], sizeof r[idx], (off_t)idx * (off_t)sizeof r[idx]) != (ssize_t)sizeof r[idx])
        return; /* unwritable: others do not see the claim (as without a file) */
}

void load_claims_close(load_claims *c)
{
    if (c->fd >= 0) close(c->fd); /* closing drops the lock */
    c->fd = -1;
    c->locked = false;
}
