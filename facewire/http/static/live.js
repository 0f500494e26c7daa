// The live page: camera frames as JPEGs over a WebSocket, each answer drawn on the frame it belongs to.
"use strict";

const live = { socket: null, stream: null, frame: null, answered: [], count: 0 };
const SEND_WIDTH = 640;

async function start() {
  showStatus("Asking for the camera\u2026");
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: false });
  } catch (error) {
    showStatus("No camera: " + error.message + " (the page must be on localhost or https)", true);
    return;
  }
  const video = document.getElementById("camera");
  video.srcObject = live.stream;
  await video.play();
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const protocols = token() ? ["facewire", "bearer." + token()] : ["facewire"];
  live.socket = new WebSocket(scheme + location.host + "/v1/live", protocols);
  live.socket.binaryType = "arraybuffer";
  live.socket.onopen = () => { showStatus("Streaming."); sendFrame(); };
  live.socket.onmessage = (event) => answered(JSON.parse(event.data));
  live.socket.onclose = (event) => {
    if (live.stream) showStatus("The connection closed" + (event.code === 1006 ? " (wrong or missing token?)" : "") + ".", true);
    stop();
  };
  document.getElementById("start").disabled = true;
  document.getElementById("stop").disabled = false;
}

function stop() {
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  if (live.socket && live.socket.readyState <= WebSocket.OPEN) live.socket.close();
  document.getElementById("start").disabled = false;
  document.getElementById("stop").disabled = true;
}

// Grab the camera's current frame, keep it to draw on, and send it as a JPEG.
function sendFrame() {
  if (!live.stream || live.socket.readyState !== WebSocket.OPEN) return;
  const video = document.getElementById("camera");
  const scale = Math.min(1, SEND_WIDTH / (video.videoWidth || SEND_WIDTH));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round((video.videoWidth || 640) * scale);
  canvas.height = Math.round((video.videoHeight || 360) * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  live.frame = canvas;
  canvas.toBlob((blob) => live.socket.send(blob), "image/jpeg", 0.8);
}

function answered(reply) {
  const now = performance.now();
  if (reply.error) {
    showStatus("Frame refused: " + reply.error.message + " (" + reply.error.code + ")", true);
  } else {
    draw(live.frame, reply.faces);
    live.count += 1;
    live.answered.push(now);
    live.answered = live.answered.filter((t) => now - t < 2000);
    const seconds = live.answered.length > 1 ? (now - live.answered[0]) / 1000 : 0;
    document.getElementById("fps").textContent = seconds ? ((live.answered.length - 1) / seconds).toFixed(1) : "0.0";
    document.getElementById("frames").textContent = live.count;
    document.getElementById("names").textContent = reply.faces.map((face) => face.name).join(", ") || "\u2013";
  }
  sendFrame();
}

function draw(frame, faces) {
  const view = document.getElementById("view");
  view.width = frame.width;
  view.height = frame.height;
  const context = view.getContext("2d");
  context.drawImage(frame, 0, 0);
  context.lineWidth = 2;
  context.font = "bold 14px system-ui, sans-serif";
  context.textBaseline = "top";
  for (const face of faces) {
    const [top, right, bottom, left] = face.box;
    const known = face.name !== "Unknown";
    context.strokeStyle = known ? "#22c55e" : "#ef4444";
    context.strokeRect(left, top, right - left, bottom - top);
    const label = known ? face.name + " " + face.distance.toFixed(2) : face.name;
    const width = context.measureText(label).width + 8;
    context.fillStyle = context.strokeStyle;
    context.fillRect(left - 1, bottom, width, 20);
    context.fillStyle = "#fff";
    context.fillText(label, left + 3, bottom + 3);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("start").addEventListener("click", start);
  document.getElementById("stop").addEventListener("click", stop);
});
