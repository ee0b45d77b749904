/* test_fixtures.c - agreement with PyTorch: runs the CLI's `grad` command on every fixture in
 * tests/fixtures (sequences of layers, made by tools/make_fixtures.py) and tests/graph_fixtures (graphs
 * and ResNet-20, made by tools/make_graph_fixtures.py) and compares each tensor of
 * expected.safetensors with the CLI's output.
 *
 * For each fixture directory D (sorted), in a fresh mkdtemp directory TMP:
 *     $CNN_BIN grad --model D/model.cnn --weights D/weights.safetensors --input D/input.safetensors
 *                   --out TMP/out.safetensors <the words of D/args>
 * must exit with status 0, and for every tensor of D/expected.safetensors the out file must hold a
 * tensor of the same name and shape: for an F64 or F32 expected tensor an F32 one with
 * ||out - exp|| / max(||exp||, 1e-12) <= 1e-4; for an I64 one (num_batches_tracked) an I64 one with
 * exactly the same values.
 *
 * One cmocka test per fixture, named by its directory (and, for a graph fixture, the "# about: ..."
 * line of its model.cnn), plus one per root that requires at least 50 and 60 fixtures. CNN_BIN
 * defaults to build/cnn, CNN_FIXTURES to tests/fixtures and CNN_GRAPH_FIXTURES to
 * tests/graph_fixtures; all are relative to the repository root, where tests/run.sh runs the tests. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cnn.h"
#include "testutil.h"

#define MIN_FIXTURES 50
#define MIN_GRAPH_FIXTURES 60
#define TOLERANCE 1e-4
#define MAX_EXTRA_ARGS 16
#define PATH_LEN 4096

static size_t g_fixture_count, g_graph_fixture_count;

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static const char *cnn_bin(void) { return env_or("CNN_BIN", "build/cnn"); }
static const char *fixture_root(void) { return env_or("CNN_FIXTURES", "tests/fixtures"); }
static const char *graph_fixture_root(void) { return env_or("CNN_GRAPH_FIXTURES", "tests/graph_fixtures"); }

/* snprintf into a PATH_LEN buffer; returns 0 when the result was truncated. */
static int join(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, PATH_LEN, "%s/%s", a, b);
    return n > 0 && n < PATH_LEN;
}

/* Reads a whole file as a NUL-terminated string (at most 64 KiB); NULL on error. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, len;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    len = fread(buf, 1, cap, f);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Runs argv with stdout and stderr sent to log_path; returns the wait status, or -1. */
static int run_logged(char *const argv[], const char *log_path) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return status;
}

static void format_shape(char *buf, size_t cap, const cnn_tensor *t) {
    size_t used = 0;
    used += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* Compares every tensor of `exp` with `out`; prints each mismatch and returns how many there were. */
static int compare(const char *fixture, const cnn_st *exp, const cnn_st *out) {
    int failures = 0;
    for (int i = 0; i < cnn_st_count(exp); i++) {
        const cnn_tensor *e = cnn_st_tensor(exp, i);
        const cnn_tensor *o = cnn_st_find(out, e->name);
        char es[128], os[128];
        format_shape(es, sizeof es, e);
        if (e->dtype != CNN_F64 && e->dtype != CNN_F32 && e->dtype != CNN_I64) {
            print_error("%s: expected.safetensors: tensor '%s' is %s, not F64, F32 or I64\n", fixture, e->name,
                        cnn_dtype_name(e->dtype));
            failures++;
            continue;
        }
        if (!o) {
            print_error("%s: tensor '%s' %s is missing from the output\n", fixture, e->name, es);
            failures++;
            continue;
        }
        format_shape(os, sizeof os, o);
        const cnn_dtype want = e->dtype == CNN_I64 ? CNN_I64 : CNN_F32;
        if (o->dtype != want) {
            print_error("%s: tensor '%s' is %s in the output, expected %s\n", fixture, e->name,
                        cnn_dtype_name(o->dtype) ? cnn_dtype_name(o->dtype) : "?", cnn_dtype_name(want));
            failures++;
            continue;
        }
        int same = o->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = o->shape[d] == e->shape[d];
        if (!same) {
            print_error("%s: tensor '%s' has shape %s in the output, expected %s\n", fixture, e->name, os,
                        es);
            failures++;
            continue;
        }
        int64_t n = cnn_tensor_numel(e);
        if (e->dtype == CNN_I64) {   /* a counter: exactly */
            const int64_t *ev = e->data, *ov = o->data;
            for (int64_t k = 0; k < n; k++) {
                if (ov[k] != ev[k]) {
                    print_error("%s: tensor '%s' %s: element %lld is %lld, expected %lld\n", fixture, e->name, es,
                                (long long)k, (long long)ov[k], (long long)ev[k]);
                    failures++;
                    break;
                }
            }
            continue;
        }
        const float *ov = o->data;
        double diff2 = 0.0, ref2 = 0.0;
        for (int64_t k = 0; k < n; k++) {
            const double ek = e->dtype == CNN_F64 ? ((const double *)e->data)[k] : ((const float *)e->data)[k];
            double d = (double)ov[k] - ek;
            diff2 += d * d;
            ref2 += ek * ek;
        }
        double ref = sqrt(ref2);
        double err = sqrt(diff2) / (ref > 1e-12 ? ref : 1e-12);
        if (!(err <= TOLERANCE)) { /* also catches NaN */
            print_error("%s: tensor '%s' %s: relative L2 error %.3g > %g (|expected| = %.6g)\n", fixture,
                        e->name, es, err, TOLERANCE, ref);
            failures++;
        }
    }
    return failures;
}

static void test_fixtures_found(void **state) {
    (void)state;
    if (g_fixture_count < MIN_FIXTURES)
        fail_msg("found %zu fixtures in %s, expected at least %d (regenerate them with "
                 "/usr/bin/python3 tools/make_fixtures.py)",
                 g_fixture_count, fixture_root(), MIN_FIXTURES);
}

static void test_graph_fixtures_found(void **state) {
    (void)state;
    if (g_graph_fixture_count < MIN_GRAPH_FIXTURES)
        fail_msg("found %zu fixtures in %s, expected at least %d (regenerate them with "
                 "/usr/bin/python3 tools/make_graph_fixtures.py)",
                 g_graph_fixture_count, graph_fixture_root(), MIN_GRAPH_FIXTURES);
}

static void test_fixture(void **state) {
    const char *dir = *state;
    char model[PATH_LEN], weights[PATH_LEN], input[PATH_LEN], args_path[PATH_LEN], expected[PATH_LEN];
    char tmpl[PATH_LEN], out[PATH_LEN], log_path[PATH_LEN];
    if (!join(model, dir, "model.cnn") || !join(weights, dir, "weights.safetensors") ||
        !join(input, dir, "input.safetensors") || !join(args_path, dir, "args") ||
        !join(expected, dir, "expected.safetensors"))
        fail_msg("%s: path too long", dir);

    char *args = read_text(args_path);
    if (!args) fail_msg("%s: cannot read %s", dir, args_path);

    char *argv[10 + MAX_EXTRA_ARGS + 1];
    int argc = 0;
    argv[argc++] = (char *)cnn_bin();
    argv[argc++] = "grad";
    argv[argc++] = "--model";
    argv[argc++] = model;
    argv[argc++] = "--weights";
    argv[argc++] = weights;
    argv[argc++] = "--input";
    argv[argc++] = input;
    argv[argc++] = "--out";
    argv[argc++] = out;
    for (char *tok = strtok(args, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        if (argc >= 10 + MAX_EXTRA_ARGS) {
            free(args);
            fail_msg("%s: too many words in %s", dir, args_path);
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;

    int n = snprintf(tmpl, sizeof tmpl, "%s/cnn_fixture_XXXXXX", env_or("TMPDIR", "/tmp"));
    if (n <= 0 || n >= (int)sizeof tmpl || !mkdtemp(tmpl)) {
        free(args);
        fail_msg("%s: mkdtemp failed: %s", dir, strerror(errno));
    }
    if (!join(out, tmpl, "out.safetensors") || !join(log_path, tmpl, "log")) {
        free(args);
        tu_remove_tree(tmpl);
        fail_msg("%s: path too long", dir);
    }

    int status = run_logged(argv, log_path);
    free(args);
    char what[2 * PATH_LEN] = "";
    int failures = 0;
    if (status == -1) {
        snprintf(what, sizeof what, "cannot run %s: %s", cnn_bin(), strerror(errno));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *log = read_text(log_path);
        if (WIFEXITED(status))
            snprintf(what, sizeof what, "%s grad exited with status %d", cnn_bin(), WEXITSTATUS(status));
        else
            snprintf(what, sizeof what, "%s grad was killed by signal %d", cnn_bin(),
                     WIFSIGNALED(status) ? WTERMSIG(status) : -1);
        print_error("%s: %s; its output:\n%s\n", dir, what, log ? log : "(none)");
        free(log);
    } else {
        cnn_st *exp_st = NULL, *out_st = NULL;
        cnn_status s = cnn_st_load(expected, &exp_st);
        if (s != CNN_OK) {
            snprintf(what, sizeof what, "cannot load %s: %s", expected, cnn_last_error());
        } else if ((s = cnn_st_load(out, &out_st)) != CNN_OK) {
            snprintf(what, sizeof what, "cannot load the output: %s", cnn_last_error());
        } else if ((failures = compare(dir, exp_st, out_st)) > 0) {
            snprintf(what, sizeof what, "%d tensor(s) disagree with PyTorch", failures);
        }
        cnn_st_free(exp_st);
        cnn_st_free(out_st);
    }
    tu_remove_tree(tmpl);
    if (what[0]) fail_msg("%s: %s", dir, what);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the subdirectories of `root` that hold a model.cnn, sorted by name. */
static char **list_fixtures(const char *root, size_t *count) {
    *count = 0;
    DIR *d = opendir(root);
    if (!d) return NULL;
    char **dirs = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char dir[PATH_LEN], model[PATH_LEN];
        struct stat st;
        if (!join(dir, root, e->d_name) || !join(model, dir, "model.cnn")) continue;
        if (stat(model, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*count == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            char **grown = realloc(dirs, ncap * sizeof *grown);
            if (!grown) break;
            dirs = grown;
            cap = ncap;
        }
        dirs[*count] = strdup(dir);
        if (!dirs[*count]) break;
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(dirs, *count, sizeof *dirs, cmp_str);
    return dirs;
}

/* The test's name for fixture `dir`: the directory, and what the "# about: " line of its model.cnn
 * says (graph fixtures have one), e.g. "tests/graph_fixtures/007 (train, mse: conv2d add relu)". */
static char *test_name(const char *dir) {
    char model[PATH_LEN];
    char *text = join(model, dir, "model.cnn") ? read_text(model) : NULL;
    const char *about = NULL;
    size_t len = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        if (!strncmp(line, "# about: ", 9)) {
            about = line + 9;
            len = (size_t)(end - about);
            break;
        }
        line = *end ? end + 1 : end;
    }
    const size_t cap = strlen(dir) + len + 4;
    char *name = malloc(cap);
    if (name) {
        if (about) snprintf(name, cap, "%s (%.*s)", dir, (int)len, about);
        else snprintf(name, cap, "%s", dir);
    }
    free(text);
    return name;
}

int main(void) {
    size_t n1 = 0, n2 = 0;
    char **seq_dirs = list_fixtures(fixture_root(), &n1);
    char **graph_dirs = list_fixtures(graph_fixture_root(), &n2);
    g_fixture_count = n1, g_graph_fixture_count = n2;
    const size_t n = n1 + n2;
    struct CMUnitTest *tests = calloc(n + 2, sizeof *tests);
    char **names = calloc(n + 1, sizeof *names);
    if (!tests || !names) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    tests[0].name = "fixtures_found";
    tests[0].test_func = test_fixtures_found;
    tests[1].name = "graph_fixtures_found";
    tests[1].test_func = test_graph_fixtures_found;
    for (size_t i = 0; i < n; i++) {
        char *dir = i < n1 ? seq_dirs[i] : graph_dirs[i - n1];
        names[i] = test_name(dir);
        tests[i + 2].name = names[i] ? names[i] : dir;
        tests[i + 2].test_func = test_fixture;
        tests[i + 2].initial_state = dir;
    }
    int rc = _cmocka_run_group_tests("fixtures", tests, n + 2, NULL, NULL);
    for (size_t i = 0; i < n1; i++) free(seq_dirs[i]);
    for (size_t i = 0; i < n2; i++) free(graph_dirs[i]);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(seq_dirs);
    free(graph_dirs);
    free(names);
    free(tests);
    return rc;
}
