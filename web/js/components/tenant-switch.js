// Switch tenant for a user of several: POST /auth/switch (no password asked; the session moves over).
import * as api from "../api.js";
import { esc, toast } from "../dom.js";

export function tenantSwitcher(element, me, switched) {
  if (!me.memberships || me.memberships.length < 2) return;
  const options = me.memberships.map((m) =>
    `<option value="${m.tenant_id}" ${m.tenant_id === me.tenant_id ? "selected" : ""}>tenant ${m.tenant_id} (${esc(m.role)})</option>`).join("");
  element.innerHTML = `<select id="tenant-select" aria-label="Tenant">${options}</select>`;
  const select = element.querySelector("select");
  select.addEventListener("change", async () => {
    select.disabled = true;
    try {
      await api.switchTenant(select.value);
      switched();
    } catch (error) {
      select.value = me.tenant_id;
      select.disabled = false;
      toast(error.message, "error");
    }
  });
}
