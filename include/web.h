/* web: the web child (issue 15): the web console and the JSON API over
 * HTTP (libmicrohttpd), and GET /metrics.  The master binds the listening
 * sockets, forks, drops to http.user and execs `streamvisord --web-child`
 * with fd 3 the channel (chan.h, CHAN_M_WEB_CONFIG / CHAN_M_WEB_REPLY in,
 * CHAN_W_WEB_REQUEST out), fd 4 the HTTP listener and fd 5 the
 * metrics-only listener (each may be closed).  The child holds no Redis
 * password and no token: it asks the master for everything but run
 * snapshots, which it reads from the SQLite files read-only.  The design is
 * /work/notes/web-spec.md; the internals are in web_int.h. */
#ifndef SV_WEB_H
#define SV_WEB_H

/* The child's main after exec: 0 after SIGTERM or the channel's EOF,
 * SV_EX_TRANSIENT (1) on a runtime failure, SV_EX_CONFIG (78) for a
 * configuration it cannot use. */
int web_main(void);

#endif
