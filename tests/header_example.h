/* The working example that opens include/cnn.h, as a C program: the comment between "A working
 * example:" and " * Conventions", each line without its " *     " indent. test_header_example
 * compiles it against the build; test_install against an installed copy, with pkg-config. */
#ifndef CNN_TEST_HEADER_EXAMPLE_H
#define CNN_TEST_HEADER_EXAMPLE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The example's source from the header at `path` (malloc'd); NULL when the file or the markers
 * are missing. */
static inline char *header_example(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char text[1 << 18];
    const size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    const char *start = strstr(text, "A working example:");
    const char *end = start ? strstr(start, " * Conventions") : NULL;
    if (!start || !end) return NULL;
    start = strchr(start, '\n') + 1;
    char *out = calloc((size_t)(end - start) + 1, 1);
    if (!out) return NULL;
    size_t at = 0;
    for (const char *line = start; line < end;) {
        const char *nl = strchr(line, '\n');
        const char *body = line;
        if (!strncmp(body, " *     ", 7)) body += 7;
        else if (!strncmp(body, " *", 2)) body += 2;
        memcpy(out + at, body, (size_t)(nl - body));
        at += (size_t)(nl - body);
        out[at++] = '\n';
        line = nl + 1;
    }
    return out;
}

#endif
