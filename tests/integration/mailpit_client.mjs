// mailpit_client.mjs BASE_URL - drive a Mailpit server with the npm package
// mailpit-api (a real Mailpit client, used unchanged), as a CI helper would.
// test_sink_mailpit.py runs it against `tern sink` holding two messages: "From
// the npm client" (plain text) and "Rapport trimestriel — été" (text, HTML,
// an inline image and report.pdf).  Exit 0 and a last line "mailpit-api
// client: all checks passed", or exit 1 with what failed.  The package is
// loaded from MAILPIT_API_DIR (scripts/install-deps installs it under
// /var/cache/tern-test/npm, outside the work tree).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.MAILPIT_API_DIR || "/var/cache/tern-test/npm/node_modules/mailpit-api";
const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
const { MailpitClient } = await import(pathToFileURL(join(dir, pkg.exports["."].import.default)).href);

const base = process.argv[2];
const mp = new MailpitClient(base);
let failed = 0;

function check(cond, what, got) {
    if (!cond) {
        failed++;
        console.log("FAIL: " + what + (got === undefined ? "" : " (got " + JSON.stringify(got) + ")"));
    }
}

try {
    const info = await mp.getInfo();
    check(info.Messages === 2 && typeof info.Version === "string", "getInfo", info);

    const list = await mp.listMessages();
    check(list.total === 2 && list.messages_count === 2 && list.messages.length === 2, "listMessages", list);
    check(list.messages[0].Subject === "Rapport trimestriel — été", "newest first", list.messages[0].Subject);
    const page = await mp.listMessages(1, 1);
    check(page.start === 1 && page.messages.length === 1 && page.messages[0].Subject === "From the npm client",
          "listMessages(1, 1)", page);

    const m = await mp.getMessageSummary(); // latest
    check(m.Subject === "Rapport trimestriel — été" && m.From.Address === "zoe@example.org", "getMessageSummary()", m);
    check(m.Attachments.length === 1 && m.Attachments[0].FileName === "report.pdf", "attachments", m.Attachments);
    check(m.Inline.length === 1 && m.Inline[0].ContentID === "logo@tern", "inline", m.Inline);
    const blob = await mp.getMessageAttachment(m.ID, m.Attachments[0].PartID);
    check(blob.size === m.Attachments[0].Size && (await blob.text()) === "%PDF-1.4 fake",
          "getMessageAttachment", blob.size);
    const headers = await mp.getMessageHeaders(m.ID);
    check(headers["Message-Id"][0] === "<rich-1@tern.test>", "getMessageHeaders", headers);
    const src = await mp.getMessageSource(m.ID);
    check(src.includes("Message-ID: <rich-1@tern.test>"), "getMessageSource", src.slice(0, 200));

    const found = await mp.searchMessages({ query: "from:zoe@example.org has:attachment" });
    check(found.messages_count === 1 && found.messages[0].ID === m.ID, "searchMessages", found);
    const none = await mp.searchMessages({ query: "subject:\"no such subject\"" });
    check(none.messages_count === 0 && none.messages.length === 0, "searchMessages (none)", none);

    const waited = await mp.waitForMessage({ query: "subject:\"From the npm client\"" }, { timeout: 3000, interval: 100 });
    check(waited.Subject === "From the npm client" && waited.Text.includes("Sent for mailpit-api."),
          "waitForMessage", waited);
    const two = await mp.waitForMessages({ count: 2, exact: true }, { timeout: 3000, interval: 100 });
    check(two.messages_count === 2, "waitForMessages", two.messages_count);

    check((await mp.setReadStatus({ Read: true })) === "ok", "setReadStatus all");
    check((await mp.listMessages()).unread === 0, "all read");
    await mp.setReadStatus({ IDs: [waited.ID], Read: false });
    const unread = await mp.searchMessages({ query: "is:unread" });
    check(unread.messages_count === 1 && unread.messages[0].ID === waited.ID, "is:unread", unread);

    check(Array.isArray(await mp.getTags()), "getTags");

    check((await mp.deleteMessagesBySearch({ query: "has:attachment" })) === "ok", "deleteMessagesBySearch");
    check((await mp.listMessages()).total === 1, "one left");
    check((await mp.deleteMessages({ IDs: [waited.ID] })) === "ok", "deleteMessages({IDs})");
    check((await mp.listMessages()).total === 0, "none left");
    await mp.deleteMessages();

    let threw = false;
    try {
        await mp.getMessageSummary("999999");
    } catch (e) {
        threw = /404/.test(String(e));
    }
    check(threw, "a missing message is a 404 error");
} catch (e) {
    failed++;
    console.log("FAIL: " + (e && e.stack ? e.stack : String(e)));
}

if (failed) {
    console.log(failed + " check(s) failed");
    process.exit(1);
}
console.log("mailpit-api client: all checks passed");
