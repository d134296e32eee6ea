/* strata-synth: command-line front end of the synthetic model generator. */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synth.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: strata-synth -o FILE [--preset NAME] [--type TYPE] [options]\n"
            "\n"
            "Writes a random-weight, runnable llama-architecture GGUF model. The same seed\n"
            "and options always give the same file. Weights are normal with std\n"
            "1/sqrt(fan_in); norms are 1. Data is generated and written in bounded chunks,\n"
            "so a 7B-shaped model needs little memory.\n"
            "\n"
            "  -o, --output FILE    where to write (written as FILE.tmp, renamed when complete)\n"
            "  --preset NAME        shape preset: %s (default tiny)\n"
            "  --type TYPE          f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, or the\n"
            "                       mix q4_k_m (default q8_0). Rows a block type cannot hold\n"
            "                       fall back to q8_0 or f16; norms are always f32\n"
            "  --n-embd N --n-ff N --n-layers N --n-heads N --n-kv-heads N --vocab N --ctx N\n"
            "                       override the preset's dimensions\n"
            "  --vocab-from FILE    copy the tokenizer (tokenizer.* keys) from another GGUF;\n"
            "                       the vocabulary size is then that file's\n"
            "  --tied               no output.weight: the output is tied to the embedding\n"
            "  --seed N             random seed (default 1)\n"
            "  -t, --threads N      generator threads (default: online CPUs)\n"
            "  -q, --quiet          no progress line\n"
            "  -h, --help           show this help\n",
            synth_preset_names());
}

static int bad(const char *flag, const char *value, const char *why)
{
    fprintf(stderr, "strata-synth: %s '%s': %s\n", flag, value, why);
    return 2;
}

static int parse_u64(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return bad(flag, s, "expected a non-negative integer");
    *out = v;
    return 0;
}

static int parse_dim(const char *flag, const char *val, synth_shape *s)
{
    static const struct {
        const char *flag;
        size_t offset;
    } dims[] = {
        {"--n-embd", offsetof(synth_shape, n_embd)},     {"--n-ff", offsetof(synth_shape, n_ff)},
        {"--n-layers", offsetof(synth_shape, n_layers)}, {"--n-heads", offsetof(synth_shape, n_heads)},
        {"--n-kv-heads", offsetof(synth_shape, n_kv_heads)}, {"--vocab", offsetof(synth_shape, vocab)},
        {"--ctx", offsetof(synth_shape, ctx)},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (!strcmp(flag, dims[i].flag)) return parse_u64(flag, val, (uint64_t *)((char *)s + dims[i].offset));
    return -1;
}

/* Dimension overrides apply after the preset, whatever the flag order. */
static int parse_args(int argc, char **argv, synth_options *o)
{
    const char *preset = "tiny";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
    if (!synth_preset(preset, &o->shape)) return bad("--preset", preset, "unknown preset");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(f, "--tied")) { o->tied_output = true; continue; }
        if (!strcmp(f, "-q") || !strcmp(f, "--quiet")) { o->progress = false; continue; }
        if (f[0] != '-') return bad("argument", f, "unexpected (see strata-synth --help)");
        if (i + 1 >= argc) return bad(f, "", "missing value");
        const char *v = argv[++i];
        uint64_t n;
        int rc = parse_dim(f, v, &o->shape);
        if (rc >= 0) { if (rc) return rc; continue; }
        if (!strcmp(f, "--preset")) continue;
        if (!strcmp(f, "-o") || !strcmp(f, "--output")) o->output = v;
        else if (!strcmp(f, "--type")) { if (!synth_parse_type(v, &o->type, &o->mix)) return bad(f, v, "unsupported type"); }
        else if (!strcmp(f, "--vocab-from")) o->vocab_from = v;
        else if (!strcmp(f, "--seed")) { if ((rc = parse_u64(f, v, &o->seed))) return rc; }
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
            if ((rc = parse_u64(f, v, &n))) return rc;
            if (n < 1 || n > 64) return bad(f, v, "must be 1..64");
            o->threads = (int)n;
        } else return bad("option", f, "unknown (see strata-synth --help)");
    }
    if (!o->output) {
        fprintf(stderr, "strata-synth: no output file (-o FILE)\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    synth_options o = {.type = GGML_TYPE_Q8_0, .seed = 1, .threads = cpus > 0 && cpus < 64 ? (int)cpus : 1,
                       .progress = isatty(STDERR_FILENO)};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    strata_error err;
    if (synth_write(&o, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    return 0;
}
