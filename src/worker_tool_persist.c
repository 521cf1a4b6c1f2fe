/* worker_tool_persist: persistent tools in the tool kind (issue 13,
 * doc/handlers.md sections 1 and 2).
 *
 * Every call of a persistent tool, once checked (not done, not
 * forgotten), is taken here and deferred (CE_DEFER): it waits in a FIFO
 * until its tool's handler (handler.h) has a free slot, is sent, and its
 * answer (or failure) is published with the exec tools' publish script on
 * a second Redis connection of our own (pt->pub), usable while the
 * consumer's read blocks on the first.  Entries in hand are renewed every
 * claim_idle_ms / 3 on that connection under the owner check; one no
 * longer owned is forgotten (an answer for it is dropped).
 *
 * A call that was in flight when its handler died (suspect) has its
 * delivery count raised durably (XCLAIM ... RETRYCOUNT n+1 under the owner
 * check) and is re-sent alone; over the pool's max_deliveries it is
 * dead-lettered (consumer_settle CE_DEAD).  While a tool holds suspect
 * calls, no fresh call is sent to its handler. */
#include "worker_tool_persist.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "log.h"
#include "util.h"
#include "worker_tool.h"

/* Owner check, then the delivery count raised by one (RETRYCOUNT sets it
 * even with JUSTID): KEYS[1] the stream; ARGV[1] group, ARGV[2] consumer,
 * ARGV[3] the id.  Returns the new count, or -1 when not ours. */
static const char bump_script[] =
	"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1) "
	"if not p[1] or p[1][2] ~= ARGV[2] then return -1 end "
	"local n = tonumber(p[1][4]) + 1 "
	"redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', n, 'JUSTID') "
	"return n";

/* A publish that failed for want of a connection is retried this often. */
#define PT_RETRY_MS 200

enum pc_state {
	PC_WAITING,   /* in hand, not sent (new, or suspect to re-send) */
	PC_SENT,      /* in flight in the handler */
	PC_ANSWERED,  /* answered or failed: to publish */
	PC_LOST,      /* in flight, but no longer ours: its event drops it */
};

struct pt_tool;

struct pt_call {
	struct call call;      /* const strings point into own[] below */
	char *own[6];
	struct pt_tool *tool;
	uint64_t id;
	int64_t taken_ms, deadline_ms, deliveries;
	enum pc_state state;
	bool suspect;
	bool drop;             /* lost while not in flight: remove now */
	json_t *out_json;      /* answer: output as given */
	char *out_text;        /* or an error text */
	bool is_error;
	int64_t duration_ms;
};

struct pt_tool {
	struct pt *pt;
	const struct tool_config *t;
	struct handler *h;
};

struct pt {
	const struct sv_config *cfg;
	const struct pool_config *pool;
	struct pt_tool *tools;
	size_t ntools;
	struct rconn pub;
	bool pub_init;
	struct consumer *c;
	struct pt_call **calls;  /* in the order taken */
	size_t n, cap;
	uint64_t next_id;
	int64_t next_renew, next_retry;
	bool stopping, abandoned;
};

/* ---------- calls ---------- */

static void pc_free(struct pt_call *pc)
{
	if (!pc)
		return;
	worker_tool_call_free(&pc->call);
	for (size_t i = 0; i < ARRAY_SIZE(pc->own); i++)
		free(pc->own[i]);
	json_decref(pc->out_json);
	free(pc->out_text);
	free(pc);
}

static ssize_t pc_index(const struct pt *pt, const struct pt_call *pc)
{
	for (size_t i = 0; i < pt->n; i++)
		if (pt->calls[i] == pc)
			return (ssize_t)i;
	return -1;
}

/* Forget a call (it stays pending if not published: CE_DROP). */
static void pc_remove(struct pt *pt, struct pt_call *pc)
{
	ssize_t i = pc_index(pt, pc);
	if (i >= 0) {
		memmove(pt->calls + i, pt->calls + i + 1, (pt->n - (size_t)i - 1) * sizeof(*pt->calls));
		pt->n--;
	}
	pc_free(pc);
}

bool pt_holds(const struct pt *pt, const char *stream, const char *id)
{
	if (!pt)
		return false;
	for (size_t i = 0; i < pt->n; i++) {
		const struct pt_call *pc = pt->calls[i];
		if (pc->state != PC_LOST && strcmp(pc->call.entry_id, id) == 0 && strcmp(pc->call.stream, stream) == 0)
			return true;
	}
	return false;
}

static size_t count_state(const struct pt *pt, enum pc_state s)
{
	size_t k = 0;
	for (size_t i = 0; i < pt->n; i++)
		k += pt->calls[i]->state == s;
	return k;
}

/* ---------- handler events ---------- */

/* The per tool counters of the heartbeat (status and metrics). */
static void count_call(struct pt *pt, const struct pt_call *pc, enum hb_tool_result res)
{
	if (pt->c)
		heartbeat_tool_call(consumer_host(pt->c)->hb, pc->tool->t->name, res, pc->duration_ms * 1000);
}

static void ev_answer(void *ctx, void *owner, const json_t *output, const char *error)
{
	struct pt *pt = ctx;
	struct pt_call *pc = owner;
	if (pc->state == PC_LOST) {
		log_kv(LOG_INFO, KV("tool", pc->tool->t->name, "call_id", pc->call.call_id, "entry", pc->call.entry_id),
		       "answer for a call no longer ours (claimed by another consumer): dropped");
		pc_remove(pt, pc);
		return;
	}
	pc->state = PC_ANSWERED;
	pc->suspect = false;
	pc->duration_ms = util_mono_ms() - pc->taken_ms;
	if (error) {
		pc->out_text = util_xstrdup(error);
		pc->is_error = true;
	} else {
		pc->out_json = json_incref((json_t *)output);
		pc->is_error = false;
	}
	count_call(pt, pc, pc->is_error ? HB_TOOL_ERROR : HB_TOOL_OK);
}

static void ev_failed(void *ctx, void *owner, const char *why)
{
	struct pt *pt = ctx;
	struct pt_call *pc = owner;
	if (pc->state == PC_LOST) {
		pc_remove(pt, pc);
		return;
	}
	pc->state = PC_ANSWERED;
	pc->suspect = false;
	pc->duration_ms = util_mono_ms() - pc->taken_ms;
	pc->out_text = util_xstrdup(why);
	pc->is_error = true;
	/* handler.h: a timeout's why is "timed out after N ms". */
	count_call(pt, pc, strncmp(why, "timed out", 9) == 0 ? HB_TOOL_TIMEOUT : HB_TOOL_ERROR);
}

static void ev_suspect(void *ctx, void *owner)
{
	struct pt *pt = ctx;
	struct pt_call *pc = owner;
	if (pc->state == PC_LOST || pt->stopping) {
		/* Stopping: left pending for the successor (CE_DROP). */
		pc_remove(pt, pc);
		return;
	}
	pc->state = PC_WAITING;
	pc->suspect = true;
}

static const struct handler_events pt_events = {
	.answer = ev_answer,
	.failed = ev_failed,
	.suspect = ev_suspect,
	.state = NULL,
};

/* ---------- Redis on our own connection ---------- */

static bool pub_ready(struct pt *pt)
{
	return pt->pub.c || rconn_ready(&pt->pub, util_mono_ms());
}

/* Publish answered calls; those that cannot be (no connection) wait. */
static void flush_answers(struct pt *pt, struct consumer *c)
{
	const struct consumer_host *h = consumer_host(c);
	for (size_t i = 0; i < pt->n;) {
		struct pt_call *pc = pt->calls[i];
		if (pc->state != PC_ANSWERED) {
			i++;
			continue;
		}
		if (!pub_ready(pt))
			return;
		struct outcome oc = {.output = pc->out_text, .json_output = pc->out_json, .is_error = pc->is_error,
				     .exit_code = -1, .duration_ms = pc->duration_ms};
		int r = worker_tool_publish(&pt->pub, c, &pc->call, &oc);
		if (r == -ENOTCONN) {
			pt->next_retry = util_mono_ms() + PT_RETRY_MS;
			return;
		}
		if (r == 0) {
			h->hb->processed++;
			if (pc->is_error)
				h->hb->failed++;
		} else if (r == TOOL_FORGOTTEN) {
			h->hb->forgotten++;
			log_kv(LOG_INFO, KV("run", pc->call.run, "call_id", pc->call.call_id, "entry", pc->call.entry_id),
			       "tool call finished after its run was forgotten: output dropped, acked");
		} else {
			/* -EPROTO (logged) / -ENOMEM: not acked, delivered again. */
			consumer_settle(c, pc->call.stream, pc->call.entry_id, CE_DROP, NULL);
		}
		pc_remove(pt, pc);
	}
}

/* Raise a suspect call's delivery count: the new count, 0 when the entry
 * is no longer ours, -ENOTCONN. */
static long long bump(struct pt *pt, struct consumer *c, const struct pt_call *pc)
{
	if (!pub_ready(pt))
		return -ENOTCONN;
	const char *argv[] = {"EVAL", bump_script, "1", pc->call.stream, consumer_group(c), consumer_name(c),
			      pc->call.entry_id};
	redisReply *r = rconn_commandv(&pt->pub, (int)ARRAY_SIZE(argv), argv, NULL);
	if (!r)
		return -ENOTCONN;
	long long n;
	if (r->type == REDIS_REPLY_INTEGER) {
		n = r->integer > 0 ? r->integer : 0;
	} else {
		/* Scripting refused: count in memory, as well as we can. */
		log_warn("%s: %s: %s", __func__, pc->call.entry_id, r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
		n = pc->deliveries + 1;
	}
	freeReplyObject(r);
	return n;
}

/* Renew every entry in hand, one script per stream. */
static void renew(struct pt *pt, struct consumer *c)
{
	if (!pt->n || !pub_ready(pt))
		return;
	const char **ids = util_xcalloc(pt->n, sizeof(*ids));
	bool *owned = util_xcalloc(pt->n, sizeof(*owned));
	struct pt_call **which = util_xcalloc(pt->n, sizeof(*which));
	bool *done = util_xcalloc(pt->n, sizeof(*done));
	for (size_t i = 0; i < pt->n; i++) {
		if (done[i] || pt->calls[i]->state == PC_LOST)
			continue;
		const char *stream = pt->calls[i]->call.stream;
		size_t k = 0;
		for (size_t j = i; j < pt->n; j++)
			if (!done[j] && pt->calls[j]->state != PC_LOST && strcmp(pt->calls[j]->call.stream, stream) == 0) {
				done[j] = true;
				ids[k] = pt->calls[j]->call.entry_id;
				which[k++] = pt->calls[j];
			}
		memset(owned, 0, k * sizeof(*owned));
		if (consumer_renew_on(c, &pt->pub, stream, ids, k, owned) < 0)
			break; /* -ENOTCONN: next time */
		for (size_t j = 0; j < k; j++) {
			if (owned[j])
				continue;
			struct pt_call *pc = which[j];
			log_kv(LOG_WARN, KV("tool", pc->tool->t->name, "call_id", pc->call.call_id, "entry", pc->call.entry_id),
			       "entry claimed by another consumer: call forgotten, its answer will be dropped");
			pc->drop = pc->state != PC_SENT; /* sent: dropped at its event */
			pc->state = PC_LOST;
		}
	}
	/* Waiting or answered calls no longer ours go now; sent ones at their
	 * event (the handler still holds them). */
	for (size_t i = 0; i < pt->n;) {
		struct pt_call *pc = pt->calls[i];
		if (pc->drop) {
			pc_remove(pt, pc);
			continue;
		}
		i++;
	}
	free(ids);
	free(owned);
	free(which);
	free(done);
}

/* ---------- sending ---------- */

static void send_one(struct pt *pt, struct pt_tool *tl, struct pt_call *pc, unsigned flags)
{
	struct handler_call hc = {.id = ++pt->next_id, .call_id = pc->call.call_id, .run = pc->call.run,
				  .name = pc->call.name, .arguments = pc->call.arguments,
				  .deadline_ms = pc->deadline_ms, .timeout_ms = tl->t->timeout_ms, .owner = pc,
				  .flags = flags};
	int r = handler_send(tl->h, &hc);
	if (r == 0) {
		pc->id = hc.id;
		pc->state = PC_SENT;
	}
}

/* Waiting calls past their deadline (it counts from when the worker took
 * them) get their timeout output here, unsent.  Found by handler_hang: a
 * pool serving several tools takes calls for any of them (capacity() is
 * the sum of all free slots), so calls of a tool whose handler hangs
 * queued past their deadline; sent then, each timed out at once and,
 * with concurrency 1, killed and restarted the handler, one restart per
 * queued call. */
static void expire_waiting(struct pt *pt, int64_t now)
{
	for (size_t i = 0; i < pt->n; i++) {
		struct pt_call *pc = pt->calls[i];
		if (pc->state != PC_WAITING || now < pc->deadline_ms)
			continue;
		log_kv(LOG_WARN, KV("tool", pc->tool->t->name, "call_id", pc->call.call_id, "entry", pc->call.entry_id),
		       "call timed out before its handler could take it");
		char msg[64];
		snprintf(msg, sizeof(msg), "timed out after %lld ms", (long long)pc->tool->t->timeout_ms);
		pc->state = PC_ANSWERED;
		pc->suspect = false;
		pc->duration_ms = now - pc->taken_ms;
		pc->out_text = util_xstrdup(msg);
		pc->is_error = true;
	}
}

/* Send waiting calls to the handlers with free slots: suspect ones alone
 * (nothing else in flight), fresh ones only while the tool holds none. */
static void pump(struct pt *pt, struct consumer *c)
{
	if (pt->stopping || pt->abandoned)
		return;
	expire_waiting(pt, util_mono_ms());
	for (size_t k = 0; k < pt->ntools; k++) {
		struct pt_tool *tl = &pt->tools[k];
		bool suspects = false;
		for (size_t i = 0; i < pt->n; i++)
			if (pt->calls[i]->tool == tl && pt->calls[i]->state == PC_WAITING && pt->calls[i]->suspect)
				suspects = true;
		/* A suspect call still in flight also holds fresh ones back. */
		for (size_t i = 0; i < pt->n; i++)
			if (pt->calls[i]->tool == tl && pt->calls[i]->state == PC_SENT && pt->calls[i]->suspect)
				suspects = true;
		if (suspects) {
			if (handler_inflight(tl->h) > 0 || handler_free_slots(tl->h) == 0)
				continue;
			for (size_t i = 0; i < pt->n; i++) {
				struct pt_call *pc = pt->calls[i];
				if (pc->tool != tl || pc->state != PC_WAITING || !pc->suspect)
					continue;
				long long n = bump(pt, c, pc);
				if (n == -ENOTCONN)
					break;
				if (n == 0) {
					pc_remove(pt, pc);
					i--;
					continue;
				}
				pc->deliveries = n;
				if (n > pt->pool->max_deliveries) {
					char why[96];
					snprintf(why, sizeof(why), "handler died %lld times on this call", n - 1);
					log_kv(LOG_WARN, KV("tool", tl->t->name, "call_id", pc->call.call_id,
							    "entry", pc->call.entry_id),
					       "%s: dead letter", why);
					consumer_settle(c, pc->call.stream, pc->call.entry_id, CE_DEAD, why);
					pc_remove(pt, pc);
					i--;
					continue;
				}
				log_kv(LOG_INFO, KV("tool", tl->t->name, "call_id", pc->call.call_id, "entry", pc->call.entry_id),
				       "re-dispatching a call its handler died with (delivery %lld), alone", n);
				send_one(pt, tl, pc, HANDLER_CALL_SUSPECT);
				if (pc->state == PC_SENT)
					heartbeat_tool_redispatch(consumer_host(c)->hb, tl->t->name);
				break;
			}
			continue;
		}
		for (size_t i = 0; i < pt->n && handler_free_slots(tl->h) > 0; i++) {
			struct pt_call *pc = pt->calls[i];
			if (pc->tool != tl || pc->state != PC_WAITING)
				continue;
			send_one(pt, tl, pc, 0);
			if (pc->state != PC_SENT)
				break;
		}
	}
}

/* ---------- status ---------- */

static void show_text(char *dst, size_t len, const char *src)
{
	int cut = 0;
	char *t = worker_tool_sanitize(src, strlen(src), len - 4, &cut);
	snprintf(dst, len, "%s%s", t ? t : "", cut ? "..." : "");
	free(t);
}

/* The heartbeat's handlers (handler_status), at most HB_HANDLERS_MAX. */
static void show_handlers(struct pt *pt, struct heartbeat *hb)
{
	hb->nhandlers = 0;
	for (size_t k = 0; k < pt->ntools && hb->nhandlers < HB_HANDLERS_MAX; k++) {
		struct pt_tool *tl = &pt->tools[k];
		if (!tl->h)
			continue;
		struct handler_status st;
		handler_status(tl->h, &st);
		struct hb_handler *x = &hb->handlers[hb->nhandlers++];
		show_text(x->tool, sizeof(x->tool), tl->t->name);
		x->pid = st.pid;
		snprintf(x->state, sizeof(x->state), "%s", handler_state_name(st.state));
		x->draining = st.draining;
		x->inflight = st.inflight;
		x->served = st.served;
		x->restarts = st.restarts;
		show_text(x->last_error, sizeof(x->last_error), st.last_error ? st.last_error : "");
	}
}

/* The heartbeat's calls: those in flight first, then the waiting ones;
 * and the handlers. */
static void show(struct pt *pt, struct consumer *c)
{
	struct heartbeat *hb = consumer_host(c)->hb;
	show_handlers(pt, hb);
	hb->ncalls = 0;
	hb->calls_more = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < pt->n; i++) {
			const struct pt_call *pc = pt->calls[i];
			bool running = pc->state == PC_SENT;
			if (pc->state == PC_LOST || running != (pass == 0))
				continue;
			if (hb->ncalls == HB_CALLS_MAX) {
				hb->calls_more++;
				continue;
			}
			struct hb_call *k = &hb->calls[hb->ncalls++];
			show_text(k->run, sizeof(k->run), pc->call.run);
			show_text(k->call_id, sizeof(k->call_id), pc->call.call_id);
			show_text(k->tool, sizeof(k->tool), pc->call.name);
			snprintf(k->entry, sizeof(k->entry), "%s", pc->call.entry_id);
			k->running = running;
		}
	if (hb->status == HB_IDLE || hb->status == HB_BUSY)
		hb->status = hb->ncalls ? HB_BUSY : HB_IDLE;
}

/* ---------- life ---------- */

struct pt *pt_new(const struct sv_config *cfg, const struct pool_config *pool)
{
	size_t k = 0;
	for (size_t i = 0; i < cfg->ntools; i++)
		k += cfg->tools[i].mode == TOOL_PERSISTENT && config_pool_serves(pool, cfg->tools[i].name);
	if (!k)
		return NULL;
	struct pt *pt = util_xcalloc(1, sizeof(*pt));
	pt->cfg = cfg;
	pt->pool = pool;
	pt->tools = util_xcalloc(k, sizeof(*pt->tools));
	for (size_t i = 0; i < cfg->ntools; i++)
		if (cfg->tools[i].mode == TOOL_PERSISTENT && config_pool_serves(pool, cfg->tools[i].name))
			pt->tools[pt->ntools++] = (struct pt_tool){.pt = pt, .t = &cfg->tools[i]};
	return pt;
}

int pt_start(struct pt *pt, struct consumer *c)
{
	pt->c = c;
	if (!pt->pub_init) {
		rconn_init(&pt->pub, pt->cfg, 5000);
		pt->pub_init = true;
	}
	for (size_t k = 0; k < pt->ntools; k++) {
		if (pt->tools[k].h)
			continue;
		pt->tools[k].h = handler_new(pt->tools[k].t, pt->cfg, &pt_events, pt);
		if (!pt->tools[k].h)
			return -ENOMEM;
		log_info("pool %s: handler for persistent tool %s (concurrency %lld)", pt->pool->name,
			 pt->tools[k].t->name, (long long)pt->tools[k].t->concurrency);
	}
	return 0;
}

enum consumer_verdict pt_take(struct pt *pt, struct consumer *c, const struct consumer_entry *ce, struct call *call,
			      const struct tool_config *t)
{
	struct pt_tool *tl = NULL;
	for (size_t k = 0; k < pt->ntools && !tl; k++)
		if (pt->tools[k].t == t)
			tl = &pt->tools[k];
	if (!tl || !tl->h)
		return CE_DROP; /* not served here (cannot happen: pools[].tools acks first) */
	struct pt_call *pc = util_xcalloc(1, sizeof(*pc));
	pc->call = *call;
	const char **cs[] = {&pc->call.stream, &pc->call.entry_id, &pc->call.logical_id, &pc->call.run,
			     &pc->call.call_id, &pc->call.name};
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++) {
		pc->own[i] = util_xstrdup(*cs[i]);
		*cs[i] = pc->own[i];
	}
	/* The owned strings moved. */
	call->arguments = call->done_key = call->done_hash = call->forgotten_key = NULL;
	pc->tool = tl;
	pc->taken_ms = util_mono_ms();
	pc->deadline_ms = pc->taken_ms + t->timeout_ms;
	pc->deliveries = ce->deliveries;
	pc->state = PC_WAITING;
	if (pt->n == pt->cap) {
		pt->cap = pt->cap ? pt->cap * 2 : 64;
		pt->calls = realloc(pt->calls, pt->cap * sizeof(*pt->calls));
		if (!pt->calls)
			abort();
	}
	pt->calls[pt->n++] = pc;
	(void)c;
	return CE_DEFER;
}

void pt_after_batch(struct pt *pt, struct consumer *c)
{
	pump(pt, c);
	show(pt, c);
}

/* Stop taking calls: handlers get EOF, waiting calls are left pending. */
static void begin_stop(struct pt *pt)
{
	if (pt->stopping)
		return;
	pt->stopping = true;
	size_t left = 0;
	for (size_t i = 0; i < pt->n;) {
		if (pt->calls[i]->state == PC_WAITING) {
			pc_remove(pt, pt->calls[i]);
			left++;
			continue;
		}
		i++;
	}
	log_info("stopping: %zu calls in flight drain, %zu waiting left pending", pt->n, left);
	int64_t now = util_mono_ms();
	for (size_t k = 0; k < pt->ntools; k++)
		if (pt->tools[k].h)
			handler_stop(pt->tools[k].h, now);
}

static void abandon_all(struct pt *pt)
{
	if (pt->abandoned)
		return;
	pt->abandoned = true;
	pt->stopping = true;
	for (size_t k = 0; k < pt->ntools; k++) {
		handler_free(pt->tools[k].h);
		pt->tools[k].h = NULL;
	}
	if (pt->n)
		log_warn("supervisor gone: handlers killed, %zu calls left pending", pt->n);
	for (size_t i = 0; i < pt->n; i++)
		pc_free(pt->calls[i]);
	pt->n = 0;
}

/* The host's stop and abandon, seen from the hooks. */
static void check_host(struct pt *pt)
{
	if (!pt->c)
		return;
	const struct consumer_host *h = consumer_host(pt->c);
	if (h->abandon(h->ctx))
		abandon_all(pt);
	else if (h->stopping(h->ctx))
		begin_stop(pt);
}

size_t pt_poll_fds(struct pt *pt, struct pollfd *fds, size_t max, int64_t *deadline_ms)
{
	check_host(pt);
	if (pt->abandoned)
		return 0;
	size_t n = 0;
	for (size_t k = 0; k < pt->ntools; k++)
		if (pt->tools[k].h)
			n += handler_poll_fds(pt->tools[k].h, fds + n, max - n, deadline_ms);
	if (pt->n && pt->next_renew < *deadline_ms)
		*deadline_ms = pt->next_renew;
	/* Waiting calls time out too (expire_waiting). */
	for (size_t i = 0; i < pt->n; i++)
		if (pt->calls[i]->state == PC_WAITING && pt->calls[i]->deadline_ms < *deadline_ms)
			*deadline_ms = pt->calls[i]->deadline_ms;
	if (count_state(pt, PC_ANSWERED) && pt->next_retry < *deadline_ms)
		*deadline_ms = pt->next_retry;
	return n;
}

/* Service, publish, renew, send; show: the heartbeat's calls are ours
 * (not while an exec call of the same pool runs: it shows that one). */
static void service(struct pt *pt, struct consumer *c, const struct pollfd *fds, size_t n, bool show_calls)
{
	check_host(pt);
	if (pt->abandoned)
		return;
	int64_t now = util_mono_ms();
	for (size_t k = 0; k < pt->ntools; k++)
		if (pt->tools[k].h)
			handler_service(pt->tools[k].h, fds, n, now);
	flush_answers(pt, c);
	if (now >= pt->next_renew) {
		int64_t every = pt->pool->claim_idle_ms / 3;
		pt->next_renew = now + (every > 0 ? every : 1);
		renew(pt, c);
	}
	pump(pt, c);
	if (show_calls)
		show(pt, c);
}

void pt_poll_ready(struct pt *pt, struct consumer *c, const struct pollfd *fds, size_t n)
{
	service(pt, c, fds, n, true);
}

void pt_service_exec(struct pt *pt, struct consumer *c, const struct pollfd *fds, size_t n)
{
	if (pt && pt->c)
		service(pt, c, fds, n, false);
}

size_t pt_capacity(struct pt *pt)
{
	check_host(pt);
	if (pt->stopping)
		return 0;
	size_t slots = 0;
	for (size_t k = 0; k < pt->ntools; k++)
		if (pt->tools[k].h)
			slots += handler_free_slots(pt->tools[k].h);
	size_t waiting = count_state(pt, PC_WAITING);
	return slots > waiting ? slots - waiting : 0;
}

void pt_finish(struct pt *pt, struct consumer *c)
{
	if (!pt || !c)
		return;
	pt->c = c;
	check_host(pt);
	begin_stop(pt);
	const struct consumer_host *h = consumer_host(c);
	/* handler_stop kills what is left at stop_timeout_ms; a little more
	 * for the last answers to be read and published. */
	int64_t until = util_mono_ms() + pt->cfg->restart.stop_timeout_ms + 500;
	for (;;) {
		check_host(pt);
		if (pt->abandoned)
			break;
		bool stopped = true;
		for (size_t k = 0; k < pt->ntools; k++)
			stopped = stopped && (!pt->tools[k].h || handler_stopped(pt->tools[k].h));
		if ((stopped && !count_state(pt, PC_ANSWERED)) || util_mono_ms() >= until)
			break;
		struct pollfd fds[CONSUMER_POLL_MAX];
		int64_t deadline = util_mono_ms() + 100;
		size_t n = pt_poll_fds(pt, fds, ARRAY_SIZE(fds), &deadline);
		for (size_t i = 0; i < n; i++)
			fds[i].revents = 0;
		int64_t wait = deadline - util_mono_ms();
		if (poll(fds, n, (int)(wait > 0 ? (wait < 100 ? wait : 100) : 0)) < 0 && errno != EINTR)
			break;
		service(pt, c, fds, n, true);
		if (h->rc->c && heartbeat_due(h->hb, util_mono_ms()))
			heartbeat_beat(h->hb, h->rc);
	}
	if (pt->n)
		log_warn("stopped with %zu calls unanswered: left pending for the successor", pt->n);
	for (size_t i = 0; i < pt->n; i++) {
		consumer_settle(c, pt->calls[i]->call.stream, pt->calls[i]->call.entry_id, CE_DROP, NULL);
		pc_free(pt->calls[i]);
	}
	pt->n = 0;
	for (size_t k = 0; k < pt->ntools; k++) {
		handler_free(pt->tools[k].h);
		pt->tools[k].h = NULL;
	}
	show(pt, c);
}

void pt_free(struct pt *pt)
{
	if (!pt)
		return;
	for (size_t k = 0; k < pt->ntools; k++)
		handler_free(pt->tools[k].h);
	for (size_t i = 0; i < pt->n; i++)
		pc_free(pt->calls[i]);
	free(pt->calls);
	free(pt->tools);
	if (pt->pub_init)
		rconn_close(&pt->pub);
	free(pt);
}
