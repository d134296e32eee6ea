/* The strata subcommands: one file per subcommand, each an entry point
 * taking the arguments after the subcommand name (argv[0] is its name).
 * Each returns the process exit status. */
#ifndef STRATA_CLI_COMMANDS_H
#define STRATA_CLI_COMMANDS_H

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* The table of subcommands, NULL-name terminated (src/cli/main.c). */
extern const cli_command cli_commands[];

#endif
