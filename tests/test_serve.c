/* `strata serve`: the request parser, the answers' JSON and the metrics
 * text on their own, then the server end to end on loopback (curl, raw
 * sockets, the official OpenAI client when Node.js has it): endpoints,
 * every error status, streaming, a client that goes away, a bounded load
 * with the release binary's RSS within --mem, and SIGTERM. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/metrics.h"
#include "serve/openai_request.h"
#include "serve/openai_response.h"
#include "serve/server.h"
#include "serve/server_internal.h"
#include "test.h"

/* ---- the parser ---- */

static bool parse(const char *body, oai_kind kind, oai_request *r, char *msg, const char **param)
{
    strata_sampler_params d = strata_sampler_default_params();
    return oai_request_parse(body, strlen(body), kind, &d, r, msg, 256, param);
}

TEST(test_serve_request_parse_valid)
{
    oai_request r;
    char msg[256];
    const char *param;
    REQUIRE(parse("{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":"
                  "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],\"max_tokens\":7,"
                  "\"temperature\":0,\"top_p\":0.5,\"top_k\":3,\"min_p\":0.1,\"seed\":9,\"stop\":[\"x\",\"yy\"],"
                  "\"n\":1,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"logprobs\":null}",
                  OAI_CHAT, &r, msg, &param),
            " %s", msg);
    CHECK(r.n_messages == 2 && !strcmp(r.messages[0].role, "system") && !strcmp(r.messages[1].content, "ab"));
    CHECK(r.max_tokens == 7 && r.sampling.temp == 0 && r.sampling.top_p == 0.5f && r.sampling.top_k == 3);
    CHECK(r.seed_given && r.sampling.seed == 9 && r.n_stop == 2 && !strcmp(r.stop[1], "yy"));
    CHECK(r.stream && r.include_usage);
    oai_request_free(&r);
    REQUIRE(parse("{\"prompt\":[\"hello\"],\"max_completion_tokens\":-1,\"stop\":\"\\n\"}", OAI_COMPLETION, &r, msg,
                  &param),
            " %s", msg);
    CHECK(!strcmp(r.prompt, "hello") && r.unlimited && r.n_stop == 1 && !strcmp(r.stop[0], "\n") && !r.stream);
    CHECK(r.sampling.temp == strata_sampler_default_params().temp); /* the server's default */
    oai_request_free(&r);
    /* token ids, bare or as a one-prompt batch */
    for (int wrap = 0; wrap < 2; wrap++) {
        REQUIRE(parse(wrap ? "{\"prompt\":[[5,0,2147483647]]}" : "{\"prompt\":[5,0,2147483647]}", OAI_COMPLETION, &r,
                      msg, &param),
                " %s", msg);
        CHECK(!r.prompt && r.n_prompt_tokens == 3 && r.prompt_tokens[0] == 5 && r.prompt_tokens[1] == 0 &&
              r.prompt_tokens[2] == INT32_MAX);
        oai_request_free(&r);
    }
    REQUIRE(parse("{\"messages\":[{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"user\",\"content\":\"u\"},"
                  "{\"role\":\"assistant\",\"content\":null}]}",
                  OAI_CHAT, &r, msg, &param),
            " %s", msg);
    CHECK(!strcmp(r.messages[0].role, "system") && !strcmp(r.messages[2].content, ""));
    oai_request_free(&r);
}

TEST(test_serve_request_parse_errors_name_the_field)
{
    static const struct {
        oai_kind kind;
        const char *body, *param, *says;
    } cases[] = {
        {OAI_CHAT, "{\"messages\":[", NULL, "malformed JSON"},
        {OAI_CHAT, "[1,2]", NULL, "must be a JSON object"},
        {OAI_CHAT, "{}", "messages", "'messages'"},
        {OAI_CHAT, "{\"messages\":[]}", "messages", "'messages'"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages", "messages[0].role"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages", "messages[0].content"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages", "messages[0].content"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":null},{\"role\":\"user\",\"content\":\"x\"}]}",
         "messages", "messages[0].content"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages",
         "only text"},
        {OAI_COMPLETION, "{}", "prompt", "'prompt'"},
        {OAI_COMPLETION, "{\"prompt\":[1,2.5]}", "prompt", "'prompt[1]'"},
        {OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "'prompt'"},
        {OAI_COMPLETION, "{\"prompt\":[[1],[2]]}", "prompt", "'prompt'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":\"8\"}", "max_tokens", "'max_tokens'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens", "'max_tokens'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1.5}", "max_tokens", "integer"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", "temperature", "'temperature'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"temperature\":3}", "temperature", "from 0 to 2"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"top_p\":-1}", "top_p", "'top_p'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"top_k\":-1}", "top_k", "'top_k'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"min_p\":2}", "min_p", "'min_p'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"s\"}", "seed", "'seed'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"n\":2}", "n", "'n' must be 1"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"stop\":5}", "stop", "'stop'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "at most 4"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",7]}", "stop", "stop[1]"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", "stream", "'stream'"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":1}}", "stream_options",
         "include_usage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        oai_request r;
        char msg[256] = "";
        const char *param = "unset";
        bool ok = parse(cases[i].body, cases[i].kind, &r, msg, &param);
        CHECK(!ok, " %s parsed", cases[i].body);
        if (ok) oai_request_free(&r);
        CHECK(strstr(msg, cases[i].says), " %s: '%s' lacks '%s'", cases[i].body, msg, cases[i].says);
        CHECK(cases[i].param ? param && !strcmp(param, cases[i].param) : !param, " %s: param %s", cases[i].body,
              param ? param : "(null)");
    }
}

/* ---- the answers ---- */

static json_t *load(char *text)
{
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return doc;
}

static const char *jstr(json_t *doc, const char *path)
{
    /* "a.b.0.c": objects by key, arrays by index */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = doc;
    for (char *save, *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    return json_string_value(v);
}

static json_int_t jint(json_t *doc, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = doc;
    for (char *save, *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    return json_is_integer(v) ? json_integer_value(v) : -12345;
}

TEST(test_serve_response_json)
{
    oai_meta chat = {OAI_CHAT, "chatcmpl-1", "m.gguf", 5}, text = {OAI_COMPLETION, "cmpl-1", "m.gguf", 5};
    oai_usage u = {3, 4};
    json_t *d = load(oai_completion_json(&chat, "hi \xff", 4, "length", &u));
    CHECK(d && !strcmp(jstr(d, "object"), "chat.completion") && !strcmp(jstr(d, "choices.0.message.role"), "assistant"));
    CHECK(d && !strcmp(jstr(d, "choices.0.message.content"), "hi \xEF\xBF\xBD")); /* bad UTF-8 -> U+FFFD */
    CHECK(d && !strcmp(jstr(d, "choices.0.finish_reason"), "length") && jint(d, "usage.total_tokens") == 7);
    json_decref(d);
    d = load(oai_completion_json(&text, "abc", 3, "stop", &u));
    CHECK(d && !strcmp(jstr(d, "object"), "text_completion") && !strcmp(jstr(d, "choices.0.text"), "abc"));
    json_decref(d);
    char *ev = oai_chunk_event(&chat, true, "", 0, NULL);
    CHECK(ev && !strncmp(ev, "data: {", 7) && strstr(ev, "}\n\n") && strstr(ev, "\"role\":\"assistant\""), " %s", ev ? ev : "");
    d = ev ? json_loads(ev + 6, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    CHECK(d && !strcmp(jstr(d, "object"), "chat.completion.chunk") && json_is_null(json_object_get(
                                                                            json_array_get(json_object_get(d, "choices"), 0), "finish_reason")));
    json_decref(d);
    free(ev);
    ev = oai_usage_event(&chat, &u);
    CHECK(ev && strstr(ev, "\"choices\":[]") && strstr(ev, "\"total_tokens\":7"), " %s", ev ? ev : "");
    free(ev);
    d = load(oai_error_json(400, "'n' must be 1", "n"));
    CHECK(d && !strcmp(jstr(d, "error.type"), "invalid_request_error") && jint(d, "error.code") == 400 &&
          !strcmp(jstr(d, "error.param"), "n"));
    json_decref(d);
    d = load(oai_models_json("stories", 1));
    CHECK(d && !strcmp(jstr(d, "object"), "list") && !strcmp(jstr(d, "data.0.id"), "stories"));
    json_decref(d);
    CHECK(oai_utf8_complete("ab\xC3", 3) == 2 && oai_utf8_complete("ab\xC3\xA9", 4) == 4 &&
          oai_utf8_complete("\xF0\x9F\x98", 3) == 0 && oai_utf8_complete("x\xF0\x9F\x98\x80", 5) == 5);
}

TEST(test_serve_metrics_text)
{
    sched_stats s = {.prompt_tokens = 100, .decode_tokens = 50, .gen_tokens = 54, .prompt_seconds = 2, .gen_seconds = 5, .steps = 60,
                     .running = 3, .queued = 2, .requests_done = 7, .kv_used = 25, .kv_total = 100};
    strata_model_stats m = {.bytes_read = 1500, .io_busy_s = 1, .gpu_name = "", .gpu_note = ""};
    metrics_server srv = {.uptime_s = 4, .n_slots = 4, .http_requests = 9};
    char *t = metrics_text(&s, &m, &srv);
    REQUIRE(t);
    static const char *const want[] = {
        "# TYPE strata:prompt_tokens_total counter\nstrata:prompt_tokens_total 100\n",
        "strata:tokens_predicted_total 54\n", "strata:tokens_decoded_total 50\n", "strata:prompt_tokens_seconds 50\n",
        "strata:predicted_tokens_seconds 10\n", "strata:requests_processing 3\n", "strata:requests_deferred 2\n",
        "strata:kv_cache_usage_ratio 0.25\n", "strata:streamed_bytes_per_token 10\n", "strata:disk_busy_ratio 0.25\n",
        "strata:n_decode_total 60\n", "# HELP strata:http_requests_total ",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) CHECK(strstr(t, want[i]), " no '%s' in:\n%s", want[i], t);
    free(t);
}

/* What jansson holds while it parses, counted by allocation functions of
 * our own: each block as glibc's chunk for it (size + 8, rounded up to 16,
 * at least 32 bytes), the measure the bound was chosen with (mallinfo2). */
typedef struct counted_block {
    size_t size;
    size_t pad; /* keeps the user pointer 16-byte aligned */
} counted_block;

static size_t tree_now, tree_peak;

static size_t chunk_of(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static void *counted_malloc(size_t n)
{
    counted_block *b = malloc(sizeof *b + n);
    if (!b) return NULL;
    b->size = n;
    tree_now += chunk_of(n);
    if (tree_now > tree_peak) tree_peak = tree_now;
    return b + 1;
}

static void counted_free(void *p)
{
    if (!p) return;
    counted_block *b = (counted_block *)p - 1;
    tree_now -= chunk_of(b->size);
    free(b);
}

/* The memory the server takes before parsing a body covers what the parse
 * holds at its peak (jansson's tree, counted as above) plus the request's
 * copies (oai_request_bytes), for bodies of every shape near the body
 * limit: integers, objects, arrays, strings, keys, one long text; a small
 * body stays small (under 8 KiB). */
TEST(test_serve_request_parse_bound)
{
    enum { N = 1000000 };
    static const char *const shapes[][3] = {
        {"{\"prompt\":[", "1,", "1]}"},          {"{\"messages\":[", "{},", "{}]}"},
        {"{\"messages\":[", "[],", "[]]}"},      {"{\"stop\":[", "\"\",", "\"\"]}"},
        {"{\"x\":[", "{\"a\":0,\"b\":1},", "{}]}"}, {"{\"prompt\":\"", "ab", "\"}"},
    };
    char *body = malloc(N + 64);
    REQUIRE(body);
    json_set_alloc_funcs(counted_malloc, counted_free);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t len = (size_t)snprintf(body, 64, "%s", shapes[k][0]), step = strlen(shapes[k][1]);
        while (len + step < N) {
            memcpy(body + len, shapes[k][1], step);
            len += step;
        }
        len += (size_t)snprintf(body + len, 64, "%s", shapes[k][2]);
        oai_request r;
        char msg[256];
        const char *param;
        strata_sampler_params d = strata_sampler_default_params();
        tree_now = tree_peak = 0;
        bool ok = oai_request_parse(body, len, k == 1 || k == 2 ? OAI_CHAT : OAI_COMPLETION, &d, &r, msg, sizeof msg,
                                    &param);
        uint64_t held = tree_peak + (ok ? oai_request_bytes(&r) : 0), bound = oai_parse_bound(body, len);
        CHECK(bound >= held, " shape %zu: bound %llu < %llu held (tree %zu)", k, (unsigned long long)bound,
              (unsigned long long)held, tree_peak);
        printf("    %-14s %zu bytes: tree %5.1f MiB at its peak, bound %5.1f MiB\n", shapes[k][1], len,
               tree_peak / 1048576.0, bound / 1048576.0);
        if (ok) oai_request_free(&r);
    }
    json_set_alloc_funcs(malloc, free);
    const char *small = "{\"prompt\":\"Once upon a time\",\"max_tokens\":16}";
    CHECK(oai_parse_bound(small, strlen(small)) < 8192);
    free(body);
}

/* ---- the server, end to end ---- */

typedef struct served {
    pid_t pid;
    int port;
    char log[1024];
    const char *key; /* --api-key, sent with every request */
} served;

static bool have_curl(void)
{
    if (test_run("command -v curl >/dev/null 2>&1", NULL, false) == 0) return true;
    test_skip("curl not found (Debian package curl): the server tests need it");
    return false;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20); /* [1 MiB]: the server's log */
    if (buf) fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL); }

/* Starts `BIN serve ARGS --port 0` with stderr in a log; waits up to 30 s for
 * its "listening on http://127.0.0.1:PORT" line. */
static bool serve_start(served *s, const char *bin, const char *args, const char *tag)
{
    snprintf(s->log, sizeof s->log, "%s/serve-%s.log", test_tmpdir(), tag);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s serve %s --port 0 2>%s", bin, args, s->log);
    s->pid = fork();
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (double t0 = now_s(); now_s() - t0 < 30; sleep_ms(50)) {
        char *log = read_file(s->log);
        const char *p = log ? strstr(log, "listening on http://127.0.0.1:") : NULL;
        s->port = p ? atoi(p + strlen("listening on http://127.0.0.1:")) : 0;
        free(log);
        if (s->port > 0) return true;
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) break;
    }
    char *log = read_file(s->log);
    test_fail(__FILE__, __LINE__, "serve_start", " the server did not listen: %s", log ? log : "");
    free(log);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return false;
}

/* SIGTERM, then its exit status within `limit_s` (-1: it had to be killed). */
static int serve_stop(served *s, double limit_s)
{
    kill(s->pid, SIGTERM);
    int status;
    for (double t0 = now_s(); now_s() - t0 < limit_s; sleep_ms(20))
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

/* One request with curl; returns the HTTP status (0: no answer), *out the
 * body (malloc'd). extra: more curl arguments. */
static int http(const served *s, const char *method, const char *path, const char *body, const char *extra,
                char **out)
{
    char file[1024], auth[256] = "", cmd[4096];
    snprintf(file, sizeof file, "%s/body.json", test_tmpdir());
    FILE *f = fopen(file, "wb");
    if (f) {
        fputs(body ? body : "", f);
        fclose(f);
    }
    if (s->key) snprintf(auth, sizeof auth, "-H 'Authorization: Bearer %s'", s->key);
    snprintf(cmd, sizeof cmd,
             "curl -sS --max-time 60 -X %s %s %s -H 'Content-Type: application/json' %s%s -w '\\n%%{http_code}' "
             "'http://127.0.0.1:%d%s' 2>/dev/null",
             method, auth, extra ? extra : "", body ? "--data-binary @" : "", body ? file : "", s->port, path);
    char *o = NULL;
    test_run(cmd, &o, false);
    char *nl = o ? strrchr(o, '\n') : NULL;
    int code = nl ? atoi(nl + 1) : 0;
    if (nl) *nl = '\0';
    if (out) *out = o;
    else free(o);
    return code;
}

/* The "error" object's type of an error answer, or "". */
static bool is_error(const char *body, const char *type)
{
    json_t *d = body ? json_loads(body, 0, NULL) : NULL;
    const char *t = d ? jstr(d, "error.type") : NULL;
    bool ok = t && !strcmp(t, type) && jstr(d, "error.message");
    json_decref(d);
    return ok;
}

static void expect_error(const served *s, const char *method, const char *path, const char *body, const char *extra,
                         int status, const char *type, const char *says)
{
    char *out = NULL;
    int code = http(s, method, path, body, extra, &out);
    CHECK(code == status && is_error(out, type) && (!says || strstr(out, says)), " %s %s: %d %s", method, path, code,
          out);
    free(out);
}

static void check_errors(const served *s, const char *model)
{
    const char *chat = "/v1/chat/completions", *cmpl = "/v1/completions";
    expect_error(s, "POST", chat, "{\"messages\":[", NULL, 400, "invalid_request_error", "malformed JSON");
    expect_error(s, "POST", chat, "{}", NULL, 400, "invalid_request_error", "'messages'");
    expect_error(s, "POST", cmpl, "{\"prompt\":\"x\",\"max_tokens\":\"8\"}", NULL, 400, "invalid_request_error",
                 "max_tokens");
    expect_error(s, "POST", cmpl, "{\"prompt\":\"x\",\"n\":3}", NULL, 400, "invalid_request_error", "'n'");
    expect_error(s, "POST", cmpl, "{\"prompt\":[1,99999999]}", NULL, 400, "invalid_request_error",
                 "'prompt[1]' = 99999999 is not a token id");
    expect_error(s, "POST", cmpl, "{\"prompt\":[1,-2]}", NULL, 400, "invalid_request_error", "'prompt[1]'");
    expect_error(s, "POST", cmpl, "{\"prompt\":[1,\"a\"]}", NULL, 400, "invalid_request_error", "'prompt[1]'");
    expect_error(s, "POST", cmpl, "{\"prompt\":[]}", NULL, 400, "invalid_request_error", "'prompt'");
    expect_error(s, "POST", chat, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}", NULL, 400,
                 "invalid_request_error", NULL); /* the template wants a user first */
    expect_error(s, "GET", "/v1/nothing", NULL, NULL, 404, "not_found_error", "/v1/nothing");
    expect_error(s, "GET", chat, NULL, NULL, 405, "method_not_allowed_error", "POST");
    expect_error(s, "DELETE", "/v1/models", NULL, NULL, 405, "method_not_allowed_error", NULL);
    /* a body over 1 MiB */
    size_t big = (1u << 20) + 100;
    char *body = malloc(big + 1);
    memset(body, 'a', big);
    memcpy(body, "{\"prompt\":\"", 11);
    memcpy(body + big - 2, "\"}", 2);
    body[big] = '\0';
    expect_error(s, "POST", cmpl, body, NULL, 413, "request_too_large_error", NULL);
    /* a prompt longer than the context (-c 4096): 5000 words */
    size_t n = 5000 * 6 + 32;
    char *p = malloc(n);
    size_t at = (size_t)snprintf(p, n, "{\"prompt\":\"");
    for (int i = 0; i < 5000; i++) at += (size_t)snprintf(p + at, n - at, "%s", i % 2 ? "lily " : "tree ");
    snprintf(p + at, n - at, "\"}");
    expect_error(s, "POST", cmpl, p, NULL, 400, "invalid_request_error", "\"param\":\"prompt\"");
    free(p);
    free(body);
    /* without the key: 401, but /health answers */
    served nokey = *s;
    nokey.key = NULL;
    expect_error(&nokey, "GET", "/v1/models", NULL, NULL, 401, "authentication_error", NULL);
    expect_error(&nokey, "POST", chat, "{}", "-H 'Authorization: Bearer wrong'", 401, "authentication_error", NULL);
    CHECK(http(&nokey, "GET", "/health", NULL, NULL, NULL) == 200);
    (void)model;
}

/* `strata run` greedy on the same prompt: its text (the continuation only). */
static char *run_greedy(const char *model, const char *prompt, int n)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p '%s' -n %d --temp 0 --no-display-prompt 2>/dev/null",
             test_strata_bin(), model, prompt, n);
    if (test_run(cmd, &out, false) != 0) {
        free(out);
        return NULL;
    }
    size_t len = out ? strlen(out) : 0;
    if (len && out[len - 1] == '\n') out[len - 1] = '\0'; /* run ends stdout with a newline */
    return out;
}

/* The token ids of text (with BOS) as a JSON array, malloc'd; NULL on
 * failure. */
static char *prompt_ids(const char *model, const char *text)
{
    strata_model_params p = strata_model_default_params();
    p.n_ctx = 64;
    strata_model *m = NULL;
    strata_error err;
    int32_t *toks = NULL;
    size_t n = 0;
    char *json = NULL;
    if (strata_model_open(model, &p, &m, &err) == STRATA_OK &&
        strata_tokenize(m, text, strlen(text), true, &toks, &n, &err) == STRATA_OK && (json = malloc(12 * n + 3))) {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) at += (size_t)sprintf(json + at, "%c%d", i ? ',' : '[', (int)toks[i]);
        strcpy(json + at, "]");
    }
    free(toks);
    strata_model_free(m);
    return json;
}

static void check_completions(const served *s, const char *model)
{
    char *out = NULL;
    int code = http(s, "POST", "/v1/completions",
                    "{\"prompt\":\"Once upon a time\",\"max_tokens\":16,\"temperature\":0}", NULL, &out);
    json_t *d = code == 200 ? json_loads(out, 0, NULL) : NULL;
    CHECK(d && !strcmp(jstr(d, "object"), "text_completion") && jint(d, "usage.completion_tokens") > 0 &&
              jint(d, "usage.prompt_tokens") > 1,
          " %d %s", code, out);
    char *ref = run_greedy(model, "Once upon a time", 16);
    const char *text = d ? jstr(d, "choices.0.text") : NULL;
    CHECK(ref && text && !strcmp(text, ref), " server '%s', strata run '%s'", text ? text : "", ref ? ref : "");
    printf("    /v1/completions greedy: '%s'\n", text ? text : "");
    json_decref(d);
    free(out);
    /* the same prompt as token ids (bare, and as the API's one-prompt batch) */
    char *ids = prompt_ids(model, "Once upon a time"), body[4096];
    for (int wrap = 0; wrap < 2 && ids; wrap++) {
        snprintf(body, sizeof body, "{\"prompt\":%s%s%s,\"max_tokens\":16,\"temperature\":0}", wrap ? "[" : "", ids,
                 wrap ? "]" : "");
        code = http(s, "POST", "/v1/completions", body, NULL, &out);
        d = code == 200 ? json_loads(out, 0, NULL) : NULL;
        text = d ? jstr(d, "choices.0.text") : NULL;
        CHECK(ref && text && !strcmp(text, ref), " %s: '%s', as text '%s'", body, text ? text : out, ref ? ref : "");
        json_decref(d);
        free(out);
    }
    CHECK(ids != NULL, " tokenizing the prompt");
    free(ids);
    free(ref);
    /* a stop string ends the text before it */
    code = http(s, "POST", "/v1/completions",
                "{\"prompt\":\"Once upon a time\",\"max_tokens\":16,\"temperature\":0,\"stop\":\"Lily\"}", NULL, &out);
    d = code == 200 ? json_loads(out, 0, NULL) : NULL;
    CHECK(d && !strstr(jstr(d, "choices.0.text"), "Lily") && !strcmp(jstr(d, "choices.0.finish_reason"), "stop"),
          " %d %s", code, out);
    json_decref(d);
    free(out);
}

static void check_chat(const served *s)
{
    char *out = NULL;
    int code = http(s, "POST", "/v1/chat/completions",
                    "{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\",\"content\":"
                    "\"Hi\"}],\"max_tokens\":8,\"temperature\":0}",
                    NULL, &out);
    json_t *d = code == 200 ? json_loads(out, 0, NULL) : NULL;
    CHECK(d && !strcmp(jstr(d, "object"), "chat.completion") && jstr(d, "choices.0.message.content") &&
              jint(d, "usage.completion_tokens") <= 8 &&
              jint(d, "usage.total_tokens") == jint(d, "usage.prompt_tokens") + jint(d, "usage.completion_tokens"),
          " %d %s", code, out);
    const char *fr = d ? jstr(d, "choices.0.finish_reason") : NULL;
    CHECK(fr && (!strcmp(fr, "stop") || !strcmp(fr, "length")), " %s", out);
    json_decref(d);
    free(out);
    /* streamed: a role chunk, content chunks, a finish chunk, usage, [DONE] */
    code = http(s, "POST", "/v1/chat/completions",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":8,\"temperature\":0,"
                "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                "-N", &out);
    CHECK(code == 200 && out && !strncmp(out, "data: {", 7) && strstr(out, "\"role\":\"assistant\"") &&
              strstr(out, "\"object\":\"chat.completion.chunk\"") && strstr(out, "\"finish_reason\":\"") &&
              strstr(out, "\"usage\":{") && strlen(out) >= 14 && !strcmp(out + strlen(out) - 14, "data: [DONE]\n\n"),
          " %d %s", code, out);
    free(out);
}

static void check_info(const served *s)
{
    char *out = NULL;
    CHECK(http(s, "GET", "/health", NULL, NULL, &out) == 200 && strstr(out, "\"ok\""), " %s", out);
    free(out);
    CHECK(http(s, "GET", "/v1/models", NULL, NULL, &out) == 200 && strstr(out, "\"id\":\"stories\""), " %s", out);
    free(out);
    CHECK(http(s, "GET", "/metrics", NULL, NULL, &out) == 200 && strstr(out, "strata:tokens_predicted_total ") &&
              strstr(out, "strata:kv_cache_usage_ratio "),
          " %s", out);
    free(out);
}

TEST(test_serve_cli_usage)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s serve --help", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 0 && strstr(out, "/v1/chat/completions") && strstr(out, "--api-key") &&
              strstr(out, "-np") && strstr(out, "--mem") && !strstr(out, "-sys"),
          " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve --port 1", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "-m MODEL"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve -m x --port 70000", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "--port '70000'"), " %s", out);
    free(out);
    /* an empty key would let "Authorization: Bearer " alone in */
    snprintf(cmd, sizeof cmd, "%s serve -m x --api-key ''", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "--api-key '': must not be empty") &&
              strchr(out, '\n') == out + strlen(out) - 1,
          " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve -m x --alias ''", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "--alias ''"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve -m x -sys hi", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "-sys"), " %s", out);
    free(out);
}

/* While the model loads, the server already answers: /health and the
 * generation endpoints say 503 "loading model"; once the model is set,
 * 200. In process, in the CLI's order (server_start, then server_set_model
 * when loading is done), since a test model loads too fast to catch. */
TEST(test_serve_loading_answers_503)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    server_config cfg = {.model_id = "stories", .sampling = strata_sampler_default_params(), .sched = {.n_slots = 1}};
    server *srv = NULL;
    strata_error err;
    REQUIRE(server_start(&cfg, &srv, &err) == STRATA_OK, " %s", err.message);
    served s = {.port = server_port(srv)};
    char *out = NULL;
    int code = http(&s, "GET", "/health", NULL, NULL, &out);
    CHECK(code == 503 && out && strstr(out, "loading"), " /health while loading: %d %s", code, out);
    free(out);
    expect_error(&s, "POST", "/v1/completions", "{\"prompt\":\"x\"}", NULL, 503, "unavailable_error", "loading model");
    strata_model_params p = strata_model_default_params();
    p.n_ctx = 64;
    strata_model *m = NULL;
    REQUIRE(strata_model_open(model, &p, &m, &err) == STRATA_OK, " %s", err.message);
    CHECK(server_set_model(srv, m, "chatml", &err) == STRATA_OK, " %s", err.message);
    CHECK(http(&s, "GET", "/health", NULL, NULL, NULL) == 200);
    code = http(&s, "POST", "/v1/completions", "{\"prompt\":\"Once\",\"max_tokens\":4,\"temperature\":0}", NULL, &out);
    CHECK(code == 200 && out && strstr(out, "text_completion"), " after loading: %d %s", code, out);
    free(out);
    server_stop(srv);
}

/* A model id that is not UTF-8 (a file name with a byte 0xFF, no --alias):
 * the answers name it with U+FFFD in place of the byte; every request was
 * a 500 "out of memory" (jansson refuses strings that are not UTF-8). */
TEST(test_serve_model_id_not_utf8)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    server_config cfg = {.model_id = "bad\xFF.gguf", .sampling = strata_sampler_default_params(),
                         .sched = {.n_slots = 1}};
    server *srv = NULL;
    strata_error err;
    REQUIRE(server_start(&cfg, &srv, &err) == STRATA_OK, " %s", err.message);
    served s = {.port = server_port(srv)};
    strata_model_params p = strata_model_default_params();
    p.n_ctx = 64;
    strata_model *m = NULL;
    REQUIRE(strata_model_open(model, &p, &m, &err) == STRATA_OK, " %s", err.message);
    CHECK(server_set_model(srv, m, "chatml", &err) == STRATA_OK, " %s", err.message);
    char *out = NULL;
    int code = http(&s, "GET", "/v1/models", NULL, NULL, &out);
    CHECK(code == 200 && out && strstr(out, "\"bad\xEF\xBF\xBD.gguf\""), " /v1/models: %d %s", code, out);
    free(out);
    code = http(&s, "POST", "/v1/completions", "{\"prompt\":\"Once\",\"max_tokens\":2}", NULL, &out);
    CHECK(code == 200 && out && strstr(out, "\"model\":\"bad\xEF\xBF\xBD.gguf\""), " completion: %d %s", code, out);
    free(out);
    server_stop(srv);
}

TEST(test_serve_endpoints_and_errors)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    served s = {.key = "sekrit"};
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' -np 2 -c 4096 -t 2 --api-key sekrit --alias stories", model);
    if (!serve_start(&s, test_strata_bin(), args, "main")) return;
    /* /health: 503 while loading (maybe too quick to see), then 200 */
    double t0 = now_s();
    int code = 0;
    while (now_s() - t0 < 30 && (code = http(&s, "GET", "/health", NULL, NULL, NULL)) == 503) sleep_ms(50);
    CHECK(code == 200, " /health %d", code);
    check_info(&s);
    check_completions(&s, model);
    check_chat(&s);
    check_errors(&s, model);
    check_info(&s); /* still serving */
    CHECK(serve_stop(&s, 10) == 0, " exit status");
    char *log = read_file(s.log);
    CHECK(log && strstr(log, "no recognized chat template") && strstr(log, "stopped"), " %s", log);
    free(log);
}

/* ---- a client that goes away, and SIGTERM with requests in flight ---- */

/* Sends a request over a raw socket and reads until `want` came (or wait_ms). */
static int raw_request(int port, const char *body, const char *want, int wait_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[8192];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, want)) break;
    }
    return fd;
}

/* A metric's value from /metrics, or -1. */
static double metric(const served *s, const char *name)
{
    char *out = NULL, key[128];
    double v = -1;
    if (http(s, "GET", "/metrics", NULL, NULL, &out) == 200) {
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(out, key);
        if (p) v = atof(p + strlen(key));
    }
    free(out);
    return v;
}

/* Waits up to limit_s for nothing to run; the seconds it took, or -1. */
static double wait_idle(const served *s, double limit_s)
{
    double t0 = now_s();
    while (now_s() - t0 < limit_s) {
        if (metric(s, "strata:requests_processing") == 0) return now_s() - t0;
        sleep_ms(20);
    }
    return -1;
}

/* Waits up to 30 s for /health to answer 200 (the model is loaded). */
static void wait_ready(const served *s)
{
    for (double t0 = now_s(); now_s() - t0 < 30 && http(s, "GET", "/health", NULL, NULL, NULL) != 200;) sleep_ms(50);
}

#define LONG_BODY(stream) "{\"prompt\":\"Once upon a time\",\"max_tokens\":-1,\"ignore_eos\":true,\"stream\":" stream "}"

TEST(test_serve_disconnect_and_sigterm)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    served s = {0};
    char args[2048];
    /* 4096 tokens each, far more than a request lives here */
    snprintf(args, sizeof args, "-m '%s' -np 2 -c 4096 -t 2", model);
    if (!serve_start(&s, test_strata_bin(), args, "disc")) return;
    wait_ready(&s);
    /* streaming: close after the first content */
    int fd = raw_request(s.port, LONG_BODY("true"), "\"text\":\"", 10000);
    CHECK(fd >= 0 && metric(&s, "strata:requests_processing") == 1);
    close(fd);
    double took = wait_idle(&s, 3);
    double gen = metric(&s, "strata:tokens_predicted_total");
    CHECK(took >= 0 && gen < 4000, " stream: the sequence still ran (%.2f s, %.0f tokens)", took, gen);
    printf("    stream client gone: sequence freed in %.3f s (%.0f tokens generated)\n", took, gen);
    /* not streaming: close while it generates */
    fd = raw_request(s.port, LONG_BODY("false"), "HTTP/1.1", 300);
    CHECK(fd >= 0 && metric(&s, "strata:requests_processing") == 1);
    if (fd >= 0) close(fd);
    took = wait_idle(&s, 3);
    double gen2 = metric(&s, "strata:tokens_predicted_total");
    CHECK(took >= 0 && gen2 - gen < 4000, " non-stream: the sequence still ran (%.2f s, %.0f tokens)", took, gen2 - gen);
    /* still serving */
    CHECK(http(&s, "POST", "/v1/completions", "{\"prompt\":\"Lily\",\"max_tokens\":4}", NULL, NULL) == 200);
    /* SIGTERM with a stream in flight: it ends, and the server exits 0 soon */
    fd = raw_request(s.port, LONG_BODY("true"), "\"text\":\"", 10000);
    double t0 = now_s();
    int rc = serve_stop(&s, 10);
    CHECK(rc == 0 && now_s() - t0 < 5, " exit %d after %.1f s", rc, now_s() - t0);
    if (fd >= 0) close(fd);
}

/* ---- a bounded load on the release binary ---- */

#define LOAD_CLIENTS 16
#define LOAD_EACH 4
#define LOAD_MEM_MIB 64

static const char *release_bin(void)
{
    const char *b = getenv("STRATA_RELEASE_BIN");
    return b && *b ? b : "build/strata";
}

/* The peak RSS of a process (VmHWM), in KiB; 0 when unknown. */
static long peak_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

TEST(test_serve_load_bounded)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    served s = {0};
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' -np 4 --max-queue 4 -c 256 -t 2 --mem %dM", model, LOAD_MEM_MIB);
    if (!serve_start(&s, release_bin(), args, "load")) return;
    wait_ready(&s);
    char body[1024], cmd[4096], *out = NULL;
    snprintf(body, sizeof body, "%s/load.json", test_tmpdir());
    FILE *f = fopen(body, "w");
    REQUIRE(f);
    fputs("{\"prompt\":\"Once upon a time\",\"max_tokens\":16}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "for c in $(seq %d); do (for j in $(seq %d); do curl -s -o /dev/null --max-time 60 -w '%%{http_code}\\n' "
             "-H 'Content-Type: application/json' --data-binary @%s http://127.0.0.1:%d/v1/completions; done) & done; "
             "wait",
             LOAD_CLIENTS, LOAD_EACH, body, s.port);
    double t0 = now_s();
    test_run(cmd, &out, false);
    double took = now_s() - t0;
    int ok = 0, full = 0, other = 0;
    for (char *save, *l = out ? strtok_r(out, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
        *(!strcmp(l, "200") ? &ok : !strcmp(l, "503") ? &full : &other) += 1;
    CHECK(ok + full == LOAD_CLIENTS * LOAD_EACH && other == 0 && ok > 0, " %d ok, %d refused, %d other", ok, full,
          other);
    CHECK(http(&s, "GET", "/health", NULL, NULL, NULL) == 200);
    double gen = metric(&s, "strata:tokens_predicted_total");
    long rss = peak_rss_kib(s.pid);
    CHECK(rss > 0 && rss <= LOAD_MEM_MIB * 1024, " peak RSS %ld KiB, --mem %d MiB", rss, LOAD_MEM_MIB);
    printf("    %d requests from %d clients in %.1f s: %d answered, %d refused (503); %.0f tokens, %.0f tok/s; "
           "peak RSS %.1f MiB (--mem %d MiB)\n",
           LOAD_CLIENTS * LOAD_EACH, LOAD_CLIENTS, took, ok, full, gen, gen / took, rss / 1024.0, LOAD_MEM_MIB);
    free(out);
    CHECK(serve_stop(&s, 10) == 0);
}

/* A request whose buffers the budget cannot hold is refused before they
 * exist: a 1 MiB body of 340,000 empty objects would be a ~90 MiB parse
 * tree (test_serve_request_parse_bound) under --mem 64M. The answer is 413
 * with the account's message naming the category (text) and the budget;
 * the server's peak RSS rises by the body at most (2 MiB with slack), and
 * it answers the next request. */
TEST(test_serve_request_over_budget_refused)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    served s = {0};
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' -c 256 -t 1 --mem 64M", model);
    if (!serve_start(&s, release_bin(), args, "budget")) return;
    wait_ready(&s);
    enum { OBJECTS = 340000 };
    char *body = malloc(16 + 3 * OBJECTS);
    REQUIRE(body);
    size_t len = (size_t)sprintf(body, "{\"prompt\":[");
    for (int i = 0; i < OBJECTS; i++) len += (size_t)sprintf(body + len, i ? ",{}" : "{}");
    sprintf(body + len, "]}");
    long before = peak_rss_kib(s.pid);
    double accounted = metric(&s, "strata:memory_accounted_bytes");
    char *out = NULL;
    int code = http(&s, "POST", "/v1/completions", body, NULL, &out);
    long after = peak_rss_kib(s.pid);
    CHECK(code == 413 && is_error(out, "request_too_large_error") && strstr(out, "memory budget") &&
              strstr(out, "of text") && strstr(out, "64.0 MiB"),
          " %d %s", code, out);
    CHECK(before > 0 && after - before < 2048 + 1024, " peak RSS %ld -> %ld KiB", before, after);
    printf("    %zu-byte body: %d; peak RSS %.1f -> %.1f MiB\n", len + 2, code, before / 1024.0, after / 1024.0);
    free(out);
    out = NULL;
    code = http(&s, "POST", "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":4}", NULL, &out);
    CHECK(code == 200, " after the refusal: %d %s", code, out);
    free(out);
    /* both requests gave back all they held (the connection's end comes
     * just after the client has its answer) */
    double now = -1;
    for (double t0 = now_s(); now_s() - t0 < 5 && (now = metric(&s, "strata:memory_accounted_bytes")) != accounted;)
        sleep_ms(20);
    CHECK(accounted > 0 && now == accounted, " accounted %.0f bytes before, %.0f after", accounted, now);
    free(body);
    CHECK(serve_stop(&s, 10) == 0);
}

/* A budget refusal's status counts the requests holding memory other than
 * the refused one: a request that holds nothing itself (an empty body, or
 * one received before the model was ready) beside no other is refused with
 * 413, not 503 (the count must not wrap below zero), and beside one with
 * 503; one that holds memory is 413 alone and 503 beside another. */
TEST(test_serve_refusal_status_counts_the_others)
{
    static server s; /* [1] zeroed: only n_holding is read */
    atomic_store(&s.n_holding, 0);
    CHECK(serve_refusal_status(&s, false) == 413);
    CHECK(serve_refusal_status(&s, true) == 413, " holding claimed, no holder counted: %d",
          serve_refusal_status(&s, true));
    atomic_store(&s.n_holding, 1);
    CHECK(serve_refusal_status(&s, false) == 503);
    CHECK(serve_refusal_status(&s, true) == 413);
    atomic_store(&s.n_holding, 2);
    CHECK(serve_refusal_status(&s, true) == 503);
}

/* The body buffer the server grows to hold n bytes (and its NUL). */
static size_t body_cap(size_t n)
{
    size_t cap = 4096;
    while (cap < n + 1) cap *= 2;
    return cap;
}

/* A refusal by the budget while another request holds memory is
 * transient: 503 with Retry-After, and the same request answered once
 * the other has ended. Request A's upload stalls with 1 MiB of its body
 * held; B's body (a small prompt padded with spaces, whose parse bound
 * the server counts before parsing) is sized to fit the room alone but
 * not beside A. The room comes from a first run's accounted bytes: the
 * second run's budget is that plus 3 MiB. */
TEST(test_serve_refusal_beside_others_is_503)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    enum { A_BYTES = (1 << 20) - 1 }; /* what A sends of its body: its buffer is 1 MiB */
    const char *prompt = "{\"prompt\":\"Once upon a time\",\"max_tokens\":2}";
    char *body = malloc(1 << 20);     /* [1 MiB]: the prompt, then spaces; B sends its first len bytes */
    char *a_body = malloc(A_BYTES);   /* [A_BYTES] spaces */
    REQUIRE(body && a_body);
    memset(body, ' ', 1 << 20);
    memcpy(body, prompt, strlen(prompt));
    memset(a_body, ' ', A_BYTES);

    served s = {0};
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' -c 256 -t 1 --mem 64M", model);
    if (!serve_start(&s, release_bin(), args, "transient0")) return;
    wait_ready(&s);
    double base = metric(&s, "strata:memory_accounted_bytes");
    CHECK(serve_stop(&s, 10) == 0);
    REQUIRE(base > 0);
    uint64_t budget = ((uint64_t)base / 1024 + 3072) * 1024;
    snprintf(args, sizeof args, "-m '%s' -c 256 -t 1 --mem %lluK", model, (unsigned long long)(budget / 1024));
    if (!serve_start(&s, release_bin(), args, "transient")) return;
    wait_ready(&s);
    double idle = metric(&s, "strata:memory_accounted_bytes"), room = (double)budget - idle;
    size_t len = strlen(prompt);
    while (len + 4096 < (1 << 20) &&
           (double)(oai_parse_bound(body, len + 4096) + body_cap(len + 4096)) < room - 512 * 1024)
        len += 4096;
    body[len] = '\0';
    double need = (double)(oai_parse_bound(body, len) + body_cap(len));
    CHECK(need < room && need + (1 << 20) > room, " B needs %.0f bytes; the room is %.0f", need, room);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool connected = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    char head[256];
    int hn = snprintf(head, sizeof head, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                         "Content-Length: %d\r\n\r\n", 1 << 20);
    CHECK(connected && write(fd, head, (size_t)hn) == hn && write(fd, a_body, A_BYTES) == A_BYTES);
    double held_a = 0;
    for (double t0 = now_s(); now_s() - t0 < 10 && held_a < (1 << 20); sleep_ms(20))
        held_a = metric(&s, "strata:memory_accounted_bytes") - idle;
    CHECK(held_a >= (1 << 20), " A holds %.0f bytes", held_a);

    char hdr[1024], extra[1100], *out = NULL;
    snprintf(hdr, sizeof hdr, "%s/refusal-headers.txt", test_tmpdir());
    snprintf(extra, sizeof extra, "-D '%s'", hdr);
    int beside = http(&s, "POST", "/v1/completions", body, extra, &out), code = beside;
    char *headers = read_file(hdr);
    CHECK(code == 503 && is_error(out, "unavailable_error") && strstr(out, "memory budget") && headers &&
              strcasestr(headers, "\nRetry-After: 1"),
          " beside A: %d %s", code, out);
    free(headers);
    free(out);
    out = NULL;
    if (fd >= 0) close(fd); /* A goes away: its memory comes back */
    for (double t0 = now_s(); now_s() - t0 < 10 && metric(&s, "strata:memory_accounted_bytes") > idle;) sleep_ms(20);
    code = http(&s, "POST", "/v1/completions", body, NULL, &out);
    CHECK(code == 200, " after A ended: %d %s", code, out);
    printf("    room %.2f MiB; B needs %.2f MiB: beside A (1 MiB held) %d, alone %d\n", room / 1048576,
           need / 1048576, beside, code);
    free(out);
    free(a_body);
    free(body);
    CHECK(serve_stop(&s, 10) == 0);
}

/* ---- the official OpenAI client (Node.js) ---- */

TEST(test_serve_openai_client)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model || !have_curl()) return;
    if (test_run("command -v node >/dev/null 2>&1", NULL, false) != 0) {
        test_skip("node not found (Debian package nodejs): the OpenAI client test did not run");
        return;
    }
    if (access("tests/serve/node_modules/openai/package.json", R_OK) != 0) {
        test_skip("the openai npm package is not installed (npm install --prefix tests/serve): "
                  "the OpenAI client test did not run");
        return;
    }
    served s = {0};
    char args[2048], cmd[2048], *out = NULL;
    snprintf(args, sizeof args, "-m '%s' -np 2 -t 2 --api-key k3y --alias stories", model);
    if (!serve_start(&s, test_strata_bin(), args, "node")) return;
    snprintf(cmd, sizeof cmd, "timeout 60 node tests/serve/openai_client.mjs http://127.0.0.1:%d/v1 k3y stories",
             s.port);
    int rc = test_run(cmd, &out, true);
    CHECK(rc == 0 && out && strstr(out, "\nOK"), " node exited %d: %s", rc, out);
    if (out && !rc) printf("    %s", out);
    free(out);
    CHECK(serve_stop(&s, 10) == 0);
}
