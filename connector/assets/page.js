// The sign-in page's behaviour: copy buttons, feed keys through /api/keys,
// and each source's tables through /api/sources/{name}/entity-sets. Every
// call that acts with the user's session carries the page's CSRF token.
"use strict";

const unreachable = "The bridge could not be reached. Check your connection and try again.";

// problem says in a plain sentence why a call to the bridge failed; what
// is the action that failed ("created", "revoked", "listed").
function problem(status, what) {
  switch (status) {
    case 400: return "Give the key a name of 1 to 100 characters.";
    case 401: return "Your sign-in has ended. Reload the page and sign in again.";
    case 403: return "This page is out of date. Reload it and try again.";
    case 409: return "You hold as many keys as one user may. Revoke a key you no longer use, then try again.";
    case 429: return "Too many requests just now. Wait a minute and try again.";
    case 502: case 503: case 504:
      return "The bridge cannot reach a service it needs right now. Try again in a minute.";
  }
  return "The key could not be " + what + ". Reload the page and try again.";
}

function say(id, message) {
  const el = document.getElementById(id);
  el.textContent = message;
  el.hidden = !message;
}

function clearMessages() {
  say("key-error", "");
  say("key-notice", "");
}

// selectText selects an element's text, so the user can copy it with the
// keyboard where the clipboard API is missing or refused.
function selectText(el) {
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}

function copyText(id, button) {
  const el = document.getElementById(id);
  const fallback = () => {
    selectText(el);
    button.textContent = "Selected: press Ctrl+C";
    setTimeout(() => { button.textContent = "Copy"; }, 4000);
  };
  if (!navigator.clipboard || !navigator.clipboard.writeText) {
    fallback();
    return;
  }
  navigator.clipboard.writeText(el.textContent).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  }, fallback);
}

// showKeyCount shows the empty-table sentence when no key is left.
function showKeyCount() {
  const rows = document.querySelectorAll("#key-list tbody tr").length;
  document.getElementById("no-keys").hidden = rows > 0;
  document.getElementById("key-table").hidden = rows === 0;
}

async function createKey(event) {
  event.preventDefault();
  clearMessages();
  const form = event.target;
  const name = form.elements.name.value.trim();
  let res;
  try {
    res = await fetch("/api/keys", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
      body: JSON.stringify({ name: name }),
    });
  } catch (e) {
    say("key-error", unreachable);
    return;
  }
  if (res.status !== 201) {
    say("key-error", problem(res.status, "created"));
    return;
  }
  const key = await res.json();
  const banner = document.getElementById("new-key");
  document.getElementById("new-key-value").textContent = key.key;
  banner.dataset.keyId = key.id;
  banner.hidden = false;
  const row = document.createElement("tr");
  row.dataset.keyId = key.id;
  for (const text of [key.name, key.created_at.replace("T", " ").slice(0, 16) + " UTC", "never"]) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "revoke";
  button.dataset.keyId = key.id;
  button.dataset.csrf = form.dataset.csrf;
  button.textContent = "Revoke";
  td.appendChild(button);
  row.appendChild(td);
  document.querySelector("#key-list tbody").appendChild(row);
  showKeyCount();
  form.reset();
}

// removeKey takes a revoked key off the page, and off the one-time banner
// when the banner shows it.
function removeKey(row, id) {
  row.remove();
  const banner = document.getElementById("new-key");
  if (banner.dataset.keyId === id) {
    banner.hidden = true;
    document.getElementById("new-key-value").textContent = "";
    delete banner.dataset.keyId;
  }
  showKeyCount();
}

async function revokeKey(button) {
  clearMessages();
  const row = button.closest("tr");
  const id = button.dataset.keyId;
  const name = row.cells[0].textContent;
  if (!window.confirm("Revoke the key \u201c" + name + "\u201d? Excel and Power BI can no longer read your feeds with it.")) {
    return;
  }
  let res;
  try {
    res = await fetch("/api/keys/" + encodeURIComponent(id), {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": button.dataset.csrf },
    });
  } catch (e) {
    say("key-error", unreachable);
    return;
  }
  if (res.status === 404) {
    // Unknown to the bridge: revoked already, here or in another window.
    removeKey(row, id);
    say("key-notice", "The key \u201c" + name + "\u201d was already revoked.");
    return;
  }
  if (res.status !== 204) {
    say("key-error", problem(res.status, "revoked"));
    return;
  }
  removeKey(row, id);
  say("key-notice", "The key \u201c" + name + "\u201d is revoked.");
}

// tablesProblem says in a plain sentence why a source's tables could not
// be listed.
function tablesProblem(status) {
  switch (status) {
    case 401: return "The tables could not be listed with your sign-in. Reload the page and sign in again; a source with its own accounts lists its tables in Excel only.";
    case 403: return "The source does not let your account list its tables.";
    case 404: return "The source has no list of tables at its address.";
    case 429: return "Too many requests just now. Wait a minute and try again.";
  }
  return "The source's tables could not be read just now. Try again later.";
}

async function loadTables(details) {
  if (details.dataset.loaded || details.dataset.loading) return;
  details.dataset.loading = "1";
  const body = details.querySelector(".tables-body");
  body.textContent = "Loading the tables\u2026";
  let res;
  try {
    res = await fetch("/api/sources/" + encodeURIComponent(details.dataset.source) + "/entity-sets", {
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": details.dataset.csrf },
    });
  } catch (e) {
    res = null;
  }
  delete details.dataset.loading;
  const fail = (message) => {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = message;
    body.replaceChildren(p); // not marked loaded: opening it again retries
  };
  if (res === null) {
    fail(unreachable);
    return;
  }
  if (res.status !== 200) {
    fail(tablesProblem(res.status));
    return;
  }
  const sets = await res.json();
  details.dataset.loaded = "1";
  if (sets.length === 0) {
    body.textContent = "This source lists no tables.";
    return;
  }
  const list = document.createElement("ul");
  for (const set of sets) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = set.odc_url;
    link.textContent = set.name;
    link.title = "Excel connection file that loads " + set.name;
    item.append(link, " (Excel .odc)");
    list.appendChild(item);
  }
  body.replaceChildren(list);
}

document.addEventListener("click", (event) => {
  const t = event.target;
  if (t.matches("button.copy")) copyText(t.dataset.copy, t);
  if (t.matches("button.revoke")) revokeKey(t);
});

// toggle does not bubble; it is caught on its way down.
document.addEventListener("toggle", (event) => {
  const t = event.target;
  if (t.matches && t.matches("details.tables") && t.open) loadTables(t);
}, true);

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("create-key");
  if (form) form.addEventListener("submit", createKey);
});
