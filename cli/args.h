/* args.h - the one argument parser of every cnn command, on getopt_long.
 *
 * A command declares its options in a table and hands it, with argv, to cli_parse:
 *
 *     const char *model = NULL, *epochs = NULL;
 *     int eval = 0;
 *     const cli_opt opts[] = {
 *         CLI_VALUE("model", "NET.cnn", &model, "the model file"),
 *         CLI_VALUE("epochs", "E", &epochs, "epochs in all (default 1)"),
 *         CLI_FLAG("eval", &eval, "run in eval mode"),
 *         CLI_END,
 *     };
 *     const cli_cmd cmd = {"train", train_usage, opts, train_example, NULL};
 *     int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
 *     if (rc >= 0) return rc;                  // 0 after --help, 2 after a message
 *
 * Every command then takes the same syntax: --opt value and --opt=value; a unique prefix of a
 * long name (--epo for --epochs), as GNU tools take it; --help and -h; `--` to end the options.
 * A value option stores the argv string it was given (it stays NULL, or whatever the caller set,
 * when the option is not given); a flag sets its int to 1. Converting and range-checking values
 * is the command's, with cli_u64, cli_real and cli_choice, which word every message alike.
 *
 * Every error is one line on stderr, "cnn CMD: <what>" and a hint:
 *     cnn train: unknown option '--epohcs'; did you mean '--epochs'? (cnn help train for the options)
 *     cnn train: option '--s' is ambiguous: --schedule, --seed, --step-size (cnn help train ...)
 *     cnn train: option --lr needs a value (...)
 *     cnn train: option --nesterov takes no value (...)
 *     cnn train: option --lr given twice (...)
 *     cnn train: unexpected argument 'foo' (...)
 * and the exit status is 2 (EXIT_BAD_INPUT).
 */
#ifndef CNN_CLI_ARGS_H
#define CNN_CLI_ARGS_H

#include <stdio.h>

/* One option of a command. It takes a value when `value` is set, else it is a flag. Two entries
 * with the same destination are one option under two names (aliases): giving both is "given
 * twice", and a prefix of both is not ambiguous. */
typedef struct cli_opt {
    const char *name;             /* the long name without its dashes: "epochs" is --epochs */
    const char *metavar;          /* the value in the help ("E" shows "--epochs E"); NULL: "VALUE" */
    const char **value;           /* a value option: gets the value's text (NULL for a flag) */
    int *flag;                    /* a flag: set to 1 when given (NULL for a value option) */
    const char *help;             /* one line in --help's option list; NULL leaves it out (aliases) */
} cli_opt;

#define CLI_VALUE(name, metavar, dest, help) {(name), (metavar), (dest), NULL, (help)}
#define CLI_FLAG(name, dest, help) {(name), NULL, NULL, (dest), (help)}
#define CLI_END {NULL, NULL, NULL, NULL, NULL}

/* The most options a command may declare. */
#define CLI_MAX_OPTS 48

/* A command: what its messages and --help say. */
typedef struct cli_cmd {
    const char *name;             /* "train", "explain conv": messages begin "cnn NAME: ", and the hint
                                     says "cnn help NAME"; NULL for cnn itself ("cnn: ", "cnn help") */
    const char *usage;            /* --help prints it first: the synopsis and what the command does */
    const cli_opt *opts;          /* ended by CLI_END */
    const char *example;          /* --help prints it after the option list; may be NULL */
    const char *positional;       /* what positional arguments are ("IMAGE"); NULL: none are taken */
} cli_cmd;

/* Parses argv[1..argc-1] (argv[0] is the command's name) into the options of `cmd`. Positional
 * arguments, in their order (those after `--` too), go into pos (room for argc entries; NULL if
 * the command takes none) and their count into *npos. Returns -1 to go on, 0 after --help (the
 * help on stdout), or EXIT_BAD_INPUT after a one-line message on stderr. */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, const char **pos, int *npos);

/* Prints the command's help: its usage, the option list from its table (with -h, --help) and the
 * example. */
void cli_help(const cli_cmd *cmd, FILE *f);

/* Prints "cnn CMD: <message> (cnn help CMD for the options)" and returns EXIT_BAD_INPUT: for a
 * usage error that the table cannot express, such as a required option left out. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cli_usage_error(const char *cmd, const char *fmt, ...);

/* ---- values: each prints "cnn CMD: --OPT TEXT: expected ..." and returns 0 on bad input ------ */

/* A whole number from lo to hi (decimal; no sign). */
int cli_u64(const char *cmd, const char *opt, const char *text, unsigned long long lo, unsigned long long hi,
            unsigned long long *out);
/* A finite number >= lo, or > lo when `above` is set. */
int cli_real(const char *cmd, const char *opt, const char *text, double lo, int above, double *out);
/* One of `choices` (ended by NULL): *out gets its index. A near miss gets a suggestion. */
int cli_choice(const char *cmd, const char *opt, const char *text, const char *const *choices, int *out);

/* ---- near misses ----------------------------------------------------------------------------- */

/* The optimal-string-alignment distance (Damerau–Levenshtein with each substring edited once):
 * insertions, deletions, substitutions and swaps of two neighbours, ignoring case. */
int cli_distance(const char *a, const char *b);
/* The candidate (of n) nearest to `typed`: within distance 2 (and less than the candidate's
 * length), or one of the two a prefix of the other; the nearest, the first of equals. NULL if
 * none is near. */
const char *cli_suggest(const char *typed, const char *const *cands, int n);

#endif
