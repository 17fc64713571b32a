// The JSON API, JSON-RPC and the write token the page asks for.
//
// The token lives in sessionStorage (this tab only) once the server said it is the lab's
// (`checkToken`); listeners of `token.onChange` enable or disable the controls that write.

export class ApiError extends Error {
  constructor(status, message, field = null) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

async function jsonOf(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await jsonOf(response);
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? `${path}: HTTP ${response.status}`,
                       body?.field ?? null);
  }
  return body;
}

const TOKEN_KEY = "ionlab.token";
const tokenListeners = [];

export const token = {
  get value() {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  },
  set(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    for (const listener of tokenListeners) listener(Boolean(value));
  },
  onChange(listener) {
    tokenListeners.push(listener);
    listener(Boolean(this.value));
  },
};

/** Ask the server whether `value` is the write token: {ok, message}. Changes nothing. */
export async function checkToken(value) {
  try {
    const response = await fetch("/api/v1/token", {
      headers: { Accept: "application/json", Authorization: `Bearer ${value}` },
      cache: "no-store",
    });
    if (response.ok) return { ok: true, message: "accepted" };
    const body = await jsonOf(response);
    return { ok: false, message: body?.error ?? `token check: HTTP ${response.status}` };
  } catch (error) {
    return { ok: false, message: `cannot check the token: ${error.message}` };
  }
}

let rpcId = 0;

/** Call a JSON-RPC method with the write token; resolves to its result, rejects with ApiError. */
export async function rpc(method, params) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token.value) headers.Authorization = `Bearer ${token.value}`;
  const response = await fetch("/api/v1/rpc", {
    method: "POST",
    headers,
    cache: "no-store",
    body: JSON.stringify({ jsonrpc: "2.0", method, params, id: ++rpcId }),
  });
  const body = await jsonOf(response);
  if (body?.error) {
    const { code, message } = body.error;
    throw new ApiError(response.ok ? code : response.status, message ?? `${method} failed`);
  }
  if (!response.ok || body === null) {
    throw new ApiError(response.status, `${method}: HTTP ${response.status}`);
  }
  return body.result;
}
