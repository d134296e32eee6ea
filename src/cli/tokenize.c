/* strata tokenize: the tokens of a text, one line per token as llama.cpp's
 * llama-tokenize prints them. Needs only the vocabulary, so it works on
 * vocabulary-only GGUF files. Uses only the public API (include/strata.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "strata.h"

#define MAX_TEXT_FILE ((size_t)64 << 20)

static const char tokenize_usage[] =
    "usage: strata tokenize -m FILE (-p TEXT | -f FILE) [--ids] [--no-bos] [--special]\n"
    "\n"
    "Prints the tokens of the text, one line each: \"ID -> 'PIECE'\" (as llama.cpp's\n"
    "llama-tokenize). Only the vocabulary is read, so vocabulary-only GGUF files work.\n"
    "In pieces, control characters, backslashes and bytes that are not valid UTF-8\n"
    "are written as C escapes (\\n, \\\\, \\xNN).\n"
    "\n"
    "  -m, --model FILE    GGUF file: a model or a vocabulary-only file\n"
    "  -p, --prompt TEXT   the text\n"
    "  -f, --file FILE     read the text from FILE (a regular file of at most 64 MiB)\n"
    "  --ids               print only the ids, as [1, 2, 3]\n"
    "  --no-bos            add neither BOS nor EOS (default: as the model's\n"
    "                      tokenizer.ggml.add_bos_token / add_eos_token say)\n"
    "  --special           special tokens written in the text (<s>, <|im_start|>, ...)\n"
    "                      become those tokens (default: they are plain text)\n"
    "  -h, --help          show this help\n";

typedef struct tok_opts {
    const char *model, *prompt, *file;
    bool ids, no_bos, special;
} tok_opts;

static bool is_flag(const char *a, const char *s, const char *l) { return !strcmp(a, s) || !strcmp(a, l); }

/* Where the value of option f goes, NULL when f takes no value. */
static const char **value_slot(tok_opts *o, const char *f)
{
    if (is_flag(f, "-m", "--model")) return &o->model;
    if (is_flag(f, "-p", "--prompt")) return &o->prompt;
    if (is_flag(f, "-f", "--file")) return &o->file;
    return NULL;
}

/* 0: parsed; 1: --help printed; 2: usage error (reported). */
static int parse_args(int argc, char **argv, tok_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], **slot = value_slot(o, f);
        if (is_flag(f, "-h", "--help")) {
            fputs(tokenize_usage, stdout);
            return 1;
        }
        if (!strcmp(f, "--ids")) o->ids = true;
        else if (!strcmp(f, "--no-bos")) o->no_bos = true;
        else if (!strcmp(f, "--special")) o->special = true;
        else if (slot && i + 1 < argc) *slot = argv[++i];
        else if (slot) {
            fprintf(stderr, "strata tokenize: %s: missing value\n", f);
            return 2;
        } else {
            arg_no_value("tokenize", (const char *const[]){tokenize_usage, NULL}, f);
            return 2;
        }
    }
    if (!o->model || !o->prompt == !o->file) {
        fprintf(stderr, "strata tokenize: need -m FILE and exactly one of -p TEXT or -f FILE "
                        "(see strata tokenize --help)\n");
        return 2;
    }
    return 0;
}

/* Doubles the buffer (up to one byte past the limit); false when out of memory. */
static bool grow(char **buf, size_t *cap)
{
    size_t want = *cap * 2 < MAX_TEXT_FILE + 1 ? *cap * 2 : MAX_TEXT_FILE + 1;
    char *more = realloc(*buf, want + 1);
    if (!more) return false;
    *buf = more;
    *cap = want;
    return true;
}

/* Reads fd to its end into a malloc'd, NUL-terminated buffer; `hint` is the
 * size fstat gave (the file may still grow, up to the limit). */
static char *read_all(int fd, size_t hint, size_t *len, const char **why)
{
    size_t cap = hint + 1, n = 0;
    char *buf = malloc(cap + 1);
    *why = "out of memory";
    while (buf && (n < cap || grow(&buf, &cap))) {
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            *why = strerror(errno);
            break;
        }
        if (k == 0) {
            buf[n] = '\0';
            *len = n;
            return buf;
        }
        n += (size_t)k;
        if (n > MAX_TEXT_FILE) {
            *why = "larger than 64 MiB";
            break;
        }
    }
    free(buf);
    return NULL;
}

/* The text of -f: a regular file (opened without blocking, so a FIFO is
 * refused rather than waited on) of at most 64 MiB. */
static char *read_text_file(const char *path, size_t *len)
{
    const char *why = NULL;
    struct stat st;
    char *text = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) why = strerror(errno);
    else if (S_ISDIR(st.st_mode)) why = "is a directory";
    else if (!S_ISREG(st.st_mode)) why = "not a regular file";
    else if ((uint64_t)st.st_size > MAX_TEXT_FILE) why = "larger than 64 MiB";
    else text = read_all(fd, (size_t)st.st_size, len, &why);
    if (fd >= 0) close(fd);
    if (!text) fprintf(stderr, "strata tokenize: -f %s: %s\n", path, why);
    return text;
}

/* Length of the well-formed UTF-8 sequence at s[0..n), 0 if there is none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t len = b < 0x80 ? 1 : b < 0xC2 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF5 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    /* no overlong 3/4-byte forms, no surrogates, nothing past U+10FFFF */
    if ((b == 0xE0 && s[1] < 0xA0) || (b == 0xED && s[1] >= 0xA0) || (b == 0xF0 && s[1] < 0x90) ||
        (b == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

/* Writes a piece: valid UTF-8 as is, the rest as C escapes. */
static void put_piece(const char *p, size_t n, FILE *out)
{
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(s + i, n - i);
        unsigned char c = s[i];
        if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c == '\\') fputs("\\\\", out);
        else if (k == 0 || c < 0x20 || c == 0x7F) fprintf(out, "\\x%02X", c);
        else fwrite(s + i, 1, k, out);
        i += k ? k : 1;
    }
}

static void print_tokens(const strata_vocab *v, const int32_t *ids, size_t n, bool only_ids)
{
    if (only_ids) {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        fputs("]\n", stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *piece = strata_vocab_piece(v, ids[i], &len);
        printf("%6d -> '", ids[i]);
        put_piece(piece ? piece : "", len, stdout);
        fputs("'\n", stdout);
    }
}

/* Output errors (a full disk, a closed pipe) surface when stdout is flushed. */
static int finish_output(void)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
    fprintf(stderr, "strata tokenize: writing the output: %s\n",
            errno ? strerror(errno) : "write error");
    return 1;
}

static int tokenize_text(const tok_opts *o, const char *text, size_t len)
{
    strata_error err;
    strata_vocab *v;
    if (strata_vocab_open(o->model, &v, &err)) {
        fprintf(stderr, "strata tokenize: %s\n", err.message);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (strata_vocab_tokenize(v, text, len, !o->no_bos, o->special, &ids, &n, &err)) {
        fprintf(stderr, "strata tokenize: %s: %s\n", o->model, err.message);
        rc = 1;
    } else {
        print_tokens(v, ids, n, o->ids);
        rc = finish_output();
    }
    free(ids);
    strata_vocab_free(v);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    tok_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc == 1) return finish_output();
    if (rc) return rc;
    size_t len = o.prompt ? strlen(o.prompt) : 0;
    char *file_text = o.file ? read_text_file(o.file, &len) : NULL;
    if (o.file && !file_text) return 1;
    rc = tokenize_text(&o, file_text ? file_text : o.prompt, len);
    free(file_text);
    return rc;
}
