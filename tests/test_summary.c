/* cnn summary, through the real binary: the totals of LeNet-5 and ResNet-20 (PyTorch's parameter
 * counts, and the multiply-adds of fvcore's counting: conv and linear weights), every row of a
 * small graph with grouped, transposed and concatenated layers (its counts worked out below and
 * checked against PyTorch's modules by hand), the inputs column of a graph, the memory lines, the
 * model read from a checkpoint that `cnn train` wrote, and bad input (exit status 2). The test runs
 * from the repository root, as tests/run.sh runs it. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <sys/stat.h>

static char dir[64];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static int setup(void **state) {
    (void)state;
    return tu_make_temp_dir(dir, "test_summary");
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* "61,706" -> 61706; -1 when s does not start with a grouped number. */
static long long ungroup(const char *s) {
    long long v = 0;
    int digits = 0;
    for (; *s && *s != ' ' && *s != '\n'; s++) {
        if (*s == ',') continue;
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        digits++;
    }
    return digits ? v : -1;
}

/* The number after the label that starts a line of the totals ("parameters    61,706  ..."). */
static long long total(const char *out, const char *label) {
    const size_t n = strlen(label);
    for (const char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, label, n) || line[n] != ' ') continue;
        const char *v = line + n;
        while (*v == ' ') v++;
        const long long x = ungroup(v);
        if (x < 0) fail_msg("the line of '%s' has no number:\n%.200s", label, line);
        return x;
    }
    fail_msg("no line starts with '%s':\n%.3000s", label, out);
    return -1;
}

/* The table's row whose name is `name`, split into its six columns: name, kind, output,
 * parameters, mult-adds, inputs. */
typedef struct row {
    char f[6][256];
} row;

static row find_row(const char *out, const char *name) {
    const char *table = strstr(out, "\nname ");
    if (!table) fail_msg("no table header in:\n%.2000s", out);
    for (const char *line = strchr(table + 1, '\n') + 1; *line && *line != '\n'; line = strchr(line, '\n') + 1) {
        row r;
        memset(&r, 0, sizeof r);
        const char *p = line;
        int k = 0;
        while (k < 6 && *p && *p != '\n') {
            while (*p == ' ') p++;
            size_t len = 0;
            while (p[len] && p[len] != ' ' && p[len] != '\n') len++;
            if (!len) break;
            snprintf(r.f[k++], sizeof r.f[0], "%.*s", (int)len, p);
            p += len;
        }
        if (k != 6) fail_msg("a row without six columns:\n%.300s", line);
        if (!strcmp(r.f[0], name)) return r;
        if (!strchr(line, '\n')) break;
    }
    fail_msg("no row named '%s' in:\n%.3000s", name, out);
    row none;
    memset(&none, 0, sizeof none);
    return none;
}

static void expect_row(const char *out, const char *name, const char *kind, const char *shape, long long params,
                       long long macs, const char *inputs) {
    const row r = find_row(out, name);
    if (strcmp(r.f[1], kind) || strcmp(r.f[2], shape) || ungroup(r.f[3]) != params || ungroup(r.f[4]) != macs ||
        strcmp(r.f[5], inputs))
        fail_msg("row %s is '%s %s %s %s %s', expected '%s %s %lld %lld %s'", name, r.f[1], r.f[2], r.f[3], r.f[4],
                 r.f[5], kind, shape, params, macs, inputs);
}

/* The rows' parameters and multiply-adds add up to the totals, and there are `layers` rows. */
static void expect_rows_add_up(const char *out, int layers) {
    const char *table = strstr(out, "\nname ");
    assert_non_null(table);
    long long params = 0, macs = 0;
    int rows = 0;
    for (const char *line = strchr(table + 1, '\n') + 1; *line && *line != '\n'; line = strchr(line, '\n') + 1) {
        char name[256], kind[64], shape[64], p[64], m[64];
        if (sscanf(line, "%255s %63s %63s %63s %63s", name, kind, shape, p, m) != 5)
            fail_msg("bad row:\n%.300s", line);
        params += ungroup(p);
        macs += ungroup(m);
        rows++;
    }
    assert_int_equal(rows, layers);
    assert_int_equal(params, total(out, "parameters"));
    assert_int_equal(macs, total(out, "mult-adds"));
}

/* LeNet-5: PyTorch's 61,706 parameters; 416,520 multiply-adds per sample (conv1 6·28·28·25, conv2
 * 16·10·10·150, the linears 400·120 + 120·84 + 84·10), 0.42 M. */
static void test_lenet5(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "summary", "--model", "models/lenet5.cnn");
    cli_expect(&r, 0, NULL);
    assert_int_equal(total(r.out, "parameters"), 61706);
    assert_int_equal(total(r.out, "buffers"), 0);
    assert_int_equal(total(r.out, "mult-adds"), 416520);
    assert_non_null(strstr(r.out, "per sample (0.42 M)"));
    assert_int_equal(total(r.out, "training FLOPs"), 6 * 416520);
    expect_row(r.out, "0", "conv2d", "6x28x28", 156, 117600, "input");
    expect_row(r.out, "2", "maxpool2d", "6x14x14", 0, 0, "1");
    expect_row(r.out, "3", "conv2d", "16x10x10", 2416, 240000, "2");
    expect_row(r.out, "6", "flatten", "400", 0, 0, "5");
    expect_row(r.out, "7", "linear", "120", 48120, 48000, "6");
    expect_row(r.out, "11", "linear", "10", 850, 840, "10");
    expect_rows_add_up(r.out, 12);
    /* Every layer's output: 3·4704 + 1176 + 2·1600 + 400 + 400 + 2·120 + 2·84 + 10 = 15,002 values
     * per sample; at the default batch 64 that is 3,840,512 bytes, 3.7 MiB. */
    assert_non_null(strstr(r.out, "memory at batch 64, float32:"));
    assert_non_null(strstr(r.out, "activations                  3.7 MiB  (every layer's output: 15,002 values"));
    assert_non_null(strstr(r.out, "parameters and buffers     241.0 KiB"));
}

/* ResNet-20: 272,474 parameters (0.27 M), 40,813,184 multiply-adds (about 41 M), 1,589 buffer
 * elements (21 batch norms: running_mean and running_var of 16·7 + 32·7 + 64·7 channels, and 21
 * num_batches_tracked); the inputs column names the values each add reads. */
static void test_resnet20(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "summary", "--model", "models/resnet20.cnn", "--batch", "128");
    cli_expect(&r, 0, NULL);
    assert_int_equal(total(r.out, "parameters"), 272474);
    assert_non_null(strstr(r.out, "(0.27 M)"));
    assert_int_equal(total(r.out, "mult-adds"), 40813184);
    assert_non_null(strstr(r.out, "per sample (40.81 M)"));
    assert_int_equal(total(r.out, "buffers"), 1589);
    assert_non_null(strstr(r.out, "memory at batch 128, float32:"));
    expect_row(r.out, "conv1", "conv2d", "16x32x32", 432, 442368, "input");
    expect_row(r.out, "bn1", "batchnorm2d", "16x32x32", 32, 0, "conv1");
    expect_row(r.out, "8", "add", "16x32x32", 0, 0, "layer1.0.bn2,stem");
    expect_row(r.out, "layer2.0.conv1", "conv2d", "32x16x16", 4608, 1179648, "layer1.2");
    expect_row(r.out, "layer2.0.downsample.0", "conv2d", "32x16x16", 512, 131072, "layer1.2");
    const row add = find_row(r.out, "layer2.0");   /* the relu after the block's add */
    assert_string_equal(add.f[1], "relu");
    char addname[256];
    snprintf(addname, sizeof addname, "%s", add.f[5]);
    expect_row(r.out, addname, "add", "32x16x16", 0, 0, "layer2.0.bn2,layer2.0.downsample.1");
    expect_row(r.out, "avgpool", "adaptiveavgpool2d", "64x1x1", 0, 0, "layer3.2");
    expect_row(r.out, "fc", "linear", "10", 650, 640, "71");
    expect_rows_add_up(r.out, 73);
}

/* A graph of the layers whose counts have their own formula. Per sample:
 *   a    conv2d 4->8, 3x3, groups 2, 8x8 out: weight [8, 2, 3, 3] + bias: 152 parameters;
 *        out_elems · (in_c/groups) · kh · kw = 512 · 2 · 9 = 9,216 multiply-adds
 *   up   convtranspose2d 4->6, 2x2, stride 2, groups 2: weight [4, 3, 2, 2] + bias: 54;
 *        in_elems · (out_c/groups) · kh · kw = 256 · 3 · 4 = 3,072
 *   cat  concat of a (8x8x8) and down (6x8x8): 14x8x8, reading a,down
 *   bn   batchnorm2d of 14 channels: 28 parameters, 29 buffer elements, 0 multiply-adds
 *   fc   linear 14 -> 5: 75 parameters, 70 multiply-adds
 * (PyTorch's modules of tools/cnnmodel.py count the same 309 parameters; forward hooks that
 * apply these formulas to each Conv2d, ConvTranspose2d and Linear give the same 12,358.) */
static const char GRAPH[] = "input 4 8 8\n"
                            "conv2d out_channels=8 kernel_size=3 padding=1 groups=2 name=a\n"
                            "convtranspose2d out_channels=6 kernel_size=2 stride=2 groups=2 from=input name=up\n"
                            "maxpool2d kernel_size=2 name=down\n"
                            "concat from=a,down name=cat\n"
                            "batchnorm2d name=bn\n"
                            "adaptiveavgpool2d output_size=1\n"
                            "flatten\n"
                            "linear out_features=5 name=fc\n";

static void test_graph_rows(void **state) {
    (void)state;
    char model[512];
    tu_write_bytes(path(model, "graph.cnn"), GRAPH, strlen(GRAPH));
    char model_opt[600];
    snprintf(model_opt, sizeof model_opt, "--model=%s", model);
    cli_result r;
    CLI_RUN(&r, dir, "summary", "--batch=2", model_opt);
    cli_expect(&r, 0, NULL);
    expect_row(r.out, "a", "conv2d", "8x8x8", 152, 9216, "input");
    expect_row(r.out, "up", "convtranspose2d", "6x16x16", 54, 3072, "input");
    expect_row(r.out, "down", "maxpool2d", "6x8x8", 0, 0, "up");
    expect_row(r.out, "cat", "concat", "14x8x8", 0, 0, "a,down");
    expect_row(r.out, "bn", "batchnorm2d", "14x8x8", 28, 0, "cat");
    expect_row(r.out, "5", "adaptiveavgpool2d", "14x1x1", 0, 0, "bn");
    expect_row(r.out, "6", "flatten", "14", 0, 0, "5");
    expect_row(r.out, "fc", "linear", "5", 75, 70, "6");
    expect_rows_add_up(r.out, 8);
    assert_int_equal(total(r.out, "parameters"), 309);
    assert_int_equal(total(r.out, "buffers"), 29);
    assert_int_equal(total(r.out, "mult-adds"), 12358);
    /* Memory at batch 2: parameters 309·4 + buffers 28·4 + 8 = 1,356 B; the layers' outputs
     * 512 + 1536 + 384 + 896 + 896 + 14 + 14 + 5 = 4,257 values, 34,056 B; their gradients and the
     * input's 36,104 B. */
    assert_non_null(strstr(r.out, "memory at batch 2, float32:"));
    assert_non_null(strstr(r.out, "parameters and buffers       1.3 KiB"));
    assert_non_null(strstr(r.out, "activations                 33.3 KiB  (every layer's output: 4,257 values"));
    assert_non_null(strstr(r.out, "activation gradients        35.3 KiB"));
}

/* Class k's bright 4x4 patch in the 28x28 images. */
static void patch_at(int k, int *row, int *col) { *row = 2 + 2 * k, *col = 4 + (k * 7) % 20; }

/* The text from "\nname " on, without the memory lines (they differ with the batch). */
static void table_and_totals(const char *out, char *buf, size_t cap) {
    const char *from = strstr(out, "\nname ");
    const char *to = strstr(out, "\nmemory at batch");
    if (!from || !to) fail_msg("no table or no memory lines in:\n%.2000s", out);
    snprintf(buf, cap, "%.*s", (int)(to - from), from);
}

/* --weights alone: the model is the checkpoint's, and so are the batch size and the facts of the
 * weights line; the table and the totals are those of the model file. */
static void test_model_from_checkpoint(void **state) {
    (void)state;
    char data[512], ck[512];
    /* A learnable LeNet-5-sized data set: 32 samples of 1x28x28 in 10 classes (testdata.h). */
    tu_make_dataset(path(data, "digits.safetensors"),
                    (tu_dataset){.n = 32, .size = 28, .classes = 10, .seed = 99, .patch = 4, .at = patch_at});
    path(ck, "ck.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", "models/lenet5.cnn", "--data", data, "--epochs", "1", "--batch", "8",
            "--init", "1", "--out", ck);
    CLI_EXPECT(&r, 0, "epoch 1/1");

    static char from_model[1 << 15], from_ck[1 << 15];
    CLI_RUN(&r, dir, "summary", "--model", "models/lenet5.cnn");
    cli_expect(&r, 0, NULL);
    table_and_totals(r.out, from_model, sizeof from_model);

    CLI_RUN(&r, dir, "summary", "--weights", ck);
    cli_expect(&r, 0, NULL);
    table_and_totals(r.out, from_ck, sizeof from_ck);
    assert_string_equal(from_ck, from_model);
    char want[2048];
    snprintf(want, sizeof want, "%s: input 1x28x28, 12 layers\nweights %s (data safetensors, epoch 1, step 4)\n", ck,
             ck);
    if (strncmp(r.out, want, strlen(want))) fail_msg("expected the output to start with\n%s\ngot\n%.400s", want, r.out);
    assert_non_null(strstr(r.out, "memory at batch 8 (the checkpoint's), float32:"));
    assert_int_equal(total(r.out, "parameters"), 61706);
    assert_int_equal(total(r.out, "mult-adds"), 416520);

    /* --batch overrides the checkpoint's; with --model too, the weights must fit it. */
    CLI_RUN(&r, dir, "summary", "--weights", ck, "--batch", "3");
    cli_expect(&r, 0, NULL);
    assert_non_null(strstr(r.out, "memory at batch 3, float32:"));
    CLI_RUN(&r, dir, "summary", "--model", "models/lenet5.cnn", "--weights", ck);
    cli_expect(&r, 0, NULL);
    CLI_RUN(&r, dir, "summary", "--model", "models/resnet20.cnn", "--weights", ck);
    CLI_EXPECT(&r, 2, "cnn summary: ", ck);

    /* A safetensors file that is no checkpoint has no model to show. */
    CLI_RUN(&r, dir, "summary", "--weights", data);
    CLI_EXPECT(&r, 2, "has no model text in its metadata", "give --model");
    assert_string_equal(r.out, "");
}

static void test_bad_input(void **state) {
    (void)state;
    char bad[512];
    const char text[] = "input 1 8 8\nconv2d out_channels=2 kernal_size=3\n";
    tu_write_bytes(path(bad, "bad.cnn"), text, strlen(text));
    cli_result r;
    CLI_RUN(&r, dir, "summary");
    CLI_EXPECT(&r, 2, "--model or --weights is required");
    CLI_RUN(&r, dir, "summary", "--modle", "models/lenet5.cnn");
    CLI_EXPECT(&r, 2, "unknown option '--modle'");
    CLI_RUN(&r, dir, "summary", "--model");
    CLI_EXPECT(&r, 2, "--model needs a value");
    CLI_RUN(&r, dir, "summary", "--model", "models/lenet5.cnn", "--batch", "0");
    CLI_EXPECT(&r, 2, "--batch 0: expected a whole number from 1 to 1000000");
    CLI_RUN(&r, dir, "summary", "--model", "models/lenet5.cnn", "--batch", "many");
    CLI_EXPECT(&r, 2, "--batch many");
    CLI_RUN(&r, dir, "summary", "--model", "no/such/model.cnn");
    CLI_EXPECT(&r, 2, "no/such/model.cnn");
    CLI_RUN(&r, dir, "summary", "--model", bad);
    CLI_EXPECT(&r, 2, "line 2: conv2d: unknown option 'kernal_size'");
    CLI_RUN(&r, dir, "summary", "--weights", "no/such/ck.safetensors");
    CLI_EXPECT(&r, 2, "no/such/ck.safetensors");
    CLI_RUN(&r, dir, "summary", "--weights", bad);   /* not a safetensors file */
    CLI_EXPECT(&r, 2, bad);
    CLI_RUN(&r, dir, "summary", "--help");
    cli_expect(&r, 0, NULL);
    assert_non_null(strstr(r.out, "usage: cnn summary"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenet5),
        cmocka_unit_test(test_resnet20),
        cmocka_unit_test(test_graph_rows),
        cmocka_unit_test(test_model_from_checkpoint),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
