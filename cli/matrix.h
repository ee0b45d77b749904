/* matrix.h - matrices typed on the command line, as "1 2 3; 4 5 6; 7 8 9".
 *
 * Grammar. Numbers are separated by spaces, tabs or commas; rows end at ';' or a newline; rows with
 * no number in them are skipped, so "1 2;\n3 4;" is the 2×2 [[1, 2], [3, 4]]. A number is written
 * in decimal: an optional sign ('+', '-', or the Unicode minus U+2212 '−'), digits with at most one
 * '.', and an optional exponent ("1e-3", "2.5E+2"). Hexadecimal, "inf", "nan" and numbers that
 * overflow a double are rejected. In a stack of matrices (several channels or filters) the matrices
 * are separated by '|' and must all have one shape: "1 2; 3 4 | 5 6; 7 8".
 *
 * The parsers never read past the end of the text, never write past out[cap - 1] or
 * err[errlen - 1], allocate nothing and keep no state, so any bytes at all may be fed to them.
 */
#ifndef CNN_CLI_MATRIX_H
#define CNN_CLI_MATRIX_H

#include <stddef.h>

/* Parses one matrix from NUL-terminated text. On success writes rows·cols numbers, row-major, to
 * out[0 .. cap-1], sets *rows and *cols, and returns 0. On malformed text (ragged rows, something
 * that is not a number, no number at all, more than cap numbers, a '|') returns -1 and, when err
 * is not NULL and errlen > 0, a one-line message in err such as "row 2 has 2 numbers, but row 1
 * has 3" or "'x' is not a number (row 1, column 2)"; *rows and *cols are then 0. */
int matrix_parse(const char *text, double *out, int cap, int *rows, int *cols, char *err, size_t errlen);

/* As matrix_parse, for the `len` bytes at text, which need not end in NUL (a NUL byte among them
 * is an error): the entry point for a fuzzer. */
int matrix_parse_n(const char *text, size_t len, double *out, int cap, int *rows, int *cols, char *err,
                   size_t errlen);

/* Parses a stack of matrices separated by '|'. On success writes count·rows·cols numbers (the
 * matrices one after another) to out[0 .. cap-1], sets *count, *rows and *cols, and returns 0. A
 * text without '|' is a stack of one. On error returns -1 as matrix_parse does; the message says
 * which matrix ("matrix 2: ...", "matrix 2 is 2×3, but matrix 1 is 3×3"). */
int matrix_parse_stack(const char *text, double *out, int cap, int *count, int *rows, int *cols, char *err,
                       size_t errlen);

#endif
