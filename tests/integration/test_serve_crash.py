"""test_serve_crash - `tern serve` under kill -9, with a full queue and a full disk.

Standard library only (unittest, smtplib, mailbox); loopback only.  Every
server is started by the test itself and ended by its PID: SIGKILL in the
crash test, SIGTERM (then a check of a clean exit and of the absence of any
sanitizer report) at the end of every test.

- KillRestartTest: clients send a few hundred messages (unique token, 1-4 KiB,
  some with several recipients or an alias) while the server is killed with
  SIGKILL at random moments and restarted on the same port and data_dir.  At
  the end every message that got 250 is in the Maildir of each recipient; a
  message whose 250 was never seen is in all its mailboxes, whole, or in none;
  no copy is truncated or mixed; every recipient here is a Maildir, where
  delivery is exactly once: each transaction is stored at most once per
  mailbox, even when its item was in the queue at a kill (a retry after a lost
  250 is another transaction, and may be stored too); every file in queue/ at a
  kill is a whole item (its message matches the envelope's size and CRC-32C).
- DamagedQueueTest: items queued (their Maildir blocked), the server stopped;
  a queue item is one file, queue/ID (envelope text up to its "end" line, then
  the message): one cut inside its message, one with a bit flipped in its
  message, one cut inside its envelope: at start-up those three are
  quarantined (quarantine/ID and ID.why) with an error in the log, the others
  delivered, nothing truncated; an item whose message is cut while the server
  runs is caught before delivery, and a damaged `tern sendmail` pickup item
  (pickup/queue/ID, one file too) is not queued.
- ExactlyOnceTest: the state a kill -9 leaves between the Maildir link and the
  update of the queue item, made on purpose: the repeated delivery stores no second
  copy (copy still in new/, or moved to cur/ with flags).
- QueueFullTest: [queue] max_items = 5 with an MDA that fails (exit 75): the
  sixth message gets 452 4.3.1 at MAIL; once the MDA works again and the queue
  drains, mail is accepted again.
- DiskFullTest: data_dir on a 2 MiB tmpfs (skipped when mounting is not
  permitted): min_free_space = 0 -> 452 at end of data from ENOSPC, never a 250
  followed by a loss, and every accepted message delivered once space is freed;
  min_free_space = 1M -> 452 4.3.1 at MAIL.

Environment: TERN is the tern binary (default /work/main/build/tern);
TERN_CRASH_SEED fixes the random choices of the crash test (printed on failure);
TERN_KEEP=1 keeps the temporary folders.
"""

import hashlib
import mailbox
import os
import pwd
import random
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
import unittest

from servelib import (AS_ROOT, HOSTNAME, SERVE_USER, Serve, envelope_end, item_envelope, item_problem,
                      maildir_path, queue_files, queued_id)
from ternlib import SANITIZER_RE, TERN, Dialogue, dot_stuff, free_port, temp_dir, wait_until, write_file

SETTLE_TIMEOUT = 60.0
DOMAIN = "example.test"


# ---- small helpers (this file's own) ---------------------------------------------


def write_conf(folder, port, data_dir, queue=None, local=None):
    """tern.conf in folder with an smtp listener on 127.0.0.1:port; returns its path."""
    q = {"retry": "1s", "give_up": "1h", "delay_warning": "off", "min_free_space": "0"}
    q.update(queue or {})
    lines = ["[server]", "hostname = " + HOSTNAME, "data_dir = " + data_dir, "",
             "[listen]", "smtp = 127.0.0.1:%d" % port, "", "[queue]"]
    lines += ["%s = %s" % kv for kv in q.items()]
    if local:
        lines += ["", "[local]"] + ["%s = %s" % kv for kv in local.items()]
    if AS_ROOT:  # tern serve leaves root for SERVE_USER, who must get through to data_dir
        lines.insert(3, "user = " + SERVE_USER)
        for d in {folder, os.path.dirname(os.path.join(folder, data_dir))}:
            os.chmod(d, 0o755)
    return write_file(os.path.join(folder, "tern.conf"), "\n".join(lines) + "\n")


def tern_cmd(*args, input=None):
    p = subprocess.run([TERN] + list(args), input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (args, p.returncode,
                                                      p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


def add_users(conf, *names):
    for n in names:
        tern_cmd("user", "add", "--config", conf, "%s@%s" % (n, DOMAIN), input=b"pw-%s\n" % n.encode())


def maildir_raw(data_dir, user):
    """The raw octets of every message in new/ and cur/ of user's Maildir."""
    path = maildir_path(data_dir, "%s@%s" % (user, DOMAIN))
    if not os.path.isdir(path):
        return []
    md = mailbox.Maildir(path, factory=None, create=False)
    return [md.get_bytes(k) for k in md.keys()]


def split_message(raw):
    """(headers as text, body octets) of a stored message (LF line ends)."""
    head, sep, body = raw.partition(b"\n\n")
    return head.decode("utf-8", "replace"), body if sep else None


def header(head, name):
    m = re.search(r"^%s:[ \t]*(.*)$" % re.escape(name), head, re.M | re.I)
    return m.group(1).strip() if m else None


def wait_settled(data_dir, srv, timeout=SETTLE_TIMEOUT, quiet=1.0):
    """Wait (bounded) until queue/queue is empty and the log has not grown for `quiet` s."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = srv.log_size()
        if now_size != size:
            size, since = now_size, time.monotonic()
        if not queue_files(data_dir) and time.monotonic() - since >= quiet:
            return True
        time.sleep(0.1)
    return False


def queued_senders(data_dir, problems):
    """{queue id: envelope sender} of every item in queue/queue (one file each, whole once it is
    there: the rename from tmp/ is the commit); what is wrong with any that is not whole is
    appended to problems."""
    out = {}
    qdir = os.path.join(data_dir, "queue", "queue")
    for name in queue_files(data_dir):
        path = os.path.join(qdir, name)
        try:
            bad = item_problem(path)
            text = item_envelope(path)
        except FileNotFoundError:
            continue
        if bad:
            problems.append("queue/%s at a kill: %s" % (name, bad))
            continue
        m = re.search(r"^sender <(.*)>$", text, re.M)
        out[name] = m.group(1) if m else None
    return out


# ---- the crash test -------------------------------------------------------------------

N_MESSAGES = 300
N_CLIENTS = 2
N_KILLS = 5
MAX_ATTEMPTS = 6
CLIENT_TIMEOUT = 120.0
USERS = ("alice", "bob", "carol")
ALIASES = {"team": ("alice", "bob")}
PHASES = ("in_data", "after_dot", "after_250", "any", "any")


class Msg:
    """One message of the crash test and what the client saw of it."""

    def __init__(self, i, tag, rng):
        self.i = i
        self.token = "%s-%03d" % (tag, i)
        pick = rng.random()
        if pick < 0.60:
            self.rcpts = ["alice"]
        elif pick < 0.75:
            self.rcpts = ["alice", "bob"]
        elif pick < 0.85:
            self.rcpts = ["bob", "carol"]
        elif pick < 0.95:
            self.rcpts = ["team"]
        else:
            self.rcpts = ["team", "carol", "alice"]
        boxes = set()
        for r in self.rcpts:
            boxes.update(ALIASES.get(r, (r,)))
        self.boxes = boxes
        size = rng.randint(1024, 4096)
        lines, n = [], 0
        while n < size:
            line = "%s line %04d %s" % (self.token, len(lines), "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(rng.randint(10, 60))))
            if rng.random() < 0.05:
                line = "." + line  # dot-stuffing on the wire
            lines.append(line)
            n += len(line) + 2
        body = ("\r\n".join(lines) + "\r\n").encode()
        head = ("From: <client@client.test>\r\nTo: %s\r\nSubject: crash test %s\r\n"
                "Message-ID: <%s@client.test>\r\nX-Crash-Token: %s\r\n\r\n"
                % (", ".join("<%s@%s>" % (r, DOMAIN) for r in self.rcpts), self.token, self.token,
                   self.token)).encode()
        self.data = head + body
        self.body_hash = hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()
        self.attempts = []  # [k, dot_sent, code or None, text]
        self.retry_ambiguous = i % 2 == 0  # odd: give up once the dot was sent and no reply came

    def sender(self, k):
        return "m%03d.a%d@client.test" % (self.i, k)

    @property
    def got_250(self):
        return any(a[2] == 250 for a in self.attempts)

    @property
    def lost_250(self):
        """Attempts whose end of data was sent but whose reply was never seen."""
        return [a for a in self.attempts if a[1] and a[2] is None]


class CrashClient(threading.Thread):
    """Sends its share of the messages over smtplib, reconnecting when the server is gone."""

    def __init__(self, shared, msgs):
        super().__init__(daemon=True)
        self.sh = shared
        self.msgs = msgs
        self.smtp = None
        self.error = None

    def _connect(self):
        while not self.sh.abort.is_set():
            try:
                s = smtplib.SMTP("127.0.0.1", self.sh.port, local_hostname="client.test", timeout=15)
                code, _ = s.ehlo()
                if code == 250:
                    return s
                s.close()
            except OSError:  # refused, reset, smtplib.SMTPServerDisconnected ...
                pass
            time.sleep(0.02)
        raise RuntimeError("client deadline passed")

    def _drop(self):
        if self.smtp:
            try:
                self.smtp.close()
            except OSError:
                pass
        self.smtp = None

    def _attempt(self, m, k):
        """One transaction; appends [k, dot_sent, code, text] to m.attempts."""
        rec = [k, False, None, ""]
        m.attempts.append(rec)
        try:
            if self.smtp is None:
                self.smtp = self._connect()
            s = self.smtp
            code, text = s.mail(m.sender(k))
            if code != 250:
                rec[2], rec[3] = code, "MAIL: %r" % text
                s.rset()
                return
            for r in m.rcpts:
                code, text = s.rcpt("%s@%s" % (r, DOMAIN))
                if code != 250:
                    rec[2], rec[3] = code, "RCPT: %r" % text
                    s.rset()
                    return
            code, text = s.docmd("DATA")
            if code != 354:
                rec[2], rec[3] = code, "DATA: %r" % text
                return
            self.sh.events["in_data"].set()
            s.send(dot_stuff(m.data) + b".\r\n")
            rec[1] = True
            self.sh.events["after_dot"].set()
            code, text = s.getreply()
            rec[2], rec[3] = code, text.decode(errors="replace")
            if code == 250:
                self.sh.events["after_250"].set()
        except OSError as e:
            rec[3] = "%s: %s" % (type(e).__name__, e)
            self._drop()

    def run(self):
        try:
            for m in self.msgs:
                for k in range(MAX_ATTEMPTS):
                    self._attempt(m, k)
                    a = m.attempts[-1]
                    if a[2] == 250 or (a[2] is not None and a[2] >= 500):
                        break
                    if a[1] and a[2] is None and not m.retry_ambiguous:
                        break
                    time.sleep(0.01)
                self.sh.progress()
                time.sleep(self.sh.think_time())
            self._drop()
        except Exception as e:  # reported by the test
            self.error = "%s: %s" % (type(e).__name__, e)


class Shared:
    def __init__(self, port, n):
        self.port = port
        self.n = n
        self.lock = threading.Lock()
        self.done = 0
        self.kills = 0
        self.abort = threading.Event()
        self.events = {p: threading.Event() for p in PHASES}

    def progress(self):
        with self.lock:
            self.done += 1

    def think_time(self):
        """Fast until this stretch's share of messages is sent, then a trickle until the next kill,
        so that every kill falls while mail is flowing."""
        with self.lock:
            ahead = self.kills < N_KILLS and self.done >= (self.kills + 1) * self.n // (N_KILLS + 1)
        return 0.06 if ahead else 0.002


class KillRestartTest(unittest.TestCase):
    def test_kill_9_while_receiving(self):
        seed = int(os.environ.get("TERN_CRASH_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        t0 = time.monotonic()
        where = temp_dir(self.addCleanup, "tern-crash-")
        data_dir = os.path.join(where, "data")
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, "data")
        add_users(conf, *USERS)
        with open(os.path.join(data_dir, "domains", DOMAIN, "aliases"), "w") as f:
            for name, targets in ALIASES.items():
                f.write("%s: %s\n" % (name, ", ".join(targets)))

        tag = "%08x" % rng.randrange(1 << 32)
        msgs = [Msg(i, tag, rng) for i in range(N_MESSAGES)]
        shared = Shared(port, N_MESSAGES)
        runs = []  # every Serve, in order
        snapshots = []  # per kill: {queue id: sender} of the complete items then on disk
        damaged = []  # items in queue/ at a kill that were not whole
        ctx = "seed=%d dir=%s" % (seed, where)

        runs.append(Serve(conf, log_path=os.path.join(where, "run-0.log")))
        self.addCleanup(lambda: runs[-1].stop())
        clients = [CrashClient(shared, msgs[c::N_CLIENTS]) for c in range(N_CLIENTS)]
        for c in clients:
            c.start()
        timer = threading.Timer(CLIENT_TIMEOUT, shared.abort.set)
        timer.daemon = True
        timer.start()
        self.addCleanup(timer.cancel)
        self.addCleanup(shared.abort.set)

        phases = list(PHASES)
        rng.shuffle(phases)
        kill_notes = []
        for k in range(N_KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            phase = phases[k]
            busy = any(c.is_alive() for c in clients)
            if phase != "any" and busy:
                ev = shared.events[phase]
                ev.clear()
                ev.wait(2.0)
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 0.003))
            if runs[-1].proc.poll() is not None:
                self.fail("run %d of tern serve died by itself (%s) (%s)\n%s"
                          % (k, runs[-1].proc.returncode, ctx, runs[-1].log[-4000:]))
            runs[-1].kill()
            snapshots.append(queued_senders(data_dir, damaged))
            kill_notes.append("%s%s after %d msgs" % (phase, "" if busy else " (clients done)",
                                                       shared.done))
            with shared.lock:
                shared.kills += 1
            runs.append(Serve(conf, log_path=os.path.join(where, "run-%d.log" % (k + 1))))

        for c in clients:
            c.join(CLIENT_TIMEOUT)
        timer.cancel()
        for c in clients:
            self.assertFalse(c.is_alive(), "client still running (%s)" % ctx)
            self.assertIsNone(c.error, "client: %s (%s)" % (c.error, ctx))
        srv = runs[-1]
        settled = wait_settled(data_dir, srv)
        left = queue_files(data_dir)
        srv.check_clean_exit()
        self.assertTrue(settled, "queue not empty after %.0f s: %s (%s)" % (SETTLE_TIMEOUT, left[:10], ctx))

        logs = [r.log for r in runs]
        for n, log in enumerate(logs):
            m = SANITIZER_RE.search(log)
            self.assertIsNone(m, "run %d: sanitizer report (%s)\n%s" % (n, ctx, log[-4000:]))
            for q in re.findall(r"queue recovered: .*?(\d+) quarantined", log):
                self.assertEqual(q, "0", "run %d quarantined an item (%s)" % (n, ctx))

        self.assertEqual(damaged, [], "a file in queue/ was not a whole item (%s)" % ctx)
        self._check_mailboxes(msgs, data_dir, snapshots, ctx)
        report = self._report(msgs, data_dir, snapshots)
        sys.stderr.write("\n[crash test] seed=%d, %d kills (%s); %s; %.1f s\n"
                         % (seed, N_KILLS, "; ".join(kill_notes), report, time.monotonic() - t0))

    # -- the verdict ----------------------------------------------------------------

    def _copies(self, data_dir):
        """{(i, k, user): count}, {(i, k, user): [(headers, body)]}, problems found reading."""
        copies, stored, problems = {}, {}, []
        for user in USERS:
            for raw in maildir_raw(data_dir, user):
                head, body = split_message(raw)
                rp = header(head, "Return-Path")
                m = re.fullmatch(r"<m(\d{3})\.a(\d+)@client\.test>", rp or "")
                if not m or body is None:
                    problems.append("%s: unidentified message %r" % (user, raw[:300]))
                    continue
                key = (int(m.group(1)), int(m.group(2)), user)
                copies[key] = copies.get(key, 0) + 1
                stored.setdefault(key, []).append((head, body))
        return copies, stored, problems

    def _check_mailboxes(self, msgs, data_dir, snapshots, ctx):
        copies, stored_all, problems = self._copies(data_dir)
        by_i = {m.i: m for m in msgs}
        for (i, k, user), stored in stored_all.items():
            m = by_i.get(i)
            if m is None or k >= len(m.attempts):
                problems.append("%s: copy of a transaction never made: m%03d.a%d" % (user, i, k))
                continue
            if not m.attempts[k][1]:
                problems.append("%s: m%03d.a%d delivered but its end of data was never sent"
                                % (user, i, k))
            if user not in m.boxes:
                problems.append("%s: m%03d delivered to the wrong mailbox" % (user, i))
            for head, body in stored:
                if header(head, "X-Crash-Token") != m.token or header(head, "Delivered-To") != \
                        "%s@%s" % (user, DOMAIN):
                    problems.append("%s: m%03d.a%d has wrong headers:\n%s" % (user, i, k, head))
                if hashlib.sha256(body).hexdigest() != m.body_hash:
                    problems.append("%s: m%03d.a%d body differs (%d octets stored): truncated or "
                                    "mixed" % (user, i, k, len(body)))

        pending = {}  # sender -> number of kills at which it was queued; and id uniqueness
        for snap in snapshots:
            for qid, sender in snap.items():
                pending[sender] = pending.get(sender, 0) + 1
        ids_by_sender = {}
        for snap in snapshots:
            for qid, sender in snap.items():
                ids_by_sender.setdefault(sender, set()).add(qid)
        for sender, ids in ids_by_sender.items():
            if len(ids) > 1:
                problems.append("one transaction queued twice: %s as %s" % (sender, sorted(ids)))

        for m in msgs:
            for a in m.attempts:
                k = a[0]
                have = {u for u in USERS if copies.get((m.i, k, u))}
                if m.sender(k) in pending and have != m.boxes:
                    problems.append("m%03d.a%d was a complete queue item at a kill but is missing "
                                    "from %s: not recovered" % (m.i, k, sorted(m.boxes - have)))
                if a[2] == 250 and have != m.boxes:
                    problems.append("m%03d.a%d got 250 (%s) but is missing from %s"
                                    % (m.i, k, a[3], sorted(m.boxes - have)))
                elif a[2] != 250 and have and have != m.boxes:
                    problems.append("m%03d.a%d (no 250: %s) is in %s but not in %s: split"
                                    % (m.i, k, a[3] or "-", sorted(have), sorted(m.boxes - have)))
                if a[2] is not None and a[2] != 250 and have:
                    problems.append("m%03d.a%d was refused (%d %s) yet delivered"
                                    % (m.i, k, a[2], a[3]))
                if a[2] is not None and a[2] >= 500:
                    problems.append("m%03d.a%d permanently refused: %d %s" % (m.i, k, a[2], a[3]))
                for u in have:  # Maildir delivery is exactly once, kills or not
                    if copies[(m.i, k, u)] > 1:
                        problems.append("%s: m%03d.a%d stored %d times (it was in the queue at %d "
                                        "kills)" % (u, m.i, k, copies[(m.i, k, u)],
                                                    pending.get(m.sender(k), 0)))
            if not m.attempts or (not m.got_250 and not m.lost_250):
                problems.append("m%03d: never sent completely (%s)" % (m.i, m.attempts))
        if problems:
            self.fail("%d problems (%s):\n%s" % (len(problems), ctx, "\n".join(problems[:40])))

    def _report(self, msgs, data_dir, snapshots):
        copies, _, _ = self._copies(data_dir)
        ok = sum(1 for m in msgs if m.got_250)
        lost = [m for m in msgs if m.lost_250]
        lost_kept = sum(1 for m in lost for a in m.lost_250
                        if any(copies.get((m.i, a[0], u)) for u in USERS))
        lost_n = sum(len(m.lost_250) for m in lost)
        retry_dups = sum(1 for m in msgs if m.got_250 and
                         any(copies.get((m.i, a[0], u)) for a in m.lost_250 for u in USERS))
        redeliv = sum(c - 1 for c in copies.values() if c > 1)
        given_up = sum(1 for m in msgs if not m.got_250)
        attempts = sum(len(m.attempts) for m in msgs)
        return ("%d messages, %d attempts, %d got 250, %d given up without 250; %d ends of data "
                "without a reply: %d of them delivered whole, %d not at all; duplicates: %d messages "
                "(retry after a lost 250), %d copies (redelivery after a kill); items queued at the "
                "kills: %s" % (len(msgs), attempts, ok, given_up, lost_n, lost_kept, lost_n - lost_kept,
                               retry_dups, redeliv, [len(s) for s in snapshots]))


# ---- damaged queue items ----------------------------------------------------------------


def block_maildir(data_dir, user):
    """Make user's Maildir undeliverable for now (new/ is a file: 4.3.5, retried). What is
    created belongs to the user tern serve runs as."""
    md = maildir_path(data_dir, "%s@%s" % (user, DOMAIN))
    owner = pwd.getpwnam(SERVE_USER) if AS_ROOT else None
    for sub in ("tmp", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    if os.path.isdir(os.path.join(md, "new")):
        os.rename(os.path.join(md, "new"), os.path.join(md, "new.away"))
    write_file(os.path.join(md, "new"), "blocked\n")
    for root, dirs, files in os.walk(os.path.join(data_dir, "mail")) if owner else ():
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.lchown(n, owner.pw_uid, owner.pw_gid)
    return md


def unblock_maildir(md):
    os.unlink(os.path.join(md, "new"))
    if os.path.isdir(os.path.join(md, "new.away")):
        os.rename(os.path.join(md, "new.away"), os.path.join(md, "new"))


def qpath(data_dir, name, sub="queue"):
    return os.path.join(data_dir, "queue", sub, name)


def envelope_size(path):
    """The octets of the envelope part of the one-file queue item at path (up to and including
    its first "end" line)."""
    with open(path, "rb") as f:
        end = envelope_end(f.read())
    assert end > 0, "%s has no end line" % path
    return end


def cut_at(path, size):
    """Truncate the file at path to size octets; returns what is left."""
    with open(path, "r+b") as f:
        f.truncate(size)
    with open(path, "rb") as f:
        return f.read()


# what the error line and ID.why say of each kind of damage
MSG_DAMAGED = r"message file damaged"
ENV_DAMAGED = r"envelope damaged after it was committed"


class DamagedQueueTest(unittest.TestCase):
    """A queue item damaged after its 250 is quarantined (the file kept as it was, and an ID.why,
    an error logged), never delivered truncated, and the other items are delivered."""

    def test_damaged_items_quarantined(self):
        where = temp_dir(self.addCleanup, "tern-damage-")
        data_dir = os.path.join(where, "data")
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, "data", queue={"retry": "1s"})
        add_users(conf, "alice")
        md = block_maildir(data_dir, "alice")
        srv = Serve(conf, log_path=os.path.join(where, "serve-1.log"))
        self.addCleanup(srv.check_clean_exit)
        ids, hashes = {}, {}
        for n in range(5):
            token = "dmg%d" % n
            data, hashes[token] = simple_message(token, size=4096)
            stage, r = transaction(port, "%s@client.test" % token, ["alice@" + DOMAIN], data)
            self.assertEqual((stage, r.code), ("data", 250), r)
            ids[token] = queued_id(r)
        self.assertTrue(wait_until(lambda: srv.log.count("deferred") >= 5, 20), srv.log[-3000:])
        srv.check_clean_exit()
        self.assertEqual(queue_files(data_dir), sorted(ids.values()))

        # damage three items while the server is stopped
        p1 = qpath(data_dir, ids["dmg1"])  # cut inside its message
        start1 = envelope_size(p1)
        kept = {"dmg1": cut_at(p1, start1 + (os.path.getsize(p1) - start1) // 2)}
        p2 = qpath(data_dir, ids["dmg2"])  # one bit flipped in its message
        self.assertGreater(os.path.getsize(p2) - envelope_size(p2), 10)
        with open(p2, "r+b") as f:
            f.seek(-10, os.SEEK_END)
            c = f.read(1)
            f.seek(-10, os.SEEK_END)
            f.write(bytes([c[0] ^ 0x01]))
        with open(p2, "rb") as f:
            kept["dmg2"] = f.read()
        p3 = qpath(data_dir, ids["dmg3"])  # cut inside its envelope (before "end"), after its 250
        kept["dmg3"] = cut_at(p3, envelope_size(p3) // 2)
        self.assertEqual(envelope_end(kept["dmg3"]), -1)
        unblock_maildir(md)

        srv2 = Serve(conf, log_path=os.path.join(where, "serve-2.log"))
        self.addCleanup(srv2.check_clean_exit)
        log = srv2.log
        self.assertRegex(log, r"queue recovered: 2 items, 0 incomplete removed, 0 orphans removed, "
                              r"3 quarantined")
        quarantine = queue_files(data_dir, "quarantine")
        self.assertEqual(quarantine, sorted(ids[t] + ext for t in ("dmg1", "dmg2", "dmg3")
                                            for ext in ("", ".why")))
        for token, what in (("dmg1", MSG_DAMAGED), ("dmg2", MSG_DAMAGED), ("dmg3", ENV_DAMAGED)):
            qid = ids[token]
            self.assertRegex(log, r"serve error: id=%s: .*%s" % (re.escape(qid), what))
            self.assertRegex(log, r"(?m)queue/%s: .*moved to \S+/quarantine/%s$"
                             % (re.escape(qid), re.escape(qid)))
            with open(qpath(data_dir, qid + ".why", "quarantine")) as f:
                self.assertRegex(f.read(), what)
            with open(qpath(data_dir, qid, "quarantine"), "rb") as f:
                self.assertEqual(f.read(), kept[token], "the damaged file is kept as it was")
        self.assertTrue(wait_settled(data_dir, srv2, quiet=0.5), srv2.log[-3000:])
        self.assert_mailbox(data_dir, {"dmg0": 1, "dmg4": 1}, hashes)

        # an item whose message is cut while the server runs is caught on the delivery path
        md = block_maildir(data_dir, "alice")
        data, hashes["dmg5"] = simple_message("dmg5", size=4096)
        stage, r = transaction(port, "dmg5@client.test", ["alice@" + DOMAIN], data)
        self.assertEqual((stage, r.code), ("data", 250), r)
        qid = queued_id(r)
        self.assertTrue(srv2.wait_log(r"id=%s to=<alice@%s> via=maildir deferred"
                                      % (re.escape(qid), re.escape(DOMAIN))), srv2.log[-3000:])
        # the item is rewritten (a new file renamed over it) after the log line: cut the new one
        p5 = qpath(data_dir, qid)
        self.assertTrue(wait_until(lambda: re.search(r"\nattempts [1-9]", item_envelope(p5)), step=0.01),
                        srv2.log[-3000:])
        cut_at(p5, envelope_size(p5) + 100)
        unblock_maildir(md)
        srv2.signal(signal.SIGUSR1)
        self.assertTrue(srv2.wait_log(r"serve error: id=%s: .*%s.*quarantined, not delivered"
                                      % (re.escape(qid), MSG_DAMAGED)), srv2.log[-3000:])
        self.assertTrue(wait_settled(data_dir, srv2, quiet=0.5), srv2.log[-3000:])
        self.assertIn(qid, queue_files(data_dir, "quarantine"))
        self.assertIn(qid + ".why", queue_files(data_dir, "quarantine"))
        self.assert_mailbox(data_dir, {"dmg0": 1, "dmg4": 1}, hashes)

        # an item of the pickup folder (`tern sendmail`) damaged before the server took it
        srv2.check_clean_exit()
        data, hashes["dmg6"] = simple_message("dmg6", size=4096)
        p = subprocess.run([TERN, "sendmail", "--config", conf, "-f", "dmg6@client.test",
                            "alice@" + DOMAIN], input=data.replace(b"\r\n", b"\n"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        pickup = os.path.join(data_dir, "pickup")
        items = os.listdir(os.path.join(pickup, "queue"))
        self.assertEqual(len(items), 1, items)  # one file per item there too
        pid = items[0]
        pp = os.path.join(pickup, "queue", pid)
        self.assertIsNone(item_problem(pp))
        cut_at(pp, envelope_size(pp) + 200)  # inside its message
        # and a second one cut inside its envelope: quarantined too, never skipped in silence
        data7, _ = simple_message("dmg7", size=1024)
        p = subprocess.run([TERN, "sendmail", "--config", conf, "-f", "dmg7@client.test",
                            "alice@" + DOMAIN], input=data7.replace(b"\r\n", b"\n"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        pid7 = [n for n in os.listdir(os.path.join(pickup, "queue")) if n != pid][0]
        pp7 = os.path.join(pickup, "queue", pid7)
        cut_at(pp7, envelope_size(pp7) // 2)
        srv3 = Serve(conf, log_path=os.path.join(where, "serve-3.log"))
        self.addCleanup(srv3.check_clean_exit)
        self.assertTrue(srv3.wait_log(r"serve error: pickup id=%s: .*%s.*quarantined"
                                      % (re.escape(pid), MSG_DAMAGED)), srv3.log[-3000:])
        self.assertTrue(srv3.wait_log(r"serve error: id=%s: envelope damaged after it was committed"
                                      % re.escape(pid7)), srv3.log[-3000:])
        self.assertIn(pid, os.listdir(os.path.join(pickup, "quarantine")))
        self.assertIn(pid7, os.listdir(os.path.join(pickup, "quarantine")))
        self.assertIn(pid7 + ".why", os.listdir(os.path.join(pickup, "quarantine")))
        self.assertTrue(wait_until(lambda: os.listdir(os.path.join(pickup, "queue")) == []),
                        os.listdir(os.path.join(pickup, "queue")))
        self.assertTrue(wait_settled(data_dir, srv3, quiet=0.5), srv3.log[-3000:])
        self.assert_mailbox(data_dir, {"dmg0": 1, "dmg4": 1}, hashes)

    def assert_mailbox(self, data_dir, want, hashes):
        assert_mailbox(self, data_dir, want, hashes)


def assert_mailbox(test, data_dir, want, hashes):
    """alice's Maildir holds exactly the tokens of want, each that many times, whole."""
    got = {}
    for raw in maildir_raw(data_dir, "alice"):
        head, body = split_message(raw)
        token = header(head, "X-Token")
        got[token] = got.get(token, 0) + 1
        test.assertEqual(hashlib.sha256(body).hexdigest(), hashes.get(token),
                         "%s delivered damaged (%d octets)" % (token, len(body or b"")))
    test.assertEqual(got, want)


class ExactlyOnceTest(unittest.TestCase):
    def test_maildir_delivery_repeated_after_crash_is_not_stored_twice(self):
        """The state a kill -9 leaves between the link into new/ and the envelope update (the
        copy delivered, the item still pending), made on purpose: the repeated delivery stores
        nothing, whether the copy is still in new/ or a reader moved it to cur/ and flagged it."""
        where = temp_dir(self.addCleanup, "tern-once-")
        data_dir = os.path.join(where, "data")
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, "data", queue={"retry": "1s"})
        add_users(conf, "alice")
        md = block_maildir(data_dir, "alice")
        srv = Serve(conf, log_path=os.path.join(where, "serve-1.log"))
        self.addCleanup(lambda: srv.check_clean_exit())
        data, h = simple_message("once", size=2048)
        stage, r = transaction(port, "once@client.test", ["alice@" + DOMAIN], data)
        self.assertEqual((stage, r.code), ("data", 250), r)
        qid = queued_id(r)
        self.assertTrue(srv.wait_log(r"id=%s to=<alice@%s> via=maildir deferred"
                                     % (re.escape(qid), re.escape(DOMAIN))), srv.log[-3000:])
        srv.check_clean_exit()
        self.assertEqual(queue_files(data_dir), [qid])
        with open(qpath(data_dir, qid), "rb") as f:  # the item (one file) as it was before the delivery
            saved = f.read()
        self.assertIsNone(item_problem(qpath(data_dir, qid)))
        unblock_maildir(md)

        for n, move in enumerate((False, True)):
            srv = Serve(conf, log_path=os.path.join(where, "serve-%d.log" % (n + 2)))
            self.assertTrue(wait_settled(data_dir, srv, quiet=0.5), srv.log[-3000:])
            assert_mailbox(self, data_dir, {"once": 1}, {"once": h})
            srv.check_clean_exit()
            if n == 1:
                self.assertIn("already holds delivery %s_0" % qid, srv.log)
            if move:  # a reader saw it: new/ -> cur/ with flags
                for name in os.listdir(os.path.join(md, "new")):
                    os.rename(os.path.join(md, "new", name), os.path.join(md, "cur", name + ":2,S"))
            write_file(qpath(data_dir, qid), saved)  # the item comes back, as after a kill -9
            if AS_ROOT:
                pw = pwd.getpwnam(SERVE_USER)
                os.chown(qpath(data_dir, qid), pw.pw_uid, pw.pw_gid)
        srv = Serve(conf, log_path=os.path.join(where, "serve-4.log"))
        self.assertTrue(wait_settled(data_dir, srv, quiet=0.5), srv.log[-3000:])
        self.assertIn("already holds delivery %s_0" % qid, srv.log)
        assert_mailbox(self, data_dir, {"once": 1}, {"once": h})
        self.assertEqual(len(os.listdir(os.path.join(md, "cur"))), 1)


# ---- queue full -------------------------------------------------------------------------


def transaction(port, sender, rcpts, data):
    """One transaction over a raw socket: (stage, reply) where stage is 'mail', 'rcpt' or 'data'
    and reply the first non-2xx/3xx reply, or the end-of-data reply."""
    with Dialogue(port) as d:
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        r = d.cmd("MAIL FROM:<%s>" % sender)
        if r.code != 250:
            d.cmd("QUIT")
            return "mail", r
        for rc in rcpts:
            r = d.cmd("RCPT TO:<%s>" % rc)
            if r.code != 250:
                d.cmd("QUIT")
                return "rcpt", r
        d.cmd("DATA", 354)
        d.send(dot_stuff(data) + b".\r\n")
        r = d.reply()
        d.cmd("QUIT", 221)
        return "data", r


def simple_message(token, size=300):
    body = b"".join(b"%s line %05d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" % (token.encode(), n)
                    for n in range(max(1, size // 64)))
    head = ("From: <s@client.test>\r\nTo: <alice@%s>\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n"
            "X-Token: %s\r\n\r\n" % (DOMAIN, token, token, token)).encode()
    return head + body, hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()


class QueueFullTest(unittest.TestCase):
    def test_max_items_452_at_mail(self):
        where = temp_dir(self.addCleanup, "tern-qfull-")
        flag = os.path.join(where, "mda-works")
        mda = os.path.join(where, "mda.sh")
        write_file(mda, "#!/bin/sh\ncat > /dev/null\n[ -e '%s' ] && exit 0\nexit 75\n" % flag, 0o755)
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, "data", queue={"max_items": "5", "retry": "10m"},
                          local={"delivery": "mda", "mda_command": mda + " %to%"})
        add_users(conf, "alice")
        srv = Serve(conf, log_path=os.path.join(where, "serve.log"))
        self.addCleanup(srv.check_clean_exit)

        for n in range(5):
            stage, r = transaction(port, "s%d@client.test" % n, ["alice@" + DOMAIN],
                                   simple_message("q%d" % n)[0])
            self.assertEqual((stage, r.code), ("data", 250), "message %d: %r" % (n, r))
        self.assertTrue(wait_until(lambda: srv.log.count("deferred") >= 5, 20), srv.log[-3000:])
        self.assertEqual(len(queue_files(os.path.join(where, "data"))), 5)  # one file per item

        stage, r = transaction(port, "s5@client.test", ["alice@" + DOMAIN], simple_message("q5")[0])
        self.assertEqual((stage, r.code, r.enh), ("mail", 452, "4.3.1"), r)
        with Dialogue(port) as d:  # the session stays usable after the 452
            d.expect(220)
            d.cmd("EHLO client.test", 250)
            d.cmd("MAIL FROM:<s6@client.test>", 452, "4.3.1")
            d.cmd("RSET", 250)
            d.cmd("NOOP", 250)
            d.cmd("QUIT", 221)

        # the MDA works again: the queue drains and mail is accepted again
        open(flag, "w").close()
        srv.signal(signal.SIGUSR1)
        self.assertTrue(wait_until(lambda: not queue_files(os.path.join(where, "data")), 20),
                        srv.log[-3000:])
        stage, r = transaction(port, "s7@client.test", ["alice@" + DOMAIN], simple_message("q7")[0])
        self.assertEqual((stage, r.code), ("data", 250), r)
        self.assertTrue(wait_until(lambda: srv.log.count("via=mda delivered") >= 6, 20), srv.log[-3000:])

    def test_full_queue_of_40_drains_on_sigusr1(self):
        """More items than the scheduler runs at once (32): SIGUSR1 must retry every one of them,
        not only the first batch (the others would wait for their retry time, 10 minutes)."""
        n_items = 40
        where = temp_dir(self.addCleanup, "tern-qfull40-")
        flag = os.path.join(where, "mda-works")
        mda = os.path.join(where, "mda.sh")
        write_file(mda, "#!/bin/sh\ncat > /dev/null\n[ -e '%s' ] && exit 0\nexit 75\n" % flag, 0o755)
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, "data", queue={"max_items": str(n_items), "retry": "10m"},
                          local={"delivery": "mda", "mda_command": mda + " %to%"})
        add_users(conf, "alice")
        srv = Serve(conf, log_path=os.path.join(where, "serve.log"))
        self.addCleanup(srv.check_clean_exit)
        with Dialogue(port) as d:
            d.expect(220)
            d.cmd("EHLO client.test", 250)
            for n in range(n_items):
                d.cmd("MAIL FROM:<s%d@client.test>" % n, 250)
                d.cmd("RCPT TO:<alice@%s>" % DOMAIN, 250)
                d.cmd("DATA", 354)
                d.send(dot_stuff(simple_message("r%d" % n)[0]) + b".\r\n")
                d.expect(250)
            d.cmd("MAIL FROM:<over@client.test>", 452, "4.3.1")
            d.cmd("QUIT", 221)
        self.assertTrue(wait_until(lambda: srv.log.count("deferred") >= n_items, 30), srv.log[-3000:])
        open(flag, "w").close()
        srv.signal(signal.SIGUSR1)
        drained = wait_until(lambda: not queue_files(os.path.join(where, "data")), 20)
        self.assertTrue(drained, "%d of %d items still queued 20 s after SIGUSR1 (%d delivered)"
                        % (len(queue_files(os.path.join(where, "data"))), n_items,
                           srv.log.count("via=mda delivered")))


class RetrySignalTest(unittest.TestCase):
    def test_sigusr1_during_traffic_delivers_once(self):
        """A storm of SIGUSR1 (`tern queue retry`: every item due now, a look at the pickup
        folder) while mail flows: every message is delivered exactly once."""
        where = temp_dir(self.addCleanup, "tern-usr1-")
        data_dir = os.path.join(where, "data")
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, "data")
        add_users(conf, "alice")
        srv = Serve(conf, log_path=os.path.join(where, "serve.log"))
        self.addCleanup(srv.check_clean_exit)
        stop = threading.Event()

        def storm():
            while not stop.is_set():
                srv.signal(signal.SIGUSR1)
                time.sleep(0.002)

        errors = []

        def client(c, count):
            try:
                with Dialogue(port) as d:
                    d.expect(220)
                    d.cmd("EHLO client.test", 250)
                    for n in range(count):
                        d.cmd("MAIL FROM:<u%d.%d@client.test>" % (c, n), 250)
                        d.cmd("RCPT TO:<alice@%s>" % DOMAIN, 250)
                        d.cmd("DATA", 354)
                        d.send(dot_stuff(simple_message("u%d.%d" % (c, n))[0]) + b".\r\n")
                        d.expect(250)
            except Exception as e:  # reported below
                errors.append("client %d: %s" % (c, e))

        th = [threading.Thread(target=storm, daemon=True)]
        th += [threading.Thread(target=client, args=(c, 100), daemon=True) for c in range(2)]
        for t in th:
            t.start()
        for t in th[1:]:
            t.join(60)
        stop.set()
        th[0].join(10)
        self.assertEqual(errors, [])
        self.assertTrue(wait_settled(data_dir, srv, quiet=0.5), srv.log[-3000:])
        count = {}
        for raw in maildir_raw(data_dir, "alice"):
            tok = header(split_message(raw)[0], "X-Token")
            count[tok] = count.get(tok, 0) + 1
        self.assertEqual(len(count), 200, "missing: %s" % sorted(
            {"u%d.%d" % (c, n) for c in range(2) for n in range(100)} - set(count))[:20])
        dups = sorted(t for t, c in count.items() if c > 1)
        self.assertEqual(dups, [], "%d messages delivered more than once" % len(dups))


# ---- disk full --------------------------------------------------------------------------


class DiskFullTest(unittest.TestCase):
    FS_SIZE = 2 * 1024 * 1024

    def mount_small_fs(self):
        """A fresh 2 MiB tmpfs, unmounted by a cleanup; skips the test if mounting is refused."""
        mnt = temp_dir(self.addCleanup, "tern-dfull-mnt-")
        try:
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            self.skipTest("cannot run mount: %s" % e)
        if p.returncode != 0:
            self.skipTest("mounting a 2 MiB tmpfs is not permitted here (needs root/CAP_SYS_ADMIN): %s"
                          % p.stdout.decode(errors="replace").strip())
        self.addCleanup(self._umount, mnt)
        return mnt

    @staticmethod
    def _umount(mnt):
        if subprocess.run(["umount", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", mnt], timeout=30)

    @staticmethod
    def fill(path, leave):
        """Write a filler file until at most `leave` octets stay free on path's file system."""
        st = os.statvfs(os.path.dirname(path))
        size = max(0, st.f_bavail * st.f_frsize - leave)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = b"\xa5" * 65536
            while size > 0:
                try:
                    n = os.write(fd, chunk[:min(size, len(chunk))])
                except OSError:
                    break
                size -= n
        finally:
            os.close(fd)

    def setup_server(self, min_free):
        mnt = self.mount_small_fs()
        where = temp_dir(self.addCleanup, "tern-dfull-")
        data_dir = os.path.join(mnt, "data")
        port = free_port(below_ephemeral=True)  # never a client's source port
        conf = write_conf(where, port, data_dir, queue={"min_free_space": min_free, "retry": "1s"})
        add_users(conf, "alice")
        srv = Serve(conf, log_path=os.path.join(where, "serve.log"))
        self.addCleanup(srv.check_clean_exit)  # runs before the unmount
        return mnt, data_dir, port, srv

    def test_enospc_452_at_end_of_data_never_loss(self):
        mnt, data_dir, port, srv = self.setup_server("0")
        filler = os.path.join(mnt, "filler")
        self.fill(filler, 400 * 1024)
        sent = {}  # token -> (stage, code, enh, body hash)
        n_452 = 0
        for n in range(200):
            token = "d%03d" % n
            data, h = simple_message(token, size=24 * 1024)
            stage, r = transaction(port, "d%d@client.test" % n, ["alice@" + DOMAIN], data)
            sent[token] = (stage, r.code, r.enh, h)
            self.assertIn(r.code, (250, 452), "message %d: %s %r\n%s" % (n, stage, r, srv.log[-3000:]))
            if r.code == 452:
                self.assertEqual(r.enh, "4.3.1", r)
                n_452 += 1
                if n_452 >= 5:
                    break
        self.assertGreaterEqual(n_452, 5, "the disk never filled up: %d messages accepted" % len(sent))
        accepted = [t for t, v in sent.items() if v[1] == 250]
        self.assertTrue(accepted, "nothing was accepted before the disk was full")
        self.assertTrue(any(v[0] == "data" and v[1] == 452 for v in sent.values()),
                        "no 452 at end of data: %s" % sorted(set((v[0], v[1]) for v in sent.values())))
        self.assertIn("No space left on device", srv.log)
        self.assertIsNone(srv.proc.poll(), "the server died on a full disk")

        # free the space: every accepted message is delivered, whole, and only those
        os.unlink(filler)
        srv.signal(signal.SIGUSR1)
        self.assertTrue(wait_settled(data_dir, srv, quiet=0.5), "queue not drained: %s\n%s"
                        % (queue_files(data_dir), srv.log[-3000:]))
        stored = {}
        for raw in maildir_raw(data_dir, "alice"):
            head, body = split_message(raw)
            stored.setdefault(header(head, "X-Token"), []).append(body)
        for token in accepted:
            self.assertIn(token, stored, "%s got 250 but was never delivered (lost)" % token)
            self.assertEqual(len(stored[token]), 1, "%s delivered %d times" % (token, len(stored[token])))
            self.assertEqual(hashlib.sha256(stored[token][0]).hexdigest(), sent[token][3],
                             "%s delivered damaged" % token)
        refused = set(sent) - set(accepted)
        self.assertFalse(refused & set(stored),
                         "refused messages were delivered: %s" % sorted(refused & set(stored)))
        self.assertEqual(set(stored), set(accepted))

        # and the server still works
        data, h = simple_message("after", size=2048)
        stage, r = transaction(port, "after@client.test", ["alice@" + DOMAIN], data)
        self.assertEqual((stage, r.code), ("data", 250), r)
        self.assertTrue(wait_until(lambda: len(maildir_raw(data_dir, "alice")) == len(accepted) + 1, 20),
                        srv.log[-3000:])
        sys.stderr.write("\n[disk full] %d accepted and delivered after space was freed, %d refused "
                         "with 452 (%d at MAIL, %d at end of data)\n"
                         % (len(accepted), len(refused), sum(1 for v in sent.values() if v[0] == "mail"),
                            sum(1 for v in sent.values() if v[0] == "data" and v[1] == 452)))

    def test_min_free_space_452_at_mail(self):
        mnt, data_dir, port, srv = self.setup_server("1M")
        data, _ = simple_message("f0", size=1024)
        stage, r = transaction(port, "f0@client.test", ["alice@" + DOMAIN], data)
        self.assertEqual((stage, r.code), ("data", 250), r)
        filler = os.path.join(mnt, "filler")
        self.fill(filler, 512 * 1024)
        stage, r = transaction(port, "f1@client.test", ["alice@" + DOMAIN], simple_message("f1")[0])
        self.assertEqual((stage, r.code, r.enh), ("mail", 452, "4.3.1"), r)
        # the log is read from the server's pipe by another thread: the line may trail the reply
        self.assertTrue(wait_until(lambda: "disk nearly full" in srv.log, 10), srv.log[-3000:])
        os.unlink(filler)
        stage, r = transaction(port, "f2@client.test", ["alice@" + DOMAIN], simple_message("f2")[0])
        self.assertEqual((stage, r.code), ("data", 250), r)
        self.assertTrue(wait_until(lambda: len(maildir_raw(data_dir, "alice")) == 2, 20), srv.log[-3000:])


if __name__ == "__main__":
    unittest.main()
