/* The model text: one layer per line, read into a graph with the net's builder (net/net.h).
 *
 *     input 3 32 32                          the per-sample input shape C H W (value "input")
 *     conv2d out_channels=16 kernel_size=3 padding=1 bias=false name=conv1
 *     batchnorm2d                            reads the line above (the default)
 *     relu name=stem
 *     ...
 *     add from=stem                          the line above + stem (add and concat: a single
 *                                            name means the previous line's output and that one)
 *
 * Limits: a file under 1 MB of text without NUL bytes, at most 63 options a line, 4096 layers,
 * names of at most 100 bytes (the net checks shapes and sizes).
 */
#include "net/net.h"
#include "base/error.h"
#include "io/readers.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 64

typedef struct text_line {
    int lineno;
    int ntok;
    char *tok[MAX_TOKENS];
    const char *name;               /* name=, or NULL: the layer's index */
    char *from;                     /* from=, or NULL */
    char index[16];                 /* the layer's index as a string */
} text_line;

/* Splits a line in place into whitespace-separated tokens, stopping at '#'. */
static int tokenize(char *line, char **tok, int cap) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    int n = 0;
    for (char *p = line; *p;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        if (n == cap) return -1;
        tok[n++] = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (*p) *p++ = '\0';
    }
    return n;
}

static cnn_status parse_input_line(int line, char **tok, int n, int chw[3]) {
    if (n != 4) return cnn_fail(CNN_ERR_PARSE, "line %d: input: expected 'input C H W', got %d value(s)", line, n - 1);
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        const long v = strtol(tok[i + 1], &end, 10);
        if (*end || errno || v < 1 || v > (1L << 20) || !isdigit((unsigned char)tok[i + 1][0]))
            return cnn_fail(CNN_ERR_PARSE, "line %d: input: '%s' is not a positive integer", line, tok[i + 1]);
        chw[i] = (int)v;
    }
    if ((int64_t)chw[0] * chw[1] * chw[2] > ((int64_t)1 << 28))
        return cnn_fail(CNN_ERR_SHAPE, "line %d: input: %dx%dx%d is too large", line, chw[0], chw[1], chw[2]);
    return CNN_OK;
}

static const char *line_name(const text_line *t) { return t->name ? t->name : t->index; }

/* The layer line named by the len bytes at `name` among lines[0..count), or −1. */
static int line_named(const text_line *lines, int count, const char *name, size_t len) {
    for (int i = 0; i < count; i++) {
        const char *ln = line_name(&lines[i]);
        if (strlen(ln) == len && !strncmp(ln, name, len)) return i;
    }
    return -1;
}

/* Does layer line `from` read line `target`, directly or through others? A line without from=
 * reads the line above. An explicit stack, not recursion: a model has up to 4096 lines. */
static int reads(const text_line *lines, int count, int from, int target) {
    unsigned char *seen = calloc((size_t)count, 1);
    int *stack = malloc((size_t)count * LAYER_MAX_INPUTS * sizeof *stack);
    int top = 0, found = 0;
    if (!seen || !stack) goto done;
    stack[top++] = from;
    while (top && !found) {
        const int i = stack[--top];
        if (i < 0 || seen[i]) continue;
        if (i == target) {
            found = 1;
            break;
        }
        seen[i] = 1;
        const char *s = lines[i].from;
        if (!s) {
            stack[top++] = i - 1;
            continue;
        }
        for (;;) {
            const size_t len = strcspn(s, ",");
            const int j = line_named(lines, count, s, len);
            if (j >= 0 && !seen[j]) stack[top++] = j;
            if (!s[len] || top == count * LAYER_MAX_INPUTS) break;
            s += len + 1;
        }
    }
done:
    free(seen);
    free(stack);
    return found;
}

/* The value index of input name `s` of layer line i. */
static cnn_status resolve(const cnn_net *net, const text_line *lines, int count, int i, const char *s, int *out) {
    const int v = net_find(net, s);
    if (v >= 0) {
        *out = v;
        return CNN_OK;
    }
    const int later = line_named(lines, count, s, strlen(s));
    if (later < 0)
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: from=%s: no line is named '%s' (names come from name=, or are "
                        "the layers' indices counted from 0; the net's input is 'input')",
                        lines[i].lineno, lines[i].tok[0], s, s);
    if (reads(lines, count, later, i))
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: from=%s makes a cycle: '%s' (line %d) reads this line's output%s",
                        lines[i].lineno, lines[i].tok[0], s, s, lines[later].lineno,
                        later == i ? " (it is this line)" : ", directly or through others");
    return cnn_fail(CNN_ERR_PARSE, "line %d: %s: from=%s: '%s' is defined later, at line %d; a line reads only lines "
                    "above it", lines[i].lineno, lines[i].tok[0], s, s, lines[later].lineno);
}

static cnn_status unknown_layer(int line, const char *name) {
    char known[512] = "input";
    size_t at = strlen(known);
    for (int k = 0; k < CNN_LAYER_KIND_COUNT; k++) {
        const layer_ops *ops = layer_ops_of((cnn_layer_kind)k);
        if (ops && at < sizeof known) at += (size_t)snprintf(known + at, sizeof known - at, ", %s", ops->name);
    }
    return cnn_fail(CNN_ERR_PARSE, "line %d: unknown layer '%s' (known: %s; PyTorch's class names such as Conv2d "
                    "work too)", line, name, known);
}

/* Adds layer line i to the net. */
static cnn_status add_line(cnn_net *net, text_line *lines, int count, int i) {
    text_line *t = &lines[i];
    cnn_layer_kind kind;
    if (!layer_kind_by_name(t->tok[0], &kind)) return unknown_layer(t->lineno, t->tok[0]);
    const layer_ops *ops = layer_ops_of(kind);
    char *keys[MAX_TOKENS], *vals[MAX_TOKENS];
    int nopts = 0;
    for (int k = 1; k < t->ntok; k++) {
        char *eq = strchr(t->tok[k], '=');
        if (!eq || eq == t->tok[k])
            return cnn_fail(CNN_ERR_PARSE, "line %d: %s: expected key=value, got '%s'", t->lineno, ops->name, t->tok[k]);
        *eq = '\0';
        if (!strcmp(t->tok[k], "name") || !strcmp(t->tok[k], "from")) continue;   /* taken in the first pass */
        keys[nopts] = t->tok[k], vals[nopts] = eq + 1;
        nopts++;
    }
    int from[LAYER_MAX_INPUTS];
    int nin = 0;
    const int multi = (ops->max_inputs ? ops->max_inputs : 1) > 1;
    if (!t->from) {
        if (multi)
            return cnn_fail(CNN_ERR_PARSE, "line %d: %s: needs from= (what it takes besides the line above, or "
                            "from=A,B,... for exactly those)", t->lineno, ops->name);
        from[nin++] = i;   /* the line above: value i (value 0 is the input) */
    } else {
        if (!*t->from || t->from[strlen(t->from) - 1] == ',' || strstr(t->from, ",,") || t->from[0] == ',')
            return cnn_fail(CNN_ERR_PARSE, "line %d: %s: from=%s: expected names separated by commas", t->lineno,
                            ops->name, t->from);
        int names = 1;
        for (const char *p = t->from; *p; p++) names += *p == ',';
        if (multi && names == 1) from[nin++] = i;   /* add from=B: the line above + B */
        char buf[4096];
        if (strlen(t->from) >= sizeof buf)
            return cnn_fail(CNN_ERR_PARSE, "line %d: %s: from= is too long", t->lineno, ops->name);
        memcpy(buf, t->from, strlen(t->from) + 1);
        for (char *save = NULL, *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (nin == LAYER_MAX_INPUTS)
                return cnn_fail(CNN_ERR_PARSE, "line %d: %s: from= lists more than %d inputs", t->lineno, ops->name,
                                LAYER_MAX_INPUTS);
            cnn_status st = resolve(net, lines, count, i, s, &from[nin]);
            if (st) return st;
            nin++;
        }
    }
    return net_add(net, t->lineno, kind, t->name, from, nin, keys, vals, nopts);
}

cnn_status cnn_net_parse(const char *text, cnn_net **out) {
    if (!out) return cnn_fail(CNN_ERR_ARG, "cnn_net_parse: out is NULL");
    *out = NULL;
    if (!text) return cnn_fail(CNN_ERR_ARG, "cnn_net_parse: text is NULL");
    char *copy = strdup(text);
    int cap = 16, count = 0;
    text_line *lines = malloc((size_t)cap * sizeof *lines);
    if (!copy || !lines) {
        free(copy), free(lines);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory parsing a model");
    }
    cnn_status st = CNN_OK;
    int have_input = 0, chw[3] = {0, 0, 0}, lineno = 0;
    /* First pass: tokens, and each layer line's name= and from=. */
    for (char *line = copy, *next; line && !st; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *tok[MAX_TOKENS];
        const int n = tokenize(line, tok, MAX_TOKENS);
        if (n < 0) {
            st = cnn_fail(CNN_ERR_PARSE, "line %d: %s: too many options (at most %d)", lineno, line, MAX_TOKENS - 1);
            break;
        }
        if (n == 0) continue;
        if (!strcmp(tok[0], "input")) {
            if (have_input) st = cnn_fail(CNN_ERR_PARSE, "line %d: input: given twice", lineno);
            else st = parse_input_line(lineno, tok, n, chw);
            have_input = 1;
            continue;
        }
        if (!have_input) {
            st = cnn_fail(CNN_ERR_PARSE, "line %d: the first line must be 'input C H W', got '%s'", lineno, tok[0]);
            break;
        }
        if (count == 4096) {
            st = cnn_fail(CNN_ERR_PARSE, "line %d: more than %d layers", lineno, 4096);
            break;
        }
        if (count == cap) {
            text_line *grown = realloc(lines, (size_t)cap * 2 * sizeof *grown);
            if (!grown) {
                st = cnn_fail(CNN_ERR_NOMEM, "out of memory parsing a model");
                break;
            }
            lines = grown;
            cap *= 2;
        }
        text_line *t = &lines[count];
        memset(t, 0, sizeof *t);
        t->lineno = lineno;
        t->ntok = n;
        memcpy(t->tok, tok, (size_t)n * sizeof *tok);
        snprintf(t->index, sizeof t->index, "%d", count);
        for (int k = 1; k < n && !st; k++) {
            const int is_name = !strncmp(tok[k], "name=", 5), is_from = !strncmp(tok[k], "from=", 5);
            if (!is_name && !is_from) continue;
            if (is_name ? t->name != NULL : t->from != NULL)
                st = cnn_fail(CNN_ERR_PARSE, "line %d: %s: option '%s' is given twice", lineno, tok[0],
                              is_name ? "name" : "from");
            else if (is_name) t->name = tok[k] + 5;
            else t->from = tok[k] + 5;
        }
        count++;
    }
    if (!st && !have_input) st = cnn_fail(CNN_ERR_PARSE, "the model has no 'input C H W' line");
    if (!st && count == 0) st = cnn_fail(CNN_ERR_PARSE, "the model has no layers");
    cnn_net *net = NULL;
    if (!st) st = net_begin(chw[0], chw[1], chw[2], &net);
    for (int i = 0; i < count && !st; i++) st = add_line(net, lines, count, i);
    if (!st) st = net_finish(net);
    free(copy);
    free(lines);
    if (st) {
        cnn_net_free(net);
        return st;
    }
    *out = net;
    return CNN_OK;
}

cnn_status cnn_net_load(const char *path, cnn_net **out) {
    if (!out || !path) return cnn_fail(CNN_ERR_ARG, "cnn_net_load: NULL argument");
    *out = NULL;
    const char *why;
    FILE *f = cnn_i_fopen_regular(path, &why);
    if (!f) return cnn_fail(CNN_ERR_IO, "%s: cannot open: %s", path, why);
    enum { LIMIT = 1 << 20 };
    char *text = malloc(LIMIT + 1);
    if (!text) {
        fclose(f);
        return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
    }
    const size_t len = fread(text, 1, LIMIT + 1, f);
    const int err = ferror(f);
    fclose(f);
    cnn_status st;
    if (err) st = cnn_fail(CNN_ERR_IO, "cannot read");
    else if (len > LIMIT) st = cnn_fail(CNN_ERR_PARSE, "a model file must be under 1 MB");
    else if (memchr(text, '\0', len)) st = cnn_fail(CNN_ERR_PARSE, "a model file is text, but this one holds a NUL byte");
    else {
        text[len] = '\0';
        st = cnn_net_parse(text, out);
    }
    free(text);
    if (st) cnn_error_prefix(path);
    return st;
}
