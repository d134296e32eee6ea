/* strata: the command-line front end. Dispatches to one subcommand. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "strata.h"

const cli_command cli_commands[] = {
    {"inspect", "show what a GGUF model holds and what it needs (header only)", cmd_inspect},
    {"plan", "decide where every tensor lives and predict the speed", cmd_plan},
    {"run", "generate text with a model (CPU)", cmd_run},
    {"chat", "talk with a chat model on the terminal", cmd_chat},
    {"batch", "generate for many prompts at once, N sequences in flight (JSONL out)", cmd_batch},
    {"serve", "serve a model over HTTP (OpenAI-compatible API)", cmd_serve},
    {"detect", "measure this machine: CPU, memory, cgroup, storage, GPUs, bandwidths", cmd_detect},
    {"doctor", "check the environment for what makes big-model runs fail or crawl", cmd_doctor},
    {"tokenize", "print the tokens of a text (needs only the vocabulary)", cmd_tokenize},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: strata COMMAND [options]\n"
            "\n"
            "Runs large language models on machines whose memory is smaller than the model.\n"
            "\n"
            "commands:\n");
    for (const cli_command *c = cli_commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out,
            "\n"
            "`strata COMMAND --help` describes a command's options.\n"
            "  --version  print the version\n");
}

/* Output is never lost silently: a command that succeeded but whose
 * stdout could not be written (a full disk, /dev/full) fails, saying so
 * (a command that failed has said why already). */
static int output_checked(const char *cmd, int rc)
{
    errno = 0;
    if ((fflush(stdout) == 0 && !ferror(stdout)) || rc) return rc;
    fprintf(stderr, "strata %s: writing the output failed%s%s\n", cmd, errno ? ": " : " (a full disk or device?)",
            errno ? strerror(errno) : "");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("strata %s\n", strata_version());
        return 0;
    }
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(name, c->name)) return output_checked(name, c->run(argc - 1, argv + 1));
    fprintf(stderr, "strata: unknown command '%s' (see strata --help)\n", name);
    return 2;
}
