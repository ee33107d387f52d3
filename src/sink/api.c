/*
 * api.c - the sink's HTTP API on evhttp, answering JSON (jansson).
 *
 *   GET    /api/messages          list, newest first; to= from= subject= limit= offset=
 *   DELETE /api/messages          delete all
 *   GET    /api/messages/ID       one message (ID or "latest")
 *   GET    /api/messages/ID/raw   its source, as received
 *   DELETE /api/messages/ID       delete one
 *   GET    /api/count             count, same filters as the list
 *   GET    /api/stats             connections, messages, faults injected by kind
 *   GET    /api/faults            the fault settings; PUT/POST replaces the given fields
 *   GET /count, POST /clear, GET /mail/N   mail-test-srv's plain-text API
 *
 * Errors are JSON {"error": "..."} with 400, 404 or 405 (with Allow).
 * Request bodies and headers are size-limited by evhttp; every string put
 * into JSON is made valid UTF-8 first.
 */
#include <stdarg.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/address.h"
#include "core/clock.h"
#include "core/netaddr.h"
#include "core/num.h"
#include "smtp/listen.h"
#include "sink/api.h"

#define API_LIST_MAX 10000
#define API_BODY_MAX (64 * 1024)

/* A JSON string of s, with anything that is not valid UTF-8 replaced by '?'. */
static json_t *api_str(const char *s)
{
    size_t n = strlen(s);
    if (utf8_valid(s, n))
        return json_stringn(s, n);
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        c[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    json_t *j = json_stringn(c, n);
    free(c);
    return j;
}

static json_t *api_time(int64_t ms)
{
    char buf[40];
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

static json_t *api_msg_json(const struct sink_msg *m)
{
    json_t *to = json_array();
    for (size_t i = 0; i < m->nrcpt; i++)
        json_array_append_new(to, api_str(m->rcpts[i]));
    return json_pack(
        "{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:b}", "id", (json_int_t)m->id,
        "received", api_time(m->received_ms), "from", api_str(m->mail_from), "to", to, "subject",
        api_str(m->subject), "header_from", api_str(m->hdr_from), "header_to", api_str(m->hdr_to),
        "size", (json_int_t)m->size, "helo", api_str(m->helo), "peer", api_str(m->peer),
        "auth_user", m->auth_user[0] ? api_str(m->auth_user) : json_null(), "tls", m->tls);
}

static void api_send(struct evhttp_request *req, int code, const char *ctype, const char *body,
                     size_t len)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    if (len && evbuffer_add(out, body, len) < 0) {
        evbuffer_free(out);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_send_reply(req, code, code == 200 ? "OK" : code == 404 ? "Not Found" : "Error", out);
    evbuffer_free(out);
}

/* Sends and frees j. */
static void api_json(struct evhttp_request *req, int code, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    size_t n = strlen(s);
    s[n] = '\0';
    api_send(req, code, "application/json", s, n);
    free(s);
}

static void api_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void api_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    api_json(req, code, json_pack("{s:o}", "error", api_str(buf)));
}

static void api_method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    api_error(req, 405, "method not allowed; use %s", allow);
}

/* Filters and paging from the query string; -1 after sending a 400. */
struct api_query {
    struct evkeyvalq q;
    struct sink_filter f;
    uint64_t limit, offset;
};

static int api_parse_query(struct evhttp_request *req, struct api_query *aq, bool exact)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    aq->q.tqh_first = NULL;
    aq->q.tqh_last = &aq->q.tqh_first;
    memset(&aq->f, 0, sizeof(aq->f));
    aq->limit = 50;
    aq->offset = 0;
    aq->f.exact = exact;
    if (query && evhttp_parse_query_str(query, &aq->q) < 0) {
        api_error(req, 400, "malformed query string");
        return -1;
    }
    for (struct evkeyval *kv = aq->q.tqh_first; kv; kv = kv->next.tqe_next) {
        bool empty = kv->value[0] == '\0'; /* "?to=" filters nothing, as in mail-test-srv */
        if (empty && (strcmp(kv->key, "to") == 0 || strcmp(kv->key, "from") == 0 ||
                      strcmp(kv->key, "subject") == 0))
            continue;
        if (strcmp(kv->key, "to") == 0) {
            aq->f.to = kv->value;
        } else if (strcmp(kv->key, "from") == 0) {
            aq->f.from = kv->value;
        } else if (strcmp(kv->key, "subject") == 0 && !exact) {
            aq->f.subject = kv->value;
        } else if (strcmp(kv->key, "limit") == 0 && !exact) {
            if (num_parse_u64(kv->value, API_LIST_MAX, &aq->limit) < 0) {
                api_error(req, 400, "limit: expected a number from 0 to %d", API_LIST_MAX);
                return -1;
            }
        } else if (strcmp(kv->key, "offset") == 0 && !exact) {
            if (num_parse_u64(kv->value, UINT32_MAX, &aq->offset) < 0) {
                api_error(req, 400, "offset: expected a number");
                return -1;
            }
        } else {
            api_error(req, 400, "unknown query parameter '%.40s'", kv->key);
            return -1;
        }
    }
    return 0;
}

static void api_list(struct sink_api *api, struct evhttp_request *req, bool count_only)
{
    struct api_query aq;
    if (api_parse_query(req, &aq, false) < 0) {
        evhttp_clear_headers(&aq.q);
        return;
    }
    json_t *arr = count_only ? NULL : json_array();
    uint64_t total = 0;
    for (struct sink_msg *m = api->store->newest; m; m = m->older) {
        if (!store_match(m, &aq.f))
            continue;
        if (arr && total >= aq.offset && total < aq.offset + aq.limit)
            json_array_append_new(arr, api_msg_json(m));
        total++;
    }
    evhttp_clear_headers(&aq.q);
    if (count_only)
        api_json(req, 200, json_pack("{s:I}", "count", (json_int_t)total));
    else
        api_json(req, 200,
                 json_pack("{s:I, s:I, s:I, s:o}", "total", (json_int_t)total, "offset",
                           (json_int_t)aq.offset, "count", (json_int_t)json_array_size(arr),
                           "messages", arr));
}

static struct sink_msg *api_find(struct sink_api *api, struct evhttp_request *req,
                                 const char *idstr)
{
    uint64_t id;
    struct sink_msg *m;
    if (strcmp(idstr, "latest") == 0) {
        m = api->store->newest;
    } else if (num_parse_u64(idstr, UINT64_MAX, &id) < 0) {
        api_error(req, 400, "message id must be a number or 'latest'");
        return NULL;
    } else {
        m = store_get(api->store, id);
    }
    if (!m)
        api_error(req, 404, "no such message");
    return m;
}

static json_t *api_faults_json(const struct fault_state *st)
{
    json_t *fail = json_array(), *delay = json_array();
    char buf[64];
    for (size_t i = 0; i < st->conf.nrules; i++) {
        const struct fault_rule *r = &st->conf.rules[i];
        snprintf(buf, sizeof(buf), "%s:%d:%g", fault_point_name(r->point), r->code, r->percent);
        json_array_append_new(fail, json_string(buf));
    }
    for (int p = 0; p < FP__COUNT; p++) {
        if (st->conf.delay_ms[p]) {
            snprintf(buf, sizeof(buf), "%s:%u", fault_point_name(p), st->conf.delay_ms[p]);
            json_array_append_new(delay, json_string(buf));
        }
    }
    return json_pack("{s:I, s:f, s:o, s:o, s:I}", "close_first", (json_int_t)st->conf.close_first,
                     "close_chance", st->conf.close_chance, "fail", fail, "delay", delay, "seed",
                     (json_int_t)st->conf.seed);
}

/* PUT /api/faults: validate everything first, then apply at once. */
static void api_faults_put(struct sink_api *api, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    json_error_t jerr;
    char why[300];
    struct fault_conf fc = api->faults->conf;

    if (n > API_BODY_MAX) {
        api_error(req, 400, "body too large");
        return;
    }
    json_t *j = json_loadb((const char *)evbuffer_pullup(in, (ev_ssize_t)n), n, 0, &jerr);
    if (!j || !json_is_object(j)) {
        api_error(req, 400, "body must be a JSON object: %s", j ? "not an object" : jerr.text);
        json_decref(j);
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        if (strcmp(key, "close_first") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) > 1000000000) {
                api_error(req, 400, "close_first: expected a non-negative integer");
                goto out;
            }
            fc.close_first = (unsigned)json_integer_value(val);
        } else if (strcmp(key, "close_chance") == 0) {
            if (!json_is_number(val) || json_number_value(val) < 0 ||
                json_number_value(val) > 100) {
                api_error(req, 400, "close_chance: expected a number from 0 to 100");
                goto out;
            }
            fc.close_chance = json_number_value(val);
        } else if (strcmp(key, "seed") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 0) {
                api_error(req, 400, "seed: expected a non-negative integer");
                goto out;
            }
            fc.seed = (uint64_t)json_integer_value(val);
        } else if (strcmp(key, "fail") == 0 || strcmp(key, "delay") == 0) {
            bool is_fail = key[0] == 'f';
            size_t i;
            json_t *e;
            if (!json_is_array(val)) {
                api_error(req, 400, "%s: expected an array of strings", key);
                goto out;
            }
            if (is_fail)
                fc.nrules = 0;
            else
                memset(fc.delay_ms, 0, sizeof(fc.delay_ms));
            json_array_foreach(val, i, e)
            {
                struct fault_rule r;
                enum fault_point p;
                unsigned ms;
                if (!json_is_string(e)) {
                    api_error(req, 400, "%s[%zu]: expected a string", key, i);
                    goto out;
                }
                if (is_fail
                        ? (fault_parse_fail(json_string_value(e), &r, why, sizeof(why)) < 0 ||
                           fault_conf_add_rule(&fc, &r, why, sizeof(why)) < 0)
                        : fault_parse_delay(json_string_value(e), &p, &ms, why, sizeof(why)) < 0) {
                    api_error(req, 400, "%s[%zu]: %s", key, i, why);
                    goto out;
                }
                if (!is_fail)
                    fc.delay_ms[p] = ms;
            }
        } else {
            api_error(req, 400, "unknown field '%.40s'", key);
            goto out;
        }
    }
    fault_configure(api->faults, &fc);
    api_json(req, 200, api_faults_json(api->faults));
out:
    json_decref(j);
}

static void api_stats(struct sink_api *api, struct evhttp_request *req)
{
    const struct fault_stats *fs = &api->faults->stats;
    json_t *faults = json_object(), *fail = json_object(), *delay = json_object();
    uint64_t total = fs->close_first + fs->close_chance;
    for (int p = 0; p < FP__COUNT; p++) {
        if (fs->fail[p])
            json_object_set_new(fail, fault_point_name(p), json_integer((json_int_t)fs->fail[p]));
        if (fs->delay[p])
            json_object_set_new(delay, fault_point_name(p), json_integer((json_int_t)fs->delay[p]));
        total += fs->fail[p];
    }
    json_object_set_new(faults, "close_first", json_integer((json_int_t)fs->close_first));
    json_object_set_new(faults, "close_chance", json_integer((json_int_t)fs->close_chance));
    json_object_set_new(faults, "cut_clean", json_integer((json_int_t)fs->cut_clean));
    json_object_set_new(faults, "cut_421", json_integer((json_int_t)fs->cut_421));
    json_object_set_new(faults, "fail", fail);
    json_object_set_new(faults, "delay", delay);
    json_object_set_new(faults, "total", json_integer((json_int_t)total));
    api_json(req, 200,
             json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "connections",
                       (json_int_t)*api->connections, "messages", (json_int_t)api->store->received,
                       "stored", (json_int_t)api->store->count, "stored_bytes",
                       (json_int_t)api->store->bytes, "dropped", (json_int_t)api->store->dropped,
                       "refused_at_end_of_data", (json_int_t)*api->messages_refused, "uptime_ms",
                       (json_int_t)(clock_mono_ms() - api->started_ms), "faults", faults));
}

/* mail-test-srv: /count, /clear, /mail/N (N-th matching message, oldest first). */
static void api_compat(struct sink_api *api, struct evhttp_request *req, const char *path,
                       enum evhttp_cmd_type method)
{
    struct api_query aq;
    char buf[64];

    if (strcmp(path, "/clear") == 0) {
        if (method != EVHTTP_REQ_POST) {
            api_method_not_allowed(req, "POST");
            return;
        }
        store_clear(api->store);
        api_send(req, 200, "text/plain", "", 0);
        return;
    }
    if (method != EVHTTP_REQ_GET) {
        api_method_not_allowed(req, "GET");
        return;
    }
    if (api_parse_query(req, &aq, true) < 0) {
        evhttp_clear_headers(&aq.q);
        return;
    }
    if (strcmp(path, "/count") == 0) {
        uint64_t n = 0;
        for (struct sink_msg *m = api->store->newest; m; m = m->older)
            n += store_match(m, &aq.f);
        int l = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)n);
        api_send(req, 200, "text/plain", buf, (size_t)l);
        evhttp_clear_headers(&aq.q);
        return;
    }
    uint64_t want;
    if (num_parse_u64(path + 6, UINT32_MAX, &want) < 0) {
        evhttp_clear_headers(&aq.q);
        api_error(req, 400, "/mail/N: N must be a number");
        return;
    }
    uint64_t idx = 0;
    struct sink_msg *m;
    for (m = api->store->oldest; m; m = m->newer) {
        if (!store_match(m, &aq.f))
            continue;
        if (idx++ == want)
            break;
    }
    evhttp_clear_headers(&aq.q);
    if (!m) {
        api_error(req, 404, "no such message");
        return;
    }
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    int ok = evbuffer_add_printf(out, "FROM %s\nTO ", m->mail_from) >= 0;
    for (size_t i = 0; i < m->nrcpt && ok; i++)
        ok = evbuffer_add_printf(out, "%s%s", i ? ", " : "", m->rcpts[i]) >= 0;
    ok = ok && evbuffer_add(out, "\n\n", 2) == 0 && evbuffer_add(out, m->raw, m->size) == 0 &&
         evbuffer_add(out, "\n", 1) == 0;
    if (!ok) {
        evbuffer_free(out);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void api_cb(struct evhttp_request *req, void *arg)
{
    struct sink_api *api = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;

    if (!path)
        path = "/";
    if (strcmp(path, "/api/messages") == 0) {
        if (get)
            api_list(api, req, false);
        else if (method == EVHTTP_REQ_DELETE) {
            store_clear(api->store);
            api_json(req, 200, json_pack("{s:b}", "deleted", 1));
        } else
            api_method_not_allowed(req, "GET, DELETE");
    } else if (strncmp(path, "/api/messages/", 14) == 0) {
        char id[32];
        const char *rest = path + 14, *slash = strchr(rest, '/');
        size_t il = slash ? (size_t)(slash - rest) : strlen(rest);
        bool raw = slash && strcmp(slash, "/raw") == 0;
        if (il == 0 || il >= sizeof(id) || (slash && !raw)) {
            api_error(req, 404, "no such resource");
            return;
        }
        memcpy(id, rest, il);
        id[il] = '\0';
        if (!(get || (method == EVHTTP_REQ_DELETE && !raw))) {
            api_method_not_allowed(req, raw ? "GET" : "GET, DELETE");
            return;
        }
        struct sink_msg *m = api_find(api, req, id);
        if (!m)
            return;
        if (method == EVHTTP_REQ_DELETE) {
            store_delete(api->store, m->id);
            api_json(req, 200, json_pack("{s:b}", "deleted", 1));
        } else if (raw) {
            api_send(req, 200, "message/rfc822", m->raw, m->size);
        } else {
            api_json(req, 200, api_msg_json(m));
        }
    } else if (strcmp(path, "/api/count") == 0) {
        if (get)
            api_list(api, req, true);
        else
            api_method_not_allowed(req, "GET");
    } else if (strcmp(path, "/api/stats") == 0) {
        if (get)
            api_stats(api, req);
        else
            api_method_not_allowed(req, "GET");
    } else if (strcmp(path, "/api/faults") == 0) {
        if (get)
            api_json(req, 200, api_faults_json(api->faults));
        else if (method == EVHTTP_REQ_PUT || method == EVHTTP_REQ_POST)
            api_faults_put(api, req);
        else
            api_method_not_allowed(req, "GET, PUT, POST");
    } else if (strcmp(path, "/count") == 0 || strcmp(path, "/clear") == 0 ||
               strncmp(path, "/mail/", 6) == 0) {
        api_compat(api, req, path, method);
    } else {
        api_error(req, 404, "no such resource");
    }
}

int sink_api_start(struct sink_api *api, struct event_base *base, const char *addr, char *bound,
                   size_t boundsize, char *why, size_t whysize)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int fd = listen_socket(addr, why, whysize);
    if (fd < 0)
        return -1;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
        netaddr_format((struct sockaddr *)&ss, bound, boundsize);
    api->http = evhttp_new(base);
    if (!api->http || !evhttp_accept_socket_with_handle(api->http, fd)) {
        snprintf(why, whysize, "%s: cannot serve HTTP", addr);
        return -1;
    }
    evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(api->http, API_BODY_MAX);
    evhttp_set_max_headers_size(api->http, 16 * 1024);
    evhttp_set_timeout(api->http, 30);
    evhttp_set_gencb(api->http, api_cb, api);
    return 0;
}
