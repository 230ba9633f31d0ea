/**
 * The prefix cache: the KV of finished requests (and the prompts of running batch rows), kept in a token trie under an LRU bounded in bytes, so a
 * request that starts with tokens already seen (an agent loop's system prompt and history, a chat's
 * earlier turns) prefills only the rest. As mlx-lm's LRUPromptCache: a hit hands out a clone (the entry
 * stays, MLX copies shared buffers on the first write); a cache that holds every position is trimmed to
 * the shared prefix. One that cannot be trimmed (a sliding window, the recurrent state of a hybrid model)
 * is reused only when its whole key is a prefix of the new prompt, so the engine keeps snapshots of it at
 * the message boundaries of each chat (snapshot(), src/engine/boundaries.ts) and a request resumes from the
 * deepest one its prompt passes through. Snapshots are entries like any other: counted in bytes, evicted
 * least recently used first. A model with any layer cache that cannot be cloned is never reused.
 */
import * as mx from "../mlx/index.ts";
import { isReusable, type ReusableCache } from "../models/cache.ts";

/** What every layer cache offers (KV or recurrent). */
export interface AnyLayerCache extends Disposable {
  readonly offset: number;
  state(): mx.Array[];
}

interface Entry<C extends AnyLayerCache> {
  key: readonly number[];
  node: TrieNode<C>;
  caches: C[];
  bytes: number;
  /** Every layer can be trimmed to a shorter prefix. */
  trimmable: boolean;
  /** A system-prompt snapshot: what other chats share, evicted last (mlx-lm's eviction tiers). */
  system: boolean;
}

interface TrieNode<C extends AnyLayerCache> {
  parent: TrieNode<C> | null;
  token: number;
  children: Map<number, TrieNode<C>>;
  entry: Entry<C> | null;
}

export interface CacheHit<C> {
  /** Caches the caller owns (dispose or put them back), holding the first `cached` prompt tokens. */
  caches: C[];
  cached: number;
}

export interface PromptCacheStats {
  entries: number;
  bytes: number;
  maxBytes: number;
}

function newNode<C extends AnyLayerCache>(parent: TrieNode<C> | null, token: number): TrieNode<C> {
  return { parent, token, children: new Map(), entry: null };
}

function bytesOf(caches: readonly AnyLayerCache[]): number {
  let n = 0;
  for (const c of caches) for (const a of c.state()) n += a.nbytes;
  return n;
}

export class PromptCache<C extends AnyLayerCache = AnyLayerCache> implements Disposable {
  readonly #root = newNode<C>(null, -1);
  /** Least recently used first (Map keeps insertion order; a use re-inserts). */
  readonly #lru = new Map<Entry<C>, true>();
  #bytes = 0;
  #systemEntries = 0;

  constructor(readonly maxBytes: number) {}

  get stats(): PromptCacheStats {
    return { entries: this.#lru.size, bytes: this.#bytes, maxBytes: this.maxBytes };
  }

  /**
   * The longest reusable prefix of `prompt`, as clones the caller owns; at least one prompt token is always
   * left to prefill (its logits start the generation). Null when nothing is reusable.
   */
  take(prompt: readonly number[]): CacheHit<C> | null {
    const found = this.#lookup(prompt);
    if (!found) return null;
    const { entry, cached } = found;
    this.#touch(entry);
    const caches = entry.caches.map((c) => (c as unknown as ReusableCache).clone() as unknown as C);
    const drop = entry.key.length - cached;
    if (drop > 0) for (const c of caches) (c as unknown as ReusableCache).trim(drop);
    return { caches, cached };
  }

  /** How many leading tokens of `prompt` take() would reuse now (0: none); changes nothing. */
  peek(prompt: readonly number[]): number {
    return this.#lookup(prompt)?.cached ?? 0;
  }

  #lookup(prompt: readonly number[]): { entry: Entry<C>; cached: number } | null {
    const limit = prompt.length - 1;
    // Walk the trie along the prompt: entries on the path are exact prefixes; below the deepest node reached,
    // a trimmable entry shares `depth` tokens.
    let node = this.#root;
    let depth = 0;
    let exact: Entry<C> | null = null;
    while (depth < prompt.length) {
      const next = node.children.get(prompt[depth]!);
      if (!next) break;
      node = next;
      depth++;
      if (node.entry && depth <= limit) exact = node.entry;
    }
    const shared = Math.min(depth, limit);
    const below = shared > (exact?.key.length ?? 0) ? this.#trimmableBelow(node) : null;
    const entry = below ?? exact;
    if (!entry) return null;
    const cached = below ? shared : entry.key.length;
    return cached > 0 ? { entry, cached } : null;
  }

  /**
   * Keep `caches` as the KV of `tokens` (the prompt and the generated tokens the model has seen; the cache
   * offsets must equal its length). Takes ownership: stored, or disposed when it cannot be kept (a layer
   * cache that is not reusable, larger than the whole budget).
   */
  put(tokens: readonly number[], caches: C[], opts: { system?: boolean } = {}): boolean {
    const n = caches[0]?.offset ?? 0;
    const ok = n > 0 && n === tokens.length && caches.every((c) => isReusable(c) && c.offset === n);
    if (!ok) {
      for (const c of caches) c[Symbol.dispose]();
      return false;
    }
    mx.eval(caches.flatMap((c) => c.state()));
    const bytes = bytesOf(caches);
    if (bytes > this.maxBytes) {
      for (const c of caches) c[Symbol.dispose]();
      return false;
    }
    const trimmable = caches.every((c) => isReusable(c) && c.trimmable);
    const replaced: Entry<C>[] = [];
    let node = this.#root;
    for (const t of tokens) {
      let next = node.children.get(t);
      if (!next) {
        next = newNode(node, t);
        node.children.set(t, next);
      }
      node = next;
      // A trimmable entry on the way is a prefix of this one: the new entry serves everything it served.
      if (trimmable && node.entry?.trimmable) replaced.push(node.entry);
    }
    if (node.entry && !replaced.includes(node.entry)) replaced.push(node.entry);
    const system = opts.system === true || node.entry?.system === true;
    const entry: Entry<C> = { key: [...tokens], node, caches, bytes, trimmable, system };
    node.entry = entry;
    this.#lru.set(entry, true);
    this.#bytes += bytes;
    if (system) this.#systemEntries++;
    for (const e of replaced) this.#evict(e);
    while (this.#bytes > this.maxBytes) {
      const victim = this.#victim(entry);
      if (!victim) break;
      this.#evict(victim);
    }
    return true;
  }

  /**
   * Keep a clone of `caches` as the KV of `tokens` when they cannot be trimmed (a sliding window): the
   * message boundary a later prompt can extend even where the rendered answer differs from the generated
   * tokens. Trimmable caches need no snapshot (the final entry trims back to any prefix).
   */
  snapshot(tokens: readonly number[], caches: readonly C[], opts: { system?: boolean } = {}): void {
    if (!caches.every(isReusable) || caches.every((c) => (c as unknown as ReusableCache).trimmable)) return;
    this.#keepClone(tokens, caches, opts);
  }

  /**
   * Keep a clone of a running request's prompt KV, trimmable or not (a decode batch computes on its own copy):
   * a request arriving while it decodes reuses the shared prefix (its system prompt) at once instead of when
   * it leaves. The entry the request leaves with later extends this one, which it then replaces.
   */
  share(tokens: readonly number[], caches: readonly C[]): void {
    if (caches.every(isReusable)) this.#keepClone(tokens, caches, {});
  }

  #keepClone(tokens: readonly number[], caches: readonly C[], opts: { system?: boolean }): void {
    // The same tokens give the same state: an entry already there only counts as used.
    const there = this.#nodeAt(tokens)?.entry;
    if (there) {
      if (opts.system && !there.system) {
        there.system = true;
        this.#systemEntries++;
      }
      return this.#touch(there);
    }
    this.put(
      tokens,
      caches.map((c) => (c as unknown as ReusableCache).clone() as unknown as C),
      opts,
    );
  }

  /** The token sequences held, in LRU order (least recently used first): for tests and diagnostics. */
  keys(): number[][] {
    return [...this.#lru.keys()].map((e) => [...e.key]);
  }

  /** Free every entry. */
  clear(): void {
    for (const e of [...this.#lru.keys()]) this.#evict(e);
  }

  [Symbol.dispose](): void {
    this.clear();
  }

  #nodeAt(tokens: readonly number[]): TrieNode<C> | null {
    let node: TrieNode<C> | undefined = this.#root;
    for (const t of tokens) {
      node = node.children.get(t);
      if (!node) return null;
    }
    return node;
  }

  /** The shortest trimmable entry at or below `node` (fewest positions to copy), or null. */
  #trimmableBelow(node: TrieNode<C>): Entry<C> | null {
    let best: Entry<C> | null = null;
    const stack = [node];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (n.entry?.trimmable && (!best || n.entry.key.length < best.key.length)) best = n.entry;
      for (const c of n.children.values()) stack.push(c);
    }
    return best;
  }

  /**
   * The entry to evict next (never `keep`): the least recently used of the other entries while they are at least
   * as many as the system-prompt snapshots, else of those (mlx-lm's CacheOrder, with two tiers), so chats
   * sharing a system prompt keep it.
   */
  #victim(keep: Entry<C>): Entry<C> | null {
    const others = this.#lru.size - this.#systemEntries;
    const system = others < this.#systemEntries;
    let first: Entry<C> | null = null;
    for (const e of this.#lru.keys()) {
      if (e === keep) continue;
      if (e.system === system) return e;
      first ??= e;
    }
    return first;
  }

  #touch(e: Entry<C>): void {
    this.#lru.delete(e);
    this.#lru.set(e, true);
  }

  #evict(e: Entry<C>): void {
    if (!this.#lru.delete(e)) return;
    if (e.system) this.#systemEntries--;
    this.#bytes -= e.bytes;
    for (const c of e.caches) c[Symbol.dispose]();
    if (e.node.entry === e) e.node.entry = null;
    // Prune the branch that now leads nowhere.
    let n: TrieNode<C> | null = e.node;
    while (n && n.parent && n.entry === null && n.children.size === 0) {
      n.parent.children.delete(n.token);
      n = n.parent;
    }
  }
}
