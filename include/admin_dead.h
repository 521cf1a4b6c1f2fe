/* admin_dead: streamvisorctl's dead-letter commands, run by the monitor
 * (admin.c hands them over).  Dead letters are untrusted Redis data (any
 * client can write STREAM:dead): every byte of them may be anything, and
 * any size.  So every reply is bounded whatever they hold:
 *
 *   dead list [STREAM] [N] [--after ID]
 *       {"ok", "entries": [LETTER...], "next": ID?, "truncated": bool}: the
 *       newest N (1..DEAD_LIST_MAX, default 20) letters older than ID,
 *       newest first, over STREAM's dead-letter stream or, without STREAM,
 *       the literal streams' and the known pattern streams' (at most
 *       DEAD_STREAMS_MAX streams: "truncated").  A page ends early past
 *       DEAD_PAGE_BUDGET bytes shown; "next" is there when more follow.
 *       LETTER: {"id", "dead_stream", "stream", "origin_id", "origin_stream",
 *       "group", "groups": [...], "consumer", "reason", "deliveries": int,
 *       "size": bytes of the original fields, "nfields", "fields": [{"name",
 *       "value", "size", "cut"}...], "fields_cut"}: names and values cut at
 *       DEAD_SHOW_BYTES, at most DEAD_SHOW_FIELDS fields.
 *   dead show ID [--stream STREAM] [--from ITEM:OFFSET]
 *       one letter whole, in chunks of DEAD_CHUNK bytes: its metadata and
 *       "parts": [{"item", "size", "offset", "b64"}...] (item 2k is the
 *       name of original field k, 2k+1 its value), "items" (how many), and
 *       "next": "ITEM:OFFSET" while more follow.
 *   dead retry ID|all [--stream STREAM]
 *       re-drives each letter once into its origin stream, the original
 *       fields unchanged after origin_id (the original id), and removes it,
 *       atomically; letters of one origin met again in the same call are
 *       removed without a second copy.  {"ok", "retried": [{"id",
 *       "stream", "new_id", "origin_id"}...], "dropped": n}
 *   dead purge [--older-than MS] [--stream STREAM]   {"ok", "purged": n}
 *
 * A text (name, value, metadata) is a JSON string when it is valid UTF-8
 * without NUL, else {"b64": "..."} (base64 of the bytes).
 *
 * One dead letter per origin: NS:deadidx:STREAM (hash, origin id -> JSON
 * ["DEAD_ID", group...]), written by the consumer (consumer.c,
 * dead_letter), read here for "groups" and cleared by retry and purge. */
#ifndef SV_ADMIN_DEAD_H
#define SV_ADMIN_DEAD_H

#include <jansson.h>

#include "discover.h"
#include "rconn.h"
#include "sv_config.h"

#define DEAD_LIST_DEFAULT 20
#define DEAD_LIST_MAX 1000
#define DEAD_SHOW_BYTES 256
#define DEAD_META_BYTES 1024
#define DEAD_SHOW_FIELDS 32
#define DEAD_PAGE_BUDGET (256u * 1024)
#define DEAD_CHUNK (1024u * 1024)
#define DEAD_STREAMS_MAX 10000

/* args: the request's args, a JSON array of strings ("list", ...).
 * disc: the monitor's discoverer, or NULL.  Never returns NULL. */
json_t *admin_dead(struct rconn *rc, const struct sv_config *cfg, const struct discover *disc, json_t *args);

/* After dead letters of stream were trimmed (retention, purge): drop the
 * index entries of letters older than min_ms.  Returns 0 or -ENOTCONN. */
int admin_dead_index_prune(struct rconn *rc, const struct sv_config *cfg, const char *stream, long long min_ms);

#endif
