/* control: the master's UNIX control socket.  Accepts streamvisorctl
 * clients, checks SO_PEERCRED, reads one JSON request per line (at most
 * 64 KiB, finished within 5 s) and hands it to the master; never blocks
 * the master's loop.
 *
 * Protocol (one JSON object per line each way):
 *   request  {"cmd": "status", "args": ["persist"]}
 *   reply    {"ok": true, ...}  or  {"ok": false, "error": "text", ...}
 *
 *   status [NAME|POOL]        {"ok":true,"node":N,"workers":[{"name","pool","slot","kind",
 *                              "state","pid","incarnation","uptime_ms","beat_age_ms",
 *                              "status","health","processed","failed","restarts",
 *                              "pending","last_exit","last_error"}...],
 *                              "remote":[{"name","node","pool","status","beat_age_ms","stale"}...]}
 *                             unknown target: ok=false.
 *   start|stop|restart T      T = NAME | POOL | "all".  The reply comes when every
 *                             target has settled (RUNNING/STOPPED, or BACKOFF/FATAL for a
 *                             start that failed): {"ok":bool,"results":[{"name","state",
 *                             "pid","error"?}...]}; ok=false when any target did not
 *                             reach the wanted state.
 *   pause|resume T            {"ok":true,"results":[{"name","paused":bool}...]}
 *   reload                    {"ok":true,"changes":["text"...]} or
 *                             {"ok":false,"error":"text","errors":["FILE:LINE: msg"...]}
 *   scale POOL N              {"ok":true,"pool":P,"count":N}
 *   shutdown                  {"ok":true}  (sent before the stop begins)
 *   config                    {"ok":true,"sqlite_path","namespace","node","streams":[...],
 *                              "redis":"redacted url","socket"}
 *   pending | dead ... | drain --yes | forget RUN... --yes   (answered through the monitor)
 *   metrics
 */
#ifndef SV_CONTROL_H
#define SV_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define CONTROL_MAX_REQUEST (64 * 1024)
#define CONTROL_CLIENT_TIMEOUT_MS 5000

struct control;
struct control_client;
struct dispatch;

/* Called for each well-formed request.  The handler answers now with
 * control_reply(), or keeps the client to answer later (deferred replies
 * for start/stop/restart); a client that disconnected meanwhile is dropped
 * and control_reply on it is then a no-op once control_client_alive() is
 * false.  req is borrowed. */
typedef void (*control_handler)(void *ctx, struct control_client *c, json_t *req);

/* Create the socket (checking that no live daemon answers on an existing
 * one), chmod/chown it.  Returns 0 or -errno (logged). */
int control_open(struct control **out, const char *path, mode_t mode, const char *group,
		 control_handler handler, void *ctx);
void control_close(struct control *ctl);
/* Watch the socket and every client from the master's loop (one
 * dispatch file each).  Returns 0 or -errno. */
int control_attach(struct control *ctl, struct dispatch *d);
/* Before each wait of the loop: serve requests held behind a reply that
 * was sent meanwhile, release dropped clients, and say what each client
 * waits for. */
void control_tick(struct control *ctl, int64_t now_ms);
/* Connected clients not yet released. */
size_t control_client_count(const struct control *ctl);
/* Resolve, through NSS, what the peer check needs: control.group's gid
 * and the uids of its listed members.  control_open does it; the master
 * calls it again at reload so membership changes apply.  Accepting a
 * client then only compares ids (SO_PEERCRED uid/gid, the listed uids,
 * the peer's supplementary groups from SO_PEERGROUPS): it never waits
 * on a directory service.  Returns 0 or -ENOENT (no such group, logged;
 * only root and the daemon's uid are then allowed). */
int control_refresh_ids(struct control *ctl, const char *group);
/* Refuse peers of this uid even when they are in control.group: the web
 * child's user, which is in control.group to read the SQLite files but
 * must reach the master only through its channel, where the token and
 * http.actions are checked.  (uid_t)-1: none.  Root and the daemon's own
 * uid are never refused. */
void control_deny_uid(struct control *ctl, uid_t uid);
/* Drop clients that have not finished a line within 5 s; returns the
 * next deadline in ms (or -1). */
int64_t control_timeouts(struct control *ctl, int64_t now_ms);

/* Queue a reply line; steals reply. */
void control_reply(struct control_client *c, json_t *reply);
void control_reply_error(struct control_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Keep a client for a deferred reply (reference counted). */
struct control_client *control_client_ref(struct control_client *c);
void control_client_unref(struct control_client *c);
bool control_client_alive(const struct control_client *c);

/* A client without a socket, for requests another process relays (the
 * web child, src/master_web.c): its one reply is handed to deliver (which
 * owns it) instead of being written.  Returned with one reference, the
 * relayer's: drop it with control_client_relay_cancel when the reply no
 * longer has anywhere to go, or control_client_unref after delivery. */
typedef void (*control_deliver)(void *ctx, json_t *reply);
struct control_client *control_client_relay(control_deliver deliver, void *ctx);
void control_client_relay_cancel(struct control_client *c);

/* Client side (streamvisorctl): connect to path; returns fd or -errno. */
int control_connect(const char *path);
/* Send one request and read one reply line (timeout_ms, -1 = forever).
 * Returns 0 and *reply, or -errno. */
int control_call(int fd, json_t *req, json_t **reply, int timeout_ms);

#endif
