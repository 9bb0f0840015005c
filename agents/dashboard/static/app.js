// The kubelab dashboard's page: vanilla JavaScript, no framework, no build step.
// Every request is relative to the page's own URL (the API server's service proxy puts the page under
// a prefix it does not know) and goes to the dashboard's backend, which asks the API server with the
// token the user logged in with. The token itself never reaches this script (an HttpOnly cookie).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
const state = { view: "", timers: [], source: null, overview: null, fetchedAt: 0 };

// --- DOM helpers: text is always set as text, never parsed as HTML ------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  return fill(el, attrs, children);
}

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// the view's content (absent parts given as null are left out)
function show(...nodes) {
  main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
}

function clip(text, length) {
  return text.length > length ? text.slice(0, length - 1) + "…" : text;
}

function age(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "never";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}

function since(time) {
  const t = Date.parse(time || "");
  return Number.isNaN(t) ? "" : age((Date.now() - t) / 1000);
}

// --- talking to the backend -----------------------------------------------------------------------

async function api(path, options = {}) {
  const init = { method: options.method || "GET", credentials: "same-origin", headers: {} };
  if (init.method !== "GET") init.headers["X-Dashboard-Request"] = "1";
  if (options.body !== undefined) {
    init.headers["Content-Type"] = options.contentType || "application/json";
    init.body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { ok: false, code: 0, body: null, message: `the dashboard could not be reached: ${err}` };
  }
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  const message = body && typeof body === "object" && body.message ? body.message : (typeof body === "string" ? body : "");
  const answer = { ok: response.ok, code: response.status, body, message: message || `${response.status} ${response.statusText}` };
  if (answer.code === 401 && !options.login) showLogin(answer.message);
  return answer;
}

function k8s(path, options) {
  return api("k8s/" + path.replace(/^\//, ""), options);
}

// kube's refusal shown on the page: the code, the reason, the API server's own words
function statusBox(answer, what) {
  const title = answer.code === 403 ? "Forbidden (403)" : answer.code === 404 ? "Not found (404)" : `Error (${answer.code})`;
  return h("div", { class: "status-box", "data-code": answer.code },
    h("h2", {}, what ? `${title}: ${what}` : title), h("p", { class: "status-message" }, answer.message));
}

// --- logging in -----------------------------------------------------------------------------------

function showLogin(message) {
  stopLive();
  show();
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("login-error").textContent = message || "";
}

async function login(event) {
  event.preventDefault();
  const token = document.getElementById("token").value;
  const answer = await api("login", { method: "POST", body: { token }, login: true });
  if (!answer.ok) {
    document.getElementById("login-error").textContent = answer.message;
    return;
  }
  document.getElementById("token").value = "";
  loggedIn(answer.body.user);
  route();
}

function loggedIn(user) {
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = user ? `logged in as ${user}` : "";
}

async function logout() {
  await api("logout", { method: "POST", login: true });
  showLogin("");
}

// --- routing --------------------------------------------------------------------------------------

function stopLive() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  if (state.source) state.source.close();
  state.source = null;
  document.getElementById("details").hidden = true;
}

const VIEWS = {
  map: showMap, workloads: showWorkloads, deployment: showDeployment, services: showServices,
  nodes: showNodes, events: showEvents, pod: showPod, trace: showTrace,
};

function route() {
  if (!document.getElementById("login").hidden) return;
  stopLive();
  const hash = location.hash.replace(/^#\/?/, "") || "map";
  const [path, query] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const view = VIEWS[parts[0]] ? parts[0] : "map";
  state.view = view;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === view || (view === "deployment" && a.dataset.view === "workloads"));
  }
  show(h("p", { class: "muted" }, "loading…"));
  VIEWS[view](parts.slice(1), new URLSearchParams(query || ""));
}

// --- the architecture map -------------------------------------------------------------------------

async function showMap() {
  const answer = await api("api/overview");
  if (state.view !== "map") return;
  if (!answer.ok) {
    if (answer.code !== 401) show(statusBox(answer, "the architecture map"));
    return;
  }
  state.overview = answer.body;
  state.fetchedAt = Date.now() / 1000;
  drawMap();
  watchMap(answer.body.controlPlane.etcd.revision);
  state.timers.push(setInterval(tickAges, 1000));
}

let refreshPending = null;
function refreshMap() {
  if (refreshPending) return;
  refreshPending = setTimeout(async () => {
    refreshPending = null;
    if (state.view !== "map") return;
    const answer = await api("api/overview");
    if (state.view !== "map" || !answer.ok) return;
    state.overview = answer.body;
    state.fetchedAt = Date.now() / 1000;
    drawMap();
  }, 400);
}

// Watches through the backend; where one is refused or ends, short polling takes over.
function watchMap(revision) {
  const source = new EventSource("api/watch?resourceVersion=" + encodeURIComponent(revision || ""));
  state.source = source;
  let polling = false;
  const poll = () => {
    if (polling) return;
    polling = true;
    state.timers.push(setInterval(refreshMap, 5000));
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "ERROR" || event.type === "CLOSED") {
      note(`watch of ${event.kind}s: ${event.message}; polling every 5s instead`);
      poll();
      return;
    }
    if (event.kind === "Lease" && event.type === "MODIFIED") {
      renewLease(event);
      return;
    }
    refreshMap();
  };
  source.onerror = () => { poll(); };
}

function note(text) {
  const box = document.getElementById("map-notes");
  if (box && ![...box.children].some((li) => li.textContent === text)) box.append(h("li", {}, text));
}

function renewLease(event) {
  const o = state.overview;
  if (!o) return;
  const renewed = Date.parse(event.renewTime) / 1000;
  const ageNow = Number.isNaN(renewed) ? null : Math.max(0, Date.now() / 1000 - renewed);
  const shifted = ageNow === null ? null : ageNow + (Date.now() / 1000 - state.fetchedAt);
  if (event.namespace === "kube-node-lease") {
    const node = o.nodes.find((n) => n.name === event.name);
    if (node) node.heartbeatAgeSeconds = shifted === null ? null : shifted - (Date.now() / 1000 - state.fetchedAt);
  } else {
    for (const leader of [o.controlPlane.scheduler, o.controlPlane.controllerManager]) {
      if (leader.lease === event.name) {
        leader.holder = event.holder;
        leader.renewAgeSeconds = ageNow === null ? null : ageNow - (Date.now() / 1000 - state.fetchedAt);
      }
    }
  }
  tickAges();
}

function tickAges() {
  const elapsed = Date.now() / 1000 - state.fetchedAt;
  for (const el of document.querySelectorAll("[data-age]")) {
    const base = el.dataset.age === "" ? null : Number(el.dataset.age);
    const fresh = el.dataset.kind === "node"
      ? state.overview?.nodes.find((n) => n.name === el.dataset.name)?.heartbeatAgeSeconds
      : (el.dataset.kind === "leader"
        ? [state.overview?.controlPlane.scheduler, state.overview?.controlPlane.controllerManager]
          .find((l) => l && l.lease === el.dataset.name)?.renewAgeSeconds
        : base);
    const value = fresh === null || fresh === undefined ? null : fresh + elapsed;
    el.textContent = `${el.dataset.label}${age(value)} ago`;
  }
}

function component(x, y, w, lines, { healthy, id, cls }) {
  const height = 22 + 16 * (lines.length - 1) + 8;
  const g = s("g", { class: `component ${healthy ? "healthy" : "failed"} ${cls || ""}`, id, transform: `translate(${x},${y})` },
    s("rect", { class: "box", width: w, height, rx: 6 }),
    s("circle", { class: healthy ? "dot-ok" : "dot-bad", cx: w - 12, cy: 13, r: 5 }));
  lines.forEach((line, i) => {
    const el = line instanceof Node ? line : s("text", { class: i === 0 ? "title" : "small" }, line);
    el.setAttribute("x", 10);
    el.setAttribute("y", 18 + 16 * i);
    g.append(el);
  });
  return { g, height };
}

function ageText(label, kind, name, seconds) {
  return s("text", { class: "small", "data-age": seconds ?? "", "data-kind": kind, "data-name": name, "data-label": label },
    `${label}${age(seconds)} ago`);
}

function drawMap() {
  const o = state.overview;
  const cp = o.controlPlane;
  const width = Math.max(980, main.clientWidth - 45);
  const svg = s("svg", { id: "architecture", xmlns: SVG, width, role: "img", "aria-label": "the cluster's architecture" });
  const links = s("g", {});
  svg.append(links);
  // the control plane
  svg.append(s("rect", { class: "area", x: 5, y: 5, width: width - 10, height: 150, rx: 8 }),
    s("text", { class: "title", x: 16, y: 24 }, "control plane"));
  const cw = Math.min(220, (width - 60) / 4);
  const api = component(20, 36, cw, ["API server", cp.apiserver.healthy ? "/readyz: ok" : `/readyz: ${cp.apiserver.code}`,
    cp.apiserver.healthy ? "" : (cp.apiserver.readyz.split("\n").find((l) => l.startsWith("[-]")) || "")],
  { healthy: cp.apiserver.healthy, id: "apiserver" });
  const etcd = component(40 + cw, 36, cw, ["etcd", `revision ${cp.etcd.revision}`, `size: ${cp.etcd.size}`],
    { healthy: cp.apiserver.healthy, id: "etcd" });
  const leaders = [["scheduler", cp.scheduler], ["controller-manager", cp.controllerManager]].map(([name, l], i) =>
    component(60 + cw * (2 + i) + 20 * i, 36, cw, [name, `leader: ${clip(l.holder || "none", 26)}`,
      ageText("lease renewed ", "leader", l.lease, l.renewAgeSeconds)], { healthy: l.healthy, id: name }));
  for (const c of [api, etcd, ...leaders]) svg.append(c.g);
  const addonText = cp.addons.length ? cp.addons.map((a) => `${a.name} ${a.ready}/${a.wanted}`).join(", ") : "none (or not readable)";
  svg.append(s("text", { class: "small", x: 20, y: 140, id: "addons" }, `add-ons: ${addonText}`));
  links.append(s("line", { class: "link", x1: 20 + cw, y1: 60, x2: 40 + cw, y2: 60 }));
  // the nodes
  const nodeWidth = 380;
  const perRow = Math.max(1, Math.floor((width - 20) / (nodeWidth + 20)));
  let y = 190;
  let rowHeight = 0;
  o.nodes.forEach((node, i) => {
    const col = i % perRow;
    if (col === 0 && i > 0) { y += rowHeight + 30; rowHeight = 0; }
    const x = 20 + col * (nodeWidth + 20);
    const lines = [
      `node ${node.name}`,
      `Ready: ${node.ready}${node.reason ? ` (${node.reason})` : ""}`,
      ageText("kubelet heartbeat ", "node", node.name, node.heartbeatAgeSeconds),
      `kubelet ${node.kubelet || "?"}  ·  ${node.internalIP}`,
      `proxy ${node.proxy || "not reported"}`,
      `containerd ${node.containerd.replace(/^containerd:\/\//, "") || "not reported"}`,
      `pods (${node.pods.length}) on ${node.podCIDR || "no pod CIDR"}:`,
      ...node.pods.map((p) => s("text", { class: "small pod", "data-pod": `${p.namespace}/${p.name}`, "data-ip": p.ip },
        `${p.ready ? "●" : "○"} ${clip(`${p.namespace}/${p.name}`, 44)}  ${p.ip || "(no IP)"}`)),
    ];
    const c = component(x, y, nodeWidth, lines, { healthy: !node.failed, id: `node-${node.name}`, cls: "node" });
    c.g.setAttribute("data-node", node.name);
    if (node.failed) c.g.append(s("title", {}, `${node.name}: Ready is ${node.ready}. ${node.message}`));
    svg.append(c.g);
    links.append(s("line", { class: "link", x1: 20 + cw / 2, y1: 110, x2: x + nodeWidth / 2, y2: y }));
    rowHeight = Math.max(rowHeight, c.height);
  });
  if (!o.nodes.length) svg.append(s("text", { x: 20, y: y + 20 }, "no nodes registered (or none readable)"));
  svg.setAttribute("height", y + rowHeight + 20);
  const notes = h("ul", { id: "map-notes", class: "error" },
    Object.entries(o.errors).map(([what, message]) => h("li", {}, `${what}: ${message}`)));
  const pending = o.pending.length
    ? h("p", {}, `unscheduled pods: ${o.pending.map((p) => `${p.namespace}/${p.name}`).join(", ")}`) : null;
  show(h("h2", {}, "Architecture"), notes, svg, pending);
}

// --- workloads ------------------------------------------------------------------------------------

function link(href, text) { return h("a", { href }, text); }

function table(headers, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows));
}

async function showWorkloads() {
  const answer = await k8s("apis/apps/v1/deployments");
  if (!answer.ok) { if (answer.code !== 401) show(statusBox(answer, "deployments")); return; }
  const rows = answer.body.items.map((d) => h("tr", { "data-deployment": `${d.metadata.namespace}/${d.metadata.name}` },
    h("td", {}, d.metadata.namespace),
    h("td", {}, link(`#/deployment/${encodeURIComponent(d.metadata.namespace)}/${encodeURIComponent(d.metadata.name)}`, d.metadata.name)),
    h("td", {}, `${d.status?.readyReplicas || 0}/${d.spec.replicas ?? 1}`),
    h("td", {}, since(d.metadata.creationTimestamp))));
  show(h("h2", {}, "Deployments"), table(["namespace", "name", "ready", "age"], rows, { id: "deployments" }));
}

function owned(items, owner) {
  return items.filter((x) => (x.metadata.ownerReferences || []).some((r) => r.uid === owner.metadata.uid));
}

function podRow(p) {
  const ready = (p.status?.conditions || []).some((c) => c.type === "Ready" && c.status === "True");
  return h("tr", { "data-pod": p.metadata.name },
    h("td", {}, link(`#/pod/${encodeURIComponent(p.metadata.namespace)}/${encodeURIComponent(p.metadata.name)}`, p.metadata.name)),
    h("td", {}, p.status?.phase || "Pending"), h("td", {}, ready ? "True" : "False"),
    h("td", {}, p.status?.podIP || ""), h("td", {}, p.spec.nodeName || "(not scheduled)"));
}

async function showDeployment([ns, name]) {
  const base = `apis/apps/v1/namespaces/${encodeURIComponent(ns)}`;
  const [dep, rss, pods] = await Promise.all([
    k8s(`${base}/deployments/${encodeURIComponent(name)}`), k8s(`${base}/replicasets`),
    k8s(`api/v1/namespaces/${encodeURIComponent(ns)}/pods`)]);
  if (state.view !== "deployment") return;
  for (const [answer, what] of [[dep, `deployment ${ns}/${name}`], [rss, "replicasets"], [pods, "pods"]]) {
    if (!answer.ok) { if (answer.code !== 401) show(statusBox(answer, what)); return; }
  }
  const d = dep.body;
  const sets = owned(rss.body.items, d).sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? 1 : -1));
  const path = `/${base}/deployments/${encodeURIComponent(name)}`;
  const blocks = sets.map((rs) => h("div", { class: "panel", "data-replicaset": rs.metadata.name },
    h("h3", {}, `ReplicaSet ${rs.metadata.name}`),
    h("p", { class: "muted" }, `${rs.status?.readyReplicas || 0}/${rs.spec.replicas ?? 0} ready · revision `
      + `${rs.metadata.annotations?.["deployment.kubernetes.io/revision"] || "?"}`),
    table(["pod", "phase", "ready", "IP", "node"], owned(pods.body.items, rs).map(podRow))));
  show(
    h("h2", {}, `Deployment ${ns}/${name}`),
    h("p", {}, `${d.status?.readyReplicas || 0}/${d.spec.replicas ?? 1} ready · image `
      + `${(d.spec.template.spec.containers || []).map((c) => c.image).join(", ")}`),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "scale", onclick: () => scaleDeployment(ns, name, d.spec.replicas ?? 1) }, "Scale…"),
      h("button", { type: "button", class: "danger", id: "delete", onclick: () => deleteObject(path, `deployment ${ns}/${name}`, "#/workloads") }, "Delete…"),
      h("a", { href: `#/trace?path=${encodeURIComponent(path)}` }, "Trace")),
    h("div", { id: "action-result" }),
    ...blocks);
}

function confirmDialog(text, extra) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-extra").replaceChildren(...(extra ? [extra] : []));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function scaleDeployment(ns, name, current) {
  const input = h("input", { type: "number", min: 0, value: current, id: "replicas" });
  if (!(await confirmDialog(`Scale deployment ${ns}/${name} to how many replicas?`, input))) return;
  const replicas = Number(input.value);
  const answer = await k8s(`apis/apps/v1/namespaces/${encodeURIComponent(ns)}/deployments/${encodeURIComponent(name)}/scale`, {
    method: "PATCH", body: { spec: { replicas } }, contentType: "application/merge-patch+json" });
  if (!answer.ok) { document.getElementById("action-result")?.replaceChildren(statusBox(answer, "scale")); return; }
  route();
}

async function deleteObject(path, what, next) {
  if (!(await confirmDialog(`Delete ${what}? This cannot be undone.`))) return;
  const answer = await k8s(path, { method: "DELETE" });
  if (!answer.ok) { document.getElementById("action-result")?.replaceChildren(statusBox(answer, "delete")); return; }
  location.hash = next;
}

// --- services, nodes, events ----------------------------------------------------------------------

async function showServices() {
  const [svcs, slices] = await Promise.all([k8s("api/v1/services"), k8s("apis/discovery.k8s.io/v1/endpointslices")]);
  if (state.view !== "services") return;
  if (!svcs.ok) { if (svcs.code !== 401) show(statusBox(svcs, "services")); return; }
  const byService = {};
  for (const slice of slices.ok ? slices.body.items : []) {
    const key = `${slice.metadata.namespace}/${slice.metadata.labels?.["kubernetes.io/service-name"] || ""}`;
    (byService[key] = byService[key] || []).push(slice);
  }
  const rows = svcs.body.items.map((svc) => {
    const key = `${svc.metadata.namespace}/${svc.metadata.name}`;
    const endpoints = (byService[key] || []).flatMap((sl) => (sl.endpoints || []).map((e) =>
      `${e.addresses.join(",")}${e.conditions?.ready === false ? " (not ready)" : ""}${e.targetRef ? ` ${e.targetRef.name}` : ""}`));
    return h("tr", { "data-service": key }, h("td", {}, svc.metadata.namespace), h("td", {}, svc.metadata.name),
      h("td", {}, svc.spec.type || "ClusterIP"), h("td", {}, svc.spec.clusterIP || ""),
      h("td", {}, (svc.spec.ports || []).map((p) => `${p.name ? p.name + " " : ""}${p.port}/${p.protocol || "TCP"}`
        + `${p.nodePort ? ":" + p.nodePort : ""}`).join(", ")),
      h("td", {}, endpoints.length ? endpoints.join("; ") : h("span", { class: "muted" }, "none")),
      h("td", {}, (byService[key] || []).map((sl) => sl.metadata.name).join(", ")));
  });
  show(h("h2", {}, "Services and their EndpointSlices"),
    slices.ok ? null : statusBox(slices, "endpointslices"),
    table(["namespace", "name", "type", "cluster IP", "ports", "endpoints", "EndpointSlices"], rows, { id: "services" }));
}

async function showNodes() {
  const [nodes, leases] = await Promise.all([k8s("api/v1/nodes"), k8s("apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")]);
  if (state.view !== "nodes") return;
  if (!nodes.ok) { if (nodes.code !== 401) show(statusBox(nodes, "nodes")); return; }
  const renew = Object.fromEntries((leases.ok ? leases.body.items : []).map((l) => [l.metadata.name, l.spec.renewTime]));
  const rows = nodes.body.items.map((n) => {
    const ready = (n.status?.conditions || []).find((c) => c.type === "Ready");
    const info = n.status?.nodeInfo || {};
    return h("tr", { "data-node": n.metadata.name }, h("td", {}, n.metadata.name),
      h("td", { class: ready?.status === "True" ? "ok" : "bad" }, `${ready?.status || "Unknown"} ${ready?.reason || ""}`),
      h("td", {}, renew[n.metadata.name] ? `${since(renew[n.metadata.name])} ago` : "no lease"),
      h("td", {}, (n.status?.addresses || []).map((a) => `${a.type} ${a.address}`).join(", ")),
      h("td", {}, n.spec?.podCIDR || ""), h("td", {}, info.kubeletVersion || ""),
      h("td", {}, info.containerRuntimeVersion || ""), h("td", {}, n.spec?.unschedulable ? "cordoned" : ""),
      h("td", {}, (n.spec?.taints || []).map((t) => `${t.key}:${t.effect}`).join(", ")));
  });
  show(h("h2", {}, "Nodes"), leases.ok ? null : statusBox(leases, "node leases"),
    table(["name", "Ready", "heartbeat", "addresses", "pod CIDR", "kubelet", "runtime", "", "taints"], rows, { id: "nodes" }));
}

async function showEvents() {
  const answer = await k8s("api/v1/events");
  if (state.view !== "events") return;
  if (!answer.ok) { if (answer.code !== 401) show(statusBox(answer, "events")); return; }
  const when = (e) => e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp || "";
  const items = answer.body.items.sort((a, b) => (when(a) < when(b) ? 1 : -1)).slice(0, 300);
  const rows = items.map((e) => h("tr", {}, h("td", {}, `${since(when(e))} ago`), h("td", {}, e.type || ""),
    h("td", {}, e.reason || ""), h("td", {}, `${e.involvedObject?.kind || ""}/${e.involvedObject?.name || ""}`),
    h("td", {}, e.metadata.namespace || ""), h("td", {}, e.message || ""), h("td", {}, e.source?.component || e.reportingComponent || ""),
    h("td", {}, e.count || 1)));
  show(h("h2", {}, "Events"), table(["age", "type", "reason", "object", "namespace", "message", "from", "count"], rows, { id: "events" }));
}

// --- a pod and its logs ---------------------------------------------------------------------------

async function showPod([ns, name], query) {
  const path = `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`;
  const pod = await k8s(path);
  if (state.view !== "pod") return;
  if (!pod.ok) { if (pod.code !== 401) show(statusBox(pod, `pod ${ns}/${name}`)); return; }
  const p = pod.body;
  const containers = (p.spec.containers || []).map((c) => c.name);
  const chosen = query.get("container") || containers[0];
  const statuses = (p.status?.containerStatuses || []).map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.image),
    h("td", {}, Object.keys(c.state || {})[0] || ""), h("td", {}, c.ready ? "True" : "False"), h("td", {}, c.restartCount ?? 0)));
  const logs = h("pre", { class: "logs", id: "logs" }, "loading…");
  show(
    h("h2", {}, `Pod ${ns}/${name}`),
    h("p", {}, `${p.status?.phase || "Pending"} on ${p.spec.nodeName || "(not scheduled)"} · IP ${p.status?.podIP || "none"}`),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", id: "delete", onclick: () => deleteObject(path, `pod ${ns}/${name}`, "#/map") }, "Delete…"),
      h("a", { href: `#/trace?path=${encodeURIComponent(path)}` }, "Trace")),
    h("div", { id: "action-result" }),
    table(["container", "image", "state", "ready", "restarts"], statuses),
    h("h3", {}, "Logs ", containers.map((c) => c === chosen ? h("strong", {}, ` ${c} `)
      : link(`#/pod/${encodeURIComponent(ns)}/${encodeURIComponent(name)}?container=${encodeURIComponent(c)}`, ` ${c} `))),
    logs);
  const answer = await k8s(`${path}/log?tailLines=500&container=${encodeURIComponent(chosen || "")}`);
  if (!answer.ok) logs.replaceWith(statusBox(answer, "logs"));
  else logs.textContent = answer.body || "(no output)";
}

// --- a trace --------------------------------------------------------------------------------------

const COLOURS = ["#2e5aac", "#12805c", "#b54708", "#7a2e9e", "#c0362c", "#0e7490", "#6b7280", "#a16207"];

function showDetails(title, attributes, extra) {
  const panel = document.getElementById("details");
  const rows = Object.entries(attributes || {}).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, JSON.stringify(v))));
  panel.replaceChildren(h("button", { type: "button", onclick: () => { panel.hidden = true; } }, "close"),
    h("h3", {}, title), extra ? h("p", {}, extra) : null, rows.length ? table(["attribute", "value"], rows) : h("p", { class: "muted" }, "no attributes"));
  panel.hidden = false;
}

async function showTrace(_parts, query) {
  const path = query.get("path") || "";
  const answer = await api("api/trace?path=" + encodeURIComponent(path));
  if (state.view !== "trace") return;
  if (!answer.ok) { if (answer.code !== 401) show(statusBox(answer, `the trace of ${path}`)); return; }
  const t = answer.body;
  const colour = Object.fromEntries(t.services.map((name, i) => [name, COLOURS[i % COLOURS.length]]));
  const width = Math.max(980, main.clientWidth - 45);
  const labelWidth = 330;
  const barArea = width - labelWidth - 90;
  const rowHeight = 22;
  const scale = (ms) => (t.totalMs > 0 ? (ms / t.totalMs) * barArea : 0);
  const svg = s("svg", { id: "timeline", xmlns: SVG, width, height: 40 + rowHeight * t.rows.length + 10 });
  for (let i = 0; i <= 4; i++) {
    const x = labelWidth + (barArea * i) / 4;
    svg.append(s("line", { class: "grid", x1: x, y1: 20, x2: x, y2: 40 + rowHeight * t.rows.length }),
      s("text", { class: "small", x, y: 14, "text-anchor": "middle" }, `${((t.totalMs * i) / 4).toFixed(1)} ms`));
  }
  t.rows.forEach((row, i) => {
    const y = 30 + i * rowHeight;
    const x = labelWidth + scale(row.offsetMs);
    const w = Math.max(2, scale(row.durationMs));
    const g = s("g", { class: "span", "data-span": row.spanId, "data-service": row.service });
    g.append(s("text", { x: 6 + row.depth * 14, y: y + 14 }, `${row.service}: ${row.name}`));
    const bar = s("rect", { class: `bar ${row.status === "ERROR" ? "error" : ""}`, x, y: y + 3, width: w, height: rowHeight - 8, rx: 2,
      fill: colour[row.service],
      onclick: () => showDetails(`${row.service}: ${row.name}`, row.attributes,
        `${row.instance ? row.instance + " · " : ""}start +${row.offsetMs.toFixed(2)} ms · took ${row.durationMs.toFixed(2)} ms`
        + `${row.status === "ERROR" ? ` · ERROR: ${row.message}` : ""}`) },
    s("title", {}, `${row.name}: ${row.durationMs.toFixed(2)} ms`));
    g.append(bar, s("text", { class: "small", x: x + w + 4, y: y + 14 }, `${row.durationMs.toFixed(1)} ms`));
    for (const mark of row.events) {
      const mx = labelWidth + scale(mark.offsetMs);
      g.append(s("path", { class: "mark", d: `M${mx} ${y + 2} l5 8 l-5 8 l-5 -8 z`,
        onclick: () => showDetails(`event "${mark.name}" of ${row.name}`, mark.attributes, `at +${mark.offsetMs.toFixed(2)} ms`) },
      s("title", {}, mark.name)));
    }
    svg.append(g);
  });
  const o = t.object;
  show(
    h("h2", {}, `Trace of ${o.kind} ${o.namespace ? o.namespace + "/" : ""}${o.name}`),
    h("p", { class: "muted" }, `trace ${t.traceId} · ${t.rows.length} spans · ${t.totalMs.toFixed(1)} ms · click a bar or a mark for its attributes`),
    h("p", { class: "legend" }, t.services.map((name) => {
      const swatch = h("i", {});
      swatch.style.background = colour[name]; // the CSSOM, which the Content-Security-Policy allows
      return h("span", {}, swatch, name);
    })),
    svg);
}

// --- start ----------------------------------------------------------------------------------------

document.getElementById("login-form").addEventListener("submit", login);
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);
(async () => {
  const who = await api("api/whoami");
  if (who.ok) { loggedIn(who.body.user); route(); }
})();
