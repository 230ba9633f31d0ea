/**
 * A decode batch's cache of one layer, whatever the layer's kind: attention KV (BatchKVCache, rows
 * left-padded), sliding-window KV (BatchRotatingKVCache, a ring per row) or recurrent state (BatchArraysCache,
 * rows stacked). The batch (src/engine/batch.ts) composes
 * each layer from the running rows it keeps and the newcomers' own caches, and gives a leaving row back as a
 * cache of the kind the model made, so the prompt cache stores it as it would a solo run's.
 */
import type { LayerCache } from "./base.ts";
import { ArraysCache } from "./arrays_cache.ts";
import { BatchArraysCache } from "./batch_arrays_cache.ts";
import { BatchKVCache } from "./batch_cache.ts";
import { BatchRotatingKVCache } from "./batch_rows_cache.ts";
import { RotatingKVCache, StandardKVCache } from "./cache.ts";
import * as mx from "../mlx/index.ts";

export type BatchLayerCache = BatchKVCache | BatchArraysCache | BatchRotatingKVCache;

/** Why a layer with this (fresh) cache cannot join a decode batch; null when it can. */
export function layerBatchRefusal(c: LayerCache): string | null {
  if (c instanceof StandardKVCache || c instanceof ArraysCache || c instanceof RotatingKVCache) return null;
  return `layers with a ${c.constructor.name} (not row-batched)`;
}

/**
 * The layer's cache for the next membership: rows `keep` of `prev` (in order), then the newcomers' caches
 * `add` (left as they are; the caller frees them after evaluating). Nothing is evaluated here.
 */
export function composeLayer(prev: BatchLayerCache | null, keep: readonly number[], add: readonly LayerCache[]): BatchLayerCache {
  const first = prev ?? add[0];
  if (first instanceof BatchRotatingKVCache || first instanceof RotatingKVCache) {
    return BatchRotatingKVCache.compose(prev as BatchRotatingKVCache | null, keep, add.map((a) => a as RotatingKVCache));
  }
  if (first instanceof BatchArraysCache || first instanceof ArraysCache) {
    return BatchArraysCache.compose(prev as BatchArraysCache | null, keep, add.map((a) => a as ArraysCache));
  }
  // the row views go with the scope; compose keeps what it builds
  return mx.scope(() => BatchKVCache.compose(prev as BatchKVCache | null, keep, add.map((a) => kvRow(a as StandardKVCache))));
}

/** A solo cache's live span as one row of KV [1, H, offset, D] (views; compose copies them). */
function kvRow(c: StandardKVCache): { keys: mx.Array; values: mx.Array } {
  const [k, v] = c.state() as [mx.Array, mx.Array];
  return { keys: sliceTo(k, c.offset), values: sliceTo(v, c.offset) };
}

function sliceTo(a: mx.Array, len: number): mx.Array {
  const [, H, , D] = a.shape as [number, number, number, number];
  return mx.slice(a, [0, 0, 0, 0], [1, H, len, D]);
}
