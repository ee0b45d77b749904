/* Writes the seed corpora of the fuzz targets: small valid files of every kind each reader takes,
 * and broken ones (truncated, inconsistent, oversized), one directory per target under argv[1].
 * `make fuzz-corpus` runs it into tests/fuzz/corpus; the files are committed, so this program is
 * their recipe rather than a step of every build. */
#include "cnn.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

static const char *root;

static void die(const char *what) {
    fprintf(stderr, "make_corpus: %s\n", what);
    exit(1);
}

/* root/target/name in a static buffer; creates root/target. */
static const char *at(const char *target, const char *name) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, target);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", root, target, name);
    return p;
}

static void put(const char *target, const char *name, const void *buf, size_t len) {
    FILE *f = fopen(at(target, name), "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f)) die(name);
}

static void put_text(const char *target, const char *name, const char *text) {
    put(target, name, text, strlen(text));
}

/* A gzip file of `len` bytes; with `split` > 0, two gzip members, the first holding `split` bytes. */
static void put_gz(const char *target, const char *name, const void *buf, size_t len, size_t split) {
    const char *p = at(target, name);
    gzFile gz = gzopen(p, "wb9");
    if (!gz) die(name);
    const size_t first = split ? split : len;
    if (first && gzwrite(gz, buf, (unsigned)first) != (int)first) die(name);
    if (gzclose(gz) != Z_OK) die(name);
    if (!split) return;
    if (!(gz = gzopen(p, "ab9"))) die(name);
    if (gzwrite(gz, (const char *)buf + split, (unsigned)(len - split)) != (int)(len - split)) die(name);
    if (gzclose(gz) != Z_OK) die(name);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    static unsigned char buf[1 << 16];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

/* ---- model files --------------------------------------------------------------------------- */

static void models(void) {
    const char *t = "model";
    put_text(t, "small.cnn", "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\n"
                             "maxpool2d kernel_size=2\nflatten\nlinear out_features=3\n");
    put_text(t, "options.cnn", "input 2 7 5\nconv2d out_channels=4 kernel_size=3,2 stride=2,1 padding=1,0 "
                               "dilation=1,2 groups=2 bias=false\nleakyrelu negative_slope=0.2\n"
                               "avgpool2d kernel_size=2 stride=1 padding=1 ceil_mode=true count_include_pad=false\n"
                               "sigmoid\nflatten\nlinear out_features=2 bias=false\ntanh\n");
    put_text(t, "depthwise.cnn", "input 3 5 5\nconv2d out_channels=3 kernel_size=3 groups=3\n"
                                 "maxpool2d kernel_size=3 stride=2 padding=1 ceil_mode=true\n");
    put_text(t, "comments.cnn", "# a comment\n\ninput 1 4 4   # C H W\n  relu  \n\tflatten\n");
    put_text(t, "lenet5.cnn", "# LeNet-5\ninput 1 28 28\nconv2d out_channels=6 kernel_size=5 padding=2\nrelu\n"
                              "maxpool2d kernel_size=2\nconv2d out_channels=16 kernel_size=5\nrelu\n"
                              "maxpool2d kernel_size=2\nflatten\nlinear out_features=120\nrelu\n"
                              "linear out_features=84\nrelu\nlinear out_features=10\n");
    put_text(t, "err_option.cnn", "input 1 8 8\nconv2d out_channels=6 kernal_size=5\n");
    put_text(t, "err_no_input.cnn", "conv2d out_channels=1 kernel_size=1\n");
    put_text(t, "err_conv_after_flatten.cnn", "input 1 2 2\nflatten\nconv2d out_channels=1 kernel_size=1\n");
    put_text(t, "err_kernel_too_big.cnn", "input 1 4 4\nmaxpool2d kernel_size=5\n");
    put_text(t, "err_linear_not_flat.cnn", "input 1 4 4\nlinear out_features=3\n");
    put_text(t, "err_twice.cnn", "input 1 4 4\nleakyrelu negative_slope=1 negative_slope=2\n");
    put_text(t, "err_input.cnn", "input 0 1 99999999999\n");
    /* The size limits: 2^28 elements per tensor, 2^30 parameters and activations in all. A model
     * file sizes its net: the largest it may describe makes cnn_net_parse allocate 2 x 3.2 GB of
     * parameters and gradients (calloc'd: untouched pages cost nothing). */
    put_text(t, "big_params.cnn", "input 1 1 1\nflatten\nlinear out_features=16384\nlinear out_features=16384\n"
                                  "linear out_features=16384\nlinear out_features=16384\n");
    put_text(t, "err_too_many_params.cnn", "input 1 1 1\nflatten\nlinear out_features=16384\nlinear out_features=16384\n"
                                           "linear out_features=16384\nlinear out_features=16384\nlinear out_features=16384\n");
    put_text(t, "err_weight_too_large.cnn", "input 1 1 1\nflatten\nlinear out_features=1000000\nlinear out_features=1000\n");
    put_text(t, "err_input_too_large.cnn", "input 1024 1024 1024\n");
    put_text(t, "err_output_too_large.cnn", "input 16 1024 1024\nconv2d out_channels=512 kernel_size=1\n");
    /* Graphs: names, from= lists, forks that meet in add and concat, the layers of modern CNNs. */
    put_text(t, "residual.cnn", "input 3 8 8\nConv2d out_channels=4 kernel_size=3 padding=1 bias=false name=conv1\n"
                                "BatchNorm2d name=bn1\nReLU name=stem\nconv2d out_channels=4 kernel_size=3 padding=1 "
                                "bias=false name=layer1.0.conv1\nbatchnorm2d name=layer1.0.bn1\nrelu\n"
                                "conv2d out_channels=4 kernel_size=3 padding=same name=layer1.0.conv2\n"
                                "batchnorm2d momentum=none\nadd from=stem\nrelu name=layer1.0\n"
                                "adaptiveavgpool2d output_size=1\nflatten\ndropout p=0.25\nlinear out_features=3 name=fc\n");
    put_text(t, "concat.cnn", "input 2 6 6\nconv2d out_channels=3 kernel_size=1 name=a\nsilu name=b\n"
                              "gelu approximate=tanh from=a name=c\nconcat from=a,b,c\n"
                              "convtranspose2d out_channels=2 kernel_size=3 stride=2 output_padding=1\n"
                              "adaptivemaxpool2d output_size=2,3\nsoftmax\nadd from=6,6 name=twice\n"
                              "flatten\nbatchnorm1d affine=false\n");
    put_text(t, "err_cycle.cnn", "input 1 4 4\nrelu from=b name=a\nrelu from=a name=b\n");
    put_text(t, "err_self.cnn", "input 1 4 4\nrelu from=a name=a\n");
    put_text(t, "err_unknown_name.cnn", "input 1 4 4\nrelu\nadd from=nowhere\n");
    put_text(t, "err_duplicate_name.cnn", "input 1 4 4\nrelu name=a\nrelu name=a\n");
    put_text(t, "err_unused.cnn", "input 1 4 4\nrelu name=a\nsigmoid\ntanh from=a\n");
    put_text(t, "err_add_shapes.cnn", "input 1 4 4\nmaxpool2d kernel_size=2\nadd from=input\n");
    put_text(t, "err_same_stride.cnn", "input 1 4 4\nconv2d out_channels=1 kernel_size=3 padding=same stride=2\n");
    put_text(t, "err_workspace.cnn", "input 64 512 512\nconv2d out_channels=1 kernel_size=31 padding=15\n");
}

/* ---- safetensors --------------------------------------------------------------------------- */

/* The weights of the fuzz target's net: 0.weight [2,1,3,3], 0.bias [2], 3.weight [3,8], 3.bias [3]. */
static float w0[18], b0[2], w3[24], b3[3];
static double w0d[18], b0d[2], w3d[24], b3d[3];

static void fill(void) {
    for (int i = 0; i < 18; i++) w0d[i] = w0[i] = (float)(i % 7 - 3) / 8.0f;
    for (int i = 0; i < 24; i++) w3d[i] = w3[i] = (float)(i % 5 - 2) / 4.0f;
    b0d[0] = b0[0] = 0.5f, b0d[1] = b0[1] = -0.25f;
    for (int i = 0; i < 3; i++) b3d[i] = b3[i] = (float)i;
}

#define T(nm, dt, nd, d0, d1, d2, d3, ptr) {.name = nm, .dtype = dt, .ndim = nd, .shape = {d0, d1, d2, d3}, .data = ptr}

static void save(const char *name, const cnn_tensor *t, int n, const char *const *meta, int n_meta) {
    if (cnn_st_save(at("safetensors", name), t, n, meta, n_meta) != CNN_OK) die(cnn_last_error());
}

/* A file with header `json` (its true length, or `hlen` when not 0) and `data_len` bytes of data. */
static void craft(const char *name, const char *json, uint64_t hlen, const void *data, size_t data_len) {
    unsigned char buf[4096];
    const size_t j = strlen(json);
    if (!hlen) hlen = j;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, j);
    memcpy(buf + 8 + j, data, data_len);
    put("safetensors", name, buf, 8 + j + data_len);
}

static void safetensors(void) {
    fill();
    const cnn_tensor weights[4] = {T("0.weight", CNN_F32, 4, 2, 1, 3, 3, w0), T("0.bias", CNN_F32, 1, 2, 0, 0, 0, b0),
                                   T("3.weight", CNN_F32, 2, 3, 8, 0, 0, w3), T("3.bias", CNN_F32, 1, 3, 0, 0, 0, b3)};
    const char *meta[] = {"format", "pt"};
    save("weights.safetensors", weights, 4, meta, 1);
    const cnn_tensor wd[4] = {T("0.weight", CNN_F64, 4, 2, 1, 3, 3, w0d), T("0.bias", CNN_F64, 1, 2, 0, 0, 0, b0d),
                              T("3.weight", CNN_F64, 2, 3, 8, 0, 0, w3d), T("3.bias", CNN_F64, 1, 3, 0, 0, 0, b3d)};
    save("weights_f64.safetensors", wd, 4, NULL, 0);

    /* A checkpoint: the weights and Adam's state, with cnn train's metadata. */
    cnn_tensor ck[12];
    memcpy(ck, weights, sizeof weights);
    static char names[8][48];
    for (int i = 0; i < 8; i++) {
        ck[4 + i] = weights[i / 2];
        snprintf(names[i], sizeof names[i], "optim.%s.%s", weights[i / 2].name, i % 2 ? "exp_avg_sq" : "exp_avg");
        ck[4 + i].name = names[i];
    }
    const char *ckmeta[] = {"format", "cnn-checkpoint-1", "model", "input 1 4 4\nconv2d out_channels=2 kernel_size=3\n",
                            "epoch", "1", "epoch_step", "3", "step", "11", "optimizer", "adam", "lr", "0.001"};
    save("checkpoint.safetensors", ck, 12, ckmeta, 7);

    /* A data set, and one tensor of every dtype. */
    float x[2 * 16];
    for (int i = 0; i < 32; i++) x[i] = (float)i / 32.0f;
    int64_t y[2] = {0, 2};
    const cnn_tensor set[2] = {T("input", CNN_F32, 4, 2, 1, 4, 4, x), T("target", CNN_I64, 1, 2, 0, 0, 0, y)};
    save("dataset.safetensors", set, 2, NULL, 0);
    unsigned char bytes[16];
    for (int i = 0; i < 16; i++) bytes[i] = (unsigned char)(i * 37);
    const cnn_tensor dts[10] = {
        T("u8", CNN_U8, 1, 3, 0, 0, 0, bytes),   T("i8", CNN_I8, 2, 1, 2, 0, 0, bytes),
        T("bool", CNN_BOOL, 0, 0, 0, 0, 0, bytes), T("i16", CNN_I16, 1, 2, 0, 0, 0, bytes),
        T("f16", CNN_F16, 1, 1, 0, 0, 0, bytes), T("bf16", CNN_BF16, 1, 1, 0, 0, 0, bytes),
        T("i32", CNN_I32, 1, 2, 0, 0, 0, bytes), T("f32", CNN_F32, 1, 1, 0, 0, 0, x),
        T("i64", CNN_I64, 1, 1, 0, 0, 0, y),    T("f64", CNN_F64, 1, 1, 0, 0, 0, w0d)};
    save("dtypes.safetensors", dts, 10, NULL, 0);
    const cnn_tensor empty[1] = {T("nothing", CNN_F32, 2, 0, 3, 0, 0, x)};
    save("zero_size.safetensors", empty, 1, NULL, 0);
    save("no_tensors.safetensors", empty, 0, NULL, 0);
    float nan_w[18];
    memcpy(nan_w, w0, sizeof nan_w);
    nan_w[5] = 0.0f / 0.0f;
    cnn_tensor bad[4];
    memcpy(bad, weights, sizeof bad);
    bad[0].data = nan_w;
    save("nan_weights.safetensors", bad, 4, NULL, 0);

    size_t len;
    const unsigned char *tw = slurp("tests/data/torch_written.safetensors", &len);
    put("safetensors", "torch_written.safetensors", tw, len);

    /* Misaligned: a header whose length is not a multiple of 8, so the F32 data is moved. */
    craft("misaligned.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0,
          "\0\0\x80?\0\0\0@", 8);
    /* Broken files. */
    const char *one = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    craft("err_truncated.safetensors", one, 0, "1234", 4);
    craft("err_header_past_file.safetensors", one, 1000, "12345678", 8);
    craft("err_header_over_limit.safetensors", "{}", (uint64_t)1 << 40, "", 0);
    craft("err_overlap.safetensors",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 0, "123456", 6);
    craft("err_gap.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 0, "1234", 4);
    craft("err_json.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],", 0, "", 0);
    craft("err_duplicate.safetensors",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 0, "12", 2);
    craft("err_metadata.safetensors", "{\"__metadata__\":{\"k\":3}}", 0, "", 0);
    craft("err_dtype.safetensors", "{\"a\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 0, "12", 2);
    craft("err_shape_overflow.safetensors",
          "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, "12345678", 8);
    craft("err_huge_shape.safetensors",
          "{\"x\":{\"dtype\":\"F32\",\"shape\":[274877906944],\"data_offsets\":[0,1099511627776]}}", 0, "12345678",
          8);
    put("safetensors", "err_short.safetensors", "\x02\0\0\0", 4);
}

/* ---- IDX ----------------------------------------------------------------------------------- */

/* An IDX file in buf: magic 00 00 type nd, the dims, then n data bytes. Returns its length. */
static size_t idx(unsigned char *buf, int type, int nd, const uint32_t *dims, size_t n) {
    buf[0] = 0, buf[1] = 0, buf[2] = (unsigned char)type, buf[3] = (unsigned char)nd;
    for (int i = 0; i < nd; i++)
        for (int b = 0; b < 4; b++) buf[4 + 4 * i + b] = (unsigned char)(dims[i] >> (24 - 8 * b));
    for (size_t i = 0; i < n; i++) buf[4 + 4 * nd + i] = (unsigned char)(i * 29 + 7);
    return 4 + 4 * (size_t)nd + n;
}

static void idx_files(const char *t, int gz) {
    unsigned char buf[1024];
    struct {
        const char *name;
        int type, nd;
        uint32_t dims[5];
        size_t n;
    } f[] = {
        {"labels", 8, 1, {5}, 5},           {"images", 8, 3, {2, 4, 4}, 32}, {"nchw", 8, 4, {1, 3, 2, 2}, 12},
        {"empty", 8, 2, {0, 5}, 0},          {"truncated", 8, 3, {60000, 28, 28}, 20}, {"extra", 8, 1, {3}, 7},
        {"float", 0x0D, 1, {2}, 8},          {"five_dims", 8, 5, {1, 1, 1, 1, 1}, 1},
        {"huge", 8, 4, {65535, 65535, 65535, 65535}, 4},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        const size_t len = idx(buf, f[i].type, f[i].nd, f[i].dims, f[i].n);
        char name[64];
        snprintf(name, sizeof name, "%s%s", f[i].name, gz ? ".gz" : "");
        if (gz)
            put_gz(t, name, buf, len, 0);
        else
            put(t, name, buf, len);
    }
    if (!gz) {
        put(t, "bad_magic", "\x01\x00\x08\x01\x00\x00\x00\x00", 8);
        put(t, "gzip_magic", "\x1f\x8b\x08\x00\x00\x00\x00\x00", 8);
        put(t, "short_header", "\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", 10);
        return;
    }
    /* Two gzip members, a stream cut short, and bytes that are not gzip at all (zlib reads them as
     * they are). */
    const uint32_t d[3] = {3, 5, 5};
    const size_t len = idx(buf, 8, 3, d, 75);
    put_gz(t, "two_members.gz", buf, len, 40);
    put_gz(t, "cut.gz", buf, len, 0);
    size_t glen;
    unsigned char *g = slurp(at(t, "cut.gz"), &glen);
    put(t, "cut.gz", g, glen / 2);
    put(t, "not_gzip.gz", buf, len);
}

/* ---- CIFAR-10 ------------------------------------------------------------------------------ */

static void cifar(void) {
    static unsigned char buf[2 * 3073];
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (unsigned char)(i * 13);
    buf[0] = 3;
    put("cifar", "one_record.bin", buf, 3073);
    buf[0] = 0, buf[3073] = 9;
    put("cifar", "two_records.bin", buf, 2 * 3073);
    put("cifar", "empty.bin", buf, 0);
    buf[3073] = 10;
    put("cifar", "err_label.bin", buf, 2 * 3073);
    put("cifar", "err_partial.bin", buf, 3073 + 100);
}

/* ---- images -------------------------------------------------------------------------------- */

/* Appends the selector byte that the image target reads to choose the output size. */
static void put_image(const char *name, const unsigned char *buf, size_t len, unsigned char sel) {
    static unsigned char tmp[1 << 16];
    if (len + 1 > sizeof tmp) die(name);
    memcpy(tmp, buf, len);
    tmp[len] = sel;
    put("image", name, tmp, len + 1);
}

static void put_image_file(const char *name, unsigned char sel) {
    size_t len;
    unsigned char *b = slurp(at("image", name), &len);
    static unsigned char copy[1 << 16];
    memcpy(copy, b, len);
    put_image(name, copy, len, sel);
}

static void be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Appends a PNG chunk to buf at *len. */
static void chunk(unsigned char *buf, size_t *len, const char *type, const unsigned char *data, uint32_t n) {
    be32(buf + *len, n);
    memcpy(buf + *len + 4, type, 4);
    if (n) memcpy(buf + *len + 8, data, n);
    be32(buf + *len + 8 + n, (uint32_t)crc32(0, buf + *len + 4, 4 + n));
    *len += 12 + n;
}

/* A PNG of w×h at `depth` bits and `color` type, whose scanlines (filter byte 0) are `raw`; with a
 * palette of `plte` entries when plte > 0. */
static void png(const char *name, int w, int h, int depth, int color, const unsigned char *raw, size_t raw_len,
                int plte, unsigned char sel) {
    unsigned char buf[8192], ihdr[13], z[4096];
    size_t len = 8;
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    be32(ihdr, (uint32_t)w), be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = (unsigned char)depth, ihdr[9] = (unsigned char)color, ihdr[10] = ihdr[11] = ihdr[12] = 0;
    chunk(buf, &len, "IHDR", ihdr, 13);
    if (plte) {
        unsigned char pal[3 * 16];
        for (int i = 0; i < 3 * plte; i++) pal[i] = (unsigned char)(i * 40);
        chunk(buf, &len, "PLTE", pal, (uint32_t)(3 * plte));
        unsigned char trns[2] = {0, 128};
        chunk(buf, &len, "tRNS", trns, 2);
    }
    uLongf zlen = sizeof z;
    if (compress2(z, &zlen, raw, raw_len, 9) != Z_OK) die(name);
    chunk(buf, &len, "IDAT", z, (uint32_t)zlen);
    chunk(buf, &len, "IEND", NULL, 0);
    put_image(name, buf, len, sel);
}

static void images(void) {
    unsigned char px[16 * 16 * 4];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (unsigned char)(i * 31 + i / 7);
    stbi_write_png(at("image", "grey.png"), 4, 4, 1, px, 4);
    put_image_file("grey.png", 0);
    stbi_write_png(at("image", "rgb.png"), 5, 3, 3, px, 15);
    put_image_file("rgb.png", 1);
    stbi_write_png(at("image", "rgba.png"), 2, 2, 4, px, 8);
    put_image_file("rgba.png", 2);
    stbi_write_png(at("image", "grey_alpha.png"), 3, 2, 2, px, 6);
    put_image_file("grey_alpha.png", 3);
    stbi_write_bmp(at("image", "rgb.bmp"), 3, 2, 3, px);
    put_image_file("rgb.bmp", 4);
    stbi_write_bmp(at("image", "rgba.bmp"), 2, 2, 4, px);
    put_image_file("rgba.bmp", 5);
    stbi_write_jpg(at("image", "grey.jpg"), 8, 8, 1, px, 90);
    put_image_file("grey.jpg", 6);
    stbi_write_jpg(at("image", "rgb.jpg"), 16, 16, 3, px, 75);
    put_image_file("rgb.jpg", 7);

    /* Hand-made PNGs: 16-bit grey, a 4-bit palette with transparency, 1-bit grey. */
    unsigned char raw[64];
    memset(raw, 0, sizeof raw);
    for (int y = 0; y < 2; y++)
        for (int i = 0; i < 6; i++) raw[y * 7 + 1 + i] = (unsigned char)(y * 90 + i * 41);
    png("grey16.png", 3, 2, 16, 0, raw, 14, 0, 0);
    for (int y = 0; y < 3; y++) raw[y * 3] = 0, raw[y * 3 + 1] = 0x12, raw[y * 3 + 2] = 0x30;
    png("palette4.png", 3, 3, 4, 3, raw, 9, 4, 1);
    for (int y = 0; y < 4; y++) raw[y * 2] = 0, raw[y * 2 + 1] = (unsigned char)(0xA5 << y);
    png("grey1.png", 8, 4, 1, 0, raw, 8, 0, 2);

    /* netpbm, binary and ASCII. */
    static const unsigned char p5[] = "P5\n3 2\n255\n\x00\x40\x80\xc0\xff\x10";
    put_image("grey.pgm", p5, sizeof p5 - 1, 3);
    static const unsigned char p5w[] = "P5 2 1 65535 \x12\x34\xff\xff";
    put_image("grey16.pgm", p5w, sizeof p5w - 1, 4);
    static const unsigned char p6[] = "P6\n2 2\n255\n\xff\x00\x00\x00\xff\x00\x00\x00\xff\x80\x80\x80";
    put_image("rgb.ppm", p6, sizeof p6 - 1, 5);
    static const char p2[] = "P2\n# a comment\n3 2\n15\n0 3 7\n9 12 15\n";
    put_image("ascii.pgm", (const unsigned char *)p2, sizeof p2 - 1, 6);
    static const char p3[] = "P3 2 1 255  255 0 0   0 0 255\n";
    put_image("ascii.ppm", (const unsigned char *)p3, sizeof p3 - 1, 7);

    /* Broken: a PNG cut short, a PNG that claims 100000×100000, an ASCII value above maxval. */
    size_t len;
    unsigned char *b = slurp(at("image", "rgb.png"), &len);
    static unsigned char copy[1 << 16];
    memcpy(copy, b, len);
    put_image("err_cut.png", copy, len / 2, 0);
    be32(copy + 16, 100000), be32(copy + 20, 100000);
    be32(copy + 29, (uint32_t)crc32(0, copy + 12, 17));
    put_image("err_huge.png", copy, len - 1, 1);
    static const char bad[] = "P2 2 1 10 3 11\n";
    put_image("err_maxval.pgm", (const unsigned char *)bad, sizeof bad - 1, 2);
    put_image("err_bmp_header.bmp", (const unsigned char *)"BM\x10\0\0\0", 6, 3);
}

/* ---- matrices ------------------------------------------------------------------------------ */

static void matrices(void) {
    static const char *const m[][2] = {
        {"square", "1 2 3; 4 5 6; 7 8 9"},
        {"commas_newlines", "1,2\n3,4\n"},
        {"signs_exponents", "\xe2\x88\x92" "1.5e3 2.5E+2; +.5 -5."},
        {"stack", "1 2; 3 4 | 5 6; 7 8"},
        {"empty_rows", ";;1 2;;\n;3 4;"},
        {"err_ragged", "1 2; 3"},
        {"err_word", "1 x 3"},
        {"err_overflow", "1e400"},
        {"err_hex", "0x10 nan inf"},
        {"err_stack_shapes", "1 2 | 3; 4"},
        {"err_empty", ""},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) put_text("matrix", m[i][0], m[i][1]);
}

/* ---- checkpoints (fuzz_checkpoint) ---------------------------------------------------------- */

/* A checkpoint of the fuzz target's net after `steps` steps of `kind`, with the metadata cnn train
 * writes, and `n_edits` pairs of `edits` replacing (or, with a NULL value, removing) keys. */
static void checkpoint(const char *name, cnn_optim_kind kind, int steps, const char *const *edits, int n_edits) {
    cnn_net *net = NULL;
    cnn_optim *opt = NULL;
    cnn_optim_config cfg = cnn_optim_defaults(kind, 0.01);
    if (kind == CNN_OPTIM_SGD) cfg.momentum = 0.9;   /* a momentum buffer per parameter */
    if (cnn_net_parse("input 1 4 4\nconv2d out_channels=2 kernel_size=3\nrelu\nflatten\nlinear out_features=3\n",
                      &net) || cnn_net_init(net, 1) || cnn_optim_create(net, &cfg, &opt))
        die(cnn_last_error());
    for (int i = 0; i < steps; i++) {
        for (int p = 0; p < cnn_net_param_count(net); p++) {
            const cnn_param prm = cnn_net_param(net, p);
            for (int64_t j = 0; j < prm.numel; j++) prm.grad[j] = (float)((j + i) % 5 - 2) / 8.0f;
        }
        cnn_optim_step(opt, 0.01);
    }
    const char *kv[2 * 40];
    int n = 0;
    const char *base[] = {"model", "input 1 4 4\nconv2d out_channels=2 kernel_size=3\nrelu\nflatten\nlinear out_features=3\n",
                          "data", "safetensors", "epoch", steps ? "1" : "0", "epoch_step", "0", "epoch_loss_sum", "0",
                          "epoch_correct", "0", "epoch_seconds", "0.5", "samples", "20", "epochs", "3",
                          "checkpoint_every", "0", "seed", "1", "shuffle", "1", "batch", "10",
                          "optimizer", kind == CNN_OPTIM_SGD ? "sgd" : kind == CNN_OPTIM_ADAM ? "adam" : "adamw",
                          "lr", "0.01", "momentum", kind == CNN_OPTIM_SGD ? "0.9" : "0", "nesterov", "0",
                          "weight_decay", "0", "betas", "0.9,0.999", "eps", "1e-08", "schedule", "constant",
                          "step_size", "10", "gamma", "0.1", "mean", "0.5,0.5,0.5", "std", "0.25,0.25,0.25"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i += 2) {
        const char *v = base[i + 1];
        for (int e = 0; e < n_edits; e++)
            if (!strcmp(base[i], edits[2 * e])) v = edits[2 * e + 1];
        if (v) kv[n++] = base[i], kv[n++] = v;
    }
    if (cnn_checkpoint_save(at("checkpoint", name), net, opt, kv, n / 2)) die(cnn_last_error());
    cnn_optim_free(opt);
    cnn_net_free(net);
}

static void checkpoints(void) {
    checkpoint("adam.safetensors", CNN_OPTIM_ADAM, 2, NULL, 0);
    checkpoint("adamw.safetensors", CNN_OPTIM_ADAMW, 1, NULL, 0);
    checkpoint("sgd_momentum.safetensors", CNN_OPTIM_SGD, 2, NULL, 0);
    checkpoint("fresh.safetensors", CNN_OPTIM_SGD, 0, NULL, 0);
    const char *mid[] = {"epoch_step", "1", "epoch_correct", "4", "epoch_loss_sum", "1.5"};
    checkpoint("mid_epoch.safetensors", CNN_OPTIM_ADAM, 2, mid, 3);
    const char *e1[] = {"lr", "nan"}, *e2[] = {"lr", "abc"}, *e3[] = {"optimizer", NULL}, *e4[] = {"epoch", "1"},
               *e5[] = {"epoch_correct", "1000"}, *e6[] = {"schedule", "linear"}, *e7[] = {"betas", "0.9,1"},
               *e8[] = {"batch", "0"}, *e9[] = {"epoch_step", "3", "epoch_correct", "0", "epoch_loss_sum", "1"};
    checkpoint("err_lr_nan.safetensors", CNN_OPTIM_ADAM, 2, e1, 1);
    checkpoint("err_lr_word.safetensors", CNN_OPTIM_ADAM, 2, e2, 1);
    checkpoint("err_no_optimizer.safetensors", CNN_OPTIM_ADAM, 2, e3, 1);
    checkpoint("err_step_zero.safetensors", CNN_OPTIM_ADAM, 0, e4, 1);
    checkpoint("err_correct.safetensors", CNN_OPTIM_ADAM, 2, e5, 1);
    checkpoint("err_schedule.safetensors", CNN_OPTIM_ADAM, 2, e6, 1);
    checkpoint("err_betas.safetensors", CNN_OPTIM_ADAM, 2, e7, 1);
    checkpoint("err_batch.safetensors", CNN_OPTIM_ADAM, 2, e8, 1);
    checkpoint("err_epoch_step.safetensors", CNN_OPTIM_ADAM, 2, e9, 3);
    /* The step count of the library's own key, past every limit: the raw file, edited. */
    const char *huge[] = {"format", "cnn-checkpoint-1", "step", "9223372036854775807", "epoch", "1"};
    static float w = 1.0f;
    const cnn_tensor t[1] = {{.name = "optim.0.weight.exp_avg", .dtype = CNN_F32, .ndim = 1, .shape = {1}, .data = &w}};
    if (cnn_st_save(at("checkpoint", "err_step_max.safetensors"), t, 1, huge, 3)) die(cnn_last_error());
}

/* ---- explain network's model path (fuzz_explain_network) ------------------------------------ */

static void explain_models(void) {
    const char *t = "explain_network";
    put_text(t, "small.cnn", "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\n"
                             "maxpool2d kernel_size=2\nflatten\nlinear out_features=3\n");
    put_text(t, "graph.cnn", "input 3 8 8\nConv2d out_channels=4 kernel_size=3 padding=1 bias=false name=conv1\n"
                             "BatchNorm2d name=bn1\nReLU name=stem\nconv2d out_channels=4 kernel_size=3 padding=1 "
                             "bias=false\nbatchnorm2d\nadd from=stem\nrelu name=block\n"
                             "adaptiveavgpool2d output_size=1\nflatten\ndropout p=0.25\nlinear out_features=3 name=fc\n");
    put_text(t, "concat.cnn", "input 2 6 6\nconv2d out_channels=3 kernel_size=1 name=a\nsilu name=b\n"
                              "gelu approximate=tanh from=a name=c\nconcat from=a,b,c\n"
                              "convtranspose2d out_channels=2 kernel_size=3 stride=2 output_padding=1\n"
                              "adaptivemaxpool2d output_size=2,3\nsoftmax\nflatten\nbatchnorm1d affine=false\n");
    put_text(t, "options.cnn", "input 2 7 5\nconv2d out_channels=4 kernel_size=3,2 stride=2,1 padding=1,0 "
                               "dilation=1,2 groups=2 bias=false\nleakyrelu negative_slope=0.2\n"
                               "avgpool2d kernel_size=2 stride=1 padding=1 ceil_mode=true count_include_pad=false\n"
                               "sigmoid\nflatten\nlinear out_features=2 bias=false\ntanh\n");
    put_text(t, "comments.cnn", "# a comment\n\ninput 1 4 4   # C H W\n  relu  \n\tflatten\x0b\n");
    /* Lines longer than the 1099 characters explain network once cut them at. */
    static char long_line[8192];
    char spaces[2001];
    memset(spaces, ' ', 2000), spaces[2000] = '\0';
    snprintf(long_line, sizeof long_line, "input 1 5 5\nconv2d out_channels=2 kernel_size=3%spadding=1\nrelu "
             "name=r\nmaxpool2d kernel_size=2 from=r\nflatten\nlinear%sout_features=3 # %s\n", spaces, spaces, spaces);
    put_text(t, "long_lines.cnn", long_line);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR (run from the repository root)\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);
    models();
    safetensors();
    idx_files("idx", 0);
    idx_files("idx_gz", 1);
    cifar();
    images();
    matrices();
    checkpoints();
    explain_models();
    return 0;
}
