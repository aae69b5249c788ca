// weir's web console: hash-routed views over the JSON API, refreshed every second. The token
// (if the server wants one) is kept in localStorage; buttons show only where the token's
// grants allow the action, so a read-only token sees none that would fail.
"use strict";

const REFRESH_MS = 1000;
const state = { who: null, timer: null, view: null, rates: { at: 0, records: 0, rate: 0 }, browse: {}, diff: {} };

// ---- API ----------------------------------------------------------------------------------

function token() { return localStorage.getItem("weir-token") || ""; }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    // The API answers {"error": {"message"}}, the schema registry Confluent's {"message"}.
    const err = new Error((data.error && data.error.message) || data.message || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}
const get = (path) => api("GET", path);
const post = (path, body) => api("POST", path, body === undefined ? {} : body);

// ---- grants (mirrors the server's glob: `*` matches any run of characters) -----------------

function glob(pattern, name) {
  const i = pattern.indexOf("*");
  if (i < 0) return pattern === name;
  const head = pattern.slice(0, i), rest = pattern.slice(i + 1);
  if (!name.startsWith(head)) return false;
  const after = name.slice(head.length);
  for (let k = 0; k <= after.length; k++) if (glob(rest, after.slice(k))) return true;
  return false;
}

function may(permission, name) {
  if (!state.who) return false;
  return state.who.grants.some(([p, pattern]) => (p === permission || p === "admin") && glob(pattern, name));
}

// ---- helpers -------------------------------------------------------------------------------

function esc(s) {
  return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c]));
}
const n = (x) => Number(x || 0).toLocaleString("en-US");
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const topicRecords = (t) => sum(t.partitions.map(([start, hw]) => hw - start));
const topicEnd = (t) => sum(t.partitions.map(([, hw]) => hw));
const groupLag = (g) => sum(g.partitions.map(([, c, hw]) => Math.max(0, hw - (c || 0))));
const sourceName = (s) => typeof s === "string" ? s : (s.topic !== undefined ? s.topic : "queue:" + s.queue);
const stateLabel = (s) => s.charAt(0).toUpperCase() + s.slice(1);
const dlqTopic = (p) => p.spec.dead_letter_topic || (p.spec.name + ".dlq");

function table(headers, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty || "Nothing yet.")}</p>`;
  const th = headers.map((h) => `<th class="${h.endsWith("#") ? "num" : ""}">${esc(h.replace(/#$/, ""))}</th>`).join("");
  return `<table><thead><tr>${th}</tr></thead><tbody>${rows.map((r) => `<tr>${r.join("")}</tr>`).join("")}</tbody></table>`;
}
const td = (x) => `<td>${x}</td>`;
const num = (x) => `<td class="num">${n(x)}</td>`;

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.style.display = "block";
  setTimeout(() => { el.style.display = "none"; }, 2500);
}

// Pending dead letters of a topic: records past the replay group's committed offset.
function pendingDeadLetters(topic, groups) {
  if (!topic) return 0;
  const g = groups.find((x) => x.group === "weir.dlq-replay" && x.topic === topic.name);
  return sum(topic.partitions.map(([start, hw], p) => {
    const row = g && g.partitions.find(([q]) => q === p);
    const from = Math.max(start, row && row[1] !== null ? row[1] : 0);
    return Math.max(0, hw - from);
  }));
}

// ---- views ---------------------------------------------------------------------------------

const views = {
  async overview() {
    const [topics, groups, pipelines, queues, health] = await Promise.all([get("/api/v1/topics"), get("/api/v1/groups"), get("/api/v1/pipelines"), get("/api/v1/queues"), get("/api/v1/health")]);
    const now = Date.now(), records = sum(topics.map(topicEnd));
    const r = state.rates;
    if (r.at && now > r.at) r.rate = Math.max(0, (records - r.records) * 1000 / (now - r.at));
    r.at = now; r.records = records;
    const processed = sum(pipelines.map((p) => p.processed));
    const worst = groups.reduce((w, g) => groupLag(g) > (w ? groupLag(w) : -1) ? g : w, null);
    const dlq = sum(pipelines.map((p) => pendingDeadLetters(topics.find((t) => t.name === dlqTopic(p)), groups)));
    const halted = pipelines.filter((p) => p.state === "halted");
    const card = (label, value, id) => `<div class="card" id="${id}"><div class="label">${esc(label)}</div><div class="value">${value}</div></div>`;
    const mib = (b) => `${(b / 1048576).toFixed(0)} MiB`;
    const banner = health.disk_full
      ? `<p class="error" id="disk-full">Disk full: ${mib(health.free_bytes)} free, below the ${mib(health.min_free_bytes)} weir keeps. Produces, pipeline outputs and queue sends wait; reads go on. Writes resume by themselves when space returns.</p>`
      : health.write_failed ? `<p class="error" id="write-failed">Writes are refused after a failed write (the server's log says why); restart the server once the cause is fixed.</p>` : "";
    return `<h1>Overview</h1>${banner}<div class="cards">
      ${card("Records in / s", n(Math.round(r.rate)), "rate-in")}
      ${card("Records stored", n(records), "records")}
      ${card("Pipeline inputs", n(processed), "processed")}
      ${card("Worst group lag", worst ? `${n(groupLag(worst))} <span class="muted" style="font-size:12px">${esc(worst.group)}</span>` : "0", "worst-lag")}
      ${card("Dead letters pending", n(dlq), "dlq-depth")}
      ${card("Queued messages", n(sum(queues.map((q) => q.ready + q.waiting + q.in_flight))), "queued")}
      ${card("Halted pipelines", n(halted.length), "halted-count")}
      ${card("Disk free", health.free_bytes >= 2 ** 53 ? "—" : mib(health.free_bytes), "disk-free")}
    </div>
    <h2>Halted pipelines</h2>
    ${table(["Pipeline", "Error"], halted.map((p) => [td(`<a href="#/pipelines/${encodeURIComponent(p.spec.name)}">${esc(p.spec.name)}</a>`), td(`<span class="error">${esc(p.last_error)}</span>`)]), "None: every pipeline runs.")}
    <h2>Pipelines</h2>${pipelineTable(pipelines)}`;
  },

  async topics() {
    const topics = await get("/api/v1/topics");
    return `<h1>Topics</h1>` + table(["Topic", "Partitions#", "Records#", "High watermark#", "Durability"], topics.map((t) => [
      td(`<a href="#/topics/${encodeURIComponent(t.name)}">${esc(t.name)}</a>`), num(t.partitions.length), num(topicRecords(t)), num(topicEnd(t)), td(esc(t.durability)),
    ]), "No topics.");
  },

  async topic(name) {
    const t = await get(`/api/v1/topics/${encodeURIComponent(name)}`);
    const b = state.browse[name] || (state.browse[name] = { partition: "", offset: "", time: "" });
    const q = new URLSearchParams({ max: "50" });
    if (b.partition !== "") q.set("partition", b.partition);
    if (b.offset !== "") q.set("offset", b.offset);
    else if (b.time !== "") q.set("time_ms", String(new Date(b.time).getTime()));
    else if (b.partition !== "") {
      // One partition: its latest 50 by default. All partitions: the first stored of each.
      q.set("offset", String(Math.max(t.partitions[+b.partition][0], t.partitions[+b.partition][1] - 50)));
    }
    const data = await get(`/api/v1/topics/${encodeURIComponent(name)}/records?${q}`);
    const options = [`<option value="">all</option>`].concat(t.partitions.map((_, p) => `<option value="${p}" ${String(p) === b.partition ? "selected" : ""}>${p}</option>`)).join("");
    return `<h1>Topic ${esc(name)}</h1>
      <p class="muted">${t.partitions.length} partition(s) · ${n(topicRecords(t))} records stored · durability ${esc(t.durability)}</p>
      <form class="inline" id="browse" data-topic="${esc(name)}">
        <label>Partition<select name="partition">${options}</select></label>
        <label>From offset<input name="offset" type="number" min="0" value="${esc(b.offset)}"></label>
        <label>or from time<input name="time" type="datetime-local" value="${esc(b.time)}"></label>
        <button type="submit">Show</button>
      </form>
      <div id="messages">${recordTable(data.records)}</div>`;
  },

  async groups() {
    const groups = await get("/api/v1/groups");
    const rows = [];
    for (const g of groups) for (const [p, c, hw] of g.partitions) rows.push([td(esc(g.group)), td(esc(g.topic)), num(p), td(c === null ? "—" : n(c)), num(hw), num(Math.max(0, hw - (c || 0)))]);
    return `<h1>Consumer groups</h1>` + table(["Group", "Topic", "Partition#", "Committed#", "High watermark#", "Lag#"], rows, "No group has committed offsets.");
  },

  async queues() {
    const queues = await get("/api/v1/queues");
    return `<h1>Queues</h1>` + table(["Queue", "Ready#", "Delayed#", "In flight#", "Dead-letter queue", "Max deliveries#"], queues.map((q) => [
      td(esc(q.name)), num(q.ready), num(q.waiting), num(q.in_flight), td(esc(q.config.dead_letter || "—")), num(q.config.max_deliveries),
    ]), "No queues.");
  },

  async pipelines() {
    return `<h1>Pipelines</h1>` + pipelineTable(await get("/api/v1/pipelines"));
  },

  async pipeline(name) {
    const p = await get(`/api/v1/pipelines/${encodeURIComponent(name)}`);
    const dlq = dlqTopic(p);
    const [topics, groups] = await Promise.all([get("/api/v1/topics"), get("/api/v1/groups")]);
    const dlqInfo = topics.find((t) => t.name === dlq);
    const pending = pendingDeadLetters(dlqInfo, groups);
    const buttons = may("admin", name)
      ? (p.state === "running" ? `<button data-act="pause" data-name="${esc(name)}">Pause</button>` : `<button data-act="resume" data-name="${esc(name)}">Resume</button>`)
      : "";
    const config = (i) => Object.entries((p.spec.steps[i] || {}).config || {}).map(([k, v]) => `${k}=${v}`).join("\n");
    const steps = p.steps.map((s, i) => [
      num(i + 1), td(esc(p.plugins[i] || p.spec.steps[i].plugin)), td(esc((p.shadows || [])[i] || "—")), td(`<pre>${esc(config(i))}</pre>`),
      num(s.input), num(s.output), num(s.dropped), num(s.errors), num(s.calls), td(`${(s.busy_us / 1000).toFixed(1)} ms`),
      td(s.calls ? `${(s.busy_us / s.calls).toFixed(0)} µs` : "—"),
    ]);
    let dlqSection = `<p class="muted">No dead-letter topic yet (${esc(dlq)}).</p>`;
    if (dlqInfo) {
      const source = sourceName(p.spec.source);
      const canReplay = may("read", dlq) && may("write", source);
      // From the replay group's offsets: the letters not replayed yet (read, not committed).
      const recent = pending ? await get(`/api/v1/topics/${encodeURIComponent(dlq)}/records?max=20&group=weir.dlq-replay`) : { records: [] };
      dlqSection = `<p><span id="dlq-pending">${n(pending)}</span> dead letter(s) pending in <a href="#/topics/${encodeURIComponent(dlq)}">${esc(dlq)}</a>
        ${canReplay && pending ? `<button data-act="replay" data-name="${esc(dlq)}">Replay to ${esc(source)}</button>` : ""}</p>
        ${pending ? recordTable(recent.records) : ""}`;
    }
    return `<h1>Pipeline ${esc(name)} <span class="state-${esc(p.state)}" id="pipeline-state">${esc(stateLabel(p.state))}</span></h1>
      <p>${esc(sourceName(p.spec.source))} → ${p.spec.steps.map((s) => esc(s.plugin)).join(" → ")} → ${esc(p.spec.sink)} ${buttons}</p>
      ${p.last_error && p.state === "halted" ? `<p class="error" id="last-error">${esc(p.last_error)}</p>` : ""}
      ${p.last_error && p.state !== "halted" ? `<p class="muted" id="last-handled">Last handled failure${when(p)} (the pipeline runs on): ${esc(p.last_error)}</p>` : ""}
      <p class="muted" id="policy">On a failure: ${esc(p.spec.on_error)}${p.spec.max_attempts ? `, ${n(p.spec.max_attempts)} attempt(s)` : ""}${p.spec.on_error === "dead-letter" ? ` to ${esc(dlq)}` : ""} · group ${esc(p.spec.group || "pipeline." + name)}</p>
      <div class="cards">
        <div class="card"><div class="label">Inputs</div><div class="value" id="inputs">${n(p.processed)}</div></div>
        <div class="card"><div class="label">Outputs</div><div class="value" id="outputs">${n(p.emitted)}</div></div>
        <div class="card"><div class="label">Dropped</div><div class="value">${n(p.dropped)}</div></div>
        <div class="card"><div class="label">Failed</div><div class="value">${n(p.failed)}</div></div>
        <div class="card"><div class="label">Dead-lettered</div><div class="value">${n(p.dead_lettered)}</div></div>
        <div class="card"><div class="label">Lag</div><div class="value" id="lag">${n(sum(p.partitions.map(([, c, hw]) => Math.max(0, hw - c))) + (p.queue_depth || 0))}</div></div>
        <div class="card"><div class="label">Batches</div><div class="value">${n(p.batches)}</div></div>
        <div class="card"><div class="label">Swaps (p99 pause)</div><div class="value">${n(p.swaps)} <span class="muted" style="font-size:12px">${(p.swap_pause_p99_us / 1000).toFixed(1)} ms</span></div></div>
      </div>
      <h2>Steps</h2>
      ${table(["Step#", "Live", "Shadow", "Config", "In#", "Out#", "Dropped#", "Errors#", "Calls#", "In plugin", "Per call"], steps)}
      <h2>Partitions</h2>
      <div id="partitions">${table(["Partition#", "Committed#", "High watermark#", "Lag#"], p.partitions.map(([part, c, hw]) => [num(part), num(c), num(hw), num(Math.max(0, hw - c))]), p.queue_depth !== null && p.queue_depth !== undefined ? `A queue source: ${n(p.queue_depth)} message(s) waiting.` : "No partitions.")}</div>
      <h2>Dead letters</h2>${dlqSection}`;
  },

  async schemas() {
    const [subjects, topics, pipelines, global] = await Promise.all([get("/subjects"), get("/api/v1/topics"), get("/api/v1/pipelines"), get("/config")]);
    const rows = [];
    for (const s of subjects.slice(0, 500)) {
      const [latest, level] = await Promise.all([get(`/subjects/${encodeURIComponent(s)}/versions/latest`), get(`/config/${encodeURIComponent(s)}?defaultToGlobal=true`)]);
      const used = usersOf(s, topics, pipelines);
      rows.push([td(subjectLink(s)), td(esc(latest.schemaType || "AVRO")), num(latest.version), num(latest.id), td(esc(level.compatibilityLevel)), td(links("topics", used.topics)), td(links("pipelines", used.pipelines))]);
    }
    return `<h1>Schemas</h1><p class="muted">Global compatibility: <span id="global-level">${esc(global.compatibilityLevel)}</span> · registry at <code>${esc(location.origin)}</code> (Confluent's API)</p>`
      + table(["Subject", "Type", "Latest#", "Id#", "Compatibility", "Topics", "Pipelines"], rows, "No subjects registered.");
  },

  async subject(name) {
    const base = `/subjects/${encodeURIComponent(name)}`;
    const [versions, level, topics, pipelines] = await Promise.all([get(`${base}/versions`), get(`/config/${encodeURIComponent(name)}?defaultToGlobal=true`), get("/api/v1/topics"), get("/api/v1/pipelines")]);
    // The newest 100 versions: enough to compare, bounded per refresh.
    const all = await Promise.all(versions.slice(-100).map((v) => get(`${base}/versions/${v}`)));
    const d = state.diff[name] || {};
    const to = all.find((v) => String(v.version) === String(d.to)) || all[all.length - 1];
    const from = all.find((v) => String(v.version) === String(d.from)) || all[Math.max(0, all.indexOf(to) - 1)];
    const used = usersOf(name, topics, pipelines);
    const options = (chosen) => all.map((v) => `<option value="${v.version}" ${v === chosen ? "selected" : ""}>${v.version}</option>`).join("");
    const diff = lineDiff(pretty(from), pretty(to)).map(([op, line]) => `<span class="diff-${op === "+" ? "add" : op === "-" ? "del" : "same"}">${esc(op + " " + line)}</span>`).join("\n");
    return `<h1>Subject ${esc(name)}</h1>
      <p class="muted">${esc(to.schemaType || "AVRO")} · compatibility <span id="subject-level">${esc(level.compatibilityLevel)}</span> · used by topics ${links("topics", used.topics)} · pipelines <span id="subject-pipelines">${links("pipelines", used.pipelines)}</span></p>
      ${table(["Version#", "Id#", "References#"], all.map((v) => [num(v.version), num(v.id), num((v.references || []).length)]))}
      <h2>Changes</h2>
      <form class="inline" id="schema-diff" data-subject="${esc(name)}">
        <label>From version<select name="from">${options(from)}</select></label>
        <label>to version<select name="to">${options(to)}</select></label>
        <button type="submit">Compare</button>
      </form>
      <pre class="diff" id="diff">${diff}</pre>`;
  },

  async plugins() {
    const [plugins, pipelines] = await Promise.all([get("/api/v1/plugins"), get("/api/v1/pipelines")]);
    const rows = [], versions = [];
    for (const e of plugins) {
      const name = e.live.name;
      let diff = "—";
      if (e.shadow !== null && e.shadow !== undefined) {
        const d = await get(`/api/v1/plugins/${encodeURIComponent(name)}/diff`).catch(() => null);
        if (d) diff = `${n(d.matched)} same · ${n(d.differed)} differ · ${n(d.shadow_failures)} failed`;
      }
      const acts = may("admin", name)
        ? (e.shadow !== null && e.shadow !== undefined ? `<button data-act="promote" data-name="${esc(name)}">Promote v${e.shadow}</button>` : "")
          + (e.versions > 1 ? `<button class="secondary" data-act="rollback" data-name="${esc(name)}">Roll back</button>` : "")
        : "";
      rows.push([td(esc(name)), td(`v${e.live.version}`), td(e.shadow !== null && e.shadow !== undefined ? `v${e.shadow}` : "—"), num(e.versions), td(esc(usersLabel(name, e.used_by, pipelines))), td(esc(e.live.world)), td(diff), td(acts)]);
      if (versions.length < 50) {
        for (const v of await get(`/api/v1/plugins/${encodeURIComponent(name)}/versions`)) {
          const role = v.version === e.live.version ? "live" : v.version === e.shadow ? "shadow" : "";
          versions.push([td(esc(`${v.name}@${v.version}`)), td(role), td(`<code>${esc(v.hash.slice(0, 12))}</code>`), td(`${(v.size / 1024).toFixed(1)} KiB`), td(new Date(v.deployed_ms).toISOString().replace("T", " ").slice(0, 19)), td(esc(v.world))]);
        }
      }
    }
    return `<h1>Plugins</h1>` + table(["Plugin", "Live", "Shadow", "Versions#", "Used by", "ABI", "Shadow diff", ""], rows, "No plugins deployed.")
      + `<h2>Versions</h2><div id="versions">${table(["Version", "Role", "Hash", "Size", "Deployed (UTC)", "ABI"], versions, "No versions.")}</div>`;
  },
};

// A halted pipeline's error is its state (red); a failure it handled (skipped, retried,
// dead-lettered) while it runs on is history, shown as such.
function lastError(p) {
  if (!p.last_error) return "";
  return p.state === "halted" ? `<span class="error">${esc(p.last_error)}</span>` : `<span class="muted">handled${when(p)}, runs on: ${esc(p.last_error)}</span>`;
}

// " at HH:MM:SS UTC" of a handled failure, when the server knows it.
const when = (p) => p.last_error_ms ? ` at ${new Date(p.last_error_ms).toISOString().slice(11, 19)} UTC` : "";

// `NAME` of the pipelines using `plugin`, each pinned one marked with its version.
function usersLabel(plugin, users, pipelines) {
  return users.map((name) => {
    const p = pipelines.find((x) => x.spec.name === name);
    const pins = p ? p.spec.steps.filter((s) => s.plugin.startsWith(plugin + "@")).map((s) => s.plugin.slice(plugin.length)) : [];
    return pins.length ? `${name} (pinned ${pins.join(", ")})` : name;
  }).join(", ") || "—";
}

function pipelineTable(pipelines) {
  return table(["Pipeline", "State", "Source → sink", "Inputs#", "Outputs#", "Lag#", "Last error"], pipelines.map((p) => [
    td(`<a href="#/pipelines/${encodeURIComponent(p.spec.name)}">${esc(p.spec.name)}</a>`),
    td(`<span class="state-${esc(p.state)}">${esc(stateLabel(p.state))}</span>`),
    td(`${esc(sourceName(p.spec.source))} → ${esc(p.spec.sink)}`),
    num(p.processed), num(p.emitted),
    num(sum(p.partitions.map(([, c, hw]) => Math.max(0, hw - c))) + (p.queue_depth || 0)),
    td(lastError(p)),
  ]), "No pipelines.");
}

function recordTable(records) {
  return table(["Partition#", "Offset#", "Time", "Key", "Value", "Headers"], records.map((r) => [
    num(r.partition), num(r.offset), td(new Date(r.timestamp_ms).toISOString()),
    td(`<pre>${esc(r.key !== undefined ? r.key : (r.key_base64 ? "base64:" + r.key_base64 : ""))}</pre>`),
    td(`<pre class="value">${esc(r.value !== undefined ? r.value : "base64:" + r.value_base64)}</pre>`),
    td(`<pre>${esc(Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join("\n"))}</pre>`),
  ]), "No records here.");
}

// ---- schemas --------------------------------------------------------------------------------

// The subjects a topic's checks name under the topic-name strategy (the record strategies
// name one per record type, so they name none here).
function topicSubjects(t) {
  const c = t.config || {};
  if (c.subject_strategy && c.subject_strategy !== "topic-name") return [];
  const out = [];
  if (c.value_schema !== null && c.value_schema !== undefined) out.push(c.value_schema || `${t.name}-value`);
  if (c.key_schema !== null && c.key_schema !== undefined) out.push(c.key_schema || `${t.name}-key`);
  return out;
}

// Who uses `subject`: topics checking records against it, and pipelines reading or writing them.
function usersOf(subject, topics, pipelines) {
  const names = topics.filter((t) => topicSubjects(t).includes(subject)).map((t) => t.name);
  const uses = pipelines.filter((p) => names.includes(sourceName(p.spec.source)) || names.includes(p.spec.sink)).map((p) => p.spec.name);
  return { topics: names, pipelines: uses };
}

function pretty(v) {
  if (v.schemaType === "PROTOBUF") return v.schema;
  try { return JSON.stringify(JSON.parse(v.schema), null, 2); } catch (e) { return v.schema; }
}

// A line diff (longest common subsequence): [" " | "-" | "+", line] in order.
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  if (x.length * y.length > 4e6) return [["!", "too large to compare here"]];
  const l = Array.from({ length: x.length + 1 }, () => new Uint32Array(y.length + 1));
  for (let i = x.length - 1; i >= 0; i--) for (let j = y.length - 1; j >= 0; j--) l[i][j] = x[i] === y[j] ? l[i + 1][j + 1] + 1 : Math.max(l[i + 1][j], l[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
    else if (j < y.length && (i === x.length || l[i][j + 1] >= l[i + 1][j])) out.push(["+", y[j++]]);
    else out.push(["-", x[i++]]);
  }
  return out;
}

const subjectLink = (s) => `<a href="#/schemas/${encodeURIComponent(s)}">${esc(s)}</a>`;
const links = (kind, names) => names.length ? names.map((x) => `<a href="#/${kind}/${encodeURIComponent(x)}">${esc(x)}</a>`).join(", ") : "—";

// ---- actions -------------------------------------------------------------------------------

const actions = {
  pause: (name) => post(`/api/v1/pipelines/${encodeURIComponent(name)}/pause`),
  resume: (name) => post(`/api/v1/pipelines/${encodeURIComponent(name)}/resume`),
  promote: (name) => post(`/api/v1/plugins/${encodeURIComponent(name)}/promote`),
  rollback: (name) => post(`/api/v1/plugins/${encodeURIComponent(name)}/rollback`),
  replay: async (topic) => { const r = await post(`/api/v1/topics/${encodeURIComponent(topic)}/replay`); toast(`replayed ${r.count} dead letter(s)`); },
};

document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-act]");
  if (!b) return;
  b.disabled = true;
  try { await actions[b.dataset.act](b.dataset.name); } catch (e) { toast(e.message); }
  render();
});

document.addEventListener("submit", (ev) => {
  const f = ev.target;
  ev.preventDefault();
  if (f.id === "browse") {
    const d = new FormData(f);
    state.browse[f.dataset.topic] = { partition: d.get("partition"), offset: d.get("offset"), time: d.get("time") };
    render();
  } else if (f.id === "schema-diff") {
    const d = new FormData(f);
    state.diff[f.dataset.subject] = { from: d.get("from"), to: d.get("to") };
    render();
  } else if (f.id === "login") {
    localStorage.setItem("weir-token", new FormData(f).get("token"));
    start();
  }
});

// ---- routing and refresh ------------------------------------------------------------------

function route() {
  const parts = (location.hash || "#/overview").slice(2).split("/").map(decodeURIComponent);
  if (parts[0] === "topics" && parts[1]) return ["topic", parts[1]];
  if (parts[0] === "pipelines" && parts[1]) return ["pipeline", parts[1]];
  if (parts[0] === "schemas" && parts[1]) return ["subject", parts[1]];
  return [views[parts[0]] ? parts[0] : "overview"];
}

let rendering = false;
async function render() {
  if (rendering) return;
  rendering = true;
  const main = document.getElementById("main");
  let view = "overview";
  try {
    const [v, arg] = route();
    view = v;
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href").startsWith("#/" + (view === "topic" ? "topics" : view === "pipeline" ? "pipelines" : view === "subject" ? "schemas" : view)));
    // Keep what the user is typing in a form: skip refreshes while a field has focus.
    const typing = document.activeElement && main.contains(document.activeElement) && /INPUT|SELECT/.test(document.activeElement.tagName);
    if (!typing) {
      main.innerHTML = await views[view](arg);
      main.dataset.view = view;
    }
  } catch (e) {
    if (e.status === 401) login(e.message);
    else main.innerHTML = `<h1>${esc(view)}</h1><p class="error">${esc(e.message)}</p>`;
  } finally {
    rendering = false;
  }
}

function login(why) {
  clearInterval(state.timer);
  document.getElementById("main").innerHTML = `<h1>Sign in</h1><p class="muted">${esc(why)}</p>
    <form class="inline" id="login"><label>Token<input name="token" type="password" autocomplete="off"></label><button type="submit">Sign in</button></form>`;
}

async function start() {
  try {
    state.who = await get("/api/v1/whoami");
  } catch (e) {
    if (e.status === 401) return login(e.message);
    document.getElementById("main").innerHTML = `<p class="error">${esc(e.message)}</p>`;
    return;
  }
  if (state.who.enforced && !state.who.name) return login("This server requires a token.");
  document.getElementById("who").textContent = state.who.enforced ? `token ${state.who.name}` : "open server (no tokens)";
  clearInterval(state.timer);
  state.timer = setInterval(render, REFRESH_MS);
  render();
}

window.addEventListener("hashchange", render);
start();
