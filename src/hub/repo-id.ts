/** Validation of `org/name[@revision]` specs for pull, before any network or cache access. */
import { MlxkError } from "../errors.ts";

export interface RepoSpec {
  repoId: string;
  /** Branch, tag or commit; null = the default branch (`main`). */
  revision: string | null;
}

const MAX_REPO_ID = 96;
// one or two parts; each starts and ends with a word character, as the Hub's repo-id rule requires
const PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const REVISION = /^[A-Za-z0-9_.\-/]+$/;

function invalid(message: string): MlxkError {
  return new MlxkError("ValidationError", `Invalid model name: ${message}`);
}

/** Split on the last `@` and validate both halves; throws ValidationError. */
export function parseRepoSpec(spec: string): RepoSpec {
  const s = spec.trim();
  if (s === "") throw invalid("empty");
  const at = s.lastIndexOf("@");
  const base = at < 0 ? s : s.slice(0, at);
  const revision = at < 0 ? null : s.slice(at + 1);
  if (base === "") throw invalid("empty");
  if (base.length > MAX_REPO_ID) throw invalid(`'${base.slice(0, 40)}…' is longer than ${MAX_REPO_ID} characters`);
  if (base.startsWith("/") || base.endsWith("/")) throw invalid(`'${base}' starts or ends with '/'`);
  if (base.includes("//")) throw invalid(`'${base}' contains '//'`);
  const parts = base.split("/");
  if (parts.length > 2) throw invalid(`'${base}' has more than one '/' (expected org/name)`);
  for (const p of parts) {
    if (!PART.test(p) || p.includes("--") || p.includes("..")) {
      throw invalid(`'${base}' is not a valid repo id (letters, digits, '-', '_', '.'; no '--' or '..'; must start and end with a letter or digit)`);
    }
  }
  if (base.endsWith(".git")) throw invalid(`'${base}' must not end with '.git'`);
  if (revision !== null) {
    if (revision === "") throw invalid(`empty revision after '@' in '${s}'`);
    if (!REVISION.test(revision) || revision.includes("..") || revision.startsWith("/") || revision.endsWith("/") || revision.length > 255) {
      throw invalid(`'${revision}' is not a valid revision`);
    }
  }
  return { repoId: base, revision };
}

export function isCommitSha(rev: string): boolean {
  return /^[0-9a-f]{40}$/.test(rev);
}
