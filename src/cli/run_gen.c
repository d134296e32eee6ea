/* The generation loop of `strata run` and `strata chat`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/run_gen.h"

/* The end-of-generation ids, found once (counted first: the list is as
 * long as it needs): --ignore-eos masks them all. */
static bool collect_eog(gen_ctx *g, strata_error *err)
{
    uint32_t n = strata_model_n_vocab(g->m), k = 0;
    for (uint32_t i = 0; i < n; i++) k += strata_token_is_eog(g->m, (int32_t)i);
    g->eog = strata_mem_alloc(g->m, STRATA_MEM_SAMPLER, (k ? k : 1) * sizeof *g->eog, err);
    if (!g->eog) return false;
    for (uint32_t i = 0; i < n; i++)
        if (strata_token_is_eog(g->m, (int32_t)i)) g->eog[g->n_eog++] = (int32_t)i;
    return true;
}

static size_t hist_bytes(const gen_ctx *g) { return ((size_t)strata_model_n_ctx(g->m) + 1) * sizeof *g->hist; }
static size_t logits_bytes(const gen_ctx *g) { return (size_t)strata_model_n_vocab(g->m) * sizeof *g->logits; }
static size_t eog_bytes(const gen_ctx *g) { return (g->n_eog ? g->n_eog : 1) * sizeof *g->eog; }

bool gen_init(gen_ctx *g, strata_model *m, const gen_opts *o, run_report *rep)
{
    *g = (gen_ctx){.m = m, .o = o, .out = {.cmd = o->cmd}, .rep = rep};
    strata_error err;
    const char *what = "the sampler";
    bool ok = (g->smp = strata_sampler_new(&o->sp, m, &err)) != NULL;
    if (ok) what = "the token history";
    ok = ok && (g->hist = strata_mem_alloc(m, STRATA_MEM_SAMPLER, hist_bytes(g), &err));
    if (ok) what = "the logits row";
    ok = ok && (g->logits = strata_mem_alloc(m, STRATA_MEM_LOGITS, logits_bytes(g), &err));
    if (ok) what = "the end-of-generation tokens";
    if (ok && collect_eog(g, &err)) return true;
    fprintf(stderr, "strata %s: %s: %s\n", o->cmd, what, err.message);
    gen_free(g);
    return false;
}

void gen_free(gen_ctx *g)
{
    strata_detok_free(g->dt);
    g->dt = NULL;
    strata_sampler_free(g->smp);
    strata_mem_free(g->m, STRATA_MEM_SAMPLER, g->eog, eog_bytes(g));
    strata_mem_free(g->m, STRATA_MEM_SAMPLER, g->hist, hist_bytes(g));
    strata_mem_free(g->m, STRATA_MEM_LOGITS, g->logits, logits_bytes(g));
    g->smp = NULL;
    g->eog = g->hist = NULL;
    g->logits = NULL;
}

bool gen_eval(gen_ctx *g, const int32_t *toks, size_t n)
{
    strata_error err;
    size_t batch = g->o->stats ? g->o->mp.n_batch : n;
    if (g->o->stats) strata_model_get_stats(g->m, &g->rep->last);
    for (size_t done = 0, k; done < n; done += k) {
        k = n - done < batch ? n - done : batch;
        double t0 = report_now();
        if (strata_eval(g->m, toks + done, k, done + k == n ? g->logits : NULL, false, &err)) {
            fprintf(stderr, "\nstrata %s: %s\n", g->o->cmd, err.message);
            return false;
        }
        if (g->o->stats) report_pass(g->rep, g->m, "prompt batch", done / batch + 1, k, report_now() - t0);
    }
    if (n) memcpy(g->hist + g->n_hist, toks, n * sizeof *toks);
    g->n_hist += n;
    return true;
}

bool gen_text_add(strata_model *m, gen_text *t, const char *text, size_t n, strata_error *err)
{
    if (!t) return true;
    char *p = strata_mem_grow(m, STRATA_MEM_TEXT, t->text, &t->cap, t->len + n + 1, err);
    if (!p) return false;
    t->text = p;
    memcpy(t->text + t->len, text, n);
    t->len += n;
    t->text[t->len] = '\0';
    return true;
}

void gen_text_free(strata_model *m, gen_text *t)
{
    strata_mem_free(m, STRATA_MEM_TEXT, t->text, t->cap);
    *t = (gen_text){0};
}

static int32_t sample(gen_ctx *g)
{
    if (g->o->ignore_eos)
        for (size_t i = 0; i < g->n_eog; i++) g->logits[g->eog[i]] = -INFINITY;
    return strata_sample(g->smp, g->logits, g->hist, g->n_hist);
}

/* Streams the text of one token; false on a write error, or when the
 * budget or memory cannot keep the answer. */
static bool emit(gen_ctx *g, const char *text, size_t n, gen_text *answer)
{
    if (!text || !n) return true;
    strata_error err;
    if (!gen_text_add(g->m, answer, text, n, &err)) {
        fprintf(stderr, "\nstrata %s: the answer's text: %s\n", g->o->cmd, err.message);
        return false;
    }
    return out_text(&g->out, text, n);
}

/* Evaluates the token just sampled; the next logits replace the old. */
static gen_end step(gen_ctx *g, int32_t tok, size_t index)
{
    strata_error err;
    if (strata_model_n_past(g->m) >= strata_model_n_ctx(g->m)) return GEN_CTX_FULL;
    double t0 = report_now();
    if (strata_eval(g->m, &tok, 1, g->logits, false, &err)) {
        fprintf(stderr, "\nstrata %s: %s\n", g->o->cmd, err.message);
        return GEN_ERROR;
    }
    if (g->o->stats) report_pass(g->rep, g->m, "token", index, 1, report_now() - t0);
    return GEN_LIMIT;
}

static bool have_detok(gen_ctx *g)
{
    if (!g->dt && !(g->dt = strata_detok_new(g->m))) fprintf(stderr, "strata %s: out of memory\n", g->o->cmd);
    return g->dt != NULL;
}

bool gen_echo(gen_ctx *g, const int32_t *toks, size_t n, bool show)
{
    if (!have_detok(g)) return false;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *text = strata_detok_push(g->dt, toks[i], &k);
        if (show && !emit(g, text, k, NULL)) return false;
    }
    return true;
}

static gen_end loop(gen_ctx *g, uint64_t n, gen_text *answer)
{
    for (uint64_t i = 0; i < n; i++) {
        if (g->stop && *g->stop) return GEN_STOPPED;
        int32_t tok = sample(g);
        if (!g->o->ignore_eos && strata_token_is_eog(g->m, tok)) return GEN_EOG;
        size_t k;
        const char *text = strata_detok_push(g->dt, tok, &k);
        if (!emit(g, text, k, answer)) return GEN_ERROR;
        g->hist[g->n_hist++] = tok;
        g->rep->n_gen++;
        /* The last token is evaluated only when the context goes on after it. */
        if (i + 1 == n && !g->keep_last) return GEN_LIMIT;
        gen_end e = step(g, tok, g->rep->n_gen);
        if (e != GEN_LIMIT) return e;
    }
    return GEN_LIMIT;
}

gen_end gen_answer(gen_ctx *g, uint64_t n, gen_text *answer)
{
    if (!have_detok(g)) return GEN_ERROR;
    report_phase_begin(g->rep, g->m);
    gen_end e = loop(g, n, answer);
    size_t k;
    const char *rest = strata_detok_finish(g->dt, &k);
    if (!emit(g, rest, k, answer)) e = GEN_ERROR;
    report_phase_end(g->rep, g->m);
    strata_detok_free(g->dt);
    g->dt = NULL; /* the next answer starts a text of its own */
    return e;
}
