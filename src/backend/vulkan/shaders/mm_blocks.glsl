/* Reading quantized blocks: every GGUF block size is even, so a block is
 * read as little-endian 16-bit words (storageBuffer16BitAccess). */
#ifndef MM_BLOCKS_GLSL
#define MM_BLOCKS_GLSL

uint wd(uvec2 blk, uint i) { return uint(U16Ref(blk).v[i]); }
/* two words i, i+1 as one 32-bit little-endian value */
uint wd2(uvec2 blk, uint i) { return wd(blk, i) | (wd(blk, i + 1u) << 16); }
uint byte_at(uvec2 blk, uint off) { return (wd(blk, off >> 1) >> ((off & 1u) * 8u)) & 0xffu; }
/* byte k (< 4) of a 32-bit value */
uint byte_of(uint v, uint k) { return (v >> (8u * k)) & 0xffu; }

/* The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block, packed in
 * the 12 bytes at byte 4: for j < 4, scale = q[j] & 63 and min = q[j+4] & 63;
 * for j >= 4 the low four bits are the nibbles of q[j+4] and the top two
 * bits are bits 6..7 of q[j-4] (scale) and q[j] (min). */
void kq_scale_min(uvec2 blk, uint j, out uint sc, out uint mn)
{
    if (j < 4u) {
        sc = byte_at(blk, 4u + j) & 63u;
        mn = byte_at(blk, 8u + j) & 63u;
    } else {
        uint q = byte_at(blk, 8u + j);
        sc = (q & 0xfu) | ((byte_at(blk, j) >> 6) << 4);
        mn = (q >> 4) | ((byte_at(blk, 4u + j) >> 6) << 4);
    }
}

#endif
