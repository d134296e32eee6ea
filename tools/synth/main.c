/* strata-synth: command-line front end of the synthetic model generator. */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synth.h"
#include "util/outfile.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: strata-synth -o FILE [--arch NAME] [--preset NAME] [--type TYPE] [options]\n"
            "\n"
            "Writes a random-weight, runnable GGUF model with the tensors and hyper-parameter\n"
            "keys llama.cpp's converter writes for its architecture. The same seed and\n"
            "options always give the same file. Weights are normal with std 1/sqrt(fan_in);\n"
            "norms are 1; biases (qwen2) normal with std 0.05. Data is generated and written\n"
            "in bounded chunks, so a 7B-shaped model needs little memory.\n"
            "\n"
            "  -o, --output FILE    where to write (through a temporary FILE.tmpXXXXXX in the same\n"
            "                       directory, renamed when complete and removed on failure or\n"
            "                       Ctrl-C; a directory is refused before any work)\n"
            "  --arch NAME          architecture: %s\n"
            "                       (default llama). The qwen families use RoPE base\n"
            "                       1e6; gemma3 ties the output to the embedding (no\n"
            "                       output.weight) and uses RoPE base 10000 on window layers\n"
            "  --preset NAME        shape preset: %s (default tiny)\n"
            "  --type TYPE          f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, or the\n"
            "                       mix q4_k_m (default q8_0). Rows a block type cannot hold\n"
            "                       fall back to q8_0 or f16; norms, biases and the expert\n"
            "                       router are always f32\n"
            "  --n-embd N --n-ff N --n-layers N --n-heads N --n-kv-heads N --vocab N --ctx N\n"
            "                       override the preset's dimensions\n"
            "  --head-dim N         per-head dimension (default n-embd / n-heads; gemma3:\n"
            "                       256, as in Gemma 3 1B to 12B); when it is not\n"
            "                       n-embd / n-heads, and for gemma3, the file carries\n"
            "                       attention.key_length and value_length\n"
            "  --sliding-window N   attention window in tokens, 0: none (default: gemma3 512,\n"
            "                       on 5 layers of 6; none elsewhere, where a window covers\n"
            "                       every layer)\n"
            "  --n-expert N         experts per layer, 2 or more (llama: Mixtral-style\n"
            "                       experts as wide as --n-ff; qwen3moe: default 8)\n"
            "  --n-expert-used K    experts used per token (default 2)\n"
            "  --expert-ff N        qwen2moe / qwen3moe expert width (default n-ff / 3, in whole\n"
            "                       blocks)\n"
            "  --shared-ff N        a shared expert N wide (ffn_*_shexp) run for every token beside\n"
            "                       the routed ones (qwen2moe: always, default --n-ff, gated by\n"
            "                       ffn_gate_inp_shexp; llama and qwen3moe with experts: none by\n"
            "                       default, ungated as in DeepSeek / Llama 4)\n"
            "  --routing-skew ALPHA give the experts a known popularity (default: none, the\n"
            "                       router is random like the other weights, and which experts\n"
            "                       are popular is an accident of the seed). Each layer ranks\n"
            "                       its experts in its own order; a token's first expert has\n"
            "                       rank r with probability proportional to r^-ALPHA, each further\n"
            "                       one likewise among those left. 0: uniform; 1: realistic (with\n"
            "                       128 experts, 8 used, the top 10 %% take about half the picks).\n"
            "                       Routing then depends mostly on the token, little on the\n"
            "                       context: decode a varied stream (sampling) to see it. Uses\n"
            "                       the first 32 + experts embedding dimensions (--n-embd at\n"
            "                       least twice that)\n"
            "  --vocab-from FILE    copy the tokenizer (tokenizer.* keys) from another GGUF;\n"
            "                       the vocabulary size is then that file's\n"
            "  --tied               no output.weight: the output is tied to the embedding\n"
            "  --seed N             random seed (default 1)\n"
            "  -t, --threads N      generator threads (default: online CPUs)\n"
            "  -q, --quiet          no progress line\n"
            "  -h, --help           show this help\n",
            synth_arch_names(), synth_preset_names());
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

static int parse_skew(const char *flag, const char *s, synth_options *o)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || strspn(s, "0123456789.") != strlen(s) || !(v <= 16))
        return bad(flag, s, "expected a decimal number 0..16");
    o->routing = true;
    o->routing_skew = v;
    return 0;
}

/* Dimensions and counts; those whose 0 would mean "the family's default"
 * refuse it (min). */
static int parse_dim(const char *flag, const char *val, synth_options *o)
{
    static const struct {
        const char *flag;
        size_t offset;
        uint64_t min;
    } dims[] = {
        {"--n-embd", offsetof(synth_options, shape.n_embd), 0},
        {"--n-ff", offsetof(synth_options, shape.n_ff), 0},
        {"--n-layers", offsetof(synth_options, shape.n_layers), 0},
        {"--n-heads", offsetof(synth_options, shape.n_heads), 0},
        {"--n-kv-heads", offsetof(synth_options, shape.n_kv_heads), 0},
        {"--vocab", offsetof(synth_options, shape.vocab), 0},
        {"--ctx", offsetof(synth_options, shape.ctx), 0},
        {"--head-dim", offsetof(synth_options, head_dim), 2},
        {"--n-expert", offsetof(synth_options, n_expert), 2},
        {"--n-expert-used", offsetof(synth_options, n_expert_used), 1},
        {"--expert-ff", offsetof(synth_options, n_ff_exp), 1},
        {"--shared-ff", offsetof(synth_options, n_ff_shexp), 1},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        if (strcmp(flag, dims[i].flag)) continue;
        uint64_t *dst = (uint64_t *)((char *)o + dims[i].offset);
        int rc = parse_u64(flag, val, dst);
        if (!rc && *dst < dims[i].min)
            return bad(flag, val, dims[i].min == 1 ? "must be at least 1" : "must be at least 2");
        return rc;
    }
    return -1;
}

static int parse_arch(const char *v, synth_options *o)
{
    if (!synth_arch_known(v)) {
        fprintf(stderr, "strata-synth: --arch '%s': unknown architecture (known: %s)\n", v, synth_arch_names());
        return 2;
    }
    o->arch = v;
    return 0;
}

/* One option with a value (f v); 2 after a message, -1 for an unknown flag. */
static int parse_value(const char *f, const char *v, synth_options *o)
{
    uint64_t n;
    int rc = parse_dim(f, v, o);
    if (rc >= 0) return rc;
    if (!strcmp(f, "--preset")) return 0; /* read first */
    if (!strcmp(f, "-o") || !strcmp(f, "--output")) o->output = v;
    else if (!strcmp(f, "--arch")) return parse_arch(v, o);
    else if (!strcmp(f, "--type")) {
        if (!synth_parse_type(v, &o->type, &o->mix)) return bad(f, v, "unsupported type");
    } else if (!strcmp(f, "--sliding-window")) {
        if ((rc = parse_u64(f, v, &n))) return rc;
        o->n_swa = n ? n : SYNTH_SWA_NONE;
    } else if (!strcmp(f, "--vocab-from")) o->vocab_from = v;
    else if (!strcmp(f, "--seed")) return parse_u64(f, v, &o->seed);
    else if (!strcmp(f, "--routing-skew")) return parse_skew(f, v, o);
    else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        if ((rc = parse_u64(f, v, &n))) return rc;
        if (n < 1 || n > 64) return bad(f, v, "must be 1..64");
        o->threads = (int)n;
    } else return -1;
    return 0;
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
        int rc = parse_value(f, argv[++i], o);
        if (rc < 0) return bad("option", f, "unknown (see strata-synth --help)");
        if (rc) return rc;
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
    synth_options checked; /* shape and family errors are usage errors too */
    if (synth_resolve(&o, &checked, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 2;
    }
    if (outfile_check(o.output, &err)) { /* before generating, not after */
        fprintf(stderr, "strata-synth: %s\n", err.message);
        return 1;
    }
    if (synth_write(&o, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    return 0;
}
