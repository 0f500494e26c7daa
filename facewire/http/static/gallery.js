// The gallery page: list people, add a photo (a new person or another photo), remove a person.
"use strict";

function initials(name) {
  const words = name.trim().split(/[\s_\-.]+/).filter(Boolean);
  return words.slice(0, 2).map((word) => Array.from(word)[0].toUpperCase()).join("") || "?";
}

async function refresh() {
  const list = document.getElementById("people");
  try {
    const { people } = await (await api("/v1/people")).json();
    list.replaceChildren();
    for (const name of Object.keys(people).sort((a, b) => a.localeCompare(b))) {
      list.append(personItem(name, people[name]));
    }
    if (!list.children.length) showStatus("The gallery is empty: add someone above.");
  } catch (error) {
    showStatus("Cannot list the gallery: " + error.message, true);
  }
}

function personItem(name, photos) {
  const item = document.createElement("li");
  item.className = "person";
  item.dataset.name = name;
  const badge = document.createElement("span");
  badge.className = "initials";
  badge.textContent = initials(name);
  showThumbnail(badge, name);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = name;
  const count = document.createElement("small");
  count.textContent = photos + (photos === 1 ? " photo" : " photos");
  who.append(count);
  const actions = document.createElement("span");
  actions.className = "actions";
  const add = document.createElement("label");
  add.className = "button add";
  add.textContent = "Add a photo";
  const file = document.createElement("input");
  file.type = "file";
  file.accept = "image/jpeg,image/png,image/webp,image/bmp";
  file.addEventListener("change", () => { if (file.files.length) enrol(name, file.files[0]); });
  add.append(file);
  const remove = document.createElement("button");
  remove.className = "danger remove";
  remove.type = "button";
  remove.textContent = "Remove";
  remove.addEventListener("click", () => removePerson(name));
  actions.append(add, remove);
  item.append(badge, who, actions);
  return item;
}

// The person's thumbnail in place of their initials (fetched with the token, shown from a blob).
async function showThumbnail(badge, name) {
  try {
    const blob = await (await api("/v1/people/" + encodeURIComponent(name) + "/photo")).blob();
    const img = document.createElement("img");
    img.className = "thumbnail";
    img.alt = name;
    img.src = URL.createObjectURL(blob);
    badge.replaceChildren(img);
  } catch (_) { /* keep the initials */ }
}

async function enrol(name, file) {
  showStatus("Adding " + file.name + " to " + name + "\u2026");
  try {
    const body = await (await api("/v1/people/" + encodeURIComponent(name),
                                  { method: "POST", body: imageForm(file) })).json();
    showStatus("Added a photo of " + body.name + ": " + body.photos + " now.");
    await refresh();
    return true;
  } catch (error) {
    showStatus("Cannot add " + file.name + " to " + name + ": " + error.message, true);
    return false;
  }
}

async function removePerson(name) {
  if (!window.confirm("Remove " + name + " and every photo of them?")) return;
  try {
    const body = await (await api("/v1/people/" + encodeURIComponent(name), { method: "DELETE" })).json();
    showStatus("Removed " + body.name + " (" + body.removed + " photos).");
  } catch (error) {
    showStatus("Cannot remove " + name + ": " + error.message, true);
  }
  await refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("enrol");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("enrol-name").value.trim();
    const photo = document.getElementById("enrol-photo");
    if (await enrol(name, photo.files[0])) form.reset();
  });
  refresh();
});
