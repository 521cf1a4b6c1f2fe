/* chan: the one typed channel between the master and each of its children
 * (workers, the monitor), after OpenBSD's imsg.  A socketpair carries
 * frames:
 *
 *   struct chan_hdr { uint16_t type; uint16_t flags; uint32_t len; }  then len bytes
 *
 * in host byte order (both ends are one machine).  A frame carries at most
 * CHAN_FRAME_MAX bytes; a message larger than that is sent as several
 * frames of one type, each but the last flagged CHAN_F_MORE, so a large
 * reply never needs one large write and the receiver never buffers more
 * than the type allows.  Every type has a direction and a size range, in
 * the table below and in chan.c; the receiver checks each frame against it
 * before it looks at a payload byte, and a peer that breaks it is a
 * protocol violation (the master restarts such a child as failed).
 *
 * Messages (payload; size in bytes):
 *
 *   master -> worker
 *     CHAN_M_PAUSE        empty                     stop reading new entries
 *     CHAN_M_RESUME       empty
 *     CHAN_M_LEVEL        u32 log level (enum log_level)          4
 *     CHAN_M_STREAMS      JSON object {"add": [names], "remove": [names]}: the
 *                         pattern streams this worker reads from now on, or
 *                         drops; right after CHAN_W_REGISTERED one message whose
 *                         "add" holds every stream known for its pool's
 *                         patterns.  At most CHAN_MON_OP_MAX
 *   worker -> master
 *     CHAN_W_REGISTERED   i64 incarnation, > 0                    8
 *     CHAN_W_FENCE_WAIT   empty: another live process holds my consumer name
 *     CHAN_W_PROGRESS     empty: a batch was stored, acked or dead-lettered
 *     CHAN_W_TOOL         i32 pid: a tool process started (0: it ended).  Only
 *                         shown in status, after the master checked that pid
 *                         is the worker's own child leading its own group;
 *                         never used to signal anything.          4
 *   master -> monitor
 *     CHAN_MON_OP         JSON object {"op": "event"|"hdel"|"prune"|"stop"|"call"|
 *                         "unblock", ...}; "unblock" {"ids": [client ids]} runs
 *                         CLIENT UNBLOCK for each.  At most CHAN_MON_OP_MAX
 *   monitor -> master
 *     CHAN_MON_BEATS      JSON object {"ok", "wall_ms", "workers", "pending", "groups",
 *                         "patterns"} (worker fields are relayed from Redis and
 *                         validated one by one by the master; "patterns": one
 *                         summary row per configured pattern and group, src/patsum.c,
 *                         at most MASTER_PATTERN_ROWS_MAX, checked by the master);
 *                         at most CHAN_MON_MSG_MAX
 *     CHAN_MON_REPLY      JSON object {"id", "reply"}: the answer to a "call";
 *                         at most CHAN_MON_MSG_MAX
 *     CHAN_MON_STREAMS    JSON object {"pattern": P, "add": [names], "remove":
 *                         [names]}: discovery's changes for one configured
 *                         pattern (src/discover.c); names are checked by the
 *                         master (match P, not an own key).  At most
 *                         CHAN_MON_MSG_MAX
 *   master -> web child (src/master_web.c, src/web.c)
 *     CHAN_M_WEB_CONFIG   JSON object: what the web child serves and how
 *                         (listen, hosts, token salt and SHA-256, actions,
 *                         pools and their SQLite files, limits); first
 *                         message, again after a reload.  At most
 *                         CHAN_WEB_CONFIG_MAX
 *     CHAN_M_WEB_REPLY    JSON object {"id", "reply"}: the answer to one
 *                         CHAN_W_WEB_REQUEST, as streamvisorctl would get it.
 *                         At most CHAN_MON_MSG_MAX
 *   web child -> master
 *     CHAN_W_WEB_REQUEST  JSON object {"id", "cmd", "args", "token"?}: a
 *                         view or an action for an HTTP client.  The master
 *                         checks the command, the token (constant-time, on
 *                         SHA-256 digests) and http.actions itself.  At most
 *                         CHAN_WEB_REQUEST_MAX
 */
#ifndef SV_CHAN_H
#define SV_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct chan_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t len;
};

#define CHAN_F_MORE 0x1u             /* the message continues in the next frame */
#define CHAN_FRAME_MAX (64u * 1024)  /* payload bytes in one frame */
#define CHAN_MON_OP_MAX (16u << 20)
#define CHAN_MON_MSG_MAX (64u << 20)
#define CHAN_WEB_CONFIG_MAX (1u << 20)
#define CHAN_WEB_REQUEST_MAX (64u * 1024)

enum chan_type {
	CHAN_M_PAUSE = 1,
	CHAN_M_RESUME = 2,
	CHAN_M_LEVEL = 3,
	CHAN_M_STREAMS = 4,
	CHAN_M_WEB_CONFIG = 5,
	CHAN_M_WEB_REPLY = 6,
	CHAN_W_REGISTERED = 16,
	CHAN_W_FENCE_WAIT = 17,
	CHAN_W_PROGRESS = 18,
	CHAN_W_TOOL = 19,
	CHAN_W_WEB_REQUEST = 20,
	CHAN_MON_OP = 32,
	CHAN_MON_BEATS = 48,
	CHAN_MON_REPLY = 49,
	CHAN_MON_STREAMS = 50,
};

/* Who sends a message: a receiver accepts only its peer's types. */
enum chan_peer {
	CHAN_FROM_MASTER_TO_WORKER,
	CHAN_FROM_WORKER,
	CHAN_FROM_MASTER_TO_MONITOR,
	CHAN_FROM_MONITOR,
	CHAN_FROM_MASTER_TO_WEB,
	CHAN_FROM_WEB,
};

/* A complete message, valid until the next chan_next() on its reader. */
struct chan_msg {
	uint16_t type;
	const uint8_t *data;
	size_t len;
};

/* Receiving side: bytes in, checked messages out. */
struct chan_reader {
	enum chan_peer from;
	uint8_t *buf;                /* raw bytes read, not yet parsed */
	size_t len, off, cap;
	uint8_t *msg;                /* a multi-frame message being assembled */
	size_t msg_len, msg_cap;
	uint16_t msg_type;
	bool in_msg;
	char why[160];               /* the violation, for the log */
};

void chan_reader_init(struct chan_reader *r, enum chan_peer from);
void chan_reader_free(struct chan_reader *r);
/* Read what fd has now (at most a bounded amount per call, so one peer
 * cannot starve the loop).  Returns bytes read, 0 at EOF, -EAGAIN when
 * nothing was there, or another -errno. */
ssize_t chan_reader_fill(struct chan_reader *r, int fd);
/* Feed bytes directly (fuzzing, tests).  Returns 0 or -ENOMEM. */
int chan_reader_feed(struct chan_reader *r, const void *data, size_t len);
/* Next message: 1 and *m, 0 when no complete message is buffered, or
 * -EPROTO when the peer broke the protocol (r->why says how; the reader
 * is then unusable). */
int chan_next(struct chan_reader *r, struct chan_msg *m);

/* The type's name for logs ("?" when unknown). */
const char *chan_type_name(uint16_t type);

/* Encode one message as frames into a malloc'd buffer (*out, *outlen).
 * Returns 0, -EINVAL for a type or size the table does not allow, or
 * -ENOMEM. */
int chan_encode(uint16_t type, const void *payload, size_t len, uint8_t **out, size_t *outlen);
/* Child side: encode and write the whole message to a blocking-ish fd
 * (util_write_all).  Returns 0 or -errno. */
int chan_send(int fd, uint16_t type, const void *payload, size_t len);

/* Fixed payload helpers (memcpy, so alignment never matters). */
static inline int64_t chan_get_i64(const struct chan_msg *m)
{
	int64_t v;
	__builtin_memcpy(&v, m->data, sizeof(v));
	return v;
}
static inline int32_t chan_get_i32(const struct chan_msg *m)
{
	int32_t v;
	__builtin_memcpy(&v, m->data, sizeof(v));
	return v;
}

#endif
