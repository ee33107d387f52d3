/*
 * queue.c - `tern queue list|show|retry|delete`: the administrator's view of
 * the spool of `tern serve`.
 *
 * list and show read the queue directory without changing it (items being
 * written or cut short are skipped).  retry asks the running server (its
 * pid in DATA_DIR/tern.pid) to try every queued item now.  delete removes an
 * item's files; the running server drops it at its next attempt, and no
 * notice is sent to the sender (an administrator's decision).  --json
 * prints machine-readable output (jansson).
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/admin.h"
#include "core/log.h"
#include "queue/store.h"
#include "conf/config.h"

static const char queue_usage[] =
    "usage: tern queue [--config FILE] [--json] list\n"
    "       tern queue [--config FILE] [--json] show ID\n"
    "       tern queue [--config FILE] retry\n"
    "       tern queue [--config FILE] delete ID...\n"
    "\n"
    "list     every queued message: id, age, sender, recipients pending/sent/failed\n"
    "show     one message: envelope, each recipient's status and last error\n"
    "retry    ask the running server to try every queued message now (SIGUSR1)\n"
    "delete   remove messages from the queue (no notice to the sender)\n";

struct queue_list {
    bool json;
    json_t *arr;
    size_t n;
};

static void queue_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *queue_env_json(const struct envelope *env, bool full)
{
    char created[32], next[32];
    queue_time(env->created, created, sizeof(created));
    queue_time(env->next_attempt, next, sizeof(next));
    json_t *r = json_array();
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *x = &env->rcpts[i];
        json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "address", x->addr, "status",
                              envelope_status_name(x->status), "attempts", (int)x->attempts,
                              "error", x->error);
        if (full) {
            json_object_set_new(o, "original", json_string(x->orig));
            json_object_set_new(o, "target", json_string(x->target));
        }
        json_array_append_new(r, o);
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", env->id, "sender", env->sender, "created",
                     created, "next_attempt", next, "recipients", r);
}

static void queue_list_item(void *ctx, struct envelope *env)
{
    struct queue_list *ql = ctx;
    ql->n++;
    if (ql->json) {
        json_array_append_new(ql->arr, queue_env_json(env, false));
        return;
    }
    int64_t age = (int64_t)time(NULL) - env->created;
    printf("%s  %6llds  <%s>  pending %zu, sent %zu, failed %zu\n", env->id, (long long)age,
           env->sender, envelope_count(env, ENV_RCPT_PENDING), envelope_count(env, ENV_RCPT_SENT),
           envelope_count(env, ENV_RCPT_FAILED));
}

static int queue_signal_server(const struct conf *c)
{
    char path[CONF_STR_MAX + 16];
    long pid = 0;
    snprintf(path, sizeof(path), "%s/tern.pid", c->data_dir);
    FILE *f = fopen(path, "r");
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        if (f)
            fclose(f);
        fprintf(stderr, "tern queue: %s: no running server found\n", path);
        return -1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGUSR1) < 0) {
        fprintf(stderr, "tern queue: signal to pid %ld: %s\n", pid, strerror(errno));
        return -1;
    }
    return 0;
}

int queue_wake_server(const struct conf *c)
{
    return queue_signal_server(c);
}

int cli_queue(int argc, char **argv)
{
    const char *config = NULL, *args[64];
    bool json = false;
    int nargs = 0;
    for (int k = 1; k < argc; k++) { /* options may stand anywhere */
        if (strcmp(argv[k], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[k], "--config") == 0 && k + 1 < argc) {
            config = argv[++k];
        } else if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
            fputs(queue_usage, stdout);
            return 0;
        } else if (argv[k][0] == '-') {
            fprintf(stderr, "tern queue: unknown option '%s'\n%s", argv[k], queue_usage);
            return 2;
        } else if (nargs < 64) {
            args[nargs++] = argv[k];
        }
    }
    if (nargs == 0) {
        fputs(queue_usage, stderr);
        return 2;
    }
    int i = 0;
    argv = (char **)args;
    argc = nargs;
    const char *cmd = argv[i++];
    struct conf c;
    struct conf_errors e = {0};
    const char *path = conf_default_path(config);
    if (conf_load(path, &c, &e) < 0 || e.n) {
        for (size_t k = 0; k < e.n; k++)
            fprintf(stderr, "%s\n", e.v[k]);
        conf_errors_free(&e);
        return 2;
    }
    if (strcmp(cmd, "retry") == 0)
        return queue_signal_server(&c) < 0 ? 1 : (printf("asked the server to retry now\n"), 0);

    char qdir[CONF_STR_MAX + 16], why[512];
    snprintf(qdir, sizeof(qdir), "%s/queue", c.data_dir);
    struct qstore *st = qstore_open(qdir, why, sizeof(why));
    if (!st) {
        fprintf(stderr, "tern queue: %s\n", why);
        return 1;
    }
    int rc = 0;
    if (strcmp(cmd, "list") == 0) {
        struct queue_list ql = {.json = json, .arr = json ? json_array() : NULL};
        if (qstore_list(st, queue_list_item, &ql, why, sizeof(why)) < 0) {
            fprintf(stderr, "tern queue: %s\n", why);
            rc = 1;
        } else if (json) {
            char *s = json_dumps(ql.arr, JSON_INDENT(2));
            printf("%s\n", s ? s : "[]");
            free(s);
        } else if (ql.n == 0) {
            printf("the queue is empty\n");
        }
        json_decref(ql.arr);
    } else if (strcmp(cmd, "show") == 0 && i + 1 == argc) {
        struct envelope env; /* qstore_read_env() initialises it; freed whatever happens */
        if (!envelope_id_valid(argv[i])) {
            fprintf(stderr, "tern queue: %s is not a queue id\n", argv[i]);
            qstore_close(st);
            return 1;
        }
        if (qstore_read_env(st, argv[i], &env, why, sizeof(why)) != ENV_OK) {
            fprintf(stderr, "tern queue: no queued message %s\n", argv[i]);
            rc = 1;
        } else if (json) {
            json_t *j = queue_env_json(&env, true);
            char *s = json_dumps(j, JSON_INDENT(2));
            printf("%s\n", s ? s : "{}");
            free(s);
            json_decref(j);
        } else {
            char created[32], next[32];
            queue_time(env.created, created, sizeof(created));
            queue_time(env.next_attempt, next, sizeof(next));
            printf("id:           %s\nsender:       <%s>\ncreated:      %s\nnext attempt: %s\n"
                   "client:       %s (%s)%s%s\n",
                   env.id, env.sender, created, next, env.helo, env.peer,
                   env.auth_user[0] ? ", user " : "", env.auth_user);
            for (size_t k = 0; k < env.nrcpt; k++) {
                const struct env_rcpt *r = &env.rcpts[k];
                printf("rcpt:         <%s> %s, %u attempts, via %s%s%s\n", r->addr,
                       envelope_status_name(r->status), r->attempts, r->target,
                       r->error[0] ? ": " : "", r->error);
            }
        }
        envelope_free(&env);
    } else if (strcmp(cmd, "delete") == 0 && i < argc) {
        for (; i < argc; i++) {
            if (!envelope_id_valid(argv[i]) || qstore_remove(st, argv[i], why, sizeof(why)) < 0) {
                fprintf(stderr, "tern queue: cannot delete %s: %s\n", argv[i],
                        envelope_id_valid(argv[i]) ? why : "not a queue id");
                rc = 1;
            } else {
                printf("deleted %s\n", argv[i]);
            }
        }
    } else {
        fputs(queue_usage, stderr);
        rc = 2;
    }
    qstore_close(st);
    return rc;
}
