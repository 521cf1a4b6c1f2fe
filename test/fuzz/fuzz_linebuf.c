/* libFuzzer harness: the line buffer (linebuf_fill/linebuf_next through a
 * real pipe) and the control request checks applied to each line, without
 * sockets (much faster than fuzz_control).
 *
 * src/control.c is compiled into this harness (#include), so its static
 * helpers (check_request, clean_utf8, error_reply) are called directly;
 * link it against the core library WITHOUT control.o (a static archive does
 * that by itself: every control.c symbol is already defined here).
 *
 * Input: byte 0 picks the line limit (1..64, or CONTROL_MAX_REQUEST when
 * >= 192), byte 1 seeds the sizes of the writes into the pipe, the rest is
 * the byte stream.
 *
 * Checks (abort = finding):
 *   - the lines and -E2BIG reports equal a model: each '\n'-terminated line
 *     longer than the limit is reported once as -E2BIG, every other line
 *     comes out (one trailing '\r' removed; compared as C strings), in
 *     order, whatever the write sizes; at EOF the unterminated rest is
 *     left in the buffer (or was reported if over the limit);
 *   - clean_utf8 keeps the length, leaves valid UTF-8 alone, and always
 *     yields a valid JSON string; error_reply never fails on text built
 *     from a request (so every request gets its one reply);
 *   - check_request accepts exactly objects with a string "cmd" and an
 *     absent/null/array-of-strings "args". */
#include "../../src/control.c"

#include <fcntl.h>

#include "event.h" /* event_valid_text */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "finding.h"

/* The model's and the buffer's output: a line, or an overlong report. */
struct out {
	bool overlong;
	const char *s; /* C string (the model: into a copy of the stream) */
};

static bool valid_utf8(const char *s)
{
	return event_valid_text(s, strlen(s));
}

static void check_line(const char *line)
{
	/* clean_utf8 */
	char *c = clean_utf8(line);
	if (!c)
		abort();
	if (strlen(c) != strlen(line))
		FINDING("clean_utf8 changed the length");
	if (valid_utf8(line) && strcmp(c, line) != 0)
		FINDING("clean_utf8 changed valid UTF-8");
	json_t *js = json_string(c);
	if (!js)
		FINDING("clean_utf8 output is not valid UTF-8: %s", c);
	json_decref(js);
	free(c);

	/* handle_line's parse and checks */
	size_t sp = strspn(line, " \t\r");
	if (!line[sp])
		return;
	json_error_t err;
	json_t *req = json_loads(line, JSON_REJECT_DUPLICATES, &err);
	const char *bad = req ? check_request(req) : NULL;
	if (req) {
		json_t *cmd = json_object_get(req, "cmd");
		json_t *args = json_object_get(req, "args");
		bool args_ok = !args || json_is_null(args);
		if (json_is_array(args)) {
			args_ok = true;
			for (size_t i = 0; i < json_array_size(args); i++)
				args_ok = args_ok && json_is_string(json_array_get(args, i));
		}
		bool ok = json_is_object(req) && json_is_string(cmd) && args_ok;
		if (ok != !bad)
			FINDING("check_request %s a request it should %s", bad ? "refused" : "accepted",
				ok ? "accept" : "refuse");
	}
	char msg[300];
	if (!req)
		snprintf(msg, sizeof(msg), "invalid JSON: %s", err.text);
	else
		snprintf(msg, sizeof(msg), "%s", bad ? bad : "ok");
	char full[1024];
	snprintf(full, sizeof(full), "bad request: %s", msg);
	json_t *r = error_reply(full);
	if (!r)
		FINDING("error_reply failed for \"%s\": the client would get no reply", full);
	char *d = json_dumps(r, JSON_COMPACT);
	if (!d)
		FINDING("error reply cannot be encoded");
	free(d);
	json_decref(r);
	json_decref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = data[0] >= 192 ? CONTROL_MAX_REQUEST : 1 + data[0] % 64;
	uint32_t seed = data[1] * 2654435761u + 1;
	const char *stream = (const char *)data + 2;
	size_t n = size - 2;

	/* The model, on a copy of the stream (lines become C strings). */
	char *copy = malloc(n + 1);
	struct out *want = calloc(n + 2, sizeof(*want));
	struct out *got = calloc(n + 2, sizeof(*got));
	char **gotlines = calloc(n + 2, sizeof(char *));
	if (!copy || !want || !got || !gotlines)
		abort();
	memcpy(copy, stream, n);
	copy[n] = '\0';
	size_t nwant = 0, i = 0;
	const char *rest = NULL;
	bool rest_overlong = false;
	while (i < n) {
		char *nl = memchr(copy + i, '\n', n - i);
		if (!nl) {
			rest = copy + i;
			if (n - i > max) {
				rest_overlong = true;
				want[nwant++] = (struct out){true, NULL};
			}
			break;
		}
		size_t len = (size_t)(nl - (copy + i));
		*nl = '\0';
		if (len > max) {
			want[nwant++] = (struct out){true, NULL};
		} else {
			if (len > 0 && copy[i + len - 1] == '\r')
				copy[i + len - 1] = '\0';
			want[nwant++] = (struct out){false, copy + i};
		}
		i += len + 1;
	}

	/* The real thing, through a pipe in chunks of varying size. */
	int p[2];
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		abort();
	struct linebuf lb;
	linebuf_init(&lb, max);
	size_t ngot = 0, off = 0;
	bool eof = false;
	while (!eof) {
		if (off < n) {
			seed = seed * 1103515245u + 12345u;
			size_t chunk = 1 + (seed >> 8) % (seed & 0x100 ? 4096 : 16);
			if (chunk > n - off)
				chunk = n - off;
			ssize_t w = write(p[1], stream + off, chunk);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				abort();
		} else if (p[1] >= 0) {
			close(p[1]);
			p[1] = -1;
		}
		for (;;) {
			ssize_t r = linebuf_fill(&lb, p[0]);
			if (r == -EAGAIN)
				break;
			if (r < 0)
				FINDING("linebuf_fill: %zd", r);
			if (r == 0) {
				eof = true;
				break;
			}
			char *line;
			int k;
			while ((k = linebuf_next(&lb, &line)) != 0) {
				if (ngot >= n + 2)
					FINDING("more output than input lines");
				if (k == -E2BIG) {
					got[ngot++] = (struct out){true, NULL};
				} else if (k == 1) {
					if (strlen(line) > max)
						FINDING("line longer than the limit returned");
					gotlines[ngot] = strdup(line);
					got[ngot] = (struct out){false, gotlines[ngot]};
					ngot++;
					check_line(line);
				} else {
					FINDING("linebuf_next returned %d", k);
				}
			}
		}
	}
	close(p[0]);

	/* Compare. */
	bool same = ngot == nwant;
	for (size_t k = 0; same && k < ngot; k++)
		same = got[k].overlong == want[k].overlong &&
		       (got[k].overlong || strcmp(got[k].s, want[k].s) == 0);
	if (!same) {
		for (size_t k = 0; k < ngot || k < nwant; k++)
			fprintf(stderr, "  #%zu got %s want %s\n", k,
				k < ngot ? (got[k].overlong ? "E2BIG" : got[k].s) : "-",
				k < nwant ? (want[k].overlong ? "E2BIG" : want[k].s) : "-");
		FINDING("linebuf output differs from the model (max %zu)", max);
	}
	/* The unterminated rest stays in the buffer (as control.c reads it at
	 * EOF), unless it was reported overlong. */
	size_t left = lb.len - lb.off;
	if (rest && !rest_overlong) {
		size_t rl = n - (size_t)(rest - copy); /* raw bytes, NULs included */
		if (lb.discarding || left != rl || memcmp(lb.buf + lb.off, stream + (rest - copy), rl) != 0)
			FINDING("unterminated rest not kept (left %zu, want %zu)", left, rl);
	}
	if (!rest && left != 0)
		FINDING("bytes left after the last newline: %zu", left);

	linebuf_free(&lb);
	for (size_t k = 0; k < ngot; k++)
		free(gotlines[k]);
	free(gotlines);
	free(got);
	free(want);
	free(copy);
	return 0;
}
