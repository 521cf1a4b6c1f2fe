/* worker_tool: run configured commands for tool.call events. */
#include "worker_tool.h"
#include "worker_tool_int.h"
#include "worker_tool_persist.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "spawn.h"
#include "util.h"

#define TOOL_KILL_GRACE_MS 1000
#define TOOL_DONE_TTL_S "86400"
#define OUTPUT_ID_MAX 48 /* a stream entry id, "ms-seq", NUL included */

/* Done keys and forgotten runs, shared by both scripts below.  KEYS[1] the
 * call's done key of earlier versions (worker_tool_done_key), KEYS[2] the
 * run's done hash (worker_tool_done_hash), KEYS[3] NS:forgotten;
 * ARGV[1] run, ARGV[2] call id, ARGV[3] the call's entry id, ARGV[4] the
 * done TTL in seconds, ARGV[5] the call's logical id (origin_id for a
 * re-driven dead letter, else the entry id).
 *   forgotten(): the call's logical id sorts before its run's forget
 *     position: it belongs to a forgotten run (also when re-driven from a
 *     dead letter after the forget).
 *   done(): the hash has the call, or an old-style key does that was set
 *     after the run's last forget (its set time is told by its TTL; an
 *     older one belongs to the forgotten run: forget cannot find those
 *     keys without a SCAN). */
#define DONE_LUA \
	"local function split(id) " \
	"  local a, b = string.match(id or '', '^(%d+)-(%d+)$') " \
	"  return tonumber(a), tonumber(b) " \
	"end " \
	"local tomb = redis.call('HGET', KEYS[3], ARGV[1]) " \
	"local function forgotten() " \
	"  local am, as = split(ARGV[5]) " \
	"  local bm, bs = split(tomb) " \
	"  return am ~= nil and bm ~= nil and (am < bm or (am == bm and as < bs)) " \
	"end " \
	"local function done() " \
	"  if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return true end " \
	"  local ttl = redis.call('PTTL', KEYS[1]) " \
	"  if ttl == -2 then return false end " \
	"  local bm = split(tomb) " \
	"  if ttl < 0 or bm == nil then return true end " \
	"  local t = redis.call('TIME') " \
	"  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) " \
	"  return now - (tonumber(ARGV[4]) * 1000 - ttl) >= bm " \
	"end "

/* Before running a call: 2 its run was forgotten since, 1 done, 0 to run. */
static const char check_script[] =
	DONE_LUA
	"if forgotten() then return 2 end "
	"if done() then return 1 end "
	"return 0";

/* Publish: unless the call's run was forgotten meanwhile (a call in
 * flight at the forget publishes nothing: returns -1) or the call is done
 * already, XADD the output and record it in the run's done hash (call id
 * -> output id, the hash's TTL renewed); XACK either way.  KEYS[4] the
 * stream; ARGV[6] the group; ARGV[7] "1": the call's stream was found by a
 * pattern, and a stream deleted meanwhile (a harness reset) is never
 * created again by a late output (EXISTS rather than NOMKSTREAM: Redis
 * before 6.2 has none); ARGV[8..] the entry's fields. */
static const char publish_script[] =
	DONE_LUA
	"if forgotten() then "
	"  redis.call('XACK', KEYS[4], ARGV[6], ARGV[3]) "
	"  return -1 "
	"end "
	"if not done() then "
	"  local id = 'done' "
	"  if ARGV[7] == '0' or redis.call('EXISTS', KEYS[4]) == 1 then "
	"    id = redis.call('XADD', KEYS[4], '*', unpack(ARGV, 8)) "
	"  end "
	"  redis.call('HSET', KEYS[2], ARGV[2], id) "
	"  redis.call('EXPIRE', KEYS[2], ARGV[4]) "
	"end "
	"return redis.call('XACK', KEYS[4], ARGV[6], ARGV[3])";


/* The kind's own state; host services (connection, heartbeat, waiting,
 * the master) come through consumer_host() of the consumer in hand. */
struct tool_worker {
	const struct sv_config *cfg;
	struct pt *pt;         /* persistent tools the pool serves; NULL: none */
};

void worker_tool_call_free(struct call *call)
{
	free(call->arguments);
	free(call->done_key);
	free(call->done_hash);
	free(call->forgotten_key);
	call->arguments = call->done_key = call->done_hash = call->forgotten_key = NULL;
}

/* ---------- UTF-8 ---------- */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp;
	if (c >= 0x01 && c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

char *worker_tool_sanitize(const char *buf, size_t len, size_t max, int *truncated)
{
	const unsigned char *s = (const unsigned char *)buf;
	char *out = malloc(max + 4);
	if (!out)
		return NULL;
	size_t o = 0;
	*truncated = len > max;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(s + i, len - i);
		const char *piece = n ? (const char *)s + i : "\xEF\xBF\xBD";
		size_t plen = n ? n : 3;
		if (o + plen > max) {
			*truncated = 1;
			break;
		}
		memcpy(out + o, piece, plen);
		o += plen;
		i += n ? n : 1;
	}
	out[o] = '\0';
	return out;
}

/* ---------- decoding the call ---------- */

/* Longest key of the short form: what the 512-byte buffer of earlier
 * versions held untruncated, so their done keys stay valid. */
#define DONE_KEY_SHORT_MAX 511

char *worker_tool_done_key(const char *ns, const char *run, const char *call_id)
{
	char *key = util_xasprintf("%s:tool:%s:%s", ns, run, call_id);
	if (strlen(key) <= DONE_KEY_SHORT_MAX)
		return key;
	/* Longer than any short-form key, so the two forms never meet; the
	 * run's length says where the run ends and the call id begins. */
	free(key);
	return util_xasprintf("%s:tool:%zu:%s:%s", ns, strlen(run), run, call_id);
}

char *worker_tool_done_hash(const char *ns, const char *run)
{
	return util_xasprintf("%s:tooldone:%s", ns, run);
}

static const char *field(const struct sv_entry *e, const char *name, size_t *len)
{
	const char *v = NULL;
	for (size_t i = 0; i < e->nfields; i++)
		if (e->fields[i].name_len == strlen(name) && memcmp(e->fields[i].name, name, e->fields[i].name_len) == 0) {
			v = e->fields[i].value;
			if (len)
				*len = e->fields[i].value_len;
		}
	return v;
}

static bool is_tool_call(const struct sv_entry *e)
{
	size_t len = 0;
	const char *t = field(e, "type", &len);
	return t && len == 9 && memcmp(t, "tool.call", 9) == 0;
}

/* Returns NULL, or a dead-letter reason. */
static const char *call_decode(const char *ns, const struct consumer_entry *ce, json_t **data,
			       struct call *call)
{
	memset(call, 0, sizeof(*call));
	size_t dlen = 0;
	const char *run = field(&ce->e, "run", NULL);
	const char *draw = field(&ce->e, "data", &dlen);
	const char *seq = field(&ce->e, "seq", NULL);
	if (!run || !*run)
		return "missing run";
	*data = draw ? json_loadb(draw, dlen, JSON_ALLOW_NUL, NULL) : NULL;
	if (!json_is_object(*data))
		return "data is not a JSON object";
	const char *call_id = json_string_value(json_object_get(*data, "call_id"));
	if (!call_id)
		call_id = field(&ce->e, "call_id", NULL);
	const char *name = json_string_value(json_object_get(*data, "name"));
	if (!call_id || !*call_id)
		return "tool.call without call_id";
	if (!name)
		return "tool.call without name";
	call->stream = ce->e.stream;
	call->entry_id = ce->e.id;
	const char *origin = field(&ce->e, "origin_id", NULL);
	call->logical_id = origin ? origin : ce->e.id;
	call->run = run;
	call->call_id = call_id;
	call->name = name;
	call->seq = seq ? atoll(seq) : 0;
	json_t *args = json_object_get(*data, "arguments");
	/* Arguments given as a JSON string are passed as that string's text;
	 * anything else as its JSON encoding. */
	call->arguments = json_is_string(args) ? util_xstrdup(json_string_value(args))
			  : args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY)
				 : util_xstrdup("{}");
	call->done_key = worker_tool_done_key(ns, run, call_id);
	call->done_hash = worker_tool_done_hash(ns, run);
	call->forgotten_key = util_xasprintf("%s:forgotten", ns);
	return NULL;
}

/* ---------- running ---------- */

struct run_state {
	const struct consumer_host *host;
	struct consumer *c;
	struct consumer_batch *batch;  /* the rest of it waits: renew it too */
	size_t index;
	const struct tool_config *tool;
	const struct call *call;
	struct pt *pt;         /* the pool's persistent tools, or NULL */
	pid_t pid;
	int pidfd;             /* readable when the tool exits (-1: poll by time) */
	int in, out, err;
	size_t in_off, in_len;
	char *outbuf;
	size_t outlen, outcap;
	struct linebuf errlb;
	int64_t start, deadline, kill_at, next_renew;
	bool timed_out;
	int status;
	bool exited;
	struct spawn_rate stderr_rate;
};

static void tool_stderr_line(struct run_state *rs, const char *line)
{
	unsigned suppressed;
	bool take = spawn_rate_take(&rs->stderr_rate, util_mono_ms(), &suppressed);
	if (suppressed)
		log_warn("tool %s call %s: %u stderr lines suppressed", rs->tool->name, rs->call->call_id, suppressed);
	if (!take)
		return;
	log_kv(LOG_INFO, KV("tool", rs->tool->name, "call_id", rs->call->call_id), "tool stderr: %.1000s", line);
}

static void read_out(struct run_state *rs)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(rs->out, buf, sizeof(buf));
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(rs->out);
				rs->out = -1;
			}
			return;
		}
		/* Keep max_output + 1 bytes: enough to know it was cut. */
		size_t keep = (size_t)rs->tool->max_output + 1;
		size_t room = rs->outlen < keep ? keep - rs->outlen : 0;
		size_t take = (size_t)n < room ? (size_t)n : room;
		if (rs->outlen + take > rs->outcap) {
			rs->outcap = rs->outlen + take + 4096;
			rs->outbuf = realloc(rs->outbuf, rs->outcap);
			if (!rs->outbuf)
				abort();
		}
		memcpy(rs->outbuf + rs->outlen, buf, take);
		rs->outlen += take;
	}
}

static void read_err(struct run_state *rs)
{
	ssize_t n;
	do {
		n = linebuf_fill(&rs->errlb, rs->err);
		char *line;
		int r;
		while ((r = linebuf_next(&rs->errlb, &line)) != 0)
			if (r > 0)
				tool_stderr_line(rs, line);
	} while (n > 0);
	if (n == 0 || (n < 0 && n != -EAGAIN)) {
		close(rs->err);
		rs->err = -1;
	}
}

static void write_in(struct run_state *rs)
{
	while (rs->in_off < rs->in_len) {
		ssize_t n = write(rs->in, rs->call->arguments + rs->in_off, rs->in_len - rs->in_off);
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			break; /* EPIPE: the tool does not read its input */
		}
		rs->in_off += (size_t)n;
	}
	close(rs->in);
	rs->in = -1;
}

/* For status only (heartbeat and master): nothing is signalled because
 * of it (orphans are found by the kernel's word, children.h). */
static void tell_pgid(const struct consumer_host *h, pid_t pgid)
{
	h->work_group(h->ctx, pgid);
	h->hb->tool_pgid = pgid;
}

/* Renew our claim on the entry in hand, and on the entries of the batch
 * still waiting, while the tool runs: none of them may look idle to
 * another worker's XAUTOCLAIM.  False when the entry in hand was taken;
 * waiting entries that were taken are dropped from the batch. */
static bool renew_claim(struct run_state *rs)
{
	struct consumer_batch *b = rs->batch;
	if (!rs->host->rc->c)
		return true; /* cannot tell now: keep going */
	const char **ids = malloc((b->n + 1) * sizeof(*ids));
	bool *owned = calloc(b->n + 1, sizeof(*owned));
	size_t *which = malloc((b->n + 1) * sizeof(*which));
	if (!ids || !owned || !which)
		abort();
	size_t n = 0;
	ids[n] = rs->call->entry_id, which[n++] = rs->index;
	for (size_t i = rs->index + 1; i < b->n; i++)
		if (b->v[i].verdict == CE_UNDECIDED)
			ids[n] = b->v[i].e.id, which[n++] = i;
	bool mine = true;
	if (consumer_renew(rs->c, rs->call->stream, ids, n, owned) >= 0) {
		mine = owned[0];
		for (size_t k = 1; k < n; k++)
			if (!owned[k])
				b->v[which[k]].verdict = CE_DROP;
	}
	free(ids);
	free(owned);
	free(which);
	return mine;
}

/* Fork and exec the tool with the call's ids in its environment.
 * Returns 0 with rs->pid, rs->pidfd and the parent's pipe ends set, or a
 * negative errno with nothing left open and no child left unreaped. */
static int spawn_tool(struct run_state *rs)
{
	/* Whole ids, however long (a cut one would name another call). */
	char *env[] = {util_xasprintf("STREAMVISOR_RUN=%s", rs->call->run),
		       util_xasprintf("STREAMVISOR_CALL_ID=%s", rs->call->call_id)};
	struct spawn_proc p;
	int r = spawn_tool_start(rs->tool, env, ARRAY_SIZE(env), false, &p);
	free(env[0]);
	free(env[1]);
	if (r < 0)
		return r;
	rs->pid = p.pid;
	rs->pidfd = p.pidfd;
	rs->in = p.in;
	rs->out = p.out;
	rs->err = p.err;
	return 0;
}

static void kill_group(pid_t pgid, int sig)
{
	spawn_kill_group(pgid, sig);
}

static void run_loop(struct run_state *rs, struct outcome *oc)
{
	const struct consumer_host *h = rs->host;
	int64_t renew_every = h->pool->claim_idle_ms / 3;
	rs->next_renew = rs->start + renew_every;
	while (!rs->exited || rs->out >= 0 || rs->err >= 0) {
		int64_t now = util_mono_ms();
		if (!rs->timed_out && now >= rs->deadline) {
			rs->timed_out = true;
			log_warn("tool %s call %s timed out after %lld ms: SIGTERM", rs->tool->name, rs->call->call_id,
				 (long long)rs->tool->timeout_ms);
			kill_group(rs->pid, SIGTERM);
			rs->kill_at = now + TOOL_KILL_GRACE_MS;
		}
		if (rs->kill_at && now >= rs->kill_at) {
			kill_group(rs->pid, SIGKILL);
			rs->kill_at = 0;
		}
		if (h->abandon(h->ctx) && !oc->interrupted) {
			/* The master is gone: do not leave a tool behind. */
			oc->interrupted = true;
			kill_group(rs->pid, SIGKILL);
		}
		if (now >= rs->next_renew) {
			rs->next_renew = now + renew_every;
			if (!renew_claim(rs)) {
				log_warn("tool %s call %s: entry %s was claimed by another consumer: killing the tool, publishing nothing",
					 rs->tool->name, rs->call->call_id, rs->call->entry_id);
				oc->stolen = true;
				kill_group(rs->pid, SIGKILL);
			}
		}
		if (h->rc->c && heartbeat_due(h->hb, now))
			heartbeat_beat(h->hb, h->rc);
		else if (!h->rc->c)
			rconn_ready(h->rc, now);

		/* 5 of ours, then the persistent handlers' (a pool serving both
		 * kinds): they are serviced while the exec tool runs. */
		struct pollfd fds[5 + CONSUMER_POLL_MAX];
		nfds_t n = 0;
		int iin = -1, iout = -1, ierr = -1;
		if (rs->in >= 0)
			iin = (int)n, fds[n++] = (struct pollfd){.fd = rs->in, .events = POLLOUT};
		if (rs->out >= 0)
			iout = (int)n, fds[n++] = (struct pollfd){.fd = rs->out, .events = POLLIN};
		if (rs->err >= 0)
			ierr = (int)n, fds[n++] = (struct pollfd){.fd = rs->err, .events = POLLIN};
		/* The host's news (pause, stop, the master gone) wakes us too. */
		int wake = -1;
		if (h->wake_fd >= 0)
			wake = (int)n, fds[n++] = (struct pollfd){.fd = h->wake_fd, .events = POLLIN};
		if (rs->pidfd >= 0 && !rs->exited)
			fds[n++] = (struct pollfd){.fd = rs->pidfd, .events = POLLIN};
		/* Without a pidfd the exit is noticed by polling. */
		int64_t wait = rs->pidfd >= 0 ? 1000 : 20;
		if (rs->deadline - now < wait)
			wait = rs->deadline - now > 0 ? rs->deadline - now : 0;
		if (rs->kill_at && rs->kill_at - now < wait)
			wait = rs->kill_at - now > 0 ? rs->kill_at - now : 0;
		if (rs->next_renew - now < wait)
			wait = rs->next_renew - now > 0 ? rs->next_renew - now : 0;
		int64_t until_beat = heartbeat_next_ms(h->hb, now);
		if (until_beat < wait)
			wait = until_beat;
		nfds_t npt0 = n;
		size_t npt = 0;
		if (rs->pt) {
			int64_t deadline = now + wait;
			npt = pt_poll_fds(rs->pt, fds + n, CONSUMER_POLL_MAX, &deadline);
			n += npt;
			if (deadline - now < wait)
				wait = deadline - now > 0 ? deadline - now : 0;
		}
		for (nfds_t i = 0; i < n; i++)
			fds[i].revents = 0;
		poll(fds, n, (int)wait);
		if (rs->pt)
			pt_service_exec(rs->pt, rs->c, fds + npt0, npt);
		if (iin >= 0 && fds[iin].revents)
			write_in(rs);
		if (iout >= 0 && fds[iout].revents)
			read_out(rs);
		if (ierr >= 0 && fds[ierr].revents)
			read_err(rs);
		if (wake >= 0 && fds[wake].revents)
			h->wait(h->ctx, 0);
		if (!rs->exited && waitpid(rs->pid, &rs->status, WNOHANG) == rs->pid) {
			rs->exited = true;
			/* Descendants that kept our pipes open die with the group. */
			kill_group(rs->pid, SIGKILL);
		}
	}
	if (rs->in >= 0)
		close(rs->in);
	rs->in = -1;
	if (rs->pidfd >= 0)
		close(rs->pidfd);
	rs->pidfd = -1;
}

/* Killed by a signal (an rlimit's SIGXCPU or SIGKILL, a crash): an error
 * with no exit code.  A tool that printed nothing gets the reason as its
 * output, like a timeout, so the caller sees more than an empty string. */
static void note_signal_death(const struct run_state *rs, struct outcome *oc)
{
	int sig = WIFSIGNALED(rs->status) ? WTERMSIG(rs->status) : 0;
	const char *what = sig == SIGXCPU ? ": rlimits.cpu_s" : "";
	oc->is_error = 1;
	log_kv(LOG_WARN, KV("tool", rs->tool->name, "call_id", rs->call->call_id), "tool killed by signal %d (%s%s)",
	       sig, strsignal(sig), what);
	if (oc->output && oc->output[0] == '\0') {
		char msg[96];
		snprintf(msg, sizeof(msg), "killed by signal %d (%s%s)", sig, strsignal(sig), what);
		free(oc->output);
		oc->output = util_xstrdup(msg);
	}
}

static void run_tool(struct consumer *c, struct consumer_batch *b, size_t index, const struct tool_config *t,
		     const struct call *call, struct pt *pt, struct outcome *oc)
{
	const struct consumer_host *h = consumer_host(c);
	struct run_state rs = {.host = h, .c = c, .batch = b, .index = index, .tool = t, .call = call, .pt = pt,
			       .pidfd = -1, .in = -1, .out = -1, .err = -1};
	rs.in_len = strlen(call->arguments);
	linebuf_init(&rs.errlb, 4096);
	rs.start = util_mono_ms();
	rs.deadline = rs.start + t->timeout_ms;
	oc->exit_code = -1;
	int r = spawn_tool(&rs);
	if (r < 0) {
		/* spawn_tool left no fd open and no child behind. */
		oc->is_error = 1;
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot start %s: %s", t->command.v[0], strerror(-r));
		oc->output = util_xstrdup(msg);
		linebuf_free(&rs.errlb);
		oc->duration_ms = util_mono_ms() - rs.start;
		return;
	}
	h->hb->status = HB_BUSY;
	snprintf(h->hb->current, sizeof(h->hb->current), "%s", call->entry_id);
	tell_pgid(h, rs.pid);
	if (h->rc->c)
		heartbeat_beat(h->hb, h->rc);
	run_loop(&rs, oc);
	tell_pgid(h, 0);
	linebuf_free(&rs.errlb);
	oc->duration_ms = util_mono_ms() - rs.start;
	if (rs.timed_out) {
		oc->timed_out = true;
		char msg[64];
		snprintf(msg, sizeof(msg), "timed out after %lld ms", (long long)t->timeout_ms);
		oc->output = util_xstrdup(msg);
		oc->is_error = 1;
	} else {
		oc->output = worker_tool_sanitize(rs.outbuf ? rs.outbuf : "", rs.outlen, (size_t)t->max_output,
						  &oc->truncated);
		if (WIFEXITED(rs.status)) {
			oc->exit_code = WEXITSTATUS(rs.status);
			oc->is_error = oc->exit_code != 0;
		} else {
			note_signal_death(&rs, oc);
		}
	}
	free(rs.outbuf);
}

/* ---------- publishing ---------- */


/* One Lua script: done keys, forgotten run, tool.output, XACK.  Returns
 * 0, TOOL_FORGOTTEN (the run was forgotten while the tool ran: nothing
 * published, acked), -ENOMEM, -ENOTCONN (dropped) or -EPROTO (the script
 * failed; logged). */
int worker_tool_publish(struct rconn *rc, struct consumer *c, const struct call *call, const struct outcome *oc)
{
	json_t *data = json_pack("{s:s, s:s, s:s, s:b, s:I, s:b}", "call_id", call->call_id, "name", call->name,
				 "output", oc->output ? oc->output : "", "is_error", oc->is_error, "duration_ms",
				 (json_int_t)oc->duration_ms, "truncated", oc->truncated);
	/* A handler's output is stored as given: a string stays a string,
	 * any other JSON value is embedded as that value (the reducer keeps
	 * data.output whatever its type). */
	if (data && oc->json_output)
		json_object_set(data, "output", oc->json_output);
	json_object_set_new(data, "exit_code", oc->exit_code >= 0 ? json_integer(oc->exit_code) : json_null());
	char *djs = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	if (!djs)
		return -ENOMEM;
	char seq[24], ts[24];
	snprintf(seq, sizeof(seq), "%lld", (long long)call->seq);
	snprintf(ts, sizeof(ts), "%lld", (long long)util_wall_ms());
	const char *argv[32];
	int n = 0;
	argv[n++] = "EVAL";
	argv[n++] = publish_script;
	argv[n++] = "4";
	argv[n++] = call->done_key;
	argv[n++] = call->done_hash;
	argv[n++] = call->forgotten_key;
	argv[n++] = call->stream; /* the call's own stream (a per-run stream too) */
	argv[n++] = call->run;
	argv[n++] = call->call_id;
	argv[n++] = call->entry_id;
	argv[n++] = TOOL_DONE_TTL_S;
	argv[n++] = call->logical_id;
	argv[n++] = consumer_group(c);
	/* A literal name, or a stream a pattern found? */
	argv[n++] = config_strlist_has(&consumer_host(c)->pool->streams, call->stream) ? "0" : "1";
	argv[n++] = "run";
	argv[n++] = call->run;
	argv[n++] = "type";
	argv[n++] = "tool.output";
	argv[n++] = "call_id";
	argv[n++] = call->call_id;
	if (call->seq > 0) {
		argv[n++] = "parent_seq";
		argv[n++] = seq;
	}
	argv[n++] = "ts";
	argv[n++] = ts;
	argv[n++] = "data";
	argv[n++] = djs;
	redisReply *r = rconn_commandv(rc, n, argv, NULL);
	free(djs);
	if (!r)
		return -ENOTCONN;
	int ret = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		log_error("%s: publishing tool.output for %s/%s: %s", __func__, call->run, call->call_id, r->str);
		ret = -EPROTO;
	} else if (r->type == REDIS_REPLY_INTEGER && r->integer == -1) {
		ret = TOOL_FORGOTTEN;
	}
	freeReplyObject(r);
	return ret;
}

/* The id of a done call's tool.output (OUTPUT_ID_MAX bytes), for the log
 * of a call skipped as done; "" when nothing says (an old-style done key,
 * or the call's stream was gone at the publish). */
static void done_output(struct rconn *rc, const struct call *call, char *output)
{
	output[0] = '\0';
	redisReply *r = rconn_command(rc, "HGET %s %s", call->done_hash, call->call_id);
	if (r && r->type == REDIS_REPLY_STRING && r->len < OUTPUT_ID_MAX &&
	    strspn(r->str, "0123456789-") == (size_t)r->len)
		memcpy(output, r->str, (size_t)r->len + 1);
	if (r)
		freeReplyObject(r);
}

/* Before running: TOOL_RUN, TOOL_DONE, TOOL_FORGOTTEN, or -ENOTCONN. */
static int call_state(struct rconn *rc, const struct call *call)
{
	const char *argv[] = {"EVAL", check_script, "3", call->done_key, call->done_hash, call->forgotten_key,
			      call->run, call->call_id, call->entry_id, TOOL_DONE_TTL_S, call->logical_id};
	redisReply *r = rconn_commandv(rc, (int)ARRAY_SIZE(argv), argv, NULL);
	if (!r)
		return -ENOTCONN;
	int state = TOOL_RUN;
	if (r->type == REDIS_REPLY_INTEGER && (r->integer == TOOL_DONE || r->integer == TOOL_FORGOTTEN))
		state = (int)r->integer;
	else if (r->type == REDIS_REPLY_ERROR)
		log_warn("%s: done check for %s/%s: %s (running it)", __func__, call->run, call->call_id, r->str);
	freeReplyObject(r);
	return state;
}

/* ---------- the calls in hand, for status ---------- */

/* text as the heartbeat shows it: valid UTF-8, cut with "..." */
static void call_text(char *dst, size_t len, const char *src, size_t srclen)
{
	int cut = 0;
	char *t = worker_tool_sanitize(src, srclen, len - 4, &cut);
	snprintf(dst, len, "%s%s", t ? t : "", cut ? "..." : "");
	free(t);
}

static void call_show(struct hb_call *k, const char *run, size_t runlen, const char *call_id, size_t idlen,
		      const char *tool, size_t toollen, const char *entry, bool running)
{
	call_text(k->run, sizeof(k->run), run, runlen);
	call_text(k->call_id, sizeof(k->call_id), call_id, idlen);
	call_text(k->tool, sizeof(k->tool), tool, toollen);
	snprintf(k->entry, sizeof(k->entry), "%s", entry);
	k->running = running;
}

/* A waiting tool.call of the batch, shown as call_decode would read it;
 * false when it does not decode (it will be dead-lettered). */
static bool call_peek(const struct consumer_entry *ce, struct hb_call *k)
{
	size_t rlen = 0, dlen = 0, clen = 0;
	const char *run = field(&ce->e, "run", &rlen);
	const char *draw = field(&ce->e, "data", &dlen);
	json_t *data = draw ? json_loadb(draw, dlen, JSON_ALLOW_NUL, NULL) : NULL;
	json_t *jid = json_object_get(data, "call_id"), *jname = json_object_get(data, "name");
	const char *call_id = json_string_value(jid);
	clen = call_id ? json_string_length(jid) : 0;
	if (!call_id)
		call_id = field(&ce->e, "call_id", &clen);
	bool ok = run && rlen && call_id && clen && json_is_string(jname);
	if (ok)
		call_show(k, run, rlen, call_id, clen, json_string_value(jname), json_string_length(jname), ce->e.id,
			  false);
	json_decref(data);
	return ok;
}

/* The heartbeat's calls: the one about to run, then the tool calls of
 * the batch waiting behind it (bounded: the rest only counted). */
static void calls_show(struct heartbeat *hb, const struct consumer_batch *b, size_t index, const struct call *call)
{
	hb->ncalls = 1;
	hb->calls_more = 0;
	call_show(&hb->calls[0], call->run, strlen(call->run), call->call_id, strlen(call->call_id), call->name,
		  strlen(call->name), call->entry_id, true);
	for (size_t i = index + 1; i < b->n; i++) {
		const struct consumer_entry *ce = &b->v[i];
		if (ce->verdict != CE_UNDECIDED || !is_tool_call(&ce->e))
			continue;
		if (hb->ncalls == HB_CALLS_MAX)
			hb->calls_more++;
		else if (call_peek(ce, &hb->calls[hb->ncalls]))
			hb->ncalls++;
	}
}

/* After a call's output is published: nothing in hand.  With no other
 * call waiting the worker is idle, and says so now, not at its next
 * beat (up to an interval and a block later). */
static void calls_done(const struct consumer_host *h, bool ran)
{
	bool waiting = h->hb->ncalls > 1;
	h->hb->ncalls = 0;
	h->hb->calls_more = 0;
	h->hb->current[0] = '\0';
	if (!ran || waiting)
		return; /* the next call's start beats */
	h->hb->status = HB_IDLE;
	if (h->rc->c)
		heartbeat_beat(h->hb, h->rc);
}

static void handle_call(struct tool_worker *tw, struct consumer *c, struct consumer_batch *b, size_t index)
{
	struct consumer_entry *ce = &b->v[index];
	const struct consumer_host *h = consumer_host(c);
	json_t *data = NULL;
	struct call call;
	const char *reason = call_decode(tw->cfg->namespace, ce, &data, &call);
	if (reason) {
		ce->verdict = CE_DEAD;
		ce->reason = reason;
		json_decref(data);
		worker_tool_call_free(&call);
		return;
	}
	if (index > 0 && b->history == false) {
		const char *ids[1] = {ce->e.id};
		bool owned = true;
		if (consumer_renew(c, ce->e.stream, ids, 1, &owned) >= 0 && !owned) {
			ce->verdict = CE_DROP;
			json_decref(data);
			worker_tool_call_free(&call);
			return;
		}
	}
	bool ran = false;
	int state = call_state(h->rc, &call);
	if (state == TOOL_DONE) {
		char output[OUTPUT_ID_MAX];
		done_output(h->rc, &call, output);
		log_kv(LOG_INFO, KV("run", call.run, "call_id", call.call_id),
		       "tool.call entry %s of %s: call already done, output entry %s: acked, not run again",
		       ce->e.id, ce->e.stream, output[0] ? output : "not recorded");
		ce->verdict = CE_ACK;
	} else if (state == TOOL_FORGOTTEN) {
		log_kv(LOG_INFO, KV("run", call.run, "call_id", call.call_id, "entry", ce->e.id),
		       "tool call of a forgotten run (written before its forget): acked, not run");
		h->hb->forgotten++;
		ce->verdict = CE_ACK;
	} else if (state < 0) {
		ce->verdict = CE_DROP; /* connection lost: it stays pending, taken over later */
	} else {
		if (ce->deliveries > 1) {
			/* Delivered before: a worker may have run it already and
			 * died before publishing (execution is at least once). */
			h->hb->reruns++;
			log_kv(LOG_INFO, KV("run", call.run, "call_id", call.call_id, "entry", ce->e.id),
			       "tool call delivered %lld times and not done: running it again (a re-run)",
			       (long long)ce->deliveries);
		}
		struct outcome oc = {0};
		const struct tool_config *t = config_find_tool(tw->cfg, call.name);
		if (t && t->mode == TOOL_PERSISTENT && tw->pt) {
			/* The handler answers later: the kind owns the entry. */
			ce->verdict = pt_take(tw->pt, c, ce, &call, t);
			calls_done(h, false);
			json_decref(data);
			worker_tool_call_free(&call);
			return;
		}
		if (!t) {
			char msg[300];
			snprintf(msg, sizeof(msg), "unknown tool: %s", call.name);
			oc.output = util_xstrdup(msg);
			oc.is_error = 1;
			oc.exit_code = -1;
			log_kv(LOG_WARN, KV("run", call.run, "call_id", call.call_id), "unknown tool %s", call.name);
		} else {
			calls_show(h->hb, b, index, &call);
			run_tool(c, b, index, t, &call, tw->pt, &oc);
			ran = true;
			if (!oc.stolen && !oc.interrupted)
				heartbeat_tool_call(h->hb, t->name,
						    oc.timed_out ? HB_TOOL_TIMEOUT : oc.is_error ? HB_TOOL_ERROR : HB_TOOL_OK,
						    oc.duration_ms * 1000);
		}
		int pr;
		if (oc.stolen || oc.interrupted) {
			ce->verdict = CE_DROP;
		} else if ((pr = worker_tool_publish(h->rc, c, &call, &oc)) == TOOL_FORGOTTEN) {
			ce->verdict = CE_DONE;
			h->hb->forgotten++;
			log_kv(LOG_INFO, KV("run", call.run, "call_id", call.call_id, "entry", ce->e.id),
			       "tool call finished after its run was forgotten: output dropped, acked");
		} else if (pr == 0) {
			ce->verdict = CE_DONE;
			if (oc.is_error)
				h->hb->failed++;
		} else {
			ce->verdict = CE_DROP; /* not acked: delivered again */
		}
		free(oc.output);
	}
	calls_done(h, ran);
	json_decref(data);
	worker_tool_call_free(&call);
}

/* Does the pool serve the call's tool?  A call whose name cannot be read
 * is the pool's to dead-letter (true). */
static bool serves_call(const struct pool_config *pool, const struct sv_entry *e)
{
	if (!pool->tools_given)
		return true;
	size_t dlen = 0;
	const char *draw = field(e, "data", &dlen);
	json_t *data = draw ? json_loadb(draw, dlen, JSON_ALLOW_NUL, NULL) : NULL;
	const char *name = json_string_value(json_object_get(data, "name"));
	bool serves = !name || config_pool_serves(pool, name);
	json_decref(data);
	return serves;
}

static int tool_batch(void *ctx, struct consumer *c, struct consumer_batch *b)
{
	struct tool_worker *tw = ctx;
	const struct consumer_host *h = consumer_host(c);
	for (size_t i = 0; i < b->n; i++) {
		struct consumer_entry *ce = &b->v[i];
		if (ce->verdict != CE_UNDECIDED)
			continue;
		if (pt_holds(tw->pt, ce->e.stream, ce->e.id)) {
			/* Handed over again (own pending after a reconnect): it is
			 * in hand already. */
			ce->verdict = CE_DEFER;
			continue;
		}
		if (!is_tool_call(&ce->e)) {
			ce->verdict = CE_ACK; /* not ours to act on */
			continue;
		}
		if (!serves_call(h->pool, &ce->e)) {
			/* Another pool's tool (pools[].tools): acked, no output,
			 * its done key untouched, so that pool answers. */
			ce->verdict = CE_ACK;
			continue;
		}
		if (h->stopping(h->ctx)) {
			ce->verdict = CE_DROP; /* stopping: leave the rest pending */
			continue;
		}
		handle_call(tw, c, b, i);
	}
	if (tw->pt)
		pt_after_batch(tw->pt, c);
	return 0;
}

/* Persistent tools (issue 13): their handlers are created here and
 * started at the first service of the poll loop. */
static int tool_start(void *ctx, struct consumer *c)
{
	struct tool_worker *tw = ctx;
	return tw->pt ? pt_start(tw->pt, c) : 0;
}

static size_t tool_poll_fds(void *ctx, struct pollfd *fds, size_t max, int64_t *deadline_ms)
{
	return pt_poll_fds(((struct tool_worker *)ctx)->pt, fds, max, deadline_ms);
}

static void tool_poll_ready(void *ctx, struct consumer *c, const struct pollfd *fds, size_t n)
{
	pt_poll_ready(((struct tool_worker *)ctx)->pt, c, fds, n);
}

static size_t tool_capacity(void *ctx)
{
	return pt_capacity(((struct tool_worker *)ctx)->pt);
}

int worker_tool_init(const struct sv_config *cfg, const struct pool_config *pool, struct consumer_kind *kind)
{
	struct tool_worker *tw = util_xcalloc(1, sizeof(*tw));
	tw->cfg = cfg;
	tw->pt = pool ? pt_new(cfg, pool) : NULL;
	kind->ctx = tw;
	kind->start = tool_start;
	kind->idle = NULL;
	kind->batch = tool_batch;
	/* Exec only: no hooks, the loop is exactly the one without them. */
	kind->poll_fds = tw->pt ? tool_poll_fds : NULL;
	kind->poll_ready = tw->pt ? tool_poll_ready : NULL;
	kind->capacity = tw->pt ? tool_capacity : NULL;
	return 0;
}

void worker_tool_finish(struct consumer_kind *kind, struct consumer *c)
{
	struct tool_worker *tw = kind->ctx;
	if (tw && tw->pt)
		pt_finish(tw->pt, c);
}

void worker_tool_free(struct consumer_kind *kind)
{
	struct tool_worker *tw = kind->ctx;
	if (tw)
		pt_free(tw->pt);
	free(kind->ctx);
	kind->ctx = NULL;
}
