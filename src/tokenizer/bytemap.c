/* The GPT-2 byte-to-unicode table of byte-level BPE: the printable bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves (as code points
 * U+0021.., U+00A1.., U+00AE..); the other 68 bytes (0x00-0x20, 0x7F-0xA0,
 * 0xAD), in increasing order, become U+0100, U+0101, ... (space -> U+0120
 * 'Ġ', newline -> U+010A 'Ċ'). */
#include "tokenizer/tok_internal.h"

static bool printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

/* The non-printable bytes in order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD. */
uint32_t tok_byte_to_cp(uint8_t b)
{
    if (printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67; /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) return printable(cp) ? (int)cp : -1;
    uint32_t r = cp - 0x100;
    if (r <= 32) return (int)r;
    if (r <= 66) return (int)(0x7F + r - 33);
    return r == 67 ? 0xAD : -1;
}
