/* The command-line tool's shared helpers. Only the CLI prints and exits; the library returns. */
#ifndef CNN_CLI_H
#define CNN_CLI_H

#include "args.h"
#include "cnn.h"

/* Exit statuses: 0 success, 1 a check that failed (gradcheck, a non-finite training step) or out of
 * memory, 2 bad input or bad usage (an output directory that is missing or not writable, found
 * before the work starts, included), 3 an I/O failure of the machine during the work (disk full, a
 * write error, a failed rename, a closed or full stdout or stderr). A signal that stops training
 * ends it with 128 + the signal's number. */
enum { EXIT_BAD_INPUT = 2, EXIT_IO = 3 };

/* Prints "cnn CMD: <message of the library's last error>" and returns the exit status for it. */
int cli_report(const char *cmd, cnn_status st);

/* Prints "cnn CMD: <formatted message>" to stderr. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void cli_error(const char *cmd, const char *fmt, ...);

/* Parses an unsigned decimal integer; returns 0 on a malformed value. */
int cli_parse_u64(const char *s, unsigned long long *out);

/* Loss, accuracy and (when not NULL) the classes×classes confusion matrix (rows: true class) of
 * the net on a whole split, in batches of `batch` (reserved), with ybuf room for `batch` labels.
 * Returns 0 if the library failed (its message is in cnn_last_error()). */
int evaluate(cnn_net *net, const cnn_dataset *d, int batch, int classes, int64_t *ybuf, double *loss, double *acc,
             int64_t *confusion);

/* Sets the thread count of the library: `given` (from --threads; 0: not given), else the
 * CNN_NUM_THREADS environment variable, else every core this process may run on (its affinity
 * mask). Returns the count, or 0 if the library refused it (its message in cnn_last_error()). */
int cli_threads(unsigned long long given);

int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_gradcheck(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif
