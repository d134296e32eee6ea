/* Element-wise shaders: 256 invocations a workgroup, one element (or
 * pair) each; elt_id() is the linear index over the folded dispatch. */
#ifndef ELT_GLSL
#define ELT_GLSL
#include "common.glsl"

layout(local_size_x = 256) in;

uint elt_id() { return group_id() * 256u + gl_LocalInvocationIndex; }

#endif
