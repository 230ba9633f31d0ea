/**
 * Multimodal wrappers run text-only (the vision tower and projector are dropped; an image part in a
 * request is refused by the server's converter): the config's `text_config` is the text model's config
 * (config.ts textConfig), and the weights lose their `language_model.` prefixes as mlx-lm's wrapper
 * sanitize strips them (mlx-community layout `language_model.model.*`, transformers 5 layout
 * `model.language_model.*` + top-level `lm_head`).
 */
import type * as mx from "../mlx/index.ts";

const VISION = /(^|\.)(vision_tower|vision_model|multi_modal_projector|embed_vision|audio_tower)\./;

export function stripWrapper(w: Map<string, mx.Array>): Map<string, mx.Array> {
  const out = new Map<string, mx.Array>();
  for (const [k, a] of w) {
    if (VISION.test(k)) {
      a.dispose();
      continue;
    }
    let key = k;
    if (key.startsWith("model.language_model.")) key = `model.${key.slice("model.language_model.".length)}`;
    else if (key.startsWith("language_model.")) key = key.slice("language_model.".length);
    out.set(key, a);
  }
  return out;
}
