/*
 * mailpit.c - Mailpit's HTTP API v1 on the sink (see mailpit.h).
 *
 * Field names, JSON types and status codes follow Mailpit v1.30.5 (commit
 * 408b30d: server/apiv1/{api,messages,message,application}.go and
 * internal/storage/{structs,messages,search}.go):
 *
 *   GET    /api/v1/messages?start=&limit=&before=   MessagesSummary, newest first
 *   PUT    /api/v1/messages   {"IDs":[..]|"Search":"..", "Read":bool}   "ok"
 *   DELETE /api/v1/messages   {"IDs":[..]} those; no body or no IDs: all   "ok"
 *   GET    /api/v1/search?query=&start=&limit=       MessagesSummary of matches
 *   DELETE /api/v1/search?query=                     "ok"
 *   GET    /api/v1/message/{ID}        Message (marks it read); ID may be "latest"
 *   GET    /api/v1/message/{ID}/raw    the source, text/plain (?dl=1: a download)
 *   GET    /api/v1/message/{ID}/headers   {"Name": ["value", ..]}
 *   GET    /api/v1/message/{ID}/part/{PartID}   a part's decoded octets
 *   GET    /api/v1/info, GET /api/v1/tags
 *
 * IDs are tern's message ids as strings ("42").  Lists are [] when empty,
 * never null (Mailpit's list gives null for an empty To/Cc/Bcc; its message
 * view and its documentation give []).  Envelope recipients missing from
 * To/Cc/Bcc are shown in Bcc, and Return-Path defaults to the envelope
 * sender, as Mailpit's SMTP server does (here without changing the source).
 * Errors are text/plain: 400 with a reason, 404 "404 page not found".
 * Message data reaches JSON only through jansson, as valid UTF-8.
 */
#include "sink/mailpit.h"
#include "sink/json.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/address.h"
#include "core/clock.h"
#include "core/num.h"
#include "sink/mime.h"
#include "sink/search.h"

#define MP_BODY_MAX (1024 * 1024)
#define MP_VERSION "tern-0.1.0 (Mailpit API v1.30.5)"

/* ---- replies ----------------------------------------------------------- */

static void mp_send(struct evhttp_request *req, int code, const char *ctype, const char *body,
                    size_t len)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype) < 0 ||
        (len && evbuffer_add(out, body, len) < 0)) {
        evbuffer_free(out);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_send_reply(req, code,
                      code == 200   ? "OK"
                      : code == 404 ? "Not Found"
                      : code == 405 ? "Method Not Allowed"
                                    : "Bad Request",
                      out);
    evbuffer_free(out);
}

static void mp_text(struct evhttp_request *req, int code, const char *text)
{
    mp_send(req, code, "text/plain; charset=utf-8", text, strlen(text));
}

static void mp_404(struct evhttp_request *req)
{
    mp_text(req, 404, "404 page not found");
}

static void mp_405(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    mp_text(req, 405, "Method Not Allowed");
}

/* Sends and frees j. */
static void mp_json(struct evhttp_request *req, json_t *j, size_t flags)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | flags) : NULL;
    json_decref(j);
    if (!s) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    mp_send(req, 200, "application/json", s, strlen(s));
    free(s);
}

/* ---- JSON of messages ------------------------------------------------- */

/* RFC 3339 in UTC with milliseconds, as Go prints a time.Time. */
static json_t *mp_time(int64_t ms)
{
    char buf[48];
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    if (!gmtime_r(&t, &tm))
        return json_string("1970-01-01T00:00:00Z");
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000 + 1000) % 1000);
    return json_string(buf);
}

static json_t *mp_addr(const char *name, const char *address)
{
    return json_pack("{s:o, s:o}", "Name", sink_json_str(name), "Address", sink_json_str(address));
}

static json_t *mp_addrs(const struct mime_addr *a, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, mp_addr(a[i].name, a[i].address));
    return arr;
}

static bool mp_in(const struct mime_addr *a, size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(a[i].address, addr) == 0)
            return true;
    return false;
}

/* Bcc: the header's, then envelope recipients found in no To/Cc/Bcc. */
static json_t *mp_bcc(const struct sink_msg *m, const struct mime_msg *mm)
{
    json_t *arr = mp_addrs(mm->bcc, mm->nbcc);
    for (size_t i = 0; arr && i < m->nrcpt; i++)
        if (!mp_in(mm->to, mm->nto, m->rcpts[i]) && !mp_in(mm->cc, mm->ncc, m->rcpts[i]) &&
            !mp_in(mm->bcc, mm->nbcc, m->rcpts[i]))
            json_array_append_new(arr, mp_addr("", m->rcpts[i]));
    return arr;
}

static json_t *mp_from(const struct mime_msg *mm)
{
    if (mm->nfrom)
        return mp_addr(mm->from[0].name, mm->from[0].address);
    return mp_addr("", "");
}

static const char *mp_header(const struct mime_msg *mm, const char *name)
{
    for (size_t i = 0; i < mm->nheaders; i++)
        if (strcasecmp(mm->hnames[i], name) == 0)
            return mm->hvalues[i];
    return NULL;
}

static size_t mp_count_parts(const struct mime_msg *mm, bool inl)
{
    size_t n = 0;
    for (size_t i = 0; i < mm->nparts; i++)
        n += mm->parts[i].inline_part == inl;
    return n;
}

static char *mp_id(const struct sink_msg *m, char buf[24])
{
    snprintf(buf, 24, "%llu", (unsigned long long)m->id);
    return buf;
}

static const struct mime_msg mp_empty_mime = {
    .subject = "", .date = "", .message_id = "", .text = "", .html = "", .snippet = ""};

static const struct mime_msg *mp_mime(struct sink_msg *m)
{
    const struct mime_msg *mm = sink_msg_mime(m);
    return mm ? mm : &mp_empty_mime;
}

/* MessageSummary */
static json_t *mp_summary(struct sink_msg *m)
{
    const struct mime_msg *mm = mp_mime(m);
    char id[24];
    return json_pack("{s:s, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:[], s:I, s:I, s:o}",
                     "ID", mp_id(m, id), "MessageID", sink_json_str(mm->message_id), "Read",
                     m->read, "From", mp_from(mm), "To", mp_addrs(mm->to, mm->nto), "Cc",
                     mp_addrs(mm->cc, mm->ncc), "Bcc", mp_bcc(m, mm), "ReplyTo",
                     mp_addrs(mm->reply_to, mm->nreply_to), "Subject", sink_json_str(mm->subject),
                     "Created", mp_time(m->received_ms), "Username", sink_json_str(m->auth_user),
                     "Tags", "Size", (json_int_t)m->size, "Attachments",
                     (json_int_t)mp_count_parts(mm, false), "Snippet", sink_json_str(mm->snippet));
}

/* Hex digest of data by md ("" when the digest fails). */
static json_t *mp_digest(const EVP_MD *md, const char *data, size_t len)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (!EVP_Digest(data, len, d, &dl, md, NULL))
        dl = 0;
    for (unsigned int i = 0; i < dl; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    hex[2 * dl] = '\0';
    return json_string(hex);
}

static json_t *mp_attachment(const struct sink_msg *m, const struct mime_part *p)
{
    char pid[24], *data = NULL;
    size_t len = 0;
    snprintf(pid, sizeof(pid), "%zu", p->index);
    if (mime_part_data(m->raw, m->size, p->index, &data, &len) != 0)
        len = 0;
    json_t *sums = json_pack("{s:o, s:o, s:o}", "MD5", mp_digest(EVP_md5(), data ? data : "", len),
                             "SHA1", mp_digest(EVP_sha1(), data ? data : "", len), "SHA256",
                             mp_digest(EVP_sha256(), data ? data : "", len));
    free(data);
    /* Mailpit: FileName falls back to the Content-ID */
    return json_pack("{s:s, s:o, s:o, s:o, s:I, s:o}", "PartID", pid, "FileName",
                     sink_json_str(p->filename[0] ? p->filename : p->content_id), "ContentType",
                     sink_json_str(p->content_type), "ContentID", sink_json_str(p->content_id),
                     "Size", (json_int_t)p->size, "Checksums", sums);
}

/* List-Unsubscribe: the <...> links, at most one mailto: and one http(s). */
static json_t *mp_unsubscribe(const struct mime_msg *mm)
{
    const char *h = mp_header(mm, "List-Unsubscribe"), *post;
    json_t *links = json_array();
    const char *errors = "";
    bool mail = false, web = false;
    if (!h)
        h = "";
    for (const char *p = strchr(h, '<'); links && p; p = strchr(p, '<')) {
        const char *e = strchr(p, '>');
        if (!e) {
            errors = "Unterminated link";
            break;
        }
        size_t n = (size_t)(e - p - 1);
        bool is_mail = n > 7 && strncasecmp(p + 1, "mailto:", 7) == 0;
        bool is_web = (n > 7 && strncasecmp(p + 1, "http://", 7) == 0) ||
                      (n > 8 && strncasecmp(p + 1, "https://", 8) == 0);
        if ((is_mail && !mail) || (is_web && !web)) {
            json_t *s = json_stringn(p + 1, n);
            if (s)
                json_array_append_new(links, s);
            mail |= is_mail;
            web |= is_web;
        } else if (!is_mail && !is_web) {
            errors = "Unsupported link";
        }
        p = e;
    }
    post = mp_header(mm, "List-Unsubscribe-Post");
    return json_pack("{s:o, s:o, s:s, s:o}", "Header", sink_json_str(h), "Links", links, "Errors",
                     errors, "HeaderPost", sink_json_str(post ? post : ""));
}

/* Message */
static json_t *mp_message(struct sink_msg *m)
{
    const struct mime_msg *mm = mp_mime(m);
    const char *rp = mp_header(mm, "Return-Path");
    char id[24], rpbuf[512];
    int64_t date;
    json_t *inl = json_array(), *att = json_array();

    if (rp && rp[0]) {
        size_t n = strlen(rp);
        while (n && (rp[n - 1] == '>' || rp[n - 1] == ' '))
            n--;
        while (n && (*rp == '<' || *rp == ' '))
            rp++, n--;
        snprintf(rpbuf, sizeof(rpbuf), "%.*s", (int)n, rp);
        rp = rpbuf;
    } else {
        rp = m->mail_from[0] ? m->mail_from : mm->nfrom ? mm->from[0].address : "";
    }
    if (!mm->date[0] || search_parse_date(mm->date, strlen(mm->date), &date) < 0)
        date = m->received_ms;
    for (size_t i = 0; i < mm->nparts; i++)
        json_array_append_new(mm->parts[i].inline_part ? inl : att,
                              mp_attachment(m, &mm->parts[i]));
    return json_pack(
        "{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:[], s:o, s:o, "
        "s:o, s:I, s:o, s:o}",
        "ID", mp_id(m, id), "MessageID", sink_json_str(mm->message_id), "From", mp_from(mm), "To",
        mp_addrs(mm->to, mm->nto), "Cc", mp_addrs(mm->cc, mm->ncc), "Bcc", mp_bcc(m, mm), "ReplyTo",
        mp_addrs(mm->reply_to, mm->nreply_to), "ReturnPath", sink_json_str(rp), "Subject",
        sink_json_str(mm->subject), "ListUnsubscribe", mp_unsubscribe(mm), "Date", mp_time(date),
        "Tags", "Username", sink_json_str(m->auth_user), "Text", sink_json_str(mm->text), "HTML",
        sink_json_str(mm->html), "Size", (json_int_t)m->size, "Inline", inl, "Attachments", att);
}

/* ---- search ------------------------------------------------------------ */

/* "Name address, Name address" of a list, for matching (malloc). */
static char *mp_addr_text(const struct mime_addr *a, size_t n, char **extra, size_t nextra)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(a[i].name) + strlen(a[i].address) + 3;
    for (size_t i = 0; i < nextra; i++)
        len += strlen(extra[i]) + 2;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    *p = '\0';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s %s, ", a[i].name, a[i].address);
    for (size_t i = 0; i < nextra; i++)
        p += sprintf(p, "%s, ", extra[i]);
    return s;
}

static bool mp_matches(const struct search_query *q, struct sink_msg *m)
{
    if (q->nterms == 0)
        return true;
    const struct mime_msg *mm = mp_mime(m);
    const char *rp = mp_header(mm, "Return-Path");
    size_t flen = 1;
    for (size_t i = 0; i < mm->nparts; i++)
        flen += strlen(mm->parts[i].filename) + 1;
    char *files = malloc(flen);
    struct search_doc d = {
        .from = NULL,
        .to = mp_addr_text(mm->to, mm->nto, NULL, 0),
        .cc = mp_addr_text(mm->cc, mm->ncc, NULL, 0),
        .bcc = mp_addr_text(mm->bcc, mm->nbcc, m->rcpts, m->nrcpt),
        .reply_to = mp_addr_text(mm->reply_to, mm->nreply_to, NULL, 0),
        .subject = mm->subject,
        .message_id = mm->message_id,
        .return_path = rp ? rp : m->mail_from,
        .text = mm->text,
        .html = mm->html,
        .filenames = files,
        .read = m->read,
        .attachments = mp_count_parts(mm, false),
        .inlines = mp_count_parts(mm, true),
        .size = m->size,
        .received_ms = m->received_ms,
    };
    char *from = mp_addr_text(mm->from, mm->nfrom, &m->mail_from, m->mail_from[0] ? 1 : 0);
    d.from = from;
    if (files) {
        files[0] = '\0';
        for (size_t i = 0; i < mm->nparts; i++)
            if (!mm->parts[i].inline_part) {
                strcat(files, mm->parts[i].filename);
                strcat(files, " ");
            }
    }
    bool hit = search_match(q, &d);
    free(from);
    free((char *)d.to);
    free((char *)d.cc);
    free((char *)d.bcc);
    free((char *)d.reply_to);
    free(files);
    return hit;
}

/* ---- requests ---------------------------------------------------------- */

struct mp_page {
    struct evkeyvalq q;
    uint64_t start, limit;
    int64_t before_ms; /* 0: none */
    const char *query; /* ?query=, NULL when absent */
};

/* Mailpit's getStartLimit(): bad values are ignored, never an error. */
static int mp_parse_page(struct evhttp_request *req, struct mp_page *pg)
{
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    const char *v;
    uint64_t n;
    pg->q.tqh_first = NULL;
    pg->q.tqh_last = &pg->q.tqh_first;
    pg->start = 0;
    pg->limit = 50;
    pg->before_ms = 0;
    pg->query = NULL;
    if (qs && evhttp_parse_query_str(qs, &pg->q) < 0) {
        mp_text(req, 400, "malformed query string");
        return -1;
    }
    if ((v = evhttp_find_header(&pg->q, "start")) && num_parse_u64(v, UINT32_MAX, &n) == 0)
        pg->start = n;
    if ((v = evhttp_find_header(&pg->q, "limit")) && num_parse_u64(v, UINT32_MAX, &n) == 0)
        pg->limit = n;
    if ((v = evhttp_find_header(&pg->q, "before")))
        if (search_parse_date(v, strlen(v), &pg->before_ms) < 0)
            pg->before_ms = 0;
    pg->query = evhttp_find_header(&pg->q, "query");
    return 0;
}

/* The query of ?query=, trimmed; -1 after answering 400. */
static int mp_parse_search(struct evhttp_request *req, const char *query, struct search_query *sq)
{
    char why[128];
    while (query && (*query == ' ' || *query == '\t'))
        query++;
    if (!query || !query[0]) {
        mp_text(req, 400, "Error: no search query");
        return -1;
    }
    int rc = search_parse(query, strlen(query), sq, why, sizeof(why));
    if (rc == -1) {
        evhttp_send_error(req, 500, NULL);
        return -1;
    }
    if (rc < 0) {
        mp_text(req, 400, why);
        return -1;
    }
    return 0;
}

static uint64_t mp_unread(struct sink_store *st)
{
    uint64_t n = 0;
    for (struct sink_msg *m = st->newest; m; m = m->older)
        n += !m->read;
    return n;
}

/* GET /api/v1/messages (sq NULL) and GET /api/v1/search. */
static void mp_list(struct mailpit_env *api, struct evhttp_request *req, struct mp_page *pg,
                    const struct search_query *sq)
{
    json_t *arr = json_array();
    uint64_t matched = 0, unread = 0;
    /* Mailpit: limit 0 lists everything, but a search with limit 0 lists nothing */
    uint64_t limit = pg->limit == 0 && !sq ? UINT64_MAX : pg->limit;
    for (struct sink_msg *m = api->store->newest; arr && m; m = m->older) {
        if (pg->before_ms && m->received_ms >= pg->before_ms)
            continue;
        if (sq && !mp_matches(sq, m))
            continue;
        if (matched >= pg->start && matched - pg->start < limit)
            json_array_append_new(arr, mp_summary(m));
        matched++;
        unread += !m->read;
    }
    uint64_t total = api->store->count, all_unread = mp_unread(api->store);
    mp_json(req,
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:[], s:o}", "total", (json_int_t)total,
                      "unread", (json_int_t)all_unread, "count", (json_int_t)json_array_size(arr),
                      "messages_count", (json_int_t)(sq ? matched : total), "messages_unread",
                      (json_int_t)(sq ? unread : all_unread), "start", (json_int_t)pg->start,
                      "tags", "messages", arr),
            0);
}

/* A JSON body of at most MP_BODY_MAX octets; NULL when absent or not JSON. */
static json_t *mp_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n == 0 || n > MP_BODY_MAX)
        return NULL;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    return p ? json_loadb(p, n, 0, NULL) : NULL;
}

/* An ID as Mailpit's clients send it: "42" (or, kindly, 42). */
static bool mp_json_id(json_t *v, uint64_t *id)
{
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        *id = (uint64_t)json_integer_value(v);
        return true;
    }
    return json_is_string(v) && num_parse_u64(json_string_value(v), UINT64_MAX, id) == 0;
}

static void mp_delete_messages(struct mailpit_env *api, struct evhttp_request *req)
{
    json_t *j = mp_body(req), *ids = json_is_object(j) ? json_object_get(j, "IDs") : NULL;
    if (!json_is_array(ids) || json_array_size(ids) == 0) {
        store_clear(api->store); /* as Mailpit: no IDs deletes everything */
    } else {
        size_t i;
        json_t *v;
        uint64_t id;
        json_array_foreach(ids, i, v) if (mp_json_id(v, &id)) store_delete(api->store, id);
    }
    json_decref(j);
    mp_text(req, 200, "ok");
}

static void mp_set_read(struct mailpit_env *api, struct evhttp_request *req)
{
    json_t *j = mp_body(req);
    if (!json_is_object(j)) {
        json_decref(j);
        mp_text(req, 400, "a JSON object is expected: {\"IDs\": [...], \"Read\": true}");
        return;
    }
    json_t *ids = json_object_get(j, "IDs"), *search = json_object_get(j, "Search");
    bool read = json_is_true(json_object_get(j, "Read"));
    const char *s = json_is_string(search) ? json_string_value(search) : "";
    struct search_query sq = {0};
    char why[128];
    if (json_array_size(ids) > 0 && s[0]) {
        mp_text(req, 400, "You may specify either IDs or a search query, not both");
    } else if (json_array_size(ids) > 0) {
        size_t i;
        json_t *v;
        uint64_t id;
        json_array_foreach(ids, i, v)
        {
            struct sink_msg *m;
            if (mp_json_id(v, &id) && (m = store_get(api->store, id)))
                m->read = read;
        }
        mp_text(req, 200, "ok");
    } else {
        int rc = s[0] ? search_parse(s, strlen(s), &sq, why, sizeof(why)) : 0;
        if (rc < 0) {
            mp_text(req, 400, rc == -1 ? "out of memory" : why);
        } else {
            for (struct sink_msg *m = api->store->newest; m; m = m->older)
                if (mp_matches(&sq, m))
                    m->read = read;
            mp_text(req, 200, "ok");
        }
        search_free(&sq);
    }
    json_decref(j);
}

/* The message of an ID or "latest" (with ?query=, the latest match); NULL
 * after answering 404. */
static struct sink_msg *mp_find(struct mailpit_env *api, struct evhttp_request *req, const char *id,
                                size_t idlen)
{
    char buf[32];
    uint64_t n;
    struct sink_msg *m = NULL;
    if (idlen == 0 || idlen >= sizeof(buf)) {
        mp_404(req);
        return NULL;
    }
    memcpy(buf, id, idlen);
    buf[idlen] = '\0';
    if (strcmp(buf, "latest") == 0) {
        struct mp_page pg;
        struct search_query sq = {0};
        if (mp_parse_page(req, &pg) < 0)
            return NULL;
        if (pg.query && mp_parse_search(req, pg.query, &sq) < 0) {
            evhttp_clear_headers(&pg.q);
            return NULL;
        }
        for (m = api->store->newest; m && !mp_matches(&sq, m); m = m->older)
            ;
        search_free(&sq);
        evhttp_clear_headers(&pg.q);
        if (!m) {
            mp_text(req, 404, "Message not found");
            return NULL;
        }
        return m;
    }
    if (num_parse_u64(buf, UINT64_MAX, &n) == 0)
        m = store_get(api->store, n);
    if (!m)
        mp_404(req);
    return m;
}

/* Go's textproto.CanonicalMIMEHeaderKey: "content-type" -> "Content-Type". */
static void mp_canonical(const char *name, char *out, size_t outsize)
{
    size_t i = 0;
    bool up = true;
    for (; name[i] && i + 1 < outsize; i++) {
        char c = name[i];
        out[i] = up && c >= 'a' && c <= 'z'    ? (char)(c - 32)
                 : !up && c >= 'A' && c <= 'Z' ? (char)(c + 32)
                                               : c;
        up = c == '-';
    }
    out[i] = '\0';
}

static void mp_headers(struct sink_msg *m, struct evhttp_request *req)
{
    const struct mime_msg *mm = mp_mime(m);
    json_t *obj = json_object();
    char key[256];
    for (size_t i = 0; obj && i < mm->nheaders; i++) {
        mp_canonical(mm->hnames[i], key, sizeof(key));
        if (!utf8_valid(key, strlen(key)))
            continue;
        json_t *arr = json_object_get(obj, key);
        if (!arr) {
            arr = json_array();
            if (json_object_set_new(obj, key, arr) < 0)
                continue;
        }
        json_array_append_new(arr, sink_json_str(mm->hvalues[i]));
    }
    mp_json(req, obj, JSON_SORT_KEYS);
}

static void mp_part(struct sink_msg *m, struct evhttp_request *req, const char *pid)
{
    const struct mime_msg *mm = mp_mime(m);
    uint64_t idx;
    const struct mime_part *p = NULL;
    char *data = NULL, *name;
    size_t len = 0;
    if (num_parse_u64(pid, UINT32_MAX, &idx) == 0)
        for (size_t i = 0; i < mm->nparts && !p; i++)
            if (mm->parts[i].index == idx)
                p = &mm->parts[i];
    if (!p || mime_part_data(m->raw, m->size, p->index, &data, &len) != 0) {
        free(data);
        mp_404(req);
        return;
    }
    const char *fn = p->filename[0] ? p->filename : p->content_id;
    name = evhttp_uriencode(fn, -1, 0); /* no quote, CR or LF can reach the header */
    if (name) {
        char *cd = malloc(strlen(name) + 32);
        if (cd) {
            sprintf(cd, "inline; filename=\"%s\"", name);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Disposition", cd);
            free(cd);
        }
        free(name);
    }
    /* never a page of this origin (the web inbox's): nosniff, and a CSP sandbox
       for any type; inline as Mailpit, so that <img src> of inline parts works */
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Content-Type-Options", "nosniff");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Security-Policy",
                      "sandbox; default-src 'none'");
    /* a type is "type/subtype" from the parser; anything else is sent as octets */
    const char *ct = p->content_type;
    bool ok = ct[0] && strchr(ct, '/') &&
              strspn(ct, "abcdefghijklmnopqrstuvwxyz0123456789!#$&^_.+-/") == strlen(ct);
    mp_send(req, 200, ok ? ct : "application/octet-stream", data, len);
    free(data);
}

static void mp_info(struct mailpit_env *api, struct evhttp_request *req)
{
    json_t *rt = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "Uptime",
        (json_int_t)((clock_mono_ms() - api->started_ms) / 1000), "Memory",
        (json_int_t)api->store->bytes, "MessagesDeleted", (json_int_t)api->store->dropped,
        "SMTPAccepted", (json_int_t)api->store->received, "SMTPAcceptedSize", (json_int_t)0,
        "SMTPRejected", (json_int_t)*api->messages_refused, "SMTPIgnored", (json_int_t)0);
    mp_json(req,
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:{}, s:o}", "Version", MP_VERSION,
                      "LatestVersion", "disabled", "Database", "", "DatabaseSize",
                      (json_int_t)api->store->bytes, "Messages", (json_int_t)api->store->count,
                      "Unread", (json_int_t)mp_unread(api->store), "Tags", "RuntimeStats", rt),
            0);
}

/* /api/v1/message/{ID}[/raw|/headers|/part/{PartID}] */
static void mp_message_route(struct mailpit_env *api, struct evhttp_request *req, const char *rest,
                             bool get)
{
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *sub = slash ? slash : "";
    bool raw = strcmp(sub, "/raw") == 0, headers = strcmp(sub, "/headers") == 0;
    bool part = strncmp(sub, "/part/", 6) == 0 && sub[6] && !strchr(sub + 6, '/');
    if (!(sub[0] == '\0' || raw || headers || part)) {
        mp_404(req);
        return;
    }
    if (!get) {
        mp_405(req, "GET");
        return;
    }
    struct sink_msg *m = mp_find(api, req, rest, idlen);
    if (!m)
        return;
    if (raw) {
        const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        struct evkeyvalq q = {NULL, &q.tqh_first};
        if (qs && evhttp_parse_query_str(qs, &q) == 0) {
            const char *dl = evhttp_find_header(&q, "dl");
            if (dl && strcmp(dl, "1") == 0) {
                char cd[64];
                snprintf(cd, sizeof(cd), "attachment; filename=\"%llu.eml\"",
                         (unsigned long long)m->id);
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Disposition",
                                  cd);
            }
        }
        evhttp_clear_headers(&q);
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Content-Type-Options",
                          "nosniff");
        mp_send(req, 200, "text/plain; charset=utf-8", m->raw, m->size);
    } else if (headers) {
        mp_headers(m, req);
    } else if (part) {
        mp_part(m, req, sub + 6);
    } else {
        if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
            m->read = true; /* as Mailpit: reading a message marks it read */
        mp_json(req, mp_message(m), 0);
    }
}

void mailpit_handle(struct mailpit_env *api, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    const char *p = path + strlen("/api/v1");

    if (method == EVHTTP_REQ_OPTIONS) { /* Mailpit answers every /api/v1/ preflight */
        mp_text(req, 200, "");
        return;
    }
    if (strcmp(p, "/messages") == 0) {
        struct mp_page pg;
        if (get) {
            if (mp_parse_page(req, &pg) == 0)
                mp_list(api, req, &pg, NULL);
            evhttp_clear_headers(&pg.q);
        } else if (method == EVHTTP_REQ_DELETE) {
            mp_delete_messages(api, req);
        } else if (method == EVHTTP_REQ_PUT) {
            mp_set_read(api, req);
        } else {
            mp_405(req, "GET, PUT, DELETE");
        }
    } else if (strcmp(p, "/search") == 0) {
        struct mp_page pg;
        struct search_query sq = {0};
        if (!get && method != EVHTTP_REQ_DELETE) {
            mp_405(req, "GET, DELETE");
            return;
        }
        if (mp_parse_page(req, &pg) == 0 && mp_parse_search(req, pg.query, &sq) == 0) {
            if (get) {
                mp_list(api, req, &pg, &sq);
            } else {
                struct sink_msg *m = api->store->newest, *older;
                for (; m; m = older) {
                    older = m->older;
                    if (mp_matches(&sq, m))
                        store_delete(api->store, m->id);
                }
                mp_text(req, 200, "ok");
            }
        }
        search_free(&sq);
        evhttp_clear_headers(&pg.q);
    } else if (strncmp(p, "/message/", 9) == 0) {
        mp_message_route(api, req, p + 9, get);
    } else if (strcmp(p, "/info") == 0) {
        if (get)
            mp_info(api, req);
        else
            mp_405(req, "GET");
    } else if (strcmp(p, "/tags") == 0) {
        if (get)
            mp_json(req, json_array(), 0);
        else
            mp_405(req, "GET");
    } else {
        mp_404(req);
    }
}
