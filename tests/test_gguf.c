/* GGUF reader and writer: real fixtures, round trips, and hostile input. */
#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/arena.h"
#include "gguf/gguf.h"
#include "gguf_helpers.h"
#include "test.h"

static gguf_file *open_ok(const char *path)
{
    gguf_file *f = NULL;
    strata_error e;
    if (gguf_open(path, &f, &e)) test_fail(__FILE__, __LINE__, "gguf_open", " %s", e.message);
    return f;
}

TEST(test_gguf_every_fixture_parses)
{
    const char *dirs[] = {"", "vocab", "arch"};
    int parsed = 0;
    for (size_t d = 0; d < 3; d++) {
        const char *dir = test_fixture(dirs[d]);
        if (!dir) return;
        char dpath[1024];
        snprintf(dpath, sizeof dpath, "%s", dir);
        DIR *dh = opendir(dpath);
        REQUIRE(dh != NULL, " %s", dpath);
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t n = strlen(de->d_name);
            if (n < 5 || strcmp(de->d_name + n - 5, ".gguf")) continue;
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", dpath, de->d_name);
            gguf_file *f = open_ok(p);
            CHECK(f && f->version == 3, " %s", p);
            if (f) parsed++;
            gguf_close(f);
        }
        closedir(dh);
    }
    CHECK(parsed >= 25, " only %d fixture files parsed", parsed);
}

TEST(test_gguf_stories260k_facts)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    gguf_file *f = open_ok(p);
    REQUIRE(f);
    gguf_str arch;
    uint64_t v;
    CHECK(f->n_tensors == 48);
    CHECK(gguf_get_str(f, "general.architecture", &arch) && !strcmp(arch.ptr, "llama"));
    CHECK(gguf_get_u64(f, "llama.block_count", &v) && v == 5);
    CHECK(gguf_get_u64(f, "llama.embedding_length", &v) && v == 64);
    CHECK(gguf_get_u64(f, "llama.attention.head_count", &v) && v == 8);
    CHECK(gguf_get_u64(f, "llama.attention.head_count_kv", &v) && v == 4);
    gguf_array toks;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", &toks) && toks.type == GGUF_TYPE_STRING && toks.n == 512);
    CHECK(f->alignment == 32);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    REQUIRE(t);
    CHECK(t->ne[0] == 172 && t->ne[1] == 64 && t->type == GGML_TYPE_F32 && t->n_bytes == 172 * 64 * 4);
    CHECK(t->file_offset % 32 == 0);
    /* Header only: the 1.1 MB file is parsed from its first 64 KiB. */
    CHECK(f->bytes_read <= 65536, " read %" PRIu64, f->bytes_read);
    gguf_close(f);
}

/* Each synth fixture holds the type its name promises: the pure ones in
 * every weight matrix but the output (llama-quantize keeps the output at
 * Q6_K or better), the _m mixes as their main type. */
TEST(test_gguf_synth_fixture_types)
{
    static const struct { const char *file, *type; } cases[] = {
        {"synth-f16.gguf", "F16"}, {"synth-bf16.gguf", "BF16"}, {"synth-q8_0.gguf", "Q8_0"},
        {"synth-q4_0.gguf", "Q4_0"}, {"synth-q4_1.gguf", "Q4_1"}, {"synth-q5_0.gguf", "Q5_0"},
        {"synth-q5_1.gguf", "Q5_1"}, {"synth-q2_k.gguf", "Q2_K"}, {"synth-q3_k_m.gguf", "Q3_K"},
        {"synth-q4_k_m.gguf", "Q4_K"}, {"synth-q5_k_m.gguf", "Q5_K"}, {"synth-q6_k.gguf", "Q6_K"},
        {"synth-iq4_nl.gguf", "IQ4_NL"}, {"synth-iq4_xs.gguf", "IQ4_XS"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = test_fixture(cases[i].file);
        if (!p) return;
        gguf_file *f = open_ok(p);
        REQUIRE(f);
        uint64_t matrices = 0, of_type = 0;
        for (uint64_t t = 0; t < f->n_tensors; t++) {
            if (f->tensors[t].n_dims < 2) continue;
            matrices++;
            of_type += !strcmp(ggml_type_name(f->tensors[t].type), cases[i].type);
        }
        CHECK(matrices == 30 && of_type * 2 > matrices, " %s: %" PRIu64 " of %" PRIu64 " matrices are %s",
              cases[i].file, of_type, matrices, cases[i].type);
        gguf_close(f);
    }
}

static void check_sample_metadata(const gguf_file *f)
{
    const gguf_kv *kv;
    CHECK((kv = gguf_find(f, "t.u8")) && kv->value.type == GGUF_TYPE_U8 && kv->value.u == 200);
    CHECK((kv = gguf_find(f, "t.i8")) && kv->value.type == GGUF_TYPE_I8 && kv->value.i == -100);
    CHECK((kv = gguf_find(f, "t.u16")) && kv->value.type == GGUF_TYPE_U16 && kv->value.u == 65000);
    CHECK((kv = gguf_find(f, "t.i16")) && kv->value.type == GGUF_TYPE_I16 && kv->value.i == -32000);
    CHECK((kv = gguf_find(f, "t.u32")) && kv->value.type == GGUF_TYPE_U32 && kv->value.u == 4000000000u);
    CHECK((kv = gguf_find(f, "t.i32")) && kv->value.type == GGUF_TYPE_I32 && kv->value.i == -2000000000);
    CHECK((kv = gguf_find(f, "t.f32")) && kv->value.type == GGUF_TYPE_F32 && kv->value.f == 0.25);
    CHECK((kv = gguf_find(f, "t.bool")) && kv->value.type == GGUF_TYPE_BOOL && kv->value.u == 1);
    CHECK((kv = gguf_find(f, "t.u64")) && kv->value.type == GGUF_TYPE_U64 && kv->value.u == 1ull << 60);
    CHECK((kv = gguf_find(f, "t.i64")) && kv->value.type == GGUF_TYPE_I64 && kv->value.i == -(1ll << 60));
    CHECK((kv = gguf_find(f, "t.f64")) && kv->value.type == GGUF_TYPE_F64 && kv->value.f == 1e300);
    gguf_array a;
    REQUIRE(gguf_get_arr(f, "t.strs", &a) && a.type == GGUF_TYPE_STRING && a.n == 3);
    const gguf_str *s = a.data;
    CHECK(!strcmp(s[0].ptr, "alpha") && s[1].len == 0 && !strcmp(s[2].ptr, "gamma\xe2\x96\x81"));
    uint64_t u;
    double d;
    REQUIRE(gguf_get_arr(f, "t.ints", &a) && a.type == GGUF_TYPE_I32 && a.n == 3);
    CHECK(!gguf_array_u64(&a, 0, &u) && gguf_array_f64(&a, 0, &d) && d == -1.0);
    CHECK(gguf_array_u64(&a, 2, &u) && u == 3 && !gguf_array_u64(&a, 3, &u));
    REQUIRE(gguf_get_arr(f, "t.nested", &a) && a.type == GGUF_TYPE_ARRAY && a.n == 2);
    const gguf_value *inner = a.data;
    CHECK(inner[0].arr.type == GGUF_TYPE_I32 && inner[0].arr.n == 3 && inner[1].arr.n == 1);
    CHECK(((const int32_t *)inner[0].arr.data)[2] == 3);
}

TEST(test_gguf_writer_round_trip_all_value_types)
{
    for (uint32_t version = 2; version <= 3; version++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/sample-v%u.gguf", test_tmpdir(), version);
        strata_error e;
        REQUIRE(write_sample_gguf(path, version, &e) == STRATA_OK, " %s", e.message);
        CHECK(access(path, F_OK) == 0);
        gguf_file *f = open_ok(path);
        REQUIRE(f);
        CHECK(f->version == version && f->n_tensors == 3 && f->n_kv == 15);
        check_sample_metadata(f);
        const gguf_tensor *c = gguf_find_tensor(f, "c.weight");
        REQUIRE(c);
        CHECK(c->type == GGML_TYPE_Q8_0 && c->n_bytes == 136 && c->file_offset % 32 == 0);
        /* tensor bytes land at their offsets, padding between them */
        size_t size;
        uint8_t *raw = read_whole_file(path, &size);
        REQUIRE(raw);
        CHECK(size == c->file_offset + 136, " file %zu, c ends at %" PRIu64, size, c->file_offset + 136);
        CHECK(raw[c->file_offset] == 1 && raw[c->file_offset + 135] == (uint8_t)(135 * 7 + 1));
        const gguf_tensor *b = gguf_find_tensor(f, "b.weight");
        CHECK(b && raw[b->file_offset + 19] == (uint8_t)(19 * 7 + 1));
        free(raw);
        gguf_close(f);
    }
}

TEST(test_gguf_writer_leaves_no_partial_file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/partial.gguf", test_tmpdir());
    gguf_writer *w = gguf_writer_new();
    uint64_t ne[1] = {64};
    strata_error e;
    REQUIRE(gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne, &e) == STRATA_OK);
    CHECK(gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne, &e) != STRATA_OK, " duplicate accepted");
    CHECK(gguf_writer_add_tensor(w, "y", GGML_TYPE_Q4_K, 1, ne, &e) != STRATA_OK, " Q4_K row of 64 accepted");
    REQUIRE(gguf_writer_open(w, path, &e) == STRATA_OK);
    REQUIRE(gguf_writer_write(w, ne, 8, &e) == STRATA_OK);
    CHECK(gguf_writer_close(w, &e) != STRATA_OK && strstr(e.message, "'x'"), " %s", e.message);
    gguf_writer_free(w);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0, " partial output left behind");
}

/* ---- hostile input ---- */

static strata_status parse_bytes(const uint8_t *data, size_t size, strata_error *e)
{
    gguf_file *f = NULL;
    strata_status st = gguf_parse_memory(data, size, "mem.gguf", &f, e);
    gguf_close(f);
    return st;
}

/* Parsing may allocate at most a small multiple of the input (strings and
 * arrays are copied, pointers added) plus fixed overhead. */
#define ALLOC_BOUND(size) (4 * (size) + 256 * 1024)

TEST(test_gguf_truncated_at_every_header_offset)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/sample.gguf", test_tmpdir());
    strata_error e;
    REQUIRE(write_sample_gguf(path, 3, &e) == STRATA_OK);
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    REQUIRE(raw);
    gguf_file *f = NULL;
    REQUIRE(gguf_parse_memory(raw, size, "mem", &f, &e) == STRATA_OK, " %s", e.message);
    uint64_t header_end = f->splits[0].data_offset;
    gguf_close(f);
    int errors = 0;
    for (size_t cut = 0; cut < size; cut++) {
        size_t before = arena_total_allocated();
        strata_status st = parse_bytes(raw, cut, &e);
        CHECK(arena_total_allocated() - before <= ALLOC_BOUND(cut));
        if (st) {
            errors++;
            CHECK(strstr(e.message, "mem.gguf: offset ") == e.message, " message '%s'", e.message);
        }
    }
    /* Every cut inside the header or the tensor data is detected. */
    CHECK(errors == (int)size, " %d of %zu truncations rejected (header ends at %" PRIu64 ")", errors, size,
          header_end);
    free(raw);
}

TEST(test_gguf_random_corruptions)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/sample.gguf", test_tmpdir());
    strata_error e;
    REQUIRE(write_sample_gguf(path, 3, &e) == STRATA_OK);
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    REQUIRE(raw);
    uint8_t *copy = malloc(size);
    uint64_t x = 12345;
    int rejected = 0;
    for (int iter = 0; iter < 1000; iter++) {
        memcpy(copy, raw, size);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(x >> 33) % size;
            copy[pos] = (uint8_t)(x >> 17);
        }
        size_t before = arena_total_allocated();
        rejected += parse_bytes(copy, size, &e) != STRATA_OK;
        CHECK(arena_total_allocated() - before <= ALLOC_BOUND(size));
    }
    /* Most corruptions land in the header and are caught; some are valid. */
    CHECK(rejected > 100, " only %d of 1000 corruptions rejected", rejected);
    free(copy);
    free(raw);
}

/* A hand-built header: magic, version, counts, then the given bytes. */
typedef struct hbuf {
    uint8_t b[4096];
    size_t n;
} hbuf;

static void h_raw(hbuf *h, const void *p, size_t n) { memcpy(h->b + h->n, p, n); h->n += n; }
static void h_u32(hbuf *h, uint32_t v) { h_raw(h, &v, 4); }
static void h_u64(hbuf *h, uint64_t v) { h_raw(h, &v, 8); }
static void h_str(hbuf *h, const char *s) { h_u64(h, strlen(s)); h_raw(h, s, strlen(s)); }
static void h_start(hbuf *h, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    h->n = 0;
    h_raw(h, "GGUF", 4);
    h_u32(h, version);
    h_u64(h, n_tensors);
    h_u64(h, n_kv);
}
/* One tensor info with up to 4 dims. */
static void h_tensor(hbuf *h, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    h_str(h, name);
    h_u32(h, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) h_u64(h, ne[i]);
    h_u32(h, type);
    h_u64(h, off);
}
static void h_pad_data(hbuf *h, size_t data_bytes)
{
    while (h->n % 32) h->b[h->n++] = 0;
    memset(h->b + h->n, 0, data_bytes);
    h->n += data_bytes;
}

static void expect_error(const hbuf *h, const char *fragment)
{
    strata_error e;
    size_t before = arena_total_allocated();
    strata_status st = parse_bytes(h->b, h->n, &e);
    CHECK(st != STRATA_OK, " accepted; expected '%s'", fragment);
    CHECK(st == STRATA_OK || strstr(e.message, fragment), " got '%s', expected '%s'", e.message, fragment);
    CHECK(arena_total_allocated() - before <= ALLOC_BOUND(h->n));
}

TEST(test_gguf_hand_made_bad_headers)
{
    hbuf h;
    h_start(&h, 3, 0, 0);
    memcpy(h.b, "GGML", 4);
    expect_error(&h, "bad magic");
    h_start(&h, 1, 0, 0);
    expect_error(&h, "version 1");
    h_start(&h, 4, 0, 0);
    expect_error(&h, "version 4");
    h_start(&h, 0x03000000, 0, 0);
    expect_error(&h, "big-endian");
    h_start(&h, 3, 1ull << 60, 0);
    expect_error(&h, "truncated (or corrupt): tensor count 1152921504606846976 needs");
    h_start(&h, 3, 0, UINT64_MAX);
    expect_error(&h, "truncated (or corrupt): metadata count 18446744073709551615 needs at least 18446744073709551615 bytes but only 0 remain");
    h_start(&h, 3, 0, 1);
    h_u64(&h, 1ull << 63);
    h_u64(&h, 0);
    h_u64(&h, 0);
    expect_error(&h, "truncated (or corrupt): metadata key length");
    h_start(&h, 3, 0, 1);
    h_str(&h, "k");
    h_u32(&h, 13);
    h_u64(&h, 0);
    expect_error(&h, "unknown value type");
    h_start(&h, 3, 0, 1);
    h_str(&h, "k");
    h_u32(&h, GGUF_TYPE_ARRAY);
    h_u32(&h, GGUF_TYPE_U32);
    h_u64(&h, 1ull << 62);
    expect_error(&h, "truncated (or corrupt): array length 4611686018427387904");
    h_start(&h, 3, 0, 1);
    h_str(&h, "k");
    h_u32(&h, GGUF_TYPE_ARRAY);
    for (int i = 0; i < 20; i++) { h_u32(&h, GGUF_TYPE_ARRAY); h_u64(&h, 1); }
    expect_error(&h, "nested deeper");
    h_start(&h, 3, 0, 2);
    h_str(&h, "k");
    h_u32(&h, GGUF_TYPE_U8);
    h_raw(&h, "\x01", 1);
    h_str(&h, "k");
    h_u32(&h, GGUF_TYPE_U8);
    h_raw(&h, "\x01", 1);
    expect_error(&h, "duplicate metadata key 'k'");
    h_start(&h, 3, 0, 1);
    h_str(&h, "general.alignment");
    h_u32(&h, GGUF_TYPE_U32);
    h_u32(&h, 48);
    expect_error(&h, "general.alignment");
}

TEST(test_gguf_hand_made_bad_tensors)
{
    hbuf h;
    uint64_t ne2[2] = {32, 2}, ne5[5] = {1, 1, 1, 1, 1}, big[2] = {1ull << 20, 1ull << 20}, zero[2] = {32, 0};
    char longname[80];
    memset(longname, 'x', 64);
    longname[64] = '\0';
    h_start(&h, 3, 1, 0);
    h_tensor(&h, longname, 2, ne2, GGML_TYPE_F32, 0);
    h_pad_data(&h, 256);
    expect_error(&h, "longer than 63 bytes");
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 5, ne5, GGML_TYPE_F32, 0);
    h_pad_data(&h, 64);
    expect_error(&h, "more than 4 dimensions");
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 2, zero, GGML_TYPE_F32, 0);
    expect_error(&h, "zero dimension");
    h_start(&h, 3, 1, 0);
    uint64_t four[4] = {1ull << 40, 1ull << 40, 1ull << 40, 1};
    h_tensor(&h, "t", 4, four, GGML_TYPE_F32, 0);
    expect_error(&h, "overflows");
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 2, big, GGML_TYPE_F32, 0);
    expect_error(&h, "truncated: tensor 't' data runs past the end");
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 2, ne2, 4, 0);
    h_pad_data(&h, 256);
    expect_error(&h, "unknown tensor type id 4");
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 2, ne2, 1000, 0);
    expect_error(&h, "unknown tensor type id 1000");
    uint64_t odd[2] = {33, 2};
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 2, odd, GGML_TYPE_Q8_0, 0);
    h_pad_data(&h, 256);
    expect_error(&h, "multiple of its type's block");
    h_start(&h, 3, 1, 0);
    h_tensor(&h, "t", 2, ne2, GGML_TYPE_F32, 16);
    h_pad_data(&h, 512);
    expect_error(&h, "not a multiple of general.alignment");
    h_start(&h, 3, 2, 0);
    h_tensor(&h, "t", 2, ne2, GGML_TYPE_F32, 0);
    h_tensor(&h, "t", 2, ne2, GGML_TYPE_F32, 256);
    h_pad_data(&h, 512);
    expect_error(&h, "duplicate tensor name 't'");
    h_start(&h, 3, 2, 0);
    h_tensor(&h, "a", 2, ne2, GGML_TYPE_F32, 0);
    h_tensor(&h, "b", 2, ne2, GGML_TYPE_F32, 224);
    h_pad_data(&h, 512);
    expect_error(&h, "overlaps");
    /* and the well-formed neighbour of these is accepted */
    h_start(&h, 3, 2, 0);
    h_tensor(&h, "a", 2, ne2, GGML_TYPE_F32, 0);
    h_tensor(&h, "b", 2, ne2, GGML_TYPE_F32, 256);
    h_pad_data(&h, 512);
    strata_error e;
    CHECK(parse_bytes(h.b, h.n, &e) == STRATA_OK, " %s", e.message);
}

TEST(test_gguf_type_table)
{
    const ggml_type_info *t = ggml_type_get(GGML_TYPE_Q4_K);
    CHECK(t && !strcmp(t->name, "Q4_K") && t->block_elems == 256 && t->block_bytes == 144);
    CHECK(ggml_type_get(4) == NULL && ggml_type_get(5) == NULL && ggml_type_get(31) == NULL &&
          ggml_type_get(GGML_TYPE_COUNT) == NULL);
    /* bits per weight of the published formats */
    CHECK(ggml_type_bpw(GGML_TYPE_Q4_0) == 4.5 && ggml_type_bpw(GGML_TYPE_Q8_0) == 8.5);
    CHECK(ggml_type_bpw(GGML_TYPE_Q6_K) == 6.5625 && ggml_type_bpw(GGML_TYPE_Q2_K) == 2.625);
    CHECK(ggml_type_bpw(GGML_TYPE_IQ4_XS) == 4.25 && ggml_type_bpw(GGML_TYPE_MXFP4) == 4.25);
    uint32_t id;
    CHECK(ggml_type_from_name("iq4_nl", &id) && id == GGML_TYPE_IQ4_NL && !ggml_type_from_name("Q4_2", &id));
    CHECK(ggml_row_bytes(GGML_TYPE_Q4_K, 4096) == 16 * 144 && ggml_row_bytes(GGML_TYPE_Q4_K, 100) == 0);
}
