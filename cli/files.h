/* Same-file checks for the commands that write: no output may be one of the inputs or another
 * output. */
#ifndef CNN_CLI_FILES_H
#define CNN_CLI_FILES_H

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

#endif
