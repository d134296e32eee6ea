/* strata chat: a conversation on the terminal. The conversation stays in
 * the model's context: each turn evaluates only its own tokens (the closing
 * markup of the previous answer, the user's message, the opening of the
 * answer). When the context is full, it starts over with the system message
 * and the most recent turns that fit. Uses only the public API. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_gen.h"
#include "cli/run_opts.h"
#include "strata.h"

static const char chat_usage[] =
    "usage: strata chat -m MODEL [options]\n"
    "\n"
    "Talks with a chat model: every line read from stdin is a user message, and the\n"
    "answer streams to stdout. The conversation stays in the model's context, so a\n"
    "turn evaluates only its own tokens; when the context is full, the oldest turns\n"
    "are dropped. The model's chat template is used unless --chat-template names one.\n"
    "\n"
    "  /exit                end the chat (as does end of input, Ctrl-D)\n"
    "  /reset               start a new conversation (the system message stays)\n"
    "  Ctrl-C               stop the answer; at the prompt, end the chat (exit 130)\n"
    "\n"
    "  -n, --n-predict N    at most N tokens per answer (default and -1: until the model\n"
    "                       ends its turn or the context is full)\n";

#define EXIT_INTERRUPTED 130 /* 128 + SIGINT, as shells report it */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct chat {
    strata_model *m;
    const gen_opts *o;
    const char *tmpl;
    gen_ctx g;
    run_report rep;
    strata_chat_message *msgs; /* [cap] contents owned; both counted in the model's account (text) */
    size_t n_msgs, cap;
    size_t n_sys;  /* 1 with a system message */
    size_t n_done; /* messages whose text is in the context */
} chat;

/* Keeps a copy of the message; false (reported) when the budget or memory
 * cannot hold it. */
static bool push_msg(chat *c, const char *role, const char *text, size_t len)
{
    strata_error err;
    if (c->n_msgs == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        strata_chat_message *v = strata_mem_realloc(c->m, STRATA_MEM_TEXT, c->msgs, c->cap * sizeof *v,
                                                    cap * sizeof *v, &err);
        if (!v) goto refused;
        c->msgs = v;
        c->cap = cap;
    }
    char *s = strata_mem_alloc(c->m, STRATA_MEM_TEXT, len + 1, &err); /* zeroed: NUL-terminated */
    if (!s) goto refused;
    memcpy(s, text, len);
    c->msgs[c->n_msgs++] = (strata_chat_message){role, s};
    return true;
refused:
    fprintf(stderr, "strata chat: the %s message: %s\n", role, err.message);
    return false;
}

static void free_content(chat *c, const strata_chat_message *msg)
{
    strata_mem_free(c->m, STRATA_MEM_TEXT, (char *)msg->content, strlen(msg->content) + 1);
}

/* Drops messages [from, to). */
static void drop_msgs(chat *c, size_t from, size_t to)
{
    if (from == to) return;
    for (size_t i = from; i < to; i++) free_content(c, &c->msgs[i]);
    memmove(c->msgs + from, c->msgs + to, (c->n_msgs - to) * sizeof *c->msgs);
    c->n_msgs -= to - from;
}

/* Tokens of the system message and the messages from `first` on, after the
 * first n_done of those (n_done 0: from the start). */
static bool chat_tokens(chat *c, size_t first, size_t n_done, int32_t **toks, size_t *n)
{
    size_t k = c->n_sys + c->n_msgs - first;
    strata_chat_message *view = malloc(k * sizeof *view);
    strata_error err = {.message = "out of memory"};
    strata_status st = STRATA_E_NOMEM;
    if (view) {
        memcpy(view, c->msgs, c->n_sys * sizeof *view);
        memcpy(view + c->n_sys, c->msgs + first, (c->n_msgs - first) * sizeof *view);
        st = strata_chat_tokenize(c->m, c->tmpl, view, k, n_done, true, toks, n, &err);
    }
    free(view);
    /* the tokens are ours from here: counted until free_tokens */
    if (!st && (st = strata_mem_take(c->m, STRATA_MEM_PROMPT, *n * sizeof **toks, &err))) free(*toks);
    if (st) fprintf(stderr, "strata chat: %s\n", err.message);
    return st == STRATA_OK;
}

static void free_tokens(chat *c, int32_t *toks, size_t n)
{
    strata_mem_give(c->m, STRATA_MEM_PROMPT, n * sizeof *toks);
    free(toks);
}

static void restart(chat *c)
{
    strata_model_reset(c->m);
    c->g.n_hist = 0;
    c->n_done = 0;
}

/* Drops the turns before message `first` and evaluates toks, the tokens
 * of what is left, in an empty context. */
static bool start_over(chat *c, size_t first, const int32_t *toks, size_t n)
{
    size_t dropped = (first - c->n_sys) / 2;
    fprintf(stderr, "strata chat: the context of %u tokens is full; ", strata_model_n_ctx(c->m));
    if (dropped) fprintf(stderr, "dropped %zu old turn%s\n", dropped, dropped == 1 ? "" : "s");
    else fprintf(stderr, "the conversation is evaluated again\n");
    drop_msgs(c, c->n_sys, first);
    restart(c);
    return gen_eval(&c->g, toks, n);
}

/* The context cannot take the new turn: start over with the system message
 * and the most recent turns that fit with room for an answer (a quarter of
 * the context, or -n if less). Returns 0, 1 (fatal) or 2 (the message alone
 * does not fit; nothing changed). */
static int refit(chat *c)
{
    uint64_t ctx = strata_model_n_ctx(c->m), reserve = ctx / 4;
    if (c->o->n_predict < reserve) reserve = c->o->n_predict;
    for (size_t first = c->n_sys; first < c->n_msgs; first += 2) { /* messages: [system] user assistant ... user */
        int32_t *toks;
        size_t n;
        if (!chat_tokens(c, first, 0, &toks, &n)) return 1;
        bool alone = first + 1 == c->n_msgs, fits = n + reserve <= ctx || (alone && n < ctx);
        bool ok = fits && start_over(c, first, toks, n);
        free_tokens(c, toks, n);
        if (fits) return ok ? 0 : 1;
    }
    fprintf(stderr, "strata chat: the message does not fit in the context of %llu tokens (raise -c); "
            "it was not sent\n", (unsigned long long)ctx);
    return 2;
}

/* Evaluates the new user message: only its turn when the context has room. */
static int feed(chat *c)
{
    int32_t *toks;
    size_t n;
    if (!chat_tokens(c, c->n_sys, c->n_done, &toks, &n)) return 1;
    bool fits = (uint64_t)strata_model_n_past(c->m) + n < strata_model_n_ctx(c->m);
    bool ok = fits && gen_eval(&c->g, toks, n);
    free_tokens(c, toks, n);
    if (fits) return ok ? 0 : 1;
    return refit(c);
}

static void tell(gen_end e, uint32_t ctx)
{
    if (e == GEN_STOPPED) fprintf(stderr, "\nstrata chat: stopped\n");
    if (e == GEN_CTX_FULL)
        fprintf(stderr, "\nstrata chat: the context of %u tokens is full; the answer is cut short (the oldest "
                "turns will be dropped)\n", ctx);
}

/* One user message and its answer. Returns 0 or 1 (fatal). */
static int chat_turn(chat *c, const char *line)
{
    if (!push_msg(c, "user", line, strlen(line))) return 1;
    int r = feed(c);
    if (r) {
        drop_msgs(c, c->n_msgs - 1, c->n_msgs);
        return r == 1;
    }
    gen_text answer = {0};
    gen_end e = gen_answer(&c->g, c->o->n_predict, &answer);
    c->g.n_hist = strata_model_n_past(c->m); /* a token sampled but not evaluated is not in the context */
    bool ok = e != GEN_ERROR && push_msg(c, "assistant", answer.text ? answer.text : "", answer.len);
    gen_text_free(c->m, &answer);
    if (!ok) return 1;
    c->n_done = c->n_msgs;
    tell(e, strata_model_n_ctx(c->m));
    return c->g.out.last == '\n' || out_text(&c->g.out, "\n", 1) ? 0 : 1;
}

static void chat_reset(chat *c)
{
    drop_msgs(c, c->n_sys, c->n_msgs);
    restart(c);
    fprintf(stderr, "strata chat: new conversation\n");
}

/* After the input ends: 0 at end of file, 130 after Ctrl-C, 1 on an error. */
static int input_end(void)
{
    if (interrupted) return EXIT_INTERRUPTED;
    if (!ferror(stdin)) return 0;
    fprintf(stderr, "strata chat: stdin: %s\n", strerror(errno ? errno : EIO));
    return 1;
}

/* One line of stdin into *line (its buffer through the account, so a line
 * longer than the budget holds is refused as it grows, not after). Returns
 * 1 with a line, 0 at the end of the input (or Ctrl-C), -1 when the line
 * did not fit (reported; the rest of it is skipped). */
static int read_line(chat *c, gen_text *line)
{
    char chunk[4096];
    line->len = 0;
    if (line->text) line->text[0] = '\0';
    for (;;) {
        if (interrupted || !fgets(chunk, sizeof chunk, stdin)) return line->len ? 1 : 0;
        size_t k = strlen(chunk);
        strata_error err;
        if (!gen_text_add(c->m, line, chunk, k, &err)) {
            fprintf(stderr, "strata chat: the message (over %zu bytes): %s; it was not sent\n", line->len + k,
                    err.message);
            while (!strchr(chunk, '\n') && fgets(chunk, sizeof chunk, stdin)) {
            }
            return -1;
        }
        if (k && chunk[k - 1] == '\n') return 1;
    }
}

static int chat_loop(chat *c)
{
    gen_text line = {0};
    int rc = 0;
    while (rc == 0) {
        if (!out_text(&c->g.out, "> ", 2)) {
            rc = 1;
            break;
        }
        errno = 0;
        int got = read_line(c, &line);
        if (got < 0) continue;
        if (got == 0) {
            rc = input_end();
            break;
        }
        size_t k = line.len;
        while (k > 0 && (line.text[k - 1] == '\n' || line.text[k - 1] == '\r')) line.text[--k] = '\0';
        if (!strcmp(line.text, "/exit")) break;
        if (!strcmp(line.text, "/reset")) chat_reset(c);
        else if (line.text[0]) rc = chat_turn(c, line.text);
        interrupted = 0; /* a Ctrl-C during the answer stopped only the answer */
    }
    gen_text_free(c->m, &line);
    return rc;
}

static const char *const chat_help[] = {chat_usage, gen_opts_ctx_usage, gen_opts_usage, NULL};

static int parse_chat_args(int argc, char **argv, gen_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(chat_usage, stdout);
            fputs(gen_opts_ctx_usage, stdout);
            fputs(gen_opts_usage, stdout);
            exit(0);
        }
        if (gen_opts_flag(o, f)) continue;
        if (i + 1 >= argc) {
            arg_no_value("chat", chat_help, f);
            return 2;
        }
        int r = gen_opts_value(o, f, argv[++i]);
        if (r < 0) return 2;
        if (r == 0) {
            arg_no_value("chat", chat_help, f);
            return 2;
        }
    }
    if (!o->model) {
        fprintf(stderr, "strata chat: need -m MODEL (see strata chat --help)\n");
        return 2;
    }
    return 0;
}

static int chat_session(chat *c)
{
    if (!(c->tmpl = gen_chat_template(c->o, c->m))) return 1;
    if (!gen_init(&c->g, c->m, c->o, &c->rep)) return 1;
    c->g.keep_last = true;
    c->g.stop = &interrupted;
    int rc = 0;
    if (c->o->system_prompt) {
        if (push_msg(c, "system", c->o->system_prompt, strlen(c->o->system_prompt))) c->n_sys = 1;
        else rc = 1;
    }
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: Ctrl-C interrupts a read */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "strata chat: template %s; /exit or Ctrl-D ends, /reset starts over, Ctrl-C stops an answer\n",
            c->tmpl);
    if (!rc) rc = chat_loop(c);
    if (!out_finish(&c->g.out) && rc == 0) rc = 1;
    drop_msgs(c, 0, c->n_msgs);
    strata_mem_free(c->m, STRATA_MEM_TEXT, c->msgs, c->cap * sizeof *c->msgs);
    gen_free(&c->g);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    gen_opts o;
    gen_opts_init(&o, "chat", 1u << 30, 1);
    int rc = parse_chat_args(argc, argv, &o);
    if (rc) return rc;
    chat c = {.o = &o};
    if (!(c.m = gen_open_model(&o, &c.rep.load_s))) return 1;
    rc = chat_session(&c);
    strata_model_free(c.m);
    return rc;
}
