/*
 * courier.c - what the couriers share (see courier.h): the table of real
 * couriers, the envelope values handed to programs, the prefix of header
 * fields, and the CRLF-to-LF reader.  Nothing is allocated; nothing is
 * logged.
 */
#include "deliver/courier.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "queue/envelope.h"

void courier_local_init(struct courier_local *cl, const struct courier_job *j,
                        struct rcpt_result *res)
{
    const struct env_rcpt *r = j->rcpts[0];
    const char *at = strrchr(r->addr, '@');
    result_clear(res);
    cl->user[0] = cl->domain[0] = '\0';
    if (at && (size_t)(at - r->addr) < sizeof(cl->user)) {
        memcpy(cl->user, r->addr, (size_t)(at - r->addr));
        cl->user[at - r->addr] = '\0';
        snprintf(cl->domain, sizeof(cl->domain), "%s", at + 1);
    }
    cl->vars = (struct courier_vars){.from = j->env->sender,
                                     .to = r->addr,
                                     .to_user = cl->user,
                                     .to_domain = cl->domain,
                                     .orig_to = r->orig};
    snprintf(cl->prefix, sizeof(cl->prefix), "Return-Path: <%.256s>\r\nDelivered-To: %.256s\r\n",
             j->env->sender, r->addr);
}

bool courier_has_ctl(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

void courier_lf_init(struct courier_lf *r, const char *prefix, size_t prefix_len, const char *msg,
                     size_t len, bool convert)
{
    r->seg[0] = prefix ? prefix : "";
    r->len[0] = prefix ? prefix_len : 0;
    r->seg[1] = msg ? msg : "";
    r->len[1] = msg ? len : 0;
    r->idx = 0;
    r->pos = 0;
    r->convert = convert;
}

size_t courier_lf_read(struct courier_lf *r, char *dst, size_t size)
{
    size_t n = 0;

    while (n < size && r->idx < 2) {
        const char *s = r->seg[r->idx];
        size_t len = r->len[r->idx];
        if (r->pos >= len) {
            r->idx++;
            r->pos = 0;
            continue;
        }
        if (!r->convert) {
            size_t k = len - r->pos;
            if (k > size - n)
                k = size - n;
            memcpy(dst + n, s + r->pos, k);
            n += k;
            r->pos += k;
            continue;
        }
        /* copy up to the next CR, then decide about the CR itself */
        size_t k = len - r->pos;
        if (k > size - n)
            k = size - n;
        const char *cr = memchr(s + r->pos, '\r', k);
        if (cr)
            k = (size_t)(cr - (s + r->pos));
        memcpy(dst + n, s + r->pos, k);
        n += k;
        r->pos += k;
        if (cr) {
            if (r->pos + 1 < len && s[r->pos + 1] == '\n') {
                r->pos++; /* drop the CR of a CRLF; the LF is copied next */
            } else if (n < size) {
                dst[n++] = '\r';
                r->pos++;
            }
        }
    }
    return n;
}

void courier_thread_exit(void)
{
    for (size_t k = 0; k < COURIER_KINDS; k++)
        if (courier_table[k]->thread_exit)
            courier_table[k]->thread_exit();
}

const struct courier_ops *const courier_table[COURIER_KINDS] = {
    [COURIER_MAILDIR] = &courier_maildir, /* deliver/maildir.c */
    [COURIER_MDA] = &courier_mda,         /* deliver/mda.c */
    [COURIER_PIPE] = &courier_pipe,       /* deliver/pipe.c */
    [COURIER_SMTP] = &courier_smtp,       /* deliver/remote.c */
    [COURIER_LMTP] = &courier_lmtp,       /* deliver/lmtp.c */
};
