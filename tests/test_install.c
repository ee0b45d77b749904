/* test_install.c - the library as a user installs it, through real commands: `make install
 * DESTDIR=TMP PREFIX=/usr` of this build, then the README's C example (the one that opens
 * include/cnn.h) built with nothing but pkg-config against the installed files, and run:
 *   - against libcnn.so:  cc example.c $(pkg-config --cflags --libs cnn), run with LD_LIBRARY_PATH;
 *   - against libcnn.a:   cc example.c $(pkg-config --cflags cnn) LIBDIR/libcnn.a -Wl,--as-needed
 *                         $(pkg-config --static --libs cnn), run with no libcnn.so anywhere in reach;
 *   - fully static:       cc -static example.c $(pkg-config --cflags --static --libs cnn) (not in the
 *                         sanitized build: AddressSanitizer does not link statically).
 * PKG_CONFIG_LIBDIR and PKG_CONFIG_SYSROOT_DIR point pkg-config at TMP only. It also checks the
 * files and links that install leaves (libcnn.so.VERSION, its SONAME libcnn.so.N and the
 * symlinks, cnn.pc, the cnn tool), that `nm -D --defined-only libcnn.so` lists exactly the
 * functions of the installed cnn.h, that every global of libcnn.a carries the cnn_ prefix, and that
 * `make uninstall` removes it all; and that the README's C example is the header's.
 *
 * `make test` passes CNN_MAKEVARS (SANITIZE=, BLAS=) so that `make install` installs the build
 * under test: under `make test SANITIZE=1` that is the sanitized build, whose cnn.pc adds the
 * sanitizer flags to Libs, so that pkg-config alone still gives what a program needs. CNN_CC is
 * the compiler (default cc). Runs from the repository root. */
#include "testutil.h"
#include "clirun.h"
#include "header_example.h"

#include <libgen.h>
#include <sys/stat.h>

static char tmp[] = "/tmp/cnn_test_install_XXXXXX";
static char root[320];       /* DESTDIR */
static char log_path[320];
static char out[1 << 16];    /* the output of the last command */

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* Runs `cmd` with /bin/sh; its stdout and stderr land in out[]. Returns the exit status, or -1. */
static int sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        const int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) _exit(126);
        dup2(fd, STDOUT_FILENO), dup2(fd, STDERR_FILENO);
        close(fd);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return -1;
    cli_read_file(log_path, out, sizeof out);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* As sh, failing the test (with the command and its output) unless it exits 0. */
#define SH_OK(...)                                                                                 \
    do {                                                                                           \
        char shown_[8192];                                                                         \
        snprintf(shown_, sizeof shown_, __VA_ARGS__);                                              \
        const int rc_ = sh("%s", shown_);                                                          \
        if (rc_ != 0) fail_msg("%s\n  exited with %d:\n%.4000s", shown_, rc_, out);                \
    } while (0)

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(tmp)) return -1;
    snprintf(root, sizeof root, "%s/root", tmp);
    snprintf(log_path, sizeof log_path, "%s/log", tmp);
    /* pkg-config sees the staged cnn.pc only, with its paths under DESTDIR. */
    char pc[400];
    snprintf(pc, sizeof pc, "%s/usr/lib/pkgconfig", root);
    setenv("PKG_CONFIG_LIBDIR", pc, 1);
    setenv("PKG_CONFIG_SYSROOT_DIR", root, 1);
    unsetenv("PKG_CONFIG_PATH");
    /* A make of its own, not a part of make test's jobserver. */
    unsetenv("MAKEFLAGS"), unsetenv("MFLAGS"), unsetenv("MAKELEVEL");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tu_remove_tree(tmp);
    return 0;
}

static const char *make_vars(void) { return env_or("CNN_MAKEVARS", ""); }

/* Once, for all the tests but the last (which uninstalls). */
static void install(void) {
    static int done;
    if (done) return;
    SH_OK("make --no-print-directory -s install DESTDIR=%s PREFIX=/usr %s", root, make_vars());
    done = 1;
}

/* The file at root + rel, with its lstat; fails the test when it is missing. */
static void expect_file(const char *rel, struct stat *st) {
    char p[1024];
    snprintf(p, sizeof p, "%s%s", root, rel);
    if (lstat(p, st) != 0) fail_msg("make install left no %s (under DESTDIR %s)", rel, root);
}

static void expect_link(const char *rel, const char *target) {
    char p[1024], got[256];
    snprintf(p, sizeof p, "%s%s", root, rel);
    const ssize_t n = readlink(p, got, sizeof got - 1);
    if (n < 0) fail_msg("%s is not a symbolic link", rel);
    got[n] = '\0';
    if (strcmp(got, target)) fail_msg("%s points to %s, not %s", rel, got, target);
}

/* The first line of `out`, without trailing blanks, in buf. */
static const char *first_line(char *buf, size_t cap) {
    size_t n = strcspn(out, "\n");
    while (n && (out[n - 1] == ' ' || out[n - 1] == '\r')) n--;
    snprintf(buf, cap, "%.*s", (int)n, out);
    return buf;
}

/* The files, the links, the version in each place it is written, and the installed tool. */
static void test_files(void **state) {
    (void)state;
    install();
    struct stat st;
    SH_OK("pkg-config --modversion cnn");
    char version[64];
    first_line(version, sizeof version);
    int major, minor, patch;
    if (sscanf(version, "%d.%d.%d", &major, &minor, &patch) != 3) fail_msg("cnn.pc's version is '%s'", version);

    char real[128];
    snprintf(real, sizeof real, "libcnn.so.%s", version);
    char rel[256];
    snprintf(rel, sizeof rel, "/usr/lib/%s", real);
    expect_file(rel, &st);
    if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR)) fail_msg("%s is not an executable file", rel);
    /* Its SONAME is libcnn.so.N, and libcnn.so.N (what programs load) and libcnn.so (what the
     * linker finds for -lcnn) both point at it. */
    SH_OK("readelf -d %s%s", root, rel);
    const char *so = strstr(out, "Library soname: [");
    if (!so) fail_msg("%s has no SONAME:\n%s", rel, out);
    char soname[128];
    snprintf(soname, sizeof soname, "%.*s", (int)strcspn(so + 17, "]"), so + 17);
    int soversion;
    char tail;
    if (sscanf(soname, "libcnn.so.%d%c", &soversion, &tail) != 1)
        fail_msg("the SONAME is '%s', not libcnn.so.N", soname);
    char link[256];
    snprintf(link, sizeof link, "/usr/lib/%s", soname);
    expect_link(link, real);
    expect_link("/usr/lib/libcnn.so", real);
    expect_file("/usr/lib/libcnn.a", &st);
    expect_file("/usr/include/cnn.h", &st);
    expect_file("/usr/lib/pkgconfig/cnn.pc", &st);
    expect_file("/usr/bin/cnn", &st);
    if (!(st.st_mode & S_IXUSR)) fail_msg("/usr/bin/cnn is not executable");

    /* The installed header is the repository's. */
    SH_OK("cmp include/cnn.h %s/usr/include/cnn.h", root);
    /* The installed tool is this build's (CNN_MAKEVARS named the right one), and runs. */
    char bin[512];
    snprintf(bin, sizeof bin, "%s", cli_bin());
    SH_OK("cmp %s %s/usr/bin/cnn", bin, root);
    SH_OK("%s/usr/bin/cnn --help", root);
    assert_non_null(strstr(out, "usage: cnn"));
    if (sh("%s/usr/bin/cnn --version", root) == 0) {
        char want[96];
        snprintf(want, sizeof want, "cnn %s", version);
        if (strncmp(out, want, strlen(want))) fail_msg("cnn --version printed '%.200s', but cnn.pc says %s", out, version);
    }

    /* cnn.pc: the paths of PREFIX=/usr, under the sysroot. */
    char buf[512], want[512];
    SH_OK("pkg-config --cflags cnn");
    snprintf(want, sizeof want, "-I%s/usr/include", root);
    if (strcmp(first_line(buf, sizeof buf), want)) fail_msg("pkg-config --cflags cnn gives '%s', not '%s'", buf, want);
    SH_OK("pkg-config --variable=libdir cnn");
    snprintf(want, sizeof want, "%s/usr/lib", root);
    if (strcmp(first_line(buf, sizeof buf), want)) fail_msg("cnn.pc's libdir is '%s', not '%s'", buf, want);
    SH_OK("pkg-config --static --libs cnn");
    for (const char *lib = "-lcnn\0-ljansson\0-lz\0-lm\0-fopenmp\0"; *lib; lib += strlen(lib) + 1)
        if (!strstr(out, lib)) fail_msg("pkg-config --static --libs cnn lacks %s: %s", lib, out);
    SH_OK("pkg-config --libs cnn");
    if (strstr(out, "-ljansson")) fail_msg("pkg-config --libs cnn names libcnn.so's own dependencies: %s", out);
}

/* libcnn.so exports exactly the functions that the installed cnn.h declares; libcnn.a's globals
 * all carry the cnn_ prefix (internal ones cnn_i_), so none can collide with a program's own. */
static void test_symbols(void **state) {
    (void)state;
    install();
    char header[1 << 18];
    char p[512];
    snprintf(p, sizeof p, "%s/usr/include/cnn.h", root);
    cli_read_file(p, header, sizeof header);

    SH_OK("nm -D --defined-only %s/usr/lib/libcnn.so", root);
    int exported = 0, checkpoint = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3) fail_msg("nm -D printed '%s'", line);
        if (strncmp(name, "cnn_", 4) || !strncmp(name, "cnn_i_", 6))
            fail_msg("libcnn.so exports %s (%s), which is not a function of the public API", name, type);
        char decl[300];
        snprintf(decl, sizeof decl, "%s(", name);
        if (!strstr(header, decl)) fail_msg("libcnn.so exports %s, which the installed cnn.h does not declare", name);
        exported++;
        checkpoint += !strcmp(name, "cnn_checkpoint_save") || !strcmp(name, "cnn_checkpoint_load");
    }
    assert_true(exported >= 70);
    assert_int_equal(checkpoint, 2);
    print_message("# libcnn.so exports %d symbols, every one a function of cnn.h\n", exported);

    /* Names that start with '_' (reserved for the implementation) are the toolchain's: the
     * sanitizers add some. */
    SH_OK("nm -g --defined-only %s/usr/lib/libcnn.a", root);
    int globals = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3) continue;   /* "file.o:" */
        if (name[0] == '_') continue;
        if (strncmp(name, "cnn_", 4)) fail_msg("libcnn.a defines the global %s (%s) without the cnn_ prefix", name, type);
        globals++;
    }
    assert_true(globals > exported);
}

/* The README's C example (the first ```c block of "## Use from C") is the header's, line for line. */
static void test_readme_example(void **state) {
    (void)state;
    static char readme[1 << 18];
    cli_read_file("README.md", readme, sizeof readme);
    const char *sec = strstr(readme, "\n## Use from C\n");
    const char *start = sec ? strstr(sec, "\n```c\n") : NULL;
    const char *end = start ? strstr(start + 6, "\n```\n") : NULL;
    if (!end) fail_msg("README.md: no ```c block under \"## Use from C\"");
    start += 6;
    char *example = header_example("include/cnn.h");
    assert_non_null(example);
    /* Both without their blank lines before and after. */
    const char *want = example + strspn(example, "\n");
    size_t wn = strlen(want);
    while (wn && want[wn - 1] == '\n') wn--;
    const size_t n = (size_t)(end - start);
    if (wn != n || strncmp(want, start, n)) {
        int line = 1;
        for (size_t i = 0; i < n && i < wn && want[i] == start[i]; i++) line += want[i] == '\n';
        fail_msg("README.md's C example differs from include/cnn.h's at line %d of the example", line);
    }
    free(example);
}

/* Writes the example of the installed cnn.h (which the README shows too) to TMP/example.c. */
static void write_example(char *c_path, size_t cap) {
    char header[512];
    snprintf(header, sizeof header, "%s/usr/include/cnn.h", root);
    char *src = header_example(header);
    if (!src) fail_msg("%s: no \"A working example:\" ... \" * Conventions\" comment", header);
    snprintf(c_path, cap, "%s/example.c", tmp);
    FILE *f = fopen(c_path, "w");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    free(src);
}

/* Runs an example binary from the repository root (for models/lenet5.cnn) and checks its loss:
 * LeNet-5's 10 classes from a zero input give about ln 10 = 2.30. */
static void run_example(const char *exe, const char *ld_path) {
    if (ld_path) SH_OK("LD_LIBRARY_PATH=%s %s", ld_path, exe);
    else SH_OK("env -u LD_LIBRARY_PATH %s", exe);
    double loss = 0.0;
    if (sscanf(out, "loss %lf", &loss) != 1) fail_msg("%s printed no loss:\n%s", exe, out);
    if (!(loss > 1.5 && loss < 3.5)) fail_msg("%s: the loss %g is not near ln 10", exe, loss);
}

/* Whether `exe` loads libcnn.so.N. */
static int needs_libcnn(const char *exe) {
    SH_OK("readelf -d %s", exe);
    return strstr(out, "[libcnn.so") != NULL;
}

static void test_example_shared(void **state) {
    (void)state;
    install();
    char c_path[512], exe[512], lib[512];
    write_example(c_path, sizeof c_path);
    snprintf(exe, sizeof exe, "%s/example_shared", tmp);
    snprintf(lib, sizeof lib, "%s/usr/lib", root);
    SH_OK("%s -std=c11 -Wall -Wextra -Werror %s -o %s $(pkg-config --cflags --libs cnn)", env_or("CNN_CC", "cc"),
          c_path, exe);
    if (!needs_libcnn(exe)) fail_msg("%s does not load libcnn.so:\n%s", exe, out);
    run_example(exe, lib);
}

static void test_example_static(void **state) {
    (void)state;
    install();
    char c_path[512], exe[512];
    write_example(c_path, sizeof c_path);
    snprintf(exe, sizeof exe, "%s/example_static", tmp);
    SH_OK("%s -std=c11 -Wall -Wextra -Werror %s -o %s $(pkg-config --cflags cnn) "
          "\"$(pkg-config --variable=libdir cnn)/libcnn.a\" -Wl,--as-needed $(pkg-config --static --libs cnn)",
          env_or("CNN_CC", "cc"), c_path, exe);
    if (needs_libcnn(exe)) fail_msg("%s links libcnn.a but still loads libcnn.so:\n%s", exe, out);
    run_example(exe, NULL);

    SH_OK("pkg-config --libs cnn");
    if (strstr(out, "-fsanitize")) {
        print_message("# the sanitized build: no fully static example (AddressSanitizer cannot link -static)\n");
        return;
    }
    snprintf(exe, sizeof exe, "%s/example_full_static", tmp);
    SH_OK("%s -static -std=c11 -Wall -Wextra -Werror %s -o %s $(pkg-config --cflags --static --libs cnn)",
          env_or("CNN_CC", "cc"), c_path, exe);
    SH_OK("readelf -d %s", exe);
    if (strstr(out, "NEEDED")) fail_msg("%s, linked with -static, loads shared libraries:\n%s", exe, out);
    run_example(exe, NULL);
}

static void test_uninstall(void **state) {
    (void)state;
    install();
    SH_OK("make --no-print-directory -s uninstall DESTDIR=%s PREFIX=/usr %s", root, make_vars());
    SH_OK("find %s ! -type d", root);
    if (out[0]) fail_msg("make uninstall left:\n%s", out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_example),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_symbols),
        cmocka_unit_test(test_example_shared),
        cmocka_unit_test(test_example_static),
        cmocka_unit_test(test_uninstall),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
