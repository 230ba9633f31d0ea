/**
 * Array lifetimes. MLX memory is invisible to the JS GC, so arrays are freed explicitly:
 * `dispose()` / `using`, or `scope(fn)`, which frees every array created inside `fn` except the
 * ones it returns (handed to the enclosing scope) and the ones passed to `keep()` (owned by the caller).
 * A decode step = one scope that returns the logits and `keep()`s the new KV-cache arrays.
 */

/** What scope tracking needs from an array (kept minimal to avoid an import cycle with array.ts). */
export interface Tracked {
  owner: Scope | null;
  readonly disposed: boolean;
  dispose(): void;
}

export interface Scope {
  items: Tracked[];
  parent: Scope | null;
}

let top: Scope | null = null;

/** Called by the Array constructor: the array belongs to the innermost open scope, if any. */
export function track(a: Tracked): void {
  if (top !== null) {
    a.owner = top;
    top.items.push(a);
  }
}

function isTracked(v: unknown): v is Tracked {
  return typeof v === "object" && v !== null && "owner" in v && typeof (v as Tracked).dispose === "function";
}

/** Every array reachable from `v` through arrays, Maps, Sets and plain objects. */
function collect(v: unknown, out: Set<Tracked>, seen: Set<unknown>): void {
  if (typeof v !== "object" || v === null || seen.has(v)) return;
  seen.add(v);
  if (isTracked(v)) {
    out.add(v);
    return;
  }
  if (globalThis.Array.isArray(v)) for (const x of v) collect(x, out, seen);
  else if (v instanceof Map) for (const x of v.values()) collect(x, out, seen);
  else if (v instanceof Set) for (const x of v) collect(x, out, seen);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, seen);
}

function close(s: Scope, keepSet: Set<Tracked> | null): void {
  const parent = s.parent;
  for (const a of s.items) {
    if (a.owner !== s) continue;
    if (keepSet?.has(a)) {
      a.owner = parent;
      parent?.items.push(a);
    } else if (!a.disposed) {
      a.dispose();
    }
  }
  s.items.length = 0;
}

/**
 * Run `fn` (synchronously) and free every array it created except those in its result (arrays,
 * or arrays nested in arrays/objects/Maps), which move to the enclosing scope (or become unowned).
 */
export function scope<T>(fn: () => T): T {
  const s: Scope = { items: [], parent: top };
  top = s;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    top = s.parent;
    close(s, null);
    throw e;
  }
  top = s.parent;
  if (result instanceof Promise) {
    close(s, null);
    throw new TypeError("scope(fn): fn must be synchronous (MLX arrays are tracked per synchronous block)");
  }
  const kept = new Set<Tracked>();
  collect(result, kept, new Set());
  close(s, kept);
  return result;
}

/** Alias in the spirit of tf.tidy. */
export const tidy = scope;

/**
 * Detach arrays (or arrays nested in `v`) from every scope: the caller now owns them and must
 * dispose them (e.g. KV-cache buffers that outlive the decode step that created them).
 */
export function keep<T>(v: T): T {
  const set = new Set<Tracked>();
  collect(v, set, new Set());
  for (const a of set) a.owner = null;
  return v;
}

/** Dispose every array reachable from `v` (arrays, objects, Maps). */
export function disposeAll(v: unknown): void {
  const set = new Set<Tracked>();
  collect(v, set, new Set());
  for (const a of set) a.dispose();
}

/** Depth of open scopes (for tests and assertions). */
export function scopeDepth(): number {
  let d = 0;
  for (let s = top; s !== null; s = s.parent) d++;
  return d;
}
