// The photo page: one upload to /v1/annotate gives the annotated JPEG and, in a header, the faces.
"use strict";

async function recognise(file) {
  showStatus("Looking at " + file.name + "\u2026");
  try {
    const response = await api("/v1/annotate", { method: "POST", body: imageForm(file) });
    const result = JSON.parse(response.headers.get("X-Facewire-Result"));
    const image = document.getElementById("annotated");
    if (image.src) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(await response.blob());
    const rows = document.querySelector("#faces tbody");
    rows.replaceChildren();
    result.faces.forEach((face, index) => {
      const row = rows.insertRow();
      row.className = "face";
      cell(row, index + 1, true);
      cell(row, face.name).className = "name";
      cell(row, fixed(face.distance, 3), true);
      cell(row, fixed(face.confidence, 2), true);
      cell(row, face.box.join(", "), true);
    });
    document.getElementById("result").hidden = false;
    const count = result.faces.length;
    showStatus(file.name + ": " + (count ? count + (count === 1 ? " face" : " faces") : "no face") +
               " in " + Math.round(result.timings_ms.gateway) + " ms");
  } catch (error) {
    showStatus(file.name + ": " + error.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("photo");
  const drop = document.getElementById("drop");
  input.addEventListener("change", () => { if (input.files.length) recognise(input.files[0]); });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) recognise(event.dataTransfer.files[0]);
  });
});
