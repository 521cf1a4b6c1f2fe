/* event: decode one stream entry into an event (see event.h). */
#include "event.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool event_valid_text(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned c = *p;
		if (c < 0x80) {
			if (c == 0)
				return false;
			p++;
			continue;
		}
		size_t n;
		unsigned min;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1; min = 0x80; c &= 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; min = 0x800; c &= 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; min = 0x10000; c &= 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= n)
			return false;
		for (size_t i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (p[i] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

/* Strict unsigned decimal: digits only, no sign, no spaces, < 2^63. */
static int parse_u63(const char *s, size_t len, uint64_t *out)
{
	if (len == 0 || len > 19)
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Strict signed decimal integer (an optional '-'). */
static int parse_i64(const char *s, size_t len, int64_t *out)
{
	bool neg = len > 0 && s[0] == '-';
	uint64_t v;
	if (parse_u63(s + neg, len - neg, &v) < 0)
		return -EINVAL;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

int event_parse_id(const char *id, uint64_t *ms, uint64_t *seq)
{
	if (!id)
		return -EINVAL;
	const char *dash = strchr(id, '-');
	if (!dash)
		return -EINVAL;
	if (parse_u63(id, (size_t)(dash - id), ms) < 0 ||
	    parse_u63(dash + 1, strlen(dash + 1), seq) < 0)
		return -EINVAL;
	return 0;
}

void event_clear(struct sv_event *ev)
{
	json_decref(ev->data);
	free(ev->buf);
	memset(ev, 0, sizeof(*ev));
}

static bool field_is(const struct sv_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && memcmp(f->name, name, n) == 0;
}

/* Append s[0..len) NUL-terminated at *pos in buf; return the copy. */
static const char *put(char *buf, size_t *pos, const char *s, size_t len)
{
	char *d = buf + *pos;
	memcpy(d, s, len);
	d[len] = '\0';
	*pos += len + 1;
	return d;
}

enum { F_RUN, F_TYPE, F_SEQ, F_PARENT, F_CALL, F_TS, F_DATA, F_ORIGIN_ID, F_ORIGIN_STREAM, F_N };
static const char *const field_names[F_N] = {
	"run", "type", "seq", "parent_seq", "call_id", "ts", "data", "origin_id", "origin_stream",
};

int event_decode(const struct sv_entry *e, struct sv_event *ev, const char **reason)
{
	const struct sv_field *f[F_N] = {0};
	size_t total = 0;

	memset(ev, 0, sizeof(*ev));
	for (size_t i = 0; i < e->nfields; i++) {
		const struct sv_field *fl = &e->fields[i];
		total += fl->name_len + fl->value_len;
		for (int k = 0; k < F_N; k++) {
			if (field_is(fl, field_names[k])) {
				f[k] = fl;
				break;
			}
		}
	}
	if (e->bytes > total)
		total = e->bytes;

#define FAIL(r) do { *reason = (r); event_clear(ev); return -EINVAL; } while (0)
	if (total > EVENT_MAX_BYTES)
		FAIL("entry too large");
	if (!f[F_RUN])
		FAIL("missing run");
	if (!f[F_TYPE])
		FAIL("missing type");
	if (f[F_RUN]->value_len == 0 || !event_valid_text(f[F_RUN]->value, f[F_RUN]->value_len))
		FAIL("invalid run");
	if (f[F_TYPE]->value_len == 0 || !event_valid_text(f[F_TYPE]->value, f[F_TYPE]->value_len))
		FAIL("invalid type");
	if (f[F_CALL] && (f[F_CALL]->value_len == 0 ||
			  !event_valid_text(f[F_CALL]->value, f[F_CALL]->value_len)))
		FAIL("invalid call_id");
	if (f[F_SEQ] && (parse_i64(f[F_SEQ]->value, f[F_SEQ]->value_len, &ev->seq) < 0 || ev->seq < 1))
		FAIL("invalid seq");
	if (f[F_PARENT] && (parse_i64(f[F_PARENT]->value, f[F_PARENT]->value_len, &ev->parent_seq) < 0 ||
			    ev->parent_seq < 1))
		FAIL("invalid parent_seq");
	if (f[F_TS]) {
		if (parse_i64(f[F_TS]->value, f[F_TS]->value_len, &ev->ts) < 0)
			FAIL("invalid ts");
		ev->has_ts = true;
	}
	if (e->id_ms > (uint64_t)INT64_MAX || e->id_seq > (uint64_t)INT64_MAX || !e->id || !e->stream)
		FAIL("invalid entry id");
	ev->id_ms = ev->origin_ms = e->id_ms;
	ev->id_seq = ev->origin_seq = e->id_seq;

	char idbuf[48];
	if (f[F_ORIGIN_ID]) {
		size_t n = f[F_ORIGIN_ID]->value_len;
		if (n >= sizeof(idbuf))
			FAIL("invalid origin_id");
		memcpy(idbuf, f[F_ORIGIN_ID]->value, n);
		idbuf[n] = '\0';
		if (event_parse_id(idbuf, &ev->origin_ms, &ev->origin_seq) < 0)
			FAIL("invalid origin_id");
		ev->redriven = true;
	}
	if (f[F_ORIGIN_STREAM] && (f[F_ORIGIN_STREAM]->value_len == 0 ||
				   !event_valid_text(f[F_ORIGIN_STREAM]->value,
						     f[F_ORIGIN_STREAM]->value_len)))
		FAIL("invalid origin_stream");
	if (f[F_DATA]) {
		json_t *d = json_loadb(f[F_DATA]->value, f[F_DATA]->value_len, JSON_ALLOW_NUL, NULL);
		if (!json_is_object(d)) {
			json_decref(d);
			FAIL("data is not a JSON object");
		}
		ev->data = d;
	}
#undef FAIL

	/* One allocation holds every string the event keeps. */
	size_t slen = strlen(e->stream), ilen = strlen(e->id);
	size_t need = f[F_RUN]->value_len + f[F_TYPE]->value_len + slen + ilen + 4 +
		      (f[F_CALL] ? f[F_CALL]->value_len + 1 : 0) +
		      (f[F_ORIGIN_STREAM] ? f[F_ORIGIN_STREAM]->value_len + 1 : 0) +
		      (f[F_DATA] ? f[F_DATA]->value_len + 1 : 0);
	ev->buf = malloc(need);
	if (!ev->buf) {
		event_clear(ev);
		*reason = "out of memory";
		return -ENOMEM;
	}
	size_t pos = 0;
	ev->run = put(ev->buf, &pos, f[F_RUN]->value, f[F_RUN]->value_len);
	ev->type = put(ev->buf, &pos, f[F_TYPE]->value, f[F_TYPE]->value_len);
	ev->stream = put(ev->buf, &pos, e->stream, slen);
	ev->id = put(ev->buf, &pos, e->id, ilen);
	if (f[F_CALL])
		ev->call_id = put(ev->buf, &pos, f[F_CALL]->value, f[F_CALL]->value_len);
	ev->origin_stream = f[F_ORIGIN_STREAM]
		? put(ev->buf, &pos, f[F_ORIGIN_STREAM]->value, f[F_ORIGIN_STREAM]->value_len)
		: ev->stream;
	if (f[F_DATA]) {
		ev->data_raw = put(ev->buf, &pos, f[F_DATA]->value, f[F_DATA]->value_len);
		ev->data_len = f[F_DATA]->value_len;
	}
	*reason = NULL;
	return 0;
}

void event_order_key(const struct sv_event *ev, struct event_key *key)
{
	if (ev->seq > 0) {
		key->major = ev->seq;
		key->minor = 0;
	} else if (ev->parent_seq > 0 && strcmp(ev->type, "tool.output") == 0) {
		key->major = ev->parent_seq;
		key->minor = 1;
	} else {
		key->major = 0;
		key->minor = 0;
	}
	key->ms = ev->origin_ms;
	key->seq = ev->origin_seq;
}

int event_key_cmp(const struct event_key *a, const struct event_key *b)
{
	if (a->major != b->major)
		return a->major < b->major ? -1 : 1;
	if (a->minor != b->minor)
		return a->minor < b->minor ? -1 : 1;
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

int64_t event_time_ms(const struct sv_event *ev)
{
	return ev->has_ts ? ev->ts : (int64_t)ev->origin_ms;
}
