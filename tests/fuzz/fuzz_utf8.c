/*
 * libFuzzer target: sc_utf8_clean (lib/check.c), which every refusal detail goes
 * through before it is put into a JSON reply (ingest, control). The input, up to
 * its first NUL and at most 511 bytes (the ingest thread's detail buffer), is
 * cleaned; then:
 *
 *  - jansson accepts the result as a string (else json_pack fails and the sender
 *    gets no reply at all);
 *  - text that was valid UTF-8 is left as it was;
 *  - cleaning is idempotent, and only ever replaces bytes by '?' or cuts the end.
 */
#include "common.h"

#include <safecampus/util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[512], out[512], again[512];
    size_t n = size < sizeof in - 1 ? size : sizeof in - 1;
    memcpy(in, data, n);
    in[n] = '\0';
    memcpy(out, in, sizeof in);
    if (sc_utf8_clean(out) != out)
        fz_fail("sc_utf8_clean did not return its argument");
    size_t len = strlen(out), inlen = strlen(in);
    if (!fz_utf8(out))
        fz_fail("cleaned text is still not valid UTF-8 (%zu bytes)", len);
    if (fz_utf8(in) && strcmp(in, out) != 0)
        fz_fail("valid UTF-8 was changed");
    if (len > inlen)
        fz_fail("cleaning made the text longer");
    for (size_t i = 0; i < len; i++)
        if (out[i] != in[i] && out[i] != '?')
            fz_fail("byte %zu became 0x%02x (only '?' replaces a byte)", i, (unsigned char)out[i]);
    memcpy(again, out, sizeof out);
    sc_utf8_clean(again);
    if (strcmp(again, out) != 0)
        fz_fail("cleaning twice differs from cleaning once");
    return 0;
}
