/** The Hub token as huggingface_hub finds it, and redaction so it never reaches output or logs. */
import { readFileSync } from "node:fs";
import { type Env, envToken, hfTokenPath } from "../env.ts";

/** HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, then the token file (HF_TOKEN_PATH or `$HF_HOME/token`). */
export function resolveToken(env: Env): string | undefined {
  const fromEnv = envToken(env);
  if (fromEnv) return fromEnv.trim();
  try {
    const t = readFileSync(hfTokenPath(env), "utf8").trim();
    return t === "" ? undefined : t;
  } catch {
    return undefined;
  }
}

/** Replace the token (and anything shaped like an hf_ token) with a marker. */
export function redact(text: string, token?: string): string {
  let out = text;
  if (token && token.length >= 4) out = out.split(token).join("[REDACTED_TOKEN]");
  return out.replace(/hf_[A-Za-z0-9]{8,}/g, "[REDACTED_TOKEN]");
}
