/* Shared by every shader: buffer references built from 64-bit device
 * addresses held as uvec2 (low, high) so no shader needs shaderInt64,
 * 64-bit address arithmetic, and exact f16 <-> f32 conversions. */
#ifndef COMMON_GLSL
#define COMMON_GLSL
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32Ref { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16Ref { uint16_t v[]; };

/* a + off (bytes) */
uvec2 addr_add(uvec2 a, uint off)
{
    uint carry;
    uint lo = uaddCarry(a.x, off, carry);
    return uvec2(lo, a.y + carry);
}

/* a + i * stride (bytes), the product taken in 64 bits */
uvec2 addr_mad(uvec2 a, uint i, uint stride)
{
    uint hi, lo, carry;
    umulExtended(i, stride, hi, lo);
    uint r = uaddCarry(a.x, lo, carry);
    return uvec2(r, a.y + hi + carry);
}

/* The linear id of this workgroup: the host folds large counts into x and
 * y because maxComputeWorkGroupCount[0] may be as small as 65535. */
uint group_id()
{
    return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
}

/* IEEE half -> float, exact for every input (subnormals included, which a
 * hardware conversion might flush). */
float h2f(uint h)
{
    uint s = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1fu;
    uint m = h & 0x3ffu;
    if (e == 0u) {
        float v = float(m) * 5.9604644775390625e-8; /* m * 2^-24 */
        return s != 0u ? -v : v;
    }
    if (e == 31u) return uintBitsToFloat(s | 0x7f800000u | (m << 13));
    return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));
}

/* float -> IEEE half bits, round to nearest even, overflow to inf, NaN
 * stays NaN: integer arithmetic, so the result is the same on every device
 * and equals the CPU's f32_to_fp16 (the rounding of packHalf2x16 is not
 * specified by Vulkan). */
uint f2h(float f)
{
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);
    if (ax >= 0x477ff000u) return sign | 0x7c00u;
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u) return sign;
        uint e = ax >> 23;
        uint m = (ax & 0x7fffffu) | 0x800000u;
        uint shift = 126u - e;
        uint q = m >> shift;
        uint rem = m & ((1u << shift) - 1u);
        uint half_ = 1u << (shift - 1u);
        if (rem > half_ || (rem == half_ && (q & 1u) != 0u)) q++;
        return sign | q;
    }
    uint q = (ax >> 13) - (112u << 10);
    uint rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u) != 0u)) q++;
    return sign | q;
}

#endif
