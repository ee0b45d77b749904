/* Training curves as a picture (SVG or PNG, by the file's extension). */
#ifndef CNN_PLOT_H
#define CNN_PLOT_H

#include <stddef.h>

/* Whether `path` names a format plot_curves writes: it ends in .svg or .png. */
int plot_path_ok(const char *path);

/* Draws n epochs of losses and accuracies (any array may be NULL; a value that is not finite is a
 * gap), numbered first, first + 1, ..., to `path`, written atomically. Returns 1, or 0 with a
 * message in err. */
int plot_curves(const char *path, int first, int n, const double *train_loss, const double *test_loss,
                const double *train_acc, const double *test_acc, const char *title, char *err, size_t errlen);

#endif
