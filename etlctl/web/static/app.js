// etlctl web admin: the two live parts of the pages, in plain JavaScript.
"use strict";

function text(id, value) {
  const node = document.getElementById(id);
  if (node) node.textContent = value;
}

// Run page: server-sent events of the run until it ends, then the page again (log, result).
function followRun(root) {
  const runId = root.dataset.run;
  const source = new EventSource(`/api/v1/runs/${encodeURIComponent(runId)}/events`);
  source.addEventListener("run", (message) => {
    const run = JSON.parse(message.data);
    const status = document.getElementById("status");
    status.textContent = run.status;
    status.className = `status ${run.status}`;
    text("extracted", run.records_extracted.toLocaleString("en"));
    text("loaded", run.records_loaded.toLocaleString("en"));
    text("skipped", run.records_skipped.toLocaleString("en"));
    const figures = run.progress || {};
    const bar = document.getElementById("progress");
    if (figures.percent !== undefined && figures.percent !== null) {
      bar.value = figures.percent;
      text("percent", `${figures.percent}%`);
    }
    if (figures.rows_per_second) text("rate", `${figures.rows_per_second.toLocaleString("en")} rows/s`);
    if (run.error) text("error", run.error);
  });
  source.addEventListener("end", () => {
    source.close();
    window.location.reload();
  });
}

// Connection form: what a schedule means and when it fires next, as it is typed.
function previewSchedule(input) {
  const target = document.getElementById(input.dataset.preview);
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const answer = await fetch(`/api/v1/schedules/preview?schedule=${encodeURIComponent(input.value)}`);
      const body = await answer.json();
      if (!answer.ok) {
        target.textContent = body.error.message;
        target.className = "help error";
        return;
      }
      const next = body.next_runs.map((moment) => moment.replace("T", " ").slice(0, 16)).join(", ");
      target.textContent = next ? `${body.description}; next: ${next} UTC` : body.description;
      target.className = "help";
    }, 250);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run && run.dataset.live === "true") followRun(run);
  document.querySelectorAll("input[data-preview]").forEach(previewSchedule);
});
