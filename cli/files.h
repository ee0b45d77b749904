/* Same-file checks for the commands that write: no output may be one of the inputs or another
 * output. */
#ifndef CNN_CLI_FILES_H
#define CNN_CLI_FILES_H

#include "cnn.h"

/* One file a command reads or writes: the option that names it ("--out") and its path (NULL: not
 * given). An input that is a directory stands for each file in it (a data set's directory). */
typedef struct cli_file {
    const char *opt;
    const char *path;
} cli_file;

/* Checks that no output is the same file as an input or as another output: the same device and
 * inode where both exist, else the same resolved path (the real path of the directory, and the
 * name). `same_ok_in` and `same_ok_out` (may be NULL) name the one pair allowed to be the same
 * file (cnn train's --resume X --out X). On a clash prints "cnn CMD: --out X and --data Y are the
 * same file" and returns 0. */
int cli_check_same_files(const char *cmd, const cli_file *outs, int n_outs, const cli_file *ins, int n_ins,
                         const char *same_ok_in, const char *same_ok_out);

/* Whether output `out` (given as option `opt`) can be written: its directory exists and is
 * writable, and it is not a directory. Prints the reason, naming the path as the user gave it,
 * when not. Commands call it before any work, so that a later failure to write is the machine's. */
int cli_output_ok(const char *cmd, const char *opt, const char *out);

/* Prints the library's message for a write that failed once the work was done (disk full, a
 * failed rename) and returns EXIT_IO (3). */
int cli_io_failure(const char *cmd, cnn_status st);

#endif
