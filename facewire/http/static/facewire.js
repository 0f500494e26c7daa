// Shared by facewire's pages: the bearer token, API calls with JSON errors, and small helpers.
"use strict";

const TOKEN_KEY = "facewire-token";

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// The token field in the header: kept for this browser tab only (sessionStorage).
function setupToken() {
  const input = document.getElementById("token");
  if (!input) return;
  input.value = token();
  input.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, input.value.trim()));
}

// fetch() with the token; resolves to the Response, or throws an Error with the API's message.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", "Bearer " + token());
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  let message = response.status + " " + response.statusText;
  try {
    const body = await response.json();
    if (body.error) message = body.error.message + " (" + body.error.code + ")";
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) {
    message += ": enter the gateway's token under \u201cToken\u201d at the top";
    const details = document.querySelector("header details");
    if (details) details.open = true;
  }
  throw new Error(message);
}

function imageForm(file) {
  const form = new FormData();
  form.append("image", file);
  return form;
}

function showStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function cell(row, text, numeric = false) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

function fixed(value, digits) {
  return value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
}

document.addEventListener("DOMContentLoaded", setupToken);
