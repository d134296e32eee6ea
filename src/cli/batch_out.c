/* What `strata batch` writes: the JSONL results and the totals line. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/batch_job.h"
#include "util/error.h"
#include "util/fmt.h"
#include "util/outfile.h"

/* Length of the valid UTF-8 sequence at s[0..n), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t k = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!k || k > n || (k == 2 && s[0] < 0xc2) || (k == 4 && s[0] > 0xf4)) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (k == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0; /* overlong, surrogate */
    if (k == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return k;
}

/* A JSON string of s[0..n) with each invalid UTF-8 byte replaced by U+FFFD
 * (a byte-level token may end mid-character). */
static json_t *json_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j) return j;
    char *clean = malloc(3 * n + 1); /* [3n]: every byte may become the 3 bytes of U+FFFD */
    if (!clean) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k) memcpy(clean + w, s + i, k), w += k, i += k;
        else memcpy(clean + w, "\xef\xbf\xbd", 3), w += 3, i++;
    }
    j = json_stringn(clean, w);
    free(clean);
    return j;
}

static json_t *result_json(const batch_item *it, const batch_result *r)
{
    json_t *o = json_object();
    if (!o) return NULL;
    bool ok = !json_object_set_new(o, "id", it->id ? json_incref(it->id) : json_integer(it->line)) &&
              !json_object_set_new(o, "prompt", json_text(it->text, it->len)) &&
              !json_object_set_new(o, "text", json_text(r->text ? r->text : "", r->len)) &&
              !json_object_set_new(o, "tokens_prompt", json_integer(r->n_prompt)) &&
              !json_object_set_new(o, "tokens_generated", json_integer(r->n_gen)) &&
              !json_object_set_new(o, "finish_reason", json_string(r->finish ? r->finish : "length"));
    if (!ok) json_decref(o);
    return ok ? o : NULL;
}

/* One line per result; false on a write error (errno set) or no memory. */
static bool write_lines(FILE *fp, const batch_job *job, const batch_result *res)
{
    for (size_t i = 0; i < job->in->n; i++) {
        json_t *o = result_json(&job->in->items[i], &res[i]);
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!line) {
            errno = ENOMEM;
            return false;
        }
        bool ok = fputs(line, fp) >= 0 && fputc('\n', fp) != EOF;
        free(line);
        if (!ok) return false;
    }
    return true;
}

int batch_write_results(const batch_job *job, const batch_result *res)
{
    outfile f;
    strata_error err;
    strata_status st = outfile_open(&f, job->out_file, &err);
    if (!st && !write_lines(f.fp, job, res)) {
        st = err_set(&err, STRATA_E_IO, "%s: write failed: %s", outfile_name(&f), strerror(errno));
        outfile_abort(&f);
    } else if (!st) {
        st = outfile_commit(&f, &err);
    }
    if (st) fprintf(stderr, "strata batch: -o %s\n", err.message);
    return st ? 1 : 0;
}

void batch_print_totals(const batch_job *job, const batch_totals *t)
{
    char kv[32];
    double dec = t->gen_s > 0 ? (double)t->decode_tokens / t->gen_s : 0;
    double pr = t->prompt_s > 0 ? (double)t->prompt_tokens / t->prompt_s : 0;
    fprintf(stderr,
            "strata batch: %zu prompts, -np %u: %" PRIu64 " tokens generated in %.2f s (%.2f tok/s overall); "
            "decode %.2f tok/s aggregate (%" PRIu64 " tokens in %.2f s of decode steps); prompt %" PRIu64
            " tokens, %.1f tok/s; %" PRIu64 " steps; streamed %.3f GB (%.3f GB/step); KV reserve %s\n",
            job->in->n, job->n_parallel, t->gen_tokens, t->wall_s, t->wall_s > 0 ? (double)t->gen_tokens / t->wall_s : 0,
            dec, t->decode_tokens, t->gen_s, t->prompt_tokens, pr, t->steps, (double)t->bytes_read / 1e9,
            t->steps ? (double)t->bytes_read / 1e9 / (double)t->steps : 0, fmt_bytes(t->kv_total, kv, sizeof kv));
}
