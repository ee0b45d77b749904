/* cnn: the command-line tool. */
#include "args.h"
#include "cli.h"
#include "base/omp_spin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The commands: `cnn NAME ...` runs run(argc - 1, argv + 1), so that argv[0] is NAME. A new
 * command is one row here (and its cmd_ function in cli.h). */
typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;            /* one line in `cnn help` */
} command;

static const command commands[] = {
    {"grad", cmd_grad, "forward and backward through a model; writes the output and every gradient"},
    {"gradcheck", cmd_gradcheck, "checks every layer of a model by central differences in double precision"},
    {"train", cmd_train, "trains a model on MNIST, Fashion-MNIST, IDX, CIFAR-10 or safetensors data"},
    {"eval", cmd_eval, "loss, accuracy and confusion matrix of trained weights on a data set"},
    {"predict", cmd_predict, "classifies images with a trained model: top classes and probabilities"},
    {"explain", cmd_explain, "the notes' derivations step by step with your numbers, checked against the library"},
    {"summary", cmd_summary, "a model's layers: output shapes, parameters, multiply-adds, memory, FLOPs"},
    {"export", cmd_export, "a checkpoint's parameters and buffers alone, for PyTorch's load_state_dict"},
};
enum { NCOMMANDS = sizeof commands / sizeof *commands };

static const char usage_head[] =
    "usage: cnn COMMAND [options]\n"
    "       cnn help [COMMAND]\n"
    "       cnn --version\n"
    "\n"
    "commands:\n";
static const char usage_tail[] =
    "\n"
    "Options take their value as --opt VALUE or --opt=VALUE, and any unique prefix of a long name\n"
    "works (--epo for --epochs). Run 'cnn help COMMAND' (or 'cnn COMMAND --help') for a command's\n"
    "options.\n";

/* cnn's own help: the commands and what they do. */
static const char *usage(void) {
    static char buf[4096];
    size_t at = (size_t)snprintf(buf, sizeof buf, "%s", usage_head);
    for (int i = 0; i < NCOMMANDS && at < sizeof buf; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "  %-10s %s\n", commands[i].name, commands[i].about);
    if (at < sizeof buf) snprintf(buf + at, sizeof buf - at, "%s", usage_tail);
    return buf;
}

static const command *find_command(const char *name) {
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return &commands[i];
    return NULL;
}

/* "cnn: unknown command 'trian'; did you mean 'train'? (cnn help for the commands)" */
static int unknown_command(const char *who, const char *name) {
    const char *names[NCOMMANDS];
    for (int i = 0; i < NCOMMANDS; i++) names[i] = commands[i].name;
    const char *near = cli_suggest(name, names, NCOMMANDS);
    fprintf(stderr, "cnn%s%s: unknown command '%s'", who ? " " : "", who ? who : "", name);
    if (near) fprintf(stderr, "; did you mean '%s'?", near);
    fputs(" (cnn help for the commands)\n", stderr);
    return EXIT_BAD_INPUT;
}

int cli_report(const char *cmd, cnn_status st) {
    fprintf(stderr, "cnn %s: %s\n", cmd, cnn_last_error());
    return st == CNN_ERR_NOMEM ? 1 : EXIT_BAD_INPUT;
}

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "cnn %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_parse_u64(const char *s, unsigned long long *out) {
    if (!s || !*s || *s == '-') return 0;
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return !*end && !errno;
}

/* cnn's own options: --version, and --help. */
static int version;
static const cli_opt top_opts[] = {CLI_FLAG("version", &version, "print cnn's version"), CLI_END};

static cli_cmd top_cmd(void) {
    const cli_cmd cmd = {NULL, usage(), top_opts, NULL, NULL};
    return cmd;
}

/* cnn help [COMMAND [TOPIC...]]: cnn's help, or the command's own --help. */
static int help(int argc, char **argv) {
    if (argc < 2) {
        const cli_cmd cmd = top_cmd();
        cli_help(&cmd, stdout);
        return 0;
    }
    if (argv[1][0] == '-') {   /* cnn help --help, or a mistake */
        const cli_cmd cmd = {"help", "usage: cnn help [COMMAND [TOPIC]]\n\nPrints cnn's help, or a command's.\n",
                             NULL, NULL, NULL};
        const int rc = cli_parse(&cmd, 2, argv, NULL, NULL);
        return rc >= 0 ? rc : EXIT_BAD_INPUT;
    }
    const command *c = find_command(argv[1]);
    if (!c) return unknown_command("help", argv[1]);
    char *args[8];
    int n = 0;
    for (int i = 1; i < argc && n < 6; i++) args[n++] = argv[i];
    args[n++] = "--help";
    args[n] = NULL;
    return c->run(n, args);
}

/* Descriptors 0, 1 and 2 are open before any file is: a closed one would be taken by the first
 * file opened (a --log on descriptor 2 would receive every message). A closed stdin reads as
 * empty; a closed stdout or stderr is opened read-only, so that every write to it fails and is
 * reported (see finish) instead of vanishing as it would into a writable /dev/null. */
static void open_std_descriptors(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        const int got = open("/dev/null", O_RDONLY);
        if (got >= 0 && got != fd) { /* cannot happen: open takes the lowest free descriptor */
            dup2(got, fd);
            close(got);
        }
    }
}

/* A command's output must reach its destination: stdout is flushed and checked (a full disk, a
 * closed pipe or descriptor), and stderr is checked, at the end of every command. A write error
 * turns a success into EXIT_IO; a command that failed keeps its status. */
static int finish(const char *cmd, int rc) {
    const int out_bad = fflush(stdout) != 0 || ferror(stdout);
    const int out_errno = errno;
    if (out_bad) {
        fprintf(stderr, "cnn%s%s: cannot write the output to stdout: %s\n", cmd ? " " : "", cmd ? cmd : "",
                strerror(out_errno));
    }
    const int err_bad = fflush(stderr) != 0 || ferror(stderr);
    return (out_bad || err_bad) && rc == 0 ? EXIT_IO : rc;
}

int main(int argc, char **argv) {
    open_std_descriptors();
    cnn_omp_spin(argv);   /* OpenMP's threads spin briefly, then sleep (may start the program again) */
    if (argc < 2) {
        fputs(usage(), stderr);
        return EXIT_BAD_INPUT;
    }
    if (argv[1][0] == '-') {   /* cnn --version, cnn --help */
        const cli_cmd cmd = top_cmd();
        const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
        if (rc >= 0) return finish(NULL, rc);
        if (!version) {   /* "cnn --" */
            fputs(usage(), stderr);
            return EXIT_BAD_INPUT;
        }
        printf("cnn %s\n", cnn_version());
        return finish(NULL, 0);
    }
    if (!strcmp(argv[1], "help")) return finish("help", help(argc - 1, argv + 1));
    const command *c = find_command(argv[1]);
    if (!c) return unknown_command(NULL, argv[1]);
    return finish(c->name, c->run(argc - 1, argv + 1));
}
