/**
 * Authentication and authorization of /metrics and /debug/* scrapers in Kubernetes mode, as GIE's EPP does through
 * controller-runtime's metrics filter (`--metrics-endpoint-auth`, default true): the bearer token is checked with a
 * TokenReview, then the user it names must be allowed `get` on the non-resource URL (the request path) by a
 * SubjectAccessReview. 401 without a valid token, 403 without the permission (docs/security.md).
 *
 * Results are cached (tokens by SHA-256, never the token itself) so a scrape every 10 s costs no API calls:
 * TokenReview 1 min, allowed 5 min, denied 30 s, the delegating authenticator/authorizer defaults.
 */
import { createHash } from "node:crypto";
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";

export type ScrapeDecision =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly status: 401 | 403 | 503; readonly reason: string };

export interface ScrapeAuthorizer {
  check(authorization: string | undefined, path: string, verb: string): Promise<ScrapeDecision>;
}

/** What the authorizer needs from the API server; the client-node APIs by default, a fake in tests. */
export interface ReviewApi {
  tokenReview(token: string): Promise<{ authenticated: boolean; user?: ReviewUser; error?: string }>;
  accessReview(user: ReviewUser, path: string, verb: string): Promise<{ allowed: boolean; reason?: string }>;
}

export interface ReviewUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups?: string[];
  readonly extra?: Record<string, string[]>;
}

const AUTHN_TTL_MS = 60_000;
const ALLOW_TTL_MS = 5 * 60_000;
const DENY_TTL_MS = 30_000;
const MAX_CACHED = 1024;

class TtlCache<V> {
  readonly #entries = new Map<string, { value: V; expires: number }>();
  get(key: string, now: number): V | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) return undefined;
    if (e.expires <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.value;
  }
  set(key: string, value: V, ttlMs: number, now: number): void {
    // Bounded: unauthenticated clients can send any number of distinct tokens.
    if (this.#entries.size >= MAX_CACHED) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { value, expires: now + ttlMs });
  }
}

export function kubernetesReviewApi(kc: KubeConfig): ReviewApi {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return {
    async tokenReview(token) {
      const r = await authn.createTokenReview({
        body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token } },
      });
      const s = r.status;
      return {
        authenticated: s?.authenticated === true,
        ...(s?.user?.username
          ? {
              user: {
                username: s.user.username,
                uid: s.user.uid,
                groups: s.user.groups,
                extra: s.user.extra,
              } as ReviewUser,
            }
          : {}),
        ...(s?.error ? { error: s.error } : {}),
      };
    },
    async accessReview(user, path, verb) {
      const r = await authz.createSubjectAccessReview({
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SubjectAccessReview",
          spec: {
            user: user.username,
            ...(user.uid ? { uid: user.uid } : {}),
            ...(user.groups ? { groups: user.groups } : {}),
            ...(user.extra ? { extra: user.extra } : {}),
            nonResourceAttributes: { path, verb },
          },
        },
      });
      return { allowed: r.status?.allowed === true, ...(r.status?.reason ? { reason: r.status.reason } : {}) };
    },
  };
}

export function createScrapeAuthorizer(api: ReviewApi, now: () => number = Date.now): ScrapeAuthorizer {
  const users = new TtlCache<ReviewUser | null>();
  const decisions = new TtlCache<boolean>();
  return {
    async check(authorization, path, verb) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
      if (m === null) return { ok: false, status: 401, reason: "no bearer token" };
      const key = createHash("sha256").update(m[1]!).digest("base64");
      let user = users.get(key, now());
      if (user === undefined) {
        try {
          const r = await api.tokenReview(m[1]!);
          user = r.authenticated && r.user !== undefined ? r.user : null;
        } catch (err) {
          return { ok: false, status: 503, reason: `TokenReview failed: ${(err as Error).message}` };
        }
        users.set(key, user, AUTHN_TTL_MS, now());
      }
      if (user === null) return { ok: false, status: 401, reason: "token not authenticated" };
      const dkey = `${user.username}\u0000${(user.groups ?? []).join(",")}\u0000${verb}\u0000${path}`;
      let allowed = decisions.get(dkey, now());
      if (allowed === undefined) {
        try {
          allowed = (await api.accessReview(user, path, verb)).allowed;
        } catch (err) {
          return { ok: false, status: 503, reason: `SubjectAccessReview failed: ${(err as Error).message}` };
        }
        decisions.set(dkey, allowed, allowed ? ALLOW_TTL_MS : DENY_TTL_MS, now());
      }
      if (!allowed) return { ok: false, status: 403, reason: `${user.username} may not ${verb} ${path}` };
      return { ok: true, user: user.username };
    },
  };
}
