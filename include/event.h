/* event: decode one Redis stream entry (as handed over from an XREADGROUP
 * reply) into an event, and compute its order key and dedupe key (SPEC §5).
 *
 * Entry fields understood:
 *   run (required), type (required), seq (integer >= 1), parent_seq
 *   (integer >= 1), call_id, ts (integer ms), data (a JSON object, parsed
 *   with JSON_ALLOW_NUL), and on a re-driven dead letter origin_id ("MS-SEQ")
 *   and origin_stream.  Other fields are ignored; when a field occurs twice
 *   the last occurrence wins.
 *
 * Decoding fails, with a short stable reason, only for entries that can never
 * succeed (they are dead-lettered at once):
 *   "missing run", "missing type", "invalid run", "invalid type" (empty, NUL
 *   byte or not UTF-8), "invalid call_id", "invalid seq", "invalid parent_seq",
 *   "invalid ts", "data is not a JSON object", "entry too large" (more than
 *   EVENT_MAX_BYTES), "invalid origin_id", "invalid origin_stream",
 *   "invalid entry id".
 *
 * Logical id: the entry id, or origin_id for a re-driven dead letter; the
 * logical stream: the entry's stream, or origin_stream when given.  Both
 * are used for ordering and for the dedupe key, so a re-driven entry lands
 * where the original belonged.
 *
 * Order key within a run (compared as integers, never as text):
 *   event with seq                   (seq,        0, logical id)
 *   tool.output with parent_seq      (parent_seq, 1, logical id)
 *   anything else                    (0,          0, logical id)
 * Dedupe key:
 *   event with seq                   (run, seq)
 *   tool.output with call_id         (run, call_id)
 *   anything else                    (logical stream, logical id)
 */
#ifndef SV_EVENT_H
#define SV_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* An entry bigger than this (sum of all field name and value bytes) is a
 * dead letter. */
#define EVENT_MAX_BYTES (1024 * 1024)

/* One field of a stream entry; name and value need not be NUL-terminated. */
struct sv_field {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/* One stream entry as read from Redis.  bytes: the entry's size as counted
 * by the caller (0 = let event_decode sum the fields; the larger wins). */
struct sv_entry {
	const char *stream;
	const char *id;
	uint64_t id_ms, id_seq;
	const struct sv_field *fields;
	size_t nfields;
	size_t bytes;
};

/* Position of an event within its run. */
struct event_key {
	int64_t major;  /* seq, parent_seq, or 0; -1 = before every event */
	int64_t minor;  /* 0, or 1 for tool.output sorted by parent_seq */
	uint64_t ms, seq; /* logical entry id */
};

/* A decoded event.  Strings are NUL-terminated.  After event_decode the
 * event owns copies of everything (free with event_clear); the store also
 * builds events that borrow their strings (buf == NULL). */
struct sv_event {
	const char *run;
	const char *type;
	const char *call_id;       /* NULL when absent */
	const char *stream;        /* stream the entry was read from */
	const char *id;            /* entry id text */
	const char *origin_stream; /* logical stream: origin_stream or stream */
	uint64_t id_ms, id_seq;         /* entry id */
	uint64_t origin_ms, origin_seq; /* logical id: origin_id or the entry id */
	bool redriven;             /* origin_id was given */
	int64_t seq;               /* 0 = none, else >= 1 */
	int64_t parent_seq;        /* 0 = none, else >= 1 */
	bool has_ts;
	int64_t ts;
	json_t *data;              /* JSON object or NULL; owned */
	const char *data_raw;      /* data as written (may hold NULs) or NULL */
	size_t data_len;
	char *buf;                 /* owned storage behind the strings, or NULL */
};

/* Parse "MS-SEQ" (decimal, each part < 2^63) into two integers.  Returns 0
 * or -EINVAL. */
int event_parse_id(const char *id, uint64_t *ms, uint64_t *seq);

/* Decode e into *ev.  Returns 0, or -EINVAL with *reason set to a static
 * dead-letter reason (see above), or -ENOMEM.  On failure *ev is cleared. */
int event_decode(const struct sv_entry *e, struct sv_event *ev, const char **reason);

/* Free what the event owns and zero it. */
void event_clear(struct sv_event *ev);

/* The event's order key within its run. */
void event_order_key(const struct sv_event *ev, struct event_key *key);
/* <0, 0, >0 as a sorts before, equal to, after b. */
int event_key_cmp(const struct event_key *a, const struct event_key *b);

/* Milliseconds the event happened at: ts when given, else the logical
 * entry id's ms. */
int64_t event_time_ms(const struct sv_event *ev);

/* Whether s[0..len) is valid UTF-8 without NUL bytes. */
bool event_valid_text(const char *s, size_t len);

#endif
