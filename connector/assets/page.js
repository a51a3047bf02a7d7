// The sign-in page's behaviour: copy buttons, and feed keys through /api/keys.
// Every state-changing call carries the page's CSRF token.
"use strict";

function copyText(id, button) {
  const text = document.getElementById(id).textContent;
  navigator.clipboard.writeText(text).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  }, () => { button.textContent = "Select and copy"; });
}

function showError(message) {
  const el = document.getElementById("key-error");
  el.textContent = message;
  el.hidden = false;
}

async function createKey(event) {
  event.preventDefault();
  const form = event.target;
  const name = form.elements.name.value.trim();
  const res = await fetch("/api/keys", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
    body: JSON.stringify({ name: name }),
  });
  if (res.status !== 201) {
    showError("The key could not be created (" + res.status + ").");
    return;
  }
  const key = await res.json();
  document.getElementById("new-key-value").textContent = key.key;
  document.getElementById("new-key").hidden = false;
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
  form.reset();
}

async function revokeKey(button) {
  const res = await fetch("/api/keys/" + encodeURIComponent(button.dataset.keyId), {
    method: "DELETE",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": button.dataset.csrf },
  });
  if (res.status !== 204) {
    showError("The key could not be revoked (" + res.status + ").");
    return;
  }
  button.closest("tr").remove();
}

document.addEventListener("click", (event) => {
  const t = event.target;
  if (t.matches("button.copy")) copyText(t.dataset.copy, t);
  if (t.matches("button.revoke")) revokeKey(t);
});

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("create-key");
  if (form) form.addEventListener("submit", createKey);
});
