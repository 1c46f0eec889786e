// The console of iotjobs-local: jobs, a job and a thing, kept live by the service's event stream.
// Reads come from /console/events (a snapshot, then only what changed); every action is a call of the
// management REST API on the same port, the routes boto3 and the aws CLI use.
"use strict";

const STATUSES = ["QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"];
const PENDING = new Set(["QUEUED", "IN_PROGRESS"]);
const COUNT_KEYS = {
  QUEUED: "numberOfQueuedThings", IN_PROGRESS: "numberOfInProgressThings", SUCCEEDED: "numberOfSucceededThings",
  FAILED: "numberOfFailedThings", REJECTED: "numberOfRejectedThings", TIMED_OUT: "numberOfTimedOutThings",
  CANCELED: "numberOfCanceledThings", REMOVED: "numberOfRemovedThings",
};
const JOB_STATUSES = ["IN_PROGRESS", "COMPLETED", "CANCELED"];
// Rows drawn at once: the rest of a 10,000-execution job stays in memory, a page away.
const PAGE_SIZE = 100;
// The chart's width in minutes, the most recent ones.
const CHART_MINUTES = 240;
const MIN_CHART_SLOTS = 15;

const main = document.getElementById("main");
let info = {thingArnPrefix: "", groupArnPrefix: "", files: {folder: null, files: []}};
let stream = null;
// The service's clock at the last event, against ours: its "now" may run ahead or stand still (tests).
let clock = {service: Date.now() / 1000, local: performance.now()};

// ---- small helpers -------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttributes(el, attrs);
  for (const child of children.flat(Infinity)) if (child) el.append(child instanceof Node ? child : String(child));
  return el;
}

function setAttributes(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function when(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function hhmm(minute) {
  const d = new Date(minute * 60000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function badge(status) {
  return h("span", {class: `badge s-${status}`}, status);
}

function serviceNow() {
  return clock.service + (performance.now() - clock.local) / 1000;
}

function pretty(value) {
  return value === undefined || value === null ? "none" : JSON.stringify(value, null, 2);
}

function prettyText(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (e) {
    return text;
  }
}

// Coalesces renders to one per frame, however many events came in it.
const scheduled = new Set();
function schedule(render) {
  if (scheduled.size === 0) {
    requestAnimationFrame(() => {
      const renders = [...scheduled];
      scheduled.clear();
      for (const fn of renders) fn();
    });
  }
  scheduled.add(render);
}

// Redraws a part only when what it shows changed (its signature): a busy stream costs little DOM work.
function drawer() {
  const last = new Map();
  return (part, signature, draw) => {
    if (last.get(part) === signature) return;
    last.set(part, signature);
    draw();
  };
}

// Shows items as the rows of body. While the same rows stay on screen only those whose item changed are
// rebuilt: events bring whole records, so a changed item is a new object.
function rowsOf(body, keyOf, build, placeholder) {
  let shown = [];
  return (items) => {
    if (items.length && items.length === shown.length && items.every((item, i) => keyOf(item) === shown[i].key)) {
      items.forEach((item, i) => {
        if (shown[i].item === item) return;
        const tr = build(item);
        shown[i].tr.replaceWith(tr);
        shown[i] = {key: shown[i].key, item, tr};
      });
      return;
    }
    shown = items.map((item) => ({key: keyOf(item), item, tr: build(item)}));
    body.replaceChildren(...(shown.length || !placeholder ? shown.map((s) => s.tr) : [placeholder()]));
  };
}

// ---- errors and the live indicator -----------------------------------------------------------

class ApiFailure extends Error {
  constructor(action, type, message) {
    super(`${action} failed: ${type}: ${message}`);
    this.type = type;
  }
}

function showError(error) {
  document.getElementById("error-text").textContent = error.message || String(error);
  document.getElementById("error").hidden = false;
}

function clearError() {
  document.getElementById("error").hidden = true;
  document.getElementById("error-text").textContent = "";
}

function setLive(state) {
  const live = document.getElementById("live");
  live.textContent = state;
  live.className = `live state-${state}`;
}

// One call of the management API: resolves to its JSON answer, or throws its error type and message.
async function api(action, method, path, query, body) {
  const search = query ? "?" + new URLSearchParams(query) : "";
  let response;
  try {
    response = await fetch(path + search, {
      method,
      headers: body === undefined ? {} : {"Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiFailure(action, "no answer", `the service could not be reached (${e.message})`);
  }
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch (e) {
    data = {message: text};
  }
  if (!response.ok) {
    throw new ApiFailure(action, response.headers.get("x-amzn-ErrorType") || `HTTP ${response.status}`,
                         data.message || text);
  }
  return data;
}

function path(...parts) {
  return "/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

// ---- the live stream -------------------------------------------------------------------------

function follow(params, onSnapshot, onChange) {
  if (stream) stream.close();
  setLive("connecting");
  const source = new EventSource("events?" + new URLSearchParams(params));
  const received = (handler) => (event) => {
    const data = JSON.parse(event.data);
    clock = {service: data.now, local: performance.now()};
    handler(data);
  };
  source.addEventListener("snapshot", received((data) => {
    setLive("live");
    onSnapshot(data);
  }));
  source.addEventListener("change", received(onChange));
  source.onerror = () => setLive(source.readyState === EventSource.CLOSED ? "offline" : "reconnecting");
  stream = source;
}

// ---- shared pieces ---------------------------------------------------------------------------

function statusOptions(statuses, counts, chosen) {
  return [h("option", {value: ""}, "All statuses"),
          ...statuses.map((s) => h("option", {value: s, selected: s === chosen}, counts ? `${s} (${counts[s] || 0})` : s))];
}

// The status colours; with a job's counts, each status's count too.
function legend(details) {
  return h("div", {class: "legend"}, STATUSES.map((s) => h("span", {class: "key", "data-status": s}, h("i", {class: `s-${s}`}),
    details ? `${s} ${details[COUNT_KEYS[s]] || 0}` : s)));
}

// The executions of a job by status, as one bar.
function statusBar(details) {
  const counts = details || {};
  const total = STATUSES.reduce((sum, s) => sum + (counts[COUNT_KEYS[s]] || 0), 0);
  const bar = h("div", {class: "bar", "data-total": total, title: STATUSES.map((s) => `${s} ${counts[COUNT_KEYS[s]] || 0}`).join(", ")});
  for (const s of STATUSES) {
    const n = counts[COUNT_KEYS[s]] || 0;
    if (n) bar.append(h("span", {class: `seg s-${s}`, style: `flex-grow:${n}`, "data-status": s, "data-count": n, title: `${s} ${n}`}));
  }
  if (!total) bar.append(h("span", {class: "seg empty"}, "no executions yet"));
  return h("div", {class: "bar-line"}, bar, h("span", {class: "total"}, total));
}

function detailsCell(details) {
  const entries = Object.entries(details || {});
  return h("td", {class: "details"}, entries.map(([k, v]) => h("span", {class: "kv"}, h("b", {}, k), "=", v)));
}

function pager(total, page, onPage) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const shown = Math.min(page, pages - 1);
  return h("div", {class: "pager"},
    h("button", {type: "button", disabled: shown === 0, onclick: () => onPage(shown - 1)}, "Previous"),
    h("span", {}, `${total ? shown * PAGE_SIZE + 1 : 0}–${Math.min(total, (shown + 1) * PAGE_SIZE)} of ${total}`),
    h("button", {type: "button", disabled: shown >= pages - 1, onclick: () => onPage(shown + 1)}, "Next"));
}

// Asks before an action: resolves to the form's values, or null when the user backs out.
function confirmAction(title, text, fields) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-fields").replaceChildren(...fields);
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      const values = {};
      for (const input of dialog.querySelectorAll("#confirm-fields input")) {
        values[input.name] = input.type === "checkbox" ? input.checked : input.value.trim();
      }
      resolve(values);
    }, {once: true});
  });
}

function forceField(text) {
  return h("label", {class: "check"}, h("input", {type: "checkbox", name: "force", id: "confirm-force"}), " ", text);
}

async function cancelExecution(row) {
  const values = await confirmAction(`Cancel ${row.jobId} on ${row.thingName}`,
    `Execution ${row.executionNumber} is ${row.status}. The device is notified as by CancelJobExecution.`,
    [forceField("Force: also cancel it while IN_PROGRESS")]);
  if (!values) return;
  try {
    await api("CancelJobExecution", "PUT", path("things", row.thingName, "jobs", row.jobId, "cancel"),
              values.force ? {force: "true"} : null, {});
  } catch (e) {
    showError(e);
  }
}

async function deleteExecution(row) {
  const values = await confirmAction(`Delete execution ${row.executionNumber} of ${row.jobId} on ${row.thingName}`,
    `It is ${row.status}. Deleting it removes it and its history, as DeleteJobExecution does.`,
    [forceField("Force: also delete it while QUEUED or IN_PROGRESS")]);
  if (!values) return;
  try {
    await api("DeleteJobExecution", "DELETE",
              path("things", row.thingName, "jobs", row.jobId, "executionNumber", String(row.executionNumber)),
              values.force ? {force: "true"} : null);
  } catch (e) {
    showError(e);
  }
}

function executionActions(row) {
  return h("td", {class: "actions"},
    h("button", {type: "button", class: "cancel-execution", disabled: !PENDING.has(row.status),
                 onclick: () => cancelExecution(row)}, "Cancel"),
    h("button", {type: "button", class: "delete-execution", onclick: () => deleteExecution(row)}, "Delete"));
}

// An execution as a table row: first what it is of (its thing on a job's page, its job on a thing's), then
// its number, status, version, statusDetails, times and actions.
function executionRow(run, attrs, first) {
  return h("tr", {...attrs, "data-execution": run.executionNumber},
    h("td", {}, first),
    h("td", {class: "number"}, run.executionNumber),
    h("td", {class: "status"}, badge(run.status)),
    h("td", {class: "version"}, run.versionNumber),
    detailsCell(run.statusDetails),
    h("td", {}, when(run.queuedAt)),
    h("td", {}, when(run.startedAt)),
    h("td", {class: "updated"}, when(run.lastUpdatedAt)),
    executionActions(run));
}

function executionKey(a, b) {
  return `${a}\u0000${b}`;
}

// ---- jobs ------------------------------------------------------------------------------------

function showJobs() {
  document.title = "Jobs · iotjobs-local";
  const state = {jobs: new Map(), status: "", search: "", page: 0};
  const filter = h("select", {id: "job-status-filter", "aria-label": "Job status",
                              onchange: () => { state.status = filter.value; state.page = 0; render(); }});
  const search = h("input", {type: "search", id: "job-search", placeholder: "Job ID contains", "aria-label": "Job ID contains",
                             oninput: () => { state.search = search.value.trim(); state.page = 0; render(); }});
  const body = h("tbody");
  const pages = h("div");
  const empty = h("p", {class: "empty", hidden: true});
  main.replaceChildren(h("section", {class: "jobs"},
    h("div", {class: "toolbar"}, h("h1", {}, "Jobs"), filter, search, h("a", {class: "button", href: "#/create"}, "Create job")),
    legend(),
    h("table", {id: "jobs"},
      h("thead", {}, h("tr", {}, ["Job", "Status", "Target selection", "Created", "Updated", "Executions by status"].map((t) => h("th", {}, t)))),
      body),
    empty, pages));

  const draw = drawer();
  const table = rowsOf(body, (job) => job.jobId, (job) => h("tr", {"data-job": job.jobId},
    h("td", {}, h("a", {href: "#/job/" + encodeURIComponent(job.jobId)}, job.jobId)),
    h("td", {class: "status"}, badge(job.status)),
    h("td", {}, job.targetSelection),
    h("td", {}, when(job.createdAt)),
    h("td", {}, when(job.lastUpdatedAt)),
    h("td", {}, statusBar(job.jobProcessDetails))));

  function render() {
    const counts = {};
    for (const job of state.jobs.values()) counts[job.status] = (counts[job.status] || 0) + 1;
    draw("filter", JSON.stringify([counts, state.status]),
         () => filter.replaceChildren(...statusOptions(JOB_STATUSES, counts, state.status)));
    const shown = [...state.jobs.values()].reverse().filter((j) =>
      (!state.status || j.status === state.status) && (!state.search || j.jobId.includes(state.search)));
    const first = Math.min(state.page, Math.max(0, Math.ceil(shown.length / PAGE_SIZE) - 1)) * PAGE_SIZE;
    table(shown.slice(first, first + PAGE_SIZE));
    empty.hidden = shown.length > 0;
    empty.textContent = state.jobs.size ? "No job matches the filter." : "No jobs yet: create one here, with boto3 or the aws CLI.";
    draw("pager", `${shown.length} ${state.page}`,
         () => pages.replaceChildren(pager(shown.length, state.page, (p) => { state.page = p; render(); })));
  }

  follow({view: "jobs"}, (data) => {
    state.jobs = new Map(data.jobs.map((j) => [j.jobId, j]));
    schedule(render);
  }, (data) => {
    for (const job of data.jobs) state.jobs.set(job.jobId, job);
    for (const id of data.gone) state.jobs.delete(id);
    schedule(render);
  });
}

// ---- a job -----------------------------------------------------------------------------------

function showJob(jobId) {
  document.title = `${jobId} · iotjobs-local`;
  const state = {job: null, loaded: false, runs: new Executions([]), status: "", page: 0};
  const status = h("span", {id: "job-status"});
  const cancel = h("button", {type: "button", id: "cancel-job", class: "danger", onclick: () => cancelJob(state.job)}, "Cancel job…");
  const summary = h("dl", {class: "summary", id: "job-summary"});
  const bar = h("div", {id: "job-bar"});
  const chart = h("div", {id: "job-chart", class: "chart"});
  const configs = h("div", {class: "configs", id: "job-configs"});
  const documentText = h("pre", {id: "job-document", class: "document"});
  const filter = h("select", {id: "execution-status-filter", "aria-label": "Execution status",
                              onchange: () => { state.status = filter.value; state.page = 0; render(); }});
  const body = h("tbody");
  const pages = h("div");
  const notice = h("p", {class: "notice", id: "job-notice", hidden: true});
  main.replaceChildren(h("section", {class: "job"},
    h("div", {class: "toolbar"}, h("h1", {}, h("span", {class: "muted"}, "Job "), jobId), status, cancel),
    notice, summary,
    h("h2", {}, "Executions by status"), bar,
    h("h2", {}, "Rollout: executions per minute"), chart,
    h("div", {class: "columns"},
      h("div", {}, h("h2", {}, "Configuration"), configs),
      h("div", {}, h("h2", {}, "Document"), documentText)),
    h("div", {class: "toolbar"}, h("h2", {}, "Executions"), filter),
    h("table", {id: "executions"},
      h("thead", {}, h("tr", {}, ["Thing", "#", "Status", "Version", "Status details", "Queued", "Started", "Last update", ""].map((t) => h("th", {}, t)))),
      body),
    pages));

  const draw = drawer();
  const table = rowsOf(body, (run) => executionKey(run.thingName, run.executionNumber), (run) => executionRow(run,
    {"data-thing": run.thingName}, h("a", {href: "#/thing/" + encodeURIComponent(run.thingName)}, run.thingName)));

  function render() {
    const job = state.job;
    // Everything of the job but its counts, which move with every execution and are drawn by the bar.
    draw("job", job ? JSON.stringify({...job, jobProcessDetails: null}) : String(state.loaded), () => {
      notice.hidden = !!job || !state.loaded;
      notice.textContent = `There is no job ${jobId} (never created, or deleted).`;
      status.replaceChildren(job ? badge(job.status) : "");
      cancel.disabled = !job || job.status !== "IN_PROGRESS";
      renderSummary(summary, job);
      renderConfigs(configs, job);
    });
    const details = (job && job.jobProcessDetails) || {};
    draw("bar", JSON.stringify(details), () => bar.replaceChildren(legend(details), statusBar(details)));
    const minutes = state.runs.perMinute(serviceNow());
    draw("chart", JSON.stringify(minutes), () => chart.replaceChildren(rolloutChart(minutes)));

    const counts = state.runs.counts;
    draw("filter", JSON.stringify([counts, state.status]),
         () => filter.replaceChildren(...statusOptions(STATUSES, counts, state.status)));
    // Only as far into the executions as the page shown: the first page costs the same at any size.
    const total = state.status ? counts[state.status] || 0 : state.runs.runs.size;
    const first = Math.min(state.page, Math.max(0, Math.ceil(total / PAGE_SIZE) - 1)) * PAGE_SIZE;
    const shown = [];
    let index = 0;
    for (const run of state.runs.runs.values()) {
      if (state.status && run.status !== state.status) continue;
      if (index++ >= first) shown.push(run);
      if (shown.length === PAGE_SIZE) break;
    }
    table(shown);
    draw("pager", `${total} ${state.page}`,
         () => pages.replaceChildren(pager(total, state.page, (p) => { state.page = p; render(); })));
  }

  follow({view: "job", id: jobId}, (data) => {
    state.loaded = true;
    state.job = data.job;
    state.runs = new Executions(data.executions);
    documentText.textContent = data.document === undefined ? "" : prettyText(data.document);
    schedule(render);
  }, (data) => {
    state.job = data.job;
    if (!data.job) state.runs = new Executions([]);
    for (const run of data.executions) state.runs.put(run);
    for (const [thing, number] of data.gone) state.runs.remove(thing, number);
    schedule(render);
  });
}

function renderSummary(summary, job) {
  if (!job) {
    summary.replaceChildren();
    return;
  }
  const targets = job.targets.map((arn) => {
    if (arn.startsWith(info.thingArnPrefix)) {
      const name = arn.slice(info.thingArnPrefix.length);
      return h("a", {href: "#/thing/" + encodeURIComponent(name), class: "target"}, name);
    }
    return h("span", {class: "target group", title: arn}, "group " + arn.slice(info.groupArnPrefix.length));
  });
  const rows = [
    ["Description", job.description || ""],
    ["Target selection", job.targetSelection],
    ["Targets", targets],
    ["Created", when(job.createdAt)],
    ["Last updated", when(job.lastUpdatedAt)],
    ["Completed", when(job.completedAt)],
    ["Force-canceled", job.forceCanceled ? "yes" : ""],
    ["Reason code", job.reasonCode || ""],
    ["Comment", job.comment || ""],
  ];
  summary.replaceChildren(...rows.filter(([, value]) => value !== "").flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function renderConfigs(configs, job) {
  if (!job) {
    configs.replaceChildren();
    return;
  }
  const items = [
    ["Rollout (jobExecutionsRolloutConfig)", job.jobExecutionsRolloutConfig, "rollout"],
    ["Abort (abortConfig)", job.abortConfig, "abort"],
    ["Timeout (timeoutConfig)", job.timeoutConfig, "timeout"],
    ["Presigned URLs (presignedUrlConfig)", job.presignedUrlConfig, "presigned"],
    ["Document source", job.documentSource, "source"],
    ["Document parameters", job.documentParameters, "parameters"],
  ];
  configs.replaceChildren(...items.map(([title, value, id]) =>
    h("div", {class: "config"}, h("h3", {}, title), h("pre", {id: `config-${id}`}, pretty(value)))));
}

async function cancelJob(job) {
  if (!job) return;
  const values = await confirmAction(`Cancel job ${job.jobId}`,
    "QUEUED executions are canceled and their devices notified, as by CancelJob.",
    [forceField("Force: also cancel IN_PROGRESS executions"),
     h("label", {}, "Comment ", h("input", {name: "comment", id: "confirm-comment"})),
     h("label", {}, "Reason code ", h("input", {name: "reasonCode", id: "confirm-reason", placeholder: "e.g. BAD_BUILD"}))]);
  if (!values) return;
  const body = {};
  if (values.comment) body.comment = values.comment;
  if (values.reasonCode) body.reasonCode = values.reasonCode;
  try {
    await api("CancelJob", "PUT", path("jobs", job.jobId, "cancel"), values.force ? {force: "true"} : null, body);
  } catch (e) {
    showError(e);
  }
}

// A job's executions, with their counts by status and by minute kept as they change: a change costs the
// page the same whether the job has ten executions or ten thousand.
class Executions {
  constructor(list) {
    this.runs = new Map();
    this.counts = {};
    this.minutes = new Map();  // minute -> {queued, started, succeeded, failed, other}
    for (const run of list) this.put(run);
  }

  put(run) {
    const key = executionKey(run.thingName, run.executionNumber);
    this.tally(this.runs.get(key), -1);
    this.runs.set(key, run);
    this.tally(run, 1);
  }

  remove(thing, number) {
    const key = executionKey(thing, number);
    this.tally(this.runs.get(key), -1);
    this.runs.delete(key);
  }

  tally(run, sign) {
    if (!run) return;
    this.counts[run.status] = (this.counts[run.status] || 0) + sign;
    const add = (seconds, series) => {
      const minute = Math.floor(seconds / 60);
      let bucket = this.minutes.get(minute);
      if (!bucket) this.minutes.set(minute, bucket = {queued: 0, started: 0, succeeded: 0, failed: 0, other: 0});
      bucket[series] += sign;
    };
    add(run.queuedAt, "queued");
    if (run.startedAt) add(run.startedAt, "started");
    if (!PENDING.has(run.status)) {
      add(run.lastUpdatedAt, run.status === "SUCCEEDED" ? "succeeded" : run.status === "CANCELED" || run.status === "REMOVED" ? "other" : "failed");
    }
  }

  // The minutes from the first execution's to now (the most recent CHART_MINUTES of them), or null if none.
  perMinute(now) {
    let first = Infinity;
    for (const [minute, bucket] of this.minutes) if (bucket.queued > 0) first = Math.min(first, minute);
    if (first === Infinity) return null;
    const last = Math.max(Math.floor(now / 60), first);
    const start = Math.max(first, last - CHART_MINUTES + 1);
    const buckets = [];
    for (let minute = start; minute <= last; minute++) {
      buckets.push({...(this.minutes.get(minute) || {queued: 0, started: 0, succeeded: 0, failed: 0, other: 0})});
    }
    return {start, buckets};
  }
}

// Those minutes as bars: a staged rollout's pace, or an abort, as it happens.
function rolloutChart(minutes) {
  if (!minutes) return h("p", {class: "empty"}, "No executions yet.");
  const {start, buckets} = minutes;
  const width = 720, height = 180, left = 40, bottom = 22, top = 8;
  const plot = {w: width - left - 8, h: height - bottom - top};
  let peak = 1;
  for (const b of buckets) peak = Math.max(peak, b.queued, b.started, b.succeeded + b.failed + b.other);
  // At least MIN_CHART_SLOTS wide, so a young job's few minutes are bars, not blocks.
  const step = plot.w / Math.max(buckets.length, MIN_CHART_SLOTS);
  const barWidth = Math.max(1, step * 0.28);
  const y = (n) => top + plot.h - (n / peak) * plot.h;
  const bars = buckets.map((b, i) => {
    const x = left + i * step + step * 0.08;
    const finished = b.succeeded + b.failed + b.other;
    const column = svg("g", {class: "minute", "data-minute": start + i, "data-queued": b.queued, "data-started": b.started,
                             "data-finished": finished},
      svg("title", {}, `${hhmm(start + i)}: ${b.queued} queued, ${b.started} started, ${finished} finished ` +
                       `(${b.succeeded} succeeded, ${b.failed} failed, rejected or timed out, ${b.other} canceled or removed)`));
    const rect = (cls, n, base, offset) => n && column.append(svg("rect", {class: cls, x: x + offset, width: barWidth,
                                                                           y: y(base + n), height: y(base) - y(base + n)}));
    rect("queued", b.queued, 0, 0);
    rect("started", b.started, 0, barWidth);
    rect("succeeded", b.succeeded, 0, 2 * barWidth);
    rect("failed", b.failed, b.succeeded, 2 * barWidth);
    rect("other", b.other, b.succeeded + b.failed, 2 * barWidth);
    return column;
  });
  const label = (x, yy, text, anchor) => svg("text", {x, y: yy, "text-anchor": anchor || "middle"}, text);
  // A time label every few minutes, at least 40 units apart.
  const every = Math.max(1, Math.ceil(40 / step));
  const ticks = buckets.map((b, i) => i).filter((i) => (start + i) % every === 0 || buckets.length === 1);
  const total = (series) => buckets.reduce((sum, b) => sum + series.reduce((n, s) => n + b[s], 0), 0);
  const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "executions per minute",
                            "data-minutes": buckets.length, "data-queued": total(["queued"]), "data-started": total(["started"]),
                            "data-finished": total(["succeeded", "failed", "other"])},
    svg("line", {class: "axis", x1: left, x2: left + plot.w, y1: top + plot.h, y2: top + plot.h}),
    svg("line", {class: "grid", x1: left, x2: left + plot.w, y1: y(peak), y2: y(peak)}),
    label(left - 6, top + 10, String(peak), "end"),
    label(left - 6, top + plot.h, "0", "end"),
    ticks.map((i) => label(left + (i + 0.5) * step, height - 6, hhmm(start + i))),
    bars);
  const key = h("div", {class: "legend"},
    [["queued", "queued"], ["started", "started"], ["succeeded", "succeeded"], ["failed", "failed, rejected, timed out"],
     ["other", "canceled, removed"]].map(([cls, text]) => h("span", {class: "key"}, h("i", {class: `c-${cls}`}), text)));
  return h("div", {}, chart, key);
}

// ---- a thing ---------------------------------------------------------------------------------

function showThing(name) {
  document.title = `${name} · iotjobs-local`;
  const state = {thing: null, loaded: false, runs: new Map()};
  const facts = h("dl", {class: "summary", id: "thing-summary"});
  const pendingBody = h("tbody");
  const pastBody = h("tbody");
  const head = () => h("thead", {}, h("tr", {}, ["Job", "#", "Status", "Version", "Status details", "Queued", "Started", "Last update", ""].map((t) => h("th", {}, t))));
  main.replaceChildren(h("section", {class: "thing"},
    h("div", {class: "toolbar"}, h("h1", {}, h("span", {class: "muted"}, "Thing "), name)),
    facts,
    h("h2", {}, "Pending executions"), h("table", {id: "pending-executions"}, head(), pendingBody),
    h("h2", {}, "Past executions"), h("table", {id: "past-executions"}, head(), pastBody)));

  function row(run) {
    return executionRow(run, {"data-job": run.jobId}, h("a", {href: "#/job/" + encodeURIComponent(run.jobId)}, run.jobId));
  }

  const draw = drawer();
  const none = () => h("tr", {}, h("td", {colspan: 9, class: "empty"}, "none"));
  const key = (run) => executionKey(run.jobId, run.executionNumber);
  const pendingRows = rowsOf(pendingBody, key, row, none);
  const pastRows = rowsOf(pastBody, key, row, none);

  function render() {
    const thing = state.thing;
    draw("facts", JSON.stringify([thing, state.loaded]), () => facts.replaceChildren(...(thing
      ? [h("dt", {}, "ARN"), h("dd", {}, thing.thingArn), h("dt", {}, "Version"), h("dd", {}, thing.version),
         h("dt", {}, "Attributes"), h("dd", {}, Object.entries(thing.attributes).map(([k, v]) => h("span", {class: "kv"}, h("b", {}, k), "=", v)))]
      : state.loaded ? [h("dt", {}, "Registry"), h("dd", {}, "no such thing (never created, or deleted)")] : [])));
    const runs = [...state.runs.values()];
    // Pending in the order `$next` takes them (IN_PROGRESS first); past ones newest first.
    const pending = runs.filter((r) => PENDING.has(r.status))
      .sort((a, b) => (a.status === "IN_PROGRESS" ? 0 : 1) - (b.status === "IN_PROGRESS" ? 0 : 1) || a.queuedAt - b.queuedAt);
    const past = runs.filter((r) => !PENDING.has(r.status)).sort((a, b) => b.lastUpdatedAt - a.lastUpdatedAt);
    pendingRows(pending);
    pastRows(past);
  }

  follow({view: "thing", id: name}, (data) => {
    state.loaded = true;
    state.thing = data.thing;
    state.runs = new Map(data.executions.map((r) => [executionKey(r.jobId, r.executionNumber), r]));
    schedule(render);
  }, (data) => {
    state.thing = data.thing;
    for (const run of data.executions) state.runs.set(executionKey(run.jobId, run.executionNumber), run);
    for (const [job, number] of data.gone) state.runs.delete(executionKey(job, number));
    schedule(render);
  });
}

// ---- create a job ----------------------------------------------------------------------------

const OPTIONAL_CONFIGS = [
  ["rollout", "jobExecutionsRolloutConfig", "Rollout", '{"maximumPerMinute": 10}'],
  ["abort", "abortConfig", "Abort", '{"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}]}'],
  ["timeout", "timeoutConfig", "Timeout", '{"inProgressTimeoutInMinutes": 10}'],
  ["presigned", "presignedUrlConfig", "Presigned URLs", '{"expiresInSec": 3600}'],
  ["parameters", "documentParameters", "Document parameters", '{"version": "1.2.0"}'],
];

function showCreate() {
  document.title = "Create job · iotjobs-local";
  if (stream) stream.close();
  stream = null;
  setLive("idle");
  const files = info.files.files;
  const fileSelect = h("select", {id: "document-file", name: "documentFile", disabled: !files.length},
    files.length ? files.map((f) => h("option", {value: f.documentSource}, `${f.object} (${f.size} bytes)`))
                 : h("option", {value: ""}, "no files: start serve with --files DIR"));
  const form = h("form", {id: "create-job", class: "create", novalidate: true},
    h("h1", {}, "Create job"),
    h("label", {}, "Job ID", h("input", {id: "new-job-id", name: "jobId", required: true, pattern: "[a-zA-Z0-9_-]{1,64}", autocomplete: "off"})),
    h("label", {}, "Description", h("input", {id: "new-job-description", name: "description"})),
    h("fieldset", {}, h("legend", {}, "Targets"),
      h("label", {}, "Things (names or ARNs, separated by spaces, commas or lines)",
        h("textarea", {id: "new-job-things", name: "things", rows: 2})),
      h("label", {}, "Thing groups (names or ARNs)", h("textarea", {id: "new-job-groups", name: "groups", rows: 1})),
      h("div", {class: "choices"},
        h("label", {class: "check"}, h("input", {type: "radio", name: "targetSelection", value: "SNAPSHOT", checked: true}), " SNAPSHOT"),
        h("label", {class: "check"}, h("input", {type: "radio", name: "targetSelection", value: "CONTINUOUS", id: "new-job-continuous"}),
          " CONTINUOUS (things added to a group later get it too)"))),
    h("fieldset", {}, h("legend", {}, "Document"),
      h("div", {class: "choices"},
        h("label", {class: "check"}, h("input", {type: "radio", name: "documentFrom", value: "text", checked: true}), " Paste it"),
        h("label", {class: "check"}, h("input", {type: "radio", name: "documentFrom", value: "file", id: "new-job-from-file", disabled: !files.length}),
          " A file of --files (documentSource)")),
      h("textarea", {id: "new-job-document", name: "document", rows: 6, spellcheck: "false", placeholder: '{"operation": "greet"}'}),
      fileSelect),
    h("details", {}, h("summary", {}, "Optional configuration (JSON, as the API takes it)"),
      OPTIONAL_CONFIGS.map(([id, member, title, example]) => h("label", {}, `${title} (${member})`,
        h("textarea", {id: `new-job-${id}`, name: member, rows: 2, spellcheck: "false", placeholder: example})))),
    h("div", {class: "toolbar"}, h("button", {type: "submit", id: "create-submit", class: "primary"}, "Create job"),
      h("a", {href: "#/jobs"}, "Back to jobs")));
  const textarea = form.elements.document;
  const showSource = () => {
    const fromFile = form.elements.documentFrom.value === "file";
    textarea.hidden = fromFile;
    fileSelect.hidden = !fromFile;
  };
  for (const radio of form.elements.documentFrom) radio.addEventListener("change", showSource);
  showSource();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    try {
      const jobId = form.elements.jobId.value.trim();
      const request = createRequest(form);
      await api("CreateJob", "PUT", path("jobs", jobId), null, request);
      location.hash = "#/job/" + encodeURIComponent(jobId);
    } catch (e) {
      showError(e);
    }
  });
  main.replaceChildren(form);
}

function words(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

// The CreateJob request body from the form; a field that is not valid JSON is an error before anything is sent.
function createRequest(form) {
  const f = form.elements;
  if (!f.jobId.value.trim()) throw new ApiFailure("CreateJob", "form", "a job ID is needed");
  const targets = [
    ...words(f.things.value).map((t) => t.startsWith("arn:") ? t : info.thingArnPrefix + t),
    ...words(f.groups.value).map((t) => t.startsWith("arn:") ? t : info.groupArnPrefix + t),
  ];
  const request = {targets, targetSelection: f.targetSelection.value};
  if (f.description.value.trim()) request.description = f.description.value.trim();
  if (f.documentFrom.value === "file") request.documentSource = f.documentFile.value;
  else request.document = f.document.value;
  for (const [, member, title] of OPTIONAL_CONFIGS) {
    const text = f[member].value.trim();
    if (!text) continue;
    try {
      request[member] = JSON.parse(text);
    } catch (e) {
      throw new ApiFailure("CreateJob", "form", `${title} is not JSON: ${e.message}`);
    }
  }
  return request;
}

// ---- start -----------------------------------------------------------------------------------

function route() {
  const [, kind, ...rest] = (location.hash || "#/jobs").split("/");
  const name = decodeURIComponent(rest.join("/"));
  if (kind === "job" && name) showJob(name);
  else if (kind === "thing" && name) showThing(name);
  else if (kind === "create") showCreate();
  else showJobs();
}

async function start() {
  document.getElementById("error-close").addEventListener("click", clearError);
  document.getElementById("thing-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = document.getElementById("thing-name").value.trim();
    if (name) location.hash = "#/thing/" + encodeURIComponent(name);
  });
  try {
    const response = await fetch("info");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    info = await response.json();
  } catch (e) {
    showError(new Error(`The console's settings could not be read: ${e.message}`));
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
