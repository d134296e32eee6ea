/* The command-line conventions every subcommand shares (issue 16): unknown
 * options are named as such with the nearest known one, numbers are
 * decimal only, -m names the model everywhere, llama.cpp's -n -1, -c 0 and
 * --batch-size, warnings for -c and -t beyond the model and the machine,
 * and --help without doubled percent signs. Through the sanitized binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* `strata ARGS` with stderr merged into stdout. */
static int strata(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s", test_strata_bin(), args);
    return test_run(cmd, out, true);
}

/* Runs `strata ARGS` and checks its exit status and that its output is the
 * one line `says` (a substring) contains. */
#define EXPECT(args, rc_want, says)                                                                              \
    do {                                                                                                         \
        char *o_ = NULL;                                                                                         \
        int rc_ = strata(args, &o_);                                                                             \
        const char *nl_ = o_ ? strchr(o_, '\n') : NULL;                                                          \
        CHECK(rc_ == (rc_want) && o_ && strstr(o_, says) && nl_ && !nl_[1], " '%s': rc %d: %s", args, rc_, o_); \
        free(o_);                                                                                                \
    } while (0)

/* An unknown option is reported as such, also as the last argument (it was
 * "missing value"), with the nearest known option when one is close. */
TEST(test_cli_conventions_unknown_option)
{
    EXPECT("run -m x.gguf -p Hi -n 2 --mlock", 2, "strata run: unknown option '--mlock' (see strata run --help)");
    EXPECT("run -m x.gguf -p Hi --tmep 0", 2, "unknown option '--tmep'; did you mean '--temp'?");
    EXPECT("run -m x.gguf -p Hi --n-predit", 2, "did you mean '--n-predict'?");
    EXPECT("run -m x.gguf -p Hi -n", 2, "strata run: -n: missing value");
    EXPECT("run -m x.gguf -p Hi stray", 2, "strata run: unexpected argument 'stray'");
    EXPECT("chat -m x.gguf --top_k 3", 2, "strata chat: unknown option '--top_k'; did you mean '--top-k'?");
    EXPECT("chat -m x.gguf --mlock", 2, "strata chat: unknown option '--mlock'");
    EXPECT("chat -m x.gguf --n-predict", 2, "strata chat: --n-predict: missing value");
    EXPECT("inspect x.gguf --jsno", 2, "strata inspect: unknown option '--jsno'; did you mean '--json'?");
    EXPECT("detect --mesure", 2, "strata detect: unknown option '--mesure'; did you mean '--measure'?");
    EXPECT("doctor --pth .", 2, "strata doctor: unknown option '--pth'; did you mean '--path'?");
    EXPECT("tokenize -m x.gguf -p x --idz", 2, "strata tokenize: unknown option '--idz'; did you mean '--ids'?");
    EXPECT("tokenize -m x.gguf -p x --mlock", 2, "strata tokenize: unknown option '--mlock'");
    EXPECT("plan x.gguf --temp", 3, "strata plan: unknown option '--temp'");
    /* nothing is suggested when nothing is close */
    char *out = NULL;
    CHECK(strata("run -m x.gguf -p Hi --mlock", &out) == 2 && out && !strstr(out, "did you mean"), " %s", out);
    free(out);
}

/* Numbers are decimal: hex, exponents, inf, nan and signs are errors naming
 * the flag; sizes below 1 MiB are errors (never 0 = no budget). */
TEST(test_cli_conventions_decimal_numbers)
{
    EXPECT("run -m x.gguf -p Hi --temp 0x1p3", 2, "strata run: --temp '0x1p3': expected a decimal number");
    EXPECT("run -m x.gguf -p Hi --temp inf", 2, "--temp 'inf'");
    EXPECT("run -m x.gguf -p Hi --top-p nan", 2, "--top-p 'nan'");
    EXPECT("run -m x.gguf -p Hi --temp 1e-1", 2, "--temp '1e-1'");
    EXPECT("run -m x.gguf -p Hi --temp -0", 2, "--temp '-0'");
    EXPECT("run -m x.gguf -p Hi --mem 0x10M", 2, "strata run: --mem '0x10M'");
    EXPECT("run -m x.gguf -p Hi --mem 1e3M", 2, "--mem '1e3M'");
    EXPECT("run -m x.gguf -p Hi --mem 0.5", 2, "--mem '0.5': at least 1M");
    EXPECT("run -m x.gguf -p Hi --mem 1000K", 2, "--mem '1000K': at least 1M");
    EXPECT("run -m x.gguf -p Hi --mem 1.5", 2, "at least 1M");
    EXPECT("run -m x.gguf -p Hi --mem 5Q", 2, "expected a size");
    EXPECT("run -m x.gguf -p Hi --gpu-mem 0.1", 2, "--gpu-mem '0.1': at least 1M");
    EXPECT("run -m x.gguf -p Hi -t 0x2", 2, "-t '0x2'");
    EXPECT("run -m x.gguf -p Hi -t ' 2'", 2, "-t ' 2'");
    EXPECT("run -m x.gguf -p Hi -s +5", 2, "-s '+5'");
    EXPECT("run -m x.gguf -p Hi -s 18446744073709551616", 2, "-s '18446744073709551616'");
    EXPECT("run -m x.gguf -p Hi -n -2", 2, "-n '-2'");
    EXPECT("chat -m x.gguf --repeat-penalty 1.5e0", 2, "--repeat-penalty '1.5e0'");
}

/* -m names the model of inspect as the positional path does. */
TEST(test_cli_conventions_inspect_model_flag)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "inspect -m '%s' --json", p);
    CHECK(strata(args, &out) == 0 && out && strstr(out, "\"context_length\""), " %s", out);
    free(out);
    snprintf(args, sizeof args, "inspect '%s' --model '%s' --json", p, p);
    CHECK(strata(args, &out) == 0 && out && strstr(out, "\"context_length\""), " %s", out);
    free(out);
    snprintf(args, sizeof args, "inspect '%s' -m other.gguf", p);
    EXPECT(args, 2, "strata inspect: more than one model given");
    EXPECT("inspect -m", 2, "strata inspect: -m: missing value");
}

/* -n -1 generates until the context is full; -c 0 is the model's context
 * (stories260K: 2048); --batch-size is -b. */
TEST(test_cli_conventions_llama_cpp_values)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "run -m '%s' -t 2 -p Once --temp 0 -n -1 -c 32 --ignore-eos", p);
    CHECK(strata(args, &out) == 0 && out && strstr(out, "the context of 32 tokens is full") &&
              strstr(out, "generated 31 tokens"),
          " %s", out);
    free(out);
    snprintf(args, sizeof args, "run -m '%s' -t 2 -p Once --temp 0 -n 2 -c 0 --batch-size 1", p);
    CHECK(strata(args, &out) == 0 && out && strstr(out, "context 2048") && !strstr(out, "warning"), " %s", out);
    free(out);
}

/* One warning line each for -c beyond the trained context and -t beyond
 * the usable cores; the run goes on. */
TEST(test_cli_conventions_warnings)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p Once --temp 0 -n 2 -c 4096 -t 256", p);
    CHECK(strata(args, &out) == 0 && out &&
              strstr(out, "strata run: warning: -c 4096 is more than the model's trained context (2048 tokens)") &&
              strstr(out, "strata run: warning: -t 256 is more than the "),
          " %s", out);
    free(out);
}

/* No --help prints a doubled percent sign (usage text goes through fputs). */
TEST(test_cli_conventions_help_percent)
{
    static const char *const cmds[] = {"run", "chat", "plan", "inspect", "detect", "doctor", "tokenize"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[64], *out = NULL;
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        CHECK(strata(args, &out) == 0 && out && !strstr(out, "%%"), " %s: %s", cmds[i], out);
        free(out);
    }
}
