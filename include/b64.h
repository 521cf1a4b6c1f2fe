/* b64: standard base64 (RFC 4648, with padding), for bytes that JSON
 * cannot carry as text (dead letters, issue 12). */
#ifndef SV_B64_H
#define SV_B64_H

#include <stddef.h>

/* Encode n bytes: a malloc'd NUL-terminated string (never NULL; aborts
 * without memory), its length in *outlen when outlen is given. */
char *b64_encode(const void *p, size_t n, size_t *outlen);
/* Decode s[0..len): a malloc'd buffer of *outlen bytes (plus a NUL), or
 * NULL when s is not valid padded base64. */
unsigned char *b64_decode(const char *s, size_t len, size_t *outlen);

#endif
