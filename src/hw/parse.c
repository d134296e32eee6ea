/* Strict parsers for numbers and text read from outside. */
#include <ctype.h>
#include <string.h>

#include "hw/hw_internal.h"

char *hw_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

bool hw_parse_u64_prefix(const char *s, uint64_t *out, const char **end)
{
    while (*s == ' ' || *s == '\t') s++;
    if (!isdigit((unsigned char)*s)) return false;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
        s++;
    }
    *out = v;
    if (end) *end = s;
    return true;
}

bool hw_parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (!hw_parse_u64_prefix(s, &v, &end)) return false;
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
    if (*end) return false;
    *out = v;
    return true;
}

bool hw_parse_hex32(const char *s, uint32_t *out)
{
    while (*s == ' ' || *s == '\t') s++;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
    if (!isxdigit((unsigned char)*s)) return false;
    uint64_t v = 0;
    int digits = 0;
    for (; isxdigit((unsigned char)*s); s++) {
        if (++digits > 8) return false;
        int c = tolower((unsigned char)*s);
        v = v * 16 + (unsigned)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    if (*s) return false;
    *out = (uint32_t)v;
    return true;
}

bool hw_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

bool hw_parse_size_suffix(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (!hw_parse_u64_prefix(s, &v, &end)) return false;
    while (*end == ' ') end++;
    uint64_t mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1ull << 10; end++; break;
    case 'M': mult = 1ull << 20; end++; break;
    case 'G': mult = 1ull << 30; end++; break;
    default: break;
    }
    if (mult > 1 && *end == 'i') end++;
    if (mult > 1 && (*end == 'B' || *end == 'b')) end++;
    while (*end == ' ' || *end == '\n' || *end == '\t') end++;
    if (*end) return false;
    return hw_mul_u64(v, mult, out);
}

void hw_copy_clean(char *dst, size_t len, const char *src)
{
    if (!len) return;
    while (*src == ' ' || *src == '\t' || *src == '\n' || *src == '\r') src++;
    size_t n = 0;
    for (; *src && n + 1 < len; src++)
        dst[n++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
    while (n && dst[n - 1] == ' ') n--;
    dst[n] = '\0';
}

bool hw_copy_str(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (!len) return false;
    if (n >= len) {
        memcpy(dst, src, len - 1);
        dst[len - 1] = '\0';
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}
