// hookd console: progressive enhancement only; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Show only the fields of the chosen endpoint authentication.
  const select = document.querySelector("[data-auth-select]");
  if (select) {
    const sync = () => {
      document.querySelectorAll("fieldset[data-auth]").forEach((set) => {
        set.hidden = set.dataset.auth !== select.value;
      });
    };
    select.addEventListener("change", sync);
    sync();
  }
  // Ask before a destructive form is sent.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  // A delivery still in flight: show its next attempt without a manual reload.
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    setTimeout(() => window.location.reload(), Number(refresh.dataset.refresh) * 1000);
  }
});
