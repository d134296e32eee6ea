/* libmicrohttpd glue: the daemon (one thread per connection), request
 * bodies gathered up to a limit, authentication, routing and replies. */
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/openai_response.h"
#include "serve/server_internal.h"
#include "util/error.h"

#define CONNECTION_IDLE_S 60u   /* an idle keep-alive connection closes after this */
#define CONNECTION_LIMIT 256u   /* connections (threads) at once */

/* A request in progress: its body so far, and the memory it holds. */
typedef struct http_request {
    char *body;      /* [cap], body[0..len) received */
    size_t len, cap;
    bool too_large;  /* more than the limit came: refused with 413 */
    uint64_t held;   /* bytes of the memory account this request holds (serve_hold) */
    char *no_memory; /* why the budget refused its body (malloc'd), or NULL */
} http_request;

static void body_append(server *s, http_request *r, const char *data, size_t n)
{
    if (r->too_large || n > s->cfg.body_limit - r->len) {
        r->too_large = true;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) cap *= 2;
        strata_error err;
        if (serve_hold(s, &r->held, cap - r->cap, &err)) { /* before the buffer grows */
            r->too_large = true;
            r->no_memory = strdup(err.message);
            return;
        }
        char *b = realloc(r->body, cap);
        if (!b) {
            r->too_large = true; /* refused all the same */
            return;
        }
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
}

enum MHD_Result http_reply(server *s, struct MHD_Connection *c, int status, const char *type, char *body)
{
    if (!body) {
        status = 500;
        type = "application/json";
    }
    const char *text = body ? body : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":500}}";
    atomic_fetch_add(&s->n_http, 1);
    if (status >= 400) atomic_fetch_add(&s->n_errors, 1);
    struct MHD_Response *resp = body ? mhd.create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
                                     : mhd.create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 503) mhd.add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1"); /* seconds */
    enum MHD_Result r = mhd.queue_response(c, (unsigned)status, resp);
    mhd.destroy_response(resp);
    return r;
}

enum MHD_Result http_reply_json(server *s, struct MHD_Connection *c, int status, char *json)
{
    return http_reply(s, c, status, "application/json", json);
}

enum MHD_Result http_reply_error(server *s, struct MHD_Connection *c, int status, const char *message,
                                 const char *param)
{
    return http_reply_json(s, c, status, oai_error_json(status, message, param));
}

/* ---- routing ---- */

typedef enum route_kind { ROUTE_HEALTH, ROUTE_METRICS, ROUTE_MODELS, ROUTE_CHAT, ROUTE_COMPLETION } route_kind;

typedef struct route {
    const char *path;
    const char *method;
    route_kind kind;
} route;

static const route routes[] = {
    {"/health", "GET", ROUTE_HEALTH},
    {"/metrics", "GET", ROUTE_METRICS},
    {"/v1/models", "GET", ROUTE_MODELS},
    {"/models", "GET", ROUTE_MODELS},
    {"/v1/chat/completions", "POST", ROUTE_CHAT},
    {"/chat/completions", "POST", ROUTE_CHAT},
    {"/v1/completions", "POST", ROUTE_COMPLETION},
    {"/completions", "POST", ROUTE_COMPLETION},
};

static const route *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) return &routes[i];
    return NULL;
}

/* "Authorization: Bearer KEY", compared in constant time. */
static bool authorized(server *s, struct MHD_Connection *c)
{
    const char *key = s->cfg.api_key;
    if (!key) return true;
    const char *h = mhd.lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t n = strlen(key), m = strlen(h);
    unsigned diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? h[i] : 0);
    return diff == 0;
}

static enum MHD_Result method_not_allowed(server *s, struct MHD_Connection *c, const route *r, const char *method)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s takes %s, not %.16s", r->path, r->method, method);
    char *json = oai_error_json(405, msg, NULL);
    if (!json) return http_reply(s, c, 500, "application/json", NULL);
    atomic_fetch_add(&s->n_http, 1);
    atomic_fetch_add(&s->n_errors, 1);
    struct MHD_Response *resp = mhd.create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(json);
        return MHD_NO;
    }
    mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    mhd.add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->method);
    enum MHD_Result res = mhd.queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    mhd.destroy_response(resp);
    return res;
}

static enum MHD_Result dispatch(server *s, struct MHD_Connection *c, const route *r, http_request *req)
{
    if (r->kind == ROUTE_HEALTH) return serve_health(s, c);
    if (!atomic_load(&s->ready)) return http_reply_error(s, c, 503, "loading model", NULL);
    if (r->kind == ROUTE_METRICS) return serve_metrics(s, c);
    if (r->kind == ROUTE_MODELS) return serve_models(s, c);
    if (req->no_memory)
        return http_reply_error(s, c, serve_refusal_status(s, req->held > 0), req->no_memory, NULL);
    if (req->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->cfg.body_limit);
        return http_reply_error(s, c, 413, msg, NULL);
    }
    return serve_completion(s, c, r->kind == ROUTE_CHAT ? OAI_CHAT : OAI_COMPLETION, req->body ? req->body : "",
                            req->len, &req->held);
}

static enum MHD_Result route_request(server *s, struct MHD_Connection *c, const char *url, const char *method,
                                     http_request *req)
{
    const route *r = find_route(url);
    if (!(r && r->kind == ROUTE_HEALTH) && !authorized(s, c))
        return http_reply_error(s, c, 401, "invalid or missing API key (Authorization: Bearer KEY)", NULL);
    if (!r) {
        char msg[160];
        snprintf(msg, sizeof msg, "no such endpoint: %.100s", url);
        return http_reply_error(s, c, 404, msg, NULL);
    }
    bool head = !strcmp(method, "HEAD") && !strcmp(r->method, "GET"); /* the GET answer's headers */
    if (strcmp(method, r->method) && !head) return method_not_allowed(s, c, r, method);
    return dispatch(s, c, r, req);
}

/* A body announced larger than the limit is refused before it is read. */
static bool announced_too_large(server *s, struct MHD_Connection *c)
{
    const char *cl = mhd.lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) return false;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    return end != cl && n > s->cfg.body_limit;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    server *s = cls;
    http_request *req = *con_cls;
    if (!req) { /* the headers came */
        if (!(req = calloc(1, sizeof *req))) return MHD_NO;
        *con_cls = req;
        if (!announced_too_large(s, c)) return MHD_YES;
        req->too_large = true;
        return route_request(s, c, url, method, req);
    }
    if (*upload_data_size) {
        body_append(s, req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return route_request(s, c, url, method, req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    http_request *req = *con_cls;
    if (req) {
        serve_give(s, &req->held, req->held); /* the body, the parse, the answer's text and JSON */
        free(req->body);
        free(req->no_memory);
    }
    free(req);
    *con_cls = NULL;
}

/* ---- the daemon ---- */

static char start_log[256]; /* libmicrohttpd's last message while starting (why a bind failed) */
static atomic_bool started;

static void on_log(void *cls, const char *fmt, va_list ap)
{
    if (atomic_load(&started)) return; /* a client that went away, ...: not worth a line */
    vsnprintf(start_log, sizeof start_log, fmt, ap);
    start_log[strcspn(start_log, "\n")] = '\0';
}

static strata_status resolve(server *s, struct addrinfo **ai, strata_error *err)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    int rc = getaddrinfo(s->cfg.host, port, &hints, ai);
    if (rc) return err_set(err, STRATA_E_INVALID, "--host %s: %s", s->cfg.host, gai_strerror(rc));
    return STRATA_OK;
}

strata_status http_start(server *s, strata_error *err)
{
    struct addrinfo *ai;
    strata_status st = mhd_load(err);
    if (!st) st = resolve(s, &ai, err);
    if (st) return st;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    atomic_store(&started, false);
    start_log[0] = '\0';
    s->daemon = mhd.start_daemon(flags, s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
                                 CONNECTION_IDLE_S, MHD_OPTION_CONNECTION_LIMIT, CONNECTION_LIMIT,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_log, s, MHD_OPTION_END);
    freeaddrinfo(ai);
    atomic_store(&started, true);
    if (!s->daemon)
        return err_set(err, STRATA_E_IO, "cannot listen on %s:%u: %s", s->cfg.host, (unsigned)s->cfg.port,
                       start_log[0] ? start_log : "libmicrohttpd could not start");
    const union MHD_DaemonInfo *info = mhd.get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->cfg.port;
    return STRATA_OK;
}

void http_quiesce(server *s)
{
    if (!s->daemon) return;
    MHD_socket fd = mhd.quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}
