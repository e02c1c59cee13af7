// A task's actions, shared by an instance's task list and the inbox: complete or fail
// a pending HUMAN task, retry a failed one. Each calls the public /v1/tasks routes.

import { api } from "./api.js";
import { errorBox, h } from "./dom.js";

/** True while a person is typing into a task form: views hold their refresh meanwhile. */
export const forms = { open: 0 };

function isManual(task) {
  return task.kind === "task" && task.type === "HUMAN" && task.status === "pending";
}

/** The buttons (and the form they open) for `task`; `done()` runs after a success. */
export function taskActions(task, done) {
  const cell = h("div", { class: "actions" });
  const problem = h("div", { class: "task-problem" });

  async function call(what, body) {
    problem.replaceChildren();
    try {
      await api("POST", `/v1/tasks/${task.id}/${what}`, { body });
      await done();
    } catch (error) {
      problem.replaceChildren(errorBox(error, "task-error"));
    }
  }

  function openForm(form) {
    forms.open += 1;
    cell.replaceChildren(form, problem);
    const first = form.querySelector("textarea, input");
    if (first) first.focus();
  }

  function closeForm() {
    forms.open = Math.max(0, forms.open - 1);
  }

  if (isManual(task)) {
    const complete = h("button", { type: "button", testid: "task-complete" }, "Complete…");
    const fail = h("button", { type: "button", class: "secondary", testid: "task-fail" }, "Fail…");
    complete.addEventListener("click", () => {
      const output = h("textarea", { testid: "task-output", rows: 4, "aria-label": "output (JSON)" }, "{}");
      const form = h(
        "form",
        { class: "task-form" },
        h("label", {}, "Output (JSON)", output),
        h("button", { type: "submit", testid: "task-complete-confirm" }, "Complete task"),
        h("button", { type: "button", class: "secondary", testid: "task-form-cancel", onclick: () => { closeForm(); done(); } }, "Back"),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        let value;
        try {
          value = output.value.trim() === "" ? null : JSON.parse(output.value);
        } catch (error) {
          problem.replaceChildren(errorBox(`the output is not JSON: ${error.message}`, "task-error"));
          return;
        }
        closeForm();
        await call("complete", { output: value });
      });
      openForm(form);
    });
    fail.addEventListener("click", () => {
      const reason = h("input", { testid: "task-fail-reason", required: true, "aria-label": "why it failed", placeholder: "why it failed" });
      const form = h(
        "form",
        { class: "task-form" },
        reason,
        h("button", { type: "submit", class: "danger", testid: "task-fail-confirm" }, "Fail task"),
        h("button", { type: "button", class: "secondary", testid: "task-form-cancel", onclick: () => { closeForm(); done(); } }, "Back"),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        closeForm();
        await call("fail", { error: reason.value });
      });
      openForm(form);
    });
    cell.append(complete, fail, problem);
  } else if (task.status === "failed") {
    cell.append(
      h("button", { type: "button", testid: "task-retry", onclick: () => call("retry", undefined) }, "Retry"),
      problem,
    );
  }
  return cell;
}
