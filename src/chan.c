/* chan: framing and checking of the master <-> child channel (chan.h). */
#include "chan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* Bytes taken from one peer per fill, so that a chatty child cannot keep
 * the master from everything else; the rest is read on the next round. */
#define CHAN_FILL_MAX (256u * 1024)

struct chan_rule {
	uint16_t type;
	const char *name;
	enum chan_peer from;
	uint32_t min, max;
};

static const struct chan_rule rules[] = {
	{CHAN_M_PAUSE, "pause", CHAN_FROM_MASTER_TO_WORKER, 0, 0},
	{CHAN_M_RESUME, "resume", CHAN_FROM_MASTER_TO_WORKER, 0, 0},
	{CHAN_M_LEVEL, "level", CHAN_FROM_MASTER_TO_WORKER, 4, 4},
	{CHAN_M_STREAMS, "streams", CHAN_FROM_MASTER_TO_WORKER, 2, CHAN_MON_OP_MAX},
	{CHAN_W_REGISTERED, "registered", CHAN_FROM_WORKER, 8, 8},
	{CHAN_W_FENCE_WAIT, "fence_wait", CHAN_FROM_WORKER, 0, 0},
	{CHAN_W_PROGRESS, "progress", CHAN_FROM_WORKER, 0, 0},
	{CHAN_W_TOOL, "tool", CHAN_FROM_WORKER, 4, 4},
	{CHAN_MON_OP, "op", CHAN_FROM_MASTER_TO_MONITOR, 2, CHAN_MON_OP_MAX},
	{CHAN_MON_BEATS, "beats", CHAN_FROM_MONITOR, 2, CHAN_MON_MSG_MAX},
	{CHAN_MON_REPLY, "reply", CHAN_FROM_MONITOR, 2, CHAN_MON_MSG_MAX},
	{CHAN_MON_STREAMS, "mon_streams", CHAN_FROM_MONITOR, 2, CHAN_MON_MSG_MAX},
	{CHAN_M_WEB_CONFIG, "web_config", CHAN_FROM_MASTER_TO_WEB, 2, CHAN_WEB_CONFIG_MAX},
	{CHAN_M_WEB_REPLY, "web_reply", CHAN_FROM_MASTER_TO_WEB, 2, CHAN_MON_MSG_MAX},
	{CHAN_W_WEB_REQUEST, "web_request", CHAN_FROM_WEB, 2, CHAN_WEB_REQUEST_MAX},
};

static const struct chan_rule *rule_of(uint16_t type)
{
	for (size_t i = 0; i < ARRAY_SIZE(rules); i++)
		if (rules[i].type == type)
			return &rules[i];
	return NULL;
}

const char *chan_type_name(uint16_t type)
{
	const struct chan_rule *r = rule_of(type);
	return r ? r->name : "?";
}

void chan_reader_init(struct chan_reader *r, enum chan_peer from)
{
	memset(r, 0, sizeof(*r));
	r->from = from;
}

void chan_reader_free(struct chan_reader *r)
{
	free(r->buf);
	free(r->msg);
	enum chan_peer from = r->from;
	memset(r, 0, sizeof(*r));
	r->from = from;
}

/* Room for want more raw bytes; the raw buffer never holds more than a
 * frame and a fill's worth. */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 4096;
	while (ncap < need)
		ncap *= 2;
	uint8_t *nb = realloc(*buf, ncap);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

/* Drop what was parsed.  An emptied buffer that grew for a large
 * message is given back: the master keeps one reader per child, and most
 * of them only ever see a few small frames. */
static void compact(struct chan_reader *r)
{
	if (r->off == r->len && r->cap > 16384) {
		free(r->buf);
		r->buf = NULL;
		r->cap = r->len = r->off = 0;
		return;
	}
	if (r->off == 0)
		return;
	memmove(r->buf, r->buf + r->off, r->len - r->off);
	r->len -= r->off;
	r->off = 0;
}

int chan_reader_feed(struct chan_reader *r, const void *data, size_t len)
{
	compact(r);
	if (reserve(&r->buf, &r->cap, r->len + len) < 0)
		return -ENOMEM;
	memcpy(r->buf + r->len, data, len);
	r->len += len;
	return 0;
}

ssize_t chan_reader_fill(struct chan_reader *r, int fd)
{
	/* Read through a buffer on the stack, so a reader only holds what is
	 * actually waiting to be parsed. */
	uint8_t tmp[16384];
	size_t total = 0;
	while (total < CHAN_FILL_MAX) {
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (total > 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			return -errno;
		}
		if (n == 0)
			return total > 0 ? (ssize_t)total : 0;
		if (chan_reader_feed(r, tmp, (size_t)n) < 0)
			return -ENOMEM;
		total += (size_t)n;
	}
	return (ssize_t)total;
}

static int violation(struct chan_reader *r, const struct chan_hdr *h, const char *what)
{
	snprintf(r->why, sizeof(r->why), "%s (type %u flags %#x len %u)", what,
		 (unsigned)h->type, (unsigned)h->flags, (unsigned)h->len);
	return -EPROTO;
}

/* A frame header, checked before any of its payload is looked at. */
static int check_header(struct chan_reader *r, const struct chan_hdr *h, const struct chan_rule **rule)
{
	const struct chan_rule *ru = rule_of(h->type);
	if (!ru || ru->from != r->from)
		return violation(r, h, ru ? "message type not allowed from this peer" : "unknown message type");
	if (h->flags & ~CHAN_F_MORE)
		return violation(r, h, "unknown flags");
	if (h->len > CHAN_FRAME_MAX)
		return violation(r, h, "frame larger than CHAN_FRAME_MAX");
	if (r->in_msg && h->type != r->msg_type)
		return violation(r, h, "frame of another type inside a multi-frame message");
	size_t total = (r->in_msg ? r->msg_len : 0) + h->len;
	if (total > ru->max)
		return violation(r, h, "message larger than its type allows");
	if (!(h->flags & CHAN_F_MORE) && total < ru->min)
		return violation(r, h, "message shorter than its type needs");
	*rule = ru;
	return 0;
}

int chan_next(struct chan_reader *r, struct chan_msg *m)
{
	if (r->why[0])
		return -EPROTO;
	for (;;) {
		if (r->len - r->off < sizeof(struct chan_hdr))
			return 0;
		struct chan_hdr h;
		memcpy(&h, r->buf + r->off, sizeof(h));
		const struct chan_rule *ru;
		int e = check_header(r, &h, &ru);
		if (e < 0)
			return e;
		if (r->len - r->off - sizeof(h) < h.len)
			return 0;
		const uint8_t *payload = r->buf + r->off + sizeof(h);
		r->off += sizeof(h) + h.len;
		if (!r->in_msg && !(h.flags & CHAN_F_MORE)) {
			/* The common case: one frame, no copy. */
			*m = (struct chan_msg){.type = h.type, .data = payload, .len = h.len};
			return 1;
		}
		if (reserve(&r->msg, &r->msg_cap, r->msg_len + h.len + 1) < 0)
			return -ENOMEM;
		memcpy(r->msg + r->msg_len, payload, h.len);
		r->msg_len += h.len;
		r->msg_type = h.type;
		r->in_msg = true;
		if (h.flags & CHAN_F_MORE)
			continue;
		r->in_msg = false;
		*m = (struct chan_msg){.type = h.type, .data = r->msg, .len = r->msg_len};
		r->msg_len = 0;
		return 1;
	}
}

int chan_encode(uint16_t type, const void *payload, size_t len, uint8_t **out, size_t *outlen)
{
	const struct chan_rule *ru = rule_of(type);
	if (!ru || len < ru->min || len > ru->max)
		return -EINVAL;
	size_t nframes = len == 0 ? 1 : (len + CHAN_FRAME_MAX - 1) / CHAN_FRAME_MAX;
	size_t total = len + nframes * sizeof(struct chan_hdr);
	uint8_t *buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	size_t o = 0, done = 0;
	for (size_t i = 0; i < nframes; i++) {
		size_t n = len - done > CHAN_FRAME_MAX ? CHAN_FRAME_MAX : len - done;
		struct chan_hdr h = {.type = type, .flags = i + 1 < nframes ? CHAN_F_MORE : 0, .len = (uint32_t)n};
		memcpy(buf + o, &h, sizeof(h));
		o += sizeof(h);
		if (n)
			memcpy(buf + o, (const uint8_t *)payload + done, n);
		o += n;
		done += n;
	}
	*out = buf;
	*outlen = total;
	return 0;
}

int chan_send(int fd, uint16_t type, const void *payload, size_t len)
{
	uint8_t *buf;
	size_t n;
	int r = chan_encode(type, payload, len, &buf, &n);
	if (r < 0)
		return r;
	r = util_write_all(fd, buf, n);
	free(buf);
	return r;
}
