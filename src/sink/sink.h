/*
 * sink.h - `tern sink`: an SMTP test server that keeps what it receives in
 * memory, shows it over an HTTP JSON API and misbehaves on purpose.
 *
 * struct sink ties the parts together: the SMTP server (session hooks in
 * sink.c), the store (store.c), the faults (fault.c) and the HTTP API
 * (api.c, which sees only what struct sink_api hands it).  Everything runs
 * on one event loop, so none of it needs locks.
 */
#ifndef TERN_SINK_SINK_H
#define TERN_SINK_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "sink/api.h"
#include "sink/fault.h"
#include "sink/store.h"

struct event_base;
struct smtp_server;
struct sink_disk;

struct sink_user {
    char *name, *pass;
};

enum sink_auth { SINK_AUTH_NONE, SINK_AUTH_ANY, SINK_AUTH_FILE };

struct sink {
    struct event_base *base;
    struct smtp_server *smtp;
    struct sink_api api; /* points at store, faults and the counters below */
    struct sink_store store;
    struct fault_state faults;
    enum sink_auth auth;
    struct sink_user *users;
    size_t nusers;
    const char *hostname;
    bool quiet;
    struct sink_disk *disk; /* --store DIR (sink/disk.c), NULL without */
    uint64_t connections, messages_refused;
};

int sink_main(int argc, char **argv);

#endif
