/*
 * app.js - the tern sink web inbox.  Talks only to this origin's API:
 *   list and search  GET /api/v1/messages, /api/v1/search?query= (Mailpit's shape)
 *   one message      GET /api/messages/ID, /api/messages/ID/raw, DELETE /api/messages[/ID]
 *   faults, stats    GET|PUT /api/faults, GET /api/stats
 *   live updates     EventSource /api/events (new, delete, clear, faults)
 * Every piece of message data goes into the DOM as textContent or an attribute,
 * never as markup; the HTML body goes only into an <iframe sandbox=""> with its
 * own Content-Security-Policy (no scripts, no remote loads).
 */
"use strict";
(function () {
  var PAGE = 50;
  var state = { start: 0, total: 0, query: "", selected: null, tab: "html", ids: [] };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function api(method, path, body) {
    var opt = { method: method, headers: {}, cache: "no-store" };
    if (body !== undefined) {
      opt.body = JSON.stringify(body);
      opt.headers["Content-Type"] = "application/json";
    }
    return fetch(path, opt).then(function (r) {
      var ct = r.headers.get("Content-Type") || "";
      var p = ct.indexOf("json") >= 0 ? r.json() : r.text();
      return p.then(function (data) {
        if (!r.ok) {
          var msg = data && data.error ? data.error : (typeof data === "string" && data ? data : r.status + " " + r.statusText);
          var err = new Error(msg);
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }
  function addr(a) {
    if (!a) return "";
    if (a.Name && a.Address) return a.Name + " <" + a.Address + ">";
    return a.Address || a.Name || "";
  }
  function addrs(list) {
    return (list || []).map(function (a) {
      var n = a.name !== undefined ? a.name : a.Name, ad = a.address !== undefined ? a.address : a.Address;
      return n && ad ? n + " <" + ad + ">" : (ad || n || "");
    }).join(", ");
  }
  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso || "";
    var now = new Date();
    if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString();
    return d.toLocaleString();
  }
  function size(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }

  /* ---- the list (paged: PAGE messages at a time, newest first) ---- */
  var listSeq = 0;
  function loadList() {
    var seq = ++listSeq;
    var q = state.query.trim();
    var path = q ? "/api/v1/search?query=" + encodeURIComponent(q) + "&start=" + state.start + "&limit=" + PAGE
                 : "/api/v1/messages?start=" + state.start + "&limit=" + PAGE;
    return api("GET", path).then(function (r) {
      if (seq !== listSeq) return;
      state.total = r.messages_count;
      if (state.start > 0 && state.start >= state.total) {
        state.start = Math.max(0, Math.floor((state.total - 1) / PAGE) * PAGE);
        return loadList();
      }
      renderList(r.messages || []);
    }).catch(function (e) {
      if (seq !== listSeq) return;
      $("pager-info").textContent = "error: " + e.message;
    });
  }
  function renderList(msgs) {
    var ul = $("list");
    var frag = document.createDocumentFragment();
    state.ids = [];
    msgs.forEach(function (m) {
      var li = el("li", m.Read ? "msg" : "msg unread");
      li.setAttribute("data-id", String(m.ID));
      if (String(m.ID) === String(state.selected)) li.classList.add("sel");
      var row1 = el("div", "row1");
      row1.appendChild(el("span", "from", addr(m.From) || "(no sender)"));
      row1.appendChild(el("span", "when", when(m.Created)));
      li.appendChild(row1);
      li.appendChild(el("div", "subj", m.Subject || "(no subject)"));
      var snip = (m.Attachments ? "[" + m.Attachments + (m.Attachments > 1 ? " attachments] " : " attachment] ") : "") +
        (m.Snippet || "");
      li.appendChild(el("div", "snip", snip));
      li.setAttribute("tabindex", "0");
      li.addEventListener("click", function () { openMessage(String(m.ID)); });
      li.addEventListener("keydown", function (e) {
        if (e.key === "Enter") { e.preventDefault(); openMessage(String(m.ID)); }
      });
      frag.appendChild(li);
      state.ids.push(String(m.ID));
    });
    clear(ul);
    ul.appendChild(frag);
    var first = state.total ? state.start + 1 : 0, last = state.start + msgs.length;
    $("pager-info").textContent = state.total ? first + "\u2013" + last + " of " + state.total : "no messages";
    $("pager-prev").disabled = state.start === 0;
    $("pager-next").disabled = last >= state.total;
  }
  function page(delta) {
    state.start = Math.max(0, state.start + delta * PAGE);
    loadList().then(function () { $("list").scrollTop = 0; });
  }

  /* ---- one message ---- */
  var viewSeq = 0;
  function openMessage(id) {
    var seq = ++viewSeq;
    state.selected = id;
    Array.prototype.forEach.call($("list").children, function (li) {
      li.classList.toggle("sel", li.getAttribute("data-id") === id);
    });
    return api("GET", "/api/messages/" + encodeURIComponent(id)).then(function (m) {
      if (seq !== viewSeq) return;
      renderMessage(m);
      markRead(id);
    }).catch(function (e) {
      if (seq !== viewSeq) return;
      if (e.status === 404) closeMessage(); else $("view-subject").textContent = "error: " + e.message;
    });
  }
  /* Mailpit's Read flag (the list shows unread subjects in bold) */
  function markRead(id) {
    var li = $("list").querySelector("li[data-id=\"" + CSS.escape(id) + "\"]");
    if (!li || !li.classList.contains("unread")) return;
    li.classList.remove("unread");
    api("PUT", "/api/v1/messages", { IDs: [id], Read: true }).catch(function () {});
  }
  function closeMessage() {
    state.selected = null;
    $("message").hidden = true;
    $("empty").hidden = false;
    $("html-frame").removeAttribute("srcdoc");
  }
  function row(table, name, value) {
    var tr = el("tr");
    tr.appendChild(el("td", null, name));
    tr.appendChild(el("td", null, value));
    table.appendChild(tr);
  }
  function renderMessage(m) {
    $("empty").hidden = true;
    $("message").hidden = false;
    $("message").setAttribute("data-id", String(m.id));
    var subject = m.subject_decoded !== undefined ? m.subject_decoded : m.subject;
    $("view-subject").textContent = subject || "(no subject)";
    var sum = $("view-summary");
    clear(sum);
    row(sum, "From", m.from_addrs ? addrs(m.from_addrs) : m.header_from);
    row(sum, "To", m.to_addrs ? addrs(m.to_addrs) : m.header_to);
    if (m.cc_addrs && m.cc_addrs.length) row(sum, "Cc", addrs(m.cc_addrs));
    if (m.date) row(sum, "Date", m.date);
    row(sum, "Envelope", "MAIL FROM:<" + m.from + "> RCPT TO:" + (m.to || []).map(function (t) { return "<" + t + ">"; }).join(" "));
    row(sum, "Received", when(m.received) + " from " + m.peer + " (HELO " + m.helo + ")" + (m.tls ? ", TLS" : "") + (m.auth_user ? ", AUTH " + m.auth_user : ""));
    row(sum, "Size", size(m.size));

    var atts = $("view-attachments");
    clear(atts);
    (Array.isArray(m.attachments) ? m.attachments : []).forEach(function (a) {
      var li = el("li");
      var link = el("a", null, (a.name || "part " + a.index) + " (" + (a.type || "?") + ", " + size(a.size) +
        (a.inline ? ", inline" : "") + ")");
      link.setAttribute("href", a.url || "/api/messages/" + m.id + "/part/" + a.index);
      link.setAttribute("download", a.name || "part-" + a.index);
      link.setAttribute("rel", "noopener");
      li.appendChild(link);
      atts.appendChild(li);
    });

    var hs = $("view-headers");
    clear(hs);
    (m.headers || []).forEach(function (h) { row(hs, h.name, h.value); });
    $("view-text").textContent = m.text || "";
    var html = m.html || "";
    /* The HTML body: sandbox="" (no scripts, no same-origin, no forms, no
     * popups) and a CSP of its own on top of the page's (srcdoc inherits it). */
    var frame = $("html-frame");
    var setHtml = function (h) {
      frame.setAttribute("srcdoc",
        "<!doctype html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; " +
        "img-src data:; style-src 'unsafe-inline'; font-src data:\">" + h);
    };
    setHtml(html);
    inlineImages(m, html, setHtml);
    $("raw").textContent = "loading\u2026";
    var id = String(m.id), rawUrl = "/api/messages/" + encodeURIComponent(id) + "/raw";
    $("download").setAttribute("href", rawUrl);
    $("download").setAttribute("download", "message-" + id + ".eml");
    api("GET", rawUrl).then(function (t) {
      var max = 1048576; /* a huge source would stall the page: show its start */
      if (state.selected === id)
        $("raw").textContent = t.length > max ? t.slice(0, max) + "\n\n[\u2026 " + (t.length - max) +
          " more characters: use Download .eml]" : t;
    }).catch(function (e) { $("raw").textContent = "error: " + e.message; });
    showTab(!html && state.tab === "html" ? "text" : state.tab, true);
  }
  /* cid: images (inline parts) become data: URLs, the only images the frame's
   * policy allows; each at most 5 MiB, fetched from this server. */
  function inlineImages(m, html, setHtml) {
    var id = String(m.id);
    var parts = (Array.isArray(m.attachments) ? m.attachments : []).filter(function (a) {
      return a.content_id && /^image\//i.test(a.type || "") && a.size <= 5242880 &&
        html.indexOf("cid:" + a.content_id) >= 0;
    });
    if (!parts.length) return;
    Promise.all(parts.map(function (a) {
      return fetch(a.url, { cache: "no-store" }).then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.blob();
      }).then(function (b) {
        return new Promise(function (ok) {
          var fr = new FileReader();
          fr.onload = function () { ok([a.content_id, String(fr.result)]); };
          fr.onerror = function () { ok(null); };
          fr.readAsDataURL(new Blob([b], { type: a.type }));
        });
      }).catch(function () { return null; });
    })).then(function (pairs) {
      if (state.selected !== id) return;
      var h = html;
      pairs.forEach(function (p) { if (p) h = h.split("cid:" + p[0]).join(p[1]); });
      setHtml(h);
    });
  }
  function showTab(name, auto) {
    if (!auto) state.tab = name;
    ["html", "text", "headers", "raw"].forEach(function (t) {
      $("pane-" + t).hidden = t !== name;
      $("tab-" + t).classList.toggle("on", t === name);
    });
  }

  /* ---- delete ---- */
  function deleteOne() {
    var id = state.selected;
    if (!id) return;
    api("DELETE", "/api/messages/" + encodeURIComponent(id)).then(function () {
      closeMessage();
      refresh();
    }).catch(function (e) { $("view-subject").textContent = "error: " + e.message; });
  }
  var armTimer = null;
  function deleteAll() {
    var b = $("delete-all");
    if (!b.classList.contains("armed")) { /* two clicks: no modal dialog */
      b.classList.add("armed");
      b.textContent = "Click again to delete all";
      armTimer = setTimeout(disarm, 4000);
      return;
    }
    disarm();
    api("DELETE", "/api/messages").then(function () {
      closeMessage();
      state.start = 0;
      refresh();
    });
  }
  function disarm() {
    clearTimeout(armTimer);
    $("delete-all").classList.remove("armed");
    $("delete-all").textContent = "Delete all";
  }

  /* ---- faults and stats ---- */
  function loadFaults() {
    return api("GET", "/api/faults").then(function (f) {
      var form = $("faults-form");
      if (form.contains(document.activeElement)) return; /* being edited */
      $("f-close-first").value = f.close_first;
      $("f-close-chance").value = f.close_chance;
      $("f-seed").value = f.seed;
      $("f-fail").value = (f.fail || []).join("\n");
      $("f-delay").value = (f.delay || []).join("\n");
    });
  }
  function lines(s) { return s.split(/\r?\n/).map(function (x) { return x.trim(); }).filter(Boolean); }
  function saveFaults(ev) {
    ev.preventDefault();
    var st = $("f-status");
    var body = {
      close_first: parseInt($("f-close-first").value || "0", 10),
      close_chance: parseFloat($("f-close-chance").value || "0"),
      fail: lines($("f-fail").value),
      delay: lines($("f-delay").value)
    };
    var seed = $("f-seed").value;
    if (seed !== "") body.seed = parseInt(seed, 10);
    st.className = "status";
    st.textContent = "saving\u2026";
    api("PUT", "/api/faults", body).then(function () {
      st.textContent = "saved";
      document.activeElement.blur();
      loadFaults();
    }).catch(function (e) {
      st.className = "status err";
      st.textContent = e.message;
    });
  }
  function loadStats() {
    return api("GET", "/api/stats").then(function (s) {
      $("stats").textContent = s.stored + " stored \u00b7 " + s.messages + " received \u00b7 " +
        s.connections + " connections \u00b7 " + (s.faults ? s.faults.total : 0) + " faults";
    }).catch(function () {});
  }

  /* ---- live updates: coalesce bursts into one refresh per 300 ms ---- */
  var refreshTimer = null, refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    Promise.all([loadList(), loadStats()]).then(function () {
      refreshing = false;
      if (again) { again = false; schedule(); }
    });
  }
  function schedule() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 300);
  }
  function connect() {
    if (!window.EventSource) return;
    var es = new EventSource("/api/events");
    es.onopen = function () { $("live").textContent = "live"; $("live").classList.add("on"); schedule(); };
    es.onerror = function () { $("live").textContent = "reconnecting"; $("live").classList.remove("on"); };
    ["new", "delete", "clear"].forEach(function (t) { es.addEventListener(t, schedule); });
    es.addEventListener("delete", function () { if (state.selected) openMessage(state.selected); });
    es.addEventListener("clear", closeMessage);
    es.addEventListener("faults", function () { loadFaults(); loadStats(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var t = null;
    $("search").addEventListener("input", function () {
      clearTimeout(t);
      t = setTimeout(function () { state.query = $("search").value; state.start = 0; loadList(); }, 200);
    });
    $("pager-prev").addEventListener("click", function () { page(-1); });
    $("pager-next").addEventListener("click", function () { page(1); });
    $("delete-one").addEventListener("click", deleteOne);
    $("delete-all").addEventListener("click", deleteAll);
    $("faults-toggle").addEventListener("click", function () { $("faults").hidden = !$("faults").hidden; });
    $("faults-form").addEventListener("submit", saveFaults);
    Array.prototype.forEach.call(document.querySelectorAll(".tabs button"), function (b) {
      b.addEventListener("click", function () { showTab(b.getAttribute("data-tab")); });
    });
    document.addEventListener("keydown", function (e) {
      if (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA") return;
      var i = state.ids.indexOf(String(state.selected));
      if (e.key === "j" || e.key === "ArrowDown") { if (i + 1 < state.ids.length) openMessage(state.ids[i + 1]); }
      else if (e.key === "k" || e.key === "ArrowUp") { if (i > 0) openMessage(state.ids[i - 1]); }
      else if (e.key === "Delete") deleteOne();
      else return;
      e.preventDefault();
    });
    loadList();
    loadStats();
    loadFaults();
    connect();
    setInterval(loadStats, 5000);
  });
})();
