/* Training curves drawn with cairo: train and test loss on the left, train and test accuracy on
 * the right, one point per epoch, the x axis numbered from the first epoch drawn (a resumed run
 * draws its whole history). A value that is not finite (no test split in that epoch) leaves a gap.
 * The file's extension picks the format: .svg or .png. */
#include "plot.h"

#include "cnn.h"
#include "io/safe_write.h"

#include <cairo/cairo-svg.h>
#include <cairo/cairo.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define PI 3.14159265358979323846

enum { WIDTH = 900, HEIGHT = 420, MARGIN_L = 64, MARGIN_R = 20, MARGIN_T = 40, MARGIN_B = 52 };

typedef struct series {
    const double *v;
    const char *label;
    double r, g, b;
} series;

/* A "nice" step for about five ticks over [lo, hi]. */
static double tick_step(double lo, double hi) {
    const double raw = (hi - lo) / 5.0;
    const double mag = pow(10.0, floor(log10(raw)));
    const double f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

static void text(cairo_t *cr, double x, double y, const char *s, double align) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - align * e.width, y);
    cairo_show_text(cr, s);
}

/* One panel in the box (x0, y0, w, h): axes, ticks, grid, the series and a legend. */
/* The legend goes where the curves are not: top right for falling losses, bottom right for
 * rising accuracies. */
static void panel(cairo_t *cr, double x0, double y0, double w, double h, const char *title, const char *ylabel,
                  const series *s, int ns, int first, int n, double lo, double hi, int percent) {
    const int legend_low = percent;
    if (!(hi > lo)) hi = lo + 1.0;
    const double step = tick_step(lo, hi);
    lo = floor(lo / step) * step;
    hi = ceil(hi / step) * step;
    const double px = x0 + MARGIN_L, py = y0 + MARGIN_T, pw = w - MARGIN_L - MARGIN_R, ph = h - MARGIN_T - MARGIN_B;
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 15);
    text(cr, px + pw / 2, y0 + 24, title, 0.5);
    cairo_set_font_size(cr, 11);
    char buf[32];
    for (double t = lo; t <= hi + step / 2; t += step) {
        const double y = py + ph - (t - lo) / (hi - lo) * ph;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, px, y);
        cairo_line_to(cr, px + pw, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        snprintf(buf, sizeof buf, percent ? "%.4g%%" : "%.4g", percent ? 100 * t : t);
        text(cr, px - 6, y + 4, buf, 1.0);
    }
    const int every = n > 10 ? (n + 9) / 10 : 1;
    for (int e = 0; e < n; e++) {
        const double x = n > 1 ? px + pw * e / (n - 1) : px + pw / 2;
        if (e % every == 0 || e == n - 1) {
            snprintf(buf, sizeof buf, "%d", first + e);
            text(cr, x, py + ph + 16, buf, 0.5);
        }
    }
    text(cr, px + pw / 2, py + ph + 36, "epoch", 0.5);
    cairo_save(cr);
    cairo_move_to(cr, x0 + 14, py + ph / 2);
    cairo_rotate(cr, -PI / 2);
    cairo_text_extents_t e;
    cairo_text_extents(cr, ylabel, &e);
    cairo_rel_move_to(cr, -e.width / 2, 0);
    cairo_show_text(cr, ylabel);
    cairo_restore(cr);
    cairo_rectangle(cr, px, py, pw, ph);
    cairo_stroke(cr);
    for (int k = 0; k < ns; k++) {
        if (!s[k].v) continue;
        cairo_set_source_rgb(cr, s[k].r, s[k].g, s[k].b);
        cairo_set_line_width(cr, 2.0);
        for (int i = 0; i < n; i++) {
            const double x = n > 1 ? px + pw * i / (n - 1) : px + pw / 2;
            const double y = py + ph - (s[k].v[i] - lo) / (hi - lo) * ph;
            if (!isfinite(s[k].v[i])) continue;
            if (i == 0 || !isfinite(s[k].v[i - 1])) cairo_move_to(cr, x, y);
            else cairo_line_to(cr, x, y);
        }
        cairo_stroke(cr);
        for (int i = 0; i < n; i++) {
            if (!isfinite(s[k].v[i])) continue;
            const double x = n > 1 ? px + pw * i / (n - 1) : px + pw / 2;
            cairo_arc(cr, x, py + ph - (s[k].v[i] - lo) / (hi - lo) * ph, 3.0, 0, 2 * PI);
            cairo_fill(cr);
        }
        const double ly = legend_low ? py + ph - 12 - 16 * (ns - 1 - k) : py + 16 + 16 * k;
        cairo_move_to(cr, px + pw - 130, ly - 4);
        cairo_line_to(cr, px + pw - 110, ly - 4);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text(cr, px + pw - 104, ly, s[k].label, 0.0);
    }
    cairo_set_line_width(cr, 1.0);
}

static void range(const double *v, int n, double *lo, double *hi) {
    for (int i = 0; v && i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
}

static int ends_with(const char *s, const char *end) {
    const size_t n = strlen(s), k = strlen(end);
    return n > k && !strcmp(s + n - k, end);
}

int plot_path_ok(const char *path) { return ends_with(path, ".svg") || ends_with(path, ".png"); }

/* cairo writes through this into the temporary file of the plot (a cnn_safe_file). */
static cairo_status_t write_out(void *closure, const unsigned char *data, unsigned int n) {
    FILE *f = closure;
    return fwrite(data, 1, n, f) == n ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

int plot_curves(const char *path, int first, int n, const double *train_loss, const double *test_loss,
                const double *train_acc, const double *test_acc, const char *title, char *err, size_t errlen) {
    const int svg = ends_with(path, ".svg"), png = ends_with(path, ".png");
    if (!svg && !png) {
        snprintf(err, errlen, "%s: the plot's name must end in .svg or .png", path);
        return 0;
    }
    /* Written as every file of cnn's is (src/io/safe_write.h): to a temporary file, renamed. */
    cnn_safe_file sf;
    if (cnn_safe_open(&sf, path) != CNN_OK) {
        snprintf(err, errlen, "%s", cnn_last_error());
        return 0;
    }
    cairo_surface_t *surf = svg ? cairo_svg_surface_create_for_stream(write_out, sf.f, WIDTH, HEIGHT)
                                : cairo_image_surface_create(CAIRO_FORMAT_RGB24, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_line_width(cr, 1.0);
    double lo = INFINITY, hi = -INFINITY;
    range(train_loss, n, &lo, &hi);
    range(test_loss, n, &lo, &hi);
    if (lo > 0) lo = 0;
    const series losses[2] = {{train_loss, "train", 0.12, 0.47, 0.71}, {test_loss, "test", 0.84, 0.15, 0.16}};
    char t1[256];
    snprintf(t1, sizeof t1, "%s: loss", title);
    panel(cr, 0, 0, WIDTH / 2.0, HEIGHT, t1, "cross-entropy loss", losses, 2, first, n, lo, hi, 0);
    lo = INFINITY, hi = -INFINITY;
    range(train_acc, n, &lo, &hi);
    range(test_acc, n, &lo, &hi);
    if (hi > 1) hi = 1;
    const series accs[2] = {{train_acc, "train", 0.12, 0.47, 0.71}, {test_acc, "test", 0.84, 0.15, 0.16}};
    snprintf(t1, sizeof t1, "%s: accuracy", title);
    panel(cr, WIDTH / 2.0, 0, WIDTH / 2.0, HEIGHT, t1, "accuracy", accs, 2, first, n, lo, hi, 1);
    cairo_destroy(cr);
    cairo_status_t st = CAIRO_STATUS_SUCCESS;
    if (png) st = cairo_surface_write_to_png_stream(surf, write_out, sf.f);
    cairo_surface_finish(surf);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(surf);
    cairo_surface_destroy(surf);
    if (st != CAIRO_STATUS_SUCCESS) {
        cnn_safe_abort(&sf);
        snprintf(err, errlen, "%s: cannot write the plot (%s)", path, cairo_status_to_string(st));
        return 0;
    }
    if (cnn_safe_commit(&sf) != CNN_OK) {
        snprintf(err, errlen, "%s", cnn_last_error());
        return 0;
    }
    return 1;
}
