#include "cli/args.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the decimal number ("12", "1.5", ".5") at the start of s: digits
 * with at most one '.', no sign, exponent, hex, inf or nan; 0: none. */
static size_t decimal_len(const char *s, bool allow_point)
{
    size_t n = 0, digits = 0;
    bool point = false;
    for (; s[n]; n++) {
        if (isdigit((unsigned char)s[n])) digits++;
        else if (s[n] == '.' && allow_point && !point) point = true;
        else break;
    }
    return digits ? n : 0;
}

bool arg_u64(const char *cmd, const char *flag, const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
    size_t n = decimal_len(value, false);
    uint64_t v = 0;
    bool ok = n > 0 && !value[n] && n <= 20;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned d = (unsigned)(value[i] - '0');
        ok = v <= (UINT64_MAX - d) / 10;
        v = v * 10 + d;
    }
    if (!ok || v < min || v > max) {
        fprintf(stderr, "strata %s: %s '%s': expected an integer from %" PRIu64 " to %" PRIu64 "\n", cmd, flag, value,
                min, max);
        return false;
    }
    *out = v;
    return true;
}

bool arg_float(const char *cmd, const char *flag, const char *value, double min, double max, double *out)
{
    size_t n = decimal_len(value, true);
    double v = n && !value[n] ? strtod(value, NULL) : -1;
    if (!n || value[n] || v < min || v > max) {
        fprintf(stderr, "strata %s: %s '%s': expected a decimal number from %g to %g\n", cmd, flag, value, min, max);
        return false;
    }
    *out = v;
    return true;
}

/* The multiplier of a size suffix (K, M, G, T, optionally followed by i and/or
 * B); 1 for none; 0 for anything else. */
static double size_unit(const char *s)
{
    static const char units[] = "kmgt";
    const char *u = *s ? strchr(units, tolower((unsigned char)*s)) : NULL;
    if (!*s) return 1;
    if (!u) return 0;
    s++;
    if (*s == 'i' || *s == 'I') s++;
    if (*s == 'b' || *s == 'B') s++;
    if (*s) return 0;
    double m = 1024;
    for (const char *p = units; p < u; p++) m *= 1024;
    return m;
}

bool arg_size(const char *cmd, const char *flag, const char *value, uint64_t *out)
{
    size_t n = decimal_len(value, true);
    double mult = n ? size_unit(value + n) : 0;
    double v = mult ? strtod(value, NULL) * mult : 0;
    if (!mult || v >= 1.8e19) {
        fprintf(stderr, "strata %s: %s '%s': expected a size such as 1.5G, 512M or 2048K (decimal number, "
                        "binary units)\n", cmd, flag, value);
        return false;
    }
    if (v < ARG_SIZE_MIN) {
        fprintf(stderr, "strata %s: %s '%s': at least 1M (1 MiB)\n", cmd, flag, value);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

/* Levenshtein distance of a and b (at most 63 bytes each are compared). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, 63), lb = strnlen(b, 63), row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* Calls fn for each option name that starts a line of `usage` ("  -m, --model
 * FILE  ..." gives "-m" and "--model"); stops when fn returns true. */
static bool each_option_in(const char *usage, bool (*fn)(const char *name, size_t len, void *ctx), void *ctx)
{
    for (const char *line = usage; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *p = line;
        while (*p == ' ') p++;
        while (p[0] == '-' && (isalnum((unsigned char)p[1]) || p[1] == '-')) {
            size_t len = strcspn(p, " ,=[\n");
            if (fn(p, len, ctx)) return true;
            p += len;
            if (p[0] != ',' || p[1] != ' ') break;
            p += 2;
        }
    }
    return false;
}

static bool each_option(const char *const *help, bool (*fn)(const char *name, size_t len, void *ctx), void *ctx)
{
    for (; *help; help++)
        if (each_option_in(*help, fn, ctx)) return true;
    return false;
}

static bool same_name(const char *name, size_t len, void *ctx)
{
    const char *opt = ctx;
    return strlen(opt) == len && !strncmp(opt, name, len);
}

bool arg_is_option(const char *const *help, const char *opt) { return each_option(help, same_name, (void *)opt); }

typedef struct nearest {
    const char *opt;
    char best[64];
    size_t best_d;
} nearest;

/* A candidate is close when at most a third of it differs (at least 2
 * edits), or when one name is a prefix of the other. */
static bool consider(const char *name, size_t len, void *ctx)
{
    nearest *n = ctx;
    char cand[64];
    if (len >= sizeof cand) return false;
    memcpy(cand, name, len);
    cand[len] = '\0';
    size_t d = edit_distance(n->opt, cand), lo = strlen(n->opt) < len ? strlen(n->opt) : len;
    bool prefix = lo >= 4 && !strncmp(n->opt, cand, lo);
    size_t limit = len / 3 > 2 ? len / 3 : 2;
    if ((d <= limit || prefix) && d < n->best_d) {
        n->best_d = d;
        memcpy(n->best, cand, len + 1);
    }
    return false;
}

void arg_unknown(const char *cmd, const char *const *help, const char *opt)
{
    nearest n = {.opt = opt, .best_d = SIZE_MAX};
    each_option(help, consider, &n);
    if (n.best[0])
        fprintf(stderr, "strata %s: unknown option '%s'; did you mean '%s'? (see strata %s --help)\n", cmd, opt, n.best,
                cmd);
    else
        fprintf(stderr, "strata %s: unknown option '%s' (see strata %s --help)\n", cmd, opt, cmd);
}

void arg_no_value(const char *cmd, const char *const *help, const char *opt)
{
    if (opt[0] != '-' || !opt[1]) fprintf(stderr, "strata %s: unexpected argument '%s' (see strata %s --help)\n", cmd, opt, cmd);
    else if (arg_is_option(help, opt)) fprintf(stderr, "strata %s: %s: missing value\n", cmd, opt);
    else arg_unknown(cmd, help, opt);
}
