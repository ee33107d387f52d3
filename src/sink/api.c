/*
 * api.c - the sink's HTTP API on evhttp, answering JSON (jansson).
 *
 *   GET    /api/messages          list, newest first; to= from= subject= limit= offset=
 *   DELETE /api/messages          delete all
 *   GET    /api/messages/ID       one message (ID or "latest")
 *   GET    /api/messages/ID/raw   its source, as received
 *   GET    /api/messages/ID/part/N  one MIME part, decoded (N from "attachments")
 *   DELETE /api/messages/ID       delete one
 *   GET    /api/count             count, same filters as the list
 *   GET    /api/stats             connections, messages, faults injected by kind
 *   GET    /api/faults            the fault settings; PUT/POST replaces the given fields
 *   GET /count, POST /clear, GET /mail/N   mail-test-srv's plain-text API
 *   GET    /api/events            server-sent events (events.c)
 *   GET    /, /app.js, /app.css   the web inbox (web.c)
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
#include <strings.h>
#include <time.h>

#include "core/address.h"
#include "core/clock.h"
#include "core/netaddr.h"
#include "core/num.h"
#include "smtp/listen.h"
#include "sink/api.h"
#include "sink/events.h"
#include "sink/json.h"
#include "sink/mailpit.h"
#include "sink/mime.h"
#include "sink/web.h"

#define API_LIST_MAX 10000
#define API_BODY_MAX (64 * 1024)

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
        json_array_append_new(to, sink_json_str(m->rcpts[i]));
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:b}", "id",
                     (json_int_t)m->id, "received", api_time(m->received_ms), "from",
                     sink_json_str(m->mail_from), "to", to, "subject", sink_json_str(m->subject),
                     "header_from", sink_json_str(m->hdr_from), "header_to",
                     sink_json_str(m->hdr_to), "size", (json_int_t)m->size, "helo",
                     sink_json_str(m->helo), "peer", sink_json_str(m->peer), "auth_user",
                     m->auth_user[0] ? sink_json_str(m->auth_user) : json_null(), "tls", m->tls);
}

static json_t *api_addrs(const struct mime_addr *a, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:o, s:o}", "name", sink_json_str(a[i].name),
                                             "address", sink_json_str(a[i].address)));
    return arr;
}

/* The MIME fields (parsed once, cached in m): all of them for one message,
 * the decoded subject, the snippet and the number of attachments for a list. */
static void api_mime_fields(json_t *o, struct sink_msg *m, bool full)
{
    const struct mime_msg *mm = sink_msg_mime(m);
    if (!o || !mm)
        return;
    json_object_set_new(o, "subject_decoded", sink_json_str(mm->subject));
    json_object_set_new(o, "snippet", sink_json_str(mm->snippet));
    if (!full) {
        json_object_set_new(o, "attachments", json_integer((json_int_t)mm->nparts));
        return;
    }
    json_t *hs = json_array(), *atts = json_array();
    for (size_t i = 0; i < mm->nheaders; i++)
        json_array_append_new(hs, json_pack("{s:o, s:o}", "name", sink_json_str(mm->hnames[i]),
                                            "value", sink_json_str(mm->hvalues[i])));
    for (size_t i = 0; i < mm->nparts; i++) {
        const struct mime_part *p = &mm->parts[i];
        char url[96];
        snprintf(url, sizeof(url), "/api/messages/%llu/part/%zu", (unsigned long long)m->id,
                 p->index);
        json_array_append_new(
            atts, json_pack("{s:I, s:o, s:o, s:I, s:b, s:o, s:o, s:o, s:s}", "index",
                            (json_int_t)p->index, "type", sink_json_str(p->content_type), "name",
                            sink_json_str(p->filename), "size", (json_int_t)p->size, "inline",
                            p->inline_part, "content_id", sink_json_str(p->content_id),
                            "disposition", sink_json_str(p->disposition), "charset",
                            sink_json_str(p->charset), "url", url));
    }
    json_object_set_new(o, "date", sink_json_str(mm->date));
    json_object_set_new(o, "message_id", sink_json_str(mm->message_id));
    json_object_set_new(o, "from_addrs", api_addrs(mm->from, mm->nfrom));
    json_object_set_new(o, "to_addrs", api_addrs(mm->to, mm->nto));
    json_object_set_new(o, "cc_addrs", api_addrs(mm->cc, mm->ncc));
    json_object_set_new(o, "reply_to_addrs", api_addrs(mm->reply_to, mm->nreply_to));
    json_object_set_new(o, "bcc_addrs", api_addrs(mm->bcc, mm->nbcc));
    json_object_set_new(o, "headers", hs);
    json_object_set_new(o, "text", json_stringn(mm->text, mm->text_len));
    json_object_set_new(o, "html", json_stringn(mm->html, mm->html_len));
    json_object_set_new(o, "charset_fallback", sink_json_str(mm->charset_fallback));
    json_object_set_new(o, "attachments", atts);
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
    api_json(req, code, json_pack("{s:o}", "error", sink_json_str(buf)));
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
        if (arr && total >= aq.offset && total < aq.offset + aq.limit) {
            json_t *o = api_msg_json(m);
            api_mime_fields(o, m, false);
            json_array_append_new(arr, o);
        }
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

/* GET /api/messages/ID/part/N: the decoded octets, never rendered by the browser
 * as a page of this origin (attachment, nosniff, a CSP sandbox for any type). */
static void api_part(struct evhttp_request *req, struct sink_msg *m, const char *nstr)
{
    uint64_t n;
    const struct mime_msg *mm = sink_msg_mime(m);
    const struct mime_part *p = NULL;
    if (!mm) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (num_parse_u64(nstr, UINT32_MAX, &n) < 0) {
        api_error(req, 400, "part number must be a number");
        return;
    }
    for (size_t i = 0; i < mm->nparts && !p; i++)
        if (mm->parts[i].index == n)
            p = &mm->parts[i];
    char *data;
    size_t len;
    int r = p ? mime_part_data(m->raw, m->size, (size_t)n, &data, &len) : -2;
    if (r == -2) {
        api_error(req, 404, "no such part");
        return;
    }
    if (r < 0) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char ctype[200], disp[700];
    bool cs_ok =
        p->charset[0] && strlen(p->charset) < 40 &&
        strspn(p->charset, "abcdefghijklmnopqrstuvwxyz0123456789-_.:") == strlen(p->charset);
    snprintf(ctype, sizeof(ctype), "%s%s%s", p->content_type,
             cs_ok && strncmp(p->content_type, "text/", 5) == 0 ? "; charset=" : "",
             cs_ok && strncmp(p->content_type, "text/", 5) == 0 ? p->charset : "");
    /* filename: a plain ASCII fallback, and the UTF-8 name percent-encoded */
    size_t dl = (size_t)snprintf(disp, sizeof(disp), "attachment; filename=\"");
    size_t fl = strlen(p->filename);
    for (size_t i = 0; i < fl && i < 100; i++) {
        char c = p->filename[i];
        if (((unsigned char)c & 0xc0) == 0x80)
            continue; /* one '_' per UTF-8 character */
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == ' ' || c == '+';
        disp[dl++] = ok ? c : '_';
    }
    if (fl == 0)
        dl += (size_t)snprintf(disp + dl, sizeof(disp) - dl, "part-%zu", p->index);
    dl += (size_t)snprintf(disp + dl, sizeof(disp) - dl, "\"");
    if (fl) {
        dl += (size_t)snprintf(disp + dl, sizeof(disp) - dl, "; filename*=UTF-8''");
        for (size_t i = 0; i < fl && dl + 4 < sizeof(disp); i++) {
            unsigned char c = (unsigned char)p->filename[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '-' || c == '_')
                disp[dl++] = (char)c;
            else
                dl += (size_t)snprintf(disp + dl, sizeof(disp) - dl, "%%%02X", c);
        }
        disp[dl] = '\0';
    }
    evhttp_add_header(h, "Content-Disposition", disp);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Content-Security-Policy", "sandbox; default-src 'none'");
    api_send(req, 200, ctype, data, len);
    free(data);
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
    events_publish(api->events, "faults", 0);
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

/* The message as mail-test-srv keeps it: the DATA octets as sent, i.e. dot-stuffed
 * again, with the final ".\r\n" (it stores every line up to and including it). */
static int api_mts_data(struct evbuffer *out, const char *raw, size_t size)
{
    size_t i = 0;
    while (i < size) {
        const char *nl = memchr(raw + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (raw + i)) + 1 : size - i;
        if (raw[i] == '.' && evbuffer_add(out, ".", 1) < 0)
            return -1;
        if (evbuffer_add(out, raw + i, n) < 0)
            return -1;
        i += n;
    }
    return evbuffer_add(out, ".\r\n", 3);
}

/* --compat mail-test-srv: one record per recipient, oldest first, filters to= and
 * from= compared whole and case-sensitively, other parameters ignored, errors with
 * an empty body: what Boulder's test/mail-test-srv/http.go does. */
static void api_mts(struct sink_api *api, struct evhttp_request *req, const char *path)
{
    struct evkeyvalq q = {NULL, &q.tqh_first};
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    bool count = strcmp(path, "/count") == 0;
    uint64_t want = 0, idx = 0;
    char buf[64];

    if (query && evhttp_parse_query_str(query, &q) < 0) {
        api_send(req, 400, "text/plain", "", 0);
        return;
    }
    const char *to = evhttp_find_header(&q, "to"), *from = evhttp_find_header(&q, "from");
    if (to && !*to)
        to = NULL;
    if (from && !*from)
        from = NULL;
    if (!count) { /* strconv.Atoi(strings.Trim(N, "/")); a negative N matches nothing */
        char num[24];
        const char *p = path + 6;
        size_t n;
        while (*p == '/')
            p++;
        for (n = strlen(p); n && p[n - 1] == '/'; n--)
            ;
        bool neg = n && p[0] == '-';
        if (n && (p[0] == '+' || neg)) {
            p++;
            n--;
        }
        bool bad = n == 0 || n >= sizeof(num);
        if (!bad) {
            memcpy(num, p, n);
            num[n] = '\0';
            bad = num_parse_u64(num, INT32_MAX, &want) < 0;
        }
        if (bad) {
            evhttp_clear_headers(&q);
            api_send(req, 400, "text/plain", "", 0);
            return;
        }
        if (neg && want)
            want = UINT64_MAX;
    }
    struct sink_msg *hit = NULL;
    size_t hit_rcpt = 0;
    for (struct sink_msg *m = api->store->oldest; m && !hit; m = m->newer) {
        if (from && strcmp(m->mail_from, from) != 0)
            continue;
        for (size_t i = 0; i < m->nrcpt; i++) {
            if (to && strcmp(m->rcpts[i], to) != 0)
                continue;
            if (!count && idx == want) {
                hit = m;
                hit_rcpt = i;
                break;
            }
            idx++;
        }
    }
    evhttp_clear_headers(&q);
    if (count) {
        int l = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)idx);
        api_send(req, 200, "text/plain", buf, (size_t)l);
        return;
    }
    if (!hit) {
        api_send(req, 404, "text/plain", "", 0);
        return;
    }
    struct evbuffer *out = evbuffer_new();
    if (!out ||
        evbuffer_add_printf(out, "FROM %s\nTO %s\n\n", hit->mail_from, hit->rcpts[hit_rcpt]) < 0 ||
        api_mts_data(out, hit->raw, hit->size) < 0 || evbuffer_add(out, "\n", 1) < 0) {
        if (out)
            evbuffer_free(out);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
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
    if (api->compat_mts) {
        api_mts(api, req, path);
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

static void api_route(struct evhttp_request *req, void *arg)
{
    struct sink_api *api = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;

    if (!path)
        path = "/";
    if (strncmp(path, "/api/v1/", 8) == 0) {
        struct mailpit_env env = {api->store, api->messages_refused, api->started_ms};
        mailpit_handle(&env, req, path);
    } else if (strcmp(path, "/api/messages") == 0) {
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
        bool part = slash && strncmp(slash, "/part/", 6) == 0;
        if (il == 0 || il >= sizeof(id) || (slash && !raw && !part)) {
            api_error(req, 404, "no such resource");
            return;
        }
        memcpy(id, rest, il);
        id[il] = '\0';
        if (!(get || (method == EVHTTP_REQ_DELETE && !raw && !part))) {
            api_method_not_allowed(req, raw || part ? "GET" : "GET, DELETE");
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
        } else if (part) {
            api_part(req, m, slash + 6);
        } else {
            json_t *o = api_msg_json(m);
            api_mime_fields(o, m, true);
            api_json(req, 200, o);
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
    } else if (strcmp(path, "/api/events") == 0) {
        events_handle(api->events, req);
    } else if (!web_handle(req, path)) {
        api_error(req, 404, "no such resource");
    }
}

/* Every request, then one event for the web inbox when it removed messages
 * (DELETE here or under /api/v1/, POST /clear): whatever path did it. */
/*
 * A request that changes something (any method but GET, HEAD and OPTIONS)
 * sent by a browser from another site: refused (cross-site request
 * forgery).  Browsers name the page's site in Origin (and Sec-Fetch-Site);
 * curl, scripts and test clients send neither and are not affected.  The
 * inbox's own page is same-origin: its Origin is http://HOST of the request.
 */
static bool api_cross_site(struct evhttp_request *req)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD || method == EVHTTP_REQ_OPTIONS)
        return false;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *site = evhttp_find_header(h, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return true;
    const char *origin = evhttp_find_header(h, "Origin");
    if (!origin)
        return false;
    const char *host = evhttp_find_header(h, "Host");
    if (!host || strncmp(origin, "http://", 7) != 0)
        return true;
    return strcasecmp(origin + 7, host) != 0;
}

static void api_cb(struct evhttp_request *req, void *arg)
{
    struct sink_api *api = arg;
    size_t before = api->store->count;
    if (api_cross_site(req)) {
        api_error(req, 403, "cross-site request refused (Origin is not this server)");
        return;
    }
    api_route(req, arg);
    if (api->store->count < before)
        events_publish(api->events, api->store->count ? "delete" : "clear", 0);
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
