/* Same-file checks: an output that is also an input (--out on the training data, --plot on the
 * checkpoint) would destroy the input, or the other output, and still exit 0. Files are compared
 * by what they are, not how they are named: device and inode where they exist (so that a
 * symlink, a hard link or "./x" against "x" is caught), else the real path of the directory with
 * the name. */
#define _DEFAULT_SOURCE /* realpath, DT_* */
#include "files.h"

#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* What a path names: a file that exists (dev, ino), or the resolved path of one that does not. */
typedef struct file_id {
    int exists;
    dev_t dev;
    ino_t ino;
    char resolved[PATH_MAX + 256];
} file_id;

static void identify(const char *path, file_id *id) {
    memset(id, 0, sizeof *id);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        id->exists = 1, id->dev = sb.st_dev, id->ino = sb.st_ino;
        return;
    }
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    char real[PATH_MAX];
    snprintf(id->resolved, sizeof id->resolved, "%s/%s", realpath(dir, real) ? real : dir, slash ? slash + 1 : path);
}

static int same(const file_id *a, const file_id *b) {
    if (a->exists != b->exists) return 0;
    return a->exists ? a->dev == b->dev && a->ino == b->ino : !strcmp(a->resolved, b->resolved);
}

static void clash(const char *cmd, const cli_file *out, const cli_file *other, const char *inner) {
    if (inner)
        cli_error(cmd, "%s %s and %s %s are the same file (%s is in %s); nothing was written", out->opt, out->path,
                  other->opt, other->path, inner, other->path);
    else
        cli_error(cmd, "%s %s and %s %s are the same file; nothing was written", out->opt, out->path, other->opt,
                  other->path);
}

/* Whether output `o` (identified as oid) is the input `in` or, for a directory, a file in it. */
static int hits_input(const char *cmd, const cli_file *o, const file_id *oid, const cli_file *in) {
    file_id iid;
    identify(in->path, &iid);
    if (same(oid, &iid)) {
        clash(cmd, o, in, NULL);
        return 1;
    }
    struct stat sb;
    if (!oid->exists || stat(in->path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return 0;
    DIR *d = opendir(in->path);
    if (!d) return 0;
    int hit = 0;
    for (struct dirent *e; !hit && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX + 256];
        snprintf(p, sizeof p, "%s/%s", in->path, e->d_name);
        file_id fid;
        identify(p, &fid);
        if (same(oid, &fid)) {
            clash(cmd, o, in, e->d_name);
            hit = 1;
        }
    }
    closedir(d);
    return hit;
}

int cli_check_same_files(const char *cmd, const cli_file *outs, int n_outs, const cli_file *ins, int n_ins,
                         const char *same_ok_in, const char *same_ok_out) {
    for (int i = 0; i < n_outs; i++) {
        const cli_file *o = &outs[i];
        if (!o->path) continue;
        file_id oid;
        identify(o->path, &oid);
        for (int j = 0; j < n_ins; j++) {
            const cli_file *in = &ins[j];
            if (!in->path) continue;
            if (same_ok_in && same_ok_out && !strcmp(in->opt, same_ok_in) && !strcmp(o->opt, same_ok_out)) continue;
            if (hits_input(cmd, o, &oid, in)) return 0;
        }
    }
    for (int i = 0; i < n_outs; i++) {
        const cli_file *o = &outs[i];
        if (!o->path) continue;
        file_id oid;
        identify(o->path, &oid);
        for (int j = i + 1; j < n_outs; j++) {
            if (!outs[j].path) continue;
            file_id id;
            identify(outs[j].path, &id);
            if (same(&oid, &id)) {
                clash(cmd, o, &outs[j], NULL);
                return 0;
            }
        }
    }
    return 1;
}

int cli_output_ok(const char *cmd, const char *opt, const char *out) {
    struct stat sb;
    if (!*out || (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode))) {
        cli_error(cmd, "%s '%s' is a directory or empty: give a file name", opt, out);
        return 0;
    }
    char dir[4096];
    const char *slash = strrchr(out, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == out) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - out), out);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        cli_error(cmd, "%s %s: the directory '%s' does not exist", opt, out, dir);
        return 0;
    }
    if (access(dir, W_OK) != 0) {
        cli_error(cmd, "%s %s: the directory '%s' is not writable (%s)", opt, out, dir, strerror(errno));
        return 0;
    }
    return 1;
}

int cli_io_failure(const char *cmd, cnn_status st) {
    (void)st;
    fprintf(stderr, "cnn %s: %s\n", cmd, cnn_last_error());
    return EXIT_IO;
}
