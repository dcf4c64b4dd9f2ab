// Log in (POST /auth/login). A user of several tenants is asked which one, from the API's answer.
import * as api from "../api.js";
import { esc } from "../dom.js";

export default {
  title: "Log in",
  mount(root, { done }) {
    root.innerHTML = `<form class="login card stack" id="login-form">
      <h1>admin-mit console</h1>
      <label>Username <input name="username" autocomplete="username" required autofocus></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
      <label id="tenant-field" hidden>Tenant <select name="tenant_id"></select></label>
      <p class="error" id="login-error" role="alert"></p>
      <button class="primary" type="submit">Log in</button>
    </form>`;
    const form = root.querySelector("form");
    const error = root.querySelector("#login-error");
    const tenantField = root.querySelector("#tenant-field");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const data = new FormData(form);
      try {
        await api.login(data.get("username"), data.get("password"), tenantField.hidden ? null : data.get("tenant_id"));
        done();
      } catch (failure) {
        const details = (failure.body && failure.body.details) || [];
        const choice = details.find((d) => d.field === "tenant_id");
        const ids = choice && /\[([\d, ]+)\]/.exec(failure.message);
        if (failure.status === 422 && ids) {
          tenantField.hidden = false;
          tenantField.querySelector("select").innerHTML = ids[1].split(",")
            .map((id) => `<option value="${esc(id.trim())}">tenant ${esc(id.trim())}</option>`).join("");
          error.textContent = "You belong to several tenants: choose one.";
        } else {
          error.textContent = failure.message;
        }
      }
    });
  },
};
