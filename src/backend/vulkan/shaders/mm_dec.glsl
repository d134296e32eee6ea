/* What a weight format with its own decode unit (DEC_FAST, mm_main.glsl's
 * mm_decode) works with: the unit's x values as two spans of DEC_SPAN (a
 * at dec_oa(u), b DEC_SPAN_B elements after it), read as vec4 (x is
 * 16-byte aligned), with their sums for factoring the block minimum or
 * offset out of the products. */
#ifndef MM_DEC_GLSL
#define MM_DEC_GLSL
#define DEC_FAST
#extension GL_EXT_control_flow_attributes : require
layout(buffer_reference, std430, buffer_reference_align = 16) buffer X4Ref { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer U4Ref { uvec4 v[]; };
#ifndef DEC_SPAN
#define DEC_SPAN 16u /* elements of a span */
#endif
struct XV {
    vec4 a[DEC_SPAN / 4u], b[DEC_SPAN / 4u];
    float sa, sb;
};

/* Four bytes (each < 2^23) as floats, exactly: 2^23 + b is a float whose
 * low mantissa bits are b, minus 2^23. One integer op and one add per byte
 * instead of an integer-to-float conversion, which runs at 1/8 of the FMA
 * rate on NVIDIA GPUs and bounded the decode products. */
vec4 bytes4(uint v)
{
    const float big = 8388608.0;
    return vec4(uintBitsToFloat((v & 0xffu) | 0x4b000000u) - big, uintBitsToFloat(((v >> 8) & 0xffu) | 0x4b000000u) - big,
                uintBitsToFloat(((v >> 16) & 0xffu) | 0x4b000000u) - big, uintBitsToFloat((v >> 24) | 0x4b000000u) - big);
}
#endif
