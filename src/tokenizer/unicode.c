/* UTF-8 decoding and encoding, and the Unicode class of a code point. */
#include "tokenizer/tok_internal.h"

enum tok_uclass tok_uclass_of(uint32_t cp)
{
    size_t lo = 0, hi = tok_unicode_n_ranges;
    while (lo < hi) { /* first range with hi >= cp */
        size_t mid = lo + (hi - lo) / 2;
        if (tok_unicode_ranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < tok_unicode_n_ranges && tok_unicode_ranges[lo].lo <= cp)
        return (enum tok_uclass)tok_unicode_ranges[lo].cls;
    return TOK_UC_OTHER;
}

/* Lowest code point that needs a sequence of n bytes (overlong check). */
static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};

size_t tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char b = s[0];
    size_t len = b < 0x80 ? 1 : b < 0xC0 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 0;
    *cp = TOK_CP_INVALID;
    if (len == 0 || len > n) return 1;
    uint32_t c = len == 1 ? b : (uint32_t)(b & (0x7F >> len));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 1;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min_cp[len] || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) return 1;
    *cp = c;
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
