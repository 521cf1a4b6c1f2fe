/* jsonenc: a compact JSON encoder for jansson values, byte-for-byte the
 * output of json_dumpb(v, JSON_COMPACT) for acyclic trees, written for the
 * snapshot hot path: one growable buffer, strings copied in runs between
 * the bytes that need escaping, no per-container loop check (jansson
 * 2.14 formats each container's address into a hash table to detect
 * cycles, which was most of its cost here).  Reals are left to jansson. */
#ifndef SV_JSONENC_H
#define SV_JSONENC_H

#include <stddef.h>

#include <jansson.h>

struct jsonenc {
	char *buf;
	size_t len, cap;
};

/* Encode v into e->buf (reused across calls, grown as needed; not
 * NUL-terminated); e->len is its length.  Returns 0 or -ENOMEM. */
int jsonenc_encode(struct jsonenc *e, const json_t *v);
void jsonenc_free(struct jsonenc *e);

#endif
