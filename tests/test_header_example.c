/* test_header_example.c - the working example that opens include/cnn.h compiles, links against the
 * library and runs, unchanged: the API it shows still works after the core became a graph.
 *
 * The example (tests/header_example.h extracts it) is written to a temporary directory, compiled
 * with $CNN_CC (default cc) against $CNN_BIN's directory's libcnn.a, linked with $CNN_LDFLAGS and
 * $CNN_LDLIBS (make test passes the build's own), and run from the repository root, where
 * models/lenet5.cnn is. */
#include "testutil.h"
#include "clirun.h"
#include "header_example.h"

#include <libgen.h>

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* Runs argv (NULL-terminated, split from `cmd` on spaces) and returns its exit status, or −1. */
static int run_words(char *cmd, const char *out_path) {
    char *argv[128];
    int argc = 0;
    for (char *save = NULL, *w = strtok_r(cmd, " ", &save); w && argc < 127; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        const int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) _exit(126);
        dup2(fd, STDOUT_FILENO), dup2(fd, STDERR_FILENO);
        close(fd);
        execvp(argv[0], argv);
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

static void test_header_example_compiles_and_runs(void **state) {
    (void)state;
    char *src = header_example("include/cnn.h");
    if (!src) fail_msg("include/cnn.h: no \"A working example:\" ... \" * Conventions\" comment");
    assert_non_null(strstr(src, "int main(void)"));
    char dir[] = "/tmp/cnn_test_header_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char c_path[256], exe[256], log[256], buf[1 << 14];
    snprintf(c_path, sizeof c_path, "%s/example.c", dir);
    snprintf(exe, sizeof exe, "%s/example", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    FILE *f = fopen(c_path, "w");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    free(src);

    char bin[512];
    snprintf(bin, sizeof bin, "%s", cli_bin());
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s -std=c11 -Wall -Wextra -Werror -Iinclude %s -o %s %s/libcnn.a %s %s",
             env_or("CNN_CC", "cc"), c_path, exe, dirname(bin), env_or("CNN_LDFLAGS", "-fopenmp"),
             env_or("CNN_LDLIBS", "-ljansson -lz -lstb -lcairo -lm"));
    char shown[4096];
    snprintf(shown, sizeof shown, "%s", cmd);
    const int cc = run_words(cmd, log);
    if (cc != 0) fail_msg("%s\n  exited with %d:\n%.3000s", shown, cc, cli_read_file(log, buf, sizeof buf));
    snprintf(cmd, sizeof cmd, "%s", exe);
    const int rc = run_words(cmd, log);
    cli_read_file(log, buf, sizeof buf);
    if (rc != 0) fail_msg("the example exited with %d:\n%.3000s", rc, buf);
    /* LeNet-5's 10 classes from a zero input: the loss is near ln 10 = 2.30. */
    double loss = 0.0;
    if (sscanf(buf, "loss %lf", &loss) != 1) fail_msg("the example printed no loss:\n%s", buf);
    if (!(loss > 1.5 && loss < 3.5)) fail_msg("the example's loss %g is not near ln 10", loss);
    unlink(c_path), unlink(exe), unlink(log);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_header_example_compiles_and_runs)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
