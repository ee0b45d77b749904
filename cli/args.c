/* args.c - the one argument parser of every cnn command (args.h), on glibc's getopt_long.
 *
 * getopt_long does the syntax: --opt value, --opt=value, unique prefixes, `--`. It runs with
 * opterr = 0 and optstring "-:h": '-' returns positional arguments in their place (no
 * reordering, whatever POSIXLY_CORRECT says), ':' reports a missing value apart from an unknown
 * option. Its own messages are off, because they do not say what was meant; on an error this file
 * looks at the argument that failed and writes one line that does.
 */
#include "args.h"
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { VAL0 = 256 };              /* getopt_long's val of option i is VAL0 + its canonical index */

/* ---- messages ---------------------------------------------------------------------------------- */

static void vmessage(const char *cmd, int hint, const char *fmt, va_list ap) {
    fprintf(stderr, "cnn%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    if (hint) fprintf(stderr, " (cnn help%s%s for the %s)", cmd ? " " : "", cmd ? cmd : "", cmd ? "options" : "commands");
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, 1, fmt, ap);
    va_end(ap);
    return EXIT_BAD_INPUT;
}

static void value_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, 0, fmt, ap);
    va_end(ap);
}

/* ---- near misses ------------------------------------------------------------------------------- */

int cli_distance(const char *a, const char *b) {
    enum { MAX = 64 };
    const int n = (int)strlen(a), m = (int)strlen(b);
    if (n >= MAX || m >= MAX) return n > m ? n : m;   /* far from any option name anyway */
    int d[MAX][MAX];
    for (int i = 0; i <= n; i++) d[i][0] = i;
    for (int j = 0; j <= m; j++) d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            const int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j - 1] + (ca != cb);                        /* substitute (or keep) */
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;                 /* delete */
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;                 /* insert */
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;                                  /* swap two neighbours */
            d[i][j] = v;
        }
    return d[n][m];
}

/* Whether the shorter of a and b (at least 3 characters) begins the longer, ignoring case. */
static int prefix_of(const char *a, const char *b) {
    const size_t la = strlen(a), lb = strlen(b), l = la < lb ? la : lb;
    if (l < 3) return 0;
    for (size_t i = 0; i < l; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return 1;
}

const char *cli_suggest(const char *typed, const char *const *cands, int n) {
    const char *best = NULL;
    int best_score = 4;
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        const int d = cli_distance(typed, cands[i]);
        int score = 4;
        if (d <= 2 && d < (int)strlen(cands[i])) score = d;
        else if (prefix_of(typed, cands[i])) score = 3;
        if (score < best_score) best = cands[i], best_score = score;
    }
    return best;
}

/* ---- help -------------------------------------------------------------------------------------- */

void cli_help(const cli_cmd *cmd, FILE *f) {
    if (cmd->usage) fputs(cmd->usage, f);
    int listed = 0, width = 10;   /* "-h, --help" */
    for (const cli_opt *o = cmd->opts; o && o->name; o++) {
        if (!o->help) continue;
        listed = 1;
        const int w = 2 + (int)strlen(o->name) + (o->value ? 1 + (int)strlen(o->metavar ? o->metavar : "VALUE") : 0);
        if (w > width && w <= 26) width = w;
    }
    if (listed) {
        fputs("\noptions:\n", f);
        for (const cli_opt *o = cmd->opts; o->name; o++) {
            if (!o->help) continue;
            char left[128];
            snprintf(left, sizeof left, "--%s%s%s", o->name, o->value ? " " : "",
                     o->value ? (o->metavar ? o->metavar : "VALUE") : "");
            if ((int)strlen(left) > width) fprintf(f, "  %s\n  %*s  %s\n", left, width, "", o->help);
            else fprintf(f, "  %-*s  %s\n", width, left, o->help);
        }
        fprintf(f, "  %-*s  %s\n", width, "-h, --help", "print this help");
    }
    if (cmd->example) {
        fputc('\n', f);
        fputs(cmd->example, f);
    }
}

/* ---- parsing ----------------------------------------------------------------------------------- */

/* The first entry with the same destination as entry i: aliases are one option. */
static int canonical(const cli_opt *opts, int i) {
    for (int j = 0; j < i; j++)
        if ((opts[i].value && opts[j].value == opts[i].value) || (opts[i].flag && opts[j].flag == opts[i].flag))
            return j;
    return i;
}

/* The name of option k (a canonical index) that `typed` (without dashes) stands for: among k's
 * aliases, the one it spells out, else the first it begins. */
static const char *used_name(const cli_opt *opts, int nopts, int k, const char *typed) {
    const char *first = NULL;
    for (int i = 0; i < nopts; i++) {
        if (canonical(opts, i) != k) continue;
        if (!strcmp(opts[i].name, typed)) return opts[i].name;
        if (!first && !strncmp(opts[i].name, typed, strlen(typed))) first = opts[i].name;
    }
    return first ? first : opts[k].name;
}

/* The message for the argument `arg` that getopt_long refused (it returned '?'): an unknown or
 * ambiguous long option, a flag given a value, or an unknown short option. */
static int refused(const cli_cmd *cmd, const cli_opt *opts, int nopts, const char *arg, int optopt_) {
    const char *name = arg;
    while (*name == '-') name++;
    char typed[128];
    snprintf(typed, sizeof typed, "%.*s", (int)strcspn(name, "="), name);
    const int is_long = !strncmp(arg, "--", 2);
    if (is_long && (optopt_ >= VAL0 || optopt_ == 'h'))
        return cli_usage_error(cmd->name, "option --%s takes no value",
                               optopt_ == 'h' ? "help" : used_name(opts, nopts, optopt_ - VAL0, typed));
    const char *names[CLI_MAX_OPTS + 1];
    int matches = 0;
    for (int i = 0; i < nopts; i++) names[i] = opts[i].name;
    names[nopts] = "help";
    if (is_long && *typed) {
        /* Ambiguous: the prefix begins options of two or more destinations. */
        char list[1024] = "";
        size_t at = 0;
        for (int i = 0; i <= nopts; i++) {
            if (strncmp(names[i], typed, strlen(typed))) continue;
            if (i < nopts && canonical(opts, i) != i) {
                int dup = 0;   /* an alias of an option already listed */
                for (int j = 0; j < i; j++) dup |= canonical(opts, j) == canonical(opts, i) && !strncmp(names[j], typed, strlen(typed));
                if (dup) continue;
            }
            matches++;
            if (at < sizeof list)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s--%s", matches > 1 ? ", " : "", names[i]);
        }
        if (matches > 1) return cli_usage_error(cmd->name, "option '--%s' is ambiguous: %s", typed, list);
    }
    const char *near = *typed ? cli_suggest(typed, names, nopts + 1) : NULL;
    char shown[160];
    snprintf(shown, sizeof shown, "%.*s", (int)strcspn(arg, "="), arg);
    if (near) return cli_usage_error(cmd->name, "unknown option '%s'; did you mean '--%s'?", shown, near);
    return cli_usage_error(cmd->name, "unknown option '%s'", shown);
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, const char **pos, int *npos) {
    const cli_opt *opts = cmd->opts;
    int nopts = 0;
    while (opts && opts[nopts].name) nopts++;
    if (nopts > CLI_MAX_OPTS) {
        fprintf(stderr, "cnn %s: internal error: %d options, at most %d\n", cmd->name ? cmd->name : "", nopts,
                CLI_MAX_OPTS);
        return 1;
    }
    struct option lo[CLI_MAX_OPTS + 2];
    int canon[CLI_MAX_OPTS], seen[CLI_MAX_OPTS];
    for (int i = 0; i < nopts; i++) {
        canon[i] = canonical(opts, i);
        seen[i] = -1;
        lo[i] = (struct option){opts[i].name, opts[i].value ? required_argument : no_argument, NULL, VAL0 + canon[i]};
    }
    lo[nopts] = (struct option){"help", no_argument, NULL, 'h'};
    lo[nopts + 1] = (struct option){NULL, 0, NULL, 0};
    if (npos) *npos = 0;

    optind = 0;   /* 0, not 1: getopt starts afresh */
    opterr = 0;
    for (;;) {
        const int at = optind ? optind : 1;   /* the argument getopt_long looks at now */
        int li = -1;
        const int ch = getopt_long(argc, argv, "-:h", lo, &li);
        if (ch == -1) break;
        if (ch == 1) {   /* a positional argument */
            if (!pos) return cli_usage_error(cmd->name, "unexpected argument '%s'", optarg);
            pos[(*npos)++] = optarg;
            continue;
        }
        if (ch == 'h') {
            cli_help(cmd, stdout);
            return 0;
        }
        if (ch == ':') {
            const char *arg = at < argc ? argv[at] : "";
            while (*arg == '-') arg++;
            return cli_usage_error(cmd->name, "option --%s needs a value", used_name(opts, nopts, optopt - VAL0, arg));
        }
        if (ch == '?' || ch < VAL0 || ch >= VAL0 + nopts || li < 0 || li >= nopts)
            return refused(cmd, opts, nopts, at < argc ? argv[at] : "", optopt);
        const int k = ch - VAL0;
        if (seen[k] >= 0) {
            if (seen[k] != li)
                return cli_usage_error(cmd->name, "option --%s given twice (also as --%s)", opts[li].name,
                                       opts[seen[k]].name);
            return cli_usage_error(cmd->name, "option --%s given twice", opts[li].name);
        }
        seen[k] = li;
        if (opts[li].value) *opts[li].value = optarg;
        else if (opts[li].flag) *opts[li].flag = 1;
    }
    for (; optind < argc; optind++) {   /* after "--" */
        if (!pos) return cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);
        pos[(*npos)++] = argv[optind];
    }
    return -1;
}

/* ---- values ------------------------------------------------------------------------------------ */

int cli_u64(const char *cmd, const char *opt, const char *text, unsigned long long lo, unsigned long long hi,
            unsigned long long *out) {
    unsigned long long v = 0;
    char *end = NULL;
    errno = 0;
    const int digits = text && *text >= '0' && *text <= '9';
    if (digits) v = strtoull(text, &end, 10);
    if (!digits || *end || errno || v < lo || v > hi) {
        if (hi == ~0ULL && lo == 0) value_error(cmd, "%s %s: expected a whole number >= 0", opt, text ? text : "");
        else if (hi == ~0ULL) value_error(cmd, "%s %s: expected a whole number >= %llu", opt, text ? text : "", lo);
        else value_error(cmd, "%s %s: expected a whole number from %llu to %llu", opt, text ? text : "", lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

int cli_real(const char *cmd, const char *opt, const char *text, double lo, int above, double *out) {
    char *end = NULL;
    errno = 0;
    const double v = text && *text ? strtod(text, &end) : NAN;
    if (!text || !*text || *end || errno || !isfinite(v) || (above ? !(v > lo) : !(v >= lo))) {
        value_error(cmd, "%s %s: expected a number %s %g", opt, text ? text : "", above ? ">" : ">=", lo);
        return 0;
    }
    *out = v;
    return 1;
}

int cli_choice(const char *cmd, const char *opt, const char *text, const char *const *choices, int *out) {
    int n = 0;
    while (choices[n]) n++;
    for (int i = 0; i < n; i++)
        if (text && !strcmp(text, choices[i])) {
            *out = i;
            return 1;
        }
    char list[512] = "";
    size_t at = 0;
    for (int i = 0; i < n && at < sizeof list; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", choices[i]);
    const char *near = text && *text ? cli_suggest(text, choices, n) : NULL;
    if (near) value_error(cmd, "%s %s: expected %s; did you mean '%s'?", opt, text, list, near);
    else value_error(cmd, "%s %s: expected %s", opt, text ? text : "", list);
    return 0;
}
