/* strata serve: an OpenAI-compatible HTTP server over one model
 * (src/serve/server.h). It binds first (/health answers 503 while the
 * model loads), then loads the model and serves until SIGINT or SIGTERM,
 * which stop accepting, cancel what runs and exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_opts.h"
#include "serve/server.h"
#include "strata.h"

static const char serve_usage[] =
    "usage: strata serve -m MODEL [options]\n"
    "\n"
    "Serves the model over HTTP with the OpenAI API's endpoints: POST\n"
    "/v1/chat/completions (messages formatted with the chat template), POST\n"
    "/v1/completions, GET /v1/models, GET /health (503 while the model loads, then\n"
    "200) and GET /metrics (Prometheus text); docs/serve.md describes them. Up to -np\n"
    "requests generate at once, sharing every forward pass; more wait in a queue, and\n"
    "beyond it are refused with 503. Once bound it prints \"listening on\n"
    "http://HOST:PORT\" on stderr. SIGINT or SIGTERM stops it: requests in flight are\n"
    "cancelled, and it exits 0.\n"
    "\n"
    "  --host ADDR          address to listen on (default 127.0.0.1: this machine only;\n"
    "                       0.0.0.0 or :: for every interface)\n"
    "  --port N             port (default 8080; 0: any free port, printed when listening)\n"
    "  -np, --parallel N    requests generating at once, each with its own KV cache of\n"
    "                       up to -c tokens (default 1)\n"
    "  --max-queue N        requests waiting for a sequence at most (default 4 x -np);\n"
    "                       more are refused with 503\n"
    "  --api-key KEY        require \"Authorization: Bearer KEY\" on every endpoint but\n"
    "                       /health (401 otherwise)\n"
    "  --alias NAME         the model's id in /v1/models and in answers (default: the\n"
    "                       file name)\n"
    "  -n, --n-predict N    tokens a request generates when it sets no max_tokens\n"
    "                       (default and -1: until the model ends or the context is full)\n"
    "  --temp, --top-k, --top-p, --min-p, --repeat-penalty, -s: the defaults of requests\n"
    "                       that do not set temperature, top_k, ... (-s: every request\n"
    "                       without a seed uses S; default: a new seed per request)\n"
    "  --ignore-eos         requests generate past end-of-generation tokens\n"
    "  --chat-template NAME as below; a model without a recognized template uses chatml\n"
    "                       (said once on stderr)\n"
    "\n";

/* Options of gen_opts_usage that serve does not take (-sys: a chat's
 * messages come with each request; --stats: per-pass lines are run's), or
 * that serve_usage describes for a server. */
static const char *const not_served[] = {"-sys", "--system-prompt", "--stats", "--ignore-eos", "--chat-template", NULL};

static bool is_not_served(const char *opt)
{
    for (int i = 0; not_served[i]; i++)
        if (!strcmp(opt, not_served[i])) return true;
    return false;
}

/* gen_opts_usage less the options serve does not take (an option's line
 * and the more indented lines that continue it). */
static void print_usage(void)
{
    fputs(serve_usage, stdout);
    fputs(gen_opts_ctx_usage, stdout);
    bool skipping = false;
    for (const char *l = gen_opts_usage; *l;) {
        size_t n = strcspn(l, "\n") + 1;
        if (strncmp(l, "      ", 6)) { /* an option's first line */
            char opt[32];
            skipping = sscanf(l, " %31[^, ]", opt) == 1 && is_not_served(opt);
        }
        if (!skipping) fwrite(l, 1, n, stdout);
        l += n;
        if (l[-1] != '\n') break;
    }
}

typedef struct serve_opts {
    gen_opts g;
    server_config sc;
    const char *alias;
} serve_opts;

static int serve_value(serve_opts *o, const char *f, const char *v)
{
    uint64_t u;
    if ((!strcmp(f, "--api-key") || !strcmp(f, "--alias")) && !*v) {
        /* an unset variable ("--api-key $KEY"): an empty key lets "Bearer " alone in */
        fprintf(stderr, "strata serve: %s '': must not be empty\n", f);
        return -1;
    }
    if (!strcmp(f, "--host")) o->sc.host = v;
    else if (!strcmp(f, "--api-key")) o->sc.api_key = v;
    else if (!strcmp(f, "--alias")) o->alias = v;
    else if (!strcmp(f, "--port")) {
        if (!arg_u64("serve", f, v, 0, 65535, &u)) return -1;
        o->sc.port = (uint16_t)u;
    } else if (!strcmp(f, "-np") || !strcmp(f, "--parallel")) {
        if (!arg_u64("serve", f, v, 1, 1024, &u)) return -1;
        o->sc.sched.n_slots = (uint32_t)u;
        o->g.mp.n_parallel = (uint32_t)u;
    } else if (!strcmp(f, "--max-queue")) {
        if (!arg_u64("serve", f, v, 1, 1u << 20, &u)) return -1;
        o->sc.sched.max_queue = (uint32_t)u;
    } else
        return 0;
    return 1;
}

static const char *const serve_help[] = {serve_usage, gen_opts_ctx_usage, gen_opts_usage, NULL};

static int parse_serve_args(int argc, char **argv, serve_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            print_usage();
            exit(0);
        }
        if (is_not_served(f)) {
            fprintf(stderr, "strata serve: %s is not an option of serve (see strata serve --help)\n", f);
            return 2;
        }
        if (gen_opts_flag(&o->g, f)) continue;
        if (i + 1 >= argc) {
            arg_no_value("serve", serve_help, f);
            return 2;
        }
        const char *v = argv[++i];
        int r = serve_value(o, f, v);
        if (!r) r = gen_opts_value(&o->g, f, v);
        if (r < 0) return 2;
        if (!r) {
            arg_unknown("serve", serve_help, f);
            return 2;
        }
    }
    if (!o->g.model) {
        fprintf(stderr, "strata serve: need -m MODEL (see strata serve --help)\n");
        return 2;
    }
    return 0;
}

/* ---- signals: a thread waits for SIGINT / SIGTERM (blocked elsewhere) ---- */

static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;
static bool stop_requested;
static atomic_bool loading = true;

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) != 0) return NULL;
    if (atomic_load(&loading)) { /* loading cannot be interrupted cleanly: leave now */
        fprintf(stderr, "strata serve: %s while loading the model; exiting\n", sig == SIGINT ? "interrupted" : "terminated");
        _exit(0);
    }
    fprintf(stderr, "strata serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    pthread_mutex_lock(&stop_mu);
    stop_requested = true;
    pthread_cond_broadcast(&stop_cv);
    pthread_mutex_unlock(&stop_mu);
    return NULL;
}

/* Blocks the signals in this thread (and the threads it starts later) and
 * starts their waiter. */
static bool catch_signals(sigset_t *set, pthread_t *t)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    signal(SIGPIPE, SIG_IGN); /* a client that went away is an error on write, not a kill */
    return pthread_sigmask(SIG_BLOCK, set, NULL) == 0 && pthread_create(t, NULL, signal_main, set) == 0;
}

static void wait_for_stop(void)
{
    pthread_mutex_lock(&stop_mu);
    while (!stop_requested) pthread_cond_wait(&stop_cv, &stop_mu);
    pthread_mutex_unlock(&stop_mu);
}

/* ---- the model ---- */

static const char *model_id(const serve_opts *o)
{
    if (o->alias) return o->alias;
    const char *slash = strrchr(o->g.model, '/');
    return slash ? slash + 1 : o->g.model;
}

/* The chat template: --chat-template, else the model's, else chatml. */
static const char *chat_template(const serve_opts *o, const strata_model *m)
{
    if (o->g.chat_template) return gen_chat_template(&o->g, m);
    strata_error err;
    const char *name;
    if (!strata_model_chat_template_name(m, NULL, &name, &err)) return name;
    fprintf(stderr, "strata serve: %s: no recognized chat template (%s); chats use chatml (--chat-template NAME)\n",
            o->g.model, err.message);
    return "chatml";
}

static int load_and_serve(serve_opts *o, server *srv)
{
    double load_s;
    strata_model *m = gen_open_model(&o->g, &load_s);
    if (!m) return 1;
    const char *tmpl = chat_template(o, m);
    strata_error err;
    if (!tmpl) {
        strata_model_free(m);
        return 1;
    }
    /* the seed gen_open_model chose from the clock is not the user's */
    o->sc.sampling = o->g.sp;
    if (server_set_model(srv, m, tmpl, &err)) {
        fprintf(stderr, "strata serve: %s\n", err.message);
        return 1;
    }
    atomic_store(&loading, false);
    fprintf(stderr, "strata serve: ready in %.1f s: %s, %u sequence%s of up to %u tokens, chat template %s\n", load_s,
            o->sc.model_id, o->g.mp.n_parallel ? o->g.mp.n_parallel : 1, o->g.mp.n_parallel > 1 ? "s" : "",
            strata_model_n_ctx(m), tmpl);
    wait_for_stop();
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    serve_opts o = {.sc = {.port = 8080}};
    gen_opts_init(&o.g, "serve", UINT64_MAX, 1);
    int rc = parse_serve_args(argc, argv, &o);
    if (rc) return rc;
    o.sc.model_id = model_id(&o);
    o.sc.seed_given = o.g.seed_given;
    o.sc.sampling = o.g.sp;
    o.sc.max_tokens = o.g.n_predict == UINT64_MAX ? 0 : (uint32_t)o.g.n_predict;
    o.sc.ignore_eos = o.g.ignore_eos;
    sigset_t set;
    pthread_t sig_thread;
    if (!catch_signals(&set, &sig_thread)) {
        fprintf(stderr, "strata serve: cannot set up signal handling\n");
        return 1;
    }
    strata_error err;
    server *srv;
    if (server_start(&o.sc, &srv, &err)) {
        fprintf(stderr, "strata serve: %s\n", err.message);
        return 1;
    }
    const char *host = o.sc.host ? o.sc.host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "strata serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "",
            (unsigned)server_port(srv));
    rc = load_and_serve(&o, srv);
    server_stop(srv);
    if (!rc) fprintf(stderr, "strata serve: stopped\n");
    return rc;
}
