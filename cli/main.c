/* cnn: the command-line tool. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: cnn COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  grad       forward and backward through a model; writes the output and every gradient\n"
    "  gradcheck  checks every layer of a model by central differences in double precision\n"
    "  train      trains a model on MNIST, Fashion-MNIST, IDX, CIFAR-10 or safetensors data\n"
    "  eval       loss, accuracy and confusion matrix of trained weights on a data set\n"
    "  predict    classifies images with a trained model: top classes and probabilities\n"
    "  explain    the notes' derivations step by step with your numbers, checked against the library\n"
    "  summary    a model's layers: output shapes, parameters, multiply-adds, memory, FLOPs\n"
    "  export     a checkpoint's parameters and buffers alone, for PyTorch's load_state_dict\n"
    "\n"
    "Run 'cnn COMMAND --help' for a command's options.\n";

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

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_BAD_INPUT : 0;
    }
    if (!strcmp(argv[1], "grad")) return cmd_grad(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gradcheck")) return cmd_gradcheck(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(argv[1], "explain")) return cmd_explain(argc - 1, argv + 1);
    if (!strcmp(argv[1], "summary")) return cmd_summary(argc - 1, argv + 1);
    if (!strcmp(argv[1], "export")) return cmd_export(argc - 1, argv + 1);
    fprintf(stderr, "cnn: unknown command '%s'\n\n%s", argv[1], usage);
    return EXIT_BAD_INPUT;
}
