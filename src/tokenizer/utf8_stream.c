/* Streaming UTF-8 validation: complete characters pass through, an
 * incomplete one is held back, and every maximal invalid subpart (a lead
 * byte plus the continuation bytes that fit it, or one stray byte) becomes
 * U+FFFD, as the Unicode standard recommends and Python's "replace" does. */
#include <string.h>

#include "tokenizer/tokenizer.h"

static const char REPLACEMENT[3] = {'\xEF', '\xBF', '\xBD'};

void tok_utf8_stream_init(tok_utf8_stream *s) { *s = (tok_utf8_stream){0}; }

/* Sequence length announced by a lead byte, 0 if it cannot start one. */
static uint8_t lead_len(uint8_t b)
{
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Whether b may follow the pending bytes (the second byte's range depends
 * on the lead: no overlongs, surrogates or code points above U+10FFFF). */
static bool continues(const tok_utf8_stream *s, uint8_t b)
{
    uint8_t lo = 0x80, hi = 0xBF;
    if (s->n_pend == 1) {
        switch (s->pend[0]) {
        case 0xE0: lo = 0xA0; break;
        case 0xED: hi = 0x9F; break;
        case 0xF0: lo = 0x90; break;
        case 0xF4: hi = 0x8F; break;
        default: break;
        }
    }
    return b >= lo && b <= hi;
}

static size_t replacement(char *out)
{
    memcpy(out, REPLACEMENT, 3);
    return 3;
}

static size_t feed_byte(tok_utf8_stream *s, uint8_t b, char *out)
{
    size_t k = 0;
    if (s->n_pend > 0) {
        if (continues(s, b)) {
            s->pend[s->n_pend++] = b;
            if (s->n_pend < s->need) return 0;
            memcpy(out, s->pend, s->n_pend);
            k = s->n_pend;
            s->n_pend = 0;
            return k;
        }
        k = replacement(out); /* the pending bytes were a maximal invalid subpart */
        s->n_pend = 0;
    }
    uint8_t need = lead_len(b);
    if (need == 1) out[k++] = (char)b;
    else if (need == 0) k += replacement(out + k);
    else {
        s->pend[0] = b;
        s->n_pend = 1;
        s->need = need;
    }
    return k;
}

size_t tok_utf8_stream_feed(tok_utf8_stream *s, const char *in, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += feed_byte(s, (uint8_t)in[i], out + k);
    return k;
}

size_t tok_utf8_stream_flush(tok_utf8_stream *s, char *out)
{
    if (s->n_pend == 0) return 0;
    s->n_pend = 0;
    return replacement(out);
}
