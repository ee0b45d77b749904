/* Running the CLI from a test: $CNN_BIN (default build/cnn) with stdin from /dev/null and stdout
 * and stderr captured, killed after CLI_TIMEOUT_S, in the current directory or in cli_cwd, under
 * cli_mem_limit bytes of address space when that is set; and any other program (python3) the same
 * way. Include after <cmocka.h>. */
#ifndef CNN_CLIRUN_H
#define CNN_CLIRUN_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLI_TIMEOUT_S
#define CLI_TIMEOUT_S 120
#endif

typedef struct cli_result {
    int status;                   /* the raw wait status */
    const char *out, *err;        /* captured output, valid until the next run */
    char cmd[2048];
} cli_result;

/* When not NULL, the directory the CLI runs in (for what it writes to the current directory). */
static const char *cli_cwd;

/* When not 0, the CLI's address-space limit in bytes (RLIMIT_AS), to show that it reads no more
 * than it needs. (A build with AddressSanitizer cannot run under one: it maps terabytes of shadow.) */
static unsigned long long cli_mem_limit;

static inline const char *cli_bin(void) {
    const char *b = getenv("CNN_BIN");
    return b && *b ? b : "build/cnn";
}

/* cli_bin() as an absolute path, so that it still runs from another directory. */
static inline const char *cli_bin_abs(void) {
    static char abs[4096];
    if (cli_bin()[0] == '/') return cli_bin();
    char cwd[3000];
    if (!getcwd(cwd, sizeof cwd)) return cli_bin();
    snprintf(abs, sizeof abs, "%s/%s", cwd, cli_bin());
    return abs;
}

static inline char *cli_read_file(const char *path, char *buf, size_t cap) {
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        len = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

/* Runs argv[0] (a path) with stdin from /dev/null, stdout into `out` and stderr into `err` (NULL:
 * into `out` too), in `cwd` (NULL: here), with env's NAME, VALUE pairs set (NULL-terminated; NULL
 * for none). Returns the wait status; exit status 127: it could not be run, 126: a file or cwd
 * could not be opened. After CLI_TIMEOUT_S it is killed and the test fails, naming it `what` (NULL:
 * argv[0] and argv[1]). */
static inline int cli_run_program(const char *const *argv, const char *cwd, const char *out, const char *err,
                                  const char *const *env, const char *what) {
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int in = open("/dev/null", O_RDONLY);
        const int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const int e = err ? open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600) : o;
        if (in < 0 || o < 0 || e < 0) _exit(126);
        dup2(in, STDIN_FILENO), dup2(o, STDOUT_FILENO), dup2(e, STDERR_FILENO);
        close(in), close(o);
        if (e != o) close(e);
        if (cwd && chdir(cwd) != 0) _exit(126);
        const struct rlimit rl = {(rlim_t)cli_mem_limit, (rlim_t)cli_mem_limit};
        if (cli_mem_limit && setrlimit(RLIMIT_AS, &rl) != 0) _exit(126);
        for (int i = 0; env && env[i]; i += 2) setenv(env[i], env[i + 1], 1);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    const struct timespec tick = {0, 5 * 1000 * 1000};
    int ws = 0;
    for (long waited = 0;; waited++) {
        const pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
        if (waited * 5 > CLI_TIMEOUT_S * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            if (what) fail_msg("%.300s: still running after %d s, killed", what, CLI_TIMEOUT_S);
            fail_msg("%s %s: still running after %d s, killed", argv[0], argv[1] ? argv[1] : "", CLI_TIMEOUT_S);
        }
        nanosleep(&tick, NULL);
    }
    return ws;
}

/* Starts the CLI with `args` (NULL-terminated) and does not wait: stdin from /dev/null, stdout
 * into `out`, stderr into `err` (both removed first, so that nothing of an earlier run is read as
 * this one's), in cli_cwd if set. Returns its pid; exit status 126: a file or cli_cwd could not be
 * opened, 127: the CLI could not be run. For tests that signal a run in the middle. */
static inline pid_t cli_spawn(const char *const *args, const char *out, const char *err) {
    const char *argv[96];
    int argc = 0;
    argv[argc++] = cli_cwd ? cli_bin_abs() : cli_bin();
    for (int i = 0; args[i] && argc < 95; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    remove(out), remove(err);
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int in = open("/dev/null", O_RDONLY);
        const int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || o < 0 || e < 0) _exit(126);
        dup2(in, STDIN_FILENO), dup2(o, STDOUT_FILENO), dup2(e, STDERR_FILENO);
        close(in), close(o), close(e);
        if (cli_cwd && chdir(cli_cwd) != 0) _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}
#define CLI_SPAWN(out, err, ...) cli_spawn((const char *const[]){__VA_ARGS__, NULL}, (out), (err))

/* Waits until the file `err` (a spawned run's stderr) holds `text`, for up to `seconds`. Fails the
 * test, with what the run wrote, if pid exits first or the time runs out (then it is killed). */
static inline void cli_wait_for_text(pid_t pid, const char *err, const char *text, double seconds) {
    static char buf[1 << 16];
    const struct timespec tick = {0, 1000 * 1000};
    for (long waited = 0; !strstr(cli_read_file(err, buf, sizeof buf), text); waited++) {
        int ws;
        if (waitpid(pid, &ws, WNOHANG) == pid)
            fail_msg("the run ended (status %d) before it wrote \"%s\":\n%s", ws, text, buf);
        if (waited > seconds * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            fail_msg("the run did not write \"%s\" within %g s; killed:\n%s", text, seconds, buf);
        }
        nanosleep(&tick, NULL);
    }
}

/* Runs the CLI with `args` (NULL-terminated); the output files go into `dir`. */
static inline void cli_run(cli_result *r, const char *dir, const char *const *args) {
    char out_path[1024], err_path[1024];
    snprintf(out_path, sizeof out_path, "%s/cli.stdout", dir);
    snprintf(err_path, sizeof err_path, "%s/cli.stderr", dir);
    const char *argv[96];
    int argc = 0;
    argv[argc++] = cli_cwd ? cli_bin_abs() : cli_bin();
    size_t at = (size_t)snprintf(r->cmd, sizeof r->cmd, "%s", cli_bin());
    for (int i = 0; args[i]; i++) {
        assert_true(argc < 95);
        argv[argc++] = args[i];
        if (at < sizeof r->cmd) at += (size_t)snprintf(r->cmd + at, sizeof r->cmd - at, " %s", args[i]);
    }
    argv[argc] = NULL;
    const int ws = cli_run_program(argv, cli_cwd, out_path, err_path, NULL, r->cmd);
    static char out_buf[1 << 16], err_buf[1 << 16];
    r->status = ws;
    r->out = cli_read_file(out_path, out_buf, sizeof out_buf);
    r->err = cli_read_file(err_path, err_buf, sizeof err_buf);
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 127 && strstr(r->err, "cannot run"))
        fail_msg("%.500s(build it with make, or set CNN_BIN)", r->err);
}

/* Asserts the run exited (no signal) with `code` and that stderr holds every string of subs. */
static inline void cli_expect(const cli_result *r, int code, const char *const *subs) {
    if (WIFSIGNALED(r->status))
        fail_msg("%.300s\n  died from signal %d; stderr:\n%.500s", r->cmd, WTERMSIG(r->status), r->err);
    if (!WIFEXITED(r->status)) fail_msg("%.300s\n  did not exit", r->cmd);
    if (WEXITSTATUS(r->status) != code)
        fail_msg("%.300s\n  exited with status %d, expected %d; stderr:\n%.800s\nstdout:\n%.500s", r->cmd,
                 WEXITSTATUS(r->status), code, r->err, r->out);
    for (int i = 0; subs && subs[i]; i++)
        if (!strstr(r->err, subs[i])) fail_msg("%.300s\n  stderr lacks \"%s\":\n%.800s", r->cmd, subs[i], r->err);
}

#define CLI_RUN(r, dir, ...) cli_run((r), (dir), (const char *const[]){__VA_ARGS__, NULL})
#define CLI_EXPECT(r, code, ...) cli_expect((r), (code), (const char *const[]){__VA_ARGS__, NULL})

#endif
