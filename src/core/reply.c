/*
 * reply.c - SMTP replies: formatting one line (server) and parsing a whole,
 * possibly multi-line, reply (client).
 *
 * Formatter: "CODE[-| ][ENH ]TEXT\r\n", never longer than SMTP_REPLY_LINE_MAX
 * octets; controls in the text become '?', and a cut never splits a UTF-8
 * sequence.  A code outside 200..599 or a malformed enhanced code is a bug in
 * the caller and aborts.
 *
 * Parser: one line at a time, bounded by SMTP_REPLY_LINE_MAX - 2 octets per
 * line and REPLY_LINES_MAX lines; the kept text is bounded by REPLY_TEXT_MAX
 * (truncated silently).  Controls in the received text become '?' so that
 * r.text is always a printable C string.  An enhanced code is recognised
 * only when "X.Y.Z" is followed by a space or the end of the line; on
 * continuation lines the same code as the first line's is stripped.
 *
 * Never: allocates, reads past len, or writes past size.
 */
#include "core/reply.h"

#include <stdlib.h>
#include <string.h>

#include "core/line.h"

static bool reply_is_ctrl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static bool reply_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

size_t enh_parse(const char *s, size_t len)
{
    size_t i = 0;

    if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < len && reply_is_digit(s[i]) && d < 3) {
            i++;
            d++;
        }
        if (d == 0 || (i < len && reply_is_digit(s[i])))
            return 0;
        if (part == 0) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
    }
    return i;
}

size_t reply_format_line(char *buf, size_t size, int code, const char *enh, bool last,
                         const char *text)
{
    char head[4 + ENH_MAX + 1];
    size_t hl, tl, room, need, n = 0;

    if (code < 200 || code > 599)
        abort(); /* caller bug */
    if (enh != NULL && enh[0] == '\0')
        enh = NULL;
    if (enh != NULL) {
        size_t el = strlen(enh);
        if (el >= ENH_MAX || enh_parse(enh, el) != el || enh[0] != '0' + code / 100)
            abort(); /* caller bug */
    }
    head[0] = (char)('0' + code / 100);
    head[1] = (char)('0' + code / 10 % 10);
    head[2] = (char)('0' + code % 10);
    head[3] = last ? ' ' : '-';
    hl = 4;
    if (enh != NULL) {
        size_t el = strlen(enh);
        memcpy(head + hl, enh, el);
        hl += el;
        head[hl++] = ' ';
    }
    if (text == NULL)
        text = "";
    tl = strlen(text);
    room = SMTP_REPLY_LINE_MAX - 2 - hl;
    if (tl > room) {
        tl = room;
        /* do not end inside a UTF-8 sequence: back off continuation octets */
        while (tl > 0 && ((unsigned char)text[tl] & 0xc0) == 0x80)
            tl--;
    }
    need = hl + tl + 2;
    for (size_t k = 0; k < need && n + 1 < size; k++, n++) {
        char c;
        if (k < hl)
            c = head[k];
        else if (k < hl + tl)
            c = reply_is_ctrl((unsigned char)text[k - hl]) ? '?' : text[k - hl];
        else
            c = k == hl + tl ? '\r' : '\n';
        buf[n] = c;
    }
    if (size > 0)
        buf[n] = '\0';
    return need;
}

void reply_parser_init(struct reply_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static enum reply_status reply_error(struct reply_parser *p, const char *why)
{
    p->state = 3;
    p->error = why;
    return REPLY_ERROR;
}

static void reply_append(struct reply *r, const char *s, size_t n)
{
    for (size_t k = 0; k < n && r->textlen + 1 < REPLY_TEXT_MAX; k++)
        r->text[r->textlen++] = reply_is_ctrl((unsigned char)s[k]) ? '?' : s[k];
    r->text[r->textlen] = '\0';
}

enum reply_status reply_parser_line(struct reply_parser *p, const char *line, size_t len)
{
    struct reply *r = &p->r;
    int code;
    bool last;
    size_t off, el;

    if (p->state == 3)
        return REPLY_ERROR;
    if (p->state == 2)
        return reply_error(p, "line after a complete reply");
    if (len > SMTP_REPLY_LINE_MAX - 2)
        return reply_error(p, "reply line too long");
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
        !reply_is_digit(line[2]))
        return reply_error(p, "malformed reply code");
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return reply_error(p, "malformed reply separator");
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    last = len == 3 || line[3] == ' ';
    if (p->state == 1 && code != r->code)
        return reply_error(p, "reply code changed within a multi-line reply");
    if (r->nlines >= REPLY_LINES_MAX)
        return reply_error(p, "too many lines in a reply");

    off = len > 3 ? 4 : 3;
    el = enh_parse(line + off, len - off);
    if (el > 0 && off + el < len && line[off + el] != ' ')
        el = 0;
    if (p->state == 0) {
        r->code = code;
        if (el > 0) {
            if (line[off] != line[0])
                return reply_error(p, "enhanced code class does not match reply code");
            memcpy(r->enh, line + off, el);
            r->enh[el] = '\0';
        }
    } else {
        if (el > 0 && !(strlen(r->enh) == el && memcmp(r->enh, line + off, el) == 0))
            el = 0; /* only a repetition of the first line's code is stripped */
        if (r->textlen + 1 < REPLY_TEXT_MAX) {
            r->text[r->textlen++] = '\n';
            r->text[r->textlen] = '\0';
        }
    }
    if (el > 0) {
        off += el;
        if (off < len)
            off++; /* the space after the enhanced code */
    }
    reply_append(r, line + off, len - off);
    r->nlines++;
    p->state = last ? 2 : 1;
    return last ? REPLY_DONE : REPLY_MORE;
}
