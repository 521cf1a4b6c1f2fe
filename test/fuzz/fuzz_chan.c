/* libFuzzer harness: the master <-> child channel reader (src/chan.c).
 *
 * Input: byte 0 picks the receiving side (which peer's messages it
 * accepts), byte 1 seeds the sizes of the chunks the stream is fed in, the
 * rest is the byte stream a child (or the master) sent.
 *
 * Checks (abort = finding):
 *   - every message the reader hands out is one chan_encode accepts (a
 *     type of that peer, a size its type allows), and encoding it again
 *     and reading it back in a fresh reader gives the same message;
 *   - once the reader reported a violation it keeps reporting it, with a
 *     reason, and hands out nothing more;
 *   - the same stream fed in other chunk sizes gives the same messages. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "finding.h"

static const enum chan_peer peers[] = {CHAN_FROM_MASTER_TO_WORKER, CHAN_FROM_WORKER,
				       CHAN_FROM_MASTER_TO_MONITOR, CHAN_FROM_MONITOR};

/* A digest of what came out, to compare two feedings. */
struct digest {
	uint64_t h;
	size_t n;
	int end;
};

static void mix(struct digest *d, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		d->h = (d->h ^ b[i]) * 1099511628211ull;
}

static void check_roundtrip(enum chan_peer peer, const struct chan_msg *m)
{
	uint8_t *buf;
	size_t n;
	if (chan_encode(m->type, m->data, m->len, &buf, &n) != 0)
		FINDING("handed out a message chan_encode refuses: type %u len %zu", m->type, m->len);
	struct chan_reader r;
	chan_reader_init(&r, peer);
	chan_reader_feed(&r, buf, n);
	struct chan_msg again;
	if (chan_next(&r, &again) != 1 || again.type != m->type || again.len != m->len ||
	    (m->len && memcmp(again.data, m->data, m->len) != 0))
		FINDING("type %u len %zu does not read back the same", m->type, m->len);
	chan_reader_free(&r);
	free(buf);
}

static struct digest run(enum chan_peer peer, const uint8_t *s, size_t len, unsigned seed)
{
	struct digest d = {.h = 1469598103934665603ull};
	struct chan_reader r;
	chan_reader_init(&r, peer);
	size_t off = 0;
	bool failed = false;
	while (off < len && !failed) {
		seed = seed * 1103515245u + 12345u;
		size_t chunk = 1 + (seed >> 16) % 4096;
		if (chunk > len - off)
			chunk = len - off;
		chan_reader_feed(&r, s + off, chunk);
		off += chunk;
		struct chan_msg m;
		int got;
		while ((got = chan_next(&r, &m)) == 1) {
			check_roundtrip(peer, &m);
			mix(&d, &m.type, sizeof(m.type));
			mix(&d, m.data, m.len);
			d.n++;
		}
		if (got < 0) {
			if (!r.why[0])
				FINDING("a violation without a reason");
			if (chan_next(&r, &m) != got)
				FINDING("a reader went on after a violation");
			failed = true;
			d.end = got;
		}
	}
	chan_reader_free(&r);
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	enum chan_peer peer = peers[data[0] % 4];
	struct digest a = run(peer, data + 2, size - 2, data[1]);
	struct digest b = run(peer, data + 2, size - 2, data[1] ^ 0x5au);
	if (a.h != b.h || a.n != b.n || a.end != b.end)
		FINDING("the chunk sizes changed what came out (%zu vs %zu messages)", a.n, b.n);
	return 0;
}
