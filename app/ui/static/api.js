// The /v1 API with the user's bearer token. The token is kept in sessionStorage (this tab only)
// and sent only as an Authorization header, never in a URL.

const ROOT = document.body.dataset.root || '';
const TOKEN_KEY = 'dces-token';

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// GET a path under the service root; params with an empty value are left out. Resolves to
// {body, total}, total being X-Total-Count where the route sends it.
export async function get(path, params = {}) {
  const url = new URL(ROOT + path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== '' && value !== null && value !== undefined) url.searchParams.set(key, value);
  }
  const bearer = token.get();
  const response = await fetch(url, {
    headers: bearer ? { Authorization: `Bearer ${bearer}` } : {},
    cache: 'no-store',
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401) throw new AuthError(body?.detail || 'the token was refused');
  if (!response.ok) throw new ApiError(response.status, body?.detail || response.statusText);
  return { body, total: Number(response.headers.get('X-Total-Count')) };
}
