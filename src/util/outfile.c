/* Atomic output files and the signal cleanup list of temporary files
 * (see outfile.h). The signal handler only calls unlink, sigaction and
 * raise, and reads a static array: all async-signal-safe. */
#include "util/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/error.h"

/* ---- the signal cleanup list ---- */

#define MAX_TEMP 16
#define TEMP_PATH_MAX 4096

static char temp_paths[MAX_TEMP][TEMP_PATH_MAX];
static volatile sig_atomic_t temp_used[MAX_TEMP];
static pthread_mutex_t temp_lock = PTHREAD_MUTEX_INITIALIZER;
static int temp_count;

static const int CLEANUP_SIGNALS[] = {SIGINT, SIGTERM, SIGHUP};
#define N_SIGNALS (sizeof CLEANUP_SIGNALS / sizeof CLEANUP_SIGNALS[0])
static struct sigaction saved_actions[N_SIGNALS];
static bool handled[N_SIGNALS];

static void on_cleanup_signal(int sig)
{
    int saved_errno = errno;
    for (int i = 0; i < MAX_TEMP; i++)
        if (temp_used[i]) unlink(temp_paths[i]);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig); /* blocked until this handler returns, then ends the process */
    errno = saved_errno;
}

/* With the first registered file: our handler, except where the signal is
 * ignored (nohup); with the last one gone, the previous handlers again. */
static void install_handlers(bool on)
{
    for (size_t i = 0; i < N_SIGNALS; i++) {
        if (on) {
            struct sigaction sa = {.sa_handler = on_cleanup_signal};
            sigemptyset(&sa.sa_mask);
            if (sigaction(CLEANUP_SIGNALS[i], NULL, &saved_actions[i]) != 0) continue;
            if (saved_actions[i].sa_handler == SIG_IGN) continue;
            handled[i] = sigaction(CLEANUP_SIGNALS[i], &sa, NULL) == 0;
        } else if (handled[i]) {
            sigaction(CLEANUP_SIGNALS[i], &saved_actions[i], NULL);
            handled[i] = false;
        }
    }
}

int tempfile_register(const char *path)
{
    size_t len = strlen(path);
    if (len >= TEMP_PATH_MAX) return -1;
    int slot = -1;
    pthread_mutex_lock(&temp_lock);
    for (int i = 0; i < MAX_TEMP && slot < 0; i++)
        if (!temp_used[i]) slot = i;
    if (slot >= 0) {
        memcpy(temp_paths[slot], path, len + 1);
        atomic_thread_fence(memory_order_seq_cst); /* the path before the flag */
        temp_used[slot] = 1;
        if (temp_count++ == 0) install_handlers(true);
    }
    pthread_mutex_unlock(&temp_lock);
    return slot;
}

void tempfile_unregister(int slot)
{
    if (slot < 0 || slot >= MAX_TEMP) return;
    pthread_mutex_lock(&temp_lock);
    if (temp_used[slot]) {
        temp_used[slot] = 0;
        atomic_thread_fence(memory_order_seq_cst);
        if (--temp_count == 0) install_handlers(false);
    }
    pthread_mutex_unlock(&temp_lock);
}

/* ---- output files ---- */

/* What an existing target allows: 0 missing or regular (write a temporary
 * file and rename), 1 written directly, -1 refused (err set). */
static int target_kind(const char *path, strata_error *err)
{
    struct stat sb;
    if (!*path) { /* stat("") fails with ENOENT, which would pass for a new file */
        err_set(err, STRATA_E_INVALID, "'' is an empty path, not a file to write");
        return -1;
    }
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return 0;
        err_set(err, STRATA_E_IO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISREG(sb.st_mode)) return 0;
    if (S_ISCHR(sb.st_mode) || S_ISFIFO(sb.st_mode)) return 1;
    err_set(err, STRATA_E_INVALID, "%s: %s, not a file to write", path,
            S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file");
    return -1;
}

strata_status outfile_check(const char *path, strata_error *err)
{
    return target_kind(path, err) < 0 ? err->status : STRATA_OK;
}

/* Six characters of the name, different per call and per process. */
static void random_suffix(char *out)
{
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static atomic_uint counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
                 ((uint64_t)atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    for (int i = 0; i < 6; i++, x /= 62) out[i] = digits[x % 62];
    out[6] = '\0';
}

/* PATH.tmpXXXXXX, created with O_EXCL (like mkstemp, which it is but for
 * the mode: 0666 less the umask, as fopen would give the target). */
static int create_temp(outfile *f, strata_error *err)
{
    size_t len = strlen(f->path);
    if (!(f->tmp = malloc(len + 11))) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", f->path), -1;
    memcpy(f->tmp, f->path, len);
    memcpy(f->tmp + len, ".tmp", 4);
    for (int tries = 0; tries < 100; tries++) {
        random_suffix(f->tmp + len + 4);
        int fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) {
            if (fd < 0) {
                f->tmp[len + 4] = '\0';
                err_set(err, STRATA_E_IO, "%s: cannot create a temporary file: %s", f->tmp, strerror(errno));
            }
            return fd;
        }
    }
    f->tmp[len + 4] = '\0';
    err_set(err, STRATA_E_IO, "%s: cannot create a temporary file: names all taken", f->tmp);
    return -1;
}

static void outfile_clear(outfile *f)
{
    free(f->path);
    free(f->tmp);
    *f = (outfile){.slot = -1};
}

strata_status outfile_open(outfile *f, const char *path, strata_error *err)
{
    *f = (outfile){.slot = -1};
    int kind = target_kind(path, err);
    if (kind < 0) return err->status;
    if (!(f->path = strdup(path))) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    int fd = kind ? open(path, O_WRONLY | O_CLOEXEC) : create_temp(f, err);
    if (fd < 0) {
        if (kind) err_set(err, STRATA_E_IO, "%s: cannot open: %s", path, strerror(errno));
        strata_status st = err->status;
        outfile_clear(f);
        return st;
    }
    if (f->tmp) f->slot = tempfile_register(f->tmp);
    if (!(f->fp = fdopen(fd, "wb"))) {
        strata_status st = err_set(err, STRATA_E_NOMEM, "%s: %s", outfile_name(f), strerror(errno));
        close(fd);
        outfile_abort(f);
        return st;
    }
    return STRATA_OK;
}

const char *outfile_name(const outfile *f)
{
    return f->tmp ? f->tmp : f->path;
}

void outfile_abort(outfile *f)
{
    if (f->fp) fclose(f->fp);
    if (f->tmp) unlink(f->tmp);
    tempfile_unregister(f->slot);
    outfile_clear(f);
}

/* Syncing a device or a pipe means nothing (and fails on some). */
static bool flush_and_close(outfile *f)
{
    bool ok = fflush(f->fp) == 0 && !ferror(f->fp);
    if (ok && f->tmp && fsync(fileno(f->fp)) != 0) ok = false;
    int saved = errno;
    if (fclose(f->fp) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    f->fp = NULL;
    errno = saved;
    return ok;
}

strata_status outfile_commit(outfile *f, strata_error *err)
{
    if (!f->fp) return err_set(err, STRATA_E_INVALID, "output file not open");
    strata_status st = STRATA_OK;
    int kind = 0;
    if (!flush_and_close(f))
        st = err_set(err, STRATA_E_IO, "%s: write failed: %s", outfile_name(f), strerror(errno));
    else if (f->tmp && (kind = target_kind(f->path, err)) != 0) /* changed meanwhile */
        st = kind < 0 ? err->status
                      : err_set(err, STRATA_E_IO, "%s: became a device or FIFO while writing; not replaced", f->path);
    else if (f->tmp && rename(f->tmp, f->path) != 0)
        st = err_set(err, STRATA_E_IO, "%s: cannot rename from %s: %s", f->path, f->tmp, strerror(errno));
    else {
        free(f->tmp); /* renamed: nothing to remove */
        f->tmp = NULL;
    }
    outfile_abort(f);
    return st;
}

strata_status outfile_write_text(const char *path, const char *text, strata_error *err)
{
    outfile o;
    strata_status st = outfile_open(&o, path, err);
    if (st) return st;
    if (fputs(text, o.fp) < 0 || fputc('\n', o.fp) == EOF) {
        int e = errno;
        outfile_abort(&o);
        return err_set(err, STRATA_E_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return outfile_commit(&o, err);
}
