/* master: the supervisor.  One epoll loop (dispatch.h) over signalfd, the
 * control socket and every child's channel and stderr pipe (children.h);
 * forks the pools, judges exits and heartbeats through the proc state
 * machine, reloads, and answers streamvisorctl. */
#ifndef SV_MASTER_H
#define SV_MASTER_H

#include "sv_config.h"

/* Runs until shutdown; takes ownership of cfg.  config_path is re-read on
 * reload.  Returns the process exit status. */
int master_run(struct sv_config *cfg, const char *config_path);

#endif
