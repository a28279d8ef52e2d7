import HTTPTypes

/// The console's files, as Swift string literals: the page, its script and
/// its style sheet. Plain HTML, CSS and JavaScript that talk to the node's
/// own public interface (`/v1/cluster`, `/v1/groups`, `/readyz`,
/// `/v1/subscribe` over SSE, `/v1/topics/{topic}`), so the console shows
/// exactly what any client can see. Everything is set with `textContent`,
/// never parsed as HTML, so message payloads cannot inject markup.
enum ConsoleAssets {
    static let script = ConsoleAsset(
        path: "/console/console.js", contentType: "text/javascript; charset=utf-8", text: scriptText, versioned: true)
    static let styleSheet = ConsoleAsset(
        path: "/console/console.css", contentType: "text/css; charset=utf-8", text: styleText, versioned: true)
    static let page = ConsoleAsset(
        path: "/", contentType: "text/html; charset=utf-8",
        text: pageText.replacing("{{SCRIPT}}", with: script.versionedURL).replacing("{{STYLE}}", with: styleSheet.versionedURL),
        versioned: false,
        extraHeaders: [
            .contentSecurityPolicy:
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ])

    static let all = [page, script, styleSheet]

    static let pageText = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Piglix console</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="{{STYLE}}">
        </head>
        <body>
        <header>
          <h1>Piglix</h1>
          <dl class="facts">
            <div><dt>node</dt><dd id="node">…</dd></div>
            <div><dt>view</dt><dd id="view">…</dd></div>
            <div><dt>coordinator</dt><dd id="coordinator">…</dd></div>
            <div><dt>component</dt><dd id="primary">…</dd></div>
            <div><dt>ready</dt><dd id="ready">…</dd></div>
            <div><dt>mode</dt><dd id="clustered">…</dd></div>
            <div><dt>incarnation</dt><dd id="incarnation">…</dd></div>
          </dl>
          <p id="status" class="status" role="status">connecting…</p>
        </header>
        <main>
          <section id="cluster-section">
            <h2>Cluster view <span id="view-badge" class="badge"></span></h2>
            <table id="members">
              <thead><tr><th>member</th><th>role</th><th>state</th></tr></thead>
              <tbody></tbody>
            </table>
          </section>
          <section id="groups-section">
            <h2>Groups</h2>
            <table id="groups">
              <thead><tr><th>pattern</th><th>view</th><th>members</th><th>local subscribers</th><th>delivered</th><th>rate</th></tr></thead>
              <tbody></tbody>
            </table>
            <p id="groups-empty" class="hint">No group has a subscriber on this node yet. Start a tail below to make one.</p>
          </section>
          <section id="tail-section">
            <h2>Live tail</h2>
            <form id="tail-form" class="row">
              <label for="tail-pattern">patterns</label>
              <input id="tail-pattern" name="pattern" value="&gt;" spellcheck="false" autocomplete="off"
                     placeholder="sensors.*.temp logs.&gt;" title="one or more patterns, separated by spaces or commas">
              <button id="tail-start" type="submit">Tail</button>
              <button id="tail-stop" type="button" disabled>Stop</button>
              <button id="tail-clear" type="button">Clear</button>
              <span id="tail-state" class="state">stopped</span>
            </form>
            <ol id="tail-log" aria-live="polite"></ol>
          </section>
          <section id="publish-section">
            <h2>Publish</h2>
            <form id="publish-form" class="row">
              <label for="publish-topic">topic</label>
              <input id="publish-topic" value="console.test" spellcheck="false" autocomplete="off">
              <label for="publish-data">data</label>
              <input id="publish-data" value="hello from the console" class="wide" autocomplete="off">
              <select id="publish-delivery" title="delivery level">
                <option>fifo</option><option>total</option><option>safe</option>
              </select>
              <button id="publish-send" type="submit">Publish</button>
              <span id="publish-result" class="state"></span>
            </form>
          </section>
        </main>
        <script src="{{SCRIPT}}"></script>
        </body>
        </html>

        """#

    static let styleText = #"""
        :root {
          --bg: #f6f7f9; --fg: #1d2330; --muted: #6b7385; --line: #dde1e8; --card: #fff;
          --accent: #b03a6f; --ok: #1f8a4c; --bad: #c0392b; --warn: #b7791f;
          font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px;
        }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--fg); }
        header { background: var(--fg); color: #fff; padding: 12px 20px; display: flex; flex-wrap: wrap; align-items: center; gap: 8px 24px; }
        header h1 { margin: 0; font-size: 20px; color: #ffb3d1; letter-spacing: .5px; }
        .facts { display: flex; flex-wrap: wrap; gap: 4px 20px; margin: 0; }
        .facts div { display: flex; gap: 6px; align-items: baseline; }
        .facts dt { color: #aab2c5; font-size: 12px; text-transform: uppercase; }
        .facts dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; }
        .status { margin: 0 0 0 auto; font-size: 12px; color: #aab2c5; }
        .status.error { color: #ff9a8e; }
        main { display: grid; grid-template-columns: minmax(300px, 1fr) minmax(300px, 2fr); gap: 16px; padding: 16px 20px; }
        section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
        #tail-section, #publish-section { grid-column: 1 / -1; }
        h2 { font-size: 15px; margin: 0 0 10px; }
        table { width: 100%; border-collapse: collapse; font-size: 14px; }
        th { text-align: left; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); padding: 4px 8px 4px 0; }
        td { border-bottom: 1px solid var(--line); padding: 5px 8px 5px 0; font-family: ui-monospace, Menlo, Consolas, monospace; }
        td.num { text-align: right; }
        .badge { font-size: 12px; font-weight: normal; color: var(--muted); margin-left: 6px; }
        .pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; background: #e8ebf0; }
        .pill.ok { background: #dff3e6; color: var(--ok); }
        .pill.bad { background: #fbe3e0; color: var(--bad); }
        .pill.warn { background: #fbf0d9; color: var(--warn); }
        .hint { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
        .row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
        .row label { color: var(--muted); font-size: 13px; }
        input, select, button { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 5px; background: #fff; }
        input { font-family: ui-monospace, Menlo, Consolas, monospace; min-width: 16em; }
        input.wide { flex: 1; }
        button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
        button[type=button] { background: #fff; color: var(--fg); border-color: var(--line); }
        button:disabled { opacity: .5; cursor: default; }
        .state { font-size: 13px; color: var(--muted); }
        .state.live { color: var(--ok); }
        .state.error { color: var(--bad); }
        #tail-log { list-style: none; margin: 10px 0 0; padding: 0; height: 340px; overflow-y: auto; border: 1px solid var(--line);
          border-radius: 5px; background: #fbfbfc; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
        #tail-log li { display: grid; grid-template-columns: 5.5em minmax(8em, max-content) 3.5em 1fr auto; gap: 10px; padding: 2px 8px;
          border-bottom: 1px solid #eef0f3; }
        #tail-log li.control { color: var(--muted); grid-template-columns: 5.5em 1fr; }
        #tail-log li.gap, #tail-log li.end { color: var(--warn); }
        #tail-log .topic { color: var(--accent); }
        #tail-log .data { white-space: pre-wrap; word-break: break-all; }
        #tail-log .id, #tail-log time { color: var(--muted); }
        @media (max-width: 760px) { main { grid-template-columns: 1fr; } }

        """#

    static let scriptText = #"""
        // Piglix console: polls /v1/cluster, /v1/groups and /readyz once a
        // second, computes group rates from `delivered` deltas, and tails
        // patterns over server-sent events (EventSource on /v1/subscribe).
        "use strict";
        // On a node that requires tokens, /?authorization=TOKEN keeps the
        // token in a same-site cookie, which the page's fetches and
        // EventSource send; the address bar then drops it.
        (() => {
          const url = new URL(location.href);
          const token = url.searchParams.get("authorization");
          if (!token) return;
          document.cookie = "piglixAuthorization=" + encodeURIComponent(token) + "; path=/; SameSite=Strict";
          url.searchParams.delete("authorization");
          history.replaceState(null, "", url);
        })();

        const POLL_MS = 1000;
        const TAIL_LINES_MAX = 500;
        const $ = (id) => document.getElementById(id);

        const groupSamples = new Map();  // pattern -> {delivered, at, rate}
        let source = null;               // the tail's EventSource
        let tailURL = null;

        function el(tag, className, text) {
          const node = document.createElement(tag);
          if (className) node.className = className;
          if (text !== undefined) node.textContent = String(text);
          return node;
        }

        function pill(text, kind) { return el("span", "pill " + (kind || ""), text); }

        function setStatus(text, isError) {
          const status = $("status");
          status.textContent = text;
          status.classList.toggle("error", Boolean(isError));
        }

        async function getJSON(path) {
          const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
          const body = await response.json().catch(() => null);
          if (!response.ok) {
            const detail = body && body.detail ? ": " + body.detail : "";
            const error = new Error(path + " answered " + response.status + detail);
            error.status = response.status;
            throw error;
          }
          return body;
        }

        // A group view id is epoch × 2^32 + change (docs/protocol.md): shown as
        // "epoch.change" when it has both parts.
        function groupView(id) {
          const epoch = Math.floor(id / 4294967296);
          return epoch > 0 ? epoch + "." + (id - epoch * 4294967296) : String(id);
        }

        // A member is a node id, or an object ({"id"|"node"|"name", "state"?, ...})
        // if the node reports more; show what there is.
        function memberName(member) {
          if (typeof member === "string") return member;
          return member.id || member.node || member.name || JSON.stringify(member);
        }

        function renderCluster(cluster) {
          $("node").textContent = cluster.node;
          $("view").textContent = cluster.view;
          $("coordinator").textContent = cluster.coordinator;
          $("incarnation").textContent = cluster.incarnation;
          $("clustered").textContent = cluster.clustered ? "cluster" : "single node";
          const primary = $("primary");
          primary.replaceChildren(cluster.primary ? pill("primary", "ok") : pill("minority", "bad"));
          $("view-badge").textContent = "view " + cluster.view + " · " + cluster.members.length +
            (cluster.members.length === 1 ? " member" : " members");
          const rows = cluster.members.map((member) => {
            const name = memberName(member);
            const roles = [];
            if (name === cluster.coordinator) roles.push("coordinator");
            if (name === cluster.node) roles.push("this node");
            let state = typeof member === "object" && member.state ? String(member.state)
              : (cluster.primary ? "in view" : "in minority view");
            const kind = /suspect|leav|down|fail|minority/i.test(state) ? "warn" : "ok";
            const tr = el("tr");
            tr.dataset.member = name;
            tr.append(el("td", "", name), el("td", "", roles.join(", ") || "member"));
            const stateCell = el("td");
            stateCell.append(pill(state, kind));
            tr.append(stateCell);
            return tr;
          });
          $("members").tBodies[0].replaceChildren(...rows);
        }

        function formatRate(rate) {
          if (rate === undefined) return "…";
          if (rate >= 1000) return (rate / 1000).toFixed(1) + "k/s";
          return (rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)) + "/s";
        }

        function renderGroups(groups, now) {
          const seen = new Set();
          const rows = groups.map((group) => {
            seen.add(group.group);
            const previous = groupSamples.get(group.group);
            let rate;
            if (previous && now > previous.at && group.delivered >= previous.delivered) {
              const instant = (group.delivered - previous.delivered) * 1000 / (now - previous.at);
              // Smooth a little so one busy second does not flicker the table.
              rate = previous.rate === undefined ? instant : previous.rate * 0.5 + instant * 0.5;
            }
            groupSamples.set(group.group, { delivered: group.delivered, at: now, rate });
            const tr = el("tr");
            tr.dataset.group = group.group;
            tr.append(
              el("td", "", group.group),
              el("td", "num", groupView(group.view)),
              el("td", "", (group.members || []).map(memberName).join(", ")),
              el("td", "num", group.local_subscribers),
              el("td", "num", group.delivered),
              el("td", "num rate", formatRate(rate)));
            return tr;
          });
          for (const name of groupSamples.keys()) if (!seen.has(name)) groupSamples.delete(name);
          $("groups").tBodies[0].replaceChildren(...rows);
          $("groups-empty").hidden = rows.length > 0;
        }

        async function refreshReady() {
          const response = await fetch("/readyz", { cache: "no-store" });
          $("ready").replaceChildren(response.ok ? pill("ready", "ok") : pill("not ready (" + response.status + ")", "bad"));
        }

        async function poll() {
          try {
            const [cluster, groups] = await Promise.all([getJSON("/v1/cluster"), getJSON("/v1/groups")]);
            renderCluster(cluster);
            renderGroups(groups.groups || [], performance.now());
            await refreshReady();
            setStatus("updated " + new Date().toLocaleTimeString(), false);
          } catch (error) {
            setStatus(String(error.message || error), true);
          } finally {
            setTimeout(poll, POLL_MS);
          }
        }

        // ---- live tail ----

        function timeNow() { return new Date().toLocaleTimeString([], { hour12: false }); }

        function appendLine(li) {
          const log = $("tail-log");
          const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
          log.append(li);
          while (log.children.length > TAIL_LINES_MAX) log.firstElementChild.remove();
          if (atBottom) log.scrollTop = log.scrollHeight;
        }

        function showMessage(record) {
          const li = el("li", "message");
          li.dataset.topic = record.topic;
          li.dataset.id = record.id;
          const data = record.data !== undefined ? record.data : "base64:" + record.data_b64;
          li.append(el("time", "", timeNow()), el("span", "topic", record.topic), el("span", "delivery", record.delivery),
            el("span", "data", data), el("span", "id", record.id));
          if (record.headers && Object.keys(record.headers).length > 0) li.title = "headers: " + JSON.stringify(record.headers);
          appendLine(li);
        }

        function showControl(kind, text) {
          const li = el("li", "control " + kind);
          li.append(el("time", "", timeNow()), el("span", "", text));
          appendLine(li);
        }

        function setTailState(text, kind) {
          const state = $("tail-state");
          state.textContent = text;
          state.className = "state " + (kind || "");
        }

        function parse(event) {
          try { return JSON.parse(event.data); } catch (error) { return null; }
        }

        function startTail(text) {
          stopTail();
          const patterns = text.split(/[\s,]+/).filter((pattern) => pattern.length > 0);
          if (patterns.length === 0) { setTailState("type a pattern, such as sensors.> or a.*.c", "error"); return; }
          tailURL = "/v1/subscribe?" + patterns.map((pattern) => "topic=" + encodeURIComponent(pattern)).join("&");
          const events = new EventSource(tailURL);
          source = events;
          setTailState("connecting…");
          $("tail-stop").disabled = false;
          events.onopen = () => setTailState("live: " + patterns.join(" "), "live");
          events.addEventListener("message", (event) => { const record = parse(event); if (record) showMessage(record); });
          events.addEventListener("view", (event) => {
            const view = parse(event);
            if (view) showControl("view", "view " + groupView(view.view) + " of " + view.group + ": " + (view.members || []).map(memberName).join(", ") +
              (view.primary ? "" : " (not primary)"));
          });
          events.addEventListener("gap", (event) => {
            const gap = parse(event);
            if (gap) showControl("gap", "gap: " + gap.lost + " messages lost (" + gap.reason + ")");
          });
          events.addEventListener("end", (event) => {
            const end = parse(event);
            showControl("end", "stream ended: " + (end ? end.reason : "") + "; reconnecting and resuming");
          });
          events.addEventListener("heartbeat", () => setTailState("live: " + patterns.join(" ") + " (heartbeat " + timeNow() + ")", "live"));
          events.onerror = () => {
            if (source !== events) return;
            if (events.readyState === EventSource.CLOSED) {
              explainFailure(tailURL, events);
            } else {
              setTailState("reconnecting…", "error");
            }
          };
        }

        // EventSource hides why a stream was refused; ask once with fetch to
        // show the problem's detail (e.g. which pattern token is invalid).
        async function explainFailure(url, events) {
          const abort = new AbortController();
          try {
            const response = await fetch(url, { headers: { Accept: "text/event-stream" }, signal: abort.signal });
            if (!response.ok) {
              const problem = await response.json().catch(() => null);
              if (source === events) setTailState("refused: " + (problem && problem.detail ? problem.detail : response.status), "error");
            } else if (source === events) {
              setTailState("stream closed", "error");
            }
          } catch (error) {
            if (source === events) setTailState("node unreachable", "error");
          } finally {
            abort.abort();
          }
        }

        function stopTail() {
          if (source) { source.close(); source = null; }
          $("tail-stop").disabled = true;
          setTailState("stopped");
        }

        // ---- publish ----

        async function publish() {
          const topic = $("publish-topic").value.trim();
          const result = $("publish-result");
          result.className = "state";
          result.textContent = "publishing…";
          try {
            const response = await fetch("/v1/topics/" + encodeURIComponent(topic), {
              method: "POST",
              headers: { "Content-Type": "text/plain; charset=utf-8", "Piglix-Delivery": $("publish-delivery").value },
              body: $("publish-data").value,
            });
            const body = await response.json().catch(() => null);
            if (response.ok && body) {
              result.textContent = response.status + " id " + body.id;
              result.className = "state live";
            } else {
              result.textContent = response.status + ": " + (body && body.detail ? body.detail : "failed");
              result.className = "state error";
            }
          } catch (error) {
            result.textContent = String(error.message || error);
            result.className = "state error";
          }
        }

        $("tail-form").addEventListener("submit", (event) => { event.preventDefault(); startTail($("tail-pattern").value); });
        $("tail-stop").addEventListener("click", stopTail);
        $("tail-clear").addEventListener("click", () => $("tail-log").replaceChildren());
        $("publish-form").addEventListener("submit", (event) => { event.preventDefault(); publish(); });
        const initial = new URLSearchParams(location.search).get("tail");
        if (initial) { $("tail-pattern").value = initial; startTail(initial); }
        poll();

        """#
}
