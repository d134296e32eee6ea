/* One `strata batch` run (batch_job.h): contexts sized before the model is
 * opened (the KV reserve is fixed then), from an upper bound of each
 * prompt's tokens read with the vocabulary alone; exact tokens after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/batch_job.h"
#include "cli/run_report.h"
#include "gguf/gguf.h"
#include "sched/sched.h"

#define CTX_ROUND 32u

/* Tokens to generate for an item; 0: until the context is full. */
static uint32_t item_max_tokens(const batch_job *j, const batch_item *it)
{
    if (it->n_predict == BATCH_N_UNTIL_FULL) return 0;
    if (it->n_predict > 0) return (uint32_t)it->n_predict;
    return j->g->n_predict == UINT64_MAX ? 0 : (uint32_t)j->g->n_predict;
}

/* The chat template's name without opening the model: --chat-template, or
 * the family of the file's tokenizer.chat_template; NULL when unknown (the
 * error comes once the model is open). */
static const char *template_before_open(const batch_job *j)
{
    if (j->g->chat_template) return j->g->chat_template;
    gguf_file *f;
    strata_error err;
    if (gguf_open(j->g->model, &f, &err)) return NULL;
    gguf_str s;
    const char *name = gguf_get_str(f, "tokenizer.chat_template", &s) ? strata_chat_template_detect(s.ptr) : NULL;
    gguf_close(f);
    return name; /* a static name of the template table */
}

/* The text an item is tokenized from before the model is open: the prompt,
 * or (chat) the formatted conversation (*owned to free). */
static const char *estimate_text(const batch_job *j, const char *tmpl, const batch_item *it, size_t *len, char **owned)
{
    *owned = NULL;
    *len = it->len;
    if (!j->chat) return it->text;
    strata_chat_message msgs[2];
    size_t k = 0;
    if (j->g->system_prompt) msgs[k++] = (strata_chat_message){"system", j->g->system_prompt};
    msgs[k++] = (strata_chat_message){"user", it->text};
    strata_error err;
    if (!tmpl || strata_chat_format(tmpl, msgs, k, true, owned, &err)) return NULL;
    *len = strlen(*owned);
    return *owned;
}

/* An upper bound of the context the prompts need: the vocabulary's tokens
 * (markup of a chat template as plain text, never fewer than its special
 * tokens) plus BOS plus the tokens to generate; 0 when it cannot be known
 * (then the model's context). */
static uint64_t context_needed(const batch_job *j)
{
    strata_vocab *v;
    strata_error err;
    if (strata_vocab_open(j->g->model, &v, &err)) return 0;
    const char *tmpl = j->chat ? template_before_open(j) : NULL;
    uint64_t need = 0;
    for (size_t i = 0; i < j->in->n; i++) {
        const batch_item *it = &j->in->items[i];
        size_t len, n = 0;
        char *owned;
        int32_t *toks = NULL;
        const char *text = estimate_text(j, tmpl, it, &len, &owned);
        uint32_t gen = item_max_tokens(j, it);
        bool ok = text && gen && !strata_vocab_tokenize(v, text, len, true, false, &toks, &n, &err);
        free(toks);
        free(owned);
        if (!ok) {
            need = 0;
            break;
        }
        uint64_t want = n + 1 + gen;
        if (want > need) need = want;
    }
    strata_vocab_free(v);
    return need;
}

/* -c, else the need rounded up to 32, at most the model's trained context
 * (a saved plan's context is the plan's: --plan FILE). */
static void size_context(batch_job *j)
{
    if (j->g->mp.n_ctx || j->g->mp.plan_file) return;
    uint64_t need = context_needed(j), trained = gen_trained_ctx(j->g->model);
    if (!need) return; /* the model's */
    need = (need + CTX_ROUND - 1) / CTX_ROUND * CTX_ROUND;
    if (trained && need > trained) need = trained;
    j->g->mp.n_ctx = (uint32_t)need;
}

/* The exact tokens of every prompt (BOS, or the chat template). */
static int tokenize_all(const batch_job *j, strata_model *m, int32_t **toks, size_t *n)
{
    const char *tmpl = j->chat ? gen_chat_template(j->g, m) : NULL;
    if (j->chat && !tmpl) return 1;
    uint32_t ctx = strata_model_n_ctx(m);
    for (size_t i = 0; i < j->in->n; i++) {
        const batch_item *it = &j->in->items[i];
        strata_error err;
        strata_status st;
        if (j->chat) {
            strata_chat_message msgs[2];
            size_t k = 0;
            if (j->g->system_prompt) msgs[k++] = (strata_chat_message){"system", j->g->system_prompt};
            msgs[k++] = (strata_chat_message){"user", it->text};
            st = strata_chat_tokenize(m, tmpl, msgs, k, 0, true, &toks[i], &n[i], &err);
        } else {
            st = strata_tokenize(m, it->text, it->len, true, &toks[i], &n[i], &err);
        }
        /* the tokens are ours from here: counted until free_tokens */
        if (!st && (st = strata_mem_take(m, STRATA_MEM_PROMPT, n[i] * sizeof *toks[i], &err))) {
            free(toks[i]);
            toks[i] = NULL;
            n[i] = 0;
        }
        if (st) {
            fprintf(stderr, "strata batch: %s:%u: %s\n", j->prompt_file, it->line, err.message);
            return 1;
        }
        if (n[i] + 1 > ctx) {
            fprintf(stderr, "strata batch: %s:%u: the prompt is %zu tokens; the context holds %u (raise -c)\n",
                    j->prompt_file, it->line, n[i], ctx);
            return 1;
        }
    }
    return 0;
}

static int submit_all(const batch_job *j, sched *s, int32_t **toks, const size_t *n, sched_req **reqs)
{
    for (size_t i = 0; i < j->in->n; i++) {
        const batch_item *it = &j->in->items[i];
        sched_request_params p = {.prompt = toks[i], .n_prompt = n[i], .max_tokens = item_max_tokens(j, it),
                                  .sampling = j->g->sp, .ignore_eog = j->g->ignore_eos};
        char msg[STRATA_ERROR_MAX] = "";
        sched_submit_result r = sched_submit(s, &p, &reqs[i], msg, sizeof msg);
        if (r != SCHED_OK) {
            fprintf(stderr, "strata batch: %s:%u: %s\n", j->prompt_file, it->line, msg[0] ? msg : "not accepted");
            return 1;
        }
    }
    return 0;
}

/* Every request's result; 1 (reported) when one failed. */
static int collect(const batch_job *j, sched_req **reqs, batch_result *res)
{
    int rc = 0;
    for (size_t i = 0; i < j->in->n; i++) {
        sched_progress p;
        sched_req_wait(reqs[i], 0, -1, &p);
        res[i] = (batch_result){.text = p.text, .len = p.len, .n_prompt = p.n_prompt, .n_gen = p.n_gen,
                                .finish = sched_finish_reason(p.finish)};
        if (p.finish == SCHED_ERROR || p.finish == SCHED_CANCELLED) {
            if (!rc)
                fprintf(stderr, "strata batch: %s:%u: %s\n", j->prompt_file, j->in->items[i].line,
                        p.finish == SCHED_ERROR ? p.error : "cancelled");
            rc = 1;
        }
    }
    return rc;
}

/* Runs every prompt through the scheduler; fills res and the totals. */
static int schedule(const batch_job *j, strata_model *m, int32_t **toks, const size_t *n, batch_result *res,
                    batch_totals *t)
{
    sched_params sp = {.n_slots = j->n_parallel, .max_queue = (uint32_t)j->in->n};
    sched *s;
    strata_error err;
    if (sched_new(m, &sp, &s, &err)) { /* its logits rows refused by the budget, ... */
        fprintf(stderr, "strata batch: %s\n", err.message);
        return 1;
    }
    size_t reqs_bytes = j->in->n * sizeof(sched_req *);
    sched_req **reqs = strata_mem_alloc(m, STRATA_MEM_PROMPT, reqs_bytes, &err); /* [prompts] handles, input order */
    strata_model_stats before, after;
    strata_model_get_stats(m, &before);
    double t0 = report_now();
    int rc = reqs ? submit_all(j, s, toks, n, reqs) : 1;
    if (!reqs) fprintf(stderr, "strata batch: %zu requests: %s\n", j->in->n, err.message);
    while (!rc && sched_step(s)) {
    }
    t->wall_s = report_now() - t0;
    if (!rc) rc = collect(j, reqs, res);
    strata_model_get_stats(m, &after);
    sched_stats st;
    sched_get_stats(s, &st);
    /* decode entries (a sampled token fed back) per second of decode-only steps */
    *t = (batch_totals){.wall_s = t->wall_s, .prompt_s = st.prompt_seconds, .gen_s = st.gen_seconds,
                        .prompt_tokens = st.prompt_tokens, .decode_tokens = st.decode_tokens, .steps = st.steps,
                        .bytes_read = after.bytes_read - before.bytes_read, .kv_total = st.kv_total};
    for (size_t i = 0; !rc && i < j->in->n; i++) t->gen_tokens += res[i].n_gen;
    for (size_t i = 0; reqs && i < j->in->n; i++)
        if (reqs[i]) sched_req_release(reqs[i]);
    strata_mem_free(m, STRATA_MEM_PROMPT, reqs, reqs_bytes);
    sched_free(s);
    return rc;
}

/* The prompts read before the model was open, counted in its account now. */
static uint64_t input_bytes(const batch_input *in)
{
    uint64_t b = in->n * sizeof *in->items;
    for (size_t i = 0; i < in->n; i++) b += in->items[i].len + 1;
    return b;
}

/* The per-prompt arrays, counted in the model's account. */
typedef struct job_arrays {
    int32_t **toks;      /* [prompts][n[i]] token ids (the prompt) */
    size_t *n;           /* [prompts] (the prompt) */
    batch_result *res;   /* [prompts] in input order (text) */
} job_arrays;

static bool arrays_new(strata_model *m, size_t np, job_arrays *a, strata_error *err)
{
    *a = (job_arrays){0};
    return (a->toks = strata_mem_alloc(m, STRATA_MEM_PROMPT, np * sizeof *a->toks, err)) &&
           (a->n = strata_mem_alloc(m, STRATA_MEM_PROMPT, np * sizeof *a->n, err)) &&
           (a->res = strata_mem_alloc(m, STRATA_MEM_TEXT, np * sizeof *a->res, err));
}

static void arrays_free(strata_model *m, size_t np, job_arrays *a)
{
    for (size_t i = 0; i < np; i++) {
        if (a->toks && a->toks[i]) {
            strata_mem_give(m, STRATA_MEM_PROMPT, a->n[i] * sizeof *a->toks[i]);
            free(a->toks[i]);
        }
        sched_progress p = {.text = a->res ? a->res[i].text : NULL, .len = a->res ? a->res[i].len : 0, .m = m};
        sched_progress_free(&p);
    }
    strata_mem_free(m, STRATA_MEM_PROMPT, a->toks, np * sizeof *a->toks);
    strata_mem_free(m, STRATA_MEM_PROMPT, a->n, np * sizeof *a->n);
    strata_mem_free(m, STRATA_MEM_TEXT, a->res, np * sizeof *a->res);
}

/* Tokenizes, schedules and writes; the model is open. */
static int run_model(const batch_job *j, strata_model *m)
{
    size_t np = j->in->n;
    strata_error err;
    if (strata_mem_take(m, STRATA_MEM_TEXT, input_bytes(j->in), &err)) {
        fprintf(stderr, "strata batch: -f %s: %zu prompts: %s\n", j->prompt_file, np, err.message);
        return 1;
    }
    job_arrays a;
    batch_totals t = {0};
    int rc = arrays_new(m, np, &a, &err) ? tokenize_all(j, m, a.toks, a.n) : 1;
    if (!a.res) fprintf(stderr, "strata batch: %zu prompts: %s\n", np, err.message);
    if (!rc) rc = schedule(j, m, a.toks, a.n, a.res, &t);
    if (!rc) rc = batch_write_results(j, a.res);
    if (!rc) batch_print_totals(j, &t);
    if (!rc && j->g->stats) report_memory(m);
    arrays_free(m, np, &a);
    strata_mem_give(m, STRATA_MEM_TEXT, input_bytes(j->in));
    return rc;
}

int batch_job_run(batch_job *j)
{
    size_context(j);
    j->g->mp.n_parallel = j->n_parallel;
    double load_s;
    strata_model *m = gen_open_model(j->g, &load_s);
    if (!m) return 1;
    int rc = run_model(j, m);
    strata_model_free(m);
    return rc;
}
