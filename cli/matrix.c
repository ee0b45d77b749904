/* matrix.c - the parser of matrices typed on the command line; the grammar is in matrix.h.
 *
 * One pass over the bytes, no allocation: a number is the run of bytes between separators, checked
 * against the decimal grammar by hand and only then converted by strtod (from a bounded, NUL-ended
 * copy), so strtod never sees hexadecimal, "inf" or "nan", nor reads past the text.
 */
#include "matrix.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUMBER_MAX 64   /* the longest number accepted, in bytes */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The bytes [s, e) for a message: printable ASCII as it is, a UTF-8 minus as '−', any other byte as
 * \xNN; at most 24 bytes of the token, then "...". */
static void quote(const char *s, const char *e, char *buf, size_t cap) {
    size_t at = 0;
    int shown = 0;
    for (const char *p = s; p < e && at + 8 < cap; p++, shown++) {
        const unsigned char c = (unsigned char)*p;
        if (shown == 24) {
            memcpy(buf + at, "...", 3);
            at += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f) buf[at++] = (char)c;
        else at += (size_t)snprintf(buf + at, cap - at, "\\x%02x", c);
    }
    buf[at] = '\0';
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == ','; }
static int is_row_end(unsigned char c) { return c == ';' || c == '\n'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* U+2212 MINUS SIGN, as UTF-8. */
static int is_unicode_minus(const char *p, const char *e) {
    return e - p >= 3 && (unsigned char)p[0] == 0xe2 && (unsigned char)p[1] == 0x88 && (unsigned char)p[2] == 0x92;
}

/* Converts the token [s, e) if it is a decimal number; returns 0 and a message otherwise. */
static int number(const char *s, const char *e, double *v, int row, int col, char *err, size_t errlen) {
    char shown[128];
    quote(s, e, shown, sizeof shown);
    const char *p = s;
    char buf[NUMBER_MAX + 1];
    size_t len = 0;
    if (p < e && (*p == '+' || *p == '-')) buf[len++] = *p++;
    else if (is_unicode_minus(p, e)) buf[len++] = '-', p += 3;
    int digits = 0, valid = 1;
    const char *body = p;
    while (p < e && is_digit((unsigned char)*p)) p++, digits++;
    if (p < e && *p == '.') {
        p++;
        while (p < e && is_digit((unsigned char)*p)) p++, digits++;
    }
    if (!digits) valid = 0;
    if (valid && p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        int exp_digits = 0;
        while (p < e && is_digit((unsigned char)*p)) p++, exp_digits++;
        if (!exp_digits) valid = 0;
    }
    if (!valid || p != e) {
        set_err(err, errlen, "'%s' is not a number (row %d, column %d)", shown, row, col);
        return 0;
    }
    if (len + (size_t)(e - body) > NUMBER_MAX) {
        set_err(err, errlen, "'%s' is too long to be a number (row %d, column %d; at most %d characters)", shown, row,
                col, NUMBER_MAX);
        return 0;
    }
    memcpy(buf + len, body, (size_t)(e - body));
    buf[len + (size_t)(e - body)] = '\0';
    *v = strtod(buf, NULL);
    if (!isfinite(*v)) {
        set_err(err, errlen, "'%s' is out of range (row %d, column %d)", shown, row, col);
        return 0;
    }
    return 1;
}

/* Parses one matrix from [text, end). */
static int parse_range(const char *text, const char *end, double *out, int cap, int *rows, int *cols, char *err,
                       size_t errlen) {
    int r = 0, c = 0, cur = 0, n = 0;
    const char *p = text;
    for (;;) {
        const unsigned char ch = p < end ? (unsigned char)*p : ';';
        if (p < end && is_space(ch)) {
            p++;
            continue;
        }
        if (is_row_end(ch)) {                         /* a row ends (or the text) */
            if (cur) {
                if (!r) c = cur;
                else if (cur != c) {
                    set_err(err, errlen, "row %d has %d number%s, but row 1 has %d: every row needs the same count",
                            r + 1, cur, cur == 1 ? "" : "s", c);
                    return -1;
                }
                r++;
                cur = 0;
            }
            if (p >= end) break;
            p++;
            continue;
        }
        if (ch == '|') {
            set_err(err, errlen, "'|' separates matrices, but one matrix is expected here (row %d)", r + 1);
            return -1;
        }
        if (ch == '\0') {
            set_err(err, errlen, "a NUL byte at offset %ld", (long)(p - text));
            return -1;
        }
        const char *q = p;
        while (q < end && !is_space((unsigned char)*q) && !is_row_end((unsigned char)*q) && *q != '|' && *q != '\0')
            q++;
        double v;
        if (!number(p, q, &v, r + 1, cur + 1, err, errlen)) return -1;
        if (n >= cap) {
            set_err(err, errlen, "more than %d numbers", cap);
            return -1;
        }
        out[n++] = v;
        cur++;
        p = q;
    }
    if (!r) {
        set_err(err, errlen, "no numbers: write a matrix as \"1 2 3; 4 5 6\" (rows end at ';')");
        return -1;
    }
    *rows = r;
    *cols = c;
    return 0;
}

static int args_ok(const void *text, const double *out, int cap, const void *a, const void *b, char *err,
                   size_t errlen) {
    if (!text || !a || !b || (!out && cap > 0) || cap < 0) {
        set_err(err, errlen, "no matrix");
        return 0;
    }
    return 1;
}

int matrix_parse_n(const char *text, size_t len, double *out, int cap, int *rows, int *cols, char *err,
                   size_t errlen) {
    if (rows) *rows = 0;
    if (cols) *cols = 0;
    if (!args_ok(text, out, cap, rows, cols, err, errlen)) return -1;
    int r, c;
    if (parse_range(text, text + len, out, cap, &r, &c, err, errlen)) return -1;
    *rows = r, *cols = c;
    return 0;
}

int matrix_parse(const char *text, double *out, int cap, int *rows, int *cols, char *err, size_t errlen) {
    return matrix_parse_n(text, text ? strlen(text) : 0, out, cap, rows, cols, err, errlen);
}

int matrix_parse_stack(const char *text, double *out, int cap, int *count, int *rows, int *cols, char *err,
                       size_t errlen) {
    if (count) *count = 0;
    if (rows) *rows = 0;
    if (cols) *cols = 0;
    if (!args_ok(text, out, cap, rows, cols, err, errlen) || !count) return -1;
    const char *end = text + strlen(text), *p = text;
    int k = 0, r0 = 0, c0 = 0, used = 0;
    const int many = memchr(text, '|', (size_t)(end - text)) != NULL;
    for (;;) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        const char *stop = bar ? bar : end;
        char sub[256];
        int r, c;
        if (parse_range(p, stop, out ? out + used : NULL, cap - used, &r, &c, sub, sizeof sub)) {
            if (many) set_err(err, errlen, "matrix %d: %s", k + 1, sub);
            else set_err(err, errlen, "%s", sub);
            return -1;
        }
        if (k && (r != r0 || c != c0)) {
            set_err(err, errlen, "matrix %d is %dx%d, but matrix 1 is %dx%d: the matrices of a stack need one shape",
                    k + 1, r, c, r0, c0);
            return -1;
        }
        r0 = r, c0 = c;
        used += r * c;
        k++;
        if (!bar) break;
        p = bar + 1;
    }
    *count = k, *rows = r0, *cols = c0;
    return 0;
}
