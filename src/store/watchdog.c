/* The memory-pressure watchdog: a thread that samples this process's
 * memory pressure every period (cgroup headroom, MemAvailable, PSI stalls,
 * limit events: hw_pressure_read), decides (wd_decide) and asks the store
 * to shrink or grow its resident set (reshape.c), which happens at the
 * next safe point.
 *
 * Between samples it sleeps in poll() on a PSI trigger where the kernel
 * registers one (hw_psi_trigger_open): a memory stall wakes it at once.
 * Sampling goes on with the trigger too, because a falling headroom (a
 * cgroup filling up, MemAvailable dropping) stalls nobody until reclaim
 * starts, and the point is to give memory back before that. Without a
 * trigger (no PSI, a fixture root) the samples alone drive it.
 *
 * STRATA_PRESSURE_ROOT=DIR (tests) reads the pressure files under DIR
 * instead of the live system: DIR/proc/meminfo, DIR/proc/pressure/memory
 * and the cgroup files there, so a test can stage pressure by rewriting a
 * file rather than filling the machine's memory. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hw/hw.h"
#include "store/store_internal.h"
#include "store/watchdog.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fmt.h"

#define MiB (1ull << 20)

struct store_watchdog {
    store *s;
    store_watchdog_config cfg;
    pthread_t thread;
    int wake[2];           /* a pipe: stop writes a byte, the thread's poll() returns */
    hw_psi_trigger psi;    /* fd -1: sampling alone */
    bool started;
    wd_state st;
    bool warned;           /* "nothing left to move" said once */
    /* the default source */
    hw_pressure_src src;
    bool has_prev;
    uint64_t prev_stall_us, prev_events;
    double prev_t;
};

wd_policy wd_policy_for(const store_watchdog_config *c, uint64_t limit)
{
    uint64_t low = limit == UINT64_MAX ? 64 * MiB : limit / 16;
    low = low < 16 * MiB ? 16 * MiB : low > 256 * MiB ? 256 * MiB : low;
    if (c->low_water) low = c->low_water;
    uint64_t high = c->high_water > low ? c->high_water : 2 * low;
    return (wd_policy){low, high, (c->grow_after_ms > 0 ? c->grow_after_ms : 2000) / 1e3};
}

void wd_state_init(wd_state *st) { *st = (wd_state){-1, -1, 0}; }

wd_action wd_decide(const wd_policy *p, wd_state *st, const store_pressure *x, double now, uint64_t *bytes)
{
    bool stall = x->stall >= WD_STALL;
    uint64_t target = p->low + (p->high - p->low) / 2;
    /* someone allocating fast takes as much again before the next sample:
     * shrink for where the headroom will be, not where it is */
    uint64_t drop = st->prev_headroom > x->headroom ? st->prev_headroom - x->headroom : 0;
    uint64_t ahead = x->headroom > drop ? x->headroom - drop : 0;
    st->prev_headroom = x->headroom;
    *bytes = 0;
    if (ahead < p->low || (stall && x->headroom < p->high)) {
        *bytes = ahead < target ? target - ahead : 0;
        if (stall && *bytes < p->low / 2) *bytes = p->low / 2;
        st->calm_since = -1;
        st->last_shrink = now;
        return WD_SHRINK;
    }
    uint64_t firm = x->headroom - x->cache; /* growing takes no page cache */
    if (firm <= p->high || stall || x->events) {
        st->calm_since = -1;
        return WD_NONE;
    }
    if (st->calm_since < 0) st->calm_since = now;
    bool calm = now - st->calm_since >= p->grow_after_s;
    bool settled = st->last_shrink < 0 || now - st->last_shrink >= p->grow_after_s;
    if (!calm || !settled) return WD_NONE;
    st->calm_since = now; /* one step per stretch: the next sample sees its effect */
    *bytes = firm - p->high;
    return WD_GROW;
}

/* ---- the default source: hw_pressure_read ---- */

static bool hw_source(void *ctx, store_pressure *out)
{
    struct store_watchdog *w = ctx;
    hw_pressure p;
    if (!hw_pressure_read(&w->src, &p) || p.headroom == HW_NO_LIMIT) return false;
    double now = clock_seconds();
    const hw_psi *psi = p.has_cgroup_psi ? &p.cgroup_psi : p.has_system_psi ? &p.system_psi : NULL;
    uint64_t stall_us = psi ? psi->some_total : 0;
    uint64_t events = p.has_events ? p.events.high + p.events.max + p.events.oom : 0;
    *out = (store_pressure){.headroom = p.headroom, .limit = p.limit};
    if (p.has_cgroup && p.headroom == p.cgroup.headroom) /* the cgroup binds: its page cache is in it */
        out->cache = p.cgroup.reclaimable < p.headroom ? p.cgroup.reclaimable : p.headroom;
    if (w->has_prev && now > w->prev_t && stall_us >= w->prev_stall_us) {
        double f = (double)(stall_us - w->prev_stall_us) / 1e6 / (now - w->prev_t);
        out->stall = f > 1 ? 1 : f;
    }
    out->events = w->has_prev && events > w->prev_events;
    w->has_prev = true;
    w->prev_t = now;
    w->prev_stall_us = stall_us;
    w->prev_events = events;
    return true;
}

void store_watchdog_note(store *s, bool trigger, bool wakeup)
{
    pthread_mutex_lock(&s->lock);
    s->rs.psi_trigger = trigger;
    s->rs.psi_wakeups += wakeup;
    pthread_mutex_unlock(&s->lock);
}

/* ---- the thread ---- */

static void step(struct store_watchdog *w)
{
    store_pressure x;
    store_pressure_fn source = w->cfg.source ? w->cfg.source : hw_source;
    double now = clock_seconds();
    if (!source(w->cfg.source ? w->cfg.source_ctx : w, &x)) return;
    wd_policy p = wd_policy_for(&w->cfg, x.limit);
    uint64_t bytes;
    wd_action a = wd_decide(&p, &w->st, &x, now, &bytes);
    if (a == WD_SHRINK && !store_shrink(w->s, bytes, x.headroom, now) && !w->warned && !w->cfg.quiet) {
        char b[32];
        fprintf(stderr, "strata: memory pressure: headroom %s and every layer is streamed already; "
                "nothing left to give back\n", fmt_bytes(x.headroom, b, sizeof b));
        w->warned = true;
    }
    if (a == WD_GROW) store_grow(w->s, bytes, x.headroom);
}

/* A PSI event wakes the thread at once; the samples come every period
 * whatever happens. POLLERR on the trigger (its cgroup went away): back
 * to sampling alone. */
static void *run(void *arg)
{
    struct store_watchdog *w = arg;
    int period = w->cfg.period_ms > 0 ? w->cfg.period_ms : 100;
    double next = clock_seconds() + period / 1e3;
    for (;;) {
        struct pollfd fds[2] = {{.fd = w->wake[0], .events = POLLIN}, {.fd = w->psi.fd, .events = POLLPRI}};
        double left = next - clock_seconds();
        int r = poll(fds, w->psi.fd >= 0 ? 2 : 1, left > 0 ? (int)(left * 1e3) + 1 : 0);
        if (r < 0 && errno != EINTR) break;
        if (fds[0].revents) break; /* stop */
        bool event = w->psi.fd >= 0 && (fds[1].revents & POLLPRI);
        if (w->psi.fd >= 0 && (fds[1].revents & (POLLERR | POLLNVAL))) {
            hw_psi_trigger_close(&w->psi);
            store_watchdog_note(w->s, false, false);
        }
        if (!event && clock_seconds() < next) continue;
        if (event) store_watchdog_note(w->s, true, true);
        step(w);
        next = clock_seconds() + period / 1e3;
    }
    return NULL;
}

/* The trigger: a stall of a tenth of a 2 s window (WD_STALL's share). */
static void open_trigger(struct store_watchdog *w)
{
    char why[HW_PATH_MAX + 128];
    w->psi.fd = -1;
    if (w->cfg.source || !hw_psi_trigger_open(&w->src, (uint32_t)(WD_STALL * 2e6), 2000000, &w->psi, why, sizeof why)) {
        if (!w->cfg.source && getenv("STRATA_WATCHDOG_DEBUG"))
            fprintf(stderr, "strata: watchdog: no PSI trigger (%s); sampling every period\n", why);
        return;
    }
    store_watchdog_note(w->s, true, false);
}

strata_status store_watchdog_create(store *s, strata_error *err)
{
    struct store_watchdog *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, STRATA_E_NOMEM, "out of memory");
    w->s = s;
    if (s->cfg.watchdog_cfg) w->cfg = *s->cfg.watchdog_cfg;
    wd_state_init(&w->st);
    w->wake[0] = w->wake[1] = -1;
    w->psi.fd = -1;
    const char *root = getenv("STRATA_PRESSURE_ROOT"); /* tests: staged pressure files */
    if (!w->cfg.source) hw_pressure_open(root ? root : "", &w->src);
    s->rs.log = !w->cfg.quiet;
    s->wd = w; /* no thread yet: nobody else reads it */
    return STRATA_OK;
}

bool store_watchdog_room(store *s, uint64_t bytes, uint64_t *headroom)
{
    struct store_watchdog *w = s->wd;
    store_pressure x;
    *headroom = UINT64_MAX;
    if (!w || !(w->cfg.source ? w->cfg.source(w->cfg.source_ctx, &x) : hw_source(w, &x))) return true;
    wd_policy p = wd_policy_for(&w->cfg, x.limit);
    *headroom = x.headroom;
    return x.headroom >= p.low && x.headroom - p.low >= bytes;
}

bool store_watchdog_wait_room(store *s, uint64_t bytes, double timeout_s, uint64_t *headroom)
{
    struct store_watchdog *w = s->wd;
    store_pressure x;
    bool said = false;
    for (double t0 = clock_seconds();;) {
        *headroom = UINT64_MAX;
        if (!w || !(w->cfg.source ? w->cfg.source(w->cfg.source_ctx, &x) : hw_source(w, &x))) return true;
        *headroom = x.headroom;
        if (x.headroom >= bytes) return true;
        if (clock_seconds() - t0 >= timeout_s) return false;
        if (!said && s->rs.log) {
            char a[32], b[32];
            fprintf(stderr, "strata: memory pressure: waiting for %s for streaming slots (headroom %s)\n",
                    fmt_bytes(bytes, a, sizeof a), fmt_bytes(x.headroom, b, sizeof b));
            said = true;
        }
        struct timespec ts = {0, 50 * 1000000L}; /* others' watchdogs give memory back meanwhile */
        nanosleep(&ts, NULL);
    }
}

strata_status store_watchdog_start(store *s, strata_error *err)
{
    struct store_watchdog *w = s->wd;
    if (!w) return STRATA_OK;
    if (pipe2(w->wake, O_CLOEXEC) != 0)
        return err_set(err, STRATA_E_NOMEM, "cannot start the memory-pressure watchdog: pipe: %s", strerror(errno));
    open_trigger(w);
    w->started = pthread_create(&w->thread, NULL, run, w) == 0;
    if (!w->started) return err_set(err, STRATA_E_NOMEM, "cannot start the memory-pressure watchdog thread");
    return STRATA_OK;
}

void store_watchdog_stop(store *s)
{
    struct store_watchdog *w = s->wd;
    if (!w) return;
    if (w->started) {
        char b = 1;
        while (write(w->wake[1], &b, 1) < 0 && errno == EINTR) {}
        pthread_join(w->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (w->wake[i] >= 0) close(w->wake[i]);
    hw_psi_trigger_close(&w->psi);
    pthread_mutex_lock(&s->lock);
    s->wd = NULL;
    pthread_mutex_unlock(&s->lock);
    free(w);
}
