/* Output files and signals (issue 15, "Files"): temporary files of their
 * own next to the target, never a symlink followed or a device replaced,
 * temporary files removed on Ctrl-C, and Ctrl-C ending `strata run`'s
 * generation with the statistics line and exit status 130. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gguf_helpers.h"
#include "test.h"
#include "util/outfile.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Entries of dir (not . and ..) whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !strncmp(e->d_name, prefix, strlen(prefix)))
            n++;
    closedir(d);
    return n;
}

/* A writer holding one F32 tensor of 4096 values v, open at path. */
static gguf_writer *open_writer(const char *path, float v, strata_error *e)
{
    gguf_writer *w = gguf_writer_new();
    uint64_t ne[1] = {4096};
    if (!w || gguf_writer_set_f32(w, "test.value", v, e) || gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne, e) ||
        gguf_writer_open(w, path, e)) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

static bool write_values(gguf_writer *w, float v, size_t from, size_t to, strata_error *e)
{
    float buf[512];
    for (size_t i = 0; i < 512; i++) buf[i] = v;
    for (size_t i = from; i < to; i += 512)
        if (gguf_writer_write(w, buf, sizeof buf, e)) return false;
    return true;
}

TEST(test_files_concurrent_writers_do_not_mix)
{
    char path[1024], ref[1024];
    strata_error e;
    snprintf(ref, sizeof ref, "%s/ref.gguf", test_tmpdir());
    gguf_writer *r = open_writer(ref, 2.0f, &e);
    REQUIRE(r && write_values(r, 2.0f, 0, 4096, &e) && !gguf_writer_close(r, &e), " %s", e.message);
    gguf_writer_free(r);
    /* Two writers to one target, interleaved: the last to finish wins whole. */
    snprintf(path, sizeof path, "%s/x.gguf", test_tmpdir());
    gguf_writer *a = open_writer(path, 1.0f, &e), *b = open_writer(path, 2.0f, &e);
    REQUIRE(a && b, " %s", e.message);
    CHECK(count_entries(test_tmpdir(), "x.gguf.tmp") == 2, " the writers share a temporary file");
    CHECK(write_values(a, 1.0f, 0, 2048, &e) && write_values(b, 2.0f, 0, 2048, &e));
    CHECK(write_values(a, 1.0f, 2048, 4096, &e) && !gguf_writer_close(a, &e), " %s", e.message);
    CHECK(write_values(b, 2.0f, 2048, 4096, &e) && !gguf_writer_close(b, &e), " %s", e.message);
    gguf_writer_free(a);
    gguf_writer_free(b);
    size_t n, m;
    uint8_t *got = read_whole_file(path, &n), *want = read_whole_file(ref, &m);
    CHECK(got && want && n == m && !memcmp(got, want, n), " the target mixes the two writers");
    CHECK(count_entries(test_tmpdir(), "x.gguf.tmp") == 0, " temporary file left");
    free(got);
    free(want);
}

TEST(test_files_symlink_at_tmp_name_is_not_followed)
{
    char path[1024], link[1100], victim[1024];
    snprintf(path, sizeof path, "%s/y.gguf", test_tmpdir());
    snprintf(link, sizeof link, "%s.tmp", path);
    snprintf(victim, sizeof victim, "%s/victim", test_tmpdir());
    FILE *f = fopen(victim, "w");
    REQUIRE(f && fputs("keep", f) >= 0 && fclose(f) == 0);
    REQUIRE(symlink(victim, link) == 0);
    strata_error e;
    gguf_writer *w = open_writer(path, 3.0f, &e);
    REQUIRE(w, " %s", e.message);
    CHECK(write_values(w, 3.0f, 0, 4096, &e) && !gguf_writer_close(w, &e), " %s", e.message);
    gguf_writer_free(w);
    size_t n;
    uint8_t *v = read_whole_file(victim, &n);
    CHECK(v && n == 4 && !memcmp(v, "keep", 4), " the file behind the symlink was overwritten");
    free(v);
    struct stat sl, sp;
    char target[1024] = {0};
    CHECK(lstat(link, &sl) == 0 && S_ISLNK(sl.st_mode) && readlink(link, target, sizeof target - 1) > 0 &&
              !strcmp(target, victim),
          " the symlink was touched");
    CHECK(lstat(path, &sp) == 0 && S_ISREG(sp.st_mode), " no regular file at the target");
}

TEST(test_files_outfile_targets)
{
    outfile f;
    strata_error e;
    CHECK(outfile_open(&f, test_tmpdir(), &e) != STRATA_OK && strstr(e.message, "a directory") &&
              strstr(e.message, test_tmpdir()),
          " %s", e.message);
    CHECK(outfile_check(test_tmpdir(), &e) != STRATA_OK);
    /* An empty path is refused before any work, not at the final rename. */
    CHECK(outfile_check("", &e) == STRATA_E_INVALID && strstr(e.message, "empty path"), " %s", e.message);
    CHECK(outfile_open(&f, "", &e) != STRATA_OK && strstr(e.message, "empty path"), " %s", e.message);
    /* A character device is written directly, never replaced. */
    REQUIRE(outfile_open(&f, "/dev/null", &e) == STRATA_OK, " %s", e.message);
    CHECK(f.tmp == NULL && fputs("x", f.fp) >= 0);
    CHECK(outfile_commit(&f, &e) == STRATA_OK, " %s", e.message);
    struct stat sb;
    CHECK(stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode));
    /* abort leaves nothing. */
    char path[1024];
    snprintf(path, sizeof path, "%s/z.bin", test_tmpdir());
    REQUIRE(outfile_open(&f, path, &e) == STRATA_OK, " %s", e.message);
    CHECK(f.tmp && strstr(f.tmp, "z.bin.tmp") && fputs("x", f.fp) >= 0);
    outfile_abort(&f);
    CHECK(count_entries(test_tmpdir(), "z.bin") == 0, " abort left a file");
}

/* A registered temporary file is removed by SIGINT, which still ends the
 * process; unregistering the last one restores the previous handler. */
TEST(test_files_signal_removes_registered_temp)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/t.tmp", test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f && fclose(f) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        signal(SIGINT, SIG_DFL); /* a background run of the tests inherits it ignored */
        int s = tempfile_register(path);
        tempfile_unregister(s);
        struct sigaction sa;
        if (sigaction(SIGINT, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL) _exit(3);
        if (tempfile_register(path) < 0) _exit(4);
        raise(SIGINT);
        _exit(5); /* not reached */
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, " status %#x", status);
    CHECK(access(path, F_OK) != 0, " the temporary file survived the signal");
}

/* Starts `exec CMD` in a shell and returns its pid (the command's own). */
static pid_t spawn(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL); /* as from a terminal, even when the tests run in the background */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

TEST(test_files_synth_refuses_directory_before_work)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s -q --preset 7b -o %s", test_synth_bin(), test_tmpdir());
    double t0 = now_s();
    CHECK(test_run(cmd, &out, true) == 1 && strstr(out, test_tmpdir()) && strstr(out, "a directory"), " %s", out);
    CHECK(now_s() - t0 < 10, " took %.1f s: generated first", now_s() - t0);
    CHECK(count_entries(test_tmpdir(), "") == 0, " output left");
    free(out);
}

TEST(test_files_synth_sigint_leaves_no_temp)
{
    char cmd[2048], path[1024];
    snprintf(path, sizeof path, "%s/big.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "exec %s -q --preset 7b --type q4_0 -t 2 -o %s", test_synth_bin(), path);
    pid_t pid = spawn(cmd);
    REQUIRE(pid > 0);
    double t0 = now_s();
    while (count_entries(test_tmpdir(), "big.gguf.tmp") < 1 && now_s() - t0 < 60 && waitpid(pid, NULL, WNOHANG) == 0)
        sleep_ms(10);
    bool writing = count_entries(test_tmpdir(), "big.gguf.tmp") == 1;
    sleep_ms(300); /* mid-write */
    kill(pid, SIGINT);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(writing, " no temporary file appeared");
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, " status %#x", status);
    CHECK(count_entries(test_tmpdir(), "") == 0, " %d files left", count_entries(test_tmpdir(), ""));
}

TEST(test_files_logits_out_dev_full_keeps_device)
{
    if (geteuid() != 0) {
        test_skip("not root: /dev/full could not be replaced anyway");
        return;
    }
    struct stat before, after;
    if (stat("/dev/full", &before) != 0 || !S_ISCHR(before.st_mode)) {
        test_skip("no /dev/full character device");
        return;
    }
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p 'Once upon a time' --logits-out /dev/full", test_strata_bin(), p);
    CHECK(test_run(cmd, &out, true) == 1 && strstr(out, "/dev/full") && strstr(out, "No space left"), " %s", out);
    free(out);
    CHECK(stat("/dev/full", &after) == 0 && S_ISCHR(after.st_mode) && after.st_rdev == before.st_rdev,
          " /dev/full was replaced");
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

TEST(test_files_run_sigint_prints_stats_and_exits_130)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) {
        fprintf(stderr, "test_files: stories260K.gguf absent: the Ctrl-C test of strata run is skipped\n");
        return;
    }
    char cmd[3072], out[1024], err[1024];
    snprintf(out, sizeof out, "%s/out.txt", test_tmpdir());
    snprintf(err, sizeof err, "%s/err.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "exec %s run -m '%s' -p 'Once upon a time' -n 100000 -c 2048 --ignore-eos -t 1 >%s 2>%s",
             test_strata_bin(), p, out, err);
    pid_t pid = spawn(cmd);
    REQUIRE(pid > 0);
    double t0 = now_s();
    while (file_size(out) < 200 && now_s() - t0 < 60 && waitpid(pid, NULL, WNOHANG) == 0) sleep_ms(20);
    kill(pid, SIGINT);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    size_t n;
    char *text = (char *)read_whole_file(err, &n);
    char *s = text ? realloc(text, n + 1) : NULL;
    if (s) s[n] = '\0';
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 130, " status %#x: %s", status, s ? s : "");
    CHECK(s && strstr(s, "interrupted") && strstr(s, "generated") && strstr(s, "tok/s"), " %s", s ? s : "");
    free(s ? s : text);
}
