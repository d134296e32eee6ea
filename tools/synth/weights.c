/* Deterministic random weights: a counter-based seed per row (splitmix64)
 * feeding xoshiro256+, normals by Box-Muller. */
#include <math.h>

#include "synth.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, result = s[0] + s[3], t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static double rng_unit(rng *r) { return ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

void synth_fill_row(float *dst, uint64_t n, uint64_t seed, uint64_t tensor, uint64_t row, float std)
{
    uint64_t x = seed ^ (tensor * 0xd1b54a32d192ed03ull) ^ (row * 0x8cb92ba72f3d8dd7ull);
    rng r;
    for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&x);
    for (uint64_t i = 0; i < n; i += 2) {
        double radius = sqrt(-2.0 * log(rng_unit(&r))) * std;
        double angle = 6.283185307179586 * rng_unit(&r);
        dst[i] = (float)(radius * cos(angle));
        if (i + 1 < n) dst[i + 1] = (float)(radius * sin(angle));
    }
}
