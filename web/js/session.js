// Who is logged in (GET /auth/me) and what their role lets the page offer.
import { get } from "./api.js";

const RANK = { viewer: 1, operator: 2, admin: 3 };
let me = null;

export async function loadMe() {
  me = await get("/auth/me");
  return me;
}

export function current() { return me; }
export function forget() { me = null; }

/** At least `role` in the current tenant (a platform administrator is admin there). */
export function can(role) {
  if (!me || !me.role) return false;
  return (RANK[me.role] || 0) >= RANK[role];
}

export const canOperate = () => can("operator");
export const isPlatformAdmin = () => Boolean(me && me.is_platform_admin);
